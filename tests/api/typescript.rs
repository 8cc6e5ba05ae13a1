//! The TypeScript client (`clients/typescript`, generated from proto/) against the real server:
//! `clients/typescript/test/smoke.mjs` creates a member, records a sale, reads the balance over
//! Connect JSON and binary, and reads a Connect error's reason. Skipped with a note when node or
//! the client's node_modules (`.ci/run` installs them) are missing, except under CI=true.

use std::{path::Path, process::Command};

use omo::domain::auth::Role;

use crate::helpers::{Backend, TestApp, card_ref, spawn_app};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_typescript_client_sells_reads_and_gets_a_reason_on_sqlite() {
    if let Some(app) = spawn_app(Backend::Sqlite).await {
        typescript_client_against(&app).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_typescript_client_sells_reads_and_gets_a_reason_on_postgres() {
    if let Some(app) = spawn_app(Backend::Postgres).await {
        typescript_client_against(&app).await;
    }
}

async fn typescript_client_against(app: &TestApp) {
    let client = Path::new(env!("CARGO_MANIFEST_DIR")).join("clients/typescript");
    let node = Command::new("node").arg("--version").output().is_ok();
    let modules = client
        .join("node_modules/@connectrpc/connect-node")
        .exists();
    if !(node && modules) {
        assert_ne!(
            std::env::var("CI").as_deref(),
            Ok("true"),
            "the TypeScript client test cannot be skipped under CI=true (node: {node}, \
             clients/typescript/node_modules: {modules})"
        );
        eprintln!(
            "SKIPPED: the TypeScript client test needs node and `npm ci` in clients/typescript"
        );
        return;
    }
    let key = app
        .app()
        .engine()
        .create_api_key(Role::Admin, None, "typescript".into())
        .await
        .expect("key");
    let run = tokio::time::timeout(
        std::time::Duration::from_secs(60),
        tokio::process::Command::new("node")
            .arg("test/smoke.mjs")
            .arg(app.app().endpoint())
            .arg(&key)
            .current_dir(&client)
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("the client script finishes within 60 s")
    .expect("node runs");
    let output = format!(
        "{}{}",
        String::from_utf8_lossy(&run.stdout),
        String::from_utf8_lossy(&run.stderr)
    );
    assert!(run.status.success(), "TypeScript client failed:\n{output}");
    assert!(
        output.lines().any(|line| line == "reason MEMBER_NOT_FOUND"),
        "{output}"
    );
    // What the script wrote is there for a gRPC client too.
    let balance = app
        .admin
        .ledger()
        .get_balance(omo::proto::GetBalanceRequest {
            member: Some(card_ref("ts-1")),
        })
        .await
        .expect("the member the script made")
        .into_inner()
        .balance
        .expect("balance");
    assert!(balance.available_points > 0, "{balance:?}");
    app.verify_ok().await;
}
