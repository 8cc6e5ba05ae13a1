//! Orders and the points they took from lots (order lots): the reads, and the statements a
//! flush writes them with.

use rust_decimal::Decimal;
use sqlx::postgres::PgRow;

use super::{Cols, PgQuery, PgUnitOfWork, column, json_column, string_from_row};
use crate::domain::{
    model::{Channel, Order, OrderLot, OrderState},
    ports::StoreResult,
};
use crate::store::receipt_no_param;

select_and_lock!(
    GET_ORDER,
    GET_ORDER_LOCKED,
    concat!(select_orders!(), "\nwhere order_id = $1")
);

pub(super) const INSERT_ORDERS: &str = r#"
insert into orders (order_id, member_id, state, channel, store_id, register_id, receipt_no,
    lines, total, coupon_discount, points_redeemed, amount_due, points_earned, points_pending,
    coupon_codes, hold_expires_at, refunded_amount, points_reversed, points_restored,
    occurred_at, created_at, earn_breakdown)
select order_id, member_id, state, channel, store_id, register_id, receipt_no,
    lines::jsonb, total, coupon_discount, points_redeemed, amount_due, points_earned,
    points_pending, coupon_codes::jsonb, hold_expires_at, refunded_amount, points_reversed,
    points_restored, occurred_at, created_at, earn_breakdown::jsonb
from unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[],
    $7::text[], $8::text[], $9::numeric[], $10::numeric[], $11::bigint[], $12::numeric[],
    $13::bigint[], $14::bigint[], $15::text[], $16::timestamptz[], $17::numeric[],
    $18::bigint[], $19::bigint[], $20::timestamptz[], $21::timestamptz[], $22::text[])
    as c (order_id, member_id, state, channel, store_id, register_id, receipt_no,
        lines, total, coupon_discount, points_redeemed, amount_due, points_earned,
        points_pending, coupon_codes, hold_expires_at, refunded_amount, points_reversed,
        points_restored, occurred_at, created_at, earn_breakdown)"#;

pub(super) const UPDATE_ORDERS: &str = r#"
update orders o
set member_id = c.member_id,
    state = c.state,
    channel = c.channel,
    store_id = c.store_id,
    register_id = c.register_id,
    receipt_no = c.receipt_no,
    lines = c.lines::jsonb,
    total = c.total,
    coupon_discount = c.coupon_discount,
    points_redeemed = c.points_redeemed,
    amount_due = c.amount_due,
    points_earned = c.points_earned,
    points_pending = c.points_pending,
    coupon_codes = c.coupon_codes::jsonb,
    hold_expires_at = c.hold_expires_at,
    refunded_amount = c.refunded_amount,
    points_reversed = c.points_reversed,
    points_restored = c.points_restored,
    occurred_at = c.occurred_at,
    created_at = c.created_at,
    earn_breakdown = c.earn_breakdown::jsonb
from unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[],
    $7::text[], $8::text[], $9::numeric[], $10::numeric[], $11::bigint[], $12::numeric[],
    $13::bigint[], $14::bigint[], $15::text[], $16::timestamptz[], $17::numeric[],
    $18::bigint[], $19::bigint[], $20::timestamptz[], $21::timestamptz[], $22::text[])
    as c (order_id, member_id, state, channel, store_id, register_id, receipt_no,
        lines, total, coupon_discount, points_redeemed, amount_due, points_earned,
        points_pending, coupon_codes, hold_expires_at, refunded_amount, points_reversed,
        points_restored, occurred_at, created_at, earn_breakdown)
where o.order_id = c.order_id"#;

pub(super) const INSERT_ORDER_LOTS: &str = r#"
insert into order_lots (order_id, lot_id, points, restored_points)
select *
from unnest($1::text[], $2::bigint[], $3::bigint[], $4::bigint[])"#;

pub(super) const UPDATE_ORDER_LOTS: &str = r#"
update order_lots l
set points = c.points,
    restored_points = c.restored_points
from unnest($1::text[], $2::bigint[], $3::bigint[], $4::bigint[])
    as c (order_id, lot_id, points, restored_points)
where l.order_id = c.order_id
    and l.lot_id = c.lot_id"#;

pub(super) async fn order_lots(
    uow: &mut PgUnitOfWork,
    order_id: &str,
) -> StoreResult<Vec<OrderLot>> {
    let query = sqlx::query(
        r#"
select order_id, lot_id, points, restored_points
from order_lots
where order_id = $1
order by lot_id"#,
    )
    .bind(order_id); // $1
    uow.fetch_all(query, order_lot_from_row).await
}

pub(super) async fn get_order(
    uow: &mut PgUnitOfWork,
    order_id: &str,
    lock: bool,
) -> StoreResult<Option<Order>> {
    let sql = if lock { GET_ORDER_LOCKED } else { GET_ORDER };
    let query = sqlx::query(sql).bind(order_id); // $1
    uow.fetch_optional(query, order_from_row).await
}

/// A member's orders, newest first, strictly before `before` (ListOrders pages).
const MEMBER_ORDERS: &str = concat!(
    select_orders!(),
    r#"
where member_id = $1
    and ($2::timestamptz is null or (created_at, order_id) < ($2, $3))
order by created_at desc, order_id desc
limit $4"#
);

pub(super) async fn member_orders(
    uow: &mut PgUnitOfWork,
    member_id: &str,
    before: Option<&(chrono::DateTime<chrono::Utc>, String)>,
    limit: i64,
) -> StoreResult<Vec<Order>> {
    let (before_at, before_id) = match before {
        Some((at, id)) => (Some(*at), id.as_str()),
        None => (None, ""),
    };
    let query = sqlx::query(MEMBER_ORDERS)
        .bind(member_id) // $1
        .bind(before_at) // $2
        .bind(before_id) // $3
        .bind(limit); // $4
    uow.fetch_all(query, order_from_row).await
}

/// The register sale that holds the receipt's claim; the key is `register_receipt_key`'s.
pub(super) async fn order_by_receipt(
    uow: &mut PgUnitOfWork,
    store_id: &str,
    register_id: &str,
    receipt_no: &str,
) -> StoreResult<Option<String>> {
    let query = sqlx::query(
        r#"
select order_id
from receipt_claims
where store_id = $1
    and register_id = $2
    and receipt_no = $3
    and order_id is not null"#,
    )
    .bind(store_id) // $1
    .bind(register_id) // $2
    .bind(receipt_no); // $3
    uow.fetch_optional(query, |row| string_from_row(row, "orders", "order_id"))
        .await
}

pub(super) async fn member_has_open_orders(
    uow: &mut PgUnitOfWork,
    member_id: &str,
) -> StoreResult<bool> {
    let query = sqlx::query(
        r#"
select exists (
    select 1
    from orders
    where member_id = $1
        and state = 'authorized'
) as open"#,
    )
    .bind(member_id); // $1
    uow.fetch_value(query, "orders", "open").await
}

pub(super) fn order_lot_from_row(row: &PgRow) -> StoreResult<OrderLot> {
    let c = Cols::new(row, "order_lots", "order_id");
    Ok(OrderLot {
        order_id: c.get("order_id")?,
        lot_id: c.get("lot_id")?,
        points: c.get("points")?,
        restored_points: c.get("restored_points")?,
    })
}

pub(super) fn order_from_row(row: &PgRow) -> StoreResult<Order> {
    let c = Cols::new(row, "orders", "order_id");
    let receipt_no: Option<String> = c.get("receipt_no")?;
    Ok(Order {
        order_id: c.get("order_id")?,
        member_id: c.get("member_id")?,
        state: c.parse("state", OrderState::parse)?,
        channel: c.parse("channel", Channel::parse)?,
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
        hold_expires_at: c.get("hold_expires_at")?,
        refunded_amount: c.money("refunded_amount")?,
        points_reversed: c.get("points_reversed")?,
        points_restored: c.get("points_restored")?,
        occurred_at: c.get("occurred_at")?,
        created_at: c.get("created_at")?,
        earn_breakdown: c.json("earn_breakdown")?,
    })
}

/// The columns of `INSERT_ORDERS` and `UPDATE_ORDERS`.
pub(super) fn bind_orders<'q>(query: PgQuery<'q>, orders: &'q [Order]) -> StoreResult<PgQuery<'q>> {
    let money = |field: fn(&Order) -> Decimal| column(orders, field);
    Ok(query
        .bind(column(orders, |o| o.order_id.as_str())) // $1
        .bind(column(orders, |o| o.member_id.as_str())) // $2
        .bind(column(orders, |o| o.state.as_str())) // $3
        .bind(column(orders, |o| o.channel.as_str())) // $4
        .bind(column(orders, |o| o.store_id.as_str())) // $5
        .bind(column(orders, |o| o.register_id.as_str())) // $6
        .bind(column(orders, |o| receipt_no_param(&o.receipt_no))) // $7
        .bind(json_column(orders, |o| &o.lines)?) // $8
        .bind(money(|o| o.total.amount())) // $9
        .bind(money(|o| o.coupon_discount.amount())) // $10
        .bind(column(orders, |o| o.points_redeemed)) // $11
        .bind(money(|o| o.amount_due.amount())) // $12
        .bind(column(orders, |o| o.points_earned)) // $13
        .bind(column(orders, |o| o.points_pending)) // $14
        .bind(json_column(orders, |o| &o.coupon_codes)?) // $15
        .bind(column(orders, |o| o.hold_expires_at)) // $16
        .bind(money(|o| o.refunded_amount.amount())) // $17
        .bind(column(orders, |o| o.points_reversed)) // $18
        .bind(column(orders, |o| o.points_restored)) // $19
        .bind(column(orders, |o| o.occurred_at)) // $20
        .bind(column(orders, |o| o.created_at)) // $21
        .bind(json_column(orders, |o| &o.earn_breakdown)?)) // $22
}

/// The columns of `INSERT_ORDER_LOTS` and `UPDATE_ORDER_LOTS`.
pub(super) fn bind_order_lots<'q>(query: PgQuery<'q>, order_lots: &'q [OrderLot]) -> PgQuery<'q> {
    query
        .bind(column(order_lots, |l| l.order_id.as_str())) // $1
        .bind(column(order_lots, |l| l.lot_id)) // $2
        .bind(column(order_lots, |l| l.points)) // $3
        .bind(column(order_lots, |l| l.restored_points)) // $4
}
