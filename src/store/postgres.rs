//! PostgreSQL backend of the storage port: the production store, shared by several service
//! replicas. Nothing here relies on a lock inside one process. Writers run at READ COMMITTED
//! and serialise on row locks: the rows the engine locks (members, orders, campaigns, coupons,
//! in its fixed order) and the balance rows a flush updates (in sorted order).
//! Whatever PostgreSQL reports as a lost race comes back as [`StoreError::Conflict`], and the
//! engine runs the whole unit of work again.

use std::{collections::BTreeMap, fmt::Display, str::FromStr, time::Duration};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::de::DeserializeOwned;
use sqlx::{
    Connection as _, Decode, Postgres, Row, Type,
    postgres::{PgArguments, PgConnectOptions, PgConnection, PgPool, PgPoolOptions, PgRow},
};

use super::to_json;
use crate::domain::{
    Account, Money,
    auth::Role,
    coupon::{Campaign, Coupon, CouponState},
    model::{
        self, Channel, Identifier, LatLng, Lot, LotState, MemberRow, MemberState, Order, OrderLot,
        OrderState, Posting, Program, Transaction,
    },
    ports::{
        AccountTotal, ApiKeyRecord, ChangeSet, DueWork, IdempotencyRecord, Keys, LedgerReads,
        LedgerSnapshot, Loaded, MemberLotTotals, Sequence, Store, StoreError, StoreResult,
        UnitOfWork,
    },
};

type PgQuery<'q> = sqlx::query::Query<'q, Postgres, PgArguments>;

/// Connections per replica, in two pools so that a flood of reads never keeps the writers
/// waiting for a connection: the group-commit writers (`WRITERS`) plus a few for the sweeper and
/// retried commands; and readers, enough to keep PostgreSQL busy on a few cores (more would
/// only add processes competing for them). A unit of work holds one for its whole life.
const WRITE_CONNECTIONS: u32 = WRITERS as u32 + 4;
const READ_CONNECTIONS: u32 = 16;
/// Group-commit writers: PostgreSQL commits in parallel, and while one writer waits for a
/// round trip another can work.
const WRITERS: usize = 8;
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

/// The one place a database error becomes a [`StoreError`]: by SQLSTATE, never by message.
fn map_err(e: sqlx::Error) -> StoreError {
    if matches!(e, sqlx::Error::PoolTimedOut) {
        return StoreError::Unavailable(e.to_string());
    }
    let code = e.as_database_error().and_then(|db| db.code());
    match code.as_deref() {
        Some(SERIALIZATION_FAILURE | DEADLOCK_DETECTED | LOCK_NOT_AVAILABLE | UNIQUE_VIOLATION) => {
            StoreError::Conflict(e.to_string())
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
    /// Closes both pools (tests: before their database is dropped).
    #[cfg(test)]
    pub async fn close(&self) {
        self.writes.close().await;
        self.reads.close().await;
    }

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
        sqlx::migrate!("migrations/postgres")
            .run(&mut migrator)
            .await
            .map_err(|e| StoreError::Database(Box::new(e)))?;
        migrator.close().await.map_err(map_err)?;
        Ok(Self { writes, reads })
    }
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

    /// A jsonb column, selected as `column::text as column`.
    fn json<T: DeserializeOwned>(&self, column: &str) -> StoreResult<T> {
        let text: &str = self.get(column)?;
        serde_json::from_str(text).map_err(|e| self.corrupt(column, e))
    }
}

fn api_key_from_row(row: &PgRow) -> StoreResult<ApiKeyRecord> {
    let c = Cols::new(row, "api_keys", "key_id");
    Ok(ApiKeyRecord {
        key_id: c.get("key_id")?,
        key_hash: c.get("key_hash")?,
        role: c.parse("role", Role::parse)?,
        store_id: c.get("store_id")?,
        name: c.get("name")?,
        created_at: c.get("created_at")?,
        expires_at: c.get("expires_at")?,
        revoked_at: c.get("revoked_at")?,
        last_used_at: c.get("last_used_at")?,
    })
}

fn idempotency_from_row(row: &PgRow) -> StoreResult<IdempotencyRecord> {
    let c = Cols::new(row, "idempotency_keys", "request_id");
    Ok(IdempotencyRecord {
        key_id: c.get("key_id")?,
        request_id: c.get("request_id")?,
        request_hash: c.get("request_hash")?,
        outcome: c.get("outcome")?,
        created_at: c.get("created_at")?,
    })
}

fn store_from_row(row: &PgRow) -> StoreResult<model::Store> {
    let c = Cols::new(row, "stores", "store_id");
    Ok(model::Store {
        store_id: c.get("store_id")?,
        name: c.get("name")?,
        location: LatLng {
            latitude: c.get("latitude")?,
            longitude: c.get("longitude")?,
        },
        time_zone: c.get("time_zone")?,
        geofence_radius_m: c.get("geofence_radius_m")?,
        geofence_polygon: c.json("geofence_polygon")?,
    })
}

fn member_from_row(row: &PgRow) -> StoreResult<MemberRow> {
    let c = Cols::new(row, "members", "member_id");
    Ok(MemberRow {
        member_id: c.get("member_id")?,
        display_name: c.get("display_name")?,
        state: c.parse("state", MemberState::parse)?,
        merged_into: c.get("merged_into")?,
        created_at: c.get("created_at")?,
        lifetime_earned_points: c.get("lifetime_earned_points")?,
        lifetime_redeemed_points: c.get("lifetime_redeemed_points")?,
    })
}

fn identifier_from_row(row: &PgRow) -> StoreResult<Identifier> {
    let c = Cols::new(row, "identifiers", "value");
    Ok(Identifier {
        kind: c.get("kind")?,
        value: c.get("value")?,
    })
}

/// A transaction without its postings (they are read for a whole page at once).
fn transaction_from_row(row: &PgRow) -> StoreResult<Transaction> {
    let c = Cols::new(row, "transactions", "transaction_id");
    Ok(Transaction {
        transaction_id: c.get("transaction_id")?,
        kind: c.get("kind")?,
        member_id: c.get("member_id")?,
        occurred_at: c.get("occurred_at")?,
        recorded_at: c.get("recorded_at")?,
        channel: c.channel_opt("channel")?,
        store_id: c.get("store_id")?,
        order_id: c.get("order_id")?,
        postings: Vec::new(),
        metadata: c.json("metadata")?,
    })
}

/// A posting and the transaction it belongs to.
fn posting_from_row(row: &PgRow) -> StoreResult<(i64, Posting)> {
    let c = Cols::new(row, "postings", "transaction_id");
    let posting = Posting {
        from_account: c.get("from_account")?,
        to_account: c.get("to_account")?,
        asset: c.get("asset")?,
        amount: c.get("amount")?,
    };
    Ok((c.get("transaction_id")?, posting))
}

fn lot_from_row(row: &PgRow) -> StoreResult<Lot> {
    lot_from_columns(row, "state")
}

/// A lot from a row that names the lot's state `state_column` (a join with another table that
/// has a `state` names it apart).
fn lot_from_columns(row: &PgRow, state_column: &str) -> StoreResult<Lot> {
    let c = Cols::new(row, "point_lots", "lot_id");
    Ok(Lot {
        lot_id: c.get("lot_id")?,
        member_id: c.get("member_id")?,
        order_id: c.get("order_id")?,
        state: c.parse(state_column, LotState::parse)?,
        earned_at: c.get("earned_at")?,
        matures_at: c.get("matures_at")?,
        expires_at: c.get("expires_at")?,
        original_points: c.get("original_points")?,
        remaining_points: c.get("remaining_points")?,
        held_points: c.get("held_points")?,
    })
}

fn order_lot_from_row(row: &PgRow) -> StoreResult<OrderLot> {
    let c = Cols::new(row, "order_lots", "order_id");
    Ok(OrderLot {
        order_id: c.get("order_id")?,
        lot_id: c.get("lot_id")?,
        points: c.get("points")?,
        restored_points: c.get("restored_points")?,
    })
}

fn order_from_row(row: &PgRow) -> StoreResult<Order> {
    let c = Cols::new(row, "orders", "order_id");
    let receipt_no: Option<String> = c.get("receipt_no")?;
    Ok(Order {
        order_id: c.get("order_id")?,
        member_id: c.get("member_id")?,
        state: c.parse("state", OrderState::parse)?,
        channel: c.parse("channel", Channel::parse)?,
        store_id: c.get("store_id")?,
        register_id: c.get("register_id")?,
        receipt_no: receipt_no.unwrap_or_default(),
        lines: c.json("lines")?,
        total: c.money("total")?,
        coupon_discount: c.money("coupon_discount")?,
        points_redeemed: c.get("points_redeemed")?,
        amount_due: c.money("amount_due")?,
        points_earned: c.get("points_earned")?,
        points_pending: c.get("points_pending")?,
        coupon_codes: c.json("coupon_codes")?,
        hold_expires_at: c.get("hold_expires_at")?,
        refunded_amount: c.money("refunded_amount")?,
        points_reversed: c.get("points_reversed")?,
        points_restored: c.get("points_restored")?,
        occurred_at: c.get("occurred_at")?,
        created_at: c.get("created_at")?,
    })
}

fn campaign_from_row(row: &PgRow) -> StoreResult<Campaign> {
    Cols::new(row, "campaigns", "campaign_id").json("body")
}

fn coupon_from_row(row: &PgRow) -> StoreResult<Coupon> {
    let c = Cols::new(row, "coupons", "code");
    Ok(Coupon {
        code: c.get("code")?,
        campaign_id: c.get("campaign_id")?,
        variant_id: c.get("variant_id")?,
        member_id: c.get("member_id")?,
        state: c.parse("state", CouponState::parse)?,
        valid_from: c.get("valid_from")?,
        valid_until: c.get("valid_until")?,
        source: c.get("source")?,
        order_id: c.get("order_id")?,
        redeemed_at: c.get("redeemed_at")?,
        issued_at: c.get("issued_at")?,
    })
}

fn account_total_from_row(row: &PgRow) -> StoreResult<AccountTotal> {
    let c = Cols::new(row, "ledger snapshot", "account");
    Ok(AccountTotal {
        account: c.get("account")?,
        asset: c.get("asset")?,
        amount: c.get("amount")?,
    })
}

fn lot_totals_from_row(row: &PgRow) -> StoreResult<MemberLotTotals> {
    let c = Cols::new(row, "ledger snapshot", "member_id");
    Ok(MemberLotTotals {
        member_id: c.get("member_id")?,
        pending_remaining: c.get("pending_remaining")?,
        spendable_remaining: c.get("spendable_remaining")?,
        held: c.get("held")?,
        malformed_lots: c.get("malformed_lots")?,
    })
}

fn string_from_row(row: &PgRow, table: &'static str, column: &'static str) -> StoreResult<String> {
    Cols::new(row, table, column).get(column)
}

// ---------------------------------------------------------------------------------------------
// SQL.

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
    lifetime_earned_points, lifetime_redeemed_points
from members"#
    };
}

select_and_lock!(
    GET_MEMBER,
    GET_MEMBER_LOCKED,
    concat!(select_members!(), "\nwhere member_id = $1")
);

/// The columns of an order, for the order queries below.
macro_rules! select_orders {
    () => {
        r#"
select order_id, member_id, state, channel, store_id, register_id, receipt_no,
    lines::text as lines, total, coupon_discount, points_redeemed, amount_due,
    points_earned, points_pending, coupon_codes::text as coupon_codes, hold_expires_at,
    refunded_amount, points_reversed, points_restored, occurred_at, created_at
from orders"#
    };
}

select_and_lock!(
    GET_ORDER,
    GET_ORDER_LOCKED,
    concat!(select_orders!(), "\nwhere order_id = $1")
);

/// The columns of a campaign, for the campaign queries below.
macro_rules! select_campaigns {
    () => {
        r#"
select campaign_id, body::text as body
from campaigns"#
    };
}

select_and_lock!(
    GET_CAMPAIGN,
    GET_CAMPAIGN_LOCKED,
    concat!(select_campaigns!(), "\nwhere campaign_id = $1")
);

const CAMPAIGN_BY_PUBLIC_CODE: &str = concat!(select_campaigns!(), "\nwhere public_code = $1");

const LIST_CAMPAIGNS: &str = concat!(select_campaigns!(), "\norder by created_at, campaign_id");

/// The columns of a store, for the store queries below.
macro_rules! select_stores {
    () => {
        r#"
select store_id, name, latitude, longitude, time_zone, geofence_radius_m,
    geofence_polygon::text as geofence_polygon
from stores"#
    };
}

const GET_STORE: &str = concat!(select_stores!(), "\nwhere store_id = $1");

const LIST_STORES: &str = concat!(select_stores!(), "\norder by store_id");

/// The columns of a lot, for the lot queries below.
macro_rules! lot_columns {
    () => {
        r#"
select lot_id, member_id, order_id, state, earned_at, matures_at, expires_at,
    original_points, remaining_points, held_points"#
    };
}

macro_rules! select_lots {
    () => {
        concat!(lot_columns!(), "\nfrom point_lots")
    };
}

/// A member's lots that still hold points, soonest expiry first (never-expiring last).
macro_rules! live_lots_of_member {
    () => {
        r#"
where member_id = $1
    and remaining_points > 0
order by expires_at asc nulls last, lot_id"#
    };
}

/// The columns of a coupon, for the coupon queries below.
macro_rules! select_coupons {
    () => {
        r#"
select code, campaign_id, variant_id, member_id, state, valid_from, valid_until, source,
    order_id, redeemed_at, issued_at
from coupons"#
    };
}

select_and_lock!(
    GET_COUPON,
    GET_COUPON_LOCKED,
    concat!(select_coupons!(), "\nwhere code = $1")
);

const GET_LOT: &str = concat!(select_lots!(), "\nwhere lot_id = $1");

/// Soonest expiry first, never-expiring last, oldest lot first on ties: the spending order.
const MEMBER_LOTS: &str = concat!(select_lots!(), live_lots_of_member!());

const MEMBER_COUPONS: &str = concat!(
    select_coupons!(),
    r#"
where member_id = $1
order by issued_at, code"#
);

const ORDER_COUPONS: &str = concat!(
    select_coupons!(),
    r#"
where order_id = $1
order by code"#
);

// The batch path (load, reserve_ids, flush): after the column lists above, which it shares.
mod batch;

// ---------------------------------------------------------------------------------------------
// Remembered outcomes.

/// Inserts idempotency records in one statement (a batch's flush).
fn insert_outcomes(records: &[IdempotencyRecord]) -> PgQuery<'_> {
    let column = |field: fn(&IdempotencyRecord) -> &str| -> Vec<&str> {
        records.iter().map(field).collect()
    };
    let created_at: Vec<DateTime<Utc>> = records.iter().map(|r| r.created_at).collect();
    sqlx::query(
        r#"
insert into idempotency_keys (key_id, request_id, request_hash, outcome, created_at)
select key_id, request_id, request_hash, outcome::jsonb, created_at
from unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::timestamptz[])
    as r (key_id, request_id, request_hash, outcome, created_at)"#,
    )
    .bind(column(|r| &r.key_id)) // $1
    .bind(column(|r| &r.request_id)) // $2
    .bind(column(|r| &r.request_hash)) // $3
    .bind(column(|r| &r.outcome)) // $4
    .bind(created_at) // $5
}

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

    /// Σ(in) − Σ(out) of an account without a stored balance, from the journal.
    async fn summed_balance(&mut self, account: &str, asset: &str) -> StoreResult<i64> {
        let query = sqlx::query(
            r#"
select (coalesce(sum(amount) filter (where to_account = $1), 0)
    - coalesce(sum(amount) filter (where from_account = $1), 0))::bigint as balance
from postings
where (to_account = $1 or from_account = $1)
    and asset = $2"#,
        )
        .bind(account) // $1
        .bind(asset); // $2
        self.fetch_value(query, "postings", "balance").await
    }

    /// The postings of a page of transactions, in one query.
    async fn attach_postings(&mut self, transactions: &mut [Transaction]) -> StoreResult<()> {
        let ids: Vec<i64> = transactions.iter().map(|t| t.transaction_id).collect();
        let query = sqlx::query(
            r#"
select transaction_id, from_account, to_account, asset, amount
from postings
where transaction_id = any($1)
order by transaction_id, posting_no"#,
        )
        .bind(ids); // $1
        let mut by_transaction: BTreeMap<i64, Vec<Posting>> = BTreeMap::new();
        for (transaction_id, posting) in self.fetch_all(query, posting_from_row).await? {
            by_transaction
                .entry(transaction_id)
                .or_default()
                .push(posting);
        }
        for transaction in transactions {
            transaction.postings = by_transaction
                .remove(&transaction.transaction_id)
                .unwrap_or_default();
        }
        Ok(())
    }

    async fn fetch_strings(
        &mut self,
        sql: &'static str,
        table: &'static str,
        column: &'static str,
        now: DateTime<Utc>,
        limit: i64,
    ) -> StoreResult<Vec<String>> {
        let query = sqlx::query(sql)
            .bind(now) // $1
            .bind(limit.max(0)); // $2
        self.fetch_all(query, |row| string_from_row(row, table, column))
            .await
    }

    async fn fetch_totals(&mut self, sql: &'static str) -> StoreResult<Vec<AccountTotal>> {
        self.fetch_all(sqlx::query(sql), account_total_from_row)
            .await
    }
}

// ---------------------------------------------------------------------------------------------
// Background work and verification.

const EXPIRED_HOLDS: &str = r#"
select order_id
from orders
where state = 'authorized'
    and hold_expires_at <= $1
order by hold_expires_at, order_id
limit $2"#;

/// Each branch matches a partial index (`point_lots_due_maturity`, `point_lots_due_expiry`).
const MEMBERS_WITH_DUE_LOTS: &str = r#"
select distinct member_id
from point_lots
where (state = 'pending' and matures_at <= $1)
    or (state in ('pending', 'available')
        and expires_at <= $1
        and remaining_points > held_points)
order by member_id
limit $2"#;

const EXPIRED_COUPONS: &str = r#"
select code
from coupons
where state = 'active'
    and valid_until <= $1
order by valid_until, code
limit $2"#;

const MALFORMED_POSTINGS: &str = r#"
select count(*) as malformed
from postings
where amount <= 0
    or from_account = to_account"#;

const POSTING_SUMS: &str = r#"
select account, asset, sum(amount)::bigint as amount
from (
    select to_account as account, asset, amount
    from postings
    union all
    select from_account as account, asset, -amount as amount
    from postings
) as sides
group by account, asset
order by account, asset"#;

const STORED_BALANCES: &str = r#"
select account, asset, balance as amount
from balances
order by account, asset"#;

const LOT_TOTALS: &str = r#"
select member_id,
    coalesce(sum(remaining_points) filter (where state = 'pending'), 0)::bigint
        as pending_remaining,
    coalesce(sum(remaining_points) filter (where state in ('available', 'expired')), 0)::bigint
        as spendable_remaining,
    sum(held_points)::bigint as held,
    count(*) filter (
        where remaining_points > original_points
            or held_points > remaining_points
            or least(original_points, remaining_points, held_points) < 0
    ) as malformed_lots
from point_lots
group by member_id
order by member_id"#;

const AUTHORIZED_ORDERS: &str = r#"
select order_id, points_redeemed
from orders
where state = 'authorized'
order by order_id"#;

const ORDERS_RESOLVED_TWICE: &str = r#"
select order_id
from transactions
where kind in ('capture', 'void', 'hold_expired')
    and order_id <> ''
group by order_id
having count(*) > 1
order by order_id"#;

/// An active coupon is one unit on its member's account, a reserved one on its order's hold.
const COUPON_POSITIONS: &str = r#"
select case state
        when 'active' then 'member:' || member_id
        else 'hold:' || order_id
    end as account,
    'CPN:' || campaign_id as asset,
    count(*) as amount
from coupons
where state in ('active', 'reserved')
group by 1, 2
order by 1, 2"#;

impl PgUnitOfWork {
    async fn lot_totals(&mut self) -> StoreResult<Vec<MemberLotTotals>> {
        self.fetch_all(sqlx::query(LOT_TOTALS), lot_totals_from_row)
            .await
    }

    async fn authorized_orders(&mut self) -> StoreResult<Vec<(String, i64)>> {
        self.fetch_all(sqlx::query(AUTHORIZED_ORDERS), |row| {
            let c = Cols::new(row, "orders", "order_id");
            Ok((c.get("order_id")?, c.get("points_redeemed")?))
        })
        .await
    }

    async fn orders_resolved_twice(&mut self) -> StoreResult<Vec<String>> {
        self.fetch_all(sqlx::query(ORDERS_RESOLVED_TWICE), |row| {
            string_from_row(row, "transactions", "order_id")
        })
        .await
    }

    async fn malformed_postings(&mut self) -> StoreResult<i64> {
        let query = sqlx::query(MALFORMED_POSTINGS);
        self.fetch_value(query, "postings", "malformed").await
    }
}

// ---------------------------------------------------------------------------------------------
// The port.

#[async_trait]
impl LedgerReads for PgUnitOfWork {
    async fn find_idempotency(
        &mut self,
        key_id: &str,
        request_id: &str,
    ) -> StoreResult<Option<IdempotencyRecord>> {
        let query = sqlx::query(
            r#"
select key_id, request_id, request_hash, outcome::text as outcome, created_at
from idempotency_keys
where key_id = $1
    and request_id = $2"#,
        )
        .bind(key_id) // $1
        .bind(request_id); // $2
        self.fetch_optional(query, idempotency_from_row).await
    }

    async fn load_program(&mut self, lock: bool) -> StoreResult<Option<Program>> {
        let sql = if lock {
            "select id, body::text as body from program where id = 1 for no key update"
        } else {
            "select id, body::text as body from program where id = 1"
        };
        let query = sqlx::query(sql);
        self.fetch_optional(query, |row| Cols::new(row, "program", "id").json("body"))
            .await
    }

    async fn get_store(&mut self, store_id: &str) -> StoreResult<Option<model::Store>> {
        let query = sqlx::query(GET_STORE).bind(store_id); // $1
        self.fetch_optional(query, store_from_row).await
    }

    async fn list_stores(&mut self) -> StoreResult<Vec<model::Store>> {
        self.fetch_all(sqlx::query(LIST_STORES), store_from_row)
            .await
    }

    async fn get_member(&mut self, member_id: &str, lock: bool) -> StoreResult<Option<MemberRow>> {
        let sql = if lock { GET_MEMBER_LOCKED } else { GET_MEMBER };
        let query = sqlx::query(sql).bind(member_id); // $1
        self.fetch_optional(query, member_from_row).await
    }

    async fn member_by_identifier(
        &mut self,
        identifier: &Identifier,
    ) -> StoreResult<Option<String>> {
        let query = sqlx::query(
            r#"
select member_id
from identifiers
where kind = $1
    and value = $2"#,
        )
        .bind(&identifier.kind) // $1
        .bind(&identifier.value); // $2
        self.fetch_optional(query, |row| {
            string_from_row(row, "identifiers", "member_id")
        })
        .await
    }

    async fn identifiers(&mut self, member_id: &str) -> StoreResult<Vec<Identifier>> {
        let query = sqlx::query(
            r#"
select kind, value
from identifiers
where member_id = $1
order by kind, value"#,
        )
        .bind(member_id); // $1
        self.fetch_all(query, identifier_from_row).await
    }

    async fn balance(&mut self, account: &str, asset: &str) -> StoreResult<i64> {
        if !Account::is_guarded_name(account) {
            return self.summed_balance(account, asset).await;
        }
        let query = sqlx::query(
            r#"
select account, balance
from balances
where account = $1
    and asset = $2"#,
        )
        .bind(account) // $1
        .bind(asset); // $2
        let balance = self
            .fetch_optional(query, |row| {
                Cols::new(row, "balances", "account").get("balance")
            })
            .await?;
        Ok(balance.unwrap_or(0))
    }

    async fn member_lots(&mut self, member_id: &str) -> StoreResult<Vec<Lot>> {
        let query = sqlx::query(MEMBER_LOTS).bind(member_id); // $1
        self.fetch_all(query, lot_from_row).await
    }

    async fn order_lots(&mut self, order_id: &str) -> StoreResult<Vec<OrderLot>> {
        let query = sqlx::query(
            r#"
select order_id, lot_id, points, restored_points
from order_lots
where order_id = $1
order by lot_id"#,
        )
        .bind(order_id); // $1
        self.fetch_all(query, order_lot_from_row).await
    }

    async fn get_lot(&mut self, lot_id: i64) -> StoreResult<Option<Lot>> {
        let query = sqlx::query(GET_LOT).bind(lot_id); // $1
        self.fetch_optional(query, lot_from_row).await
    }

    async fn get_order(&mut self, order_id: &str, lock: bool) -> StoreResult<Option<Order>> {
        let sql = if lock { GET_ORDER_LOCKED } else { GET_ORDER };
        let query = sqlx::query(sql).bind(order_id); // $1
        self.fetch_optional(query, order_from_row).await
    }

    async fn order_by_receipt(
        &mut self,
        store_id: &str,
        register_id: &str,
        receipt_no: &str,
    ) -> StoreResult<Option<String>> {
        let query = sqlx::query(
            r#"
select order_id
from orders
where store_id = $1
    and register_id = $2
    and receipt_no = $3"#,
        )
        .bind(store_id) // $1
        .bind(register_id) // $2
        .bind(receipt_no); // $3
        self.fetch_optional(query, |row| string_from_row(row, "orders", "order_id"))
            .await
    }

    async fn member_has_open_orders(&mut self, member_id: &str) -> StoreResult<bool> {
        let query = sqlx::query(
            r#"
select exists (
    select 1
    from orders
    where member_id = $1
        and state = 'authorized'
) as open"#,
        )
        .bind(member_id); // $1
        self.fetch_value(query, "orders", "open").await
    }

    async fn get_campaign(
        &mut self,
        campaign_id: &str,
        lock: bool,
    ) -> StoreResult<Option<Campaign>> {
        let sql = if lock {
            GET_CAMPAIGN_LOCKED
        } else {
            GET_CAMPAIGN
        };
        let query = sqlx::query(sql).bind(campaign_id); // $1
        self.fetch_optional(query, campaign_from_row).await
    }

    async fn campaign_by_public_code(
        &mut self,
        public_code: &str,
    ) -> StoreResult<Option<Campaign>> {
        let query = sqlx::query(CAMPAIGN_BY_PUBLIC_CODE).bind(public_code); // $1
        self.fetch_optional(query, campaign_from_row).await
    }

    async fn list_campaigns(&mut self) -> StoreResult<Vec<Campaign>> {
        self.fetch_all(sqlx::query(LIST_CAMPAIGNS), campaign_from_row)
            .await
    }

    async fn count_coupons(
        &mut self,
        campaign_id: &str,
        member_id: Option<&str>,
    ) -> StoreResult<i64> {
        let query = match member_id {
            None => sqlx::query(
                r#"
select count(*) as issued
from coupons
where campaign_id = $1"#,
            )
            .bind(campaign_id), // $1
            Some(member_id) => sqlx::query(
                r#"
select count(*) as issued
from coupons
where campaign_id = $1
    and member_id = $2"#,
            )
            .bind(campaign_id) // $1
            .bind(member_id), // $2
        };
        self.fetch_value(query, "coupons", "issued").await
    }

    async fn get_coupon(&mut self, code: &str, lock: bool) -> StoreResult<Option<Coupon>> {
        let sql = if lock { GET_COUPON_LOCKED } else { GET_COUPON };
        let query = sqlx::query(sql).bind(code); // $1
        self.fetch_optional(query, coupon_from_row).await
    }

    async fn member_coupons(&mut self, member_id: &str) -> StoreResult<Vec<Coupon>> {
        let query = sqlx::query(MEMBER_COUPONS).bind(member_id); // $1
        self.fetch_all(query, coupon_from_row).await
    }

    async fn order_coupons(&mut self, order_id: &str) -> StoreResult<Vec<Coupon>> {
        let query = sqlx::query(ORDER_COUPONS).bind(order_id); // $1
        self.fetch_all(query, coupon_from_row).await
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
        let query = sqlx::query(
            r#"
insert into api_keys (
    key_id, key_hash, role, store_id, name, created_at, expires_at, revoked_at, last_used_at
)
values ($1, $2, $3, $4, $5, $6, $7, $8, $9)"#,
        )
        .bind(&key.key_id) // $1
        .bind(&key.key_hash) // $2
        .bind(key.role.as_str()) // $3
        .bind(&key.store_id) // $4
        .bind(&key.name) // $5
        .bind(key.created_at) // $6
        .bind(key.expires_at) // $7
        .bind(key.revoked_at) // $8
        .bind(key.last_used_at); // $9
        self.run(query).await
    }

    async fn find_api_key(&mut self, key_hash: &str) -> StoreResult<Option<ApiKeyRecord>> {
        let query = sqlx::query(
            r#"
select key_id, key_hash, role, store_id, name, created_at, expires_at, revoked_at, last_used_at
from api_keys
where key_hash = $1"#,
        )
        .bind(key_hash); // $1
        self.fetch_optional(query, api_key_from_row).await
    }

    async fn list_api_keys(&mut self) -> StoreResult<Vec<ApiKeyRecord>> {
        let query = sqlx::query(
            r#"
select key_id, key_hash, role, store_id, name, created_at, expires_at, revoked_at, last_used_at
from api_keys
order by created_at, key_id"#,
        );
        self.fetch_all(query, api_key_from_row).await
    }

    async fn revoke_api_key(&mut self, key_id: &str, at: DateTime<Utc>) -> StoreResult<bool> {
        let query = sqlx::query(
            r#"
update api_keys
set revoked_at = coalesce(revoked_at, $2)
where key_id = $1"#,
        )
        .bind(key_id) // $1
        .bind(at); // $2
        Ok(self.run_counted(query).await? == 1)
    }

    async fn touch_api_key(&mut self, key_id: &str, at: DateTime<Utc>) -> StoreResult<()> {
        let query = sqlx::query(
            r#"
update api_keys
set last_used_at = greatest(last_used_at, $2)
where key_id = $1"#,
        )
        .bind(key_id) // $1
        .bind(at); // $2
        self.run(query).await
    }

    async fn ensure_program(&mut self, program: &Program) -> StoreResult<()> {
        let query = sqlx::query(
            r#"
insert into program (id, body)
values (1, $1::jsonb)
on conflict (id) do nothing"#,
        )
        .bind(to_json(program)?); // $1
        self.run(query).await
    }

    async fn member_transactions(
        &mut self,
        member_id: &str,
        before_transaction_id: Option<i64>,
        limit: i64,
    ) -> StoreResult<Vec<Transaction>> {
        // No `$2 is null or ...`: a bound that is always there keeps the index range scan in
        // the generic plan of this prepared statement.
        let query = sqlx::query(
            r#"
select transaction_id, kind, member_id, occurred_at, recorded_at, channel, store_id,
    order_id, metadata::text as metadata
from transactions
where member_id = $1
    and transaction_id < $2
order by transaction_id desc
limit $3"#,
        )
        .bind(member_id) // $1
        .bind(before_transaction_id.unwrap_or(i64::MAX)) // $2
        .bind(limit.max(0)); // $3
        let mut transactions = self.fetch_all(query, transaction_from_row).await?;
        if !transactions.is_empty() {
            self.attach_postings(&mut transactions).await?;
        }
        Ok(transactions)
    }

    async fn member_with_lots(
        &mut self,
        member_id: &str,
    ) -> StoreResult<Option<(MemberRow, Vec<Lot>)>> {
        let query = sqlx::query(
            r#"
select m.member_id, m.display_name, m.state, m.merged_into, m.created_at,
    m.lifetime_earned_points, m.lifetime_redeemed_points,
    l.lot_id, l.order_id, l.state as lot_state, l.earned_at, l.matures_at, l.expires_at,
    l.original_points, l.remaining_points, l.held_points
from members m
left join point_lots l
    on l.member_id = m.member_id
    and l.remaining_points > 0
where m.member_id = $1
order by l.expires_at asc nulls last, l.lot_id"#,
        )
        .bind(member_id); // $1
        let rows = query.fetch_all(&mut *self.tx).await.map_err(map_err)?;
        let Some(first) = rows.first() else {
            return Ok(None);
        };
        let member = member_from_row(first)?;
        // One row per live lot (its member_id is the member's); a member without one has a
        // single row of NULL lot columns.
        let mut lots = Vec::with_capacity(rows.len());
        for row in &rows {
            let lot_id: Option<i64> = Cols::new(row, "point_lots", "lot_id").get("lot_id")?;
            if lot_id.is_some() {
                lots.push(lot_from_columns(row, "lot_state")?);
            }
        }
        Ok(Some((member, lots)))
    }

    async fn load(&mut self, keys: &Keys) -> StoreResult<Loaded> {
        self.load_batch(keys).await
    }

    async fn reserve_ids(&mut self, sequence: Sequence, count: usize) -> StoreResult<Vec<i64>> {
        self.reserve(sequence, count).await
    }

    async fn flush(&mut self, changes: &ChangeSet) -> StoreResult<()> {
        self.write_rare_parts(changes).await?;
        self.flush_changes(changes).await
    }

    async fn due_work(&mut self, now: DateTime<Utc>, limit: i64) -> StoreResult<DueWork> {
        Ok(DueWork {
            expired_holds: self
                .fetch_strings(EXPIRED_HOLDS, "orders", "order_id", now, limit)
                .await?,
            members_with_due_lots: self
                .fetch_strings(MEMBERS_WITH_DUE_LOTS, "point_lots", "member_id", now, limit)
                .await?,
            expired_coupons: self
                .fetch_strings(EXPIRED_COUPONS, "coupons", "code", now, limit)
                .await?,
        })
    }

    async fn ledger_snapshot(&mut self) -> StoreResult<LedgerSnapshot> {
        // Whole-table reads: scans and hash joins are what they want.
        self.execute("set local enable_seqscan = on").await?;
        self.execute("set local enable_hashjoin = on").await?;
        self.execute("set local enable_mergejoin = on").await?;
        self.execute("set local statement_timeout = '30min'")
            .await?;
        Ok(LedgerSnapshot {
            malformed_postings: self.malformed_postings().await?,
            posting_sums: self.fetch_totals(POSTING_SUMS).await?,
            stored_balances: self.fetch_totals(STORED_BALANCES).await?,
            lot_totals: self.lot_totals().await?,
            authorized_orders: self.authorized_orders().await?,
            orders_resolved_twice: self.orders_resolved_twice().await?,
            coupon_positions: self.fetch_totals(COUPON_POSITIONS).await?,
        })
    }
}

// Rare writes of a flush (admin writes, merges): one statement each, and most batches have
// none.
impl PgUnitOfWork {
    /// The rare parts of a [`ChangeSet`], written first: the rows after them already name
    /// their final member.
    async fn write_rare_parts(&mut self, changes: &ChangeSet) -> StoreResult<()> {
        for store in &changes.new_stores {
            self.insert_store(store).await?;
        }
        if let Some(program) = &changes.program {
            self.save_program(program).await?;
        }
        for campaign in &changes.new_campaigns {
            self.insert_campaign(campaign).await?;
        }
        for (source, target) in &changes.merges {
            self.move_lots(source, target).await?;
            self.move_coupons(source, target).await?;
            self.move_identifiers(source, target).await?;
        }
        Ok(())
    }

    async fn save_program(&mut self, program: &Program) -> StoreResult<()> {
        let query = sqlx::query(
            r#"
insert into program (id, body)
values (1, $1::jsonb)
on conflict (id) do update
set body = excluded.body"#,
        )
        .bind(to_json(program)?); // $1
        self.run(query).await
    }

    async fn insert_store(&mut self, store: &model::Store) -> StoreResult<()> {
        let query = sqlx::query(
            r#"
insert into stores (store_id, name, latitude, longitude, time_zone, geofence_radius_m,
    geofence_polygon)
values ($1, $2, $3, $4, $5, $6, $7::jsonb)"#,
        )
        .bind(&store.store_id) // $1
        .bind(&store.name) // $2
        .bind(store.location.latitude) // $3
        .bind(store.location.longitude) // $4
        .bind(&store.time_zone) // $5
        .bind(store.geofence_radius_m) // $6
        .bind(to_json(&store.geofence_polygon)?); // $7
        self.run(query).await
    }

    async fn move_identifiers(
        &mut self,
        from_member_id: &str,
        to_member_id: &str,
    ) -> StoreResult<()> {
        let sql = r#"
update identifiers
set member_id = $2
where member_id = $1"#;
        self.move_member_rows(sql, from_member_id, to_member_id)
            .await
    }

    async fn move_lots(&mut self, from_member_id: &str, to_member_id: &str) -> StoreResult<()> {
        let sql = r#"
update point_lots
set member_id = $2
where member_id = $1"#;
        self.move_member_rows(sql, from_member_id, to_member_id)
            .await
    }

    async fn insert_campaign(&mut self, campaign: &Campaign) -> StoreResult<()> {
        let query = sqlx::query(
            r#"
insert into campaigns (campaign_id, public_code, body, created_at)
values ($1, $2, $3::jsonb, $4)"#,
        )
        .bind(&campaign.campaign_id) // $1
        .bind(&campaign.public_code) // $2
        .bind(to_json(campaign)?) // $3
        .bind(campaign.created_at); // $4
        self.run(query).await
    }

    async fn move_coupons(&mut self, from_member_id: &str, to_member_id: &str) -> StoreResult<()> {
        let sql = r#"
update coupons
set member_id = $2
where member_id = $1"#;
        self.move_member_rows(sql, from_member_id, to_member_id)
            .await
    }
}

#[cfg(test)]
mod tests {
    use std::future::Future;

    use chrono::TimeZone;

    use super::*;
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
    fn a_pool_timeout_is_unavailable_and_a_lock_timeout_a_conflict() {
        assert!(matches!(
            map_err(sqlx::Error::PoolTimedOut),
            StoreError::Unavailable(_)
        ));
        assert!(matches!(
            map_err(sqlx::Error::PoolClosed),
            StoreError::Database(_)
        ));
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
