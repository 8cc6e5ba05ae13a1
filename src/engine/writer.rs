//! The group-commit writer. Concurrent commands queue up; a writer takes what is waiting (up to
//! `MAX_BATCH`) and runs it as a state machine over the batch, inside ONE database transaction:
//! load what the commands touch, decide each in memory in order (`batch.rs`), flush the changes
//! with one statement per table, commit once (one fsync for the lot), and only then answer each
//! caller. A refused command leaves no trace; the others commit. A command that hit a transient
//! conflict, or a batch whose flush or commit failed, is run again on its own. A batch whose
//! database connection broke (a restart, a terminated session) is run again on a new one,
//! for a few seconds, before its callers hear UNAVAILABLE (see [`Reconnect`]).

use super::rows::LedgerRows;
use crate::domain::ports::LedgerReads;
use std::{future::Future, pin::Pin, sync::Arc, time::Duration as StdDuration};

use chrono::{DateTime, Utc};
use tokio::sync::{Mutex, mpsc, oneshot, watch};

use super::{EngineError, IdempotencyKey, Outcome, batch, reference::Reference, run_remembered};
use crate::{
    domain::{
        Clock,
        auth::Caller,
        command::{Command, Reply},
        ports::{ChangeSet, Keys, Store, StoreError, UnitOfWork},
    },
    metrics,
};

/// Most commands in one database transaction: beyond 64 the fsync and the batch's statements
/// are amortised well enough, and a larger batch only makes its first caller wait longer.
const MAX_BATCH: usize = 64;
/// Commands waiting for a writer before callers wait to enqueue (back-pressure).
const QUEUE_DEPTH: usize = 4096;
/// How often one command is tried when the database reports a transient conflict.
const MAX_ATTEMPTS: u32 = 10;
/// How long a unit of work whose connection broke is tried again on new connections before
/// its callers hear UNAVAILABLE: a restarting PostgreSQL is back within a few seconds, and
/// a client's deadline is longer than that.
const RECONNECT_PATIENCE: StdDuration = StdDuration::from_secs(5);
/// The first pause before such a try; it doubles up to `RECONNECT_MAX_PAUSE`.
const RECONNECT_FIRST_PAUSE: StdDuration = StdDuration::from_millis(50);
const RECONNECT_MAX_PAUSE: StdDuration = StdDuration::from_secs(1);

/// A boxed unit of work body; `Fn` so that a conflict can run it again from the start.
pub(super) type WorkFuture<'a, T> =
    Pin<Box<dyn Future<Output = Result<T, EngineError>> + Send + 'a>>;

/// The report summaries' shard of writer `number`: 1, 2, ... (its batches, and the commands of
/// a failed batch run again alone); 0 is for the writes outside the writers' batches (the
/// sweeper's, admins', explicit batches), so that those never wait on a writer's rows.
fn shard_of(number: usize) -> i16 {
    i16::try_from(number + 1).unwrap_or(i16::MAX)
}

impl Core {
    /// Writer `shard`'s seat among the writers (`domain::stock::Seat`).
    fn seat(&self, shard: i16) -> crate::domain::stock::Seat {
        crate::domain::stock::Seat {
            shard: usize::try_from(shard).unwrap_or(0),
            writers: self.writers,
        }
    }
}

/// A unit of work that failed; `at_commit` when COMMIT itself did, so that a connection lost
/// then leaves it unknown whether the unit of work committed.
#[derive(Debug)]
struct Failed {
    error: EngineError,
    at_commit: bool,
}

impl Failed {
    /// Why the connection broke, if it did.
    fn connection_lost(&self) -> Option<&str> {
        match &self.error {
            EngineError::Internal(StoreError::ConnectionLost(why)) => Some(why),
            _ => None,
        }
    }
}

impl From<EngineError> for Failed {
    fn from(error: EngineError) -> Self {
        Failed {
            error,
            at_commit: false,
        }
    }
}

impl From<StoreError> for Failed {
    fn from(error: StoreError) -> Self {
        EngineError::from(error).into()
    }
}

/// The pauses between tries of a unit of work whose connection broke: growing, for at most
/// `RECONNECT_PATIENCE` in all. The pool gives each try a live connection (it pings one
/// before lending it, and drops a broken one).
struct Reconnect {
    deadline: tokio::time::Instant,
    pause: StdDuration,
}

impl Reconnect {
    fn new() -> Self {
        Reconnect {
            deadline: tokio::time::Instant::now() + RECONNECT_PATIENCE,
            pause: RECONNECT_FIRST_PAUSE,
        }
    }

    /// Waits before the next try; false (at once) when the patience is spent.
    async fn pause(&mut self, why: &str) -> bool {
        let left = self
            .deadline
            .saturating_duration_since(tokio::time::Instant::now());
        if left.is_zero() {
            tracing::warn!(%why, "database connection lost; giving up");
            return false;
        }
        tracing::warn!(%why, "database connection lost; trying again on a new one");
        metrics::connection_lost();
        tokio::time::sleep(self.pause.min(left)).await;
        self.pause = (self.pause * 2).min(RECONNECT_MAX_PAUSE);
        true
    }
}

/// What every writer shares: the database and the clock.
#[derive(Debug)]
pub(super) struct Core {
    pub store: Arc<dyn Store>,
    pub clock: Arc<dyn Clock>,
    pub reference: Arc<Reference>,
    /// Wakes the event relay after a commit that wrote events (`events.rs`).
    pub events_written: tokio::sync::Notify,
    /// How many writers run (`Writer::spawn`): which stock parts each draws first.
    pub writers: usize,
}

/// One command on its way to a writer.
#[derive(Debug, Clone)]
pub(super) struct Job {
    pub caller: Caller,
    pub idempotency: Option<IdempotencyKey>,
    pub command: Command,
}

type Answer = oneshot::Sender<Result<Outcome, EngineError>>;

#[derive(Debug)]
pub(super) struct Writer {
    queue: mpsc::Sender<(Job, Answer)>,
    /// Set once at shutdown: the writers close the queue, finish what it holds and stop.
    stop: watch::Sender<bool>,
    /// Every writer holds a sender until it stops: `recv` returns None once all have.
    stopped: Mutex<mpsc::Receiver<()>>,
}

impl Writer {
    /// Starts `writers` writers (tasks, or threads for a store that blocks its caller); they stop
    /// when the engine (the queue's sender) is dropped.
    pub fn spawn(core: Arc<Core>, writers: usize) -> Writer {
        let (queue, receiver) = mpsc::channel(QUEUE_DEPTH);
        let receiver = Arc::new(Mutex::new(receiver));
        let (stop, stopping) = watch::channel(false);
        let (alive, stopped) = mpsc::channel(1);
        let own_threads = core.store.runs_on_calling_thread();
        for number in 0..writers {
            let (core, receiver) = (core.clone(), receiver.clone());
            let (stopping, alive) = (stopping.clone(), alive.clone());
            if own_threads {
                std::thread::Builder::new()
                    .name(format!("omo-writer-{number}"))
                    .spawn(move || {
                        tokio::runtime::Builder::new_current_thread()
                            .enable_all()
                            .build()
                            .expect("a writer's runtime starts")
                            .block_on(core.run_writer(shard_of(number), receiver, stopping, alive));
                    })
                    .expect("a writer thread starts");
            } else {
                tokio::spawn(async move {
                    core.run_writer(shard_of(number), receiver, stopping, alive)
                        .await
                });
            }
        }
        Writer {
            queue,
            stop,
            stopped: Mutex::new(stopped),
        }
    }

    /// Refuses new commands, lets the writers finish the batches they hold and every command
    /// already queued (their callers get answers), and waits until every writer has stopped.
    pub async fn drain(&self) {
        let _ = self.stop.send(true);
        let mut stopped = self.stopped.lock().await;
        while stopped.recv().await.is_some() {}
    }

    pub async fn submit(&self, job: Job) -> Result<Outcome, EngineError> {
        let (reply, answer) = oneshot::channel();
        // A full queue sheds the command at once rather than making its caller wait unbounded.
        self.queue
            .try_send((job, reply))
            .map_err(|error| match error {
                mpsc::error::TrySendError::Full(_) => EngineError::Overloaded,
                // Shutting down: UNAVAILABLE, so that the client retries on another replica.
                mpsc::error::TrySendError::Closed(_) => {
                    StoreError::Unavailable("the server is shutting down".into()).into()
                }
            })?;
        metrics::writer_queue_depth(QUEUE_DEPTH - self.queue.capacity());
        answer
            .await
            .map_err(|_| StoreError::Database("the writer dropped a command".into()))?
    }
}

impl Core {
    /// Runs batches until the queue is closed and empty: at shutdown (`stopping`) the first
    /// writer to notice closes it, and the writers finish what it still holds. `_alive` is
    /// dropped when this writer stops.
    async fn run_writer(
        self: Arc<Self>,
        shard: i16,
        receiver: Arc<Mutex<mpsc::Receiver<(Job, Answer)>>>,
        mut stopping: watch::Receiver<bool>,
        _alive: mpsc::Sender<()>,
    ) {
        loop {
            let batch = {
                let mut receiver = receiver.lock().await;
                let first = tokio::select! {
                    first = receiver.recv() => Some(first),
                    _ = stopping.wait_for(|stop| *stop) => None,
                };
                let first = match first {
                    Some(first) => first,
                    None => {
                        receiver.close();
                        receiver.recv().await
                    }
                };
                let Some(first) = first else {
                    return;
                };
                let mut batch = vec![first];
                while batch.len() < MAX_BATCH {
                    match receiver.try_recv() {
                        Ok(next) => batch.push(next),
                        Err(_) => break,
                    }
                }
                metrics::writer_queue_depth(receiver.len());
                batch
            };
            let (jobs, replies): (Vec<Job>, Vec<Answer>) = batch.into_iter().unzip();
            let results = self.clone().execute_batch_guarded(shard, jobs).await;
            for (reply, result) in replies.into_iter().zip(results) {
                // A caller that went away (cancelled RPC) no longer needs its answer.
                let _ = reply.send(result);
            }
        }
    }

    /// Runs a batch in its own task, so that a command that panics (a bug) fails its batch with
    /// INTERNAL — its transaction is rolled back as the task unwinds — and the writer lives on.
    async fn execute_batch_guarded(
        self: Arc<Self>,
        shard: i16,
        jobs: Vec<Job>,
    ) -> Vec<Result<Outcome, EngineError>> {
        let count = jobs.len();
        match tokio::spawn(async move { self.execute_batch(shard, &jobs).await }).await {
            Ok(results) => results,
            Err(panic) => {
                tracing::error!(%panic, commands = count, "a command panicked; its batch is rolled back");
                (0..count)
                    .map(|_| {
                        Err(StoreError::Database("a command failed unexpectedly".into()).into())
                    })
                    .collect()
            }
        }
    }

    /// Runs `jobs` in one transaction if it can, each alone where it must; answers in order.
    /// A merge runs in a batch of its own ([`batch::runs_alone`]); the others share one.
    /// `shard` is the report summaries' shard its flushes write (see [`ChangeSet::shard`]).
    ///
    /// [`ChangeSet::shard`]: crate::domain::ports::ChangeSet::shard
    pub async fn execute_batch(
        &self,
        shard: i16,
        jobs: &[Job],
    ) -> Vec<Result<Outcome, EngineError>> {
        metrics::batch_executed(jobs.len());
        let (alone, together): (Vec<usize>, Vec<usize>) =
            (0..jobs.len()).partition(|&i| batch::runs_alone(&jobs[i].command));
        let mut results: Vec<Option<Result<Outcome, EngineError>>> =
            jobs.iter().map(|_| None).collect();
        let parts = std::iter::once(together).chain(alone.into_iter().map(|i| vec![i]));
        for indices in parts.filter(|indices| !indices.is_empty()) {
            self.run_part(shard, jobs, indices, &mut results).await;
        }
        let mut answers = Vec::with_capacity(jobs.len());
        for (job, result) in jobs.iter().zip(results) {
            answers.push(match result {
                Some(result) => result,
                None => self.execute_one(shard, job).await,
            });
        }
        answers
    }

    /// Runs the jobs at `indices` as one transaction and puts their answers in `results`;
    /// leaves None where a job is to run again on its own. While the connection breaks, runs
    /// them again on a new one (see [`Reconnect`]); a job without a request_id whose COMMIT
    /// broke may have committed, so it is answered rather than run twice.
    async fn run_part(
        &self,
        shard: i16,
        jobs: &[Job],
        mut indices: Vec<usize>,
        results: &mut [Option<Result<Outcome, EngineError>>],
    ) {
        let mut reconnect = Reconnect::new();
        loop {
            let part: Vec<&Job> = indices.iter().map(|&i| &jobs[i]).collect();
            let failed = match self.try_batch(shard, &part).await {
                Ok(answers) => {
                    for (i, answer) in indices.into_iter().zip(answers) {
                        results[i] = answer;
                    }
                    return;
                }
                Err(failed) => failed,
            };
            let lost = |why: &str| Some(Err(StoreError::ConnectionLost(why.into()).into()));
            if let Some(why) = failed.connection_lost() {
                if failed.at_commit {
                    indices.retain(|&i| {
                        let replayable = jobs[i].idempotency.is_some();
                        if !replayable {
                            results[i] = lost(why);
                        }
                        replayable
                    });
                }
                if !indices.is_empty() && reconnect.pause(why).await {
                    continue;
                }
                for i in indices {
                    results[i] = lost(why);
                }
                return;
            }
            match failed.error {
                // No connection came in time: running each command alone would wait as long
                // again for each; answer them all now (UNAVAILABLE: the clients retry).
                EngineError::Internal(StoreError::Unavailable(why)) => {
                    for i in indices {
                        results[i] = Some(Err(StoreError::Unavailable(why.clone()).into()));
                    }
                }
                error => {
                    tracing::warn!(%error, commands = part.len(), "batch failed; running its commands one by one");
                }
            }
            return;
        }
    }

    /// One transaction for the whole batch, decided in memory: load what the commands touch,
    /// run each against the rows in memory (a refused one is undone there), flush the changes
    /// with one statement per table, commit. `None` marks a command to run again on its own.
    async fn try_batch(
        &self,
        shard: i16,
        jobs: &[&Job],
    ) -> Result<Vec<Option<Result<Outcome, EngineError>>>, Failed> {
        let mut uow = self.store.begin().await?;
        let keys = batch::keys_of(jobs.iter().copied());
        let loaded = uow.load(&keys).await?;
        let now = self.clock.now();
        let mut rows = batch::InMemory::new(uow.as_mut(), &keys, loaded, self.seat(shard));
        let mut results = Vec::with_capacity(jobs.len());
        for job in jobs {
            // A command that fails leaves no trace in memory (`run_remembered`); a broken unit
            // of work fails the whole batch (`?`), and nothing of it is committed. So does a
            // lost race: PostgreSQL aborts the transaction with a deadlock it breaks, so no
            // later command could run in it. The batch's commands then run one by one.
            let result = run_remembered(&mut rows, &self.reference, now, job).await?;
            if let Err(EngineError::Internal(StoreError::Conflict(why))) = result {
                return Err(StoreError::Conflict(why).into());
            }
            results.push(Some(result));
        }
        let changes = self.changes_of(&mut rows, shard).await?;
        flush_and_commit(uow, &changes, &self.events_written).await?;
        Ok(results)
    }

    /// What a batch changed, with the stores' zones (for the report summaries) and its shard.
    /// A batch that created a store takes the index as cached rather than have one rebuilt
    /// for it (seconds at 100,000 stores): its own stores' zones are in its rows, and a store
    /// whose zone is not known is summarised per quarter hour, which is right in any zone.
    async fn changes_of(
        &self,
        rows: &mut batch::InMemory<'_>,
        shard: i16,
    ) -> Result<ChangeSet, EngineError> {
        let sites = if rows.shows_uncommitted_reference() {
            self.reference.cached_sites()
        } else {
            Some(self.reference.sites(rows).await?)
        };
        let zone_of = |store_id: &str| Some(sites.as_ref()?.get(store_id)?.tz);
        let mut changes = rows.changes(&zone_of);
        changes.shard = shard;
        Ok(changes)
    }

    /// A command of a failed batch, alone, at its writer's shard. Only with a request_id is it
    /// run again after a COMMIT that broke: its idempotency record then answers the retry.
    async fn execute_one(&self, shard: i16, job: &Job) -> Result<Outcome, EngineError> {
        let replayable = job.idempotency.is_some();
        let job = job.clone();
        let reference = self.reference.clone();
        self.write_at(shard, replayable, move |uow, now| {
            let job = job.clone();
            let reference = reference.clone();
            Box::pin(async move { run_remembered(uow, &reference, now, &job).await? })
        })
        .await
    }

    /// Runs `work` over rows in memory (see `batch.rs`), flushes what it changed and commits,
    /// again from the start on a transient conflict (with a short, growing, jittered pause) or
    /// a broken connection (see [`Reconnect`]), also when COMMIT broke: `work` must find what
    /// is due anew, as the sweeper's does, so that running it again after a commit never
    /// does it twice. Its report summaries go to shard 0, that of the writes outside the
    /// writers' batches.
    pub async fn write<T, F>(&self, work: F) -> Result<T, EngineError>
    where
        T: Send,
        F: for<'a> Fn(&'a mut dyn LedgerRows, DateTime<Utc>) -> WorkFuture<'a, T> + Send + Sync,
    {
        self.write_at(0, true, work).await
    }

    /// [`Core::write`] at a given report summaries' shard; `replayable`: whether `work` may
    /// run again after a COMMIT that broke (and so may have committed).
    async fn write_at<T, F>(&self, shard: i16, replayable: bool, work: F) -> Result<T, EngineError>
    where
        T: Send,
        F: for<'a> Fn(&'a mut dyn LedgerRows, DateTime<Utc>) -> WorkFuture<'a, T> + Send + Sync,
    {
        let (mut attempt, mut reconnect) = (1, Reconnect::new());
        loop {
            let failed = match self.write_once(shard, &work).await {
                Ok(value) => return Ok(value),
                Err(failed) => failed,
            };
            if let Some(why) = failed.connection_lost() {
                if (replayable || !failed.at_commit) && reconnect.pause(why).await {
                    continue;
                }
                return Err(failed.error);
            }
            match failed.error {
                EngineError::Internal(StoreError::Conflict(why)) if attempt < MAX_ATTEMPTS => {
                    tracing::debug!(attempt, %why, "transient conflict; retrying");
                    let jitter = rand::random_range(0..=attempt * 5);
                    tokio::time::sleep(StdDuration::from_millis(u64::from(attempt * 2 + jitter)))
                        .await;
                    attempt += 1;
                }
                error => return Err(error),
            }
        }
    }

    /// One try of [`Core::write_at`]'s unit of work.
    async fn write_once<T, F>(&self, shard: i16, work: &F) -> Result<T, Failed>
    where
        T: Send,
        F: for<'a> Fn(&'a mut dyn LedgerRows, DateTime<Utc>) -> WorkFuture<'a, T> + Send + Sync,
    {
        let mut uow = self.store.begin().await?;
        let keys = Keys::default();
        let loaded = uow.load(&keys).await?;
        let mut rows = batch::InMemory::new(uow.as_mut(), &keys, loaded, self.seat(shard));
        let value = work(&mut rows, self.clock.now()).await?;
        let changes = self.changes_of(&mut rows, shard).await?;
        flush_and_commit(uow, &changes, &self.events_written).await?;
        Ok(value)
    }
}

/// Writes a batch's changes and commits them; counts them once committed.
async fn flush_and_commit(
    mut uow: Box<dyn UnitOfWork>,
    changes: &ChangeSet,
    events_written: &tokio::sync::Notify,
) -> Result<(), Failed> {
    uow.flush(changes).await?;
    uow.commit().await.map_err(|error| Failed {
        error: error.into(),
        at_commit: true,
    })?;
    metrics::committed(changes);
    if !changes.events.is_empty() {
        events_written.notify_one();
    }
    Ok(())
}

/// One command of an explicit batch (`Engine::execute_batch`).
#[derive(Debug, Clone)]
pub struct BatchItem {
    pub caller: Caller,
    pub request_id: Option<String>,
    pub command: Command,
}

impl super::Engine {
    /// Runs several commands as one group commit, as the writer does with concurrent calls;
    /// answers in order. For callers that have a batch in hand (offline register replay). Not
    /// a writer's batch: its summaries go to shard 0, beside the sweeper's.
    pub async fn execute_batch(&self, items: Vec<BatchItem>) -> Vec<Result<Reply, EngineError>> {
        let jobs: Vec<Job> = items
            .into_iter()
            .map(|item| super::job(&item.caller, item.request_id.as_deref(), item.command))
            .collect();
        self.core
            .execute_batch(0, &jobs)
            .await
            .into_iter()
            .map(|result| result.and_then(|outcome| outcome.map_err(EngineError::Domain)))
            .collect()
    }
}
