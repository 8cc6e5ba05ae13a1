//! Member tiers (domain::tier): the monthly spend rows, read and added to by a flush.

use chrono::{DateTime, NaiveDate, Utc};
use sqlx::postgres::PgRow;

use super::{Cols, PgUnitOfWork, column, string_from_row};
use crate::domain::{
    ports::{MonthSpend, StoreResult, TierAudit},
    tier::MemberTier,
};

fn spend_from_row(row: &PgRow) -> StoreResult<MonthSpend> {
    let c = Cols::new(row, "member_spend", "member_id");
    Ok(MonthSpend {
        member_id: c.get("member_id")?,
        month: c.get("month")?,
        spend_e4: c.get("spend_e4")?,
    })
}

impl PgUnitOfWork {
    pub(super) async fn member_spend(
        &mut self,
        member_id: &str,
        from_month: NaiveDate,
    ) -> StoreResult<Vec<MonthSpend>> {
        let query = sqlx::query(
            r#"
select member_id, month, spend_e4
from member_spend
where member_id = $1
    and month >= $2
order by month"#,
        )
        .bind(member_id) // $1
        .bind(from_month); // $2
        self.fetch_all(query, spend_from_row).await
    }

    /// Adds a batch's spend to the stored months, in key order (the lock order of the rows).
    pub(super) async fn add_member_spend(&mut self, deltas: &[MonthSpend]) -> StoreResult<()> {
        if deltas.is_empty() {
            return Ok(());
        }
        let mut deltas = deltas.to_vec();
        deltas.sort_by(|a, b| (&a.member_id, a.month).cmp(&(&b.member_id, b.month)));
        let query = sqlx::query(
            r#"
insert into member_spend (member_id, month, spend_e4)
select *
from unnest($1::text[], $2::date[], $3::bigint[])
on conflict (member_id, month) do update
set spend_e4 = member_spend.spend_e4 + excluded.spend_e4"#,
        )
        .bind(column(&deltas, |d| d.member_id.as_str())) // $1
        .bind(column(&deltas, |d| d.month)) // $2
        .bind(column(&deltas, |d| d.spend_e4)); // $3
        self.run(query).await
    }

    /// A merge moves the source's spend to the target (MergeMembers): the target's tier counts
    /// what both spent.
    pub(super) async fn move_member_spend(
        &mut self,
        from_member_id: &str,
        to_member_id: &str,
    ) -> StoreResult<()> {
        let query = sqlx::query(
            r#"
insert into member_spend (member_id, month, spend_e4)
select $2, month, spend_e4
from member_spend
where member_id = $1
order by month
on conflict (member_id, month) do update
set spend_e4 = member_spend.spend_e4 + excluded.spend_e4"#,
        )
        .bind(from_member_id) // $1
        .bind(to_member_id); // $2
        self.run(query).await?;
        let query =
            sqlx::query("delete from member_spend where member_id = $1").bind(from_member_id); // $1
        self.run(query).await
    }

    pub(super) async fn members_due_tier_review(
        &mut self,
        reviewed_before: DateTime<Utc>,
        after_member_id: &str,
        limit: i64,
    ) -> StoreResult<Vec<String>> {
        let query = sqlx::query(
            r#"
select member_id
from members
where tier_id <> ''
    and tier_reviewed_at < $1
    and member_id > $2
order by member_id
limit $3"#,
        )
        .bind(reviewed_before) // $1
        .bind(after_member_id) // $2
        .bind(limit); // $3
        self.fetch_all(query, |row| string_from_row(row, "members", "member_id"))
            .await
    }

    /// Every spend row, captured order, merge and tier (`omo verify`).
    pub(super) async fn tier_audit(&mut self) -> StoreResult<TierAudit> {
        let query = sqlx::query(
            "select member_id, month, spend_e4 from member_spend order by member_id, month",
        );
        let spend = self.fetch_all(query, spend_from_row).await?;
        let query = sqlx::query(
            r#"
select member_id, occurred_at, total, amount_due, refunded_amount
from orders
where state in ('captured', 'partially_refunded', 'refunded')"#,
        );
        let orders = self
            .fetch_all(query, |row| {
                let c = Cols::new(row, "orders", "member_id");
                Ok((
                    c.get("member_id")?,
                    c.get("occurred_at")?,
                    c.money("total")?,
                    c.money("amount_due")?,
                    c.money("refunded_amount")?,
                ))
            })
            .await?;
        let query = sqlx::query(
            "select member_id, issued_at, total from receipts where status = 'accepted'",
        );
        let receipts = self
            .fetch_all(query, |row| {
                let c = Cols::new(row, "receipts", "member_id");
                Ok((c.get("member_id")?, c.get("issued_at")?, c.money("total")?))
            })
            .await?;
        let query =
            sqlx::query("select member_id, merged_into from members where merged_into is not null");
        let merged = self
            .fetch_all(query, |row| {
                let c = Cols::new(row, "members", "member_id");
                Ok((c.get("member_id")?, c.get("merged_into")?))
            })
            .await?;
        let query = sqlx::query(
            r#"
select member_id, tier_id, tier_since, tier_reviewed_at
from members
where tier_id <> ''"#,
        );
        let tiers = self
            .fetch_all(query, |row| {
                let c = Cols::new(row, "members", "member_id");
                Ok((
                    c.get("member_id")?,
                    MemberTier {
                        tier_id: c.get("tier_id")?,
                        since: c.get("tier_since")?,
                        reviewed_at: c.get("tier_reviewed_at")?,
                    },
                ))
            })
            .await?;
        Ok(TierAudit {
            spend,
            orders,
            receipts,
            merged,
            tiers,
        })
    }
}
