//! Member tiers (issue #23): spend within the window raises a member at once and multiplies
//! the next sale's base points; refunds lower spend; only the monthly review lowers a tier.

use std::time::Duration as StdDuration;

use chrono::Duration;
use omo::proto;
use tonic::Code;

use crate::helpers::{
    TestApp, card_ref, ec_order, get_member_as, member_ref, store_sale, violated_fields,
};

crate::both_backends! {
    a_sale_crossing_silver_raises_at_once_and_multiplies_the_next => a_sale_crossing_silver_raises_at_once_and_multiplies_the_next,
    the_review_lowers_a_tier_once_spend_leaves_the_window => the_review_lowers_a_tier_once_spend_leaves_the_window,
    a_refund_lowers_spend_and_the_review_then_the_tier => a_refund_lowers_spend_and_the_review_then_the_tier,
    bad_tiers_are_field_violations_and_write_nothing => bad_tiers_are_field_violations_and_write_nothing,
    an_accepted_receipt_raises_and_the_tier_rule_fires => an_accepted_receipt_raises_and_the_tier_rule_fires,
    a_merge_moves_spend_to_the_target => a_merge_moves_spend_to_the_target,
}

fn tier(tier_id: &str, min_spend: &str, earn_multiplier: &str) -> proto::Tier {
    proto::Tier {
        tier_id: tier_id.into(),
        name: tier_id.to_uppercase(),
        min_spend: min_spend.into(),
        earn_multiplier: earn_multiplier.into(),
    }
}

/// Silver from 10,000 paid (×1.5), gold from 50,000 (×2), over `window_months`.
async fn with_tiers(app: &TestApp, window_months: i32) {
    app.set_program(|program| {
        program.tiers = vec![tier("silver", "10000", "1.5"), tier("gold", "50000", "2")];
        program.tier_window_months = window_months;
    })
    .await;
}

async fn tier_of(app: &TestApp, member_id: &str) -> proto::MemberTier {
    get_member_as(&app.admin, member_ref(member_id))
        .await
        .expect("member")
        .tier
        .expect("a member reply carries its tier")
}

/// The `tier.changed` events of a member, once `count` are numbered (20 s at most).
async fn tier_changes(app: &TestApp, member_id: &str, count: usize) -> Vec<(String, String)> {
    let deadline = tokio::time::Instant::now() + StdDuration::from_secs(20);
    loop {
        let events = app
            .admin
            .events()
            .list_events(proto::ListEventsRequest {
                after_seq: 0,
                types: vec!["tier.changed".into()],
                member_id: member_id.into(),
                page_size: 100,
            })
            .await
            .expect("events")
            .into_inner()
            .events;
        if events.len() >= count {
            return events
                .iter()
                .map(|event| {
                    let text = |key: &str| match event
                        .data
                        .as_ref()
                        .and_then(|data| data.fields.get(key))
                        .and_then(|value| value.kind.as_ref())
                    {
                        Some(prost_types::value::Kind::StringValue(s)) => s.clone(),
                        other => panic!("{key}: {other:?}"),
                    };
                    (text("from_tier_id"), text("tier_id"))
                })
                .collect();
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{} of {count} tier.changed",
            events.len()
        );
        tokio::time::sleep(StdDuration::from_millis(20)).await;
    }
}

async fn a_sale_crossing_silver_raises_at_once_and_multiplies_the_next(app: &TestApp) {
    with_tiers(app, 12).await;
    let member_id = app.create_member("tier-card").await;
    let before = tier_of(app, &member_id).await;
    assert_eq!(
        (before.tier_id.as_str(), before.next_tier_id.as_str()),
        ("", "silver")
    );
    assert_eq!(before.spend_to_next, "10000");

    // Act: one sale lifts spend over silver's threshold.
    let sale = store_sale("s1", "0001", card_ref("tier-card"), "12000", 0);
    let first = app.record_sale(sale).await.expect("sale");

    // Assert: the sale itself earned at the base rate; the member is silver at once.
    assert_eq!(first.points_earned, 120);
    let silver = tier_of(app, &member_id).await;
    assert_eq!(silver.tier_id, "silver");
    assert_eq!(silver.spend, "12000");
    assert_eq!(silver.next_tier_id, "gold");
    assert_eq!(silver.spend_to_next, "38000");
    assert!(silver.since.is_some());
    // The review is the next 1st in Tokyo: 2026-05-01 00:00 +09:00.
    assert_eq!(
        silver.review_at.map(|t| t.seconds),
        Some(
            chrono::DateTime::parse_from_rfc3339("2026-04-30T15:00:00Z")
                .unwrap()
                .timestamp()
        )
    );

    // The next sale's base is multiplied by silver's 1.5, and Quote previews it.
    let quote = app
        .register
        .checkout()
        .quote(proto::QuoteRequest {
            member: Some(card_ref("tier-card")),
            channel: proto::Channel::Store as i32,
            store_id: "shibuya".into(),
            basket: Some(crate::helpers::basket(&["1000"])),
            ..Default::default()
        })
        .await
        .expect("quote")
        .into_inner()
        .quote
        .expect("quote");
    assert_eq!(quote.points_to_earn, 15);
    let sale = store_sale("s2", "0002", card_ref("tier-card"), "1000", 0);
    let second = app.record_sale(sale).await.expect("sale");
    assert_eq!(second.points_earned, 15, "floor(1000 × 0.01 × 1.5)");
    assert_eq!(app.available(&member_id).await, 135);

    // An EC order of a silver member previews and earns the multiplied base too.
    let order = app
        .authorize(ec_order("a1", "ec-1", &member_id, "2000", 0))
        .await
        .expect("authorize");
    let base: i64 = order
        .earn_breakdown
        .iter()
        .filter(|part| part.rule_id.is_empty())
        .map(|part| part.points)
        .sum();
    assert_eq!(base, 30, "the preview's base part carries the multiplier");
    let captured = app.capture("c1", "ec-1").await.expect("capture");
    assert_eq!(captured.points_earned, 30);

    assert_eq!(
        tier_changes(app, &member_id, 1).await,
        [(String::new(), "silver".to_string())]
    );
    app.verify_ok().await;
}

async fn the_review_lowers_a_tier_once_spend_leaves_the_window(app: &TestApp) {
    // A two-month window: April's spend counts in April and May, not in June.
    with_tiers(app, 2).await;
    let member_id = app.create_member("review-card").await;
    let sale = store_sale("s1", "0001", card_ref("review-card"), "12000", 0);
    app.record_sale(sale).await.expect("sale");
    assert_eq!(tier_of(app, &member_id).await.tier_id, "silver");
    assert_eq!(
        tier_changes(app, &member_id, 1).await,
        [(String::new(), "silver".to_string())]
    );

    // May 2nd: the review finds April's spend still in the window.
    app.advance(Duration::days(31)).await;
    let may = tier_of(app, &member_id).await;
    assert_eq!(
        (may.tier_id.as_str(), may.spend.as_str()),
        ("silver", "12000")
    );

    // June 2nd: April has left the window; the review lowers the member.
    app.advance(Duration::days(31)).await;
    let june = tier_of(app, &member_id).await;
    assert_eq!((june.tier_id.as_str(), june.spend.as_str()), ("", "0"));
    assert!(june.since.is_none());
    assert_eq!(june.next_tier_id, "silver");
    // A second sweep in the same month changes nothing more. (April's raise may have left
    // the feed by now: events are kept 30 days, `--event-retention-days`.)
    app.advance(Duration::hours(1)).await;
    let changes = tier_changes(app, &member_id, 1).await;
    assert_eq!(
        changes.last(),
        Some(&("silver".to_string(), String::new())),
        "{changes:?}"
    );
    let lowered = changes.iter().filter(|(from, _)| from == "silver").count();
    assert_eq!(lowered, 1, "lowered once: {changes:?}");

    // The base is no longer multiplied.
    let sale = store_sale("s2", "0002", card_ref("review-card"), "1000", 0);
    assert_eq!(app.record_sale(sale).await.expect("sale").points_earned, 10);
    app.verify_ok().await;
}

async fn a_refund_lowers_spend_and_the_review_then_the_tier(app: &TestApp) {
    with_tiers(app, 12).await;
    let member_id = app.create_member("refund-card").await;
    app.authorize(ec_order("a1", "ec-1", &member_id, "12000", 0))
        .await
        .expect("authorize");
    app.capture("c1", "ec-1").await.expect("capture");
    assert_eq!(tier_of(app, &member_id).await.tier_id, "silver");

    // Act: half the order comes back.
    app.refund("r1", "ec-1", "6000").await.expect("refund");

    // Spend drops at once; the tier waits for the review (the 1st).
    let refunded = tier_of(app, &member_id).await;
    assert_eq!(
        (refunded.tier_id.as_str(), refunded.spend.as_str()),
        ("silver", "6000")
    );
    app.advance(Duration::hours(2)).await;
    assert_eq!(tier_of(app, &member_id).await.tier_id, "silver");

    // The review of May 1st lowers the member: 6,000 is below silver.
    app.advance(Duration::days(30)).await;
    let reviewed = tier_of(app, &member_id).await;
    assert_eq!(
        (reviewed.tier_id.as_str(), reviewed.spend.as_str()),
        ("", "6000")
    );
    assert_eq!(reviewed.spend_to_next, "4000");
    app.verify_ok().await;
}

async fn bad_tiers_are_field_violations_and_write_nothing(app: &TestApp) {
    let refused = app
        .admin
        .program()
        .update_program(proto::UpdateProgramRequest {
            request_id: String::new(),
            program: Some(proto::Program {
                tiers: vec![
                    tier("silver", "10000", "1.5"),
                    tier("silver", "5000", "0.9"),
                ],
                ..Default::default()
            }),
            update_mask: Some(prost_types::FieldMask {
                paths: vec!["tiers".into()],
            }),
        })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::InvalidArgument);
    assert_eq!(
        violated_fields(&refused),
        [
            "program.tiers[1].tier_id",
            "program.tiers[1].min_spend",
            "program.tiers[1].earn_multiplier"
        ]
    );
    let program = app
        .admin
        .program()
        .get_program(proto::GetProgramRequest {})
        .await
        .expect("program")
        .into_inner()
        .program
        .expect("program");
    assert!(program.tiers.is_empty());
    assert_eq!(program.tier_window_months, 12);
}

async fn an_accepted_receipt_raises_and_the_tier_rule_fires(app: &TestApp) {
    with_tiers(app, 12).await;
    crate::helpers::create_receipt_rule_as(&app.admin, "scan-1pc", "0.01").await;
    // A welcome bonus when a member reaches silver (RULE_TRIGGER_TIER).
    crate::rules::create_rule(
        app,
        proto::Rule {
            rule_id: "welcome-silver".into(),
            name: "Welcome to silver".into(),
            trigger: proto::RuleTrigger::Tier as i32,
            conditions: Some(proto::RuleConditions {
                tier_ids: vec!["silver".into()],
                ..Default::default()
            }),
            effects: Some(proto::RuleEffects {
                bonus_points: 500,
                ..Default::default()
            }),
            ..Default::default()
        },
    )
    .await;
    let member_id = app.create_member("scan-card").await;
    let issued_at = omo::domain::Clock::now(&app.clock) - Duration::hours(1);
    let result = app
        .app_client
        .engagement()
        .submit_receipt(proto::SubmitReceiptRequest {
            request_id: "scan-1".into(),
            member: Some(member_ref(&member_id)),
            receipt: Some(proto::Receipt {
                store_id: "shibuya".into(),
                register_id: "1".into(),
                receipt_no: "9001".into(),
                issued_at: Some(prost_types::Timestamp {
                    seconds: issued_at.timestamp(),
                    nanos: 0,
                }),
                total: "15000".into(),
                lines: vec![proto::LineItem {
                    line_id: "L1".into(),
                    sku: "ITEM".into(),
                    category: "grocery".into(),
                    quantity: 1,
                    amount: "15000".into(),
                }],
                image_sha256: "ab".repeat(32),
                raw_text: String::new(),
            }),
        })
        .await
        .expect("submit")
        .into_inner()
        .result
        .expect("result");
    assert_eq!(result.points_awarded, 150);

    // The receipt's total counts as spend: silver at once, and the TIER rule gave its bonus.
    let silver = tier_of(app, &member_id).await;
    assert_eq!(
        (silver.tier_id.as_str(), silver.spend.as_str()),
        ("silver", "15000")
    );
    assert_eq!(app.available(&member_id).await, 150 + 500);
    app.verify_ok().await;
}

async fn a_merge_moves_spend_to_the_target(app: &TestApp) {
    with_tiers(app, 12).await;
    let source = app.create_member("merge-source").await;
    let target = app.create_member("merge-target").await;
    let sale = store_sale("s1", "0001", card_ref("merge-source"), "6000", 0);
    app.record_sale(sale).await.expect("sale");
    let sale = store_sale("s2", "0002", card_ref("merge-target"), "3000", 0);
    app.record_sale(sale).await.expect("sale");
    app.admin
        .members()
        .merge_members(proto::MergeMembersRequest {
            request_id: "merge".into(),
            source_member_id: source.clone(),
            target_member_id: target.clone(),
        })
        .await
        .expect("merge");
    assert_eq!(tier_of(app, &target).await.spend, "9000");
    // The next sale counts both members' spend: 9,000 + 1,000 reaches silver.
    let sale = store_sale("s3", "0003", card_ref("merge-target"), "1000", 0);
    app.record_sale(sale).await.expect("sale");
    let tier = tier_of(app, &target).await;
    assert_eq!(
        (tier.tier_id.as_str(), tier.spend.as_str()),
        ("silver", "10000")
    );
    app.verify_ok().await;
}
