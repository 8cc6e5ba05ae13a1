//! How a basket is priced: coupons first (in the order given, each on what is left), then
//! points, then earning on what is actually paid. Every discount is floored to the currency's
//! minor unit, so rounding always favours neither side by more than one minor unit.

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use super::{
    error::DomainError,
    model::{Channel, LineItem, Program},
    money::Money,
};

pub fn basket_total(lines: &[LineItem]) -> Money {
    lines.iter().map(|line| line.amount).sum()
}

/// The priced order, before anything is written.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Priced {
    pub total: Money,
    pub coupon_discount: Money,
    pub available_points: i64,
    pub max_redeemable_points: i64,
    pub points_redeemed: i64,
    pub points_discount: Money,
    pub amount_due: Money,
    pub points_to_earn: i64,
}

/// How one code of a quote fares.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CouponApplication {
    pub code: String,
    pub applicable: bool,
    /// The refusal's `ErrorInfo` reason (COUPON_EXPIRED, MEMBER_LIMIT, ...).
    pub reason: Option<String>,
    pub discount: Money,
}

/// A priced basket with the verdict on every code: what Quote returns (no writes).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Quote {
    pub priced: Priced,
    pub coupons: Vec<CouponApplication>,
    /// `priced.points_to_earn` part by part: the base and each rule that would fire.
    pub earn_breakdown: Vec<super::model::EarnPart>,
}

/// Most points that can pay for `remaining` (points never pay more than the amount left).
pub fn points_worth(program: &Program, remaining: Money) -> i64 {
    if program.point_value <= Decimal::ZERO {
        return 0;
    }
    remaining
        .amount()
        .checked_div(program.point_value)
        .and_then(|points| points.floor().try_into().ok())
        .unwrap_or(i64::MAX)
}

/// Prices an order. `strict` refuses a redemption the member cannot make (Authorize,
/// RecordSale); a quote instead clamps it and shows the limits.
pub fn price(
    program: &Program,
    channel: Channel,
    total: Money,
    coupon_discount: Money,
    points_to_redeem: i64,
    available_points: i64,
    strict: bool,
) -> Result<Priced, DomainError> {
    let after_coupons = total.saturating_sub(coupon_discount);
    let max_redeemable_points = available_points.min(points_worth(program, after_coupons));
    if strict && points_to_redeem > available_points {
        return Err(DomainError::InsufficientPoints {
            available: available_points,
            requested: points_to_redeem,
        });
    }
    if strict && points_to_redeem > max_redeemable_points {
        return Err(DomainError::PointsExceedAmount {
            points: points_to_redeem,
        });
    }
    let points_redeemed = points_to_redeem.min(max_redeemable_points);
    let exponent = program.currency_exponent();
    let points_discount =
        Money::from_decimal_saturating(Decimal::from(points_redeemed) * program.point_value)
            .floor_to(exponent)
            .min(after_coupons);
    let amount_due = after_coupons.saturating_sub(points_discount);
    let points_to_earn = amount_due.floor_points(program.earn_rate_for(channel));
    Ok(Priced {
        total,
        coupon_discount,
        available_points,
        max_redeemable_points,
        points_redeemed,
        points_discount,
        amount_due,
        points_to_earn,
    })
}

/// Share of `total` that `refunded` represents, as points: floor(points × refunded / total).
pub fn share_of_points(points: i64, refunded: Money, total: Money) -> i64 {
    if total.is_zero() {
        return points;
    }
    Decimal::from(points)
        .checked_mul(refunded.amount())
        .and_then(|product| product.checked_div(total.amount()))
        .and_then(|share| share.floor().try_into().ok())
        .unwrap_or(points)
        .min(points)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn money(s: &str) -> Money {
        s.parse().unwrap()
    }

    #[test]
    fn coupons_then_points_then_earning() {
        let program = Program::default(); // 1 point = ¥1, 1 % earn
        let priced = price(
            &program,
            Channel::Ec,
            money("5000"),
            money("500"),
            1000,
            1200,
            true,
        )
        .unwrap();
        assert_eq!(priced.amount_due, money("3500"));
        assert_eq!(priced.points_to_earn, 35);
        assert_eq!(priced.max_redeemable_points, 1200);
    }

    #[test]
    fn strict_pricing_refuses_more_points_than_available_or_due() {
        let program = Program::default();
        let err = price(
            &program,
            Channel::Ec,
            money("100"),
            Money::ZERO,
            50,
            10,
            true,
        );
        assert_eq!(err.unwrap_err().reason(), "INSUFFICIENT_POINTS");
        let err = price(
            &program,
            Channel::Ec,
            money("100"),
            Money::ZERO,
            150,
            500,
            true,
        );
        assert_eq!(err.unwrap_err().reason(), "POINTS_EXCEED_AMOUNT");
        let quote = price(
            &program,
            Channel::Ec,
            money("100"),
            Money::ZERO,
            150,
            500,
            false,
        );
        assert_eq!(quote.unwrap().points_redeemed, 100);
    }

    #[test]
    fn refund_shares_floor() {
        assert_eq!(share_of_points(99, money("1"), money("3")), 33);
        assert_eq!(share_of_points(100, money("3"), money("3")), 100);
    }

    proptest! {
        #[test]
        fn amount_due_never_negative_and_parts_add_up(
            total in 0u32..1_000_000,
            discount in 0u32..1_000_000,
            points in 0i64..2_000_000,
            available in 0i64..2_000_000,
        ) {
            let program = Program::default();
            let total = Money::new(total.into()).unwrap();
            let discount = Money::new(discount.into()).unwrap().min(total);
            let priced = price(&program, Channel::Store, total, discount, points, available, false).unwrap();
            prop_assert!(priced.points_redeemed <= available);
            prop_assert_eq!(
                priced.amount_due + priced.points_discount + priced.coupon_discount,
                total
            );
        }

        #[test]
        fn cumulative_refund_shares_never_exceed_the_whole(points in 0i64..100_000, parts in 1u32..10) {
            let total = Money::new(1000.into()).unwrap();
            let mut last = 0;
            for i in 1..=parts {
                let refunded = Money::new((1000 * i / parts).into()).unwrap();
                let share = share_of_points(points, refunded, total);
                prop_assert!(share >= last && share <= points);
                last = share;
            }
            prop_assert_eq!(last, points);
        }
    }
}
