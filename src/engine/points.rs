//! Points: lots, holds, earning, spending, expiry and maturation, always as balanced postings
//! written together with the lots they change.

use super::rows::LedgerRows;
use chrono::{DateTime, Utc};

use super::{CommandResult, members, reference::Reference};
use crate::domain::{
    Account, Asset, DomainError,
    lots::{self, is_expired},
    model::{Channel, Lot, LotState, MemberRef, OrderLot, Posting, Program, Transaction},
    ports::{NewTransaction, StoreError},
};

/// Matures the member's pending lots and expires lots past their expiry, as of `now`.
/// Every command that touches a member's points runs this first, so nothing is ever spent from
/// an expired lot even when the sweeper is behind.
/// Returns the member's lots as they stand afterwards.
pub(super) async fn settle_member(
    uow: &mut dyn LedgerRows,
    member_id: &str,
    now: DateTime<Utc>,
) -> Result<Vec<Lot>, StoreError> {
    let lots = uow.member_lots(member_id).await?;
    let (lots, _) = settle(uow, member_id, lots, now).await?;
    Ok(lots)
}

/// Settles `lots`, the member's lots just read; returns them as they stand afterwards (those
/// still holding points) and whether settling wrote anything.
async fn settle(
    uow: &mut dyn LedgerRows,
    member_id: &str,
    mut lots: Vec<Lot>,
    now: DateTime<Utc>,
) -> Result<(Vec<Lot>, bool), StoreError> {
    let member = Account::Member(member_id.to_string());
    let pending = Account::MemberPending(member_id.to_string());
    let mut matured = Vec::new();
    let mut expired = Vec::new();
    let mut wrote = false;
    for lot in &mut lots {
        let mut changed = false;
        if lot.state == LotState::Pending && lots::is_matured(lot, now) {
            matured.push(Posting::new(
                &pending,
                &member,
                &Asset::Points,
                lot.free_points(),
            ));
            lot.state = LotState::Available;
            changed = true;
        }
        if lot.state != LotState::Expired && is_expired(lot, now) {
            let from = if lot.state == LotState::Pending {
                &pending
            } else {
                &member
            };
            let free = lot.free_points();
            if free > 0 {
                expired.push(Posting::new(
                    from,
                    &Account::ProgramExpired,
                    &Asset::Points,
                    free,
                ));
            }
            lot.remaining_points -= free;
            lot.state = LotState::Expired;
            changed = true;
        }
        if changed {
            uow.update_lot(lot).await?;
            wrote = true;
        }
    }
    for (kind, postings) in [("mature", matured), ("expire", expired)] {
        let postings: Vec<Posting> = postings.into_iter().filter(|p| p.amount > 0).collect();
        if !postings.is_empty() {
            let entry = system_entry(kind, member_id, now, postings);
            uow.append_transaction(&entry).await?;
        }
    }
    lots.retain(|lot| lot.remaining_points > 0);
    Ok((lots, wrote))
}

/// The sweeper's side: settles a member under the member's row lock, like every command, so
/// two sweepers (two replicas) or a sweeper and a command never settle the same lots at once.
pub(super) async fn settle_locked_member(
    uow: &mut dyn LedgerRows,
    member_id: &str,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    if uow.get_member(member_id, true).await?.is_some() {
        settle_member(uow, member_id, now).await?;
    }
    Ok(())
}

/// A transaction not tied to an order or channel.
pub(super) fn system_entry(
    kind: &'static str,
    member_id: &str,
    now: DateTime<Utc>,
    postings: Vec<Posting>,
) -> NewTransaction {
    NewTransaction {
        kind,
        member_id: member_id.to_string(),
        occurred_at: now,
        recorded_at: now,
        channel: None,
        store_id: String::new(),
        order_id: String::new(),
        postings,
        metadata: Vec::new(),
    }
}

/// The member's spendable points after settling, checked against the stored balance: the two
/// are kept by different code paths, and a difference means the ledger is broken — refuse to
/// write on top of it.
pub(super) async fn spendable(
    uow: &mut dyn LedgerRows,
    member_id: &str,
    now: DateTime<Utc>,
) -> CommandResult<(Vec<Lot>, i64)> {
    let (lots, stored) = uow.member_lots_and_balance(member_id).await?;
    let (lots, settled) = settle(uow, member_id, lots, now).await?;
    let from_lots = lots::spendable(&lots, now);
    let stored = if settled {
        uow.balance(&Account::Member(member_id.to_string()).to_string(), "PTS")
            .await?
    } else {
        stored
    };
    if from_lots != stored {
        return Err(StoreError::Corrupt(format!(
            "member {member_id}: lots say {from_lots} spendable points, balance says {stored}"
        ))
        .into());
    }
    Ok((lots, from_lots))
}

/// Takes `points` from the member's (settled) `lots`, soonest expiry first, for `order_id`:
/// held (the points stay in the lots until capture) or spent at once. Without an order (an
/// admin debit) nothing records where the points came from, since nothing can give them back.
pub(super) async fn take_points(
    uow: &mut dyn LedgerRows,
    lots: &[Lot],
    order_id: &str,
    points: i64,
    hold: bool,
    now: DateTime<Utc>,
) -> CommandResult<()> {
    if points == 0 {
        return Ok(());
    }
    let plan = lots::plan_spend(lots, points, now).ok_or(DomainError::InsufficientPoints {
        available: lots::spendable(lots, now),
        requested: points,
    })?;
    let mut taken_lots = Vec::with_capacity(plan.len());
    let mut takes = Vec::new();
    for (lot_id, take) in plan {
        let mut lot = lots
            .iter()
            .find(|lot| lot.lot_id == lot_id)
            .cloned()
            .expect("planned lots come from the list");
        if hold {
            lot.held_points += take;
        } else {
            lot.remaining_points -= take;
        }
        taken_lots.push(lot);
        if !order_id.is_empty() {
            takes.push(OrderLot {
                order_id: order_id.to_string(),
                lot_id,
                points: take,
                restored_points: 0,
            });
        }
    }
    uow.take_from_lots(&taken_lots, &takes).await?;
    Ok(())
}

/// Resolves an order's held points: `spend` consumes them (capture); otherwise they return to
/// the member, except from lots that expired meanwhile, which go to `program:expired`.
/// Returns (points back to the member, points expired).
pub(super) async fn resolve_hold(
    uow: &mut dyn LedgerRows,
    order_id: &str,
    spend: bool,
    now: DateTime<Utc>,
) -> Result<(i64, i64), StoreError> {
    let (mut returned, mut expired) = (0, 0);
    for order_lot in uow.order_lots(order_id).await? {
        let mut lot = uow
            .get_lot(order_lot.lot_id)
            .await?
            .ok_or_else(|| StoreError::Corrupt(format!("lot {} is gone", order_lot.lot_id)))?;
        lot.held_points -= order_lot.points;
        if spend {
            lot.remaining_points -= order_lot.points;
        } else if is_expired(&lot, now) {
            lot.remaining_points -= order_lot.points;
            expired += order_lot.points;
        } else {
            returned += order_lot.points;
        }
        uow.update_lot(&lot).await?;
    }
    Ok((returned, expired))
}

/// A lot about to be written: points just earned, whole.
pub(super) struct NewLot {
    pub member_id: String,
    /// The order that earned it; empty for points from elsewhere (an admin, a receipt).
    pub order_id: String,
    pub state: LotState,
    pub earned_at: DateTime<Utc>,
    pub matures_at: Option<DateTime<Utc>>,
    pub expires_at: Option<DateTime<Utc>>,
    pub points: i64,
    /// Limited-time points (an expiry of their own, not the program's).
    pub limited: bool,
}

impl NewLot {
    /// Available at once and never expiring, not from an order: the fields a caller changes
    /// come after `..`.
    pub fn earned(member_id: &str, points: i64, earned_at: DateTime<Utc>) -> Self {
        Self {
            member_id: member_id.to_string(),
            order_id: String::new(),
            state: LotState::Available,
            earned_at,
            matures_at: None,
            expires_at: None,
            points,
            limited: false,
        }
    }

    /// Inserts the lot; its id.
    pub async fn insert(self, uow: &mut dyn LedgerRows) -> Result<i64, StoreError> {
        let lot = Lot {
            lot_id: 0,
            member_id: self.member_id,
            order_id: self.order_id,
            state: self.state,
            earned_at: self.earned_at,
            matures_at: self.matures_at,
            expires_at: self.expires_at,
            original_points: self.points,
            remaining_points: self.points,
            held_points: 0,
            limited: self.limited,
        };
        uow.insert_lot(&lot).await
    }
}

/// One part of what an order earns: points from an account (`program:issued` for the base
/// rate, a rule's account for its award), with an expiry of their own when `expire_days` > 0.
#[derive(Debug, Clone)]
pub(super) struct Earning {
    pub from: Account,
    pub points: i64,
    pub expire_days: i64,
}

/// Books what an order earns: one lot for the points that expire as the program's do, and
/// one of their own for each limited-time expiry; one posting per part from its account.
/// Pending through the EC return window, or available. Returns the postings and the points
/// pending.
pub(super) async fn earn_parts(
    uow: &mut dyn LedgerRows,
    program: &Program,
    (member_id, order_id, channel): (&str, &str, Channel),
    parts: &[Earning],
    earned_at: DateTime<Utc>,
) -> Result<(Vec<Posting>, i64), StoreError> {
    let matures_at = program.pending_until(channel, earned_at);
    // Points expire a fixed time after they become spendable.
    let spendable_at = matures_at.unwrap_or(earned_at);
    let mut lots: std::collections::BTreeMap<i64, i64> = Default::default();
    for part in parts.iter().filter(|part| part.points > 0) {
        *lots.entry(part.expire_days).or_default() += part.points;
    }
    for (&expire_days, &points) in &lots {
        let limited = expire_days > 0;
        NewLot {
            order_id: order_id.to_string(),
            state: if matures_at.is_some() {
                LotState::Pending
            } else {
                LotState::Available
            },
            matures_at,
            expires_at: if limited {
                Some(spendable_at + chrono::Duration::days(expire_days))
            } else {
                program.lot_expiry(spendable_at)
            },
            limited,
            ..NewLot::earned(member_id, points, earned_at)
        }
        .insert(uow)
        .await?;
    }
    let to = if matures_at.is_some() {
        Account::MemberPending(member_id.to_string())
    } else {
        Account::Member(member_id.to_string())
    };
    let postings: Vec<Posting> = parts
        .iter()
        .filter(|part| part.points > 0)
        .map(|part| Posting::new(&part.from, &to, &Asset::Points, part.points))
        .collect();
    let pending = if matures_at.is_some() {
        postings.iter().map(|p| p.amount).sum()
    } else {
        0
    };
    Ok((postings, pending))
}

/// AdjustPoints: an admin credit (a new lot) or debit (from lots, soonest expiry first).
pub(super) async fn adjust(
    uow: &mut dyn LedgerRows,
    reference: &Reference,
    now: DateTime<Utc>,
    member: &MemberRef,
    (points, expires_at): (i64, Option<DateTime<Utc>>),
    reason: &str,
) -> CommandResult<Transaction> {
    let member = members::resolve(uow, member, members::Access::Mutate).await?;
    let member_id = member.member_id.clone();
    let account = Account::Member(member_id.clone());
    let posting = if points > 0 {
        let program = reference.program(uow).await?;
        settle_member(uow, &member_id, now).await?;
        // A grant with its own expiry is limited-time points (spent first, as it expires first).
        NewLot {
            expires_at: expires_at.or(program.lot_expiry(now)),
            limited: expires_at.is_some(),
            ..NewLot::earned(&member_id, points, now)
        }
        .insert(uow)
        .await?;
        Posting::new(
            &Account::ProgramAdjustments,
            &account,
            &Asset::Points,
            points,
        )
    } else {
        let (lots, _) = spendable(uow, &member_id, now).await?;
        take_points(uow, &lots, "", -points, false, now).await?;
        Posting::new(
            &account,
            &Account::ProgramAdjustments,
            &Asset::Points,
            -points,
        )
    };
    let mut entry = system_entry("adjust", &member_id, now, vec![posting]);
    entry.metadata.push(("reason".into(), reason.to_string()));
    let transaction_id = uow.append_transaction(&entry).await?;
    Ok(to_transaction(transaction_id, entry))
}

pub(super) fn to_transaction(transaction_id: i64, entry: NewTransaction) -> Transaction {
    Transaction {
        transaction_id,
        kind: entry.kind.to_string(),
        member_id: entry.member_id,
        occurred_at: entry.occurred_at,
        recorded_at: entry.recorded_at,
        channel: entry.channel,
        store_id: entry.store_id,
        order_id: entry.order_id,
        postings: entry.postings,
        metadata: entry.metadata.into_iter().collect(),
    }
}

/// EraseMember: every point the member still has (available and pending) goes to
/// `program:forfeited` in one transaction (`forfeit`), and its lots are emptied. The caller
/// has checked that no open order holds any.
pub(super) async fn forfeit_all(
    uow: &mut dyn LedgerRows,
    member_id: &str,
    now: DateTime<Utc>,
) -> CommandResult<()> {
    let lots = settle_member(uow, member_id, now).await?;
    let mut postings = Vec::new();
    for account in [
        Account::Member(member_id.to_string()),
        Account::MemberPending(member_id.to_string()),
    ] {
        let points = uow.balance(&account.to_string(), "PTS").await?;
        if points > 0 {
            postings.push(Posting::new(
                &account,
                &Account::ProgramForfeited,
                &Asset::Points,
                points,
            ));
        }
    }
    // The lots and the balances are kept by different paths; forfeit only when they agree
    // (invariant 5), so the ledger and the lots stay equal at zero.
    let in_lots: i64 = lots.iter().map(|lot| lot.remaining_points).sum();
    let in_balances: i64 = postings.iter().map(|p| p.amount).sum();
    if in_lots != in_balances {
        return Err(StoreError::Corrupt(format!(
            "member {member_id}: lots hold {in_lots} points, balances {in_balances}"
        ))
        .into());
    }
    let emptied: Vec<Lot> = lots
        .into_iter()
        .map(|lot| Lot {
            remaining_points: 0,
            ..lot
        })
        .collect();
    uow.take_from_lots(&emptied, &[]).await?;
    if !postings.is_empty() {
        uow.append_transaction(&system_entry("forfeit", member_id, now, postings))
            .await?;
    }
    Ok(())
}

/// TransferPoints: takes `points` from the sender's lots, soonest expiry first, and gives the
/// receiver lots with the same expiries (limited-time points stay limited), in one
/// transaction `member:<from> → member:<to>` recorded under the sender. Both members are
/// locked by the batch's load (in its fixed order), so concurrent transfers in either
/// direction never take a balance below zero.
pub(super) async fn transfer(
    uow: &mut dyn LedgerRows,
    now: DateTime<Utc>,
    (from_member, to_member): (&MemberRef, &MemberRef),
    points: i64,
) -> CommandResult<Transaction> {
    let from = members::resolve(uow, from_member, members::Access::Mutate).await?;
    let to = members::resolve(uow, to_member, members::Access::Mutate).await?;
    if from.member_id == to.member_id {
        return Err(
            DomainError::invalid("to_member", "must be another member than from_member").into(),
        );
    }
    settle_member(uow, &to.member_id, now).await?;
    let (lots, available) = spendable(uow, &from.member_id, now).await?;
    let (plan, received) =
        lots::plan_transfer(&lots, points, now).ok_or(DomainError::InsufficientPoints {
            available,
            requested: points,
        })?;
    let mut taken = Vec::with_capacity(plan.len());
    for (lot_id, take) in plan {
        let mut lot = lots
            .iter()
            .find(|lot| lot.lot_id == lot_id)
            .cloned()
            .expect("planned lots come from the list");
        lot.remaining_points -= take;
        taken.push(lot);
    }
    uow.take_from_lots(&taken, &[]).await?;
    for lot in received {
        NewLot {
            expires_at: lot.expires_at,
            limited: lot.limited,
            ..NewLot::earned(&to.member_id, lot.points, now)
        }
        .insert(uow)
        .await?;
    }
    let posting = Posting::new(
        &Account::Member(from.member_id.clone()),
        &Account::Member(to.member_id.clone()),
        &Asset::Points,
        points,
    );
    let mut entry = system_entry("transfer", &from.member_id, now, vec![posting]);
    entry
        .metadata
        .push(("to_member_id".into(), to.member_id.clone()));
    let transaction_id = uow.append_transaction(&entry).await?;
    Ok(to_transaction(transaction_id, entry))
}

impl crate::domain::command::PointsCommand {
    pub(super) fn plan(&self, plan: &mut super::batch::Plan) {
        use crate::domain::command::PointsCommand::*;
        match self {
            AdjustPoints { member, .. } => {
                plan.member(member);
                plan.wants(1, 1);
            }
            TransferPoints {
                from_member,
                to_member,
                ..
            } => {
                plan.member(from_member);
                plan.member(to_member);
                plan.wants(1, 2);
            }
        }
    }

    pub(super) async fn run(
        &self,
        uow: &mut dyn LedgerRows,
        reference: &Reference,
        caller: &crate::domain::auth::Caller,
        now: DateTime<Utc>,
    ) -> CommandResult<crate::domain::command::Reply> {
        use crate::domain::{auth::Operation, command::PointsCommand::*, command::Reply};
        match self {
            AdjustPoints {
                member,
                points,
                reason,
                expires_at,
            } => {
                caller.require(Operation::AdjustPoints)?;
                let grant = (*points, *expires_at);
                adjust(uow, reference, now, member, grant, reason)
                    .await
                    .map(Reply::Transaction)
            }
            TransferPoints {
                from_member,
                to_member,
                points,
            } => {
                caller.require(Operation::TransferPoints)?;
                transfer(uow, now, (from_member, to_member), *points)
                    .await
                    .map(Reply::Transaction)
            }
        }
    }
}
