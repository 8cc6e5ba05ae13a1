//! Storage backends behind the domain's [`Store`] port. The URL scheme picks the backend.

use std::sync::Arc;

use serde::Serialize;

use crate::domain::ports::{Store, StoreError, StoreResult};

#[cfg(test)]
mod conformance;
pub mod postgres;
pub mod sqlite;
#[cfg(test)]
mod test_postgres;
#[cfg(test)]
mod test_writes;

/// The report summaries' tables (migration 0008), in the order the bench prints their row
/// counts.
pub(crate) const SUMMARY_TABLES: [&str; 6] = [
    "activity_summary",
    "visit_summary",
    "coupon_summary",
    "redemption_summary",
    "redemption_time_summary",
    "lot_summary",
];

/// Opens (creating if needed) the database at `url` and runs its migrations.
pub async fn open(url: &str) -> Result<Arc<dyn Store>, StoreError> {
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Ok(Arc::new(postgres::PostgresStore::connect(url).await?))
    } else if url.starts_with("sqlite:") {
        Ok(Arc::new(sqlite::SqliteStore::connect(url).await?))
    } else {
        Err(StoreError::Database(
            format!("unsupported database URL scheme in {url:?}: use sqlite:// or postgres://")
                .into(),
        ))
    }
}

/// JSON text of a structured value: a TEXT column in SQLite, a `$n::jsonb` parameter in
/// PostgreSQL.
fn to_json<T: Serialize + ?Sized>(value: &T) -> StoreResult<String> {
    serde_json::to_string(value).map_err(|e| StoreError::Database(Box::new(e)))
}

/// An empty receipt number is stored as NULL, so that the unique index ignores it.
fn receipt_no_param(receipt_no: &str) -> Option<&str> {
    (!receipt_no.is_empty()).then_some(receipt_no)
}
