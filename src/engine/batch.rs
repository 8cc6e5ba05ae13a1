//! A batch decided in memory. The writer gathers a batch of commands, reads everything they
//! touch with one [`UnitOfWork::load`], runs each command against an [`InMemory`] view of those
//! rows, and writes what the batch changed with one [`UnitOfWork::flush`] before it commits.
//!
//! [`InMemory`] is the only implementation of [`LedgerRows`], the row-level port the commands
//! are written against, so every business rule stays written once and the stores offer only
//! coarse primitives (load, reserve ids, flush) and row reads. Reads come from the loaded rows; a row the load did not
//! foresee (a campaign issuing on capture, the lot a refund restores) is read from the
//! database inside the same transaction and kept. Writes only change the rows in memory, each
//! logged with the value it replaced: a refused command is undone by rolling that log back (no
//! database savepoints), and a later command in the batch sees an earlier one's effects.

use std::collections::{HashMap, HashSet, VecDeque};
use std::hash::Hash;

use async_trait::async_trait;
use chrono::{DateTime, NaiveDate, Utc};
use chrono_tz::Tz;

use super::{rows::LedgerRows, writer::Job};
use crate::domain::{
    Account,
    command::{Command, MemberCommand},
    coupon::{Campaign, Coupon, CouponState},
    event::{self, BatchWrites, NewEvent},
    location::{GeoRule, IssueFacts, VisitRule},
    model::{Identifier, Lot, MemberRef, MemberRow, Order, OrderLot, Program, Store},
    ports::{
        AccountTotal, ChangeSet, EngagementChanges, GeoIssue, IdempotencyRecord, Keys, LedgerReads,
        Loaded, LocationRecord, MonthSpend, NewTransaction, Presence, RuleChanges, RuleCounter,
        RuleStoreDay, Sequence, StoreError, StoreResult, UnitOfWork, Visit, VisitIssue,
    },
    receipt::{
        ClaimHolder, ClaimWrite, ReceiptClaim, ReceiptRecord, ReceiptRule, ReceiptStatus,
        register_receipt_key,
    },
    rules::Rule,
    schedule::parse_time_zone,
    summary::{ReportSums, Tallies, activity_period},
};

/// A store's zone as the writer knows it (None: no store, or one it does not know yet).
pub type ZoneOf<'a> = &'a (dyn Fn(&str) -> Option<Tz> + Sync);

/// Ids reserved at a time when the ones reserved with the load run out (a command needed more
/// than its area's plan foresaw, see [`Plan::wants`]): few, so that ids stay close to dense.
const ID_BLOCK: usize = 4;

/// What a batch of commands will touch, as each command's area plans it: the keys to read
/// (and lock), and about how many new transactions and lots it writes (`Keys::wanted_ids`:
/// reserving them with the load saves the batch a round trip per sequence; a refusal leaves
/// its ids unused).
pub(super) struct Plan {
    keys: Keys,
    transactions: usize,
    lots: usize,
}

impl Plan {
    /// The command names this member, by id or identifier.
    pub fn member(&mut self, member: &MemberRef) {
        match member {
            MemberRef::Id(member_id) => self.keys.member_ids.push(member_id.clone()),
            MemberRef::Identifier(identifier) => self.keys.identifiers.push(identifier.clone()),
        }
    }

    /// The command usually writes this many new transactions and lots.
    pub fn wants(&mut self, transactions: usize, lots: usize) {
        self.transactions += transactions;
        self.lots += lots;
    }

    pub fn keys(&mut self) -> &mut Keys {
        &mut self.keys
    }
}

/// Whether a command runs in a batch of its own. A merge moves whole sets of rows (every lot,
/// coupon and identifier of a member), some of which the batch never reads: alone, no other
/// command of its batch can see those rows before they move. A rule's change locks its row
/// before the sales of its batch would lock the rules in rule_id order: alone, it never holds
/// one rule while waiting for another. An unlink or an erasure deletes rows (identifiers; an
/// erasure also the member's location history, which the batch never reads): alone, no other
/// command of its batch can link the identifier again or write to what is deleted.
pub(super) fn runs_alone(command: &Command) -> bool {
    matches!(
        command,
        Command::Members(
            MemberCommand::MergeMembers { .. }
                | MemberCommand::UnlinkIdentifier { .. }
                | MemberCommand::EraseMember { .. }
        ) | Command::Rules(_)
    )
}

/// What a batch of commands will touch.
pub(super) fn keys_of<'j>(jobs: impl IntoIterator<Item = &'j Job>) -> Keys {
    let mut plan = Plan {
        keys: Keys::default(),
        transactions: 0,
        lots: 0,
    };
    for job in jobs {
        if let Some(key) = &job.idempotency {
            let key = (key.key_id.clone(), key.request_id.clone());
            plan.keys.idempotency.push(key);
        }
        match &job.command {
            Command::Members(command) => command.plan(&mut plan),
            Command::Points(command) => command.plan(&mut plan),
            Command::Checkout(command) => command.plan(&mut plan),
            Command::Settings(_) => {}
            Command::Coupons(command) => command.plan(&mut plan),
            Command::Engagement(command) => command.plan(&mut plan),
            Command::Receipts(command) => command.plan(&mut plan),
            Command::Events(command) => command.plan(&mut plan),
            // A rule's lock and counters are read when the command runs.
            Command::Rules(_) => {}
        }
    }
    let mut keys = plan.keys;
    keys.wanted_ids = HashMap::from([
        (Sequence::Transactions, plan.transactions),
        (Sequence::Lots, plan.lots),
    ]);
    keys
}

/// Rows of one table as a batch sees them: `None` is a row known to be absent. Every write is
/// logged with what it replaced, so the writes after a mark can be undone.
#[derive(Debug)]
struct Table<K, V> {
    rows: HashMap<K, Option<V>>,
    log: Vec<(K, Option<Option<V>>)>,
}

impl<K, V> Default for Table<K, V> {
    fn default() -> Self {
        Self {
            rows: HashMap::new(),
            log: Vec::new(),
        }
    }
}

impl<K: Eq + Hash + Clone, V: Clone + PartialEq> Table<K, V> {
    /// `None`: not read yet; `Some(None)`: known absent.
    fn cached(&self, key: &K) -> Option<Option<&V>> {
        self.rows.get(key).map(Option::as_ref)
    }

    /// Keeps a row as read from the database; never replaces what the batch already has.
    fn fill(&mut self, key: K, row: Option<V>) {
        self.rows.entry(key).or_insert(row);
    }

    /// Forgets a row the batch only read, so that the next read goes to the database; a row
    /// the batch wrote stays.
    fn forget(&mut self, key: &K) {
        if !self.log.iter().any(|(logged, _)| logged == key) {
            self.rows.remove(key);
        }
    }

    /// Replaces a row read again under a lock, unless the batch has written it already.
    fn refill(&mut self, key: K, row: Option<V>) {
        if !self.log.iter().any(|(logged, _)| *logged == key) {
            self.rows.insert(key, row);
        }
    }

    fn put(&mut self, key: K, row: V) {
        let replaced = self.rows.insert(key.clone(), Some(row));
        self.log.push((key, replaced));
    }

    /// Marks a row deleted (known absent from now on).
    fn delete(&mut self, key: K) {
        let replaced = self.rows.insert(key.clone(), None);
        self.log.push((key, replaced));
    }

    /// Rows the batch deleted that were there when it read them.
    fn deleted(&self) -> Vec<&K> {
        let mut seen = HashSet::new();
        self.log
            .iter()
            .filter(|(key, _)| seen.insert(key))
            .filter(|(key, replaced)| {
                matches!(replaced, Some(Some(_))) && matches!(self.rows.get(key), Some(None))
            })
            .map(|(key, _)| key)
            .collect()
    }

    fn mark(&self) -> usize {
        self.log.len()
    }

    fn rollback(&mut self, mark: usize) {
        for (key, replaced) in self.log.drain(mark..).rev() {
            match replaced {
                Some(row) => self.rows.insert(key, row),
                None => self.rows.remove(&key),
            };
        }
    }

    fn present(&self) -> impl Iterator<Item = &V> {
        self.rows.values().flatten()
    }

    /// Rows the batch changed, in the order it first wrote them: (key, as read, as now).
    fn changes(&self) -> Vec<(&K, Option<&V>, &V)> {
        let mut seen = HashSet::new();
        self.log
            .iter()
            .filter(|(key, _)| seen.insert(key))
            .filter_map(|(key, replaced)| {
                let now = self.rows.get(key)?.as_ref()?;
                let before = replaced.as_ref().and_then(Option::as_ref);
                (before != Some(now)).then_some((key, before, now))
            })
            .collect()
    }

    /// (new rows, changed rows), cloned for a [`ChangeSet`].
    fn split_changes(&self) -> (Vec<V>, Vec<V>) {
        let mut new = Vec::new();
        let mut changed = Vec::new();
        for (_, before, now) in self.changes() {
            match before {
                None => new.push(now.clone()),
                Some(_) => changed.push(now.clone()),
            }
        }
        (new, changed)
    }
}

/// Where every table's log stood when a command began.
#[derive(Debug, Clone, Copy)]
struct Marks {
    outcomes: usize,
    identifiers: usize,
    member_identifiers: usize,
    members: usize,
    lots: usize,
    balances: usize,
    orders: usize,
    receipts: usize,
    order_lots: usize,
    coupons: usize,
    stores: usize,
    program: usize,
    campaigns: usize,
    public_codes: usize,
    merges: usize,
    erasures: usize,
    transactions: usize,
    events: usize,
    engagement: EngagementMarks,
    rules: RuleMarks,
    spent: usize,
}

type Receipt = (String, String, String);

/// The rows of a batch, as its commands have left them so far.
#[derive(Debug, Default)]
struct Rows {
    outcomes: Table<(String, String), IdempotencyRecord>,
    identifiers: Table<Identifier, String>,
    /// Every identifier of a member (the member's reply lists them).
    member_identifiers: Table<String, Vec<Identifier>>,
    members: Table<String, MemberRow>,
    /// Members and orders whose rows were read under a lock (a row read without one is read
    /// again when a command wants it locked).
    locked_members: HashSet<String>,
    locked_orders: HashSet<String>,
    locked_coupons: HashSet<String>,
    locked_campaigns: HashSet<String>,
    /// Guarded balances read under their row's lock (`LedgerReads::lock_balance`).
    locked_balances: HashSet<(String, String)>,
    lots: Table<i64, Lot>,
    /// Members all of whose live lots are in `lots`.
    lots_of: HashSet<String>,
    balances: Table<(String, String), i64>,
    /// Accounts all of whose stored balances are in `balances` (a missing asset is zero).
    complete_accounts: HashSet<String>,
    orders: Table<String, Order>,
    /// Who holds each register receipt (by `register_receipt_key`): one claim for sales and
    /// scans alike.
    receipts: Table<Receipt, ClaimHolder>,
    order_lots: Table<(String, i64), OrderLot>,
    /// Orders all of whose order lots are in `order_lots`.
    order_lots_of: HashSet<String>,
    coupons: Table<String, Coupon>,
    /// Orders all of whose coupons are in `coupons`.
    coupons_of: HashSet<String>,
    /// Members all of whose coupons are in `coupons`.
    coupons_of_member: HashSet<String>,
    stores: Table<String, Store>,
    program: Table<(), Program>,
    program_locked: bool,
    campaigns: Table<String, Campaign>,
    public_codes: Table<String, String>,
    /// (source, target) of the members merged.
    merges: Vec<(String, String)>,
    /// Members whose personal data the flush erases (`ChangeSet::erased_members`).
    erasures: Vec<String>,
    /// Coupons the database counted per (campaign, member or all); the batch's own new coupons
    /// are counted from `coupons`.
    stored_coupon_counts: HashMap<(String, Option<String>), i64>,
    transactions: Vec<(i64, NewTransaction)>,
    /// Events commands pushed themselves (those no written row reports, `domain::event`).
    events: Vec<NewEvent>,
    free_ids: HashMap<Sequence, VecDeque<i64>>,
    engagement: EngagementRows,
    rules: RuleRows,
    /// Members' monthly spend as read (from the month given on), and the batch's additions,
    /// which the flush adds to the stored rows (`domain::tier`).
    spend_read: HashMap<String, (NaiveDate, Vec<MonthSpend>)>,
    spent: Table<(String, NaiveDate), MonthSpend>,
}

impl Rows {
    fn from_loaded(keys: &Keys, loaded: Loaded) -> Rows {
        let mut rows = Rows::default();
        for record in loaded.idempotency {
            let key = (record.key_id.clone(), record.request_id.clone());
            rows.outcomes.fill(key, Some(record));
        }
        for key in &keys.idempotency {
            rows.outcomes.fill(key.clone(), None);
        }
        for (identifier, member_id) in loaded.identifiers {
            rows.identifiers.fill(identifier, Some(member_id));
        }
        for identifier in &keys.identifiers {
            rows.identifiers.fill(identifier.clone(), None);
        }
        for member in loaded.members {
            rows.lots_of.insert(member.member_id.clone());
            rows.locked_members.insert(member.member_id.clone());
            rows.members.fill(member.member_id.clone(), Some(member));
        }
        for member_id in &keys.member_ids {
            rows.members.fill(member_id.clone(), None);
        }
        for lot in loaded.lots {
            rows.lots.fill(lot.lot_id, Some(lot));
        }
        for balance in loaded.balances {
            rows.balances
                .fill((balance.account, balance.asset), Some(balance.amount));
        }
        rows.complete_accounts.extend(loaded.complete_accounts);
        for (sequence, ids) in loaded.reserved_ids {
            rows.free_ids.entry(sequence).or_default().extend(ids);
        }
        for order in loaded.orders {
            rows.locked_orders.insert(order.order_id.clone());
            rows.order_lots_of.insert(order.order_id.clone());
            rows.coupons_of.insert(order.order_id.clone());
            rows.orders.fill(order.order_id.clone(), Some(order));
        }
        for order_id in &keys.order_ids {
            if rows.orders.cached(order_id).is_none() {
                // No such order: nothing refers to it yet.
                rows.order_lots_of.insert(order_id.clone());
                rows.coupons_of.insert(order_id.clone());
                rows.orders.fill(order_id.clone(), None);
            }
        }
        for order_lot in loaded.order_lots {
            let key = (order_lot.order_id.clone(), order_lot.lot_id);
            rows.order_lots.fill(key, Some(order_lot));
        }
        for coupon in loaded.coupons {
            rows.locked_coupons.insert(coupon.code.clone());
            rows.coupons.fill(coupon.code.clone(), Some(coupon));
        }
        for code in &keys.coupon_codes {
            rows.coupons.fill(code.clone(), None);
        }
        for (receipt, order_id) in loaded.receipts {
            rows.receipts
                .fill(receipt, Some(ClaimHolder::Sale(order_id)));
        }
        for (receipt, receipt_id) in loaded.receipt_claims {
            rows.receipts
                .fill(receipt, Some(ClaimHolder::Scan(receipt_id)));
        }
        for receipt in &keys.receipts {
            rows.receipts.fill(receipt.clone(), None);
        }
        if keys.presence {
            for member_id in &rows.lots_of {
                rows.engagement.presence.fill(member_id.clone(), None);
            }
            for presence in loaded.presence {
                let member_id = presence.member_id.clone();
                rows.engagement.presence.refill(member_id, Some(presence));
            }
        }
        rows
    }

    fn marks(&self) -> Marks {
        Marks {
            outcomes: self.outcomes.mark(),
            identifiers: self.identifiers.mark(),
            member_identifiers: self.member_identifiers.mark(),
            members: self.members.mark(),
            lots: self.lots.mark(),
            balances: self.balances.mark(),
            orders: self.orders.mark(),
            receipts: self.receipts.mark(),
            order_lots: self.order_lots.mark(),
            coupons: self.coupons.mark(),
            stores: self.stores.mark(),
            program: self.program.mark(),
            campaigns: self.campaigns.mark(),
            public_codes: self.public_codes.mark(),
            merges: self.merges.len(),
            erasures: self.erasures.len(),
            transactions: self.transactions.len(),
            events: self.events.len(),
            engagement: self.engagement.marks(),
            rules: self.rules.marks(),
            spent: self.spent.mark(),
        }
    }

    fn rollback(&mut self, marks: Marks) {
        self.outcomes.rollback(marks.outcomes);
        self.identifiers.rollback(marks.identifiers);
        self.member_identifiers.rollback(marks.member_identifiers);
        self.members.rollback(marks.members);
        self.lots.rollback(marks.lots);
        self.balances.rollback(marks.balances);
        self.orders.rollback(marks.orders);
        self.receipts.rollback(marks.receipts);
        self.order_lots.rollback(marks.order_lots);
        self.coupons.rollback(marks.coupons);
        self.stores.rollback(marks.stores);
        self.program.rollback(marks.program);
        self.campaigns.rollback(marks.campaigns);
        self.public_codes.rollback(marks.public_codes);
        self.merges.truncate(marks.merges);
        self.erasures.truncate(marks.erasures);
        self.transactions.truncate(marks.transactions);
        self.events.truncate(marks.events);
        self.engagement.rollback(marks.engagement);
        self.rules.rollback(marks.rules);
        self.spent.rollback(marks.spent);
    }

    /// What the batch changed, for [`UnitOfWork::flush`].
    fn changes(&self, zone_of: ZoneOf<'_>) -> ChangeSet {
        debug_assert!(
            self.balances.present().all(|amount| *amount >= 0),
            "a guarded balance below zero reached the flush"
        );
        let (new_members, changed_members) = self.members.split_changes();
        let (new_lots, changed_lots) = self.lots.split_changes();
        let (new_orders, changed_orders) = self.orders.split_changes();
        let (new_order_lots, changed_order_lots) = self.order_lots.split_changes();
        let (new_coupons, changed_coupons) = self.coupons.split_changes();
        let (outcomes, _) = self.outcomes.split_changes();
        let (new_stores, _) = self.stores.split_changes();
        let (new_campaigns, changed_campaigns) = self.campaigns.split_changes();
        let program = self
            .program
            .changes()
            .into_iter()
            .map(|(_, _, program)| program.clone())
            .next();
        let new_identifiers = self
            .identifiers
            .changes()
            .into_iter()
            .filter(|(_, before, _)| before.is_none())
            .map(|(identifier, _, member_id)| (identifier.clone(), member_id.clone()))
            .collect();
        let mut balance_deltas: Vec<AccountTotal> = self
            .balances
            .changes()
            .into_iter()
            .map(|((account, asset), before, now)| AccountTotal {
                account: account.clone(),
                asset: asset.clone(),
                amount: now - before.copied().unwrap_or(0),
            })
            .filter(|delta| delta.amount != 0)
            .collect();
        balance_deltas.sort_by(|a, b| (&a.account, &a.asset).cmp(&(&b.account, &b.asset)));
        ChangeSet {
            new_stores,
            program,
            new_campaigns,
            changed_campaigns,
            merges: self.merges.clone(),
            erased_members: self.erasures.clone(),
            removed_identifiers: self.identifiers.deleted().into_iter().cloned().collect(),
            new_members,
            changed_members,
            new_identifiers,
            transactions: self.transactions.clone(),
            balance_deltas,
            new_lots,
            changed_lots,
            new_orders,
            changed_orders,
            new_order_lots,
            changed_order_lots,
            new_coupons,
            changed_coupons,
            outcomes,
            engagement: EngagementChanges {
                receipt_claims: self.claim_writes(),
                ..self.engagement.changes()
            },
            rules: self.rules.changes(),
            report: self.report_changes(zone_of),
            events: self.events_out(),
            shard: 0,
            member_spend: {
                let mut spent: Vec<MonthSpend> = self
                    .spent
                    .present()
                    .filter(|delta| delta.spend_e4 != 0)
                    .cloned()
                    .collect();
                spent.sort_by(|a, b| (&a.member_id, a.month).cmp(&(&b.member_id, b.month)));
                spent
            },
        }
    }

    /// The outbox rows of the batch: what its journal entries, coupons and receipts report,
    /// and what its commands pushed (`domain::event::events_of`, the one place events are
    /// made). A refused command's rows were rolled back, so it reports nothing.
    fn events_out(&self) -> Vec<NewEvent> {
        let coupons = self.coupons.changes();
        let receipts = self.engagement.receipts.changes();
        event::events_of(&BatchWrites {
            transactions: &self.transactions,
            coupons: coupons.into_iter().map(|(_, b, n)| (b, n)).collect(),
            receipts: receipts.into_iter().map(|(_, b, n)| (b, n)).collect(),
            pushed: &self.events,
        })
    }

    /// The register receipts the batch claimed: new claims, and scans' claims its sales took
    /// over (as read: a scan of this very batch was never stored, its sale's claim is new).
    fn claim_writes(&self) -> Vec<ClaimWrite> {
        self.receipts
            .changes()
            .into_iter()
            .map(|(key, before, holder)| {
                let taken_from = match (before, holder) {
                    (Some(ClaimHolder::Scan(receipt_id)), ClaimHolder::Sale(_)) => {
                        Some(receipt_id.clone())
                    }
                    (None, _) => None,
                    (Some(before), _) => {
                        debug_assert!(false, "claim {key:?} moved from {before:?} to {holder:?}");
                        tracing::error!(?key, ?before, ?holder, "a claim changed hands wrongly");
                        None
                    }
                };
                ClaimWrite {
                    key: key.clone(),
                    holder: holder.clone(),
                    taken_from,
                }
            })
            .collect()
    }

    /// The net change of the report summaries (`domain::summary`): each new journal entry and
    /// newly accepted receipt (less one a register sale took back), and contribution(as now) −
    /// contribution(as read) of each coupon and lot the batch changed.
    fn report_changes(&self, zone_of: ZoneOf<'_>) -> ReportSums {
        // A store this batch created or read is in `stores`; the others the writer knows.
        let zone = |store_id: &str| -> Option<Tz> {
            if store_id.is_empty() {
                return None;
            }
            match self.stores.cached(&store_id.to_string()) {
                Some(Some(store)) => parse_time_zone(&store.time_zone).ok(),
                _ => zone_of(store_id),
            }
        };
        let order = |order_id: &str| self.orders.cached(&order_id.to_string()).flatten();
        let mut tallies = Tallies::new();
        for (_, transaction) in &self.transactions {
            let order_total = match transaction.kind {
                "sale" | "capture" => {
                    let total = order(&transaction.order_id).map(|o| o.total.amount());
                    if total.is_none() {
                        tracing::error!(order_id = %transaction.order_id, "a sale's order is not in its batch: its total is left out of the activity summary");
                    }
                    total
                }
                _ => None,
            };
            let period = activity_period(zone(&transaction.store_id), transaction.occurred_at);
            tallies.transaction(transaction, order_total, period);
        }
        let channel = |coupon: &Coupon| {
            let channel = order(&coupon.order_id).map(|o| o.channel);
            if channel.is_none() && coupon.state == CouponState::Redeemed {
                tracing::error!(code = %coupon.code, order_id = %coupon.order_id, "a redeemed coupon's order is not in its batch: its channel is left out of the redemption summary");
            }
            channel
        };
        for (_, before, now) in self.coupons.changes() {
            if let Some(before) = before {
                tallies.coupon(before, channel(before), -1);
            }
            tallies.coupon(now, channel(now), 1);
        }
        for (_, before, now) in self.lots.changes() {
            if let Some(before) = before {
                tallies.lot(before, -1);
            }
            tallies.lot(now, 1);
        }
        for (_, before, now) in self.engagement.receipts.changes() {
            let was_accepted = before.is_some_and(|r| r.status == ReceiptStatus::Accepted);
            let is_accepted = now.status == ReceiptStatus::Accepted;
            if is_accepted != was_accepted {
                let sign = if is_accepted { 1 } else { -1 };
                let period = activity_period(zone(&now.receipt.store_id), now.receipt.issued_at);
                tallies.accepted_receipt(now, period, sign);
            }
        }
        tallies.finish()
    }
}

/// The engagement rows of a batch: reports and issues are only appended (a log
/// truncated on rollback); presence and visits are rows like the others.
#[derive(Debug, Default)]
struct EngagementRows {
    reports: Vec<LocationRecord>,
    presence: Table<String, Presence>,
    geo_issues: Vec<GeoIssue>,
    visits: Table<(String, String, NaiveDate), Visit>,
    visit_issues: Vec<VisitIssue>,
    receipts: Table<String, ReceiptRecord>,
    /// Which receipt holds each claim (None: known unclaimed).
    receipt_claims: Table<ReceiptClaim, String>,
}

#[derive(Debug, Clone, Copy)]
struct EngagementMarks {
    reports: usize,
    presence: usize,
    geo_issues: usize,
    visits: usize,
    visit_issues: usize,
    receipts: usize,
    receipt_claims: usize,
}

impl EngagementRows {
    fn marks(&self) -> EngagementMarks {
        EngagementMarks {
            reports: self.reports.len(),
            presence: self.presence.mark(),
            geo_issues: self.geo_issues.len(),
            visits: self.visits.mark(),
            visit_issues: self.visit_issues.len(),
            receipts: self.receipts.mark(),
            receipt_claims: self.receipt_claims.mark(),
        }
    }

    fn rollback(&mut self, marks: EngagementMarks) {
        self.reports.truncate(marks.reports);
        self.presence.rollback(marks.presence);
        self.geo_issues.truncate(marks.geo_issues);
        self.visits.rollback(marks.visits);
        self.visit_issues.truncate(marks.visit_issues);
        self.receipts.rollback(marks.receipts);
        self.receipt_claims.rollback(marks.receipt_claims);
    }

    fn changes(&self) -> EngagementChanges {
        let presence = self.presence.changes();
        let visits = self.visits.changes();
        let (new_receipts, changed_receipts) = self.receipts.split_changes();
        EngagementChanges {
            // Rules are rows of `rules` (RuleRows); these tables are only read, to adopt
            // what an older omo wrote there (`Engine::adopt_legacy_rules`).
            new_geo_rules: Vec::new(),
            new_visit_rules: Vec::new(),
            location_reports: self.reports.clone(),
            presence: presence
                .into_iter()
                .map(|(_, _, row)| row.clone())
                .collect(),
            geo_issues: self.geo_issues.clone(),
            // A visit is written once: a row read from the database is never new.
            visits: visits
                .into_iter()
                .filter(|(_, before, _)| before.is_none())
                .map(|(_, _, row)| row.clone())
                .collect(),
            visit_issues: self.visit_issues.clone(),
            new_receipt_rules: Vec::new(),
            new_receipts,
            changed_receipts,
            // The register receipts' claims are `Rows::receipts`, shared with the orders.
            receipt_claims: Vec::new(),
        }
    }

    /// Receipts this batch added for `member_id` since `since` that hold their claim.
    fn new_claiming_receipts(&self, member_id: &str, since: DateTime<Utc>) -> i64 {
        let added = self
            .receipts
            .changes()
            .into_iter()
            .filter(|(_, before, receipt)| {
                before.is_none()
                    && receipt.member_id == member_id
                    && receipt.submitted_at >= since
                    && receipt.claims()
            });
        i64::try_from(added.count()).unwrap_or(i64::MAX)
    }

    /// Facts of the database completed with the batch's own issues.
    fn geo_facts(
        &self,
        stored: IssueFacts,
        key: (&str, &str, &str),
        date: NaiveDate,
    ) -> IssueFacts {
        let (rule_id, member_id, store_id) = key;
        let mut facts = stored;
        for issue in self
            .geo_issues
            .iter()
            .filter(|issue| issue.rule_id == rule_id && issue.store_id == store_id)
        {
            if issue.local_date == date {
                facts.issued_today_at_store += 1;
            }
            if issue.member_id == member_id {
                facts.last_issued_at = facts.last_issued_at.max(Some(issue.issued_at));
            }
        }
        facts
    }
}

/// The rules of a batch and their counters (see `engine/rules.rs`). Counters are kept as read
/// (`counters`, `store_days`: only what a decision needed) and as the batch's additions
/// (`counted`, `counted_days`), which the flush adds to the stored rows: counting a firing
/// reads nothing.
#[derive(Debug, Default)]
struct RuleRows {
    rules: Table<String, Rule>,
    counters: Table<(String, String), RuleCounter>,
    store_days: Table<(String, String, NaiveDate), i64>,
    counted: Table<(String, String), RuleCounter>,
    counted_days: Table<(String, String, NaiveDate), RuleStoreDay>,
    /// Rules whose row lock the batch holds (kept on rollback: the lock is the transaction's).
    locked: HashSet<String>,
    /// The committed rules, as the batch first listed them (read once per batch).
    listed: Option<Vec<Rule>>,
}

#[derive(Debug, Clone, Copy)]
struct RuleMarks {
    rules: usize,
    counted: usize,
    counted_days: usize,
}

impl RuleRows {
    fn marks(&self) -> RuleMarks {
        RuleMarks {
            rules: self.rules.mark(),
            counted: self.counted.mark(),
            counted_days: self.counted_days.mark(),
        }
    }

    fn rollback(&mut self, marks: RuleMarks) {
        self.rules.rollback(marks.rules);
        self.counted.rollback(marks.counted);
        self.counted_days.rollback(marks.counted_days);
    }

    fn changes(&self) -> RuleChanges {
        let (new_rules, changed_rules) = self.rules.split_changes();
        RuleChanges {
            new_rules,
            changed_rules,
            counters: self.counted.present().cloned().collect(),
            store_days: self.counted_days.present().cloned().collect(),
        }
    }
}

/// The port as a batch's commands see it: rows in memory over the batch's database transaction.
pub(super) struct InMemory<'db> {
    db: &'db mut dyn UnitOfWork,
    rows: Rows,
    /// The open command's savepoint.
    savepoint: Option<Marks>,
    /// A command wrote program settings or a store (kept even if that command is undone:
    /// it only stops this batch from filling the reference cache).
    wrote_reference: bool,
    /// The writer the batch runs on (`LedgerReads::writer_seat`).
    seat: crate::domain::stock::Seat,
    /// Stock units the open command picked and has not booked (`LedgerReads::unbooked_draws`);
    /// emptied when a command begins and ends.
    unbooked: HashMap<String, i64>,
}

impl<'db> InMemory<'db> {
    pub fn new(
        db: &'db mut dyn UnitOfWork,
        keys: &Keys,
        loaded: Loaded,
        seat: crate::domain::stock::Seat,
    ) -> Self {
        Self {
            db,
            rows: Rows::from_loaded(keys, loaded),
            savepoint: None,
            wrote_reference: false,
            seat,
            unbooked: HashMap::new(),
        }
    }

    /// What the batch's commands changed, to flush; `zone_of` gives the stores' zones for the
    /// report summaries.
    pub fn changes(&self, zone_of: ZoneOf<'_>) -> ChangeSet {
        self.rows.changes(zone_of)
    }

    async fn next_id(&mut self, sequence: Sequence) -> StoreResult<i64> {
        let free = self.rows.free_ids.entry(sequence).or_default();
        if free.is_empty() {
            free.extend(self.db.reserve_ids(sequence, ID_BLOCK).await?);
        }
        free.pop_front()
            .ok_or_else(|| StoreError::Database(format!("no {sequence:?} id was reserved").into()))
    }

    /// A stored balance as the batch has it.
    async fn balance_of(&mut self, account: &str, asset: &str) -> StoreResult<i64> {
        let key = (account.to_string(), asset.to_string());
        if let Some(amount) = self.rows.balances.cached(&key) {
            return Ok(amount.copied().unwrap_or(0));
        }
        let amount = if self.rows.complete_accounts.contains(account) {
            0
        } else {
            self.db.balance(account, asset).await?
        };
        self.rows.balances.fill(key, Some(amount));
        Ok(amount)
    }

    /// Makes sure every live lot of a member is in memory.
    async fn load_lots_of(&mut self, member_id: &str) -> StoreResult<()> {
        if !self.rows.lots_of.contains(member_id) {
            for lot in self.db.member_lots(member_id).await? {
                self.rows.lots.fill(lot.lot_id, Some(lot));
            }
            self.rows.lots_of.insert(member_id.to_string());
        }
        Ok(())
    }

    /// Records that `from` merges into `to` (once), for the flush to move what the batch
    /// never read.
    fn note_merge(&mut self, from: &str, to: &str) {
        let merge = (from.to_string(), to.to_string());
        if !self.rows.merges.contains(&merge) {
            self.rows.merges.push(merge);
        }
    }

    async fn load_identifiers_of(&mut self, member_id: &str) -> StoreResult<Vec<Identifier>> {
        let key = member_id.to_string();
        if let Some(identifiers) = self.rows.member_identifiers.cached(&key) {
            return Ok(identifiers.cloned().unwrap_or_default());
        }
        let identifiers = self.db.identifiers(member_id).await?;
        self.rows
            .member_identifiers
            .fill(key, Some(identifiers.clone()));
        Ok(identifiers)
    }

    /// Who holds a register receipt (its `register_receipt_key`), read once a batch.
    async fn receipt_holder(&mut self, key: &Receipt) -> StoreResult<Option<ClaimHolder>> {
        if let Some(holder) = self.rows.receipts.cached(key) {
            return Ok(holder.cloned());
        }
        let (store_id, register_id, receipt_no) = key;
        let sale = self
            .db
            .order_by_receipt(store_id, register_id, receipt_no)
            .await?;
        let holder = match sale {
            Some(order_id) => Some(ClaimHolder::Sale(order_id)),
            None => {
                let claim = ReceiptClaim::Number {
                    store_id: store_id.clone(),
                    register_id: register_id.clone(),
                    receipt_no: receipt_no.clone(),
                };
                let scan = self.db.receipt_claimed_by(&claim).await?;
                scan.map(ClaimHolder::Scan)
            }
        };
        self.rows.receipts.fill(key.clone(), holder.clone());
        Ok(holder)
    }
}

#[async_trait]
impl LedgerReads for InMemory<'_> {
    fn shows_uncommitted_reference(&self) -> bool {
        self.wrote_reference
    }

    async fn find_idempotency(
        &mut self,
        key_id: &str,
        request_id: &str,
    ) -> StoreResult<Option<IdempotencyRecord>> {
        let key = (key_id.to_string(), request_id.to_string());
        if let Some(record) = self.rows.outcomes.cached(&key) {
            return Ok(record.cloned());
        }
        let record = self.db.find_idempotency(key_id, request_id).await?;
        self.rows.outcomes.fill(key, record.clone());
        Ok(record)
    }

    async fn load_program(&mut self, lock: bool) -> StoreResult<Option<Program>> {
        let cached = self
            .rows
            .program
            .cached(&())
            .map(|program| program.cloned());
        match cached {
            Some(program) if !lock || self.rows.program_locked => Ok(program),
            _ => {
                let program = self.db.load_program(lock).await?;
                self.rows.program_locked |= lock;
                self.rows.program.refill((), program);
                Ok(self.rows.program.cached(&()).flatten().cloned())
            }
        }
    }

    async fn get_store(&mut self, store_id: &str) -> StoreResult<Option<Store>> {
        let key = store_id.to_string();
        if let Some(store) = self.rows.stores.cached(&key) {
            return Ok(store.cloned());
        }
        let store = self.db.get_store(store_id).await?;
        self.rows.stores.fill(key, store.clone());
        Ok(store)
    }

    async fn list_stores(&mut self) -> StoreResult<Vec<Store>> {
        self.db.list_stores().await
    }

    async fn get_member(&mut self, member_id: &str, lock: bool) -> StoreResult<Option<MemberRow>> {
        let key = member_id.to_string();
        let cached = self.rows.members.cached(&key).map(|row| row.cloned());
        match cached {
            Some(row) if !lock || row.is_none() || self.rows.locked_members.contains(member_id) => {
                Ok(row)
            }
            _ => {
                let row = self.db.get_member(member_id, lock).await?;
                if lock {
                    self.rows.locked_members.insert(key.clone());
                }
                self.rows.members.refill(key.clone(), row);
                Ok(self.rows.members.cached(&key).flatten().cloned())
            }
        }
    }

    async fn member_by_identifier(
        &mut self,
        identifier: &Identifier,
    ) -> StoreResult<Option<String>> {
        if let Some(member_id) = self.rows.identifiers.cached(identifier) {
            return Ok(member_id.cloned());
        }
        let member_id = self.db.member_by_identifier(identifier).await?;
        self.rows
            .identifiers
            .fill(identifier.clone(), member_id.clone());
        Ok(member_id)
    }

    async fn identifiers(&mut self, member_id: &str) -> StoreResult<Vec<Identifier>> {
        self.load_identifiers_of(member_id).await
    }

    async fn balance(&mut self, account: &str, asset: &str) -> StoreResult<i64> {
        self.balance_of(account, asset).await
    }

    /// Reads the balance again under its lock, unless the batch holds the lock already or
    /// has written the balance (then it locked it first, or made its row). A balance of 0 may
    /// have no row, and `for update` locks no missing row: it is read again next time.
    async fn lock_balance(&mut self, account: &str, asset: &str) -> StoreResult<i64> {
        let key = (account.to_string(), asset.to_string());
        if !self.rows.locked_balances.contains(&key) {
            let stored = self.db.lock_balance(account, asset).await?;
            self.rows.balances.refill(key.clone(), Some(stored));
            if stored > 0 {
                self.rows.locked_balances.insert(key);
            }
        }
        self.balance_of(account, asset).await
    }

    fn writer_seat(&self) -> crate::domain::stock::Seat {
        self.seat
    }

    fn unbooked_draws(&self, account: &str) -> i64 {
        self.unbooked.get(account).copied().unwrap_or(0)
    }

    fn note_draw(&mut self, account: &str) {
        *self.unbooked.entry(account.to_string()).or_default() += 1;
    }

    async fn member_lots(&mut self, member_id: &str) -> StoreResult<Vec<Lot>> {
        self.load_lots_of(member_id).await?;
        let mut lots: Vec<Lot> = self
            .rows
            .lots
            .present()
            .filter(|lot| lot.member_id == member_id && lot.remaining_points > 0)
            .cloned()
            .collect();
        // As the stores order them: soonest expiry first, never-expiring last.
        lots.sort_by_key(|lot| (lot.expires_at.is_none(), lot.expires_at, lot.lot_id));
        Ok(lots)
    }

    async fn order_lots(&mut self, order_id: &str) -> StoreResult<Vec<OrderLot>> {
        if !self.rows.order_lots_of.contains(order_id) {
            for order_lot in self.db.order_lots(order_id).await? {
                let key = (order_lot.order_id.clone(), order_lot.lot_id);
                self.rows.order_lots.fill(key, Some(order_lot));
            }
            self.rows.order_lots_of.insert(order_id.to_string());
        }
        let mut order_lots: Vec<OrderLot> = self
            .rows
            .order_lots
            .present()
            .filter(|order_lot| order_lot.order_id == order_id)
            .cloned()
            .collect();
        order_lots.sort_by_key(|order_lot| order_lot.lot_id);
        Ok(order_lots)
    }

    async fn get_lot(&mut self, lot_id: i64) -> StoreResult<Option<Lot>> {
        if let Some(lot) = self.rows.lots.cached(&lot_id) {
            return Ok(lot.cloned());
        }
        let lot = self.db.get_lot(lot_id).await?;
        self.rows.lots.fill(lot_id, lot.clone());
        Ok(lot)
    }

    async fn get_order(&mut self, order_id: &str, lock: bool) -> StoreResult<Option<Order>> {
        let key = order_id.to_string();
        let cached = self.rows.orders.cached(&key).map(|row| row.cloned());
        match cached {
            Some(row) if !lock || row.is_none() || self.rows.locked_orders.contains(order_id) => {
                Ok(row)
            }
            _ => {
                let row = self.db.get_order(order_id, lock).await?;
                if lock {
                    self.rows.locked_orders.insert(key.clone());
                }
                self.rows.orders.refill(key.clone(), row);
                Ok(self.rows.orders.cached(&key).flatten().cloned())
            }
        }
    }

    async fn order_by_receipt(
        &mut self,
        store_id: &str,
        register_id: &str,
        receipt_no: &str,
    ) -> StoreResult<Option<String>> {
        let key = register_receipt_key(store_id, register_id, receipt_no);
        match self.receipt_holder(&key).await? {
            Some(ClaimHolder::Sale(order_id)) => Ok(Some(order_id)),
            _ => Ok(None),
        }
    }

    /// Exact only when the batch changed none of the member's orders: a merge runs alone in
    /// its batch ([`runs_alone`]).
    async fn member_has_open_orders(&mut self, member_id: &str) -> StoreResult<bool> {
        let open_here = self.rows.orders.present().any(|order| {
            order.member_id == member_id
                && order.state == crate::domain::model::OrderState::Authorized
        });
        Ok(open_here || self.db.member_has_open_orders(member_id).await?)
    }

    async fn get_campaign(
        &mut self,
        campaign_id: &str,
        lock: bool,
    ) -> StoreResult<Option<Campaign>> {
        let key = campaign_id.to_string();
        let cached = self.rows.campaigns.cached(&key).map(|row| row.cloned());
        match cached {
            Some(row)
                if !lock || row.is_none() || self.rows.locked_campaigns.contains(campaign_id) =>
            {
                Ok(row)
            }
            _ => {
                let row = self.db.get_campaign(campaign_id, lock).await?;
                if lock {
                    // Counts read before the lock may have changed since.
                    self.rows
                        .stored_coupon_counts
                        .retain(|(counted, _), _| counted != campaign_id);
                    self.rows.locked_campaigns.insert(key.clone());
                }
                self.rows.campaigns.refill(key.clone(), row);
                Ok(self.rows.campaigns.cached(&key).flatten().cloned())
            }
        }
    }

    async fn campaign_as_committed(&mut self, campaign_id: &str) -> StoreResult<Option<Campaign>> {
        let key = campaign_id.to_string();
        let row = self.db.get_campaign(campaign_id, false).await?;
        self.rows.campaigns.refill(key.clone(), row);
        Ok(self.rows.campaigns.cached(&key).flatten().cloned())
    }

    async fn campaign_by_public_code(
        &mut self,
        public_code: &str,
    ) -> StoreResult<Option<Campaign>> {
        let key = public_code.to_string();
        let campaign_id = match self.rows.public_codes.cached(&key) {
            Some(campaign_id) => campaign_id.cloned(),
            None => {
                let campaign = self.db.campaign_by_public_code(public_code).await?;
                let campaign_id = campaign.as_ref().map(|c| c.campaign_id.clone());
                if let Some(campaign) = campaign {
                    self.rows
                        .campaigns
                        .fill(campaign.campaign_id.clone(), Some(campaign));
                }
                self.rows.public_codes.fill(key, campaign_id.clone());
                campaign_id
            }
        };
        match campaign_id {
            Some(campaign_id) => self.get_campaign(&campaign_id, false).await,
            None => Ok(None),
        }
    }

    /// Campaigns committed so far: read for the reference cache, which must never hold a
    /// campaign whose batch may yet roll back.
    async fn list_campaigns(&mut self) -> StoreResult<Vec<Campaign>> {
        self.db.list_campaigns().await
    }

    async fn count_coupons(
        &mut self,
        campaign_id: &str,
        member_id: Option<&str>,
    ) -> StoreResult<i64> {
        let key = (campaign_id.to_string(), member_id.map(str::to_string));
        let stored = match self.rows.stored_coupon_counts.get(&key) {
            Some(count) => *count,
            None => {
                let count = self.db.count_coupons(campaign_id, member_id).await?;
                self.rows.stored_coupon_counts.insert(key, count);
                count
            }
        };
        let issued_here = self
            .rows
            .coupons
            .changes()
            .into_iter()
            .filter(|(_, before, coupon)| {
                before.is_none()
                    && coupon.campaign_id == campaign_id
                    && member_id.is_none_or(|member_id| coupon.member_id == member_id)
            })
            .count();
        Ok(stored + i64::try_from(issued_here).unwrap_or(i64::MAX))
    }

    async fn get_coupon(&mut self, code: &str, lock: bool) -> StoreResult<Option<Coupon>> {
        let key = code.to_string();
        let cached = self.rows.coupons.cached(&key).map(|row| row.cloned());
        match cached {
            Some(row) if !lock || row.is_none() || self.rows.locked_coupons.contains(code) => {
                Ok(row)
            }
            _ => {
                let row = self.db.get_coupon(code, lock).await?;
                if lock {
                    self.rows.locked_coupons.insert(key.clone());
                }
                self.rows.coupons.refill(key.clone(), row);
                Ok(self.rows.coupons.cached(&key).flatten().cloned())
            }
        }
    }

    async fn member_coupons(&mut self, member_id: &str) -> StoreResult<Vec<Coupon>> {
        if !self.rows.coupons_of_member.contains(member_id) {
            for coupon in self.db.member_coupons(member_id).await? {
                self.rows.coupons.fill(coupon.code.clone(), Some(coupon));
            }
            self.rows.coupons_of_member.insert(member_id.to_string());
        }
        let mut coupons: Vec<Coupon> = self
            .rows
            .coupons
            .present()
            .filter(|coupon| coupon.member_id == member_id)
            .cloned()
            .collect();
        coupons.sort_by(|a, b| (a.issued_at, &a.code).cmp(&(b.issued_at, &b.code)));
        Ok(coupons)
    }

    async fn order_coupons(&mut self, order_id: &str) -> StoreResult<Vec<Coupon>> {
        if !self.rows.coupons_of.contains(order_id) {
            for coupon in self.db.order_coupons(order_id).await? {
                self.rows.coupons.fill(coupon.code.clone(), Some(coupon));
            }
            self.rows.coupons_of.insert(order_id.to_string());
        }
        let mut coupons: Vec<Coupon> = self
            .rows
            .coupons
            .present()
            .filter(|coupon| coupon.order_id == order_id)
            .cloned()
            .collect();
        coupons.sort_by(|a, b| a.code.cmp(&b.code));
        Ok(coupons)
    }

    async fn count_stores(&mut self) -> StoreResult<i64> {
        self.db.count_stores().await
    }

    /// Rules committed so far: read for the reference cache, like `list_campaigns`.
    async fn list_geo_rules(&mut self) -> StoreResult<Vec<GeoRule>> {
        self.db.list_geo_rules().await
    }

    async fn list_visit_rules(&mut self) -> StoreResult<Vec<VisitRule>> {
        self.db.list_visit_rules().await
    }

    async fn presence(&mut self, member_id: &str) -> StoreResult<Option<Presence>> {
        let key = member_id.to_string();
        if let Some(presence) = self.rows.engagement.presence.cached(&key) {
            return Ok(presence.cloned());
        }
        let presence = self.db.presence(member_id).await?;
        self.rows.engagement.presence.fill(key, presence.clone());
        Ok(presence)
    }

    async fn geo_issue_facts(
        &mut self,
        rule_id: &str,
        member_id: &str,
        store_id: &str,
        local_date: NaiveDate,
    ) -> StoreResult<IssueFacts> {
        let stored = self
            .db
            .geo_issue_facts(rule_id, member_id, store_id, local_date)
            .await?;
        let key = (rule_id, member_id, store_id);
        Ok(self.rows.engagement.geo_facts(stored, key, local_date))
    }

    async fn member_visits(
        &mut self,
        member_id: &str,
        since: Option<NaiveDate>,
    ) -> StoreResult<Vec<Visit>> {
        let visits = &mut self.rows.engagement.visits;
        for visit in self.db.member_visits(member_id, since).await? {
            let key = (
                visit.member_id.clone(),
                visit.store_id.clone(),
                visit.visit_date,
            );
            visits.fill(key, Some(visit));
        }
        let mut found: Vec<Visit> = visits
            .present()
            .filter(|visit| visit.member_id == member_id)
            .filter(|visit| since.is_none_or(|since| visit.visit_date >= since))
            .cloned()
            .collect();
        found.sort_by(|a, b| (a.visit_date, &a.store_id).cmp(&(b.visit_date, &b.store_id)));
        Ok(found)
    }

    async fn list_receipt_rules(&mut self) -> StoreResult<Vec<ReceiptRule>> {
        self.db.list_receipt_rules().await
    }

    /// The committed rules (the reference cache's source), read once per batch; the batch's
    /// own are not listed.
    async fn list_rules(&mut self) -> StoreResult<Vec<Rule>> {
        if let Some(listed) = &self.rows.rules.listed {
            return Ok(listed.clone());
        }
        let listed = self.db.list_rules().await?;
        self.rows.rules.listed = Some(listed.clone());
        Ok(listed)
    }

    async fn get_rule(&mut self, rule_id: &str) -> StoreResult<Option<Rule>> {
        let key = rule_id.to_string();
        if let Some(rule) = self.rows.rules.rules.cached(&key) {
            return Ok(rule.cloned());
        }
        let rule = self.db.get_rule(rule_id).await?;
        self.rows.rules.rules.fill(key, rule.clone());
        Ok(rule)
    }

    /// Locks the rules not locked yet, and forgets what the batch read of them before the
    /// lock (their bodies, their stores' days, their budgets' balances unless the batch wrote
    /// them): a preview earlier in the batch may have read them unlocked.
    async fn lock_rules(&mut self, rule_ids: &[String]) -> StoreResult<Vec<Rule>> {
        let wanted: Vec<String> = rule_ids
            .iter()
            .filter(|id| !self.rows.rules.locked.contains(*id))
            .cloned()
            .collect();
        if !wanted.is_empty() {
            let locked = self.db.lock_rules(&wanted).await?;
            let rules = &mut self.rows.rules;
            rules
                .store_days
                .rows
                .retain(|(rule_id, _, _), _| !wanted.contains(rule_id));
            for rule_id in &wanted {
                let budget = (
                    Account::RuleBudget(rule_id.clone()).to_string(),
                    "PTS".to_string(),
                );
                self.rows.balances.forget(&budget);
                let body = locked.iter().find(|rule| &rule.rule_id == rule_id).cloned();
                rules.rules.refill(rule_id.clone(), body);
            }
            rules.locked.extend(wanted);
        }
        let mut bodies = Vec::with_capacity(rule_ids.len());
        for rule_id in rule_ids {
            bodies.extend(self.rows.rules.rules.cached(rule_id).flatten().cloned());
        }
        Ok(bodies)
    }

    async fn rule_counter(
        &mut self,
        rule_id: &str,
        member_id: &str,
    ) -> StoreResult<Option<RuleCounter>> {
        let key = (rule_id.to_string(), member_id.to_string());
        let stored = match self.rows.rules.counters.cached(&key) {
            Some(counter) => counter.cloned(),
            None => {
                let counter = self.db.rule_counter(rule_id, member_id).await?;
                self.rows.rules.counters.fill(key.clone(), counter.clone());
                counter
            }
        };
        let counted = self.rows.rules.counted.cached(&key).flatten();
        Ok(match (stored, counted) {
            (Some(stored), Some(counted)) => Some(stored.plus(counted)),
            (stored, counted) => stored.or_else(|| counted.cloned()),
        })
    }

    async fn rule_store_day(
        &mut self,
        rule_id: &str,
        store_id: &str,
        local_date: NaiveDate,
    ) -> StoreResult<i64> {
        let key = (rule_id.to_string(), store_id.to_string(), local_date);
        let stored = match self.rows.rules.store_days.cached(&key) {
            Some(fired) => fired.copied().unwrap_or(0),
            None => {
                let fired = self
                    .db
                    .rule_store_day(rule_id, store_id, local_date)
                    .await?;
                self.rows.rules.store_days.fill(key.clone(), Some(fired));
                fired
            }
        };
        let counted = self.rows.rules.counted_days.cached(&key).flatten();
        Ok(stored + counted.map_or(0, |day| day.fired))
    }

    async fn member_spend(
        &mut self,
        member_id: &str,
        from_month: NaiveDate,
    ) -> StoreResult<Vec<MonthSpend>> {
        let covered = self
            .rows
            .spend_read
            .get(member_id)
            .is_some_and(|(from, _)| *from <= from_month);
        if !covered {
            let rows = self.db.member_spend(member_id, from_month).await?;
            self.rows
                .spend_read
                .insert(member_id.to_string(), (from_month, rows));
        }
        let mut months: std::collections::BTreeMap<NaiveDate, i64> = Default::default();
        if let Some((_, rows)) = self.rows.spend_read.get(member_id) {
            for row in rows.iter().filter(|row| row.month >= from_month) {
                *months.entry(row.month).or_default() += row.spend_e4;
            }
        }
        for delta in self.rows.spent.present() {
            if delta.member_id == member_id && delta.month >= from_month {
                *months.entry(delta.month).or_default() += delta.spend_e4;
            }
        }
        Ok(months
            .into_iter()
            .map(|(month, spend_e4)| MonthSpend {
                member_id: member_id.to_string(),
                month,
                spend_e4,
            })
            .collect())
    }

    async fn has_captured_order(&mut self, member_id: &str) -> StoreResult<bool> {
        let captured_here = self
            .rows
            .orders
            .present()
            .any(|order| order.member_id == member_id && order.is_captured());
        if captured_here {
            return Ok(true);
        }
        self.db.has_captured_order(member_id).await
    }

    async fn get_receipt(
        &mut self,
        receipt_id: &str,
        lock: bool,
    ) -> StoreResult<Option<ReceiptRecord>> {
        let key = receipt_id.to_string();
        if let Some(receipt) = self.rows.engagement.receipts.cached(&key) {
            return Ok(receipt.cloned());
        }
        let receipt = self.db.get_receipt(receipt_id, lock).await?;
        self.rows.engagement.receipts.fill(key, receipt.clone());
        Ok(receipt)
    }

    async fn receipt_claimed_by(&mut self, claim: &ReceiptClaim) -> StoreResult<Option<String>> {
        if let ReceiptClaim::Number {
            store_id,
            register_id,
            receipt_no,
        } = claim
        {
            // Keyed again: a claim written out by hand is found all the same.
            let key = register_receipt_key(store_id, register_id, receipt_no);
            return match self.receipt_holder(&key).await? {
                Some(ClaimHolder::Scan(receipt_id)) => Ok(Some(receipt_id)),
                _ => Ok(None),
            };
        }
        if let Some(receipt_id) = self.rows.engagement.receipt_claims.cached(claim) {
            return Ok(receipt_id.cloned());
        }
        let receipt_id = self.db.receipt_claimed_by(claim).await?;
        let claims = &mut self.rows.engagement.receipt_claims;
        claims.fill(claim.clone(), receipt_id.clone());
        Ok(receipt_id)
    }

    async fn count_member_receipts(
        &mut self,
        member_id: &str,
        since: DateTime<Utc>,
    ) -> StoreResult<i64> {
        let stored = self.db.count_member_receipts(member_id, since).await?;
        let here = self.rows.engagement.new_claiming_receipts(member_id, since);
        Ok(stored + here)
    }

    async fn last_visit_issue(
        &mut self,
        rule_id: &str,
        member_id: &str,
    ) -> StoreResult<Option<NaiveDate>> {
        let stored = self.db.last_visit_issue(rule_id, member_id).await?;
        let here = self
            .rows
            .engagement
            .visit_issues
            .iter()
            .filter(|issue| issue.rule_id == rule_id && issue.member_id == member_id)
            .map(|issue| issue.issued_on)
            .max();
        Ok(stored.max(here))
    }
}

#[async_trait]
impl LedgerRows for InMemory<'_> {
    async fn savepoint(&mut self) -> StoreResult<()> {
        self.unbooked.clear();
        self.savepoint = Some(self.rows.marks());
        Ok(())
    }

    async fn rollback_to_savepoint(&mut self) -> StoreResult<()> {
        let marks = self
            .savepoint
            .ok_or_else(|| StoreError::Database("no savepoint to roll back to".into()))?;
        self.rows.rollback(marks);
        Ok(())
    }

    async fn release_savepoint(&mut self) -> StoreResult<()> {
        self.unbooked.clear();
        self.savepoint = None;
        Ok(())
    }

    async fn insert_idempotency(&mut self, record: &IdempotencyRecord) -> StoreResult<()> {
        let key = (record.key_id.clone(), record.request_id.clone());
        self.rows.outcomes.put(key, record.clone());
        Ok(())
    }

    async fn save_program(&mut self, program: &Program) -> StoreResult<()> {
        self.rows.program.put((), program.clone());
        self.wrote_reference = true;
        Ok(())
    }

    /// Written at once: a row of default settings is what no row means already, and it gives
    /// concurrent first updates a row to lock, so that they compose.
    async fn ensure_program(&mut self, program: &Program) -> StoreResult<()> {
        if self.rows.program.cached(&()).flatten().is_none() {
            self.db.ensure_program(program).await?;
        }
        Ok(())
    }

    async fn insert_store(&mut self, store: &Store) -> StoreResult<()> {
        self.rows.stores.put(store.store_id.clone(), store.clone());
        self.wrote_reference = true;
        Ok(())
    }

    async fn insert_member(&mut self, member: &MemberRow) -> StoreResult<()> {
        let member_id = member.member_id.clone();
        // A new member has nothing stored yet.
        self.rows.lots_of.insert(member_id.clone());
        for account in [
            Account::Member(member_id.clone()),
            Account::MemberPending(member_id.clone()),
        ] {
            self.rows.complete_accounts.insert(account.to_string());
        }
        self.rows.locked_members.insert(member_id.clone());
        self.rows
            .member_identifiers
            .put(member_id.clone(), Vec::new());
        self.rows.members.put(member_id, member.clone());
        Ok(())
    }

    async fn update_member(&mut self, member: &MemberRow) -> StoreResult<()> {
        self.rows
            .members
            .put(member.member_id.clone(), member.clone());
        Ok(())
    }

    async fn insert_identifier(
        &mut self,
        member_id: &str,
        identifier: &Identifier,
    ) -> StoreResult<()> {
        let mut identifiers = self.load_identifiers_of(member_id).await?;
        identifiers.push(identifier.clone());
        identifiers.sort();
        self.rows
            .member_identifiers
            .put(member_id.to_string(), identifiers);
        self.rows
            .identifiers
            .put(identifier.clone(), member_id.to_string());
        Ok(())
    }

    async fn remove_identifier(
        &mut self,
        member_id: &str,
        identifier: &Identifier,
    ) -> StoreResult<()> {
        let mut identifiers = self.load_identifiers_of(member_id).await?;
        identifiers.retain(|kept| kept != identifier);
        self.rows
            .member_identifiers
            .put(member_id.to_string(), identifiers);
        // Listed among the member's, so stored under it (unless this batch linked it, which
        // `fill` keeps): the delete must see a row to delete.
        let identifiers = &mut self.rows.identifiers;
        identifiers.fill(identifier.clone(), Some(member_id.to_string()));
        identifiers.delete(identifier.clone());
        Ok(())
    }

    async fn erase_personal_data(&mut self, member_id: &str) -> StoreResult<()> {
        if !self.rows.erasures.iter().any(|erased| erased == member_id) {
            self.rows.erasures.push(member_id.to_string());
        }
        Ok(())
    }

    async fn move_identifiers(&mut self, from: &str, to: &str) -> StoreResult<()> {
        let moving = self.load_identifiers_of(from).await?;
        let mut staying = self.load_identifiers_of(to).await?;
        for identifier in &moving {
            // Stored under `from`: a row to move, not a new one to insert.
            let identifiers = &mut self.rows.identifiers;
            identifiers.fill(identifier.clone(), Some(from.to_string()));
            identifiers.put(identifier.clone(), to.to_string());
        }
        staying.extend(moving);
        staying.sort();
        self.rows.member_identifiers.put(to.to_string(), staying);
        self.rows
            .member_identifiers
            .put(from.to_string(), Vec::new());
        self.note_merge(from, to);
        Ok(())
    }

    async fn fence_coupon_issues(&mut self) -> StoreResult<()> {
        self.db.fence_coupon_issues().await
    }

    async fn append_transaction(&mut self, transaction: &NewTransaction) -> StoreResult<i64> {
        // Each posting moves a positive amount between two accounts, so every transaction
        // balances per asset by construction; a posting that does not is a bug upstream.
        if let Some(posting) = transaction
            .postings
            .iter()
            .find(|p| p.amount <= 0 || p.from_account == p.to_account)
        {
            return Err(StoreError::Database(
                format!(
                    "a {} transaction has a malformed posting: {posting:?}",
                    transaction.kind
                )
                .into(),
            ));
        }
        // Every guarded balance the postings change, as it will stand; none may go below zero.
        let mut balances: Vec<((String, String), i64)> = Vec::new();
        for posting in &transaction.postings {
            for (account, sign) in [(&posting.from_account, -1), (&posting.to_account, 1)] {
                if !Account::is_guarded_name(account) {
                    continue;
                }
                let key = (account.clone(), posting.asset.clone());
                let at = match balances.iter().position(|(k, _)| *k == key) {
                    Some(at) => at,
                    None => {
                        let stored = self.balance_of(account, &posting.asset).await?;
                        balances.push((key, stored));
                        balances.len() - 1
                    }
                };
                balances[at].1 += sign * posting.amount;
            }
        }
        if let Some(((account, asset), _)) = balances.iter().find(|(_, amount)| *amount < 0) {
            return Err(StoreError::Database(
                format!("the {asset} balance of {account} would go below zero").into(),
            ));
        }
        let transaction_id = self.next_id(Sequence::Transactions).await?;
        for (key, amount) in balances {
            self.rows.balances.put(key, amount);
        }
        for posting in &transaction.postings {
            if let Some(picked) = self.unbooked.get_mut(&posting.from_account) {
                *picked = (*picked - posting.amount).max(0);
            }
        }
        self.rows
            .transactions
            .push((transaction_id, transaction.clone()));
        Ok(transaction_id)
    }

    fn push_event(&mut self, event: NewEvent) {
        self.rows.events.push(event);
    }

    async fn insert_lot(&mut self, lot: &Lot) -> StoreResult<i64> {
        let lot_id = self.next_id(Sequence::Lots).await?;
        let lot = Lot {
            lot_id,
            ..lot.clone()
        };
        self.rows.lots.put(lot_id, lot);
        Ok(lot_id)
    }

    async fn update_lot(&mut self, lot: &Lot) -> StoreResult<()> {
        self.rows.lots.put(lot.lot_id, lot.clone());
        Ok(())
    }

    async fn move_lots(&mut self, from: &str, to: &str) -> StoreResult<()> {
        // The spent lots of `from` stay unread: the flush moves them too.
        self.load_lots_of(from).await?;
        let moving: Vec<Lot> = self
            .rows
            .lots
            .present()
            .filter(|lot| lot.member_id == from)
            .cloned()
            .collect();
        for lot in moving {
            let lot_id = lot.lot_id;
            let lot = Lot {
                member_id: to.to_string(),
                ..lot
            };
            self.rows.lots.put(lot_id, lot);
        }
        self.note_merge(from, to);
        Ok(())
    }

    async fn insert_order_lot(&mut self, order_lot: &OrderLot) -> StoreResult<()> {
        let key = (order_lot.order_id.clone(), order_lot.lot_id);
        self.rows.order_lots.put(key, order_lot.clone());
        Ok(())
    }

    async fn update_order_lot(&mut self, order_lot: &OrderLot) -> StoreResult<()> {
        self.insert_order_lot(order_lot).await
    }

    async fn insert_order(&mut self, order: &Order) -> StoreResult<()> {
        let order_id = order.order_id.clone();
        if !order.receipt_no.is_empty() {
            let key = register_receipt_key(&order.store_id, &order.register_id, &order.receipt_no);
            self.rows
                .receipts
                .put(key, ClaimHolder::Sale(order_id.clone()));
        }
        // A new order has no lots, coupons or hold yet.
        self.rows.order_lots_of.insert(order_id.clone());
        self.rows.coupons_of.insert(order_id.clone());
        self.rows
            .complete_accounts
            .insert(Account::Hold(order_id.clone()).to_string());
        self.rows.locked_orders.insert(order_id.clone());
        self.rows.orders.put(order_id, order.clone());
        Ok(())
    }

    async fn update_order(&mut self, order: &Order) -> StoreResult<()> {
        self.rows.orders.put(order.order_id.clone(), order.clone());
        Ok(())
    }

    async fn save_rule(&mut self, rule: &Rule) -> StoreResult<()> {
        self.rows
            .rules
            .rules
            .put(rule.rule_id.clone(), rule.clone());
        Ok(())
    }

    async fn count_rule(&mut self, delta: &RuleCounter) -> StoreResult<()> {
        let key = (delta.rule_id.clone(), delta.member_id.clone());
        let counted = match self.rows.rules.counted.cached(&key).flatten() {
            Some(counted) => counted.plus(delta),
            None => delta.clone(),
        };
        self.rows.rules.counted.put(key, counted);
        Ok(())
    }

    async fn add_spend(&mut self, delta: &MonthSpend) -> StoreResult<()> {
        let key = (delta.member_id.clone(), delta.month);
        let sum = self
            .rows
            .spent
            .cached(&key)
            .flatten()
            .map_or(0, |d| d.spend_e4);
        self.rows.spent.put(
            key,
            MonthSpend {
                spend_e4: sum + delta.spend_e4,
                ..delta.clone()
            },
        );
        Ok(())
    }

    async fn count_rule_day(&mut self, delta: &RuleStoreDay) -> StoreResult<()> {
        let key = (
            delta.rule_id.clone(),
            delta.store_id.clone(),
            delta.local_date,
        );
        let fired = self.rows.rules.counted_days.cached(&key).flatten();
        let counted = RuleStoreDay {
            fired: fired.map_or(0, |day| day.fired) + delta.fired,
            ..delta.clone()
        };
        self.rows.rules.counted_days.put(key, counted);
        Ok(())
    }

    async fn insert_campaign(&mut self, campaign: &Campaign) -> StoreResult<()> {
        if let Some(code) = &campaign.public_code {
            self.rows
                .public_codes
                .put(code.clone(), campaign.campaign_id.clone());
        }
        self.rows
            .campaigns
            .put(campaign.campaign_id.clone(), campaign.clone());
        Ok(())
    }

    async fn update_campaign(&mut self, campaign: &Campaign) -> StoreResult<()> {
        self.rows
            .campaigns
            .put(campaign.campaign_id.clone(), campaign.clone());
        Ok(())
    }

    async fn insert_coupon(&mut self, coupon: &Coupon) -> StoreResult<()> {
        self.rows.locked_coupons.insert(coupon.code.clone());
        self.rows.coupons.put(coupon.code.clone(), coupon.clone());
        Ok(())
    }

    async fn update_coupon(&mut self, coupon: &Coupon) -> StoreResult<()> {
        self.rows.coupons.put(coupon.code.clone(), coupon.clone());
        Ok(())
    }

    async fn move_coupons(&mut self, from: &str, to: &str) -> StoreResult<()> {
        for coupon in self.member_coupons(from).await? {
            let code = coupon.code.clone();
            let coupon = Coupon {
                member_id: to.to_string(),
                ..coupon
            };
            self.rows.coupons.put(code, coupon);
        }
        self.note_merge(from, to);
        Ok(())
    }

    async fn insert_location_report(&mut self, report: &LocationRecord) -> StoreResult<()> {
        self.rows.engagement.reports.push(report.clone());
        Ok(())
    }

    async fn save_presence(&mut self, presence: &Presence) -> StoreResult<()> {
        let key = presence.member_id.clone();
        self.rows.engagement.presence.put(key, presence.clone());
        Ok(())
    }

    async fn insert_geo_issue(&mut self, issue: &GeoIssue) -> StoreResult<()> {
        self.rows.engagement.geo_issues.push(issue.clone());
        Ok(())
    }

    async fn insert_visit(&mut self, visit: &Visit) -> StoreResult<()> {
        let key = (
            visit.member_id.clone(),
            visit.store_id.clone(),
            visit.visit_date,
        );
        if self.rows.engagement.visits.cached(&key).flatten().is_none() {
            self.rows.engagement.visits.put(key, visit.clone());
        }
        Ok(())
    }

    /// A new receipt claims its number and photograph if it earns or may earn. (Its later
    /// updates claim nothing anew: a review keeps the claims, a register sale takes the number.)
    async fn insert_receipt(&mut self, receipt: &ReceiptRecord) -> StoreResult<()> {
        if receipt.claims() {
            let receipt_id = receipt.receipt_id.clone();
            for claim in ReceiptClaim::of(&receipt.receipt) {
                match claim {
                    ReceiptClaim::Number {
                        store_id,
                        register_id,
                        receipt_no,
                    } => {
                        let key = (store_id, register_id, receipt_no);
                        let holder = ClaimHolder::Scan(receipt_id.clone());
                        self.rows.receipts.put(key, holder);
                    }
                    image => {
                        let claims = &mut self.rows.engagement.receipt_claims;
                        claims.put(image, receipt_id.clone());
                    }
                }
            }
        }
        self.update_receipt(receipt).await
    }

    async fn update_receipt(&mut self, receipt: &ReceiptRecord) -> StoreResult<()> {
        let key = receipt.receipt_id.clone();
        self.rows.engagement.receipts.put(key, receipt.clone());
        Ok(())
    }

    async fn insert_visit_issue(&mut self, issue: &VisitIssue) -> StoreResult<()> {
        self.rows.engagement.visit_issues.push(issue.clone());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use chrono::{DateTime, Utc};

    use super::*;

    #[test]
    fn a_table_undoes_writes_after_a_mark() {
        let mut table: Table<&str, i64> = Table::default();
        table.fill("a", Some(1));
        table.fill("b", None);
        table.put("a", 2);
        let mark = table.mark();
        table.put("a", 3);
        table.put("b", 10);
        table.put("c", 20);
        table.rollback(mark);
        assert_eq!(table.cached(&"a"), Some(Some(&2)));
        assert_eq!(table.cached(&"b"), Some(None));
        assert_eq!(table.cached(&"c"), None);
        // What was read stays read: a fill after the mark is no write to undo.
        assert_eq!(table.changes(), vec![(&"a", Some(&1), &2)]);
    }

    #[test]
    fn a_fill_never_hides_a_write() {
        let mut table: Table<&str, i64> = Table::default();
        table.put("a", 5);
        table.fill("a", Some(1));
        table.refill("a", Some(1));
        assert_eq!(table.cached(&"a"), Some(Some(&5)));
        assert_eq!(table.split_changes(), (vec![5], vec![]));
    }

    #[test]
    fn a_row_written_back_to_what_was_read_is_no_change() {
        let mut table: Table<&str, i64> = Table::default();
        table.fill("a", Some(1));
        table.put("a", 2);
        table.put("a", 1);
        assert!(table.changes().is_empty());
    }

    #[test]
    fn balance_changes_flush_as_sorted_net_deltas() {
        let mut rows = Rows::default();
        let key = |account: &str| (account.to_string(), "PTS".to_string());
        rows.balances.fill(key("member:b"), Some(100));
        rows.balances.put(key("member:b"), 40);
        rows.balances.put(key("hold:o"), 60);
        rows.balances.put(key("member:a"), 7);
        rows.balances.put(key("member:a"), 0);
        let deltas: Vec<(String, i64)> = rows
            .changes(&|_| None)
            .balance_deltas
            .into_iter()
            .map(|delta| (delta.account, delta.amount))
            .collect();
        assert_eq!(deltas, [("hold:o".into(), 60), ("member:b".into(), -60)]);
    }

    #[test]
    fn a_rolled_back_command_leaves_nothing_to_flush() {
        let mut rows = Rows::default();
        let before = rows.marks();
        rows.balances.put(("member:a".into(), "PTS".into()), 5);
        rows.orders.fill("o".into(), None);
        rows.transactions.push((1, sample_transaction()));
        rows.rollback(before);
        assert!(rows.changes(&|_| None).is_empty());
    }

    fn sample_transaction() -> NewTransaction {
        NewTransaction {
            kind: "adjust",
            member_id: "a".into(),
            occurred_at: DateTime::<Utc>::MIN_UTC,
            recorded_at: DateTime::<Utc>::MIN_UTC,
            channel: None,
            store_id: String::new(),
            order_id: String::new(),
            postings: Vec::new(),
            metadata: Vec::new(),
        }
    }
}

#[cfg(test)]
mod reference_tests {
    use super::*;
    use crate::domain::ports::Store as _;
    use crate::{engine::reference::Reference, store::sqlite::SqliteStore};

    /// Settings a batch saved answer that batch, and stay out of the shared cache until they
    /// are committed (the batch may still roll back).
    #[tokio::test]
    async fn a_batch_never_caches_what_it_has_not_committed() {
        let store = SqliteStore::connect("sqlite::memory:").await.expect("open");
        let reference = Reference::default();
        let changed = Program {
            hold_ttl_seconds: 60,
            ..Program::default()
        };

        let mut uow = store.begin().await.expect("begin");
        let mut batch = InMemory::new(
            uow.as_mut(),
            &Keys::default(),
            Loaded::default(),
            Default::default(),
        );
        batch.save_program(&changed).await.expect("save");
        let seen = reference.program(&mut batch).await.expect("program");
        assert_eq!(seen.hold_ttl_seconds, 60);
        drop(batch);
        drop(uow); // rolled back

        let mut uow = store.begin().await.expect("begin");
        let seen = reference.program(uow.as_mut()).await.expect("program");
        assert_eq!(seen.hold_ttl_seconds, Program::default().hold_ttl_seconds);
    }
}
