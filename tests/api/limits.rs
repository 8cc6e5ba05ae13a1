//! Limits at the edge: a per-key rate limit by role (RESOURCE_EXHAUSTED with RetryInfo), the
//! largest message, and load shedding when the write queue is full (UNAVAILABLE, nothing
//! written, never an unbounded wait).

use std::{sync::Arc, time::Duration as StdDuration};

use omo::{
    Application, Config,
    client::Client,
    domain::{
        auth::Role,
        command::{CheckoutCommand, PointsCommand},
        model::MemberRef,
    },
    engine::EngineError,
    proto,
};
use tokio::task::JoinSet;
use tonic::Code;
use tonic_types::StatusExt;

use crate::helpers::{Backend, TestApp, card_ref, identifier};

crate::both_backends! {
    a_key_over_its_rate_is_told_when_to_retry => a_key_over_its_rate_is_told_when_to_retry,
    oversized_messages_are_refused => oversized_messages_are_refused,
    a_full_write_queue_sheds_commands => a_full_write_queue_sheds_commands,
}

/// A second server over the test's database with other limits, and a key of each role.
async fn server_with(
    app: &TestApp,
    change: impl FnOnce(&mut Config),
) -> (Application, Client, Client) {
    let mut config = Config::local(&app.database_url);
    change(&mut config);
    let server = Application::build(&config, Arc::new(app.clock.clone()))
        .await
        .expect("server");
    let engine = server.engine();
    let admin = engine
        .create_api_key(Role::Admin, None, "limits".into())
        .await
        .expect("key");
    let app_key = engine
        .create_api_key(Role::App, None, "limits".into())
        .await
        .expect("key");
    let admin = Client::connect(&server.endpoint(), &admin)
        .await
        .expect("connect");
    let app_client = admin.with_key(&app_key);
    (server, admin, app_client)
}

async fn balance(client: &Client) -> Result<(), tonic::Status> {
    client
        .ledger()
        .get_balance(proto::GetBalanceRequest {
            member: Some(card_ref("lim1")),
        })
        .await
        .map(drop)
}

async fn a_key_over_its_rate_is_told_when_to_retry(app: &TestApp) {
    app.create_member("lim1").await;
    let (server, admin, app_client) = server_with(app, |c| c.limits.rate_limit_app = 5).await;
    // A burst of one second's worth passes, then the key is refused with a delay to wait.
    let mut refusal = None;
    for _ in 0..20 {
        if let Err(status) = balance(&app_client).await {
            refusal = Some(status);
            break;
        }
    }
    let status = refusal.expect("the 6th call within a second is refused");
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    let details = status.get_error_details();
    assert_eq!(details.error_info().expect("info").reason, "RATE_LIMITED");
    let delay = details
        .retry_info()
        .and_then(|r| r.retry_delay)
        .expect("RetryInfo with a delay");
    assert!(
        delay > StdDuration::ZERO && delay <= StdDuration::from_secs(1),
        "{delay:?}"
    );
    // Other roles have no limit by default; the limited key works again after the delay.
    for _ in 0..20 {
        balance(&admin).await.expect("admin is not limited");
    }
    tokio::time::sleep(delay).await;
    balance(&app_client).await.expect("after the delay");
    server.stop().await.expect("stops");
}

async fn oversized_messages_are_refused(app: &TestApp) {
    let (server, admin, _) = server_with(app, |c| c.limits.max_message_bytes = 4096).await;
    let status = admin
        .members()
        .create_member(proto::CreateMemberRequest {
            request_id: "big".into(),
            identifiers: vec![identifier("card", "big1")],
            display_name: "x".repeat(10_000),
        })
        .await
        .expect_err("over 4 KiB");
    assert_eq!(status.code(), Code::OutOfRange, "{status:?}");
    // Nothing was created; a normal request on the same server works.
    let status = admin
        .members()
        .get_member(proto::GetMemberRequest {
            member: Some(card_ref("big1")),
        })
        .await
        .expect_err("not created");
    assert_eq!(status.code(), Code::NotFound);
    admin
        .members()
        .create_member(proto::CreateMemberRequest {
            request_id: "small".into(),
            identifiers: vec![identifier("card", "big1")],
            display_name: "small".into(),
        })
        .await
        .expect("a small request");
    server.stop().await.expect("stops");
}

/// Holds the database's write lock (SQLite) or the member's row lock (PostgreSQL) until
/// released.
enum Blocker {
    Sqlite(rusqlite::Connection),
    Postgres(sqlx::PgConnection),
}

impl Blocker {
    async fn release(self) {
        match self {
            Blocker::Sqlite(conn) => conn.execute_batch("rollback").expect("rollback"),
            Blocker::Postgres(mut conn) => {
                use sqlx::Executor;
                conn.execute("rollback").await.expect("rollback");
            }
        }
    }
}

async fn block_writes(app: &TestApp, member_id: &str) -> Blocker {
    match app.backend {
        Backend::Sqlite => {
            let path = app.database_url.trim_start_matches("sqlite://");
            let conn = rusqlite::Connection::open(path).expect("open");
            conn.execute_batch("begin immediate").expect("write lock");
            Blocker::Sqlite(conn)
        }
        Backend::Postgres => {
            use sqlx::{Connection, Executor};
            let mut conn = sqlx::PgConnection::connect(&app.database_url)
                .await
                .expect("connect");
            conn.execute("begin").await.expect("begin");
            sqlx::query("select 1 from members where member_id = $1 for update")
                .bind(member_id)
                .execute(&mut conn)
                .await
                .expect("row lock");
            Blocker::Postgres(conn)
        }
    }
}

async fn a_full_write_queue_sheds_commands(app: &TestApp) {
    let member_id = app.create_member("shed1").await;
    // One writer, so that one blocked command holds every write back.
    let (server, _, _) = server_with(app, |c| c.writers = Some(1)).await;
    let engine = server.engine().clone();
    let key = engine
        .create_api_key(Role::Admin, None, "shed".into())
        .await
        .expect("key");
    let caller = engine
        .authenticate(&key)
        .await
        .expect("auth")
        .expect("caller");
    let blocker = block_writes(app, &member_id).await;
    let adjust = {
        let (engine, caller) = (engine.clone(), caller.clone());
        let member = MemberRef::Id(member_id.clone());
        tokio::spawn(async move {
            let command = PointsCommand::AdjustPoints {
                expires_at: None,
                member,
                points: 1,
                reason: "blocked".into(),
            };
            engine.execute(&caller, Some("blocked"), command).await
        })
    };
    tokio::time::sleep(StdDuration::from_millis(300)).await;
    // More cheap commands than the queue holds (4096) while the writer is stuck.
    const COMMANDS: usize = 5_000;
    let mut calls = JoinSet::new();
    for i in 0..COMMANDS {
        let (engine, caller) = (engine.clone(), caller.clone());
        calls.spawn(async move {
            let command = CheckoutCommand::Capture {
                order_id: format!("missing-{i}"),
            };
            engine.execute(&caller, None, command).await
        });
    }
    // Shed commands are answered while the writer is still blocked: no unbounded wait.
    let mut shed = 0;
    while shed == 0 {
        match tokio::time::timeout(StdDuration::from_secs(5), calls.join_next()).await {
            Ok(Some(result)) => match result.expect("task") {
                Err(EngineError::Overloaded) => shed += 1,
                other => panic!("only shed commands answer while writes are blocked: {other:?}"),
            },
            _ => panic!("no command was shed while the queue was full"),
        }
    }
    blocker.release().await;
    adjust
        .await
        .expect("task")
        .expect("the blocked command ran");
    let mut ran = 0;
    while let Some(result) = calls.join_next().await {
        match result.expect("task") {
            Err(EngineError::Domain(refusal)) => {
                assert_eq!(refusal.reason(), "ORDER_NOT_FOUND");
                ran += 1;
            }
            Err(EngineError::Overloaded) => shed += 1,
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(ran + shed, COMMANDS);
    assert!(ran >= 4000, "the queued commands ran: {ran}");
    assert_eq!(app.available(&member_id).await, 1);
    server.stop().await.expect("stops");
}
