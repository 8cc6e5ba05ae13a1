//! Coupons in the ledger: scope, stacking, expiry, ownership, limits, the EC → store coupon,
//! restore on refund, and races on single-use coupons and budgets.

use chrono::Duration;
use omo::{
    client::Client,
    proto::{self, campaign::Discount},
};
use tonic::Code;

use crate::helpers::{
    TestApp, assert_refused, authorize_as, basket, card_ref, ec_order, issue_coupon_as, member_ref,
    record_sale_as, store_sale, successes,
};

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
    item_scoped_coupon_counts_only_its_lines => item_scoped_coupon_counts_only_its_lines,
    basket_without_the_items_is_not_eligible => basket_without_the_items_is_not_eligible,
    amount_off_is_capped_at_the_eligible_lines => amount_off_is_capped_at_the_eligible_lines,
    a_public_code_issues_until_its_stock_is_gone => a_public_code_issues_until_its_stock_is_gone,
    a_limit_set_changed_and_lifted_keeps_the_count => a_limit_set_changed_and_lifted_keeps_the_count,
    a_limit_set_while_coupons_are_issued_counts_them_all => a_limit_set_while_coupons_are_issued_counts_them_all,
    one_sale_issuing_two_coupons_of_a_campaign_draws_two_units => one_sale_issuing_two_coupons_of_a_campaign_draws_two_units,
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
            request_id: String::new(),
            campaign: Some(campaign),
        })
        .await
        .expect("create campaign");
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

async fn list_coupons(
    client: &Client,
    member_id: &str,
    include_inactive: bool,
) -> Vec<proto::Coupon> {
    client
        .coupons()
        .list_coupons(proto::ListCouponsRequest {
            member: Some(member_ref(member_id)),
            include_inactive,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .coupons
}

/// A Store quote at `store_id`.
async fn store_quote(
    app: &TestApp,
    member_id: &str,
    store_id: &str,
    total: &str,
    codes: &[&str],
) -> proto::Quote {
    quote(
        app,
        member_id,
        proto::Channel::Store,
        store_id,
        total,
        codes,
    )
    .await
}

/// The code of a coupon issued by an admin.
async fn issued_code(
    app: &TestApp,
    request_id: &str,
    campaign_id: &str,
    member_id: &str,
) -> String {
    app.issue_coupon(request_id, campaign_id, member_id)
        .await
        .expect("issue")
        .code
}

/// A register sale at `shibuya` by card `card` with one coupon code and no points.
fn coupon_sale(
    request_id: &str,
    receipt_no: &str,
    card: &str,
    total: &str,
    code: &str,
) -> proto::RecordSaleRequest {
    proto::RecordSaleRequest {
        coupon_codes: vec![code.into()],
        ..store_sale(request_id, receipt_no, card_ref(card), total, 0)
    }
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
    let code = issued_code(app, "i", "shibuya-200", &member_id).await;

    let reason = |q: proto::Quote| q.coupons[0].reason.clone();
    assert_eq!(
        reason(quote(app, &member_id, proto::Channel::Ec, "", "2000", &[&code]).await),
        "COUPON_CHANNEL"
    );
    assert_eq!(
        reason(store_quote(app, &member_id, "umeda", "2000", &[&code]).await),
        "COUPON_STORE"
    );
    assert_eq!(
        reason(store_quote(app, &member_id, "shibuya", "999", &[&code]).await),
        "COUPON_MIN_SPEND"
    );
    // Codes are case-insensitive on input.
    let ok = store_quote(app, &member_id, "shibuya", "2000", &[&code.to_lowercase()]).await;
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
        .record_sale(coupon_sale("s", "R1", "c1", "999", &code))
        .await
        .unwrap_err();
    assert_refused(&refused, Code::FailedPrecondition, "COUPON_MIN_SPEND");
    let sale = app
        .record_sale(coupon_sale("s2", "R2", "c1", "2000", &code))
        .await
        .expect("sale");
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
        .record_sale(coupon_sale("s3", "R3", "c1", "2000", &code))
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
    let a = issued_code(app, "a", "stack-a", &member_id).await;
    let b = issued_code(app, "b", "stack-b", &member_id).await;
    let solo = issued_code(app, "s", "solo", &member_id).await;

    let both = store_quote(app, &member_id, "shibuya", "1000", &[&a, &b]).await;
    assert!(both.coupons.iter().all(|c| c.applicable));
    assert_eq!(both.amount_due, "800");
    let mixed = store_quote(app, &member_id, "shibuya", "1000", &[&a, &solo]).await;
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
    let code = issued_code(app, "i", "week", &member_id).await;
    app.advance(Duration::days(7)).await;

    let quoted = store_quote(app, &member_id, "shibuya", "1000", &[&code]).await;
    assert_eq!(quoted.coupons[0].reason, "COUPON_EXPIRED");
    assert_eq!(
        coupon_state(app, &code).await,
        proto::CouponState::Expired as i32
    );
    let wallet = list_coupons(&app.admin, &member_id, false).await;
    assert!(wallet.is_empty());
    let all = list_coupons(&app.admin, &member_id, true).await;
    assert_eq!(all.len(), 1);
    app.verify_ok().await;
}

async fn another_members_code_is_refused(app: &TestApp) {
    let owner = app.create_member("c4-owner").await;
    app.create_member("c4-other").await;
    create_campaign(app, campaign("owned", "100")).await;
    let code = issued_code(app, "i", "owned", &owner).await;
    let refused = app
        .record_sale(coupon_sale("s", "R1", "c4-other", "1000", &code))
        .await
        .unwrap_err();
    assert_refused(&refused, Code::FailedPrecondition, "COUPON_NOT_OWNED");
    let unknown = app
        .record_sale(coupon_sale("s2", "R2", "c4-other", "1000", "NOPE2345"))
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
        .record_sale(coupon_sale("s", "R1", "c5", "1000", "WELCOME"))
        .await
        .expect("first use");
    assert_eq!(sale.coupon_discount, "150");
    let again = app
        .record_sale(coupon_sale("s2", "R2", "c5", "1000", "welcome"))
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
    app.issue_coupon("1", "budget", &member_id)
        .await
        .expect("first");
    app.issue_coupon("2", "budget", &member_id)
        .await
        .expect("second");
    assert_refused(
        &app.issue_coupon("3", "budget", &member_id)
            .await
            .unwrap_err(),
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
    app.authorize(ec_order("a1", "EC-SMALL", &member_id, "4999", 0))
        .await
        .unwrap();
    app.capture("c1", "EC-SMALL").await.unwrap();
    app.authorize(ec_order("a2", "EC-BIG", &member_id, "6000", 0))
        .await
        .unwrap();
    app.capture("c2", "EC-BIG").await.unwrap();

    let wallet = list_coupons(&app.app_client, &member_id, false).await;
    assert_eq!(wallet.len(), 1);
    assert_eq!(wallet[0].source, "order:EC-BIG");
    let sale = app
        .record_sale(proto::RecordSaleRequest {
            coupon_codes: vec![wallet[0].code.clone()],
            ..store_sale("s", "R1", card_ref("c7"), "2000", 0)
        })
        .await
        .expect("used in store");
    assert_eq!(sale.amount_due, "1500");
    app.verify_ok().await;
}

async fn void_releases_and_full_refund_restores(app: &TestApp) {
    let member_id = app.create_member("c8").await;
    create_campaign(app, campaign("restore", "300")).await;
    let code = issued_code(app, "i", "restore", &member_id).await;
    let with_code = |request_id: &str, order_id: &str| proto::AuthorizeRequest {
        coupon_codes: vec![code.clone()],
        ..ec_order(request_id, order_id, &member_id, "3000", 0)
    };

    app.authorize(with_code("a1", "EC-1"))
        .await
        .expect("authorize");
    assert_eq!(
        coupon_state(app, &code).await,
        proto::CouponState::Reserved as i32
    );
    app.void("v", "EC-1").await.expect("void");
    assert_eq!(
        coupon_state(app, &code).await,
        proto::CouponState::Active as i32
    );

    app.authorize(with_code("a2", "EC-2"))
        .await
        .expect("authorize again");
    app.capture("c", "EC-2").await.expect("capture");
    assert_eq!(
        coupon_state(app, &code).await,
        proto::CouponState::Redeemed as i32
    );
    let partial = app.refund("r1", "EC-2", "1000").await.unwrap();
    assert!(partial.coupons_restored.is_empty());
    let full = app.refund("r2", "EC-2", "2000").await.unwrap();
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
    let code = issued_code(app, "i", "single", &member_id).await;
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
                authorize_as(&checkout, request).await.map(|_| ())
            } else {
                let request = coupon_sale(&format!("s{i}"), &format!("R{i}"), "c9", "1000", &code);
                record_sale_as(&register, request).await.map(|_| ())
            }
        }));
    }
    let succeeded = successes(tasks, Code::FailedPrecondition, "COUPON_NOT_ACTIVE").await;
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
                issue_coupon_as(&admin, &format!("i{i}"), "five", &member_id).await
            })
        })
        .collect();
    let issued = successes(tasks, Code::ResourceExhausted, "CAMPAIGN_EXHAUSTED").await;
    assert_eq!(issued, 5);
    let mut held = 0;
    for member_id in &members {
        held += list_coupons(&app.admin, member_id, true).await.len();
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
                issue_coupon_as(&admin, &format!("i{i}"), "two-each", &member_id).await
            })
        })
        .collect();
    let issued = successes(tasks, Code::ResourceExhausted, "MEMBER_LIMIT").await;
    assert_eq!(issued, 2);
    app.verify_ok().await;
}

// ---------------------------------------------------------------------------------------------
// Coupons scoped to items ("10 % off shoes")

/// Shoes ¥`shoes` and a bag ¥`bag` (either left out when empty).
fn shoes_and_bag(shoes: &str, bag: &str) -> proto::Basket {
    let line = |line_id: &str, sku: &str, category: &str, amount: &str| proto::LineItem {
        line_id: line_id.into(),
        sku: sku.into(),
        category: category.into(),
        quantity: 1,
        amount: amount.into(),
    };
    let lines = [
        (!shoes.is_empty()).then(|| line("L1", "SHOE-1", "shoes", shoes)),
        (!bag.is_empty()).then(|| line("L2", "BAG-7", "bags", bag)),
    ];
    proto::Basket {
        lines: lines.into_iter().flatten().collect(),
    }
}

fn scoped(campaign: proto::Campaign, skus: &[&str], categories: &[&str]) -> proto::Campaign {
    proto::Campaign {
        eligible: Some(proto::CampaignEligibility {
            skus: skus.iter().map(|s| s.to_string()).collect(),
            categories: categories.iter().map(|c| c.to_string()).collect(),
        }),
        ..campaign
    }
}

/// "10 % off shoes" with a minimum spend of ¥8,000 on shoes.
fn ten_percent_off_shoes(campaign_id: &str) -> proto::Campaign {
    let percent = proto::campaign::Discount::PercentOff(proto::PercentOff {
        percent: "10".into(),
        max_discount: String::new(),
    });
    proto::Campaign {
        discount: Some(percent),
        min_spend: "8000".into(),
        ..scoped(campaign(campaign_id, "1"), &[], &["shoes"])
    }
}

/// A Store quote at `shibuya` of `basket` with `codes`.
async fn basket_quote(
    app: &TestApp,
    member_id: &str,
    basket: proto::Basket,
    codes: &[&str],
) -> proto::Quote {
    app.admin
        .checkout()
        .quote(proto::QuoteRequest {
            member: Some(member_ref(member_id)),
            channel: proto::Channel::Store as i32,
            store_id: "shibuya".into(),
            basket: Some(basket),
            points_to_redeem: 0,
            coupon_codes: codes.iter().map(|c| c.to_string()).collect(),
        })
        .await
        .expect("quote")
        .into_inner()
        .quote
        .unwrap()
}

/// A register sale at `shibuya` by card `card` of `basket` with `codes`, redeeming `points`.
fn basket_sale(
    receipt_no: &str,
    card: &str,
    basket: proto::Basket,
    codes: &[&str],
    points: i64,
) -> proto::RecordSaleRequest {
    proto::RecordSaleRequest {
        basket: Some(basket),
        coupon_codes: codes.iter().map(|c| c.to_string()).collect(),
        ..store_sale(receipt_no, receipt_no, card_ref(card), "1", points)
    }
}

async fn item_scoped_coupon_counts_only_its_lines(app: &TestApp) {
    let member_id = app.create_member("e1").await;
    create_campaign(app, ten_percent_off_shoes("shoes-10")).await;
    let code = issued_code(app, "i", "shoes-10", &member_id).await;

    // 10 % of the shoes (¥10,000), not of the basket (¥15,000).
    let quoted = basket_quote(app, &member_id, shoes_and_bag("10000", "5000"), &[&code]).await;
    assert!(quoted.coupons[0].applicable, "{quoted:?}");
    assert_eq!(
        (
            quoted.coupons[0].discount.as_str(),
            quoted.amount_due.as_str()
        ),
        ("1000", "14000")
    );
    // The minimum spend counts the shoes alone: ¥11,000 in all, ¥6,000 of shoes.
    let short = basket_quote(app, &member_id, shoes_and_bag("6000", "5000"), &[&code]).await;
    assert_eq!(
        (
            short.coupons[0].applicable,
            short.coupons[0].reason.as_str()
        ),
        (false, "COUPON_MIN_SPEND")
    );
    let refused = app
        .record_sale(basket_sale(
            "R1",
            "e1",
            shoes_and_bag("6000", "5000"),
            &[&code],
            0,
        ))
        .await
        .unwrap_err();
    assert_refused(&refused, Code::FailedPrecondition, "COUPON_MIN_SPEND");

    let sale = app
        .record_sale(basket_sale(
            "R2",
            "e1",
            shoes_and_bag("10000", "5000"),
            &[&code],
            0,
        ))
        .await
        .expect("sale");
    assert_eq!(
        (
            sale.total.as_str(),
            sale.coupon_discount.as_str(),
            sale.amount_due.as_str(),
            sale.points_earned
        ),
        ("15000", "1000", "14000", 140)
    );
    let stored = app
        .admin
        .coupons()
        .get_campaign(proto::GetCampaignRequest {
            campaign_id: "shoes-10".into(),
        })
        .await
        .expect("campaign")
        .into_inner()
        .campaign
        .unwrap();
    let listed = app
        .admin
        .coupons()
        .list_campaigns(proto::ListCampaignsRequest::default())
        .await
        .expect("campaigns")
        .into_inner()
        .campaigns;
    let shoes = Some(proto::CampaignEligibility {
        skus: Vec::new(),
        categories: vec!["shoes".into()],
    });
    assert_eq!(stored.eligible, shoes);
    assert_eq!(listed[0].eligible, shoes);
    app.verify_ok().await;
}

async fn basket_without_the_items_is_not_eligible(app: &TestApp) {
    let member_id = app.member_with_points("e2", 500).await;
    create_campaign(app, ten_percent_off_shoes("shoes-only")).await;
    let code = issued_code(app, "i", "shoes-only", &member_id).await;

    let quoted = basket_quote(app, &member_id, shoes_and_bag("", "9000"), &[&code]).await;
    assert_eq!(
        (
            quoted.coupons[0].applicable,
            quoted.coupons[0].reason.as_str(),
            quoted.coupons[0].discount.as_str(),
            quoted.amount_due.as_str()
        ),
        (false, "COUPON_NOT_ELIGIBLE", "0", "9000")
    );
    let refused = app
        .record_sale(basket_sale(
            "R1",
            "e2",
            shoes_and_bag("", "9000"),
            &[&code],
            300,
        ))
        .await
        .unwrap_err();
    assert_refused(&refused, Code::FailedPrecondition, "COUPON_NOT_ELIGIBLE");
    let authorize = app
        .authorize(proto::AuthorizeRequest {
            basket: Some(shoes_and_bag("", "9000")),
            coupon_codes: vec![code.clone()],
            ..ec_order("a", "EC-E2", &member_id, "1", 300)
        })
        .await
        .unwrap_err();
    assert_refused(&authorize, Code::FailedPrecondition, "COUPON_NOT_ELIGIBLE");

    // Nothing was written: no order, the points and the coupon untouched.
    for order_id in ["shibuya-1-R1", "EC-E2"] {
        let missing = app
            .admin
            .checkout()
            .get_order(proto::GetOrderRequest {
                order_id: order_id.into(),
            })
            .await
            .unwrap_err();
        assert_refused(&missing, Code::NotFound, "ORDER_NOT_FOUND");
    }
    let balance = app.balance(&member_id).await;
    assert_eq!(
        (
            balance.available_points,
            balance.held_points,
            balance.lifetime_redeemed_points
        ),
        (500, 0, 0)
    );
    assert_eq!(
        coupon_state(app, &code).await,
        proto::CouponState::Active as i32
    );
    app.verify_ok().await;
}

async fn amount_off_is_capped_at_the_eligible_lines(app: &TestApp) {
    let member_id = app.create_member("e3").await;
    create_campaign(app, scoped(campaign("shoe-3000", "3000"), &["SHOE-1"], &[])).await;
    create_campaign(app, campaign("order-6000", "6000")).await;
    let shoe = issued_code(app, "i1", "shoe-3000", &member_id).await;
    let order = issued_code(app, "i2", "order-6000", &member_id).await;

    // ¥3,000 off the shoe line, which is ¥2,000: ¥2,000 off.
    let alone = basket_quote(app, &member_id, shoes_and_bag("2000", "5000"), &[&shoe]).await;
    assert_eq!(
        (
            alone.coupons[0].discount.as_str(),
            alone.amount_due.as_str()
        ),
        ("2000", "5000")
    );
    // After ¥6,000 off the order only ¥1,000 is left: the shoe coupon takes that.
    let both = basket_quote(
        app,
        &member_id,
        shoes_and_bag("2000", "5000"),
        &[&order, &shoe],
    )
    .await;
    let discounts: Vec<_> = both.coupons.iter().map(|c| c.discount.as_str()).collect();
    assert_eq!(
        (discounts, both.amount_due.as_str()),
        (vec!["6000", "1000"], "0")
    );

    let sale = app
        .record_sale(basket_sale(
            "R1",
            "e3",
            shoes_and_bag("2000", "5000"),
            &[&shoe],
            0,
        ))
        .await
        .expect("sale");
    assert_eq!(
        (sale.coupon_discount.as_str(), sale.amount_due.as_str()),
        ("2000", "5000")
    );
    app.verify_ok().await;
}

/// UpdateCampaign of `issue_limit` alone.
async fn set_issue_limit(
    app: &TestApp,
    request_id: &str,
    campaign_id: &str,
    issue_limit: i32,
) -> Result<proto::Campaign, tonic::Status> {
    app.admin
        .coupons()
        .update_campaign(proto::UpdateCampaignRequest {
            request_id: request_id.into(),
            campaign: Some(proto::Campaign {
                campaign_id: campaign_id.into(),
                issue_limit,
                ..Default::default()
            }),
            update_mask: Some(prost_types::FieldMask {
                paths: vec!["issue_limit".into()],
            }),
        })
        .await
        .map(|r| r.into_inner().campaign.expect("campaign"))
}

/// Issues `count` coupons of `campaign_id` to `member_id` (request ids `<prefix>-<i>`).
async fn issue_many(app: &TestApp, prefix: &str, campaign_id: &str, member_id: &str, count: usize) {
    for i in 0..count {
        app.issue_coupon(&format!("{prefix}-{i}"), campaign_id, member_id)
            .await
            .unwrap_or_else(|e| panic!("issue {prefix}-{i}: {e:?}"));
    }
}

async fn assert_exhausted(app: &TestApp, request_id: &str, campaign_id: &str, member_id: &str) {
    let refused = app
        .issue_coupon(request_id, campaign_id, member_id)
        .await
        .unwrap_err();
    assert_refused(&refused, Code::ResourceExhausted, "CAMPAIGN_EXHAUSTED");
}

/// A limited campaign's public code (a "first 3 buyers" campaign): each sale that uses it
/// draws one coupon from the campaign's stock, in parallel, and the sale after the last is
/// refused; the stock and the coupons add up to the limit (`omo verify`, check 11).
async fn a_public_code_issues_until_its_stock_is_gone(app: &TestApp) {
    create_campaign(
        app,
        proto::Campaign {
            public_code: "FIRST3".into(),
            issue_limit: 3,
            ..campaign("first-three", "100")
        },
    )
    .await;
    for i in 0..8 {
        app.create_member(&format!("hot-{i}")).await;
    }
    let tasks: Vec<_> = (0..8)
        .map(|i| {
            let register = app.register.clone();
            let sale = coupon_sale(
                &format!("s{i}"),
                &format!("R{i}"),
                &format!("hot-{i}"),
                "1000",
                "FIRST3",
            );
            tokio::spawn(async move { record_sale_as(&register, sale).await })
        })
        .collect();
    let sold = successes(tasks, Code::ResourceExhausted, "CAMPAIGN_EXHAUSTED").await;
    assert_eq!(sold, 3);
    app.verify_ok().await;
}

/// A campaign without a limit gets one (what it issued counts), is lowered (never below what it
/// issued), raised, lifted and limited again; each time it issues exactly up to its limit.
async fn a_limit_set_changed_and_lifted_keeps_the_count(app: &TestApp) {
    let member_id = app.create_member("limits").await;
    create_campaign(app, campaign("later", "100")).await;
    issue_many(app, "a", "later", &member_id, 3).await;

    let limited = set_issue_limit(app, "u1", "later", 5).await.expect("limit");
    assert_eq!(limited.issue_limit, 5);
    issue_many(app, "b", "later", &member_id, 2).await;
    assert_exhausted(app, "b-x", "later", &member_id).await;
    app.verify_ok().await;

    let below = set_issue_limit(app, "u2", "later", 4).await.unwrap_err();
    assert_refused(&below, Code::FailedPrecondition, "ISSUE_LIMIT_BELOW_ISSUED");
    set_issue_limit(app, "u3", "later", 8).await.expect("raise");
    issue_many(app, "c", "later", &member_id, 3).await;
    assert_exhausted(app, "c-x", "later", &member_id).await;
    app.verify_ok().await;

    set_issue_limit(app, "u4", "later", 10)
        .await
        .expect("raise");
    set_issue_limit(app, "u5", "later", 9)
        .await
        .expect("lower to what is left");
    issue_many(app, "d", "later", &member_id, 1).await;
    assert_exhausted(app, "d-x", "later", &member_id).await;

    set_issue_limit(app, "u6", "later", 0).await.expect("lift");
    issue_many(app, "e", "later", &member_id, 3).await;
    app.verify_ok().await;
    set_issue_limit(app, "u7", "later", 13)
        .await
        .expect("limit again");
    issue_many(app, "f", "later", &member_id, 1).await;
    assert_exhausted(app, "f-x", "later", &member_id).await;
    assert_eq!(list_coupons(&app.admin, &member_id, true).await.len(), 13);
    app.verify_ok().await;
}

/// A limit set while members are being issued coupons of a campaign without one: an issue
/// under way is either counted by the new limit or runs again under it, never outside it.
async fn a_limit_set_while_coupons_are_issued_counts_them_all(app: &TestApp) {
    create_campaign(app, campaign("rush", "100")).await;
    let mut members = Vec::new();
    for i in 0..30 {
        members.push(app.create_member(&format!("rush-{i}")).await);
    }
    for round in 0..3 {
        let tasks: Vec<_> = members
            .iter()
            .enumerate()
            .map(|(i, member_id)| {
                let (admin, member_id) = (app.admin.clone(), member_id.clone());
                tokio::spawn(async move {
                    issue_coupon_as(&admin, &format!("r{round}-{i}"), "rush", &member_id).await
                })
            })
            .collect();
        // Limited, then lifted, while the round is issuing: 1,000 is never reached.
        let limit = if round % 2 == 0 { 1_000 } else { 0 };
        set_issue_limit(app, &format!("u{round}"), "rush", limit)
            .await
            .expect("limit");
        let issued = successes(tasks, Code::ResourceExhausted, "CAMPAIGN_EXHAUSTED").await;
        assert_eq!(issued, members.len());
        app.verify_ok().await;
    }
}

/// One sale that uses a campaign's public code and earns the same campaign's capture coupon
/// issues two coupons in one journal entry: two units of the stock, never one unit twice.
async fn one_sale_issuing_two_coupons_of_a_campaign_draws_two_units(app: &TestApp) {
    create_campaign(
        app,
        proto::Campaign {
            public_code: "TWICE".into(),
            issue_limit: 3,
            issue_on_capture: Some(proto::IssueOnCapture {
                min_total: "0".into(),
                channels: vec![],
            }),
            ..campaign("twice", "100")
        },
    )
    .await;
    let mut members = Vec::new();
    for i in 0..3 {
        members.push(app.create_member(&format!("twice-{i}")).await);
    }
    let first = app
        .record_sale(coupon_sale("s0", "R0", "twice-0", "1000", "TWICE"))
        .await
        .expect("the code's coupon and the capture's: two of three");
    assert_eq!(first.coupon_discount, "100");
    let second = app
        .record_sale(coupon_sale("s1", "R1", "twice-1", "1000", "TWICE"))
        .await
        .expect("the last one, for the code; the capture's is out of stock");
    assert_eq!(second.coupon_discount, "100");
    let third = app
        .record_sale(coupon_sale("s2", "R2", "twice-2", "1000", "TWICE"))
        .await
        .unwrap_err();
    assert_refused(&third, Code::ResourceExhausted, "CAMPAIGN_EXHAUSTED");
    assert_eq!(list_coupons(&app.admin, &members[0], true).await.len(), 2);
    assert_eq!(list_coupons(&app.admin, &members[1], true).await.len(), 1);
    app.verify_ok().await;
}

/// A limited campaign an older omo stored (no stock: its issues were counted) keeps counting
/// until the server starts again, which funds its stock with what its limit has left, once.
mod limited_campaigns_get_their_stock_at_start {
    use chrono::{TimeZone, Utc};
    use omo::domain::{
        Money,
        coupon::{Campaign, Discount},
        ports::ChangeSet,
    };

    use super::*;
    use crate::helpers::{Backend, spawn_app};

    fn stored_by_an_older_omo() -> Campaign {
        Campaign {
            campaign_id: "old-five".into(),
            name: "limited before stock".into(),
            discount: Discount::AmountOff(Money::from_decimal_saturating(100.into())),
            min_spend: Money::ZERO,
            channels: Vec::new(),
            store_ids: Vec::new(),
            starts_at: None,
            ends_at: None,
            validity_days: 0,
            per_member_limit: 0,
            issue_limit: 5,
            stackable: true,
            public_code: None,
            issue_on_capture: None,
            variants: Vec::new(),
            eligible: Default::default(),
            created_at: Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap(),
            stock_parts: 0,
        }
    }

    /// What the campaign's stock holds, read off the ledger.
    async fn stock_left(app: &TestApp) -> i64 {
        let store = omo::store::open(&app.database_url).await.expect("open");
        let mut read = store.begin_read().await.expect("begin");
        let mut left = 0;
        for part in 0..omo::domain::stock::STOCK_PARTS {
            let account = omo::domain::stock::account("old-five", part).to_string();
            left += read
                .balance(&account, "CPN:old-five")
                .await
                .expect("balance");
        }
        left
    }

    async fn scenario(backend: Backend) {
        let Some(mut app) = spawn_app(backend).await else {
            return;
        };
        let store = omo::store::open(&app.database_url).await.expect("open");
        let mut uow = store.begin().await.expect("begin");
        let changes = ChangeSet {
            new_campaigns: vec![stored_by_an_older_omo()],
            ..ChangeSet::default()
        };
        uow.flush(&changes).await.expect("legacy row");
        uow.commit().await.expect("commit");
        drop(store);
        let member_id = app.create_member("old-five").await;

        // Counted, as the older omo did, until the next start.
        issue_many(&app, "a", "old-five", &member_id, 2).await;
        app.verify_ok().await;
        assert_eq!(stock_left(&app).await, 0, "no stock before the start");
        app.restart().await;
        assert_eq!(stock_left(&app).await, 3, "the limit less the two issued");
        issue_many(&app, "b", "old-five", &member_id, 1).await;
        // A second start funds nothing twice (funding again would add the 2 still left).
        app.restart().await;
        assert_eq!(stock_left(&app).await, 2);
        issue_many(&app, "c", "old-five", &member_id, 2).await;
        assert_exhausted(&app, "c-x", "old-five", &member_id).await;
        app.verify_ok().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn sqlite() {
        scenario(Backend::Sqlite).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn postgres() {
        scenario(Backend::Postgres).await;
    }
}
