//! Conditions: every set condition must hold; an empty one holds always.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};

use super::Facts;
use crate::domain::{
    model::{Channel, LineItem},
    money::Money,
    receipt::LineCondition,
    schedule::{DaysOfWeek, HoursWindow, is_active},
};

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Conditions {
    pub channels: Vec<Channel>,
    pub store_ids: Vec<String>,
    /// Least basket total; None: any.
    pub min_total: Option<Money>,
    /// Each must be met by the basket's lines (`LineCondition::holds`).
    pub lines: Vec<LineCondition>,
    pub tier_ids: Vec<String>,
    /// Local-time windows (the store's zone, or the program's); empty: all day.
    pub active_hours: Vec<HoursWindow>,
    pub days_of_week: DaysOfWeek,
    /// An event's attributes must carry each of these values.
    pub attributes: BTreeMap<String, String>,
    /// Only the member's first captured order.
    pub first_purchase: bool,
}

impl Conditions {
    pub fn in_hours(&self, at: DateTime<Utc>, tz: Tz) -> bool {
        is_active(at, tz, &self.active_hours, self.days_of_week)
    }

    /// Every condition but the hours (see [`Conditions::in_hours`]).
    pub fn hold(&self, facts: &Facts<'_>) -> bool {
        self.channel_holds(facts.channel)
            && self.store_holds(facts.store_id)
            && self.min_total.is_none_or(|min| facts.total >= min)
            && self.lines.iter().all(|line| line.holds(facts.lines))
            && self.tier_holds(facts.tier_id)
            && self.attributes_hold(facts.attributes)
            && (!self.first_purchase || facts.first_purchase)
    }

    fn channel_holds(&self, channel: Option<Channel>) -> bool {
        self.channels.is_empty() || channel.is_some_and(|c| self.channels.contains(&c))
    }

    fn store_holds(&self, store_id: &str) -> bool {
        self.store_ids.is_empty() || self.store_ids.iter().any(|s| s == store_id)
    }

    fn tier_holds(&self, tier_id: Option<&str>) -> bool {
        self.tier_ids.is_empty() || tier_id.is_some_and(|t| self.tier_ids.iter().any(|s| s == t))
    }

    fn attributes_hold(&self, attributes: &BTreeMap<String, String>) -> bool {
        self.attributes
            .iter()
            .all(|(key, value)| attributes.get(key) == Some(value))
    }

    /// The lines the line conditions name (any of them), or every line without line
    /// conditions: what a multiplier or an earn rate applies to.
    pub fn matched_lines<'l>(&self, lines: &'l [LineItem]) -> Vec<&'l LineItem> {
        lines
            .iter()
            .filter(|line| self.lines.is_empty() || self.lines.iter().any(|c| c.matches(line)))
            .collect()
    }
}
