//! App signals: location reports, geo and visit rules, nearby offers. The decisions are the pure
//! functions of `domain::location`; this module loads their facts and writes their outcomes.
//!
//! A report that issues nothing writes no ledger row: its stored report and the member's
//! presence (last fix, visit runs) go out with the batch's flush like everything else. The
//! member's row is locked by the batch's load, so two devices of one member reporting at once
//! are decided one after the other, on any number of replicas: one coupon per visit.

use std::collections::BTreeSet;

use chrono::{DateTime, Days, NaiveDate, SubsecRound, Utc};

use super::{
    CommandResult, Engine, EngineError,
    members::{self, Access},
    reference::{Reference, Site, Sites},
    rows::LedgerRows,
    rules,
};
use crate::domain::{
    DomainError,
    auth::{Caller, Operation},
    command::LocationResult,
    coupon::Coupon,
    location::{
        GeoRule, IssueFacts, LocationReport, LocationVerdict, MIN_VISIT_DWELL_SECONDS,
        NearbyCampaign, NearbyOffer, NearbyQuery, OfferHow, VisitRule, VisitRuleKind, VisitRun,
        accuracy_limit_m, advance, lapsed_due, nth_visit_due, verdict,
    },
    model::{Channel, MemberState},
    ports::{
        GeoIssue, LocationRecord, Presence, StoreError, StoreRun, Visit, VisitIssue, VisitSource,
    },
    rules::{Facts, Rule, RuleOutcome, Signal, Trigger, views},
    schedule::{is_active, local_date},
};

// ---------------------------------------------------------------------------------------------
// Rules (admin)

/// CreateGeoRule: a rule of trigger GEO, made as CreateRule makes every rule.
pub(super) async fn create_geo_rule(
    uow: &mut dyn LedgerRows,
    reference: &Reference,
    now: DateTime<Utc>,
    rule: &GeoRule,
) -> CommandResult<GeoRule> {
    check_stores(uow, &rule.store_ids).await?;
    let created = rules::create(uow, reference, now, &views::of_geo(rule.clone())).await?;
    Ok(GeoRule {
        rule_id: created.rule_id,
        ..rule.clone()
    })
}

/// CreateVisitRule: a rule of trigger VISIT, made as CreateRule makes every rule.
pub(super) async fn create_visit_rule(
    uow: &mut dyn LedgerRows,
    reference: &Reference,
    now: DateTime<Utc>,
    rule: &VisitRule,
) -> CommandResult<VisitRule> {
    check_stores(uow, &rule.store_ids).await?;
    let created = rules::create(uow, reference, now, &views::of_visit(rule.clone())).await?;
    Ok(VisitRule {
        rule_id: created.rule_id,
        ..rule.clone()
    })
}

/// The stores an EngagementService rule names must exist (its campaign is checked by
/// `rules::create`, as every rule's is).
pub(super) async fn check_stores(
    uow: &mut dyn LedgerRows,
    store_ids: &[String],
) -> CommandResult<()> {
    for store_id in store_ids {
        if uow.get_store(store_id).await?.is_none() {
            return Err(DomainError::StoreNotFound.into());
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Location reports

pub(super) async fn report_location(
    uow: &mut dyn LedgerRows,
    reference: &Reference,
    now: DateTime<Utc>,
    report: &LocationReport,
) -> CommandResult<LocationResult> {
    // Instants are stored to the microsecond: a run started at a finer instant than the issue
    // row that remembers it would not see that issue as "during this visit", and issue twice.
    let report = &LocationReport {
        observed_at: report.observed_at.trunc_subsecs(6),
        ..report.clone()
    };
    let member = members::resolve(uow, &report.member, Access::Mutate).await?;
    let member_id = member.member_id;
    let sites = reference.sites(uow).await?;
    let rules = reference.enabled_rules(uow, Trigger::Geo).await?;
    let candidates = sites.candidates(report.position);
    // The accuracy a report needs: enough for some rule of a store it may be in.
    let geo: Vec<GeoRule> = rules.iter().filter_map(views::to_geo).collect();
    let limit = accuracy_limit_m(geo.iter().filter(|rule| {
        candidates
            .iter()
            .any(|site| rule.applies_to_store(&site.store.store_id))
    }));
    let presence = uow.presence(&member_id).await?;
    let previous = presence.as_ref().map(|presence| presence.fix);
    let verdict = verdict(&report.fix(), limit, previous.as_ref(), now);
    uow.insert_location_report(&record(&member_id, report, now, verdict))
        .await?;
    let mut result = LocationResult {
        verdict,
        inside_store_ids: Vec::new(),
        coupons_issued: Vec::new(),
        rule_outcomes: Vec::new(),
    };
    if verdict != LocationVerdict::Accepted {
        return Ok(result);
    }
    let inside: Vec<&Site> = candidates
        .into_iter()
        .filter(|site| site.fence.contains(report.position))
        .collect();
    result.inside_store_ids = inside.iter().map(|s| s.store.store_id.clone()).collect();
    // issue #22: `offer.nearby` events (engine::events owns them).
    let near = (member_id.as_str(), report.position);
    super::events::offer_nearby(uow, reference, (&sites, &geo), near, now).await?;
    let before = presence.map(|presence| presence.runs).unwrap_or_default();
    let moved = Moved {
        member_id: &member_id,
        inside: &result.inside_store_ids,
        observed_at: report.observed_at,
        now,
    };
    let advanced = advance_runs(uow, reference, &sites, &rules, &moved, &before).await?;
    result.coupons_issued = advanced.issued;
    result.rule_outcomes = advanced.outcomes;
    let runs = advanced.runs;
    let fix = match previous {
        Some(fix) if fix.observed_at > report.observed_at => fix,
        _ => report.fix(),
    };
    let presence = Presence {
        member_id,
        fix,
        runs,
    };
    uow.save_presence(&presence).await?;
    Ok(result)
}

/// An accepted report, as the member's runs see it.
struct Moved<'a> {
    member_id: &'a str,
    /// The stores whose fence contains the position.
    inside: &'a [String],
    observed_at: DateTime<Utc>,
    now: DateTime<Utc>,
}

/// What a report's runs came to.
struct Advanced {
    /// The runs that go on.
    runs: Vec<StoreRun>,
    issued: Vec<Coupon>,
    /// Every GEO rule decided, fired or not.
    outcomes: Vec<RuleOutcome>,
}

/// Advances the member's run at every store they were or are inside; each changed run is
/// decided by the store's geo rules, and a run that first dwells long enough is a visit.
async fn advance_runs(
    uow: &mut dyn LedgerRows,
    reference: &Reference,
    sites: &Sites,
    rules: &[Rule],
    moved: &Moved<'_>,
    before: &[StoreRun],
) -> Result<Advanced, StoreError> {
    let (mut runs, mut issued, mut outcomes) = (Vec::new(), Vec::new(), Vec::new());
    let stores: BTreeSet<&str> = before
        .iter()
        .map(|run| run.store_id.as_str())
        .chain(moved.inside.iter().map(String::as_str))
        .collect();
    for store_id in stores {
        let was = before
            .iter()
            .find(|r| r.store_id == store_id)
            .map(|r| r.run);
        let is_inside = moved.inside.iter().any(|id| id == store_id);
        let (run, _) = advance(was, is_inside, moved.observed_at);
        let Some(run) = run else { continue };
        runs.push(StoreRun {
            store_id: store_id.to_string(),
            run,
        });
        // A late report leaves the run as it was: nothing new to decide.
        let Some(site) = sites.get(store_id).filter(|_| Some(run) != was) else {
            continue;
        };
        let member_id = moved.member_id;
        let at_store = (site, member_id, &run);
        let geo = fire_geo(uow, reference, rules, at_store, moved.now).await?;
        issued.extend(geo.issued);
        outcomes.extend(geo.outcomes);
        let dwelled = |seconds: i64| seconds >= MIN_VISIT_DWELL_SECONDS;
        if dwelled(run.dwell_seconds()) && !was.is_some_and(|was| dwelled(was.dwell_seconds())) {
            let visit = new_visit(member_id, site, run.last_inside_at, VisitSource::Geo);
            issued.extend(record_visit(uow, reference, visit, moved.now).await?);
        }
    }
    Ok(Advanced {
        runs,
        issued,
        outcomes,
    })
}

fn record(
    member_id: &str,
    report: &LocationReport,
    now: DateTime<Utc>,
    verdict: LocationVerdict,
) -> LocationRecord {
    LocationRecord {
        member_id: member_id.to_string(),
        observed_at: report.observed_at,
        recorded_at: now,
        position: report.position,
        accuracy_m: report.accuracy_m,
        rejected: match verdict {
            LocationVerdict::Accepted => None,
            LocationVerdict::Rejected(reason) => Some(reason),
        },
    }
}

/// What the GEO rules of a store gave for the member's visit there.
struct GeoFired {
    issued: Vec<Coupon>,
    outcomes: Vec<RuleOutcome>,
}

/// Decides the GEO rules of a store for the member's run there, by the rules core (the run's
/// dwell is the signal's fact), and gives what fired. Each coupon's issue row remembers the
/// firing at this store (the next report's "fired this visit", cooldown and daily cap).
async fn fire_geo(
    uow: &mut dyn LedgerRows,
    reference: &Reference,
    rules: &[Rule],
    (site, member_id, run): (&Site, &str, &VisitRun),
    now: DateTime<Utc>,
) -> Result<GeoFired, StoreError> {
    let store_id = site.store.store_id.as_str();
    let mut fired = GeoFired {
        issued: Vec::new(),
        outcomes: Vec::new(),
    };
    // The run's dwell and issues make the signal (`location::decide_geo`).
    let (at, app) = (run.last_inside_at, Some(Channel::App));
    let here = |rule: &&Rule| {
        rule.conditions.store_ids.is_empty()
            || rule.conditions.store_ids.iter().any(|id| id == store_id)
    };
    let tier_id = rules::tier_for(uow, member_id, rules.iter().filter(here)).await?;
    let facts = Facts::at_store(at, site.tz, app, store_id, tier_id.as_deref(), Signal::None);
    for rule in rules.iter().filter(here) {
        let (outcome, issued) = rules::decide_geo(uow, rule, &facts, member_id, run).await?;
        fired
            .outcomes
            .push(RuleOutcome::of(&rule.rule_id, store_id, &outcome));
        let Ok(award) = outcome else { continue };
        let firing = rules::Firing {
            member_id,
            store_id,
            at: run.last_inside_at,
            tz: site.tz,
            points: 0,
            coupons: 0,
        };
        let given = rules::give(uow, reference, rule, &award, firing, now).await?;
        if given.points == 0 && given.coupon.is_none() {
            continue;
        }
        let issue = GeoIssue {
            rule_id: rule.rule_id.clone(),
            member_id: member_id.to_string(),
            store_id: store_id.to_string(),
            issued_at: run.last_inside_at,
            local_date: local_date(run.last_inside_at, site.tz),
            // The daily cap's slot: two replicas taking the same one collide on its unique
            // key, one batch fails and retries, and the cap holds exactly.
            slot: (rule.limits.daily_cap_per_store > 0).then_some(issued.issued_today_at_store + 1),
            coupon_code: given
                .coupon
                .as_ref()
                .map(|coupon| coupon.code.clone())
                .unwrap_or_default(),
        };
        uow.insert_geo_issue(&issue).await?;
        fired.issued.extend(given.coupon);
    }
    Ok(fired)
}

// ---------------------------------------------------------------------------------------------
// Visits

fn new_visit(member_id: &str, site: &Site, at: DateTime<Utc>, source: VisitSource) -> Visit {
    Visit {
        member_id: member_id.to_string(),
        store_id: site.store.store_id.clone(),
        visit_date: local_date(at, site.tz),
        first_at: at,
        source,
    }
}

/// A register sale or an accepted receipt at a store is a visit: recorded in its batch, with
/// the coupons of the NTH_VISIT rules it completes. An unknown store records nothing.
pub(super) async fn record_store_visit(
    uow: &mut dyn LedgerRows,
    reference: &Reference,
    member_id: &str,
    (store_id, at): (&str, DateTime<Utc>),
    source: VisitSource,
    now: DateTime<Utc>,
) -> Result<Vec<Coupon>, StoreError> {
    let sites = reference.sites(uow).await?;
    let Some(site) = sites.get(store_id) else {
        return Ok(Vec::new());
    };
    let visit = new_visit(member_id, site, at, source);
    record_visit(uow, reference, visit, now).await
}

/// Records a visit (once per member, store and local date) and issues the coupons of the
/// NTH_VISIT rules whose count it completes. Without such a rule nothing is read: the flush
/// inserts the visit unless it is there already.
async fn record_visit(
    uow: &mut dyn LedgerRows,
    reference: &Reference,
    visit: Visit,
    now: DateTime<Utc>,
) -> Result<Vec<Coupon>, StoreError> {
    let all = reference.enabled_rules(uow, Trigger::Visit).await?;
    let rules: Vec<(&Rule, VisitRule)> = all
        .iter()
        .filter_map(|rule| views::to_visit(rule).map(|visit| (rule, visit)))
        .filter(|(_, r)| r.kind == VisitRuleKind::NthVisit && r.applies_to_store(&visit.store_id))
        .collect();
    if rules.is_empty() {
        uow.insert_visit(&visit).await?;
        return Ok(Vec::new());
    }
    let windows: Vec<&VisitRule> = rules.iter().map(|(_, r)| r).collect();
    let since = window_start(&windows, visit.visit_date);
    let known = uow.member_visits(&visit.member_id, since).await?;
    let same = |v: &Visit| v.store_id == visit.store_id && v.visit_date == visit.visit_date;
    if known.iter().any(same) {
        return Ok(Vec::new());
    }
    uow.insert_visit(&visit).await?;
    let sites = reference.sites(uow).await?;
    let Some(site) = sites.get(&visit.store_id) else {
        return Ok(Vec::new());
    };
    let mut issued = Vec::new();
    for (rule, counting) in rules {
        let dates: Vec<NaiveDate> = known
            .iter()
            .filter(|v| counting.applies_to_store(&v.store_id))
            .map(|v| v.visit_date)
            .chain([visit.visit_date])
            .collect();
        let last = uow
            .last_visit_issue(&rule.rule_id, &visit.member_id)
            .await?;
        let due = nth_visit_due(&counting, &dates, visit.visit_date, last);
        let at_store = (site, visit.first_at, visit.visit_date);
        issued
            .extend(fire_visit(uow, reference, rule, &visit.member_id, at_store, due, now).await?);
    }
    Ok(issued)
}

/// Decides a VISIT rule by the rules core (`due`: the visit is the one it counts to) and gives
/// what it awards; the issue row dates the firing, from which the next count starts.
async fn fire_visit(
    uow: &mut dyn LedgerRows,
    reference: &Reference,
    rule: &Rule,
    member_id: &str,
    (site, at, issued_on): (&Site, DateTime<Utc>, NaiveDate),
    due: bool,
    now: DateTime<Utc>,
) -> Result<Option<Coupon>, StoreError> {
    if !due {
        return Ok(None);
    }
    let store_id = site.store.store_id.as_str();
    let tier_id = rules::tier_for(uow, member_id, std::iter::once(rule)).await?;
    let facts = Facts::at_store(
        at,
        site.tz,
        None,
        store_id,
        tier_id.as_deref(),
        Signal::Visit { due },
    );
    let Ok(award) = rules::decide(uow, rule, &facts, member_id).await? else {
        return Ok(None);
    };
    let firing = rules::Firing {
        member_id,
        store_id,
        at,
        tz: site.tz,
        points: 0,
        coupons: 0,
    };
    let given = rules::give(uow, reference, rule, &award, firing, now).await?;
    if given.points == 0 && given.coupon.is_none() {
        return Ok(None);
    }
    let issue = VisitIssue {
        rule_id: rule.rule_id.clone(),
        member_id: member_id.to_string(),
        issued_on,
        coupon_code: given
            .coupon
            .as_ref()
            .map(|coupon| coupon.code.clone())
            .unwrap_or_default(),
    };
    uow.insert_visit_issue(&issue).await?;
    Ok(given.coupon)
}

/// The first date any of `rules` counts visits from (None: one counts them all).
fn window_start(rules: &[&VisitRule], today: NaiveDate) -> Option<NaiveDate> {
    if rules.iter().any(|rule| rule.window_days == 0) {
        return None;
    }
    let widest = rules.iter().map(|rule| rule.window_days).max().unwrap_or(1);
    today.checked_sub_days(Days::new(u64::try_from(widest - 1).unwrap_or(0)))
}

/// LAPSED, for one member: re-checked under the member's lock (another replica may have
/// issued since the candidates were read), then issued once, dated the member's local today
/// (the zone of the store of the last visit). A second replica's insert of the same
/// (rule, member, date) would be a unique violation, never a second coupon.
pub(super) async fn issue_lapsed_if_due(
    uow: &mut dyn LedgerRows,
    reference: &Reference,
    rule_id: &str,
    member_id: &str,
    now: DateTime<Utc>,
) -> Result<bool, StoreError> {
    let rules = reference.enabled_rules(uow, Trigger::Visit).await?;
    let Some((rule, counting)) = rules
        .iter()
        .filter(|rule| rule.rule_id == rule_id)
        .find_map(|rule| views::to_visit(rule).map(|visit| (rule, visit)))
    else {
        return Ok(false);
    };
    let member = uow.get_member(member_id, true).await?;
    if member.is_none_or(|member| member.state == MemberState::Merged) {
        return Ok(false);
    }
    let visits = uow.member_visits(member_id, None).await?;
    let Some(last) = visits
        .iter()
        .filter(|visit| counting.applies_to_store(&visit.store_id))
        .max_by_key(|visit| visit.visit_date)
    else {
        return Ok(false);
    };
    let sites = reference.sites(uow).await?;
    let Some(site) = sites.get(&last.store_id) else {
        return Ok(false);
    };
    let today = local_date(now, site.tz);
    let issued = uow.last_visit_issue(rule_id, member_id).await?;
    let due = lapsed_due(&counting, Some(last.visit_date), today, issued);
    let at_store = (site, now, today);
    let given = fire_visit(uow, reference, rule, member_id, at_store, due, now).await?;
    Ok(given.is_some())
}

// ---------------------------------------------------------------------------------------------
// Nearby offers (read path)

impl Engine {
    /// Stores within the radius, nearest first, each with the campaigns the member could get
    /// or use there now: geo rules active at the store's local time, not in cooldown and under
    /// their cap for the member, and campaigns scoped to the store. Stores with nothing on offer
    /// are left out.
    pub async fn nearby_offers(
        &self,
        caller: &Caller,
        query: &NearbyQuery,
    ) -> Result<Vec<NearbyOffer>, EngineError> {
        caller.require(Operation::ListNearbyOffers)?;
        let now = self.now();
        let reference = &self.core.reference;
        let mut uow = self.store().begin_read().await?;
        let member = members::resolve(uow.as_mut(), &query.member, Access::Read)
            .await
            .map_err(super::queries::from_failure)?;
        let sites = reference.sites(uow.as_mut()).await?;
        let rules = reference.enabled_rules(uow.as_mut(), Trigger::Geo).await?;
        let rules: Vec<GeoRule> = rules.iter().filter_map(views::to_geo).collect();
        let campaigns = reference.campaigns(uow.as_mut()).await?;
        let mut offers = Vec::new();
        for (site, distance_m) in sites.within(query.position, query.radius_m) {
            if offers.len() >= query.page_size {
                break;
            }
            let store_id = site.store.store_id.as_str();
            let mut on_offer = Vec::new();
            for rule in rules.iter().filter(|rule| rule_open(rule, site, now)) {
                let date = local_date(now, site.tz);
                let facts = uow
                    .geo_issue_facts(&rule.rule_id, &member.member_id, store_id, date)
                    .await?;
                let campaign = campaigns.iter().find(|c| c.campaign_id == rule.campaign_id);
                if let Some(campaign) = campaign.filter(|c| c.is_open(now))
                    && !held_back(rule, &facts, now)
                {
                    on_offer.push(NearbyCampaign {
                        campaign: campaign.clone(),
                        rule_id: rule.rule_id.clone(),
                        how: OfferHow::of_rule(rule),
                    });
                }
            }
            on_offer.extend(
                campaigns
                    .iter()
                    .filter(|c| c.is_open(now) && c.store_ids.iter().any(|id| id == store_id))
                    .map(|campaign| NearbyCampaign {
                        campaign: campaign.clone(),
                        rule_id: String::new(),
                        how: OfferHow::InStore,
                    }),
            );
            if !on_offer.is_empty() {
                offers.push(NearbyOffer {
                    store_id: store_id.to_string(),
                    store_name: site.store.name.clone(),
                    distance_m,
                    campaigns: on_offer,
                });
            }
        }
        Ok(offers)
    }
}

/// Whether a geo rule of `site` runs now (dates, local hours and days).
pub(super) fn rule_open(rule: &GeoRule, site: &Site, now: DateTime<Utc>) -> bool {
    rule.applies_to_store(&site.store.store_id)
        && rule.starts_at.is_none_or(|starts_at| now >= starts_at)
        && rule.ends_at.is_none_or(|ends_at| now < ends_at)
        && is_active(now, site.tz, &rule.active_hours, rule.days_of_week)
}

/// Whether the member's cooldown or the store's daily cap keeps the rule from issuing now.
fn held_back(rule: &GeoRule, facts: &IssueFacts, now: DateTime<Utc>) -> bool {
    let cooling = facts
        .last_issued_at
        .is_some_and(|last| (now - last).num_seconds() < rule.cooldown_seconds);
    let capped =
        rule.daily_cap_per_store > 0 && facts.issued_today_at_store >= rule.daily_cap_per_store;
    cooling || capped
}

impl crate::domain::command::EngagementCommand {
    pub(super) fn plan(&self, plan: &mut super::batch::Plan) {
        // Most location reports issue nothing; one that issues reserves ids on demand.
        if let crate::domain::command::EngagementCommand::ReportLocation(report) = self {
            plan.member(&report.member);
            plan.keys().presence = true;
        }
    }

    pub(super) async fn run(
        &self,
        uow: &mut dyn LedgerRows,
        reference: &super::reference::Reference,
        caller: &crate::domain::auth::Caller,
        now: DateTime<Utc>,
    ) -> CommandResult<crate::domain::command::Reply> {
        use crate::domain::{auth::Operation, command::EngagementCommand::*, command::Reply};
        match self {
            CreateGeoRule(rule) => {
                caller.require(Operation::ManageRules)?;
                create_geo_rule(uow, reference, now, rule)
                    .await
                    .map(Reply::GeoRule)
            }
            CreateVisitRule(rule) => {
                caller.require(Operation::ManageRules)?;
                create_visit_rule(uow, reference, now, rule)
                    .await
                    .map(Reply::VisitRule)
            }
            ReportLocation(report) => {
                caller.require(Operation::ReportLocation)?;
                report_location(uow, reference, now, report)
                    .await
                    .map(Reply::Location)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;
    use crate::domain::{location::DEFAULT_MAX_ACCURACY_M, schedule::DaysOfWeek};

    fn nth(window_days: i64) -> VisitRule {
        VisitRule {
            rule_id: format!("nth-{window_days}"),
            campaign_id: "c".into(),
            kind: VisitRuleKind::NthVisit,
            visits: 3,
            window_days,
            lapsed_days: 0,
            store_ids: Vec::new(),
        }
    }

    fn geo(cooldown_seconds: i64, daily_cap_per_store: i64) -> GeoRule {
        GeoRule {
            rule_id: "g".into(),
            campaign_id: "c".into(),
            store_ids: Vec::new(),
            min_dwell_seconds: 0,
            max_accuracy_m: DEFAULT_MAX_ACCURACY_M,
            active_hours: Vec::new(),
            days_of_week: DaysOfWeek::EVERY_DAY,
            cooldown_seconds,
            daily_cap_per_store,
            starts_at: None,
            ends_at: None,
        }
    }

    #[test]
    fn visits_are_read_from_the_start_of_the_widest_window() {
        let today = NaiveDate::from_ymd_opt(2026, 4, 30).expect("date");
        let (week, month) = (nth(7), nth(30));
        assert_eq!(
            window_start(&[&week, &month], today),
            NaiveDate::from_ymd_opt(2026, 4, 1),
            "30 days, today included"
        );
        assert_eq!(
            window_start(&[&week], today),
            NaiveDate::from_ymd_opt(2026, 4, 24)
        );
        let ever = nth(0);
        assert_eq!(
            window_start(&[&week, &ever], today),
            None,
            "no window: every visit"
        );
    }

    #[test]
    fn nearby_offers_hold_back_cooling_and_capped_rules() {
        let now = Utc.with_ymd_and_hms(2026, 4, 1, 3, 0, 0).unwrap();
        let issued = |seconds_ago: i64, today: i64| IssueFacts {
            last_issued_at: Some(now - chrono::Duration::seconds(seconds_ago)),
            issued_today_at_store: today,
        };
        assert!(!held_back(&geo(0, 0), &IssueFacts::default(), now));
        assert!(held_back(&geo(3600, 0), &issued(3599, 1), now));
        assert!(!held_back(&geo(3600, 0), &issued(3600, 1), now));
        assert!(held_back(&geo(0, 2), &issued(10, 2), now));
        assert!(!held_back(&geo(0, 2), &issued(10, 1), now));
    }
}
