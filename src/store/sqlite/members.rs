//! Members and their identifiers: the reads, and the row writes of a flush.

use rusqlite::Row;

use super::{Cols, Query, SqliteUnitOfWork, col};
use crate::domain::{
    model::{Identifier, MemberRow, MemberState},
    ports::StoreResult,
    tier::MemberTier,
};
use crate::store::to_json;

/// `lock` needs nothing here: `BEGIN IMMEDIATE` already holds the database's write lock.
pub(super) fn get_member(
    uow: &SqliteUnitOfWork,
    member_id: &str,
    _lock: bool,
) -> StoreResult<Option<MemberRow>> {
    let query = uow
        .query(
            r"
            select member_id, display_name, state, merged_into, created_at,
                   lifetime_earned_points, lifetime_redeemed_points, attributes, erased_at,
                   tier_id, tier_since, tier_reviewed_at
            from members
            where member_id = ?1
            ",
        )?
        .bind(member_id); // ?1
    uow.fetch_optional(query, member_from_row)
}

pub(super) fn member_by_identifier(
    uow: &SqliteUnitOfWork,
    identifier: &Identifier,
) -> StoreResult<Option<String>> {
    uow.query(
        r"
        select member_id
        from identifiers
        where kind = ?1
          and value = ?2
        ",
    )?
    .bind(&identifier.kind) // ?1
    .bind(&identifier.value) // ?2
    .fetch_optional(|row| col(row, 0))
}

pub(super) fn identifiers(uow: &SqliteUnitOfWork, member_id: &str) -> StoreResult<Vec<Identifier>> {
    uow.query(
        r"
        select kind, value
        from identifiers
        where member_id = ?1
        order by kind, value
        ",
    )?
    .bind(member_id) // ?1
    .fetch_all(|row| {
        Ok(Identifier {
            kind: col(row, 0)?,
            value: col(row, 1)?,
        })
    })
}

impl SqliteUnitOfWork {
    pub(super) fn move_identifiers(
        &self,
        from_member_id: &str,
        to_member_id: &str,
    ) -> StoreResult<()> {
        let sql = r"
            update identifiers
            set member_id = ?1
            where member_id = ?2
            ";
        self.move_member_rows(sql, from_member_id, to_member_id)
    }

    /// `member_id` (?1) to `tier_reviewed_at` (?11); the insert adds `created_at` (?12).
    pub(super) fn member_query<'c>(
        &'c self,
        sql: &str,
        member: &MemberRow,
    ) -> StoreResult<Query<'c>> {
        Ok(self
            .query(sql)?
            .bind(&member.member_id) // ?1
            .bind(&member.display_name) // ?2
            .bind(member.stored_state()) // ?3
            .bind(member.merged_into.as_deref()) // ?4
            .bind(member.lifetime_earned_points) // ?5
            .bind(member.lifetime_redeemed_points) // ?6
            .bind(to_json(&member.attributes)?) // ?7
            .bind(member.erased_at.map(|at| at.timestamp_micros())) // ?8
            .bind(&member.tier.tier_id) // ?9
            .bind(member.tier.since.map(|at| at.timestamp_micros())) // ?10
            .bind(member.tier.reviewed_at.map(|at| at.timestamp_micros()))) // ?11
    }

    pub(super) fn insert_member_row(&self, member: &MemberRow) -> StoreResult<()> {
        let query = self
            .member_query(
                r"
                insert into members (
                    member_id, display_name, state, merged_into,
                    lifetime_earned_points, lifetime_redeemed_points, attributes, erased_at,
                    tier_id, tier_since, tier_reviewed_at, created_at
                )
                values (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)
                ",
                member,
            )?
            .bind(member.created_at.timestamp_micros()); // ?12
        self.run(query)
    }

    /// Every column but the key and `created_at`, which never change.
    pub(super) fn update_member_row(&self, member: &MemberRow) -> StoreResult<usize> {
        self.member_query(
            r"
            update members
            set display_name = ?2,
                state = ?3,
                merged_into = ?4,
                lifetime_earned_points = ?5,
                lifetime_redeemed_points = ?6,
                attributes = ?7,
                erased_at = ?8,
                tier_id = ?9,
                tier_since = ?10,
                tier_reviewed_at = ?11
            where member_id = ?1
            ",
            member,
        )?
        .execute()
    }

    pub(super) fn delete_identifier(&self, identifier: &Identifier) -> StoreResult<()> {
        let query = self
            .query(
                r"
                delete from identifiers
                where kind = ?1
                  and value = ?2
                ",
            )?
            .bind(&identifier.kind) // ?1
            .bind(&identifier.value); // ?2
        self.run(query)
    }

    /// EraseMember's deletions of rows the batch never reads: the member's location reports
    /// (a scan: the table has no member index, being the highest-volume write; erasure is
    /// rare), its presence, and its receipts' raw text (as retention empties it).
    pub(super) fn erase_personal_data(&self, member_id: &str) -> StoreResult<()> {
        for sql in [
            "delete from location_reports where member_id = ?1",
            "delete from member_presence where member_id = ?1",
            "update receipts set raw_text = '' where member_id = ?1 and raw_text <> ''",
        ] {
            let query = self.query(sql)?.bind(member_id); // ?1
            self.run(query)?;
        }
        Ok(())
    }

    pub(super) fn insert_identifier_row(
        &self,
        member_id: &str,
        identifier: &Identifier,
    ) -> StoreResult<()> {
        let query = self
            .query(
                r"
                insert into identifiers (kind, value, member_id)
                values (?1, ?2, ?3)
                ",
            )?
            .bind(&identifier.kind) // ?1
            .bind(&identifier.value) // ?2
            .bind(member_id); // ?3
        self.run(query)
    }
}

pub(super) fn member_from_row(row: &Row<'_>) -> StoreResult<MemberRow> {
    let c = Cols::new(row, "members", "member_id");
    let erased_at = c.opt_instant("erased_at")?;
    Ok(MemberRow {
        member_id: c.get("member_id")?,
        display_name: c.get("display_name")?,
        state: MemberRow::state_as_read(c.named("state", MemberState::parse)?, erased_at),
        merged_into: c.get("merged_into")?,
        created_at: c.instant("created_at")?,
        lifetime_earned_points: c.get("lifetime_earned_points")?,
        lifetime_redeemed_points: c.get("lifetime_redeemed_points")?,
        attributes: c.json("attributes")?,
        erased_at,
        tier: MemberTier {
            tier_id: c.get("tier_id")?,
            since: c.opt_instant("tier_since")?,
            reviewed_at: c.opt_instant("tier_reviewed_at")?,
        },
    })
}
