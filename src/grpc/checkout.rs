//! `omo.v1.CheckoutService`: EC/app checkout (Quote, Authorize, Capture, Void, Refund) and store
//! registers (RecordSale). Quote, Authorize and RecordSale share one conversion into
//! [`OrderRequest`].

use std::{collections::HashSet, sync::Arc};

use prost_types::Timestamp;
use tonic::{Request, Response, Status};

use super::{
    auth::{caller, caller_for, permit_checkout},
    convert::{
        MAX_BASKET_LINES, MAX_LINE_QUANTITY, Violations, basket, channel, channel_out, check_id,
        check_optional_id, check_points_to_redeem, check_request_id, coupon_codes, member_ref,
        optional_instant, optional_timestamp, positive_money, required_id, timestamp,
    },
    paging::{next_page_token, page_size, page_token},
    reply::execute,
};
use crate::{
    domain::{
        auth::{Caller, Operation},
        command::{CheckoutCommand, OrderRequest, RefundLine, RefundScope},
        model::{Channel, EarnPart, Order, OrderState, RefundResult},
        pricing::Quote,
    },
    engine::Engine,
    proto::{self, checkout_service_server::CheckoutService},
};

pub struct CheckoutApi {
    engine: Arc<Engine>,
}

impl CheckoutApi {
    pub fn new(engine: Arc<Engine>) -> Self {
        Self { engine }
    }

    /// Runs a command whose reply is an order.
    async fn order(
        &self,
        caller: &Caller,
        request_id: &str,
        command: CheckoutCommand,
    ) -> Result<proto::Order, Status> {
        let order = execute(&self.engine, caller, Some(request_id), command).await?;
        Ok(order_out(order))
    }

    /// Authorize and RecordSale: validates the order, then places it with `command`.
    async fn place_order<R: Into<OrderInput> + Send>(
        &self,
        request: Request<R>,
        kind: OrderKind,
        command: fn(OrderRequest) -> CheckoutCommand,
    ) -> Result<proto::Order, Status> {
        let caller = caller(&self.engine, &request).await?;
        let input: OrderInput = request.into_inner().into();
        permit_checkout(&caller, input.channel, &input.store_id)?;
        let request_id = input.request_id.clone();
        let order = order_in(kind, Some(&request_id), input)?;
        self.order(&caller, &request_id, command(order)).await
    }

    /// Capture and Void: validates the order reference, then resolves the order with `command`.
    async fn resolve_order<R: Into<OrderOp> + Send>(
        &self,
        request: Request<R>,
        command: fn(String) -> CheckoutCommand,
    ) -> Result<proto::Order, Status> {
        let caller = caller(&self.engine, &request).await?;
        let OrderOp {
            request_id,
            order_id,
        } = request.into_inner().into();
        order_op_in(&request_id, &order_id)?;
        self.order(&caller, &request_id, command(order_id)).await
    }
}

#[tonic::async_trait]
impl CheckoutService for CheckoutApi {
    async fn quote(
        &self,
        request: Request<proto::QuoteRequest>,
    ) -> Result<Response<proto::QuoteResponse>, Status> {
        let caller = caller(&self.engine, &request).await?;
        let input: OrderInput = request.into_inner().into();
        permit_checkout(&caller, input.channel, &input.store_id)?;
        let order = order_in(OrderKind::Quote, None, input)?;
        let quote = self.engine.quote(&caller, &order).await?;
        Ok(Response::new(proto::QuoteResponse {
            quote: Some(quote_out(quote)),
        }))
    }

    async fn authorize(
        &self,
        request: Request<proto::AuthorizeRequest>,
    ) -> Result<Response<proto::AuthorizeResponse>, Status> {
        let order = self
            .place_order(request, OrderKind::Authorize, CheckoutCommand::Authorize)
            .await?;
        Ok(Response::new(proto::AuthorizeResponse {
            order: Some(order),
        }))
    }

    async fn capture(
        &self,
        request: Request<proto::CaptureRequest>,
    ) -> Result<Response<proto::CaptureResponse>, Status> {
        let order = self
            .resolve_order(request, |order_id| CheckoutCommand::Capture { order_id })
            .await?;
        Ok(Response::new(proto::CaptureResponse { order: Some(order) }))
    }

    async fn void(
        &self,
        request: Request<proto::VoidRequest>,
    ) -> Result<Response<proto::VoidResponse>, Status> {
        let order = self
            .resolve_order(request, |order_id| CheckoutCommand::Void { order_id })
            .await?;
        Ok(Response::new(proto::VoidResponse { order: Some(order) }))
    }

    async fn refund(
        &self,
        request: Request<proto::RefundRequest>,
    ) -> Result<Response<proto::RefundResponse>, Status> {
        let caller = caller(&self.engine, &request).await?;
        let request = request.into_inner();
        let command = refund_in(&request)?;
        let result = execute(&self.engine, &caller, Some(&request.request_id), command).await?;
        Ok(Response::new(proto::RefundResponse {
            result: Some(refund_out(result)),
        }))
    }

    async fn record_sale(
        &self,
        request: Request<proto::RecordSaleRequest>,
    ) -> Result<Response<proto::RecordSaleResponse>, Status> {
        let order = self
            .place_order(request, OrderKind::RecordSale, CheckoutCommand::RecordSale)
            .await?;
        Ok(Response::new(proto::RecordSaleResponse {
            order: Some(order),
        }))
    }

    async fn get_order(
        &self,
        request: Request<proto::GetOrderRequest>,
    ) -> Result<Response<proto::GetOrderResponse>, Status> {
        let caller = caller(&self.engine, &request).await?;
        let order_id = request.into_inner().order_id;
        required_id("order_id", &order_id)?;
        let order = self.engine.get_order(&caller, &order_id).await?;
        Ok(Response::new(proto::GetOrderResponse {
            order: Some(order_out(order)),
        }))
    }

    async fn list_orders(
        &self,
        request: Request<proto::ListOrdersRequest>,
    ) -> Result<Response<proto::ListOrdersResponse>, Status> {
        let caller = caller_for(&self.engine, &request, Operation::ListOrders).await?;
        let request = request.into_inner();
        let mut v = Violations::new();
        let member = member_ref(&mut v, "member", request.member);
        let size = page_size(&mut v, request.page_size);
        let after = page_token(&mut v, "ListOrders", &request.page_token);
        let (member, size, after) = v.build(|| Some((member?, size?, after?)))?;
        let page = self
            .engine
            .list_orders(&caller, &member, after.as_ref(), size)
            .await?;
        Ok(Response::new(proto::ListOrdersResponse {
            orders: page.items.into_iter().map(order_out).collect(),
            next_page_token: next_page_token(page.next),
        }))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum OrderKind {
    /// order_id optional; no register sale fields.
    Quote,
    Authorize,
    /// register_id and receipt_no required; occurred_at allowed.
    RecordSale,
}

/// The order fields of QuoteRequest, AuthorizeRequest and RecordSaleRequest.
#[derive(Debug, Default)]
pub(super) struct OrderInput {
    /// Empty for a quote, which changes nothing.
    request_id: String,
    order_id: String,
    member: Option<proto::MemberRef>,
    channel: i32,
    store_id: String,
    register_id: String,
    basket: Option<proto::Basket>,
    points_to_redeem: i64,
    coupon_codes: Vec<String>,
    receipt_no: String,
    occurred_at: Option<Timestamp>,
}

impl From<proto::QuoteRequest> for OrderInput {
    fn from(r: proto::QuoteRequest) -> Self {
        Self {
            member: r.member,
            channel: r.channel,
            store_id: r.store_id,
            basket: r.basket,
            points_to_redeem: r.points_to_redeem,
            coupon_codes: r.coupon_codes,
            ..Self::default()
        }
    }
}

impl From<proto::AuthorizeRequest> for OrderInput {
    fn from(r: proto::AuthorizeRequest) -> Self {
        Self {
            request_id: r.request_id,
            order_id: r.order_id,
            member: r.member,
            channel: r.channel,
            store_id: r.store_id,
            register_id: r.register_id,
            basket: r.basket,
            points_to_redeem: r.points_to_redeem,
            coupon_codes: r.coupon_codes,
            ..Self::default()
        }
    }
}

impl From<proto::RecordSaleRequest> for OrderInput {
    fn from(r: proto::RecordSaleRequest) -> Self {
        Self {
            request_id: r.request_id,
            order_id: r.order_id,
            member: r.member,
            channel: r.channel,
            store_id: r.store_id,
            register_id: r.register_id,
            basket: r.basket,
            points_to_redeem: r.points_to_redeem,
            coupon_codes: r.coupon_codes,
            receipt_no: r.receipt_no,
            occurred_at: r.occurred_at,
        }
    }
}

/// The fields of CaptureRequest and VoidRequest.
struct OrderOp {
    request_id: String,
    order_id: String,
}

impl From<proto::CaptureRequest> for OrderOp {
    fn from(r: proto::CaptureRequest) -> Self {
        Self {
            request_id: r.request_id,
            order_id: r.order_id,
        }
    }
}

impl From<proto::VoidRequest> for OrderOp {
    fn from(r: proto::VoidRequest) -> Self {
        Self {
            request_id: r.request_id,
            order_id: r.order_id,
        }
    }
}

/// Validates an order as a checkout or register presents it, reporting every bad field.
pub(super) fn order_in(
    kind: OrderKind,
    request_id: Option<&str>,
    input: OrderInput,
) -> Result<OrderRequest, Status> {
    let mut v = Violations::new();
    if let Some(request_id) = request_id {
        check_request_id(&mut v, request_id);
    }
    if kind == OrderKind::Quote {
        check_optional_id(&mut v, "order_id", &input.order_id);
    } else {
        check_id(&mut v, "order_id", &input.order_id);
    }
    let member = member_ref(&mut v, "member", input.member);
    let channel = channel(&mut v, "channel", input.channel);
    if channel == Some(Channel::Store) {
        check_id(&mut v, "store_id", &input.store_id);
    } else {
        check_optional_id(&mut v, "store_id", &input.store_id);
    }
    let lines = basket(&mut v, "basket", input.basket);
    check_points_to_redeem(&mut v, "points_to_redeem", input.points_to_redeem);
    let coupon_codes = coupon_codes(&mut v, "coupon_codes", &input.coupon_codes);
    let occurred_at = if kind == OrderKind::RecordSale {
        check_id(&mut v, "register_id", &input.register_id);
        check_id(&mut v, "receipt_no", &input.receipt_no);
        optional_instant(&mut v, "occurred_at", input.occurred_at.as_ref())
    } else {
        check_optional_id(&mut v, "register_id", &input.register_id);
        Some(None)
    };
    v.build(|| {
        Some(OrderRequest {
            order_id: input.order_id,
            member: member?,
            channel: channel?,
            store_id: input.store_id,
            register_id: input.register_id,
            lines: lines?,
            points_to_redeem: input.points_to_redeem,
            coupon_codes: coupon_codes?,
            receipt_no: input.receipt_no,
            occurred_at: occurred_at?,
        })
    })
}

/// Capture and Void: a request_id and the order.
pub(super) fn order_op_in(request_id: &str, order_id: &str) -> Result<(), Status> {
    let mut v = Violations::new();
    check_request_id(&mut v, request_id);
    check_id(&mut v, "order_id", order_id);
    v.finish()
}

/// A refund: exactly one of `amount` (> 0) and `lines`.
pub(super) fn refund_in(request: &proto::RefundRequest) -> Result<CheckoutCommand, Status> {
    let mut v = Violations::new();
    check_request_id(&mut v, &request.request_id);
    check_id(&mut v, "order_id", &request.order_id);
    let scope = match (request.amount.is_empty(), request.lines.is_empty()) {
        (false, false) => {
            v.push("amount", "set either amount or lines, not both");
            None
        }
        (true, true) => {
            v.push("amount", "set amount or lines");
            None
        }
        (false, true) => positive_money(&mut v, "amount", &request.amount).map(RefundScope::Amount),
        (true, false) => refund_lines(&mut v, &request.lines).map(RefundScope::Lines),
    };
    v.build(|| {
        Some(CheckoutCommand::Refund {
            order_id: request.order_id.clone(),
            scope: scope?,
        })
    })
}

fn refund_lines(v: &mut Violations, lines: &[proto::RefundLine]) -> Option<Vec<RefundLine>> {
    if lines.len() > MAX_BASKET_LINES {
        v.push("lines", format!("at most {MAX_BASKET_LINES} lines"));
        return None;
    }
    let mut seen = HashSet::new();
    let mut ok = true;
    for (i, line) in lines.iter().enumerate() {
        let id_field = format!("lines[{i}].line_id");
        if !check_id(v, &id_field, &line.line_id) {
            ok = false;
        } else if !seen.insert(line.line_id.as_str()) {
            v.push(id_field, format!("duplicate line_id {:?}", line.line_id));
            ok = false;
        }
        if !(1..=MAX_LINE_QUANTITY).contains(&line.quantity) {
            v.push(
                format!("lines[{i}].quantity"),
                format!("must be between 1 and {MAX_LINE_QUANTITY}"),
            );
            ok = false;
        }
    }
    ok.then(|| {
        lines
            .iter()
            .map(|line| RefundLine {
                line_id: line.line_id.clone(),
                quantity: line.quantity,
            })
            .collect()
    })
}

pub fn order_out(order: Order) -> proto::Order {
    let points_earned = order.points_earned_so_far();
    let earn_breakdown = earn_parts_out(order.earn_parts());
    proto::Order {
        order_id: order.order_id,
        member_id: order.member_id,
        state: order_state_out(order.state).into(),
        channel: channel_out(order.channel),
        store_id: order.store_id,
        register_id: order.register_id,
        receipt_no: order.receipt_no,
        total: order.total.to_string(),
        coupon_discount: order.coupon_discount.to_string(),
        points_redeemed: order.points_redeemed,
        amount_due: order.amount_due.to_string(),
        points_earned,
        points_pending: order.points_pending,
        coupon_codes: order.coupon_codes,
        hold_expires_at: optional_timestamp(order.hold_expires_at),
        refunded_amount: order.refunded_amount.to_string(),
        created_at: Some(timestamp(order.created_at)),
        occurred_at: Some(timestamp(order.occurred_at)),
        earn_breakdown,
        lines: order.lines.into_iter().map(order_line_out).collect(),
    }
}

fn order_line_out(line: crate::domain::model::OrderLine) -> proto::OrderLine {
    let item = line.item;
    proto::OrderLine {
        item: Some(proto::LineItem {
            line_id: item.line_id,
            sku: item.sku,
            category: item.category,
            quantity: item.quantity,
            amount: item.amount.to_string(),
        }),
        refunded_quantity: line.refunded_quantity,
    }
}

/// Parts of what an order earns, as the contract shows them.
pub fn earn_parts_out(parts: Vec<EarnPart>) -> Vec<proto::EarnPart> {
    parts
        .into_iter()
        .map(|part| proto::EarnPart {
            rule_id: part.rule_id,
            points: part.points,
        })
        .collect()
}

fn order_state_out(state: OrderState) -> proto::OrderState {
    match state {
        OrderState::Authorized => proto::OrderState::Authorized,
        OrderState::Captured => proto::OrderState::Captured,
        OrderState::Voided => proto::OrderState::Voided,
        OrderState::Expired => proto::OrderState::Expired,
        OrderState::PartiallyRefunded => proto::OrderState::PartiallyRefunded,
        OrderState::Refunded => proto::OrderState::Refunded,
    }
}

fn quote_out(quote: Quote) -> proto::Quote {
    let priced = quote.priced;
    proto::Quote {
        available_points: priced.available_points,
        max_redeemable_points: priced.max_redeemable_points,
        points_discount: priced.points_discount.to_string(),
        coupons: quote
            .coupons
            .into_iter()
            .map(|c| proto::CouponApplication {
                code: c.code,
                applicable: c.applicable,
                reason: c.reason.unwrap_or_default(),
                discount: c.discount.to_string(),
            })
            .collect(),
        amount_due: priced.amount_due.to_string(),
        points_to_earn: priced.points_to_earn,
        total: priced.total.to_string(),
        coupon_discount: priced.coupon_discount.to_string(),
        earn_breakdown: earn_parts_out(quote.earn_breakdown),
    }
}

fn refund_out(result: RefundResult) -> proto::RefundResult {
    proto::RefundResult {
        order: Some(order_out(result.order)),
        points_restored: result.points_restored,
        points_reversed: result.points_reversed,
        points_shortfall: result.points_shortfall,
        coupons_restored: result.coupons_restored,
        earn_breakdown: earn_parts_out(result.reversed_breakdown),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::grpc::status::violated_fields;

    fn good_sale() -> proto::RecordSaleRequest {
        proto::RecordSaleRequest {
            request_id: "r1".into(),
            order_id: "o1".into(),
            member: Some(proto::MemberRef {
                r#ref: Some(proto::member_ref::Ref::Identifier(proto::Identifier {
                    kind: "card".into(),
                    value: "4900000000012".into(),
                })),
            }),
            channel: proto::Channel::Store.into(),
            store_id: "s1".into(),
            register_id: "reg-1".into(),
            basket: Some(proto::Basket {
                lines: vec![proto::LineItem {
                    line_id: "1".into(),
                    sku: "sku".into(),
                    category: "food".into(),
                    quantity: 1,
                    amount: "1000".into(),
                }],
            }),
            points_to_redeem: 0,
            coupon_codes: vec!["ab-cd".into()],
            receipt_no: "R-0001".into(),
            occurred_at: Some(Timestamp {
                seconds: 1_700_000_000,
                nanos: 0,
            }),
        }
    }

    #[test]
    fn a_register_sale_converts() {
        let order = order_in(OrderKind::RecordSale, Some("r1"), good_sale().into()).expect("valid");
        assert_eq!(order.channel, Channel::Store);
        assert_eq!(order.coupon_codes, ["ABCD"]);
        assert_eq!(order.receipt_no, "R-0001");
        assert!(order.occurred_at.is_some());
    }

    #[test]
    fn a_bad_register_sale_names_every_field() {
        let mut sale = good_sale();
        sale.request_id.clear();
        sale.store_id.clear();
        sale.register_id.clear();
        sale.receipt_no.clear();
        sale.points_to_redeem = -1;
        sale.coupon_codes = vec!["abc".into(), "ABC".into()];
        let status = order_in(OrderKind::RecordSale, Some(""), sale.into()).expect_err("invalid");
        assert_eq!(
            violated_fields(&status),
            [
                "request_id",
                "store_id",
                "points_to_redeem",
                "coupon_codes[1]",
                "register_id",
                "receipt_no"
            ]
        );
    }

    #[test]
    fn a_quote_needs_no_order_id_but_a_channel() {
        let quote = proto::QuoteRequest {
            channel: proto::Channel::Unspecified.into(),
            ..proto::QuoteRequest::default()
        };
        let status = order_in(OrderKind::Quote, None, quote.into()).expect_err("invalid");
        assert_eq!(
            violated_fields(&status),
            ["member", "channel", "basket.lines"]
        );
    }

    #[test]
    fn refunds_take_an_amount_or_lines() {
        let by_amount = proto::RefundRequest {
            request_id: "r".into(),
            order_id: "o".into(),
            amount: "500".into(),
            lines: vec![],
        };
        assert!(matches!(
            refund_in(&by_amount),
            Ok(CheckoutCommand::Refund {
                scope: RefundScope::Amount(_),
                ..
            })
        ));
        let both = proto::RefundRequest {
            lines: vec![proto::RefundLine {
                line_id: "1".into(),
                quantity: 1,
            }],
            ..by_amount.clone()
        };
        assert_eq!(
            violated_fields(&refund_in(&both).expect_err("both")),
            ["amount"]
        );
        let bad_lines = proto::RefundRequest {
            amount: String::new(),
            lines: vec![
                proto::RefundLine {
                    line_id: "1".into(),
                    quantity: 0,
                },
                proto::RefundLine {
                    line_id: "1".into(),
                    quantity: 1,
                },
            ],
            ..by_amount.clone()
        };
        assert_eq!(
            violated_fields(&refund_in(&bad_lines).expect_err("bad lines")),
            ["lines[0].quantity", "lines[1].line_id"]
        );
        let zero = proto::RefundRequest {
            amount: "0".into(),
            ..by_amount
        };
        assert_eq!(
            violated_fields(&refund_in(&zero).expect_err("zero")),
            ["amount"]
        );
    }
}
