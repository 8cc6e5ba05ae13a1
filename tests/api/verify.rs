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
    keyed_seals_verify_only_with_their_key => keyed_seals_verify_only_with_their_key,
    plain_seals_after_keyed_ones_are_caught => plain_seals_after_keyed_ones_are_caught,
    verify_refuses_a_database_it_would_migrate => verify_refuses_a_database_it_would_migrate,
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

/// Seal key files in a directory of their own, removed with it.
struct KeyFiles(std::path::PathBuf);

impl KeyFiles {
    fn new() -> KeyFiles {
        let dir = std::env::temp_dir().join(format!("omo_keys_{:016x}", rand::random::<u64>()));
        std::fs::create_dir_all(&dir).expect("key dir");
        KeyFiles(dir)
    }

    /// A file of 32 random bytes, with permissions `mode`.
    fn key(&self, name: &str, mode: u32) -> String {
        use std::os::unix::fs::PermissionsExt;
        let path = self.0.join(name);
        std::fs::write(&path, rand::random::<[u8; 32]>()).expect("key file");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).expect("chmod");
        path.display().to_string()
    }
}

impl Drop for KeyFiles {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Another server over `app`'s database (as a replica would be), serving with
/// `--seal-key-file key_file`; its sealer is driven by hand.
async fn keyed_replica(app: &TestApp, key_file: &str) -> omo::Application {
    let mut config = omo::Config::local(&app.database_url);
    config.seal_key_file = Some(key_file.into());
    omo::Application::build(&config, std::sync::Arc::new(app.clock.clone()))
        .await
        .expect("the keyed server starts")
}

/// A database sealed plain (as before keys), then by a server with a seal key: the chain turns
/// keyed; only the key checks the keyed seal's hash, a wrong key fails on it, and a server
/// without the key no longer extends the chain.
async fn keyed_seals_verify_only_with_their_key(app: &TestApp) {
    sealed_activity(app).await;
    let keys = KeyFiles::new();
    let (key, wrong) = (keys.key("seal.key", 0o600), keys.key("wrong.key", 0o600));
    let replica = keyed_replica(app, &key).await;
    app.record_sale(store_sale("s3", "R3", card_ref("t1"), "1000", 0))
        .await
        .expect("sale");
    let sealed = replica.engine().seal().await.expect("keyed seal");
    assert_eq!(sealed.seals, 1, "{sealed:?}");
    let report = replica.engine().verify().await.expect("verify");
    let keyed_no = report.chain.seals;
    assert!(report.ok() && keyed_no >= 2, "{}", report.summary());

    let (with_key, checked) = omo_verify_with(&app.database_url, &["--seal-key-file", &key]);
    let (without_key, unchecked) = omo_verify(&app.database_url);
    let (with_wrong, refused) = omo_verify_with(&app.database_url, &["--seal-key-file", &wrong]);

    assert_eq!(with_key, 0, "{checked}");
    assert!(
        checked
            .contains(" seals (1 keyed, checked with the seal key); newest seal hash hmac-sha256:"),
        "{checked}"
    );
    assert_eq!(without_key, 0, "links and digests hold: {unchecked}");
    assert!(
        unchecked.contains(" seals (1 keyed: their hashes NOT CHECKED without --seal-key-file"),
        "{unchecked}"
    );
    assert_eq!(with_wrong, 1, "{refused}");
    assert!(
        refused.contains(&format!(
            "[VIOLATED] 6. the journal matches its seals (hash chain)\n      - seal {keyed_no} does not match the seal key"
        )),
        "{refused}"
    );
    // A server without the key (or with another) would append plain seals: it refuses to.
    app.record_sale(store_sale("s4", "R4", card_ref("t1"), "1000", 0))
        .await
        .expect("sale");
    let keyless = app
        .app()
        .engine()
        .seal()
        .await
        .expect_err("no key, no seal");
    assert!(
        keyless
            .to_string()
            .contains(&format!("seal {keyed_no} is keyed")),
        "{keyless}"
    );
    let other = keyed_replica(app, &wrong).await;
    let mismatch = other
        .engine()
        .seal()
        .await
        .expect_err("another key, no seal");
    assert!(
        mismatch.to_string().contains("the seal key does not match"),
        "{mismatch}"
    );
}

/// What an insider without the key can do: seal the journal after the newest seal with omo's
/// own code, plain.
async fn forge_plain_seal(app: &TestApp) {
    let store = omo::store::open(&app.database_url).await.expect("store");
    let mut uow = store.begin().await.expect("begin");
    let previous = uow.last_seal().await.expect("last seal");
    let after = previous.as_ref().map_or(0, |seal| seal.last_transaction_id);
    let transactions = uow
        .journal_range(after, i64::MAX, i64::MAX)
        .await
        .expect("journal");
    let last = transactions
        .last()
        .expect("a journal to seal")
        .transaction_id;
    let sealed_at = chrono::Utc::now();
    let seal =
        omo::domain::seal::Seal::next(previous.as_ref(), last, &transactions, sealed_at, None);
    uow.insert_seal(&seal).await.expect("insert seal");
    uow.commit().await.expect("commit");
    store.close().await;
}

/// A sealed transaction altered, its keyed seal removed and the rest sealed again without the
/// key: the plain seal after a keyed one is named, with the key or without. Re-made plain from
/// the start, the chain holds by itself; the key shows its newest seal should be keyed.
async fn plain_seals_after_keyed_ones_are_caught(app: &TestApp) {
    let keys = KeyFiles::new();
    let key = keys.key("seal.key", 0o600);
    let replica = keyed_replica(app, &key).await;
    some_activity(app).await;
    replica.engine().seal().await.expect("keyed seal 1");
    app.record_sale(store_sale("s2", "R2", card_ref("t1"), "2000", 0))
        .await
        .expect("sale");
    let sealed = replica.engine().seal().await.expect("keyed seal 2");
    assert_eq!(sealed.seals, 1, "{sealed:?}");
    let (code, summary) = omo_verify_with(&app.database_url, &["--seal-key-file", &key]);
    assert_eq!(code, 0, "{summary}");
    assert!(summary.contains("(2 keyed, checked"), "{summary}");

    let altered = *journal_ids(app).await.last().expect("a journal");
    let (bypass, shift) = match app.backend {
        Backend::Sqlite => ("drop trigger journal_seals_no_delete;", "occurred_at + 1"),
        Backend::Postgres => ("", "occurred_at + interval '1 microsecond'"),
    };
    tamper_journal(
        app,
        &format!(
            "{bypass} update transactions set occurred_at = {shift} \
             where transaction_id = {altered}; delete from journal_seals where seal_no = 2;"
        ),
    )
    .await;
    forge_plain_seal(app).await;
    let plain_after_keyed = "[VIOLATED] 6. the journal matches its seals (hash chain)\n      \
                             - seal 2 is plain after a keyed seal";
    for args in [&["--seal-key-file", key.as_str()][..], &[]] {
        let (code, summary) = omo_verify_with(&app.database_url, args);
        assert_eq!(code, 1, "{args:?}: {summary}");
        assert!(summary.contains(plain_after_keyed), "{args:?}: {summary}");
    }

    // The triggers are out of the way on SQLite already.
    let bypass = match app.backend {
        Backend::Sqlite => "",
        Backend::Postgres => "set session_replication_role = replica;",
    };
    tamper(app, &format!("{bypass} delete from journal_seals;")).await;
    forge_plain_seal(app).await;
    let (alone, by_itself) = omo_verify(&app.database_url);
    let (code, summary) = omo_verify_with(&app.database_url, &["--seal-key-file", &key]);
    assert_eq!(
        alone, 0,
        "without the key a whole plain chain holds: {by_itself}"
    );
    assert_eq!(code, 1, "{summary}");
    assert!(
        summary.contains(
            "journal matches its seals (hash chain)\n      - the newest seal, 1, is plain"
        ),
        "{summary}"
    );
}

/// A missing SQLite file is refused (exit 1, naming it), and verify leaves no file behind: it
/// used to create, migrate and pass an empty database (a mistyped backup name "verified").
#[test]
fn verify_refuses_a_missing_sqlite_file_and_creates_none() {
    let dir = std::env::temp_dir().join(format!("omo-verify-missing-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("never-written.db");
    let output = Command::new(env!("CARGO_BIN_EXE_omo"))
        .args(["verify", "--database-url"])
        .arg(format!("sqlite://{}", file.display()))
        .env_remove("OMO_DATABASE_URL")
        .output()
        .expect("omo verify runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "stderr: {stderr}");
    assert!(stderr.contains("no database at"), "stderr: {stderr}");
    assert!(
        !String::from_utf8_lossy(&output.stdout).contains("all invariants hold"),
        "a missing database passed"
    );
    assert!(!file.exists(), "verify created {}", file.display());
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A database an older omo wrote (here: the newest migration's record removed, as if it had
/// never run) is refused, naming `omo migrate`, and verify does not migrate it: it never writes
/// to the database it checks.
async fn verify_refuses_a_database_it_would_migrate(app: &TestApp) {
    some_activity(app).await;
    tamper(
        app,
        "delete from _sqlx_migrations \
         where version = (select max(version) from _sqlx_migrations)",
    )
    .await;
    let output = Command::new(env!("CARGO_BIN_EXE_omo"))
        .args(["verify", "--database-url", &app.database_url])
        .env_remove("OMO_DATABASE_URL")
        .output()
        .expect("omo verify runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "stderr: {stderr}");
    assert!(
        stderr.contains("run `omo migrate` first"),
        "stderr: {stderr}"
    );
    // Still missing: verify applied nothing.
    let (code, _) = omo_verify(&app.database_url);
    assert_eq!(code, 1);
}
