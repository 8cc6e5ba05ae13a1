//! The scenarios: which requests each one sends (a weighted mix table, so `mixed` is a table
//! and a new operation joins by adding a row) and how each request is built.

use std::{
    sync::Arc,
    time::{Duration, SystemTime},
};

use rand::{Rng, SeedableRng, rngs::StdRng};
use serde::Serialize;
use tonic::{Code, Status, transport::Channel};
use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};
use tonic_types::StatusExt;

use super::{BenchError, load::Worker};
use crate::{
    client::{Authed, Client},
    proto::{
        self, checkout_service_client::CheckoutServiceClient,
        engagement_service_client::EngagementServiceClient,
        event_service_client::EventServiceClient, ledger_service_client::LedgerServiceClient,
        member_ref::Ref, report_service_client::ReportServiceClient,
    },
};

/// The store every register sale goes to (a `register` key is bound to it).
pub const STORE_ID: &str = "bench-store";
/// The campaign of the `hot` scenario: its public code on every sale, an issue limit no run
/// reaches (`--hot-issue-limit`).
pub const HOT_CAMPAIGN_ID: &str = "bench-hot";
pub const HOT_CODE: &str = "BENCHHOT";
/// The campaign `report-campaign` asks about when the bench seeded it: one coupon per member in
/// every state (see `seed.rs`). A --target server without it is asked about
/// [`HOT_CAMPAIGN_ID`].
pub const STATS_CAMPAIGN_ID: &str = "bench-stats";
/// GetActivity's range: the year up to now (the API allows at most 366 days).
const ACTIVITY_SPAN: Duration = Duration::from_secs(365 * 24 * 3600);
/// Basket totals (whole yen) and points redeemed per order.
const BASKET_YEN: std::ops::RangeInclusive<u32> = 1_000..=20_000;
const REDEEM_POINTS: std::ops::RangeInclusive<i64> = 1..=50;

/// Stores seeded for `location`: `bench-geo-<n>`, n = 1..=GEO_STORES, on a grid of
/// GEO_COLUMNS columns GEO_STEP_DEG apart (about 450-550 m around 35° N) from GEO_ORIGIN.
pub const GEO_STORES: u64 = 100_000;
pub const GEO_COLUMNS: u64 = 400;
pub const GEO_STEP_DEG: f64 = 0.005;
pub const GEO_ORIGIN: (f64, f64) = (35.0, 139.0);
/// The campaign of the `location` scenario's geo rules (one on entry, one after a dwell).
pub const GEO_CAMPAIGN_ID: &str = "bench-geo";
/// Share of location reports inside the member's store, in percent; the others are 300 m
/// away, which ends the visit, so that members keep entering again.
const INSIDE_PERCENT: u32 = 70;
/// Metres per degree of latitude, near enough for placing a report.
const M_PER_DEG_LAT: f64 = 111_000.0;

/// Where seeded store `n` (1-based) stands: (latitude, longitude).
pub fn geo_store_location(n: u64) -> (f64, f64) {
    let i = n.saturating_sub(1);
    let (row, column) = ((i / GEO_COLUMNS) as f64, (i % GEO_COLUMNS) as f64);
    (
        GEO_ORIGIN.0 + row * GEO_STEP_DEG,
        GEO_ORIGIN.1 + column * GEO_STEP_DEG,
    )
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Scenario {
    GrpcCeiling,
    Sale,
    /// `sale` over Connect JSON (HTTP/2 on the same port): the JSON edge's cost against gRPC.
    SaleJson,
    Checkout,
    Balance,
    Hot,
    Mixed,
    SqlFloor,
    Location,
    ReportLiability,
    ReportCampaign,
    ReportActivityDaily,
    ReportActivityMonth,
    ReportActivity,
    TrackEvent,
}

/// One request (or, for checkout, the Authorize + Capture pair) a worker can send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Health,
    Sale,
    SaleJson,
    Checkout,
    Balance,
    Hot,
    Location,
    Liability,
    CampaignStats,
    Activity(ActivityAsk),
    TrackEvent,
}

/// The GetActivity requests the bench sends, as an operator's reports ask.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ActivityAsk {
    /// The year up to now ([`ACTIVITY_SPAN`]), in totals per channel and store.
    Year,
    /// The year by day at one store ([`DAILY_STORE`]).
    StoreYearByDay,
    /// The last 30 days by day at every store: the dashboard's chart.
    MonthByDay,
}

/// The event type `track-event` sends, and its EVENT rule's.
pub const BENCH_EVENT_TYPE: &str = "page_view";

/// The store whose days `report-activity-daily` reads: one of the seeded history's.
const DAILY_STORE: &str = "bench-store-1";

/// `mixed`: weights out of their sum.
pub const MIXED: &[(Op, u32)] = &[(Op::Balance, 60), (Op::Sale, 25), (Op::Checkout, 15)];

impl Scenario {
    pub const ALL: [Scenario; 15] = [
        Scenario::GrpcCeiling,
        Scenario::Sale,
        Scenario::SaleJson,
        Scenario::Checkout,
        Scenario::Balance,
        Scenario::Hot,
        Scenario::Mixed,
        Scenario::SqlFloor,
        Scenario::Location,
        Scenario::ReportLiability,
        Scenario::ReportCampaign,
        Scenario::ReportActivityDaily,
        Scenario::ReportActivityMonth,
        Scenario::ReportActivity,
        Scenario::TrackEvent,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Scenario::GrpcCeiling => "grpc-ceiling",
            Scenario::Sale => "sale",
            Scenario::SaleJson => "sale-json",
            Scenario::Checkout => "checkout",
            Scenario::Balance => "balance",
            Scenario::Hot => "hot",
            Scenario::Mixed => "mixed",
            Scenario::SqlFloor => "sql-floor",
            Scenario::Location => "location",
            Scenario::ReportLiability => "report-liability",
            Scenario::ReportCampaign => "report-campaign",
            Scenario::ReportActivityDaily => "report-activity-daily",
            Scenario::ReportActivityMonth => "report-activity-month",
            Scenario::ReportActivity => "report-activity",
            Scenario::TrackEvent => "track-event",
        }
    }

    pub fn parse(text: &str) -> Result<Scenario, String> {
        let text = text.trim();
        Scenario::ALL
            .into_iter()
            .find(|s| s.name() == text)
            .ok_or_else(|| {
                let names: Vec<&str> = Scenario::ALL.iter().map(|s| s.name()).collect();
                format!("unknown scenario {text:?}: one of {}", names.join(", "))
            })
    }

    /// The operations a gRPC scenario sends, with weights (empty for the SQL floor).
    pub fn mix(self) -> &'static [(Op, u32)] {
        match self {
            Scenario::GrpcCeiling => &[(Op::Health, 1)],
            Scenario::Sale => &[(Op::Sale, 1)],
            Scenario::SaleJson => &[(Op::SaleJson, 1)],
            Scenario::Checkout => &[(Op::Checkout, 1)],
            Scenario::Balance => &[(Op::Balance, 1)],
            Scenario::Hot => &[(Op::Hot, 1)],
            Scenario::Mixed => MIXED,
            Scenario::SqlFloor => &[],
            Scenario::Location => &[(Op::Location, 1)],
            Scenario::ReportLiability => &[(Op::Liability, 1)],
            Scenario::ReportCampaign => &[(Op::CampaignStats, 1)],
            Scenario::ReportActivityDaily => &[(Op::Activity(ActivityAsk::StoreYearByDay), 1)],
            Scenario::ReportActivityMonth => &[(Op::Activity(ActivityAsk::MonthByDay), 1)],
            Scenario::ReportActivity => &[(Op::Activity(ActivityAsk::Year), 1)],
            Scenario::TrackEvent => &[(Op::TrackEvent, 1)],
        }
    }

    /// Whether this scenario calls ReportService.
    pub fn is_report(self) -> bool {
        matches!(
            self,
            Scenario::ReportLiability
                | Scenario::ReportCampaign
                | Scenario::ReportActivityDaily
                | Scenario::ReportActivityMonth
                | Scenario::ReportActivity
        )
    }
}

/// Draws an operation from a weighted table.
fn pick(mix: &[(Op, u32)], rng: &mut impl Rng) -> Op {
    let total: u32 = mix.iter().map(|(_, weight)| weight).sum();
    let mut draw = rng.random_range(0..total);
    for &(op, weight) in mix {
        if draw < weight {
            return op;
        }
        draw -= weight;
    }
    unreachable!("a draw below the total weight lands on a row")
}

/// The seeded members: `m_bench_<n>` by bulk SQL, or the ids the API gave (with --target).
#[derive(Debug)]
pub enum Members {
    Seeded { count: u64 },
    Listed(Vec<String>),
}

impl Members {
    fn count(&self) -> u64 {
        match self {
            Members::Seeded { count } => *count,
            Members::Listed(ids) => ids.len() as u64,
        }
    }

    /// The member_id of member `index` (0-based).
    fn id(&self, index: u64) -> String {
        match self {
            Members::Seeded { .. } => format!("m_bench_{}", index + 1),
            Members::Listed(ids) => ids[index as usize].clone(),
        }
    }
}

/// The API keys the scenarios call with.
#[derive(Debug, Clone)]
pub struct Keys {
    pub admin: String,
    /// A `register` key bound to [`STORE_ID`].
    pub register: String,
    /// A `checkout` key (EC channel).
    pub checkout: String,
    /// An `app` key (location reports).
    pub app: String,
}

/// The reports a report scenario asks for.
#[derive(Debug, Clone)]
pub struct ReportTargets {
    /// The campaign of `report-campaign`.
    pub campaign_id: &'static str,
}

/// One HTTP/2 connection, with a client per role over it.
#[derive(Debug, Clone)]
pub struct Lane {
    register: CheckoutServiceClient<Authed>,
    ec: CheckoutServiceClient<Authed>,
    ledger: LedgerServiceClient<Authed>,
    health: HealthClient<Channel>,
    app: EngagementServiceClient<Authed>,
    /// As the admin key (reports need `ReadReports`).
    reports: ReportServiceClient<Authed>,
    /// TrackEvent, as the app key.
    events: EventServiceClient<Authed>,
    /// The same connection for Connect calls (`sale-json`): the server's base URL, the raw
    /// channel and the register key's `authorization` value.
    connect: (String, Channel, http::HeaderValue),
}

impl Lane {
    async fn connect(endpoint: &str, keys: &Keys) -> Result<Lane, BenchError> {
        let register = Client::connect(endpoint, &keys.register).await?;
        let checkout = register.with_key(&keys.checkout);
        let authorization = http::HeaderValue::from_str(&format!("Bearer {}", keys.register))
            .map_err(|e| BenchError::Usage(format!("the register key: {e}")))?;
        Ok(Lane {
            connect: (
                endpoint.trim_end_matches('/').to_string(),
                register.channel(),
                authorization,
            ),
            app: register.with_key(&keys.app).engagement(),
            events: register.with_key(&keys.app).events(),
            reports: register.with_key(&keys.admin).reports(),
            ec: checkout.checkout(),
            ledger: register.ledger(),
            health: HealthClient::new(register.channel()),
            register: register.checkout(),
        })
    }

    /// `channels` connections for the workers to share.
    pub async fn connect_all(
        endpoint: &str,
        keys: &Keys,
        channels: usize,
    ) -> Result<Vec<Lane>, BenchError> {
        let mut lanes = Vec::with_capacity(channels);
        for _ in 0..channels {
            lanes.push(Lane::connect(endpoint, keys).await?);
        }
        Ok(lanes)
    }
}

/// Unique ids per request: a nonce per scenario run, the task, and a per-task counter.
#[derive(Debug)]
struct Ids {
    nonce: String,
    task: usize,
    seq: u64,
}

impl Ids {
    fn next(&mut self) -> String {
        self.seq += 1;
        format!("{}-{}-{}", self.nonce, self.task, self.seq)
    }
}

/// One request loop of a gRPC scenario.
#[derive(Debug)]
pub struct GrpcWorker {
    lane: Lane,
    mix: &'static [(Op, u32)],
    members: Arc<Members>,
    reports: ReportTargets,
    rng: StdRng,
    ids: Ids,
}

impl Worker for GrpcWorker {
    async fn op(&mut self) -> Result<(), String> {
        let op = pick(self.mix, &mut self.rng);
        self.send(op).await.map_err(|status| error_key(&status))
    }
}

impl GrpcWorker {
    pub fn new(
        lane: Lane,
        scenario: Scenario,
        members: Arc<Members>,
        reports: ReportTargets,
        nonce: &str,
        task: usize,
    ) -> Self {
        GrpcWorker {
            lane,
            mix: scenario.mix(),
            members,
            reports,
            rng: StdRng::from_rng(&mut rand::rng()),
            ids: Ids {
                nonce: nonce.to_string(),
                task,
                seq: 0,
            },
        }
    }

    async fn send(&mut self, op: Op) -> Result<(), Status> {
        match op {
            Op::Health => self.health().await,
            Op::Sale => self.sale(None).await,
            Op::SaleJson => self.sale_json().await,
            Op::Hot => self.sale(Some(HOT_CODE)).await,
            Op::Checkout => self.checkout().await,
            Op::Balance => self.balance().await,
            Op::Location => self.location().await,
            Op::Liability => self.liability().await.map(drop),
            Op::CampaignStats => self.campaign_stats().await.map(drop),
            Op::Activity(ask) => self.activity(ask).await.map(drop),
            Op::TrackEvent => self.track_event().await,
        }
    }

    /// What a report scenario's answer holds, to print once before it runs (so that a latency
    /// is read next to the size of what was summed); None for other scenarios.
    pub async fn describe_report(&mut self, scenario: Scenario) -> Result<Option<String>, Status> {
        Ok(match scenario.mix() {
            [(Op::Liability, _)] => {
                let liability = self.liability().await?;
                Some(format!(
                    "GetLiability: {} points outstanding, {} expiry months",
                    liability.outstanding_points,
                    liability.by_expiry_month.len()
                ))
            }
            [(Op::CampaignStats, _)] => {
                let stats = self.campaign_stats().await?;
                Some(format!(
                    "GetCampaignStats {}: {} issued, {} redeemed, {} expired, {} active, \
                     median {:?} s to redemption",
                    self.reports.campaign_id,
                    stats.issued,
                    stats.redeemed,
                    stats.expired,
                    stats.active,
                    stats.median_seconds_to_redemption
                ))
            }
            [(Op::Activity(ask), _)] => {
                let rows = self.activity(*ask).await?.rows;
                let earned: i64 = rows.iter().map(|row| row.points_earned).sum();
                let visits: i64 = rows.iter().map(|row| row.visits).sum();
                Some(format!(
                    "GetActivity, {ask:?}: {} rows, {earned} points earned, {visits} visits",
                    rows.len()
                ))
            }
            _ => None,
        })
    }

    fn member(&mut self) -> proto::MemberRef {
        let index = self.rng.random_range(0..self.members.count());
        proto::MemberRef {
            r#ref: Some(Ref::MemberId(self.members.id(index))),
        }
    }

    fn basket(&mut self) -> proto::Basket {
        let amount_yen = self.rng.random_range(BASKET_YEN);
        proto::Basket {
            lines: vec![proto::LineItem {
                line_id: "1".into(),
                sku: "BENCH-SKU".into(),
                category: "bench".into(),
                quantity: 1,
                amount: amount_yen.to_string(),
            }],
        }
    }

    async fn health(&mut self) -> Result<(), Status> {
        let request = HealthCheckRequest {
            service: String::new(),
        };
        self.lane.health.check(request).await?;
        Ok(())
    }

    /// A register sale at [`STORE_ID`] that redeems and earns in one ledger transaction.
    async fn sale(&mut self, coupon_code: Option<&str>) -> Result<(), Status> {
        let id = self.ids.next();
        let request = proto::RecordSaleRequest {
            request_id: format!("sale-{id}"),
            order_id: format!("bench-sale-{id}"),
            member: Some(self.member()),
            channel: proto::Channel::Store as i32,
            store_id: STORE_ID.into(),
            register_id: format!("r{}", self.ids.task),
            basket: Some(self.basket()),
            points_to_redeem: self.rng.random_range(REDEEM_POINTS),
            coupon_codes: coupon_code.map(str::to_string).into_iter().collect(),
            receipt_no: id,
            ..Default::default()
        };
        self.lane.register.record_sale(request).await?;
        Ok(())
    }

    /// The register sale of [`Self::sale`] as a Connect JSON call, answered in JSON and parsed,
    /// as a web client would; a Connect error counts by its code and ErrorInfo reason.
    async fn sale_json(&mut self) -> Result<(), Status> {
        use http_body_util::BodyExt;
        let id = self.ids.next();
        let member = self.member();
        let Some(Ref::MemberId(member_id)) = member.r#ref else {
            unreachable!("the bench names members by id")
        };
        let amount_yen = self.rng.random_range(BASKET_YEN);
        let body = serde_json::json!({
            "requestId": format!("sale-{id}"),
            "orderId": format!("bench-sale-{id}"),
            "member": {"memberId": member_id},
            "channel": "CHANNEL_STORE",
            "storeId": STORE_ID,
            "registerId": format!("r{}", self.ids.task),
            "basket": {"lines": [{"lineId": "1", "sku": "BENCH-SKU", "category": "bench",
                                  "quantity": 1, "amount": amount_yen.to_string()}]},
            "pointsToRedeem": self.rng.random_range(REDEEM_POINTS).to_string(),
            "receiptNo": id,
        });
        let (base, channel, authorization) = &self.lane.connect;
        let request = http::Request::builder()
            .method(http::Method::POST)
            .uri(format!("{base}/omo.v1.CheckoutService/RecordSale"))
            .header(http::header::CONTENT_TYPE, "application/json")
            .header("connect-protocol-version", "1")
            .header(http::header::AUTHORIZATION, authorization.clone())
            .body(tonic::body::Body::new(http_body_util::Full::new(
                bytes::Bytes::from(body.to_string()),
            )))
            .map_err(|e| Status::internal(e.to_string()))?;
        let response = tower::ServiceExt::oneshot(channel.clone(), request)
            .await
            .map_err(|e| Status::unavailable(e.to_string()))?;
        let ok = response.status().is_success();
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|e| Status::unavailable(e.to_string()))?
            .to_bytes();
        let json: serde_json::Value =
            serde_json::from_slice(&body).map_err(|e| Status::internal(e.to_string()))?;
        if ok && json.get("order").is_some() {
            return Ok(());
        }
        Err(connect_status(&json))
    }

    /// EC checkout: Authorize (holding points), then Capture; one operation.
    async fn checkout(&mut self) -> Result<(), Status> {
        let id = self.ids.next();
        let order_id = format!("bench-ec-{id}");
        let authorize = proto::AuthorizeRequest {
            request_id: format!("auth-{id}"),
            order_id: order_id.clone(),
            member: Some(self.member()),
            channel: proto::Channel::Ec as i32,
            basket: Some(self.basket()),
            points_to_redeem: self.rng.random_range(REDEEM_POINTS),
            ..Default::default()
        };
        self.lane.ec.authorize(authorize).await?;
        let capture = proto::CaptureRequest {
            request_id: format!("cap-{id}"),
            order_id,
        };
        self.lane.ec.capture(capture).await?;
        Ok(())
    }

    /// A location report of a member near a seeded store of its own (so no report is too fast
    /// from the previous one): inside it (an entry, or a dwell as the member reports again), or
    /// 300 m away (the visit ends).
    async fn location(&mut self) -> Result<(), Status> {
        let index = self.rng.random_range(0..self.members.count());
        let (latitude, longitude) = geo_store_location(index % GEO_STORES + 1);
        let north_m = if self.rng.random_range(0..100) < INSIDE_PERCENT {
            self.rng.random_range(0.0..30.0)
        } else {
            300.0
        };
        let request = proto::ReportLocationRequest {
            request_id: format!("loc-{}", self.ids.next()),
            member: Some(proto::MemberRef {
                r#ref: Some(Ref::MemberId(self.members.id(index))),
            }),
            latitude: latitude + north_m / M_PER_DEG_LAT,
            longitude,
            accuracy_m: 10.0,
            observed_at: Some(SystemTime::now().into()),
            device_id: String::new(),
        };
        self.lane.app.report_location(request).await?;
        Ok(())
    }

    /// A member's `page_view` (the setup's EVENT rule gives a point for it).
    async fn track_event(&mut self) -> Result<(), Status> {
        let request = proto::TrackEventRequest {
            request_id: format!("ev-{}", self.ids.next()),
            member: Some(self.member()),
            event_type: BENCH_EVENT_TYPE.into(),
            attributes: [("page".to_string(), "home".to_string())].into(),
            ..Default::default()
        };
        self.lane.events.track_event(request).await?;
        Ok(())
    }

    /// The liability now (as_of unset).
    async fn liability(&mut self) -> Result<proto::GetLiabilityResponse, Status> {
        let request = proto::GetLiabilityRequest { as_of: None };
        Ok(self.lane.reports.get_liability(request).await?.into_inner())
    }

    async fn campaign_stats(&mut self) -> Result<proto::GetCampaignStatsResponse, Status> {
        let request = proto::GetCampaignStatsRequest {
            campaign_id: self.reports.campaign_id.into(),
        };
        Ok(self
            .lane
            .reports
            .get_campaign_stats(request)
            .await?
            .into_inner())
    }

    async fn activity(&mut self, ask: ActivityAsk) -> Result<proto::GetActivityResponse, Status> {
        let end = SystemTime::now();
        let (span, store_id, group_by_day) = match ask {
            ActivityAsk::Year => (ACTIVITY_SPAN, "", false),
            ActivityAsk::StoreYearByDay => (ACTIVITY_SPAN, DAILY_STORE, true),
            ActivityAsk::MonthByDay => (Duration::from_secs(30 * 24 * 3600), "", true),
        };
        let request = proto::GetActivityRequest {
            start_time: Some((end - span).into()),
            end_time: Some(end.into()),
            group_by_day,
            store_id: store_id.into(),
        };
        Ok(self.lane.reports.get_activity(request).await?.into_inner())
    }

    async fn balance(&mut self) -> Result<(), Status> {
        let request = proto::GetBalanceRequest {
            member: Some(self.member()),
        };
        self.lane.ledger.get_balance(request).await?;
        Ok(())
    }
}

/// `FAILED_PRECONDITION/INSUFFICIENT_POINTS`, or the bare code when there is no reason.
pub fn error_key(status: &Status) -> String {
    let code = code_name(status.code());
    match status.get_details_error_info() {
        Some(info) if !info.reason.is_empty() => format!("{code}/{}", info.reason),
        _ => code,
    }
}

/// A Connect error JSON as a `Status` with its ErrorInfo reason (from the detail's debug JSON),
/// so that [`error_key`] counts it as it counts the gRPC one.
fn connect_status(error: &serde_json::Value) -> Status {
    let name = error["code"].as_str().unwrap_or("unknown");
    let code = (0..=16)
        .map(Code::from_i32)
        .find(|code| code_name(*code).eq_ignore_ascii_case(name))
        .unwrap_or(if name == "canceled" {
            Code::Cancelled
        } else {
            Code::Unknown
        });
    let message = error["message"].as_str().unwrap_or_default();
    let reason = error["details"]
        .as_array()
        .and_then(|details| {
            details
                .iter()
                .find(|d| d["type"] == "google.rpc.ErrorInfo")
                .and_then(|d| d["debug"]["reason"].as_str())
        })
        .unwrap_or_default();
    if reason.is_empty() {
        return Status::new(code, message);
    }
    let details =
        tonic_types::ErrorDetails::with_error_info(reason, "omo", std::collections::HashMap::new());
    Status::with_error_details(code, message, details)
}

/// `FailedPrecondition` → `FAILED_PRECONDITION`, as gRPC names its codes.
fn code_name(code: Code) -> String {
    let mut name = String::new();
    for (i, c) in format!("{code:?}").chars().enumerate() {
        if c.is_ascii_uppercase() && i > 0 {
            name.push('_');
        }
        name.push(c.to_ascii_uppercase());
    }
    name
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_named_as_grpc_names_them() {
        assert_eq!(code_name(Code::FailedPrecondition), "FAILED_PRECONDITION");
        assert_eq!(code_name(Code::Ok), "OK");
        assert_eq!(error_key(&Status::unavailable("down")), "UNAVAILABLE");
    }

    #[test]
    fn the_mix_draws_every_row_by_weight() {
        let mut rng = StdRng::seed_from_u64(7);
        let draws = 10_000;
        let balances = (0..draws)
            .filter(|_| pick(MIXED, &mut rng) == Op::Balance)
            .count();
        assert!((5_500..6_500).contains(&balances), "{balances}");
    }

    #[test]
    fn a_connect_error_counts_by_code_and_reason() {
        let error = serde_json::json!({
            "code": "failed_precondition",
            "message": "not enough",
            "details": [{"type": "google.rpc.ErrorInfo", "value": "", "debug": {"reason": "INSUFFICIENT_POINTS"}}],
        });
        assert_eq!(
            error_key(&connect_status(&error)),
            "FAILED_PRECONDITION/INSUFFICIENT_POINTS"
        );
        assert_eq!(
            error_key(&connect_status(&serde_json::json!({"code": "unavailable"}))),
            "UNAVAILABLE"
        );
    }

    #[test]
    fn scenarios_parse_by_name() {
        for scenario in Scenario::ALL {
            assert_eq!(Scenario::parse(scenario.name()), Ok(scenario));
        }
        assert!(Scenario::parse("nope").is_err());
    }
}
