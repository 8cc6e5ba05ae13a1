//! The closed set of domain refusals. Each maps to one gRPC code and one `ErrorInfo` reason
//! (`crate::grpc::status`). Refusals are serialisable because idempotency remembers them: a
//! retried request that failed fails again the same way.

use serde::{Deserialize, Serialize};

/// One bad field of a request, with its path in the request message (`basket.lines[2].amount`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FieldViolation {
    pub field: String,
    pub description: String,
}

impl FieldViolation {
    pub fn new(field: impl Into<String>, description: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            description: description.into(),
        }
    }
}

/// Coarse class of a refusal; the gRPC layer maps it to a status code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    InvalidArgument,
    NotFound,
    AlreadyExists,
    FailedPrecondition,
    ResourceExhausted,
    PermissionDenied,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
pub enum DomainError {
    #[error("invalid request: {0:?}")]
    InvalidArgument(Vec<FieldViolation>),
    #[error("{0}")]
    PermissionDenied(String),
    #[error("member not found")]
    MemberNotFound,
    #[error("member {member_id} was merged into {merged_into}")]
    MemberMerged {
        member_id: String,
        merged_into: String,
    },
    /// Names the kind only: an identifier's value (a card number, an email) is personal data,
    /// kept out of messages, logs and the remembered outcome. Outcomes remembered before this
    /// carried the value; it is ignored when they are read back.
    #[error("the {kind} identifier belongs to another member")]
    IdentifierTaken { kind: String },
    #[error("member {member_id} was erased")]
    MemberErased { member_id: String },
    #[error("member has open (authorized) orders; capture or void them first")]
    MemberHasOpenOrders,
    #[error("request_id was already used for a different request")]
    IdempotencyKeyReused,
    #[error("not enough points: {available} available, {requested} requested")]
    InsufficientPoints { available: i64, requested: i64 },
    #[error("points to redeem ({points}) are worth more than the amount left to pay")]
    PointsExceedAmount { points: i64 },
    #[error("order {0} already exists")]
    OrderExists(String),
    #[error("order not found")]
    OrderNotFound,
    #[error(
        "receipt {receipt_no} of register {register_id} at store {store_id} is already recorded"
    )]
    ReceiptExists {
        store_id: String,
        register_id: String,
        receipt_no: String,
    },
    #[error("the hold expired; points and coupons were released")]
    HoldExpired,
    #[error("order is {state}; {action} is not allowed")]
    OrderState { state: String, action: String },
    #[error("refund of {requested} exceeds what is left to refund ({refundable})")]
    RefundExceedsTotal {
        requested: String,
        refundable: String,
    },
    #[error("store not found")]
    StoreNotFound,
    #[error("store {0} already exists")]
    StoreExists(String),
    #[error("campaign not found")]
    CampaignNotFound,
    #[error("campaign {0} already exists")]
    CampaignExists(String),
    #[error("public code {0} is used by another campaign")]
    PublicCodeTaken(String),
    #[error("rule {0} already exists")]
    RuleExists(String),
    #[error("rule not found")]
    RuleNotFound,
    #[error("webhook {0} already exists")]
    WebhookExists(String),
    #[error("webhook not found")]
    WebhookNotFound,
    #[error("campaign is not running (before starts_at or after ends_at)")]
    CampaignClosed,
    #[error("campaign issue limit reached")]
    CampaignExhausted,
    #[error("member limit of this campaign reached")]
    MemberLimit,
    #[error("the order would earn {points} points; the program caps an order at {cap}")]
    EarnCapExceeded { points: i64, cap: i64 },
    #[error("the sale happened more than {max_days} days ago")]
    TooOld { max_days: i64 },
    #[error("coupon {code}: {reason}")]
    Coupon { code: String, reason: CouponReason },
    #[error("receipt not found")]
    ReceiptNotFound,
    #[error("receipt is {status}, not waiting for review")]
    ReceiptNotPending { status: String },
    #[error("coupon {code} is reserved by an open order; capture or void it first")]
    CouponReserved { code: String },
    #[error(
        "{issued} coupons of the campaign are issued already; issue_limit {issue_limit} is lower"
    )]
    IssueLimitBelowIssued { issued: i64, issue_limit: i32 },
}

/// Why a coupon cannot be used; the names are the binding `ErrorInfo` reasons of API.md.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum CouponReason {
    NotFound,
    NotOwned,
    Expired,
    NotActive,
    Channel,
    Store,
    MinSpend,
    NotStackable,
    /// No line of the basket is one the campaign is scoped to.
    NotEligible,
}

impl CouponReason {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::NotFound => "COUPON_NOT_FOUND",
            Self::NotOwned => "COUPON_NOT_OWNED",
            Self::Expired => "COUPON_EXPIRED",
            Self::NotActive => "COUPON_NOT_ACTIVE",
            Self::Channel => "COUPON_CHANNEL",
            Self::Store => "COUPON_STORE",
            Self::MinSpend => "COUPON_MIN_SPEND",
            Self::NotStackable => "COUPON_NOT_STACKABLE",
            Self::NotEligible => "COUPON_NOT_ELIGIBLE",
        }
    }
}

impl std::fmt::Display for CouponReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl DomainError {
    pub fn invalid(field: impl Into<String>, description: impl Into<String>) -> Self {
        Self::InvalidArgument(vec![FieldViolation::new(field, description)])
    }

    /// The binding `ErrorInfo.reason`.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::InvalidArgument(_) => "INVALID_ARGUMENT",
            Self::PermissionDenied(_) => "PERMISSION_DENIED",
            Self::MemberNotFound => "MEMBER_NOT_FOUND",
            Self::MemberMerged { .. } => "MEMBER_MERGED",
            Self::MemberErased { .. } => "MEMBER_ERASED",
            Self::IdentifierTaken { .. } => "IDENTIFIER_TAKEN",
            Self::MemberHasOpenOrders => "MEMBER_HAS_OPEN_ORDERS",
            Self::IdempotencyKeyReused => "IDEMPOTENCY_KEY_REUSED",
            Self::InsufficientPoints { .. } => "INSUFFICIENT_POINTS",
            Self::PointsExceedAmount { .. } => "POINTS_EXCEED_AMOUNT",
            Self::OrderExists(_) => "ORDER_EXISTS",
            Self::OrderNotFound => "ORDER_NOT_FOUND",
            Self::ReceiptExists { .. } => "RECEIPT_EXISTS",
            Self::HoldExpired => "HOLD_EXPIRED",
            Self::OrderState { .. } => "ORDER_STATE",
            Self::RefundExceedsTotal { .. } => "REFUND_EXCEEDS_TOTAL",
            Self::StoreNotFound => "STORE_NOT_FOUND",
            Self::StoreExists(_) => "STORE_EXISTS",
            Self::CampaignNotFound => "CAMPAIGN_NOT_FOUND",
            Self::CampaignExists(_) => "CAMPAIGN_EXISTS",
            Self::PublicCodeTaken(_) => "PUBLIC_CODE_TAKEN",
            Self::RuleExists(_) => "RULE_EXISTS",
            Self::RuleNotFound => "RULE_NOT_FOUND",
            Self::WebhookExists(_) => "WEBHOOK_EXISTS",
            Self::WebhookNotFound => "WEBHOOK_NOT_FOUND",
            Self::CampaignClosed => "CAMPAIGN_CLOSED",
            Self::CampaignExhausted => "CAMPAIGN_EXHAUSTED",
            Self::MemberLimit => "MEMBER_LIMIT",
            Self::EarnCapExceeded { .. } => "EARN_CAP_EXCEEDED",
            Self::TooOld { .. } => "TOO_OLD",
            Self::Coupon { reason, .. } => reason.as_str(),
            Self::ReceiptNotFound => "RECEIPT_NOT_FOUND",
            Self::ReceiptNotPending { .. } => "RECEIPT_NOT_PENDING",
            Self::CouponReserved { .. } => "COUPON_RESERVED",
            Self::IssueLimitBelowIssued { .. } => "ISSUE_LIMIT_BELOW_ISSUED",
        }
    }

    pub fn class(&self) -> ErrorClass {
        use ErrorClass::*;
        match self {
            Self::InvalidArgument(_) => InvalidArgument,
            Self::PermissionDenied(_) => PermissionDenied,
            Self::MemberNotFound
            | Self::OrderNotFound
            | Self::StoreNotFound
            | Self::CampaignNotFound
            | Self::ReceiptNotFound
            | Self::RuleNotFound
            | Self::WebhookNotFound
            | Self::Coupon {
                reason: CouponReason::NotFound,
                ..
            } => NotFound,
            Self::IdentifierTaken { .. }
            | Self::IdempotencyKeyReused
            | Self::OrderExists(_)
            | Self::ReceiptExists { .. }
            | Self::StoreExists(_)
            | Self::CampaignExists(_)
            | Self::PublicCodeTaken(_)
            | Self::RuleExists(_)
            | Self::WebhookExists(_) => AlreadyExists,
            Self::CampaignExhausted | Self::MemberLimit => ResourceExhausted,
            Self::MemberMerged { .. }
            | Self::MemberErased { .. }
            | Self::MemberHasOpenOrders
            | Self::InsufficientPoints { .. }
            | Self::PointsExceedAmount { .. }
            | Self::HoldExpired
            | Self::OrderState { .. }
            | Self::RefundExceedsTotal { .. }
            | Self::CampaignClosed
            | Self::EarnCapExceeded { .. }
            | Self::TooOld { .. }
            | Self::ReceiptNotPending { .. }
            | Self::CouponReserved { .. }
            | Self::IssueLimitBelowIssued { .. }
            | Self::Coupon { .. } => FailedPrecondition,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifier_taken_carries_no_value_and_reads_old_outcomes() {
        let old: DomainError =
            serde_json::from_str(r#"{"IdentifierTaken":{"kind":"card","value":"4900-1234"}}"#)
                .expect("an outcome remembered before the value was dropped");
        assert_eq!(
            old,
            DomainError::IdentifierTaken {
                kind: "card".into()
            }
        );
        assert!(!serde_json::to_string(&old).unwrap().contains("4900"));
        assert_eq!(
            old.to_string(),
            "the card identifier belongs to another member"
        );
    }
}
