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

/// How the compaction folds one summary table (`UnitOfWork::compact_report_sums`): its key
/// and figure columns, and which of its rows it folds.
pub(crate) struct Fold {
    pub table: &'static str,
    /// The key's columns, shard aside.
    pub key: &'static str,
    pub figures: &'static [&'static str],
    pub rows: FoldedRows,
}

/// Which rows of a summary table a compaction folds.
pub(crate) enum FoldedRows {
    /// Those whose instant column is in the window (bound as the two first parameters).
    Instants(&'static str),
    /// Those whose date column is in the window's dates (bound likewise).
    Dates(&'static str),
    /// Every row of the campaigns some writer has added to since (a row with a shard).
    TouchedCampaigns,
}

impl Fold {
    /// The three statements that fold the rows: sum them per key at shard -1 (keys that net
    /// to zero are left out), delete the rows summed, and give the sums shard 0. `p1` and `p2`
    /// are the backend's first two placeholders.
    pub fn statements(&self, p1: &str, p2: &str) -> [String; 3] {
        let Fold {
            table,
            key,
            figures,
            ..
        } = self;
        let rows = match self.rows {
            FoldedRows::Instants(column) | FoldedRows::Dates(column) => {
                format!("{column} >= {p1} and {column} < {p2}")
            }
            FoldedRows::TouchedCampaigns => {
                format!("campaign_id in (select campaign_id from {table} where shard <> 0)")
            }
        };
        let columns = figures.join(", ");
        let sums = figures
            .iter()
            .map(|f| format!("sum({f})"))
            .collect::<Vec<_>>()
            .join(", ");
        let nonzero = figures
            .iter()
            .map(|f| format!("sum({f}) <> 0"))
            .collect::<Vec<_>>()
            .join(" or ");
        [
            format!(
                "insert into {table} ({key}, shard, {columns}) select {key}, -1, {sums} \
                 from {table} where {rows} group by {key} having {nonzero}"
            ),
            format!("delete from {table} where ({rows}) and shard <> -1"),
            format!("update {table} set shard = 0 where shard = -1"),
        ]
    }
}

/// The summary tables as the compaction folds them, with the backend's names of the two money
/// columns (SQLite keeps ten-thousandths: `sales_e4`, `discount_e4`).
macro_rules! summary_folds {
    ($sales:literal, $discount:literal) => {
        [
            $crate::store::Fold {
                table: "activity_summary",
                key: "period, channel, store_id",
                figures: &[
                    "points_earned",
                    "points_redeemed",
                    "points_expired",
                    "orders",
                    $sales,
                    "receipts",
                ],
                rows: $crate::store::FoldedRows::Instants("period"),
            },
            $crate::store::Fold {
                table: "visit_summary",
                key: "visit_date, store_id",
                figures: &["visits"],
                rows: $crate::store::FoldedRows::Dates("visit_date"),
            },
            $crate::store::Fold {
                table: "lot_summary",
                key: "expires_quarter, matures_quarter, state",
                figures: &["remaining_points", "held_points"],
                rows: $crate::store::FoldedRows::Instants("expires_quarter"),
            },
            $crate::store::Fold {
                table: "coupon_summary",
                key: "campaign_id, variant_id, source, state",
                figures: &["coupons", $discount],
                rows: $crate::store::FoldedRows::TouchedCampaigns,
            },
            $crate::store::Fold {
                table: "redemption_summary",
                key: "campaign_id, channel",
                figures: &["coupons"],
                rows: $crate::store::FoldedRows::TouchedCampaigns,
            },
            $crate::store::Fold {
                table: "redemption_time_summary",
                key: "campaign_id, seconds",
                figures: &["coupons"],
                rows: $crate::store::FoldedRows::TouchedCampaigns,
            },
        ]
    };
}
pub(crate) use summary_folds;

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

/// The migrations this omo has that the database at `url` has not applied (by version),
/// read without writing anything: `omo verify` checks a database as it is, and refuses one
/// that `omo migrate` would change.
pub async fn pending_migrations(url: &str) -> Result<Vec<i64>, StoreError> {
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        postgres::pending_migrations(url).await
    } else {
        sqlite::pending_migrations(url)
    }
}

/// Refuses a `sqlite:` URL whose file does not exist. `omo verify` (and anything else that only
/// inspects a database) calls it before [`open`], which would otherwise create the file, migrate
/// it and report an empty database as sound: a typo in a backup's name must fail, not pass.
pub fn require_existing(url: &str) -> Result<(), StoreError> {
    if !url.starts_with("sqlite:") || url.contains(":memory:") || url.contains("mode=memory") {
        return Ok(());
    }
    let options = <sqlx::sqlite::SqliteConnectOptions as std::str::FromStr>::from_str(url)
        .map_err(|e| StoreError::Database(Box::new(e)))?;
    let path = options.get_filename();
    if path.exists() {
        Ok(())
    } else {
        Err(StoreError::Database(
            format!("no database at {}: nothing to check", path.display()).into(),
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
