//! UpdateMember: a member's display name and attributes, by update_mask; GetMember returns them.

use tonic::Code;

use crate::helpers::{
    TestApp, assert_refused, card_ref, get_member_as, member_ref, violated_fields,
};
use omo::{client::Client, proto};

crate::both_backends! {
    update_member_changes_the_masked_fields => update_member_changes_the_masked_fields,
    update_member_validates_every_field => update_member_validates_every_field,
    update_member_is_for_admin_and_app => update_member_is_for_admin_and_app,
}

fn update(
    request_id: &str,
    member_id: &str,
    display_name: &str,
    attributes: &[(&str, &str)],
    paths: &[&str],
) -> proto::UpdateMemberRequest {
    proto::UpdateMemberRequest {
        request_id: request_id.into(),
        member: Some(proto::Member {
            member_id: member_id.into(),
            display_name: display_name.into(),
            attributes: attributes
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            ..Default::default()
        }),
        update_mask: Some(prost_types::FieldMask {
            paths: paths.iter().map(|p| p.to_string()).collect(),
        }),
    }
}

async fn send(
    client: &Client,
    request: proto::UpdateMemberRequest,
) -> Result<proto::Member, tonic::Status> {
    client
        .members()
        .update_member(request)
        .await
        .map(|r| r.into_inner().member.expect("member"))
}

async fn update_member_changes_the_masked_fields(app: &TestApp) {
    let member_id = app.create_member("A1").await;

    let attributes = [("segment", "gold"), ("pref.store", "shibuya")];
    let request = update("u1", &member_id, "ignored", &attributes, &["attributes"]);
    let updated = send(&app.app_client, request.clone())
        .await
        .expect("update");

    assert_eq!(
        updated.display_name, "member A1",
        "display_name was not in the mask"
    );
    assert_eq!(updated.attributes.len(), 2);
    assert_eq!(updated.attributes["pref.store"], "shibuya");
    let read = get_member_as(&app.admin, card_ref("A1")).await.unwrap();
    assert_eq!(read.attributes, updated.attributes);
    let replay = send(&app.app_client, request).await.expect("replay");
    assert_eq!(replay, updated, "same request_id, same answer");

    let renamed = send(
        &app.app_client,
        update(
            "u2",
            &member_id,
            "Hana",
            &[("segment", "silver")],
            &["display_name", "attributes"],
        ),
    )
    .await
    .expect("update both");
    assert_eq!(renamed.display_name, "Hana");
    assert_eq!(
        renamed.attributes.keys().collect::<Vec<_>>(),
        ["segment"],
        "the map is replaced whole"
    );
    let cleared = send(
        &app.admin,
        update("u3", &member_id, "", &[], &["attributes"]),
    )
    .await
    .expect("clear");
    assert!(cleared.attributes.is_empty());
    assert_eq!(cleared.display_name, "Hana");
    let read = get_member_as(&app.admin, member_ref(&member_id))
        .await
        .unwrap();
    assert!(read.attributes.is_empty(), "read back from the database");
    app.verify_ok().await;
}

async fn update_member_validates_every_field(app: &TestApp) {
    let member_id = app.create_member("V1").await;
    let long_value = "v".repeat(257);
    let bad = update(
        "",
        &member_id,
        &"n".repeat(201),
        &[("Upper", "x"), ("ok", &long_value)],
        &["display_name", "attributes", "nickname"],
    );

    let status = send(&app.admin, bad).await.expect_err("invalid");

    let mut fields = violated_fields(&status);
    fields.sort();
    assert_eq!(
        fields,
        [
            "member.attributes[Upper]",
            "member.attributes[ok]",
            "member.display_name",
            "request_id",
            "update_mask",
        ]
    );
    let too_many: Vec<(String, String)> = (0..33).map(|i| (format!("k{i}"), "v".into())).collect();
    let pairs: Vec<(&str, &str)> = too_many
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let status = send(
        &app.admin,
        update("t", &member_id, "", &pairs, &["attributes"]),
    )
    .await
    .expect_err("too many");
    assert_eq!(violated_fields(&status), ["member.attributes"]);
    let status = send(&app.admin, update("m", &member_id, "x", &[], &[]))
        .await
        .expect_err("no mask");
    assert_eq!(violated_fields(&status), ["update_mask"]);
    let read = get_member_as(&app.admin, card_ref("V1")).await.unwrap();
    assert_eq!(read.display_name, "member V1", "nothing written");
    assert!(read.attributes.is_empty());
    let status = send(
        &app.admin,
        update("nf", "m_unknown", "x", &[], &["display_name"]),
    )
    .await
    .expect_err("unknown member");
    assert_refused(&status, Code::NotFound, "MEMBER_NOT_FOUND");
}

async fn update_member_is_for_admin_and_app(app: &TestApp) {
    let member_id = app.create_member("R1").await;
    for client in [&app.checkout, &app.register] {
        let status = send(client, update("r", &member_id, "x", &[], &["display_name"]))
            .await
            .expect_err("not allowed");
        assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
    }
    send(
        &app.admin,
        update("a", &member_id, "by admin", &[], &["display_name"]),
    )
    .await
    .expect("admin may");
}
