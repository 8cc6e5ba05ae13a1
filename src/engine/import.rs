//! `omo import members` and `omo export`: the engine's side. An import chunk is one unit of
//! work: it reads what the chunk's lines may clash with (import records, identifiers), decides
//! in memory (`domain::import::plan_chunk`) and writes with the batch flush plus the import
//! records, then commits: a killed run leaves whole chunks. An export reads keyset pages from
//! one read-only unit of work, so it is one consistent snapshot in bounded memory.

use std::collections::HashMap;

use super::{Engine, EngineError};
use crate::domain::{
    import::{ChunkPlan, Existing, LineOutcome, MemberImport, plan_chunk},
    ports::{Keys, Sequence, StoreError, UnitOfWork},
};

/// How often a chunk that lost a race (an identifier or external_id written by someone else
/// between its read and its write) is decided again before the import gives up.
const CHUNK_ATTEMPTS: usize = 3;

impl Engine {
    /// Imports one chunk of valid lines in one transaction; with `dry_run` decides it against
    /// the database and rolls back. Each line's outcome, in order.
    pub async fn import_chunk(
        &self,
        lines: &[MemberImport],
        dry_run: bool,
    ) -> Result<Vec<(u64, LineOutcome)>, EngineError> {
        let mut attempt = 1;
        loop {
            match self.try_import_chunk(lines, dry_run).await {
                Err(StoreError::Conflict(why)) if attempt < CHUNK_ATTEMPTS => {
                    tracing::info!(%why, attempt, "import chunk lost a race; deciding it again");
                    attempt += 1;
                }
                result => return Ok(result?),
            }
        }
    }

    async fn try_import_chunk(
        &self,
        lines: &[MemberImport],
        dry_run: bool,
    ) -> Result<Vec<(u64, LineOutcome)>, StoreError> {
        let now = self.now();
        let mut uow = self.store().begin().await?;
        let external_ids: Vec<String> = lines.iter().map(|l| l.external_id.clone()).collect();
        let imported: HashMap<String, String> = uow
            .imported_members(&external_ids)
            .await?
            .into_iter()
            .collect();
        let (transactions, lots) = if dry_run {
            (0, 0)
        } else {
            ChunkPlan::ids_wanted(lines)
        };
        let keys = Keys {
            identifiers: lines
                .iter()
                .filter(|l| !imported.contains_key(&l.external_id))
                .flat_map(|l| l.identifiers.iter().cloned())
                .collect(),
            wanted_ids: [
                (Sequence::Transactions, transactions),
                (Sequence::Lots, lots),
            ]
            .into(),
            ..Keys::default()
        };
        let mut loaded = uow.load(&keys).await?;
        let existing = Existing {
            imported,
            taken: loaded.identifiers.iter().map(|(i, _)| i.clone()).collect(),
            tiers: Default::default(),
        };
        let program = self.core.reference.program(uow.as_mut()).await?;
        let existing = Existing {
            tiers: program
                .tiers
                .iter()
                .map(|tier| tier.tier_id.clone())
                .collect(),
            ..existing
        };
        let mut ids = |sequence, count: usize| {
            let mut reserved = loaded.reserved_ids.remove(&sequence).unwrap_or_default();
            if dry_run {
                // Nothing is written: placeholders stand in for ids (no reservation wasted).
                reserved = (1..=count as i64).collect();
            }
            reserved
        };
        let (want_transactions, want_lots) = ChunkPlan::ids_wanted(lines);
        let transaction_ids = ids(Sequence::Transactions, want_transactions);
        let lot_ids = ids(Sequence::Lots, want_lots);
        let (transaction_ids, lot_ids) = (
            more_ids(
                uow.as_mut(),
                Sequence::Transactions,
                transaction_ids,
                want_transactions,
            )
            .await?,
            more_ids(uow.as_mut(), Sequence::Lots, lot_ids, want_lots).await?,
        );
        let plan = plan_chunk(
            lines,
            &existing,
            now,
            program.lot_expiry(now),
            (&transaction_ids, &lot_ids),
        );
        if dry_run {
            return Ok(plan.outcomes);
        }
        uow.flush(&plan.changes).await?;
        uow.record_imports(&plan.records).await?;
        uow.commit().await?;
        Ok(plan.outcomes)
    }

    /// A read-only unit of work over one snapshot, for an export to page through (the port's
    /// `journal_range`, `export_members`, `export_lots`).
    pub async fn export_snapshot(&self) -> Result<Box<dyn UnitOfWork>, EngineError> {
        Ok(self.store().begin_read().await?)
    }
}

/// `reserved` topped up to `wanted` ids (a backend may reserve fewer with the load).
async fn more_ids(
    uow: &mut dyn UnitOfWork,
    sequence: Sequence,
    mut reserved: Vec<i64>,
    wanted: usize,
) -> Result<Vec<i64>, StoreError> {
    if reserved.len() < wanted {
        let more = uow.reserve_ids(sequence, wanted - reserved.len()).await?;
        reserved.extend(more);
    }
    Ok(reserved)
}
