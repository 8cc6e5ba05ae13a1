//! The rules area: creating and changing rules (a budget is funded in the ledger), and the
//! one decision path of a trigger's rules inside the batch: facts and counters gathered here,
//! the decision made by `domain::rules::decide`, the award booked in the command's own ledger
//! transaction (points as postings from the rule's account, counters flushed with the batch).
//!
//! Today PURCHASE is decided here (Capture and RecordSale book it; Quote and Authorize preview
//! it), and SimulateRules decides PURCHASE, EVENT and TIER rules without writing. GEO, VISIT
//! and RECEIPT rules are still decided by their own areas; `views` shows them as rules.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};

use super::{
    CommandResult, coupons,
    points::{self, Earning},
    reference::Reference,
    rows::LedgerRows,
};
use crate::domain::{
    Account, Asset, DomainError, Money,
    location::IssueFacts,
    model::{Channel, EarnPart, LineItem, Posting, Program},
    ports::{LedgerReads, RuleCounter, RuleStoreDay, StoreError},
    rules::{self, Award, Counters, Facts, Rule, RuleOutcome, Signal, Skip, Trigger, views},
    schedule::{local_date, parse_time_zone},
};

/// The source of a rule's points: its budget account, or its own system account.
pub(super) fn points_account(rule: &Rule) -> Account {
    if rule.has_budget() {
        Account::RuleBudget(rule.rule_id.clone())
    } else {
        Account::Rule(rule.rule_id.clone())
    }
}

/// CreateRule: the rule, and its budget funded from `program:issued` in the same transaction.
pub(super) async fn create(
    uow: &mut dyn LedgerRows,
    reference: &Reference,
    now: DateTime<Utc>,
    rule: &Rule,
) -> CommandResult<Rule> {
    let mut rule = rule.clone();
    if rule.rule_id.is_empty() {
        rule.rule_id = crate::domain::ids::new_rule_id(rule.trigger.as_str());
    }
    if uow.get_rule(&rule.rule_id).await?.is_some() {
        return Err(DomainError::RuleExists(rule.rule_id.clone()).into());
    }
    check_campaign(uow, &rule).await?;
    rule.created_at = now;
    rule.updated_at = now;
    uow.save_rule(&rule).await?;
    fund(uow, &rule, rule.limits.budget_points, now).await?;
    reference.rules_changed();
    Ok(rule)
}

/// UpdateRule: `patch` applied to the stored rule under its lock; a budget raised is funded,
/// one lowered gives back what is left of the difference.
pub(super) async fn update(
    uow: &mut dyn LedgerRows,
    reference: &Reference,
    now: DateTime<Utc>,
    patch: &rules::RulePatch,
) -> CommandResult<Rule> {
    let rule_id = patch.rule.rule_id.clone();
    uow.lock_rules(std::slice::from_ref(&rule_id)).await?;
    let Some(stored) = uow.get_rule(&rule_id).await? else {
        return Err(DomainError::RuleNotFound.into());
    };
    let updated = patch.apply(&stored, now)?;
    check_campaign(uow, &updated).await?;
    let budget_change = updated.limits.budget_points - stored.limits.budget_points;
    if budget_change < 0 {
        let account = points_account(&stored).to_string();
        let left = uow.balance(&account, &Asset::Points.to_string()).await?;
        if left < -budget_change {
            return Err(DomainError::invalid(
                "rule.limits.budget_points",
                format!("only {left} points of the budget are left to take back"),
            )
            .into());
        }
    }
    uow.save_rule(&updated).await?;
    fund(uow, &updated, budget_change, now).await?;
    reference.rules_changed();
    Ok(updated)
}

/// The GEO, VISIT and RECEIPT rules a database kept in their tables of their own before
/// every rule was a row of `rules` (migration 0010), as rules.
async fn legacy_rules(uow: &mut dyn LedgerReads) -> Result<Vec<Rule>, StoreError> {
    let mut rules: Vec<Rule> = Vec::new();
    rules.extend(uow.list_geo_rules().await?.into_iter().map(views::of_geo));
    rules.extend(
        uow.list_visit_rules()
            .await?
            .into_iter()
            .map(views::of_visit),
    );
    rules.extend(
        uow.list_receipt_rules()
            .await?
            .into_iter()
            .map(views::of_receipt),
    );
    Ok(rules)
}

async fn check_campaign(uow: &mut dyn LedgerRows, rule: &Rule) -> CommandResult<()> {
    if let Some(campaign_id) = &rule.effects.campaign_id
        && uow.get_campaign(campaign_id, false).await?.is_none()
    {
        return Err(DomainError::CampaignNotFound.into());
    }
    Ok(())
}

/// Moves `points` into the rule's budget (out of it when negative).
async fn fund(
    uow: &mut dyn LedgerRows,
    rule: &Rule,
    points: i64,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    if points == 0 || !rule.has_budget() {
        return Ok(());
    }
    let budget = Account::RuleBudget(rule.rule_id.clone());
    let posting = if points > 0 {
        Posting::new(&Account::ProgramIssued, &budget, &Asset::Points, points)
    } else {
        Posting::new(&budget, &Account::ProgramIssued, &Asset::Points, -points)
    };
    let mut entry = points::system_entry("rule_budget", "", now, vec![posting]);
    entry
        .metadata
        .push(("rule_id".into(), rule.rule_id.clone()));
    uow.append_transaction(&entry).await?;
    Ok(())
}

/// What a purchase is, for its rules.
#[derive(Debug, Clone)]
pub(super) struct Purchase<'a> {
    pub member_id: &'a str,
    pub channel: Channel,
    pub store_id: &'a str,
    pub lines: &'a [LineItem],
    pub total: Money,
    pub paid: Money,
    pub at: DateTime<Utc>,
}

/// The verdicts of a purchase's rules, and the zone its local days and hours are in.
#[derive(Debug, Clone)]
pub(super) struct Decided {
    pub verdicts: Vec<Verdict>,
    pub tz: chrono_tz::Tz,
}

impl Decided {
    /// What the rules give on top of `base_points`, part by part (the base first).
    pub fn breakdown(&self, base_points: i64) -> Vec<EarnPart> {
        breakdown(base_points, &self.verdicts)
    }

    /// The rules' points cut, in rule order, to the room the program's points cap
    /// (`max_points_per_order`, 0 = none) leaves above the base: a campaign never makes a
    /// sale fail, it gives less.
    pub fn within_cap(mut self, base_points: i64, cap: i64) -> Self {
        if cap <= 0 {
            return self;
        }
        let mut room = (cap - base_points).max(0);
        for verdict in &mut self.verdicts {
            if let Ok(award) = &mut verdict.outcome {
                award.points = award.points.min(room);
                room -= award.points;
            }
        }
        self
    }
}

/// One rule's verdict.
#[derive(Debug, Clone)]
pub(super) struct Verdict {
    pub rule: Rule,
    pub outcome: Result<Award, Skip>,
}

/// Decides every PURCHASE rule for `purchase`, in rule_id order. Without `lock` it is a
/// preview, from the rules' cache (up to a second old). With `lock` (a capture books what is
/// decided) the rules are read as committed, and those with a shared limit are locked (all
/// of them at once, in rule_id order) and decided as they stand under the lock: a rule
/// disabled or a limit changed anywhere holds for every capture that follows.
pub(super) async fn decide_purchase(
    uow: &mut dyn LedgerReads,
    reference: &Reference,
    program: &Program,
    purchase: &Purchase<'_>,
    lock: bool,
) -> Result<Decided, StoreError> {
    let cached = reference.rules(uow).await?;
    let is_purchase = |rule: &Rule| rule.trigger == Trigger::Purchase;
    if !cached.iter().any(is_purchase) {
        // The common case on the hot path: nothing to decide, no zone to look up. (A rule
        // created through another replica fires here within the cache's second.)
        let tz = parse_time_zone(&program.time_zone).unwrap_or(chrono_tz::Asia::Tokyo);
        return Ok(Decided {
            verdicts: Vec::new(),
            tz,
        });
    }
    let rules = if lock {
        locked_rules(uow, Trigger::Purchase).await?
    } else {
        cached
            .iter()
            .filter(|rule| is_purchase(rule))
            .cloned()
            .collect()
    };
    let rules: Vec<&Rule> = rules.iter().filter(|rule| rule.enabled).collect();
    let tz = zone(uow, reference, program, purchase.store_id).await?;
    let first_purchase = if rules.iter().any(|rule| rule.conditions.first_purchase) {
        !uow.has_captured_order(purchase.member_id).await?
    } else {
        false
    };
    let attributes = BTreeMap::new();
    let tier_id = tier_for(uow, purchase.member_id, rules.iter().copied()).await?;
    let facts = Facts {
        at: purchase.at,
        tz,
        channel: Some(purchase.channel),
        store_id: purchase.store_id,
        lines: purchase.lines,
        total: purchase.total,
        paid: purchase.paid,
        base_rate: program.earn_rate_for(purchase.channel),
        event_type: "",
        attributes: &attributes,
        first_purchase,
        tier_id: tier_id.as_deref(),
        signal: Signal::None,
    };
    let verdicts = decide_all(uow, &rules, &facts, purchase.member_id).await?;
    Ok(Decided { verdicts, tz })
}

/// The rules of `trigger` as committed, those with a shared limit locked (all at once, in
/// rule_id order) and as they stand under the lock: what a command that books decides on.
async fn locked_rules(
    uow: &mut dyn LedgerReads,
    trigger: Trigger,
) -> Result<Vec<Rule>, StoreError> {
    let mut rules: Vec<Rule> = uow
        .list_rules()
        .await?
        .into_iter()
        .filter(|rule| rule.trigger == trigger)
        .collect();
    let shared: Vec<String> = rules
        .iter()
        .filter(|rule| rule.enabled && rule.has_shared_limit())
        .map(|rule| rule.rule_id.clone())
        .collect();
    for locked in uow.lock_rules(&shared).await? {
        if let Some(rule) = rules.iter_mut().find(|r| r.rule_id == locked.rule_id) {
            *rule = locked;
        }
    }
    Ok(rules)
}

/// A tracked behaviour event (TrackEvent), for its EVENT rules.
pub(super) struct TrackedFacts<'a> {
    pub event_type: &'a str,
    pub attributes: &'a BTreeMap<String, String>,
    pub channel: Option<Channel>,
}

/// Decides every EVENT rule for a tracked event, as a capture decides its PURCHASE rules:
/// read as committed, shared limits under their rows' locks (`locked_rules`), then booked
/// with [`book`] (the purchase names the member, store and instant; it has no basket).
pub(super) async fn decide_event(
    uow: &mut dyn LedgerReads,
    reference: &Reference,
    program: &Program,
    purchase: &Purchase<'_>,
    tracked: &TrackedFacts<'_>,
) -> Result<Decided, StoreError> {
    let cached = reference.rules(uow).await?;
    let tz = zone(uow, reference, program, purchase.store_id).await?;
    if !cached.iter().any(|rule| rule.trigger == Trigger::Event) {
        return Ok(Decided {
            verdicts: Vec::new(),
            tz,
        });
    }
    let rules = locked_rules(uow, Trigger::Event).await?;
    let rules: Vec<&Rule> = rules.iter().filter(|rule| rule.enabled).collect();
    let tier_id = tier_for(uow, purchase.member_id, rules.iter().copied()).await?;
    let facts = Facts {
        at: purchase.at,
        tz,
        channel: tracked.channel,
        store_id: purchase.store_id,
        lines: purchase.lines,
        total: purchase.total,
        paid: purchase.paid,
        base_rate: program.earn_rate,
        event_type: tracked.event_type,
        attributes: tracked.attributes,
        first_purchase: false,
        tier_id: tier_id.as_deref(),
        signal: Signal::None,
    };
    let verdicts = decide_all(uow, &rules, &facts, purchase.member_id).await?;
    Ok(Decided { verdicts, tz })
}

/// Decides `rules` in order for one member's facts.
async fn decide_all(
    uow: &mut dyn LedgerReads,
    rules: &[&Rule],
    facts: &Facts<'_>,
    member_id: &str,
) -> Result<Vec<Verdict>, StoreError> {
    let mut verdicts = Vec::with_capacity(rules.len());
    for rule in rules {
        let outcome = decide(uow, rule, facts, member_id).await?;
        verdicts.push(Verdict {
            rule: (*rule).clone(),
            outcome,
        });
    }
    Ok(verdicts)
}

/// What SimulateRules is asked about.
#[derive(Debug, Clone)]
pub struct Simulation {
    pub trigger: Trigger,
    pub member: crate::domain::model::MemberRef,
    pub channel: Option<Channel>,
    pub store_id: String,
    pub lines: Vec<LineItem>,
    pub event_type: String,
    pub attributes: BTreeMap<String, String>,
    pub tier_id: String,
    pub at: Option<DateTime<Utc>>,
}

/// A rule's counters summed, and what is left of its budget.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleStats {
    pub totals: crate::domain::ports::RuleTotals,
    pub budget_points_left: i64,
}

impl super::Engine {
    /// GetRule.
    pub async fn get_rule(&self, rule_id: &str) -> Result<Rule, super::EngineError> {
        let mut uow = self.store().begin_read().await?;
        let rule = uow.get_rule(rule_id).await?;
        rule.ok_or(DomainError::RuleNotFound.into())
    }

    /// ListRules: every rule by rule_id.
    pub async fn list_rules(&self) -> Result<Vec<Rule>, super::EngineError> {
        let mut uow = self.store().begin_read().await?;
        let mut rules = uow.list_rules().await?;
        rules.sort_by(|a, b| a.rule_id.cmp(&b.rule_id));
        Ok(rules)
    }

    /// At start: the GEO, VISIT and RECEIPT rules an older omo kept in tables of their own
    /// become rows of `rules`, once (a rule already there is left alone); how many moved.
    pub async fn adopt_legacy_rules(&self) -> Result<usize, super::EngineError> {
        let mut uow = self.store().begin_read().await?;
        let mut waiting = Vec::new();
        for rule in legacy_rules(uow.as_mut()).await? {
            if uow.get_rule(&rule.rule_id).await?.is_none() {
                waiting.push(rule);
            }
        }
        drop(uow);
        if waiting.is_empty() {
            return Ok(0);
        }
        let reference = self.core.reference.clone();
        self.core
            .write(move |uow, now| {
                let (waiting, reference) = (waiting.clone(), reference.clone());
                Box::pin(async move {
                    let mut adopted = 0;
                    for mut rule in waiting {
                        // Another replica may have moved it meanwhile.
                        if uow.get_rule(&rule.rule_id).await?.is_none() {
                            (rule.created_at, rule.updated_at) = (now, now);
                            uow.save_rule(&rule).await?;
                            adopted += 1;
                        }
                    }
                    reference.rules_changed();
                    Ok(adopted)
                })
            })
            .await
    }

    /// SimulateRules: every rule of the trigger decided for the facts, nothing written.
    pub async fn simulate_rules(
        &self,
        simulation: &Simulation,
    ) -> Result<Vec<RuleOutcome>, super::EngineError> {
        if simulation.trigger == Trigger::Receipt {
            return Err(DomainError::invalid(
                "trigger",
                "RECEIPT rules are decided by the receipt they read; simulate another trigger",
            )
            .into());
        }
        let now = self.now();
        let mut uow = self.store().begin_read().await?;
        let member = super::members::resolve(
            uow.as_mut(),
            &simulation.member,
            super::members::Access::Read,
        )
        .await
        .map_err(super::queries::from_failure)?;
        let reference = &self.core.reference;
        let program = reference.program(uow.as_mut()).await?;
        let rules = uow.list_rules().await?;
        let rules: Vec<&Rule> = rules
            .iter()
            .filter(|rule| rule.trigger == simulation.trigger)
            .collect();
        let tz = zone(uow.as_mut(), reference, &program, &simulation.store_id).await?;
        let total: Money = simulation.lines.iter().map(|line| line.amount).sum();
        let first_purchase = !uow.has_captured_order(&member.member_id).await?;
        let facts = Facts {
            at: simulation.at.unwrap_or(now),
            tz,
            channel: simulation.channel,
            store_id: &simulation.store_id,
            lines: &simulation.lines,
            total,
            paid: total,
            base_rate: simulation
                .channel
                .map_or(program.earn_rate, |channel| program.earn_rate_for(channel)),
            event_type: &simulation.event_type,
            attributes: &simulation.attributes,
            first_purchase,
            tier_id: (!simulation.tier_id.is_empty()).then_some(simulation.tier_id.as_str()),
            signal: Signal::None,
        };
        let verdicts = decide_all(uow.as_mut(), &rules, &facts, &member.member_id).await?;
        Ok(verdicts
            .into_iter()
            .map(|verdict| RuleOutcome::of(&verdict.rule.rule_id, "", &verdict.outcome))
            .collect())
    }

    /// GetRuleStats: the rule's counters summed, and its budget's balance.
    pub async fn rule_stats(&self, rule_id: &str) -> Result<RuleStats, super::EngineError> {
        let rule = self.get_rule(rule_id).await?;
        let mut uow = self.store().begin_read().await?;
        let totals = uow.rule_totals(Some(rule_id)).await?.pop().unwrap_or(
            crate::domain::ports::RuleTotals {
                rule_id: rule_id.to_string(),
                ..Default::default()
            },
        );
        let budget_points_left = if rule.has_budget() {
            let account = points_account(&rule).to_string();
            uow.balance(&account, &Asset::Points.to_string()).await?
        } else {
            0
        };
        Ok(RuleStats {
            totals,
            budget_points_left,
        })
    }
}

/// The member's tier when one of `rules` is for some tiers only (`conditions.tier_ids`), else
/// None without a read. The member's row is in the batch already (its lock was taken first).
pub(super) async fn tier_for<'r>(
    uow: &mut dyn LedgerReads,
    member_id: &str,
    mut rules: impl Iterator<Item = &'r Rule>,
) -> Result<Option<String>, StoreError> {
    if !rules.any(|rule| !rule.conditions.tier_ids.is_empty()) {
        return Ok(None);
    }
    Ok(uow
        .get_member(member_id, false)
        .await?
        .map(|member| member.tier.tier_id)
        .filter(|tier_id| !tier_id.is_empty()))
}

/// The zone of a purchase's local hours: its store's, or the program's.
async fn zone(
    uow: &mut dyn LedgerReads,
    reference: &Reference,
    program: &Program,
    store_id: &str,
) -> Result<chrono_tz::Tz, StoreError> {
    if !store_id.is_empty()
        && let Some(site) = reference.sites(uow).await?.get(store_id)
    {
        return Ok(site.tz);
    }
    Ok(parse_time_zone(&program.time_zone).unwrap_or(chrono_tz::Asia::Tokyo))
}

/// One rule's decision, reading only the counters its limits need.
pub(super) async fn decide(
    uow: &mut dyn LedgerReads,
    rule: &Rule,
    facts: &Facts<'_>,
    member_id: &str,
) -> Result<Result<Award, Skip>, StoreError> {
    if let Err(skip) = rules::decide_without_counters(rule, facts) {
        return Ok(Err(skip));
    }
    let counters = counters(uow, rule, facts, member_id).await?;
    Ok(rules::decide(rule, facts, &counters))
}

async fn counters(
    uow: &mut dyn LedgerReads,
    rule: &Rule,
    facts: &Facts<'_>,
    member_id: &str,
) -> Result<Counters, StoreError> {
    let limits = &rule.limits;
    let mut counters = Counters::default();
    if (limits.per_member_limit > 0 || limits.cooldown_seconds > 0)
        && let Some(counter) = uow.rule_counter(&rule.rule_id, member_id).await?
    {
        counters.member_fired = counter.fired;
        counters.member_last_fired_at = Some(counter.last_fired_at);
    }
    if limits.daily_cap_per_store > 0 && !facts.store_id.is_empty() {
        let date = local_date(facts.at, facts.tz);
        counters.store_day_fired = uow
            .rule_store_day(&rule.rule_id, facts.store_id, date)
            .await?;
    }
    if rule.has_budget() {
        let account = points_account(rule).to_string();
        counters.budget_left_points =
            Some(uow.balance(&account, &Asset::Points.to_string()).await?);
    }
    Ok(counters)
}

/// The earn breakdown of a purchase: the base first, then each rule that fired with points.
fn breakdown(base_points: i64, verdicts: &[Verdict]) -> Vec<EarnPart> {
    let mut parts = vec![EarnPart::base(base_points)];
    for verdict in verdicts {
        if let Ok(award) = &verdict.outcome
            && award.points > 0
        {
            parts.push(EarnPart {
                rule_id: verdict.rule.rule_id.clone(),
                points: award.points,
                reversed: 0,
            });
        }
    }
    parts.retain(|part| part.points > 0);
    parts
}

/// What a captured purchase's rules give, booked: their counters, their coupons (postings of
/// the sale's transaction), and the earnings for `points::earn_parts` with the base first.
pub(super) struct Booked {
    pub earnings: Vec<Earning>,
    pub breakdown: Vec<EarnPart>,
    pub coupon_postings: Vec<Posting>,
    /// The rules that fired, with the points and coupon codes each gave.
    pub fired: Vec<(String, i64, Vec<String>)>,
}

/// Books the verdicts of a capture: counters and store days as they now stand, each rule's
/// coupon, and the earnings (base from `program:issued`, each rule's from its account).
pub(super) async fn book(
    uow: &mut dyn LedgerRows,
    purchase: &Purchase<'_>,
    decided: &Decided,
    base_points: i64,
    now: DateTime<Utc>,
) -> Result<Booked, StoreError> {
    let (verdicts, tz) = (&decided.verdicts, decided.tz);
    let mut earnings = vec![Earning {
        from: Account::ProgramIssued,
        points: base_points,
        expire_days: 0,
    }];
    let mut coupon_postings = Vec::new();
    let mut fired = Vec::new();
    for verdict in verdicts {
        let Ok(award) = &verdict.outcome else {
            continue;
        };
        let rule = &verdict.rule;
        let mut coupons_issued = 0;
        let mut codes = Vec::new();
        if let Some(campaign_id) = &award.campaign_id {
            let source = format!("rule:{}", rule.rule_id);
            if let Some((coupon, posting)) =
                coupons::issue_in_entry(uow, now, campaign_id, purchase.member_id, source).await?
            {
                coupon_postings.push(posting);
                coupons_issued = 1;
                codes.push(coupon.code);
            }
        }
        if award.points == 0 && coupons_issued == 0 {
            // Nothing given (its campaign closed or at its limit): not a firing.
            continue;
        }
        let firing = Firing {
            member_id: purchase.member_id,
            store_id: purchase.store_id,
            at: purchase.at,
            tz,
            points: award.points,
            coupons: coupons_issued,
        };
        count(uow, rule, &firing).await?;
        fired.push((rule.rule_id.clone(), award.points, codes));
        earnings.push(Earning {
            from: points_account(rule),
            points: award.points,
            expire_days: rule.effects.points_expire_days,
        });
    }
    Ok(Booked {
        breakdown: decided.breakdown(base_points),
        earnings,
        coupon_postings,
        fired,
    })
}

/// One firing of a rule for a member, as its counters keep it.
pub(super) struct Firing<'a> {
    pub member_id: &'a str,
    pub store_id: &'a str,
    /// When it happened (a register replaying offline sales says when): the clock its
    /// cooldown is judged on.
    pub at: DateTime<Utc>,
    /// The zone of the store's local day.
    pub tz: chrono_tz::Tz,
    pub points: i64,
    pub coupons: i64,
}

/// One firing in the rule's counters (and its store's day, for a capped rule).
pub(super) async fn count(
    uow: &mut dyn LedgerRows,
    rule: &Rule,
    firing: &Firing<'_>,
) -> Result<(), StoreError> {
    let counter = RuleCounter {
        rule_id: rule.rule_id.clone(),
        member_id: firing.member_id.to_string(),
        fired: 1,
        points: firing.points,
        coupons: firing.coupons,
        last_fired_at: firing.at,
    };
    uow.count_rule(&counter).await?;
    if rule.limits.daily_cap_per_store > 0 && !firing.store_id.is_empty() {
        let day = RuleStoreDay {
            rule_id: rule.rule_id.clone(),
            store_id: firing.store_id.to_string(),
            local_date: local_date(firing.at, firing.tz),
            fired: 1,
        };
        uow.count_rule_day(&day).await?;
    }
    Ok(())
}

/// What a signal's rule (GEO, VISIT) gave a member.
pub(super) struct Given {
    pub points: i64,
    pub coupon: Option<crate::domain::coupon::Coupon>,
}

/// Gives what a signal's rule awarded (the member's row locked by the caller): its coupon
/// (source `<trigger>:<rule_id>`, as the EngagementService's rules always named it) and its
/// points, in a transaction of their own from the rule's account into a lot of the member's
/// (limited-time when the rule says), available at once; then counts the firing. A firing
/// that gave nothing (its campaign closed or at a limit) is not counted.
pub(super) async fn give(
    uow: &mut dyn LedgerRows,
    reference: &Reference,
    rule: &Rule,
    award: &Award,
    firing: Firing<'_>,
    now: DateTime<Utc>,
) -> Result<Given, StoreError> {
    let member_id = firing.member_id;
    let mut coupon = None;
    if let Some(campaign_id) = &award.campaign_id {
        let source = format!("{}:{}", rule.trigger.as_str(), rule.rule_id);
        coupon = coupons::issue_for_rule(uow, now, campaign_id, member_id, source).await?;
    }
    if award.points > 0 {
        let program = reference.program(uow).await?;
        points::settle_member(uow, member_id, now).await?;
        let earning = Earning {
            from: points_account(rule),
            points: award.points,
            expire_days: rule.effects.points_expire_days,
        };
        let who = (member_id, "", Channel::App);
        let (postings, _) = points::earn_parts(uow, &program, who, &[earning], now).await?;
        let mut entry = points::system_entry("rule_award", member_id, now, postings);
        entry.store_id = firing.store_id.to_string();
        entry
            .metadata
            .push(("rule_id".into(), rule.rule_id.clone()));
        uow.append_transaction(&entry).await?;
        let Some(mut member) = uow.get_member(member_id, true).await? else {
            return Err(StoreError::Corrupt(format!("member {member_id} is gone")));
        };
        member.lifetime_earned_points += award.points;
        uow.update_member(&member).await?;
    }
    let given = Given {
        points: award.points,
        coupon,
    };
    if given.points > 0 || given.coupon.is_some() {
        let firing = Firing {
            points: given.points,
            coupons: i64::from(given.coupon.is_some()),
            ..firing
        };
        count(uow, rule, &firing).await?;
    }
    Ok(given)
}

/// Decides a GEO rule for a member's visit at a store (`facts.signal` carries its dwell): a
/// GEO rule fires once per visit, and its cooldown and daily cap count at this store, from
/// its issues there (`geo_issue_facts`; the daily cap's slots make it exact). A budget is
/// read under the rule's lock. Returns the verdict and the rule's issues at the store, read
/// when the verdict needed them.
pub(super) async fn decide_geo(
    uow: &mut dyn LedgerReads,
    rule: &Rule,
    facts: &Facts<'_>,
    member_id: &str,
    run: &crate::domain::location::VisitRun,
) -> Result<(Result<Award, Skip>, IssueFacts), StoreError> {
    if let Err(skip) = rules::decide_without_counters(rule, facts) {
        return Ok((Err(skip), IssueFacts::default()));
    }
    let date = local_date(facts.at, facts.tz);
    let issued = uow
        .geo_issue_facts(&rule.rule_id, member_id, facts.store_id, date)
        .await?;
    let mut counters = Counters::default();
    if rule.limits.per_member_limit > 0
        && let Some(counter) = uow.rule_counter(&rule.rule_id, member_id).await?
    {
        counters.member_fired = counter.fired;
    }
    if rule.has_budget() {
        // Read under the rule's lock: other members' firings draw on the same budget.
        uow.lock_rules(std::slice::from_ref(&rule.rule_id)).await?;
        let account = points_account(rule).to_string();
        counters.budget_left_points =
            Some(uow.balance(&account, &Asset::Points.to_string()).await?);
    }
    let verdict = crate::domain::location::decide_geo(rule, facts, run, &issued, counters);
    Ok((verdict, issued))
}

/// A merge carries the source's rule counters over to the target, so per-member limits and
/// cooldowns hold for the person rather than the card. The source's stay as they were (its
/// history); totals leave merged members out (`rule_totals`), so nothing counts twice.
pub(super) async fn move_counters(
    uow: &mut dyn LedgerRows,
    source: &str,
    target: &str,
) -> Result<(), StoreError> {
    for rule in uow.list_rules().await? {
        if let Some(counter) = uow.rule_counter(&rule.rule_id, source).await? {
            let moved = RuleCounter {
                member_id: target.to_string(),
                ..counter
            };
            uow.count_rule(&moved).await?;
        }
    }
    Ok(())
}

/// A refund took `points` back from a rule's part of an order: its counter shows the net.
pub(super) async fn count_reversal(
    uow: &mut dyn LedgerRows,
    rule_id: &str,
    member_id: &str,
    points: i64,
) -> Result<(), StoreError> {
    if points == 0 {
        return Ok(());
    }
    let reversal = RuleCounter {
        rule_id: rule_id.to_string(),
        member_id: member_id.to_string(),
        fired: 0,
        points: -points,
        coupons: 0,
        // Before any firing: the counter's last firing stays.
        last_fired_at: DateTime::UNIX_EPOCH,
    };
    uow.count_rule(&reversal).await
}

/// The account a refund gives a part's points back to.
pub(super) async fn part_account(
    uow: &mut dyn LedgerReads,
    part: &EarnPart,
) -> Result<Account, StoreError> {
    if part.rule_id.is_empty() {
        return Ok(Account::ProgramIssued);
    }
    let rule = uow.get_rule(&part.rule_id).await?.ok_or_else(|| {
        StoreError::Corrupt(format!(
            "an order earned points of rule {} that is gone",
            part.rule_id
        ))
    })?;
    Ok(points_account(&rule))
}

impl crate::domain::command::RuleCommand {
    pub(super) async fn run(
        &self,
        uow: &mut dyn LedgerRows,
        reference: &Reference,
        caller: &crate::domain::auth::Caller,
        now: DateTime<Utc>,
    ) -> CommandResult<crate::domain::command::Reply> {
        use crate::domain::{auth::Operation, command::Reply, command::RuleCommand::*};
        caller.require(Operation::ManageRules)?;
        match self {
            CreateRule(rule) => create(uow, reference, now, rule).await.map(Reply::Rule),
            UpdateRule(patch) => update(uow, reference, now, patch).await.map(Reply::Rule),
        }
    }
}
