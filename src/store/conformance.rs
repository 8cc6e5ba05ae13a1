//! The store conformance suite: one set of test bodies, each given a `Store`, run against both
//! backends (`store::conformance::sqlite::*` on a temporary file, `store::conformance::postgres::*`
//! on a randomly named database that is dropped afterwards).
//!
//! PostgreSQL comes from `OMO_TEST_POSTGRES_URL` (default: the local server as `postgres`);
//! when it is unreachable its half is skipped with a note, except under `CI=true`, where that is
//! a failure.

use super::test_writes;
use std::{collections::HashMap, future::Future, path::PathBuf, sync::Arc, time::Duration};

use chrono::{DateTime, NaiveDate, TimeZone, Utc};

use super::sqlite::SqliteStore;
use crate::domain::{
    Money,
    coupon::{Campaign, Coupon, CouponState, Discount},
    location::{
        DEFAULT_MAX_ACCURACY_M, Fix, GeoRule, IssueFacts, RejectReason, VisitRule, VisitRuleKind,
        VisitRun,
    },
    model::{
        Channel, Identifier, LatLng, LineItem, Lot, LotState, MemberRow, MemberState, Order,
        OrderLine, OrderLot, OrderState, Posting, Store as RetailStore, Transaction,
    },
    ports::{
        AccountTotal, ActivityCell, ActivityInterior, ActivityWindow, ChangeSet, EngagementChanges,
        GeoIssue, IdempotencyRecord, Keys, LiabilityGroup, Loaded, LocationRecord, NewTransaction,
        Presence, ReceiptPageQuery, RuleChanges, Sequence, Store, StoreError, StoreRun, UnitOfWork,
        Visit, VisitCount, VisitIssue, VisitSource,
    },
    receipt::{
        ClaimHolder, ClaimWrite, Receipt, ReceiptClaim, ReceiptReason, ReceiptRecord, ReceiptRule,
        ReceiptStatus, register_receipt_key,
    },
    rules::views,
    schedule::DaysOfWeek,
    seal::{Seal, check_seal},
    summary::{
        CouponTally, LotTally, RedemptionTime, ReportSums, Tallies, counted_groups, differences,
        liability_groups, quarter_of,
    },
};

/// Declares each body as a test on both backends.
macro_rules! conformance {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::on_sqlite(super::$name).await;
                }
            )*
        }

        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::on_postgres(super::$name).await;
                }
            )*
        }
    };
}

conformance!(
    flush_then_load_round_trips_every_part,
    loaded_is_complete_for_what_it_loads,
    reserved_ids_are_never_handed_out_again,
    a_failed_debit_fails_the_flush_and_leaves_no_trace,
    a_duplicate_new_row_is_a_conflict,
    an_update_that_finds_no_row_fails_the_flush,
    a_second_load_of_a_locked_member_waits_for_the_commit,
    engagement_rows_round_trip,
    the_journal_reads_back_by_range_for_its_seals,
    a_second_seal_under_the_same_number_is_a_conflict,
    idempotency_records_are_purged_oldest_first_in_batches,
    dashboard_sessions_round_trip_with_their_key_and_end,
    retention_deletes_old_location_reports_and_empties_old_receipt_texts,
    receipt_rows_round_trip,
    report_sums_round_trip_and_recompute_the_ledger,
    member_spend_adds_deltas_moves_on_merge_and_keeps_the_tier,
);

// ---------------------------------------------------------------------------------------------
// The backends.

/// A directory in the temp directory, removed when dropped (also when the test panics).
struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

async fn on_sqlite<F, Fut>(body: F)
where
    F: FnOnce(Arc<dyn Store>) -> Fut,
    Fut: Future<Output = ()>,
{
    let name = format!("omo_conformance_{:016x}", rand::random::<u64>());
    let dir = TempDir(std::env::temp_dir().join(name));
    std::fs::create_dir_all(&dir.0).expect("temp dir");
    let url = format!("sqlite://{}", dir.0.join("omo.db").display());
    let store = SqliteStore::connect(&url).await.expect("open SQLite");
    body(Arc::new(store)).await;
}

async fn on_postgres<F, Fut>(body: F)
where
    F: FnOnce(Arc<dyn Store>) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    super::test_postgres::with_scratch_store("omo_conformance", |store| body(Arc::new(store)))
        .await;
}

// ---------------------------------------------------------------------------------------------
// Rows.

fn day(n: i64) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 1, 1, 9, 30, 0).unwrap() + chrono::Duration::days(n)
}

fn money(amount: &str) -> Money {
    amount.parse().expect("money")
}

fn member(member_id: &str) -> MemberRow {
    MemberRow {
        member_id: member_id.into(),
        display_name: format!("Member {member_id}"),
        state: MemberState::Active,
        merged_into: None,
        created_at: day(0),
        lifetime_earned_points: 0,
        lifetime_redeemed_points: 0,
        // Not empty, so that every member read shows the attributes come back as written.
        attributes: [("segment".to_string(), format!("s.{member_id}"))].into(),
        erased_at: None,
        tier: Default::default(),
    }
}

fn email(address: &str) -> Identifier {
    Identifier {
        kind: "email".into(),
        value: address.into(),
    }
}

fn posting(from: &str, to: &str, asset: &str, amount: i64) -> Posting {
    Posting {
        from_account: from.into(),
        to_account: to.into(),
        asset: asset.into(),
        amount,
    }
}

fn entry(kind: &'static str, member_id: &str, postings: Vec<Posting>) -> NewTransaction {
    NewTransaction {
        kind,
        member_id: member_id.into(),
        occurred_at: day(1),
        recorded_at: day(2),
        channel: Some(Channel::Store),
        store_id: "s1".into(),
        order_id: "o1".into(),
        postings,
        metadata: vec![("reason".into(), "test".into())],
    }
}

fn total(account: &str, asset: &str, amount: i64) -> AccountTotal {
    AccountTotal {
        account: account.into(),
        asset: asset.into(),
        amount,
    }
}

fn lot(lot_id: i64, member_id: &str, remaining_points: i64) -> Lot {
    Lot {
        lot_id,
        member_id: member_id.into(),
        order_id: "o0".into(),
        state: LotState::Available,
        earned_at: day(0),
        matures_at: None,
        expires_at: Some(day(365)),
        original_points: 100,
        remaining_points,
        held_points: 0,
        limited: false,
    }
}

fn order(order_id: &str, member_id: &str, receipt_no: &str) -> Order {
    Order {
        order_id: order_id.into(),
        member_id: member_id.into(),
        state: OrderState::Authorized,
        channel: Channel::Store,
        store_id: "s1".into(),
        register_id: "r1".into(),
        receipt_no: receipt_no.into(),
        lines: vec![OrderLine {
            item: LineItem {
                line_id: "1".into(),
                sku: "sku-1".into(),
                category: "food".into(),
                quantity: 2,
                amount: money("1980.5"),
            },
            refunded_quantity: 0,
        }],
        total: money("1980.5"),
        coupon_discount: money("100.25"),
        points_redeemed: 30,
        amount_due: money("1850.25"),
        points_earned: 0,
        points_pending: 0,
        coupon_codes: vec!["C1".into()],
        hold_expires_at: Some(day(1)),
        refunded_amount: Money::ZERO,
        points_reversed: 0,
        points_restored: 0,
        occurred_at: day(0),
        created_at: day(0),
        earn_breakdown: Vec::new(),
    }
}

fn campaign() -> Campaign {
    Campaign {
        campaign_id: "camp".into(),
        name: "Welcome".into(),
        discount: Discount::AmountOff(money("100")),
        min_spend: Money::ZERO,
        channels: Vec::new(),
        store_ids: Vec::new(),
        starts_at: None,
        ends_at: None,
        validity_days: 0,
        per_member_limit: 0,
        issue_limit: 0,
        stackable: true,
        public_code: None,
        issue_on_capture: None,
        variants: Vec::new(),
        eligible: Default::default(),
        stock_parts: 0,
        created_at: day(0),
    }
}

fn coupon(code: &str, member_id: &str, state: CouponState, order_id: &str) -> Coupon {
    Coupon {
        code: code.into(),
        campaign_id: "camp".into(),
        variant_id: String::new(),
        member_id: member_id.into(),
        state,
        valid_from: day(0),
        valid_until: Some(day(30)),
        source: "admin".into(),
        order_id: order_id.into(),
        redeemed_at: None,
        issued_at: day(0),
        discount: None,
    }
}

fn outcome(request_id: &str) -> IdempotencyRecord {
    IdempotencyRecord {
        key_id: "k1".into(),
        request_id: request_id.into(),
        request_hash: format!("hash of {request_id}"),
        // As jsonb prints it, so that it reads back byte for byte from both backends.
        outcome: r#"{"Ok": {"points": 1}}"#.into(),
        created_at: day(2),
    }
}

fn strings(values: &[&str]) -> Vec<String> {
    values.iter().map(|value| value.to_string()).collect()
}

/// `loaded` with every list in key order (the port promises the rows, not their order).
fn sorted(mut loaded: Loaded) -> Loaded {
    loaded
        .idempotency
        .sort_by(|a, b| a.request_id.cmp(&b.request_id));
    loaded.identifiers.sort();
    loaded.members.sort_by(|a, b| a.member_id.cmp(&b.member_id));
    loaded.lots.sort_by_key(|lot| lot.lot_id);
    loaded
        .balances
        .sort_by(|a, b| (&a.account, &a.asset).cmp(&(&b.account, &b.asset)));
    loaded.complete_accounts.sort();
    loaded.orders.sort_by(|a, b| a.order_id.cmp(&b.order_id));
    loaded
        .order_lots
        .sort_by(|a, b| (&a.order_id, a.lot_id).cmp(&(&b.order_id, b.lot_id)));
    loaded.coupons.sort_by(|a, b| a.code.cmp(&b.code));
    loaded.receipts.sort();
    loaded.receipt_claims.sort();
    loaded
}

/// The transaction as the journal returns it.
fn journaled(transaction_id: i64, entry: &NewTransaction) -> Transaction {
    Transaction {
        transaction_id,
        kind: entry.kind.into(),
        member_id: entry.member_id.clone(),
        occurred_at: entry.occurred_at,
        recorded_at: entry.recorded_at,
        channel: entry.channel,
        store_id: entry.store_id.clone(),
        order_id: entry.order_id.clone(),
        postings: entry.postings.clone(),
        metadata: entry.metadata.iter().cloned().collect(),
    }
}

/// Flushes `changes` in a unit of work of its own and commits.
async fn flushed(store: &Arc<dyn Store>, changes: &ChangeSet) {
    let mut uow = store.begin().await.expect("begin");
    uow.flush(changes).await.expect("flush");
    uow.commit().await.expect("commit");
}

async fn insert_campaign(store: &Arc<dyn Store>) {
    let mut uow = store.begin().await.expect("begin");
    test_writes::insert_campaign(uow.as_mut(), &campaign())
        .await
        .expect("campaign");
    uow.commit().await.expect("commit");
}

/// Every stored balance row, from the verifier's snapshot.
async fn stored_balances(uow: &mut dyn UnitOfWork) -> Vec<AccountTotal> {
    uow.ledger_snapshot()
        .await
        .expect("snapshot")
        .stored_balances
}

/// What `loaded` says of balances is what is stored: each pair it read holds the stored amount
/// (zero where no row is stored), and a complete account has no stored row it left out.
async fn assert_balances_match_storage(uow: &mut dyn UnitOfWork, loaded: &Loaded) {
    let stored = stored_balances(uow).await;
    for read in &loaded.balances {
        let row = stored
            .iter()
            .find(|row| row.account == read.account && row.asset == read.asset);
        assert_eq!(
            read.amount,
            row.map_or(0, |row| row.amount),
            "{read:?} as loaded"
        );
    }
    for account in &loaded.complete_accounts {
        for row in stored.iter().filter(|row| &row.account == account) {
            assert!(
                loaded.balances.contains(row),
                "{account} is complete, yet {row:?} is not loaded"
            );
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The tests.

/// Every part of a ChangeSet, flushed, reads back the same through `load` and through the
/// row-level reads; then every kind of update does too.
async fn flush_then_load_round_trips_every_part(store: Arc<dyn Store>) {
    insert_campaign(&store).await;
    let mut uow = store.begin().await.expect("begin");
    let transaction_ids = uow.reserve_ids(Sequence::Transactions, 2).await.unwrap();
    let lot_ids = uow.reserve_ids(Sequence::Lots, 2).await.unwrap();
    let earn = entry(
        "earn",
        "m1",
        vec![
            posting("program:issued", "member:m1", "PTS", 100),
            posting("program:issued", "member:m1:pending", "PTS", 5),
            posting("campaign:camp", "member:m1", "CPN:camp", 1),
        ],
    );
    let authorize = NewTransaction {
        channel: None,
        store_id: String::new(),
        metadata: Vec::new(),
        ..entry(
            "authorize",
            "m1",
            vec![
                posting("member:m1", "hold:o1", "PTS", 30),
                posting("campaign:camp", "hold:o1", "CPN:camp", 1),
            ],
        )
    };
    let held = Lot {
        held_points: 30,
        ..lot(lot_ids[0], "m1", 100)
    };
    let pending = Lot {
        state: LotState::Pending,
        matures_at: Some(day(10)),
        expires_at: None,
        original_points: 5,
        ..lot(lot_ids[1], "m1", 5)
    };
    let o1 = order("o1", "m1", "R-1");
    let take = OrderLot {
        order_id: "o1".into(),
        lot_id: held.lot_id,
        points: 30,
        restored_points: 0,
    };
    let reserved = coupon("C1", "m1", CouponState::Reserved, "o1");
    let active = coupon("C2", "m1", CouponState::Active, "");
    let first = ChangeSet {
        new_members: vec![member("m1"), member("m2")],
        new_identifiers: vec![(email("a@example.com"), "m1".into())],
        transactions: vec![
            (transaction_ids[0], earn.clone()),
            (transaction_ids[1], authorize.clone()),
        ],
        balance_deltas: vec![
            total("hold:o1", "CPN:camp", 1),
            total("hold:o1", "PTS", 30),
            total("member:m1", "CPN:camp", 1),
            total("member:m1", "PTS", 70),
            total("member:m1:pending", "PTS", 5),
        ],
        new_lots: vec![held.clone(), pending.clone()],
        new_orders: vec![o1.clone()],
        new_order_lots: vec![take.clone()],
        new_coupons: vec![reserved.clone(), active.clone()],
        outcomes: vec![outcome("r1")],
        engagement: EngagementChanges {
            receipt_claims: vec![sale_claim(&o1)],
            ..EngagementChanges::default()
        },
        ..ChangeSet::default()
    };
    uow.flush(&first).await.expect("flush the new rows");
    uow.commit().await.expect("commit");

    let keys = Keys {
        idempotency: vec![("k1".into(), "r1".into()), ("k1".into(), "r-none".into())],
        member_ids: strings(&["m2", "m-none"]),
        identifiers: vec![email("a@example.com"), email("none@example.com")],
        order_ids: strings(&["o1", "o-none"]),
        receipts: vec![
            register_receipt_key("s1", "r1", "R-1"),
            register_receipt_key("s1", "r1", "R-none"),
        ],
        coupon_codes: strings(&["C2", "C-none"]),
        wanted_ids: HashMap::from([(Sequence::Transactions, 3), (Sequence::Lots, 2)]),
        presence: false,
    };
    let mut uow = store.begin().await.expect("begin");
    let loaded = sorted(uow.load(&keys).await.expect("load"));
    // The wanted ids come with the load, distinct and unused.
    for (sequence, count) in [(Sequence::Transactions, 3), (Sequence::Lots, 2)] {
        let ids: std::collections::BTreeSet<i64> = loaded
            .reserved_ids
            .get(&sequence)
            .into_iter()
            .flatten()
            .copied()
            .collect();
        assert_eq!(ids.len(), count, "{sequence:?}: {:?}", loaded.reserved_ids);
        let more = uow.reserve_ids(sequence, 2).await.expect("reserve");
        assert!(
            more.iter().all(|id| !ids.contains(id)),
            "{sequence:?} reissued"
        );
    }
    assert_eq!(loaded.idempotency, [outcome("r1")]);
    assert_eq!(
        loaded.identifiers,
        [(email("a@example.com"), "m1".to_string())]
    );
    assert_eq!(loaded.members, [member("m1"), member("m2")]);
    assert_eq!(loaded.lots, [held.clone(), pending.clone()]);
    assert_eq!(loaded.orders, std::slice::from_ref(&o1));
    assert_eq!(loaded.order_lots, std::slice::from_ref(&take));
    assert_eq!(loaded.coupons, [reserved.clone(), active.clone()]);
    let receipt = register_receipt_key("s1", "r1", "R-1");
    assert_eq!(loaded.receipts, [(receipt, "o1".to_string())]);
    for expected in [
        total("hold:o1", "PTS", 30),
        total("member:m1", "PTS", 70),
        total("member:m1:pending", "PTS", 5),
    ] {
        assert!(loaded.balances.contains(&expected), "{expected:?} loaded");
    }
    assert!(
        loaded
            .complete_accounts
            .contains(&"hold:o-none".to_string())
    );
    assert_balances_match_storage(uow.as_mut(), &loaded).await;

    // The same rows through the row-level reads.
    assert_eq!(
        uow.get_member("m1", false).await.unwrap(),
        Some(member("m1"))
    );
    let linked = uow.member_by_identifier(&email("a@example.com")).await;
    assert_eq!(linked.unwrap().as_deref(), Some("m1"));
    let history = uow.member_transactions("m1", None, 10).await.unwrap();
    assert_eq!(
        history,
        [
            journaled(transaction_ids[1], &authorize),
            journaled(transaction_ids[0], &earn),
        ]
    );
    assert_eq!(uow.balance("member:m1", "PTS").await.unwrap(), 70);
    assert_eq!(uow.balance("member:m1", "CPN:camp").await.unwrap(), 1);
    assert_eq!(uow.balance("program:issued", "PTS").await.unwrap(), -105);
    assert_eq!(uow.get_lot(held.lot_id).await.unwrap(), Some(held.clone()));
    let live = [held.clone(), pending.clone()];
    assert_eq!(uow.member_lots("m1").await.unwrap(), live);
    assert_eq!(uow.get_order("o1", false).await.unwrap(), Some(o1.clone()));
    assert_eq!(
        uow.order_lots("o1").await.unwrap(),
        std::slice::from_ref(&take)
    );
    assert_eq!(
        uow.order_coupons("o1").await.unwrap(),
        std::slice::from_ref(&reserved)
    );
    assert_eq!(uow.get_coupon("C2", false).await.unwrap(), Some(active));
    let remembered = uow.find_idempotency("k1", "r1").await.unwrap();
    assert_eq!(remembered, Some(outcome("r1")));

    // Every kind of update, and new rows that reference rows of the same flush.
    let capture_id = uow.reserve_ids(Sequence::Transactions, 1).await.unwrap()[0];
    let capture = entry(
        "capture",
        "m1",
        vec![
            posting("hold:o1", "program:redeemed:store:s1", "PTS", 30),
            posting("hold:o1", "campaign:camp:redeemed", "CPN:camp", 1),
        ],
    );
    let m1 = MemberRow {
        display_name: "Renamed".into(),
        lifetime_redeemed_points: 30,
        attributes: Default::default(),
        erased_at: None,
        ..member("m1")
    };
    let m2 = MemberRow {
        state: MemberState::Merged,
        merged_into: Some("m3".into()),
        ..member("m2")
    };
    let spent = Lot {
        remaining_points: 70,
        held_points: 0,
        state: LotState::Expired,
        ..held
    };
    let captured = Order {
        state: OrderState::Captured,
        hold_expires_at: None,
        points_earned: 12,
        refunded_amount: money("0.5"),
        points_reversed: 1,
        points_restored: 2,
        ..o1
    };
    let restored = OrderLot {
        restored_points: 10,
        ..take
    };
    let redeemed = Coupon {
        state: CouponState::Redeemed,
        redeemed_at: Some(day(3)),
        discount: Some(money("150.25")),
        valid_until: None,
        ..reserved
    };
    let second = ChangeSet {
        new_members: vec![member("m3")],
        changed_members: vec![m1.clone(), m2.clone()],
        new_identifiers: vec![(email("c@example.com"), "m3".into())],
        transactions: vec![(capture_id, capture.clone())],
        balance_deltas: vec![
            total("hold:o1", "CPN:camp", -1),
            total("hold:o1", "PTS", -30),
        ],
        changed_lots: vec![spent.clone()],
        changed_orders: vec![captured.clone()],
        changed_order_lots: vec![restored.clone()],
        changed_coupons: vec![redeemed.clone()],
        outcomes: vec![outcome("r2")],
        ..ChangeSet::default()
    };
    uow.flush(&second).await.expect("flush the changes");
    uow.commit().await.expect("commit");

    let keys = Keys {
        idempotency: vec![("k1".into(), "r2".into())],
        member_ids: strings(&["m1", "m2"]),
        identifiers: vec![email("c@example.com")],
        order_ids: strings(&["o1"]),
        ..Keys::default()
    };
    let mut uow = store.begin().await.expect("begin");
    let loaded = sorted(uow.load(&keys).await.expect("load"));
    assert_eq!(loaded.idempotency, [outcome("r2")]);
    assert_eq!(loaded.members, [m1, m2, member("m3")]);
    assert_eq!(
        loaded.lots,
        [spent.clone(), pending],
        "an expired lot still holding points is live"
    );
    assert_eq!(loaded.orders, std::slice::from_ref(&captured));
    assert_eq!(loaded.order_lots, std::slice::from_ref(&restored));
    assert_eq!(loaded.coupons, std::slice::from_ref(&redeemed));
    assert!(loaded.balances.contains(&total("hold:o1", "PTS", 0)));
    assert_balances_match_storage(uow.as_mut(), &loaded).await;
    assert_eq!(uow.get_lot(spent.lot_id).await.unwrap(), Some(spent));
    assert_eq!(uow.get_coupon("C1", false).await.unwrap(), Some(redeemed));
    let history = uow.member_transactions("m1", None, 1).await.unwrap();
    assert_eq!(history, [journaled(capture_id, &capture)]);
    assert_eq!(uow.balance("hold:o1", "CPN:camp").await.unwrap(), 0);
}

/// A load holds everything it promises: the named rows, the owners of named orders, and every
/// live lot, order lot and order coupon of what it loaded; nothing of anyone else.
async fn loaded_is_complete_for_what_it_loads(store: Arc<dyn Store>) {
    insert_campaign(&store).await;
    let mut uow = store.begin().await.expect("begin");
    let lot_ids = uow.reserve_ids(Sequence::Lots, 6).await.unwrap();
    drop(uow);
    let o3 = order("o3", "m3", "");
    let setup = ChangeSet {
        new_members: ["m1", "m3", "m4", "m5"].map(member).to_vec(),
        new_identifiers: vec![(email("five@example.com"), "m5".into())],
        balance_deltas: vec![
            total("hold:o3", "PTS", 7),
            total("member:m1", "CPN:camp", 2),
            total("member:m1", "PTS", 50),
            total("member:m1:pending", "PTS", 4),
            total("member:m3", "PTS", 9),
            total("member:m4", "PTS", 11),
            total("member:m5", "PTS", 12),
        ],
        new_lots: vec![
            lot(lot_ids[0], "m1", 50),
            lot(lot_ids[1], "m1", 0),
            lot(lot_ids[2], "m3", 9),
            lot(lot_ids[3], "m4", 11),
            lot(lot_ids[4], "m5", 12),
        ],
        new_orders: vec![o3.clone(), order("o4", "m4", "")],
        new_order_lots: vec![OrderLot {
            order_id: "o3".into(),
            lot_id: lot_ids[2],
            points: 7,
            restored_points: 0,
        }],
        new_coupons: vec![
            coupon("C3", "m3", CouponState::Reserved, "o3"),
            coupon("C4", "m4", CouponState::Reserved, "o4"),
            coupon("C1", "m1", CouponState::Active, ""),
        ],
        ..ChangeSet::default()
    };
    flushed(&store, &setup).await;

    let keys = Keys {
        member_ids: strings(&["m1"]),
        identifiers: vec![email("five@example.com")],
        order_ids: strings(&["o3", "o-none"]),
        ..Keys::default()
    };
    let mut uow = store.begin().await.expect("begin");
    let loaded = sorted(uow.load(&keys).await.expect("load"));
    let ids = |members: &[MemberRow]| -> Vec<String> {
        members.iter().map(|m| m.member_id.clone()).collect()
    };
    assert_eq!(ids(&loaded.members), ["m1", "m3", "m5"]);
    let lots: Vec<i64> = loaded.lots.iter().map(|lot| lot.lot_id).collect();
    assert_eq!(lots, [lot_ids[0], lot_ids[2], lot_ids[4]], "live lots only");
    assert_eq!(loaded.orders, [o3]);
    assert_eq!(loaded.order_lots, setup.new_order_lots);
    let codes: Vec<&str> = loaded.coupons.iter().map(|c| c.code.as_str()).collect();
    assert_eq!(codes, ["C3"], "coupons of loaded orders; C1 was not named");
    assert!(loaded.idempotency.is_empty() && loaded.receipts.is_empty());
    assert!(
        loaded
            .complete_accounts
            .contains(&"hold:o-none".to_string())
    );
    assert!(
        !loaded.balances.iter().any(|b| b.account.contains("m4")),
        "nothing of m4: {:?}",
        loaded.balances
    );
    for expected in [
        total("hold:o3", "PTS", 7),
        total("member:m1", "PTS", 50),
        total("member:m1:pending", "PTS", 4),
        total("member:m3", "PTS", 9),
        total("member:m5", "PTS", 12),
    ] {
        assert!(loaded.balances.contains(&expected), "{expected:?} loaded");
    }
    // Every asset of these accounts is read (member:m1 holds coupons too), and the load says so.
    let complete = [
        "hold:o-none",
        "hold:o3",
        "member:m1",
        "member:m1:pending",
        "member:m3",
        "member:m3:pending",
        "member:m5",
        "member:m5:pending",
    ];
    assert_eq!(loaded.complete_accounts, strings(&complete));
    assert!(loaded.balances.contains(&total("member:m1", "CPN:camp", 2)));
    assert_balances_match_storage(uow.as_mut(), &loaded).await;
}

/// Reserved ids are distinct within a unit of work and across units of work, and neither they
/// nor ids flushed explicitly come back from the database's own id generation.
async fn reserved_ids_are_never_handed_out_again(store: Arc<dyn Store>) {
    let mut seen: Vec<(Sequence, i64)> = Vec::new();
    let mut fresh = |sequence: Sequence, ids: Vec<i64>, count: usize| {
        assert_eq!(ids.len(), count, "{sequence:?}: {ids:?}");
        for id in ids {
            assert!(id > 0);
            assert!(!seen.contains(&(sequence, id)), "{sequence:?} {id} twice");
            seen.push((sequence, id));
        }
    };
    // Before any row exists (SQLite has no sequence row yet), twice in one unit of work.
    let mut uow = store.begin().await.expect("begin");
    for sequence in [Sequence::Transactions, Sequence::Lots] {
        fresh(sequence, uow.reserve_ids(sequence, 3).await.unwrap(), 3);
        fresh(sequence, uow.reserve_ids(sequence, 2).await.unwrap(), 2);
    }
    assert!(uow.reserve_ids(Sequence::Lots, 0).await.unwrap().is_empty());
    uow.commit().await.expect("commit");

    // A later unit of work flushes rows under ids it reserved.
    let mut uow = store.begin().await.expect("begin");
    let transaction_id = uow.reserve_ids(Sequence::Transactions, 1).await.unwrap()[0];
    let lot_id = uow.reserve_ids(Sequence::Lots, 1).await.unwrap()[0];
    fresh(Sequence::Transactions, vec![transaction_id], 1);
    fresh(Sequence::Lots, vec![lot_id], 1);
    let earn = entry(
        "earn",
        "m1",
        vec![posting("program:issued", "member:m1", "PTS", 5)],
    );
    let changes = ChangeSet {
        transactions: vec![(transaction_id, earn.clone())],
        balance_deltas: vec![total("member:m1", "PTS", 5)],
        new_lots: vec![lot(lot_id, "m1", 5)],
        ..ChangeSet::default()
    };
    uow.flush(&changes).await.expect("flush");
    uow.commit().await.expect("commit");

    // Rows written under later reservations, and later reservations, never reuse any of them.
    let mut uow = store.begin().await.expect("begin");
    let appended = test_writes::append_transaction(uow.as_mut(), &earn)
        .await
        .expect("append");
    fresh(Sequence::Transactions, vec![appended], 1);
    let inserted = test_writes::insert_lot(uow.as_mut(), &lot(0, "m1", 5))
        .await
        .expect("insert lot");
    fresh(Sequence::Lots, vec![inserted], 1);
    for sequence in [Sequence::Transactions, Sequence::Lots] {
        fresh(sequence, uow.reserve_ids(sequence, 4).await.unwrap(), 4);
    }
    uow.commit().await.expect("commit");
    let mut uow = store.begin().await.expect("begin");
    for sequence in [Sequence::Transactions, Sequence::Lots] {
        fresh(sequence, uow.reserve_ids(sequence, 2).await.unwrap(), 2);
    }
}

/// A debit below zero, or of a balance with no row, fails the flush; once the unit of work is
/// dropped (rolled back), nothing the flush wrote before the failure is visible.
async fn a_failed_debit_fails_the_flush_and_leaves_no_trace(store: Arc<dyn Store>) {
    let setup = ChangeSet {
        new_members: vec![member("m1")],
        balance_deltas: vec![total("member:m1", "PTS", 10)],
        ..ChangeSet::default()
    };
    flushed(&store, &setup).await;

    let overdraws = [
        total("member:m1", "PTS", -11),
        total("member:m2", "PTS", -1),
    ];
    for overdraw in overdraws {
        let mut uow = store.begin().await.expect("begin");
        let transaction_id = uow.reserve_ids(Sequence::Transactions, 1).await.unwrap()[0];
        let lot_id = uow.reserve_ids(Sequence::Lots, 1).await.unwrap()[0];
        let account = overdraw.account.clone();
        let spend = entry(
            "redeem",
            "m1",
            vec![posting(&account, "hold:o9", "PTS", 11)],
        );
        let changes = ChangeSet {
            new_members: vec![member("m9")],
            changed_members: vec![MemberRow {
                display_name: "never".into(),
                ..member("m1")
            }],
            transactions: vec![(transaction_id, spend)],
            // hold:o9 sorts first: its credit is written before the debit fails.
            balance_deltas: vec![total("hold:o9", "PTS", 11), overdraw.clone()],
            new_lots: vec![lot(lot_id, "m9", 5)],
            outcomes: vec![outcome("r9")],
            ..ChangeSet::default()
        };
        let error = uow.flush(&changes).await.unwrap_err();
        assert!(
            matches!(error, StoreError::Database(_)),
            "{overdraw:?}: {error:?}"
        );
        drop(uow);

        let mut read = store.begin_read().await.expect("begin read");
        assert_eq!(read.get_member("m9", false).await.unwrap(), None);
        assert_eq!(
            read.get_member("m1", false).await.unwrap(),
            Some(member("m1"))
        );
        assert_eq!(read.balance("member:m1", "PTS").await.unwrap(), 10);
        assert_eq!(read.balance("hold:o9", "PTS").await.unwrap(), 0);
        assert!(
            read.member_transactions("m1", None, 10)
                .await
                .unwrap()
                .is_empty()
        );
        assert_eq!(read.get_lot(lot_id).await.unwrap(), None);
        assert_eq!(read.find_idempotency("k1", "r9").await.unwrap(), None);
        let stored = stored_balances(read.as_mut()).await;
        assert_eq!(stored, [total("member:m1", "PTS", 10)]);
    }
}

/// A new row whose key is taken (an order id, an identifier, a member id, a register receipt)
/// is a conflict: another writer got there first, and the batch runs again.
async fn a_duplicate_new_row_is_a_conflict(store: Arc<dyn Store>) {
    let setup = ChangeSet {
        new_members: vec![member("m1")],
        new_identifiers: vec![(email("a@example.com"), "m1".into())],
        new_orders: vec![order("o1", "m1", "R-1")],
        engagement: EngagementChanges {
            receipt_claims: vec![sale_claim(&order("o1", "m1", "R-1"))],
            ..EngagementChanges::default()
        },
        ..ChangeSet::default()
    };
    flushed(&store, &setup).await;

    let clashes = [
        ChangeSet {
            new_orders: vec![order("o1", "m1", "")],
            ..ChangeSet::default()
        },
        // The same register receipt, typed another way.
        ChangeSet {
            new_orders: vec![order("o2", "m1", "r-1")],
            engagement: EngagementChanges {
                receipt_claims: vec![sale_claim(&order("o2", "m1", "r-1"))],
                ..EngagementChanges::default()
            },
            ..ChangeSet::default()
        },
        // A scan's new claim of the receipt (typed another way) the sale holds.
        ChangeSet {
            engagement: EngagementChanges {
                receipt_claims: vec![ClaimWrite {
                    key: register_receipt_key("s1", "r1", " r-1"),
                    holder: ClaimHolder::Scan("rc1".into()),
                    taken_from: None,
                }],
                ..EngagementChanges::default()
            },
            ..ChangeSet::default()
        },
        ChangeSet {
            new_identifiers: vec![(email("a@example.com"), "m1".into())],
            ..ChangeSet::default()
        },
        ChangeSet {
            new_members: vec![member("m1")],
            ..ChangeSet::default()
        },
        ChangeSet {
            outcomes: vec![outcome("r1"), outcome("r1")],
            ..ChangeSet::default()
        },
    ];
    for clash in clashes {
        let mut uow = store.begin().await.expect("begin");
        let error = uow.flush(&clash).await.unwrap_err();
        assert!(
            matches!(error, StoreError::Conflict(_)),
            "{clash:?}: {error:?}"
        );
    }
}

/// A changed row the database does not have (a batch that lost track of what it loaded) fails
/// the flush rather than vanish: every kind of update counts the rows it found.
async fn an_update_that_finds_no_row_fails_the_flush(store: Arc<dyn Store>) {
    insert_campaign(&store).await;
    let missing = [
        ChangeSet {
            changed_members: vec![member("m-none")],
            ..ChangeSet::default()
        },
        ChangeSet {
            changed_lots: vec![lot(999, "m1", 5)],
            ..ChangeSet::default()
        },
        ChangeSet {
            changed_orders: vec![order("o-none", "m1", "")],
            ..ChangeSet::default()
        },
        ChangeSet {
            changed_order_lots: vec![OrderLot {
                order_id: "o-none".into(),
                lot_id: 999,
                points: 1,
                restored_points: 0,
            }],
            ..ChangeSet::default()
        },
        ChangeSet {
            changed_coupons: vec![coupon("C-none", "m1", CouponState::Active, "")],
            ..ChangeSet::default()
        },
    ];
    for changes in missing {
        let mut uow = store.begin().await.expect("begin");
        let error = uow.flush(&changes).await.unwrap_err();
        assert!(
            matches!(error, StoreError::Database(_)),
            "{changes:?}: {error:?}"
        );
    }
}

/// A load locks what it loaded until the unit of work ends: a second load of the same member
/// (named, or as the owner of a named order) or of the same order waits for the first to
/// commit, then reads what the first wrote, down to the rows that hang off the locked ones
/// (balances, order lots). (SQLite has one writer: there the second unit of work waits to
/// begin.)
async fn a_second_load_of_a_locked_member_waits_for_the_commit(store: Arc<dyn Store>) {
    let mut uow = store.begin().await.expect("begin");
    let lot_id = uow.reserve_ids(Sequence::Lots, 1).await.unwrap()[0];
    drop(uow);
    let setup = ChangeSet {
        new_members: vec![member("m1")],
        balance_deltas: vec![total("member:m1", "PTS", 100)],
        new_lots: vec![lot(lot_id, "m1", 100)],
        new_orders: vec![order("o1", "m1", "")],
        new_order_lots: vec![OrderLot {
            order_id: "o1".into(),
            lot_id,
            points: 30,
            restored_points: 0,
        }],
        ..ChangeSet::default()
    };
    flushed(&store, &setup).await;

    let by_member = Keys {
        member_ids: strings(&["m1"]),
        ..Keys::default()
    };
    let by_order = Keys {
        order_ids: strings(&["o1"]),
        ..Keys::default()
    };
    let rounds = [
        (&by_member, &by_member),
        (&by_order, &by_member),
        (&by_order, &by_order),
    ];
    for (round, (first_keys, second_keys)) in (1_i64..).zip(rounds) {
        let mut first = store.begin().await.expect("begin");
        let loaded = first.load(first_keys).await.expect("first load");
        assert_eq!(loaded.members.len(), 1);
        let renamed = MemberRow {
            display_name: format!("renamed in round {round}"),
            ..loaded.members[0].clone()
        };
        let changes = ChangeSet {
            changed_members: vec![renamed.clone()],
            balance_deltas: vec![total("member:m1", "PTS", 1)],
            changed_order_lots: vec![OrderLot {
                restored_points: round,
                ..setup.new_order_lots[0].clone()
            }],
            ..ChangeSet::default()
        };
        first.flush(&changes).await.expect("flush");

        // On PostgreSQL the second unit of work begins at once, and its load is what waits.
        let begun = if store.runs_on_calling_thread() {
            None
        } else {
            Some(store.begin().await.expect("begin the second"))
        };
        let (second_store, second_keys) = (store.clone(), second_keys.clone());
        let mut waiter = tokio::spawn(async move {
            let mut second = match begun {
                Some(uow) => uow,
                None => second_store.begin().await.expect("begin the second"),
            };
            let loaded = second.load(&second_keys).await.expect("second load");
            second.commit().await.expect("commit the second");
            loaded
        });
        let early = tokio::time::timeout(Duration::from_millis(300), &mut waiter).await;
        assert!(early.is_err(), "round {round}: the second load must wait");

        first.commit().await.expect("commit the first");
        let seen = tokio::time::timeout(Duration::from_secs(5), waiter)
            .await
            .expect("the second load proceeds once the first commits")
            .expect("the second load");
        assert_eq!(seen.members, [renamed], "round {round}");
        let balance = total("member:m1", "PTS", 100 + round);
        assert!(seen.balances.contains(&balance), "round {round}: {seen:?}");
        if !seen.orders.is_empty() {
            assert_eq!(seen.order_lots[0].restored_points, round, "round {round}");
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Engagement.

/// Store `s1`, in Tokyo.
fn shop() -> RetailStore {
    RetailStore {
        store_id: "s1".into(),
        name: "Shop".into(),
        location: LatLng {
            latitude: 35.66,
            longitude: 139.70,
        },
        time_zone: "Asia/Tokyo".into(),
        geofence_radius_m: 100.0,
        geofence_polygon: Vec::new(),
    }
}

fn date(day_of_2026: u32) -> NaiveDate {
    NaiveDate::from_yo_opt(2026, day_of_2026).expect("a date")
}

fn geo_rule() -> GeoRule {
    GeoRule {
        rule_id: "g1".into(),
        campaign_id: "camp".into(),
        store_ids: strings(&["s1"]),
        min_dwell_seconds: 300,
        max_accuracy_m: DEFAULT_MAX_ACCURACY_M,
        active_hours: Vec::new(),
        days_of_week: DaysOfWeek::EVERY_DAY,
        cooldown_seconds: 3600,
        daily_cap_per_store: 2,
        starts_at: Some(day(0)),
        ends_at: None,
    }
}

fn visit_rule(rule_id: &str, kind: VisitRuleKind) -> VisitRule {
    VisitRule {
        rule_id: rule_id.into(),
        campaign_id: "camp".into(),
        kind,
        visits: if kind == VisitRuleKind::NthVisit {
            3
        } else {
            0
        },
        window_days: 0,
        lapsed_days: if kind == VisitRuleKind::Lapsed { 30 } else { 0 },
        store_ids: Vec::new(),
    }
}

fn visit(member_id: &str, day_of_2026: u32, source: VisitSource) -> Visit {
    Visit {
        member_id: member_id.into(),
        store_id: "s1".into(),
        visit_date: date(day_of_2026),
        first_at: day(i64::from(day_of_2026) - 1),
        source,
    }
}

/// Rules, reports, presence, issues and visits written by a flush read back through the
/// load and the row reads; a visit flushed twice stays one; the verifier sees coupons whose
/// rule is gone.
async fn engagement_rows_round_trip(store: Arc<dyn Store>) {
    insert_campaign(&store).await;
    let shop = shop();
    let geo_coupon = Coupon {
        source: "geo:g1".into(),
        ..coupon("CG", "m1", CouponState::Active, "")
    };
    let visit_coupon = Coupon {
        source: "visit:v1".into(),
        ..coupon("CV", "m1", CouponState::Active, "")
    };
    let presence = Presence {
        member_id: "m1".into(),
        fix: Fix {
            position: shop.location,
            accuracy_m: 12.5,
            observed_at: day(3),
        },
        runs: vec![StoreRun {
            store_id: "s1".into(),
            run: VisitRun {
                started_at: day(2),
                last_inside_at: day(3),
            },
        }],
    };
    let issue = GeoIssue {
        rule_id: "g1".into(),
        member_id: "m1".into(),
        store_id: "s1".into(),
        issued_at: day(3),
        local_date: date(4),
        slot: Some(1),
        coupon_code: "CG".into(),
    };
    let report = |rejected| LocationRecord {
        member_id: "m1".into(),
        observed_at: day(3),
        recorded_at: day(3),
        position: shop.location,
        accuracy_m: 12.5,
        rejected,
    };
    let engagement = EngagementChanges {
        new_geo_rules: vec![(geo_rule(), day(1))],
        new_visit_rules: vec![
            (visit_rule("v1", VisitRuleKind::NthVisit), day(1)),
            (visit_rule("v2", VisitRuleKind::Lapsed), day(1)),
        ],
        location_reports: vec![report(None), report(Some(RejectReason::Speed))],
        presence: vec![presence.clone()],
        geo_issues: vec![issue.clone()],
        visits: vec![
            visit("m1", 2, VisitSource::Sale),
            visit("m1", 4, VisitSource::Geo),
        ],
        visit_issues: vec![VisitIssue {
            rule_id: "v1".into(),
            member_id: "m1".into(),
            issued_on: date(4),
            coupon_code: "CV".into(),
        }],
        ..EngagementChanges::default()
    };
    // The rules the coupons name are rows of `rules`; the legacy tables are still readable.
    let rules = RuleChanges {
        new_rules: vec![
            views::of_geo(geo_rule()),
            views::of_visit(visit_rule("v1", VisitRuleKind::NthVisit)),
            views::of_visit(visit_rule("v2", VisitRuleKind::Lapsed)),
        ],
        ..RuleChanges::default()
    };
    let changes = ChangeSet {
        rules,
        new_stores: vec![shop],
        new_members: vec![member("m1"), member("m2")],
        new_coupons: vec![geo_coupon, visit_coupon],
        engagement,
        ..ChangeSet::default()
    };
    flushed(&store, &changes).await;
    // The same visit again, from another signal: still one visit, the first kept.
    let again = ChangeSet {
        engagement: EngagementChanges {
            visits: vec![
                visit("m1", 4, VisitSource::Sale),
                visit("m2", 1, VisitSource::Sale),
            ],
            ..EngagementChanges::default()
        },
        ..ChangeSet::default()
    };
    flushed(&store, &again).await;

    let mut uow = store.begin().await.expect("begin");
    let keys = Keys {
        member_ids: strings(&["m1", "m2"]),
        presence: true,
        ..Keys::default()
    };
    let loaded = uow.load(&keys).await.expect("load");
    assert_eq!(loaded.presence, vec![presence.clone()]);
    assert_eq!(uow.presence("m1").await.expect("presence"), Some(presence));
    assert_eq!(uow.presence("m2").await.expect("presence"), None);
    assert_eq!(uow.list_geo_rules().await.expect("rules"), vec![geo_rule()]);
    let visit_rules = uow.list_visit_rules().await.expect("rules");
    assert_eq!(
        visit_rules,
        vec![
            visit_rule("v1", VisitRuleKind::NthVisit),
            visit_rule("v2", VisitRuleKind::Lapsed)
        ]
    );
    assert_eq!(uow.count_stores().await.expect("count"), 1);
    let facts = uow
        .geo_issue_facts("g1", "m1", "s1", date(4))
        .await
        .expect("facts");
    let expected = IssueFacts {
        last_issued_at: Some(day(3)),
        issued_today_at_store: 1,
    };
    assert_eq!(facts, expected);
    let other_day = uow.geo_issue_facts("g1", "m2", "s1", date(5)).await;
    assert_eq!(other_day.expect("facts"), IssueFacts::default());
    let visits = uow.member_visits("m1", None).await.expect("visits");
    let expected = vec![
        visit("m1", 2, VisitSource::Sale),
        visit("m1", 4, VisitSource::Geo),
    ];
    assert_eq!(visits, expected);
    let recent = uow
        .member_visits("m1", Some(date(3)))
        .await
        .expect("visits");
    assert_eq!(recent, vec![visit("m1", 4, VisitSource::Geo)]);
    assert_eq!(
        uow.last_visit_issue("v1", "m1").await.expect("issue"),
        Some(date(4))
    );
    assert_eq!(uow.last_visit_issue("v2", "m1").await.expect("issue"), None);
    // LAPSED: m2's last visit (day 1) is on or before day 2; m1's (day 4) is not.
    let lapsed = uow.lapsed_candidates("v2", &[], date(2), "", 10).await;
    assert_eq!(lapsed.expect("candidates"), strings(&["m2"]));
    let lapsed = uow
        .lapsed_candidates("v2", &strings(&["s1"]), date(4), "m1", 10)
        .await;
    assert_eq!(lapsed.expect("candidates"), strings(&["m2"]));
    // v1 issued to m1 on day 4, the day of its last visit: not a candidate of v1.
    let lapsed = uow.lapsed_candidates("v1", &[], date(4), "", 10).await;
    assert_eq!(lapsed.expect("candidates"), strings(&["m2"]));
    drop(uow);

    let mut uow = store.begin_read().await.expect("begin");
    let snapshot = uow.ledger_snapshot().await.expect("snapshot");
    assert!(snapshot.coupons_without_rule.is_empty());
    drop(uow);
    let orphan = Coupon {
        source: "geo:gone".into(),
        ..coupon("CX", "m2", CouponState::Active, "")
    };
    let changes = ChangeSet {
        new_coupons: vec![orphan],
        ..ChangeSet::default()
    };
    flushed(&store, &changes).await;
    let mut uow = store.begin_read().await.expect("begin");
    let snapshot = uow.ledger_snapshot().await.expect("snapshot");
    assert_eq!(snapshot.coupons_without_rule, strings(&["CX"]));
}

/// Three journal entries, flushed; their ids.
async fn journal_of_three(store: &Arc<dyn Store>) -> Vec<i64> {
    let mut uow = store.begin().await.expect("begin");
    let ids = uow.reserve_ids(Sequence::Transactions, 3).await.unwrap();
    let entries = ids
        .iter()
        .map(|&id| {
            let postings = vec![
                posting("program:issued", "member:m1", "PTS", id),
                posting("program:issued", "program:adjustments", "PTS", 1),
            ];
            (id, entry("earn", "m1", postings))
        })
        .collect();
    let changes = ChangeSet {
        new_members: vec![member("m1")],
        transactions: entries,
        balance_deltas: vec![total("member:m1", "PTS", ids.iter().sum())],
        ..ChangeSet::default()
    };
    uow.flush(&changes).await.expect("flush");
    uow.commit().await.expect("commit");
    ids
}

/// The sealer's reads: the settled horizon covers what is committed, a range reads back every
/// transaction with its postings in order, and a seal reads back as written (and checks clean).
async fn the_journal_reads_back_by_range_for_its_seals(store: Arc<dyn Store>) {
    let ids = journal_of_three(&store).await;
    let horizon = store
        .begin_read_statement()
        .await
        .unwrap()
        .settled_horizon()
        .await
        .unwrap();
    assert!(horizon >= Some(ids[2]), "{horizon:?} / {ids:?}");

    let mut uow = store.begin().await.expect("begin");
    let all = uow.journal_range(0, ids[2], 10).await.unwrap();
    assert_eq!(
        all.iter().map(|t| t.transaction_id).collect::<Vec<_>>(),
        ids
    );
    assert_eq!(all[1].postings.len(), 2);
    assert_eq!(
        all[1].postings[0].amount, ids[1],
        "postings in posting_no order"
    );
    let first_two = uow.journal_range(0, ids[2], 2).await.unwrap();
    assert_eq!(first_two, all[..2]);
    let last = uow.journal_range(ids[1], ids[2], 10).await.unwrap();
    assert_eq!(last, all[2..]);

    assert_eq!(uow.last_seal().await.unwrap(), None);
    let seal = Seal::next(None, ids[2], &all, day(3), None);
    uow.insert_seal(&seal).await.unwrap();
    uow.commit().await.unwrap();

    let mut read = store.begin_read().await.unwrap();
    assert_eq!(read.last_seal().await.unwrap().as_ref(), Some(&seal));
    assert_eq!(
        read.seals(0, 10).await.unwrap(),
        std::slice::from_ref(&seal)
    );
    assert!(read.seals(1, 10).await.unwrap().is_empty());
    let now = read.journal_range(0, ids[2], 10).await.unwrap();
    assert!(check_seal(&seal, crate::domain::seal::GENESIS_HASH, 0, None, &now).is_empty());
}

/// Two sealers racing for one seal number: the second insert is a conflict.
async fn a_second_seal_under_the_same_number_is_a_conflict(store: Arc<dyn Store>) {
    let ids = journal_of_three(&store).await;
    let mut uow = store.begin().await.expect("begin");
    let all = uow.journal_range(0, ids[2], 10).await.unwrap();
    uow.insert_seal(&Seal::next(None, ids[2], &all, day(3), None))
        .await
        .unwrap();
    uow.commit().await.unwrap();

    let mut late = store.begin().await.expect("begin");
    let error = late
        .insert_seal(&Seal::next(None, ids[1], &all[..2], day(3), None))
        .await
        .unwrap_err();
    assert!(matches!(error, StoreError::Conflict(_)), "{error:?}");
}

/// Records created before the cut are deleted, at most `limit` at a time; newer ones stay.
async fn idempotency_records_are_purged_oldest_first_in_batches(store: Arc<dyn Store>) {
    let aged = |request_id: &str, days: i64| IdempotencyRecord {
        created_at: day(days),
        ..outcome(request_id)
    };
    let records = vec![
        aged("old-1", 1),
        aged("old-2", 2),
        aged("old-3", 3),
        aged("new", 9),
    ];
    flushed(
        &store,
        &ChangeSet {
            outcomes: records,
            ..ChangeSet::default()
        },
    )
    .await;

    let mut uow = store.begin().await.expect("begin");
    assert_eq!(uow.purge_idempotency(day(5), 2).await.unwrap(), 2);
    assert_eq!(uow.purge_idempotency(day(5), 2).await.unwrap(), 1);
    assert_eq!(uow.purge_idempotency(day(5), 2).await.unwrap(), 0);
    uow.commit().await.unwrap();

    let mut read = store.begin_read().await.unwrap();
    for gone in ["old-1", "old-2", "old-3"] {
        assert_eq!(read.find_idempotency("k1", gone).await.unwrap(), None);
    }
    assert!(read.find_idempotency("k1", "new").await.unwrap().is_some());
}

/// Location reports recorded before the cut are deleted, at most `limit` at a time; receipts
/// submitted before it lose their raw text and keep everything else; newer ones keep theirs.
async fn retention_deletes_old_location_reports_and_empties_old_receipt_texts(
    store: Arc<dyn Store>,
) {
    let report = |days: i64| LocationRecord {
        member_id: "m1".into(),
        observed_at: day(days),
        recorded_at: day(days),
        position: LatLng {
            latitude: 35.66,
            longitude: 139.7,
        },
        accuracy_m: 10.0,
        rejected: None,
    };
    let old = receipt_record("rc_old", "0001", 'a', 1);
    let textless = ReceiptRecord {
        receipt: Receipt {
            raw_text: String::new(),
            ..receipt_record("x", "0002", 'b', 2).receipt
        },
        ..receipt_record("rc_textless", "0002", 'b', 2)
    };
    let new = receipt_record("rc_new", "0003", 'c', 9);
    let changes = ChangeSet {
        new_members: vec![member("m1")],
        engagement: EngagementChanges {
            location_reports: vec![report(1), report(2), report(9)],
            new_receipts: vec![old.clone(), textless.clone(), new.clone()],
            ..EngagementChanges::default()
        },
        ..ChangeSet::default()
    };
    flushed(&store, &changes).await;

    let mut uow = store.begin().await.expect("begin");
    assert_eq!(uow.purge_location_reports(day(5), 1).await.unwrap(), 1);
    assert_eq!(uow.purge_location_reports(day(5), 10).await.unwrap(), 1);
    assert_eq!(uow.purge_location_reports(day(5), 10).await.unwrap(), 0);
    assert_eq!(uow.clear_receipt_texts(day(5), 10).await.unwrap(), 1);
    assert_eq!(uow.clear_receipt_texts(day(5), 10).await.unwrap(), 0);
    uow.commit().await.unwrap();

    let mut uow = store.begin().await.expect("begin");
    let cleared = uow.get_receipt("rc_old", false).await.unwrap();
    let expected = ReceiptRecord {
        receipt: Receipt {
            raw_text: String::new(),
            ..old.receipt.clone()
        },
        ..old
    };
    assert_eq!(cleared, Some(expected));
    assert_eq!(
        uow.get_receipt("rc_textless", false).await.unwrap(),
        Some(textless)
    );
    assert_eq!(uow.get_receipt("rc_new", false).await.unwrap(), Some(new));
    // The newer report was kept: a later cut finds it.
    assert_eq!(uow.purge_location_reports(day(10), 10).await.unwrap(), 1);
}

// ---------------------------------------------------------------------------------------------
// Dashboard sessions

async fn dashboard_sessions_round_trip_with_their_key_and_end(store: Arc<dyn Store>) {
    use crate::domain::{auth::Role, ports::ApiKeyRecord, session::DashboardSession};
    let key = ApiKeyRecord {
        key_id: "k_dash".into(),
        key_hash: "h_dash".into(),
        role: Role::Admin,
        store_id: None,
        name: "dash".into(),
        created_at: day(0),
        expires_at: None,
        revoked_at: Some(day(4)),
        last_used_at: None,
    };
    let session = |hash: &str, opened: i64, seen: i64| DashboardSession {
        session_hash: hash.into(),
        key_id: "k_dash".into(),
        csrf_token: format!("csrf-{hash}"),
        created_at: day(opened),
        last_seen_at: day(seen),
    };
    let mut uow = store.begin().await.expect("begin");
    uow.insert_api_key(&key).await.expect("key");
    for opened in [
        session("old", 0, 3),
        session("idle", 2, 2),
        session("live", 3, 5),
    ] {
        uow.insert_dashboard_session(&opened)
            .await
            .expect("session");
    }
    uow.commit().await.expect("commit");

    // A use moves the last use forward only; ended sessions are purged by either bound.
    let mut uow = store.begin().await.expect("begin");
    uow.touch_dashboard_session("live", day(6)).await.unwrap();
    uow.touch_dashboard_session("live", day(4)).await.unwrap();
    assert_eq!(
        uow.purge_dashboard_sessions(day(1), day(3)).await.unwrap(),
        2
    );
    uow.commit().await.expect("commit");
    let mut read = store.begin_read().await.expect("begin");
    for gone in ["old", "idle"] {
        assert_eq!(read.find_dashboard_session(gone).await.unwrap(), None);
    }
    let found = read.find_dashboard_session("live").await.unwrap();
    assert_eq!(
        found,
        Some((session("live", 3, 6), key)),
        "with its key, revoked"
    );
    drop(read);

    // Logout deletes it; a session needs a key that exists.
    let mut uow = store.begin().await.expect("begin");
    assert!(uow.delete_dashboard_session("live").await.unwrap());
    assert!(!uow.delete_dashboard_session("live").await.unwrap());
    assert_eq!(uow.find_dashboard_session("live").await.unwrap(), None);
    uow.commit().await.expect("commit");
    let orphan = DashboardSession {
        key_id: "k_none".into(),
        ..session("orphan", 5, 5)
    };
    let mut uow = store.begin().await.expect("begin");
    assert!(uow.insert_dashboard_session(&orphan).await.is_err());
}

// ---------------------------------------------------------------------------------------------
// Receipts

/// The claim a batch writes for a new register sale.
fn sale_claim(order: &Order) -> ClaimWrite {
    ClaimWrite {
        key: register_receipt_key(&order.store_id, &order.register_id, &order.receipt_no),
        holder: ClaimHolder::Sale(order.order_id.clone()),
        taken_from: None,
    }
}

/// The claim a batch writes for a new scanned receipt that claims its number.
fn scan_claim(record: &ReceiptRecord) -> ClaimWrite {
    let receipt = &record.receipt;
    ClaimWrite {
        key: register_receipt_key(&receipt.store_id, &receipt.register_id, &receipt.receipt_no),
        holder: ClaimHolder::Scan(record.receipt_id.clone()),
        taken_from: None,
    }
}

fn receipt_record(receipt_id: &str, receipt_no: &str, image: char, at: i64) -> ReceiptRecord {
    ReceiptRecord {
        receipt_id: receipt_id.into(),
        member_id: "m1".into(),
        receipt: Receipt {
            store_id: "s1".into(),
            register_id: "r1".into(),
            receipt_no: receipt_no.into(),
            issued_at: day(at),
            total: money("1980.5"),
            lines: vec![LineItem {
                line_id: "1".into(),
                sku: "コーヒー豆".into(),
                category: "coffee".into(),
                quantity: 2,
                amount: money("1980.5"),
            }],
            image_sha256: image.to_string().repeat(64),
            raw_text: "合計 ¥1,980".into(),
        },
        status: ReceiptStatus::Accepted,
        reason: None,
        points: 0,
        lot_id: None,
        rule_ids: strings(&["rr1"]),
        coupon_codes: Vec::new(),
        submitted_at: day(at),
        reviewed_at: None,
        review_note: String::new(),
    }
}

/// Receipts and their rules read back as written; only receipts that claim their number and
/// image are found by them (and a second claim is a conflict); pages come in their orders; a
/// review's update reads back; verify sees a review lot that does not match its receipt.
async fn receipt_rows_round_trip(store: Arc<dyn Store>) {
    let rule = ReceiptRule {
        rule_id: "rr1".into(),
        store_ids: strings(&["s1"]),
        earn_rate: Some(rust_decimal::Decimal::new(1, 2)),
        campaign_id: String::new(),
        min_total: money("500"),
        conditions: Vec::new(),
        max_age_days: 7,
        review_threshold: Some(money("10000")),
        starts_at: Some(day(0)),
        ends_at: None,
    };
    let mut uow = store.begin().await.expect("begin");
    let lot_id = uow.reserve_ids(Sequence::Lots, 1).await.expect("ids")[0];
    drop(uow);
    let review_lot = Lot {
        order_id: String::new(),
        state: LotState::Pending,
        expires_at: None,
        original_points: 19,
        remaining_points: 19,
        ..lot(lot_id, "m1", 19)
    };
    let pending = ReceiptRecord {
        status: ReceiptStatus::PendingReview,
        reason: Some(ReceiptReason::ReviewThreshold),
        points: 19,
        lot_id: Some(lot_id),
        ..receipt_record("rc_pending", "0001", 'a', 1)
    };
    // Refused at submission: it claims nothing, although it names the same receipt.
    let duplicate = ReceiptRecord {
        member_id: "m2".into(),
        status: ReceiptStatus::Rejected,
        reason: Some(ReceiptReason::Duplicate),
        rule_ids: Vec::new(),
        ..receipt_record("rc_dup", "0001", 'b', 2)
    };
    let accepted = receipt_record("rc_accepted", "0002", 'c', 3);
    let changes = ChangeSet {
        new_members: vec![member("m1"), member("m2")],
        new_lots: vec![review_lot.clone()],
        engagement: EngagementChanges {
            new_receipt_rules: vec![(rule.clone(), day(0))],
            new_receipts: vec![pending.clone(), duplicate.clone(), accepted.clone()],
            receipt_claims: vec![scan_claim(&pending), scan_claim(&accepted)],
            ..EngagementChanges::default()
        },
        ..ChangeSet::default()
    };
    flushed(&store, &changes).await;

    let mut uow = store.begin().await.expect("begin");
    // A batch's load says which register receipts a scan claims (a sale of one takes it over).
    let receipt_key = |receipt_no: &str| register_receipt_key("s1", "r1", receipt_no);
    let keys = Keys {
        receipts: vec![receipt_key("0001"), receipt_key("0009")],
        ..Keys::default()
    };
    let loaded = uow.load(&keys).await.expect("load");
    assert_eq!(
        loaded.receipt_claims,
        vec![(receipt_key("0001"), "rc_pending".to_string())]
    );
    assert_eq!(uow.list_receipt_rules().await.expect("rules"), vec![rule]);
    assert_eq!(
        uow.get_receipt("rc_pending", true).await.expect("get"),
        Some(pending.clone())
    );
    assert_eq!(uow.get_receipt("rc_none", false).await.expect("get"), None);
    let number = |receipt_no: &str| ReceiptClaim::number("s1", "r1", receipt_no);
    let claimed = uow
        .receipt_claimed_by(&number("0001"))
        .await
        .expect("claim");
    assert_eq!(claimed.as_deref(), Some("rc_pending"));
    let image = |c: char| ReceiptClaim::Image(c.to_string().repeat(64));
    let unclaimed = uow.receipt_claimed_by(&image('b')).await.expect("claim");
    assert_eq!(unclaimed, None, "a refused receipt claims nothing");
    let claimed = uow.receipt_claimed_by(&image('c')).await.expect("claim");
    assert_eq!(claimed.as_deref(), Some("rc_accepted"));
    assert_eq!(uow.count_member_receipts("m1", day(0)).await.unwrap(), 2);
    assert_eq!(uow.count_member_receipts("m1", day(2)).await.unwrap(), 1);
    assert_eq!(uow.count_member_receipts("m2", day(0)).await.unwrap(), 0);
    // A second claim of the number, whoever writes it, is a conflict.
    let clash = ChangeSet {
        engagement: EngagementChanges {
            new_receipts: vec![receipt_record("rc_clash", "0001", 'd', 4)],
            receipt_claims: vec![scan_claim(&receipt_record("rc_clash", "1", 'd', 4))],
            ..EngagementChanges::default()
        },
        ..ChangeSet::default()
    };
    let error = uow.flush(&clash).await.unwrap_err();
    assert!(matches!(error, StoreError::Conflict(_)), "{error:?}");
    drop(uow);

    let mut uow = store.begin_read().await.expect("begin");
    let page = |member_id: Option<&str>, status, after, limit| ReceiptPageQuery {
        member_id: member_id.map(str::to_string),
        status,
        after,
        limit,
    };
    let ids = |receipts: Vec<ReceiptRecord>| -> Vec<String> {
        receipts.into_iter().map(|r| r.receipt_id).collect()
    };
    let history = uow.list_receipts(&page(Some("m1"), None, None, 10)).await;
    assert_eq!(
        ids(history.unwrap()),
        strings(&["rc_accepted", "rc_pending"])
    );
    let after = Some((day(3), "rc_accepted".to_string()));
    let rest = uow.list_receipts(&page(Some("m1"), None, after, 10)).await;
    assert_eq!(ids(rest.unwrap()), strings(&["rc_pending"]));
    let queue = Some(ReceiptStatus::PendingReview);
    let pending_only = uow.list_receipts(&page(None, queue, None, 10)).await;
    assert_eq!(pending_only.unwrap(), vec![pending.clone()]);
    let rejected = Some(ReceiptStatus::Rejected);
    let refused = uow.list_receipts(&page(None, rejected, None, 1)).await;
    assert_eq!(ids(refused.unwrap()), strings(&["rc_dup"]));
    let snapshot = uow.ledger_snapshot().await.expect("snapshot");
    assert_eq!(snapshot.receipts_off_their_lot, Vec::<String>::new());
    assert_eq!(
        (
            snapshot.receipt_points_in_review,
            snapshot.review_lot_points
        ),
        (19, 19)
    );
    drop(uow);

    // The review approves it; its lot becomes available.
    let approved = ReceiptRecord {
        status: ReceiptStatus::Accepted,
        reason: None,
        coupon_codes: strings(&["CR"]),
        reviewed_at: Some(day(5)),
        review_note: "looks right".into(),
        ..pending.clone()
    };
    let review = ChangeSet {
        changed_lots: vec![Lot {
            state: LotState::Available,
            ..review_lot.clone()
        }],
        new_coupons: vec![coupon("CR", "m1", CouponState::Active, "")],
        engagement: EngagementChanges {
            changed_receipts: vec![approved.clone()],
            ..EngagementChanges::default()
        },
        ..ChangeSet::default()
    };
    insert_campaign(&store).await;
    flushed(&store, &review).await;
    let mut uow = store.begin_read().await.expect("begin");
    assert_eq!(
        uow.get_receipt("rc_pending", false).await.expect("get"),
        Some(approved)
    );
    let snapshot = uow.ledger_snapshot().await.expect("snapshot");
    assert_eq!(snapshot.receipts_off_their_lot, Vec::<String>::new());
    drop(uow);

    // The register records the sale of the scanned receipt "0002": it takes the claim over
    // from the scan that holds it, and from no other.
    let take = |order_id: &str, from: &str| ClaimWrite {
        taken_from: Some(from.into()),
        ..sale_claim(&order(order_id, "m1", "0002"))
    };
    let stale = ChangeSet {
        engagement: EngagementChanges {
            receipt_claims: vec![take("o-stale", "rc_pending")],
            ..EngagementChanges::default()
        },
        ..ChangeSet::default()
    };
    let mut uow = store.begin().await.expect("begin");
    let error = uow.flush(&stale).await.unwrap_err();
    assert!(matches!(error, StoreError::Conflict(_)), "{error:?}");
    drop(uow);
    let sale = ChangeSet {
        engagement: EngagementChanges {
            receipt_claims: vec![take("o-sale", "rc_accepted")],
            ..EngagementChanges::default()
        },
        ..ChangeSet::default()
    };
    flushed(&store, &sale).await;
    let mut uow = store.begin().await.expect("begin");
    let keys = Keys {
        receipts: vec![receipt_key("2"), receipt_key("1")],
        ..Keys::default()
    };
    let loaded = sorted(uow.load(&keys).await.expect("load"));
    assert_eq!(loaded.receipts, [(receipt_key("2"), "o-sale".to_string())]);
    assert_eq!(
        loaded.receipt_claims,
        [(receipt_key("1"), "rc_pending".to_string())]
    );
    let (store_id, register_id, receipt_no) = receipt_key("0002");
    let by_sale = uow.order_by_receipt(&store_id, &register_id, &receipt_no);
    assert_eq!(by_sale.await.expect("sale").as_deref(), Some("o-sale"));
    let by_scan = uow.receipt_claimed_by(&number("2")).await.expect("claim");
    assert_eq!(by_scan, None, "the sale holds it now");
    drop(uow);

    // A review lot nobody waits for, and a waiting receipt whose lot holds other points.
    let stray = ReceiptRecord {
        status: ReceiptStatus::PendingReview,
        reason: Some(ReceiptReason::ReviewThreshold),
        points: 7,
        lot_id: Some(lot_id),
        ..receipt_record("rc_stray", "0003", 'e', 6)
    };
    let mut uow = store.begin().await.expect("begin");
    let orphan_id = uow.reserve_ids(Sequence::Lots, 1).await.expect("ids")[0];
    let orphan = Lot {
        lot_id: orphan_id,
        ..review_lot
    };
    let broken = ChangeSet {
        new_lots: vec![orphan],
        engagement: EngagementChanges {
            new_receipts: vec![stray],
            ..EngagementChanges::default()
        },
        ..ChangeSet::default()
    };
    uow.flush(&broken).await.expect("flush");
    uow.commit().await.expect("commit");
    let mut uow = store.begin_read().await.expect("begin");
    let snapshot = uow.ledger_snapshot().await.expect("snapshot");
    assert_eq!(
        snapshot.receipts_off_their_lot,
        vec![format!("lot {orphan_id}"), "receipt rc_stray".to_string()]
    );
}

// ---------------------------------------------------------------------------------------------
// The reports' reads.

/// Activity cells by (channel, store, period). Figures: earned, redeemed, expired, orders,
/// sales, receipts.
type MergedCells = std::collections::BTreeMap<
    (Option<Channel>, String, DateTime<Utc>),
    (i64, i64, i64, i64, rust_decimal::Decimal, i64),
>;

fn merged(cells: &[ActivityCell]) -> MergedCells {
    let mut merged = MergedCells::new();
    for cell in cells {
        let figures = merged
            .entry((cell.channel, cell.store_id.clone(), cell.period))
            .or_default();
        figures.0 += cell.points_earned;
        figures.1 += cell.points_redeemed;
        figures.2 += cell.points_expired;
        figures.3 += cell.orders;
        figures.4 += cell.sales;
        figures.5 += cell.receipts;
    }
    merged
}

/// Both backends recompute the report sums from the ledger's rows the same way (lots by the
/// quarter hours they expire and mature in, coupons by variant, source key and state, the
/// journal and receipts by channel, store and quarter hour, visits by store and date), keep
/// summary rows as written (shards summed), and read them back for the reports.
async fn report_sums_round_trip_and_recompute_the_ledger(store: Arc<dyn Store>) {
    insert_campaign(&store).await;
    let mut uow = store.begin().await.expect("begin");
    let lot_ids = uow.reserve_ids(Sequence::Lots, 4).await.expect("lot ids");
    let tx_ids = uow
        .reserve_ids(Sequence::Transactions, 4)
        .await
        .expect("ids");
    drop(uow);
    let held = Lot {
        held_points: 30,
        ..lot(lot_ids[0], "m1", 100)
    };
    let pending = Lot {
        state: LotState::Pending,
        matures_at: Some(day(5)),
        expires_at: Some(day(370) + chrono::Duration::minutes(7)),
        ..lot(lot_ids[1], "m2", 40)
    };
    let forever = Lot {
        expires_at: None,
        ..lot(lot_ids[2], "m2", 25)
    };
    let lapsed_while_held = Lot {
        expires_at: Some(day(3)),
        held_points: 20,
        ..lot(lot_ids[3], "m1", 50)
    };
    let ec_order = Order {
        channel: Channel::Ec,
        store_id: String::new(),
        total: money("500"),
        ..order("o2", "m2", "2")
    };
    let redeemed = |code: &str, variant: &str, source: &str, order_id: &str, at| Coupon {
        variant_id: variant.into(),
        source: source.into(),
        redeemed_at: Some(at),
        discount: Some(money("100.25")),
        ..coupon(code, "m1", CouponState::Redeemed, order_id)
    };
    let other = |code: &str, source: &str, state| Coupon {
        variant_id: "B".into(),
        source: source.into(),
        ..coupon(code, "m2", state, "")
    };
    let at = |kind, minutes, channel, store_id: &str, postings| NewTransaction {
        occurred_at: day(1) + chrono::Duration::minutes(minutes),
        channel,
        store_id: store_id.into(),
        ..entry(kind, "m1", postings)
    };
    let pts = |from: &str, to: &str, amount| posting(from, to, "PTS", amount);
    let mut refund = at(
        "refund",
        20,
        Some(Channel::Ec),
        "",
        vec![pts("member:m2", "program:issued", 2)],
    );
    refund.order_id = "o2".into();
    refund.metadata = vec![("amount".into(), "100.5".into())];
    let mut capture = at(
        "capture",
        20,
        Some(Channel::Ec),
        "",
        vec![pts("program:issued", "member:m2", 5)],
    );
    capture.order_id = "o2".into();
    let sale = at(
        "sale",
        0,
        Some(Channel::Store),
        "s1",
        vec![
            pts("program:issued", "member:m1", 19),
            pts("member:m1", "program:redeemed:store:s1", 30),
            posting("member:m1", "campaign:camp:redeemed", "CPN:camp", 1),
        ],
    );
    let expire = at(
        "expire",
        0,
        None,
        "",
        vec![pts("member:m1", "program:expired", 7)],
    );
    let shop = shop();
    let waiting = ReceiptRecord {
        status: ReceiptStatus::PendingReview,
        reason: Some(ReceiptReason::ReviewThreshold),
        ..receipt_record("rc_waiting", "0002", 'b', 1)
    };
    let changes = ChangeSet {
        new_stores: vec![shop],
        new_members: vec![member("m1"), member("m2")],
        transactions: tx_ids
            .iter()
            .copied()
            .zip([sale, capture, refund, expire])
            .collect(),
        new_lots: vec![held, pending, forever, lapsed_while_held],
        new_orders: vec![order("o1", "m1", "1"), ec_order],
        new_coupons: vec![
            redeemed("C1", "A", "admin", "o1", day(2)),
            redeemed(
                "C2",
                "A",
                "order:o9",
                "o2",
                day(1) + chrono::Duration::hours(1),
            ),
            other("C3", "order:o8", CouponState::Active),
            other("C4", "admin", CouponState::Expired),
        ],
        engagement: EngagementChanges {
            new_receipts: vec![receipt_record("rc_accepted", "0001", 'a', 1), waiting],
            visits: vec![
                visit("m1", 2, VisitSource::Sale),
                visit("m2", 2, VisitSource::Geo),
                visit("m1", 3, VisitSource::Receipt),
            ],
            ..EngagementChanges::default()
        },
        ..ChangeSet::default()
    };
    flushed(&store, &changes).await;

    // The raw change set above carries no summary deltas: the summaries hold only the visits
    // its flush counted as it inserted them, until a rebuild replaces them all.
    let mut uow = store.begin().await.expect("begin");
    let counted = uow.report_sums().await.expect("sums");
    assert_eq!(counted.visits.len(), 2, "{counted:?}");
    assert_eq!(counted.visits.iter().map(|v| v.visits).sum::<i64>(), 3);
    assert!(counted.activity.is_empty() && counted.lots.is_empty());
    let recomputed = uow.recompute_report_sums().await.expect("recompute");
    uow.lock_report_sums().await.expect("lock");
    uow.replace_report_sums(&recomputed).await.expect("replace");
    uow.commit().await.expect("commit");

    let mut uow = store.begin_read().await.expect("begin");
    assert_eq!(uow.report_sums().await.expect("sums"), recomputed);
    assert!(!uow.summary_rebuild_wanted().await.expect("wanted"));
    // day(n) is 09:30 UTC, a quarter hour; seven minutes later is still in it.
    let group = |expires: Option<i64>, outstanding, pending, held| LiabilityGroup {
        expires_quarter: expires.map(day),
        outstanding_points: outstanding,
        pending_points: pending,
        held_points: held,
    };
    // Ranges that keep the three expiry quarters apart, each its own range's first instant.
    assert_eq!(
        uow.lot_expiry_span().await.expect("span"),
        Some((day(3), day(370)))
    );
    let bounds = [3, 4, 365, 366, 370, 371].map(day);
    let tallies = uow.report_sums().await.expect("sums").lots;
    let liability = async |uow: &mut Box<dyn UnitOfWork>, as_of| {
        let lots = uow.liability_lots(as_of, &bounds).await.expect("liability");
        // The backend's SQL counts as `counted_groups` does.
        let mut groups = lots.groups.clone();
        groups.sort_by_key(|g| g.expires_quarter);
        assert_eq!(
            groups,
            counted_groups(&tallies, quarter_of(as_of), &bounds),
            "at {as_of}"
        );
        liability_groups(lots.groups, &lots.boundary, as_of)
    };
    assert_eq!(
        liability(&mut uow, day(4)).await,
        vec![
            group(None, 25, 0, 0),
            group(Some(3), 20, 0, 20),
            group(Some(365), 100, 0, 30),
            group(Some(370), 40, 40, 0),
        ]
    );
    let matured = liability(&mut uow, day(6)).await;
    assert_eq!(matured[3], group(Some(370), 40, 0, 0));
    // Within the quarter hour the pending lot matures in, the lot itself is read.
    let just_matured = liability(&mut uow, day(5) + chrono::Duration::minutes(7)).await;
    assert_eq!(just_matured[3], group(Some(370), 40, 0, 0));
    let lots = uow
        .liability_lots(day(5) + chrono::Duration::minutes(7), &bounds)
        .await
        .expect("lots");
    assert_eq!(lots.boundary.len(), 1, "{:?}", lots.boundary);
    // One range over all: one group, and the lots that never expire.
    let all = uow
        .liability_lots(day(4), &[day(0), day(400)])
        .await
        .expect("lots");
    let mut outstanding: Vec<_> = all
        .groups
        .iter()
        .map(|g| (g.expires_quarter, g.outstanding_points))
        .collect();
    outstanding.sort();
    assert_eq!(outstanding, vec![(None, 25), (Some(day(0)), 160)]);

    let sums = uow.campaign_sums("camp").await.expect("coupons");
    let tally = |variant: &str, source: &str, state, discount: &str| CouponTally {
        campaign_id: "camp".into(),
        variant_id: variant.into(),
        source: source.into(),
        state,
        coupons: 1,
        discount: money(discount).amount(),
    };
    let mut coupons = sums.coupons.clone();
    coupons.sort_by(|a, b| (&a.variant_id, &a.source).cmp(&(&b.variant_id, &b.source)));
    assert_eq!(
        coupons,
        vec![
            tally("A", "admin", CouponState::Redeemed, "100.25"),
            tally("A", "order", CouponState::Redeemed, "100.25"),
            tally("B", "admin", CouponState::Expired, "0"),
            tally("B", "order", CouponState::Active, "0"),
        ]
    );
    let mut channels: Vec<_> = sums
        .redemptions
        .iter()
        .map(|t| (t.channel, t.coupons))
        .collect();
    channels.sort();
    assert_eq!(channels, vec![(Channel::Ec, 1), (Channel::Store, 1)]);
    // Two redemptions: the middle times are both of them.
    assert_eq!(sums.middle_times, Some((25 * 3600, 2 * 86_400)));

    let window = ActivityWindow {
        from: day(0),
        to: day(3),
        first_day: date(1),
        last_day: date(10),
        interior: None,
        store_id: None,
    };
    let mut activity = uow.activity_sums(&window).await.expect("activity");
    let decimal = |amount: &str| amount.parse::<rust_decimal::Decimal>().expect("decimal");
    let quarter_later = day(1) + chrono::Duration::minutes(15);
    let expected: MergedCells = [
        ((None, String::new(), day(1)), (0, 0, 7, 0, decimal("0"), 0)),
        ((None, "s1".into(), day(1)), (0, 0, 0, 0, decimal("0"), 1)),
        (
            (Some(Channel::Ec), String::new(), quarter_later),
            (3, 0, 0, 1, decimal("399.5"), 0),
        ),
        (
            (Some(Channel::Store), "s1".into(), day(1)),
            (19, 30, 0, 1, decimal("1980.5"), 0),
        ),
    ]
    .into_iter()
    .collect();
    assert_eq!(merged(&activity.activity), expected);
    activity.visits.sort_by_key(|count| count.visit_date);
    let count = |day_of_2026, visits| VisitCount {
        store_id: "s1".into(),
        visit_date: date(day_of_2026),
        visits,
    };
    assert_eq!(activity.visits, vec![count(2, 2), count(3, 1)]);
    // The interior's rows summed per channel and store on its first period (or date); one
    // store's rows only.
    let summed = ActivityWindow {
        interior: Some(ActivityInterior {
            from: day(1) - chrono::Duration::hours(1),
            to: day(1) + chrono::Duration::minutes(10),
            first_day: date(1),
            end_day: date(3),
        }),
        ..window.clone()
    };
    let activity = uow.activity_sums(&summed).await.expect("activity");
    let inside = day(1) - chrono::Duration::hours(1);
    let keys: Vec<_> = merged(&activity.activity).into_keys().collect();
    assert_eq!(
        keys,
        vec![
            (None, String::new(), inside),
            (None, "s1".into(), inside),
            (Some(Channel::Ec), String::new(), quarter_later),
            (Some(Channel::Store), "s1".into(), inside),
        ]
    );
    let mut visits: Vec<_> = activity
        .visits
        .iter()
        .map(|v| (v.visit_date, v.visits))
        .collect();
    visits.sort();
    assert_eq!(visits, vec![(date(1), 2), (date(3), 1)]);
    let one_store = ActivityWindow {
        store_id: Some("s1".into()),
        ..summed
    };
    let activity = uow.activity_sums(&one_store).await.expect("activity");
    assert!(activity.activity.iter().all(|cell| cell.store_id == "s1"));
    assert_eq!(activity.activity.len(), 2);
    assert_eq!(activity.visits.len(), 2);
    // Outside the window, nothing.
    let later = ActivityWindow {
        from: day(2),
        to: day(3),
        first_day: date(4),
        last_day: date(10),
        interior: None,
        store_id: None,
    };
    let nothing = uow.activity_sums(&later).await.expect("activity");
    assert!(nothing.is_empty());
    drop(uow);

    // A flush adds its deltas at its shard; the reads sum the shards, and a row that comes
    // back to zero reads as no row.
    let mut delta = Tallies::new();
    delta.add(
        ReportSums {
            activity: vec![ActivityCell {
                orders: 2,
                sales: decimal("10.5"),
                ..ActivityCell::empty(Some(Channel::Store), "s1".into(), day(1))
            }],
            coupons: vec![CouponTally {
                coupons: -1,
                discount: -decimal("100.25"),
                ..tally("A", "admin", CouponState::Redeemed, "0")
            }],
            ..ReportSums::default()
        },
        |cell| cell.period,
    );
    let changes = ChangeSet {
        report: delta.finish(),
        shard: 3,
        ..ChangeSet::default()
    };
    flushed(&store, &changes).await;
    let mut uow = store.begin_read().await.expect("begin");
    let store_day = uow.activity_sums(&window).await.expect("activity");
    let figures = merged(&store_day.activity)[&(Some(Channel::Store), "s1".into(), day(1))];
    assert_eq!((figures.3, figures.4), (3, decimal("1991")));
    let sums = uow.campaign_sums("camp").await.expect("coupons");
    assert_eq!(sums.coupons.len(), 3, "{:?}", sums.coupons);
    let summary = uow.report_sums().await.expect("sums");
    let differences = differences(summary, recomputed, |_| None);
    assert_eq!(differences.len(), 2, "{differences:?}");
    drop(uow);

    // Points a lot earned at one writer and spent at another: two rows of a quarter that net
    // to zero. The month holds no group, as `counted_groups` (over the shards' sums) has none.
    // Times to redemption of a campaign over two shards, one bucket netting to zero: net
    // 10 s ×2, 30 s, 40 s; the middle two of four are 10 and 30.
    let time = |seconds, coupons| RedemptionTime {
        campaign_id: "med".into(),
        seconds,
        coupons,
    };
    let times = [
        vec![time(10, 2), time(20, 1), time(30, 1)],
        vec![time(20, -1), time(40, 1)],
    ];
    for ((shard, points), redemption_times) in [(5, 5), (6, -5)].into_iter().zip(times) {
        let changes = ChangeSet {
            report: ReportSums {
                lots: vec![LotTally {
                    expires_quarter: Some(day(200)),
                    matures_quarter: None,
                    state: LotState::Available,
                    remaining_points: points,
                    held_points: 0,
                }],
                redemption_times,
                ..ReportSums::default()
            },
            shard,
            ..ChangeSet::default()
        };
        flushed(&store, &changes).await;
    }
    let mut uow = store.begin_read().await.expect("begin");
    let lots = uow.liability_lots(day(4), &bounds).await.expect("lots");
    let mut groups = lots.groups.clone();
    groups.sort_by_key(|g| g.expires_quarter);
    let tallies = uow.report_sums().await.expect("sums").lots;
    assert_eq!(
        groups,
        counted_groups(&tallies, quarter_of(day(4)), &bounds)
    );
    assert!(groups.iter().all(|g| g.expires_quarter != Some(day(4))));
    let median = uow.campaign_sums("med").await.expect("sums");
    assert_eq!(median.middle_times, Some((10, 30)));
    let seconds = |s| chrono::TimeDelta::seconds(s);
    let all = [(10, 2), (20, 0), (30, 1), (40, 1)].map(|(s, n)| (seconds(s), n));
    assert_eq!(
        crate::domain::report::median_duration(all.to_vec()),
        Some(seconds(20))
    );
    assert!(
        uow.campaign_sums("none")
            .await
            .expect("sums")
            .middle_times
            .is_none()
    );
    let before = uow.report_sums().await.expect("sums");
    drop(uow);

    // The compaction folds every shard's rows of its window into one row per key and drops
    // the keys that net to zero: every sum stays as it was.
    let compact = async || {
        let mut uow = store.begin().await.expect("begin");
        uow.lock_report_sums().await.expect("lock");
        let written = uow
            .compact_report_sums(day(-10), day(400))
            .await
            .expect("compact");
        uow.commit().await.expect("commit");
        written
    };
    let written = compact().await;
    let mut uow = store.begin_read().await.expect("begin");
    assert_eq!(uow.report_sums().await.expect("sums"), before);
    assert!(written > 0);
    let median = uow.campaign_sums("med").await.expect("sums");
    assert_eq!(median.middle_times, Some((10, 30)));
    let lots = uow.liability_lots(day(4), &bounds).await.expect("lots");
    let mut compacted = lots.groups.clone();
    compacted.sort_by_key(|g| g.expires_quarter);
    assert_eq!(compacted, groups);
    drop(uow);
    // Folded once, a window has one row per key: folding it again writes those rows again,
    // and no campaign is touched.
    let again = compact().await;
    assert!(again < written, "{again} rows, then {written}");
    let mut uow = store.begin_read().await.expect("begin");
    assert_eq!(uow.report_sums().await.expect("sums"), before);
}

/// Tiers (`domain::tier`): a flush adds its spend deltas to the monthly rows, a merge moves the
/// source's rows onto the target's, and a member's tier columns round-trip.
async fn member_spend_adds_deltas_moves_on_merge_and_keeps_the_tier(store: Arc<dyn Store>) {
    let april = NaiveDate::from_ymd_opt(2026, 4, 1).expect("date");
    let may = NaiveDate::from_ymd_opt(2026, 5, 1).expect("date");
    let spend =
        |member_id: &str, month: NaiveDate, spend_e4: i64| crate::domain::ports::MonthSpend {
            member_id: member_id.into(),
            month,
            spend_e4,
        };
    let silver = MemberRow {
        tier: crate::domain::tier::MemberTier {
            tier_id: "silver".into(),
            since: Some(day(1)),
            reviewed_at: Some(day(2)),
        },
        ..member("m1")
    };
    let setup = ChangeSet {
        new_members: vec![silver.clone(), member("m2")],
        member_spend: vec![
            spend("m1", april, 100),
            spend("m2", april, 7),
            spend("m2", may, 5),
        ],
        ..ChangeSet::default()
    };
    flushed(&store, &setup).await;
    let again = ChangeSet {
        member_spend: vec![spend("m1", april, -40), spend("m1", may, 30)],
        ..ChangeSet::default()
    };
    flushed(&store, &again).await;
    let mut uow = store.begin().await.expect("begin");
    assert_eq!(
        uow.member_spend("m1", april).await.expect("spend"),
        [spend("m1", april, 60), spend("m1", may, 30)]
    );
    assert_eq!(
        uow.member_spend("m1", may).await.expect("spend"),
        [spend("m1", may, 30)],
        "from the month given on"
    );
    let read = uow
        .get_member("m1", false)
        .await
        .expect("read")
        .expect("m1");
    assert_eq!(read.tier, silver.tier);
    let due = uow
        .members_due_tier_review(day(3), "", 10)
        .await
        .expect("due");
    assert_eq!(
        due,
        ["m1"],
        "reviewed before day 3, and the only one with a tier"
    );
    assert!(
        uow.members_due_tier_review(day(2), "", 10)
            .await
            .expect("due")
            .is_empty()
    );
    drop(uow);
    let merge = ChangeSet {
        merges: vec![("m2".into(), "m1".into())],
        ..ChangeSet::default()
    };
    flushed(&store, &merge).await;
    let mut uow = store.begin().await.expect("begin");
    assert_eq!(
        uow.member_spend("m1", april).await.expect("spend"),
        [spend("m1", april, 67), spend("m1", may, 35)]
    );
    assert!(
        uow.member_spend("m2", april)
            .await
            .expect("spend")
            .is_empty()
    );
}
