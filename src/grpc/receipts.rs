//! The receipt calls of `omo.v1.EngagementService` (CreateReceiptRule, SubmitReceipt,
//! ReviewReceipt, ListReceipts): requests become domain values, with every bad field a
//! `FieldViolation`; a receipt sent as raw text is read here (`domain::receipt_text`), so the
//! engine always decides a receipt with its total and lines.

use rust_decimal::Decimal;
use tonic::Status;

use super::{
    convert::{
        MAX_ID_CHARS, Violations, basket, check_id, check_optional_id, check_request_id,
        check_text, decimal, decimal_out, instant, member_ref, money, money_or_zero,
        optional_request_id, optional_timestamp, path, timestamp,
    },
    coupon::coupon_out,
    engagement::{period, rule_store_ids},
    paging::{page_size, page_token},
};
use crate::{
    domain::{
        command::{ReceiptCommand, ReceiptResult},
        model::LineItem,
        page::Cursor,
        receipt::{
            DEFAULT_MAX_AGE_DAYS, IssuedAt, LineCondition, MAX_LINES, MAX_NOTE_CHARS, Receipt,
            ReceiptQuery, ReceiptReason, ReceiptRecord, ReceiptRule, ReceiptStatus,
            ReceiptSubmission, total_problem,
        },
        receipt_text,
    },
    proto,
};

/// Most line conditions of one rule.
const MAX_CONDITIONS: usize = 50;
/// Oldest receipt a rule may accept, in days (two years).
const MAX_AGE_DAYS: i32 = 732;
/// Largest min_quantity of a condition.
const MAX_CONDITION_QUANTITY: i32 = 1_000_000;
/// Highest earn rate of a receipt rule (points per currency unit).
const MAX_EARN_RATE: Decimal = Decimal::from_parts(1000, 0, 0, false, 0);
/// Longest product name kept from a receipt's text (as the line's sku).
const MAX_PRINTED_NAME_CHARS: usize = 256;

// ---------------------------------------------------------------------------------------------
// CreateReceiptRule

pub fn create_receipt_rule_in(
    request: proto::CreateReceiptRuleRequest,
) -> Result<(Option<String>, ReceiptRule), Status> {
    let mut v = Violations::new();
    let request_id = optional_request_id(&mut v, &request.request_id);
    let Some(r) = request.rule else {
        v.push("rule", "is required");
        return Err(v.into_status());
    };
    check_optional_id(&mut v, "rule.rule_id", &r.rule_id);
    check_optional_id(&mut v, "rule.campaign_id", &r.campaign_id);
    rule_store_ids(&mut v, &r.store_ids);
    let earn_rate = if r.earn_rate.is_empty() {
        Some(None)
    } else {
        decimal(&mut v, "rule.earn_rate", &r.earn_rate, MAX_EARN_RATE).map(Some)
    };
    if r.earn_rate.is_empty() && r.campaign_id.is_empty() {
        v.push(
            "rule",
            "must award points (earn_rate) or a coupon (campaign_id)",
        );
    }
    let min_total = money_or_zero(&mut v, "rule.min_total", &r.min_total);
    let review_threshold = if r.review_threshold.is_empty() {
        Some(None)
    } else {
        money(&mut v, "rule.review_threshold", &r.review_threshold).map(Some)
    };
    let max_age_days = match r.max_age_days {
        0 => Some(DEFAULT_MAX_AGE_DAYS),
        days @ 1..=MAX_AGE_DAYS => Some(i64::from(days)),
        _ => {
            v.push(
                "rule.max_age_days",
                format!("must be between 0 and {MAX_AGE_DAYS}"),
            );
            None
        }
    };
    let conditions = conditions_in(&mut v, &r.conditions);
    let (starts_at, ends_at) = period(&mut v, r.starts_at.as_ref(), r.ends_at.as_ref());
    v.build(|| {
        Some((
            request_id,
            ReceiptRule {
                rule_id: r.rule_id,
                store_ids: r.store_ids,
                earn_rate: earn_rate?,
                campaign_id: r.campaign_id,
                min_total: min_total?,
                conditions: conditions?,
                max_age_days: max_age_days?,
                review_threshold: review_threshold?,
                starts_at: starts_at?,
                ends_at: ends_at?,
            },
        ))
    })
}

fn conditions_in(
    v: &mut Violations,
    conditions: &[proto::ReceiptCondition],
) -> Option<Vec<LineCondition>> {
    if conditions.len() > MAX_CONDITIONS {
        v.push(
            "rule.conditions",
            format!("at most {MAX_CONDITIONS} conditions"),
        );
        return None;
    }
    let mut ok = true;
    for (i, condition) in conditions.iter().enumerate() {
        let field = format!("rule.conditions[{i}]");
        ok &= check_text(v, &path(&field, "sku"), &condition.sku, 0, MAX_ID_CHARS);
        ok &= check_text(
            v,
            &path(&field, "category"),
            &condition.category,
            0,
            MAX_ID_CHARS,
        );
        if condition.sku.is_empty() && condition.category.is_empty() {
            v.push(field.clone(), "must name a sku or a category");
            ok = false;
        }
        if !(0..=MAX_CONDITION_QUANTITY).contains(&condition.min_quantity) {
            v.push(
                path(&field, "min_quantity"),
                format!("must be between 0 and {MAX_CONDITION_QUANTITY}"),
            );
            ok = false;
        }
    }
    ok.then(|| {
        conditions
            .iter()
            .map(|c| LineCondition {
                sku: c.sku.clone(),
                category: c.category.clone(),
                min_quantity: c.min_quantity.max(1),
            })
            .collect()
    })
}

pub fn receipt_rule_out(rule: ReceiptRule) -> proto::ReceiptRule {
    proto::ReceiptRule {
        rule_id: rule.rule_id,
        store_ids: rule.store_ids,
        earn_rate: rule.earn_rate.map(decimal_out).unwrap_or_default(),
        campaign_id: rule.campaign_id,
        min_total: rule.min_total.to_string(),
        conditions: rule
            .conditions
            .into_iter()
            .map(|c| proto::ReceiptCondition {
                sku: c.sku,
                category: c.category,
                min_quantity: c.min_quantity,
            })
            .collect(),
        max_age_days: i32::try_from(rule.max_age_days).unwrap_or(i32::MAX),
        review_threshold: rule
            .review_threshold
            .map(|threshold| threshold.to_string())
            .unwrap_or_default(),
        starts_at: optional_timestamp(rule.starts_at),
        ends_at: optional_timestamp(rule.ends_at),
    }
}

// ---------------------------------------------------------------------------------------------
// SubmitReceipt

pub fn submit_receipt_in(
    request: proto::SubmitReceiptRequest,
) -> Result<(String, ReceiptCommand), Status> {
    let mut v = Violations::new();
    check_request_id(&mut v, &request.request_id);
    let member = member_ref(&mut v, "member", request.member);
    let Some(r) = request.receipt else {
        v.push("receipt", "is required");
        return Err(v.into_status());
    };
    check_id(&mut v, "receipt.store_id", &r.store_id);
    check_id(&mut v, "receipt.register_id", &r.register_id);
    check_id(&mut v, "receipt.receipt_no", &r.receipt_no);
    let image_sha256 = image_hash(&mut v, &r.image_sha256);
    let (parsed, text_refused) = read_raw_text(&mut v, &r);
    let lines_given = !r.lines.is_empty();
    let lines = if lines_given {
        receipt_lines(&mut v, r.lines)
    } else {
        Some(parsed.as_ref().map(printed_lines).unwrap_or_default())
    };
    let total = if !r.total.is_empty() {
        money(&mut v, "receipt.total", &r.total)
    } else if let Some(parsed) = &parsed {
        Some(parsed.total)
    } else {
        // A refused text has its violation already; otherwise the total is missing (a text
        // is read only without lines, so lines and a text still need the total given).
        if !text_refused {
            v.push(
                "receipt.total",
                "is required (or raw_text that prints it, with no lines)",
            );
        }
        None
    };
    if let Some(total) = total {
        // Lines read from a text are the products the reader recognised: discounts and
        // deposits between them make their sum no check of the printed total.
        let checked = match &lines {
            Some(lines) if lines_given => lines.as_slice(),
            _ => &[],
        };
        if let Some(problem) = total_problem(total, checked) {
            v.push("receipt.total", problem);
        }
    }
    let issued_at = match (&r.issued_at, parsed.as_ref().and_then(|p| p.issued_at)) {
        (Some(ts), _) => instant(&mut v, "receipt.issued_at", ts).map(IssuedAt::At),
        (None, Some(printed)) => Some(IssuedAt::Printed(printed)),
        // The text the date was to be read from is refused already: that is the one error.
        (None, None) if text_refused => None,
        (None, None) => {
            v.push(
                "receipt.issued_at",
                "is required (or raw_text that prints the date)",
            );
            None
        }
    };
    let request_id = request.request_id;
    v.build(|| {
        let issued_at = issued_at?;
        let receipt = Receipt {
            store_id: r.store_id,
            register_id: r.register_id,
            receipt_no: r.receipt_no,
            // Placed in the store's zone by the engine when printed.
            issued_at: match issued_at {
                IssuedAt::At(at) => at,
                IssuedAt::Printed(local) => local.and_utc(),
            },
            total: total?,
            lines: lines?,
            image_sha256: image_sha256?,
            raw_text: r.raw_text,
        };
        let submission = ReceiptSubmission {
            member: member?,
            issued_at,
            receipt,
        };
        Some((request_id, ReceiptCommand::SubmitReceipt(submission)))
    })
}

/// A photograph's SHA-256: 64 hex characters, kept lowercase (the same image in either case is
/// one image).
fn image_hash(v: &mut Violations, value: &str) -> Option<String> {
    let ok = value.len() == 64 && value.chars().all(|c| c.is_ascii_hexdigit());
    if !ok {
        v.push(
            "receipt.image_sha256",
            "must be the SHA-256 of the image: 64 hex characters",
        );
    }
    ok.then(|| value.to_ascii_lowercase())
}

/// Reads `raw_text` when the receipt comes without lines: its total, issue time and lines. The
/// text is bounded whether or not it is read. Also says whether a text that was to be read was
/// refused (a violation on `receipt.raw_text`), so that what it should have given is not
/// reported missing as well.
fn read_raw_text(
    v: &mut Violations,
    receipt: &proto::Receipt,
) -> (Option<receipt_text::ParsedReceipt>, bool) {
    let text = &receipt.raw_text;
    if text.len() > receipt_text::MAX_BYTES || text.lines().count() > receipt_text::MAX_LINES {
        v.push(
            "receipt.raw_text",
            format!(
                "must be at most {} KiB and {} lines",
                receipt_text::MAX_BYTES / 1024,
                receipt_text::MAX_LINES
            ),
        );
        return (None, receipt.lines.is_empty());
    }
    if text.is_empty() || !receipt.lines.is_empty() {
        return (None, false);
    }
    match receipt_text::parse(text) {
        Ok(parsed) => (Some(parsed), false),
        // The total matters only when the request does not give it: never a guessed total.
        Err(error) if receipt.total.is_empty() => {
            v.push("receipt.raw_text", error.to_string());
            (None, true)
        }
        Err(_) => (None, false),
    }
}

/// Lines read from a receipt's text: the printed name stands for the sku.
fn printed_lines(parsed: &receipt_text::ParsedReceipt) -> Vec<LineItem> {
    parsed
        .lines
        .iter()
        .enumerate()
        .map(|(i, line)| LineItem {
            line_id: (i + 1).to_string(),
            sku: line.name.chars().take(MAX_PRINTED_NAME_CHARS).collect(),
            category: String::new(),
            quantity: line.quantity,
            amount: line.amount,
        })
        .collect()
}

/// The receipt's lines as sent: at most 200, each checked like a basket line.
fn receipt_lines(v: &mut Violations, lines: Vec<proto::LineItem>) -> Option<Vec<LineItem>> {
    if lines.len() > MAX_LINES {
        v.push(
            "receipt.lines",
            format!("must have at most {MAX_LINES} lines"),
        );
        return None;
    }
    basket(v, "receipt", Some(proto::Basket { lines }))
}

pub fn receipt_result_out(result: ReceiptResult) -> proto::ReceiptResult {
    proto::ReceiptResult {
        receipt_id: result.receipt_id,
        status: status_out(result.status).into(),
        reason: reason_out(result.reason),
        points_awarded: result.points_awarded,
        coupons_issued: result.coupons_issued.into_iter().map(coupon_out).collect(),
    }
}

/// A reason as the API names it; empty for none.
fn reason_out(reason: Option<ReceiptReason>) -> String {
    reason.map_or_else(String::new, |reason| reason.as_str().to_string())
}

fn status_out(status: ReceiptStatus) -> proto::ReceiptStatus {
    match status {
        ReceiptStatus::Accepted => proto::ReceiptStatus::Accepted,
        ReceiptStatus::PendingReview => proto::ReceiptStatus::PendingReview,
        ReceiptStatus::Rejected => proto::ReceiptStatus::Rejected,
    }
}

// ---------------------------------------------------------------------------------------------
// ReviewReceipt

pub fn review_receipt_in(
    request: proto::ReviewReceiptRequest,
) -> Result<(String, ReceiptCommand), Status> {
    let mut v = Violations::new();
    check_request_id(&mut v, &request.request_id);
    check_id(&mut v, "receipt_id", &request.receipt_id);
    check_text(&mut v, "note", &request.note, 0, MAX_NOTE_CHARS);
    v.finish()?;
    let command = ReceiptCommand::ReviewReceipt {
        receipt_id: request.receipt_id,
        approve: request.approve,
        note: request.note,
    };
    Ok((request.request_id, command))
}

// ---------------------------------------------------------------------------------------------
// ListReceipts

/// The query, the cursor to resume after and the page size.
pub fn list_receipts_in(
    request: proto::ListReceiptsRequest,
) -> Result<(ReceiptQuery, Option<Cursor>, usize), Status> {
    let mut v = Violations::new();
    let status = match proto::ReceiptStatus::try_from(request.status) {
        Ok(proto::ReceiptStatus::Unspecified) => Some(None),
        Ok(proto::ReceiptStatus::Accepted) => Some(Some(ReceiptStatus::Accepted)),
        Ok(proto::ReceiptStatus::PendingReview) => Some(Some(ReceiptStatus::PendingReview)),
        Ok(proto::ReceiptStatus::Rejected) => Some(Some(ReceiptStatus::Rejected)),
        Err(_) => {
            v.push("status", "is not a receipt status");
            None
        }
    };
    let member = match request.member {
        Some(member) => member_ref(&mut v, "member", Some(member)).map(Some),
        None => Some(None),
    };
    if matches!((&member, &status), (Some(None), Some(None))) {
        v.push("status", "is required when no member is given");
    }
    let size = page_size(&mut v, request.page_size);
    let after = page_token(&mut v, "ListReceipts", &request.page_token);
    v.build(|| {
        let query = match (member?, status?) {
            (Some(member), status) => ReceiptQuery::Member { member, status },
            (None, Some(status)) => ReceiptQuery::Status(status),
            (None, None) => return None,
        };
        Some((query, after?, size?))
    })
}

/// Whether a ListReceipts request names a member (the app's history) rather than a status
/// (the admin's queue): it decides which permission the call needs.
pub fn lists_member_receipts(request: &proto::ListReceiptsRequest) -> bool {
    request.member.is_some()
}

pub fn receipt_record_out(record: ReceiptRecord) -> proto::ReceiptRecord {
    let receipt = record.receipt;
    proto::ReceiptRecord {
        receipt_id: record.receipt_id,
        member_id: record.member_id,
        receipt: Some(proto::Receipt {
            store_id: receipt.store_id,
            register_id: receipt.register_id,
            receipt_no: receipt.receipt_no,
            issued_at: Some(timestamp(receipt.issued_at)),
            total: receipt.total.to_string(),
            lines: receipt
                .lines
                .into_iter()
                .map(|line| proto::LineItem {
                    line_id: line.line_id,
                    sku: line.sku,
                    category: line.category,
                    quantity: line.quantity,
                    amount: line.amount.to_string(),
                })
                .collect(),
            image_sha256: receipt.image_sha256,
            // Left out (engagement.proto, ReceiptRecord.receipt): the OCR text may be 16 KiB
            // per receipt and what omo read from it is in total, issued_at and lines.
            raw_text: String::new(),
        }),
        status: status_out(record.status).into(),
        reason: reason_out(record.reason),
        points_awarded: record.points,
        rule_ids: record.rule_ids,
        coupon_codes: record.coupon_codes,
        submitted_at: Some(timestamp(record.submitted_at)),
        reviewed_at: optional_timestamp(record.reviewed_at),
        review_note: record.review_note,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::grpc::status::violated_fields;

    /// Lines and a text without a total: the text is not read (lines are given), so the total
    /// is missing — a field violation, not an internal error (found by the hostile input test).
    #[test]
    fn lines_and_a_text_without_a_total_need_the_total() {
        let request = proto::SubmitReceiptRequest {
            request_id: "a".into(),
            member: Some(proto::MemberRef {
                r#ref: Some(proto::member_ref::Ref::MemberId("m1".into())),
            }),
            receipt: Some(proto::Receipt {
                store_id: "a".into(),
                register_id: "a".into(),
                receipt_no: "a".into(),
                issued_at: Some(prost_types::Timestamp {
                    seconds: 0,
                    nanos: 1,
                }),
                lines: vec![proto::LineItem {
                    line_id: "A".into(),
                    quantity: 1,
                    amount: "0".into(),
                    ..Default::default()
                }],
                image_sha256: "a".repeat(64),
                raw_text: "合計 ¥1".into(),
                ..Default::default()
            }),
        };
        let refused = submit_receipt_in(request).unwrap_err();
        assert_eq!(refused.code(), tonic::Code::InvalidArgument);
        assert_eq!(violated_fields(&refused), ["receipt.total"]);
    }
}
