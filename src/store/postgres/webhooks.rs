//! Webhooks and their deliveries on PostgreSQL (issue #22, migration 0014). Replicas share the
//! work: planning a webhook's deliveries holds its row's lock, and a claim of due attempts
//! skips rows another worker has locked, then moves their next attempt a lease ahead.

use chrono::{DateTime, Utc};
use sqlx::postgres::PgRow;

use super::{Cols, PgUnitOfWork};
use crate::domain::{
    ports::StoreResult,
    webhook::{Delivery, DeliveryState, Webhook, WebhookRecord},
};
use crate::store::to_json;

const DELIVERY_COLUMNS: &str =
    "webhook_id, seq, event_id, state, attempts, last_status_code, next_attempt_at, created_at";

fn webhook_from_row(row: &PgRow) -> StoreResult<WebhookRecord> {
    let c = Cols::new(row, "webhooks", "webhook_id");
    Ok(WebhookRecord {
        webhook: Webhook {
            webhook_id: c.get("webhook_id")?,
            url: c.get("url")?,
            types: c.json("types")?,
            enabled: c.get("enabled")?,
            created_at: c.get("created_at")?,
            updated_at: c.get("updated_at")?,
        },
        secret: c.get("secret")?,
        request_id: c.get("request_id")?,
        request_hash: c.get("request_hash")?,
        cursor_seq: c.get("cursor_seq")?,
    })
}

fn delivery_from_row(row: &PgRow) -> StoreResult<Delivery> {
    let c = Cols::new(row, "webhook_deliveries", "event_id");
    Ok(Delivery {
        webhook_id: c.get("webhook_id")?,
        seq: c.get("seq")?,
        event_id: c.get("event_id")?,
        state: c.parse("state", DeliveryState::parse)?,
        attempts: c.get("attempts")?,
        last_status_code: c.get("last_status_code")?,
        next_attempt_at: c.get("next_attempt_at")?,
        created_at: c.get("created_at")?,
    })
}

impl PgUnitOfWork {
    pub(super) async fn insert_webhook(&mut self, record: &WebhookRecord) -> StoreResult<bool> {
        let w = &record.webhook;
        let query = sqlx::query(
            r#"
insert into webhooks (webhook_id, url, types, enabled, secret, request_id, request_hash,
    cursor_seq, created_at, updated_at)
values ($1, $2, $3::jsonb, $4, $5, $6, $7, $8, $9, $10)
on conflict (webhook_id) do nothing"#,
        )
        .bind(&w.webhook_id) // $1
        .bind(&w.url) // $2
        .bind(to_json(&w.types)?) // $3
        .bind(w.enabled) // $4
        .bind(&record.secret) // $5
        .bind(&record.request_id) // $6
        .bind(&record.request_hash) // $7
        .bind(record.cursor_seq) // $8
        .bind(w.created_at) // $9
        .bind(w.updated_at); // $10
        Ok(self.run_counted(query).await? == 1)
    }

    pub(super) async fn get_webhook(
        &mut self,
        webhook_id: &str,
        lock: bool,
    ) -> StoreResult<Option<WebhookRecord>> {
        let sql = if lock {
            r#"
select webhook_id, url, types::text as types, enabled, secret, request_id, request_hash,
    cursor_seq, created_at, updated_at
from webhooks
where webhook_id = $1
for update"#
        } else {
            r#"
select webhook_id, url, types::text as types, enabled, secret, request_id, request_hash,
    cursor_seq, created_at, updated_at
from webhooks
where webhook_id = $1"#
        };
        let query = sqlx::query(sql).bind(webhook_id); // $1
        self.fetch_optional(query, webhook_from_row).await
    }

    pub(super) async fn list_webhooks(&mut self) -> StoreResult<Vec<WebhookRecord>> {
        let query = sqlx::query(
            r#"
select webhook_id, url, types::text as types, enabled, secret, request_id, request_hash,
    cursor_seq, created_at, updated_at
from webhooks
order by webhook_id"#,
        );
        self.fetch_all(query, webhook_from_row).await
    }

    pub(super) async fn update_webhook(&mut self, record: &WebhookRecord) -> StoreResult<()> {
        let w = &record.webhook;
        let query = sqlx::query(
            r#"
update webhooks
set url = $2, types = $3::jsonb, enabled = $4, cursor_seq = $5, updated_at = $6
where webhook_id = $1"#,
        )
        .bind(&w.webhook_id) // $1
        .bind(&w.url) // $2
        .bind(to_json(&w.types)?) // $3
        .bind(w.enabled) // $4
        .bind(record.cursor_seq) // $5
        .bind(w.updated_at); // $6
        self.run(query).await
    }

    pub(super) async fn insert_deliveries(&mut self, deliveries: &[Delivery]) -> StoreResult<()> {
        if deliveries.is_empty() {
            return Ok(());
        }
        let column = |f: fn(&Delivery) -> String| deliveries.iter().map(f).collect::<Vec<_>>();
        let query = sqlx::query(
            r#"
insert into webhook_deliveries (webhook_id, seq, event_id, state, attempts, last_status_code,
    next_attempt_at, created_at)
select *
from unnest($1::text[], $2::bigint[], $3::text[], $4::text[], $5::int[], $6::int[],
    $7::timestamptz[], $8::timestamptz[])
on conflict (webhook_id, seq) do nothing"#,
        )
        .bind(column(|d| d.webhook_id.clone())) // $1
        .bind(deliveries.iter().map(|d| d.seq).collect::<Vec<_>>()) // $2
        .bind(column(|d| d.event_id.clone())) // $3
        .bind(column(|d| d.state.as_str().to_string())) // $4
        .bind(deliveries.iter().map(|d| d.attempts).collect::<Vec<_>>()) // $5
        .bind(
            deliveries
                .iter()
                .map(|d| d.last_status_code)
                .collect::<Vec<_>>(),
        ) // $6
        .bind(
            deliveries
                .iter()
                .map(|d| d.next_attempt_at)
                .collect::<Vec<_>>(),
        ) // $7
        .bind(deliveries.iter().map(|d| d.created_at).collect::<Vec<_>>()); // $8
        self.run(query).await
    }

    pub(super) async fn claim_deliveries(
        &mut self,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
        limit: i64,
    ) -> StoreResult<Vec<Delivery>> {
        let query = sqlx::query(
            r#"
with due as (
    select webhook_id, seq
    from webhook_deliveries
    where state = 'PENDING'
        and next_attempt_at <= $1
    order by next_attempt_at, seq
    limit $3
    for update skip locked
)
update webhook_deliveries d
set next_attempt_at = $2
from due
where d.webhook_id = due.webhook_id
    and d.seq = due.seq
returning d.webhook_id, d.seq, d.event_id, d.state, d.attempts, d.last_status_code,
    d.next_attempt_at, d.created_at"#,
        )
        .bind(now) // $1
        .bind(lease_until) // $2
        .bind(limit); // $3
        self.fetch_all(query, delivery_from_row).await
    }

    pub(super) async fn oldest_pending_delivery(&mut self) -> StoreResult<Option<DateTime<Utc>>> {
        let query = sqlx::query(
            r#"
select min(created_at) as oldest
from webhook_deliveries
where state = 'PENDING'"#,
        );
        self.fetch_value(query, "webhook_deliveries", "oldest")
            .await
    }

    pub(super) async fn save_delivery(&mut self, d: &Delivery) -> StoreResult<()> {
        let query = sqlx::query(
            r#"
update webhook_deliveries
set state = $3, attempts = $4, last_status_code = $5, next_attempt_at = $6
where webhook_id = $1
    and seq = $2"#,
        )
        .bind(&d.webhook_id) // $1
        .bind(d.seq) // $2
        .bind(d.state.as_str()) // $3
        .bind(d.attempts) // $4
        .bind(d.last_status_code) // $5
        .bind(d.next_attempt_at); // $6
        self.run(query).await
    }

    pub(super) async fn list_deliveries(
        &mut self,
        webhook_id: &str,
        state: Option<DeliveryState>,
        after_seq: i64,
        limit: i64,
    ) -> StoreResult<Vec<Delivery>> {
        let sql = format!(
            "select {DELIVERY_COLUMNS} from webhook_deliveries \
             where webhook_id = $1 and ($2 = '' or state = $2) and seq > $3 \
             order by seq limit $4"
        );
        let query = sqlx::query(&sql)
            .bind(webhook_id) // $1
            .bind(state.map_or("", DeliveryState::as_str)) // $2
            .bind(after_seq) // $3
            .bind(limit); // $4
        self.fetch_all(query, delivery_from_row).await
    }
}
