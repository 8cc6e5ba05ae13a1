//! The storage port: what the engine needs from a database, owned by the domain.
//!
//! A [`Store`] opens units of work; a [`UnitOfWork`] is one database transaction, and a coarse
//! one. The engine's writer loads everything a batch of commands touches in one call
//! ([`UnitOfWork::load`]), decides every command against those rows in memory (the engine's
//! `LedgerRows`, where a refused command is undone in memory, with no database savepoint), and
//! writes what the batch changed with one [`UnitOfWork::flush`] before it commits. Backends
//! implement only these primitives and the row reads of [`LedgerReads`]; every business rule
//! lives in the engine and the domain, written once.

use std::collections::HashMap;

use async_trait::async_trait;
use chrono::{DateTime, NaiveDate, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use super::{
    auth::Role,
    coupon::{Campaign, Coupon},
    location::{Fix, GeoRule, IssueFacts, RejectReason, VisitRule, VisitRun},
    model::{
        Channel, Identifier, LatLng, Lot, MemberRow, Order, OrderLot, Posting, Program,
        Store as RetailStore, Transaction,
    },
    receipt::{ReceiptClaim, ReceiptRecord, ReceiptRule, ReceiptStatus},
    rules::Rule,
    seal::Seal,
    session::DashboardSession,
    summary::{CouponTally, RedemptionTally, ReportSums},
    webhook::{Delivery, DeliveryState, WebhookRecord},
};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Serialization failure, deadlock, lock timeout or a lost insert race: the whole unit of
    /// work is rolled back and may be retried.
    #[error("transient conflict: {0}")]
    Conflict(String),
    /// No database connection became free in time (the pool is exhausted or the server is
    /// unreachable): nothing was done, and the client may retry later.
    #[error("database unavailable: {0}")]
    Unavailable(String),
    /// The connection broke under the unit of work (reset, session terminated, server shutting
    /// down or restarting): it is lost and may be run again on a new connection. Broken during
    /// COMMIT, it may have committed all the same.
    #[error("database connection lost: {0}")]
    ConnectionLost(String),
    #[error("database error: {0}")]
    Database(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// A stored value the domain cannot read back (an invariant broke outside omo).
    #[error("corrupt row: {0}")]
    Corrupt(String),
}

pub type StoreResult<T> = Result<T, StoreError>;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiKeyRecord {
    pub key_id: String,
    pub key_hash: String,
    pub role: Role,
    pub store_id: Option<String>,
    pub name: String,
    pub created_at: DateTime<Utc>,
    /// After this instant the key is refused; None: it does not expire.
    pub expires_at: Option<DateTime<Utc>>,
    /// When the key was revoked; a revoked key is refused.
    pub revoked_at: Option<DateTime<Utc>>,
    /// About when the key was last used (written at most once a minute per key and server).
    pub last_used_at: Option<DateTime<Utc>>,
}

/// What a request did, remembered under (api key, request_id).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotencyRecord {
    pub key_id: String,
    pub request_id: String,
    /// SHA-256 of the serialised command: the same id with another request is refused.
    pub request_hash: String,
    /// JSON of `Result<Reply, DomainError>`.
    pub outcome: String,
    pub created_at: DateTime<Utc>,
}

/// A transaction to append: the engine has already checked that it is allowed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewTransaction {
    pub kind: &'static str,
    pub member_id: String,
    pub occurred_at: DateTime<Utc>,
    pub recorded_at: DateTime<Utc>,
    pub channel: Option<Channel>,
    pub store_id: String,
    pub order_id: String,
    pub postings: Vec<Posting>,
    pub metadata: Vec<(String, String)>,
}

/// Why a new order cannot be recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OrderClash {
    /// An order with the same order_id exists.
    OrderId,
    /// Another order was recorded under the same store, register and receipt number.
    Receipt,
}

/// Work the background sweeper finds due at some instant.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DueWork {
    /// Authorized orders whose hold expired.
    pub expired_holds: Vec<String>,
    /// Members with a lot to mature or expire.
    pub members_with_due_lots: Vec<String>,
    /// Active coupons past `valid_until`.
    pub expired_coupons: Vec<String>,
}

/// Per-account totals read by `omo verify`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountTotal {
    pub account: String,
    pub asset: String,
    pub amount: i64,
}

/// Per-member lot totals read by `omo verify`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MemberLotTotals {
    pub member_id: String,
    pub pending_remaining: i64,
    pub spendable_remaining: i64,
    pub held: i64,
    /// Lots whose numbers are out of range (held > remaining, negative, ...).
    pub malformed_lots: i64,
}

/// Everything `omo verify` reads, in one consistent snapshot.
#[derive(Debug, Clone, Default)]
pub struct LedgerSnapshot {
    /// Postings with amount ≤ 0 or from = to.
    pub malformed_postings: i64,
    /// Σ(in) − Σ(out) per (account, asset), from the journal.
    pub posting_sums: Vec<AccountTotal>,
    /// Stored balances of guarded accounts.
    pub stored_balances: Vec<AccountTotal>,
    pub lot_totals: Vec<MemberLotTotals>,
    /// Authorized orders: (order_id, points_redeemed) — their hold must hold exactly that.
    pub authorized_orders: Vec<(String, i64)>,
    /// Orders with more than one hold resolution (capture, void, expiry).
    pub orders_resolved_twice: Vec<String>,
    /// Coupon rows counted the way the ledger should show them: an active coupon is one unit of
    /// `CPN:<campaign>` on `member:<id>`, a reserved one on `hold:<order_id>`.
    pub coupon_positions: Vec<AccountTotal>,
    /// Coupons issued by a rule (source `geo:<rule>`, `visit:<rule>`, `receipt:<rule>` or
    /// `rule:<rule>`) that does not exist.
    pub coupons_without_rule: Vec<String>,
    /// Receipts whose points are not where their status puts them: one waiting for review
    /// whose lot is not a pending lot of exactly its points, an accepted one whose lot did not
    /// earn its points; and review lots (pending, with no maturity) no waiting receipt owns.
    pub receipts_off_their_lot: Vec<String>,
    /// Points of the receipts waiting for review, and the points their lots hold pending.
    pub receipt_points_in_review: i64,
    pub review_lot_points: i64,
    /// Erased members that still hold something: an identifier, a name or attributes, a
    /// location report or presence, a receipt's raw text, points, or an unspent coupon.
    pub erased_members_with_data: Vec<String>,
    /// Imported opening balances not exactly one per import record: a member with more than
    /// one `import` entry, or an entry whose external_id has no record naming its member.
    pub imports_off_their_record: Vec<String>,
}

/// Point lots summed for GetLiability, counted as of the start of `as_of`'s quarter hour (see
/// `domain::summary::liability_groups`): one group per range of expiry instants the engine
/// asked for (a month of the program's zone), or per quarter hour when the engine corrects
/// the lots of `as_of`'s own quarter. Every zone's months begin on a quarter hour (UTC offsets
/// are whole quarter hours), so the lot summary's quarters fall wholly in one month of any zone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiabilityGroup {
    /// The first instant of the range (or the quarter hour) the group's lots expire in; None:
    /// they never expire.
    pub expires_quarter: Option<DateTime<Utc>>,
    /// Points still owed at `as_of`: the remainder of lots that expire after it, and the held
    /// points of those that expired while held (they stay owed until the hold resolves).
    pub outstanding_points: i64,
    /// Of those, free points of pending lots that have not matured by `as_of`.
    pub pending_points: i64,
    pub held_points: i64,
}

/// What GetActivity reads: the activity summary's periods in [from, to) and the visits of
/// [first_day, last_day], of one store or of all (`store_id` None).
///
/// With an `interior`, the rows inside it are read summed per channel and store, each sum as
/// one row on the interior's first period (first day for visits); the rows outside it one by
/// one. The engine picks an interior whose every row lies on a local day in the report's
/// range in any zone, so that a report in totals reads a few hundred rows, not a year's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActivityWindow {
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    /// Visits with a `visit_date` in [first_day, last_day].
    pub first_day: NaiveDate,
    pub last_day: NaiveDate,
    pub interior: Option<ActivityInterior>,
    pub store_id: Option<String>,
}

/// Periods [from, to) and visit dates [first_day, end_day) within an [`ActivityWindow`],
/// read as sums.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ActivityInterior {
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    pub first_day: NaiveDate,
    pub end_day: NaiveDate,
}

impl ActivityWindow {
    /// Every period and date a ledger can hold (years 1 to 9999, which both backends store).
    pub fn everything() -> Self {
        let date = |y, m, d| NaiveDate::from_ymd_opt(y, m, d).unwrap_or_default();
        let first_day = date(1, 1, 1);
        let last_day = date(9999, 12, 31);
        Self {
            from: first_day.and_time(chrono::NaiveTime::MIN).and_utc(),
            to: last_day.and_time(chrono::NaiveTime::MIN).and_utc(),
            first_day,
            last_day,
            interior: None,
            store_id: None,
        }
    }

    /// The interior's periods [from, to) and dates [first_day, end_day), or empty ranges at
    /// the window's end without one: what a backend binds. (Empty: [to, to) and [last_day,
    /// last_day) hold nothing, and the rows outside them are then the whole window.)
    pub fn interior_or_empty(&self) -> ActivityInterior {
        self.interior.unwrap_or(ActivityInterior {
            from: self.to,
            to: self.to,
            first_day: self.last_day,
            end_day: self.last_day,
        })
    }
}

/// The activity of one channel at one store within one period: a quarter hour (UTC) as the
/// ledger is recomputed, or as summarised `domain::summary::activity_period` (a store's local
/// day). Every zone's local days begin on a quarter hour, so the engine can give each cell its
/// local day exactly.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActivityCell {
    pub channel: Option<Channel>,
    pub store_id: String,
    pub period: DateTime<Utc>,
    /// Points out of `program:issued` less points back into it.
    pub points_earned: i64,
    /// Points into `program:redeemed:*` less points out of them.
    pub points_redeemed: i64,
    /// Points into `program:expired`.
    pub points_expired: i64,
    /// Sales and captures.
    pub orders: i64,
    /// Totals of the orders sold or captured, less the amounts refunded.
    pub sales: Decimal,
    /// Receipts accepted (the quarter hour and store of the receipt, on no channel, like their
    /// journal entries).
    pub receipts: i64,
}

impl ActivityCell {
    /// A cell with nothing in it yet.
    pub fn empty(channel: Option<Channel>, store_id: String, period: DateTime<Utc>) -> Self {
        Self {
            channel,
            store_id,
            period,
            points_earned: 0,
            points_redeemed: 0,
            points_expired: 0,
            orders: 0,
            sales: Decimal::ZERO,
            receipts: 0,
        }
    }

    /// Adds the figures of `other` (whatever its key).
    pub fn add(&mut self, other: &ActivityCell) {
        self.points_earned += other.points_earned;
        self.points_redeemed += other.points_redeemed;
        self.points_expired += other.points_expired;
        self.orders += other.orders;
        self.sales += other.sales;
        self.receipts += other.receipts;
    }

    pub fn is_zero(&self) -> bool {
        *self == ActivityCell::empty(self.channel, self.store_id.clone(), self.period)
    }
}

/// Visits at one store on one local date.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VisitCount {
    pub store_id: String,
    pub visit_date: NaiveDate,
    pub visits: i64,
}

/// What GetLiability reads (see `domain::summary::liability_groups`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LiabilityLots {
    /// The lot summary in the ranges asked for, shards summed, counted as of the start of
    /// `as_of`'s quarter hour.
    pub groups: Vec<LiabilityGroup>,
    /// Live lots with free points that expire or mature in [quarter of as_of, as_of].
    pub boundary: Vec<Lot>,
}

/// What GetCampaignStats reads of one campaign's summaries.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CampaignSums {
    pub coupons: Vec<CouponTally>,
    pub redemptions: Vec<RedemptionTally>,
    /// The two middle times to redemption in seconds (`summary::redemption_bucket`), the same
    /// one twice for an odd count; None when none is redeemed.
    pub middle_times: Option<(i64, i64)>,
}

/// What a batch of commands will touch, gathered from the commands before any is decided, so
/// that a backend can read it all in a few bulk reads (see [`UnitOfWork::load`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Keys {
    /// (api key id, request_id) of every command that has one.
    pub idempotency: Vec<(String, String)>,
    pub member_ids: Vec<String>,
    pub identifiers: Vec<Identifier>,
    /// Orders named by the commands: new ones (expected absent) and existing ones.
    pub order_ids: Vec<String>,
    /// Register receipts of new sales and of scanned receipts, keyed as
    /// `receipt::register_receipt_key` names them: one claim serves both.
    pub receipts: Vec<(String, String, String)>,
    pub coupon_codes: Vec<String>,
    /// About how many new ids of each sequence the commands will need: a backend may reserve
    /// them with the load rather than in a round trip of their own (more are reserved on
    /// demand; unused ones are gaps).
    pub wanted_ids: HashMap<Sequence, usize>,
    /// The batch reports locations: load the presence of its members too.
    pub presence: bool,
}

/// The rows a batch reads before deciding, locked where the batch may write them.
///
/// Completeness is what makes it useful: every key asked for in [`Keys`] that is not here is
/// absent from the database, and for every member and order here, all of its live lots, its
/// guarded balances, its order lots and its coupons (by `order_id`) are here too.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Loaded {
    pub idempotency: Vec<IdempotencyRecord>,
    pub identifiers: Vec<(Identifier, String)>,
    /// The named members and the owners of the named orders, locked.
    pub members: Vec<MemberRow>,
    /// Live lots (`remaining_points > 0`) of `members`.
    pub lots: Vec<Lot>,
    /// Stored balances read (at least the points of `members` and of their pending accounts,
    /// and of the holds of `orders`); a pair not here is read when it is needed.
    pub balances: Vec<AccountTotal>,
    /// Accounts whose every stored balance is in `balances`: a missing asset there is zero.
    /// (The hold of an order that does not exist yet holds nothing.)
    pub complete_accounts: Vec<String>,
    /// The named orders that exist, locked.
    pub orders: Vec<Order>,
    /// Order lots of `orders`.
    pub order_lots: Vec<OrderLot>,
    /// The named coupons and the coupons of `orders`, locked.
    pub coupons: Vec<Coupon>,
    /// Receipts of `Keys::receipts` a register sale holds, with its order.
    pub receipts: Vec<((String, String, String), String)>,
    /// Receipts of `Keys::receipts` a member's scan holds (see `ReceiptStatus::claims`), with
    /// the scanned receipt's id.
    pub receipt_claims: Vec<((String, String, String), String)>,
    /// Ids reserved for the batch ([`Keys::wanted_ids`]), never handed out before.
    pub reserved_ids: HashMap<Sequence, Vec<i64>>,
    /// With `Keys::presence`: the presence rows of `members` (a member without one has none).
    pub presence: Vec<Presence>,
}

/// Identities a batch hands out before it writes: a batch decides in memory, so a new
/// transaction or lot needs its id before the flush.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Sequence {
    Transactions,
    Lots,
}

/// Everything a batch changed, written by [`UnitOfWork::flush`] with one statement per table
/// (and kind of change). Rows come in the order the batch first wrote them.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ChangeSet {
    /// Reference data written by admins (rare: written row by row).
    pub new_stores: Vec<RetailStore>,
    pub program: Option<Program>,
    pub new_campaigns: Vec<Campaign>,
    /// Campaigns an admin changed (UpdateCampaign): the body is rewritten.
    pub changed_campaigns: Vec<Campaign>,
    /// Merged members (source, target): every lot, coupon and identifier of the source moves
    /// to the target, also those the batch never read. Written before the rows below, which
    /// already name their final member.
    pub merges: Vec<(String, String)>,
    /// Identifiers unlinked from their member (deleted before `new_identifiers` are written).
    pub removed_identifiers: Vec<Identifier>,
    /// Erased members (EraseMember): their location reports and presence are deleted and their
    /// receipts' raw text emptied. Their rows (identifiers, name, points, coupons) change
    /// through the ordinary parts of the change set.
    pub erased_members: Vec<String>,
    pub new_members: Vec<MemberRow>,
    pub changed_members: Vec<MemberRow>,
    /// (identifier, member_id)
    pub new_identifiers: Vec<(Identifier, String)>,
    /// Journal entries with the ids reserved for them ([`Sequence::Transactions`]).
    pub transactions: Vec<(i64, NewTransaction)>,
    /// Net change of each guarded balance, sorted by (account, asset) (the lock order); never
    /// zero. A debit of a balance with no row, or below zero, fails the flush.
    pub balance_deltas: Vec<AccountTotal>,
    /// New lots carry the ids reserved for them ([`Sequence::Lots`]).
    pub new_lots: Vec<Lot>,
    pub changed_lots: Vec<Lot>,
    pub new_orders: Vec<Order>,
    pub changed_orders: Vec<Order>,
    pub new_order_lots: Vec<OrderLot>,
    pub changed_order_lots: Vec<OrderLot>,
    pub new_coupons: Vec<Coupon>,
    pub changed_coupons: Vec<Coupon>,
    pub outcomes: Vec<IdempotencyRecord>,
    /// Engagement rows, written after the coupons they name.
    pub engagement: EngagementChanges,
    /// Rules and their counters.
    pub rules: RuleChanges,
    /// The net change of the report summaries (visits are counted by the flush as it inserts
    /// them: a batch does not know whether a visit row exists).
    pub report: ReportSums,
    /// The outbox: the events the batch's writes report (`domain::event::events_of`), written
    /// by the same flush, so they commit with the ledger change or not at all.
    pub events: Vec<crate::domain::event::NewEvent>,
    /// The summary rows' shard: the flushing writer's number (0 outside the writers' batches),
    /// so that parallel writers never wait on one summary row.
    pub shard: i16,
    /// What the batch adds to members' monthly spend (`domain::tier`), added to the stored
    /// rows like the rule counters: counting spend reads nothing.
    pub member_spend: Vec<MonthSpend>,
}

/// What `omo verify` recomputes the tiers' spend summary from (`domain::tier`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TierAudit {
    /// Every stored monthly spend row.
    pub spend: Vec<MonthSpend>,
    /// Every captured order (refunded ones too): (member_id as the order names it,
    /// occurred_at, total, amount_due, refunded_amount).
    pub orders: Vec<(
        String,
        DateTime<Utc>,
        super::Money,
        super::Money,
        super::Money,
    )>,
    /// Every accepted receipt: (member_id, issued_at, total).
    pub receipts: Vec<(String, DateTime<Utc>, super::Money)>,
    /// Merged members: (member_id, merged_into).
    pub merged: Vec<(String, String)>,
    /// Every member with a tier: (member_id, tier).
    pub tiers: Vec<(String, crate::domain::tier::MemberTier)>,
}

/// A member's spend in one month of the program's zone (a stored row, or in a [`ChangeSet`]
/// what a batch adds to it), in integer ten-thousandths of the currency.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MonthSpend {
    pub member_id: String,
    /// The month's first day.
    pub month: NaiveDate,
    pub spend_e4: i64,
}

/// What a batch changed of the rules tables: rules created or updated, and what it added to
/// counters (the flush adds them to the stored rows, so counting needs no read).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RuleChanges {
    pub new_rules: Vec<Rule>,
    pub changed_rules: Vec<Rule>,
    pub counters: Vec<RuleCounter>,
    pub store_days: Vec<RuleStoreDay>,
}

/// What one rule did for one member (or, in a [`RuleChanges`], what a batch adds to it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleCounter {
    pub rule_id: String,
    pub member_id: String,
    pub fired: i64,
    /// Points given, net of what refunds took back.
    pub points: i64,
    pub coupons: i64,
    pub last_fired_at: DateTime<Utc>,
}

impl RuleCounter {
    /// This counter with `more` added: firings, points and coupons summed, the later firing.
    pub fn plus(&self, more: &RuleCounter) -> RuleCounter {
        RuleCounter {
            rule_id: self.rule_id.clone(),
            member_id: self.member_id.clone(),
            fired: self.fired + more.fired,
            points: self.points + more.points,
            coupons: self.coupons + more.coupons,
            last_fired_at: self.last_fired_at.max(more.last_fired_at),
        }
    }
}

/// How often one rule fired at one store on one local day.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleStoreDay {
    pub rule_id: String,
    pub store_id: String,
    pub local_date: NaiveDate,
    pub fired: i64,
}

/// A rule's counters summed over members (GetRuleStats, omo verify).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RuleTotals {
    pub rule_id: String,
    pub fired: i64,
    pub members: i64,
    pub points: i64,
    pub coupons: i64,
}

/// What a batch changed of the engagement tables (rules, reports, presence, visits).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EngagementChanges {
    /// Admin writes (rare).
    pub new_geo_rules: Vec<(GeoRule, DateTime<Utc>)>,
    pub new_visit_rules: Vec<(VisitRule, DateTime<Utc>)>,
    /// Appended, accepted or rejected.
    pub location_reports: Vec<LocationRecord>,
    /// Inserted or replaced, one per member.
    pub presence: Vec<Presence>,
    pub geo_issues: Vec<GeoIssue>,
    /// Inserted unless the (member, store, date) is there already: a visit a batch did not need
    /// to read may exist.
    pub visits: Vec<Visit>,
    pub visit_issues: Vec<VisitIssue>,
    pub new_receipt_rules: Vec<(ReceiptRule, DateTime<Utc>)>,
    pub new_receipts: Vec<ReceiptRecord>,
    /// Receipts reviewed, or reversed by a register sale.
    pub changed_receipts: Vec<ReceiptRecord>,
    /// Register receipts claimed or taken over (one row per key, shared by sales and scans).
    pub receipt_claims: Vec<super::receipt::ClaimWrite>,
}

/// A page of ListReceipts as a store reads it (see [`ReceiptQuery`]): a member's receipts
/// newest first, or one status's receipts oldest first, after the cursor's (submitted_at,
/// receipt_id).
///
/// [`ReceiptQuery`]: super::receipt::ReceiptQuery
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceiptPageQuery {
    pub member_id: Option<String>,
    pub status: Option<ReceiptStatus>,
    pub after: Option<(DateTime<Utc>, String)>,
    pub limit: i64,
}

/// One location report as stored: `rejected` is the verdict's reason, None when accepted.
#[derive(Debug, Clone, PartialEq)]
pub struct LocationRecord {
    pub member_id: String,
    pub observed_at: DateTime<Utc>,
    pub recorded_at: DateTime<Utc>,
    pub position: LatLng,
    pub accuracy_m: f64,
    pub rejected: Option<RejectReason>,
}

/// Where a member was last seen: the last accepted fix and the member's current visit run at
/// each store they are inside.
#[derive(Debug, Clone, PartialEq)]
pub struct Presence {
    pub member_id: String,
    pub fix: Fix,
    pub runs: Vec<StoreRun>,
}

/// A member's current visit run at one store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoreRun {
    pub store_id: String,
    pub run: VisitRun,
}

/// A coupon a geo rule issued to a member at a store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GeoIssue {
    pub rule_id: String,
    pub member_id: String,
    pub store_id: String,
    pub issued_at: DateTime<Utc>,
    /// The store's local date of `issued_at`.
    pub local_date: NaiveDate,
    /// The coupon's number among the rule's coupons at the store that day, for a capped rule.
    pub slot: Option<i64>,
    pub coupon_code: String,
}

/// What signalled a visit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum VisitSource {
    Sale,
    Geo,
    Receipt,
}

impl VisitSource {
    pub fn as_str(self) -> &'static str {
        match self {
            VisitSource::Sale => "sale",
            VisitSource::Geo => "geo",
            VisitSource::Receipt => "receipt",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        [VisitSource::Sale, VisitSource::Geo, VisitSource::Receipt]
            .into_iter()
            .find(|source| source.as_str() == text)
    }
}

/// One visit: a member at a store on a local date of the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Visit {
    pub member_id: String,
    pub store_id: String,
    pub visit_date: NaiveDate,
    pub first_at: DateTime<Utc>,
    pub source: VisitSource,
}

/// A coupon a visit rule issued to a member on a local date.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VisitIssue {
    pub rule_id: String,
    pub member_id: String,
    pub issued_on: NaiveDate,
    pub coupon_code: String,
}

impl ChangeSet {
    /// Nothing to write (whatever shard would write it).
    pub fn is_empty(&self) -> bool {
        *self
            == ChangeSet {
                shard: self.shard,
                ..ChangeSet::default()
            }
    }
}

#[async_trait]
pub trait Store: Send + Sync + std::fmt::Debug {
    /// Opens a read-write unit of work (SQLite: `BEGIN IMMEDIATE`).
    async fn begin(&self) -> StoreResult<Box<dyn UnitOfWork>>;
    /// Opens a read-only unit of work over one consistent snapshot.
    async fn begin_read(&self) -> StoreResult<Box<dyn UnitOfWork>>;
    /// A read-only unit of work for a caller that reads with ONE statement: a backend may skip
    /// the transaction around it, since a single statement reads one snapshot by itself.
    async fn begin_read_statement(&self) -> StoreResult<Box<dyn UnitOfWork>> {
        self.begin_read().await
    }
    fn backend_name(&self) -> &'static str;
    /// How many write transactions are worth running at once (group-commit writers): one where
    /// the database has a single writer, more where it commits in parallel.
    fn parallel_writers(&self) -> usize;
    /// Whether a unit of work runs its statements on the calling thread (an embedded database)
    /// rather than awaiting a server. Writers then get OS threads of their own, so that a
    /// batch's statements and its commit's fsync never stall the threads serving requests.
    fn runs_on_calling_thread(&self) -> bool {
        false
    }
    /// Whether [`UnitOfWork::due_work`] claims the rows it returns until its unit of work ends,
    /// skipping rows another sweeper has claimed (so that sweepers on several replicas take
    /// different rows). The sweeper then keeps that unit of work open while it works on them.
    fn due_work_claims_rows(&self) -> bool {
        false
    }
    /// Whether the flush gives outbox rows their seq as it inserts them (a database with one
    /// writer at a time, where insert order is commit order), so the event relay only reads.
    fn numbers_events_at_insert(&self) -> bool {
        false
    }
    /// Closes the database's connections at shutdown, waiting for those in use to be given
    /// back; units of work begun afterwards fail. By default nothing (dropping closes them).
    async fn close(&self) {}
}

/// The row reads a unit of work answers from the database and a batch's rows answer from
/// memory (reading through to the database for what the batch did not load). The engine's
/// read-only helpers (resolving a member, pricing coupons) are written against these, so the
/// read path and the write path share them.
#[async_trait]
pub trait LedgerReads: Send {
    /// Whether this view shows program settings or stores written by a batch that has not
    /// committed yet. Such values answer that batch's commands but must never fill a cache
    /// shared with other batches: the batch may still roll back.
    fn shows_uncommitted_reference(&self) -> bool {
        false
    }
    async fn find_idempotency(
        &mut self,
        key_id: &str,
        request_id: &str,
    ) -> StoreResult<Option<IdempotencyRecord>>;

    // Program and stores.
    /// `lock` locks the settings row (if there is one) until the end of the unit of work.
    async fn load_program(&mut self, lock: bool) -> StoreResult<Option<Program>>;
    async fn get_store(&mut self, store_id: &str) -> StoreResult<Option<RetailStore>>;
    async fn list_stores(&mut self) -> StoreResult<Vec<RetailStore>>;

    // Members. `lock` takes a row lock (PostgreSQL `for update`) held to the end of the work.
    async fn get_member(&mut self, member_id: &str, lock: bool) -> StoreResult<Option<MemberRow>>;
    async fn member_by_identifier(
        &mut self,
        identifier: &Identifier,
    ) -> StoreResult<Option<String>>;
    async fn identifiers(&mut self, member_id: &str) -> StoreResult<Vec<Identifier>>;

    // The journal and point lots.
    async fn balance(&mut self, account: &str, asset: &str) -> StoreResult<i64>;
    /// A guarded balance read under its row's lock (PostgreSQL `for update`), held to the end
    /// of the unit of work: for a debit other writers race for (a limited campaign's stock,
    /// `domain::stock`), whose balance must stay what was read until the debit commits.
    async fn lock_balance(&mut self, account: &str, asset: &str) -> StoreResult<i64>;
    /// The writer this unit of work runs on: which parts of a limited campaign's stock it
    /// draws from first (`domain::stock::draw_order`).
    fn writer_seat(&self) -> crate::domain::stock::Seat {
        crate::domain::stock::Seat::default()
    }
    /// Units a command picked from a stock part for issues it has not booked yet: several
    /// issues of one campaign in one command (a public code, a capture's coupon, a rule's)
    /// are booked in its one journal entry at the end, so each must see the others' picks.
    fn unbooked_draws(&self, _account: &str) -> i64 {
        0
    }
    /// Notes a unit picked from `account` (see [`LedgerReads::unbooked_draws`]).
    fn note_draw(&mut self, _account: &str) {}
    /// A member's lots that still hold points, soonest expiry first (never-expiring last).
    async fn member_lots(&mut self, member_id: &str) -> StoreResult<Vec<Lot>>;
    async fn get_lot(&mut self, lot_id: i64) -> StoreResult<Option<Lot>>;
    async fn order_lots(&mut self, order_id: &str) -> StoreResult<Vec<OrderLot>>;

    // Orders.
    async fn get_order(&mut self, order_id: &str, lock: bool) -> StoreResult<Option<Order>>;
    /// The register sale that holds the receipt (store, register, receipt_no), if any. The key
    /// is [`register_receipt_key`]'s, as callers make it.
    ///
    /// [`register_receipt_key`]: super::receipt::register_receipt_key
    async fn order_by_receipt(
        &mut self,
        store_id: &str,
        register_id: &str,
        receipt_no: &str,
    ) -> StoreResult<Option<String>>;
    async fn member_has_open_orders(&mut self, member_id: &str) -> StoreResult<bool>;

    // Campaigns and coupons.
    async fn get_campaign(
        &mut self,
        campaign_id: &str,
        lock: bool,
    ) -> StoreResult<Option<Campaign>>;
    async fn campaign_by_public_code(&mut self, public_code: &str)
    -> StoreResult<Option<Campaign>>;
    async fn list_campaigns(&mut self) -> StoreResult<Vec<Campaign>>;
    /// The campaign as last committed (or as this unit of work wrote it), read again rather
    /// than from what the unit of work read before: whether its limit changed meanwhile.
    async fn campaign_as_committed(&mut self, campaign_id: &str) -> StoreResult<Option<Campaign>> {
        self.get_campaign(campaign_id, false).await
    }
    /// Coupons issued so far by a campaign (all states), and to one member.
    async fn count_coupons(
        &mut self,
        campaign_id: &str,
        member_id: Option<&str>,
    ) -> StoreResult<i64>;
    async fn get_coupon(&mut self, code: &str, lock: bool) -> StoreResult<Option<Coupon>>;
    async fn member_coupons(&mut self, member_id: &str) -> StoreResult<Vec<Coupon>>;
    async fn order_coupons(&mut self, order_id: &str) -> StoreResult<Vec<Coupon>>;

    // Engagement.
    /// How many stores there are (a cheap check of whether a cached store list is current).
    async fn count_stores(&mut self) -> StoreResult<i64>;
    /// Every geo rule, by rule id.
    async fn list_geo_rules(&mut self) -> StoreResult<Vec<GeoRule>>;
    /// Every visit rule, by rule id.
    async fn list_visit_rules(&mut self) -> StoreResult<Vec<VisitRule>>;
    async fn presence(&mut self, member_id: &str) -> StoreResult<Option<Presence>>;
    /// When `rule_id` last issued to the member at the store, and how many coupons it issued
    /// at the store on `local_date`.
    async fn geo_issue_facts(
        &mut self,
        rule_id: &str,
        member_id: &str,
        store_id: &str,
        local_date: NaiveDate,
    ) -> StoreResult<IssueFacts>;
    /// A member's visits on or after `since` (all of them without it), oldest first.
    async fn member_visits(
        &mut self,
        member_id: &str,
        since: Option<NaiveDate>,
    ) -> StoreResult<Vec<Visit>>;
    /// The last local date `rule_id` issued to the member.
    async fn last_visit_issue(
        &mut self,
        rule_id: &str,
        member_id: &str,
    ) -> StoreResult<Option<NaiveDate>>;

    // Receipts.
    /// Every receipt rule, by rule id.
    async fn list_receipt_rules(&mut self) -> StoreResult<Vec<ReceiptRule>>;

    // Rules.
    /// Every rule of the rules table, by rule_id.
    async fn list_rules(&mut self) -> StoreResult<Vec<Rule>>;
    async fn get_rule(&mut self, rule_id: &str) -> StoreResult<Option<Rule>>;
    /// Takes the rules' row locks (in rule_id order: `rule_ids` come sorted), so that what
    /// their shared limits read (budget balances, a store's day) stays theirs until commit;
    /// returns the rules as they stand under the lock.
    async fn lock_rules(&mut self, rule_ids: &[String]) -> StoreResult<Vec<Rule>>;
    async fn rule_counter(
        &mut self,
        rule_id: &str,
        member_id: &str,
    ) -> StoreResult<Option<RuleCounter>>;
    /// Firings of a rule at a store on a local day (0 when none).
    async fn rule_store_day(
        &mut self,
        rule_id: &str,
        store_id: &str,
        local_date: NaiveDate,
    ) -> StoreResult<i64>;
    /// Whether the member has a captured order (refunded ones count: they were captured).
    async fn has_captured_order(&mut self, member_id: &str) -> StoreResult<bool>;
    /// The member's monthly spend rows from `from_month` on (`domain::tier`), by month.
    async fn member_spend(
        &mut self,
        member_id: &str,
        from_month: NaiveDate,
    ) -> StoreResult<Vec<MonthSpend>>;
    /// `lock` takes a row lock held to the end of the work (a review).
    async fn get_receipt(
        &mut self,
        receipt_id: &str,
        lock: bool,
    ) -> StoreResult<Option<ReceiptRecord>>;
    /// The receipt that holds `claim`, if any (see [`ReceiptStatus::claims`]).
    async fn receipt_claimed_by(&mut self, claim: &ReceiptClaim) -> StoreResult<Option<String>>;
    /// How many receipts submitted by the member at or after `since` hold their claim.
    async fn count_member_receipts(
        &mut self,
        member_id: &str,
        since: DateTime<Utc>,
    ) -> StoreResult<i64>;
}

/// One database transaction, as a backend offers it: coarse. A write batch loads what it
/// touches ([`UnitOfWork::load`]), decides in memory, and writes everything it changed with one
/// [`UnitOfWork::flush`]; the row reads ([`LedgerReads`]) serve the read path and what a batch
/// did not foresee. The only writes outside a flush are API keys (the keys module writes them
/// on their own) and [`UnitOfWork::ensure_program`].
#[async_trait]
pub trait UnitOfWork: LedgerReads {
    async fn commit(self: Box<Self>) -> StoreResult<()>;

    // Batches: load what a batch touches, decide in memory, flush once.
    /// Reads everything `keys` names (see [`Loaded`]), locking members, orders and coupons in a
    /// fixed order.
    async fn load(&mut self, keys: &Keys) -> StoreResult<Loaded>;
    /// `count` new ids of `sequence`, never handed out before (gaps are fine).
    async fn reserve_ids(&mut self, sequence: Sequence, count: usize) -> StoreResult<Vec<i64>>;
    /// Writes a batch's changes. A batch that issued a coupon from `campaign:<id>` (a campaign
    /// it read without a limit) fails with `Conflict` if the campaign has a stock by then: its
    /// limit was set meanwhile (see [`UnitOfWork::fence_coupon_issues`]).
    async fn flush(&mut self, changes: &ChangeSet) -> StoreResult<()>;
    /// Waits for every unit of work that issued or changed coupons to end, and holds back new
    /// ones until this one ends (PostgreSQL: `lock table coupons in share row exclusive
    /// mode`), so coupons counted afterwards stay counted: how UpdateCampaign gives a campaign
    /// without a limit its first one. By default nothing: one writer at a time.
    async fn fence_coupon_issues(&mut self) -> StoreResult<()> {
        Ok(())
    }

    // The event feed (issue #22, `engine::events`).
    /// Gives committed outbox rows without a public seq the next seqs, in the order they were
    /// written, at most `limit`; returns the highest seq given so far (0: none). Only one
    /// numbering runs at a time across replicas; a call that finds another running numbers
    /// nothing and returns what is numbered.
    async fn number_events(&mut self, limit: i64) -> StoreResult<i64>;
    /// Numbered events matching `filter`, by seq.
    async fn list_events(
        &mut self,
        filter: &crate::domain::event::EventFilter,
    ) -> StoreResult<Vec<crate::domain::event::Event>>;

    /// Up to `limit` live lots expiring in (from, until] whose `points.expiring` reminder is
    /// not in the outbox yet, soonest first.
    async fn expiring_lots(
        &mut self,
        from: DateTime<Utc>,
        until: DateTime<Utc>,
        limit: i64,
    ) -> StoreResult<Vec<crate::domain::event::ExpiringLot>>;
    /// Up to `limit` active coupons whose validity ends in (from, until] and whose
    /// `coupon.expiring` is not in the outbox yet, soonest first.
    async fn expiring_coupons(
        &mut self,
        from: DateTime<Utc>,
        until: DateTime<Utc>,
        limit: i64,
    ) -> StoreResult<Vec<crate::domain::event::ExpiringCoupon>>;
    /// The feed as `omo verify` checks it (see [`crate::domain::event::EventAudit`]).
    async fn event_audit(&mut self) -> StoreResult<crate::domain::event::EventAudit>;

    // Webhooks (`domain::webhook`, `engine::webhooks`).
    /// Stores a new webhook; false when its webhook_id is taken (nothing written).
    async fn insert_webhook(&mut self, record: &WebhookRecord) -> StoreResult<bool>;
    /// A webhook, its row locked until the unit of work ends with `lock`.
    async fn get_webhook(
        &mut self,
        webhook_id: &str,
        lock: bool,
    ) -> StoreResult<Option<WebhookRecord>>;
    /// Every webhook, by webhook_id.
    async fn list_webhooks(&mut self) -> StoreResult<Vec<WebhookRecord>>;
    /// Saves url, types, enabled, cursor_seq and updated_at.
    async fn update_webhook(&mut self, record: &WebhookRecord) -> StoreResult<()>;
    /// New deliveries; one already planned (same webhook and seq) is left as it is.
    async fn insert_deliveries(&mut self, deliveries: &[Delivery]) -> StoreResult<()>;
    /// Up to `limit` PENDING deliveries due at `now`, claimed: their next attempt moved to
    /// `lease_until`, rows another worker holds skipped.
    async fn claim_deliveries(
        &mut self,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
        limit: i64,
    ) -> StoreResult<Vec<Delivery>>;
    /// When the oldest PENDING delivery was planned (None: none pending).
    async fn oldest_pending_delivery(&mut self) -> StoreResult<Option<DateTime<Utc>>>;
    /// Saves a delivery's state, attempts, last status and next attempt.
    async fn save_delivery(&mut self, delivery: &Delivery) -> StoreResult<()>;
    /// A webhook's deliveries after seq `after_seq`, by seq, optionally of one state.
    async fn list_deliveries(
        &mut self,
        webhook_id: &str,
        state: Option<DeliveryState>,
        after_seq: i64,
        limit: i64,
    ) -> StoreResult<Vec<Delivery>>;
    /// Stores `program` only if no settings are stored yet, at once rather than at the flush:
    /// it gives concurrent first updates a row to lock, so that they compose.
    async fn ensure_program(&mut self, program: &Program) -> StoreResult<()>;

    // Reads of the read path only.
    async fn member_transactions(
        &mut self,
        member_id: &str,
        before_transaction_id: Option<i64>,
        limit: i64,
    ) -> StoreResult<Vec<Transaction>>;
    /// A member and its live lots (as `member_lots`), read together (backends may answer in one
    /// statement).
    async fn member_with_lots(
        &mut self,
        member_id: &str,
    ) -> StoreResult<Option<(MemberRow, Vec<Lot>)>> {
        let Some(member) = self.get_member(member_id, false).await? else {
            return Ok(None);
        };
        let lots = self.member_lots(member_id).await?;
        Ok(Some((member, lots)))
    }

    /// One page of receipts (see [`ReceiptPageQuery`]).
    async fn list_receipts(&mut self, query: &ReceiptPageQuery) -> StoreResult<Vec<ReceiptRecord>>;
    /// A member's orders newest first (created_at, order_id descending), those strictly
    /// before `before` when given, at most `limit` (ListOrders).
    async fn member_orders(
        &mut self,
        member_id: &str,
        before: Option<&(DateTime<Utc>, String)>,
        limit: i64,
    ) -> StoreResult<Vec<Order>>;

    // The reports (ReportService) read the summaries the flush keeps (`domain::summary`),
    // shards summed.
    /// The first and last quarter hour in which lots of the lot summary expire (lots that never
    /// expire aside); None when there are none.
    async fn lot_expiry_span(&mut self) -> StoreResult<Option<(DateTime<Utc>, DateTime<Utc>)>>;
    /// The lot summary in groups of expiry ([`LiabilityLots`]): one per range of
    /// `summary::expiry_ranges(bounds)` (sorted bounds; the first range open below, the last
    /// open above) and one of the lots that never expire, each left out when it nets to zero,
    /// as `summary::counted_groups` defines them.
    async fn liability_lots(
        &mut self,
        as_of: DateTime<Utc>,
        bounds: &[DateTime<Utc>],
    ) -> StoreResult<LiabilityLots>;
    /// Each rule's counters summed (only rules that fired); one rule's with `rule_id`.
    async fn rule_totals(&mut self, rule_id: Option<&str>) -> StoreResult<Vec<RuleTotals>>;
    /// One campaign's coupons, redemptions by channel and middle times to redemption.
    async fn campaign_sums(&mut self, campaign_id: &str) -> StoreResult<CampaignSums>;
    /// The activity and visits of a window.
    async fn activity_sums(&mut self, window: &ActivityWindow) -> StoreResult<ReportSums>;
    /// Every summary row, for `omo verify`.
    async fn report_sums(&mut self) -> StoreResult<ReportSums>;
    /// The same sums recomputed from the ledger's own rows (journal, lots, coupons, receipts,
    /// visits), activity by quarter hour: what the summaries must equal.
    async fn recompute_report_sums(&mut self) -> StoreResult<ReportSums>;
    /// Replaces every summary row with `sums` (a recomputation, at shard 0) and clears the
    /// rebuild requests; the caller has locked the summaries (see `lock_report_sums`).
    async fn replace_report_sums(&mut self, sums: &ReportSums) -> StoreResult<()>;
    /// Makes writers wait for this unit of work before they add to the summaries (taken before
    /// a rebuild's recomputation, so that no batch commits between it and the replacement).
    /// SQLite has one writer, whose transaction is this one: nothing to do there.
    async fn lock_report_sums(&mut self) -> StoreResult<()> {
        Ok(())
    }
    /// Folds the summary rows whose instant is in [from, to) (visits: whose date is one of
    /// those UTC dates), and every row of the campaigns writers added to, into one row per key
    /// at shard 0, leaving out keys that net to zero: the shards' rows of settled days and of
    /// spent lots would otherwise pile up. Every sum stays the same. How many rows it wrote;
    /// the caller has locked the summaries (`lock_report_sums`).
    async fn compact_report_sums(
        &mut self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> StoreResult<u64>;
    /// Whether a migration asked for a rebuild of the summaries (a ledger that existed before
    /// them): the server rebuilds them when it starts.
    async fn summary_rebuild_wanted(&mut self) -> StoreResult<bool>;

    // API keys, written outside batches.
    async fn insert_api_key(&mut self, key: &ApiKeyRecord) -> StoreResult<()>;
    async fn find_api_key(&mut self, key_hash: &str) -> StoreResult<Option<ApiKeyRecord>>;
    /// Every key, oldest first.
    async fn list_api_keys(&mut self) -> StoreResult<Vec<ApiKeyRecord>>;
    /// Revokes a key at `at` (a revoked key keeps its first revocation time); false when there
    /// is no key `key_id`.
    async fn revoke_api_key(&mut self, key_id: &str, at: DateTime<Utc>) -> StoreResult<bool>;
    /// Records that a key was used at `at`.
    async fn touch_api_key(&mut self, key_id: &str, at: DateTime<Utc>) -> StoreResult<()>;
    /// Deletes at most `limit` idempotency records created before `created_before` (a replay
    /// of one is then treated as a new request); how many it deleted. Safe to run on several
    /// replicas at once.
    async fn purge_idempotency(
        &mut self,
        created_before: DateTime<Utc>,
        limit: i64,
    ) -> StoreResult<u64>;
    /// Deletes at most `limit` of the oldest events, none at or after the first event that
    /// occurred at or after `occurred_before`, none a webhook has not been given yet, none
    /// with a pending delivery (retention); how many it deleted. Deleting a prefix of the feed
    /// keeps its seqs dense. Safe to run on several replicas at once.
    async fn purge_events(
        &mut self,
        occurred_before: DateTime<Utc>,
        limit: i64,
    ) -> StoreResult<u64>;
    /// Deletes at most `limit` location reports recorded before `recorded_before` (retention);
    /// how many it deleted. Safe to run on several replicas at once.
    async fn purge_location_reports(
        &mut self,
        recorded_before: DateTime<Utc>,
        limit: i64,
    ) -> StoreResult<u64>;
    /// Empties the raw text of at most `limit` receipts submitted before `submitted_before`
    /// that still have one (retention: the receipt and its effects stay); how many it emptied.
    async fn clear_receipt_texts(
        &mut self,
        submitted_before: DateTime<Utc>,
        limit: i64,
    ) -> StoreResult<u64>;

    // Dashboard sessions (migration 0012), written outside batches.
    async fn insert_dashboard_session(&mut self, session: &DashboardSession) -> StoreResult<()>;
    /// The session stored under `session_hash`, with the API key it was opened with.
    async fn find_dashboard_session(
        &mut self,
        session_hash: &str,
    ) -> StoreResult<Option<(DashboardSession, ApiKeyRecord)>>;
    /// Records that a session was used at `at`.
    async fn touch_dashboard_session(
        &mut self,
        session_hash: &str,
        at: DateTime<Utc>,
    ) -> StoreResult<()>;
    /// Ends a session; false when there was none under `session_hash`.
    async fn delete_dashboard_session(&mut self, session_hash: &str) -> StoreResult<bool>;
    /// Deletes the sessions opened before `opened_before` or last used before `seen_before`
    /// (ended ones); how many it deleted.
    async fn purge_dashboard_sessions(
        &mut self,
        opened_before: DateTime<Utc>,
        seen_before: DateTime<Utc>,
    ) -> StoreResult<u64>;

    // Background work and verification.
    /// Up to `limit` items of each kind due at `now` (see [`Store::due_work_claims_rows`]).
    async fn due_work(&mut self, now: DateTime<Utc>, limit: i64) -> StoreResult<DueWork>;
    /// Up to `limit` members with a tier, after `after_member_id` by id, whose tier was last
    /// decided before `reviewed_before` (the monthly review's instant, `domain::tier`).
    async fn members_due_tier_review(
        &mut self,
        reviewed_before: DateTime<Utc>,
        after_member_id: &str,
        limit: i64,
    ) -> StoreResult<Vec<String>>;
    /// Members (after `after_member_id`, by id, at most `limit`) whose last visit at
    /// `store_ids` (empty = any store) was on or before `last_visit_by` and to whom `rule_id`
    /// has issued nothing since that visit: the candidates of a LAPSED rule's daily check.
    async fn lapsed_candidates(
        &mut self,
        rule_id: &str,
        store_ids: &[String],
        last_visit_by: NaiveDate,
        after_member_id: &str,
        limit: i64,
    ) -> StoreResult<Vec<String>>;
    async fn ledger_snapshot(&mut self) -> StoreResult<LedgerSnapshot>;
    /// The rows `omo verify` checks the tiers against (a full read: verification only).
    async fn tier_audit(&mut self) -> StoreResult<TierAudit>;

    // The journal's hash chain (`domain::seal`), written by the background sealer.
    /// The highest transaction id at which the journal is settled: every id at or below it is
    /// committed or will never be written, so a seal up to it cannot miss a late commit. Asked
    /// of a unit of work from [`Store::begin_read_statement`]; None when it could not be
    /// established now (the sealer tries again later).
    async fn settled_horizon(&mut self) -> StoreResult<Option<i64>>;
    /// The newest seal, if any.
    async fn last_seal(&mut self) -> StoreResult<Option<Seal>>;
    /// At most `limit` seals after `after_seal_no`, oldest first.
    async fn seals(&mut self, after_seal_no: i64, limit: i64) -> StoreResult<Vec<Seal>>;
    /// At most `limit` transactions with `after < id <= up_to`, by id, with their postings.
    async fn journal_range(
        &mut self,
        after: i64,
        up_to: i64,
        limit: i64,
    ) -> StoreResult<Vec<Transaction>>;
    /// Appends a seal; a seal with its number already stored (another replica's sealer won the
    /// race) is a [`StoreError::Conflict`].
    async fn insert_seal(&mut self, seal: &Seal) -> StoreResult<()>;

    // Bulk import and export (`omo import`, `omo export`; `domain::import`).
    /// Of `external_ids`, those imported before, with the member each became.
    async fn imported_members(
        &mut self,
        external_ids: &[String],
    ) -> StoreResult<Vec<(String, String)>>;
    /// Writes import records (in the transaction of the chunk's flush).
    async fn record_imports(&mut self, records: &[super::import::ImportRecord]) -> StoreResult<()>;
    /// At most `limit` members after `after_member_id` by id, created at or after `since`,
    /// with their identifiers.
    async fn export_members(
        &mut self,
        after_member_id: &str,
        since: Option<DateTime<Utc>>,
        limit: i64,
    ) -> StoreResult<Vec<super::model::Member>>;
    /// At most `limit` lots after `after_lot_id`, by id.
    async fn export_lots(&mut self, after_lot_id: i64, limit: i64) -> StoreResult<Vec<Lot>>;
}
