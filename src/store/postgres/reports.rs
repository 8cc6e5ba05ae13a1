//! The reports' reads (ReportService): sums over the ledger's own rows (point lots, coupons,
//! the journal, receipts, visits), grouped as `domain::ports` describes. Instants are grouped
//! by quarter hour (UTC) so that the engine can place them in any zone's months and days.

use rust_decimal::Decimal;
use sqlx::postgres::PgRow;

use super::{Cols, PgUnitOfWork};
use crate::domain::{
    coupon::CouponState,
    model::Channel,
    ports::{
        ActivityCell, ActivityCells, ActivityWindow, CampaignCoupons, CouponGroup, LiabilityGroup,
        StoreResult, VisitCount,
    },
};

/// Live lots by the quarter hour they expire in. A lot that expired at or before `as_of` but
/// that the sweeper has not expired yet owes only its held points, as a member's balance shows
/// it (`domain::lots::balance_at`).
const LIABILITY: &str = r#"
select date_bin('15 minutes', expires_at, timestamptz '2000-01-01 00:00:00+00') as expires_quarter,
    sum(case
        when expires_at is null or expires_at > $1 then remaining_points
        else held_points
    end)::bigint as outstanding_points,
    sum(case
        when state = 'pending'
            and (matures_at is null or matures_at > $1)
            and (expires_at is null or expires_at > $1)
        then remaining_points - held_points
        else 0
    end)::bigint as pending_points,
    sum(held_points)::bigint as held_points
from point_lots
where remaining_points > 0
    and state <> 'expired'
group by 1"#;

/// A campaign's coupons by variant, source key, state and discount. Every coupon issued on the
/// capture of an order counts under "order" (`domain::report::source_key`): grouping by the
/// whole source would return a row per order.
const COUPON_GROUPS: &str = r#"
select variant_id,
    case when source like 'order:%' then 'order' else source end as source,
    state,
    discount,
    count(*) as coupons
from coupons
where campaign_id = $1
group by 1, 2, 3, 4"#;

const REDEEMED_BY_CHANNEL: &str = r#"
select o.channel, count(*) as coupons
from coupons c
join orders o on o.order_id = c.order_id
where c.campaign_id = $1
    and c.state = 'redeemed'
group by 1"#;

const TIMES_TO_REDEMPTION: &str = r#"
select issued_at, redeemed_at
from coupons
where campaign_id = $1
    and state = 'redeemed'"#;

/// Points moved to and from the program's accounts, by the channel, store and quarter hour of
/// their journal entry. Adjustments (`program:adjustments`) are not earnings.
const ACTIVITY_POINTS: &str = r#"
select t.channel,
    t.store_id,
    date_bin('15 minutes', t.occurred_at, timestamptz '2000-01-01 00:00:00+00') as quarter,
    coalesce(sum(case
        when p.from_account = 'program:issued' then p.amount
        when p.to_account = 'program:issued' then -p.amount
    end), 0)::bigint as points_earned,
    coalesce(sum(case
        when p.to_account like 'program:redeemed:%' then p.amount
        when p.from_account like 'program:redeemed:%' then -p.amount
    end), 0)::bigint as points_redeemed,
    coalesce(sum(case
        when p.to_account = 'program:expired' then p.amount
        when p.from_account = 'program:expired' then -p.amount
    end), 0)::bigint as points_expired
from transactions t
join postings p on p.transaction_id = t.transaction_id
where t.occurred_at >= $1
    and t.occurred_at < $2
    and p.asset = 'PTS'
group by 1, 2, 3"#;

/// Orders sold or captured and their totals, less the amounts refunded (a refund's journal
/// entry keeps its amount in its metadata).
const ACTIVITY_ORDERS: &str = r#"
select t.channel,
    t.store_id,
    date_bin('15 minutes', t.occurred_at, timestamptz '2000-01-01 00:00:00+00') as quarter,
    count(*) filter (where t.kind <> 'refund') as orders,
    sum(case
        when t.kind = 'refund' then -(t.metadata ->> 'amount')::numeric
        else o.total
    end) as sales
from transactions t
left join orders o on o.order_id = t.order_id and t.kind <> 'refund'
where t.kind in ('sale', 'capture', 'refund')
    and t.occurred_at >= $1
    and t.occurred_at < $2
group by 1, 2, 3"#;

/// Accepted receipts, where and when their journal entries are: at the receipt's store, on no
/// channel, at the instant the receipt was issued.
const ACTIVITY_RECEIPTS: &str = r#"
select store_id,
    date_bin('15 minutes', issued_at, timestamptz '2000-01-01 00:00:00+00') as quarter,
    count(*) as receipts
from receipts
where status = 'accepted'
    and issued_at >= $1
    and issued_at < $2
group by 1, 2"#;

const ACTIVITY_VISITS: &str = r#"
select store_id, visit_date, count(*) as visits
from visits
where visit_date between $1 and $2
group by 1, 2"#;

impl PgUnitOfWork {
    pub(super) async fn liability(
        &mut self,
        as_of: chrono::DateTime<chrono::Utc>,
    ) -> StoreResult<Vec<LiabilityGroup>> {
        let query = sqlx::query(LIABILITY).bind(as_of); // $1
        self.fetch_all(query, liability_from_row).await
    }

    pub(super) async fn campaign_coupons(
        &mut self,
        campaign_id: &str,
    ) -> StoreResult<CampaignCoupons> {
        let query = sqlx::query(COUPON_GROUPS).bind(campaign_id); // $1
        let groups = self.fetch_all(query, coupon_group_from_row).await?;
        let query = sqlx::query(REDEEMED_BY_CHANNEL).bind(campaign_id); // $1
        let redeemed_by_channel = self.fetch_all(query, channel_count_from_row).await?;
        let query = sqlx::query(TIMES_TO_REDEMPTION).bind(campaign_id); // $1
        let times_to_redemption = self.fetch_all(query, time_to_redemption_from_row).await?;
        Ok(CampaignCoupons {
            groups,
            redeemed_by_channel,
            times_to_redemption,
        })
    }

    pub(super) async fn activity(&mut self, window: &ActivityWindow) -> StoreResult<ActivityCells> {
        let mut cells = Vec::new();
        for (sql, decode) in [
            (ACTIVITY_POINTS, points_cell_from_row as fn(&PgRow) -> _),
            (ACTIVITY_ORDERS, orders_cell_from_row),
            (ACTIVITY_RECEIPTS, receipts_cell_from_row),
        ] {
            let query = sqlx::query(sql)
                .bind(window.from) // $1
                .bind(window.to); // $2
            cells.extend(self.fetch_all(query, decode).await?);
        }
        let query = sqlx::query(ACTIVITY_VISITS)
            .bind(window.first_day) // $1
            .bind(window.last_day); // $2
        let visits = self.fetch_all(query, visit_count_from_row).await?;
        Ok(ActivityCells { cells, visits })
    }
}

fn liability_from_row(row: &PgRow) -> StoreResult<LiabilityGroup> {
    let c = Cols::new(row, "point_lots", "expires_quarter");
    Ok(LiabilityGroup {
        expires_quarter: c.get("expires_quarter")?,
        outstanding_points: c.get("outstanding_points")?,
        pending_points: c.get("pending_points")?,
        held_points: c.get("held_points")?,
    })
}

fn coupon_group_from_row(row: &PgRow) -> StoreResult<CouponGroup> {
    let c = Cols::new(row, "coupons", "variant_id");
    Ok(CouponGroup {
        variant_id: c.get("variant_id")?,
        source: c.get("source")?,
        state: c.parse("state", CouponState::parse)?,
        discount: c.opt_money("discount")?,
        coupons: c.get("coupons")?,
    })
}

fn channel_count_from_row(row: &PgRow) -> StoreResult<(Channel, i64)> {
    let c = Cols::new(row, "orders", "channel");
    Ok((c.parse("channel", Channel::parse)?, c.get("coupons")?))
}

fn time_to_redemption_from_row(row: &PgRow) -> StoreResult<chrono::TimeDelta> {
    let c = Cols::new(row, "coupons", "redeemed_at");
    let issued_at: chrono::DateTime<chrono::Utc> = c.get("issued_at")?;
    let redeemed_at: chrono::DateTime<chrono::Utc> = c.get("redeemed_at")?;
    Ok(redeemed_at - issued_at)
}

/// A cell with nothing in it yet, for the reads that fill some of its figures.
fn empty_cell(
    channel: Option<Channel>,
    store_id: String,
    quarter: chrono::DateTime<chrono::Utc>,
) -> ActivityCell {
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

fn journal_cell(row: &PgRow) -> StoreResult<ActivityCell> {
    let c = Cols::new(row, "transactions", "quarter");
    Ok(empty_cell(
        c.channel_opt("channel")?,
        c.get("store_id")?,
        c.get("quarter")?,
    ))
}

fn points_cell_from_row(row: &PgRow) -> StoreResult<ActivityCell> {
    let c = Cols::new(row, "postings", "quarter");
    Ok(ActivityCell {
        points_earned: c.get("points_earned")?,
        points_redeemed: c.get("points_redeemed")?,
        points_expired: c.get("points_expired")?,
        ..journal_cell(row)?
    })
}

fn orders_cell_from_row(row: &PgRow) -> StoreResult<ActivityCell> {
    let c = Cols::new(row, "orders", "quarter");
    Ok(ActivityCell {
        orders: c.get("orders")?,
        sales: c.get("sales")?,
        ..journal_cell(row)?
    })
}

fn receipts_cell_from_row(row: &PgRow) -> StoreResult<ActivityCell> {
    let c = Cols::new(row, "receipts", "quarter");
    Ok(ActivityCell {
        receipts: c.get("receipts")?,
        ..empty_cell(None, c.get("store_id")?, c.get("quarter")?)
    })
}

fn visit_count_from_row(row: &PgRow) -> StoreResult<VisitCount> {
    let c = Cols::new(row, "visits", "visit_date");
    Ok(VisitCount {
        store_id: c.get("store_id")?,
        visit_date: c.get("visit_date")?,
        visits: c.get("visits")?,
    })
}
