//! Report summaries (issue #11, docs/reports.md): the sums the reports read, kept per key by the
//! batch flush and recomputed from the ledger by `omo verify`.
//!
//! One shape, [`ReportSums`], serves three purposes: the net change a batch adds to the summary
//! tables (computed in the engine from the batch's before/after rows, so that no backend has to
//! know a business rule), the summary tables as stored, and the same sums recomputed from the
//! journal, lots, coupons, receipts and visits. "The summaries equal a recomputation" is then a
//! comparison of two values of one type ([`differences`]).
//!
//! A summary that follows a mutable row (a coupon, a lot) adds `contribution(row as now) −
//! contribution(row as read)`: it then equals the sum of the contributions of the current rows
//! whatever path a row took (reserve, release, redeem, refund, expiry, merge).

use std::collections::BTreeMap;

use chrono::{DateTime, NaiveDate, TimeDelta, Utc};
use chrono_tz::Tz;
use rust_decimal::Decimal;

use super::{
    coupon::{Coupon, CouponState},
    model::{Channel, Lot, LotState},
    ports::{ActivityCell, LiabilityGroup, NewTransaction, VisitCount},
    receipt::ReceiptRecord,
    report::source_key,
    schedule::{local_date, local_day_start},
};

/// Every zone's offset is a whole number of quarter hours, so local days and months begin on a
/// quarter hour (UTC) and a quarter never straddles two of them in any zone.
pub const QUARTER_MICROS: i64 = 15 * 60 * 1_000_000;

/// The quarter hour (UTC) an instant falls in.
pub fn quarter_of(at: DateTime<Utc>) -> DateTime<Utc> {
    let micros = at.timestamp_micros();
    DateTime::from_timestamp_micros(micros - micros.rem_euclid(QUARTER_MICROS)).unwrap_or(at)
}

/// The period an activity row of a store is kept under: the first instant of its local day in
/// the store's zone (one row per store and day), or without a zone (no store: EC and app
/// orders, the sweeper's expiries) its quarter hour, which lies within one local day of every
/// zone, so that the program's zone can change without moving rows from one day to another.
pub fn activity_period(zone: Option<Tz>, at: DateTime<Utc>) -> DateTime<Utc> {
    match zone {
        Some(tz) => local_day_start(local_date(at, tz), tz),
        None => quarter_of(at),
    }
}

/// The time from issue to redemption is kept to the second up to an hour, to the minute up to
/// a day and to the hour beyond: a campaign has at most 3,600 + 1,380 + one row per hour of its
/// coupons' lifetimes however many it redeems (a few thousand: the median is found by a running
/// sum over them per request), and its median is exact to that precision.
pub fn redemption_bucket(time_to_redemption: TimeDelta) -> i64 {
    let seconds = time_to_redemption.num_seconds();
    let unit = match seconds {
        ..3_600 => 1,
        3_600..86_400 => 60,
        _ => 3_600,
    };
    seconds - seconds.rem_euclid(unit)
}

/// Coupons of one campaign, variant, source key and state, with the sum of their discounts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CouponTally {
    pub campaign_id: String,
    pub variant_id: String,
    /// `report::source_key` of the coupons' source.
    pub source: String,
    pub state: CouponState,
    pub coupons: i64,
    pub discount: Decimal,
}

/// Redeemed coupons of a campaign by the channel of the order that redeemed them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedemptionTally {
    pub campaign_id: String,
    pub channel: Channel,
    pub coupons: i64,
}

/// Redeemed coupons of a campaign by their time to redemption ([`redemption_bucket`] seconds).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedemptionTime {
    pub campaign_id: String,
    pub seconds: i64,
    pub coupons: i64,
}

/// Points of live lots (neither expired nor spent) by the quarter hour they expire in and, for
/// pending lots, the quarter hour they mature in (None: never).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LotTally {
    pub expires_quarter: Option<DateTime<Utc>>,
    pub matures_quarter: Option<DateTime<Utc>>,
    /// Pending or available.
    pub state: LotState,
    pub remaining_points: i64,
    pub held_points: i64,
}

/// The report summaries, or a batch's net change of them: sorted by key, no row all zeros.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReportSums {
    /// Activity by channel, store and period ([`activity_period`]; a recomputation from the
    /// ledger gives quarter hours, see [`differences`]).
    pub activity: Vec<ActivityCell>,
    pub visits: Vec<VisitCount>,
    pub coupons: Vec<CouponTally>,
    pub redemptions: Vec<RedemptionTally>,
    pub redemption_times: Vec<RedemptionTime>,
    pub lots: Vec<LotTally>,
}

impl ReportSums {
    pub fn is_empty(&self) -> bool {
        *self == ReportSums::default()
    }
}

type ActivityKey = (Option<Channel>, String, DateTime<Utc>);
type CouponKey = (String, String, String, CouponState);
type LotKey = (Option<DateTime<Utc>>, Option<DateTime<Utc>>, LotState);

/// Where earned points come from: the program (`program:issued`) and the rules' accounts
/// (`rule:<id>`, `rule:<id>:budget`). Points moving between them (a rule's budget funded) are
/// not earned; points leaving them for a member are.
pub fn is_issuing(account: &str) -> bool {
    account == "program:issued" || account.starts_with("rule:")
}

/// Sums being added up, by key; [`Tallies::finish`] gives them as [`ReportSums`].
#[derive(Debug, Default)]
pub struct Tallies {
    activity: BTreeMap<ActivityKey, ActivityCell>,
    visits: BTreeMap<(String, NaiveDate), i64>,
    coupons: BTreeMap<CouponKey, (i64, Decimal)>,
    redemptions: BTreeMap<(String, Channel), i64>,
    times: BTreeMap<(String, i64), i64>,
    lots: BTreeMap<LotKey, (i64, i64)>,
}

impl Tallies {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds every row of `sums`, each activity cell at the period `period_of` gives it.
    pub fn add(&mut self, sums: ReportSums, period_of: impl Fn(&ActivityCell) -> DateTime<Utc>) {
        for cell in sums.activity {
            let period = period_of(&cell);
            self.cell(cell.channel, &cell.store_id, period).add(&cell);
        }
        for count in sums.visits {
            self.visit(&count.store_id, count.visit_date, count.visits);
        }
        for t in sums.coupons {
            let entry = self
                .coupons
                .entry((t.campaign_id, t.variant_id, t.source, t.state))
                .or_default();
            entry.0 += t.coupons;
            entry.1 += t.discount;
        }
        for t in sums.redemptions {
            *self
                .redemptions
                .entry((t.campaign_id, t.channel))
                .or_default() += t.coupons;
        }
        for t in sums.redemption_times {
            *self.times.entry((t.campaign_id, t.seconds)).or_default() += t.coupons;
        }
        for t in sums.lots {
            let entry = self
                .lots
                .entry((t.expires_quarter, t.matures_quarter, t.state))
                .or_default();
            entry.0 += t.remaining_points;
            entry.1 += t.held_points;
        }
    }

    fn cell(
        &mut self,
        channel: Option<Channel>,
        store_id: &str,
        period: DateTime<Utc>,
    ) -> &mut ActivityCell {
        self.activity
            .entry((channel, store_id.to_string(), period))
            .or_insert_with(|| ActivityCell::empty(channel, store_id.to_string(), period))
    }

    pub fn visit(&mut self, store_id: &str, visit_date: NaiveDate, visits: i64) {
        *self
            .visits
            .entry((store_id.to_string(), visit_date))
            .or_default() += visits;
    }

    /// A new journal entry at `period`: the points it moves to and from the program's accounts
    /// (adjustments are not earnings), and for a sale or capture the order and its total
    /// (`order_total`), for a refund less the amount refunded (kept in its metadata).
    /// A journal entry's points: earned is what leaves the issuing accounts (see
    /// [`is_issuing`]), redeemed and expired what reaches the program's accounts for them.
    pub fn transaction(
        &mut self,
        transaction: &NewTransaction,
        order_total: Option<Decimal>,
        period: DateTime<Utc>,
    ) {
        let cell = self.cell(transaction.channel, &transaction.store_id, period);
        for posting in transaction.postings.iter().filter(|p| p.asset == "PTS") {
            let (from, to, amount) = (&posting.from_account, &posting.to_account, posting.amount);
            let signed = |account: fn(&str) -> bool| {
                i64::from(account(to)) * amount - i64::from(account(from)) * amount
            };
            cell.points_earned -= signed(is_issuing);
            cell.points_redeemed += signed(|a| a.starts_with("program:redeemed:"));
            cell.points_expired += signed(|a| a == "program:expired");
        }
        match transaction.kind {
            "sale" | "capture" => {
                cell.orders += 1;
                cell.sales += order_total.unwrap_or_default();
            }
            "refund" => {
                let refunded = transaction
                    .metadata
                    .iter()
                    .find(|(key, _)| key == "amount")
                    .and_then(|(_, amount)| amount.parse::<Decimal>().ok());
                cell.sales -= refunded.unwrap_or_default();
            }
            _ => {}
        }
    }

    /// An accepted receipt: on no channel, at its store, in `period`.
    /// `sign` −1 takes back one accepted before (a register sale took its receipt over).
    pub fn accepted_receipt(&mut self, receipt: &ReceiptRecord, period: DateTime<Utc>, sign: i64) {
        self.cell(None, &receipt.receipt.store_id, period).receipts += sign;
    }

    /// Adds `sign` × a coupon's contribution; `channel` is that of the order that redeemed it.
    pub fn coupon(&mut self, coupon: &Coupon, channel: Option<Channel>, sign: i64) {
        let key = (
            coupon.campaign_id.clone(),
            coupon.variant_id.clone(),
            source_key(&coupon.source).to_string(),
            coupon.state,
        );
        let entry = self.coupons.entry(key).or_default();
        entry.0 += sign;
        entry.1 += Decimal::from(sign) * coupon.discount.map(|d| d.amount()).unwrap_or_default();
        if coupon.state != CouponState::Redeemed {
            return;
        }
        if let Some(channel) = channel {
            *self
                .redemptions
                .entry((coupon.campaign_id.clone(), channel))
                .or_default() += sign;
        }
        if let Some(redeemed_at) = coupon.redeemed_at {
            let seconds = redemption_bucket(redeemed_at - coupon.issued_at);
            *self
                .times
                .entry((coupon.campaign_id.clone(), seconds))
                .or_default() += sign;
        }
    }

    /// Adds `sign` × a lot's contribution: its remaining and held points if it is live.
    pub fn lot(&mut self, lot: &Lot, sign: i64) {
        if lot.state == LotState::Expired || lot.remaining_points == 0 {
            return;
        }
        let matures = match lot.state {
            LotState::Pending => lot.matures_at.map(quarter_of),
            _ => None,
        };
        let key = (lot.expires_at.map(quarter_of), matures, lot.state);
        let entry = self.lots.entry(key).or_default();
        entry.0 += sign * lot.remaining_points;
        entry.1 += sign * lot.held_points;
    }

    /// The sums, sorted by key, without the rows that came to zero.
    pub fn finish(self) -> ReportSums {
        ReportSums {
            activity: self
                .activity
                .into_values()
                .filter(|cell| !cell.is_zero())
                .collect(),
            visits: self
                .visits
                .into_iter()
                .filter(|(_, visits)| *visits != 0)
                .map(|((store_id, visit_date), visits)| VisitCount {
                    store_id,
                    visit_date,
                    visits,
                })
                .collect(),
            coupons: self
                .coupons
                .into_iter()
                .filter(|(_, (coupons, discount))| *coupons != 0 || !discount.is_zero())
                .map(
                    |((campaign_id, variant_id, source, state), (coupons, discount))| CouponTally {
                        campaign_id,
                        variant_id,
                        source,
                        state,
                        coupons,
                        discount: discount.normalize(),
                    },
                )
                .collect(),
            redemptions: self
                .redemptions
                .into_iter()
                .filter(|(_, coupons)| *coupons != 0)
                .map(|((campaign_id, channel), coupons)| RedemptionTally {
                    campaign_id,
                    channel,
                    coupons,
                })
                .collect(),
            redemption_times: self
                .times
                .into_iter()
                .filter(|(_, coupons)| *coupons != 0)
                .map(|((campaign_id, seconds), coupons)| RedemptionTime {
                    campaign_id,
                    seconds,
                    coupons,
                })
                .collect(),
            lots: self
                .lots
                .into_iter()
                .filter(|(_, points)| *points != (0, 0))
                .map(
                    |((expires_quarter, matures_quarter, state), (remaining, held))| LotTally {
                        expires_quarter,
                        matures_quarter,
                        state,
                        remaining_points: remaining,
                        held_points: held,
                    },
                )
                .collect(),
        }
    }
}

/// (outstanding, pending, held) points of live lots that are (`alive`) or are not yet expired
/// and are (`immature`) or are not yet mature: what a lot owes. A lot with no free points owes
/// the same whether it expired or not (its held points).
fn owed(alive: bool, immature: bool, state: LotState, remaining: i64, held: i64) -> [i64; 3] {
    let outstanding = if alive { remaining } else { held };
    let pending = if state == LotState::Pending && alive && immature {
        remaining - held
    } else {
        0
    };
    [outstanding, pending, held]
}

/// A range of expiry instants the liability is counted in: [from, to), None for open, shown
/// under `label`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExpiryRange {
    pub label: DateTime<Utc>,
    pub from: Option<DateTime<Utc>>,
    pub to: Option<DateTime<Utc>>,
}

impl ExpiryRange {
    pub fn contains(&self, at: DateTime<Utc>) -> bool {
        self.from.is_none_or(|from| from <= at) && self.to.is_none_or(|to| at < to)
    }
}

/// The ranges [bounds[i], bounds[i + 1]) under their first bound, the first open below and the
/// last open above (short of never), so that no point is left out even if the bounds did not
/// cover every expiry; fewer than two bounds make no range. Both backends read the lot summary
/// in these ranges.
pub fn expiry_ranges(bounds: &[DateTime<Utc>]) -> Vec<ExpiryRange> {
    let last = bounds.len().saturating_sub(2);
    bounds
        .windows(2)
        .enumerate()
        .map(|(i, pair)| ExpiryRange {
            label: pair[0],
            from: (i > 0).then_some(pair[0]),
            to: (i < last).then_some(pair[1]),
        })
        .collect()
}

/// The lot summary counted as of `start` (a quarter hour), grouped by the range of
/// [`expiry_ranges`] of `bounds` the expiry falls in, as a backend's `liability_lots` reads it
/// (its SQL is this function; the store conformance tests hold them equal), and the lots that
/// never expire. A summary row knows its lots' quarters, not their instants: it is expired
/// from its expiry quarter on, mature from its maturity quarter. A group whose figures net to
/// zero is no group.
pub fn counted_groups(
    tallies: &[LotTally],
    start: DateTime<Utc>,
    bounds: &[DateTime<Utc>],
) -> Vec<LiabilityGroup> {
    let ranges = expiry_ranges(bounds);
    let after_start = |quarter: Option<DateTime<Utc>>| quarter.is_none_or(|q| q >= start);
    let mut groups = Groups::default();
    for t in tallies {
        let range = match t.expires_quarter {
            None => None,
            Some(at) => match ranges.iter().find(|range| range.contains(at)) {
                Some(range) => Some(range.label),
                None => continue,
            },
        };
        let figures = owed(
            after_start(t.expires_quarter),
            after_start(t.matures_quarter),
            t.state,
            t.remaining_points,
            t.held_points,
        );
        groups.add(range, figures);
    }
    groups.finish()
}

/// The liability at `as_of` by range of expiry: `counted` (the lot summary as of the start of
/// `as_of`'s quarter, see [`counted_groups`]) corrected by `boundary`, the live lots with free
/// points that expire or mature in that quarter, at or before `as_of`; a correction is a group
/// of the lot's expiry quarter.
pub fn liability_groups(
    counted: Vec<LiabilityGroup>,
    boundary: &[Lot],
    as_of: DateTime<Utc>,
) -> Vec<LiabilityGroup> {
    let start = quarter_of(as_of);
    let after_start = |quarter: Option<DateTime<Utc>>| quarter.is_none_or(|q| q >= start);
    let mut groups = Groups::default();
    for group in counted {
        groups.add(
            group.expires_quarter,
            [
                group.outstanding_points,
                group.pending_points,
                group.held_points,
            ],
        );
    }
    for lot in boundary.iter().filter(|lot| lot.state != LotState::Expired) {
        let expires_quarter = lot.expires_at.map(quarter_of);
        let (remaining, held) = (lot.remaining_points, lot.held_points);
        let counted = owed(
            after_start(expires_quarter),
            after_start(lot.matures_at.map(quarter_of)),
            lot.state,
            remaining,
            held,
        );
        let exact = owed(
            lot.expires_at.is_none_or(|at| at > as_of),
            lot.matures_at.is_none_or(|at| at > as_of),
            lot.state,
            remaining,
            held,
        );
        groups.add(
            expires_quarter,
            [0, 1, 2].map(|figure| exact[figure] - counted[figure]),
        );
    }
    groups.finish()
}

/// Liability groups being summed by expiry.
#[derive(Default)]
struct Groups(BTreeMap<Option<DateTime<Utc>>, [i64; 3]>);

impl Groups {
    fn add(&mut self, expires_quarter: Option<DateTime<Utc>>, figures: [i64; 3]) {
        let sums = self.0.entry(expires_quarter).or_default();
        for (sum, figure) in sums.iter_mut().zip(figures) {
            *sum += figure;
        }
    }

    fn finish(self) -> Vec<LiabilityGroup> {
        self.0
            .into_iter()
            .filter(|(_, figures)| *figures != [0; 3])
            .map(
                |(expires_quarter, [outstanding, pending, held])| LiabilityGroup {
                    expires_quarter,
                    outstanding_points: outstanding,
                    pending_points: pending,
                    held_points: held,
                },
            )
            .collect()
    }
}

/// Where stored summaries and a recomputation from the ledger disagree, one line per key with
/// both figures. Activity is compared per local day (`zone_of` a store: None for no store),
/// since the summaries keep a store's day as one row and a recomputation gives quarter hours.
pub fn differences(
    stored: ReportSums,
    recomputed: ReportSums,
    zone_of: impl Fn(&str) -> Option<Tz>,
) -> Vec<String> {
    let by_period = |cell: &ActivityCell| activity_period(zone_of(&cell.store_id), cell.period);
    let mut left = Tallies::new();
    left.add(stored, by_period);
    let mut right = Tallies::new();
    right.add(recomputed, by_period);
    let (left, right) = (left.finish(), right.finish());
    let mut out = Vec::new();
    compare(&mut out, "activity", &left.activity, &right.activity, |c| {
        (c.channel, c.store_id.clone(), c.period)
    });
    compare(&mut out, "visits", &left.visits, &right.visits, |v| {
        (v.store_id.clone(), v.visit_date)
    });
    compare(&mut out, "coupons", &left.coupons, &right.coupons, |t| {
        (
            t.campaign_id.clone(),
            t.variant_id.clone(),
            t.source.clone(),
            t.state,
        )
    });
    compare(
        &mut out,
        "redemptions by channel",
        &left.redemptions,
        &right.redemptions,
        |t| (t.campaign_id.clone(), t.channel),
    );
    compare(
        &mut out,
        "times to redemption",
        &left.redemption_times,
        &right.redemption_times,
        |t| (t.campaign_id.clone(), t.seconds),
    );
    compare(&mut out, "lots", &left.lots, &right.lots, |t| {
        (t.expires_quarter, t.matures_quarter, t.state)
    });
    out
}

/// Lists every key whose rows differ between two sorted, zero-free lists.
fn compare<T: std::fmt::Debug + PartialEq, K: Ord + std::fmt::Debug>(
    out: &mut Vec<String>,
    table: &str,
    stored: &[T],
    recomputed: &[T],
    key: impl Fn(&T) -> K,
) {
    let mut rows: BTreeMap<K, (Option<&T>, Option<&T>)> = BTreeMap::new();
    for row in stored {
        rows.entry(key(row)).or_default().0 = Some(row);
    }
    for row in recomputed {
        rows.entry(key(row)).or_default().1 = Some(row);
    }
    let shown =
        |row: Option<&T>| row.map_or_else(|| "no row".to_string(), |row| format!("{row:?}"));
    for (key, (stored, recomputed)) in rows {
        if stored != recomputed {
            out.push(format!(
                "{table} {key:?}: summary {}, ledger {}",
                shown(stored),
                shown(recomputed)
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{report::tests::utc, schedule::parse_time_zone};

    #[test]
    fn a_rule_budget_funded_is_not_earned_and_its_award_is() {
        use crate::domain::{Account, Asset, model::Posting};
        let at = utc(2026, 1, 1, 0, 0, 0);
        let budget = Account::RuleBudget("r".into());
        let member = Account::Member("m".into());
        let entry = |postings: Vec<Posting>| NewTransaction {
            kind: "sale",
            member_id: "m".into(),
            occurred_at: at,
            recorded_at: at,
            channel: None,
            store_id: String::new(),
            order_id: String::new(),
            postings,
            metadata: Vec::new(),
        };
        let mut tallies = Tallies::new();
        let funded = Posting::new(&Account::ProgramIssued, &budget, &Asset::Points, 1000);
        tallies.transaction(&entry(vec![funded]), None, at);
        let base = Posting::new(&Account::ProgramIssued, &member, &Asset::Points, 10);
        let bonus = Posting::new(&budget, &member, &Asset::Points, 30);
        tallies.transaction(&entry(vec![base, bonus]), None, at);
        let back = Posting::new(&member, &budget, &Asset::Points, 5);
        tallies.transaction(&entry(vec![back]), None, at);
        let sums = tallies.finish();
        let earned: i64 = sums.activity.iter().map(|cell| cell.points_earned).sum();
        assert_eq!(earned, 10 + 30 - 5);
        assert!(is_issuing("rule:r") && is_issuing("rule:r:budget") && !is_issuing("member:m"));
    }

    fn lot(state: LotState, expires_at: DateTime<Utc>, remaining: i64, held: i64) -> Lot {
        Lot {
            lot_id: 1,
            member_id: "m".into(),
            order_id: String::new(),
            state,
            earned_at: utc(2026, 1, 1, 0, 0, 0),
            matures_at: None,
            expires_at: Some(expires_at),
            original_points: remaining,
            remaining_points: remaining,
            held_points: held,
            limited: false,
        }
    }

    #[test]
    fn a_store_day_is_one_period_and_no_store_keeps_quarters() {
        let tokyo = parse_time_zone("Asia/Tokyo").expect("zone");
        let at = utc(2026, 11, 30, 16, 7, 30); // 01:07 on Dec 1 in Tokyo
        assert_eq!(
            activity_period(Some(tokyo), at),
            utc(2026, 11, 30, 15, 0, 0)
        );
        assert_eq!(activity_period(None, at), utc(2026, 11, 30, 16, 0, 0));
        let kathmandu = parse_time_zone("Asia/Kathmandu").expect("zone"); // +5:45
        assert_eq!(
            activity_period(Some(kathmandu), at),
            utc(2026, 11, 29, 18, 15, 0),
            "21:52 on Nov 30 there"
        );
    }

    #[test]
    fn times_to_redemption_are_seconds_to_an_hour_minutes_to_a_day_then_hours() {
        assert_eq!(redemption_bucket(TimeDelta::seconds(59)), 59);
        assert_eq!(redemption_bucket(TimeDelta::seconds(3599)), 3599);
        assert_eq!(redemption_bucket(TimeDelta::seconds(3659)), 3600);
        assert_eq!(redemption_bucket(TimeDelta::seconds(7325)), 7320);
        assert_eq!(redemption_bucket(TimeDelta::seconds(86_399)), 86_340);
        assert_eq!(redemption_bucket(TimeDelta::seconds(86_400)), 86_400);
        assert_eq!(redemption_bucket(TimeDelta::seconds(90_059)), 90_000);
        assert_eq!(
            redemption_bucket(TimeDelta::hours(49) + TimeDelta::minutes(59)),
            49 * 3600
        );
    }

    #[test]
    fn a_coupon_moved_from_one_state_to_another_moves_its_tally() {
        let mut coupon = Coupon {
            code: "C1".into(),
            campaign_id: "spring".into(),
            variant_id: "a".into(),
            member_id: "m".into(),
            state: CouponState::Active,
            valid_from: utc(2026, 1, 1, 0, 0, 0),
            valid_until: None,
            source: "order:o1".into(),
            order_id: String::new(),
            redeemed_at: None,
            issued_at: utc(2026, 1, 1, 0, 0, 0),
            discount: None,
        };
        let before = coupon.clone();
        coupon.state = CouponState::Redeemed;
        coupon.order_id = "o2".into();
        coupon.redeemed_at = Some(utc(2026, 1, 1, 2, 0, 30));
        coupon.discount = Some("150".parse().expect("money"));
        let mut tallies = Tallies::new();
        tallies.coupon(&before, None, -1);
        tallies.coupon(&coupon, Some(Channel::Ec), 1);
        let sums = tallies.finish();
        let states: Vec<_> = sums.coupons.iter().map(|t| (t.state, t.coupons)).collect();
        assert_eq!(
            states,
            [(CouponState::Active, -1), (CouponState::Redeemed, 1)]
        );
        assert_eq!(sums.coupons[1].source, "order");
        assert_eq!(sums.coupons[1].discount, Decimal::from(150));
        assert_eq!(sums.redemptions[0].channel, Channel::Ec);
        assert_eq!(sums.redemption_times[0].seconds, 7200);
    }

    #[test]
    fn a_lot_written_back_unchanged_leaves_no_row() {
        let lot = lot(LotState::Available, utc(2027, 1, 1, 0, 0, 0), 100, 20);
        let mut tallies = Tallies::new();
        tallies.lot(&lot, -1);
        tallies.lot(&lot, 1);
        assert!(tallies.finish().is_empty());
    }

    /// The liability counted in one range over this century.
    fn liability(
        tallies: &[LotTally],
        boundary: &[Lot],
        as_of: DateTime<Utc>,
    ) -> Vec<LiabilityGroup> {
        let century = [utc(2000, 1, 1, 0, 0, 0), utc(2100, 1, 1, 0, 0, 0)];
        let counted = counted_groups(tallies, quarter_of(as_of), &century);
        liability_groups(counted, boundary, as_of)
    }

    #[test]
    fn lots_are_counted_in_the_range_of_their_expiry() {
        let start = utc(2026, 12, 1, 10, 0, 0);
        let mut tallies = Tallies::new();
        for (expires_at, points) in [
            (utc(2026, 12, 1, 9, 0, 0), 1),
            (utc(2026, 12, 31, 23, 45, 0), 2),
            (utc(2027, 1, 1, 0, 0, 0), 4),
            (utc(2027, 2, 1, 0, 0, 0), 8),
        ] {
            tallies.lot(&lot(LotState::Available, expires_at, points, 0), 1);
        }
        let mut forever = lot(LotState::Available, start, 16, 0);
        forever.expires_at = None;
        tallies.lot(&forever, 1);
        let bounds = [
            utc(2026, 12, 1, 0, 0, 0),
            utc(2027, 1, 1, 0, 0, 0),
            utc(2027, 2, 1, 0, 0, 0),
        ];
        let tallies = tallies.finish();
        let groups = counted_groups(&tallies.lots, start, &bounds);
        let figures: Vec<_> = groups
            .iter()
            .map(|g| (g.expires_quarter, g.outstanding_points))
            .collect();
        // The lot expired before `start` owes nothing; the last range is open above.
        assert_eq!(
            figures,
            vec![(None, 16), (Some(bounds[0]), 2), (Some(bounds[1]), 4 + 8)]
        );
        // The first range is open below; fewer than two bounds make no range.
        let later = [utc(2027, 1, 1, 0, 0, 0), utc(2027, 3, 1, 0, 0, 0)];
        let groups = counted_groups(&tallies.lots, start, &later);
        let figures: Vec<_> = groups
            .iter()
            .map(|g| (g.expires_quarter, g.outstanding_points))
            .collect();
        assert_eq!(figures, vec![(None, 16), (Some(later[0]), 2 + 4 + 8)]);
        let never_only = counted_groups(&tallies.lots, start, &later[..1]);
        assert_eq!(never_only.len(), 1);
    }

    #[test]
    fn liability_corrects_the_lots_of_the_current_quarter() {
        let as_of = utc(2026, 12, 1, 10, 7, 0);
        let expired_in_quarter = lot(LotState::Available, utc(2026, 12, 1, 10, 5, 0), 100, 30);
        let alive_in_quarter = lot(LotState::Available, utc(2026, 12, 1, 10, 10, 0), 50, 0);
        let later = lot(LotState::Available, utc(2027, 3, 1, 0, 0, 0), 70, 0);
        let earlier = lot(LotState::Available, utc(2026, 11, 1, 0, 0, 0), 40, 40);
        let mut tallies = Tallies::new();
        for lot in [&expired_in_quarter, &alive_in_quarter, &later, &earlier] {
            tallies.lot(lot, 1);
        }
        let sums = tallies.finish();
        let groups = liability(&sums.lots, &[expired_in_quarter], as_of);
        let outstanding: i64 = groups.iter().map(|g| g.outstanding_points).sum();
        // 30 held of the lot that just expired, 50, 70, and the 40 held of the old one.
        assert_eq!(outstanding, 30 + 50 + 70 + 40);
        assert_eq!(groups.iter().map(|g| g.held_points).sum::<i64>(), 70);
    }

    #[test]
    fn a_pending_lot_that_matured_in_the_quarter_is_no_longer_pending() {
        let as_of = utc(2026, 12, 1, 10, 7, 0);
        let mut matured = lot(LotState::Pending, utc(2027, 12, 1, 0, 0, 0), 100, 0);
        matured.matures_at = Some(utc(2026, 12, 1, 10, 1, 0));
        let mut waiting = matured.clone();
        waiting.matures_at = Some(utc(2026, 12, 1, 10, 9, 0));
        let mut tallies = Tallies::new();
        tallies.lot(&matured, 1);
        tallies.lot(&waiting, 1);
        let sums = tallies.finish();
        let groups = liability(&sums.lots, &[matured], as_of);
        assert_eq!(groups.iter().map(|g| g.pending_points).sum::<i64>(), 100);
        assert_eq!(
            groups.iter().map(|g| g.outstanding_points).sum::<i64>(),
            200
        );
    }
}
