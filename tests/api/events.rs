//! Events in and out (issue #22): the outbox written with each ledger change and nothing for a
//! refused command; live watchers of many concurrent writers seeing every event once in seq
//! order, and a resume from the middle (and the same across two PostgreSQL replicas);
//! TrackEvent deciding EVENT rules with their cooldown; bad input refused, writing nothing.

use std::{collections::HashSet, time::Duration};

use omo::{
    client::Client,
    domain::Clock,
    proto::{self, campaign::Discount},
};
use prost_types::value::Kind;
use tokio_stream::StreamExt;
use tonic::Code;

use crate::helpers::{
    Backend, CliKeys, RoleClients, TestApp, assert_refused, create_store_as, fresh_database,
    member_ref, member_with_points_as, omo_cli, serve, store_sale, violated_fields,
};

crate::both_backends! {
    a_sale_and_a_coupon_report_their_events => a_sale_and_a_coupon_report_their_events,
    a_refused_command_reports_nothing => a_refused_command_reports_nothing,
    concurrent_writers_are_watched_without_gap_or_repeat =>
        concurrent_writers_are_watched_without_gap_or_repeat,
    a_tracked_event_fires_its_rule_once_per_cooldown =>
        a_tracked_event_fires_its_rule_once_per_cooldown,
    bad_tracked_events_are_refused_and_write_nothing =>
        bad_tracked_events_are_refused_and_write_nothing,
    an_expiring_lot_is_announced_once => an_expiring_lot_is_announced_once,
    a_nearby_offer_is_announced_once_a_day => a_nearby_offer_is_announced_once_a_day,
    an_expiring_coupon_is_announced_once => an_expiring_coupon_is_announced_once,
    old_events_leave_the_feed => old_events_leave_the_feed,
}

const WRITERS: usize = 8;
const SALES_PER_WRITER: usize = 50;

/// The events of `member_id` after `after_seq`, once at least `at_least` are numbered (the
/// relay numbers PostgreSQL's a moment after their commit); fails after 20 s.
async fn events_of(
    admin: &Client,
    member_id: &str,
    after_seq: i64,
    at_least: usize,
) -> Vec<proto::Event> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let events = list_all(admin, member_id, after_seq, &[]).await;
        if events.len() >= at_least {
            return events;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{} of {at_least} events numbered",
            events.len()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The events of one type of `member_id`, once at least `at_least` are numbered (20 s at
/// most); then a moment more, so that one too many would show.
async fn of_type(
    admin: &Client,
    member_id: &str,
    event_type: &str,
    at_least: usize,
) -> Vec<proto::Event> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while list_all(admin, member_id, 0, &[event_type]).await.len() < at_least {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no {event_type} within 20 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    list_all(admin, member_id, 0, &[event_type]).await
}

/// Every event of the filter after `after_seq`, page by page.
async fn list_all(
    admin: &Client,
    member_id: &str,
    mut after_seq: i64,
    types: &[&str],
) -> Vec<proto::Event> {
    let mut all = Vec::new();
    loop {
        let page = admin
            .events()
            .list_events(proto::ListEventsRequest {
                after_seq,
                types: types.iter().map(|t| t.to_string()).collect(),
                member_id: member_id.into(),
                page_size: 100,
            })
            .await
            .expect("list events")
            .into_inner();
        if page.events.is_empty() {
            assert_eq!(page.next_after_seq, after_seq, "an empty page stays put");
            return all;
        }
        after_seq = page.next_after_seq;
        all.extend(page.events);
    }
}

fn types(events: &[proto::Event]) -> Vec<&str> {
    events.iter().map(|e| e.r#type.as_str()).collect()
}

fn field<'e>(event: &'e proto::Event, key: &str) -> &'e Kind {
    event
        .data
        .as_ref()
        .and_then(|data| data.fields.get(key))
        .and_then(|value| value.kind.as_ref())
        .unwrap_or_else(|| panic!("{} has no {key}: {event:?}", event.r#type))
}

fn number(event: &proto::Event, key: &str) -> f64 {
    match field(event, key) {
        Kind::NumberValue(n) => *n,
        other => panic!("{key} is {other:?}"),
    }
}

fn text<'e>(event: &'e proto::Event, key: &str) -> &'e str {
    match field(event, key) {
        Kind::StringValue(s) => s,
        other => panic!("{key} is {other:?}"),
    }
}

fn assert_increasing(events: &[proto::Event]) {
    for pair in events.windows(2) {
        assert!(
            pair[0].seq < pair[1].seq,
            "{} then {}",
            pair[0].seq,
            pair[1].seq
        );
    }
}

async fn create_campaign(app: &TestApp, campaign_id: &str) {
    app.admin
        .coupons()
        .create_campaign(proto::CreateCampaignRequest {
            request_id: String::new(),
            campaign: Some(proto::Campaign {
                campaign_id: campaign_id.into(),
                name: format!("campaign {campaign_id}"),
                discount: Some(Discount::AmountOff("100".into())),
                stackable: true,
                ..Default::default()
            }),
        })
        .await
        .expect("create campaign");
}

async fn a_sale_and_a_coupon_report_their_events(app: &TestApp) {
    // Arrange: 100 points (an adjustment) and a coupon.
    let member_id = app.member_with_points("events-card", 100).await;
    create_campaign(app, "welcome").await;
    let coupon = app
        .issue_coupon("c1", "welcome", &member_id)
        .await
        .expect("coupon");

    // Act: a sale at shibuya spending 30 points and the coupon.
    let mut sale = store_sale("s1", "0001", member_ref(&member_id), "1000", 30);
    sale.coupon_codes = vec![coupon.code.clone()];
    let order = app.record_sale(sale).await.expect("sale");

    // Assert: each change reported once, in commit order.
    let events = events_of(&app.admin, &member_id, 0, 6).await;
    assert_increasing(&events);
    let kinds = types(&events);
    assert_eq!(kinds[0], "points.adjusted");
    assert_eq!(kinds[1], "coupon.issued");
    let mut sale_events: Vec<&str> = kinds[2..].to_vec();
    sale_events.sort_unstable();
    assert_eq!(
        sale_events,
        [
            "coupon.redeemed",
            "order.captured",
            "points.earned",
            "points.redeemed"
        ]
    );
    assert_eq!(number(&events[0], "points"), 100.0);
    assert_eq!(text(&events[1], "code"), coupon.code);
    let by_type = |t: &str| events.iter().find(|e| e.r#type == t).expect(t);
    assert_eq!(number(by_type("points.redeemed"), "points"), 30.0);
    assert_eq!(
        number(by_type("points.earned"), "points"),
        order.points_earned as f64
    );
    assert_eq!(text(by_type("order.captured"), "order_id"), order.order_id);
    assert_eq!(text(by_type("coupon.redeemed"), "order_id"), order.order_id);
    let ids: HashSet<&str> = events.iter().map(|e| e.event_id.as_str()).collect();
    assert_eq!(ids.len(), events.len(), "event ids are unique");
    assert!(events.iter().all(|e| e.member_id == member_id));

    // The type filter, and the feed without a member filter, agree.
    let earned = list_all(&app.admin, "", 0, &["points.earned"]).await;
    assert_eq!(types(&earned), ["points.earned"]);
    app.verify_ok().await;
}

async fn a_refused_command_reports_nothing(app: &TestApp) {
    let member_id = app.member_with_points("refused-card", 10).await;
    let before = events_of(&app.admin, &member_id, 0, 1).await;
    let last = before.last().expect("the adjustment").seq;

    // 50 points against 10: INSUFFICIENT_POINTS. Then a marker adjustment commits after it.
    let refused = app
        .record_sale(store_sale("r1", "0001", member_ref(&member_id), "100", 50))
        .await
        .unwrap_err();
    assert_refused(&refused, Code::FailedPrecondition, "INSUFFICIENT_POINTS");
    app.adjust_points("marker", &member_id, 1, "marker")
        .await
        .expect("marker");

    let after = events_of(&app.admin, &member_id, last, 1).await;
    assert_eq!(
        types(&after),
        ["points.adjusted"],
        "only the marker's event"
    );
    assert_eq!(number(&after[0], "points"), 1.0);
}

/// `WRITERS` × `SALES_PER_WRITER` sales at once, each of its own member; returns the order ids.
async fn concurrent_sales(
    registers: &[Client],
    prefix: &str,
    members: &[String],
) -> HashSet<String> {
    let tasks: Vec<_> = (0..WRITERS)
        .map(|writer| {
            let register = registers[writer % registers.len()].clone();
            let member_id = members[writer].clone();
            let prefix = prefix.to_string();
            tokio::spawn(async move {
                let mut order_ids = Vec::new();
                for i in 0..SALES_PER_WRITER {
                    let receipt = format!("{prefix}-{writer}-{i}");
                    let sale = store_sale(&receipt, &receipt, member_ref(&member_id), "500", 0);
                    let order = register
                        .checkout()
                        .record_sale(sale)
                        .await
                        .expect("sale")
                        .into_inner()
                        .order
                        .expect("order");
                    order_ids.push(order.order_id);
                }
                order_ids
            })
        })
        .collect();
    let mut all = HashSet::new();
    for task in tasks {
        all.extend(task.await.expect("writer"));
    }
    all
}

/// Reads `count` events from a WatchEvents stream (60 s at most).
async fn watch(
    admin: &Client,
    after_seq: i64,
    types: &[&str],
    count: usize,
) -> tokio::task::JoinHandle<Vec<proto::Event>> {
    let mut stream = admin
        .events()
        .watch_events(proto::WatchEventsRequest {
            after_seq,
            types: types.iter().map(|t| t.to_string()).collect(),
            member_id: String::new(),
        })
        .await
        .expect("watch")
        .into_inner();
    tokio::spawn(async move {
        let mut seen = Vec::with_capacity(count);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        while seen.len() < count {
            let next = tokio::time::timeout_at(deadline, stream.next()).await;
            let message = next
                .unwrap_or_else(|_| panic!("{} of {count} events within 60 s", seen.len()))
                .expect("the stream stays open")
                .expect("an event");
            seen.push(message.event.expect("event"));
        }
        seen
    })
}

/// Every sale's `points.earned` seen exactly once, in increasing seq, by a watcher that was
/// live while they committed; then a watcher resuming from the middle sees exactly the rest.
async fn watched_exactly_once(
    admin: &Client,
    registers: &[Client],
    prefix: &str,
    members: &[String],
) {
    let total = WRITERS * SALES_PER_WRITER;
    let start = list_all(admin, "", 0, &[])
        .await
        .last()
        .map_or(0, |e| e.seq);
    let live = watch(admin, start, &["points.earned"], total).await;
    let order_ids = concurrent_sales(registers, prefix, members).await;
    assert_eq!(order_ids.len(), total);

    let seen = live.await.expect("watcher");
    assert_increasing(&seen);
    let seen_orders: HashSet<String> = seen
        .iter()
        .map(|e| text(e, "order_id").to_string())
        .collect();
    assert_eq!(
        seen_orders, order_ids,
        "each sale's event once, none missed"
    );

    // A resume from the middle gets exactly the second half, and nothing after it yet.
    let middle = seen[total / 2 - 1].seq;
    let resumed = watch(admin, middle, &["points.earned"], total / 2)
        .await
        .await
        .expect("resumed watcher");
    assert_eq!(resumed, seen[total / 2..].to_vec());
    // ListEvents pages agree with the stream.
    let listed = list_all(admin, "", start, &["points.earned"]).await;
    assert_eq!(listed, seen);
}

async fn concurrent_writers_are_watched_without_gap_or_repeat(app: &TestApp) {
    let mut members = Vec::new();
    for writer in 0..WRITERS {
        members.push(app.create_member(&format!("writer-{writer}")).await);
    }
    watched_exactly_once(
        &app.admin,
        std::slice::from_ref(&app.register),
        "w",
        &members,
    )
    .await;
    app.verify_ok().await;
}

/// The same across two `omo serve` processes over one PostgreSQL database: sales spread over
/// both, the watcher on the first.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_replicas_are_watched_without_gap_or_repeat() {
    let Some((url, _database)) = fresh_database(Backend::Postgres).await else {
        return;
    };
    omo_cli(&["migrate", "--database-url", &url]);
    let keys = CliKeys::create(&url);
    let servers = [serve(&url, &[]).await, serve(&url, &[]).await];
    let mut replicas = Vec::new();
    for server in &servers {
        replicas.push(RoleClients::connect(server.endpoint(), &keys).await);
    }
    create_store_as(&replicas[0].admin, "shibuya").await;
    let mut members = Vec::new();
    for writer in 0..WRITERS {
        members.push(member_with_points_as(&replicas[0].admin, &format!("r-{writer}"), 1).await);
    }
    let registers: Vec<Client> = replicas.iter().map(|r| r.register.clone()).collect();
    watched_exactly_once(&replicas[0].admin, &registers, "rep", &members).await;
    drop(servers);
    let report = omo_cli(&["verify", "--database-url", &url]);
    assert!(!report.contains("VIOLATED"), "{report}");
}

async fn track(
    client: &Client,
    request_id: &str,
    member_id: &str,
    event_type: &str,
) -> Result<proto::TrackEventResponse, tonic::Status> {
    client
        .events()
        .track_event(proto::TrackEventRequest {
            request_id: request_id.into(),
            member: Some(member_ref(member_id)),
            event_type: event_type.into(),
            attributes: [("product".to_string(), "tea".to_string())].into(),
            ..Default::default()
        })
        .await
        .map(tonic::Response::into_inner)
}

async fn a_tracked_event_fires_its_rule_once_per_cooldown(app: &TestApp) {
    // Arrange: an EVENT rule on "review_posted" of tea: 5 points and a coupon, once an hour.
    create_campaign(app, "thanks").await;
    let rule = proto::Rule {
        rule_id: "review-bonus".into(),
        trigger: proto::RuleTrigger::Event as i32,
        event_type: "review_posted".into(),
        conditions: Some(proto::RuleConditions {
            attributes: [("product".to_string(), "tea".to_string())].into(),
            ..Default::default()
        }),
        effects: Some(proto::RuleEffects {
            bonus_points: 5,
            campaign_id: "thanks".into(),
            ..Default::default()
        }),
        limits: Some(proto::RuleLimits {
            cooldown_seconds: 3_600,
            ..Default::default()
        }),
        ..Default::default()
    };
    app.admin
        .rules()
        .create_rule(proto::CreateRuleRequest {
            request_id: String::new(),
            rule: Some(rule),
        })
        .await
        .expect("rule");
    let member_id = app.create_member("reviewer").await;

    // Act and assert: the first review fires (through the app backend's key)...
    let first = track(&app.app_client, "t1", &member_id, "review_posted")
        .await
        .expect("track");
    assert_eq!(first.rules_fired.len(), 1);
    let fired = &first.rules_fired[0];
    assert_eq!(
        (fired.rule_id.as_str(), fired.points_awarded),
        ("review-bonus", 5)
    );
    assert_eq!(fired.coupons_issued.len(), 1);
    // ... a retry is the same answer, nothing more ...
    let again = track(&app.app_client, "t1", &member_id, "review_posted")
        .await
        .expect("replay");
    assert_eq!(again, first);
    // ... another type fires nothing, a second review within the hour neither ...
    let other = track(&app.checkout, "t2", &member_id, "page_view")
        .await
        .unwrap();
    assert!(other.rules_fired.is_empty());
    let cooling = track(&app.app_client, "t3", &member_id, "review_posted")
        .await
        .unwrap();
    assert!(cooling.rules_fired.is_empty(), "{cooling:?}");
    assert_ne!(cooling.event_id, first.event_id);
    // ... and one after the cooldown fires again.
    app.advance(chrono::Duration::minutes(61)).await;
    let later = track(&app.app_client, "t4", &member_id, "review_posted")
        .await
        .unwrap();
    assert_eq!(later.rules_fired.len(), 1);
    assert_eq!(app.available(&member_id).await, 10);

    let events = events_of(&app.admin, &member_id, 0, 4).await;
    let mut kinds = types(&events);
    kinds.sort_unstable();
    assert_eq!(
        kinds,
        [
            "coupon.issued",
            "coupon.issued",
            "points.earned",
            "points.earned"
        ]
    );
    // Only the admin reads the feed.
    let denied = app
        .app_client
        .events()
        .list_events(proto::ListEventsRequest::default())
        .await
        .unwrap_err();
    assert_eq!(denied.code(), Code::PermissionDenied);
    app.verify_ok().await;
}

async fn bad_tracked_events_are_refused_and_write_nothing(app: &TestApp) {
    let member_id = app.create_member("bad-input").await;
    let attributes = (0..33)
        .map(|i| (format!("k{i}"), "v".to_string()))
        .collect();
    let refused = app
        .app_client
        .events()
        .track_event(proto::TrackEventRequest {
            request_id: "bad".into(),
            member: Some(member_ref(&member_id)),
            event_type: "Cart Add".into(),
            attributes,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::InvalidArgument);
    assert_eq!(violated_fields(&refused), ["event_type", "attributes"]);
    let refused = track(&app.app_client, "", &member_id, "x".repeat(65).as_str())
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&refused), ["request_id", "event_type"]);
    let refused = app
        .admin
        .events()
        .list_events(proto::ListEventsRequest {
            after_seq: -1,
            types: vec!["points.nope".into()],
            page_size: 101,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(
        violated_fields(&refused),
        ["page_size", "after_seq", "types[0]"]
    );
    // The same request_id with a valid body is new: nothing was remembered for it.
    let tracked = track(&app.app_client, "bad", &member_id, "cart_add").await;
    assert!(tracked.is_ok(), "{tracked:?}");
    assert!(list_all(&app.admin, &member_id, 0, &[]).await.is_empty());
}

/// `points.expiring`: a lot is announced once, `Program.expiry_reminder_days` (7) ahead.
async fn an_expiring_lot_is_announced_once(app: &TestApp) {
    let member_id = app.create_member("expiring").await;
    let expires_at = app.clock.now() + chrono::Duration::days(10);
    app.admin
        .ledger()
        .adjust_points(proto::AdjustPointsRequest {
            request_id: "limited".into(),
            member: Some(member_ref(&member_id)),
            points: 40,
            reason: "limited-time gift".into(),
            expires_at: Some(omo::grpc::convert::timestamp(expires_at)),
        })
        .await
        .expect("grant");
    let reminders = |app: &TestApp, at_least: usize| {
        let admin = app.admin.clone();
        let member_id = member_id.clone();
        async move { of_type(&admin, &member_id, "points.expiring", at_least).await }
    };

    app.advance(chrono::Duration::days(2)).await;
    assert!(reminders(app, 0).await.is_empty(), "8 days ahead: not yet");
    app.advance(chrono::Duration::days(2)).await;
    let sent = reminders(app, 1).await;
    assert_eq!(sent.len(), 1, "6 days ahead: announced");
    assert_eq!(number(&sent[0], "points"), 40.0);
    assert_eq!(
        text(&sent[0], "expires_at"),
        expires_at.to_rfc3339().as_str()
    );
    app.advance(chrono::Duration::days(1)).await;
    app.advance(chrono::Duration::hours(1)).await;
    assert_eq!(reminders(app, 1).await.len(), 1, "once per lot");
    app.verify_ok().await;
}

/// `offer.nearby`: an accepted location 150 m from shibuya (outside its fence, inside the
/// program's 200 m), where a GEO rule offers a coupon: once per member, store and local day.
async fn a_nearby_offer_is_announced_once_a_day(app: &TestApp) {
    create_campaign(app, "near").await;
    app.admin
        .engagement()
        .create_geo_rule(proto::CreateGeoRuleRequest {
            request_id: "geo-near".into(),
            rule: Some(proto::GeoRule {
                rule_id: "near-shibuya".into(),
                campaign_id: "near".into(),
                store_ids: vec!["shibuya".into()],
                ..Default::default()
            }),
        })
        .await
        .expect("geo rule");
    let member_id = app.create_member("walker").await;
    let report = |request_id: &str| proto::ReportLocationRequest {
        request_id: request_id.into(),
        member: Some(member_ref(&member_id)),
        latitude: 35.66 + 150.0 / 111_320.0,
        longitude: 139.70,
        accuracy_m: 10.0,
        observed_at: Some(omo::grpc::convert::timestamp(app.clock.now())),
        device_id: String::new(),
    };
    let offers = |app: &TestApp, at_least: usize| {
        let admin = app.admin.clone();
        let member_id = member_id.clone();
        async move { of_type(&admin, &member_id, "offer.nearby", at_least).await }
    };
    for (i, advance_minutes) in [0, 10, 10].into_iter().enumerate() {
        app.clock
            .advance(chrono::Duration::minutes(advance_minutes));
        let result = app
            .app_client
            .engagement()
            .report_location(report(&format!("near-{i}")))
            .await
            .expect("report")
            .into_inner()
            .result
            .expect("result");
        assert_eq!(result.verdict, proto::LocationVerdict::Accepted as i32);
    }
    let sent = offers(app, 1).await;
    assert_eq!(sent.len(), 1, "once a day: {sent:?}");
    assert_eq!(text(&sent[0], "store_id"), "shibuya");
    assert_eq!(text(&sent[0], "campaign_id"), "near");
    assert!((140.0..160.0).contains(&number(&sent[0], "distance_m")));

    app.clock.advance(chrono::Duration::days(1));
    app.app_client
        .engagement()
        .report_location(report("near-next-day"))
        .await
        .expect("report");
    assert_eq!(offers(app, 2).await.len(), 2, "again the next day");
}

/// `coupon.expiring`: an active coupon is announced once, a day before its validity ends.
async fn an_expiring_coupon_is_announced_once(app: &TestApp) {
    app.admin
        .coupons()
        .create_campaign(proto::CreateCampaignRequest {
            request_id: String::new(),
            campaign: Some(proto::Campaign {
                campaign_id: "two-days".into(),
                name: "valid two days".into(),
                discount: Some(Discount::AmountOff("100".into())),
                validity_days: 2,
                ..Default::default()
            }),
        })
        .await
        .expect("campaign");
    let member_id = app.create_member("coupon-holder").await;
    let coupon = app
        .issue_coupon("c-exp", "two-days", &member_id)
        .await
        .expect("coupon");
    let announced = |app: &TestApp, at_least: usize| {
        let admin = app.admin.clone();
        let member_id = member_id.clone();
        async move { of_type(&admin, &member_id, "coupon.expiring", at_least).await }
    };

    app.advance(chrono::Duration::hours(12)).await;
    assert!(announced(app, 0).await.is_empty(), "36 hours left: not yet");
    app.advance(chrono::Duration::hours(13)).await;
    let sent = announced(app, 1).await;
    assert_eq!(sent.len(), 1, "23 hours left: announced");
    assert_eq!(text(&sent[0], "code"), coupon.code);
    app.advance(chrono::Duration::hours(1)).await;
    assert_eq!(announced(app, 1).await.len(), 1, "once per coupon");
}

/// `--event-retention-days` (30 by default): events older than that leave the feed once every
/// webhook has them, oldest first, so the feed stays dense and `omo verify` still holds.
async fn old_events_leave_the_feed(app: &TestApp) {
    let member_id = app.create_member("retained").await;
    let sale = |n: u32| {
        let receipt_no = format!("{n:04}");
        let request_id = format!("ret-{n}");
        crate::helpers::store_sale(&request_id, &receipt_no, member_ref(&member_id), "1000", 0)
    };
    app.record_sale(sale(1)).await.expect("sale");
    app.record_sale(sale(2)).await.expect("sale");
    let old = events_of(&app.admin, &member_id, 0, 4).await;
    let newest_old = old.last().expect("events").seq;
    app.clock.advance(chrono::Duration::days(31));
    let swept = app.app().engine().sweep().await.expect("sweep");
    // All but the newest: the feed keeps its last seq, so the next one is never reused.
    assert_eq!((swept.events_purged, swept.failed), (3, 0), "{swept:?}");
    app.record_sale(sale(3)).await.expect("sale");
    let kept = events_of(&app.admin, &member_id, 0, 3).await;
    let seqs: Vec<i64> = kept.iter().map(|event| event.seq).collect();
    assert_eq!(
        seqs,
        [newest_old, newest_old + 1, newest_old + 2],
        "{kept:?}"
    );
    app.verify_ok().await;
}
