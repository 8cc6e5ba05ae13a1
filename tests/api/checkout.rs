//! Authorize → Capture / Void / hold expiry, refunds, and order uniqueness.

use chrono::Duration;
use omo::proto;
use tonic::Code;

use crate::helpers::{TestApp, assert_refused, card_ref, ec_order, store_sale};

crate::both_backends! {
    authorize_then_void_releases_the_hold => authorize_then_void_releases_the_hold,
    expired_hold_is_released_by_the_sweeper => expired_hold_is_released_by_the_sweeper,
    capture_after_hold_expiry_is_refused_and_releases => capture_after_hold_expiry_is_refused_and_releases,
    capture_after_the_sweeper_expired_the_hold_is_hold_expired => capture_after_the_sweeper_expired_the_hold_is_hold_expired,
    partial_then_full_refund => partial_then_full_refund,
    refund_after_earned_points_were_spent => refund_after_earned_points_were_spent,
    refund_by_lines => refund_by_lines,
    unit_by_unit_line_refunds_add_up => unit_by_unit_line_refunds_add_up,
    refund_restores_points_with_their_expiry_unless_expired => refund_restores_points_with_their_expiry_unless_expired,
    orders_and_receipts_are_unique => orders_and_receipts_are_unique,
    insufficient_points_hold_nothing => insufficient_points_hold_nothing,
}

async fn authorize_then_void_releases_the_hold(app: &TestApp) {
    let member_id = app.member_with_points("v1", 500).await;
    app.authorize(ec_order("a", "EC-V", &member_id, "1000", 300))
        .await
        .expect("authorize");
    assert_eq!(app.balance(&member_id).await.held_points, 300);

    let voided = app.void("v", "EC-V").await.expect("void");
    assert_eq!(voided.state, proto::OrderState::Voided as i32);
    let balance = app.balance(&member_id).await;
    assert_eq!((balance.available_points, balance.held_points), (500, 0));
    assert_refused(
        &app.capture("c", "EC-V").await.unwrap_err(),
        Code::FailedPrecondition,
        "ORDER_STATE",
    );
    app.verify_ok().await;
}

async fn expired_hold_is_released_by_the_sweeper(app: &TestApp) {
    let member_id = app.member_with_points("e1", 500).await;
    let order = app
        .authorize(ec_order("a", "EC-E", &member_id, "1000", 200))
        .await
        .expect("authorize");
    assert!(order.hold_expires_at.is_some());
    app.advance(Duration::seconds(899)).await;
    assert_eq!(
        app.balance(&member_id).await.held_points,
        200,
        "not yet expired"
    );

    app.advance(Duration::seconds(2)).await;
    let balance = app.balance(&member_id).await;
    assert_eq!((balance.available_points, balance.held_points), (500, 0));
    let order = app.get_order("EC-E").await.expect("get");
    assert_eq!(order.state, proto::OrderState::Expired as i32);
    assert_refused(
        &app.capture("c", "EC-E").await.unwrap_err(),
        Code::FailedPrecondition,
        "HOLD_EXPIRED",
    );
    app.verify_ok().await;
}

async fn capture_after_hold_expiry_is_refused_and_releases(app: &TestApp) {
    let member_id = app.member_with_points("e2", 500).await;
    app.authorize(ec_order("a", "EC-X", &member_id, "1000", 200))
        .await
        .expect("authorize");
    app.clock.advance(Duration::minutes(16)); // the sweeper has not run

    let refused = app.capture("c", "EC-X").await.unwrap_err();
    assert_refused(&refused, Code::FailedPrecondition, "HOLD_EXPIRED");
    let balance = app.balance(&member_id).await;
    assert_eq!((balance.available_points, balance.held_points), (500, 0));
    // The refusal is remembered: the same capture again says the same.
    let again = app.capture("c", "EC-X").await.unwrap_err();
    assert_refused(&again, Code::FailedPrecondition, "HOLD_EXPIRED");
    app.verify_ok().await;
}

async fn capture_after_the_sweeper_expired_the_hold_is_hold_expired(app: &TestApp) {
    // Arrange: a hold past its expiry, released by the sweeper before anyone captures it.
    let member_id = app.member_with_points("e3", 500).await;
    app.authorize(ec_order("a", "EC-S", &member_id, "1000", 200))
        .await
        .expect("authorize");
    app.advance(Duration::minutes(16)).await; // the sweeper runs
    let order = app.get_order("EC-S").await.expect("order");
    assert_eq!(order.state, proto::OrderState::Expired as i32);

    // Act: capture, as a checkout that missed the expiry would.
    let refused = app.capture("c", "EC-S").await.unwrap_err();

    // Assert: the same refusal as before the sweep, and nothing more moved.
    assert_refused(&refused, Code::FailedPrecondition, "HOLD_EXPIRED");
    let balance = app.balance(&member_id).await;
    assert_eq!((balance.available_points, balance.held_points), (500, 0));
    assert_refused(
        &app.void("v", "EC-S").await.unwrap_err(),
        Code::FailedPrecondition,
        "ORDER_STATE",
    );
    app.verify_ok().await;
}

async fn partial_then_full_refund(app: &TestApp) {
    let member_id = app.member_with_points("r1", 2000).await;
    app.authorize(ec_order("a", "EC-R", &member_id, "10000", 1000))
        .await
        .expect("authorize");
    let order = app.capture("c", "EC-R").await.expect("capture");
    assert_eq!(order.points_earned, 90); // floor(9000 × 1 %)
    assert_eq!(app.available(&member_id).await, 1090);

    let first = app
        .refund("r1", "EC-R", "5000")
        .await
        .expect("partial refund");
    assert_eq!(
        (
            first.points_reversed,
            first.points_restored,
            first.points_shortfall
        ),
        (45, 500, 0)
    );
    assert_eq!(
        first.order.as_ref().unwrap().state,
        proto::OrderState::PartiallyRefunded as i32
    );
    assert_eq!(app.available(&member_id).await, 1090 - 45 + 500);

    let second = app.refund("r2", "EC-R", "5000").await.expect("full refund");
    assert_eq!((second.points_reversed, second.points_restored), (45, 500));
    let order = second.order.unwrap();
    assert_eq!(order.state, proto::OrderState::Refunded as i32);
    assert_eq!(order.refunded_amount, "10000");
    assert_eq!(app.available(&member_id).await, 2000);

    let refused = app.refund("r3", "EC-R", "1").await.unwrap_err();
    assert_refused(&refused, Code::FailedPrecondition, "ORDER_STATE");
    app.verify_ok().await;
}

async fn refund_after_earned_points_were_spent(app: &TestApp) {
    let member_id = app.create_member("r2").await;
    app.authorize(ec_order("a", "EC-S", &member_id, "10000", 0))
        .await
        .expect("authorize");
    app.capture("c", "EC-S").await.expect("capture"); // +100
    app.record_sale(store_sale("s", "R-S", card_ref("r2"), "100", 100))
        .await
        .expect("spend all");
    assert_eq!(app.available(&member_id).await, 0);

    let too_much = app.refund("r0", "EC-S", "10000.01").await.unwrap_err();
    assert_refused(&too_much, Code::FailedPrecondition, "REFUND_EXCEEDS_TOTAL");
    let result = app.refund("r1", "EC-S", "10000").await.expect("refund");
    assert_eq!(
        (result.points_reversed, result.points_shortfall),
        (100, 100)
    );
    assert_eq!(
        app.available(&member_id).await,
        0,
        "the balance never goes below zero"
    );
    app.verify_ok().await;
}

async fn refund_by_lines(app: &TestApp) {
    let member_id = app.create_member("r3").await;
    let mut request = ec_order("a", "EC-L", &member_id, "0", 0);
    request.basket = Some(crate::helpers::basket(&["6000", "4000"]));
    app.authorize(request).await.expect("authorize");
    app.capture("c", "EC-L").await.expect("capture"); // +100
    let result = app
        .refund_lines("r", "EC-L", "L2", 1)
        .await
        .expect("refund line");
    assert_eq!(result.order.unwrap().refunded_amount, "4000");
    assert_eq!(result.points_reversed, 40);
    assert_eq!(app.available(&member_id).await, 60);
    app.verify_ok().await;
}

async fn orders_and_receipts_are_unique(app: &TestApp) {
    let member_id = app.create_member("u1").await;
    app.authorize(ec_order("a1", "EC-U", &member_id, "100", 0))
        .await
        .expect("first");
    let again = app
        .authorize(ec_order("a2", "EC-U", &member_id, "100", 0))
        .await
        .unwrap_err();
    assert_refused(&again, Code::AlreadyExists, "ORDER_EXISTS");

    app.record_sale(store_sale("s1", "R-U", card_ref("u1"), "100", 0))
        .await
        .expect("sale");
    let mut same_receipt = store_sale("s2", "R-U", card_ref("u1"), "100", 0);
    same_receipt.order_id = "another-order".into();
    let refused = app.record_sale(same_receipt).await.unwrap_err();
    assert_refused(&refused, Code::AlreadyExists, "RECEIPT_EXISTS");
}

async fn insufficient_points_hold_nothing(app: &TestApp) {
    let member_id = app.member_with_points("i1", 50).await;
    let refused = app
        .authorize(ec_order("a", "EC-I", &member_id, "1000", 51))
        .await
        .unwrap_err();
    assert_refused(&refused, Code::FailedPrecondition, "INSUFFICIENT_POINTS");
    let balance = app.balance(&member_id).await;
    assert_eq!((balance.available_points, balance.held_points), (50, 0));
    let missing = app.get_order("EC-I").await.unwrap_err();
    assert_refused(&missing, Code::NotFound, "ORDER_NOT_FOUND");
    app.verify_ok().await;
}

async fn unit_by_unit_line_refunds_add_up(app: &TestApp) {
    let member_id = app.create_member("r4").await;
    let mut request = ec_order("a", "EC-U3", &member_id, "0", 0);
    request.basket = Some(proto::Basket {
        lines: vec![proto::LineItem {
            line_id: "L1".into(),
            sku: "S".into(),
            category: "c".into(),
            quantity: 3,
            amount: "100".into(),
        }],
    });
    app.authorize(request).await.expect("authorize");
    app.capture("c", "EC-U3").await.expect("capture"); // +1

    let amounts: Vec<String> = [
        app.refund_lines("r1", "EC-U3", "L1", 1)
            .await
            .expect("first unit"),
        app.refund_lines("r2", "EC-U3", "L1", 1)
            .await
            .expect("second unit"),
        app.refund_lines("r3", "EC-U3", "L1", 1)
            .await
            .expect("third unit"),
    ]
    .iter()
    .map(|r| r.order.as_ref().unwrap().refunded_amount.clone())
    .collect();
    assert_eq!(amounts, vec!["33", "66", "100"]);
    let fourth = app.refund_lines("r4", "EC-U3", "L1", 1).await.unwrap_err();
    assert_eq!(fourth.code(), Code::FailedPrecondition, "{fourth:?}"); // the order is REFUNDED
    app.verify_ok().await;
}

async fn refund_restores_points_with_their_expiry_unless_expired(app: &TestApp) {
    app.set_program(|p| p.point_expiry_days = 30).await;
    let member_id = app.member_with_points("r5", 100).await; // lot expires on day 30
    let original_expiry = app.balance(&member_id).await.expiring[0].expires_at;
    app.clock.advance(Duration::hours(1)); // so the points the order earns expire later
    app.authorize(ec_order("a1", "EC-P1", &member_id, "1000", 60))
        .await
        .expect("authorize");
    app.capture("c1", "EC-P1").await.expect("capture"); // spends 60 of the lot, earns 9
    app.clock.advance(Duration::days(1));

    let restored = app.refund("r1", "EC-P1", "500").await.expect("half");
    assert_eq!(restored.points_restored, 30);
    let balance = app.balance(&member_id).await;
    let back = balance
        .expiring
        .iter()
        .find(|e| e.expires_at == original_expiry)
        .expect("the first lot");
    assert_eq!(
        back.points,
        40 + 30,
        "restored into the lot they came from, keeping its expiry"
    );

    app.advance(Duration::days(30)).await; // the first lot has expired
    let late = app.refund("r2", "EC-P1", "500").await.expect("rest");
    assert_eq!(late.points_restored, 0, "expired points are not restored");
    app.verify_ok().await;
}
