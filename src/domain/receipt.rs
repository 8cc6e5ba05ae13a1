//! Photographed receipts (API.md `SubmitReceipt`): the receipt rules and the pure decision of
//! what a receipt earns. The engine loads the facts (is the store known, is the receipt already
//! claimed or recorded at the register, how many receipts the member sent today) and writes the
//! outcome; everything that can be decided from the receipt, the rules and the clock is here.

use chrono::{DateTime, Duration, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use super::{
    model::{LineItem, MemberRef},
    money::Money,
};

/// A receipt issued further ahead than this is from the future (clock skew allowance).
pub const MAX_RECEIPT_LEAD: Duration = Duration::minutes(5);
/// `max_age_days` of a rule that does not name one.
pub const DEFAULT_MAX_AGE_DAYS: i64 = 7;
/// Most product lines of one receipt.
pub const MAX_LINES: usize = 200;
/// Longest review note.
pub const MAX_NOTE_CHARS: usize = 1_000;

/// A receipt-scan rule (API.md `ReceiptRule`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReceiptRule {
    pub rule_id: String,
    /// Empty = every store.
    pub store_ids: Vec<String>,
    /// Points per currency unit of the total; None = the rule awards no points.
    pub earn_rate: Option<Decimal>,
    /// The campaign whose coupon the rule issues; empty = none.
    pub campaign_id: String,
    pub min_total: Money,
    /// All must hold.
    pub conditions: Vec<LineCondition>,
    pub max_age_days: i64,
    /// Totals at or above go to review; None = never.
    pub review_threshold: Option<Money>,
    /// By the receipt's `issued_at`: inclusive start, exclusive end.
    pub starts_at: Option<DateTime<Utc>>,
    pub ends_at: Option<DateTime<Utc>>,
}

/// At least `min_quantity` units over the lines that match the sku and category (an empty one
/// matches any).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LineCondition {
    pub sku: String,
    pub category: String,
    pub min_quantity: i32,
}

impl LineCondition {
    /// Whether `line` is of the sku and category (an empty one matches any).
    pub fn matches(&self, line: &LineItem) -> bool {
        (self.sku.is_empty() || line.sku == self.sku)
            && (self.category.is_empty() || line.category == self.category)
    }

    pub fn holds(&self, lines: &[LineItem]) -> bool {
        let units: i64 = lines
            .iter()
            .filter(|line| self.matches(line))
            .map(|line| i64::from(line.quantity))
            .sum();
        units >= i64::from(self.min_quantity.max(1))
    }
}

impl ReceiptRule {
    pub fn applies_to_store(&self, store_id: &str) -> bool {
        self.store_ids.is_empty() || self.store_ids.iter().any(|id| id == store_id)
    }

    /// Points the rule awards for `total`.
    pub fn points(&self, total: Money) -> i64 {
        self.earn_rate.map_or(0, |rate| total.floor_points(rate))
    }

    fn wants_review(&self, total: Money) -> bool {
        self.review_threshold
            .is_some_and(|threshold| total.amount() >= threshold.amount())
    }
}

/// A receipt as the engine decides it: the total, issue time and lines are known (read from
/// the raw text already, where the app sent only that).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Receipt {
    pub store_id: String,
    pub register_id: String,
    pub receipt_no: String,
    pub issued_at: DateTime<Utc>,
    pub total: Money,
    pub lines: Vec<LineItem>,
    /// Lowercase hex.
    pub image_sha256: String,
    /// The OCR text as sent (empty when the app sent lines).
    pub raw_text: String,
}

/// When a receipt was issued, as the request gives it: an instant, or the local time printed
/// on the receipt (read from its raw text), which only the store's time zone makes an instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum IssuedAt {
    At(DateTime<Utc>),
    Printed(chrono::NaiveDateTime),
}

/// A SubmitReceipt command: the receipt as sent, its issue time still to be placed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReceiptSubmission {
    pub member: MemberRef,
    pub issued_at: IssuedAt,
    /// `issued_at` is filled from `Self::issued_at` by the engine.
    pub receipt: Receipt,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ReceiptStatus {
    Accepted,
    PendingReview,
    Rejected,
}

impl ReceiptStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ReceiptStatus::Accepted => "accepted",
            ReceiptStatus::PendingReview => "pending_review",
            ReceiptStatus::Rejected => "rejected",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        [Self::Accepted, Self::PendingReview, Self::Rejected]
            .into_iter()
            .find(|status| status.as_str() == text)
    }

    /// Whether a receipt in this status holds its receipt number and image, so that nobody can
    /// submit them again. A receipt refused at submission holds nothing: sent again (once a
    /// rule exists, say) it is judged afresh. One rejected in review keeps them.
    pub fn claims(self, reason: Option<ReceiptReason>) -> bool {
        self != ReceiptStatus::Rejected || reason == Some(ReceiptReason::ReviewRejected)
    }
}

/// Why a receipt was rejected or waits for review (API.md reasons).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ReceiptReason {
    Duplicate,
    AlreadyEarned,
    TooOld,
    FutureDated,
    UnknownStore,
    NoMatchingRule,
    /// An admin rejected it in review.
    ReviewRejected,
    /// Pending: the total is at or above a matching rule's review threshold.
    ReviewThreshold,
    /// Pending: the member sent more than the program's `max_receipts_per_day`.
    DailyLimit,
}

impl ReceiptReason {
    pub const ALL: [ReceiptReason; 9] = [
        Self::Duplicate,
        Self::AlreadyEarned,
        Self::TooOld,
        Self::FutureDated,
        Self::UnknownStore,
        Self::NoMatchingRule,
        Self::ReviewRejected,
        Self::ReviewThreshold,
        Self::DailyLimit,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Duplicate => "DUPLICATE",
            Self::AlreadyEarned => "ALREADY_EARNED",
            Self::TooOld => "TOO_OLD",
            Self::FutureDated => "FUTURE_DATED",
            Self::UnknownStore => "UNKNOWN_STORE",
            Self::NoMatchingRule => "NO_MATCHING_RULE",
            Self::ReviewRejected => "REVIEW_REJECTED",
            Self::ReviewThreshold => "REVIEW_THRESHOLD",
            Self::DailyLimit => "DAILY_LIMIT",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|reason| reason.as_str() == text)
    }
}

/// What the rules make of a receipt that passed the checks of the receipt itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleOutcome {
    /// The matching rules, by rule id; each applies once.
    pub rule_ids: Vec<String>,
    /// Sum of their points.
    pub points: i64,
    /// The campaigns of their coupons, one per rule that names one (in rule order).
    pub campaigns: Vec<(String, String)>,
    /// Some matching rule sends the total to review.
    pub review: bool,
}

/// The rules that take `receipt` submitted at `now`. None match: `TooOld` when some rule would
/// have taken it but for its age, otherwise `NoMatchingRule`.
pub fn apply_rules(
    rules: &[ReceiptRule],
    receipt: &Receipt,
    now: DateTime<Utc>,
) -> Result<RuleOutcome, ReceiptReason> {
    let mut too_old = false;
    let mut matching: Vec<&ReceiptRule> = Vec::new();
    for rule in rules {
        let takes = rule.applies_to_store(&receipt.store_id)
            && rule.starts_at.is_none_or(|at| receipt.issued_at >= at)
            && rule.ends_at.is_none_or(|at| receipt.issued_at < at)
            && receipt.total.amount() >= rule.min_total.amount()
            && rule.conditions.iter().all(|c| c.holds(&receipt.lines));
        if !takes {
            continue;
        }
        if now - receipt.issued_at > Duration::days(rule.max_age_days) {
            too_old = true;
            continue;
        }
        matching.push(rule);
    }
    if matching.is_empty() {
        return Err(if too_old {
            ReceiptReason::TooOld
        } else {
            ReceiptReason::NoMatchingRule
        });
    }
    matching.sort_by(|a, b| a.rule_id.cmp(&b.rule_id));
    Ok(RuleOutcome {
        rule_ids: matching.iter().map(|rule| rule.rule_id.clone()).collect(),
        points: matching
            .iter()
            .map(|rule| rule.points(receipt.total))
            .fold(0, i64::saturating_add),
        campaigns: matching
            .iter()
            .filter(|rule| !rule.campaign_id.is_empty())
            .map(|rule| (rule.rule_id.clone(), rule.campaign_id.clone()))
            .collect(),
        review: matching.iter().any(|rule| rule.wants_review(receipt.total)),
    })
}

/// Whether a receipt issued at `issued_at` is from the future at `now`.
pub fn is_future_dated(issued_at: DateTime<Utc>, now: DateTime<Utc>) -> bool {
    issued_at - now > MAX_RECEIPT_LEAD
}

/// A stored receipt submission (API.md `ReceiptRecord`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReceiptRecord {
    pub receipt_id: String,
    pub member_id: String,
    pub receipt: Receipt,
    pub status: ReceiptStatus,
    pub reason: Option<ReceiptReason>,
    /// Available when accepted, pending while in review, 0 when rejected.
    pub points: i64,
    /// The lot that holds the points (None without points).
    pub lot_id: Option<i64>,
    pub rule_ids: Vec<String>,
    pub coupon_codes: Vec<String>,
    pub submitted_at: DateTime<Utc>,
    pub reviewed_at: Option<DateTime<Utc>>,
    pub review_note: String,
}

impl ReceiptRecord {
    pub fn claims(&self) -> bool {
        self.status.claims(self.reason)
    }
}

/// What identifies a receipt across members: its number at the store's register, and the
/// photograph. Either one already claimed makes a submission a duplicate.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ReceiptClaim {
    Number {
        store_id: String,
        register_id: String,
        receipt_no: String,
    },
    Image(String),
}

impl ReceiptClaim {
    pub fn of(receipt: &Receipt) -> [ReceiptClaim; 2] {
        [
            ReceiptClaim::Number {
                store_id: receipt.store_id.clone(),
                register_id: receipt.register_id.clone(),
                receipt_no: receipt.receipt_no.clone(),
            },
            ReceiptClaim::Image(receipt.image_sha256.clone()),
        ]
    }
}

/// A ListReceipts query: a member's receipts (newest first), or every receipt in one status
/// (oldest first: the review queue).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReceiptQuery {
    Member {
        member: MemberRef,
        status: Option<ReceiptStatus>,
    },
    Status(ReceiptStatus),
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    fn money(text: &str) -> Money {
        text.parse().expect("money")
    }

    fn line(sku: &str, category: &str, quantity: i32) -> LineItem {
        LineItem {
            line_id: sku.into(),
            sku: sku.into(),
            category: category.into(),
            quantity,
            amount: money("100"),
        }
    }

    fn rule(rule_id: &str) -> ReceiptRule {
        ReceiptRule {
            rule_id: rule_id.into(),
            store_ids: Vec::new(),
            earn_rate: Some(Decimal::new(1, 2)),
            campaign_id: String::new(),
            min_total: money("0"),
            conditions: Vec::new(),
            max_age_days: DEFAULT_MAX_AGE_DAYS,
            review_threshold: None,
            starts_at: None,
            ends_at: None,
        }
    }

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 30, 3, 0, 0).unwrap()
    }

    fn receipt(total: &str, lines: Vec<LineItem>) -> Receipt {
        Receipt {
            store_id: "s1".into(),
            register_id: "r1".into(),
            receipt_no: "0001".into(),
            issued_at: now() - Duration::hours(2),
            total: money(total),
            lines,
            image_sha256: "ab".repeat(32),
            raw_text: String::new(),
        }
    }

    #[test]
    fn every_matching_rule_applies_once() {
        let mut coupon = rule("b-coupon");
        coupon.earn_rate = None;
        coupon.campaign_id = "c1".into();
        let outcome =
            apply_rules(&[coupon, rule("a-points")], &receipt("1234", vec![]), now()).unwrap();
        assert_eq!(outcome.rule_ids, vec!["a-points", "b-coupon"]);
        assert_eq!(outcome.points, 12, "floor(1234 × 0.01), once");
        assert_eq!(outcome.campaigns, vec![("b-coupon".into(), "c1".into())]);
        assert!(!outcome.review);
    }

    #[test]
    fn scope_total_dates_and_conditions_select_the_rules() {
        let mut other_store = rule("store");
        other_store.store_ids = vec!["s2".into()];
        let mut big = rule("big");
        big.min_total = money("5000");
        let mut later = rule("later");
        later.starts_at = Some(now());
        let mut ended = rule("ended");
        ended.ends_at = Some(now() - Duration::hours(2));
        let mut coffee = rule("coffee");
        coffee.conditions = vec![LineCondition {
            sku: String::new(),
            category: "coffee".into(),
            min_quantity: 2,
        }];
        let rules = [other_store, big, later, ended, coffee];
        let one_coffee = receipt(
            "1000",
            vec![line("beans", "coffee", 1), line("tea", "tea", 3)],
        );
        assert_eq!(
            apply_rules(&rules, &one_coffee, now()),
            Err(ReceiptReason::NoMatchingRule)
        );
        let two_coffees = receipt(
            "1000",
            vec![line("beans", "coffee", 1), line("drip", "coffee", 1)],
        );
        let outcome = apply_rules(&rules, &two_coffees, now()).unwrap();
        assert_eq!(outcome.rule_ids, vec!["coffee"]);
    }

    #[test]
    fn a_condition_may_name_a_sku_and_a_category() {
        let condition = LineCondition {
            sku: "beans".into(),
            category: "coffee".into(),
            min_quantity: 0,
        };
        assert!(condition.holds(&[line("beans", "coffee", 1)]));
        assert!(!condition.holds(&[line("beans", "tea", 5)]));
        assert!(!condition.holds(&[]), "min_quantity 0 means 1");
    }

    #[test]
    fn age_is_judged_per_rule() {
        let mut old = receipt("1000", vec![]);
        old.issued_at = now() - Duration::days(8);
        assert_eq!(
            apply_rules(&[rule("week")], &old, now()),
            Err(ReceiptReason::TooOld)
        );
        let mut month = rule("month");
        month.max_age_days = 30;
        let outcome = apply_rules(&[rule("week"), month], &old, now()).unwrap();
        assert_eq!(outcome.rule_ids, vec!["month"]);
        let mut exactly = receipt("1000", vec![]);
        exactly.issued_at = now() - Duration::days(7);
        assert!(apply_rules(&[rule("week")], &exactly, now()).is_ok());
    }

    #[test]
    fn a_total_at_the_threshold_goes_to_review() {
        let mut careful = rule("careful");
        careful.review_threshold = Some(money("10000"));
        let below = apply_rules(&[careful.clone()], &receipt("9999.99", vec![]), now());
        assert!(!below.unwrap().review);
        let at = apply_rules(&[careful], &receipt("10000", vec![]), now());
        assert!(at.unwrap().review);
    }

    #[test]
    fn future_dates_allow_five_minutes_of_skew() {
        assert!(!is_future_dated(now() + Duration::minutes(5), now()));
        assert!(is_future_dated(
            now() + Duration::minutes(5) + Duration::seconds(1),
            now()
        ));
    }

    #[test]
    fn only_receipts_that_earned_or_may_earn_claim_their_number() {
        use ReceiptReason::*;
        assert!(ReceiptStatus::Accepted.claims(None));
        assert!(ReceiptStatus::PendingReview.claims(Some(ReviewThreshold)));
        assert!(ReceiptStatus::Rejected.claims(Some(ReviewRejected)));
        for reason in [Duplicate, AlreadyEarned, TooOld, FutureDated, UnknownStore] {
            assert!(!ReceiptStatus::Rejected.claims(Some(reason)));
        }
        for reason in ReceiptReason::ALL {
            assert_eq!(ReceiptReason::parse(reason.as_str()), Some(reason));
        }
    }
}
