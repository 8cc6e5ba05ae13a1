//! Members: identifiers, lookup, and merging through the ledger.

use chrono::Duration;
use omo::proto;
use tonic::Code;

use crate::helpers::{TestApp, assert_refused, card_ref, get_member_as, identifier, member_ref};

crate::both_backends! {
    identifiers_are_unique_and_resolve => identifiers_are_unique_and_resolve,
    merge_moves_points_with_their_expiry => merge_moves_points_with_their_expiry,
}

/// LinkIdentifier with the checkout key.
async fn link(
    app: &TestApp,
    request_id: &str,
    member_id: &str,
    identifier: proto::Identifier,
) -> Result<proto::Member, tonic::Status> {
    app.checkout
        .members()
        .link_identifier(proto::LinkIdentifierRequest {
            request_id: request_id.into(),
            member: Some(member_ref(member_id)),
            identifier: Some(identifier),
        })
        .await
        .map(|r| r.into_inner().member.expect("member"))
}

async fn identifiers_are_unique_and_resolve(app: &TestApp) {
    let first = app.create_member("m-card-1").await;
    let second = app.create_member("m-card-2").await;
    let linked = link(app, "link", &first, identifier("ec_customer", "c-1"))
        .await
        .expect("link");
    assert_eq!(linked.identifiers.len(), 2);
    let taken = link(app, "link-2", &second, identifier("card", "m-card-1"))
        .await
        .unwrap_err();
    assert_refused(&taken, Code::AlreadyExists, "IDENTIFIER_TAKEN");
    let found = get_member_as(&app.register, card_ref("m-card-1"))
        .await
        .expect("by card");
    assert_eq!(found.member_id, first);
    let missing = get_member_as(&app.admin, member_ref("m_nobody"))
        .await
        .unwrap_err();
    assert_refused(&missing, Code::NotFound, "MEMBER_NOT_FOUND");
}

async fn merge_moves_points_with_their_expiry(app: &TestApp) {
    // Arrange: the same person signed up twice: a store card and an EC account.
    let source = app.member_with_points("store-card", 300).await;
    app.clock.advance(Duration::days(3));
    let target = app.member_with_points("web-card", 200).await;
    let source_expiry = app.balance(&source).await.expiring[0].expires_at;

    // Act
    let merged = app
        .admin
        .members()
        .merge_members(proto::MergeMembersRequest {
            request_id: "merge".into(),
            source_member_id: source.clone(),
            target_member_id: target.clone(),
        })
        .await
        .expect("merge")
        .into_inner()
        .member
        .unwrap();

    // Assert: points, lots (with expiry) and identifiers now belong to the target.
    assert_eq!(merged.member_id, target);
    assert_eq!(merged.identifiers.len(), 2);
    let balance = app.balance(&target).await;
    assert_eq!(balance.available_points, 500);
    assert_eq!(balance.expiring.len(), 2);
    assert_eq!(balance.expiring[0].expires_at, source_expiry);
    assert_eq!(app.available(&source).await, 0);
    let tombstone = get_member_as(&app.admin, member_ref(&source))
        .await
        .expect("get");
    assert_eq!(tombstone.state, proto::MemberState::Merged as i32);
    assert_eq!(tombstone.merged_into, target);
    // The old card now finds the target; naming the source by id to change it is refused.
    let by_card = get_member_as(&app.register, card_ref("store-card"))
        .await
        .expect("card");
    assert_eq!(by_card.member_id, target);
    let refused = app.adjust_points("adj", &source, 5, "r").await.unwrap_err();
    assert_refused(&refused, Code::FailedPrecondition, "MEMBER_MERGED");
    app.verify_ok().await;
}
