//! ListStores, ListCampaigns and ListCoupons page by key like ListTransactions: page_size,
//! an opaque page_token, next_page_token empty on the last page.

use chrono::Duration;
use omo::proto::{self, campaign::Discount};
use tonic::Code;

use crate::helpers::{TestApp, member_ref, violated_fields};

crate::both_backends! {
    stores_campaigns_and_coupons_page_by_key => stores_campaigns_and_coupons_page_by_key,
    bad_page_requests_name_their_fields => bad_page_requests_name_their_fields,
}

async fn store_page(app: &TestApp, size: i32, token: &str) -> proto::ListStoresResponse {
    app.admin
        .stores()
        .list_stores(proto::ListStoresRequest {
            page_size: size,
            page_token: token.into(),
        })
        .await
        .expect("stores")
        .into_inner()
}

async fn stores_campaigns_and_coupons_page_by_key(app: &TestApp) {
    // Stores: shibuya and umeda exist; five more, created out of order.
    for id in ["s-e", "s-b", "s-d", "s-a", "s-c"] {
        app.create_store(id).await;
    }
    let (mut seen, mut token, mut pages) = (Vec::new(), String::new(), 0);
    loop {
        let page = store_page(app, 3, &token).await;
        assert!(page.stores.len() <= 3);
        seen.extend(page.stores.into_iter().map(|s| s.store_id));
        pages += 1;
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    assert_eq!(
        seen,
        ["s-a", "s-b", "s-c", "s-d", "s-e", "shibuya", "umeda"]
    );
    assert_eq!(pages, 3);
    // The default page holds them all.
    assert_eq!(store_page(app, 0, "").await.stores.len(), 7);

    // Campaigns, oldest first; two share a creation instant (then by id).
    let mut created = Vec::new();
    for (i, id) in ["c-3", "c-1", "c-2", "c-0", "c-4"].into_iter().enumerate() {
        if i % 2 == 0 {
            app.clock.advance(Duration::seconds(1));
        }
        app.admin
            .coupons()
            .create_campaign(proto::CreateCampaignRequest {
                request_id: String::new(),
                campaign: Some(proto::Campaign {
                    campaign_id: id.into(),
                    name: id.into(),
                    discount: Some(Discount::AmountOff("100".into())),
                    ..Default::default()
                }),
            })
            .await
            .expect("campaign");
        created.push(id);
    }
    let (mut seen, mut token) = (Vec::new(), String::new());
    loop {
        let page = app
            .admin
            .coupons()
            .list_campaigns(proto::ListCampaignsRequest {
                page_size: 2,
                page_token: token,
            })
            .await
            .expect("campaigns")
            .into_inner();
        assert!(page.campaigns.len() <= 2);
        seen.extend(page.campaigns.into_iter().map(|c| c.campaign_id));
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    assert_eq!(seen, ["c-1", "c-3", "c-0", "c-2", "c-4"]);

    // A member's wallet of five coupons, two at a time, read by the member's app.
    let member_id = app.create_member("p1").await;
    let mut issued = Vec::new();
    for campaign_id in &created {
        let coupon = app
            .issue_coupon(&format!("issue-{campaign_id}"), campaign_id, &member_id)
            .await
            .expect("issued");
        issued.push(coupon.code);
        app.clock.advance(Duration::seconds(1));
    }
    let (mut seen, mut token, mut pages) = (Vec::new(), String::new(), 0);
    loop {
        let page = app
            .app_client
            .coupons()
            .list_coupons(proto::ListCouponsRequest {
                member: Some(member_ref(&member_id)),
                include_inactive: false,
                page_size: 2,
                page_token: token,
            })
            .await
            .expect("coupons")
            .into_inner();
        seen.extend(page.coupons.into_iter().map(|c| c.code));
        pages += 1;
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    assert_eq!(seen, issued, "oldest first, each once");
    assert_eq!(pages, 3);
}

async fn bad_page_requests_name_their_fields(app: &TestApp) {
    let status = app
        .admin
        .stores()
        .list_stores(proto::ListStoresRequest {
            page_size: 501,
            page_token: "not-a-token".into(),
        })
        .await
        .expect_err("invalid");
    assert_eq!(violated_fields(&status), ["page_size", "page_token"]);
    let status = app
        .admin
        .coupons()
        .list_campaigns(proto::ListCampaignsRequest {
            page_size: -1,
            page_token: String::new(),
        })
        .await
        .expect_err("invalid");
    assert_eq!(violated_fields(&status), ["page_size"]);
    let status = app
        .checkout
        .coupons()
        .list_coupons(proto::ListCouponsRequest {
            member: None,
            include_inactive: true,
            page_size: 10,
            page_token: hex_of("12:"),
        })
        .await
        .expect_err("invalid");
    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(violated_fields(&status), ["member", "page_token"]);
}

/// A token-shaped string that is no token of ours.
fn hex_of(text: &str) -> String {
    text.bytes().map(|b| format!("{b:02x}")).collect()
}
