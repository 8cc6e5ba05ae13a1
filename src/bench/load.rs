//! The driver: `concurrency` tokio tasks, each running one operation after another until the
//! deadline, timing every operation. Request errors are counted, never fatal.

use std::{future::Future, time::Duration};

use tokio::time::Instant;

use super::{BenchError, stats::Sample};

/// An operation that takes longer than this counts as a failure (`TIMEOUT`), so a stalled
/// server cannot hang the bench.
const OP_TIMEOUT: Duration = Duration::from_secs(30);

/// One request loop's state (its clients, random source, id counter).
pub trait Worker: Send + 'static {
    /// One operation; a failure is named by its kind (e.g. `FAILED_PRECONDITION/ORDER_STATE`).
    fn op(&mut self) -> impl Future<Output = Result<(), String>> + Send;
}

/// Runs every worker concurrently for `duration`; returns what they measured and how long it
/// took until the last in-flight operation finished.
pub async fn drive<W: Worker>(
    workers: Vec<W>,
    duration: Duration,
) -> Result<(Sample, Duration), BenchError> {
    let started = Instant::now();
    let deadline = started + duration;
    let tasks: Vec<_> = workers
        .into_iter()
        .map(|worker| tokio::spawn(work(worker, deadline)))
        .collect();
    let mut total = Sample::default();
    for task in tasks {
        total.merge(task.await?);
    }
    Ok((total, started.elapsed()))
}

async fn work<W: Worker>(mut worker: W, deadline: Instant) -> Sample {
    let mut sample = Sample::default();
    while Instant::now() < deadline {
        let started = Instant::now();
        match tokio::time::timeout(OP_TIMEOUT, worker.op()).await {
            Ok(Ok(())) => sample.record_ok(started.elapsed()),
            Ok(Err(kind)) => sample.record_error(kind),
            Err(_) => sample.record_error("TIMEOUT".into()),
        }
    }
    sample
}
