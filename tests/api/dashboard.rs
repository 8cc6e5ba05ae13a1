//! The dashboard (`--http`): who gets in, through server-side sessions with a CSRF token on
//! every form, throttled failed logins and TLS off loopback; and, in headless Chromium, that
//! the pages show the engine's figures, fit a phone and log out (`tests/e2e/dashboard.mjs`).
//!
//! Each scenario runs a dashboard server over the test's database (on both backends) with the
//! test's clock, and talks to it in raw HTTP/1.1, as a browser would.

use std::{net::SocketAddr, path::Path, process::Command, sync::Arc};

use chrono::Duration;
use omo::{
    Application, Config,
    app::AppError,
    domain::{Clock, auth::Role},
    proto::{self, campaign::Discount, campaign_variant},
};
use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio_rustls::{
    TlsConnector,
    rustls::{
        ClientConfig, RootCertStore, crypto::ring, pki_types::CertificateDer,
        pki_types::ServerName, pki_types::pem::PemObject as _,
    },
};

use crate::helpers::{
    Backend, TestApp, basket, create_receipt_rule_as, member_ref, spawn_app_with, store_sale,
};

crate::both_backends! {
    login_opens_a_session_that_logout_ends => login_opens_a_session_that_logout_ends,
    a_session_ends_idle_or_twelve_hours_on => a_session_ends_idle_or_twelve_hours_on,
    a_post_without_its_csrf_token_is_refused => a_post_without_its_csrf_token_is_refused,
    failed_logins_are_throttled => failed_logins_are_throttled,
    a_revoked_or_expired_keys_session_is_refused => a_revoked_or_expired_keys_session_is_refused,
    off_loopback_the_dashboard_needs_tls => off_loopback_the_dashboard_needs_tls,
    dashboard_actions_review_receipts_and_toggle_rules => dashboard_actions_review_receipts_and_toggle_rules,
}

/// A server over `app`'s database and clock serving the dashboard on `http`.
async fn dashboard_on(
    app: &TestApp,
    http: &str,
    tls: Option<&Tls>,
) -> Result<Application, AppError> {
    let mut config = Config::local(&app.database_url);
    config.http = Some(http.parse().expect("address"));
    if let Some(tls) = tls {
        config.tls.tls_cert = Some(tls.cert.clone());
        config.tls.tls_key = Some(tls.key.clone());
    }
    Application::build(&config, Arc::new(app.clock.clone())).await
}

/// A dashboard on loopback (plain HTTP) and an admin key named "dash".
async fn dashboard(app: &TestApp) -> (Application, String) {
    let server = dashboard_on(app, "127.0.0.1:0", None)
        .await
        .expect("dashboard starts");
    let key = server
        .engine()
        .create_api_key(Role::Admin, None, "dash".into())
        .await
        .expect("key");
    (server, key)
}

/// One HTTP response: status, header lines (lowercase names), body.
#[derive(Debug)]
struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Reply {
    fn parse(raw: &str) -> Self {
        let (head, body) = raw.split_once("\r\n\r\n").unwrap_or((raw, ""));
        let mut lines = head.lines();
        let status = lines
            .next()
            .and_then(|line| line.split(' ').nth(1))
            .and_then(|code| code.parse().ok())
            .expect("a status line");
        let headers = lines
            .filter_map(|line| line.split_once(':'))
            .map(|(name, value)| (name.trim().to_lowercase(), value.trim().to_string()))
            .collect();
        Reply {
            status,
            headers,
            body: body.to_string(),
        }
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The `Set-Cookie` line of cookie `name`.
    fn set_cookie(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .filter(|(n, _)| n == "set-cookie")
            .map(|(_, v)| v.as_str())
            .find(|v| v.starts_with(&format!("{name}=")))
    }

    /// The value `Set-Cookie` gives cookie `name`.
    fn cookie(&self, name: &str) -> Option<String> {
        let line = self.set_cookie(name)?;
        let value = line[name.len() + 1..].split(';').next().unwrap_or_default();
        Some(value.to_string())
    }

    /// The value of the page's hidden `csrf` field.
    fn csrf_field(&self) -> Option<String> {
        let start = self.body.find("name=\"csrf\" value=\"")? + 19;
        let len = self.body[start..].find('"')?;
        Some(self.body[start..start + len].to_string())
    }

    fn redirects_to(&self, path: &str) -> bool {
        self.status == 303 && self.header("location") == Some(path)
    }
}

/// Sends one request (with `connection: close`) and reads the whole response.
async fn exchange_on<S: AsyncRead + AsyncWrite + Unpin>(mut stream: S, request: &str) -> Reply {
    stream.write_all(request.as_bytes()).await.expect("send");
    let mut raw = Vec::new();
    // A TLS peer that closes without close_notify still sent everything before.
    let _ = stream.read_to_end(&mut raw).await;
    Reply::parse(&String::from_utf8_lossy(&raw))
}

/// Where requests go: plain HTTP, or TLS trusting `ca`.
enum Target<'a> {
    Plain(SocketAddr),
    Tls(SocketAddr, &'a Tls),
}

impl Target<'_> {
    async fn send(&self, request: &str) -> Reply {
        match self {
            Target::Plain(addr) => {
                let stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
                exchange_on(stream, request).await
            }
            Target::Tls(addr, tls) => {
                let stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
                let name = ServerName::try_from("localhost").expect("name");
                let stream = tls.connector().connect(name, stream).await.expect("TLS");
                exchange_on(stream, request).await
            }
        }
    }

    async fn get(&self, path: &str, headers: &str) -> Reply {
        let request =
            format!("GET {path} HTTP/1.1\r\nhost: omo\r\nconnection: close\r\n{headers}\r\n");
        self.send(&request).await
    }

    async fn post(&self, path: &str, cookies: &str, body: &str) -> Reply {
        let cookie_line = if cookies.is_empty() {
            String::new()
        } else {
            format!("cookie: {cookies}\r\n")
        };
        let request = format!(
            "POST {path} HTTP/1.1\r\nhost: omo\r\nconnection: close\r\n{cookie_line}\
             content-type: application/x-www-form-urlencoded\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        );
        self.send(&request).await
    }

    /// The login form's reply: its cookie (`name=value`) and token.
    async fn login_form(&self, cookie_name: &str) -> (String, String) {
        let form = self.get("/login", "").await;
        assert_eq!(form.status, 200, "{form:?}");
        let value = form.cookie(cookie_name).expect("a login cookie");
        let token = form.csrf_field().expect("a token in the form");
        assert_eq!(value, token, "the form's token is the cookie's");
        (format!("{cookie_name}={value}"), token)
    }

    /// Logs in with `key` through the form, as a browser does.
    async fn log_in(&self, key: &str) -> Reply {
        let (cookie, token) = self.login_form("omo_login").await;
        self.post("/login", &cookie, &format!("csrf={token}&key={key}"))
            .await
    }
}

/// A browser's session: its cookie (`name=value`) and the token its forms carry.
struct Session {
    cookie: String,
    csrf: String,
}

/// Logs in on `target` and reads the dashboard once for the session's token.
async fn session(target: &Target<'_>, key: &str) -> Session {
    let login = target.log_in(key).await;
    assert!(login.redirects_to("/"), "{login:?}");
    let id = login.cookie("omo_session").expect("a session cookie");
    let cookie = format!("omo_session={id}");
    let page = target.get("/", &format!("cookie: {cookie}\r\n")).await;
    assert_eq!(page.status, 200, "{page:?}");
    let csrf = page.csrf_field().expect("the logout form's token");
    Session { cookie, csrf }
}

async fn page_with(target: &Target<'_>, cookie: &str) -> Reply {
    target.get("/", &format!("cookie: {cookie}\r\n")).await
}

async fn login_opens_a_session_that_logout_ends(app: &TestApp) {
    // Arrange
    let (server, key) = dashboard(app).await;
    let target = Target::Plain(server.http_addr().expect("listening"));
    let app_key = server
        .engine()
        .create_api_key(Role::App, None, "app".into())
        .await
        .expect("key");
    // Another replica over the same database.
    let (replica, _) = dashboard(app).await;
    let on_replica = Target::Plain(replica.http_addr().expect("listening"));

    // Act / Assert: no key → the login page; a bearer key: an admin's reads, another's does not.
    assert!(target.get("/", "").await.redirects_to("/login"));
    let forbidden = target
        .get("/", &format!("authorization: Bearer {app_key}\r\n"))
        .await;
    assert_eq!(forbidden.status, 403);
    let by_header = target
        .get("/", &format!("authorization: Bearer {key}\r\n"))
        .await;
    assert_eq!(by_header.status, 200);
    assert!(by_header.body.contains("id=\"outstanding-points\""));
    assert!(
        !by_header.body.contains("action=\"/logout\""),
        "no session, no forms"
    );

    // Logging in sets a session cookie that is not the key.
    let login = target.log_in(&key).await;
    assert!(login.redirects_to("/"), "{login:?}");
    let line = login.set_cookie("omo_session").expect("a session cookie");
    for attribute in ["HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(line.contains(attribute), "{attribute} in {line}");
    }
    assert!(!line.contains("Secure"), "plain HTTP on loopback: {line}");
    let id = login.cookie("omo_session").expect("value");
    assert_eq!(id.len(), 64, "256 random bits in hex");
    assert!(
        !format!("{:?}", login.headers).contains(&key),
        "the key is in no header"
    );
    assert!(
        login
            .set_cookie("omo_login")
            .is_some_and(|l| l.contains("Max-Age=0"))
    );

    // The session reads the dashboard, here and on the replica; the key is in no page.
    let cookie = format!("omo_session={id}");
    let page = page_with(&target, &cookie).await;
    assert_eq!(page.status, 200, "{page:?}");
    assert!(page.body.contains("id=\"outstanding-points\""));
    assert!(!page.body.contains(&key), "the key is never echoed");
    assert_eq!(page.header("cache-control"), Some("no-store"));
    assert_eq!(page_with(&on_replica, &cookie).await.status, 200);
    // The old cookie, the key itself, opens nothing.
    assert!(
        page_with(&target, &format!("omo_key={key}"))
            .await
            .redirects_to("/login")
    );

    // Logging out ends the session on every replica, whatever the browser keeps.
    let csrf = page.csrf_field().expect("token");
    let logout = target
        .post("/logout", &cookie, &format!("csrf={csrf}"))
        .await;
    assert!(logout.redirects_to("/login"), "{logout:?}");
    assert!(
        logout
            .set_cookie("omo_session")
            .is_some_and(|l| l.contains("Max-Age=0"))
    );
    assert!(page_with(&target, &cookie).await.redirects_to("/login"));
    assert!(page_with(&on_replica, &cookie).await.redirects_to("/login"));
}

async fn a_session_ends_idle_or_twelve_hours_on(app: &TestApp) {
    // Arrange
    let (server, key) = dashboard(app).await;
    let target = Target::Plain(server.http_addr().expect("listening"));
    let idle = session(&target, &key).await;
    let busy = session(&target, &key).await;

    // Act / Assert: used every 59 minutes, a session lives on; an hour unused, it ends.
    app.clock.advance(Duration::minutes(59));
    assert_eq!(page_with(&target, &busy.cookie).await.status, 200);
    app.clock.advance(Duration::minutes(1));
    assert!(
        page_with(&target, &idle.cookie)
            .await
            .redirects_to("/login"),
        "an hour idle"
    );
    // However busy, it ends twelve hours (720 minutes) after it opened; 60 have passed.
    for _ in 0..11 {
        app.clock.advance(Duration::minutes(58));
        assert_eq!(page_with(&target, &busy.cookie).await.status, 200);
    }
    app.clock.advance(Duration::minutes(21));
    assert_eq!(
        page_with(&target, &busy.cookie).await.status,
        200,
        "719 minutes on"
    );
    app.clock.advance(Duration::minutes(1));
    assert!(
        page_with(&target, &busy.cookie)
            .await
            .redirects_to("/login"),
        "twelve hours on"
    );
}

async fn a_post_without_its_csrf_token_is_refused(app: &TestApp) {
    // Arrange
    let (server, key) = dashboard(app).await;
    let target = Target::Plain(server.http_addr().expect("listening"));
    let mine = session(&target, &key).await;
    let other = session(&target, &key).await;
    assert_ne!(mine.csrf, other.csrf, "a token per session");

    // Act: logout without a token, with a made-up one, and with another session's.
    let refusals = [
        target.post("/logout", &mine.cookie, "").await,
        target
            .post("/logout", &mine.cookie, &format!("csrf={}", "0".repeat(64)))
            .await,
        target
            .post("/logout", &mine.cookie, &format!("csrf={}", other.csrf))
            .await,
    ];

    // Assert: 403 each time, and the session still stands.
    for refusal in &refusals {
        assert_eq!(refusal.status, 403, "{refusal:?}");
        assert!(refusal.set_cookie("omo_session").is_none());
    }
    assert_eq!(page_with(&target, &mine.cookie).await.status, 200);

    // A login without the login cookie's token opens nothing, even with the right key.
    let (cookie, token) = target.login_form("omo_login").await;
    let forged = [
        target
            .post("/login", "", &format!("csrf={token}&key={key}"))
            .await,
        target.post("/login", &cookie, &format!("key={key}")).await,
        target
            .post(
                "/login",
                &cookie,
                &format!("csrf={}&key={key}", "f".repeat(64)),
            )
            .await,
    ];
    for refusal in &forged {
        assert_eq!(refusal.status, 403, "{refusal:?}");
        assert!(refusal.set_cookie("omo_session").is_none(), "no session");
    }
}

async fn failed_logins_are_throttled(app: &TestApp) {
    // Arrange
    let (server, key) = dashboard(app).await;
    let target = Target::Plain(server.http_addr().expect("listening"));
    let app_key = server
        .engine()
        .create_api_key(Role::App, None, "app".into())
        .await
        .expect("key");

    // Act: five failed logins within the minute (a non-admin key fails like a made-up one).
    let mut failures = Vec::new();
    for attempt in 0..5 {
        let wrong = if attempt == 0 {
            app_key.clone()
        } else {
            format!("omo_wrong{attempt}")
        };
        failures.push(target.log_in(&wrong).await.status);
    }
    let blocked = target.log_in(&key).await;

    // Assert: each failure said 401; then even the right key gets 429 and no session.
    assert_eq!(failures, [401; 5]);
    assert_eq!(blocked.status, 429, "{blocked:?}");
    let retry_after: u64 = blocked
        .header("retry-after")
        .and_then(|s| s.parse().ok())
        .expect("Retry-After");
    assert!((1..=300).contains(&retry_after), "{retry_after}");
    assert!(blocked.set_cookie("omo_session").is_none());
}

async fn a_revoked_or_expired_keys_session_is_refused(app: &TestApp) {
    // Arrange
    let (server, key) = dashboard(app).await;
    let target = Target::Plain(server.http_addr().expect("listening"));
    let engine = server.engine();
    let short_key = engine
        .create_api_key_expiring(
            Role::Admin,
            None,
            "short".into(),
            Some(Duration::minutes(30)),
        )
        .await
        .expect("key");
    let revoked = session(&target, &key).await;
    let expiring = session(&target, &short_key).await;
    let key_id = engine
        .list_api_keys()
        .await
        .expect("keys")
        .into_iter()
        .find(|k| k.name == "dash")
        .expect("dash")
        .key_id;

    // Act
    assert!(engine.revoke_api_key(&key_id).await.expect("revoke"));
    app.clock.advance(Duration::minutes(31));

    // Assert: the revoked key's session at once; the expired key's, though not idle an hour.
    assert!(
        page_with(&target, &revoked.cookie)
            .await
            .redirects_to("/login")
    );
    assert!(
        page_with(&target, &expiring.cookie)
            .await
            .redirects_to("/login")
    );
}

/// A CA and a certificate it signed for localhost, written as PEM files.
struct Tls {
    ca: String,
    cert: std::path::PathBuf,
    key: std::path::PathBuf,
}

impl Tls {
    fn new() -> Self {
        let ca_key = KeyPair::generate().expect("key");
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("params");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca = ca_params.self_signed(&ca_key).expect("CA");
        let issuer = Issuer::new(ca_params, ca_key);
        let leaf_key = KeyPair::generate().expect("key");
        let leaf = CertificateParams::new(vec!["localhost".to_string()])
            .expect("params")
            .signed_by(&leaf_key, &issuer)
            .expect("signed");
        let dir = std::env::temp_dir().join(format!("omo_dash_tls_{:016x}", rand::random::<u64>()));
        std::fs::create_dir_all(&dir).expect("dir");
        let (cert, key) = (dir.join("server.pem"), dir.join("server.key"));
        std::fs::write(&cert, leaf.pem()).expect("write");
        std::fs::write(&key, leaf_key.serialize_pem()).expect("write");
        Tls {
            ca: ca.pem(),
            cert,
            key,
        }
    }

    fn connector(&self) -> TlsConnector {
        let mut roots = RootCertStore::empty();
        let ca = CertificateDer::from_pem_slice(self.ca.as_bytes()).expect("CA PEM");
        roots.add(ca).expect("root");
        let config = ClientConfig::builder_with_provider(Arc::new(ring::default_provider()))
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
        TlsConnector::from(Arc::new(config))
    }
}

async fn off_loopback_the_dashboard_needs_tls(app: &TestApp) {
    // Arrange
    let tls = Tls::new();

    // Act: on every address without TLS; then with the certificate.
    let plain = dashboard_on(app, "0.0.0.0:0", None).await;
    let served = dashboard_on(app, "0.0.0.0:0", Some(&tls))
        .await
        .expect("TLS lets the dashboard off loopback");

    // Assert: refused at start, naming the way out.
    let error = plain.err().expect("refused without TLS");
    assert!(matches!(error, AppError::InsecureDashboard(_)), "{error}");
    assert!(error.to_string().contains("--tls-cert"), "{error}");
    // Over TLS, cookies are Secure with the __Host- prefix, and a session works.
    let port = served.http_addr().expect("listening").port();
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    let target = Target::Tls(addr, &tls);
    let key = served
        .engine()
        .create_api_key(Role::Admin, None, "tls".into())
        .await
        .expect("key");
    let (cookie, token) = target.login_form("__Host-omo_login").await;
    let login = target
        .post("/login", &cookie, &format!("csrf={token}&key={key}"))
        .await;
    assert!(login.redirects_to("/"), "{login:?}");
    let line = login
        .set_cookie("__Host-omo_session")
        .expect("a session cookie");
    for attribute in ["HttpOnly", "SameSite=Strict", "Path=/", "Secure"] {
        assert!(line.contains(attribute), "{attribute} in {line}");
    }
    let id = login.cookie("__Host-omo_session").expect("value");
    let page = page_with(&target, &format!("__Host-omo_session={id}")).await;
    assert_eq!(page.status, 200, "{page:?}");
    // The plain-HTTP cookie name opens nothing there.
    assert!(
        page_with(&target, &format!("omo_session={id}"))
            .await
            .redirects_to("/login")
    );
    // Plain HTTP to the TLS port gets no page.
    let plaintext = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let mut plaintext = plaintext;
    plaintext
        .write_all(b"GET /login HTTP/1.1\r\nhost: omo\r\nconnection: close\r\n\r\n")
        .await
        .expect("send");
    let mut raw = Vec::new();
    let _ = plaintext.read_to_end(&mut raw).await;
    assert!(
        !String::from_utf8_lossy(&raw).contains("HTTP/1.1 200"),
        "no clear text"
    );
    let _ = std::fs::remove_dir_all(tls.cert.parent().expect("dir"));
}

/// Sales at two stores over a few days, an A/B campaign with redemptions, and a receipt that
/// waits for review.
async fn seed(app: &TestApp) {
    app.admin
        .coupons()
        .create_campaign(proto::CreateCampaignRequest {
            request_id: String::new(),
            campaign: Some(proto::Campaign {
                campaign_id: "spring".into(),
                name: "Spring A/B".into(),
                discount: Some(Discount::AmountOff("100".into())),
                stackable: true,
                variants: ["A", "B"]
                    .map(|id| proto::CampaignVariant {
                        variant_id: id.into(),
                        weight: 1,
                        discount: Some(campaign_variant::Discount::AmountOff("100".into())),
                    })
                    .into(),
                ..Default::default()
            }),
        })
        .await
        .expect("campaign");
    for n in 0..8 {
        let member_id = app.create_member(&format!("card-{n}")).await;
        let coupon = app
            .issue_coupon(&format!("issue-{n}"), "spring", &member_id)
            .await
            .expect("issue");
        let mut sale = store_sale(
            &format!("sale-{n}"),
            &n.to_string(),
            member_ref(&member_id),
            &format!("{}", 2000 + n * 500),
            0,
        );
        if n % 3 != 0 {
            sale.coupon_codes = vec![coupon.code];
        }
        app.record_sale(sale).await.expect("sale");
        app.advance(Duration::hours(20)).await;
    }
    // The second receipt is over the program's review threshold: it waits for review.
    app.set_program(|program| program.receipt_review_threshold = "2000".into())
        .await;
    create_receipt_rule_as(&app.admin, "photo", "0.01").await;
    let member_id = app.create_member("receipts").await;
    for (n, total) in ["1500", "2500"].into_iter().enumerate() {
        let receipt = proto::Receipt {
            store_id: "umeda".into(),
            register_id: "1".into(),
            receipt_no: format!("R-{n}"),
            issued_at: Some(prost_types::Timestamp {
                seconds: (app.clock.now() - Duration::hours(1)).timestamp(),
                nanos: 0,
            }),
            total: total.into(),
            lines: basket(&[total]).lines,
            image_sha256: format!("{n:064x}"),
            raw_text: String::new(),
        };
        app.app_client
            .engagement()
            .submit_receipt(proto::SubmitReceiptRequest {
                request_id: format!("receipt-{n}"),
                member: Some(member_ref(&member_id)),
                receipt: Some(receipt),
            })
            .await
            .expect("receipt");
    }
}

/// A server on SQLite whose own config serves the dashboard on loopback.
async fn dashboard_app() -> TestApp {
    spawn_app_with(Backend::Sqlite, |config| {
        config.http = Some("127.0.0.1:0".parse().expect("address"));
    })
    .await
    .expect("SQLite is always there")
}

/// Runs `tests/e2e/dashboard.mjs` against a seeded server. Skipped with a note when node,
/// Chromium or playwright-core (installed by `.ci/run` into `target/e2e`) are missing, except
/// under CI=true.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_dashboard_renders_the_engines_figures_in_chromium() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let modules = root.join("target/e2e/node_modules/playwright-core");
    let missing = [
        (Path::new("/usr/bin/chromium").exists(), "chromium"),
        (
            Command::new("node").arg("--version").output().is_ok(),
            "node",
        ),
        (modules.exists(), "target/e2e/node_modules/playwright-core"),
    ]
    .into_iter()
    .filter(|(present, _)| !present)
    .map(|(_, what)| what)
    .collect::<Vec<_>>();
    if !missing.is_empty() {
        assert_ne!(
            std::env::var("CI").as_deref(),
            Ok("true"),
            "the e2e test cannot be skipped under CI=true; missing {missing:?}"
        );
        eprintln!("SKIPPED: dashboard e2e needs {missing:?} (.ci/run installs them)");
        return;
    }
    // Arrange
    let app = dashboard_app().await;
    seed(&app).await;
    let key = app
        .app()
        .engine()
        .create_api_key(omo::domain::auth::Role::Admin, None, "e2e".into())
        .await
        .expect("key");
    let liability = app
        .admin
        .reports()
        .get_liability(proto::GetLiabilityRequest { as_of: None })
        .await
        .expect("liability")
        .into_inner();
    let queue = app
        .admin
        .engagement()
        .list_receipts(proto::ListReceiptsRequest {
            status: proto::ReceiptStatus::PendingReview as i32,
            page_size: 50,
            ..Default::default()
        })
        .await
        .expect("queue")
        .into_inner()
        .receipts;
    assert!(
        liability.outstanding_points > 0 && !queue.is_empty(),
        "seeded"
    );
    let url = format!("http://{}", app.app().http_addr().expect("listening"));
    let reviewer = crate::helpers::card_ref("receipts");
    let balance_before = receipts_member_points(&app, &reviewer).await;

    // Act: the browser run is bounded; the script has its own timeouts too.
    let script = root.join("tests/e2e/dashboard.mjs");
    // A screenshot left by an earlier run must not pass for this run's.
    let phone_png = root.join("target/e2e/dashboard-phone.png");
    let _ = std::fs::remove_file(&phone_png);
    let run = tokio::time::timeout(
        std::time::Duration::from_secs(90),
        tokio::process::Command::new("node")
            .arg(&script)
            .arg(&url)
            .arg(&key)
            .arg(liability.outstanding_points.to_string())
            .arg(queue.len().to_string())
            .current_dir(root)
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("the e2e script finishes within 90 s")
    .expect("node runs");

    // Assert
    let output = format!(
        "{}{}",
        String::from_utf8_lossy(&run.stdout),
        String::from_utf8_lossy(&run.stderr)
    );
    assert!(run.status.success(), "dashboard e2e failed:\n{output}");
    assert!(
        phone_png.exists(),
        "the browser run saved no phone screenshot"
    );
    // The approval clicked in the browser moved the member's balance by the receipt's points.
    let approved = output
        .lines()
        .find_map(|line| line.strip_prefix("approved "))
        .expect("the script names the receipt it approved");
    let receipt = queue
        .iter()
        .find(|r| r.receipt_id == approved)
        .expect("a receipt of the queue");
    assert!(receipt.points_awarded > 0, "{receipt:?}");
    assert_eq!(
        receipts_member_points(&app, &reviewer).await,
        balance_before + receipt.points_awarded
    );
    app.verify_ok().await;
}

async fn receipts_member_points(app: &TestApp, member: &proto::MemberRef) -> i64 {
    app.admin
        .ledger()
        .get_balance(proto::GetBalanceRequest {
            member: Some(member.clone()),
        })
        .await
        .expect("balance")
        .into_inner()
        .balance
        .expect("balance")
        .available_points
}

/// A receipt over the review threshold, waiting for review: (member id, receipt id, points).
async fn pending_receipt(app: &TestApp, card: &str) -> (String, String, i64) {
    app.set_program(|program| program.receipt_review_threshold = "2000".into())
        .await;
    create_receipt_rule_as(&app.admin, "photo", "0.01").await;
    let member_id = app.create_member(card).await;
    let receipt = proto::Receipt {
        store_id: "umeda".into(),
        register_id: "1".into(),
        receipt_no: format!("R-{card}"),
        issued_at: Some(prost_types::Timestamp {
            seconds: (app.clock.now() - Duration::hours(1)).timestamp(),
            nanos: 0,
        }),
        total: "5000".into(),
        lines: basket(&["5000"]).lines,
        image_sha256: format!("{:064x}", 7),
        raw_text: String::new(),
    };
    let result = app
        .app_client
        .engagement()
        .submit_receipt(proto::SubmitReceiptRequest {
            request_id: format!("receipt-{card}"),
            member: Some(member_ref(&member_id)),
            receipt: Some(receipt),
        })
        .await
        .expect("receipt")
        .into_inner()
        .result
        .expect("result");
    assert_eq!(
        result.status,
        proto::ReceiptStatus::PendingReview as i32,
        "{result:?}"
    );
    (member_id, result.receipt_id, result.points_awarded)
}

fn rule_enabled(rules: &[proto::Rule], rule_id: &str) -> Option<bool> {
    rules
        .iter()
        .find(|r| r.rule_id == rule_id)
        .map(|r| r.enabled.unwrap_or(true))
}

async fn listed_rules(app: &TestApp) -> Vec<proto::Rule> {
    app.admin
        .rules()
        .list_rules(proto::ListRulesRequest {
            include_disabled: true,
            page_size: 100,
            ..Default::default()
        })
        .await
        .expect("rules")
        .into_inner()
        .rules
}

/// Approve and Disable on the page run ReviewReceipt's and UpdateRule's engine commands with a
/// request id derived from the form: a double submit acts once; a POST without the session's
/// CSRF token does nothing; a refusal shows its reason.
async fn dashboard_actions_review_receipts_and_toggle_rules(app: &TestApp) {
    // Arrange
    let (member_id, receipt_id, points) = pending_receipt(app, "dash-review").await;
    assert!(points > 0);
    let before = app.available(&member_id).await;
    let (server, key) = dashboard(app).await;
    let target = Target::Plain(server.http_addr().expect("listening"));
    let browser = session(&target, &key).await;
    let page = page_with(&target, &browser.cookie).await;
    assert!(
        page.body
            .contains(&format!("data-receipt-id=\"{receipt_id}\""))
    );
    assert!(
        page.body.contains("form class=\"approve\""),
        "no Approve button"
    );

    // Act + Assert: without the token, nothing happens.
    let approve = format!("receipt_id={receipt_id}&approve=true");
    let forged = target
        .post("/receipts/review", &browser.cookie, &approve)
        .await;
    assert_eq!(forged.status, 403, "{forged:?}");
    assert_eq!(app.available(&member_id).await, before);

    // Approve, twice (a double submit): the points move once.
    let form = format!("csrf={}&{approve}", browser.csrf);
    for _ in 0..2 {
        let done = target
            .post("/receipts/review", &browser.cookie, &form)
            .await;
        assert!(done.redirects_to("/#receipts"), "{done:?}");
    }
    assert_eq!(app.available(&member_id).await, before + points);
    let page = page_with(&target, &browser.cookie).await;
    assert!(
        !page
            .body
            .contains(&format!("data-receipt-id=\"{receipt_id}\""))
    );

    // Rejecting it now is refused with the engine's reason, and changes nothing.
    let reject = format!(
        "csrf={}&receipt_id={receipt_id}&approve=false",
        browser.csrf
    );
    let refused = target
        .post("/receipts/review", &browser.cookie, &reject)
        .await;
    assert_eq!(refused.status, 409, "{refused:?}");
    assert!(refused.body.contains("class=\"error\""), "{refused:?}");
    assert_eq!(app.available(&member_id).await, before + points);

    // A bad id: the field's violation, 400.
    let bad = format!("csrf={}&receipt_id=&approve=true", browser.csrf);
    assert_eq!(
        target
            .post("/receipts/review", &browser.cookie, &bad)
            .await
            .status,
        400
    );

    // Disable a rule, twice from the same page (one change), then enable it again.
    let effects = proto::RuleEffects {
        bonus_points: 5,
        ..Default::default()
    };
    crate::rules::create_rule(app, crate::rules::purchase_rule("bonus", effects)).await;
    let page = page_with(&target, &browser.cookie).await;
    assert!(
        page.body.contains("name=\"rule_id\" value=\"bonus\""),
        "no toggle"
    );
    assert_eq!(rule_enabled(&listed_rules(app).await, "bonus"), Some(true));
    let disable = format!("csrf={}&rule_id=bonus&enabled=false&seen=1", browser.csrf);
    for _ in 0..2 {
        let done = target
            .post("/rules/enabled", &browser.cookie, &disable)
            .await;
        assert!(done.redirects_to("/#rules"), "{done:?}");
    }
    assert_eq!(rule_enabled(&listed_rules(app).await, "bonus"), Some(false));
    let enable = format!("csrf={}&rule_id=bonus&enabled=true&seen=2", browser.csrf);
    let done = target
        .post("/rules/enabled", &browser.cookie, &enable)
        .await;
    assert!(done.redirects_to("/#rules"), "{done:?}");
    assert_eq!(rule_enabled(&listed_rules(app).await, "bonus"), Some(true));
    let forged = "rule_id=bonus&enabled=false&seen=3";
    assert_eq!(
        target
            .post("/rules/enabled", &browser.cookie, forged)
            .await
            .status,
        403
    );
    assert_eq!(rule_enabled(&listed_rules(app).await, "bonus"), Some(true));

    // End a campaign early, and revoke one of its coupons.
    app.admin
        .coupons()
        .create_campaign(proto::CreateCampaignRequest {
            request_id: "dash-campaign".into(),
            campaign: Some(proto::Campaign {
                campaign_id: "dash-sale".into(),
                name: "dash sale".into(),
                discount: Some(proto::campaign::Discount::AmountOff("100".into())),
                ..Default::default()
            }),
        })
        .await
        .expect("campaign");
    let coupon = app
        .issue_coupon("dash-coupon", "dash-sale", &member_id)
        .await
        .expect("coupon");
    let page = page_with(&target, &browser.cookie).await;
    assert!(
        page.body.contains("action=\"/campaigns/end\""),
        "no End button"
    );
    let forged = format!("code={}&reason=fraud", coupon.code);
    let refused = target
        .post("/coupons/revoke", &browser.cookie, &forged)
        .await;
    assert_eq!(refused.status, 403);
    let revoke = format!("csrf={}&code={}&reason=fraud", browser.csrf, coupon.code);
    for _ in 0..2 {
        let done = target
            .post("/coupons/revoke", &browser.cookie, &revoke)
            .await;
        assert!(done.redirects_to("/#campaigns"), "{done:?}");
    }
    let revoked = app
        .admin
        .coupons()
        .get_coupon(proto::GetCouponRequest {
            code: coupon.code.clone(),
        })
        .await
        .expect("coupon")
        .into_inner()
        .coupon
        .expect("coupon");
    assert_eq!(revoked.state, proto::CouponState::Revoked as i32);
    let end = format!("csrf={}&campaign_id=dash-sale", browser.csrf);
    let done = target.post("/campaigns/end", &browser.cookie, &end).await;
    assert!(done.redirects_to("/#campaigns"), "{done:?}");
    let page = page_with(&target, &browser.cookie).await;
    assert!(
        !page.body.contains("action=\"/campaigns/end\""),
        "still open"
    );
    let late = app
        .issue_coupon("dash-coupon-2", "dash-sale", &member_id)
        .await;
    assert!(late.is_err(), "an ended campaign issues nothing: {late:?}");
    app.verify_ok().await;
}
