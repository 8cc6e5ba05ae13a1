//! `omo verify`: passes on a healthy ledger, fails (exit 1) on one altered with plain SQL.

use std::process::Command;

use crate::helpers::{Backend, TestApp, card_ref, store_sale};

crate::both_backends! {
    verify_detects_a_tampered_balance => verify_detects_a_tampered_balance,
    verify_detects_a_tampered_posting => verify_detects_a_tampered_posting,
}

fn omo_verify(database_url: &str) -> (i32, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_omo"))
        .args(["verify", "--database-url", database_url])
        .env_remove("OMO_DATABASE_URL")
        .output()
        .expect("omo verify runs");
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
    )
}

async fn tamper(app: &TestApp, sql: &str) {
    use sqlx::Executor;
    match app.backend {
        Backend::Sqlite => {
            let pool = sqlx::SqlitePool::connect(&app.database_url)
                .await
                .expect("sqlite");
            pool.execute(sql).await.expect("tamper");
        }
        Backend::Postgres => {
            let pool = sqlx::PgPool::connect(&app.database_url)
                .await
                .expect("postgres");
            pool.execute(sql).await.expect("tamper");
        }
    }
}

async fn some_activity(app: &TestApp) -> String {
    let member_id = app.member_with_points("t1", 500).await;
    app.record_sale(store_sale("s", "R1", card_ref("t1"), "3000", 200))
        .await
        .expect("sale");
    member_id
}

async fn verify_detects_a_tampered_balance(app: &TestApp) {
    let member_id = some_activity(app).await;
    let (code, summary) = omo_verify(&app.database_url);
    assert_eq!(code, 0, "{summary}");
    assert!(summary.contains("all invariants hold"), "{summary}");

    tamper(
        app,
        &format!(
            "update balances set balance = balance + 1000 where account = 'member:{member_id}'"
        ),
    )
    .await;

    let (code, summary) = omo_verify(&app.database_url);
    assert_eq!(code, 1, "{summary}");
    assert!(summary.contains("VIOLATED"), "{summary}");
    assert!(
        summary.contains(&format!("member:{member_id}")),
        "{summary}"
    );
}

async fn verify_detects_a_tampered_posting(app: &TestApp) {
    some_activity(app).await;
    // One posting of the last transaction (its first), so the two sides no longer match.
    let last = "(select max(transaction_id) from postings)";
    let first_posting =
        format!("(select min(posting_no) from postings where transaction_id = {last})");
    tamper(app, &format!("update postings set amount = amount + 7 where transaction_id = {last} and posting_no = {first_posting}")).await;
    let (code, summary) = omo_verify(&app.database_url);
    assert_eq!(code, 1, "{summary}");
}
