//! The batch write path on SQLite: ids reserved ahead of a flush, and the flush itself.
//!
//! SQLite runs in-process, so "one statement per table" means one cached prepared statement
//! per table and kind of change, executed once per row: a few microseconds each, no round
//! trips to save. A load, likewise, reads row by row through the store's own row reads.

use std::collections::BTreeSet;

use super::{SqliteUnitOfWork, col};
use crate::domain::{
    Account, Asset,
    ports::{
        AccountTotal, ChangeSet, Keys, LedgerReads, Loaded, Sequence, StoreError, StoreResult,
    },
    receipt::ReceiptClaim,
};
use crate::metrics::FlushLap;

/// The `sqlite_sequence` row of a sequence's table and the statement that reads how far it
/// has gone: the larger of the recorded sequence and the largest id in the table (the table
/// name cannot be a parameter, hence one statement per sequence).
fn sequence_table(sequence: Sequence) -> (&'static str, &'static str) {
    match sequence {
        Sequence::Transactions => (
            "transactions",
            r"
            select max(
                coalesce((select seq from sqlite_sequence where name = 'transactions'), 0),
                coalesce((select max(transaction_id) from transactions), 0)
            )
            ",
        ),
        Sequence::Lots => (
            "point_lots",
            r"
            select max(
                coalesce((select seq from sqlite_sequence where name = 'point_lots'), 0),
                coalesce((select max(lot_id) from point_lots), 0)
            )
            ",
        ),
    }
}

/// [`UnitOfWork::load`] row by row, through the row reads: right for an embedded database,
/// where a lookup costs microseconds.
pub(super) async fn load_row_by_row<U: LedgerReads + ?Sized>(
    uow: &mut U,
    keys: &Keys,
) -> StoreResult<Loaded> {
    let mut loaded = Loaded::default();
    for (key_id, request_id) in &keys.idempotency {
        if let Some(record) = uow.find_idempotency(key_id, request_id).await? {
            loaded.idempotency.push(record);
        }
    }
    let mut member_ids: BTreeSet<String> = keys.member_ids.iter().cloned().collect();
    for identifier in &keys.identifiers {
        if let Some(member_id) = uow.member_by_identifier(identifier).await? {
            member_ids.insert(member_id.clone());
            loaded.identifiers.push((identifier.clone(), member_id));
        }
    }
    let order_ids: BTreeSet<&String> = keys.order_ids.iter().collect();
    for order_id in order_ids {
        let hold = Account::Hold(order_id.clone()).to_string();
        match uow.get_order(order_id, true).await? {
            Some(order) => {
                member_ids.insert(order.member_id.clone());
                loaded.order_lots.extend(uow.order_lots(order_id).await?);
                loaded.balances.push(points_balance(uow, hold).await?);
                loaded.orders.push(order);
            }
            None => loaded.complete_accounts.push(hold),
        }
    }
    for member_id in &member_ids {
        let Some(member) = uow.get_member(member_id, true).await? else {
            continue;
        };
        loaded.lots.extend(uow.member_lots(member_id).await?);
        for account in [
            Account::Member(member_id.clone()),
            Account::MemberPending(member_id.clone()),
        ] {
            loaded
                .balances
                .push(points_balance(uow, account.to_string()).await?);
        }
        loaded.members.push(member);
    }
    let mut codes: BTreeSet<String> = keys.coupon_codes.iter().cloned().collect();
    for order in &loaded.orders {
        codes.extend(
            uow.order_coupons(&order.order_id)
                .await?
                .into_iter()
                .map(|coupon| coupon.code),
        );
    }
    for code in &codes {
        if let Some(coupon) = uow.get_coupon(code, true).await? {
            loaded.coupons.push(coupon);
        }
    }
    for receipt in &keys.receipts {
        let (store_id, register_id, receipt_no) = receipt;
        if let Some(order_id) = uow
            .order_by_receipt(store_id, register_id, receipt_no)
            .await?
        {
            loaded.receipts.push((receipt.clone(), order_id));
        }
        let claim = ReceiptClaim::Number {
            store_id: store_id.clone(),
            register_id: register_id.clone(),
            receipt_no: receipt_no.clone(),
        };
        if let Some(receipt_id) = uow.receipt_claimed_by(&claim).await? {
            loaded.receipt_claims.push((receipt.clone(), receipt_id));
        }
    }
    Ok(loaded)
}

async fn points_balance<U: LedgerReads + ?Sized>(
    uow: &mut U,
    account: String,
) -> StoreResult<AccountTotal> {
    let asset = Asset::Points.to_string();
    let amount = uow.balance(&account, &asset).await?;
    Ok(AccountTotal {
        account,
        asset,
        amount,
    })
}

/// An update that must find the one row the batch loaded; any other count is a bug (the row
/// was never there, or the key is not unique), and the batch must not commit.
fn expect_one(updated: usize, what: &str, key: impl std::fmt::Display) -> StoreResult<()> {
    match updated {
        1 => Ok(()),
        n => Err(StoreError::Database(
            format!("{what} {key}: expected to update 1 row, updated {n}").into(),
        )),
    }
}

impl SqliteUnitOfWork {
    /// Makes the balances of a row-by-row load complete, as PostgreSQL's bulk load is: every
    /// stored asset of the loaded members' accounts and of the named orders' holds (one cached
    /// lookup per account), so that the batch can take a missing pair as zero and never has to
    /// read a balance while it decides.
    pub(super) fn complete_balances(&self, keys: &Keys, loaded: &mut Loaded) -> StoreResult<()> {
        let mut accounts = Vec::with_capacity(2 * loaded.members.len() + keys.order_ids.len());
        for member in &loaded.members {
            accounts.push(Account::Member(member.member_id.clone()).to_string());
            accounts.push(Account::MemberPending(member.member_id.clone()).to_string());
        }
        let order_ids: BTreeSet<&String> = keys.order_ids.iter().collect();
        accounts.extend(
            order_ids
                .into_iter()
                .map(|order_id| Account::Hold(order_id.clone()).to_string()),
        );
        loaded.balances.clear();
        for account in &accounts {
            loaded.balances.extend(self.stored_balances_of(account)?);
        }
        loaded.complete_accounts = accounts;
        Ok(())
    }

    /// `count` ids of `sequence` that AUTOINCREMENT will never hand out: the table's
    /// `sqlite_sequence` row moves past them. The writer holds the database's write lock
    /// (`BEGIN IMMEDIATE`) from its first statement, so nobody else can move it in between.
    pub(super) fn reserve(&self, sequence: Sequence, count: usize) -> StoreResult<Vec<i64>> {
        if count == 0 {
            return Ok(Vec::new());
        }
        let (name, last_sql) = sequence_table(sequence);
        let last: i64 = self.query(last_sql)?.fetch_one(|row| col(row, 0))?;
        let reserved = i64::try_from(count)
            .ok()
            .and_then(|count| last.checked_add(count))
            .ok_or_else(|| StoreError::Database(format!("{name}: ids exhausted").into()))?;
        let updated = self
            .query(
                r"
                update sqlite_sequence
                set seq = ?2
                where name = ?1
                ",
            )?
            .bind(name) // ?1
            .bind(reserved) // ?2
            .execute()?;
        if updated == 0 {
            // SQLite adds a table's row on its first insert; until then it is ours to add (and
            // that first insert will then find and advance it rather than add another).
            let query = self
                .query(
                    r"
                    insert into sqlite_sequence (name, seq)
                    values (?1, ?2)
                    ",
                )?
                .bind(name) // ?1
                .bind(reserved); // ?2
            self.run(query)?;
        }
        Ok((last + 1..=reserved).collect())
    }

    /// The rare parts of a [`ChangeSet`] (admin writes, merges), one statement each (most
    /// batches have none), written first: the rows after them already name their final member.
    pub(super) fn write_rare_parts(&self, changes: &ChangeSet) -> StoreResult<()> {
        for store in &changes.new_stores {
            self.insert_store(store)?;
        }
        if let Some(program) = &changes.program {
            self.save_program(program)?;
        }
        for campaign in &changes.new_campaigns {
            self.insert_campaign(campaign)?;
        }
        for campaign in &changes.changed_campaigns {
            self.update_campaign(campaign)?;
        }
        for (source, target) in &changes.merges {
            self.move_lots(source, target)?;
            self.move_coupons(source, target)?;
            self.move_identifiers(source, target)?;
            self.move_member_spend(source, target)?;
        }
        for identifier in &changes.removed_identifiers {
            self.delete_identifier(identifier)?;
        }
        for member_id in &changes.erased_members {
            self.erase_personal_data(member_id)?;
        }
        Ok(())
    }

    /// Writes a batch's changes, parents before the rows that reference them (members before
    /// identifiers, lots before order lots). The first failure (a debit below zero, a
    /// duplicate key, an update that finds no row) fails the flush; the caller drops the unit
    /// of work, which rolls all of it back.
    /// `lap` times each table's writes (`omo_flush_duration_seconds{table}`).
    pub(super) fn write_changes(&self, changes: &ChangeSet, lap: &mut FlushLap) -> StoreResult<()> {
        for member in &changes.new_members {
            self.insert_member_row(member)?;
        }
        for member in &changes.changed_members {
            let updated = self.update_member_row(member)?;
            expect_one(updated, "member", &member.member_id)?;
        }
        lap.table_done("members", changes);
        for (identifier, member_id) in &changes.new_identifiers {
            self.insert_identifier_row(member_id, identifier)?;
        }
        lap.table_done("identifiers", changes);
        for (transaction_id, transaction) in &changes.transactions {
            self.insert_transaction_row(*transaction_id, transaction)?;
        }
        lap.table_done("transactions", changes);
        for (transaction_id, transaction) in &changes.transactions {
            self.insert_postings(*transaction_id, &transaction.postings)?;
        }
        lap.table_done("postings", changes);
        for delta in &changes.balance_deltas {
            if delta.amount > 0 {
                self.credit_balance(&delta.account, &delta.asset, delta.amount)?;
            } else if delta.amount < 0 {
                self.debit_balance(&delta.account, &delta.asset, delta.amount)?;
            }
        }
        lap.table_done("balances", changes);
        for lot in &changes.new_lots {
            self.insert_lot_row(lot)?;
        }
        for lot in &changes.changed_lots {
            expect_one(self.update_lot_row(lot)?, "lot", lot.lot_id)?;
        }
        lap.table_done("point_lots", changes);
        for order in &changes.new_orders {
            self.insert_order_row(order)?;
        }
        for order in &changes.changed_orders {
            expect_one(self.update_order_row(order)?, "order", &order.order_id)?;
        }
        lap.table_done("orders", changes);
        for order_lot in &changes.new_order_lots {
            self.insert_order_lot_row(order_lot)?;
        }
        for order_lot in &changes.changed_order_lots {
            let key = format!("{}/{}", order_lot.order_id, order_lot.lot_id);
            expect_one(self.update_order_lot_row(order_lot)?, "order lot", key)?;
        }
        lap.table_done("order_lots", changes);
        for coupon in &changes.new_coupons {
            self.insert_coupon_row(coupon)?;
        }
        for coupon in &changes.changed_coupons {
            expect_one(self.update_coupon_row(coupon)?, "coupon", &coupon.code)?;
        }
        lap.table_done("coupons", changes);
        for record in &changes.outcomes {
            self.insert_idempotency_row(record)?;
        }
        lap.table_done("idempotency_keys", changes);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use chrono::DateTime;

    use super::super::SqliteStore;
    use crate::domain::{
        model::LotState,
        ports::{Sequence, Store},
    };
    use crate::store::test_writes;

    /// A database file in a directory of its own, removed when dropped.
    struct TempDir(PathBuf);

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn lot() -> crate::domain::model::Lot {
        crate::domain::model::Lot {
            lot_id: 0,
            member_id: "m1".into(),
            order_id: String::new(),
            state: LotState::Available,
            earned_at: DateTime::from_timestamp(1_700_000_000, 0).expect("instant"),
            matures_at: None,
            expires_at: None,
            original_points: 5,
            remaining_points: 5,
            held_points: 0,
            limited: false,
        }
    }

    /// SQLite adds a table's `sqlite_sequence` row on its first insert. A reservation made
    /// before that adds the row itself; the first insert must then advance that row, not add
    /// a second one that starts again from the table's largest id.
    #[tokio::test]
    async fn a_reservation_before_the_first_insert_owns_the_sequence_row() {
        let name = format!("omo_sqlite_batch_{:016x}", rand::random::<u64>());
        let dir = TempDir(std::env::temp_dir().join(name));
        std::fs::create_dir_all(&dir.0).expect("temp dir");
        let path = dir.0.join("omo.db");
        let store = SqliteStore::connect(&format!("sqlite://{}", path.display()))
            .await
            .expect("open");

        let mut uow = store.begin().await.expect("begin");
        let reserved = uow.reserve_ids(Sequence::Lots, 3).await.expect("reserve");
        assert_eq!(reserved, [1, 2, 3]);
        let inserted = test_writes::insert_lot(uow.as_mut(), &lot())
            .await
            .expect("insert");
        assert_eq!(inserted, 4, "the first insert comes after the reservation");
        assert_eq!(uow.reserve_ids(Sequence::Lots, 1).await.unwrap(), [5]);
        uow.commit().await.expect("commit");

        let conn = rusqlite::Connection::open(&path).expect("open the file");
        let rows: Vec<(String, i64)> = conn
            .prepare("select name, seq from sqlite_sequence order by name")
            .expect("prepare")
            .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))
            .expect("query")
            .collect::<Result<_, _>>()
            .expect("rows");
        assert_eq!(rows, [("point_lots".to_string(), 5)]);
    }
}
