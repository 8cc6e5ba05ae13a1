//! API keys (written on their own, outside batches) and idempotency records (remembered
//! outcomes, written by a flush).

use chrono::{DateTime, Utc};
use rusqlite::Row;

use super::{Cols, SqliteUnitOfWork};
use crate::domain::{
    auth::Role,
    ports::{ApiKeyRecord, IdempotencyRecord, StoreResult},
};

pub(super) fn find_idempotency(
    uow: &SqliteUnitOfWork,
    key_id: &str,
    request_id: &str,
) -> StoreResult<Option<IdempotencyRecord>> {
    let query = uow
        .query(
            r"
            select key_id, request_id, request_hash, outcome, created_at
            from idempotency_keys
            where key_id = ?1
              and request_id = ?2
            ",
        )?
        .bind(key_id) // ?1
        .bind(request_id); // ?2
    uow.fetch_optional(query, idempotency_from_row)
}

pub(super) fn insert_api_key(uow: &SqliteUnitOfWork, key: &ApiKeyRecord) -> StoreResult<()> {
    let query = uow
        .query(
            r"
            insert into api_keys (
                key_id, key_hash, role, store_id, name, created_at, expires_at, revoked_at,
                last_used_at
            )
            values (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)
            ",
        )?
        .bind(&key.key_id) // ?1
        .bind(&key.key_hash) // ?2
        .bind(key.role.as_str()) // ?3
        .bind(key.store_id.as_deref()) // ?4
        .bind(&key.name) // ?5
        .bind(key.created_at.timestamp_micros()) // ?6
        .bind(key.expires_at.map(|at| at.timestamp_micros())) // ?7
        .bind(key.revoked_at.map(|at| at.timestamp_micros())) // ?8
        .bind(key.last_used_at.map(|at| at.timestamp_micros())); // ?9
    uow.run(query)
}

pub(super) fn find_api_key(
    uow: &SqliteUnitOfWork,
    key_hash: &str,
) -> StoreResult<Option<ApiKeyRecord>> {
    let query = uow
        .query(
            r"
            select key_id, key_hash, role, store_id, name, created_at, expires_at,
                revoked_at, last_used_at
            from api_keys
            where key_hash = ?1
            ",
        )?
        .bind(key_hash); // ?1
    uow.fetch_optional(query, api_key_from_row)
}

pub(super) fn list_api_keys(uow: &SqliteUnitOfWork) -> StoreResult<Vec<ApiKeyRecord>> {
    let query = uow.query(
        r"
        select key_id, key_hash, role, store_id, name, created_at, expires_at, revoked_at,
            last_used_at
        from api_keys
        order by created_at, key_id
        ",
    )?;
    uow.fetch_all(query, api_key_from_row)
}

pub(super) fn revoke_api_key(
    uow: &SqliteUnitOfWork,
    key_id: &str,
    at: DateTime<Utc>,
) -> StoreResult<bool> {
    let query = uow
        .query(
            r"
            update api_keys
            set revoked_at = coalesce(revoked_at, ?2)
            where key_id = ?1
            ",
        )?
        .bind(key_id) // ?1
        .bind(at.timestamp_micros()); // ?2
    Ok(query.execute()? == 1)
}

pub(super) fn touch_api_key(
    uow: &SqliteUnitOfWork,
    key_id: &str,
    at: DateTime<Utc>,
) -> StoreResult<()> {
    let query = uow
        .query(
            r"
            update api_keys
            set last_used_at = max(coalesce(last_used_at, 0), ?2)
            where key_id = ?1
            ",
        )?
        .bind(key_id) // ?1
        .bind(at.timestamp_micros()); // ?2
    uow.run(query)
}

/// Deletes up to `limit` idempotency records created before `created_before` (by the
/// `idempotency_keys_by_created_at` index, migration 0005); how many it deleted.
pub(super) fn purge_idempotency(
    uow: &SqliteUnitOfWork,
    created_before: DateTime<Utc>,
    limit: i64,
) -> StoreResult<u64> {
    let deleted = uow
        .query(
            r"
            delete from idempotency_keys
            where (key_id, request_id) in (
                select key_id, request_id
                from idempotency_keys
                where created_at < ?1
                limit ?2
            )
            ",
        )?
        .bind(created_before.timestamp_micros()) // ?1
        .bind(limit.max(0)) // ?2
        .execute()?;
    Ok(deleted as u64)
}

impl SqliteUnitOfWork {
    pub(super) fn insert_idempotency_row(&self, record: &IdempotencyRecord) -> StoreResult<()> {
        let query = self
            .query(
                r"
                insert into idempotency_keys (key_id, request_id, request_hash, outcome, created_at)
                values (?1, ?2, ?3, ?4, ?5)
                ",
            )?
            .bind(&record.key_id) // ?1
            .bind(&record.request_id) // ?2
            .bind(&record.request_hash) // ?3
            .bind(&record.outcome) // ?4
            .bind(record.created_at.timestamp_micros()); // ?5
        self.run(query)
    }
}

pub(super) fn api_key_from_row(row: &Row<'_>) -> StoreResult<ApiKeyRecord> {
    let c = Cols::new(row, "api_keys", "key_id");
    Ok(ApiKeyRecord {
        key_id: c.get("key_id")?,
        key_hash: c.get("key_hash")?,
        role: c.named("role", Role::parse)?,
        store_id: c.get("store_id")?,
        name: c.get("name")?,
        created_at: c.instant("created_at")?,
        expires_at: c.opt_instant("expires_at")?,
        revoked_at: c.opt_instant("revoked_at")?,
        last_used_at: c.opt_instant("last_used_at")?,
    })
}

fn idempotency_from_row(row: &Row<'_>) -> StoreResult<IdempotencyRecord> {
    let c = Cols::new(row, "idempotency_keys", "request_id");
    Ok(IdempotencyRecord {
        key_id: c.get("key_id")?,
        request_id: c.get("request_id")?,
        request_hash: c.get("request_hash")?,
        outcome: c.get("outcome")?,
        created_at: c.instant("created_at")?,
    })
}
