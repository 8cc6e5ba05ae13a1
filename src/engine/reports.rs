//! The operator's reports (ReportService, issue #11), read-only. They read the summaries the
//! batch flush keeps (`domain::summary`) in one read snapshot; `domain::report` turns them into
//! the reports, in the zones of the stores and the program. `rebuild_reports` replaces the
//! summaries with a recomputation from the ledger.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;

use super::{Engine, EngineError};
use crate::domain::{
    DomainError,
    auth::{Caller, Operation},
    ports::UnitOfWork,
    report::{self, ActivityRow, CampaignStats, Liability},
    schedule::parse_time_zone,
    summary::{self, Tallies, activity_period},
};

/// How far before the server's now a client's `as_of` may be and still mean now: a client's
/// clock a little behind, or a request in flight, must not be refused.
const AS_OF_SKEW: chrono::Duration = chrono::Duration::seconds(60);

impl Engine {
    /// What the program owes at `as_of` (unset: now). An `as_of` up to 60 s before now means
    /// now; earlier is refused: lots keep their present, not their history.
    pub async fn get_liability(
        &self,
        caller: &Caller,
        as_of: Option<DateTime<Utc>>,
    ) -> Result<Liability, EngineError> {
        caller.require(Operation::ReadReports)?;
        let now = self.now();
        let as_of = as_of.unwrap_or(now);
        if as_of < now - AS_OF_SKEW {
            return Err(
                DomainError::invalid("as_of", "must not be more than 60 s before now").into(),
            );
        }
        let as_of = as_of.max(now);
        let mut uow = self.store().begin_read().await?;
        let program = self.core.reference.program(uow.as_mut()).await?;
        let tz = zone(&program.time_zone)?;
        // The store sums the lot summary per month of the program's zone: a dozen rows or so.
        let bounds = match uow.lot_expiry_span().await? {
            Some((first, last)) => report::month_bounds(first, last, tz),
            None => Vec::new(),
        };
        let lots = uow.liability_lots(as_of, &bounds).await?;
        let groups = summary::liability_groups(lots.groups, &lots.boundary, as_of);
        Ok(report::liability(&groups, program.point_value, tz))
    }

    /// One campaign's figures; an unknown campaign is CAMPAIGN_NOT_FOUND.
    pub async fn get_campaign_stats(
        &self,
        caller: &Caller,
        campaign_id: &str,
    ) -> Result<CampaignStats, EngineError> {
        caller.require(Operation::ReadReports)?;
        let mut uow = self.store().begin_read().await?;
        let campaign = uow
            .get_campaign(campaign_id, false)
            .await?
            .ok_or(DomainError::CampaignNotFound)?;
        let sums = uow.campaign_sums(campaign_id).await?;
        Ok(report::campaign_stats(&campaign, sums))
    }

    /// Activity per channel and store (and local day) of the local days that begin in
    /// [start, end), of one store or of all. The caller has checked the range (end after
    /// start, a bounded span).
    pub async fn get_activity(
        &self,
        caller: &Caller,
        (start, end): (DateTime<Utc>, DateTime<Utc>),
        store_id: Option<&str>,
        group_by_day: bool,
    ) -> Result<Vec<ActivityRow>, EngineError> {
        caller.require(Operation::ReadReports)?;
        let mut uow = self.store().begin_read().await?;
        let program = self.core.reference.program(uow.as_mut()).await?;
        let program_zone = zone(&program.time_zone)?;
        let zones = store_zones(uow.as_mut()).await?;
        let sums = uow
            .activity_sums(&report::activity_window(
                start,
                end,
                store_id,
                !group_by_day,
            ))
            .await?;
        // Rows without a store (EC and app orders, the sweeper's expiries) are on the
        // program's days.
        let zone_of = |store_id: &str| zones.get(store_id).copied().unwrap_or(program_zone);
        Ok(report::activity(sums, zone_of, (start, end), group_by_day))
    }

    /// Rebuilds the report summaries if a migration asked for it (see `rebuild_reports`);
    /// asked again under the lock, so that replicas starting together rebuild once.
    pub async fn rebuild_reports_if_wanted(&self) -> Result<(), EngineError> {
        let mut uow = self.store().begin_read().await?;
        let wanted = uow.summary_rebuild_wanted().await?;
        drop(uow);
        if wanted {
            let started = std::time::Instant::now();
            if let Some(rows) = self.rebuild(true).await? {
                let elapsed_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
                tracing::info!(rows, elapsed_ms, "report summaries rebuilt from the ledger");
            }
        }
        Ok(())
    }

    /// Replaces the report summaries with a recomputation from the ledger (after SQL written
    /// outside omo, such as the bench's seeding), in one transaction; how many rows it wrote.
    pub async fn rebuild_reports(&self) -> Result<usize, EngineError> {
        Ok(self.rebuild(false).await?.unwrap_or(0))
    }

    /// None: `only_if_wanted` and no rebuild is wanted any more.
    async fn rebuild(&self, only_if_wanted: bool) -> Result<Option<usize>, EngineError> {
        let mut uow = self.store().begin().await?;
        uow.lock_report_sums().await?;
        if only_if_wanted && !uow.summary_rebuild_wanted().await? {
            return Ok(None);
        }
        let zones = store_zones(uow.as_mut()).await?;
        let recomputed = uow.recompute_report_sums().await?;
        let mut tallies = Tallies::new();
        tallies.add(recomputed, |cell| {
            activity_period(zones.get(&cell.store_id).copied(), cell.period)
        });
        let sums = tallies.finish();
        uow.replace_report_sums(&sums).await?;
        uow.commit().await?;
        Ok(Some(
            sums.activity.len()
                + sums.visits.len()
                + sums.coupons.len()
                + sums.redemptions.len()
                + sums.redemption_times.len()
                + sums.lots.len(),
        ))
    }
}

/// Every store's zone.
pub(super) async fn store_zones(
    uow: &mut dyn UnitOfWork,
) -> Result<HashMap<String, Tz>, EngineError> {
    let mut zones = HashMap::new();
    for store in uow.list_stores().await? {
        zones.insert(store.store_id.clone(), zone(&store.time_zone)?);
    }
    Ok(zones)
}

/// A zone stored with a program or store: checked when it was written, so one the tz database
/// does not know is a corrupt row.
fn zone(name: &str) -> Result<Tz, EngineError> {
    parse_time_zone(name).map_err(|error| {
        EngineError::Internal(crate::domain::ports::StoreError::Corrupt(format!(
            "time zone {name:?}: {error}"
        )))
    })
}
