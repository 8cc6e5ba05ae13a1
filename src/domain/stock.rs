//! A limited campaign's stock: the coupons it may still issue, as units of `CPN:<campaign_id>`
//! in guarded accounts (`campaign:<id>:stock:<part>`). The issue limit funds the stock, an issue
//! draws one unit, and the ledger's never-negative rule is the limit: no count of issued coupons,
//! exact under any concurrency, and no campaign row every issuing batch waits on.
//!
//! The stock is split into parts so that parallel writers draw from rows of their own: each
//! writer owns the parts `p` with `p mod writers = shard mod writers` and draws from the others,
//! in turn, only when its own are empty (near the end of the stock).

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

/// Which of how many writers a unit of work runs on (`shard` 1..=`writers`; 0 outside them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Seat {
    pub shard: usize,
    pub writers: usize,
}

impl Default for Seat {
    fn default() -> Self {
        Seat {
            shard: 0,
            writers: 1,
        }
    }
}

/// The parts in the order a writer draws from them: first its own (the parts `p` with
/// `p mod writers = shard mod writers`, so that every part has a writer and no two writers
/// share one), then every other part, from the writer's shard on. Writers only meet on a row
/// once their own parts are empty, near the end of the stock.
pub fn draw_order(parts: u8, seat: Seat) -> Vec<u8> {
    let (parts, writers) = (usize::from(parts), seat.writers.max(1));
    let own = |part: &usize| part % writers == seat.shard % writers;
    let from_shard = (0..parts).map(|i| (seat.shard + i) % parts.max(1));
    let (mine, others): (Vec<usize>, Vec<usize>) = from_shard.partition(own);
    mine.into_iter()
        .chain(others)
        .filter_map(|part| u8::try_from(part).ok())
        .collect()
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
    fn each_writer_draws_from_its_own_parts_first_then_from_every_other() {
        let seat = |shard, writers| Seat { shard, writers };
        // Four writers (shards 1..=4) own two parts each; every part has one owner.
        assert_eq!(draw_order(8, seat(1, 4)), [1, 5, 2, 3, 4, 6, 7, 0]);
        assert_eq!(draw_order(8, seat(4, 4)), [4, 0, 5, 6, 7, 1, 2, 3]);
        let mut owned: Vec<u8> = (1..=4)
            .flat_map(|shard| draw_order(8, seat(shard, 4))[..2].to_vec())
            .collect();
        owned.sort_unstable();
        assert_eq!(owned, [0, 1, 2, 3, 4, 5, 6, 7]);
        // One writer (SQLite) owns them all; of three, writer 2 owns 2 and 5.
        assert_eq!(draw_order(8, seat(1, 1)), [1, 2, 3, 4, 5, 6, 7, 0]);
        assert_eq!(draw_order(8, seat(2, 3)), [2, 5, 3, 4, 6, 7, 0, 1]);
        assert_eq!(draw_order(8, Seat::default()), [0, 1, 2, 3, 4, 5, 6, 7]);
        assert!(draw_order(0, seat(3, 4)).is_empty());
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
