//! Rules and their counters (domain::rules): the reads, and the row writes of a flush.
//! `lock_rules` needs nothing here: `BEGIN IMMEDIATE` already holds the database's write lock.

use chrono::NaiveDate;
use rusqlite::Row;

use super::{Cols, SqliteUnitOfWork, col, engagement::date_text};
use crate::domain::{
    ports::{RuleChanges, RuleCounter, RuleTotals, StoreResult},
    rules::Rule,
};
use crate::store::to_json;

fn rule_from_row(row: &Row<'_>) -> StoreResult<Rule> {
    Cols::new(row, "rules", "rule_id").json("body")
}

fn counter_from_row(row: &Row<'_>) -> StoreResult<RuleCounter> {
    let c = Cols::new(row, "rule_counters", "rule_id");
    Ok(RuleCounter {
        rule_id: c.get("rule_id")?,
        member_id: c.get("member_id")?,
        fired: c.get("fired")?,
        points: c.get("points")?,
        coupons: c.get("coupons")?,
        last_fired_at: c.instant("last_fired_at")?,
    })
}

fn totals_from_row(row: &Row<'_>) -> StoreResult<RuleTotals> {
    let c = Cols::new(row, "rule_counters", "rule_id");
    Ok(RuleTotals {
        rule_id: c.get("rule_id")?,
        fired: c.get("fired")?,
        members: c.get("members")?,
        points: c.get("points")?,
        coupons: c.get("coupons")?,
    })
}

impl SqliteUnitOfWork {
    pub(super) fn list_rules(&self) -> StoreResult<Vec<Rule>> {
        let query = self.query(
            r"
            select rule_id, body
            from rules
            order by rule_id
            ",
        )?;
        query.fetch_all(rule_from_row)
    }

    pub(super) fn get_rule(&self, rule_id: &str) -> StoreResult<Option<Rule>> {
        let query = self
            .query(
                r"
                select rule_id, body
                from rules
                where rule_id = ?1
                ",
            )?
            .bind(rule_id); // ?1
        query.fetch_optional(rule_from_row)
    }

    pub(super) fn rule_counter(
        &self,
        rule_id: &str,
        member_id: &str,
    ) -> StoreResult<Option<RuleCounter>> {
        let query = self
            .query(
                r"
                select rule_id, member_id, fired, points, coupons, last_fired_at
                from rule_counters
                where rule_id = ?1
                  and member_id = ?2
                ",
            )?
            .bind(rule_id) // ?1
            .bind(member_id); // ?2
        query.fetch_optional(counter_from_row)
    }

    pub(super) fn rule_store_day(
        &self,
        rule_id: &str,
        store_id: &str,
        local_date: NaiveDate,
    ) -> StoreResult<i64> {
        let query = self
            .query(
                r"
                select coalesce(sum(fired), 0)
                from rule_store_days
                where rule_id = ?1
                  and store_id = ?2
                  and local_date = ?3
                ",
            )?
            .bind(rule_id) // ?1
            .bind(store_id) // ?2
            .bind(date_text(local_date)); // ?3
        query.fetch_one(|row| col(row, 0))
    }

    pub(super) fn has_captured_order(&self, member_id: &str) -> StoreResult<bool> {
        let query = self
            .query(
                r"
                select exists (
                    select 1
                    from orders
                    where member_id = ?1
                      and state in ('captured', 'partially_refunded', 'refunded')
                )
                ",
            )?
            .bind(member_id); // ?1
        query.fetch_one(|row| col(row, 0))
    }

    pub(super) fn rule_totals(&self, rule_id: Option<&str>) -> StoreResult<Vec<RuleTotals>> {
        let query = self
            .query(
                r"
                select c.rule_id, sum(c.fired) as fired, count(*) as members,
                       sum(c.points) as points, sum(c.coupons) as coupons
                from rule_counters c
                join members m on m.member_id = c.member_id
                -- A merged member's counters were carried to the member it was merged into.
                where m.state <> 'merged' and (?1 is null or c.rule_id = ?1)
                group by c.rule_id
                order by c.rule_id
                ",
            )?
            .bind(rule_id); // ?1
        query.fetch_all(totals_from_row)
    }

    /// Writes the rules a batch created or changed, and adds what it counted to the counters.
    pub(super) fn write_rules(&self, changes: &RuleChanges) -> StoreResult<()> {
        // A new rule is a plain insert: a taken id fails it rather than being replaced.
        let statements = [
            (
                r"
                insert into rules (enabled, body, updated_at, rule_id, trigger, created_at)
                values (?1, ?2, ?3, ?4, ?5, ?6)
                ",
                &changes.new_rules,
            ),
            (
                r"
                update rules
                set enabled = ?1,
                    body = ?2,
                    updated_at = ?3
                where rule_id = ?4
                  and trigger = ?5
                  and created_at = ?6
                ",
                &changes.changed_rules,
            ),
        ];
        for (sql, rules) in statements {
            for rule in rules {
                let query = self
                    .query(sql)?
                    .bind(rule.enabled) // ?1
                    .bind(to_json(rule)?) // ?2
                    .bind(rule.updated_at.timestamp_micros()) // ?3
                    .bind(&rule.rule_id) // ?4
                    .bind(rule.trigger.as_str()) // ?5
                    .bind(rule.created_at.timestamp_micros()); // ?6
                self.run(query)?;
            }
        }
        for counter in &changes.counters {
            let query = self
                .query(
                    r"
                    insert into rule_counters (rule_id, member_id, fired, points, coupons,
                        last_fired_at)
                    values (?1, ?2, ?3, ?4, ?5, ?6)
                    on conflict (rule_id, member_id) do update
                    set fired = fired + excluded.fired,
                        points = points + excluded.points,
                        coupons = coupons + excluded.coupons,
                        last_fired_at = max(last_fired_at, excluded.last_fired_at)
                    ",
                )?
                .bind(&counter.rule_id) // ?1
                .bind(&counter.member_id) // ?2
                .bind(counter.fired) // ?3
                .bind(counter.points) // ?4
                .bind(counter.coupons) // ?5
                .bind(counter.last_fired_at.timestamp_micros()); // ?6
            self.run(query)?;
        }
        for day in &changes.store_days {
            let query = self
                .query(
                    r"
                    insert into rule_store_days (rule_id, store_id, local_date, fired)
                    values (?1, ?2, ?3, ?4)
                    on conflict (rule_id, store_id, local_date) do update
                    set fired = fired + excluded.fired
                    ",
                )?
                .bind(&day.rule_id) // ?1
                .bind(&day.store_id) // ?2
                .bind(date_text(day.local_date)) // ?3
                .bind(day.fired); // ?4
            self.run(query)?;
        }
        Ok(())
    }
}
