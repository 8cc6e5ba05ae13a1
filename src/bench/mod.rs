//! `omo bench`: the load generator. It seeds a database by bulk SQL, starts `omo serve` as a
//! child process (or targets a running server), drives it over real gRPC from many concurrent
//! tasks, and reports ops/s, latency percentiles and errors per scenario, next to two
//! baselines measured the same way: the gRPC ceiling (a health check: what the transport alone
//! does on this machine) and the SQL floor (one durable transaction per request, no gRPC).
//!
//! Files: `setup.rs` prepares the database, keys and server; `seed.rs` is the bulk SQL;
//! `server.rs` the child process and its RSS; `scenarios.rs` the requests and the mix table;
//! `load.rs` the concurrent driver; `floor.rs` the SQL floor; `stats.rs` percentiles and the
//! report.

use std::{path::PathBuf, sync::Arc, time::Duration};

use crate::{config::DatabaseUrl, domain::ports::StoreError, engine::EngineError};

mod floor;
mod load;
mod scenarios;
mod seed;
mod server;
mod setup;
mod stats;

pub use scenarios::Scenario;
pub use server::ServerProcess;
pub use setup::SetupTimings;
pub use stats::{Environment, Ratio, Report, RssReport, ScenarioResult};

use scenarios::{GrpcWorker, Lane};
use server::RssSampler;
use setup::Setup;

/// Scenarios run in this order unless `--scenarios` says otherwise.
const DEFAULT_SCENARIOS: &str = "grpc-ceiling,sale,sale-json,checkout,balance,hot,mixed,sql-floor";

#[derive(Debug, Clone, clap::Args)]
#[command(after_long_help = "\
Without --target, the bench owns its database and starts from scratch:
  sqlite://FILE    FILE and its -wal/-shm files are DELETED, then re-created and seeded.
  postgres://…/DB  database DB is DROPPED and re-created (connecting to the `postgres`
                   database of the same server); DB must contain \"bench\" in its name.
It then seeds by bulk SQL, creates API keys, starts `omo serve` as a child process on a free
port, runs each scenario, and stops the child (SIGTERM) at the end, also on error.

With --target http://HOST:PORT, nothing is deleted: the given --api-key (an admin key) makes
the store `bench-store`, the campaign `bench-hot` (public code BENCHHOT) and the members
`bench-1..N` through the API (slow for many members; re-runs reuse them), every scenario calls
as that key, and the SQL floor and server RSS are not measured.

Scenarios: grpc-ceiling (health Check), sale (RecordSale earning and redeeming),
sale-json (the same RecordSale over Connect JSON on the same port and connections), checkout
(Authorize + Capture, EC), balance (GetBalance), hot (sales at one store with one public
coupon of a campaign whose stock every sale draws from, --hot-issue-limit), mixed (60% balance, 25% sale, 15% checkout), sql-floor (the database's own floor, no
gRPC and no engine: PostgreSQL one prepared single-row insert per transaction on --concurrency
connections, as pgbench measures it; SQLite one loop of BEGIN IMMEDIATE; insert; COMMIT, WAL and
synchronous=full), location (location reports near 100,000
seeded stores; not in the default list).
Report scenarios (ReportService as the admin key; not in the default list; a few loops are
what an operator's reports see, e.g. --concurrency 4): report-liability (GetLiability now),
report-campaign (GetCampaignStats of `bench-stats`, seeded with one coupon per member in every
state; with --target, of `bench-stats` if the server has it, else of `bench-hot`), report-activity (GetActivity over the last 365 days in
totals), report-activity-daily (the same by day at bench-store-1) and report-activity-month (the
last 30 days by day at every store, as the dashboard shows them). With --prefill-postings they read a year of
history; the summaries are rebuilt from the seeded ledger before the server starts.
ops/s counts successful operations; latency percentiles are over successful operations;
failures are counted by status code.")]
pub struct BenchArgs {
    /// Database the bench creates, seeds and serves (see below: it is wiped first).
    #[arg(long, default_value = "sqlite://omo-bench.db")]
    pub database_url: DatabaseUrl,
    /// Benchmark a running server (`http://127.0.0.1:50051`) instead of starting one.
    #[arg(long)]
    pub target: Option<String>,
    /// An admin API key of the --target server (only with --target).
    #[arg(long, env = "OMO_BENCH_API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,
    /// Members to seed, each with 1,000,000 points.
    #[arg(long, default_value_t = 100_000)]
    pub members: u64,
    /// Concurrent request loops (tokio tasks), also the SQL floor's concurrency.
    #[arg(long, default_value_t = 64)]
    pub concurrency: usize,
    /// How long each scenario runs: `10s`, `1.5s`, `500ms` (a bare number is seconds).
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub duration: Duration,
    /// Comma-separated scenarios to run, in order.
    #[arg(long, value_delimiter = ',', default_value = DEFAULT_SCENARIOS, value_parser = Scenario::parse)]
    pub scenarios: Vec<Scenario>,
    /// Historical postings to add by bulk SQL before the run: pairs that earn and redeem the
    /// same points (balances unchanged), one pair a minute over the past year, at 100 stores
    /// and on EC, so that costs can be compared as the journal grows and the reports have a
    /// year to sum.
    #[arg(long, default_value_t = 0)]
    pub prefill_postings: u64,
    /// HTTP/2 connections the tasks share (each multiplexes many concurrent calls; on 2
    /// cores 4 connections doubled the health-check ceiling of 1, and 8 did not beat 4).
    #[arg(long, default_value_t = 4)]
    pub channels: usize,
    /// PURCHASE rules to make before the scenarios run: the first doubles the points of the
    /// sales' lines (category "bench"), the others wait for lines no sale has. Every sale is
    /// decided against all of them and one fires (what a program with a few campaigns costs).
    #[arg(long, default_value_t = 0)]
    pub rules: usize,
    /// The hot campaign's issue limit (0: none). By default one no run reaches, as a real
    /// "while stocks last" campaign has: every `hot` sale draws its coupon from the campaign's
    /// stock (`domain::stock`). Compare `hot` with 0.
    #[arg(long, default_value_t = 100_000_000)]
    pub hot_issue_limit: i32,
    /// Subscribe one webhook to `points.earned` (a receiver inside the bench answering 204):
    /// compare `sale` with and without it.
    #[arg(long)]
    pub webhook: bool,
    /// Also write the report as JSON to this file.
    #[arg(long)]
    pub json: Option<PathBuf>,
}

#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error("{0}")]
    Usage(String),
    #[error("database: {0}")]
    Sql(#[from] sqlx::Error),
    #[error("store: {0}")]
    Store(#[from] StoreError),
    #[error("engine: {0}")]
    Engine(#[from] Box<EngineError>),
    #[error("gRPC transport: {0}")]
    Transport(#[from] tonic::transport::Error),
    #[error("setup call {call} failed: {status}")]
    Setup {
        call: &'static str,
        status: Box<tonic::Status>,
    },
    #[error("server process: {0}")]
    Server(String),
    #[error("a load task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    #[error("writing JSON: {0}")]
    Json(#[from] serde_json::Error),
    #[error("interrupted")]
    Interrupted,
}

impl BenchError {
    fn setup(call: &'static str, status: tonic::Status) -> Self {
        BenchError::Setup {
            call,
            status: Box::new(status),
        }
    }
}

/// Parses `10s`, `1.5s`, `500ms` or `10` (seconds).
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let (number, scale_s) = if let Some(ms) = text.strip_suffix("ms") {
        (ms, 0.001)
    } else {
        (text.strip_suffix('s').unwrap_or(text), 1.0)
    };
    let value: f64 = number
        .trim()
        .parse()
        .map_err(|_| format!("{text:?} is not a duration like 10s or 500ms"))?;
    if !(value.is_finite() && value > 0.0) {
        return Err(format!("{text:?}: a duration must be positive"));
    }
    Ok(Duration::from_secs_f64(value * scale_s))
}

impl BenchArgs {
    fn check(&self) -> Result<(), BenchError> {
        let usage = |why: &str| Err(BenchError::Usage(why.to_string()));
        if self.concurrency == 0 || self.channels == 0 {
            return usage("--concurrency and --channels must be at least 1");
        }
        if self.members == 0 {
            return usage("--members must be at least 1");
        }
        match (&self.target, &self.api_key) {
            (Some(_), None) => usage("--target needs --api-key (an admin key of that server)"),
            (None, Some(_)) => usage("--api-key is only used with --target"),
            (Some(_), Some(_)) if self.prefill_postings > 0 => {
                usage("--prefill-postings writes by SQL: it cannot be used with --target")
            }
            _ => Ok(()),
        }
    }
}

/// Runs the whole benchmark and returns its report (also written as JSON with `--json`).
/// The child server is stopped on every way out, Ctrl-C included.
pub async fn run(args: BenchArgs) -> Result<Report, BenchError> {
    args.check()?;
    let report = tokio::select! {
        report = bench(&args) => report?,
        _ = tokio::signal::ctrl_c() => return Err(BenchError::Interrupted),
    };
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_string_pretty(&report)?)?;
    }
    Ok(report)
}

async fn bench(args: &BenchArgs) -> Result<Report, BenchError> {
    let setup = match &args.target {
        Some(endpoint) => setup::remote(args, endpoint).await?,
        None => setup::local(args).await?,
    };
    let lanes = Lane::connect_all(&setup.endpoint, &setup.keys, args.channels).await?;
    let mut results = Vec::new();
    let mut server_rss = None;
    for &scenario in &args.scenarios {
        eprintln!(
            "omo bench: {} for {:.1} s ...",
            scenario.name(),
            args.duration.as_secs_f64()
        );
        let result = match scenario {
            Scenario::SqlFloor if setup.server.is_none() => {
                eprintln!("omo bench: sql-floor needs the database; skipped with --target");
                continue;
            }
            Scenario::SqlFloor => floor::run(args).await?,
            Scenario::Mixed => {
                let sampler = setup.server.as_ref().map(|s| RssSampler::start(s.pid()));
                let result = grpc_scenario(args, &setup, &lanes, scenario).await?;
                if let Some(sampler) = sampler {
                    server_rss = Some(sampler.stop().await?);
                }
                result
            }
            _ => {
                if scenario.is_report() {
                    describe_report(&setup, &lanes, scenario).await;
                }
                grpc_scenario(args, &setup, &lanes, scenario).await?
            }
        };
        results.push(result);
    }
    let environment = Environment::new(args, setup.backend.clone(), &setup.timings);
    let report = Report::new(environment, results, server_rss);
    if let Some(receiver) = &setup.webhook_receiver {
        let received = receiver.received.load(std::sync::atomic::Ordering::Relaxed);
        eprintln!("omo bench: the webhook receiver got {received} deliveries");
    }
    if let Some(server) = setup.server {
        server.stop()?;
    }
    Ok(report)
}

async fn grpc_scenario(
    args: &BenchArgs,
    setup: &Setup,
    lanes: &[Lane],
    scenario: Scenario,
) -> Result<ScenarioResult, BenchError> {
    let nonce = format!("{:016x}", rand::random::<u64>());
    let workers: Vec<GrpcWorker> = (0..args.concurrency)
        .map(|task| {
            let lane = lanes[task % lanes.len()].clone();
            let members = Arc::clone(&setup.members);
            GrpcWorker::new(lane, scenario, members, setup.reports.clone(), &nonce, task)
        })
        .collect();
    let (sample, elapsed) = load::drive(workers, args.duration).await?;
    Ok(ScenarioResult::new(scenario.name(), sample, elapsed))
}

/// Prints what a report scenario's answer holds before its latencies are measured. A refused
/// call is printed too, not fatal: the scenario then counts its failures by status like any.
async fn describe_report(setup: &Setup, lanes: &[Lane], scenario: Scenario) {
    let members = Arc::clone(&setup.members);
    let mut worker = GrpcWorker::new(
        lanes[0].clone(),
        scenario,
        members,
        setup.reports.clone(),
        "describe",
        0,
    );
    match worker.describe_report(scenario).await {
        Ok(Some(description)) => eprintln!("omo bench: {description}"),
        Ok(None) => {}
        Err(status) => eprintln!(
            "omo bench: {} refused its first call: {} {}",
            scenario.name(),
            scenarios::error_key(&status),
            status.message()
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_seconds_and_milliseconds() {
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("3"), Ok(Duration::from_secs(3)));
        assert!(parse_duration("0s").is_err());
        assert!(parse_duration("ten").is_err());
        assert!(parse_duration("5m").is_err());
    }
}
