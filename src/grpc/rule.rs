//! `omo.v1.RuleService` (admin): rules of every trigger. Requests become domain rules (every bad
//! field a `FieldViolation` with its path); domain rules become messages.

use std::{collections::BTreeMap, sync::Arc};

use rust_decimal::Decimal;
use tonic::{Request, Response, Status};

use super::{
    auth::caller_for,
    convert::{
        MAX_POINTS, Violations, basket, channel_out, channels, check_id, check_optional_id,
        check_text, decimal, decimal_out, member_ref, money, optional_instant, optional_request_id,
        optional_timestamp, timestamp,
    },
    engagement::{active_hours, days_of_week, period},
    paging::{next_page_token, page_size, page_token},
    reply::execute,
};
use crate::{
    domain::{
        auth::Operation,
        command::RuleCommand,
        location::VisitRuleKind,
        page::{Cursor, page_after},
        receipt::LineCondition,
        rules::{
            Conditions, Effects, Limits, Rule, RuleOutcome, RulePatch, Skip, Trigger,
            TriggerParams, UPDATABLE_PATHS,
        },
        schedule::format_time_of_day,
    },
    engine::{Engine, Simulation},
    proto::{self, rule_service_server::RuleService},
};

/// Most stores, tiers, line conditions or attributes one rule may name.
const MAX_RULE_LIST: usize = 1_000;
/// Longest name, event type, attribute key and value, in characters.
const MAX_NAME_CHARS: usize = 200;
const MAX_EVENT_TYPE_CHARS: usize = 64;
const MAX_ATTRIBUTES: usize = 32;
const MAX_ATTRIBUTE_KEY_CHARS: usize = 64;
const MAX_ATTRIBUTE_VALUE_CHARS: usize = 256;
/// Largest multiplier and earn rate of a rule.
const MAX_MULTIPLIER: Decimal = Decimal::from_parts(100, 0, 0, false, 0);
const MAX_RULE_RATE: Decimal = Decimal::from_parts(1000, 0, 0, false, 0);
/// Longest life of limited-time points, in days (ten years).
const MAX_EXPIRE_DAYS: i32 = 3_660;

pub struct RuleApi {
    engine: Arc<Engine>,
}

impl RuleApi {
    pub fn new(engine: Arc<Engine>) -> Self {
        Self { engine }
    }
}

#[tonic::async_trait]
impl RuleService for RuleApi {
    async fn create_rule(
        &self,
        request: Request<proto::CreateRuleRequest>,
    ) -> Result<Response<proto::CreateRuleResponse>, Status> {
        let caller = caller_for(&self.engine, &request, Operation::ManageRules).await?;
        let request = request.into_inner();
        let mut v = Violations::new();
        let request_id = optional_request_id(&mut v, &request.request_id);
        let rule = rule_in(v, request.rule, None)?;
        let command = RuleCommand::CreateRule(rule);
        let rule = execute(&self.engine, &caller, request_id.as_deref(), command).await?;
        Ok(Response::new(proto::CreateRuleResponse {
            rule: Some(rule_out(rule)),
        }))
    }

    async fn get_rule(
        &self,
        request: Request<proto::GetRuleRequest>,
    ) -> Result<Response<proto::GetRuleResponse>, Status> {
        caller_for(&self.engine, &request, Operation::ManageRules).await?;
        let rule_id = request.into_inner().rule_id;
        let mut v = Violations::new();
        check_id(&mut v, "rule_id", &rule_id);
        v.finish()?;
        let rule = self.engine.get_rule(&rule_id).await?;
        Ok(Response::new(proto::GetRuleResponse {
            rule: Some(rule_out(rule)),
        }))
    }

    async fn list_rules(
        &self,
        request: Request<proto::ListRulesRequest>,
    ) -> Result<Response<proto::ListRulesResponse>, Status> {
        caller_for(&self.engine, &request, Operation::ManageRules).await?;
        let request = request.into_inner();
        let mut v = Violations::new();
        let trigger = (request.trigger != 0)
            .then(|| trigger_in(&mut v, "trigger", request.trigger))
            .flatten();
        let size = page_size(&mut v, request.page_size);
        let after = page_token(&mut v, "ListRules", &request.page_token);
        v.finish()?;
        let rules: Vec<Rule> = self
            .engine
            .list_rules()
            .await?
            .into_iter()
            .filter(|rule| trigger.is_none_or(|t| rule.trigger == t))
            .filter(|rule| request.include_disabled || rule.enabled)
            .collect();
        let by_id = |rule: &Rule| Cursor {
            at: None,
            id: rule.rule_id.clone(),
        };
        let page = page_after(rules, by_id, after.flatten().as_ref(), size.unwrap_or(50));
        Ok(Response::new(proto::ListRulesResponse {
            rules: page.items.into_iter().map(rule_out).collect(),
            next_page_token: next_page_token(page.next),
        }))
    }

    async fn update_rule(
        &self,
        request: Request<proto::UpdateRuleRequest>,
    ) -> Result<Response<proto::UpdateRuleResponse>, Status> {
        let caller = caller_for(&self.engine, &request, Operation::ManageRules).await?;
        let (request_id, patch) = update_rule_in(&self.engine, request.into_inner()).await?;
        let command = RuleCommand::UpdateRule(patch);
        let rule = execute(&self.engine, &caller, request_id.as_deref(), command).await?;
        Ok(Response::new(proto::UpdateRuleResponse {
            rule: Some(rule_out(rule)),
        }))
    }

    async fn simulate_rules(
        &self,
        request: Request<proto::SimulateRulesRequest>,
    ) -> Result<Response<proto::SimulateRulesResponse>, Status> {
        caller_for(&self.engine, &request, Operation::ManageRules).await?;
        let simulation = simulation_in(request.into_inner())?;
        let outcomes = self.engine.simulate_rules(&simulation).await?;
        Ok(Response::new(proto::SimulateRulesResponse {
            outcomes: outcomes.into_iter().map(rule_outcome_out).collect(),
        }))
    }

    async fn get_rule_stats(
        &self,
        request: Request<proto::GetRuleStatsRequest>,
    ) -> Result<Response<proto::GetRuleStatsResponse>, Status> {
        caller_for(&self.engine, &request, Operation::ManageRules).await?;
        let rule_id = request.into_inner().rule_id;
        let mut v = Violations::new();
        check_id(&mut v, "rule_id", &rule_id);
        v.finish()?;
        let stats = self.engine.rule_stats(&rule_id).await?;
        Ok(Response::new(proto::GetRuleStatsResponse {
            fired: stats.totals.fired,
            members: stats.totals.members,
            points_awarded: stats.totals.points,
            coupons_issued: stats.totals.coupons,
            budget_points_left: stats.budget_points_left,
        }))
    }
}

fn skip_out(skip: Skip) -> String {
    skip.as_str().to_string()
}

fn trigger_in(v: &mut Violations, field: &str, value: i32) -> Option<Trigger> {
    let trigger = match proto::RuleTrigger::try_from(value) {
        Ok(proto::RuleTrigger::Purchase) => Trigger::Purchase,
        Ok(proto::RuleTrigger::Geo) => Trigger::Geo,
        Ok(proto::RuleTrigger::Visit) => Trigger::Visit,
        Ok(proto::RuleTrigger::Receipt) => Trigger::Receipt,
        Ok(proto::RuleTrigger::Event) => Trigger::Event,
        Ok(proto::RuleTrigger::Tier) => Trigger::Tier,
        Ok(proto::RuleTrigger::Unspecified) | Err(_) => {
            v.push(
                field,
                "must be a RULE_TRIGGER_* value other than UNSPECIFIED",
            );
            return None;
        }
    };
    Some(trigger)
}

fn trigger_out(trigger: Trigger) -> proto::RuleTrigger {
    match trigger {
        Trigger::Purchase => proto::RuleTrigger::Purchase,
        Trigger::Geo => proto::RuleTrigger::Geo,
        Trigger::Visit => proto::RuleTrigger::Visit,
        Trigger::Receipt => proto::RuleTrigger::Receipt,
        Trigger::Event => proto::RuleTrigger::Event,
        Trigger::Tier => proto::RuleTrigger::Tier,
    }
}

/// A rule of CreateRule, or the new values of UpdateRule (`stored`: the trigger is the stored
/// rule's). Every bad field is reported, each with its path.
fn rule_in(
    mut v: Violations,
    rule: Option<proto::Rule>,
    stored: Option<&Rule>,
) -> Result<Rule, Status> {
    let Some(r) = rule else {
        v.push("rule", "is required");
        return Err(v.into_status());
    };
    check_optional_id(&mut v, "rule.rule_id", &r.rule_id);
    check_text(&mut v, "rule.name", &r.name, 0, MAX_NAME_CHARS);
    let trigger = match stored {
        Some(stored) => Some(stored.trigger),
        None => trigger_in(&mut v, "rule.trigger", r.trigger),
    };
    if let Some(trigger) = trigger
        && stored.is_none()
        && !trigger.is_core()
    {
        v.push(
            "rule.trigger",
            "GEO, VISIT and RECEIPT rules are made by EngagementService.CreateGeoRule, CreateVisitRule and CreateReceiptRule",
        );
    }
    event_type(&mut v, trigger, &r.event_type);
    // A stored GEO, VISIT or RECEIPT rule keeps its parameters (UpdateRule cannot mask them).
    for (field, set, own) in [
        ("rule.geo", r.geo.is_some(), Trigger::Geo),
        ("rule.visit", r.visit.is_some(), Trigger::Visit),
        ("rule.receipt", r.receipt.is_some(), Trigger::Receipt),
    ] {
        if set && (stored.is_none() || trigger != Some(own)) {
            v.push(field, "only the rules of its trigger take these parameters");
        }
    }
    let conditions = r.conditions.unwrap_or_default();
    if !conditions.attributes.is_empty() && trigger.is_some_and(|t| t != Trigger::Event) {
        v.push(
            "rule.conditions.attributes",
            "only EVENT rules have attributes to match",
        );
    }
    let conditions = conditions_in(&mut v, conditions);
    // A RECEIPT rule may give only the points of its receipt.earn_rate.
    let earns_by_receipt = r.receipt.as_ref().is_some_and(|p| !p.earn_rate.is_empty());
    let effects = effects_in(&mut v, r.effects.unwrap_or_default(), earns_by_receipt);
    let limits = limits_in(&mut v, r.limits.unwrap_or_default());
    let (starts_at, ends_at) = period(&mut v, r.starts_at.as_ref(), r.ends_at.as_ref());
    let now = chrono::DateTime::UNIX_EPOCH;
    v.build(|| {
        Some(Rule {
            rule_id: r.rule_id,
            name: r.name,
            trigger: trigger?,
            event_type: r.event_type,
            conditions: conditions?,
            effects: effects?,
            limits: limits?,
            params: TriggerParams::None,
            starts_at: starts_at?,
            ends_at: ends_at?,
            enabled: r.enabled.unwrap_or(true),
            // Set by the engine when it creates or changes the rule.
            created_at: now,
            updated_at: now,
        })
    })
}

/// EVENT rules name their event type (1-64 of `[a-z0-9_.]`); no other rule has one.
fn event_type(v: &mut Violations, trigger: Option<Trigger>, value: &str) {
    let is_event = trigger == Some(Trigger::Event);
    if !is_event {
        if !value.is_empty() {
            v.push("rule.event_type", "only EVENT rules have an event type");
        }
        return;
    }
    let valid = (1..=MAX_EVENT_TYPE_CHARS).contains(&value.chars().count())
        && value
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '_' | '.'));
    if !valid {
        v.push(
            "rule.event_type",
            format!("must be 1-{MAX_EVENT_TYPE_CHARS} characters of a-z, 0-9, '_' and '.'"),
        );
    }
}

fn conditions_in(v: &mut Violations, c: proto::RuleConditions) -> Option<Conditions> {
    let channels = channels(v, "rule.conditions.channels", &c.channels);
    let store_ids = ids_in(v, "rule.conditions.store_ids", c.store_ids);
    let tier_ids = ids_in(v, "rule.conditions.tier_ids", c.tier_ids);
    let min_total = if c.min_total.is_empty() {
        Some(None)
    } else {
        money(v, "rule.conditions.min_total", &c.min_total).map(Some)
    };
    let lines = lines_in(v, c.lines);
    let hours = active_hours(v, &c.active_hours);
    let days = days_of_week(v, &c.days_of_week);
    let attributes = attributes_in(v, c.attributes);
    Some(Conditions {
        channels: channels?,
        store_ids: store_ids?,
        min_total: min_total?,
        lines: lines?,
        tier_ids: tier_ids?,
        active_hours: hours?,
        days_of_week: days?,
        attributes: attributes?,
        first_purchase: c.first_purchase,
    })
}

fn ids_in(v: &mut Violations, field: &str, ids: Vec<String>) -> Option<Vec<String>> {
    if ids.len() > MAX_RULE_LIST {
        v.push(field, format!("at most {MAX_RULE_LIST} ids"));
        return None;
    }
    let ok = ids.iter().enumerate().fold(true, |ok, (i, id)| {
        check_id(v, &format!("{field}[{i}]"), id) && ok
    });
    ok.then_some(ids)
}

fn lines_in(
    v: &mut Violations,
    lines: Vec<proto::RuleLineCondition>,
) -> Option<Vec<LineCondition>> {
    if lines.len() > MAX_RULE_LIST {
        v.push(
            "rule.conditions.lines",
            format!("at most {MAX_RULE_LIST} conditions"),
        );
        return None;
    }
    let mut ok = true;
    for (i, line) in lines.iter().enumerate() {
        let field = format!("rule.conditions.lines[{i}]");
        ok &= check_text(v, &format!("{field}.sku"), &line.sku, 0, 256);
        ok &= check_text(v, &format!("{field}.category"), &line.category, 0, 256);
        if line.sku.is_empty() && line.category.is_empty() {
            v.push(field.clone(), "names a sku or a category");
            ok = false;
        }
        if !(0..=1_000_000).contains(&line.min_quantity) {
            v.push(
                format!("{field}.min_quantity"),
                "must be between 0 and 1000000",
            );
            ok = false;
        }
    }
    ok.then(|| {
        lines
            .into_iter()
            .map(|line| LineCondition {
                sku: line.sku,
                category: line.category,
                min_quantity: line.min_quantity,
            })
            .collect()
    })
}

fn attributes_in(
    v: &mut Violations,
    attributes: std::collections::HashMap<String, String>,
) -> Option<BTreeMap<String, String>> {
    if attributes.len() > MAX_ATTRIBUTES {
        v.push(
            "rule.conditions.attributes",
            format!("at most {MAX_ATTRIBUTES} attributes"),
        );
        return None;
    }
    let mut ok = true;
    for (key, value) in &attributes {
        let field = format!("rule.conditions.attributes[{key:?}]");
        ok &= check_text(v, &field, key, 1, MAX_ATTRIBUTE_KEY_CHARS);
        ok &= check_text(v, &field, value, 0, MAX_ATTRIBUTE_VALUE_CHARS);
    }
    ok.then(|| attributes.into_iter().collect())
}

fn effects_in(
    v: &mut Violations,
    e: proto::RuleEffects,
    earns_by_receipt: bool,
) -> Option<Effects> {
    let mut ok = true;
    if !(0..=MAX_POINTS).contains(&e.bonus_points) {
        v.push(
            "rule.effects.bonus_points",
            format!("must be between 0 and {MAX_POINTS}"),
        );
        ok = false;
    }
    let multiplier = optional_decimal(
        v,
        "rule.effects.points_multiplier",
        &e.points_multiplier,
        MAX_MULTIPLIER,
    );
    if let Some(Some(m)) = multiplier
        && m < Decimal::ONE
    {
        v.push("rule.effects.points_multiplier", "must be at least 1");
        ok = false;
    }
    let earn_rate = optional_decimal(v, "rule.effects.earn_rate", &e.earn_rate, MAX_RULE_RATE);
    if !e.campaign_id.is_empty() {
        ok &= check_id(v, "rule.effects.campaign_id", &e.campaign_id);
    }
    if !(0..=MAX_EXPIRE_DAYS).contains(&e.points_expire_days) {
        v.push(
            "rule.effects.points_expire_days",
            format!("must be between 0 and {MAX_EXPIRE_DAYS}"),
        );
        ok = false;
    }
    let gives = earns_by_receipt
        || e.bonus_points > 0
        || !e.points_multiplier.is_empty()
        || !e.earn_rate.is_empty()
        || !e.campaign_id.is_empty();
    if !gives {
        v.push(
            "rule.effects",
            "must give something: bonus_points, points_multiplier, earn_rate or campaign_id",
        );
        ok = false;
    }
    let effects = Effects {
        bonus_points: e.bonus_points,
        points_multiplier: multiplier?,
        earn_rate: earn_rate?,
        campaign_id: (!e.campaign_id.is_empty()).then_some(e.campaign_id),
        points_expire_days: i64::from(e.points_expire_days),
    };
    ok.then_some(effects)
}

/// A decimal where empty means none.
fn optional_decimal(
    v: &mut Violations,
    field: &str,
    value: &str,
    max: Decimal,
) -> Option<Option<Decimal>> {
    if value.is_empty() {
        return Some(None);
    }
    decimal(v, field, value, max).map(Some)
}

fn limits_in(v: &mut Violations, l: proto::RuleLimits) -> Option<Limits> {
    let mut ok = true;
    for (name, value) in [
        ("per_member_limit", l.per_member_limit),
        ("cooldown_seconds", l.cooldown_seconds),
        ("daily_cap_per_store", l.daily_cap_per_store),
        ("budget_points", l.budget_points),
    ] {
        if !(0..=MAX_POINTS).contains(&value) {
            v.push(
                format!("rule.limits.{name}"),
                format!("must be between 0 and {MAX_POINTS}"),
            );
            ok = false;
        }
    }
    ok.then_some(Limits {
        per_member_limit: l.per_member_limit,
        cooldown_seconds: l.cooldown_seconds,
        daily_cap_per_store: l.daily_cap_per_store,
        budget_points: l.budget_points,
    })
}

async fn update_rule_in(
    engine: &Engine,
    request: proto::UpdateRuleRequest,
) -> Result<(Option<String>, RulePatch), Status> {
    let mut v = Violations::new();
    let request_id = optional_request_id(&mut v, &request.request_id);
    let paths = request
        .update_mask
        .map(|mask| mask.paths)
        .unwrap_or_default();
    if paths.is_empty() {
        v.push("update_mask", "names the fields to change");
    }
    for path in &paths {
        if !UPDATABLE_PATHS.contains(&path.as_str()) {
            v.push(
                "update_mask",
                format!(
                    "cannot change {path:?}; changeable: {}",
                    UPDATABLE_PATHS.join(", ")
                ),
            );
        }
    }
    let Some(rule) = request.rule else {
        v.push("rule", "is required");
        return Err(v.into_status());
    };
    if !check_id(&mut v, "rule.rule_id", &rule.rule_id) {
        return Err(v.into_status());
    }
    // The trigger is the stored rule's: one given must be the same.
    let stored = engine.get_rule(&rule.rule_id).await?;
    if rule.trigger != 0 && rule.trigger != i32::from(trigger_out(stored.trigger)) {
        v.push("rule.trigger", "is immutable");
    }
    // What is validated is the rule as it will be: the stored one with the masked fields of
    // the request (a field left out of the mask is neither checked nor changed).
    let mut merged = rule_out(stored.clone());
    for path in &paths {
        match path.as_str() {
            "name" => merged.name.clone_from(&rule.name),
            "event_type" => merged.event_type.clone_from(&rule.event_type),
            "conditions" => merged.conditions.clone_from(&rule.conditions),
            "effects" => merged.effects.clone_from(&rule.effects),
            "limits" => merged.limits.clone_from(&rule.limits),
            "starts_at" => merged.starts_at = rule.starts_at,
            "ends_at" => merged.ends_at = rule.ends_at,
            "enabled" => merged.enabled = Some(rule.enabled.unwrap_or(true)),
            _ => {}
        }
    }
    let rule = rule_in(v, Some(merged), Some(&stored))?;
    Ok((request_id, RulePatch::new(rule, paths)))
}

fn simulation_in(request: proto::SimulateRulesRequest) -> Result<Simulation, Status> {
    let mut v = Violations::new();
    let trigger = trigger_in(&mut v, "trigger", request.trigger);
    let member = member_ref(&mut v, "member", request.member);
    let channel = (request.channel != 0)
        .then(|| super::convert::channel(&mut v, "channel", request.channel))
        .flatten();
    if !request.store_id.is_empty() {
        check_id(&mut v, "store_id", &request.store_id);
    }
    let lines = if request.basket.is_some() {
        basket(&mut v, "basket", request.basket)
    } else {
        Some(Vec::new())
    };
    let at = optional_instant(&mut v, "at", request.at.as_ref());
    let attributes = attributes_in(&mut v, request.attributes);
    v.build(|| {
        Some(Simulation {
            trigger: trigger?,
            member: member?,
            channel,
            store_id: request.store_id,
            lines: lines?,
            event_type: request.event_type,
            attributes: attributes?,
            tier_id: request.tier_id,
            at: at?,
        })
    })
}

pub fn rule_outcome_out(outcome: RuleOutcome) -> proto::RuleOutcome {
    proto::RuleOutcome {
        rule_id: outcome.rule_id,
        fired: outcome.skip.is_none(),
        reason: outcome.skip.map(skip_out).unwrap_or_default(),
        points: outcome.points,
        campaign_ids: outcome.campaign_ids,
        store_id: outcome.store_id,
    }
}

pub fn rule_out(rule: Rule) -> proto::Rule {
    let count = |value: i64| i32::try_from(value).unwrap_or(i32::MAX);
    let core = rule.trigger.is_core();
    let (mut geo, mut visit, mut receipt) = (None, None, None);
    match rule.params {
        TriggerParams::None => {}
        TriggerParams::Geo(params) => {
            geo = Some(proto::RuleGeo {
                min_dwell_seconds: count(params.min_dwell_seconds),
                max_accuracy_m: params.max_accuracy_m,
            });
        }
        TriggerParams::Visit(params) => {
            let kind = match params.kind {
                VisitRuleKind::NthVisit => proto::VisitRuleKind::NthVisit,
                VisitRuleKind::Lapsed => proto::VisitRuleKind::Lapsed,
            };
            visit = Some(proto::RuleVisit {
                kind: kind.into(),
                visits: count(params.visits),
                window_days: count(params.window_days),
                lapsed_days: count(params.lapsed_days),
            });
        }
        TriggerParams::Receipt(params) => {
            receipt = Some(proto::RuleReceipt {
                earn_rate: params.earn_rate.map(decimal_out).unwrap_or_default(),
                max_age_days: count(params.max_age_days),
                review_threshold: params
                    .review_threshold
                    .map(|threshold| threshold.to_string())
                    .unwrap_or_default(),
            });
        }
    }
    let c = rule.conditions;
    let e = rule.effects;
    proto::Rule {
        rule_id: rule.rule_id,
        name: rule.name,
        trigger: trigger_out(rule.trigger).into(),
        event_type: rule.event_type,
        conditions: Some(proto::RuleConditions {
            channels: c.channels.into_iter().map(channel_out).collect(),
            store_ids: c.store_ids,
            min_total: c.min_total.map(|m| m.to_string()).unwrap_or_default(),
            lines: c
                .lines
                .into_iter()
                .map(|line| proto::RuleLineCondition {
                    sku: line.sku,
                    category: line.category,
                    min_quantity: line.min_quantity,
                })
                .collect(),
            tier_ids: c.tier_ids,
            active_hours: c
                .active_hours
                .into_iter()
                .map(|window| proto::ActiveHours {
                    start: format_time_of_day(window.start),
                    end: format_time_of_day(window.end),
                })
                .collect(),
            days_of_week: c.days_of_week.to_numbers().into_iter().map(count).collect(),
            attributes: c.attributes.into_iter().collect(),
            first_purchase: c.first_purchase,
        }),
        effects: Some(proto::RuleEffects {
            bonus_points: e.bonus_points,
            points_multiplier: e.points_multiplier.map(decimal_out).unwrap_or_default(),
            earn_rate: e.earn_rate.map(decimal_out).unwrap_or_default(),
            campaign_id: e.campaign_id.unwrap_or_default(),
            points_expire_days: count(e.points_expire_days),
        }),
        limits: Some(proto::RuleLimits {
            per_member_limit: rule.limits.per_member_limit,
            cooldown_seconds: rule.limits.cooldown_seconds,
            daily_cap_per_store: rule.limits.daily_cap_per_store,
            budget_points: rule.limits.budget_points,
        }),
        geo,
        visit,
        receipt,
        starts_at: optional_timestamp(rule.starts_at),
        ends_at: optional_timestamp(rule.ends_at),
        enabled: Some(rule.enabled),
        // The EngagementService's rules keep no such instants.
        created_at: core.then(|| timestamp(rule.created_at)),
        updated_at: core.then(|| timestamp(rule.updated_at)),
    }
}
