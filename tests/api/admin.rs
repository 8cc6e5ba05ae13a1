//! Admin writes are idempotent like every other mutation: a retried CreateStore, CreateCampaign
//! or UpdateProgram with its request_id gets the original answer.

use omo::proto::{self, campaign::Discount};
use tonic::Code;

use crate::helpers::{TestApp, assert_refused};

crate::both_backends! {
    create_store_is_replayed => create_store_is_replayed,
    create_campaign_is_replayed => create_campaign_is_replayed,
    update_program_is_replayed => update_program_is_replayed,
    admin_request_ids_are_validated => admin_request_ids_are_validated,
}

fn store(store_id: &str, name: &str) -> proto::Store {
    proto::Store {
        store_id: store_id.into(),
        name: name.into(),
        location: Some(proto::LatLng {
            latitude: 35.0,
            longitude: 135.76,
        }),
        ..Default::default()
    }
}

async fn create_store(
    app: &TestApp,
    request_id: &str,
    store: proto::Store,
) -> Result<proto::Store, tonic::Status> {
    app.admin
        .stores()
        .create_store(proto::CreateStoreRequest {
            request_id: request_id.into(),
            store: Some(store),
        })
        .await
        .map(|r| r.into_inner().store.expect("store"))
}

async fn create_store_is_replayed(app: &TestApp) {
    let first = create_store(app, "store-kyoto", store("kyoto", "Kyoto"))
        .await
        .expect("created");
    let again = create_store(app, "store-kyoto", store("kyoto", "Kyoto"))
        .await
        .expect("a retry gets the original answer, not ALREADY_EXISTS");
    assert_eq!(first, again);
    let status = create_store(app, "store-kyoto", store("kyoto", "Kyoto Station"))
        .await
        .expect_err("same id, another store");
    assert_refused(&status, Code::AlreadyExists, "IDEMPOTENCY_KEY_REUSED");
    // A new request for the same store is still a duplicate, with or without an id.
    for request_id in ["store-kyoto-2", ""] {
        let status = create_store(app, request_id, store("kyoto", "Kyoto"))
            .await
            .expect_err("exists");
        assert_refused(&status, Code::AlreadyExists, "STORE_EXISTS");
    }
}

fn campaign(campaign_id: &str, amount_off: &str) -> proto::Campaign {
    proto::Campaign {
        campaign_id: campaign_id.into(),
        name: format!("campaign {campaign_id}"),
        discount: Some(Discount::AmountOff(amount_off.into())),
        ..Default::default()
    }
}

async fn create_campaign(
    app: &TestApp,
    request_id: &str,
    campaign: proto::Campaign,
) -> Result<proto::Campaign, tonic::Status> {
    app.admin
        .coupons()
        .create_campaign(proto::CreateCampaignRequest {
            request_id: request_id.into(),
            campaign: Some(campaign),
        })
        .await
        .map(|r| r.into_inner().campaign.expect("campaign"))
}

async fn create_campaign_is_replayed(app: &TestApp) {
    let first = create_campaign(app, "camp-1", campaign("spring", "300"))
        .await
        .expect("created");
    let again = create_campaign(app, "camp-1", campaign("spring", "300"))
        .await
        .expect("replayed");
    assert_eq!(first, again);
    let status = create_campaign(app, "camp-1", campaign("spring", "500"))
        .await
        .expect_err("same id, another campaign");
    assert_refused(&status, Code::AlreadyExists, "IDEMPOTENCY_KEY_REUSED");
    let status = create_campaign(app, "camp-2", campaign("spring", "300"))
        .await
        .expect_err("exists");
    assert_refused(&status, Code::AlreadyExists, "CAMPAIGN_EXISTS");
}

async fn update_earn_rate(
    app: &TestApp,
    request_id: &str,
    earn_rate: &str,
) -> Result<proto::Program, tonic::Status> {
    app.admin
        .program()
        .update_program(proto::UpdateProgramRequest {
            request_id: request_id.into(),
            program: Some(proto::Program {
                earn_rate: earn_rate.into(),
                ..Default::default()
            }),
            update_mask: Some(prost_types::FieldMask {
                paths: vec!["earn_rate".into()],
            }),
        })
        .await
        .map(|r| r.into_inner().program.expect("program"))
}

async fn update_program_is_replayed(app: &TestApp) {
    let first = update_earn_rate(app, "prog-1", "0.05")
        .await
        .expect("updated");
    assert_eq!(first.earn_rate, "0.05");
    // Someone changes the rate again; the retry of the first update answers as it did then and
    // does not put its rate back.
    update_earn_rate(app, "", "0.02").await.expect("updated");
    let replayed = update_earn_rate(app, "prog-1", "0.05")
        .await
        .expect("replayed");
    assert_eq!(replayed, first);
    let current = app
        .admin
        .program()
        .get_program(proto::GetProgramRequest {})
        .await
        .expect("program")
        .into_inner()
        .program
        .expect("program");
    assert_eq!(current.earn_rate, "0.02");
    let status = update_earn_rate(app, "prog-1", "0.07")
        .await
        .expect_err("same id, another update");
    assert_refused(&status, Code::AlreadyExists, "IDEMPOTENCY_KEY_REUSED");
}

async fn admin_request_ids_are_validated(app: &TestApp) {
    let long = "x".repeat(129);
    let status = app
        .admin
        .stores()
        .create_store(proto::CreateStoreRequest {
            request_id: long.clone(),
            store: None,
        })
        .await
        .expect_err("invalid");
    assert_eq!(
        crate::helpers::violated_fields(&status),
        ["request_id", "store"]
    );
    let status = create_campaign(app, &long, proto::Campaign::default())
        .await
        .expect_err("invalid");
    let fields = crate::helpers::violated_fields(&status);
    assert_eq!(fields[0], "request_id", "{fields:?}");
    assert!(fields.len() > 1, "the campaign's fields too: {fields:?}");
    let status = update_earn_rate(app, &long, "-1")
        .await
        .expect_err("invalid");
    assert_eq!(
        crate::helpers::violated_fields(&status),
        ["request_id", "program.earn_rate"]
    );
}
