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
