//! Coupons in the ledger: scope, stacking, expiry, ownership, limits, the EC → store coupon,
//! restore on refund, and races on single-use coupons and budgets.

use chrono::Duration;
use omo::proto::{self, campaign::Discount};
use tonic::Code;

use crate::helpers::{TestApp, assert_refused, basket, card_ref, ec_order, member_ref, store_sale};

crate::both_backends! {
    scope_and_min_spend => scope_and_min_spend,
    stacking => stacking,
    expiry_by_moved_clock => expiry_by_moved_clock,
    another_members_code_is_refused => another_members_code_is_refused,
    public_code_counts_per_member => public_code_counts_per_member,
    budget_exhaustion => budget_exhaustion,
    ec_order_issues_a_store_coupon => ec_order_issues_a_store_coupon,
    void_releases_and_full_refund_restores => void_releases_and_full_refund_restores,
    single_use_coupon_race => single_use_coupon_race,
    issue_limit_race => issue_limit_race,
    per_member_limit_race => per_member_limit_race,
}

fn campaign(campaign_id: &str, amount_off: &str) -> proto::Campaign {
    proto::Campaign {
        campaign_id: campaign_id.into(),
        name: format!("campaign {campaign_id}"),
        discount: Some(Discount::AmountOff(amount_off.into())),
        stackable: true,
        ..Default::default()
    }
}

async fn create_campaign(app: &TestApp, campaign: proto::Campaign) {
    app.admin
        .coupons()
        .create_campaign(proto::CreateCampaignRequest {
            campaign: Some(campaign),
        })
        .await
        .expect("create campaign");
}

async fn issue(
    app: &TestApp,
    request_id: &str,
    campaign_id: &str,
    member_id: &str,
) -> Result<proto::Coupon, tonic::Status> {
    app.admin
        .coupons()
        .issue_coupon(proto::IssueCouponRequest {
            request_id: request_id.into(),
            campaign_id: campaign_id.into(),
            member: Some(member_ref(member_id)),
        })
        .await
        .map(|r| r.into_inner().coupon.unwrap())
}

async fn quote(
    app: &TestApp,
    member_id: &str,
    channel: proto::Channel,
    store_id: &str,
    total: &str,
    codes: &[&str],
) -> proto::Quote {
    app.admin
        .checkout()
        .quote(proto::QuoteRequest {
            member: Some(member_ref(member_id)),
            channel: channel as i32,
            store_id: store_id.into(),
            basket: Some(basket(&[total])),
            points_to_redeem: 0,
            coupon_codes: codes.iter().map(|c| c.to_string()).collect(),
        })
        .await
        .expect("quote")
        .into_inner()
        .quote
        .unwrap()
}

async fn coupon_state(app: &TestApp, code: &str) -> i32 {
    app.admin
        .coupons()
        .get_coupon(proto::GetCouponRequest { code: code.into() })
        .await
        .expect("coupon")
        .into_inner()
        .coupon
        .unwrap()
        .state
}

async fn scope_and_min_spend(app: &TestApp) {
    let member_id = app.create_member("c1").await;
    create_campaign(
        app,
        proto::Campaign {
            channels: vec![proto::Channel::Store as i32],
            store_ids: vec!["shibuya".into()],
            min_spend: "1000".into(),
            ..campaign("shibuya-200", "200")
        },
    )
    .await;
    let code = issue(app, "i", "shibuya-200", &member_id)
        .await
        .expect("issue")
        .code;

    let reason = |q: proto::Quote| q.coupons[0].reason.clone();
    assert_eq!(
        reason(quote(app, &member_id, proto::Channel::Ec, "", "2000", &[&code]).await),
        "COUPON_CHANNEL"
    );
    assert_eq!(
        reason(
            quote(
                app,
                &member_id,
                proto::Channel::Store,
                "umeda",
                "2000",
                &[&code]
            )
            .await
        ),
        "COUPON_STORE"
    );
    assert_eq!(
        reason(
            quote(
                app,
                &member_id,
                proto::Channel::Store,
                "shibuya",
                "999",
                &[&code]
            )
            .await
        ),
        "COUPON_MIN_SPEND"
    );
    // Codes are case-insensitive on input.
    let ok = quote(
        app,
        &member_id,
        proto::Channel::Store,
        "shibuya",
        "2000",
        &[&code.to_lowercase()],
    )
    .await;
    assert!(ok.coupons[0].applicable);
    assert_eq!(
        (
            ok.coupons[0].discount.as_str(),
            ok.amount_due.as_str(),
            ok.points_to_earn
        ),
        ("200", "1800", 18)
    );

    let refused = app
        .register
        .checkout()
        .record_sale(proto::RecordSaleRequest {
            coupon_codes: vec![code.clone()],
            ..store_sale("s", "R1", card_ref("c1"), "999", 0)
        })
        .await
        .unwrap_err();
    assert_refused(&refused, Code::FailedPrecondition, "COUPON_MIN_SPEND");
    let sale = app
        .register
        .checkout()
        .record_sale(proto::RecordSaleRequest {
            coupon_codes: vec![code.clone()],
            ..store_sale("s2", "R2", card_ref("c1"), "2000", 0)
        })
        .await
        .expect("sale")
        .into_inner()
        .order
        .unwrap();
    assert_eq!(
        (
            sale.coupon_discount.as_str(),
            sale.amount_due.as_str(),
            sale.points_earned
        ),
        ("200", "1800", 18)
    );
    assert_eq!(
        coupon_state(app, &code).await,
        proto::CouponState::Redeemed as i32
    );
    let reused = app
        .register
        .checkout()
        .record_sale(proto::RecordSaleRequest {
            coupon_codes: vec![code],
            ..store_sale("s3", "R3", card_ref("c1"), "2000", 0)
        })
        .await
        .unwrap_err();
    assert_refused(&reused, Code::FailedPrecondition, "COUPON_NOT_ACTIVE");
    app.verify_ok().await;
}

async fn stacking(app: &TestApp) {
    let member_id = app.create_member("c2").await;
    create_campaign(app, campaign("stack-a", "100")).await;
    create_campaign(app, campaign("stack-b", "100")).await;
    create_campaign(
        app,
        proto::Campaign {
            stackable: false,
            ..campaign("solo", "300")
        },
    )
    .await;
    let a = issue(app, "a", "stack-a", &member_id).await.unwrap().code;
    let b = issue(app, "b", "stack-b", &member_id).await.unwrap().code;
    let solo = issue(app, "s", "solo", &member_id).await.unwrap().code;

    let both = quote(
        app,
        &member_id,
        proto::Channel::Store,
        "shibuya",
        "1000",
        &[&a, &b],
    )
    .await;
    assert!(both.coupons.iter().all(|c| c.applicable));
    assert_eq!(both.amount_due, "800");
    let mixed = quote(
        app,
        &member_id,
        proto::Channel::Store,
        "shibuya",
        "1000",
        &[&a, &solo],
    )
    .await;
    assert_eq!(mixed.coupons[1].reason, "COUPON_NOT_STACKABLE");
    assert_eq!(mixed.amount_due, "900");
}

async fn expiry_by_moved_clock(app: &TestApp) {
    let member_id = app.create_member("c3").await;
    create_campaign(
        app,
        proto::Campaign {
            validity_days: 7,
            ..campaign("week", "100")
        },
    )
    .await;
    let code = issue(app, "i", "week", &member_id).await.unwrap().code;
    app.advance(Duration::days(7)).await;

    let quoted = quote(
        app,
        &member_id,
        proto::Channel::Store,
        "shibuya",
        "1000",
        &[&code],
    )
    .await;
    assert_eq!(quoted.coupons[0].reason, "COUPON_EXPIRED");
    assert_eq!(
        coupon_state(app, &code).await,
        proto::CouponState::Expired as i32
    );
    let wallet = app
        .admin
        .coupons()
        .list_coupons(proto::ListCouponsRequest {
            member: Some(member_ref(&member_id)),
            include_inactive: false,
        })
        .await
        .unwrap()
        .into_inner();
    assert!(wallet.coupons.is_empty());
    let all = app
        .admin
        .coupons()
        .list_coupons(proto::ListCouponsRequest {
            member: Some(member_ref(&member_id)),
            include_inactive: true,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(all.coupons.len(), 1);
    app.verify_ok().await;
}

async fn another_members_code_is_refused(app: &TestApp) {
    let owner = app.create_member("c4-owner").await;
    app.create_member("c4-other").await;
    create_campaign(app, campaign("owned", "100")).await;
    let code = issue(app, "i", "owned", &owner).await.unwrap().code;
    let refused = app
        .register
        .checkout()
        .record_sale(proto::RecordSaleRequest {
            coupon_codes: vec![code],
            ..store_sale("s", "R1", card_ref("c4-other"), "1000", 0)
        })
        .await
        .unwrap_err();
    assert_refused(&refused, Code::FailedPrecondition, "COUPON_NOT_OWNED");
    let unknown = app
        .register
        .checkout()
        .record_sale(proto::RecordSaleRequest {
            coupon_codes: vec!["NOPE2345".into()],
            ..store_sale("s2", "R2", card_ref("c4-other"), "1000", 0)
        })
        .await
        .unwrap_err();
    assert_refused(&unknown, Code::NotFound, "COUPON_NOT_FOUND");
}

async fn public_code_counts_per_member(app: &TestApp) {
    app.create_member("c5").await;
    create_campaign(
        app,
        proto::Campaign {
            public_code: "welcome".into(),
            per_member_limit: 1,
            ..campaign("welcome", "150")
        },
    )
    .await;
    let sale = app
        .register
        .checkout()
        .record_sale(proto::RecordSaleRequest {
            coupon_codes: vec!["WELCOME".into()],
            ..store_sale("s", "R1", card_ref("c5"), "1000", 0)
        })
        .await
        .expect("first use")
        .into_inner()
        .order
        .unwrap();
    assert_eq!(sale.coupon_discount, "150");
    let again = app
        .register
        .checkout()
        .record_sale(proto::RecordSaleRequest {
            coupon_codes: vec!["welcome".into()],
            ..store_sale("s2", "R2", card_ref("c5"), "1000", 0)
        })
        .await
        .unwrap_err();
    assert_refused(&again, Code::ResourceExhausted, "MEMBER_LIMIT");
    app.verify_ok().await;
}

async fn budget_exhaustion(app: &TestApp) {
    let member_id = app.create_member("c6").await;
    create_campaign(
        app,
        proto::Campaign {
            issue_limit: 2,
            ..campaign("budget", "100")
        },
    )
    .await;
    issue(app, "1", "budget", &member_id).await.expect("first");
    issue(app, "2", "budget", &member_id).await.expect("second");
    assert_refused(
        &issue(app, "3", "budget", &member_id).await.unwrap_err(),
        Code::ResourceExhausted,
        "CAMPAIGN_EXHAUSTED",
    );
}

async fn ec_order_issues_a_store_coupon(app: &TestApp) {
    let member_id = app.create_member("c7").await;
    create_campaign(
        app,
        proto::Campaign {
            channels: vec![proto::Channel::Store as i32],
            issue_on_capture: Some(proto::IssueOnCapture {
                min_total: "5000".into(),
                channels: vec![proto::Channel::Ec as i32],
            }),
            ..campaign("ec-to-store", "500")
        },
    )
    .await;
    app.checkout
        .checkout()
        .authorize(ec_order("a1", "EC-SMALL", &member_id, "4999", 0))
        .await
        .unwrap();
    app.checkout
        .checkout()
        .capture(proto::CaptureRequest {
            request_id: "c1".into(),
            order_id: "EC-SMALL".into(),
        })
        .await
        .unwrap();
    app.checkout
        .checkout()
        .authorize(ec_order("a2", "EC-BIG", &member_id, "6000", 0))
        .await
        .unwrap();
    app.checkout
        .checkout()
        .capture(proto::CaptureRequest {
            request_id: "c2".into(),
            order_id: "EC-BIG".into(),
        })
        .await
        .unwrap();

    let wallet = app
        .app_client
        .coupons()
        .list_coupons(proto::ListCouponsRequest {
            member: Some(member_ref(&member_id)),
            include_inactive: false,
        })
        .await
        .unwrap()
        .into_inner()
        .coupons;
    assert_eq!(wallet.len(), 1);
    assert_eq!(wallet[0].source, "order:EC-BIG");
    let sale = app
        .register
        .checkout()
        .record_sale(proto::RecordSaleRequest {
            coupon_codes: vec![wallet[0].code.clone()],
            ..store_sale("s", "R1", card_ref("c7"), "2000", 0)
        })
        .await
        .expect("used in store")
        .into_inner()
        .order
        .unwrap();
    assert_eq!(sale.amount_due, "1500");
    app.verify_ok().await;
}

async fn void_releases_and_full_refund_restores(app: &TestApp) {
    let member_id = app.create_member("c8").await;
    create_campaign(app, campaign("restore", "300")).await;
    let code = issue(app, "i", "restore", &member_id).await.unwrap().code;
    let with_code = |request_id: &str, order_id: &str| proto::AuthorizeRequest {
        coupon_codes: vec![code.clone()],
        ..ec_order(request_id, order_id, &member_id, "3000", 0)
    };

    app.checkout
        .checkout()
        .authorize(with_code("a1", "EC-1"))
        .await
        .expect("authorize");
    assert_eq!(
        coupon_state(app, &code).await,
        proto::CouponState::Reserved as i32
    );
    app.checkout
        .checkout()
        .void(proto::VoidRequest {
            request_id: "v".into(),
            order_id: "EC-1".into(),
        })
        .await
        .expect("void");
    assert_eq!(
        coupon_state(app, &code).await,
        proto::CouponState::Active as i32
    );

    app.checkout
        .checkout()
        .authorize(with_code("a2", "EC-2"))
        .await
        .expect("authorize again");
    app.checkout
        .checkout()
        .capture(proto::CaptureRequest {
            request_id: "c".into(),
            order_id: "EC-2".into(),
        })
        .await
        .expect("capture");
    assert_eq!(
        coupon_state(app, &code).await,
        proto::CouponState::Redeemed as i32
    );
    let partial = app
        .checkout
        .checkout()
        .refund(proto::RefundRequest {
            request_id: "r1".into(),
            order_id: "EC-2".into(),
            amount: "1000".into(),
            lines: vec![],
        })
        .await
        .unwrap()
        .into_inner()
        .result
        .unwrap();
    assert!(partial.coupons_restored.is_empty());
    let full = app
        .checkout
        .checkout()
        .refund(proto::RefundRequest {
            request_id: "r2".into(),
            order_id: "EC-2".into(),
            amount: "2000".into(),
            lines: vec![],
        })
        .await
        .unwrap()
        .into_inner()
        .result
        .unwrap();
    assert_eq!(full.coupons_restored, vec![code.clone()]);
    assert_eq!(
        coupon_state(app, &code).await,
        proto::CouponState::Active as i32
    );
    app.verify_ok().await;
}

async fn single_use_coupon_race(app: &TestApp) {
    let member_id = app.create_member("c9").await;
    create_campaign(app, campaign("single", "100")).await;
    let code = issue(app, "i", "single", &member_id).await.unwrap().code;
    let mut tasks = Vec::new();
    for i in 0..20 {
        let (checkout, register, code, member_id) = (
            app.checkout.clone(),
            app.register.clone(),
            code.clone(),
            member_id.clone(),
        );
        tasks.push(tokio::spawn(async move {
            if i % 2 == 0 {
                let request = proto::AuthorizeRequest {
                    coupon_codes: vec![code],
                    ..ec_order(&format!("a{i}"), &format!("EC-{i}"), &member_id, "1000", 0)
                };
                checkout.checkout().authorize(request).await.map(|_| ())
            } else {
                let request = proto::RecordSaleRequest {
                    coupon_codes: vec![code],
                    ..store_sale(
                        &format!("s{i}"),
                        &format!("R{i}"),
                        card_ref("c9"),
                        "1000",
                        0,
                    )
                };
                register.checkout().record_sale(request).await.map(|_| ())
            }
        }));
    }
    let mut succeeded = 0;
    for task in tasks {
        match task.await.unwrap() {
            Ok(()) => succeeded += 1,
            Err(status) => assert_refused(&status, Code::FailedPrecondition, "COUPON_NOT_ACTIVE"),
        }
    }
    assert_eq!(succeeded, 1);
    app.verify_ok().await;
}

async fn issue_limit_race(app: &TestApp) {
    create_campaign(
        app,
        proto::Campaign {
            issue_limit: 5,
            ..campaign("five", "100")
        },
    )
    .await;
    let mut members = Vec::new();
    for i in 0..20 {
        members.push(app.create_member(&format!("c10-{i}")).await);
    }
    let tasks: Vec<_> = members
        .iter()
        .enumerate()
        .map(|(i, member_id)| {
            let (admin, member_id) = (app.admin.clone(), member_id.clone());
            tokio::spawn(async move {
                admin
                    .coupons()
                    .issue_coupon(proto::IssueCouponRequest {
                        request_id: format!("i{i}"),
                        campaign_id: "five".into(),
                        member: Some(member_ref(&member_id)),
                    })
                    .await
            })
        })
        .collect();
    let mut issued = 0;
    for task in tasks {
        match task.await.unwrap() {
            Ok(_) => issued += 1,
            Err(status) => assert_refused(&status, Code::ResourceExhausted, "CAMPAIGN_EXHAUSTED"),
        }
    }
    assert_eq!(issued, 5);
    let mut held = 0;
    for member_id in &members {
        held += app
            .admin
            .coupons()
            .list_coupons(proto::ListCouponsRequest {
                member: Some(member_ref(member_id)),
                include_inactive: true,
            })
            .await
            .unwrap()
            .into_inner()
            .coupons
            .len();
    }
    assert_eq!(held, 5);
    app.verify_ok().await;
}

async fn per_member_limit_race(app: &TestApp) {
    let member_id = app.create_member("c11").await;
    create_campaign(
        app,
        proto::Campaign {
            per_member_limit: 2,
            ..campaign("two-each", "100")
        },
    )
    .await;
    let tasks: Vec<_> = (0..20)
        .map(|i| {
            let (admin, member_id) = (app.admin.clone(), member_id.clone());
            tokio::spawn(async move {
                admin
                    .coupons()
                    .issue_coupon(proto::IssueCouponRequest {
                        request_id: format!("i{i}"),
                        campaign_id: "two-each".into(),
                        member: Some(member_ref(&member_id)),
                    })
                    .await
            })
        })
        .collect();
    let mut issued = 0;
    for task in tasks {
        match task.await.unwrap() {
            Ok(_) => issued += 1,
            Err(status) => assert_refused(&status, Code::ResourceExhausted, "MEMBER_LIMIT"),
        }
    }
    assert_eq!(issued, 2);
    app.verify_ok().await;
}
