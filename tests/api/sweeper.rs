//! The sweeper never stops at a bad row, and sweepers on several replicas take different rows.

use chrono::{Duration, Utc};
use omo::domain::ports::DueWork;

use omo::proto::{self, campaign::Discount};

use crate::helpers::{Backend, TestApp, ec_order, member_ref, start_time, store_sale};

crate::both_backends! {
    a_bad_row_is_skipped_and_everything_else_is_swept => a_bad_row_is_skipped_and_everything_else_is_swept,
    two_sweepers_claim_different_rows => two_sweepers_claim_different_rows,
    a_failing_lapsed_member_is_skipped => a_failing_lapsed_member_is_skipped,
}

/// Plain SQL with binds on the test's database, as an operator (or a bug) could write it.
async fn plant(app: &TestApp, sql: &str, micros_or_instant: chrono::DateTime<Utc>) {
    match app.backend {
        Backend::Sqlite => {
            let pool = sqlx::SqlitePool::connect(&app.database_url).await.unwrap();
            sqlx::query(sql)
                .bind(micros_or_instant.timestamp_micros())
                .execute(&pool)
                .await
                .expect("plant");
        }
        Backend::Postgres => {
            let pool = sqlx::PgPool::connect(&app.database_url).await.unwrap();
            sqlx::query(sql)
                .bind(micros_or_instant)
                .execute(&pool)
                .await
                .expect("plant");
        }
    }
}

/// A copy of order `ec-a` under a new id, owned by a member that does not exist.
const ORPHAN_ORDER: &str = "
    insert into orders (order_id, member_id, state, channel, store_id, register_id, receipt_no,
        lines, total, coupon_discount, points_redeemed, amount_due, points_earned,
        points_pending, coupon_codes, hold_expires_at, refunded_amount, points_reversed,
        points_restored, occurred_at, created_at)
    select 'orphan', 'no-such-member', state, channel, store_id, register_id, receipt_no,
        lines, total, coupon_discount, points_redeemed, amount_due, points_earned,
        points_pending, coupon_codes, $1, refunded_amount, points_reversed,
        points_restored, occurred_at, created_at
    from orders
    where order_id = 'ec-a'";

/// A pending lot of 100 points, due to mature at $1, that no pending balance backs: maturing
/// it would take the member's pending balance below zero.
fn phantom_lot(member_id: &str) -> String {
    format!(
        "insert into point_lots (member_id, order_id, state, earned_at, matures_at, expires_at,
            original_points, remaining_points, held_points)
        values ('{member_id}', '', 'pending', $1, $1, null, 100, 100, 0)"
    )
}

async fn a_bad_row_is_skipped_and_everything_else_is_swept(app: &TestApp) {
    app.set_program(|p| {
        p.ec_pending_days = 1;
        p.hold_ttl_seconds = 3600;
    })
    .await;
    let a = app.member_with_points("a", 500).await;
    let b = app.member_with_points("b", 500).await;
    let c = app.member_with_points("c", 500).await;
    app.authorize(ec_order("auth-a", "ec-a", &a, "3000", 200))
        .await
        .expect("a holds 200");
    app.authorize(ec_order("auth-b", "ec-b", &b, "3000", 0))
        .await
        .expect("b's order");
    app.capture("cap-b", "ec-b")
        .await
        .expect("b earns pending points");
    assert!(app.balance(&b).await.pending_points > 0);
    let due = start_time() + Duration::hours(2);
    plant(app, ORPHAN_ORDER, start_time()).await;
    plant(app, &phantom_lot(&c), due).await;

    app.clock.advance(Duration::days(2));
    let report = app
        .app()
        .engine()
        .sweep()
        .await
        .expect("the sweep ends well");

    assert_eq!(
        report.failed, 2,
        "the orphan order and c's lots: {report:?}"
    );
    assert_eq!(app.available(&a).await, 500, "a's hold expired");
    let b_balance = app.balance(&b).await;
    assert_eq!(b_balance.pending_points, 0, "b's points matured");
    assert!(b_balance.available_points > 500);
    let order = app.get_order("ec-a").await.expect("order");
    assert_eq!(order.state(), omo::proto::OrderState::Expired);

    // The next sweep tries the bad rows again, and still does not stop.
    let again = app.app().engine().sweep().await.expect("sweeps again");
    assert_eq!(again.failed, 2, "{again:?}");
    assert_eq!(again.holds_expired, 0);
}

async fn two_sweepers_claim_different_rows(app: &TestApp) {
    app.set_program(|p| p.hold_ttl_seconds = 3600).await;
    for i in 0..6 {
        let member_id = app.member_with_points(&format!("m{i}"), 100).await;
        let order = format!("order-{i}");
        app.authorize(ec_order(
            &format!("auth-{i}"),
            &order,
            &member_id,
            "1000",
            50,
        ))
        .await
        .expect("hold");
    }
    let store = omo::store::open(&app.database_url).await.expect("store");
    let now = start_time() + Duration::hours(2);

    let mut first = store.begin_read().await.unwrap();
    let mut second = store.begin_read().await.unwrap();
    let mine = first.due_work(now, 3).await.unwrap();
    let theirs = second.due_work(now, 3).await.unwrap();

    assert_eq!(mine.expired_holds.len(), 3);
    if store.due_work_claims_rows() {
        assert_eq!(theirs.expired_holds.len(), 3);
        assert!(
            mine.expired_holds
                .iter()
                .all(|order| !theirs.expired_holds.contains(order)),
            "{mine:?} / {theirs:?}"
        );
        // A claim ends with its unit of work: the rows are anyone's again. (Dropping it hands
        // the connection back to the pool, which rolls back in the background: on a busy
        // machine the claim may outlive the drop by a moment.)
        drop(first);
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
        let after = loop {
            let mut third = store.begin_read().await.unwrap();
            let after = third.due_work(now, 6).await.unwrap();
            if after.expired_holds.len() == 3 || tokio::time::Instant::now() > deadline {
                break after;
            }
            drop(third);
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        };
        assert_eq!(
            after.expired_holds.len(),
            3,
            "only the second's claims remain"
        );
        assert_eq!(after.expired_holds, mine.expired_holds);
    } else {
        assert_eq!(theirs, mine);
    }
    drop(second);

    // Two sweeps at once still expire every hold once.
    app.clock.advance(Duration::hours(2));
    let engine = app.app().engine().clone();
    let (one, two) = tokio::join!(engine.sweep(), engine.sweep());
    let expired = one.unwrap().holds_expired + two.unwrap().holds_expired;
    assert_eq!(expired, 6);
    let due = store.begin_read().await.unwrap().due_work(now, 10).await;
    assert_eq!(due.unwrap(), DueWork::default());
    app.verify_ok().await;
}

/// Plain SQL without binds on the test's database (as an operator could run it).
async fn execute(app: &TestApp, sql: &str) {
    use sqlx::Executor;
    match app.backend {
        Backend::Sqlite => {
            let pool = sqlx::SqlitePool::connect(&app.database_url).await.unwrap();
            pool.execute(sql).await.expect("execute");
        }
        Backend::Postgres => {
            let pool = sqlx::PgPool::connect(&app.database_url).await.unwrap();
            pool.execute(sql).await.expect("execute");
        }
    }
}

/// A trigger that refuses every LAPSED coupon of `member_id` (a fault planted in one row).
fn refuse_visit_issues_of(backend: Backend, member_id: &str) -> Vec<String> {
    match backend {
        Backend::Sqlite => vec![format!(
            "create trigger planted_fault before insert on visit_issues
            when new.member_id = '{member_id}'
            begin select raise(abort, 'planted fault'); end"
        )],
        Backend::Postgres => vec![
            format!(
                "create function planted_fault() returns trigger language plpgsql as $$
                begin
                    if new.member_id = '{member_id}' then
                        raise exception 'planted fault';
                    end if;
                    return new;
                end $$"
            ),
            "create trigger planted_fault before insert on visit_issues
            for each row execute function planted_fault()"
                .into(),
        ],
    }
}

async fn a_failing_lapsed_member_is_skipped(app: &TestApp) {
    app.admin
        .coupons()
        .create_campaign(proto::CreateCampaignRequest {
            request_id: "come-back".into(),
            campaign: Some(proto::Campaign {
                campaign_id: "come-back".into(),
                name: "come back".into(),
                discount: Some(Discount::AmountOff("300".into())),
                stackable: true,
                ..Default::default()
            }),
        })
        .await
        .expect("campaign");
    app.admin
        .engagement()
        .create_visit_rule(proto::CreateVisitRuleRequest {
            request_id: "lapsed".into(),
            rule: Some(proto::VisitRule {
                rule_id: "lapsed".into(),
                campaign_id: "come-back".into(),
                kind: proto::VisitRuleKind::Lapsed as i32,
                lapsed_days: 7,
                ..Default::default()
            }),
        })
        .await
        .expect("visit rule");
    let mut members = Vec::new();
    for i in 0..3 {
        let member_id = app.create_member(&format!("lapsing-{i}")).await;
        let sale = store_sale(
            &format!("s{i}"),
            &format!("s{i}"),
            member_ref(&member_id),
            "1000",
            0,
        );
        app.record_sale(sale).await.expect("a visit");
        members.push(member_id);
    }
    // The sweep takes candidates in member_id order: the first one fails.
    members.sort();
    for sql in refuse_visit_issues_of(app.backend, &members[0]) {
        execute(app, &sql).await;
    }

    app.clock.advance(Duration::days(7));
    let report = app
        .app()
        .engine()
        .sweep()
        .await
        .expect("the sweep ends well");

    assert_eq!(report.failed, 1, "{report:?}");
    assert_eq!(report.lapsed_coupons, 2, "{report:?}");
    for (member_id, expected) in members.iter().zip([0, 1, 1]) {
        let coupons = app
            .admin
            .coupons()
            .list_coupons(proto::ListCouponsRequest {
                member: Some(member_ref(member_id)),
                include_inactive: true,
                page_size: 10,
                page_token: String::new(),
            })
            .await
            .expect("coupons")
            .into_inner()
            .coupons;
        assert_eq!(coupons.len(), expected, "{member_id}");
    }
    app.verify_ok().await;
}
