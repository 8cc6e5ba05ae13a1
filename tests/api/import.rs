//! `omo import members` and `omo export`, run as the `omo` binary against the test server's
//! database: balances, lots and expiries right, `omo verify` passes, re-runs add nothing, a
//! stopped run resumes to exact totals, bad lines are named and a dry run writes nothing, and
//! exports hold what is there.

use std::{path::PathBuf, process::Command};

use tonic::Code;

use crate::helpers::{Backend, TestApp, card_ref, get_member_as};
use omo::proto;

crate::both_backends! {
    an_import_books_members_balances_and_expiries => an_import_books_members_balances_and_expiries,
    a_rerun_adds_nothing_and_a_stopped_run_resumes_exactly => a_rerun_adds_nothing_and_a_stopped_run_resumes_exactly,
    bad_lines_are_named_and_a_dry_run_writes_nothing => bad_lines_are_named_and_a_dry_run_writes_nothing,
    exports_hold_what_is_there => exports_hold_what_is_there,
    verify_catches_an_opening_balance_without_its_record => verify_catches_an_opening_balance_without_its_record,
}

/// A directory of its own for a test's files, removed when dropped.
struct Files(PathBuf);

impl Files {
    fn new() -> Self {
        let dir = std::env::temp_dir().join(format!("omo_import_{:016x}", rand::random::<u64>()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        Self(dir)
    }

    fn write(&self, name: &str, lines: &[String]) -> String {
        let path = self.0.join(name);
        std::fs::write(&path, lines.join("\n") + "\n").expect("write file");
        path.display().to_string()
    }

    fn path(&self, name: &str) -> String {
        self.0.join(name).display().to_string()
    }
}

impl Drop for Files {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Runs `omo` with `args` and `--database-url`; (exit code, stdout).
fn omo(database_url: &str, args: &[&str]) -> (i32, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_omo"))
        .args(args)
        .args(["--database-url", database_url])
        .env_remove("OMO_DATABASE_URL")
        .output()
        .expect("omo runs");
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
    )
}

fn import(app: &TestApp, file: &str, extra: &[&str]) -> (i32, String) {
    let mut args = vec!["import", "members", file];
    args.extend_from_slice(extra);
    omo(&app.database_url, &args)
}

fn verify_passes(app: &TestApp) {
    let (code, summary) = omo(&app.database_url, &["verify"]);
    assert_eq!(code, 0, "{summary}");
    assert!(summary.contains("all invariants hold"), "{summary}");
}

/// A member line: card `C<n>`, `points` as (points, expiry or none).
fn line(n: u32, points: &[(i64, Option<&str>)]) -> String {
    let points: Vec<serde_json::Value> = points
        .iter()
        .map(|(p, at)| match at {
            Some(at) => serde_json::json!({"points": p, "expires_at": at}),
            None => serde_json::json!({"points": p}),
        })
        .collect();
    serde_json::json!({
        "external_id": format!("old-{n}"),
        "identifiers": [{"kind": "card", "value": format!("C{n}")}],
        "display_name": format!("Imported {n}"),
        "attributes": {"segment": "gold", "home_store": format!("s{n}")},
        "points": points,
    })
    .to_string()
}

/// A member line with the old program's tier.
fn line_in_tier(n: u32, tier_id: &str) -> String {
    let mut line: serde_json::Value = serde_json::from_str(&line(n, &[])).unwrap();
    line["tier_id"] = tier_id.into();
    line.to_string()
}

async fn member(app: &TestApp, n: u32) -> Result<proto::Member, tonic::Status> {
    get_member_as(&app.admin, card_ref(&format!("C{n}"))).await
}

async fn an_import_books_members_balances_and_expiries(app: &TestApp) {
    let files = Files::new();
    let file = files.write(
        "members.jsonl",
        &[
            line(
                1,
                &[
                    (120, Some("2031-03-01T00:00:00Z")),
                    (30, Some("2030-06-01T00:00:00Z")),
                ],
            ),
            line(2, &[]),
            line(3, &[(7, None)]),
            line_in_tier(4, "silver"),
            line_in_tier(5, "platinum"),
        ],
    );
    app.set_program(|program| {
        program.tiers = vec![proto::Tier {
            tier_id: "silver".into(),
            name: "Silver".into(),
            min_spend: "10000".into(),
            earn_multiplier: "1.5".into(),
        }];
    })
    .await;

    let (code, out) = import(app, &file, &[]);

    assert_eq!(code, 1, "a bad line: {out}");
    assert!(
        out.contains("imported 4 members with 157 points; 0 already imported; 1 bad lines"),
        "{out}"
    );
    assert!(out.contains("line 5: tier_id"), "{out}");
    let silver = member(app, 4).await.expect("a member in a tier");
    assert_eq!(
        silver.tier.map(|tier| tier.tier_id).as_deref(),
        Some("silver")
    );
    let first = member(app, 1).await.expect("imported member");
    assert_eq!(first.display_name, "Imported 1");
    assert_eq!(first.attributes["segment"], "gold");
    assert_eq!(first.attributes["home_store"], "s1");
    let balance = app.balance(&first.member_id).await;
    assert_eq!(balance.available_points, 150);
    let mut expiring: Vec<(i64, i64)> = balance
        .expiring
        .iter()
        .map(|e| (e.points, e.expires_at.as_ref().expect("expiry").seconds))
        .collect();
    expiring.sort();
    assert_eq!(
        expiring,
        [(30, 1_906_502_400), (120, 1_930_089_600)],
        "one lot per points entry, each with its expiry"
    );
    let second = member(app, 2).await.expect("a member without points");
    assert_eq!(app.balance(&second.member_id).await.available_points, 0);
    let third = member(app, 3).await.expect("imported member");
    assert_eq!(app.balance(&third.member_id).await.available_points, 7);
    let journal = crate::helpers::all_transactions_as(&app.admin, &first.member_id).await;
    assert_eq!(journal.len(), 1);
    assert_eq!(journal[0].kind, "import");
    assert_eq!(journal[0].postings[0].from_account, "program:imported");
    verify_passes(app);
}

async fn a_rerun_adds_nothing_and_a_stopped_run_resumes_exactly(app: &TestApp) {
    let files = Files::new();
    let lines: Vec<String> = (1..=7)
        .map(|n| line(n, &[(i64::from(n) * 10, Some("2031-01-01T00:00:00Z"))]))
        .collect();
    // A run stopped after its first chunks leaves whole chunks: as if it had read only them.
    let stopped = files.write("first.jsonl", &lines[..4]);
    let full = files.write("all.jsonl", &lines);

    let (code, out) = import(app, &stopped, &["--chunk-lines", "2"]);
    assert_eq!(code, 0, "{out}");
    let (code, out) = import(app, &full, &["--chunk-lines", "3"]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("imported 3 members with 180 points; 4 already imported"),
        "{out}"
    );
    let (code, out) = import(app, &full, &[]);

    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("imported 0 members with 0 points; 7 already imported"),
        "{out}"
    );
    let mut total = 0;
    for n in 1..=7 {
        let member = member(app, n).await.expect("imported once");
        total += app.balance(&member.member_id).await.available_points;
    }
    assert_eq!(total, 280, "10 + 20 + ... + 70, each once");
    let (code, out) = omo(
        &app.database_url,
        &["export", "members", "--to", &files.path("members.jsonl")],
    );
    assert_eq!(code, 0, "{out}");
    let exported = std::fs::read_to_string(files.path("members.jsonl")).expect("export");
    assert_eq!(exported.lines().count(), 7, "no member twice");
    verify_passes(app);
}

async fn bad_lines_are_named_and_a_dry_run_writes_nothing(app: &TestApp) {
    app.create_member("TAKEN").await;
    let files = Files::new();
    let mut taken = serde_json::from_str::<serde_json::Value>(&line(5, &[(5, None)])).unwrap();
    taken["identifiers"] = serde_json::json!([{"kind": "card", "value": "TAKEN"}]);
    let file = files.write(
        "members.jsonl",
        &[
            line(1, &[(10, None)]),
            "{\"external_id\": \"old-2\", ".to_string(),
            line(3, &[(0, None)]),
            line(4, &[(4, Some("2020-01-01T00:00:00Z"))]),
            taken.to_string(),
            line(6, &[(6, None)]),
            // The same external record again: the same member, skipped.
            line(1, &[(10, None)]),
        ],
    );

    let (code, out) = import(app, &file, &["--dry-run"]);

    assert_eq!(code, 1, "{out}");
    for expected in [
        "line 2: not a valid member line",
        "line 3: points[0].points: must be between 1",
        "line 4: points[0].expires_at: must be in the future",
        "line 5: identifiers[0]: already linked to another member",
    ] {
        assert!(out.contains(expected), "{expected:?} missing from:\n{out}");
    }
    assert!(
        out.contains("would import 2 members with 16 points; 1 already imported; 4 bad lines"),
        "{out}"
    );
    assert!(
        !out.contains("line 1:") && !out.contains("line 6:"),
        "{out}"
    );
    let status = member(app, 1).await.expect_err("a dry run writes nothing");
    assert_eq!(status.code(), Code::NotFound);

    let (code, out) = import(app, &file, &[]);

    assert_eq!(code, 1, "bad lines make the run fail: {out}");
    assert!(
        out.contains("imported 2 members with 16 points; 1 already imported; 4 bad lines"),
        "{out}"
    );
    assert!(out.contains("line 5: identifiers[0]"), "{out}");
    member(app, 1).await.expect("good lines are imported");
    member(app, 6).await.expect("good lines are imported");
    let taken_owner = get_member_as(&app.admin, card_ref("TAKEN")).await.unwrap();
    assert_eq!(taken_owner.display_name, "member TAKEN", "not taken over");
    verify_passes(app);
}

async fn exports_hold_what_is_there(app: &TestApp) {
    let files = Files::new();
    let file = files.write(
        "members.jsonl",
        &[
            line(1, &[(10, None), (5, Some("2031-01-01T00:00:00Z"))]),
            line(2, &[(20, None)]),
        ],
    );
    let (code, out) = import(app, &file, &[]);
    assert_eq!(code, 0, "{out}");
    // A member created and credited through the API is exported too.
    let api_member = app.member_with_points("API1", 40).await;
    app.admin
        .members()
        .update_member(proto::UpdateMemberRequest {
            request_id: "attrs".into(),
            member: Some(crate::helpers::member_ref(&api_member)),
            display_name: String::new(),
            attributes: [("segment".to_string(), "a,b \"quoted\"".to_string())].into(),
            update_mask: Some(prost_types::FieldMask {
                paths: vec!["attributes".into()],
            }),
        })
        .await
        .expect("update");

    let export = |what: &str, format: &str, extra: &[&str]| {
        let to = files.path(&format!("{what}-{format}-{}", extra.len()));
        let mut args = vec!["export", what, "--to", &to, "--format", format];
        args.extend_from_slice(extra);
        let (code, out) = omo(&app.database_url, &args);
        assert_eq!(code, 0, "{out}");
        std::fs::read_to_string(&to).expect("exported file")
    };

    let journal = export("journal", "jsonl", &[]);
    let entries: Vec<serde_json::Value> = journal
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect();
    assert_eq!(entries.len(), 3, "two imports and one adjustment");
    let imported: i64 = entries
        .iter()
        .filter(|e| e["kind"] == "import")
        .map(|e| e["postings"][0]["amount"].as_i64().unwrap())
        .sum();
    assert_eq!(imported, 35);
    let journal_csv = export("journal", "csv", &[]);
    let mut rows = journal_csv.lines();
    assert_eq!(
        rows.next(),
        Some(
            "transaction_id,posting_no,kind,member_id,occurred_at,recorded_at,channel,store_id,\
             order_id,from_account,to_account,asset,amount,metadata"
        )
    );
    assert_eq!(rows.count(), 3, "one row per posting");

    let members = export("members", "jsonl", &[]);
    assert_eq!(members.lines().count(), 3);
    let members_csv = export("members", "csv", &[]);
    assert!(members_csv.starts_with(
        "member_id,display_name,state,merged_into,created_at,identifiers,attributes\n"
    ));
    assert_eq!(members_csv.lines().count(), 4);
    assert!(
        members_csv.contains(r#""{""segment"":""a,b \""quoted\""""}""#),
        "CSV quoting of a cell with commas and quotes:\n{members_csv}"
    );
    let lots = export("lots", "csv", &[]);
    assert_eq!(lots.lines().count(), 1 + 4, "header and four lots");
    let future = export("members", "jsonl", &["--since", "2099-01-01T00:00:00Z"]);
    assert_eq!(future, "", "--since after every member: nothing");
    let all_since = export("journal", "jsonl", &["--since", "2000-01-01T00:00:00Z"]);
    assert_eq!(all_since.lines().count(), 3);
}

/// Without its import record an opening balance could be imported again: `omo verify` says so.
async fn verify_catches_an_opening_balance_without_its_record(app: &TestApp) {
    use sqlx::Executor;
    let files = Files::new();
    let file = files.write(
        "members.jsonl",
        &[line(1, &[(10, None)]), line(2, &[(20, None)])],
    );
    let (code, out) = import(app, &file, &[]);
    assert_eq!(code, 0, "{out}");
    verify_passes(app);
    let sql = "delete from member_imports where external_id = 'old-2'";
    match app.backend {
        Backend::Sqlite => {
            let pool = sqlx::SqlitePool::connect(&app.database_url).await.unwrap();
            pool.execute(sql).await.expect("tamper");
        }
        Backend::Postgres => {
            let pool = sqlx::PgPool::connect(&app.database_url).await.unwrap();
            pool.execute(sql).await.expect("tamper");
        }
    }

    let (code, summary) = omo(&app.database_url, &["verify"]);

    assert_eq!(code, 1, "{summary}");
    assert!(
        summary.contains(
            "[VIOLATED] each imported opening balance is booked once, under its import record"
        ),
        "{summary}"
    );
    assert!(
        summary.contains("has no import record of its member"),
        "{summary}"
    );
}
