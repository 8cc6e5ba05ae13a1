//! The operator's reports (ReportService, issue #11), read-only. Every figure is summed from
//! the ledger's own rows (point lots, coupons, the journal, receipts, visits) in one read
//! snapshot; `domain::report` turns the store's groups into the reports, in the zones of the
//! stores and the program.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;

use super::{Engine, EngineError};
use crate::domain::{
    DomainError,
    auth::{Caller, Operation},
    report::{self, ActivityRow, CampaignStats, Liability},
    schedule::parse_time_zone,
};

impl Engine {
    /// What the program owes at `as_of` (unset: now). An `as_of` before now is refused: lots
    /// keep their present, not their history.
    pub async fn get_liability(
        &self,
        caller: &Caller,
        as_of: Option<DateTime<Utc>>,
    ) -> Result<Liability, EngineError> {
        caller.require(Operation::ReadReports)?;
        let now = self.now();
        let as_of = as_of.unwrap_or(now);
        if as_of < now {
            return Err(DomainError::invalid("as_of", "must not be before now").into());
        }
        let mut uow = self.store().begin_read().await?;
        let program = self.core.reference.program(uow.as_mut()).await?;
        let groups = uow.liability(as_of).await?;
        let tz = zone(&program.time_zone)?;
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
        let coupons = uow.campaign_coupons(campaign_id).await?;
        Ok(report::campaign_stats(&campaign, coupons))
    }

    /// Activity per channel and store (and local day) of the local days that begin in
    /// [start, end). The caller has checked the range (end after start, a bounded span).
    pub async fn get_activity(
        &self,
        caller: &Caller,
        (start, end): (DateTime<Utc>, DateTime<Utc>),
        group_by_day: bool,
    ) -> Result<Vec<ActivityRow>, EngineError> {
        caller.require(Operation::ReadReports)?;
        let mut uow = self.store().begin_read().await?;
        let program = self.core.reference.program(uow.as_mut()).await?;
        let program_zone = zone(&program.time_zone)?;
        let mut zones: HashMap<String, Tz> = HashMap::new();
        for store in uow.list_stores().await? {
            zones.insert(store.store_id.clone(), zone(&store.time_zone)?);
        }
        let cells = uow.activity(&report::activity_window(start, end)).await?;
        // Rows without a store (EC and app orders, the sweeper's expiries) are on the
        // program's days.
        let zone_of = |store_id: &str| zones.get(store_id).copied().unwrap_or(program_zone);
        Ok(report::activity(cells, zone_of, (start, end), group_by_day))
    }
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
