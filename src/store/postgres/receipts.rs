//! Receipts: the receipt rules and every submission. A receipt's points and coupons are rows of
//! the ledger's own tables; these only say which receipts are taken and what each became. A
//! batch inserts its receipts with one set-based statement; reviews (one receipt each, by an
//! admin) update row by row.

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use sqlx::postgres::PgRow;

use super::{Cols, PgUnitOfWork, column, json_column};
use crate::domain::{
    ports::{EngagementChanges, ReceiptPageQuery, StoreError, StoreResult},
    receipt::{
        ClaimHolder, ClaimWrite, Receipt, ReceiptClaim, ReceiptReason, ReceiptRecord, ReceiptRule,
        ReceiptStatus,
    },
};

macro_rules! select_receipts {
    ($tail:literal) => {
        concat!(
            r#"
select receipt_id, member_id, store_id, register_id, receipt_no, image_sha256, issued_at, total,
    lines::text as lines, raw_text, status, reason, points, lot_id, rule_ids::text as rule_ids,
    coupon_codes::text as coupon_codes, submitted_at, reviewed_at, review_note
from receipts
"#,
            $tail
        )
    };
}

const GET_RECEIPT: &str = select_receipts!("where receipt_id = $1");
const GET_RECEIPT_LOCKED: &str = select_receipts!("where receipt_id = $1 for no key update");

/// A member's history, newest first.
const MEMBER_RECEIPTS: &str = select_receipts!(
    r#"where member_id = $1
    and ($2::text is null or status = $2)
    and ($3::timestamptz is null or (submitted_at, receipt_id) < ($3, $4))
order by submitted_at desc, receipt_id desc
limit $5"#
);

/// One status, oldest first: the review queue.
const RECEIPTS_IN_STATUS: &str = select_receipts!(
    r#"where $1::text is null
    and status = $2
    and ($3::timestamptz is null or (submitted_at, receipt_id) > ($3, $4))
order by submitted_at, receipt_id
limit $5"#
);

const INSERT_RECEIPTS: &str = r#"
insert into receipts (receipt_id, member_id, store_id, register_id, receipt_no, image_sha256,
    issued_at, total, lines, raw_text, status, reason, points, lot_id, rule_ids, coupon_codes,
    submitted_at, reviewed_at, review_note, claims)
select receipt_id, member_id, store_id, register_id, receipt_no, image_sha256, issued_at, total,
    lines::jsonb, raw_text, status, reason, points, lot_id, rule_ids::jsonb, coupon_codes::jsonb,
    submitted_at, reviewed_at, review_note, claims
from unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[],
    $7::timestamptz[], $8::numeric[], $9::text[], $10::text[], $11::text[], $12::text[],
    $13::int8[], $14::int8[], $15::text[], $16::text[], $17::timestamptz[], $18::timestamptz[],
    $19::text[], $20::bool[])
    as r (receipt_id, member_id, store_id, register_id, receipt_no, image_sha256, issued_at,
        total, lines, raw_text, status, reason, points, lot_id, rule_ids, coupon_codes,
        submitted_at, reviewed_at, review_note, claims)"#;

const INSERT_CLAIMS: &str = r#"
insert into receipt_claims (store_id, register_id, receipt_no, order_id, receipt_id)
select store_id, register_id, receipt_no, order_id, receipt_id
from unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[])
    as c (store_id, register_id, receipt_no, order_id, receipt_id)"#;

/// A register sale takes over a scan's claim, if that scan still holds it.
const TAKE_CLAIM: &str = r#"
update receipt_claims
set order_id = $4, receipt_id = $5
where store_id = $1 and register_id = $2 and receipt_no = $3
    and receipt_id = $6"#;

const UPDATE_RECEIPT: &str = r#"
update receipts
set status = $2, reason = $3, points = $4, coupon_codes = $5::jsonb, reviewed_at = $6,
    review_note = $7, claims = $8
where receipt_id = $1"#;

/// `omo verify`: see `LedgerSnapshot::receipts_off_their_lot`.
const RECEIPTS_OFF_THEIR_LOT: &str = r#"
select 'receipt ' || r.receipt_id as off
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
        select 1 from receipts r where r.lot_id = l.lot_id and r.status = 'pending_review')
order by 1"#;

const POINTS_IN_REVIEW: &str = r#"
select
    (select coalesce(sum(points), 0)::int8 from receipts where status = 'pending_review')
        as in_review,
    (select coalesce(sum(remaining_points), 0)::int8
     from point_lots where state = 'pending' and matures_at is null) as in_lots"#;

/// A claim's (order_id, receipt_id) columns: one of them names the holder.
fn holder(claim: &ClaimWrite) -> (Option<&str>, Option<&str>) {
    match &claim.holder {
        ClaimHolder::Sale(order_id) => (Some(order_id.as_str()), None),
        ClaimHolder::Scan(receipt_id) => (None, Some(receipt_id.as_str())),
    }
}

fn receipt_from_row(row: &PgRow) -> StoreResult<ReceiptRecord> {
    let c = Cols::new(row, "receipts", "receipt_id");
    let reason: Option<&str> = c.get("reason")?;
    Ok(ReceiptRecord {
        receipt_id: c.get("receipt_id")?,
        member_id: c.get("member_id")?,
        receipt: Receipt {
            store_id: c.get("store_id")?,
            register_id: c.get("register_id")?,
            receipt_no: c.get("receipt_no")?,
            issued_at: c.get("issued_at")?,
            total: c.money("total")?,
            lines: c.json("lines")?,
            image_sha256: c.get("image_sha256")?,
            raw_text: c.get("raw_text")?,
        },
        status: c.parse("status", ReceiptStatus::parse)?,
        reason: match reason {
            Some(_) => Some(c.parse("reason", ReceiptReason::parse)?),
            None => None,
        },
        points: c.get("points")?,
        lot_id: c.get("lot_id")?,
        rule_ids: c.json("rule_ids")?,
        coupon_codes: c.json("coupon_codes")?,
        submitted_at: c.get("submitted_at")?,
        reviewed_at: c.get("reviewed_at")?,
        review_note: c.get("review_note")?,
    })
}

impl PgUnitOfWork {
    /// Empties the raw text of up to `limit` ($2) receipts submitted before $1 that still have
    /// one (by the partial index of migration 0013); `skip locked` as for the reports.
    pub(super) async fn clear_receipt_texts(
        &mut self,
        submitted_before: DateTime<Utc>,
        limit: i64,
    ) -> StoreResult<u64> {
        let query = sqlx::query(
            r#"
update receipts
set raw_text = ''
where receipt_id in (
    select receipt_id
    from receipts
    where submitted_at < $1
        and raw_text <> ''
    limit $2
    for update skip locked
)"#,
        )
        .bind(submitted_before) // $1
        .bind(limit.max(0)); // $2
        self.run_counted(query).await
    }

    pub(super) async fn list_receipt_rules(&mut self) -> StoreResult<Vec<ReceiptRule>> {
        let query = sqlx::query(
            r#"
select rule_id, definition::text as definition
from receipt_rules
order by rule_id"#,
        );
        self.fetch_all(query, |row| {
            Cols::new(row, "receipt_rules", "rule_id").json("definition")
        })
        .await
    }

    pub(super) async fn get_receipt(
        &mut self,
        receipt_id: &str,
        lock: bool,
    ) -> StoreResult<Option<ReceiptRecord>> {
        let sql = if lock {
            GET_RECEIPT_LOCKED
        } else {
            GET_RECEIPT
        };
        let query = sqlx::query(sql).bind(receipt_id); // $1
        self.fetch_optional(query, receipt_from_row).await
    }

    pub(super) async fn receipt_claimed_by(
        &mut self,
        claim: &ReceiptClaim,
    ) -> StoreResult<Option<String>> {
        let query = match claim {
            ReceiptClaim::Number {
                store_id,
                register_id,
                receipt_no,
            } => sqlx::query(
                r#"
select receipt_id
from receipt_claims
where store_id = $1 and register_id = $2 and receipt_no = $3 and receipt_id is not null"#,
            )
            .bind(store_id) // $1
            .bind(register_id) // $2
            .bind(receipt_no), // $3
            ReceiptClaim::Image(image_sha256) => sqlx::query(
                r#"
select receipt_id
from receipts
where image_sha256 = $1 and claims"#,
            )
            .bind(image_sha256), // $1
        };
        self.fetch_optional(query, |row| {
            Cols::new(row, "receipt_claims", "receipt_id").get("receipt_id")
        })
        .await
    }

    pub(super) async fn count_member_receipts(
        &mut self,
        member_id: &str,
        since: DateTime<Utc>,
    ) -> StoreResult<i64> {
        let query = sqlx::query(
            r#"
select count(*) as receipts
from receipts
where member_id = $1 and submitted_at >= $2 and claims"#,
        )
        .bind(member_id) // $1
        .bind(since); // $2
        self.fetch_value(query, "receipts", "receipts").await
    }

    pub(super) async fn list_receipts(
        &mut self,
        page: &ReceiptPageQuery,
    ) -> StoreResult<Vec<ReceiptRecord>> {
        let sql = match page.member_id {
            Some(_) => MEMBER_RECEIPTS,
            None => RECEIPTS_IN_STATUS,
        };
        let (after_at, after_id) = match &page.after {
            Some((at, id)) => (Some(*at), id.as_str()),
            None => (None, ""),
        };
        let query = sqlx::query(sql)
            .bind(page.member_id.as_deref()) // $1
            .bind(page.status.map(ReceiptStatus::as_str)) // $2
            .bind(after_at) // $3
            .bind(after_id) // $4
            .bind(page.limit); // $5
        self.fetch_all(query, receipt_from_row).await
    }

    /// Writes a batch's receipt rules and receipts (after the lots they name).
    pub(super) async fn flush_receipts(&mut self, changes: &EngagementChanges) -> StoreResult<()> {
        for (rule, at) in &changes.new_receipt_rules {
            let query = sqlx::query(
                r#"
insert into receipt_rules (rule_id, definition, created_at)
values ($1, $2::jsonb, $3)"#,
            )
            .bind(&rule.rule_id) // $1
            .bind(crate::store::to_json(rule)?) // $2
            .bind(*at); // $3
            self.run(query).await?;
        }
        let receipts = &changes.new_receipts;
        if !receipts.is_empty() {
            let query = sqlx::query(INSERT_RECEIPTS)
                .bind(column(receipts, |r| r.receipt_id.as_str())) // $1
                .bind(column(receipts, |r| r.member_id.as_str())) // $2
                .bind(column(receipts, |r| r.receipt.store_id.as_str())) // $3
                .bind(column(receipts, |r| r.receipt.register_id.as_str())) // $4
                .bind(column(receipts, |r| r.receipt.receipt_no.as_str())) // $5
                .bind(column(receipts, |r| r.receipt.image_sha256.as_str())) // $6
                .bind(column(receipts, |r| r.receipt.issued_at)) // $7
                .bind(column(receipts, |r| -> Decimal {
                    r.receipt.total.amount()
                })) // $8
                .bind(json_column(receipts, |r| &r.receipt.lines)?) // $9
                .bind(column(receipts, |r| r.receipt.raw_text.as_str())) // $10
                .bind(column(receipts, |r| r.status.as_str())) // $11
                .bind(column(receipts, |r| r.reason.map(ReceiptReason::as_str))) // $12
                .bind(column(receipts, |r| r.points)) // $13
                .bind(column(receipts, |r| r.lot_id)) // $14
                .bind(json_column(receipts, |r| &r.rule_ids)?) // $15
                .bind(json_column(receipts, |r| &r.coupon_codes)?) // $16
                .bind(column(receipts, |r| r.submitted_at)) // $17
                .bind(column(receipts, |r| r.reviewed_at)) // $18
                .bind(column(receipts, |r| r.review_note.as_str())) // $19
                .bind(column(receipts, ReceiptRecord::claims)); // $20
            self.run(query).await?;
        }
        for record in &changes.changed_receipts {
            let query = sqlx::query(UPDATE_RECEIPT)
                .bind(&record.receipt_id) // $1
                .bind(record.status.as_str()) // $2
                .bind(record.reason.map(ReceiptReason::as_str)) // $3
                .bind(record.points) // $4
                .bind(crate::store::to_json(&record.coupon_codes)?) // $5
                .bind(record.reviewed_at) // $6
                .bind(&record.review_note) // $7
                .bind(record.claims()); // $8
            if self.run_counted(query).await? != 1 {
                return Err(StoreError::Corrupt(format!(
                    "receipts[{}]: a reviewed receipt is not stored",
                    record.receipt_id
                )));
            }
        }
        self.flush_claims(&changes.receipt_claims).await
    }

    /// The register receipts' claims: the new ones in one statement (a second writer of a key
    /// is a unique violation), then the rare takeovers of a scan's claim by a register sale,
    /// each of which must find the scan still holding it.
    async fn flush_claims(&mut self, claims: &[ClaimWrite]) -> StoreResult<()> {
        let (new, taken): (Vec<&ClaimWrite>, Vec<&ClaimWrite>) =
            claims.iter().partition(|claim| claim.taken_from.is_none());
        if !new.is_empty() {
            let query = sqlx::query(INSERT_CLAIMS)
                .bind(column(&new, |c| c.key.0.as_str())) // $1
                .bind(column(&new, |c| c.key.1.as_str())) // $2
                .bind(column(&new, |c| c.key.2.as_str())) // $3
                .bind(column(&new, |c| holder(c).0)) // $4
                .bind(column(&new, |c| holder(c).1)); // $5
            self.run(query).await?;
        }
        for claim in taken {
            let (order_id, receipt_id) = holder(claim);
            let query = sqlx::query(TAKE_CLAIM)
                .bind(&claim.key.0) // $1
                .bind(&claim.key.1) // $2
                .bind(&claim.key.2) // $3
                .bind(order_id) // $4
                .bind(receipt_id) // $5
                .bind(claim.taken_from.as_deref()); // $6
            if self.run_counted(query).await? != 1 {
                return Err(StoreError::Conflict(format!(
                    "receipt_claims[{:?}]: no longer held by scan {:?}",
                    claim.key, claim.taken_from
                )));
            }
        }
        Ok(())
    }

    /// `omo verify`: receipts off their lot, and the points in review on both sides.
    pub(super) async fn receipt_lot_check(&mut self) -> StoreResult<(Vec<String>, i64, i64)> {
        let off = self
            .fetch_all(sqlx::query(RECEIPTS_OFF_THEIR_LOT), |row| {
                Cols::new(row, "receipts", "off").get("off")
            })
            .await?;
        let row = sqlx::query(POINTS_IN_REVIEW)
            .fetch_one(&mut *self.tx)
            .await
            .map_err(super::map_err)?;
        let c = Cols::new(&row, "receipts", "in_review");
        Ok((off, c.get("in_review")?, c.get("in_lots")?))
    }
}
