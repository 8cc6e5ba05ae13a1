//! Members and their identifiers: the reads, and the statements a flush writes them with.

use sqlx::postgres::PgRow;

use super::lots::lot_from_columns;
use super::{Cols, PgQuery, PgUnitOfWork, column, json_column, map_err, string_from_row};
use crate::domain::{
    model::{Identifier, Lot, MemberRow, MemberState},
    ports::StoreResult,
    tier::MemberTier,
};

select_and_lock!(
    GET_MEMBER,
    GET_MEMBER_LOCKED,
    concat!(select_members!(), "\nwhere member_id = $1")
);

// Flush.

pub(super) const INSERT_MEMBERS: &str = r#"
insert into members (member_id, display_name, state, merged_into, lifetime_earned_points,
    lifetime_redeemed_points, created_at, attributes, erased_at, tier_id, tier_since,
    tier_reviewed_at)
select member_id, display_name, state, merged_into, lifetime_earned_points,
    lifetime_redeemed_points, created_at, attributes::jsonb, erased_at, tier_id, tier_since,
    tier_reviewed_at
from unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::bigint[], $6::bigint[],
    $7::timestamptz[], $8::text[], $9::timestamptz[], $10::text[], $11::timestamptz[],
    $12::timestamptz[])
    as c (member_id, display_name, state, merged_into, lifetime_earned_points,
        lifetime_redeemed_points, created_at, attributes, erased_at, tier_id, tier_since,
        tier_reviewed_at)"#;

/// Every column but the key and `created_at`, which never change.
pub(super) const UPDATE_MEMBERS: &str = r#"
update members m
set display_name = c.display_name,
    state = c.state,
    merged_into = c.merged_into,
    lifetime_earned_points = c.lifetime_earned_points,
    lifetime_redeemed_points = c.lifetime_redeemed_points,
    attributes = c.attributes::jsonb,
    erased_at = c.erased_at,
    tier_id = c.tier_id,
    tier_since = c.tier_since,
    tier_reviewed_at = c.tier_reviewed_at
from unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::bigint[], $6::bigint[],
    $7::text[], $8::timestamptz[], $9::text[], $10::timestamptz[], $11::timestamptz[])
    as c (member_id, display_name, state, merged_into, lifetime_earned_points,
        lifetime_redeemed_points, attributes, erased_at, tier_id, tier_since, tier_reviewed_at)
where m.member_id = c.member_id"#;

pub(super) const INSERT_IDENTIFIERS: &str = r#"
insert into identifiers (kind, value, member_id)
select *
from unnest($1::text[], $2::text[], $3::text[])"#;

/// The columns of `INSERT_MEMBERS`.
pub(super) fn bind_new_members<'q>(
    query: PgQuery<'q>,
    members: &'q [MemberRow],
) -> StoreResult<PgQuery<'q>> {
    Ok(query
        .bind(column(members, |m| m.member_id.as_str())) // $1
        .bind(column(members, |m| m.display_name.as_str())) // $2
        .bind(column(members, |m| m.stored_state())) // $3
        .bind(column(members, |m| m.merged_into.as_deref())) // $4
        .bind(column(members, |m| m.lifetime_earned_points)) // $5
        .bind(column(members, |m| m.lifetime_redeemed_points)) // $6
        .bind(column(members, |m| m.created_at)) // $7
        .bind(json_column(members, |m| &m.attributes)?) // $8
        .bind(column(members, |m| m.erased_at)) // $9
        .bind(column(members, |m| m.tier.tier_id.as_str())) // $10
        .bind(column(members, |m| m.tier.since)) // $11
        .bind(column(members, |m| m.tier.reviewed_at))) // $12
}

/// The columns of `UPDATE_MEMBERS`.
pub(super) fn bind_changed_members<'q>(
    query: PgQuery<'q>,
    members: &'q [MemberRow],
) -> StoreResult<PgQuery<'q>> {
    Ok(query
        .bind(column(members, |m| m.member_id.as_str())) // $1
        .bind(column(members, |m| m.display_name.as_str())) // $2
        .bind(column(members, |m| m.stored_state())) // $3
        .bind(column(members, |m| m.merged_into.as_deref())) // $4
        .bind(column(members, |m| m.lifetime_earned_points)) // $5
        .bind(column(members, |m| m.lifetime_redeemed_points)) // $6
        .bind(json_column(members, |m| &m.attributes)?) // $7
        .bind(column(members, |m| m.erased_at)) // $8
        .bind(column(members, |m| m.tier.tier_id.as_str())) // $9
        .bind(column(members, |m| m.tier.since)) // $10
        .bind(column(members, |m| m.tier.reviewed_at))) // $11
}

/// The columns of `INSERT_IDENTIFIERS`: (identifier, member_id).
pub(super) fn bind_identifiers<'q>(
    query: PgQuery<'q>,
    identifiers: &'q [(Identifier, String)],
) -> PgQuery<'q> {
    query
        .bind(column(identifiers, |(i, _)| i.kind.as_str())) // $1
        .bind(column(identifiers, |(i, _)| i.value.as_str())) // $2
        .bind(column(identifiers, |(_, member_id)| member_id.as_str())) // $3
}

pub(super) async fn get_member(
    uow: &mut PgUnitOfWork,
    member_id: &str,
    lock: bool,
) -> StoreResult<Option<MemberRow>> {
    let sql = if lock { GET_MEMBER_LOCKED } else { GET_MEMBER };
    let query = sqlx::query(sql).bind(member_id); // $1
    uow.fetch_optional(query, member_from_row).await
}

pub(super) async fn member_by_identifier(
    uow: &mut PgUnitOfWork,
    identifier: &Identifier,
) -> StoreResult<Option<String>> {
    let query = sqlx::query(
        r#"
select member_id
from identifiers
where kind = $1
    and value = $2"#,
    )
    .bind(&identifier.kind) // $1
    .bind(&identifier.value); // $2
    uow.fetch_optional(query, |row| {
        string_from_row(row, "identifiers", "member_id")
    })
    .await
}

pub(super) async fn identifiers(
    uow: &mut PgUnitOfWork,
    member_id: &str,
) -> StoreResult<Vec<Identifier>> {
    let query = sqlx::query(
        r#"
select kind, value
from identifiers
where member_id = $1
order by kind, value"#,
    )
    .bind(member_id); // $1
    uow.fetch_all(query, identifier_from_row).await
}

pub(super) async fn member_with_lots(
    uow: &mut PgUnitOfWork,
    member_id: &str,
) -> StoreResult<Option<(MemberRow, Vec<Lot>)>> {
    let query = sqlx::query(
        r#"
select m.member_id, m.display_name, m.state, m.merged_into, m.created_at,
    m.lifetime_earned_points, m.lifetime_redeemed_points, m.attributes::text as attributes,
    m.erased_at, m.tier_id, m.tier_since, m.tier_reviewed_at,
    l.lot_id, l.order_id, l.state as lot_state, l.earned_at, l.matures_at, l.expires_at,
    l.original_points, l.remaining_points, l.held_points, l.limited
from members m
left join point_lots l
    on l.member_id = m.member_id
    and l.remaining_points > 0
where m.member_id = $1
order by l.expires_at asc nulls last, l.lot_id"#,
    )
    .bind(member_id); // $1
    let rows = query.fetch_all(&mut *uow.tx).await.map_err(map_err)?;
    let Some(first) = rows.first() else {
        return Ok(None);
    };
    let member = member_from_row(first)?;
    // One row per live lot (its member_id is the member's); a member without one has a
    // single row of NULL lot columns.
    let mut lots = Vec::with_capacity(rows.len());
    for row in &rows {
        let lot_id: Option<i64> = Cols::new(row, "point_lots", "lot_id").get("lot_id")?;
        if lot_id.is_some() {
            lots.push(lot_from_columns(row, "lot_state")?);
        }
    }
    Ok(Some((member, lots)))
}

impl PgUnitOfWork {
    pub(super) async fn move_identifiers(
        &mut self,
        from_member_id: &str,
        to_member_id: &str,
    ) -> StoreResult<()> {
        let sql = r#"
update identifiers
set member_id = $2
where member_id = $1"#;
        self.move_member_rows(sql, from_member_id, to_member_id)
            .await
    }
}

impl PgUnitOfWork {
    pub(super) async fn delete_identifier(&mut self, identifier: &Identifier) -> StoreResult<()> {
        let query = sqlx::query(
            r#"
delete from identifiers
where kind = $1
    and value = $2"#,
        )
        .bind(&identifier.kind) // $1
        .bind(&identifier.value); // $2
        self.run(query).await
    }

    /// EraseMember's deletions of rows the batch never reads: the member's location reports
    /// (a scan: the table has no member index, being the highest-volume write; erasure is
    /// rare), its presence, and its receipts' raw text (as retention empties it).
    pub(super) async fn erase_personal_data(&mut self, member_id: &str) -> StoreResult<()> {
        for sql in [
            "delete from location_reports where member_id = $1",
            "delete from member_presence where member_id = $1",
            "update receipts set raw_text = '' where member_id = $1 and raw_text <> ''",
        ] {
            let query = sqlx::query(sql).bind(member_id); // $1
            self.run(query).await?;
        }
        Ok(())
    }
}

pub(super) fn member_from_row(row: &PgRow) -> StoreResult<MemberRow> {
    let c = Cols::new(row, "members", "member_id");
    let erased_at = c.get("erased_at")?;
    Ok(MemberRow {
        member_id: c.get("member_id")?,
        display_name: c.get("display_name")?,
        state: MemberRow::state_as_read(c.parse("state", MemberState::parse)?, erased_at),
        merged_into: c.get("merged_into")?,
        created_at: c.get("created_at")?,
        lifetime_earned_points: c.get("lifetime_earned_points")?,
        lifetime_redeemed_points: c.get("lifetime_redeemed_points")?,
        attributes: c.json("attributes")?,
        erased_at,
        tier: MemberTier {
            tier_id: c.get("tier_id")?,
            since: c.get("tier_since")?,
            reviewed_at: c.get("tier_reviewed_at")?,
        },
    })
}

fn identifier_from_row(row: &PgRow) -> StoreResult<Identifier> {
    let c = Cols::new(row, "identifiers", "value");
    Ok(Identifier {
        kind: c.get("kind")?,
        value: c.get("value")?,
    })
}
