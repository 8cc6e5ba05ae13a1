//! `omo export journal|members|lots --to FILE [--format jsonl|csv] [--since TIME]`: streams
//! the ledger out for a data team. One read-only unit of work (one consistent snapshot), read
//! in keyset pages and written as they come, so memory stays bounded by one page whatever the
//! size of the journal.
//!
//! `--since`: the journal's entries recorded at or after TIME, members created at or after it,
//! lots earned at or after it. The journal and lots are filtered as they stream past (a linear
//! read: neither table has an index by time, and an export reads most of it anyway).
//!
//! Shapes: JSON Lines, one object per transaction (with its postings), member or lot; CSV with
//! a header, one row per posting (the journal), member or lot, structured cells (metadata,
//! identifiers, attributes) as JSON text. Instants are RFC 3339 UTC with microseconds.

use std::{
    io::{BufWriter, Write},
    path::Path,
};

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{Value, json};

use crate::{
    domain::{
        model::{Lot, Member, Transaction},
        ports::UnitOfWork,
    },
    engine::{Engine, EngineError},
};

/// Rows read per statement: large enough that round trips are few, small enough that a page
/// is a few MB.
const PAGE_ROWS: i64 = 2_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum What {
    Journal,
    Members,
    Lots,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Format {
    #[default]
    Jsonl,
    Csv,
}

#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error("writing {path}: {source}")]
    Write {
        path: String,
        source: std::io::Error,
    },
    #[error(transparent)]
    Engine(#[from] EngineError),
}

impl From<crate::domain::ports::StoreError> for ExportError {
    fn from(error: crate::domain::ports::StoreError) -> Self {
        ExportError::Engine(error.into())
    }
}

/// Writes the export to a new file (an existing one is never overwritten); how many rows
/// (transactions, members or lots) it wrote.
pub async fn export(
    engine: &Engine,
    what: What,
    format: Format,
    since: Option<DateTime<Utc>>,
    to: &Path,
) -> Result<u64, ExportError> {
    let write_error = |source| ExportError::Write {
        path: to.display().to_string(),
        source,
    };
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(to)
        .map_err(write_error)?;
    let mut out = Sink {
        out: BufWriter::with_capacity(1 << 20, file),
        format,
        rows: 0,
    };
    let mut uow = engine.export_snapshot().await?;
    let result = match what {
        What::Journal => journal(uow.as_mut(), since, &mut out).await,
        What::Members => members(uow.as_mut(), since, &mut out).await,
        What::Lots => lots(uow.as_mut(), since, &mut out).await,
    };
    match result {
        Ok(()) => {}
        Err(Failed::Io(e)) => return Err(write_error(e)),
        Err(Failed::Store(e)) => return Err(e.into()),
    }
    out.out.flush().map_err(write_error)?;
    out.out
        .into_inner()
        .map_err(|e| write_error(e.into_error()))?
        .sync_all()
        .map_err(write_error)?;
    Ok(out.rows)
}

enum Failed {
    Io(std::io::Error),
    Store(crate::domain::ports::StoreError),
}

impl From<std::io::Error> for Failed {
    fn from(e: std::io::Error) -> Self {
        Failed::Io(e)
    }
}

impl From<crate::domain::ports::StoreError> for Failed {
    fn from(e: crate::domain::ports::StoreError) -> Self {
        Failed::Store(e)
    }
}

struct Sink<W: Write> {
    out: W,
    format: Format,
    rows: u64,
}

impl<W: Write> Sink<W> {
    fn header(&mut self, columns: &[&str]) -> std::io::Result<()> {
        if self.format == Format::Csv {
            writeln!(self.out, "{}", columns.join(","))?;
        }
        Ok(())
    }

    /// One CSV row of cells.
    fn csv(&mut self, cells: &[String]) -> std::io::Result<()> {
        let row: Vec<String> = cells.iter().map(|c| csv_cell(c)).collect();
        writeln!(self.out, "{}", row.join(","))
    }

    fn jsonl(&mut self, value: &Value) -> std::io::Result<()> {
        serde_json::to_writer(&mut self.out, value)?;
        self.out.write_all(b"\n")
    }
}

/// RFC 4180: a cell with a comma, quote or line break is quoted, its quotes doubled.
fn csv_cell(cell: &str) -> String {
    if cell.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", cell.replace('"', "\"\""))
    } else {
        cell.to_string()
    }
}

fn instant(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Micros, true)
}

fn optional_instant(at: Option<DateTime<Utc>>) -> String {
    at.map(instant).unwrap_or_default()
}

const JOURNAL_COLUMNS: [&str; 13] = [
    "transaction_id",
    "posting_no",
    "kind",
    "member_id",
    "occurred_at",
    "recorded_at",
    "channel",
    "store_id",
    "order_id",
    "from_account",
    "to_account",
    "asset",
    "amount",
];

async fn journal<W: Write>(
    uow: &mut dyn UnitOfWork,
    since: Option<DateTime<Utc>>,
    out: &mut Sink<W>,
) -> Result<(), Failed> {
    let mut columns = JOURNAL_COLUMNS.to_vec();
    columns.push("metadata");
    out.header(&columns)?;
    let mut after = 0;
    loop {
        let page = uow.journal_range(after, i64::MAX, PAGE_ROWS).await?;
        let Some(last) = page.last() else {
            return Ok(());
        };
        after = last.transaction_id;
        for transaction in page
            .iter()
            .filter(|t| since.is_none_or(|since| t.recorded_at >= since))
        {
            write_transaction(out, transaction)?;
        }
    }
}

fn write_transaction<W: Write>(out: &mut Sink<W>, t: &Transaction) -> std::io::Result<()> {
    out.rows += 1;
    let channel = t.channel.map(|c| c.as_str()).unwrap_or_default();
    if out.format == Format::Jsonl {
        let postings: Vec<Value> = t
            .postings
            .iter()
            .map(|p| {
                json!({"from_account": p.from_account, "to_account": p.to_account,
                    "asset": p.asset, "amount": p.amount})
            })
            .collect();
        return out.jsonl(&json!({
            "transaction_id": t.transaction_id,
            "kind": t.kind,
            "member_id": t.member_id,
            "occurred_at": instant(t.occurred_at),
            "recorded_at": instant(t.recorded_at),
            "channel": channel,
            "store_id": t.store_id,
            "order_id": t.order_id,
            "metadata": t.metadata,
            "postings": postings,
        }));
    }
    let metadata = serde_json::to_string(&t.metadata)?;
    for (posting_no, p) in (1..).zip(&t.postings) {
        out.csv(&[
            t.transaction_id.to_string(),
            i64::to_string(&posting_no),
            t.kind.clone(),
            t.member_id.clone(),
            instant(t.occurred_at),
            instant(t.recorded_at),
            channel.to_string(),
            t.store_id.clone(),
            t.order_id.clone(),
            p.from_account.clone(),
            p.to_account.clone(),
            p.asset.clone(),
            p.amount.to_string(),
            metadata.clone(),
        ])?;
    }
    Ok(())
}

async fn members<W: Write>(
    uow: &mut dyn UnitOfWork,
    since: Option<DateTime<Utc>>,
    out: &mut Sink<W>,
) -> Result<(), Failed> {
    out.header(&[
        "member_id",
        "display_name",
        "state",
        "merged_into",
        "created_at",
        "identifiers",
        "attributes",
    ])?;
    let mut after = String::new();
    loop {
        let page = uow.export_members(&after, since, PAGE_ROWS).await?;
        let Some(last) = page.last() else {
            return Ok(());
        };
        after = last.member_id.clone();
        for member in &page {
            write_member(out, member)?;
        }
    }
}

fn write_member<W: Write>(out: &mut Sink<W>, m: &Member) -> std::io::Result<()> {
    out.rows += 1;
    let identifiers: Vec<Value> = m
        .identifiers
        .iter()
        .map(|i| json!({"kind": i.kind, "value": i.value}))
        .collect();
    let merged_into = m.merged_into.clone().unwrap_or_default();
    if out.format == Format::Jsonl {
        return out.jsonl(&json!({
            "member_id": m.member_id,
            "display_name": m.display_name,
            "state": m.state.as_str(),
            "merged_into": merged_into,
            "created_at": instant(m.created_at),
            "identifiers": identifiers,
            "attributes": m.attributes,
        }));
    }
    out.csv(&[
        m.member_id.clone(),
        m.display_name.clone(),
        m.state.as_str().to_string(),
        merged_into,
        instant(m.created_at),
        serde_json::to_string(&identifiers)?,
        serde_json::to_string(&m.attributes)?,
    ])
}

const LOT_COLUMNS: [&str; 11] = [
    "lot_id",
    "member_id",
    "order_id",
    "state",
    "earned_at",
    "matures_at",
    "expires_at",
    "original_points",
    "remaining_points",
    "held_points",
    "limited",
];

async fn lots<W: Write>(
    uow: &mut dyn UnitOfWork,
    since: Option<DateTime<Utc>>,
    out: &mut Sink<W>,
) -> Result<(), Failed> {
    out.header(&LOT_COLUMNS)?;
    let mut after = 0;
    loop {
        let page = uow.export_lots(after, PAGE_ROWS).await?;
        let Some(last) = page.last() else {
            return Ok(());
        };
        after = last.lot_id;
        for lot in page
            .iter()
            .filter(|l| since.is_none_or(|since| l.earned_at >= since))
        {
            write_lot(out, lot)?;
        }
    }
}

fn write_lot<W: Write>(out: &mut Sink<W>, l: &Lot) -> std::io::Result<()> {
    out.rows += 1;
    let cells = [
        l.lot_id.to_string(),
        l.member_id.clone(),
        l.order_id.clone(),
        l.state.as_str().to_string(),
        instant(l.earned_at),
        optional_instant(l.matures_at),
        optional_instant(l.expires_at),
        l.original_points.to_string(),
        l.remaining_points.to_string(),
        l.held_points.to_string(),
        l.limited.to_string(),
    ];
    if out.format == Format::Csv {
        return out.csv(&cells);
    }
    out.jsonl(&json!({
        "lot_id": l.lot_id,
        "member_id": l.member_id,
        "order_id": l.order_id,
        "state": l.state.as_str(),
        "earned_at": cells[4],
        "matures_at": l.matures_at.map(instant),
        "expires_at": l.expires_at.map(instant),
        "original_points": l.original_points,
        "remaining_points": l.remaining_points,
        "held_points": l.held_points,
        "limited": l.limited,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_cells_are_quoted_only_when_needed() {
        assert_eq!(csv_cell("plain"), "plain");
        assert_eq!(csv_cell("a,b"), "\"a,b\"");
        assert_eq!(csv_cell("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(csv_cell("two\nlines"), "\"two\nlines\"");
    }
}
