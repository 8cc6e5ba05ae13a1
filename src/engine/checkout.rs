//! EC checkout and store registers: Authorize → Capture / Void (or hold expiry) → Refund, and
//! RecordSale (a register sale captured in one step). Each is one balanced ledger transaction.

use super::rows::LedgerRows;
use chrono::{DateTime, Duration, Utc};
use rust_decimal::Decimal;

use super::{
    CommandResult, Failure, coupons,
    members::{self, Access},
    points,
    reference::Reference,
    rules, tiers,
};
use crate::domain::{
    Account, Asset, DomainError, Money,
    auth::Caller,
    command::{OrderRequest, RefundLine, RefundScope},
    coupon::CouponContext,
    lots::is_expired,
    model::{
        EarnPart, LineItem, Lot, MemberRow, Order, OrderLine, OrderState, Posting, Program,
        RefundResult,
    },
    ports::{NewTransaction, OrderClash, StoreError},
    pricing::{self, Priced},
    tier,
};

/// How far ahead of the server clock a register's `occurred_at` may be (clock skew).
const MAX_CLOCK_SKEW_SECONDS: i64 = 300;

pub(super) async fn authorize(
    uow: &mut dyn LedgerRows,
    reference: &Reference,
    caller: &Caller,
    now: DateTime<Utc>,
    request: &OrderRequest,
) -> CommandResult<Order> {
    caller.require_checkout(request.channel, &request.store_id)?;
    let member = members::resolve(uow, &request.member, Access::Mutate).await?;
    ensure_new_order(uow, reference, request).await?;
    let program = reference.program(uow).await?;
    let (lots, available) = points::spendable(uow, &member.member_id, now).await?;
    let (mut priced, applied) =
        price_strict(uow, &program, &member, request, available, now).await?;
    // The member's tier multiplies the base (previewed here; the capture books this base).
    priced.points_to_earn =
        tiers::base_points(&program, request.channel, priced.amount_due, &member);
    let purchase = purchase_of(request, &member.member_id, &priced, now);
    let preview = rules::decide_purchase(uow, reference, &program, &purchase, false).await?;
    // The base alone may not pass the program's cap; the rules give what room it leaves.
    program.check_earn_cap(priced.points_to_earn)?;
    let cap = program.max_points_per_order;
    let breakdown = preview
        .within_cap(priced.points_to_earn, cap)
        .breakdown(priced.points_to_earn);
    let order_id = &request.order_id;
    points::take_points(uow, &lots, order_id, priced.points_redeemed, true, now).await?;
    let hold = Account::Hold(order_id.clone());
    let mut postings = Vec::new();
    push(
        &mut postings,
        Account::Member(member.member_id.clone()),
        hold,
        Asset::Points,
        priced.points_redeemed,
    );
    postings.extend(coupons::reserve(uow, &applied, &member.member_id, order_id, now).await?);
    let mut order = new_order(request, &member, &priced, &applied, now);
    // What the rules would give now; the capture decides them again.
    order.points_earned = breakdown.iter().map(|part| part.points).sum();
    order.earn_breakdown = breakdown;
    order.hold_expires_at = Some(now + Duration::seconds(program.hold_ttl_seconds.into()));
    uow.insert_order(&order).await?;
    append(uow, "authorize", &order, &member.member_id, now, postings).await?;
    Ok(order)
}

pub(super) async fn record_sale(
    uow: &mut dyn LedgerRows,
    reference: &Reference,
    caller: &Caller,
    now: DateTime<Utc>,
    request: &OrderRequest,
) -> CommandResult<Order> {
    caller.require_checkout(request.channel, &request.store_id)?;
    let occurred_at = request.occurred_at.unwrap_or(now);
    if occurred_at > now + Duration::seconds(MAX_CLOCK_SKEW_SECONDS) {
        return Err(DomainError::invalid("occurred_at", "is in the future").into());
    }
    let mut member = members::resolve(uow, &request.member, Access::Mutate).await?;
    ensure_new_order(uow, reference, request).await?;
    let program = reference.program(uow).await?;
    program.check_offline_age(occurred_at, now)?;
    let (lots, available) = points::spendable(uow, &member.member_id, now).await?;
    let (mut priced, applied) =
        price_strict(uow, &program, &member, request, available, now).await?;
    // The member's tier (before this sale) multiplies the base.
    priced.points_to_earn =
        tiers::base_points(&program, request.channel, priced.amount_due, &member);
    let member_id = member.member_id.clone();
    let purchase = purchase_of(request, &member_id, &priced, occurred_at);
    // The base alone may not pass the program's cap; the rules give what room it leaves.
    let base_points = priced.points_to_earn;
    program.check_earn_cap(base_points)?;
    let decided = rules::decide_purchase(uow, reference, &program, &purchase, true)
        .await?
        .within_cap(base_points, program.max_points_per_order);
    points::take_points(
        uow,
        &lots,
        &request.order_id,
        priced.points_redeemed,
        false,
        now,
    )
    .await?;
    let mut postings = Vec::new();
    push(
        &mut postings,
        Account::Member(member_id.clone()),
        Account::redeemed(request.channel, &request.store_id),
        Asset::Points,
        priced.points_redeemed,
    );
    postings.extend(coupons::redeem_now(uow, &applied, &member_id, &request.order_id, now).await?);
    let mut order = new_order(request, &member, &priced, &applied, occurred_at);
    order.state = OrderState::Captured;
    order.created_at = now;
    // A scan claimed this receipt first: the register is the truth, the sale earns for its
    // buyer and the scan gives its points back (below).
    let scanned = super::receipts::scan_of_sale(uow, request).await?;
    let earned = (&purchase, &decided, base_points, occurred_at);
    postings.extend(book_earning(uow, &program, &mut order, earned, now).await?);
    postings.extend(coupons::issue_on_capture(uow, reference, &order, &member_id, now).await?);
    uow.insert_order(&order).await?;
    let mut sale = entry("sale", &order, &member_id, now, postings);
    // A register sale replayed after an offline spell happened when the register says.
    sale.occurred_at = occurred_at;
    if let Some(receipt_id) = &scanned {
        sale.metadata
            .push(("reversed_receipt".into(), receipt_id.clone()));
    }
    uow.append_transaction(&sale).await?;
    member.lifetime_earned_points += order.points_earned;
    member.lifetime_redeemed_points += order.points_redeemed;
    let paid = tier::to_e4(order.amount_due);
    tiers::count_spend(uow, &program, &member_id, order.occurred_at, paid).await?;
    uow.update_member(&member).await?;
    // After the buyer's row is written: the scanner may be the buyer.
    if let Some(receipt_id) = &scanned {
        let taken = (receipt_id.as_str(), order.order_id.as_str());
        super::receipts::yield_to_sale(uow, reference, taken, now).await?;
    }
    // After the scan gave its spend back, so that the purchase counts once.
    let mut member = members::current_owner(uow, &member_id).await?;
    if tiers::raise(uow, reference, &program, &mut member, now).await? {
        uow.update_member(&member).await?;
    }
    // A register sale is a visit of its store (API.md: whatever the signal).
    if order.channel == crate::domain::model::Channel::Store {
        let at_store = (order.store_id.as_str(), occurred_at);
        let source = crate::domain::ports::VisitSource::Sale;
        super::engagement::record_store_visit(uow, reference, &member_id, at_store, source, now)
            .await?;
    }
    Ok(order)
}

pub(super) async fn capture(
    uow: &mut dyn LedgerRows,
    reference: &Reference,
    caller: &Caller,
    now: DateTime<Utc>,
    order_id: &str,
) -> CommandResult<Order> {
    let mut order = load_order(uow, caller, order_id).await?;
    match order.state {
        OrderState::Authorized => {}
        // The sweeper released this hold already: refused as if the capture had found it
        // expired itself, so the answer does not depend on when the sweeper ran.
        OrderState::Expired => return Err(DomainError::HoldExpired.into()),
        _ => return Err(state_error(&order, "capture")),
    }
    let mut member = members::current_owner(uow, &order.member_id).await?;
    if order.hold_expires_at.is_some_and(|at| at <= now) {
        expire_hold(uow, &mut order, &member.member_id, now).await?;
        return Err(Failure::RefusedAfterWrites(DomainError::HoldExpired));
    }
    let program = reference.program(uow).await?;
    points::resolve_hold(uow, order_id, true, now).await?;
    let mut postings = Vec::new();
    push(
        &mut postings,
        Account::Hold(order.order_id.clone()),
        Account::redeemed(order.channel, &order.store_id),
        Asset::Points,
        order.points_redeemed,
    );
    postings.extend(coupons::redeem_reserved(uow, order_id, now).await?);
    // The base the authorization priced; the rules are decided again now, under their locks.
    let base_points = order
        .earn_parts()
        .iter()
        .filter(|part| part.rule_id.is_empty())
        .map(|part| part.points)
        .sum();
    let items: Vec<LineItem> = order.lines.iter().map(|line| line.item.clone()).collect();
    let store_id = order.store_id.clone();
    let purchase = rules::Purchase {
        member_id: &member.member_id,
        channel: order.channel,
        store_id: &store_id,
        lines: &items,
        total: order.total,
        paid: order.amount_due,
        at: now,
    };
    let decided = rules::decide_purchase(uow, reference, &program, &purchase, true)
        .await?
        .within_cap(base_points, program.max_points_per_order);
    let earned = (&purchase, &decided, base_points, now);
    let earn_postings = book_earning(uow, &program, &mut order, earned, now).await?;
    postings.extend(earn_postings);
    postings
        .extend(coupons::issue_on_capture(uow, reference, &order, &member.member_id, now).await?);
    order.state = OrderState::Captured;
    uow.update_order(&order).await?;
    append(uow, "capture", &order, &member.member_id, now, postings).await?;
    member.lifetime_earned_points += order.points_earned;
    member.lifetime_redeemed_points += order.points_redeemed;
    let paid = tier::to_e4(order.amount_due);
    tiers::count_spend(uow, &program, &member.member_id, order.occurred_at, paid).await?;
    tiers::raise(uow, reference, &program, &mut member, now).await?;
    uow.update_member(&member).await?;
    Ok(order)
}

pub(super) async fn void(
    uow: &mut dyn LedgerRows,
    caller: &Caller,
    now: DateTime<Utc>,
    order_id: &str,
) -> CommandResult<Order> {
    let mut order = open_order(uow, caller, order_id, "void").await?;
    let member = members::current_owner(uow, &order.member_id).await?;
    let postings = release_hold(uow, &order, &member.member_id, now).await?;
    order.state = OrderState::Voided;
    uow.update_order(&order).await?;
    append(uow, "void", &order, &member.member_id, now, postings).await?;
    Ok(order)
}

/// The sweeper's side of a hold: releases an authorized order whose hold expired.
/// Returns false when there was nothing to do (already resolved, or not yet expired).
pub(super) async fn expire_hold_if_due(
    uow: &mut dyn LedgerRows,
    order_id: &str,
    now: DateTime<Utc>,
) -> Result<bool, StoreError> {
    let Some(mut order) = uow.get_order(order_id, true).await? else {
        return Ok(false);
    };
    let due =
        order.state == OrderState::Authorized && order.hold_expires_at.is_some_and(|at| at <= now);
    if !due {
        return Ok(false);
    }
    let member = match members::current_owner(uow, &order.member_id).await {
        Ok(member) => member,
        Err(Failure::Internal(error)) => return Err(error),
        Err(_) => {
            return Err(StoreError::Corrupt(format!(
                "order {order_id} has no member"
            )));
        }
    };
    expire_hold(uow, &mut order, &member.member_id, now).await?;
    Ok(true)
}

async fn expire_hold(
    uow: &mut dyn LedgerRows,
    order: &mut Order,
    member_id: &str,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    let postings = release_hold(uow, order, member_id, now).await?;
    order.state = OrderState::Expired;
    uow.update_order(order).await?;
    append(uow, "hold_expired", order, member_id, now, postings).await?;
    Ok(())
}

/// Gives an order's held points and coupons back (points of lots that expired meanwhile go
/// to `program:expired`).
async fn release_hold(
    uow: &mut dyn LedgerRows,
    order: &Order,
    member_id: &str,
    now: DateTime<Utc>,
) -> Result<Vec<Posting>, StoreError> {
    let (returned, expired) = points::resolve_hold(uow, &order.order_id, false, now).await?;
    let hold = Account::Hold(order.order_id.clone());
    let mut postings = Vec::new();
    push(
        &mut postings,
        hold.clone(),
        Account::Member(member_id.to_string()),
        Asset::Points,
        returned,
    );
    push(
        &mut postings,
        hold,
        Account::ProgramExpired,
        Asset::Points,
        expired,
    );
    postings.extend(coupons::release(uow, &order.order_id, member_id, now).await?);
    Ok(postings)
}

pub(super) async fn refund(
    uow: &mut dyn LedgerRows,
    reference: &Reference,
    caller: &Caller,
    now: DateTime<Utc>,
    order_id: &str,
    scope: &RefundScope,
) -> CommandResult<RefundResult> {
    let mut order = load_order(uow, caller, order_id).await?;
    if !matches!(
        order.state,
        OrderState::Captured | OrderState::PartiallyRefunded
    ) {
        return Err(state_error(&order, "refund"));
    }
    let program = reference.program(uow).await?;
    let amount = refund_amount(&mut order, scope, program.currency_exponent())?;
    let refundable = order.total.saturating_sub(order.refunded_amount);
    if amount > refundable {
        return Err(DomainError::RefundExceedsTotal {
            requested: amount.to_string(),
            refundable: refundable.to_string(),
        }
        .into());
    }
    let mut member = members::current_owner(uow, &order.member_id).await?;
    let lots = points::settle_member(uow, &member.member_id, now).await?;
    let refunded = order.refunded_amount + amount;

    // Each part of what the order earned gives back its own share, to the account it came
    // from (the base to `program:issued`, a rule's points to the rule's account). The rules'
    // parts come first: what the member can still give back goes to them, so that a budget
    // is refilled only with points that really came back.
    let mut parts = order.earn_parts();
    parts.sort_by_key(|part| part.rule_id.is_empty());
    let mut returns = Vec::with_capacity(parts.len());
    let mut reversed_breakdown = Vec::new();
    for part in &mut parts {
        let target = pricing::share_of_points(part.points, refunded, order.total);
        let take = target - part.reversed;
        part.reversed = target;
        if take > 0 {
            reversed_breakdown.push(EarnPart {
                rule_id: part.rule_id.clone(),
                points: take,
                reversed: 0,
            });
        }
        returns.push((rules::part_account(uow, part).await?, take));
    }
    reversed_breakdown.sort_by_key(|part| !part.rule_id.is_empty());
    let reverse: i64 = returns.iter().map(|(_, take)| take).sum();
    let clawed = clawback(uow, lots, &member.member_id, &order.order_id, &returns, now).await?;
    for (part, recovered) in parts.iter().zip(&clawed.recovered) {
        if !part.rule_id.is_empty() {
            rules::count_reversal(uow, &part.rule_id, &member.member_id, *recovered).await?;
        }
    }
    parts.sort_by_key(|part| !part.rule_id.is_empty());
    let restore = pricing::share_of_points(order.points_redeemed, refunded, order.total);
    let (restored, restore_posting) =
        restore_points(uow, &order, &member.member_id, restore, now).await?;

    let mut postings = clawed.postings;
    postings.extend(restore_posting);
    let fully = refunded >= order.total;
    let coupons_restored = if fully {
        let (codes, coupon_postings) =
            coupons::restore(uow, order_id, &member.member_id, now).await?;
        postings.extend(coupon_postings);
        codes
    } else {
        Vec::new()
    };
    order.refunded_amount = refunded;
    order.points_reversed += reverse;
    if !order.earn_breakdown.is_empty() {
        order.earn_breakdown = parts;
    }
    order.points_restored += restored;
    order.points_pending -= clawed.from_pending;
    order.state = if fully {
        OrderState::Refunded
    } else {
        OrderState::PartiallyRefunded
    };
    uow.update_order(&order).await?;
    let mut entry = entry("refund", &order, &member.member_id, now, postings);
    entry.metadata.push(("amount".into(), amount.to_string()));
    uow.append_transaction(&entry).await?;
    member.lifetime_earned_points -= reverse;
    member.lifetime_redeemed_points -= restored;
    uow.update_member(&member).await?;
    // The refund takes its share of the paid amount back from the month the order counted in
    // (a tier is lowered only by the monthly review).
    let before = tier::refunded_share_e4(
        order.amount_due,
        refunded.saturating_sub(amount),
        order.total,
    );
    let after = tier::refunded_share_e4(order.amount_due, refunded, order.total);
    tiers::count_spend(
        uow,
        &program,
        &member.member_id,
        order.occurred_at,
        before - after,
    )
    .await?;
    Ok(RefundResult {
        order,
        points_restored: restored,
        points_reversed: reverse,
        points_shortfall: clawed.shortfall,
        coupons_restored,
        reversed_breakdown,
    })
}

/// The amount a refund gives back. By lines, each line is refunded by cumulative share of its
/// quantity (so unit-by-unit refunds add up to the line exactly) and never beyond what is left.
fn refund_amount(order: &mut Order, scope: &RefundScope, exponent: u32) -> CommandResult<Money> {
    let lines = match scope {
        RefundScope::Amount(amount) => return Ok(*amount),
        RefundScope::Lines(lines) => lines,
    };
    let mut violations = Vec::new();
    let mut total = Money::ZERO;
    for (i, RefundLine { line_id, quantity }) in lines.iter().enumerate() {
        let Some(line) = order
            .lines
            .iter_mut()
            .find(|line| &line.item.line_id == line_id)
        else {
            violations.push(crate::domain::FieldViolation::new(
                format!("lines[{i}].line_id"),
                format!("the order has no line {line_id:?}"),
            ));
            continue;
        };
        let left = line.item.quantity - line.refunded_quantity;
        if *quantity > left {
            violations.push(crate::domain::FieldViolation::new(
                format!("lines[{i}].quantity"),
                format!("only {left} of this line are left to refund"),
            ));
            continue;
        }
        let before = line_share(&line.item, line.refunded_quantity, exponent);
        line.refunded_quantity += quantity;
        let after = line_share(&line.item, line.refunded_quantity, exponent);
        total = total + after.saturating_sub(before);
    }
    if violations.is_empty() {
        Ok(total)
    } else {
        Err(DomainError::InvalidArgument(violations).into())
    }
}

/// floor(line amount × quantity / line quantity), in the currency's minor unit.
fn line_share(item: &LineItem, quantity: i32, exponent: u32) -> Money {
    let share =
        item.amount.amount() * Decimal::from(quantity) / Decimal::from(item.quantity.max(1));
    Money::from_decimal_saturating(share).floor_to(exponent)
}

/// Points taken back for a refund, and from where.
struct Clawback {
    postings: Vec<Posting>,
    from_pending: i64,
    shortfall: i64,
    /// What each of the `returns` got back from the member (the rest is shortfall).
    recovered: Vec<i64>,
}

/// Takes back what an order earned — `returns`, the points each account gets back — from the
/// member's settled `lots`: its own pending lots first, then available points (the order's
/// own lots first, then soonest expiry). What the member already spent is booked to
/// `program:shortfall`: the balance never goes below zero.
async fn clawback(
    uow: &mut dyn LedgerRows,
    mut lots: Vec<Lot>,
    member_id: &str,
    order_id: &str,
    returns: &[(Account, i64)],
    now: DateTime<Utc>,
) -> Result<Clawback, StoreError> {
    let points: i64 = returns.iter().map(|(_, take)| take).sum();
    lots.sort_by_key(|lot| {
        let own = lot.order_id == order_id;
        let pending_own = own && lot.state == crate::domain::model::LotState::Pending;
        (
            !pending_own,
            !own,
            lot.expires_at.is_none(),
            lot.expires_at,
            lot.lot_id,
        )
    });
    let (mut left, mut from_pending, mut from_available) = (points, 0, 0);
    for mut lot in lots {
        if left == 0 {
            break;
        }
        let pending = lot.state == crate::domain::model::LotState::Pending;
        let usable = if is_expired(&lot, now) {
            0
        } else {
            lot.free_points()
        };
        if (pending && lot.order_id != order_id) || usable == 0 {
            continue;
        }
        let take = left.min(usable);
        lot.remaining_points -= take;
        uow.update_lot(&lot).await?;
        if pending {
            from_pending += take
        } else {
            from_available += take
        }
        left -= take;
    }
    let sources = [
        (Account::MemberPending(member_id.into()), from_pending),
        (Account::Member(member_id.into()), from_available),
    ];
    let (mut postings, recovered) = allocate(&sources, returns);
    // What the member already spent is the program's loss, not a rule's budget back.
    push(
        &mut postings,
        Account::ProgramShortfall,
        Account::ProgramIssued,
        Asset::Points,
        left,
    );
    Ok(Clawback {
        postings,
        from_pending,
        shortfall: left,
        recovered,
    })
}

/// Postings that move what `sources` give to what `destinations` are owed, destinations
/// served in order and each source drawn in order; and what each destination got (less than
/// it is owed when the sources run out).
fn allocate(
    sources: &[(Account, i64)],
    destinations: &[(Account, i64)],
) -> (Vec<Posting>, Vec<i64>) {
    let mut postings = Vec::new();
    let mut got = Vec::with_capacity(destinations.len());
    let mut sources = sources.iter().filter(|(_, amount)| *amount > 0);
    let mut source = sources.next().cloned();
    for (to, amount) in destinations {
        let mut owed = *amount;
        while owed > 0 {
            let Some((from, left)) = source.as_mut() else {
                break;
            };
            let take = owed.min(*left);
            push(&mut postings, from.clone(), to.clone(), Asset::Points, take);
            (owed, *left) = (owed - take, *left - take);
            if *left == 0 {
                source = sources.next().cloned();
            }
        }
        got.push(amount - owed);
    }
    (postings, got)
}

/// Gives back redeemed points up to a cumulative `target`, into the lots they came from
/// (latest expiry first), keeping each lot's expiry. Points of lots that have expired since are
/// not given back. Returns the points given back and their posting.
async fn restore_points(
    uow: &mut dyn LedgerRows,
    order: &Order,
    member_id: &str,
    target: i64,
    now: DateTime<Utc>,
) -> Result<(i64, Option<Posting>), StoreError> {
    let mut order_lots = Vec::new();
    for order_lot in uow.order_lots(&order.order_id).await? {
        let lot = uow.get_lot(order_lot.lot_id).await?.ok_or_else(|| {
            StoreError::Corrupt(format!(
                "lot {} of order {} is gone",
                order_lot.lot_id, order.order_id
            ))
        })?;
        order_lots.push((order_lot, lot));
    }
    order_lots
        .sort_by_key(|(_, lot)| std::cmp::Reverse((lot.expires_at.is_none(), lot.expires_at)));
    let considered: i64 = order_lots.iter().map(|(ol, _)| ol.restored_points).sum();
    let (mut left, mut restored) = ((target - considered).max(0), 0);
    for (mut order_lot, mut lot) in order_lots {
        let take = left.min(order_lot.points - order_lot.restored_points);
        if take == 0 {
            continue;
        }
        order_lot.restored_points += take;
        uow.update_order_lot(&order_lot).await?;
        left -= take;
        if !is_expired(&lot, now) {
            lot.remaining_points += take;
            uow.update_lot(&lot).await?;
            restored += take;
        }
    }
    let from = Account::redeemed(order.channel, &order.store_id);
    let posting = (restored > 0).then(|| {
        Posting::new(
            &from,
            &Account::Member(member_id.into()),
            &Asset::Points,
            restored,
        )
    });
    Ok((restored, posting))
}

/// Prices an order for Authorize/RecordSale: every coupon must apply, and the points must be
/// there.
async fn price_strict(
    uow: &mut dyn LedgerRows,
    program: &Program,
    member: &MemberRow,
    request: &OrderRequest,
    available: i64,
    now: DateTime<Utc>,
) -> CommandResult<(Priced, Vec<coupons::Applied>)> {
    let total = pricing::basket_total(&request.lines);
    let ctx = CouponContext {
        member_id: &member.member_id,
        channel: request.channel,
        store_id: &request.store_id,
        total,
        now,
        lines: &request.lines,
    };
    let evaluated = coupons::evaluate(
        uow,
        &ctx,
        &request.coupon_codes,
        program.currency_exponent(),
        true,
    )
    .await?;
    let applied = evaluated
        .into_iter()
        .map(|e| e.verdict)
        .collect::<Result<Vec<_>, _>>()?;
    let discount = applied.iter().map(|a| a.discount).sum();
    let priced = pricing::price(
        program,
        request.channel,
        total,
        discount,
        request.points_to_redeem,
        available,
        true,
    )?;
    Ok((priced, applied))
}

async fn ensure_new_order(
    uow: &mut dyn LedgerRows,
    reference: &Reference,
    request: &OrderRequest,
) -> CommandResult<()> {
    if !request.store_id.is_empty() && !reference.store_exists(uow, &request.store_id).await? {
        return Err(DomainError::StoreNotFound.into());
    }
    let clash = uow
        .order_clash(
            &request.order_id,
            &request.store_id,
            &request.register_id,
            &request.receipt_no,
        )
        .await?;
    match clash {
        None => {}
        Some(OrderClash::OrderId) => {
            return Err(DomainError::OrderExists(request.order_id.clone()).into());
        }
        Some(OrderClash::Receipt) => {
            return Err(DomainError::ReceiptExists {
                store_id: request.store_id.clone(),
                register_id: request.register_id.clone(),
                receipt_no: request.receipt_no.clone(),
            }
            .into());
        }
    }
    Ok(())
}

/// Loads and locks an order the caller may act on.
async fn load_order(
    uow: &mut dyn LedgerRows,
    caller: &Caller,
    order_id: &str,
) -> CommandResult<Order> {
    let order = uow
        .get_order(order_id, true)
        .await?
        .ok_or(DomainError::OrderNotFound)?;
    // An order outside the caller's reach (another store's, another channel's) is answered
    // exactly like a missing one: its existence is not the caller's to learn.
    if !caller.may_see_order(order.channel, &order.store_id) {
        return Err(DomainError::OrderNotFound.into());
    }
    Ok(order)
}

/// Loads and locks an authorized order (Capture, Void).
async fn open_order(
    uow: &mut dyn LedgerRows,
    caller: &Caller,
    order_id: &str,
    action: &str,
) -> CommandResult<Order> {
    let order = load_order(uow, caller, order_id).await?;
    if order.state != OrderState::Authorized {
        return Err(state_error(&order, action));
    }
    Ok(order)
}

fn state_error(order: &Order, action: &str) -> Failure {
    DomainError::OrderState {
        state: order.state.as_str().to_string(),
        action: action.to_string(),
    }
    .into()
}

fn new_order(
    request: &OrderRequest,
    member: &MemberRow,
    priced: &Priced,
    applied: &[coupons::Applied],
    at: DateTime<Utc>,
) -> Order {
    Order {
        order_id: request.order_id.clone(),
        member_id: member.member_id.clone(),
        state: OrderState::Authorized,
        channel: request.channel,
        store_id: request.store_id.clone(),
        register_id: request.register_id.clone(),
        receipt_no: request.receipt_no.clone(),
        lines: request
            .lines
            .iter()
            .map(|item| OrderLine {
                item: item.clone(),
                refunded_quantity: 0,
            })
            .collect(),
        total: priced.total,
        coupon_discount: priced.coupon_discount,
        points_redeemed: priced.points_redeemed,
        amount_due: priced.amount_due,
        points_earned: priced.points_to_earn,
        points_pending: 0,
        coupon_codes: applied.iter().map(coupons::Applied::code).collect(),
        hold_expires_at: None,
        refunded_amount: Money::ZERO,
        points_reversed: 0,
        points_restored: 0,
        occurred_at: at,
        created_at: at,
        earn_breakdown: Vec::new(),
    }
}

/// What a purchase is, for its rules.
fn purchase_of<'a>(
    request: &'a OrderRequest,
    member_id: &'a str,
    priced: &Priced,
    at: DateTime<Utc>,
) -> rules::Purchase<'a> {
    rules::Purchase {
        member_id,
        channel: request.channel,
        store_id: &request.store_id,
        lines: &request.lines,
        total: priced.total,
        paid: priced.amount_due,
        at,
    }
}

/// Books what a captured order earns — the base and each rule's award, decided — into lots
/// and postings, and the order's `points_earned`, `points_pending` and breakdown.
/// Returns the postings (points and the rules' coupons).
async fn book_earning(
    uow: &mut dyn LedgerRows,
    program: &Program,
    order: &mut Order,
    (purchase, decided, base_points, earned_at): (
        &rules::Purchase<'_>,
        &rules::Decided,
        i64,
        DateTime<Utc>,
    ),
    now: DateTime<Utc>,
) -> Result<Vec<Posting>, StoreError> {
    let booked = rules::book(uow, purchase, decided, base_points, now).await?;
    let owner = (purchase.member_id, order.order_id.as_str(), order.channel);
    let (mut postings, pending) =
        points::earn_parts(uow, program, owner, &booked.earnings, earned_at).await?;
    order.points_earned = booked.breakdown.iter().map(|part| part.points).sum();
    order.points_pending = pending;
    order.earn_breakdown = booked.breakdown;
    postings.extend(booked.coupon_postings);
    Ok(postings)
}

/// Adds a posting unless it moves nothing.
fn push(postings: &mut Vec<Posting>, from: Account, to: Account, asset: Asset, amount: i64) {
    if amount > 0 {
        postings.push(Posting::new(&from, &to, &asset, amount));
    }
}

/// An order's transaction, journalled under the member who owns the order's points now.
fn entry(
    kind: &'static str,
    order: &Order,
    member_id: &str,
    now: DateTime<Utc>,
    postings: Vec<Posting>,
) -> NewTransaction {
    NewTransaction {
        kind,
        member_id: member_id.to_string(),
        occurred_at: now,
        recorded_at: now,
        channel: Some(order.channel),
        store_id: order.store_id.clone(),
        order_id: order.order_id.clone(),
        postings,
        metadata: Vec::new(),
    }
}

/// Appends an order's transaction. Hold resolutions are always journalled (even with no
/// postings) so that `omo verify` can see every order's hold resolve exactly once.
async fn append(
    uow: &mut dyn LedgerRows,
    kind: &'static str,
    order: &Order,
    member_id: &str,
    now: DateTime<Utc>,
    postings: Vec<Posting>,
) -> Result<(), StoreError> {
    uow.append_transaction(&entry(kind, order, member_id, now, postings))
        .await?;
    Ok(())
}

impl crate::domain::command::CheckoutCommand {
    pub(super) fn plan(&self, plan: &mut super::batch::Plan) {
        use crate::domain::{command::CheckoutCommand::*, receipt::register_receipt_key};
        match self {
            Authorize(request) | RecordSale(request) => {
                plan.member(&request.member);
                let keys = plan.keys();
                keys.order_ids.push(request.order_id.clone());
                keys.coupon_codes
                    .extend(request.coupon_codes.iter().cloned());
                if !request.receipt_no.is_empty() {
                    keys.receipts.push(register_receipt_key(
                        &request.store_id,
                        &request.register_id,
                        &request.receipt_no,
                    ));
                }
                // A sale earns at once (a lot); an authorization only holds.
                plan.wants(1, usize::from(matches!(self, RecordSale(_))));
            }
            Capture { order_id } | Void { order_id } | Refund { order_id, .. } => {
                plan.keys().order_ids.push(order_id.clone());
                plan.wants(1, usize::from(matches!(self, Capture { .. })));
            }
        }
    }

    pub(super) async fn run(
        &self,
        uow: &mut dyn LedgerRows,
        reference: &Reference,
        caller: &Caller,
        now: DateTime<Utc>,
    ) -> CommandResult<crate::domain::command::Reply> {
        use crate::domain::command::{CheckoutCommand::*, Reply};
        match self {
            Authorize(request) => authorize(uow, reference, caller, now, request)
                .await
                .map(Reply::Order),
            RecordSale(request) => record_sale(uow, reference, caller, now, request)
                .await
                .map(Reply::Order),
            Capture { order_id } => capture(uow, reference, caller, now, order_id)
                .await
                .map(Reply::Order),
            Void { order_id } => void(uow, caller, now, order_id).await.map(Reply::Order),
            Refund { order_id, scope } => refund(uow, reference, caller, now, order_id, scope)
                .await
                .map(Reply::Refund),
        }
    }
}
