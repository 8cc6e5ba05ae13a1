//! The SQLite backend: an embedded, single-file database in WAL mode, driven through rusqlite.
//!
//! Statements run synchronously on the calling thread (microseconds each; no handoff to a
//! driver thread), so the store asks the engine to run its writers on OS threads of their own
//! ([`Store::runs_on_calling_thread`]). One writer connection serves every read-write unit of
//! work (`BEGIN IMMEDIATE`, so a unit of work holds SQLite's write lock from its first statement
//! and never fails half-way on a lock upgrade); a small pool of reader connections
//! (`query_only`) serves read-only units of work, each a consistent WAL snapshot, on whichever
//! thread asks. `synchronous = FULL`: an acknowledged commit survives a power cut. Every
//! statement is prepared once per connection and cached.
//!
//! The schema comes from `migrations/sqlite/`, applied through sqlx's migrator (which keeps its
//! `_sqlx_migrations` bookkeeping) on a short-lived connection before the store opens its own.
//!
//! Encoding: instants are INTEGER microseconds since the Unix epoch, money is canonical decimal
//! TEXT, enums are their `as_str()` names, structured values are JSON text.
//!
//! Layout, the same as the PostgreSQL backend's so the two read side by side: this file holds
//! the store, its connections, units of work and errors, and the port's implementation, whose
//! every method runs its area's SQL: `members.rs` (members and identifiers), `journal.rs`
//! (transactions, postings, balances), `lots.rs`, `orders.rs` (orders and order lots),
//! `coupons.rs` (campaigns and coupons), `reports.rs` (the reports' sums), `reference.rs` (program and stores), `rules.rs` (rules and
//! their counters), `keys.rs` (API
//! keys and idempotency records), `verify.rs` (due work and the verifier's snapshot); `batch.rs`
//! orchestrates a batch's load, id reservations and flush over the areas' row statements.

use std::{
    fmt::Display,
    path::PathBuf,
    str::FromStr,
    sync::{
        Arc, Mutex as StdMutex, PoisonError,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use async_trait::async_trait;
use chrono::{DateTime, NaiveDate, Utc};
use rusqlite::{CachedStatement, Connection, ErrorCode, OpenFlags, Row, ToSql, types::FromSql};
use serde::de::DeserializeOwned;
use sqlx::{
    ConnectOptions as _,
    migrate::Migrator,
    sqlite::{SqliteConnectOptions, SqliteJournalMode, SqliteSynchronous},
};
use tokio::sync::{Mutex, OwnedMutexGuard};

use crate::domain::{
    Money,
    coupon::{Campaign, Coupon},
    location::{GeoRule, IssueFacts, VisitRule},
    model::{self, Identifier, Lot, MemberRow, Order, OrderLot, Program, Transaction},
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

/// The schema, the single source for both the file and the in-memory database.
static MIGRATOR: Migrator = sqlx::migrate!("migrations/sqlite");

/// Extended result codes of a lost insert race.
const SQLITE_CONSTRAINT_UNIQUE: i32 = rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE;
const SQLITE_CONSTRAINT_PRIMARYKEY: i32 = rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY;
/// How long a statement waits for another process's lock before failing with BUSY.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);
/// Idle reader connections kept for reuse: reads run in parallel with the one writer under WAL.
const IDLE_READERS: usize = 8;
/// Prepared statements cached per connection (omo has fewer distinct statements than this).
const STATEMENT_CACHE: usize = 256;
/// Page cache of the writer and of each reader, in KiB (the memory is taken only as pages are
/// read; with `IDLE_READERS` this bounds the caches at 192 MiB).
const WRITER_CACHE_KIB: u32 = 64 * 1024;
const READER_CACHE_KIB: u32 = 16 * 1024;
/// The database file is read through a memory map of up to this size: a page the connection's
/// cache misses is then a memory read of the OS's page cache, not a system call and a copy.
/// At 1,000,000 members and 10,000,000 postings the database outgrows the caches above, and
/// most pages a sale touches are such misses (README, "Benchmark"). Address space only: the
/// pages are the OS's file cache, shared by every connection.
const MMAP_BYTES: u64 = 16 << 30;
/// How often the checkpointer copies the WAL back into the database file.
const CHECKPOINT_INTERVAL: Duration = Duration::from_millis(100);
/// WAL pages after which the writer checkpoints by itself: only when the checkpointer has
/// fallen far behind (SQLite's default, 1000, would put a checkpoint in every few commits).
const WRITER_CHECKPOINT_PAGES: u32 = 10_000;

#[derive(Debug)]
pub struct SqliteStore {
    /// The one read-write connection, held by a unit of work from `begin` to its end.
    writer: Arc<Mutex<Connection>>,
    /// `None` for an in-memory database: the writer's connection serves reads too.
    readers: Option<Readers>,
    /// `None` for an in-memory database (no WAL).
    _checkpointer: Option<Checkpointer>,
}

/// Copies the WAL back into the database file from a thread of its own, so that commits do
/// not pay for it: SQLite would otherwise checkpoint inside the commit that crosses
/// `wal_autocheckpoint`, and a profile showed the writer spending a tenth of its time there.
/// PASSIVE checkpoints never wait for the writer or readers. Stops when the store is dropped.
#[derive(Debug)]
struct Checkpointer {
    stop: Arc<AtomicBool>,
}

impl Checkpointer {
    fn start(path: &std::path::Path) -> StoreResult<Self> {
        let conn = Connection::open_with_flags(path, open_flags()).map_err(map_err)?;
        configure(&conn, false)?;
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        std::thread::Builder::new()
            .name("omo-checkpoint".into())
            .spawn(move || {
                while !stopped.load(Ordering::Relaxed) {
                    std::thread::sleep(CHECKPOINT_INTERVAL);
                    let checkpoint =
                        conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()));
                    if let Err(error) = checkpoint {
                        tracing::warn!(%error, "WAL checkpoint failed; will try again");
                    }
                }
            })
            .map_err(|e| StoreError::Database(Box::new(e)))?;
        Ok(Self { stop })
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// The pool of reader connections of a database file: a unit of work takes an idle one (or
/// opens one) and gives it back when it ends.
#[derive(Debug)]
struct Readers {
    path: PathBuf,
    idle: Arc<StdMutex<Vec<Connection>>>,
}

impl Readers {
    fn take(&self) -> StoreResult<Connection> {
        let idle = self
            .idle
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop();
        match idle {
            Some(conn) => Ok(conn),
            None => open_reader(&self.path),
        }
    }
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `url` and runs the migrations.
    ///
    /// An in-memory database (`sqlite::memory:`, `mode=memory`) lives only as long as a
    /// connection to it, so one connection serves its reads and writes.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        if is_in_memory(url) {
            let conn = Connection::open_in_memory_with_flags(open_flags()).map_err(map_err)?;
            configure(&conn, false)?;
            for migration in MIGRATOR.iter() {
                if !migration.migration_type.is_down_migration() {
                    conn.execute_batch(&migration.sql).map_err(map_err)?;
                }
            }
            return Ok(Self {
                writer: Arc::new(Mutex::new(conn)),
                readers: None,
                _checkpointer: None,
            });
        }
        let options = SqliteConnectOptions::from_str(url).map_err(sqlx_err)?;
        migrate(&options).await?;
        let path = options.get_filename().to_path_buf();
        let writer = Connection::open_with_flags(&path, open_flags()).map_err(map_err)?;
        writer
            .execute_batch(&format!(
                "PRAGMA journal_mode = WAL; PRAGMA wal_autocheckpoint = {WRITER_CHECKPOINT_PAGES}"
            ))
            .map_err(map_err)?;
        configure(&writer, false)?;
        // One reader now, so that a database readers cannot open fails here, not on first read.
        let first_reader = open_reader(&path)?;
        Ok(Self {
            writer: Arc::new(Mutex::new(writer)),
            _checkpointer: Some(Checkpointer::start(&path)?),
            readers: Some(Readers {
                path,
                idle: Arc::new(StdMutex::new(vec![first_reader])),
            }),
        })
    }
}

fn is_in_memory(url: &str) -> bool {
    url.contains(":memory:") || url.contains("mode=memory")
}

/// Read-write (readers are guarded by `query_only`), created if missing, URI file names; each
/// connection is used by one thread at a time, so SQLite's own mutex is not needed.
fn open_flags() -> OpenFlags {
    OpenFlags::SQLITE_OPEN_READ_WRITE
        | OpenFlags::SQLITE_OPEN_CREATE
        | OpenFlags::SQLITE_OPEN_NO_MUTEX
        | OpenFlags::SQLITE_OPEN_URI
}

/// The settings every connection shares; readers must never write: `query_only` turns a stray
/// write into an error.
fn configure(conn: &Connection, reader: bool) -> StoreResult<()> {
    conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
    conn.busy_timeout(BUSY_TIMEOUT).map_err(map_err)?;
    // Temporary files in memory: among them the statement journals of multi-row statements.
    conn.execute_batch(
        "PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON; PRAGMA temp_store = MEMORY",
    )
    .map_err(map_err)?;
    // SQLite's default page cache (2 MiB) would make the writer re-read hot index pages
    // from the OS on every statement (a profile showed it copying pages in and out of the
    // kernel); a bigger one keeps them in the connection. Negative = KiB.
    let cache_kib = if reader {
        READER_CACHE_KIB
    } else {
        WRITER_CACHE_KIB
    };
    conn.execute_batch(&format!(
        "PRAGMA cache_size = -{cache_kib}; PRAGMA mmap_size = {MMAP_BYTES}"
    ))
    .map_err(map_err)?;
    if reader {
        conn.execute_batch("PRAGMA query_only = ON")
            .map_err(map_err)?;
    }
    Ok(())
}

fn open_reader(path: &std::path::Path) -> StoreResult<Connection> {
    let conn = Connection::open_with_flags(path, open_flags()).map_err(map_err)?;
    configure(&conn, true)?;
    Ok(conn)
}

/// See [`super::pending_migrations`]: read over a read-only connection. An in-memory database
/// is always new (nothing applied).
pub(super) fn pending_migrations(url: &str) -> StoreResult<Vec<i64>> {
    let options = <SqliteConnectOptions as std::str::FromStr>::from_str(url).map_err(sqlx_err)?;
    let path = options.get_filename();
    let applied: Vec<i64> = if url.contains(":memory:") || url.contains("mode=memory") {
        Vec::new()
    } else {
        let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = Connection::open_with_flags(path, flags).map_err(map_err)?;
        let has_table: bool = conn
            .query_row(
                "select count(*) > 0 from sqlite_master where name = '_sqlx_migrations'",
                [],
                |row| row.get(0),
            )
            .map_err(map_err)?;
        if has_table {
            let mut statement = conn
                .prepare("select version from _sqlx_migrations where success")
                .map_err(map_err)?;
            statement
                .query_map([], |row| row.get(0))
                .map_err(map_err)?
                .collect::<Result<Vec<i64>, _>>()
                .map_err(map_err)?
        } else {
            Vec::new()
        }
    };
    Ok(MIGRATOR
        .iter()
        .map(|m| m.version)
        .filter(|version| !applied.contains(version))
        .collect())
}

/// Applies the migrations to the database file with sqlx (creating the file, in WAL mode), on a
/// connection closed before the store opens its own.
async fn migrate(options: &SqliteConnectOptions) -> Result<(), StoreError> {
    let mut conn = options
        .clone()
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Full)
        .busy_timeout(BUSY_TIMEOUT)
        .foreign_keys(true)
        .connect()
        .await
        .map_err(sqlx_err)?;
    MIGRATOR
        .run(&mut conn)
        .await
        .map_err(|e| StoreError::Database(Box::new(e)))?;
    sqlx::Connection::close(conn).await.map_err(sqlx_err)
}

fn sqlx_err(error: sqlx::Error) -> StoreError {
    StoreError::Database(Box::new(error))
}

/// The one place a database error becomes a [`StoreError`]. Recognised by result code, never
/// by message text: lock contention and lost insert races are transient conflicts (the engine
/// checks existence first, so a unique violation means another writer got there first). Any
/// other constraint (a CHECK: a balance below zero) is a plain database error.
fn map_err(error: rusqlite::Error) -> StoreError {
    if let rusqlite::Error::SqliteFailure(failure, _) = &error {
        let locked = matches!(
            failure.code,
            ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked
        );
        let duplicate = matches!(
            failure.extended_code,
            SQLITE_CONSTRAINT_UNIQUE | SQLITE_CONSTRAINT_PRIMARYKEY
        );
        if locked || duplicate {
            return StoreError::Conflict(error.to_string());
        }
    }
    StoreError::Database(Box::new(error))
}

#[async_trait]
impl Store for SqliteStore {
    #[tracing::instrument(level = "debug", skip_all)]
    async fn begin(&self) -> StoreResult<Box<dyn UnitOfWork>> {
        let guard = self.writer.clone().lock_owned().await;
        let uow = SqliteUnitOfWork {
            conn: Handle::Writer(guard),
        };
        uow.execute("BEGIN IMMEDIATE")?;
        Ok(Box::new(uow))
    }

    #[tracing::instrument(level = "debug", skip_all)]
    async fn begin_read(&self) -> StoreResult<Box<dyn UnitOfWork>> {
        let conn = match &self.readers {
            Some(readers) => Handle::Reader {
                conn: Some(readers.take()?),
                idle: readers.idle.clone(),
            },
            None => Handle::Writer(self.writer.clone().lock_owned().await),
        };
        let uow = SqliteUnitOfWork { conn };
        uow.execute("BEGIN")?;
        Ok(Box::new(uow))
    }

    fn backend_name(&self) -> &'static str {
        "sqlite"
    }

    fn parallel_writers(&self) -> usize {
        1
    }

    /// One writer at a time: see `events.rs`.
    fn numbers_events_at_insert(&self) -> bool {
        true
    }

    fn runs_on_calling_thread(&self) -> bool {
        true
    }
}

/// The connection a unit of work runs on.
enum Handle {
    /// The writer (or an in-memory database's only connection), locked until the work ends.
    Writer(OwnedMutexGuard<Connection>),
    /// A reader taken from the pool; `None` only while the work is dropped (given back).
    Reader {
        conn: Option<Connection>,
        idle: Arc<StdMutex<Vec<Connection>>>,
    },
}

/// One transaction. Dropped without a commit (a refused batch, a panic, an error), it rolls
/// back; a reader then returns to the pool.
struct SqliteUnitOfWork {
    conn: Handle,
}

impl Drop for SqliteUnitOfWork {
    fn drop(&mut self) {
        let conn = self.conn();
        if !conn.is_autocommit() {
            // ROLLBACK fails only on a broken connection: nothing to do here but not to give a
            // reader still in a transaction back to the pool.
            let _ = conn.execute_batch("ROLLBACK");
        }
        if let Handle::Reader { conn, idle } = &mut self.conn
            && let Some(conn) = conn.take()
            && conn.is_autocommit()
        {
            let mut idle = idle.lock().unwrap_or_else(PoisonError::into_inner);
            if idle.len() < IDLE_READERS {
                idle.push(conn);
            }
        }
    }
}

/// A prepared statement being bound, the way sqlx builds a query: the n-th `bind` binds `?n`.
/// A bind error is kept and reported when the statement runs.
struct Query<'c> {
    stmt: CachedStatement<'c>,
    bound: usize,
    error: Option<rusqlite::Error>,
}

impl Query<'_> {
    fn bind<T: ToSql>(mut self, value: T) -> Self {
        self.bound += 1;
        if self.error.is_none()
            && let Err(error) = self.stmt.raw_bind_parameter(self.bound, value)
        {
            self.error = Some(error);
        }
        self
    }

    /// Fails on a bind error or on a statement bound with fewer or more values than it takes.
    fn check(&mut self) -> StoreResult<()> {
        if let Some(error) = self.error.take() {
            return Err(map_err(error));
        }
        let expected = self.stmt.parameter_count();
        if self.bound != expected {
            return Err(StoreError::Database(
                format!(
                    "statement takes {expected} parameters, {} were bound",
                    self.bound
                )
                .into(),
            ));
        }
        Ok(())
    }

    /// Runs a statement that returns no rows; the number of rows it changed.
    fn execute(mut self) -> StoreResult<usize> {
        self.check()?;
        self.stmt.raw_execute().map_err(map_err)
    }

    /// The first row the statement finds, if any, decoded.
    fn fetch_optional<T>(mut self, decode: Decode<T>) -> StoreResult<Option<T>> {
        self.check()?;
        let mut rows = self.stmt.raw_query();
        rows.next().map_err(map_err)?.map(decode).transpose()
    }

    /// The first row the statement finds, decoded; no row is an error.
    fn fetch_one<T>(self, decode: Decode<T>) -> StoreResult<T> {
        self.fetch_optional(decode)?
            .ok_or_else(|| StoreError::Database(Box::new(rusqlite::Error::QueryReturnedNoRows)))
    }

    /// Every row the statement finds, decoded.
    fn fetch_all<T>(mut self, decode: Decode<T>) -> StoreResult<Vec<T>> {
        self.check()?;
        let mut rows = self.stmt.raw_query();
        let mut decoded = Vec::new();
        while let Some(row) = rows.next().map_err(map_err)? {
            decoded.push(decode(row)?);
        }
        Ok(decoded)
    }
}

/// Decodes one row of a query's result.
type Decode<T> = fn(&Row<'_>) -> StoreResult<T>;

/// Column `index` of a query's own result (an aggregate, a key list), not a stored table row.
fn col<T: FromSql>(row: &Row<'_>, index: usize) -> StoreResult<T> {
    row.get(index).map_err(map_err)
}

impl SqliteUnitOfWork {
    fn conn(&self) -> &Connection {
        match &self.conn {
            Handle::Writer(guard) => guard,
            Handle::Reader { conn, .. } => conn
                .as_ref()
                .expect("a reader is given back only when its unit of work is dropped"),
        }
    }

    /// Prepares `sql` (once per connection: statements are cached) for binding.
    fn query(&self, sql: &str) -> StoreResult<Query<'_>> {
        let stmt = self.conn().prepare_cached(sql).map_err(map_err)?;
        Ok(Query {
            stmt,
            bound: 0,
            error: None,
        })
    }

    /// Runs a statement without parameters that returns no rows.
    fn execute(&self, sql: &'static str) -> StoreResult<()> {
        self.run(self.query(sql)?)
    }

    /// Runs a statement that returns no rows.
    fn run(&self, query: Query<'_>) -> StoreResult<()> {
        query.execute()?;
        Ok(())
    }

    /// The row `query` finds, if any, decoded.
    fn fetch_optional<T>(&self, query: Query<'_>, decode: Decode<T>) -> StoreResult<Option<T>> {
        query.fetch_optional(decode)
    }

    /// Every row `query` finds, decoded.
    fn fetch_all<T>(&self, query: Query<'_>, decode: Decode<T>) -> StoreResult<Vec<T>> {
        query.fetch_all(decode)
    }

    fn move_member_rows(&self, sql: &'static str, from: &str, to: &str) -> StoreResult<()> {
        let query = self
            .query(sql)?
            .bind(to) // ?1
            .bind(from); // ?2
        self.run(query)
    }
}

// ---------------------------------------------------------------------------------------------
// The port: each method runs its area's SQL.

#[async_trait]
impl LedgerReads for SqliteUnitOfWork {
    async fn find_idempotency(
        &mut self,
        key_id: &str,
        request_id: &str,
    ) -> StoreResult<Option<IdempotencyRecord>> {
        keys::find_idempotency(self, key_id, request_id)
    }

    async fn load_program(&mut self, lock: bool) -> StoreResult<Option<Program>> {
        reference::load_program(self, lock)
    }

    async fn get_store(&mut self, store_id: &str) -> StoreResult<Option<model::Store>> {
        reference::get_store(self, store_id)
    }

    async fn list_stores(&mut self) -> StoreResult<Vec<model::Store>> {
        reference::list_stores(self)
    }

    async fn get_member(&mut self, member_id: &str, lock: bool) -> StoreResult<Option<MemberRow>> {
        members::get_member(self, member_id, lock)
    }

    async fn member_by_identifier(
        &mut self,
        identifier: &Identifier,
    ) -> StoreResult<Option<String>> {
        members::member_by_identifier(self, identifier)
    }

    async fn identifiers(&mut self, member_id: &str) -> StoreResult<Vec<Identifier>> {
        members::identifiers(self, member_id)
    }

    async fn balance(&mut self, account: &str, asset: &str) -> StoreResult<i64> {
        journal::balance(self, account, asset)
    }

    /// One writer at a time: every read of a write transaction is as good as locked.
    async fn lock_balance(&mut self, account: &str, asset: &str) -> StoreResult<i64> {
        journal::balance(self, account, asset)
    }

    async fn member_lots(&mut self, member_id: &str) -> StoreResult<Vec<Lot>> {
        lots::member_lots(self, member_id)
    }

    async fn order_lots(&mut self, order_id: &str) -> StoreResult<Vec<OrderLot>> {
        orders::order_lots(self, order_id)
    }

    async fn get_lot(&mut self, lot_id: i64) -> StoreResult<Option<Lot>> {
        lots::get_lot(self, lot_id)
    }

    async fn get_order(&mut self, order_id: &str, lock: bool) -> StoreResult<Option<Order>> {
        orders::get_order(self, order_id, lock)
    }

    async fn order_by_receipt(
        &mut self,
        store_id: &str,
        register_id: &str,
        receipt_no: &str,
    ) -> StoreResult<Option<String>> {
        orders::order_by_receipt(self, store_id, register_id, receipt_no)
    }

    async fn member_has_open_orders(&mut self, member_id: &str) -> StoreResult<bool> {
        orders::member_has_open_orders(self, member_id)
    }

    async fn get_campaign(
        &mut self,
        campaign_id: &str,
        lock: bool,
    ) -> StoreResult<Option<Campaign>> {
        coupons::get_campaign(self, campaign_id, lock)
    }

    async fn campaign_by_public_code(
        &mut self,
        public_code: &str,
    ) -> StoreResult<Option<Campaign>> {
        coupons::campaign_by_public_code(self, public_code)
    }

    async fn list_campaigns(&mut self) -> StoreResult<Vec<Campaign>> {
        coupons::list_campaigns(self)
    }

    async fn count_coupons(
        &mut self,
        campaign_id: &str,
        member_id: Option<&str>,
    ) -> StoreResult<i64> {
        coupons::count_coupons(self, campaign_id, member_id)
    }

    async fn get_coupon(&mut self, code: &str, lock: bool) -> StoreResult<Option<Coupon>> {
        coupons::get_coupon(self, code, lock)
    }

    async fn member_coupons(&mut self, member_id: &str) -> StoreResult<Vec<Coupon>> {
        coupons::member_coupons(self, member_id)
    }

    async fn count_stores(&mut self) -> StoreResult<i64> {
        SqliteUnitOfWork::count_stores(self)
    }

    async fn list_geo_rules(&mut self) -> StoreResult<Vec<GeoRule>> {
        SqliteUnitOfWork::list_geo_rules(self)
    }

    async fn list_visit_rules(&mut self) -> StoreResult<Vec<VisitRule>> {
        SqliteUnitOfWork::list_visit_rules(self)
    }

    async fn presence(&mut self, member_id: &str) -> StoreResult<Option<Presence>> {
        self.presence_of(member_id)
    }

    async fn geo_issue_facts(
        &mut self,
        rule_id: &str,
        member_id: &str,
        store_id: &str,
        local_date: NaiveDate,
    ) -> StoreResult<IssueFacts> {
        SqliteUnitOfWork::geo_issue_facts(self, rule_id, member_id, store_id, local_date)
    }

    async fn member_visits(
        &mut self,
        member_id: &str,
        since: Option<NaiveDate>,
    ) -> StoreResult<Vec<Visit>> {
        SqliteUnitOfWork::member_visits(self, member_id, since)
    }

    async fn last_visit_issue(
        &mut self,
        rule_id: &str,
        member_id: &str,
    ) -> StoreResult<Option<NaiveDate>> {
        SqliteUnitOfWork::last_visit_issue(self, rule_id, member_id)
    }

    async fn list_receipt_rules(&mut self) -> StoreResult<Vec<ReceiptRule>> {
        SqliteUnitOfWork::list_receipt_rules(self)
    }

    async fn list_rules(&mut self) -> StoreResult<Vec<Rule>> {
        SqliteUnitOfWork::list_rules(self)
    }

    async fn get_rule(&mut self, rule_id: &str) -> StoreResult<Option<Rule>> {
        SqliteUnitOfWork::get_rule(self, rule_id)
    }

    /// `BEGIN IMMEDIATE` already holds the database's write lock: the rules as they are.
    async fn lock_rules(&mut self, rule_ids: &[String]) -> StoreResult<Vec<Rule>> {
        let mut rules = Vec::with_capacity(rule_ids.len());
        for rule_id in rule_ids {
            rules.extend(SqliteUnitOfWork::get_rule(self, rule_id)?);
        }
        Ok(rules)
    }

    async fn member_spend(
        &mut self,
        member_id: &str,
        from_month: NaiveDate,
    ) -> StoreResult<Vec<crate::domain::ports::MonthSpend>> {
        SqliteUnitOfWork::member_spend(self, member_id, from_month)
    }

    async fn rule_counter(
        &mut self,
        rule_id: &str,
        member_id: &str,
    ) -> StoreResult<Option<RuleCounter>> {
        SqliteUnitOfWork::rule_counter(self, rule_id, member_id)
    }

    async fn rule_store_day(
        &mut self,
        rule_id: &str,
        store_id: &str,
        local_date: NaiveDate,
    ) -> StoreResult<i64> {
        SqliteUnitOfWork::rule_store_day(self, rule_id, store_id, local_date)
    }

    async fn has_captured_order(&mut self, member_id: &str) -> StoreResult<bool> {
        SqliteUnitOfWork::has_captured_order(self, member_id)
    }

    async fn get_receipt(
        &mut self,
        receipt_id: &str,
        _lock: bool,
    ) -> StoreResult<Option<ReceiptRecord>> {
        SqliteUnitOfWork::get_receipt(self, receipt_id)
    }

    async fn receipt_claimed_by(&mut self, claim: &ReceiptClaim) -> StoreResult<Option<String>> {
        SqliteUnitOfWork::receipt_claimed_by(self, claim)
    }

    async fn count_member_receipts(
        &mut self,
        member_id: &str,
        since: DateTime<Utc>,
    ) -> StoreResult<i64> {
        SqliteUnitOfWork::count_member_receipts(self, member_id, since)
    }

    async fn order_coupons(&mut self, order_id: &str) -> StoreResult<Vec<Coupon>> {
        coupons::order_coupons(self, order_id)
    }
}

#[async_trait]
impl UnitOfWork for SqliteUnitOfWork {
    #[tracing::instrument(level = "debug", skip_all)]
    async fn commit(self: Box<Self>) -> StoreResult<()> {
        self.execute("COMMIT")
    }

    async fn insert_api_key(&mut self, key: &ApiKeyRecord) -> StoreResult<()> {
        keys::insert_api_key(self, key)
    }

    async fn find_api_key(&mut self, key_hash: &str) -> StoreResult<Option<ApiKeyRecord>> {
        keys::find_api_key(self, key_hash)
    }

    async fn list_api_keys(&mut self) -> StoreResult<Vec<ApiKeyRecord>> {
        keys::list_api_keys(self)
    }

    async fn revoke_api_key(&mut self, key_id: &str, at: DateTime<Utc>) -> StoreResult<bool> {
        keys::revoke_api_key(self, key_id, at)
    }

    async fn touch_api_key(&mut self, key_id: &str, at: DateTime<Utc>) -> StoreResult<()> {
        keys::touch_api_key(self, key_id, at)
    }

    async fn purge_idempotency(
        &mut self,
        created_before: DateTime<Utc>,
        limit: i64,
    ) -> StoreResult<u64> {
        keys::purge_idempotency(self, created_before, limit)
    }

    async fn insert_dashboard_session(&mut self, session: &DashboardSession) -> StoreResult<()> {
        sessions::insert_dashboard_session(self, session)
    }

    async fn find_dashboard_session(
        &mut self,
        session_hash: &str,
    ) -> StoreResult<Option<(DashboardSession, ApiKeyRecord)>> {
        sessions::find_dashboard_session(self, session_hash)
    }

    async fn touch_dashboard_session(
        &mut self,
        session_hash: &str,
        at: DateTime<Utc>,
    ) -> StoreResult<()> {
        sessions::touch_dashboard_session(self, session_hash, at)
    }

    async fn delete_dashboard_session(&mut self, session_hash: &str) -> StoreResult<bool> {
        sessions::delete_dashboard_session(self, session_hash)
    }

    async fn purge_dashboard_sessions(
        &mut self,
        opened_before: DateTime<Utc>,
        seen_before: DateTime<Utc>,
    ) -> StoreResult<u64> {
        sessions::purge_dashboard_sessions(self, opened_before, seen_before)
    }

    async fn purge_location_reports(
        &mut self,
        recorded_before: DateTime<Utc>,
        limit: i64,
    ) -> StoreResult<u64> {
        SqliteUnitOfWork::purge_location_reports(self, recorded_before, limit)
    }

    async fn purge_events(
        &mut self,
        occurred_before: DateTime<Utc>,
        limit: i64,
    ) -> StoreResult<u64> {
        SqliteUnitOfWork::purge_events(self, occurred_before, limit)
    }

    async fn clear_receipt_texts(
        &mut self,
        submitted_before: DateTime<Utc>,
        limit: i64,
    ) -> StoreResult<u64> {
        SqliteUnitOfWork::clear_receipt_texts(self, submitted_before, limit)
    }

    async fn ensure_program(&mut self, program: &Program) -> StoreResult<()> {
        reference::ensure_program(self, program)
    }

    async fn member_orders(
        &mut self,
        member_id: &str,
        before: Option<&(DateTime<Utc>, String)>,
        limit: i64,
    ) -> StoreResult<Vec<Order>> {
        orders::member_orders(self, member_id, before, limit)
    }

    async fn list_receipts(&mut self, query: &ReceiptPageQuery) -> StoreResult<Vec<ReceiptRecord>> {
        SqliteUnitOfWork::list_receipts(self, query)
    }

    #[tracing::instrument(level = "debug", skip_all)]
    async fn lot_expiry_span(&mut self) -> StoreResult<Option<(DateTime<Utc>, DateTime<Utc>)>> {
        SqliteUnitOfWork::lot_expiry_span(self)
    }

    #[tracing::instrument(level = "debug", skip_all)]
    async fn liability_lots(
        &mut self,
        as_of: DateTime<Utc>,
        bounds: &[DateTime<Utc>],
    ) -> StoreResult<LiabilityLots> {
        SqliteUnitOfWork::liability_lots(self, as_of, bounds)
    }

    #[tracing::instrument(level = "debug", skip_all)]
    async fn campaign_sums(&mut self, campaign_id: &str) -> StoreResult<CampaignSums> {
        SqliteUnitOfWork::campaign_sums(self, campaign_id)
    }

    async fn rule_totals(&mut self, rule_id: Option<&str>) -> StoreResult<Vec<RuleTotals>> {
        SqliteUnitOfWork::rule_totals(self, rule_id)
    }

    #[tracing::instrument(level = "debug", skip_all)]
    async fn activity_sums(&mut self, window: &ActivityWindow) -> StoreResult<ReportSums> {
        SqliteUnitOfWork::activity_sums(self, window)
    }

    async fn report_sums(&mut self) -> StoreResult<ReportSums> {
        SqliteUnitOfWork::report_sums(self)
    }

    async fn recompute_report_sums(&mut self) -> StoreResult<ReportSums> {
        SqliteUnitOfWork::recompute_report_sums(self)
    }

    async fn compact_report_sums(
        &mut self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> StoreResult<u64> {
        SqliteUnitOfWork::compact_report_sums(self, from, to)
    }

    async fn replace_report_sums(&mut self, sums: &ReportSums) -> StoreResult<()> {
        SqliteUnitOfWork::replace_report_sums(self, sums)
    }

    async fn summary_rebuild_wanted(&mut self) -> StoreResult<bool> {
        SqliteUnitOfWork::summary_rebuild_wanted(self)
    }

    #[tracing::instrument(level = "debug", skip_all)]
    async fn member_transactions(
        &mut self,
        member_id: &str,
        before_transaction_id: Option<i64>,
        limit: i64,
    ) -> StoreResult<Vec<Transaction>> {
        journal::member_transactions(self, member_id, before_transaction_id, limit)
    }

    /// Row by row (a lookup here costs microseconds, not a round trip), with every balance of
    /// the accounts it covers.
    async fn load(&mut self, keys: &Keys) -> StoreResult<Loaded> {
        let mut loaded = batch::load_row_by_row(self, keys).await?;
        self.complete_balances(keys, &mut loaded)?;
        for (&sequence, &count) in &keys.wanted_ids {
            let ids = self.reserve(sequence, count)?;
            loaded.reserved_ids.insert(sequence, ids);
        }
        self.load_engagement(keys, &mut loaded)?;
        Ok(loaded)
    }

    async fn reserve_ids(&mut self, sequence: Sequence, count: usize) -> StoreResult<Vec<i64>> {
        self.reserve(sequence, count)
    }

    #[tracing::instrument(level = "debug", skip_all)]
    async fn flush(&mut self, changes: &ChangeSet) -> StoreResult<()> {
        let mut lap = FlushLap::start();
        self.write_rare_parts(changes)?;
        lap.reference_done(changes);
        self.write_changes(changes, &mut lap)?;
        self.write_engagement(&changes.engagement, changes.shard)?;
        self.write_receipts(&changes.engagement)?;
        self.write_rules(&changes.rules)?;
        self.add_member_spend(&changes.member_spend)?;
        lap.engagement_done(changes);
        self.add_report_sums(&changes.report, changes.shard)?;
        lap.table_done("report_summaries", changes);
        self.insert_event_rows(&changes.events)?;
        lap.table_done("events", changes);
        Ok(())
    }

    async fn insert_webhook(
        &mut self,
        record: &crate::domain::webhook::WebhookRecord,
    ) -> StoreResult<bool> {
        SqliteUnitOfWork::insert_webhook(self, record)
    }

    async fn get_webhook(
        &mut self,
        webhook_id: &str,
        _lock: bool,
    ) -> StoreResult<Option<crate::domain::webhook::WebhookRecord>> {
        SqliteUnitOfWork::get_webhook(self, webhook_id)
    }

    async fn list_webhooks(&mut self) -> StoreResult<Vec<crate::domain::webhook::WebhookRecord>> {
        SqliteUnitOfWork::list_webhooks(self)
    }

    async fn update_webhook(
        &mut self,
        record: &crate::domain::webhook::WebhookRecord,
    ) -> StoreResult<()> {
        SqliteUnitOfWork::update_webhook(self, record)
    }

    async fn insert_deliveries(
        &mut self,
        deliveries: &[crate::domain::webhook::Delivery],
    ) -> StoreResult<()> {
        SqliteUnitOfWork::insert_deliveries(self, deliveries)
    }

    async fn claim_deliveries(
        &mut self,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
        limit: i64,
    ) -> StoreResult<Vec<crate::domain::webhook::Delivery>> {
        SqliteUnitOfWork::claim_deliveries(self, now, lease_until, limit)
    }

    async fn oldest_pending_delivery(&mut self) -> StoreResult<Option<DateTime<Utc>>> {
        SqliteUnitOfWork::oldest_pending_delivery(self)
    }

    async fn save_delivery(
        &mut self,
        delivery: &crate::domain::webhook::Delivery,
    ) -> StoreResult<()> {
        SqliteUnitOfWork::save_delivery(self, delivery)
    }

    async fn list_deliveries(
        &mut self,
        webhook_id: &str,
        state: Option<crate::domain::webhook::DeliveryState>,
        after_seq: i64,
        limit: i64,
    ) -> StoreResult<Vec<crate::domain::webhook::Delivery>> {
        SqliteUnitOfWork::list_deliveries(self, webhook_id, state, after_seq, limit)
    }

    async fn event_audit(&mut self) -> StoreResult<crate::domain::event::EventAudit> {
        SqliteUnitOfWork::event_audit(self)
    }

    async fn expiring_lots(
        &mut self,
        from: DateTime<Utc>,
        until: DateTime<Utc>,
        limit: i64,
    ) -> StoreResult<Vec<crate::domain::event::ExpiringLot>> {
        SqliteUnitOfWork::expiring_lots(self, from, until, limit)
    }

    async fn expiring_coupons(
        &mut self,
        from: DateTime<Utc>,
        until: DateTime<Utc>,
        limit: i64,
    ) -> StoreResult<Vec<crate::domain::event::ExpiringCoupon>> {
        SqliteUnitOfWork::expiring_coupons(self, from, until, limit)
    }

    async fn number_events(&mut self, _limit: i64) -> StoreResult<i64> {
        self.last_event_seq()
    }

    async fn list_events(
        &mut self,
        filter: &crate::domain::event::EventFilter,
    ) -> StoreResult<Vec<crate::domain::event::Event>> {
        SqliteUnitOfWork::list_events(self, filter)
    }

    #[tracing::instrument(level = "debug", skip_all)]
    async fn members_due_tier_review(
        &mut self,
        reviewed_before: DateTime<Utc>,
        after_member_id: &str,
        limit: i64,
    ) -> StoreResult<Vec<String>> {
        SqliteUnitOfWork::members_due_tier_review(self, reviewed_before, after_member_id, limit)
    }

    async fn due_work(&mut self, now: DateTime<Utc>, limit: i64) -> StoreResult<DueWork> {
        verify::due_work(self, now, limit)
    }

    async fn lapsed_candidates(
        &mut self,
        rule_id: &str,
        store_ids: &[String],
        last_visit_by: NaiveDate,
        after_member_id: &str,
        limit: i64,
    ) -> StoreResult<Vec<String>> {
        SqliteUnitOfWork::lapsed_candidates(
            self,
            rule_id,
            store_ids,
            last_visit_by,
            after_member_id,
            limit,
        )
    }

    #[tracing::instrument(level = "debug", skip_all)]
    async fn tier_audit(&mut self) -> StoreResult<crate::domain::ports::TierAudit> {
        SqliteUnitOfWork::tier_audit(self)
    }

    async fn ledger_snapshot(&mut self) -> StoreResult<LedgerSnapshot> {
        verify::ledger_snapshot(self)
    }

    async fn settled_horizon(&mut self) -> StoreResult<Option<i64>> {
        seals::settled_horizon(self)
    }

    async fn last_seal(&mut self) -> StoreResult<Option<Seal>> {
        seals::last_seal(self)
    }

    async fn seals(&mut self, after_seal_no: i64, limit: i64) -> StoreResult<Vec<Seal>> {
        seals::seals(self, after_seal_no, limit)
    }

    async fn journal_range(
        &mut self,
        after: i64,
        up_to: i64,
        limit: i64,
    ) -> StoreResult<Vec<Transaction>> {
        seals::journal_range(self, after, up_to, limit)
    }

    async fn insert_seal(&mut self, seal: &Seal) -> StoreResult<()> {
        seals::insert_seal(self, seal)
    }

    async fn imported_members(
        &mut self,
        external_ids: &[String],
    ) -> StoreResult<Vec<(String, String)>> {
        self.imported_members_of(external_ids)
    }

    async fn record_imports(
        &mut self,
        records: &[crate::domain::import::ImportRecord],
    ) -> StoreResult<()> {
        self.insert_import_records(records)
    }

    async fn export_members(
        &mut self,
        after_member_id: &str,
        since: Option<DateTime<Utc>>,
        limit: i64,
    ) -> StoreResult<Vec<model::Member>> {
        self.export_members_page(after_member_id, since, limit)
    }

    async fn export_lots(&mut self, after_lot_id: i64, limit: i64) -> StoreResult<Vec<Lot>> {
        self.export_lots_page(after_lot_id, limit)
    }
}

// ---------------------------------------------------------------------------------------------
// Encoding and decoding.

/// Reads the columns of one row; a value that does not decode is [`StoreError::Corrupt`],
/// naming the table, the row's key and the column.
struct Cols<'r, 's> {
    row: &'r Row<'s>,
    table: &'static str,
    key: String,
}

impl<'r, 's> Cols<'r, 's> {
    fn new(row: &'r Row<'s>, table: &'static str, key_column: &str) -> Self {
        let key = row
            .get::<_, String>(key_column)
            .or_else(|_| row.get::<_, i64>(key_column).map(|id| id.to_string()))
            .unwrap_or_else(|_| "?".to_string());
        Self { row, table, key }
    }

    fn corrupt(&self, column: &str, why: impl Display) -> StoreError {
        StoreError::Corrupt(format!("{}[{}].{column}: {why}", self.table, self.key))
    }

    fn get<T: FromSql>(&self, column: &str) -> StoreResult<T> {
        self.row.get(column).map_err(|e| self.corrupt(column, e))
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
        self.opt_money(column)?
            .ok_or_else(|| self.corrupt(column, "null amount"))
    }

    fn opt_money(&self, column: &str) -> StoreResult<Option<Money>> {
        let text: Option<String> = self.get(column)?;
        text.map(|text| {
            text.parse()
                .map_err(|e| self.corrupt(column, format!("amount {text:?}: {e}")))
        })
        .transpose()
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

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use chrono::Duration as Days;

    use super::*;
    use crate::domain::{
        auth::Role,
        coupon::CouponState,
        model::{Channel, LotState, OrderState, Posting},
        ports::{AccountTotal, NewTransaction},
    };
    use crate::store::test_writes;

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
            limited: false,
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
        let first = test_writes::append_transaction(uow.as_mut(), &earn)
            .await
            .expect("earn");
        let second = test_writes::append_transaction(uow.as_mut(), &hold)
            .await
            .expect("hold");
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
        test_writes::append_transaction(uow.as_mut(), &earn)
            .await
            .expect("earn");

        // No row at all for member:m2.
        let from_nothing = entry("authorize", vec![posting("member:m2", "hold:o1", 1)]);
        let error = test_writes::append_transaction(uow.as_mut(), &from_nothing)
            .await
            .unwrap_err();
        assert!(matches!(error, StoreError::Database(_)), "{error:?}");

        // An existing row that would go below zero.
        let overdraw = entry("authorize", vec![posting("member:m1", "hold:o1", 51)]);
        let error = test_writes::append_transaction(uow.as_mut(), &overdraw)
            .await
            .unwrap_err();
        assert!(matches!(error, StoreError::Database(_)), "{error:?}");

        // Exactly to zero is fine.
        let all = entry("authorize", vec![posting("member:m1", "hold:o1", 50)]);
        test_writes::append_transaction(uow.as_mut(), &all)
            .await
            .expect("spend all");
        assert_eq!(uow.balance("member:m1", "PTS").await.unwrap(), 0);
    }

    #[tokio::test]
    async fn member_lots_soonest_expiry_first() {
        let db = TempDb::new();
        let store = db.open().await;
        let mut uow = store.begin().await.expect("begin");
        let never = test_writes::insert_lot(uow.as_mut(), &lot(None, 10))
            .await
            .unwrap();
        let later = test_writes::insert_lot(uow.as_mut(), &lot(Some(at(0) + Days::days(2)), 10))
            .await
            .unwrap();
        let spent = test_writes::insert_lot(uow.as_mut(), &lot(Some(at(0)), 0))
            .await
            .unwrap();
        let sooner = test_writes::insert_lot(uow.as_mut(), &lot(Some(at(0) + Days::days(1)), 10))
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
            earn_breakdown: Vec::new(),
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
            eligible: Default::default(),
            stock_parts: 0,
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
            discount: None,
        }
    }

    #[tokio::test]
    async fn orders_coupons_due_work_and_snapshot() {
        let db = TempDb::new();
        let store = db.open().await;
        let mut uow = store.begin().await.expect("begin");
        let online = order("o1", "");
        test_writes::insert_order(uow.as_mut(), &online)
            .await
            .expect("order");
        test_writes::insert_order(uow.as_mut(), &order("o2", "R-9"))
            .await
            .expect("register sale");
        assert_eq!(uow.get_order("o1", true).await.unwrap(), Some(online));
        // Found by the receipt's key, however it was typed.
        let found = uow.order_by_receipt("s1", "r1", "r-9").await.unwrap();
        assert_eq!(found.as_deref(), Some("o2"));
        assert!(uow.member_has_open_orders("m1").await.unwrap());

        test_writes::insert_campaign(uow.as_mut(), &campaign())
            .await
            .expect("campaign");
        let by_code = uow.campaign_by_public_code("WELCOME").await.unwrap();
        assert_eq!(by_code, Some(campaign()));
        test_writes::insert_coupon(uow.as_mut(), &coupon("C1", CouponState::Reserved, "o1"))
            .await
            .unwrap();
        test_writes::insert_coupon(uow.as_mut(), &coupon("C2", CouponState::Active, ""))
            .await
            .unwrap();
        assert_eq!(uow.count_coupons("camp", None).await.unwrap(), 2);
        assert_eq!(uow.count_coupons("camp", Some("m2")).await.unwrap(), 0);

        let mut pending = lot(Some(at(0) + Days::days(9)), 10);
        pending.state = LotState::Pending;
        pending.matures_at = Some(at(10));
        test_writes::insert_lot(uow.as_mut(), &pending)
            .await
            .unwrap();

        let due = uow.due_work(at(120), 10).await.unwrap();
        assert_eq!(due.expired_holds, vec!["o1".to_string(), "o2".to_string()]);
        assert_eq!(due.members_with_due_lots, vec!["m1".to_string()]);
        assert_eq!(due.expired_coupons, vec!["C2".to_string()]);
        assert_eq!(uow.due_work(at(5), 10).await.unwrap(), DueWork::default());

        let earn = entry("earn", vec![posting("program:issued", "member:m1", 10)]);
        test_writes::append_transaction(uow.as_mut(), &earn)
            .await
            .unwrap();
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
    async fn dropped_units_of_work_roll_back_and_readers_see_commits() {
        let db = TempDb::new();
        let store = db.open().await;
        let earn = entry("earn", vec![posting("program:issued", "member:m1", 10)]);
        let mut uow = store.begin().await.expect("begin");
        test_writes::append_transaction(uow.as_mut(), &earn)
            .await
            .expect("earn");
        drop(uow);

        // A reader left mid-snapshot goes back to the pool rolled back.
        let mut read = store.begin_read().await.expect("begin read");
        assert_eq!(read.balance("member:m1", "PTS").await.unwrap(), 0);
        drop(read);

        let mut uow = store.begin().await.expect("begin after a drop");
        test_writes::append_transaction(uow.as_mut(), &earn)
            .await
            .expect("earn");
        uow.commit().await.expect("commit");
        let mut read = store.begin_read().await.expect("begin read");
        assert_eq!(read.balance("member:m1", "PTS").await.unwrap(), 10);
        let mut concurrent = store.begin_read().await.expect("a second reader");
        assert_eq!(concurrent.balance("member:m1", "PTS").await.unwrap(), 10);
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
            expires_at: Some(at(90)),
            revoked_at: None,
            last_used_at: None,
        };
        let mut uow = store.begin().await.expect("begin");
        uow.insert_api_key(&key).await.expect("insert");
        let error = uow.insert_api_key(&key).await.unwrap_err();
        assert!(matches!(error, StoreError::Conflict(_)), "{error:?}");
        uow.commit().await.expect("commit");
        let mut read = store.begin_read().await.expect("begin read");
        assert_eq!(read.find_api_key("h1").await.unwrap(), Some(key.clone()));
        drop(read);
        let mut uow = store.begin().await.expect("begin");
        assert!(uow.revoke_api_key("k1", at(5)).await.unwrap());
        assert!(uow.revoke_api_key("k1", at(6)).await.unwrap());
        assert!(!uow.revoke_api_key("k2", at(5)).await.unwrap());
        uow.touch_api_key("k1", at(7)).await.unwrap();
        uow.touch_api_key("k1", at(3)).await.unwrap();
        uow.commit().await.expect("commit");
        let mut read = store.begin_read().await.expect("begin read");
        let listed = read.list_api_keys().await.unwrap();
        assert_eq!(
            listed,
            [ApiKeyRecord {
                revoked_at: Some(at(5)),
                last_used_at: Some(at(7)),
                ..key
            }]
        );
    }
}
