//! API keys (written on their own, outside batches) and idempotency records (remembered
//! outcomes, written by a flush).

use chrono::{DateTime, Utc};
use sqlx::postgres::PgRow;

use super::{Cols, PgQuery, PgUnitOfWork};
use crate::domain::{
    auth::Role,
    ports::{ApiKeyRecord, IdempotencyRecord, StoreResult},
};

pub(super) async fn find_idempotency(
    uow: &mut PgUnitOfWork,
    key_id: &str,
    request_id: &str,
) -> StoreResult<Option<IdempotencyRecord>> {
    let query = sqlx::query(
        r#"
select key_id, request_id, request_hash, outcome::text as outcome, created_at
from idempotency_keys
where key_id = $1
    and request_id = $2"#,
    )
    .bind(key_id) // $1
    .bind(request_id); // $2
    uow.fetch_optional(query, idempotency_from_row).await
}

pub(super) async fn insert_api_key(uow: &mut PgUnitOfWork, key: &ApiKeyRecord) -> StoreResult<()> {
    let query = sqlx::query(
        r#"
insert into api_keys (
    key_id, key_hash, role, store_id, name, created_at, expires_at, revoked_at, last_used_at
)
values ($1, $2, $3, $4, $5, $6, $7, $8, $9)"#,
    )
    .bind(&key.key_id) // $1
    .bind(&key.key_hash) // $2
    .bind(key.role.as_str()) // $3
    .bind(&key.store_id) // $4
    .bind(&key.name) // $5
    .bind(key.created_at) // $6
    .bind(key.expires_at) // $7
    .bind(key.revoked_at) // $8
    .bind(key.last_used_at); // $9
    uow.run(query).await
}

pub(super) async fn find_api_key(
    uow: &mut PgUnitOfWork,
    key_hash: &str,
) -> StoreResult<Option<ApiKeyRecord>> {
    let query = sqlx::query(
        r#"
select key_id, key_hash, role, store_id, name, created_at, expires_at, revoked_at, last_used_at
from api_keys
where key_hash = $1"#,
    )
    .bind(key_hash); // $1
    uow.fetch_optional(query, api_key_from_row).await
}

pub(super) async fn list_api_keys(uow: &mut PgUnitOfWork) -> StoreResult<Vec<ApiKeyRecord>> {
    let query = sqlx::query(
        r#"
select key_id, key_hash, role, store_id, name, created_at, expires_at, revoked_at, last_used_at
from api_keys
order by created_at, key_id"#,
    );
    uow.fetch_all(query, api_key_from_row).await
}

pub(super) async fn revoke_api_key(
    uow: &mut PgUnitOfWork,
    key_id: &str,
    at: DateTime<Utc>,
) -> StoreResult<bool> {
    let query = sqlx::query(
        r#"
update api_keys
set revoked_at = coalesce(revoked_at, $2)
where key_id = $1"#,
    )
    .bind(key_id) // $1
    .bind(at); // $2
    Ok(uow.run_counted(query).await? == 1)
}

pub(super) async fn touch_api_key(
    uow: &mut PgUnitOfWork,
    key_id: &str,
    at: DateTime<Utc>,
) -> StoreResult<()> {
    let query = sqlx::query(
        r#"
update api_keys
set last_used_at = greatest(last_used_at, $2)
where key_id = $1"#,
    )
    .bind(key_id) // $1
    .bind(at); // $2
    uow.run(query).await
}

/// Deletes up to `limit` ($2) idempotency records created before $1; how many it deleted.
/// `skip locked`: purges on several replicas delete different rows instead of waiting on each
/// other (the BRIN index on created_at finds the old ones, migration 0005).
pub(super) async fn purge_idempotency(
    uow: &mut PgUnitOfWork,
    created_before: DateTime<Utc>,
    limit: i64,
) -> StoreResult<u64> {
    let query = sqlx::query(
        r#"
delete from idempotency_keys
where (key_id, request_id) in (
    select key_id, request_id
    from idempotency_keys
    where created_at < $1
    limit $2
    for update skip locked
)"#,
    )
    .bind(created_before) // $1
    .bind(limit.max(0)); // $2
    uow.run_counted(query).await
}

pub(super) fn api_key_from_row(row: &PgRow) -> StoreResult<ApiKeyRecord> {
    let c = Cols::new(row, "api_keys", "key_id");
    Ok(ApiKeyRecord {
        key_id: c.get("key_id")?,
        key_hash: c.get("key_hash")?,
        role: c.parse("role", Role::parse)?,
        store_id: c.get("store_id")?,
        name: c.get("name")?,
        created_at: c.get("created_at")?,
        expires_at: c.get("expires_at")?,
        revoked_at: c.get("revoked_at")?,
        last_used_at: c.get("last_used_at")?,
    })
}

fn idempotency_from_row(row: &PgRow) -> StoreResult<IdempotencyRecord> {
    let c = Cols::new(row, "idempotency_keys", "request_id");
    Ok(IdempotencyRecord {
        key_id: c.get("key_id")?,
        request_id: c.get("request_id")?,
        request_hash: c.get("request_hash")?,
        outcome: c.get("outcome")?,
        created_at: c.get("created_at")?,
    })
}

// Remembered outcomes.

/// Inserts idempotency records (part of a batch's flush).
pub(super) const INSERT_OUTCOMES: &str = r#"
insert into idempotency_keys (key_id, request_id, request_hash, outcome, created_at)
select key_id, request_id, request_hash, outcome::jsonb, created_at
from unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::timestamptz[])
    as r (key_id, request_id, request_hash, outcome, created_at)"#;

/// The columns of `INSERT_OUTCOMES`.
pub(super) fn bind_outcomes<'q>(
    query: PgQuery<'q>,
    records: &'q [IdempotencyRecord],
) -> PgQuery<'q> {
    let column = |field: fn(&IdempotencyRecord) -> &str| -> Vec<&str> {
        records.iter().map(field).collect()
    };
    let created_at: Vec<DateTime<Utc>> = records.iter().map(|r| r.created_at).collect();
    query
        .bind(column(|r| &r.key_id)) // $1
        .bind(column(|r| &r.request_id)) // $2
        .bind(column(|r| &r.request_hash)) // $3
        .bind(column(|r| &r.outcome)) // $4
        .bind(created_at) // $5
}
