//! The event feed on PostgreSQL (issue #22, migration 0014): the outbox part of the flush
//! statement, the relay that gives committed rows their public seq, and the feed's reads.
//!
//! Why a relay: `event_no` comes from a sequence drawn by concurrent writers (and replicas),
//! whose transactions commit in another order than they drew. A reader that took "after N"
//! from such numbers could pass a row still in flight and never see it. So rows are written
//! with no seq, and one relay at a time (a transaction-scoped advisory lock, shared by every
//! replica on the database) numbers the rows it sees committed, in `event_no` order, after the
//! highest seq given. Each numbering commits as a whole before the next can start, so seqs
//! appear in the order they are given: a reader never sees seq N+1 before seq N.

use chrono::{DateTime, Utc};
use sqlx::postgres::PgRow;

use super::{Cols, PgQuery, PgUnitOfWork, column};
use crate::domain::{
    event::{Event, EventAudit, EventFilter, ExpiringCoupon, ExpiringLot, NewEvent},
    ports::StoreResult,
};

/// The advisory lock of the relay ("omo ev" in ASCII): one numbering at a time.
const RELAY_LOCK: i64 = 0x6f6d_6f20_6576;

pub(super) const INSERT_EVENTS: &str = r#"
insert into events (event_id, type, occurred_at, member_id, data, dedupe_key)
select event_id, type, occurred_at, member_id, data::jsonb, dedupe_key
from unnest($1::text[], $2::text[], $3::timestamptz[], $4::text[], $5::text[], $6::text[])
    as e (event_id, type, occurred_at, member_id, data, dedupe_key)
on conflict (dedupe_key) where dedupe_key is not null do nothing"#;

/// The columns of `INSERT_EVENTS`.
pub(super) fn bind_events<'q>(query: PgQuery<'q>, events: &'q [NewEvent]) -> PgQuery<'q> {
    query
        .bind(column(events, |e| e.event_id.as_str())) // $1
        .bind(column(events, |e| e.event_type.as_str())) // $2
        .bind(column(events, |e| e.occurred_at)) // $3
        .bind(column(events, |e| e.member_id.as_str())) // $4
        .bind(column(events, NewEvent::data_json)) // $5
        .bind(column(events, |e| e.dedupe_key.as_deref())) // $6
}

fn event_from_row(row: &PgRow) -> StoreResult<Event> {
    let c = Cols::new(row, "events", "event_id");
    Ok(Event {
        seq: c.get("seq")?,
        event_id: c.get("event_id")?,
        event_type: c.get("type")?,
        occurred_at: c.get("occurred_at")?,
        member_id: c.get("member_id")?,
        data: c.json("data")?,
    })
}

impl PgUnitOfWork {
    /// The relay's step, in the caller's (read committed) transaction.
    pub(super) async fn number_events(&mut self, limit: i64) -> StoreResult<i64> {
        let query = sqlx::query("select pg_try_advisory_xact_lock($1) as locked").bind(RELAY_LOCK); // $1
        let locked: bool = self.fetch_value(query, "events", "locked").await?;
        if locked {
            let query = sqlx::query(
                r#"
with last as (
    select coalesce(max(seq), 0) as seq
    from events
),
todo as (
    select event_no, row_number() over (order by event_no) as n
    from events
    where seq is null
    order by event_no
    limit $1
)
update events e
set seq = last.seq + todo.n
from todo, last
where e.event_no = todo.event_no"#,
            )
            .bind(limit); // $1
            self.run(query).await?;
        }
        let query = sqlx::query(
            r#"
select coalesce(max(seq), 0) as seq
from events"#,
        );
        self.fetch_value(query, "events", "seq").await
    }

    pub(super) async fn event_audit(&mut self) -> StoreResult<EventAudit> {
        let query = sqlx::query(
            r#"
with first as (
    select min((data ->> 'transaction_id')::bigint) as id
    from events
    where type = 'order.captured'
)
select
    (select count(seq) from events) as numbered,
    (select coalesce(min(seq), 0) from events) as min_seq,
    (select coalesce(max(seq), 0) from events) as max_seq,
    (select count(*) from transactions, first
     where kind in ('sale', 'capture') and transaction_id >= first.id) as captures_journalled,
    (select count(*) from events where type = 'order.captured') as captures_reported"#,
        );
        let row = query
            .fetch_one(&mut *self.tx)
            .await
            .map_err(super::map_err)?;
        let c = Cols::new(&row, "events", "numbered");
        Ok(EventAudit {
            numbered: c.get("numbered")?,
            min_seq: c.get("min_seq")?,
            max_seq: c.get("max_seq")?,
            captures_journalled: c.get("captures_journalled")?,
            captures_reported: c.get("captures_reported")?,
        })
    }

    /// Live lots expiring in (from, until] whose reminder is not in the outbox yet.
    pub(super) async fn expiring_lots(
        &mut self,
        from: DateTime<Utc>,
        until: DateTime<Utc>,
        limit: i64,
    ) -> StoreResult<Vec<ExpiringLot>> {
        let query = sqlx::query(
            r#"
select lot_id, member_id, remaining_points, expires_at
from point_lots l
where l.remaining_points > l.held_points
    and l.state = 'available'
    and l.expires_at > $1
    and l.expires_at <= $2
    and not exists (
        select 1
        from events e
        where e.dedupe_key = 'points.expiring:' || l.lot_id
    )
order by l.expires_at, l.lot_id
limit $3"#,
        )
        .bind(from) // $1
        .bind(until) // $2
        .bind(limit); // $3
        self.fetch_all(query, |row| {
            let c = Cols::new(row, "point_lots", "lot_id");
            Ok(ExpiringLot {
                lot_id: c.get("lot_id")?,
                member_id: c.get("member_id")?,
                points: c.get("remaining_points")?,
                expires_at: c.get("expires_at")?,
            })
        })
        .await
    }

    /// Active coupons ending in (from, until] whose reminder is not in the outbox yet.
    pub(super) async fn expiring_coupons(
        &mut self,
        from: DateTime<Utc>,
        until: DateTime<Utc>,
        limit: i64,
    ) -> StoreResult<Vec<ExpiringCoupon>> {
        let query = sqlx::query(
            r#"
select code, campaign_id, member_id, valid_until
from coupons c
where c.state = 'active'
    and c.valid_until > $1
    and c.valid_until <= $2
    and not exists (
        select 1
        from events e
        where e.dedupe_key = 'coupon.expiring:' || c.code
    )
order by c.valid_until, c.code
limit $3"#,
        )
        .bind(from) // $1
        .bind(until) // $2
        .bind(limit); // $3
        self.fetch_all(query, |row| {
            let c = Cols::new(row, "coupons", "code");
            Ok(ExpiringCoupon {
                code: c.get("code")?,
                campaign_id: c.get("campaign_id")?,
                member_id: c.get("member_id")?,
                expires_at: c.get("valid_until")?,
            })
        })
        .await
    }

    pub(super) async fn list_events(&mut self, filter: &EventFilter) -> StoreResult<Vec<Event>> {
        let query = sqlx::query(
            r#"
select seq, event_id, type, occurred_at, member_id, data::text as data
from events
where seq > $1
    and ($2 = '' or member_id = $2)
    and (cardinality($3::text[]) = 0 or type = any($3))
    and ($5 = 0 or seq <= $5)
order by seq
limit $4"#,
        )
        .bind(filter.after_seq) // $1
        .bind(&filter.member_id) // $2
        .bind(&filter.types) // $3
        .bind(filter.limit) // $4
        .bind(filter.until_seq); // $5
        self.fetch_all(query, event_from_row).await
    }
}
