//! Group commit: one failing command in a batch fails alone; the others commit; a request_id
//! used twice in one batch has one effect.

use omo::{
    domain::{
        Money,
        auth::Role,
        command::{Command, OrderRequest},
        model::{Channel, LineItem, MemberRef},
    },
    engine::BatchItem,
};

use crate::helpers::TestApp;

crate::both_backends! {
    a_failing_command_does_not_sink_its_batch => a_failing_command_does_not_sink_its_batch,
    a_request_id_twice_in_one_batch_has_one_effect => a_request_id_twice_in_one_batch_has_one_effect,
}

fn sale(member_id: &str, receipt_no: &str, points: i64) -> Command {
    Command::RecordSale(OrderRequest {
        order_id: format!("batch-{receipt_no}"),
        member: MemberRef::Id(member_id.to_string()),
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
    })
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
