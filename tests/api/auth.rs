//! API keys and roles, as the table at the end of API.md says.

use omo::proto;
use tonic::Code;

use crate::helpers::{
    TestApp, authorize_as, card_ref, ec_order, member_ref, record_sale_as, store_sale,
};

crate::both_backends! {
    missing_or_unknown_keys_are_unauthenticated => missing_or_unknown_keys_are_unauthenticated,
    roles_are_refused_outside_their_reach => roles_are_refused_outside_their_reach,
}

fn denied<T: std::fmt::Debug>(result: Result<T, tonic::Status>) {
    let status = result.expect_err("must be refused");
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
}

async fn missing_or_unknown_keys_are_unauthenticated(app: &TestApp) {
    let member_id = app.create_member("a1").await;
    let request = proto::GetBalanceRequest {
        member: Some(member_ref(&member_id)),
    };
    let status = app
        .anonymous
        .ledger()
        .get_balance(request.clone())
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated);
    let status = app
        .admin
        .with_key("omo_not_a_real_key")
        .ledger()
        .get_balance(request)
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated);
    // Health needs no key.
    let mut health = tonic_health::pb::health_client::HealthClient::new(app.anonymous.channel());
    let serving = health
        .check(tonic_health::pb::HealthCheckRequest {
            service: String::new(),
        })
        .await
        .expect("health");
    assert_eq!(
        serving.into_inner().status,
        tonic_health::pb::health_check_response::ServingStatus::Serving as i32
    );
    // So does reflection (v1; grpcurl uses v1alpha), and it lists the omo services.
    use tonic_reflection::pb::v1::{
        ServerReflectionRequest, server_reflection_client::ServerReflectionClient,
        server_reflection_request::MessageRequest, server_reflection_response::MessageResponse,
    };
    let mut reflection = ServerReflectionClient::new(app.anonymous.channel());
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut answers = reflection
        .server_reflection_info(tokio_stream::iter(vec![request]))
        .await
        .expect("reflection")
        .into_inner();
    let answer = answers
        .message()
        .await
        .expect("answer")
        .expect("one answer");
    let Some(MessageResponse::ListServicesResponse(list)) = answer.message_response else {
        panic!("not a service list: {answer:?}");
    };
    assert!(
        list.service
            .iter()
            .any(|s| s.name == "omo.v1.CheckoutService"),
        "{list:?}"
    );
}

async fn roles_are_refused_outside_their_reach(app: &TestApp) {
    let member_id = app.member_with_points("a2", 1000).await;
    let adjust = proto::AdjustPointsRequest {
        expires_at: None,
        request_id: "x".into(),
        member: Some(member_ref(&member_id)),
        points: 1,
        reason: "r".into(),
    };
    for client in [&app.checkout, &app.register, &app.app_client] {
        denied(client.ledger().adjust_points(adjust.clone()).await);
        denied(
            client
                .stores()
                .list_stores(proto::ListStoresRequest::default())
                .await,
        );
        denied(
            client
                .program()
                .get_program(proto::GetProgramRequest {})
                .await,
        );
        denied(
            client
                .members()
                .merge_members(proto::MergeMembersRequest {
                    request_id: "m".into(),
                    source_member_id: member_id.clone(),
                    target_member_id: "m_x".into(),
                })
                .await,
        );
    }
    // checkout: EC only.
    denied(
        record_sale_as(
            &app.checkout,
            store_sale("s", "R1", card_ref("a2"), "100", 0),
        )
        .await,
    );
    // app: APP channel only.
    denied(authorize_as(&app.app_client, ec_order("a", "EC-A", &member_id, "100", 0)).await);
    // register: STORE channel at its own store only; no member creation.
    denied(authorize_as(&app.register, ec_order("a", "EC-B", &member_id, "100", 0)).await);
    denied(
        record_sale_as(
            &app.other_register,
            store_sale("s", "R2", card_ref("a2"), "100", 0),
        )
        .await,
    );
    denied(
        app.register
            .members()
            .create_member(proto::CreateMemberRequest {
                request_id: "c".into(),
                identifiers: vec![],
                display_name: "x".into(),
            })
            .await,
    );
    denied(
        app.register
            .ledger()
            .list_transactions(proto::ListTransactionsRequest {
                member: Some(member_ref(&member_id)),
                page_size: 10,
                page_token: String::new(),
            })
            .await,
    );
    // A register cannot touch another store's order, nor the EC backend a store order: to them
    // it is missing (security.rs checks the answers are the same as for a missing order).
    app.record_sale(store_sale("s", "R3", card_ref("a2"), "100", 0))
        .await
        .expect("own store");
    let status = app
        .other_register
        .checkout()
        .get_order(proto::GetOrderRequest {
            order_id: "shibuya-1-R3".into(),
        })
        .await
        .expect_err("another store's order");
    assert_eq!(status.code(), Code::NotFound, "{status:?}");
    let status = app
        .refund("r", "shibuya-1-R3", "10")
        .await
        .expect_err("a store order for the EC backend");
    assert_eq!(status.code(), Code::NotFound, "{status:?}");
    // Allowed: what the table grants.
    app.register
        .ledger()
        .get_balance(proto::GetBalanceRequest {
            member: Some(card_ref("a2")),
        })
        .await
        .expect("register balance");
    app.app_client
        .members()
        .create_member(proto::CreateMemberRequest {
            request_id: "c".into(),
            identifiers: vec![],
            display_name: "app user".into(),
        })
        .await
        .expect("app creates members");
}
