//! The rules core: every way omo rewards a member is a [`Rule`] — a trigger, conditions,
//! effects and limits. Deciding a rule is a pure function of the rule, the trigger's facts
//! and the rule's counters ([`decide`]): fired with an [`Award`], or the [`Skip`] reason it
//! did not. The engine gathers the facts and counters inside the ledger's batch and books the
//! award; nothing here reads or writes storage.
//!
//! One function per condition (`conditions.rs`), per effect (`effects.rs`) and per limit
//! (`limits.rs`), shared by every trigger: a trigger only brings facts.

mod conditions;
mod effects;
mod limits;
pub mod views;

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

pub use conditions::Conditions;
pub use effects::Effects;
pub use limits::{Counters, Limits};

use super::{
    location::VisitRuleKind,
    model::{Channel, LineItem},
    money::Money,
};

/// What a rule listens to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Trigger {
    /// A captured order (Capture or RecordSale); Quote and Authorize preview it.
    Purchase,
    Geo,
    Visit,
    Receipt,
    /// A behaviour event of the rule's `event_type`.
    Event,
    /// The member reaches one of `conditions.tier_ids`.
    Tier,
}

impl Trigger {
    pub fn as_str(self) -> &'static str {
        match self {
            Trigger::Purchase => "purchase",
            Trigger::Geo => "geo",
            Trigger::Visit => "visit",
            Trigger::Receipt => "receipt",
            Trigger::Event => "event",
            Trigger::Tier => "tier",
        }
    }

    /// Triggers whose rules CreateRule makes. GEO, VISIT and RECEIPT rules are made by their
    /// EngagementService calls (which carry their parameters), then listed, changed and
    /// switched off like every rule.
    pub fn is_core(self) -> bool {
        matches!(self, Trigger::Purchase | Trigger::Event | Trigger::Tier)
    }
}

/// The parameters of a geofence rule (trigger GEO).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GeoParams {
    pub min_dwell_seconds: i64,
    pub max_accuracy_m: f64,
}

/// The parameters of a visit rule (trigger VISIT).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VisitParams {
    pub kind: VisitRuleKind,
    pub visits: i64,
    pub window_days: i64,
    pub lapsed_days: i64,
}

/// The parameters of a receipt rule (trigger RECEIPT).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReceiptParams {
    pub earn_rate: Option<Decimal>,
    pub max_age_days: i64,
    pub review_threshold: Option<Money>,
}

/// What belongs to one trigger only.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum TriggerParams {
    None,
    Geo(GeoParams),
    Visit(VisitParams),
    Receipt(ReceiptParams),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Rule {
    pub rule_id: String,
    pub name: String,
    pub trigger: Trigger,
    /// EVENT rules: the event type they listen to; empty for every other trigger.
    pub event_type: String,
    pub conditions: Conditions,
    pub effects: Effects,
    pub limits: Limits,
    pub params: TriggerParams,
    /// Inclusive start; None: no start limit.
    pub starts_at: Option<DateTime<Utc>>,
    /// Exclusive end; None: no end.
    pub ends_at: Option<DateTime<Utc>>,
    pub enabled: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl TriggerParams {
    /// The trigger's own check of its signal: a GEO rule needs its dwell and fires once per
    /// visit, a VISIT rule fires on the visit it counts to. Without a signal (a simulation)
    /// the trigger's part is taken as met.
    fn hold(&self, signal: Signal) -> Result<(), Skip> {
        match (self, signal) {
            (
                TriggerParams::Geo(params),
                Signal::Geo {
                    dwell_seconds,
                    fired_this_visit,
                },
            ) => {
                if dwell_seconds < params.min_dwell_seconds {
                    Err(Skip::ConditionNotMet)
                } else if fired_this_visit {
                    Err(Skip::Cooldown)
                } else {
                    Ok(())
                }
            }
            (TriggerParams::Visit(_), Signal::Visit { due: false }) => Err(Skip::ConditionNotMet),
            _ => Ok(()),
        }
    }
}

impl Rule {
    /// Whether the rule's own points come out of a budget account (`rule:<id>:budget`).
    pub fn has_budget(&self) -> bool {
        self.limits.budget_points > 0
    }

    /// Whether deciding the rule reads a limit that commands of other members share (a
    /// budget or a daily cap at a store): those decisions are made under the rule's lock.
    pub fn has_shared_limit(&self) -> bool {
        self.has_budget() || self.limits.daily_cap_per_store > 0
    }

    pub fn is_in_period(&self, at: DateTime<Utc>) -> bool {
        self.starts_at.is_none_or(|start| start <= at) && self.ends_at.is_none_or(|end| at < end)
    }
}

/// What only one trigger's signal knows, for its parameters (`TriggerParams::hold`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Signal {
    /// A purchase, an event, a tier, or a simulation: nothing of a signal's own.
    #[default]
    None,
    /// A member inside a store: how long this visit there has lasted, and whether the rule
    /// already fired during it.
    Geo {
        dwell_seconds: i64,
        fired_this_visit: bool,
    },
    /// A visit just recorded: whether it is the one the rule counts to (its N-th visit, or
    /// the day a lapse is due).
    Visit { due: bool },
}

/// What a trigger knows when its rules are decided.
#[derive(Debug, Clone)]
pub struct Facts<'a> {
    pub at: DateTime<Utc>,
    /// The zone of `at`'s local hours and days: the store's, or the program's without one.
    pub tz: Tz,
    pub channel: Option<Channel>,
    pub store_id: &'a str,
    pub lines: &'a [LineItem],
    /// What the conditions' `min_total` compares with: the basket total.
    pub total: Money,
    /// What earns points: the amount paid (after coupons and points).
    pub paid: Money,
    /// The program's points per currency unit paid for this channel: the base of multipliers.
    pub base_rate: Decimal,
    pub event_type: &'a str,
    pub attributes: &'a BTreeMap<String, String>,
    /// Whether this is the member's first captured order.
    pub first_purchase: bool,
    pub tier_id: Option<&'a str>,
    pub signal: Signal,
}

/// The attributes of a trigger that has none.
static NO_ATTRIBUTES: BTreeMap<String, String> = BTreeMap::new();

impl<'a> Facts<'a> {
    /// A signal at a store (a location, a visit): no basket, no event; `channel` is where the
    /// signal came from, if anywhere, and `tier_id` the member's tier (for rules that ask).
    pub fn at_store(
        at: DateTime<Utc>,
        tz: Tz,
        channel: Option<Channel>,
        store_id: &'a str,
        tier_id: Option<&'a str>,
        signal: Signal,
    ) -> Self {
        Facts {
            at,
            tz,
            channel,
            store_id,
            lines: &[],
            total: Money::ZERO,
            paid: Money::ZERO,
            base_rate: Decimal::ZERO,
            event_type: "",
            attributes: &NO_ATTRIBUTES,
            first_purchase: false,
            tier_id,
            signal,
        }
    }
}

/// What a rule that fired gives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Award {
    /// The rule's own points (after its budget): never below zero.
    pub points: i64,
    /// The campaign of the coupon to issue, if any.
    pub campaign_id: Option<String>,
}

/// One rule's verdict as a reply tells it (SimulateRules, a location report): fired with its
/// points and coupon, or the reason it did not.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuleOutcome {
    pub rule_id: String,
    /// GEO: the store it was decided at; empty for other triggers.
    pub store_id: String,
    /// None: it fired.
    pub skip: Option<Skip>,
    pub points: i64,
    pub campaign_ids: Vec<String>,
}

impl RuleOutcome {
    pub fn of(rule_id: &str, store_id: &str, outcome: &Result<Award, Skip>) -> Self {
        let (skip, points, campaign_ids) = match outcome {
            Ok(award) => (
                None,
                award.points,
                award.campaign_id.iter().cloned().collect(),
            ),
            Err(skip) => (Some(*skip), 0, Vec::new()),
        };
        Self {
            rule_id: rule_id.to_string(),
            store_id: store_id.to_string(),
            skip,
            points,
            campaign_ids,
        }
    }
}

/// Why a rule did not fire; the names are the binding SimulateRules reasons.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Skip {
    Disabled,
    OutsidePeriod,
    OutsideHours,
    ConditionNotMet,
    Cooldown,
    MemberLimit,
    DailyCap,
    BudgetExhausted,
}

impl Skip {
    pub fn as_str(self) -> &'static str {
        match self {
            Skip::Disabled => "RULE_DISABLED",
            Skip::OutsidePeriod => "OUTSIDE_PERIOD",
            Skip::OutsideHours => "OUTSIDE_HOURS",
            Skip::ConditionNotMet => "CONDITION_NOT_MET",
            Skip::Cooldown => "COOLDOWN",
            Skip::MemberLimit => "MEMBER_LIMIT",
            Skip::DailyCap => "DAILY_CAP",
            Skip::BudgetExhausted => "BUDGET_EXHAUSTED",
        }
    }
}

/// Decides one rule: the checks that need no counters first (so a caller may skip reading
/// them for a rule that cannot fire, see [`decide_without_counters`]), then the limits, then
/// the award, cut to what is left of the budget.
pub fn decide(rule: &Rule, facts: &Facts<'_>, counters: &Counters) -> Result<Award, Skip> {
    decide_without_counters(rule, facts)?;
    rule.limits.check(facts.at, counters)?;
    let wanted = rule.effects.points(&rule.conditions, facts);
    let points = match counters.budget_left_points {
        Some(left) if left <= 0 && wanted > 0 => return Err(Skip::BudgetExhausted),
        Some(left) => wanted.min(left),
        None => wanted,
    };
    let campaign_id = rule.effects.campaign_id.clone();
    if points == 0 && campaign_id.is_none() {
        // Nothing to give (a multiplier over lines that earn nothing): the rule did not fire.
        return Err(Skip::ConditionNotMet);
    }
    Ok(Award {
        points,
        campaign_id,
    })
}

/// The checks of [`decide`] that read no counters: enabled, period, hours, conditions.
pub fn decide_without_counters(rule: &Rule, facts: &Facts<'_>) -> Result<(), Skip> {
    if !rule.enabled {
        return Err(Skip::Disabled);
    }
    if !rule.is_in_period(facts.at) {
        return Err(Skip::OutsidePeriod);
    }
    if !rule.conditions.in_hours(facts.at, facts.tz) {
        return Err(Skip::OutsideHours);
    }
    if rule.trigger == Trigger::Event && rule.event_type != facts.event_type {
        return Err(Skip::ConditionNotMet);
    }
    if !rule.conditions.hold(facts) {
        return Err(Skip::ConditionNotMet);
    }
    rule.params.hold(facts.signal)
}

#[cfg(test)]
pub(crate) mod tests;

/// Whether a RECEIPT rule asks only what the receipt area decides (`receipt::apply_rules`):
/// its stores, minimum total and lines, its coupon; no other condition, effect or limit.
fn receipt_rule_fits(rule: &Rule) -> bool {
    let c = &rule.conditions;
    let receipt_conditions = Conditions {
        store_ids: c.store_ids.clone(),
        min_total: c.min_total,
        lines: c.lines.clone(),
        ..Conditions::default()
    };
    let receipt_effects = Effects {
        campaign_id: rule.effects.campaign_id.clone(),
        ..Effects::default()
    };
    *c == receipt_conditions && rule.effects == receipt_effects && rule.limits == Limits::default()
}

/// UpdateRule: the fields of `rule` named by `paths` replace the stored ones. `rule_id` and
/// `trigger` are immutable; a budget may be raised or lowered but not added or removed (the
/// rule's points would change accounts midway).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RulePatch {
    pub rule: Rule,
    pub paths: Vec<String>,
}

/// The paths UpdateRule takes (a message path replaces the whole message).
pub const UPDATABLE_PATHS: [&str; 8] = [
    "name",
    "event_type",
    "conditions",
    "effects",
    "limits",
    "starts_at",
    "ends_at",
    "enabled",
];

impl RulePatch {
    /// The patch of `rule`'s fields named by `paths`; the others are left at their defaults,
    /// so that a retried request is the same command whatever else changed in between.
    pub fn new(rule: Rule, paths: Vec<String>) -> Self {
        let has = |path: &str| paths.iter().any(|p| p == path);
        let rule = Rule {
            name: if has("name") {
                rule.name
            } else {
                String::new()
            },
            event_type: if has("event_type") {
                rule.event_type
            } else {
                String::new()
            },
            conditions: if has("conditions") {
                rule.conditions
            } else {
                Conditions::default()
            },
            effects: if has("effects") {
                rule.effects
            } else {
                Effects::default()
            },
            limits: if has("limits") {
                rule.limits
            } else {
                Limits::default()
            },
            starts_at: rule.starts_at.filter(|_| has("starts_at")),
            ends_at: rule.ends_at.filter(|_| has("ends_at")),
            enabled: !has("enabled") || rule.enabled,
            ..rule
        };
        Self { rule, paths }
    }

    pub fn apply(
        &self,
        stored: &Rule,
        now: DateTime<Utc>,
    ) -> Result<Rule, super::error::DomainError> {
        let mut rule = stored.clone();
        let new = &self.rule;
        for path in &self.paths {
            match path.as_str() {
                "name" => rule.name = new.name.clone(),
                "event_type" => rule.event_type = new.event_type.clone(),
                "conditions" => rule.conditions = new.conditions.clone(),
                "effects" => rule.effects = new.effects.clone(),
                "limits" => rule.limits = new.limits.clone(),
                "starts_at" => rule.starts_at = new.starts_at,
                "ends_at" => rule.ends_at = new.ends_at,
                "enabled" => rule.enabled = new.enabled,
                _ => {}
            }
        }
        if rule.trigger == Trigger::Receipt && !receipt_rule_fits(&rule) {
            return Err(super::error::DomainError::invalid(
                "update_mask",
                "a RECEIPT rule takes only store_ids, min_total and lines as conditions and \
                 campaign_id as effect (its points are its receipt.earn_rate), and no limits",
            ));
        }
        if rule.has_budget() != stored.has_budget() {
            return Err(super::error::DomainError::invalid(
                "rule.limits.budget_points",
                "a budget can be raised or lowered, not added to or removed from a rule",
            ));
        }
        if rule.trigger == Trigger::Event && rule.event_type.is_empty() {
            return Err(super::error::DomainError::invalid(
                "rule.event_type",
                "an EVENT rule needs an event type",
            ));
        }
        if rule.trigger != Trigger::Event && !rule.event_type.is_empty() {
            return Err(super::error::DomainError::invalid(
                "rule.event_type",
                "only EVENT rules have an event type",
            ));
        }
        rule.updated_at = now;
        Ok(rule)
    }
}
