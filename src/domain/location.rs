//! Location signals from the app: anti-spoofing verdicts, visits (runs of inside reports), and
//! the decisions of geo and visit rules. Pure functions of their inputs: the caller passes the
//! injected clock's `now` and the facts it loaded (previous accepted fix, last issue, counts).

use chrono::{DateTime, Duration, NaiveDate, Utc};
use serde::{Deserialize, Serialize};

use super::{
    geo::distance_m,
    model::{LatLng, MemberRef},
    rules::{Award, Counters, Facts, Rule, Signal, Skip},
    schedule::{DaysOfWeek, HoursWindow},
};

/// Accuracy limit of a report when no rule names one, in metres.
pub const DEFAULT_MAX_ACCURACY_M: f64 = 100.0;
/// A report observed longer ago than this is stale.
pub const MAX_REPORT_AGE: Duration = Duration::hours(1);
/// A report observed further ahead than this is from the future (clock skew allowance).
pub const MAX_REPORT_LEAD: Duration = Duration::minutes(5);
/// Fastest plausible travel between two accepted reports, in km/h.
pub const MAX_SPEED_KMH: f64 = 300.0;
/// A visit ends when no inside report came for longer than this.
pub const MAX_VISIT_GAP: Duration = Duration::minutes(15);
/// Dwell that makes a run of inside reports a visit (one per member, store and local date):
/// passing by is not visiting.
pub const MIN_VISIT_DWELL_SECONDS: i64 = 300;
/// Largest ListNearbyOffers radius, in metres.
pub const MAX_NEARBY_RADIUS_M: f64 = 50_000.0;

/// One location report of a member's device.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LocationReport {
    pub member: MemberRef,
    pub position: LatLng,
    pub accuracy_m: f64,
    pub observed_at: DateTime<Utc>,
    /// Free text from the app; empty when not given.
    pub device_id: String,
}

impl LocationReport {
    /// The report as a fix for the verdict (and, once accepted, the next report's speed check).
    pub fn fix(&self) -> Fix {
        Fix {
            position: self.position,
            accuracy_m: self.accuracy_m,
            observed_at: self.observed_at,
        }
    }
}

/// A ListNearbyOffers query.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NearbyQuery {
    pub member: MemberRef,
    pub position: LatLng,
    pub radius_m: f64,
    pub page_size: usize,
}

/// A store near the member with what the member could get or use there now (API
/// `NearbyOffer`).
#[derive(Debug, Clone, PartialEq)]
pub struct NearbyOffer {
    pub store_id: String,
    pub store_name: String,
    pub distance_m: f64,
    pub campaigns: Vec<NearbyCampaign>,
}

/// A campaign on offer at a nearby store: by a geo rule (`rule_id`) or scoped to the store.
#[derive(Debug, Clone, PartialEq)]
pub struct NearbyCampaign {
    pub campaign: super::coupon::Campaign,
    /// Empty for an in-store campaign.
    pub rule_id: String,
    pub how: OfferHow,
}

/// Why a report was rejected; the text is the API's `reason`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum RejectReason {
    Accuracy,
    Stale,
    Future,
    Speed,
}

impl RejectReason {
    pub fn as_str(self) -> &'static str {
        match self {
            RejectReason::Accuracy => "ACCURACY",
            RejectReason::Stale => "STALE",
            RejectReason::Future => "FUTURE",
            RejectReason::Speed => "SPEED",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum LocationVerdict {
    Accepted,
    Rejected(RejectReason),
}

/// A position the member was at, as far as speed checks are concerned.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Fix {
    pub position: LatLng,
    pub accuracy_m: f64,
    pub observed_at: DateTime<Utc>,
}

/// The accuracy limit for a report: the largest `max_accuracy_m` of the rules that could apply
/// to it (a report precise enough for any of them is worth keeping), or the default without
/// rules.
pub fn accuracy_limit_m<'a>(rules: impl IntoIterator<Item = &'a GeoRule>) -> f64 {
    rules
        .into_iter()
        .map(|rule| rule.max_accuracy_m)
        .reduce(f64::max)
        .unwrap_or(DEFAULT_MAX_ACCURACY_M)
}

/// The verdict on a report. Checks run in the order API.md lists the reasons, and the first that
/// fails names the reason: ACCURACY (accuracy_m above `max_accuracy_m`), STALE (observed more
/// than an hour before `now`), FUTURE (more than 5 minutes after `now`), SPEED (see
/// [`too_fast`]; last, because it is meaningful only between precise, plausibly timed fixes).
pub fn verdict(
    report: &Fix,
    max_accuracy_m: f64,
    previous: Option<&Fix>,
    now: DateTime<Utc>,
) -> LocationVerdict {
    let reason = if report.accuracy_m > max_accuracy_m {
        Some(RejectReason::Accuracy)
    } else if report.observed_at < now - MAX_REPORT_AGE {
        Some(RejectReason::Stale)
    } else if report.observed_at > now + MAX_REPORT_LEAD {
        Some(RejectReason::Future)
    } else if previous.is_some_and(|previous| too_fast(previous, report)) {
        Some(RejectReason::Speed)
    } else {
        None
    };
    reason.map_or(LocationVerdict::Accepted, LocationVerdict::Rejected)
}

/// Whether getting from `previous` (the member's previous accepted fix) to `next` needs more
/// than 300 km/h.
///
/// The distance is shortened by both fixes' accuracy radii: each position is only known to
/// within its accuracy, so GPS jitter between two fixes at one spot is not travel. The time is
/// the absolute difference of the observed_at's: a report that arrives late (observed before the
/// previous one) is held to the same bound, since the member had to be at both places at those
/// times either way. Equal timestamps therefore reject any move beyond the accuracy radii.
pub fn too_fast(previous: &Fix, next: &Fix) -> bool {
    let moved_m = distance_m(previous.position, next.position);
    let travel_m = (moved_m - previous.accuracy_m - next.accuracy_m).max(0.0);
    let elapsed_s = (next.observed_at - previous.observed_at)
        .abs()
        .as_seconds_f64();
    let max_speed_m_per_s = MAX_SPEED_KMH * 1000.0 / 3600.0;
    travel_m > max_speed_m_per_s * elapsed_s
}

// ---------------------------------------------------------------------------------------------
// Visits

/// The current visit of a member at one store: a run of inside reports with no outside report
/// and no gap over 15 minutes between them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct VisitRun {
    pub started_at: DateTime<Utc>,
    pub last_inside_at: DateTime<Utc>,
}

impl VisitRun {
    /// Dwell so far: last − first observed_at of the run, in whole seconds.
    pub fn dwell_seconds(&self) -> i64 {
        (self.last_inside_at - self.started_at).num_seconds()
    }
}

/// One accepted report applied to a member's run at one store: the new run (None when the member
/// is not inside) and the dwell of the run in seconds (0 outside and on entry).
///
/// - inside, no run, or the last inside report more than 15 minutes before: a new visit starts;
/// - inside within 15 minutes: the visit goes on and its dwell grows;
/// - outside: the visit ends.
///
/// A report observed before the run's last inside report changes nothing: reports reach the
/// server out of order only when delayed, and a late one must not rewrite a visit whose dwell
/// has already been acted on (an outside report from earlier would otherwise cut it short).
pub fn advance(
    run: Option<VisitRun>,
    inside: bool,
    observed_at: DateTime<Utc>,
) -> (Option<VisitRun>, i64) {
    if let Some(run) = run.filter(|run| observed_at < run.last_inside_at) {
        return (Some(run), run.dwell_seconds());
    }
    let next = match run {
        _ if !inside => None,
        Some(run) if observed_at - run.last_inside_at <= MAX_VISIT_GAP => Some(VisitRun {
            started_at: run.started_at,
            last_inside_at: observed_at,
        }),
        _ => Some(VisitRun {
            started_at: observed_at,
            last_inside_at: observed_at,
        }),
    };
    (next, next.map_or(0, |run| run.dwell_seconds()))
}

// ---------------------------------------------------------------------------------------------
// Geo rules

/// A geofence coupon rule (API.md `GeoRule`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GeoRule {
    pub rule_id: String,
    pub campaign_id: String,
    /// Empty = every store.
    pub store_ids: Vec<String>,
    /// 0 = issue on entry.
    pub min_dwell_seconds: i64,
    pub max_accuracy_m: f64,
    /// Local time of the store; empty = all day.
    pub active_hours: Vec<HoursWindow>,
    pub days_of_week: DaysOfWeek,
    /// Least time between two coupons of this rule to one member at one store; 0 = none.
    pub cooldown_seconds: i64,
    /// Most coupons of this rule at one store per local day; 0 = no cap.
    pub daily_cap_per_store: i64,
    pub starts_at: Option<DateTime<Utc>>,
    pub ends_at: Option<DateTime<Utc>>,
}

impl GeoRule {
    pub fn applies_to_store(&self, store_id: &str) -> bool {
        self.store_ids.is_empty() || self.store_ids.iter().any(|id| id == store_id)
    }
}

/// How a geo rule (or an in-store offer) gives its coupon; the text is the API's `how`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum OfferHow {
    GeoEntry,
    GeoDwell,
    InStore,
}

impl OfferHow {
    pub fn as_str(self) -> &'static str {
        match self {
            OfferHow::GeoEntry => "GEO_ENTRY",
            OfferHow::GeoDwell => "GEO_DWELL",
            OfferHow::InStore => "IN_STORE",
        }
    }

    /// How a geo rule gives its coupon.
    pub fn of_rule(rule: &GeoRule) -> Self {
        if rule.min_dwell_seconds == 0 {
            OfferHow::GeoEntry
        } else {
            OfferHow::GeoDwell
        }
    }
}

/// What the engine knows about earlier coupons of one rule at one store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct IssueFacts {
    /// When this rule last issued to this member at this store.
    pub last_issued_at: Option<DateTime<Utc>>,
    /// Coupons this rule issued at this store (to anyone) on the store's local date of the
    /// report.
    pub issued_today_at_store: i64,
}

/// A GEO rule decided by the rules core for a member's visit at a store (`facts.store_id`):
/// the visit's dwell and whether the rule already fired during it are the signal's facts, and
/// its cooldown and daily cap count at this store, from its issues there. `counters` brings
/// the rest (per-member firings, budget).
pub fn decide_geo(
    rule: &Rule,
    facts: &Facts<'_>,
    run: &VisitRun,
    issued: &IssueFacts,
    counters: Counters,
) -> Result<Award, Skip> {
    let facts = Facts {
        signal: Signal::Geo {
            dwell_seconds: run.dwell_seconds(),
            fired_this_visit: issued
                .last_issued_at
                .is_some_and(|last| last >= run.started_at),
        },
        ..facts.clone()
    };
    let counters = Counters {
        member_last_fired_at: issued.last_issued_at,
        store_day_fired: issued.issued_today_at_store,
        ..counters
    };
    super::rules::decide(rule, &facts, &counters)
}

// ---------------------------------------------------------------------------------------------
// Visit rules

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum VisitRuleKind {
    /// The `visits`-th visit within `window_days` issues a coupon.
    NthVisit,
    /// No visit for `lapsed_days` issues a coupon (checked daily).
    Lapsed,
}

/// A visit coupon rule (API.md `VisitRule`). A visit is one (member, store, local date).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VisitRule {
    pub rule_id: String,
    pub campaign_id: String,
    pub kind: VisitRuleKind,
    /// NTH_VISIT: which visit issues (≥ 1); 0 for LAPSED.
    pub visits: i64,
    /// NTH_VISIT: the trailing window in local days, today included; 0 = no window.
    pub window_days: i64,
    /// LAPSED: days without a visit (≥ 1); 0 for NTH_VISIT.
    pub lapsed_days: i64,
    /// Empty = every store.
    pub store_ids: Vec<String>,
}

impl VisitRule {
    pub fn applies_to_store(&self, store_id: &str) -> bool {
        self.store_ids.is_empty() || self.store_ids.iter().any(|id| id == store_id)
    }
}

/// NTH_VISIT, when a visit on `today` has just been recorded: whether it is the `visits`-th of
/// the member's visits (`visit_dates`, one entry per visit at the rule's stores, today's
/// included) within the last `window_days` days, counting only visits after the day the rule
/// last issued to the member. Counting from the last issue makes the visits of one coupon not
/// count again towards the next, so a weekly regular gets one coupon per `visits` visits, not
/// one per visit once the window is full.
pub fn nth_visit_due(
    rule: &VisitRule,
    visit_dates: &[NaiveDate],
    today: NaiveDate,
    last_issued_on: Option<NaiveDate>,
) -> bool {
    let window_start = (rule.window_days > 0)
        .then(|| today - chrono::Days::new(u64::try_from(rule.window_days - 1).unwrap_or(0)));
    let counted = visit_dates
        .iter()
        .filter(|&&date| date <= today)
        .filter(|&&date| window_start.is_none_or(|start| date >= start))
        .filter(|&&date| last_issued_on.is_none_or(|issued| date > issued))
        .count();
    rule.kind == VisitRuleKind::NthVisit
        && rule.visits > 0
        && i64::try_from(counted).is_ok_and(|counted| counted >= rule.visits)
}

/// LAPSED, checked once a local day: whether the member's last visit (at the rule's stores) was
/// `lapsed_days` or more days before `today`, and the rule has not issued to the member since
/// that visit (one coupon per lapse). A member who never visited has not lapsed.
pub fn lapsed_due(
    rule: &VisitRule,
    last_visit_on: Option<NaiveDate>,
    today: NaiveDate,
    last_issued_on: Option<NaiveDate>,
) -> bool {
    let Some(last_visit_on) = last_visit_on else {
        return false;
    };
    let days_since = (today - last_visit_on).num_days();
    rule.kind == VisitRuleKind::Lapsed
        && rule.lapsed_days > 0
        && days_since >= rule.lapsed_days
        && last_issued_on.is_none_or(|issued| issued < last_visit_on)
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;
    use chrono_tz::Tz;

    use crate::domain::schedule::parse_time_zone;

    fn at(h: u32, mi: u32, s: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 30, h, mi, s).unwrap()
    }

    fn ll(latitude: f64, longitude: f64) -> LatLng {
        LatLng {
            latitude,
            longitude,
        }
    }

    const TOKYO_STATION: LatLng = LatLng {
        latitude: 35.681236,
        longitude: 139.767125,
    };
    /// 6,463.998 m from Tokyo Station (GeographicLib).
    const SHIBUYA_STATION: LatLng = LatLng {
        latitude: 35.658034,
        longitude: 139.701636,
    };

    fn fix(position: LatLng, accuracy_m: f64, observed_at: DateTime<Utc>) -> Fix {
        Fix {
            position,
            accuracy_m,
            observed_at,
        }
    }

    fn rejected(reason: RejectReason) -> LocationVerdict {
        LocationVerdict::Rejected(reason)
    }

    #[test]
    fn a_precise_fresh_plausible_report_is_accepted() {
        let now = at(12, 0, 0);
        let report = fix(TOKYO_STATION, 20.0, now - Duration::minutes(1));
        assert_eq!(
            verdict(&report, 100.0, None, now),
            LocationVerdict::Accepted
        );
    }

    #[test]
    fn accuracy_above_the_limit_is_rejected_and_the_limit_is_inclusive() {
        let now = at(12, 0, 0);
        assert_eq!(
            verdict(&fix(TOKYO_STATION, 100.5, now), 100.0, None, now),
            rejected(RejectReason::Accuracy)
        );
        assert_eq!(
            verdict(&fix(TOKYO_STATION, 100.0, now), 100.0, None, now),
            LocationVerdict::Accepted
        );
    }

    #[test]
    fn the_accuracy_limit_is_the_largest_of_the_rules_or_100() {
        assert_eq!(accuracy_limit_m([]), DEFAULT_MAX_ACCURACY_M);
        let (mut strict, mut loose) = (rule(), rule());
        strict.max_accuracy_m = 30.0;
        loose.max_accuracy_m = 250.0;
        assert_eq!(accuracy_limit_m([&strict]), 30.0);
        assert_eq!(accuracy_limit_m([&strict, &loose]), 250.0);
    }

    #[test]
    fn stale_and_future_reports_are_rejected_at_their_bounds() {
        let now = at(12, 0, 0);
        let check = |observed_at| verdict(&fix(TOKYO_STATION, 10.0, observed_at), 100.0, None, now);
        assert_eq!(check(now - Duration::hours(1)), LocationVerdict::Accepted);
        assert_eq!(
            check(now - Duration::hours(1) - Duration::seconds(1)),
            rejected(RejectReason::Stale)
        );
        assert_eq!(check(now + Duration::minutes(5)), LocationVerdict::Accepted);
        assert_eq!(
            check(now + Duration::minutes(5) + Duration::seconds(1)),
            rejected(RejectReason::Future)
        );
    }

    #[test]
    fn the_first_failing_check_names_the_reason() {
        let now = at(12, 0, 0);
        let previous = fix(SHIBUYA_STATION, 5.0, now - Duration::hours(3));
        // Imprecise, stale and (relative to a fix 2 h later) impossible: ACCURACY wins.
        let report = fix(TOKYO_STATION, 500.0, now - Duration::hours(2));
        assert_eq!(
            verdict(&report, 100.0, Some(&previous), now),
            rejected(RejectReason::Accuracy)
        );
        let report = fix(TOKYO_STATION, 5.0, now - Duration::hours(2));
        assert_eq!(
            verdict(&report, 100.0, Some(&previous), now),
            rejected(RejectReason::Stale)
        );
    }

    #[test]
    fn speed_is_distance_over_time_between_accepted_fixes() {
        let now = at(12, 0, 0);
        // 6,464 m: 300 km/h covers it in 77.6 s.
        let previous = fix(TOKYO_STATION, 0.0, now - Duration::seconds(78));
        let report = fix(SHIBUYA_STATION, 0.0, now);
        assert_eq!(
            verdict(&report, 100.0, Some(&previous), now),
            LocationVerdict::Accepted
        );
        let previous = fix(TOKYO_STATION, 0.0, now - Duration::seconds(77));
        assert_eq!(
            verdict(&report, 100.0, Some(&previous), now),
            rejected(RejectReason::Speed)
        );
    }

    #[test]
    fn accuracy_radii_absorb_jitter_and_equal_timestamps_allow_no_travel() {
        let now = at(12, 0, 0);
        let here = ll(35.0, 139.0);
        let there = ll(35.0, 139.001); // 91.288 m east
        let previous = fix(here, 50.0, now);
        assert!(
            !too_fast(&previous, &fix(there, 50.0, now)),
            "within the radii"
        );
        assert!(
            too_fast(&previous, &fix(there, 40.0, now)),
            "1.3 m of travel in 0 s"
        );
        assert!(!too_fast(&previous, &fix(here, 0.0, now)));
    }

    #[test]
    fn a_late_report_is_held_to_the_same_speed_bound() {
        let now = at(12, 0, 0);
        let previous = fix(SHIBUYA_STATION, 0.0, now);
        // Observed 60 s before the previous fix, 6.5 km away: 388 km/h either way round.
        let late = fix(TOKYO_STATION, 0.0, now - Duration::seconds(60));
        assert!(too_fast(&previous, &late));
        let late = fix(TOKYO_STATION, 0.0, now - Duration::seconds(600));
        assert!(!too_fast(&previous, &late));
    }

    #[test]
    fn reasons_have_the_api_spelling() {
        let all = [
            RejectReason::Accuracy,
            RejectReason::Stale,
            RejectReason::Future,
            RejectReason::Speed,
        ];
        let names: Vec<_> = all.into_iter().map(RejectReason::as_str).collect();
        assert_eq!(names, ["ACCURACY", "STALE", "FUTURE", "SPEED"]);
    }

    // -- visits

    #[test]
    fn an_inside_report_starts_a_visit_with_no_dwell() {
        let (run, dwell) = advance(None, true, at(10, 0, 0));
        assert_eq!(
            run,
            Some(VisitRun {
                started_at: at(10, 0, 0),
                last_inside_at: at(10, 0, 0)
            })
        );
        assert_eq!(dwell, 0);
        assert_eq!(advance(None, false, at(10, 0, 0)), (None, 0));
    }

    #[test]
    fn dwell_accumulates_while_reports_stay_inside() {
        let (run, _) = advance(None, true, at(10, 0, 0));
        let (run, dwell) = advance(run, true, at(10, 10, 0));
        assert_eq!(dwell, 600);
        let (run, dwell) = advance(run, true, at(10, 25, 0));
        assert_eq!(
            dwell, 1_500,
            "a gap of exactly 15 minutes continues the visit"
        );
        assert_eq!(run.map(|r| r.started_at), Some(at(10, 0, 0)));
    }

    #[test]
    fn a_gap_over_15_minutes_starts_a_new_visit() {
        let (run, _) = advance(None, true, at(10, 0, 0));
        let (run, dwell) = advance(run, true, at(10, 15, 1));
        assert_eq!(dwell, 0);
        assert_eq!(run.map(|r| r.started_at), Some(at(10, 15, 1)));
    }

    #[test]
    fn an_outside_report_ends_the_visit() {
        let (run, _) = advance(None, true, at(10, 0, 0));
        let (run, _) = advance(run, true, at(10, 5, 0));
        let (run, dwell) = advance(run, false, at(10, 6, 0));
        assert_eq!((run, dwell), (None, 0));
        let (run, dwell) = advance(run, true, at(10, 7, 0));
        assert_eq!(dwell, 0);
        assert_eq!(run.map(|r| r.started_at), Some(at(10, 7, 0)));
    }

    #[test]
    fn a_late_report_does_not_rewrite_the_visit() {
        let (run, _) = advance(None, true, at(10, 0, 0));
        let (run, _) = advance(run, true, at(10, 10, 0));
        assert_eq!(advance(run, false, at(10, 5, 0)), (run, 600));
        assert_eq!(advance(run, true, at(9, 55, 0)), (run, 600));
    }

    // -- geo rules

    fn rule() -> GeoRule {
        GeoRule {
            rule_id: "r1".into(),
            campaign_id: "c1".into(),
            store_ids: vec![],
            min_dwell_seconds: 0,
            max_accuracy_m: 100.0,
            active_hours: vec![],
            days_of_week: DaysOfWeek::EVERY_DAY,
            cooldown_seconds: 0,
            daily_cap_per_store: 0,
            starts_at: None,
            ends_at: None,
        }
    }

    fn run(started_at: DateTime<Utc>, last_inside_at: DateTime<Utc>) -> VisitRun {
        VisitRun {
            started_at,
            last_inside_at,
        }
    }

    fn tokyo() -> Tz {
        parse_time_zone("Asia/Tokyo").unwrap()
    }

    /// A GEO rule made by CreateGeoRule, decided by the rules core at store "shibuya".
    fn decide(rule: &GeoRule, run: &VisitRun, issued: &IssueFacts) -> Result<OfferHow, Skip> {
        let facts = Facts::at_store(
            run.last_inside_at,
            tokyo(),
            None,
            "shibuya",
            None,
            Signal::None,
        );
        let core = crate::domain::rules::views::of_geo(rule.clone());
        decide_geo(&core, &facts, run, issued, Counters::default()).map(|award| {
            assert_eq!(award.campaign_id.as_deref(), Some("c1"));
            OfferHow::of_rule(rule)
        })
    }

    #[test]
    fn min_dwell_zero_issues_on_entry() {
        let entry = run(at(3, 0, 0), at(3, 0, 0));
        assert_eq!(
            decide(&rule(), &entry, &IssueFacts::default()),
            Ok(OfferHow::GeoEntry)
        );
    }

    #[test]
    fn a_dwell_rule_issues_once_the_dwell_is_reached() {
        let mut dwell = rule();
        dwell.min_dwell_seconds = 300;
        let facts = IssueFacts::default();
        assert_eq!(
            decide(&dwell, &run(at(3, 0, 0), at(3, 4, 59)), &facts),
            Err(Skip::ConditionNotMet)
        );
        assert_eq!(
            decide(&dwell, &run(at(3, 0, 0), at(3, 5, 0)), &facts),
            Ok(OfferHow::GeoDwell)
        );
    }

    #[test]
    fn one_coupon_per_visit_then_the_cooldown_between_visits() {
        let mut cooled = rule();
        cooled.cooldown_seconds = 3_600;
        let issued = IssueFacts {
            last_issued_at: Some(at(3, 0, 0)),
            issued_today_at_store: 1,
        };
        assert_eq!(
            decide(&cooled, &run(at(3, 0, 0), at(3, 10, 0)), &issued),
            Err(Skip::Cooldown)
        );
        assert_eq!(
            decide(&cooled, &run(at(3, 30, 0), at(3, 59, 59)), &issued),
            Err(Skip::Cooldown)
        );
        assert_eq!(
            decide(&cooled, &run(at(3, 30, 0), at(4, 0, 0)), &issued),
            Ok(OfferHow::GeoEntry)
        );
        // Without a cooldown the next visit issues again.
        assert_eq!(
            decide(&rule(), &run(at(3, 30, 0), at(3, 30, 0)), &issued),
            Ok(OfferHow::GeoEntry)
        );
    }

    #[test]
    fn the_daily_cap_per_store_counts_everyone() {
        let mut capped = rule();
        capped.daily_cap_per_store = 2;
        let entry = run(at(3, 0, 0), at(3, 0, 0));
        let facts = |issued_today_at_store| IssueFacts {
            last_issued_at: None,
            issued_today_at_store,
        };
        assert_eq!(decide(&capped, &entry, &facts(1)), Ok(OfferHow::GeoEntry));
        assert_eq!(decide(&capped, &entry, &facts(2)), Err(Skip::DailyCap));
        assert_eq!(
            decide(&rule(), &entry, &facts(1_000)),
            Ok(OfferHow::GeoEntry)
        );
    }

    #[test]
    fn rules_hold_only_at_their_stores_dates_and_hours() {
        let entry = run(at(3, 0, 0), at(3, 0, 0)); // 12:00 in Tokyo
        let facts = IssueFacts::default();
        let mut scoped = rule();
        scoped.store_ids = vec!["ginza".into()];
        assert_eq!(decide(&scoped, &entry, &facts), Err(Skip::ConditionNotMet));
        scoped.store_ids.push("shibuya".into());
        assert_eq!(decide(&scoped, &entry, &facts), Ok(OfferHow::GeoEntry));

        let mut dated = rule();
        dated.starts_at = Some(at(3, 0, 1));
        assert_eq!(decide(&dated, &entry, &facts), Err(Skip::OutsidePeriod));
        dated.starts_at = Some(at(3, 0, 0));
        dated.ends_at = Some(at(3, 0, 0));
        assert_eq!(decide(&dated, &entry, &facts), Err(Skip::OutsidePeriod));
        dated.ends_at = Some(at(3, 0, 1));
        assert_eq!(decide(&dated, &entry, &facts), Ok(OfferHow::GeoEntry));

        let mut hours = rule();
        hours.active_hours = vec![HoursWindow::parse("13:00", "20:00").unwrap()];
        assert_eq!(decide(&hours, &entry, &facts), Err(Skip::OutsideHours));
        hours.active_hours = vec![HoursWindow::parse("10:00", "20:00").unwrap()];
        assert_eq!(decide(&hours, &entry, &facts), Ok(OfferHow::GeoEntry));
        // 2026-11-30 is a Monday.
        hours.days_of_week = DaysOfWeek::parse(&[6, 7]).unwrap();
        assert_eq!(decide(&hours, &entry, &facts), Err(Skip::OutsideHours));
    }

    // -- visit rules

    fn date(day: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(2026, 11, day).unwrap()
    }

    fn nth(visits: i64, window_days: i64) -> VisitRule {
        VisitRule {
            rule_id: "v1".into(),
            campaign_id: "c1".into(),
            kind: VisitRuleKind::NthVisit,
            visits,
            window_days,
            lapsed_days: 0,
            store_ids: vec![],
        }
    }

    #[test]
    fn the_nth_visit_within_the_window_is_due() {
        let rule = nth(3, 10);
        let dates = [date(1), date(5), date(10)];
        assert!(nth_visit_due(&rule, &dates, date(10), None));
        assert!(!nth_visit_due(&rule, &dates[..2], date(5), None));
        // On the 11th the visit of the 1st is outside the 10-day window.
        let later = [date(1), date(5), date(11)];
        assert!(!nth_visit_due(&rule, &later, date(11), None));
        // Two stores on one day are two visits.
        let same_day = [date(1), date(10), date(10)];
        assert!(nth_visit_due(&rule, &same_day, date(10), None));
        // No window: every visit since the last coupon counts.
        assert!(nth_visit_due(&nth(3, 0), &later, date(11), None));
    }

    #[test]
    fn visits_before_the_last_coupon_do_not_count_again() {
        let rule = nth(3, 30);
        let dates = [date(1), date(8), date(15), date(22)];
        assert!(!nth_visit_due(&rule, &dates, date(22), Some(date(15))));
        let more = [date(1), date(8), date(15), date(22), date(27), date(29)];
        assert!(nth_visit_due(&rule, &more, date(29), Some(date(15))));
    }

    fn lapsed(days: i64) -> VisitRule {
        VisitRule {
            kind: VisitRuleKind::Lapsed,
            visits: 0,
            window_days: 0,
            lapsed_days: days,
            ..nth(0, 0)
        }
    }

    #[test]
    fn a_member_lapses_after_lapsed_days_without_a_visit_once_per_lapse() {
        let rule = lapsed(30);
        let last_visit = Some(date(1));
        let day_31 = NaiveDate::from_ymd_opt(2026, 12, 1).unwrap();
        assert!(!lapsed_due(&rule, last_visit, date(30), None), "29 days");
        assert!(lapsed_due(&rule, last_visit, day_31, None), "30 days");
        assert!(
            !lapsed_due(&rule, last_visit, day_31, Some(day_31)),
            "already issued"
        );
        assert!(lapsed_due(
            &rule,
            last_visit,
            day_31,
            Some(date(1) - chrono::Days::new(5))
        ));
        assert!(!lapsed_due(&rule, None, day_31, None), "never visited");
        assert!(
            !nth_visit_due(&rule, &[date(1)], date(1), None),
            "wrong kind"
        );
        assert!(
            !lapsed_due(&nth(1, 0), last_visit, day_31, None),
            "wrong kind"
        );
    }

    #[test]
    fn offers_have_the_api_spelling() {
        assert_eq!(OfferHow::of_rule(&rule()).as_str(), "GEO_ENTRY");
        let mut dwell = rule();
        dwell.min_dwell_seconds = 60;
        assert_eq!(OfferHow::of_rule(&dwell).as_str(), "GEO_DWELL");
        assert_eq!(OfferHow::InStore.as_str(), "IN_STORE");
    }

    proptest::proptest! {
        #[test]
        fn a_run_is_the_inside_reports_since_the_last_break(
            steps in proptest::collection::vec((proptest::bool::weighted(0.8), 0i64..1_200), 1..40),
        ) {
            let mut run = None;
            let mut now = at(10, 0, 0);
            let mut started = None;
            for (inside, gap_seconds) in steps {
                let previous_inside = run.map(|r: VisitRun| r.last_inside_at);
                now += Duration::seconds(gap_seconds);
                let (next, dwell) = advance(run, inside, now);
                // The model: a visit starts at an inside report after an outside one, after
                // none, or after a gap over 15 minutes; an outside report ends it.
                started = match (inside, started, previous_inside) {
                    (false, _, _) => None,
                    (true, Some(start), Some(last)) if now - last <= MAX_VISIT_GAP => Some(start),
                    (true, _, _) => Some(now),
                };
                proptest::prop_assert_eq!(next.map(|r| r.started_at), started);
                proptest::prop_assert_eq!(next.map(|r| r.last_inside_at), inside.then_some(now));
                proptest::prop_assert_eq!(dwell, started.map_or(0, |s| (now - s).num_seconds()));
                run = next;
            }
        }
    }
}
