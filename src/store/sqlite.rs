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

use std::{
    collections::BTreeMap,
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
use chrono::{DateTime, Utc};
use rusqlite::{CachedStatement, Connection, ErrorCode, OpenFlags, Row, ToSql, types::FromSql};
use serde::de::DeserializeOwned;
use sqlx::{
    ConnectOptions as _,
    migrate::Migrator,
    sqlite::{SqliteConnectOptions, SqliteJournalMode, SqliteSynchronous},
};
use tokio::sync::{Mutex, OwnedMutexGuard};

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
        AccountTotal, ApiKeyRecord, ChangeSet, DueWork, IdempotencyRecord, Keys, LedgerReads,
        LedgerSnapshot, Loaded, MemberLotTotals, NewTransaction, Sequence, Store, StoreError,
        StoreResult, UnitOfWork,
    },
};

mod batch;

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
    conn.execute_batch(&format!("PRAGMA cache_size = -{cache_kib}"))
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

    fn strings(&self, sql: &'static str, now: i64, limit: i64) -> StoreResult<Vec<String>> {
        self.query(sql)?
            .bind(now) // ?1
            .bind(limit) // ?2
            .fetch_all(|row| col(row, 0))
    }

    fn account_totals(&self, sql: &'static str) -> StoreResult<Vec<AccountTotal>> {
        self.query(sql)?.fetch_all(|row| {
            Ok(AccountTotal {
                account: col(row, 0)?,
                asset: col(row, 1)?,
                amount: col(row, 2)?,
            })
        })
    }

    /// One cached statement, executed once per posting (a few microseconds each). Postings
    /// are numbered from 1 in order, as PostgreSQL numbers them.
    fn insert_postings(&self, transaction_id: i64, postings: &[Posting]) -> StoreResult<()> {
        for (posting_no, posting) in (1_i64..).zip(postings) {
            let query = self
                .query(
                    r"
                    insert into postings (
                        transaction_id, posting_no, from_account, to_account, asset, amount
                    )
                    values (?1, ?2, ?3, ?4, ?5, ?6)
                    ",
                )?
                .bind(transaction_id) // ?1
                .bind(posting_no) // ?2
                .bind(&posting.from_account) // ?3
                .bind(&posting.to_account) // ?4
                .bind(&posting.asset) // ?5
                .bind(posting.amount); // ?6
            self.run(query)?;
        }
        Ok(())
    }

    fn credit_balance(&self, account: &str, asset: &str, delta: i64) -> StoreResult<()> {
        let query = self
            .query(
                r"
                insert into balances (account, asset, balance)
                values (?1, ?2, ?3)
                on conflict (account, asset) do update
                set balance = balances.balance + excluded.balance
                ",
            )?
            .bind(account) // ?1
            .bind(asset) // ?2
            .bind(delta); // ?3
        self.run(query)
    }

    fn debit_balance(&self, account: &str, asset: &str, delta: i64) -> StoreResult<()> {
        let updated = self
            .query(
                r"
                update balances
                set balance = balance + ?3
                where account = ?1
                  and asset = ?2
                ",
            )?
            .bind(account) // ?1
            .bind(asset) // ?2
            .bind(delta) // ?3
            .execute()?;
        if updated == 0 {
            // No row: the balance is zero, and a debit would take it below zero.
            return Err(StoreError::Database(
                format!("balance of {account} in {asset} would go below zero (by {delta})").into(),
            ));
        }
        Ok(())
    }

    fn postings_between(
        &self,
        member_id: &str,
        first_id: i64,
        last_id: i64,
    ) -> StoreResult<BTreeMap<i64, Vec<Posting>>> {
        let query = self
            .query(
                r"
                select p.transaction_id, p.from_account, p.to_account, p.asset, p.amount
                from postings p
                join transactions t on t.transaction_id = p.transaction_id
                where t.member_id = ?1
                  and p.transaction_id between ?2 and ?3
                order by p.transaction_id, p.posting_no
                ",
            )?
            .bind(member_id) // ?1
            .bind(first_id) // ?2
            .bind(last_id); // ?3
        let mut postings: BTreeMap<i64, Vec<Posting>> = BTreeMap::new();
        for (transaction_id, posting) in self.fetch_all(query, posting_from_row)? {
            postings.entry(transaction_id).or_default().push(posting);
        }
        Ok(postings)
    }
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
impl LedgerReads for SqliteUnitOfWork {
    async fn find_idempotency(
        &mut self,
        key_id: &str,
        request_id: &str,
    ) -> StoreResult<Option<IdempotencyRecord>> {
        let query = self
            .query(
                r"
                select key_id, request_id, request_hash, outcome, created_at
                from idempotency_keys
                where key_id = ?1
                  and request_id = ?2
                ",
            )?
            .bind(key_id) // ?1
            .bind(request_id); // ?2
        self.fetch_optional(query, idempotency_from_row)
    }

    /// `BEGIN IMMEDIATE` already serialises writers: no row lock needed.
    async fn load_program(&mut self, _lock: bool) -> StoreResult<Option<Program>> {
        let query = self.query(
            r"
            select id, body
            from program
            where id = 1
            ",
        )?;
        self.fetch_optional(query, |row| Cols::new(row, "program", "id").json("body"))
    }

    async fn get_store(&mut self, store_id: &str) -> StoreResult<Option<model::Store>> {
        let query = self
            .query(concat!(
                select_stores!(),
                r"
                where store_id = ?1
                "
            ))?
            .bind(store_id); // ?1
        self.fetch_optional(query, store_from_row)
    }

    async fn list_stores(&mut self) -> StoreResult<Vec<model::Store>> {
        let query = self.query(concat!(
            select_stores!(),
            r"
            order by store_id
            "
        ))?;
        self.fetch_all(query, store_from_row)
    }

    /// `lock` needs nothing here: `BEGIN IMMEDIATE` already holds the database's write lock.
    async fn get_member(&mut self, member_id: &str, _lock: bool) -> StoreResult<Option<MemberRow>> {
        let query = self
            .query(
                r"
                select member_id, display_name, state, merged_into, created_at,
                       lifetime_earned_points, lifetime_redeemed_points
                from members
                where member_id = ?1
                ",
            )?
            .bind(member_id); // ?1
        self.fetch_optional(query, member_from_row)
    }

    async fn member_by_identifier(
        &mut self,
        identifier: &Identifier,
    ) -> StoreResult<Option<String>> {
        self.query(
            r"
            select member_id
            from identifiers
            where kind = ?1
              and value = ?2
            ",
        )?
        .bind(&identifier.kind) // ?1
        .bind(&identifier.value) // ?2
        .fetch_optional(|row| col(row, 0))
    }

    async fn identifiers(&mut self, member_id: &str) -> StoreResult<Vec<Identifier>> {
        self.query(
            r"
            select kind, value
            from identifiers
            where member_id = ?1
            order by kind, value
            ",
        )?
        .bind(member_id) // ?1
        .fetch_all(|row| {
            Ok(Identifier {
                kind: col(row, 0)?,
                value: col(row, 1)?,
            })
        })
    }

    async fn balance(&mut self, account: &str, asset: &str) -> StoreResult<i64> {
        let guarded = Account::parse(account).is_some_and(|a| a.is_guarded());
        let sql = if guarded {
            r"
            select coalesce(sum(balance), 0)
            from balances
            where account = ?1
              and asset = ?2
            "
        } else {
            r"
            select coalesce(sum(amount), 0)
            from (
                select amount from postings where to_account = ?1 and asset = ?2
                union all
                select -amount from postings where from_account = ?1 and asset = ?2
            )
            "
        };
        self.query(sql)?
            .bind(account) // ?1
            .bind(asset) // ?2
            .fetch_one(|row| col(row, 0))
    }

    async fn member_lots(&mut self, member_id: &str) -> StoreResult<Vec<Lot>> {
        let query = self
            .query(concat!(
                select_lots!(),
                r"
                where member_id = ?1
                  and remaining_points > 0
                order by expires_at is null, expires_at, lot_id
                "
            ))?
            .bind(member_id); // ?1
        self.fetch_all(query, lot_from_row)
    }

    async fn order_lots(&mut self, order_id: &str) -> StoreResult<Vec<OrderLot>> {
        self.query(
            r"
            select order_id, lot_id, points, restored_points
            from order_lots
            where order_id = ?1
            order by lot_id
            ",
        )?
        .bind(order_id) // ?1
        .fetch_all(|row| {
            Ok(OrderLot {
                order_id: col(row, 0)?,
                lot_id: col(row, 1)?,
                points: col(row, 2)?,
                restored_points: col(row, 3)?,
            })
        })
    }

    async fn get_lot(&mut self, lot_id: i64) -> StoreResult<Option<Lot>> {
        let query = self
            .query(concat!(
                select_lots!(),
                r"
                where lot_id = ?1
                "
            ))?
            .bind(lot_id); // ?1
        self.fetch_optional(query, lot_from_row)
    }

    /// `lock` needs nothing here: `BEGIN IMMEDIATE` already holds the database's write lock.
    async fn get_order(&mut self, order_id: &str, _lock: bool) -> StoreResult<Option<Order>> {
        let query = self
            .query(
                r"
                select order_id, member_id, state, channel, store_id, register_id, receipt_no,
                       lines, total, coupon_discount, points_redeemed, amount_due, points_earned,
                       points_pending, coupon_codes, hold_expires_at, refunded_amount,
                       points_reversed, points_restored, occurred_at, created_at
                from orders
                where order_id = ?1
                ",
            )?
            .bind(order_id); // ?1
        self.fetch_optional(query, order_from_row)
    }

    async fn order_by_receipt(
        &mut self,
        store_id: &str,
        register_id: &str,
        receipt_no: &str,
    ) -> StoreResult<Option<String>> {
        self.query(
            r"
            select order_id
            from orders
            where store_id = ?1
              and register_id = ?2
              and receipt_no = ?3
            ",
        )?
        .bind(store_id) // ?1
        .bind(register_id) // ?2
        .bind(receipt_no) // ?3
        .fetch_optional(|row| col(row, 0))
    }

    async fn member_has_open_orders(&mut self, member_id: &str) -> StoreResult<bool> {
        self.query(
            r"
            select exists (
                select 1
                from orders
                where member_id = ?1
                  and state = 'authorized'
            )
            ",
        )?
        .bind(member_id) // ?1
        .fetch_one(|row| col(row, 0))
    }

    /// `lock` needs nothing here: `BEGIN IMMEDIATE` already holds the database's write lock.
    async fn get_campaign(
        &mut self,
        campaign_id: &str,
        _lock: bool,
    ) -> StoreResult<Option<Campaign>> {
        let query = self
            .query(concat!(
                select_campaigns!(),
                r"
                where campaign_id = ?1
                "
            ))?
            .bind(campaign_id); // ?1
        self.fetch_optional(query, campaign_from_row)
    }

    async fn campaign_by_public_code(
        &mut self,
        public_code: &str,
    ) -> StoreResult<Option<Campaign>> {
        let query = self
            .query(concat!(
                select_campaigns!(),
                r"
                where public_code = ?1
                "
            ))?
            .bind(public_code); // ?1
        self.fetch_optional(query, campaign_from_row)
    }

    async fn list_campaigns(&mut self) -> StoreResult<Vec<Campaign>> {
        let query = self.query(concat!(
            select_campaigns!(),
            r"
            order by created_at, campaign_id
            "
        ))?;
        self.fetch_all(query, campaign_from_row)
    }

    async fn count_coupons(
        &mut self,
        campaign_id: &str,
        member_id: Option<&str>,
    ) -> StoreResult<i64> {
        self.query(
            r"
            select count(*)
            from coupons
            where campaign_id = ?1
              and (?2 is null or member_id = ?2)
            ",
        )?
        .bind(campaign_id) // ?1
        .bind(member_id) // ?2
        .fetch_one(|row| col(row, 0))
    }

    /// `lock` needs nothing here: `BEGIN IMMEDIATE` already holds the database's write lock.
    async fn get_coupon(&mut self, code: &str, _lock: bool) -> StoreResult<Option<Coupon>> {
        let query = self
            .query(concat!(
                select_coupons!(),
                r"
                where code = ?1
                "
            ))?
            .bind(code); // ?1
        self.fetch_optional(query, coupon_from_row)
    }

    async fn member_coupons(&mut self, member_id: &str) -> StoreResult<Vec<Coupon>> {
        let query = self
            .query(concat!(
                select_coupons!(),
                r"
                where member_id = ?1
                order by issued_at, code
                "
            ))?
            .bind(member_id); // ?1
        self.fetch_all(query, coupon_from_row)
    }

    async fn order_coupons(&mut self, order_id: &str) -> StoreResult<Vec<Coupon>> {
        let query = self
            .query(concat!(
                select_coupons!(),
                r"
                where order_id = ?1
                  and order_id <> ''
                order by code
                "
            ))?
            .bind(order_id); // ?1
        self.fetch_all(query, coupon_from_row)
    }
}

#[async_trait]
impl UnitOfWork for SqliteUnitOfWork {
    #[tracing::instrument(level = "debug", skip_all)]
    async fn commit(self: Box<Self>) -> StoreResult<()> {
        self.execute("COMMIT")
    }

    async fn insert_api_key(&mut self, key: &ApiKeyRecord) -> StoreResult<()> {
        let query = self
            .query(
                r"
                insert into api_keys (
                    key_id, key_hash, role, store_id, name, created_at, expires_at, revoked_at,
                    last_used_at
                )
                values (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)
                ",
            )?
            .bind(&key.key_id) // ?1
            .bind(&key.key_hash) // ?2
            .bind(key.role.as_str()) // ?3
            .bind(key.store_id.as_deref()) // ?4
            .bind(&key.name) // ?5
            .bind(key.created_at.timestamp_micros()) // ?6
            .bind(key.expires_at.map(|at| at.timestamp_micros())) // ?7
            .bind(key.revoked_at.map(|at| at.timestamp_micros())) // ?8
            .bind(key.last_used_at.map(|at| at.timestamp_micros())); // ?9
        self.run(query)
    }

    async fn find_api_key(&mut self, key_hash: &str) -> StoreResult<Option<ApiKeyRecord>> {
        let query = self
            .query(
                r"
                select key_id, key_hash, role, store_id, name, created_at, expires_at,
                    revoked_at, last_used_at
                from api_keys
                where key_hash = ?1
                ",
            )?
            .bind(key_hash); // ?1
        self.fetch_optional(query, api_key_from_row)
    }

    async fn list_api_keys(&mut self) -> StoreResult<Vec<ApiKeyRecord>> {
        let query = self.query(
            r"
            select key_id, key_hash, role, store_id, name, created_at, expires_at, revoked_at,
                last_used_at
            from api_keys
            order by created_at, key_id
            ",
        )?;
        self.fetch_all(query, api_key_from_row)
    }

    async fn revoke_api_key(&mut self, key_id: &str, at: DateTime<Utc>) -> StoreResult<bool> {
        let query = self
            .query(
                r"
                update api_keys
                set revoked_at = coalesce(revoked_at, ?2)
                where key_id = ?1
                ",
            )?
            .bind(key_id) // ?1
            .bind(at.timestamp_micros()); // ?2
        Ok(query.execute()? == 1)
    }

    async fn touch_api_key(&mut self, key_id: &str, at: DateTime<Utc>) -> StoreResult<()> {
        let query = self
            .query(
                r"
                update api_keys
                set last_used_at = max(coalesce(last_used_at, 0), ?2)
                where key_id = ?1
                ",
            )?
            .bind(key_id) // ?1
            .bind(at.timestamp_micros()); // ?2
        self.run(query)
    }

    async fn ensure_program(&mut self, program: &Program) -> StoreResult<()> {
        let query = self
            .query(
                r"
                insert into program (id, body)
                values (1, ?1)
                on conflict (id) do nothing
                ",
            )?
            .bind(to_json(program)?); // ?1
        self.run(query)
    }

    #[tracing::instrument(level = "debug", skip_all)]
    async fn member_transactions(
        &mut self,
        member_id: &str,
        before_transaction_id: Option<i64>,
        limit: i64,
    ) -> StoreResult<Vec<Transaction>> {
        let query = self
            .query(
                r"
                select transaction_id, kind, member_id, occurred_at, recorded_at,
                       channel, store_id, order_id, metadata
                from transactions
                where member_id = ?1
                  and transaction_id < ?2
                order by transaction_id desc
                limit ?3
                ",
            )?
            .bind(member_id) // ?1
            .bind(before_transaction_id.unwrap_or(i64::MAX)) // ?2
            .bind(limit.max(0)); // ?3
        let mut transactions = self.fetch_all(query, transaction_from_row)?;
        let (Some(newest), Some(oldest)) = (transactions.first(), transactions.last()) else {
            return Ok(transactions);
        };
        // The page is every transaction of the member between its oldest and newest id.
        let (first_id, last_id) = (oldest.transaction_id, newest.transaction_id);
        let mut postings = self.postings_between(member_id, first_id, last_id)?;
        for transaction in &mut transactions {
            transaction.postings = postings
                .remove(&transaction.transaction_id)
                .unwrap_or_default();
        }
        Ok(transactions)
    }

    /// Row by row (a lookup here costs microseconds, not a round trip), with every balance of
    /// the accounts it covers.
    async fn load(&mut self, keys: &Keys) -> StoreResult<Loaded> {
        let mut loaded = batch::load_row_by_row(self, keys).await?;
        self.complete_balances(keys, &mut loaded)?;
        Ok(loaded)
    }

    async fn reserve_ids(&mut self, sequence: Sequence, count: usize) -> StoreResult<Vec<i64>> {
        self.reserve(sequence, count)
    }

    #[tracing::instrument(level = "debug", skip_all)]
    async fn flush(&mut self, changes: &ChangeSet) -> StoreResult<()> {
        self.write_rare_parts(changes)?;
        self.write_changes(changes)
    }

    #[tracing::instrument(level = "debug", skip_all)]
    async fn due_work(&mut self, now: DateTime<Utc>, limit: i64) -> StoreResult<DueWork> {
        let now = now.timestamp_micros();
        let limit = limit.max(0);
        let expired_holds = self.strings(
            r"
                select order_id
                from orders
                where state = 'authorized'
                  and hold_expires_at <= ?1
                order by hold_expires_at, order_id
                limit ?2
                ",
            now,
            limit,
        )?;
        // Two arms, so each can use its partial index; `union` makes the ids distinct.
        let members_with_due_lots = self.strings(
            r"
                select member_id
                from point_lots
                where state = 'pending'
                  and matures_at <= ?1
                union
                select member_id
                from point_lots
                where remaining_points > held_points
                  and expires_at <= ?1
                  and state in ('pending', 'available')
                order by member_id
                limit ?2
                ",
            now,
            limit,
        )?;
        let expired_coupons = self.strings(
            r"
                select code
                from coupons
                where state = 'active'
                  and valid_until <= ?1
                order by valid_until, code
                limit ?2
                ",
            now,
            limit,
        )?;
        Ok(DueWork {
            expired_holds,
            members_with_due_lots,
            expired_coupons,
        })
    }

    #[tracing::instrument(level = "debug", skip_all)]
    async fn ledger_snapshot(&mut self) -> StoreResult<LedgerSnapshot> {
        let malformed_postings: i64 = self
            .query(
                r"
                select count(*)
                from postings
                where amount <= 0
                   or from_account = to_account
                ",
            )?
            .fetch_one(|row| col(row, 0))?;
        let posting_sums = self.account_totals(
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
        )?;
        let stored_balances = self.account_totals(
            r"
                select account, asset, balance
                from balances
                order by account, asset
                ",
        )?;
        let coupon_positions = self.account_totals(
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
        )?;
        let lot_totals = self.lot_totals()?;
        let (authorized_orders, orders_resolved_twice) = self.order_checks()?;
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

// Rare writes of a flush (admin writes, merges): one statement each, and most batches have
// none.
impl SqliteUnitOfWork {
    /// The rare parts of a [`ChangeSet`], written first: the rows after them already name
    /// their final member.
    fn write_rare_parts(&self, changes: &ChangeSet) -> StoreResult<()> {
        for store in &changes.new_stores {
            self.insert_store(store)?;
        }
        if let Some(program) = &changes.program {
            self.save_program(program)?;
        }
        for campaign in &changes.new_campaigns {
            self.insert_campaign(campaign)?;
        }
        for (source, target) in &changes.merges {
            self.move_lots(source, target)?;
            self.move_coupons(source, target)?;
            self.move_identifiers(source, target)?;
        }
        Ok(())
    }

    fn save_program(&self, program: &Program) -> StoreResult<()> {
        let query = self
            .query(
                r"
                insert into program (id, body)
                values (1, ?1)
                on conflict (id) do update
                set body = excluded.body
                ",
            )?
            .bind(to_json(program)?); // ?1
        self.run(query)
    }

    fn insert_store(&self, store: &model::Store) -> StoreResult<()> {
        let query = self
            .query(
                r"
                insert into stores (
                    store_id, name, latitude, longitude, time_zone,
                    geofence_radius_m, geofence_polygon, created_at
                )
                values (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
                ",
            )?
            .bind(&store.store_id) // ?1
            .bind(&store.name) // ?2
            .bind(store.location.latitude) // ?3
            .bind(store.location.longitude) // ?4
            .bind(&store.time_zone) // ?5
            .bind(store.geofence_radius_m) // ?6
            .bind(to_json(&store.geofence_polygon)?) // ?7
            .bind(Utc::now().timestamp_micros()); // ?8: bookkeeping only; the port passes no instant
        self.run(query)
    }

    fn move_identifiers(&self, from_member_id: &str, to_member_id: &str) -> StoreResult<()> {
        let sql = r"
            update identifiers
            set member_id = ?1
            where member_id = ?2
            ";
        self.move_member_rows(sql, from_member_id, to_member_id)
    }

    fn move_lots(&self, from_member_id: &str, to_member_id: &str) -> StoreResult<()> {
        let sql = r"
            update point_lots
            set member_id = ?1
            where member_id = ?2
            ";
        self.move_member_rows(sql, from_member_id, to_member_id)
    }

    fn insert_campaign(&self, campaign: &Campaign) -> StoreResult<()> {
        let query = self
            .query(
                r"
                insert into campaigns (campaign_id, public_code, body, created_at)
                values (?1, ?2, ?3, ?4)
                ",
            )?
            .bind(&campaign.campaign_id) // ?1
            .bind(campaign.public_code.as_deref()) // ?2
            .bind(to_json(campaign)?) // ?3
            .bind(campaign.created_at.timestamp_micros()); // ?4
        self.run(query)
    }

    fn move_coupons(&self, from_member_id: &str, to_member_id: &str) -> StoreResult<()> {
        let sql = r"
            update coupons
            set member_id = ?1
            where member_id = ?2
            ";
        self.move_member_rows(sql, from_member_id, to_member_id)
    }
}

impl SqliteUnitOfWork {
    fn lot_totals(&self) -> StoreResult<Vec<MemberLotTotals>> {
        self.query(
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
        )?
        .fetch_all(|row| {
            Ok(MemberLotTotals {
                member_id: col(row, 0)?,
                pending_remaining: col(row, 1)?,
                spendable_remaining: col(row, 2)?,
                held: col(row, 3)?,
                malformed_lots: col(row, 4)?,
            })
        })
    }

    /// Authorized orders with their points redeemed, and orders resolved more than once.
    fn order_checks(&self) -> StoreResult<(Vec<AuthorizedOrder>, Vec<String>)> {
        let authorized_orders = self
            .query(
                r"
                select order_id, points_redeemed
                from orders
                where state = 'authorized'
                order by order_id
                ",
            )?
            .fetch_all(|row| Ok((col(row, 0)?, col(row, 1)?)))?;
        let resolved_twice = self
            .query(
                r"
                select order_id
                from transactions
                where kind in ('capture', 'void', 'hold_expired')
                  and order_id <> ''
                group by order_id
                having count(*) > 1
                order by order_id
                ",
            )?
            .fetch_all(|row| col(row, 0))?;
        Ok((authorized_orders, resolved_twice))
    }
}

/// An authorized order's id and the points it redeemed (held until capture or void).
type AuthorizedOrder = (String, i64);

// ---------------------------------------------------------------------------------------------
// Binding: one function per table binds the columns its insert and its update share.

impl SqliteUnitOfWork {
    /// Every column of a transaction but `transaction_id` (AUTOINCREMENT picks it, or a batch
    /// binds the one it reserved as ?9).
    fn transaction_query<'c>(
        &'c self,
        sql: &str,
        transaction: &NewTransaction,
    ) -> StoreResult<Query<'c>> {
        let metadata: BTreeMap<&str, &str> = transaction
            .metadata
            .iter()
            .map(|(key, value)| (key.as_str(), value.as_str()))
            .collect();
        Ok(self
            .query(sql)?
            .bind(transaction.kind) // ?1
            .bind(&transaction.member_id) // ?2
            .bind(transaction.occurred_at.timestamp_micros()) // ?3
            .bind(transaction.recorded_at.timestamp_micros()) // ?4
            .bind(transaction.channel.map(Channel::as_str)) // ?5
            .bind(&transaction.store_id) // ?6
            .bind(&transaction.order_id) // ?7
            .bind(to_json(&metadata)?)) // ?8
    }

    /// `member_id` (?1) to `lifetime_redeemed_points` (?6); the insert adds `created_at` (?7).
    fn member_query<'c>(&'c self, sql: &str, member: &MemberRow) -> StoreResult<Query<'c>> {
        Ok(self
            .query(sql)?
            .bind(&member.member_id) // ?1
            .bind(&member.display_name) // ?2
            .bind(member.state.as_str()) // ?3
            .bind(member.merged_into.as_deref()) // ?4
            .bind(member.lifetime_earned_points) // ?5
            .bind(member.lifetime_redeemed_points)) // ?6
    }

    /// Every column but `lot_id`, which the insert returns and the update binds as ?10.
    fn lot_query<'c>(&'c self, sql: &str, lot: &Lot) -> StoreResult<Query<'c>> {
        Ok(self
            .query(sql)?
            .bind(&lot.member_id) // ?1
            .bind(&lot.order_id) // ?2
            .bind(lot.state.as_str()) // ?3
            .bind(lot.earned_at.timestamp_micros()) // ?4
            .bind(lot.matures_at.map(|at| at.timestamp_micros())) // ?5
            .bind(lot.expires_at.map(|at| at.timestamp_micros())) // ?6
            .bind(lot.original_points) // ?7
            .bind(lot.remaining_points) // ?8
            .bind(lot.held_points)) // ?9
    }

    /// Every column of an order, `order_id` first.
    fn order_query<'c>(&'c self, sql: &str, order: &Order) -> StoreResult<Query<'c>> {
        Ok(self
            .query(sql)?
            .bind(&order.order_id) // ?1
            .bind(&order.member_id) // ?2
            .bind(order.state.as_str()) // ?3
            .bind(order.channel.as_str()) // ?4
            .bind(&order.store_id) // ?5
            .bind(&order.register_id) // ?6
            .bind(receipt_no_param(&order.receipt_no)) // ?7
            .bind(to_json(&order.lines)?) // ?8
            .bind(order.total.to_string()) // ?9
            .bind(order.coupon_discount.to_string()) // ?10
            .bind(order.points_redeemed) // ?11
            .bind(order.amount_due.to_string()) // ?12
            .bind(order.points_earned) // ?13
            .bind(order.points_pending) // ?14
            .bind(to_json(&order.coupon_codes)?) // ?15
            .bind(order.hold_expires_at.map(|at| at.timestamp_micros())) // ?16
            .bind(order.refunded_amount.to_string()) // ?17
            .bind(order.points_reversed) // ?18
            .bind(order.points_restored) // ?19
            .bind(order.occurred_at.timestamp_micros()) // ?20
            .bind(order.created_at.timestamp_micros())) // ?21
    }

    /// Every column of a coupon, `code` first.
    fn coupon_query<'c>(&'c self, sql: &str, coupon: &Coupon) -> StoreResult<Query<'c>> {
        Ok(self
            .query(sql)?
            .bind(&coupon.code) // ?1
            .bind(&coupon.campaign_id) // ?2
            .bind(&coupon.variant_id) // ?3
            .bind(&coupon.member_id) // ?4
            .bind(coupon.state.as_str()) // ?5
            .bind(coupon.valid_from.timestamp_micros()) // ?6
            .bind(coupon.valid_until.map(|at| at.timestamp_micros())) // ?7
            .bind(&coupon.source) // ?8
            .bind(&coupon.order_id) // ?9
            .bind(coupon.redeemed_at.map(|at| at.timestamp_micros())) // ?10
            .bind(coupon.issued_at.timestamp_micros())) // ?11
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

fn api_key_from_row(row: &Row<'_>) -> StoreResult<ApiKeyRecord> {
    let c = Cols::new(row, "api_keys", "key_id");
    Ok(ApiKeyRecord {
        key_id: c.get("key_id")?,
        key_hash: c.get("key_hash")?,
        role: c.named("role", Role::parse)?,
        store_id: c.get("store_id")?,
        name: c.get("name")?,
        created_at: c.instant("created_at")?,
        expires_at: c.opt_instant("expires_at")?,
        revoked_at: c.opt_instant("revoked_at")?,
        last_used_at: c.opt_instant("last_used_at")?,
    })
}

fn idempotency_from_row(row: &Row<'_>) -> StoreResult<IdempotencyRecord> {
    let c = Cols::new(row, "idempotency_keys", "request_id");
    Ok(IdempotencyRecord {
        key_id: c.get("key_id")?,
        request_id: c.get("request_id")?,
        request_hash: c.get("request_hash")?,
        outcome: c.get("outcome")?,
        created_at: c.instant("created_at")?,
    })
}

fn store_from_row(row: &Row<'_>) -> StoreResult<model::Store> {
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

fn member_from_row(row: &Row<'_>) -> StoreResult<MemberRow> {
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
fn transaction_from_row(row: &Row<'_>) -> StoreResult<Transaction> {
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

fn posting_from_row(row: &Row<'_>) -> StoreResult<(i64, Posting)> {
    let c = Cols::new(row, "postings", "transaction_id");
    let posting = Posting {
        from_account: c.get("from_account")?,
        to_account: c.get("to_account")?,
        asset: c.get("asset")?,
        amount: c.get("amount")?,
    };
    Ok((c.get("transaction_id")?, posting))
}

fn lot_from_row(row: &Row<'_>) -> StoreResult<Lot> {
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

fn order_from_row(row: &Row<'_>) -> StoreResult<Order> {
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

fn campaign_from_row(row: &Row<'_>) -> StoreResult<Campaign> {
    Cols::new(row, "campaigns", "campaign_id").json("body")
}

fn coupon_from_row(row: &Row<'_>) -> StoreResult<Coupon> {
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
        test_writes::insert_order(uow.as_mut(), &online)
            .await
            .expect("order");
        test_writes::insert_order(uow.as_mut(), &order("o2", "R-9"))
            .await
            .expect("register sale");
        assert_eq!(uow.get_order("o1", true).await.unwrap(), Some(online));
        let found = uow.order_by_receipt("s1", "r1", "R-9").await.unwrap();
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
