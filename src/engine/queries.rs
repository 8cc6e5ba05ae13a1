//! Read-only queries. Each runs in one read snapshot and writes nothing; balances are computed
//! from lots as of the clock, so they are right even before the sweeper has run.

use super::{Engine, EngineError, Failure, coupons, members};
use crate::domain::{
    DomainError,
    auth::{Caller, Operation},
    command::OrderRequest,
    coupon::{Campaign, Coupon, CouponContext, CouponState},
    lots,
    model::{Balance, Member, MemberRef, Order, Program, Store, Transaction},
    page::{Cursor, Page, page_after},
    pricing::{self, CouponApplication, Quote},
};

/// One page of a member's transactions, newest first.
#[derive(Debug, Clone)]
pub struct TransactionPage {
    pub transactions: Vec<Transaction>,
    /// Pass as `before` to get the next (older) page; None on the last page.
    pub next_before: Option<i64>,
}

pub(super) fn from_failure(failure: Failure) -> EngineError {
    match failure {
        Failure::Refused(error) | Failure::RefusedAfterWrites(error) => error.into(),
        Failure::Internal(error) => error.into(),
    }
}

impl Engine {
    pub async fn get_member(
        &self,
        caller: &Caller,
        member: &MemberRef,
    ) -> Result<Member, EngineError> {
        caller.require(Operation::GetMember)?;
        let mut uow = self.store().begin_read().await?;
        let row = members::resolve(uow.as_mut(), member, members::Access::Read)
            .await
            .map_err(from_failure)?;
        let program = self.core.reference.program(uow.as_mut()).await?;
        Ok(members::to_member_under(uow.as_mut(), row, self.now(), &program).await?)
    }

    pub async fn get_balance(
        &self,
        caller: &Caller,
        member: &MemberRef,
    ) -> Result<Balance, EngineError> {
        caller.require(Operation::GetBalance)?;
        if let MemberRef::Id(member_id) = member {
            // The member and its lots in one statement, which reads one snapshot by itself.
            let mut uow = self.store().begin_read_statement().await?;
            let (row, member_lots) = uow
                .member_with_lots(member_id)
                .await?
                .ok_or(DomainError::MemberNotFound)?;
            return Ok(lots::balance_at(&row, &member_lots, self.now()));
        }
        let mut uow = self.store().begin_read().await?;
        let row = members::resolve(uow.as_mut(), member, members::Access::Read)
            .await
            .map_err(from_failure)?;
        let member_lots = uow.member_lots(&row.member_id).await?;
        Ok(lots::balance_at(&row, &member_lots, self.now()))
    }

    pub async fn list_transactions(
        &self,
        caller: &Caller,
        member: &MemberRef,
        page_size: i64,
        before: Option<i64>,
    ) -> Result<TransactionPage, EngineError> {
        caller.require(Operation::ListTransactions)?;
        let mut uow = self.store().begin_read().await?;
        let row = members::resolve(uow.as_mut(), member, members::Access::Read)
            .await
            .map_err(from_failure)?;
        // One more than asked tells whether another page follows.
        let mut transactions = uow
            .member_transactions(&row.member_id, before, page_size + 1)
            .await?;
        let more = transactions.len() as i64 > page_size;
        transactions.truncate(page_size as usize);
        let next_before = more
            .then(|| transactions.last().map(|t| t.transaction_id))
            .flatten();
        Ok(TransactionPage {
            transactions,
            next_before,
        })
    }

    /// Prices a basket without writing: points as of now, each code with its verdict.
    pub async fn quote(
        &self,
        caller: &Caller,
        request: &OrderRequest,
    ) -> Result<Quote, EngineError> {
        caller.require_checkout(request.channel, &request.store_id)?;
        let now = self.now();
        let mut uow = self.store().begin_read().await?;
        let member = members::resolve(uow.as_mut(), &request.member, members::Access::Read)
            .await
            .map_err(from_failure)?;
        let program = self.core.reference.program(uow.as_mut()).await?;
        let member_lots = uow.member_lots(&member.member_id).await?;
        let available = lots::spendable(&member_lots, now);
        let total = pricing::basket_total(&request.lines);
        let ctx = CouponContext {
            member_id: &member.member_id,
            channel: request.channel,
            store_id: &request.store_id,
            total,
            now,
            lines: &request.lines,
        };
        let evaluated = coupons::evaluate(
            uow.as_mut(),
            &ctx,
            &request.coupon_codes,
            program.currency_exponent(),
            false,
        )
        .await?;
        let coupons: Vec<CouponApplication> = evaluated
            .into_iter()
            .map(|e| match e.verdict {
                Ok(applied) => CouponApplication {
                    code: e.code,
                    applicable: true,
                    reason: None,
                    discount: applied.discount,
                },
                Err(error) => CouponApplication {
                    code: e.code,
                    applicable: false,
                    reason: Some(error.reason().to_string()),
                    discount: crate::domain::Money::ZERO,
                },
            })
            .collect();
        let discount = coupons.iter().map(|c| c.discount).sum();
        let mut priced = pricing::price(
            &program,
            request.channel,
            total,
            discount,
            request.points_to_redeem,
            available,
            false,
        )?;
        // The member's tier multiplies the base, as the order would earn it.
        priced.points_to_earn =
            super::tiers::base_points(&program, request.channel, priced.amount_due, &member);
        let purchase = super::rules::Purchase {
            member_id: &member.member_id,
            channel: request.channel,
            store_id: &request.store_id,
            lines: &request.lines,
            total: priced.total,
            paid: priced.amount_due,
            at: now,
        };
        let reference = &self.core.reference;
        let decided =
            super::rules::decide_purchase(uow.as_mut(), reference, &program, &purchase, false)
                .await?;
        let earn_breakdown = decided
            .within_cap(priced.points_to_earn, program.max_points_per_order)
            .breakdown(priced.points_to_earn);
        let priced = pricing::Priced {
            points_to_earn: earn_breakdown.iter().map(|part| part.points).sum(),
            ..priced
        };
        Ok(Quote {
            priced,
            coupons,
            earn_breakdown,
        })
    }

    pub async fn get_order(&self, caller: &Caller, order_id: &str) -> Result<Order, EngineError> {
        let mut uow = self.store().begin_read().await?;
        let order = uow
            .get_order(order_id, false)
            .await?
            .ok_or(DomainError::OrderNotFound)?;
        // An order outside the caller's reach (another store's, another channel's) is answered
        // exactly like a missing one: its existence is not the caller's to learn.
        if !caller.may_see_order(order.channel, &order.store_id) {
            return Err(DomainError::OrderNotFound.into());
        }
        Ok(order)
    }

    /// A page of a member's orders, newest first (created_at, order_id), in every channel: the
    /// history is the member's (ListTransactions already shows every channel's entries to the
    /// same roles). Keyset pages read one more row than asked to tell whether another follows.
    pub async fn list_orders(
        &self,
        caller: &Caller,
        member: &MemberRef,
        after: Option<&Cursor>,
        size: usize,
    ) -> Result<Page<Order>, EngineError> {
        caller.require(Operation::ListOrders)?;
        let mut uow = self.store().begin_read().await?;
        let row = members::resolve(uow.as_mut(), member, members::Access::Read)
            .await
            .map_err(from_failure)?;
        let before = after.map(|cursor| (cursor.at.unwrap_or_default(), cursor.id.clone()));
        let limit = i64::try_from(size).unwrap_or(i64::MAX).saturating_add(1);
        let mut orders = uow
            .member_orders(&row.member_id, before.as_ref(), limit)
            .await?;
        let more = orders.len() > size;
        orders.truncate(size);
        let next = more
            .then(|| {
                orders.last().map(|last| Cursor {
                    at: Some(last.created_at),
                    id: last.order_id.clone(),
                })
            })
            .flatten();
        Ok(Page {
            items: orders,
            next,
        })
    }

    pub async fn get_store(&self, caller: &Caller, store_id: &str) -> Result<Store, EngineError> {
        caller.require(Operation::ManageStores)?;
        let mut uow = self.store().begin_read().await?;
        Ok(uow
            .get_store(store_id)
            .await?
            .ok_or(DomainError::StoreNotFound)?)
    }

    /// A page of stores in store_id order. Stores and campaigns are few (a retailer's shops and
    /// promotions, not its customers), so the page is cut from the ordered list in memory.
    pub async fn list_stores(
        &self,
        caller: &Caller,
        after: Option<&Cursor>,
        size: usize,
    ) -> Result<Page<Store>, EngineError> {
        caller.require(Operation::ManageStores)?;
        let mut uow = self.store().begin_read().await?;
        let stores = uow.list_stores().await?;
        let key = |s: &Store| Cursor {
            at: None,
            id: s.store_id.clone(),
        };
        Ok(page_after(stores, key, after, size))
    }

    pub async fn get_program(&self, caller: &Caller) -> Result<Program, EngineError> {
        caller.require(Operation::ManageProgram)?;
        let mut uow = self.store().begin_read().await?;
        Ok(self.core.reference.program(uow.as_mut()).await?)
    }

    pub async fn get_campaign(
        &self,
        caller: &Caller,
        campaign_id: &str,
    ) -> Result<Campaign, EngineError> {
        caller.require(Operation::ManageCampaigns)?;
        let mut uow = self.store().begin_read().await?;
        Ok(uow
            .get_campaign(campaign_id, false)
            .await?
            .ok_or(DomainError::CampaignNotFound)?)
    }

    /// A page of campaigns, oldest first (the store's order: created_at, campaign_id).
    pub async fn list_campaigns(
        &self,
        caller: &Caller,
        after: Option<&Cursor>,
        size: usize,
    ) -> Result<Page<Campaign>, EngineError> {
        caller.require(Operation::ManageCampaigns)?;
        let mut uow = self.store().begin_read().await?;
        let campaigns = uow.list_campaigns().await?;
        let key = |c: &Campaign| Cursor {
            at: Some(c.created_at),
            id: c.campaign_id.clone(),
        };
        Ok(page_after(campaigns, key, after, size))
    }

    /// A page of a member's wallet, oldest first (issued_at, code): usable coupons (not expired
    /// as of now), or every coupon ever held. One member's coupons are a short list.
    pub async fn list_coupons(
        &self,
        caller: &Caller,
        member: &MemberRef,
        include_inactive: bool,
        after: Option<&Cursor>,
        size: usize,
    ) -> Result<Page<Coupon>, EngineError> {
        caller.require(Operation::ReadCoupons)?;
        let now = self.now();
        let mut uow = self.store().begin_read().await?;
        let row = members::resolve(uow.as_mut(), member, members::Access::Read)
            .await
            .map_err(from_failure)?;
        let mut coupons = uow.member_coupons(&row.member_id).await?;
        if !include_inactive {
            coupons.retain(|c| c.state == CouponState::Active && !c.is_expired(now));
        }
        let key = |c: &Coupon| Cursor {
            at: Some(c.issued_at),
            id: c.code.clone(),
        };
        Ok(page_after(coupons, key, after, size))
    }

    pub async fn get_coupon(&self, caller: &Caller, code: &str) -> Result<Coupon, EngineError> {
        caller.require(Operation::ReadCoupons)?;
        let mut uow = self.store().begin_read().await?;
        Ok(uow
            .get_coupon(code, false)
            .await?
            .ok_or(DomainError::Coupon {
                code: code.to_string(),
                reason: crate::domain::error::CouponReason::NotFound,
            })?)
    }
}
