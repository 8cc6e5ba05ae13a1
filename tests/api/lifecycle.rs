//! Members over their lifetime (issue #23): order history, point transfers, coupon revocation
//! and campaign updates.

use chrono::Duration;
use omo::proto;
use tonic::Code;

use crate::helpers::{
    Backend, TestApp, assert_refused, basket, card_ref, ec_order, get_member_as, identifier,
    member_ref, store_sale, successes, violated_fields,
};

crate::both_backends! {
    list_orders_pages_newest_first_with_lines => list_orders_pages_newest_first_with_lines,
    transfer_keeps_expiries_and_refuses_beyond_available => transfer_keeps_expiries_and_refuses_beyond_available,
    opposite_transfers_race_without_a_negative_balance => opposite_transfers_race_without_a_negative_balance,
    revoke_coupons_through_the_ledger => revoke_coupons_through_the_ledger,
    update_campaign_limits_and_early_end => update_campaign_limits_and_early_end,
    update_member_and_unlink_identifier => update_member_and_unlink_identifier,
    erase_leaves_a_ledger_that_verifies => erase_leaves_a_ledger_that_verifies,
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

fn transfer_request(
    request_id: &str,
    from: proto::MemberRef,
    to: proto::MemberRef,
    points: i64,
) -> proto::TransferPointsRequest {
    proto::TransferPointsRequest {
        request_id: request_id.into(),
        from_member: Some(from),
        to_member: Some(to),
        points,
    }
}

async fn transfer_as(
    client: &omo::client::Client,
    request: proto::TransferPointsRequest,
) -> Result<proto::Transaction, tonic::Status> {
    client
        .ledger()
        .transfer_points(request)
        .await
        .map(|r| r.into_inner().transaction.expect("transaction"))
}

async fn transfer_keeps_expiries_and_refuses_beyond_available(app: &TestApp) {
    // Arrange: the giver has limited-time points expiring in 10 days (spent first) and
    // program points expiring in a year (earned 3 days later).
    let giver = app.create_member("giver-card").await;
    let receiver = app.member_with_points("receiver-card", 5).await;
    let soon = omo::domain::Clock::now(&app.clock) + Duration::days(10);
    app.admin
        .ledger()
        .adjust_points(proto::AdjustPointsRequest {
            request_id: "limited".into(),
            member: Some(member_ref(&giver)),
            points: 40,
            reason: "campaign".into(),
            expires_at: Some(omo::grpc::convert::timestamp(soon)),
        })
        .await
        .expect("limited grant");
    app.clock.advance(Duration::days(3));
    app.adjust_points("grant", &giver, 100, "welcome")
        .await
        .expect("grant");
    let giver_expiries = app.balance(&giver).await.expiring;

    // Act: the app moves 60 points (all 40 limited ones, then 20 of the others) by card.
    let request = transfer_request("t1", card_ref("giver-card"), member_ref(&receiver), 60);
    let transaction = transfer_as(&app.app_client, request.clone())
        .await
        .expect("transfer");

    // Assert: one transfer posting; the receiver's lots expire as the giver's did.
    assert_eq!(transaction.kind, "transfer");
    assert_eq!(transaction.postings.len(), 1);
    assert_eq!(transaction.postings[0].amount, 60);
    assert_eq!(app.available(&giver).await, 80);
    let received = app.balance(&receiver).await;
    assert_eq!(received.available_points, 65);
    assert_eq!(received.limited_points, 40);
    let expiries: Vec<(i64, Option<i64>)> = received
        .expiring
        .iter()
        .map(|e| (e.points, e.expires_at.as_ref().map(|t| t.seconds)))
        .collect();
    let of_giver = |i: usize| giver_expiries[i].expires_at.as_ref().map(|t| t.seconds);
    assert_eq!(expiries[0], (40, of_giver(0)));
    assert!(expiries.contains(&(20, of_giver(1))), "{expiries:?}");
    // The same request again answers the same transaction and moves nothing more.
    let again = transfer_as(&app.app_client, request).await.expect("replay");
    assert_eq!(again.transaction_id, transaction.transaction_id);
    assert_eq!(app.available(&giver).await, 80);

    // Refusals: more than available, the same member twice, a role without the right.
    let too_much = transfer_as(
        &app.app_client,
        transfer_request("t2", member_ref(&giver), member_ref(&receiver), 81),
    )
    .await
    .unwrap_err();
    assert_refused(&too_much, Code::FailedPrecondition, "INSUFFICIENT_POINTS");
    let same = transfer_as(
        &app.admin,
        transfer_request("t3", card_ref("giver-card"), member_ref(&giver), 1),
    )
    .await
    .unwrap_err();
    assert_eq!(same.code(), Code::InvalidArgument);
    assert_eq!(violated_fields(&same), ["to_member"]);
    let bad = transfer_as(
        &app.admin,
        transfer_request("", member_ref(&giver), member_ref(&giver), 0),
    )
    .await
    .unwrap_err();
    assert_eq!(violated_fields(&bad), ["request_id", "to_member", "points"]);
    let denied = transfer_as(
        &app.checkout,
        transfer_request("t4", member_ref(&giver), member_ref(&receiver), 1),
    )
    .await
    .unwrap_err();
    assert_eq!(denied.code(), Code::PermissionDenied);
    assert_eq!(app.available(&giver).await, 80);
    app.verify_ok().await;
}

async fn opposite_transfers_race_without_a_negative_balance(app: &TestApp) {
    // Arrange
    let a = app.member_with_points("race-a", 50).await;
    let b = app.member_with_points("race-b", 50).await;

    // Act: 40 transfers of 10 points race, half each way (more than either side has).
    let mut tasks = Vec::new();
    for i in 0..40 {
        let client = app.app_client.clone();
        let (from, to) = if i % 2 == 0 { (&a, &b) } else { (&b, &a) };
        let request = transfer_request(&format!("race-{i}"), member_ref(from), member_ref(to), 10);
        tasks.push(tokio::spawn(
            async move { transfer_as(&client, request).await },
        ));
    }
    let moved = successes(tasks, Code::FailedPrecondition, "INSUFFICIENT_POINTS").await;

    // Assert: points are neither made nor lost, nobody is below zero, the ledger verifies.
    assert!(moved > 0);
    let (left_a, left_b) = (app.available(&a).await, app.available(&b).await);
    assert_eq!(left_a + left_b, 100);
    assert!(left_a >= 0 && left_b >= 0);
    app.verify_ok().await;
}

async fn create_campaign(app: &TestApp, campaign_id: &str, issue_limit: i32) {
    app.admin
        .coupons()
        .create_campaign(proto::CreateCampaignRequest {
            request_id: String::new(),
            campaign: Some(proto::Campaign {
                campaign_id: campaign_id.into(),
                name: format!("campaign {campaign_id}"),
                discount: Some(proto::campaign::Discount::AmountOff("100".into())),
                issue_limit,
                ..Default::default()
            }),
        })
        .await
        .expect("create campaign");
}

async fn revoke_as(
    client: &omo::client::Client,
    request_id: &str,
    code: &str,
) -> Result<proto::Coupon, tonic::Status> {
    client
        .coupons()
        .revoke_coupon(proto::RevokeCouponRequest {
            request_id: request_id.into(),
            code: code.into(),
            reason: "issued by mistake".into(),
        })
        .await
        .map(|r| r.into_inner().coupon.expect("coupon"))
}

async fn revoke_coupons_through_the_ledger(app: &TestApp) {
    // Arrange: a member holds two coupons; one is reserved by an open order.
    let member = app.create_member("wallet-card").await;
    create_campaign(app, "spring", 0).await;
    let kept = app
        .issue_coupon("i1", "spring", &member)
        .await
        .expect("issue");
    let revoked = app
        .issue_coupon("i2", "spring", &member)
        .await
        .expect("issue");
    let mut order = ec_order("a1", "o-1", &member, "1000", 0);
    order.coupon_codes = vec![kept.code.clone()];
    app.authorize(order).await.expect("authorize");

    // Act: revoke the free one (by its code in lower case, as a person may type it).
    let coupon = revoke_as(&app.admin, "r1", &revoked.code.to_lowercase())
        .await
        .expect("revoke");

    // Assert: revoked, out of the wallet, unusable, and once only.
    assert_eq!(coupon.state, proto::CouponState::Revoked as i32);
    let again = revoke_as(&app.admin, "r1", &revoked.code.to_lowercase())
        .await
        .expect("replay");
    assert_eq!(again, coupon);
    let twice = revoke_as(&app.admin, "r2", &revoked.code)
        .await
        .unwrap_err();
    assert_refused(&twice, Code::FailedPrecondition, "COUPON_NOT_ACTIVE");
    let wallet = app
        .admin
        .coupons()
        .list_coupons(proto::ListCouponsRequest {
            member: Some(member_ref(&member)),
            ..Default::default()
        })
        .await
        .expect("wallet")
        .into_inner()
        .coupons;
    assert!(wallet.iter().all(|c| c.code != revoked.code));
    let mut use_it = ec_order("a2", "o-2", &member, "1000", 0);
    use_it.coupon_codes = vec![revoked.code.clone()];
    let refused = app.authorize(use_it).await.unwrap_err();
    assert_refused(&refused, Code::FailedPrecondition, "COUPON_NOT_ACTIVE");

    // A reserved coupon belongs to its order; other refusals.
    let reserved = revoke_as(&app.admin, "r3", &kept.code).await.unwrap_err();
    assert_refused(&reserved, Code::FailedPrecondition, "COUPON_RESERVED");
    let unknown = revoke_as(&app.admin, "r4", "ZZZZ2222").await.unwrap_err();
    assert_refused(&unknown, Code::NotFound, "COUPON_NOT_FOUND");
    let denied = revoke_as(&app.app_client, "r5", &kept.code)
        .await
        .unwrap_err();
    assert_eq!(denied.code(), Code::PermissionDenied);
    let bad = revoke_as(&app.admin, "", "").await.unwrap_err();
    assert_eq!(violated_fields(&bad), ["request_id", "code"]);
    // The ledger agrees: verify counts revoked rows against campaign:spring:revoked.
    app.verify_ok().await;
}

async fn update_campaign_as(
    app: &TestApp,
    request_id: &str,
    campaign: proto::Campaign,
    paths: &[&str],
) -> Result<proto::Campaign, tonic::Status> {
    app.admin
        .coupons()
        .update_campaign(proto::UpdateCampaignRequest {
            request_id: request_id.into(),
            campaign: Some(campaign),
            update_mask: Some(prost_types::FieldMask {
                paths: paths.iter().map(|p| p.to_string()).collect(),
            }),
        })
        .await
        .map(|r| r.into_inner().campaign.expect("campaign"))
}

async fn update_campaign_limits_and_early_end(app: &TestApp) {
    // Arrange: three coupons of a campaign limited to five.
    let member = app.create_member("limits-card").await;
    create_campaign(app, "summer", 5).await;
    for i in 0..3 {
        app.issue_coupon(&format!("i{i}"), "summer", &member)
            .await
            .expect("issue");
    }
    let change = |name: &str, issue_limit: i32| proto::Campaign {
        campaign_id: "summer".into(),
        name: name.into(),
        issue_limit,
        ..Default::default()
    };

    // Act + Assert: a limit below what is issued is refused and changes nothing.
    let below = update_campaign_as(app, "u1", change("", 2), &["issue_limit"])
        .await
        .unwrap_err();
    assert_refused(&below, Code::FailedPrecondition, "ISSUE_LIMIT_BELOW_ISSUED");
    // Renamed and limited to exactly what is issued: the next issue is exhausted.
    let updated = update_campaign_as(
        app,
        "u2",
        change("Summer sale", 3),
        &["name", "issue_limit"],
    )
    .await
    .expect("update");
    assert_eq!(
        (updated.name.as_str(), updated.issue_limit),
        ("Summer sale", 3)
    );
    assert!(updated.discount.is_some(), "unmasked fields stay");
    let exhausted = app.issue_coupon("i9", "summer", &member).await.unwrap_err();
    assert_refused(&exhausted, Code::ResourceExhausted, "CAMPAIGN_EXHAUSTED");
    // Raised again, then ended early (ends_at = now): issuing stops.
    update_campaign_as(app, "u3", change("", 10), &["issue_limit"])
        .await
        .expect("raise");
    app.issue_coupon("i4", "summer", &member)
        .await
        .expect("issue under the new limit");
    let now = omo::domain::Clock::now(&app.clock);
    let ended = update_campaign_as(
        app,
        "u4",
        proto::Campaign {
            campaign_id: "summer".into(),
            ends_at: Some(omo::grpc::convert::timestamp(now)),
            ..Default::default()
        },
        &["ends_at"],
    )
    .await
    .expect("end early");
    assert_eq!(ended.name, "Summer sale");
    let closed = app.issue_coupon("i5", "summer", &member).await.unwrap_err();
    assert_refused(&closed, Code::FailedPrecondition, "CAMPAIGN_CLOSED");
    let fetched = app
        .admin
        .coupons()
        .get_campaign(proto::GetCampaignRequest {
            campaign_id: "summer".into(),
        })
        .await
        .expect("get")
        .into_inner()
        .campaign
        .expect("campaign");
    assert_eq!(fetched, ended);

    // Bad requests name their fields; unknown campaigns are NOT_FOUND.
    let bad = update_campaign_as(app, "u5", change("", -1), &["issue_limit", "discount"])
        .await
        .unwrap_err();
    assert_eq!(
        violated_fields(&bad),
        ["update_mask", "campaign.issue_limit"]
    );
    let unknown = update_campaign_as(
        app,
        "u6",
        proto::Campaign {
            campaign_id: "nope".into(),
            ..change("x", 1)
        },
        &["name"],
    )
    .await
    .unwrap_err();
    assert_refused(&unknown, Code::NotFound, "CAMPAIGN_NOT_FOUND");
    app.verify_ok().await;
}

fn mask(paths: &[&str]) -> Option<prost_types::FieldMask> {
    Some(prost_types::FieldMask {
        paths: paths.iter().map(|p| p.to_string()).collect(),
    })
}

async fn update_member_and_unlink_identifier(app: &TestApp) {
    // Arrange: a member known by card and email.
    let member = app.create_member("profile-card").await;
    app.admin
        .members()
        .link_identifier(proto::LinkIdentifierRequest {
            request_id: "link".into(),
            member: Some(member_ref(&member)),
            identifier: Some(identifier("email", "hana@example.com")),
        })
        .await
        .expect("link");
    let update = |request_id: &str, name: &str, paths: &[&str]| proto::UpdateMemberRequest {
        request_id: request_id.into(),
        member: Some(card_ref("profile-card")),
        display_name: name.into(),
        attributes: [("birth_month".to_string(), "04".to_string())].into(),
        update_mask: mask(paths),
    };

    // Act: the app sets name and attributes, then the name alone.
    app.app_client
        .members()
        .update_member(update("u1", "Hana", &["display_name", "attributes"]))
        .await
        .expect("update");
    let renamed = app
        .app_client
        .members()
        .update_member(update("u2", "Hana S.", &["display_name"]))
        .await
        .expect("rename")
        .into_inner()
        .member
        .expect("member");

    // Assert
    assert_eq!(renamed.display_name, "Hana S.");
    assert_eq!(
        renamed.attributes.get("birth_month").map(String::as_str),
        Some("04")
    );
    let bad = app
        .app_client
        .members()
        .update_member(update("", "", &["state"]))
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&bad), ["request_id", "update_mask"]);

    // Unlink the email: it no longer finds the member, and another member may take it.
    let unlink = |request_id: &str, id: proto::Identifier| proto::UnlinkIdentifierRequest {
        request_id: request_id.into(),
        member: Some(member_ref(&member)),
        identifier: Some(id),
    };
    let unlinked = app
        .app_client
        .members()
        .unlink_identifier(unlink("x1", identifier("email", "hana@example.com")))
        .await
        .expect("unlink")
        .into_inner()
        .member
        .expect("member");
    assert_eq!(unlinked.identifiers, [identifier("card", "profile-card")]);
    let email = proto::MemberRef {
        r#ref: Some(proto::member_ref::Ref::Identifier(identifier(
            "email",
            "hana@example.com",
        ))),
    };
    let gone = get_member_as(&app.admin, email).await.unwrap_err();
    assert_refused(&gone, Code::NotFound, "MEMBER_NOT_FOUND");
    let other = app.create_member("other-card").await;
    app.admin
        .members()
        .link_identifier(proto::LinkIdentifierRequest {
            request_id: "relink".into(),
            member: Some(member_ref(&other)),
            identifier: Some(identifier("email", "hana@example.com")),
        })
        .await
        .expect("the freed email links elsewhere");
    // Someone else's identifier is not the member's to unlink.
    let not_theirs = app
        .app_client
        .members()
        .unlink_identifier(unlink("x2", identifier("card", "other-card")))
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&not_theirs), ["identifier"]);
    let denied = app
        .register
        .members()
        .unlink_identifier(unlink("x3", identifier("card", "profile-card")))
        .await
        .unwrap_err();
    assert_eq!(denied.code(), Code::PermissionDenied);
    app.verify_ok().await;
}

async fn erase(
    app: &TestApp,
    request_id: &str,
    member: &str,
) -> Result<proto::Member, tonic::Status> {
    app.admin
        .members()
        .erase_member(proto::EraseMemberRequest {
            request_id: request_id.into(),
            member: Some(member_ref(member)),
        })
        .await
        .map(|r| r.into_inner().member.expect("member"))
}

async fn erase_leaves_a_ledger_that_verifies(app: &TestApp) {
    // Arrange: available points, pending EC points, an active coupon and a name.
    app.set_program(|p| p.ec_pending_days = 14).await;
    let member = app.member_with_points("erase-card", 300).await;
    app.authorize(ec_order("a1", "ec-1", &member, "5000", 0))
        .await
        .expect("authorize");
    app.capture("c1", "ec-1").await.expect("capture");
    assert!(app.balance(&member).await.pending_points > 0);
    create_campaign(app, "welcome", 0).await;
    let coupon = app
        .issue_coupon("i1", "welcome", &member)
        .await
        .expect("issue");
    app.admin
        .members()
        .update_member(proto::UpdateMemberRequest {
            request_id: "name".into(),
            member: Some(member_ref(&member)),
            display_name: "Taro Yamada".into(),
            update_mask: mask(&["display_name"]),
            ..Default::default()
        })
        .await
        .expect("name");

    // Act
    let erased = erase(app, "e1", &member).await.expect("erase");

    // Assert: personal data gone, the id stays; nothing left to spend; coupon revoked.
    assert_eq!(erased.member_id, member);
    assert_eq!(erased.state, proto::MemberState::Erased as i32);
    assert!(erased.identifiers.is_empty() && erased.display_name.is_empty());
    let balance = app.balance(&member).await;
    assert_eq!((balance.available_points, balance.pending_points), (0, 0));
    let revoked = app
        .admin
        .coupons()
        .get_coupon(proto::GetCouponRequest {
            code: coupon.code.clone(),
        })
        .await
        .expect("coupon")
        .into_inner()
        .coupon
        .expect("coupon");
    assert_eq!(revoked.state, proto::CouponState::Revoked as i32);
    let by_card = get_member_as(&app.admin, card_ref("erase-card"))
        .await
        .unwrap_err();
    assert_refused(&by_card, Code::NotFound, "MEMBER_NOT_FOUND");
    let kinds: Vec<String> = app
        .admin
        .ledger()
        .list_transactions(proto::ListTransactionsRequest {
            member: Some(member_ref(&member)),
            page_size: 3,
            page_token: String::new(),
        })
        .await
        .expect("history")
        .into_inner()
        .transactions
        .into_iter()
        .map(|t| t.kind)
        .collect();
    assert!(kinds.contains(&"forfeit".to_string()), "{kinds:?}");

    // The same request answers the same; every later mutation is refused.
    assert_eq!(erase(app, "e1", &member).await.expect("replay"), erased);
    let again = erase(app, "e2", &member).await.unwrap_err();
    assert_refused(&again, Code::FailedPrecondition, "MEMBER_ERASED");
    let adjust = app
        .adjust_points("late", &member, 10, "x")
        .await
        .unwrap_err();
    assert_refused(&adjust, Code::FailedPrecondition, "MEMBER_ERASED");
    let denied = app
        .app_client
        .members()
        .erase_member(proto::EraseMemberRequest {
            request_id: "e3".into(),
            member: Some(member_ref(&member)),
        })
        .await
        .unwrap_err();
    assert_eq!(denied.code(), Code::PermissionDenied);
    // The card is free for a new member.
    app.create_member("erase-card").await;
    app.verify_ok().await;

    // `omo verify` notices personal data put back behind the engine's back.
    tamper(
        app,
        &format!("update members set display_name = 'Taro' where member_id = '{member}'"),
    )
    .await;
    let report = app.app().engine().verify().await.expect("verify runs");
    assert!(!report.ok());
    assert!(report.summary().contains(&member), "{}", report.summary());
}

async fn tamper(app: &TestApp, sql: &str) {
    use sqlx::Executor;
    match app.backend {
        Backend::Sqlite => {
            let pool = sqlx::SqlitePool::connect(&app.database_url)
                .await
                .expect("sqlite");
            pool.execute(sql).await.expect("tamper");
        }
        Backend::Postgres => {
            let pool = sqlx::PgPool::connect(&app.database_url)
                .await
                .expect("postgres");
            pool.execute(sql).await.expect("tamper");
        }
    }
}
