//! The rules core through RuleService and checkout: PURCHASE rules with multipliers, bonuses,
//! first purchases, budgets raced by concurrent sales, limited-time points, disable/enable,
//! SimulateRules' reasons, the EngagementService's rules listed as rules, refunds part by part,
//! and bad rules refused with a field violation each and nothing written.

use chrono::Duration;
use omo::domain::Clock;
use omo::proto::{self, campaign::Discount};
use tonic::Code;

use crate::{
    both_backends,
    helpers::{TestApp, assert_refused, basket, card_ref, member_ref, store_sale, violated_fields},
};

both_backends! {
    a_multiplier_on_one_category_earns_the_extra_of_its_lines => a_multiplier_on_one_category_earns_the_extra_of_its_lines,
    a_first_purchase_bonus_is_given_once => a_first_purchase_bonus_is_given_once,
    a_budget_raced_by_concurrent_sales_is_given_exactly => a_budget_raced_by_concurrent_sales_is_given_exactly,
    limited_time_points_are_spent_first_and_expire_on_their_day => limited_time_points_are_spent_first_and_expire_on_their_day,
    a_disabled_rule_gives_nothing_until_enabled => a_disabled_rule_gives_nothing_until_enabled,
    simulate_names_why_each_rule_would_not_fire => simulate_names_why_each_rule_would_not_fire,
    engagement_rules_are_listed_as_rules => engagement_rules_are_listed_as_rules,
    a_refund_takes_back_each_part_of_the_points => a_refund_takes_back_each_part_of_the_points,
    a_capture_decides_its_rules_again => a_capture_decides_its_rules_again,
    a_rule_issues_coupons_within_its_daily_cap_and_cooldown => a_rule_issues_coupons_within_its_daily_cap_and_cooldown,
    an_update_retried_after_another_edit_replays => an_update_retried_after_another_edit_replays,
    rules_give_what_room_the_points_cap_leaves => rules_give_what_room_the_points_cap_leaves,
    bad_rules_are_refused_field_by_field_and_write_nothing => bad_rules_are_refused_field_by_field_and_write_nothing,
    a_merge_carries_the_rule_counters_to_the_target => a_merge_carries_the_rule_counters_to_the_target,
}

/// A PURCHASE rule with `effects`, every other field empty.
pub fn purchase_rule(rule_id: &str, effects: proto::RuleEffects) -> proto::Rule {
    proto::Rule {
        rule_id: rule_id.into(),
        name: format!("rule {rule_id}"),
        trigger: proto::RuleTrigger::Purchase as i32,
        effects: Some(effects),
        ..Default::default()
    }
}

pub async fn create_rule(app: &TestApp, rule: proto::Rule) -> proto::Rule {
    app.admin
        .rules()
        .create_rule(proto::CreateRuleRequest {
            request_id: format!("rule-{}", rule.rule_id),
            rule: Some(rule),
        })
        .await
        .expect("create rule")
        .into_inner()
        .rule
        .expect("rule")
}

fn bonus(points: i64) -> proto::RuleEffects {
    proto::RuleEffects {
        bonus_points: points,
        ..Default::default()
    }
}

/// (rule_id, points) of a breakdown.
fn parts(breakdown: &[proto::EarnPart]) -> Vec<(&str, i64)> {
    breakdown
        .iter()
        .map(|part| (part.rule_id.as_str(), part.points))
        .collect()
}

fn line(line_id: &str, category: &str, amount: &str) -> proto::LineItem {
    proto::LineItem {
        line_id: line_id.into(),
        sku: format!("sku-{line_id}"),
        category: category.into(),
        quantity: 1,
        amount: amount.into(),
    }
}

async fn stats(app: &TestApp, rule_id: &str) -> proto::GetRuleStatsResponse {
    app.admin
        .rules()
        .get_rule_stats(proto::GetRuleStatsRequest {
            rule_id: rule_id.into(),
        })
        .await
        .expect("stats")
        .into_inner()
}

async fn a_multiplier_on_one_category_earns_the_extra_of_its_lines(app: &TestApp) {
    let mut rule = purchase_rule(
        "coffee-3x",
        proto::RuleEffects {
            points_multiplier: "3".into(),
            ..Default::default()
        },
    );
    rule.conditions = Some(proto::RuleConditions {
        lines: vec![proto::RuleLineCondition {
            category: "coffee".into(),
            ..Default::default()
        }],
        ..Default::default()
    });
    create_rule(app, rule).await;
    let member_id = app.create_member("card-1").await;
    let mut sale = store_sale("s1", "0001", member_ref(&member_id), "0", 0);
    sale.basket = Some(proto::Basket {
        lines: vec![line("1", "coffee", "2000"), line("2", "goods", "3000")],
    });

    // Quote shows what the sale will earn, part by part.
    let quote = app
        .register
        .checkout()
        .quote(proto::QuoteRequest {
            member: Some(member_ref(&member_id)),
            channel: proto::Channel::Store as i32,
            store_id: "shibuya".into(),
            basket: sale.basket.clone(),
            ..Default::default()
        })
        .await
        .expect("quote")
        .into_inner()
        .quote
        .unwrap();
    // Base 1 % of ¥5,000 = 50; coffee's 20 base points tripled: the rule's extra is 40.
    assert_eq!(parts(&quote.earn_breakdown), [("", 50), ("coffee-3x", 40)]);
    assert_eq!(quote.points_to_earn, 90);

    let order = app.record_sale(sale).await.expect("sale");
    assert_eq!(order.points_earned, 90);
    assert_eq!(parts(&order.earn_breakdown), [("", 50), ("coffee-3x", 40)]);
    assert_eq!(app.available(&member_id).await, 90);

    // A basket without coffee earns the base alone.
    let mut sale = store_sale("s2", "0002", member_ref(&member_id), "3000", 0);
    sale.basket.as_mut().unwrap().lines[0].category = "goods".into();
    let order = app.record_sale(sale).await.expect("sale");
    assert_eq!(parts(&order.earn_breakdown), [("", 30)]);

    let stats = stats(app, "coffee-3x").await;
    assert_eq!(
        (stats.fired, stats.members, stats.points_awarded),
        (1, 1, 40)
    );
    app.verify_ok().await;
}

async fn a_first_purchase_bonus_is_given_once(app: &TestApp) {
    let mut rule = purchase_rule("welcome", bonus(500));
    rule.conditions = Some(proto::RuleConditions {
        first_purchase: true,
        ..Default::default()
    });
    create_rule(app, rule).await;
    let member_id = app.create_member("card-1").await;
    let first = app
        .record_sale(store_sale("s1", "0001", member_ref(&member_id), "1000", 0))
        .await
        .expect("first sale");
    assert_eq!(parts(&first.earn_breakdown), [("", 10), ("welcome", 500)]);
    let second = app
        .record_sale(store_sale("s2", "0002", member_ref(&member_id), "1000", 0))
        .await
        .expect("second sale");
    assert_eq!(parts(&second.earn_breakdown), [("", 10)]);
    // An EC order of a member with a store sale is no first purchase either.
    let order = app
        .authorize(crate::helpers::ec_order(
            "a1", "ec-1", &member_id, "1000", 0,
        ))
        .await
        .expect("authorize");
    assert_eq!(parts(&order.earn_breakdown), [("", 10)]);
    assert_eq!(app.available(&member_id).await, 520);
    app.verify_ok().await;
}

async fn a_budget_raced_by_concurrent_sales_is_given_exactly(app: &TestApp) {
    let mut rule = purchase_rule("budgeted", bonus(100));
    rule.limits = Some(proto::RuleLimits {
        budget_points: 1_050,
        ..Default::default()
    });
    create_rule(app, rule).await;
    assert_eq!(stats(app, "budgeted").await.budget_points_left, 1_050);
    let mut members = Vec::new();
    for i in 0..30 {
        members.push(app.create_member(&format!("card-{i}")).await);
    }
    // 30 concurrent sales, each worth 100 bonus points: the budget gives 1,050 and no more.
    let sales: Vec<_> = members
        .iter()
        .enumerate()
        .map(|(i, member_id)| {
            let register = app.register.clone();
            let receipt_no = format!("{i:04}");
            let sale = store_sale(
                &format!("s{i}"),
                &receipt_no,
                member_ref(member_id),
                "1000",
                0,
            );
            tokio::spawn(async move { crate::helpers::record_sale_as(&register, sale).await })
        })
        .collect();
    let mut orders = Vec::new();
    for sale in sales {
        orders.push(sale.await.expect("task").expect("every sale is recorded"));
    }
    let bonus_points: i64 = orders
        .iter()
        .flat_map(|order| &order.earn_breakdown)
        .filter(|part| part.rule_id == "budgeted")
        .map(|part| part.points)
        .sum();
    assert_eq!(bonus_points, 1_050);
    let stats = stats(app, "budgeted").await;
    assert_eq!((stats.points_awarded, stats.budget_points_left), (1_050, 0));
    assert_eq!(
        stats.fired, 11,
        "ten whole bonuses and one of the last 50 points"
    );
    app.verify_ok().await;
}

async fn limited_time_points_are_spent_first_and_expire_on_their_day(app: &TestApp) {
    let mut rule = purchase_rule(
        "double-week",
        proto::RuleEffects {
            points_multiplier: "2".into(),
            points_expire_days: 7,
            ..Default::default()
        },
    );
    rule.name = "double points, spend within a week".into();
    create_rule(app, rule).await;
    let member_id = app.create_member("card-1").await;
    app.record_sale(store_sale("s1", "0001", member_ref(&member_id), "10000", 0))
        .await
        .expect("sale");
    // An admin grant with its own expiry is limited-time points too.
    let in_three_days = app.clock.now() + Duration::days(3);
    app.admin
        .ledger()
        .adjust_points(proto::AdjustPointsRequest {
            request_id: "grant".into(),
            member: Some(member_ref(&member_id)),
            points: 30,
            reason: "apology".into(),
            expires_at: Some(omo::grpc::convert::timestamp(in_three_days)),
        })
        .await
        .expect("grant");
    let balance = app.balance(&member_id).await;
    assert_eq!(balance.available_points, 230);
    assert_eq!(balance.limited_points, 130);
    // Soonest expiry first: the grant (3 days), then the rule's points (7 days).
    let expiring: Vec<i64> = balance.expiring.iter().map(|e| e.points).collect();
    assert_eq!(expiring, [30, 100, 100]);

    // Spending 50 takes the grant's 30 and 20 of the rule's points.
    app.record_sale(store_sale("s2", "0002", member_ref(&member_id), "50", 50))
        .await
        .expect("spend");
    let balance = app.balance(&member_id).await;
    assert_eq!(
        (balance.available_points, balance.limited_points),
        (180, 80)
    );

    // On their seventh day the rule's points are gone; the base points stay.
    app.advance(Duration::days(7) - Duration::seconds(1)).await;
    assert_eq!(app.available(&member_id).await, 180);
    app.advance(Duration::seconds(1)).await;
    let balance = app.balance(&member_id).await;
    assert_eq!((balance.available_points, balance.limited_points), (100, 0));
    app.verify_ok().await;
}

async fn update(
    app: &TestApp,
    request_id: &str,
    rule: proto::Rule,
    paths: &[&str],
) -> Result<proto::Rule, tonic::Status> {
    app.admin
        .rules()
        .update_rule(proto::UpdateRuleRequest {
            request_id: request_id.into(),
            rule: Some(rule),
            update_mask: Some(prost_types::FieldMask {
                paths: paths.iter().map(|p| p.to_string()).collect(),
            }),
        })
        .await
        .map(|r| r.into_inner().rule.expect("rule"))
}

async fn a_disabled_rule_gives_nothing_until_enabled(app: &TestApp) {
    create_rule(app, purchase_rule("bonus", bonus(100))).await;
    let member_id = app.create_member("card-1").await;
    let off = proto::Rule {
        rule_id: "bonus".into(),
        enabled: Some(false),
        ..Default::default()
    };
    let updated = update(app, "off", off, &["enabled"])
        .await
        .expect("disable");
    assert_eq!(updated.enabled, Some(false));
    assert_eq!(
        updated.effects.unwrap().bonus_points,
        100,
        "the rest is kept"
    );
    // Other replicas see a change within a second (the rules' cache); this one at once.
    let order = app
        .record_sale(store_sale("s1", "0001", member_ref(&member_id), "1000", 0))
        .await
        .unwrap();
    assert_eq!(parts(&order.earn_breakdown), [("", 10)]);
    let listed = app
        .admin
        .rules()
        .list_rules(proto::ListRulesRequest::default())
        .await
        .unwrap()
        .into_inner()
        .rules;
    assert!(
        listed.is_empty(),
        "disabled rules are listed only when asked for"
    );

    let on = proto::Rule {
        rule_id: "bonus".into(),
        enabled: Some(true),
        ..Default::default()
    };
    update(app, "on", on, &["enabled"]).await.expect("enable");
    let order = app
        .record_sale(store_sale("s2", "0002", member_ref(&member_id), "1000", 0))
        .await
        .unwrap();
    assert_eq!(parts(&order.earn_breakdown), [("", 10), ("bonus", 100)]);

    // The trigger is immutable; an unknown rule is NOT_FOUND.
    let retrigger = proto::Rule {
        rule_id: "bonus".into(),
        trigger: proto::RuleTrigger::Event as i32,
        ..Default::default()
    };
    let refused = update(app, "t", retrigger, &["enabled"]).await.unwrap_err();
    assert_eq!(violated_fields(&refused), ["rule.trigger"]);
    let unknown = proto::Rule {
        rule_id: "nope".into(),
        ..Default::default()
    };
    let refused = update(app, "u", unknown, &["enabled"]).await.unwrap_err();
    assert_refused(&refused, Code::NotFound, "RULE_NOT_FOUND");
}

async fn simulate(
    app: &TestApp,
    request: proto::SimulateRulesRequest,
) -> Vec<(String, bool, String, i64)> {
    app.admin
        .rules()
        .simulate_rules(request)
        .await
        .expect("simulate")
        .into_inner()
        .outcomes
        .into_iter()
        .map(|o| (o.rule_id, o.fired, o.reason, o.points))
        .collect()
}

async fn simulate_names_why_each_rule_would_not_fire(app: &TestApp) {
    // The test clock stands at 12:00 in Tokyo on a Wednesday.
    create_rule(app, purchase_rule("a-fires", bonus(10))).await;
    let mut evening = purchase_rule("b-evening", bonus(10));
    evening.conditions = Some(proto::RuleConditions {
        active_hours: vec![proto::ActiveHours {
            start: "18:00".into(),
            end: "22:00".into(),
        }],
        ..Default::default()
    });
    create_rule(app, evening).await;
    let mut ec_only = purchase_rule("c-ec", bonus(10));
    ec_only.conditions = Some(proto::RuleConditions {
        channels: vec![proto::Channel::Ec as i32],
        ..Default::default()
    });
    create_rule(app, ec_only).await;
    let mut once = purchase_rule("d-once", bonus(10));
    once.limits = Some(proto::RuleLimits {
        per_member_limit: 1,
        ..Default::default()
    });
    create_rule(app, once).await;
    let mut off = purchase_rule("e-off", bonus(10));
    off.enabled = Some(false);
    create_rule(app, off).await;
    let mut over = purchase_rule("f-over", bonus(10));
    over.ends_at = Some(omo::grpc::convert::timestamp(
        app.clock.now() - Duration::days(1),
    ));
    over.starts_at = Some(omo::grpc::convert::timestamp(
        app.clock.now() - Duration::days(9),
    ));
    create_rule(app, over).await;
    let mut event = proto::Rule {
        rule_id: "g-event".into(),
        trigger: proto::RuleTrigger::Event as i32,
        event_type: "review_posted".into(),
        effects: Some(bonus(50)),
        ..Default::default()
    };
    event.conditions = Some(proto::RuleConditions {
        attributes: [("product".to_string(), "shoes".to_string())].into(),
        ..Default::default()
    });
    create_rule(app, event).await;

    let member_id = app.create_member("card-1").await;
    app.record_sale(store_sale("s1", "0001", member_ref(&member_id), "1000", 0))
        .await
        .unwrap();
    let purchase = proto::SimulateRulesRequest {
        trigger: proto::RuleTrigger::Purchase as i32,
        member: Some(card_ref("card-1")),
        channel: proto::Channel::Store as i32,
        store_id: "shibuya".into(),
        basket: Some(basket(&["1000"])),
        ..Default::default()
    };
    let outcomes = simulate(app, purchase.clone()).await;
    let expected = [
        ("a-fires", true, "", 10),
        ("b-evening", false, "OUTSIDE_HOURS", 0),
        ("c-ec", false, "CONDITION_NOT_MET", 0),
        ("d-once", false, "MEMBER_LIMIT", 0),
        ("e-off", false, "RULE_DISABLED", 0),
        ("f-over", false, "OUTSIDE_PERIOD", 0),
    ];
    let outcomes: Vec<(&str, bool, &str, i64)> = outcomes
        .iter()
        .map(|(id, fired, reason, points)| (id.as_str(), *fired, reason.as_str(), *points))
        .collect();
    assert_eq!(outcomes, expected);

    // At 19:00 the evening rule fires; simulating wrote nothing (the counters are as before).
    let at_seven = app.clock.now() + Duration::hours(7);
    let outcomes = simulate(
        app,
        proto::SimulateRulesRequest {
            at: Some(omo::grpc::convert::timestamp(at_seven)),
            ..purchase
        },
    )
    .await;
    assert!(outcomes[1].1, "{outcomes:?}");
    assert_eq!(stats(app, "a-fires").await.fired, 1);

    // EVENT rules: the event type and attributes decide.
    let event = |attribute: &str| proto::SimulateRulesRequest {
        trigger: proto::RuleTrigger::Event as i32,
        member: Some(card_ref("card-1")),
        channel: proto::Channel::App as i32,
        event_type: "review_posted".into(),
        attributes: [("product".to_string(), attribute.to_string())].into(),
        ..Default::default()
    };
    let shoes = simulate(app, event("shoes")).await;
    assert_eq!(shoes, [("g-event".to_string(), true, String::new(), 50)]);
    let bags = simulate(app, event("bags")).await;
    assert_eq!(bags[0].2, "CONDITION_NOT_MET");
}

async fn engagement_rules_are_listed_as_rules(app: &TestApp) {
    app.admin
        .coupons()
        .create_campaign(proto::CreateCampaignRequest {
            request_id: String::new(),
            campaign: Some(proto::Campaign {
                campaign_id: "walk-in".into(),
                name: "walk-in".into(),
                discount: Some(Discount::AmountOff("300".into())),
                ..Default::default()
            }),
        })
        .await
        .expect("campaign");
    app.admin
        .engagement()
        .create_geo_rule(proto::CreateGeoRuleRequest {
            request_id: "geo".into(),
            rule: Some(proto::GeoRule {
                rule_id: "geo-1".into(),
                campaign_id: "walk-in".into(),
                store_ids: vec!["shibuya".into()],
                cooldown_seconds: 3600,
                ..Default::default()
            }),
        })
        .await
        .expect("geo rule");
    app.admin
        .engagement()
        .create_visit_rule(proto::CreateVisitRuleRequest {
            request_id: "visit".into(),
            rule: Some(proto::VisitRule {
                rule_id: "visit-1".into(),
                campaign_id: "walk-in".into(),
                kind: proto::VisitRuleKind::NthVisit as i32,
                visits: 5,
                window_days: 30,
                ..Default::default()
            }),
        })
        .await
        .expect("visit rule");
    crate::helpers::create_receipt_rule_as(&app.admin, "receipt-1", "0.01").await;
    create_rule(app, purchase_rule("purchase-1", bonus(5))).await;

    let rules = app
        .admin
        .rules()
        .list_rules(proto::ListRulesRequest {
            page_size: 2,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(rules.rules.len(), 2);
    let next = app
        .admin
        .rules()
        .list_rules(proto::ListRulesRequest {
            page_token: rules.next_page_token,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let all: Vec<(String, i32)> = rules
        .rules
        .iter()
        .chain(&next.rules)
        .map(|rule| (rule.rule_id.clone(), rule.trigger))
        .collect();
    let expected = [
        ("geo-1", proto::RuleTrigger::Geo),
        ("purchase-1", proto::RuleTrigger::Purchase),
        ("receipt-1", proto::RuleTrigger::Receipt),
        ("visit-1", proto::RuleTrigger::Visit),
    ];
    let expected: Vec<(String, i32)> = expected
        .iter()
        .map(|(id, trigger)| (id.to_string(), *trigger as i32))
        .collect();
    assert_eq!(all, expected);

    let geo = app
        .admin
        .rules()
        .get_rule(proto::GetRuleRequest {
            rule_id: "geo-1".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .rule
        .unwrap();
    assert_eq!(geo.limits.unwrap().cooldown_seconds, 3600);
    assert_eq!(geo.effects.unwrap().campaign_id, "walk-in");
    assert_eq!(geo.conditions.unwrap().store_ids, ["shibuya"]);
    assert_eq!(geo.geo.unwrap().max_accuracy_m, 100.0);
    let visits = app
        .admin
        .rules()
        .list_rules(proto::ListRulesRequest {
            trigger: proto::RuleTrigger::Visit as i32,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .rules;
    assert_eq!(visits.len(), 1);
    assert_eq!(visits[0].visit.as_ref().unwrap().visits, 5);

    // Their ids are taken for CreateRule too.
    let clash = app
        .admin
        .rules()
        .create_rule(proto::CreateRuleRequest {
            request_id: "clash".into(),
            rule: Some(purchase_rule("geo-1", bonus(1))),
        })
        .await
        .unwrap_err();
    assert_refused(&clash, Code::AlreadyExists, "RULE_EXISTS");
}

async fn a_refund_takes_back_each_part_of_the_points(app: &TestApp) {
    let mut rule = purchase_rule("budgeted", bonus(300));
    rule.limits = Some(proto::RuleLimits {
        budget_points: 1_000,
        ..Default::default()
    });
    rule.conditions = Some(proto::RuleConditions {
        channels: vec![proto::Channel::Ec as i32],
        ..Default::default()
    });
    create_rule(app, rule).await;
    let member_id = app.create_member("card-1").await;
    let order = app
        .authorize(crate::helpers::ec_order(
            "a1", "ec-1", &member_id, "10000", 0,
        ))
        .await
        .unwrap();
    assert_eq!(parts(&order.earn_breakdown), [("", 100), ("budgeted", 300)]);
    let order = app.capture("c1", "ec-1").await.unwrap();
    assert_eq!(order.points_earned, 400);
    assert_eq!(stats(app, "budgeted").await.budget_points_left, 700);

    // A third of the order back: a third of each part.
    let refund = app.refund("r1", "ec-1", "3333").await.unwrap();
    assert_eq!(refund.points_reversed, 33 + 99);
    assert_eq!(parts(&refund.earn_breakdown), [("", 33), ("budgeted", 99)]);
    let stats_after = stats(app, "budgeted").await;
    assert_eq!(
        (stats_after.points_awarded, stats_after.budget_points_left),
        (201, 799),
        "the rule's points go back to its budget"
    );
    // The rest, after the member spent some: the shortfall is booked, the balance stays >= 0.
    app.record_sale(store_sale("s1", "0001", member_ref(&member_id), "250", 250))
        .await
        .unwrap();
    assert_eq!(app.available(&member_id).await, 268 - 250);
    let refund = app.refund("r2", "ec-1", "6667").await.unwrap();
    assert_eq!(parts(&refund.earn_breakdown), [("", 67), ("budgeted", 201)]);
    assert_eq!(
        (refund.points_reversed, refund.points_shortfall),
        (268, 250),
        "the member had spent 250 of the 268 points"
    );
    assert_eq!(app.available(&member_id).await, 0);
    // Only the 18 points that came back refill the budget; the 250 the member spent were
    // given by the rule and stay given (the shortfall is the program's).
    let stats_after = stats(app, "budgeted").await;
    assert_eq!(
        (stats_after.points_awarded, stats_after.budget_points_left),
        (183, 817)
    );
    app.verify_ok().await;
}

async fn a_capture_decides_its_rules_again(app: &TestApp) {
    let mut rule = purchase_rule("once", bonus(100));
    rule.limits = Some(proto::RuleLimits {
        per_member_limit: 1,
        ..Default::default()
    });
    create_rule(app, rule).await;
    let member_id = app.create_member("card-1").await;
    // Two authorizations both preview the bonus; only the first capture gets it.
    for (request, order) in [("a1", "ec-1"), ("a2", "ec-2")] {
        let authorized = app
            .authorize(crate::helpers::ec_order(
                request, order, &member_id, "1000", 0,
            ))
            .await
            .unwrap();
        assert_eq!(parts(&authorized.earn_breakdown), [("", 10), ("once", 100)]);
    }
    let first = app.capture("c1", "ec-1").await.unwrap();
    assert_eq!(parts(&first.earn_breakdown), [("", 10), ("once", 100)]);
    let second = app.capture("c2", "ec-2").await.unwrap();
    assert_eq!(parts(&second.earn_breakdown), [("", 10)]);
    assert_eq!(second.points_earned, 10);
    assert_eq!(app.available(&member_id).await, 120);
    app.verify_ok().await;
}

async fn bad_rules_are_refused_field_by_field_and_write_nothing(app: &TestApp) {
    let create = |rule: proto::Rule| {
        let admin = app.admin.clone();
        async move {
            admin
                .rules()
                .create_rule(proto::CreateRuleRequest {
                    request_id: String::new(),
                    rule: Some(rule),
                })
                .await
                .unwrap_err()
        }
    };
    let mut bad = purchase_rule(
        "bad",
        proto::RuleEffects {
            points_multiplier: "abc".into(),
            ..Default::default()
        },
    );
    bad.limits = Some(proto::RuleLimits {
        budget_points: -5,
        ..Default::default()
    });
    bad.event_type = "page_view".into();
    let refused = create(bad).await;
    assert_eq!(refused.code(), Code::InvalidArgument);
    assert_eq!(
        violated_fields(&refused),
        [
            "rule.event_type",
            "rule.effects.points_multiplier",
            "rule.limits.budget_points"
        ]
    );
    let unknown_trigger = proto::Rule {
        trigger: 42,
        effects: Some(bonus(1)),
        ..Default::default()
    };
    assert_eq!(
        violated_fields(&create(unknown_trigger).await),
        ["rule.trigger"]
    );
    let gives_nothing = purchase_rule("empty", proto::RuleEffects::default());
    assert_eq!(
        violated_fields(&create(gives_nothing).await),
        ["rule.effects"]
    );
    let event_without_type = proto::Rule {
        trigger: proto::RuleTrigger::Event as i32,
        effects: Some(bonus(1)),
        ..Default::default()
    };
    assert_eq!(
        violated_fields(&create(event_without_type).await),
        ["rule.event_type"]
    );
    let geo = proto::Rule {
        trigger: proto::RuleTrigger::Geo as i32,
        effects: Some(bonus(1)),
        ..Default::default()
    };
    assert_eq!(violated_fields(&create(geo).await), ["rule.trigger"]);
    let mut unknown_campaign = purchase_rule("coupon", proto::RuleEffects::default());
    unknown_campaign.effects.as_mut().unwrap().campaign_id = "nope".into();
    let refused = create(unknown_campaign).await;
    assert_refused(&refused, Code::NotFound, "CAMPAIGN_NOT_FOUND");

    let listed = app
        .admin
        .rules()
        .list_rules(proto::ListRulesRequest {
            include_disabled: true,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .rules;
    assert!(listed.is_empty(), "nothing was written: {listed:?}");
    // Not the app's to call.
    let denied = app
        .app_client
        .rules()
        .list_rules(proto::ListRulesRequest::default())
        .await
        .unwrap_err();
    assert_eq!(denied.code(), Code::PermissionDenied);
    app.verify_ok().await;
}

async fn a_rule_issues_coupons_within_its_daily_cap_and_cooldown(app: &TestApp) {
    app.admin
        .coupons()
        .create_campaign(proto::CreateCampaignRequest {
            request_id: String::new(),
            campaign: Some(proto::Campaign {
                campaign_id: "web-500".into(),
                name: "¥500 off online".into(),
                discount: Some(Discount::AmountOff("500".into())),
                channels: vec![proto::Channel::Ec as i32],
                ..Default::default()
            }),
        })
        .await
        .expect("campaign");
    // A store purchase of a bag gives a web coupon: at most two a day at a store, and one per
    // member a day.
    let mut rule = purchase_rule(
        "bag-to-web",
        proto::RuleEffects {
            campaign_id: "web-500".into(),
            ..Default::default()
        },
    );
    rule.conditions = Some(proto::RuleConditions {
        channels: vec![proto::Channel::Store as i32],
        lines: vec![proto::RuleLineCondition {
            sku: "BAG".into(),
            ..Default::default()
        }],
        ..Default::default()
    });
    rule.limits = Some(proto::RuleLimits {
        daily_cap_per_store: 2,
        cooldown_seconds: 86_400,
        ..Default::default()
    });
    create_rule(app, rule).await;
    let bag_sale = |request: &str, receipt: &str, member_id: &str| {
        let mut sale = store_sale(request, receipt, member_ref(member_id), "0", 0);
        sale.basket = Some(proto::Basket {
            lines: vec![proto::LineItem {
                line_id: "1".into(),
                sku: "BAG".into(),
                category: "goods".into(),
                quantity: 1,
                amount: "5000".into(),
            }],
        });
        sale
    };
    let first = app.create_member("card-1").await;
    let second = app.create_member("card-2").await;
    let third = app.create_member("card-3").await;
    for (i, member_id) in [&first, &first, &second, &third].into_iter().enumerate() {
        app.record_sale(bag_sale(&format!("s{i}"), &format!("{i:04}"), member_id))
            .await
            .expect("sale");
    }
    let wallet = |member_id: String| {
        let admin = app.admin.clone();
        async move {
            admin
                .coupons()
                .list_coupons(proto::ListCouponsRequest {
                    member: Some(member_ref(&member_id)),
                    ..Default::default()
                })
                .await
                .expect("coupons")
                .into_inner()
                .coupons
        }
    };
    // The first member's second sale is in the cooldown; the third member's is over the cap.
    let coupons = wallet(first.clone()).await;
    assert_eq!(coupons.len(), 1);
    assert_eq!(coupons[0].source, "rule:bag-to-web");
    assert_eq!(wallet(second.clone()).await.len(), 1);
    assert!(wallet(third.clone()).await.is_empty());
    let stats = stats(app, "bag-to-web").await;
    assert_eq!(
        (stats.fired, stats.members, stats.coupons_issued),
        (2, 2, 2)
    );
    let simulated = |member: &str| proto::SimulateRulesRequest {
        trigger: proto::RuleTrigger::Purchase as i32,
        member: Some(member_ref(member)),
        channel: proto::Channel::Store as i32,
        store_id: "shibuya".into(),
        basket: bag_sale("x", "x", member).basket,
        ..Default::default()
    };
    assert_eq!(simulate(app, simulated(&third)).await[0].2, "DAILY_CAP");
    assert_eq!(simulate(app, simulated(&first)).await[0].2, "COOLDOWN");
    // The next day the cap starts again.
    app.advance(Duration::days(1)).await;
    app.record_sale(bag_sale("s9", "0009", &third))
        .await
        .unwrap();
    assert_eq!(wallet(third).await.len(), 1);
    app.verify_ok().await;
}

async fn an_update_retried_after_another_edit_replays(app: &TestApp) {
    create_rule(app, purchase_rule("bonus", bonus(100))).await;
    let off = proto::Rule {
        rule_id: "bonus".into(),
        enabled: Some(false),
        ..Default::default()
    };
    let first = update(app, "off-1", off.clone(), &["enabled"])
        .await
        .unwrap();
    let renamed = proto::Rule {
        rule_id: "bonus".into(),
        name: "renamed".into(),
        ..Default::default()
    };
    update(app, "rename", renamed, &["name"]).await.unwrap();
    // The same request again: the original answer, not IDEMPOTENCY_KEY_REUSED.
    let again = update(app, "off-1", off, &["enabled"]).await.unwrap();
    assert_eq!(again, first);
    let stored = app
        .admin
        .rules()
        .get_rule(proto::GetRuleRequest {
            rule_id: "bonus".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .rule
        .unwrap();
    assert_eq!(
        (stored.name.as_str(), stored.enabled),
        ("renamed", Some(false))
    );
}

async fn rules_give_what_room_the_points_cap_leaves(app: &TestApp) {
    app.set_program(|program| program.max_points_per_order = 150)
        .await;
    create_rule(app, purchase_rule("a-bonus", bonus(100))).await;
    create_rule(app, purchase_rule("b-bonus", bonus(100))).await;
    let member_id = app.create_member("card-1").await;
    // Base 100 (¥10,000): the rules share the 50 points of room, in rule order.
    let order = app
        .record_sale(store_sale("s1", "0001", member_ref(&member_id), "10000", 0))
        .await
        .expect("a campaign never makes a sale fail");
    assert_eq!(parts(&order.earn_breakdown), [("", 100), ("a-bonus", 50)]);
    assert_eq!(order.points_earned, 150);
    // The base alone over the cap is refused, as before rules.
    let refused = app
        .record_sale(store_sale("s2", "0002", member_ref(&member_id), "20000", 0))
        .await
        .unwrap_err();
    assert_refused(&refused, Code::FailedPrecondition, "EARN_CAP_EXCEEDED");
    app.verify_ok().await;
}

/// Two cards of one person merged: a once-per-member bonus the old card got is not given again
/// to the card it was merged into, and the rule's statistics count it once.
async fn a_merge_carries_the_rule_counters_to_the_target(app: &TestApp) {
    let mut rule = purchase_rule("once", bonus(100));
    rule.limits = Some(proto::RuleLimits {
        per_member_limit: 1,
        ..Default::default()
    });
    create_rule(app, rule).await;
    let old_card = app.create_member("card-old").await;
    let sale = store_sale("m1", "0001", member_ref(&old_card), "1000", 0);
    let first = app.record_sale(sale).await.expect("sale on the old card");
    assert_eq!(parts(&first.earn_breakdown), [("", 10), ("once", 100)]);
    let new_card = app.create_member("card-new").await;
    app.admin
        .members()
        .merge_members(proto::MergeMembersRequest {
            request_id: "merge-cards".into(),
            source_member_id: old_card.clone(),
            target_member_id: new_card.clone(),
        })
        .await
        .expect("merge");
    let sale = store_sale("m2", "0002", member_ref(&new_card), "1000", 0);
    let after = app.record_sale(sale).await.expect("sale on the new card");
    assert_eq!(parts(&after.earn_breakdown), [("", 10)]);
    let stats = stats(app, "once").await;
    assert_eq!(
        (stats.fired, stats.members, stats.points_awarded),
        (1, 1, 100)
    );
    assert_eq!(app.available(&new_card).await, 120);
    app.verify_ok().await;
}
