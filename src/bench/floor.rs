//! The SQL floor: what one durable transaction per request costs on this machine and database
//! with no gRPC and no engine, measured as the databases' own tools measure it:
//! - PostgreSQL: one single-row insert per transaction (autocommit, a prepared statement), on as
//!   many connections as the scenarios have request loops: what `pgbench -n -M prepared -c 64`
//!   of `insert into t (k, v) values (md5(:v::text), :v)` does (`scripts/floors.sh`);
//! - SQLite: one request loop on one connection, `begin immediate; insert one row; commit` in
//!   WAL with `synchronous=full`: SQLite has one writer, and more connections only add waits in
//!   its busy handler.
//!
//! The table is a scratch table of the same database, created and dropped here.

use std::{str::FromStr, time::Duration};

use rand::{Rng, SeedableRng, rngs::StdRng};
use sqlx::{
    ConnectOptions, PgPool, SqlitePool,
    postgres::{PgConnectOptions, PgPoolOptions},
    sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous},
};

use super::{
    BenchArgs, BenchError, ScenarioResult,
    load::{self, Worker},
    seed::Backend,
};

/// PostgreSQL connections at most (its default `max_connections` is 100, and the omo server
/// under test holds some).
const MAX_PG_CONNECTIONS: usize = 64;
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, Clone)]
enum FloorPool {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

pub async fn run(args: &BenchArgs) -> Result<ScenarioResult, BenchError> {
    let pool = FloorPool::open(args.database_url.expose(), args.concurrency).await?;
    pool.create_table().await?;
    let loops = match pool {
        FloorPool::Sqlite(_) => 1,
        FloorPool::Postgres(_) => args.concurrency.min(MAX_PG_CONNECTIONS),
    };
    let workers: Vec<FloorWorker> = (0..loops)
        .map(|_| FloorWorker {
            pool: pool.clone(),
            rng: StdRng::from_rng(&mut rand::rng()),
        })
        .collect();
    let measured = load::drive(workers, args.duration).await;
    pool.drop_table().await?;
    let (sample, elapsed) = measured?;
    Ok(ScenarioResult::new("sql-floor", sample, elapsed))
}

impl FloorPool {
    /// A pool with the durable settings omo itself uses.
    async fn open(url: &str, concurrency: usize) -> Result<FloorPool, BenchError> {
        Ok(match Backend::of(url) {
            Backend::Sqlite => {
                let options = SqliteConnectOptions::from_str(url)?
                    .journal_mode(SqliteJournalMode::Wal)
                    .synchronous(SqliteSynchronous::Full)
                    .busy_timeout(BUSY_TIMEOUT)
                    .disable_statement_logging();
                let pool = SqlitePoolOptions::new()
                    .max_connections(1)
                    .connect_with(options)
                    .await?;
                FloorPool::Sqlite(pool)
            }
            Backend::Postgres => {
                let options = PgConnectOptions::from_str(url)?.disable_statement_logging();
                let connections = concurrency.min(MAX_PG_CONNECTIONS);
                let pool = PgPoolOptions::new()
                    .max_connections(u32::try_from(connections).unwrap_or(1))
                    .connect_with(options)
                    .await?;
                FloorPool::Postgres(pool)
            }
        })
    }

    async fn create_table(&self) -> Result<(), BenchError> {
        self.drop_table().await?;
        match self {
            FloorPool::Sqlite(pool) => {
                sqlx::raw_sql(sql::SQLITE_CREATE).execute(pool).await?;
            }
            FloorPool::Postgres(pool) => {
                sqlx::raw_sql(sql::POSTGRES_CREATE).execute(pool).await?;
            }
        }
        Ok(())
    }

    async fn drop_table(&self) -> Result<(), BenchError> {
        match self {
            FloorPool::Sqlite(pool) => {
                sqlx::raw_sql(sql::DROP).execute(pool).await?;
            }
            FloorPool::Postgres(pool) => {
                sqlx::raw_sql(sql::DROP).execute(pool).await?;
            }
        }
        Ok(())
    }
}

/// One request loop of the floor: a durable one-row insert per transaction.
#[derive(Debug)]
struct FloorWorker {
    pool: FloorPool,
    rng: StdRng,
}

impl Worker for FloorWorker {
    async fn op(&mut self) -> Result<(), String> {
        let value: i64 = self.rng.random_range(1..=1_000_000_000);
        let committed = match &self.pool {
            FloorPool::Sqlite(pool) => sqlite_transaction(pool, value).await,
            FloorPool::Postgres(pool) => sqlx::query(sql::POSTGRES_INSERT)
                .bind(value) // $1
                .execute(pool)
                .await
                .map(|_| ()),
        };
        committed.map_err(|error| error_key(&error))
    }
}

async fn sqlite_transaction(pool: &SqlitePool, value: i64) -> Result<(), sqlx::Error> {
    let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
    sqlx::query(sql::SQLITE_INSERT)
        .bind(format!("{value:x}")) // $1
        .bind(value) // $2
        .execute(&mut *tx)
        .await?;
    tx.commit().await
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

    pub const SQLITE_INSERT: &str = "insert into bench_floor (k, v) values ($1, $2)";

    /// pgbench's statement: the key's md5 is computed by the server, as there.
    pub const POSTGRES_INSERT: &str = "insert into bench_floor (k, v) values (md5($1::text), $1)";
}
