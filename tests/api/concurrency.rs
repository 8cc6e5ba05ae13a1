//! Races: no request may take a balance below zero, whatever the interleaving.

use crate::helpers::{TestApp, card_ref, ec_order, store_sale};

crate::both_backends! {
    fifty_redemptions_against_ten_covered => fifty_redemptions_against_ten_covered,
    concurrent_authorizations_across_channels => concurrent_authorizations_across_channels,
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
        if task.await.expect("task").is_ok() {
            succeeded += 1;
        }
    }
    assert_eq!(succeeded, 4);
    let balance = app.balance(&member_id).await;
    assert_eq!(balance.available_points, 0);
    app.verify_ok().await;
}
