//! Metrics and logs of `omo serve`: `--metrics-listen` serves Prometheus text with the calls
//! counted by method and gRPC code (refusals too), their latency histograms and the writer's,
//! the flush's, the coupons' and the location reports' numbers; `--log-format json` writes one
//! JSON object a line with the request span's fields and no key, identifier or coordinate.

use std::collections::BTreeMap;

use chrono::Utc;
use omo::{
    bench::ServerProcess,
    client::Client,
    proto::{self, campaign::Discount},
};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tonic::Code;

use crate::helpers::{
    Backend, CliKeys, RoleClients, basket, card_ref, cli_key, create_member_as,
    create_receipt_rule_as, create_store_as, ec_order, fresh_database, identifier, issue_coupon_as,
    member_ref, omo_cli, record_sale_as, serve, set_hold_ttl, store_sale,
};

mod metrics_count_calls_by_code {
    use crate::helpers::Backend;

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn sqlite() {
        super::metrics_count_calls_by_code(Backend::Sqlite).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn postgres() {
        super::metrics_count_calls_by_code(Backend::Postgres).await;
    }
}

mod json_logs_carry_the_span_and_no_secrets {
    use crate::helpers::Backend;

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn sqlite() {
        super::json_logs_carry_the_span_and_no_secrets(Backend::Sqlite).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn postgres() {
        super::json_logs_carry_the_span_and_no_secrets(Backend::Postgres).await;
    }
}

const SALES: usize = 6;
/// Near the stores of `create_store_as`; must never reach a log.
const LATITUDE: f64 = 35.660_123;
const LONGITUDE: f64 = 139.700_456;
const EMAIL: &str = "hanako.metrics@example.com";

/// A port nobody listens on now (the server binds it a moment later).
fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("address").port()
}

/// `GET /metrics` over plain HTTP/1.1; the body.
async fn scrape(port: u16) -> String {
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("the metrics listener accepts");
    let request = "GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n";
    stream.write_all(request.as_bytes()).await.expect("send");
    let mut response = String::new();
    stream.read_to_string(&mut response).await.expect("read");
    let (head, body) = response.split_once("\r\n\r\n").expect("an HTTP response");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    body.to_string()
}

/// One sample of the exposition: name and labels (sorted) → value.
type Samples = BTreeMap<(String, BTreeMap<String, String>), f64>;

fn parse(exposition: &str) -> Samples {
    let mut samples = Samples::new();
    for line in exposition.lines().filter(|l| l.starts_with("omo_")) {
        let (series, value) = line.rsplit_once(' ').expect("name and value");
        let (name, labels) = match series.split_once('{') {
            Some((name, labels)) => (name, labels.trim_end_matches('}')),
            None => (series, ""),
        };
        let labels = labels
            .split(',')
            .filter(|pair| !pair.is_empty())
            .map(|pair| {
                let (key, value) = pair.split_once('=').expect("label=value");
                (key.to_string(), value.trim_matches('"').to_string())
            })
            .collect();
        let value = value.parse().expect("a number");
        samples.insert((name.to_string(), labels), value);
    }
    samples
}

/// The value of `name{labels}`; None when the series is not there.
fn sample(samples: &Samples, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let labels = labels
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    samples.get(&(name.to_string(), labels)).copied()
}

async fn create_campaign(admin: &Client, campaign_id: &str) {
    let campaign = proto::Campaign {
        campaign_id: campaign_id.into(),
        name: "metrics".into(),
        discount: Some(Discount::AmountOff("100".into())),
        ..Default::default()
    };
    admin
        .coupons()
        .create_campaign(proto::CreateCampaignRequest {
            request_id: String::new(),
            campaign: Some(campaign),
        })
        .await
        .expect("create campaign");
}

fn location(request_id: &str, member_id: &str, accuracy_m: f64) -> proto::ReportLocationRequest {
    let now = Utc::now();
    proto::ReportLocationRequest {
        request_id: request_id.into(),
        member: Some(member_ref(member_id)),
        latitude: LATITUDE,
        longitude: LONGITUDE,
        accuracy_m,
        observed_at: Some(prost_types::Timestamp {
            seconds: now.timestamp(),
            nanos: 0,
        }),
        device_id: "phone-1".into(),
    }
}

/// Scrapes until `name` reaches `value` (background work is counted when it happens).
async fn await_sample(port: u16, name: &str, value: f64) {
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let seen = sample(&parse(&scrape(port).await), name, &[]);
        if seen == Some(value) {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{name} is {seen:?}, not {value}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}

/// A server over a fresh, migrated database with keys for every role.
async fn start(
    backend: Backend,
    env: &[(&str, &str)],
) -> Option<(
    ServerProcess,
    RoleClients,
    Client,
    CliKeys,
    crate::helpers::TestDatabase,
)> {
    let (url, database) = fresh_database(backend).await?;
    omo_cli(&["migrate", "--database-url", &url]);
    let keys = CliKeys::create(&url);
    let app_key = cli_key(&url, "app", None);
    let server = serve(&url, env).await;
    let clients = RoleClients::connect(server.endpoint(), &keys).await;
    let app_client = clients.admin.with_key(&app_key);
    create_store_as(&clients.admin, "shibuya").await;
    Some((server, clients, app_client, keys, database))
}

async fn metrics_count_calls_by_code(backend: Backend) {
    // Arrange
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let Some((server, clients, app_client, _keys, _database)) =
        start(backend, &[("OMO_METRICS_LISTEN", &listen)]).await
    else {
        return;
    };
    let member_id = create_member_as(&clients.admin, "4900-0001").await;
    create_campaign(&clients.admin, "metrics-100").await;
    set_hold_ttl(&clients.admin, 1).await;

    // Act: concurrent sales (the writer batches them), a refused sale, an unauthenticated
    // call, an admin coupon, an accepted and a rejected location report, a scanned receipt.
    let sales: Vec<_> = (0..SALES)
        .map(|n| {
            let register = clients.register.clone();
            let sale = store_sale(
                &format!("sale-{n}"),
                &format!("{n:04}"),
                card_ref("4900-0001"),
                "1000",
                0,
            );
            tokio::spawn(async move { record_sale_as(&register, sale).await })
        })
        .collect();
    for sale in sales {
        sale.await.expect("task").expect("sale");
    }
    let mut bad_sale = store_sale("sale-bad", "9999", card_ref("4900-0001"), "1000", 0);
    bad_sale.basket = Some(basket(&["not money"]));
    let refused = record_sale_as(&clients.register, bad_sale)
        .await
        .expect_err("refused");
    assert_eq!(refused.code(), Code::InvalidArgument);
    let stranger = clients.admin.with_key("omo_not_a_key_of_this_server");
    let balance = stranger
        .ledger()
        .get_balance(proto::GetBalanceRequest {
            member: Some(member_ref(&member_id)),
        })
        .await
        .expect_err("refused");
    assert_eq!(balance.code(), Code::Unauthenticated);
    issue_coupon_as(&clients.admin, "coupon-1", "metrics-100", &member_id)
        .await
        .expect("issue");
    let engagement = app_client.engagement();
    for (request_id, accuracy_m) in [("loc-1", 10.0), ("loc-2", 5000.0)] {
        engagement
            .clone()
            .report_location(location(request_id, &member_id, accuracy_m))
            .await
            .expect("report");
    }
    create_receipt_rule_as(&clients.admin, "photo", "0.01").await;
    let receipt = proto::Receipt {
        store_id: "shibuya".into(),
        register_id: "9".into(),
        receipt_no: "R-1".into(),
        issued_at: Some(prost_types::Timestamp {
            seconds: (Utc::now() - chrono::Duration::hours(1)).timestamp(),
            nanos: 0,
        }),
        total: "1500".into(),
        lines: basket(&["1500"]).lines,
        image_sha256: "a".repeat(64),
        raw_text: String::new(),
    };
    let scanned = engagement
        .clone()
        .submit_receipt(proto::SubmitReceiptRequest {
            request_id: "receipt-1".into(),
            member: Some(member_ref(&member_id)),
            receipt: Some(receipt),
        })
        .await
        .expect("receipt")
        .into_inner()
        .result
        .expect("result");
    assert_eq!(scanned.points_awarded, 15);
    let held = ec_order("auth-1", "EC-1", &member_id, "1000", 0);
    clients
        .checkout
        .checkout()
        .authorize(held)
        .await
        .expect("authorize");
    await_sample(port, "omo_holds_expired_total", 1.0).await;
    let samples = parse(&scrape(port).await);

    // Assert
    let sale = "omo.v1.CheckoutService/RecordSale";
    let requests = "omo_rpc_requests_total";
    let found = |name: &str, labels: &[(&str, &str)]| sample(&samples, name, labels);
    assert_eq!(
        found(requests, &[("method", sale), ("code", "OK")]),
        Some(SALES as f64)
    );
    assert_eq!(
        found(requests, &[("method", sale), ("code", "INVALID_ARGUMENT")]),
        Some(1.0)
    );
    let balance = "omo.v1.LedgerService/GetBalance";
    assert_eq!(
        found(
            requests,
            &[("method", balance), ("code", "UNAUTHENTICATED")]
        ),
        Some(1.0)
    );
    let latency = "omo_rpc_duration_seconds";
    assert_eq!(
        found(&format!("{latency}_count"), &[("method", sale)]),
        Some(SALES as f64 + 1.0)
    );
    assert_eq!(
        found(
            &format!("{latency}_bucket"),
            &[("method", sale), ("le", "+Inf")]
        ),
        Some(SALES as f64 + 1.0)
    );
    assert!(
        found(
            &format!("{latency}_bucket"),
            &[("method", sale), ("le", "0.0001")]
        )
        .is_some()
    );

    // Every command went through a group commit: the batches hold them all.
    let commands = found("omo_batch_commands_sum", &[]).expect("batch sizes");
    assert!(commands >= SALES as f64, "{commands} commands in batches");
    assert!(found("omo_batch_commands_count", &[]).expect("batches") >= 1.0);
    assert!(found("omo_writer_queue_depth", &[]).is_some());
    let journal = found("omo_flush_rows_total", &[("table", "transactions")]);
    assert!(journal.expect("journal rows") >= SALES as f64 + 1.0);
    // SQLite times each table; PostgreSQL's one statement covers every ledger table.
    let timed_table = match backend {
        Backend::Sqlite => "transactions",
        Backend::Postgres => "ledger",
    };
    let flushes = found(
        "omo_flush_duration_seconds_count",
        &[("table", timed_table)],
    );
    assert!(flushes.expect("flush times") >= 1.0);
    assert_eq!(
        found("omo_coupons_issued_total", &[("source", "admin")]),
        Some(1.0)
    );
    let reports = "omo_location_reports_total";
    assert_eq!(found(reports, &[("verdict", "accepted")]), Some(1.0));
    assert_eq!(
        found(reports, &[("verdict", "rejected_accuracy")]),
        Some(1.0)
    );
    assert_eq!(
        found("omo_receipts_total", &[("status", "accepted")]),
        Some(1.0)
    );
    // Labels never carry ids: the member, the order and the coupon's source id are nowhere.
    let exposition = scrape(port).await;
    for id in [
        member_id.as_str(),
        "shibuya-1-0001",
        "4900-0001",
        "metrics-100",
    ] {
        assert!(!exposition.contains(id), "{id} in the metrics");
    }
    server.stop().expect("stops");
}

async fn json_logs_carry_the_span_and_no_secrets(backend: Backend) {
    // Arrange
    let Some((server, clients, app_client, keys, _database)) =
        start(backend, &[("OMO_LOG_FORMAT", "json"), ("RUST_LOG", "info")]).await
    else {
        return;
    };

    // Act
    let member = clients
        .admin
        .members()
        .create_member(proto::CreateMemberRequest {
            request_id: "create-member-1".into(),
            identifiers: vec![
                identifier("email", EMAIL),
                identifier("phone", "090-1234-5678"),
            ],
            display_name: "Hanako".into(),
        })
        .await
        .expect("create member")
        .into_inner()
        .member
        .expect("member");
    let lookup = clients
        .checkout
        .members()
        .get_member(proto::GetMemberRequest {
            member: Some(proto::MemberRef {
                r#ref: Some(proto::member_ref::Ref::Identifier(identifier(
                    "email", EMAIL,
                ))),
            }),
        })
        .await;
    assert_eq!(
        lookup.expect("found").into_inner().member,
        Some(member.clone())
    );
    let refused = clients
        .admin
        .ledger()
        .adjust_points(proto::AdjustPointsRequest {
            expires_at: None,
            request_id: "adjust-1".into(),
            member: Some(member_ref(&member.member_id)),
            points: 0,
            reason: String::new(),
        })
        .await
        .expect_err("refused");
    assert_eq!(refused.code(), Code::InvalidArgument);
    app_client
        .engagement()
        .report_location(location("loc-1", &member.member_id, 10.0))
        .await
        .expect("report");
    let log = server.log();
    server.stop().expect("stops");

    // Assert: every line is JSON; each call has one "request finished" line with its span.
    let lines: Vec<Value> = log
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|_| panic!("not JSON: {line}")))
        .collect();
    let finished = |method: &str| -> Vec<&Value> {
        lines
            .iter()
            .filter(|line| line["message"] == "request finished")
            .filter(|line| line["span"]["method"] == method)
            .collect()
    };
    let created = finished("omo.v1.MemberService/CreateMember");
    assert_eq!(created.len(), 1, "{log}");
    let span = &created[0]["span"];
    assert_eq!(span["name"], "request");
    assert_eq!(span["role"], "admin");
    assert_eq!(span["request_id"], "create-member-1");
    assert_eq!(span["code"], "OK");
    assert!(
        span["key_id"].as_str().is_some_and(|id| !id.is_empty()),
        "{span}"
    );
    assert!(
        span["latency_ms"].as_f64().is_some_and(|ms| ms > 0.0),
        "{span}"
    );
    let looked_up = finished("omo.v1.MemberService/GetMember");
    assert_eq!(looked_up[0]["span"]["role"], "checkout");
    let adjusted = finished("omo.v1.LedgerService/AdjustPoints");
    assert_eq!(adjusted[0]["span"]["code"], "INVALID_ARGUMENT");
    assert_eq!(finished("omo.v1.EngagementService/ReportLocation").len(), 1);

    // No API key, member id, identifier or coordinate anywhere in the log.
    let latitude = LATITUDE.to_string();
    let longitude = LONGITUDE.to_string();
    let secrets = [
        keys.admin.as_str(),
        keys.checkout.as_str(),
        EMAIL,
        "090-1234-5678",
        member.member_id.as_str(),
        latitude.as_str(),
        longitude.as_str(),
    ];
    for secret in secrets {
        assert!(!log.contains(secret), "{secret:?} is in the log:\n{log}");
    }
}
