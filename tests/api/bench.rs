//! `omo bench` smoke test: a tiny run on SQLite through the real binary (seed, child server,
//! gRPC load, report) exits 0 and measures something.

use std::process::Command;

#[test]
fn bench_smoke() {
    let dir = std::env::temp_dir().join(format!("omo_bench_smoke_{:016x}", rand::random::<u64>()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let json = dir.join("report.json");
    let output = Command::new(env!("CARGO_BIN_EXE_omo"))
        .args([
            "bench",
            "--members",
            "200",
            "--duration",
            "1s",
            "--concurrency",
            "4",
        ])
        .args(["--scenarios", "sale,balance"])
        .arg("--database-url")
        .arg(format!("sqlite://{}", dir.join("bench.db").display()))
        .arg("--json")
        .arg(&json)
        .output()
        .expect("omo bench runs");
    let report = std::fs::read_to_string(&json).unwrap_or_default();
    let _ = std::fs::remove_dir_all(&dir);

    assert!(
        output.status.success(),
        "omo bench failed: {}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    let report: serde_json::Value = serde_json::from_str(&report).expect("a JSON report");
    let scenario = |name: &str| {
        report["scenarios"]
            .as_array()
            .and_then(|all| all.iter().find(|s| s["name"] == name))
            .unwrap_or_else(|| panic!("no {name} in {report}"))
            .clone()
    };
    assert!(scenario("sale")["ops"].as_u64() > Some(0), "{report}");
    let balance = scenario("balance");
    assert!(balance["ops"].as_u64() > Some(0), "{report}");
    assert_eq!(balance["errors_total"].as_u64(), Some(0), "{report}");
    assert!(String::from_utf8_lossy(&output.stdout).contains("balance"));
}

/// The report scenarios over a tiny prefilled history, and the acceptance test of the seeding:
/// `omo verify` holds on the database the bench seeded and ran against (summaries included).
#[test]
fn bench_reports_smoke_and_the_seeded_ledger_verifies() {
    let dir =
        std::env::temp_dir().join(format!("omo_bench_reports_{:016x}", rand::random::<u64>()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let json = dir.join("report.json");
    let database_url = format!("sqlite://{}", dir.join("bench.db").display());
    let scenarios = "report-liability,report-campaign,report-activity-daily,report-activity";
    let output = Command::new(env!("CARGO_BIN_EXE_omo"))
        .args(["bench", "--members", "200", "--prefill-postings", "4000"])
        .args(["--duration", "300ms", "--concurrency", "2"])
        .args(["--scenarios", scenarios])
        .args(["--database-url", &database_url])
        .arg("--json")
        .arg(&json)
        .output()
        .expect("omo bench runs");
    let verified = Command::new(env!("CARGO_BIN_EXE_omo"))
        .args(["verify", "--database-url", &database_url])
        .output()
        .expect("omo verify runs");
    let report = std::fs::read_to_string(&json).unwrap_or_default();
    let _ = std::fs::remove_dir_all(&dir);

    assert!(
        output.status.success(),
        "omo bench failed: {}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        verified.status.success(),
        "omo verify failed after seeding: {}",
        String::from_utf8_lossy(&verified.stdout)
    );
    let report: serde_json::Value = serde_json::from_str(&report).expect("a JSON report");
    for name in scenarios.split(',') {
        let scenario = report["scenarios"]
            .as_array()
            .and_then(|all| all.iter().find(|s| s["name"] == name))
            .unwrap_or_else(|| panic!("no {name} in {report}"));
        assert!(scenario["ops"].as_u64() > Some(0), "{report}");
        assert_eq!(scenario["errors_total"].as_u64(), Some(0), "{report}");
    }
    let rows = &report["environment"]["summary_rows"];
    assert!(rows["activity_summary"].as_i64() > Some(0), "{report}");
    assert!(rows["coupon_summary"].as_i64() > Some(0), "{report}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("200 issued"), "{stderr}");
}
