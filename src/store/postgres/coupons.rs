//! Campaigns and the coupons they issue: the reads, and the statements a flush writes them with.

use sqlx::postgres::PgRow;

use super::{Cols, PgQuery, PgUnitOfWork, column};
use crate::domain::{
    coupon::{Campaign, Coupon, CouponState},
    money::Money,
    ports::StoreResult,
};
use crate::store::to_json;

/// The columns of a campaign, for the campaign queries below.
macro_rules! select_campaigns {
    () => {
        r#"
select campaign_id, body::text as body
from campaigns"#
    };
}

select_and_lock!(
    GET_CAMPAIGN,
    GET_CAMPAIGN_LOCKED,
    concat!(select_campaigns!(), "\nwhere campaign_id = $1")
);

const CAMPAIGN_BY_PUBLIC_CODE: &str = concat!(select_campaigns!(), "\nwhere public_code = $1");

const LIST_CAMPAIGNS: &str = concat!(select_campaigns!(), "\norder by created_at, campaign_id");

select_and_lock!(
    GET_COUPON,
    GET_COUPON_LOCKED,
    concat!(select_coupons!(), "\nwhere code = $1")
);

const MEMBER_COUPONS: &str = concat!(
    select_coupons!(),
    r#"
where member_id = $1
order by issued_at, code"#
);

const ORDER_COUPONS: &str = concat!(
    select_coupons!(),
    r#"
where order_id = $1
order by code"#
);

pub(super) const INSERT_COUPONS: &str = r#"
insert into coupons (code, campaign_id, variant_id, member_id, state, valid_from, valid_until,
    source, order_id, redeemed_at, issued_at, discount)
select *
from unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::timestamptz[],
    $7::timestamptz[], $8::text[], $9::text[], $10::timestamptz[], $11::timestamptz[],
    $12::numeric[])"#;

pub(super) const UPDATE_COUPONS: &str = r#"
update coupons p
set campaign_id = c.campaign_id,
    variant_id = c.variant_id,
    member_id = c.member_id,
    state = c.state,
    valid_from = c.valid_from,
    valid_until = c.valid_until,
    source = c.source,
    order_id = c.order_id,
    redeemed_at = c.redeemed_at,
    issued_at = c.issued_at,
    discount = c.discount
from unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::timestamptz[],
    $7::timestamptz[], $8::text[], $9::text[], $10::timestamptz[], $11::timestamptz[],
    $12::numeric[])
    as c (code, campaign_id, variant_id, member_id, state, valid_from, valid_until, source,
        order_id, redeemed_at, issued_at, discount)
where p.code = c.code"#;

pub(super) async fn get_campaign(
    uow: &mut PgUnitOfWork,
    campaign_id: &str,
    lock: bool,
) -> StoreResult<Option<Campaign>> {
    let sql = if lock {
        GET_CAMPAIGN_LOCKED
    } else {
        GET_CAMPAIGN
    };
    let query = sqlx::query(sql).bind(campaign_id); // $1
    uow.fetch_optional(query, campaign_from_row).await
}

pub(super) async fn campaign_by_public_code(
    uow: &mut PgUnitOfWork,
    public_code: &str,
) -> StoreResult<Option<Campaign>> {
    let query = sqlx::query(CAMPAIGN_BY_PUBLIC_CODE).bind(public_code); // $1
    uow.fetch_optional(query, campaign_from_row).await
}

pub(super) async fn list_campaigns(uow: &mut PgUnitOfWork) -> StoreResult<Vec<Campaign>> {
    uow.fetch_all(sqlx::query(LIST_CAMPAIGNS), campaign_from_row)
        .await
}

pub(super) async fn count_coupons(
    uow: &mut PgUnitOfWork,
    campaign_id: &str,
    member_id: Option<&str>,
) -> StoreResult<i64> {
    let query = match member_id {
        None => sqlx::query(
            r#"
select count(*) as issued
from coupons
where campaign_id = $1"#,
        )
        .bind(campaign_id), // $1
        Some(member_id) => sqlx::query(
            r#"
select count(*) as issued
from coupons
where campaign_id = $1
    and member_id = $2"#,
        )
        .bind(campaign_id) // $1
        .bind(member_id), // $2
    };
    uow.fetch_value(query, "coupons", "issued").await
}

pub(super) async fn get_coupon(
    uow: &mut PgUnitOfWork,
    code: &str,
    lock: bool,
) -> StoreResult<Option<Coupon>> {
    let sql = if lock { GET_COUPON_LOCKED } else { GET_COUPON };
    let query = sqlx::query(sql).bind(code); // $1
    uow.fetch_optional(query, coupon_from_row).await
}

pub(super) async fn member_coupons(
    uow: &mut PgUnitOfWork,
    member_id: &str,
) -> StoreResult<Vec<Coupon>> {
    let query = sqlx::query(MEMBER_COUPONS).bind(member_id); // $1
    uow.fetch_all(query, coupon_from_row).await
}

pub(super) async fn order_coupons(
    uow: &mut PgUnitOfWork,
    order_id: &str,
) -> StoreResult<Vec<Coupon>> {
    let query = sqlx::query(ORDER_COUPONS).bind(order_id); // $1
    uow.fetch_all(query, coupon_from_row).await
}

impl PgUnitOfWork {
    pub(super) async fn insert_campaign(&mut self, campaign: &Campaign) -> StoreResult<()> {
        let query = sqlx::query(
            r#"
insert into campaigns (campaign_id, public_code, body, created_at)
values ($1, $2, $3::jsonb, $4)"#,
        )
        .bind(&campaign.campaign_id) // $1
        .bind(&campaign.public_code) // $2
        .bind(to_json(campaign)?) // $3
        .bind(campaign.created_at); // $4
        self.run(query).await
    }

    pub(super) async fn update_campaign(&mut self, campaign: &Campaign) -> StoreResult<()> {
        let query = sqlx::query(
            r#"
update campaigns
set body = $2::jsonb
where campaign_id = $1"#,
        )
        .bind(&campaign.campaign_id) // $1
        .bind(to_json(campaign)?); // $2
        self.run(query).await
    }

    pub(super) async fn move_coupons(
        &mut self,
        from_member_id: &str,
        to_member_id: &str,
    ) -> StoreResult<()> {
        let sql = r#"
update coupons
set member_id = $2
where member_id = $1"#;
        self.move_member_rows(sql, from_member_id, to_member_id)
            .await
    }
}

fn campaign_from_row(row: &PgRow) -> StoreResult<Campaign> {
    Cols::new(row, "campaigns", "campaign_id").json("body")
}

pub(super) fn coupon_from_row(row: &PgRow) -> StoreResult<Coupon> {
    let c = Cols::new(row, "coupons", "code");
    Ok(Coupon {
        code: c.get("code")?,
        campaign_id: c.get("campaign_id")?,
        variant_id: c.get("variant_id")?,
        member_id: c.get("member_id")?,
        state: c.parse("state", CouponState::parse)?,
        valid_from: c.get("valid_from")?,
        valid_until: c.get("valid_until")?,
        source: c.get("source")?,
        order_id: c.get("order_id")?,
        redeemed_at: c.get("redeemed_at")?,
        issued_at: c.get("issued_at")?,
        discount: c.opt_money("discount")?,
    })
}

/// The columns of `INSERT_COUPONS` and `UPDATE_COUPONS`.
pub(super) fn bind_coupons<'q>(query: PgQuery<'q>, coupons: &'q [Coupon]) -> PgQuery<'q> {
    query
        .bind(column(coupons, |c| c.code.as_str())) // $1
        .bind(column(coupons, |c| c.campaign_id.as_str())) // $2
        .bind(column(coupons, |c| c.variant_id.as_str())) // $3
        .bind(column(coupons, |c| c.member_id.as_str())) // $4
        .bind(column(coupons, |c| c.state.as_str())) // $5
        .bind(column(coupons, |c| c.valid_from)) // $6
        .bind(column(coupons, |c| c.valid_until)) // $7
        .bind(column(coupons, |c| c.source.as_str())) // $8
        .bind(column(coupons, |c| c.order_id.as_str())) // $9
        .bind(column(coupons, |c| c.redeemed_at)) // $10
        .bind(column(coupons, |c| c.issued_at)) // $11
        .bind(column(coupons, |c| c.discount.map(Money::amount))) // $12
}
