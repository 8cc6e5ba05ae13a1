//! Campaigns and the coupons they issue: the reads, and the row writes of a flush.

use rusqlite::Row;

use super::{Cols, Query, SqliteUnitOfWork, col};
use crate::domain::{
    coupon::{Campaign, Coupon, CouponState},
    ports::StoreResult,
};
use crate::store::to_json;

/// The columns of a campaign, for the queries below.
macro_rules! select_campaigns {
    () => {
        r"
            select campaign_id, body
            from campaigns"
    };
}

/// The columns of a coupon, for the queries below.
macro_rules! select_coupons {
    () => {
        r"
            select code, campaign_id, variant_id, member_id, state, valid_from, valid_until,
                   source, order_id, redeemed_at, issued_at, discount
            from coupons"
    };
}

/// `lock` needs nothing here: `BEGIN IMMEDIATE` already holds the database's write lock.
pub(super) fn get_campaign(
    uow: &SqliteUnitOfWork,
    campaign_id: &str,
    _lock: bool,
) -> StoreResult<Option<Campaign>> {
    let query = uow
        .query(concat!(
            select_campaigns!(),
            r"
            where campaign_id = ?1
            "
        ))?
        .bind(campaign_id); // ?1
    uow.fetch_optional(query, campaign_from_row)
}

pub(super) fn campaign_by_public_code(
    uow: &SqliteUnitOfWork,
    public_code: &str,
) -> StoreResult<Option<Campaign>> {
    let query = uow
        .query(concat!(
            select_campaigns!(),
            r"
            where public_code = ?1
            "
        ))?
        .bind(public_code); // ?1
    uow.fetch_optional(query, campaign_from_row)
}

pub(super) fn list_campaigns(uow: &SqliteUnitOfWork) -> StoreResult<Vec<Campaign>> {
    let query = uow.query(concat!(
        select_campaigns!(),
        r"
        order by created_at, campaign_id
        "
    ))?;
    uow.fetch_all(query, campaign_from_row)
}

pub(super) fn count_coupons(
    uow: &SqliteUnitOfWork,
    campaign_id: &str,
    member_id: Option<&str>,
) -> StoreResult<i64> {
    uow.query(
        r"
        select count(*)
        from coupons
        where campaign_id = ?1
          and (?2 is null or member_id = ?2)
        ",
    )?
    .bind(campaign_id) // ?1
    .bind(member_id) // ?2
    .fetch_one(|row| col(row, 0))
}

/// `lock` needs nothing here: `BEGIN IMMEDIATE` already holds the database's write lock.
pub(super) fn get_coupon(
    uow: &SqliteUnitOfWork,
    code: &str,
    _lock: bool,
) -> StoreResult<Option<Coupon>> {
    let query = uow
        .query(concat!(
            select_coupons!(),
            r"
            where code = ?1
            "
        ))?
        .bind(code); // ?1
    uow.fetch_optional(query, coupon_from_row)
}

pub(super) fn member_coupons(uow: &SqliteUnitOfWork, member_id: &str) -> StoreResult<Vec<Coupon>> {
    let query = uow
        .query(concat!(
            select_coupons!(),
            r"
            where member_id = ?1
            order by issued_at, code
            "
        ))?
        .bind(member_id); // ?1
    uow.fetch_all(query, coupon_from_row)
}

pub(super) fn order_coupons(uow: &SqliteUnitOfWork, order_id: &str) -> StoreResult<Vec<Coupon>> {
    let query = uow
        .query(concat!(
            select_coupons!(),
            r"
            where order_id = ?1
              and order_id <> ''
            order by code
            "
        ))?
        .bind(order_id); // ?1
    uow.fetch_all(query, coupon_from_row)
}

impl SqliteUnitOfWork {
    pub(super) fn insert_campaign(&self, campaign: &Campaign) -> StoreResult<()> {
        let query = self
            .query(
                r"
                insert into campaigns (campaign_id, public_code, body, created_at)
                values (?1, ?2, ?3, ?4)
                ",
            )?
            .bind(&campaign.campaign_id) // ?1
            .bind(campaign.public_code.as_deref()) // ?2
            .bind(to_json(campaign)?) // ?3
            .bind(campaign.created_at.timestamp_micros()); // ?4
        self.run(query)
    }

    pub(super) fn update_campaign(&self, campaign: &Campaign) -> StoreResult<()> {
        let query = self
            .query(
                r"
                update campaigns
                set body = ?2
                where campaign_id = ?1
                ",
            )?
            .bind(&campaign.campaign_id) // ?1
            .bind(to_json(campaign)?); // ?2
        self.run(query)
    }

    pub(super) fn move_coupons(&self, from_member_id: &str, to_member_id: &str) -> StoreResult<()> {
        let sql = r"
            update coupons
            set member_id = ?1
            where member_id = ?2
            ";
        self.move_member_rows(sql, from_member_id, to_member_id)
    }

    /// Every column of a coupon, `code` first.
    pub(super) fn coupon_query<'c>(&'c self, sql: &str, coupon: &Coupon) -> StoreResult<Query<'c>> {
        Ok(self
            .query(sql)?
            .bind(&coupon.code) // ?1
            .bind(&coupon.campaign_id) // ?2
            .bind(&coupon.variant_id) // ?3
            .bind(&coupon.member_id) // ?4
            .bind(coupon.state.as_str()) // ?5
            .bind(coupon.valid_from.timestamp_micros()) // ?6
            .bind(coupon.valid_until.map(|at| at.timestamp_micros())) // ?7
            .bind(&coupon.source) // ?8
            .bind(&coupon.order_id) // ?9
            .bind(coupon.redeemed_at.map(|at| at.timestamp_micros())) // ?10
            .bind(coupon.issued_at.timestamp_micros()) // ?11
            .bind(coupon.discount.map(|discount| discount.to_string()))) // ?12
    }

    pub(super) fn insert_coupon_row(&self, coupon: &Coupon) -> StoreResult<()> {
        let query = self.coupon_query(
            r"
            insert into coupons (
                code, campaign_id, variant_id, member_id, state, valid_from, valid_until,
                source, order_id, redeemed_at, issued_at, discount
            )
            values (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)
            ",
            coupon,
        )?;
        self.run(query)
    }

    pub(super) fn update_coupon_row(&self, coupon: &Coupon) -> StoreResult<usize> {
        self.coupon_query(
            r"
            update coupons
            set campaign_id = ?2,
                variant_id = ?3,
                member_id = ?4,
                state = ?5,
                valid_from = ?6,
                valid_until = ?7,
                source = ?8,
                order_id = ?9,
                redeemed_at = ?10,
                issued_at = ?11,
                discount = ?12
            where code = ?1
            ",
            coupon,
        )?
        .execute()
    }
}

fn campaign_from_row(row: &Row<'_>) -> StoreResult<Campaign> {
    Cols::new(row, "campaigns", "campaign_id").json("body")
}

fn coupon_from_row(row: &Row<'_>) -> StoreResult<Coupon> {
    let c = Cols::new(row, "coupons", "code");
    Ok(Coupon {
        code: c.get("code")?,
        campaign_id: c.get("campaign_id")?,
        variant_id: c.get("variant_id")?,
        member_id: c.get("member_id")?,
        state: c.named("state", CouponState::parse)?,
        valid_from: c.instant("valid_from")?,
        valid_until: c.opt_instant("valid_until")?,
        source: c.get("source")?,
        order_id: c.get("order_id")?,
        redeemed_at: c.opt_instant("redeemed_at")?,
        issued_at: c.instant("issued_at")?,
        discount: c.opt_money("discount")?,
    })
}
