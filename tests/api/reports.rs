//! ReportService: the liability, a campaign's statistics and the activity per channel, store
//! and day, each checked against figures the test works out from the operations it performed.

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, TimeZone, Utc};
use omo::{
    client::Client,
    domain::{Clock, report::two_proportion_test},
    proto::{self, campaign::Discount, campaign_variant},
};
use tonic::Code;

use crate::helpers::{
    TestApp, assert_refused, basket, ec_order, member_ref, record_sale_as, start_time, store_sale,
    violated_fields,
};

crate::both_backends! {
    liability_follows_earning_holds_maturity_and_expiry => liability_follows_earning_holds_maturity_and_expiry,
    campaign_stats_count_every_coupon_path => campaign_stats_count_every_coupon_path,
    activity_is_booked_on_local_days => activity_is_booked_on_local_days,
    reports_are_for_admins_and_check_their_arguments => reports_are_for_admins_and_check_their_arguments,
}

fn utc(y: i32, mo: u32, d: u32, h: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(y, mo, d, h, 0, 0).unwrap()
}

fn timestamp(at: DateTime<Utc>) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: at.timestamp(),
        nanos: 0,
    }
}

async fn liability(app: &TestApp, as_of: Option<DateTime<Utc>>) -> proto::GetLiabilityResponse {
    app.admin
        .reports()
        .get_liability(proto::GetLiabilityRequest {
            as_of: as_of.map(timestamp),
        })
        .await
        .expect("liability")
        .into_inner()
}

fn months(buckets: &[(&str, i64)]) -> Vec<proto::ExpiryBucket> {
    buckets
        .iter()
        .map(|(month, points)| proto::ExpiryBucket {
            month: (*month).into(),
            points: *points,
        })
        .collect()
}

/// A register sale at `store_id` by the admin key (registers are bound to one store).
fn sale_at(
    store_id: &str,
    receipt_no: &str,
    member_id: &str,
    total: &str,
) -> proto::RecordSaleRequest {
    proto::RecordSaleRequest {
        request_id: format!("sale-{store_id}-{receipt_no}"),
        order_id: format!("{store_id}-1-{receipt_no}"),
        member: Some(member_ref(member_id)),
        channel: proto::Channel::Store as i32,
        store_id: store_id.into(),
        register_id: "1".into(),
        basket: Some(basket(&[total])),
        receipt_no: receipt_no.into(),
        ..Default::default()
    }
}

async fn liability_follows_earning_holds_maturity_and_expiry(app: &TestApp) {
    // Arrange: a point is worth 2; EC points wait 7 days; lots expire 365 days after they
    // become usable. The clock starts at 2026-04-01 03:00 UTC (12:00 in Tokyo).
    app.set_program(|p| {
        p.point_value = "2".into();
        p.ec_pending_days = 7;
    })
    .await;
    let shopper = app.create_member("c-shopper").await;
    let online = app.create_member("c-online").await;
    // 10,000 at the register: 100 points, usable now, expiring 2027-04-01 03:00 UTC.
    app.record_sale(store_sale("s1", "r1", member_ref(&shopper), "10000", 0))
        .await
        .expect("sale");
    // Sold at 2026-03-31 20:00 UTC (replayed): 30 points expiring 2027-03-31 20:00 UTC, which
    // is April in Tokyo but March in UTC.
    let mut late = store_sale("s2", "r2", member_ref(&shopper), "3000", 0);
    late.occurred_at = Some(timestamp(utc(2026, 3, 31, 20)));
    app.record_sale(late).await.expect("replayed sale");
    // 5,000 online: 50 points pending until 2026-04-08, then expiring 2027-04-08.
    app.authorize(ec_order("a1", "o1", &online, "5000", 0))
        .await
        .expect("authorize");
    app.capture("c1", "o1").await.expect("capture");
    // The shopper holds 40 of its 130 points for an authorized order.
    app.authorize(ec_order("a2", "o2", &shopper, "1000", 40))
        .await
        .expect("hold");

    // Act + Assert: outstanding = 100 + 30 + 50, of which 50 pending and 40 held.
    let now = liability(app, None).await;
    assert_eq!(now.outstanding_points, 180);
    assert_eq!(now.outstanding_value, "360");
    assert_eq!(now.pending_points, 50);
    assert_eq!(now.held_points, 40);
    assert_eq!(now.by_expiry_month, months(&[("2027-04", 180)]));
    assert_eq!(liability(app, Some(app.clock.now())).await, now);

    // A year and a month ahead every lot has expired but for the 40 points the hold keeps.
    let projected = liability(app, Some(utc(2027, 5, 1, 0))).await;
    assert_eq!(projected.outstanding_points, 40);
    assert_eq!(projected.pending_points, 0);
    assert_eq!(projected.held_points, 40);
    assert_eq!(projected.by_expiry_month, months(&[("2027-04", 40)]));

    // In the program's zone set to UTC, the replayed sale's 30 points expire in March.
    app.set_program(|p| p.time_zone = "UTC".into()).await;
    let in_utc = liability(app, None).await;
    assert_eq!(
        in_utc.by_expiry_month,
        months(&[("2027-03", 30), ("2027-04", 150)])
    );
    app.set_program(|p| p.time_zone = "Asia/Tokyo".into()).await;

    // The hold is voided, the EC points mature, and the shopper spends 30 points (worth 60)
    // on 1,000: floor(940 × 0.01) = 9 points more, expiring 2027-04-09.
    app.void("v2", "o2").await.expect("void");
    app.advance(Duration::days(8)).await;
    app.record_sale(store_sale("s3", "r3", member_ref(&shopper), "1000", 30))
        .await
        .expect("spend");
    let later = liability(app, None).await;
    assert_eq!(later.outstanding_points, 180 - 30 + 9);
    assert_eq!(later.outstanding_value, ((180 - 30 + 9) * 2).to_string());
    assert_eq!(later.pending_points, 0);
    assert_eq!(later.held_points, 0);
    assert_eq!(later.by_expiry_month, months(&[("2027-04", 159)]));

    // A year on, the sweeper has expired everything: nothing is owed.
    app.advance(Duration::days(366)).await;
    let gone = liability(app, None).await;
    assert_eq!(gone.outstanding_points, 0);
    assert_eq!(gone.outstanding_value, "0");
    assert!(gone.by_expiry_month.is_empty());
    app.verify_ok().await;
}

async fn campaign_stats(app: &TestApp, campaign_id: &str) -> proto::GetCampaignStatsResponse {
    app.admin
        .reports()
        .get_campaign_stats(proto::GetCampaignStatsRequest {
            campaign_id: campaign_id.into(),
        })
        .await
        .expect("campaign stats")
        .into_inner()
}

fn variant(variant_id: &str, amount_off: &str) -> proto::CampaignVariant {
    proto::CampaignVariant {
        variant_id: variant_id.into(),
        weight: 1,
        discount: Some(campaign_variant::Discount::AmountOff(amount_off.into())),
    }
}

/// A member's coupons of every state.
async fn coupons_of(client: &Client, member_id: &str) -> Vec<proto::Coupon> {
    client
        .coupons()
        .list_coupons(proto::ListCouponsRequest {
            member: Some(member_ref(member_id)),
            include_inactive: true,
            page_size: 100,
            page_token: String::new(),
        })
        .await
        .expect("coupons")
        .into_inner()
        .coupons
}

/// What the test expects of one variant: coupons issued, redeemed and their discounts.
#[derive(Default)]
struct Expected {
    issued: i64,
    redeemed: i64,
    discount: i64,
}

async fn campaign_stats_count_every_coupon_path(app: &TestApp) {
    // Arrange: variant A takes 100 off, B 200; coupons are valid 30 days; a public code; a
    // receipt rule that issues the campaign's coupon.
    let discount_of = |variant_id: &str| if variant_id == "A" { 100 } else { 200 };
    app.admin
        .coupons()
        .create_campaign(proto::CreateCampaignRequest {
            request_id: String::new(),
            campaign: Some(proto::Campaign {
                campaign_id: "ab".into(),
                name: "A/B".into(),
                discount: Some(Discount::AmountOff("100".into())),
                validity_days: 30,
                stackable: true,
                public_code: "ABSALE".into(),
                variants: vec![variant("A", "100"), variant("B", "200")],
                ..Default::default()
            }),
        })
        .await
        .expect("campaign");
    let rule_id = app
        .admin
        .engagement()
        .create_receipt_rule(proto::CreateReceiptRuleRequest {
            request_id: String::new(),
            rule: Some(proto::ReceiptRule {
                campaign_id: "ab".into(),
                ..Default::default()
            }),
        })
        .await
        .expect("receipt rule")
        .into_inner()
        .rule
        .expect("rule")
        .rule_id;
    let issued_at = app.clock.now();
    let mut members = Vec::new();
    let mut codes = Vec::new();
    for n in 0..10 {
        let member_id = app.create_member(&format!("c-{n}")).await;
        let coupon = app
            .issue_coupon(&format!("issue-{n}"), "ab", &member_id)
            .await
            .expect("issue");
        members.push(member_id);
        codes.push(coupon.code);
    }
    // (issue instant, redemption instant) of the coupons that stay redeemed.
    let mut redemptions: Vec<(DateTime<Utc>, DateTime<Utc>)> = Vec::new();

    // Act: members 0-3 redeem at the register, an hour more apart each time.
    for n in 0..4 {
        app.clock.advance(Duration::hours(n as i64 + 1));
        let mut sale = store_sale(
            &format!("r{n}"),
            &format!("{n}"),
            member_ref(&members[n]),
            "1000",
            0,
        );
        sale.coupon_codes = vec![codes[n].clone()];
        app.record_sale(sale).await.expect("redeem at the register");
        redemptions.push((issued_at, app.clock.now()));
    }
    // Member 4 online (redeemed at capture); member 5 authorizes and voids.
    let mut online = ec_order("a4", "o4", &members[4], "1000", 0);
    online.coupon_codes = vec![codes[4].clone()];
    app.authorize(online).await.expect("authorize");
    // Within the hold's 900 seconds.
    app.clock.advance(Duration::minutes(10));
    app.capture("c4", "o4").await.expect("capture");
    redemptions.push((issued_at, app.clock.now()));
    let mut voided = ec_order("a5", "o5", &members[5], "1000", 0);
    voided.coupon_codes = vec![codes[5].clone()];
    app.authorize(voided).await.expect("authorize");
    app.void("v5", "o5").await.expect("void");
    // Member 6 redeems, then the whole sale is refunded: the coupon comes back.
    let mut refunded = store_sale("r6", "6", member_ref(&members[6]), "1000", 0);
    refunded.coupon_codes = vec![codes[6].clone()];
    app.record_sale(refunded).await.expect("sale");
    // Registers cannot refund and the checkout key is for EC orders: the admin refunds.
    app.admin
        .checkout()
        .refund(proto::RefundRequest {
            request_id: "f6".into(),
            order_id: "shibuya-1-6".into(),
            amount: "1000".into(),
            lines: vec![],
        })
        .await
        .expect("refund");
    // Member 7 uses the public code: a coupon issued and redeemed at once.
    let mut public = store_sale("r7", "7", member_ref(&members[7]), "1000", 0);
    public.coupon_codes = vec!["ABSALE".into()];
    app.record_sale(public).await.expect("public code");
    redemptions.push((app.clock.now(), app.clock.now()));
    // Member 8 scans a receipt: one more coupon, from the receipt rule.
    app.app_client
        .engagement()
        .submit_receipt(proto::SubmitReceiptRequest {
            request_id: "receipt-8".into(),
            member: Some(member_ref(&members[8])),
            receipt: Some(proto::Receipt {
                store_id: "umeda".into(),
                register_id: "9".into(),
                receipt_no: "8".into(),
                issued_at: Some(timestamp(app.clock.now() - Duration::hours(1))),
                total: "500".into(),
                lines: basket(&["500"]).lines,
                image_sha256: "8".repeat(64),
                raw_text: String::new(),
            }),
        })
        .await
        .expect("receipt");

    // The figures, from every member's coupons as they now stand.
    let mut by_variant: BTreeMap<String, Expected> = BTreeMap::new();
    let (mut issued, mut redeemed, mut total_discount) = (0, 0, 0);
    let mut by_source: BTreeMap<String, i64> = BTreeMap::new();
    for member_id in &members {
        for coupon in coupons_of(&app.admin, member_id).await {
            let expected = by_variant.entry(coupon.variant_id.clone()).or_default();
            issued += 1;
            expected.issued += 1;
            *by_source.entry(coupon.source.clone()).or_default() += 1;
            if coupon.state == proto::CouponState::Redeemed as i32 {
                redeemed += 1;
                expected.redeemed += 1;
                expected.discount += discount_of(&coupon.variant_id);
                total_discount += discount_of(&coupon.variant_id);
            }
        }
    }
    // 10 issued by the admin, one by the public code, one by the receipt; members 0-4 and 7
    // (by the public code) redeemed.
    assert_eq!((issued, redeemed), (12, 6));
    assert_eq!(
        by_source,
        BTreeMap::from([
            ("admin".to_string(), 10),
            ("public:ABSALE".to_string(), 1),
            (format!("receipt:{rule_id}"), 1),
        ])
    );

    // Assert: the report matches.
    let stats = campaign_stats(app, "ab").await;
    assert_eq!(stats.issued, 12);
    assert_eq!(stats.redeemed, 6);
    assert_eq!(stats.expired, 0);
    assert_eq!(stats.active, 6);
    assert_eq!(stats.redemption_rate, 6.0 / 12.0);
    assert_eq!(
        stats.issued_by_source,
        by_source.clone().into_iter().collect()
    );
    assert_eq!(
        stats.redeemed_by_channel,
        [("store".to_string(), 5), ("ec".to_string(), 1)]
            .into_iter()
            .collect()
    );
    assert_eq!(stats.total_discount, total_discount.to_string());
    let ids: Vec<&str> = stats
        .variants
        .iter()
        .map(|v| v.variant_id.as_str())
        .collect();
    assert_eq!(ids, ["A", "B"]);
    for shown in &stats.variants {
        let expected = by_variant.remove(&shown.variant_id).unwrap_or_default();
        assert_eq!(shown.issued, expected.issued, "{}", shown.variant_id);
        assert_eq!(shown.redeemed, expected.redeemed, "{}", shown.variant_id);
        let per = if expected.redeemed == 0 {
            0
        } else {
            expected.discount / expected.redeemed
        };
        assert_eq!(
            shown.discount_per_redemption,
            per.to_string(),
            "{}",
            shown.variant_id
        );
    }
    let a = &stats.variants[0];
    let b = &stats.variants[1];
    match two_proportion_test(a.redeemed, a.issued, b.redeemed, b.issued) {
        Some(test) => {
            assert_eq!(stats.p_value, Some(test.p_value));
            let ci = stats.p_value_ci95.expect("interval with a p-value");
            assert_eq!((ci.low, ci.high), (test.ci95_low, test.ci95_high));
        }
        None => assert!(stats.p_value.is_none() && stats.p_value_ci95.is_none()),
    }
    let mut seconds: Vec<f64> = redemptions
        .iter()
        .map(|(issued, redeemed)| (*redeemed - *issued).num_seconds() as f64)
        .collect();
    seconds.sort_by(f64::total_cmp);
    let median = (seconds[2] + seconds[3]) / 2.0;
    assert_eq!(stats.median_seconds_to_redemption, Some(median));

    // After 31 days the sweeper has expired every coupon still active.
    app.advance(Duration::days(31)).await;
    let expired = campaign_stats(app, "ab").await;
    assert_eq!((expired.issued, expired.redeemed), (12, 6));
    assert_eq!((expired.expired, expired.active), (6, 0));
    app.verify_ok().await;
}

async fn activity(
    app: &TestApp,
    (start, end): (DateTime<Utc>, DateTime<Utc>),
    group_by_day: bool,
) -> Vec<proto::ActivityRow> {
    app.admin
        .reports()
        .get_activity(proto::GetActivityRequest {
            start_time: Some(timestamp(start)),
            end_time: Some(timestamp(end)),
            group_by_day,
            ..Default::default()
        })
        .await
        .expect("activity")
        .into_inner()
        .rows
}

/// An expected row: (points earned, redeemed, expired), orders, sales, visits, receipts.
fn row(
    channel: proto::Channel,
    store_id: &str,
    day: &str,
    (earned, redeemed, expired): (i64, i64, i64),
    (orders, sales, visits, receipts): (i64, i64, i64, i64),
) -> proto::ActivityRow {
    proto::ActivityRow {
        channel: channel as i32,
        store_id: store_id.into(),
        day: day.into(),
        points_earned: earned,
        points_redeemed: redeemed,
        points_expired: expired,
        orders,
        sales: sales.to_string(),
        visits,
        receipts,
    }
}

fn sorted(mut rows: Vec<proto::ActivityRow>) -> Vec<proto::ActivityRow> {
    rows.sort_by(|a, b| (a.channel, &a.store_id, &a.day).cmp(&(b.channel, &b.store_id, &b.day)));
    rows
}

async fn activity_is_booked_on_local_days(app: &TestApp) {
    use proto::Channel::{Ec, Store, Unspecified};
    // Arrange: lots expire a day after they are earned; a store in New York. The clock starts
    // at 2026-04-01 03:00 UTC: 12:00 on April 1 in Tokyo, 23:00 on March 31 in New York.
    assert_eq!(start_time(), utc(2026, 4, 1, 3));
    app.set_program(|p| p.point_expiry_days = 1).await;
    app.create_new_york_store("nyc").await;
    let rule = proto::ReceiptRule {
        earn_rate: "0.01".into(),
        ..Default::default()
    };
    app.admin
        .engagement()
        .create_receipt_rule(proto::CreateReceiptRuleRequest {
            request_id: String::new(),
            rule: Some(rule),
        })
        .await
        .expect("receipt rule");
    let (m1, m2, m3) = (
        app.create_member("c-1").await,
        app.create_member("c-2").await,
        app.create_member("c-3").await,
    );

    // Act, on April 1 in Tokyo. An adjustment (not an earning) lets m1 redeem 50 points at
    // Shibuya on 10,000: floor(9,950 × 0.01) = 99 points earned.
    app.adjust_points("adj", &m1, 100, "welcome")
        .await
        .expect("adjust");
    app.record_sale(store_sale("s1", "1", member_ref(&m1), "10000", 50))
        .await
        .expect("sale");
    // m2 buys 5,000 online (50 points) and returns 1,000 of it (10 points back).
    app.authorize(ec_order("a1", "o1", &m2, "5000", 0))
        .await
        .expect("authorize");
    app.capture("c1", "o1").await.expect("capture");
    app.refund("f1", "o1", "1000").await.expect("refund");
    // m2 scans an Umeda receipt of 3,000 issued an hour ago: 30 points, and a visit.
    let receipt = app
        .app_client
        .engagement()
        .submit_receipt(proto::SubmitReceiptRequest {
            request_id: "receipt".into(),
            member: Some(member_ref(&m2)),
            receipt: Some(proto::Receipt {
                store_id: "umeda".into(),
                register_id: "9".into(),
                receipt_no: "77".into(),
                issued_at: Some(timestamp(app.clock.now() - Duration::hours(1))),
                total: "3000".into(),
                lines: basket(&["3000"]).lines,
                image_sha256: "7".repeat(64),
                raw_text: String::new(),
            }),
        })
        .await
        .expect("receipt")
        .into_inner()
        .result
        .expect("result");
    assert_eq!(receipt.points_awarded, 30);
    // m3 buys 2,000 in New York: March 31 there.
    record_sale_as(&app.admin, sale_at("nyc", "n1", &m3, "2000"))
        .await
        .expect("nyc sale");
    // What expires tomorrow: every point earned today.
    let mut owed = 0;
    for member_id in [&m1, &m2, &m3] {
        let balance = app.balance(member_id).await;
        owed += balance.available_points + balance.pending_points;
    }
    assert_eq!(owed, (100 - 50 + 99) + (50 - 10 + 30) + 20);
    // April 2, 13:00 in Tokyo: the sweeper expires yesterday's points; m3 buys 4,000 at Umeda.
    app.advance(Duration::hours(25)).await;
    record_sale_as(&app.admin, sale_at("umeda", "u1", &m3, "4000"))
        .await
        .expect("umeda sale");

    // Assert: the Tokyo days April 1 and 2, by day.
    let tokyo_days = (utc(2026, 3, 31, 15), utc(2026, 4, 2, 15));
    let april_1 = vec![
        row(Unspecified, "umeda", "2026-04-01", (30, 0, 0), (0, 0, 0, 1)),
        row(Ec, "", "2026-04-01", (40, 0, 0), (1, 4000, 0, 0)),
        row(
            Store,
            "shibuya",
            "2026-04-01",
            (99, 50, 0),
            (1, 10000, 1, 0),
        ),
        row(Store, "umeda", "2026-04-01", (0, 0, 0), (0, 0, 1, 0)),
    ];
    let april_2 = vec![
        row(Unspecified, "", "2026-04-02", (0, 0, owed), (0, 0, 0, 0)),
        row(Store, "umeda", "2026-04-02", (40, 0, 0), (1, 4000, 1, 0)),
    ];
    let both: Vec<_> = april_1.iter().chain(&april_2).cloned().collect();
    assert_eq!(
        sorted(activity(app, tokyo_days, true).await),
        sorted(both.clone())
    );
    // The New York sale's day (March 31 there) began before the range: it is not in it.
    // Only April 2:
    let one_day = (utc(2026, 4, 1, 15), utc(2026, 4, 2, 15));
    assert_eq!(sorted(activity(app, one_day, true).await), sorted(april_2));
    // Not by day: one row per channel and store over the two days.
    let totals = vec![
        row(Unspecified, "", "", (0, 0, owed), (0, 0, 0, 0)),
        row(Unspecified, "umeda", "", (30, 0, 0), (0, 0, 0, 1)),
        row(Ec, "", "", (40, 0, 0), (1, 4000, 0, 0)),
        row(Store, "shibuya", "", (99, 50, 0), (1, 10000, 1, 0)),
        row(Store, "umeda", "", (40, 0, 0), (1, 4000, 2, 0)),
    ];
    assert_eq!(
        sorted(activity(app, tokyo_days, false).await),
        sorted(totals.clone())
    );
    // A range from New York's March 31 (04:00 UTC) holds that day and Tokyo's April 1.
    let new_york_day = (utc(2026, 3, 31, 4), utc(2026, 4, 1, 4));
    let mut with_new_york = april_1.clone();
    with_new_york.push(row(Store, "nyc", "2026-03-31", (20, 0, 0), (1, 2000, 1, 0)));
    assert_eq!(
        sorted(activity(app, new_york_day, true).await),
        sorted(with_new_york)
    );
    // Longer ranges, in totals: the server sums the days two or more inside the range in SQL
    // and reads the days at its ends one by one. Eleven Tokyo days from March 26 hold every
    // figure inside; six from March 28 hold them in the days at the end. Same totals.
    let mut all_totals = totals.clone();
    all_totals.push(row(Store, "nyc", "", (20, 0, 0), (1, 2000, 1, 0)));
    for days in [
        (utc(2026, 3, 25, 15), utc(2026, 4, 5, 15)),
        (utc(2026, 3, 27, 15), utc(2026, 4, 2, 15)),
    ] {
        assert_eq!(
            sorted(activity(app, days, false).await),
            sorted(all_totals.clone()),
            "{days:?}"
        );
    }
    // One store's rows only, in totals and by day.
    let at_umeda = |(start, end): (DateTime<Utc>, DateTime<Utc>), group_by_day| {
        let mut reports = app.admin.reports();
        async move {
            reports
                .get_activity(proto::GetActivityRequest {
                    start_time: Some(timestamp(start)),
                    end_time: Some(timestamp(end)),
                    group_by_day,
                    store_id: "umeda".into(),
                })
                .await
                .expect("activity")
                .into_inner()
                .rows
        }
    };
    let eleven_days = (utc(2026, 3, 25, 15), utc(2026, 4, 5, 15));
    let umeda_totals = vec![
        row(Unspecified, "umeda", "", (30, 0, 0), (0, 0, 0, 1)),
        row(Store, "umeda", "", (40, 0, 0), (1, 4000, 2, 0)),
    ];
    assert_eq!(
        sorted(at_umeda(eleven_days, false).await),
        sorted(umeda_totals)
    );
    let umeda_days: Vec<_> = both
        .iter()
        .filter(|row| row.store_id == "umeda")
        .cloned()
        .collect();
    assert_eq!(umeda_days.len(), 3);
    assert_eq!(
        sorted(at_umeda(eleven_days, true).await),
        sorted(umeda_days)
    );
    app.verify_ok().await;
}

async fn reports_are_for_admins_and_check_their_arguments(app: &TestApp) {
    let denied = app
        .checkout
        .reports()
        .get_liability(proto::GetLiabilityRequest { as_of: None })
        .await
        .expect_err("checkout may not read reports");
    assert_eq!(denied.code(), Code::PermissionDenied);
    let denied = app
        .register
        .reports()
        .get_activity(proto::GetActivityRequest::default())
        .await
        .expect_err("a register may not read reports");
    assert_eq!(denied.code(), Code::PermissionDenied);

    let past = app
        .admin
        .reports()
        .get_liability(proto::GetLiabilityRequest {
            as_of: Some(timestamp(app.clock.now() - Duration::seconds(61))),
        })
        .await
        .expect_err("as_of over a minute before now");
    assert_eq!(past.code(), Code::InvalidArgument);
    assert_eq!(violated_fields(&past), ["as_of"]);

    let unknown = app
        .admin
        .reports()
        .get_campaign_stats(proto::GetCampaignStatsRequest {
            campaign_id: "nope".into(),
        })
        .await
        .expect_err("unknown campaign");
    assert_refused(&unknown, Code::NotFound, "CAMPAIGN_NOT_FOUND");

    let reports = app.admin.reports();
    let ask = |start: Option<DateTime<Utc>>, end: Option<DateTime<Utc>>, store_id: &str| {
        let mut reports = reports.clone();
        let store_id = store_id.to_string();
        async move {
            reports
                .get_activity(proto::GetActivityRequest {
                    start_time: start.map(timestamp),
                    end_time: end.map(timestamp),
                    group_by_day: true,
                    store_id,
                })
                .await
                .expect_err("bad range")
        }
    };
    let t = app.clock.now();
    let missing = ask(None, None, "a:b").await;
    assert_eq!(
        violated_fields(&missing),
        ["start_time", "end_time", "store_id"]
    );
    let backwards = ask(Some(t), Some(t), "").await;
    assert_eq!(violated_fields(&backwards), ["end_time"]);
    let too_long = ask(Some(t), Some(t + Duration::days(367)), "").await;
    assert_eq!(violated_fields(&too_long), ["end_time"]);
    // An empty ledger has nothing to show, and owes nothing.
    assert!(
        activity(app, (t, t + Duration::days(366)), true)
            .await
            .is_empty()
    );
    assert_eq!(liability(app, None).await.outstanding_points, 0);

    // A client's clock up to a minute behind means now (more is refused, above).
    app.member_with_points("as-of", 500).await;
    let now = liability(app, None).await;
    assert_eq!(now.outstanding_points, 500);
    for behind in [1, 60] {
        let skewed = liability(app, Some(app.clock.now() - Duration::seconds(behind))).await;
        assert_eq!(skewed, now, "{behind} s behind");
    }
}
