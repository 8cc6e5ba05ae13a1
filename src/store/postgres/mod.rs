//! PostgreSQL backend of the storage port: the production store, shared by several service
//! replicas. Nothing here relies on a lock inside one process. Writers run at READ COMMITTED
//! and serialise on row locks: the rows the engine locks (members, orders, campaigns, coupons,
//! in its fixed order) and the balance rows a flush updates (in sorted order).
//! Whatever PostgreSQL reports as a lost race comes back as [`StoreError::Conflict`], and the
//! engine runs the whole unit of work again.
//!
//! Layout, the same as the SQLite backend's so the two read side by side: this file holds the
//! store, its pools, units of work and errors, the column lists several files share, and the
//! port's implementation, whose every method runs its area's SQL: `members.rs` (members and
//! identifiers), `journal.rs` (transactions, postings, balances), `lots.rs`, `orders.rs`
//! (orders and order lots), `coupons.rs` (campaigns and coupons), `reports.rs` (the reports' sums), `reference.rs` (program and
//! stores), `keys.rs` (API keys and idempotency records), `verify.rs` (due work and the
//! verifier's snapshot); `batch.rs` holds a batch's bulk load, id reservations and flush, which
//! binds the areas' set-based statements.

use std::{fmt::Display, str::FromStr, time::Duration};

use async_trait::async_trait;
use chrono::{DateTime, NaiveDate, Utc};
use rust_decimal::Decimal;
use serde::de::DeserializeOwned;
use sqlx::{
    Connection as _, Decode, Postgres, Row, Type,
    postgres::{PgArguments, PgConnectOptions, PgConnection, PgPool, PgPoolOptions, PgRow},
};

use super::to_json;
use crate::domain::{
    Money,
    coupon::{Campaign, Coupon},
    location::{GeoRule, IssueFacts, VisitRule},
    model::{self, Channel, Identifier, Lot, MemberRow, Order, OrderLot, Program, Transaction},
    ports::{
        ActivityWindow, ApiKeyRecord, CampaignSums, ChangeSet, DueWork, IdempotencyRecord, Keys,
        LedgerReads, LedgerSnapshot, LiabilityLots, Loaded, Presence, ReceiptPageQuery,
        RuleCounter, RuleTotals, Sequence, Store, StoreError, StoreResult, UnitOfWork, Visit,
    },
    receipt::{ReceiptClaim, ReceiptRecord, ReceiptRule},
    rules::Rule,
    seal::Seal,
    session::DashboardSession,
    summary::ReportSums,
};
use crate::metrics::FlushLap;

type PgQuery<'q> = sqlx::query::Query<'q, Postgres, PgArguments>;

/// Connections per replica, in two pools so that a flood of reads never keeps the writers
/// waiting for a connection: the group-commit writers (`WRITERS`) plus a few for the sweeper and
/// retried commands; and readers, enough to keep PostgreSQL busy on a few cores (more would
/// only add processes competing for them). A unit of work holds one for its whole life.
const WRITE_CONNECTIONS: u32 = WRITERS as u32 + 4;
/// Both pools together stay small enough that three replicas and their tools fit in
/// PostgreSQL's default `max_connections` (100) with room to spare.
const READ_CONNECTIONS: u32 = 8;
/// Group-commit writers: PostgreSQL commits in parallel, and while one writer waits for a
/// round trip another can work. Fewer writers make bigger batches, and a batch costs six round
/// trips whatever its size: on 2 cores with 64 streams, 4 writers beat 8 on sale and checkout
/// throughput and p99 in alternating `omo bench` runs (`OMO_WRITERS` overrides it).
const WRITERS: usize = 4;
/// How long a unit of work waits for a free connection before it fails.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(10);

/// SQLSTATE codes that mean "this unit of work lost a race; run it again".
const SERIALIZATION_FAILURE: &str = "40001";
const DEADLOCK_DETECTED: &str = "40P01";
const LOCK_NOT_AVAILABLE: &str = "55P03";
/// Settings of every omo session (see `PostgresStore::connect`). `omo verify` reads the whole
/// ledger in one statement per check and lifts the statement timeout for its own transaction.
const SESSION_SETTINGS: [(&str, &str); 4] = [
    ("synchronous_commit", "on"),
    ("lock_timeout", "5s"),
    ("statement_timeout", "30s"),
    ("idle_in_transaction_session_timeout", "60s"),
];
/// The engine checks for a row before inserting it, so a duplicate key means another replica
/// inserted it in between: the retry sees the row and takes the "already exists" path.
const UNIQUE_VIOLATION: &str = "23505";

/// Read-write units of work: READ COMMITTED, made explicit so that a server whose default is
/// stricter behaves the same. Correctness comes from row locks, not from the isolation level.
const BEGIN_WRITE: &str = "begin isolation level read committed";
/// Read-only units of work see one consistent snapshot (`omo verify`, queries, the sweeper).
const BEGIN_READ: &str = "begin isolation level repeatable read, read only";

/// SQLSTATEs of a session the server ended: terminated by an administrator
/// (`pg_terminate_backend`) or a fast shutdown, a crashed sibling, a server starting or
/// stopping. Class 08 (connection exception) is matched by its prefix.
const ADMIN_SHUTDOWN: &str = "57P01";
const CRASH_SHUTDOWN: &str = "57P02";
const CANNOT_CONNECT_NOW: &str = "57P03";
const CONNECTION_EXCEPTION_CLASS: &str = "08";

/// The one place a database error becomes a [`StoreError`]: by SQLSTATE or sqlx's error
/// kind, never by message.
fn map_err(e: sqlx::Error) -> StoreError {
    match e {
        // The pool waited its whole acquire timeout (retrying refused connections meanwhile),
        // or it is closed (the server is shutting down): nothing was done.
        sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed => {
            return StoreError::Unavailable(e.to_string());
        }
        // The socket broke (reset by peer, broken pipe, end of stream).
        sqlx::Error::Io(_) => return StoreError::ConnectionLost(e.to_string()),
        _ => {}
    }
    let code = e.as_database_error().and_then(|db| db.code());
    match code.as_deref() {
        Some(SERIALIZATION_FAILURE | DEADLOCK_DETECTED | LOCK_NOT_AVAILABLE | UNIQUE_VIOLATION) => {
            StoreError::Conflict(e.to_string())
        }
        Some(ADMIN_SHUTDOWN | CRASH_SHUTDOWN | CANNOT_CONNECT_NOW) => {
            StoreError::ConnectionLost(e.to_string())
        }
        Some(code) if code.starts_with(CONNECTION_EXCEPTION_CLASS) => {
            StoreError::ConnectionLost(e.to_string())
        }
        _ => StoreError::Database(Box::new(e)),
    }
}

#[derive(Debug, Clone)]
pub struct PostgresStore {
    writes: PgPool,
    reads: PgPool,
}

impl PostgresStore {
    /// Connects and brings the schema up to date (sqlx takes an advisory lock, so replicas
    /// starting together migrate once). `synchronous_commit` stays on: an acknowledged write is
    /// on disk.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        // Every statement on the hot path is a keyed lookup or a small unnest. Generic plans:
        // PostgreSQL would otherwise plan the unnest statements anew on every execution (their
        // custom plans look cheaper than a generic plan that assumes ten rows per array). No
        // sequential scans: a plan made while a table was still small would otherwise keep
        // scanning it after it has grown (O(history) per command). `ledger_snapshot`, which
        // reads whole tables, turns scans and joins back on for its own transaction. No JIT: it pays off
        // for long analytic queries, never for these (and a disabled scan's inflated cost
        // would make PostgreSQL compile even a one-row lookup). No hash or merge joins, for
        // the same reason: a batch statement joins a few unnested keys to a table, and a plan
        // made while that table was empty (idempotency keys, orders, at a fresh start) would
        // otherwise hash or merge the whole table on every batch; a nested loop of index
        // lookups costs the batch's size, whatever the table's.
        let base = PgConnectOptions::from_str(url).map_err(map_err)?;
        let options = base.clone().options([
            ("plan_cache_mode", "force_generic_plan"),
            ("enable_seqscan", "off"),
            ("enable_hashjoin", "off"),
            ("enable_mergejoin", "off"),
            ("jit", "off"),
        ]);
        // Safe on any server, whatever its defaults: commits are durable, a lock waited on too
        // long becomes a retryable conflict (55P03), no statement runs away, and a session that
        // dies inside a transaction does not hold its locks for ever.
        let options = options.options(SESSION_SETTINGS);
        let pool = |connections| {
            PgPoolOptions::new()
                .max_connections(connections)
                .acquire_timeout(ACQUIRE_TIMEOUT)
                .connect_lazy_with(options.clone())
        };
        let (writes, reads) = (pool(WRITE_CONNECTIONS), pool(READ_CONNECTIONS));
        // Migrations on a connection of their own, without those timeouts: a replica waits on
        // sqlx's advisory lock while another migrates, and a migration may take long.
        let mut migrator = PgConnection::connect_with(&base).await.map_err(map_err)?;
        migrate_if_pending(&mut migrator).await?;
        migrator.close().await.map_err(map_err)?;
        Ok(Self { writes, reads })
    }
}

/// Runs the migrations the database lacks (or whose files changed, which sqlx then reports).
/// See [`super::pending_migrations`]: read in a read-only transaction.
pub(super) async fn pending_migrations(url: &str) -> StoreResult<Vec<i64>> {
    use sqlx::Connection as _;
    let mut connection = PgConnection::connect(url).await.map_err(map_err)?;
    let applied = applied_migrations(&mut connection).await?;
    let migrator = sqlx::migrate!("migrations/postgres");
    Ok(migrator
        .iter()
        .filter(|m| applied.get(&m.version).map(Vec::as_slice) != Some(&*m.checksum))
        .map(|m| m.version)
        .collect())
}

/// The versions and checksums of the migrations the database has applied.
async fn applied_migrations(
    connection: &mut PgConnection,
) -> Result<std::collections::HashMap<i64, Vec<u8>>, StoreError> {
    let has_table: bool = sqlx::query_scalar("select to_regclass('_sqlx_migrations') is not null")
        .fetch_one(&mut *connection)
        .await
        .map_err(map_err)?;
    if !has_table {
        return Ok(Default::default());
    }
    Ok(
        sqlx::query_as("select version, checksum from _sqlx_migrations where success")
            .fetch_all(&mut *connection)
            .await
            .map_err(map_err)?
            .into_iter()
            .collect(),
    )
}

/// A database already up to date is not touched, so that once `omo migrate` has run as the
/// schema's owner, servers may run as a role without DDL rights (README, Security).
async fn migrate_if_pending(connection: &mut PgConnection) -> Result<(), StoreError> {
    let migrator = sqlx::migrate!("migrations/postgres");
    let applied = applied_migrations(connection).await?;
    let up_to_date = migrator
        .iter()
        .all(|m| applied.get(&m.version).map(Vec::as_slice) == Some(&*m.checksum));
    if up_to_date {
        return Ok(());
    }
    migrator
        .run(connection)
        .await
        .map_err(|e| StoreError::Database(Box::new(e)))
}

#[async_trait]
impl Store for PostgresStore {
    async fn begin(&self) -> StoreResult<Box<dyn UnitOfWork>> {
        let tx = self.writes.begin_with(BEGIN_WRITE).await.map_err(map_err)?;
        Ok(Box::new(PgUnitOfWork::new(Connection::Transaction(tx))))
    }

    async fn begin_read(&self) -> StoreResult<Box<dyn UnitOfWork>> {
        let tx = self.reads.begin_with(BEGIN_READ).await.map_err(map_err)?;
        Ok(Box::new(PgUnitOfWork::new(Connection::Transaction(tx))))
    }

    /// A pooled connection in autocommit mode: BEGIN and COMMIT would be two of three round
    /// trips.
    async fn begin_read_statement(&self) -> StoreResult<Box<dyn UnitOfWork>> {
        let connection = self.reads.acquire().await.map_err(map_err)?;
        Ok(Box::new(PgUnitOfWork::new(Connection::Autocommit(
            connection,
        ))))
    }

    fn backend_name(&self) -> &'static str {
        "postgres"
    }

    fn parallel_writers(&self) -> usize {
        WRITERS
    }

    /// Transaction-level advisory locks (see `verify::due_work`).
    fn due_work_claims_rows(&self) -> bool {
        true
    }

    /// Closes both pools: waits for connections in use, then ends each session cleanly.
    async fn close(&self) {
        self.writes.close().await;
        self.reads.close().await;
    }
}

/// One database transaction. Dropped without `commit`, it rolls back.
struct PgUnitOfWork {
    tx: Connection,
}

// ---------------------------------------------------------------------------------------------
// Decoding rows.

/// One row being decoded: names the table, column and row of any value that does not read back.
struct Cols<'r> {
    row: &'r PgRow,
    table: &'static str,
    /// The column that names the row in error messages (text or bigint).
    key_column: &'static str,
}

impl<'r> Cols<'r> {
    fn new(row: &'r PgRow, table: &'static str, key_column: &'static str) -> Self {
        Self {
            row,
            table,
            key_column,
        }
    }

    fn corrupt(&self, column: &str, why: impl Display) -> StoreError {
        let key = self.key_column;
        let row = self
            .row
            .try_get::<String, _>(key)
            .or_else(|_| self.row.try_get::<i64, _>(key).map(|id| id.to_string()))
            .map_or_else(
                |_| format!("{key} unreadable"),
                |value| format!("{key} = {value:?}"),
            );
        StoreError::Corrupt(format!("{}.{column} ({row}): {why}", self.table))
    }

    fn get<T: Decode<'r, Postgres> + Type<Postgres>>(&self, column: &str) -> StoreResult<T> {
        self.row
            .try_get(column)
            .map_err(|e| self.corrupt(column, e))
    }

    /// A text column holding one of an enum's names.
    fn parse<T>(&self, column: &str, parse: impl FnOnce(&str) -> Option<T>) -> StoreResult<T> {
        let text: &str = self.get(column)?;
        parse(text).ok_or_else(|| self.corrupt(column, format!("unknown value {text:?}")))
    }

    fn channel_opt(&self, column: &str) -> StoreResult<Option<Channel>> {
        let text: Option<&str> = self.get(column)?;
        text.map(|t| {
            Channel::parse(t).ok_or_else(|| self.corrupt(column, format!("unknown channel {t:?}")))
        })
        .transpose()
    }

    fn money(&self, column: &str) -> StoreResult<Money> {
        let amount: Decimal = self.get(column)?;
        Money::new(amount).map_err(|e| self.corrupt(column, format!("{amount}: {e}")))
    }

    fn opt_money(&self, column: &str) -> StoreResult<Option<Money>> {
        let amount: Option<Decimal> = self.get(column)?;
        amount
            .map(|amount| {
                Money::new(amount).map_err(|e| self.corrupt(column, format!("{amount}: {e}")))
            })
            .transpose()
    }

    /// A jsonb column, selected as `column::text as column`.
    fn json<T: DeserializeOwned>(&self, column: &str) -> StoreResult<T> {
        let text: &str = self.get(column)?;
        serde_json::from_str(text).map_err(|e| self.corrupt(column, e))
    }
}

fn string_from_row(row: &PgRow, table: &'static str, column: &'static str) -> StoreResult<String> {
    Cols::new(row, table, column).get(column)
}

// ---------------------------------------------------------------------------------------------
// Column lists that the areas and the batch's bulk load share.

/// Declares a select and its locking twin. `for no key update` is PostgreSQL's row lock for
/// "I am about to update this row, not its key": it excludes every other locker and writer of
/// the row like `for update` does, but not the foreign-key checks of inserts that merely
/// reference it (a coupon of a locked campaign, an identifier of a locked member), which
/// `for update` would make wait and could deadlock against.
macro_rules! select_and_lock {
    ($plain:ident, $locked:ident, $($sql:tt)+) => {
        const $plain: &str = $($sql)+;
        const $locked: &str = concat!($($sql)+, "\nfor no key update");
    };
}

/// The columns of a member, for the member queries below.
macro_rules! select_members {
    () => {
        r#"
select member_id, display_name, state, merged_into, created_at,
    lifetime_earned_points, lifetime_redeemed_points, attributes::text as attributes, erased_at,
    tier_id, tier_since, tier_reviewed_at
from members"#
    };
}

/// The columns of an order, for the order queries below.
macro_rules! select_orders {
    () => {
        r#"
select order_id, member_id, state, channel, store_id, register_id, receipt_no,
    lines::text as lines, total, coupon_discount, points_redeemed, amount_due,
    points_earned, points_pending, coupon_codes::text as coupon_codes, hold_expires_at,
    refunded_amount, points_reversed, points_restored, occurred_at, created_at,
    earn_breakdown::text as earn_breakdown
from orders"#
    };
}

/// The columns of a lot, for the lot queries below.
macro_rules! lot_columns {
    () => {
        r#"
select lot_id, member_id, order_id, state, earned_at, matures_at, expires_at,
    original_points, remaining_points, held_points, limited"#
    };
}

/// The columns of a coupon, for the coupon queries below.
macro_rules! select_coupons {
    () => {
        r#"
select code, campaign_id, variant_id, member_id, state, valid_from, valid_until, source,
    order_id, redeemed_at, issued_at, discount
from coupons"#
    };
}

// The areas and the batch path (load, reserve_ids, flush): after the column lists above, which
// they share.
mod batch;
mod coupons;
mod engagement;
mod events;
mod import;
mod journal;
mod keys;
mod lots;
mod members;
mod orders;
mod receipts;
mod reference;
mod reports;
mod rules;
mod seals;
mod sessions;
mod tiers;
mod verify;
mod webhooks;

// ---------------------------------------------------------------------------------------------
// Binding a batch's rows.

/// One column of a batch's rows, as an array parameter.
fn column<'a, T, U>(rows: &'a [T], field: impl Fn(&'a T) -> U) -> Vec<U> {
    rows.iter().map(field).collect()
}

/// A column of JSON documents, bound as `text[]` and cast to jsonb in the statement.
fn json_column<'a, T, U: serde::Serialize + ?Sized + 'a>(
    rows: &'a [T],
    field: impl Fn(&'a T) -> &'a U,
) -> StoreResult<Vec<String>> {
    rows.iter().map(|row| to_json(field(row))).collect()
}

// ---------------------------------------------------------------------------------------------
// Units of work.

/// A unit of work's connection: in a transaction, or (one read statement) in autocommit mode.
enum Connection {
    Transaction(sqlx::Transaction<'static, Postgres>),
    Autocommit(sqlx::pool::PoolConnection<Postgres>),
}

impl std::ops::Deref for Connection {
    type Target = sqlx::PgConnection;

    fn deref(&self) -> &Self::Target {
        match self {
            Connection::Transaction(tx) => tx,
            Connection::Autocommit(connection) => connection,
        }
    }
}

impl std::ops::DerefMut for Connection {
    fn deref_mut(&mut self) -> &mut Self::Target {
        match self {
            Connection::Transaction(tx) => tx,
            Connection::Autocommit(connection) => connection,
        }
    }
}

impl PgUnitOfWork {
    fn new(tx: Connection) -> Self {
        Self { tx }
    }

    async fn execute(&mut self, sql: &'static str) -> StoreResult<()> {
        self.run(sqlx::query(sql)).await
    }

    /// Runs a statement for its effect; returns how many rows it touched.
    async fn run_counted(&mut self, query: PgQuery<'_>) -> StoreResult<u64> {
        let result = query.execute(&mut *self.tx).await.map_err(map_err)?;
        Ok(result.rows_affected())
    }

    /// Runs a statement that returns no rows.
    async fn run(&mut self, query: PgQuery<'_>) -> StoreResult<()> {
        self.run_counted(query).await?;
        Ok(())
    }

    /// One column of the one row `query` returns; `table` names it in errors.
    async fn fetch_value<T>(
        &mut self,
        query: PgQuery<'_>,
        table: &'static str,
        column: &'static str,
    ) -> StoreResult<T>
    where
        T: for<'r> Decode<'r, Postgres> + Type<Postgres>,
    {
        let row = query.fetch_one(&mut *self.tx).await.map_err(map_err)?;
        Cols::new(&row, table, column).get(column)
    }

    /// The row `query` finds, if any, decoded.
    async fn fetch_optional<T>(
        &mut self,
        query: PgQuery<'_>,
        decode: impl Fn(&PgRow) -> StoreResult<T>,
    ) -> StoreResult<Option<T>> {
        let row = query.fetch_optional(&mut *self.tx).await.map_err(map_err)?;
        row.as_ref().map(decode).transpose()
    }

    /// Every row `query` finds, decoded.
    async fn fetch_all<T>(
        &mut self,
        query: PgQuery<'_>,
        decode: impl Fn(&PgRow) -> StoreResult<T>,
    ) -> StoreResult<Vec<T>> {
        let rows = query.fetch_all(&mut *self.tx).await.map_err(map_err)?;
        rows.iter().map(decode).collect()
    }

    /// Moves a merged member's rows (identifiers, lots, coupons) to the member it merged into.
    async fn move_member_rows(
        &mut self,
        sql: &'static str,
        from_member_id: &str,
        to_member_id: &str,
    ) -> StoreResult<()> {
        let query = sqlx::query(sql)
            .bind(from_member_id) // $1
            .bind(to_member_id); // $2
        self.run(query).await
    }
}

// ---------------------------------------------------------------------------------------------
// The port: each method runs its area's SQL.

#[async_trait]
impl LedgerReads for PgUnitOfWork {
    async fn find_idempotency(
        &mut self,
        key_id: &str,
        request_id: &str,
    ) -> StoreResult<Option<IdempotencyRecord>> {
        keys::find_idempotency(self, key_id, request_id).await
    }

    async fn load_program(&mut self, lock: bool) -> StoreResult<Option<Program>> {
        reference::load_program(self, lock).await
    }

    async fn get_store(&mut self, store_id: &str) -> StoreResult<Option<model::Store>> {
        reference::get_store(self, store_id).await
    }

    async fn list_stores(&mut self) -> StoreResult<Vec<model::Store>> {
        reference::list_stores(self).await
    }

    async fn get_member(&mut self, member_id: &str, lock: bool) -> StoreResult<Option<MemberRow>> {
        members::get_member(self, member_id, lock).await
    }

    async fn member_by_identifier(
        &mut self,
        identifier: &Identifier,
    ) -> StoreResult<Option<String>> {
        members::member_by_identifier(self, identifier).await
    }

    async fn identifiers(&mut self, member_id: &str) -> StoreResult<Vec<Identifier>> {
        members::identifiers(self, member_id).await
    }

    async fn balance(&mut self, account: &str, asset: &str) -> StoreResult<i64> {
        journal::balance(self, account, asset, false).await
    }

    async fn lock_balance(&mut self, account: &str, asset: &str) -> StoreResult<i64> {
        journal::balance(self, account, asset, true).await
    }

    async fn member_lots(&mut self, member_id: &str) -> StoreResult<Vec<Lot>> {
        lots::member_lots(self, member_id).await
    }

    async fn order_lots(&mut self, order_id: &str) -> StoreResult<Vec<OrderLot>> {
        orders::order_lots(self, order_id).await
    }

    async fn get_lot(&mut self, lot_id: i64) -> StoreResult<Option<Lot>> {
        lots::get_lot(self, lot_id).await
    }

    async fn get_order(&mut self, order_id: &str, lock: bool) -> StoreResult<Option<Order>> {
        orders::get_order(self, order_id, lock).await
    }

    async fn order_by_receipt(
        &mut self,
        store_id: &str,
        register_id: &str,
        receipt_no: &str,
    ) -> StoreResult<Option<String>> {
        orders::order_by_receipt(self, store_id, register_id, receipt_no).await
    }

    async fn member_has_open_orders(&mut self, member_id: &str) -> StoreResult<bool> {
        orders::member_has_open_orders(self, member_id).await
    }

    async fn get_campaign(
        &mut self,
        campaign_id: &str,
        lock: bool,
    ) -> StoreResult<Option<Campaign>> {
        coupons::get_campaign(self, campaign_id, lock).await
    }

    async fn campaign_by_public_code(
        &mut self,
        public_code: &str,
    ) -> StoreResult<Option<Campaign>> {
        coupons::campaign_by_public_code(self, public_code).await
    }

    async fn list_campaigns(&mut self) -> StoreResult<Vec<Campaign>> {
        coupons::list_campaigns(self).await
    }

    async fn count_coupons(
        &mut self,
        campaign_id: &str,
        member_id: Option<&str>,
    ) -> StoreResult<i64> {
        coupons::count_coupons(self, campaign_id, member_id).await
    }

    async fn get_coupon(&mut self, code: &str, lock: bool) -> StoreResult<Option<Coupon>> {
        coupons::get_coupon(self, code, lock).await
    }

    async fn member_coupons(&mut self, member_id: &str) -> StoreResult<Vec<Coupon>> {
        coupons::member_coupons(self, member_id).await
    }

    async fn order_coupons(&mut self, order_id: &str) -> StoreResult<Vec<Coupon>> {
        coupons::order_coupons(self, order_id).await
    }

    async fn count_stores(&mut self) -> StoreResult<i64> {
        PgUnitOfWork::count_stores(self).await
    }

    async fn list_geo_rules(&mut self) -> StoreResult<Vec<GeoRule>> {
        PgUnitOfWork::list_geo_rules(self).await
    }

    async fn list_visit_rules(&mut self) -> StoreResult<Vec<VisitRule>> {
        PgUnitOfWork::list_visit_rules(self).await
    }

    async fn presence(&mut self, member_id: &str) -> StoreResult<Option<Presence>> {
        self.presence_of(member_id).await
    }

    async fn geo_issue_facts(
        &mut self,
        rule_id: &str,
        member_id: &str,
        store_id: &str,
        local_date: NaiveDate,
    ) -> StoreResult<IssueFacts> {
        PgUnitOfWork::geo_issue_facts(self, rule_id, member_id, store_id, local_date).await
    }

    async fn member_visits(
        &mut self,
        member_id: &str,
        since: Option<NaiveDate>,
    ) -> StoreResult<Vec<Visit>> {
        PgUnitOfWork::member_visits(self, member_id, since).await
    }

    async fn last_visit_issue(
        &mut self,
        rule_id: &str,
        member_id: &str,
    ) -> StoreResult<Option<NaiveDate>> {
        PgUnitOfWork::last_visit_issue(self, rule_id, member_id).await
    }

    async fn list_receipt_rules(&mut self) -> StoreResult<Vec<ReceiptRule>> {
        PgUnitOfWork::list_receipt_rules(self).await
    }

    async fn list_rules(&mut self) -> StoreResult<Vec<Rule>> {
        PgUnitOfWork::list_rules(self).await
    }

    async fn get_rule(&mut self, rule_id: &str) -> StoreResult<Option<Rule>> {
        PgUnitOfWork::get_rule(self, rule_id).await
    }

    async fn lock_rules(&mut self, rule_ids: &[String]) -> StoreResult<Vec<Rule>> {
        PgUnitOfWork::lock_rules(self, rule_ids).await
    }

    async fn member_spend(
        &mut self,
        member_id: &str,
        from_month: NaiveDate,
    ) -> StoreResult<Vec<crate::domain::ports::MonthSpend>> {
        PgUnitOfWork::member_spend(self, member_id, from_month).await
    }

    async fn rule_counter(
        &mut self,
        rule_id: &str,
        member_id: &str,
    ) -> StoreResult<Option<RuleCounter>> {
        PgUnitOfWork::rule_counter(self, rule_id, member_id).await
    }

    async fn rule_store_day(
        &mut self,
        rule_id: &str,
        store_id: &str,
        local_date: NaiveDate,
    ) -> StoreResult<i64> {
        PgUnitOfWork::rule_store_day(self, rule_id, store_id, local_date).await
    }

    async fn has_captured_order(&mut self, member_id: &str) -> StoreResult<bool> {
        PgUnitOfWork::has_captured_order(self, member_id).await
    }

    async fn get_receipt(
        &mut self,
        receipt_id: &str,
        lock: bool,
    ) -> StoreResult<Option<ReceiptRecord>> {
        PgUnitOfWork::get_receipt(self, receipt_id, lock).await
    }

    async fn receipt_claimed_by(&mut self, claim: &ReceiptClaim) -> StoreResult<Option<String>> {
        PgUnitOfWork::receipt_claimed_by(self, claim).await
    }

    async fn count_member_receipts(
        &mut self,
        member_id: &str,
        since: DateTime<Utc>,
    ) -> StoreResult<i64> {
        PgUnitOfWork::count_member_receipts(self, member_id, since).await
    }
}

#[async_trait]
impl UnitOfWork for PgUnitOfWork {
    async fn commit(mut self: Box<Self>) -> StoreResult<()> {
        match self.tx {
            Connection::Transaction(tx) => tx.commit().await.map_err(map_err),
            Connection::Autocommit(_) => Ok(()),
        }
    }

    async fn insert_api_key(&mut self, key: &ApiKeyRecord) -> StoreResult<()> {
        keys::insert_api_key(self, key).await
    }

    async fn find_api_key(&mut self, key_hash: &str) -> StoreResult<Option<ApiKeyRecord>> {
        keys::find_api_key(self, key_hash).await
    }

    async fn list_api_keys(&mut self) -> StoreResult<Vec<ApiKeyRecord>> {
        keys::list_api_keys(self).await
    }

    async fn revoke_api_key(&mut self, key_id: &str, at: DateTime<Utc>) -> StoreResult<bool> {
        keys::revoke_api_key(self, key_id, at).await
    }

    async fn touch_api_key(&mut self, key_id: &str, at: DateTime<Utc>) -> StoreResult<()> {
        keys::touch_api_key(self, key_id, at).await
    }

    async fn purge_idempotency(
        &mut self,
        created_before: DateTime<Utc>,
        limit: i64,
    ) -> StoreResult<u64> {
        keys::purge_idempotency(self, created_before, limit).await
    }

    async fn insert_dashboard_session(&mut self, session: &DashboardSession) -> StoreResult<()> {
        sessions::insert_dashboard_session(self, session).await
    }

    async fn find_dashboard_session(
        &mut self,
        session_hash: &str,
    ) -> StoreResult<Option<(DashboardSession, ApiKeyRecord)>> {
        sessions::find_dashboard_session(self, session_hash).await
    }

    async fn touch_dashboard_session(
        &mut self,
        session_hash: &str,
        at: DateTime<Utc>,
    ) -> StoreResult<()> {
        sessions::touch_dashboard_session(self, session_hash, at).await
    }

    async fn delete_dashboard_session(&mut self, session_hash: &str) -> StoreResult<bool> {
        sessions::delete_dashboard_session(self, session_hash).await
    }

    async fn purge_dashboard_sessions(
        &mut self,
        opened_before: DateTime<Utc>,
        seen_before: DateTime<Utc>,
    ) -> StoreResult<u64> {
        sessions::purge_dashboard_sessions(self, opened_before, seen_before).await
    }

    async fn purge_location_reports(
        &mut self,
        recorded_before: DateTime<Utc>,
        limit: i64,
    ) -> StoreResult<u64> {
        PgUnitOfWork::purge_location_reports(self, recorded_before, limit).await
    }

    async fn purge_events(
        &mut self,
        occurred_before: DateTime<Utc>,
        limit: i64,
    ) -> StoreResult<u64> {
        PgUnitOfWork::purge_events(self, occurred_before, limit).await
    }

    async fn clear_receipt_texts(
        &mut self,
        submitted_before: DateTime<Utc>,
        limit: i64,
    ) -> StoreResult<u64> {
        PgUnitOfWork::clear_receipt_texts(self, submitted_before, limit).await
    }

    async fn ensure_program(&mut self, program: &Program) -> StoreResult<()> {
        reference::ensure_program(self, program).await
    }

    async fn member_transactions(
        &mut self,
        member_id: &str,
        before_transaction_id: Option<i64>,
        limit: i64,
    ) -> StoreResult<Vec<Transaction>> {
        journal::member_transactions(self, member_id, before_transaction_id, limit).await
    }

    async fn member_orders(
        &mut self,
        member_id: &str,
        before: Option<&(DateTime<Utc>, String)>,
        limit: i64,
    ) -> StoreResult<Vec<Order>> {
        orders::member_orders(self, member_id, before, limit).await
    }

    async fn list_receipts(&mut self, query: &ReceiptPageQuery) -> StoreResult<Vec<ReceiptRecord>> {
        PgUnitOfWork::list_receipts(self, query).await
    }

    #[tracing::instrument(level = "debug", skip_all)]
    async fn lot_expiry_span(&mut self) -> StoreResult<Option<(DateTime<Utc>, DateTime<Utc>)>> {
        PgUnitOfWork::lot_expiry_span(self).await
    }

    #[tracing::instrument(level = "debug", skip_all)]
    async fn liability_lots(
        &mut self,
        as_of: DateTime<Utc>,
        bounds: &[DateTime<Utc>],
    ) -> StoreResult<LiabilityLots> {
        PgUnitOfWork::liability_lots(self, as_of, bounds).await
    }

    #[tracing::instrument(level = "debug", skip_all)]
    async fn campaign_sums(&mut self, campaign_id: &str) -> StoreResult<CampaignSums> {
        PgUnitOfWork::campaign_sums(self, campaign_id).await
    }

    async fn rule_totals(&mut self, rule_id: Option<&str>) -> StoreResult<Vec<RuleTotals>> {
        PgUnitOfWork::rule_totals(self, rule_id).await
    }

    #[tracing::instrument(level = "debug", skip_all)]
    async fn activity_sums(&mut self, window: &ActivityWindow) -> StoreResult<ReportSums> {
        PgUnitOfWork::activity_sums(self, window).await
    }

    async fn report_sums(&mut self) -> StoreResult<ReportSums> {
        PgUnitOfWork::report_sums(self).await
    }

    async fn recompute_report_sums(&mut self) -> StoreResult<ReportSums> {
        PgUnitOfWork::recompute_report_sums(self).await
    }

    async fn compact_report_sums(
        &mut self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> StoreResult<u64> {
        PgUnitOfWork::compact_report_sums(self, from, to).await
    }

    async fn replace_report_sums(&mut self, sums: &ReportSums) -> StoreResult<()> {
        PgUnitOfWork::replace_report_sums(self, sums).await
    }

    async fn lock_report_sums(&mut self) -> StoreResult<()> {
        PgUnitOfWork::lock_report_sums(self).await
    }

    async fn summary_rebuild_wanted(&mut self) -> StoreResult<bool> {
        PgUnitOfWork::summary_rebuild_wanted(self).await
    }

    async fn member_with_lots(
        &mut self,
        member_id: &str,
    ) -> StoreResult<Option<(MemberRow, Vec<Lot>)>> {
        members::member_with_lots(self, member_id).await
    }

    async fn load(&mut self, keys: &Keys) -> StoreResult<Loaded> {
        let mut loaded = self.load_batch(keys).await?;
        self.load_engagement(keys, &mut loaded).await?;
        Ok(loaded)
    }

    async fn reserve_ids(&mut self, sequence: Sequence, count: usize) -> StoreResult<Vec<i64>> {
        self.reserve(sequence, count).await
    }

    async fn fence_coupon_issues(&mut self) -> StoreResult<()> {
        sqlx::query("lock table coupons in share row exclusive mode")
            .execute(&mut *self.tx)
            .await
            .map_err(map_err)?;
        Ok(())
    }

    async fn flush(&mut self, changes: &ChangeSet) -> StoreResult<()> {
        // One statement writes every ledger table: its time is the `ledger` lap (see FlushLap).
        let mut lap = FlushLap::start();
        self.write_rare_parts(changes).await?;
        lap.reference_done(changes);
        self.flush_changes(changes).await?;
        lap.ledger_done(changes);
        self.flush_engagement(&changes.engagement).await?;
        self.flush_receipts(&changes.engagement).await?;

        lap.engagement_done(changes);
        Ok(())
    }

    async fn insert_webhook(
        &mut self,
        record: &crate::domain::webhook::WebhookRecord,
    ) -> StoreResult<bool> {
        PgUnitOfWork::insert_webhook(self, record).await
    }

    async fn get_webhook(
        &mut self,
        webhook_id: &str,
        lock: bool,
    ) -> StoreResult<Option<crate::domain::webhook::WebhookRecord>> {
        PgUnitOfWork::get_webhook(self, webhook_id, lock).await
    }

    async fn list_webhooks(&mut self) -> StoreResult<Vec<crate::domain::webhook::WebhookRecord>> {
        PgUnitOfWork::list_webhooks(self).await
    }

    async fn update_webhook(
        &mut self,
        record: &crate::domain::webhook::WebhookRecord,
    ) -> StoreResult<()> {
        PgUnitOfWork::update_webhook(self, record).await
    }

    async fn insert_deliveries(
        &mut self,
        deliveries: &[crate::domain::webhook::Delivery],
    ) -> StoreResult<()> {
        PgUnitOfWork::insert_deliveries(self, deliveries).await
    }

    async fn claim_deliveries(
        &mut self,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
        limit: i64,
    ) -> StoreResult<Vec<crate::domain::webhook::Delivery>> {
        PgUnitOfWork::claim_deliveries(self, now, lease_until, limit).await
    }

    async fn oldest_pending_delivery(&mut self) -> StoreResult<Option<DateTime<Utc>>> {
        PgUnitOfWork::oldest_pending_delivery(self).await
    }

    async fn save_delivery(
        &mut self,
        delivery: &crate::domain::webhook::Delivery,
    ) -> StoreResult<()> {
        PgUnitOfWork::save_delivery(self, delivery).await
    }

    async fn list_deliveries(
        &mut self,
        webhook_id: &str,
        state: Option<crate::domain::webhook::DeliveryState>,
        after_seq: i64,
        limit: i64,
    ) -> StoreResult<Vec<crate::domain::webhook::Delivery>> {
        PgUnitOfWork::list_deliveries(self, webhook_id, state, after_seq, limit).await
    }

    async fn event_audit(&mut self) -> StoreResult<crate::domain::event::EventAudit> {
        PgUnitOfWork::event_audit(self).await
    }

    async fn expiring_lots(
        &mut self,
        from: DateTime<Utc>,
        until: DateTime<Utc>,
        limit: i64,
    ) -> StoreResult<Vec<crate::domain::event::ExpiringLot>> {
        PgUnitOfWork::expiring_lots(self, from, until, limit).await
    }

    async fn expiring_coupons(
        &mut self,
        from: DateTime<Utc>,
        until: DateTime<Utc>,
        limit: i64,
    ) -> StoreResult<Vec<crate::domain::event::ExpiringCoupon>> {
        PgUnitOfWork::expiring_coupons(self, from, until, limit).await
    }

    async fn number_events(&mut self, limit: i64) -> StoreResult<i64> {
        PgUnitOfWork::number_events(self, limit).await
    }

    async fn list_events(
        &mut self,
        filter: &crate::domain::event::EventFilter,
    ) -> StoreResult<Vec<crate::domain::event::Event>> {
        PgUnitOfWork::list_events(self, filter).await
    }

    async fn members_due_tier_review(
        &mut self,
        reviewed_before: DateTime<Utc>,
        after_member_id: &str,
        limit: i64,
    ) -> StoreResult<Vec<String>> {
        PgUnitOfWork::members_due_tier_review(self, reviewed_before, after_member_id, limit).await
    }

    async fn due_work(&mut self, now: DateTime<Utc>, limit: i64) -> StoreResult<DueWork> {
        verify::due_work(self, now, limit).await
    }

    async fn tier_audit(&mut self) -> StoreResult<crate::domain::ports::TierAudit> {
        PgUnitOfWork::tier_audit(self).await
    }

    async fn ledger_snapshot(&mut self) -> StoreResult<LedgerSnapshot> {
        verify::ledger_snapshot(self).await
    }

    async fn lapsed_candidates(
        &mut self,
        rule_id: &str,
        store_ids: &[String],
        last_visit_by: NaiveDate,
        after_member_id: &str,
        limit: i64,
    ) -> StoreResult<Vec<String>> {
        PgUnitOfWork::lapsed_candidates(
            self,
            rule_id,
            store_ids,
            last_visit_by,
            after_member_id,
            limit,
        )
        .await
    }

    async fn settled_horizon(&mut self) -> StoreResult<Option<i64>> {
        seals::settled_horizon(self).await
    }

    async fn last_seal(&mut self) -> StoreResult<Option<Seal>> {
        seals::last_seal(self).await
    }

    async fn seals(&mut self, after_seal_no: i64, limit: i64) -> StoreResult<Vec<Seal>> {
        seals::seals(self, after_seal_no, limit).await
    }

    async fn journal_range(
        &mut self,
        after: i64,
        up_to: i64,
        limit: i64,
    ) -> StoreResult<Vec<Transaction>> {
        seals::journal_range(self, after, up_to, limit).await
    }

    async fn insert_seal(&mut self, seal: &Seal) -> StoreResult<()> {
        seals::insert_seal(self, seal).await
    }

    async fn imported_members(
        &mut self,
        external_ids: &[String],
    ) -> StoreResult<Vec<(String, String)>> {
        self.imported_members_of(external_ids).await
    }

    async fn record_imports(
        &mut self,
        records: &[crate::domain::import::ImportRecord],
    ) -> StoreResult<()> {
        self.insert_import_records(records).await
    }

    async fn export_members(
        &mut self,
        after_member_id: &str,
        since: Option<DateTime<Utc>>,
        limit: i64,
    ) -> StoreResult<Vec<crate::domain::model::Member>> {
        self.export_members_page(after_member_id, since, limit)
            .await
    }

    async fn export_lots(&mut self, after_lot_id: i64, limit: i64) -> StoreResult<Vec<Lot>> {
        self.export_lots_page(after_lot_id, limit).await
    }
}

#[cfg(test)]
mod tests {
    use std::future::Future;

    use chrono::TimeZone;

    use super::*;
    use crate::domain::{
        coupon::CouponState,
        model::{LotState, MemberState, OrderState, Posting},
    };
    use crate::domain::{coupon::Discount, ports::NewTransaction};
    use crate::store::test_writes;

    /// Runs `body` against a fresh database, dropped afterwards even when `body` panics; skipped
    /// (with a note) when PostgreSQL is unreachable outside CI.
    async fn with_store<F, Fut>(body: F)
    where
        F: FnOnce(PostgresStore) -> Fut,
        Fut: Future<Output = ()> + Send + 'static,
    {
        crate::store::test_postgres::with_scratch_store("omo_unit", body).await;
    }

    fn day(n: i64) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2025, 1, 1, 0, 0, 0).unwrap() + chrono::Duration::days(n)
    }

    fn member(member_id: &str) -> MemberRow {
        MemberRow {
            member_id: member_id.into(),
            display_name: format!("Member {member_id}"),
            state: MemberState::Active,
            merged_into: None,
            created_at: day(0),
            lifetime_earned_points: 0,
            lifetime_redeemed_points: 0,
            attributes: Default::default(),
            erased_at: None,
            tier: Default::default(),
        }
    }

    fn points(from: &str, to: &str, amount: i64) -> Posting {
        Posting {
            from_account: from.into(),
            to_account: to.into(),
            asset: "PTS".into(),
            amount,
        }
    }

    fn entry(kind: &'static str, member_id: &str, postings: Vec<Posting>) -> NewTransaction {
        NewTransaction {
            kind,
            member_id: member_id.into(),
            occurred_at: day(1),
            recorded_at: day(1),
            channel: Some(Channel::Ec),
            store_id: String::new(),
            order_id: String::new(),
            postings,
            metadata: vec![("reason".into(), "test".into())],
        }
    }

    fn lot(member_id: &str, expires_at: Option<DateTime<Utc>>, remaining_points: i64) -> Lot {
        Lot {
            lot_id: 0,
            member_id: member_id.into(),
            order_id: String::new(),
            state: LotState::Available,
            earned_at: day(0),
            matures_at: None,
            expires_at,
            original_points: 100,
            remaining_points,
            held_points: 0,
            limited: false,
        }
    }

    fn money(amount: &str) -> Money {
        amount.parse().expect("money")
    }

    fn order(order_id: &str, member_id: &str) -> Order {
        Order {
            order_id: order_id.into(),
            member_id: member_id.into(),
            state: OrderState::Authorized,
            channel: Channel::Ec,
            store_id: String::new(),
            register_id: String::new(),
            receipt_no: String::new(),
            lines: vec![model::OrderLine {
                item: model::LineItem {
                    line_id: "1".into(),
                    sku: "sku-1".into(),
                    category: "food".into(),
                    quantity: 2,
                    amount: money("1980.5"),
                },
                refunded_quantity: 0,
            }],
            total: money("1980.5"),
            coupon_discount: money("0"),
            points_redeemed: 30,
            amount_due: money("1950.5"),
            points_earned: 0,
            points_pending: 0,
            coupon_codes: vec!["C-1".into()],
            hold_expires_at: Some(day(1)),
            refunded_amount: Money::ZERO,
            points_reversed: 0,
            points_restored: 0,
            occurred_at: day(0),
            created_at: day(0),
            earn_breakdown: Vec::new(),
        }
    }

    fn campaign(campaign_id: &str) -> Campaign {
        Campaign {
            campaign_id: campaign_id.into(),
            name: "Spring".into(),
            discount: Discount::AmountOff(money("500")),
            min_spend: money("1000"),
            channels: vec![Channel::Store],
            store_ids: Vec::new(),
            starts_at: None,
            ends_at: Some(day(30)),
            validity_days: 7,
            per_member_limit: 1,
            issue_limit: 0,
            stackable: false,
            public_code: None,
            issue_on_capture: None,
            variants: Vec::new(),
            eligible: Default::default(),
            stock_parts: 0,
            created_at: day(0),
        }
    }

    fn coupon(
        code: &str,
        campaign_id: &str,
        member_id: &str,
        valid_until: DateTime<Utc>,
    ) -> Coupon {
        Coupon {
            code: code.into(),
            campaign_id: campaign_id.into(),
            variant_id: String::new(),
            member_id: member_id.into(),
            state: CouponState::Active,
            valid_from: day(0),
            valid_until: Some(valid_until),
            source: "admin".into(),
            order_id: String::new(),
            redeemed_at: None,
            issued_at: day(0),
            discount: None,
        }
    }

    #[tokio::test]
    async fn sessions_are_safe_on_any_server() {
        with_store(|store| async move {
            // Every pooled session, for writes and for reads, carries omo's settings.
            for pool in [&store.writes, &store.reads] {
                let mut shown = Vec::new();
                for setting in [
                    "synchronous_commit",
                    "lock_timeout",
                    "statement_timeout",
                    "idle_in_transaction_session_timeout",
                ] {
                    let value: String = sqlx::query_scalar(&format!("show {setting}"))
                        .fetch_one(pool)
                        .await
                        .unwrap();
                    shown.push(value);
                }
                assert_eq!(shown, ["on", "5s", "30s", "1min"]);
            }
            // `omo verify`'s snapshot lifts the statement timeout for its own transaction only.
            let mut read = store.begin_read().await.unwrap();
            read.ledger_snapshot().await.unwrap();
        })
        .await;
    }

    #[test]
    fn a_pool_timeout_or_a_closed_pool_is_unavailable_and_a_broken_socket_a_lost_connection() {
        assert!(matches!(
            map_err(sqlx::Error::PoolTimedOut),
            StoreError::Unavailable(_)
        ));
        assert!(matches!(
            map_err(sqlx::Error::PoolClosed),
            StoreError::Unavailable(_)
        ));
        for kind in [
            std::io::ErrorKind::ConnectionReset,
            std::io::ErrorKind::BrokenPipe,
            std::io::ErrorKind::UnexpectedEof,
        ] {
            let error = map_err(sqlx::Error::Io(kind.into()));
            assert!(matches!(error, StoreError::ConnectionLost(_)), "{error:?}");
        }
        assert!(matches!(
            map_err(sqlx::Error::RowNotFound),
            StoreError::Database(_)
        ));
    }

    #[tokio::test]
    async fn a_session_terminated_under_a_unit_of_work_is_a_lost_connection() {
        with_store(|store| async move {
            let mut uow = store.begin().await.unwrap();
            // What `pg_terminate_backend` or a fast shutdown does to a writer between two
            // statements (waiting up to 5 s for the sessions to end).
            sqlx::query(
                "select pg_terminate_backend(pid, 5000) from pg_stat_activity
                where datname = current_database() and pid <> pg_backend_pid()",
            )
            .execute(&store.reads)
            .await
            .unwrap();
            let error = uow.find_api_key("no such key").await.unwrap_err();
            assert!(matches!(error, StoreError::ConnectionLost(_)), "{error:?}");
            drop(uow);
            // The pool drops the broken connection: the next unit of work gets a live one.
            let mut uow = store.begin().await.unwrap();
            assert_eq!(uow.find_api_key("no such key").await.unwrap(), None);
        })
        .await;
    }

    #[tokio::test]
    async fn postings_update_guarded_balances_and_leave_system_accounts_unstored() {
        with_store(|store| async move {
            let mut uow = store.begin().await.unwrap();
            let earn = entry(
                "earn",
                "m1",
                vec![points("program:issued", "member:m1", 100)],
            );
            let first = test_writes::append_transaction(uow.as_mut(), &earn)
                .await
                .unwrap();
            let hold = entry("authorize", "m1", vec![points("member:m1", "hold:o1", 30)]);
            let second = test_writes::append_transaction(uow.as_mut(), &hold)
                .await
                .unwrap();
            uow.commit().await.unwrap();

            let mut read = store.begin_read().await.unwrap();
            assert_eq!(read.balance("member:m1", "PTS").await.unwrap(), 70);
            assert_eq!(read.balance("hold:o1", "PTS").await.unwrap(), 30);
            assert_eq!(read.balance("program:issued", "PTS").await.unwrap(), -100);
            assert_eq!(read.balance("member:nobody", "PTS").await.unwrap(), 0);
            let snapshot = read.ledger_snapshot().await.unwrap();
            let stored: Vec<&str> = snapshot
                .stored_balances
                .iter()
                .map(|b| b.account.as_str())
                .collect();
            assert_eq!(stored, ["hold:o1", "member:m1"]);
            let issued = snapshot
                .posting_sums
                .iter()
                .find(|t| t.account == "program:issued")
                .unwrap();
            assert_eq!(issued.amount, -100);
            assert_eq!(snapshot.malformed_postings, 0);

            let page = read.member_transactions("m1", None, 10).await.unwrap();
            let ids: Vec<i64> = page.iter().map(|t| t.transaction_id).collect();
            assert_eq!(ids, [second, first]);
            assert_eq!(page[1].postings, earn.postings);
            assert_eq!(
                page[1].metadata.get("reason").map(String::as_str),
                Some("test")
            );
            assert_eq!(page[1].channel, Some(Channel::Ec));
            let older = read
                .member_transactions("m1", Some(second), 10)
                .await
                .unwrap();
            assert_eq!(older.len(), 1);
            assert_eq!(older[0].transaction_id, first);
        })
        .await;
    }

    #[tokio::test]
    async fn a_balance_that_would_go_negative_fails_the_unit_of_work() {
        with_store(|store| async move {
            let mut uow = store.begin().await.unwrap();
            let earn = entry(
                "earn",
                "m1",
                vec![points("program:issued", "member:m1", 10)],
            );
            test_writes::append_transaction(uow.as_mut(), &earn)
                .await
                .unwrap();
            uow.commit().await.unwrap();

            let mut uow = store.begin().await.unwrap();
            let spend = entry(
                "redeem",
                "m1",
                vec![points("member:m1", "program:redeemed:ec", 11)],
            );
            let error = test_writes::append_transaction(uow.as_mut(), &spend)
                .await
                .unwrap_err();
            assert!(matches!(error, StoreError::Database(_)), "{error:?}");
            drop(uow);

            let mut uow = store.begin().await.unwrap();
            let never = entry(
                "redeem",
                "m2",
                vec![points("member:m2", "program:redeemed:ec", 1)],
            );
            let error = test_writes::append_transaction(uow.as_mut(), &never)
                .await
                .unwrap_err();
            assert!(matches!(error, StoreError::Database(_)), "{error:?}");
            drop(uow);

            let mut read = store.begin_read().await.unwrap();
            assert_eq!(read.balance("member:m1", "PTS").await.unwrap(), 10);
            let snapshot = read.ledger_snapshot().await.unwrap();
            assert_eq!(
                snapshot.posting_sums.len(),
                2,
                "the failed postings never landed"
            );
        })
        .await;
    }

    #[tokio::test]
    async fn a_lost_insert_race_is_a_conflict() {
        with_store(|store| async move {
            let mut uow = store.begin().await.unwrap();
            test_writes::insert_member(uow.as_mut(), &member("m1"))
                .await
                .unwrap();
            uow.commit().await.unwrap();
            let mut uow = store.begin().await.unwrap();
            let error = test_writes::insert_member(uow.as_mut(), &member("m1"))
                .await
                .unwrap_err();
            assert!(matches!(error, StoreError::Conflict(_)), "{error:?}");
        })
        .await;
    }

    #[tokio::test]
    async fn member_lots_come_soonest_expiry_first_and_never_expiring_last() {
        with_store(|store| async move {
            let mut uow = store.begin().await.unwrap();
            let never = test_writes::insert_lot(uow.as_mut(), &lot("m1", None, 10))
                .await
                .unwrap();
            let late = test_writes::insert_lot(uow.as_mut(), &lot("m1", Some(day(10)), 10))
                .await
                .unwrap();
            let soon_a = test_writes::insert_lot(uow.as_mut(), &lot("m1", Some(day(5)), 10))
                .await
                .unwrap();
            let soon_b = test_writes::insert_lot(uow.as_mut(), &lot("m1", Some(day(5)), 10))
                .await
                .unwrap();
            let _spent = test_writes::insert_lot(uow.as_mut(), &lot("m1", Some(day(1)), 0))
                .await
                .unwrap();
            let _other = test_writes::insert_lot(uow.as_mut(), &lot("m2", Some(day(1)), 10))
                .await
                .unwrap();
            uow.commit().await.unwrap();

            let mut read = store.begin_read().await.unwrap();
            let lots = read.member_lots("m1").await.unwrap();
            let ids: Vec<i64> = lots.iter().map(|l| l.lot_id).collect();
            assert_eq!(ids, [soon_a, soon_b, late, never]);
            let fetched = read.get_lot(late).await.unwrap().unwrap();
            assert_eq!(
                fetched,
                Lot {
                    lot_id: late,
                    ..lot("m1", Some(day(10)), 10)
                }
            );
        })
        .await;
    }

    #[tokio::test]
    async fn orders_coupons_and_due_work_round_trip() {
        with_store(|store| async move {
            let mut uow = store.begin().await.unwrap();
            test_writes::insert_order(uow.as_mut(), &order("o1", "m1"))
                .await
                .unwrap();
            test_writes::insert_campaign(uow.as_mut(), &campaign("c1"))
                .await
                .unwrap();
            test_writes::insert_coupon(uow.as_mut(), &coupon("C-1", "c1", "m1", day(2)))
                .await
                .unwrap();
            test_writes::insert_lot(
                uow.as_mut(),
                &Lot {
                    state: LotState::Pending,
                    matures_at: Some(day(1)),
                    ..lot("m2", None, 5)
                },
            )
            .await
            .unwrap();
            uow.commit().await.unwrap();

            let mut read = store.begin_read().await.unwrap();
            assert_eq!(
                read.get_order("o1", false).await.unwrap(),
                Some(order("o1", "m1"))
            );
            assert_eq!(
                read.get_campaign("c1", false).await.unwrap(),
                Some(campaign("c1"))
            );
            assert_eq!(read.count_coupons("c1", Some("m1")).await.unwrap(), 1);
            assert_eq!(read.count_coupons("c1", Some("m2")).await.unwrap(), 0);
            assert!(read.member_has_open_orders("m1").await.unwrap());
            assert_eq!(read.due_work(day(0), 10).await.unwrap(), DueWork::default());
            let due = read.due_work(day(3), 10).await.unwrap();
            assert_eq!(due.expired_holds, ["o1"]);
            assert_eq!(due.members_with_due_lots, ["m2"]);
            assert_eq!(due.expired_coupons, ["C-1"]);
            let snapshot = read.ledger_snapshot().await.unwrap();
            assert_eq!(snapshot.authorized_orders, [("o1".to_string(), 30)]);
            assert_eq!(snapshot.coupon_positions[0].account, "member:m1");
            assert_eq!(snapshot.coupon_positions[0].asset, "CPN:c1");
        })
        .await;
    }

    #[tokio::test]
    async fn a_locked_member_makes_the_next_locker_wait_for_the_commit() {
        with_store(|store| async move {
            let mut setup = store.begin().await.unwrap();
            test_writes::insert_member(setup.as_mut(), &member("m1"))
                .await
                .unwrap();
            setup.commit().await.unwrap();

            let mut first = store.begin().await.unwrap();
            let mut row = first.get_member("m1", true).await.unwrap().unwrap();
            row.display_name = "renamed by the first".into();
            test_writes::update_member(first.as_mut(), &row)
                .await
                .unwrap();

            let mut second = store.begin().await.unwrap();
            let mut waiter = tokio::spawn(async move {
                let seen = second.get_member("m1", true).await.unwrap().unwrap();
                second.commit().await.unwrap();
                seen.display_name
            });
            let early = tokio::time::timeout(Duration::from_millis(300), &mut waiter).await;
            assert!(early.is_err(), "the second locker must wait for the first");

            first.commit().await.unwrap();
            let seen = tokio::time::timeout(Duration::from_secs(5), waiter)
                .await
                .expect("the second locker proceeds once the first commits")
                .unwrap();
            assert_eq!(seen, "renamed by the first");
        })
        .await;
    }
}
