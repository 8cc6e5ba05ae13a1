//! `omo import members FILE`: the edge of the bulk import. Reads a JSON Lines file, parses and
//! validates each line as the gRPC edge validates a CreateMember (same limits, same field
//! names), and hands chunks of valid lines to the engine (`Engine::import_chunk`), one
//! transaction each. Bad lines are reported `line N: field: problem` and never written; the rest
//! of their chunk is. Idempotent by external_id: a re-run, or a run resumed after a kill, skips
//! what is already imported.

use std::{
    collections::{BTreeMap, HashMap, HashSet},
    io::{BufRead, BufReader, IsTerminal, Write},
    path::Path,
    time::{Duration, Instant},
};

use chrono::{DateTime, Utc};
use serde::Deserialize;

use crate::{
    domain::{
        attributes,
        import::{LineOutcome, MemberImport},
        model::Identifier,
    },
    engine::{Engine, EngineError},
    grpc::convert::{Violations, check_optional_id, check_text, identifier},
    proto,
};

/// Lines per transaction: big enough that the per-transaction cost (fsync, round trips) is
/// small against its rows, small enough that a killed run loses little and a chunk's
/// statements stay a few MB.
pub const DEFAULT_CHUNK_LINES: usize = 5_000;
/// Limits on one line, like the API's.
const MAX_EXTERNAL_ID_CHARS: usize = 128;
const MAX_IDENTIFIERS: usize = 32;
const MAX_DISPLAY_NAME_CHARS: usize = 200;
const MAX_POINTS_ENTRIES: usize = 64;
const MAX_POINTS_PER_ENTRY: i64 = 1_000_000_000;
/// Longest line read; a longer one is a bad line (a limit on everything).
const MAX_LINE_BYTES: usize = 64 * 1024;

/// One line as written in the file (unknown fields are refused: a typo must not vanish).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct LineIn {
    external_id: String,
    #[serde(default)]
    identifiers: Vec<IdentifierIn>,
    #[serde(default)]
    display_name: String,
    #[serde(default)]
    attributes: BTreeMap<String, String>,
    #[serde(default)]
    points: Vec<PointsIn>,
    #[serde(default)]
    tier_id: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct IdentifierIn {
    kind: String,
    value: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PointsIn {
    points: i64,
    /// RFC 3339; absent or null: the program's expiry applies.
    #[serde(default)]
    expires_at: Option<String>,
}

/// A bad line: its number and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadLine {
    pub line_no: u64,
    pub field: String,
    pub problem: String,
}

impl std::fmt::Display for BadLine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.field.is_empty() {
            write!(f, "line {}: {}", self.line_no, self.problem)
        } else {
            write!(f, "line {}: {}: {}", self.line_no, self.field, self.problem)
        }
    }
}

/// Parses and validates one line; every problem of a bad line.
pub fn parse_line(
    line_no: u64,
    text: &str,
    now: DateTime<Utc>,
) -> Result<MemberImport, Vec<BadLine>> {
    let bad = |field: &str, problem: String| BadLine {
        line_no,
        field: field.to_string(),
        problem,
    };
    let line: LineIn = serde_json::from_str(text)
        .map_err(|e| vec![bad("", format!("not a valid member line: {e}"))])?;
    let mut v = Violations::new();
    check_text(
        &mut v,
        "external_id",
        &line.external_id,
        1,
        MAX_EXTERNAL_ID_CHARS,
    );
    if line.identifiers.len() > MAX_IDENTIFIERS {
        v.push(
            "identifiers",
            format!("at most {MAX_IDENTIFIERS} identifiers"),
        );
    }
    let mut identifiers = Vec::with_capacity(line.identifiers.len());
    for (i, given) in line.identifiers.into_iter().enumerate() {
        let field = format!("identifiers[{i}]");
        let given = proto::Identifier {
            kind: given.kind,
            value: given.value,
        };
        if let Some(parsed) = identifier(&mut v, &field, Some(given)) {
            if identifiers.contains(&parsed) {
                v.push(field, "duplicate identifier");
            } else {
                identifiers.push(parsed);
            }
        }
    }
    check_text(
        &mut v,
        "display_name",
        &line.display_name,
        0,
        MAX_DISPLAY_NAME_CHARS,
    );
    for violation in attributes::violations("attributes", &line.attributes) {
        v.push(violation.field, violation.description);
    }
    let points = points(&mut v, &line.points, now);
    check_optional_id(&mut v, "tier_id", &line.tier_id);
    let violations = v.into_vec();
    if !violations.is_empty() {
        return Err(violations
            .into_iter()
            .map(|violation| bad(&violation.field, violation.description))
            .collect());
    }
    Ok(MemberImport {
        line_no,
        external_id: line.external_id,
        identifiers,
        display_name: line.display_name,
        attributes: line.attributes,
        points,
        tier_id: line.tier_id,
    })
}

/// The opening balance: each entry positive, with an expiry (if any) after `now`: points that
/// have already expired are not a balance.
fn points(
    v: &mut Violations,
    given: &[PointsIn],
    now: DateTime<Utc>,
) -> Vec<(i64, Option<DateTime<Utc>>)> {
    if given.len() > MAX_POINTS_ENTRIES {
        v.push("points", format!("at most {MAX_POINTS_ENTRIES} entries"));
    }
    let mut out = Vec::with_capacity(given.len());
    for (i, entry) in given.iter().enumerate() {
        if !(1..=MAX_POINTS_PER_ENTRY).contains(&entry.points) {
            v.push(
                format!("points[{i}].points"),
                format!("must be between 1 and {MAX_POINTS_PER_ENTRY}"),
            );
        }
        let field = format!("points[{i}].expires_at");
        let expires_at = match entry
            .expires_at
            .as_deref()
            .map(DateTime::parse_from_rfc3339)
        {
            None => None,
            Some(Ok(at)) if at.with_timezone(&Utc) > now => Some(at.with_timezone(&Utc)),
            Some(Ok(_)) => {
                v.push(field, "must be in the future (these points have expired)");
                None
            }
            Some(Err(e)) => {
                v.push(field, format!("must be an RFC 3339 time: {e}"));
                None
            }
        };
        out.push((entry.points, expires_at));
    }
    out
}

/// What an import did (or, dry, would do).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ImportReport {
    pub lines: u64,
    pub imported: u64,
    pub points_imported: i64,
    pub already_imported: u64,
    pub bad_lines: Vec<BadLine>,
    pub dry_run: bool,
}

impl ImportReport {
    pub fn summary(&self, elapsed: Duration) -> String {
        let verb = if self.dry_run {
            "would import"
        } else {
            "imported"
        };
        format!(
            "{verb} {} members with {} points; {} already imported; {} bad lines; {} lines in \
             {:.1} s{}\n",
            self.imported,
            self.points_imported,
            self.already_imported,
            self.bad_lines.len(),
            self.lines,
            elapsed.as_secs_f64(),
            if self.dry_run {
                " (dry run: nothing written)"
            } else {
                ""
            }
        )
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("reading {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error(transparent)]
    Engine(#[from] EngineError),
}

/// Imports (or with `dry_run` checks) the file, `chunk_lines` lines a transaction; bad lines
/// are printed to `out` as they are found.
pub async fn import_members(
    engine: &Engine,
    path: &Path,
    dry_run: bool,
    chunk_lines: usize,
    out: &mut dyn Write,
) -> Result<ImportReport, ImportError> {
    let read_error = |source| ImportError::Read {
        path: path.display().to_string(),
        source,
    };
    let file = std::fs::File::open(path).map_err(read_error)?;
    let total_bytes = file.metadata().map(|m| m.len()).unwrap_or(0);
    let mut reader = BufReader::with_capacity(1 << 20, file);
    let mut report = ImportReport {
        dry_run,
        ..ImportReport::default()
    };
    let mut progress = Progress::new(total_bytes);
    let mut seen = DrySeen::default();
    let mut chunk = Vec::with_capacity(chunk_lines);
    let mut buffer = String::new();
    let mut bytes_read = 0u64;
    loop {
        buffer.clear();
        let n = reader.read_line(&mut buffer).map_err(read_error)?;
        if n == 0 {
            break;
        }
        bytes_read += n as u64;
        report.lines += 1;
        let text = buffer.trim_end_matches(['\n', '\r']);
        if text.trim().is_empty() {
            continue; // a blank line (a trailing newline) holds no member
        }
        let parsed = if text.len() > MAX_LINE_BYTES {
            Err(vec![BadLine {
                line_no: report.lines,
                field: String::new(),
                problem: format!("longer than {MAX_LINE_BYTES} bytes"),
            }])
        } else {
            parse_line(report.lines, text, engine.now())
        };
        match parsed.and_then(|line| seen.check(dry_run, line)) {
            Ok(Some(line)) => chunk.push(line),
            // Repeats an external_id of an earlier line: a real run skips it as imported.
            Ok(None) => report.already_imported += 1,
            Err(bad) => report_bad(&mut report, bad, out),
        }
        if chunk.len() >= chunk_lines {
            run_chunk(engine, &mut chunk, &mut report, out).await?;
            progress.show(&report, bytes_read);
        }
    }
    run_chunk(engine, &mut chunk, &mut report, out).await?;
    progress.finish(&report);
    Ok(report)
}

fn report_bad(report: &mut ImportReport, bad: Vec<BadLine>, out: &mut dyn Write) {
    for line in &bad {
        // A closed stdout must not stop the import: the summary counts them all.
        let _ = writeln!(out, "{line}");
    }
    report.bad_lines.extend(bad);
}

async fn run_chunk(
    engine: &Engine,
    chunk: &mut Vec<MemberImport>,
    report: &mut ImportReport,
    out: &mut dyn Write,
) -> Result<(), ImportError> {
    if chunk.is_empty() {
        return Ok(());
    }
    let points: HashMap<u64, i64> = chunk
        .iter()
        .map(|l| (l.line_no, l.points.iter().map(|(p, _)| p).sum()))
        .collect();
    let outcomes = engine.import_chunk(chunk, report.dry_run).await?;
    for (line_no, outcome) in outcomes {
        match outcome {
            LineOutcome::Imported { .. } => {
                report.imported += 1;
                report.points_imported += points.get(&line_no).copied().unwrap_or(0);
            }
            LineOutcome::AlreadyImported { .. } => report.already_imported += 1,
            LineOutcome::Refused { field, problem } => {
                let bad = BadLine {
                    line_no,
                    field,
                    problem,
                };
                report_bad(report, vec![bad], out);
            }
        }
    }
    chunk.clear();
    Ok(())
}

/// A dry run writes nothing, so the database cannot tell a later chunk that an earlier one
/// took an identifier: the run remembers them itself (a real run has the database do it).
#[derive(Default)]
struct DrySeen {
    identifiers: HashMap<Identifier, u64>,
    external_ids: HashSet<String>,
}

impl DrySeen {
    /// The line, or None when (dry) it repeats an earlier line's external_id.
    fn check(
        &mut self,
        dry_run: bool,
        line: MemberImport,
    ) -> Result<Option<MemberImport>, Vec<BadLine>> {
        if !dry_run {
            return Ok(Some(line));
        }
        if !self.external_ids.insert(line.external_id.clone()) {
            return Ok(None);
        }
        for (i, identifier) in line.identifiers.iter().enumerate() {
            if let Some(first) = self.identifiers.get(identifier) {
                return Err(vec![BadLine {
                    line_no: line.line_no,
                    field: format!("identifiers[{i}]"),
                    problem: format!("already linked to another member (line {first})"),
                }]);
            }
        }
        for identifier in &line.identifiers {
            self.identifiers.insert(identifier.clone(), line.line_no);
        }
        Ok(Some(line))
    }
}

/// Progress on stderr: a line rewritten in place on a terminal, a plain line every
/// [`PLAIN_EVERY`] otherwise (a log keeps them all).
struct Progress {
    started: Instant,
    last: Instant,
    total_bytes: u64,
    terminal: bool,
}

const PLAIN_EVERY: Duration = Duration::from_secs(10);
const TERMINAL_EVERY: Duration = Duration::from_millis(200);

impl Progress {
    fn new(total_bytes: u64) -> Self {
        let now = Instant::now();
        Self {
            started: now,
            last: now,
            total_bytes,
            terminal: std::io::stderr().is_terminal(),
        }
    }

    fn show(&mut self, report: &ImportReport, bytes_read: u64) {
        let every = if self.terminal {
            TERMINAL_EVERY
        } else {
            PLAIN_EVERY
        };
        if self.last.elapsed() < every {
            return;
        }
        self.last = Instant::now();
        let elapsed = self.started.elapsed().as_secs_f64();
        let rate = report.lines as f64 / elapsed.max(1e-3);
        let done = bytes_read as f64 / (self.total_bytes.max(1) as f64);
        let eta = if done > 0.0 {
            elapsed / done - elapsed
        } else {
            0.0
        };
        let line = format!(
            "{} lines ({:.0}%), {:.0} lines/s, ETA {:.0} s",
            report.lines,
            done * 100.0,
            rate,
            eta.max(0.0)
        );
        let mut err = std::io::stderr().lock();
        let _ = if self.terminal {
            write!(err, "\r\x1b[K{line}")
        } else {
            writeln!(err, "{line}")
        };
        let _ = err.flush();
    }

    fn finish(&self, report: &ImportReport) {
        if self.terminal && report.lines > 0 {
            eprintln!();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000, 0).expect("instant")
    }

    #[test]
    fn a_full_line_parses() {
        let text = r#"{"external_id":"old-1","identifiers":[{"kind":"card","value":"C1"}],
            "display_name":"Hana","attributes":{"segment":"gold"},
            "points":[{"points":120,"expires_at":"2030-01-01T00:00:00Z"},{"points":5}],
            "tier_id":"gold"}"#
            .replace('\n', "");
        let line = parse_line(7, &text, now()).expect("valid");
        assert_eq!(line.line_no, 7);
        assert_eq!(line.identifiers.len(), 1);
        assert_eq!(line.points.len(), 2);
        assert!(line.points[0].1.is_some() && line.points[1].1.is_none());
        assert_eq!(line.tier_id, "gold");
        assert_eq!(line.attributes["segment"], "gold");
    }

    #[test]
    fn every_problem_of_a_bad_line_is_named() {
        let text = r#"{"external_id":"","identifiers":[{"kind":"Card","value":"x"}],"attributes":{"Bad":"v"},"points":[{"points":0},{"points":5,"expires_at":"2020-01-01T00:00:00Z"},{"points":5,"expires_at":"soon"}],"tier_id":"a b"}"#;
        let bad = parse_line(3, text, now()).expect_err("bad");
        let fields: Vec<&str> = bad.iter().map(|b| b.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "external_id",
                "identifiers[0].kind",
                "attributes[Bad]",
                "points[0].points",
                "points[1].expires_at",
                "points[2].expires_at",
                "tier_id",
            ]
        );
        assert!(bad.iter().all(|b| b.line_no == 3));
        assert!(bad[0].to_string().starts_with("line 3: external_id: "));
    }

    #[test]
    fn malformed_json_and_unknown_fields_are_bad_lines() {
        for text in ["{not json", r#"{"external_id":"a","pionts":[]}"#, "[1,2]"] {
            let bad = parse_line(1, text, now()).expect_err(text);
            assert_eq!(bad.len(), 1, "{text}");
            assert!(
                bad[0]
                    .to_string()
                    .starts_with("line 1: not a valid member line")
            );
        }
    }
}
