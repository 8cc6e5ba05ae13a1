//! Dashboard sessions (migration 0012), written on their own, outside batches.

use chrono::{DateTime, Utc};
use sqlx::postgres::PgRow;

use super::{Cols, PgUnitOfWork, keys::api_key_from_row};
use crate::domain::{
    ports::{ApiKeyRecord, StoreResult},
    session::DashboardSession,
};

pub(super) async fn insert_dashboard_session(
    uow: &mut PgUnitOfWork,
    session: &DashboardSession,
) -> StoreResult<()> {
    let query = sqlx::query(
        r#"
insert into dashboard_sessions (session_hash, key_id, csrf_token, created_at, last_seen_at)
values ($1, $2, $3, $4, $5)"#,
    )
    .bind(&session.session_hash) // $1
    .bind(&session.key_id) // $2
    .bind(&session.csrf_token) // $3
    .bind(session.created_at) // $4
    .bind(session.last_seen_at); // $5
    uow.run(query).await
}

/// The session and its key in one read, so that a revoked key is seen on the same request.
pub(super) async fn find_dashboard_session(
    uow: &mut PgUnitOfWork,
    session_hash: &str,
) -> StoreResult<Option<(DashboardSession, ApiKeyRecord)>> {
    let query = sqlx::query(
        r#"
select s.session_hash, s.csrf_token, s.created_at as session_created_at, s.last_seen_at,
    k.key_id, k.key_hash, k.role, k.store_id, k.name, k.created_at, k.expires_at, k.revoked_at,
    k.last_used_at
from dashboard_sessions s
join api_keys k on k.key_id = s.key_id
where s.session_hash = $1"#,
    )
    .bind(session_hash); // $1
    uow.fetch_optional(query, session_from_row).await
}

pub(super) async fn touch_dashboard_session(
    uow: &mut PgUnitOfWork,
    session_hash: &str,
    at: DateTime<Utc>,
) -> StoreResult<()> {
    let query = sqlx::query(
        r#"
update dashboard_sessions
set last_seen_at = greatest(last_seen_at, $2)
where session_hash = $1"#,
    )
    .bind(session_hash) // $1
    .bind(at); // $2
    uow.run(query).await
}

pub(super) async fn delete_dashboard_session(
    uow: &mut PgUnitOfWork,
    session_hash: &str,
) -> StoreResult<bool> {
    let query = sqlx::query(
        r#"
delete from dashboard_sessions
where session_hash = $1"#,
    )
    .bind(session_hash); // $1
    Ok(uow.run_counted(query).await? == 1)
}

pub(super) async fn purge_dashboard_sessions(
    uow: &mut PgUnitOfWork,
    opened_before: DateTime<Utc>,
    seen_before: DateTime<Utc>,
) -> StoreResult<u64> {
    let query = sqlx::query(
        r#"
delete from dashboard_sessions
where created_at < $1
    or last_seen_at < $2"#,
    )
    .bind(opened_before) // $1
    .bind(seen_before); // $2
    uow.run_counted(query).await
}

fn session_from_row(row: &PgRow) -> StoreResult<(DashboardSession, ApiKeyRecord)> {
    let key = api_key_from_row(row)?;
    let c = Cols::new(row, "dashboard_sessions", "session_hash");
    let session = DashboardSession {
        session_hash: c.get("session_hash")?,
        key_id: key.key_id.clone(),
        csrf_token: c.get("csrf_token")?,
        created_at: c.get("session_created_at")?,
        last_seen_at: c.get("last_seen_at")?,
    };
    Ok((session, key))
}
