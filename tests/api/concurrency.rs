//! Races: no request may take a balance below zero, whatever the interleaving.

use tonic::Code;

use crate::helpers::{
    TestApp, authorize_as, card_ref, ec_order, record_sale_as, store_sale, successes,
};

crate::both_backends! {
    fifty_redemptions_against_ten_covered => fifty_redemptions_against_ten_covered,
    concurrent_authorizations_across_channels => concurrent_authorizations_across_channels,
    concurrent_sweeps_settle_each_lot_once => concurrent_sweeps_settle_each_lot_once,
}

async fn fifty_redemptions_against_ten_covered(app: &TestApp) {
    // Arrange: 100 points cover exactly 10 redemptions of 10.
    let member_id = app.member_with_points("race-1", 100).await;

    // Act: 50 register sales redeem 10 points each, all at once.
    let mut tasks = Vec::new();
    for i in 0..50 {
        let register = app.register.clone();
        tasks.push(tokio::spawn(async move {
            let sale = store_sale(
                &format!("race-{i}"),
                &format!("R{i}"),
                card_ref("race-1"),
                "10",
                10,
            );
            record_sale_as(&register, sale).await
        }));
    }
    let succeeded = successes(tasks, Code::FailedPrecondition, "INSUFFICIENT_POINTS").await;

    // Assert: exactly 10, the balance ends at 0, and the ledger is whole.
    assert_eq!(succeeded, 10);
    let balance = app.balance(&member_id).await;
    assert_eq!((balance.available_points, balance.held_points), (0, 0));
    app.verify_ok().await;
}

async fn concurrent_authorizations_across_channels(app: &TestApp) {
    let member_id = app.member_with_points("race-2", 100).await;
    let mut tasks = Vec::new();
    for i in 0..20 {
        let (checkout, register, member_id) = (
            app.checkout.clone(),
            app.register.clone(),
            member_id.clone(),
        );
        tasks.push(tokio::spawn(async move {
            if i % 2 == 0 {
                let request = ec_order(&format!("a{i}"), &format!("EC-{i}"), &member_id, "100", 25);
                authorize_as(&checkout, request).await.map(|_| ())
            } else {
                let sale = store_sale(
                    &format!("s{i}"),
                    &format!("R{i}"),
                    card_ref("race-2"),
                    "100",
                    25,
                );
                record_sale_as(&register, sale).await.map(|_| ())
            }
        }));
    }
    let succeeded = successes(tasks, Code::FailedPrecondition, "INSUFFICIENT_POINTS").await;
    assert_eq!(succeeded, 4);
    let balance = app.balance(&member_id).await;
    assert_eq!(balance.available_points, 0);
    app.verify_ok().await;
}

async fn concurrent_sweeps_settle_each_lot_once(app: &TestApp) {
    // Arrange: members whose lots expire, swept by two sweepers at once (two replicas) while
    // their owners keep shopping.
    app.set_program(|p| p.point_expiry_days = 10).await;
    let mut members = Vec::new();
    for i in 0..20 {
        members.push(app.member_with_points(&format!("sweep-{i}"), 100).await);
    }
    app.clock.advance(chrono::Duration::days(5));
    for member_id in &members {
        app.adjust_points(&format!("late-{member_id}"), member_id, 100, "second lot")
            .await
            .expect("second lot");
    }
    app.clock.advance(chrono::Duration::days(6)); // the first lots expire

    // Act
    let engine = app.app().engine().clone();
    let (first, second) = (engine.clone(), engine.clone());
    let sweeps = tokio::spawn(async move { tokio::join!(first.sweep(), second.sweep()) });
    let mut sales = Vec::new();
    for i in 0..20 {
        let register = app.register.clone();
        sales.push(tokio::spawn(async move {
            let sale = store_sale(
                &format!("sw{i}"),
                &format!("SW{i}"),
                card_ref(&format!("sweep-{i}")),
                "50",
                50,
            );
            record_sale_as(&register, sale).await
        }));
    }
    let (a, b) = sweeps.await.expect("sweeps");
    a.expect("first sweep");
    b.expect("second sweep");
    for sale in sales {
        sale.await
            .expect("task")
            .expect("each member can spend from the live lot");
    }

    // Assert: each expired lot expired once; 100 − 50 + floor(0 × 1 %) = 50 left each.
    for member_id in &members {
        assert_eq!(app.available(member_id).await, 50);
    }
    app.verify_ok().await;
}
