//! Photographed receipts (API.md `SubmitReceipt`): the receipt rules and the pure decision of
//! what a receipt earns. The engine loads the facts (is the store known, is the receipt already
//! claimed or recorded at the register, how many receipts the member sent today) and writes the
//! outcome; everything that can be decided from the receipt, the rules and the clock is here.

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, Utc};
use chrono_tz::Tz;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use super::{
    model::{LineItem, MemberRef},
    money::Money,
    rules::{Facts, ReceiptParams, Rule, Signal, TriggerParams, decide_without_counters},
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
    /// Totals at or above go to review; None = the program's `receipt_review_threshold`.
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

impl ReceiptParams {
    /// Points the rule awards for `total`.
    pub fn points(&self, total: Money) -> i64 {
        self.earn_rate.map_or(0, |rate| total.floor_points(rate))
    }

    /// Whether `total` goes to review: at or above the rule's threshold, or the program's
    /// (`default_threshold`) for a rule that sets none.
    fn wants_review(&self, total: Money, default_threshold: Option<Money>) -> bool {
        self.review_threshold
            .or(default_threshold)
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
    /// Rejected: the member already sent the program's `max_receipts_per_day` today. Refused
    /// rather than queued, so that nobody can flood the review queue.
    DailyLimit,
    /// Pending: the receipt would earn more than the program's `max_points_per_receipt`.
    PointsCap,
}

impl ReceiptReason {
    pub const ALL: [ReceiptReason; 10] = [
        Self::Duplicate,
        Self::AlreadyEarned,
        Self::TooOld,
        Self::FutureDated,
        Self::UnknownStore,
        Self::NoMatchingRule,
        Self::ReviewRejected,
        Self::ReviewThreshold,
        Self::DailyLimit,
        Self::PointsCap,
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
            // The name the API gives an order over `max_points_per_order`.
            Self::PointsCap => "EARN_CAP_EXCEEDED",
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
    /// Why the receipt waits for review (`ReviewThreshold` or `PointsCap`); None: it earns at
    /// once.
    pub review: Option<ReceiptReason>,
}

/// The program's settings every receipt rule obeys (API.md `Program`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ReceiptPolicy {
    /// The review threshold of rules that set none (`receipt_review_threshold`).
    pub review_threshold: Option<Money>,
    /// Most points one receipt earns without review (`max_points_per_receipt`); 0 = no cap.
    pub max_points: i64,
}

impl ReceiptPolicy {
    pub fn of(program: &super::model::Program) -> Self {
        Self {
            review_threshold: program.receipt_review_threshold,
            max_points: program.max_points_per_receipt,
        }
    }

    /// Why a receipt the rules take must wait for review, if it must.
    fn review(
        &self,
        matching: &[(&Rule, &ReceiptParams)],
        total: Money,
        points: i64,
    ) -> Option<ReceiptReason> {
        if matching
            .iter()
            .any(|(_, params)| params.wants_review(total, self.review_threshold))
        {
            Some(ReceiptReason::ReviewThreshold)
        } else if self.max_points > 0 && points > self.max_points {
            Some(ReceiptReason::PointsCap)
        } else {
            None
        }
    }
}

/// The RECEIPT rules that take `receipt` (issued at a store of zone `tz`) submitted at `now`,
/// under the program's `policy`. Each rule is decided by the rules core on the receipt's
/// facts (its store, total and lines, at its issue time: period, conditions); the receipt's own
/// part is its age. None match: `TooOld` when some rule would have taken it but for its age,
/// otherwise `NoMatchingRule`.
pub fn apply_rules(
    rules: &[Rule],
    receipt: &Receipt,
    tz: Tz,
    now: DateTime<Utc>,
    policy: &ReceiptPolicy,
) -> Result<RuleOutcome, ReceiptReason> {
    let no_attributes = BTreeMap::new();
    let facts = Facts {
        at: receipt.issued_at,
        tz,
        channel: None,
        store_id: &receipt.store_id,
        lines: &receipt.lines,
        total: receipt.total,
        paid: receipt.total,
        base_rate: Decimal::ZERO,
        event_type: "",
        attributes: &no_attributes,
        first_purchase: false,
        tier_id: None,
        signal: Signal::None,
    };
    let mut too_old = false;
    let mut matching: Vec<(&Rule, &ReceiptParams)> = Vec::new();
    for rule in rules {
        let TriggerParams::Receipt(params) = &rule.params else {
            continue;
        };
        if decide_without_counters(rule, &facts).is_err() {
            continue;
        }
        if now - receipt.issued_at > Duration::days(params.max_age_days) {
            too_old = true;
            continue;
        }
        matching.push((rule, params));
    }
    if matching.is_empty() {
        return Err(if too_old {
            ReceiptReason::TooOld
        } else {
            ReceiptReason::NoMatchingRule
        });
    }
    matching.sort_by(|a, b| a.0.rule_id.cmp(&b.0.rule_id));
    let points = matching
        .iter()
        .map(|(_, params)| params.points(receipt.total))
        .fold(0, i64::saturating_add);
    Ok(RuleOutcome {
        rule_ids: matching
            .iter()
            .map(|(rule, _)| rule.rule_id.clone())
            .collect(),
        points,
        campaigns: matching
            .iter()
            .filter_map(|(rule, _)| {
                let campaign_id = rule.effects.campaign_id.clone()?;
                Some((rule.rule_id.clone(), campaign_id))
            })
            .collect(),
        review: policy.review(&matching, receipt.total, points),
    })
}

/// What is wrong with a receipt's total, if anything. A total of nothing would claim the
/// receipt's number (and keep its true buyer from scanning it) for nothing; lines that do not
/// add up to the total mean one of them is made up, and the points follow the total.
pub fn total_problem(total: Money, lines: &[LineItem]) -> Option<String> {
    if total.amount() <= Decimal::ZERO {
        return Some("must be more than 0".into());
    }
    let sum: Money = lines.iter().map(|line| line.amount).sum();
    (!lines.is_empty() && sum.amount() != total.amount())
        .then(|| format!("must equal the sum of the line amounts ({sum})"))
}

/// Whether an accepted receipt also records a visit of its store: only when it was issued on
/// the local day (the store's zone) it was submitted. A visit is one (member, store, local
/// date) and visit rules count them; a receipt from an earlier day would record a visit of
/// that day long after it, so a drawer of old receipts (each within a rule's `max_age_days`)
/// would farm N-th-visit coupons. A window of 24 hours would still let yesterday's receipt
/// add yesterday's visit today; the same local day is the visit the receipt proves now, the
/// one a register sale or a geofence dwell would have recorded.
pub fn is_visit(issued_at: DateTime<Utc>, submitted_at: DateTime<Utc>, zone: Tz) -> bool {
    issued_at.with_timezone(&zone).date_naive() == submitted_at.with_timezone(&zone).date_naive()
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

/// A register receipt's key, (store_id, register_id, receipt_no), as omo compares register
/// receipts wherever they are named: by RecordSale and by SubmitReceipt alike, in the one claim
/// both consult. The register id and the receipt number are each trimmed of white space, ASCII
/// case-folded, and stripped of leading zeros (keeping one character), so that `" r9 "` and
/// `"R9"` name one register, `"02"` and `"2"` another, `"0456"` and `"456"` one receipt:
/// otherwise one paper receipt, typed another way, earns again. The store id is an id omo issued, compared
/// as it is. Only ASCII letters are folded: the API admits nothing else in these ids (letters,
/// digits, '.', '_', '-'; so no full-width digits either), and the migration that keyed the
/// stored claims (0011) folds exactly these, identically on both backends. Trimming keeps the
/// key right for a caller that does not check as the API does.
pub fn register_receipt_key(
    store_id: &str,
    register_id: &str,
    receipt_no: &str,
) -> (String, String, String) {
    (
        store_id.to_string(),
        receipt_key_part(register_id),
        receipt_key_part(receipt_no),
    )
}

fn receipt_key_part(raw: &str) -> String {
    let folded = raw.trim().to_ascii_lowercase();
    let significant = folded.trim_start_matches('0');
    if significant.is_empty() && !folded.is_empty() {
        "0".to_string()
    } else {
        significant.to_string()
    }
}

/// What identifies a receipt across members: its number at the store's register (its key,
/// [`register_receipt_key`]), and the photograph. Either one already claimed makes a
/// submission a duplicate.
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
    /// The claim of a register receipt, by its key.
    pub fn number(store_id: &str, register_id: &str, receipt_no: &str) -> ReceiptClaim {
        let (store_id, register_id, receipt_no) =
            register_receipt_key(store_id, register_id, receipt_no);
        ReceiptClaim::Number {
            store_id,
            register_id,
            receipt_no,
        }
    }

    pub fn of(receipt: &Receipt) -> [ReceiptClaim; 2] {
        [
            ReceiptClaim::number(&receipt.store_id, &receipt.register_id, &receipt.receipt_no),
            ReceiptClaim::Image(receipt.image_sha256.clone()),
        ]
    }
}

/// Who holds a register receipt's claim: the register's sale (an order id), which is the
/// truth about who bought, or a member's scan (a receipt id), until the register records the
/// sale.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ClaimHolder {
    Sale(String),
    Scan(String),
}

/// A register receipt's claim as a batch writes it (one row per key, `receipt_claims`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimWrite {
    /// [`register_receipt_key`].
    pub key: (String, String, String),
    pub holder: ClaimHolder,
    /// The scan whose claim a register sale takes over; None for a new claim. A claim another
    /// writer took meanwhile fails the write (a unique key, or a takeover that finds another
    /// holder), and the batch runs again and sees it.
    pub taken_from: Option<String>,
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

    /// CreateReceiptRule's rules as the rules core keeps them, at a store in Tokyo.
    fn apply(
        rules: &[ReceiptRule],
        receipt: &Receipt,
        now: DateTime<Utc>,
        policy: &ReceiptPolicy,
    ) -> Result<RuleOutcome, ReceiptReason> {
        let rules: Vec<Rule> = rules
            .iter()
            .cloned()
            .map(crate::domain::rules::views::of_receipt)
            .collect();
        apply_rules(&rules, receipt, chrono_tz::Asia::Tokyo, now, policy)
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
        let outcome = apply(
            &[coupon, rule("a-points")],
            &receipt("1234", vec![]),
            now(),
            &ReceiptPolicy::default(),
        )
        .unwrap();
        assert_eq!(outcome.rule_ids, vec!["a-points", "b-coupon"]);
        assert_eq!(outcome.points, 12, "floor(1234 × 0.01), once");
        assert_eq!(outcome.campaigns, vec![("b-coupon".into(), "c1".into())]);
        assert_eq!(outcome.review, None);
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
            apply(&rules, &one_coffee, now(), &ReceiptPolicy::default()),
            Err(ReceiptReason::NoMatchingRule)
        );
        let two_coffees = receipt(
            "1000",
            vec![line("beans", "coffee", 1), line("drip", "coffee", 1)],
        );
        let outcome = apply(&rules, &two_coffees, now(), &ReceiptPolicy::default()).unwrap();
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
            apply(&[rule("week")], &old, now(), &ReceiptPolicy::default()),
            Err(ReceiptReason::TooOld)
        );
        let mut month = rule("month");
        month.max_age_days = 30;
        let outcome = apply(
            &[rule("week"), month],
            &old,
            now(),
            &ReceiptPolicy::default(),
        )
        .unwrap();
        assert_eq!(outcome.rule_ids, vec!["month"]);
        let mut exactly = receipt("1000", vec![]);
        exactly.issued_at = now() - Duration::days(7);
        assert!(apply(&[rule("week")], &exactly, now(), &ReceiptPolicy::default()).is_ok());
    }

    #[test]
    fn a_total_at_the_threshold_goes_to_review() {
        let mut careful = rule("careful");
        careful.review_threshold = Some(money("10000"));
        let below = apply(
            &[careful.clone()],
            &receipt("9999.99", vec![]),
            now(),
            &ReceiptPolicy::default(),
        );
        assert_eq!(below.unwrap().review, None);
        let at = apply(
            &[careful],
            &receipt("10000", vec![]),
            now(),
            &ReceiptPolicy::default(),
        );
        assert_eq!(at.unwrap().review, Some(ReceiptReason::ReviewThreshold));
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
        for reason in [
            Duplicate,
            AlreadyEarned,
            TooOld,
            FutureDated,
            UnknownStore,
            DailyLimit,
        ] {
            assert!(!ReceiptStatus::Rejected.claims(Some(reason)));
        }
        for reason in ReceiptReason::ALL {
            assert_eq!(ReceiptReason::parse(reason.as_str()), Some(reason));
        }
    }

    #[test]
    fn a_register_receipt_is_keyed_however_it_is_typed() {
        let key = |register_id: &str, receipt_no: &str| {
            let (_, register_id, receipt_no) = register_receipt_key("s1", register_id, receipt_no);
            (register_id, receipt_no)
        };
        let printed = key("R9", "0456");
        for (register_id, receipt_no) in [
            ("r9", "456"),
            (" R9 ", "  0456\t"),
            ("R9", "000456"),
            ("r9", "0456\u{3000}"),
        ] {
            assert_eq!(
                key(register_id, receipt_no),
                printed,
                "{register_id:?} {receipt_no:?}"
            );
        }
        assert_eq!(printed, ("r9".to_string(), "456".to_string()));
        // At least one character stays; nothing stays nothing (no receipt named).
        assert_eq!(key("0", "0000"), ("0".to_string(), "0".to_string()));
        assert_eq!(key("", ""), (String::new(), String::new()));
        assert_eq!(key("A-0", "0A01"), ("a-0".to_string(), "a01".to_string()));
        assert_eq!(key("02", "7"), key("2", "07"), "register ids too");
        // Other receipts stay apart: inner zeros, other letters, other stores.
        assert_ne!(key("R9", "4056"), printed);
        assert_ne!(key("R9", "4560"), printed);
        assert_ne!(key("R8", "456"), printed);
        assert_ne!(
            register_receipt_key("s2", "R9", "456"),
            register_receipt_key("s1", "R9", "456")
        );
        // Non-ASCII letters are compared as they are (see `register_receipt_key`).
        assert_ne!(key("Ä", "1"), key("ä", "1"));
        let claim = ReceiptClaim::number("s1", " R9 ", "00456");
        assert_eq!(
            claim,
            ReceiptClaim::Number {
                store_id: "s1".into(),
                register_id: "r9".into(),
                receipt_no: "456".into(),
            }
        );
    }

    #[test]
    fn a_total_is_above_zero_and_the_sum_of_its_lines() {
        assert!(total_problem(money("0"), &[]).is_some());
        assert!(total_problem(money("0"), &[line("a", "x", 1)]).is_some());
        assert_eq!(total_problem(money("0.01"), &[]), None);
        // `line` is 100 a line.
        let lines = [line("a", "x", 1), line("b", "x", 3)];
        assert_eq!(total_problem(money("200"), &lines), None);
        assert_eq!(total_problem(money("200.00"), &lines), None);
        let problem = total_problem(money("100000000000"), &lines).expect("made up");
        assert!(problem.contains("(200)"), "{problem}");
        assert!(total_problem(money("199.99"), &lines).is_some());
    }

    #[test]
    fn the_program_sends_receipts_to_review_by_total_and_by_points() {
        let policy = ReceiptPolicy {
            review_threshold: Some(money("5000")),
            max_points: 100,
        };
        let judged = |rules: &[ReceiptRule], total: &str| {
            apply(rules, &receipt(total, vec![]), now(), &policy)
                .unwrap()
                .review
        };
        // The rule sets no threshold: the program's applies.
        assert_eq!(judged(&[rule("plain")], "4999"), None);
        assert_eq!(
            judged(&[rule("plain")], "5000"),
            Some(ReceiptReason::ReviewThreshold)
        );
        // A rule's own threshold wins over the program's.
        let mut own = rule("own");
        own.review_threshold = Some(money("8000"));
        own.earn_rate = Some(Decimal::new(1, 3));
        assert_eq!(judged(std::slice::from_ref(&own), "7000"), None);
        assert_eq!(
            judged(std::slice::from_ref(&own), "8000"),
            Some(ReceiptReason::ReviewThreshold)
        );
        // More points than the cap: 1% of 10100 is 101 > 100.
        let mut generous = rule("generous");
        generous.review_threshold = Some(money("1000000"));
        assert_eq!(
            judged(std::slice::from_ref(&generous), "10000"),
            None,
            "100 points: at the cap"
        );
        assert_eq!(judged(&[generous], "10100"), Some(ReceiptReason::PointsCap));
        // No policy: neither.
        let outcome = apply(
            &[rule("plain")],
            &receipt("100000000000", vec![]),
            now(),
            &ReceiptPolicy::default(),
        );
        assert_eq!(outcome.unwrap().review, None);
    }

    #[test]
    fn a_receipt_is_a_visit_on_the_local_day_it_was_issued() {
        let tokyo: Tz = "Asia/Tokyo".parse().unwrap();
        // 23:50 and 00:10 in Tokyo: two local days, twenty minutes apart.
        let late = Utc.with_ymd_and_hms(2026, 11, 30, 14, 50, 0).unwrap();
        let after_midnight = late + Duration::minutes(20);
        assert!(is_visit(late, late + Duration::minutes(5), tokyo));
        assert!(!is_visit(late, after_midnight, tokyo));
        let morning = Utc.with_ymd_and_hms(2026, 11, 30, 0, 0, 0).unwrap();
        assert!(is_visit(morning, late, tokyo), "09:00 and 23:50");
        assert!(!is_visit(morning - Duration::days(3), late, tokyo));
        // The day is the store's: 23:50 in Tokyo is 14:50 in UTC, the same UTC day as 15:10.
        assert!(is_visit(late, after_midnight, chrono_tz::UTC));
    }
}
