//! Campaigns and coupons: what a coupon is worth and whether it applies to an order.

use chrono::{DateTime, Duration, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::{
    error::CouponReason,
    model::{Channel, LineItem},
    money::Money,
};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Discount {
    AmountOff(Money),
    /// `percent` of the amount it applies to (see `Campaign::discount_on`), capped at
    /// `max_discount` (if set).
    PercentOff {
        #[serde(with = "rust_decimal::serde::str")]
        percent: Decimal,
        max_discount: Option<Money>,
    },
}

impl Discount {
    /// What this discount takes off `remaining`, floored to the currency's minor unit and never
    /// more than `remaining`.
    pub fn apply(&self, remaining: Money, exponent: u32) -> Money {
        let off = match self {
            Discount::AmountOff(amount) => *amount,
            Discount::PercentOff {
                percent,
                max_discount,
            } => {
                let off = Money::from_decimal_saturating(
                    remaining.amount() * *percent / Decimal::ONE_HUNDRED,
                );
                max_discount.map_or(off, |cap| off.min(cap))
            }
        };
        off.min(remaining).floor_to(exponent)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IssueOnCapture {
    pub min_total: Money,
    /// Empty = every channel.
    pub channels: Vec<Channel>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Variant {
    pub variant_id: String,
    pub weight: u32,
    pub discount: Discount,
}

/// The basket lines a campaign's coupons count ("10 % off shoes"): a line is eligible when its
/// sku is one of `skus` or its category one of `categories`. Both empty = the whole basket.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Eligibility {
    pub skus: Vec<String>,
    pub categories: Vec<String>,
}

impl Eligibility {
    pub fn is_whole_basket(&self) -> bool {
        self.skus.is_empty() && self.categories.is_empty()
    }

    pub fn covers(&self, line: &LineItem) -> bool {
        self.is_whole_basket()
            || self.skus.contains(&line.sku)
            || self.categories.contains(&line.category)
    }

    /// The sum of the eligible lines' amounts, or None when no line is eligible (a scoped
    /// coupon on a basket without its items; the whole basket is always eligible).
    pub fn amount_of(&self, lines: &[LineItem]) -> Option<Money> {
        if self.is_whole_basket() {
            return Some(lines.iter().map(|line| line.amount).sum());
        }
        let mut eligible = lines.iter().filter(|line| self.covers(line)).peekable();
        eligible.peek()?;
        Some(eligible.map(|line| line.amount).sum())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Campaign {
    pub campaign_id: String,
    pub name: String,
    pub discount: Discount,
    pub min_spend: Money,
    /// Empty = every channel.
    pub channels: Vec<Channel>,
    /// Empty = every store.
    pub store_ids: Vec<String>,
    pub starts_at: Option<DateTime<Utc>>,
    pub ends_at: Option<DateTime<Utc>>,
    /// Days a coupon stays valid from issue; 0 = until `ends_at`.
    pub validity_days: i32,
    /// 0 = no limit.
    pub per_member_limit: i32,
    /// Total coupons ever issued; 0 = no limit.
    pub issue_limit: i32,
    pub stackable: bool,
    /// A shared code anyone may use at checkout (normalised upper case), or None.
    pub public_code: Option<String>,
    pub issue_on_capture: Option<IssueOnCapture>,
    pub variants: Vec<Variant>,
    /// The lines its discount and `min_spend` count. Campaigns stored before the field existed
    /// read as the whole basket.
    #[serde(default)]
    pub eligible: Eligibility,
    pub created_at: DateTime<Utc>,
    /// How many parts its stock is split into (`domain::stock`); 0: its issues are counted,
    /// not drawn from a stock (no issue limit, or a limited campaign an older omo stored,
    /// until `Engine::adopt_campaign_stock` funds its stock at start).
    #[serde(default)]
    pub stock_parts: u8,
}

impl Campaign {
    /// A member's variant: a deterministic hash of member and campaign into the weights.
    pub fn variant_for(&self, member_id: &str) -> Option<&Variant> {
        let total_weight: u64 = self.variants.iter().map(|v| u64::from(v.weight)).sum();
        if total_weight == 0 {
            return None;
        }
        let digest = Sha256::digest(format!("{}/{member_id}", self.campaign_id));
        let bucket = u64::from_be_bytes(digest[..8].try_into().expect("8 bytes")) % total_weight;
        let mut upper = 0;
        self.variants.iter().find(|variant| {
            upper += u64::from(variant.weight);
            bucket < upper
        })
    }

    pub fn discount_of(&self, variant_id: &str) -> &Discount {
        self.variants
            .iter()
            .find(|v| v.variant_id == variant_id)
            .map_or(&self.discount, |v| &v.discount)
    }

    /// What a coupon of this campaign (its `variant_id` arm) takes off an order of `lines` of
    /// which `remaining` is left after the earlier coupons. The discount counts only the
    /// eligible lines, and the earlier coupons are taken off the other lines first: so it
    /// applies to the lesser of the eligible amount and what is left.
    pub fn discount_on(
        &self,
        variant_id: &str,
        lines: &[LineItem],
        remaining: Money,
        exponent: u32,
    ) -> Money {
        let eligible = self.eligible.amount_of(lines).unwrap_or(Money::ZERO);
        self.discount_of(variant_id)
            .apply(eligible.min(remaining), exponent)
    }

    /// Validity window of a coupon issued at `now`.
    pub fn validity(&self, now: DateTime<Utc>) -> (DateTime<Utc>, Option<DateTime<Utc>>) {
        let valid_from = self.starts_at.map_or(now, |start| start.max(now));
        let by_days =
            (self.validity_days > 0).then(|| now + Duration::days(self.validity_days.into()));
        let valid_until = match (by_days, self.ends_at) {
            (Some(days), Some(end)) => Some(days.min(end)),
            (days, end) => days.or(end),
        };
        (valid_from, valid_until)
    }

    pub fn is_open(&self, now: DateTime<Utc>) -> bool {
        self.starts_at.is_none_or(|start| start <= now) && self.ends_at.is_none_or(|end| now < end)
    }

    pub fn issues_on_capture(&self, channel: Channel, total: Money) -> bool {
        self.issue_on_capture.as_ref().is_some_and(|rule| {
            total >= rule.min_total
                && (rule.channels.is_empty() || rule.channels.contains(&channel))
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum CouponState {
    Active,
    Reserved,
    Redeemed,
    Expired,
    Revoked,
}

impl CouponState {
    pub fn as_str(self) -> &'static str {
        match self {
            CouponState::Active => "active",
            CouponState::Reserved => "reserved",
            CouponState::Redeemed => "redeemed",
            CouponState::Expired => "expired",
            CouponState::Revoked => "revoked",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [
            Self::Active,
            Self::Reserved,
            Self::Redeemed,
            Self::Expired,
            Self::Revoked,
        ]
        .into_iter()
        .find(|state| state.as_str() == s)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Coupon {
    pub code: String,
    pub campaign_id: String,
    pub variant_id: String,
    pub member_id: String,
    pub state: CouponState,
    pub valid_from: DateTime<Utc>,
    pub valid_until: Option<DateTime<Utc>>,
    pub source: String,
    /// The order that reserved or redeemed it.
    pub order_id: String,
    pub redeemed_at: Option<DateTime<Utc>>,
    pub issued_at: DateTime<Utc>,
    /// The discount it gives its order while reserved or redeemed; None otherwise. Reports sum
    /// it per campaign (an order keeps only the total of its coupons' discounts). Outcomes
    /// remembered before the field existed read as None.
    #[serde(default)]
    pub discount: Option<Money>,
}

impl Coupon {
    pub fn is_expired(&self, now: DateTime<Utc>) -> bool {
        self.valid_until.is_some_and(|until| until <= now)
    }
}

/// The order a coupon is being applied to.
#[derive(Debug, Clone)]
pub struct CouponContext<'a> {
    pub member_id: &'a str,
    pub channel: Channel,
    pub store_id: &'a str,
    /// The basket total: the sum of `lines`' amounts.
    pub total: Money,
    pub now: DateTime<Utc>,
    /// The basket, for campaigns scoped to some of its items.
    pub lines: &'a [LineItem],
}

/// Whether `coupon` of `campaign` may be used in `ctx` (stacking is judged by the caller, which
/// sees all codes of the order).
pub fn check_coupon(
    coupon: &Coupon,
    campaign: &Campaign,
    ctx: &CouponContext<'_>,
) -> Result<(), CouponReason> {
    if coupon.member_id != ctx.member_id {
        return Err(CouponReason::NotOwned);
    }
    if coupon.is_expired(ctx.now) {
        return Err(CouponReason::Expired);
    }
    if coupon.state != CouponState::Active || coupon.valid_from > ctx.now {
        return Err(CouponReason::NotActive);
    }
    check_scope(campaign, ctx)
}

/// Channel, store, eligible-item and minimum-spend rules of a campaign (the minimum spend
/// counts only the eligible lines).
pub fn check_scope(campaign: &Campaign, ctx: &CouponContext<'_>) -> Result<(), CouponReason> {
    if !campaign.channels.is_empty() && !campaign.channels.contains(&ctx.channel) {
        return Err(CouponReason::Channel);
    }
    if !campaign.store_ids.is_empty() && !campaign.store_ids.iter().any(|s| s == ctx.store_id) {
        return Err(CouponReason::Store);
    }
    let eligible = campaign
        .eligible
        .amount_of(ctx.lines)
        .ok_or(CouponReason::NotEligible)?;
    if eligible < campaign.min_spend {
        return Err(CouponReason::MinSpend);
    }
    Ok(())
}

/// Stacking: a non-stackable coupon cannot share an order with any other coupon.
pub fn check_stacking(
    already_applied_stackable: &[bool],
    stackable: bool,
) -> Result<(), CouponReason> {
    let conflict = !already_applied_stackable.is_empty()
        && (!stackable || already_applied_stackable.iter().any(|s| !s));
    if conflict {
        Err(CouponReason::NotStackable)
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn money(s: &str) -> Money {
        s.parse().unwrap()
    }

    #[test]
    fn percent_off_is_capped_and_floored() {
        let discount = Discount::PercentOff {
            percent: Decimal::new(15, 0),
            max_discount: Some(money("500")),
        };
        assert_eq!(discount.apply(money("1999"), 0), money("299"));
        assert_eq!(discount.apply(money("10000"), 0), money("500"));
        assert_eq!(
            Discount::AmountOff(money("800")).apply(money("500"), 0),
            money("500")
        );
    }

    fn line(sku: &str, category: &str, amount: &str) -> LineItem {
        LineItem {
            line_id: sku.into(),
            sku: sku.into(),
            category: category.into(),
            quantity: 1,
            amount: money(amount),
        }
    }

    /// Shoes ¥10,000 and a bag ¥5,000.
    fn shoes_and_bag() -> Vec<LineItem> {
        vec![
            line("SHOE-1", "shoes", "10000"),
            line("BAG-7", "bags", "5000"),
        ]
    }

    fn campaign(discount: Discount, min_spend: &str, eligible: Eligibility) -> Campaign {
        Campaign {
            campaign_id: "c".into(),
            name: "c".into(),
            discount,
            min_spend: money(min_spend),
            channels: Vec::new(),
            store_ids: Vec::new(),
            starts_at: None,
            ends_at: None,
            validity_days: 0,
            per_member_limit: 0,
            issue_limit: 0,
            stackable: true,
            public_code: None,
            issue_on_capture: None,
            variants: Vec::new(),
            eligible,
            created_at: DateTime::<Utc>::UNIX_EPOCH,
            stock_parts: 0,
        }
    }

    fn shoes() -> Eligibility {
        Eligibility {
            skus: Vec::new(),
            categories: vec!["shoes".into()],
        }
    }

    fn ten_percent() -> Discount {
        Discount::PercentOff {
            percent: Decimal::TEN,
            max_discount: None,
        }
    }

    fn context(lines: &[LineItem]) -> CouponContext<'_> {
        CouponContext {
            member_id: "m",
            channel: Channel::Store,
            store_id: "shibuya",
            total: lines.iter().map(|line| line.amount).sum(),
            now: DateTime::<Utc>::UNIX_EPOCH,
            lines,
        }
    }

    #[test]
    fn a_line_is_eligible_by_sku_or_by_category() {
        let by_either = Eligibility {
            skus: vec!["BAG-7".into()],
            categories: vec!["shoes".into()],
        };
        let lines = [shoes_and_bag(), vec![line("HAT-2", "hats", "800")]].concat();
        assert_eq!(by_either.amount_of(&lines), Some(money("15000")));
        assert_eq!(shoes().amount_of(&lines), Some(money("10000")));
        assert_eq!(
            Eligibility::default().amount_of(&lines),
            Some(money("15800")),
            "empty = the whole basket"
        );
        assert_eq!(shoes().amount_of(&lines[1..]), None);
    }

    #[test]
    fn the_discount_counts_only_the_eligible_lines() {
        let lines = shoes_and_bag();
        let percent = campaign(ten_percent(), "0", shoes());
        assert_eq!(
            percent.discount_on("", &lines, money("15000"), 0),
            money("1000")
        );
        let amount = campaign(Discount::AmountOff(money("12000")), "0", shoes());
        assert_eq!(
            amount.discount_on("", &lines, money("15000"), 0),
            money("10000")
        );
        let whole = campaign(ten_percent(), "0", Eligibility::default());
        assert_eq!(
            whole.discount_on("", &lines, money("15000"), 0),
            money("1500")
        );
    }

    #[test]
    fn earlier_coupons_come_off_the_other_lines_first() {
        let lines = shoes_and_bag();
        let shoes_only = campaign(Discount::AmountOff(money("12000")), "0", shoes());
        // ¥6,000 of the order taken by earlier coupons leaves ¥9,000, less than the shoes.
        assert_eq!(
            shoes_only.discount_on("", &lines, money("9000"), 0),
            money("9000")
        );
        assert_eq!(
            shoes_only.discount_on("", &lines, money("14000"), 0),
            money("10000")
        );
    }

    #[test]
    fn min_spend_counts_only_the_eligible_lines_and_none_is_not_eligible() {
        let lines = shoes_and_bag();
        let scope = |min_spend: &str, lines: &[LineItem]| {
            check_scope(
                &campaign(ten_percent(), min_spend, shoes()),
                &context(lines),
            )
        };
        assert_eq!(scope("10000", &lines), Ok(()));
        assert_eq!(scope("10001", &lines), Err(CouponReason::MinSpend));
        assert_eq!(scope("0", &lines[1..]), Err(CouponReason::NotEligible));
        assert_eq!(CouponReason::NotEligible.as_str(), "COUPON_NOT_ELIGIBLE");
    }

    #[test]
    fn a_campaign_stored_before_eligibility_reads_as_the_whole_basket() {
        let mut stored = serde_json::to_value(campaign(ten_percent(), "0", shoes())).unwrap();
        stored.as_object_mut().unwrap().remove("eligible");
        let read: Campaign = serde_json::from_value(stored).unwrap();
        assert!(read.eligible.is_whole_basket());
    }

    #[test]
    fn stacking_rules() {
        assert!(check_stacking(&[], false).is_ok());
        assert!(check_stacking(&[true], true).is_ok());
        assert_eq!(
            check_stacking(&[true], false),
            Err(CouponReason::NotStackable)
        );
        assert_eq!(
            check_stacking(&[false], true),
            Err(CouponReason::NotStackable)
        );
    }
}

/// UpdateCampaign: the fields its update_mask names (`None`: left as is). The others
/// (discount, scope, validity, codes) stay as created: coupons already issued were priced
/// and dated by them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CampaignPatch {
    pub campaign_id: String,
    pub name: Option<String>,
    /// `Some(None)` removes the end; an end at or before now ends the campaign early.
    pub ends_at: Option<Option<DateTime<Utc>>>,
    pub issue_limit: Option<i32>,
    pub per_member_limit: Option<i32>,
}

impl CampaignPatch {
    /// `campaign` with the patch applied.
    pub fn apply(&self, campaign: &Campaign) -> Campaign {
        let mut changed = campaign.clone();
        if let Some(name) = &self.name {
            changed.name = name.clone();
        }
        if let Some(ends_at) = self.ends_at {
            changed.ends_at = ends_at;
        }
        if let Some(issue_limit) = self.issue_limit {
            changed.issue_limit = issue_limit;
        }
        if let Some(per_member_limit) = self.per_member_limit {
            changed.per_member_limit = per_member_limit;
        }
        changed
    }
}

#[cfg(test)]
mod patch_tests {
    use super::*;

    #[test]
    fn a_patch_changes_only_its_fields() {
        let campaign = Campaign {
            campaign_id: "c".into(),
            name: "old".into(),
            discount: Discount::AmountOff(Money::new(Decimal::from(100)).unwrap()),
            min_spend: Money::ZERO,
            channels: vec![],
            store_ids: vec![],
            starts_at: None,
            ends_at: None,
            validity_days: 0,
            per_member_limit: 1,
            issue_limit: 10,
            stackable: false,
            public_code: None,
            issue_on_capture: None,
            variants: vec![],
            eligible: Eligibility::default(),
            stock_parts: 0,
            created_at: DateTime::<Utc>::UNIX_EPOCH,
        };
        let end = DateTime::<Utc>::UNIX_EPOCH + Duration::days(1);
        let patch = CampaignPatch {
            campaign_id: "c".into(),
            name: None,
            ends_at: Some(Some(end)),
            issue_limit: Some(0),
            per_member_limit: None,
        };
        let changed = patch.apply(&campaign);
        assert_eq!(changed.ends_at, Some(end));
        assert_eq!(changed.issue_limit, 0);
        assert_eq!(
            Campaign {
                ends_at: None,
                issue_limit: 10,
                ..changed
            },
            campaign
        );
    }
}
