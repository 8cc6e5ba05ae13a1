//! The operator's reports (ReportService, issue #11): the points liability, campaign
//! statistics with an A/B comparison, and activity per channel, store and local day, as values
//! and the pure arithmetic behind them.
//!
//! # How the reports are derived from the ledger
//!
//! Every figure is a function of the ledger: the journal (transactions and postings), the point
//! lots, the coupon rows, receipts and visits. Summing them per request would scan the journal,
//! too slow for a ledger of ten million postings; so the batch flush keeps summaries of them
//! (`domain::summary`, `docs/reports.md`), one upsert per summary row per batch, in the
//! transaction of the rows they summarise, and `omo verify` compares the summaries with a
//! recomputation from the ledger. [`liability`], [`campaign_stats`] and [`activity`] turn the
//! summaries into the reports in the zones of the stores and the program.
//!
//! # Statistics
//!
//! Redemption rates are compared with [`two_proportion_test`]; durations to redemption are
//! summarised by [`median_duration`].

use std::collections::BTreeMap;
use std::fmt;

use chrono::{DateTime, Datelike, Months, NaiveDate, TimeDelta, Utc};
use chrono_tz::Tz;
use rust_decimal::Decimal;
use statrs::distribution::{ContinuousCDF, Normal};

use super::{
    coupon::{Campaign, CouponState},
    model::Channel,
    money::MAX_SCALE,
    ports::{ActivityInterior, ActivityWindow, CampaignSums, LiabilityGroup},
    schedule::{local_date, local_day_start},
    summary::ReportSums,
};

// ---------------------------------------------------------------------------------------------
// Liability.

/// The points the program owes its members at one instant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Liability {
    /// Available + pending + held points.
    pub outstanding_points: i64,
    /// `outstanding_points` × the program's point value.
    pub outstanding_value: Decimal,
    pub pending_points: i64,
    pub held_points: i64,
    /// Soonest month first; points that never expire are in no bucket.
    pub by_expiry_month: Vec<ExpiryBucket>,
}

/// A calendar month, shown "YYYY-MM".
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct YearMonth {
    pub year: i32,
    /// 1 to 12.
    pub month: u32,
}

impl YearMonth {
    pub fn of(date: NaiveDate) -> Self {
        YearMonth {
            year: date.year(),
            month: date.month(),
        }
    }
}

impl fmt::Display for YearMonth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04}-{:02}", self.year, self.month)
    }
}

/// Points whose lots expire within one month.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExpiryBucket {
    pub month: YearMonth,
    pub points: i64,
}

/// The month, in `tz`, of the instant a lot expires. An instant exactly at local midnight of
/// the 1st belongs to the month that begins then: the lot is gone from that instant on.
pub fn expiry_month(expires_at: DateTime<Utc>, tz: Tz) -> YearMonth {
    YearMonth::of(local_date(expires_at, tz))
}

/// Points by expiry month in `tz`, soonest first, from (expiry instant, points) pairs in any
/// order; months with no points net are left out.
pub fn buckets_by_month(
    expiries: impl IntoIterator<Item = (DateTime<Utc>, i64)>,
    tz: Tz,
) -> Vec<ExpiryBucket> {
    let mut months: BTreeMap<YearMonth, i64> = BTreeMap::new();
    for (expires_at, points) in expiries {
        *months.entry(expiry_month(expires_at, tz)).or_default() += points;
    }
    months
        .into_iter()
        .filter(|(_, points)| *points != 0)
        .map(|(month, points)| ExpiryBucket { month, points })
        .collect()
}

/// The currency value of `points` at `point_value` per point.
pub fn points_value(points: i64, point_value: Decimal) -> Decimal {
    Decimal::from(points) * point_value
}

// ---------------------------------------------------------------------------------------------
// Campaigns.

/// The figures of one campaign. `issued` = `active` + `redeemed` + `expired` + revoked.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct CampaignStats {
    pub issued: i64,
    pub redeemed: i64,
    pub expired: i64,
    /// Active or reserved by an authorized order.
    pub active: i64,
    /// By [`source_key`].
    pub issued_by_source: BTreeMap<String, i64>,
    pub redeemed_by_channel: BTreeMap<Channel, i64>,
    /// A sum of discounts given: never negative in total, but kept a plain decimal because the
    /// summary rows it is added from carry negative deltas (a full refund gives a coupon back).
    pub total_discount: Decimal,
    /// In the campaign's order of variants.
    pub variants: Vec<VariantStats>,
    pub median_to_redemption: Option<TimeDelta>,
}

impl CampaignStats {
    pub fn redemption_rate(&self) -> f64 {
        redemption_rate(self.redeemed, self.issued)
    }

    /// The A/B comparison the API reports: the first variant against the second.
    pub fn first_two_compared(&self) -> Option<TwoProportion> {
        let [a, b, ..] = self.variants.as_slice() else {
            return None;
        };
        two_proportion_test(a.redeemed, a.issued, b.redeemed, b.issued)
    }
}

/// The figures of one variant of a campaign.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VariantStats {
    pub variant_id: String,
    pub issued: i64,
    pub redeemed: i64,
    pub total_discount: Decimal,
}

impl VariantStats {
    pub fn redemption_rate(&self) -> f64 {
        redemption_rate(self.redeemed, self.issued)
    }

    /// The mean discount of a redeemed coupon, to Money's precision (banker's rounding, so
    /// that rounding does not lean one way across many variants); zero when none is redeemed.
    pub fn discount_per_redemption(&self) -> Decimal {
        if self.redeemed <= 0 {
            return Decimal::ZERO;
        }
        (self.total_discount / Decimal::from(self.redeemed))
            .round_dp(MAX_SCALE)
            .normalize()
    }
}

/// redeemed / issued; 0.0 when nothing was issued (a campaign that has issued nothing has
/// redeemed nothing, and a rate of "none of none" reads as nothing done, not as undefined).
pub fn redemption_rate(redeemed: i64, issued: i64) -> f64 {
    if issued <= 0 {
        return 0.0;
    }
    // Counts are far below 2^53, where an i64 converts to f64 exactly.
    redeemed as f64 / issued as f64
}

/// The key a coupon's source is counted under: the source itself, except that every coupon
/// issued on an order's capture (`order:<order_id>`) counts under "order" (one key per order
/// would make the map as long as the order book).
pub fn source_key(source: &str) -> &str {
    if source.starts_with("order:") {
        "order"
    } else {
        source
    }
}

/// The median of durations given with how often each occurs; for an even count, the mean of the
/// two middle ones (the usual definition, and the one that does not depend on which of the two
/// is picked). None for none.
pub fn median_duration(mut durations: Vec<(TimeDelta, i64)>) -> Option<TimeDelta> {
    durations.retain(|(_, count)| *count > 0);
    durations.sort_unstable();
    let total: i64 = durations.iter().map(|(_, count)| count).sum();
    if total == 0 {
        return None;
    }
    // The values at 0-based positions (total - 1) / 2 and total / 2 (one position when odd).
    let at = |position: i64| {
        let mut seen = 0;
        durations.iter().find_map(|(duration, count)| {
            seen += count;
            (position < seen).then_some(*duration)
        })
    };
    Some(midpoint(at((total - 1) / 2)?, at(total / 2)?))
}

/// The duration halfway between two (the median of an even count: its two middle values).
pub fn midpoint(lower: TimeDelta, upper: TimeDelta) -> TimeDelta {
    // lower + (upper - lower) / 2 rather than (lower + upper) / 2: the sum can overflow where
    // the mean cannot. The difference can too at the extremes of TimeDelta; halves then.
    match upper.checked_sub(&lower) {
        Some(spread) => lower + spread / 2,
        None => lower / 2 + upper / 2,
    }
}

// ---------------------------------------------------------------------------------------------
// A/B statistics.

/// Two redemption rates compared: group A's rate minus group B's.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TwoProportion {
    pub difference: f64,
    /// Two-sided p-value of the pooled-variance z-test of "the rates are equal".
    pub p_value: f64,
    /// 95 % confidence interval of `difference` with the unpooled (Wald) standard error.
    pub ci95_low: f64,
    pub ci95_high: f64,
}

/// Compares the redemption rates of two groups (`redeemed_x` of `issued_x` coupons each).
///
/// The test statistic is z = (p_a − p_b) / √(p(1−p)(1/n_a + 1/n_b)) with the pooled rate
/// p = (x_a + x_b) / (n_a + n_b): under "the rates are equal" both groups share that rate, so
/// its variance is the right yardstick. The interval instead uses the unpooled standard error
/// √(p_a(1−p_a)/n_a + p_b(1−p_b)/n_b), since it describes a difference that need not be zero.
///
/// None when the test is undefined: a group that issued nothing has no rate, counts that are
/// not proportions (negative, or more redeemed than issued) have none either, and when both
/// rates are 0 or both are 1 the pooled variance is 0 and z is 0/0. Reporting "no evidence"
/// (p = 1) there would claim a test that was never possible; no answer is the honest one.
///
/// When one rate is 0 and the other 1 the test is defined but the Wald error is 0, and the
/// interval collapses onto the difference: the known weakness of the Wald interval at the
/// bounds, reported as is rather than patched with another method the API does not name.
pub fn two_proportion_test(
    redeemed_a: i64,
    issued_a: i64,
    redeemed_b: i64,
    issued_b: i64,
) -> Option<TwoProportion> {
    let is_proportion = |redeemed: i64, issued: i64| issued > 0 && (0..=issued).contains(&redeemed);
    if !is_proportion(redeemed_a, issued_a) || !is_proportion(redeemed_b, issued_b) {
        return None;
    }
    let (x_a, n_a, x_b, n_b) = (
        redeemed_a as f64,
        issued_a as f64,
        redeemed_b as f64,
        issued_b as f64,
    );
    let (rate_a, rate_b) = (x_a / n_a, x_b / n_b);
    let pooled = (x_a + x_b) / (n_a + n_b);
    let pooled_variance = pooled * (1.0 - pooled) * (1.0 / n_a + 1.0 / n_b);
    if pooled_variance <= 0.0 {
        return None;
    }
    let difference = rate_a - rate_b;
    let z = difference / pooled_variance.sqrt();
    let normal = Normal::standard();
    // sf(|z|) rather than 1 − cdf(|z|): the subtraction loses every digit of a tiny p-value.
    let p_value = (2.0 * normal.sf(z.abs())).min(1.0);
    let standard_error = (rate_a * (1.0 - rate_a) / n_a + rate_b * (1.0 - rate_b) / n_b).sqrt();
    let margin = normal.inverse_cdf(0.975) * standard_error;
    Some(TwoProportion {
        difference,
        p_value,
        ci95_low: difference - margin,
        ci95_high: difference + margin,
    })
}

// ---------------------------------------------------------------------------------------------
// Activity.

/// What an activity row is about. `channel` None (with no store) is what belongs to no channel:
/// the sweeper's expiries.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ActivityKey {
    pub channel: Option<Channel>,
    /// Empty for orders without a store.
    pub store_id: String,
    /// The local day (the store's zone, or the program's without a store); None when the
    /// report is not grouped by day.
    pub day: Option<NaiveDate>,
}

/// The activity of one channel at one store (on one local day). Figures are net of refunds,
/// so a day's row may be negative where a refund came on a later day than its sale: hence
/// `sales` is a plain decimal, not `Money`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActivityRow {
    pub key: ActivityKey,
    pub points_earned: i64,
    pub points_redeemed: i64,
    pub points_expired: i64,
    pub orders: i64,
    pub sales: Decimal,
    pub visits: i64,
    pub receipts: i64,
}

impl ActivityRow {
    pub fn empty(key: ActivityKey) -> Self {
        ActivityRow {
            key,
            points_earned: 0,
            points_redeemed: 0,
            points_expired: 0,
            orders: 0,
            sales: Decimal::ZERO,
            visits: 0,
            receipts: 0,
        }
    }

    fn add(&mut self, other: &ActivityRow) {
        self.points_earned += other.points_earned;
        self.points_redeemed += other.points_redeemed;
        self.points_expired += other.points_expired;
        self.orders += other.orders;
        self.sales += other.sales;
        self.visits += other.visits;
        self.receipts += other.receipts;
    }
}

/// Day rows (one per channel, store, day and shard, in any order) as the report shows them:
/// shards summed, and without `group_by_day` the days too. Sorted by channel, store and day.
pub fn roll_up(
    rows: impl IntoIterator<Item = ActivityRow>,
    group_by_day: bool,
) -> Vec<ActivityRow> {
    let mut totals: BTreeMap<ActivityKey, ActivityRow> = BTreeMap::new();
    for mut row in rows {
        if !group_by_day {
            row.key.day = None;
        }
        totals
            .entry(row.key.clone())
            .or_insert_with(|| ActivityRow::empty(row.key.clone()))
            .add(&row);
    }
    totals.into_values().collect()
}

/// Whether a local day belongs to the range [start, end): its first instant is in the range.
/// Whole days of one zone then select the same calendar days in every nearby zone.
pub fn day_in_range(day: NaiveDate, tz: Tz, start: DateTime<Utc>, end: DateTime<Utc>) -> bool {
    let first = local_day_start(day, tz);
    start <= first && first < end
}

// ---------------------------------------------------------------------------------------------
// The reports from the store's groups of ledger rows.

/// The liability at `as_of` from live lots grouped by the quarter hour they expire in: months
/// in `tz` (every zone's months begin on a quarter hour, so the grouping loses nothing).
pub fn liability(groups: &[LiabilityGroup], point_value: Decimal, tz: Tz) -> Liability {
    let outstanding_points = groups.iter().map(|g| g.outstanding_points).sum();
    let expiring = groups
        .iter()
        .filter_map(|g| Some((g.expires_quarter?, g.outstanding_points)));
    Liability {
        outstanding_points,
        outstanding_value: points_value(outstanding_points, point_value),
        pending_points: groups.iter().map(|g| g.pending_points).sum(),
        held_points: groups.iter().map(|g| g.held_points).sum(),
        by_expiry_month: buckets_by_month(expiring, tz),
    }
}

/// A campaign's figures from its summaries. Active counts reserved coupons too (an authorized
/// order may still release them); revoked ones are issued but in no other count.
pub fn campaign_stats(campaign: &Campaign, sums: CampaignSums) -> CampaignStats {
    let mut stats = CampaignStats::default();
    let mut variants: BTreeMap<&str, VariantStats> = BTreeMap::new();
    let campaign_id = campaign.campaign_id.as_str();
    for group in sums.coupons.iter().filter(|t| t.campaign_id == campaign_id) {
        let count = group.coupons;
        stats.issued += count;
        *stats
            .issued_by_source
            .entry(source_key(&group.source).to_string())
            .or_default() += count;
        let variant = variants
            .entry(group.variant_id.as_str())
            .or_insert_with(|| VariantStats {
                variant_id: group.variant_id.clone(),
                issued: 0,
                redeemed: 0,
                total_discount: Decimal::ZERO,
            });
        variant.issued += count;
        match group.state {
            CouponState::Active | CouponState::Reserved => stats.active += count,
            CouponState::Expired => stats.expired += count,
            CouponState::Revoked => {}
            CouponState::Redeemed => {
                let discount = group.discount;
                stats.redeemed += count;
                stats.total_discount += discount;
                variant.redeemed += count;
                variant.total_discount += discount;
            }
        }
    }
    for t in sums
        .redemptions
        .iter()
        .filter(|t| t.campaign_id == campaign_id)
    {
        *stats.redeemed_by_channel.entry(t.channel).or_default() += t.coupons;
    }
    stats.variants = campaign
        .variants
        .iter()
        .map(|v| {
            variants
                .remove(v.variant_id.as_str())
                .unwrap_or_else(|| VariantStats {
                    variant_id: v.variant_id.clone(),
                    issued: 0,
                    redeemed: 0,
                    total_discount: Decimal::ZERO,
                })
        })
        .collect();
    stats.median_to_redemption = sums
        .middle_times
        .map(|(lower, upper)| midpoint(TimeDelta::seconds(lower), TimeDelta::seconds(upper)));
    stats
}

/// The first instants of the months (in `tz`) from the month of `first` to the month after
/// the month of `last`: the ranges GetLiability reads the lot summary in.
pub fn month_bounds(first: DateTime<Utc>, last: DateTime<Utc>, tz: Tz) -> Vec<DateTime<Utc>> {
    let first_of_month = |at| {
        let date = local_date(at, tz);
        date.with_day(1).unwrap_or(date)
    };
    let end = first_of_month(last)
        .checked_add_months(Months::new(1))
        .unwrap_or(NaiveDate::MAX);
    std::iter::successors(Some(first_of_month(first)), |month| {
        month.checked_add_months(Months::new(1))
    })
    .take_while(|month| *month <= end)
    .map(|month| local_day_start(month, tz))
    .collect()
}

/// The days of a range [start, end) that GetActivity reads, and the window of rows that can
/// fall on them in any zone: a day is in the range when its first instant is, and no zone is
/// more than 14 hours from UTC nor has a day longer than 26 hours. Only `store_id`'s rows when
/// given.
///
/// In `totals` the window has an interior whose rows the store sums per channel and store: the
/// periods at least two days inside the range and the dates two days inside it. A row there is
/// on a day whose first instant is within 26 hours before it (or, for a date, within 14 hours
/// of its UTC midnight), so in the range in every zone: what a report in totals reads is then
/// a few days of rows at either end, not a year's.
pub fn activity_window(
    start: DateTime<Utc>,
    end: DateTime<Utc>,
    store_id: Option<&str>,
    totals: bool,
) -> ActivityWindow {
    let margin = TimeDelta::days(2);
    let (first_inside, end_inside) = (
        start.date_naive() + margin,
        end.date_naive() - TimeDelta::days(1),
    );
    let interior =
        (totals && start + margin < end - margin && first_inside < end_inside).then(|| {
            ActivityInterior {
                from: start + margin,
                to: end - margin,
                first_day: first_inside,
                end_day: end_inside,
            }
        });
    ActivityWindow {
        from: start,
        to: end + TimeDelta::hours(26),
        first_day: start.date_naive() - TimeDelta::days(1),
        last_day: end.date_naive() + TimeDelta::days(1),
        interior,
        store_id: store_id.map(str::to_string),
    }
}

/// Activity rows from the summaries' cells and visit counts: each cell on its local day in the
/// zone of its store (`zone_of`; the program's for no store), the days outside [start, end)
/// left out, then rolled up as the report shows them.
pub fn activity(
    sums: ReportSums,
    zone_of: impl Fn(&str) -> Tz,
    (start, end): (DateTime<Utc>, DateTime<Utc>),
    group_by_day: bool,
) -> Vec<ActivityRow> {
    let mut rows = Vec::new();
    for cell in sums.activity {
        let tz = zone_of(&cell.store_id);
        let day = local_date(cell.period, tz);
        if !day_in_range(day, tz, start, end) {
            continue;
        }
        rows.push(ActivityRow {
            points_earned: cell.points_earned,
            points_redeemed: cell.points_redeemed,
            points_expired: cell.points_expired,
            orders: cell.orders,
            sales: cell.sales,
            receipts: cell.receipts,
            ..ActivityRow::empty(ActivityKey {
                channel: cell.channel,
                store_id: cell.store_id,
                day: Some(day),
            })
        });
    }
    for count in sums.visits {
        let tz = zone_of(&count.store_id);
        if !day_in_range(count.visit_date, tz, start, end) {
            continue;
        }
        rows.push(ActivityRow {
            visits: count.visits,
            ..ActivityRow::empty(ActivityKey {
                channel: Some(Channel::Store),
                store_id: count.store_id,
                day: Some(count.visit_date),
            })
        });
    }
    // A journal entry that moves points outside the reported accounts (an adjustment, a
    // maturity) leaves a cell of zeros: no activity, so no row.
    roll_up(rows, group_by_day)
        .into_iter()
        .filter(|row| *row != ActivityRow::empty(row.key.clone()))
        .collect()
}

#[cfg(test)]
pub(super) mod tests {
    use chrono::TimeZone;

    use super::*;

    pub(in crate::domain) fn utc(
        y: i32,
        mo: u32,
        d: u32,
        h: u32,
        mi: u32,
        s: u32,
    ) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, mo, d, h, mi, s)
            .single()
            .expect("valid instant")
    }

    fn date(y: i32, m: u32, d: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, d).expect("valid date")
    }

    fn tz(name: &str) -> Tz {
        super::super::schedule::parse_time_zone(name).expect("known zone")
    }

    /// statrs' erfc (a series, not libm's) agrees with Python's math.erfc to about 1e-10 of
    /// the value: far below any digit a report shows.
    const P_VALUE_RELATIVE: f64 = 1e-9;

    fn assert_close(actual: f64, expected: f64, tolerance: f64, what: &str) {
        assert!(
            (actual - expected).abs() <= tolerance,
            "{what}: {actual} is not within {tolerance} of {expected}"
        );
    }

    /// Expected values computed independently of statrs, with Python's math.erfc:
    ///
    /// ```text
    /// python3 -c 'import math
    /// x1,n1,x2,n2 = 45,100,30,100   # and the other cases
    /// p1,p2 = x1/n1, x2/n2; p = (x1+x2)/(n1+n2)
    /// z = (p1-p2)/math.sqrt(p*(1-p)*(1/n1+1/n2)); d = p1-p2
    /// se = math.sqrt(p1*(1-p1)/n1 + p2*(1-p2)/n2); q = 1.959963984540054
    /// print(math.erfc(abs(z)/math.sqrt(2)), d-q*se, d+q*se)'
    /// ```
    #[test]
    fn the_p_value_and_interval_match_an_independent_computation() {
        // (redeemed_a, issued_a, redeemed_b, issued_b), p-value, ci95 low, ci95 high
        let cases = [
            (
                (45, 100, 30, 100),
                0.02845973691631057,
                0.017430493307564826,
                0.2825695066924352,
            ),
            (
                (120, 1000, 100, 1000),
                0.1529177818639462,
                -0.0074114819980199455,
                0.04741148199801992,
            ),
            (
                (5, 20, 12, 25),
                0.11380833809565488,
                -0.5027027709976881,
                0.04270277099768821,
            ),
            (
                (1, 50, 0, 50),
                0.3148786413364199,
                -0.018805307081790974,
                0.05880530708179098,
            ),
        ];
        for ((x_a, n_a, x_b, n_b), p_value, low, high) in cases {
            let what = format!("{x_a}/{n_a} vs {x_b}/{n_b}");
            let test = two_proportion_test(x_a, n_a, x_b, n_b).expect(&what);
            assert_close(test.p_value / p_value, 1.0, P_VALUE_RELATIVE, &what);
            assert_close(test.ci95_low, low, 1e-9, &what);
            assert_close(test.ci95_high, high, 1e-9, &what);
            assert_close(
                test.difference,
                x_a as f64 / n_a as f64 - x_b as f64 / n_b as f64,
                1e-15,
                &what,
            );
        }
    }

    /// A textbook reading: 45/100 against 30/100 gives z = 2.19, and a standard normal table
    /// has Φ(2.19) = 0.9857, so p = 2 × (1 − 0.9857) = 0.0286 to the table's four places; the
    /// 95 % interval uses the table's 1.96.
    #[test]
    fn the_p_value_agrees_with_a_normal_table() {
        let test = two_proportion_test(45, 100, 30, 100).expect("defined");
        assert_close(test.p_value, 0.0286, 5e-4, "p from the table");
        let half_width = (test.ci95_high - test.ci95_low) / 2.0;
        let standard_error = (0.45f64 * 0.55 / 100.0 + 0.30 * 0.70 / 100.0).sqrt();
        assert_close(half_width / standard_error, 1.96, 5e-4, "z of 97.5 %");
    }

    #[test]
    fn a_tiny_p_value_keeps_its_digits() {
        // Python: math.erfc(35.77708763999664 / math.sqrt(2)) = 2.509158096763687e-280.
        let test = two_proportion_test(900, 1000, 100, 1000).expect("defined");
        assert!(test.p_value > 0.0, "1 - cdf would have given 0");
        assert_close(
            test.p_value / 2.509158096763687e-280,
            1.0,
            P_VALUE_RELATIVE,
            "p",
        );
    }

    #[test]
    fn equal_rates_give_no_evidence_and_swapping_the_groups_mirrors_the_interval() {
        let same = two_proportion_test(30, 100, 60, 200).expect("defined");
        assert_close(same.difference, 0.0, 1e-15, "difference");
        assert_close(same.p_value, 1.0, 1e-15, "p");

        let ab = two_proportion_test(5, 20, 12, 25).expect("defined");
        let ba = two_proportion_test(12, 25, 5, 20).expect("defined");
        assert_close(ab.p_value, ba.p_value, 1e-15, "p");
        assert_close(ab.difference, -ba.difference, 1e-15, "difference");
        assert_close(ab.ci95_low, -ba.ci95_high, 1e-15, "low");
        assert_close(ab.ci95_high, -ba.ci95_low, 1e-15, "high");
    }

    #[test]
    fn the_test_is_undefined_without_a_rate_or_without_variance() {
        assert_eq!(two_proportion_test(0, 0, 3, 10), None, "A issued nothing");
        assert_eq!(two_proportion_test(3, 10, 0, 0), None, "B issued nothing");
        assert_eq!(two_proportion_test(0, 10, 0, 20), None, "both rates 0");
        assert_eq!(two_proportion_test(10, 10, 20, 20), None, "both rates 1");
        assert_eq!(
            two_proportion_test(11, 10, 3, 10),
            None,
            "more redeemed than issued"
        );
        assert_eq!(two_proportion_test(-1, 10, 3, 10), None, "negative");
    }

    /// Rates 0 and 1 are still a test (the pooled rate is 1/2), but the Wald error is 0.
    /// Python (as above) for 0/10 vs 10/10: p = 7.744216431044096e-06, interval [-1, -1].
    #[test]
    fn opposite_extremes_have_a_p_value_and_a_collapsed_interval() {
        let test = two_proportion_test(0, 10, 10, 10).expect("defined");
        assert_close(
            test.p_value / 7.744216431044096e-06,
            1.0,
            P_VALUE_RELATIVE,
            "p",
        );
        assert_eq!((test.ci95_low, test.ci95_high), (-1.0, -1.0));
    }

    #[test]
    fn the_campaign_compares_its_first_two_variants() {
        let variant = |id: &str, issued, redeemed| VariantStats {
            variant_id: id.into(),
            issued,
            redeemed,
            total_discount: Decimal::ZERO,
        };
        let mut stats = CampaignStats {
            variants: vec![variant("a", 100, 45)],
            ..CampaignStats::default()
        };
        assert_eq!(stats.first_two_compared(), None, "one variant");
        stats.variants.push(variant("b", 100, 30));
        stats.variants.push(variant("c", 100, 90));
        assert_eq!(
            stats.first_two_compared(),
            two_proportion_test(45, 100, 30, 100)
        );
    }

    #[test]
    fn a_rate_of_nothing_issued_is_zero() {
        assert_eq!(redemption_rate(0, 0), 0.0);
        assert_eq!(redemption_rate(3, 4), 0.75);
        assert_eq!(redemption_rate(4, 4), 1.0);
        let stats = CampaignStats {
            issued: 8,
            redeemed: 2,
            ..CampaignStats::default()
        };
        assert_eq!(stats.redemption_rate(), 0.25);
    }

    #[test]
    fn the_discount_per_redemption_is_rounded_to_money_precision() {
        let variant = |redeemed, total: &str| VariantStats {
            variant_id: "a".into(),
            issued: 10,
            redeemed,
            total_discount: total.parse().expect("decimal"),
        };
        assert_eq!(
            variant(3, "1000").discount_per_redemption().to_string(),
            "333.3333"
        );
        assert_eq!(
            variant(2, "1000").discount_per_redemption().to_string(),
            "500"
        );
        // Half to even at the fifth place: 0.00005 → 0.0000, 0.00015 → 0.0002.
        assert_eq!(
            variant(2, "0.0001").discount_per_redemption().to_string(),
            "0"
        );
        assert_eq!(
            variant(2, "0.0003").discount_per_redemption().to_string(),
            "0.0002"
        );
        assert_eq!(variant(0, "0").discount_per_redemption(), Decimal::ZERO);
    }

    #[test]
    fn order_sources_count_under_one_key() {
        assert_eq!(source_key("order:EC-9001"), "order");
        assert_eq!(source_key("admin"), "admin");
        assert_eq!(source_key("geo:shibuya-walk-in"), "geo:shibuya-walk-in");
        assert_eq!(source_key("visit:fifth-visit"), "visit:fifth-visit");
        assert_eq!(source_key("orders"), "orders", "only the order: prefix");
    }

    #[test]
    fn the_median_of_an_even_count_is_the_mean_of_the_middle_two() {
        let seconds = |list: &[i64]| list.iter().map(|s| (TimeDelta::seconds(*s), 1)).collect();
        assert_eq!(median_duration(Vec::new()), None);
        assert_eq!(
            median_duration(seconds(&[42])),
            Some(TimeDelta::seconds(42))
        );
        assert_eq!(
            median_duration(seconds(&[300, 10, 60])),
            Some(TimeDelta::seconds(60)),
            "unsorted, odd"
        );
        assert_eq!(
            median_duration(seconds(&[400, 10, 100, 3600])),
            Some(TimeDelta::seconds(250)),
            "(100 + 400) / 2"
        );
        assert_eq!(
            median_duration(seconds(&[1, 2])),
            Some(TimeDelta::milliseconds(1500)),
            "the mean keeps its fraction"
        );
        assert_eq!(
            median_duration(vec![(TimeDelta::seconds(5), 3), (TimeDelta::seconds(9), 1)]),
            Some(TimeDelta::seconds(5)),
            "counts weigh: 5, 5, 5, 9"
        );
        assert_eq!(
            median_duration(vec![(TimeDelta::seconds(5), 2), (TimeDelta::seconds(9), 2)]),
            Some(TimeDelta::seconds(7))
        );
        let extremes = vec![(TimeDelta::MIN, 1), (TimeDelta::MAX, 1)];
        let middle = median_duration(extremes).expect("two values");
        assert!(middle.abs() <= TimeDelta::milliseconds(1), "{middle:?}");
    }

    #[test]
    fn an_expiry_belongs_to_the_month_of_its_local_date() {
        let tokyo = tz("Asia/Tokyo");
        // 15:00 UTC on the last day of February is midnight of 1 March in Tokyo.
        let march_first = utc(2027, 2, 28, 15, 0, 0);
        assert_eq!(expiry_month(march_first, tokyo).to_string(), "2027-03");
        let just_before = march_first - TimeDelta::seconds(1);
        assert_eq!(expiry_month(just_before, tokyo).to_string(), "2027-02");
        assert_eq!(expiry_month(march_first, Tz::UTC).to_string(), "2027-02");
        let new_york = tz("America/New_York");
        assert_eq!(
            expiry_month(utc(2027, 1, 1, 3, 0, 0), new_york).to_string(),
            "2026-12",
            "22:00 on New Year's Eve in New York"
        );
        assert_eq!(
            YearMonth {
                year: 987,
                month: 1
            }
            .to_string(),
            "0987-01"
        );
    }

    #[test]
    fn expiries_are_bucketed_by_month_soonest_first() {
        let tokyo = tz("Asia/Tokyo");
        let buckets = buckets_by_month(
            [
                (utc(2027, 4, 10, 0, 0, 0), 5),
                (utc(2027, 2, 28, 15, 0, 0), 100),
                (utc(2027, 3, 31, 14, 0, 0), 20),
                (utc(2027, 2, 28, 14, 0, 0), 7),
                (utc(2027, 5, 1, 0, 0, 0), 3),
                (utc(2027, 5, 2, 0, 0, 0), -3),
            ],
            tokyo,
        );
        let shown: Vec<(String, i64)> = buckets
            .iter()
            .map(|bucket| (bucket.month.to_string(), bucket.points))
            .collect();
        assert_eq!(
            shown,
            [
                ("2027-02".to_string(), 7),
                ("2027-03".to_string(), 120),
                ("2027-04".to_string(), 5),
            ],
            "May nets to zero"
        );
    }

    #[test]
    fn the_liability_value_is_points_times_the_point_value() {
        assert_eq!(points_value(1234, Decimal::ONE), Decimal::from(1234));
        let half: Decimal = "0.5".parse().expect("decimal");
        assert_eq!(points_value(1235, half).to_string(), "617.5");
        assert_eq!(points_value(0, half), Decimal::ZERO);
    }

    fn row(channel: Option<Channel>, store: &str, day: NaiveDate, earned: i64) -> ActivityRow {
        ActivityRow {
            points_earned: earned,
            orders: 1,
            sales: Decimal::from(earned * 100),
            ..ActivityRow::empty(ActivityKey {
                channel,
                store_id: store.into(),
                day: Some(day),
            })
        }
    }

    #[test]
    fn activity_rolls_up_shards_and_optionally_days() {
        let (nov_30, dec_1) = (date(2026, 11, 30), date(2026, 12, 1));
        let store = Some(Channel::Store);
        let rows = vec![
            row(store, "shibuya", dec_1, 3),
            row(Some(Channel::Ec), "", nov_30, 10),
            row(store, "shibuya", nov_30, 1),
            row(store, "shibuya", nov_30, 2), // another shard of the same day
            row(None, "", nov_30, 0),
        ];
        let by_day = roll_up(rows.clone(), true);
        // (channel, store, day, points earned, orders)
        type Shown<'r> = (Option<Channel>, &'r str, Option<NaiveDate>, i64, i64);
        let shown: Vec<Shown> = by_day
            .iter()
            .map(|r| {
                let k = &r.key;
                (
                    k.channel,
                    k.store_id.as_str(),
                    k.day,
                    r.points_earned,
                    r.orders,
                )
            })
            .collect();
        assert_eq!(
            shown,
            [
                (None, "", Some(nov_30), 0, 1),
                (Some(Channel::Ec), "", Some(nov_30), 10, 1),
                (store, "shibuya", Some(nov_30), 3, 2),
                (store, "shibuya", Some(dec_1), 3, 1),
            ]
        );
        let whole_range = roll_up(rows, false);
        assert_eq!(whole_range.len(), 3);
        let shibuya = &whole_range[2];
        assert_eq!(shibuya.key.day, None);
        assert_eq!((shibuya.points_earned, shibuya.orders), (6, 3));
        assert_eq!(shibuya.sales, Decimal::from(600));
    }

    #[test]
    fn a_local_day_starts_at_local_midnight() {
        assert_eq!(
            local_day_start(date(2026, 11, 30), tz("Asia/Tokyo")),
            utc(2026, 11, 29, 15, 0, 0)
        );
        assert_eq!(
            local_day_start(date(2026, 11, 30), Tz::UTC),
            utc(2026, 11, 30, 0, 0, 0)
        );
        // Python zoneinfo: 2026-09-06 in Santiago skips from 23:59:59 -04 to 01:00 -03, at
        // 04:00 UTC; the day begins there.
        assert_eq!(
            local_day_start(date(2026, 9, 6), tz("America/Santiago")),
            utc(2026, 9, 6, 4, 0, 0)
        );
    }

    #[test]
    fn whole_days_of_one_zone_select_the_same_days_in_another() {
        let (tokyo, new_york) = (tz("Asia/Tokyo"), tz("America/New_York"));
        // November in Tokyo: [2026-10-31T15:00Z, 2026-11-30T15:00Z).
        let start = local_day_start(date(2026, 11, 1), tokyo);
        let end = local_day_start(date(2026, 12, 1), tokyo);
        for zone in [tokyo, new_york] {
            assert!(!day_in_range(date(2026, 10, 31), zone, start, end));
            assert!(day_in_range(date(2026, 11, 1), zone, start, end));
            assert!(day_in_range(date(2026, 11, 30), zone, start, end));
            assert!(!day_in_range(date(2026, 12, 1), zone, start, end));
        }
    }

    #[test]
    fn month_bounds_run_from_the_first_month_to_the_one_after_the_last() {
        let tokyo = tz("Asia/Tokyo");
        // 2026-12-31 16:00 UTC is January 1 in Tokyo.
        let bounds = month_bounds(
            utc(2026, 12, 31, 16, 0, 0),
            utc(2026, 12, 31, 16, 0, 0),
            tokyo,
        );
        assert_eq!(
            bounds,
            vec![utc(2026, 12, 31, 15, 0, 0), utc(2027, 1, 31, 15, 0, 0)]
        );
        // A zone with summer time: its months begin at 05:00 or 04:00 UTC.
        let new_york = tz("America/New_York");
        let bounds = month_bounds(
            utc(2026, 2, 10, 0, 0, 0),
            utc(2026, 4, 2, 0, 0, 0),
            new_york,
        );
        assert_eq!(
            bounds,
            vec![
                utc(2026, 2, 1, 5, 0, 0),
                utc(2026, 3, 1, 5, 0, 0),
                utc(2026, 4, 1, 4, 0, 0),
                utc(2026, 5, 1, 4, 0, 0),
            ]
        );
        // Ten years of months, each bound the first instant of a local month.
        let bounds = month_bounds(utc(2026, 1, 15, 0, 0, 0), utc(2035, 12, 15, 0, 0, 0), tokyo);
        assert_eq!(bounds.len(), 121);
        assert!(bounds.iter().all(|b| local_date(*b, tokyo).day() == 1));
    }

    proptest::proptest! {
        /// What GetActivity sums in SQL is on a day of the range in every zone: each period
        /// and date of the interior, and the labels the sums are placed on.
        #[test]
        fn the_interior_of_an_activity_window_is_in_range_in_every_zone(
            start_minutes in 0i64..(366 * 24 * 60),
            span_minutes in 1i64..(12 * 24 * 60),
            offset_minutes in 0i64..(12 * 24 * 60),
            zone in 0usize..chrono_tz::TZ_VARIANTS.len(),
        ) {
            let start = utc(2026, 1, 1, 0, 0, 0) + TimeDelta::minutes(start_minutes);
            let end = start + TimeDelta::minutes(span_minutes);
            let window = activity_window(start, end, None, true);
            if let Some(interior) = window.interior {
                let tz = chrono_tz::TZ_VARIANTS[zone];
                let span = (interior.to - interior.from).num_minutes().max(1);
                let period = interior.from + TimeDelta::minutes(offset_minutes % span);
                proptest::prop_assert!(window.from <= interior.from && interior.to <= window.to);
                for at in [interior.from, period] {
                    proptest::prop_assert!(day_in_range(local_date(at, tz), tz, start, end));
                }
                let days = (interior.end_day - interior.first_day).num_days().max(1);
                let date = interior.first_day + TimeDelta::days(offset_minutes % days);
                for day in [interior.first_day, date] {
                    proptest::prop_assert!(day_in_range(day, tz, start, end), "{day} in {tz}");
                }
            }
        }
    }
}
