//! Bulk import and export on SQLite (`domain::import`, `omo import`, `omo export`): the import
//! records, and the keyset pages an export streams. An import chunk's rows are written by the
//! batch flush (one cached statement per table, in the chunk's transaction).

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};

use super::{SqliteUnitOfWork, col, lots::lot_from_row, members::member_from_row};
use crate::domain::{
    import::ImportRecord,
    model::{Identifier, Lot, Member},
    ports::StoreResult,
};

impl SqliteUnitOfWork {
    /// `LedgerSnapshot::imports_off_their_record`, described.
    pub(super) fn imports_off_their_record(&self) -> StoreResult<Vec<String>> {
        let query = self.query(
            r"
            select 'member ' || member_id || ' has ' || count(*) || ' import entries'
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
                    and i.external_id = json_extract(t.metadata, '$.external_id'))
            ",
        )?;
        self.fetch_all(query, |row| col(row, 0))
    }

    /// One lookup per external_id (microseconds each in-process).
    pub(super) fn imported_members_of(
        &self,
        external_ids: &[String],
    ) -> StoreResult<Vec<(String, String)>> {
        let mut found = Vec::new();
        for external_id in external_ids {
            let member_id: Option<String> = self
                .query(
                    r"
                    select member_id
                    from member_imports
                    where external_id = ?1
                    ",
                )?
                .bind(external_id) // ?1
                .fetch_optional(|row| col(row, 0))?;
            if let Some(member_id) = member_id {
                found.push((external_id.clone(), member_id));
            }
        }
        Ok(found)
    }

    pub(super) fn insert_import_records(&self, records: &[ImportRecord]) -> StoreResult<()> {
        for record in records {
            let query = self
                .query(
                    r"
                    insert into member_imports (external_id, member_id, tier_id, imported_at)
                    values (?1, ?2, ?3, ?4)
                    ",
                )?
                .bind(&record.external_id) // ?1
                .bind(&record.member_id) // ?2
                .bind(&record.tier_id) // ?3
                .bind(record.imported_at.timestamp_micros()); // ?4
            self.run(query)?;
        }
        Ok(())
    }

    /// A page of members by id, then the identifiers of exactly that id range (one range scan
    /// of `identifiers_by_member`), so a page costs two statements whatever its size.
    pub(super) fn export_members_page(
        &self,
        after_member_id: &str,
        since: Option<DateTime<Utc>>,
        limit: i64,
    ) -> StoreResult<Vec<Member>> {
        let query = self
            .query(
                r"
                select member_id, display_name, state, merged_into, created_at,
                       lifetime_earned_points, lifetime_redeemed_points, attributes, erased_at,
                       tier_id, tier_since, tier_reviewed_at
                from members
                where member_id > ?1
                  and created_at >= ?2
                order by member_id
                limit ?3
                ",
            )?
            .bind(after_member_id) // ?1
            .bind(since.map_or(i64::MIN, |at| at.timestamp_micros())) // ?2
            .bind(limit.max(0)); // ?3
        let rows = self.fetch_all(query, member_from_row)?;
        let Some(last) = rows.last().map(|m| m.member_id.clone()) else {
            return Ok(Vec::new());
        };
        let query = self
            .query(
                r"
                select member_id, kind, value
                from identifiers
                where member_id > ?1
                  and member_id <= ?2
                order by member_id, kind, value
                ",
            )?
            .bind(after_member_id) // ?1
            .bind(&last); // ?2
        let pairs: Vec<(String, Identifier)> = query.fetch_all(|row| {
            Ok((
                col(row, 0)?,
                Identifier {
                    kind: col(row, 1)?,
                    value: col(row, 2)?,
                },
            ))
        })?;
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

    pub(super) fn export_lots_page(&self, after_lot_id: i64, limit: i64) -> StoreResult<Vec<Lot>> {
        let query = self
            .query(
                r"
                select lot_id, member_id, order_id, state, earned_at, matures_at, expires_at,
                       original_points, remaining_points, held_points, limited
                from point_lots
                where lot_id > ?1
                order by lot_id
                limit ?2
                ",
            )?
            .bind(after_lot_id) // ?1
            .bind(limit.max(0)); // ?2
        self.fetch_all(query, lot_from_row)
    }
}
