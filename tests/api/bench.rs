//! `omo bench` smoke tests: tiny runs on SQLite through the real binary (seed, child server,
//! gRPC load, report) exit 0 and measure something.

use std::process::{Command, Output};

/// A finished bench run: its process output, its JSON report, and (when asked) the output of
/// `omo verify` on the database it seeded and ran against.
struct BenchRun {
    output: Output,
    report: serde_json::Value,
    verified: Option<Output>,
}

impl BenchRun {
    /// Runs `omo bench ARGS` on a fresh SQLite file in a directory of its own (removed after).
    fn new(args: &[&str], verify: bool) -> Self {
        let dir = std::env::temp_dir().join(format!("omo_bench_{:016x}", rand::random::<u64>()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let json = dir.join("report.json");
        let database_url = format!("sqlite://{}", dir.join("bench.db").display());
        let output = Command::new(env!("CARGO_BIN_EXE_omo"))
            .arg("bench")
            .args(args)
            .args(["--database-url", &database_url])
            .arg("--json")
            .arg(&json)
            .output()
            .expect("omo bench runs");
        let verified = verify.then(|| {
            Command::new(env!("CARGO_BIN_EXE_omo"))
                .args(["verify", "--database-url", &database_url])
                .output()
                .expect("omo verify runs")
        });
        let report = std::fs::read_to_string(&json).unwrap_or_default();
        let _ = std::fs::remove_dir_all(&dir);
        assert!(
            output.status.success(),
            "omo bench failed: {}\n{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        let report = serde_json::from_str(&report).expect("a JSON report");
        BenchRun {
            output,
            report,
            verified,
        }
    }

    fn scenario(&self, name: &str) -> &serde_json::Value {
        let report = &self.report;
        report["scenarios"]
            .as_array()
            .and_then(|all| all.iter().find(|s| s["name"] == name))
            .unwrap_or_else(|| panic!("no {name} in {report}"))
    }
}

#[test]
fn bench_smoke() {
    let run = BenchRun::new(
        &[
            "--members",
            "200",
            "--duration",
            "1s",
            "--concurrency",
            "4",
            "--scenarios",
            "sale,balance,sql-floor",
        ],
        false,
    );
    let report = &run.report;
    assert!(run.scenario("sale")["ops"].as_u64() > Some(0), "{report}");
    let floor = run.scenario("sql-floor");
    assert!(floor["ops"].as_u64() > Some(0), "{report}");
    assert_eq!(floor["errors_total"].as_u64(), Some(0), "{report}");
    let ratios = report["ratios"].as_array().expect("ratios");
    assert!(
        ratios.iter().any(|r| r["name"] == "sale / sql-floor"),
        "{report}"
    );
    let balance = run.scenario("balance");
    assert!(balance["ops"].as_u64() > Some(0), "{report}");
    assert_eq!(balance["errors_total"].as_u64(), Some(0), "{report}");
    assert!(String::from_utf8_lossy(&run.output.stdout).contains("balance"));
}

/// The report scenarios over a tiny prefilled history, and the acceptance test of the seeding:
/// `omo verify` holds on the database the bench seeded and ran against (summaries included).
#[test]
fn bench_reports_smoke_and_the_seeded_ledger_verifies() {
    let scenarios = "report-liability,report-campaign,report-activity-daily,report-activity";
    let run = BenchRun::new(
        &[
            "--members",
            "200",
            "--prefill-postings",
            "4000",
            "--duration",
            "300ms",
            "--concurrency",
            "2",
            "--scenarios",
            scenarios,
        ],
        true,
    );
    let verified = run.verified.as_ref().expect("verified");
    assert!(
        verified.status.success(),
        "omo verify failed after seeding: {}",
        String::from_utf8_lossy(&verified.stdout)
    );
    let report = &run.report;
    for name in scenarios.split(',') {
        let scenario = run.scenario(name);
        assert!(scenario["ops"].as_u64() > Some(0), "{report}");
        assert_eq!(scenario["errors_total"].as_u64(), Some(0), "{report}");
    }
    let rows = &report["environment"]["summary_rows"];
    assert!(rows["activity_summary"].as_i64() > Some(0), "{report}");
    assert!(rows["coupon_summary"].as_i64() > Some(0), "{report}");
    let stderr = String::from_utf8_lossy(&run.output.stderr);
    assert!(stderr.contains("200 issued"), "{stderr}");
}
