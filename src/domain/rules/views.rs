//! The GEO, VISIT and RECEIPT rules of the EngagementService's calls as rules (`of_*`: what
//! CreateGeoRule, CreateVisitRule and CreateReceiptRule store), and back (`to_*`: the
//! parameters the location and visit code reads to gather a signal's facts).

use chrono::DateTime;

use super::{
    Conditions, Effects, GeoParams, Limits, ReceiptParams, Rule, Trigger, TriggerParams,
    VisitParams,
};
use crate::domain::{
    location::{GeoRule, VisitRule},
    receipt::ReceiptRule,
};

fn rule(rule_id: String, trigger: Trigger, campaign_id: String) -> Rule {
    Rule {
        rule_id,
        name: String::new(),
        trigger,
        event_type: String::new(),
        conditions: Conditions::default(),
        effects: Effects {
            campaign_id: (!campaign_id.is_empty()).then_some(campaign_id),
            ..Effects::default()
        },
        limits: Limits::default(),
        params: TriggerParams::None,
        starts_at: None,
        ends_at: None,
        enabled: true,
        // Set by `engine::rules::create`.
        created_at: DateTime::UNIX_EPOCH,
        updated_at: DateTime::UNIX_EPOCH,
    }
}

pub fn of_geo(geo: GeoRule) -> Rule {
    let mut rule = rule(geo.rule_id, Trigger::Geo, geo.campaign_id);
    rule.conditions.store_ids = geo.store_ids;
    rule.conditions.active_hours = geo.active_hours;
    rule.conditions.days_of_week = geo.days_of_week;
    rule.limits.cooldown_seconds = geo.cooldown_seconds;
    rule.limits.daily_cap_per_store = geo.daily_cap_per_store;
    rule.params = TriggerParams::Geo(GeoParams {
        min_dwell_seconds: geo.min_dwell_seconds,
        max_accuracy_m: geo.max_accuracy_m,
    });
    rule.starts_at = geo.starts_at;
    rule.ends_at = geo.ends_at;
    rule
}

pub fn of_visit(visit: VisitRule) -> Rule {
    let mut rule = rule(visit.rule_id, Trigger::Visit, visit.campaign_id);
    rule.conditions.store_ids = visit.store_ids;
    rule.params = TriggerParams::Visit(VisitParams {
        kind: visit.kind,
        visits: visit.visits,
        window_days: visit.window_days,
        lapsed_days: visit.lapsed_days,
    });
    rule
}

pub fn of_receipt(receipt: ReceiptRule) -> Rule {
    let mut rule = rule(receipt.rule_id, Trigger::Receipt, receipt.campaign_id);
    rule.conditions.store_ids = receipt.store_ids;
    rule.conditions.min_total = Some(receipt.min_total);
    rule.conditions.lines = receipt.conditions;
    rule.params = TriggerParams::Receipt(ReceiptParams {
        earn_rate: receipt.earn_rate,
        max_age_days: receipt.max_age_days,
        review_threshold: receipt.review_threshold,
    });
    rule.starts_at = receipt.starts_at;
    rule.ends_at = receipt.ends_at;
    rule
}

/// A GEO rule's fields as the location code reads them (accuracy, how it gives, nearby
/// offers); None for a rule of another trigger.
pub fn to_geo(rule: &Rule) -> Option<GeoRule> {
    let TriggerParams::Geo(params) = &rule.params else {
        return None;
    };
    Some(GeoRule {
        rule_id: rule.rule_id.clone(),
        campaign_id: rule.effects.campaign_id.clone().unwrap_or_default(),
        store_ids: rule.conditions.store_ids.clone(),
        min_dwell_seconds: params.min_dwell_seconds,
        max_accuracy_m: params.max_accuracy_m,
        active_hours: rule.conditions.active_hours.clone(),
        days_of_week: rule.conditions.days_of_week,
        cooldown_seconds: rule.limits.cooldown_seconds,
        daily_cap_per_store: rule.limits.daily_cap_per_store,
        starts_at: rule.starts_at,
        ends_at: rule.ends_at,
    })
}

/// A VISIT rule's fields as the visit counting reads them; None for another trigger.
pub fn to_visit(rule: &Rule) -> Option<VisitRule> {
    let TriggerParams::Visit(params) = &rule.params else {
        return None;
    };
    Some(VisitRule {
        rule_id: rule.rule_id.clone(),
        campaign_id: rule.effects.campaign_id.clone().unwrap_or_default(),
        kind: params.kind,
        visits: params.visits,
        window_days: params.window_days,
        lapsed_days: params.lapsed_days,
        store_ids: rule.conditions.store_ids.clone(),
    })
}
