//! Bulk seeding by SQL (never by RPC), so that its cost stays flat as the data grows: a few
//! `insert ... select` statements over `generate_series` (PostgreSQL) or a recursive CTE
//! (SQLite), in one durable transaction. What it writes keeps every ledger invariant, so
//! `omo verify` holds after seeding (the report summaries are then rebuilt from it, see
//! `setup.rs`):
//!
//! - members `m_bench_<n>` with the card `bench-<n>`, each with one available lot of
//!   1,000,000 points, the stored balance of `member:m_bench_<n>`, and the journal entry that
//!   explains it: one `adjust` transaction with one posting `program:adjustments` → member.
//!   The lots expire over a year of quarter hours starting 30 days out, as the lots of a live
//!   program do, so that the liability report has a year of expiry quarters to add up;
//! - with the `location` scenario, 100,000 stores `bench-geo-<n>` on a grid (see
//!   `scenarios::geo_store_location`), each with a 100 m fence;
//! - `--prefill-postings`: a year of history, as transactions of two postings each: points
//!   earned (`program:issued` → member) and the same points redeemed (member →
//!   `program:redeemed:<channel>[:<store>]`). Balances and lots stay as they were, but every
//!   entry shows in the reports: spread evenly over the past 365 days, four in five at the
//!   register of one of 100 stores `bench-store-<k>` (Asia/Tokyo, seeded here; each of those
//!   sales is also a visit), one in five an EC order;
//! - with the `report-campaign` scenario, the campaign `bench-stats` and one coupon of it per
//!   member, issued over the past year: four in ten redeemed within 30 days of issue, the others
//!   active while their 30 days last and expired after; each with the journal entry that moved
//!   its unit (`campaign:bench-stats` → member, then on to `...:redeemed` or `...:expired`) and,
//!   while active, the member's stored coupon balance.

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
    scenarios::{GEO_COLUMNS, GEO_ORIGIN, GEO_STEP_DEG, STATS_CAMPAIGN_ID},
};
use crate::domain::{
    Money,
    coupon::{Campaign, Discount},
};
use crate::store::SUMMARY_TABLES;

/// Points in each member's seeded lot.
pub const SEED_POINTS: i64 = 1_000_000;
/// The seeded lots expire from this many days after seeding (so none expires during a run) ...
const SEED_EXPIRY_FIRST_DAYS: i64 = 30;
/// ... spread evenly over this many quarter hours (a year) after that.
const SEED_EXPIRY_QUARTERS: i64 = 365 * 96;
const QUARTER_MICROS: i64 = 15 * 60 * 1_000_000;
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// Stores `bench-store-<k>`, k = 1..=HISTORY_STORES, where the prefilled register sales were.
pub const HISTORY_STORES: u64 = 100;
/// Their zone, and its offset from UTC (Tokyo keeps no daylight saving time): SQLite dates a
/// visit by the offset, PostgreSQL by the zone.
const HISTORY_TIME_ZONE: &str = "Asia/Tokyo";
const HISTORY_UTC_OFFSET_S: i64 = 9 * 3600;
/// The prefilled history (and the `bench-stats` coupons) spread evenly over this many seconds
/// (a year) before the seeding, the first transaction oldest, as in a journal.
const HISTORY_SECONDS: i64 = 365 * DAY_S;
/// Every HISTORY_EC_EVERY-th prefilled transaction is an EC order; the others are register
/// sales at store (i / HISTORY_EC_EVERY) % HISTORY_STORES + 1, which spreads every store over
/// every day.
const HISTORY_EC_EVERY: i64 = 5;
/// `bench-stats` coupons stay valid this long after issue.
const STATS_VALIDITY_DAYS: i32 = 30;
/// Of every ten members' coupons, this many were redeemed.
const STATS_REDEEMED_PER_TEN: i64 = 4;
/// The discount each redeemed `bench-stats` coupon gave (yen).
const STATS_DISCOUNT_YEN: i64 = 100;
const DAY_S: i64 = 24 * 3600;

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
    /// The campaign `bench-stats` with one coupon per member (`report-campaign`).
    pub stats_coupons: bool,
}

impl SeedPlan {
    fn prefill_transactions(&self) -> i64 {
        to_i64(self.prefill_postings / 2)
    }
}

fn to_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// The campaign of the `report-campaign` scenario, as `CreateCampaign` would have stored it a
/// year before the seeding: ¥100 off, coupons valid for 30 days, no limits.
fn stats_campaign(now: DateTime<Utc>) -> Campaign {
    Campaign {
        campaign_id: STATS_CAMPAIGN_ID.into(),
        name: "omo bench stats campaign".into(),
        discount: Discount::AmountOff(Money::from_decimal_saturating(STATS_DISCOUNT_YEN.into())),
        min_spend: Money::ZERO,
        channels: Vec::new(),
        store_ids: Vec::new(),
        starts_at: None,
        ends_at: None,
        validity_days: STATS_VALIDITY_DAYS,
        per_member_limit: 0,
        issue_limit: 0,
        stackable: true,
        public_code: None,
        issue_on_capture: None,
        variants: Vec::new(),
        eligible: Default::default(),
        created_at: now - chrono::Duration::days(366),
        stock_parts: 0,
    }
}

fn stats_validity_s() -> i64 {
    i64::from(STATS_VALIDITY_DAYS) * DAY_S
}

/// Starts from nothing: deletes the SQLite file (with its -wal and -shm), or drops and
/// re-creates the PostgreSQL database named in the URL (which must contain "bench").
pub async fn reset_database(url: &str) -> Result<(), BenchError> {
    match Backend::of(url) {
        Backend::Sqlite => reset_sqlite(url),
        Backend::Postgres => reset_postgres(url).await,
    }
}

/// The file behind a `sqlite:` URL, as sqlx reads the URL (query parameters and all).
pub(super) fn sqlite_file(url: &str) -> Result<std::path::PathBuf, BenchError> {
    Ok(SqliteConnectOptions::from_str(url)?
        .get_filename()
        .to_path_buf())
}

fn reset_sqlite(url: &str) -> Result<(), BenchError> {
    if url.contains(":memory:") || url.contains("mode=memory") {
        return Err(BenchError::Usage(
            "an in-memory SQLite database cannot be shared with the server process".into(),
        ));
    }
    let path = sqlite_file(url)?;
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
        sqlite_history(&mut tx, plan, now).await?;
    }
    if plan.stats_coupons {
        sqlite_stats_coupons(&mut tx, plan, now).await?;
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
    let first_expiry_us = (now + chrono::Duration::days(SEED_EXPIRY_FIRST_DAYS)).timestamp_micros();
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
        .bind(first_expiry_us) // $3
        .bind(SEED_POINTS) // $4
        .bind(SEED_EXPIRY_QUARTERS) // $5
        .bind(QUARTER_MICROS) // $6
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

/// The stores of the history, its transactions with their two postings each, and the visits
/// of its register sales.
async fn sqlite_history(
    tx: &mut SqliteConnection,
    plan: SeedPlan,
    now: DateTime<Utc>,
) -> Result<(), BenchError> {
    let now_us = now.timestamp_micros();
    sqlx::query(sqlite::HISTORY_STORES)
        .bind(to_i64(HISTORY_STORES)) // $1
        .bind(HISTORY_TIME_ZONE) // $2
        .bind(now_us) // $3
        .execute(&mut *tx)
        .await?;
    let before: i64 = sqlx::query_scalar(LAST_TRANSACTION_ID)
        .fetch_one(&mut *tx)
        .await?;
    sqlx::query(sqlite::PREFILL_TRANSACTIONS)
        .bind(plan.prefill_transactions()) // $1
        .bind(to_i64(plan.members)) // $2
        .bind(now_us) // $3
        .bind(to_i64(HISTORY_STORES)) // $4
        .bind(HISTORY_EC_EVERY) // $5
        .bind(HISTORY_SECONDS) // $6
        .execute(&mut *tx)
        .await?;
    for sql in [sqlite::PREFILL_EARNINGS, sqlite::PREFILL_REDEMPTIONS] {
        sqlx::query(sql)
            .bind(before) // $1
            .execute(&mut *tx)
            .await?;
    }
    sqlx::query(sqlite::PREFILL_VISITS)
        .bind(before) // $1
        .bind(HISTORY_UTC_OFFSET_S) // $2
        .execute(&mut *tx)
        .await?;
    Ok(())
}

/// The `bench-stats` campaign, its coupons, their journal entries and coupon balances.
async fn sqlite_stats_coupons(
    tx: &mut SqliteConnection,
    plan: SeedPlan,
    now: DateTime<Utc>,
) -> Result<(), BenchError> {
    let campaign = stats_campaign(now);
    sqlx::query(sqlite::STATS_CAMPAIGN)
        .bind(&campaign.campaign_id) // $1
        .bind(serde_json::to_string(&campaign)?) // $2
        .bind(campaign.created_at.timestamp_micros()) // $3
        .execute(&mut *tx)
        .await?;
    sqlx::query(sqlite::STATS_COUPONS)
        .bind(to_i64(plan.members)) // $1
        .bind(STATS_CAMPAIGN_ID) // $2
        .bind(now.timestamp_micros()) // $3
        .bind(stats_validity_s()) // $4
        .bind(STATS_REDEEMED_PER_TEN) // $5
        .bind(HISTORY_SECONDS) // $6
        .bind(STATS_DISCOUNT_YEN.to_string()) // $7
        .execute(&mut *tx)
        .await?;
    let before: i64 = sqlx::query_scalar(LAST_TRANSACTION_ID)
        .fetch_one(&mut *tx)
        .await?;
    for sql in [sqlite::STATS_TRANSACTIONS, sqlite::STATS_BALANCES] {
        sqlx::query(sql)
            .bind(STATS_CAMPAIGN_ID) // $1
            .execute(&mut *tx)
            .await?;
    }
    for sql in [sqlite::STATS_ISSUE_POSTINGS, sqlite::STATS_SETTLE_POSTINGS] {
        sqlx::query(sql)
            .bind(before) // $1
            .bind(STATS_CAMPAIGN_ID) // $2
            .execute(&mut *tx)
            .await?;
    }
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
        postgres_history(&mut tx, plan, now).await?;
    }
    if plan.stats_coupons {
        postgres_stats_coupons(&mut tx, plan, now).await?;
    }
    tx.commit().await?;
    // Fresh statistics for what was seeded, so the planner knows those sizes from the first
    // request on. Only those tables: an empty table analyzed as empty gets plans made for zero
    // rows, which a server keeps (generic plans) until autovacuum analyzes it again, a minute or
    // more into the run; a live database never analyzes a table while it is empty.
    // Vacuumed (frozen) and checkpointed too, as a live database's old rows are: otherwise the
    // first scenario after a large seed pays for setting every page's hint bits and for the
    // checkpoint of the load (at 1,000,000 members `sale`, run first, measured 929/s, and
    // `hot` after it 1,276/s).
    let mut seeded = String::from(
        "vacuum (freeze, analyze) members, identifiers, point_lots, balances, transactions, \
         postings, stores",
    );
    if plan.prefill_transactions() > 0 {
        seeded.push_str(", visits");
    }
    if plan.stats_coupons {
        seeded.push_str(", campaigns, coupons");
    }
    conn.execute(seeded.as_str()).await?;
    // CHECKPOINT needs a superuser or pg_checkpoint: without it the run starts anyway.
    if let Err(error) = conn.execute("checkpoint").await {
        eprintln!(
            "omo bench: no checkpoint after seeding ({error}); the first scenario may pay for it"
        );
    }
    conn.close().await?;
    Ok(())
}

async fn postgres_members(
    tx: &mut PgConnection,
    plan: SeedPlan,
    now: DateTime<Utc>,
) -> Result<(), BenchError> {
    let members = to_i64(plan.members);
    let first_expiry = now + chrono::Duration::days(SEED_EXPIRY_FIRST_DAYS);
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
        .bind(first_expiry) // $3
        .bind(SEED_POINTS) // $4
        .bind(SEED_EXPIRY_QUARTERS) // $5
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

async fn postgres_history(
    tx: &mut PgConnection,
    plan: SeedPlan,
    now: DateTime<Utc>,
) -> Result<(), BenchError> {
    sqlx::query(postgres::HISTORY_STORES)
        .bind(to_i64(HISTORY_STORES)) // $1
        .bind(HISTORY_TIME_ZONE) // $2
        .execute(&mut *tx)
        .await?;
    let before: i64 = sqlx::query_scalar(LAST_TRANSACTION_ID)
        .fetch_one(&mut *tx)
        .await?;
    sqlx::query(postgres::PREFILL_TRANSACTIONS)
        .bind(plan.prefill_transactions()) // $1
        .bind(to_i64(plan.members)) // $2
        .bind(now) // $3
        .bind(to_i64(HISTORY_STORES)) // $4
        .bind(HISTORY_EC_EVERY) // $5
        .bind(HISTORY_SECONDS) // $6
        .execute(&mut *tx)
        .await?;
    for sql in [postgres::PREFILL_EARNINGS, postgres::PREFILL_REDEMPTIONS] {
        sqlx::query(sql)
            .bind(before) // $1
            .execute(&mut *tx)
            .await?;
    }
    sqlx::query(postgres::PREFILL_VISITS)
        .bind(before) // $1
        .bind(HISTORY_TIME_ZONE) // $2
        .execute(&mut *tx)
        .await?;
    Ok(())
}

async fn postgres_stats_coupons(
    tx: &mut PgConnection,
    plan: SeedPlan,
    now: DateTime<Utc>,
) -> Result<(), BenchError> {
    let campaign = stats_campaign(now);
    sqlx::query(postgres::STATS_CAMPAIGN)
        .bind(&campaign.campaign_id) // $1
        .bind(serde_json::to_string(&campaign)?) // $2
        .bind(campaign.created_at) // $3
        .execute(&mut *tx)
        .await?;
    sqlx::query(postgres::STATS_COUPONS)
        .bind(to_i64(plan.members)) // $1
        .bind(STATS_CAMPAIGN_ID) // $2
        .bind(now) // $3
        .bind(stats_validity_s()) // $4
        .bind(STATS_REDEEMED_PER_TEN) // $5
        .bind(HISTORY_SECONDS) // $6
        .bind(STATS_DISCOUNT_YEN) // $7
        .execute(&mut *tx)
        .await?;
    let before: i64 = sqlx::query_scalar(LAST_TRANSACTION_ID)
        .fetch_one(&mut *tx)
        .await?;
    for sql in [postgres::STATS_TRANSACTIONS, postgres::STATS_BALANCES] {
        sqlx::query(sql)
            .bind(STATS_CAMPAIGN_ID) // $1
            .execute(&mut *tx)
            .await?;
    }
    for sql in [
        postgres::STATS_ISSUE_POSTINGS,
        postgres::STATS_SETTLE_POSTINGS,
    ] {
        sqlx::query(sql)
            .bind(before) // $1
            .bind(STATS_CAMPAIGN_ID) // $2
            .execute(&mut *tx)
            .await?;
    }
    Ok(())
}

/// After the summaries were rebuilt: their row counts per table (what a report reads), and on
/// PostgreSQL fresh statistics for them, for the reason the seeded tables get theirs.
pub async fn summaries_ready(url: &str) -> Result<Vec<(&'static str, i64)>, BenchError> {
    let mut counts = Vec::with_capacity(SUMMARY_TABLES.len());
    match Backend::of(url) {
        Backend::Sqlite => {
            let mut conn = SqliteConnectOptions::from_str(url)?
                .busy_timeout(BUSY_TIMEOUT)
                .disable_statement_logging()
                .connect()
                .await?;
            for table in SUMMARY_TABLES {
                let sql = format!("select count(*) from {table}");
                counts.push((table, sqlx::query_scalar(&sql).fetch_one(&mut conn).await?));
            }
            conn.close().await?;
        }
        Backend::Postgres => {
            let mut conn = PgConnectOptions::from_str(url)?
                .disable_statement_logging()
                .connect()
                .await?;
            conn.execute(format!("analyze {}", SUMMARY_TABLES.join(", ")).as_str())
                .await?;
            for table in SUMMARY_TABLES {
                let sql = format!("select count(*) from {table}");
                counts.push((table, sqlx::query_scalar(&sql).fetch_one(&mut conn).await?));
            }
            conn.close().await?;
        }
    }
    Ok(counts)
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

    /// Lot n of $1 expires in quarter hour (n - 1) * $5 / $1 ($6 µs each) after $3.
    pub const LOTS: &str = r"
        with recursive n(i) as (select 1 union all select i + 1 from n where i < $1)
        insert into point_lots (
            member_id, order_id, state, earned_at, matures_at, expires_at,
            original_points, remaining_points, held_points
        )
        select 'm_bench_' || i, '', 'available', $2, null, $3 + ((i - 1) * $5 / $1) * $6,
            $4, $4, 0
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

    /// `bench-store-<k>`, k = 1..=$1, in zone $2, far north of the geo grid so that no
    /// location report falls inside one of them.
    pub const HISTORY_STORES: &str = r"
        with recursive n(i) as (select 1 union all select i + 1 from n where i < $1)
        insert into stores (
            store_id, name, latitude, longitude, time_zone, geofence_radius_m,
            geofence_polygon, created_at
        )
        select 'bench-store-' || i, 'bench history store ' || i, 43.0 + i * 0.01, 141.35,
            $2, 100.0, '[]', $3
        from n
        ";

    /// $1 transactions, round-robin over the $2 members, evenly over the $6 seconds before
    /// $3 (the last a minute before); every $5-th on EC, the others at one of the $4 history
    /// stores.
    pub const PREFILL_TRANSACTIONS: &str = r#"
        with recursive n(i) as (select 1 union all select i + 1 from n where i < $1)
        insert into transactions (
            kind, member_id, occurred_at, recorded_at, channel, store_id, order_id, metadata
        )
        select 'bench_prefill', 'm_bench_' || ((i - 1) % $2 + 1), at, at,
            case when i % $5 = 0 then 'ec' else 'store' end,
            case when i % $5 = 0 then '' else 'bench-store-' || ((i / $5) % $4 + 1) end,
            '', '{"reason":"omo bench prefill: points earned and redeemed"}'
        from (select i, $3 - (60 + ($1 - i) * $6 / $1) * 1000000 as at from n)
        "#;

    /// The points each prefilled transaction (after id $1) earned...
    pub const PREFILL_EARNINGS: &str = r"
        insert into postings (
            transaction_id, posting_no, from_account, to_account, asset, amount
        )
        select transaction_id, 1, 'program:issued', 'member:' || member_id, 'PTS',
            1 + transaction_id % 50
        from transactions
        where transaction_id > $1
        ";

    /// ... and redeemed, at its channel and store.
    pub const PREFILL_REDEMPTIONS: &str = r"
        insert into postings (
            transaction_id, posting_no, from_account, to_account, asset, amount
        )
        select transaction_id, 2, 'member:' || member_id,
            'program:redeemed:' || channel
                || case when store_id = '' then '' else ':' || store_id end,
            'PTS', 1 + transaction_id % 50
        from transactions
        where transaction_id > $1
        ";

    /// A register sale is a visit (one per member, store and local date: the first wins),
    /// dated in the stores' zone, $2 seconds ahead of UTC.
    pub const PREFILL_VISITS: &str = r"
        insert or ignore into visits (member_id, store_id, visit_date, first_at, source)
        select member_id, store_id, date(occurred_at / 1000000 + $2, 'unixepoch'), occurred_at,
            'sale'
        from transactions
        where transaction_id > $1
          and store_id <> ''
        ";

    pub const STATS_CAMPAIGN: &str = r"
        insert into campaigns (campaign_id, public_code, body, created_at)
        values ($1, null, $2, $3)
        ";

    /// Member i's coupon of campaign $2, issued age_s seconds before $3 (evenly over the $6
    /// seconds before it, member 1 oldest) and valid for $4 seconds: the first $5 of every ten
    /// redeemed (some time before now and before it ran out, discount $7), the others active
    /// or expired by their age.
    pub const STATS_COUPONS: &str = r"
        with recursive n(i) as (select 1 union all select i + 1 from n where i < $1)
        insert into coupons (
            code, campaign_id, variant_id, member_id, state, valid_from, valid_until, source,
            order_id, redeemed_at, issued_at, discount
        )
        select 'BENCH-STATS-' || i, $2, '', 'm_bench_' || i,
            case
                when i % 10 < $5 then 'redeemed'
                when age_s < $4 then 'active'
                else 'expired'
            end,
            $3 - age_s * 1000000, $3 + ($4 - age_s) * 1000000, 'admin', '',
            case
                when i % 10 < $5 then $3 - (age_s - (i * 7919) % min(age_s, $4)) * 1000000
            end,
            $3 - age_s * 1000000,
            case when i % 10 < $5 then $7 end
        from (select i, 60 + ($1 - i) * $6 / $1 as age_s from n)
        ";

    /// One journal entry per coupon of campaign $1, at its issue.
    pub const STATS_TRANSACTIONS: &str = r"
        insert into transactions (
            kind, member_id, occurred_at, recorded_at, channel, store_id, order_id, metadata
        )
        select 'bench_coupon', member_id, issued_at, issued_at, null, '', '',
            json_object('code', code, 'reason', 'omo bench: a coupon for report-campaign')
        from coupons
        where campaign_id = $1
        ";

    /// The unit each coupon entry (after id $1) issued to its member...
    pub const STATS_ISSUE_POSTINGS: &str = r"
        insert into postings (
            transaction_id, posting_no, from_account, to_account, asset, amount
        )
        select transaction_id, 1, 'campaign:' || $2, 'member:' || member_id, 'CPN:' || $2, 1
        from transactions
        where transaction_id > $1
        ";

    /// ... and, for a coupon redeemed or expired, where the unit went.
    pub const STATS_SETTLE_POSTINGS: &str = r"
        insert into postings (
            transaction_id, posting_no, from_account, to_account, asset, amount
        )
        select t.transaction_id, 2, 'member:' || t.member_id, 'campaign:' || $2 || ':' || c.state,
            'CPN:' || $2, 1
        from transactions t
        join coupons c on c.member_id = t.member_id and c.campaign_id = $2
        where t.transaction_id > $1
          and c.state in ('redeemed', 'expired')
        ";

    /// The stored coupon balance of each member whose coupon is active.
    pub const STATS_BALANCES: &str = r"
        insert into balances (account, asset, balance)
        select 'member:' || member_id, 'CPN:' || $1, 1
        from coupons
        where campaign_id = $1 and state = 'active'
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

    /// Lot n of $1 expires in quarter hour (n - 1) * $5 / $1 after $3.
    pub const LOTS: &str = r"
        insert into point_lots (
            member_id, order_id, state, earned_at, matures_at, expires_at,
            original_points, remaining_points, held_points
        )
        select 'm_bench_' || i, '', 'available', $2, null,
            $3 + ((i - 1) * $5::bigint / $1::bigint) * interval '15 minutes', $4, $4, 0
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

    /// `bench-store-<k>`, k = 1..=$1, in zone $2, far north of the geo grid so that no
    /// location report falls inside one of them.
    pub const HISTORY_STORES: &str = r"
        insert into stores (
            store_id, name, latitude, longitude, time_zone, geofence_radius_m, geofence_polygon
        )
        select 'bench-store-' || i, 'bench history store ' || i, 43.0 + i * 0.01, 141.35,
            $2::text, 100, '[]'::jsonb
        from generate_series(1, $1::bigint) as n(i)
        ";

    /// $1 transactions, round-robin over the $2 members, evenly over the $6 seconds before
    /// $3 (the last a minute before); every $5-th on EC, the others at one of the $4 history
    /// stores.
    pub const PREFILL_TRANSACTIONS: &str = r#"
        insert into transactions (
            kind, member_id, occurred_at, recorded_at, channel, store_id, order_id, metadata
        )
        select 'bench_prefill', 'm_bench_' || ((i - 1) % $2 + 1), at, at,
            case when i % $5 = 0 then 'ec' else 'store' end,
            case when i % $5 = 0 then '' else 'bench-store-' || ((i / $5) % $4 + 1) end,
            '', '{"reason":"omo bench prefill: points earned and redeemed"}'::jsonb
        from generate_series(1, $1::bigint) as n(i),
            lateral (
                select $3::timestamptz - (60 + ($1 - i) * $6::bigint / $1) * interval '1 second'
            ) as t(at)
        "#;

    /// The points each prefilled transaction (after id $1) earned...
    pub const PREFILL_EARNINGS: &str = r"
        insert into postings (
            transaction_id, posting_no, from_account, to_account, asset, amount
        )
        select transaction_id, 1, 'program:issued', 'member:' || member_id, 'PTS',
            1 + transaction_id % 50
        from transactions
        where transaction_id > $1
        ";

    /// ... and redeemed, at its channel and store.
    pub const PREFILL_REDEMPTIONS: &str = r"
        insert into postings (
            transaction_id, posting_no, from_account, to_account, asset, amount
        )
        select transaction_id, 2, 'member:' || member_id,
            'program:redeemed:' || channel
                || case when store_id = '' then '' else ':' || store_id end,
            'PTS', 1 + transaction_id % 50
        from transactions
        where transaction_id > $1
        ";

    /// A register sale is a visit (one per member, store and local date in zone $2).
    pub const PREFILL_VISITS: &str = r"
        insert into visits (member_id, store_id, visit_date, first_at, source)
        select member_id, store_id, (occurred_at at time zone $2::text)::date, occurred_at,
            'sale'
        from transactions
        where transaction_id > $1
          and store_id <> ''
        on conflict do nothing
        ";

    pub const STATS_CAMPAIGN: &str = r"
        insert into campaigns (campaign_id, public_code, body, created_at)
        values ($1, null, $2::jsonb, $3)
        ";

    /// Member i's coupon of campaign $2, issued age_s seconds before $3 (evenly over the $6
    /// seconds before it, member 1 oldest) and valid for $4 seconds: the first $5 of every ten
    /// redeemed (some time before now and before it ran out, discount $7), the others active
    /// or expired by their age.
    pub const STATS_COUPONS: &str = r"
        insert into coupons (
            code, campaign_id, variant_id, member_id, state, valid_from, valid_until, source,
            order_id, redeemed_at, issued_at, discount
        )
        select 'BENCH-STATS-' || i, $2, '', 'm_bench_' || i,
            case
                when i % 10 < $5 then 'redeemed'
                when age_s < $4 then 'active'
                else 'expired'
            end,
            $3 - age_s * interval '1 second', $3 + ($4 - age_s) * interval '1 second', 'admin', '',
            case
                when i % 10 < $5
                then $3 - (age_s - (i * 7919) % least(age_s, $4)) * interval '1 second'
            end,
            $3 - age_s * interval '1 second',
            case when i % 10 < $5 then $7::numeric end
        from generate_series(1, $1::bigint) as n(i),
            lateral (select 60 + ($1 - i) * $6::bigint / $1) as a(age_s)
        ";

    /// One journal entry per coupon of campaign $1, at its issue.
    pub const STATS_TRANSACTIONS: &str = r"
        insert into transactions (
            kind, member_id, occurred_at, recorded_at, channel, store_id, order_id, metadata
        )
        select 'bench_coupon', member_id, issued_at, issued_at, null, '', '',
            jsonb_build_object(
                'code', code, 'reason', 'omo bench: a coupon for report-campaign'
            )
        from coupons
        where campaign_id = $1
        ";

    /// The unit each coupon entry (after id $1) issued to its member...
    pub const STATS_ISSUE_POSTINGS: &str = r"
        insert into postings (
            transaction_id, posting_no, from_account, to_account, asset, amount
        )
        select transaction_id, 1, 'campaign:' || $2::text, 'member:' || member_id,
            'CPN:' || $2::text, 1
        from transactions
        where transaction_id > $1
        ";

    /// ... and, for a coupon redeemed or expired, where the unit went.
    pub const STATS_SETTLE_POSTINGS: &str = r"
        insert into postings (
            transaction_id, posting_no, from_account, to_account, asset, amount
        )
        select t.transaction_id, 2, 'member:' || t.member_id,
            'campaign:' || $2::text || ':' || c.state, 'CPN:' || $2::text, 1
        from transactions t
        join coupons c on c.member_id = t.member_id and c.campaign_id = $2::text
        where t.transaction_id > $1
          and c.state in ('redeemed', 'expired')
        ";

    /// The stored coupon balance of each member whose coupon is active.
    pub const STATS_BALANCES: &str = r"
        insert into balances (account, asset, balance)
        select 'member:' || member_id, 'CPN:' || $1::text, 1
        from coupons
        where campaign_id = $1::text and state = 'active'
        ";
}
