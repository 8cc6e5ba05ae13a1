//! `omo.v1.LedgerService`: balances, the journal, and admin adjustments.

use std::sync::Arc;

use tonic::{Request, Response, Status};

use super::{
    auth::caller_for,
    convert::{
        MAX_POINTS, Violations, check_request_id, check_text, member_ref, optional_channel_out,
        optional_instant, parse_field, timestamp,
    },
    reply::execute,
};
use crate::{
    domain::{
        auth::Operation,
        command::PointsCommand,
        model::{Balance, Posting, Transaction},
    },
    engine::Engine,
    proto::{self, ledger_service_server::LedgerService},
};

/// Longest adjustment reason, in characters.
const MAX_REASON_CHARS: usize = 500;

pub struct LedgerApi {
    engine: Arc<Engine>,
}

impl LedgerApi {
    pub fn new(engine: Arc<Engine>) -> Self {
        Self { engine }
    }
}

#[tonic::async_trait]
impl LedgerService for LedgerApi {
    async fn get_balance(
        &self,
        request: Request<proto::GetBalanceRequest>,
    ) -> Result<Response<proto::GetBalanceResponse>, Status> {
        let caller = caller_for(&self.engine, &request, Operation::GetBalance).await?;
        let member = parse_field(|v| member_ref(v, "member", request.into_inner().member))?;
        let balance = self.engine.get_balance(&caller, &member).await?;
        Ok(Response::new(proto::GetBalanceResponse {
            balance: Some(balance_out(balance)),
        }))
    }

    async fn list_transactions(
        &self,
        request: Request<proto::ListTransactionsRequest>,
    ) -> Result<Response<proto::ListTransactionsResponse>, Status> {
        let caller = caller_for(&self.engine, &request, Operation::ListTransactions).await?;
        let request = request.into_inner();
        let mut v = Violations::new();
        let member = member_ref(&mut v, "member", request.member);
        let page_size = page_size(&mut v, request.page_size);
        let before = page_token(&mut v, &request.page_token);
        let (member, page_size, before) = v.build(|| Some((member?, page_size?, before?)))?;
        let page = self
            .engine
            .list_transactions(&caller, &member, page_size, before)
            .await?;
        Ok(Response::new(proto::ListTransactionsResponse {
            transactions: page.transactions.into_iter().map(transaction_out).collect(),
            next_page_token: page
                .next_before
                .map(|id| id.to_string())
                .unwrap_or_default(),
        }))
    }

    async fn adjust_points(
        &self,
        request: Request<proto::AdjustPointsRequest>,
    ) -> Result<Response<proto::AdjustPointsResponse>, Status> {
        let caller = caller_for(&self.engine, &request, Operation::AdjustPoints).await?;
        let request = request.into_inner();
        let command = adjust_command(&request)?;
        let transaction =
            execute(&self.engine, &caller, Some(&request.request_id), command).await?;
        Ok(Response::new(proto::AdjustPointsResponse {
            transaction: Some(transaction_out(transaction)),
        }))
    }

    async fn transfer_points(
        &self,
        request: Request<proto::TransferPointsRequest>,
    ) -> Result<Response<proto::TransferPointsResponse>, Status> {
        let caller = caller_for(&self.engine, &request, Operation::TransferPoints).await?;
        let request = request.into_inner();
        let command = transfer_command(&request)?;
        let transaction =
            execute(&self.engine, &caller, Some(&request.request_id), command).await?;
        Ok(Response::new(proto::TransferPointsResponse {
            transaction: Some(transaction_out(transaction)),
        }))
    }
}

pub(super) fn transfer_command(
    request: &proto::TransferPointsRequest,
) -> Result<PointsCommand, Status> {
    let mut v = Violations::new();
    check_request_id(&mut v, &request.request_id);
    let from_member = member_ref(&mut v, "from_member", request.from_member.clone());
    let to_member = member_ref(&mut v, "to_member", request.to_member.clone());
    if from_member.is_some() && from_member == to_member {
        v.push("to_member", "must be another member than from_member");
    }
    if !(1..=MAX_POINTS).contains(&request.points) {
        v.push("points", format!("must be between 1 and {MAX_POINTS}"));
    }
    v.build(|| {
        Some(PointsCommand::TransferPoints {
            from_member: from_member?,
            to_member: to_member?,
            points: request.points,
        })
    })
}

pub(super) fn adjust_command(
    request: &proto::AdjustPointsRequest,
) -> Result<PointsCommand, Status> {
    let mut v = Violations::new();
    check_request_id(&mut v, &request.request_id);
    let member = member_ref(&mut v, "member", request.member.clone());
    if request.points == 0 {
        v.push("points", "must not be 0");
    } else if request.points.unsigned_abs() > MAX_POINTS.unsigned_abs() {
        v.push(
            "points",
            format!("must be between -{MAX_POINTS} and {MAX_POINTS}"),
        );
    }
    check_text(&mut v, "reason", &request.reason, 1, MAX_REASON_CHARS);
    let expires_at = optional_instant(&mut v, "expires_at", request.expires_at.as_ref());
    if request.points < 0 && request.expires_at.is_some() {
        v.push("expires_at", "only a credit (points > 0) takes an expiry");
    }
    v.build(|| {
        Some(PointsCommand::AdjustPoints {
            member: member?,
            points: request.points,
            reason: request.reason.clone(),
            expires_at: expires_at?,
        })
    })
}

/// 0 means the default (50); at most 500 (the same bounds as every List RPC).
fn page_size(v: &mut Violations, page_size: i32) -> Option<i64> {
    super::paging::page_size(v, page_size).and_then(|size| i64::try_from(size).ok())
}

/// Empty for the first page, else the `next_page_token` we gave out (a transaction id).
fn page_token(v: &mut Violations, token: &str) -> Option<Option<i64>> {
    if token.is_empty() {
        return Some(None);
    }
    let id = token
        .bytes()
        .all(|b| b.is_ascii_digit())
        .then(|| token.parse::<i64>().ok())
        .flatten()
        .filter(|id| *id > 0);
    if id.is_none() {
        v.push(
            "page_token",
            "is not a page token returned by ListTransactions",
        );
    }
    id.map(Some)
}

pub fn balance_out(balance: Balance) -> proto::Balance {
    proto::Balance {
        member_id: balance.member_id,
        available_points: balance.available_points,
        pending_points: balance.pending_points,
        held_points: balance.held_points,
        expiring: balance
            .expiring
            .into_iter()
            .map(|e| proto::ExpiringPoints {
                points: e.points,
                expires_at: Some(timestamp(e.expires_at)),
            })
            .collect(),
        lifetime_earned_points: balance.lifetime_earned_points,
        lifetime_redeemed_points: balance.lifetime_redeemed_points,
        limited_points: balance.limited_points,
    }
}

pub fn transaction_out(transaction: Transaction) -> proto::Transaction {
    let posting_out = |p: Posting| proto::Posting {
        from_account: p.from_account,
        to_account: p.to_account,
        asset: p.asset,
        amount: p.amount,
    };
    proto::Transaction {
        transaction_id: transaction.transaction_id.to_string(),
        kind: transaction.kind,
        occurred_at: Some(timestamp(transaction.occurred_at)),
        recorded_at: Some(timestamp(transaction.recorded_at)),
        channel: optional_channel_out(transaction.channel),
        store_id: transaction.store_id,
        order_id: transaction.order_id,
        postings: transaction.postings.into_iter().map(posting_out).collect(),
        metadata: transaction.metadata.into_iter().collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::grpc::status::violated_fields;

    #[test]
    fn page_sizes_and_tokens() {
        let mut v = Violations::new();
        assert_eq!(page_size(&mut v, 0), Some(50));
        assert_eq!(page_size(&mut v, 500), Some(500));
        assert_eq!(page_token(&mut v, ""), Some(None));
        assert_eq!(page_token(&mut v, "1234"), Some(Some(1234)));
        assert!(v.is_empty());
        assert!(page_size(&mut v, 501).is_none());
        assert!(page_size(&mut v, -1).is_none());
        for bad in ["abc", "-5", "+5", "0", "99999999999999999999"] {
            assert!(page_token(&mut v, bad).is_none(), "{bad}");
        }
        assert_eq!(v.into_vec().len(), 7);
    }

    #[test]
    fn adjustments_are_bounded() {
        let request = proto::AdjustPointsRequest {
            expires_at: None,
            request_id: String::new(),
            member: None,
            points: 0,
            reason: String::new(),
        };
        let status = adjust_command(&request).expect_err("invalid");
        let fields = violated_fields(&status);
        assert_eq!(fields, ["request_id", "member", "points", "reason"]);
    }
}
