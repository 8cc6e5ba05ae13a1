//! Bulk import and export on PostgreSQL (`domain::import`, `omo import`, `omo export`): the
//! import records, and the keyset pages an export streams. An import chunk's rows are written
//! by the batch flush (one multi-row `unnest` statement per table, in the chunk's transaction),
//! and these are set-based too: one statement per chunk or page, never one per row.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};

use super::{PgUnitOfWork, column, lots::lot_from_row, members::member_from_row, string_from_row};
use crate::domain::{
    import::ImportRecord,
    model::{Identifier, Lot, Member},
    ports::StoreResult,
};

impl PgUnitOfWork {
    /// `LedgerSnapshot::imports_off_their_record`, described.
    pub(super) async fn imports_off_their_record(&mut self) -> StoreResult<Vec<String>> {
        let query = sqlx::query(
            r#"
select 'member ' || member_id || ' has ' || count(*) || ' import entries' as problem
from transactions
where kind = 'import'
group by member_id
having count(*) > 1
union all
select 'import entry ' || t.transaction_id || ' has no import record of its member'
from transactions t
where t.kind = 'import'
    and not exists (
        select 1
        from member_imports i
        where i.member_id = t.member_id
            and i.external_id = t.metadata->>'external_id')"#,
        );
        self.fetch_all(query, |row| string_from_row(row, "transactions", "problem"))
            .await
    }

    pub(super) async fn imported_members_of(
        &mut self,
        external_ids: &[String],
    ) -> StoreResult<Vec<(String, String)>> {
        let query = sqlx::query(
            r#"
select i.external_id, i.member_id
from member_imports i
where i.external_id = any($1::text[])"#,
        )
        .bind(external_ids); // $1
        self.fetch_all(query, |row| {
            Ok((
                string_from_row(row, "member_imports", "external_id")?,
                string_from_row(row, "member_imports", "member_id")?,
            ))
        })
        .await
    }

    pub(super) async fn insert_import_records(
        &mut self,
        records: &[ImportRecord],
    ) -> StoreResult<()> {
        if records.is_empty() {
            return Ok(());
        }
        let query = sqlx::query(
            r#"
insert into member_imports (external_id, member_id, tier_id, imported_at)
select *
from unnest($1::text[], $2::text[], $3::text[], $4::timestamptz[])"#,
        )
        .bind(column(records, |r| r.external_id.as_str())) // $1
        .bind(column(records, |r| r.member_id.as_str())) // $2
        .bind(column(records, |r| r.tier_id.as_str())) // $3
        .bind(column(records, |r| r.imported_at)); // $4
        self.run(query).await
    }

    /// A page of members by id, then the identifiers of exactly that id range (one range scan
    /// of `identifiers_by_member`), so a page costs two statements whatever its size.
    pub(super) async fn export_members_page(
        &mut self,
        after_member_id: &str,
        since: Option<DateTime<Utc>>,
        limit: i64,
    ) -> StoreResult<Vec<Member>> {
        let query = sqlx::query(concat!(
            select_members!(),
            r#"
where member_id > $1
    and ($2::timestamptz is null or created_at >= $2)
order by member_id
limit $3"#
        ))
        .bind(after_member_id) // $1
        .bind(since) // $2
        .bind(limit.max(0)); // $3
        let rows = self.fetch_all(query, member_from_row).await?;
        let Some(last) = rows.last().map(|m| m.member_id.clone()) else {
            return Ok(Vec::new());
        };
        let query = sqlx::query(
            r#"
select member_id, kind, value
from identifiers
where member_id > $1
    and member_id <= $2
order by member_id, kind, value"#,
        )
        .bind(after_member_id) // $1
        .bind(&last); // $2
        let pairs: Vec<(String, Identifier)> = self
            .fetch_all(query, |row| {
                Ok((
                    string_from_row(row, "identifiers", "member_id")?,
                    Identifier {
                        kind: string_from_row(row, "identifiers", "kind")?,
                        value: string_from_row(row, "identifiers", "value")?,
                    },
                ))
            })
            .await?;
        let mut identifiers: BTreeMap<String, Vec<Identifier>> = BTreeMap::new();
        for (member_id, identifier) in pairs {
            identifiers.entry(member_id).or_default().push(identifier);
        }
        Ok(rows
            .into_iter()
            .map(|row| Member {
                identifiers: identifiers.remove(&row.member_id).unwrap_or_default(),
                member_id: row.member_id,
                display_name: row.display_name,
                state: row.state,
                merged_into: row.merged_into,
                created_at: row.created_at,
                attributes: row.attributes,
                // An export lists the members, not their standing.
                tier: None,
            })
            .collect())
    }

    pub(super) async fn export_lots_page(
        &mut self,
        after_lot_id: i64,
        limit: i64,
    ) -> StoreResult<Vec<Lot>> {
        let query = sqlx::query(concat!(
            lot_columns!(),
            r#"
from point_lots
where lot_id > $1
order by lot_id
limit $2"#
        ))
        .bind(after_lot_id) // $1
        .bind(limit.max(0)); // $2
        self.fetch_all(query, lot_from_row).await
    }
}
