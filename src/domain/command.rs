//! Mutating business commands and their replies.
//!
//! A command is parsed and validated at the edge (gRPC), so everything here is well-formed.
//! Commands are serialised to fingerprint a request for idempotency; replies are serialised so
//! that a retried request gets the original response back, byte for byte, even after a restart.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{
    coupon::{Campaign, Coupon},
    location::{GeoRule, LocationReport, LocationVerdict, VisitRule},
    model::{
        Channel, Identifier, LineItem, Member, MemberRef, Order, Program, ProgramPatch,
        RefundResult, Store, Transaction,
    },
    money::Money,
    receipt::{ReceiptReason, ReceiptRule, ReceiptStatus, ReceiptSubmission},
    rules::{Rule, RulePatch},
};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Command {
    CreateMember {
        identifiers: Vec<Identifier>,
        display_name: String,
    },
    LinkIdentifier {
        member: MemberRef,
        identifier: Identifier,
    },
    MergeMembers {
        source_member_id: String,
        target_member_id: String,
    },
    AdjustPoints {
        member: MemberRef,
        points: i64,
        reason: String,
        /// A credit with an expiry of its own: limited-time points. Left out of the
        /// fingerprint when unset, so requests remembered before the field stay the same.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        expires_at: Option<DateTime<Utc>>,
    },
    Authorize(OrderRequest),
    RecordSale(OrderRequest),
    Capture {
        order_id: String,
    },
    Void {
        order_id: String,
    },
    Refund {
        order_id: String,
        scope: RefundScope,
    },
    CreateStore(Store),
    /// Applies `patch` to the current settings, or to the defaults when `replace`.
    UpdateProgram {
        patch: ProgramPatch,
        replace: bool,
    },
    CreateCampaign(Campaign),
    IssueCoupon {
        campaign_id: String,
        member: MemberRef,
    },
    CreateGeoRule(GeoRule),
    CreateVisitRule(VisitRule),
    ReportLocation(LocationReport),
    CreateReceiptRule(ReceiptRule),
    SubmitReceipt(ReceiptSubmission),
    ReviewReceipt {
        receipt_id: String,
        approve: bool,
        note: String,
    },
    CreateRule(Rule),
    UpdateRule(RulePatch),
}

impl Command {
    /// Stable name for logs and metrics.
    pub fn name(&self) -> &'static str {
        match self {
            Command::CreateMember { .. } => "create_member",
            Command::LinkIdentifier { .. } => "link_identifier",
            Command::MergeMembers { .. } => "merge_members",
            Command::AdjustPoints { .. } => "adjust_points",
            Command::Authorize(_) => "authorize",
            Command::RecordSale(_) => "record_sale",
            Command::Capture { .. } => "capture",
            Command::Void { .. } => "void",
            Command::Refund { .. } => "refund",
            Command::CreateStore(_) => "create_store",
            Command::UpdateProgram { .. } => "update_program",
            Command::CreateCampaign(_) => "create_campaign",
            Command::IssueCoupon { .. } => "issue_coupon",
            Command::CreateGeoRule(_) => "create_geo_rule",
            Command::CreateVisitRule(_) => "create_visit_rule",
            Command::ReportLocation(_) => "report_location",
            Command::CreateReceiptRule(_) => "create_receipt_rule",
            Command::SubmitReceipt(_) => "submit_receipt",
            Command::ReviewReceipt { .. } => "review_receipt",
            Command::CreateRule(_) => "create_rule",
            Command::UpdateRule(_) => "update_rule",
        }
    }
}

/// An order as a checkout or a register presents it (Authorize, RecordSale, Quote).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderRequest {
    pub order_id: String,
    pub member: MemberRef,
    pub channel: Channel,
    pub store_id: String,
    pub register_id: String,
    pub lines: Vec<LineItem>,
    pub points_to_redeem: i64,
    /// Normalised (upper case, no separators), without duplicates.
    pub coupon_codes: Vec<String>,
    /// Register receipt number (RecordSale only).
    pub receipt_no: String,
    /// When the sale happened (RecordSale: may be in the past, for offline replay).
    pub occurred_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum RefundScope {
    Amount(Money),
    Lines(Vec<RefundLine>),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefundLine {
    pub line_id: String,
    pub quantity: i32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Reply {
    Member(Member),
    Transaction(Transaction),
    Order(Order),
    Refund(RefundResult),
    Store(Store),
    Program(Program),
    Campaign(Campaign),
    Coupon(Coupon),
    GeoRule(GeoRule),
    VisitRule(VisitRule),
    Location(LocationResult),
    ReceiptRule(ReceiptRule),
    Receipt(ReceiptResult),
    Rule(Rule),
}

/// What a receipt submission or review did (API `ReceiptResult`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReceiptResult {
    pub receipt_id: String,
    pub status: ReceiptStatus,
    pub reason: Option<ReceiptReason>,
    /// Available when accepted, pending in review, 0 when rejected.
    pub points_awarded: i64,
    pub coupons_issued: Vec<Coupon>,
}

/// What a location report did (API `LocationResult`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LocationResult {
    pub verdict: LocationVerdict,
    /// The stores whose fence contains the reported position (accepted reports only).
    pub inside_store_ids: Vec<String>,
    pub coupons_issued: Vec<Coupon>,
}
