//! Point lots: the reads, and the statements a flush writes them with.

use sqlx::postgres::PgRow;

use super::{Cols, PgQuery, PgUnitOfWork, column};
use crate::domain::{
    model::{Lot, LotState},
    ports::StoreResult,
};

macro_rules! select_lots {
    () => {
        concat!(lot_columns!(), "\nfrom point_lots")
    };
}

/// A member's lots that still hold points, soonest expiry first (never-expiring last).
macro_rules! live_lots_of_member {
    () => {
        r#"
where member_id = $1
    and remaining_points > 0
order by expires_at asc nulls last, lot_id"#
    };
}

const GET_LOT: &str = concat!(select_lots!(), "\nwhere lot_id = $1");

/// Soonest expiry first, never-expiring last, oldest lot first on ties: the spending order.
const MEMBER_LOTS: &str = concat!(select_lots!(), live_lots_of_member!());

pub(super) const INSERT_LOTS: &str = r#"
insert into point_lots (lot_id, member_id, order_id, state, earned_at, matures_at, expires_at,
    original_points, remaining_points, held_points, limited)
overriding system value
select *
from unnest($1::bigint[], $2::text[], $3::text[], $4::text[], $5::timestamptz[],
    $6::timestamptz[], $7::timestamptz[], $8::bigint[], $9::bigint[], $10::bigint[],
    $11::boolean[])"#;

pub(super) const UPDATE_LOTS: &str = r#"
update point_lots l
set member_id = c.member_id,
    order_id = c.order_id,
    state = c.state,
    earned_at = c.earned_at,
    matures_at = c.matures_at,
    expires_at = c.expires_at,
    original_points = c.original_points,
    remaining_points = c.remaining_points,
    held_points = c.held_points,
    limited = c.limited
from unnest($1::bigint[], $2::text[], $3::text[], $4::text[], $5::timestamptz[],
    $6::timestamptz[], $7::timestamptz[], $8::bigint[], $9::bigint[], $10::bigint[],
    $11::boolean[])
    as c (lot_id, member_id, order_id, state, earned_at, matures_at, expires_at,
        original_points, remaining_points, held_points, limited)
where l.lot_id = c.lot_id"#;

/// Live lots with free points that expire, or (pending) mature, in [$1, $2]: through the
/// partial indexes `point_lots_due_expiry` and `point_lots_due_maturity`.
const LOTS_DUE_BETWEEN: &str = concat!(
    select_lots!(),
    r#"
where remaining_points > held_points
    and state <> 'expired'
    and expires_at between $1 and $2
union
"#,
    select_lots!(),
    r#"
where state = 'pending'
    and remaining_points > held_points
    and matures_at between $1 and $2"#
);

pub(super) async fn lots_due_between(
    uow: &mut PgUnitOfWork,
    from: chrono::DateTime<chrono::Utc>,
    to: chrono::DateTime<chrono::Utc>,
) -> StoreResult<Vec<Lot>> {
    let query = sqlx::query(LOTS_DUE_BETWEEN)
        .bind(from) // $1
        .bind(to); // $2
    uow.fetch_all(query, lot_from_row).await
}

pub(super) async fn member_lots(uow: &mut PgUnitOfWork, member_id: &str) -> StoreResult<Vec<Lot>> {
    let query = sqlx::query(MEMBER_LOTS).bind(member_id); // $1
    uow.fetch_all(query, lot_from_row).await
}

pub(super) async fn get_lot(uow: &mut PgUnitOfWork, lot_id: i64) -> StoreResult<Option<Lot>> {
    let query = sqlx::query(GET_LOT).bind(lot_id); // $1
    uow.fetch_optional(query, lot_from_row).await
}

impl PgUnitOfWork {
    pub(super) async fn move_lots(
        &mut self,
        from_member_id: &str,
        to_member_id: &str,
    ) -> StoreResult<()> {
        let sql = r#"
update point_lots
set member_id = $2
where member_id = $1"#;
        self.move_member_rows(sql, from_member_id, to_member_id)
            .await
    }
}

pub(super) fn lot_from_row(row: &PgRow) -> StoreResult<Lot> {
    lot_from_columns(row, "state")
}

/// A lot from a row that names the lot's state `state_column` (a join with another table that
/// has a `state` names it apart).
pub(super) fn lot_from_columns(row: &PgRow, state_column: &str) -> StoreResult<Lot> {
    let c = Cols::new(row, "point_lots", "lot_id");
    Ok(Lot {
        lot_id: c.get("lot_id")?,
        member_id: c.get("member_id")?,
        order_id: c.get("order_id")?,
        state: c.parse(state_column, LotState::parse)?,
        earned_at: c.get("earned_at")?,
        matures_at: c.get("matures_at")?,
        expires_at: c.get("expires_at")?,
        original_points: c.get("original_points")?,
        remaining_points: c.get("remaining_points")?,
        held_points: c.get("held_points")?,
        limited: c.get("limited")?,
    })
}

/// The columns of `INSERT_LOTS` and `UPDATE_LOTS`.
pub(super) fn bind_lots<'q>(query: PgQuery<'q>, lots: &'q [Lot]) -> PgQuery<'q> {
    query
        .bind(column(lots, |l| l.lot_id)) // $1
        .bind(column(lots, |l| l.member_id.as_str())) // $2
        .bind(column(lots, |l| l.order_id.as_str())) // $3
        .bind(column(lots, |l| l.state.as_str())) // $4
        .bind(column(lots, |l| l.earned_at)) // $5
        .bind(column(lots, |l| l.matures_at)) // $6
        .bind(column(lots, |l| l.expires_at)) // $7
        .bind(column(lots, |l| l.original_points)) // $8
        .bind(column(lots, |l| l.remaining_points)) // $9
        .bind(column(lots, |l| l.held_points)) // $10
        .bind(column(lots, |l| l.limited)) // $11
}
