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

/// Runs `body` on a store over a fresh database named `{prefix}_<random>`, dropped afterwards
/// even when `body` panics; skipped (with a note) when PostgreSQL is unreachable outside CI.
pub async fn with_scratch_store<F, Fut>(prefix: &str, body: F)
where
    F: FnOnce(super::postgres::PostgresStore) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let Some(admin) = admin_pool().await else {
        return;
    };
    // Database names cannot be bound as parameters; this one is ours, [a-z0-9_] only.
    let name = format!("{prefix}_{:016x}", rand::random::<u64>());
    sqlx::query(&format!("create database {name}"))
        .execute(&admin)
        .await
        .expect("create the test database");
    let store = super::postgres::PostgresStore::connect(&database_url(&name))
        .await
        .expect("connect to the test database");
    let pools = store.clone();
    // A task of its own, so that the database is dropped even when the body panics.
    let outcome = tokio::spawn(body(store)).await;
    crate::domain::ports::Store::close(&pools).await;
    sqlx::query(&format!("drop database {name} with (force)"))
        .execute(&admin)
        .await
        .expect("drop the test database");
    if let Err(error) = outcome {
        std::panic::resume_unwind(error.into_panic());
    }
}
