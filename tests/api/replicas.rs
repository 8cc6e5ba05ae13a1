//! Three `omo serve` processes over one PostgreSQL database, clients spread over them: races on
//! one balance and on one single-use coupon, holds expiring while every replica's sweeper
//! runs, a store made through one replica found by another's spatial index, two devices of
//! one member reporting through two replicas at once, and the three sealers racing to extend
//! the journal's hash chain. No double spend, no double release, one geo-coupon, and
//! `omo verify` holds (the chain included).

use std::time::Duration;

use omo::proto::{self, campaign::Discount};
use tonic::Code;

use crate::helpers::{
    Backend, CliKeys, RoleClients, create_store_as, ec_order, fresh_database, member_ref,
    member_with_points_as, omo_cli, serve, set_hold_ttl, store_sale, successes,
};

const REPLICAS: usize = 3;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres() {
    let Some((url, _database)) = fresh_database(Backend::Postgres).await else {
        return;
    };
    omo_cli(&["migrate", "--database-url", &url]);
    let keys = CliKeys::create(&url);
    // Sweeps and seals every 100 ms on each replica, so that all three race for each expired
    // hold and for each seal of the journal.
    let mut servers = Vec::new();
    for _ in 0..REPLICAS {
        let env = [
            ("OMO_SWEEP_INTERVAL_MS", "100"),
            ("OMO_SEAL_INTERVAL_MS", "100"),
        ];
        servers.push(serve(&url, &env).await);
    }
    let mut replicas = Vec::new();
    for server in &servers {
        replicas.push(RoleClients::connect(server.endpoint(), &keys).await);
    }
    create_store_as(&replicas[0].admin, "shibuya").await;

    one_balance_spent_once(&replicas).await;
    one_coupon_used_once(&replicas).await;
    hold_ttl_of_one_second(&replicas).await;
    // Rounds of holds of one member expiring across the replicas, each checked by omo verify.
    for round in 0..3 {
        holds_expire_once(&replicas, &url, round).await;
    }
    a_store_made_elsewhere_is_found(&replicas).await;
    two_devices_on_two_replicas_get_one_coupon(&replicas).await;
    one_budget_given_once(&replicas).await;

    drop(servers);
    let report = omo_cli(&["verify", "--database-url", &url]);
    assert!(!report.contains("VIOLATED"), "{report}");
    assert!(
        !report.contains("(none yet)"),
        "the sealers sealed: {report}"
    );
}

/// A funded member, made through replica 0.
async fn member_with_points(replicas: &[RoleClients], name: &str, points: i64) -> String {
    member_with_points_as(&replicas[0].admin, name, points).await
}

async fn balance(replicas: &[RoleClients], member_id: &str) -> proto::Balance {
    replicas[1]
        .admin
        .ledger()
        .get_balance(proto::GetBalanceRequest {
            member: Some(member_ref(member_id)),
        })
        .await
        .expect("balance")
        .into_inner()
        .balance
        .expect("balance")
}

/// 30 sales of 100 points each, spread over the replicas, against 1,000 points: ten succeed.
async fn one_balance_spent_once(replicas: &[RoleClients]) {
    let member_id = member_with_points(replicas, "spender", 1_000).await;
    let tasks = (0..30)
        .map(|i| {
            let register = replicas[i % REPLICAS].register.clone();
            // Paid 0 after 100 points: a sale that earns nothing back.
            let sale = store_sale(
                &format!("spend-{i}"),
                &format!("spend-{i}"),
                member_ref(&member_id),
                "100",
                100,
            );
            tokio::spawn(async move { register.checkout().record_sale(sale).await })
        })
        .collect();
    let succeeded = successes(tasks, Code::FailedPrecondition, "INSUFFICIENT_POINTS").await;
    assert_eq!(succeeded, 10);
    assert_eq!(balance(replicas, &member_id).await.available_points, 0);
}

/// A rule's budget of 1,050 points, raced by 30 sales of a 100-point bonus over the replicas:
/// exactly 1,050 points are given (ten bonuses and the last 50), then the rule gives nothing.
async fn one_budget_given_once(replicas: &[RoleClients]) {
    let rule = proto::Rule {
        rule_id: "replica-budget".into(),
        trigger: proto::RuleTrigger::Purchase as i32,
        effects: Some(proto::RuleEffects {
            bonus_points: 100,
            ..Default::default()
        }),
        limits: Some(proto::RuleLimits {
            budget_points: 1_050,
            ..Default::default()
        }),
        ..Default::default()
    };
    replicas[0]
        .admin
        .rules()
        .create_rule(proto::CreateRuleRequest {
            request_id: "replica-budget".into(),
            rule: Some(rule),
        })
        .await
        .expect("rule");
    // Every replica's rules cache sees the new rule within its TTL (1 s).
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    let mut members = Vec::new();
    for i in 0..30 {
        members.push(member_with_points(replicas, &format!("budget-{i}"), 1).await);
    }
    let tasks: Vec<_> = members
        .iter()
        .enumerate()
        .map(|(i, member_id)| {
            let register = replicas[i % REPLICAS].register.clone();
            let sale = store_sale(
                &format!("budget-{i}"),
                &format!("budget-{i}"),
                member_ref(member_id),
                "1000",
                0,
            );
            tokio::spawn(async move { register.checkout().record_sale(sale).await })
        })
        .collect();
    let mut given = 0;
    for task in tasks {
        let order = task
            .await
            .expect("task")
            .expect("sale")
            .into_inner()
            .order
            .unwrap();
        given += order
            .earn_breakdown
            .iter()
            .filter(|part| part.rule_id == "replica-budget")
            .map(|part| part.points)
            .sum::<i64>();
    }
    assert_eq!(given, 1_050);
    let stats = replicas[2]
        .admin
        .rules()
        .get_rule_stats(proto::GetRuleStatsRequest {
            rule_id: "replica-budget".into(),
        })
        .await
        .expect("stats")
        .into_inner();
    assert_eq!((stats.points_awarded, stats.budget_points_left), (1_050, 0));
}

/// One single-use coupon in 15 concurrent sales over the replicas: one takes it.
async fn one_coupon_used_once(replicas: &[RoleClients]) {
    let admin = &replicas[0].admin;
    admin
        .coupons()
        .create_campaign(proto::CreateCampaignRequest {
            request_id: String::new(),
            campaign: Some(proto::Campaign {
                campaign_id: "replica-coupon".into(),
                name: "replica coupon".into(),
                discount: Some(Discount::AmountOff("300".into())),
                stackable: true,
                ..Default::default()
            }),
        })
        .await
        .expect("campaign");
    let member_id = member_with_points(replicas, "coupon", 1).await;
    let code = admin
        .coupons()
        .issue_coupon(proto::IssueCouponRequest {
            request_id: "issue-1".into(),
            campaign_id: "replica-coupon".into(),
            member: Some(member_ref(&member_id)),
        })
        .await
        .expect("issue")
        .into_inner()
        .coupon
        .expect("coupon")
        .code;
    let tasks = (0..15)
        .map(|i| {
            let register = replicas[i % REPLICAS].register.clone();
            let mut sale = store_sale(
                &format!("use-{i}"),
                &format!("use-{i}"),
                member_ref(&member_id),
                "1000",
                0,
            );
            sale.coupon_codes = vec![code.clone()];
            tokio::spawn(async move { register.checkout().record_sale(sale).await })
        })
        .collect();
    let succeeded = successes(tasks, Code::FailedPrecondition, "COUPON_NOT_ACTIVE").await;
    assert_eq!(succeeded, 1);
}

async fn hold_ttl_of_one_second(replicas: &[RoleClients]) {
    set_hold_ttl(&replicas[0].admin, 1).await;
    // Other replicas re-read the program within a second.
    tokio::time::sleep(Duration::from_millis(1_200)).await;
}

/// 30 holds of 10 points with a 1-second TTL, authorized over the replicas: every one expires
/// once, with three sweepers racing, the member has all 300 points back, and the ledger's
/// invariants hold.
async fn holds_expire_once(replicas: &[RoleClients], url: &str, round: usize) {
    let member_id = member_with_points(replicas, &format!("holder-{round}"), 300).await;
    let mut orders = Vec::new();
    for i in 0..30 {
        let checkout = &replicas[i % REPLICAS].checkout;
        let order_id = format!("hold-{round}-{i}");
        checkout
            .checkout()
            .authorize(ec_order(
                &format!("auth-{round}-{i}"),
                &order_id,
                &member_id,
                "1000",
                10,
            ))
            .await
            .expect("authorize");
        orders.push(order_id);
    }
    // Timing-free: under load some 1-second holds may already have expired by now, but no
    // point is ever both held and available, or neither.
    let now = balance(replicas, &member_id).await;
    assert_eq!(now.held_points + now.available_points, 300, "{now:?}");

    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let balance = balance(replicas, &member_id).await;
        if balance.held_points == 0 {
            let report = omo_cli(&["verify", "--database-url", url]);
            assert!(!report.contains("VIOLATED"), "round {round}: {report}");
            assert_eq!(balance.available_points, 300, "round {round}: {balance:?}");
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "holds did not expire: {balance:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    for (i, order_id) in orders.iter().enumerate() {
        let order = replicas[i % REPLICAS]
            .checkout
            .checkout()
            .get_order(proto::GetOrderRequest {
                order_id: order_id.clone(),
            })
            .await
            .expect("order")
            .into_inner()
            .order
            .expect("order");
        assert_eq!(order.state, proto::OrderState::Expired as i32, "{order:?}");
    }
    let transactions = replicas[2]
        .admin
        .ledger()
        .list_transactions(proto::ListTransactionsRequest {
            member: Some(member_ref(&member_id)),
            page_size: 500,
            page_token: String::new(),
        })
        .await
        .expect("transactions")
        .into_inner()
        .transactions;
    for order_id in &orders {
        let releases = transactions
            .iter()
            .filter(|t| &t.order_id == order_id && t.kind != "authorize")
            .count();
        assert_eq!(releases, 1, "order {order_id} released {releases} times");
    }
}

fn report_at(request_id: &str, member_id: &str, at: (f64, f64)) -> proto::ReportLocationRequest {
    proto::ReportLocationRequest {
        request_id: request_id.into(),
        member: Some(member_ref(member_id)),
        latitude: at.0,
        longitude: at.1,
        accuracy_m: 10.0,
        observed_at: Some(std::time::SystemTime::now().into()),
        device_id: String::new(),
    }
}

const GINZA: (f64, f64) = (35.6717, 139.7650);

/// Replica 1 has built its spatial index; a store, campaign and geo rule made through replica
/// 0 reach it within about a second (its store count check), without a restart.
async fn a_store_made_elsewhere_is_found(replicas: &[RoleClients]) {
    let walker = member_with_points(replicas, "walker", 1).await;
    let warm = report_at("warm", &walker, (35.66, 139.70));
    let warmed = replicas[1].admin.engagement().report_location(warm).await;
    assert!(warmed.expect("report").into_inner().result.is_some());

    let admin = &replicas[0].admin;
    let store = proto::Store {
        store_id: "ginza".into(),
        name: "Ginza".into(),
        location: Some(proto::LatLng {
            latitude: GINZA.0,
            longitude: GINZA.1,
        }),
        time_zone: "Asia/Tokyo".into(),
        geofence_radius_m: 100.0,
        geofence_polygon: vec![],
    };
    let create = proto::CreateStoreRequest {
        request_id: "store-ginza".into(),
        store: Some(store),
    };
    admin.stores().create_store(create).await.expect("store");
    let campaign = proto::Campaign {
        campaign_id: "ginza-walk-in".into(),
        name: "Ginza walk-in".into(),
        discount: Some(Discount::AmountOff("100".into())),
        ..Default::default()
    };
    let create = proto::CreateCampaignRequest {
        request_id: "campaign-ginza".into(),
        campaign: Some(campaign),
    };
    admin
        .coupons()
        .create_campaign(create)
        .await
        .expect("campaign");
    let rule = proto::GeoRule {
        rule_id: "ginza-entry".into(),
        campaign_id: "ginza-walk-in".into(),
        store_ids: vec!["ginza".into()],
        ..Default::default()
    };
    let create = proto::CreateGeoRuleRequest {
        request_id: "rule-ginza".into(),
        rule: Some(rule),
    };
    admin
        .engagement()
        .create_geo_rule(create)
        .await
        .expect("rule");

    // A new member per try: each try is a first visit (and no try is too fast after another).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    for attempt in 0.. {
        let member_id = member_with_points(replicas, &format!("ginza-{attempt}"), 1).await;
        let request = report_at(&format!("ginza-{attempt}"), &member_id, GINZA);
        let result = replicas[1]
            .admin
            .engagement()
            .report_location(request)
            .await;
        let result = result.expect("report").into_inner().result.expect("result");
        if result.inside_store_ids == ["ginza"] && result.coupons_issued.len() == 1 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "replica 1 never saw the new store: {result:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// One member's two devices report the same entry through two replicas at once: the member's
/// row lock in each batch's load decides them one after the other, so one coupon.
async fn two_devices_on_two_replicas_get_one_coupon(replicas: &[RoleClients]) {
    for round in 0..5 {
        let member_id = member_with_points(replicas, &format!("devices-{round}"), 1).await;
        let (mut one, mut two) = (
            replicas[1].admin.engagement(),
            replicas[2].admin.engagement(),
        );
        let (a, b) = tokio::join!(
            one.report_location(report_at(&format!("dev-a-{round}"), &member_id, GINZA)),
            two.report_location(report_at(&format!("dev-b-{round}"), &member_id, GINZA)),
        );
        let issued = |r: Result<tonic::Response<proto::ReportLocationResponse>, tonic::Status>| {
            r.expect("report")
                .into_inner()
                .result
                .expect("result")
                .coupons_issued
                .len()
        };
        assert_eq!(issued(a) + issued(b), 1, "round {round}");
    }
}
