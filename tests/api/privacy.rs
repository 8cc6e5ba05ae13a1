//! No personal data in logs or error messages: a scenario runs against `omo serve` as a child
//! process logging at debug level, and neither its log nor the errors it returned contain an
//! identifier value, a display name or an API key. Location reports and receipts' raw text
//! are kept for the retention window (`--retention-days`, 90 by default), no longer.

use std::{process::Stdio, sync::Arc, time::Duration as StdDuration};

use omo::{
    client::Client,
    domain::{Clock, auth::Role},
    proto,
};
use tokio::{
    io::{AsyncBufReadExt, BufReader},
    process::Command,
    sync::{Mutex, oneshot},
};
use tonic_types::StatusExt;

use crate::helpers::{
    Backend, TestApp, card_ref, create_receipt_rule_as, identifier, member_ref, record_sale_as,
    store_sale,
};

crate::both_backends! {
    logs_and_errors_carry_no_personal_data => logs_and_errors_carry_no_personal_data,
    personal_data_is_dropped_after_the_retention => personal_data_is_dropped_after_the_retention,
}

const CARD: &str = "4900-7777-1234";
const EMAIL: &str = "hanako.secret@example.com";
const NAME: &str = "Hanako Secretname";

/// Everything a refusal tells the client, as text.
fn everything_in(status: &tonic::Status) -> String {
    let details = status.get_error_details();
    format!(
        "{} {:?} {:?}",
        status.message(),
        details.error_info(),
        details.bad_request()
    )
}

async fn logs_and_errors_carry_no_personal_data(app: &TestApp) {
    let engine = app.app().engine();
    let admin_key = engine
        .create_api_key(Role::Admin, None, "privacy".into())
        .await
        .expect("key");
    let register_key = engine
        .create_api_key(Role::Register, Some("shibuya".into()), "privacy".into())
        .await
        .expect("key");
    let bad_key = "omo_thisisnotakeyatall0000000000000";

    let mut child = Command::new(env!("CARGO_BIN_EXE_omo"))
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--database-url",
            &app.database_url,
        ])
        .env("RUST_LOG", "debug")
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("omo serve");
    let log = Arc::new(Mutex::new(String::new()));
    let (address, listening) = oneshot::channel::<String>();
    let reader = {
        let log = log.clone();
        let mut lines = BufReader::new(child.stderr.take().expect("stderr")).lines();
        tokio::spawn(async move {
            let mut address = Some(address);
            while let Ok(Some(line)) = lines.next_line().await {
                if let Some(addr) = line.strip_prefix("omo listening on ")
                    && let Some(address) = address.take()
                {
                    let _ = address.send(addr.to_string());
                }
                let mut log = log.lock().await;
                log.push_str(&line);
                log.push('\n');
            }
        })
    };
    let addr = tokio::time::timeout(StdDuration::from_secs(30), listening)
        .await
        .expect("the server starts")
        .expect("address");
    let admin = Client::connect(&format!("http://{addr}"), &admin_key)
        .await
        .expect("connect");
    let register = admin.with_key(&register_key);

    // The scenario: a member with a card and an email, a clash on the card, lookups by both,
    // a sale by card, bad input around an email, and calls with a bad key.
    let mut errors = Vec::new();
    admin
        .members()
        .create_member(proto::CreateMemberRequest {
            request_id: "p-1".into(),
            identifiers: vec![identifier("card", CARD), identifier("email", EMAIL)],
            display_name: NAME.into(),
        })
        .await
        .expect("member");
    let clash = admin
        .members()
        .create_member(proto::CreateMemberRequest {
            request_id: "p-2".into(),
            identifiers: vec![identifier("card", CARD)],
            display_name: NAME.into(),
        })
        .await
        .expect_err("the card is taken");
    assert_eq!(crate::helpers::reason(&clash), "IDENTIFIER_TAKEN");
    errors.push(clash);
    for reference in [
        card_ref(CARD),
        proto::MemberRef {
            r#ref: Some(proto::member_ref::Ref::Identifier(identifier(
                "email", EMAIL,
            ))),
        },
    ] {
        admin
            .members()
            .get_member(proto::GetMemberRequest {
                member: Some(reference),
            })
            .await
            .expect("found");
    }
    record_sale_as(
        &register,
        store_sale("p-sale", "P1", card_ref(CARD), "1000", 0),
    )
    .await
    .expect("sale");
    errors.push(
        record_sale_as(
            &register,
            store_sale("p-sale-2", "P2", card_ref(CARD), "1000", 999_999),
        )
        .await
        .expect_err("not enough points"),
    );
    errors.push(
        admin
            .members()
            .get_member(proto::GetMemberRequest {
                member: Some(card_ref(&format!("{CARD}-none"))),
            })
            .await
            .expect_err("unknown card"),
    );
    errors.push(
        admin
            .members()
            .create_member(proto::CreateMemberRequest {
                request_id: "p-3".into(),
                identifiers: vec![identifier("Bad Kind!", EMAIL)],
                display_name: NAME.into(),
            })
            .await
            .expect_err("invalid kind"),
    );
    for _ in 0..3 {
        errors.push(
            admin
                .with_key(bad_key)
                .ledger()
                .get_balance(proto::GetBalanceRequest {
                    member: Some(card_ref(CARD)),
                })
                .await
                .expect_err("unknown key"),
        );
    }

    // Stop the server (SIGTERM, a clean shutdown) and read all it logged.
    let pid = child.id().expect("pid");
    let _ = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .await;
    let _ = tokio::time::timeout(StdDuration::from_secs(10), child.wait()).await;
    let _ = tokio::time::timeout(StdDuration::from_secs(5), reader).await;
    let log = log.lock().await.clone();
    assert!(log.contains("omo serving"), "the log was captured: {log}");
    assert!(
        log.contains("DEBUG") || log.contains("debug"),
        "at debug level"
    );
    for secret in [CARD, EMAIL, NAME, &admin_key, &register_key, bad_key] {
        assert!(!log.contains(secret), "{secret:?} is in the log:\n{log}");
        for status in &errors {
            let said = everything_in(status);
            assert!(!said.contains(secret), "{secret:?} is in an error: {said}");
        }
    }
}

/// How many rows of the test's database `sql` counts (plain SQL, as an auditor would ask).
async fn count(app: &TestApp, sql: &str) -> i64 {
    match app.backend {
        Backend::Sqlite => {
            let pool = sqlx::SqlitePool::connect(&app.database_url).await.unwrap();
            sqlx::query_scalar(sql).fetch_one(&pool).await.unwrap()
        }
        Backend::Postgres => {
            let pool = sqlx::PgPool::connect(&app.database_url).await.unwrap();
            sqlx::query_scalar(sql).fetch_one(&pool).await.unwrap()
        }
    }
}

fn timestamp(at: chrono::DateTime<chrono::Utc>) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: at.timestamp(),
        nanos: 0,
    }
}

async fn personal_data_is_dropped_after_the_retention(app: &TestApp) {
    // Arrange: a location report at Shibuya and a receipt with its printed text.
    create_receipt_rule_as(&app.admin, "everything", "0.01").await;
    let member_id = app.create_member("retained").await;
    app.app_client
        .engagement()
        .report_location(proto::ReportLocationRequest {
            request_id: "here".into(),
            member: Some(member_ref(&member_id)),
            latitude: 35.66,
            longitude: 139.70,
            accuracy_m: 10.0,
            observed_at: Some(timestamp(app.clock.now())),
            device_id: "phone-1".into(),
        })
        .await
        .expect("location report");
    let receipt = app
        .app_client
        .engagement()
        .submit_receipt(proto::SubmitReceiptRequest {
            request_id: "receipt".into(),
            member: Some(member_ref(&member_id)),
            receipt: Some(proto::Receipt {
                store_id: "shibuya".into(),
                register_id: "1".into(),
                receipt_no: "0001".into(),
                issued_at: Some(timestamp(app.clock.now() - chrono::Duration::hours(1))),
                total: "2000".into(),
                lines: vec![proto::LineItem {
                    line_id: "1".into(),
                    sku: "BEANS".into(),
                    category: "coffee".into(),
                    quantity: 1,
                    amount: "2000".into(),
                }],
                image_sha256: "ab".repeat(32),
                raw_text: "BEAN & CUP\nCOFFEE BEANS ¥2,000\nTOTAL ¥2,000".into(),
            }),
        })
        .await
        .expect("receipt")
        .into_inner()
        .result
        .expect("result");
    assert_eq!(receipt.points_awarded, 20);
    let earned = app.balance(&member_id).await.lifetime_earned_points;
    let texts = "select count(*) from receipts where raw_text <> ''";

    // Act: a sweep a day before the 90 days are up, and one a day after.
    app.clock.advance(chrono::Duration::days(89));
    let before = app.app().engine().sweep().await.expect("sweep");
    let kept = (
        count(app, "select count(*) from location_reports").await,
        count(app, texts).await,
    );
    app.clock.advance(chrono::Duration::days(2));
    let after = app.app().engine().sweep().await.expect("sweep");

    // Assert
    assert_eq!(kept, (1, 1), "{before:?}");
    assert_eq!(
        (before.location_reports_purged, before.receipt_texts_cleared),
        (0, 0)
    );
    assert_eq!(
        (after.location_reports_purged, after.receipt_texts_cleared),
        (1, 1)
    );
    assert_eq!(count(app, "select count(*) from location_reports").await, 0);
    assert_eq!(count(app, texts).await, 0);
    // The receipt and what it earned stay.
    assert_eq!(count(app, "select count(*) from receipts").await, 1);
    assert_eq!(app.balance(&member_id).await.lifetime_earned_points, earned);
    app.verify_ok().await;
}
