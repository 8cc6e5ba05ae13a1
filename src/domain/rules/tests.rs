use std::collections::BTreeMap;

use chrono::{Duration, TimeZone, Utc};
use rust_decimal::Decimal;

use super::*;
use crate::domain::{receipt::LineCondition, schedule::parse_time_zone};

pub(crate) fn purchase_rule(rule_id: &str) -> Rule {
    let at = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
    Rule {
        rule_id: rule_id.into(),
        name: rule_id.into(),
        trigger: Trigger::Purchase,
        event_type: String::new(),
        conditions: Conditions::default(),
        effects: Effects::default(),
        limits: Limits::default(),
        params: TriggerParams::None,
        starts_at: None,
        ends_at: None,
        enabled: true,
        created_at: at,
        updated_at: at,
    }
}

fn line(sku: &str, category: &str, amount: &str) -> LineItem {
    LineItem {
        line_id: sku.into(),
        sku: sku.into(),
        category: category.into(),
        quantity: 1,
        amount: amount.parse().unwrap(),
    }
}

fn decide_on(
    rule: &Rule,
    lines: &[LineItem],
    paid: &str,
    counters: &Counters,
) -> Result<Award, Skip> {
    let attributes = BTreeMap::new();
    let total: Money = lines.iter().map(|l| l.amount).sum();
    let facts = Facts {
        // A Wednesday, 12:00 in Tokyo.
        at: Utc.with_ymd_and_hms(2026, 12, 9, 3, 0, 0).unwrap(),
        tz: parse_time_zone("Asia/Tokyo").unwrap(),
        channel: Some(Channel::Store),
        store_id: "umeda",
        lines,
        total,
        paid: paid.parse().unwrap(),
        base_rate: Decimal::new(1, 2),
        event_type: "",
        attributes: &attributes,
        first_purchase: false,
        tier_id: None,
        signal: Signal::None,
    };
    decide(rule, &facts, counters)
}

#[test]
fn a_multiplier_on_one_category_gives_the_extra_of_its_lines_only() {
    let mut rule = purchase_rule("coffee-3x");
    rule.effects.points_multiplier = Some(Decimal::from(3));
    rule.conditions.lines = vec![LineCondition {
        sku: String::new(),
        category: "coffee".into(),
        min_quantity: 1,
    }];
    let lines = [
        line("beans", "coffee", "2000"),
        line("mug", "goods", "3000"),
    ];
    // Coffee's base is 20 points; tripled, the rule's extra is 40.
    let award = decide_on(&rule, &lines, "5000", &Counters::default()).unwrap();
    assert_eq!(award.points, 40);
    // Discounts spread over the lines: half paid, half the extra.
    let award = decide_on(&rule, &lines, "2500", &Counters::default()).unwrap();
    assert_eq!(award.points, 20);
    let no_coffee = [line("mug", "goods", "3000")];
    assert_eq!(
        decide_on(&rule, &no_coffee, "3000", &Counters::default()),
        Err(Skip::ConditionNotMet)
    );
}

#[test]
fn bonus_earn_rate_and_multiplier_add_up() {
    let mut rule = purchase_rule("all");
    rule.effects.bonus_points = 500;
    rule.effects.earn_rate = Some(Decimal::new(2, 2));
    rule.effects.points_multiplier = Some(Decimal::new(15, 1));
    let lines = [line("a", "x", "10000")];
    // 500 + 200 (2 %) + 50 (half of the 100 base points).
    let award = decide_on(&rule, &lines, "10000", &Counters::default()).unwrap();
    assert_eq!(award.points, 750);
}

#[test]
fn limits_and_budget_in_order() {
    let mut rule = purchase_rule("capped");
    rule.effects.bonus_points = 100;
    rule.limits = Limits {
        per_member_limit: 2,
        cooldown_seconds: 3600,
        daily_cap_per_store: 10,
        budget_points: 1000,
    };
    let lines = [line("a", "x", "1000")];
    let at = Utc.with_ymd_and_hms(2026, 12, 9, 3, 0, 0).unwrap();
    let fresh = Counters {
        budget_left_points: Some(1000),
        ..Counters::default()
    };
    assert_eq!(
        decide_on(&rule, &lines, "1000", &fresh).unwrap().points,
        100
    );
    let check = |counters: Counters| decide_on(&rule, &lines, "1000", &counters);
    assert_eq!(
        check(Counters {
            member_fired: 2,
            ..fresh.clone()
        }),
        Err(Skip::MemberLimit)
    );
    assert_eq!(
        check(Counters {
            member_fired: 1,
            member_last_fired_at: Some(at - Duration::minutes(30)),
            ..fresh.clone()
        }),
        Err(Skip::Cooldown)
    );
    assert_eq!(
        check(Counters {
            store_day_fired: 10,
            ..fresh.clone()
        }),
        Err(Skip::DailyCap)
    );
    // What is left of the budget is given, then nothing.
    let award = check(Counters {
        budget_left_points: Some(30),
        ..fresh.clone()
    });
    assert_eq!(award.unwrap().points, 30);
    assert_eq!(
        check(Counters {
            budget_left_points: Some(0),
            ..fresh
        }),
        Err(Skip::BudgetExhausted)
    );
}

#[test]
fn disabled_period_and_hours_come_first() {
    let mut rule = purchase_rule("r");
    rule.effects.bonus_points = 1;
    let lines = [line("a", "x", "100")];
    rule.enabled = false;
    assert_eq!(
        decide_on(&rule, &lines, "100", &Counters::default()),
        Err(Skip::Disabled)
    );
    rule.enabled = true;
    rule.ends_at = Some(Utc.with_ymd_and_hms(2026, 12, 1, 0, 0, 0).unwrap());
    assert_eq!(
        decide_on(&rule, &lines, "100", &Counters::default()),
        Err(Skip::OutsidePeriod)
    );
    rule.ends_at = None;
    // Sundays only; the facts are on a Wednesday.
    rule.conditions.days_of_week = crate::domain::schedule::DaysOfWeek::parse(&[7]).unwrap();
    assert_eq!(
        decide_on(&rule, &lines, "100", &Counters::default()),
        Err(Skip::OutsideHours)
    );
}

#[test]
fn channel_store_min_total_and_first_purchase_conditions() {
    let mut rule = purchase_rule("r");
    rule.effects.bonus_points = 1;
    let lines = [line("a", "x", "100")];
    let none = Counters::default();
    rule.conditions.channels = vec![Channel::Ec];
    assert_eq!(
        decide_on(&rule, &lines, "100", &none),
        Err(Skip::ConditionNotMet)
    );
    rule.conditions.channels = vec![Channel::Store];
    rule.conditions.store_ids = vec!["umeda".into()];
    assert!(decide_on(&rule, &lines, "100", &none).is_ok());
    rule.conditions.min_total = Some("101".parse().unwrap());
    assert_eq!(
        decide_on(&rule, &lines, "100", &none),
        Err(Skip::ConditionNotMet)
    );
    rule.conditions.min_total = None;
    rule.conditions.first_purchase = true;
    assert_eq!(
        decide_on(&rule, &lines, "100", &none),
        Err(Skip::ConditionNotMet)
    );
}
