//! The journal: transactions, their postings, and the stored balances of guarded accounts.

use std::collections::BTreeMap;

use sqlx::postgres::PgRow;

use super::{Cols, PgUnitOfWork};
use crate::domain::{
    Account,
    model::{Posting, Transaction},
    ports::{AccountTotal, StoreResult},
};

/// The journal's parts of a batch's flush: transactions with their reserved ids, their
/// postings, and the net change of each guarded balance. Credits upsert; debits are a plain
/// update (an upsert would have `balance >= 0` checked on the negative row it proposes to
/// insert), so a debit below zero breaks the CHECK, and one with no row to update shows in the
/// count of rows it changed.
pub(super) const INSERT_TRANSACTIONS: &str = r#"
insert into transactions (transaction_id, kind, member_id, occurred_at, recorded_at,
    channel, store_id, order_id, metadata)
overriding system value
select transaction_id, kind, member_id, occurred_at, recorded_at,
    channel, store_id, order_id, metadata::jsonb
from unnest($1::bigint[], $2::text[], $3::text[], $4::timestamptz[], $5::timestamptz[],
    $6::text[], $7::text[], $8::text[], $9::text[])
    as t (transaction_id, kind, member_id, occurred_at, recorded_at,
        channel, store_id, order_id, metadata)"#;

pub(super) const INSERT_POSTINGS: &str = r#"
insert into postings (transaction_id, posting_no, from_account, to_account, asset, amount)
select *
from unnest($1::bigint[], $2::integer[], $3::text[], $4::text[], $5::text[], $6::bigint[])"#;

pub(super) const CREDIT_BALANCES: &str = r#"
insert into balances (account, asset, balance)
select *
from unnest($1::text[], $2::text[], $3::bigint[])
on conflict (account, asset) do update
set balance = balances.balance + excluded.balance"#;

pub(super) const DEBIT_BALANCES: &str = r#"
update balances b
set balance = b.balance - d.amount
from unnest($1::text[], $2::text[], $3::bigint[]) as d (account, asset, amount)
where b.account = d.account
    and b.asset = d.asset"#;

/// A balance: a guarded account's stored one (its row locked when `lock`), a system account's
/// summed from its postings.
pub(super) async fn balance(
    uow: &mut PgUnitOfWork,
    account: &str,
    asset: &str,
    lock: bool,
) -> StoreResult<i64> {
    if !Account::is_guarded_name(account) {
        debug_assert!(!lock, "only a guarded balance has a row to lock");
        return uow.summed_balance(account, asset).await;
    }
    const READ: &str = r#"
select account, balance
from balances
where account = $1
    and asset = $2"#;
    const LOCK: &str = r#"
select account, balance
from balances
where account = $1
    and asset = $2
for update"#;
    let query = sqlx::query(if lock { LOCK } else { READ })
        .bind(account) // $1
        .bind(asset); // $2
    let balance = uow
        .fetch_optional(query, |row| {
            Cols::new(row, "balances", "account").get("balance")
        })
        .await?;
    Ok(balance.unwrap_or(0))
}

pub(super) async fn member_transactions(
    uow: &mut PgUnitOfWork,
    member_id: &str,
    before_transaction_id: Option<i64>,
    limit: i64,
) -> StoreResult<Vec<Transaction>> {
    // No `$2 is null or ...`: a bound that is always there keeps the index range scan in
    // the generic plan of this prepared statement.
    let query = sqlx::query(
        r#"
select transaction_id, kind, member_id, occurred_at, recorded_at, channel, store_id,
    order_id, metadata::text as metadata
from transactions
where member_id = $1
    and transaction_id < $2
order by transaction_id desc
limit $3"#,
    )
    .bind(member_id) // $1
    .bind(before_transaction_id.unwrap_or(i64::MAX)) // $2
    .bind(limit.max(0)); // $3
    let mut transactions = uow.fetch_all(query, transaction_from_row).await?;
    if !transactions.is_empty() {
        uow.attach_postings(&mut transactions).await?;
    }
    Ok(transactions)
}

impl PgUnitOfWork {
    /// Σ(in) − Σ(out) of an account without a stored balance, from the journal.
    pub(super) async fn summed_balance(&mut self, account: &str, asset: &str) -> StoreResult<i64> {
        let query = sqlx::query(
            r#"
select (coalesce(sum(amount) filter (where to_account = $1), 0)
    - coalesce(sum(amount) filter (where from_account = $1), 0))::bigint as balance
from postings
where (to_account = $1 or from_account = $1)
    and asset = $2"#,
        )
        .bind(account) // $1
        .bind(asset); // $2
        self.fetch_value(query, "postings", "balance").await
    }

    /// The postings of a page of transactions, in one query.
    pub(super) async fn attach_postings(
        &mut self,
        transactions: &mut [Transaction],
    ) -> StoreResult<()> {
        let ids: Vec<i64> = transactions.iter().map(|t| t.transaction_id).collect();
        let query = sqlx::query(
            r#"
select transaction_id, from_account, to_account, asset, amount
from postings
where transaction_id = any($1)
order by transaction_id, posting_no"#,
        )
        .bind(ids); // $1
        let mut by_transaction: BTreeMap<i64, Vec<Posting>> = BTreeMap::new();
        for (transaction_id, posting) in self.fetch_all(query, posting_from_row).await? {
            by_transaction
                .entry(transaction_id)
                .or_default()
                .push(posting);
        }
        for transaction in transactions {
            transaction.postings = by_transaction
                .remove(&transaction.transaction_id)
                .unwrap_or_default();
        }
        Ok(())
    }
}

/// A transaction without its postings (they are read for a whole page at once).
pub(super) fn transaction_from_row(row: &PgRow) -> StoreResult<Transaction> {
    let c = Cols::new(row, "transactions", "transaction_id");
    Ok(Transaction {
        transaction_id: c.get("transaction_id")?,
        kind: c.get("kind")?,
        member_id: c.get("member_id")?,
        occurred_at: c.get("occurred_at")?,
        recorded_at: c.get("recorded_at")?,
        channel: c.channel_opt("channel")?,
        store_id: c.get("store_id")?,
        order_id: c.get("order_id")?,
        postings: Vec::new(),
        metadata: c.json("metadata")?,
    })
}

/// A posting and the transaction it belongs to.
pub(super) fn posting_from_row(row: &PgRow) -> StoreResult<(i64, Posting)> {
    let c = Cols::new(row, "postings", "transaction_id");
    let posting = Posting {
        from_account: c.get("from_account")?,
        to_account: c.get("to_account")?,
        asset: c.get("asset")?,
        amount: c.get("amount")?,
    };
    Ok((c.get("transaction_id")?, posting))
}

pub(super) fn account_total_from_row(row: &PgRow) -> StoreResult<AccountTotal> {
    let c = Cols::new(row, "ledger snapshot", "account");
    Ok(AccountTotal {
        account: c.get("account")?,
        asset: c.get("asset")?,
        amount: c.get("amount")?,
    })
}
