//! Effects: what a rule that fires gives. Points are the rule's own, on top of the program's
//! base points, and are booked as postings of their own naming the rule.

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use super::{Conditions, Facts};
use crate::domain::money::Money;

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Effects {
    /// Fixed points.
    pub bonus_points: i64,
    /// Multiplies the base points of the matched lines ("2" doubles them); the extra is the
    /// rule's. None: no multiplier.
    pub points_multiplier: Option<Decimal>,
    /// Points per currency unit paid for the matched lines. None: none.
    pub earn_rate: Option<Decimal>,
    /// Issue one coupon of this campaign (source `rule:<rule_id>`).
    pub campaign_id: Option<String>,
    /// 0: the rule's points expire as the program's do; N: they are limited-time points, in a
    /// lot of their own that expires N days after the points become spendable.
    pub points_expire_days: i64,
}

impl Effects {
    /// The rule's points for `facts` before any budget: bonus + the multiplier's extra + the
    /// earn rate's points, each floored on its own.
    pub fn points(&self, conditions: &Conditions, facts: &Facts<'_>) -> i64 {
        let paid = matched_paid(conditions, facts);
        let base = paid.floor_points(facts.base_rate);
        let extra = self.points_multiplier.map_or(0, |multiplier| {
            let extra = Decimal::from(base) * (multiplier - Decimal::ONE);
            extra.floor().try_into().unwrap_or(0i64).max(0)
        });
        let by_rate = self.earn_rate.map_or(0, |rate| paid.floor_points(rate));
        self.bonus_points
            .saturating_add(extra)
            .saturating_add(by_rate)
    }
}

/// What the matched lines paid: their share of the amount paid (discounts spread over the
/// lines by amount), or the whole amount paid without line conditions.
fn matched_paid(conditions: &Conditions, facts: &Facts<'_>) -> Money {
    if conditions.lines.is_empty() || facts.total.is_zero() {
        return facts.paid;
    }
    let matched: Money = conditions
        .matched_lines(facts.lines)
        .into_iter()
        .map(|line| line.amount)
        .sum();
    let share = matched.amount() * facts.paid.amount() / facts.total.amount();
    Money::from_decimal_saturating(share).min(facts.paid)
}
