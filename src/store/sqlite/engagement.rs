//! Engagement: geo and visit rules, location reports, presence, visits and the rules' issues.
//! Dates are TEXT `YYYY-MM-DD` (they sort as dates), JSON is TEXT.

use chrono::{DateTime, NaiveDate, Utc};
use rusqlite::Row;

use super::{Cols, SqliteUnitOfWork, col};
use crate::domain::{
    location::{Fix, GeoRule, IssueFacts, RejectReason, VisitRule, VisitRuleKind},
    model::LatLng,
    ports::{
        EngagementChanges, GeoIssue, Keys, Loaded, LocationRecord, Presence, StoreError,
        StoreResult, Visit, VisitIssue, VisitSource,
    },
};
use crate::store::to_json;

pub(super) fn date_text(date: NaiveDate) -> String {
    date.format("%Y-%m-%d").to_string()
}

impl Cols<'_, '_> {
    pub(super) fn date(&self, column: &str) -> StoreResult<NaiveDate> {
        let text: String = self.get(column)?;
        NaiveDate::parse_from_str(&text, "%Y-%m-%d")
            .map_err(|e| self.corrupt(column, format!("date {text:?}: {e}")))
    }
}

fn presence_from_row(row: &Row<'_>) -> StoreResult<Presence> {
    let c = Cols::new(row, "member_presence", "member_id");
    Ok(Presence {
        member_id: c.get("member_id")?,
        fix: Fix {
            position: LatLng {
                latitude: c.get("latitude")?,
                longitude: c.get("longitude")?,
            },
            accuracy_m: c.get("accuracy_m")?,
            observed_at: c.instant("observed_at")?,
        },
        runs: c.json("runs")?,
    })
}

fn visit_from_row(row: &Row<'_>) -> StoreResult<Visit> {
    let c = Cols::new(row, "visits", "member_id");
    Ok(Visit {
        member_id: c.get("member_id")?,
        store_id: c.get("store_id")?,
        visit_date: c.date("visit_date")?,
        first_at: c.instant("first_at")?,
        source: c.named("source", VisitSource::parse)?,
    })
}

fn kind_name(kind: VisitRuleKind) -> &'static str {
    match kind {
        VisitRuleKind::NthVisit => "nth_visit",
        VisitRuleKind::Lapsed => "lapsed",
    }
}

impl SqliteUnitOfWork {
    /// Deletes up to `limit` location reports recorded before `recorded_before` (by the index
    /// of migration 0013); how many it deleted.
    pub(super) fn purge_location_reports(
        &self,
        recorded_before: DateTime<Utc>,
        limit: i64,
    ) -> StoreResult<u64> {
        let deleted = self
            .query(
                r"
                delete from location_reports
                where report_id in (
                    select report_id
                    from location_reports
                    where recorded_at < ?1
                    limit ?2
                )
                ",
            )?
            .bind(recorded_before.timestamp_micros()) // ?1
            .bind(limit.max(0)) // ?2
            .execute()?;
        Ok(deleted as u64)
    }

    pub(super) fn purge_events(
        &self,
        occurred_before: DateTime<Utc>,
        limit: i64,
    ) -> StoreResult<u64> {
        let deleted = self
            .query(
                r"
                delete from events
                where seq in (
                    select seq
                    from events
                    where seq is not null
                      -- never the newest: the next seq is numbered after it, so seqs are never reused
                      and seq < (select max(seq) from events)
                      -- a prefix of the feed: none at or after the first recent event
                      and seq < coalesce(
                          (select min(seq) from events where seq is not null and occurred_at >= ?1),
                          9223372036854775807)
                      -- every enabled webhook has planned its deliveries past it, none is pending
                      and seq <= coalesce((select min(cursor_seq) from webhooks where enabled),
                          9223372036854775807)
                      and seq < coalesce(
                          (select min(seq) from webhook_deliveries where state = 'PENDING'),
                          9223372036854775807)
                    order by seq
                    limit ?2
                )
                ",
            )?
            .bind(occurred_before.timestamp_micros()) // ?1
            .bind(limit.max(0)) // ?2
            .execute()?;
        Ok(deleted as u64)
    }

    pub(super) fn count_stores(&self) -> StoreResult<i64> {
        self.query("select count(*) from stores")?
            .fetch_one(|row| col(row, 0))
    }

    pub(super) fn list_geo_rules(&self) -> StoreResult<Vec<GeoRule>> {
        let query = self.query(
            r"
            select rule_id, definition
            from geo_rules
            order by rule_id
            ",
        )?;
        self.fetch_all(query, |row| {
            Cols::new(row, "geo_rules", "rule_id").json("definition")
        })
    }

    pub(super) fn list_visit_rules(&self) -> StoreResult<Vec<VisitRule>> {
        let query = self.query(
            r"
            select rule_id, definition
            from visit_rules
            order by rule_id
            ",
        )?;
        self.fetch_all(query, |row| {
            Cols::new(row, "visit_rules", "rule_id").json("definition")
        })
    }

    pub(super) fn presence_of(&self, member_id: &str) -> StoreResult<Option<Presence>> {
        let query = self
            .query(
                r"
                select member_id, latitude, longitude, accuracy_m, observed_at, runs
                from member_presence
                where member_id = ?1
                ",
            )?
            .bind(member_id); // ?1
        self.fetch_optional(query, presence_from_row)
    }

    /// With `keys.presence`, the presence of every loaded member (one cached lookup each).
    pub(super) fn load_engagement(&self, keys: &Keys, loaded: &mut Loaded) -> StoreResult<()> {
        if !keys.presence {
            return Ok(());
        }
        for member in &loaded.members {
            loaded.presence.extend(self.presence_of(&member.member_id)?);
        }
        Ok(())
    }

    pub(super) fn geo_issue_facts(
        &self,
        rule_id: &str,
        member_id: &str,
        store_id: &str,
        local_date: NaiveDate,
    ) -> StoreResult<IssueFacts> {
        let query = self
            .query(
                r"
                select
                    (select max(issued_at)
                     from geo_issues
                     where rule_id = ?1 and member_id = ?2 and store_id = ?3) as last_issued_at,
                    (select count(*)
                     from geo_issues
                     where rule_id = ?1 and store_id = ?3 and local_date = ?4) as issued_today
                ",
            )?
            .bind(rule_id) // ?1
            .bind(member_id) // ?2
            .bind(store_id) // ?3
            .bind(date_text(local_date)); // ?4
        query.fetch_one(|row| {
            let c = Cols::new(row, "geo_issues", "issued_today");
            Ok(IssueFacts {
                last_issued_at: c.opt_instant("last_issued_at")?,
                issued_today_at_store: c.get("issued_today")?,
            })
        })
    }

    pub(super) fn member_visits(
        &self,
        member_id: &str,
        since: Option<NaiveDate>,
    ) -> StoreResult<Vec<Visit>> {
        let query = self
            .query(
                r"
                select member_id, store_id, visit_date, first_at, source
                from visits
                where member_id = ?1
                    and visit_date >= ?2
                order by visit_date, store_id
                ",
            )?
            .bind(member_id) // ?1
            .bind(since.map_or_else(String::new, date_text)); // ?2
        self.fetch_all(query, visit_from_row)
    }

    pub(super) fn last_visit_issue(
        &self,
        rule_id: &str,
        member_id: &str,
    ) -> StoreResult<Option<NaiveDate>> {
        let query = self
            .query(
                r"
                select max(issued_on) as issued_on
                from visit_issues
                where rule_id = ?1 and member_id = ?2
                ",
            )?
            .bind(rule_id) // ?1
            .bind(member_id); // ?2
        let issued_on: Option<String> = query.fetch_one(|row| col(row, 0))?;
        issued_on
            .map(|text| {
                NaiveDate::parse_from_str(&text, "%Y-%m-%d")
                    .map_err(|e| StoreError::Corrupt(format!("visit_issues.issued_on: {e}")))
            })
            .transpose()
    }

    pub(super) fn lapsed_candidates(
        &self,
        rule_id: &str,
        store_ids: &[String],
        last_visit_by: NaiveDate,
        after_member_id: &str,
        limit: i64,
    ) -> StoreResult<Vec<String>> {
        let query = self
            .query(
                r"
                select l.member_id
                from (
                    select member_id, max(visit_date) as last_visit
                    from visits
                    where member_id > ?4
                        and (?2 = '[]' or store_id in (select value from json_each(?2)))
                    group by member_id
                ) as l
                where l.last_visit <= ?3
                    and not exists (
                        select 1
                        from visit_issues i
                        where i.rule_id = ?1
                            and i.member_id = l.member_id
                            and i.issued_on >= l.last_visit
                    )
                order by l.member_id
                limit ?5
                ",
            )?
            .bind(rule_id) // ?1
            .bind(to_json(store_ids)?) // ?2
            .bind(date_text(last_visit_by)) // ?3
            .bind(after_member_id) // ?4
            .bind(limit); // ?5
        self.fetch_all(query, |row| col(row, 0))
    }

    /// Writes a batch's engagement rows, one cached statement per table, run per row.
    /// `shard`: the report summaries' shard of the flush (visits are counted as inserted).
    pub(super) fn write_engagement(
        &self,
        changes: &EngagementChanges,
        shard: i16,
    ) -> StoreResult<()> {
        for (rule, at) in &changes.new_geo_rules {
            let query = self
                .query(
                    r"
                    insert into geo_rules (rule_id, campaign_id, definition, created_at)
                    values (?1, ?2, ?3, ?4)
                    ",
                )?
                .bind(&rule.rule_id) // ?1
                .bind(&rule.campaign_id) // ?2
                .bind(to_json(rule)?) // ?3
                .bind(at.timestamp_micros()); // ?4
            self.run(query)?;
        }
        for (rule, at) in &changes.new_visit_rules {
            let query = self
                .query(
                    r"
                    insert into visit_rules (rule_id, campaign_id, kind, definition, created_at)
                    values (?1, ?2, ?3, ?4, ?5)
                    ",
                )?
                .bind(&rule.rule_id) // ?1
                .bind(&rule.campaign_id) // ?2
                .bind(kind_name(rule.kind)) // ?3
                .bind(to_json(rule)?) // ?4
                .bind(at.timestamp_micros()); // ?5
            self.run(query)?;
        }
        for report in &changes.location_reports {
            self.insert_report(report)?;
        }
        for presence in &changes.presence {
            self.save_presence(presence)?;
        }
        for issue in &changes.geo_issues {
            self.insert_geo_issue(issue)?;
        }
        for visit in &changes.visits {
            if self.insert_visit(visit)? {
                self.add_visits(&visit.store_id, visit.visit_date, 1, shard)?;
            }
        }
        for issue in &changes.visit_issues {
            self.insert_visit_issue(issue)?;
        }
        Ok(())
    }

    fn insert_report(&self, report: &LocationRecord) -> StoreResult<()> {
        let query = self
            .query(
                r"
                insert into location_reports (member_id, observed_at, recorded_at, latitude,
                    longitude, accuracy_m, rejected)
                values (?1, ?2, ?3, ?4, ?5, ?6, ?7)
                ",
            )?
            .bind(&report.member_id) // ?1
            .bind(report.observed_at.timestamp_micros()) // ?2
            .bind(report.recorded_at.timestamp_micros()) // ?3
            .bind(report.position.latitude) // ?4
            .bind(report.position.longitude) // ?5
            .bind(report.accuracy_m) // ?6
            .bind(report.rejected.map(RejectReason::as_str)); // ?7
        self.run(query)
    }

    fn save_presence(&self, presence: &Presence) -> StoreResult<()> {
        let query = self
            .query(
                r"
                insert into member_presence (member_id, latitude, longitude, accuracy_m,
                    observed_at, runs)
                values (?1, ?2, ?3, ?4, ?5, ?6)
                on conflict (member_id) do update
                set latitude = excluded.latitude,
                    longitude = excluded.longitude,
                    accuracy_m = excluded.accuracy_m,
                    observed_at = excluded.observed_at,
                    runs = excluded.runs
                ",
            )?
            .bind(&presence.member_id) // ?1
            .bind(presence.fix.position.latitude) // ?2
            .bind(presence.fix.position.longitude) // ?3
            .bind(presence.fix.accuracy_m) // ?4
            .bind(presence.fix.observed_at.timestamp_micros()) // ?5
            .bind(to_json(&presence.runs)?); // ?6
        self.run(query)
    }

    fn insert_geo_issue(&self, issue: &GeoIssue) -> StoreResult<()> {
        let query = self
            .query(
                r"
                insert into geo_issues (rule_id, member_id, store_id, issued_at, local_date,
                    slot, coupon_code)
                values (?1, ?2, ?3, ?4, ?5, ?6, ?7)
                ",
            )?
            .bind(&issue.rule_id) // ?1
            .bind(&issue.member_id) // ?2
            .bind(&issue.store_id) // ?3
            .bind(issue.issued_at.timestamp_micros()) // ?4
            .bind(date_text(issue.local_date)) // ?5
            .bind(issue.slot) // ?6
            .bind(coupon_of(&issue.coupon_code)); // ?7
        self.run(query)
    }

    /// A visit already recorded (by a batch that did not need to read it) stays as it was;
    /// whether it was new.
    fn insert_visit(&self, visit: &Visit) -> StoreResult<bool> {
        let query = self
            .query(
                r"
                insert into visits (member_id, store_id, visit_date, first_at, source)
                values (?1, ?2, ?3, ?4, ?5)
                on conflict (member_id, store_id, visit_date) do nothing
                ",
            )?
            .bind(&visit.member_id) // ?1
            .bind(&visit.store_id) // ?2
            .bind(date_text(visit.visit_date)) // ?3
            .bind(visit.first_at.timestamp_micros()) // ?4
            .bind(visit.source.as_str()); // ?5
        Ok(query.execute()? == 1)
    }

    fn insert_visit_issue(&self, issue: &VisitIssue) -> StoreResult<()> {
        let query = self
            .query(
                r"
                insert into visit_issues (rule_id, member_id, issued_on, coupon_code)
                values (?1, ?2, ?3, ?4)
                ",
            )?
            .bind(&issue.rule_id) // ?1
            .bind(&issue.member_id) // ?2
            .bind(date_text(issue.issued_on)) // ?3
            .bind(coupon_of(&issue.coupon_code)); // ?4
        self.run(query)
    }

    /// Coupons whose source names a rule (geo, visit, receipt or rule) that does not exist
    /// (`omo verify`).
    pub(super) fn coupons_without_rule(&self) -> StoreResult<Vec<String>> {
        let query = self.query(
            r"
            select c.code
            from coupons c
            where (c.source like 'geo:%' or c.source like 'visit:%'
                    or c.source like 'receipt:%' or c.source like 'rule:%')
                and not exists (
                    select 1 from rules r
                    where r.rule_id = substr(c.source, instr(c.source, ':') + 1))
            order by c.code
            ",
        )?;
        self.fetch_all(query, |row| col(row, 0))
    }
}

/// An issue's coupon, or none (null) for a firing that gave points only.
fn coupon_of(code: &str) -> Option<&str> {
    (!code.is_empty()).then_some(code)
}
