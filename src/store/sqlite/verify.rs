//! What the sweeper finds due and what `omo verify` reads.

use chrono::{DateTime, Utc};

use super::{SqliteUnitOfWork, col};
use crate::domain::ports::{AccountTotal, DueWork, LedgerSnapshot, MemberLotTotals, StoreResult};

pub(super) fn due_work(
    uow: &SqliteUnitOfWork,
    now: DateTime<Utc>,
    limit: i64,
) -> StoreResult<DueWork> {
    let now = now.timestamp_micros();
    let limit = limit.max(0);
    let expired_holds = uow.strings(
        r"
            select order_id
            from orders
            where state = 'authorized'
              and hold_expires_at <= ?1
            order by hold_expires_at, order_id
            limit ?2
            ",
        now,
        limit,
    )?;
    // Two arms, so each can use its partial index; `union` makes the ids distinct.
    let members_with_due_lots = uow.strings(
        r"
            select member_id
            from point_lots
            where state = 'pending'
              and matures_at <= ?1
            union
            select member_id
            from point_lots
            where remaining_points > held_points
              and expires_at <= ?1
              and state in ('pending', 'available')
            order by member_id
            limit ?2
            ",
        now,
        limit,
    )?;
    let expired_coupons = uow.strings(
        r"
            select code
            from coupons
            where state = 'active'
              and valid_until <= ?1
            order by valid_until, code
            limit ?2
            ",
        now,
        limit,
    )?;
    Ok(DueWork {
        expired_holds,
        members_with_due_lots,
        expired_coupons,
    })
}

pub(super) fn ledger_snapshot(uow: &SqliteUnitOfWork) -> StoreResult<LedgerSnapshot> {
    let malformed_postings: i64 = uow
        .query(
            r"
            select count(*)
            from postings
            where amount <= 0
               or from_account = to_account
            ",
        )?
        .fetch_one(|row| col(row, 0))?;
    let posting_sums = uow.account_totals(
        r"
            select account, asset, sum(amount)
            from (
                select to_account as account, asset, amount from postings
                union all
                select from_account as account, asset, -amount from postings
            )
            group by account, asset
            order by account, asset
            ",
    )?;
    let stored_balances = uow.account_totals(
        r"
            select account, asset, balance
            from balances
            order by account, asset
            ",
    )?;
    let coupon_positions = uow.account_totals(
        r"
            select account, asset, count(*)
            from (
                select 'member:' || member_id as account, 'CPN:' || campaign_id as asset
                from coupons
                where state = 'active'
                union all
                select 'hold:' || order_id as account, 'CPN:' || campaign_id as asset
                from coupons
                where state = 'reserved'
                union all
                select 'campaign:' || campaign_id || ':revoked' as account,
                       'CPN:' || campaign_id as asset
                from coupons
                where state = 'revoked'
            )
            group by account, asset
            order by account, asset
            ",
    )?;
    let lot_totals = uow.lot_totals()?;
    let (authorized_orders, orders_resolved_twice) = uow.order_checks()?;
    let (receipts_off_their_lot, receipt_points_in_review, review_lot_points) =
        uow.receipt_lot_check()?;
    Ok(LedgerSnapshot {
        malformed_postings,
        posting_sums,
        stored_balances,
        lot_totals,
        authorized_orders,
        orders_resolved_twice,
        coupon_positions,
        coupons_without_rule: uow.coupons_without_rule()?,
        erased_members_with_data: uow.erased_members_with_data()?,
        receipts_off_their_lot,
        receipt_points_in_review,
        review_lot_points,
        imports_off_their_record: uow.imports_off_their_record()?,
    })
}

impl SqliteUnitOfWork {
    pub(super) fn strings(
        &self,
        sql: &'static str,
        now: i64,
        limit: i64,
    ) -> StoreResult<Vec<String>> {
        self.query(sql)?
            .bind(now) // ?1
            .bind(limit) // ?2
            .fetch_all(|row| col(row, 0))
    }

    pub(super) fn account_totals(&self, sql: &'static str) -> StoreResult<Vec<AccountTotal>> {
        self.query(sql)?.fetch_all(|row| {
            Ok(AccountTotal {
                account: col(row, 0)?,
                asset: col(row, 1)?,
                amount: col(row, 2)?,
            })
        })
    }

    pub(super) fn lot_totals(&self) -> StoreResult<Vec<MemberLotTotals>> {
        self.query(
            r"
            select member_id,
                   coalesce(sum(case when state = 'pending' then remaining_points end), 0),
                   coalesce(
                       sum(case when state in ('available', 'expired') then remaining_points end),
                       0
                   ),
                   coalesce(sum(held_points), 0),
                   count(
                       case
                           when original_points < 0
                             or remaining_points < 0
                             or held_points < 0
                             or remaining_points > original_points
                             or held_points > remaining_points
                           then 1
                       end
                   )
            from point_lots
            group by member_id
            order by member_id
            ",
        )?
        .fetch_all(|row| {
            Ok(MemberLotTotals {
                member_id: col(row, 0)?,
                pending_remaining: col(row, 1)?,
                spendable_remaining: col(row, 2)?,
                held: col(row, 3)?,
                malformed_lots: col(row, 4)?,
            })
        })
    }

    /// Authorized orders with their points redeemed, and orders resolved more than once.
    pub(super) fn order_checks(&self) -> StoreResult<(Vec<AuthorizedOrder>, Vec<String>)> {
        let authorized_orders = self
            .query(
                r"
                select order_id, points_redeemed
                from orders
                where state = 'authorized'
                order by order_id
                ",
            )?
            .fetch_all(|row| Ok((col(row, 0)?, col(row, 1)?)))?;
        let resolved_twice = self
            .query(
                r"
                select order_id
                from transactions
                where kind in ('capture', 'void', 'hold_expired')
                  and order_id <> ''
                group by order_id
                having count(*) > 1
                order by order_id
                ",
            )?
            .fetch_all(|row| col(row, 0))?;
        Ok((authorized_orders, resolved_twice))
    }
}

/// An authorized order's id and the points it redeemed (held until capture or void).
type AuthorizedOrder = (String, i64);

impl SqliteUnitOfWork {
    /// Erased members still holding personal data, points or coupons (EraseMember leaves
    /// none). Attributes are not compared: the flush writes `{}` for none on both backends.
    fn erased_members_with_data(&self) -> StoreResult<Vec<String>> {
        let query = self.query(
            r"
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
order by m.member_id
            ",
        )?;
        self.fetch_all(query, |row| col(row, 0))
    }
}
