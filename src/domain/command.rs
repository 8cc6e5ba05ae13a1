//! Mutating business commands and their replies.
//!
//! A command is parsed and validated at the edge (gRPC), so everything here is well-formed.
//! Commands are serialised to fingerprint a request for idempotency; replies are serialised so
//! that a retried request gets the original response back, byte for byte, even after a restart.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{
    coupon::{Campaign, Coupon},
    event::{TrackResult, TrackedEvent},
    location::{GeoRule, LocationReport, LocationVerdict, VisitRule},
    model::{
        Channel, Identifier, LineItem, Member, MemberRef, Order, Program, ProgramPatch,
        RefundResult, Store, Transaction,
    },
    money::Money,
    receipt::{ReceiptReason, ReceiptRule, ReceiptStatus, ReceiptSubmission},
    rules::{Rule, RulePatch},
};

/// A mutating command, by the engine area that owns it (`engine::<area>`: the keys it loads,
/// the ids it reserves, how it runs). Serialised without the area's tag, so a command's JSON —
/// the fingerprint idempotency keeps — is the same as before the areas were split out.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Command {
    Members(MemberCommand),
    Points(PointsCommand),
    Checkout(CheckoutCommand),
    Settings(SettingsCommand),
    Coupons(CouponCommand),
    Engagement(EngagementCommand),
    Receipts(ReceiptCommand),
    Rules(RuleCommand),
    Events(EventCommand),
}

/// Members and their identifiers (`engine::members`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub enum MemberCommand {
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
}

/// Points outside orders (`engine::points`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub enum PointsCommand {
    AdjustPoints {
        member: MemberRef,
        points: i64,
        reason: String,
        /// A credit with an expiry of its own: limited-time points. Left out of the
        /// fingerprint when unset, so requests remembered before the field stay the same.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        expires_at: Option<DateTime<Utc>>,
    },
}

/// EC checkout and store registers (`engine::checkout`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub enum CheckoutCommand {
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
}

/// The program's settings and its stores (`engine::settings`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub enum SettingsCommand {
    CreateStore(Store),
    /// Applies `patch` to the current settings, or to the defaults when `replace`.
    UpdateProgram {
        patch: ProgramPatch,
        replace: bool,
    },
}

/// Campaigns and coupons (`engine::coupons`). (A command lives for one request: the size of
/// its largest variant costs nothing worth a box.)
#[derive(Debug, Clone, PartialEq, Serialize)]
#[allow(clippy::large_enum_variant)]
pub enum CouponCommand {
    CreateCampaign(Campaign),
    IssueCoupon {
        campaign_id: String,
        member: MemberRef,
    },
}

/// Geofences and visits (`engine::engagement`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub enum EngagementCommand {
    CreateGeoRule(GeoRule),
    CreateVisitRule(VisitRule),
    ReportLocation(LocationReport),
}

/// Scanned receipts (`engine::receipts`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub enum ReceiptCommand {
    CreateReceiptRule(ReceiptRule),
    SubmitReceipt(ReceiptSubmission),
    ReviewReceipt {
        receipt_id: String,
        approve: bool,
        note: String,
    },
}

/// The rules core (`engine::rules`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub enum RuleCommand {
    CreateRule(Rule),
    UpdateRule(RulePatch),
}

/// Behaviour events in (`engine::events`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub enum EventCommand {
    TrackEvent(TrackedEvent),
}

macro_rules! area_commands {
    ($($area:ident($command:ident) { $($variant:ident => $name:literal),+ $(,)? })+) => {
        impl Command {
            /// Stable name for logs and metrics.
            pub fn name(&self) -> &'static str {
                match self {
                    $(Command::$area(command) => command.name(),)+
                }
            }
        }
        $(
            impl $command {
                pub fn name(&self) -> &'static str {
                    match self {
                        $($command::$variant { .. } => $name,)+
                    }
                }
            }

            impl From<$command> for Command {
                fn from(command: $command) -> Self {
                    Command::$area(command)
                }
            }
        )+
    };
}

area_commands! {
    Members(MemberCommand) {
        CreateMember => "create_member",
        LinkIdentifier => "link_identifier",
        MergeMembers => "merge_members",
    }
    Points(PointsCommand) { AdjustPoints => "adjust_points" }
    Checkout(CheckoutCommand) {
        Authorize => "authorize",
        RecordSale => "record_sale",
        Capture => "capture",
        Void => "void",
        Refund => "refund",
    }
    Settings(SettingsCommand) {
        CreateStore => "create_store",
        UpdateProgram => "update_program",
    }
    Coupons(CouponCommand) {
        CreateCampaign => "create_campaign",
        IssueCoupon => "issue_coupon",
    }
    Engagement(EngagementCommand) {
        CreateGeoRule => "create_geo_rule",
        CreateVisitRule => "create_visit_rule",
        ReportLocation => "report_location",
    }
    Receipts(ReceiptCommand) {
        CreateReceiptRule => "create_receipt_rule",
        SubmitReceipt => "submit_receipt",
        ReviewReceipt => "review_receipt",
    }
    Rules(RuleCommand) {
        CreateRule => "create_rule",
        UpdateRule => "update_rule",
    }
    Events(EventCommand) { TrackEvent => "track_event" }
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
    Tracked(TrackResult),
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
    /// The GEO rules decided for this report, at each store whose visit it changed: what
    /// fired, and why the others did not (outside their hours, in cooldown …).
    #[serde(default)]
    pub rule_outcomes: Vec<crate::domain::rules::RuleOutcome>,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Idempotency fingerprints hash a command's JSON: the areas' split must not change it.
    #[test]
    fn a_command_serialises_as_before_the_areas() {
        let capture: Command = CheckoutCommand::Capture {
            order_id: "o1".into(),
        }
        .into();
        assert_eq!(
            serde_json::to_string(&capture).unwrap(),
            r#"{"Capture":{"order_id":"o1"}}"#
        );
        let adjust: Command = PointsCommand::AdjustPoints {
            member: MemberRef::Id("m1".into()),
            points: 5,
            reason: "r".into(),
            expires_at: None,
        }
        .into();
        assert_eq!(
            serde_json::to_string(&adjust).unwrap(),
            r#"{"AdjustPoints":{"member":{"Id":"m1"},"points":5,"reason":"r"}}"#
        );
        assert_eq!(adjust.name(), "adjust_points");
    }
}
