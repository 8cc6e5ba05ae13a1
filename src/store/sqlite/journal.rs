//! The journal: transactions, their postings, and the stored balances of guarded accounts.

use std::collections::BTreeMap;

use rusqlite::Row;

use super::{Cols, Query, SqliteUnitOfWork, col};
use crate::domain::{
    Account,
    model::{Channel, Posting, Transaction},
    ports::{AccountTotal, NewTransaction, StoreError, StoreResult},
};
use crate::store::to_json;

pub(super) fn balance(uow: &SqliteUnitOfWork, account: &str, asset: &str) -> StoreResult<i64> {
    let guarded = Account::parse(account).is_some_and(|a| a.is_guarded());
    let sql = if guarded {
        r"
        select coalesce(sum(balance), 0)
        from balances
        where account = ?1
          and asset = ?2
        "
    } else {
        r"
        select coalesce(sum(amount), 0)
        from (
            select amount from postings where to_account = ?1 and asset = ?2
            union all
            select -amount from postings where from_account = ?1 and asset = ?2
        )
        "
    };
    uow.query(sql)?
        .bind(account) // ?1
        .bind(asset) // ?2
        .fetch_one(|row| col(row, 0))
}

pub(super) fn member_transactions(
    uow: &SqliteUnitOfWork,
    member_id: &str,
    before_transaction_id: Option<i64>,
    limit: i64,
) -> StoreResult<Vec<Transaction>> {
    let query = uow
        .query(
            r"
            select transaction_id, kind, member_id, occurred_at, recorded_at,
                   channel, store_id, order_id, metadata
            from transactions
            where member_id = ?1
              and transaction_id < ?2
            order by transaction_id desc
            limit ?3
            ",
        )?
        .bind(member_id) // ?1
        .bind(before_transaction_id.unwrap_or(i64::MAX)) // ?2
        .bind(limit.max(0)); // ?3
    let mut transactions = uow.fetch_all(query, transaction_from_row)?;
    let (Some(newest), Some(oldest)) = (transactions.first(), transactions.last()) else {
        return Ok(transactions);
    };
    // The page is every transaction of the member between its oldest and newest id.
    let (first_id, last_id) = (oldest.transaction_id, newest.transaction_id);
    let mut postings = uow.postings_between(member_id, first_id, last_id)?;
    for transaction in &mut transactions {
        transaction.postings = postings
            .remove(&transaction.transaction_id)
            .unwrap_or_default();
    }
    Ok(transactions)
}

impl SqliteUnitOfWork {
    /// A journal entry under the id reserved for it; its postings are inserted apart.
    pub(super) fn insert_transaction_row(
        &self,
        transaction_id: i64,
        transaction: &NewTransaction,
    ) -> StoreResult<()> {
        let query = self
            .transaction_query(
                r"
                insert into transactions (
                    kind, member_id, occurred_at, recorded_at, channel, store_id, order_id,
                    metadata, transaction_id
                )
                values (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)
                ",
                transaction,
            )?
            .bind(transaction_id); // ?9
        self.run(query)
    }

    /// Every stored balance of one account (one cached lookup), by asset.
    pub(super) fn stored_balances_of(&self, account: &str) -> StoreResult<Vec<AccountTotal>> {
        self.query(
            r"
            select account, asset, balance
            from balances
            where account = ?1
            order by asset
            ",
        )?
        .bind(account) // ?1
        .fetch_all(|row| {
            Ok(AccountTotal {
                account: col(row, 0)?,
                asset: col(row, 1)?,
                amount: col(row, 2)?,
            })
        })
    }

    /// One cached statement, executed once per posting (a few microseconds each). Postings
    /// are numbered from 1 in order, as PostgreSQL numbers them.
    pub(super) fn insert_postings(
        &self,
        transaction_id: i64,
        postings: &[Posting],
    ) -> StoreResult<()> {
        for (posting_no, posting) in (1_i64..).zip(postings) {
            let query = self
                .query(
                    r"
                    insert into postings (
                        transaction_id, posting_no, from_account, to_account, asset, amount
                    )
                    values (?1, ?2, ?3, ?4, ?5, ?6)
                    ",
                )?
                .bind(transaction_id) // ?1
                .bind(posting_no) // ?2
                .bind(&posting.from_account) // ?3
                .bind(&posting.to_account) // ?4
                .bind(&posting.asset) // ?5
                .bind(posting.amount); // ?6
            self.run(query)?;
        }
        Ok(())
    }

    pub(super) fn credit_balance(&self, account: &str, asset: &str, delta: i64) -> StoreResult<()> {
        let query = self
            .query(
                r"
                insert into balances (account, asset, balance)
                values (?1, ?2, ?3)
                on conflict (account, asset) do update
                set balance = balances.balance + excluded.balance
                ",
            )?
            .bind(account) // ?1
            .bind(asset) // ?2
            .bind(delta); // ?3
        self.run(query)
    }

    pub(super) fn debit_balance(&self, account: &str, asset: &str, delta: i64) -> StoreResult<()> {
        let updated = self
            .query(
                r"
                update balances
                set balance = balance + ?3
                where account = ?1
                  and asset = ?2
                ",
            )?
            .bind(account) // ?1
            .bind(asset) // ?2
            .bind(delta) // ?3
            .execute()?;
        if updated == 0 {
            // No row: the balance is zero, and a debit would take it below zero.
            return Err(StoreError::Database(
                format!("balance of {account} in {asset} would go below zero (by {delta})").into(),
            ));
        }
        Ok(())
    }

    pub(super) fn postings_between(
        &self,
        member_id: &str,
        first_id: i64,
        last_id: i64,
    ) -> StoreResult<BTreeMap<i64, Vec<Posting>>> {
        let query = self
            .query(
                r"
                select p.transaction_id, p.from_account, p.to_account, p.asset, p.amount
                from postings p
                join transactions t on t.transaction_id = p.transaction_id
                where t.member_id = ?1
                  and p.transaction_id between ?2 and ?3
                order by p.transaction_id, p.posting_no
                ",
            )?
            .bind(member_id) // ?1
            .bind(first_id) // ?2
            .bind(last_id); // ?3
        let mut postings: BTreeMap<i64, Vec<Posting>> = BTreeMap::new();
        for (transaction_id, posting) in self.fetch_all(query, posting_from_row)? {
            postings.entry(transaction_id).or_default().push(posting);
        }
        Ok(postings)
    }

    /// Every column of a transaction but `transaction_id` (AUTOINCREMENT picks it, or a batch
    /// binds the one it reserved as ?9).
    pub(super) fn transaction_query<'c>(
        &'c self,
        sql: &str,
        transaction: &NewTransaction,
    ) -> StoreResult<Query<'c>> {
        let metadata: BTreeMap<&str, &str> = transaction
            .metadata
            .iter()
            .map(|(key, value)| (key.as_str(), value.as_str()))
            .collect();
        Ok(self
            .query(sql)?
            .bind(transaction.kind) // ?1
            .bind(&transaction.member_id) // ?2
            .bind(transaction.occurred_at.timestamp_micros()) // ?3
            .bind(transaction.recorded_at.timestamp_micros()) // ?4
            .bind(transaction.channel.map(Channel::as_str)) // ?5
            .bind(&transaction.store_id) // ?6
            .bind(&transaction.order_id) // ?7
            .bind(to_json(&metadata)?)) // ?8
    }
}

/// A transaction without its postings (read separately, one query per page).
pub(super) fn transaction_from_row(row: &Row<'_>) -> StoreResult<Transaction> {
    let c = Cols::new(row, "transactions", "transaction_id");
    let channel: Option<String> = c.get("channel")?;
    let channel = channel
        .map(|name| {
            Channel::parse(&name)
                .ok_or_else(|| c.corrupt("channel", format!("unknown value {name:?}")))
        })
        .transpose()?;
    Ok(Transaction {
        transaction_id: c.get("transaction_id")?,
        kind: c.get("kind")?,
        member_id: c.get("member_id")?,
        occurred_at: c.instant("occurred_at")?,
        recorded_at: c.instant("recorded_at")?,
        channel,
        store_id: c.get("store_id")?,
        order_id: c.get("order_id")?,
        postings: Vec::new(),
        metadata: c.json("metadata")?,
    })
}

pub(super) fn posting_from_row(row: &Row<'_>) -> StoreResult<(i64, Posting)> {
    let c = Cols::new(row, "postings", "transaction_id");
    let posting = Posting {
        from_account: c.get("from_account")?,
        to_account: c.get("to_account")?,
        asset: c.get("asset")?,
        amount: c.get("amount")?,
    };
    Ok((c.get("transaction_id")?, posting))
}
