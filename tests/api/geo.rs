//! Geo-coupons and visits through the real server: fences (radius and polygon), entry and
//! dwell, local hours in other zones, cooldowns and daily caps, anti-spoofing verdicts, two
//! devices at once, nearby offers, NTH_VISIT and LAPSED rules. Time only moves with the
//! manual clock.

use chrono::{DateTime, Duration, Utc};
use omo::{
    domain::Clock,
    proto::{self, campaign::Discount},
};
use tonic::{Code, Status};

use crate::helpers::{TestApp, assert_refused, member_ref, store_sale, violated_fields};

crate::both_backends! {
    entry_issues_once_per_visit => entry_issues_once_per_visit,
    dwell_issues_when_reached => dwell_issues_when_reached,
    radius_edge_and_polygon_fences => radius_edge_and_polygon_fences,
    hours_across_midnight_in_the_store_zone => hours_across_midnight_in_the_store_zone,
    cooldown_per_member_and_store => cooldown_per_member_and_store,
    daily_cap_per_store => daily_cap_per_store,
    anti_spoofing_verdicts_and_bad_coordinates => anti_spoofing_verdicts_and_bad_coordinates,
    two_devices_at_once_get_one_coupon => two_devices_at_once_get_one_coupon,
    nearby_offers_nearest_first => nearby_offers_nearest_first,
    nth_visit_counts_a_sale_and_a_dwell_as_one_visit => nth_visit_counts_a_sale_and_a_dwell_as_one_visit,
    lapsed_after_the_clock_moves => lapsed_after_the_clock_moves,
    roles_and_rule_references => roles_and_rule_references,
    geo_rules_are_rules_of_the_one_engine => geo_rules_are_rules_of_the_one_engine,
    a_geo_rule_for_a_tier_fires_for_its_members_only => a_geo_rule_for_a_tier_fires_for_its_members_only,
}

/// Ginza, 100 m fence, far enough from the helpers' Shibuya stores.
const GINZA: (f64, f64) = (35.6717, 139.7650);
/// Metres per degree of latitude around 35.7° N (WGS84).
const M_PER_DEG_LAT: f64 = 110_960.0;

fn north_of(point: (f64, f64), metres: f64) -> (f64, f64) {
    (point.0 + metres / M_PER_DEG_LAT, point.1)
}

async fn store(app: &TestApp, store_id: &str, at: (f64, f64), time_zone: &str) {
    store_with(app, store_id, at, time_zone, Vec::new()).await;
}

async fn store_with(
    app: &TestApp,
    store_id: &str,
    at: (f64, f64),
    time_zone: &str,
    polygon: Vec<(f64, f64)>,
) {
    let lat_lng = |(latitude, longitude): (f64, f64)| proto::LatLng {
        latitude,
        longitude,
    };
    app.admin
        .stores()
        .create_store(proto::CreateStoreRequest {
            request_id: String::new(),
            store: Some(proto::Store {
                store_id: store_id.into(),
                name: format!("Store {store_id}"),
                location: Some(lat_lng(at)),
                time_zone: time_zone.into(),
                geofence_radius_m: 100.0,
                geofence_polygon: polygon.into_iter().map(lat_lng).collect(),
            }),
        })
        .await
        .expect("create store");
}

async fn campaign(app: &TestApp, campaign_id: &str, store_ids: &[&str]) {
    app.admin
        .coupons()
        .create_campaign(proto::CreateCampaignRequest {
            request_id: String::new(),
            campaign: Some(proto::Campaign {
                campaign_id: campaign_id.into(),
                name: format!("campaign {campaign_id}"),
                discount: Some(Discount::AmountOff("300".into())),
                store_ids: store_ids.iter().map(|id| id.to_string()).collect(),
                stackable: true,
                ..Default::default()
            }),
        })
        .await
        .expect("create campaign");
}

/// A geo rule of `campaign_id` at `store_id`, issuing on entry, all day, no limits.
fn rule(rule_id: &str, campaign_id: &str, store_id: &str) -> proto::GeoRule {
    proto::GeoRule {
        rule_id: rule_id.into(),
        campaign_id: campaign_id.into(),
        store_ids: vec![store_id.into()],
        ..Default::default()
    }
}

async fn create_rule(app: &TestApp, rule: proto::GeoRule) -> proto::GeoRule {
    app.admin
        .engagement()
        .create_geo_rule(proto::CreateGeoRuleRequest {
            request_id: format!("rule-{}", rule.rule_id),
            rule: Some(rule),
        })
        .await
        .expect("create geo rule")
        .into_inner()
        .rule
        .expect("rule")
}

async fn member(app: &TestApp, card: &str) -> String {
    app.create_member(card).await
}

fn now(app: &TestApp) -> DateTime<Utc> {
    app.clock.now()
}

fn report_at(
    request_id: &str,
    member_id: &str,
    at: (f64, f64),
    accuracy_m: f64,
    observed_at: DateTime<Utc>,
) -> proto::ReportLocationRequest {
    proto::ReportLocationRequest {
        request_id: request_id.into(),
        member: Some(member_ref(member_id)),
        latitude: at.0,
        longitude: at.1,
        accuracy_m,
        observed_at: Some(prost_types::Timestamp {
            seconds: observed_at.timestamp(),
            nanos: i32::try_from(observed_at.timestamp_subsec_nanos()).expect("nanos"),
        }),
        device_id: "phone-1".into(),
    }
}

async fn send(
    app: &TestApp,
    request: proto::ReportLocationRequest,
) -> Result<proto::LocationResult, Status> {
    let response = app.app_client.engagement().report_location(request).await?;
    Ok(response.into_inner().result.expect("result"))
}

/// An accurate report observed now.
async fn report(
    app: &TestApp,
    request_id: &str,
    member_id: &str,
    at: (f64, f64),
) -> proto::LocationResult {
    send(app, report_at(request_id, member_id, at, 10.0, now(app)))
        .await
        .expect("report")
}

fn accepted(result: &proto::LocationResult) -> bool {
    result.verdict == proto::LocationVerdict::Accepted as i32
}

fn sources(result: &proto::LocationResult) -> Vec<String> {
    let sources = result.coupons_issued.iter().map(|c| c.source.clone());
    sources.collect()
}

async fn coupons_of(app: &TestApp, member_id: &str) -> Vec<proto::Coupon> {
    app.admin
        .coupons()
        .list_coupons(proto::ListCouponsRequest {
            member: Some(member_ref(member_id)),
            include_inactive: true,
            page_size: 100,
            page_token: String::new(),
        })
        .await
        .expect("list coupons")
        .into_inner()
        .coupons
}

async fn entry_issues_once_per_visit(app: &TestApp) {
    store(app, "ginza", GINZA, "Asia/Tokyo").await;
    campaign(app, "hello", &[]).await;
    create_rule(app, rule("entry", "hello", "ginza")).await;
    let member_id = member(app, "G-1").await;

    // Observed to the nanosecond (phones do); the databases keep microseconds.
    let observed_at = now(app) + Duration::nanoseconds(123_456_789);
    let first = send(app, report_at("r1", &member_id, GINZA, 10.0, observed_at))
        .await
        .expect("report");
    assert!(accepted(&first));
    assert_eq!(first.inside_store_ids, ["ginza"]);
    assert_eq!(sources(&first), ["geo:entry"]);
    // A retry gets the same answer; a later report of the same visit issues nothing.
    let retried = send(app, report_at("r1", &member_id, GINZA, 10.0, observed_at))
        .await
        .expect("retry");
    assert_eq!(retried, first);
    app.clock.advance(Duration::minutes(1));
    let again = report(app, "r2", &member_id, GINZA).await;
    assert!(accepted(&again) && again.coupons_issued.is_empty());
    assert_eq!(coupons_of(app, &member_id).await.len(), 1);
    // The coupon is in the ledger and usable at the register like any other.
    let balance = app.balance(&member_id).await;
    assert_eq!(balance.available_points, 0);
    app.verify_ok().await;
}

async fn dwell_issues_when_reached(app: &TestApp) {
    store(app, "ginza", GINZA, "Asia/Tokyo").await;
    campaign(app, "stay", &[]).await;
    let dwell = proto::GeoRule {
        min_dwell_seconds: 300,
        ..rule("dwell", "stay", "ginza")
    };
    create_rule(app, dwell).await;
    let member_id = member(app, "G-2").await;

    let entered = report(app, "d1", &member_id, GINZA).await;
    assert!(entered.coupons_issued.is_empty(), "no coupon on entry");
    app.clock.advance(Duration::seconds(200));
    let staying = report(app, "d2", &member_id, GINZA).await;
    assert!(staying.coupons_issued.is_empty(), "200 s is not 300 s");
    app.clock.advance(Duration::seconds(100));
    let dwelled = report(app, "d3", &member_id, GINZA).await;
    assert_eq!(sources(&dwelled), ["geo:dwell"]);
    // A gap over 15 minutes starts a new visit: its dwell counts from zero again.
    app.clock.advance(Duration::minutes(16));
    let back = report(app, "d4", &member_id, GINZA).await;
    assert!(back.coupons_issued.is_empty());
    app.verify_ok().await;
}

async fn radius_edge_and_polygon_fences(app: &TestApp) {
    store(app, "ginza", GINZA, "Asia/Tokyo").await;
    // A 200 m × 200 m square around a point 3 km east; its location is a corner-free centre.
    let centre = (35.6717, 139.7980);
    let d_lat = 100.0 / M_PER_DEG_LAT;
    let d_lon = 100.0 / (M_PER_DEG_LAT * 0.8124);
    let square = vec![
        (centre.0 - d_lat, centre.1 - d_lon),
        (centre.0 - d_lat, centre.1 + d_lon),
        (centre.0 + d_lat, centre.1 + d_lon),
        (centre.0 + d_lat, centre.1 - d_lon),
    ];
    store_with(app, "square", centre, "Asia/Tokyo", square).await;
    let member_id = member(app, "G-3").await;

    let inside = report(app, "f1", &member_id, north_of(GINZA, 95.0)).await;
    assert_eq!(inside.inside_store_ids, ["ginza"], "95 m from the centre");
    app.clock.advance(Duration::minutes(1));
    let outside = report(app, "f2", &member_id, north_of(GINZA, 105.0)).await;
    assert!(accepted(&outside));
    assert!(outside.inside_store_ids.is_empty(), "105 m from the centre");

    // The square's corner region: 130 m from the centre diagonally, inside the polygon (a
    // radius fence of 100 m would say outside); just past its north edge, outside.
    app.clock.advance(Duration::minutes(5));
    let corner = (centre.0 + 0.9 * d_lat, centre.1 + 0.9 * d_lon);
    let in_corner = report(app, "f3", &member_id, corner).await;
    assert_eq!(in_corner.inside_store_ids, ["square"]);
    app.clock.advance(Duration::minutes(1));
    let past_edge = report(app, "f4", &member_id, north_of(centre, 110.0)).await;
    assert!(past_edge.inside_store_ids.is_empty());
}

async fn hours_across_midnight_in_the_store_zone(app: &TestApp) {
    // The clock starts at 03:00 UTC: 23:00 on Tuesday in New York, noon in Tokyo.
    let times_square = (40.7580, -73.9855);
    store(app, "nyc", times_square, "America/New_York").await;
    store(app, "ginza", GINZA, "Asia/Tokyo").await;
    campaign(app, "late", &[]).await;
    let late = |rule_id: &str, store_id: &str| proto::GeoRule {
        active_hours: vec![proto::ActiveHours {
            start: "22:00".into(),
            end: "02:00".into(),
        }],
        ..rule(rule_id, "late", store_id)
    };
    create_rule(app, late("late-nyc", "nyc")).await;
    create_rule(app, late("late-tokyo", "ginza")).await;

    let new_yorker = member(app, "G-4").await;
    let at_night = report(app, "h1", &new_yorker, times_square).await;
    assert_eq!(sources(&at_night), ["geo:late-nyc"], "23:00 in New York");
    let tokyoite = member(app, "G-5").await;
    let at_noon = report(app, "h2", &tokyoite, GINZA).await;
    assert_eq!(at_noon.inside_store_ids, ["ginza"]);
    assert!(at_noon.coupons_issued.is_empty(), "noon in Tokyo");
    // The reply says why.
    let why: Vec<(&str, &str, &str)> = at_noon
        .rule_outcomes
        .iter()
        .map(|o| (o.rule_id.as_str(), o.store_id.as_str(), o.reason.as_str()))
        .collect();
    assert_eq!(why, [("late-tokyo", "ginza", "OUTSIDE_HOURS")]);

    // 01:30 in New York (past midnight, still inside the window); then 02:30, outside.
    app.advance(Duration::minutes(150)).await;
    let night_owl = member(app, "G-6").await;
    let after_midnight = report(app, "h3", &night_owl, times_square).await;
    assert_eq!(sources(&after_midnight), ["geo:late-nyc"]);
    app.advance(Duration::hours(1)).await;
    let early_bird = member(app, "G-7").await;
    let too_late = report(app, "h4", &early_bird, times_square).await;
    assert!(too_late.coupons_issued.is_empty(), "02:30 in New York");
}

async fn cooldown_per_member_and_store(app: &TestApp) {
    store(app, "ginza", GINZA, "Asia/Tokyo").await;
    campaign(app, "again", &[]).await;
    let cooling = proto::GeoRule {
        cooldown_seconds: 3600,
        ..rule("cool", "again", "ginza")
    };
    create_rule(app, cooling).await;
    let member_id = member(app, "G-8").await;
    let away = north_of(GINZA, 400.0);

    assert_eq!(
        report(app, "c1", &member_id, GINZA)
            .await
            .coupons_issued
            .len(),
        1
    );
    app.clock.advance(Duration::minutes(5));
    report(app, "c2", &member_id, away).await;
    app.clock.advance(Duration::minutes(5));
    let soon = report(app, "c3", &member_id, GINZA).await;
    assert!(
        soon.coupons_issued.is_empty(),
        "a new visit within the cooldown"
    );
    app.clock.advance(Duration::minutes(5));
    report(app, "c4", &member_id, away).await;
    app.clock.advance(Duration::minutes(50));
    let later = report(app, "c5", &member_id, GINZA).await;
    assert_eq!(sources(&later), ["geo:cool"], "an hour after the first");
    app.verify_ok().await;
}

async fn daily_cap_per_store(app: &TestApp) {
    store(app, "ginza", GINZA, "Asia/Tokyo").await;
    campaign(app, "few", &[]).await;
    let capped = proto::GeoRule {
        daily_cap_per_store: 2,
        ..rule("cap", "few", "ginza")
    };
    create_rule(app, capped).await;
    let mut issued = Vec::new();
    for n in 0..3 {
        let member_id = member(app, &format!("CAP-{n}")).await;
        let result = report(app, &format!("cap-{n}"), &member_id, GINZA).await;
        issued.push(result.coupons_issued.len());
    }
    assert_eq!(issued, [1, 1, 0], "two a day at the store");
    // The next local day (Tokyo) has a fresh cap.
    app.advance(Duration::days(1)).await;
    let member_id = member(app, "CAP-next").await;
    let next_day = report(app, "cap-next", &member_id, GINZA).await;
    assert_eq!(next_day.coupons_issued.len(), 1);
}

async fn anti_spoofing_verdicts_and_bad_coordinates(app: &TestApp) {
    store(app, "ginza", GINZA, "Asia/Tokyo").await;
    campaign(app, "spoof", &[]).await;
    create_rule(app, rule("spoof", "spoof", "ginza")).await;
    let member_id = member(app, "G-9").await;
    let t = now(app);
    let rejected = |result: &proto::LocationResult| {
        assert_eq!(result.verdict, proto::LocationVerdict::Rejected as i32);
        assert!(result.coupons_issued.is_empty() && result.inside_store_ids.is_empty());
        result.reason.clone()
    };

    let imprecise = send(app, report_at("s1", &member_id, GINZA, 150.0, t)).await;
    assert_eq!(rejected(&imprecise.expect("report")), "ACCURACY");
    let old = t - Duration::minutes(61);
    let stale = send(app, report_at("s2", &member_id, GINZA, 10.0, old)).await;
    assert_eq!(rejected(&stale.expect("report")), "STALE");
    let ahead = t + Duration::minutes(6);
    let future = send(app, report_at("s3", &member_id, GINZA, 10.0, ahead)).await;
    assert_eq!(rejected(&future.expect("report")), "FUTURE");
    // Accepted in Osaka, then in Ginza a minute later (400 km): impossible.
    let osaka = (34.7025, 135.4959);
    assert!(accepted(&report(app, "s4", &member_id, osaka).await));
    app.clock.advance(Duration::minutes(1));
    let teleported = report(app, "s5", &member_id, GINZA).await;
    assert_eq!(rejected(&teleported), "SPEED");
    assert!(
        coupons_of(app, &member_id).await.is_empty(),
        "rejected reports count for nothing"
    );

    let mut bad = report_at("s6", &member_id, (91.0, f64::NAN), 10.0, t);
    bad.accuracy_m = -1.0;
    let status = send(app, bad).await.expect_err("bad coordinates");
    assert_eq!(
        violated_fields(&status),
        ["latitude", "longitude", "accuracy_m"]
    );
}

async fn two_devices_at_once_get_one_coupon(app: &TestApp) {
    store(app, "ginza", GINZA, "Asia/Tokyo").await;
    campaign(app, "once", &[]).await;
    create_rule(app, rule("once", "once", "ginza")).await;
    let member_id = member(app, "G-10").await;
    let t = now(app);
    let mut second = report_at("dev-b", &member_id, north_of(GINZA, 5.0), 10.0, t);
    second.device_id = "tablet".into();
    let (a, b) = tokio::join!(
        send(app, report_at("dev-a", &member_id, GINZA, 10.0, t)),
        send(app, second),
    );
    let issued = a.expect("a").coupons_issued.len() + b.expect("b").coupons_issued.len();
    assert_eq!(issued, 1);
    assert_eq!(coupons_of(app, &member_id).await.len(), 1);
    app.verify_ok().await;
}

async fn nearby_offers_nearest_first(app: &TestApp) {
    // Yurakucho; Ginza about 400 m from it; Shinagawa about 5.6 km away.
    let yurakucho = (35.6750, 139.7630);
    let shinagawa = (35.6285, 139.7387);
    store(app, "ginza", GINZA, "Asia/Tokyo").await;
    store(app, "yurakucho", yurakucho, "Asia/Tokyo").await;
    store(app, "shinagawa", shinagawa, "Asia/Tokyo").await;
    campaign(app, "walk-in", &[]).await;
    campaign(app, "linger", &[]).await;
    campaign(app, "ginza-only", &["ginza"]).await;
    create_rule(app, rule("walk-in", "walk-in", "ginza")).await;
    let cooling = proto::GeoRule {
        cooldown_seconds: 86_400,
        ..rule("walk-in-2", "walk-in", "yurakucho")
    };
    create_rule(app, cooling).await;
    let linger = proto::GeoRule {
        min_dwell_seconds: 600,
        ..rule("linger", "linger", "shinagawa")
    };
    create_rule(app, linger).await;
    let member_id = member(app, "G-11").await;

    let query = |radius_m: f64| proto::ListNearbyOffersRequest {
        member: Some(member_ref(&member_id)),
        latitude: yurakucho.0,
        longitude: yurakucho.1,
        radius_m,
        page_size: 10,
    };
    let offers = app
        .app_client
        .engagement()
        .list_nearby_offers(query(2_000.0))
        .await
        .expect("nearby")
        .into_inner()
        .offers;
    let stores: Vec<&str> = offers.iter().map(|o| o.store_id.as_str()).collect();
    assert_eq!(
        stores,
        ["yurakucho", "ginza"],
        "nearest first, Shinagawa too far"
    );
    assert_eq!(offers[0].distance_m, 0.0);
    assert!(
        (300.0..500.0).contains(&offers[1].distance_m),
        "{}",
        offers[1].distance_m
    );
    let ginza: Vec<(&str, &str, &str)> = offers[1]
        .campaigns
        .iter()
        .map(|c| (c.campaign_id.as_str(), c.rule_id.as_str(), c.how.as_str()))
        .collect();
    assert_eq!(
        ginza,
        [
            ("walk-in", "walk-in", "GEO_ENTRY"),
            ("ginza-only", "", "IN_STORE")
        ]
    );
    assert_eq!(offers[1].store_name, "Store ginza");
    assert!(offers[1].campaigns[0].discount.is_some());

    // Once the member has Yurakucho's coupon, its cooldown hides it there for a day.
    report(app, "n1", &member_id, yurakucho).await;
    let offers = app
        .app_client
        .engagement()
        .list_nearby_offers(query(10_000.0))
        .await
        .expect("nearby")
        .into_inner()
        .offers;
    let stores: Vec<&str> = offers.iter().map(|o| o.store_id.as_str()).collect();
    assert_eq!(stores, ["ginza", "shinagawa"]);
    assert_eq!(offers[1].campaigns[0].how, "GEO_DWELL");
}

async fn visit_rule(app: &TestApp, rule: proto::VisitRule) {
    app.admin
        .engagement()
        .create_visit_rule(proto::CreateVisitRuleRequest {
            request_id: format!("visit-rule-{}", rule.rule_id),
            rule: Some(rule),
        })
        .await
        .expect("create visit rule");
}

fn visit_sources(coupons: &[proto::Coupon]) -> Vec<&str> {
    coupons.iter().map(|c| c.source.as_str()).collect()
}

async fn nth_visit_counts_a_sale_and_a_dwell_as_one_visit(app: &TestApp) {
    campaign(app, "regular", &[]).await;
    visit_rule(
        app,
        proto::VisitRule {
            rule_id: "second".into(),
            campaign_id: "regular".into(),
            kind: proto::VisitRuleKind::NthVisit as i32,
            visits: 2,
            window_days: 30,
            store_ids: vec!["shibuya".into()],
            ..Default::default()
        },
    )
    .await;
    let member_id = member(app, "V-1").await;
    let shibuya = (35.66, 139.70);

    // Day 1: a register sale and a 5-minute dwell at the same store: one visit.
    app.record_sale(store_sale(
        "v-s1",
        "0001",
        member_ref(&member_id),
        "1000",
        0,
    ))
    .await
    .expect("sale");
    report(app, "v-r1", &member_id, shibuya).await;
    app.clock.advance(Duration::minutes(5));
    let dwelled = report(app, "v-r2", &member_id, shibuya).await;
    assert!(dwelled.coupons_issued.is_empty(), "still the first visit");
    assert!(coupons_of(app, &member_id).await.is_empty());

    // Day 2: a dwell is the second visit.
    app.advance(Duration::days(1)).await;
    report(app, "v-r3", &member_id, shibuya).await;
    app.clock.advance(Duration::minutes(6));
    let second = report(app, "v-r4", &member_id, shibuya).await;
    assert_eq!(sources(&second), ["visit:second"]);
    // Day 3: a sale is a first visit again for the next coupon.
    app.advance(Duration::days(1)).await;
    app.record_sale(store_sale(
        "v-s2",
        "0002",
        member_ref(&member_id),
        "1000",
        0,
    ))
    .await
    .expect("sale");
    assert_eq!(coupons_of(app, &member_id).await.len(), 1);
    app.verify_ok().await;
}

async fn lapsed_after_the_clock_moves(app: &TestApp) {
    campaign(app, "come-back", &[]).await;
    visit_rule(
        app,
        proto::VisitRule {
            rule_id: "lapsed".into(),
            campaign_id: "come-back".into(),
            kind: proto::VisitRuleKind::Lapsed as i32,
            lapsed_days: 7,
            ..Default::default()
        },
    )
    .await;
    let member_id = member(app, "V-2").await;
    let never = member(app, "V-3").await;
    app.record_sale(store_sale(
        "l-s1",
        "0001",
        member_ref(&member_id),
        "1000",
        0,
    ))
    .await
    .expect("sale");

    app.advance(Duration::days(6)).await;
    assert!(
        coupons_of(app, &member_id).await.is_empty(),
        "6 days is not 7"
    );
    app.advance(Duration::days(1)).await;
    let coupons = coupons_of(app, &member_id).await;
    assert_eq!(visit_sources(&coupons), ["visit:lapsed"]);
    // One coupon per lapse, however many days pass; none for a member who never came.
    app.advance(Duration::days(3)).await;
    assert_eq!(coupons_of(app, &member_id).await.len(), 1);
    assert!(coupons_of(app, &never).await.is_empty());
    // Another visit and another lapse: another coupon.
    app.record_sale(store_sale(
        "l-s2",
        "0002",
        member_ref(&member_id),
        "1000",
        0,
    ))
    .await
    .expect("sale");
    app.advance(Duration::days(8)).await;
    assert_eq!(coupons_of(app, &member_id).await.len(), 2);
    app.verify_ok().await;
}

async fn roles_and_rule_references(app: &TestApp) {
    store(app, "ginza", GINZA, "Asia/Tokyo").await;
    campaign(app, "roles", &[]).await;
    let member_id = member(app, "G-12").await;
    let denied = app
        .app_client
        .engagement()
        .create_geo_rule(proto::CreateGeoRuleRequest {
            request_id: "app-rule".into(),
            rule: Some(rule("r", "roles", "ginza")),
        })
        .await
        .expect_err("app may not create rules");
    assert_eq!(denied.code(), Code::PermissionDenied);
    let request = report_at("reg", &member_id, GINZA, 10.0, now(app));
    let denied = app
        .register
        .engagement()
        .report_location(request)
        .await
        .expect_err("a register may not report locations");
    assert_eq!(denied.code(), Code::PermissionDenied);

    let missing = |campaign_id: &str, store_id: &str| proto::CreateGeoRuleRequest {
        request_id: format!("missing-{campaign_id}-{store_id}"),
        rule: Some(rule("", campaign_id, store_id)),
    };
    let engagement = app.admin.engagement();
    let status = engagement
        .clone()
        .create_geo_rule(missing("nope", "ginza"))
        .await
        .expect_err("unknown campaign");
    assert_refused(&status, Code::NotFound, "CAMPAIGN_NOT_FOUND");
    let status = engagement
        .clone()
        .create_geo_rule(missing("roles", "nowhere"))
        .await
        .expect_err("unknown store");
    assert_refused(&status, Code::NotFound, "STORE_NOT_FOUND");
    let created = create_rule(app, rule("", "roles", "ginza")).await;
    assert!(created.rule_id.starts_with("geo_"), "{}", created.rule_id);
    assert_eq!(created.max_accuracy_m, 100.0);
    let twice = proto::CreateGeoRuleRequest {
        request_id: "dup".into(),
        rule: Some(rule(&created.rule_id, "roles", "ginza")),
    };
    let status = engagement
        .clone()
        .create_geo_rule(twice)
        .await
        .expect_err("taken id");
    assert_refused(&status, Code::AlreadyExists, "RULE_EXISTS");
}

/// A geo rule made by CreateGeoRule is a rule like any other: GetRule shows it, UpdateRule
/// changes its conditions, effects and limits (bonus points and a per-member limit, which the
/// EngagementService's rule had not), switches it off, and SimulateRules and GetRuleStats
/// know it. Its verdict on each report comes back with the report.
async fn geo_rules_are_rules_of_the_one_engine(app: &TestApp) {
    store(app, "ginza", GINZA, "Asia/Tokyo").await;
    campaign(app, "hello", &[]).await;
    // Noon in Tokyo: outside 13:00-20:00.
    let afternoon = proto::GeoRule {
        active_hours: vec![proto::ActiveHours {
            start: "13:00".into(),
            end: "20:00".into(),
        }],
        ..rule("entry", "hello", "ginza")
    };
    create_rule(app, afternoon).await;
    let rules = app.admin.rules();
    let stored = rules
        .clone()
        .get_rule(proto::GetRuleRequest {
            rule_id: "entry".into(),
        })
        .await
        .expect("get rule")
        .into_inner()
        .rule
        .expect("rule");
    assert_eq!(stored.trigger, proto::RuleTrigger::Geo as i32);
    assert_eq!(stored.geo.as_ref().map(|g| g.min_dwell_seconds), Some(0));
    assert_eq!(stored.effects.as_ref().unwrap().campaign_id, "hello");

    let early = member(app, "G-40").await;
    let refused = report(app, "e1", &early, GINZA).await;
    assert!(refused.coupons_issued.is_empty());
    assert_eq!(refused.rule_outcomes.len(), 1);
    assert!(!refused.rule_outcomes[0].fired);
    assert_eq!(refused.rule_outcomes[0].reason, "OUTSIDE_HOURS");

    let update = |request_id: &str, rule: proto::Rule, paths: &[&str]| {
        let mut rules = app.admin.rules();
        let request = proto::UpdateRuleRequest {
            request_id: request_id.into(),
            rule: Some(rule),
            update_mask: Some(prost_types::FieldMask {
                paths: paths.iter().map(|p| p.to_string()).collect(),
            }),
        };
        async move { rules.update_rule(request).await }
    };
    let changed = proto::Rule {
        rule_id: "entry".into(),
        conditions: Some(proto::RuleConditions {
            store_ids: vec!["ginza".into()],
            ..Default::default()
        }),
        effects: Some(proto::RuleEffects {
            bonus_points: 50,
            campaign_id: "hello".into(),
            ..Default::default()
        }),
        limits: Some(proto::RuleLimits {
            per_member_limit: 1,
            ..Default::default()
        }),
        ..Default::default()
    };
    let masks = ["conditions", "effects", "limits"];
    update("u1", changed, &masks)
        .await
        .expect("update geo rule");

    let member_id = member(app, "G-41").await;
    let fired = report(app, "e2", &member_id, GINZA).await;
    assert_eq!(sources(&fired), ["geo:entry"]);
    assert!(fired.rule_outcomes[0].fired);
    assert_eq!(fired.rule_outcomes[0].points, 50);
    assert_eq!(app.balance(&member_id).await.available_points, 50);
    // Its per-member limit holds on the next visit (an hour out and back in).
    app.advance(Duration::hours(1)).await;
    report(app, "e3", &member_id, north_of(GINZA, 2_000.0)).await;
    app.advance(Duration::hours(1)).await;
    let limited = report(app, "e4", &member_id, GINZA).await;
    assert!(limited.coupons_issued.is_empty());
    assert_eq!(limited.rule_outcomes[0].reason, "MEMBER_LIMIT");
    let stats = rules
        .clone()
        .get_rule_stats(proto::GetRuleStatsRequest {
            rule_id: "entry".into(),
        })
        .await
        .expect("stats")
        .into_inner();
    assert_eq!(
        (stats.fired, stats.points_awarded, stats.coupons_issued),
        (1, 50, 1)
    );

    // Switched off: nothing more, and the simulation says why.
    let off = proto::Rule {
        rule_id: "entry".into(),
        enabled: Some(false),
        ..Default::default()
    };
    update("u2", off, &["enabled"]).await.expect("disable");
    let late = member(app, "G-42").await;
    let nothing = report(app, "e5", &late, GINZA).await;
    assert!(nothing.coupons_issued.is_empty() && nothing.rule_outcomes.is_empty());
    let simulated = rules
        .clone()
        .simulate_rules(proto::SimulateRulesRequest {
            trigger: proto::RuleTrigger::Geo as i32,
            member: Some(member_ref(&late)),
            store_id: "ginza".into(),
            ..Default::default()
        })
        .await
        .expect("simulate")
        .into_inner();
    let reasons: Vec<&str> = simulated
        .outcomes
        .iter()
        .map(|o| o.reason.as_str())
        .collect();
    assert_eq!(reasons, ["RULE_DISABLED"]);
    app.verify_ok().await;
}

/// A geo rule an older omo kept in its table of its own (before every rule was a row of
/// `rules`) is adopted when the server starts: GetRule shows it and it issues as before.
mod legacy_rules_are_adopted_at_start {
    use omo::domain::{
        location::GeoRule,
        ports::{ChangeSet, EngagementChanges},
        schedule::DaysOfWeek,
    };

    use super::*;
    use crate::helpers::spawn_app;

    async fn scenario(backend: crate::helpers::Backend) {
        let Some(mut app) = spawn_app(backend).await else {
            return;
        };
        store(&app, "ginza", GINZA, "Asia/Tokyo").await;
        campaign(&app, "hello", &[]).await;
        let legacy = GeoRule {
            rule_id: "old-entry".into(),
            campaign_id: "hello".into(),
            store_ids: vec!["ginza".into()],
            min_dwell_seconds: 0,
            max_accuracy_m: 100.0,
            active_hours: Vec::new(),
            days_of_week: DaysOfWeek::EVERY_DAY,
            cooldown_seconds: 0,
            daily_cap_per_store: 0,
            starts_at: None,
            ends_at: None,
        };
        let store = omo::store::open(&app.database_url).await.expect("open");
        let mut uow = store.begin().await.expect("begin");
        let changes = ChangeSet {
            engagement: EngagementChanges {
                new_geo_rules: vec![(legacy, now(&app))],
                ..EngagementChanges::default()
            },
            ..ChangeSet::default()
        };
        uow.flush(&changes).await.expect("legacy row");
        uow.commit().await.expect("commit");
        drop(store);

        app.restart().await;
        let adopted = app
            .admin
            .rules()
            .get_rule(proto::GetRuleRequest {
                rule_id: "old-entry".into(),
            })
            .await
            .expect("adopted")
            .into_inner()
            .rule
            .expect("rule");
        assert_eq!(adopted.trigger, proto::RuleTrigger::Geo as i32);
        let member_id = member(&app, "G-50").await;
        let entered = report(&app, "l1", &member_id, GINZA).await;
        assert_eq!(sources(&entered), ["geo:old-entry"]);
        // A second start adopts nothing twice.
        app.restart().await;
        let listed = app
            .admin
            .rules()
            .list_rules(proto::ListRulesRequest::default())
            .await
            .expect("list")
            .into_inner()
            .rules;
        assert_eq!(listed.len(), 1);
        app.verify_ok().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn sqlite() {
        scenario(crate::helpers::Backend::Sqlite).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn postgres() {
        scenario(crate::helpers::Backend::Postgres).await;
    }
}

/// A geo rule for silver members (`conditions.tier_ids`): the member's tier is a fact of the
/// location report as of a sale's, so it fires for a silver member and not for another.
async fn a_geo_rule_for_a_tier_fires_for_its_members_only(app: &TestApp) {
    // Arrange: silver from 10,000 paid; one member reaches it by a sale, one does not.
    app.set_program(|program| {
        program.tiers = vec![proto::Tier {
            tier_id: "silver".into(),
            name: "Silver".into(),
            min_spend: "10000".into(),
            earn_multiplier: "1".into(),
        }];
        program.tier_window_months = 12;
    })
    .await;
    store(app, "ginza", GINZA, "Asia/Tokyo").await;
    campaign(app, "silver-hello", &[]).await;
    create_rule(app, rule("silver-entry", "silver-hello", "ginza")).await;
    let for_silver = proto::Rule {
        rule_id: "silver-entry".into(),
        conditions: Some(proto::RuleConditions {
            store_ids: vec!["ginza".into()],
            tier_ids: vec!["silver".into()],
            ..Default::default()
        }),
        ..Default::default()
    };
    app.admin
        .rules()
        .update_rule(proto::UpdateRuleRequest {
            request_id: "silver-only".into(),
            rule: Some(for_silver),
            update_mask: Some(prost_types::FieldMask {
                paths: vec!["conditions".into()],
            }),
        })
        .await
        .expect("a geo rule for one tier");
    let silver = member(app, "T-1").await;
    let plain = member(app, "T-2").await;
    app.record_sale(store_sale("t1", "t1", member_ref(&silver), "12000", 0))
        .await
        .expect("the sale that makes silver");

    // Act
    let silver_report = report(app, "t-silver", &silver, GINZA).await;
    let plain_report = report(app, "t-plain", &plain, GINZA).await;

    // Assert
    assert_eq!(sources(&silver_report), ["geo:silver-entry"]);
    assert!(plain_report.coupons_issued.is_empty(), "{plain_report:?}");
    assert!(!plain_report.rule_outcomes[0].fired, "{plain_report:?}");
}
