//! Engagement: geo and visit rules, location reports, presence, visits and the rules' issues.
//! A batch reads its members' presence in one statement and writes each table with one
//! set-based statement (`unnest`), like every other table of the flush.

use chrono::{DateTime, NaiveDate, Utc};
use sqlx::postgres::PgRow;

use super::{Cols, PgUnitOfWork, column, json_column};
use crate::domain::{
    location::{Fix, GeoRule, IssueFacts, RejectReason, VisitRule, VisitRuleKind},
    model::LatLng,
    ports::{EngagementChanges, Keys, Loaded, Presence, StoreResult, Visit, VisitSource},
};

const SELECT_PRESENCE: &str = r#"
select member_id, latitude, longitude, accuracy_m, observed_at, runs::text as runs
from member_presence
where member_id = any($1)"#;

const SELECT_VISITS: &str = r#"
select member_id, store_id, visit_date, first_at, source
from visits
where member_id = $1
    and ($2::date is null or visit_date >= $2)
order by visit_date, store_id"#;

const GEO_ISSUE_FACTS: &str = r#"
select
    (select max(issued_at)
     from geo_issues
     where rule_id = $1 and member_id = $2 and store_id = $3) as last_issued_at,
    (select count(*)
     from geo_issues
     where rule_id = $1 and store_id = $3 and local_date = $4) as issued_today"#;

const LAPSED_CANDIDATES: &str = r#"
select l.member_id
from (
    select member_id, max(visit_date) as last_visit
    from visits
    where member_id > $4
        and (cardinality($2::text[]) = 0 or store_id = any($2))
    group by member_id
) as l
where l.last_visit <= $3
    and not exists (
        select 1
        from visit_issues i
        where i.rule_id = $1
            and i.member_id = l.member_id
            and i.issued_on >= l.last_visit
    )
order by l.member_id
limit $5"#;

const INSERT_GEO_RULES: &str = r#"
insert into geo_rules (rule_id, campaign_id, definition, created_at)
select rule_id, campaign_id, definition::jsonb, created_at
from unnest($1::text[], $2::text[], $3::text[], $4::timestamptz[])
    as r (rule_id, campaign_id, definition, created_at)"#;

const INSERT_VISIT_RULES: &str = r#"
insert into visit_rules (rule_id, campaign_id, kind, definition, created_at)
select rule_id, campaign_id, kind, definition::jsonb, created_at
from unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::timestamptz[])
    as r (rule_id, campaign_id, kind, definition, created_at)"#;

const INSERT_REPORTS: &str = r#"
insert into location_reports (member_id, observed_at, recorded_at, latitude, longitude,
    accuracy_m, rejected)
select *
from unnest($1::text[], $2::timestamptz[], $3::timestamptz[], $4::float8[], $5::float8[],
    $6::float8[], $7::text[])"#;

const UPSERT_PRESENCE: &str = r#"
insert into member_presence (member_id, latitude, longitude, accuracy_m, observed_at, runs)
select member_id, latitude, longitude, accuracy_m, observed_at, runs::jsonb
from unnest($1::text[], $2::float8[], $3::float8[], $4::float8[], $5::timestamptz[],
    $6::text[]) as p (member_id, latitude, longitude, accuracy_m, observed_at, runs)
on conflict (member_id) do update
set latitude = excluded.latitude,
    longitude = excluded.longitude,
    accuracy_m = excluded.accuracy_m,
    observed_at = excluded.observed_at,
    runs = excluded.runs"#;

const INSERT_GEO_ISSUES: &str = r#"
insert into geo_issues (rule_id, member_id, store_id, issued_at, local_date, slot, coupon_code)
select *
from unnest($1::text[], $2::text[], $3::text[], $4::timestamptz[], $5::date[], $6::int4[],
    $7::text[])"#;

const INSERT_VISIT_ISSUES: &str = r#"
insert into visit_issues (rule_id, member_id, issued_on, coupon_code)
select *
from unnest($1::text[], $2::text[], $3::date[], $4::text[])"#;

/// Coupons whose source names a geo or visit rule that does not exist (`omo verify`).
const COUPONS_WITHOUT_RULE: &str = r#"
select c.code
from coupons c
where split_part(c.source, ':', 1) in ('geo', 'visit', 'receipt', 'rule')
    and not exists (
        select 1 from rules r where r.rule_id = substr(c.source, strpos(c.source, ':') + 1))
order by c.code"#;

/// An issue's coupon, or none (null) for a firing that gave points only.
fn coupon_of(code: &str) -> Option<&str> {
    (!code.is_empty()).then_some(code)
}

fn presence_from_row(row: &PgRow) -> StoreResult<Presence> {
    let c = Cols::new(row, "member_presence", "member_id");
    Ok(Presence {
        member_id: c.get("member_id")?,
        fix: Fix {
            position: LatLng {
                latitude: c.get("latitude")?,
                longitude: c.get("longitude")?,
            },
            accuracy_m: c.get("accuracy_m")?,
            observed_at: c.get("observed_at")?,
        },
        runs: c.json("runs")?,
    })
}

fn visit_from_row(row: &PgRow) -> StoreResult<Visit> {
    let c = Cols::new(row, "visits", "member_id");
    Ok(Visit {
        member_id: c.get("member_id")?,
        store_id: c.get("store_id")?,
        visit_date: c.get("visit_date")?,
        first_at: c.get("first_at")?,
        source: c.parse("source", VisitSource::parse)?,
    })
}

fn kind_name(kind: VisitRuleKind) -> &'static str {
    match kind {
        VisitRuleKind::NthVisit => "nth_visit",
        VisitRuleKind::Lapsed => "lapsed",
    }
}

impl PgUnitOfWork {
    /// Deletes up to `limit` ($2) location reports recorded before $1 (by the BRIN index of
    /// migration 0013); `skip locked`: sweepers on several replicas delete different rows.
    pub(super) async fn purge_location_reports(
        &mut self,
        recorded_before: DateTime<Utc>,
        limit: i64,
    ) -> StoreResult<u64> {
        let query = sqlx::query(
            r#"
delete from location_reports
where report_id in (
    select report_id
    from location_reports
    where recorded_at < $1
    limit $2
    for update skip locked
)"#,
        )
        .bind(recorded_before) // $1
        .bind(limit.max(0)); // $2
        self.run_counted(query).await
    }

    pub(super) async fn purge_events(
        &mut self,
        occurred_before: DateTime<Utc>,
        limit: i64,
    ) -> StoreResult<u64> {
        let query = sqlx::query(
            r#"
delete from events
where event_no in (
    select event_no
    from events
    where seq is not null
      -- never the newest: the next seq is numbered after it, so seqs are never reused
      and seq < (select max(seq) from events)
      -- a prefix of the feed: none at or after the first recent event
      and seq < coalesce(
          (select min(seq) from events where seq is not null and occurred_at >= $1),
          9223372036854775807)
      -- every enabled webhook has planned its deliveries past it, none is pending
      and seq <= coalesce((select min(cursor_seq) from webhooks where enabled),
          9223372036854775807)
      and seq < coalesce(
          (select min(seq) from webhook_deliveries where state = 'PENDING'),
          9223372036854775807)
    order by seq
    limit $2
    for update skip locked
)"#,
        )
        .bind(occurred_before) // $1
        .bind(limit.max(0)); // $2
        self.run_counted(query).await
    }

    pub(super) async fn count_stores(&mut self) -> StoreResult<i64> {
        let query = sqlx::query("select count(*) as stores from stores");
        self.fetch_value(query, "stores", "stores").await
    }

    pub(super) async fn list_geo_rules(&mut self) -> StoreResult<Vec<GeoRule>> {
        let query = sqlx::query(
            "select rule_id, definition::text as definition from geo_rules order by rule_id",
        );
        self.fetch_all(query, |row| {
            Cols::new(row, "geo_rules", "rule_id").json("definition")
        })
        .await
    }

    pub(super) async fn list_visit_rules(&mut self) -> StoreResult<Vec<VisitRule>> {
        let query = sqlx::query(
            "select rule_id, definition::text as definition from visit_rules order by rule_id",
        );
        self.fetch_all(query, |row| {
            Cols::new(row, "visit_rules", "rule_id").json("definition")
        })
        .await
    }

    pub(super) async fn presence_of(&mut self, member_id: &str) -> StoreResult<Option<Presence>> {
        let query = sqlx::query(SELECT_PRESENCE).bind(vec![member_id]); // $1
        self.fetch_optional(query, presence_from_row).await
    }

    /// With `keys.presence`, the presence of every loaded (locked) member, in one statement.
    pub(super) async fn load_engagement(
        &mut self,
        keys: &Keys,
        loaded: &mut Loaded,
    ) -> StoreResult<()> {
        if !keys.presence || loaded.members.is_empty() {
            return Ok(());
        }
        let member_ids: Vec<&str> = column(&loaded.members, |m| m.member_id.as_str());
        let query = sqlx::query(SELECT_PRESENCE).bind(member_ids); // $1
        loaded.presence = self.fetch_all(query, presence_from_row).await?;
        Ok(())
    }

    pub(super) async fn geo_issue_facts(
        &mut self,
        rule_id: &str,
        member_id: &str,
        store_id: &str,
        local_date: NaiveDate,
    ) -> StoreResult<IssueFacts> {
        let query = sqlx::query(GEO_ISSUE_FACTS)
            .bind(rule_id) // $1
            .bind(member_id) // $2
            .bind(store_id) // $3
            .bind(local_date); // $4
        let row = query
            .fetch_one(&mut *self.tx)
            .await
            .map_err(super::map_err)?;
        let c = Cols::new(&row, "geo_issues", "issued_today");
        Ok(IssueFacts {
            last_issued_at: c.get("last_issued_at")?,
            issued_today_at_store: c.get("issued_today")?,
        })
    }

    pub(super) async fn member_visits(
        &mut self,
        member_id: &str,
        since: Option<NaiveDate>,
    ) -> StoreResult<Vec<Visit>> {
        let query = sqlx::query(SELECT_VISITS)
            .bind(member_id) // $1
            .bind(since); // $2
        self.fetch_all(query, visit_from_row).await
    }

    pub(super) async fn last_visit_issue(
        &mut self,
        rule_id: &str,
        member_id: &str,
    ) -> StoreResult<Option<NaiveDate>> {
        let query = sqlx::query(
            r#"
select max(issued_on) as issued_on
from visit_issues
where rule_id = $1 and member_id = $2"#,
        )
        .bind(rule_id) // $1
        .bind(member_id); // $2
        self.fetch_value(query, "visit_issues", "issued_on").await
    }

    pub(super) async fn lapsed_candidates(
        &mut self,
        rule_id: &str,
        store_ids: &[String],
        last_visit_by: NaiveDate,
        after_member_id: &str,
        limit: i64,
    ) -> StoreResult<Vec<String>> {
        let query = sqlx::query(LAPSED_CANDIDATES)
            .bind(rule_id) // $1
            .bind(store_ids) // $2
            .bind(last_visit_by) // $3
            .bind(after_member_id) // $4
            .bind(limit); // $5
        self.fetch_all(query, |row| {
            Cols::new(row, "visits", "member_id").get("member_id")
        })
        .await
    }

    pub(super) async fn coupons_without_rule(&mut self) -> StoreResult<Vec<String>> {
        self.fetch_all(sqlx::query(COUPONS_WITHOUT_RULE), |row| {
            Cols::new(row, "coupons", "code").get("code")
        })
        .await
    }

    /// Writes a batch's engagement rows: one set-based statement per table that has any.
    pub(super) async fn flush_engagement(
        &mut self,
        changes: &EngagementChanges,
    ) -> StoreResult<()> {
        self.flush_rules(changes).await?;
        let reports = &changes.location_reports;
        if !reports.is_empty() {
            let query = sqlx::query(INSERT_REPORTS)
                .bind(column(reports, |r| r.member_id.as_str())) // $1
                .bind(column(reports, |r| r.observed_at)) // $2
                .bind(column(reports, |r| r.recorded_at)) // $3
                .bind(column(reports, |r| r.position.latitude)) // $4
                .bind(column(reports, |r| r.position.longitude)) // $5
                .bind(column(reports, |r| r.accuracy_m)) // $6
                .bind(column(reports, |r| r.rejected.map(RejectReason::as_str))); // $7
            self.run(query).await?;
        }
        let presence = &changes.presence;
        if !presence.is_empty() {
            let query = sqlx::query(UPSERT_PRESENCE)
                .bind(column(presence, |p| p.member_id.as_str())) // $1
                .bind(column(presence, |p| p.fix.position.latitude)) // $2
                .bind(column(presence, |p| p.fix.position.longitude)) // $3
                .bind(column(presence, |p| p.fix.accuracy_m)) // $4
                .bind(column(presence, |p| p.fix.observed_at)) // $5
                .bind(json_column(presence, |p| &p.runs)?); // $6
            self.run(query).await?;
        }
        self.flush_issues(changes).await
    }

    async fn flush_rules(&mut self, changes: &EngagementChanges) -> StoreResult<()> {
        let rules = &changes.new_geo_rules;
        if !rules.is_empty() {
            let query = sqlx::query(INSERT_GEO_RULES)
                .bind(column(rules, |(r, _)| r.rule_id.as_str())) // $1
                .bind(column(rules, |(r, _)| r.campaign_id.as_str())) // $2
                .bind(json_column(rules, |(r, _)| r)?) // $3
                .bind(column(rules, |(_, at)| *at)); // $4
            self.run(query).await?;
        }
        let rules = &changes.new_visit_rules;
        if !rules.is_empty() {
            let query = sqlx::query(INSERT_VISIT_RULES)
                .bind(column(rules, |(r, _)| r.rule_id.as_str())) // $1
                .bind(column(rules, |(r, _)| r.campaign_id.as_str())) // $2
                .bind(column(rules, |(r, _)| kind_name(r.kind))) // $3
                .bind(json_column(rules, |(r, _)| r)?) // $4
                .bind(column(rules, |(_, at)| *at)); // $5
            self.run(query).await?;
        }
        Ok(())
    }

    async fn flush_issues(&mut self, changes: &EngagementChanges) -> StoreResult<()> {
        let issues = &changes.geo_issues;
        if !issues.is_empty() {
            let slots: Vec<Option<i32>> = issues
                .iter()
                .map(|i| i.slot.map(|slot| i32::try_from(slot).unwrap_or(i32::MAX)))
                .collect();
            let query = sqlx::query(INSERT_GEO_ISSUES)
                .bind(column(issues, |i| i.rule_id.as_str())) // $1
                .bind(column(issues, |i| i.member_id.as_str())) // $2
                .bind(column(issues, |i| i.store_id.as_str())) // $3
                .bind(column(issues, |i| i.issued_at)) // $4
                .bind(column(issues, |i| i.local_date)) // $5
                .bind(slots) // $6
                .bind(column(issues, |i| coupon_of(&i.coupon_code))); // $7
            self.run(query).await?;
        }
        // Visits are written by the flush statement, with their summary (`reports.rs`).
        let issues = &changes.visit_issues;
        if !issues.is_empty() {
            let query = sqlx::query(INSERT_VISIT_ISSUES)
                .bind(column(issues, |i| i.rule_id.as_str())) // $1
                .bind(column(issues, |i| i.member_id.as_str())) // $2
                .bind(column(issues, |i| i.issued_on)) // $3
                .bind(column(issues, |i| coupon_of(&i.coupon_code))); // $4
            self.run(query).await?;
        }
        Ok(())
    }
}
