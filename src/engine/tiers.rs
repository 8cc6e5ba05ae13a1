//! Member tiers in the batch (`domain::tier`, DESIGN.md "Tiers"): captures and register sales
//! add their paid amount to the member's monthly spend, accepted receipts their total, refunds
//! take back their share, and the
//! batch that lifts the window's spend over a threshold raises the member at once (writing
//! `tier.changed` and deciding the TIER rules). Only the monthly review lowers a tier.
//!
//! "Paid" is the amount that earns points: basket total − coupon discounts − redeemed points ×
//! point value (the order's `amount_due`). Spend is booked in the month of the order's
//! `occurred_at` (the sale, or the authorization of an EC order), in the program's zone, and a
//! refund takes back from that same month, so a refund of an order that has left the window
//! changes nothing the window counts.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use rust_decimal::Decimal;

use super::{reference::Reference, rows::LedgerRows, rules};
use crate::domain::{
    Money,
    event::tier_changed,
    model::{Channel, MemberRow, Program},
    ports::{LedgerReads, MonthSpend, StoreError},
    rules::{Facts, Signal, Trigger},
    schedule,
    tier::{self, MemberTier, Tier},
};

/// The program's zone (validated when set; the default zone if a stored one no longer parses).
pub(super) fn zone(program: &Program) -> Tz {
    schedule::parse_time_zone(&program.time_zone).unwrap_or(chrono_tz::Asia::Tokyo)
}

/// The base points of a purchase: floor(paid × channel rate × the member's tier multiplier).
pub(super) fn base_points(
    program: &Program,
    channel: Channel,
    paid: Money,
    member: &MemberRow,
) -> i64 {
    let multiplier = tier::multiplier(&program.tiers, &member.tier.tier_id);
    paid.floor_points(program.earn_rate_for(channel) * multiplier)
}

/// The member's spend within the window that holds `now`, in ten-thousandths.
pub(super) async fn window_spend(
    uow: &mut dyn LedgerReads,
    program: &Program,
    member_id: &str,
    now: DateTime<Utc>,
) -> Result<i64, StoreError> {
    let from = tier::window_start(now, zone(program), program.tier_window_months);
    let months = uow.member_spend(member_id, from).await?;
    Ok(months.iter().map(|month| month.spend_e4).sum())
}

/// Adds `delta_e4` (negative for a refund) to the member's spend in the month of `at`.
pub(super) async fn count_spend(
    uow: &mut dyn LedgerRows,
    program: &Program,
    member_id: &str,
    at: DateTime<Utc>,
    delta_e4: i64,
) -> Result<(), StoreError> {
    if delta_e4 == 0 {
        return Ok(());
    }
    let delta = MonthSpend {
        member_id: member_id.to_string(),
        month: tier::month_of(at, zone(program)),
        spend_e4: delta_e4,
    };
    uow.add_spend(&delta).await
}

/// A receipt's spend (accepted at submission or in review: `delta_e4` its total; taken back
/// when a register sale of the same receipt wins: minus it), in the month it was issued, and
/// the raise it may bring, on the member's row read under its lock.
pub(super) async fn receipt_spend(
    uow: &mut dyn LedgerRows,
    reference: &Reference,
    member_id: &str,
    issued_at: DateTime<Utc>,
    delta_e4: i64,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    let program = reference.program(uow).await?;
    count_spend(uow, &program, member_id, issued_at, delta_e4).await?;
    if delta_e4 <= 0 || program.tiers.is_empty() {
        return Ok(());
    }
    let Some(mut member) = uow.get_member(member_id, true).await? else {
        return Err(StoreError::Corrupt(format!("member {member_id} is gone")));
    };
    if raise(uow, reference, &program, &mut member, now).await? {
        uow.update_member(&member).await?;
    }
    Ok(())
}

/// Raises the member to the tier its window spend reaches, if that is higher than its own:
/// sets `member.tier` (the caller writes the row), writes `tier.changed` and decides the TIER
/// rules of the new tier. Returns whether it moved.
pub(super) async fn raise(
    uow: &mut dyn LedgerRows,
    reference: &Reference,
    program: &Program,
    member: &mut MemberRow,
    now: DateTime<Utc>,
) -> Result<bool, StoreError> {
    if program.tiers.is_empty() {
        return Ok(false);
    }
    let spend = window_spend(uow, program, &member.member_id, now).await?;
    let Some(reached) = tier::upgrade(&program.tiers, &member.tier.tier_id, spend) else {
        return Ok(false);
    };
    let reached = reached.clone();
    move_to(uow, member, &reached.tier_id, now);
    fire_tier_rules(uow, reference, program, &member.member_id, &reached, now).await?;
    Ok(true)
}

/// Sets the member's tier and writes `tier.changed`.
pub(super) fn move_to(
    uow: &mut dyn LedgerRows,
    member: &mut MemberRow,
    tier_id: &str,
    now: DateTime<Utc>,
) {
    let event = tier_changed(&member.member_id, &member.tier.tier_id, tier_id, now);
    uow.push_event(event);
    member.tier = MemberTier {
        tier_id: tier_id.to_string(),
        since: (!tier_id.is_empty()).then_some(now),
        reviewed_at: Some(now),
    };
}

/// Decides the TIER rules for a member who reached `tier`, through the one decision path of
/// every trigger (`rules::decide`, then `rules::give`), their shared limits under the rules'
/// locks.
async fn fire_tier_rules(
    uow: &mut dyn LedgerRows,
    reference: &Reference,
    program: &Program,
    member_id: &str,
    tier: &Tier,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    let cached = reference.rules(uow).await?;
    if !cached
        .iter()
        .any(|rule| rule.trigger == Trigger::Tier && rule.enabled)
    {
        return Ok(());
    }
    let mut rules: Vec<_> = uow
        .list_rules()
        .await?
        .into_iter()
        .filter(|rule| rule.trigger == Trigger::Tier && rule.enabled)
        .collect();
    let shared: Vec<String> = rules
        .iter()
        .filter(|rule| rule.has_shared_limit())
        .map(|rule| rule.rule_id.clone())
        .collect();
    for locked in uow.lock_rules(&shared).await? {
        if let Some(rule) = rules.iter_mut().find(|r| r.rule_id == locked.rule_id) {
            *rule = locked;
        }
    }
    let tz = zone(program);
    let no_attributes = BTreeMap::new();
    for rule in rules.iter().filter(|rule| rule.enabled) {
        let facts = Facts {
            at: now,
            tz,
            channel: None,
            store_id: "",
            lines: &[],
            total: Money::ZERO,
            paid: Money::ZERO,
            base_rate: Decimal::ZERO,
            event_type: "",
            attributes: &no_attributes,
            first_purchase: false,
            tier_id: Some(tier.tier_id.as_str()),
            signal: Signal::None,
        };
        let Ok(award) = rules::decide(uow, rule, &facts, member_id).await? else {
            continue;
        };
        let firing = rules::Firing {
            member_id,
            store_id: "",
            at: now,
            tz,
            points: 0,
            coupons: 0,
        };
        rules::give(uow, reference, rule, &award, firing, now).await?;
    }
    Ok(())
}

/// The monthly review of one member (the sweeper's unit of work): the tier its window spend
/// reaches now, up or down; the caller writes the row. Returns whether it moved. A member
/// decided already since this month's review instant is left as it is, so the review is
/// idempotent and a refund mid-month lowers no tier before the next review.
pub(super) async fn review(
    uow: &mut dyn LedgerRows,
    program: &Program,
    member: &mut MemberRow,
    now: DateTime<Utc>,
) -> Result<bool, StoreError> {
    let review = tier::last_review(now, zone(program));
    if member.tier.tier_id.is_empty() || member.tier.reviewed_at.is_some_and(|at| at >= review) {
        return Ok(false);
    }
    let spend = window_spend(uow, program, &member.member_id, now).await?;
    let due = tier::tier_for(&program.tiers, spend).map_or("", |t| t.tier_id.as_str());
    if due == member.tier.tier_id {
        member.tier.reviewed_at = Some(now);
        return Ok(false);
    }
    let due = due.to_string();
    move_to(uow, member, &due, now);
    Ok(true)
}
