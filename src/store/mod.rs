//! Storage backends behind the domain's [`Store`] port. The URL scheme picks the backend.

use std::sync::Arc;

use crate::domain::ports::{Store, StoreError};

pub mod postgres;
pub mod sqlite;

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
