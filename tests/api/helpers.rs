//! `spawn_app(backend)`: a server on port 0 over a fresh database, with a manual clock and one
//! client per role. PostgreSQL tests create a randomly named database and drop it afterwards.

use std::sync::Arc;

use chrono::{Duration, TimeZone, Utc};
use omo::{
    Application, Config,
    client::Client,
    domain::{ManualClock, auth::Role},
    proto::{self, member_ref::Ref},
};
use tonic::{Code, Status};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// Runs one scenario on both backends: `both_backends!(name, scenario_fn)` makes
/// `name::sqlite` and `name::postgres` tests.
#[macro_export]
macro_rules! both_backends {
    ($($name:ident => $scenario:ident),* $(,)?) => {
        $(
            mod $name {
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn sqlite() {
                    if let Some(app) = $crate::helpers::spawn_app($crate::helpers::Backend::Sqlite).await {
                        super::$scenario(&app).await;
                    }
                }

                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn postgres() {
                    if let Some(app) = $crate::helpers::spawn_app($crate::helpers::Backend::Postgres).await {
                        super::$scenario(&app).await;
                    }
                }
            }
        )*
    };
}

pub struct TestApp {
    pub app: Option<Application>,
    pub clock: ManualClock,
    pub backend: Backend,
    pub database_url: String,
    pub admin: Client,
    pub checkout: Client,
    pub app_client: Client,
    /// A register key bound to store `shibuya`.
    pub register: Client,
    /// A register key bound to store `umeda`.
    pub other_register: Client,
    pub anonymous: Client,
    /// Dropped last (after the server): removes the test database.
    _database: TestDatabase,
}

pub enum TestDatabase {
    SqliteFile(std::path::PathBuf),
    Postgres { admin_url: String, name: String },
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        match self {
            TestDatabase::SqliteFile(dir) => {
                let _ = std::fs::remove_dir_all(dir);
            }
            TestDatabase::Postgres { admin_url, name } => {
                let (admin_url, name) = (admin_url.clone(), name.clone());
                // Drop runs inside the test's runtime: use a thread with its own runtime.
                let _ = std::thread::spawn(move || {
                    let runtime = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                        .expect("runtime");
                    runtime.block_on(async move {
                        use sqlx::Executor;
                        if let Ok(pool) = sqlx::PgPool::connect(&admin_url).await {
                            let drop = format!("drop database if exists \"{name}\" with (force)");
                            let _ = pool.execute(drop.as_str()).await;
                        }
                    });
                })
                .join();
            }
        }
    }
}

pub fn postgres_admin_url() -> String {
    std::env::var("OMO_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

fn unique_name() -> String {
    format!("omo_test_{:016x}", rand::random::<u64>())
}

/// A fresh database of `backend`; None (with a note) when PostgreSQL is unreachable outside CI.
pub async fn fresh_database(backend: Backend) -> Option<(String, TestDatabase)> {
    match backend {
        Backend::Sqlite => {
            let dir = std::env::temp_dir().join(unique_name());
            std::fs::create_dir_all(&dir).expect("temp dir");
            let url = format!("sqlite://{}", dir.join("omo.db").display());
            Some((url, TestDatabase::SqliteFile(dir)))
        }
        Backend::Postgres => {
            use sqlx::Executor;
            let admin_url = postgres_admin_url();
            let pool = match sqlx::PgPool::connect(&admin_url).await {
                Ok(pool) => pool,
                Err(error) if std::env::var("CI").as_deref() != Ok("true") => {
                    eprintln!(
                        "SKIPPED: PostgreSQL unreachable at {admin_url} ({error}); CI=true makes this a failure"
                    );
                    return None;
                }
                Err(error) => {
                    panic!("PostgreSQL unreachable at {admin_url} under CI=true: {error}")
                }
            };
            let name = unique_name();
            pool.execute(format!("create database \"{name}\"").as_str())
                .await
                .expect("create test database");
            let base = admin_url
                .rsplit_once('/')
                .map_or(admin_url.as_str(), |(base, _)| base);
            let url = format!("{base}/{name}");
            Some((url, TestDatabase::Postgres { admin_url, name }))
        }
    }
}

pub fn start_time() -> chrono::DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 4, 1, 3, 0, 0).unwrap()
}

pub async fn spawn_app(backend: Backend) -> Option<TestApp> {
    spawn_app_with(backend, |_| {}).await
}

/// As [`spawn_app`], with the local config changed by `configure` first.
pub async fn spawn_app_with(
    backend: Backend,
    configure: impl FnOnce(&mut Config),
) -> Option<TestApp> {
    let (database_url, database) = fresh_database(backend).await?;
    let clock = ManualClock::new(start_time());
    let mut config = Config::local(&database_url);
    configure(&mut config);
    let app = Application::build(&config, Arc::new(clock.clone()))
        .await
        .expect("server starts");
    let engine = app.engine().clone();
    let key = |role, store: Option<&str>| {
        let engine = engine.clone();
        let store = store.map(str::to_string);
        async move {
            engine
                .create_api_key(role, store, "test".into())
                .await
                .expect("key")
        }
    };
    let admin = Client::connect(&app.endpoint(), &key(Role::Admin, None).await)
        .await
        .expect("connect");
    let test_app = TestApp {
        checkout: admin.with_key(&key(Role::Checkout, None).await),
        app_client: admin.with_key(&key(Role::App, None).await),
        register: admin.with_key(&key(Role::Register, Some("shibuya")).await),
        other_register: admin.with_key(&key(Role::Register, Some("umeda")).await),
        anonymous: admin.with_key(""),
        admin,
        app: Some(app),
        clock,
        backend,
        database_url,
        _database: database,
    };
    test_app.create_store("shibuya").await;
    test_app.create_store("umeda").await;
    Some(test_app)
}

impl TestApp {
    /// A store in Times Square, on New York's clock (for local days and printed times that are
    /// not Tokyo's).
    pub async fn create_new_york_store(&self, store_id: &str) {
        self.admin
            .stores()
            .create_store(proto::CreateStoreRequest {
                request_id: String::new(),
                store: Some(proto::Store {
                    store_id: store_id.into(),
                    name: "Times Square".into(),
                    location: Some(proto::LatLng {
                        latitude: 40.7580,
                        longitude: -73.9855,
                    }),
                    time_zone: "America/New_York".into(),
                    geofence_radius_m: 100.0,
                    geofence_polygon: vec![],
                }),
            })
            .await
            .expect("create store");
    }

    pub fn app(&self) -> &Application {
        self.app.as_ref().expect("running")
    }

    /// Moves the clock and runs the sweeper once (as its timer would).
    pub async fn advance(&self, by: Duration) {
        self.clock.advance(by);
        self.app().engine().sweep().await.expect("sweep");
    }

    pub async fn create_store(&self, store_id: &str) {
        create_store_as(&self.admin, store_id).await;
    }

    pub async fn create_member(&self, card: &str) -> String {
        create_member_as(&self.admin, card).await
    }

    /// A member with `points` available (credited by an admin adjustment).
    pub async fn member_with_points(&self, card: &str, points: i64) -> String {
        member_with_points_as(&self.admin, card, points).await
    }

    /// An admin adjustment of `points` (negative: a debit).
    pub async fn adjust_points(
        &self,
        request_id: &str,
        member_id: &str,
        points: i64,
        reason: &str,
    ) -> Result<proto::Transaction, Status> {
        self.admin
            .ledger()
            .adjust_points(proto::AdjustPointsRequest {
                expires_at: None,
                request_id: request_id.into(),
                member: Some(member_ref(member_id)),
                points,
                reason: reason.into(),
            })
            .await
            .map(|r| r.into_inner().transaction.expect("transaction"))
    }

    /// Reads the program, changes it, saves it.
    pub async fn set_program(&self, change: impl FnOnce(&mut proto::Program)) {
        let mut program = self
            .admin
            .program()
            .get_program(proto::GetProgramRequest {})
            .await
            .expect("program")
            .into_inner()
            .program
            .unwrap();
        change(&mut program);
        self.admin
            .program()
            .update_program(proto::UpdateProgramRequest {
                request_id: String::new(),
                program: Some(program),
                update_mask: None,
            })
            .await
            .expect("update program");
    }

    /// Authorize with the checkout key.
    pub async fn authorize(
        &self,
        request: proto::AuthorizeRequest,
    ) -> Result<proto::Order, Status> {
        authorize_as(&self.checkout, request).await
    }

    /// Capture with the checkout key.
    pub async fn capture(&self, request_id: &str, order_id: &str) -> Result<proto::Order, Status> {
        self.checkout
            .checkout()
            .capture(proto::CaptureRequest {
                request_id: request_id.into(),
                order_id: order_id.into(),
            })
            .await
            .map(|r| r.into_inner().order.expect("order"))
    }

    /// Void with the checkout key.
    pub async fn void(&self, request_id: &str, order_id: &str) -> Result<proto::Order, Status> {
        self.checkout
            .checkout()
            .void(proto::VoidRequest {
                request_id: request_id.into(),
                order_id: order_id.into(),
            })
            .await
            .map(|r| r.into_inner().order.expect("order"))
    }

    /// A refund of `amount` with the checkout key.
    pub async fn refund(
        &self,
        request_id: &str,
        order_id: &str,
        amount: &str,
    ) -> Result<proto::RefundResult, Status> {
        self.refund_request(proto::RefundRequest {
            request_id: request_id.into(),
            order_id: order_id.into(),
            amount: amount.into(),
            lines: vec![],
        })
        .await
    }

    /// A refund of `quantity` units of one line with the checkout key.
    pub async fn refund_lines(
        &self,
        request_id: &str,
        order_id: &str,
        line_id: &str,
        quantity: i32,
    ) -> Result<proto::RefundResult, Status> {
        self.refund_request(proto::RefundRequest {
            request_id: request_id.into(),
            order_id: order_id.into(),
            amount: String::new(),
            lines: vec![proto::RefundLine {
                line_id: line_id.into(),
                quantity,
            }],
        })
        .await
    }

    async fn refund_request(
        &self,
        request: proto::RefundRequest,
    ) -> Result<proto::RefundResult, Status> {
        self.checkout
            .checkout()
            .refund(request)
            .await
            .map(|r| r.into_inner().result.expect("result"))
    }

    /// GetOrder with the checkout key.
    pub async fn get_order(&self, order_id: &str) -> Result<proto::Order, Status> {
        self.checkout
            .checkout()
            .get_order(proto::GetOrderRequest {
                order_id: order_id.into(),
            })
            .await
            .map(|r| r.into_inner().order.expect("order"))
    }

    /// RecordSale with the register key of `shibuya`.
    pub async fn record_sale(
        &self,
        request: proto::RecordSaleRequest,
    ) -> Result<proto::Order, Status> {
        record_sale_as(&self.register, request).await
    }

    /// IssueCoupon with the admin key.
    pub async fn issue_coupon(
        &self,
        request_id: &str,
        campaign_id: &str,
        member_id: &str,
    ) -> Result<proto::Coupon, Status> {
        issue_coupon_as(&self.admin, request_id, campaign_id, member_id).await
    }

    pub async fn balance(&self, member_id: &str) -> proto::Balance {
        self.admin
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

    pub async fn available(&self, member_id: &str) -> i64 {
        self.balance(member_id).await.available_points
    }

    pub async fn verify_ok(&self) {
        let report = self.app().engine().verify().await.expect("verify runs");
        assert!(report.ok(), "{}", report.summary());
    }

    /// Stops the server and starts a new one over the same database (same clock).
    pub async fn restart(&mut self) {
        self.app
            .take()
            .expect("running")
            .stop()
            .await
            .expect("stops");
        let app = Application::build(
            &Config::local(&self.database_url),
            Arc::new(self.clock.clone()),
        )
        .await
        .expect("restarts");
        let endpoint = app.endpoint();
        self.app = Some(app);
        let reconnect = |client: &Client| {
            let endpoint = endpoint.clone();
            let client = client.clone();
            async move { client.reconnect(&endpoint).await.expect("reconnect") }
        };
        self.admin = reconnect(&self.admin).await;
        self.checkout = reconnect(&self.checkout).await;
        self.register = reconnect(&self.register).await;
        self.app_client = reconnect(&self.app_client).await;
    }
}

pub fn identifier(kind: &str, value: &str) -> proto::Identifier {
    proto::Identifier {
        kind: kind.into(),
        value: value.into(),
    }
}

pub fn member_ref(member_id: &str) -> proto::MemberRef {
    proto::MemberRef {
        r#ref: Some(Ref::MemberId(member_id.into())),
    }
}

pub fn card_ref(card: &str) -> proto::MemberRef {
    proto::MemberRef {
        r#ref: Some(Ref::Identifier(identifier("card", card))),
    }
}

pub fn basket(amounts: &[&str]) -> proto::Basket {
    proto::Basket {
        lines: amounts
            .iter()
            .enumerate()
            .map(|(i, amount)| proto::LineItem {
                line_id: format!("L{}", i + 1),
                sku: format!("SKU-{}", i + 1),
                category: "grocery".into(),
                quantity: 1,
                amount: (*amount).into(),
            })
            .collect(),
    }
}

/// An EC Authorize request.
pub fn ec_order(
    request_id: &str,
    order_id: &str,
    member_id: &str,
    total: &str,
    points: i64,
) -> proto::AuthorizeRequest {
    proto::AuthorizeRequest {
        request_id: request_id.into(),
        order_id: order_id.into(),
        member: Some(member_ref(member_id)),
        channel: proto::Channel::Ec as i32,
        basket: Some(basket(&[total])),
        points_to_redeem: points,
        ..Default::default()
    }
}

/// A register sale at `shibuya`.
pub fn store_sale(
    request_id: &str,
    receipt_no: &str,
    member: proto::MemberRef,
    total: &str,
    points: i64,
) -> proto::RecordSaleRequest {
    proto::RecordSaleRequest {
        request_id: request_id.into(),
        order_id: format!("shibuya-1-{receipt_no}"),
        member: Some(member),
        channel: proto::Channel::Store as i32,
        store_id: "shibuya".into(),
        register_id: "1".into(),
        basket: Some(basket(&[total])),
        points_to_redeem: points,
        receipt_no: receipt_no.into(),
        ..Default::default()
    }
}

/// The `ErrorInfo.reason` of a refusal.
pub fn reason(status: &tonic::Status) -> String {
    use tonic_types::StatusExt;
    status
        .get_details_error_info()
        .map(|info| info.reason)
        .unwrap_or_default()
}

/// Asserts a refusal's code and reason.
pub fn assert_refused(status: &tonic::Status, code: Code, expected_reason: &str) {
    assert_eq!(status.code(), code, "{status:?}");
    assert_eq!(reason(status), expected_reason, "{status:?}");
}

/// The fields named by a BadRequest.
pub fn violated_fields(status: &tonic::Status) -> Vec<String> {
    use tonic_types::StatusExt;
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    status
        .get_details_bad_request()
        .map(|bad| bad.field_violations.into_iter().map(|v| v.field).collect())
        .unwrap_or_default()
}

/// Authorize with `client`'s key.
pub async fn authorize_as(
    client: &Client,
    request: proto::AuthorizeRequest,
) -> Result<proto::Order, Status> {
    client
        .checkout()
        .authorize(request)
        .await
        .map(|r| r.into_inner().order.expect("order"))
}

/// RecordSale with `client`'s key.
pub async fn record_sale_as(
    client: &Client,
    request: proto::RecordSaleRequest,
) -> Result<proto::Order, Status> {
    client
        .checkout()
        .record_sale(request)
        .await
        .map(|r| r.into_inner().order.expect("order"))
}

/// IssueCoupon with `client`'s key.
pub async fn issue_coupon_as(
    client: &Client,
    request_id: &str,
    campaign_id: &str,
    member_id: &str,
) -> Result<proto::Coupon, Status> {
    client
        .coupons()
        .issue_coupon(proto::IssueCouponRequest {
            request_id: request_id.into(),
            campaign_id: campaign_id.into(),
            member: Some(member_ref(member_id)),
        })
        .await
        .map(|r| r.into_inner().coupon.expect("coupon"))
}

/// GetMember with `client`'s key.
pub async fn get_member_as(
    client: &Client,
    member: proto::MemberRef,
) -> Result<proto::Member, Status> {
    client
        .members()
        .get_member(proto::GetMemberRequest {
            member: Some(member),
        })
        .await
        .map(|r| r.into_inner().member.expect("member"))
}

/// Awaits racing calls: every failure must be exactly the refusal `code` / `expected_reason`.
/// Returns how many succeeded.
pub async fn successes<T>(
    tasks: Vec<tokio::task::JoinHandle<Result<T, Status>>>,
    code: Code,
    expected_reason: &str,
) -> usize {
    let mut succeeded = 0;
    for task in tasks {
        match task.await.expect("task") {
            Ok(_) => succeeded += 1,
            Err(status) => assert_refused(&status, code, expected_reason),
        }
    }
    succeeded
}

/// Runs the `omo` binary itself (the one cargo built for these tests) and returns its stdout;
/// panics with its output when it fails.
pub fn omo_cli(args: &[&str]) -> String {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_omo"))
        .args(args)
        .output()
        .expect("omo runs");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "omo {args:?} failed: {stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

/// A new API key made with `omo keys create` (the key is alone on the last line).
pub fn cli_key(database_url: &str, role: &str, store_id: Option<&str>) -> String {
    let mut args = vec![
        "keys",
        "create",
        "--role",
        role,
        "--database-url",
        database_url,
    ];
    if let Some(store_id) = store_id {
        args.extend(["--store", store_id]);
    }
    omo_cli(&args)
        .lines()
        .last()
        .expect("a key line")
        .trim()
        .to_string()
}

/// `omo serve` as a child process over `database_url` (on a free port, SERVING when returned).
pub async fn serve(database_url: &str, env: &[(&str, &str)]) -> omo::bench::ServerProcess {
    omo::bench::ServerProcess::spawn_program(
        std::path::Path::new(env!("CARGO_BIN_EXE_omo")),
        database_url,
        env,
    )
    .await
    .expect("omo serve starts")
}

/// A receipt rule `rule_id` earning `earn_rate` points per yen of any store, created by
/// `admin`.
pub async fn create_receipt_rule_as(admin: &Client, rule_id: &str, earn_rate: &str) {
    admin
        .engagement()
        .create_receipt_rule(proto::CreateReceiptRuleRequest {
            request_id: format!("rule-{rule_id}"),
            rule: Some(proto::ReceiptRule {
                rule_id: rule_id.into(),
                earn_rate: earn_rate.into(),
                ..Default::default()
            }),
        })
        .await
        .expect("receipt rule");
}

/// A store at Shibuya (radius 100 m), created by `admin`.
pub async fn create_store_as(admin: &Client, store_id: &str) {
    admin
        .stores()
        .create_store(proto::CreateStoreRequest {
            request_id: String::new(),
            store: Some(proto::Store {
                store_id: store_id.into(),
                name: store_id.into(),
                location: Some(proto::LatLng {
                    latitude: 35.66,
                    longitude: 139.70,
                }),
                time_zone: "Asia/Tokyo".into(),
                geofence_radius_m: 100.0,
                geofence_polygon: vec![],
            }),
        })
        .await
        .expect("create store");
}

/// Keys made with `omo keys create`, for servers run as child processes.
#[derive(Clone)]
pub struct CliKeys {
    pub admin: String,
    /// Bound to store `shibuya`.
    pub register: String,
    pub checkout: String,
}

impl CliKeys {
    pub fn create(database_url: &str) -> CliKeys {
        CliKeys {
            admin: cli_key(database_url, "admin", None),
            register: cli_key(database_url, "register", Some("shibuya")),
            checkout: cli_key(database_url, "checkout", None),
        }
    }
}

/// One client per role, connected to a child server.
#[derive(Clone)]
pub struct RoleClients {
    pub admin: Client,
    pub register: Client,
    pub checkout: Client,
}

impl RoleClients {
    pub async fn connect(endpoint: &str, keys: &CliKeys) -> RoleClients {
        let admin = Client::connect(endpoint, &keys.admin)
            .await
            .expect("connect");
        RoleClients {
            register: admin.with_key(&keys.register),
            checkout: admin.with_key(&keys.checkout),
            admin,
        }
    }
}

/// A member with card `card`, created by `admin`.
pub async fn create_member_as(admin: &Client, card: &str) -> String {
    admin
        .members()
        .create_member(proto::CreateMemberRequest {
            request_id: format!("create-{card}"),
            identifiers: vec![identifier("card", card)],
            display_name: format!("member {card}"),
        })
        .await
        .expect("create member")
        .into_inner()
        .member
        .expect("member")
        .member_id
}

/// A member with card `card` and `points` available (an adjustment by `admin`).
pub async fn member_with_points_as(admin: &Client, card: &str, points: i64) -> String {
    let member_id = create_member_as(admin, card).await;
    if points > 0 {
        admin
            .ledger()
            .adjust_points(proto::AdjustPointsRequest {
                expires_at: None,
                request_id: format!("grant-{card}"),
                member: Some(member_ref(&member_id)),
                points,
                reason: "test grant".into(),
            })
            .await
            .expect("adjust");
    }
    member_id
}

/// Sets the program's hold TTL (the sweeper of `serve` expires holds every second).
pub async fn set_hold_ttl(admin: &Client, seconds: i32) {
    let mut program = admin
        .program()
        .get_program(proto::GetProgramRequest {})
        .await
        .expect("program")
        .into_inner()
        .program
        .expect("program");
    program.hold_ttl_seconds = seconds;
    admin
        .program()
        .update_program(proto::UpdateProgramRequest {
            request_id: String::new(),
            program: Some(program),
            update_mask: None,
        })
        .await
        .expect("update program");
}

/// Every journal entry of a member, newest first, read page by page by `admin`.
pub async fn all_transactions_as(admin: &Client, member_id: &str) -> Vec<proto::Transaction> {
    let mut all = Vec::new();
    let mut page_token = String::new();
    loop {
        let page = admin
            .ledger()
            .list_transactions(proto::ListTransactionsRequest {
                member: Some(member_ref(member_id)),
                page_size: 500,
                page_token,
            })
            .await
            .expect("transactions")
            .into_inner();
        all.extend(page.transactions);
        if page.next_page_token.is_empty() {
            return all;
        }
        page_token = page.next_page_token;
    }
}
