//! The journal's sealer: a background task (on every replica) that covers the journal with a
//! hash chain of seals (`domain::seal`; keyed when the engine has a seal key), in commit order
//! and off the write path, and the part of `omo verify` that recomputes the chain.
//!
//! Several replicas may seal at once: each reads the newest seal and appends the next one
//! under the next seal number; the primary key lets one of them win and the others roll back
//! (a conflict, not an error) and find the winner's seal next time.

use std::time::Duration as StdDuration;

use super::{Engine, EngineError};
use crate::domain::{
    ports::{StoreError, UnitOfWork},
    seal::{GENESIS_HASH, Seal, SealKey, check_head, check_seal},
};

/// Most transactions one seal covers: bounds the seal row and the sealer's unit of work.
const SEAL_SIZE: i64 = 1000;
/// Most seals one round writes, so that a round always ends (a large backlog takes rounds).
const MAX_SEALS_PER_ROUND: usize = 100;
/// Seals `omo verify` reads at a time.
const VERIFY_PAGE: i64 = 100;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SealReport {
    pub seals: usize,
    pub transactions_sealed: usize,
    /// After the round: seconds the oldest journal entry no seal covers has waited, by the
    /// clock (0 when the journal is sealed to its end); `omo_seal_lag_seconds`.
    pub lag_seconds: i64,
}

/// What `omo verify` found in the chain.
#[derive(Debug, Clone, Default)]
pub struct ChainCheck {
    pub seals: usize,
    pub transactions_sealed: usize,
    /// The newest seal's hash: a copy kept elsewhere proves the chain was not rewritten whole.
    pub last_hash: Option<String>,
    /// In journal order: the first names the first transaction that no longer matches.
    pub violations: Vec<String>,
    /// The number of the seal whose hash is the head `omo verify --expect-head` was given, if
    /// one is.
    pub expected_head_seal: Option<i64>,
    /// Seals keyed with a seal key (`--seal-key-file`).
    pub keyed_seals: usize,
    /// Whether the keyed seals' hashes were checked: only with the key (their links and
    /// digests are checked either way).
    pub key_given: bool,
}

impl Engine {
    /// Keys the seals this engine makes, and checks keyed seals in `verify` (set once, at
    /// start; a second key is ignored).
    pub fn set_seal_key(&self, key: SealKey) {
        let _ = self.seal_key.set(key);
    }

    pub(super) fn seal_key(&self) -> Option<&SealKey> {
        self.seal_key.get()
    }

    /// Seals the settled journal (see `UnitOfWork::settled_horizon`) that no seal covers yet,
    /// then measures how far sealing is behind.
    pub async fn seal(&self) -> Result<SealReport, EngineError> {
        let mut report = self.seal_settled().await?;
        report.lag_seconds = self.seal_lag().await?;
        crate::metrics::seal_lag(report.lag_seconds);
        Ok(report)
    }

    /// Seconds the oldest journal entry no seal covers has waited (0: none is unsealed). It
    /// grows while sealing stalls (a long transaction of a role that may write the journal,
    /// a failing sealer), and tamper evidence covers only what is sealed.
    async fn seal_lag(&self) -> Result<i64, EngineError> {
        let mut uow = self.store().begin_read().await?;
        let sealed_to = uow
            .last_seal()
            .await?
            .map_or(0, |seal| seal.last_transaction_id);
        let oldest = uow.journal_range(sealed_to, i64::MAX, 1).await?;
        Ok(oldest.first().map_or(0, |transaction| {
            (self.now() - transaction.recorded_at).num_seconds().max(0)
        }))
    }

    async fn seal_settled(&self) -> Result<SealReport, EngineError> {
        let mut report = SealReport::default();
        let horizon = self
            .store()
            .begin_read_statement()
            .await?
            .settled_horizon()
            .await?;
        let Some(horizon) = horizon else {
            tracing::debug!("journal not settled yet; sealing later");
            return Ok(report);
        };
        for _ in 0..MAX_SEALS_PER_ROUND {
            match self.seal_next(horizon).await {
                Ok(Some(sealed)) => {
                    report.seals += 1;
                    report.transactions_sealed += sealed;
                    // Catching up on a long journal: let the runtime's other tasks run between
                    // seals (on SQLite a seal's reads and hashing run on this thread).
                    tokio::task::yield_now().await;
                }
                Ok(None) => break,
                // Another replica's sealer appended this seal first.
                Err(EngineError::Internal(StoreError::Conflict(_))) => break,
                Err(error) => return Err(error),
            }
        }
        Ok(report)
    }

    /// Appends one seal after the newest, up to `horizon`; how many transactions it covers, or
    /// None when the journal is sealed up to `horizon` already.
    async fn seal_next(&self, horizon: i64) -> Result<Option<usize>, EngineError> {
        let mut uow = self.store().begin().await?;
        let previous = uow.last_seal().await?;
        let after = previous.as_ref().map_or(0, |seal| seal.last_transaction_id);
        if after >= horizon {
            return Ok(None);
        }
        if let Some(previous) = &previous {
            previous
                .may_follow_with(self.seal_key())
                .map_err(EngineError::Sealing)?;
        }
        let transactions = uow.journal_range(after, horizon, SEAL_SIZE).await?;
        // A full seal ends at its last transaction; the last one of a round covers every gap
        // up to the horizon, so that no transaction can appear there later unnoticed.
        let last = match transactions.last() {
            Some(t) if transactions.len() as i64 == SEAL_SIZE => t.transaction_id,
            _ => horizon,
        };
        let seal = Seal::next(
            previous.as_ref(),
            last,
            &transactions,
            self.now(),
            self.seal_key(),
        );
        uow.insert_seal(&seal).await?;
        uow.commit().await?;
        Ok(Some(transactions.len()))
    }

    /// Seals every `interval` until the task is dropped; errors are logged, never fatal.
    pub async fn run_sealer(&self, interval: StdDuration) {
        let mut ticker = tokio::time::interval(interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticker.tick().await;
            match self.seal().await {
                Ok(report) if report.seals > 0 => tracing::debug!(?report, "journal sealed"),
                Ok(_) => {}
                Err(error) => tracing::error!(%error, "sealing failed"),
            }
        }
    }
}

/// Recomputes the whole chain inside `uow`'s snapshot, seal by seal (keyed seals' hashes with
/// `key`), and finds the seal whose hash is `expected_head`.
pub(super) async fn check_chain(
    uow: &mut dyn UnitOfWork,
    expected_head: Option<&str>,
    key: Option<&SealKey>,
) -> Result<ChainCheck, EngineError> {
    let mut check = ChainCheck {
        key_given: key.is_some(),
        ..ChainCheck::default()
    };
    let mut newest = None;
    let (mut prev_no, mut prev_hash, mut prev_last) = (0, GENESIS_HASH.to_string(), 0);
    loop {
        let page = uow.seals(prev_no, VERIFY_PAGE).await?;
        if page.is_empty() {
            break;
        }
        for seal in page {
            if seal.seal_no != prev_no + 1 {
                check.violations.push(format!(
                    "seals {} to {} are missing",
                    prev_no + 1,
                    seal.seal_no - 1
                ));
            }
            let transactions = uow
                .journal_range(
                    seal.after_transaction_id,
                    seal.last_transaction_id,
                    i64::MAX,
                )
                .await?;
            check
                .violations
                .extend(check_seal(&seal, &prev_hash, prev_last, key, &transactions));
            check.seals += 1;
            check.keyed_seals += usize::from(seal.is_keyed());
            check.transactions_sealed += seal.digests.len();
            if expected_head.is_some_and(|head| head.eq_ignore_ascii_case(&seal.hash)) {
                check.expected_head_seal = Some(seal.seal_no);
            }
            (prev_no, prev_last) = (seal.seal_no, seal.last_transaction_id);
            prev_hash = seal.hash.clone();
            newest = Some(seal);
        }
    }
    check.violations.extend(check_head(newest.as_ref(), key));
    check.last_hash = (check.seals > 0).then_some(prev_hash);
    Ok(check)
}
