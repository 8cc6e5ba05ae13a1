//! Latency samples and percentiles, and the report: a table per scenario, the ratios, the
//! server's RSS and the environment, printed by `Display` and written as JSON by serde.

use std::{collections::BTreeMap, fmt, time::Duration};

use serde::Serialize;

use super::{BenchArgs, setup::SetupTimings};

/// What a load run measured: the latency of every successful operation, failures by kind.
#[derive(Debug, Default)]
pub struct Sample {
    pub latency_us: Vec<u32>,
    pub errors: BTreeMap<String, u64>,
}

impl Sample {
    pub fn record_ok(&mut self, latency: Duration) {
        let latency_us = u32::try_from(latency.as_micros()).unwrap_or(u32::MAX);
        self.latency_us.push(latency_us);
    }

    pub fn record_error(&mut self, key: String) {
        *self.errors.entry(key).or_default() += 1;
    }

    pub fn merge(&mut self, other: Sample) {
        self.latency_us.extend(other.latency_us);
        for (key, count) in other.errors {
            *self.errors.entry(key).or_default() += count;
        }
    }
}

/// The nearest-rank percentile of sorted latencies (0 when there are none).
fn percentile_us(sorted_us: &[u32], percent: f64) -> u32 {
    if sorted_us.is_empty() {
        return 0;
    }
    let rank = (percent / 100.0 * sorted_us.len() as f64).ceil() as usize;
    sorted_us[rank.clamp(1, sorted_us.len()) - 1]
}

fn ms(latency_us: u32) -> f64 {
    f64::from(latency_us) / 1000.0
}

#[derive(Debug, Clone, Serialize)]
pub struct ScenarioResult {
    pub name: String,
    /// Successful operations (a checkout's Authorize + Capture pair is one).
    pub ops: u64,
    pub elapsed_s: f64,
    pub ops_per_s: f64,
    pub p50_ms: f64,
    pub p95_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    pub errors_total: u64,
    /// Failures by status code (and ErrorInfo reason when there is one).
    pub errors: BTreeMap<String, u64>,
    /// What a baseline measured, when the name alone does not say (the SQL floor).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub measured: Option<String>,
}

impl ScenarioResult {
    pub fn new(name: &str, mut sample: Sample, elapsed: Duration) -> Self {
        sample.latency_us.sort_unstable();
        let sorted_us = &sample.latency_us;
        let ops = sorted_us.len() as u64;
        let elapsed_s = elapsed.as_secs_f64();
        ScenarioResult {
            name: name.to_string(),
            ops,
            elapsed_s,
            ops_per_s: if elapsed_s > 0.0 {
                ops as f64 / elapsed_s
            } else {
                0.0
            },
            p50_ms: ms(percentile_us(sorted_us, 50.0)),
            p95_ms: ms(percentile_us(sorted_us, 95.0)),
            p99_ms: ms(percentile_us(sorted_us, 99.0)),
            max_ms: ms(sorted_us.last().copied().unwrap_or(0)),
            errors_total: sample.errors.values().sum(),
            errors: sample.errors,
            measured: None,
        }
    }

    /// The same result, saying what it measured.
    pub fn measuring(self, what: impl Into<String>) -> Self {
        ScenarioResult {
            measured: Some(what.into()),
            ..self
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Ratio {
    pub name: String,
    pub value: f64,
}

/// The server's resident set size while `mixed` ran, from `/proc/<pid>/status`.
#[derive(Debug, Clone, Serialize)]
pub struct RssReport {
    /// Highest VmRSS sampled during `mixed`.
    pub peak_kib: u64,
    /// VmRSS at the end of `mixed`.
    pub end_kib: u64,
    /// VmHWM: the kernel's peak RSS over the server's whole life.
    pub lifetime_peak_kib: u64,
    pub samples: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Environment {
    pub backend: String,
    pub target: Option<String>,
    pub members: u64,
    pub prefill_postings: u64,
    pub concurrency: usize,
    pub channels: usize,
    /// PURCHASE rules active during the run (`--rules`).
    pub rules: usize,
    /// Whether one webhook was subscribed to `points.earned` (`--webhook`).
    pub webhook: bool,
    /// The hot campaign's issue limit (`--hot-issue-limit`; 0: none).
    pub hot_issue_limit: i32,
    pub duration_s: f64,
    pub cores: usize,
    /// Time the bulk seeding took (local runs).
    pub seed_s: Option<f64>,
    /// Time rebuilding the report summaries from the seeded ledger took (local runs).
    pub rebuild_s: Option<f64>,
    /// Rows of each report summary table after that rebuild.
    pub summary_rows: BTreeMap<String, i64>,
}

impl Environment {
    pub fn new(args: &BenchArgs, backend: String, timings: &SetupTimings) -> Self {
        Environment {
            backend,
            target: args.target.clone(),
            members: args.members,
            // Postings are prefilled in pairs.
            prefill_postings: args.prefill_postings / 2 * 2,
            concurrency: args.concurrency,
            channels: args.channels,
            rules: args.rules,
            webhook: args.webhook,
            hot_issue_limit: args.hot_issue_limit,
            duration_s: args.duration.as_secs_f64(),
            cores: std::thread::available_parallelism().map_or(1, usize::from),
            seed_s: timings.seed_s,
            rebuild_s: timings.rebuild_s,
            summary_rows: timings
                .summary_rows
                .iter()
                .map(|(table, rows)| (table.to_string(), *rows))
                .collect(),
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub scenarios: Vec<ScenarioResult>,
    pub ratios: Vec<Ratio>,
    pub server_rss: Option<RssReport>,
    pub environment: Environment,
}

/// Scenarios compared with the gRPC ceiling.
const AGAINST_CEILING: [&str; 5] = ["sale", "checkout", "balance", "hot", "mixed"];

impl Report {
    pub fn new(
        environment: Environment,
        scenarios: Vec<ScenarioResult>,
        server_rss: Option<RssReport>,
    ) -> Self {
        let ratios = ratios(&scenarios);
        Report {
            scenarios,
            ratios,
            server_rss,
            environment,
        }
    }

    pub fn scenario(&self, name: &str) -> Option<&ScenarioResult> {
        self.scenarios.iter().find(|s| s.name == name)
    }
}

/// The ratios #24 sets goals for (hot, checkout, location and track-event over sale, sale over
/// the SQL floor) and each scenario over the gRPC ceiling, in ops/s, where both were run.
fn ratios(scenarios: &[ScenarioResult]) -> Vec<Ratio> {
    let ops_per_s = |name: &str| {
        scenarios
            .iter()
            .find(|s| s.name == name)
            .map(|s| s.ops_per_s)
    };
    let mut pairs = vec![
        ("hot", "sale"),
        ("checkout", "sale"),
        ("location", "sale"),
        ("track-event", "sale"),
        ("sale", "sql-floor"),
    ];
    pairs.extend(AGAINST_CEILING.iter().map(|name| (*name, "grpc-ceiling")));
    pairs
        .into_iter()
        .filter_map(|(top, bottom)| match (ops_per_s(top), ops_per_s(bottom)) {
            (Some(top_ops), Some(bottom_ops)) if bottom_ops > 0.0 => Some(Ratio {
                name: format!("{top} / {bottom}"),
                value: top_ops / bottom_ops,
            }),
            _ => None,
        })
        .collect()
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_table(f, &self.scenarios)?;
        write_errors(f, &self.scenarios)?;
        if !self.ratios.is_empty() {
            writeln!(f, "\nratios (ops/s):")?;
            for ratio in &self.ratios {
                writeln!(f, "  {:<26} {:>8.3}", ratio.name, ratio.value)?;
            }
        }
        if let Some(rss) = &self.server_rss {
            writeln!(
                f,
                "\nserver RSS during mixed: peak {:.1} MiB, at end {:.1} MiB \
                 (lifetime peak VmHWM {:.1} MiB; {} samples every 200 ms)",
                mib(rss.peak_kib),
                mib(rss.end_kib),
                mib(rss.lifetime_peak_kib),
                rss.samples
            )?;
        }
        write_environment(f, &self.environment)
    }
}

fn write_table(f: &mut fmt::Formatter<'_>, scenarios: &[ScenarioResult]) -> fmt::Result {
    // As wide as the longest name (the report scenarios' are long).
    let width = scenarios
        .iter()
        .map(|s| s.name.len())
        .chain([14])
        .max()
        .unwrap_or(14);
    writeln!(
        f,
        "{:<width$} {:>10} {:>9} {:>9} {:>9} {:>8}",
        "scenario", "ops/s", "p50 ms", "p95 ms", "p99 ms", "errors"
    )?;
    for s in scenarios {
        writeln!(
            f,
            "{:<width$} {:>10.1} {:>9.2} {:>9.2} {:>9.2} {:>8}",
            s.name, s.ops_per_s, s.p50_ms, s.p95_ms, s.p99_ms, s.errors_total
        )?;
    }
    for s in scenarios {
        if let Some(measured) = &s.measured {
            writeln!(f, "  {}: {measured}", s.name)?;
        }
    }
    Ok(())
}

fn write_errors(f: &mut fmt::Formatter<'_>, scenarios: &[ScenarioResult]) -> fmt::Result {
    let failing: Vec<&ScenarioResult> = scenarios.iter().filter(|s| s.errors_total > 0).collect();
    if failing.is_empty() {
        return Ok(());
    }
    writeln!(f, "\nerrors by status:")?;
    for s in failing {
        let listed: Vec<String> = s.errors.iter().map(|(k, n)| format!("{k}: {n}")).collect();
        writeln!(f, "  {:<12} {}", s.name, listed.join(", "))?;
    }
    Ok(())
}

fn write_environment(f: &mut fmt::Formatter<'_>, env: &Environment) -> fmt::Result {
    writeln!(
        f,
        "\nenvironment: backend {}, members {}, prefilled postings {}, concurrency {}, \
         channels {}, PURCHASE rules {}, webhook {}, hot issue limit {}, duration {:.1} s per \
         scenario, {} cores",
        env.backend,
        env.members,
        env.prefill_postings,
        env.concurrency,
        env.channels,
        env.rules,
        if env.webhook {
            "on points.earned"
        } else {
            "none"
        },
        env.hot_issue_limit,
        env.duration_s,
        env.cores
    )?;
    if let Some(seed_s) = env.seed_s {
        writeln!(f, "seeding by bulk SQL took {seed_s:.2} s")?;
    }
    if let Some(rebuild_s) = env.rebuild_s {
        let listed: Vec<String> = env
            .summary_rows
            .iter()
            .map(|(table, rows)| format!("{table} {rows}"))
            .collect();
        writeln!(
            f,
            "rebuilding the report summaries took {rebuild_s:.2} s; summary rows: {}",
            listed.join(", ")
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_nearest_rank() {
        let sorted_us: Vec<u32> = (1..=100).collect();
        assert_eq!(percentile_us(&sorted_us, 50.0), 50);
        assert_eq!(percentile_us(&sorted_us, 99.0), 99);
        assert_eq!(percentile_us(&[7], 95.0), 7);
        assert_eq!(percentile_us(&[], 50.0), 0);
    }

    #[test]
    fn ratios_need_both_sides() {
        let result = |name: &str, ops: u64| {
            let sample = Sample {
                latency_us: vec![1000; ops as usize],
                errors: BTreeMap::new(),
            };
            ScenarioResult::new(name, sample, Duration::from_secs(1))
        };
        let ratios = ratios(&[
            result("grpc-ceiling", 100),
            result("sale", 20),
            result("hot", 10),
        ]);
        let names: Vec<&str> = ratios.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(
            names,
            ["hot / sale", "sale / grpc-ceiling", "hot / grpc-ceiling"]
        );
        assert!((ratios[0].value - 0.5).abs() < 1e-9);
    }
}
