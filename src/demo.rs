//! `omo demo`: one customer's OMO story against a fresh in-process server, printed readably.
//!
//! Hanako earns points at the Shibuya store register, spends some of them at EC checkout (where
//! the order also earns her a "¥500 off in store" coupon), returns part of the EC order, then
//! uses the coupon at the register. Later she walks past the store with the app: the location
//! report puts a "¥300 off, walk-in" geo-coupon in her wallet, and she uses it at the register.
//! Another day she forgets her card: the app sends a photograph of the receipt, which earns its
//! points; a large one waits for an admin's review before its points become spendable.
//! The operator's reports then show what the day did. Every call is real gRPC; the ledger is
//! verified at the end (its report summaries included).

use std::sync::Arc;

use crate::{
    Application, Config,
    client::Client,
    domain::{SystemClock, auth::Role},
    proto::{self, member_ref::Ref},
};

type DemoError = Box<dyn std::error::Error + Send + Sync>;

pub async fn run() -> Result<(), DemoError> {
    let dir = std::env::temp_dir().join(format!("omo-demo-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let url = format!("sqlite://{}", dir.join("demo.db").display());
    let app = Application::build(&Config::local(&url), Arc::new(SystemClock)).await?;
    let result = story(&app).await;
    app.stop().await?;
    std::fs::remove_dir_all(&dir)?;
    result
}

async fn story(app: &Application) -> Result<(), DemoError> {
    let engine = app.engine();
    let admin_key = engine
        .create_api_key(Role::Admin, None, "demo admin".into())
        .await?;
    let ec_key = engine
        .create_api_key(Role::Checkout, None, "EC backend".into())
        .await?;
    let app_key = engine
        .create_api_key(Role::App, None, "app backend".into())
        .await?;
    let register_key = engine
        .create_api_key(
            Role::Register,
            Some("shibuya".into()),
            "Shibuya register 1".into(),
        )
        .await?;
    let admin = Client::connect(&app.endpoint(), &admin_key).await?;
    let ec = admin.with_key(&ec_key);
    let register = admin.with_key(&register_key);
    let app_backend = admin.with_key(&app_key);
    println!(
        "omo demo — server on {} ({})\n",
        app.local_addr(),
        engine.backend_name()
    );

    setup(&admin).await?;
    let member = admin
        .members()
        .create_member(proto::CreateMemberRequest {
            request_id: "demo-member".into(),
            identifiers: vec![
                identifier("card", "4900-0000-1234"),
                identifier("ec_customer", "hanako@example.jp"),
            ],
            display_name: "Hanako".into(),
        })
        .await?
        .into_inner()
        .member
        .ok_or("no member")?;
    println!(
        "1. Hanako joins: member {} with a store card and an EC account",
        member.member_id
    );

    let sale = record_sale(&register, "demo-sale-1", "R-0001", "12000", 0, vec![]).await?;
    println!(
        "2. Shibuya register sells ¥{} → +{} points (1 %)",
        sale.total, sale.points_earned
    );
    show_balance(&ec, &member.member_id).await?;

    let order = ec_checkout(&ec, &member.member_id).await?;
    println!(
        "3. EC checkout: ¥{} paying {} points → ¥{} due, +{} points; the order issues a coupon",
        order.total, order.points_redeemed, order.amount_due, order.points_earned
    );
    show_balance(&ec, &member.member_id).await?;

    let refund = ec
        .checkout()
        .refund(proto::RefundRequest {
            request_id: "demo-refund".into(),
            order_id: "EC-1001".into(),
            amount: "3000".into(),
            lines: vec![],
        })
        .await?
        .into_inner()
        .result
        .ok_or("no refund")?;
    println!(
        "4. Half of the EC order comes back: {} earned points reversed, {} redeemed points restored",
        refund.points_reversed, refund.points_restored
    );
    show_balance(&ec, &member.member_id).await?;

    let coupons = admin
        .coupons()
        .list_coupons(proto::ListCouponsRequest {
            member: Some(member_ref(&member.member_id)),
            include_inactive: false,
            ..Default::default()
        })
        .await?
        .into_inner()
        .coupons;
    let coupon = coupons.first().ok_or("the EC order issued no coupon")?;
    println!(
        "5. Wallet: coupon {} ({}), source {}",
        coupon.code, coupon.campaign_id, coupon.source
    );
    let sale = record_sale(
        &register,
        "demo-sale-2",
        "R-0002",
        "3000",
        0,
        vec![coupon.code.clone()],
    )
    .await?;
    println!(
        "6. Back at the register, the EC coupon takes ¥{} off ¥{} → ¥{} due, +{} points",
        sale.coupon_discount, sale.total, sale.amount_due, sale.points_earned
    );
    show_balance(&ec, &member.member_id).await?;

    let code = walk_in(&admin, &app_backend, &member.member_id).await?;
    let sale = record_sale(&register, "demo-sale-3", "R-0003", "2000", 0, vec![code]).await?;
    println!(
        "8. At the register the geo-coupon takes ¥{} off ¥{} → ¥{} due, +{} points",
        sale.coupon_discount, sale.total, sale.amount_due, sale.points_earned
    );
    show_balance(&ec, &member.member_id).await?;

    scan_receipts(&admin, &app_backend, &member.member_id).await?;
    show_balance(&ec, &member.member_id).await?;
    bonus_campaign(&admin, &register).await?;
    show_balance(&ec, &member.member_id).await?;
    reach_tier(&admin, &register, &member.member_id).await?;
    show_balance(&ec, &member.member_id).await?;
    show_ledger(&ec, &member.member_id).await?;
    show_events(&admin, &member.member_id).await?;
    show_reports(&admin).await?;

    let report = engine.verify().await?;
    print!("\n{}", report.summary());
    if report.ok() {
        Ok(())
    } else {
        Err("ledger invariants violated".into())
    }
}

async fn setup(admin: &Client) -> Result<(), DemoError> {
    admin
        .stores()
        .create_store(proto::CreateStoreRequest {
            request_id: String::new(),
            store: Some(proto::Store {
                store_id: "shibuya".into(),
                name: "Shibuya".into(),
                location: Some(proto::LatLng {
                    latitude: 35.6595,
                    longitude: 139.7005,
                }),
                time_zone: "Asia/Tokyo".into(),
                geofence_radius_m: 120.0,
                geofence_polygon: vec![],
            }),
        })
        .await?;
    admin
        .coupons()
        .create_campaign(proto::CreateCampaignRequest {
            request_id: String::new(),
            campaign: Some(proto::Campaign {
                campaign_id: "ec-to-store-500".into(),
                name: "Spend ¥5,000 online, get ¥500 off in store".into(),
                discount: Some(proto::campaign::Discount::AmountOff("500".into())),
                channels: vec![proto::Channel::Store as i32],
                validity_days: 30,
                per_member_limit: 3,
                issue_on_capture: Some(proto::IssueOnCapture {
                    min_total: "5000".into(),
                    channels: vec![proto::Channel::Ec as i32],
                }),
                ..Default::default()
            }),
        })
        .await?;
    admin
        .coupons()
        .create_campaign(proto::CreateCampaignRequest {
            request_id: String::new(),
            campaign: Some(proto::Campaign {
                campaign_id: "walk-in-300".into(),
                name: "¥300 off for the first 1,000 who walk in".into(),
                discount: Some(proto::campaign::Discount::AmountOff("300".into())),
                channels: vec![proto::Channel::Store as i32],
                store_ids: vec!["shibuya".into()],
                validity_days: 1,
                // Its stock: 1,000 coupons in the ledger (`campaign:walk-in-300:stock:*`).
                issue_limit: 1_000,
                ..Default::default()
            }),
        })
        .await?;
    Ok(())
}

/// A geo rule at Shibuya, and Hanako's app reporting her at the door: the coupon it issues.
async fn walk_in(admin: &Client, app: &Client, member_id: &str) -> Result<String, DemoError> {
    admin
        .engagement()
        .create_geo_rule(proto::CreateGeoRuleRequest {
            request_id: "demo-geo-rule".into(),
            rule: Some(proto::GeoRule {
                rule_id: "shibuya-walk-in".into(),
                campaign_id: "walk-in-300".into(),
                store_ids: vec!["shibuya".into()],
                cooldown_seconds: 86_400,
                ..Default::default()
            }),
        })
        .await?;
    let result = app
        .engagement()
        .report_location(proto::ReportLocationRequest {
            request_id: "demo-location-1".into(),
            member: Some(member_ref(member_id)),
            latitude: 35.65955,
            longitude: 139.70045,
            accuracy_m: 15.0,
            observed_at: Some(std::time::SystemTime::now().into()),
            device_id: "hanako-phone".into(),
        })
        .await?
        .into_inner()
        .result
        .ok_or("no location result")?;
    let coupon = result
        .coupons_issued
        .first()
        .ok_or("the location report issued no coupon")?;
    println!(
        "7. Hanako's app reports her at the door of {:?} (accuracy 15 m): coupon {} ({}), source {}; \
         it is one of the campaign's stock of 1,000, 999 left (omo verify, check 11)",
        result.inside_store_ids, coupon.code, coupon.campaign_id, coupon.source
    );
    // The same visit a moment later: the geo rule is a rule like any other, and the reply says
    // why it did not fire again.
    let again = app
        .engagement()
        .report_location(proto::ReportLocationRequest {
            request_id: "demo-location-2".into(),
            member: Some(member_ref(member_id)),
            latitude: 35.65956,
            longitude: 139.70045,
            accuracy_m: 12.0,
            observed_at: Some(
                (std::time::SystemTime::now() + std::time::Duration::from_secs(1)).into(),
            ),
            device_id: "hanako-phone".into(),
        })
        .await?
        .into_inner()
        .result
        .ok_or("no location result")?;
    for outcome in &again.rule_outcomes {
        println!(
            "   a moment later, same visit: rule {} at {} did not fire again ({})",
            outcome.rule_id, outcome.store_id, outcome.reason
        );
    }
    Ok(coupon.code.clone())
}

/// A receipt rule, and two receipts Hanako photographs without her card: one earns at once
/// (read from the text the app's OCR produced), a large one waits for review.
async fn scan_receipts(admin: &Client, app: &Client, member_id: &str) -> Result<(), DemoError> {
    admin
        .engagement()
        .create_receipt_rule(proto::CreateReceiptRuleRequest {
            request_id: "demo-receipt-rule".into(),
            rule: Some(proto::ReceiptRule {
                rule_id: "scan-1pct".into(),
                earn_rate: "0.01".into(),
                review_threshold: "30000".into(),
                ..Default::default()
            }),
        })
        .await?;
    // Printed an hour ago, on the store's (Tokyo) clock.
    let printed = (chrono::Utc::now() - chrono::Duration::hours(1))
        .with_timezone(&chrono_tz::Asia::Tokyo)
        .format("%Y年%m月%d日 %H:%M");
    let text = format!(
        "渋谷店\n{printed}\nレジ2 No.0456\nコーヒー豆 ¥1,980\nマグカップ ¥2,420\n\
         小計 ¥4,400\n(10%対象 ¥4,400)\n合計 ¥4,400\nお預り ¥5,000\nお釣り ¥600\n"
    );
    let receipt = |receipt_no: &str, image: char, total: &str, raw_text: String| proto::Receipt {
        store_id: "shibuya".into(),
        register_id: "2".into(),
        receipt_no: receipt_no.into(),
        image_sha256: image.to_string().repeat(64),
        total: total.into(),
        issued_at: (raw_text.is_empty()).then(|| std::time::SystemTime::now().into()),
        raw_text,
        ..Default::default()
    };
    let submit = |request_id: &'static str, receipt: proto::Receipt| {
        let mut engagement = app.engagement();
        let member = Some(member_ref(member_id));
        async move {
            engagement
                .submit_receipt(proto::SubmitReceiptRequest {
                    request_id: request_id.into(),
                    member,
                    receipt: Some(receipt),
                })
                .await?
                .into_inner()
                .result
                .ok_or_else(|| DemoError::from("no receipt result"))
        }
    };
    let small = submit("demo-receipt-1", receipt("0456", 'a', "", text)).await?;
    println!(
        "9. Without her card, Hanako's app sends a photo of a ¥4,400 receipt (read from its text): \
         {}, +{} points",
        status_name(small.status),
        small.points_awarded
    );
    let large = submit(
        "demo-receipt-2",
        receipt("0457", 'b', "38500", String::new()),
    )
    .await?;
    println!(
        "10. A ¥38,500 receipt waits for review ({}): {} points pending",
        large.reason, large.points_awarded
    );
    show_balance(app, member_id).await?;
    let reviewed = admin
        .engagement()
        .review_receipt(proto::ReviewReceiptRequest {
            request_id: "demo-review-1".into(),
            receipt_id: large.receipt_id.clone(),
            approve: true,
            note: "matches the store's journal".into(),
        })
        .await?
        .into_inner()
        .result
        .ok_or("no review result")?;
    println!(
        "11. An admin approves it: {}, {} points now available",
        status_name(reviewed.status),
        reviewed.points_awarded
    );
    Ok(())
}

fn status_name(status: i32) -> &'static str {
    proto::ReceiptStatus::try_from(status).map_or("?", |status| status.as_str_name())
}

/// A rule: double points on every sale, as limited-time points (14 days), out of a budget of
/// 10,000 points; the next sale earns its base and the rule's part, each its own posting.
async fn bonus_campaign(admin: &Client, register: &Client) -> Result<(), DemoError> {
    let rule = proto::Rule {
        rule_id: "double-points".into(),
        name: "Double points this week, spend within 14 days".into(),
        trigger: proto::RuleTrigger::Purchase as i32,
        effects: Some(proto::RuleEffects {
            points_multiplier: "2".into(),
            points_expire_days: 14,
            ..Default::default()
        }),
        limits: Some(proto::RuleLimits {
            budget_points: 10_000,
            ..Default::default()
        }),
        ..Default::default()
    };
    admin
        .rules()
        .create_rule(proto::CreateRuleRequest {
            request_id: "demo-rule".into(),
            rule: Some(rule),
        })
        .await?;
    println!(
        "12. A bonus campaign: rule \"double-points\" doubles the points of every sale as \
         limited-time points (they expire 14 days after they are earned), out of a 10,000-point budget"
    );
    let sale = record_sale(register, "demo-sale-4", "R-0004", "8000", 0, vec![]).await?;
    let parts: Vec<String> = sale
        .earn_breakdown
        .iter()
        .map(|part| {
            let rule = if part.rule_id.is_empty() {
                "base rate"
            } else {
                part.rule_id.as_str()
            };
            format!("{} from {rule}", part.points)
        })
        .collect();
    let stats = admin
        .rules()
        .get_rule_stats(proto::GetRuleStatsRequest {
            rule_id: "double-points".into(),
        })
        .await?
        .into_inner();
    println!(
        "13. The register sells ¥{} → +{} points ({}); the budget has {} points left",
        sale.total,
        sale.points_earned,
        parts.join(" + "),
        stats.budget_points_left
    );
    Ok(())
}

/// Tiers: silver from ¥75,000 paid within 12 months (1.5x base points), gold from ¥150,000
/// (2x); the sale that lifts Hanako over silver's threshold raises her at once, and the next
/// sale earns 1.5x its base.
async fn reach_tier(admin: &Client, register: &Client, member_id: &str) -> Result<(), DemoError> {
    let tier = |tier_id: &str, name: &str, min_spend: &str, earn_multiplier: &str| proto::Tier {
        tier_id: tier_id.into(),
        name: name.into(),
        min_spend: min_spend.into(),
        earn_multiplier: earn_multiplier.into(),
    };
    admin
        .program()
        .update_program(proto::UpdateProgramRequest {
            request_id: "demo-tiers".into(),
            program: Some(proto::Program {
                tiers: vec![
                    tier("silver", "Silver", "75000", "1.5"),
                    tier("gold", "Gold", "150000", "2"),
                ],
                tier_window_months: 12,
                ..Default::default()
            }),
            update_mask: Some(prost_types::FieldMask {
                paths: vec!["tiers".into(), "tier_window_months".into()],
            }),
        })
        .await?;
    let standing = member_tier(admin, member_id).await?;
    // What silver still needs, in whole yen (at least a small purchase).
    let to_go: rust_decimal::Decimal = standing.spend_to_next.parse().unwrap_or_default();
    let amount = to_go
        .ceil()
        .max(rust_decimal::Decimal::from(1000))
        .to_string();
    let sale = record_sale(register, "demo-sale-tier", "R-0100", &amount, 0, vec![]).await?;
    let reached = member_tier(admin, member_id).await?;
    println!(
        "14. Tiers: Hanako has spent ¥{} within 12 months; a ¥{} sale lifts her to ¥{} → tier {:?} (next: {:?}, ¥{} to go; reviewed monthly)",
        standing.spend,
        sale.total,
        reached.spend,
        reached.tier_id,
        reached.next_tier_id,
        reached.spend_to_next
    );
    let sale = record_sale(register, "demo-sale-silver", "R-0101", "2000", 0, vec![]).await?;
    let base: i64 = sale
        .earn_breakdown
        .iter()
        .filter(|part| part.rule_id.is_empty())
        .map(|part| part.points)
        .sum();
    println!(
        "15. As {}, a ¥{} sale earns +{} points: base {} (1 % × 1.5) and the rules' {}",
        reached.tier_id,
        sale.total,
        sale.points_earned,
        base,
        sale.points_earned - base
    );
    Ok(())
}

async fn member_tier(admin: &Client, member_id: &str) -> Result<proto::MemberTier, DemoError> {
    Ok(admin
        .members()
        .get_member(proto::GetMemberRequest {
            member: Some(member_ref(member_id)),
        })
        .await?
        .into_inner()
        .member
        .and_then(|member| member.tier)
        .ok_or("no member tier")?)
}

async fn record_sale(
    register: &Client,
    request_id: &str,
    receipt_no: &str,
    amount: &str,
    points: i64,
    coupon_codes: Vec<String>,
) -> Result<proto::Order, DemoError> {
    let order = register
        .checkout()
        .record_sale(proto::RecordSaleRequest {
            request_id: request_id.into(),
            order_id: format!("SHIBUYA-{receipt_no}"),
            member: Some(proto::MemberRef {
                r#ref: Some(Ref::Identifier(identifier("card", "4900-0000-1234"))),
            }),
            channel: proto::Channel::Store as i32,
            store_id: "shibuya".into(),
            register_id: "1".into(),
            basket: Some(basket(amount)),
            points_to_redeem: points,
            coupon_codes,
            receipt_no: receipt_no.into(),
            occurred_at: None,
        })
        .await?
        .into_inner()
        .order
        .ok_or("no order")?;
    Ok(order)
}

async fn ec_checkout(ec: &Client, member_id: &str) -> Result<proto::Order, DemoError> {
    ec.checkout()
        .authorize(proto::AuthorizeRequest {
            request_id: "demo-auth".into(),
            order_id: "EC-1001".into(),
            member: Some(member_ref(member_id)),
            channel: proto::Channel::Ec as i32,
            basket: Some(basket("6000")),
            points_to_redeem: 100,
            ..Default::default()
        })
        .await?;
    let order = ec
        .checkout()
        .capture(proto::CaptureRequest {
            request_id: "demo-capture".into(),
            order_id: "EC-1001".into(),
        })
        .await?
        .into_inner()
        .order
        .ok_or("no order")?;
    Ok(order)
}

async fn show_balance(client: &Client, member_id: &str) -> Result<(), DemoError> {
    let balance = client
        .ledger()
        .get_balance(proto::GetBalanceRequest {
            member: Some(member_ref(member_id)),
        })
        .await?
        .into_inner()
        .balance
        .ok_or("no balance")?;
    println!(
        "   balance: {} available ({} limited-time), {} pending, {} held (lifetime earned {}, redeemed {})",
        balance.available_points,
        balance.limited_points,
        balance.pending_points,
        balance.held_points,
        balance.lifetime_earned_points,
        balance.lifetime_redeemed_points
    );
    Ok(())
}

async fn show_ledger(client: &Client, member_id: &str) -> Result<(), DemoError> {
    let transactions = client
        .ledger()
        .list_transactions(proto::ListTransactionsRequest {
            member: Some(member_ref(member_id)),
            page_size: 50,
            page_token: String::new(),
        })
        .await?
        .into_inner()
        .transactions;
    println!("\nHanako's ledger, oldest first (every line is one balanced posting):");
    for transaction in transactions.iter().rev() {
        println!(
            "  #{} {} {}",
            transaction.transaction_id, transaction.kind, transaction.order_id
        );
        for p in &transaction.postings {
            println!(
                "      {:>6} {:<22} {:>28} → {}",
                p.amount, p.asset, p.from_account, p.to_account
            );
        }
    }
    Ok(())
}

/// The story as the event feed told it (what WatchEvents streams and webhooks receive), in
/// commit order.
async fn show_events(admin: &Client, member_id: &str) -> Result<(), DemoError> {
    let events = admin
        .events()
        .list_events(proto::ListEventsRequest {
            member_id: member_id.into(),
            page_size: 100,
            ..Default::default()
        })
        .await?
        .into_inner()
        .events;
    println!(
        "\nHanako's events, in commit order (EventService.WatchEvents streams them, webhooks get them signed):"
    );
    for event in events {
        let mut fields: Vec<String> = event
            .data
            .map(|data| data.fields.into_iter().collect::<Vec<_>>())
            .unwrap_or_default()
            .into_iter()
            .filter(|(key, _)| key != "transaction_id")
            .filter_map(|(key, value)| {
                use prost_types::value::Kind;
                match value.kind? {
                    Kind::NumberValue(n) => Some(format!("{key}={n}")),
                    Kind::StringValue(s) if !s.is_empty() => Some(format!("{key}={s}")),
                    Kind::BoolValue(b) => Some(format!("{key}={b}")),
                    _ => None,
                }
            })
            .collect();
        fields.sort();
        println!(
            "  #{:<3} {:<16} {}",
            event.seq,
            event.r#type,
            fields.join(" ")
        );
    }
    Ok(())
}

fn identifier(kind: &str, value: &str) -> proto::Identifier {
    proto::Identifier {
        kind: kind.into(),
        value: value.into(),
    }
}

fn member_ref(member_id: &str) -> proto::MemberRef {
    proto::MemberRef {
        r#ref: Some(Ref::MemberId(member_id.into())),
    }
}

fn basket(amount: &str) -> proto::Basket {
    proto::Basket {
        lines: vec![proto::LineItem {
            line_id: "1".into(),
            sku: "SKU-1".into(),
            category: "apparel".into(),
            quantity: 1,
            amount: amount.into(),
        }],
    }
}

/// What the operator sees: the points owed, the day's activity per channel and store (from the
/// summaries the flush kept), and how the EC campaign's coupons did.
async fn show_reports(admin: &Client) -> Result<(), DemoError> {
    let mut reports = admin.reports();
    let liability = reports
        .get_liability(proto::GetLiabilityRequest::default())
        .await?
        .into_inner();
    println!(
        "16. The operator's reports: the program owes {} points (¥{}), {} of them pending",
        liability.outstanding_points, liability.outstanding_value, liability.pending_points
    );
    let now = chrono::Utc::now();
    let timestamp = |at: chrono::DateTime<chrono::Utc>| prost_types::Timestamp {
        seconds: at.timestamp(),
        nanos: 0,
    };
    let activity = reports
        .get_activity(proto::GetActivityRequest {
            start_time: Some(timestamp(now - chrono::Duration::days(2))),
            end_time: Some(timestamp(now + chrono::Duration::days(1))),
            group_by_day: false,
            store_id: String::new(),
        })
        .await?
        .into_inner();
    for row in activity.rows {
        let channel = proto::Channel::try_from(row.channel).unwrap_or_default();
        let store = if row.store_id.is_empty() {
            "(no store)"
        } else {
            &row.store_id
        };
        println!(
            "    {:<20} {:<12} earned {:>5}  redeemed {:>5}  orders {}  sales ¥{}  visits {}  receipts {}",
            channel.as_str_name(),
            store,
            row.points_earned,
            row.points_redeemed,
            row.orders,
            row.sales,
            row.visits,
            row.receipts
        );
    }
    let stats = reports
        .get_campaign_stats(proto::GetCampaignStatsRequest {
            campaign_id: "ec-to-store-500".into(),
        })
        .await?
        .into_inner();
    println!(
        "    campaign ec-to-store-500: issued {}, redeemed {} (rate {:.0} %), discount ¥{}",
        stats.issued,
        stats.redeemed,
        stats.redemption_rate * 100.0,
        stats.total_discount
    );
    Ok(())
}
