//! The report summaries on PostgreSQL (`domain::summary`, migration 0008): the flush's parts
//! (one upsert per summary table, joined into the one flush statement), the reports' reads
//! (shards summed), and the recomputation from the ledger's own rows that `omo verify`
//! compares them with. Instants are grouped by quarter hour (UTC) in the recomputation.

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use sqlx::postgres::PgRow;

use super::{Cols, PgQuery, PgUnitOfWork, column};
use crate::domain::{
    coupon::CouponState,
    model::{Channel, LotState},
    ports::{
        ActivityCell, ActivityWindow, CampaignSums, LiabilityGroup, LiabilityLots, StoreResult,
        Visit, VisitCount,
    },
    summary::{
        CouponTally, LotTally, RedemptionTally, RedemptionTime, ReportSums, Tallies, expiry_ranges,
        redemption_bucket,
    },
};
use crate::store::{Fold, FoldedRows, SUMMARY_TABLES, summary_folds};

// ---------------------------------------------------------------------------------------------
// The flush's parts: `$1` is the shard, then one array per column. Every part upserts rows the
// engine has netted to one per key, sorted by key (the lock order); the parts come in the
// order of the tables in `LOCK_SUMMARIES`.

pub(super) const ADD_ACTIVITY: &str = r#"
insert into activity_summary as s (period, channel, store_id, shard, points_earned,
    points_redeemed, points_expired, orders, sales, receipts)
select d.period, d.channel, d.store_id, $1, d.points_earned, d.points_redeemed,
    d.points_expired, d.orders, d.sales, d.receipts
from unnest($2::timestamptz[], $3::text[], $4::text[], $5::bigint[], $6::bigint[],
    $7::bigint[], $8::bigint[], $9::numeric[], $10::bigint[])
    as d (period, channel, store_id, points_earned, points_redeemed, points_expired, orders,
        sales, receipts)
on conflict (period, channel, store_id, shard) do update
set points_earned = s.points_earned + excluded.points_earned,
    points_redeemed = s.points_redeemed + excluded.points_redeemed,
    points_expired = s.points_expired + excluded.points_expired,
    orders = s.orders + excluded.orders,
    sales = s.sales + excluded.sales,
    receipts = s.receipts + excluded.receipts"#;

/// Visits are inserted here, in the flush statement, so that the visit summary counts exactly
/// those that were new: a visit a batch did not need to read may exist (`do nothing`).
pub(super) const INSERT_VISITS: &str = r#"
insert into visits (member_id, store_id, visit_date, first_at, source)
select *
from unnest($1::text[], $2::text[], $3::date[], $4::timestamptz[], $5::text[])
on conflict (member_id, store_id, visit_date) do nothing
returning store_id, visit_date"#;

/// Counts the visits `new_visits` (the part above) inserted.
pub(super) const COUNT_VISITS: &str = r#"
insert into visit_summary as s (visit_date, store_id, shard, visits)
select visit_date, store_id, $1, count(*)
from new_visits
group by 1, 2
order by 1, 2
on conflict (visit_date, store_id, shard) do update
set visits = s.visits + excluded.visits"#;

pub(super) const ADD_COUPONS: &str = r#"
insert into coupon_summary as s (campaign_id, variant_id, source, state, shard, coupons,
    discount)
select d.campaign_id, d.variant_id, d.source, d.state, $1, d.coupons, d.discount
from unnest($2::text[], $3::text[], $4::text[], $5::text[], $6::bigint[], $7::numeric[])
    as d (campaign_id, variant_id, source, state, coupons, discount)
on conflict (campaign_id, variant_id, source, state, shard) do update
set coupons = s.coupons + excluded.coupons,
    discount = s.discount + excluded.discount"#;

pub(super) const ADD_REDEMPTIONS: &str = r#"
insert into redemption_summary as s (campaign_id, channel, shard, coupons)
select d.campaign_id, d.channel, $1, d.coupons
from unnest($2::text[], $3::text[], $4::bigint[]) as d (campaign_id, channel, coupons)
on conflict (campaign_id, channel, shard) do update
set coupons = s.coupons + excluded.coupons"#;

pub(super) const ADD_REDEMPTION_TIMES: &str = r#"
insert into redemption_time_summary as s (campaign_id, seconds, shard, coupons)
select d.campaign_id, d.seconds, $1, d.coupons
from unnest($2::text[], $3::bigint[], $4::bigint[]) as d (campaign_id, seconds, coupons)
on conflict (campaign_id, seconds, shard) do update
set coupons = s.coupons + excluded.coupons"#;

pub(super) const ADD_LOTS: &str = r#"
insert into lot_summary as s (expires_quarter, matures_quarter, state, shard, remaining_points,
    held_points)
select coalesce(d.expires_quarter, 'infinity'), coalesce(d.matures_quarter, 'infinity'),
    d.state, $1, d.remaining_points, d.held_points
from unnest($2::timestamptz[], $3::timestamptz[], $4::text[], $5::bigint[], $6::bigint[])
    as d (expires_quarter, matures_quarter, state, remaining_points, held_points)
on conflict (expires_quarter, matures_quarter, state, shard) do update
set remaining_points = s.remaining_points + excluded.remaining_points,
    held_points = s.held_points + excluded.held_points"#;

/// Taken by a rebuild before it recomputes: a flush then waits at its summary parts (with its
/// ledger rows uncommitted) until the rebuild commits. The tables in the order of the parts.
const LOCK_SUMMARIES: &str = r#"
lock table activity_summary, visit_summary, coupon_summary, redemption_summary,
    redemption_time_summary, lot_summary in exclusive mode"#;

pub(super) fn bind_activity<'q>(
    q: PgQuery<'q>,
    shard: i16,
    rows: &'q [ActivityCell],
) -> PgQuery<'q> {
    q.bind(shard) // $1
        .bind(column(rows, |c| c.period)) // $2
        .bind(column(rows, |c| c.channel.map_or("", Channel::as_str))) // $3
        .bind(column(rows, |c| c.store_id.as_str())) // $4
        .bind(column(rows, |c| c.points_earned)) // $5
        .bind(column(rows, |c| c.points_redeemed)) // $6
        .bind(column(rows, |c| c.points_expired)) // $7
        .bind(column(rows, |c| c.orders)) // $8
        .bind(column(rows, |c| c.sales)) // $9
        .bind(column(rows, |c| c.receipts)) // $10
}

pub(super) fn bind_visits<'q>(q: PgQuery<'q>, visits: &'q [Visit]) -> PgQuery<'q> {
    q.bind(column(visits, |v| v.member_id.as_str())) // $1
        .bind(column(visits, |v| v.store_id.as_str())) // $2
        .bind(column(visits, |v| v.visit_date)) // $3
        .bind(column(visits, |v| v.first_at)) // $4
        .bind(column(visits, |v| v.source.as_str())) // $5
}

pub(super) fn bind_coupons<'q>(q: PgQuery<'q>, shard: i16, rows: &'q [CouponTally]) -> PgQuery<'q> {
    q.bind(shard) // $1
        .bind(column(rows, |t| t.campaign_id.as_str())) // $2
        .bind(column(rows, |t| t.variant_id.as_str())) // $3
        .bind(column(rows, |t| t.source.as_str())) // $4
        .bind(column(rows, |t| t.state.as_str())) // $5
        .bind(column(rows, |t| t.coupons)) // $6
        .bind(column(rows, |t| t.discount)) // $7
}

pub(super) fn bind_redemptions<'q>(
    q: PgQuery<'q>,
    shard: i16,
    rows: &'q [RedemptionTally],
) -> PgQuery<'q> {
    q.bind(shard) // $1
        .bind(column(rows, |t| t.campaign_id.as_str())) // $2
        .bind(column(rows, |t| t.channel.as_str())) // $3
        .bind(column(rows, |t| t.coupons)) // $4
}

pub(super) fn bind_redemption_times<'q>(
    q: PgQuery<'q>,
    shard: i16,
    rows: &'q [RedemptionTime],
) -> PgQuery<'q> {
    q.bind(shard) // $1
        .bind(column(rows, |t| t.campaign_id.as_str())) // $2
        .bind(column(rows, |t| t.seconds)) // $3
        .bind(column(rows, |t| t.coupons)) // $4
}

pub(super) fn bind_lots<'q>(q: PgQuery<'q>, shard: i16, rows: &'q [LotTally]) -> PgQuery<'q> {
    q.bind(shard) // $1
        .bind(column(rows, |t| t.expires_quarter)) // $2
        .bind(column(rows, |t| t.matures_quarter)) // $3
        .bind(column(rows, |t| t.state.as_str())) // $4
        .bind(column(rows, |t| t.remaining_points)) // $5
        .bind(column(rows, |t| t.held_points)) // $6
}

/// The summary tables as the compaction folds them (`crate::store::Fold`).
const FOLDS: [Fold; 6] = summary_folds!("sales", "discount");

// ---------------------------------------------------------------------------------------------
// The reports' reads.

const LOT_TALLIES: &str = r#"
select nullif(expires_quarter, 'infinity') as expires_quarter,
    nullif(matures_quarter, 'infinity') as matures_quarter,
    state,
    sum(remaining_points)::bigint as remaining_points,
    sum(held_points)::bigint as held_points
from lot_summary
group by 1, 2, 3"#;

/// A read of a campaign summary table, shards summed, for `one` campaign (`$1`) or `all`:
/// `$key` the columns after campaign_id, `$discount` what is summed as the discount (`0` for
/// the tables without one). A row whose figures came to zero is left out, as no row. Two
/// statements rather than `$1 is null or ...`, whose generic plan could not use the key.
macro_rules! campaign_summary {
    ($table:literal, $key:literal, $discount:literal, $group:literal, one) => {
        campaign_summary!(@ $table, $key, $discount, "where campaign_id = $1", $group)
    };
    ($table:literal, $key:literal, $discount:literal, $group:literal, all) => {
        campaign_summary!(@ $table, $key, $discount, "", $group)
    };
    (@ $table:literal, $key:literal, $discount:literal, $filter:literal, $group:literal) => {
        concat!(
            "select campaign_id, ", $key, ", sum(coupons)::bigint as coupons, sum(", $discount,
            ")::numeric as discount from ", $table, " ", $filter, " ", $group,
            " having sum(coupons) <> 0 or sum(", $discount, ") <> 0"
        )
    };
}

/// The first and last expiry quarter of the lot summary (two index lookups).
const LOT_EXPIRY_SPAN: &str = r#"
select nullif((select min(expires_quarter) from lot_summary), 'infinity') as first,
    (select max(expires_quarter) from lot_summary where expires_quarter < 'infinity') as last"#;

/// `summary::counted_groups` in SQL: `$1` the ranges' labels, `$2`/`$3` their bounds (null:
/// open), `$4` the start of as_of's quarter; a range is an index range of the primary key's
/// first column. Groups that net to zero are left out.
const LIABILITY: &str = r#"
select * from (
    select b.label as expires_quarter,
        sum(case
            when s.expires_quarter >= $4 then s.remaining_points
            else s.held_points
        end)::bigint as outstanding_points,
        sum(case
            when s.state = 'pending' and s.expires_quarter >= $4 and s.matures_quarter >= $4
            then s.remaining_points - s.held_points
            else 0
        end)::bigint as pending_points,
        sum(s.held_points)::bigint as held_points
    from unnest($1::timestamptz[], $2::timestamptz[], $3::timestamptz[]) as b (label, lo, hi)
    join lot_summary s
        on s.expires_quarter >= coalesce(b.lo, '-infinity')
        and s.expires_quarter < coalesce(b.hi, 'infinity')
    group by b.label
    union all
    select null::timestamptz,
        sum(remaining_points)::bigint,
        sum(case
            when state = 'pending' and matures_quarter >= $4 then remaining_points - held_points
            else 0
        end)::bigint,
        sum(held_points)::bigint
    from lot_summary
    where expires_quarter = 'infinity'
) as groups
where outstanding_points <> 0 or pending_points <> 0 or held_points <> 0"#;

/// The two middle times to redemption of campaign `$1`, by a running sum (positions
/// (total - 1) / 2 and total / 2, as `report::median_duration`).
const MIDDLE_TIMES: &str = r#"
with times as (
    select seconds, sum(coupons)::bigint as coupons
    from redemption_time_summary
    where campaign_id = $1
    group by seconds
    having sum(coupons) > 0
), running as (
    select seconds,
        (sum(coupons) over (order by seconds rows unbounded preceding))::bigint as seen,
        (sum(coupons) over ())::bigint as total
    from times
)
select min(seconds) filter (where seen > (total - 1) / 2) as lower,
    min(seconds) filter (where seen > total / 2) as upper
from running"#;

/// The activity of a window (`ActivityWindow`): `$1`-`$2` the window, `$3`-`$4` its interior
/// (summed per channel and store, on `$3`); of every store, or with `$store` = "and store_id =
/// $5" of one, through `activity_summary_by_store` (a statement of its own: a generic plan of
/// `$5 = '' or ...` would keep the index out).
macro_rules! activity_read {
    ($store:literal) => {
        concat!(
            "select period, channel, store_id, sum(points_earned)::bigint as points_earned, ",
            "sum(points_redeemed)::bigint as points_redeemed, ",
            "sum(points_expired)::bigint as points_expired, sum(orders)::bigint as orders, ",
            "sum(sales) as sales, sum(receipts)::bigint as receipts from activity_summary ",
            "where ((period >= $1 and period < $3) or (period >= $4 and period < $2)) ",
            $store,
            " group by 1, 2, 3 union all ",
            "select $3::timestamptz, channel, store_id, sum(points_earned)::bigint, ",
            "sum(points_redeemed)::bigint, sum(points_expired)::bigint, sum(orders)::bigint, ",
            "sum(sales), sum(receipts)::bigint from activity_summary ",
            "where period >= $3 and period < $4 ",
            $store,
            " group by 2, 3"
        )
    };
}

/// The visits of a window, as [`activity_read`] with dates.
macro_rules! visits_read {
    ($store:literal) => {
        concat!(
            "select store_id, visit_date, sum(visits)::bigint as visits from visit_summary ",
            "where ((visit_date >= $1 and visit_date < $3) ",
            "or (visit_date >= $4 and visit_date <= $2)) ",
            $store,
            " group by 1, 2 union all ",
            "select store_id, $3::date, sum(visits)::bigint from visit_summary ",
            "where visit_date >= $3 and visit_date < $4 ",
            $store,
            " group by 1"
        )
    };
}

// ---------------------------------------------------------------------------------------------
// The recomputation from the ledger.

/// Points moved to and from the program's accounts, by the channel, store and quarter hour of
/// their journal entry. Adjustments (`program:adjustments`) are not earnings; points leave the
/// issuing accounts (`program:issued` and the rules' `rule:*`) as earnings, and move between
/// them (a rule's budget funded) as nothing.
const RECOMPUTE_POINTS: &str = r#"
select t.channel,
    t.store_id,
    date_bin('15 minutes', t.occurred_at, timestamptz '2000-01-01 00:00:00+00') as period,
    coalesce(sum(case
        when (p.from_account = 'program:issued' or p.from_account like 'rule:%')
            and not (p.to_account = 'program:issued' or p.to_account like 'rule:%')
            then p.amount
        when (p.to_account = 'program:issued' or p.to_account like 'rule:%')
            and not (p.from_account = 'program:issued' or p.from_account like 'rule:%')
            then -p.amount
    end), 0)::bigint as points_earned,
    coalesce(sum(case
        when p.to_account like 'program:redeemed:%' then p.amount
        when p.from_account like 'program:redeemed:%' then -p.amount
    end), 0)::bigint as points_redeemed,
    coalesce(sum(case
        when p.to_account = 'program:expired' then p.amount
        when p.from_account = 'program:expired' then -p.amount
    end), 0)::bigint as points_expired,
    0::bigint as orders,
    0::numeric as sales,
    0::bigint as receipts
from transactions t
join postings p on p.transaction_id = t.transaction_id
where p.asset = 'PTS'
group by 1, 2, 3"#;

/// Orders sold or captured and their totals, less the amounts refunded (a refund's journal
/// entry keeps its amount in its metadata).
const RECOMPUTE_ORDERS: &str = r#"
select t.channel,
    t.store_id,
    date_bin('15 minutes', t.occurred_at, timestamptz '2000-01-01 00:00:00+00') as period,
    0::bigint as points_earned,
    0::bigint as points_redeemed,
    0::bigint as points_expired,
    count(*) filter (where t.kind <> 'refund') as orders,
    sum(case
        when t.kind = 'refund' then -(t.metadata ->> 'amount')::numeric
        else o.total
    end) as sales,
    0::bigint as receipts
from transactions t
left join orders o on o.order_id = t.order_id and t.kind <> 'refund'
where t.kind in ('sale', 'capture', 'refund')
group by 1, 2, 3"#;

/// Accepted receipts, where and when their journal entries are: at the receipt's store, on no
/// channel, at the instant the receipt was issued.
const RECOMPUTE_RECEIPTS: &str = r#"
select null::text as channel,
    store_id,
    date_bin('15 minutes', issued_at, timestamptz '2000-01-01 00:00:00+00') as period,
    0::bigint as points_earned,
    0::bigint as points_redeemed,
    0::bigint as points_expired,
    0::bigint as orders,
    0::numeric as sales,
    count(*) as receipts
from receipts
where status = 'accepted'
group by 1, 2, 3"#;

const RECOMPUTE_VISITS: &str = r#"
select store_id, visit_date, count(*) as visits
from visits
group by 1, 2"#;

const RECOMPUTE_COUPONS: &str = r#"
select campaign_id, variant_id,
    case when source like 'order:%' then 'order' else source end as source,
    state,
    count(*) as coupons,
    coalesce(sum(discount), 0) as discount
from coupons
group by 1, 2, 3, 4"#;

const RECOMPUTE_REDEMPTIONS: &str = r#"
select c.campaign_id, o.channel, count(*) as coupons
from coupons c
join orders o on o.order_id = c.order_id
where c.state = 'redeemed'
group by 1, 2"#;

/// Seconds to redemption, bucketed in Rust (`domain::summary::redemption_bucket`).
const RECOMPUTE_REDEMPTION_TIMES: &str = r#"
select campaign_id, issued_at, redeemed_at
from coupons
where state = 'redeemed'
    and redeemed_at is not null"#;

const RECOMPUTE_LOTS: &str = r#"
select date_bin('15 minutes', expires_at, timestamptz '2000-01-01 00:00:00+00')
        as expires_quarter,
    case when state = 'pending'
        then date_bin('15 minutes', matures_at, timestamptz '2000-01-01 00:00:00+00')
    end as matures_quarter,
    state,
    sum(remaining_points)::bigint as remaining_points,
    sum(held_points)::bigint as held_points
from point_lots
where state <> 'expired'
    and remaining_points > 0
group by 1, 2, 3"#;

impl PgUnitOfWork {
    async fn lot_tallies(&mut self) -> StoreResult<Vec<LotTally>> {
        self.fetch_all(sqlx::query(LOT_TALLIES), lot_tally_from_row)
            .await
    }

    pub(super) async fn lot_expiry_span(
        &mut self,
    ) -> StoreResult<Option<(DateTime<Utc>, DateTime<Utc>)>> {
        let span = self
            .fetch_optional(sqlx::query(LOT_EXPIRY_SPAN), |row| {
                let c = Cols::new(row, "lot_summary", "expires_quarter");
                let first: Option<DateTime<Utc>> = c.get("first")?;
                let last: Option<DateTime<Utc>> = c.get("last")?;
                Ok(first.zip(last))
            })
            .await?;
        Ok(span.flatten())
    }

    pub(super) async fn liability_lots(
        &mut self,
        as_of: DateTime<Utc>,
        bounds: &[DateTime<Utc>],
    ) -> StoreResult<LiabilityLots> {
        let ranges = expiry_ranges(bounds);
        let labels: Vec<DateTime<Utc>> = ranges.iter().map(|range| range.label).collect();
        let lows: Vec<Option<DateTime<Utc>>> = ranges.iter().map(|range| range.from).collect();
        let highs: Vec<Option<DateTime<Utc>>> = ranges.iter().map(|range| range.to).collect();
        let start = crate::domain::summary::quarter_of(as_of);
        let query = sqlx::query(LIABILITY)
            .bind(labels) // $1
            .bind(lows) // $2
            .bind(highs) // $3
            .bind(start); // $4
        let groups = self.fetch_all(query, liability_group_from_row).await?;
        let boundary = super::lots::lots_due_between(self, start, as_of).await?;
        Ok(LiabilityLots { groups, boundary })
    }

    /// What GetCampaignStats reads of one campaign: its coupon and redemption summaries and
    /// the two middle times to redemption.
    pub(super) async fn campaign_sums(&mut self, campaign_id: &str) -> StoreResult<CampaignSums> {
        let sums = self.coupon_sums(Some(campaign_id)).await?;
        let query = sqlx::query(MIDDLE_TIMES).bind(campaign_id.to_string()); // $1
        let middle_times = self
            .fetch_optional(query, |row| {
                let c = Cols::new(row, "redemption_time_summary", "seconds");
                let lower: Option<i64> = c.get("lower")?;
                let upper: Option<i64> = c.get("upper")?;
                Ok(lower.zip(upper))
            })
            .await?
            .flatten();
        Ok(CampaignSums {
            coupons: sums.coupons,
            redemptions: sums.redemptions,
            middle_times,
        })
    }

    /// The coupon and redemption summaries of one campaign (`None`: of every campaign).
    async fn coupon_sums(&mut self, campaign_id: Option<&str>) -> StoreResult<ReportSums> {
        let read = |one: &'static str, all: &'static str| match campaign_id {
            Some(campaign_id) => sqlx::query(one).bind(campaign_id.to_string()), // $1
            None => sqlx::query(all),
        };
        let query = read(
            campaign_summary!(
                "coupon_summary",
                "variant_id, source, state",
                "discount",
                "group by 1, 2, 3, 4",
                one
            ),
            campaign_summary!(
                "coupon_summary",
                "variant_id, source, state",
                "discount",
                "group by 1, 2, 3, 4",
                all
            ),
        );
        let coupons = self.fetch_all(query, coupon_tally_from_row).await?;
        let query = read(
            campaign_summary!("redemption_summary", "channel", "0", "group by 1, 2", one),
            campaign_summary!("redemption_summary", "channel", "0", "group by 1, 2", all),
        );
        let redemptions = self.fetch_all(query, redemption_from_row).await?;
        Ok(ReportSums {
            coupons,
            redemptions,
            ..ReportSums::default()
        })
    }

    pub(super) async fn activity_sums(
        &mut self,
        window: &ActivityWindow,
    ) -> StoreResult<ReportSums> {
        let interior = window.interior_or_empty();
        let (activity, visits) = match window.store_id {
            None => (activity_read!(""), visits_read!("")),
            Some(_) => (
                activity_read!("and store_id = $5"),
                visits_read!("and store_id = $5"),
            ),
        };
        let store = |query: PgQuery<'static>| match &window.store_id {
            Some(store_id) => query.bind(store_id.clone()), // $5
            None => query,
        };
        let query = sqlx::query(activity)
            .bind(window.from) // $1
            .bind(window.to) // $2
            .bind(interior.from) // $3
            .bind(interior.to); // $4
        let activity = self.fetch_all(store(query), activity_from_row).await?;
        let query = sqlx::query(visits)
            .bind(window.first_day) // $1
            .bind(window.last_day) // $2
            .bind(interior.first_day) // $3
            .bind(interior.end_day); // $4
        let visits = self.fetch_all(store(query), visit_count_from_row).await?;
        Ok(ReportSums {
            activity,
            visits,
            ..ReportSums::default()
        })
    }

    pub(super) async fn report_sums(&mut self) -> StoreResult<ReportSums> {
        let activity = self.activity_sums(&ActivityWindow::everything()).await?;
        let coupons = self.coupon_sums(None).await?;
        let query = sqlx::query(campaign_summary!(
            "redemption_time_summary",
            "seconds",
            "0",
            "group by 1, 2",
            all
        ));
        let redemption_times = self.fetch_all(query, redemption_time_from_row).await?;
        let lots = self.lot_tallies().await?;
        let sums = ReportSums {
            activity: activity.activity,
            visits: activity.visits,
            lots,
            redemption_times,
            ..coupons
        };
        // In the order and form of a recomputation.
        let mut tallies = Tallies::new();
        tallies.add(sums, |cell| cell.period);
        Ok(tallies.finish())
    }

    /// Folds the summaries' rows of [from, to) into one row per key (see `Fold`); how many
    /// rows it wrote.
    pub(super) async fn compact_report_sums(
        &mut self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> StoreResult<u64> {
        fn window<'q>(
            query: PgQuery<'q>,
            rows: &FoldedRows,
            [from, to]: [DateTime<Utc>; 2],
        ) -> PgQuery<'q> {
            match rows {
                FoldedRows::Instants(_) => query.bind(from).bind(to), // $1, $2
                FoldedRows::Dates(_) => query.bind(from.date_naive()).bind(to.date_naive()),
                FoldedRows::TouchedCampaigns => query,
            }
        }
        let mut written = 0;
        for fold in &FOLDS {
            let [sum, delete, settle] = fold.statements("$1", "$2");
            written += self
                .run_counted(window(sqlx::query(&sum), &fold.rows, [from, to]))
                .await?;
            self.run(window(sqlx::query(&delete), &fold.rows, [from, to]))
                .await?;
            self.run(sqlx::query(&settle)).await?;
        }
        Ok(written)
    }

    pub(super) async fn lock_report_sums(&mut self) -> StoreResult<()> {
        self.run(sqlx::query(LOCK_SUMMARIES)).await
    }

    pub(super) async fn replace_report_sums(&mut self, sums: &ReportSums) -> StoreResult<()> {
        // The summaries, and the rebuild requests this rebuild answers.
        for table in SUMMARY_TABLES.into_iter().chain(["summary_rebuilds"]) {
            self.run(sqlx::query(&format!("delete from {table}")))
                .await?;
        }
        let shard = 0;
        if !sums.activity.is_empty() {
            self.run(bind_activity(
                sqlx::query(ADD_ACTIVITY),
                shard,
                &sums.activity,
            ))
            .await?;
        }
        if !sums.visits.is_empty() {
            let visits = &sums.visits;
            let query = sqlx::query(
                r#"
                insert into visit_summary (visit_date, store_id, shard, visits)
                select visit_date, store_id, 0, visits
                from unnest($1::date[], $2::text[], $3::bigint[]) as d (visit_date, store_id, visits)"#,
            )
            .bind(column(visits, |v| v.visit_date)) // $1
            .bind(column(visits, |v| v.store_id.as_str())) // $2
            .bind(column(visits, |v| v.visits)); // $3
            self.run(query).await?;
        }
        if !sums.coupons.is_empty() {
            self.run(bind_coupons(sqlx::query(ADD_COUPONS), shard, &sums.coupons))
                .await?;
        }
        if !sums.redemptions.is_empty() {
            let query = bind_redemptions(sqlx::query(ADD_REDEMPTIONS), shard, &sums.redemptions);
            self.run(query).await?;
        }
        if !sums.redemption_times.is_empty() {
            let query = bind_redemption_times(
                sqlx::query(ADD_REDEMPTION_TIMES),
                shard,
                &sums.redemption_times,
            );
            self.run(query).await?;
        }
        if !sums.lots.is_empty() {
            self.run(bind_lots(sqlx::query(ADD_LOTS), shard, &sums.lots))
                .await?;
        }
        Ok(())
    }

    pub(super) async fn summary_rebuild_wanted(&mut self) -> StoreResult<bool> {
        let query = sqlx::query("select exists (select 1 from summary_rebuilds) as wanted");
        let wanted = self
            .fetch_optional(query, |row| {
                Cols::new(row, "summary_rebuilds", "wanted").get("wanted")
            })
            .await?;
        Ok(wanted == Some(true))
    }

    /// The summaries recomputed from the ledger's own rows; activity by quarter hour.
    pub(super) async fn recompute_report_sums(&mut self) -> StoreResult<ReportSums> {
        // A recomputation reads the whole ledger (`omo verify`, a rebuild): the session's 30 s
        // statement timeout is meant for requests. At 7,000,000 transactions the points alone
        // took 35 s on 2 cores, so a rebuild (and a server starting with one asked for) failed.
        self.execute("set local statement_timeout = '30min'")
            .await?;
        let mut activity = Vec::new();
        for sql in [RECOMPUTE_POINTS, RECOMPUTE_ORDERS, RECOMPUTE_RECEIPTS] {
            activity.extend(self.fetch_all(sqlx::query(sql), activity_from_row).await?);
        }
        let visits = self
            .fetch_all(sqlx::query(RECOMPUTE_VISITS), visit_count_from_row)
            .await?;
        let coupons = self
            .fetch_all(sqlx::query(RECOMPUTE_COUPONS), coupon_tally_from_row)
            .await?;
        let redemptions = self
            .fetch_all(sqlx::query(RECOMPUTE_REDEMPTIONS), redemption_from_row)
            .await?;
        let redemption_times = self
            .fetch_all(sqlx::query(RECOMPUTE_REDEMPTION_TIMES), |row| {
                let c = Cols::new(row, "coupons", "campaign_id");
                let issued_at: DateTime<Utc> = c.get("issued_at")?;
                let redeemed_at: DateTime<Utc> = c.get("redeemed_at")?;
                Ok(RedemptionTime {
                    campaign_id: c.get("campaign_id")?,
                    seconds: redemption_bucket(redeemed_at - issued_at),
                    coupons: 1,
                })
            })
            .await?;
        let lots = self
            .fetch_all(sqlx::query(RECOMPUTE_LOTS), lot_tally_from_row)
            .await?;
        let mut tallies = Tallies::new();
        tallies.add(
            ReportSums {
                activity,
                visits,
                coupons,
                redemptions,
                redemption_times,
                lots,
            },
            |cell| cell.period,
        );
        Ok(tallies.finish())
    }
}

fn lot_tally_from_row(row: &PgRow) -> StoreResult<LotTally> {
    let c = Cols::new(row, "lot_summary", "state");
    Ok(LotTally {
        expires_quarter: c.get("expires_quarter")?,
        matures_quarter: c.get("matures_quarter")?,
        state: c.parse("state", LotState::parse)?,
        remaining_points: c.get("remaining_points")?,
        held_points: c.get("held_points")?,
    })
}

fn liability_group_from_row(row: &PgRow) -> StoreResult<LiabilityGroup> {
    let c = Cols::new(row, "lot_summary", "expires_quarter");
    Ok(LiabilityGroup {
        expires_quarter: c.get("expires_quarter")?,
        outstanding_points: c.get("outstanding_points")?,
        pending_points: c.get("pending_points")?,
        held_points: c.get("held_points")?,
    })
}

fn coupon_tally_from_row(row: &PgRow) -> StoreResult<CouponTally> {
    let c = Cols::new(row, "coupon_summary", "campaign_id");
    let discount: Decimal = c.get("discount")?;
    Ok(CouponTally {
        campaign_id: c.get("campaign_id")?,
        variant_id: c.get("variant_id")?,
        source: c.get("source")?,
        state: c.parse("state", CouponState::parse)?,
        coupons: c.get("coupons")?,
        discount: discount.normalize(),
    })
}

fn redemption_from_row(row: &PgRow) -> StoreResult<RedemptionTally> {
    let c = Cols::new(row, "redemption_summary", "campaign_id");
    Ok(RedemptionTally {
        campaign_id: c.get("campaign_id")?,
        channel: c.parse("channel", Channel::parse)?,
        coupons: c.get("coupons")?,
    })
}

fn redemption_time_from_row(row: &PgRow) -> StoreResult<RedemptionTime> {
    let c = Cols::new(row, "redemption_time_summary", "campaign_id");
    Ok(RedemptionTime {
        campaign_id: c.get("campaign_id")?,
        seconds: c.get("seconds")?,
        coupons: c.get("coupons")?,
    })
}

/// A summary row (channel '' = none) or a recomputed cell (channel null = none).
fn activity_from_row(row: &PgRow) -> StoreResult<ActivityCell> {
    let c = Cols::new(row, "activity_summary", "store_id");
    let channel: Option<&str> = c.get("channel")?;
    let channel = match channel.filter(|name| !name.is_empty()) {
        None => None,
        Some(_) => c.channel_opt("channel")?,
    };
    Ok(ActivityCell {
        points_earned: c.get("points_earned")?,
        points_redeemed: c.get("points_redeemed")?,
        points_expired: c.get("points_expired")?,
        orders: c.get("orders")?,
        sales: c.get("sales")?,
        receipts: c.get("receipts")?,
        ..ActivityCell::empty(channel, c.get("store_id")?, c.get("period")?)
    })
}

fn visit_count_from_row(row: &PgRow) -> StoreResult<VisitCount> {
    let c = Cols::new(row, "visit_summary", "visit_date");
    Ok(VisitCount {
        store_id: c.get("store_id")?,
        visit_date: c.get("visit_date")?,
        visits: c.get("visits")?,
    })
}
