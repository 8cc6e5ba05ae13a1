//! Prometheus metrics (`omo serve --metrics-listen ADDR`, text format on `/metrics`).
//!
//! Every recording function here returns at once unless [`serve`] installed the exporter: the
//! engine, the writer and the stores call them on every command, so without `--metrics-listen`
//! they cost one relaxed atomic load. Label values are always from a small fixed set (method
//! names of the served services, gRPC codes, table names, coupon source kinds, verdicts,
//! receipt statuses), never an id, a key or anything a member typed: a label value that came
//! from a client would make every new value a new time series.

use std::{
    net::SocketAddr,
    sync::atomic::{AtomicBool, Ordering},
    time::{Duration, Instant},
};

use ::metrics::{counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram};
use metrics_exporter_prometheus::{BuildError, Matcher, PrometheusBuilder};
use tokio::task::JoinHandle;

use crate::domain::ports::ChangeSet;

pub const RPC_REQUESTS: &str = "omo_rpc_requests_total";
pub const RPC_DURATION: &str = "omo_rpc_duration_seconds";
pub const BATCH_COMMANDS: &str = "omo_batch_commands";
pub const FLUSH_DURATION: &str = "omo_flush_duration_seconds";
pub const FLUSH_ROWS: &str = "omo_flush_rows_total";
pub const WRITER_QUEUE_DEPTH: &str = "omo_writer_queue_depth";
pub const HOLDS_EXPIRED: &str = "omo_holds_expired_total";
pub const COUPONS_ISSUED: &str = "omo_coupons_issued_total";
pub const LOCATION_REPORTS: &str = "omo_location_reports_total";
pub const RECEIPTS: &str = "omo_receipts_total";
pub const CONNECTIONS_LOST: &str = "omo_db_connections_lost_total";
pub const SEAL_LAG: &str = "omo_seal_lag_seconds";
pub const WEBHOOK_OLDEST_PENDING: &str = "omo_webhook_oldest_pending_seconds";

/// Seconds, 0.1 ms to 1 s: a balance read from memory answers in well under a millisecond, a
/// group commit waits for an fsync (a few ms), and anything near a second is an incident.
const DURATION_BUCKETS: [f64; 13] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
];
/// Commands per group commit: the writer takes at most 64 (`engine::writer::MAX_BATCH`).
const BATCH_BUCKETS: [f64; 8] = [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 48.0, 64.0];

/// Set once the exporter is installed; until then recording is a no-op.
static ENABLED: AtomicBool = AtomicBool::new(false);

fn enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    #[error("cannot serve metrics on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        source: BuildError,
    },
    /// The recorder is process-wide: a second server in the same process cannot have its own.
    #[error("a metrics recorder is already installed in this process")]
    AlreadyInstalled,
}

/// The `/metrics` listener; dropping it stops the listener (the recorder stays installed, so
/// recording goes on harmlessly until the process exits).
#[derive(Debug)]
pub struct MetricsExporter {
    listener: JoinHandle<()>,
}

impl Drop for MetricsExporter {
    fn drop(&mut self) {
        self.listener.abort();
    }
}

/// Installs the process-wide Prometheus recorder and serves its text format over HTTP on
/// `addr` (any path answers; `/metrics` by convention). Must run inside the Tokio runtime.
pub fn serve(addr: SocketAddr) -> Result<MetricsExporter, MetricsError> {
    let listen = |source| MetricsError::Listen { addr, source };
    let (recorder, exporter) = PrometheusBuilder::new()
        .with_http_listener(addr)
        .set_buckets_for_metric(Matcher::Full(RPC_DURATION.into()), &DURATION_BUCKETS)
        .and_then(|b| {
            b.set_buckets_for_metric(Matcher::Full(FLUSH_DURATION.into()), &DURATION_BUCKETS)
        })
        .and_then(|b| {
            b.set_buckets_for_metric(Matcher::Full(BATCH_COMMANDS.into()), &BATCH_BUCKETS)
        })
        .and_then(PrometheusBuilder::build)
        .map_err(listen)?;
    ::metrics::set_global_recorder(recorder).map_err(|_| MetricsError::AlreadyInstalled)?;
    describe();
    ENABLED.store(true, Ordering::Relaxed);
    let listener = tokio::spawn(async move {
        if let Err(error) = exporter.await {
            tracing::error!(?error, "the metrics listener stopped");
        }
    });
    Ok(MetricsExporter { listener })
}

/// The `# HELP` lines.
fn describe() {
    describe_counter!(
        RPC_REQUESTS,
        "Finished RPCs by method and gRPC status code."
    );
    describe_histogram!(
        RPC_DURATION,
        ::metrics::Unit::Seconds,
        "Time from request headers to response headers, by method."
    );
    describe_histogram!(BATCH_COMMANDS, "Commands per group commit of the writer.");
    describe_histogram!(
        FLUSH_DURATION,
        ::metrics::Unit::Seconds,
        "Time to write a batch's changes, by table (see omo::metrics::FlushLap)."
    );
    describe_counter!(FLUSH_ROWS, "Rows written by committed batches, by table.");
    describe_gauge!(WRITER_QUEUE_DEPTH, "Commands waiting for a writer.");
    describe_counter!(
        HOLDS_EXPIRED,
        "Order holds released by the sweeper after their expiry."
    );
    describe_counter!(
        COUPONS_ISSUED,
        "Coupons issued, by the kind of their source."
    );
    describe_counter!(LOCATION_REPORTS, "Location reports stored, by verdict.");
    describe_counter!(
        RECEIPTS,
        "Receipts submitted or reviewed, by the status they got."
    );
    describe_counter!(
        CONNECTIONS_LOST,
        "Units of work whose database connection broke and that were tried again on a new one."
    );
    describe_gauge!(
        SEAL_LAG,
        ::metrics::Unit::Seconds,
        "How long the oldest journal entry no seal covers has waited (0: all sealed)."
    );
    describe_gauge!(
        WEBHOOK_OLDEST_PENDING,
        ::metrics::Unit::Seconds,
        "How long the oldest undelivered webhook delivery has waited (0: none pending)."
    );
}

/// One finished RPC: `method` is `package.Service/Method` of a served method (or `unknown`),
/// `code` the gRPC status code's name (`OK`, `INVALID_ARGUMENT`, ...).
pub fn rpc_finished(method: &'static str, code: &'static str, elapsed: Duration) {
    if !enabled() {
        return;
    }
    counter!(RPC_REQUESTS, "method" => method, "code" => code).increment(1);
    histogram!(RPC_DURATION, "method" => method).record(elapsed.as_secs_f64());
}

/// One group commit of the writer, of `commands` commands.
pub fn batch_executed(commands: usize) {
    if enabled() {
        histogram!(BATCH_COMMANDS).record(commands as f64);
    }
}

/// Commands waiting for a writer now.
pub fn writer_queue_depth(commands: usize) {
    if enabled() {
        gauge!(WRITER_QUEUE_DEPTH).set(commands as f64);
    }
}

/// A unit of work lost its database connection and is tried again on a new one.
pub fn connection_lost() {
    if enabled() {
        counter!(CONNECTIONS_LOST).increment(1);
    }
}

/// After a sealing round: how long the oldest unsealed journal entry has waited.
pub fn seal_lag(seconds: i64) {
    if enabled() {
        gauge!(SEAL_LAG).set(seconds as f64);
    }
}

/// After a webhook round: how long the oldest pending delivery has waited.
pub fn webhook_oldest_pending(seconds: i64) {
    if enabled() {
        gauge!(WEBHOOK_OLDEST_PENDING).set(seconds as f64);
    }
}

/// Holds the sweeper released because they expired.
pub fn holds_expired(holds: usize) {
    if enabled() && holds > 0 {
        counter!(HOLDS_EXPIRED).increment(holds as u64);
    }
}

/// What a committed batch wrote: its rows by table, the coupons it issued by the kind of their
/// source, its location reports by verdict. Counted from the change set after the commit, so a
/// batch that rolled back and ran again counts once, and an idempotent replay (which writes
/// nothing) not at all.
pub fn committed(changes: &ChangeSet) {
    if !enabled() {
        return;
    }
    for (table, rows) in rows_by_table(changes) {
        if rows > 0 {
            counter!(FLUSH_ROWS, "table" => table).increment(rows as u64);
        }
    }
    for coupon in &changes.new_coupons {
        counter!(COUPONS_ISSUED, "source" => coupon_source_label(&coupon.source)).increment(1);
    }
    for report in &changes.engagement.location_reports {
        let verdict = match report.rejected {
            None => "accepted",
            Some(reason) => rejected_label(reason),
        };
        counter!(LOCATION_REPORTS, "verdict" => verdict).increment(1);
    }
    // Submissions by the status they got, and reviews by the status they gave: a receipt
    // approved after review counts once as pending_review and once as accepted.
    let receipts = &changes.engagement;
    for receipt in receipts
        .new_receipts
        .iter()
        .chain(&receipts.changed_receipts)
    {
        counter!(RECEIPTS, "status" => receipt.status.as_str()).increment(1);
    }
}

/// The kind of a coupon's source (`order:<order_id>` → `order`): never the id after the colon.
fn coupon_source_label(source: &str) -> &'static str {
    let kind = source.split_once(':').map_or(source, |(kind, _)| kind);
    ["admin", "order", "geo", "visit", "receipt", "public"]
        .into_iter()
        .find(|known| *known == kind)
        .unwrap_or("other")
}

fn rejected_label(reason: crate::domain::location::RejectReason) -> &'static str {
    use crate::domain::location::RejectReason;
    match reason {
        RejectReason::Accuracy => "rejected_accuracy",
        RejectReason::Stale => "rejected_stale",
        RejectReason::Future => "rejected_future",
        RejectReason::Speed => "rejected_speed",
    }
}

/// Rows of each table a change set writes (inserted, updated or, for balances, adjusted).
fn rows_by_table(changes: &ChangeSet) -> [(&'static str, usize); 24] {
    let engagement = &changes.engagement;
    [
        ("stores", changes.new_stores.len()),
        ("program", usize::from(changes.program.is_some())),
        (
            "campaigns",
            changes.new_campaigns.len() + changes.changed_campaigns.len(),
        ),
        (
            "members",
            changes.new_members.len() + changes.changed_members.len(),
        ),
        ("identifiers", changes.new_identifiers.len()),
        ("transactions", changes.transactions.len()),
        (
            "postings",
            changes
                .transactions
                .iter()
                .map(|(_, t)| t.postings.len())
                .sum(),
        ),
        ("balances", changes.balance_deltas.len()),
        (
            "point_lots",
            changes.new_lots.len() + changes.changed_lots.len(),
        ),
        (
            "orders",
            changes.new_orders.len() + changes.changed_orders.len(),
        ),
        (
            "order_lots",
            changes.new_order_lots.len() + changes.changed_order_lots.len(),
        ),
        (
            "coupons",
            changes.new_coupons.len() + changes.changed_coupons.len(),
        ),
        ("idempotency_keys", changes.outcomes.len()),
        ("events", changes.events.len()),
        ("geo_rules", engagement.new_geo_rules.len()),
        ("visit_rules", engagement.new_visit_rules.len()),
        ("location_reports", engagement.location_reports.len()),
        ("member_presence", engagement.presence.len()),
        ("geo_issues", engagement.geo_issues.len()),
        ("visits", engagement.visits.len()),
        ("visit_issues", engagement.visit_issues.len()),
        ("receipt_rules", engagement.new_receipt_rules.len()),
        (
            "receipts",
            engagement.new_receipts.len() + engagement.changed_receipts.len(),
        ),
        ("report_summaries", report_rows(changes)),
    ]
}

/// Summary rows a flush upserts (visit counts aside: they follow the visits inserted).
fn report_rows(changes: &ChangeSet) -> usize {
    let sums = &changes.report;
    sums.activity.len()
        + sums.coupons.len()
        + sums.redemptions.len()
        + sums.redemption_times.len()
        + sums.lots.len()
}

/// Times the parts of one flush, each from the end of the one before: `table_done` (or
/// `reference_done`, ...) after a part is written records the time since the last one (or
/// since [`FlushLap::start`]) as that part's flush time; a part with no rows records nothing.
///
/// SQLite writes a flush table by table (prepared statements, row by row), so its flush times
/// are per table. PostgreSQL writes every ledger table in ONE statement of data-modifying CTEs
/// (`store/postgres/batch.rs`): that statement's time is recorded under `table="ledger"` (no
/// per-table time exists there), and the rows per table come from the change set instead
/// ([`committed`], `omo_flush_rows_total`). On both backends the rare admin writes are
/// `table="reference"` and the engagement tables together are `table="engagement"`.
#[derive(Debug)]
pub struct FlushLap {
    since: Option<Instant>,
}

impl FlushLap {
    pub fn start() -> Self {
        FlushLap {
            since: enabled().then(Instant::now),
        }
    }

    fn done(&mut self, table: &'static str, rows: usize) {
        let Some(since) = self.since else {
            return;
        };
        let now = Instant::now();
        if rows > 0 {
            histogram!(FLUSH_DURATION, "table" => table).record((now - since).as_secs_f64());
        }
        self.since = Some(now);
    }

    /// After `table`'s rows of `changes` (SQLite writes them table by table).
    pub fn table_done(&mut self, table: &'static str, changes: &ChangeSet) {
        if self.since.is_none() {
            return;
        }
        let rows = rows_by_table(changes)
            .into_iter()
            .find(|(name, _)| *name == table);
        debug_assert!(rows.is_some(), "{table} is not a table of the change set");
        self.done(table, rows.map_or(0, |(_, rows)| rows));
    }

    /// After the rare admin writes and merges.
    pub fn reference_done(&mut self, changes: &ChangeSet) {
        if self.since.is_none() {
            return;
        }
        let rows = changes.new_stores.len()
            + usize::from(changes.program.is_some())
            + changes.new_campaigns.len()
            + changes.changed_campaigns.len()
            + changes.merges.len();
        self.done("reference", rows);
    }

    /// After PostgreSQL's one statement over every ledger table.
    pub fn ledger_done(&mut self, changes: &ChangeSet) {
        if self.since.is_none() {
            return;
        }
        let rows = rows_by_table(changes)
            .into_iter()
            .filter(|(table, _)| LEDGER_TABLES.contains(table))
            .map(|(_, rows)| rows)
            .sum();
        self.done("ledger", rows);
    }

    /// After the engagement tables.
    pub fn engagement_done(&mut self, changes: &ChangeSet) {
        if self.since.is_none() {
            return;
        }
        let rows = rows_by_table(changes)
            .into_iter()
            .filter(|(table, _)| ENGAGEMENT_TABLES.contains(table))
            .map(|(_, rows)| rows)
            .sum();
        self.done("engagement", rows);
    }
}

/// The tables of PostgreSQL's one flush statement.
const LEDGER_TABLES: [&str; 11] = [
    "members",
    "identifiers",
    "transactions",
    "postings",
    "balances",
    "point_lots",
    "orders",
    "order_lots",
    "coupons",
    "idempotency_keys",
    "report_summaries",
];
const ENGAGEMENT_TABLES: [&str; 7] = [
    "geo_rules",
    "visit_rules",
    "location_reports",
    "member_presence",
    "geo_issues",
    "visits",
    "visit_issues",
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn coupon_sources_are_labelled_by_their_kind_alone() {
        assert_eq!(coupon_source_label("admin"), "admin");
        assert_eq!(coupon_source_label("order:EC-9001"), "order");
        assert_eq!(coupon_source_label("geo:shibuya-walk-in"), "geo");
        assert_eq!(coupon_source_label("receipt:r1"), "receipt");
        assert_eq!(coupon_source_label("public:SPRING"), "public");
        assert_eq!(coupon_source_label("member-42:x"), "other");
    }
}
