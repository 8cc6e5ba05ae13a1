//! Group commit: one failing command in a batch fails alone; the others commit; a request_id
//! used twice in one batch has one effect; a later command sees an earlier one's effects before
//! anything is committed.

use omo::{
    domain::{
        Money,
        auth::Role,
        command::{
            CheckoutCommand, Command, MemberCommand, OrderRequest, PointsCommand, RefundScope,
            SettingsCommand,
        },
        model::{Channel, Identifier, LineItem, MemberRef, Store},
    },
    engine::BatchItem,
};

use crate::helpers::TestApp;

crate::both_backends! {
    a_failing_command_does_not_sink_its_batch => a_failing_command_does_not_sink_its_batch,
    a_request_id_twice_in_one_batch_has_one_effect => a_request_id_twice_in_one_batch_has_one_effect,
    a_batch_sees_its_own_effects => a_batch_sees_its_own_effects,
}

fn sale(member_id: &str, receipt_no: &str, points: i64) -> Command {
    CheckoutCommand::RecordSale(order(
        MemberRef::Id(member_id.to_string()),
        receipt_no,
        points,
    ))
    .into()
}

/// A ¥1,000 register order at shibuya redeeming `points` (`receipt_no` also names the order).
fn order(member: MemberRef, receipt_no: &str, points: i64) -> OrderRequest {
    OrderRequest {
        order_id: format!("batch-{receipt_no}"),
        member,
        channel: Channel::Store,
        store_id: "shibuya".into(),
        register_id: "1".into(),
        lines: vec![LineItem {
            line_id: "1".into(),
            sku: "SKU".into(),
            category: "food".into(),
            quantity: 1,
            amount: "1000".parse::<Money>().unwrap(),
        }],
        points_to_redeem: points,
        coupon_codes: vec![],
        receipt_no: receipt_no.into(),
        occurred_at: None,
    }
}

/// An admin caller, and a maker of batch items for it.
async fn admin_items(app: &TestApp) -> impl Fn(&str, Command) -> BatchItem {
    let engine = app.app().engine();
    let key = engine
        .create_api_key(Role::Admin, None, "batch".into())
        .await
        .unwrap();
    let caller = engine.authenticate(&key).await.unwrap().unwrap();
    move |request_id: &str, command| BatchItem {
        caller: caller.clone(),
        request_id: Some(request_id.into()),
        command,
    }
}

async fn a_failing_command_does_not_sink_its_batch(app: &TestApp) {
    // Arrange: 100 points; the second sale asks for more than is left after the first.
    let member_id = app.member_with_points("batch-1", 100).await;
    let engine = app.app().engine();
    let item = admin_items(app).await;

    // Act: three sales in one group commit.
    let results = engine
        .execute_batch(vec![
            item("b1", sale(&member_id, "R1", 60)),
            item("b2", sale(&member_id, "R2", 60)),
            item("b3", sale(&member_id, "R3", 40)),
        ])
        .await;

    // Assert: the first and third commit, the second alone is refused and wrote nothing.
    assert!(results[0].is_ok(), "{:?}", results[0]);
    let refusal = results[1].as_ref().unwrap_err().to_string();
    assert!(refusal.contains("not enough points"), "{refusal}");
    assert!(results[2].is_ok(), "{:?}", results[2]);
    // 100 − 60 − 40 + floor(940 × 1 %) + floor(960 × 1 %)
    assert_eq!(app.available(&member_id).await, 18);
    // The refusal is remembered like any other.
    let again = engine
        .execute_batch(vec![item("b2", sale(&member_id, "R2", 60))])
        .await;
    assert!(
        again[0]
            .as_ref()
            .unwrap_err()
            .to_string()
            .contains("not enough points")
    );
    app.verify_ok().await;
}

async fn a_request_id_twice_in_one_batch_has_one_effect(app: &TestApp) {
    // Arrange: the same request twice, then the same id with another request, in one batch
    // (the second sees the first's remembered outcome before anything is committed).
    let member_id = app.member_with_points("batch-2", 100).await;
    let engine = app.app().engine();
    let item = admin_items(app).await;

    // Act
    let results = engine
        .execute_batch(vec![
            item("twice", sale(&member_id, "T1", 50)),
            item("twice", sale(&member_id, "T1", 50)),
            item("twice", sale(&member_id, "T2", 10)),
        ])
        .await;

    // Assert: one sale, answered twice alike; the other request under that id is refused.
    let first = results[0].as_ref().expect("first");
    let replay = results[1].as_ref().expect("replay");
    assert_eq!(format!("{first:?}"), format!("{replay:?}"));
    let reused = results[2].as_ref().unwrap_err().to_string();
    assert!(reused.contains("request_id"), "{reused}");
    // 100 − 50 + floor(950 × 1 %)
    assert_eq!(app.available(&member_id).await, 59);
    app.verify_ok().await;
}

async fn a_batch_sees_its_own_effects(app: &TestApp) {
    // Arrange: a member created, credited, and then buying, all in one group commit, with a
    // refused command in the middle and an admin write (written row by row in the flush) beside.
    let engine = app.app().engine();
    let item = admin_items(app).await;
    let card = Identifier {
        kind: "card".into(),
        value: "mix-1".into(),
    };
    let by_card = || MemberRef::Identifier(card.clone());
    let mut authorize = order(by_card(), "M1", 30);
    authorize.receipt_no = String::new();
    let store = Store {
        store_id: "namba".into(),
        name: "Namba".into(),
        location: omo::domain::model::LatLng {
            latitude: 34.66,
            longitude: 135.50,
        },
        time_zone: "Asia/Tokyo".into(),
        geofence_radius_m: 100.0,
        geofence_polygon: vec![],
    };

    // Act
    let results = engine
        .execute_batch(vec![
            item(
                "m-create",
                MemberCommand::CreateMember {
                    identifiers: vec![card.clone()],
                    display_name: "Mix".into(),
                }
                .into(),
            ),
            item("m-store", SettingsCommand::CreateStore(store).into()),
            item(
                "m-grant",
                PointsCommand::AdjustPoints {
                    expires_at: None,
                    member: by_card(),
                    points: 100,
                    reason: "welcome".into(),
                }
                .into(),
            ),
            item("m-auth", CheckoutCommand::Authorize(authorize).into()),
            item(
                "m-capture",
                CheckoutCommand::Capture {
                    order_id: "batch-M1".into(),
                }
                .into(),
            ),
            item(
                "m-void",
                CheckoutCommand::Void {
                    order_id: "batch-M1".into(),
                }
                .into(),
            ),
            item(
                "m-refund",
                CheckoutCommand::Refund {
                    order_id: "batch-M1".into(),
                    scope: RefundScope::Amount("1000".parse().unwrap()),
                }
                .into(),
            ),
            item(
                "m-sale",
                CheckoutCommand::RecordSale(order(by_card(), "M2", 100)).into(),
            ),
            item(
                "m-over",
                CheckoutCommand::RecordSale(order(by_card(), "M3", 10)).into(),
            ),
        ])
        .await;

    // Assert: every command but the void (after the capture) and the last sale (9 points left,
    // 10 asked) went through, each on what the ones before it did.
    let outcome: Vec<Result<(), String>> = results
        .iter()
        .map(|r| r.as_ref().map(|_| ()).map_err(|e| e.to_string()))
        .collect();
    for (i, result) in outcome.iter().enumerate() {
        match i {
            5 => assert!(
                result
                    .as_ref()
                    .is_err_and(|e| e.contains("void is not allowed")),
                "{i}: {result:?}"
            ),
            8 => assert!(
                result
                    .as_ref()
                    .is_err_and(|e| e.contains("not enough points")),
                "{i}: {result:?}"
            ),
            _ => assert!(result.is_ok(), "{i}: {result:?}"),
        }
    }
    // 100 granted; the order held and spent 30 and earned floor(970 × 1 %) = 9; its full
    // refund gave the 30 back and took the 9; the sale spent all 100 and earned floor(900 × 1 %).
    let Ok(omo::domain::command::Reply::Member(member)) = &results[0] else {
        panic!("a member: {:?}", results[0]);
    };
    assert_eq!(app.available(&member.member_id).await, 9);
    app.verify_ok().await;
}
