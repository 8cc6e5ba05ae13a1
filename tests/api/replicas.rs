//! Three `omo serve` processes over one PostgreSQL database, clients spread over them: races on
//! one balance and on one single-use coupon, and holds expiring while every replica's sweeper
//! runs, and the three sealers race to extend the journal's hash chain. No double spend, no
//! double release, and `omo verify` holds (the chain included).

use std::time::Duration;

use omo::proto::{self, campaign::Discount};
use tonic::Code;

use crate::helpers::{
    Backend, CliKeys, RoleClients, create_store_as, ec_order, fresh_database, member_ref, omo_cli,
    serve, store_sale, successes,
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
    holds_expire_once(&replicas).await;

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
    let admin = &replicas[0].admin;
    let member_id = admin
        .members()
        .create_member(proto::CreateMemberRequest {
            request_id: format!("member-{name}"),
            identifiers: vec![],
            display_name: name.into(),
        })
        .await
        .expect("member")
        .into_inner()
        .member
        .expect("member")
        .member_id;
    admin
        .ledger()
        .adjust_points(proto::AdjustPointsRequest {
            request_id: format!("fund-{name}"),
            member: Some(member_ref(&member_id)),
            points,
            reason: "replica test".into(),
        })
        .await
        .expect("fund");
    member_id
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

/// 30 holds of 10 points with a 1-second TTL, authorized over the replicas: every one expires
/// once, with three sweepers racing, and the member has all 300 points back.
async fn holds_expire_once(replicas: &[RoleClients]) {
    let admin = &replicas[0].admin;
    let mut program = admin
        .program()
        .get_program(proto::GetProgramRequest {})
        .await
        .expect("program")
        .into_inner()
        .program
        .expect("program");
    program.hold_ttl_seconds = 1;
    admin
        .program()
        .update_program(proto::UpdateProgramRequest {
            request_id: String::new(),
            program: Some(program),
            update_mask: None,
        })
        .await
        .expect("update program");
    // Other replicas re-read the program within a second.
    tokio::time::sleep(Duration::from_millis(1_200)).await;

    let member_id = member_with_points(replicas, "holder", 300).await;
    let mut orders = Vec::new();
    for i in 0..30 {
        let checkout = &replicas[i % REPLICAS].checkout;
        let order_id = format!("hold-{i}");
        checkout
            .checkout()
            .authorize(ec_order(
                &format!("auth-{i}"),
                &order_id,
                &member_id,
                "1000",
                10,
            ))
            .await
            .expect("authorize");
        orders.push(order_id);
    }
    assert_eq!(balance(replicas, &member_id).await.held_points, 300);

    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let balance = balance(replicas, &member_id).await;
        if balance.held_points == 0 {
            assert_eq!(balance.available_points, 300);
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
