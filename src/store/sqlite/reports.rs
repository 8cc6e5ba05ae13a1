//! The reports' reads (ReportService): sums over the ledger's own rows (point lots, coupons,
//! the journal, receipts, visits), grouped as `domain::ports` describes. Instants (integer
//! microseconds here) are grouped by quarter hour (UTC) so that the engine can place them in any
//! zone's months and days. Amounts are decimal text, which SQL would add as floats: they are
//! grouped by value here and added exactly in Rust.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use rusqlite::Row;
use rust_decimal::Decimal;

use super::{Cols, SqliteUnitOfWork};
use crate::domain::{
    Money,
    coupon::CouponState,
    model::Channel,
    ports::{
        ActivityCell, ActivityCells, ActivityWindow, CampaignCoupons, CouponGroup, LiabilityGroup,
        StoreResult, VisitCount,
    },
};

/// A quarter hour in microseconds.
const QUARTER_MICROS: i64 = 15 * 60 * 1_000_000;

impl SqliteUnitOfWork {
    /// Live lots by the quarter hour they expire in. A lot that expired at or before `as_of`
    /// but that the sweeper has not expired yet owes only its held points, as a member's
    /// balance shows it (`domain::lots::balance_at`).
    pub(super) fn liability(&self, as_of: DateTime<Utc>) -> StoreResult<Vec<LiabilityGroup>> {
        let query = self
            .query(
                r"
                select expires_at - expires_at % ?2 as expires_quarter,
                    sum(case
                        when expires_at is null or expires_at > ?1 then remaining_points
                        else held_points
                    end) as outstanding_points,
                    sum(case
                        when state = 'pending'
                            and (matures_at is null or matures_at > ?1)
                            and (expires_at is null or expires_at > ?1)
                        then remaining_points - held_points
                        else 0
                    end) as pending_points,
                    sum(held_points) as held_points
                from point_lots
                where remaining_points > 0
                    and state <> 'expired'
                group by 1
                ",
            )?
            .bind(as_of.timestamp_micros()) // ?1
            .bind(QUARTER_MICROS); // ?2
        self.fetch_all(query, liability_from_row)
    }

    pub(super) fn campaign_coupons(&self, campaign_id: &str) -> StoreResult<CampaignCoupons> {
        // Every coupon issued on the capture of an order counts under "order"
        // (`domain::report::source_key`): grouping by the whole source would return a row per
        // order.
        let query = self
            .query(
                r"
                select variant_id,
                    case when source like 'order:%' then 'order' else source end as source,
                    state,
                    discount,
                    count(*) as coupons
                from coupons
                where campaign_id = ?1
                group by 1, 2, 3, 4
                ",
            )?
            .bind(campaign_id); // ?1
        let groups = self.fetch_all(query, coupon_group_from_row)?;
        let query = self
            .query(
                r"
                select o.channel, count(*) as coupons
                from coupons c
                join orders o on o.order_id = c.order_id
                where c.campaign_id = ?1
                    and c.state = 'redeemed'
                group by 1
                ",
            )?
            .bind(campaign_id); // ?1
        let redeemed_by_channel = self.fetch_all(query, channel_count_from_row)?;
        let query = self
            .query(
                r"
                select issued_at, redeemed_at
                from coupons
                where campaign_id = ?1
                    and state = 'redeemed'
                ",
            )?
            .bind(campaign_id); // ?1
        let times_to_redemption = self.fetch_all(query, time_to_redemption_from_row)?;
        Ok(CampaignCoupons {
            groups,
            redeemed_by_channel,
            times_to_redemption,
        })
    }

    pub(super) fn activity(&self, window: &ActivityWindow) -> StoreResult<ActivityCells> {
        let mut cells = self.activity_points(window)?;
        cells.extend(self.activity_orders(window)?);
        cells.extend(self.activity_receipts(window)?);
        let query = self
            .query(
                r"
                select store_id, visit_date, count(*) as visits
                from visits
                where visit_date between ?1 and ?2
                group by 1, 2
                ",
            )?
            .bind(window.first_day.to_string()) // ?1
            .bind(window.last_day.to_string()); // ?2
        let visits = self.fetch_all(query, visit_count_from_row)?;
        Ok(ActivityCells { cells, visits })
    }

    /// Points moved to and from the program's accounts, by the channel, store and quarter hour
    /// of their journal entry. Adjustments (`program:adjustments`) are not earnings.
    fn activity_points(&self, window: &ActivityWindow) -> StoreResult<Vec<ActivityCell>> {
        let query = self
            .query(
                r"
                select t.channel,
                    t.store_id,
                    t.occurred_at - t.occurred_at % ?3 as quarter,
                    coalesce(sum(case
                        when p.from_account = 'program:issued' then p.amount
                        when p.to_account = 'program:issued' then -p.amount
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
                where t.occurred_at >= ?1
                    and t.occurred_at < ?2
                    and p.asset = 'PTS'
                group by 1, 2, 3
                ",
            )?
            .bind(window.from.timestamp_micros()) // ?1
            .bind(window.to.timestamp_micros()) // ?2
            .bind(QUARTER_MICROS); // ?3
        self.fetch_all(query, points_cell_from_row)
    }

    /// Orders sold or captured and their totals, less the amounts refunded (a refund's journal
    /// entry keeps its amount in its metadata), grouped by amount and added up here.
    fn activity_orders(&self, window: &ActivityWindow) -> StoreResult<Vec<ActivityCell>> {
        let query = self
            .query(
                r"
                select t.channel,
                    t.store_id,
                    t.occurred_at - t.occurred_at % ?3 as quarter,
                    t.kind = 'refund' as refund,
                    case
                        when t.kind = 'refund' then json_extract(t.metadata, '$.amount')
                        else o.total
                    end as amount,
                    count(*) as entries
                from transactions t
                left join orders o on o.order_id = t.order_id and t.kind <> 'refund'
                where t.kind in ('sale', 'capture', 'refund')
                    and t.occurred_at >= ?1
                    and t.occurred_at < ?2
                group by 1, 2, 3, 4, 5
                ",
            )?
            .bind(window.from.timestamp_micros()) // ?1
            .bind(window.to.timestamp_micros()) // ?2
            .bind(QUARTER_MICROS); // ?3
        let entries = self.fetch_all(query, order_entries_from_row)?;
        let mut cells: BTreeMap<(Option<Channel>, String, DateTime<Utc>), ActivityCell> =
            BTreeMap::new();
        for entries in entries {
            let cell = cells
                .entry((entries.channel, entries.store_id.clone(), entries.quarter))
                .or_insert_with(|| empty_cell(entries.channel, entries.store_id, entries.quarter));
            let amount = entries.amount.amount() * Decimal::from(entries.count);
            if entries.refund {
                cell.sales -= amount;
            } else {
                cell.orders += entries.count;
                cell.sales += amount;
            }
        }
        Ok(cells.into_values().collect())
    }

    /// Accepted receipts, where and when their journal entries are: at the receipt's store, on
    /// no channel, at the instant the receipt was issued.
    fn activity_receipts(&self, window: &ActivityWindow) -> StoreResult<Vec<ActivityCell>> {
        let query = self
            .query(
                r"
                select store_id,
                    issued_at - issued_at % ?3 as quarter,
                    count(*) as receipts
                from receipts
                where status = 'accepted'
                    and issued_at >= ?1
                    and issued_at < ?2
                group by 1, 2
                ",
            )?
            .bind(window.from.timestamp_micros()) // ?1
            .bind(window.to.timestamp_micros()) // ?2
            .bind(QUARTER_MICROS); // ?3
        self.fetch_all(query, receipts_cell_from_row)
    }
}

/// Sales or refunds of one amount in one cell.
struct OrderEntries {
    channel: Option<Channel>,
    store_id: String,
    quarter: DateTime<Utc>,
    refund: bool,
    amount: Money,
    count: i64,
}

fn liability_from_row(row: &Row<'_>) -> StoreResult<LiabilityGroup> {
    let c = Cols::new(row, "point_lots", "expires_quarter");
    Ok(LiabilityGroup {
        expires_quarter: c.opt_instant("expires_quarter")?,
        outstanding_points: c.get("outstanding_points")?,
        pending_points: c.get("pending_points")?,
        held_points: c.get("held_points")?,
    })
}

fn coupon_group_from_row(row: &Row<'_>) -> StoreResult<CouponGroup> {
    let c = Cols::new(row, "coupons", "variant_id");
    Ok(CouponGroup {
        variant_id: c.get("variant_id")?,
        source: c.get("source")?,
        state: c.named("state", CouponState::parse)?,
        discount: c.opt_money("discount")?,
        coupons: c.get("coupons")?,
    })
}

fn channel_count_from_row(row: &Row<'_>) -> StoreResult<(Channel, i64)> {
    let c = Cols::new(row, "orders", "channel");
    Ok((c.named("channel", Channel::parse)?, c.get("coupons")?))
}

fn time_to_redemption_from_row(row: &Row<'_>) -> StoreResult<chrono::TimeDelta> {
    let c = Cols::new(row, "coupons", "redeemed_at");
    Ok(c.instant("redeemed_at")? - c.instant("issued_at")?)
}

/// A cell with nothing in it yet, for the reads that fill some of its figures.
fn empty_cell(channel: Option<Channel>, store_id: String, quarter: DateTime<Utc>) -> ActivityCell {
    ActivityCell {
        channel,
        store_id,
        quarter,
        points_earned: 0,
        points_redeemed: 0,
        points_expired: 0,
        orders: 0,
        sales: Decimal::ZERO,
        receipts: 0,
    }
}

/// The journal entry's channel (null: none).
fn channel_of(c: &Cols<'_, '_>) -> StoreResult<Option<Channel>> {
    let name: Option<String> = c.get("channel")?;
    name.map(|name| {
        Channel::parse(&name).ok_or_else(|| c.corrupt("channel", format!("unknown value {name:?}")))
    })
    .transpose()
}

fn points_cell_from_row(row: &Row<'_>) -> StoreResult<ActivityCell> {
    let c = Cols::new(row, "postings", "store_id");
    Ok(ActivityCell {
        points_earned: c.get("points_earned")?,
        points_redeemed: c.get("points_redeemed")?,
        points_expired: c.get("points_expired")?,
        ..empty_cell(channel_of(&c)?, c.get("store_id")?, c.instant("quarter")?)
    })
}

fn order_entries_from_row(row: &Row<'_>) -> StoreResult<OrderEntries> {
    let c = Cols::new(row, "transactions", "store_id");
    Ok(OrderEntries {
        channel: channel_of(&c)?,
        store_id: c.get("store_id")?,
        quarter: c.instant("quarter")?,
        refund: c.get("refund")?,
        amount: c.money("amount")?,
        count: c.get("entries")?,
    })
}

fn receipts_cell_from_row(row: &Row<'_>) -> StoreResult<ActivityCell> {
    let c = Cols::new(row, "receipts", "store_id");
    Ok(ActivityCell {
        receipts: c.get("receipts")?,
        ..empty_cell(None, c.get("store_id")?, c.instant("quarter")?)
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
