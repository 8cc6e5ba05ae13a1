//! Rules and their counters (domain::rules): the reads, the rule locks, the rules' writes, and
//! the counters' parts of the flush statement (`batch.rs`).

use chrono::NaiveDate;
use sqlx::postgres::PgRow;

use super::{Cols, PgQuery, PgUnitOfWork, column, json_column};
use crate::domain::{
    ports::{RuleChanges, RuleCounter, RuleStoreDay, RuleTotals, StoreResult},
    rules::Rule,
};

fn rule_from_row(row: &PgRow) -> StoreResult<Rule> {
    Cols::new(row, "rules", "rule_id").json("body")
}

fn counter_from_row(row: &PgRow) -> StoreResult<RuleCounter> {
    let c = Cols::new(row, "rule_counters", "rule_id");
    Ok(RuleCounter {
        rule_id: c.get("rule_id")?,
        member_id: c.get("member_id")?,
        fired: c.get("fired")?,
        points: c.get("points")?,
        coupons: c.get("coupons")?,
        last_fired_at: c.get("last_fired_at")?,
    })
}

fn totals_from_row(row: &PgRow) -> StoreResult<RuleTotals> {
    let c = Cols::new(row, "rule_counters", "rule_id");
    Ok(RuleTotals {
        rule_id: c.get("rule_id")?,
        fired: c.get("fired")?,
        members: c.get("members")?,
        points: c.get("points")?,
        coupons: c.get("coupons")?,
    })
}

/// New rules: a plain insert, so that two replicas creating one rule id at once cannot both
/// succeed (the second's unique violation is a conflict; run again, it finds RULE_EXISTS and
/// funds no second budget).
const INSERT_RULES: &str = r#"
insert into rules (rule_id, trigger, enabled, body, created_at, updated_at)
select rule_id, trigger, enabled, body::jsonb, created_at, updated_at
from unnest($1::text[], $2::text[], $3::boolean[], $4::text[], $5::timestamptz[],
    $6::timestamptz[])
    as c (rule_id, trigger, enabled, body, created_at, updated_at)"#;

const UPDATE_RULES: &str = r#"
update rules r
set enabled = c.enabled,
    body = c.body::jsonb,
    updated_at = c.updated_at
from unnest($1::text[], $2::text[], $3::boolean[], $4::text[], $5::timestamptz[],
    $6::timestamptz[])
    as c (rule_id, trigger, enabled, body, created_at, updated_at)
where r.rule_id = c.rule_id"#;

pub(super) const UPSERT_COUNTERS: &str = r#"
insert into rule_counters (rule_id, member_id, fired, points, coupons, last_fired_at)
select *
from unnest($1::text[], $2::text[], $3::bigint[], $4::bigint[], $5::bigint[],
    $6::timestamptz[])
on conflict (rule_id, member_id) do update
set fired = rule_counters.fired + excluded.fired,
    points = rule_counters.points + excluded.points,
    coupons = rule_counters.coupons + excluded.coupons,
    last_fired_at = greatest(rule_counters.last_fired_at, excluded.last_fired_at)"#;

pub(super) const UPSERT_STORE_DAYS: &str = r#"
insert into rule_store_days (rule_id, store_id, local_date, fired)
select *
from unnest($1::text[], $2::text[], $3::date[], $4::bigint[])
on conflict (rule_id, store_id, local_date) do update
set fired = rule_store_days.fired + excluded.fired"#;

impl PgUnitOfWork {
    pub(super) async fn list_rules(&mut self) -> StoreResult<Vec<Rule>> {
        let query = sqlx::query(
            r#"
select rule_id, body::text as body
from rules
order by rule_id"#,
        );
        self.fetch_all(query, rule_from_row).await
    }

    pub(super) async fn get_rule(&mut self, rule_id: &str) -> StoreResult<Option<Rule>> {
        let query = sqlx::query(
            r#"
select rule_id, body::text as body
from rules
where rule_id = $1"#,
        )
        .bind(rule_id); // $1
        self.fetch_optional(query, rule_from_row).await
    }

    /// Row locks in rule_id order: two batches that want the same rules never wait in a cycle.
    pub(super) async fn lock_rules(&mut self, rule_ids: &[String]) -> StoreResult<Vec<Rule>> {
        if rule_ids.is_empty() {
            return Ok(Vec::new());
        }
        let query = sqlx::query(
            r#"
select rule_id, body::text as body
from rules
where rule_id = any($1)
order by rule_id
for update"#,
        )
        .bind(rule_ids); // $1
        self.fetch_all(query, rule_from_row).await
    }

    pub(super) async fn rule_counter(
        &mut self,
        rule_id: &str,
        member_id: &str,
    ) -> StoreResult<Option<RuleCounter>> {
        let query = sqlx::query(
            r#"
select rule_id, member_id, fired, points, coupons, last_fired_at
from rule_counters
where rule_id = $1
    and member_id = $2"#,
        )
        .bind(rule_id) // $1
        .bind(member_id); // $2
        self.fetch_optional(query, counter_from_row).await
    }

    pub(super) async fn rule_store_day(
        &mut self,
        rule_id: &str,
        store_id: &str,
        local_date: NaiveDate,
    ) -> StoreResult<i64> {
        let query = sqlx::query(
            r#"
select coalesce(sum(fired), 0)::bigint as fired
from rule_store_days
where rule_id = $1
    and store_id = $2
    and local_date = $3"#,
        )
        .bind(rule_id) // $1
        .bind(store_id) // $2
        .bind(local_date); // $3
        let fired = self
            .fetch_optional(query, |row| {
                Cols::new(row, "rule_store_days", "rule_id").get("fired")
            })
            .await?;
        Ok(fired.unwrap_or(0))
    }

    pub(super) async fn has_captured_order(&mut self, member_id: &str) -> StoreResult<bool> {
        let query = sqlx::query(
            r#"
select exists (
    select 1
    from orders
    where member_id = $1
        and state in ('captured', 'partially_refunded', 'refunded')
) as found"#,
        )
        .bind(member_id); // $1
        let found = self
            .fetch_optional(query, |row| {
                Cols::new(row, "orders", "member_id").get("found")
            })
            .await?;
        Ok(found.unwrap_or(false))
    }

    pub(super) async fn rule_totals(
        &mut self,
        rule_id: Option<&str>,
    ) -> StoreResult<Vec<RuleTotals>> {
        let query = sqlx::query(
            r#"
select c.rule_id, sum(c.fired)::bigint as fired, count(*) as members,
    sum(c.points)::bigint as points, sum(c.coupons)::bigint as coupons
from rule_counters c
join members m on m.member_id = c.member_id
-- A merged member's counters were carried to the member it was merged into.
where m.state <> 'merged'
    and ($1::text is null or c.rule_id = $1)
group by c.rule_id
order by c.rule_id"#,
        )
        .bind(rule_id); // $1
        self.fetch_all(query, totals_from_row).await
    }

    /// Writes the rules a batch created or changed (rare: admin writes, one statement).
    pub(super) async fn write_rules(&mut self, changes: &RuleChanges) -> StoreResult<()> {
        for (sql, rules) in [
            (INSERT_RULES, &changes.new_rules),
            (UPDATE_RULES, &changes.changed_rules),
        ] {
            if rules.is_empty() {
                continue;
            }
            let query = sqlx::query(sql)
                .bind(column(rules, |r| r.rule_id.as_str())) // $1
                .bind(column(rules, |r| r.trigger.as_str())) // $2
                .bind(column(rules, |r| r.enabled)) // $3
                .bind(json_column(rules, |r| r)?) // $4
                .bind(column(rules, |r| r.created_at)) // $5
                .bind(column(rules, |r| r.updated_at)); // $6
            self.run(query).await?;
        }
        Ok(())
    }
}

/// The columns of `UPSERT_COUNTERS`: what a batch adds to each counter.
pub(super) fn bind_counters<'q>(query: PgQuery<'q>, counters: &'q [RuleCounter]) -> PgQuery<'q> {
    query
        .bind(column(counters, |c| c.rule_id.as_str())) // $1
        .bind(column(counters, |c| c.member_id.as_str())) // $2
        .bind(column(counters, |c| c.fired)) // $3
        .bind(column(counters, |c| c.points)) // $4
        .bind(column(counters, |c| c.coupons)) // $5
        .bind(column(counters, |c| c.last_fired_at)) // $6
}

/// The columns of `UPSERT_STORE_DAYS`: what a batch adds to each store's day.
pub(super) fn bind_store_days<'q>(query: PgQuery<'q>, days: &'q [RuleStoreDay]) -> PgQuery<'q> {
    query
        .bind(column(days, |d| d.rule_id.as_str())) // $1
        .bind(column(days, |d| d.store_id.as_str())) // $2
        .bind(column(days, |d| d.local_date)) // $3
        .bind(column(days, |d| d.fired)) // $4
}
