//! Reference data every order reads — program settings, which stores exist, campaigns that
//! issue on capture — kept in memory for a moment instead of read by every command. The
//! rules and the stores' spatial index (`Sites`) live here too: a location report
//! must find the stores around a position without reading every store.
//!
//! Stores are never deleted, so a store seen once stays known. Program settings and campaigns
//! are re-read after `TTL`: a change made through another replica applies here within that
//! time (and at once when made through this one, which invalidates its copy).
//!
//! Only committed data fills these caches: campaigns, rules and the stores' index are read
//! from the database's committed rows, and settings or a store a batch wrote itself answer that
//! batch alone (`LedgerReads::shows_uncommitted_reference`), since it may still roll back.

use super::rows::LedgerRows;
use crate::domain::ports::LedgerReads;
use std::{
    collections::{HashMap, HashSet},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use chrono_tz::Tz;

use super::spatial::{SpatialIndex, StoreSite};
use crate::domain::{
    coupon::Campaign,
    geo::Geofence,
    model::{LatLng, Program, Store},
    ports::StoreError,
    rules::{Rule, Trigger},
    schedule::parse_time_zone,
};

const TTL: Duration = Duration::from_secs(1);

#[derive(Debug, Default)]
pub(super) struct Reference {
    program: Mutex<Option<(Program, Instant)>>,
    capture_campaigns: Mutex<Option<(Vec<Campaign>, Instant)>>,
    stores: Mutex<HashSet<String>>,
    /// The stores' spatial index and when the store count was last checked against it.
    sites: Mutex<Option<(Arc<Sites>, Instant)>>,
    /// Held while the index is checked or rebuilt: concurrent commands wait for one rebuild
    /// (seconds for 100,000 stores) instead of each making its own.
    sites_refresh: tokio::sync::Mutex<()>,
    campaigns: Mutex<Option<(Arc<Vec<Campaign>>, Instant)>>,
    rules: Mutex<Option<(Arc<Vec<Rule>>, Instant)>>,
}

/// A store as location reports need it: its zone and its fence, parsed once.
#[derive(Debug)]
pub(super) struct Site {
    pub store: Store,
    pub tz: Tz,
    pub fence: Geofence,
}

/// Every store, with a spatial index over their fences.
pub(super) struct Sites {
    index: SpatialIndex,
    sites: HashMap<String, Site>,
    /// Stores the database had when this was built (some may be unusable, see `build`).
    count: i64,
}

impl std::fmt::Debug for Sites {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sites").field("count", &self.count).finish()
    }
}

impl Sites {
    /// Indexes `stores`. A store whose zone or polygon does not parse (validated at creation,
    /// so only data written outside omo) is left out and logged rather than failing reports.
    fn build(stores: Vec<Store>) -> Self {
        let count = i64::try_from(stores.len()).unwrap_or(i64::MAX);
        let mut sites = HashMap::with_capacity(stores.len());
        let mut entries = Vec::with_capacity(stores.len());
        for store in stores {
            let parsed = parse_time_zone(&store.time_zone)
                .map_err(|e| e.to_string())
                .and_then(|tz| {
                    let fence = Geofence::of_store(&store).map_err(|e| e.to_string())?;
                    let entry = StoreSite::of_store(&store).map_err(|e| e.to_string())?;
                    Ok((tz, fence, entry))
                });
            match parsed {
                Ok((tz, fence, entry)) => {
                    entries.push(entry);
                    let site = Site { store, tz, fence };
                    sites.insert(site.store.store_id.clone(), site);
                }
                Err(why) => {
                    tracing::error!(store_id = %store.store_id, %why, "store left out of the spatial index")
                }
            }
        }
        Self {
            index: SpatialIndex::new(entries),
            sites,
            count,
        }
    }

    pub fn get(&self, store_id: &str) -> Option<&Site> {
        self.sites.get(store_id)
    }

    /// Stores whose fence may contain `position` (the caller checks each fence exactly).
    pub fn candidates(&self, position: LatLng) -> Vec<&Site> {
        let ids = self.index.candidates(position);
        ids.into_iter().filter_map(|id| self.get(id)).collect()
    }

    /// Stores within `radius_m` of `position`, nearest first, with their distance.
    pub fn within(&self, position: LatLng, radius_m: f64) -> Vec<(&Site, f64)> {
        let near = self.index.within(position, radius_m);
        near.into_iter()
            .filter_map(|(id, distance)| Some((self.get(id)?, distance)))
            .collect()
    }
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
    /// A batch that changed them sees its own settings, and they are not cached.
    pub async fn program(&self, uow: &mut dyn LedgerReads) -> Result<Program, StoreError> {
        let committed = !uow.shows_uncommitted_reference();
        if committed && let Some(program) = fresh(&self.program) {
            return Ok(program);
        }
        let program = uow.load_program(false).await?.unwrap_or_default();
        if committed {
            keep(&self.program, program.clone());
        }
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
        // A store this batch created is known once the batch commits, not before.
        if exists && !uow.shows_uncommitted_reference() {
            let mut stores = self.stores.lock().expect("reference cache poisoned");
            stores.insert(store_id.to_string());
        }
        Ok(exists)
    }

    /// The stores' spatial index. At most once a second it counts the stores (one cheap
    /// statement) and rebuilds when the count changed: stores are never deleted, so a store
    /// created through another replica shows up here within about a second.
    /// The index as last built, however old, without a read (None: never built).
    pub fn cached_sites(&self) -> Option<Arc<Sites>> {
        let slot = self.sites.lock().expect("reference cache poisoned");
        slot.as_ref().map(|(sites, _)| sites.clone())
    }

    /// A batch that wrote reference data gets an index it does not cache: what it reads from
    /// the database is not committed yet, and the cache must not keep it.
    pub async fn sites(&self, uow: &mut dyn LedgerReads) -> Result<Arc<Sites>, StoreError> {
        if uow.shows_uncommitted_reference() {
            return Ok(Arc::new(Sites::build(uow.list_stores().await?)));
        }
        if let Some(sites) = fresh(&self.sites) {
            return Ok(sites);
        }
        let _refreshing = self.sites_refresh.lock().await;
        let cached = self.sites.lock().expect("reference cache poisoned").clone();
        if let Some((sites, checked_at)) = &cached
            && checked_at.elapsed() < TTL
        {
            return Ok(sites.clone());
        }
        let count = uow.count_stores().await?;
        let sites = match cached {
            Some((sites, _)) if sites.count == count => sites,
            _ => Arc::new(Sites::build(uow.list_stores().await?)),
        };
        keep(&self.sites, sites.clone());
        Ok(sites)
    }

    /// The enabled rules of one trigger, from the rules' cache (see [`Reference::rules`]).
    pub async fn enabled_rules(
        &self,
        uow: &mut dyn LedgerReads,
        trigger: Trigger,
    ) -> Result<Vec<Rule>, StoreError> {
        let rules = self.rules(uow).await?;
        Ok(rules
            .iter()
            .filter(|rule| rule.trigger == trigger && rule.enabled)
            .cloned()
            .collect())
    }

    /// Every rule (committed), re-read after `TTL`: a rule changed through
    /// another replica applies here within that time (its limits hold at once: they are
    /// read under locks, not from here).
    pub async fn rules(&self, uow: &mut dyn LedgerReads) -> Result<Arc<Vec<Rule>>, StoreError> {
        if let Some(rules) = fresh(&self.rules) {
            return Ok(rules);
        }
        let rules = Arc::new(uow.list_rules().await?);
        keep(&self.rules, rules.clone());
        Ok(rules)
    }

    /// Every campaign (committed), re-read after `TTL`: nearby offers list those of a store.
    pub async fn campaigns(
        &self,
        uow: &mut dyn LedgerReads,
    ) -> Result<Arc<Vec<Campaign>>, StoreError> {
        if let Some(campaigns) = fresh(&self.campaigns) {
            return Ok(campaigns);
        }
        let campaigns = Arc::new(uow.list_campaigns().await?);
        keep(&self.campaigns, campaigns.clone());
        Ok(campaigns)
    }

    pub fn stores_changed(&self) {
        *self.sites.lock().expect("reference cache poisoned") = None;
    }

    pub fn rules_changed(&self) {
        *self.rules.lock().expect("reference cache poisoned") = None;
    }

    pub fn program_changed(&self) {
        *self.program.lock().expect("reference cache poisoned") = None;
    }

    pub fn campaigns_changed(&self) {
        *self
            .capture_campaigns
            .lock()
            .expect("reference cache poisoned") = None;
        *self.campaigns.lock().expect("reference cache poisoned") = None;
    }
}
