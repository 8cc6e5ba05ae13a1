//! Receipts: the receipt rules and every submission. A receipt's points and coupons are rows of
//! the ledger's own tables; these only say which receipts are taken and what each became.

use chrono::{DateTime, Utc};
use rusqlite::Row;

use super::{Cols, SqliteUnitOfWork, col};
use crate::domain::{
    ports::{EngagementChanges, ReceiptPageQuery, StoreError, StoreResult},
    receipt::{
        ClaimHolder, ClaimWrite, Receipt, ReceiptClaim, ReceiptReason, ReceiptRecord, ReceiptRule,
        ReceiptStatus,
    },
};
use crate::store::to_json;

const RECEIPT_COLUMNS: &str = "receipt_id, member_id, store_id, register_id, receipt_no, \
    image_sha256, issued_at, total, lines, raw_text, status, reason, points, lot_id, rule_ids, \
    coupon_codes, submitted_at, reviewed_at, review_note";

fn receipt_from_row(row: &Row<'_>) -> StoreResult<ReceiptRecord> {
    let c = Cols::new(row, "receipts", "receipt_id");
    let reason: Option<String> = c.get("reason")?;
    Ok(ReceiptRecord {
        receipt_id: c.get("receipt_id")?,
        member_id: c.get("member_id")?,
        receipt: Receipt {
            store_id: c.get("store_id")?,
            register_id: c.get("register_id")?,
            receipt_no: c.get("receipt_no")?,
            issued_at: c.instant("issued_at")?,
            total: c.money("total")?,
            lines: c.json("lines")?,
            image_sha256: c.get("image_sha256")?,
            raw_text: c.get("raw_text")?,
        },
        status: c.named("status", ReceiptStatus::parse)?,
        reason: match reason {
            Some(_) => Some(c.named("reason", ReceiptReason::parse)?),
            None => None,
        },
        points: c.get("points")?,
        lot_id: c.get("lot_id")?,
        rule_ids: c.json("rule_ids")?,
        coupon_codes: c.json("coupon_codes")?,
        submitted_at: c.instant("submitted_at")?,
        reviewed_at: c.opt_instant("reviewed_at")?,
        review_note: c.get("review_note")?,
    })
}

impl SqliteUnitOfWork {
    /// Empties the raw text of up to `limit` receipts submitted before `submitted_before` that
    /// still have one (by the partial index of migration 0013); how many it emptied.
    pub(super) fn clear_receipt_texts(
        &self,
        submitted_before: DateTime<Utc>,
        limit: i64,
    ) -> StoreResult<u64> {
        let cleared = self
            .query(
                r"
                update receipts
                set raw_text = ''
                where receipt_id in (
                    select receipt_id
                    from receipts
                    where submitted_at < ?1
                        and raw_text <> ''
                    limit ?2
                )
                ",
            )?
            .bind(submitted_before.timestamp_micros()) // ?1
            .bind(limit.max(0)) // ?2
            .execute()?;
        Ok(cleared as u64)
    }

    pub(super) fn list_receipt_rules(&self) -> StoreResult<Vec<ReceiptRule>> {
        let query = self.query(
            r"
            select rule_id, definition
            from receipt_rules
            order by rule_id
            ",
        )?;
        self.fetch_all(query, |row| {
            Cols::new(row, "receipt_rules", "rule_id").json("definition")
        })
    }

    /// SQLite writes one transaction at a time: the lock is the write transaction itself.
    pub(super) fn get_receipt(&self, receipt_id: &str) -> StoreResult<Option<ReceiptRecord>> {
        let sql = format!("select {RECEIPT_COLUMNS} from receipts where receipt_id = ?1");
        let query = self.query(&sql)?.bind(receipt_id); // ?1
        self.fetch_optional(query, receipt_from_row)
    }

    pub(super) fn receipt_claimed_by(&self, claim: &ReceiptClaim) -> StoreResult<Option<String>> {
        let query = match claim {
            ReceiptClaim::Number {
                store_id,
                register_id,
                receipt_no,
            } => self
                .query(
                    r"
                    select receipt_id
                    from receipt_claims
                    where store_id = ?1 and register_id = ?2 and receipt_no = ?3
                        and receipt_id is not null
                    ",
                )?
                .bind(store_id) // ?1
                .bind(register_id) // ?2
                .bind(receipt_no), // ?3
            ReceiptClaim::Image(image_sha256) => self
                .query("select receipt_id from receipts where image_sha256 = ?1 and claims")?
                .bind(image_sha256), // ?1
        };
        self.fetch_optional(query, |row| col(row, 0))
    }

    pub(super) fn count_member_receipts(
        &self,
        member_id: &str,
        since: DateTime<Utc>,
    ) -> StoreResult<i64> {
        self.query(
            r"
            select count(*)
            from receipts
            where member_id = ?1 and submitted_at >= ?2 and claims
            ",
        )?
        .bind(member_id) // ?1
        .bind(since.timestamp_micros()) // ?2
        .fetch_one(|row| col(row, 0))
    }

    pub(super) fn list_receipts(&self, page: &ReceiptPageQuery) -> StoreResult<Vec<ReceiptRecord>> {
        let (after_at, after_id) = page
            .after
            .as_ref()
            .map(|(at, id)| (Some(at.timestamp_micros()), id.as_str()))
            .unwrap_or((None, ""));
        let status = page.status.map(ReceiptStatus::as_str);
        let query = match &page.member_id {
            // A member's history, newest first.
            Some(member_id) => {
                let sql = format!(
                    r"
                    select {RECEIPT_COLUMNS}
                    from receipts
                    where member_id = ?1
                        and (?2 is null or status = ?2)
                        and (?3 is null or (submitted_at, receipt_id) < (?3, ?4))
                    order by submitted_at desc, receipt_id desc
                    limit ?5
                    "
                );
                self.query(&sql)?.bind(member_id) // ?1
            }
            // One status, oldest first: the review queue.
            None => {
                let sql = format!(
                    r"
                    select {RECEIPT_COLUMNS}
                    from receipts
                    where ?1 is null
                        and status = ?2
                        and (?3 is null or (submitted_at, receipt_id) > (?3, ?4))
                    order by submitted_at, receipt_id
                    limit ?5
                    "
                );
                self.query(&sql)?.bind(None::<String>) // ?1
            }
        }
        .bind(status) // ?2
        .bind(after_at) // ?3
        .bind(after_id) // ?4
        .bind(page.limit); // ?5
        self.fetch_all(query, receipt_from_row)
    }

    /// Writes a batch's receipt rules and receipts.
    pub(super) fn write_receipts(&self, changes: &EngagementChanges) -> StoreResult<()> {
        for (rule, at) in &changes.new_receipt_rules {
            let query = self
                .query(
                    r"
                    insert into receipt_rules (rule_id, definition, created_at)
                    values (?1, ?2, ?3)
                    ",
                )?
                .bind(&rule.rule_id) // ?1
                .bind(to_json(rule)?) // ?2
                .bind(at.timestamp_micros()); // ?3
            self.run(query)?;
        }
        for receipt in &changes.new_receipts {
            self.insert_receipt(receipt)?;
        }
        for receipt in &changes.changed_receipts {
            self.update_receipt(receipt)?;
        }
        for claim in &changes.receipt_claims {
            self.write_claim(claim)?;
        }
        Ok(())
    }

    /// A register receipt's claim: a new one (a second writer of the key is a unique
    /// violation), or a scan's taken over by the register's sale.
    fn write_claim(&self, claim: &ClaimWrite) -> StoreResult<()> {
        let (store_id, register_id, receipt_no) = &claim.key;
        let (order_id, receipt_id) = match &claim.holder {
            ClaimHolder::Sale(order_id) => (Some(order_id), None),
            ClaimHolder::Scan(receipt_id) => (None, Some(receipt_id)),
        };
        let Some(taken_from) = &claim.taken_from else {
            let query = self
                .query(
                    r"
                    insert into receipt_claims (store_id, register_id, receipt_no, order_id,
                        receipt_id)
                    values (?1, ?2, ?3, ?4, ?5)
                    ",
                )?
                .bind(store_id) // ?1
                .bind(register_id) // ?2
                .bind(receipt_no) // ?3
                .bind(order_id) // ?4
                .bind(receipt_id); // ?5
            return self.run(query);
        };
        let query = self
            .query(
                r"
                update receipt_claims
                set order_id = ?4, receipt_id = ?5
                where store_id = ?1 and register_id = ?2 and receipt_no = ?3
                    and receipt_id = ?6
                ",
            )?
            .bind(store_id) // ?1
            .bind(register_id) // ?2
            .bind(receipt_no) // ?3
            .bind(order_id) // ?4
            .bind(receipt_id) // ?5
            .bind(taken_from); // ?6
        if query.execute()? != 1 {
            return Err(StoreError::Conflict(format!(
                "receipt_claims[{store_id}, {register_id}, {receipt_no}]: no longer held by \
                 scan {taken_from}"
            )));
        }
        Ok(())
    }

    fn insert_receipt(&self, record: &ReceiptRecord) -> StoreResult<()> {
        let receipt = &record.receipt;
        let query = self
            .query(
                r"
                insert into receipts (receipt_id, member_id, store_id, register_id, receipt_no,
                    image_sha256, issued_at, total, lines, raw_text, status, reason, points,
                    lot_id, rule_ids, coupon_codes, submitted_at, reviewed_at, review_note,
                    claims)
                values (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16,
                    ?17, ?18, ?19, ?20)
                ",
            )?
            .bind(&record.receipt_id) // ?1
            .bind(&record.member_id) // ?2
            .bind(&receipt.store_id) // ?3
            .bind(&receipt.register_id) // ?4
            .bind(&receipt.receipt_no) // ?5
            .bind(&receipt.image_sha256) // ?6
            .bind(receipt.issued_at.timestamp_micros()) // ?7
            .bind(receipt.total.to_string()) // ?8
            .bind(to_json(&receipt.lines)?) // ?9
            .bind(&receipt.raw_text) // ?10
            .bind(record.status.as_str()) // ?11
            .bind(record.reason.map(ReceiptReason::as_str)) // ?12
            .bind(record.points) // ?13
            .bind(record.lot_id) // ?14
            .bind(to_json(&record.rule_ids)?) // ?15
            .bind(to_json(&record.coupon_codes)?) // ?16
            .bind(record.submitted_at.timestamp_micros()) // ?17
            .bind(record.reviewed_at.map(|at| at.timestamp_micros())) // ?18
            .bind(&record.review_note) // ?19
            .bind(record.claims()); // ?20
        self.run(query)
    }

    /// A review: the receipt's outcome changes, never what was submitted.
    fn update_receipt(&self, record: &ReceiptRecord) -> StoreResult<()> {
        let query = self
            .query(
                r"
                update receipts
                set status = ?2, reason = ?3, points = ?4, coupon_codes = ?5, reviewed_at = ?6,
                    review_note = ?7, claims = ?8
                where receipt_id = ?1
                ",
            )?
            .bind(&record.receipt_id) // ?1
            .bind(record.status.as_str()) // ?2
            .bind(record.reason.map(ReceiptReason::as_str)) // ?3
            .bind(record.points) // ?4
            .bind(to_json(&record.coupon_codes)?) // ?5
            .bind(record.reviewed_at.map(|at| at.timestamp_micros())) // ?6
            .bind(&record.review_note) // ?7
            .bind(record.claims()); // ?8
        if query.execute()? != 1 {
            return Err(StoreError::Corrupt(format!(
                "receipts[{}]: a reviewed receipt is not stored",
                record.receipt_id
            )));
        }
        Ok(())
    }

    /// `omo verify`: receipts whose points are not where their status says (see
    /// `LedgerSnapshot::receipts_off_their_lot`), and the points in review on both sides.
    pub(super) fn receipt_lot_check(&self) -> StoreResult<(Vec<String>, i64, i64)> {
        let off = self.query(
            r"
            select 'receipt ' || r.receipt_id
            from receipts r
            left join point_lots l on l.lot_id = r.lot_id
            where (r.status = 'pending_review' and r.points > 0
                    and (l.lot_id is null or l.state <> 'pending' or l.matures_at is not null
                        or l.remaining_points <> r.points))
                or (r.status = 'accepted' and r.points > 0
                    and (l.lot_id is null or l.original_points <> r.points))
            union all
            select 'lot ' || l.lot_id
            from point_lots l
            where l.state = 'pending' and l.matures_at is null and l.remaining_points > 0
                and not exists (
                    select 1 from receipts r
                    where r.lot_id = l.lot_id and r.status = 'pending_review')
            order by 1
            ",
        )?;
        let off = self.fetch_all(off, |row| col(row, 0))?;
        let (in_review, in_lots) = self
            .query(
                r"
                select
                    (select coalesce(sum(points), 0)
                     from receipts where status = 'pending_review'),
                    (select coalesce(sum(l.remaining_points), 0)
                     from point_lots l
                     where l.state = 'pending' and l.matures_at is null)
                ",
            )?
            .fetch_one(|row| Ok((col(row, 0)?, col(row, 1)?)))?;
        Ok((off, in_review, in_lots))
    }
}
