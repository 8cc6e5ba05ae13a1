//! What the sweeper finds due and what `omo verify` reads.

use chrono::{DateTime, Utc};
use sqlx::postgres::PgRow;

use super::journal::account_total_from_row;
use super::{Cols, PgUnitOfWork, string_from_row};
use crate::domain::ports::{AccountTotal, DueWork, LedgerSnapshot, MemberLotTotals, StoreResult};

// Background work and verification.
//
// Claims: each due row is returned only if this transaction can take a transaction-level
// advisory lock on it (class 1 holds, 2 members, 3 coupons; key the id's hash), and the
// sweeper keeps the transaction open while it works on them, so a sweeper on another replica
// skips them and takes the next rows instead of queueing behind the same row locks. The lock
// is only a claim: each item still re-checks under its row lock, so a hash collision or an
// expired claim costs a skipped or repeated check, never a double effect. The inner query
// picks a window of the soonest-due candidates (four times the limit, so that a second
// sweeper finds unclaimed rows past the first one's); the outer one has no sort of its own,
// so PostgreSQL pulls the window's rows in order through the lock filter and stops at the
// limit: only the rows returned are claimed.

const EXPIRED_HOLDS: &str = r#"
select order_id
from (
    select order_id
    from orders
    where state = 'authorized'
        and hold_expires_at <= $1
    order by hold_expires_at, order_id
    limit $2 * 4
) as due
where pg_try_advisory_xact_lock(1, hashtext(order_id))
limit $2"#;

/// Each branch matches a partial index (`point_lots_due_maturity`, `point_lots_due_expiry`).
const MEMBERS_WITH_DUE_LOTS: &str = r#"
select member_id
from (
    select distinct member_id
    from point_lots
    where (state = 'pending' and matures_at <= $1)
        or (state in ('pending', 'available')
            and expires_at <= $1
            and remaining_points > held_points)
    order by member_id
    limit $2 * 4
) as due
where pg_try_advisory_xact_lock(2, hashtext(member_id))
limit $2"#;

const EXPIRED_COUPONS: &str = r#"
select code
from (
    select code
    from coupons
    where state = 'active'
        and valid_until <= $1
    order by valid_until, code
    limit $2 * 4
) as due
where pg_try_advisory_xact_lock(3, hashtext(code))
limit $2"#;

const MALFORMED_POSTINGS: &str = r#"
select count(*) as malformed
from postings
where amount <= 0
    or from_account = to_account"#;

const POSTING_SUMS: &str = r#"
select account, asset, sum(amount)::bigint as amount
from (
    select to_account as account, asset, amount
    from postings
    union all
    select from_account as account, asset, -amount as amount
    from postings
) as sides
group by account, asset
order by account, asset"#;

const STORED_BALANCES: &str = r#"
select account, asset, balance as amount
from balances
order by account, asset"#;

const LOT_TOTALS: &str = r#"
select member_id,
    coalesce(sum(remaining_points) filter (where state = 'pending'), 0)::bigint
        as pending_remaining,
    coalesce(sum(remaining_points) filter (where state in ('available', 'expired')), 0)::bigint
        as spendable_remaining,
    sum(held_points)::bigint as held,
    count(*) filter (
        where remaining_points > original_points
            or held_points > remaining_points
            or least(original_points, remaining_points, held_points) < 0
    ) as malformed_lots
from point_lots
group by member_id
order by member_id"#;

const AUTHORIZED_ORDERS: &str = r#"
select order_id, points_redeemed
from orders
where state = 'authorized'
order by order_id"#;

const ORDERS_RESOLVED_TWICE: &str = r#"
select order_id
from transactions
where kind in ('capture', 'void', 'hold_expired')
    and order_id <> ''
group by order_id
having count(*) > 1
order by order_id"#;

/// Erased members still holding personal data, points or coupons (EraseMember leaves none).
/// Attributes are not compared here: jsonb and SQLite's text spell an empty object apart.
const ERASED_MEMBERS_WITH_DATA: &str = r#"
select m.member_id
from members m
where m.erased_at is not null
    and (m.display_name <> ''
        or exists (select 1 from identifiers i where i.member_id = m.member_id)
        or exists (select 1 from member_presence p where p.member_id = m.member_id)
        or exists (select 1 from location_reports l where l.member_id = m.member_id)
        or exists (
            select 1 from receipts r where r.member_id = m.member_id and r.raw_text <> '')
        or exists (
            select 1 from balances b
            where b.account in ('member:' || m.member_id, 'member:' || m.member_id || ':pending')
                and b.asset = 'PTS'
                and b.balance <> 0)
        or exists (
            select 1 from coupons c
            where c.member_id = m.member_id and c.state in ('active', 'reserved')))
order by m.member_id"#;

/// An active coupon is one unit on its member's account, a reserved one on its order's hold,
/// a revoked one on its campaign's revoked account.
const COUPON_POSITIONS: &str = r#"
select case state
        when 'active' then 'member:' || member_id
        when 'revoked' then 'campaign:' || campaign_id || ':revoked'
        else 'hold:' || order_id
    end as account,
    'CPN:' || campaign_id as asset,
    count(*) as amount
from coupons
where state in ('active', 'reserved', 'revoked')
group by 1, 2
order by 1, 2"#;

pub(super) async fn due_work(
    uow: &mut PgUnitOfWork,
    now: DateTime<Utc>,
    limit: i64,
) -> StoreResult<DueWork> {
    Ok(DueWork {
        expired_holds: uow
            .fetch_strings(EXPIRED_HOLDS, "orders", "order_id", now, limit)
            .await?,
        members_with_due_lots: uow
            .fetch_strings(MEMBERS_WITH_DUE_LOTS, "point_lots", "member_id", now, limit)
            .await?,
        expired_coupons: uow
            .fetch_strings(EXPIRED_COUPONS, "coupons", "code", now, limit)
            .await?,
    })
}

pub(super) async fn ledger_snapshot(uow: &mut PgUnitOfWork) -> StoreResult<LedgerSnapshot> {
    // Whole-table reads: scans and hash joins are what they want.
    uow.execute("set local enable_seqscan = on").await?;
    uow.execute("set local enable_hashjoin = on").await?;
    uow.execute("set local enable_mergejoin = on").await?;
    uow.execute("set local statement_timeout = '30min'").await?;
    let (receipts_off_their_lot, receipt_points_in_review, review_lot_points) =
        uow.receipt_lot_check().await?;
    Ok(LedgerSnapshot {
        malformed_postings: uow.malformed_postings().await?,
        posting_sums: uow.fetch_totals(POSTING_SUMS).await?,
        stored_balances: uow.fetch_totals(STORED_BALANCES).await?,
        lot_totals: uow.lot_totals().await?,
        authorized_orders: uow.authorized_orders().await?,
        orders_resolved_twice: uow.orders_resolved_twice().await?,
        coupon_positions: uow.fetch_totals(COUPON_POSITIONS).await?,
        coupons_without_rule: uow.coupons_without_rule().await?,
        receipts_off_their_lot,
        receipt_points_in_review,
        review_lot_points,
        erased_members_with_data: uow
            .fetch_all(sqlx::query(ERASED_MEMBERS_WITH_DATA), |row| {
                super::Cols::new(row, "members", "member_id").get("member_id")
            })
            .await?,
        imports_off_their_record: uow.imports_off_their_record().await?,
    })
}

impl PgUnitOfWork {
    pub(super) async fn fetch_strings(
        &mut self,
        sql: &'static str,
        table: &'static str,
        column: &'static str,
        now: DateTime<Utc>,
        limit: i64,
    ) -> StoreResult<Vec<String>> {
        let query = sqlx::query(sql)
            .bind(now) // $1
            .bind(limit.max(0)); // $2
        self.fetch_all(query, |row| string_from_row(row, table, column))
            .await
    }

    pub(super) async fn fetch_totals(
        &mut self,
        sql: &'static str,
    ) -> StoreResult<Vec<AccountTotal>> {
        self.fetch_all(sqlx::query(sql), account_total_from_row)
            .await
    }

    pub(super) async fn lot_totals(&mut self) -> StoreResult<Vec<MemberLotTotals>> {
        self.fetch_all(sqlx::query(LOT_TOTALS), lot_totals_from_row)
            .await
    }

    pub(super) async fn authorized_orders(&mut self) -> StoreResult<Vec<(String, i64)>> {
        self.fetch_all(sqlx::query(AUTHORIZED_ORDERS), |row| {
            let c = Cols::new(row, "orders", "order_id");
            Ok((c.get("order_id")?, c.get("points_redeemed")?))
        })
        .await
    }

    pub(super) async fn orders_resolved_twice(&mut self) -> StoreResult<Vec<String>> {
        self.fetch_all(sqlx::query(ORDERS_RESOLVED_TWICE), |row| {
            string_from_row(row, "transactions", "order_id")
        })
        .await
    }

    pub(super) async fn malformed_postings(&mut self) -> StoreResult<i64> {
        let query = sqlx::query(MALFORMED_POSTINGS);
        self.fetch_value(query, "postings", "malformed").await
    }
}

fn lot_totals_from_row(row: &PgRow) -> StoreResult<MemberLotTotals> {
    let c = Cols::new(row, "ledger snapshot", "member_id");
    Ok(MemberLotTotals {
        member_id: c.get("member_id")?,
        pending_remaining: c.get("pending_remaining")?,
        spendable_remaining: c.get("spendable_remaining")?,
        held: c.get("held")?,
        malformed_lots: c.get("malformed_lots")?,
    })
}
