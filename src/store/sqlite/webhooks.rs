//! Webhooks and their deliveries on SQLite (issue #22, migration 0014). One writer at a time:
//! a claim is a plain update of the due rows (nobody else can be claiming them meanwhile).

use rusqlite::Row;

use super::{Cols, SqliteUnitOfWork};
use crate::domain::{
    ports::StoreResult,
    webhook::{Delivery, DeliveryState, Webhook, WebhookRecord},
};
use crate::store::to_json;

const WEBHOOK_COLUMNS: &str = "webhook_id, url, types, enabled, secret, request_id, request_hash, \
     cursor_seq, created_at, updated_at";

fn webhook_from_row(row: &Row<'_>) -> StoreResult<WebhookRecord> {
    let c = Cols::new(row, "webhooks", "webhook_id");
    Ok(WebhookRecord {
        webhook: Webhook {
            webhook_id: c.get("webhook_id")?,
            url: c.get("url")?,
            types: c.json("types")?,
            enabled: c.get("enabled")?,
            created_at: c.instant("created_at")?,
            updated_at: c.instant("updated_at")?,
        },
        secret: c.get("secret")?,
        request_id: c.get("request_id")?,
        request_hash: c.get("request_hash")?,
        cursor_seq: c.get("cursor_seq")?,
    })
}

fn delivery_from_row(row: &Row<'_>) -> StoreResult<Delivery> {
    let c = Cols::new(row, "webhook_deliveries", "event_id");
    Ok(Delivery {
        webhook_id: c.get("webhook_id")?,
        seq: c.get("seq")?,
        event_id: c.get("event_id")?,
        state: c.named("state", DeliveryState::parse)?,
        attempts: c.get("attempts")?,
        last_status_code: c.get("last_status_code")?,
        next_attempt_at: c.instant("next_attempt_at")?,
        created_at: c.instant("created_at")?,
    })
}

impl SqliteUnitOfWork {
    pub(super) fn insert_webhook(&self, record: &WebhookRecord) -> StoreResult<bool> {
        let w = &record.webhook;
        let query = self
            .query(
                r"
                insert into webhooks (webhook_id, url, types, enabled, secret, request_id,
                    request_hash, cursor_seq, created_at, updated_at)
                values (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)
                on conflict (webhook_id) do nothing
                ",
            )?
            .bind(&w.webhook_id) // ?1
            .bind(&w.url) // ?2
            .bind(to_json(&w.types)?) // ?3
            .bind(w.enabled) // ?4
            .bind(&record.secret) // ?5
            .bind(&record.request_id) // ?6
            .bind(&record.request_hash) // ?7
            .bind(record.cursor_seq) // ?8
            .bind(w.created_at.timestamp_micros()) // ?9
            .bind(w.updated_at.timestamp_micros()); // ?10
        Ok(query.execute()? == 1)
    }

    pub(super) fn get_webhook(&self, webhook_id: &str) -> StoreResult<Option<WebhookRecord>> {
        let sql = format!("select {WEBHOOK_COLUMNS} from webhooks where webhook_id = ?1");
        let query = self.query(&sql)?.bind(webhook_id); // ?1
        query.fetch_optional(webhook_from_row)
    }

    pub(super) fn list_webhooks(&self) -> StoreResult<Vec<WebhookRecord>> {
        let sql = format!("select {WEBHOOK_COLUMNS} from webhooks order by webhook_id");
        self.query(&sql)?.fetch_all(webhook_from_row)
    }

    pub(super) fn update_webhook(&self, record: &WebhookRecord) -> StoreResult<()> {
        let w = &record.webhook;
        let query = self
            .query(
                r"
                update webhooks
                set url = ?2, types = ?3, enabled = ?4, cursor_seq = ?5, updated_at = ?6
                where webhook_id = ?1
                ",
            )?
            .bind(&w.webhook_id) // ?1
            .bind(&w.url) // ?2
            .bind(to_json(&w.types)?) // ?3
            .bind(w.enabled) // ?4
            .bind(record.cursor_seq) // ?5
            .bind(w.updated_at.timestamp_micros()); // ?6
        self.run(query)
    }

    pub(super) fn insert_deliveries(&self, deliveries: &[Delivery]) -> StoreResult<()> {
        for d in deliveries {
            let query = self
                .query(
                    r"
                    insert into webhook_deliveries (webhook_id, seq, event_id, state, attempts,
                        last_status_code, next_attempt_at, created_at)
                    values (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
                    on conflict (webhook_id, seq) do nothing
                    ",
                )?
                .bind(&d.webhook_id) // ?1
                .bind(d.seq) // ?2
                .bind(&d.event_id) // ?3
                .bind(d.state.as_str()) // ?4
                .bind(d.attempts) // ?5
                .bind(d.last_status_code) // ?6
                .bind(d.next_attempt_at.timestamp_micros()) // ?7
                .bind(d.created_at.timestamp_micros()); // ?8
            self.run(query)?;
        }
        Ok(())
    }

    pub(super) fn claim_deliveries(
        &self,
        now: chrono::DateTime<chrono::Utc>,
        lease_until: chrono::DateTime<chrono::Utc>,
        limit: i64,
    ) -> StoreResult<Vec<Delivery>> {
        let query = self
            .query(
                r"
                update webhook_deliveries
                set next_attempt_at = ?2
                where (webhook_id, seq) in (
                    select webhook_id, seq
                    from webhook_deliveries
                    where state = 'PENDING'
                      and next_attempt_at <= ?1
                    order by next_attempt_at, seq
                    limit ?3
                )
                returning webhook_id, seq, event_id, state, attempts, last_status_code,
                    next_attempt_at, created_at
                ",
            )?
            .bind(now.timestamp_micros()) // ?1
            .bind(lease_until.timestamp_micros()) // ?2
            .bind(limit); // ?3
        query.fetch_all(delivery_from_row)
    }

    pub(super) fn oldest_pending_delivery(
        &self,
    ) -> StoreResult<Option<chrono::DateTime<chrono::Utc>>> {
        let query = self.query(
            r"
            select min(created_at) as oldest
            from webhook_deliveries
            where state = 'PENDING'
            ",
        )?;
        query.fetch_one(|row| Cols::new(row, "webhook_deliveries", "oldest").opt_instant("oldest"))
    }

    pub(super) fn save_delivery(&self, d: &Delivery) -> StoreResult<()> {
        let query = self
            .query(
                r"
                update webhook_deliveries
                set state = ?3, attempts = ?4, last_status_code = ?5, next_attempt_at = ?6
                where webhook_id = ?1
                  and seq = ?2
                ",
            )?
            .bind(&d.webhook_id) // ?1
            .bind(d.seq) // ?2
            .bind(d.state.as_str()) // ?3
            .bind(d.attempts) // ?4
            .bind(d.last_status_code) // ?5
            .bind(d.next_attempt_at.timestamp_micros()); // ?6
        self.run(query)
    }

    pub(super) fn list_deliveries(
        &self,
        webhook_id: &str,
        state: Option<DeliveryState>,
        after_seq: i64,
        limit: i64,
    ) -> StoreResult<Vec<Delivery>> {
        let query = self
            .query(
                r"
                select webhook_id, seq, event_id, state, attempts, last_status_code,
                    next_attempt_at, created_at
                from webhook_deliveries
                where webhook_id = ?1
                  and (?2 = '' or state = ?2)
                  and seq > ?3
                order by seq
                limit ?4
                ",
            )?
            .bind(webhook_id) // ?1
            .bind(state.map_or("", DeliveryState::as_str)) // ?2
            .bind(after_seq) // ?3
            .bind(limit); // ?4
        query.fetch_all(delivery_from_row)
    }
}
