//! Running a command and taking the value out of the engine's reply: each command has one kind
//! of [`Reply`], so another kind is a bug of the engine, logged and shown as INTERNAL.

use tonic::Status;

use super::status::unexpected_reply;
use crate::{
    domain::{
        auth::Caller,
        command::{Command, LocationResult, ReceiptResult, Reply},
        coupon::{Campaign, Coupon},
        event::TrackResult,
        location::{GeoRule, VisitRule},
        model::{Member, Order, Program, RefundResult, Store, Transaction},
        receipt::ReceiptRule,
        rules::Rule,
    },
    engine::Engine,
};

/// The value one kind of [`Reply`] carries.
pub trait FromReply: Sized {
    /// The value; a reply of another kind is logged and becomes INTERNAL.
    fn from_reply(reply: Reply) -> Result<Self, Status>;
}

/// Implements [`FromReply`] for the value of each `Reply` variant.
macro_rules! from_reply {
    ($($variant:ident($value:ty) => $kind:literal,)+) => {$(
        impl FromReply for $value {
            fn from_reply(reply: Reply) -> Result<Self, Status> {
                match reply {
                    Reply::$variant(value) => Ok(value),
                    other => Err(unexpected_reply($kind, &other)),
                }
            }
        }
    )+};
}

from_reply! {
    Member(Member) => "member",
    Transaction(Transaction) => "transaction",
    Order(Order) => "order",
    Refund(RefundResult) => "refund",
    Store(Store) => "store",
    Program(Program) => "program",
    Campaign(Campaign) => "campaign",
    Coupon(Coupon) => "coupon",
    GeoRule(GeoRule) => "geo rule",
    VisitRule(VisitRule) => "visit rule",
    Location(LocationResult) => "location result",
    ReceiptRule(ReceiptRule) => "receipt rule",
    Receipt(ReceiptResult) => "receipt result",
    Rule(Rule) => "rule",
    Tracked(TrackResult) => "track result",
}

/// Runs `command` (idempotent under `request_id` when given, which the request span records)
/// and returns the value its reply carries.
pub async fn execute<T: FromReply>(
    engine: &Engine,
    caller: &Caller,
    request_id: Option<&str>,
    command: impl Into<Command>,
) -> Result<T, Status> {
    if let Some(request_id) = request_id {
        super::observe::record_request_id(request_id);
    }
    let reply = engine.execute(caller, request_id, command).await?;
    T::from_reply(reply)
}
