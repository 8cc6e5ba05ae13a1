//! Bad input: INVALID_ARGUMENT with one field violation per bad field, and no write.

use omo::proto;

use crate::helpers::{TestApp, basket, card_ref, ec_order, store_sale, violated_fields};

crate::both_backends! {
    bad_baskets_name_every_bad_field => bad_baskets_name_every_bad_field,
    empty_and_oversize_ids_are_refused => empty_and_oversize_ids_are_refused,
    bad_adjustments_and_refunds => bad_adjustments_and_refunds,
}

async fn bad_baskets_name_every_bad_field(app: &TestApp) {
    let member_id = app.member_with_points("b1", 100).await;
    let mut request = ec_order("a", "EC-1", &member_id, "100", -5);
    request.basket = Some(basket(&["-100", "12abc", "1e3"]));
    let status = app.authorize(request).await.unwrap_err();
    let fields = violated_fields(&status);
    for field in [
        "basket.lines[0].amount",
        "basket.lines[1].amount",
        "basket.lines[2].amount",
        "points_to_redeem",
    ] {
        assert!(
            fields.iter().any(|f| f == field),
            "{field} missing from {fields:?}"
        );
    }
    // Nothing was written.
    let missing = app.get_order("EC-1").await.unwrap_err();
    assert_eq!(missing.code(), tonic::Code::NotFound);
    assert_eq!(app.balance(&member_id).await.held_points, 0);
}

async fn empty_and_oversize_ids_are_refused(app: &TestApp) {
    let member_id = app.create_member("b2").await;
    let mut request = ec_order("", "", &member_id, "100", 0);
    request.channel = proto::Channel::Unspecified as i32;
    let fields = violated_fields(&app.authorize(request).await.unwrap_err());
    for field in ["request_id", "order_id", "channel"] {
        assert!(
            fields.iter().any(|f| f == field),
            "{field} missing from {fields:?}"
        );
    }
    let long = "x".repeat(129);
    let mut sale = store_sale(&long, &long, card_ref("b2"), "100", 0);
    sale.order_id = "has:colon".into();
    let fields = violated_fields(&app.record_sale(sale).await.unwrap_err());
    for field in ["request_id", "receipt_no", "order_id"] {
        assert!(
            fields.iter().any(|f| f == field),
            "{field} missing from {fields:?}"
        );
    }
    let status = app
        .admin
        .members()
        .create_member(proto::CreateMemberRequest {
            request_id: "c".into(),
            identifiers: vec![crate::helpers::identifier("", "")],
            display_name: "n".repeat(201),
        })
        .await
        .unwrap_err();
    let fields = violated_fields(&status);
    assert!(fields.len() >= 3, "{fields:?}");
    let status = app
        .admin
        .ledger()
        .get_balance(proto::GetBalanceRequest { member: None })
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&status), vec!["member".to_string()]);
}

async fn bad_adjustments_and_refunds(app: &TestApp) {
    let member_id = app.member_with_points("b3", 100).await;
    let status = app.adjust_points("z", &member_id, 0, "").await.unwrap_err();
    let fields = violated_fields(&status);
    assert!(
        fields.contains(&"points".to_string()) && fields.contains(&"reason".to_string()),
        "{fields:?}"
    );
    let status = app.refund("r", "EC-9", "-1").await.unwrap_err();
    assert_eq!(violated_fields(&status), vec!["amount".to_string()]);
    assert_eq!(app.available(&member_id).await, 100);
    app.verify_ok().await;
}
