//! Orders and the points they took from lots (order lots): the reads, and the row writes of a
//! flush.

use rusqlite::Row;

use super::{Cols, Query, SqliteUnitOfWork, col};
use crate::domain::{
    model::{Channel, Order, OrderLot, OrderState},
    ports::StoreResult,
};
use crate::store::{receipt_no_param, to_json};

pub(super) fn order_lots(uow: &SqliteUnitOfWork, order_id: &str) -> StoreResult<Vec<OrderLot>> {
    uow.query(
        r"
        select order_id, lot_id, points, restored_points
        from order_lots
        where order_id = ?1
        order by lot_id
        ",
    )?
    .bind(order_id) // ?1
    .fetch_all(|row| {
        Ok(OrderLot {
            order_id: col(row, 0)?,
            lot_id: col(row, 1)?,
            points: col(row, 2)?,
            restored_points: col(row, 3)?,
        })
    })
}

/// `lock` needs nothing here: `BEGIN IMMEDIATE` already holds the database's write lock.
pub(super) fn get_order(
    uow: &SqliteUnitOfWork,
    order_id: &str,
    _lock: bool,
) -> StoreResult<Option<Order>> {
    let query = uow
        .query(
            r"
            select order_id, member_id, state, channel, store_id, register_id, receipt_no,
                   lines, total, coupon_discount, points_redeemed, amount_due, points_earned,
                   points_pending, coupon_codes, hold_expires_at, refunded_amount,
                   points_reversed, points_restored, occurred_at, created_at, earn_breakdown
            from orders
            where order_id = ?1
            ",
        )?
        .bind(order_id); // ?1
    uow.fetch_optional(query, order_from_row)
}

/// A member's orders, newest first, strictly before `before` (ListOrders pages).
pub(super) fn member_orders(
    uow: &SqliteUnitOfWork,
    member_id: &str,
    before: Option<&(chrono::DateTime<chrono::Utc>, String)>,
    limit: i64,
) -> StoreResult<Vec<Order>> {
    let (before_at, before_id) = before
        .map(|(at, id)| (Some(at.timestamp_micros()), id.as_str()))
        .unwrap_or((None, ""));
    let query = uow
        .query(
            r"
            select order_id, member_id, state, channel, store_id, register_id, receipt_no,
                   lines, total, coupon_discount, points_redeemed, amount_due, points_earned,
                   points_pending, coupon_codes, hold_expires_at, refunded_amount,
                   points_reversed, points_restored, occurred_at, created_at, earn_breakdown
            from orders
            where member_id = ?1
                and (?2 is null or (created_at, order_id) < (?2, ?3))
            order by created_at desc, order_id desc
            limit ?4
            ",
        )?
        .bind(member_id) // ?1
        .bind(before_at) // ?2
        .bind(before_id) // ?3
        .bind(limit); // ?4
    uow.fetch_all(query, order_from_row)
}

/// The register sale that holds the receipt's claim; the key is `register_receipt_key`'s.
pub(super) fn order_by_receipt(
    uow: &SqliteUnitOfWork,
    store_id: &str,
    register_id: &str,
    receipt_no: &str,
) -> StoreResult<Option<String>> {
    uow.query(
        r"
        select order_id
        from receipt_claims
        where store_id = ?1
          and register_id = ?2
          and receipt_no = ?3
          and order_id is not null
        ",
    )?
    .bind(store_id) // ?1
    .bind(register_id) // ?2
    .bind(receipt_no) // ?3
    .fetch_optional(|row| col(row, 0))
}

pub(super) fn member_has_open_orders(uow: &SqliteUnitOfWork, member_id: &str) -> StoreResult<bool> {
    uow.query(
        r"
        select exists (
            select 1
            from orders
            where member_id = ?1
              and state = 'authorized'
        )
        ",
    )?
    .bind(member_id) // ?1
    .fetch_one(|row| col(row, 0))
}

impl SqliteUnitOfWork {
    /// Every column of an order, `order_id` first.
    pub(super) fn order_query<'c>(&'c self, sql: &str, order: &Order) -> StoreResult<Query<'c>> {
        Ok(self
            .query(sql)?
            .bind(&order.order_id) // ?1
            .bind(&order.member_id) // ?2
            .bind(order.state.as_str()) // ?3
            .bind(order.channel.as_str()) // ?4
            .bind(&order.store_id) // ?5
            .bind(&order.register_id) // ?6
            .bind(receipt_no_param(&order.receipt_no)) // ?7
            .bind(to_json(&order.lines)?) // ?8
            .bind(order.total.to_string()) // ?9
            .bind(order.coupon_discount.to_string()) // ?10
            .bind(order.points_redeemed) // ?11
            .bind(order.amount_due.to_string()) // ?12
            .bind(order.points_earned) // ?13
            .bind(order.points_pending) // ?14
            .bind(to_json(&order.coupon_codes)?) // ?15
            .bind(order.hold_expires_at.map(|at| at.timestamp_micros())) // ?16
            .bind(order.refunded_amount.to_string()) // ?17
            .bind(order.points_reversed) // ?18
            .bind(order.points_restored) // ?19
            .bind(order.occurred_at.timestamp_micros()) // ?20
            .bind(order.created_at.timestamp_micros()) // ?21
            .bind(to_json(&order.earn_breakdown)?)) // ?22
    }

    pub(super) fn insert_order_row(&self, order: &Order) -> StoreResult<()> {
        let query = self.order_query(
            r"
            insert into orders (
                order_id, member_id, state, channel, store_id, register_id, receipt_no,
                lines, total, coupon_discount, points_redeemed, amount_due, points_earned,
                points_pending, coupon_codes, hold_expires_at, refunded_amount,
                points_reversed, points_restored, occurred_at, created_at, earn_breakdown
            )
            values (
                ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11,
                ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20, ?21, ?22
            )
            ",
            order,
        )?;
        self.run(query)
    }

    pub(super) fn update_order_row(&self, order: &Order) -> StoreResult<usize> {
        self.order_query(
            r"
            update orders
            set member_id = ?2,
                state = ?3,
                channel = ?4,
                store_id = ?5,
                register_id = ?6,
                receipt_no = ?7,
                lines = ?8,
                total = ?9,
                coupon_discount = ?10,
                points_redeemed = ?11,
                amount_due = ?12,
                points_earned = ?13,
                points_pending = ?14,
                coupon_codes = ?15,
                hold_expires_at = ?16,
                refunded_amount = ?17,
                points_reversed = ?18,
                points_restored = ?19,
                occurred_at = ?20,
                created_at = ?21,
                earn_breakdown = ?22
            where order_id = ?1
            ",
            order,
        )?
        .execute()
    }

    pub(super) fn insert_order_lot_row(&self, order_lot: &OrderLot) -> StoreResult<()> {
        let query = self
            .query(
                r"
                insert into order_lots (order_id, lot_id, points, restored_points)
                values (?1, ?2, ?3, ?4)
                ",
            )?
            .bind(&order_lot.order_id) // ?1
            .bind(order_lot.lot_id) // ?2
            .bind(order_lot.points) // ?3
            .bind(order_lot.restored_points); // ?4
        self.run(query)
    }

    pub(super) fn update_order_lot_row(&self, order_lot: &OrderLot) -> StoreResult<usize> {
        self.query(
            r"
            update order_lots
            set points = ?3,
                restored_points = ?4
            where order_id = ?1
              and lot_id = ?2
            ",
        )?
        .bind(&order_lot.order_id) // ?1
        .bind(order_lot.lot_id) // ?2
        .bind(order_lot.points) // ?3
        .bind(order_lot.restored_points) // ?4
        .execute()
    }
}

fn order_from_row(row: &Row<'_>) -> StoreResult<Order> {
    let c = Cols::new(row, "orders", "order_id");
    let receipt_no: Option<String> = c.get("receipt_no")?;
    Ok(Order {
        order_id: c.get("order_id")?,
        member_id: c.get("member_id")?,
        state: c.named("state", OrderState::parse)?,
        channel: c.named("channel", Channel::parse)?,
        store_id: c.get("store_id")?,
        register_id: c.get("register_id")?,
        receipt_no: receipt_no.unwrap_or_default(),
        lines: c.json("lines")?,
        total: c.money("total")?,
        coupon_discount: c.money("coupon_discount")?,
        points_redeemed: c.get("points_redeemed")?,
        amount_due: c.money("amount_due")?,
        points_earned: c.get("points_earned")?,
        points_pending: c.get("points_pending")?,
        coupon_codes: c.json("coupon_codes")?,
        hold_expires_at: c.opt_instant("hold_expires_at")?,
        refunded_amount: c.money("refunded_amount")?,
        points_reversed: c.get("points_reversed")?,
        points_restored: c.get("points_restored")?,
        occurred_at: c.instant("occurred_at")?,
        created_at: c.instant("created_at")?,
        earn_breakdown: c.json("earn_breakdown")?,
    })
}
