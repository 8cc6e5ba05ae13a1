//! Plausibility caps of the program: points one order may earn, and how old a replayed register
//! sale may be. A refused order writes nothing.

use chrono::Duration;
use omo::{domain::Clock, proto};
use tonic::Code;

use crate::helpers::{
    TestApp, assert_refused, authorize_as, card_ref, ec_order, record_sale_as, store_sale,
    violated_fields,
};

crate::both_backends! {
    an_order_earning_past_the_cap_is_refused => an_order_earning_past_the_cap_is_refused,
    a_sale_older_than_the_offline_bound_is_refused => a_sale_older_than_the_offline_bound_is_refused,
}

async fn program(app: &TestApp) -> proto::Program {
    app.admin
        .program()
        .get_program(proto::GetProgramRequest {})
        .await
        .expect("program")
        .into_inner()
        .program
        .expect("program")
}

async fn an_order_earning_past_the_cap_is_refused(app: &TestApp) {
    let defaults = program(app).await;
    assert_eq!(defaults.max_points_per_order, 0, "no cap by default");
    assert_eq!(defaults.max_offline_age_days, 30);
    let status = app
        .admin
        .program()
        .update_program(proto::UpdateProgramRequest {
            program: Some(proto::Program {
                max_points_per_order: -1,
                max_offline_age_days: 5000,
                ..Default::default()
            }),
            update_mask: Some(prost_types::FieldMask {
                paths: vec!["max_points_per_order".into(), "max_offline_age_days".into()],
            }),
            request_id: String::new(),
        })
        .await
        .expect_err("invalid");
    let mut fields = violated_fields(&status);
    fields.sort();
    assert_eq!(
        fields,
        [
            "program.max_offline_age_days",
            "program.max_points_per_order"
        ]
    );
    app.set_program(|p| p.max_points_per_order = 50).await;

    let member_id = app.member_with_points("cap1", 0).await;
    // ¥10,000 at 1 % would earn 100 points: refused, nothing written.
    let status = record_sale_as(
        &app.register,
        store_sale("big", "C1", card_ref("cap1"), "10000", 0),
    )
    .await
    .expect_err("over the cap");
    assert_refused(&status, Code::FailedPrecondition, "EARN_CAP_EXCEEDED");
    let status = app
        .register
        .checkout()
        .get_order(proto::GetOrderRequest {
            order_id: "shibuya-1-C1".into(),
        })
        .await
        .expect_err("no order was written");
    assert_eq!(status.code(), Code::NotFound);
    // The same refusal for an EC order, before any hold.
    let status = authorize_as(
        &app.checkout,
        ec_order("ec-big", "EC-C1", &member_id, "6000", 0),
    )
    .await
    .expect_err("over the cap");
    assert_refused(&status, Code::FailedPrecondition, "EARN_CAP_EXCEEDED");
    assert_eq!(
        app.get_order("EC-C1").await.unwrap_err().code(),
        Code::NotFound
    );
    // Exactly at the cap is fine.
    let order = record_sale_as(
        &app.register,
        store_sale("ok", "C2", card_ref("cap1"), "5000", 0),
    )
    .await
    .expect("at the cap");
    assert_eq!(order.points_earned, 50);
    assert_eq!(app.available(&member_id).await, 50);
    app.verify_ok().await;
}

async fn a_sale_older_than_the_offline_bound_is_refused(app: &TestApp) {
    app.set_program(|p| p.max_offline_age_days = 7).await;
    let member_id = app.create_member("old1").await;
    let at = |days: i64| {
        let t = app.clock.now() - Duration::days(days);
        Some(prost_types::Timestamp {
            seconds: t.timestamp(),
            nanos: 0,
        })
    };
    let mut stale = store_sale("stale", "T1", card_ref("old1"), "1000", 0);
    stale.occurred_at = at(8);
    let status = record_sale_as(&app.register, stale)
        .await
        .expect_err("too old");
    assert_refused(&status, Code::FailedPrecondition, "TOO_OLD");
    assert_eq!(app.available(&member_id).await, 0);
    let mut recent = store_sale("recent", "T2", card_ref("old1"), "1000", 0);
    recent.occurred_at = at(6);
    let order = record_sale_as(&app.register, recent)
        .await
        .expect("within the bound");
    assert_eq!(order.points_earned, 10);
    // 0 lifts the bound.
    app.set_program(|p| p.max_offline_age_days = 0).await;
    let mut ancient = store_sale("ancient", "T3", card_ref("old1"), "1000", 0);
    ancient.occurred_at = at(400);
    record_sale_as(&app.register, ancient)
        .await
        .expect("no bound");
}
