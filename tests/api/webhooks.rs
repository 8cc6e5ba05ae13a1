//! Webhooks (issue #22): a real HTTP receiver in the test checks the omo-signature of each
//! POST; an outage of the receiver is retried on the injected clock's backoff and then
//! delivered; bad webhooks are INVALID_ARGUMENT and write nothing.

use std::{
    net::SocketAddr,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU16, Ordering},
    },
    time::Duration,
};

use axum::{Router, extract::State, http::HeaderMap, routing::post};
use hmac::{Hmac, Mac};
use omo::proto;
use sha2::Sha256;
use tonic::Code;

use crate::helpers::{
    Backend, CliKeys, RoleClients, TestApp, assert_refused, create_member_as, create_store_as,
    fresh_database, member_ref, omo_cli, serve, store_sale, violated_fields,
};

crate::both_backends! {
    a_signed_delivery_survives_an_outage => a_signed_delivery_survives_an_outage,
    bad_webhooks_are_refused_and_write_nothing => bad_webhooks_are_refused_and_write_nothing,
}

/// What the receiver saw: (omo-signature, body) of each POST.
#[derive(Clone, Default)]
struct Receiver {
    status: Arc<AtomicU16>,
    seen: Arc<Mutex<Vec<(String, String)>>>,
    /// Holds the next request unanswered (a minute) when set.
    hang: Arc<std::sync::atomic::AtomicBool>,
}

async fn receive(
    State(receiver): State<Receiver>,
    headers: HeaderMap,
    body: String,
) -> axum::http::StatusCode {
    let signature = headers
        .get("omo-signature")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    receiver.seen.lock().unwrap().push((signature, body));
    if receiver.hang.swap(false, Ordering::SeqCst) {
        tokio::time::sleep(Duration::from_secs(60)).await;
    }
    axum::http::StatusCode::from_u16(receiver.status.load(Ordering::SeqCst)).unwrap()
}

async fn start_receiver(status: u16) -> (Receiver, SocketAddr) {
    let receiver = Receiver::default();
    receiver.status.store(status, Ordering::SeqCst);
    let router = Router::new()
        .route("/hook", post(receive))
        .with_state(receiver.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await });
    (receiver, addr)
}

/// Whether `header` signs `body` with `secret`: t=<unix>,v1=<hex HMAC-SHA256(secret, "t.body")>.
fn signed(secret: &str, header: &str, body: &str) -> bool {
    let Some((t, v1)) = header
        .strip_prefix("t=")
        .and_then(|rest| rest.split_once(",v1="))
    else {
        return false;
    };
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(format!("{t}.{body}").as_bytes());
    hex::decode(v1).is_ok_and(|tag| mac.verify_slice(&tag).is_ok())
}

async fn create_webhook(
    app: &TestApp,
    request_id: &str,
    webhook_id: &str,
    url: &str,
) -> Result<proto::CreateWebhookResponse, tonic::Status> {
    app.admin
        .events()
        .create_webhook(proto::CreateWebhookRequest {
            request_id: request_id.into(),
            webhook: Some(proto::Webhook {
                webhook_id: webhook_id.into(),
                url: url.into(),
                types: vec!["points.earned".into()],
                ..Default::default()
            }),
        })
        .await
        .map(tonic::Response::into_inner)
}

async fn deliveries(app: &TestApp, webhook_id: &str) -> Vec<proto::WebhookDelivery> {
    app.admin
        .events()
        .list_webhook_deliveries(proto::ListWebhookDeliveriesRequest {
            webhook_id: webhook_id.into(),
            ..Default::default()
        })
        .await
        .expect("deliveries")
        .into_inner()
        .deliveries
}

/// Waits (20 s at most) until `done` holds of the webhook's deliveries.
async fn wait_for(
    app: &TestApp,
    webhook_id: &str,
    done: impl Fn(&[proto::WebhookDelivery]) -> bool,
) -> Vec<proto::WebhookDelivery> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let now = deliveries(app, webhook_id).await;
        if done(&now) {
            return now;
        }
        assert!(tokio::time::Instant::now() < deadline, "{now:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn a_signed_delivery_survives_an_outage(app: &TestApp) {
    // Arrange: a receiver that is down (503), subscribed to points.earned.
    let (receiver, addr) = start_receiver(503).await;
    let url = format!("http://{addr}/hook");
    let created = create_webhook(app, "w1", "crm", &url)
        .await
        .expect("webhook");
    assert!(created.secret.starts_with("whsec_"));
    let replay = create_webhook(app, "w1", "crm", &url)
        .await
        .expect("replay");
    assert_eq!(replay, created, "a retry gets the same answer");
    let member_id = app.create_member("hooked").await;

    // Act: a sale earning points; a sale's other events are not of the webhook's types.
    let order = app
        .record_sale(store_sale("s1", "0001", member_ref(&member_id), "1000", 0))
        .await
        .expect("sale");

    // Assert: one attempt during the outage, pending the backoff on the injected clock ...
    let pending = wait_for(app, "crm", |d| d.len() == 1 && d[0].attempts == 1).await;
    assert_eq!(pending[0].state, proto::DeliveryState::Pending as i32);
    assert_eq!(pending[0].last_status_code, 503);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        receiver.seen.lock().unwrap().len(),
        1,
        "no retry before the backoff"
    );

    // ... delivered once the receiver is back and the backoff has passed.
    receiver.status.store(200, Ordering::SeqCst);
    app.clock.advance(chrono::Duration::seconds(2));
    let delivered = wait_for(app, "crm", |d| {
        d[0].state == proto::DeliveryState::Delivered as i32
    })
    .await;
    assert_eq!(
        (delivered[0].attempts, delivered[0].last_status_code),
        (2, 200)
    );

    let seen = receiver.seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 2);
    for (signature, body) in &seen {
        assert!(
            signed(&created.secret, signature, body),
            "{signature} {body}"
        );
        assert!(!signed("whsec_wrong", signature, body));
    }
    assert_eq!(seen[0].1, seen[1].1, "the same event, the same body");
    let event: serde_json::Value = serde_json::from_str(&seen[0].1).unwrap();
    assert_eq!(event["type"], "points.earned");
    assert_eq!(event["memberId"], member_id.as_str());
    assert_eq!(event["eventId"], delivered[0].event_id.as_str());
    assert_eq!(event["data"]["order_id"], order.order_id.as_str());
    assert_eq!(event["data"]["points"], order.points_earned);
    assert_eq!(event["seq"], delivered[0].seq.to_string());

    // Disabled, it gets nothing more.
    app.admin
        .events()
        .update_webhook(proto::UpdateWebhookRequest {
            request_id: "off".into(),
            webhook: Some(proto::Webhook {
                webhook_id: "crm".into(),
                enabled: Some(false),
                ..Default::default()
            }),
            update_mask: Some(prost_types::FieldMask {
                paths: vec!["enabled".into()],
            }),
        })
        .await
        .expect("disable");
    app.record_sale(store_sale("s2", "0002", member_ref(&member_id), "1000", 0))
        .await
        .expect("sale");
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(deliveries(app, "crm").await.len(), 1);
}

async fn bad_webhooks_are_refused_and_write_nothing(app: &TestApp) {
    let refused = create_webhook(app, "b1", "bad", "ftp://example.com/hook")
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::InvalidArgument);
    assert_eq!(violated_fields(&refused), ["webhook.url"]);
    let refused = create_webhook(app, "b2", "bad id!", "not a url")
        .await
        .unwrap_err();
    assert_eq!(
        violated_fields(&refused),
        ["webhook.webhook_id", "webhook.url"]
    );
    let listed = app
        .admin
        .events()
        .list_webhooks(proto::ListWebhooksRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert!(listed.webhooks.is_empty(), "nothing written");

    create_webhook(app, "g1", "good", "http://127.0.0.1:9/hook")
        .await
        .expect("webhook");
    let taken = create_webhook(app, "g2", "good", "http://127.0.0.1:9/hook")
        .await
        .unwrap_err();
    assert_refused(&taken, Code::AlreadyExists, "WEBHOOK_EXISTS");
    let denied = app
        .checkout
        .events()
        .list_webhooks(proto::ListWebhooksRequest::default())
        .await
        .unwrap_err();
    assert_eq!(denied.code(), Code::PermissionDenied);
}

/// At least once across a crash: `omo serve` is SIGKILLed while its POST is in flight (the
/// receiver holds it unanswered); the server started again over the same database delivers
/// the event once the dead worker's claim lapses.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_sigkill_mid_delivery_loses_nothing_sqlite() {
    sigkill_mid_delivery(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_sigkill_mid_delivery_loses_nothing_postgres() {
    sigkill_mid_delivery(Backend::Postgres).await;
}

async fn sigkill_mid_delivery(backend: Backend) {
    let Some((url, _database)) = fresh_database(backend).await else {
        return;
    };
    omo_cli(&["migrate", "--database-url", &url]);
    let keys = CliKeys::create(&url);
    let (receiver, addr) = start_receiver(200).await;
    receiver.hang.store(true, Ordering::SeqCst);
    let server = serve(&url, &[]).await;
    let clients = RoleClients::connect(server.endpoint(), &keys).await;
    create_store_as(&clients.admin, "shibuya").await;
    clients
        .admin
        .events()
        .create_webhook(proto::CreateWebhookRequest {
            request_id: "w".into(),
            webhook: Some(proto::Webhook {
                webhook_id: "crm".into(),
                url: format!("http://{addr}/hook"),
                types: vec!["points.earned".into()],
                ..Default::default()
            }),
        })
        .await
        .expect("webhook");
    let member_id = create_member_as(&clients.admin, "killed").await;
    clients
        .register
        .checkout()
        .record_sale(store_sale("k1", "0001", member_ref(&member_id), "1000", 0))
        .await
        .expect("sale");

    // The POST is in flight (held by the receiver): kill the server.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while receiver.seen.lock().unwrap().is_empty() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no delivery attempt"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    server.kill().expect("SIGKILL");

    // Started again, it delivers once the dead worker's claim lapses.
    let server = serve(&url, &[]).await;
    let admin = RoleClients::connect(server.endpoint(), &keys).await.admin;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let delivered = loop {
        let deliveries = admin
            .events()
            .list_webhook_deliveries(proto::ListWebhookDeliveriesRequest {
                webhook_id: "crm".into(),
                ..Default::default()
            })
            .await
            .expect("deliveries")
            .into_inner()
            .deliveries;
        if deliveries
            .first()
            .is_some_and(|d| d.state == proto::DeliveryState::Delivered as i32)
        {
            break deliveries;
        }
        assert!(tokio::time::Instant::now() < deadline, "{deliveries:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(delivered.len(), 1);
    let seen = receiver.seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 2, "the attempt cut off, then the one delivered");
    assert_eq!(seen[0].1, seen[1].1, "the same event");
    let event: serde_json::Value = serde_json::from_str(&seen[1].1).unwrap();
    assert_eq!(event["eventId"], delivered[0].event_id.as_str());
    drop(server);
}

/// https delivery: the receiver's certificate is signed by a private CA that the server is
/// told to trust (`--webhook-ca-file`); the POST arrives over TLS, signed.
mod https_delivery {
    use std::sync::{Arc, Mutex};

    use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio_rustls::{
        TlsAcceptor,
        rustls::{
            ServerConfig,
            crypto::ring,
            pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject as _},
        },
    };

    use super::*;
    use crate::helpers::spawn_app_with;

    type Seen = Arc<Mutex<Vec<(String, String)>>>;

    /// A CA (PEM) and a certificate and key for localhost that it signed.
    fn pki() -> (String, String, String) {
        let ca_key = KeyPair::generate().expect("key");
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("params");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca = ca_params.self_signed(&ca_key).expect("CA");
        let issuer = Issuer::new(ca_params, ca_key);
        let key = KeyPair::generate().expect("key");
        let leaf = CertificateParams::new(vec!["localhost".to_string()])
            .expect("params")
            .signed_by(&key, &issuer)
            .expect("signed");
        (ca.pem(), leaf.pem(), key.serialize_pem())
    }

    /// An https receiver on localhost answering 204 to every POST; what it saw.
    async fn receiver(cert: &str, key: &str) -> (Seen, u16) {
        let chain = CertificateDer::pem_slice_iter(cert.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .expect("chain");
        let key = PrivateKeyDer::from_pem_slice(key.as_bytes()).expect("key");
        let config = ServerConfig::builder_with_provider(Arc::new(ring::default_provider()))
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .expect("config");
        let acceptor = TlsAcceptor::from(Arc::new(config));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let seen = Seen::default();
        let kept = seen.clone();
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let (acceptor, seen) = (acceptor.clone(), kept.clone());
                tokio::spawn(async move {
                    let Ok(mut tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let mut request = Vec::new();
                    let mut buffer = [0u8; 4096];
                    // Headers, then as much body as content-length says.
                    loop {
                        let Ok(n) = tls.read(&mut buffer).await else {
                            return;
                        };
                        if n == 0 {
                            return;
                        }
                        request.extend_from_slice(&buffer[..n]);
                        let text = String::from_utf8_lossy(&request).to_string();
                        let Some((head, body)) = text.split_once("\r\n\r\n") else {
                            continue;
                        };
                        let header = |name: &str| {
                            head.lines()
                                .find_map(|line| {
                                    let (key, value) = line.split_once(':')?;
                                    key.eq_ignore_ascii_case(name)
                                        .then(|| value.trim().to_string())
                                })
                                .unwrap_or_default()
                        };
                        let length: usize = header("content-length").parse().unwrap_or(0);
                        if body.len() < length {
                            continue;
                        }
                        seen.lock()
                            .unwrap()
                            .push((header("omo-signature"), body.to_string()));
                        let _ = tls
                            .write_all(b"HTTP/1.1 204 No Content\r\ncontent-length: 0\r\n\r\n")
                            .await;
                        let _ = tls.shutdown().await;
                        return;
                    }
                });
            }
        });
        (seen, port)
    }

    async fn scenario(backend: Backend) {
        let (ca, cert, key) = pki();
        let dir = std::env::temp_dir().join(format!("omo-webhook-ca-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let ca_file = dir.join(format!("ca-{backend:?}.pem"));
        std::fs::write(&ca_file, &ca).unwrap();
        let Some(app) = spawn_app_with(backend, |config| {
            config.webhook_ca_file = Some(ca_file.clone());
        })
        .await
        else {
            return;
        };
        let (seen, port) = receiver(&cert, &key).await;
        let url = format!("https://localhost:{port}/hook");
        let created = create_webhook(&app, "tls", "tls", &url)
            .await
            .expect("an https webhook");
        let member_id = app.create_member("tls-hooked").await;
        app.record_sale(store_sale("t1", "0001", member_ref(&member_id), "1000", 0))
            .await
            .expect("sale");
        let delivered = wait_for(&app, "tls", |d| {
            d.first()
                .is_some_and(|d| d.state == proto::DeliveryState::Delivered as i32)
        })
        .await;
        assert_eq!(delivered[0].last_status_code, 204);
        let seen = seen.lock().unwrap().clone();
        assert_eq!(seen.len(), 1);
        assert!(signed(&created.secret, &seen[0].0, &seen[0].1), "{seen:?}");
        let _ = std::fs::remove_file(&ca_file);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn sqlite() {
        scenario(Backend::Sqlite).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn postgres() {
        scenario(Backend::Postgres).await;
    }
}
