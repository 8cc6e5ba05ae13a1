//! Limits: how often and how much a rule may give. The per-member counters are read under the
//! member's lock and the shared ones (a store's day, the budget) under the rule's, so they
//! hold exactly under any concurrency and across replicas.

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};

use super::Skip;

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Limits {
    /// Most times the rule fires for one member; 0: no limit.
    pub per_member_limit: i64,
    /// Least seconds between two firings for one member; 0: none.
    pub cooldown_seconds: i64,
    /// Most firings at one store per local day; 0: no cap.
    pub daily_cap_per_store: i64,
    /// Points the rule may give in total (its budget account); 0: no budget.
    pub budget_points: i64,
}

/// What the rule has done so far, as far as its limits care.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Counters {
    /// Times it fired for this member, and when last.
    pub member_fired: i64,
    pub member_last_fired_at: Option<DateTime<Utc>>,
    /// Times it fired at this store on this local day.
    pub store_day_fired: i64,
    /// What is left in its budget account; None: no budget.
    pub budget_left_points: Option<i64>,
}

impl Limits {
    pub fn check(&self, at: DateTime<Utc>, counters: &Counters) -> Result<(), Skip> {
        if self.per_member_limit > 0 && counters.member_fired >= self.per_member_limit {
            return Err(Skip::MemberLimit);
        }
        if self.cooldown_seconds > 0
            && counters
                .member_last_fired_at
                .is_some_and(|last| at < last + Duration::seconds(self.cooldown_seconds))
        {
            return Err(Skip::Cooldown);
        }
        if self.daily_cap_per_store > 0 && counters.store_day_fired >= self.daily_cap_per_store {
            return Err(Skip::DailyCap);
        }
        Ok(())
    }
}
