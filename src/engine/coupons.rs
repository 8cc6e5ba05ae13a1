//! Coupons in the ledger: every state change of a coupon is a posting of one unit of
//! `CPN:<campaign_id>` (issue: campaign → member; reserve: member → hold; redeem: hold or member
//! → campaign:redeemed; release and restore: back to the member; expiry: → campaign:expired).

use super::rows::LedgerRows;
use crate::domain::ports::LedgerReads;
use chrono::{DateTime, Utc};

use super::{
    CommandResult,
    members::{self, Access},
    points::system_entry,
};
use crate::domain::{
    Account, Asset, DomainError, Money,
    coupon::{
        Campaign, CampaignPatch, Coupon, CouponContext, CouponState, check_coupon, check_scope,
        check_stacking,
    },
    error::CouponReason,
    ids,
    model::{MemberRef, Order, Posting},
    ports::StoreError,
    pricing::basket_total,
    stock,
};

/// What an order's code names.
#[derive(Debug, Clone)]
enum Named {
    /// One of the member's coupons.
    Coupon(Coupon),
    /// A campaign's public code: a coupon is issued when it is used, from `issue_from` (a part
    /// of the campaign's stock, or its own account when it has no limit).
    Public { issue_from: Account },
}

/// A coupon that applies to an order, with what it takes off.
#[derive(Debug, Clone)]
pub(super) struct Applied {
    named: Named,
    campaign: Campaign,
    code: String,
    pub discount: Money,
}

impl Applied {
    pub fn code(&self) -> String {
        self.code.clone()
    }
}

/// One code of an order and what became of it.
pub(super) struct Evaluated {
    pub code: String,
    pub verdict: Result<Applied, DomainError>,
}

fn refusal(code: &str, reason: CouponReason) -> DomainError {
    DomainError::Coupon {
        code: code.to_string(),
        reason,
    }
}

/// Judges an order's codes in the order given; each discount applies to what earlier coupons
/// left (of its eligible lines: `Campaign::discount_on`). `lock` locks the coupon (and public
/// campaign) rows for a write.
pub(super) async fn evaluate(
    uow: &mut dyn LedgerReads,
    ctx: &CouponContext<'_>,
    codes: &[String],
    exponent: u32,
    lock: bool,
) -> Result<Vec<Evaluated>, StoreError> {
    debug_assert_eq!(
        ctx.total,
        basket_total(ctx.lines),
        "the total is the basket's"
    );
    let mut remaining = ctx.total;
    let mut applied_stackable = Vec::new();
    let mut evaluated = Vec::new();
    for code in codes {
        let verdict = match find(uow, ctx, code, lock).await? {
            Ok((named, campaign)) => check_stacking(&applied_stackable, campaign.stackable)
                .map_err(|reason| refusal(code, reason))
                .map(|()| {
                    let variant_id = match &named {
                        Named::Coupon(coupon) => coupon.variant_id.clone(),
                        Named::Public { .. } => campaign
                            .variant_for(ctx.member_id)
                            .map_or_else(String::new, |v| v.variant_id.clone()),
                    };
                    let discount =
                        campaign.discount_on(&variant_id, ctx.lines, remaining, exponent);
                    Applied {
                        named,
                        code: code.clone(),
                        discount,
                        campaign,
                    }
                }),
            Err(error) => Err(error),
        };
        if let Ok(applied) = &verdict {
            remaining = remaining.saturating_sub(applied.discount);
            applied_stackable.push(applied.campaign.stackable);
        }
        evaluated.push(Evaluated {
            code: code.clone(),
            verdict,
        });
    }
    Ok(evaluated)
}

/// The coupon (or public campaign) behind a code, if the member may use it here. `lock`
/// locks what a use would change: the coupon, or the stock a public code's coupon comes from.
async fn find(
    uow: &mut dyn LedgerReads,
    ctx: &CouponContext<'_>,
    code: &str,
    lock: bool,
) -> Result<Result<(Named, Campaign), DomainError>, StoreError> {
    if let Some(coupon) = uow.get_coupon(code, lock).await? {
        let campaign = campaign_of(uow, &coupon.campaign_id, false).await?;
        return Ok(check_coupon(&coupon, &campaign, ctx)
            .map(|()| (Named::Coupon(coupon), campaign))
            .map_err(|reason| refusal(code, reason)));
    }
    let Some(campaign) = uow.campaign_by_public_code(code).await? else {
        return Ok(Err(refusal(code, CouponReason::NotFound)));
    };
    let campaign = if lock {
        lock_if_counted(uow, campaign).await?
    } else {
        campaign
    };
    if campaign.ends_at.is_some_and(|end| end <= ctx.now) {
        return Ok(Err(refusal(code, CouponReason::Expired)));
    }
    if !campaign.is_open(ctx.now) {
        return Ok(Err(refusal(code, CouponReason::NotActive)));
    }
    if let Err(reason) = check_scope(&campaign, ctx) {
        return Ok(Err(refusal(code, reason)));
    }
    Ok(check_limits(uow, &campaign, ctx.member_id, lock)
        .await?
        .map(|issue_from| (Named::Public { issue_from }, campaign)))
}

async fn campaign_of(
    uow: &mut dyn LedgerReads,
    campaign_id: &str,
    lock: bool,
) -> Result<Campaign, StoreError> {
    uow.get_campaign(campaign_id, lock)
        .await?
        .ok_or_else(|| StoreError::Corrupt(format!("campaign {campaign_id} is gone")))
}

/// Locks a campaign row only when its issue limit is counted rather than drawn from a stock:
/// a limited campaign an older omo stored, until it is adopted at start. The per-member limit
/// needs no campaign lock: the member's row is locked already. So no campaign row is one that
/// every issuing batch waits on.
async fn lock_if_counted(
    uow: &mut dyn LedgerReads,
    campaign: Campaign,
) -> Result<Campaign, StoreError> {
    if campaign.issue_limit > 0 && campaign.stock_parts == 0 {
        campaign_of(uow, &campaign.campaign_id, true).await
    } else {
        Ok(campaign)
    }
}

/// The campaign's total and per-member issue limits; where its next coupon comes from when
/// the member may have one (see [`issue_source`]).
async fn check_limits(
    uow: &mut dyn LedgerReads,
    campaign: &Campaign,
    member_id: &str,
    lock: bool,
) -> Result<Result<Account, DomainError>, StoreError> {
    let Some(issue_from) = issue_source(uow, campaign, lock).await? else {
        return Ok(Err(DomainError::CampaignExhausted));
    };
    if campaign.per_member_limit > 0
        && uow
            .count_coupons(&campaign.campaign_id, Some(member_id))
            .await?
            >= campaign.per_member_limit.into()
    {
        return Ok(Err(DomainError::MemberLimit));
    }
    Ok(Ok(issue_from))
}

/// Where a campaign's next coupon comes from, if it may issue one: a limited campaign draws
/// a unit from a part of its stock (`domain::stock`: the writer's own part first, the others
/// when it is empty), locked when `lock`; None when every part is empty. A campaign without a
/// stock issues from its own system account: without a limit freely; an older omo's limited
/// campaign (locked by the caller) while fewer than its limit are issued.
async fn issue_source(
    uow: &mut dyn LedgerReads,
    campaign: &Campaign,
    lock: bool,
) -> Result<Option<Account>, StoreError> {
    if let Some(source) = source_as_read(uow, campaign, lock).await? {
        return Ok(Some(source));
    }
    // Every part is empty as the campaign was read. Its limit may have changed since (lifted,
    // the stock taken back; or raised): then the campaign as it stands decides.
    match uow.campaign_as_committed(&campaign.campaign_id).await? {
        Some(current) if current.issue_limit != campaign.issue_limit => {
            source_as_read(uow, &current, lock).await
        }
        _ => Ok(None),
    }
}

/// [`issue_source`] for the campaign as the caller read it.
async fn source_as_read(
    uow: &mut dyn LedgerReads,
    campaign: &Campaign,
    lock: bool,
) -> Result<Option<Account>, StoreError> {
    let campaign_id = &campaign.campaign_id;
    if campaign.stock_parts == 0 {
        let exhausted = campaign.issue_limit > 0
            && uow.count_coupons(campaign_id, None).await? >= campaign.issue_limit.into();
        return Ok((!exhausted).then(|| Account::Campaign(campaign_id.clone())));
    }
    let asset = stock::asset(campaign_id).to_string();
    let seat = uow.writer_seat();
    for (nth, part) in stock::draw_order(campaign.stock_parts, seat)
        .into_iter()
        .enumerate()
    {
        let account = stock::account(campaign_id, part);
        let name = account.to_string();
        let left = if !lock {
            uow.balance(&name, &asset).await?
        } else if nth == 0 {
            // The writer's first part is its own: no other writer draws from it first, so its
            // lock is rarely waited for.
            uow.lock_balance(&name, &asset).await?
        } else if uow.balance(&name, &asset).await? > 0 {
            // Another part is locked only when it has units left: an empty part stays empty
            // until a restock, so a sold-out campaign waits on no other writer's row.
            uow.lock_balance(&name, &asset).await?
        } else {
            0
        };
        // Units this command picked already for issues it books at its end.
        if left - uow.unbooked_draws(&name) > 0 {
            if lock {
                uow.note_draw(&name);
            }
            return Ok(Some(account));
        }
    }
    Ok(None)
}

/// Issues one coupon of a campaign to a member from `issue_from`, as [`check_limits`] found.
async fn issue(
    uow: &mut dyn LedgerRows,
    campaign: &Campaign,
    issue_from: Account,
    member_id: &str,
    source: String,
    now: DateTime<Utc>,
) -> Result<(Coupon, Posting), StoreError> {
    let (coupon, posting) = new_coupon(campaign, issue_from, member_id, source, now);
    uow.insert_coupon(&coupon).await?;
    Ok((coupon, posting))
}

/// A coupon of `campaign` for the member, not yet stored, and the posting that issues it.
fn new_coupon(
    campaign: &Campaign,
    issue_from: Account,
    member_id: &str,
    source: String,
    now: DateTime<Utc>,
) -> (Coupon, Posting) {
    let (valid_from, valid_until) = campaign.validity(now);
    let coupon = Coupon {
        code: ids::new_coupon_code(),
        campaign_id: campaign.campaign_id.clone(),
        variant_id: campaign
            .variant_for(member_id)
            .map_or_else(String::new, |v| v.variant_id.clone()),
        member_id: member_id.to_string(),
        state: CouponState::Active,
        valid_from,
        valid_until,
        source,
        order_id: String::new(),
        redeemed_at: None,
        issued_at: now,
        discount: None,
    };
    let posting = unit(
        issue_from,
        Account::Member(member_id.to_string()),
        &campaign.campaign_id,
    );
    (coupon, posting)
}

fn unit(from: Account, to: Account, campaign_id: &str) -> Posting {
    Posting::new(&from, &to, &Asset::Coupon(campaign_id.to_string()), 1)
}

/// The member's coupon for each applied code: a stored one, or one issued now for a public
/// code (its issue posting goes to `postings`; it is stored by `save`, once, in its final
/// state). Each carries the discount it gives the order, which reports sum per campaign.
fn coupons_for(
    applied: &[Applied],
    member_id: &str,
    now: DateTime<Utc>,
    postings: &mut Vec<Posting>,
) -> Vec<PendingCoupon> {
    applied
        .iter()
        .map(|applied| {
            let mut pending = match &applied.named {
                Named::Coupon(coupon) => PendingCoupon {
                    coupon: coupon.clone(),
                    stored: true,
                },
                Named::Public { issue_from } => {
                    let source = format!("public:{}", applied.code);
                    let (coupon, posting) = new_coupon(
                        &applied.campaign,
                        issue_from.clone(),
                        member_id,
                        source,
                        now,
                    );
                    postings.push(posting);
                    PendingCoupon {
                        coupon,
                        stored: false,
                    }
                }
            };
            pending.coupon.discount = Some(applied.discount);
            pending
        })
        .collect()
}

/// A coupon a command is changing, and whether it is in the database yet.
struct PendingCoupon {
    coupon: Coupon,
    stored: bool,
}

impl PendingCoupon {
    async fn save(&self, uow: &mut dyn LedgerRows) -> Result<(), StoreError> {
        if self.stored {
            uow.update_coupon(&self.coupon).await
        } else {
            uow.insert_coupon(&self.coupon).await
        }
    }
}

/// Authorize: the coupons move to the order's hold.
pub(super) async fn reserve(
    uow: &mut dyn LedgerRows,
    applied: &[Applied],
    member_id: &str,
    order_id: &str,
    now: DateTime<Utc>,
) -> Result<Vec<Posting>, StoreError> {
    let mut postings = Vec::new();
    for mut pending in coupons_for(applied, member_id, now, &mut postings) {
        let coupon = &mut pending.coupon;
        coupon.state = CouponState::Reserved;
        coupon.order_id = order_id.to_string();
        pending.save(uow).await?;
        let coupon = &pending.coupon;
        postings.push(unit(
            Account::Member(member_id.to_string()),
            Account::Hold(order_id.to_string()),
            &coupon.campaign_id,
        ));
    }
    Ok(postings)
}

/// RecordSale: the coupons are redeemed at once.
pub(super) async fn redeem_now(
    uow: &mut dyn LedgerRows,
    applied: &[Applied],
    member_id: &str,
    order_id: &str,
    now: DateTime<Utc>,
) -> Result<Vec<Posting>, StoreError> {
    let mut postings = Vec::new();
    for mut pending in coupons_for(applied, member_id, now, &mut postings) {
        mark_redeemed(&mut pending.coupon, order_id, now);
        pending.save(uow).await?;
        let coupon = &pending.coupon;
        postings.push(unit(
            Account::Member(member_id.to_string()),
            Account::CampaignRedeemed(coupon.campaign_id.clone()),
            &coupon.campaign_id,
        ));
    }
    Ok(postings)
}

fn mark_redeemed(coupon: &mut Coupon, order_id: &str, now: DateTime<Utc>) {
    coupon.state = CouponState::Redeemed;
    coupon.order_id = order_id.to_string();
    coupon.redeemed_at = Some(now);
}

/// Capture: the order's reserved coupons are redeemed.
pub(super) async fn redeem_reserved(
    uow: &mut dyn LedgerRows,
    order_id: &str,
    now: DateTime<Utc>,
) -> Result<Vec<Posting>, StoreError> {
    let mut postings = Vec::new();
    for mut coupon in uow.order_coupons(order_id).await? {
        if coupon.state != CouponState::Reserved {
            continue;
        }
        mark_redeemed(&mut coupon, order_id, now);
        uow.update_coupon(&coupon).await?;
        postings.push(unit(
            Account::Hold(order_id.to_string()),
            Account::CampaignRedeemed(coupon.campaign_id.clone()),
            &coupon.campaign_id,
        ));
    }
    Ok(postings)
}

/// Void or hold expiry: reserved coupons go back to the member (or expire, if they ran out
/// meanwhile).
pub(super) async fn release(
    uow: &mut dyn LedgerRows,
    order_id: &str,
    member_id: &str,
    now: DateTime<Utc>,
) -> Result<Vec<Posting>, StoreError> {
    let mut postings = Vec::new();
    for mut coupon in uow.order_coupons(order_id).await? {
        if coupon.state != CouponState::Reserved {
            continue;
        }
        let to = if coupon.is_expired(now) {
            coupon.state = CouponState::Expired;
            Account::CampaignExpired(coupon.campaign_id.clone())
        } else {
            coupon.state = CouponState::Active;
            coupon.order_id.clear();
            Account::Member(member_id.to_string())
        };
        // Released unused: it gave no discount.
        coupon.discount = None;
        coupon.member_id = member_id.to_string();
        uow.update_coupon(&coupon).await?;
        postings.push(unit(
            Account::Hold(order_id.to_string()),
            to,
            &coupon.campaign_id,
        ));
    }
    Ok(postings)
}

/// Full refund: redeemed coupons that are still valid come back to the member.
pub(super) async fn restore(
    uow: &mut dyn LedgerRows,
    order_id: &str,
    member_id: &str,
    now: DateTime<Utc>,
) -> Result<(Vec<String>, Vec<Posting>), StoreError> {
    let (mut codes, mut postings) = (Vec::new(), Vec::new());
    for mut coupon in uow.order_coupons(order_id).await? {
        if coupon.state != CouponState::Redeemed || coupon.is_expired(now) {
            continue;
        }
        coupon.state = CouponState::Active;
        coupon.order_id.clear();
        coupon.redeemed_at = None;
        // The refund gave the discount back with the order.
        coupon.discount = None;
        coupon.member_id = member_id.to_string();
        uow.update_coupon(&coupon).await?;
        postings.push(unit(
            Account::CampaignRedeemed(coupon.campaign_id.clone()),
            Account::Member(member_id.to_string()),
            &coupon.campaign_id,
        ));
        codes.push(coupon.code);
    }
    Ok((codes, postings))
}

/// Capture and RecordSale: campaigns that reward this order issue their coupon (source
/// `order:<order_id>`). A campaign that is closed or out of budget simply issues nothing.
pub(super) async fn issue_on_capture(
    uow: &mut dyn LedgerRows,
    reference: &super::reference::Reference,
    order: &Order,
    member_id: &str,
    now: DateTime<Utc>,
) -> Result<Vec<Posting>, StoreError> {
    let mut postings = Vec::new();
    for listed in reference.capture_campaigns(uow).await? {
        // The list is cached for a second; the campaign's limit is read as it stands.
        let Some(campaign) = uow.get_campaign(&listed.campaign_id, false).await? else {
            continue;
        };
        if !campaign.is_open(now) || !campaign.issues_on_capture(order.channel, order.total) {
            continue;
        }
        let campaign = lock_if_counted(uow, campaign).await?;
        let Ok(issue_from) = check_limits(uow, &campaign, member_id, true).await? else {
            continue;
        };
        let source = format!("order:{}", order.order_id);
        let (_, posting) = issue(uow, &campaign, issue_from, member_id, source, now).await?;
        postings.push(posting);
    }
    Ok(postings)
}

pub(super) async fn create_campaign(
    uow: &mut dyn LedgerRows,
    now: DateTime<Utc>,
    campaign: &Campaign,
) -> CommandResult<Campaign> {
    if uow
        .get_campaign(&campaign.campaign_id, false)
        .await?
        .is_some()
    {
        return Err(DomainError::CampaignExists(campaign.campaign_id.clone()).into());
    }
    if let Some(code) = &campaign.public_code {
        let taken = uow.campaign_by_public_code(code).await?.is_some()
            || uow.get_coupon(code, false).await?.is_some();
        if taken {
            return Err(DomainError::PublicCodeTaken(code.clone()).into());
        }
    }
    let limited = campaign.issue_limit > 0;
    let campaign = Campaign {
        created_at: now,
        stock_parts: if limited { stock::STOCK_PARTS } else { 0 },
        ..campaign.clone()
    };
    uow.insert_campaign(&campaign).await?;
    let funding = fund(&campaign, campaign.issue_limit.into());
    book_stock(uow, &campaign, funding, now).await?;
    Ok(campaign)
}

/// Postings that put `units` of the campaign's coupons into its stock, shared among its parts.
fn fund(campaign: &Campaign, units: i64) -> Vec<Posting> {
    let shares = stock::shares(campaign.stock_parts, units);
    stock_moves(&campaign.campaign_id, &shares, Direction::IntoStock)
}

/// Which way [`stock_moves`] moves units: from `campaign:<id>` into the parts, or back.
enum Direction {
    IntoStock,
    OutOfStock,
}

/// Postings that move `units` ((part, units)) between the parts and `campaign:<id>`.
fn stock_moves(campaign_id: &str, units: &[(u8, i64)], direction: Direction) -> Vec<Posting> {
    let campaign = Account::Campaign(campaign_id.to_string());
    units
        .iter()
        .filter(|(_, units)| *units > 0)
        .map(|&(part, units)| {
            let part = stock::account(campaign_id, part);
            let (from, to) = match direction {
                Direction::IntoStock => (&campaign, &part),
                Direction::OutOfStock => (&part, &campaign),
            };
            Posting::new(from, to, &stock::asset(campaign_id), units)
        })
        .collect()
}

/// Books a change of the campaign's stock in a transaction of its own (`campaign_stock`).
async fn book_stock(
    uow: &mut dyn LedgerRows,
    campaign: &Campaign,
    postings: Vec<Posting>,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    if postings.is_empty() {
        return Ok(());
    }
    let mut entry = system_entry("campaign_stock", "", now, postings);
    entry
        .metadata
        .push(("campaign_id".into(), campaign.campaign_id.clone()));
    uow.append_transaction(&entry).await?;
    Ok(())
}

/// What each part of a stocked campaign's stock holds, read under the parts' locks (in part
/// order, the order every restock takes them in).
async fn lock_stock(
    uow: &mut dyn LedgerRows,
    campaign: &Campaign,
) -> Result<Vec<(u8, i64)>, StoreError> {
    let campaign_id = &campaign.campaign_id;
    let asset = stock::asset(campaign_id).to_string();
    let mut balances = Vec::new();
    for part in 0..campaign.stock_parts {
        let name = stock::account(campaign_id, part).to_string();
        balances.push((part, uow.lock_balance(&name, &asset).await?));
    }
    Ok(balances)
}

/// UpdateCampaign's change of the issue limit, from `before` to `after` (whose `stock_parts`
/// it sets): the postings that fund, draw down or empty the stock, or the refusal of a limit
/// below what is issued already.
async fn restock(
    uow: &mut dyn LedgerRows,
    before: &Campaign,
    after: &mut Campaign,
) -> Result<Result<Vec<Posting>, DomainError>, StoreError> {
    if after.issue_limit == before.issue_limit {
        return Ok(Ok(Vec::new()));
    }
    let campaign_id = &before.campaign_id;
    let (balances, issued) = if before.stock_parts == 0 {
        // No stock yet: what is issued is counted. Issues of a campaign without a limit do not
        // lock it, so those under way are waited for first; one that read the campaign before
        // this change and flushes after it fails its flush and runs again (`UnitOfWork::flush`).
        uow.fence_coupon_issues().await?;
        let issued = uow.count_coupons(campaign_id, None).await?;
        (Vec::new(), issued)
    } else {
        let balances = lock_stock(uow, before).await?;
        let left: i64 = balances.iter().map(|(_, left)| left).sum();
        (balances, i64::from(before.issue_limit) - left)
    };
    if after.issue_limit == 0 {
        // No limit any more: the stock goes back to the campaign's account.
        after.stock_parts = 0;
        return Ok(Ok(stock_moves(
            campaign_id,
            &balances,
            Direction::OutOfStock,
        )));
    }
    if issued > i64::from(after.issue_limit) {
        return Ok(Err(DomainError::IssueLimitBelowIssued {
            issued,
            issue_limit: after.issue_limit,
        }));
    }
    if before.stock_parts == 0 {
        after.stock_parts = stock::STOCK_PARTS;
        return Ok(Ok(fund(after, i64::from(after.issue_limit) - issued)));
    }
    let change = i64::from(after.issue_limit) - i64::from(before.issue_limit);
    if change > 0 {
        return Ok(Ok(fund(after, change)));
    }
    // `issued <= after.issue_limit` leaves at least `-change` in the stock.
    let taken = stock::take(&balances, -change).ok_or_else(|| {
        StoreError::Corrupt(format!("campaign {campaign_id}: stock below its limit"))
    })?;
    Ok(Ok(stock_moves(campaign_id, &taken, Direction::OutOfStock)))
}

pub(super) async fn issue_by_admin(
    uow: &mut dyn LedgerRows,
    now: DateTime<Utc>,
    campaign_id: &str,
    member: &MemberRef,
) -> CommandResult<Coupon> {
    let member = members::resolve(uow, member, Access::Mutate).await?;
    let campaign = uow
        .get_campaign(campaign_id, false)
        .await?
        .ok_or(DomainError::CampaignNotFound)?;
    let campaign = lock_if_counted(uow, campaign).await?;
    if !campaign.is_open(now) {
        return Err(DomainError::CampaignClosed.into());
    }
    let issue_from = check_limits(uow, &campaign, &member.member_id, true).await??;
    let issued = issue_entry(
        uow,
        &campaign,
        issue_from,
        &member.member_id,
        "admin".into(),
        now,
    );
    Ok(issued.await?)
}

/// Issues a coupon of `campaign` in a transaction of its own (`coupon_issue`).
async fn issue_entry(
    uow: &mut dyn LedgerRows,
    campaign: &Campaign,
    issue_from: Account,
    member_id: &str,
    source: String,
    now: DateTime<Utc>,
) -> Result<Coupon, StoreError> {
    let (coupon, posting) = issue(uow, campaign, issue_from, member_id, source, now).await?;
    let mut entry = system_entry("coupon_issue", member_id, now, vec![posting]);
    entry.metadata.push(("code".into(), coupon.code.clone()));
    uow.append_transaction(&entry).await?;
    Ok(coupon)
}

/// A rule (geo, visit) issues a coupon to a member (whose row the caller has locked) as
/// IssueCoupon would, with `source` naming the rule. A campaign that is gone, closed or out of
/// budget, or a member at its limit, issues nothing (None): the signal is not refused.
pub(super) async fn issue_for_rule(
    uow: &mut dyn LedgerRows,
    now: DateTime<Utc>,
    campaign_id: &str,
    member_id: &str,
    source: String,
) -> Result<Option<Coupon>, StoreError> {
    let Some((campaign, issue_from)) = issuable(uow, now, campaign_id, member_id).await? else {
        return Ok(None);
    };
    let issued = issue_entry(uow, &campaign, issue_from, member_id, source, now);
    Ok(Some(issued.await?))
}

/// A rule's coupon booked in the caller's transaction (a sale's): the coupon and its posting,
/// or None when the campaign is gone, closed or at a limit.
pub(super) async fn issue_in_entry(
    uow: &mut dyn LedgerRows,
    now: DateTime<Utc>,
    campaign_id: &str,
    member_id: &str,
    source: String,
) -> Result<Option<(Coupon, Posting)>, StoreError> {
    let Some((campaign, issue_from)) = issuable(uow, now, campaign_id, member_id).await? else {
        return Ok(None);
    };
    let issued = issue(uow, &campaign, issue_from, member_id, source, now);
    Ok(Some(issued.await?))
}

/// The campaign, and where its coupon comes from, if it may issue the member one now.
async fn issuable(
    uow: &mut dyn LedgerRows,
    now: DateTime<Utc>,
    campaign_id: &str,
    member_id: &str,
) -> Result<Option<(Campaign, Account)>, StoreError> {
    let Some(campaign) = uow.get_campaign(campaign_id, false).await? else {
        return Ok(None);
    };
    let campaign = lock_if_counted(uow, campaign).await?;
    if !campaign.is_open(now) {
        return Ok(None);
    }
    let issue_from = check_limits(uow, &campaign, member_id, true).await?;
    Ok(issue_from.ok().map(|issue_from| (campaign, issue_from)))
}

/// The sweeper's side: an active coupon past `valid_until` expires.
pub(super) async fn expire_if_due(
    uow: &mut dyn LedgerRows,
    code: &str,
    now: DateTime<Utc>,
) -> Result<bool, StoreError> {
    let Some(coupon) = uow.get_coupon(code, false).await? else {
        return Ok(false);
    };
    // Member first, then coupon: the lock order of every command (a merge moves coupons).
    let holder = coupon.member_id;
    uow.get_member(&holder, true).await?;
    let Some(mut coupon) = uow.get_coupon(code, true).await? else {
        return Ok(false);
    };
    // Moved by a merge in between: the next sweep expires it under its new holder's lock.
    let moved = coupon.member_id != holder;
    if moved || coupon.state != CouponState::Active || !coupon.is_expired(now) {
        return Ok(false);
    }
    coupon.state = CouponState::Expired;
    uow.update_coupon(&coupon).await?;
    let posting = unit(
        Account::Member(coupon.member_id.clone()),
        Account::CampaignExpired(coupon.campaign_id.clone()),
        &coupon.campaign_id,
    );
    let entry = system_entry("coupon_expire", &coupon.member_id, now, vec![posting]);
    uow.append_transaction(&entry).await?;
    Ok(true)
}

/// RevokeCoupon: an active coupon goes to `campaign:<id>:revoked` in a transaction of its own
/// (`coupon_revoke`, the reason in its metadata). Revoked coupons still count against the
/// campaign's limits: they were issued. A reserved coupon belongs to an open order, which
/// must be captured or voided first.
pub(super) async fn revoke(
    uow: &mut dyn LedgerRows,
    now: DateTime<Utc>,
    code: &str,
    reason: &str,
) -> CommandResult<Coupon> {
    let coupon = uow
        .get_coupon(code, true)
        .await?
        .ok_or_else(|| refusal(code, CouponReason::NotFound))?;
    match coupon.state {
        CouponState::Active if coupon.is_expired(now) => {
            return Err(refusal(code, CouponReason::Expired).into());
        }
        CouponState::Active => {}
        CouponState::Reserved => {
            return Err(DomainError::CouponReserved {
                code: code.to_string(),
            }
            .into());
        }
        CouponState::Redeemed | CouponState::Expired | CouponState::Revoked => {
            return Err(refusal(code, CouponReason::NotActive).into());
        }
    }
    Ok(revoke_row(uow, now, coupon, reason).await?)
}

/// Revokes an active coupon (its row locked by the caller) in a transaction of its own.
pub(super) async fn revoke_row(
    uow: &mut dyn LedgerRows,
    now: DateTime<Utc>,
    mut coupon: Coupon,
    reason: &str,
) -> Result<Coupon, StoreError> {
    debug_assert_eq!(coupon.state, CouponState::Active);
    coupon.state = CouponState::Revoked;
    uow.update_coupon(&coupon).await?;
    let posting = unit(
        Account::Member(coupon.member_id.clone()),
        Account::CampaignRevoked(coupon.campaign_id.clone()),
        &coupon.campaign_id,
    );
    let mut entry = system_entry("coupon_revoke", &coupon.member_id, now, vec![posting]);
    entry.metadata.push(("code".into(), coupon.code.clone()));
    entry.metadata.push(("reason".into(), reason.to_string()));
    uow.append_transaction(&entry).await?;
    Ok(coupon)
}

/// UpdateCampaign: the masked fields change under the campaign's lock. A total issue limit
/// below what is issued already is refused (the issued coupons stay); so is an end before the
/// start. A new limit funds or draws down the stock (`restock`). An end at or before now ends
/// the campaign early: nothing more is issued, and its public code no longer applies.
pub(super) async fn update_campaign(
    uow: &mut dyn LedgerRows,
    patch: &CampaignPatch,
    now: DateTime<Utc>,
) -> CommandResult<Campaign> {
    let campaign = uow
        .get_campaign(&patch.campaign_id, true)
        .await?
        .ok_or(DomainError::CampaignNotFound)?;
    let mut changed = patch.apply(&campaign);
    if let (Some(start), Some(end)) = (changed.starts_at, changed.ends_at)
        && end < start
    {
        return Err(
            DomainError::invalid("campaign.ends_at", "must not be before starts_at").into(),
        );
    }
    let restocking = restock(uow, &campaign, &mut changed).await??;
    book_stock(uow, &campaign, restocking, now).await?;
    if changed != campaign {
        uow.update_campaign(&changed).await?;
    }
    Ok(changed)
}

impl crate::domain::command::CouponCommand {
    pub(super) fn plan(&self, plan: &mut super::batch::Plan) {
        use crate::domain::command::CouponCommand::*;
        match self {
            IssueCoupon { member, .. } => {
                plan.member(member);
                plan.wants(1, 0);
            }
            RevokeCoupon { code, .. } => {
                plan.keys().coupon_codes.push(code.clone());
                plan.wants(1, 0);
            }
            CreateCampaign(_) | UpdateCampaign(_) => {}
        }
    }

    pub(super) async fn run(
        &self,
        uow: &mut dyn LedgerRows,
        reference: &super::reference::Reference,
        caller: &crate::domain::auth::Caller,
        now: DateTime<Utc>,
    ) -> CommandResult<crate::domain::command::Reply> {
        use crate::domain::{auth::Operation, command::CouponCommand::*, command::Reply};
        match self {
            CreateCampaign(campaign) => {
                caller.require(Operation::ManageCampaigns)?;
                let created = create_campaign(uow, now, campaign).await?;
                reference.campaigns_changed();
                Ok(Reply::Campaign(created))
            }
            IssueCoupon {
                campaign_id,
                member,
            } => {
                caller.require(Operation::IssueCoupon)?;
                issue_by_admin(uow, now, campaign_id, member)
                    .await
                    .map(Reply::Coupon)
            }
            RevokeCoupon { code, reason } => {
                caller.require(Operation::RevokeCoupon)?;
                revoke(uow, now, code, reason).await.map(Reply::Coupon)
            }
            UpdateCampaign(patch) => {
                caller.require(Operation::ManageCampaigns)?;
                let updated = update_campaign(uow, patch, now).await?;
                reference.campaigns_changed();
                Ok(Reply::Campaign(updated))
            }
        }
    }
}

impl super::Engine {
    /// At start: each limited campaign an older omo stored (its issues counted under its
    /// lock) gets its stock, once: its limit less the coupons it issued. How many did.
    pub async fn adopt_campaign_stock(&self) -> Result<usize, super::EngineError> {
        let mut uow = self.store().begin_read().await?;
        let waiting: Vec<String> = uow
            .list_campaigns()
            .await?
            .into_iter()
            .filter(|campaign| campaign.issue_limit > 0 && campaign.stock_parts == 0)
            .map(|campaign| campaign.campaign_id)
            .collect();
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
                    for campaign_id in &waiting {
                        let mut campaign = campaign_of(uow, campaign_id, true).await?;
                        // Another replica may have adopted it meanwhile.
                        if campaign.issue_limit == 0 || campaign.stock_parts > 0 {
                            continue;
                        }
                        let issued = uow.count_coupons(campaign_id, None).await?;
                        if issued > i64::from(campaign.issue_limit) {
                            // Its stock would be negative: it stays counted (and exhausted)
                            // until UpdateCampaign gives it a limit at least what it issued.
                            tracing::warn!(
                                campaign_id,
                                issued,
                                issue_limit = campaign.issue_limit,
                                "a limited campaign issued more than its limit before it had a \
                                 stock; it gets one when its limit is raised to what it issued"
                            );
                            continue;
                        }
                        campaign.stock_parts = stock::STOCK_PARTS;
                        let left = i64::from(campaign.issue_limit) - issued;
                        book_stock(uow, &campaign, fund(&campaign, left), now).await?;
                        uow.update_campaign(&campaign).await?;
                        adopted += 1;
                    }
                    reference.campaigns_changed();
                    Ok(adopted)
                })
            })
            .await
    }
}
