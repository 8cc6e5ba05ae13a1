//! `omo.v1.EngagementService`: geo, visit and receipt rules (admin), location reports, nearby
//! offers and receipts (the app backend, for any member; the review queue is the admin's).
//! The receipt calls' conversions are in `receipts.rs`. Requests become domain values (every bad field a
//! `FieldViolation` with its path); domain values become messages.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use tonic::{Request, Response, Status};

use super::{
    auth::caller_for,
    convert::{
        Violations, check_id, check_optional_id, check_request_id, check_text, instant, member_ref,
        optional_instant, optional_request_id, optional_timestamp, path,
    },
    coupon::{coupon_out, discount_oneof},
    paging::next_page_token,
    receipts::{
        create_receipt_rule_in, list_receipts_in, lists_member_receipts, receipt_record_out,
        receipt_result_out, receipt_rule_out, review_receipt_in, submit_receipt_in,
    },
    reply::execute,
    store::lat_lng,
};
use crate::{
    domain::{
        auth::Operation,
        command::{EngagementCommand, LocationResult, ReceiptCommand},
        location::{
            DEFAULT_MAX_ACCURACY_M, GeoRule, LocationReport, LocationVerdict, MAX_NEARBY_RADIUS_M,
            NearbyOffer, NearbyQuery, VisitRule, VisitRuleKind,
        },
        schedule::{
            DaysOfWeek, HoursWindow, MAX_ACTIVE_HOURS, format_time_of_day, parse_time_of_day,
        },
    },
    engine::Engine,
    proto::{self, engagement_service_server::EngagementService},
};

/// Most stores a rule may name.
const MAX_RULE_STORE_IDS: usize = 1_000;
/// Longest dwell a geo rule may ask for: a day.
const MAX_DWELL_SECONDS: i32 = 86_400;
/// Longest cooldown: a year.
const MAX_COOLDOWN_SECONDS: i32 = 366 * 86_400;
/// Widest accuracy limit a rule may set, in metres.
const MAX_RULE_ACCURACY_M: f64 = 10_000.0;
/// Longest visit window or lapse, in days (ten years).
const MAX_VISIT_DAYS: i32 = 3_660;
/// Highest visit count of an NTH_VISIT rule.
const MAX_VISITS: i32 = 1_000;
/// Longest device id, in characters.
const MAX_DEVICE_ID_CHARS: usize = 128;
/// ListNearbyOffers radius when none is given, in metres.
const DEFAULT_NEARBY_RADIUS_M: f64 = 1_000.0;
/// ListNearbyOffers page size when none is given, and the most.
const DEFAULT_NEARBY_PAGE_SIZE: usize = 20;
const MAX_NEARBY_PAGE_SIZE: i32 = 100;

pub struct EngagementApi {
    engine: Arc<Engine>,
}

impl EngagementApi {
    pub fn new(engine: Arc<Engine>) -> Self {
        Self { engine }
    }
}

#[tonic::async_trait]
impl EngagementService for EngagementApi {
    async fn create_geo_rule(
        &self,
        request: Request<proto::CreateGeoRuleRequest>,
    ) -> Result<Response<proto::CreateGeoRuleResponse>, Status> {
        let caller = caller_for(&self.engine, &request, Operation::ManageRules).await?;
        let (request_id, rule) = create_geo_rule_in(request.into_inner())?;
        let command = EngagementCommand::CreateGeoRule(rule);
        let rule = execute(&self.engine, &caller, request_id.as_deref(), command).await?;
        Ok(Response::new(proto::CreateGeoRuleResponse {
            rule: Some(geo_rule_out(rule)),
        }))
    }

    async fn report_location(
        &self,
        request: Request<proto::ReportLocationRequest>,
    ) -> Result<Response<proto::ReportLocationResponse>, Status> {
        let caller = caller_for(&self.engine, &request, Operation::ReportLocation).await?;
        let (request_id, report) = report_location_in(request.into_inner())?;
        let command = EngagementCommand::ReportLocation(report);
        let result = execute(&self.engine, &caller, Some(&request_id), command).await?;
        Ok(Response::new(proto::ReportLocationResponse {
            result: Some(location_result_out(result)),
        }))
    }

    async fn list_nearby_offers(
        &self,
        request: Request<proto::ListNearbyOffersRequest>,
    ) -> Result<Response<proto::ListNearbyOffersResponse>, Status> {
        let caller = caller_for(&self.engine, &request, Operation::ListNearbyOffers).await?;
        let query = nearby_offers_in(request.into_inner())?;
        let offers = self.engine.nearby_offers(&caller, &query).await?;
        Ok(Response::new(proto::ListNearbyOffersResponse {
            offers: offers.into_iter().map(nearby_offer_out).collect(),
        }))
    }

    async fn create_visit_rule(
        &self,
        request: Request<proto::CreateVisitRuleRequest>,
    ) -> Result<Response<proto::CreateVisitRuleResponse>, Status> {
        let caller = caller_for(&self.engine, &request, Operation::ManageRules).await?;
        let (request_id, rule) = create_visit_rule_in(request.into_inner())?;
        let command = EngagementCommand::CreateVisitRule(rule);
        let rule = execute(&self.engine, &caller, request_id.as_deref(), command).await?;
        Ok(Response::new(proto::CreateVisitRuleResponse {
            rule: Some(visit_rule_out(rule)),
        }))
    }

    async fn create_receipt_rule(
        &self,
        request: Request<proto::CreateReceiptRuleRequest>,
    ) -> Result<Response<proto::CreateReceiptRuleResponse>, Status> {
        let caller = caller_for(&self.engine, &request, Operation::ManageRules).await?;
        let (request_id, rule) = create_receipt_rule_in(request.into_inner())?;
        let command = ReceiptCommand::CreateReceiptRule(rule);
        let rule = execute(&self.engine, &caller, request_id.as_deref(), command).await?;
        Ok(Response::new(proto::CreateReceiptRuleResponse {
            rule: Some(receipt_rule_out(rule)),
        }))
    }

    async fn submit_receipt(
        &self,
        request: Request<proto::SubmitReceiptRequest>,
    ) -> Result<Response<proto::SubmitReceiptResponse>, Status> {
        let caller = caller_for(&self.engine, &request, Operation::SubmitReceipt).await?;
        let (request_id, command) = submit_receipt_in(request.into_inner())?;
        let result = execute(&self.engine, &caller, Some(&request_id), command).await?;
        Ok(Response::new(proto::SubmitReceiptResponse {
            result: Some(receipt_result_out(result)),
        }))
    }

    async fn review_receipt(
        &self,
        request: Request<proto::ReviewReceiptRequest>,
    ) -> Result<Response<proto::ReviewReceiptResponse>, Status> {
        let caller = caller_for(&self.engine, &request, Operation::ReviewReceipts).await?;
        let (request_id, command) = review_receipt_in(request.into_inner())?;
        let result = execute(&self.engine, &caller, Some(&request_id), command).await?;
        Ok(Response::new(proto::ReviewReceiptResponse {
            result: Some(receipt_result_out(result)),
        }))
    }

    async fn list_receipts(
        &self,
        request: Request<proto::ListReceiptsRequest>,
    ) -> Result<Response<proto::ListReceiptsResponse>, Status> {
        let operation = if lists_member_receipts(request.get_ref()) {
            Operation::ListMemberReceipts
        } else {
            Operation::ReviewReceipts
        };
        let caller = caller_for(&self.engine, &request, operation).await?;
        let (query, after, size) = list_receipts_in(request.into_inner())?;
        let page = self
            .engine
            .list_receipts(&caller, &query, after.as_ref(), size)
            .await?;
        Ok(Response::new(proto::ListReceiptsResponse {
            receipts: page.items.into_iter().map(receipt_record_out).collect(),
            next_page_token: next_page_token(page.next),
        }))
    }
}

// ---------------------------------------------------------------------------------------------
// Requests

/// CreateGeoRule: the idempotency key (if any) and the rule, with defaults filled in.
pub fn create_geo_rule_in(
    request: proto::CreateGeoRuleRequest,
) -> Result<(Option<String>, GeoRule), Status> {
    let mut v = Violations::new();
    let request_id = optional_request_id(&mut v, &request.request_id);
    let rule = geo_rule_in(v, request.rule)?;
    Ok((request_id, rule))
}

/// A geo rule; `v` holds what the rest of the request already found wrong.
fn geo_rule_in(mut v: Violations, rule: Option<proto::GeoRule>) -> Result<GeoRule, Status> {
    let Some(r) = rule else {
        v.push("rule", "is required");
        return Err(v.into_status());
    };
    check_optional_id(&mut v, "rule.rule_id", &r.rule_id);
    check_id(&mut v, "rule.campaign_id", &r.campaign_id);
    rule_store_ids(&mut v, &r.store_ids);
    let mut seconds = |field: &str, value: i32, max: i32| {
        let ok = (0..=max).contains(&value);
        if !ok {
            v.push(path("rule", field), format!("must be between 0 and {max}"));
        }
        ok.then_some(i64::from(value))
    };
    let min_dwell_seconds = seconds("min_dwell_seconds", r.min_dwell_seconds, MAX_DWELL_SECONDS);
    let cooldown_seconds = seconds("cooldown_seconds", r.cooldown_seconds, MAX_COOLDOWN_SECONDS);
    let daily_cap_per_store = seconds("daily_cap_per_store", r.daily_cap_per_store, i32::MAX);
    let max_accuracy_m = max_accuracy(&mut v, r.max_accuracy_m);
    let active_hours = active_hours(&mut v, &r.active_hours);
    let days_of_week = days_of_week(&mut v, &r.days_of_week);
    let (starts_at, ends_at) = period(&mut v, r.starts_at.as_ref(), r.ends_at.as_ref());
    v.build(|| {
        Some(GeoRule {
            rule_id: r.rule_id,
            campaign_id: r.campaign_id,
            store_ids: r.store_ids,
            min_dwell_seconds: min_dwell_seconds?,
            max_accuracy_m: max_accuracy_m?,
            active_hours: active_hours?,
            days_of_week: days_of_week?,
            cooldown_seconds: cooldown_seconds?,
            daily_cap_per_store: daily_cap_per_store?,
            starts_at: starts_at?,
            ends_at: ends_at?,
        })
    })
}

/// A rule's stores: at most 1,000 ids; empty = every store.
pub(super) fn rule_store_ids(v: &mut Violations, store_ids: &[String]) {
    if store_ids.len() > MAX_RULE_STORE_IDS {
        v.push(
            "rule.store_ids",
            format!("at most {MAX_RULE_STORE_IDS} stores"),
        );
        return;
    }
    for (i, store_id) in store_ids.iter().enumerate() {
        check_id(v, &format!("rule.store_ids[{i}]"), store_id);
    }
}

/// A rule's accuracy limit in metres: 0 means the default (100).
fn max_accuracy(v: &mut Violations, value: f64) -> Option<f64> {
    if !value.is_finite() || !(0.0..=MAX_RULE_ACCURACY_M).contains(&value) {
        v.push(
            "rule.max_accuracy_m",
            format!("must be a number between 0 and {MAX_RULE_ACCURACY_M}"),
        );
        None
    } else if value == 0.0 {
        Some(DEFAULT_MAX_ACCURACY_M)
    } else {
        Some(value)
    }
}

pub(super) fn active_hours(
    v: &mut Violations,
    windows: &[proto::ActiveHours],
) -> Option<Vec<HoursWindow>> {
    if windows.len() > MAX_ACTIVE_HOURS {
        v.push(
            "rule.active_hours",
            format!("at most {MAX_ACTIVE_HOURS} windows"),
        );
        return None;
    }
    let parsed: Vec<Option<HoursWindow>> = windows
        .iter()
        .enumerate()
        .map(|(i, window)| hours_window(v, &format!("rule.active_hours[{i}]"), window))
        .collect();
    parsed.into_iter().collect()
}

fn hours_window(
    v: &mut Violations,
    field: &str,
    window: &proto::ActiveHours,
) -> Option<HoursWindow> {
    let mut time = |name: &str, text: &str| {
        parse_time_of_day(text)
            .map_err(|error| v.push(path(field, name), error.to_string()))
            .ok()
    };
    let (start, end) = (time("start", &window.start), time("end", &window.end));
    HoursWindow::new(start?, end?)
        .map_err(|error| v.push(field, error.to_string()))
        .ok()
}

pub(super) fn days_of_week(v: &mut Violations, days: &[i32]) -> Option<DaysOfWeek> {
    if days.len() > 7 {
        v.push("rule.days_of_week", "at most 7 days");
        return None;
    }
    let mut ok = true;
    for (i, &day) in days.iter().enumerate() {
        if !(1..=7).contains(&day) {
            v.push(
                format!("rule.days_of_week[{i}]"),
                "must be a day of the week from 1 (Monday) to 7 (Sunday)",
            );
            ok = false;
        }
    }
    let numbers: Vec<i64> = days.iter().map(|&day| i64::from(day)).collect();
    ok.then(|| DaysOfWeek::parse(&numbers).ok()).flatten()
}

type Period = (Option<Option<DateTime<Utc>>>, Option<Option<DateTime<Utc>>>);

/// A rule's optional start and end; the end must come after the start.
pub(super) fn period(
    v: &mut Violations,
    starts_at: Option<&prost_types::Timestamp>,
    ends_at: Option<&prost_types::Timestamp>,
) -> Period {
    let starts_at = optional_instant(v, "rule.starts_at", starts_at);
    let ends_at = optional_instant(v, "rule.ends_at", ends_at);
    if let (Some(Some(start)), Some(Some(end))) = (starts_at, ends_at)
        && end <= start
    {
        v.push("rule.ends_at", "must be after starts_at");
    }
    (starts_at, ends_at)
}

/// ReportLocation: the idempotency key and the report.
pub fn report_location_in(
    request: proto::ReportLocationRequest,
) -> Result<(String, LocationReport), Status> {
    let mut v = Violations::new();
    check_request_id(&mut v, &request.request_id);
    let member = member_ref(&mut v, "member", request.member);
    let position = lat_lng(&mut v, "", position(request.latitude, request.longitude));
    let accuracy_m = accuracy(&mut v, request.accuracy_m);
    let observed_at = match request.observed_at {
        Some(ts) => instant(&mut v, "observed_at", &ts),
        None => {
            v.push("observed_at", "is required");
            None
        }
    };
    check_text(
        &mut v,
        "device_id",
        &request.device_id,
        0,
        MAX_DEVICE_ID_CHARS,
    );
    v.build(|| {
        Some((
            request.request_id,
            LocationReport {
                member: member?,
                position: position?,
                accuracy_m: accuracy_m?,
                observed_at: observed_at?,
                device_id: request.device_id,
            },
        ))
    })
}

fn position(latitude: f64, longitude: f64) -> proto::LatLng {
    proto::LatLng {
        latitude,
        longitude,
    }
}

/// A report's accuracy radius in metres: finite and not negative (a large one is a verdict,
/// not a bad request).
fn accuracy(v: &mut Violations, value: f64) -> Option<f64> {
    let ok = value.is_finite() && value >= 0.0;
    if !ok {
        v.push("accuracy_m", "must be a number of metres, 0 or more");
    }
    ok.then_some(value)
}

/// ListNearbyOffers: the query, with the default radius and page size filled in.
pub fn nearby_offers_in(request: proto::ListNearbyOffersRequest) -> Result<NearbyQuery, Status> {
    let mut v = Violations::new();
    let member = member_ref(&mut v, "member", request.member);
    let position = lat_lng(&mut v, "", position(request.latitude, request.longitude));
    let radius_m = nearby_radius(&mut v, request.radius_m);
    let page_size = match request.page_size {
        0 => Some(DEFAULT_NEARBY_PAGE_SIZE),
        size @ 1..=MAX_NEARBY_PAGE_SIZE => usize::try_from(size).ok(),
        _ => {
            v.push(
                "page_size",
                format!("must be between 0 and {MAX_NEARBY_PAGE_SIZE}"),
            );
            None
        }
    };
    v.build(|| {
        Some(NearbyQuery {
            member: member?,
            position: position?,
            radius_m: radius_m?,
            page_size: page_size?,
        })
    })
}

/// The search radius in metres: 0 means 1,000; at most 50,000.
fn nearby_radius(v: &mut Violations, value: f64) -> Option<f64> {
    if !value.is_finite() || !(0.0..=MAX_NEARBY_RADIUS_M).contains(&value) {
        v.push(
            "radius_m",
            format!("must be a number between 0 and {MAX_NEARBY_RADIUS_M}"),
        );
        None
    } else if value == 0.0 {
        Some(DEFAULT_NEARBY_RADIUS_M)
    } else {
        Some(value)
    }
}

/// CreateVisitRule: the idempotency key (if any) and the rule.
pub fn create_visit_rule_in(
    request: proto::CreateVisitRuleRequest,
) -> Result<(Option<String>, VisitRule), Status> {
    let mut v = Violations::new();
    let request_id = optional_request_id(&mut v, &request.request_id);
    let rule = visit_rule_in(v, request.rule)?;
    Ok((request_id, rule))
}

fn visit_rule_in(mut v: Violations, rule: Option<proto::VisitRule>) -> Result<VisitRule, Status> {
    let Some(r) = rule else {
        v.push("rule", "is required");
        return Err(v.into_status());
    };
    check_optional_id(&mut v, "rule.rule_id", &r.rule_id);
    check_id(&mut v, "rule.campaign_id", &r.campaign_id);
    rule_store_ids(&mut v, &r.store_ids);
    let kind = visit_rule_kind(&mut v, r.kind);
    // Each kind uses its own numbers; the other kind's must stay 0 so that a rule means one
    // thing.
    let (visits_range, window_range, lapsed_range) = match kind {
        Some(VisitRuleKind::NthVisit) => (1..=MAX_VISITS, 0..=MAX_VISIT_DAYS, 0..=0),
        Some(VisitRuleKind::Lapsed) => (0..=0, 0..=0, 1..=MAX_VISIT_DAYS),
        None => (0..=MAX_VISITS, 0..=MAX_VISIT_DAYS, 0..=MAX_VISIT_DAYS),
    };
    for (field, value, range) in [
        ("visits", r.visits, visits_range),
        ("window_days", r.window_days, window_range),
        ("lapsed_days", r.lapsed_days, lapsed_range),
    ] {
        if !range.contains(&value) {
            let (low, high) = (range.start(), range.end());
            let text = if low == high {
                format!("must be {low} for this kind")
            } else {
                format!("must be between {low} and {high}")
            };
            v.push(path("rule", field), text);
        }
    }
    v.build(|| {
        Some(VisitRule {
            rule_id: r.rule_id,
            campaign_id: r.campaign_id,
            kind: kind?,
            visits: i64::from(r.visits),
            window_days: i64::from(r.window_days),
            lapsed_days: i64::from(r.lapsed_days),
            store_ids: r.store_ids,
        })
    })
}

fn visit_rule_kind(v: &mut Violations, value: i32) -> Option<VisitRuleKind> {
    match proto::VisitRuleKind::try_from(value) {
        Ok(proto::VisitRuleKind::NthVisit) => Some(VisitRuleKind::NthVisit),
        Ok(proto::VisitRuleKind::Lapsed) => Some(VisitRuleKind::Lapsed),
        _ => {
            v.push(
                "rule.kind",
                "must be VISIT_RULE_KIND_NTH_VISIT or VISIT_RULE_KIND_LAPSED",
            );
            None
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Responses

pub fn geo_rule_out(rule: GeoRule) -> proto::GeoRule {
    let count = |value: i64| i32::try_from(value).unwrap_or(i32::MAX);
    proto::GeoRule {
        rule_id: rule.rule_id,
        campaign_id: rule.campaign_id,
        store_ids: rule.store_ids,
        min_dwell_seconds: count(rule.min_dwell_seconds),
        max_accuracy_m: rule.max_accuracy_m,
        active_hours: rule
            .active_hours
            .into_iter()
            .map(|window| proto::ActiveHours {
                start: format_time_of_day(window.start),
                end: format_time_of_day(window.end),
            })
            .collect(),
        days_of_week: rule
            .days_of_week
            .to_numbers()
            .into_iter()
            .map(count)
            .collect(),
        cooldown_seconds: count(rule.cooldown_seconds),
        daily_cap_per_store: count(rule.daily_cap_per_store),
        starts_at: optional_timestamp(rule.starts_at),
        ends_at: optional_timestamp(rule.ends_at),
    }
}

pub fn visit_rule_out(rule: VisitRule) -> proto::VisitRule {
    let count = |value: i64| i32::try_from(value).unwrap_or(i32::MAX);
    let kind = match rule.kind {
        VisitRuleKind::NthVisit => proto::VisitRuleKind::NthVisit,
        VisitRuleKind::Lapsed => proto::VisitRuleKind::Lapsed,
    };
    proto::VisitRule {
        rule_id: rule.rule_id,
        campaign_id: rule.campaign_id,
        kind: kind.into(),
        visits: count(rule.visits),
        window_days: count(rule.window_days),
        lapsed_days: count(rule.lapsed_days),
        store_ids: rule.store_ids,
    }
}

pub fn location_result_out(result: LocationResult) -> proto::LocationResult {
    let (verdict, reason) = verdict_out(result.verdict);
    proto::LocationResult {
        verdict,
        reason,
        inside_store_ids: result.inside_store_ids,
        coupons_issued: result.coupons_issued.into_iter().map(coupon_out).collect(),
        rule_outcomes: result
            .rule_outcomes
            .into_iter()
            .map(super::rule::rule_outcome_out)
            .collect(),
    }
}

pub fn nearby_offer_out(offer: NearbyOffer) -> proto::NearbyOffer {
    proto::NearbyOffer {
        store_id: offer.store_id,
        store_name: offer.store_name,
        distance_m: offer.distance_m,
        campaigns: offer
            .campaigns
            .into_iter()
            .map(|on_offer| proto::NearbyCampaign {
                campaign_id: on_offer.campaign.campaign_id,
                name: on_offer.campaign.name,
                discount: Some(discount_oneof(on_offer.campaign.discount)),
                rule_id: on_offer.rule_id,
                how: on_offer.how.as_str().to_string(),
            })
            .collect(),
    }
}

/// A verdict as `LocationResult.verdict` and `.reason`.
pub fn verdict_out(verdict: LocationVerdict) -> (i32, String) {
    match verdict {
        LocationVerdict::Accepted => (proto::LocationVerdict::Accepted.into(), String::new()),
        LocationVerdict::Rejected(reason) => (
            proto::LocationVerdict::Rejected.into(),
            reason.as_str().to_string(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use prost_types::Timestamp;

    use super::*;
    use crate::domain::{
        location::RejectReason,
        model::{LatLng, MemberRef},
    };
    use crate::grpc::status::violated_fields;

    fn member() -> Option<proto::MemberRef> {
        Some(proto::MemberRef {
            r#ref: Some(proto::member_ref::Ref::MemberId("m1".into())),
        })
    }

    fn report() -> proto::ReportLocationRequest {
        proto::ReportLocationRequest {
            request_id: "r1".into(),
            member: member(),
            latitude: 35.658034,
            longitude: 139.701636,
            accuracy_m: 15.0,
            observed_at: Some(Timestamp {
                seconds: 1_796_000_000,
                nanos: 0,
            }),
            device_id: "iphone-1".into(),
        }
    }

    fn geo_rule() -> proto::GeoRule {
        proto::GeoRule {
            rule_id: String::new(),
            campaign_id: "welcome".into(),
            store_ids: vec!["shibuya-1".into()],
            min_dwell_seconds: 300,
            max_accuracy_m: 0.0,
            active_hours: vec![proto::ActiveHours {
                start: "22:00".into(),
                end: "02:00".into(),
            }],
            days_of_week: vec![5, 6],
            cooldown_seconds: 86_400,
            daily_cap_per_store: 50,
            starts_at: None,
            ends_at: None,
        }
    }

    fn create_geo(rule: proto::GeoRule) -> Result<GeoRule, Status> {
        create_geo_rule_in(proto::CreateGeoRuleRequest {
            request_id: "g1".into(),
            rule: Some(rule),
        })
        .map(|(request_id, rule)| {
            assert_eq!(request_id.as_deref(), Some("g1"));
            rule
        })
    }

    fn nearby(latitude: f64, longitude: f64, radius_m: f64) -> proto::ListNearbyOffersRequest {
        proto::ListNearbyOffersRequest {
            member: member(),
            latitude,
            longitude,
            radius_m,
            page_size: 0,
        }
    }

    #[test]
    fn a_report_parses_into_the_domain() {
        let (request_id, parsed) = report_location_in(report()).expect("valid");
        assert_eq!(request_id, "r1");
        assert_eq!(parsed.member, MemberRef::Id("m1".into()));
        assert_eq!(
            parsed.position,
            LatLng {
                latitude: 35.658034,
                longitude: 139.701636
            }
        );
        assert_eq!(parsed.accuracy_m, 15.0);
        assert_eq!(parsed.observed_at.timestamp(), 1_796_000_000);
        assert_eq!(parsed.device_id, "iphone-1");
    }

    #[test]
    fn nan_and_out_of_range_coordinates_and_negative_accuracy_are_violations() {
        let mut bad = report();
        bad.latitude = f64::NAN;
        bad.longitude = -180.5;
        bad.accuracy_m = -1.0;
        let status = report_location_in(bad).expect_err("invalid");
        assert_eq!(status.code(), tonic::Code::InvalidArgument);
        assert_eq!(
            violated_fields(&status),
            ["latitude", "longitude", "accuracy_m"]
        );
        let mut bad = report();
        bad.latitude = 90.000001;
        bad.accuracy_m = f64::INFINITY;
        assert_eq!(
            violated_fields(&report_location_in(bad).expect_err("invalid")),
            ["latitude", "accuracy_m"]
        );
    }

    #[test]
    fn a_report_needs_its_request_id_member_and_time() {
        let bad = proto::ReportLocationRequest {
            device_id: "x".repeat(129),
            ..Default::default()
        };
        let status = report_location_in(bad).expect_err("invalid");
        assert_eq!(
            violated_fields(&status),
            ["request_id", "member", "observed_at", "device_id"]
        );
        let mut bad = report();
        bad.observed_at = Some(Timestamp {
            seconds: 0,
            nanos: -1,
        });
        assert_eq!(
            violated_fields(&report_location_in(bad).expect_err("invalid")),
            ["observed_at"]
        );
    }

    #[test]
    fn nearby_radius_is_at_most_50_km_and_defaults_to_1_km() {
        let query = nearby_offers_in(nearby(35.0, 139.0, 0.0)).expect("valid");
        assert_eq!(query.radius_m, 1_000.0);
        assert_eq!(query.page_size, 20);
        let query = nearby_offers_in(nearby(35.0, 139.0, 50_000.0)).expect("valid");
        assert_eq!(query.radius_m, 50_000.0);
        for radius_m in [50_000.1, -1.0, f64::NAN] {
            let status = nearby_offers_in(nearby(35.0, 139.0, radius_m)).expect_err("invalid");
            assert_eq!(violated_fields(&status), ["radius_m"], "{radius_m}");
        }
        let mut bad = nearby(f64::NAN, 200.0, 10.0);
        bad.page_size = 101;
        bad.member = None;
        assert_eq!(
            violated_fields(&nearby_offers_in(bad).expect_err("invalid")),
            ["member", "latitude", "longitude", "page_size"]
        );
    }

    #[test]
    fn a_geo_rule_parses_with_defaults_and_round_trips() {
        let parsed = create_geo(geo_rule()).expect("valid");
        assert_eq!(parsed.max_accuracy_m, 100.0);
        assert_eq!(parsed.min_dwell_seconds, 300);
        assert!(parsed.active_hours[0].crosses_midnight());
        assert_eq!(parsed.days_of_week.to_numbers(), [5, 6]);
        let mut expected = geo_rule();
        expected.max_accuracy_m = 100.0;
        assert_eq!(geo_rule_out(parsed), expected);
    }

    #[test]
    fn bad_hours_days_and_limits_are_violations_with_their_paths() {
        let mut bad = geo_rule();
        bad.campaign_id = String::new();
        bad.store_ids = vec!["no spaces".into()];
        bad.min_dwell_seconds = -1;
        bad.max_accuracy_m = f64::NAN;
        bad.active_hours = vec![
            proto::ActiveHours {
                start: "25:00".into(),
                end: "9:00".into(),
            },
            proto::ActiveHours {
                start: "10:00".into(),
                end: "10:00".into(),
            },
        ];
        bad.days_of_week = vec![0, 3, 8];
        bad.cooldown_seconds = -5;
        bad.starts_at = Some(Timestamp {
            seconds: 2_000,
            nanos: 0,
        });
        bad.ends_at = Some(Timestamp {
            seconds: 1_000,
            nanos: 0,
        });
        let status = create_geo(bad).expect_err("invalid");
        assert_eq!(
            violated_fields(&status),
            [
                "rule.campaign_id",
                "rule.store_ids[0]",
                "rule.min_dwell_seconds",
                "rule.cooldown_seconds",
                "rule.max_accuracy_m",
                "rule.active_hours[0].start",
                "rule.active_hours[0].end",
                "rule.active_hours[1]",
                "rule.days_of_week[0]",
                "rule.days_of_week[2]",
                "rule.ends_at",
            ]
        );
    }

    #[test]
    fn a_missing_rule_is_a_violation() {
        let status = create_geo_rule_in(proto::CreateGeoRuleRequest {
            request_id: String::new(),
            rule: None,
        })
        .expect_err("invalid");
        assert_eq!(violated_fields(&status), ["rule"]);
        let too_many_windows = proto::GeoRule {
            active_hours: vec![proto::ActiveHours::default(); 25],
            days_of_week: vec![1; 8],
            ..geo_rule()
        };
        assert_eq!(
            violated_fields(&create_geo(too_many_windows).expect_err("invalid")),
            ["rule.active_hours", "rule.days_of_week"]
        );
    }

    fn visit_rule(
        kind: proto::VisitRuleKind,
        visits: i32,
        window: i32,
        lapsed: i32,
    ) -> proto::VisitRule {
        proto::VisitRule {
            rule_id: "fifth".into(),
            campaign_id: "thanks".into(),
            kind: kind.into(),
            visits,
            window_days: window,
            lapsed_days: lapsed,
            store_ids: vec![],
        }
    }

    fn create_visit(rule: proto::VisitRule) -> Result<VisitRule, Status> {
        create_visit_rule_in(proto::CreateVisitRuleRequest {
            request_id: String::new(),
            rule: Some(rule),
        })
        .map(|(request_id, rule)| {
            assert_eq!(request_id, None);
            rule
        })
    }

    #[test]
    fn visit_rules_parse_per_kind_and_round_trip() {
        let nth = visit_rule(proto::VisitRuleKind::NthVisit, 5, 30, 0);
        let parsed = create_visit(nth.clone()).expect("valid");
        assert_eq!(parsed.kind, VisitRuleKind::NthVisit);
        assert_eq!((parsed.visits, parsed.window_days), (5, 30));
        assert_eq!(visit_rule_out(parsed), nth);
        let lapsed = visit_rule(proto::VisitRuleKind::Lapsed, 0, 0, 60);
        assert_eq!(create_visit(lapsed).expect("valid").lapsed_days, 60);
    }

    #[test]
    fn visit_rule_numbers_must_fit_their_kind() {
        let fields = |rule| violated_fields(&create_visit(rule).expect_err("invalid"));
        assert_eq!(
            fields(visit_rule(proto::VisitRuleKind::NthVisit, 0, -1, 7)),
            ["rule.visits", "rule.window_days", "rule.lapsed_days"]
        );
        assert_eq!(
            fields(visit_rule(proto::VisitRuleKind::Lapsed, 3, 30, 0)),
            ["rule.visits", "rule.window_days", "rule.lapsed_days"]
        );
        assert_eq!(
            fields(visit_rule(proto::VisitRuleKind::Unspecified, 1, 0, 0)),
            ["rule.kind"]
        );
        let mut unknown = visit_rule(proto::VisitRuleKind::NthVisit, 1, 0, 0);
        unknown.kind = 99;
        assert_eq!(fields(unknown), ["rule.kind"]);
    }

    #[test]
    fn verdicts_have_the_api_spelling() {
        assert_eq!(
            verdict_out(LocationVerdict::Accepted),
            (proto::LocationVerdict::Accepted.into(), String::new())
        );
        assert_eq!(
            verdict_out(LocationVerdict::Rejected(RejectReason::Speed)),
            (proto::LocationVerdict::Rejected.into(), "SPEED".to_string())
        );
    }
}
