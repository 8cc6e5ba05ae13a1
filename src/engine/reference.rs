//! Reference data every order reads — program settings, which stores exist, campaigns that
//! issue on capture — kept in memory for a moment instead of read by every command.
//!
//! Stores are never deleted, so a store seen once stays known. Program settings and campaigns
//! are re-read after `TTL`: a change made through another replica applies here within that
//! time (and at once when made through this one, which invalidates its copy).

use super::rows::LedgerRows;
use crate::domain::ports::LedgerReads;
use std::{
    collections::HashSet,
    sync::Mutex,
    time::{Duration, Instant},
};

use crate::domain::{coupon::Campaign, model::Program, ports::StoreError};

const TTL: Duration = Duration::from_secs(1);

#[derive(Debug, Default)]
pub(super) struct Reference {
    program: Mutex<Option<(Program, Instant)>>,
    capture_campaigns: Mutex<Option<(Vec<Campaign>, Instant)>>,
    stores: Mutex<HashSet<String>>,
}

fn fresh<T: Clone>(slot: &Mutex<Option<(T, Instant)>>) -> Option<T> {
    let slot = slot.lock().expect("reference cache poisoned");
    slot.as_ref()
        .filter(|(_, loaded_at)| loaded_at.elapsed() < TTL)
        .map(|(value, _)| value.clone())
}

fn keep<T>(slot: &Mutex<Option<(T, Instant)>>, value: T) {
    *slot.lock().expect("reference cache poisoned") = Some((value, Instant::now()));
}

impl Reference {
    /// The program settings (defaults until an admin saves them).
    pub async fn program(&self, uow: &mut dyn LedgerReads) -> Result<Program, StoreError> {
        if let Some(program) = fresh(&self.program) {
            return Ok(program);
        }
        let program = uow.load_program(false).await?.unwrap_or_default();
        keep(&self.program, program.clone());
        Ok(program)
    }

    /// Campaigns with an `issue_on_capture` rule.
    pub async fn capture_campaigns(
        &self,
        uow: &mut dyn LedgerRows,
    ) -> Result<Vec<Campaign>, StoreError> {
        if let Some(campaigns) = fresh(&self.capture_campaigns) {
            return Ok(campaigns);
        }
        let mut campaigns = uow.list_campaigns().await?;
        campaigns.retain(|campaign| campaign.issue_on_capture.is_some());
        keep(&self.capture_campaigns, campaigns.clone());
        Ok(campaigns)
    }

    pub async fn store_exists(
        &self,
        uow: &mut dyn LedgerRows,
        store_id: &str,
    ) -> Result<bool, StoreError> {
        if self
            .stores
            .lock()
            .expect("reference cache poisoned")
            .contains(store_id)
        {
            return Ok(true);
        }
        let exists = uow.get_store(store_id).await?.is_some();
        if exists {
            let mut stores = self.stores.lock().expect("reference cache poisoned");
            stores.insert(store_id.to_string());
        }
        Ok(exists)
    }

    pub fn program_changed(&self) {
        *self.program.lock().expect("reference cache poisoned") = None;
    }

    pub fn campaigns_changed(&self) {
        *self
            .capture_campaigns
            .lock()
            .expect("reference cache poisoned") = None;
    }
}
