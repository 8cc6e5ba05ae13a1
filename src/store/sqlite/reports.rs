//! The report summaries on SQLite (`domain::summary`, migration 0008): the flush's upserts,
//! the reports' reads (shards summed), and the recomputation from the ledger's own rows that
//! `omo verify` compares them with. Instants are integer microseconds; money in the summaries
//! is integer ten-thousandths, and decimal text of the ledger is grouped by value here and
//! added exactly in Rust (SQL would add it as floats).

use chrono::{DateTime, NaiveDate, Utc};
use rusqlite::Row;
use rust_decimal::{Decimal, prelude::ToPrimitive};

use super::{Cols, Query, SqliteUnitOfWork, lots};
use crate::domain::{
    coupon::CouponState,
    model::{Channel, LotState},
    ports::{
        ActivityCell, ActivityWindow, CampaignSums, LiabilityGroup, LiabilityLots, StoreError,
        StoreResult, VisitCount,
    },
    report::source_key,
    summary::{
        CouponTally, LotTally, QUARTER_MICROS, RedemptionTally, RedemptionTime, ReportSums,
        Tallies, expiry_ranges, quarter_of,
    },
};
use crate::store::{Fold, FoldedRows, SUMMARY_TABLES, summary_folds};

// Instants are floored to QUARTER_MICROS as `quarter_of` does, before 1970 too:
// `x - ((x % q) + q) % q`, since SQL's `%` keeps the sign of `x`.
/// `lot_summary`'s "never" (a lot that never expires; an available lot's maturity).
const NEVER: i64 = i64::MAX;
/// Money is kept in ten-thousandths.
const E4: i64 = 10_000;

fn to_e4(amount: Decimal) -> StoreResult<i64> {
    (amount * Decimal::from(E4))
        .round()
        .to_i64()
        .ok_or_else(|| StoreError::Corrupt(format!("amount {amount} is out of range")))
}

fn from_e4(e4: i64) -> Decimal {
    Decimal::new(e4, 4).normalize()
}

fn channel_text(channel: Option<Channel>) -> &'static str {
    channel.map_or("", Channel::as_str)
}

fn quarter_micros(quarter: Option<DateTime<Utc>>) -> i64 {
    quarter.map_or(NEVER, |q| q.timestamp_micros())
}

/// A read of a campaign summary table, shards summed, for `one` campaign (`?1`) or `all`:
/// `$key` the columns after campaign_id, `$discount` what is summed as the discount (`0` for
/// the tables without one). A row whose figures came to zero is left out, as no row.
macro_rules! campaign_summary {
    ($table:literal, $key:literal, $discount:literal, $group:literal, one) => {
        campaign_summary!(@ $table, $key, $discount, "where campaign_id = ?1", $group)
    };
    ($table:literal, $key:literal, $discount:literal, $group:literal, all) => {
        campaign_summary!(@ $table, $key, $discount, "", $group)
    };
    (@ $table:literal, $key:literal, $discount:literal, $filter:literal, $group:literal) => {
        concat!(
            "select campaign_id, ", $key, ", sum(coupons) as coupons, sum(", $discount,
            ") as discount_e4 from ", $table, " ", $filter, " ", $group,
            " having sum(coupons) <> 0 or sum(", $discount, ") <> 0"
        )
    };
}

/// The summary tables as the compaction folds them (`crate::store::Fold`).
const FOLDS: [Fold; 6] = summary_folds!("sales_e4", "discount_e4");

/// GetActivity's read of the activity summary (see `ActivityWindow`): `?1`-`?2` the window,
/// `?3`-`?4` its interior (summed per channel and store, on `?3`); of every store, or with
/// `$store` = "and store_id = ?5" of one, through `activity_summary_by_store` (a statement of
/// its own: `?5 = '' or ...` would keep the index out).
macro_rules! activity_read {
    ($store:literal) => {
        concat!(
            "select period, channel, store_id, sum(points_earned) as points_earned, ",
            "sum(points_redeemed) as points_redeemed, sum(points_expired) as points_expired, ",
            "sum(orders) as orders, sum(sales_e4) as sales_e4, sum(receipts) as receipts ",
            "from activity_summary ",
            "where ((period >= ?1 and period < ?3) or (period >= ?4 and period < ?2)) ",
            $store,
            " group by 1, 2, 3 union all ",
            "select ?3, channel, store_id, sum(points_earned), sum(points_redeemed), ",
            "sum(points_expired), sum(orders), sum(sales_e4), sum(receipts) ",
            "from activity_summary where period >= ?3 and period < ?4 ",
            $store,
            " group by 2, 3"
        )
    };
}

/// The visits of a window as [`activity_read`] reads activity, by local date (which compares
/// as text: the window's years have four digits).
macro_rules! visits_read {
    ($store:literal) => {
        concat!(
            "select store_id, visit_date, sum(visits) as visits from visit_summary ",
            "where ((visit_date >= ?1 and visit_date < ?3) ",
            "or (visit_date >= ?4 and visit_date <= ?2)) ",
            $store,
            " group by 1, 2 union all ",
            "select store_id, ?3, sum(visits) from visit_summary ",
            "where visit_date >= ?3 and visit_date < ?4 ",
            $store,
            " group by 1"
        )
    };
}

impl SqliteUnitOfWork {
    /// Adds a batch's net change of the summaries at `shard` (one upsert per row), and counts
    /// a visit the flush inserted.
    pub(super) fn add_report_sums(&self, sums: &ReportSums, shard: i16) -> StoreResult<()> {
        for cell in &sums.activity {
            let query = self
                .query(
                    r"
                    insert into activity_summary (period, channel, store_id, shard,
                        points_earned, points_redeemed, points_expired, orders, sales_e4, receipts)
                    values (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)
                    on conflict (period, channel, store_id, shard) do update
                    set points_earned = points_earned + excluded.points_earned,
                        points_redeemed = points_redeemed + excluded.points_redeemed,
                        points_expired = points_expired + excluded.points_expired,
                        orders = orders + excluded.orders,
                        sales_e4 = sales_e4 + excluded.sales_e4,
                        receipts = receipts + excluded.receipts
                    ",
                )?
                .bind(cell.period.timestamp_micros()) // ?1
                .bind(channel_text(cell.channel)) // ?2
                .bind(&cell.store_id) // ?3
                .bind(shard) // ?4
                .bind(cell.points_earned) // ?5
                .bind(cell.points_redeemed) // ?6
                .bind(cell.points_expired) // ?7
                .bind(cell.orders) // ?8
                .bind(to_e4(cell.sales)?) // ?9
                .bind(cell.receipts); // ?10
            self.run(query)?;
        }
        for count in &sums.visits {
            self.add_visits(&count.store_id, count.visit_date, count.visits, shard)?;
        }
        for t in &sums.coupons {
            let query = self
                .query(
                    r"
                    insert into coupon_summary (campaign_id, variant_id, source, state, shard,
                        coupons, discount_e4)
                    values (?1, ?2, ?3, ?4, ?5, ?6, ?7)
                    on conflict (campaign_id, variant_id, source, state, shard) do update
                    set coupons = coupons + excluded.coupons,
                        discount_e4 = discount_e4 + excluded.discount_e4
                    ",
                )?
                .bind(&t.campaign_id) // ?1
                .bind(&t.variant_id) // ?2
                .bind(&t.source) // ?3
                .bind(t.state.as_str()) // ?4
                .bind(shard) // ?5
                .bind(t.coupons) // ?6
                .bind(to_e4(t.discount)?); // ?7
            self.run(query)?;
        }
        for t in &sums.redemptions {
            let query = self
                .query(
                    r"
                    insert into redemption_summary (campaign_id, channel, shard, coupons)
                    values (?1, ?2, ?3, ?4)
                    on conflict (campaign_id, channel, shard) do update
                    set coupons = coupons + excluded.coupons
                    ",
                )?
                .bind(&t.campaign_id) // ?1
                .bind(t.channel.as_str()) // ?2
                .bind(shard) // ?3
                .bind(t.coupons); // ?4
            self.run(query)?;
        }
        for t in &sums.redemption_times {
            let query = self
                .query(
                    r"
                    insert into redemption_time_summary (campaign_id, seconds, shard, coupons)
                    values (?1, ?2, ?3, ?4)
                    on conflict (campaign_id, seconds, shard) do update
                    set coupons = coupons + excluded.coupons
                    ",
                )?
                .bind(&t.campaign_id) // ?1
                .bind(t.seconds) // ?2
                .bind(shard) // ?3
                .bind(t.coupons); // ?4
            self.run(query)?;
        }
        for t in &sums.lots {
            let query = self
                .query(
                    r"
                    insert into lot_summary (expires_quarter, matures_quarter, state, shard,
                        remaining_points, held_points)
                    values (?1, ?2, ?3, ?4, ?5, ?6)
                    on conflict (expires_quarter, matures_quarter, state, shard) do update
                    set remaining_points = remaining_points + excluded.remaining_points,
                        held_points = held_points + excluded.held_points
                    ",
                )?
                .bind(quarter_micros(t.expires_quarter)) // ?1
                .bind(quarter_micros(t.matures_quarter)) // ?2
                .bind(t.state.as_str()) // ?3
                .bind(shard) // ?4
                .bind(t.remaining_points) // ?5
                .bind(t.held_points); // ?6
            self.run(query)?;
        }
        Ok(())
    }

    pub(super) fn add_visits(
        &self,
        store_id: &str,
        visit_date: NaiveDate,
        visits: i64,
        shard: i16,
    ) -> StoreResult<()> {
        let query = self
            .query(
                r"
                insert into visit_summary (visit_date, store_id, shard, visits)
                values (?1, ?2, ?3, ?4)
                on conflict (visit_date, store_id, shard) do update
                set visits = visits + excluded.visits
                ",
            )?
            .bind(visit_date.to_string()) // ?1
            .bind(store_id) // ?2
            .bind(shard) // ?3
            .bind(visits); // ?4
        self.run(query)
    }

    pub(super) fn lot_expiry_span(&self) -> StoreResult<Option<(DateTime<Utc>, DateTime<Utc>)>> {
        // Two index lookups (min() and max() alone in their selects).
        let query = self
            .query(
                r"
                select (select min(expires_quarter) from lot_summary) as first,
                    (select max(expires_quarter) from lot_summary where expires_quarter < ?1)
                        as last
                ",
            )?
            .bind(NEVER); // ?1
        let span = query.fetch_one(|row| {
            let c = Cols::new(row, "lot_summary", "expires_quarter");
            Ok((never_is_none(&c, "first")?, never_is_none(&c, "last")?))
        })?;
        Ok(match span {
            (Some(first), Some(last)) => Some((first, last)),
            _ => None,
        })
    }

    /// `summary::counted_groups` in SQL, one range at a time: each is a sequential read of
    /// the table (stored in its key's order) by one cached statement, in process; one
    /// statement joining the ranges would sort the rows to group them.
    pub(super) fn liability_lots(
        &self,
        as_of: DateTime<Utc>,
        bounds: &[DateTime<Utc>],
    ) -> StoreResult<LiabilityLots> {
        let start = quarter_of(as_of).timestamp_micros();
        // (label, lo, hi), [lo, hi] inclusive (micros are integers): an open range ends short
        // of never, which is a range of its own.
        let ranges = expiry_ranges(bounds)
            .into_iter()
            .map(|range| {
                (
                    range.label.timestamp_micros(),
                    range.from.map_or(i64::MIN, |from| from.timestamp_micros()),
                    range.to.map_or(NEVER, |to| to.timestamp_micros()) - 1,
                )
            })
            .chain([(NEVER, NEVER, NEVER)]);
        let mut groups = Vec::new();
        for (label, lo, hi) in ranges {
            // Groups that net to zero are left out, as an aggregate over no rows (nulls).
            let query = self
                .query(
                    r"
                    select * from (
                        select ?4 as expires_quarter,
                            sum(case
                                when expires_quarter >= ?3 then remaining_points
                                else held_points
                            end) as outstanding_points,
                            sum(case
                                when state = 'pending' and expires_quarter >= ?3
                                    and matures_quarter >= ?3
                                then remaining_points - held_points
                                else 0
                            end) as pending_points,
                            sum(held_points) as held_points
                        from lot_summary
                        where expires_quarter between ?1 and ?2
                    )
                    where outstanding_points <> 0 or pending_points <> 0 or held_points <> 0
                    ",
                )?
                .bind(lo) // ?1
                .bind(hi) // ?2
                .bind(start) // ?3
                .bind(label); // ?4
            groups.extend(query.fetch_optional(liability_group_from_row)?);
        }
        let boundary = lots::lots_due_between(self, start, as_of.timestamp_micros())?;
        Ok(LiabilityLots { groups, boundary })
    }

    fn lot_tallies(&self) -> StoreResult<Vec<LotTally>> {
        let query = self.query(
            r"
            select expires_quarter, matures_quarter, state,
                sum(remaining_points) as remaining_points, sum(held_points) as held_points
            from lot_summary
            group by 1, 2, 3
            ",
        )?;
        self.fetch_all(query, lot_tally_from_row)
    }

    /// What GetCampaignStats reads of one campaign: its coupon and redemption summaries and
    /// the two middle times to redemption, found by a running sum in SQL (as
    /// `report::median_duration` finds them).
    pub(super) fn campaign_sums(&self, campaign_id: &str) -> StoreResult<CampaignSums> {
        let sums = self.coupon_sums(Some(campaign_id))?;
        let query = self
            .query(
                r"
                with times as (
                    select seconds, sum(coupons) as coupons
                    from redemption_time_summary
                    where campaign_id = ?1
                    group by seconds
                    having sum(coupons) > 0
                ), running as (
                    select seconds,
                        sum(coupons) over (order by seconds rows unbounded preceding) as seen,
                        sum(coupons) over () as total
                    from times
                )
                select min(case when seen > (total - 1) / 2 then seconds end) as lower,
                    min(case when seen > total / 2 then seconds end) as upper
                from running
                ",
            )?
            .bind(campaign_id); // ?1
        let middle_times = query.fetch_one(|row| {
            let c = Cols::new(row, "redemption_time_summary", "seconds");
            let lower: Option<i64> = c.get("lower")?;
            let upper: Option<i64> = c.get("upper")?;
            Ok(lower.zip(upper))
        })?;
        Ok(CampaignSums {
            coupons: sums.coupons,
            redemptions: sums.redemptions,
            middle_times,
        })
    }

    /// The coupon and redemption summaries of one campaign, or of every campaign (None).
    fn coupon_sums(&self, campaign_id: Option<&str>) -> StoreResult<ReportSums> {
        let read = |one: &'static str, all: &'static str| -> StoreResult<Query<'_>> {
            Ok(match campaign_id {
                Some(campaign_id) => self.query(one)?.bind(campaign_id), // ?1
                None => self.query(all)?,
            })
        };
        let coupons = read(
            campaign_summary!(
                "coupon_summary",
                "variant_id, source, state",
                "discount_e4",
                "group by 1, 2, 3, 4",
                one
            ),
            campaign_summary!(
                "coupon_summary",
                "variant_id, source, state",
                "discount_e4",
                "group by 1, 2, 3, 4",
                all
            ),
        )?
        .fetch_all(coupon_tally_from_row)?;
        let redemptions = read(
            campaign_summary!("redemption_summary", "channel", "0", "group by 1, 2", one),
            campaign_summary!("redemption_summary", "channel", "0", "group by 1, 2", all),
        )?
        .fetch_all(redemption_from_row)?;
        Ok(ReportSums {
            coupons,
            redemptions,
            ..ReportSums::default()
        })
    }

    /// The activity and visits of a window (see [`ActivityWindow`]): the rows outside the
    /// interior one by one, the interior's summed per channel and store.
    pub(super) fn activity_sums(&self, window: &ActivityWindow) -> StoreResult<ReportSums> {
        let interior = window.interior_or_empty();
        let (activity, visits) = match window.store_id {
            None => (activity_read!(""), visits_read!("")),
            Some(_) => (
                activity_read!("and store_id = ?5"),
                visits_read!("and store_id = ?5"),
            ),
        };
        fn store<'c>(query: Query<'c>, store_id: Option<&str>) -> Query<'c> {
            match store_id {
                Some(store_id) => query.bind(store_id), // ?5
                None => query,
            }
        }
        let store_id = window.store_id.as_deref();
        let query = self
            .query(activity)?
            .bind(window.from.timestamp_micros()) // ?1
            .bind(window.to.timestamp_micros()) // ?2
            .bind(interior.from.timestamp_micros()) // ?3
            .bind(interior.to.timestamp_micros()); // ?4
        let activity = self.fetch_all(store(query, store_id), activity_from_row)?;
        let query = self
            .query(visits)?
            .bind(window.first_day.to_string()) // ?1
            .bind(window.last_day.to_string()) // ?2
            .bind(interior.first_day.to_string()) // ?3
            .bind(interior.end_day.to_string()); // ?4
        let visits = self.fetch_all(store(query, store_id), visit_count_from_row)?;
        Ok(ReportSums {
            activity,
            visits,
            ..ReportSums::default()
        })
    }

    /// Every summary row, shards summed.
    pub(super) fn report_sums(&self) -> StoreResult<ReportSums> {
        let activity = self.activity_sums(&ActivityWindow::everything())?;
        let sums = ReportSums {
            activity: activity.activity,
            visits: activity.visits,
            lots: self.lot_tallies()?,
            redemption_times: self
                .query(campaign_summary!(
                    "redemption_time_summary",
                    "seconds",
                    "0",
                    "group by 1, 2",
                    all
                ))?
                .fetch_all(redemption_time_from_row)?,
            ..self.coupon_sums(None)?
        };
        // In the order and form of a recomputation.
        let mut tallies = Tallies::new();
        tallies.add(sums, |cell| cell.period);
        Ok(tallies.finish())
    }

    /// Folds the summaries' rows of [from, to) into one row per key (see `Fold`); how many
    /// rows it wrote.
    pub(super) fn compact_report_sums(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> StoreResult<u64> {
        fn window<'c>(
            query: Query<'c>,
            rows: &FoldedRows,
            window: [DateTime<Utc>; 2],
        ) -> Query<'c> {
            let [from, to] = window;
            match rows {
                FoldedRows::Instants(_) => query
                    .bind(from.timestamp_micros()) // ?1
                    .bind(to.timestamp_micros()), // ?2
                FoldedRows::Dates(_) => query
                    .bind(from.date_naive().to_string()) // ?1
                    .bind(to.date_naive().to_string()), // ?2
                FoldedRows::TouchedCampaigns => query,
            }
        }
        let mut written = 0;
        for fold in &FOLDS {
            let [sum, delete, settle] = fold.statements("?1", "?2");
            written += window(self.query(&sum)?, &fold.rows, [from, to]).execute()? as u64;
            window(self.query(&delete)?, &fold.rows, [from, to]).execute()?;
            self.query(&settle)?.execute()?;
        }
        Ok(written)
    }

    /// Replaces every summary row with `sums` (at shard 0) and clears the rebuild requests.
    pub(super) fn replace_report_sums(&self, sums: &ReportSums) -> StoreResult<()> {
        // The summaries, and the rebuild requests this rebuild answers.
        for table in SUMMARY_TABLES.into_iter().chain(["summary_rebuilds"]) {
            self.run(self.query(&format!("delete from {table}"))?)?;
        }
        self.add_report_sums(sums, 0)
    }

    pub(super) fn summary_rebuild_wanted(&self) -> StoreResult<bool> {
        let query = self.query("select exists (select 1 from summary_rebuilds) as wanted")?;
        let wanted = self.fetch_optional(query, |row| {
            Cols::new(row, "summary_rebuilds", "wanted").get("wanted")
        })?;
        Ok(wanted == Some(true))
    }

    /// The summaries recomputed from the ledger's own rows; activity by quarter hour.
    pub(super) fn recompute_report_sums(&self) -> StoreResult<ReportSums> {
        let mut tallies = Tallies::new();
        let by_quarter = |cell: &ActivityCell| cell.period;
        let cells = [
            self.recompute_points()?,
            self.recompute_orders()?,
            self.recompute_receipts()?,
        ]
        .concat();
        let query = self.query(
            r"
            select store_id, visit_date, count(*) as visits
            from visits
            group by 1, 2
            ",
        )?;
        let visits = self.fetch_all(query, visit_count_from_row)?;
        tallies.add(
            ReportSums {
                activity: cells,
                visits,
                ..ReportSums::default()
            },
            by_quarter,
        );
        // Coupons grouped by discount value (text), added up exactly by `Tallies`.
        let query = self.query(
            r"
            select campaign_id, variant_id,
                case when source like 'order:%' then 'order' else source end as source,
                state, count(*) as coupons, discount
            from coupons
            group by 1, 2, 3, 4, 6
            ",
        )?;
        let coupons = self.fetch_all(query, |row| {
            let c = Cols::new(row, "coupons", "campaign_id");
            let coupons: i64 = c.get("coupons")?;
            let discount = c
                .opt_money("discount")?
                .map_or(Decimal::ZERO, |d| d.amount());
            Ok(CouponTally {
                campaign_id: c.get("campaign_id")?,
                variant_id: c.get("variant_id")?,
                source: c.get("source")?,
                state: c.named("state", CouponState::parse)?,
                coupons,
                discount: discount * Decimal::from(coupons),
            })
        })?;
        let query = self.query(
            r"
            select c.campaign_id, o.channel, count(*) as coupons
            from coupons c
            join orders o on o.order_id = c.order_id
            where c.state = 'redeemed'
            group by 1, 2
            ",
        )?;
        let redemptions = self.fetch_all(query, redemption_from_row)?;
        let query = self.query(
            r"
            select campaign_id, issued_at, redeemed_at
            from coupons
            where state = 'redeemed'
              and redeemed_at is not null
            ",
        )?;
        let redemption_times = self.fetch_all(query, |row| {
            let c = Cols::new(row, "coupons", "campaign_id");
            let time = c.instant("redeemed_at")? - c.instant("issued_at")?;
            Ok(RedemptionTime {
                campaign_id: c.get("campaign_id")?,
                seconds: crate::domain::summary::redemption_bucket(time),
                coupons: 1,
            })
        })?;
        let query = self
            .query(
                r"
                select expires_at - ((expires_at % ?1) + ?1) % ?1 as expires_quarter,
                    case when state = 'pending' then matures_at - ((matures_at % ?1) + ?1) % ?1 end
                        as matures_quarter,
                    state,
                    sum(remaining_points) as remaining_points,
                    sum(held_points) as held_points
                from point_lots
                where state <> 'expired'
                  and remaining_points > 0
                group by 1, 2, 3
                ",
            )?
            .bind(QUARTER_MICROS); // ?1
        let lots = self.fetch_all(query, lot_tally_from_row)?;
        tallies.add(
            ReportSums {
                coupons,
                redemptions,
                redemption_times,
                lots,
                ..ReportSums::default()
            },
            by_quarter,
        );
        Ok(tallies.finish())
    }

    /// Points moved to and from the program's accounts, by the channel, store and quarter hour
    /// of their journal entry. Adjustments (`program:adjustments`) are not earnings; points
    /// leave the issuing accounts (`program:issued` and the rules' `rule:*`) as earnings, and
    /// move between them (a rule's budget funded) as nothing.
    fn recompute_points(&self) -> StoreResult<Vec<ActivityCell>> {
        let query = self
            .query(
                r"
                select t.channel,
                    t.store_id,
                    t.occurred_at - ((t.occurred_at % ?1) + ?1) % ?1 as quarter,
                    coalesce(sum(case
                        when (p.from_account = 'program:issued' or p.from_account like 'rule:%')
                            and not (p.to_account = 'program:issued' or p.to_account like 'rule:%')
                            then p.amount
                        when (p.to_account = 'program:issued' or p.to_account like 'rule:%')
                            and not (p.from_account = 'program:issued'
                                or p.from_account like 'rule:%')
                            then -p.amount
                    end), 0) as points_earned,
                    coalesce(sum(case
                        when p.to_account like 'program:redeemed:%' then p.amount
                        when p.from_account like 'program:redeemed:%' then -p.amount
                    end), 0) as points_redeemed,
                    coalesce(sum(case
                        when p.to_account = 'program:expired' then p.amount
                        when p.from_account = 'program:expired' then -p.amount
                    end), 0) as points_expired
                from transactions t
                join postings p on p.transaction_id = t.transaction_id
                where p.asset = 'PTS'
                group by 1, 2, 3
                ",
            )?
            .bind(QUARTER_MICROS); // ?1
        self.fetch_all(query, |row| {
            let c = Cols::new(row, "postings", "store_id");
            Ok(ActivityCell {
                points_earned: c.get("points_earned")?,
                points_redeemed: c.get("points_redeemed")?,
                points_expired: c.get("points_expired")?,
                ..ActivityCell::empty(channel_of(&c)?, c.get("store_id")?, c.instant("quarter")?)
            })
        })
    }

    /// Orders sold or captured and their totals, less the amounts refunded (a refund's journal
    /// entry keeps its amount in its metadata), one cell per entry's amount and kind.
    fn recompute_orders(&self) -> StoreResult<Vec<ActivityCell>> {
        let query = self
            .query(
                r"
                select t.channel,
                    t.store_id,
                    t.occurred_at - ((t.occurred_at % ?1) + ?1) % ?1 as quarter,
                    t.kind = 'refund' as refund,
                    case
                        when t.kind = 'refund' then json_extract(t.metadata, '$.amount')
                        else o.total
                    end as amount,
                    count(*) as entries
                from transactions t
                left join orders o on o.order_id = t.order_id and t.kind <> 'refund'
                where t.kind in ('sale', 'capture', 'refund')
                group by 1, 2, 3, 4, 5
                ",
            )?
            .bind(QUARTER_MICROS); // ?1
        self.fetch_all(query, |row| {
            let c = Cols::new(row, "transactions", "store_id");
            let entries: i64 = c.get("entries")?;
            let amount = c.money("amount")?.amount() * Decimal::from(entries);
            let refund: bool = c.get("refund")?;
            let cell =
                ActivityCell::empty(channel_of(&c)?, c.get("store_id")?, c.instant("quarter")?);
            Ok(if refund {
                ActivityCell {
                    sales: -amount,
                    ..cell
                }
            } else {
                ActivityCell {
                    orders: entries,
                    sales: amount,
                    ..cell
                }
            })
        })
    }

    /// Accepted receipts, where and when their journal entries are: at the receipt's store, on
    /// no channel, at the instant the receipt was issued.
    fn recompute_receipts(&self) -> StoreResult<Vec<ActivityCell>> {
        let query = self
            .query(
                r"
                select store_id,
                    issued_at - ((issued_at % ?1) + ?1) % ?1 as quarter,
                    count(*) as receipts
                from receipts
                where status = 'accepted'
                group by 1, 2
                ",
            )?
            .bind(QUARTER_MICROS); // ?1
        self.fetch_all(query, |row| {
            let c = Cols::new(row, "receipts", "store_id");
            Ok(ActivityCell {
                receipts: c.get("receipts")?,
                ..ActivityCell::empty(None, c.get("store_id")?, c.instant("quarter")?)
            })
        })
    }
}

/// A journal entry's or summary row's channel (null or '': none).
fn channel_of(c: &Cols<'_, '_>) -> StoreResult<Option<Channel>> {
    let name: Option<String> = c.get("channel")?;
    name.filter(|name| !name.is_empty())
        .map(|name| {
            Channel::parse(&name)
                .ok_or_else(|| c.corrupt("channel", format!("unknown value {name:?}")))
        })
        .transpose()
}

fn never_is_none(c: &Cols<'_, '_>, column: &str) -> StoreResult<Option<DateTime<Utc>>> {
    let micros: Option<i64> = c.get(column)?;
    match micros {
        None | Some(NEVER) => Ok(None),
        Some(micros) => c.instant_of(column, micros).map(Some),
    }
}

fn lot_tally_from_row(row: &Row<'_>) -> StoreResult<LotTally> {
    let c = Cols::new(row, "lot_summary", "expires_quarter");
    Ok(LotTally {
        expires_quarter: never_is_none(&c, "expires_quarter")?,
        matures_quarter: never_is_none(&c, "matures_quarter")?,
        state: c.named("state", LotState::parse)?,
        remaining_points: c.get("remaining_points")?,
        held_points: c.get("held_points")?,
    })
}

fn liability_group_from_row(row: &Row<'_>) -> StoreResult<LiabilityGroup> {
    let c = Cols::new(row, "lot_summary", "expires_quarter");
    Ok(LiabilityGroup {
        expires_quarter: never_is_none(&c, "expires_quarter")?,
        outstanding_points: c.get("outstanding_points")?,
        pending_points: c.get("pending_points")?,
        held_points: c.get("held_points")?,
    })
}

fn coupon_tally_from_row(row: &Row<'_>) -> StoreResult<CouponTally> {
    let c = Cols::new(row, "coupon_summary", "campaign_id");
    Ok(CouponTally {
        campaign_id: c.get("campaign_id")?,
        variant_id: c.get("variant_id")?,
        source: source_key(&c.get::<String>("source")?).to_string(),
        state: c.named("state", CouponState::parse)?,
        coupons: c.get("coupons")?,
        discount: from_e4(c.get("discount_e4")?),
    })
}

fn redemption_from_row(row: &Row<'_>) -> StoreResult<RedemptionTally> {
    let c = Cols::new(row, "redemption_summary", "campaign_id");
    Ok(RedemptionTally {
        campaign_id: c.get("campaign_id")?,
        channel: c.named("channel", Channel::parse)?,
        coupons: c.get("coupons")?,
    })
}

fn redemption_time_from_row(row: &Row<'_>) -> StoreResult<RedemptionTime> {
    let c = Cols::new(row, "redemption_time_summary", "campaign_id");
    Ok(RedemptionTime {
        campaign_id: c.get("campaign_id")?,
        seconds: c.get("seconds")?,
        coupons: c.get("coupons")?,
    })
}

fn activity_from_row(row: &Row<'_>) -> StoreResult<ActivityCell> {
    let c = Cols::new(row, "activity_summary", "store_id");
    Ok(ActivityCell {
        points_earned: c.get("points_earned")?,
        points_redeemed: c.get("points_redeemed")?,
        points_expired: c.get("points_expired")?,
        orders: c.get("orders")?,
        sales: from_e4(c.get("sales_e4")?),
        receipts: c.get("receipts")?,
        ..ActivityCell::empty(channel_of(&c)?, c.get("store_id")?, c.instant("period")?)
    })
}

fn visit_count_from_row(row: &Row<'_>) -> StoreResult<VisitCount> {
    let c = Cols::new(row, "visits", "store_id");
    let date: String = c.get("visit_date")?;
    Ok(VisitCount {
        store_id: c.get("store_id")?,
        visit_date: date
            .parse()
            .map_err(|e| c.corrupt("visit_date", format!("{date:?}: {e}")))?,
        visits: c.get("visits")?,
    })
}
