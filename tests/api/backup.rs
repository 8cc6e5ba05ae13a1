//! `omo backup`: a SQLite backup taken while the server runs (and writes) is a consistent
//! database: `omo verify` passes on it and it holds every balance acknowledged before it began.
//! PostgreSQL backups are pg_dump's job: omo refuses and says so.

use std::sync::Arc;

use omo::{
    Application, Config, backup,
    domain::{Clock, ManualClock},
};

use crate::helpers::{Backend, TestApp, card_ref, spawn_app, store_sale};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_backup_while_serving_verifies_and_keeps_balances() {
    let Some(app) = spawn_app(Backend::Sqlite).await else {
        return;
    };
    // Arrange: settled activity for one member, and sales for another still being written
    // while the backup runs.
    let settled = app.member_with_points("backup-1", 1000).await;
    app.record_sale(store_sale("s1", "1", card_ref("backup-1"), "5000", 300))
        .await
        .expect("sale");
    let busy = app.member_with_points("backup-2", 0).await;
    let writer = {
        let register = app.register.clone();
        tokio::spawn(async move {
            for i in 0..40 {
                let sale = store_sale(
                    &format!("w{i}"),
                    &format!("w{i}"),
                    card_ref("backup-2"),
                    "1000",
                    0,
                );
                crate::helpers::record_sale_as(&register, sale)
                    .await
                    .expect("sale during backup");
            }
        })
    };
    let before = app.balance(&settled).await;

    // Act: back up while the sales go on.
    let target = backup_target(&app);
    let (url, to) = (app.database_url.clone(), target.clone());
    let report = tokio::task::spawn_blocking(move || backup::backup(&url, &to))
        .await
        .unwrap()
        .expect("backup");
    writer.await.unwrap();

    // Assert: the copy, opened as a server of its own, verifies and has the settled balance;
    // the busy member has some prefix of its sales (10 points each).
    assert!(report.pages > 0 && report.bytes > 0, "{report:?}");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&target).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "the backup's mode is {mode:o}");
    }
    let copy = open_copy(&app, &target).await;
    let report = copy.engine().verify().await.expect("verify runs");
    assert!(report.ok(), "{}", report.summary());
    let caller = admin_caller(&copy).await;
    let restored = copy
        .engine()
        .get_balance(&caller, &omo::domain::model::MemberRef::Id(settled.clone()))
        .await
        .expect("balance in the copy");
    assert_eq!(
        (restored.available_points, restored.lifetime_earned_points),
        (before.available_points, before.lifetime_earned_points)
    );
    let busy_points = copy
        .engine()
        .get_balance(&caller, &omo::domain::model::MemberRef::Id(busy))
        .await
        .expect("balance in the copy")
        .available_points;
    assert!(busy_points % 10 == 0 && busy_points <= 400, "{busy_points}");
    copy.stop().await.expect("stops");
    app.verify_ok().await;
}

#[tokio::test]
async fn backup_refuses_to_overwrite_and_points_postgres_to_pg_dump() {
    let Some(app) = spawn_app(Backend::Sqlite).await else {
        return;
    };
    let target = backup_target(&app);
    std::fs::write(&target, b"precious").unwrap();
    let url = app.database_url.clone();
    let refused = backup::backup(&url, &target).unwrap_err();
    assert!(
        matches!(refused, backup::BackupError::TargetExists(_)),
        "{refused}"
    );
    assert_eq!(std::fs::read(&target).unwrap(), b"precious");

    let postgres = backup::backup("postgres://postgres@127.0.0.1/omo", &target).unwrap_err();
    assert!(matches!(postgres, backup::BackupError::Postgres));
    assert!(postgres.to_string().contains("pg_dump -Fc"), "{postgres}");
}

/// A file beside the test database (removed with it).
fn backup_target(app: &TestApp) -> std::path::PathBuf {
    let path = app.database_url.trim_start_matches("sqlite://");
    std::path::Path::new(path).with_file_name("backup.db")
}

async fn open_copy(app: &TestApp, target: &std::path::Path) -> Application {
    let url = format!("sqlite://{}", target.display());
    Application::build(
        &Config::local(&url),
        Arc::new(ManualClock::new(app.clock.now())),
    )
    .await
    .expect("the backup opens as a server")
}

async fn admin_caller(app: &Application) -> omo::domain::auth::Caller {
    let engine = app.engine();
    let key = engine
        .create_api_key(omo::domain::auth::Role::Admin, None, "restore".into())
        .await
        .expect("key");
    engine.authenticate(&key).await.unwrap().unwrap()
}

/// A target in a folder that does not exist is refused before anything is written, and the
/// error names the folder (it used to name only the `.partial` file SQLite could not create).
#[tokio::test]
async fn backup_into_a_missing_folder_names_the_folder() {
    let Some(app) = spawn_app(Backend::Sqlite).await else {
        return;
    };
    let folder = backup_target(&app).with_file_name("no-such-folder");
    let to = folder.join("omo.db");
    let url = app.database_url.clone();
    let error = tokio::task::spawn_blocking(move || backup::backup(&url, &to))
        .await
        .unwrap()
        .expect_err("a missing folder is refused");
    let message = error.to_string();
    assert!(
        message.contains(&folder.display().to_string()) && !message.contains(".partial"),
        "{message}"
    );
    assert!(!folder.exists());
}
