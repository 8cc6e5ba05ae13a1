//! Photographed receipts: receipt rules, submissions and their review. What a receipt earns is
//! decided by `domain::receipt`; this module loads the facts and books the outcome in the
//! ledger.
//!
//! Exactly once per receipt across all members: a receipt that earns (or may earn, in review)
//! claims its (store, register, receipt_no) and its photograph. The register receipt's claim
//! is one row shared with register sales, keyed as `receipt::register_receipt_key` names a
//! receipt however it was typed. The claim is read before the receipt is judged, and the
//! stores' unique keys refuse a second claim that a concurrent batch (on any replica) wrote in
//! between: that batch's flush fails, its commands run again one by one, and the retry sees
//! the claim and answers DUPLICATE (or ALREADY_EARNED, or takes a scan's claim over).
//!
//! The register is the truth about who bought: a register sale of a receipt a scan holds
//! takes the claim over, earns for its buyer, and the scan's points are reversed
//! (`yield_to_sale`).
//!
//! Points of a receipt waiting for review are a pending lot with no maturity (the sweeper
//! never matures it) on the member's pending account: the review makes the lot available, or
//! empties it back to `program:issued`.

use chrono::{DateTime, SubsecRound, Utc};
use chrono_tz::Tz;

use super::{
    CommandResult, coupons,
    engagement::record_store_visit,
    members::{self, Access},
    points,
    reference::Reference,
    rows::LedgerRows,
};
use crate::domain::{
    Account, Asset, DomainError,
    command::{OrderRequest, ReceiptResult},
    coupon::Coupon,
    ids,
    model::{LotState, MemberState, Posting},
    ports::{StoreError, VisitSource},
    receipt::{
        IssuedAt, ReceiptClaim, ReceiptPolicy, ReceiptReason, ReceiptRecord, ReceiptRule,
        ReceiptStatus, ReceiptSubmission, RuleOutcome, apply_rules, is_future_dated, is_visit,
    },
    rules::{Trigger, views},
    schedule::{instant_of_local, parse_time_zone, start_of_local_day},
};

pub(super) async fn create_receipt_rule(
    uow: &mut dyn LedgerRows,
    reference: &Reference,
    now: DateTime<Utc>,
    rule: &ReceiptRule,
) -> CommandResult<ReceiptRule> {
    super::engagement::check_stores(uow, &rule.store_ids).await?;
    let created =
        super::rules::create(uow, reference, now, &views::of_receipt(rule.clone())).await?;
    Ok(ReceiptRule {
        rule_id: created.rule_id,
        ..rule.clone()
    })
}

// ---------------------------------------------------------------------------------------------
// Submission

pub(super) async fn submit_receipt(
    uow: &mut dyn LedgerRows,
    reference: &Reference,
    now: DateTime<Utc>,
    submission: &ReceiptSubmission,
) -> CommandResult<ReceiptResult> {
    let member = members::resolve(uow, &submission.member, Access::Mutate).await?;
    let zone = store_zone(uow, reference, &submission.receipt.store_id).await?;
    let mut receipt = submission.receipt.clone();
    // Stored to the microsecond, like every instant.
    receipt.issued_at = match submission.issued_at {
        IssuedAt::At(at) => at,
        IssuedAt::Printed(local) => zone.map_or(local.and_utc(), |tz| instant_of_local(local, tz)),
    }
    .trunc_subsecs(6);
    let mut record = ReceiptRecord {
        receipt_id: ids::new_receipt_id(),
        member_id: member.member_id,
        receipt,
        status: ReceiptStatus::Rejected,
        reason: None,
        points: 0,
        lot_id: None,
        rule_ids: Vec::new(),
        coupon_codes: Vec::new(),
        submitted_at: now,
        reviewed_at: None,
        review_note: String::new(),
    };
    let mut issued = Vec::new();
    match judge(uow, reference, &record, zone, now).await? {
        Err(reason) => record.reason = Some(reason),
        // Refused, not queued: a queue anyone can fill is no review.
        Ok(_) if over_daily_limit(uow, reference, &record, zone, now).await? => {
            record.reason = Some(ReceiptReason::DailyLimit);
        }
        Ok(outcome) => {
            record.rule_ids.clone_from(&outcome.rule_ids);
            record.points = outcome.points;
            match outcome.review {
                Some(reason) => {
                    record.status = ReceiptStatus::PendingReview;
                    record.reason = Some(reason);
                    hold_for_review(uow, &mut record, now).await?;
                }
                None => {
                    record.status = ReceiptStatus::Accepted;
                    earn_now(uow, reference, &mut record, now).await?;
                    issued = award(uow, reference, &mut record, &outcome, now).await?;
                    count_spend(uow, reference, &record, 1, now).await?;
                }
            }
        }
    }
    uow.insert_receipt(&record).await?;
    Ok(result_of(&record, issued))
}

/// The store's time zone; None for a store omo does not know. The spatial index may not have
/// a store another replica created a moment ago: the store table has the final word.
async fn store_zone(
    uow: &mut dyn LedgerRows,
    reference: &Reference,
    store_id: &str,
) -> Result<Option<Tz>, StoreError> {
    if let Some(site) = reference.sites(uow).await?.get(store_id) {
        return Ok(Some(site.tz));
    }
    Ok(uow
        .get_store(store_id)
        .await?
        .and_then(|store| parse_time_zone(&store.time_zone).ok()))
}

/// The checks of the receipt itself, in the order a customer would want them explained, then
/// the rules.
async fn judge(
    uow: &mut dyn LedgerRows,
    reference: &Reference,
    record: &ReceiptRecord,
    zone: Option<Tz>,
    now: DateTime<Utc>,
) -> Result<Result<RuleOutcome, ReceiptReason>, StoreError> {
    let receipt = &record.receipt;
    if zone.is_none() {
        return Ok(Err(ReceiptReason::UnknownStore));
    }
    if is_future_dated(receipt.issued_at, now) {
        return Ok(Err(ReceiptReason::FutureDated));
    }
    for claim in ReceiptClaim::of(receipt) {
        if uow.receipt_claimed_by(&claim).await?.is_some() {
            return Ok(Err(ReceiptReason::Duplicate));
        }
    }
    let sale = uow
        .order_by_receipt(&receipt.store_id, &receipt.register_id, &receipt.receipt_no)
        .await?;
    if sale.is_some() {
        return Ok(Err(ReceiptReason::AlreadyEarned));
    }
    let rules = reference.enabled_rules(uow, Trigger::Receipt).await?;
    let policy = ReceiptPolicy::of(&reference.program(uow).await?);
    let tz = zone.unwrap_or(chrono_tz::Asia::Tokyo);
    Ok(apply_rules(&rules, receipt, tz, now, &policy))
}

/// Whether the member already sent the program's `max_receipts_per_day` receipts that earned
/// (or wait for review) today, the store's local day. The member's row is locked, so two
/// submissions of one member are counted one after the other.
async fn over_daily_limit(
    uow: &mut dyn LedgerRows,
    reference: &Reference,
    record: &ReceiptRecord,
    zone: Option<Tz>,
    now: DateTime<Utc>,
) -> Result<bool, StoreError> {
    let program = reference.program(uow).await?;
    let (Some(tz), true) = (zone, program.max_receipts_per_day > 0) else {
        return Ok(false);
    };
    let today = start_of_local_day(now, tz);
    let sent = uow.count_member_receipts(&record.member_id, today).await?;
    Ok(sent >= i64::from(program.max_receipts_per_day))
}

/// A receipt going to review: its points wait on the member's pending account, in a lot that
/// only the review matures.
async fn hold_for_review(
    uow: &mut dyn LedgerRows,
    record: &mut ReceiptRecord,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    if record.points == 0 {
        return Ok(());
    }
    let member_id = record.member_id.clone();
    let lot = points::NewLot {
        state: LotState::Pending,
        expires_at: None,
        ..points::NewLot::earned(&member_id, record.points, now)
    };
    record.lot_id = Some(lot.insert(uow).await?);
    let posting = Posting::new(
        &Account::ProgramIssued,
        &Account::MemberPending(member_id.clone()),
        &Asset::Points,
        record.points,
    );
    book(uow, "receipt", record, posting, now).await
}

/// A receipt accepted at submission: its points are available at once.
async fn earn_now(
    uow: &mut dyn LedgerRows,
    reference: &Reference,
    record: &mut ReceiptRecord,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    if record.points == 0 {
        return Ok(());
    }
    let program = reference.program(uow).await?;
    let member_id = record.member_id.clone();
    points::settle_member(uow, &member_id, now).await?;
    let lot = points::NewLot {
        expires_at: program.lot_expiry(now),
        ..points::NewLot::earned(&member_id, record.points, now)
    };
    record.lot_id = Some(lot.insert(uow).await?);
    let posting = Posting::new(
        &Account::ProgramIssued,
        &Account::Member(member_id.clone()),
        &Asset::Points,
        record.points,
    );
    book(uow, "receipt", record, posting, now).await?;
    add_lifetime_points(uow, &member_id, record.points).await
}

/// The coupons of an accepted receipt's rules, and its visit (with the coupons of the visit
/// rules it completes) when it earned something and was issued on the day it was submitted
/// (`receipt::is_visit`). Returns every coupon issued.
async fn award(
    uow: &mut dyn LedgerRows,
    reference: &Reference,
    record: &mut ReceiptRecord,
    outcome: &RuleOutcome,
    now: DateTime<Utc>,
) -> Result<Vec<Coupon>, StoreError> {
    let member_id = record.member_id.clone();
    let mut issued = Vec::new();
    for (rule_id, campaign_id) in &outcome.campaigns {
        let source = format!("receipt:{rule_id}");
        let coupon = coupons::issue_for_rule(uow, now, campaign_id, &member_id, source).await?;
        issued.extend(coupon);
    }
    let receipt = &record.receipt;
    let earned = record.points > 0 || !issued.is_empty();
    let zone = store_zone(uow, reference, &receipt.store_id).await?;
    if earned && zone.is_some_and(|tz| is_visit(receipt.issued_at, record.submitted_at, tz)) {
        let at_store = (receipt.store_id.as_str(), receipt.issued_at);
        let source = VisitSource::Receipt;
        let visit_coupons =
            record_store_visit(uow, reference, &member_id, at_store, source, now).await?;
        issued.extend(visit_coupons);
    }
    record.coupon_codes = issued.iter().map(|coupon| coupon.code.clone()).collect();
    Ok(issued)
}

/// Appends a receipt's journal entry: the member's (after a review, the member the submitter
/// may have been merged into), at the receipt's store, when it was issued.
async fn book(
    uow: &mut dyn LedgerRows,
    kind: &'static str,
    record: &ReceiptRecord,
    posting: Posting,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    let mut entry = points::system_entry(kind, &record.member_id, now, vec![posting]);
    entry.occurred_at = record.receipt.issued_at;
    entry.store_id.clone_from(&record.receipt.store_id);
    entry
        .metadata
        .push(("receipt_id".into(), record.receipt_id.clone()));
    uow.append_transaction(&entry).await?;
    Ok(())
}

/// An accepted receipt's total into (`sign` 1) or out of (-1) the member's tier spend.
async fn count_spend(
    uow: &mut dyn LedgerRows,
    reference: &Reference,
    record: &ReceiptRecord,
    sign: i64,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    let total = crate::domain::tier::to_e4(record.receipt.total);
    let (member_id, issued_at) = (record.member_id.as_str(), record.receipt.issued_at);
    super::tiers::receipt_spend(uow, reference, member_id, issued_at, sign * total, now).await
}

async fn add_lifetime_points(
    uow: &mut dyn LedgerRows,
    member_id: &str,
    points: i64,
) -> Result<(), StoreError> {
    let Some(mut member) = uow.get_member(member_id, true).await? else {
        return Err(StoreError::Corrupt(format!("member {member_id} is gone")));
    };
    member.lifetime_earned_points += points;
    uow.update_member(&member).await
}

fn result_of(record: &ReceiptRecord, coupons_issued: Vec<Coupon>) -> ReceiptResult {
    ReceiptResult {
        receipt_id: record.receipt_id.clone(),
        status: record.status,
        reason: record.reason,
        points_awarded: record.points,
        coupons_issued,
    }
}

// ---------------------------------------------------------------------------------------------
// Review

pub(super) async fn review_receipt(
    uow: &mut dyn LedgerRows,
    reference: &Reference,
    now: DateTime<Utc>,
    (receipt_id, approve, note): (&str, bool, &str),
) -> CommandResult<ReceiptResult> {
    let mut record = uow
        .get_receipt(receipt_id, true)
        .await?
        .ok_or(DomainError::ReceiptNotFound)?;
    if record.status != ReceiptStatus::PendingReview {
        return Err(DomainError::ReceiptNotPending {
            status: record.status.as_str().to_string(),
        }
        .into());
    }
    // A merge since the submission moved the points (and the member) to another member.
    record.member_id = current_member(uow, &record.member_id).await?;
    record.reviewed_at = Some(now);
    record.review_note = note.to_string();
    let mut issued = Vec::new();
    if approve {
        record.status = ReceiptStatus::Accepted;
        record.reason = None;
        release_review_lot(uow, reference, &record, true, now).await?;
        let rules = reference.enabled_rules(uow, Trigger::Receipt).await?;
        let outcome = RuleOutcome {
            rule_ids: record.rule_ids.clone(),
            points: record.points,
            campaigns: rules
                .iter()
                .filter(|rule| record.rule_ids.contains(&rule.rule_id))
                .filter_map(|rule| {
                    let campaign_id = rule.effects.campaign_id.clone()?;
                    Some((rule.rule_id.clone(), campaign_id))
                })
                .collect(),
            review: None,
        };
        issued = award(uow, reference, &mut record, &outcome, now).await?;
        count_spend(uow, reference, &record, 1, now).await?;
    } else {
        record.status = ReceiptStatus::Rejected;
        record.reason = Some(ReceiptReason::ReviewRejected);
        release_review_lot(uow, reference, &record, false, now).await?;
        record.points = 0;
    }
    uow.update_receipt(&record).await?;
    Ok(result_of(&record, issued))
}

/// The member a submitter's points belong to now: the submitter, or whom they were merged
/// into. Locked, like every member whose points a command moves.
async fn current_member(uow: &mut dyn LedgerRows, member_id: &str) -> CommandResult<String> {
    let mut member_id = member_id.to_string();
    // A chain of merges is short; the bound only guards against a cycle written outside omo.
    for _ in 0..16 {
        let member = uow
            .get_member(&member_id, true)
            .await?
            .ok_or(DomainError::MemberNotFound)?;
        match (member.state, member.merged_into) {
            (MemberState::Merged, Some(into)) => member_id = into,
            _ => return Ok(member_id),
        }
    }
    Err(StoreError::Corrupt(format!("member {member_id}: merged in a cycle")).into())
}

/// A review's points: approved, the pending lot becomes available (its expiry counted from
/// now, like any points that just became spendable); rejected, it is emptied and its points
/// return to the program.
async fn release_review_lot(
    uow: &mut dyn LedgerRows,
    reference: &Reference,
    record: &ReceiptRecord,
    approve: bool,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    let Some(lot_id) = record.lot_id else {
        return Ok(());
    };
    let mut lot = uow
        .get_lot(lot_id)
        .await?
        .ok_or_else(|| StoreError::Corrupt(format!("lot {lot_id} of a receipt is gone")))?;
    if lot.state != LotState::Pending || lot.remaining_points != record.points {
        return Err(StoreError::Corrupt(format!(
            "receipt {}: lot {lot_id} is {:?} with {} points, expected {} pending",
            record.receipt_id, lot.state, lot.remaining_points, record.points
        )));
    }
    let pending = Account::MemberPending(lot.member_id.clone());
    let (kind, posting) = if approve {
        let program = reference.program(uow).await?;
        lot.state = LotState::Available;
        lot.expires_at = program.lot_expiry(now);
        let to = Account::Member(lot.member_id.clone());
        let posting = Posting::new(&pending, &to, &Asset::Points, lot.remaining_points);
        ("receipt_approved", posting)
    } else {
        // Emptied and closed: nothing of it can be spent, matured or expired again.
        let posting = Posting::new(
            &pending,
            &Account::ProgramIssued,
            &Asset::Points,
            lot.remaining_points,
        );
        lot.remaining_points = 0;
        lot.state = LotState::Expired;
        ("receipt_rejected", posting)
    };
    uow.update_lot(&lot).await?;
    book(uow, kind, record, posting, now).await?;
    if approve {
        add_lifetime_points(uow, &lot.member_id, record.points).await?;
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// A register sale of a scanned receipt

/// The scan that holds the receipt a register sale names, if any (see [`yield_to_sale`]).
pub(super) async fn scan_of_sale(
    uow: &mut dyn LedgerRows,
    request: &OrderRequest,
) -> Result<Option<String>, StoreError> {
    if request.receipt_no.is_empty() {
        return Ok(None);
    }
    let claim = ReceiptClaim::number(&request.store_id, &request.register_id, &request.receipt_no);
    uow.receipt_claimed_by(&claim).await
}

/// The register is the truth about who bought: the register sale `order_id` of a receipt
/// that scan `receipt_id` claimed first (its buyer scanned it while the register was
/// offline, or someone scanned a number the register had not printed yet) earns for its
/// buyer, and the scan gives its points back: it becomes REJECTED, ALREADY_EARNED, like a scan
/// made after the sale, and a `receipt_reversed` entry takes its points back (see
/// [`take_back`]). The sale's insert moves the claim to the sale. Coupons the scan issued
/// stay with their holder (omo has no revocation yet).
pub(super) async fn yield_to_sale(
    uow: &mut dyn LedgerRows,
    reference: &Reference,
    (receipt_id, order_id): (&str, &str),
    now: DateTime<Utc>,
) -> CommandResult<()> {
    let mut record = uow.get_receipt(receipt_id, true).await?.ok_or_else(|| {
        StoreError::Corrupt(format!("receipt {receipt_id} holds a claim but is gone"))
    })?;
    // Rejected in review, it holds the claim but earned nothing: the sale just takes it.
    if !matches!(
        record.status,
        ReceiptStatus::Accepted | ReceiptStatus::PendingReview
    ) {
        return Ok(());
    }
    record.member_id = current_member(uow, &record.member_id).await?;
    let postings = take_back(uow, &record, now).await?;
    if record.status == ReceiptStatus::Accepted {
        add_lifetime_points(uow, &record.member_id, -record.points).await?;
        // The sale counts the purchase now; the receipt stops counting.
        count_spend(uow, reference, &record, -1, now).await?;
    }
    if !postings.is_empty() {
        let mut entry = points::system_entry("receipt_reversed", &record.member_id, now, postings);
        entry.store_id.clone_from(&record.receipt.store_id);
        entry.metadata.extend([
            ("receipt_id".into(), record.receipt_id.clone()),
            ("order_id".into(), order_id.to_string()),
            ("reason".into(), "register_sale".into()),
        ]);
        uow.append_transaction(&entry).await?;
    }
    record.status = ReceiptStatus::Rejected;
    record.reason = Some(ReceiptReason::AlreadyEarned);
    record.points = 0;
    uow.update_receipt(&record).await?;
    Ok(())
}

/// Takes a reversed scan's points back: from its own lot first (pending in review, or
/// available), then from the member's other available points, soonest expiry first. What the
/// member already spent is booked to `program:shortfall`, like a refund's clawback, so no
/// balance goes below zero. Its own lot, if pending, is closed like a lot rejected in review.
async fn take_back(
    uow: &mut dyn LedgerRows,
    record: &ReceiptRecord,
    now: DateTime<Utc>,
) -> Result<Vec<Posting>, StoreError> {
    let member_id = &record.member_id;
    let own = |lot: &crate::domain::model::Lot| Some(lot.lot_id) == record.lot_id;
    let mut lots = points::settle_member(uow, member_id, now).await?;
    lots.sort_by_key(|lot| {
        (
            !own(lot),
            lot.expires_at.is_none(),
            lot.expires_at,
            lot.lot_id,
        )
    });
    let (mut left, mut from_pending, mut from_available) = (record.points, 0, 0);
    for mut lot in lots {
        let pending = lot.state == LotState::Pending;
        // Another pending lot is points the member cannot spend yet: not theirs to give.
        if left == 0 || (pending && !own(&lot)) {
            continue;
        }
        let take = left.min(lot.free_points());
        if take <= 0 {
            continue;
        }
        lot.remaining_points -= take;
        if pending {
            from_pending += take;
            if lot.remaining_points == 0 {
                lot.state = LotState::Expired;
            }
        } else {
            from_available += take;
        }
        uow.update_lot(&lot).await?;
        left -= take;
    }
    let issued = Account::ProgramIssued;
    let postings = [
        (Account::MemberPending(member_id.clone()), from_pending),
        (Account::Member(member_id.clone()), from_available),
        (Account::ProgramShortfall, left),
    ];
    Ok(postings
        .into_iter()
        .filter(|(_, points)| *points > 0)
        .map(|(from, points)| Posting::new(&from, &issued, &Asset::Points, points))
        .collect())
}

// ---------------------------------------------------------------------------------------------
// ListReceipts (read path)

impl super::Engine {
    /// A member's receipts, newest first (optionally in one status), or every receipt in one
    /// status, oldest first (the review queue: admins only). Pages are keyset pages on
    /// (submitted_at, receipt_id).
    pub async fn list_receipts(
        &self,
        caller: &crate::domain::auth::Caller,
        query: &crate::domain::receipt::ReceiptQuery,
        after: Option<&crate::domain::page::Cursor>,
        size: usize,
    ) -> Result<crate::domain::page::Page<ReceiptRecord>, super::EngineError> {
        use crate::domain::{
            auth::Operation, page, ports::ReceiptPageQuery, receipt::ReceiptQuery,
        };
        let mut uow = self.store().begin_read().await?;
        let (member_id, status) = match query {
            ReceiptQuery::Member { member, status } => {
                caller.require(Operation::ListMemberReceipts)?;
                let row = members::resolve(uow.as_mut(), member, Access::Read)
                    .await
                    .map_err(super::queries::from_failure)?;
                (Some(row.member_id), *status)
            }
            ReceiptQuery::Status(status) => {
                caller.require(Operation::ReviewReceipts)?;
                (None, Some(*status))
            }
        };
        let limit = i64::try_from(size).unwrap_or(i64::MAX).saturating_add(1);
        let page_query = ReceiptPageQuery {
            member_id,
            status,
            after: after.map(|cursor| (cursor.at.unwrap_or_default(), cursor.id.clone())),
            limit,
        };
        // One more than asked tells whether another page follows.
        let mut items = uow.list_receipts(&page_query).await?;
        let more = items.len() > size;
        items.truncate(size);
        let next = more
            .then(|| {
                items.last().map(|last| page::Cursor {
                    at: Some(last.submitted_at),
                    id: last.receipt_id.clone(),
                })
            })
            .flatten();
        Ok(page::Page { items, next })
    }
}

impl crate::domain::command::ReceiptCommand {
    pub(super) fn plan(&self, plan: &mut super::batch::Plan) {
        use crate::domain::{command::ReceiptCommand::*, receipt::register_receipt_key};
        match self {
            CreateReceiptRule(_) => {}
            SubmitReceipt(submission) => {
                plan.member(&submission.member);
                let receipt = &submission.receipt;
                plan.keys().receipts.push(register_receipt_key(
                    &receipt.store_id,
                    &receipt.register_id,
                    &receipt.receipt_no,
                ));
                plan.wants(1, 1);
            }
            // The receipt names its member: read (and locked) when the review reads it.
            ReviewReceipt { .. } => plan.wants(1, 1),
        }
    }

    pub(super) async fn run(
        &self,
        uow: &mut dyn LedgerRows,
        reference: &super::reference::Reference,
        caller: &crate::domain::auth::Caller,
        now: DateTime<Utc>,
    ) -> CommandResult<crate::domain::command::Reply> {
        use crate::domain::{auth::Operation, command::ReceiptCommand::*, command::Reply};
        match self {
            CreateReceiptRule(rule) => {
                caller.require(Operation::ManageRules)?;
                create_receipt_rule(uow, reference, now, rule)
                    .await
                    .map(Reply::ReceiptRule)
            }
            SubmitReceipt(submission) => {
                caller.require(Operation::SubmitReceipt)?;
                submit_receipt(uow, reference, now, submission)
                    .await
                    .map(Reply::Receipt)
            }
            ReviewReceipt {
                receipt_id,
                approve,
                note,
            } => {
                caller.require(Operation::ReviewReceipts)?;
                let review = (receipt_id.as_str(), *approve, note.as_str());
                review_receipt(uow, reference, now, review)
                    .await
                    .map(Reply::Receipt)
            }
        }
    }
}
