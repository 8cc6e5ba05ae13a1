//! Members over their lifetime (issue #23): order history, point transfers, coupon revocation
//! and campaign updates.

use chrono::Duration;
use omo::proto;
use tonic::Code;

use crate::helpers::{
    TestApp, assert_refused, basket, card_ref, ec_order, member_ref, store_sale, violated_fields,
};

crate::both_backends! {
    list_orders_pages_newest_first_with_lines => list_orders_pages_newest_first_with_lines,
}

async fn list_orders_as(
    client: &omo::client::Client,
    member: proto::MemberRef,
    page_size: i32,
    page_token: &str,
) -> Result<proto::ListOrdersResponse, tonic::Status> {
    client
        .checkout()
        .list_orders(proto::ListOrdersRequest {
            member: Some(member),
            page_size,
            page_token: page_token.into(),
        })
        .await
        .map(|r| r.into_inner())
}

async fn list_orders_pages_newest_first_with_lines(app: &TestApp) {
    // Arrange: three orders a minute apart (two register sales, one EC order of two lines),
    // and another member's order that must not show.
    let member = app.create_member("history-card").await;
    let other = app.create_member("other-card").await;
    app.record_sale(store_sale("s1", "r1", card_ref("history-card"), "1000", 0))
        .await
        .expect("sale 1");
    app.clock.advance(Duration::minutes(1));
    let mut ec = ec_order("a2", "ec-2", &member, "0", 0);
    ec.basket = Some(basket(&["300", "700"]));
    app.authorize(ec).await.expect("authorize");
    app.capture("c2", "ec-2").await.expect("capture");
    app.clock.advance(Duration::minutes(1));
    app.record_sale(store_sale("s3", "r3", card_ref("history-card"), "500", 0))
        .await
        .expect("sale 3");
    app.record_sale(store_sale("s4", "r4", member_ref(&other), "900", 0))
        .await
        .expect("other's sale");

    // Act: pages of two, as the app would walk them.
    let first = list_orders_as(&app.app_client, member_ref(&member), 2, "")
        .await
        .expect("page 1");
    let second = list_orders_as(
        &app.app_client,
        member_ref(&member),
        2,
        &first.next_page_token,
    )
    .await
    .expect("page 2");

    // Assert: newest first, every order once, each with its lines.
    let ids: Vec<&str> = first
        .orders
        .iter()
        .chain(&second.orders)
        .map(|o| o.order_id.as_str())
        .collect();
    assert_eq!(ids, ["shibuya-1-r3", "ec-2", "shibuya-1-r1"]);
    assert!(!first.next_page_token.is_empty());
    assert!(second.next_page_token.is_empty());
    let ec = &first.orders[1];
    assert_eq!(ec.lines.len(), 2);
    let line = ec.lines[1].item.as_ref().expect("item");
    assert_eq!((line.line_id.as_str(), line.amount.as_str()), ("L2", "700"));
    assert!(ec.created_at.is_some());
    let seconds = |o: &proto::Order| o.created_at.as_ref().map(|t| t.seconds);
    assert!(seconds(&first.orders[0]) > seconds(ec));

    // The checkout and admin keys see the same history; a register may not list it.
    let by_checkout = list_orders_as(&app.checkout, card_ref("history-card"), 0, "")
        .await
        .expect("checkout lists");
    assert_eq!(by_checkout.orders.len(), 3);
    let denied = list_orders_as(&app.register, member_ref(&member), 0, "")
        .await
        .unwrap_err();
    assert_eq!(denied.code(), Code::PermissionDenied);
    let missing = list_orders_as(&app.admin, member_ref("m_nobody"), 0, "")
        .await
        .unwrap_err();
    assert_refused(&missing, Code::NotFound, "MEMBER_NOT_FOUND");
    let bad = list_orders_as(&app.admin, member_ref(&member), 501, "zz")
        .await
        .unwrap_err();
    assert_eq!(bad.code(), Code::InvalidArgument);
    assert_eq!(violated_fields(&bad), ["page_size", "page_token"]);
}
