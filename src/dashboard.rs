//! The read-only operator dashboard (`omo serve --http ADDR`, issue #11): the reports of
//! `engine::reports` and the receipt review queue as one server-rendered page with inline SVG
//! charts. It calls the engine in process with the caller its admin key authenticates to, so
//! the role check and the clock are the engine's own, exactly as over gRPC.
//!
//! The key comes as `authorization: Bearer <key>` or, after the login form, in an HttpOnly,
//! SameSite=Strict cookie (no script can read it and no other site can send it). It is never
//! written into a page or a log.

use std::{collections::BTreeMap, net::SocketAddr, sync::Arc};

use axum::{
    Form, Router,
    extract::State,
    http::{HeaderMap, StatusCode, header},
    response::{IntoResponse, Redirect, Response},
    routing::get,
};
use chrono::TimeDelta;
use maud::{DOCTYPE, Markup, PreEscaped, html};
use tokio::{net::TcpListener, sync::oneshot};

use crate::{
    domain::{
        auth::{Caller, Role},
        coupon::Campaign,
        receipt::{ReceiptQuery, ReceiptRecord, ReceiptStatus},
        report::{ActivityRow, CampaignStats, Liability},
    },
    engine::{Engine, EngineError},
};

const COOKIE: &str = "omo_key";
/// Longest key accepted (ours are 36 characters), as at the gRPC edge.
const MAX_KEY_LEN: usize = 256;
/// Days of activity charted.
const ACTIVITY_DAYS: i64 = 30;
/// Bounds on what one page load reads: campaigns charted and receipts listed.
const MAX_CAMPAIGNS: usize = 50;
const MAX_RECEIPTS: usize = 50;

/// Binds `addr` and serves the dashboard until the returned sender is used or dropped.
pub async fn serve(
    engine: Arc<Engine>,
    addr: SocketAddr,
) -> std::io::Result<(SocketAddr, oneshot::Sender<()>)> {
    let listener = TcpListener::bind(addr).await?;
    let local_addr = listener.local_addr()?;
    let (stop, stopped) = oneshot::channel::<()>();
    let router = Router::new()
        .route("/", get(dashboard))
        .route("/login", get(login_page).post(login))
        .route("/logout", axum::routing::post(logout))
        .with_state(engine);
    tokio::spawn(async move {
        let served = axum::serve(listener, router)
            .with_graceful_shutdown(async {
                let _ = stopped.await;
            })
            .await;
        if let Err(error) = served {
            tracing::error!(%error, "dashboard server failed");
        }
    });
    Ok((local_addr, stop))
}

/// Why a request gets no dashboard.
enum Refusal {
    /// No key, or one the engine does not know: log in.
    Login,
    /// A valid key that is not an admin's.
    Forbidden,
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
                    html! { p { "The dashboard is for admin keys." } (logout_form()) },
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
                tracing::error!(%error, "dashboard read failed");
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
    // Also keeps the key safe to put in a Set-Cookie header as is.
    !key.is_empty()
        && key.len() <= MAX_KEY_LEN
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

/// The key of the request: the bearer header first, else the login cookie.
fn presented_key(headers: &HeaderMap) -> Option<&str> {
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.trim().split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, key)| key.trim());
    let cookie = || {
        headers
            .get_all(header::COOKIE)
            .iter()
            .filter_map(|value| value.to_str().ok())
            .flat_map(|value| value.split(';'))
            .filter_map(|pair| pair.trim().split_once('='))
            .find(|(name, _)| *name == COOKIE)
            .map(|(_, key)| key)
    };
    bearer.or_else(cookie).filter(|key| well_formed(key))
}

/// The admin caller `key` authenticates to, through the engine's own key check.
async fn admin(engine: &Engine, key: Option<&str>) -> Result<Caller, Refusal> {
    let key = key.ok_or(Refusal::Login)?;
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

#[derive(serde::Deserialize)]
struct LoginForm {
    key: String,
}

async fn login_page() -> Markup {
    login_markup(false)
}

async fn login(State(engine): State<Arc<Engine>>, Form(form): Form<LoginForm>) -> Response {
    let key = form.key.trim();
    if !well_formed(key) {
        return (StatusCode::UNAUTHORIZED, login_markup(true)).into_response();
    }
    match admin(&engine, Some(key)).await {
        Ok(_) => {
            let cookie = format!("{COOKIE}={key}; HttpOnly; SameSite=Strict; Path=/");
            ([(header::SET_COOKIE, cookie)], Redirect::to("/")).into_response()
        }
        Err(Refusal::Login) => (StatusCode::UNAUTHORIZED, login_markup(true)).into_response(),
        Err(refusal) => refusal.into_response(),
    }
}

async fn logout() -> Response {
    let expired = format!("{COOKIE}=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0");
    ([(header::SET_COOKIE, expired)], Redirect::to("/login")).into_response()
}

/// Everything the page shows, read with the caller's rights.
struct Reports {
    liability: Liability,
    activity: Vec<ActivityRow>,
    campaigns: Vec<(Campaign, CampaignStats)>,
    receipts: Vec<ReceiptRecord>,
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
    Ok(Reports {
        liability,
        activity,
        campaigns,
        receipts,
    })
}

async fn dashboard(
    State(engine): State<Arc<Engine>>,
    headers: HeaderMap,
) -> Result<Markup, Refusal> {
    let caller = admin(&engine, presented_key(&headers)).await?;
    let reports = read_reports(&engine, &caller)
        .await
        .map_err(Refusal::Internal)?;
    Ok(page(
        "omo dashboard",
        html! {
            nav { a href="#liability" { "Liability" } a href="#activity" { "Activity" }
                  a href="#campaigns" { "Campaigns" } a href="#receipts" { "Receipts" }
                  (logout_form()) }
            (liability_section(&reports.liability))
            (activity_section(&reports.activity))
            (campaigns_section(&reports.campaigns))
            (receipts_section(&reports.receipts))
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

fn campaigns_section(campaigns: &[(Campaign, CampaignStats)]) -> Markup {
    html! {
        section #campaigns {
            h2 { "Campaigns" }
            @if campaigns.is_empty() { p.empty { "No campaigns yet." } }
            @for (campaign, stats) in campaigns {
                article.campaign {
                    h3 { (campaign.name) " " small { (campaign.campaign_id) } }
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

fn receipts_section(receipts: &[ReceiptRecord]) -> Markup {
    html! {
        section #receipts {
            h2 { "Receipts waiting for review" }
            @if receipts.is_empty() { p.empty { "The queue is empty." } } @else {
                div.scroll { table #receipt-queue {
                    thead { tr { th { "Submitted" } th { "Store" } th { "Receipt" } th.n { "Total" } th.n { "Points" } } }
                    tbody { @for r in receipts {
                        tr { td { (r.submitted_at.format("%Y-%m-%d %H:%M")) } td { (r.receipt.store_id) }
                             td { (r.receipt.receipt_no) } td.n { (r.receipt.total.amount()) } td.n { (r.points) } } } }
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

fn logout_form() -> Markup {
    html! { form.logout method="post" action="/logout" { button type="submit" { "Log out" } } }
}

fn login_markup(failed: bool) -> Markup {
    page(
        "omo dashboard — log in",
        html! {
            form.login method="post" action="/login" {
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
";
