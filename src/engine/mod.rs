//! The command engine: runs each business command in one unit of work, exactly once per
//! request_id, retrying transient conflicts. Business rules live in the submodules, written once
//! for every storage backend. Each area owns its commands (`domain::command::<Area>Command`):
//! `plan` (the keys its batch loads, the ids it reserves, in `batch.rs`'s [`batch::Plan`]) and
//! `run`, both in the area's file; adding a command is a variant and those two arms.

use rows::LedgerRows;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use tracing::Instrument;

use crate::domain::{
    Clock, DomainError,
    auth::Caller,
    command::{Command, Reply},
    ids,
    ports::{IdempotencyRecord, Store, StoreError},
};

mod batch;
mod checkout;
mod coupons;
mod engagement;
mod events;
mod import;
mod keys;
mod members;
mod points;
mod queries;
mod receipts;
mod reference;
mod reports;
mod rows;
mod rules;
mod sealer;
mod sessions;
mod settings;
pub mod spatial;
mod sweeper;
mod tiers;
mod verify;
mod webhooks;
mod writer;

pub use keys::KeyInfo;
pub use queries::TransactionPage;
pub use rules::{RuleStats, Simulation};
pub use sealer::{ChainCheck, SealReport};
pub use sessions::LiveSession;
pub use sweeper::SweepReport;
pub use verify::{Check, VerifyReport};
pub use webhooks::{NewWebhook, WebhookPatch};
pub use writer::BatchItem;

use writer::{Core, Job, Writer};

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(transparent)]
    Domain(#[from] DomainError),
    #[error("internal: {0}")]
    Internal(#[from] StoreError),
    /// The writers' queue is full: the command was not taken (nothing written); retry shortly.
    #[error("overloaded: the write queue is full")]
    Overloaded,
    /// The sealer may not extend the chain with the seal key it has (or has not): see
    /// `Seal::may_follow_with`.
    #[error("sealing refused: {0}")]
    Sealing(String),
}

/// What one command did inside its unit of work.
enum Failure {
    /// Refused: the command's writes are rolled back, the refusal is remembered.
    Refused(DomainError),
    /// Refused, but what the command wrote stands (a capture that found its hold expired
    /// releases the hold and still says HOLD_EXPIRED).
    RefusedAfterWrites(DomainError),
    Internal(StoreError),
}

impl From<DomainError> for Failure {
    fn from(error: DomainError) -> Self {
        Failure::Refused(error)
    }
}

impl From<StoreError> for Failure {
    fn from(error: StoreError) -> Self {
        Failure::Internal(error)
    }
}

type CommandResult<T> = Result<T, Failure>;

#[derive(Debug)]
pub struct Engine {
    core: Arc<Core>,
    writer: Writer,
    /// API keys read recently (see `keys.rs`).
    keys: keys::KeyCache,
    /// The hour (of the clock) whose LAPSED check ran last (see `sweeper.rs`).
    lapsed_checked: sweeper::HourGate,
    /// The hour (of the clock) whose compaction of the report summaries ran last.
    summaries_compacted: sweeper::HourGate,
    /// How long idempotency records are kept (see `sweeper.rs`); unset: the default.
    idempotency_retention: std::sync::OnceLock<Option<chrono::Duration>>,
    /// How long location reports and receipts' raw text are kept (see `sweeper.rs`).
    retention: std::sync::OnceLock<Option<chrono::Duration>>,
    /// How long delivered events stay in the feed (`--event-retention-days`).
    event_retention: std::sync::OnceLock<Option<chrono::Duration>>,
    /// The key of the journal's seals (`--seal-key-file`); unset: plain seals.
    seal_key: std::sync::OnceLock<crate::domain::seal::SealKey>,
    /// The highest event seq numbered, as the relay last saw it (see `events.rs`).
    events_seq: tokio::sync::watch::Sender<i64>,
    /// The webhook worker's HTTP client (see `webhooks.rs`).
    webhook_sender: webhooks::Sender,
}

impl Engine {
    /// An engine whose commands go through `writers` group-commit writers (see `writer.rs`).
    /// Must be called inside a tokio runtime: the writers are tasks.
    pub fn new(store: Arc<dyn Store>, clock: Arc<dyn Clock>, writers: usize) -> Self {
        let writers = writers.max(1);
        let core = Arc::new(Core {
            store,
            clock,
            reference: Arc::default(),
            events_written: tokio::sync::Notify::new(),
            writers,
        });
        Self {
            writer: Writer::spawn(core.clone(), writers),
            core,
            keys: keys::KeyCache::default(),
            lapsed_checked: sweeper::HourGate::default(),
            summaries_compacted: sweeper::HourGate::default(),
            idempotency_retention: std::sync::OnceLock::new(),
            retention: std::sync::OnceLock::new(),
            event_retention: std::sync::OnceLock::new(),
            seal_key: std::sync::OnceLock::new(),
            events_seq: tokio::sync::watch::Sender::new(0),
            webhook_sender: webhooks::Sender::default(),
        }
    }

    /// Graceful shutdown, once the server takes no more calls: refuses new commands, finishes
    /// the open batch and every queued command, then closes the database's connections.
    pub async fn shutdown(&self) {
        self.writer.drain().await;
        self.core.store.close().await;
    }

    pub fn backend_name(&self) -> &'static str {
        self.core.store.backend_name()
    }

    pub fn now(&self) -> DateTime<Utc> {
        self.core.clock.now()
    }

    fn store(&self) -> &dyn Store {
        self.core.store.as_ref()
    }

    /// Runs one mutating command. With a request_id, the first outcome (reply or refusal) is
    /// remembered and every retry gets it back; the same id with another command is refused.
    pub async fn execute(
        &self,
        caller: &Caller,
        request_id: Option<&str>,
        command: impl Into<Command>,
    ) -> Result<Reply, EngineError> {
        let command = command.into();
        let span = tracing::info_span!("execute", command = command.name());
        let job = job(caller, request_id, command);
        let outcome = self.writer.submit(job).instrument(span).await?;
        outcome.map_err(EngineError::Domain)
    }
}

/// A command with its idempotency key: (api key, request_id, fingerprint of the command).
fn job(caller: &Caller, request_id: Option<&str>, command: Command) -> Job {
    let idempotency = request_id.map(|request_id| IdempotencyKey {
        key_id: caller.key_id.clone(),
        request_id: request_id.to_string(),
        request_hash: ids::sha256_hex(
            serde_json::to_string(&command)
                .expect("commands serialise")
                .as_bytes(),
        ),
    });
    Job {
        caller: caller.clone(),
        idempotency,
        command,
    }
}

#[derive(Debug, Clone)]
pub(crate) struct IdempotencyKey {
    key_id: String,
    request_id: String,
    request_hash: String,
}

/// The remembered outcome of a request: the reply, or the refusal.
pub(crate) type Outcome = Result<Reply, DomainError>;

/// Runs one command inside its own savepoint (a mark in the batch's rows in memory) and
/// remembers its outcome. Whatever happens, the
/// unit of work is left as it was before the command or with the command's whole effect: a
/// refusal keeps only the remembered refusal, an internal error keeps nothing (so a batch can
/// go on with its other commands).
///
/// The outer error means the unit of work itself broke: a savepoint could not be taken,
/// rolled back to or released. Nothing more may be written in it, nor committed.
async fn run_remembered(
    uow: &mut dyn LedgerRows,
    reference: &reference::Reference,
    now: DateTime<Utc>,
    job: &Job,
) -> Result<Result<Outcome, EngineError>, StoreError> {
    uow.savepoint().await?;
    let result = run_in_savepoint(uow, reference, now, job).await;
    if result.is_err() {
        uow.rollback_to_savepoint().await?;
    }
    uow.release_savepoint().await?;
    Ok(result)
}

async fn run_in_savepoint(
    uow: &mut dyn LedgerRows,
    reference: &reference::Reference,
    now: DateTime<Utc>,
    job: &Job,
) -> Result<Outcome, EngineError> {
    let idempotency = job.idempotency.as_ref();
    if let Some(key) = idempotency
        && let Some(record) = uow.find_idempotency(&key.key_id, &key.request_id).await?
    {
        return replay(&record, key);
    }
    let outcome = match run(uow, reference, &job.caller, now, &job.command).await {
        Ok(reply) => Ok(reply),
        Err(Failure::Refused(refusal)) => {
            // Undo what the command wrote, keep the savepoint for the remembered refusal.
            uow.rollback_to_savepoint().await?;
            Err(refusal)
        }
        Err(Failure::RefusedAfterWrites(refusal)) => Err(refusal),
        Err(Failure::Internal(error)) => return Err(error.into()),
    };
    if let Some(key) = idempotency {
        let record = IdempotencyRecord {
            key_id: key.key_id.clone(),
            request_id: key.request_id.clone(),
            request_hash: key.request_hash.clone(),
            outcome: serde_json::to_string(&outcome).expect("outcomes serialise"),
            created_at: now,
        };
        uow.insert_idempotency(&record).await?;
    }
    Ok(outcome)
}

fn replay(record: &IdempotencyRecord, key: &IdempotencyKey) -> Result<Outcome, EngineError> {
    if record.request_hash != key.request_hash {
        return Ok(Err(DomainError::IdempotencyKeyReused));
    }
    serde_json::from_str(&record.outcome).map_err(|e| {
        StoreError::Corrupt(format!(
            "idempotency outcome of request {}: {e}",
            record.request_id
        ))
        .into()
    })
}

/// Runs a command in the engine area that owns it.
async fn run(
    uow: &mut dyn LedgerRows,
    reference: &reference::Reference,
    caller: &Caller,
    now: DateTime<Utc>,
    command: &Command,
) -> CommandResult<Reply> {
    match command {
        Command::Members(command) => command.run(uow, caller, now).await,
        Command::Points(command) => command.run(uow, reference, caller, now).await,
        Command::Checkout(command) => command.run(uow, reference, caller, now).await,
        Command::Settings(command) => command.run(uow, reference, caller, now).await,
        Command::Coupons(command) => command.run(uow, reference, caller, now).await,
        Command::Engagement(command) => command.run(uow, reference, caller, now).await,
        Command::Receipts(command) => command.run(uow, reference, caller, now).await,
        Command::Rules(command) => command.run(uow, reference, caller, now).await,
        Command::Events(command) => command.run(uow, reference, caller, now).await,
    }
}
