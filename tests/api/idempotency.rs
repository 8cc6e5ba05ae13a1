//! request_id: replays return the original response with no new effect, also after a restart;
//! a reused id with another request is refused; failures are remembered.

use omo::proto;
use tonic::Code;

use crate::helpers::{TestApp, assert_refused, authorize_as, ec_order, spawn_app};

crate::both_backends! {
    replay_returns_the_original_response => replay_returns_the_original_response,
    reused_id_with_another_request_is_refused => reused_id_with_another_request_is_refused,
    failures_are_remembered => failures_are_remembered,
    ids_are_scoped_per_key => ids_are_scoped_per_key,
    a_replay_after_the_retention_window_is_a_new_request => a_replay_after_the_retention_window_is_a_new_request,
}

async fn replay_returns_the_original_response(app: &TestApp) {
    let member_id = app.member_with_points("id1", 1000).await;
    let request = ec_order("auth-1", "EC-1", &member_id, "5000", 300);
    let first = app.authorize(request.clone()).await.expect("first");
    app.capture("cap-1", "EC-1").await.expect("capture");

    // The retried Authorize gets the original AUTHORIZED order back, not the captured one.
    let replay = app.authorize(request).await.expect("replay");
    assert_eq!(replay, first);
    let replayed_capture = app.capture("cap-1", "EC-1").await.expect("replay capture");
    assert_eq!(replayed_capture.state, proto::OrderState::Captured as i32);
    assert_eq!(
        app.available(&member_id).await,
        1000 - 300 + 47,
        "one effect only"
    );
    app.verify_ok().await;
}

async fn reused_id_with_another_request_is_refused(app: &TestApp) {
    let member_id = app.member_with_points("id2", 1000).await;
    app.authorize(ec_order("auth-1", "EC-2", &member_id, "5000", 300))
        .await
        .expect("first");
    let other = app
        .authorize(ec_order("auth-1", "EC-2", &member_id, "5000", 301))
        .await
        .unwrap_err();
    assert_refused(&other, Code::AlreadyExists, "IDEMPOTENCY_KEY_REUSED");
    assert_eq!(app.balance(&member_id).await.held_points, 300);
}

async fn failures_are_remembered(app: &TestApp) {
    let member_id = app.create_member("id3").await;
    let request = ec_order("auth-1", "EC-3", &member_id, "5000", 100);
    let first = app.authorize(request.clone()).await.unwrap_err();
    assert_refused(&first, Code::FailedPrecondition, "INSUFFICIENT_POINTS");
    app.adjust_points("grant", &member_id, 500, "r")
        .await
        .expect("grant");
    // Same request_id: still the remembered refusal, and nothing is held.
    let again = app.authorize(request).await.unwrap_err();
    assert_refused(&again, Code::FailedPrecondition, "INSUFFICIENT_POINTS");
    assert_eq!(app.balance(&member_id).await.held_points, 0);
}

async fn ids_are_scoped_per_key(app: &TestApp) {
    let member_id = app.member_with_points("id4", 1000).await;
    let as_admin = authorize_as(
        &app.admin,
        ec_order("same-id", "EC-4a", &member_id, "100", 10),
    )
    .await;
    let as_checkout = app
        .authorize(ec_order("same-id", "EC-4b", &member_id, "100", 10))
        .await;
    assert!(as_admin.is_ok() && as_checkout.is_ok());
    assert_eq!(app.balance(&member_id).await.held_points, 20);
}

mod after_restart {
    use super::*;

    async fn scenario(backend: crate::helpers::Backend) {
        let Some(mut app) = spawn_app(backend).await else {
            return;
        };
        let member_id = app.member_with_points("id5", 1000).await;
        let request = ec_order("auth-r", "EC-5", &member_id, "2000", 100);
        let first = app.authorize(request.clone()).await.expect("first");

        app.restart().await;

        let replay = app.authorize(request).await.expect("replay");
        assert_eq!(replay, first);
        assert_eq!(app.balance(&member_id).await.held_points, 100);
        app.verify_ok().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn sqlite() {
        scenario(crate::helpers::Backend::Sqlite).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn postgres() {
        scenario(crate::helpers::Backend::Postgres).await;
    }
}

/// Idempotency records are kept for --idempotency-retention-days (30 by default), by the
/// injected clock: within the window a replay gets the remembered answer; once the sweeper has
/// purged the record, the same request_id is executed anew.
async fn a_replay_after_the_retention_window_is_a_new_request(app: &TestApp) {
    use chrono::Duration;
    let member_id = app.member_with_points("ret1", 0).await;
    let first = app
        .adjust_points("grant-once", &member_id, 100, "goodwill")
        .await
        .expect("first");

    app.advance(Duration::days(29)).await;
    let replay = app
        .adjust_points("grant-once", &member_id, 100, "goodwill")
        .await
        .expect("replay");
    assert_eq!(replay, first, "within the window: the remembered answer");
    assert_eq!(app.available(&member_id).await, 100);

    app.clock.advance(Duration::days(2));
    let report = app.app().engine().sweep().await.expect("sweep");
    assert!(report.idempotency_purged >= 1, "{report:?}");
    let anew = app
        .adjust_points("grant-once", &member_id, 100, "goodwill")
        .await
        .expect("executed anew");
    assert_ne!(anew.transaction_id, first.transaction_id);
    assert_eq!(app.available(&member_id).await, 200, "a second effect");
    app.verify_ok().await;
}
