//! The PostgreSQL server the store's unit tests use, with the test suite's one rule: the server
//! is `OMO_TEST_POSTGRES_URL` (default: the local server as `postgres`); unreachable, the test
//! is skipped with a note, except under `CI=true`, where it fails.

use sqlx::{PgPool, postgres::PgPoolOptions};

/// The admin connection URL the tests create their databases through.
pub fn admin_url() -> String {
    std::env::var("OMO_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

/// An admin pool, or None (after printing why) when PostgreSQL is unreachable outside CI.
pub async fn admin_pool() -> Option<PgPool> {
    let admin_url = admin_url();
    // A short acquire timeout: sqlx keeps retrying a refused connection until it expires
    // (30 s by default), and a skipped test should not wait for that.
    let connect = PgPoolOptions::new()
        .acquire_timeout(std::time::Duration::from_secs(3))
        .connect(&admin_url);
    match connect.await {
        Ok(admin) => Some(admin),
        Err(error) if std::env::var("CI").as_deref() != Ok("true") => {
            eprintln!(
                "SKIPPED: PostgreSQL unreachable at {admin_url} ({error}); CI=true makes this a \
                 failure"
            );
            None
        }
        Err(error) => panic!("PostgreSQL unreachable at {admin_url} under CI=true: {error}"),
    }
}

/// The URL of database `name` on the admin URL's server.
pub fn database_url(name: &str) -> String {
    let admin_url = admin_url();
    let base = admin_url
        .rsplit_once('/')
        .map_or(admin_url.as_str(), |(base, _)| base);
    format!("{base}/{name}")
}
