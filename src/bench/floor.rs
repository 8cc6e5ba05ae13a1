//! The SQL floor: what one durable transaction per request costs on this machine and database
//! with no gRPC and no engine, measured as the databases' own tools measure it:
//! - PostgreSQL: one single-row insert per transaction (autocommit, a prepared statement), on as
//!   many connections as the scenarios have request loops: what `pgbench -n -M prepared -c 64`
//!   of `insert into t (k, v) values (md5(:v::text), :v)` does (`scripts/floors.sh`);
//! - SQLite: one request loop on one connection, `begin immediate; insert one row; commit` in
//!   WAL with `synchronous=full`, through rusqlite on the loop's own thread as omo's writer
//!   runs its statements: SQLite has one writer, more connections only add waits in its busy
//!   handler, and an async driver's hand-off to a worker thread per statement would measure the
//!   driver (sqlx made it 2,900/s where this loop and Python's sqlite3 do 7,000).
//!
//! PostgreSQL's floor goes through sqlx, the driver omo uses: on 2 cores, with the client on
//! the same machine, it measured 55–80 % of what `pgbench` (C, libpq) did with the same
//! statement and clients the same hour, and the report says so; `scripts/floors.sh` runs
//! `pgbench` itself.
//!
//! The table is a scratch table of the same database, created and dropped here.

use std::{str::FromStr, time::Duration};

use rand::{Rng, SeedableRng, rngs::StdRng};
use sqlx::{
    ConnectOptions, PgPool,
    postgres::{PgConnectOptions, PgPoolOptions},
};

use super::{
    BenchArgs, BenchError, ScenarioResult,
    load::{self, Worker},
    seed::{self, Backend},
};

/// PostgreSQL connections at most (its default `max_connections` is 100, and the omo server
/// under test holds some).
const MAX_PG_CONNECTIONS: usize = 64;
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

pub async fn run(args: &BenchArgs) -> Result<ScenarioResult, BenchError> {
    if Backend::of(args.database_url.expose()) == Backend::Sqlite {
        return sqlite_loop(args).await;
    }
    let loops = args.concurrency.min(MAX_PG_CONNECTIONS);
    let options =
        PgConnectOptions::from_str(args.database_url.expose())?.disable_statement_logging();
    let pool = PgPoolOptions::new()
        .max_connections(u32::try_from(loops).unwrap_or(1))
        .connect_with(options)
        .await?;
    sqlx::raw_sql(sql::DROP).execute(&pool).await?;
    sqlx::raw_sql(sql::POSTGRES_CREATE).execute(&pool).await?;
    let workers: Vec<FloorWorker> = (0..loops)
        .map(|_| FloorWorker {
            pool: pool.clone(),
            rng: StdRng::from_rng(&mut rand::rng()),
        })
        .collect();
    let measured = load::drive(workers, args.duration).await;
    sqlx::raw_sql(sql::DROP).execute(&pool).await?;
    let (sample, elapsed) = measured?;
    let what = format!(
        "one prepared single-row insert per transaction on {loops} connections through sqlx \
         (pgbench's statement; pgbench itself, in C, does more: scripts/floors.sh)"
    );
    Ok(ScenarioResult::new("sql-floor", sample, elapsed).measuring(what))
}

/// SQLite's floor: one loop of durable one-row transactions on a connection of its own, on a
/// thread of its own, for the scenario's duration.
async fn sqlite_loop(args: &BenchArgs) -> Result<ScenarioResult, BenchError> {
    let path = seed::sqlite_file(args.database_url.expose())?;
    let duration = args.duration;
    let measured = tokio::task::spawn_blocking(move || -> rusqlite::Result<_> {
        let conn = rusqlite::Connection::open(&path)?;
        conn.busy_timeout(BUSY_TIMEOUT)?;
        conn.execute_batch("PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL")?;
        conn.execute_batch(sql::DROP)?;
        conn.execute_batch(sql::SQLITE_CREATE)?;
        let mut rng = StdRng::from_rng(&mut rand::rng());
        let mut sample = super::stats::Sample::default();
        let started = std::time::Instant::now();
        while started.elapsed() < duration {
            let op = std::time::Instant::now();
            let value: i64 = rng.random_range(1..=1_000_000_000);
            conn.execute_batch("BEGIN IMMEDIATE")?;
            conn.prepare_cached(sql::SQLITE_INSERT)?
                .execute(rusqlite::params![format!("{value:x}"), value])?;
            conn.execute_batch("COMMIT")?;
            sample.record_ok(op.elapsed());
        }
        let elapsed = started.elapsed();
        conn.execute_batch(sql::DROP)?;
        Ok((sample, elapsed))
    })
    .await?
    .map_err(|error| BenchError::Server(format!("the SQLite floor: {error}")))?;
    let (sample, elapsed) = measured;
    Ok(ScenarioResult::new("sql-floor", sample, elapsed).measuring(
        "one loop of begin immediate; insert one row; commit (WAL, synchronous=full) \
         through rusqlite",
    ))
}

/// One request loop of PostgreSQL's floor: a durable one-row insert per transaction.
#[derive(Debug)]
struct FloorWorker {
    pool: PgPool,
    rng: StdRng,
}

impl Worker for FloorWorker {
    async fn op(&mut self) -> Result<(), String> {
        let value: i64 = self.rng.random_range(1..=1_000_000_000);
        sqlx::query(sql::POSTGRES_INSERT)
            .bind(value) // $1
            .execute(&self.pool)
            .await
            .map(|_| ())
            .map_err(|error| error_key(&error))
    }
}

/// `SQL/<SQLSTATE or SQLite code>`, or the kind of a non-database failure.
fn error_key(error: &sqlx::Error) -> String {
    match error {
        sqlx::Error::Database(db) => format!("SQL/{}", db.code().unwrap_or_default()),
        sqlx::Error::PoolTimedOut => "SQL/POOL_TIMED_OUT".into(),
        _ => "SQL/ERROR".into(),
    }
}

mod sql {
    pub const SQLITE_CREATE: &str = r"
        create table bench_floor (id integer primary key, k text not null, v bigint not null)
        ";

    pub const POSTGRES_CREATE: &str = r"
        create table bench_floor (id bigserial primary key, k text not null, v bigint not null)
        ";

    pub const DROP: &str = "drop table if exists bench_floor";

    pub const SQLITE_INSERT: &str = "insert into bench_floor (k, v) values (?1, ?2)";

    /// pgbench's statement: the key's md5 is computed by the server, as there.
    pub const POSTGRES_INSERT: &str = "insert into bench_floor (k, v) values (md5($1::text), $1)";
}
