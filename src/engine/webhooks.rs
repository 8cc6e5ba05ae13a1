//! Webhooks (issue #22): the admin's subscriptions, and the worker that delivers the event
//! feed to them. Delivery reads the same numbered stream as WatchEvents, so a webhook gets
//! every committed event of its types, at least once:
//!
//! 1. plan: under the webhook row's lock, a delivery row per matching event after the
//!    webhook's cursor, and the cursor moved, in one transaction (replicas plan each once);
//! 2. claim: due PENDING deliveries, their next attempt moved a lease ahead in the same
//!    statement (PostgreSQL skips rows another replica holds), committed before sending;
//! 3. send (10 s at most, a round's attempts at once), then record them in one transaction:
//!    DELIVERED on a 2xx, else the next try after the backoff (`Delivery::attempted`). A crash between 2 and 3 leaves the delivery
//!    due again when the lease ends: it is sent again (the receiver drops it by event_id).
//!
//! Times come from the injected clock (the tests move it through an outage's backoff).

use std::time::Duration as StdDuration;

use std::sync::Arc;

use bytes::Bytes;
use chrono::{DateTime, Duration, Utc};
use http_body_util::Full;
use hyper_util::{
    client::legacy::Client as HttpClient,
    rt::{TokioExecutor, TokioIo},
};
use tokio_rustls::rustls::{
    ClientConfig, RootCertStore,
    crypto::ring,
    pki_types::{CertificateDer, ServerName},
};

use super::{Engine, EngineError};
use crate::domain::{
    DomainError,
    event::{Event, EventFilter},
    ids,
    webhook::{self, Delivery, DeliveryState, Webhook, WebhookRecord},
};

/// How long one attempt may take before it counts as no answer.
const ATTEMPT_TIMEOUT: StdDuration = StdDuration::from_secs(10);
/// A claimed attempt's lease: longer than an attempt (10 s), so that only a dead worker's
/// claim lapses; short, so that its delivery is tried again soon after.
const LEASE_SECONDS: i64 = 15;
/// Events planned per webhook, and attempts claimed, per round.
const PLAN_PAGE: i64 = 500;
const CLAIM_PAGE: i64 = 200;
/// Attempts a worker makes at once.
const PARALLEL_SENDS: usize = 8;
/// Widest span of seqs a round reads in one query.
const MAX_SPAN: i64 = 5_000;
/// Least time between two rounds of the worker.
const MIN_ROUND_GAP: StdDuration = StdDuration::from_millis(50);

type Http = HttpClient<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>>;

/// The worker's HTTP client: `http://` through a pool of kept connections; `https://` over
/// rustls (the TLS stack tonic already brings), a connection per attempt, trusting the
/// Mozilla roots (webpki-roots) and the certificates of `--webhook-ca-file` (a private CA).
pub(super) struct Sender {
    http: Http,
    /// Extra roots, set once at start; the TLS client is made on first use.
    extra_roots: std::sync::OnceLock<Vec<CertificateDer<'static>>>,
    tls: std::sync::OnceLock<tokio_rustls::TlsConnector>,
}

impl Default for Sender {
    fn default() -> Self {
        Sender {
            http: HttpClient::builder(TokioExecutor::new()).build_http(),
            extra_roots: std::sync::OnceLock::new(),
            tls: std::sync::OnceLock::new(),
        }
    }
}

impl std::fmt::Debug for Sender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sender").finish_non_exhaustive()
    }
}

type Failure = Box<dyn std::error::Error + Send + Sync>;

impl Engine {
    /// Certificates https webhook deliveries trust besides the public roots
    /// (`--webhook-ca-file`); at start, before the first delivery.
    pub fn trust_webhook_roots(&self, roots: Vec<CertificateDer<'static>>) {
        self.webhook_sender.trust(roots);
    }
}

impl Sender {
    /// Trusts these certificates too (`--webhook-ca-file`); before the first delivery.
    pub(super) fn trust(&self, roots: Vec<CertificateDer<'static>>) {
        let _ = self.extra_roots.set(roots);
    }

    fn tls(&self) -> &tokio_rustls::TlsConnector {
        self.tls.get_or_init(|| {
            let mut roots = RootCertStore::empty();
            roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
            for cert in self.extra_roots.get().into_iter().flatten() {
                if let Err(error) = roots.add(cert.clone()) {
                    tracing::warn!(%error, "--webhook-ca-file: a certificate is not a CA");
                }
            }
            let config = ClientConfig::builder_with_provider(Arc::new(ring::default_provider()))
                .with_safe_default_protocol_versions()
                .expect("ring supports the default TLS versions")
                .with_root_certificates(roots)
                .with_no_client_auth();
            tokio_rustls::TlsConnector::from(Arc::new(config))
        })
    }

    async fn send(&self, request: http::Request<Full<Bytes>>) -> Result<u16, Failure> {
        if request.uri().scheme_str() != Some("https") {
            return Ok(self.http.request(request).await?.status().as_u16());
        }
        let uri = request.uri().clone();
        let host = uri.host().ok_or("no host")?.to_string();
        let port = uri.port_u16().unwrap_or(443);
        let tcp = tokio::net::TcpStream::connect((host.as_str(), port)).await?;
        let name = ServerName::try_from(host.trim_matches(['[', ']']).to_string())?;
        let stream = self.tls().connect(name, tcp).await?;
        let (mut sender, connection) =
            hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        // Drives the connection until the answer is read; it ends with the sender.
        tokio::spawn(connection);
        let (mut parts, body) = request.into_parts();
        let authority = uri
            .authority()
            .map(|a| a.as_str().to_string())
            .unwrap_or(host);
        parts.headers.insert(http::header::HOST, authority.parse()?);
        let path = uri.path_and_query().map_or("/", |p| p.as_str());
        parts.uri = path.parse()?;
        let response = sender
            .send_request(http::Request::from_parts(parts, body))
            .await?;
        Ok(response.status().as_u16())
    }
}

/// A webhook to create (CreateWebhook), with the request that asks for it.
#[derive(Debug, Clone)]
pub struct NewWebhook {
    pub webhook_id: String,
    pub url: String,
    pub types: Vec<String>,
    pub enabled: bool,
    /// The request's idempotency key and the hash of its body.
    pub request_id: String,
    pub request_hash: String,
}

/// UpdateWebhook: the fields of the mask, changed.
#[derive(Debug, Clone, Default)]
pub struct WebhookPatch {
    pub webhook_id: String,
    pub url: Option<String>,
    pub types: Option<Vec<String>>,
    pub enabled: Option<bool>,
}

impl Engine {
    /// CreateWebhook: the webhook and its secret (shown only here). A retry of the same
    /// request gets the same answer; another body under its request_id is
    /// IDEMPOTENCY_KEY_REUSED, another request for its webhook_id WEBHOOK_EXISTS. It delivers
    /// the events committed after it.
    pub async fn create_webhook(&self, new: NewWebhook) -> Result<(Webhook, String), EngineError> {
        let now = self.now();
        let mut uow = self.store().begin().await?;
        let cursor_seq = uow.number_events(0).await.unwrap_or(0);
        let record = WebhookRecord {
            webhook: Webhook {
                webhook_id: new.webhook_id.clone(),
                url: new.url,
                types: new.types,
                enabled: new.enabled,
                created_at: now,
                updated_at: now,
            },
            secret: ids::new_webhook_secret(),
            request_id: new.request_id.clone(),
            request_hash: new.request_hash.clone(),
            cursor_seq,
        };
        if uow.insert_webhook(&record).await? {
            uow.commit().await?;
            return Ok((record.webhook, record.secret));
        }
        let stored = uow
            .get_webhook(&new.webhook_id, false)
            .await?
            .ok_or(DomainError::WebhookNotFound)?;
        match (
            stored.request_id == new.request_id,
            stored.request_hash == new.request_hash,
        ) {
            (true, true) => Ok((stored.webhook, stored.secret)),
            (true, false) => Err(DomainError::IdempotencyKeyReused.into()),
            (false, _) => Err(DomainError::WebhookExists(new.webhook_id).into()),
        }
    }

    /// UpdateWebhook: url, types, enabled as the mask says.
    pub async fn update_webhook(&self, patch: WebhookPatch) -> Result<Webhook, EngineError> {
        let mut uow = self.store().begin().await?;
        let mut record = uow
            .get_webhook(&patch.webhook_id, true)
            .await?
            .ok_or(DomainError::WebhookNotFound)?;
        let w = &mut record.webhook;
        if let Some(url) = patch.url {
            w.url = url;
        }
        if let Some(types) = patch.types {
            w.types = types;
        }
        if let Some(enabled) = patch.enabled {
            w.enabled = enabled;
        }
        w.updated_at = self.now();
        uow.update_webhook(&record).await?;
        uow.commit().await?;
        Ok(record.webhook)
    }

    pub async fn list_webhooks(&self) -> Result<Vec<Webhook>, EngineError> {
        let mut uow = self.store().begin_read().await?;
        let records = uow.list_webhooks().await?;
        Ok(records.into_iter().map(|r| r.webhook).collect())
    }

    /// ListWebhookDeliveries: a webhook's deliveries by seq.
    pub async fn list_deliveries(
        &self,
        webhook_id: &str,
        state: Option<DeliveryState>,
        after_seq: i64,
        limit: i64,
    ) -> Result<Vec<Delivery>, EngineError> {
        let mut uow = self.store().begin_read().await?;
        if uow.get_webhook(webhook_id, false).await?.is_none() {
            return Err(DomainError::WebhookNotFound.into());
        }
        Ok(uow
            .list_deliveries(webhook_id, state, after_seq, limit)
            .await?)
    }

    /// The worker, until the task is aborted: a round whenever the relay numbers events, and
    /// every `interval` for retries that fall due.
    pub async fn run_webhook_worker(&self, interval: StdDuration) {
        let mut numbered = self.watch_event_seq();
        loop {
            if let Err(error) = self.deliver_webhooks().await {
                tracing::error!(%error, "webhook delivery round failed");
            }
            // Under load a round takes the events of many batches: its few transactions
            // (plan, claim, record) are not paid per batch of sales.
            tokio::time::sleep(MIN_ROUND_GAP).await;
            let _ = tokio::time::timeout(interval, numbered.changed()).await;
        }
    }

    /// One round: plan what is new for every enabled webhook, then make every due attempt.
    /// Returns the attempts made.
    pub async fn deliver_webhooks(&self) -> Result<usize, EngineError> {
        let webhooks = {
            let mut uow = self.store().begin_read_statement().await?;
            uow.list_webhooks().await?
        };
        if webhooks.is_empty() {
            // No write transaction at all (on SQLite it would queue behind the writers).
            return Ok(0);
        }
        let mut secrets = std::collections::HashMap::new();
        for record in webhooks {
            if record.webhook.enabled {
                self.plan_deliveries(&record.webhook.webhook_id).await?;
            }
            secrets.insert(record.webhook.webhook_id.clone(), record);
        }
        let mut attempts = 0;
        loop {
            let now = self.now();
            let claimed = {
                let mut uow = self.store().begin().await?;
                let lease = now + Duration::seconds(LEASE_SECONDS);
                let claimed = uow.claim_deliveries(now, lease, CLAIM_PAGE).await?;
                uow.commit().await?;
                claimed
            };
            if claimed.is_empty() {
                self.measure_pending().await?;
                return Ok(attempts);
            }
            let events = self.events_of(&claimed).await?;
            let sends = claimed.into_iter().filter_map(|delivery| {
                let record = secrets.get(&delivery.webhook_id)?.clone();
                let event = events.get(&delivery.seq).cloned();
                Some(self.attempt(record, delivery, event))
            });
            // A few at once: each receiver gets a handful of kept-alive connections, not one
            // per delivery of the round.
            use futures_util::stream::StreamExt as _;
            let outcomes: Vec<Result<Delivery, EngineError>> = futures_util::stream::iter(sends)
                .buffer_unordered(PARALLEL_SENDS)
                .collect()
                .await;
            let outcomes: Vec<Delivery> = outcomes.into_iter().collect::<Result<_, _>>()?;
            // The round's attempts recorded in one transaction (one commit, not one each).
            let mut uow = self.store().begin().await?;
            for delivery in &outcomes {
                uow.save_delivery(delivery).await?;
            }
            uow.commit().await?;
            attempts += outcomes.len();
        }
    }

    /// `omo_webhook_oldest_pending_seconds`: how long the oldest pending delivery has waited.
    async fn measure_pending(&self) -> Result<(), EngineError> {
        let mut uow = self.store().begin_read_statement().await?;
        let oldest = uow.oldest_pending_delivery().await?;
        let waited = oldest.map_or(0, |at| (self.now() - at).num_seconds().max(0));
        crate::metrics::webhook_oldest_pending(waited);
        Ok(())
    }

    /// Plans one webhook's deliveries of the events numbered since its cursor.
    async fn plan_deliveries(&self, webhook_id: &str) -> Result<(), EngineError> {
        let until_seq = *self.events_seq.borrow();
        let mut uow = self.store().begin().await?;
        let Some(mut record) = uow.get_webhook(webhook_id, true).await? else {
            return Ok(());
        };
        if !record.webhook.enabled || record.cursor_seq >= until_seq {
            return Ok(());
        }
        let filter = EventFilter {
            after_seq: record.cursor_seq,
            types: record.webhook.types.clone(),
            member_id: String::new(),
            limit: PLAN_PAGE,
            until_seq,
        };
        let events = uow.list_events(&filter).await?;
        let now = self.now();
        let deliveries: Vec<Delivery> = events
            .iter()
            .map(|event| Delivery::new(webhook_id, event, now))
            .collect();
        uow.insert_deliveries(&deliveries).await?;
        record.cursor_seq = if events.len() < PLAN_PAGE as usize {
            until_seq
        } else {
            events.last().map_or(until_seq, |e| e.seq)
        };
        uow.update_webhook(&record).await?;
        uow.commit().await?;
        Ok(())
    }

    /// One attempt of one delivery: the delivery as it now stands, to record.
    async fn attempt(
        &self,
        record: WebhookRecord,
        delivery: Delivery,
        event: Option<Event>,
    ) -> Result<Delivery, EngineError> {
        let status = match event {
            Some(event) if record.webhook.enabled => self.post(&record, &event, self.now()).await,
            // Disabled since it was claimed (or the event is gone): tried again later.
            _ => 0,
        };
        let delivery = delivery.attempted(status, self.now());
        if delivery.state == DeliveryState::Failed {
            tracing::warn!(webhook_id = %delivery.webhook_id, seq = delivery.seq, "webhook delivery FAILED after 24 hours of retries");
        }
        Ok(delivery)
    }

    /// The events of a round's deliveries, read with one query over their seqs' span (a
    /// round is mostly the newest events; a span too wide is read event by event).
    async fn events_of(
        &self,
        deliveries: &[Delivery],
    ) -> Result<std::collections::HashMap<i64, Event>, EngineError> {
        let seqs: std::collections::BTreeSet<i64> = deliveries.iter().map(|d| d.seq).collect();
        let (Some(&first), Some(&last)) = (seqs.first(), seqs.last()) else {
            return Ok(Default::default());
        };
        let spans: Vec<(i64, i64)> = if last - first < MAX_SPAN {
            vec![(first, last)]
        } else {
            seqs.iter().map(|&seq| (seq, seq)).collect()
        };
        let mut events = std::collections::HashMap::new();
        for (from, to) in spans {
            let filter = EventFilter {
                after_seq: from - 1,
                limit: to - from + 1,
                until_seq: to,
                ..EventFilter::default()
            };
            for event in self.list_events(&filter).await? {
                if seqs.contains(&event.seq) {
                    events.insert(event.seq, event);
                }
            }
        }
        Ok(events)
    }

    /// POSTs the event, signed; the HTTP status, or 0 for no answer within 10 s.
    async fn post(&self, record: &WebhookRecord, event: &Event, at: DateTime<Utc>) -> i32 {
        let body = webhook::event_json(event);
        let signature = webhook::signature(&record.secret, at, &body);
        let request = http::Request::post(&record.webhook.url)
            .header(http::header::CONTENT_TYPE, "application/json")
            .header("omo-signature", signature)
            .header("omo-event-id", &event.event_id)
            .body(Full::new(Bytes::from(body)));
        let Ok(request) = request else {
            return 0;
        };
        match tokio::time::timeout(ATTEMPT_TIMEOUT, self.webhook_sender.send(request)).await {
            Ok(Ok(status)) => i32::from(status),
            Ok(Err(error)) => {
                tracing::debug!(%error, url = %record.webhook.url, "webhook attempt failed");
                0
            }
            Err(_) => 0,
        }
    }
}
