//! The key lifecycle: `omo keys create --expires-in`, `omo keys list`, `omo keys revoke` seen by
//! a second server over the same database within 2 s, expired keys refused.

use std::{sync::Arc, time::Instant};

use chrono::Duration;
use omo::{
    Application, Config,
    client::Client,
    domain::{auth::Role, ids},
    proto,
};
use tokio::process::Command;
use tonic::Code;

use crate::helpers::{TestApp, card_ref};

crate::both_backends! {
    a_revoked_key_is_refused_by_every_server_within_two_seconds => a_revoked_key_is_refused_by_every_server_within_two_seconds,
    an_expired_key_is_refused => an_expired_key_is_refused,
    keys_are_listed_without_secrets => keys_are_listed_without_secrets,
}

/// Runs the `omo` binary on the test's database; its stdout, or a panic with its stderr.
async fn omo(app: &TestApp, args: &[&str]) -> String {
    let output = Command::new(env!("CARGO_BIN_EXE_omo"))
        .args(args)
        .args(["--database-url", &app.database_url])
        .env("RUST_LOG", "warn")
        .output()
        .await
        .expect("omo runs");
    assert!(
        output.status.success(),
        "omo {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("utf-8")
}

async fn balance_with(client: &Client) -> Result<(), tonic::Status> {
    client
        .ledger()
        .get_balance(proto::GetBalanceRequest {
            member: Some(card_ref("key1")),
        })
        .await
        .map(drop)
}

async fn a_revoked_key_is_refused_by_every_server_within_two_seconds(app: &TestApp) {
    app.create_member("key1").await;
    let created = omo(
        app,
        &[
            "keys",
            "create",
            "--role",
            "checkout",
            "--name",
            "ec",
            "--expires-in",
            "90d",
        ],
    )
    .await;
    let key = created.lines().last().expect("the key on the last line");
    let key_id = ids::key_id_of(&ids::sha256_hex(key.as_bytes()));
    // A second replica over the same database; both know the key (and cache it).
    let replica = Application::build(
        &Config::local(&app.database_url),
        Arc::new(app.clock.clone()),
    )
    .await
    .expect("second server");
    let here = app.admin.with_key(key);
    let there = Client::connect(&replica.endpoint(), key)
        .await
        .expect("connect");
    balance_with(&here).await.expect("valid on the first");
    balance_with(&there).await.expect("valid on the second");

    let revoked = omo(app, &["keys", "revoke", &key_id]).await;
    assert!(revoked.contains(&key_id), "{revoked}");
    let since = Instant::now();
    loop {
        match balance_with(&there).await {
            Err(status) => {
                assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
                break;
            }
            Ok(()) => {
                assert!(
                    since.elapsed() < std::time::Duration::from_secs(2),
                    "the second server still takes a revoked key after 2 s"
                );
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
        }
    }
    // And so does the first, and both keep refusing it.
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    for client in [&here, &there] {
        let status = balance_with(client).await.expect_err("revoked");
        assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
    }
    // Revoking an unknown id fails.
    let output = Command::new(env!("CARGO_BIN_EXE_omo"))
        .args([
            "keys",
            "revoke",
            "k_nope",
            "--database-url",
            &app.database_url,
        ])
        .output()
        .await
        .expect("omo runs");
    assert!(!output.status.success());
    replica.stop().await.expect("stops");
}

async fn an_expired_key_is_refused(app: &TestApp) {
    app.create_member("key1").await;
    let engine = app.app().engine();
    let key = engine
        .create_api_key_expiring(Role::App, None, "short".into(), Some(Duration::hours(1)))
        .await
        .expect("key");
    let client = app.admin.with_key(&key);
    balance_with(&client).await.expect("valid for an hour");
    app.clock.advance(Duration::minutes(59));
    balance_with(&client).await.expect("still valid");
    app.clock.advance(Duration::minutes(1));
    let status = balance_with(&client).await.expect_err("expired");
    assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
    assert!(
        engine
            .create_api_key_expiring(Role::App, None, String::new(), Some(Duration::zero()))
            .await
            .is_err(),
        "a key must live a while"
    );
}

async fn keys_are_listed_without_secrets(app: &TestApp) {
    app.create_member("key1").await;
    let engine = app.app().engine();
    let key = engine
        .create_api_key(Role::Register, Some("umeda".into()), "umeda till".into())
        .await
        .expect("key");
    let key_id = ids::key_id_of(&ids::sha256_hex(key.as_bytes()));
    // Its first use is recorded (in the background, once a minute at most).
    let client = app.admin.with_key(&key);
    balance_with(&client)
        .await
        .expect("register reads balances");
    let since = Instant::now();
    let listed = loop {
        let keys = engine.list_api_keys().await.expect("list");
        let info = keys
            .into_iter()
            .find(|k| k.key_id == key_id)
            .expect("listed");
        if info.last_used_at.is_some() || since.elapsed().as_secs() >= 5 {
            break info;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    assert_eq!(listed.role, Role::Register);
    assert_eq!(listed.store_id.as_deref(), Some("umeda"));
    assert_eq!(listed.name, "umeda till");
    assert_eq!(listed.last_used_at, Some(crate::helpers::start_time()));
    assert!(listed.expires_at.is_none() && listed.revoked_at.is_none());
    // The command line shows every key of the test (5 made by the harness, this one) by id,
    // and neither the key nor its hash.
    let output = omo(app, &["keys", "list"]).await;
    assert_eq!(output.lines().count(), 1 + 6, "{output}");
    let line = output
        .lines()
        .find(|line| line.starts_with(&key_id))
        .expect("the key's line");
    assert!(
        line.contains("register") && line.contains("umeda till"),
        "{line}"
    );
    assert!(!output.contains(&key), "{output}");
    assert!(
        !output.contains(&ids::sha256_hex(key.as_bytes())),
        "{output}"
    );
}
