//! Photographed receipts (issue #10) through the real server: receipt rules (store scope, earn
//! rate, coupon, min_total, line conditions, age, review threshold, period), every rejection
//! reason, review (approve and reject, with the balances after each), the daily limit, twenty
//! members racing for one receipt, a receipt already earned at the register, receipts read from
//! raw text in the store's time zone, visits, the review queue's pages, input limits, roles and
//! idempotency. Every scenario ends with `omo verify` (the engine's and the command line's).

use chrono::{DateTime, Duration, TimeZone, Utc};
use omo::{
    domain::Clock,
    proto::{self, campaign::Discount},
};
use tonic::{Code, Status};

use crate::helpers::{
    TestApp, assert_refused, basket, card_ref, member_ref, omo_cli, store_sale, violated_fields,
};

crate::both_backends! {
    receipt_rules_select_and_add_up => receipt_rules_select_and_add_up,
    every_rejection_reason => every_rejection_reason,
    a_sale_recorded_at_the_register_is_already_earned => a_sale_recorded_at_the_register_is_already_earned,
    review_approves_and_rejects_pending_points => review_approves_and_rejects_pending_points,
    past_the_daily_limit_receipts_are_rejected => past_the_daily_limit_receipts_are_rejected,
    twenty_members_race_for_one_receipt => twenty_members_race_for_one_receipt,
    raw_text_is_read_in_the_store_zone => raw_text_is_read_in_the_store_zone,
    accepted_receipts_count_as_visits => accepted_receipts_count_as_visits,
    the_review_queue_pages_oldest_first => the_review_queue_pages_oldest_first,
    input_limits_write_nothing => input_limits_write_nothing,
    roles_and_rule_references => roles_and_rule_references,
    replayed_requests_have_one_effect => replayed_requests_have_one_effect,
    a_receipt_typed_another_way_is_the_same_receipt => a_receipt_typed_another_way_is_the_same_receipt,
    a_receipt_of_nothing_or_of_made_up_lines_is_invalid => a_receipt_of_nothing_or_of_made_up_lines_is_invalid,
    a_made_up_fortune_waits_for_review => a_made_up_fortune_waits_for_review,
    the_register_sale_takes_a_scanned_receipt_back => the_register_sale_takes_a_scanned_receipt_back,
    a_scan_and_its_register_sale_at_once_earn_once => a_scan_and_its_register_sale_at_once_earn_once,
    only_a_receipt_of_today_that_earns_is_a_visit => only_a_receipt_of_today_that_earns_is_a_visit,
    receipt_rules_are_rules_of_the_one_engine => receipt_rules_are_rules_of_the_one_engine,
}

const ACCEPTED: i32 = proto::ReceiptStatus::Accepted as i32;
const PENDING: i32 = proto::ReceiptStatus::PendingReview as i32;
const REJECTED: i32 = proto::ReceiptStatus::Rejected as i32;

// ---------------------------------------------------------------------------------------------
// Helpers

fn now(app: &TestApp) -> DateTime<Utc> {
    app.clock.now()
}

fn ts(at: DateTime<Utc>) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: at.timestamp(),
        nanos: i32::try_from(at.timestamp_subsec_nanos()).expect("nanos"),
    }
}

fn instant(at: &prost_types::Timestamp) -> DateTime<Utc> {
    let nanos = u32::try_from(at.nanos).expect("nanos");
    Utc.timestamp_opt(at.seconds, nanos)
        .single()
        .expect("instant")
}

/// A photograph's SHA-256 (64 hex characters), distinct per `seed`.
fn image(seed: &str) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in seed.bytes() {
        hash = (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3);
    }
    (0..4)
        .map(|i| format!("{:016x}", hash.rotate_left(i * 16) ^ u64::from(i)))
        .collect()
}

fn line(sku: &str, category: &str, quantity: i32, amount: &str) -> proto::LineItem {
    proto::LineItem {
        line_id: format!("{sku}-{quantity}"),
        sku: sku.into(),
        category: category.into(),
        quantity,
        amount: amount.into(),
    }
}

/// A receipt of register 1 of `store_id`, issued an hour ago, one line of the total; its
/// photograph is named after the store and number.
fn receipt(app: &TestApp, store_id: &str, receipt_no: &str, total: &str) -> proto::Receipt {
    proto::Receipt {
        store_id: store_id.into(),
        register_id: "1".into(),
        receipt_no: receipt_no.into(),
        issued_at: Some(ts(now(app) - Duration::hours(1))),
        total: total.into(),
        lines: vec![line("ITEM", "grocery", 1, total)],
        image_sha256: image(&format!("{store_id}/{receipt_no}")),
        raw_text: String::new(),
    }
}

fn points_rule(rule_id: &str, earn_rate: &str) -> proto::ReceiptRule {
    proto::ReceiptRule {
        rule_id: rule_id.into(),
        earn_rate: earn_rate.into(),
        ..Default::default()
    }
}

async fn create_rule(app: &TestApp, rule: proto::ReceiptRule) -> proto::ReceiptRule {
    app.admin
        .engagement()
        .create_receipt_rule(proto::CreateReceiptRuleRequest {
            request_id: format!("receipt-rule-{}", rule.rule_id),
            rule: Some(rule),
        })
        .await
        .expect("create receipt rule")
        .into_inner()
        .rule
        .expect("rule")
}

async fn campaign(app: &TestApp, campaign_id: &str) {
    app.admin
        .coupons()
        .create_campaign(proto::CreateCampaignRequest {
            request_id: String::new(),
            campaign: Some(proto::Campaign {
                campaign_id: campaign_id.into(),
                name: format!("campaign {campaign_id}"),
                discount: Some(Discount::AmountOff("300".into())),
                stackable: true,
                ..Default::default()
            }),
        })
        .await
        .expect("create campaign");
}

async fn visit_rule(app: &TestApp, rule_id: &str, campaign_id: &str, visits: i32, store: &str) {
    app.admin
        .engagement()
        .create_visit_rule(proto::CreateVisitRuleRequest {
            request_id: format!("visit-rule-{rule_id}"),
            rule: Some(proto::VisitRule {
                rule_id: rule_id.into(),
                campaign_id: campaign_id.into(),
                kind: proto::VisitRuleKind::NthVisit as i32,
                visits,
                window_days: 30,
                store_ids: vec![store.into()],
                ..Default::default()
            }),
        })
        .await
        .expect("create visit rule");
}

fn submission(request_id: &str, member_id: &str, r: proto::Receipt) -> proto::SubmitReceiptRequest {
    proto::SubmitReceiptRequest {
        request_id: request_id.into(),
        member: Some(member_ref(member_id)),
        receipt: Some(r),
    }
}

/// SubmitReceipt with the app key, a second after the previous one: the manual clock would
/// otherwise give receipts one submission time, and lists order them by time.
async fn submit(
    app: &TestApp,
    request_id: &str,
    member_id: &str,
    r: proto::Receipt,
) -> Result<proto::ReceiptResult, Status> {
    app.clock.advance(Duration::seconds(1));
    submit_as(&app.app_client, submission(request_id, member_id, r)).await
}

async fn submit_as(
    client: &omo::client::Client,
    request: proto::SubmitReceiptRequest,
) -> Result<proto::ReceiptResult, Status> {
    client
        .engagement()
        .submit_receipt(request)
        .await
        .map(|r| r.into_inner().result.expect("result"))
}

async fn submitted(
    app: &TestApp,
    request_id: &str,
    member_id: &str,
    r: proto::Receipt,
) -> proto::ReceiptResult {
    submit(app, request_id, member_id, r)
        .await
        .expect("submit receipt")
}

/// ReviewReceipt with the admin key.
async fn review(
    app: &TestApp,
    request_id: &str,
    receipt_id: &str,
    approve: bool,
    note: &str,
) -> Result<proto::ReceiptResult, Status> {
    app.admin
        .engagement()
        .review_receipt(proto::ReviewReceiptRequest {
            request_id: request_id.into(),
            receipt_id: receipt_id.into(),
            approve,
            note: note.into(),
        })
        .await
        .map(|r| r.into_inner().result.expect("result"))
}

/// A member's receipts as the app lists them (newest first).
async fn history(app: &TestApp, member_id: &str) -> Vec<proto::ReceiptRecord> {
    app.app_client
        .engagement()
        .list_receipts(proto::ListReceiptsRequest {
            member: Some(member_ref(member_id)),
            status: 0,
            page_size: 100,
            page_token: String::new(),
        })
        .await
        .expect("list member receipts")
        .into_inner()
        .receipts
}

/// Every receipt in `status` as the admin lists them (oldest first), one page.
async fn in_status(
    app: &TestApp,
    status: proto::ReceiptStatus,
    page_size: i32,
    page_token: &str,
) -> proto::ListReceiptsResponse {
    app.admin
        .engagement()
        .list_receipts(proto::ListReceiptsRequest {
            member: None,
            status: status as i32,
            page_size,
            page_token: page_token.into(),
        })
        .await
        .expect("list receipts by status")
        .into_inner()
}

async fn coupons_of(app: &TestApp, member_id: &str) -> Vec<proto::Coupon> {
    app.admin
        .coupons()
        .list_coupons(proto::ListCouponsRequest {
            member: Some(member_ref(member_id)),
            include_inactive: true,
            page_size: 100,
            page_token: String::new(),
        })
        .await
        .expect("list coupons")
        .into_inner()
        .coupons
}

fn sources(coupons: &[proto::Coupon]) -> Vec<String> {
    let mut sources: Vec<String> = coupons.iter().map(|c| c.source.clone()).collect();
    sources.sort();
    sources
}

/// (available, pending) points of a member.
async fn points(app: &TestApp, member_id: &str) -> (i64, i64) {
    let balance = app.balance(member_id).await;
    (balance.available_points, balance.pending_points)
}

fn assert_rejected(result: &proto::ReceiptResult, reason: &str) {
    assert_eq!(
        (result.status, result.reason.as_str()),
        (REJECTED, reason),
        "{result:?}"
    );
    assert_eq!(result.points_awarded, 0, "{result:?}");
    assert!(result.coupons_issued.is_empty(), "{result:?}");
    assert!(
        !result.receipt_id.is_empty(),
        "a rejected receipt is stored"
    );
}

fn assert_accepted(result: &proto::ReceiptResult, points: i64) {
    assert_eq!(
        (result.status, result.reason.as_str(), result.points_awarded),
        (ACCEPTED, "", points),
        "{result:?}"
    );
}

/// `omo verify` holds: the engine's report, and the command line's exit status and summary.
async fn verified(app: &TestApp) {
    app.verify_ok().await;
    let summary = omo_cli(&["verify", "--database-url", &app.database_url]);
    assert!(summary.contains("all invariants hold"), "{summary}");
}

// ---------------------------------------------------------------------------------------------
// Scenarios

/// Store scope, earn rates, a coupon rule, min_total, category and sku conditions and the rule
/// period select the rules; every matching rule applies once and their points add up.
async fn receipt_rules_select_and_add_up(app: &TestApp) {
    campaign(app, "thanks").await;
    let t = now(app);
    create_rule(
        app,
        proto::ReceiptRule {
            store_ids: vec!["shibuya".into()],
            ..points_rule("points", "0.01")
        },
    )
    .await;
    let coffee = create_rule(
        app,
        proto::ReceiptRule {
            campaign_id: "thanks".into(),
            min_total: "1000".into(),
            conditions: vec![proto::ReceiptCondition {
                sku: String::new(),
                category: "coffee".into(),
                min_quantity: 2,
            }],
            ..points_rule("coffee", "0.02")
        },
    )
    .await;
    assert_eq!(coffee.max_age_days, 7, "the default age");
    assert_eq!(coffee.min_total, "1000");
    create_rule(
        app,
        proto::ReceiptRule {
            conditions: vec![proto::ReceiptCondition {
                sku: "BEANS".into(),
                category: String::new(),
                min_quantity: 3,
            }],
            ..points_rule("beans", "0.05")
        },
    )
    .await;
    create_rule(
        app,
        proto::ReceiptRule {
            store_ids: vec!["umeda".into()],
            ..points_rule("umeda-only", "0.1")
        },
    )
    .await;
    create_rule(
        app,
        proto::ReceiptRule {
            starts_at: Some(ts(t + Duration::days(1))),
            ..points_rule("later", "1")
        },
    )
    .await;
    create_rule(
        app,
        proto::ReceiptRule {
            ends_at: Some(ts(t - Duration::days(1))),
            ..points_rule("ended", "1")
        },
    )
    .await;
    let member_id = app.create_member("RR-1").await;

    // Two coffee lines and 5000: "points" (50) and "coffee" (100 and its coupon).
    let mut two_coffees = receipt(app, "shibuya", "A-1", "5000");
    two_coffees.lines = vec![
        line("BEANS", "coffee", 1, "2000"),
        line("DRIP", "coffee", 1, "1500"),
        line("CAKE", "sweets", 1, "1500"),
    ];
    let result = submitted(app, "rr-1", &member_id, two_coffees).await;
    assert_accepted(&result, 150);
    assert_eq!(result.coupons_issued.len(), 1, "{result:?}");
    let coupon = &result.coupons_issued[0];
    assert_eq!(coupon.source, "receipt:coffee");
    assert_eq!(coupon.campaign_id, "thanks");
    assert_eq!(coupon.member_id, member_id);
    assert_eq!(coupon.state, proto::CouponState::Active as i32);
    assert_eq!(points(app, &member_id).await, (150, 0));

    // Three BEANS for 900: "points" (9) and "beans" (45); "coffee" wants 1000.
    let mut beans = receipt(app, "shibuya", "A-2", "900");
    beans.lines = vec![line("BEANS", "coffee", 3, "900")];
    let result = submitted(app, "rr-2", &member_id, beans).await;
    assert_accepted(&result, 54);
    assert!(result.coupons_issued.is_empty());

    // At Umeda only "umeda-only" (the "points" rule is Shibuya's); no coffee lines.
    let result = submitted(
        app,
        "rr-3",
        &member_id,
        receipt(app, "umeda", "A-3", "1000"),
    )
    .await;
    assert_accepted(&result, 100);

    let balance = app.balance(&member_id).await;
    assert_eq!(balance.available_points, 304);
    assert_eq!(balance.pending_points, 0);
    assert_eq!(balance.lifetime_earned_points, 304);
    assert_eq!(
        sources(&coupons_of(app, &member_id).await),
        ["receipt:coffee"]
    );

    let records = history(app, &member_id).await;
    let seen: Vec<(&str, Vec<String>, i64)> = records
        .iter()
        .map(|r| {
            let receipt = r.receipt.as_ref().expect("receipt");
            (
                receipt.receipt_no.as_str(),
                r.rule_ids.clone(),
                r.points_awarded,
            )
        })
        .collect();
    let rules = |ids: &[&str]| ids.iter().map(|id| id.to_string()).collect::<Vec<_>>();
    assert_eq!(
        seen,
        [
            ("A-3", rules(&["umeda-only"]), 100),
            ("A-2", rules(&["beans", "points"]), 54),
            ("A-1", rules(&["coffee", "points"]), 150),
        ],
        "newest first; the rules each receipt matched"
    );
    assert_eq!(records[2].coupon_codes, [coupon.code.as_str()]);
    assert!(
        records
            .iter()
            .all(|r| r.status == ACCEPTED && r.member_id == member_id)
    );
    verified(app).await;
}

/// DUPLICATE (by number and by photograph, whoever sent it), UNKNOWN_STORE, FUTURE_DATED,
/// TOO_OLD and NO_MATCHING_RULE: REJECTED results, not errors, and they earn nothing.
async fn every_rejection_reason(app: &TestApp) {
    create_rule(
        app,
        proto::ReceiptRule {
            min_total: "500".into(),
            ..points_rule("all", "0.01")
        },
    )
    .await;
    let first = app.create_member("RJ-1").await;
    let other = app.create_member("RJ-2").await;
    let t = now(app);

    let original = receipt(app, "shibuya", "1001", "1000");
    assert_accepted(&submitted(app, "rj-1", &first, original.clone()).await, 10);

    let send = async |request_id: &str, member_id: &str, r: proto::Receipt, reason: &str| {
        let result = submitted(app, request_id, member_id, r).await;
        assert_rejected(&result, reason);
    };

    // The same number with another photograph; the same photograph (in upper case) with another
    // number; the same receipt again from its own submitter.
    let same_number = proto::Receipt {
        image_sha256: image("another photograph"),
        ..original.clone()
    };
    send("rj-2", &other, same_number, "DUPLICATE").await;
    let same_image = proto::Receipt {
        receipt_no: "1002".into(),
        image_sha256: original.image_sha256.to_uppercase(),
        ..original.clone()
    };
    send("rj-3", &other, same_image, "DUPLICATE").await;
    send("rj-4", &first, original.clone(), "DUPLICATE").await;
    // The same number at another register of the store is another receipt (below).

    let unknown = receipt(app, "nowhere", "2001", "1000");
    send("rj-5", &other, unknown, "UNKNOWN_STORE").await;

    let mut future = receipt(app, "shibuya", "2002", "1000");
    future.issued_at = Some(ts(t + Duration::minutes(6)));
    send("rj-6", &other, future, "FUTURE_DATED").await;

    let mut old = receipt(app, "shibuya", "2003", "1000");
    old.issued_at = Some(ts(t - Duration::days(8)));
    send("rj-7", &other, old, "TOO_OLD").await;

    let small = receipt(app, "shibuya", "2004", "499");
    send("rj-8", &other, small, "NO_MATCHING_RULE").await;

    // Within the 5 minutes of skew and within the 7 days: accepted.
    let mut skewed = receipt(app, "shibuya", "2005", "1000");
    skewed.issued_at = Some(ts(now(app) + Duration::minutes(4)));
    assert_accepted(&submitted(app, "rj-9", &other, skewed).await, 10);
    let mut week_old = receipt(app, "shibuya", "2006", "2000");
    week_old.issued_at = Some(ts(now(app) - Duration::days(7) + Duration::minutes(1)));
    assert_accepted(&submitted(app, "rj-10", &other, week_old).await, 20);
    let other_register = proto::Receipt {
        register_id: "2".into(),
        image_sha256: image("register 2"),
        ..original.clone()
    };
    assert_accepted(&submitted(app, "rj-11", &other, other_register).await, 10);

    assert_eq!(points(app, &first).await, (10, 0));
    assert_eq!(points(app, &other).await, (40, 0));

    // The member's history keeps every rejection with its reason, newest first.
    let reasons: Vec<(i32, String)> = history(app, &other)
        .await
        .iter()
        .map(|r| (r.status, r.reason.clone()))
        .collect();
    let expected = [
        (ACCEPTED, ""),
        (ACCEPTED, ""),
        (ACCEPTED, ""),
        (REJECTED, "NO_MATCHING_RULE"),
        (REJECTED, "TOO_OLD"),
        (REJECTED, "FUTURE_DATED"),
        (REJECTED, "UNKNOWN_STORE"),
        (REJECTED, "DUPLICATE"),
        (REJECTED, "DUPLICATE"),
    ]
    .map(|(status, reason)| (status, reason.to_string()));
    assert_eq!(reasons, expected);
    let firsts: Vec<(i32, String)> = history(app, &first)
        .await
        .iter()
        .map(|r| (r.status, r.reason.clone()))
        .collect();
    assert_eq!(
        firsts,
        [
            (REJECTED, "DUPLICATE".to_string()),
            (ACCEPTED, String::new())
        ]
    );
    assert_eq!(
        in_status(app, proto::ReceiptStatus::Rejected, 100, "")
            .await
            .receipts
            .len(),
        7
    );
    verified(app).await;
}

/// A receipt recorded by RecordSale for a member earned its points at the register: submitting
/// it (by that member or anyone) is ALREADY_EARNED.
async fn a_sale_recorded_at_the_register_is_already_earned(app: &TestApp) {
    create_rule(app, points_rule("all", "0.05")).await;
    let buyer = app.create_member("AE-1").await;
    let friend = app.create_member("AE-2").await;
    let order = app
        .record_sale(store_sale("ae-sale", "R-77", card_ref("AE-1"), "3000", 0))
        .await
        .expect("sale");
    assert_eq!(
        order.points_earned, 30,
        "the program's 0.01 at the register"
    );
    assert_eq!(points(app, &buyer).await, (30, 0));

    // store_sale records at register "1" of shibuya, like `receipt`.
    let at_register = receipt(app, "shibuya", "R-77", "3000");
    let result = submitted(app, "ae-1", &buyer, at_register.clone()).await;
    assert_rejected(&result, "ALREADY_EARNED");
    let mut from_friend = at_register.clone();
    from_friend.image_sha256 = image("friend's photograph");
    let result = submitted(app, "ae-2", &friend, from_friend).await;
    assert_rejected(&result, "ALREADY_EARNED");
    assert_eq!(points(app, &buyer).await, (30, 0));
    assert_eq!(points(app, &friend).await, (0, 0));

    // Another receipt number of the same register was not sold to a member: it earns.
    let result = submitted(
        app,
        "ae-3",
        &friend,
        receipt(app, "shibuya", "R-78", "3000"),
    )
    .await;
    assert_accepted(&result, 150);
    assert_eq!(points(app, &friend).await, (150, 0));

    // The other way round: a receipt scanned first (the register was offline), then the
    // register replays the sale for the member: the register is the truth, the sale earns
    // its own points and the scan's are taken back, so the receipt still earns once.
    let result = submitted(app, "ae-4", &buyer, receipt(app, "shibuya", "R-79", "2000")).await;
    assert_accepted(&result, 100);
    assert_eq!(points(app, &buyer).await, (130, 0));
    let replayed = app
        .record_sale(store_sale("ae-replay", "R-79", card_ref("AE-1"), "2000", 0))
        .await
        .expect("replayed sale");
    assert_eq!(
        replayed.points_earned, 20,
        "the program's 0.01 at the register"
    );
    assert_eq!(points(app, &buyer).await, (30 + 20, 0));
    assert_eq!(app.balance(&buyer).await.lifetime_earned_points, 50);
    let scan = &history(app, &buyer).await[0];
    assert_eq!(
        (scan.status, scan.reason.as_str(), scan.points_awarded),
        (REJECTED, "ALREADY_EARNED", 0)
    );
    verified(app).await;
}

/// A total at the threshold waits for review with its points pending; approval makes them
/// available and issues the coupons, rejection returns them to the program. A second review is
/// RECEIPT_NOT_PENDING; an unknown receipt RECEIPT_NOT_FOUND.
async fn review_approves_and_rejects_pending_points(app: &TestApp) {
    campaign(app, "big-spender").await;
    create_rule(
        app,
        proto::ReceiptRule {
            campaign_id: "big-spender".into(),
            review_threshold: "10000".into(),
            ..points_rule("careful", "0.01")
        },
    )
    .await;
    let member_id = app.create_member("RV-1").await;

    // Just below the threshold: accepted at once with its coupon.
    let below = submitted(
        app,
        "rv-0",
        &member_id,
        receipt(app, "shibuya", "B-0", "9999"),
    )
    .await;
    assert_accepted(&below, 99);
    assert_eq!(sources(&below.coupons_issued), ["receipt:careful"]);
    assert_eq!(points(app, &member_id).await, (99, 0));

    // At the threshold and above: pending, no coupon yet.
    let at = submitted(
        app,
        "rv-1",
        &member_id,
        receipt(app, "shibuya", "B-1", "12000"),
    )
    .await;
    assert_eq!(
        (at.status, at.reason.as_str(), at.points_awarded),
        (PENDING, "REVIEW_THRESHOLD", 120)
    );
    assert!(at.coupons_issued.is_empty());
    let balance = app.balance(&member_id).await;
    assert_eq!(
        (balance.available_points, balance.pending_points),
        (99, 120)
    );
    assert_eq!(
        balance.lifetime_earned_points, 99,
        "not earned until approved"
    );
    assert_eq!(coupons_of(app, &member_id).await.len(), 1);

    app.clock.advance(Duration::minutes(10));
    let approved = review(app, "rv-approve", &at.receipt_id, true, "looks fine")
        .await
        .expect("approve");
    let approved_at = now(app);
    assert_eq!(approved.receipt_id, at.receipt_id);
    assert_accepted(&approved, 120);
    assert_eq!(sources(&approved.coupons_issued), ["receipt:careful"]);
    let balance = app.balance(&member_id).await;
    assert_eq!((balance.available_points, balance.pending_points), (219, 0));
    assert_eq!(balance.lifetime_earned_points, 219);
    assert_eq!(coupons_of(app, &member_id).await.len(), 2);

    let status = review(app, "rv-again", &at.receipt_id, false, "changed my mind")
        .await
        .expect_err("reviewed already");
    assert_refused(&status, Code::FailedPrecondition, "RECEIPT_NOT_PENDING");
    assert_eq!(points(app, &member_id).await, (219, 0));

    // Rejected in review: the pending points go back to the program.
    let big = submitted(
        app,
        "rv-2",
        &member_id,
        receipt(app, "shibuya", "B-2", "15000"),
    )
    .await;
    assert_eq!((big.status, big.points_awarded), (PENDING, 150));
    assert_eq!(points(app, &member_id).await, (219, 150));
    let rejected = review(app, "rv-reject", &big.receipt_id, false, "blurry")
        .await
        .expect("reject");
    assert_eq!(rejected.receipt_id, big.receipt_id);
    assert_rejected(&rejected, "REVIEW_REJECTED");
    let balance = app.balance(&member_id).await;
    assert_eq!((balance.available_points, balance.pending_points), (219, 0));
    assert_eq!(balance.lifetime_earned_points, 219);
    assert_eq!(coupons_of(app, &member_id).await.len(), 2, "no coupon");
    let status = review(app, "rv-reject-again", &big.receipt_id, true, "")
        .await
        .expect_err("reviewed already");
    assert_refused(&status, Code::FailedPrecondition, "RECEIPT_NOT_PENDING");
    assert_eq!(points(app, &member_id).await, (219, 0));

    // A receipt rejected in review keeps its number: nobody can send it again.
    let someone = app.create_member("RV-2").await;
    let again = submitted(
        app,
        "rv-3",
        &someone,
        receipt(app, "shibuya", "B-2", "15000"),
    )
    .await;
    assert_rejected(&again, "DUPLICATE");

    let status = review(app, "rv-unknown", "rcpt_does_not_exist", true, "")
        .await
        .expect_err("unknown receipt");
    assert_refused(&status, Code::NotFound, "RECEIPT_NOT_FOUND");

    // The history shows the reviews.
    let records = history(app, &member_id).await;
    let rows: Vec<(&str, i32, &str, i64, &str, bool)> = records
        .iter()
        .map(|r| {
            (
                r.receipt.as_ref().unwrap().receipt_no.as_str(),
                r.status,
                r.reason.as_str(),
                r.points_awarded,
                r.review_note.as_str(),
                r.reviewed_at.is_some(),
            )
        })
        .collect();
    assert_eq!(
        rows,
        [
            ("B-2", REJECTED, "REVIEW_REJECTED", 0, "blurry", true),
            ("B-1", ACCEPTED, "", 120, "looks fine", true),
            ("B-0", ACCEPTED, "", 99, "", false),
        ]
    );
    assert_eq!(
        instant(records[1].reviewed_at.as_ref().unwrap()),
        approved_at,
        "reviewed at the review's time"
    );
    assert_eq!(records[1].coupon_codes.len(), 1);
    assert!(
        in_status(app, proto::ReceiptStatus::PendingReview, 10, "")
            .await
            .receipts
            .is_empty()
    );
    verified(app).await;
}

/// Past the program's max_receipts_per_day (the store's local day) a member's receipts are
/// REJECTED with DAILY_LIMIT, not queued for review (a queue anyone can flood is no review);
/// the number stays free for a later day; the next local day starts afresh.
async fn past_the_daily_limit_receipts_are_rejected(app: &TestApp) {
    app.set_program(|program| program.max_receipts_per_day = 2)
        .await;
    create_rule(app, points_rule("all", "0.01")).await;
    let member_id = app.create_member("DL-1").await;
    let other = app.create_member("DL-2").await;

    for n in 1..=2 {
        let r = receipt(app, "shibuya", &format!("D-{n}"), "1000");
        assert_accepted(&submitted(app, &format!("dl-{n}"), &member_id, r).await, 10);
    }
    // Before issue #21 these went to review: PENDING, DAILY_LIMIT, 10 points pending each.
    for n in 3..=5 {
        let r = receipt(app, "shibuya", &format!("D-{n}"), "1000");
        let result = submitted(app, &format!("dl-{n}"), &member_id, r).await;
        assert_rejected(&result, "DAILY_LIMIT");
    }
    assert_eq!(points(app, &member_id).await, (20, 0));
    let queue = in_status(app, proto::ReceiptStatus::PendingReview, 10, "").await;
    assert!(queue.receipts.is_empty(), "{queue:?}");
    // Another member's count is their own.
    let theirs = submitted(app, "dl-6", &other, receipt(app, "shibuya", "D-6", "1000")).await;
    assert_accepted(&theirs, 10);

    // The next day in Tokyo: accepted again, the refused receipt too (it claimed nothing).
    app.advance(Duration::days(1)).await;
    let next_day = submitted(
        app,
        "dl-7",
        &member_id,
        receipt(app, "shibuya", "D-7", "1000"),
    )
    .await;
    assert_accepted(&next_day, 10);
    let mut refused = receipt(app, "shibuya", "D-3", "1000");
    refused.issued_at = Some(ts(now(app) - Duration::hours(2)));
    assert_accepted(&submitted(app, "dl-8", &member_id, refused).await, 10);
    assert_eq!(points(app, &member_id).await, (40, 0));
    verified(app).await;
}

/// Every member submits its receipt at once (spawned together); the results in member order.
async fn race(
    app: &TestApp,
    members: &[String],
    round: &str,
    receipt_of: impl Fn(usize) -> proto::Receipt,
) -> Vec<proto::ReceiptResult> {
    // They all wait at the barrier, then send together.
    let start = std::sync::Arc::new(tokio::sync::Barrier::new(members.len()));
    let tasks: Vec<_> = members
        .iter()
        .enumerate()
        .map(|(n, member_id)| {
            let client = app.app_client.clone();
            let request = submission(&format!("{round}-{n}"), member_id, receipt_of(n));
            let start = start.clone();
            tokio::spawn(async move {
                start.wait().await;
                submit_as(&client, request).await
            })
        })
        .collect();
    let mut results = Vec::new();
    for task in tasks {
        results.push(task.await.expect("task").expect("submit receipt"));
    }
    results
}

/// Twenty members send the same receipt at once: one earns, nineteen are DUPLICATE. Then
/// twenty receipt numbers with one photograph: again exactly one earns.
async fn twenty_members_race_for_one_receipt(app: &TestApp) {
    create_rule(app, points_rule("all", "0.01")).await;
    let mut members = Vec::new();
    for n in 0..20 {
        members.push(app.create_member(&format!("RACE-{n}")).await);
    }

    let same = receipt(app, "shibuya", "RACE-1", "5000");
    let results = race(app, &members, "race-a", |_| same.clone()).await;
    let winners: Vec<&proto::ReceiptResult> =
        results.iter().filter(|r| r.status == ACCEPTED).collect();
    assert_eq!(winners.len(), 1, "{results:?}");
    assert_accepted(winners[0], 50);
    let losers = results.iter().filter(|r| r.status != ACCEPTED);
    let mut rejected = 0;
    for result in losers {
        assert_rejected(result, "DUPLICATE");
        rejected += 1;
    }
    assert_eq!(rejected, 19);
    let mut total = 0;
    for member_id in &members {
        let (available, pending) = points(app, member_id).await;
        assert_eq!(pending, 0);
        total += available;
    }
    assert_eq!(total, 50, "the receipt earned once");

    // One photograph, twenty receipt numbers.
    let photo = image("one photograph");
    let results = race(app, &members, "race-b", |n| proto::Receipt {
        image_sha256: photo.clone(),
        ..receipt(app, "shibuya", &format!("RACE-2-{n}"), "3000")
    })
    .await;
    let accepted = results.iter().filter(|r| r.status == ACCEPTED).count();
    let duplicates = results
        .iter()
        .filter(|r| r.status == REJECTED && r.reason == "DUPLICATE")
        .count();
    assert_eq!((accepted, duplicates), (1, 19), "{results:?}");

    let accepted = in_status(app, proto::ReceiptStatus::Accepted, 100, "").await;
    assert_eq!(accepted.receipts.len(), 2);
    let rejected = in_status(app, proto::ReceiptStatus::Rejected, 100, "").await;
    assert_eq!(rejected.receipts.len(), 38);
    let mut total = 0;
    for member_id in &members {
        total += points(app, member_id).await.0;
    }
    assert_eq!(total, 80);
    verified(app).await;
}

/// A Japanese receipt's text: the total (合計), the printed local time (Tokyo) and the product
/// lines are read by the server; an English one at a New York store is read in New York time. A
/// text without a total is INVALID_ARGUMENT on receipt.raw_text and writes nothing.
async fn raw_text_is_read_in_the_store_zone(app: &TestApp) {
    // Noon on Monday 23 November 2026 in Tokyo: the receipts below are a day old.
    app.clock
        .set(Utc.with_ymd_and_hms(2026, 11, 23, 3, 0, 0).unwrap());
    app.create_new_york_store("nyc").await;
    create_rule(app, points_rule("base", "0.01")).await;
    create_rule(
        app,
        proto::ReceiptRule {
            conditions: vec![proto::ReceiptCondition {
                sku: "からあげ".into(),
                category: String::new(),
                min_quantity: 2,
            }],
            ..points_rule("karaage", "0.1")
        },
    )
    .await;
    let member_id = app.create_member("RT-1").await;

    let text = "ファミリーマート 渋谷店
2026年11月22日(日) 14:05
レジ0002 責No.123
TEL 03-1234-5678
おにぎり 鮭           ¥150
お茶 500ml            ¥140
からあげ 2個          ¥460
小計                  ¥750
(8%対象 ¥750)
(内消費税 8% ¥55)
合計                  ¥750
お預り                ¥1,000
お釣り                ¥250";
    let from_text = |store_id: &str, receipt_no: &str, text: &str| proto::Receipt {
        store_id: store_id.into(),
        register_id: "2".into(),
        receipt_no: receipt_no.into(),
        issued_at: None,
        total: String::new(),
        lines: vec![],
        image_sha256: image(receipt_no),
        raw_text: text.into(),
    };
    let result = submitted(app, "rt-1", &member_id, from_text("shibuya", "123", text)).await;
    assert_accepted(&result, 7 + 75);

    let english = "BEAN & CUP
11/22/2026 2:05 PM
COFFEE BEANS     ¥1,200
MUG x2           ¥1,600
DISCOUNT        -¥100
SUBTOTAL         ¥2,700
TAX INCL. 10%    ¥245
TOTAL            ¥2,700
VISA             ¥2,700";
    let result = submitted(app, "rt-2", &member_id, from_text("nyc", "9001", english)).await;
    assert_accepted(&result, 27);
    assert_eq!(points(app, &member_id).await, (109, 0));

    let records = history(app, &member_id).await;
    assert_eq!(records.len(), 2);
    let (english_record, japanese_record) = (&records[0], &records[1]);
    let japanese = japanese_record.receipt.as_ref().expect("receipt");
    assert_eq!(japanese.total, "750");
    assert_eq!(
        instant(japanese.issued_at.as_ref().expect("issued_at")),
        Utc.with_ymd_and_hms(2026, 11, 22, 5, 5, 0).unwrap(),
        "14:05 in Tokyo"
    );
    let lines: Vec<(&str, i32, &str)> = japanese
        .lines
        .iter()
        .map(|l| (l.sku.as_str(), l.quantity, l.amount.as_str()))
        .collect();
    assert_eq!(
        lines,
        [
            ("おにぎり 鮭", 1, "150"),
            ("お茶 500ml", 1, "140"),
            ("からあげ", 2, "460"),
        ]
    );
    assert_eq!(japanese_record.rule_ids, ["base", "karaage"]);
    assert!(japanese.raw_text.is_empty(), "raw_text is left out");
    let english_receipt = english_record.receipt.as_ref().expect("receipt");
    assert_eq!(english_receipt.total, "2700");
    assert_eq!(
        instant(english_receipt.issued_at.as_ref().expect("issued_at")),
        Utc.with_ymd_and_hms(2026, 11, 22, 19, 5, 0).unwrap(),
        "2:05 PM in New York (EST)"
    );
    assert_eq!(english_receipt.lines.len(), 2);

    // Tendered and change are no total: refused, nothing stored.
    let no_total = "2026/11/22 08:00
おにぎり ¥150
お預り ¥10,000
お釣り ¥9,850";
    let status = submit(
        app,
        "rt-3",
        &member_id,
        from_text("shibuya", "124", no_total),
    )
    .await
    .expect_err("no total");
    assert_eq!(violated_fields(&status), ["receipt.raw_text"]);
    // A total but no date, and no issued_at: the issue time is missing.
    let no_date = "パン ¥250\n合計 ¥250";
    let status = submit(
        app,
        "rt-4",
        &member_id,
        from_text("shibuya", "125", no_date),
    )
    .await
    .expect_err("no date");
    assert_eq!(violated_fields(&status), ["receipt.issued_at"]);
    assert_eq!(history(app, &member_id).await.len(), 2);
    assert_eq!(points(app, &member_id).await, (109, 0));
    verified(app).await;
}

/// An accepted receipt is a visit: an NTH_VISIT rule with visits 1 issues on it; visits 2 is
/// reached by a sale and a receipt on different local days (not on the same day).
async fn accepted_receipts_count_as_visits(app: &TestApp) {
    campaign(app, "welcome").await;
    campaign(app, "regular").await;
    visit_rule(app, "first", "welcome", 1, "umeda").await;
    visit_rule(app, "second", "regular", 2, "shibuya").await;
    create_rule(app, points_rule("all", "0.01")).await;
    let member_id = app.create_member("VI-1").await;
    let stranger = app.create_member("VI-2").await;

    let first = submitted(
        app,
        "vi-1",
        &member_id,
        receipt(app, "umeda", "V-1", "1000"),
    )
    .await;
    assert_accepted(&first, 10);
    assert_eq!(sources(&first.coupons_issued), ["visit:first"]);
    // A rejected receipt is no visit.
    let mut future = receipt(app, "umeda", "V-2", "1000");
    future.issued_at = Some(ts(now(app) + Duration::hours(1)));
    assert_rejected(
        &submitted(app, "vi-2", &stranger, future).await,
        "FUTURE_DATED",
    );
    assert!(coupons_of(app, &stranger).await.is_empty());

    // Day 1 at Shibuya: a register sale, then a receipt of the same day: one visit.
    app.record_sale(store_sale(
        "vi-sale",
        "S-1",
        member_ref(&member_id),
        "2000",
        0,
    ))
    .await
    .expect("sale");
    let same_day = submitted(
        app,
        "vi-3",
        &member_id,
        receipt(app, "shibuya", "V-3", "1000"),
    )
    .await;
    assert_accepted(&same_day, 10);
    assert!(same_day.coupons_issued.is_empty(), "still the first visit");

    // Day 2: the receipt is the second visit.
    app.advance(Duration::days(1)).await;
    let next_day = submitted(
        app,
        "vi-4",
        &member_id,
        receipt(app, "shibuya", "V-4", "1000"),
    )
    .await;
    assert_accepted(&next_day, 10);
    assert_eq!(sources(&next_day.coupons_issued), ["visit:second"]);
    assert_eq!(
        sources(&coupons_of(app, &member_id).await),
        ["visit:first", "visit:second"]
    );
    let records = history(app, &member_id).await;
    assert_eq!(
        records[0].coupon_codes,
        [next_day.coupons_issued[0].code.clone()]
    );
    verified(app).await;
}

/// Three receipts in review, page_size 2: two, then one, oldest first. The app sees its member's
/// history newest first and may not read the queue.
async fn the_review_queue_pages_oldest_first(app: &TestApp) {
    create_rule(
        app,
        proto::ReceiptRule {
            review_threshold: "10000".into(),
            ..points_rule("careful", "0.01")
        },
    )
    .await;
    let mut pending = Vec::new();
    for n in 1..=3 {
        let member_id = app.create_member(&format!("Q-{n}")).await;
        let r = receipt(app, "shibuya", &format!("Q-{n}"), "20000");
        let result = submitted(app, &format!("q-{n}"), &member_id, r).await;
        assert_eq!((result.status, result.points_awarded), (PENDING, 200));
        pending.push((member_id, result.receipt_id));
        app.clock.advance(Duration::minutes(1));
    }
    // An accepted one is not in the queue.
    let q1 = pending[0].0.clone();
    let small = submitted(app, "q-small", &q1, receipt(app, "shibuya", "Q-4", "500")).await;
    assert_accepted(&small, 5);

    let first = in_status(app, proto::ReceiptStatus::PendingReview, 2, "").await;
    let ids = |page: &proto::ListReceiptsResponse| -> Vec<String> {
        page.receipts.iter().map(|r| r.receipt_id.clone()).collect()
    };
    assert_eq!(ids(&first), [pending[0].1.clone(), pending[1].1.clone()]);
    assert!(!first.next_page_token.is_empty());
    let second = in_status(
        app,
        proto::ReceiptStatus::PendingReview,
        2,
        &first.next_page_token,
    )
    .await;
    assert_eq!(ids(&second), [pending[2].1.clone()]);
    assert!(second.next_page_token.is_empty());
    let members: Vec<&str> = first
        .receipts
        .iter()
        .chain(&second.receipts)
        .map(|r| r.member_id.as_str())
        .collect();
    assert_eq!(
        members,
        [
            pending[0].0.as_str(),
            pending[1].0.as_str(),
            pending[2].0.as_str()
        ]
    );
    assert!(
        first
            .receipts
            .iter()
            .chain(&second.receipts)
            .all(|r| r.status == PENDING
                && r.reason == "REVIEW_THRESHOLD"
                && r.points_awarded == 200)
    );

    // The member's history is newest first, and may be filtered by status.
    let records = history(app, &q1).await;
    let ids_of = |records: &[proto::ReceiptRecord]| -> Vec<String> {
        records.iter().map(|r| r.receipt_id.clone()).collect()
    };
    assert_eq!(
        ids_of(&records),
        [small.receipt_id.clone(), pending[0].1.clone()]
    );
    let only_pending = app
        .app_client
        .engagement()
        .list_receipts(proto::ListReceiptsRequest {
            member: Some(member_ref(&q1)),
            status: PENDING,
            page_size: 10,
            page_token: String::new(),
        })
        .await
        .expect("filtered history")
        .into_inner();
    assert_eq!(ids_of(&only_pending.receipts), [pending[0].1.clone()]);

    // Approving the oldest moves the queue up.
    review(app, "q-approve", &pending[0].1, true, "ok")
        .await
        .expect("approve");
    let queue = in_status(app, proto::ReceiptStatus::PendingReview, 2, "").await;
    assert_eq!(ids(&queue), [pending[1].1.clone(), pending[2].1.clone()]);
    assert!(queue.next_page_token.is_empty());
    assert_eq!(points(app, &q1).await, (205, 0));

    // The queue is the admin's; without a member the status is required.
    let status = app
        .app_client
        .engagement()
        .list_receipts(proto::ListReceiptsRequest {
            member: None,
            status: PENDING,
            page_size: 10,
            page_token: String::new(),
        })
        .await
        .expect_err("app may not read the queue");
    assert_eq!(status.code(), Code::PermissionDenied);
    let status = app
        .admin
        .engagement()
        .list_receipts(proto::ListReceiptsRequest::default())
        .await
        .expect_err("neither member nor status");
    assert_eq!(violated_fields(&status), ["status"]);
    verified(app).await;
}

/// raw_text over 16 KiB or 200 lines, and an image_sha256 that is not 64 hex characters:
/// INVALID_ARGUMENT on the field, and nothing is written (the request id stays free).
async fn input_limits_write_nothing(app: &TestApp) {
    create_rule(app, points_rule("all", "0.01")).await;
    let member_id = app.create_member("LIM-1").await;
    let printed = now(app) - Duration::hours(1);
    // The clock is 12:00 in Tokyo: print the receipt's local date and an hour ago.
    let header = format!(
        "{}\n",
        (printed + Duration::hours(9)).format("%Y/%m/%d %H:%M")
    );
    let text_receipt = |receipt_no: &str, text: String| proto::Receipt {
        store_id: "shibuya".into(),
        register_id: "1".into(),
        receipt_no: receipt_no.into(),
        issued_at: None,
        total: String::new(),
        lines: vec![],
        image_sha256: image(receipt_no),
        raw_text: text,
    };

    let too_many_lines = header.clone() + &"ガム ¥100\n".repeat(199) + "合計 ¥19,900";
    assert_eq!(too_many_lines.lines().count(), 201);
    let status = submit(
        app,
        "lim-1",
        &member_id,
        text_receipt("L-1", too_many_lines),
    )
    .await
    .expect_err("201 lines");
    assert_eq!(violated_fields(&status), ["receipt.raw_text"]);

    let too_long = format!("{header}合計 ¥100\n{}", "#".repeat(16 * 1024));
    let status = submit(app, "lim-2", &member_id, text_receipt("L-2", too_long))
        .await
        .expect_err("over 16 KiB");
    assert_eq!(violated_fields(&status), ["receipt.raw_text"]);
    // The limit holds with lines too (then the text is not read, but it is bounded).
    let mut with_lines = receipt(app, "shibuya", "L-3", "1000");
    with_lines.raw_text = "x".repeat(16 * 1024 + 1);
    let status = submit(app, "lim-3", &member_id, with_lines)
        .await
        .expect_err("over 16 KiB");
    assert_eq!(violated_fields(&status), ["receipt.raw_text"]);

    for (n, bad) in [
        "ab".repeat(31) + "a",
        "ab".repeat(31) + "zz",
        "ab".repeat(33),
        String::new(),
    ]
    .into_iter()
    .enumerate()
    {
        let r = proto::Receipt {
            image_sha256: bad.clone(),
            ..receipt(app, "shibuya", &format!("L-4-{n}"), "1000")
        };
        let status = submit(app, &format!("lim-4-{n}"), &member_id, r)
            .await
            .expect_err("bad image hash");
        assert_eq!(
            violated_fields(&status),
            ["receipt.image_sha256"],
            "{bad:?}"
        );
    }
    assert!(history(app, &member_id).await.is_empty(), "nothing written");
    assert_eq!(points(app, &member_id).await, (0, 0));

    // 200 lines exactly is fine; the refused request id was never used.
    let just_fits = header + &"ガム ¥100\n".repeat(198) + "合計 ¥19,800";
    assert_eq!(just_fits.lines().count(), 200);
    let result = submitted(app, "lim-1", &member_id, text_receipt("L-5", just_fits)).await;
    assert_accepted(&result, 198);
    let records = history(app, &member_id).await;
    assert_eq!(records.len(), 1);
    let stored = records[0].receipt.as_ref().expect("receipt");
    assert_eq!(stored.lines.len(), 198);
    assert_eq!(instant(stored.issued_at.as_ref().unwrap()), {
        let minute = printed.timestamp() / 60 * 60;
        Utc.timestamp_opt(minute, 0).unwrap()
    });
    verified(app).await;
}

/// The app submits and lists a member's receipts; checkout and register keys may not submit;
/// only admins create rules and review. Rules name known campaigns and stores.
async fn roles_and_rule_references(app: &TestApp) {
    campaign(app, "roles").await;
    let member_id = app.create_member("RO-1").await;
    let request = |request_id: &str| {
        submission(
            request_id,
            &member_id,
            receipt(app, "shibuya", "RO-1", "1000"),
        )
    };
    for (name, client) in [("checkout", &app.checkout), ("register", &app.register)] {
        let status = submit_as(client, request(&format!("ro-{name}")))
            .await
            .expect_err("may not submit");
        assert_eq!(status.code(), Code::PermissionDenied, "{name}: {status:?}");
    }
    let status = submit_as(&app.anonymous, request("ro-anon"))
        .await
        .expect_err("no key");
    assert_eq!(status.code(), Code::Unauthenticated);
    let status = app
        .app_client
        .engagement()
        .create_receipt_rule(proto::CreateReceiptRuleRequest {
            request_id: "ro-rule".into(),
            rule: Some(points_rule("app-rule", "1")),
        })
        .await
        .expect_err("app may not create rules");
    assert_eq!(status.code(), Code::PermissionDenied);
    let status = app
        .checkout
        .engagement()
        .list_receipts(proto::ListReceiptsRequest {
            member: Some(member_ref(&member_id)),
            page_size: 10,
            ..Default::default()
        })
        .await
        .expect_err("checkout may not list receipts");
    assert_eq!(status.code(), Code::PermissionDenied);

    // Rule references and defaults.
    let engagement = app.admin.engagement();
    let status = engagement
        .clone()
        .create_receipt_rule(proto::CreateReceiptRuleRequest {
            request_id: "ro-nocampaign".into(),
            rule: Some(proto::ReceiptRule {
                campaign_id: "nope".into(),
                ..Default::default()
            }),
        })
        .await
        .expect_err("unknown campaign");
    assert_refused(&status, Code::NotFound, "CAMPAIGN_NOT_FOUND");
    let status = engagement
        .clone()
        .create_receipt_rule(proto::CreateReceiptRuleRequest {
            request_id: "ro-nostore".into(),
            rule: Some(proto::ReceiptRule {
                store_ids: vec!["nowhere".into()],
                ..points_rule("", "0.01")
            }),
        })
        .await
        .expect_err("unknown store");
    assert_refused(&status, Code::NotFound, "STORE_NOT_FOUND");
    let status = engagement
        .clone()
        .create_receipt_rule(proto::CreateReceiptRuleRequest {
            request_id: "ro-empty".into(),
            rule: Some(proto::ReceiptRule::default()),
        })
        .await
        .expect_err("awards nothing");
    assert_eq!(violated_fields(&status), ["rule"]);
    let created = create_rule(
        app,
        proto::ReceiptRule {
            campaign_id: "roles".into(),
            ..Default::default()
        },
    )
    .await;
    assert!(!created.rule_id.is_empty());
    assert_eq!(created.max_age_days, 7);
    assert_eq!(created.earn_rate, "");

    // The app may submit and list; not review.
    let result = submit_as(&app.app_client, request("ro-app"))
        .await
        .expect("app submits");
    assert_accepted(&result, 0);
    assert_eq!(
        sources(&result.coupons_issued),
        [format!("receipt:{}", created.rule_id)]
    );
    assert_eq!(history(app, &member_id).await.len(), 1);
    let status = app
        .app_client
        .engagement()
        .review_receipt(proto::ReviewReceiptRequest {
            request_id: "ro-review".into(),
            receipt_id: result.receipt_id.clone(),
            approve: true,
            note: String::new(),
        })
        .await
        .expect_err("app may not review");
    assert_eq!(status.code(), Code::PermissionDenied);
    verified(app).await;
}

/// The same request_id gives the same answer (the same receipt_id) with no second effect; with
/// another request it is IDEMPOTENCY_KEY_REUSED. A replayed review too.
async fn replayed_requests_have_one_effect(app: &TestApp) {
    create_rule(
        app,
        proto::ReceiptRule {
            review_threshold: "10000".into(),
            ..points_rule("all", "0.01")
        },
    )
    .await;
    let member_id = app.create_member("ID-1").await;
    let other = app.create_member("ID-2").await;

    let r = receipt(app, "shibuya", "I-1", "1000");
    let first = submitted(app, "id-1", &member_id, r.clone()).await;
    assert_accepted(&first, 10);
    app.clock.advance(Duration::minutes(1));
    let replay = submitted(app, "id-1", &member_id, r.clone()).await;
    assert_eq!(replay, first);
    assert_eq!(points(app, &member_id).await, (10, 0));
    assert_eq!(history(app, &member_id).await.len(), 1);

    let status = submit(
        app,
        "id-1",
        &member_id,
        receipt(app, "shibuya", "I-2", "1000"),
    )
    .await
    .expect_err("same id, another receipt");
    assert_refused(&status, Code::AlreadyExists, "IDEMPOTENCY_KEY_REUSED");

    // A rejection is remembered as it was.
    let duplicate = submitted(app, "id-2", &other, r.clone()).await;
    assert_rejected(&duplicate, "DUPLICATE");
    let again = submitted(app, "id-2", &other, r).await;
    assert_eq!(again, duplicate);
    assert_eq!(history(app, &other).await.len(), 1);

    // A review replayed answers the same, not RECEIPT_NOT_PENDING, and pays once.
    let big = submitted(
        app,
        "id-3",
        &member_id,
        receipt(app, "shibuya", "I-3", "10000"),
    )
    .await;
    assert_eq!((big.status, big.points_awarded), (PENDING, 100));
    let approved = review(app, "id-review", &big.receipt_id, true, "ok")
        .await
        .expect("approve");
    let replayed = review(app, "id-review", &big.receipt_id, true, "ok")
        .await
        .expect("replayed approval");
    assert_eq!(replayed, approved);
    assert_eq!(points(app, &member_id).await, (110, 0));
    verified(app).await;
}

// ---------------------------------------------------------------------------------------------
// Fraud (issue #21): each scenario was tried as an attacker before the fix; the comments say
// what it did then.

/// A register receipt at `register_id`, issued an hour ago, with its own photograph.
fn at_register(app: &TestApp, register_id: &str, receipt_no: &str, total: &str) -> proto::Receipt {
    proto::Receipt {
        register_id: register_id.into(),
        image_sha256: image(&format!("{register_id}/{receipt_no}/{total}")),
        ..receipt(app, "shibuya", receipt_no, total)
    }
}

/// A register sale at `register_id` of shibuya, for `member`.
fn sale_at(
    order_id: &str,
    register_id: &str,
    receipt_no: &str,
    member: proto::MemberRef,
    total: &str,
) -> proto::RecordSaleRequest {
    proto::RecordSaleRequest {
        order_id: order_id.into(),
        register_id: register_id.into(),
        ..store_sale(order_id, receipt_no, member, total, 0)
    }
}

/// A member's journal, newest first.
async fn journal(app: &TestApp, member_id: &str) -> Vec<proto::Transaction> {
    app.admin
        .ledger()
        .list_transactions(proto::ListTransactionsRequest {
            member: Some(member_ref(member_id)),
            page_size: 100,
            page_token: String::new(),
        })
        .await
        .expect("list transactions")
        .into_inner()
        .transactions
}

/// One paper receipt, register "R9" number "0456", typed "456" or "r9" or "000456" by
/// another member, or by the register: one receipt. (Before: ACCEPTED again, 10 more points
/// each; and the register sale "00456" earned beside the scan.)
async fn a_receipt_typed_another_way_is_the_same_receipt(app: &TestApp) {
    create_rule(app, points_rule("all", "0.01")).await;
    let first = app.create_member("TY-1").await;
    let other = app.create_member("TY-2").await;
    let buyer = app.create_member("TY-3").await;
    let printed = at_register(app, "R9", "0456", "1000");
    assert_accepted(&submitted(app, "ty-1", &first, printed).await, 10);

    for (n, (register_id, receipt_no)) in [("R9", "456"), ("r9", "0456"), ("r9", "000456")]
        .into_iter()
        .enumerate()
    {
        let retyped = at_register(app, register_id, receipt_no, "1000");
        let result = submitted(app, &format!("ty-again-{n}"), &other, retyped).await;
        assert_rejected(&result, "DUPLICATE");
    }
    // Another number, or another register, is another receipt.
    let next = at_register(app, "R9", "4560", "1000");
    assert_accepted(&submitted(app, "ty-2", &other, next).await, 10);

    // Sold at the register as "0457": a scan of "r9"/"457" is ALREADY_EARNED.
    let sale = sale_at("ty-sale-1", "R9", "0457", member_ref(&buyer), "2000");
    assert_eq!(app.record_sale(sale).await.expect("sale").points_earned, 20);
    let scan = at_register(app, "r9", "457", "2000");
    assert_rejected(
        &submitted(app, "ty-3", &other, scan).await,
        "ALREADY_EARNED",
    );
    // Recorded again typed another way: the register's receipt exists.
    let again = sale_at("ty-sale-2", "r9", "457", member_ref(&buyer), "2000");
    let status = app.record_sale(again).await.expect_err("same receipt");
    assert_refused(&status, Code::AlreadyExists, "RECEIPT_EXISTS");

    // The register records the first receipt as "00456" at "r9": it takes it from the scan.
    let sale = sale_at("ty-sale-3", "r9", "00456", member_ref(&buyer), "1000");
    assert_eq!(app.record_sale(sale).await.expect("sale").points_earned, 10);
    assert_eq!(
        points(app, &first).await,
        (0, 0),
        "the scan gave its 10 back"
    );
    assert_eq!(points(app, &other).await, (10, 0));
    assert_eq!(points(app, &buyer).await, (30, 0));
    verified(app).await;
}

/// A total of 0 (before: ACCEPTED, 0 points, and the number claimed against its true buyer)
/// and a total its lines do not add up to (before: ACCEPTED on the total alone) are
/// INVALID_ARGUMENT on receipt.total, and write nothing.
async fn a_receipt_of_nothing_or_of_made_up_lines_is_invalid(app: &TestApp) {
    create_rule(app, points_rule("all", "0.01")).await;
    let squatter = app.create_member("NO-1").await;
    let buyer = app.create_member("NO-2").await;

    let nothing = receipt(app, "shibuya", "N-1", "0");
    let status = submit(app, "no-1", &squatter, nothing)
        .await
        .expect_err("0");
    assert_eq!(violated_fields(&status), ["receipt.total"]);
    let no_lines = proto::Receipt {
        lines: Vec::new(),
        ..receipt(app, "shibuya", "N-1", "0.00")
    };
    let status = submit(app, "no-2", &squatter, no_lines)
        .await
        .expect_err("0");
    assert_eq!(violated_fields(&status), ["receipt.total"]);
    let made_up = proto::Receipt {
        lines: basket(&["200", "300"]).lines,
        ..receipt(app, "shibuya", "N-2", "1000")
    };
    let status = submit(app, "no-3", &squatter, made_up)
        .await
        .expect_err("sum");
    assert_eq!(violated_fields(&status), ["receipt.total"]);
    assert!(history(app, &squatter).await.is_empty(), "nothing stored");

    // The numbers are still the true buyer's to scan; lines that add up are fine.
    let real = receipt(app, "shibuya", "N-1", "1500");
    assert_accepted(&submitted(app, "no-4", &buyer, real).await, 15);
    let lines = proto::Receipt {
        lines: basket(&["200", "300.50"]).lines,
        ..receipt(app, "shibuya", "N-2", "500.5")
    };
    assert_accepted(&submitted(app, "no-5", &buyer, lines).await, 5);
    assert_eq!(points(app, &squatter).await, (0, 0));
    verified(app).await;
}

/// A receipt of ¥100,000,000,000 at 1 % (before: ACCEPTED at once, 1,000,000,000 points)
/// waits for review under the program's default threshold; past the program's
/// max_points_per_receipt a receipt waits too (EARN_CAP_EXCEEDED). Both settings read,
/// update and refuse bad values through ProgramService.
async fn a_made_up_fortune_waits_for_review(app: &TestApp) {
    create_rule(app, points_rule("all", "0.01")).await;
    let member_id = app.create_member("FO-1").await;
    let program = app
        .admin
        .program()
        .get_program(proto::GetProgramRequest {})
        .await
        .expect("program")
        .into_inner()
        .program
        .expect("program");
    assert_eq!(
        (
            program.max_points_per_receipt,
            program.receipt_review_threshold.as_str()
        ),
        (10_000, "100000"),
        "defaults"
    );

    let fortune = "100000000000";
    let status = submit(
        app,
        "fo-0",
        &member_id,
        proto::Receipt {
            lines: basket(&["200"]).lines,
            ..receipt(app, "shibuya", "F-0", fortune)
        },
    )
    .await
    .expect_err("lines of 200");
    assert_eq!(violated_fields(&status), ["receipt.total"]);
    let result = submitted(
        app,
        "fo-1",
        &member_id,
        receipt(app, "shibuya", "F-1", fortune),
    )
    .await;
    assert_eq!(
        (result.status, result.reason.as_str(), result.points_awarded),
        (PENDING, "REVIEW_THRESHOLD", 1_000_000_000)
    );
    assert_eq!(points(app, &member_id).await, (0, 1_000_000_000));
    review(
        app,
        "fo-reject",
        &result.receipt_id,
        false,
        "no such receipt",
    )
    .await
    .expect("reject");
    assert_eq!(points(app, &member_id).await, (0, 0));

    // No default threshold, a cap of 500 points a receipt.
    app.set_program(|program| {
        program.receipt_review_threshold = String::new();
        program.max_points_per_receipt = 500;
    })
    .await;
    let at_cap = submitted(
        app,
        "fo-2",
        &member_id,
        receipt(app, "shibuya", "F-2", "50000"),
    )
    .await;
    assert_accepted(&at_cap, 500);
    let over = submitted(
        app,
        "fo-3",
        &member_id,
        receipt(app, "shibuya", "F-3", "150000"),
    )
    .await;
    assert_eq!(
        (over.status, over.reason.as_str(), over.points_awarded),
        (PENDING, "EARN_CAP_EXCEEDED", 1500)
    );
    assert_eq!(points(app, &member_id).await, (500, 1500));

    let bad = proto::UpdateProgramRequest {
        request_id: String::new(),
        program: Some(proto::Program {
            max_points_per_receipt: -1,
            receipt_review_threshold: "-1".into(),
            ..Default::default()
        }),
        update_mask: Some(prost_types::FieldMask {
            paths: vec![
                "max_points_per_receipt".into(),
                "receipt_review_threshold".into(),
            ],
        }),
    };
    let status = app
        .admin
        .program()
        .update_program(bad)
        .await
        .expect_err("negative");
    assert_eq!(
        violated_fields(&status),
        [
            "program.max_points_per_receipt",
            "program.receipt_review_threshold"
        ]
    );
    verified(app).await;
}

/// A member scans a receipt number the register has not printed yet, and spends most of its
/// points; then the register records the real sale for its buyer. Before: the sale earned 0
/// and the scanner kept the points. Now the sale earns for the buyer, and the scan's points
/// are reversed in the ledger (what the scanner spent is booked as a shortfall: no balance
/// goes below 0); the scan reads REJECTED, ALREADY_EARNED. A scan waiting for review gives
/// back its pending points and leaves the queue.
async fn the_register_sale_takes_a_scanned_receipt_back(app: &TestApp) {
    create_rule(app, points_rule("all", "0.05")).await;
    let scanner = app.create_member("TB-1").await;
    let buyer = app.create_member("TB-2").await;

    let guessed = submitted(
        app,
        "tb-1",
        &scanner,
        receipt(app, "shibuya", "R-900", "3000"),
    )
    .await;
    assert_accepted(&guessed, 150);
    // 100 of them spent at once: the sale earns floor(900 × 0.01) = 9.
    let spend = store_sale("tb-spend", "R-800", member_ref(&scanner), "1000", 100);
    app.record_sale(spend).await.expect("spend");
    assert_eq!(points(app, &scanner).await, (59, 0));

    let sale = store_sale("tb-sale", "R-900", member_ref(&buyer), "3000", 0);
    let order = app.record_sale(sale).await.expect("the real sale");
    assert_eq!(order.points_earned, 30, "before: 0");
    assert_eq!(points(app, &buyer).await, (30, 0));
    let balance = app.balance(&scanner).await;
    assert_eq!(
        (balance.available_points, balance.pending_points),
        (0, 0),
        "59 taken back, 91 short"
    );
    assert_eq!(balance.lifetime_earned_points, 9);
    let record = &history(app, &scanner).await[0];
    assert_eq!(record.receipt_id, guessed.receipt_id);
    assert_eq!(
        (record.status, record.reason.as_str(), record.points_awarded),
        (REJECTED, "ALREADY_EARNED", 0)
    );
    let reversal = &journal(app, &scanner).await[0];
    assert_eq!(reversal.kind, "receipt_reversed");
    let mut postings: Vec<(&str, &str, i64)> = reversal
        .postings
        .iter()
        .map(|p| (p.from_account.as_str(), p.to_account.as_str(), p.amount))
        .collect();
    postings.sort();
    let member_account = format!("member:{scanner}");
    assert_eq!(
        postings,
        [
            (member_account.as_str(), "program:issued", 59),
            ("program:shortfall", "program:issued", 91),
        ]
    );
    assert_eq!(reversal.metadata["receipt_id"], guessed.receipt_id);
    assert_eq!(reversal.metadata["order_id"], order.order_id);
    assert_eq!(reversal.metadata["reason"], "register_sale");
    // Scanned again by anyone: ALREADY_EARNED, as after any register sale.
    let again = proto::Receipt {
        image_sha256: image("another photograph of R-900"),
        ..receipt(app, "shibuya", "R-900", "3000")
    };
    assert_rejected(
        &submitted(app, "tb-2", &scanner, again).await,
        "ALREADY_EARNED",
    );

    // Waiting for review: the pending points go back and the receipt leaves the queue.
    app.set_program(|program| program.receipt_review_threshold = "10000".into())
        .await;
    let waiting = submitted(
        app,
        "tb-3",
        &scanner,
        receipt(app, "shibuya", "R-901", "20000"),
    )
    .await;
    assert_eq!((waiting.status, waiting.points_awarded), (PENDING, 1000));
    assert_eq!(points(app, &scanner).await, (0, 1000));
    let sale = store_sale("tb-sale-2", "R-901", member_ref(&buyer), "20000", 0);
    assert_eq!(
        app.record_sale(sale).await.expect("sale").points_earned,
        200
    );
    assert_eq!(points(app, &scanner).await, (0, 0));
    assert_eq!(points(app, &buyer).await, (230, 0));
    let queue = in_status(app, proto::ReceiptStatus::PendingReview, 10, "").await;
    assert!(queue.receipts.is_empty(), "{queue:?}");
    let status = review(app, "tb-review", &waiting.receipt_id, true, "")
        .await
        .expect_err("not pending");
    assert_refused(&status, Code::FailedPrecondition, "RECEIPT_NOT_PENDING");
    verified(app).await;
}

/// A scan and the register's sale of one receipt sent at the same instant, eight times over:
/// whichever commits first, the sale earns and the scan ends REJECTED, ALREADY_EARNED with
/// nothing (before: two batches that each checked the other's table could both earn).
async fn a_scan_and_its_register_sale_at_once_earn_once(app: &TestApp) {
    create_rule(app, points_rule("all", "0.05")).await;
    let scanner = app.create_member("AT-1").await;
    let buyer = app.create_member("AT-2").await;
    let rounds = 8;
    for n in 0..rounds {
        let receipt_no = format!("AT-{n}");
        let start = std::sync::Arc::new(tokio::sync::Barrier::new(2));
        let scan = {
            let (client, start) = (app.app_client.clone(), start.clone());
            let request = submission(
                &format!("at-scan-{n}"),
                &scanner,
                receipt(app, "shibuya", &receipt_no, "2000"),
            );
            tokio::spawn(async move {
                start.wait().await;
                submit_as(&client, request).await
            })
        };
        let sale = {
            let (client, start) = (app.register.clone(), start.clone());
            let request = store_sale(
                &format!("at-sale-{n}"),
                &receipt_no,
                member_ref(&buyer),
                "2000",
                0,
            );
            tokio::spawn(async move {
                start.wait().await;
                crate::helpers::record_sale_as(&client, request).await
            })
        };
        let scanned = scan.await.expect("task").expect("scan");
        let sold = sale.await.expect("task").expect("sale");
        assert!(
            scanned.status == ACCEPTED || scanned.reason == "ALREADY_EARNED",
            "{scanned:?}"
        );
        assert_eq!(sold.points_earned, 20);
    }
    assert_eq!(points(app, &scanner).await, (0, 0));
    assert_eq!(points(app, &buyer).await, (20 * rounds, 0));
    for record in history(app, &scanner).await {
        assert_eq!(
            (record.status, record.reason.as_str(), record.points_awarded),
            (REJECTED, "ALREADY_EARNED", 0)
        );
    }
    verified(app).await;
}

/// A receipt records a visit only when it earns and was issued on the local day it is sent.
/// Before: an accepted receipt three days old recorded a visit of that day (and its visit
/// coupon), so a drawer of old receipts farmed visits; a receipt earning nothing did too.
async fn only_a_receipt_of_today_that_earns_is_a_visit(app: &TestApp) {
    campaign(app, "welcome").await;
    visit_rule(app, "first", "welcome", 1, "umeda").await;
    create_rule(app, points_rule("tenth", "0.001")).await;
    let member_id = app.create_member("OV-1").await;

    let mut old = receipt(app, "umeda", "OV-1", "5000");
    old.issued_at = Some(ts(now(app) - Duration::days(3)));
    let result = submitted(app, "ov-1", &member_id, old).await;
    assert_accepted(&result, 5);
    assert!(result.coupons_issued.is_empty(), "{result:?}");
    let nothing = submitted(
        app,
        "ov-2",
        &member_id,
        receipt(app, "umeda", "OV-2", "500"),
    )
    .await;
    assert_accepted(&nothing, 0);
    assert!(nothing.coupons_issued.is_empty(), "{nothing:?}");
    assert!(coupons_of(app, &member_id).await.is_empty());

    let today = submitted(
        app,
        "ov-3",
        &member_id,
        receipt(app, "umeda", "OV-3", "5000"),
    )
    .await;
    assert_accepted(&today, 5);
    assert_eq!(sources(&today.coupons_issued), ["visit:first"]);
    verified(app).await;
}

/// A receipt rule made by CreateReceiptRule is a rule: ListRules shows it with its trigger,
/// UpdateRule narrows its stores and switches it off; asking it for what the receipt area does
/// not decide (a bonus, a limit) is refused and changes nothing.
async fn receipt_rules_are_rules_of_the_one_engine(app: &TestApp) {
    create_rule(app, points_rule("scan", "0.01")).await;
    let mut rules = app.admin.rules();
    let listed = rules
        .list_rules(proto::ListRulesRequest {
            trigger: proto::RuleTrigger::Receipt as i32,
            include_disabled: true,
            ..Default::default()
        })
        .await
        .expect("list rules")
        .into_inner()
        .rules;
    let ids: Vec<&str> = listed.iter().map(|rule| rule.rule_id.as_str()).collect();
    assert_eq!(ids, ["scan"]);
    assert_eq!(
        listed[0].receipt.as_ref().map(|r| r.earn_rate.as_str()),
        Some("0.01")
    );
    let update = |request_id: &str, rule: proto::Rule, path: &str| {
        let mut rules = app.admin.rules();
        let request = proto::UpdateRuleRequest {
            request_id: request_id.into(),
            rule: Some(rule),
            update_mask: Some(prost_types::FieldMask {
                paths: vec![path.into()],
            }),
        };
        async move { rules.update_rule(request).await }
    };
    let bonus = proto::Rule {
        rule_id: "scan".into(),
        effects: Some(proto::RuleEffects {
            bonus_points: 100,
            ..Default::default()
        }),
        ..Default::default()
    };
    let refused = update("u1", bonus, "effects").await.unwrap_err();
    assert_eq!(refused.code(), Code::InvalidArgument, "{refused:?}");

    let member_id = app.create_member("RR-1").await;
    let first = submitted(
        app,
        "s1",
        &member_id,
        receipt(app, "shibuya", "0001", "1000"),
    )
    .await;
    assert_accepted(&first, 10);
    // Only at Umeda now: a Shibuya receipt matches no rule.
    let umeda = proto::Rule {
        rule_id: "scan".into(),
        conditions: Some(proto::RuleConditions {
            store_ids: vec!["umeda".into()],
            ..Default::default()
        }),
        ..Default::default()
    };
    update("u2", umeda, "conditions").await.expect("narrow");
    let elsewhere = submitted(
        app,
        "s2",
        &member_id,
        receipt(app, "shibuya", "0002", "1000"),
    )
    .await;
    assert_rejected(&elsewhere, "NO_MATCHING_RULE");
    let at_umeda = submitted(app, "s3", &member_id, receipt(app, "umeda", "0003", "1000")).await;
    assert_accepted(&at_umeda, 10);
    let off = proto::Rule {
        rule_id: "scan".into(),
        enabled: Some(false),
        ..Default::default()
    };
    update("u3", off, "enabled").await.expect("disable");
    let switched_off =
        submitted(app, "s4", &member_id, receipt(app, "umeda", "0004", "1000")).await;
    assert_rejected(&switched_off, "NO_MATCHING_RULE");
    assert_eq!(points(app, &member_id).await.0, 20);
    app.verify_ok().await;
}
