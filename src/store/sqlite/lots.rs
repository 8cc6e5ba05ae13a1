//! Point lots: the reads, and the row writes of a flush.

use rusqlite::Row;

use super::{Cols, Query, SqliteUnitOfWork};
use crate::domain::{
    model::{Lot, LotState},
    ports::StoreResult,
};

/// The columns of a lot, for the queries below.
macro_rules! select_lots {
    () => {
        r"
            select lot_id, member_id, order_id, state, earned_at, matures_at, expires_at,
                   original_points, remaining_points, held_points, limited
            from point_lots"
    };
}

pub(super) fn member_lots(uow: &SqliteUnitOfWork, member_id: &str) -> StoreResult<Vec<Lot>> {
    let query = uow
        .query(concat!(
            select_lots!(),
            r"
            where member_id = ?1
              and remaining_points > 0
            order by expires_at is null, expires_at, lot_id
            "
        ))?
        .bind(member_id); // ?1
    uow.fetch_all(query, lot_from_row)
}

pub(super) fn get_lot(uow: &SqliteUnitOfWork, lot_id: i64) -> StoreResult<Option<Lot>> {
    let query = uow
        .query(concat!(
            select_lots!(),
            r"
            where lot_id = ?1
            "
        ))?
        .bind(lot_id); // ?1
    uow.fetch_optional(query, lot_from_row)
}

impl SqliteUnitOfWork {
    /// A lot under the id reserved for it.
    pub(super) fn insert_lot_row(&self, lot: &Lot) -> StoreResult<()> {
        let query = self
            .lot_query(
                r"
                insert into point_lots (
                    member_id, order_id, state, earned_at, matures_at, expires_at,
                    original_points, remaining_points, held_points, limited, lot_id
                )
                values (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)
                ",
                lot,
            )?
            .bind(lot.lot_id); // ?11
        self.run(query)
    }

    pub(super) fn move_lots(&self, from_member_id: &str, to_member_id: &str) -> StoreResult<()> {
        let sql = r"
            update point_lots
            set member_id = ?1
            where member_id = ?2
            ";
        self.move_member_rows(sql, from_member_id, to_member_id)
    }

    /// Every column but `lot_id`, which the insert and the update bind as ?11.
    pub(super) fn lot_query<'c>(&'c self, sql: &str, lot: &Lot) -> StoreResult<Query<'c>> {
        Ok(self
            .query(sql)?
            .bind(&lot.member_id) // ?1
            .bind(&lot.order_id) // ?2
            .bind(lot.state.as_str()) // ?3
            .bind(lot.earned_at.timestamp_micros()) // ?4
            .bind(lot.matures_at.map(|at| at.timestamp_micros())) // ?5
            .bind(lot.expires_at.map(|at| at.timestamp_micros())) // ?6
            .bind(lot.original_points) // ?7
            .bind(lot.remaining_points) // ?8
            .bind(lot.held_points) // ?9
            .bind(lot.limited)) // ?10
    }

    /// Every column but `lot_id`, which is the key.
    pub(super) fn update_lot_row(&self, lot: &Lot) -> StoreResult<usize> {
        self.lot_query(
            r"
            update point_lots
            set member_id = ?1,
                order_id = ?2,
                state = ?3,
                earned_at = ?4,
                matures_at = ?5,
                expires_at = ?6,
                original_points = ?7,
                remaining_points = ?8,
                held_points = ?9,
                limited = ?10
            where lot_id = ?11
            ",
            lot,
        )?
        .bind(lot.lot_id) // ?11
        .execute()
    }
}

pub(super) fn lot_from_row(row: &Row<'_>) -> StoreResult<Lot> {
    let c = Cols::new(row, "point_lots", "lot_id");
    Ok(Lot {
        lot_id: c.get("lot_id")?,
        member_id: c.get("member_id")?,
        order_id: c.get("order_id")?,
        state: c.named("state", LotState::parse)?,
        earned_at: c.instant("earned_at")?,
        matures_at: c.opt_instant("matures_at")?,
        expires_at: c.opt_instant("expires_at")?,
        original_points: c.get("original_points")?,
        remaining_points: c.get("remaining_points")?,
        held_points: c.get("held_points")?,
        limited: c.get("limited")?,
    })
}

/// Live lots with free points that expire, or (pending) mature, in [from, to]: through the
/// partial indexes `point_lots_due_expiry` and `point_lots_due_maturity`.
pub(super) fn lots_due_between(
    uow: &SqliteUnitOfWork,
    from: i64,
    to: i64,
) -> StoreResult<Vec<Lot>> {
    let query = uow
        .query(concat!(
            select_lots!(),
            r"
            where remaining_points > held_points
              and state <> 'expired'
              and expires_at >= ?1 and expires_at <= ?2
            union
            ",
            select_lots!(),
            r"
            where state = 'pending'
              and remaining_points > held_points
              and matures_at >= ?1 and matures_at <= ?2
            "
        ))?
        .bind(from) // ?1
        .bind(to); // ?2
    uow.fetch_all(query, lot_from_row)
}
