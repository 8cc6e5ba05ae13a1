//! Member tiers (domain::tier): the monthly spend rows, read and added to by a flush.

use chrono::{DateTime, NaiveDate, Utc};
use rusqlite::Row;

use super::{Cols, SqliteUnitOfWork, col, engagement::date_text};
use crate::domain::{
    ports::{MonthSpend, StoreResult, TierAudit},
    tier::MemberTier,
};

fn spend_from_row(row: &Row<'_>) -> StoreResult<MonthSpend> {
    let c = Cols::new(row, "member_spend", "member_id");
    Ok(MonthSpend {
        member_id: c.get("member_id")?,
        month: c.date("month")?,
        spend_e4: c.get("spend_e4")?,
    })
}

impl SqliteUnitOfWork {
    pub(super) fn member_spend(
        &self,
        member_id: &str,
        from_month: NaiveDate,
    ) -> StoreResult<Vec<MonthSpend>> {
        let query = self
            .query(
                r"
                select member_id, month, spend_e4
                from member_spend
                where member_id = ?1
                  and month >= ?2
                order by month
                ",
            )?
            .bind(member_id) // ?1
            .bind(date_text(from_month)); // ?2
        self.fetch_all(query, spend_from_row)
    }

    /// Adds a batch's spend to the stored months.
    pub(super) fn add_member_spend(&self, deltas: &[MonthSpend]) -> StoreResult<()> {
        for delta in deltas {
            let query = self
                .query(
                    r"
                    insert into member_spend (member_id, month, spend_e4)
                    values (?1, ?2, ?3)
                    on conflict (member_id, month) do update
                    set spend_e4 = spend_e4 + excluded.spend_e4
                    ",
                )?
                .bind(&delta.member_id) // ?1
                .bind(date_text(delta.month)) // ?2
                .bind(delta.spend_e4); // ?3
            self.run(query)?;
        }
        Ok(())
    }

    /// A merge moves the source's spend to the target (MergeMembers): the target's tier counts
    /// what both spent.
    pub(super) fn move_member_spend(
        &self,
        from_member_id: &str,
        to_member_id: &str,
    ) -> StoreResult<()> {
        let query = self
            .query(
                r"
                insert into member_spend (member_id, month, spend_e4)
                select ?2, month, spend_e4
                from member_spend
                where member_id = ?1
                order by month
                on conflict (member_id, month) do update
                set spend_e4 = spend_e4 + excluded.spend_e4
                ",
            )?
            .bind(from_member_id) // ?1
            .bind(to_member_id); // ?2
        self.run(query)?;
        let query = self
            .query("delete from member_spend where member_id = ?1")?
            .bind(from_member_id); // ?1
        self.run(query)
    }

    pub(super) fn members_due_tier_review(
        &self,
        reviewed_before: DateTime<Utc>,
        after_member_id: &str,
        limit: i64,
    ) -> StoreResult<Vec<String>> {
        let query = self
            .query(
                r"
                select member_id
                from members
                where tier_id <> ''
                  and tier_reviewed_at < ?1
                  and member_id > ?2
                order by member_id
                limit ?3
                ",
            )?
            .bind(reviewed_before.timestamp_micros()) // ?1
            .bind(after_member_id) // ?2
            .bind(limit); // ?3
        self.fetch_all(query, |row| col(row, 0))
    }

    /// Every spend row, captured order, merge and tier (`omo verify`).
    pub(super) fn tier_audit(&self) -> StoreResult<TierAudit> {
        let spend = self
            .query("select member_id, month, spend_e4 from member_spend order by member_id, month")?
            .fetch_all(spend_from_row)?;
        let orders = self
            .query(
                r"
                select member_id, occurred_at, total, amount_due, refunded_amount
                from orders
                where state in ('captured', 'partially_refunded', 'refunded')
                ",
            )?
            .fetch_all(|row| {
                let c = Cols::new(row, "orders", "member_id");
                Ok((
                    c.get("member_id")?,
                    c.instant("occurred_at")?,
                    c.money("total")?,
                    c.money("amount_due")?,
                    c.money("refunded_amount")?,
                ))
            })?;
        let receipts = self
            .query("select member_id, issued_at, total from receipts where status = 'accepted'")?
            .fetch_all(|row| {
                let c = Cols::new(row, "receipts", "member_id");
                Ok((
                    c.get("member_id")?,
                    c.instant("issued_at")?,
                    c.money("total")?,
                ))
            })?;
        let merged = self
            .query("select member_id, merged_into from members where merged_into is not null")?
            .fetch_all(|row| Ok((col(row, 0)?, col(row, 1)?)))?;
        let tiers = self
            .query(
                r"
                select member_id, tier_id, tier_since, tier_reviewed_at
                from members
                where tier_id <> ''
                ",
            )?
            .fetch_all(|row| {
                let c = Cols::new(row, "members", "member_id");
                Ok((
                    c.get("member_id")?,
                    MemberTier {
                        tier_id: c.get("tier_id")?,
                        since: c.opt_instant("tier_since")?,
                        reviewed_at: c.opt_instant("tier_reviewed_at")?,
                    },
                ))
            })?;
        Ok(TierAudit {
            spend,
            orders,
            receipts,
            merged,
            tiers,
        })
    }
}
