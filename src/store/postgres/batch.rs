//! The batch path on PostgreSQL: a whole batch's reads in a few bulk statements, ids reserved
//! from the identity sequences, and its writes in one set-based statement per table and kind.
//!
//! Every statement takes the batch's rows as arrays (`= any($1)`, `unnest(...)`), so its cost
//! is one round trip, one (generic, cached) plan and one executor start-up whatever the number
//! of commands in the batch.
//!
//! Locks are taken in one fixed order, the same in every replica, so that two batches never
//! wait on each other in a cycle: orders, then members, then coupons, each sorted by key.
//! Balance rows need no lock of their own, save two kinds: every other account whose balance a
//! batch changes belongs to a member or an order the batch has locked. A rule's budget is read
//! under the rule's lock; a part of a limited campaign's stock is read under its own (`for
//! update`), the row parallel writers draw from, each from a part of its own.
//!
//! Rows that depend on a locked row (a member's lots and balances, an order's order lots) are
//! read by a statement of their own after the lock is granted. At READ COMMITTED each statement
//! reads a fresh snapshot, so they show what the previous holder of the lock committed; joined
//! into the locking statement they would come from the snapshot taken before the wait.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, LazyLock, Mutex, PoisonError};

use chrono::{DateTime, Utc};
use sqlx::{Execute, postgres::PgRow};

use super::coupons::{INSERT_COUPONS, UPDATE_COUPONS, bind_coupons, coupon_from_row};
use super::journal::{CREDIT_BALANCES, DEBIT_BALANCES, INSERT_POSTINGS, INSERT_TRANSACTIONS};
use super::keys::{INSERT_OUTCOMES, bind_outcomes};
use super::lots::{INSERT_LOTS, UPDATE_LOTS, bind_lots, lot_from_row};
use super::members::{
    INSERT_IDENTIFIERS, INSERT_MEMBERS, UPDATE_MEMBERS, bind_changed_members, bind_identifiers,
    bind_new_members, member_from_row,
};
use super::orders::{
    INSERT_ORDER_LOTS, INSERT_ORDERS, UPDATE_ORDER_LOTS, UPDATE_ORDERS, bind_order_lots,
    bind_orders, order_from_row, order_lot_from_row,
};
use super::{Cols, PgQuery, PgUnitOfWork, column, map_err, reports};
use super::{events, rules};
use crate::{
    domain::{
        Account,
        model::{Channel, Identifier, Lot, Posting},
        ports::{
            AccountTotal, ChangeSet, IdempotencyRecord, Keys, Loaded, Sequence, StoreError,
            StoreResult,
        },
    },
    store::to_json,
};

/// Keys without repeats, in order: a key named by several commands is read once.
fn distinct<T: Ord + Clone>(keys: &[T]) -> Vec<T> {
    keys.iter()
        .cloned()
        .collect::<BTreeSet<T>>()
        .into_iter()
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Load.

/// Unlocked keyed lookups, one row per key found (`found` says which kind): the outcomes
/// already remembered, the members identifiers name, who holds the register receipts named (a
/// sale: `receipt`, a scan: `receipt_claim`), and
/// which named orders exist (only those are then locked: a batch of new sales takes no order
/// locks and skips that round trip). They are read before any lock; a row another batch adds
/// after this read makes this batch's own insert of it a unique violation, and the batch runs
/// again and sees it. The ids the batch will want ride along (`nextval` is not transactional,
/// so they are never handed out twice, whatever becomes of this transaction).
///
/// The receipts are looked up one by one (`lateral`): joined plainly, the generic plan of a
/// young database may hash every claim, a cost that grows with the table.
const LOOKUPS: &str = r#"
select 'identifier' as found,
    i.kind as key_1, i.value as key_2, null::text as key_3,
    i.member_id as value, null::text as request_hash, null::timestamptz as created_at
from unnest($1::text[], $2::text[]) as k (kind, value)
join identifiers i
    on i.kind = k.kind
    and i.value = k.value
union all
select case when c.order_id is null then 'receipt_claim' else 'receipt' end as found,
    r.store_id, r.register_id, r.receipt_no,
    coalesce(c.order_id, c.receipt_id), null, null
from unnest($3::text[], $4::text[], $5::text[]) as r (store_id, register_id, receipt_no)
cross join lateral (
    select order_id, receipt_id
    from receipt_claims
    where store_id = r.store_id
        and register_id = r.register_id
        and receipt_no = r.receipt_no
) as c
union all
select 'idempotency' as found,
    d.key_id, d.request_id, null,
    d.outcome::text, d.request_hash, d.created_at
from unnest($6::text[], $7::text[]) as k (key_id, request_id)
join idempotency_keys d
    on d.key_id = k.key_id
    and d.request_id = k.request_id
union all
select 'order' as found,
    order_id, null, null,
    order_id, null, null
from orders
where order_id = any($8)
union all
select 'transaction_id' as found,
    null, null, null,
    nextval(pg_get_serial_sequence('transactions', 'transaction_id'))::text, null, null
from generate_series(1, $9)
union all
select 'lot_id' as found,
    null, null, null,
    nextval(pg_get_serial_sequence('point_lots', 'lot_id'))::text, null, null
from generate_series(1, $10)"#;

/// The named orders, locked first.
const LOCK_ORDERS: &str = concat!(
    select_orders!(),
    r#"
where order_id = any($1)
order by order_id
for no key update"#
);

/// Then their members: named, found by identifier, or owning a locked order.
const LOCK_MEMBERS: &str = concat!(
    select_members!(),
    r#"
where member_id = any($1)
order by member_id
for no key update"#
);

/// The live lots of the locked members ($1) and every stored balance of the accounts they and
/// the named orders own ($2), in one statement: `lot_id` is null on a balance row.
const LOTS_AND_BALANCES: &str = concat!(
    lot_columns!(),
    r#",
    null::text as account, null::text as asset, null::bigint as balance
from point_lots
where member_id = any($1)
    and remaining_points > 0
union all
select null, null, null, null, null, null, null, null, null, null, null,
    account, asset, balance
from balances
where account = any($2)"#
);

const ORDER_LOTS: &str = r#"
select order_id, lot_id, points, restored_points
from order_lots
where order_id = any($1)
order by order_id, lot_id"#;

/// Last, the coupons: named, or reserved or redeemed by a locked order. The codes are gathered
/// first (an init plan) so that the locking scan is one primary-key lookup per code: an `or` of
/// the two conditions, planned while the table was empty, scanned the whole primary key.
const LOCK_COUPONS: &str = concat!(
    select_coupons!(),
    r#"
where code = any(array(
    select unnest($1::text[])
    union all
    select code
    from coupons
    where order_id = any($2)
        and order_id <> ''
))
order by code
for no key update"#
);

/// A row of `LOOKUPS`, filed where it belongs (named orders that exist go to `existing`).
fn file_lookup(row: &PgRow, loaded: &mut Loaded, existing: &mut Vec<String>) -> StoreResult<()> {
    let c = Cols::new(row, "lookups", "key_2");
    let found: String = c.get("found")?;
    let value: String = c.get("value")?;
    let reserved = |sequence: Sequence, loaded: &mut Loaded| -> StoreResult<()> {
        let id: i64 = value
            .parse()
            .map_err(|_| c.corrupt("value", format!("{value:?} is not an id")))?;
        loaded.reserved_ids.entry(sequence).or_default().push(id);
        Ok(())
    };
    match found.as_str() {
        "order" => {
            existing.push(value);
            return Ok(());
        }
        "transaction_id" => return reserved(Sequence::Transactions, loaded),
        "lot_id" => return reserved(Sequence::Lots, loaded),
        _ => {}
    }
    let (key_1, key_2): (String, String) = (c.get("key_1")?, c.get("key_2")?);
    match found.as_str() {
        "identifier" => {
            let identifier = Identifier {
                kind: key_1,
                value: key_2,
            };
            loaded.identifiers.push((identifier, value));
        }
        "receipt" => {
            let receipt_no: String = c.get("key_3")?;
            loaded.receipts.push(((key_1, key_2, receipt_no), value));
        }
        "receipt_claim" => {
            let receipt_no: String = c.get("key_3")?;
            loaded
                .receipt_claims
                .push(((key_1, key_2, receipt_no), value));
        }
        "idempotency" => loaded.idempotency.push(IdempotencyRecord {
            key_id: key_1,
            request_id: key_2,
            request_hash: c.get("request_hash")?,
            outcome: value,
            created_at: c.get("created_at")?,
        }),
        other => return Err(c.corrupt("found", format!("unknown lookup {other:?}"))),
    }
    Ok(())
}

/// The spending order `member_lots` returns, per member: soonest expiry first, never-expiring
/// last, oldest lot first on ties.
fn spending_order(lot: &Lot) -> (&str, bool, Option<DateTime<Utc>>, i64) {
    (
        lot.member_id.as_str(),
        lot.expires_at.is_none(),
        lot.expires_at,
        lot.lot_id,
    )
}

impl PgUnitOfWork {
    /// Reads what `keys` names in at most six statements (lookups, orders, members, lots and
    /// balances, order lots, coupons), skipping those with nothing to read.
    pub(super) async fn load_batch(&mut self, keys: &Keys) -> StoreResult<Loaded> {
        let mut loaded = Loaded::default();
        let order_ids = distinct(&keys.order_ids);
        let existing_orders = self.lookups(keys, &order_ids, &mut loaded).await?;
        if !existing_orders.is_empty() {
            let query = sqlx::query(LOCK_ORDERS).bind(&existing_orders); // $1
            loaded.orders = self.fetch_all(query, order_from_row).await?;
        }

        let mut member_ids: BTreeSet<&str> = keys.member_ids.iter().map(String::as_str).collect();
        member_ids.extend(loaded.identifiers.iter().map(|(_, id)| id.as_str()));
        member_ids.extend(loaded.orders.iter().map(|order| order.member_id.as_str()));
        if !member_ids.is_empty() {
            let ids: Vec<&str> = member_ids.into_iter().collect();
            let query = sqlx::query(LOCK_MEMBERS).bind(ids); // $1
            loaded.members = self.fetch_all(query, member_from_row).await?;
        }

        // Every stored balance of these accounts is read, so each is complete. The hold of an
        // order that does not exist yet is among them: it has no rows.
        let mut accounts = Vec::with_capacity(2 * loaded.members.len() + order_ids.len());
        for member in &loaded.members {
            accounts.push(Account::Member(member.member_id.clone()).to_string());
            accounts.push(Account::MemberPending(member.member_id.clone()).to_string());
        }
        accounts.extend(
            order_ids
                .iter()
                .map(|order_id| Account::Hold(order_id.clone()).to_string()),
        );
        if !accounts.is_empty() {
            let member_ids: Vec<&str> = column(&loaded.members, |m| m.member_id.as_str());
            let query = sqlx::query(LOTS_AND_BALANCES)
                .bind(member_ids) // $1
                .bind(&accounts); // $2
            let rows = query.fetch_all(&mut *self.tx).await.map_err(map_err)?;
            for row in &rows {
                let c = Cols::new(row, "balances", "account");
                let lot_id: Option<i64> = c.get("lot_id")?;
                if lot_id.is_some() {
                    loaded.lots.push(lot_from_row(row)?);
                } else {
                    loaded.balances.push(AccountTotal {
                        account: c.get("account")?,
                        asset: c.get("asset")?,
                        amount: c.get("balance")?,
                    });
                }
            }
            loaded
                .lots
                .sort_by(|a, b| spending_order(a).cmp(&spending_order(b)));
            loaded
                .balances
                .sort_by(|a, b| (&a.account, &a.asset).cmp(&(&b.account, &b.asset)));
        }
        loaded.complete_accounts = accounts;

        let locked_orders: Vec<&str> = column(&loaded.orders, |o| o.order_id.as_str());
        if !locked_orders.is_empty() {
            let query = sqlx::query(ORDER_LOTS).bind(&locked_orders); // $1
            loaded.order_lots = self.fetch_all(query, order_lot_from_row).await?;
        }

        let codes = distinct(&keys.coupon_codes);
        if !codes.is_empty() || !locked_orders.is_empty() {
            let query = sqlx::query(LOCK_COUPONS)
                .bind(codes) // $1
                .bind(&locked_orders); // $2
            loaded.coupons = self.fetch_all(query, coupon_from_row).await?;
        }
        Ok(loaded)
    }

    /// Identifiers, receipts, remembered outcomes, which of `order_ids` exist (returned, in
    /// order) and the wanted ids, in one statement.
    async fn lookups(
        &mut self,
        keys: &Keys,
        order_ids: &[String],
        loaded: &mut Loaded,
    ) -> StoreResult<Vec<String>> {
        let identifiers = distinct(&keys.identifiers);
        let receipts: Vec<(String, String, String)> = distinct(&keys.receipts)
            .into_iter()
            .filter(|(_, _, receipt_no)| !receipt_no.is_empty())
            .collect();
        let requests = distinct(&keys.idempotency);
        let wanted = |sequence: Sequence| -> StoreResult<i64> {
            let count = keys.wanted_ids.get(&sequence).copied().unwrap_or(0);
            i64::try_from(count)
                .map_err(|_| StoreError::Database(format!("cannot reserve {count} ids").into()))
        };
        let (transaction_ids, lot_ids) = (wanted(Sequence::Transactions)?, wanted(Sequence::Lots)?);
        if identifiers.is_empty()
            && receipts.is_empty()
            && requests.is_empty()
            && order_ids.is_empty()
            && transaction_ids == 0
            && lot_ids == 0
        {
            return Ok(Vec::new());
        }
        let query = sqlx::query(LOOKUPS)
            .bind(column(&identifiers, |i| i.kind.as_str())) // $1
            .bind(column(&identifiers, |i| i.value.as_str())) // $2
            .bind(column(&receipts, |r| r.0.as_str())) // $3
            .bind(column(&receipts, |r| r.1.as_str())) // $4
            .bind(column(&receipts, |r| r.2.as_str())) // $5
            .bind(column(&requests, |r| r.0.as_str())) // $6
            .bind(column(&requests, |r| r.1.as_str())) // $7
            .bind(order_ids) // $8
            .bind(transaction_ids) // $9
            .bind(lot_ids); // $10
        let rows = query.fetch_all(&mut *self.tx).await.map_err(map_err)?;
        let mut existing_orders = Vec::new();
        for row in &rows {
            file_lookup(row, loaded, &mut existing_orders)?;
        }
        existing_orders.sort_unstable();
        for ids in loaded.reserved_ids.values_mut() {
            ids.sort_unstable();
        }
        Ok(existing_orders)
    }
}

// ---------------------------------------------------------------------------------------------
// Reserved ids.

/// `count` ($1) values of a table's identity sequence. Inserts that carry them say
/// `overriding system value`; inserts without an id draw from the same sequence, so they never
/// get one of these.
fn reserve_sql(sequence: Sequence) -> &'static str {
    match sequence {
        Sequence::Transactions => {
            r#"
select nextval(pg_get_serial_sequence('transactions', 'transaction_id')) as id
from generate_series(1, $1)"#
        }
        Sequence::Lots => {
            r#"
select nextval(pg_get_serial_sequence('point_lots', 'lot_id')) as id
from generate_series(1, $1)"#
        }
    }
}

impl PgUnitOfWork {
    pub(super) async fn reserve(
        &mut self,
        sequence: Sequence,
        count: usize,
    ) -> StoreResult<Vec<i64>> {
        if count == 0 {
            return Ok(Vec::new());
        }
        let count = i64::try_from(count)
            .map_err(|_| StoreError::Database(format!("cannot reserve {count} ids").into()))?;
        let query = sqlx::query(reserve_sql(sequence)).bind(count); // $1
        let mut ids: Vec<i64> = self
            .fetch_all(query, |row| Cols::new(row, "sequence", "id").get("id"))
            .await?;
        ids.sort_unstable();
        Ok(ids)
    }
}

impl PgUnitOfWork {
    /// The rare parts of a [`ChangeSet`] (admin writes, merges), one statement each (most
    /// batches have none), written first: the rows after them already name their final member.
    pub(super) async fn write_rare_parts(&mut self, changes: &ChangeSet) -> StoreResult<()> {
        for store in &changes.new_stores {
            self.insert_store(store).await?;
        }
        if let Some(program) = &changes.program {
            self.save_program(program).await?;
        }
        for campaign in &changes.new_campaigns {
            self.insert_campaign(campaign).await?;
        }
        for campaign in &changes.changed_campaigns {
            self.update_campaign(campaign).await?;
        }
        self.write_rules(&changes.rules).await?;
        for (source, target) in &changes.merges {
            self.move_lots(source, target).await?;
            self.move_coupons(source, target).await?;
            self.move_identifiers(source, target).await?;
            self.move_member_spend(source, target).await?;
        }
        // After the merges: a batch's spend names the member it ends with.
        self.add_member_spend(&changes.member_spend).await?;
        for identifier in &changes.removed_identifiers {
            self.delete_identifier(identifier).await?;
        }
        for member_id in &changes.erased_members {
            self.erase_personal_data(member_id).await?;
        }
        Ok(())
    }

    /// Writes a batch's changes in ONE statement: each table's part (one set-based insert or
    /// update) is a data-modifying CTE of it, so the flush costs one round trip, one plan and
    /// one executor start-up whatever the batch holds. The parts run on one snapshot; foreign
    /// keys are checked when the statement ends, when every part has written. The first
    /// failure (a debit below zero, a duplicate key, an update that finds no row) fails the
    /// flush, and the caller drops the unit of work, which rolls all of it back.
    ///
    /// Being one statement, it has no time per table: its metric is the statement's time
    /// (`omo_flush_duration_seconds{table="ledger"}`, timed in `flush`), and the rows per table
    /// are counted off the change set once committed (`omo_flush_rows_total{table}`).
    pub(super) async fn flush_changes(&mut self, changes: &ChangeSet) -> StoreResult<()> {
        let journal = JournalColumns::of(changes)?;
        let parts = flush_parts(changes, &journal);
        if parts.is_empty() {
            return Ok(());
        }
        let sql = flush_sql(&parts);
        // The parts bind into a query of their own, and its arguments move into the combined
        // statement: arguments own their encoded values, so they outlive neither.
        let mut binding = sqlx::query("");
        let mut expected = Vec::new();
        for part in parts {
            binding = (part.bind)(binding)?;
            if let Some(rows) = part.expected_rows {
                expected.push((part.name, rows));
            }
        }
        let arguments = binding
            .take_arguments()
            .map_err(StoreError::Database)?
            .unwrap_or_default();
        let query = sqlx::query_with(&sql, arguments);
        let row = query.fetch_one(&mut *self.tx).await.map_err(map_err)?;
        for (name, rows) in expected {
            let changed: i64 = Cols::new(&row, "flush", name).get(name)?;
            if usize::try_from(changed).ok() != Some(rows) {
                return Err(unexpected_count(name, rows, changed));
            }
        }
        Ok(())
    }
}

/// Why a flush part changed another number of rows than it must: a debit that found no
/// stored balance (nothing stored is zero, and the debit would go below it), an issue without
/// a limit from a campaign that has one by now (run again: it reads the campaign anew), or an
/// update of a row that was never there (a bug: the batch must not commit).
fn unexpected_count(name: &str, expected: usize, changed: i64) -> StoreError {
    match name {
        "debited" => StoreError::Database(
            format!("a debit would go below zero ({changed} of {expected} balances stored)").into(),
        ),
        "limited_since" => StoreError::Conflict(format!(
            "{changed} campaigns issued without a limit have one by now"
        )),
        _ => StoreError::Database(
            format!("{name}: expected to update {expected} rows, updated {changed}").into(),
        ),
    }
}

/// The campaigns (of `$1`) that have a stock: a batch that issued their coupons from
/// `campaign:<id>` read them before UpdateCampaign gave them a limit. UpdateCampaign fences
/// coupon issues first (`fence_coupon_issues`), and this statement locks the coupons table
/// before its snapshot is taken, so it sees every limit set before its coupons could count.
const LIMITED_SINCE: &str = r#"
select campaign_id
from campaigns
where campaign_id = any($1::text[])
    and (body->>'stock_parts')::integer > 0"#;

/// Binds one part's columns, in the order of its own `$1..$n`.
type Binder<'q> = Box<dyn FnOnce(PgQuery<'q>) -> StoreResult<PgQuery<'q>> + Send + 'q>;

/// One table's part of the flush statement: a statement over parameters `$1..$n` of its own
/// (renumbered into the whole), and how to bind them.
struct Part<'q> {
    /// Its CTE's name; for counted parts, also the column of its count.
    name: &'static str,
    sql: &'static str,
    /// Rows it must change (updates and debits); any other count fails the flush.
    expected_rows: Option<usize>,
    /// A query, not a write: its rows are counted as they are (no `returning`).
    query: bool,
    bind: Binder<'q>,
}

impl<'q> Part<'q> {
    fn new(
        name: &'static str,
        sql: &'static str,
        bind: impl FnOnce(PgQuery<'q>) -> StoreResult<PgQuery<'q>> + Send + 'q,
    ) -> Self {
        Part {
            name,
            sql,
            expected_rows: None,
            query: false,
            bind: Box::new(bind),
        }
    }

    /// A query that must find no row.
    fn finding_nothing(
        name: &'static str,
        sql: &'static str,
        bind: impl FnOnce(PgQuery<'q>) -> StoreResult<PgQuery<'q>> + Send + 'q,
    ) -> Self {
        Part {
            query: true,
            ..Part::new(name, sql, bind).counted(0)
        }
    }

    fn counted(mut self, rows: usize) -> Self {
        self.expected_rows = Some(rows);
        self
    }
}

/// The journal's columns that are derived rather than read off the change set: metadata as
/// JSON, postings numbered within their transaction, balance deltas split into credits and
/// debits (debits as the positive amounts they take away).
struct JournalColumns<'c> {
    metadata: Vec<String>,
    postings: Vec<(i64, i32, &'c Posting)>,
    credits: Vec<&'c AccountTotal>,
    debits: Vec<&'c AccountTotal>,
    debit_amounts: Vec<i64>,
    /// Campaigns whose coupons the batch issued from `campaign:<id>`, as campaigns without a
    /// limit (see [`LIMITED_SINCE`]).
    unlimited_issues: Vec<String>,
}

impl<'c> JournalColumns<'c> {
    fn of(changes: &'c ChangeSet) -> StoreResult<Self> {
        let mut metadata = Vec::with_capacity(changes.transactions.len());
        for (_, transaction) in &changes.transactions {
            let pairs: BTreeMap<&str, &str> = transaction
                .metadata
                .iter()
                .map(|(key, value)| (key.as_str(), value.as_str()))
                .collect();
            metadata.push(to_json(&pairs)?);
        }
        let postings = changes
            .transactions
            .iter()
            .flat_map(|(id, transaction)| {
                (1..)
                    .zip(&transaction.postings)
                    .map(move |(posting_no, posting)| (*id, posting_no, posting))
            })
            .collect();
        let (credits, debits): (Vec<&AccountTotal>, Vec<&AccountTotal>) = changes
            .balance_deltas
            .iter()
            .filter(|delta| delta.amount != 0)
            .partition(|delta| delta.amount > 0);
        let debit_amounts = debits
            .iter()
            .map(|d| d.amount.checked_neg())
            .collect::<Option<Vec<i64>>>()
            .ok_or_else(|| StoreError::Database("a balance delta overflows".into()))?;
        let unlimited_issues: BTreeSet<String> = changes
            .transactions
            .iter()
            .flat_map(|(_, transaction)| &transaction.postings)
            .filter(|p| p.to_account.starts_with("member:") && p.asset.starts_with("CPN:"))
            .filter_map(|p| match Account::parse(&p.from_account) {
                Some(Account::Campaign(campaign_id)) => Some(campaign_id),
                _ => None,
            })
            .collect();
        Ok(JournalColumns {
            metadata,
            postings,
            credits,
            debits,
            debit_amounts,
            unlimited_issues: unlimited_issues.into_iter().collect(),
        })
    }
}

/// The non-empty parts of a flush, parents before the rows that reference them.
fn flush_parts<'q, 'c: 'q>(
    changes: &'q ChangeSet,
    journal: &'q JournalColumns<'c>,
) -> Vec<Part<'q>> {
    let mut parts = Vec::new();
    if !changes.new_members.is_empty() {
        let rows = &changes.new_members;
        parts.push(Part::new("new_members", INSERT_MEMBERS, move |q| {
            bind_new_members(q, rows)
        }));
    }
    if !changes.changed_members.is_empty() {
        let rows = &changes.changed_members;
        parts.push(
            Part::new("changed_members", UPDATE_MEMBERS, move |q| {
                bind_changed_members(q, rows)
            })
            .counted(rows.len()),
        );
    }
    if !changes.new_identifiers.is_empty() {
        let rows = &changes.new_identifiers;
        parts.push(Part::new("new_identifiers", INSERT_IDENTIFIERS, move |q| {
            Ok(bind_identifiers(q, rows))
        }));
    }
    journal_parts(changes, journal, &mut parts);
    table_parts(changes, &mut parts);
    rule_parts(changes, &mut parts);
    report_parts(changes, &mut parts);
    let events = &changes.events;
    if !events.is_empty() {
        // The outbox: its rows commit with the ledger change they report, or not at all.
        parts.push(Part::new("new_events", events::INSERT_EVENTS, move |q| {
            Ok(events::bind_events(q, events))
        }));
    }
    parts
}

/// What the batch adds to the rules' counters (rows of members it locked) and to their
/// stores' days (under the rules' locks). Not counted: an upsert always writes its row.
fn rule_parts<'q>(changes: &'q ChangeSet, parts: &mut Vec<Part<'q>>) {
    let counters = &changes.rules.counters;
    if !counters.is_empty() {
        parts.push(Part::new("rule_counts", rules::UPSERT_COUNTERS, move |q| {
            Ok(rules::bind_counters(q, counters))
        }));
    }
    let days = &changes.rules.store_days;
    if !days.is_empty() {
        parts.push(Part::new("rule_days", rules::UPSERT_STORE_DAYS, move |q| {
            Ok(rules::bind_store_days(q, days))
        }));
    }
}

/// The visits (whose insert the visit summary counts) and the report summaries' upserts, in
/// the order of `reports::LOCK_SUMMARIES`. Not counted: an upsert always writes its row.
fn report_parts<'q>(changes: &'q ChangeSet, parts: &mut Vec<Part<'q>>) {
    let (sums, shard) = (&changes.report, changes.shard);
    if !sums.activity.is_empty() {
        parts.push(Part::new("activity", reports::ADD_ACTIVITY, move |q| {
            Ok(reports::bind_activity(q, shard, &sums.activity))
        }));
    }
    let visits = &changes.engagement.visits;
    if !visits.is_empty() {
        parts.push(Part::new("new_visits", reports::INSERT_VISITS, move |q| {
            Ok(reports::bind_visits(q, visits))
        }));
        parts.push(Part::new("visit_counts", reports::COUNT_VISITS, move |q| {
            Ok(q.bind(shard))
        }));
    }
    if !sums.coupons.is_empty() {
        parts.push(Part::new("coupon_sums", reports::ADD_COUPONS, move |q| {
            Ok(reports::bind_coupons(q, shard, &sums.coupons))
        }));
    }
    if !sums.redemptions.is_empty() {
        parts.push(Part::new(
            "redemptions",
            reports::ADD_REDEMPTIONS,
            move |q| Ok(reports::bind_redemptions(q, shard, &sums.redemptions)),
        ));
    }
    if !sums.redemption_times.is_empty() {
        parts.push(Part::new(
            "redemption_times",
            reports::ADD_REDEMPTION_TIMES,
            move |q| {
                Ok(reports::bind_redemption_times(
                    q,
                    shard,
                    &sums.redemption_times,
                ))
            },
        ));
    }
    if !sums.lots.is_empty() {
        parts.push(Part::new("lot_sums", reports::ADD_LOTS, move |q| {
            Ok(reports::bind_lots(q, shard, &sums.lots))
        }));
    }
}

fn journal_parts<'q, 'c: 'q>(
    changes: &'q ChangeSet,
    journal: &'q JournalColumns<'c>,
    parts: &mut Vec<Part<'q>>,
) {
    let transactions = &changes.transactions;
    if !transactions.is_empty() {
        parts.push(Part::new(
            "new_transactions",
            INSERT_TRANSACTIONS,
            move |q| {
                Ok(q.bind(column(transactions, |(id, _)| *id)) // $1
                    .bind(column(transactions, |(_, t)| t.kind)) // $2
                    .bind(column(transactions, |(_, t)| t.member_id.as_str())) // $3
                    .bind(column(transactions, |(_, t)| t.occurred_at)) // $4
                    .bind(column(transactions, |(_, t)| t.recorded_at)) // $5
                    .bind(column(transactions, |(_, t)| {
                        t.channel.map(Channel::as_str)
                    })) // $6
                    .bind(column(transactions, |(_, t)| t.store_id.as_str())) // $7
                    .bind(column(transactions, |(_, t)| t.order_id.as_str())) // $8
                    .bind(&journal.metadata)) // $9
            },
        ));
    }
    let postings = &journal.postings;
    if !postings.is_empty() {
        parts.push(Part::new("new_postings", INSERT_POSTINGS, move |q| {
            Ok(q.bind(column(postings, |(id, _, _)| *id)) // $1
                .bind(column(postings, |(_, no, _)| *no)) // $2
                .bind(column(postings, |(_, _, p)| p.from_account.as_str())) // $3
                .bind(column(postings, |(_, _, p)| p.to_account.as_str())) // $4
                .bind(column(postings, |(_, _, p)| p.asset.as_str())) // $5
                .bind(column(postings, |(_, _, p)| p.amount))) // $6
        }));
    }
    if !journal.credits.is_empty() {
        let credits = &journal.credits;
        parts.push(Part::new("credited", CREDIT_BALANCES, move |q| {
            Ok(q.bind(column(credits, |d| d.account.as_str())) // $1
                .bind(column(credits, |d| d.asset.as_str())) // $2
                .bind(column(credits, |d| d.amount))) // $3
        }));
    }
    if !journal.debits.is_empty() {
        let debits = &journal.debits;
        parts.push(
            Part::new("debited", DEBIT_BALANCES, move |q| {
                Ok(q.bind(column(debits, |d| d.account.as_str())) // $1
                    .bind(column(debits, |d| d.asset.as_str())) // $2
                    .bind(&journal.debit_amounts)) // $3
            })
            .counted(debits.len()),
        );
    }
    if !journal.unlimited_issues.is_empty() {
        let campaigns = &journal.unlimited_issues;
        parts.push(Part::finding_nothing(
            "limited_since",
            LIMITED_SINCE,
            move |q| Ok(q.bind(campaigns)), // $1
        ));
    }
}

fn table_parts<'q>(changes: &'q ChangeSet, parts: &mut Vec<Part<'q>>) {
    let (new, changed) = (&changes.new_lots, &changes.changed_lots);
    if !new.is_empty() {
        parts.push(Part::new("new_lots", INSERT_LOTS, move |q| {
            Ok(bind_lots(q, new))
        }));
    }
    if !changed.is_empty() {
        parts.push(
            Part::new("changed_lots", UPDATE_LOTS, move |q| {
                Ok(bind_lots(q, changed))
            })
            .counted(changed.len()),
        );
    }
    let (new, changed) = (&changes.new_orders, &changes.changed_orders);
    if !new.is_empty() {
        parts.push(Part::new("new_orders", INSERT_ORDERS, move |q| {
            bind_orders(q, new)
        }));
    }
    if !changed.is_empty() {
        parts.push(
            Part::new("changed_orders", UPDATE_ORDERS, move |q| {
                bind_orders(q, changed)
            })
            .counted(changed.len()),
        );
    }
    let (new, changed) = (&changes.new_order_lots, &changes.changed_order_lots);
    if !new.is_empty() {
        parts.push(Part::new("new_order_lots", INSERT_ORDER_LOTS, move |q| {
            Ok(bind_order_lots(q, new))
        }));
    }
    if !changed.is_empty() {
        parts.push(
            Part::new("changed_order_lots", UPDATE_ORDER_LOTS, move |q| {
                Ok(bind_order_lots(q, changed))
            })
            .counted(changed.len()),
        );
    }
    let (new, changed) = (&changes.new_coupons, &changes.changed_coupons);
    if !new.is_empty() {
        parts.push(Part::new("new_coupons", INSERT_COUPONS, move |q| {
            Ok(bind_coupons(q, new))
        }));
    }
    if !changed.is_empty() {
        parts.push(
            Part::new("changed_coupons", UPDATE_COUPONS, move |q| {
                Ok(bind_coupons(q, changed))
            })
            .counted(changed.len()),
        );
    }
    let outcomes = &changes.outcomes;
    if !outcomes.is_empty() {
        parts.push(Part::new("new_outcomes", INSERT_OUTCOMES, move |q| {
            Ok(bind_outcomes(q, outcomes))
        }));
    }
}

/// The flush statement for these parts, built once per shape (which parts a batch has) and
/// kept: a batch of sales has the same shape every time, and the text is the key of sqlx's
/// prepared-statement cache anyway.
fn flush_sql(parts: &[Part<'_>]) -> Arc<str> {
    static SHAPES: LazyLock<Mutex<HashMap<Vec<&'static str>, Arc<str>>>> =
        LazyLock::new(Mutex::default);
    let shape: Vec<&'static str> = parts.iter().map(|part| part.name).collect();
    let mut shapes = SHAPES.lock().unwrap_or_else(PoisonError::into_inner);
    shapes
        .entry(shape)
        .or_insert_with(|| combined_sql(parts).into())
        .clone()
}

/// `with <part> as (...), ... select <counts>`: each part's parameters renumbered after those
/// of the parts before it; a counted part returns a row per row it changed.
fn combined_sql(parts: &[Part<'_>]) -> String {
    let mut sql = String::from("with ");
    let mut offset = 0;
    let mut counts = Vec::new();
    for (i, part) in parts.iter().enumerate() {
        if i > 0 {
            sql.push_str(",\n");
        }
        sql.push_str(part.name);
        sql.push_str(" as (");
        sql.push_str(&renumbered(part.sql, offset));
        if part.expected_rows.is_some() {
            if !part.query {
                sql.push_str("\nreturning 1");
            }
            counts.push(format!("(select count(*) from {0}) as {0}", part.name));
        }
        sql.push_str("\n)");
        offset += parameter_count(part.sql);
    }
    sql.push_str("\nselect ");
    if counts.is_empty() {
        sql.push_str("1 as written");
    } else {
        sql.push_str(&counts.join(", "));
    }
    sql
}

/// The highest `$n` of a statement.
fn parameter_count(sql: &str) -> usize {
    parameters(sql).map(|(_, n)| n).max().unwrap_or(0)
}

/// `sql` with every `$n` made `$(n + offset)`.
fn renumbered(sql: &str, offset: usize) -> String {
    let mut out = String::with_capacity(sql.len() + 16);
    let mut rest = 0;
    for (at, n) in parameters(sql) {
        out.push_str(&sql[rest..at]);
        out.push_str(&format!("${}", n + offset));
        rest = at + 1 + n.to_string().len();
    }
    out.push_str(&sql[rest..]);
    out
}

/// Each `$n` of a statement: its byte offset and its number.
fn parameters(sql: &str) -> impl Iterator<Item = (usize, usize)> + '_ {
    sql.match_indices('$').filter_map(|(at, _)| {
        let digits: String = sql[at + 1..]
            .chars()
            .take_while(char::is_ascii_digit)
            .collect();
        digits.parse().ok().map(|n| (at, n))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameters_are_renumbered_after_the_parts_before() {
        let sql = "select $1::text[], $2, $10 from t where a = $2";
        assert_eq!(parameter_count(sql), 10);
        assert_eq!(
            renumbered(sql, 7),
            "select $8::text[], $9, $17 from t where a = $9"
        );
        assert_eq!(renumbered("select 1", 3), "select 1");
    }

    #[test]
    fn the_flush_statement_names_and_counts_its_parts() {
        let changes = ChangeSet {
            outcomes: vec![IdempotencyRecord {
                key_id: "k".into(),
                request_id: "r".into(),
                request_hash: "h".into(),
                outcome: "{}".into(),
                created_at: chrono::DateTime::UNIX_EPOCH,
            }],
            balance_deltas: vec![AccountTotal {
                account: "member:m".into(),
                asset: "PTS".into(),
                amount: -5,
            }],
            ..ChangeSet::default()
        };
        let journal = JournalColumns::of(&changes).expect("columns");
        let parts = flush_parts(&changes, &journal);
        let sql = combined_sql(&parts);
        assert!(
            sql.starts_with("with debited as (\nupdate balances"),
            "{sql}"
        );
        assert!(
            sql.contains("new_outcomes as (\ninsert into idempotency_keys"),
            "{sql}"
        );
        // The outcomes' parameters follow the debits' three.
        assert!(sql.contains("unnest($4::text[]"), "{sql}");
        assert!(
            sql.ends_with("select (select count(*) from debited) as debited"),
            "{sql}"
        );
    }
}
