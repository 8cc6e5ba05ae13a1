//! The SQLite backend: an embedded, single-file database in WAL mode.
//!
//! One writer connection serves every read-write unit of work (`BEGIN IMMEDIATE`, so a unit of
//! work holds SQLite's write lock from its first statement and never fails half-way on a lock
//! upgrade); a pool of reader connections serves read-only units of work, each a consistent WAL
//! snapshot. `synchronous = FULL`: an acknowledged commit survives a power cut.
//!
//! Encoding: instants are INTEGER microseconds since the Unix epoch, money is canonical decimal
//! TEXT, enums are their `as_str()` names, structured values are JSON text.

use std::{collections::BTreeMap, fmt::Display, str::FromStr, time::Duration};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::de::DeserializeOwned;
use sqlx::{
    Decode, Row, Sqlite, SqliteConnection, SqlitePool, Type,
    error::ErrorKind,
    sqlite::{
        SqliteArguments, SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteRow,
        SqliteSynchronous,
    },
};

use super::{receipt_no_param, to_json};
use crate::domain::{
    Account, Money,
    auth::Role,
    coupon::{Campaign, Coupon, CouponState},
    model::{
        self, Channel, Identifier, LatLng, Lot, LotState, MemberRow, MemberState, Order, OrderLot,
        OrderState, Posting, Program, Transaction,
    },
    ports::{
        AccountTotal, ApiKeyRecord, DueWork, IdempotencyRecord, LedgerSnapshot, MemberLotTotals,
        NewTransaction, Store, StoreError, StoreResult, UnitOfWork,
    },
};

type SqliteQuery<'q> = sqlx::query::Query<'q, Sqlite, SqliteArguments<'q>>;

/// Primary result codes of a transient lock failure (`code & 0xff` of an extended code).
const SQLITE_BUSY: i32 = 5;
const SQLITE_LOCKED: i32 = 6;
/// How long a statement waits for another process's lock before failing with BUSY.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);
/// Reader connections: reads run in parallel with the one writer under WAL.
const READ_CONNECTIONS: u32 = 8;

#[derive(Debug)]
pub struct SqliteStore {
    write: SqlitePool,
    read: SqlitePool,
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `url` and runs the migrations.
    ///
    /// An in-memory database (`sqlite::memory:`, `mode=memory`) lives only as long as a
    /// connection to it, so it gets one pool of one never-closed connection for reads and writes.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        let base = SqliteConnectOptions::from_str(url)
            .map_err(map_err)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(BUSY_TIMEOUT)
            .foreign_keys(true);
        if is_in_memory(url) {
            let pool = SqlitePoolOptions::new()
                .max_connections(1)
                .min_connections(1)
                .idle_timeout(None)
                .max_lifetime(None)
                .connect_with(base)
                .await
                .map_err(map_err)?;
            migrate(&pool).await?;
            return Ok(Self {
                write: pool.clone(),
                read: pool,
            });
        }
        let write = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(base.clone())
            .await
            .map_err(map_err)?;
        migrate(&write).await?;
        // Readers must never write: `query_only` turns a stray write into an error.
        let read = SqlitePoolOptions::new()
            .max_connections(READ_CONNECTIONS)
            .connect_with(base.pragma("query_only", "ON"))
            .await
            .map_err(map_err)?;
        Ok(Self { write, read })
    }
}

fn is_in_memory(url: &str) -> bool {
    url.contains(":memory:") || url.contains("mode=memory")
}

async fn migrate(pool: &SqlitePool) -> Result<(), StoreError> {
    sqlx::migrate!("migrations/sqlite")
        .run(pool)
        .await
        .map_err(|e| StoreError::Database(Box::new(e)))
}

/// The one place a database error becomes a [`StoreError`]. Recognised by result code, never
/// by message text: lock contention and lost insert races are transient conflicts (the engine
/// checks existence first, so a unique violation means another writer got there first).
fn map_err(error: sqlx::Error) -> StoreError {
    if let sqlx::Error::Database(db) = &error {
        let code = db.code().and_then(|code| code.parse::<i32>().ok());
        let locked = code.is_some_and(|code| matches!(code & 0xff, SQLITE_BUSY | SQLITE_LOCKED));
        if locked || db.kind() == ErrorKind::UniqueViolation {
            return StoreError::Conflict(db.to_string());
        }
    }
    StoreError::Database(Box::new(error))
}

#[async_trait]
impl Store for SqliteStore {
    #[tracing::instrument(level = "debug", skip_all)]
    async fn begin(&self) -> StoreResult<Box<dyn UnitOfWork>> {
        let tx = self
            .write
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(map_err)?;
        Ok(Box::new(SqliteUnitOfWork { tx }))
    }

    #[tracing::instrument(level = "debug", skip_all)]
    async fn begin_read(&self) -> StoreResult<Box<dyn UnitOfWork>> {
        let tx = self.read.begin().await.map_err(map_err)?;
        Ok(Box::new(SqliteUnitOfWork { tx }))
    }

    fn backend_name(&self) -> &'static str {
        "sqlite"
    }

    fn parallel_writers(&self) -> usize {
        1
    }
}

struct SqliteUnitOfWork {
    tx: sqlx::Transaction<'static, Sqlite>,
}

impl SqliteUnitOfWork {
    fn conn(&mut self) -> &mut SqliteConnection {
        &mut self.tx
    }

    async fn execute(&mut self, sql: &'static str) -> StoreResult<()> {
        self.run(sqlx::query(sql)).await
    }

    /// Runs a statement that returns no rows.
    async fn run(&mut self, query: SqliteQuery<'_>) -> StoreResult<()> {
        query.execute(self.conn()).await.map_err(map_err)?;
        Ok(())
    }

    /// The row `query` finds, if any, decoded.
    async fn fetch_optional<T>(
        &mut self,
        query: SqliteQuery<'_>,
        decode: fn(&SqliteRow) -> StoreResult<T>,
    ) -> StoreResult<Option<T>> {
        let row = query.fetch_optional(self.conn()).await.map_err(map_err)?;
        row.as_ref().map(decode).transpose()
    }

    /// Every row `query` finds, decoded.
    async fn fetch_all<T>(
        &mut self,
        query: SqliteQuery<'_>,
        decode: fn(&SqliteRow) -> StoreResult<T>,
    ) -> StoreResult<Vec<T>> {
        let rows = query.fetch_all(self.conn()).await.map_err(map_err)?;
        rows.iter().map(decode).collect()
    }

    async fn move_member_rows(
        &mut self,
        sql: &'static str,
        from: &str,
        to: &str,
    ) -> StoreResult<()> {
        let query = sqlx::query(sql)
            .bind(to) // $1
            .bind(from); // $2
        self.run(query).await
    }

    async fn strings(
        &mut self,
        sql: &'static str,
        now: i64,
        limit: i64,
    ) -> StoreResult<Vec<String>> {
        sqlx::query_scalar(sql)
            .bind(now) // $1
            .bind(limit) // $2
            .fetch_all(self.conn())
            .await
            .map_err(map_err)
    }

    async fn account_totals(&mut self, sql: &'static str) -> StoreResult<Vec<AccountTotal>> {
        let rows: Vec<(String, String, i64)> = sqlx::query_as(sql)
            .fetch_all(self.conn())
            .await
            .map_err(map_err)?;
        Ok(rows
            .into_iter()
            .map(|(account, asset, amount)| AccountTotal {
                account,
                asset,
                amount,
            })
            .collect())
    }

    async fn insert_postings(
        &mut self,
        transaction_id: i64,
        postings: &[Posting],
    ) -> StoreResult<()> {
        for (posting_no, posting) in postings.iter().enumerate() {
            let query = sqlx::query(
                r"
                insert into postings (
                    transaction_id, posting_no, from_account, to_account, asset, amount
                )
                values ($1, $2, $3, $4, $5, $6)
                ",
            )
            .bind(transaction_id) // $1
            .bind(i64::try_from(posting_no).unwrap_or(i64::MAX)) // $2
            .bind(&posting.from_account) // $3
            .bind(&posting.to_account) // $4
            .bind(&posting.asset) // $5
            .bind(posting.amount); // $6
            self.run(query).await?;
        }
        Ok(())
    }

    /// Applies net deltas to stored balances in key order (a fixed lock order). A credit
    /// upserts; a debit only updates, so the CHECK (balance >= 0) sees the resulting balance
    /// (an upsert would check the negative delta itself as a row to insert and always fail).
    async fn apply_balance_deltas(
        &mut self,
        deltas: &BTreeMap<(String, String), i64>,
    ) -> StoreResult<()> {
        for ((account, asset), &delta) in deltas {
            if delta > 0 {
                self.credit_balance(account, asset, delta).await?;
            } else if delta < 0 {
                self.debit_balance(account, asset, delta).await?;
            }
        }
        Ok(())
    }

    async fn credit_balance(&mut self, account: &str, asset: &str, delta: i64) -> StoreResult<()> {
        let query = sqlx::query(
            r"
            insert into balances (account, asset, balance)
            values ($1, $2, $3)
            on conflict (account, asset) do update
            set balance = balances.balance + excluded.balance
            ",
        )
        .bind(account) // $1
        .bind(asset) // $2
        .bind(delta); // $3
        self.run(query).await
    }

    async fn debit_balance(&mut self, account: &str, asset: &str, delta: i64) -> StoreResult<()> {
        let updated = sqlx::query(
            r"
            update balances
            set balance = balance + $3
            where account = $1
              and asset = $2
            ",
        )
        .bind(account) // $1
        .bind(asset) // $2
        .bind(delta) // $3
        .execute(self.conn())
        .await
        .map_err(map_err)?
        .rows_affected();
        if updated == 0 {
            // No row: the balance is zero, and a debit would take it below zero.
            return Err(StoreError::Database(
                format!("balance of {account} in {asset} would go below zero (by {delta})").into(),
            ));
        }
        Ok(())
    }

    async fn postings_between(
        &mut self,
        member_id: &str,
        first_id: i64,
        last_id: i64,
    ) -> StoreResult<BTreeMap<i64, Vec<Posting>>> {
        let query = sqlx::query(
            r"
            select p.transaction_id, p.from_account, p.to_account, p.asset, p.amount
            from postings p
            join transactions t on t.transaction_id = p.transaction_id
            where t.member_id = $1
              and p.transaction_id between $2 and $3
            order by p.transaction_id, p.posting_no
            ",
        )
        .bind(member_id) // $1
        .bind(first_id) // $2
        .bind(last_id); // $3
        let mut postings: BTreeMap<i64, Vec<Posting>> = BTreeMap::new();
        for (transaction_id, posting) in self.fetch_all(query, posting_from_row).await? {
            postings.entry(transaction_id).or_default().push(posting);
        }
        Ok(postings)
    }
}

/// Net change per guarded (account, asset); system accounts have no stored balance.
fn guarded_deltas(postings: &[Posting]) -> StoreResult<BTreeMap<(String, String), i64>> {
    let mut deltas: BTreeMap<(String, String), i64> = BTreeMap::new();
    for posting in postings {
        let sides = [
            (&posting.to_account, posting.amount),
            (
                &posting.from_account,
                posting.amount.checked_neg().unwrap_or(i64::MIN),
            ),
        ];
        for (account, amount) in sides {
            if !Account::parse(account).is_some_and(|a| a.is_guarded()) {
                continue;
            }
            let delta = deltas
                .entry((account.clone(), posting.asset.clone()))
                .or_default();
            *delta = delta
                .checked_add(amount)
                .ok_or_else(|| StoreError::Database("posting amounts overflow".into()))?;
        }
    }
    Ok(deltas)
}

// ---------------------------------------------------------------------------------------------
// Column lists that several queries of a table share.

/// The columns of a store, for the queries below.
macro_rules! select_stores {
    () => {
        r"
            select store_id, name, latitude, longitude, time_zone,
                   geofence_radius_m, geofence_polygon
            from stores"
    };
}

/// The columns of a lot, for the queries below.
macro_rules! select_lots {
    () => {
        r"
            select lot_id, member_id, order_id, state, earned_at, matures_at, expires_at,
                   original_points, remaining_points, held_points
            from point_lots"
    };
}

/// The columns of a campaign, for the queries below.
macro_rules! select_campaigns {
    () => {
        r"
            select campaign_id, body
            from campaigns"
    };
}

/// The columns of a coupon, for the queries below.
macro_rules! select_coupons {
    () => {
        r"
            select code, campaign_id, variant_id, member_id, state, valid_from, valid_until,
                   source, order_id, redeemed_at, issued_at
            from coupons"
    };
}

#[async_trait]
impl UnitOfWork for SqliteUnitOfWork {
    #[tracing::instrument(level = "debug", skip_all)]
    async fn commit(self: Box<Self>) -> StoreResult<()> {
        self.tx.commit().await.map_err(map_err)
    }

    async fn savepoint(&mut self) -> StoreResult<()> {
        self.execute("savepoint cmd").await
    }

    async fn rollback_to_savepoint(&mut self) -> StoreResult<()> {
        self.execute("rollback to savepoint cmd").await
    }

    async fn release_savepoint(&mut self) -> StoreResult<()> {
        self.execute("release savepoint cmd").await
    }

    async fn insert_api_key(&mut self, key: &ApiKeyRecord) -> StoreResult<()> {
        let query = sqlx::query(
            r"
            insert into api_keys (key_id, key_hash, role, store_id, name, created_at)
            values ($1, $2, $3, $4, $5, $6)
            ",
        )
        .bind(&key.key_id) // $1
        .bind(&key.key_hash) // $2
        .bind(key.role.as_str()) // $3
        .bind(key.store_id.as_deref()) // $4
        .bind(&key.name) // $5
        .bind(key.created_at.timestamp_micros()); // $6
        self.run(query).await
    }

    async fn find_api_key(&mut self, key_hash: &str) -> StoreResult<Option<ApiKeyRecord>> {
        let query = sqlx::query(
            r"
            select key_id, key_hash, role, store_id, name, created_at
            from api_keys
            where key_hash = $1
            ",
        )
        .bind(key_hash); // $1
        self.fetch_optional(query, api_key_from_row).await
    }

    async fn find_idempotency(
        &mut self,
        key_id: &str,
        request_id: &str,
    ) -> StoreResult<Option<IdempotencyRecord>> {
        let query = sqlx::query(
            r"
            select key_id, request_id, request_hash, outcome, created_at
            from idempotency_keys
            where key_id = $1
              and request_id = $2
            ",
        )
        .bind(key_id) // $1
        .bind(request_id); // $2
        self.fetch_optional(query, idempotency_from_row).await
    }

    async fn insert_idempotency(&mut self, record: &IdempotencyRecord) -> StoreResult<()> {
        let query = sqlx::query(
            r"
            insert into idempotency_keys (key_id, request_id, request_hash, outcome, created_at)
            values ($1, $2, $3, $4, $5)
            ",
        )
        .bind(&record.key_id) // $1
        .bind(&record.request_id) // $2
        .bind(&record.request_hash) // $3
        .bind(&record.outcome) // $4
        .bind(record.created_at.timestamp_micros()); // $5
        self.run(query).await
    }

    /// `BEGIN IMMEDIATE` already serialises writers: no row lock needed.
    async fn load_program(&mut self, _lock: bool) -> StoreResult<Option<Program>> {
        let query = sqlx::query(
            r"
            select id, body
            from program
            where id = 1
            ",
        );
        self.fetch_optional(query, |row| Cols::new(row, "program", "id").json("body"))
            .await
    }

    async fn ensure_program(&mut self, program: &Program) -> StoreResult<()> {
        let query = sqlx::query(
            r"
            insert into program (id, body)
            values (1, $1)
            on conflict (id) do nothing
            ",
        )
        .bind(to_json(program)?); // $1
        self.run(query).await
    }

    async fn save_program(&mut self, program: &Program) -> StoreResult<()> {
        let query = sqlx::query(
            r"
            insert into program (id, body)
            values (1, $1)
            on conflict (id) do update
            set body = excluded.body
            ",
        )
        .bind(to_json(program)?); // $1
        self.run(query).await
    }

    async fn insert_store(&mut self, store: &model::Store) -> StoreResult<()> {
        let query = sqlx::query(
            r"
            insert into stores (
                store_id, name, latitude, longitude, time_zone,
                geofence_radius_m, geofence_polygon, created_at
            )
            values ($1, $2, $3, $4, $5, $6, $7, $8)
            ",
        )
        .bind(&store.store_id) // $1
        .bind(&store.name) // $2
        .bind(store.location.latitude) // $3
        .bind(store.location.longitude) // $4
        .bind(&store.time_zone) // $5
        .bind(store.geofence_radius_m) // $6
        .bind(to_json(&store.geofence_polygon)?) // $7
        .bind(Utc::now().timestamp_micros()); // $8: bookkeeping only; the port passes no instant
        self.run(query).await
    }

    async fn get_store(&mut self, store_id: &str) -> StoreResult<Option<model::Store>> {
        let query = sqlx::query(concat!(
            select_stores!(),
            r"
            where store_id = $1
            "
        ))
        .bind(store_id); // $1
        self.fetch_optional(query, store_from_row).await
    }

    async fn list_stores(&mut self) -> StoreResult<Vec<model::Store>> {
        let query = sqlx::query(concat!(
            select_stores!(),
            r"
            order by store_id
            "
        ));
        self.fetch_all(query, store_from_row).await
    }

    async fn insert_member(&mut self, member: &MemberRow) -> StoreResult<()> {
        let query = member_query(
            r"
            insert into members (
                member_id, display_name, state, merged_into,
                lifetime_earned_points, lifetime_redeemed_points, created_at
            )
            values ($1, $2, $3, $4, $5, $6, $7)
            ",
            member,
        )
        .bind(member.created_at.timestamp_micros()); // $7
        self.run(query).await
    }

    /// `lock` needs nothing here: `BEGIN IMMEDIATE` already holds the database's write lock.
    async fn get_member(&mut self, member_id: &str, _lock: bool) -> StoreResult<Option<MemberRow>> {
        let query = sqlx::query(
            r"
            select member_id, display_name, state, merged_into, created_at,
                   lifetime_earned_points, lifetime_redeemed_points
            from members
            where member_id = $1
            ",
        )
        .bind(member_id); // $1
        self.fetch_optional(query, member_from_row).await
    }

    async fn update_member(&mut self, member: &MemberRow) -> StoreResult<()> {
        let query = member_query(
            r"
            update members
            set display_name = $2,
                state = $3,
                merged_into = $4,
                lifetime_earned_points = $5,
                lifetime_redeemed_points = $6
            where member_id = $1
            ",
            member,
        );
        self.run(query).await
    }

    async fn insert_identifier(
        &mut self,
        member_id: &str,
        identifier: &Identifier,
    ) -> StoreResult<()> {
        let query = sqlx::query(
            r"
            insert into identifiers (kind, value, member_id)
            values ($1, $2, $3)
            ",
        )
        .bind(&identifier.kind) // $1
        .bind(&identifier.value) // $2
        .bind(member_id); // $3
        self.run(query).await
    }

    async fn member_by_identifier(
        &mut self,
        identifier: &Identifier,
    ) -> StoreResult<Option<String>> {
        sqlx::query_scalar(
            r"
            select member_id
            from identifiers
            where kind = $1
              and value = $2
            ",
        )
        .bind(&identifier.kind) // $1
        .bind(&identifier.value) // $2
        .fetch_optional(self.conn())
        .await
        .map_err(map_err)
    }

    async fn identifiers(&mut self, member_id: &str) -> StoreResult<Vec<Identifier>> {
        let rows: Vec<(String, String)> = sqlx::query_as(
            r"
            select kind, value
            from identifiers
            where member_id = $1
            order by kind, value
            ",
        )
        .bind(member_id) // $1
        .fetch_all(self.conn())
        .await
        .map_err(map_err)?;
        Ok(rows
            .into_iter()
            .map(|(kind, value)| Identifier { kind, value })
            .collect())
    }

    async fn move_identifiers(
        &mut self,
        from_member_id: &str,
        to_member_id: &str,
    ) -> StoreResult<()> {
        let sql = r"
            update identifiers
            set member_id = $1
            where member_id = $2
            ";
        self.move_member_rows(sql, from_member_id, to_member_id)
            .await
    }

    #[tracing::instrument(level = "debug", skip_all, fields(kind = transaction.kind))]
    async fn append_transaction(&mut self, transaction: &NewTransaction) -> StoreResult<i64> {
        let metadata: BTreeMap<&str, &str> = transaction
            .metadata
            .iter()
            .map(|(key, value)| (key.as_str(), value.as_str()))
            .collect();
        let transaction_id: i64 = sqlx::query_scalar(
            r"
            insert into transactions (
                kind, member_id, occurred_at, recorded_at, channel, store_id, order_id, metadata
            )
            values ($1, $2, $3, $4, $5, $6, $7, $8)
            returning transaction_id
            ",
        )
        .bind(transaction.kind) // $1
        .bind(&transaction.member_id) // $2
        .bind(transaction.occurred_at.timestamp_micros()) // $3
        .bind(transaction.recorded_at.timestamp_micros()) // $4
        .bind(transaction.channel.map(Channel::as_str)) // $5
        .bind(&transaction.store_id) // $6
        .bind(&transaction.order_id) // $7
        .bind(to_json(&metadata)?) // $8
        .fetch_one(self.conn())
        .await
        .map_err(map_err)?;
        self.insert_postings(transaction_id, &transaction.postings)
            .await?;
        let deltas = guarded_deltas(&transaction.postings)?;
        self.apply_balance_deltas(&deltas).await?;
        Ok(transaction_id)
    }

    async fn balance(&mut self, account: &str, asset: &str) -> StoreResult<i64> {
        let guarded = Account::parse(account).is_some_and(|a| a.is_guarded());
        let sql = if guarded {
            r"
            select coalesce(sum(balance), 0)
            from balances
            where account = $1
              and asset = $2
            "
        } else {
            r"
            select coalesce(sum(amount), 0)
            from (
                select amount from postings where to_account = $1 and asset = $2
                union all
                select -amount from postings where from_account = $1 and asset = $2
            )
            "
        };
        sqlx::query_scalar(sql)
            .bind(account) // $1
            .bind(asset) // $2
            .fetch_one(self.conn())
            .await
            .map_err(map_err)
    }

    #[tracing::instrument(level = "debug", skip_all)]
    async fn member_transactions(
        &mut self,
        member_id: &str,
        before_transaction_id: Option<i64>,
        limit: i64,
    ) -> StoreResult<Vec<Transaction>> {
        let query = sqlx::query(
            r"
            select transaction_id, kind, member_id, occurred_at, recorded_at,
                   channel, store_id, order_id, metadata
            from transactions
            where member_id = $1
              and transaction_id < $2
            order by transaction_id desc
            limit $3
            ",
        )
        .bind(member_id) // $1
        .bind(before_transaction_id.unwrap_or(i64::MAX)) // $2
        .bind(limit.max(0)); // $3
        let mut transactions = self.fetch_all(query, transaction_from_row).await?;
        let (Some(newest), Some(oldest)) = (transactions.first(), transactions.last()) else {
            return Ok(transactions);
        };
        // The page is every transaction of the member between its oldest and newest id.
        let (first_id, last_id) = (oldest.transaction_id, newest.transaction_id);
        let mut postings = self.postings_between(member_id, first_id, last_id).await?;
        for transaction in &mut transactions {
            transaction.postings = postings
                .remove(&transaction.transaction_id)
                .unwrap_or_default();
        }
        Ok(transactions)
    }

    async fn insert_lot(&mut self, lot: &Lot) -> StoreResult<i64> {
        let query = lot_query(
            r"
            insert into point_lots (
                member_id, order_id, state, earned_at, matures_at, expires_at,
                original_points, remaining_points, held_points
            )
            values ($1, $2, $3, $4, $5, $6, $7, $8, $9)
            returning lot_id
            ",
            lot,
        );
        query
            .try_map(|row: SqliteRow| row.try_get("lot_id"))
            .fetch_one(self.conn())
            .await
            .map_err(map_err)
    }

    async fn member_lots(&mut self, member_id: &str) -> StoreResult<Vec<Lot>> {
        let query = sqlx::query(concat!(
            select_lots!(),
            r"
            where member_id = $1
              and remaining_points > 0
            order by expires_at is null, expires_at, lot_id
            "
        ))
        .bind(member_id); // $1
        self.fetch_all(query, lot_from_row).await
    }

    async fn update_lot(&mut self, lot: &Lot) -> StoreResult<()> {
        let query = lot_query(
            r"
            update point_lots
            set member_id = $1,
                order_id = $2,
                state = $3,
                earned_at = $4,
                matures_at = $5,
                expires_at = $6,
                original_points = $7,
                remaining_points = $8,
                held_points = $9
            where lot_id = $10
            ",
            lot,
        )
        .bind(lot.lot_id); // $10
        self.run(query).await
    }

    async fn move_lots(&mut self, from_member_id: &str, to_member_id: &str) -> StoreResult<()> {
        let sql = r"
            update point_lots
            set member_id = $1
            where member_id = $2
            ";
        self.move_member_rows(sql, from_member_id, to_member_id)
            .await
    }

    async fn insert_order_lot(&mut self, order_lot: &OrderLot) -> StoreResult<()> {
        let query = sqlx::query(
            r"
            insert into order_lots (order_id, lot_id, points, restored_points)
            values ($1, $2, $3, $4)
            ",
        )
        .bind(&order_lot.order_id) // $1
        .bind(order_lot.lot_id) // $2
        .bind(order_lot.points) // $3
        .bind(order_lot.restored_points); // $4
        self.run(query).await
    }

    async fn order_lots(&mut self, order_id: &str) -> StoreResult<Vec<OrderLot>> {
        let rows: Vec<(String, i64, i64, i64)> = sqlx::query_as(
            r"
            select order_id, lot_id, points, restored_points
            from order_lots
            where order_id = $1
            order by lot_id
            ",
        )
        .bind(order_id) // $1
        .fetch_all(self.conn())
        .await
        .map_err(map_err)?;
        Ok(rows
            .into_iter()
            .map(|(order_id, lot_id, points, restored_points)| OrderLot {
                order_id,
                lot_id,
                points,
                restored_points,
            })
            .collect())
    }

    async fn update_order_lot(&mut self, order_lot: &OrderLot) -> StoreResult<()> {
        let query = sqlx::query(
            r"
            update order_lots
            set points = $3,
                restored_points = $4
            where order_id = $1
              and lot_id = $2
            ",
        )
        .bind(&order_lot.order_id) // $1
        .bind(order_lot.lot_id) // $2
        .bind(order_lot.points) // $3
        .bind(order_lot.restored_points); // $4
        self.run(query).await
    }

    async fn get_lot(&mut self, lot_id: i64) -> StoreResult<Option<Lot>> {
        let query = sqlx::query(concat!(
            select_lots!(),
            r"
            where lot_id = $1
            "
        ))
        .bind(lot_id); // $1
        self.fetch_optional(query, lot_from_row).await
    }

    async fn insert_order(&mut self, order: &Order) -> StoreResult<()> {
        let query = order_query(
            r"
            insert into orders (
                order_id, member_id, state, channel, store_id, register_id, receipt_no,
                lines, total, coupon_discount, points_redeemed, amount_due, points_earned,
                points_pending, coupon_codes, hold_expires_at, refunded_amount,
                points_reversed, points_restored, occurred_at, created_at
            )
            values (
                $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11,
                $12, $13, $14, $15, $16, $17, $18, $19, $20, $21
            )
            ",
            order,
        )?;
        self.run(query).await
    }

    /// `lock` needs nothing here: `BEGIN IMMEDIATE` already holds the database's write lock.
    async fn get_order(&mut self, order_id: &str, _lock: bool) -> StoreResult<Option<Order>> {
        let query = sqlx::query(
            r"
            select order_id, member_id, state, channel, store_id, register_id, receipt_no,
                   lines, total, coupon_discount, points_redeemed, amount_due, points_earned,
                   points_pending, coupon_codes, hold_expires_at, refunded_amount,
                   points_reversed, points_restored, occurred_at, created_at
            from orders
            where order_id = $1
            ",
        )
        .bind(order_id); // $1
        self.fetch_optional(query, order_from_row).await
    }

    async fn order_by_receipt(
        &mut self,
        store_id: &str,
        register_id: &str,
        receipt_no: &str,
    ) -> StoreResult<Option<String>> {
        sqlx::query_scalar(
            r"
            select order_id
            from orders
            where store_id = $1
              and register_id = $2
              and receipt_no = $3
            ",
        )
        .bind(store_id) // $1
        .bind(register_id) // $2
        .bind(receipt_no) // $3
        .fetch_optional(self.conn())
        .await
        .map_err(map_err)
    }

    async fn update_order(&mut self, order: &Order) -> StoreResult<()> {
        let query = order_query(
            r"
            update orders
            set member_id = $2,
                state = $3,
                channel = $4,
                store_id = $5,
                register_id = $6,
                receipt_no = $7,
                lines = $8,
                total = $9,
                coupon_discount = $10,
                points_redeemed = $11,
                amount_due = $12,
                points_earned = $13,
                points_pending = $14,
                coupon_codes = $15,
                hold_expires_at = $16,
                refunded_amount = $17,
                points_reversed = $18,
                points_restored = $19,
                occurred_at = $20,
                created_at = $21
            where order_id = $1
            ",
            order,
        )?;
        self.run(query).await
    }

    async fn member_has_open_orders(&mut self, member_id: &str) -> StoreResult<bool> {
        sqlx::query_scalar(
            r"
            select exists (
                select 1
                from orders
                where member_id = $1
                  and state = 'authorized'
            )
            ",
        )
        .bind(member_id) // $1
        .fetch_one(self.conn())
        .await
        .map_err(map_err)
    }

    async fn insert_campaign(&mut self, campaign: &Campaign) -> StoreResult<()> {
        let query = sqlx::query(
            r"
            insert into campaigns (campaign_id, public_code, body, created_at)
            values ($1, $2, $3, $4)
            ",
        )
        .bind(&campaign.campaign_id) // $1
        .bind(campaign.public_code.as_deref()) // $2
        .bind(to_json(campaign)?) // $3
        .bind(campaign.created_at.timestamp_micros()); // $4
        self.run(query).await
    }

    /// `lock` needs nothing here: `BEGIN IMMEDIATE` already holds the database's write lock.
    async fn get_campaign(
        &mut self,
        campaign_id: &str,
        _lock: bool,
    ) -> StoreResult<Option<Campaign>> {
        let query = sqlx::query(concat!(
            select_campaigns!(),
            r"
            where campaign_id = $1
            "
        ))
        .bind(campaign_id); // $1
        self.fetch_optional(query, campaign_from_row).await
    }

    async fn campaign_by_public_code(
        &mut self,
        public_code: &str,
    ) -> StoreResult<Option<Campaign>> {
        let query = sqlx::query(concat!(
            select_campaigns!(),
            r"
            where public_code = $1
            "
        ))
        .bind(public_code); // $1
        self.fetch_optional(query, campaign_from_row).await
    }

    async fn list_campaigns(&mut self) -> StoreResult<Vec<Campaign>> {
        let query = sqlx::query(concat!(
            select_campaigns!(),
            r"
            order by created_at, campaign_id
            "
        ));
        self.fetch_all(query, campaign_from_row).await
    }

    async fn count_coupons(
        &mut self,
        campaign_id: &str,
        member_id: Option<&str>,
    ) -> StoreResult<i64> {
        sqlx::query_scalar(
            r"
            select count(*)
            from coupons
            where campaign_id = $1
              and ($2 is null or member_id = $2)
            ",
        )
        .bind(campaign_id) // $1
        .bind(member_id) // $2
        .fetch_one(self.conn())
        .await
        .map_err(map_err)
    }

    async fn insert_coupon(&mut self, coupon: &Coupon) -> StoreResult<()> {
        let query = coupon_query(
            r"
            insert into coupons (
                code, campaign_id, variant_id, member_id, state, valid_from, valid_until,
                source, order_id, redeemed_at, issued_at
            )
            values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
            ",
            coupon,
        );
        self.run(query).await
    }

    /// `lock` needs nothing here: `BEGIN IMMEDIATE` already holds the database's write lock.
    async fn get_coupon(&mut self, code: &str, _lock: bool) -> StoreResult<Option<Coupon>> {
        let query = sqlx::query(concat!(
            select_coupons!(),
            r"
            where code = $1
            "
        ))
        .bind(code); // $1
        self.fetch_optional(query, coupon_from_row).await
    }

    async fn update_coupon(&mut self, coupon: &Coupon) -> StoreResult<()> {
        let query = coupon_query(
            r"
            update coupons
            set campaign_id = $2,
                variant_id = $3,
                member_id = $4,
                state = $5,
                valid_from = $6,
                valid_until = $7,
                source = $8,
                order_id = $9,
                redeemed_at = $10,
                issued_at = $11
            where code = $1
            ",
            coupon,
        );
        self.run(query).await
    }

    async fn member_coupons(&mut self, member_id: &str) -> StoreResult<Vec<Coupon>> {
        let query = sqlx::query(concat!(
            select_coupons!(),
            r"
            where member_id = $1
            order by issued_at, code
            "
        ))
        .bind(member_id); // $1
        self.fetch_all(query, coupon_from_row).await
    }

    async fn order_coupons(&mut self, order_id: &str) -> StoreResult<Vec<Coupon>> {
        let query = sqlx::query(concat!(
            select_coupons!(),
            r"
            where order_id = $1
              and order_id <> ''
            order by code
            "
        ))
        .bind(order_id); // $1
        self.fetch_all(query, coupon_from_row).await
    }

    async fn move_coupons(&mut self, from_member_id: &str, to_member_id: &str) -> StoreResult<()> {
        let sql = r"
            update coupons
            set member_id = $1
            where member_id = $2
            ";
        self.move_member_rows(sql, from_member_id, to_member_id)
            .await
    }

    #[tracing::instrument(level = "debug", skip_all)]
    async fn due_work(&mut self, now: DateTime<Utc>, limit: i64) -> StoreResult<DueWork> {
        let now = now.timestamp_micros();
        let limit = limit.max(0);
        let expired_holds = self
            .strings(
                r"
                select order_id
                from orders
                where state = 'authorized'
                  and hold_expires_at <= $1
                order by hold_expires_at, order_id
                limit $2
                ",
                now,
                limit,
            )
            .await?;
        // Two arms, so each can use its partial index; `union` makes the ids distinct.
        let members_with_due_lots = self
            .strings(
                r"
                select member_id
                from point_lots
                where state = 'pending'
                  and matures_at <= $1
                union
                select member_id
                from point_lots
                where remaining_points > held_points
                  and expires_at <= $1
                  and state in ('pending', 'available')
                order by member_id
                limit $2
                ",
                now,
                limit,
            )
            .await?;
        let expired_coupons = self
            .strings(
                r"
                select code
                from coupons
                where state = 'active'
                  and valid_until <= $1
                order by valid_until, code
                limit $2
                ",
                now,
                limit,
            )
            .await?;
        Ok(DueWork {
            expired_holds,
            members_with_due_lots,
            expired_coupons,
        })
    }

    #[tracing::instrument(level = "debug", skip_all)]
    async fn ledger_snapshot(&mut self) -> StoreResult<LedgerSnapshot> {
        let malformed_postings: i64 = sqlx::query_scalar(
            r"
            select count(*)
            from postings
            where amount <= 0
               or from_account = to_account
            ",
        )
        .fetch_one(self.conn())
        .await
        .map_err(map_err)?;
        let posting_sums = self
            .account_totals(
                r"
                select account, asset, sum(amount)
                from (
                    select to_account as account, asset, amount from postings
                    union all
                    select from_account as account, asset, -amount from postings
                )
                group by account, asset
                order by account, asset
                ",
            )
            .await?;
        let stored_balances = self
            .account_totals(
                r"
                select account, asset, balance
                from balances
                order by account, asset
                ",
            )
            .await?;
        let coupon_positions = self
            .account_totals(
                r"
                select account, asset, count(*)
                from (
                    select 'member:' || member_id as account, 'CPN:' || campaign_id as asset
                    from coupons
                    where state = 'active'
                    union all
                    select 'hold:' || order_id as account, 'CPN:' || campaign_id as asset
                    from coupons
                    where state = 'reserved'
                )
                group by account, asset
                order by account, asset
                ",
            )
            .await?;
        let lot_totals = self.lot_totals().await?;
        let (authorized_orders, orders_resolved_twice) = self.order_checks().await?;
        Ok(LedgerSnapshot {
            malformed_postings,
            posting_sums,
            stored_balances,
            lot_totals,
            authorized_orders,
            orders_resolved_twice,
            coupon_positions,
        })
    }
}

impl SqliteUnitOfWork {
    async fn lot_totals(&mut self) -> StoreResult<Vec<MemberLotTotals>> {
        let rows: Vec<(String, i64, i64, i64, i64)> = sqlx::query_as(
            r"
            select member_id,
                   coalesce(sum(case when state = 'pending' then remaining_points end), 0),
                   coalesce(
                       sum(case when state in ('available', 'expired') then remaining_points end),
                       0
                   ),
                   coalesce(sum(held_points), 0),
                   count(
                       case
                           when original_points < 0
                             or remaining_points < 0
                             or held_points < 0
                             or remaining_points > original_points
                             or held_points > remaining_points
                           then 1
                       end
                   )
            from point_lots
            group by member_id
            order by member_id
            ",
        )
        .fetch_all(self.conn())
        .await
        .map_err(map_err)?;
        Ok(rows
            .into_iter()
            .map(
                |(member_id, pending, spendable, held, malformed)| MemberLotTotals {
                    member_id,
                    pending_remaining: pending,
                    spendable_remaining: spendable,
                    held,
                    malformed_lots: malformed,
                },
            )
            .collect())
    }

    async fn order_checks(&mut self) -> StoreResult<(Vec<(String, i64)>, Vec<String>)> {
        let authorized_orders = sqlx::query_as(
            r"
            select order_id, points_redeemed
            from orders
            where state = 'authorized'
            order by order_id
            ",
        )
        .fetch_all(self.conn())
        .await
        .map_err(map_err)?;
        let resolved_twice = sqlx::query_scalar(
            r"
            select order_id
            from transactions
            where kind in ('capture', 'void', 'hold_expired')
              and order_id <> ''
            group by order_id
            having count(*) > 1
            order by order_id
            ",
        )
        .fetch_all(self.conn())
        .await
        .map_err(map_err)?;
        Ok((authorized_orders, resolved_twice))
    }
}

// ---------------------------------------------------------------------------------------------
// Binding: one function per table binds the columns its insert and its update share.

/// `member_id` ($1) to `lifetime_redeemed_points` ($6); the insert adds `created_at` ($7).
fn member_query<'q>(sql: &'q str, member: &'q MemberRow) -> SqliteQuery<'q> {
    sqlx::query(sql)
        .bind(&member.member_id) // $1
        .bind(&member.display_name) // $2
        .bind(member.state.as_str()) // $3
        .bind(member.merged_into.as_deref()) // $4
        .bind(member.lifetime_earned_points) // $5
        .bind(member.lifetime_redeemed_points) // $6
}

/// Every column but `lot_id`, which the insert returns and the update binds as $10.
fn lot_query<'q>(sql: &'q str, lot: &'q Lot) -> SqliteQuery<'q> {
    sqlx::query(sql)
        .bind(&lot.member_id) // $1
        .bind(&lot.order_id) // $2
        .bind(lot.state.as_str()) // $3
        .bind(lot.earned_at.timestamp_micros()) // $4
        .bind(lot.matures_at.map(|at| at.timestamp_micros())) // $5
        .bind(lot.expires_at.map(|at| at.timestamp_micros())) // $6
        .bind(lot.original_points) // $7
        .bind(lot.remaining_points) // $8
        .bind(lot.held_points) // $9
}

/// Every column of an order, `order_id` first.
fn order_query<'q>(sql: &'q str, order: &'q Order) -> StoreResult<SqliteQuery<'q>> {
    Ok(sqlx::query(sql)
        .bind(&order.order_id) // $1
        .bind(&order.member_id) // $2
        .bind(order.state.as_str()) // $3
        .bind(order.channel.as_str()) // $4
        .bind(&order.store_id) // $5
        .bind(&order.register_id) // $6
        .bind(receipt_no_param(&order.receipt_no)) // $7
        .bind(to_json(&order.lines)?) // $8
        .bind(order.total.to_string()) // $9
        .bind(order.coupon_discount.to_string()) // $10
        .bind(order.points_redeemed) // $11
        .bind(order.amount_due.to_string()) // $12
        .bind(order.points_earned) // $13
        .bind(order.points_pending) // $14
        .bind(to_json(&order.coupon_codes)?) // $15
        .bind(order.hold_expires_at.map(|at| at.timestamp_micros())) // $16
        .bind(order.refunded_amount.to_string()) // $17
        .bind(order.points_reversed) // $18
        .bind(order.points_restored) // $19
        .bind(order.occurred_at.timestamp_micros()) // $20
        .bind(order.created_at.timestamp_micros())) // $21
}

/// Every column of a coupon, `code` first.
fn coupon_query<'q>(sql: &'q str, coupon: &'q Coupon) -> SqliteQuery<'q> {
    sqlx::query(sql)
        .bind(&coupon.code) // $1
        .bind(&coupon.campaign_id) // $2
        .bind(&coupon.variant_id) // $3
        .bind(&coupon.member_id) // $4
        .bind(coupon.state.as_str()) // $5
        .bind(coupon.valid_from.timestamp_micros()) // $6
        .bind(coupon.valid_until.map(|at| at.timestamp_micros())) // $7
        .bind(&coupon.source) // $8
        .bind(&coupon.order_id) // $9
        .bind(coupon.redeemed_at.map(|at| at.timestamp_micros())) // $10
        .bind(coupon.issued_at.timestamp_micros()) // $11
}

// ---------------------------------------------------------------------------------------------
// Encoding and decoding.

/// Reads the columns of one row; a value that does not decode is [`StoreError::Corrupt`],
/// naming the table, the row's key and the column.
struct Cols<'r> {
    row: &'r SqliteRow,
    table: &'static str,
    key: String,
}

impl<'r> Cols<'r> {
    fn new(row: &'r SqliteRow, table: &'static str, key_column: &str) -> Self {
        let key = row
            .try_get::<String, _>(key_column)
            .or_else(|_| row.try_get::<i64, _>(key_column).map(|id| id.to_string()))
            .unwrap_or_else(|_| "?".to_string());
        Self { row, table, key }
    }

    fn corrupt(&self, column: &str, why: impl Display) -> StoreError {
        StoreError::Corrupt(format!("{}[{}].{column}: {why}", self.table, self.key))
    }

    fn get<T: Decode<'r, Sqlite> + Type<Sqlite>>(&self, column: &str) -> StoreResult<T> {
        self.row
            .try_get(column)
            .map_err(|e| self.corrupt(column, e))
    }

    fn instant(&self, column: &str) -> StoreResult<DateTime<Utc>> {
        let micros: i64 = self.get(column)?;
        self.instant_of(column, micros)
    }

    fn opt_instant(&self, column: &str) -> StoreResult<Option<DateTime<Utc>>> {
        let micros: Option<i64> = self.get(column)?;
        micros.map(|m| self.instant_of(column, m)).transpose()
    }

    fn instant_of(&self, column: &str, micros: i64) -> StoreResult<DateTime<Utc>> {
        DateTime::from_timestamp_micros(micros)
            .ok_or_else(|| self.corrupt(column, format!("instant {micros} µs is out of range")))
    }

    fn money(&self, column: &str) -> StoreResult<Money> {
        let text: String = self.get(column)?;
        text.parse()
            .map_err(|e| self.corrupt(column, format!("amount {text:?}: {e}")))
    }

    fn json<T: DeserializeOwned>(&self, column: &str) -> StoreResult<T> {
        let text: String = self.get(column)?;
        serde_json::from_str(&text).map_err(|e| self.corrupt(column, format!("JSON: {e}")))
    }

    /// A text column holding one of an enum's `as_str()` names.
    fn named<T>(&self, column: &str, parse: fn(&str) -> Option<T>) -> StoreResult<T> {
        let text: String = self.get(column)?;
        parse(&text).ok_or_else(|| self.corrupt(column, format!("unknown value {text:?}")))
    }
}

fn api_key_from_row(row: &SqliteRow) -> StoreResult<ApiKeyRecord> {
    let c = Cols::new(row, "api_keys", "key_id");
    Ok(ApiKeyRecord {
        key_id: c.get("key_id")?,
        key_hash: c.get("key_hash")?,
        role: c.named("role", Role::parse)?,
        store_id: c.get("store_id")?,
        name: c.get("name")?,
        created_at: c.instant("created_at")?,
    })
}

fn idempotency_from_row(row: &SqliteRow) -> StoreResult<IdempotencyRecord> {
    let c = Cols::new(row, "idempotency_keys", "request_id");
    Ok(IdempotencyRecord {
        key_id: c.get("key_id")?,
        request_id: c.get("request_id")?,
        request_hash: c.get("request_hash")?,
        outcome: c.get("outcome")?,
        created_at: c.instant("created_at")?,
    })
}

fn store_from_row(row: &SqliteRow) -> StoreResult<model::Store> {
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

fn member_from_row(row: &SqliteRow) -> StoreResult<MemberRow> {
    let c = Cols::new(row, "members", "member_id");
    Ok(MemberRow {
        member_id: c.get("member_id")?,
        display_name: c.get("display_name")?,
        state: c.named("state", MemberState::parse)?,
        merged_into: c.get("merged_into")?,
        created_at: c.instant("created_at")?,
        lifetime_earned_points: c.get("lifetime_earned_points")?,
        lifetime_redeemed_points: c.get("lifetime_redeemed_points")?,
    })
}

/// A transaction without its postings (read separately, one query per page).
fn transaction_from_row(row: &SqliteRow) -> StoreResult<Transaction> {
    let c = Cols::new(row, "transactions", "transaction_id");
    let channel: Option<String> = c.get("channel")?;
    let channel = channel
        .map(|name| {
            Channel::parse(&name)
                .ok_or_else(|| c.corrupt("channel", format!("unknown value {name:?}")))
        })
        .transpose()?;
    Ok(Transaction {
        transaction_id: c.get("transaction_id")?,
        kind: c.get("kind")?,
        member_id: c.get("member_id")?,
        occurred_at: c.instant("occurred_at")?,
        recorded_at: c.instant("recorded_at")?,
        channel,
        store_id: c.get("store_id")?,
        order_id: c.get("order_id")?,
        postings: Vec::new(),
        metadata: c.json("metadata")?,
    })
}

fn posting_from_row(row: &SqliteRow) -> StoreResult<(i64, Posting)> {
    let c = Cols::new(row, "postings", "transaction_id");
    let posting = Posting {
        from_account: c.get("from_account")?,
        to_account: c.get("to_account")?,
        asset: c.get("asset")?,
        amount: c.get("amount")?,
    };
    Ok((c.get("transaction_id")?, posting))
}

fn lot_from_row(row: &SqliteRow) -> StoreResult<Lot> {
    let c = Cols::new(row, "point_lots", "lot_id");
    Ok(Lot {
        lot_id: c.get("lot_id")?,
        member_id: c.get("member_id")?,
        order_id: c.get("order_id")?,
        state: c.named("state", LotState::parse)?,
        earned_at: c.instant("earned_at")?,
        matures_at: c.opt_instant("matures_at")?,
        expires_at: c.opt_instant("expires_at")?,
        original_points: c.get("original_points")?,
        remaining_points: c.get("remaining_points")?,
        held_points: c.get("held_points")?,
    })
}

fn order_from_row(row: &SqliteRow) -> StoreResult<Order> {
    let c = Cols::new(row, "orders", "order_id");
    let receipt_no: Option<String> = c.get("receipt_no")?;
    Ok(Order {
        order_id: c.get("order_id")?,
        member_id: c.get("member_id")?,
        state: c.named("state", OrderState::parse)?,
        channel: c.named("channel", Channel::parse)?,
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
        hold_expires_at: c.opt_instant("hold_expires_at")?,
        refunded_amount: c.money("refunded_amount")?,
        points_reversed: c.get("points_reversed")?,
        points_restored: c.get("points_restored")?,
        occurred_at: c.instant("occurred_at")?,
        created_at: c.instant("created_at")?,
    })
}

fn campaign_from_row(row: &SqliteRow) -> StoreResult<Campaign> {
    Cols::new(row, "campaigns", "campaign_id").json("body")
}

fn coupon_from_row(row: &SqliteRow) -> StoreResult<Coupon> {
    let c = Cols::new(row, "coupons", "code");
    Ok(Coupon {
        code: c.get("code")?,
        campaign_id: c.get("campaign_id")?,
        variant_id: c.get("variant_id")?,
        member_id: c.get("member_id")?,
        state: c.named("state", CouponState::parse)?,
        valid_from: c.instant("valid_from")?,
        valid_until: c.opt_instant("valid_until")?,
        source: c.get("source")?,
        order_id: c.get("order_id")?,
        redeemed_at: c.opt_instant("redeemed_at")?,
        issued_at: c.instant("issued_at")?,
    })
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use chrono::Duration as Days;

    use super::*;

    /// A database file in the temp directory, removed (with its WAL files) when dropped.
    struct TempDb {
        path: PathBuf,
    }

    impl TempDb {
        fn new() -> Self {
            let name = format!("omo-sqlite-test-{:016x}.db", rand::random::<u64>());
            Self {
                path: std::env::temp_dir().join(name),
            }
        }

        async fn open(&self) -> SqliteStore {
            let url = format!("sqlite://{}", self.path.display());
            SqliteStore::connect(&url)
                .await
                .expect("open test database")
        }
    }

    impl Drop for TempDb {
        fn drop(&mut self) {
            for suffix in ["", "-wal", "-shm"] {
                let mut path = self.path.clone().into_os_string();
                path.push(suffix);
                let _ = std::fs::remove_file(path);
            }
        }
    }

    fn at(seconds: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_700_000_000 + seconds, 0).expect("valid instant")
    }

    fn posting(from: &str, to: &str, amount: i64) -> Posting {
        Posting {
            from_account: from.into(),
            to_account: to.into(),
            asset: "PTS".into(),
            amount,
        }
    }

    fn entry(kind: &'static str, postings: Vec<Posting>) -> NewTransaction {
        NewTransaction {
            kind,
            member_id: "m1".into(),
            occurred_at: at(0),
            recorded_at: at(1),
            channel: Some(Channel::Ec),
            store_id: String::new(),
            order_id: "o1".into(),
            postings,
            metadata: vec![("reason".into(), "test".into())],
        }
    }

    fn lot(expires_at: Option<DateTime<Utc>>, remaining_points: i64) -> Lot {
        Lot {
            lot_id: 0,
            member_id: "m1".into(),
            order_id: "o1".into(),
            state: LotState::Available,
            earned_at: at(0),
            matures_at: None,
            expires_at,
            original_points: 100,
            remaining_points,
            held_points: 0,
        }
    }

    async fn stored_rows(uow: &mut dyn UnitOfWork, account: &str) -> i64 {
        let snapshot = uow.ledger_snapshot().await.expect("snapshot");
        let count = snapshot
            .stored_balances
            .iter()
            .filter(|total| total.account == account)
            .count();
        i64::try_from(count).expect("small")
    }

    #[tokio::test]
    async fn postings_update_guarded_balances_only() {
        let db = TempDb::new();
        let store = db.open().await;
        let mut uow = store.begin().await.expect("begin");
        let earn = entry("earn", vec![posting("program:issued", "member:m1", 100)]);
        let hold = entry(
            "authorize",
            vec![
                posting("member:m1", "hold:o1", 30),
                posting("member:m1", "hold:o1", 5),
            ],
        );
        let first = uow.append_transaction(&earn).await.expect("earn");
        let second = uow.append_transaction(&hold).await.expect("hold");
        assert!(second > first);
        uow.commit().await.expect("commit");

        let mut read = store.begin_read().await.expect("begin read");
        assert_eq!(read.balance("member:m1", "PTS").await.unwrap(), 65);
        assert_eq!(read.balance("hold:o1", "PTS").await.unwrap(), 35);
        assert_eq!(read.balance("program:issued", "PTS").await.unwrap(), -100);
        assert_eq!(read.balance("member:m2", "PTS").await.unwrap(), 0);
        assert_eq!(stored_rows(read.as_mut(), "program:issued").await, 0);
        assert_eq!(stored_rows(read.as_mut(), "member:m1").await, 1);

        let page = read.member_transactions("m1", None, 10).await.unwrap();
        assert_eq!(page.len(), 2);
        assert_eq!(page[0].transaction_id, second);
        assert_eq!(page[0].postings, hold.postings);
        assert_eq!(
            page[0].metadata.get("reason").map(String::as_str),
            Some("test")
        );
        assert_eq!(page[1].postings, earn.postings);
        let older = read
            .member_transactions("m1", Some(second), 10)
            .await
            .unwrap();
        assert_eq!(older.len(), 1);
        assert_eq!(older[0].transaction_id, first);
    }

    #[tokio::test]
    async fn balances_never_go_negative() {
        let db = TempDb::new();
        let store = db.open().await;
        let mut uow = store.begin().await.expect("begin");
        let earn = entry("earn", vec![posting("program:issued", "member:m1", 50)]);
        uow.append_transaction(&earn).await.expect("earn");

        // No row at all for member:m2.
        let from_nothing = entry("authorize", vec![posting("member:m2", "hold:o1", 1)]);
        let error = uow.append_transaction(&from_nothing).await.unwrap_err();
        assert!(matches!(error, StoreError::Database(_)), "{error:?}");

        // An existing row that would go below zero.
        let overdraw = entry("authorize", vec![posting("member:m1", "hold:o1", 51)]);
        let error = uow.append_transaction(&overdraw).await.unwrap_err();
        assert!(matches!(error, StoreError::Database(_)), "{error:?}");

        // Exactly to zero is fine.
        let all = entry("authorize", vec![posting("member:m1", "hold:o1", 50)]);
        uow.append_transaction(&all).await.expect("spend all");
        assert_eq!(uow.balance("member:m1", "PTS").await.unwrap(), 0);
    }

    #[tokio::test]
    async fn savepoint_rollback_keeps_earlier_work() {
        let db = TempDb::new();
        let store = db.open().await;
        let mut uow = store.begin().await.expect("begin");
        let earn = entry("earn", vec![posting("program:issued", "member:m1", 10)]);
        uow.append_transaction(&earn).await.expect("earn");
        uow.savepoint().await.expect("savepoint");
        uow.append_transaction(&earn).await.expect("earn again");
        uow.insert_lot(&lot(None, 100)).await.expect("lot");
        uow.rollback_to_savepoint().await.expect("rollback to");
        uow.release_savepoint().await.expect("release");
        uow.commit().await.expect("commit");

        let mut read = store.begin_read().await.expect("begin read");
        assert_eq!(read.balance("member:m1", "PTS").await.unwrap(), 10);
        assert_eq!(
            read.member_transactions("m1", None, 10)
                .await
                .unwrap()
                .len(),
            1
        );
        assert!(read.member_lots("m1").await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn member_lots_soonest_expiry_first() {
        let db = TempDb::new();
        let store = db.open().await;
        let mut uow = store.begin().await.expect("begin");
        let never = uow.insert_lot(&lot(None, 10)).await.unwrap();
        let later = uow
            .insert_lot(&lot(Some(at(0) + Days::days(2)), 10))
            .await
            .unwrap();
        let spent = uow.insert_lot(&lot(Some(at(0)), 0)).await.unwrap();
        let sooner = uow
            .insert_lot(&lot(Some(at(0) + Days::days(1)), 10))
            .await
            .unwrap();
        let lots = uow.member_lots("m1").await.unwrap();
        let ids: Vec<i64> = lots.iter().map(|lot| lot.lot_id).collect();
        assert_eq!(ids, vec![sooner, later, never]);
        assert!(!ids.contains(&spent));
        assert_eq!(lots[0].expires_at, Some(at(0) + Days::days(1)));
        assert_eq!(uow.get_lot(never).await.unwrap().unwrap().expires_at, None);
    }

    fn order(order_id: &str, receipt_no: &str) -> Order {
        let money = |s: &str| s.parse::<Money>().expect("money");
        Order {
            order_id: order_id.into(),
            member_id: "m1".into(),
            state: OrderState::Authorized,
            channel: Channel::Store,
            store_id: "s1".into(),
            register_id: "r1".into(),
            receipt_no: receipt_no.into(),
            lines: Vec::new(),
            total: money("1980.5"),
            coupon_discount: money("100"),
            points_redeemed: 7,
            amount_due: money("1873.5"),
            points_earned: 0,
            points_pending: 0,
            coupon_codes: vec!["C1".into()],
            hold_expires_at: Some(at(60)),
            refunded_amount: Money::ZERO,
            points_reversed: 0,
            points_restored: 0,
            occurred_at: at(0),
            created_at: at(1),
        }
    }

    fn campaign() -> Campaign {
        Campaign {
            campaign_id: "camp".into(),
            name: "Welcome".into(),
            discount: crate::domain::coupon::Discount::AmountOff("100".parse().expect("money")),
            min_spend: Money::ZERO,
            channels: Vec::new(),
            store_ids: Vec::new(),
            starts_at: None,
            ends_at: None,
            validity_days: 0,
            per_member_limit: 0,
            issue_limit: 0,
            stackable: true,
            public_code: Some("WELCOME".into()),
            issue_on_capture: None,
            variants: Vec::new(),
            created_at: at(0),
        }
    }

    fn coupon(code: &str, state: CouponState, order_id: &str) -> Coupon {
        Coupon {
            code: code.into(),
            campaign_id: "camp".into(),
            variant_id: String::new(),
            member_id: "m1".into(),
            state,
            valid_from: at(0),
            valid_until: Some(at(30)),
            source: "admin".into(),
            order_id: order_id.into(),
            redeemed_at: None,
            issued_at: at(0),
        }
    }

    #[tokio::test]
    async fn orders_coupons_due_work_and_snapshot() {
        let db = TempDb::new();
        let store = db.open().await;
        let mut uow = store.begin().await.expect("begin");
        let online = order("o1", "");
        uow.insert_order(&online).await.expect("order");
        uow.insert_order(&order("o2", "R-9"))
            .await
            .expect("register sale");
        assert_eq!(uow.get_order("o1", true).await.unwrap(), Some(online));
        let found = uow.order_by_receipt("s1", "r1", "R-9").await.unwrap();
        assert_eq!(found.as_deref(), Some("o2"));
        assert!(uow.member_has_open_orders("m1").await.unwrap());

        uow.insert_campaign(&campaign()).await.expect("campaign");
        let by_code = uow.campaign_by_public_code("WELCOME").await.unwrap();
        assert_eq!(by_code, Some(campaign()));
        uow.insert_coupon(&coupon("C1", CouponState::Reserved, "o1"))
            .await
            .unwrap();
        uow.insert_coupon(&coupon("C2", CouponState::Active, ""))
            .await
            .unwrap();
        assert_eq!(uow.count_coupons("camp", None).await.unwrap(), 2);
        assert_eq!(uow.count_coupons("camp", Some("m2")).await.unwrap(), 0);

        let mut pending = lot(Some(at(0) + Days::days(9)), 10);
        pending.state = LotState::Pending;
        pending.matures_at = Some(at(10));
        uow.insert_lot(&pending).await.unwrap();

        let due = uow.due_work(at(120), 10).await.unwrap();
        assert_eq!(due.expired_holds, vec!["o1".to_string(), "o2".to_string()]);
        assert_eq!(due.members_with_due_lots, vec!["m1".to_string()]);
        assert_eq!(due.expired_coupons, vec!["C2".to_string()]);
        assert_eq!(uow.due_work(at(5), 10).await.unwrap(), DueWork::default());

        let earn = entry("earn", vec![posting("program:issued", "member:m1", 10)]);
        uow.append_transaction(&earn).await.unwrap();
        let snapshot = uow.ledger_snapshot().await.unwrap();
        assert_eq!(snapshot.malformed_postings, 0);
        let issued = AccountTotal {
            account: "program:issued".into(),
            asset: "PTS".into(),
            amount: -10,
        };
        assert!(snapshot.posting_sums.contains(&issued));
        assert_eq!(snapshot.lot_totals[0].pending_remaining, 10);
        assert_eq!(
            snapshot.authorized_orders,
            vec![("o1".into(), 7), ("o2".into(), 7)]
        );
        let positions: Vec<&str> = snapshot
            .coupon_positions
            .iter()
            .map(|total| total.account.as_str())
            .collect();
        assert_eq!(positions, vec!["hold:o1", "member:m1"]);
    }

    #[tokio::test]
    async fn duplicate_key_is_a_conflict_and_in_memory_works() {
        let store = SqliteStore::connect("sqlite::memory:").await.expect("open");
        let key = ApiKeyRecord {
            key_id: "k1".into(),
            key_hash: "h1".into(),
            role: Role::Admin,
            store_id: None,
            name: "admin".into(),
            created_at: at(0),
        };
        let mut uow = store.begin().await.expect("begin");
        uow.insert_api_key(&key).await.expect("insert");
        let error = uow.insert_api_key(&key).await.unwrap_err();
        assert!(matches!(error, StoreError::Conflict(_)), "{error:?}");
        uow.commit().await.expect("commit");
        let mut read = store.begin_read().await.expect("begin read");
        assert_eq!(read.find_api_key("h1").await.unwrap(), Some(key));
    }
}
