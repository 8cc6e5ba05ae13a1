//! `omo.v1.ProgramService`: the program settings (admin).
//!
//! UpdateProgram replaces every field, or with an `update_mask` only the named ones: the request's
//! fields are validated into a [`ProgramPatch`] first, then applied to the current settings.

use std::{collections::BTreeMap, sync::Arc};

use rust_decimal::Decimal;
use tonic::{Request, Response, Status};

use super::{
    auth::caller_for,
    convert::{
        Violations, decimal, decimal_out, money, optional_request_id, positive_money, time_zone,
    },
    reply::execute,
};
use crate::{
    domain::{
        auth::Operation,
        command::SettingsCommand,
        model::{Channel, Program, ProgramPatch},
        tier::{DEFAULT_TIER_WINDOW_MONTHS, MAX_TIERS, Tier},
    },
    engine::Engine,
    proto::{self, program_service_server::ProgramService},
};

/// The fields of `Program`, as `update_mask` paths.
const FIELDS: [&str; 17] = [
    "currency_code",
    "point_value",
    "earn_rate",
    "channel_earn_rates",
    "point_expiry_days",
    "ec_pending_days",
    "hold_ttl_seconds",
    "max_receipts_per_day",
    "max_points_per_order",
    "max_offline_age_days",
    "time_zone",
    "max_points_per_receipt",
    "receipt_review_threshold",
    "expiry_reminder_days",
    "nearby_offer_radius_m",
    "tiers",
    "tier_window_months",
];
/// Largest tier earn multiplier accepted.
const MAX_MULTIPLIER: Decimal = Decimal::from_parts(100, 0, 0, false, 0);
/// Largest per-order earn cap accepted (the most points of one adjustment).
const MAX_EARN_CAP: i64 = 1_000_000_000_000;
/// Largest point value and earn rate accepted.
const MAX_RATE: Decimal = Decimal::from_parts(1000, 0, 0, false, 0);

pub struct ProgramApi {
    engine: Arc<Engine>,
}

impl ProgramApi {
    pub fn new(engine: Arc<Engine>) -> Self {
        Self { engine }
    }
}

#[tonic::async_trait]
impl ProgramService for ProgramApi {
    async fn get_program(
        &self,
        request: Request<proto::GetProgramRequest>,
    ) -> Result<Response<proto::GetProgramResponse>, Status> {
        let caller = caller_for(&self.engine, &request, Operation::ManageProgram).await?;
        let program = self.engine.get_program(&caller).await?;
        Ok(Response::new(proto::GetProgramResponse {
            program: Some(program_out(program)),
        }))
    }

    async fn update_program(
        &self,
        request: Request<proto::UpdateProgramRequest>,
    ) -> Result<Response<proto::UpdateProgramResponse>, Status> {
        let caller = caller_for(&self.engine, &request, Operation::ManageProgram).await?;
        let request = request.into_inner();
        let request_id = Some(request.request_id.clone()).filter(|id| !id.is_empty());
        let (patch, partial) = patch_in(request)?;
        let command = SettingsCommand::UpdateProgram {
            patch,
            replace: !partial,
        };
        let program = execute(&self.engine, &caller, request_id.as_deref(), command).await?;
        Ok(Response::new(proto::UpdateProgramResponse {
            program: Some(program_out(program)),
        }))
    }
}

/// Validates the fields the request updates. Returns the patch and whether it is partial (an
/// `update_mask` was given), in which case it applies to the current settings.
pub(super) fn patch_in(
    request: proto::UpdateProgramRequest,
) -> Result<(ProgramPatch, bool), Status> {
    let mut v = Violations::new();
    optional_request_id(&mut v, &request.request_id);
    let Some(program) = request.program else {
        v.push("program", "is required");
        return Err(v.into_status());
    };
    let paths = request
        .update_mask
        .map(|mask| mask.paths)
        .unwrap_or_default();
    for path in &paths {
        if !FIELDS.contains(&path.as_str()) {
            v.push(
                "update_mask",
                format!("unknown field {path:?}; known: {}", FIELDS.join(", ")),
            );
        }
    }
    let partial = !paths.is_empty();
    let selected = |field: &str| !partial || paths.iter().any(|p| p == field);
    let mut patch = ProgramPatch::default();
    if selected("currency_code") {
        patch.currency_code = currency_code(&mut v, &program.currency_code);
    }
    if selected("point_value") {
        patch.point_value = decimal(
            &mut v,
            "program.point_value",
            &program.point_value,
            MAX_RATE,
        );
        if patch
            .point_value
            .is_some_and(|value| value < Decimal::new(1, 4))
        {
            v.push("program.point_value", "must be at least 0.0001");
        }
    }
    if selected("earn_rate") {
        patch.earn_rate = decimal(&mut v, "program.earn_rate", &program.earn_rate, MAX_RATE);
    }
    if selected("channel_earn_rates") {
        patch.channel_earn_rates = Some(channel_rates(&mut v, &program.channel_earn_rates));
    }
    let mut days = |field: &'static str, value: i32, min: i32, max: i32| {
        if (min..=max).contains(&value) {
            Some(value)
        } else {
            v.push(
                format!("program.{field}"),
                format!("must be between {min} and {max}"),
            );
            None
        }
    };
    if selected("point_expiry_days") {
        patch.point_expiry_days = days("point_expiry_days", program.point_expiry_days, 0, 3650);
    }
    if selected("ec_pending_days") {
        patch.ec_pending_days = days("ec_pending_days", program.ec_pending_days, 0, 365);
    }
    if selected("hold_ttl_seconds") {
        patch.hold_ttl_seconds = days("hold_ttl_seconds", program.hold_ttl_seconds, 1, 604_800);
    }
    if selected("max_receipts_per_day") {
        patch.max_receipts_per_day = days(
            "max_receipts_per_day",
            program.max_receipts_per_day,
            0,
            1000,
        );
    }
    if selected("expiry_reminder_days") {
        patch.expiry_reminder_days =
            days("expiry_reminder_days", program.expiry_reminder_days, 0, 365);
    }
    if selected("nearby_offer_radius_m") {
        patch.nearby_offer_radius_m = days(
            "nearby_offer_radius_m",
            program.nearby_offer_radius_m,
            0,
            10_000,
        );
    }
    if selected("tier_window_months") {
        // 0 (a client that never heard of tiers replacing every field) is the default.
        let months = match program.tier_window_months {
            0 => DEFAULT_TIER_WINDOW_MONTHS,
            months => months,
        };
        patch.tier_window_months = days("tier_window_months", months, 1, 120);
    }
    if selected("max_offline_age_days") {
        patch.max_offline_age_days = days(
            "max_offline_age_days",
            program.max_offline_age_days,
            0,
            3650,
        );
    }
    if selected("max_points_per_order") {
        if (0..=MAX_EARN_CAP).contains(&program.max_points_per_order) {
            patch.max_points_per_order = Some(program.max_points_per_order);
        } else {
            v.push(
                "program.max_points_per_order",
                format!("must be between 0 and {MAX_EARN_CAP}"),
            );
        }
    }
    if selected("time_zone") {
        patch.time_zone = time_zone(&mut v, "program.time_zone", &program.time_zone);
    }
    if selected("max_points_per_receipt") {
        if (0..=MAX_EARN_CAP).contains(&program.max_points_per_receipt) {
            patch.max_points_per_receipt = Some(program.max_points_per_receipt);
        } else {
            v.push(
                "program.max_points_per_receipt",
                format!("must be between 0 and {MAX_EARN_CAP}"),
            );
        }
    }
    if selected("receipt_review_threshold") {
        let threshold = &program.receipt_review_threshold;
        patch.receipt_review_threshold = if threshold.is_empty() {
            Some(None)
        } else {
            positive_money(&mut v, "program.receipt_review_threshold", threshold).map(Some)
        };
    }
    if selected("tiers") {
        patch.tiers = tiers_in(&mut v, &program.tiers);
    }
    v.finish()?;
    Ok((patch, partial))
}

/// The tiers: at most `MAX_TIERS`, ids unique of `[a-z0-9_-]` (1-64), min_spend ≥ 0 strictly
/// increasing in the order given, earn_multiplier a decimal ≥ 1; one violation per bad field.
fn tiers_in(v: &mut Violations, tiers: &[proto::Tier]) -> Option<Vec<Tier>> {
    if tiers.len() > MAX_TIERS {
        v.push("program.tiers", format!("at most {MAX_TIERS} tiers"));
        return None;
    }
    let mut out = Vec::with_capacity(tiers.len());
    let mut ok = true;
    for (index, tier) in tiers.iter().enumerate() {
        let field = |name: &str| format!("program.tiers[{index}].{name}");
        let id = &tier.tier_id;
        let valid_id = (1..=64).contains(&id.len())
            && id
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-');
        if !valid_id {
            v.push(field("tier_id"), "must be 1-64 characters of [a-z0-9_-]");
            ok = false;
        } else if tiers[..index].iter().any(|other| &other.tier_id == id) {
            v.push(field("tier_id"), format!("duplicate tier id {id:?}"));
            ok = false;
        }
        if tier.name.chars().count() > 200 {
            v.push(field("name"), "at most 200 characters");
            ok = false;
        }
        let min_spend = money(v, &field("min_spend"), &tier.min_spend);
        if let (Some(min), Some(previous)) = (min_spend, out.last().map(|t: &Tier| t.min_spend))
            && min <= previous
        {
            v.push(
                field("min_spend"),
                format!("must be greater than the tier before ({previous})"),
            );
            ok = false;
        }
        let multiplier = decimal(
            v,
            &field("earn_multiplier"),
            &tier.earn_multiplier,
            MAX_MULTIPLIER,
        );
        if multiplier.is_some_and(|m| m < Decimal::ONE) {
            v.push(field("earn_multiplier"), "must be at least 1");
            ok = false;
        }
        match (min_spend, multiplier) {
            (Some(min_spend), Some(earn_multiplier)) => out.push(Tier {
                tier_id: id.clone(),
                name: tier.name.clone(),
                min_spend,
                earn_multiplier,
            }),
            _ => ok = false,
        }
    }
    ok.then_some(out)
}

/// ISO 4217: three upper-case letters.
fn currency_code(v: &mut Violations, value: &str) -> Option<String> {
    if value.len() == 3 && value.chars().all(|c| c.is_ascii_uppercase()) {
        Some(value.to_string())
    } else {
        v.push(
            "program.currency_code",
            "must be an ISO 4217 code of 3 upper-case letters, such as \"JPY\"",
        );
        None
    }
}

/// Per-channel earn rates: keys "ec", "store", "app"; values decimals ≥ 0.
fn channel_rates(
    v: &mut Violations,
    rates: &std::collections::HashMap<String, String>,
) -> BTreeMap<Channel, Decimal> {
    let mut keys: Vec<&String> = rates.keys().collect();
    keys.sort();
    let mut out = BTreeMap::new();
    for key in keys {
        let field = format!("program.channel_earn_rates[{key:?}]");
        match Channel::parse(key) {
            None => v.push(field, "key must be \"ec\", \"store\" or \"app\""),
            Some(channel) => {
                if let Some(rate) = decimal(v, &field, &rates[key], MAX_RATE) {
                    out.insert(channel, rate);
                }
            }
        }
    }
    out
}

pub fn program_out(program: Program) -> proto::Program {
    proto::Program {
        currency_code: program.currency_code,
        point_value: decimal_out(program.point_value),
        earn_rate: decimal_out(program.earn_rate),
        channel_earn_rates: program
            .channel_earn_rates
            .into_iter()
            .map(|(channel, rate)| (channel.as_str().to_string(), decimal_out(rate)))
            .collect(),
        point_expiry_days: program.point_expiry_days,
        ec_pending_days: program.ec_pending_days,
        hold_ttl_seconds: program.hold_ttl_seconds,
        max_receipts_per_day: program.max_receipts_per_day,
        max_points_per_order: program.max_points_per_order,
        max_offline_age_days: program.max_offline_age_days,
        time_zone: program.time_zone,
        max_points_per_receipt: program.max_points_per_receipt,
        expiry_reminder_days: program.expiry_reminder_days,
        nearby_offer_radius_m: program.nearby_offer_radius_m,
        receipt_review_threshold: program
            .receipt_review_threshold
            .map(|threshold| threshold.to_string())
            .unwrap_or_default(),
        tiers: program
            .tiers
            .into_iter()
            .map(|tier| proto::Tier {
                tier_id: tier.tier_id,
                name: tier.name,
                min_spend: tier.min_spend.to_string(),
                earn_multiplier: decimal_out(tier.earn_multiplier),
            })
            .collect(),
        tier_window_months: program.tier_window_months,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::grpc::status::violated_fields;

    fn request(program: proto::Program, paths: &[&str]) -> proto::UpdateProgramRequest {
        proto::UpdateProgramRequest {
            request_id: String::new(),
            program: Some(program),
            update_mask: Some(prost_types::FieldMask {
                paths: paths.iter().map(|p| p.to_string()).collect(),
            }),
        }
    }

    #[test]
    fn full_replace_round_trips_the_defaults() {
        let out = program_out(Program::default());
        let (patch, partial) = patch_in(request(out, &[])).expect("valid");
        assert!(!partial);
        let mut program = Program {
            earn_rate: Decimal::ONE,
            ..Program::default()
        };
        patch.apply(&mut program);
        assert_eq!(program, Program::default());
    }

    #[test]
    fn a_mask_updates_only_the_named_fields() {
        let given = proto::Program {
            earn_rate: "0.05".into(),
            ..proto::Program::default()
        };
        let (patch, partial) = patch_in(request(given, &["earn_rate"])).expect("valid");
        assert!(partial);
        let mut program = Program::default();
        patch.apply(&mut program);
        assert_eq!(program.earn_rate, Decimal::new(5, 2));
        assert_eq!(program.currency_code, "JPY");
    }

    #[test]
    fn the_receipt_caps_patch_and_an_empty_threshold_clears() {
        let given = proto::Program {
            max_points_per_receipt: 500,
            receipt_review_threshold: "20000".into(),
            ..proto::Program::default()
        };
        let paths = ["max_points_per_receipt", "receipt_review_threshold"];
        let (patch, _) = patch_in(request(given, &paths)).expect("valid");
        let mut program = Program::default();
        patch.apply(&mut program);
        assert_eq!(program.max_points_per_receipt, 500);
        assert_eq!(
            program.receipt_review_threshold.map(|t| t.to_string()),
            Some("20000".to_string())
        );
        let cleared = proto::Program::default();
        let (patch, _) = patch_in(request(cleared, &["receipt_review_threshold"])).expect("valid");
        patch.apply(&mut program);
        assert_eq!(program.receipt_review_threshold, None);
        assert_eq!(program.max_points_per_receipt, 500, "not in the mask");
        let zero = proto::Program {
            receipt_review_threshold: "0".into(),
            ..proto::Program::default()
        };
        let status = patch_in(request(zero, &["receipt_review_threshold"])).expect_err("zero");
        assert_eq!(
            violated_fields(&status),
            ["program.receipt_review_threshold"]
        );
    }

    #[test]
    fn tiers_are_validated_field_by_field() {
        let tier = |id: &str, min: &str, mult: &str| proto::Tier {
            tier_id: id.into(),
            name: id.into(),
            min_spend: min.into(),
            earn_multiplier: mult.into(),
        };
        let good = proto::Program {
            tiers: vec![tier("silver", "10000", "1.5"), tier("gold", "50000", "2")],
            tier_window_months: 12,
            ..proto::Program::default()
        };
        let (patch, _) = patch_in(request(good, &["tiers", "tier_window_months"])).expect("ok");
        let mut program = Program::default();
        patch.apply(&mut program);
        assert_eq!(program.tiers.len(), 2);
        assert_eq!(program.tiers[0].earn_multiplier, Decimal::new(15, 1));
        assert_eq!(program_out(program.clone()).tiers[1].tier_id, "gold");
        let bad = proto::Program {
            tiers: vec![
                tier("Silver", "10000", "1.5"),
                tier("gold", "5000", "0.5"),
                tier("gold", "-1", "x"),
            ],
            tier_window_months: -1,
            ..proto::Program::default()
        };
        let status = patch_in(request(bad, &["tiers", "tier_window_months"])).expect_err("bad");
        assert_eq!(
            violated_fields(&status),
            [
                "program.tier_window_months",
                "program.tiers[0].tier_id",
                "program.tiers[1].min_spend",
                "program.tiers[1].earn_multiplier",
                "program.tiers[2].tier_id",
                "program.tiers[2].min_spend",
                "program.tiers[2].earn_multiplier"
            ]
        );
    }

    #[test]
    fn bad_fields_and_unknown_paths_are_violations() {
        let mut given = proto::Program {
            currency_code: "jpy".into(),
            point_value: "0".into(),
            earn_rate: "-1".into(),
            hold_ttl_seconds: 0,
            max_points_per_receipt: -1,
            receipt_review_threshold: "-5".into(),
            ..proto::Program::default()
        };
        given.channel_earn_rates.insert("web".into(), "0.1".into());
        let status = patch_in(request(given, &[])).expect_err("invalid");
        let fields = violated_fields(&status);
        assert_eq!(
            fields,
            [
                "program.currency_code",
                "program.point_value",
                "program.earn_rate",
                "program.channel_earn_rates[\"web\"]",
                "program.hold_ttl_seconds",
                "program.max_points_per_receipt",
                "program.receipt_review_threshold"
            ]
        );
        let status =
            patch_in(request(proto::Program::default(), &["nope"])).expect_err("unknown path");
        assert_eq!(status.code(), tonic::Code::InvalidArgument);
    }
}
