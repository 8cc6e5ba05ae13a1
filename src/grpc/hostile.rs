//! Hostile input: every mutating RPC's request conversion, fed random field values (strings of
//! every length up to 10,000 characters, any unicode, control characters, huge and negative
//! numbers, NaN and infinities, missing messages). Nothing may panic, and every rejection must be
//! INVALID_ARGUMENT with at least one field violation (an unparsed field without a violation
//! would surface as INTERNAL). The conversions run directly, without a server, so thousands of
//! cases take a second.

use std::sync::atomic::{AtomicUsize, Ordering};

use proptest::{
    prelude::*,
    test_runner::{Config as ProptestConfig, TestCaseError, TestRunner},
};
use rust_decimal::Decimal;
use tonic::{Code, Status};
use tonic_types::StatusExt;

use super::{
    checkout::{self, OrderInput, OrderKind},
    convert::Violations,
    coupon, engagement, ledger, member, program, receipts, store,
};
use crate::proto;

/// Cases per RPC.
const CASES: u32 = 256;

/// Runs `CASES` random requests through `convert`: each must be accepted, or refused with
/// INVALID_ARGUMENT naming at least one field. Prints how many ran and how many were accepted.
fn hostile<S: Strategy>(rpc: &str, strategy: S, convert: impl Fn(S::Value) -> Result<(), Status>) {
    let config = ProptestConfig {
        cases: CASES,
        failure_persistence: None,
        ..ProptestConfig::default()
    };
    let accepted = AtomicUsize::new(0);
    let ran = AtomicUsize::new(0);
    TestRunner::new(config)
        .run(&strategy, |request| {
            ran.fetch_add(1, Ordering::Relaxed);
            match convert(request) {
                Ok(()) => {
                    accepted.fetch_add(1, Ordering::Relaxed);
                    Ok(())
                }
                Err(status) => rejected_properly(rpc, &status),
            }
        })
        .unwrap_or_else(|failure| panic!("{rpc}: {failure}"));
    eprintln!(
        "hostile input: {rpc}: {} cases (shrinking included), {} accepted",
        ran.load(Ordering::Relaxed),
        accepted.load(Ordering::Relaxed)
    );
}

fn rejected_properly(rpc: &str, status: &Status) -> Result<(), TestCaseError> {
    prop_assert_eq!(
        status.code(),
        Code::InvalidArgument,
        "{}: {:?}",
        rpc,
        status
    );
    let violations = status
        .get_details_bad_request()
        .map(|bad| bad.field_violations.len())
        .unwrap_or_default();
    prop_assert!(
        violations >= 1,
        "{}: no field violation in {:?}",
        rpc,
        status
    );
    Ok(())
}

/// Drops what a conversion built: only whether it was accepted matters here.
fn accepted<T>(result: Result<T, Status>) -> Result<(), Status> {
    result.map(drop)
}

// ---------------------------------------------------------------------------------------------
// Field values

/// Field values: valid ones most often (so that whole requests get through and the accepting
/// side runs too), mixed with every kind of hostile one.
fn text() -> BoxedStrategy<String> {
    prop_oneof![
        1 => Just(String::new()),
        12 => "[A-Za-z0-9_-]{1,12}",
        1 => any::<String>(),
        1 => "\\PC{0,300}",
        1 => "[\\x00-\\x1f\\x7f]{1,8}",
        1 => (0usize..=10_000, any::<char>()).prop_map(|(n, c)| std::iter::repeat_n(c, n).collect()),
        1 => (120usize..=140).prop_map(|n| "a".repeat(n)),
    ]
    .boxed()
}

fn money_text() -> BoxedStrategy<String> {
    prop_oneof![
        8 => (1i64..100_000).prop_map(|n| n.to_string()),
        1 => text(),
        1 => (any::<i64>(), 0u32..8).prop_map(|(n, scale)| Decimal::new(n, scale).to_string()),
        1 => (0i64..100_000).prop_map(|n| n.to_string()),
        1 => prop::sample::select(vec![
            "NaN",
            "inf",
            "-0",
            "1e3",
            "0.001",
            "1.5",
            "-1",
            " 1",
            "1,000",
            "+5",
            "１２３",
            "99999999999999999999999999999999",
            "0.0000000000000000000000000001",
        ])
        .prop_map(str::to_string),
    ]
    .boxed()
}

fn int64() -> BoxedStrategy<i64> {
    prop_oneof![
        1 => any::<i64>(),
        6 => 0i64..1000,
        1 => -5i64..5,
        1 => Just(i64::MIN),
        1 => Just(i64::MAX),
        1 => 999_999_999_999i64..=1_000_000_000_001,
    ]
    .boxed()
}

fn int32() -> BoxedStrategy<i32> {
    prop_oneof![
        1 => any::<i32>(),
        6 => 1i32..10,
        1 => -5i32..5,
        1 => Just(i32::MIN),
        1 => Just(i32::MAX)
    ]
    .boxed()
}

fn float() -> BoxedStrategy<f64> {
    prop_oneof![
        1 => any::<f64>(),
        6 => -90.0f64..90.0,
        1 => -200.0f64..200.0,
        1 => Just(f64::NAN),
        1 => Just(f64::INFINITY),
        1 => Just(f64::NEG_INFINITY),
        1 => Just(-0.0),
    ]
    .boxed()
}

fn timestamp() -> BoxedStrategy<Option<prost_types::Timestamp>> {
    prop::option::weighted(
        0.2,
        (int64(), int32()).prop_map(|(seconds, nanos)| prost_types::Timestamp { seconds, nanos }),
    )
    .boxed()
}

fn channel() -> BoxedStrategy<i32> {
    prop_oneof![4 => 1i32..4, 1 => 0i32..5, 1 => int32()].boxed()
}

fn identifier() -> BoxedStrategy<proto::Identifier> {
    (text(), text())
        .prop_map(|(kind, value)| proto::Identifier { kind, value })
        .boxed()
}

fn member_ref() -> BoxedStrategy<Option<proto::MemberRef>> {
    use proto::member_ref::Ref;
    prop::option::weighted(
        0.95,
        prop::option::weighted(
            0.95,
            prop_oneof![
                text().prop_map(Ref::MemberId),
                identifier().prop_map(Ref::Identifier),
            ],
        )
        .prop_map(|r#ref| proto::MemberRef { r#ref }),
    )
    .boxed()
}

fn line() -> BoxedStrategy<proto::LineItem> {
    (text(), text(), text(), int32(), money_text())
        .prop_map(
            |(line_id, sku, category, quantity, amount)| proto::LineItem {
                line_id,
                sku,
                category,
                quantity,
                amount,
            },
        )
        .boxed()
}

fn basket() -> BoxedStrategy<Option<proto::Basket>> {
    prop::option::weighted(
        0.95,
        prop_oneof![
            8 => prop::collection::vec(line(), 1..4),
            1 => Just(Vec::new()),
            1 => Just(vec![proto::LineItem::default(); 501]),
        ]
        .prop_map(|lines| proto::Basket { lines }),
    )
    .boxed()
}

fn codes() -> BoxedStrategy<Vec<String>> {
    prop_oneof![
        4 => prop::collection::vec(text(), 0..2),
        1 => prop::collection::vec(text(), 0..4),
        1 => prop::collection::vec(Just("ABC".to_string()), 11..12),
    ]
    .boxed()
}

fn lat_lng() -> BoxedStrategy<proto::LatLng> {
    (float(), float())
        .prop_map(|(latitude, longitude)| proto::LatLng {
            latitude,
            longitude,
        })
        .boxed()
}

// ---------------------------------------------------------------------------------------------
// Requests

prop_compose! {
    fn order_fields()(
        request_id in text(), order_id in text(), member in member_ref(), channel in channel(),
        store_id in text(), register_id in text(), basket in basket(),
        points_to_redeem in int64(), coupon_codes in codes(), receipt_no in text(),
        occurred_at in timestamp(),
    ) -> proto::RecordSaleRequest {
        proto::RecordSaleRequest {
            request_id, order_id, member, channel, store_id, register_id, basket,
            points_to_redeem, coupon_codes, receipt_no, occurred_at,
        }
    }
}

/// A valid register sale.
fn valid_sale() -> proto::RecordSaleRequest {
    proto::RecordSaleRequest {
        request_id: "r-1".into(),
        order_id: "o-1".into(),
        member: Some(proto::MemberRef {
            r#ref: Some(proto::member_ref::Ref::MemberId("m-1".into())),
        }),
        channel: proto::Channel::Store as i32,
        store_id: "shibuya".into(),
        register_id: "1".into(),
        basket: Some(proto::Basket {
            lines: vec![proto::LineItem {
                line_id: "1".into(),
                sku: "SKU".into(),
                category: "food".into(),
                quantity: 1,
                amount: "1000".into(),
            }],
        }),
        points_to_redeem: 0,
        coupon_codes: vec![],
        receipt_no: "1".into(),
        occurred_at: None,
    }
}

/// Orders with every field random, or a valid one with one field hostile (an order has so
/// many fields that a fully random one is almost never valid).
fn orders() -> BoxedStrategy<proto::RecordSaleRequest> {
    let one_field = (0usize..11, order_fields()).prop_map(|(field, hostile)| {
        let mut r = valid_sale();
        match field {
            0 => r.request_id = hostile.request_id,
            1 => r.order_id = hostile.order_id,
            2 => r.member = hostile.member,
            3 => r.channel = hostile.channel,
            4 => r.store_id = hostile.store_id,
            5 => r.register_id = hostile.register_id,
            6 => r.basket = hostile.basket,
            7 => r.points_to_redeem = hostile.points_to_redeem,
            8 => r.coupon_codes = hostile.coupon_codes,
            9 => r.receipt_no = hostile.receipt_no,
            _ => r.occurred_at = hostile.occurred_at,
        }
        r
    });
    prop_oneof![order_fields(), one_field].boxed()
}

fn authorize_of(r: proto::RecordSaleRequest) -> proto::AuthorizeRequest {
    proto::AuthorizeRequest {
        request_id: r.request_id,
        order_id: r.order_id,
        member: r.member,
        channel: r.channel,
        store_id: r.store_id,
        register_id: r.register_id,
        basket: r.basket,
        points_to_redeem: r.points_to_redeem,
        coupon_codes: r.coupon_codes,
    }
}

prop_compose! {
    fn refund_request()(
        request_id in text(), order_id in text(), amount in money_text(),
        lines in prop::collection::vec(
            (text(), int32()).prop_map(|(line_id, quantity)| proto::RefundLine { line_id, quantity }),
            0..4,
        ),
    ) -> proto::RefundRequest {
        proto::RefundRequest { request_id, order_id, amount, lines }
    }
}

prop_compose! {
    fn store_request()(
        store in prop::option::of((
            text(), text(), prop::option::of(lat_lng()), text(), float(),
            prop_oneof![prop::collection::vec(lat_lng(), 0..5), Just(vec![proto::LatLng::default(); 2000])],
        )),
    ) -> Option<proto::Store> {
        store.map(|(store_id, name, location, time_zone, geofence_radius_m, geofence_polygon)| {
            proto::Store { store_id, name, location, time_zone, geofence_radius_m, geofence_polygon }
        })
    }
}

prop_compose! {
    fn program_request()(
        program in prop::option::of((
            text(), money_text(), money_text(),
            prop::collection::btree_map(text(), money_text(), 0..4),
            (int32(), int32(), int32(), int32()),
        )),
        mask in prop::option::of(prop::collection::vec(
            prop_oneof![
                prop::sample::select(vec![
                    "currency_code", "point_value", "earn_rate", "channel_earn_rates",
                    "point_expiry_days", "ec_pending_days", "hold_ttl_seconds",
                    "max_receipts_per_day", "max_points_per_receipt",
                    "receipt_review_threshold",
                ]).prop_map(str::to_string),
                text(),
            ],
            0..4,
        )),
    ) -> proto::UpdateProgramRequest {
        proto::UpdateProgramRequest {
            program: program.map(|(currency_code, point_value, earn_rate, rates, days)| proto::Program {
                currency_code,
                point_value,
                receipt_review_threshold: earn_rate.clone(),
                earn_rate,
                channel_earn_rates: rates.into_iter().collect(),
                point_expiry_days: days.0,
                ec_pending_days: days.1,
                hold_ttl_seconds: days.2,
                max_receipts_per_day: days.3,
                max_points_per_order: days.0.into(),
                max_offline_age_days: days.1,
                time_zone: String::new(),
                max_points_per_receipt: days.2.into(),
                expiry_reminder_days: days.3,
                nearby_offer_radius_m: days.0,
                tiers: Vec::new(),
                tier_window_months: days.1,
            }),
            update_mask: mask.map(|paths| prost_types::FieldMask { paths }),
            request_id: String::new(),
        }
    }
}

fn campaign_discount() -> BoxedStrategy<Option<proto::campaign::Discount>> {
    use proto::campaign::Discount;
    prop::option::of(prop_oneof![
        money_text().prop_map(Discount::AmountOff),
        (money_text(), money_text()).prop_map(|(percent, max_discount)| Discount::PercentOff(
            proto::PercentOff {
                percent,
                max_discount
            }
        )),
    ])
    .boxed()
}

fn variant() -> BoxedStrategy<proto::CampaignVariant> {
    use proto::campaign_variant::Discount;
    (
        text(),
        int32(),
        prop::option::of(prop_oneof![
            money_text().prop_map(Discount::AmountOff),
            money_text().prop_map(|percent| Discount::PercentOff(proto::PercentOff {
                percent,
                max_discount: String::new(),
            })),
        ]),
    )
        .prop_map(|(variant_id, weight, discount)| proto::CampaignVariant {
            variant_id,
            weight,
            discount,
        })
        .boxed()
}

prop_compose! {
    fn campaign_request()(
        ids in (text(), text(), campaign_discount(), money_text()),
        scope in (prop::collection::vec(channel(), 0..3), prop::collection::vec(text(), 0..3)),
        window in (timestamp(), timestamp()),
        limits in (int32(), int32(), int32(), any::<bool>(), text()),
        issue_on_capture in prop::option::of((money_text(), prop::collection::vec(channel(), 0..3))),
        variants in prop::collection::vec(variant(), 0..3),
        eligible in prop::option::of((
            prop::collection::vec(text(), 0..3),
            prop::collection::vec(text(), 0..3),
        )),
        present in prop::bool::weighted(0.95),
    ) -> Option<proto::Campaign> {
        present.then(|| proto::Campaign {
            campaign_id: ids.0,
            name: ids.1,
            discount: ids.2,
            min_spend: ids.3,
            channels: scope.0,
            store_ids: scope.1,
            starts_at: window.0,
            ends_at: window.1,
            validity_days: limits.0,
            per_member_limit: limits.1,
            issue_limit: limits.2,
            stackable: limits.3,
            public_code: limits.4,
            issue_on_capture: issue_on_capture.map(|(min_total, channels)| proto::IssueOnCapture {
                min_total,
                channels,
            }),
            variants,
            created_at: None,
            eligible: eligible.map(|(skus, categories)| proto::CampaignEligibility {
                skus,
                categories,
            }),
        })
    }
}

// ---------------------------------------------------------------------------------------------
// The properties, one per mutating RPC

#[test]
fn create_member() {
    let identifiers = prop_oneof![
        prop::collection::vec(identifier(), 0..4),
        Just(vec![
            proto::Identifier {
                kind: "card".into(),
                value: "1".into()
            };
            2
        ]),
        Just(vec![proto::Identifier::default(); 33]),
    ];
    let strategy =
        (text(), identifiers, text()).prop_map(|(request_id, identifiers, display_name)| {
            proto::CreateMemberRequest {
                request_id,
                identifiers,
                display_name,
            }
        });
    hostile("CreateMember", strategy, |request| {
        accepted(member::create_member_command(&request))
    });
}

#[test]
fn link_identifier() {
    let strategy = (text(), member_ref(), prop::option::of(identifier())).prop_map(
        |(request_id, member, identifier)| proto::LinkIdentifierRequest {
            request_id,
            member,
            identifier,
        },
    );
    hostile("LinkIdentifier", strategy, |request| {
        accepted(member::link_command(&request))
    });
}

#[test]
fn merge_members() {
    let strategy =
        (text(), text(), text()).prop_map(|(request_id, source_member_id, target_member_id)| {
            proto::MergeMembersRequest {
                request_id,
                source_member_id,
                target_member_id,
            }
        });
    hostile("MergeMembers", strategy, |request| {
        accepted(member::merge_command(&request))
    });
}

#[test]
fn adjust_points() {
    let strategy =
        (text(), member_ref(), int64(), text()).prop_map(|(request_id, member, points, reason)| {
            proto::AdjustPointsRequest {
                expires_at: None,
                request_id,
                member,
                points,
                reason,
            }
        });
    hostile("AdjustPoints", strategy, |request| {
        accepted(ledger::adjust_command(&request))
    });
}

#[test]
fn update_member() {
    let attributes = proptest::collection::hash_map(text(), text(), 0..40);
    let paths = proptest::collection::vec(
        prop_oneof![
            Just("display_name".to_string()),
            Just("attributes".to_string()),
            text(),
        ],
        0..4,
    );
    let strategy = (text(), member_ref(), text(), attributes, paths).prop_map(
        |(request_id, member, display_name, attributes, paths)| proto::UpdateMemberRequest {
            request_id,
            member,
            display_name,
            attributes,
            update_mask: Some(prost_types::FieldMask { paths }),
        },
    );
    hostile("UpdateMember", strategy, |request| {
        accepted(member::update_command(&request))
    });
}

#[test]
fn unlink_identifier_and_erase_member() {
    let strategy = (text(), member_ref(), proptest::option::of(identifier())).prop_map(
        |(request_id, member, identifier)| proto::UnlinkIdentifierRequest {
            request_id,
            member,
            identifier,
        },
    );
    hostile("UnlinkIdentifier", strategy, |request| {
        accepted(member::unlink_command(&request))
    });
    let strategy = (text(), member_ref())
        .prop_map(|(request_id, member)| proto::EraseMemberRequest { request_id, member });
    hostile("EraseMember", strategy, |request| {
        accepted(member::erase_command(&request))
    });
}

#[test]
fn transfer_points() {
    let strategy = (text(), member_ref(), member_ref(), int64()).prop_map(
        |(request_id, from_member, to_member, points)| proto::TransferPointsRequest {
            request_id,
            from_member,
            to_member,
            points,
        },
    );
    hostile("TransferPoints", strategy, |request| {
        accepted(ledger::transfer_command(&request))
    });
}

#[test]
fn record_sale() {
    hostile("RecordSale", orders(), |request| {
        let request_id = request.request_id.clone();
        let input: OrderInput = request.into();
        accepted(checkout::order_in(
            OrderKind::RecordSale,
            Some(&request_id),
            input,
        ))
    });
}

#[test]
fn authorize() {
    hostile("Authorize", orders(), |request| {
        let request = authorize_of(request);
        let request_id = request.request_id.clone();
        let input: OrderInput = request.into();
        accepted(checkout::order_in(
            OrderKind::Authorize,
            Some(&request_id),
            input,
        ))
    });
}

#[test]
fn capture_and_void() {
    hostile(
        "Capture/Void",
        (text(), text()),
        |(request_id, order_id)| checkout::order_op_in(&request_id, &order_id),
    );
}

#[test]
fn refund() {
    hostile("Refund", refund_request(), |request| {
        accepted(checkout::refund_in(&request))
    });
}

#[test]
fn create_store() {
    hostile("CreateStore", store_request(), |request| {
        accepted(store::store_in(Violations::new(), request))
    });
}

#[test]
fn update_program() {
    hostile("UpdateProgram", program_request(), |request| {
        accepted(program::patch_in(request))
    });
}

#[test]
fn create_campaign() {
    hostile("CreateCampaign", campaign_request(), |request| {
        accepted(coupon::campaign_in(Violations::new(), request))
    });
}

#[test]
fn issue_coupon() {
    let strategy = (text(), text(), member_ref()).prop_map(|(request_id, campaign_id, member)| {
        proto::IssueCouponRequest {
            request_id,
            campaign_id,
            member,
        }
    });
    hostile("IssueCoupon", strategy, |request| {
        accepted(coupon::issue_command(&request))
    });
}

#[test]
fn revoke_coupon() {
    let strategy = (text(), text(), text()).prop_map(|(request_id, code, reason)| {
        proto::RevokeCouponRequest {
            request_id,
            code,
            reason,
        }
    });
    hostile("RevokeCoupon", strategy, |request| {
        accepted(coupon::revoke_command(&request))
    });
}

#[test]
fn update_campaign() {
    let paths = proptest::collection::vec(
        prop_oneof![
            Just("name".to_string()),
            Just("ends_at".to_string()),
            Just("issue_limit".to_string()),
            Just("per_member_limit".to_string()),
            text(),
        ],
        0..5,
    );
    let campaign = (text(), text(), timestamp(), int32(), int32()).prop_map(
        |(campaign_id, name, ends_at, issue_limit, per_member_limit)| proto::Campaign {
            campaign_id,
            name,
            ends_at,
            issue_limit,
            per_member_limit,
            ..Default::default()
        },
    );
    let strategy = (text(), proptest::option::of(campaign), paths).prop_map(
        |(request_id, campaign, paths)| proto::UpdateCampaignRequest {
            request_id,
            campaign,
            update_mask: Some(prost_types::FieldMask { paths }),
        },
    );
    hostile("UpdateCampaign", strategy, |request| {
        accepted(coupon::update_campaign_command(&request).map(|(_, command)| command))
    });
}

fn hours_text() -> BoxedStrategy<String> {
    prop_oneof![
        4 => (0u32..26, 0u32..62).prop_map(|(h, m)| format!("{h:02}:{m:02}")),
        1 => text(),
    ]
    .boxed()
}

prop_compose! {
    fn geo_rule()(
        ids in (text(), text(), prop::collection::vec(text(), 0..3)),
        seconds in (int32(), int32(), int32()),
        max_accuracy_m in float(),
        active_hours in prop::collection::vec(
            (hours_text(), hours_text()).prop_map(|(start, end)| proto::ActiveHours { start, end }),
            0..4,
        ),
        days_of_week in prop::collection::vec(int32(), 0..9),
        period in (timestamp(), timestamp()),
    ) -> proto::GeoRule {
        proto::GeoRule {
            rule_id: ids.0,
            campaign_id: ids.1,
            store_ids: ids.2,
            min_dwell_seconds: seconds.0,
            max_accuracy_m,
            active_hours,
            days_of_week,
            cooldown_seconds: seconds.1,
            daily_cap_per_store: seconds.2,
            starts_at: period.0,
            ends_at: period.1,
        }
    }
}

#[test]
fn create_geo_rule() {
    let strategy = (text(), prop::option::of(geo_rule()))
        .prop_map(|(request_id, rule)| proto::CreateGeoRuleRequest { request_id, rule });
    hostile("CreateGeoRule", strategy, |request| {
        accepted(engagement::create_geo_rule_in(request))
    });
}

#[test]
fn report_location() {
    let strategy = (
        text(),
        member_ref(),
        lat_lng(),
        float(),
        timestamp(),
        text(),
    )
        .prop_map(
            |(request_id, member, position, accuracy_m, observed_at, device_id)| {
                proto::ReportLocationRequest {
                    request_id,
                    member,
                    latitude: position.latitude,
                    longitude: position.longitude,
                    accuracy_m,
                    observed_at,
                    device_id,
                }
            },
        );
    hostile("ReportLocation", strategy, |request| {
        accepted(engagement::report_location_in(request))
    });
}

#[test]
fn list_nearby_offers() {
    let strategy = (member_ref(), lat_lng(), float(), int32()).prop_map(
        |(member, position, radius_m, page_size)| proto::ListNearbyOffersRequest {
            member,
            latitude: position.latitude,
            longitude: position.longitude,
            radius_m: radius_m.abs() * 1_000.0,
            page_size,
        },
    );
    hostile("ListNearbyOffers", strategy, |request| {
        accepted(engagement::nearby_offers_in(request))
    });
}

#[test]
fn create_visit_rule() {
    let rule = (
        text(),
        text(),
        -1i32..4,
        int32(),
        int32(),
        int32(),
        prop::collection::vec(text(), 0..3),
    )
        .prop_map(
            |(rule_id, campaign_id, kind, visits, window_days, lapsed_days, store_ids)| {
                proto::VisitRule {
                    rule_id,
                    campaign_id,
                    kind,
                    visits,
                    window_days,
                    lapsed_days,
                    store_ids,
                }
            },
        );
    let strategy = (text(), prop::option::of(rule))
        .prop_map(|(request_id, rule)| proto::CreateVisitRuleRequest { request_id, rule });
    hostile("CreateVisitRule", strategy, |request| {
        accepted(engagement::create_visit_rule_in(request))
    });
}

/// An id that is valid far more often than `text()`: a request with many ids then still gets
/// through to the accepting side now and then.
fn mostly_valid_id() -> BoxedStrategy<String> {
    prop_oneof![8 => "[a-z0-9]{1,12}", 1 => text()].boxed()
}

fn receipt_text() -> BoxedStrategy<String> {
    prop_oneof![
        2 => Just(String::new()),
        3 => (1u32..60_000, 1u32..28, 0u32..24).prop_map(|(total, day, hour)| format!(
            "渋谷店\n2026年11月{day}日 {hour:02}:05\nコーヒー ¥{total}\n合計 ¥{total}\nお釣り ¥0"
        )),
        1 => text(),
        1 => (199usize..=202).prop_map(|n| "x\n".repeat(n)),
        1 => (16_380usize..=16_390).prop_map(|n| "合".repeat(n / 3)),
    ]
    .boxed()
}

fn image_hash() -> BoxedStrategy<String> {
    prop_oneof![
        4 => "[0-9a-fA-F]{64}",
        1 => "[0-9a-f]{63,65}",
        1 => text(),
    ]
    .boxed()
}

prop_compose! {
    fn receipt()(
        ids in (mostly_valid_id(), mostly_valid_id(), mostly_valid_id()),
        issued_at in timestamp(),
        total in prop_oneof![1 => Just(String::new()), 3 => money_text()],
        lines in prop_oneof![
            3 => Just(Vec::new()),
            3 => prop::collection::vec(line(), 1..4),
            1 => Just(vec![proto::LineItem::default(); 201]),
        ],
        image_sha256 in image_hash(),
        raw_text in receipt_text(),
    ) -> proto::Receipt {
        proto::Receipt {
            store_id: ids.0,
            register_id: ids.1,
            receipt_no: ids.2,
            issued_at,
            total,
            lines,
            image_sha256,
            raw_text,
        }
    }
}

#[test]
fn submit_receipt() {
    let strategy = (
        text(),
        member_ref(),
        prop::option::weighted(0.95, receipt()),
    )
        .prop_map(
            |(request_id, member, receipt)| proto::SubmitReceiptRequest {
                request_id,
                member,
                receipt,
            },
        );
    hostile("SubmitReceipt", strategy, |request| {
        accepted(receipts::submit_receipt_in(request))
    });
}

#[test]
fn create_receipt_rule() {
    let condition =
        (mostly_valid_id(), text(), 0i32..5).prop_map(|(sku, category, min_quantity)| {
            proto::ReceiptCondition {
                sku,
                category,
                min_quantity,
            }
        });
    let rates = prop_oneof![3 => Just("0.01".to_string()), 1 => money_text()];
    let rule = (
        (
            mostly_valid_id(),
            prop::collection::vec(mostly_valid_id(), 0..3),
            mostly_valid_id(),
        ),
        (rates, money_text(), money_text()),
        prop::collection::vec(condition, 0..3),
        prop_oneof![3 => 0i32..30, 1 => int32()],
        (timestamp(), timestamp()),
    )
        .prop_map(
            |((rule_id, store_ids, campaign_id), money, conditions, max_age_days, period)| {
                proto::ReceiptRule {
                    rule_id,
                    store_ids,
                    earn_rate: money.0,
                    campaign_id,
                    min_total: money.1,
                    conditions,
                    max_age_days,
                    review_threshold: money.2,
                    starts_at: period.0,
                    ends_at: period.1,
                }
            },
        );
    let strategy = (text(), prop::option::of(rule))
        .prop_map(|(request_id, rule)| proto::CreateReceiptRuleRequest { request_id, rule });
    hostile("CreateReceiptRule", strategy, |request| {
        accepted(receipts::create_receipt_rule_in(request))
    });
}

#[test]
fn review_receipt() {
    let strategy = (text(), text(), any::<bool>(), text()).prop_map(
        |(request_id, receipt_id, approve, note)| proto::ReviewReceiptRequest {
            request_id,
            receipt_id,
            approve,
            note,
        },
    );
    hostile("ReviewReceipt", strategy, |request| {
        accepted(receipts::review_receipt_in(request))
    });
}

#[test]
fn list_receipts() {
    let token = prop_oneof![3 => Just(String::new()), 1 => text()];
    let strategy = (member_ref(), -1i32..5, 0i32..600, token).prop_map(
        |(member, status, page_size, page_token)| proto::ListReceiptsRequest {
            member,
            status,
            page_size,
            page_token,
        },
    );
    hostile("ListReceipts", strategy, |request| {
        accepted(receipts::list_receipts_in(request))
    });
}
