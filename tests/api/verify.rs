//! `omo verify`: passes on a healthy ledger, fails (exit 1) on one altered with plain SQL.

use std::process::Command;

use crate::helpers::{Backend, TestApp, card_ref, store_sale};

crate::both_backends! {
    verify_detects_a_tampered_balance => verify_detects_a_tampered_balance,
    verify_detects_a_tampered_posting => verify_detects_a_tampered_posting,
    verify_names_an_altered_sealed_posting => verify_names_an_altered_sealed_posting,
    verify_names_a_deleted_sealed_transaction => verify_names_a_deleted_sealed_transaction,
    the_journal_refuses_updates_and_deletes => the_journal_refuses_updates_and_deletes,
    concurrent_sealers_build_one_chain => concurrent_sealers_build_one_chain,
    an_expected_head_catches_a_rewritten_chain => an_expected_head_catches_a_rewritten_chain,
}

fn omo_verify(database_url: &str) -> (i32, String) {
    omo_verify_with(database_url, &[])
}

fn omo_verify_with(database_url: &str, args: &[&str]) -> (i32, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_omo"))
        .args(["verify", "--database-url", database_url])
        .args(args)
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

/// Tampers with the journal the way someone with database access could: first out of the
/// way with the append-only triggers (dropped on SQLite; on PostgreSQL, a superuser's session
/// in replica mode fires no triggers), then plain SQL.
async fn tamper_journal(app: &TestApp, sql: &str) {
    let bypass = match app.backend {
        Backend::Sqlite => {
            "drop trigger transactions_no_update; drop trigger transactions_no_delete; \
             drop trigger postings_no_update; drop trigger postings_no_delete;"
        }
        Backend::Postgres => "set session_replication_role = replica;",
    };
    tamper(app, &format!("{bypass} {sql}")).await;
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
    tamper_journal(app, &format!("update postings set amount = amount + 7 where transaction_id = {last} and posting_no = {first_posting}")).await;
    let (code, summary) = omo_verify(&app.database_url);
    assert_eq!(code, 1, "{summary}");
}

/// Activity, sealed; returns the ids of the sealed transactions.
async fn sealed_activity(app: &TestApp) -> Vec<i64> {
    some_activity(app).await;
    app.record_sale(store_sale("s2", "R2", card_ref("t1"), "2000", 0))
        .await
        .expect("sale");
    let report = app.app().engine().seal().await.expect("seal");
    assert!(
        report.seals >= 1 && report.transactions_sealed >= 3,
        "{report:?}"
    );
    assert_eq!(report.lag_seconds, 0, "sealed to the end");
    let (code, summary) = omo_verify(&app.database_url);
    assert_eq!(code, 0, "{summary}");
    assert!(summary.contains("newest seal hash"), "{summary}");
    let report = app.app().engine().verify().await.expect("verify");
    assert!(report.chain.transactions_sealed >= 3);
    journal_ids(app).await
}

async fn journal_ids(app: &TestApp) -> Vec<i64> {
    let sql = "select transaction_id from transactions order by transaction_id";
    match app.backend {
        Backend::Sqlite => {
            let pool = sqlx::SqlitePool::connect(&app.database_url).await.unwrap();
            sqlx::query_scalar(sql).fetch_all(&pool).await.unwrap()
        }
        Backend::Postgres => {
            let pool = sqlx::PgPool::connect(&app.database_url).await.unwrap();
            sqlx::query_scalar(sql).fetch_all(&pool).await.unwrap()
        }
    }
}

async fn verify_names_an_altered_sealed_posting(app: &TestApp) {
    let ids = sealed_activity(app).await;
    // The second transaction of the journal, so that it is not simply the newest.
    let altered = ids[1];
    tamper_journal(
        app,
        &format!(
            "update postings set to_account = 'member:mallory' \
             where transaction_id = {altered} and posting_no = \
             (select min(posting_no) from postings where transaction_id = {altered})"
        ),
    )
    .await;

    let (code, summary) = omo_verify(&app.database_url);
    assert_eq!(code, 1, "{summary}");
    assert!(
        summary.contains(&format!(
            "[VIOLATED] 6. the journal matches its seals (hash chain)\n      - transaction {altered} was altered"
        )),
        "{summary}"
    );
}

async fn verify_names_a_deleted_sealed_transaction(app: &TestApp) {
    let ids = sealed_activity(app).await;
    let deleted = ids[ids.len() - 2];
    tamper_journal(
        app,
        &format!(
            "delete from postings where transaction_id = {deleted}; \
             delete from transactions where transaction_id = {deleted};"
        ),
    )
    .await;

    let (code, summary) = omo_verify(&app.database_url);
    assert_eq!(code, 1, "{summary}");
    assert!(
        summary.contains(&format!(
            "[VIOLATED] 6. the journal matches its seals (hash chain)\n      - transaction {deleted} was deleted"
        )),
        "{summary}"
    );
}

/// The newest seal hash a verify printed.
fn newest_seal_hash(summary: &str) -> String {
    let (_, hash) = summary
        .split_once("newest seal hash ")
        .unwrap_or_else(|| panic!("no hash in {summary}"));
    hash.lines().next().expect("a line").to_string()
}

/// An insider who alters the journal and then seals it all again gets a chain that verifies
/// by itself; the head kept outside the database (`--expect-head`) is no longer in it.
async fn an_expected_head_catches_a_rewritten_chain(app: &TestApp) {
    let ids = sealed_activity(app).await;
    let (_, summary) = omo_verify(&app.database_url);
    let head = newest_seal_hash(&summary);
    app.record_sale(store_sale("s3", "R3", card_ref("t1"), "1000", 0))
        .await
        .expect("sale");
    app.app().engine().seal().await.expect("seal");
    let (later, summary) = omo_verify_with(&app.database_url, &["--expect-head", &head]);
    assert_eq!(later, 0, "a newer chain descends from the head: {summary}");

    let (bypass, shift) = match app.backend {
        Backend::Sqlite => ("drop trigger journal_seals_no_delete;", "occurred_at + 1"),
        Backend::Postgres => ("", "occurred_at + interval '1 microsecond'"),
    };
    let altered = ids[1];
    tamper_journal(
        app,
        &format!(
            "{bypass} update transactions set occurred_at = {shift} \
             where transaction_id = {altered}; delete from journal_seals;"
        ),
    )
    .await;
    app.app()
        .engine()
        .seal()
        .await
        .expect("the chain sealed anew");
    let (_, alone) = omo_verify(&app.database_url);
    let (code, summary) = omo_verify_with(&app.database_url, &["--expect-head", &head]);

    assert!(
        alone.contains("[ok] 6. the journal matches its seals"),
        "{alone}"
    );
    assert_eq!(code, 1, "{summary}");
    assert!(
        summary.contains(&format!(
            "[VIOLATED] 6. the chain holds the expected head (--expect-head)\n      - no seal has hash {head}"
        )),
        "{summary}"
    );
}

/// Without tampering on purpose, the database itself refuses to change the journal.
async fn the_journal_refuses_updates_and_deletes(app: &TestApp) {
    sealed_activity(app).await;
    for sql in [
        "update postings set amount = amount + 1",
        "delete from postings",
        "update transactions set member_id = 'mallory'",
        "delete from journal_seals",
    ] {
        let refused = match app.backend {
            Backend::Sqlite => {
                let pool = sqlx::SqlitePool::connect(&app.database_url).await.unwrap();
                sqlx::query(sql).execute(&pool).await.err()
            }
            Backend::Postgres => {
                let pool = sqlx::PgPool::connect(&app.database_url).await.unwrap();
                sqlx::query(sql).execute(&pool).await.err()
            }
        };
        let error = refused.unwrap_or_else(|| panic!("{sql} was allowed"));
        assert!(error.to_string().contains("append-only"), "{sql}: {error}");
    }
    app.verify_ok().await;
}

/// Sealers racing (as on several replicas) still leave one unbroken chain over everything.
async fn concurrent_sealers_build_one_chain(app: &TestApp) {
    some_activity(app).await;
    let engine = app.app().engine().clone();
    let sealers = (0..4).map(|_| {
        let engine = engine.clone();
        tokio::spawn(async move { engine.seal().await.expect("seal") })
    });
    let mut sealed = 0;
    for sealer in sealers {
        sealed += sealer.await.unwrap().transactions_sealed;
    }
    let journal = journal_ids(app).await;
    assert_eq!(
        sealed,
        journal.len(),
        "each transaction sealed exactly once"
    );
    let report = engine.verify().await.expect("verify");
    assert!(report.ok(), "{}", report.summary());
    assert_eq!(report.chain.transactions_sealed, journal.len());
}

/// The report summaries are caches of sums over the ledger: a summary row that drifts from the
/// ledger is named by `omo verify` (check 7, with both figures), and a rebuild asked for in
/// `summary_rebuilds` (what migration 0008 leaves on a database that had a ledger) replaces the
/// summaries with the recomputation when the server starts.
mod summaries_drift_and_rebuild {
    use super::*;
    use crate::helpers::spawn_app;

    async fn scenario(backend: Backend) {
        let Some(mut app) = spawn_app(backend).await else {
            return;
        };
        some_activity(&app).await;
        let (code, summary) = omo_verify(&app.database_url);
        assert_eq!(code, 0, "{summary}");
        assert!(
            summary.contains("[ok] 7. the report summaries equal a recomputation"),
            "{summary}"
        );

        tamper(&app, "update activity_summary set orders = orders + 5").await;
        let (code, summary) = omo_verify(&app.database_url);
        assert_eq!(code, 1, "{summary}");
        assert!(
            summary.contains("[VIOLATED] 7. the report summaries"),
            "{summary}"
        );
        let named = summary
            .lines()
            .find(|line| line.contains("activity (Some(Store), \"shibuya\""))
            .unwrap_or_else(|| panic!("the store's day is named: {summary}"));
        assert!(
            named.contains("orders: 6") && named.contains("orders: 1"),
            "{named}"
        );

        tamper(
            &app,
            "insert into summary_rebuilds (reason) values ('test: a ledger from before 0008')",
        )
        .await;
        app.restart().await;
        let (code, summary) = omo_verify(&app.database_url);
        assert_eq!(code, 0, "{summary}");
        app.verify_ok().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn sqlite() {
        scenario(Backend::Sqlite).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn postgres() {
        scenario(Backend::Postgres).await;
    }
}

/// The sealer waits only for transactions that could still commit a journal id below its
/// horizon: an open transaction of a role that cannot write the journal (an analyst, a
/// monitoring agent) does not hold sealing up, and one of a role that can still does.
mod other_roles_sessions {
    use super::*;
    use crate::helpers::spawn_app;
    use omo::engine::SealReport;
    use sqlx::{Connection, Executor, PgConnection, PgPool};

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn postgres() {
        let Some(app) = spawn_app(Backend::Postgres).await else {
            return;
        };
        let admin = PgPool::connect(&app.database_url).await.unwrap();
        let role = format!("omo_test_reader_{:08x}", rand::random::<u32>());
        admin
            .execute(format!("create role {role} login").as_str())
            .await
            .unwrap();
        let outcome = sealing_beside(&app, &admin, &role).await;
        // The role is the server's, not the test database's: it must go whatever happened.
        admin
            .execute(format!("revoke all on transactions from {role}").as_str())
            .await
            .unwrap();
        admin
            .execute(format!("drop role {role}").as_str())
            .await
            .unwrap();
        let (while_reading, while_writing, after) = outcome;
        assert!(
            while_reading.seals >= 1,
            "a reader's open transaction held sealing up"
        );
        assert_eq!(
            while_writing.seals, 0,
            "a writer's open transaction was not waited for"
        );
        // The sale waited 30 s (of the clock) unsealed, then was sealed.
        assert_eq!(while_writing.lag_seconds, 30);
        assert!(after.seals >= 1 && after.lag_seconds == 0, "{after:?}");
    }

    /// Seals while `role` holds a transaction open: first as a reader, then as a role that
    /// may insert into the journal (30 s of the clock after a sale), then once it is gone.
    async fn sealing_beside(
        app: &TestApp,
        admin: &PgPool,
        role: &str,
    ) -> (SealReport, SealReport, SealReport) {
        let engine = app.app().engine();
        let url = app
            .database_url
            .replacen("postgres@", &format!("{role}@"), 1);
        let mut session = PgConnection::connect(&url)
            .await
            .expect("the role connects");
        session.execute("begin").await.unwrap();
        session.execute("select 1").await.unwrap();
        some_activity(app).await;
        let while_reading = engine.seal().await.expect("seal");

        admin
            .execute(format!("grant insert on transactions to {role}").as_str())
            .await
            .unwrap();
        session.execute("commit").await.unwrap();
        session.execute("begin").await.unwrap();
        session.execute("select 1").await.unwrap();
        app.record_sale(store_sale("s2", "R2", card_ref("t1"), "2000", 0))
            .await
            .expect("sale");
        app.clock.advance(chrono::Duration::seconds(30));
        let while_writing = engine.seal().await.expect("seal");
        session.execute("rollback").await.unwrap();
        session.close().await.unwrap();
        let after = engine.seal().await.expect("seal");
        (while_reading, while_writing, after)
    }
}
