//! `omo.v1.CouponService`: campaigns and the members' coupon wallets.

use std::{collections::HashSet, sync::Arc};

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use tonic::{Request, Response, Status};

use super::{
    auth::caller_for,
    convert::{
        MAX_LINE_TEXT_CHARS, Violations, channel_out, channels, check_id, check_request_id,
        check_text, coupon_code, decimal, decimal_out, member_ref, money_or_zero, optional_instant,
        optional_request_id, optional_timestamp, parse_field, path, positive_money, required_id,
        timestamp,
    },
    paging::{next_page_token, page_size, page_token},
    reply::execute,
};
use crate::{
    domain::{
        auth::Operation,
        command::CouponCommand,
        coupon::{
            Campaign, CampaignPatch, Coupon, CouponState, Discount, Eligibility, IssueOnCapture,
            Variant,
        },
        ids::normalize_code,
    },
    engine::Engine,
    proto::{self, coupon_service_server::CouponService},
};

/// Longest campaign name, in characters.
const MAX_NAME_CHARS: usize = 200;
/// Most stores a campaign may be limited to.
const MAX_STORE_IDS: usize = 1_000;
/// Most skus, and most categories, a campaign may be scoped to.
const MAX_ELIGIBLE_ENTRIES: usize = 1_000;
/// Most A/B variants of a campaign.
const MAX_VARIANTS: usize = 100;
/// Longest coupon validity, in days (ten years).
const MAX_VALIDITY_DAYS: i32 = 3650;

pub struct CouponApi {
    engine: Arc<Engine>,
}

impl CouponApi {
    pub fn new(engine: Arc<Engine>) -> Self {
        Self { engine }
    }
}

#[tonic::async_trait]
impl CouponService for CouponApi {
    async fn create_campaign(
        &self,
        request: Request<proto::CreateCampaignRequest>,
    ) -> Result<Response<proto::CreateCampaignResponse>, Status> {
        let caller = caller_for(&self.engine, &request, Operation::ManageCampaigns).await?;
        let request = request.into_inner();
        let mut v = Violations::new();
        let request_id = optional_request_id(&mut v, &request.request_id);
        let campaign = campaign_in(v, request.campaign)?;
        let command = CouponCommand::CreateCampaign(campaign);
        let campaign = execute(&self.engine, &caller, request_id.as_deref(), command).await?;
        Ok(Response::new(proto::CreateCampaignResponse {
            campaign: Some(campaign_out(campaign)),
        }))
    }

    async fn get_campaign(
        &self,
        request: Request<proto::GetCampaignRequest>,
    ) -> Result<Response<proto::GetCampaignResponse>, Status> {
        let caller = caller_for(&self.engine, &request, Operation::ManageCampaigns).await?;
        let campaign_id = request.into_inner().campaign_id;
        required_id("campaign_id", &campaign_id)?;
        let campaign = self.engine.get_campaign(&caller, &campaign_id).await?;
        Ok(Response::new(proto::GetCampaignResponse {
            campaign: Some(campaign_out(campaign)),
        }))
    }

    async fn list_campaigns(
        &self,
        request: Request<proto::ListCampaignsRequest>,
    ) -> Result<Response<proto::ListCampaignsResponse>, Status> {
        let caller = caller_for(&self.engine, &request, Operation::ManageCampaigns).await?;
        let request = request.into_inner();
        let mut v = Violations::new();
        let size = page_size(&mut v, request.page_size);
        let after = page_token(&mut v, "ListCampaigns", &request.page_token);
        let (size, after) = v.build(|| Some((size?, after?)))?;
        let page = self
            .engine
            .list_campaigns(&caller, after.as_ref(), size)
            .await?;
        Ok(Response::new(proto::ListCampaignsResponse {
            campaigns: page.items.into_iter().map(campaign_out).collect(),
            next_page_token: next_page_token(page.next),
        }))
    }

    async fn issue_coupon(
        &self,
        request: Request<proto::IssueCouponRequest>,
    ) -> Result<Response<proto::IssueCouponResponse>, Status> {
        let caller = caller_for(&self.engine, &request, Operation::IssueCoupon).await?;
        let request = request.into_inner();
        let command = issue_command(&request)?;
        let coupon = execute(&self.engine, &caller, Some(&request.request_id), command).await?;
        Ok(Response::new(proto::IssueCouponResponse {
            coupon: Some(coupon_out(coupon)),
        }))
    }

    async fn list_coupons(
        &self,
        request: Request<proto::ListCouponsRequest>,
    ) -> Result<Response<proto::ListCouponsResponse>, Status> {
        let caller = caller_for(&self.engine, &request, Operation::ReadCoupons).await?;
        let request = request.into_inner();
        let mut v = Violations::new();
        let member = member_ref(&mut v, "member", request.member);
        let size = page_size(&mut v, request.page_size);
        let after = page_token(&mut v, "ListCoupons", &request.page_token);
        let (member, size, after) = v.build(|| Some((member?, size?, after?)))?;
        let page = self
            .engine
            .list_coupons(
                &caller,
                &member,
                request.include_inactive,
                after.as_ref(),
                size,
            )
            .await?;
        Ok(Response::new(proto::ListCouponsResponse {
            coupons: page.items.into_iter().map(coupon_out).collect(),
            next_page_token: next_page_token(page.next),
        }))
    }

    async fn revoke_coupon(
        &self,
        request: Request<proto::RevokeCouponRequest>,
    ) -> Result<Response<proto::RevokeCouponResponse>, Status> {
        let caller = caller_for(&self.engine, &request, Operation::RevokeCoupon).await?;
        let request = request.into_inner();
        let command = revoke_command(&request)?;
        let coupon = execute(&self.engine, &caller, Some(&request.request_id), command).await?;
        Ok(Response::new(proto::RevokeCouponResponse {
            coupon: Some(coupon_out(coupon)),
        }))
    }

    async fn update_campaign(
        &self,
        request: Request<proto::UpdateCampaignRequest>,
    ) -> Result<Response<proto::UpdateCampaignResponse>, Status> {
        let caller = caller_for(&self.engine, &request, Operation::ManageCampaigns).await?;
        let (request_id, command) = update_campaign_command(request.get_ref())?;
        let campaign = execute(&self.engine, &caller, request_id.as_deref(), command).await?;
        Ok(Response::new(proto::UpdateCampaignResponse {
            campaign: Some(campaign_out(campaign)),
        }))
    }

    async fn get_coupon(
        &self,
        request: Request<proto::GetCouponRequest>,
    ) -> Result<Response<proto::GetCouponResponse>, Status> {
        let caller = caller_for(&self.engine, &request, Operation::ReadCoupons).await?;
        let code = parse_field(|v| coupon_code(v, "code", &request.into_inner().code))?;
        let coupon = self.engine.get_coupon(&caller, &code).await?;
        Ok(Response::new(proto::GetCouponResponse {
            coupon: Some(coupon_out(coupon)),
        }))
    }
}

/// Longest reason of a revocation, in characters.
const MAX_REASON_CHARS: usize = 500;
/// The campaign fields UpdateCampaign may change.
const UPDATABLE_PATHS: [&str; 4] = ["name", "ends_at", "issue_limit", "per_member_limit"];

pub(crate) fn revoke_command(
    request: &proto::RevokeCouponRequest,
) -> Result<CouponCommand, Status> {
    let mut v = Violations::new();
    check_request_id(&mut v, &request.request_id);
    let code = coupon_code(&mut v, "code", &request.code);
    check_text(&mut v, "reason", &request.reason, 0, MAX_REASON_CHARS);
    v.build(|| {
        Some(CouponCommand::RevokeCoupon {
            code: code?,
            reason: request.reason.clone(),
        })
    })
}

/// The request's masked fields, each checked as CreateCampaign checks it; fields left out
/// of the mask are neither checked nor changed.
pub(crate) fn update_campaign_command(
    request: &proto::UpdateCampaignRequest,
) -> Result<(Option<String>, CouponCommand), Status> {
    let mut v = Violations::new();
    let request_id = optional_request_id(&mut v, &request.request_id);
    let paths = request
        .update_mask
        .as_ref()
        .map(|mask| mask.paths.clone())
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
    let Some(c) = &request.campaign else {
        v.push("campaign", "is required");
        return Err(v.into_status());
    };
    check_id(&mut v, "campaign.campaign_id", &c.campaign_id);
    let masked = |field: &str| paths.iter().any(|path| path == field);
    let mut patch = CampaignPatch {
        campaign_id: c.campaign_id.clone(),
        name: None,
        ends_at: None,
        issue_limit: None,
        per_member_limit: None,
    };
    if masked("name") && check_text(&mut v, "campaign.name", &c.name, 1, MAX_NAME_CHARS) {
        patch.name = Some(c.name.clone());
    }
    if masked("ends_at") {
        patch.ends_at = optional_instant(&mut v, "campaign.ends_at", c.ends_at.as_ref());
    }
    for (field, value, slot) in [
        ("issue_limit", c.issue_limit, &mut patch.issue_limit),
        (
            "per_member_limit",
            c.per_member_limit,
            &mut patch.per_member_limit,
        ),
    ] {
        if !masked(field) {
            continue;
        }
        if value < 0 {
            v.push(path("campaign", field), "must be 0 (no limit) or more");
        } else {
            *slot = Some(value);
        }
    }
    v.finish()?;
    Ok((request_id, CouponCommand::UpdateCampaign(patch)))
}

pub(super) fn issue_command(request: &proto::IssueCouponRequest) -> Result<CouponCommand, Status> {
    let mut v = Violations::new();
    check_request_id(&mut v, &request.request_id);
    check_id(&mut v, "campaign_id", &request.campaign_id);
    let member = member_ref(&mut v, "member", request.member.clone());
    v.build(|| {
        Some(CouponCommand::IssueCoupon {
            campaign_id: request.campaign_id.clone(),
            member: member?,
        })
    })
}

/// A campaign to create. `created_at` is the engine's to set (it owns the clock).
pub(super) fn campaign_in(
    mut v: Violations,
    campaign: Option<proto::Campaign>,
) -> Result<Campaign, Status> {
    let Some(c) = campaign else {
        v.push("campaign", "is required");
        return Err(v.into_status());
    };
    check_id(&mut v, "campaign.campaign_id", &c.campaign_id);
    check_text(&mut v, "campaign.name", &c.name, 1, MAX_NAME_CHARS);
    let discount = discount_in(
        &mut v,
        "campaign",
        c.discount.as_ref().map(DiscountIn::from),
    );
    let min_spend = money_or_zero(&mut v, "campaign.min_spend", &c.min_spend);
    let channels = channels(&mut v, "campaign.channels", &c.channels);
    store_ids(&mut v, &c.store_ids);
    let starts_at = optional_instant(&mut v, "campaign.starts_at", c.starts_at.as_ref());
    let ends_at = optional_instant(&mut v, "campaign.ends_at", c.ends_at.as_ref());
    if let (Some(Some(start)), Some(Some(end))) = (starts_at, ends_at)
        && end <= start
    {
        v.push("campaign.ends_at", "must be after starts_at");
    }
    let mut count = |field: &str, value: i32, max: i32| {
        if !(0..=max).contains(&value) {
            v.push(
                path("campaign", field),
                format!("must be between 0 and {max}"),
            );
        }
    };
    count("validity_days", c.validity_days, MAX_VALIDITY_DAYS);
    count("per_member_limit", c.per_member_limit, i32::MAX);
    count("issue_limit", c.issue_limit, i32::MAX);
    let public_code = public_code(&mut v, &c.public_code);
    let issue_on_capture = c
        .issue_on_capture
        .map(|rule| issue_on_capture_in(&mut v, &rule))
        .map_or(Some(None), |parsed| parsed.map(Some));
    let variants = variants_in(&mut v, &c.variants);
    check_eligible(&mut v, c.eligible.as_ref());
    v.build(|| {
        Some(Campaign {
            campaign_id: c.campaign_id,
            name: c.name,
            discount: discount?,
            min_spend: min_spend?,
            channels: channels?,
            store_ids: c.store_ids,
            starts_at: starts_at?,
            ends_at: ends_at?,
            validity_days: c.validity_days,
            per_member_limit: c.per_member_limit,
            issue_limit: c.issue_limit,
            stackable: c.stackable,
            public_code: public_code?,
            issue_on_capture: issue_on_capture?,
            variants: variants?,
            eligible: c
                .eligible
                .map_or_else(Eligibility::default, |e| Eligibility {
                    skus: e.skus,
                    categories: e.categories,
                }),
            created_at: DateTime::<Utc>::UNIX_EPOCH,
            // CreateCampaign splits the stock of a limited campaign.
            stock_parts: 0,
        })
    })
}

/// The discount oneof of a campaign or a variant (two generated types, one shape).
enum DiscountIn<'a> {
    AmountOff(&'a str),
    PercentOff(&'a proto::PercentOff),
}

impl<'a> From<&'a proto::campaign::Discount> for DiscountIn<'a> {
    fn from(discount: &'a proto::campaign::Discount) -> Self {
        match discount {
            proto::campaign::Discount::AmountOff(amount) => DiscountIn::AmountOff(amount),
            proto::campaign::Discount::PercentOff(percent) => DiscountIn::PercentOff(percent),
        }
    }
}

impl<'a> From<&'a proto::campaign_variant::Discount> for DiscountIn<'a> {
    fn from(discount: &'a proto::campaign_variant::Discount) -> Self {
        match discount {
            proto::campaign_variant::Discount::AmountOff(amount) => DiscountIn::AmountOff(amount),
            proto::campaign_variant::Discount::PercentOff(percent) => {
                DiscountIn::PercentOff(percent)
            }
        }
    }
}

/// Exactly one of `amount_off` (> 0) and `percent_off` (percent in (0, 100], optional cap).
fn discount_in(
    v: &mut Violations,
    prefix: &str,
    discount: Option<DiscountIn<'_>>,
) -> Option<Discount> {
    match discount {
        None => {
            v.push(path(prefix, "discount"), "set amount_off or percent_off");
            None
        }
        Some(DiscountIn::AmountOff(amount)) => {
            positive_money(v, &path(prefix, "amount_off"), amount).map(Discount::AmountOff)
        }
        Some(DiscountIn::PercentOff(percent_off)) => {
            let field = path(prefix, "percent_off");
            let percent_field = path(&field, "percent");
            let percent = decimal(
                v,
                &percent_field,
                &percent_off.percent,
                Decimal::ONE_HUNDRED,
            );
            if percent.is_some_and(|p| p.is_zero()) {
                v.push(percent_field, "must be greater than 0");
            }
            let max_discount = if percent_off.max_discount.is_empty() {
                Some(None)
            } else {
                positive_money(v, &path(&field, "max_discount"), &percent_off.max_discount)
                    .map(Some)
            };
            Some(Discount::PercentOff {
                percent: percent.filter(|p| !p.is_zero())?,
                max_discount: max_discount?,
            })
        }
    }
}

fn store_ids(v: &mut Violations, store_ids: &[String]) {
    if store_ids.len() > MAX_STORE_IDS {
        v.push(
            "campaign.store_ids",
            format!("at most {MAX_STORE_IDS} stores"),
        );
        return;
    }
    for (i, store_id) in store_ids.iter().enumerate() {
        check_id(v, &format!("campaign.store_ids[{i}]"), store_id);
    }
}

/// The items a campaign is scoped to: each sku and category a non-empty string that a basket
/// line could carry (empty = the whole basket, so an empty entry would only be a mistake).
fn check_eligible(v: &mut Violations, eligible: Option<&proto::CampaignEligibility>) {
    let Some(eligible) = eligible else {
        return;
    };
    for (name, values) in [
        ("skus", &eligible.skus),
        ("categories", &eligible.categories),
    ] {
        let field = path("campaign.eligible", name);
        if values.len() > MAX_ELIGIBLE_ENTRIES {
            v.push(field, format!("at most {MAX_ELIGIBLE_ENTRIES} entries"));
            continue;
        }
        for (i, value) in values.iter().enumerate() {
            check_text(v, &format!("{field}[{i}]"), value, 1, MAX_LINE_TEXT_CHARS);
        }
    }
}

/// A shared code: empty (none), or 4-32 letters and digits after normalising.
fn public_code(v: &mut Violations, value: &str) -> Option<Option<String>> {
    if value.is_empty() {
        return Some(None);
    }
    let code = normalize_code(value);
    if (4..=32).contains(&code.chars().count()) && code.chars().all(|c| c.is_ascii_alphanumeric()) {
        Some(Some(code))
    } else {
        v.push(
            "campaign.public_code",
            "must be 4-32 letters and digits (dashes and spaces are ignored)",
        );
        None
    }
}

fn issue_on_capture_in(v: &mut Violations, rule: &proto::IssueOnCapture) -> Option<IssueOnCapture> {
    let min_total = money_or_zero(v, "campaign.issue_on_capture.min_total", &rule.min_total);
    let channels = channels(v, "campaign.issue_on_capture.channels", &rule.channels);
    Some(IssueOnCapture {
        min_total: min_total?,
        channels: channels?,
    })
}

/// A/B variants: unique ids, weight ≥ 1, each with its own discount.
fn variants_in(v: &mut Violations, variants: &[proto::CampaignVariant]) -> Option<Vec<Variant>> {
    if variants.len() > MAX_VARIANTS {
        v.push(
            "campaign.variants",
            format!("at most {MAX_VARIANTS} variants"),
        );
        return None;
    }
    let mut seen = HashSet::new();
    let mut out = Some(Vec::with_capacity(variants.len()));
    for (i, variant) in variants.iter().enumerate() {
        let field = format!("campaign.variants[{i}]");
        let id_field = path(&field, "variant_id");
        let mut ok = check_id(v, &id_field, &variant.variant_id);
        if ok && !seen.insert(variant.variant_id.as_str()) {
            v.push(
                id_field,
                format!("duplicate variant_id {:?}", variant.variant_id),
            );
            ok = false;
        }
        let weight = u32::try_from(variant.weight).ok().filter(|w| *w >= 1);
        if weight.is_none() {
            v.push(path(&field, "weight"), "must be at least 1");
        }
        let discount = discount_in(v, &field, variant.discount.as_ref().map(DiscountIn::from));
        match (ok, weight, discount, out.as_mut()) {
            (true, Some(weight), Some(discount), Some(list)) => list.push(Variant {
                variant_id: variant.variant_id.clone(),
                weight,
                discount,
            }),
            _ => out = None,
        }
    }
    out
}

pub fn campaign_out(campaign: Campaign) -> proto::Campaign {
    proto::Campaign {
        campaign_id: campaign.campaign_id,
        name: campaign.name,
        discount: Some(match discount_out(campaign.discount) {
            DiscountOut::AmountOff(amount) => proto::campaign::Discount::AmountOff(amount),
            DiscountOut::PercentOff(percent) => proto::campaign::Discount::PercentOff(percent),
        }),
        min_spend: campaign.min_spend.to_string(),
        channels: campaign.channels.into_iter().map(channel_out).collect(),
        store_ids: campaign.store_ids,
        starts_at: optional_timestamp(campaign.starts_at),
        ends_at: optional_timestamp(campaign.ends_at),
        validity_days: campaign.validity_days,
        per_member_limit: campaign.per_member_limit,
        issue_limit: campaign.issue_limit,
        stackable: campaign.stackable,
        public_code: campaign.public_code.unwrap_or_default(),
        issue_on_capture: campaign.issue_on_capture.map(|rule| proto::IssueOnCapture {
            min_total: rule.min_total.to_string(),
            channels: rule.channels.into_iter().map(channel_out).collect(),
        }),
        variants: campaign
            .variants
            .into_iter()
            .map(|variant| proto::CampaignVariant {
                variant_id: variant.variant_id,
                weight: i32::try_from(variant.weight).unwrap_or(i32::MAX),
                discount: Some(match discount_out(variant.discount) {
                    DiscountOut::AmountOff(a) => proto::campaign_variant::Discount::AmountOff(a),
                    DiscountOut::PercentOff(p) => proto::campaign_variant::Discount::PercentOff(p),
                }),
            })
            .collect(),
        created_at: Some(timestamp(campaign.created_at)),
        eligible: eligible_out(campaign.eligible),
    }
}

/// A campaign's scope as the API shows it: unset for the whole basket.
fn eligible_out(eligible: Eligibility) -> Option<proto::CampaignEligibility> {
    if eligible.is_whole_basket() {
        return None;
    }
    Some(proto::CampaignEligibility {
        skus: eligible.skus,
        categories: eligible.categories,
    })
}

/// A campaign's discount as a nearby offer shows it.
pub(super) fn discount_oneof(discount: Discount) -> proto::nearby_campaign::Discount {
    match discount_out(discount) {
        DiscountOut::AmountOff(amount) => proto::nearby_campaign::Discount::AmountOff(amount),
        DiscountOut::PercentOff(percent) => proto::nearby_campaign::Discount::PercentOff(percent),
    }
}

enum DiscountOut {
    AmountOff(String),
    PercentOff(proto::PercentOff),
}

fn discount_out(discount: Discount) -> DiscountOut {
    match discount {
        Discount::AmountOff(amount) => DiscountOut::AmountOff(amount.to_string()),
        Discount::PercentOff {
            percent,
            max_discount,
        } => DiscountOut::PercentOff(proto::PercentOff {
            percent: decimal_out(percent),
            max_discount: max_discount.map(|m| m.to_string()).unwrap_or_default(),
        }),
    }
}

pub fn coupon_out(coupon: Coupon) -> proto::Coupon {
    let state = match coupon.state {
        CouponState::Active => proto::CouponState::Active,
        CouponState::Reserved => proto::CouponState::Reserved,
        CouponState::Redeemed => proto::CouponState::Redeemed,
        CouponState::Expired => proto::CouponState::Expired,
        CouponState::Revoked => proto::CouponState::Revoked,
    };
    proto::Coupon {
        code: coupon.code,
        campaign_id: coupon.campaign_id,
        variant_id: coupon.variant_id,
        member_id: coupon.member_id,
        state: state.into(),
        valid_from: Some(timestamp(coupon.valid_from)),
        valid_until: optional_timestamp(coupon.valid_until),
        source: coupon.source,
        redeemed_at: optional_timestamp(coupon.redeemed_at),
        order_id: coupon.order_id,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::grpc::status::violated_fields;

    fn campaign() -> proto::Campaign {
        proto::Campaign {
            campaign_id: "summer-10".into(),
            name: "Summer 10%".into(),
            discount: Some(proto::campaign::Discount::PercentOff(proto::PercentOff {
                percent: "10".into(),
                max_discount: "500".into(),
            })),
            public_code: "summer-2026".into(),
            variants: vec![
                proto::CampaignVariant {
                    variant_id: "a".into(),
                    weight: 1,
                    discount: Some(proto::campaign_variant::Discount::AmountOff("300".into())),
                },
                proto::CampaignVariant {
                    variant_id: "b".into(),
                    weight: 1,
                    discount: Some(proto::campaign_variant::Discount::AmountOff("500".into())),
                },
            ],
            ..proto::Campaign::default()
        }
    }

    #[test]
    fn a_campaign_round_trips() {
        let parsed = campaign_in(Violations::new(), Some(campaign())).expect("valid");
        assert_eq!(parsed.public_code.as_deref(), Some("SUMMER2026"));
        assert_eq!(parsed.created_at, DateTime::<Utc>::UNIX_EPOCH);
        assert!(parsed.eligible.is_whole_basket());
        let out = campaign_out(parsed);
        assert_eq!(out.min_spend, "0");
        assert_eq!(out.eligible, None, "the whole basket is shown as unset");
        assert_eq!(out.variants.len(), 2);
        assert_eq!(
            out.discount,
            Some(proto::campaign::Discount::PercentOff(proto::PercentOff {
                percent: "10".into(),
                max_discount: "500".into(),
            }))
        );
    }

    #[test]
    fn a_bad_campaign_names_every_field() {
        let mut bad = campaign();
        bad.campaign_id = "a:b".into();
        bad.discount = Some(proto::campaign::Discount::PercentOff(proto::PercentOff {
            percent: "101".into(),
            max_discount: String::new(),
        }));
        bad.channels = vec![0];
        bad.starts_at = Some(prost_types::Timestamp {
            seconds: 100,
            nanos: 0,
        });
        bad.ends_at = Some(prost_types::Timestamp {
            seconds: 100,
            nanos: 0,
        });
        bad.public_code = "ab".into();
        bad.variants[1].variant_id = "a".into();
        bad.variants[1].weight = 0;
        bad.variants[1].discount = None;
        bad.eligible = Some(proto::CampaignEligibility {
            skus: vec!["SHOE-1".into(), String::new()],
            categories: vec!["x".repeat(MAX_LINE_TEXT_CHARS + 1)],
        });
        let status = campaign_in(Violations::new(), Some(bad)).expect_err("invalid");
        assert_eq!(
            violated_fields(&status),
            [
                "campaign.campaign_id",
                "campaign.percent_off.percent",
                "campaign.channels[0]",
                "campaign.ends_at",
                "campaign.public_code",
                "campaign.variants[1].variant_id",
                "campaign.variants[1].weight",
                "campaign.variants[1].discount",
                "campaign.eligible.skus[1]",
                "campaign.eligible.categories[0]",
            ]
        );
    }

    #[test]
    fn an_item_scoped_campaign_round_trips() {
        let scoped = proto::Campaign {
            eligible: Some(proto::CampaignEligibility {
                skus: vec!["BAG-7".into()],
                categories: vec!["shoes".into()],
            }),
            ..campaign()
        };
        let parsed = campaign_in(Violations::new(), Some(scoped.clone())).expect("valid");
        assert_eq!(parsed.eligible.skus, ["BAG-7"]);
        assert_eq!(parsed.eligible.categories, ["shoes"]);
        assert_eq!(campaign_out(parsed).eligible, scoped.eligible);
    }

    #[test]
    fn an_overlong_scope_is_refused() {
        let scoped = proto::Campaign {
            eligible: Some(proto::CampaignEligibility {
                skus: vec!["S".into(); MAX_ELIGIBLE_ENTRIES + 1],
                categories: Vec::new(),
            }),
            ..campaign()
        };
        let status = campaign_in(Violations::new(), Some(scoped)).expect_err("invalid");
        assert_eq!(violated_fields(&status), ["campaign.eligible.skus"]);
    }
}
