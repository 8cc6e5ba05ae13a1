//! Earning and spending across channels, lots, expiry and pending points.

use chrono::Duration;
use omo::proto;
use tonic::Code;

use crate::helpers::{TestApp, assert_refused, card_ref, ec_order, member_ref, store_sale};

crate::both_backends! {
    earn_at_store_spend_at_ec => earn_at_store_spend_at_ec,
    earn_at_ec_spend_at_store => earn_at_ec_spend_at_store,
    lots_expire_soonest_first => lots_expire_soonest_first,
    ec_points_stay_pending_then_mature => ec_points_stay_pending_then_mature,
    admin_debit_cannot_go_below_zero => admin_debit_cannot_go_below_zero,
    concurrent_partial_program_updates_compose => concurrent_partial_program_updates_compose,
}

async fn earn_at_store_spend_at_ec(app: &TestApp) {
    // Arrange: a member who shops at the Shibuya register with her card.
    let member_id = app.create_member("card-1").await;
    let sale = app
        .record_sale(store_sale("sale-1", "R1", card_ref("card-1"), "12000", 0))
        .await
        .expect("sale");
    assert_eq!(sale.points_earned, 120);
    assert_eq!(sale.state, proto::OrderState::Captured as i32);

    // Act: she spends those points online right away.
    let authorized = app
        .authorize(ec_order("auth-1", "EC-1", &member_id, "5000", 100))
        .await
        .expect("authorize");
    assert_eq!(authorized.amount_due, "4900");
    let held = app.balance(&member_id).await;
    assert_eq!((held.available_points, held.held_points), (20, 100));
    let captured = app.capture("cap-1", "EC-1").await.expect("capture");

    // Assert: 120 − 100 + floor(4900 × 1 %) = 69.
    assert_eq!(captured.points_earned, 49);
    let balance = app.balance(&member_id).await;
    assert_eq!((balance.available_points, balance.held_points), (69, 0));
    assert_eq!(balance.lifetime_earned_points, 169);
    assert_eq!(balance.lifetime_redeemed_points, 100);
    app.verify_ok().await;
}

async fn earn_at_ec_spend_at_store(app: &TestApp) {
    let member_id = app.create_member("card-2").await;
    app.authorize(ec_order("a", "EC-2", &member_id, "30000", 0))
        .await
        .expect("authorize");
    app.capture("c", "EC-2").await.expect("capture");
    assert_eq!(app.available(&member_id).await, 300);

    let sale = app
        .record_sale(store_sale("s", "R2", card_ref("card-2"), "1000", 300))
        .await
        .expect("sale");
    assert_eq!(
        (
            sale.points_redeemed,
            sale.amount_due.as_str(),
            sale.points_earned
        ),
        (300, "700", 7)
    );
    assert_eq!(app.available(&member_id).await, 7);

    // The register's redemption is booked to the store that took it.
    let transactions = app
        .admin
        .ledger()
        .list_transactions(proto::ListTransactionsRequest {
            member: Some(member_ref(&member_id)),
            page_size: 1,
            page_token: String::new(),
        })
        .await
        .expect("list")
        .into_inner();
    let sale_tx = &transactions.transactions[0];
    assert_eq!(sale_tx.kind, "sale");
    assert!(
        sale_tx
            .postings
            .iter()
            .any(|p| p.to_account == "program:redeemed:store:shibuya" && p.amount == 300)
    );
    assert!(
        !transactions.next_page_token.is_empty(),
        "older transactions follow"
    );
    app.verify_ok().await;
}

async fn lots_expire_soonest_first(app: &TestApp) {
    app.set_program(|p| p.point_expiry_days = 30).await;
    let member_id = app.member_with_points("card-3", 100).await; // expires day 30
    app.advance(Duration::days(10)).await;
    app.adjust_points("grant-2", &member_id, 50, "bonus")
        .await
        .expect("second lot"); // expires day 40
    let balance = app.balance(&member_id).await;
    assert_eq!(balance.expiring.len(), 2);
    assert_eq!(balance.expiring[0].points, 100);

    // Spending 60 takes them from the lot that expires first.
    app.record_sale(store_sale("s", "R3", card_ref("card-3"), "60", 60))
        .await
        .expect("sale");
    app.advance(Duration::days(21)).await; // day 31: the first lot (40 left) expires
    let balance = app.balance(&member_id).await;
    assert_eq!(balance.available_points, 50);
    assert_eq!(balance.expiring.len(), 1);
    app.advance(Duration::days(10)).await; // day 41: the second lot expires too
    assert_eq!(app.available(&member_id).await, 0);
    app.verify_ok().await;
}

async fn ec_points_stay_pending_then_mature(app: &TestApp) {
    app.set_program(|p| p.ec_pending_days = 14).await;
    let member_id = app.create_member("card-4").await;
    app.authorize(ec_order("a", "EC-4", &member_id, "10000", 0))
        .await
        .expect("authorize");
    let order = app.capture("c", "EC-4").await.expect("capture");
    assert_eq!(order.points_pending, 100);
    let balance = app.balance(&member_id).await;
    assert_eq!((balance.available_points, balance.pending_points), (0, 100));

    // Pending points cannot be spent.
    let refused = app
        .record_sale(store_sale("s", "R4", card_ref("card-4"), "500", 1))
        .await
        .unwrap_err();
    assert_refused(&refused, Code::FailedPrecondition, "INSUFFICIENT_POINTS");

    app.advance(Duration::days(14)).await;
    let balance = app.balance(&member_id).await;
    assert_eq!((balance.available_points, balance.pending_points), (100, 0));
    app.verify_ok().await;
}

async fn admin_debit_cannot_go_below_zero(app: &TestApp) {
    let member_id = app.member_with_points("card-5", 30).await;
    let refused = app
        .adjust_points("debit", &member_id, -31, "fix")
        .await
        .unwrap_err();
    assert_refused(&refused, Code::FailedPrecondition, "INSUFFICIENT_POINTS");
    let debit = app
        .adjust_points("debit-2", &member_id, -30, "fix")
        .await
        .expect("debit");
    assert_eq!(
        debit.postings[0].from_account,
        format!("member:{member_id}")
    );
    assert_eq!(app.available(&member_id).await, 0);
    app.verify_ok().await;
}

/// Sets one field of a program message.
type ProgramChange = fn(&mut proto::Program);

async fn concurrent_partial_program_updates_compose(app: &TestApp) {
    // Act: four admins each change one setting, all at once, each with an update_mask.
    let changes: [(&str, ProgramChange); 4] = [
        ("earn_rate", |p| p.earn_rate = "0.05".into()),
        ("point_expiry_days", |p| p.point_expiry_days = 30),
        ("hold_ttl_seconds", |p| p.hold_ttl_seconds = 600),
        ("ec_pending_days", |p| p.ec_pending_days = 7),
    ];
    let tasks: Vec<_> = changes
        .into_iter()
        .map(|(field, change)| {
            let admin = app.admin.clone();
            tokio::spawn(async move {
                let mut program = proto::Program::default();
                change(&mut program);
                admin
                    .program()
                    .update_program(proto::UpdateProgramRequest {
                        request_id: String::new(),
                        program: Some(program),
                        update_mask: Some(prost_types::FieldMask {
                            paths: vec![field.into()],
                        }),
                    })
                    .await
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("task").expect("update");
    }

    // Assert: none of the four was lost, and the rest kept its defaults.
    let program = app
        .admin
        .program()
        .get_program(proto::GetProgramRequest {})
        .await
        .expect("get")
        .into_inner()
        .program
        .unwrap();
    assert_eq!(program.earn_rate, "0.05");
    assert_eq!(
        (
            program.point_expiry_days,
            program.hold_ttl_seconds,
            program.ec_pending_days
        ),
        (30, 600, 7)
    );
    assert_eq!(program.currency_code, "JPY");
}
