//! Member tiers (API.md "Members, tiers and orders", DESIGN.md "Tiers"): which tier a rolling
//! spend reaches, the months of the window, when the next review is, and what a tier multiplies.
//!
//! Spend is kept per member and month (in the program's zone) as integer ten-thousandths of the
//! currency, like the report summaries, so that a tier decision reads at most a window of rows
//! and adding deltas in SQL stays exact.

use chrono::{DateTime, Datelike, NaiveDate, Utc};
use chrono_tz::Tz;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use super::{Money, schedule};

/// The window unless the program says: a year.
pub const DEFAULT_TIER_WINDOW_MONTHS: i32 = 12;
/// Most tiers a program may define.
pub const MAX_TIERS: usize = 10;

/// One tier of `Program.tiers`, in increasing order of `min_spend`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tier {
    pub tier_id: String,
    pub name: String,
    /// Spend within the window that reaches the tier.
    pub min_spend: Money,
    /// What the base points of a purchase are multiplied by (≥ 1).
    pub earn_multiplier: Decimal,
}

/// A member's tier as stored on the member row: `tier_id` empty = no tier.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MemberTier {
    pub tier_id: String,
    pub since: Option<DateTime<Utc>>,
    /// When the tier was last decided (a raise or the monthly review): a member is reviewed
    /// once a month.
    pub reviewed_at: Option<DateTime<Utc>>,
}

/// Where a member stands (GetMember's `Member.tier`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TierStatus {
    pub tier_id: String,
    pub since: Option<DateTime<Utc>>,
    pub spend: Money,
    pub next_tier_id: String,
    /// None at the top.
    pub spend_to_next: Option<Money>,
    pub review_at: DateTime<Utc>,
}

/// The status of a member in `member` with `spend_e4` in the window, at `now`.
pub fn status(
    tiers: &[Tier],
    member: &MemberTier,
    spend_e4: i64,
    now: DateTime<Utc>,
    tz: Tz,
) -> TierStatus {
    let next = next_tier(tiers, &member.tier_id, spend_e4);
    TierStatus {
        tier_id: member.tier_id.clone(),
        since: member.since,
        spend: from_e4(spend_e4),
        next_tier_id: next
            .map(|(tier, _)| tier.tier_id.clone())
            .unwrap_or_default(),
        spend_to_next: next.map(|(_, to_go)| to_go),
        review_at: next_review(now, tz),
    }
}

/// Money in integer ten-thousandths (Money has at most 4 fractional digits).
pub fn to_e4(money: Money) -> i64 {
    (money.amount() * Decimal::from(10_000))
        .trunc()
        .try_into()
        .unwrap_or(i64::MAX)
}

/// Integer ten-thousandths back to money (a negative sum reads as zero: spend is never below).
pub fn from_e4(e4: i64) -> Money {
    Money::from_decimal_saturating(Decimal::new(e4.max(0), 4))
}

/// The month (its first day, in `tz`) that `at` falls in.
pub fn month_of(at: DateTime<Utc>, tz: Tz) -> NaiveDate {
    let day = schedule::local_date(at, tz);
    NaiveDate::from_ymd_opt(day.year(), day.month(), 1).unwrap_or(day)
}

/// `month` moved by `delta` months.
pub fn add_months(month: NaiveDate, delta: i32) -> NaiveDate {
    let index = month.year() * 12 + month.month0() as i32 + delta;
    NaiveDate::from_ymd_opt(index.div_euclid(12), index.rem_euclid(12) as u32 + 1, 1)
        .unwrap_or(month)
}

/// The first month of the window that holds `at`: the current month and the `window - 1`
/// months before it.
pub fn window_start(at: DateTime<Utc>, tz: Tz, window_months: i32) -> NaiveDate {
    add_months(month_of(at, tz), 1 - window_months.max(1))
}

/// The next monthly review after `at`: the 1st of the next month, midnight in `tz`.
pub fn next_review(at: DateTime<Utc>, tz: Tz) -> DateTime<Utc> {
    schedule::local_day_start(add_months(month_of(at, tz), 1), tz)
}

/// The last review at or before `at`: the 1st of its month, midnight in `tz`.
pub fn last_review(at: DateTime<Utc>, tz: Tz) -> DateTime<Utc> {
    schedule::local_day_start(month_of(at, tz), tz)
}

/// The highest tier `spend_e4` reaches (None: below the first).
pub fn tier_for(tiers: &[Tier], spend_e4: i64) -> Option<&Tier> {
    tiers
        .iter()
        .rev()
        .find(|tier| spend_e4 >= to_e4(tier.min_spend))
}

/// The rank of a tier id in `tiers` (0 = no tier, or a tier the program no longer has).
pub fn rank(tiers: &[Tier], tier_id: &str) -> usize {
    tiers
        .iter()
        .position(|tier| tier.tier_id == tier_id)
        .map_or(0, |index| index + 1)
}

/// What a move to `reached` is, for a member in `current`, at a capture or receipt: only up.
pub fn upgrade<'t>(tiers: &'t [Tier], current: &str, spend_e4: i64) -> Option<&'t Tier> {
    tier_for(tiers, spend_e4).filter(|tier| rank(tiers, &tier.tier_id) > rank(tiers, current))
}

/// The earn multiplier of a member's tier (1 without one).
pub fn multiplier(tiers: &[Tier], tier_id: &str) -> Decimal {
    tiers
        .iter()
        .find(|tier| tier.tier_id == tier_id)
        .map_or(Decimal::ONE, |tier| tier.earn_multiplier)
}

/// The tier above `tier_id` and how much more spend it needs (None at the top).
pub fn next_tier<'t>(tiers: &'t [Tier], tier_id: &str, spend_e4: i64) -> Option<(&'t Tier, Money)> {
    let next = tiers.get(rank(tiers, tier_id))?;
    Some((next, from_e4(to_e4(next.min_spend) - spend_e4)))
}

/// The share of an order's paid amount that a cumulative refund of `refunded` out of `total`
/// takes back, in ten-thousandths (rounded down, so that successive refunds add up exactly to
/// the paid amount when the whole order is refunded).
pub fn refunded_share_e4(paid: Money, refunded: Money, total: Money) -> i64 {
    let total = i128::from(to_e4(total));
    if total <= 0 {
        return 0;
    }
    let share = i128::from(to_e4(paid)) * i128::from(to_e4(refunded)).min(total) / total;
    i64::try_from(share).unwrap_or(i64::MAX)
}

/// `omo verify`'s check of the tiers: the spend summary equals a recomputation from the
/// captured orders (paid amount less the refunded share, in the month of the order) and the
/// accepted receipts (their total, in the month they were issued), counted
/// for the member the order's member was merged into), and every member's tier says when it
/// was decided. Returns the violations.
pub fn audit(tz: Tz, audit: &crate::domain::ports::TierAudit) -> Vec<String> {
    use std::collections::{BTreeMap, HashMap};
    let merged: HashMap<&str, &str> = audit
        .merged
        .iter()
        .map(|(from, to)| (from.as_str(), to.as_str()))
        .collect();
    fn owner<'a>(merged: &HashMap<&'a str, &'a str>, mut member_id: &'a str) -> String {
        // Merges form a chain; bounded like the engine's walk.
        for _ in 0..32 {
            match merged.get(member_id) {
                Some(next) => member_id = next,
                None => break,
            }
        }
        member_id.to_string()
    }
    let mut expected: BTreeMap<(String, NaiveDate), i64> = BTreeMap::new();
    for (member_id, occurred_at, total, paid, refunded) in &audit.orders {
        let spend = to_e4(*paid) - refunded_share_e4(*paid, *refunded, *total);
        *expected
            .entry((owner(&merged, member_id), month_of(*occurred_at, tz)))
            .or_default() += spend;
    }
    for (member_id, issued_at, total) in &audit.receipts {
        *expected
            .entry((owner(&merged, member_id), month_of(*issued_at, tz)))
            .or_default() += to_e4(*total);
    }
    let mut stored: BTreeMap<(String, NaiveDate), i64> = BTreeMap::new();
    for row in &audit.spend {
        *stored
            .entry((row.member_id.clone(), row.month))
            .or_default() += row.spend_e4;
    }
    let mut violations = Vec::new();
    let keys: std::collections::BTreeSet<_> = expected.keys().chain(stored.keys()).collect();
    for key in keys {
        let (want, have) = (
            expected.get(key).copied().unwrap_or(0),
            stored.get(key).copied().unwrap_or(0),
        );
        if want != have {
            violations.push(format!(
                "member {} spent {} in {} by its orders, the summary says {}",
                key.0,
                from_e4(want),
                key.1.format("%Y-%m"),
                from_e4(have)
            ));
        }
    }
    // A tier is not checked against the program's or the spend: an admin may change the tiers,
    // and a refund may lower spend, at any time; the member's tier follows at the next review.
    for (member_id, tier) in &audit.tiers {
        if tier.since.is_none() || tier.reviewed_at.is_none() {
            violations.push(format!(
                "member {member_id} is in tier {:?} without the instant it was decided",
                tier.tier_id
            ));
        }
    }
    violations
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::ports::MonthSpend;
    use chrono::TimeZone;

    fn tiers() -> Vec<Tier> {
        let tier = |id: &str, min: i64, mult: i64| Tier {
            tier_id: id.into(),
            name: id.into(),
            min_spend: Money::new(Decimal::from(min)).expect("money"),
            earn_multiplier: Decimal::new(mult, 1),
        };
        vec![tier("silver", 10_000, 15), tier("gold", 50_000, 20)]
    }

    fn e4(amount: i64) -> i64 {
        amount * 10_000
    }

    #[test]
    fn spend_reaches_the_highest_tier_at_or_below_it() {
        let tiers = tiers();
        assert!(tier_for(&tiers, e4(9_999)).is_none());
        assert_eq!(
            tier_for(&tiers, e4(10_000)).map(|t| t.tier_id.as_str()),
            Some("silver")
        );
        assert_eq!(
            tier_for(&tiers, e4(80_000)).map(|t| t.tier_id.as_str()),
            Some("gold")
        );
    }

    #[test]
    fn an_upgrade_only_moves_up() {
        let tiers = tiers();
        assert_eq!(
            upgrade(&tiers, "", e4(12_000)).map(|t| t.tier_id.as_str()),
            Some("silver")
        );
        assert!(upgrade(&tiers, "silver", e4(12_000)).is_none());
        assert!(upgrade(&tiers, "gold", e4(12_000)).is_none(), "never down");
        assert_eq!(
            upgrade(&tiers, "silver", e4(60_000)).map(|t| t.tier_id.as_str()),
            Some("gold")
        );
    }

    #[test]
    fn multiplier_and_next_tier() {
        let tiers = tiers();
        assert_eq!(multiplier(&tiers, ""), Decimal::ONE);
        assert_eq!(multiplier(&tiers, "silver"), Decimal::new(15, 1));
        let (next, to_go) = next_tier(&tiers, "silver", e4(20_000)).expect("gold above");
        assert_eq!(next.tier_id, "gold");
        assert_eq!(to_go.to_string(), "30000");
        assert!(next_tier(&tiers, "gold", e4(60_000)).is_none());
    }

    #[test]
    fn months_are_local_and_the_window_counts_back() {
        let tz: Tz = "Asia/Tokyo".parse().expect("zone");
        // 2026-01-31 20:00 UTC is already February 1st in Tokyo.
        let at = Utc.with_ymd_and_hms(2026, 1, 31, 20, 0, 0).unwrap();
        assert_eq!(
            month_of(at, tz),
            NaiveDate::from_ymd_opt(2026, 2, 1).unwrap()
        );
        assert_eq!(
            window_start(at, tz, 12),
            NaiveDate::from_ymd_opt(2025, 3, 1).unwrap()
        );
        assert_eq!(
            next_review(at, tz),
            Utc.with_ymd_and_hms(2026, 2, 28, 15, 0, 0).unwrap()
        );
        assert_eq!(
            last_review(at, tz),
            Utc.with_ymd_and_hms(2026, 1, 31, 15, 0, 0).unwrap()
        );
        assert_eq!(
            add_months(NaiveDate::from_ymd_opt(2026, 1, 1).unwrap(), -1),
            NaiveDate::from_ymd_opt(2025, 12, 1).unwrap()
        );
    }

    #[test]
    fn refunds_take_back_the_paid_share_and_add_up() {
        let m = |s: &str| s.parse::<Money>().expect("money");
        // Paid 900 of a 1000 basket: half refunded takes back 450, all of it 900.
        assert_eq!(refunded_share_e4(m("900"), m("500"), m("1000")), e4(450));
        assert_eq!(refunded_share_e4(m("900"), m("1000"), m("1000")), e4(900));
        let third = refunded_share_e4(m("100"), m("1"), m("3"));
        assert_eq!(third, 333_333);
        assert_eq!(refunded_share_e4(m("100"), m("3"), m("3")), e4(100));
        assert_eq!(refunded_share_e4(m("100"), m("1"), m("0")), 0);
    }

    #[test]
    fn the_audit_recomputes_spend_through_merges() {
        use crate::domain::ports::TierAudit;
        let tz: Tz = "Asia/Tokyo".parse().expect("zone");
        let at = Utc.with_ymd_and_hms(2026, 4, 1, 3, 0, 0).unwrap();
        let m = |s: &str| s.parse::<Money>().expect("money");
        let month = NaiveDate::from_ymd_opt(2026, 4, 1).unwrap();
        let mut rows = TierAudit {
            spend: vec![MonthSpend {
                member_id: "b".into(),
                month,
                spend_e4: e4(1_500),
            }],
            orders: vec![
                ("a".into(), at, m("1000"), m("900"), m("500")),
                ("b".into(), at, m("1000"), m("1000"), m("0")),
            ],
            receipts: vec![("a".into(), at, m("50"))],
            merged: vec![("a".into(), "b".into())],
            tiers: vec![],
        };
        assert!(audit(tz, &rows).is_empty());
        rows.spend[0].spend_e4 = e4(1_000);
        assert_eq!(audit(tz, &rows).len(), 1);
        rows.spend[0].spend_e4 = e4(1_500);
        rows.tiers.push((
            "b".into(),
            MemberTier {
                tier_id: "silver".into(),
                since: None,
                reviewed_at: Some(at),
            },
        ));
        assert_eq!(audit(tz, &rows).len(), 1);
    }

    #[test]
    fn money_round_trips_through_ten_thousandths() {
        let money: Money = "1234.5678".parse().expect("money");
        assert_eq!(to_e4(money), 12_345_678);
        assert_eq!(from_e4(12_345_678), money);
        assert!(from_e4(-5).is_zero());
    }
}
