//! The read-only operator dashboard (`omo serve --http ADDR`, issue #11): the reports of
//! `engine::reports` and the receipt review queue as one server-rendered page with inline SVG
//! charts. It calls the engine in process with the caller its admin key authenticates to, so
//! the role check and the clock are the engine's own, exactly as over gRPC.
//!
//! Who gets in (issue #21; README, "Dashboard"):
//! - Logging in with an admin key opens a server-side session (`engine::sessions`, stored
//!   hashed in the database, so every replica knows it). The cookie carries only the random
//!   session id: `HttpOnly` (no script reads it), `SameSite=Strict` (no other site sends it),
//!   and over TLS `Secure` with the `__Host-` prefix (no plain-HTTP page or subdomain sets it).
//!   Logout ends the session; so does an hour idle, twelve hours, or its key being revoked.
//! - Every form carries a CSRF token (the session's; before login, the login cookie's, checked
//!   as a double submit) and every POST without the right one gets 403 and does nothing.
//! - Failed logins are logged (never with the key) and throttled per client (`throttle`).
//! - Scripts may send `authorization: Bearer <admin key>` to read the page; that needs no
//!   session and shows no forms.
//!
//! The key is never written into a page, a cookie or a log.

mod throttle;
mod tls;

use std::{
    collections::BTreeMap,
    net::{IpAddr, SocketAddr},
    sync::Arc,
    time::{Duration, Instant},
};

use axum::{
    Form, Router,
    extract::{ConnectInfo, State, connect_info::Connected},
    http::{HeaderMap, HeaderValue, StatusCode, header},
    middleware,
    response::{AppendHeaders, IntoResponse, Redirect, Response},
    routing::{get, post},
    serve::{IncomingStream, Listener},
};
use chrono::TimeDelta;
use maud::{DOCTYPE, Markup, PreEscaped, html};
use tokio::{net::TcpListener, sync::oneshot};

use self::throttle::LoginThrottle;
use crate::{
    config::TlsArgs,
    domain::{
        auth::{Caller, Role},
        coupon::Campaign,
        receipt::{ReceiptQuery, ReceiptRecord, ReceiptStatus},
        report::{ActivityRow, CampaignStats, Liability},
        rules::Rule,
        session::{random_token, same_token, well_formed_token},
    },
    engine::{Engine, EngineError},
};

/// The session cookie: the session id, nothing else.
const SESSION_COOKIE: &str = "omo_session";
/// The login form's CSRF token, before there is a session.
const LOGIN_COOKIE: &str = "omo_login";
/// Longest key accepted (ours are 36 characters), as at the gRPC edge.
const MAX_KEY_LEN: usize = 256;
/// Days of activity charted.
const ACTIVITY_DAYS: i64 = 30;
/// Bounds on what one page load reads: campaigns charted and receipts listed.
const MAX_CAMPAIGNS: usize = 50;
const MAX_RECEIPTS: usize = 50;
const MAX_RULES: usize = 100;

/// What every request handler shares.
#[derive(Clone)]
struct Dashboard {
    engine: Arc<Engine>,
    /// Served over TLS: cookies are `Secure` and carry the `__Host-` prefix.
    tls: bool,
    throttle: Arc<LoginThrottle>,
}

/// Binds `addr` and serves the dashboard, over TLS when `tls` names a certificate, until the
/// returned sender is used or dropped.
pub async fn serve(
    engine: Arc<Engine>,
    addr: SocketAddr,
    tls: &TlsArgs,
) -> std::io::Result<(SocketAddr, oneshot::Sender<()>)> {
    let acceptor = tls::acceptor(tls)?;
    let listener = TcpListener::bind(addr).await?;
    let local_addr = listener.local_addr()?;
    let (stop, stopped) = oneshot::channel::<()>();
    let router = Router::new()
        .route("/", get(dashboard))
        .route("/login", get(login_page).post(login))
        .route("/logout", post(logout))
        .route("/receipts/review", post(review_receipt))
        .route("/rules/enabled", post(set_rule_enabled))
        .route("/campaigns/end", post(end_campaign))
        .route("/coupons/revoke", post(revoke_coupon))
        .layer(middleware::map_response(harden))
        .with_state(Dashboard {
            engine,
            tls: acceptor.is_some(),
            throttle: Arc::default(),
        });
    match acceptor {
        Some(acceptor) => spawn_server(tls::TlsListener::new(listener, acceptor)?, router, stopped),
        None => spawn_server(listener, router, stopped),
    }
    Ok((local_addr, stop))
}

fn spawn_server<L>(listener: L, router: Router, stopped: oneshot::Receiver<()>)
where
    L: Listener<Addr = SocketAddr>,
    Peer: for<'a> Connected<IncomingStream<'a, L>>,
{
    tokio::spawn(async move {
        let service = router.into_make_service_with_connect_info::<Peer>();
        let served = axum::serve(listener, service)
            .with_graceful_shutdown(async {
                let _ = stopped.await;
            })
            .await;
        if let Err(error) = served {
            tracing::error!(%error, "dashboard server failed");
        }
    });
}

/// The client's address (the TCP peer's), under which its failed logins are counted.
#[derive(Debug, Clone, Copy)]
struct Peer(IpAddr);

impl Connected<IncomingStream<'_, TcpListener>> for Peer {
    fn connect_info(stream: IncomingStream<'_, TcpListener>) -> Self {
        Peer(stream.remote_addr().ip())
    }
}

impl Connected<IncomingStream<'_, tls::TlsListener>> for Peer {
    fn connect_info(stream: IncomingStream<'_, tls::TlsListener>) -> Self {
        Peer(stream.remote_addr().ip())
    }
}

/// Headers every response gets: pages with tokens and figures are not cached, nor framed by
/// another site (which could trick a click on a form).
async fn harden(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    response
}

/// Why a request gets no dashboard.
enum Refusal {
    /// No key or session, or one the engine does not know (any more): log in.
    Login,
    /// A valid key that is not an admin's.
    Forbidden,
    /// A POST without its form's CSRF token.
    Csrf,
    /// Over the key's `--rate-limit-admin`, as over gRPC.
    RateLimited,
    Internal(EngineError),
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        match self {
            Refusal::Login => Redirect::to("/login").into_response(),
            Refusal::Forbidden => (
                StatusCode::FORBIDDEN,
                page(
                    "Forbidden",
                    html! { p { "The dashboard is for admin keys." } },
                ),
            )
                .into_response(),
            Refusal::Csrf => (
                StatusCode::FORBIDDEN,
                page(
                    "Forbidden",
                    html! { p { "This form did not come from this dashboard session. "
                    a href="/" { "Reload the dashboard" } " and try again." } },
                ),
            )
                .into_response(),
            Refusal::RateLimited => (
                StatusCode::TOO_MANY_REQUESTS,
                page(
                    "Too many requests",
                    html! { p { "Try again in a moment." } },
                ),
            )
                .into_response(),
            Refusal::Internal(error) => {
                tracing::error!(%error, "dashboard request failed");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    page("Error", html! { p { "The reports could not be read." } }),
                )
                    .into_response()
            }
        }
    }
}

fn well_formed(key: &str) -> bool {
    !key.is_empty()
        && key.len() <= MAX_KEY_LEN
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

/// The key of an `authorization: Bearer` header.
fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.trim().split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, key)| key.trim())
        .filter(|key| well_formed(key))
}

/// The value of cookie `name` when it is one of our random tokens.
fn token_cookie<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(cookie, _)| *cookie == name)
        .map(|(_, value)| value)
        .filter(|value| well_formed_token(value))
}

/// The admin caller `key` authenticates to, through the engine's own key check.
async fn admin(engine: &Engine, key: &str) -> Result<Caller, Refusal> {
    match engine.authenticate(key).await {
        Ok(Some(caller)) if caller.role == Role::Admin => {
            engine.admit(&caller).map_err(|_| Refusal::RateLimited)?;
            Ok(caller)
        }
        Ok(Some(_)) => Err(Refusal::Forbidden),
        Ok(None) => Err(Refusal::Login),
        Err(error) => Err(Refusal::Internal(error)),
    }
}

/// Who a request comes from, and the CSRF token its forms carry (none for a bearer key).
struct Access {
    caller: Caller,
    csrf_token: Option<String>,
}

impl Dashboard {
    /// A cookie's name: over TLS with the `__Host-` prefix, which browsers accept only from a
    /// secure origin, for the whole host (no `Domain`), `Path=/`: a plain-HTTP page or a
    /// sibling subdomain cannot plant one.
    fn cookie_name(&self, name: &str) -> String {
        if self.tls {
            format!("__Host-{name}")
        } else {
            name.to_string()
        }
    }

    /// A `Set-Cookie` value: the browser's session only (no `Max-Age`; the server decides
    /// when a session ends), or removal when `value` is None.
    fn cookie(&self, name: &str, value: Option<&str>) -> String {
        let secure = if self.tls { "; Secure" } else { "" };
        let removal = if value.is_none() { "; Max-Age=0" } else { "" };
        format!(
            "{}={}; HttpOnly; SameSite=Strict; Path=/{secure}{removal}",
            self.cookie_name(name),
            value.unwrap_or_default()
        )
    }

    /// The request's caller: by a bearer key, else by its session cookie.
    async fn access(&self, headers: &HeaderMap) -> Result<Access, Refusal> {
        if let Some(key) = bearer(headers) {
            let caller = admin(&self.engine, key).await?;
            return Ok(Access {
                caller,
                csrf_token: None,
            });
        }
        let session_id = token_cookie(headers, &self.cookie_name(SESSION_COOKIE));
        let session = match session_id {
            Some(session_id) => self.engine.session(session_id).await,
            None => Ok(None),
        };
        let live = session.map_err(Refusal::Internal)?.ok_or(Refusal::Login)?;
        self.engine
            .admit(&live.caller)
            .map_err(|_| Refusal::RateLimited)?;
        Ok(Access {
            caller: live.caller,
            csrf_token: Some(live.csrf_token),
        })
    }
}

#[derive(serde::Deserialize)]
struct LoginForm {
    #[serde(default)]
    key: String,
    #[serde(default)]
    csrf: String,
}

/// A form whose only field is its CSRF token (logout).
#[derive(serde::Deserialize)]
struct TokenForm {
    #[serde(default)]
    csrf: String,
}

/// The login form, with the token of the login cookie (set here when the browser has none).
async fn login_page(State(dash): State<Dashboard>, headers: HeaderMap) -> Response {
    let cookie_name = dash.cookie_name(LOGIN_COOKIE);
    let token = token_cookie(&headers, &cookie_name).map_or_else(random_token, str::to_string);
    let cookie = dash.cookie(LOGIN_COOKIE, Some(&token));
    (
        AppendHeaders([(header::SET_COOKIE, cookie)]),
        login_markup(&token, false),
    )
        .into_response()
}

/// Checks, in this order: the client is not blocked (429), the form's token is the login
/// cookie's (403), the key is an admin's (401, counted as a failure); then opens a session.
async fn login(
    State(dash): State<Dashboard>,
    ConnectInfo(Peer(client)): ConnectInfo<Peer>,
    headers: HeaderMap,
    Form(form): Form<LoginForm>,
) -> Response {
    if let Some(wait) = dash.throttle.blocked(client, Instant::now()) {
        return too_many_logins(wait);
    }
    let Some(token) = token_cookie(&headers, &dash.cookie_name(LOGIN_COOKIE))
        .filter(|token| same_token(token, &form.csrf))
    else {
        return Refusal::Csrf.into_response();
    };
    let key = form.key.trim();
    let verdict = if well_formed(key) {
        admin(&dash.engine, key).await
    } else {
        Err(Refusal::Login)
    };
    let caller = match verdict {
        Ok(caller) => caller,
        // A valid key of another role fails like an unknown one: the form tells a guesser
        // nothing about which keys exist.
        Err(Refusal::Login | Refusal::Forbidden) => {
            let blocked = dash.throttle.failed(client, Instant::now());
            tracing::warn!(%client, blocked, "dashboard login failed: not an admin key");
            return (StatusCode::UNAUTHORIZED, login_markup(token, true)).into_response();
        }
        Err(refusal) => return refusal.into_response(),
    };
    dash.throttle.succeeded(client);
    let opened = match dash.engine.open_session(&caller).await {
        Ok(opened) => opened,
        Err(error) => return Refusal::Internal(error).into_response(),
    };
    tracing::info!(%client, key_id = %caller.key_id, "dashboard session opened");
    let cookies = [
        (
            header::SET_COOKIE,
            dash.cookie(SESSION_COOKIE, Some(&opened.session_id)),
        ),
        (header::SET_COOKIE, dash.cookie(LOGIN_COOKIE, None)),
    ];
    (AppendHeaders(cookies), Redirect::to("/")).into_response()
}

fn too_many_logins(wait: Duration) -> Response {
    let retry_after = wait.as_secs().max(1).to_string();
    (
        StatusCode::TOO_MANY_REQUESTS,
        [(header::RETRY_AFTER, retry_after)],
        page(
            "Too many failed logins",
            html! { p { "Too many failed logins from this address; try again in a few minutes." } },
        ),
    )
        .into_response()
}

/// Ends the session (its form must carry the session's token) and removes the cookie.
async fn logout(
    State(dash): State<Dashboard>,
    headers: HeaderMap,
    Form(form): Form<TokenForm>,
) -> Response {
    if let Some(session_id) = token_cookie(&headers, &dash.cookie_name(SESSION_COOKIE)) {
        let live = match dash.engine.session(session_id).await {
            Ok(live) => live,
            Err(error) => return Refusal::Internal(error).into_response(),
        };
        if let Some(live) = live {
            if !same_token(&live.csrf_token, &form.csrf) {
                return Refusal::Csrf.into_response();
            }
            if let Err(error) = dash.engine.end_session(session_id).await {
                return Refusal::Internal(error).into_response();
            }
            tracing::info!(key_id = %live.caller.key_id, "dashboard session ended");
        }
    }
    let removal = dash.cookie(SESSION_COOKIE, None);
    (
        AppendHeaders([(header::SET_COOKIE, removal)]),
        Redirect::to("/login"),
    )
        .into_response()
}

#[derive(serde::Deserialize)]
struct ReviewForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    receipt_id: String,
    #[serde(default)]
    approve: bool,
}

#[derive(serde::Deserialize)]
struct RuleEnabledForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    rule_id: String,
    #[serde(default)]
    enabled: bool,
    /// The rule's `updated_at` (µs) the page showed: part of the request id, so that a double
    /// submit of one form is one change, while a later Disable after an Enable is a new one.
    #[serde(default)]
    seen: i64,
}

/// A form's caller: only a session's, and only with the session's CSRF token (a bearer-key
/// reader gets no forms, and a POST from elsewhere carries no token).
async fn form_caller(dash: &Dashboard, headers: &HeaderMap, csrf: &str) -> Result<Caller, Refusal> {
    let access = dash.access(headers).await?;
    match access.csrf_token {
        Some(token) if same_token(&token, csrf) => Ok(access.caller),
        _ => Err(Refusal::Csrf),
    }
}

/// The request id of a dashboard action: derived from the form, so that a double submit (or a
/// reload that posts again) replays the first outcome instead of acting twice.
fn form_request_id(action: &str, parts: &[&str]) -> String {
    let digest = crate::domain::ids::sha256_hex(parts.join("\u{1f}").as_bytes());
    format!("dashboard-{action}-{}", &digest[..32])
}

/// Approve or reject a receipt in review: ReviewReceipt's own validation and engine command.
async fn review_receipt(
    State(dash): State<Dashboard>,
    headers: HeaderMap,
    Form(form): Form<ReviewForm>,
) -> Response {
    let caller = match form_caller(&dash, &headers, &form.csrf).await {
        Ok(caller) => caller,
        Err(refusal) => return refusal.into_response(),
    };
    let decision = if form.approve { "approve" } else { "reject" };
    let request = crate::proto::ReviewReceiptRequest {
        request_id: form_request_id("review", &[&form.receipt_id, decision]),
        receipt_id: form.receipt_id,
        approve: form.approve,
        note: "reviewed on the dashboard".into(),
    };
    let outcome = match crate::grpc::receipts::review_receipt_in(request) {
        Ok((request_id, command)) => dash
            .engine
            .execute(&caller, Some(&request_id), command)
            .await
            .map(drop)
            .map_err(ActionError::Engine),
        Err(status) => Err(ActionError::Invalid(status.message().to_string())),
    };
    acted(outcome, "/#receipts")
}

/// Disable or enable a rule: UpdateRule's own validation (mask `enabled`) and engine command.
async fn set_rule_enabled(
    State(dash): State<Dashboard>,
    headers: HeaderMap,
    Form(form): Form<RuleEnabledForm>,
) -> Response {
    let caller = match form_caller(&dash, &headers, &form.csrf).await {
        Ok(caller) => caller,
        Err(refusal) => return refusal.into_response(),
    };
    let target = if form.enabled { "enable" } else { "disable" };
    let request = crate::proto::UpdateRuleRequest {
        request_id: form_request_id("rule", &[&form.rule_id, target, &form.seen.to_string()]),
        rule: Some(crate::proto::Rule {
            rule_id: form.rule_id,
            enabled: Some(form.enabled),
            ..Default::default()
        }),
        update_mask: Some(prost_types::FieldMask {
            paths: vec!["enabled".into()],
        }),
    };
    let outcome = match crate::grpc::rule::update_rule_in(&dash.engine, request).await {
        Ok((request_id, patch)) => dash
            .engine
            .execute(
                &caller,
                request_id.as_deref(),
                crate::domain::command::RuleCommand::UpdateRule(patch),
            )
            .await
            .map(drop)
            .map_err(ActionError::Engine),
        Err(status) => Err(ActionError::Invalid(status.message().to_string())),
    };
    acted(outcome, "/#rules")
}

#[derive(serde::Deserialize)]
struct EndCampaignForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    campaign_id: String,
}

#[derive(serde::Deserialize)]
struct RevokeForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    code: String,
    #[serde(default)]
    reason: String,
}

/// End a campaign now: UpdateCampaign's own validation (mask `ends_at`) and engine command.
/// A campaign ends once, so its request id is the campaign's alone.
async fn end_campaign(
    State(dash): State<Dashboard>,
    headers: HeaderMap,
    Form(form): Form<EndCampaignForm>,
) -> Response {
    let caller = match form_caller(&dash, &headers, &form.csrf).await {
        Ok(caller) => caller,
        Err(refusal) => return refusal.into_response(),
    };
    let now = dash.engine.now();
    let request = crate::proto::UpdateCampaignRequest {
        request_id: form_request_id("end-campaign", &[&form.campaign_id]),
        campaign: Some(crate::proto::Campaign {
            campaign_id: form.campaign_id,
            ends_at: Some(prost_types::Timestamp {
                seconds: now.timestamp(),
                nanos: 0,
            }),
            ..Default::default()
        }),
        update_mask: Some(prost_types::FieldMask {
            paths: vec!["ends_at".into()],
        }),
    };
    let outcome = match crate::grpc::coupon::update_campaign_command(&request) {
        Ok((request_id, command)) => dash
            .engine
            .execute(&caller, request_id.as_deref(), command)
            .await
            .map(drop)
            .map_err(ActionError::Engine),
        Err(status) => Err(ActionError::Invalid(status.message().to_string())),
    };
    acted(outcome, "/#campaigns")
}

/// Revoke a coupon by its code: RevokeCoupon's own validation and engine command.
async fn revoke_coupon(
    State(dash): State<Dashboard>,
    headers: HeaderMap,
    Form(form): Form<RevokeForm>,
) -> Response {
    let caller = match form_caller(&dash, &headers, &form.csrf).await {
        Ok(caller) => caller,
        Err(refusal) => return refusal.into_response(),
    };
    let code = form.code.trim().to_ascii_uppercase();
    let request = crate::proto::RevokeCouponRequest {
        request_id: form_request_id("revoke", &[&code]),
        code,
        reason: form.reason,
    };
    let outcome = match crate::grpc::coupon::revoke_command(&request) {
        Ok(command) => dash
            .engine
            .execute(&caller, Some(&request.request_id), command)
            .await
            .map(drop)
            .map_err(ActionError::Engine),
        Err(status) => Err(ActionError::Invalid(status.message().to_string())),
    };
    acted(outcome, "/#campaigns")
}

enum ActionError {
    Invalid(String),
    Engine(EngineError),
}

/// Back to the page after an action (303: the browser GETs it); a refusal is shown with its
/// reason, as a gRPC client would get it; an internal error is logged, not shown.
fn acted(outcome: Result<(), ActionError>, back: &str) -> Response {
    let (status, message) = match outcome {
        Ok(()) => return Redirect::to(back).into_response(),
        Err(ActionError::Invalid(message)) => (StatusCode::BAD_REQUEST, message),
        Err(ActionError::Engine(EngineError::Domain(error))) => {
            (StatusCode::CONFLICT, format!("{}: {error}", error.reason()))
        }
        Err(ActionError::Engine(error)) => return Refusal::Internal(error).into_response(),
    };
    (
        status,
        page(
            "Not done",
            html! { p.error { (message) } p { a href=(back) { "Back to the dashboard" } } },
        ),
    )
        .into_response()
}

/// Everything the page shows, read with the caller's rights.
struct Reports {
    liability: Liability,
    activity: Vec<ActivityRow>,
    campaigns: Vec<(Campaign, CampaignStats)>,
    receipts: Vec<ReceiptRecord>,
    rules: Vec<Rule>,
}

async fn read_reports(engine: &Engine, caller: &Caller) -> Result<Reports, EngineError> {
    let now = engine.now();
    let liability = engine.get_liability(caller, None).await?;
    let range = (now - TimeDelta::days(ACTIVITY_DAYS), now);
    let activity = engine.get_activity(caller, range, None, true).await?;
    let mut campaigns = Vec::new();
    for campaign in engine
        .list_campaigns(caller, None, MAX_CAMPAIGNS)
        .await?
        .items
    {
        let stats = engine
            .get_campaign_stats(caller, &campaign.campaign_id)
            .await?;
        campaigns.push((campaign, stats));
    }
    let queue = ReceiptQuery::Status(ReceiptStatus::PendingReview);
    let receipts = engine
        .list_receipts(caller, &queue, None, MAX_RECEIPTS)
        .await?
        .items;
    let mut rules = engine.list_rules().await?;
    rules.truncate(MAX_RULES);
    Ok(Reports {
        liability,
        activity,
        campaigns,
        receipts,
        rules,
    })
}

async fn dashboard(State(dash): State<Dashboard>, headers: HeaderMap) -> Result<Markup, Refusal> {
    let access = dash.access(&headers).await?;
    let reports = read_reports(&dash.engine, &access.caller)
        .await
        .map_err(Refusal::Internal)?;
    Ok(page(
        "omo dashboard",
        html! {
            nav { a href="#liability" { "Liability" } a href="#activity" { "Activity" }
                  a href="#campaigns" { "Campaigns" } a href="#receipts" { "Receipts" }
                  a href="#rules" { "Rules" }
                  @if let Some(token) = &access.csrf_token { (logout_form(token)) } }
            (liability_section(&reports.liability))
            (activity_section(&reports.activity))
            (campaigns_section(&reports.campaigns, access.csrf_token.as_deref(), dash.engine.now()))
            (receipts_section(&reports.receipts, access.csrf_token.as_deref()))
            (rules_section(&reports.rules, access.csrf_token.as_deref()))
        },
    ))
}

fn liability_section(liability: &Liability) -> Markup {
    let bars: Vec<(String, i64)> = liability
        .by_expiry_month
        .iter()
        .map(|bucket| (bucket.month.to_string(), bucket.points))
        .collect();
    html! {
        section #liability {
            h2 { "Points liability" }
            div.cards {
                (card("Outstanding points", &liability.outstanding_points.to_string(), "outstanding-points"))
                (card("Value", &liability.outstanding_value.normalize().to_string(), "outstanding-value"))
                (card("Pending", &liability.pending_points.to_string(), "pending-points"))
                (card("Held", &liability.held_points.to_string(), "held-points"))
            }
            h3 { "Expiring by month" }
            (bar_chart(&bars, "expiry"))
        }
    }
}

fn card(label: &str, value: &str, id: &str) -> Markup {
    html! { div.card { span.label { (label) } strong id=(id) { (value) } } }
}

fn activity_section(rows: &[ActivityRow]) -> Markup {
    // Per day across channels and stores for the charts; per channel and store for the table.
    let mut earned: BTreeMap<String, i64> = BTreeMap::new();
    let mut redeemed: BTreeMap<String, i64> = BTreeMap::new();
    let mut by_place: BTreeMap<(String, String), (i64, i64, i64)> = BTreeMap::new();
    for row in rows {
        let day = row.key.day.map(|d| d.format("%m-%d").to_string());
        let day = day.unwrap_or_default();
        *earned.entry(day.clone()).or_default() += row.points_earned;
        *redeemed.entry(day).or_default() += row.points_redeemed;
        // Receipts are booked on the row of no channel at their store (report.proto).
        let channel = row
            .key
            .channel
            .map_or("receipts", |c| c.as_str())
            .to_string();
        let place = by_place
            .entry((channel, row.key.store_id.clone()))
            .or_default();
        place.0 += row.points_earned;
        place.1 += row.points_redeemed;
        place.2 += row.orders;
    }
    let earned: Vec<(String, i64)> = earned.into_iter().collect();
    let redeemed: Vec<(String, i64)> = redeemed.into_iter().collect();
    html! {
        section #activity {
            h2 { "Activity, last " (ACTIVITY_DAYS) " days" }
            h3 { "Points earned per day" }
            (bar_chart(&earned, "earned"))
            h3 { "Points redeemed per day" }
            (bar_chart(&redeemed, "redeemed"))
            h3 { "By channel and store" }
            div.scroll { table #activity-table {
                thead { tr { th { "Channel" } th { "Store" } th.n { "Earned" } th.n { "Redeemed" } th.n { "Orders" } } }
                tbody {
                    @for ((channel, store), (earned, redeemed, orders)) in &by_place {
                        tr { td { (channel) } td { (if store.is_empty() { "—" } else { store }) }
                             td.n { (earned) } td.n { (redeemed) } td.n { (orders) } }
                    }
                }
            } }
        }
    }
}

/// The campaigns; with a session (`csrf_token`), an open campaign has an End button and a form
/// revokes a coupon by its code.
fn campaigns_section(
    campaigns: &[(Campaign, CampaignStats)],
    csrf_token: Option<&str>,
    now: chrono::DateTime<chrono::Utc>,
) -> Markup {
    html! {
        section #campaigns {
            h2 { "Campaigns" }
            @if let Some(token) = csrf_token {
                form.revoke method="post" action="/coupons/revoke" {
                    input type="hidden" name="csrf" value=(token);
                    label { "Revoke coupon " input type="text" name="code" required placeholder="code"; }
                    label { " reason " input type="text" name="reason" placeholder="why"; }
                    button type="submit" { "Revoke" }
                }
            }
            @if campaigns.is_empty() { p.empty { "No campaigns yet." } }
            @for (campaign, stats) in campaigns {
                article.campaign data-campaign-id=(campaign.campaign_id) {
                    h3 { (campaign.name) " " small { (campaign.campaign_id) } }
                    @if let Some(token) = csrf_token.filter(|_| campaign.is_open(now)) {
                        form.end method="post" action="/campaigns/end" {
                            input type="hidden" name="csrf" value=(token);
                            input type="hidden" name="campaign_id" value=(campaign.campaign_id);
                            button type="submit" { "End now" }
                        }
                    }
                    (bar_chart(&[
                        ("issued".into(), stats.issued),
                        ("active".into(), stats.active),
                        ("redeemed".into(), stats.redeemed),
                        ("expired".into(), stats.expired),
                    ], "funnel"))
                    p { "Redemption rate " strong { (percent(stats.redemption_rate())) }
                        " · discount given " (stats.total_discount.normalize())
                        @if let Some(median) = stats.median_to_redemption {
                            " · median time to redemption " (duration(median))
                        } }
                    div.scroll { table {
                        thead { tr { th { "Issued by source" } th.n { "Coupons" } } }
                        tbody { @for (source, count) in &stats.issued_by_source {
                            tr { td { (source) } td.n { (count) } } } }
                    } }
                    @if !stats.variants.is_empty() { (ab_test(stats)) }
                }
            }
        }
    }
}

fn ab_test(stats: &CampaignStats) -> Markup {
    html! {
        h4 { "A/B test" }
        div.scroll { table.ab {
            thead { tr { th { "Variant" } th.n { "Issued" } th.n { "Redeemed" } th.n { "Rate" } } }
            tbody { @for variant in &stats.variants {
                tr { td { (variant.variant_id) } td.n { (variant.issued) } td.n { (variant.redeemed) }
                     td.n { (percent(variant.redemption_rate())) } } } }
        } }
        @match stats.first_two_compared() {
            Some(test) => p.verdict {
                "Difference " (percent(test.difference)) ", 95 % CI ["
                (percent(test.ci95_low)) ", " (percent(test.ci95_high)) "], p = "
                span.p { (format!("{:.4}", test.p_value)) }
                @if test.p_value < 0.05 { " — significant" } @else { " — not significant" }
            },
            None => p.verdict { "Not enough data for a test yet." },
        }
    }
}

/// The review queue; with a session (`csrf_token`), each receipt has Approve and Reject buttons
/// (a bearer-key reader gets no forms).
fn receipts_section(receipts: &[ReceiptRecord], csrf_token: Option<&str>) -> Markup {
    html! {
        section #receipts {
            h2 { "Receipts waiting for review" }
            @if receipts.is_empty() { p.empty { "The queue is empty." } } @else {
                div.scroll { table #receipt-queue {
                    thead { tr { th { "Submitted" } th { "Store" } th { "Receipt" } th.n { "Total" } th.n { "Points" }
                                 @if csrf_token.is_some() { th { "Review" } } } }
                    tbody { @for r in receipts {
                        tr data-receipt-id=(r.receipt_id) { td { (r.submitted_at.format("%Y-%m-%d %H:%M")) } td { (r.receipt.store_id) }
                             td { (r.receipt.receipt_no) } td.n { (r.receipt.total.amount()) } td.n { (r.points) }
                             @if let Some(token) = csrf_token { td.actions {
                                 (review_form(token, &r.receipt_id, true))
                                 (review_form(token, &r.receipt_id, false))
                             } } } } }
                } }
            }
        }
    }
}

fn review_form(csrf_token: &str, receipt_id: &str, approve: bool) -> Markup {
    let (class, label, value) = if approve {
        ("approve", "Approve", "true")
    } else {
        ("reject", "Reject", "false")
    };
    html! {
        form.(class) method="post" action="/receipts/review" {
            input type="hidden" name="csrf" value=(csrf_token);
            input type="hidden" name="receipt_id" value=(receipt_id);
            input type="hidden" name="approve" value=(value);
            button type="submit" { (label) }
        }
    }
}

/// The rules, each with a Disable (or Enable) button under a session.
fn rules_section(rules: &[Rule], csrf_token: Option<&str>) -> Markup {
    html! {
        section #rules {
            h2 { "Rules" }
            @if rules.is_empty() { p.empty { "No rules." } } @else {
                div.scroll { table #rule-list {
                    thead { tr { th { "Rule" } th { "Name" } th { "Trigger" } th { "State" }
                                 @if csrf_token.is_some() { th { "" } } } }
                    tbody { @for rule in rules {
                        tr data-rule-id=(rule.rule_id) { td { (rule.rule_id) } td { (rule.name) } td { (rule.trigger.as_str()) }
                             td.state { @if rule.enabled { "enabled" } @else { "disabled" } }
                             @if let Some(token) = csrf_token { td.actions {
                                 form.toggle method="post" action="/rules/enabled" {
                                     input type="hidden" name="csrf" value=(token);
                                     input type="hidden" name="rule_id" value=(rule.rule_id);
                                     input type="hidden" name="enabled" value=(!rule.enabled);
                                     input type="hidden" name="seen" value=(rule.updated_at.timestamp_micros());
                                     button type="submit" { @if rule.enabled { "Disable" } @else { "Enable" } }
                                 }
                             } } } } }
                } }
            }
        }
    }
}

fn percent(rate: f64) -> String {
    format!("{:.1} %", rate * 100.0)
}

fn duration(delta: TimeDelta) -> String {
    let minutes = delta.num_minutes();
    if minutes < 120 {
        format!("{minutes} min")
    } else if minutes < 48 * 60 {
        format!("{} h", minutes / 60)
    } else {
        format!("{} days", minutes / (24 * 60))
    }
}

/// A vertical bar chart that scales with its container (a viewBox, no fixed width); negative
/// values (a day of refunds) are drawn as empty bars with their figure.
fn bar_chart(bars: &[(String, i64)], class: &str) -> Markup {
    const WIDTH: f64 = 600.0;
    const HEIGHT: f64 = 180.0;
    const LABELS: f64 = 20.0;
    if bars.is_empty() {
        return html! { p.empty { "Nothing to chart yet." } };
    }
    let max = bars.iter().map(|(_, v)| *v).max().unwrap_or(0).max(1) as f64;
    let slot = WIDTH / bars.len() as f64;
    let label_every = (bars.len() / 10).max(1);
    html! {
        svg class=(format!("chart {class}")) viewBox=(format!("0 0 {WIDTH} {}", HEIGHT + LABELS)) role="img" {
            @for (i, (label, value)) in bars.iter().enumerate() {
                @let height = (*value).max(0) as f64 / max * (HEIGHT - 16.0);
                @let x = i as f64 * slot;
                rect x=(format!("{:.1}", x + slot * 0.15)) y=(format!("{:.1}", HEIGHT - height))
                    width=(format!("{:.1}", slot * 0.7)) height=(format!("{height:.1}")) {
                    title { (label) ": " (value) }
                }
                @if bars.len() <= 12 {
                    text.value x=(format!("{:.1}", x + slot / 2.0)) y=(format!("{:.1}", HEIGHT - height - 4.0)) { (value) }
                }
                @if i % label_every == 0 {
                    text.axis x=(format!("{:.1}", x + slot / 2.0)) y=(format!("{:.1}", HEIGHT + 15.0)) { (label) }
                }
            }
        }
    }
}

fn logout_form(csrf_token: &str) -> Markup {
    html! {
        form.logout method="post" action="/logout" {
            input type="hidden" name="csrf" value=(csrf_token);
            button type="submit" { "Log out" }
        }
    }
}

fn login_markup(csrf_token: &str, failed: bool) -> Markup {
    page(
        "omo dashboard — log in",
        html! {
            form.login method="post" action="/login" {
                input type="hidden" name="csrf" value=(csrf_token);
                label for="key" { "Admin API key" }
                input #key type="password" name="key" autocomplete="current-password" required;
                @if failed { p.error { "That key is not an admin key." } }
                button type="submit" { "Log in" }
            }
        },
    )
}

fn page(title: &str, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) }
                style { (PreEscaped(CSS)) }
            }
            body { header { h1 { (title) } } main { (body) } }
        }
    }
}

const CSS: &str = "
*{box-sizing:border-box}
body{margin:0;font:15px/1.45 system-ui,-apple-system,'Segoe UI',sans-serif;color:#1d2330;background:#f3f5f9}
header{background:#1f3a5f;color:#fff;padding:.8rem 1rem}
h1{margin:0;font-size:1.2rem}
main{max-width:1000px;margin:0 auto;padding:1rem}
nav{display:flex;flex-wrap:wrap;gap:.5rem 1rem;align-items:center;margin-bottom:1rem}
nav a{color:#1f3a5f;font-weight:600;text-decoration:none}
section,.login{background:#fff;border-radius:10px;box-shadow:0 1px 3px #0002;padding:1rem;margin-bottom:1rem}
h2{margin:.2rem 0 .8rem;font-size:1.1rem}
h3{font-size:.95rem;margin:1rem 0 .4rem;color:#44506a}
h3 small{color:#8891a5;font-weight:400}
.cards{display:grid;grid-template-columns:repeat(auto-fit,minmax(140px,1fr));gap:.6rem}
.card{background:#eef3fb;border-radius:8px;padding:.6rem .8rem}
.card .label{display:block;font-size:.8rem;color:#5b6780}
.card strong{font-size:1.4rem}
.chart{display:block;width:100%;height:auto;max-height:220px}
.chart rect{fill:#3d7dd8}
.chart.redeemed rect{fill:#e08a2e}
.chart.funnel rect{fill:#2e9e6a}
.chart text{font-size:11px;fill:#44506a;text-anchor:middle}
.scroll{overflow-x:auto}
table{border-collapse:collapse;width:100%;font-size:.9rem}
th,td{padding:.3rem .5rem;border-bottom:1px solid #e3e7ef;text-align:left}
.n{text-align:right;font-variant-numeric:tabular-nums}
.campaign{border-top:1px solid #e3e7ef;padding-top:.5rem}
.verdict .p{font-weight:700}
.empty{color:#8891a5}
.error{color:#b3261e}
.login{max-width:360px;margin:2rem auto;display:grid;gap:.6rem}
input,button{font:inherit;padding:.5rem .7rem;border-radius:6px;border:1px solid #b8c1d3}
button{background:#1f3a5f;color:#fff;border:0;cursor:pointer}
.logout{margin-left:auto}
.actions{display:flex;gap:.3rem}
.actions button{padding:.25rem .6rem}
.actions .reject button{background:#8a2b22}
";
