//! Ledger events out (issue #22, API.md "EventService"): what a committed batch reports, and
//! the behaviour events an app tracks in.
//!
//! An event is data derived from what a batch wrote, so it is built in ONE place,
//! [`events_of`], from the batch's change set: every journal entry and coupon change the flush
//! writes has its events in the same flush (the outbox), and a refused command, whose rows the
//! batch rolled back, has none — no area can forget to emit one, nor emit one for a write that
//! did not happen. Events that no ledger row reports (`tier.changed`, `offer.nearby`, the
//! expiry reminders) are built by their constructors here and pushed by the area that decides
//! them.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{
    Account, Asset,
    coupon::{Coupon, CouponState},
    ports::NewTransaction,
    receipt::{ReceiptRecord, ReceiptStatus},
};

/// The event types of API.md; their names are the public `Event.type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum EventType {
    PointsEarned,
    PointsRedeemed,
    PointsAdjusted,
    PointsExpiring,
    PointsExpired,
    CouponIssued,
    CouponRedeemed,
    CouponExpiring,
    CouponExpired,
    OrderCaptured,
    OrderRefunded,
    ReceiptAccepted,
    ReceiptReviewed,
    TierChanged,
    MemberMerged,
    OfferNearby,
}

impl EventType {
    pub const ALL: [EventType; 16] = [
        EventType::PointsEarned,
        EventType::PointsRedeemed,
        EventType::PointsAdjusted,
        EventType::PointsExpiring,
        EventType::PointsExpired,
        EventType::CouponIssued,
        EventType::CouponRedeemed,
        EventType::CouponExpiring,
        EventType::CouponExpired,
        EventType::OrderCaptured,
        EventType::OrderRefunded,
        EventType::ReceiptAccepted,
        EventType::ReceiptReviewed,
        EventType::TierChanged,
        EventType::MemberMerged,
        EventType::OfferNearby,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            EventType::PointsEarned => "points.earned",
            EventType::PointsRedeemed => "points.redeemed",
            EventType::PointsAdjusted => "points.adjusted",
            EventType::PointsExpiring => "points.expiring",
            EventType::PointsExpired => "points.expired",
            EventType::CouponIssued => "coupon.issued",
            EventType::CouponRedeemed => "coupon.redeemed",
            EventType::CouponExpiring => "coupon.expiring",
            EventType::CouponExpired => "coupon.expired",
            EventType::OrderCaptured => "order.captured",
            EventType::OrderRefunded => "order.refunded",
            EventType::ReceiptAccepted => "receipt.accepted",
            EventType::ReceiptReviewed => "receipt.reviewed",
            EventType::TierChanged => "tier.changed",
            EventType::MemberMerged => "member.merged",
            EventType::OfferNearby => "offer.nearby",
        }
    }

    pub fn parse(name: &str) -> Option<EventType> {
        EventType::ALL.into_iter().find(|t| t.as_str() == name)
    }
}

/// An event as a batch writes it into the outbox: no public `seq` yet (it is given in commit
/// order once committed, see `engine::events`).
#[derive(Debug, Clone, PartialEq)]
pub struct NewEvent {
    pub event_id: String,
    pub event_type: EventType,
    pub occurred_at: DateTime<Utc>,
    pub member_id: String,
    pub data: BTreeMap<String, Value>,
    /// Set on events announced once (see `once`): the outbox keeps one row per key.
    pub dedupe_key: Option<String>,
}

impl NewEvent {
    pub fn new(event_type: EventType, member_id: &str, occurred_at: DateTime<Utc>) -> Self {
        NewEvent {
            event_id: super::ids::new_event_id(),
            event_type,
            occurred_at,
            member_id: member_id.to_string(),
            data: BTreeMap::new(),
            dedupe_key: None,
        }
    }

    /// An event written at most once per `key`: a second one is dropped by the outbox.
    pub fn once(mut self, key: String) -> Self {
        self.dedupe_key = Some(key);
        self
    }

    fn with(mut self, key: &str, value: impl Into<Value>) -> Self {
        self.data.insert(key.to_string(), value.into());
        self
    }

    /// The data as the JSON object stored in the outbox.
    pub fn data_json(&self) -> String {
        serde_json::to_string(&self.data).expect("a map of JSON values serialises")
    }
}

/// A committed event of the feed (API `Event`).
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub seq: i64,
    pub event_id: String,
    pub event_type: String,
    pub occurred_at: DateTime<Utc>,
    pub member_id: String,
    pub data: serde_json::Map<String, Value>,
}

/// Which events a reader wants: those after `after_seq`, of `types` (empty: all), of one
/// member (empty: all), at most `limit`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EventFilter {
    pub after_seq: i64,
    pub types: Vec<String>,
    pub member_id: String,
    pub limit: i64,
    /// Only events up to this seq; 0: no bound.
    pub until_seq: i64,
}

impl EventFilter {
    pub fn matches(&self, event: &Event) -> bool {
        event.seq > self.after_seq
            && (self.until_seq == 0 || event.seq <= self.until_seq)
            && (self.types.is_empty() || self.types.contains(&event.event_type))
            && (self.member_id.is_empty() || self.member_id == event.member_id)
    }
}

/// What `omo verify` reads of the feed: how the numbered seqs stand, and the captures of the
/// journal against their `order.captured` events (from the first capture an event reports:
/// entries from before the outbox existed have none).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EventAudit {
    pub numbered: i64,
    pub min_seq: i64,
    pub max_seq: i64,
    pub captures_journalled: i64,
    pub captures_reported: i64,
}

impl EventAudit {
    /// The broken invariants: seqs not dense, a capture without its event (or two).
    pub fn violations(&self) -> Vec<String> {
        let mut out = Vec::new();
        if self.numbered > 0 && self.max_seq - self.min_seq + 1 != self.numbered {
            out.push(format!(
                "seqs {}..{} hold {} events: the feed has a gap",
                self.min_seq, self.max_seq, self.numbered
            ));
        }
        if self.captures_journalled != self.captures_reported {
            out.push(format!(
                "{} captures journalled, {} order.captured events",
                self.captures_journalled, self.captures_reported
            ));
        }
        out
    }
}

/// A member's points moved by one journal entry (asset PTS): what reached the member's
/// accounts from outside them, what left them for a redemption, an expiry, an adjustment.
#[derive(Debug, Default, PartialEq, Eq)]
struct PointsMoved {
    earned: i64,
    redeemed: i64,
    expired: i64,
    adjusted: i64,
    /// Redeemed points given back (a refund).
    restored: i64,
    /// Earned points taken back (a refund, a rejected receipt).
    reversed: i64,
}

fn points_moved(transaction: &NewTransaction) -> PointsMoved {
    let points = Asset::Points.to_string();
    let mut moved = PointsMoved::default();
    for posting in transaction.postings.iter().filter(|p| p.asset == points) {
        let from = Account::parse(&posting.from_account);
        let to = Account::parse(&posting.to_account);
        let is_members = |account: &Option<Account>| {
            matches!(
                account,
                Some(Account::Member(_) | Account::MemberPending(_) | Account::Hold(_))
            )
        };
        match (&from, &to) {
            (_, Some(Account::ProgramAdjustments)) => moved.adjusted -= posting.amount,
            (Some(Account::ProgramAdjustments), _) => moved.adjusted += posting.amount,
            (f, Some(Account::ProgramRedeemed { .. })) if is_members(f) => {
                moved.redeemed += posting.amount;
            }
            (f, Some(Account::ProgramExpired)) if is_members(f) => moved.expired += posting.amount,
            (Some(Account::ProgramRedeemed { .. }), t) if is_members(t) => {
                moved.restored += posting.amount;
            }
            (f, t) if !is_members(f) && is_members(t) => moved.earned += posting.amount,
            (f, t) if is_members(f) && !is_members(t) => moved.reversed += posting.amount,
            _ => {}
        }
    }
    moved
}

/// The events a journal entry reports (kinds as `engine` writes them).
fn events_of_transaction(transaction_id: i64, t: &NewTransaction) -> Vec<NewEvent> {
    let moved = points_moved(t);
    let at = t.occurred_at;
    let member = t.member_id.as_str();
    let with_entry = |event: NewEvent| {
        let event = event.with("transaction_id", transaction_id.to_string());
        if t.order_id.is_empty() {
            event
        } else {
            event.with("order_id", t.order_id.clone())
        }
    };
    let mut events = Vec::new();
    match t.kind {
        "sale" | "capture" => events.push(
            NewEvent::new(EventType::OrderCaptured, member, at)
                .with("store_id", t.store_id.clone())
                .with("channel", t.channel.map(|c| c.as_str()).unwrap_or_default()),
        ),
        "refund" => events.push(
            NewEvent::new(EventType::OrderRefunded, member, at)
                .with("points_reversed", moved.reversed)
                .with("points_restored", moved.restored),
        ),
        "receipt_approved" | "receipt_rejected" => events.push(
            NewEvent::new(EventType::ReceiptReviewed, member, at)
                .with("approved", t.kind == "receipt_approved")
                .with("receipt_id", metadata(t, "receipt_id")),
        ),
        _ => {}
    }
    if moved.earned > 0 && t.kind != "refund" {
        events
            .push(NewEvent::new(EventType::PointsEarned, member, at).with("points", moved.earned));
    }
    if moved.redeemed > 0 {
        events.push(
            NewEvent::new(EventType::PointsRedeemed, member, at).with("points", moved.redeemed),
        );
    }
    if moved.expired > 0 {
        events.push(
            NewEvent::new(EventType::PointsExpired, member, at).with("points", moved.expired),
        );
    }
    if moved.adjusted != 0 {
        events.push(
            NewEvent::new(EventType::PointsAdjusted, member, at)
                .with("points", moved.adjusted)
                .with("reason", metadata(t, "reason")),
        );
    }
    events.into_iter().map(with_entry).collect()
}

fn metadata(t: &NewTransaction, key: &str) -> String {
    t.metadata
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, value)| value.clone())
        .unwrap_or_default()
}

/// The event of a coupon that changed from `before` (None: new) to `now`, if it reports one.
/// When it happened is the coupon's own instant (issued, redeemed, valid until).
fn event_of_coupon(before: Option<&Coupon>, now: &Coupon) -> Option<NewEvent> {
    let (event_type, at) = match (before.map(|c| c.state), now.state) {
        (None, _) => (EventType::CouponIssued, now.issued_at),
        (Some(old), CouponState::Redeemed) if old != CouponState::Redeemed => (
            EventType::CouponRedeemed,
            now.redeemed_at.unwrap_or(now.issued_at),
        ),
        (Some(old), CouponState::Expired) if old != CouponState::Expired => (
            EventType::CouponExpired,
            now.valid_until.unwrap_or(now.issued_at),
        ),
        _ => return None,
    };
    let event = NewEvent::new(event_type, &now.member_id, at)
        .with("code", now.code.clone())
        .with("campaign_id", now.campaign_id.clone())
        .with(
            "expires_at",
            now.valid_until.map(|t| t.to_rfc3339()).unwrap_or_default(),
        );
    Some(if now.order_id.is_empty() {
        event
    } else {
        event.with("order_id", now.order_id.clone())
    })
}

/// A receipt whose status became ACCEPTED reports `receipt.accepted`.
fn event_of_receipt(before: Option<&ReceiptRecord>, now: &ReceiptRecord) -> Option<NewEvent> {
    let was = before.is_some_and(|r| r.status == ReceiptStatus::Accepted);
    let at = now.reviewed_at.unwrap_or(now.submitted_at);
    (!was && now.status == ReceiptStatus::Accepted).then(|| {
        NewEvent::new(EventType::ReceiptAccepted, &now.member_id, at)
            .with("receipt_id", now.receipt_id.clone())
            .with("store_id", now.receipt.store_id.clone())
            .with("points", now.points)
    })
}

/// What a batch changed, as far as events are concerned.
pub struct BatchWrites<'a> {
    pub transactions: &'a [(i64, NewTransaction)],
    pub coupons: Vec<(Option<&'a Coupon>, &'a Coupon)>,
    pub receipts: Vec<(Option<&'a ReceiptRecord>, &'a ReceiptRecord)>,
    /// Events the batch's commands pushed themselves (no ledger row reports them).
    pub pushed: &'a [NewEvent],
}

/// Every event a batch's writes report, journal entries first (in their order), then coupons,
/// receipts and what commands pushed.
pub fn events_of(writes: &BatchWrites<'_>) -> Vec<NewEvent> {
    let mut events: Vec<NewEvent> = writes
        .transactions
        .iter()
        .flat_map(|(id, t)| events_of_transaction(*id, t))
        .collect();
    events.extend(
        writes
            .coupons
            .iter()
            .filter_map(|(before, now)| event_of_coupon(*before, now)),
    );
    events.extend(
        writes
            .receipts
            .iter()
            .filter_map(|(before, now)| event_of_receipt(*before, now)),
    );
    events.extend(writes.pushed.iter().cloned());
    events
}

/// `tier.changed`: the member moved from one tier to another (tiers call it where they decide).
pub fn tier_changed(
    member_id: &str,
    from_tier_id: &str,
    to_tier_id: &str,
    at: DateTime<Utc>,
) -> NewEvent {
    NewEvent::new(EventType::TierChanged, member_id, at)
        .with("from_tier_id", from_tier_id)
        .with("tier_id", to_tier_id)
}

/// `member.merged`: `source_member_id` was merged into `member_id` (MergeMembers pushes it:
/// a merge without points writes no journal entry to report it).
pub fn member_merged(member_id: &str, source_member_id: &str, at: DateTime<Utc>) -> NewEvent {
    NewEvent::new(EventType::MemberMerged, member_id, at).with("source_member_id", source_member_id)
}

/// `offer.nearby`: an accepted location near a store with a coupon on offer there.
pub fn offer_nearby(
    member_id: &str,
    store_id: &str,
    campaign_id: &str,
    distance_m: f64,
    at: DateTime<Utc>,
) -> NewEvent {
    NewEvent::new(EventType::OfferNearby, member_id, at)
        .with("store_id", store_id)
        .with("campaign_id", campaign_id)
        .with("distance_m", distance_m.round())
}

/// `points.expiring`: a lot's points expire at `expires_at`.
pub fn points_expiring(
    member_id: &str,
    lot_id: i64,
    points: i64,
    expires_at: DateTime<Utc>,
    at: DateTime<Utc>,
) -> NewEvent {
    NewEvent::new(EventType::PointsExpiring, member_id, at)
        .with("lot_id", lot_id.to_string())
        .with("points", points)
        .with("expires_at", expires_at.to_rfc3339())
        .once(points_expiring_key(lot_id))
}

/// The dedupe key of `offer.nearby`: once per member, store and the store's local day.
pub fn offer_nearby_key(member_id: &str, store_id: &str, local_day: chrono::NaiveDate) -> String {
    format!("offer.nearby:{member_id}:{store_id}:{local_day}")
}

/// The dedupe key of a lot's expiry reminder: the sweeper looks for lots without one.
pub fn points_expiring_key(lot_id: i64) -> String {
    format!("points.expiring:{lot_id}")
}

/// A live lot whose expiry is near and not yet announced (the sweeper's reminders).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExpiringLot {
    pub lot_id: i64,
    pub member_id: String,
    pub points: i64,
    pub expires_at: DateTime<Utc>,
}

/// An active coupon whose validity ends soon and is not yet announced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExpiringCoupon {
    pub code: String,
    pub campaign_id: String,
    pub member_id: String,
    pub expires_at: DateTime<Utc>,
}

/// The dedupe key of a coupon's expiry reminder.
pub fn coupon_expiring_key(code: &str) -> String {
    format!("coupon.expiring:{code}")
}

/// How long ahead of its end a coupon's `coupon.expiring` goes out (API.md: a day).
pub const COUPON_REMINDER_HOURS: i64 = 24;

/// `coupon.expiring`: an active coupon's validity ends at `expires_at` (once per coupon).
pub fn coupon_expiring(coupon: &ExpiringCoupon, at: DateTime<Utc>) -> NewEvent {
    NewEvent::new(EventType::CouponExpiring, &coupon.member_id, at)
        .with("code", coupon.code.clone())
        .with("campaign_id", coupon.campaign_id.clone())
        .with("expires_at", coupon.expires_at.to_rfc3339())
        .once(coupon_expiring_key(&coupon.code))
}

/// A behaviour event an app tracked (TrackEvent), as the EVENT rules see it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrackedEvent {
    pub member: super::model::MemberRef,
    pub event_type: String,
    /// When it happened; unset: when omo received it.
    pub occurred_at: Option<DateTime<Utc>>,
    pub channel: Option<super::model::Channel>,
    pub store_id: String,
    pub attributes: BTreeMap<String, String>,
}

/// What TrackEvent did (API `TrackEventResponse`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrackResult {
    pub event_id: String,
    pub rules_fired: Vec<RuleFired>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RuleFired {
    pub rule_id: String,
    pub points_awarded: i64,
    pub coupons_issued: Vec<String>,
}

/// Whether `name` is a valid tracked event type: 1-64 characters of `[a-z0-9_.]`.
pub fn is_event_type_name(name: &str) -> bool {
    (1..=64).contains(&name.chars().count())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '_' | '.'))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::model::{Channel, Posting};

    fn entry(kind: &'static str, postings: Vec<Posting>) -> NewTransaction {
        let at = DateTime::from_timestamp(1_700_000_000, 0).expect("instant");
        NewTransaction {
            kind,
            member_id: "m1".into(),
            occurred_at: at,
            recorded_at: at,
            channel: Some(Channel::Store),
            store_id: "s1".into(),
            order_id: "o1".into(),
            postings,
            metadata: Vec::new(),
        }
    }

    fn points(from: Account, to: Account, amount: i64) -> Posting {
        Posting::new(&from, &to, &Asset::Points, amount)
    }

    fn types(events: &[NewEvent]) -> Vec<&'static str> {
        events.iter().map(|e| e.event_type.as_str()).collect()
    }

    #[test]
    fn a_sale_reports_its_capture_its_earning_and_its_redemption() {
        let member = Account::Member("m1".into());
        let sale = entry(
            "sale",
            vec![
                points(member.clone(), Account::redeemed(Channel::Store, "s1"), 30),
                points(Account::ProgramIssued, member.clone(), 12),
                points(Account::Rule("r1".into()), member, 5),
            ],
        );
        let events = events_of_transaction(7, &sale);
        assert_eq!(
            types(&events),
            ["order.captured", "points.earned", "points.redeemed"]
        );
        assert_eq!(events[1].data["points"], 17);
        assert_eq!(events[2].data["points"], 30);
        assert!(events.iter().all(|e| e.data["order_id"] == "o1"));
        assert!(events.iter().all(|e| e.data["transaction_id"] == "7"));
    }

    #[test]
    fn an_adjustment_is_signed_and_an_expiry_counted() {
        let member = Account::Member("m1".into());
        let debit = entry(
            "adjust",
            vec![points(member.clone(), Account::ProgramAdjustments, 8)],
        );
        let events = events_of_transaction(1, &debit);
        assert_eq!(types(&events), ["points.adjusted"]);
        assert_eq!(events[0].data["points"], -8);
        let expire = entry("expire", vec![points(member, Account::ProgramExpired, 3)]);
        assert_eq!(
            types(&events_of_transaction(2, &expire)),
            ["points.expired"]
        );
    }

    #[test]
    fn a_refund_reports_what_it_took_back_and_gave_back_not_an_earning() {
        let member = Account::Member("m1".into());
        let refund = entry(
            "refund",
            vec![
                points(member.clone(), Account::ProgramIssued, 6),
                points(Account::redeemed(Channel::Store, "s1"), member, 50),
            ],
        );
        let events = events_of_transaction(3, &refund);
        assert_eq!(types(&events), ["order.refunded"]);
        assert_eq!(events[0].data["points_reversed"], 6);
        assert_eq!(events[0].data["points_restored"], 50);
    }

    #[test]
    fn moves_between_a_members_own_accounts_report_nothing() {
        let mature = entry(
            "mature",
            vec![points(
                Account::MemberPending("m1".into()),
                Account::Member("m1".into()),
                4,
            )],
        );
        assert!(events_of_transaction(1, &mature).is_empty());
    }

    #[test]
    fn the_audit_finds_a_gap_and_a_capture_without_its_event() {
        let sound = EventAudit {
            numbered: 3,
            min_seq: 1,
            max_seq: 3,
            captures_journalled: 2,
            captures_reported: 2,
        };
        assert!(sound.violations().is_empty());
        let gap = EventAudit {
            max_seq: 4,
            ..sound
        };
        assert_eq!(gap.violations().len(), 1);
        let unreported = EventAudit {
            captures_reported: 1,
            ..sound
        };
        assert_eq!(unreported.violations().len(), 1);
        assert!(EventAudit::default().violations().is_empty());
    }

    #[test]
    fn event_types_round_trip_and_names_are_checked() {
        for event_type in EventType::ALL {
            assert_eq!(EventType::parse(event_type.as_str()), Some(event_type));
        }
        assert!(is_event_type_name("cart.add_2"));
        assert!(!is_event_type_name(""));
        assert!(!is_event_type_name("Cart"));
        assert!(!is_event_type_name(&"a".repeat(65)));
    }
}
