//! Bulk seeding by SQL (never by RPC), so that its cost stays flat as the data grows: a few
//! `insert ... select` statements over `generate_series` (PostgreSQL) or a recursive CTE
//! (SQLite), in one durable transaction. What it writes keeps every ledger invariant, so
//! `omo verify` holds after seeding:
//!
//! - members `m_bench_<n>` with the card `bench-<n>`, each with one available lot of
//!   1,000,000 points, the stored balance of `member:m_bench_<n>`, and the journal entry that
//!   explains it: one `adjust` transaction with one posting `program:adjustments` → member;
//! - with the `location` scenario, 100,000 stores `bench-geo-<n>` on a grid (see
//!   `scenarios::geo_store_location`), each with a 100 m fence;
//! - `--prefill-postings`: history, as transactions of two postings each (member →
//!   `program:redeemed:store:bench-store` and back, same amount), spread over the members;
//!   they leave every balance and lot unchanged.

use std::{str::FromStr, time::Duration};

use chrono::{DateTime, Utc};
use sqlx::{
    ConnectOptions, Connection, Executor, PgConnection, SqliteConnection,
    postgres::PgConnectOptions,
    sqlite::{SqliteConnectOptions, SqliteJournalMode, SqliteSynchronous},
};
use tokio::time::Instant;

use super::{
    BenchError,
    scenarios::{GEO_COLUMNS, GEO_ORIGIN, GEO_STEP_DEG},
};

/// Points in each member's seeded lot.
pub const SEED_POINTS: i64 = 1_000_000;
/// Days until the seeded lots expire (the program's default expiry).
const SEED_EXPIRY_DAYS: i64 = 365;
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    pub fn of(url: &str) -> Backend {
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Backend::Postgres
        } else {
            Backend::Sqlite
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgres",
        }
    }
}

/// What to write.
#[derive(Debug, Clone, Copy)]
pub struct SeedPlan {
    pub members: u64,
    /// Rounded down to an even number: postings come in pairs.
    pub prefill_postings: u64,
    /// Stores `bench-geo-<n>` for the `location` scenario.
    pub geo_stores: u64,
}

impl SeedPlan {
    fn prefill_transactions(&self) -> i64 {
        to_i64(self.prefill_postings / 2)
    }
}

fn to_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// Starts from nothing: deletes the SQLite file (with its -wal and -shm), or drops and
/// re-creates the PostgreSQL database named in the URL (which must contain "bench").
pub async fn reset_database(url: &str) -> Result<(), BenchError> {
    match Backend::of(url) {
        Backend::Sqlite => reset_sqlite(url),
        Backend::Postgres => reset_postgres(url).await,
    }
}

fn reset_sqlite(url: &str) -> Result<(), BenchError> {
    if url.contains(":memory:") || url.contains("mode=memory") {
        return Err(BenchError::Usage(
            "an in-memory SQLite database cannot be shared with the server process".into(),
        ));
    }
    let path = SqliteConnectOptions::from_str(url)?
        .get_filename()
        .to_path_buf();
    for suffix in ["", "-wal", "-shm"] {
        let mut file = path.clone().into_os_string();
        file.push(suffix);
        match std::fs::remove_file(&file) {
            Err(error) if error.kind() != std::io::ErrorKind::NotFound => return Err(error.into()),
            _ => {}
        }
    }
    Ok(())
}

async fn reset_postgres(url: &str) -> Result<(), BenchError> {
    let options = PgConnectOptions::from_str(url)?;
    let name = options.get_database().unwrap_or_default().to_string();
    if !name.contains("bench") {
        return Err(BenchError::Usage(format!(
            "the bench drops and re-creates its PostgreSQL database; {name:?} does not \
             contain \"bench\", so it is left alone (name a scratch database like omo_bench)"
        )));
    }
    let mut admin = options
        .database("postgres")
        .disable_statement_logging()
        .connect()
        .await?;
    // An identifier, not a value: it cannot be a bind parameter, so it is quoted.
    let quoted = format!("\"{}\"", name.replace('"', "\"\""));
    admin
        .execute(format!("drop database if exists {quoted} with (force)").as_str())
        .await?;
    admin
        .execute(format!("create database {quoted}").as_str())
        .await?;
    admin.close().await?;
    Ok(())
}

/// Seeds `plan` into the (migrated, empty) database at `url`; returns how long it took.
pub async fn seed(url: &str, plan: SeedPlan) -> Result<Duration, BenchError> {
    let started = Instant::now();
    let now = Utc::now();
    match Backend::of(url) {
        Backend::Sqlite => seed_sqlite(url, plan, now).await?,
        Backend::Postgres => seed_postgres(url, plan, now).await?,
    }
    Ok(started.elapsed())
}

async fn seed_sqlite(url: &str, plan: SeedPlan, now: DateTime<Utc>) -> Result<(), BenchError> {
    let mut conn: SqliteConnection = SqliteConnectOptions::from_str(url)?
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Full)
        .busy_timeout(BUSY_TIMEOUT)
        .disable_statement_logging()
        .connect()
        .await?;
    let mut tx = conn.begin_with("BEGIN IMMEDIATE").await?;
    sqlite_members(&mut tx, plan, now).await?;
    if plan.geo_stores > 0 {
        sqlx::query(sqlite::GEO_STORES)
            .bind(to_i64(plan.geo_stores)) // $1
            .bind(GEO_ORIGIN.0) // $2
            .bind(GEO_ORIGIN.1) // $3
            .bind(to_i64(GEO_COLUMNS)) // $4
            .bind(GEO_STEP_DEG) // $5
            .bind(now.timestamp_micros()) // $6
            .execute(&mut *tx)
            .await?;
    }
    if plan.prefill_transactions() > 0 {
        let before: i64 = sqlx::query_scalar(LAST_TRANSACTION_ID)
            .fetch_one(&mut *tx)
            .await?;
        sqlx::query(sqlite::PREFILL_TRANSACTIONS)
            .bind(plan.prefill_transactions()) // $1
            .bind(to_i64(plan.members)) // $2
            .bind(now.timestamp_micros()) // $3
            .execute(&mut *tx)
            .await?;
        for sql in [sqlite::PREFILL_POSTINGS_OUT, sqlite::PREFILL_POSTINGS_BACK] {
            sqlx::query(sql)
                .bind(before) // $1
                .execute(&mut *tx)
                .await?;
        }
    }
    tx.commit().await?;
    conn.close().await?;
    Ok(())
}

/// Members, identifiers, lots, balances and the journal entries that explain them.
async fn sqlite_members(
    tx: &mut SqliteConnection,
    plan: SeedPlan,
    now: DateTime<Utc>,
) -> Result<(), BenchError> {
    let members = to_i64(plan.members);
    let now_us = now.timestamp_micros();
    let expires_us = (now + chrono::Duration::days(SEED_EXPIRY_DAYS)).timestamp_micros();
    sqlx::query(sqlite::MEMBERS)
        .bind(members) // $1
        .bind(now_us) // $2
        .execute(&mut *tx)
        .await?;
    sqlx::query(sqlite::IDENTIFIERS)
        .bind(members) // $1
        .execute(&mut *tx)
        .await?;
    sqlx::query(sqlite::LOTS)
        .bind(members) // $1
        .bind(now_us) // $2
        .bind(expires_us) // $3
        .bind(SEED_POINTS) // $4
        .execute(&mut *tx)
        .await?;
    sqlx::query(sqlite::BALANCES)
        .bind(members) // $1
        .bind(SEED_POINTS) // $2
        .execute(&mut *tx)
        .await?;
    let before: i64 = sqlx::query_scalar(LAST_TRANSACTION_ID)
        .fetch_one(&mut *tx)
        .await?;
    sqlx::query(sqlite::SEED_TRANSACTIONS)
        .bind(members) // $1
        .bind(now_us) // $2
        .execute(&mut *tx)
        .await?;
    sqlx::query(sqlite::SEED_POSTINGS)
        .bind(before) // $1
        .bind(SEED_POINTS) // $2
        .execute(&mut *tx)
        .await?;
    Ok(())
}

/// The newest journal entry so far: what a bulk insert appends comes after it.
const LAST_TRANSACTION_ID: &str = "select coalesce(max(transaction_id), 0) from transactions";

async fn seed_postgres(url: &str, plan: SeedPlan, now: DateTime<Utc>) -> Result<(), BenchError> {
    let mut conn: PgConnection = PgConnectOptions::from_str(url)?
        .disable_statement_logging()
        .connect()
        .await?;
    let mut tx = conn.begin().await?;
    postgres_members(&mut tx, plan, now).await?;
    if plan.geo_stores > 0 {
        sqlx::query(postgres::GEO_STORES)
            .bind(to_i64(plan.geo_stores)) // $1
            .bind(GEO_ORIGIN.0) // $2
            .bind(GEO_ORIGIN.1) // $3
            .bind(to_i64(GEO_COLUMNS)) // $4
            .bind(GEO_STEP_DEG) // $5
            .execute(&mut *tx)
            .await?;
    }
    if plan.prefill_transactions() > 0 {
        let before: i64 = sqlx::query_scalar(LAST_TRANSACTION_ID)
            .fetch_one(&mut *tx)
            .await?;
        sqlx::query(postgres::PREFILL_TRANSACTIONS)
            .bind(plan.prefill_transactions()) // $1
            .bind(to_i64(plan.members)) // $2
            .bind(now) // $3
            .execute(&mut *tx)
            .await?;
        for sql in [
            postgres::PREFILL_POSTINGS_OUT,
            postgres::PREFILL_POSTINGS_BACK,
        ] {
            sqlx::query(sql)
                .bind(before) // $1
                .execute(&mut *tx)
                .await?;
        }
    }
    tx.commit().await?;
    // Fresh statistics for what was seeded, so the planner knows those sizes from the first
    // request on. Only those tables: an empty table analyzed as empty gets plans made for zero
    // rows, which a server keeps (generic plans) until autovacuum analyzes it again, a minute or
    // more into the run; a live database never analyzes a table while it is empty.
    conn.execute(
        "analyze members, identifiers, point_lots, balances, transactions, postings, stores",
    )
    .await?;
    conn.close().await?;
    Ok(())
}

async fn postgres_members(
    tx: &mut PgConnection,
    plan: SeedPlan,
    now: DateTime<Utc>,
) -> Result<(), BenchError> {
    let members = to_i64(plan.members);
    let expires_at = now + chrono::Duration::days(SEED_EXPIRY_DAYS);
    sqlx::query(postgres::MEMBERS)
        .bind(members) // $1
        .bind(now) // $2
        .execute(&mut *tx)
        .await?;
    sqlx::query(postgres::IDENTIFIERS)
        .bind(members) // $1
        .execute(&mut *tx)
        .await?;
    sqlx::query(postgres::LOTS)
        .bind(members) // $1
        .bind(now) // $2
        .bind(expires_at) // $3
        .bind(SEED_POINTS) // $4
        .execute(&mut *tx)
        .await?;
    sqlx::query(postgres::BALANCES)
        .bind(members) // $1
        .bind(SEED_POINTS) // $2
        .execute(&mut *tx)
        .await?;
    let before: i64 = sqlx::query_scalar(LAST_TRANSACTION_ID)
        .fetch_one(&mut *tx)
        .await?;
    sqlx::query(postgres::SEED_TRANSACTIONS)
        .bind(members) // $1
        .bind(now) // $2
        .execute(&mut *tx)
        .await?;
    sqlx::query(postgres::SEED_POSTINGS)
        .bind(before) // $1
        .bind(SEED_POINTS) // $2
        .execute(&mut *tx)
        .await?;
    Ok(())
}

/// The SQLite statements: `n(i)` counts 1..=$1 by a recursive CTE.
mod sqlite {
    /// Store n on row (n - 1) / $4 and column (n - 1) % $4 of the grid.
    pub const GEO_STORES: &str = r"
        with recursive n(i) as (select 1 union all select i + 1 from n where i < $1)
        insert into stores (
            store_id, name, latitude, longitude, time_zone, geofence_radius_m,
            geofence_polygon, created_at
        )
        select 'bench-geo-' || i, 'bench geo store ' || i,
            $2 + ((i - 1) / $4) * $5, $3 + ((i - 1) % $4) * $5,
            'Asia/Tokyo', 100.0, '[]', $6
        from n
        ";

    pub const MEMBERS: &str = r"
        with recursive n(i) as (select 1 union all select i + 1 from n where i < $1)
        insert into members (
            member_id, display_name, state, merged_into, created_at,
            lifetime_earned_points, lifetime_redeemed_points
        )
        select 'm_bench_' || i, 'bench member ' || i, 'active', null, $2, 0, 0
        from n
        ";

    pub const IDENTIFIERS: &str = r"
        with recursive n(i) as (select 1 union all select i + 1 from n where i < $1)
        insert into identifiers (kind, value, member_id)
        select 'card', 'bench-' || i, 'm_bench_' || i
        from n
        ";

    pub const LOTS: &str = r"
        with recursive n(i) as (select 1 union all select i + 1 from n where i < $1)
        insert into point_lots (
            member_id, order_id, state, earned_at, matures_at, expires_at,
            original_points, remaining_points, held_points
        )
        select 'm_bench_' || i, '', 'available', $2, null, $3, $4, $4, 0
        from n
        ";

    pub const BALANCES: &str = r"
        with recursive n(i) as (select 1 union all select i + 1 from n where i < $1)
        insert into balances (account, asset, balance)
        select 'member:m_bench_' || i, 'PTS', $2
        from n
        ";

    pub const SEED_TRANSACTIONS: &str = r#"
        with recursive n(i) as (select 1 union all select i + 1 from n where i < $1)
        insert into transactions (
            kind, member_id, occurred_at, recorded_at, channel, store_id, order_id, metadata
        )
        select 'adjust', 'm_bench_' || i, $2, $2, null, '', '', '{"reason":"omo bench seed"}'
        from n
        "#;

    /// One posting per seed transaction (those after id $1).
    pub const SEED_POSTINGS: &str = r"
        insert into postings (
            transaction_id, posting_no, from_account, to_account, asset, amount
        )
        select transaction_id, 0, 'program:adjustments', 'member:' || member_id, 'PTS', $2
        from transactions
        where transaction_id > $1
        ";

    /// $1 transactions, round-robin over the $2 members.
    pub const PREFILL_TRANSACTIONS: &str = r#"
        with recursive n(i) as (select 1 union all select i + 1 from n where i < $1)
        insert into transactions (
            kind, member_id, occurred_at, recorded_at, channel, store_id, order_id, metadata
        )
        select 'bench_prefill', 'm_bench_' || ((i - 1) % $2 + 1), $3, $3, 'store',
               'bench-store', '', '{"reason":"omo bench prefill: redeemed and restored"}'
        from n
        "#;

    pub const PREFILL_POSTINGS_OUT: &str = r"
        insert into postings (
            transaction_id, posting_no, from_account, to_account, asset, amount
        )
        select transaction_id, 0, 'member:' || member_id,
               'program:redeemed:store:bench-store', 'PTS', 1 + transaction_id % 50
        from transactions
        where transaction_id > $1
        ";

    pub const PREFILL_POSTINGS_BACK: &str = r"
        insert into postings (
            transaction_id, posting_no, from_account, to_account, asset, amount
        )
        select transaction_id, 1, 'program:redeemed:store:bench-store',
               'member:' || member_id, 'PTS', 1 + transaction_id % 50
        from transactions
        where transaction_id > $1
        ";
}

/// The PostgreSQL statements: `generate_series(1, $1)` counts.
mod postgres {
    /// Store n on row (n - 1) / $4 and column (n - 1) % $4 of the grid.
    pub const GEO_STORES: &str = r"
        insert into stores (
            store_id, name, latitude, longitude, time_zone, geofence_radius_m, geofence_polygon
        )
        select 'bench-geo-' || i, 'bench geo store ' || i,
            $2 + ((i - 1) / $4) * $5, $3 + ((i - 1) % $4) * $5,
            'Asia/Tokyo', 100, '[]'::jsonb
        from generate_series(1, $1) as i
        ";

    pub const MEMBERS: &str = r"
        insert into members (
            member_id, display_name, state, merged_into, created_at,
            lifetime_earned_points, lifetime_redeemed_points
        )
        select 'm_bench_' || i, 'bench member ' || i, 'active', null, $2, 0, 0
        from generate_series(1, $1::bigint) as n(i)
        ";

    pub const IDENTIFIERS: &str = r"
        insert into identifiers (kind, value, member_id)
        select 'card', 'bench-' || i, 'm_bench_' || i
        from generate_series(1, $1::bigint) as n(i)
        ";

    pub const LOTS: &str = r"
        insert into point_lots (
            member_id, order_id, state, earned_at, matures_at, expires_at,
            original_points, remaining_points, held_points
        )
        select 'm_bench_' || i, '', 'available', $2, null, $3, $4, $4, 0
        from generate_series(1, $1::bigint) as n(i)
        ";

    pub const BALANCES: &str = r"
        insert into balances (account, asset, balance)
        select 'member:m_bench_' || i, 'PTS', $2
        from generate_series(1, $1::bigint) as n(i)
        ";

    pub const SEED_TRANSACTIONS: &str = r#"
        insert into transactions (
            kind, member_id, occurred_at, recorded_at, channel, store_id, order_id, metadata
        )
        select 'adjust', 'm_bench_' || i, $2, $2, null, '', '',
               '{"reason":"omo bench seed"}'::jsonb
        from generate_series(1, $1::bigint) as n(i)
        "#;

    pub const SEED_POSTINGS: &str = r"
        insert into postings (
            transaction_id, posting_no, from_account, to_account, asset, amount
        )
        select transaction_id, 0, 'program:adjustments', 'member:' || member_id, 'PTS', $2
        from transactions
        where transaction_id > $1
        ";

    pub const PREFILL_TRANSACTIONS: &str = r#"
        insert into transactions (
            kind, member_id, occurred_at, recorded_at, channel, store_id, order_id, metadata
        )
        select 'bench_prefill', 'm_bench_' || ((i - 1) % $2 + 1), $3, $3, 'store',
               'bench-store', '', '{"reason":"omo bench prefill: redeemed and restored"}'::jsonb
        from generate_series(1, $1::bigint) as n(i)
        "#;

    pub const PREFILL_POSTINGS_OUT: &str = r"
        insert into postings (
            transaction_id, posting_no, from_account, to_account, asset, amount
        )
        select transaction_id, 0, 'member:' || member_id,
               'program:redeemed:store:bench-store', 'PTS', 1 + transaction_id % 50
        from transactions
        where transaction_id > $1
        ";

    pub const PREFILL_POSTINGS_BACK: &str = r"
        insert into postings (
            transaction_id, posting_no, from_account, to_account, asset, amount
        )
        select transaction_id, 1, 'program:redeemed:store:bench-store',
               'member:' || member_id, 'PTS', 1 + transaction_id % 50
        from transactions
        where transaction_id > $1
        ";
}
