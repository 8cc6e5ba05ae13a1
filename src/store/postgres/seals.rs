//! The journal's hash chain (`journal_seals`): the sealer's horizon, its reads and its seals.

use std::{collections::BTreeMap, time::Duration};

use chrono::{DateTime, Utc};
use sqlx::postgres::PgRow;

use super::journal::{posting_from_row, transaction_from_row};
use super::{Cols, PgUnitOfWork};
use crate::domain::{
    model::{Posting, Transaction},
    ports::StoreResult,
    seal::Seal,
};

/// How long `settled_horizon` waits for the transactions older than its reading to end.
const HORIZON_WAIT: Duration = Duration::from_secs(2);
const HORIZON_POLL: Duration = Duration::from_millis(20);

/// How far the transaction id sequence has gone (0 before its first `nextval`). Sequences are
/// not transactional: this sees reservations of batches that have not committed yet.
const LAST_RESERVED_ID: &str = r#"
select coalesce(
    pg_sequence_last_value(pg_get_serial_sequence('transactions', 'transaction_id')::regclass),
    0
) as last_id"#;

const NOW: &str = "select clock_timestamp() as now";

/// Sessions of this database in a transaction that began at or before $1, of roles that may
/// take a transaction id: those that may insert into the journal or use its id sequence
/// (superusers may). Others cannot hold an id below the horizon, so an analyst's open
/// transaction, a read-only role's `pg_dump` or a monitoring agent never holds sealing up. A
/// session of another role hides its `xact_start`, `state` and `backend_type` (all null)
/// unless omo's role may read all statistics (`pg_read_all_stats`): if its role may take an
/// id, it counts as still running, so that sealing waits rather than guesses. Background
/// processes (no role) take no id.
const TRANSACTIONS_STARTED_BY: &str = r#"
select count(*) as running
from pg_stat_activity
where datname = current_database()
    and (backend_type = 'client backend' or backend_type is null)
    and pid <> pg_backend_pid()
    and (xact_start <= $1 or state is null)
    and (
        has_table_privilege(usesysid, 'transactions', 'insert')
        or has_sequence_privilege(
            usesysid,
            pg_get_serial_sequence('transactions', 'transaction_id'),
            'usage, update'
        )
    )"#;

/// Why the horizon is safe. Ids are reserved with `nextval` inside a batch's transaction and
/// committed in any order, so a gap below the newest committed id may still be filled. Read
/// the sequence (H), then the clock (T): every id ≤ H was reserved before T, by a transaction
/// that began before T. Once no transaction that began at or before T is still running, each
/// of those ids is committed (and visible to the next statement) or rolled back for good.
/// This runs in autocommit (`begin_read_statement`), so the sealer's own session is never one
/// of the transactions it waits for. A long transaction (a `omo verify` snapshot) only delays
/// sealing: after `HORIZON_WAIT` this gives up until the next round.
pub(super) async fn settled_horizon(uow: &mut PgUnitOfWork) -> StoreResult<Option<i64>> {
    let horizon: i64 = uow
        .fetch_value(sqlx::query(LAST_RESERVED_ID), "transactions", "last_id")
        .await?;
    let read_at: DateTime<Utc> = uow.fetch_value(sqlx::query(NOW), "clock", "now").await?;
    let deadline = tokio::time::Instant::now() + HORIZON_WAIT;
    loop {
        let query = sqlx::query(TRANSACTIONS_STARTED_BY).bind(read_at); // $1
        let running: i64 = uow
            .fetch_value(query, "pg_stat_activity", "running")
            .await?;
        if running == 0 {
            return Ok(Some(horizon));
        }
        if tokio::time::Instant::now() >= deadline {
            return Ok(None);
        }
        tokio::time::sleep(HORIZON_POLL).await;
    }
}

/// The columns of a seal, for the seal queries below.
macro_rules! select_seals {
    () => {
        r#"
select seal_no, after_transaction_id, last_transaction_id, digests, prev_hash, hash, sealed_at
from journal_seals"#
    };
}

pub(super) async fn last_seal(uow: &mut PgUnitOfWork) -> StoreResult<Option<Seal>> {
    let sql = concat!(select_seals!(), "\norder by seal_no desc\nlimit 1");
    uow.fetch_optional(sqlx::query(sql), seal_from_row).await
}

pub(super) async fn seals(
    uow: &mut PgUnitOfWork,
    after_seal_no: i64,
    limit: i64,
) -> StoreResult<Vec<Seal>> {
    let sql = concat!(
        select_seals!(),
        "\nwhere seal_no > $1\norder by seal_no\nlimit $2"
    );
    let query = sqlx::query(sql)
        .bind(after_seal_no) // $1
        .bind(limit.max(0)); // $2
    uow.fetch_all(query, seal_from_row).await
}

pub(super) async fn insert_seal(uow: &mut PgUnitOfWork, seal: &Seal) -> StoreResult<()> {
    let query = sqlx::query(
        r#"
insert into journal_seals (seal_no, after_transaction_id, last_transaction_id, digests,
    prev_hash, hash, sealed_at)
values ($1, $2, $3, $4, $5, $6, $7)"#,
    )
    .bind(seal.seal_no) // $1
    .bind(seal.after_transaction_id) // $2
    .bind(seal.last_transaction_id) // $3
    .bind(seal.digests_bytes()) // $4
    .bind(&seal.prev_hash) // $5
    .bind(&seal.hash) // $6
    .bind(seal.sealed_at); // $7
    uow.run(query).await
}

pub(super) async fn journal_range(
    uow: &mut PgUnitOfWork,
    after: i64,
    up_to: i64,
    limit: i64,
) -> StoreResult<Vec<Transaction>> {
    let query = sqlx::query(
        r#"
select transaction_id, kind, member_id, occurred_at, recorded_at, channel, store_id,
    order_id, metadata::text as metadata
from transactions
where transaction_id > $1
    and transaction_id <= $2
order by transaction_id
limit $3"#,
    )
    .bind(after) // $1
    .bind(up_to) // $2
    .bind(limit.max(0)); // $3
    let mut transactions = uow.fetch_all(query, transaction_from_row).await?;
    let Some(last) = transactions.last().map(|t| t.transaction_id) else {
        return Ok(transactions);
    };
    let mut postings = range_postings(uow, after, last).await?;
    for transaction in &mut transactions {
        transaction.postings = postings
            .remove(&transaction.transaction_id)
            .unwrap_or_default();
    }
    Ok(transactions)
}

/// The postings of the transactions in `(after, up_to]`, in `posting_no` order: one range
/// scan of the postings' primary key.
async fn range_postings(
    uow: &mut PgUnitOfWork,
    after: i64,
    up_to: i64,
) -> StoreResult<BTreeMap<i64, Vec<Posting>>> {
    let query = sqlx::query(
        r#"
select transaction_id, from_account, to_account, asset, amount
from postings
where transaction_id > $1
    and transaction_id <= $2
order by transaction_id, posting_no"#,
    )
    .bind(after) // $1
    .bind(up_to); // $2
    let mut by_transaction: BTreeMap<i64, Vec<Posting>> = BTreeMap::new();
    for (transaction_id, posting) in uow.fetch_all(query, posting_from_row).await? {
        by_transaction
            .entry(transaction_id)
            .or_default()
            .push(posting);
    }
    Ok(by_transaction)
}

fn seal_from_row(row: &PgRow) -> StoreResult<Seal> {
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
        sealed_at: c.get("sealed_at")?,
    })
}
