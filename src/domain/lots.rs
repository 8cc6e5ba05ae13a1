//! Pure rules over point lots: what a member can spend at an instant, and which lots a
//! redemption takes from (soonest expiry first).

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};

use super::model::{Balance, ExpiringPoints, Lot, LotState, MemberRow};

/// How many upcoming expiry dates a balance lists.
const MAX_EXPIRING_ENTRIES: usize = 12;

pub fn is_expired(lot: &Lot, now: DateTime<Utc>) -> bool {
    lot.state == LotState::Expired || lot.expires_at.is_some_and(|at| at <= now)
}

pub fn is_matured(lot: &Lot, now: DateTime<Utc>) -> bool {
    match lot.state {
        LotState::Pending => lot.matures_at.is_some_and(|at| at <= now),
        LotState::Available | LotState::Expired => true,
    }
}

/// The member's balance as it stands at `now`, from the lots alone. Lots that matured or expired
/// but were not yet swept already count the way the sweeper will book them.
pub fn balance_at(member: &MemberRow, lots: &[Lot], now: DateTime<Utc>) -> Balance {
    let mut balance = Balance {
        member_id: member.member_id.clone(),
        available_points: 0,
        pending_points: 0,
        held_points: 0,
        expiring: Vec::new(),
        lifetime_earned_points: member.lifetime_earned_points,
        lifetime_redeemed_points: member.lifetime_redeemed_points,
        limited_points: 0,
    };
    let mut expiring: BTreeMap<DateTime<Utc>, i64> = BTreeMap::new();
    for lot in lots {
        balance.held_points += lot.held_points;
        if is_expired(lot, now) {
            continue;
        }
        if !is_matured(lot, now) {
            balance.pending_points += lot.free_points();
            continue;
        }
        balance.available_points += lot.free_points();
        if lot.limited {
            balance.limited_points += lot.free_points();
        }
        if let Some(at) = lot.expires_at.filter(|_| lot.free_points() > 0) {
            *expiring.entry(at).or_default() += lot.free_points();
        }
    }
    balance.expiring = expiring
        .into_iter()
        .take(MAX_EXPIRING_ENTRIES)
        .map(|(expires_at, points)| ExpiringPoints { points, expires_at })
        .collect();
    balance
}

/// Spendable points at `now`: free points of matured, unexpired lots.
pub fn spendable(lots: &[Lot], now: DateTime<Utc>) -> i64 {
    lots.iter()
        .filter(|lot| is_matured(lot, now) && !is_expired(lot, now))
        .map(Lot::free_points)
        .sum()
}

/// Which lots pay for `points`: soonest expiry first, never-expiring last, oldest lot first on
/// ties (`lots` come in that order from the store). `None` when they do not cover it.
pub fn plan_spend(lots: &[Lot], points: i64, now: DateTime<Utc>) -> Option<Vec<(i64, i64)>> {
    let mut left = points;
    let mut plan = Vec::new();
    let mut ordered: Vec<&Lot> = lots
        .iter()
        .filter(|lot| is_matured(lot, now) && !is_expired(lot, now) && lot.free_points() > 0)
        .collect();
    ordered.sort_by_key(|lot| (lot.expires_at.is_none(), lot.expires_at, lot.lot_id));
    for lot in ordered {
        if left == 0 {
            break;
        }
        let take = left.min(lot.free_points());
        plan.push((lot.lot_id, take));
        left -= take;
    }
    (left == 0).then_some(plan)
}

/// (lot_id, points taken) in spend order, as `plan_spend` gives it.
pub type SpendPlan = Vec<(i64, i64)>;

/// What a transfer of `points` gives the receiver: the sender's lots that pay for it
/// (`plan_spend`: soonest expiry first) as the receiver's new lots, one per (expiry, limited),
/// so that transferred points expire when they would have and limited-time points stay
/// limited. In spend order; `None` when the lots do not cover it.
pub fn plan_transfer(
    lots: &[Lot],
    points: i64,
    now: DateTime<Utc>,
) -> Option<(SpendPlan, Vec<TransferredLot>)> {
    let plan = plan_spend(lots, points, now)?;
    let mut received: Vec<TransferredLot> = Vec::new();
    for (lot_id, take) in &plan {
        let lot = lots.iter().find(|lot| lot.lot_id == *lot_id)?;
        match received
            .iter_mut()
            .find(|r| r.expires_at == lot.expires_at && r.limited == lot.limited)
        {
            Some(same) => same.points += take,
            None => received.push(TransferredLot {
                expires_at: lot.expires_at,
                limited: lot.limited,
                points: *take,
            }),
        }
    }
    Some((plan, received))
}

/// A lot a transfer gives the receiver (see [`plan_transfer`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransferredLot {
    pub expires_at: Option<DateTime<Utc>>,
    pub limited: bool,
    pub points: i64,
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{Duration, TimeZone};
    use proptest::prelude::*;

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap()
    }

    fn lot(lot_id: i64, points: i64, expires_in_days: Option<i64>) -> Lot {
        Lot {
            lot_id,
            member_id: "m".into(),
            order_id: String::new(),
            state: LotState::Available,
            earned_at: now(),
            matures_at: None,
            expires_at: expires_in_days.map(|d| now() + Duration::days(d)),
            original_points: points,
            remaining_points: points,
            held_points: 0,
            limited: false,
        }
    }

    #[test]
    fn spends_soonest_expiry_first_and_never_expiring_last() {
        let lots = vec![
            lot(1, 100, None),
            lot(2, 50, Some(30)),
            lot(3, 70, Some(10)),
        ];
        let plan = plan_spend(&lots, 150, now()).unwrap();
        assert_eq!(plan, vec![(3, 70), (2, 50), (1, 30)]);
        assert_eq!(plan_spend(&lots, 221, now()), None);
    }

    #[test]
    fn expired_and_pending_lots_are_not_spendable() {
        let mut pending = lot(1, 100, Some(400));
        pending.state = LotState::Pending;
        pending.matures_at = Some(now() + Duration::days(14));
        let expired = lot(2, 40, Some(-1));
        let lots = vec![pending.clone(), expired];
        assert_eq!(spendable(&lots, now()), 0);
        assert_eq!(spendable(&lots, now() + Duration::days(14)), 100);
        let member = MemberRow {
            member_id: "m".into(),
            display_name: String::new(),
            state: super::super::model::MemberState::Active,
            merged_into: None,
            created_at: now(),
            lifetime_earned_points: 0,
            lifetime_redeemed_points: 0,
            attributes: Default::default(),
            erased_at: None,
            tier: Default::default(),
        };
        let balance = balance_at(&member, &lots, now());
        assert_eq!((balance.available_points, balance.pending_points), (0, 100));
    }

    #[test]
    fn a_transfer_keeps_expiries_and_limited_lots_apart() {
        let mut limited = lot(4, 30, Some(10));
        limited.limited = true;
        let lots = vec![
            lot(1, 100, None),
            lot(2, 50, Some(10)),
            lot(3, 20, Some(10)),
            limited,
        ];
        let (plan, received) = plan_transfer(&lots, 120, now()).unwrap();
        assert_eq!(plan, vec![(2, 50), (3, 20), (4, 30), (1, 20)]);
        let in_ten_days = Some(now() + Duration::days(10));
        assert_eq!(
            received,
            vec![
                TransferredLot {
                    expires_at: in_ten_days,
                    limited: false,
                    points: 70
                },
                TransferredLot {
                    expires_at: in_ten_days,
                    limited: true,
                    points: 30
                },
                TransferredLot {
                    expires_at: None,
                    limited: false,
                    points: 20
                },
            ]
        );
        assert_eq!(plan_transfer(&lots, 201, now()), None);
    }

    proptest! {
        #[test]
        fn a_plan_takes_exactly_the_points_and_never_more_than_a_lot_has(
            sizes in proptest::collection::vec((1i64..500, proptest::option::of(-5i64..50)), 0..12),
            points in 0i64..3000,
        ) {
            let lots: Vec<Lot> = sizes.iter().enumerate()
                .map(|(i, (size, days))| lot(i as i64, *size, *days))
                .collect();
            let available = spendable(&lots, now());
            match plan_spend(&lots, points, now()) {
                Some(plan) => {
                    prop_assert_eq!(plan.iter().map(|(_, take)| take).sum::<i64>(), points);
                    for (lot_id, take) in plan {
                        let lot = &lots[lot_id as usize];
                        prop_assert!(take > 0 && take <= lot.free_points());
                        prop_assert!(!is_expired(lot, now()));
                    }
                }
                None => prop_assert!(points > available),
            }
        }
    }
}
