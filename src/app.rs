//! `Application::build(config)` → a bound server: used by `omo serve`, `omo demo` and tests.

use std::{net::SocketAddr, sync::Arc, time::Duration};

use tokio::{net::TcpListener, sync::oneshot, task::JoinHandle};
use tonic::transport::server::TcpIncoming;

use crate::{
    config::Config,
    dashboard,
    domain::{Clock, ports::StoreError},
    engine::Engine,
    grpc,
    metrics::{self, MetricsError, MetricsExporter},
    store,
};

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("database: {0}")]
    Store(#[from] StoreError),
    #[error("cannot listen: {0}")]
    Io(#[from] std::io::Error),
    #[error("gRPC server: {0}")]
    Transport(#[from] tonic::transport::Error),
    #[error("--cors-origin: {0}")]
    CorsOrigin(String),
    #[error("metrics: {0}")]
    Metrics(#[from] MetricsError),
    #[error("rebuilding the report summaries: {0}")]
    Rebuild(#[from] crate::engine::EngineError),
    #[error(transparent)]
    SealKey(#[from] crate::config::SealKeyError),
    /// `--http` off loopback without TLS: admin keys and session cookies would cross the
    /// network in clear text.
    #[error(
        "--http {0}: the dashboard is served in clear text only on a loopback address \
         (127.0.0.1, ::1); give --tls-cert and --tls-key to serve it on {0}, or put it \
         behind a TLS proxy on this host"
    )]
    InsecureDashboard(SocketAddr),
}

/// How often the event relay looks for events another replica committed (this replica's
/// commits wake it at once).
const EVENT_RELAY_TICK: Duration = Duration::from_millis(100);
/// How often the webhook worker looks for retries that fell due (new events wake it at once).
const WEBHOOK_TICK: Duration = Duration::from_millis(200);

/// Whether clients reach `addr` only from this machine.
fn is_loopback(addr: SocketAddr) -> bool {
    addr.ip().is_loopback()
}

/// A running omo server.
pub struct Application {
    engine: Arc<Engine>,
    local_addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    server: JoinHandle<Result<(), tonic::transport::Error>>,
    sweeper: Option<JoinHandle<()>>,
    sealer: Option<JoinHandle<()>>,
    /// Numbers committed events and wakes the watchers (`engine::events`).
    relay: Option<JoinHandle<()>>,
    /// Delivers the event feed to the webhooks (`engine::webhooks`).
    webhooks: Option<JoinHandle<()>>,
    /// The `/metrics` listener (`--metrics-listen`), stopped with the server.
    metrics: Option<MetricsExporter>,
    /// The dashboard (`--http`): its address, and what stops it.
    http: Option<(SocketAddr, oneshot::Sender<()>)>,
    /// Turns the health service NOT_SERVING at shutdown.
    health: tonic_health::server::HealthReporter,
    /// How long calls in flight may take to finish at shutdown (`--shutdown-grace-s`).
    shutdown_grace: Duration,
}

impl Application {
    /// Opens the database (running migrations), binds the listener and starts serving.
    pub async fn build(config: &Config, clock: Arc<dyn Clock>) -> Result<Self, AppError> {
        if let Some(addr) = config.http
            && config.tls.tls_cert.is_none()
            && !is_loopback(addr)
        {
            return Err(AppError::InsecureDashboard(addr));
        }
        // Read before anything else, so that a missing or exposed key stops the server at once.
        let seal_key = config
            .seal_key_file
            .as_deref()
            .map(crate::config::read_seal_key)
            .transpose()?;
        let webhook_roots = config
            .webhook_ca_file
            .as_deref()
            .map(|path| {
                use tokio_rustls::rustls::pki_types::{CertificateDer, pem::PemObject as _};
                CertificateDer::pem_file_iter(path)
                    .and_then(Iterator::collect::<Result<Vec<_>, _>>)
                    .map_err(|e| {
                        std::io::Error::new(
                            std::io::ErrorKind::InvalidData,
                            format!("--webhook-ca-file {}: {e}", path.display()),
                        )
                    })
            })
            .transpose()?;
        let store = store::open(config.database.database_url.expose()).await?;
        let writers = config.writers.unwrap_or_else(|| store.parallel_writers());
        let engine = Arc::new(Engine::new(store, clock, writers));
        engine.rebuild_reports_if_wanted().await?;
        engine.adopt_legacy_rules().await?;
        engine.adopt_campaign_stock().await?;
        if let Some(roots) = webhook_roots {
            engine.trust_webhook_roots(roots);
        }
        let limits = &config.limits;
        engine.set_rate_limits(limits);
        engine.set_idempotency_retention_days(config.idempotency_retention_days);
        engine.set_retention_days(config.retention_days);
        engine.set_event_retention_days(config.event_retention_days);
        if let Some(key) = seal_key {
            engine.set_seal_key(key);
        }
        let tls = grpc::tls::server_config(&config.tls)?;
        let listener = TcpListener::bind(config.listen).await?;
        let local_addr = listener.local_addr()?;
        if tls.is_none() && !is_loopback(local_addr) {
            tracing::warn!(
                %local_addr,
                "serving without TLS on a non-loopback address: API keys and personal data \
                 cross the network in clear text; use --tls-cert and --tls-key"
            );
        }
        let metrics_listen = config.observability.metrics_listen;
        let metrics = metrics_listen.map(metrics::serve).transpose()?;
        let http = match config.http {
            Some(addr) => Some(dashboard::serve(engine.clone(), addr, &config.tls).await?),
            None => None,
        };
        let (stop, stopped) = oneshot::channel::<()>();
        let (routes, health) = grpc::routes(engine.clone(), limits.max_message_bytes).await;
        let seconds = |s: u64| (s > 0).then(|| Duration::from_secs(s));
        let cors = grpc::cors(&config.cors_origins)?;
        // HTTP/1.1 as well as HTTP/2: Connect's JSON and gRPC-Web come from browsers, curl and
        // proxies that speak HTTP/1.1; gRPC itself stays on HTTP/2.
        let mut builder = tonic::transport::Server::builder()
            .accept_http1(true)
            .max_concurrent_streams(limits.max_concurrent_streams)
            .http2_keepalive_interval(seconds(limits.keepalive_interval_s))
            .http2_keepalive_timeout(seconds(limits.keepalive_timeout_s));
        if limits.request_timeout_ms > 0 {
            builder = builder.timeout(Duration::from_millis(limits.request_timeout_ms));
        }
        if let Some(tls) = tls {
            builder = builder.tls_config(tls)?;
        }
        // Outermost first: CORS answers a browser's preflight; Connect calls become gRPC calls
        // and gRPC-Web ones too; then every call is observed as a gRPC call.
        let mut builder = builder
            .layer(tower::util::option_layer(cors))
            .layer(grpc::connect::ConnectLayer::new(limits.max_message_bytes))
            .layer(tonic_web::GrpcWebLayer::new())
            .layer(grpc::observe::ObserveLayer);
        // TCP_NODELAY on every accepted connection (the builder's own option only applies to
        // a listener tonic binds): without it a reply written in more than one piece waited
        // for the client's delayed ACK, 40 ms on Linux (GetLiability took 48 ms, 5 of them
        // working).
        let incoming = TcpIncoming::from(listener).with_nodelay(Some(config.tcp_nodelay));
        let server = tokio::spawn(builder.add_routes(routes).serve_with_incoming_shutdown(
            incoming,
            async {
                let _ = stopped.await;
            },
        ));
        let sweeper = (config.sweep_interval_ms > 0).then(|| {
            let engine = engine.clone();
            let interval = Duration::from_millis(config.sweep_interval_ms);
            tokio::spawn(async move { engine.run_sweeper(interval).await })
        });
        let sealer = (config.seal_interval_ms > 0).then(|| {
            let engine = engine.clone();
            let interval = Duration::from_millis(config.seal_interval_ms);
            tokio::spawn(async move { engine.run_sealer(interval).await })
        });
        let relay = Some({
            let engine = engine.clone();
            tokio::spawn(async move { engine.run_event_relay(EVENT_RELAY_TICK).await })
        });
        let webhooks = Some({
            let engine = engine.clone();
            tokio::spawn(async move { engine.run_webhook_worker(WEBHOOK_TICK).await })
        });
        tracing::info!(
            %local_addr,
            backend = engine.backend_name(),
            tls = config.tls.tls_cert.is_some(),
            mutual_tls = config.tls.tls_client_ca.is_some(),
            metrics = metrics_listen.map(tracing::field::display),
            http = http.as_ref().map(|(addr, _)| tracing::field::display(addr)),
            keyed_seals = config.seal_key_file.is_some(),
            "omo serving"
        );
        Ok(Application {
            engine,
            local_addr,
            stop: Some(stop),
            server,
            sweeper,
            sealer,
            relay,
            webhooks,
            metrics,
            http,
            health,
            shutdown_grace: Duration::from_secs(config.shutdown_grace_s),
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// `http://127.0.0.1:PORT`, for clients.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.local_addr)
    }

    /// Where the dashboard listens (`--http`), if it does.
    pub fn http_addr(&self) -> Option<SocketAddr> {
        self.http.as_ref().map(|(addr, _)| *addr)
    }

    pub fn engine(&self) -> &Arc<Engine> {
        &self.engine
    }

    /// Serves until `signal` completes, then stops gracefully (in-flight calls finish).
    pub async fn run_until(
        mut self,
        signal: impl std::future::Future<Output = ()>,
    ) -> Result<(), AppError> {
        tokio::select! {
            () = signal => {}
            result = &mut self.server => {
                return result.expect("server task panicked").map_err(AppError::from);
            }
        }
        self.stop().await
    }

    /// Stops gracefully, within the shutdown grace: health turns NOT_SERVING; the sweeper and
    /// the sealer stop (an item cut short rolls back and the next sweep does it); the server
    /// accepts no more connections and sends GOAWAY (new calls are refused) while the calls in
    /// flight finish, and those still running when the grace ends are cut off. Then the
    /// writers finish the open batch and whatever is queued, and the database connections
    /// close.
    pub async fn stop(mut self) -> Result<(), AppError> {
        grpc::report_not_serving(&self.health).await;
        for task in [
            self.sweeper.take(),
            self.sealer.take(),
            self.relay.take(),
            self.webhooks.take(),
        ]
        .into_iter()
        .flatten()
        {
            task.abort();
        }
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some((_, stop)) = self.http.take() {
            let _ = stop.send(());
        }
        let grace = self.shutdown_grace;
        let served = match tokio::time::timeout(grace, &mut self.server).await {
            Ok(result) => result
                .expect("server task panicked")
                .map_err(AppError::from),
            Err(_) => {
                tracing::warn!(
                    ?grace,
                    "calls still in flight after the shutdown grace: cut off"
                );
                self.server.abort();
                Ok(())
            }
        };
        if tokio::time::timeout(grace, self.engine.shutdown())
            .await
            .is_err()
        {
            tracing::warn!(
                ?grace,
                "the writers did not finish within the shutdown grace"
            );
        }
        // Scraped until here: the last scrape sees the calls that finished during the grace.
        self.metrics.take();
        tracing::info!("omo stopped");
        served
    }
}

impl Drop for Application {
    fn drop(&mut self) {
        for task in [
            self.sweeper.take(),
            self.sealer.take(),
            self.relay.take(),
            self.webhooks.take(),
        ]
        .into_iter()
        .flatten()
        {
            task.abort();
        }
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some((_, stop)) = self.http.take() {
            let _ = stop.send(());
        }
    }
}
