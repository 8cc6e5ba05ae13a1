//! The GEO, VISIT and RECEIPT rules of the EngagementService as rules: what ListRules and
//! GetRule show of them. They are still created and decided by their own areas.

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
        // Their tables keep no such instants for the domain: shown as unset.
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
