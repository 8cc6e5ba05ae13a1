//! No personal data in logs or error messages: a scenario runs against `omo serve` as a child
//! process logging at debug level, and neither its log nor the errors it returned contain an
//! identifier value, a display name or an API key.

use std::{process::Stdio, sync::Arc, time::Duration as StdDuration};

use omo::{client::Client, domain::auth::Role, proto};
use tokio::{
    io::{AsyncBufReadExt, BufReader},
    process::Command,
    sync::{Mutex, oneshot},
};
use tonic_types::StatusExt;

use crate::helpers::{TestApp, card_ref, identifier, record_sale_as, store_sale};

crate::both_backends! {
    logs_and_errors_carry_no_personal_data => logs_and_errors_carry_no_personal_data,
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
