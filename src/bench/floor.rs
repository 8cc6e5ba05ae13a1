//! The SQL floor: what one durable transaction per request costs on this machine and database,
//! with no gRPC and no engine: `begin; insert a posting; update a balance; commit` through a
//! sqlx pool, at the same concurrency as the scenarios, in scratch tables of the same database
//! (created, seeded, and dropped again here).

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

/// At most this many balance rows (one per member).
const MAX_ACCOUNTS: u64 = 100_000;
/// PostgreSQL connections: the concurrency, up to the server's own pool size.
const MAX_PG_CONNECTIONS: usize = 32;
/// SQLite connections. SQLite has one writer at a time; waiting writers sleep in its busy
/// handler. Measured on 2 cores at concurrency 64: 1 connection ~2,300/s, 2-4 ~2,900/s,
/// 8 and more slower with long tails (busy-handler sleeps), so the floor keeps 4.
const SQLITE_CONNECTIONS: u32 = 4;
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, Clone)]
enum FloorPool {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

pub async fn run(args: &BenchArgs) -> Result<ScenarioResult, BenchError> {
    let accounts = args.members.min(MAX_ACCOUNTS);
    let pool = FloorPool::open(args.database_url.expose(), args.concurrency).await?;
    pool.create_tables(accounts).await?;
    let workers: Vec<FloorWorker> = (0..args.concurrency)
        .map(|_| FloorWorker {
            pool: pool.clone(),
            rng: StdRng::from_rng(&mut rand::rng()),
            accounts,
        })
        .collect();
    let measured = load::drive(workers, args.duration).await;
    pool.drop_tables().await?;
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
                    .max_connections(SQLITE_CONNECTIONS)
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

    async fn create_tables(&self, accounts: u64) -> Result<(), BenchError> {
        let accounts = i64::try_from(accounts).unwrap_or(i64::MAX);
        self.drop_tables().await?;
        match self {
            FloorPool::Sqlite(pool) => {
                sqlx::raw_sql(sql::SQLITE_CREATE).execute(pool).await?;
                sqlx::query(sql::SQLITE_SEED)
                    .bind(accounts) // $1
                    .execute(pool)
                    .await?;
            }
            FloorPool::Postgres(pool) => {
                sqlx::raw_sql(sql::POSTGRES_CREATE).execute(pool).await?;
                sqlx::query(sql::POSTGRES_SEED)
                    .bind(accounts) // $1
                    .execute(pool)
                    .await?;
            }
        }
        Ok(())
    }

    async fn drop_tables(&self) -> Result<(), BenchError> {
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

/// One request loop of the floor: a durable two-statement transaction on a random account.
#[derive(Debug)]
struct FloorWorker {
    pool: FloorPool,
    rng: StdRng,
    accounts: u64,
}

impl Worker for FloorWorker {
    async fn op(&mut self) -> Result<(), String> {
        let account = format!(
            "member:m_bench_{}",
            self.rng.random_range(1..=self.accounts)
        );
        let committed = match &self.pool {
            FloorPool::Sqlite(pool) => sqlite_transaction(pool, &account).await,
            FloorPool::Postgres(pool) => postgres_transaction(pool, &account).await,
        };
        committed.map_err(|error| error_key(&error))
    }
}

async fn sqlite_transaction(pool: &SqlitePool, account: &str) -> Result<(), sqlx::Error> {
    let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
    sqlx::query(sql::INSERT_POSTING)
        .bind(account) // $1
        .execute(&mut *tx)
        .await?;
    sqlx::query(sql::UPDATE_BALANCE)
        .bind(account) // $1
        .execute(&mut *tx)
        .await?;
    tx.commit().await
}

async fn postgres_transaction(pool: &PgPool, account: &str) -> Result<(), sqlx::Error> {
    let mut tx = pool.begin().await?;
    sqlx::query(sql::INSERT_POSTING)
        .bind(account) // $1
        .execute(&mut *tx)
        .await?;
    sqlx::query(sql::UPDATE_BALANCE)
        .bind(account) // $1
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
        create table bench_floor_balances (account text primary key, balance bigint not null);
        create table bench_floor_postings (
            id integer primary key, account text not null, amount bigint not null
        );
        ";

    pub const POSTGRES_CREATE: &str = r"
        create table bench_floor_balances (account text primary key, balance bigint not null);
        create table bench_floor_postings (
            id bigserial primary key, account text not null, amount bigint not null
        );
        ";

    pub const SQLITE_SEED: &str = r"
        with recursive n(i) as (select 1 union all select i + 1 from n where i < $1)
        insert into bench_floor_balances (account, balance)
        select 'member:m_bench_' || i, 0
        from n
        ";

    pub const POSTGRES_SEED: &str = r"
        insert into bench_floor_balances (account, balance)
        select 'member:m_bench_' || i, 0
        from generate_series(1, $1::bigint) as n(i)
        ";

    pub const DROP: &str = r"
        drop table if exists bench_floor_postings;
        drop table if exists bench_floor_balances;
        ";

    pub const INSERT_POSTING: &str = r"
        insert into bench_floor_postings (account, amount)
        values ($1, 1)
        ";

    pub const UPDATE_BALANCE: &str = r"
        update bench_floor_balances
        set balance = balance + 1
        where account = $1
        ";
}
