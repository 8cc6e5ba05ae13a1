//! The domain's records: members, program settings, stores, orders, ledger transactions, lots.

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use super::{
    account::{Account, Asset},
    error::DomainError,
    money::Money,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Channel {
    Ec,
    Store,
    App,
}

impl Channel {
    pub const ALL: [Channel; 3] = [Channel::Ec, Channel::Store, Channel::App];

    pub fn as_str(self) -> &'static str {
        match self {
            Channel::Ec => "ec",
            Channel::Store => "store",
            Channel::App => "app",
        }
    }

    pub fn parse(s: &str) -> Option<Channel> {
        Channel::ALL.into_iter().find(|c| c.as_str() == s)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Identifier {
    pub kind: String,
    pub value: String,
}

/// How a request names a member.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum MemberRef {
    Id(String),
    Identifier(Identifier),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum MemberState {
    Active,
    Merged,
    /// Personal data erased (EraseMember); the pseudonymous id stays in the ledger. Stored as
    /// `erased_at` (migration 0015), not in the state column.
    Erased,
}

impl MemberState {
    pub fn as_str(self) -> &'static str {
        match self {
            MemberState::Active => "active",
            MemberState::Merged => "merged",
            MemberState::Erased => "erased",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "active" => Some(Self::Active),
            "merged" => Some(Self::Merged),
            "erased" => Some(Self::Erased),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    pub member_id: String,
    pub identifiers: Vec<Identifier>,
    pub display_name: String,
    pub state: MemberState,
    pub merged_into: Option<String>,
    pub created_at: DateTime<Utc>,
    /// UpdateMember's attributes (for segments). Outcomes remembered before the field read
    /// as none.
    #[serde(default)]
    pub attributes: std::collections::BTreeMap<String, String>,
    /// Where the member stands among the program's tiers. Outcomes remembered before the
    /// field read as none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tier: Option<super::tier::TierStatus>,
}

/// The member's row as the engine sees it while it works (without identifiers).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberRow {
    pub member_id: String,
    pub display_name: String,
    pub state: MemberState,
    pub merged_into: Option<String>,
    pub created_at: DateTime<Utc>,
    pub lifetime_earned_points: i64,
    pub lifetime_redeemed_points: i64,
    pub attributes: std::collections::BTreeMap<String, String>,
    /// When EraseMember erased the member (state `Erased`).
    pub erased_at: Option<DateTime<Utc>>,
    /// The member's tier (`domain::tier`): raised by the batch that lifts spend over a
    /// threshold, lowered only by the monthly review.
    pub tier: super::tier::MemberTier,
}

impl MemberRow {
    /// The state column as stored: an erased member's erasure is `erased_at` (migration 0015).
    pub fn stored_state(&self) -> &'static str {
        match self.state {
            MemberState::Erased => MemberState::Active.as_str(),
            state => state.as_str(),
        }
    }

    /// The state as read back: a set `erased_at` wins over the state column.
    pub fn state_as_read(stored: MemberState, erased_at: Option<DateTime<Utc>>) -> MemberState {
        if erased_at.is_some() {
            MemberState::Erased
        } else {
            stored
        }
    }
}

/// Program-wide settings (one row).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Program {
    pub currency_code: String,
    /// Currency value of one point.
    pub point_value: Decimal,
    /// Points per currency unit paid.
    pub earn_rate: Decimal,
    /// Per-channel overrides of `earn_rate`.
    pub channel_earn_rates: BTreeMap<Channel, Decimal>,
    /// Days an earned lot stays spendable; 0 = never expires.
    pub point_expiry_days: i32,
    /// Days EC points stay pending after capture (the return window); 0 = usable at once.
    pub ec_pending_days: i32,
    pub hold_ttl_seconds: i32,
    pub max_receipts_per_day: i32,
    /// Most points one order may earn; 0 = no cap. An order that would earn more is refused
    /// (a mistyped amount at a register must not mint a fortune). Programs stored before the
    /// field existed read as uncapped.
    #[serde(default)]
    pub max_points_per_order: i64,
    /// How many days old a register sale's `occurred_at` may be (offline replay); 0 = no bound.
    /// Programs stored before the field existed read as the default.
    #[serde(default = "default_max_offline_age_days")]
    pub max_offline_age_days: i32,
    /// IANA zone of what belongs to no store: reports bucket liability into its months and
    /// activity without a store into its days. Programs stored before the field existed read
    /// as the default, the stores' default too.
    #[serde(default = "default_time_zone")]
    pub time_zone: String,
    /// Most points one receipt earns without review; 0 = no cap. A receipt that would earn
    /// more waits for review (a rule generous by mistake, or a made-up total, must not mint a
    /// fortune at once). Programs stored before the field existed read as the default.
    #[serde(default = "default_max_points_per_receipt")]
    pub max_points_per_receipt: i64,
    /// Receipt totals at or above go to review, for the receipt rules that set no threshold of
    /// their own; None = only the rules' thresholds. Programs stored before the field existed
    /// read as the default.
    #[serde(default = "default_receipt_review_threshold")]
    pub receipt_review_threshold: Option<super::money::Money>,
    /// Days ahead of a lot's expiry that its `points.expiring` event is written; 0 = none.
    /// Programs stored before the field existed read as the default.
    #[serde(default = "default_expiry_reminder_days")]
    pub expiry_reminder_days: i32,
    /// How near (meters) an accepted location must be to a store with a coupon on offer for
    /// an `offer.nearby` event; 0 = none. Programs stored before the field read the default.
    #[serde(default = "default_nearby_offer_radius_m")]
    pub nearby_offer_radius_m: i32,
    /// Member tiers by increasing `min_spend` (`domain::tier`); none before the field existed.
    #[serde(default)]
    pub tiers: Vec<super::tier::Tier>,
    /// Months of spend a tier counts (the current month and those before it).
    #[serde(default = "default_tier_window_months")]
    pub tier_window_months: i32,
}

fn default_tier_window_months() -> i32 {
    super::tier::DEFAULT_TIER_WINDOW_MONTHS
}

/// The `offer.nearby` radius unless the program says: a couple of minutes' walk.
pub const DEFAULT_NEARBY_OFFER_RADIUS_M: i32 = 200;

fn default_nearby_offer_radius_m() -> i32 {
    DEFAULT_NEARBY_OFFER_RADIUS_M
}

/// Days ahead of an expiry that the reminder goes out, unless the program says (API.md).
pub const DEFAULT_EXPIRY_REMINDER_DAYS: i32 = 7;

fn default_expiry_reminder_days() -> i32 {
    DEFAULT_EXPIRY_REMINDER_DAYS
}

/// Points one receipt may earn without review, unless the program says: ¥1,000,000 of
/// receipts at the default earn rate.
pub const DEFAULT_MAX_POINTS_PER_RECEIPT: i64 = 10_000;

fn default_max_points_per_receipt() -> i64 {
    DEFAULT_MAX_POINTS_PER_RECEIPT
}

/// The receipt total that goes to review when no rule says otherwise (in the program's
/// currency): a large shop receipt is rare, and a made-up one is the costly kind.
pub const DEFAULT_RECEIPT_REVIEW_THRESHOLD: i64 = 100_000;

fn default_receipt_review_threshold() -> Option<super::money::Money> {
    super::money::Money::new(Decimal::from(DEFAULT_RECEIPT_REVIEW_THRESHOLD)).ok()
}

/// The zone of a program or store that names none.
pub const DEFAULT_TIME_ZONE: &str = "Asia/Tokyo";

fn default_time_zone() -> String {
    DEFAULT_TIME_ZONE.to_string()
}

/// Days an offline register sale may be replayed after it happened, unless the program says.
pub const DEFAULT_MAX_OFFLINE_AGE_DAYS: i32 = 30;

fn default_max_offline_age_days() -> i32 {
    DEFAULT_MAX_OFFLINE_AGE_DAYS
}

impl Default for Program {
    fn default() -> Self {
        Self {
            currency_code: "JPY".into(),
            point_value: Decimal::ONE,
            earn_rate: Decimal::new(1, 2),
            channel_earn_rates: BTreeMap::new(),
            point_expiry_days: 365,
            ec_pending_days: 0,
            hold_ttl_seconds: 900,
            max_receipts_per_day: 5,
            max_points_per_order: 0,
            max_offline_age_days: DEFAULT_MAX_OFFLINE_AGE_DAYS,
            time_zone: default_time_zone(),
            max_points_per_receipt: DEFAULT_MAX_POINTS_PER_RECEIPT,
            expiry_reminder_days: DEFAULT_EXPIRY_REMINDER_DAYS,
            nearby_offer_radius_m: DEFAULT_NEARBY_OFFER_RADIUS_M,
            receipt_review_threshold: default_receipt_review_threshold(),
            tiers: Vec::new(),
            tier_window_months: default_tier_window_months(),
        }
    }
}

impl Program {
    pub fn earn_rate_for(&self, channel: Channel) -> Decimal {
        self.channel_earn_rates
            .get(&channel)
            .copied()
            .unwrap_or(self.earn_rate)
    }

    pub fn currency_exponent(&self) -> u32 {
        super::money::currency_exponent(&self.currency_code)
    }

    /// Refuses an order that would earn more points than `max_points_per_order` allows.
    pub fn check_earn_cap(&self, points_earned: i64) -> Result<(), DomainError> {
        if self.max_points_per_order > 0 && points_earned > self.max_points_per_order {
            return Err(DomainError::EarnCapExceeded {
                points: points_earned,
                cap: self.max_points_per_order,
            });
        }
        Ok(())
    }

    /// Refuses a register sale that happened longer ago than `max_offline_age_days`.
    pub fn check_offline_age(
        &self,
        occurred_at: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<(), DomainError> {
        let bound = i64::from(self.max_offline_age_days);
        if bound > 0 && occurred_at < now - Duration::days(bound) {
            return Err(DomainError::TooOld { max_days: bound });
        }
        Ok(())
    }

    /// When points earned at `at` expire (None: never).
    pub fn lot_expiry(&self, at: DateTime<Utc>) -> Option<DateTime<Utc>> {
        (self.point_expiry_days > 0).then(|| at + Duration::days(self.point_expiry_days.into()))
    }

    /// When points earned at `at` in `channel` become available (None: at once).
    pub fn pending_until(&self, channel: Channel, at: DateTime<Utc>) -> Option<DateTime<Utc>> {
        (channel == Channel::Ec && self.ec_pending_days > 0)
            .then(|| at + Duration::days(self.ec_pending_days.into()))
    }
}

/// New values for some program settings (`None` keeps the current value).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProgramPatch {
    pub currency_code: Option<String>,
    pub point_value: Option<Decimal>,
    pub earn_rate: Option<Decimal>,
    pub channel_earn_rates: Option<BTreeMap<Channel, Decimal>>,
    pub point_expiry_days: Option<i32>,
    pub ec_pending_days: Option<i32>,
    pub hold_ttl_seconds: Option<i32>,
    pub max_receipts_per_day: Option<i32>,
    #[serde(default)]
    pub max_points_per_order: Option<i64>,
    #[serde(default)]
    pub max_offline_age_days: Option<i32>,
    #[serde(default)]
    pub time_zone: Option<String>,
    #[serde(default)]
    pub max_points_per_receipt: Option<i64>,
    /// `Some(None)` clears the threshold (written `null`, and left out when untouched, so the
    /// two requests hash apart).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub receipt_review_threshold: Option<Option<super::money::Money>>,
    /// Left out when untouched, so that requests remembered before the field hash the same.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expiry_reminder_days: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nearby_offer_radius_m: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tiers: Option<Vec<super::tier::Tier>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tier_window_months: Option<i32>,
}

impl ProgramPatch {
    pub fn apply(self, program: &mut Program) {
        set(&mut program.currency_code, self.currency_code);
        set(&mut program.point_value, self.point_value);
        set(&mut program.earn_rate, self.earn_rate);
        set(&mut program.channel_earn_rates, self.channel_earn_rates);
        set(&mut program.point_expiry_days, self.point_expiry_days);
        set(&mut program.ec_pending_days, self.ec_pending_days);
        set(&mut program.hold_ttl_seconds, self.hold_ttl_seconds);
        set(&mut program.max_receipts_per_day, self.max_receipts_per_day);
        set(&mut program.max_points_per_order, self.max_points_per_order);
        set(&mut program.max_offline_age_days, self.max_offline_age_days);
        set(&mut program.time_zone, self.time_zone);
        set(
            &mut program.max_points_per_receipt,
            self.max_points_per_receipt,
        );
        set(
            &mut program.receipt_review_threshold,
            self.receipt_review_threshold,
        );
        set(&mut program.expiry_reminder_days, self.expiry_reminder_days);
        set(
            &mut program.nearby_offer_radius_m,
            self.nearby_offer_radius_m,
        );
        set(&mut program.tiers, self.tiers);
        set(&mut program.tier_window_months, self.tier_window_months);
    }
}

/// Replaces `field` with the patch's value, if it has one.
fn set<T>(field: &mut T, value: Option<T>) {
    if let Some(value) = value {
        *field = value;
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct LatLng {
    pub latitude: f64,
    pub longitude: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Store {
    pub store_id: String,
    pub name: String,
    pub location: LatLng,
    pub time_zone: String,
    pub geofence_radius_m: f64,
    pub geofence_polygon: Vec<LatLng>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LineItem {
    pub line_id: String,
    pub sku: String,
    pub category: String,
    pub quantity: i32,
    pub amount: Money,
}

/// A line of an order, and how many of its items have been returned.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderLine {
    #[serde(flatten)]
    pub item: LineItem,
    #[serde(default)]
    pub refunded_quantity: i32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum OrderState {
    Authorized,
    Captured,
    Voided,
    Expired,
    PartiallyRefunded,
    Refunded,
}

impl OrderState {
    pub fn as_str(self) -> &'static str {
        match self {
            OrderState::Authorized => "authorized",
            OrderState::Captured => "captured",
            OrderState::Voided => "voided",
            OrderState::Expired => "expired",
            OrderState::PartiallyRefunded => "partially_refunded",
            OrderState::Refunded => "refunded",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [
            Self::Authorized,
            Self::Captured,
            Self::Voided,
            Self::Expired,
            Self::PartiallyRefunded,
            Self::Refunded,
        ]
        .into_iter()
        .find(|state| state.as_str() == s)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Order {
    pub order_id: String,
    pub member_id: String,
    pub state: OrderState,
    pub channel: Channel,
    pub store_id: String,
    pub register_id: String,
    pub receipt_no: String,
    pub lines: Vec<OrderLine>,
    pub total: Money,
    pub coupon_discount: Money,
    pub points_redeemed: i64,
    pub amount_due: Money,
    /// From the authorization on, what the order earns when captured (the capture books it);
    /// see [`Order::points_earned_so_far`] for what it has earned.
    pub points_earned: i64,
    /// Points of `points_earned` still pending (EC return window).
    pub points_pending: i64,
    pub coupon_codes: Vec<String>,
    pub hold_expires_at: Option<DateTime<Utc>>,
    pub refunded_amount: Money,
    /// Points of `points_earned` taken back by refunds so far (including shortfall).
    pub points_reversed: i64,
    /// Points of `points_redeemed` given back by refunds so far.
    pub points_restored: i64,
    pub occurred_at: DateTime<Utc>,
    pub created_at: DateTime<Utc>,
    /// `points_earned` part by part: the program's base rate and each rule's award. Empty for
    /// an order that earns nothing or was stored before rules: see [`Order::earn_parts`].
    pub earn_breakdown: Vec<EarnPart>,
}

/// One part of what an order earns: the program's base rate (`rule_id` empty) or one rule's
/// award, and how much of it refunds took back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EarnPart {
    pub rule_id: String,
    pub points: i64,
    #[serde(default)]
    pub reversed: i64,
}

impl EarnPart {
    pub fn base(points: i64) -> Self {
        Self {
            rule_id: String::new(),
            points,
            reversed: 0,
        }
    }
}

impl Order {
    /// Whether the order was captured (refunds included): it counts as a purchase.
    pub fn is_captured(&self) -> bool {
        matches!(
            self.state,
            OrderState::Captured | OrderState::PartiallyRefunded | OrderState::Refunded
        )
    }

    /// The parts of `points_earned`; an order stored before rules earned the base alone.
    pub fn earn_parts(&self) -> Vec<EarnPart> {
        if self.earn_breakdown.is_empty() && self.points_earned > 0 {
            return vec![EarnPart {
                reversed: self.points_reversed,
                ..EarnPart::base(self.points_earned)
            }];
        }
        self.earn_breakdown.clone()
    }

    /// Points the order has earned: none until it is captured (an authorized, voided or
    /// expired order only carries what it would earn).
    pub fn points_earned_so_far(&self) -> i64 {
        if self.is_captured() {
            self.points_earned
        } else {
            0
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefundResult {
    pub order: Order,
    pub points_restored: i64,
    pub points_reversed: i64,
    pub points_shortfall: i64,
    pub coupons_restored: Vec<String>,
    /// What this refund took back, part by part (the order's `earn_breakdown` parts).
    #[serde(default)]
    pub reversed_breakdown: Vec<EarnPart>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Posting {
    pub from_account: String,
    pub to_account: String,
    pub asset: String,
    pub amount: i64,
}

impl Posting {
    pub fn new(from: &Account, to: &Account, asset: &Asset, amount: i64) -> Self {
        Self {
            from_account: from.to_string(),
            to_account: to.to_string(),
            asset: asset.to_string(),
            amount,
        }
    }
}

/// A ledger transaction as stored and as returned to clients.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Transaction {
    pub transaction_id: i64,
    pub kind: String,
    pub member_id: String,
    pub occurred_at: DateTime<Utc>,
    pub recorded_at: DateTime<Utc>,
    pub channel: Option<Channel>,
    pub store_id: String,
    pub order_id: String,
    pub postings: Vec<Posting>,
    pub metadata: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExpiringPoints {
    pub points: i64,
    pub expires_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Balance {
    pub member_id: String,
    pub available_points: i64,
    pub pending_points: i64,
    pub held_points: i64,
    pub expiring: Vec<ExpiringPoints>,
    pub lifetime_earned_points: i64,
    pub lifetime_redeemed_points: i64,
    /// Of `available_points`, those in limited-time lots.
    pub limited_points: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum LotState {
    /// Earned, not yet spendable (EC return window).
    Pending,
    Available,
    /// Past `expires_at`; only a part still held by an open order may remain.
    Expired,
}

impl LotState {
    pub fn as_str(self) -> &'static str {
        match self {
            LotState::Pending => "pending",
            LotState::Available => "available",
            LotState::Expired => "expired",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "pending" => Some(Self::Pending),
            "available" => Some(Self::Available),
            "expired" => Some(Self::Expired),
            _ => None,
        }
    }
}

/// A batch of points earned together, spent soonest-expiry first.
///
/// `remaining_points` includes `held_points` (reserved by authorized orders), so the sum of a
/// member's non-pending remainders equals available + held.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lot {
    pub lot_id: i64,
    pub member_id: String,
    pub order_id: String,
    pub state: LotState,
    pub earned_at: DateTime<Utc>,
    pub matures_at: Option<DateTime<Utc>>,
    pub expires_at: Option<DateTime<Utc>>,
    pub original_points: i64,
    pub remaining_points: i64,
    pub held_points: i64,
    /// Limited-time points: a rule's (or an admin grant's) points with an expiry of their own.
    pub limited: bool,
}

impl Lot {
    pub fn free_points(&self) -> i64 {
        self.remaining_points - self.held_points
    }
}

/// Points an order took from one lot (held while authorized, spent once captured).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderLot {
    pub order_id: String,
    pub lot_id: i64,
    pub points: i64,
    pub restored_points: i64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_program_stored_before_the_caps_reads_with_their_defaults() {
        let stored = r#"{"currency_code":"JPY","point_value":"1","earn_rate":"0.01",
            "channel_earn_rates":{},"point_expiry_days":365,"ec_pending_days":0,
            "hold_ttl_seconds":900,"max_receipts_per_day":5}"#;
        let program: Program = serde_json::from_str(stored).expect("old program");
        assert_eq!(program, Program::default());
        assert!(program.check_earn_cap(i64::MAX).is_ok(), "uncapped");
    }

    #[test]
    fn caps_refuse_past_their_bounds_only() {
        let now = DateTime::from_timestamp(1_775_000_000, 0).expect("instant");
        let program = Program {
            max_points_per_order: 100,
            max_offline_age_days: 7,
            ..Program::default()
        };
        assert!(program.check_earn_cap(100).is_ok());
        assert_eq!(
            program.check_earn_cap(101).map_err(|e| e.reason()),
            Err("EARN_CAP_EXCEEDED")
        );
        assert!(
            program
                .check_offline_age(now - Duration::days(7), now)
                .is_ok()
        );
        assert_eq!(
            program
                .check_offline_age(now - Duration::days(7) - Duration::seconds(1), now)
                .map_err(|e| e.reason()),
            Err("TOO_OLD")
        );
    }
}
