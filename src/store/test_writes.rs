//! Row writes for the store tests, through the only write the port has: a flush of a
//! [`ChangeSet`], with ids reserved first, as the engine's batches write.

use crate::domain::{
    Account,
    coupon::{Campaign, Coupon},
    model::{Lot, MemberRow, Order},
    ports::{
        AccountTotal, ChangeSet, EngagementChanges, NewTransaction, Sequence, StoreResult,
        UnitOfWork,
    },
    receipt::{ClaimHolder, ClaimWrite, register_receipt_key},
};

/// Appends a journal entry under a reserved id, with the net change of each guarded balance
/// it moves (sorted, none zero), as a batch flushes it; its id.
pub(super) async fn append_transaction(
    uow: &mut dyn UnitOfWork,
    transaction: &NewTransaction,
) -> StoreResult<i64> {
    let transaction_id = uow.reserve_ids(Sequence::Transactions, 1).await?[0];
    let mut deltas = std::collections::BTreeMap::<(String, String), i64>::new();
    for posting in &transaction.postings {
        for (account, sign) in [(&posting.from_account, -1), (&posting.to_account, 1)] {
            if Account::is_guarded_name(account) {
                let key = (account.clone(), posting.asset.clone());
                *deltas.entry(key).or_default() += sign * posting.amount;
            }
        }
    }
    let balance_deltas = deltas
        .into_iter()
        .filter(|(_, amount)| *amount != 0)
        .map(|((account, asset), amount)| AccountTotal {
            account,
            asset,
            amount,
        })
        .collect();
    let changes = ChangeSet {
        transactions: vec![(transaction_id, transaction.clone())],
        balance_deltas,
        ..ChangeSet::default()
    };
    uow.flush(&changes).await?;
    Ok(transaction_id)
}

/// Inserts a lot under a reserved id (its own `lot_id` is ignored); that id.
pub(super) async fn insert_lot(uow: &mut dyn UnitOfWork, lot: &Lot) -> StoreResult<i64> {
    let lot_id = uow.reserve_ids(Sequence::Lots, 1).await?[0];
    let changes = ChangeSet {
        new_lots: vec![Lot {
            lot_id,
            ..lot.clone()
        }],
        ..ChangeSet::default()
    };
    uow.flush(&changes).await?;
    Ok(lot_id)
}

pub(super) async fn insert_member(uow: &mut dyn UnitOfWork, member: &MemberRow) -> StoreResult<()> {
    let changes = ChangeSet {
        new_members: vec![member.clone()],
        ..ChangeSet::default()
    };
    uow.flush(&changes).await
}

pub(super) async fn update_member(uow: &mut dyn UnitOfWork, member: &MemberRow) -> StoreResult<()> {
    let changes = ChangeSet {
        changed_members: vec![member.clone()],
        ..ChangeSet::default()
    };
    uow.flush(&changes).await
}

/// Inserts an order, and for a register sale its receipt's claim, as a batch does.
pub(super) async fn insert_order(uow: &mut dyn UnitOfWork, order: &Order) -> StoreResult<()> {
    let receipt_claims = (!order.receipt_no.is_empty())
        .then(|| ClaimWrite {
            key: register_receipt_key(&order.store_id, &order.register_id, &order.receipt_no),
            holder: ClaimHolder::Sale(order.order_id.clone()),
            taken_from: None,
        })
        .into_iter()
        .collect();
    let changes = ChangeSet {
        new_orders: vec![order.clone()],
        engagement: EngagementChanges {
            receipt_claims,
            ..EngagementChanges::default()
        },
        ..ChangeSet::default()
    };
    uow.flush(&changes).await
}

pub(super) async fn insert_campaign(
    uow: &mut dyn UnitOfWork,
    campaign: &Campaign,
) -> StoreResult<()> {
    let changes = ChangeSet {
        new_campaigns: vec![campaign.clone()],
        ..ChangeSet::default()
    };
    uow.flush(&changes).await
}

pub(super) async fn insert_coupon(uow: &mut dyn UnitOfWork, coupon: &Coupon) -> StoreResult<()> {
    let changes = ChangeSet {
        new_coupons: vec![coupon.clone()],
        ..ChangeSet::default()
    };
    uow.flush(&changes).await
}
