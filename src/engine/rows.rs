//! The rows a command is decided against: the engine-facing side of the storage port.
//!
//! Every command of the engine is written against [`LedgerRows`]: the row reads the stores
//! answer too ([`LedgerReads`]), and row-level writes. Only the batch's in-memory rows
//! (`batch::InMemory`) implement it: a write changes a row in memory, and the writer flushes
//! what the whole batch changed through the store's coarse [`UnitOfWork`] port. The savepoint
//! methods are marks in memory, so a refused command is undone without a database round trip.
//!
//! [`UnitOfWork`]: crate::domain::ports::UnitOfWork

use async_trait::async_trait;

use crate::domain::{
    Account, Asset,
    coupon::{Campaign, Coupon},
    model::{Identifier, Lot, MemberRow, Order, OrderLot, Program, Store as RetailStore},
    ports::{
        GeoIssue, IdempotencyRecord, LedgerReads, LocationRecord, NewTransaction, OrderClash,
        Presence, RuleCounter, RuleStoreDay, StoreResult, Visit, VisitIssue,
    },
    receipt::ReceiptRecord,
    rules::Rule,
};

#[async_trait]
pub(crate) trait LedgerRows: LedgerReads {
    /// Marks where the open command began; `rollback_to_savepoint` undoes every write since.
    async fn savepoint(&mut self) -> StoreResult<()>;
    async fn rollback_to_savepoint(&mut self) -> StoreResult<()>;
    async fn release_savepoint(&mut self) -> StoreResult<()>;

    async fn insert_idempotency(&mut self, record: &IdempotencyRecord) -> StoreResult<()>;

    // Program and stores.
    async fn save_program(&mut self, program: &Program) -> StoreResult<()>;
    /// Stores `program` only if no settings are stored yet (so there is a row to lock).
    async fn ensure_program(&mut self, program: &Program) -> StoreResult<()>;
    async fn insert_store(&mut self, store: &RetailStore) -> StoreResult<()>;

    // Members.
    async fn insert_member(&mut self, member: &MemberRow) -> StoreResult<()>;
    async fn update_member(&mut self, member: &MemberRow) -> StoreResult<()>;
    async fn insert_identifier(
        &mut self,
        member_id: &str,
        identifier: &Identifier,
    ) -> StoreResult<()>;
    async fn move_identifiers(
        &mut self,
        from_member_id: &str,
        to_member_id: &str,
    ) -> StoreResult<()>;
    /// Unlinks an identifier from its member (UnlinkIdentifier, EraseMember).
    async fn remove_identifier(
        &mut self,
        member_id: &str,
        identifier: &Identifier,
    ) -> StoreResult<()>;
    /// EraseMember: the flush deletes the member's location history (reports and presence) and
    /// empties the raw text of its receipts (rows the batch never reads).
    async fn erase_personal_data(&mut self, member_id: &str) -> StoreResult<()>;

    /// See [`UnitOfWork::fence_coupon_issues`].
    ///
    /// [`UnitOfWork::fence_coupon_issues`]: crate::domain::ports::UnitOfWork::fence_coupon_issues
    async fn fence_coupon_issues(&mut self) -> StoreResult<()>;

    // The journal. `append_transaction` also applies the postings to the stored balances of
    // guarded accounts; a balance that would go below zero fails it.
    async fn append_transaction(&mut self, transaction: &NewTransaction) -> StoreResult<i64>;

    /// An event no written row reports (`domain::event`: tier changes, nearby offers, expiry
    /// reminders), into the batch's outbox; undone with the command like any write.
    fn push_event(&mut self, event: crate::domain::event::NewEvent);

    // Point lots.
    async fn insert_lot(&mut self, lot: &Lot) -> StoreResult<i64>;
    /// `member_lots` and the stored balance of the member's account in points, read together.
    async fn member_lots_and_balance(&mut self, member_id: &str) -> StoreResult<(Vec<Lot>, i64)> {
        let lots = self.member_lots(member_id).await?;
        let account = Account::Member(member_id.to_string()).to_string();
        let balance = self.balance(&account, &Asset::Points.to_string()).await?;
        Ok((lots, balance))
    }
    async fn update_lot(&mut self, lot: &Lot) -> StoreResult<()>;
    /// Points taken from lots for orders: stores the lots' new remaining and held points and
    /// records each take.
    async fn take_from_lots(&mut self, lots: &[Lot], takes: &[OrderLot]) -> StoreResult<()> {
        for lot in lots {
            self.update_lot(lot).await?;
        }
        for take in takes {
            self.insert_order_lot(take).await?;
        }
        Ok(())
    }
    async fn move_lots(&mut self, from_member_id: &str, to_member_id: &str) -> StoreResult<()>;
    async fn insert_order_lot(&mut self, order_lot: &OrderLot) -> StoreResult<()>;
    async fn update_order_lot(&mut self, order_lot: &OrderLot) -> StoreResult<()>;

    // Orders.
    async fn insert_order(&mut self, order: &Order) -> StoreResult<()>;
    /// What already uses a new order's id, or its register receipt (store, register,
    /// receipt_no; an empty receipt_no names none).
    async fn order_clash(
        &mut self,
        order_id: &str,
        store_id: &str,
        register_id: &str,
        receipt_no: &str,
    ) -> StoreResult<Option<OrderClash>> {
        if self.get_order(order_id, false).await?.is_some() {
            return Ok(Some(OrderClash::OrderId));
        }
        if !receipt_no.is_empty()
            && self
                .order_by_receipt(store_id, register_id, receipt_no)
                .await?
                .is_some()
        {
            return Ok(Some(OrderClash::Receipt));
        }
        Ok(None)
    }
    async fn update_order(&mut self, order: &Order) -> StoreResult<()>;

    // Rules and their counters.
    async fn save_rule(&mut self, rule: &Rule) -> StoreResult<()>;
    /// Adds `delta` (firings, points, coupons; the later last firing) to a rule's counter.
    async fn count_rule(&mut self, delta: &RuleCounter) -> StoreResult<()>;
    /// Adds `delta.fired` firings to a rule's day at a store.
    async fn count_rule_day(&mut self, delta: &RuleStoreDay) -> StoreResult<()>;
    /// Adds `delta.spend_e4` to the member's spend in `delta.month` (`domain::tier`).
    async fn add_spend(&mut self, delta: &crate::domain::ports::MonthSpend) -> StoreResult<()>;

    // Campaigns and coupons.
    async fn insert_campaign(&mut self, campaign: &Campaign) -> StoreResult<()>;
    /// A campaign read under its lock, changed (its public code and id never change).
    async fn update_campaign(&mut self, campaign: &Campaign) -> StoreResult<()>;
    async fn insert_coupon(&mut self, coupon: &Coupon) -> StoreResult<()>;
    async fn update_coupon(&mut self, coupon: &Coupon) -> StoreResult<()>;
    async fn move_coupons(&mut self, from_member_id: &str, to_member_id: &str) -> StoreResult<()>;

    // Engagement.
    async fn insert_location_report(&mut self, report: &LocationRecord) -> StoreResult<()>;
    async fn save_presence(&mut self, presence: &Presence) -> StoreResult<()>;
    async fn insert_geo_issue(&mut self, issue: &GeoIssue) -> StoreResult<()>;
    /// Records a visit unless the member's visit of that store and date is recorded already.
    async fn insert_visit(&mut self, visit: &Visit) -> StoreResult<()>;
    async fn insert_visit_issue(&mut self, issue: &VisitIssue) -> StoreResult<()>;

    // Receipts.
    async fn insert_receipt(&mut self, receipt: &ReceiptRecord) -> StoreResult<()>;
    /// A review's outcome (status, reason, points, coupons, review fields).
    async fn update_receipt(&mut self, receipt: &ReceiptRecord) -> StoreResult<()>;
}
