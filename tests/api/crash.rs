//! Crash safety through the real binary: a concurrent load of register sales, EC checkouts and
//! coupon uses runs while `omo serve` (a child process) is SIGKILLed and restarted, several
//! times. Then, from the client's own log of what it sent:
//! - every request, acknowledged or not, sent again with its request_id succeeds, and an
//!   acknowledged one answers exactly what it answered before;
//! - the ledger holds each effect exactly once: no order has two transactions of one kind, and
//!   each member's balance is what the answers add up to;
//! - every coupon issued exists once, and each one a sale used is redeemed;
//! - `omo verify` passes.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use omo::proto::{self, campaign::Discount};
use tonic::{Code, Status};

use crate::helpers::{
    Backend, CliKeys, RoleClients, all_transactions_as, create_store_as, ec_order, fresh_database,
    member_ref, member_with_points_as, omo_cli, serve, store_sale,
};

/// Concurrent clients, each with a member of its own.
const WORKERS: usize = 8;
/// Times the server is killed mid-load.
const KILLS: usize = 3;
const START_POINTS: i64 = 1_000_000;
const CAMPAIGN: &str = "crash-coupon";

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite() {
    sigkill_during_load(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres() {
    sigkill_during_load(Backend::Postgres).await;
}

#[derive(Debug, Clone)]
enum Request {
    Sale(proto::RecordSaleRequest),
    Authorize(proto::AuthorizeRequest),
    Capture(proto::CaptureRequest),
    Issue(proto::IssueCouponRequest),
}

#[derive(Debug, Clone, PartialEq)]
enum Answer {
    Order(proto::Order),
    Coupon(proto::Coupon),
}

/// One line of the client's log: what it sent, and the answer if one came back.
#[derive(Debug)]
struct Sent {
    request: Request,
    answer: Option<Answer>,
    /// The code the client heard instead of an answer, as the server died.
    error: Option<Code>,
}

/// Sends a logged request with the key of the role that makes it.
async fn send(clients: &RoleClients, request: &Request) -> Result<Answer, Status> {
    let order = |order: Option<proto::Order>| Answer::Order(order.expect("an order"));
    match request.clone() {
        Request::Sale(r) => clients
            .register
            .checkout()
            .record_sale(r)
            .await
            .map(|r| order(r.into_inner().order)),
        Request::Authorize(r) => clients
            .checkout
            .checkout()
            .authorize(r)
            .await
            .map(|r| order(r.into_inner().order)),
        Request::Capture(r) => clients
            .checkout
            .checkout()
            .capture(r)
            .await
            .map(|r| order(r.into_inner().order)),
        Request::Issue(r) => clients
            .admin
            .coupons()
            .issue_coupon(r)
            .await
            .map(|r| Answer::Coupon(r.into_inner().coupon.expect("a coupon"))),
    }
}

/// What a dead or dying server answers; anything else is a real refusal (a bug here).
fn server_gone(status: &Status) -> bool {
    matches!(
        status.code(),
        Code::Unavailable | Code::Unknown | Code::Cancelled | Code::Internal
    )
}

async fn sigkill_during_load(backend: Backend) {
    let Some((url, _database)) = fresh_database(backend).await else {
        return;
    };
    omo_cli(&["migrate", "--database-url", &url]);
    let keys = CliKeys::create(&url);
    let members = arrange(&url, &keys).await;

    let mut logs: Vec<Vec<Sent>> = members.iter().map(|_| Vec::new()).collect();
    let mut steps = [0usize; WORKERS];
    for _ in 0..KILLS {
        let server = serve(&url, &[]).await;
        let clients = RoleClients::connect(server.endpoint(), &keys).await;
        let workers: Vec<_> = (0..WORKERS)
            .map(|w| {
                let (clients, member_id, step) = (clients.clone(), members[w].clone(), steps[w]);
                tokio::spawn(async move { work_until_gone(&clients, w, &member_id, step).await })
            })
            .collect();
        tokio::time::sleep(Duration::from_millis(rand::random_range(400..900))).await;
        server.kill().expect("SIGKILL");
        for (w, worker) in workers.into_iter().enumerate() {
            let (sent, step) = worker.await.expect("worker");
            logs[w].extend(sent);
            steps[w] = step;
        }
    }
    let acknowledged = logs.iter().flatten().filter(|s| s.answer.is_some()).count();
    let unanswered = logs.iter().flatten().count() - acknowledged;
    assert!(acknowledged > 0, "the load did nothing before the kills");
    let mut heard: BTreeMap<String, usize> = BTreeMap::new();
    for code in logs.iter().flatten().filter_map(|sent| sent.error) {
        *heard.entry(format!("{code:?}")).or_default() += 1;
    }
    eprintln!(
        "{backend:?}: {acknowledged} acknowledged, {unanswered} unanswered at a kill; \
         what the clients heard instead, by code: {heard:?}"
    );

    let server = serve(&url, &[]).await;
    let clients = RoleClients::connect(server.endpoint(), &keys).await;
    let mut replays = Vec::new();
    for log in logs {
        let clients = clients.clone();
        replays.push(tokio::spawn(async move { replay(&clients, log).await }));
    }
    for (w, replay) in replays.into_iter().enumerate() {
        let answers = replay.await.expect("replay");
        assert_effects_once(&clients, &members[w], &answers).await;
    }
    drop(server);
    let report = omo_cli(&["verify", "--database-url", &url]);
    assert!(!report.contains("VIOLATED"), "{report}");
}

/// A store, a coupon campaign, and one funded member per worker.
async fn arrange(url: &str, keys: &CliKeys) -> Vec<String> {
    let server = serve(url, &[]).await;
    let clients = RoleClients::connect(server.endpoint(), keys).await;
    let admin = &clients.admin;
    create_store_as(admin, "shibuya").await;
    admin
        .coupons()
        .create_campaign(proto::CreateCampaignRequest {
            request_id: String::new(),
            campaign: Some(proto::Campaign {
                campaign_id: CAMPAIGN.into(),
                name: "crash test".into(),
                discount: Some(Discount::AmountOff("100".into())),
                stackable: true,
                ..Default::default()
            }),
        })
        .await
        .expect("campaign");
    let mut members = Vec::new();
    for w in 0..WORKERS {
        members.push(member_with_points_as(admin, &format!("worker-{w}"), START_POINTS).await);
    }
    server.stop().expect("stops");
    members
}

/// Sends worker `w`'s steps from `step` on until the server is gone; returns its log and the
/// next step. Each step is a register sale, an EC authorize + capture, or a coupon issued and
/// used at the register, every request with an id of its own.
async fn work_until_gone(
    clients: &RoleClients,
    w: usize,
    member_id: &str,
    mut step: usize,
) -> (Vec<Sent>, usize) {
    let mut log = Vec::new();
    loop {
        let id = format!("w{w}-{step}");
        step += 1;
        let first = match step % 3 {
            0 => Request::Sale(store_sale(&id, &id, member_ref(member_id), "1000", 10)),
            1 => Request::Authorize(ec_order(
                &format!("{id}-a"),
                &format!("ec-{id}"),
                member_id,
                "2000",
                20,
            )),
            _ => Request::Issue(proto::IssueCouponRequest {
                request_id: format!("{id}-i"),
                campaign_id: CAMPAIGN.into(),
                member: Some(member_ref(member_id)),
            }),
        };
        let Some(answer) = send_logged(clients, &mut log, first).await else {
            return (log, step);
        };
        let second = match answer {
            Answer::Order(order) if order.state == proto::OrderState::Authorized as i32 => {
                Request::Capture(proto::CaptureRequest {
                    request_id: format!("{id}-c"),
                    order_id: order.order_id,
                })
            }
            Answer::Coupon(coupon) => {
                let mut sale = store_sale(
                    &format!("{id}-s"),
                    &format!("{id}-s"),
                    member_ref(member_id),
                    "1500",
                    0,
                );
                sale.coupon_codes = vec![coupon.code];
                Request::Sale(sale)
            }
            Answer::Order(_) => continue,
        };
        if send_logged(clients, &mut log, second).await.is_none() {
            return (log, step);
        }
    }
}

/// Logs `request` as sent, sends it, and logs its answer; None once the server is gone.
async fn send_logged(
    clients: &RoleClients,
    log: &mut Vec<Sent>,
    request: Request,
) -> Option<Answer> {
    log.push(Sent {
        request: request.clone(),
        answer: None,
        error: None,
    });
    match send(clients, &request).await {
        Ok(answer) => {
            log.last_mut().expect("just pushed").answer = Some(answer.clone());
            Some(answer)
        }
        Err(status) if server_gone(&status) => {
            log.last_mut().expect("just pushed").error = Some(status.code());
            None
        }
        Err(status) => panic!("{request:?} was refused: {status:?}"),
    }
}

/// Sends every logged request again, in order; each must succeed, and an acknowledged one must
/// answer as it did the first time. Returns the final answers.
async fn replay(clients: &RoleClients, log: Vec<Sent>) -> Vec<Answer> {
    let mut answers = Vec::new();
    for sent in log {
        let answer = send(clients, &sent.request)
            .await
            .unwrap_or_else(|status| panic!("replay of {:?}: {status:?}", sent.request));
        if let Some(first) = &sent.answer {
            assert_eq!(&answer, first, "a replay answered differently");
        }
        answers.push(answer);
    }
    answers
}

/// The ledger shows each of a member's answers exactly once.
async fn assert_effects_once(clients: &RoleClients, member_id: &str, answers: &[Answer]) {
    // The last answer about an order is its final state (a capture follows its authorize).
    let mut orders: BTreeMap<String, proto::Order> = BTreeMap::new();
    let mut issued = Vec::new();
    for answer in answers {
        match answer {
            Answer::Order(order) => {
                orders.insert(order.order_id.clone(), order.clone());
            }
            Answer::Coupon(coupon) => issued.push(coupon.code.clone()),
        }
    }

    let transactions = all_transactions_as(&clients.admin, member_id).await;
    let mut per_order_kind: HashMap<(String, String), usize> = HashMap::new();
    for transaction in &transactions {
        if !transaction.order_id.is_empty() {
            *per_order_kind
                .entry((transaction.order_id.clone(), transaction.kind.clone()))
                .or_default() += 1;
        }
    }
    let twice: Vec<_> = per_order_kind.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "effects applied twice: {twice:?}");
    for order_id in orders.keys() {
        assert!(
            per_order_kind.keys().any(|(id, _)| id == order_id),
            "order {order_id} has no transaction"
        );
    }

    let balance = clients
        .admin
        .ledger()
        .get_balance(proto::GetBalanceRequest {
            member: Some(member_ref(member_id)),
        })
        .await
        .expect("balance")
        .into_inner()
        .balance
        .expect("balance");
    let authorized = proto::OrderState::Authorized as i32;
    let earned_less_redeemed: i64 = orders
        .values()
        .map(|o| o.points_earned - o.points_redeemed)
        .sum();
    let held: i64 = orders
        .values()
        .filter(|o| o.state == authorized)
        .map(|o| o.points_redeemed)
        .sum();
    assert_eq!(
        balance.available_points,
        START_POINTS + earned_less_redeemed
    );
    assert_eq!(balance.held_points, held);

    let coupons = all_coupons(clients, member_id).await;
    assert_eq!(coupons.len(), issued.len(), "coupons issued once each");
    let redeemed = proto::CouponState::Redeemed as i32;
    let used: Vec<&String> = orders.values().flat_map(|o| &o.coupon_codes).collect();
    for code in used {
        let coupon = coupons
            .get(code)
            .unwrap_or_else(|| panic!("coupon {code} is missing"));
        assert_eq!(coupon.state, redeemed, "{coupon:?}");
    }
}

async fn all_coupons(clients: &RoleClients, member_id: &str) -> HashMap<String, proto::Coupon> {
    let mut all = HashMap::new();
    let mut page_token = String::new();
    loop {
        let page = clients
            .admin
            .coupons()
            .list_coupons(proto::ListCouponsRequest {
                member: Some(member_ref(member_id)),
                include_inactive: true,
                page_size: 500,
                page_token,
            })
            .await
            .expect("coupons")
            .into_inner();
        for coupon in page.coupons {
            all.insert(coupon.code.clone(), coupon);
        }
        if page.next_page_token.is_empty() {
            return all;
        }
        page_token = page.next_page_token;
    }
}
