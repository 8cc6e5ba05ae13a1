//! The event feed on SQLite (issue #22, migration 0014): the outbox rows of a flush, and the
//! feed's reads. One writer at a time holds the database's write lock until it commits, so a
//! row given the next seq as it is inserted is numbered in commit order: no relay needed.

use rusqlite::Row;

use super::{Cols, SqliteUnitOfWork};
use crate::domain::{
    event::{Event, EventAudit, EventFilter, ExpiringCoupon, ExpiringLot, NewEvent},
    ports::StoreResult,
};
use crate::store::to_json;

fn event_from_row(row: &Row<'_>) -> StoreResult<Event> {
    let c = Cols::new(row, "events", "event_id");
    Ok(Event {
        seq: c.get("seq")?,
        event_id: c.get("event_id")?,
        event_type: c.get("type")?,
        occurred_at: c.instant("occurred_at")?,
        member_id: c.get("member_id")?,
        data: c.json("data")?,
    })
}

impl SqliteUnitOfWork {
    pub(super) fn insert_event_rows(&self, events: &[NewEvent]) -> StoreResult<()> {
        for event in events {
            let query = self
                .query(
                    r"
                    insert into events (seq, event_id, type, occurred_at, member_id, data,
                        dedupe_key)
                    values ((select coalesce(max(seq), 0) + 1 from events), ?1, ?2, ?3, ?4, ?5,
                        ?6)
                    on conflict (dedupe_key) where dedupe_key is not null do nothing
                    ",
                )?
                .bind(&event.event_id) // ?1
                .bind(event.event_type.as_str()) // ?2
                .bind(event.occurred_at.timestamp_micros()) // ?3
                .bind(&event.member_id) // ?4
                .bind(to_json(&event.data)?) // ?5
                .bind(event.dedupe_key.as_deref()); // ?6
            self.run(query)?;
        }
        Ok(())
    }

    /// Every row is numbered as it is inserted: the highest seq is all there is to say.
    pub(super) fn last_event_seq(&self) -> StoreResult<i64> {
        let query = self.query(
            r"
            select coalesce(max(seq), 0) as seq
            from events
            ",
        )?;
        query.fetch_one(|row| Cols::new(row, "events", "seq").get("seq"))
    }

    pub(super) fn event_audit(&self) -> StoreResult<EventAudit> {
        let query = self.query(
            r"
            with first as (
                select min(cast(json_extract(data, '$.transaction_id') as integer)) as id
                from events
                where type = 'order.captured'
            )
            select
                (select count(seq) from events) as numbered,
                (select coalesce(min(seq), 0) from events) as min_seq,
                (select coalesce(max(seq), 0) from events) as max_seq,
                (select count(*) from transactions, first
                 where kind in ('sale', 'capture') and transaction_id >= first.id)
                    as captures_journalled,
                (select count(*) from events where type = 'order.captured')
                    as captures_reported
            ",
        )?;
        query.fetch_one(|row| {
            let c = Cols::new(row, "events", "numbered");
            Ok(EventAudit {
                numbered: c.get("numbered")?,
                min_seq: c.get("min_seq")?,
                max_seq: c.get("max_seq")?,
                captures_journalled: c.get("captures_journalled")?,
                captures_reported: c.get("captures_reported")?,
            })
        })
    }

    /// Live lots expiring in (from, until] whose reminder is not in the outbox yet.
    pub(super) fn expiring_lots(
        &self,
        from: chrono::DateTime<chrono::Utc>,
        until: chrono::DateTime<chrono::Utc>,
        limit: i64,
    ) -> StoreResult<Vec<ExpiringLot>> {
        let query = self
            .query(
                r"
                select lot_id, member_id, remaining_points, expires_at
                from point_lots l
                where l.remaining_points > l.held_points
                  and l.state = 'available'
                  and l.expires_at > ?1
                  and l.expires_at <= ?2
                  and not exists (
                      select 1
                      from events e
                      where e.dedupe_key = 'points.expiring:' || l.lot_id
                  )
                order by l.expires_at, l.lot_id
                limit ?3
                ",
            )?
            .bind(from.timestamp_micros()) // ?1
            .bind(until.timestamp_micros()) // ?2
            .bind(limit); // ?3
        query.fetch_all(|row| {
            let c = Cols::new(row, "point_lots", "lot_id");
            Ok(ExpiringLot {
                lot_id: c.get("lot_id")?,
                member_id: c.get("member_id")?,
                points: c.get("remaining_points")?,
                expires_at: c.instant("expires_at")?,
            })
        })
    }

    /// Active coupons ending in (from, until] whose reminder is not in the outbox yet.
    pub(super) fn expiring_coupons(
        &self,
        from: chrono::DateTime<chrono::Utc>,
        until: chrono::DateTime<chrono::Utc>,
        limit: i64,
    ) -> StoreResult<Vec<ExpiringCoupon>> {
        let query = self
            .query(
                r"
                select code, campaign_id, member_id, valid_until
                from coupons c
                where c.state = 'active'
                  and c.valid_until > ?1
                  and c.valid_until <= ?2
                  and not exists (
                      select 1
                      from events e
                      where e.dedupe_key = 'coupon.expiring:' || c.code
                  )
                order by c.valid_until, c.code
                limit ?3
                ",
            )?
            .bind(from.timestamp_micros()) // ?1
            .bind(until.timestamp_micros()) // ?2
            .bind(limit); // ?3
        query.fetch_all(|row| {
            let c = Cols::new(row, "coupons", "code");
            Ok(ExpiringCoupon {
                code: c.get("code")?,
                campaign_id: c.get("campaign_id")?,
                member_id: c.get("member_id")?,
                expires_at: c.instant("valid_until")?,
            })
        })
    }

    pub(super) fn list_events(&self, filter: &EventFilter) -> StoreResult<Vec<Event>> {
        let query = self
            .query(
                r"
                select seq, event_id, type, occurred_at, member_id, data
                from events
                where seq > ?1
                  and (?2 = '' or member_id = ?2)
                  and (?3 = '[]' or type in (select value from json_each(?3)))
                  and (?5 = 0 or seq <= ?5)
                order by seq
                limit ?4
                ",
            )?
            .bind(filter.after_seq) // ?1
            .bind(&filter.member_id) // ?2
            .bind(to_json(&filter.types)?) // ?3
            .bind(filter.limit) // ?4
            .bind(filter.until_seq); // ?5
        query.fetch_all(event_from_row)
    }
}
