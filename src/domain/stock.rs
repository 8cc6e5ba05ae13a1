//! A limited campaign's stock: the coupons it may still issue, as units of `CPN:<campaign_id>`
//! in guarded accounts (`campaign:<id>:stock:<part>`). The issue limit funds the stock, an issue
//! draws one unit, and the ledger's never-negative rule is the limit: no count of issued coupons,
//! exact under any concurrency, and no campaign row every issuing batch waits on.
//!
//! The stock is split into parts so that parallel writers draw from rows of their own: writer
//! `shard` draws from part `shard mod parts` first, and from the others, in turn, only when its
//! own is empty (near the end of the stock).

use super::{Account, Asset};

/// How many parts a limited campaign's stock is split into: more than the writers a PostgreSQL
/// deployment runs (`--writers`, 4 by default), so that each writer has a part of its own.
pub const STOCK_PARTS: u8 = 8;

/// The account of part `part` of a campaign's stock.
pub fn account(campaign_id: &str, part: u8) -> Account {
    Account::CampaignStock {
        campaign_id: campaign_id.to_string(),
        part,
    }
}

/// The asset a campaign's stock holds.
pub fn asset(campaign_id: &str) -> Asset {
    Asset::Coupon(campaign_id.to_string())
}

/// The parts in the order writer `shard` draws from them: its own first, then the next ones.
pub fn draw_order(parts: u8, shard: usize) -> impl Iterator<Item = u8> {
    let first = if parts == 0 {
        0
    } else {
        shard % usize::from(parts)
    };
    (0..usize::from(parts))
        .map(move |i| u8::try_from((first + i) % usize::from(parts)).unwrap_or(0))
}

/// `units` shared among `parts` parts as evenly as can be: (part, units) for each part that
/// gets any, the first parts taking one more when they do not divide evenly.
pub fn shares(parts: u8, units: i64) -> Vec<(u8, i64)> {
    if parts == 0 || units <= 0 {
        return Vec::new();
    }
    let (each, rest) = (units / i64::from(parts), units % i64::from(parts));
    (0..parts)
        .map(|part| (part, each + i64::from(i64::from(part) < rest)))
        .filter(|(_, share)| *share > 0)
        .collect()
}

/// What to take from each part to take `units` out of a stock whose parts hold `balances`
/// ((part, units left)), the fullest parts first so the parts stay level; None when the stock
/// holds fewer than `units`.
pub fn take(balances: &[(u8, i64)], units: i64) -> Option<Vec<(u8, i64)>> {
    let mut fullest: Vec<(u8, i64)> = balances.iter().copied().filter(|(_, b)| *b > 0).collect();
    fullest.sort_by_key(|(part, left)| (std::cmp::Reverse(*left), *part));
    let mut wanted = units;
    let mut taken = Vec::new();
    for (part, left) in fullest {
        if wanted == 0 {
            break;
        }
        let take = left.min(wanted);
        taken.push((part, take));
        wanted -= take;
    }
    (wanted == 0).then_some(taken)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_limit_is_shared_evenly_and_whole() {
        assert_eq!(shares(8, 0), vec![]);
        assert_eq!(shares(8, 3), vec![(0, 1), (1, 1), (2, 1)]);
        let shared = shares(8, 1_000_003);
        assert_eq!(shared.len(), 8);
        assert_eq!(shared.iter().map(|(_, s)| s).sum::<i64>(), 1_000_003);
        assert_eq!(shared[0], (0, 125_001));
        assert_eq!(shared[7], (7, 125_000));
        assert_eq!(shares(0, 5), vec![]);
    }

    #[test]
    fn each_writer_draws_from_its_own_part_first_then_from_every_other() {
        assert_eq!(
            draw_order(8, 1).collect::<Vec<_>>(),
            [1, 2, 3, 4, 5, 6, 7, 0]
        );
        assert_eq!(
            draw_order(8, 9).collect::<Vec<_>>(),
            [1, 2, 3, 4, 5, 6, 7, 0]
        );
        assert_eq!(draw_order(3, 0).collect::<Vec<_>>(), [0, 1, 2]);
        assert_eq!(draw_order(0, 3).count(), 0);
    }

    #[test]
    fn taking_back_takes_from_the_fullest_parts_and_never_more_than_is_left() {
        let balances = [(0, 2), (1, 5), (2, 0), (3, 5)];
        assert_eq!(take(&balances, 7), Some(vec![(1, 5), (3, 2)]));
        assert_eq!(take(&balances, 12), Some(vec![(1, 5), (3, 5), (0, 2)]));
        assert_eq!(take(&balances, 13), None);
        assert_eq!(take(&balances, 0), Some(vec![]));
    }

    #[test]
    fn stock_accounts_are_guarded() {
        let part = account("c1", 3);
        assert_eq!(part.to_string(), "campaign:c1:stock:3");
        assert!(part.is_guarded());
        assert_eq!(asset("c1").to_string(), "CPN:c1");
    }
}
