//! Security at the edge: authorization before validation, orders out of reach look missing.

use omo::proto;
use tonic::Code;

use crate::helpers::{
    TestApp, assert_refused, authorize_as, basket, card_ref, ec_order, member_ref, record_sale_as,
    store_sale,
};

crate::both_backends! {
    permission_comes_before_validation => permission_comes_before_validation,
    a_forbidden_call_leaves_no_idempotency_record => a_forbidden_call_leaves_no_idempotency_record,
    another_stores_order_looks_missing => another_stores_order_looks_missing,
}

fn assert_denied<T: std::fmt::Debug>(result: Result<T, tonic::Status>) {
    let status = result.expect_err("must be refused");
    assert_refused(&status, Code::PermissionDenied, "PERMISSION_DENIED");
    assert!(
        !status.message().contains("invalid"),
        "a refused caller learns nothing of validation: {status:?}"
    );
}

/// A request whose every field is wrong.
fn malformed_program() -> proto::UpdateProgramRequest {
    proto::UpdateProgramRequest {
        program: Some(proto::Program {
            currency_code: "jpy".into(),
            point_value: "-1".into(),
            earn_rate: "many".into(),
            hold_ttl_seconds: -5,
            ..Default::default()
        }),
        ..Default::default()
    }
}

async fn permission_comes_before_validation(app: &TestApp) {
    // The same malformed body is INVALID_ARGUMENT for an admin, PERMISSION_DENIED for the others.
    let status = app
        .admin
        .program()
        .update_program(malformed_program())
        .await
        .expect_err("malformed");
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    for client in [&app.app_client, &app.checkout, &app.register] {
        assert_denied(client.program().update_program(malformed_program()).await);
        assert_denied(
            client
                .stores()
                .create_store(proto::CreateStoreRequest::default())
                .await,
        );
        assert_denied(
            client
                .coupons()
                .create_campaign(proto::CreateCampaignRequest::default())
                .await,
        );
        assert_denied(
            client
                .ledger()
                .adjust_points(proto::AdjustPointsRequest::default())
                .await,
        );
        assert_denied(
            client
                .members()
                .merge_members(proto::MergeMembersRequest::default())
                .await,
        );
    }
    assert_denied(
        app.register
            .members()
            .create_member(proto::CreateMemberRequest::default())
            .await,
    );
    // Channel and store scope are read from the raw request before it is validated.
    let mut bad_basket = basket(&["-5", "x"]);
    bad_basket.lines[0].quantity = -1;
    let mut wrong_store = store_sale("", "", card_ref(""), "0", -3);
    wrong_store.store_id = "umeda".into();
    wrong_store.basket = Some(bad_basket.clone());
    assert_denied(record_sale_as(&app.register, wrong_store).await);
    let mut store_sale_by_ec = store_sale("", "", card_ref(""), "0", -3);
    store_sale_by_ec.basket = Some(bad_basket.clone());
    assert_denied(record_sale_as(&app.checkout, store_sale_by_ec).await);
    let mut ec_by_app = ec_order("", "", "", "0", -1);
    ec_by_app.basket = Some(bad_basket.clone());
    assert_denied(authorize_as(&app.app_client, ec_by_app).await);
    assert_denied(
        app.register
            .checkout()
            .quote(proto::QuoteRequest {
                channel: proto::Channel::Store as i32,
                store_id: "umeda".into(),
                basket: Some(bad_basket),
                ..Default::default()
            })
            .await,
    );
    // A request naming no channel is left to validation: every role may check out on some
    // channel, so "channel is required" tells the caller nothing of another's reach.
    let mut no_channel = ec_order("", "", "", "0", -1);
    no_channel.channel = proto::Channel::Unspecified as i32;
    for client in [&app.admin, &app.app_client] {
        let status = authorize_as(client, no_channel.clone())
            .await
            .expect_err("malformed");
        assert!(
            crate::helpers::violated_fields(&status).contains(&"channel".to_string()),
            "{status:?}"
        );
    }
}

async fn a_forbidden_call_leaves_no_idempotency_record(app: &TestApp) {
    let member_id = app.create_member("f1").await;
    // An app key may not adjust points; its request_id stays free for an allowed call.
    assert_denied(
        app.app_client
            .ledger()
            .adjust_points(proto::AdjustPointsRequest {
                expires_at: None,
                request_id: "same-id".into(),
                member: Some(member_ref(&member_id)),
                points: 10,
                reason: "not yours".into(),
            })
            .await,
    );
    app.app_client
        .members()
        .create_member(proto::CreateMemberRequest {
            request_id: "same-id".into(),
            display_name: "app member".into(),
            ..Default::default()
        })
        .await
        .expect("the request_id was not taken by the refused call");
    // A register selling for another store: refused, and the id is then usable at its own.
    let mut elsewhere = store_sale("sale-1", "F1", card_ref("f1"), "1000", 0);
    elsewhere.store_id = "umeda".into();
    assert_denied(record_sale_as(&app.register, elsewhere).await);
    let order = record_sale_as(
        &app.register,
        store_sale("sale-1", "F1", card_ref("f1"), "1000", 0),
    )
    .await
    .expect("own store, same request_id");
    assert_eq!(order.points_earned, 10);
}

async fn another_stores_order_looks_missing(app: &TestApp) {
    app.create_member("o1").await;
    record_sale_as(
        &app.register,
        store_sale("s-1", "O1", card_ref("o1"), "1000", 0),
    )
    .await
    .expect("sale at shibuya");
    let order_id = "shibuya-1-O1";
    let other = app.other_register.checkout();
    // Each call on the real order, and on a missing one, with fresh request ids.
    let mut answers = Vec::new();
    for target in [order_id, "shibuya-1-missing"] {
        let get = other
            .clone()
            .get_order(proto::GetOrderRequest {
                order_id: target.into(),
            })
            .await
            .expect_err("out of reach");
        let capture = other
            .clone()
            .capture(proto::CaptureRequest {
                request_id: format!("cap-{target}"),
                order_id: target.into(),
            })
            .await
            .expect_err("out of reach");
        let void = other
            .clone()
            .void(proto::VoidRequest {
                request_id: format!("void-{target}"),
                order_id: target.into(),
            })
            .await
            .expect_err("out of reach");
        let refund = other
            .clone()
            .refund(proto::RefundRequest {
                request_id: format!("ref-{target}"),
                order_id: target.into(),
                amount: "100".into(),
                lines: vec![],
            })
            .await
            .expect_err("out of reach");
        let seen: Vec<_> = [get, capture, void, refund]
            .into_iter()
            .map(|status| {
                assert_refused(&status, Code::NotFound, "ORDER_NOT_FOUND");
                (status.code(), status.message().to_string())
            })
            .collect();
        answers.push(seen);
    }
    assert_eq!(answers[0], answers[1], "same answer as for a missing order");
    // The order itself is untouched and visible to its own store.
    let order = app
        .register
        .checkout()
        .get_order(proto::GetOrderRequest {
            order_id: order_id.into(),
        })
        .await
        .expect("own store")
        .into_inner()
        .order
        .expect("order");
    assert_eq!(order.state, proto::OrderState::Captured as i32);
}

/// The operator's setup of README "Security": the schema migrated by its owner, the server run
/// as a role that may read and write rows but change no schema. It serves, seals (beside an
/// open session of the owner) and verifies; its role cannot drop or create a table.
mod runtime_role_without_ddl {
    use sqlx::{Connection, Executor, PgConnection};

    use crate::helpers::{
        CliKeys, RoleClients, create_store_as, member_with_points_as, omo_cli, record_sale_as,
        serve, store_sale,
    };

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn postgres() {
        let admin_url = std::env::var("OMO_TEST_POSTGRES_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
        let Ok(mut admin) = PgConnection::connect(&admin_url).await else {
            assert_ne!(
                std::env::var("CI").as_deref(),
                Ok("true"),
                "PostgreSQL unreachable"
            );
            eprintln!("SKIPPED: PostgreSQL unreachable at {admin_url}");
            return;
        };
        let tag = format!("{:08x}", rand::random::<u32>());
        let (owner, app, database) = (
            format!("omo_test_owner_{tag}"),
            format!("omo_test_app_{tag}"),
            format!("omo_test_roles_{tag}"),
        );
        for sql in [
            format!("create role {owner} login"),
            format!("create role {app} login"),
            format!("create database {database} owner {owner}"),
            // So that the sealer sees whether the owner's sessions are in a transaction.
            format!("grant pg_read_all_stats to {app}"),
        ] {
            admin.execute(sql.as_str()).await.unwrap();
        }
        let base = admin_url.rsplit_once('/').expect("a URL with a database").0;
        let as_role = |role: &str| base.replacen("postgres@", &format!("{role}@"), 1);
        let owner_url = format!("{}/{database}", as_role(&owner));
        let app_url = format!("{}/{database}", as_role(&app));

        let outcome = tokio::spawn(scenario(owner_url, app_url, app.clone())).await;

        admin
            .execute(format!("drop database {database} with (force)").as_str())
            .await
            .unwrap();
        for role in [&app, &owner] {
            admin
                .execute(format!("drop role {role}").as_str())
                .await
                .unwrap();
        }
        if let Err(panic) = outcome {
            std::panic::resume_unwind(panic.into_panic());
        }
    }

    async fn scenario(owner_url: String, app_url: String, app: String) {
        // Arrange: migrations as the owner; the runtime role gets rows, not schema.
        omo_cli(&["migrate", "--database-url", &owner_url]);
        let mut owner = PgConnection::connect(&owner_url).await.unwrap();
        for sql in [
            "revoke create on schema public from public".to_string(),
            format!("grant usage on schema public to {app}"),
            format!("grant select, insert, update, delete on all tables in schema public to {app}"),
            format!("grant usage, select, update on all sequences in schema public to {app}"),
        ] {
            owner.execute(sql.as_str()).await.unwrap();
        }

        // Act: keys, a server, a sale, sealing and verify, all as the runtime role.
        let keys = CliKeys::create(&app_url);
        let server = serve(&app_url, &[("OMO_SEAL_INTERVAL_MS", "100")]).await;
        let clients = RoleClients::connect(server.endpoint(), &keys).await;
        create_store_as(&clients.admin, "shibuya").await;
        let member = member_with_points_as(&clients.admin, "role-1", 100).await;
        let sale = store_sale("s1", "s1", crate::helpers::member_ref(&member), "1000", 0);
        record_sale_as(&clients.register, sale).await.expect("sale");
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        drop(server);
        let report = omo_cli(&["verify", "--database-url", &app_url]);
        let mut runtime = PgConnection::connect(&app_url).await.unwrap();
        let drop_table = runtime.execute("drop table transactions").await;
        let create_table = runtime.execute("create table mine (id int)").await;

        // Assert
        assert!(report.contains("all invariants hold"), "{report}");
        assert!(!report.contains("newest seal hash (none yet)"), "{report}");
        assert!(drop_table.is_err(), "the runtime role dropped a table");
        assert!(create_table.is_err(), "the runtime role created a table");
    }
}
