//! The journal's hash chain (`journal_seals`): the sealer's horizon, its reads and its seals.

use std::collections::BTreeMap;

use rusqlite::Row;

use super::journal::{posting_from_row, transaction_from_row};
use super::{Cols, SqliteUnitOfWork, col};
use crate::domain::{
    model::{Posting, Transaction},
    ports::StoreResult,
    seal::Seal,
};

/// SQLite has one writer, and a batch reserves its ids above every committed one under the
/// write lock: a snapshot's newest id has no uncommitted id below it, so every id up to it is
/// committed or will never be written.
pub(super) fn settled_horizon(uow: &SqliteUnitOfWork) -> StoreResult<Option<i64>> {
    let newest: i64 = uow
        .query("select coalesce(max(transaction_id), 0) from transactions")?
        .fetch_one(|row| col(row, 0))?;
    Ok(Some(newest))
}

pub(super) fn last_seal(uow: &SqliteUnitOfWork) -> StoreResult<Option<Seal>> {
    let query = uow.query(
        r"
        select seal_no, after_transaction_id, last_transaction_id, digests, prev_hash, hash,
               sealed_at
        from journal_seals
        order by seal_no desc
        limit 1
        ",
    )?;
    uow.fetch_optional(query, seal_from_row)
}

pub(super) fn seals(
    uow: &SqliteUnitOfWork,
    after_seal_no: i64,
    limit: i64,
) -> StoreResult<Vec<Seal>> {
    let query = uow
        .query(
            r"
            select seal_no, after_transaction_id, last_transaction_id, digests, prev_hash, hash,
                   sealed_at
            from journal_seals
            where seal_no > ?1
            order by seal_no
            limit ?2
            ",
        )?
        .bind(after_seal_no) // ?1
        .bind(limit.max(0)); // ?2
    uow.fetch_all(query, seal_from_row)
}

pub(super) fn insert_seal(uow: &SqliteUnitOfWork, seal: &Seal) -> StoreResult<()> {
    let query = uow
        .query(
            r"
            insert into journal_seals (seal_no, after_transaction_id, last_transaction_id,
                                       digests, prev_hash, hash, sealed_at)
            values (?1, ?2, ?3, ?4, ?5, ?6, ?7)
            ",
        )?
        .bind(seal.seal_no) // ?1
        .bind(seal.after_transaction_id) // ?2
        .bind(seal.last_transaction_id) // ?3
        .bind(seal.digests_bytes()) // ?4
        .bind(seal.prev_hash.as_str()) // ?5
        .bind(seal.hash.as_str()) // ?6
        .bind(seal.sealed_at.timestamp_micros()); // ?7
    uow.run(query)
}

pub(super) fn journal_range(
    uow: &SqliteUnitOfWork,
    after: i64,
    up_to: i64,
    limit: i64,
) -> StoreResult<Vec<Transaction>> {
    let query = uow
        .query(
            r"
            select transaction_id, kind, member_id, occurred_at, recorded_at,
                   channel, store_id, order_id, metadata
            from transactions
            where transaction_id > ?1
              and transaction_id <= ?2
            order by transaction_id
            limit ?3
            ",
        )?
        .bind(after) // ?1
        .bind(up_to) // ?2
        .bind(limit.max(0)); // ?3
    let mut transactions = uow.fetch_all(query, transaction_from_row)?;
    let Some(last) = transactions.last().map(|t| t.transaction_id) else {
        return Ok(transactions);
    };
    let mut postings = range_postings(uow, after, last)?;
    for transaction in &mut transactions {
        transaction.postings = postings
            .remove(&transaction.transaction_id)
            .unwrap_or_default();
    }
    Ok(transactions)
}

/// The postings of the transactions in `(after, up_to]`, in `posting_no` order.
fn range_postings(
    uow: &SqliteUnitOfWork,
    after: i64,
    up_to: i64,
) -> StoreResult<BTreeMap<i64, Vec<Posting>>> {
    let query = uow
        .query(
            r"
            select transaction_id, from_account, to_account, asset, amount
            from postings
            where transaction_id > ?1
              and transaction_id <= ?2
            order by transaction_id, posting_no
            ",
        )?
        .bind(after) // ?1
        .bind(up_to); // ?2
    let mut postings: BTreeMap<i64, Vec<Posting>> = BTreeMap::new();
    for (transaction_id, posting) in uow.fetch_all(query, posting_from_row)? {
        postings.entry(transaction_id).or_default().push(posting);
    }
    Ok(postings)
}

fn seal_from_row(row: &Row<'_>) -> StoreResult<Seal> {
    let c = Cols::new(row, "journal_seals", "seal_no");
    let bytes: Vec<u8> = c.get("digests")?;
    let digests = Seal::digests_from_bytes(&bytes)
        .ok_or_else(|| c.corrupt("digests", format!("{} bytes", bytes.len())))?;
    Ok(Seal {
        seal_no: c.get("seal_no")?,
        after_transaction_id: c.get("after_transaction_id")?,
        last_transaction_id: c.get("last_transaction_id")?,
        digests,
        prev_hash: c.get("prev_hash")?,
        hash: c.get("hash")?,
        sealed_at: c.instant("sealed_at")?,
    })
}
