//! Races: no request may take a balance below zero, whatever the interleaving.

use crate::helpers::{TestApp, card_ref, ec_order, store_sale};

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
            register.checkout().record_sale(sale).await
        }));
    }
    let mut succeeded = 0;
    for task in tasks {
        match task.await.expect("task") {
            Ok(_) => succeeded += 1,
            Err(status) => crate::helpers::assert_refused(
                &status,
                tonic::Code::FailedPrecondition,
                "INSUFFICIENT_POINTS",
            ),
        }
    }

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
                checkout
                    .checkout()
                    .authorize(ec_order(
                        &format!("a{i}"),
                        &format!("EC-{i}"),
                        &member_id,
                        "100",
                        25,
                    ))
                    .await
                    .map(|_| ())
            } else {
                let sale = store_sale(
                    &format!("s{i}"),
                    &format!("R{i}"),
                    card_ref("race-2"),
                    "100",
                    25,
                );
                register.checkout().record_sale(sale).await.map(|_| ())
            }
        }));
    }
    let mut succeeded = 0;
    for task in tasks {
        match task.await.expect("task") {
            Ok(()) => succeeded += 1,
            Err(status) => crate::helpers::assert_refused(
                &status,
                tonic::Code::FailedPrecondition,
                "INSUFFICIENT_POINTS",
            ),
        }
    }
    assert_eq!(succeeded, 4);
    let balance = app.balance(&member_id).await;
    assert_eq!(balance.available_points, 0);
    app.verify_ok().await;
}

async fn concurrent_sweeps_settle_each_lot_once(app: &TestApp) {
    // Arrange: members whose lots expire, swept by two sweepers at once (two replicas) while
    // their owners keep shopping.
    super::points::set_program(app, |p| p.point_expiry_days = 10).await;
    let mut members = Vec::new();
    for i in 0..20 {
        members.push(app.member_with_points(&format!("sweep-{i}"), 100).await);
    }
    app.clock.advance(chrono::Duration::days(5));
    for member_id in &members {
        app.admin
            .ledger()
            .adjust_points(omo::proto::AdjustPointsRequest {
                request_id: format!("late-{member_id}"),
                member: Some(crate::helpers::member_ref(member_id)),
                points: 100,
                reason: "second lot".into(),
            })
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
            register.checkout().record_sale(sale).await
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
