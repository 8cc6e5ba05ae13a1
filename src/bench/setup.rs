//! Getting a server ready to measure: a fresh seeded database and an `omo serve` child
//! (local), or the store, campaign and members made through the API (`--target`).

use std::sync::Arc;

use tonic::Code;

use super::{
    BenchArgs, BenchError,
    scenarios::{
        BENCH_EVENT_TYPE, GEO_CAMPAIGN_ID, GEO_STORES, HOT_CAMPAIGN_ID, HOT_CODE, Keys, Members,
        ReportTargets, STATS_CAMPAIGN_ID, STORE_ID, Scenario,
    },
    seed::{self, Backend, SEED_POINTS, SeedPlan},
    server::ServerProcess,
};
use crate::{
    client::Client,
    domain::{SystemClock, auth::Role},
    engine::Engine,
    proto::{self, member_ref::Ref},
};

/// A server to drive and what the scenarios need to call it.
#[derive(Debug)]
pub struct Setup {
    pub endpoint: String,
    pub keys: Keys,
    pub members: Arc<Members>,
    pub reports: ReportTargets,
    /// The child process (local runs); dropping it stops the server.
    pub server: Option<ServerProcess>,
    /// `--webhook`: the local receiver the server delivers `points.earned` to (stopped when
    /// dropped).
    pub webhook_receiver: Option<WebhookReceiver>,
    pub backend: String,
    pub timings: SetupTimings,
}

/// What preparing a local database took (None with --target).
#[derive(Debug, Clone, Default)]
pub struct SetupTimings {
    /// The bulk SQL.
    pub seed_s: Option<f64>,
    /// `Engine::rebuild_reports` over the seeded ledger.
    pub rebuild_s: Option<f64>,
    /// Rows of each summary table after the rebuild.
    pub summary_rows: Vec<(&'static str, i64)>,
}

/// Wipes and migrates the database, seeds it by SQL, rebuilds the report summaries from it,
/// makes keys, starts the server child, and creates the store and the hot campaign.
pub async fn local(args: &BenchArgs) -> Result<Setup, BenchError> {
    let url = args.database_url.expose();
    let backend = Backend::of(url);
    seed::reset_database(url).await?;
    let store = crate::store::open(url).await?;
    let locations = args.scenarios.contains(&Scenario::Location);
    let plan = SeedPlan {
        members: args.members,
        prefill_postings: args.prefill_postings,
        geo_stores: if locations { GEO_STORES } else { 0 },
        stats_coupons: args.scenarios.contains(&Scenario::ReportCampaign),
    };
    eprintln!(
        "omo bench: seeding {} members and {} historical postings by bulk SQL ({}) ...",
        plan.members,
        plan.prefill_postings / 2 * 2,
        backend.name()
    );
    let seed_time = seed::seed(url, plan).await?;
    eprintln!("omo bench: seeded in {:.2} s", seed_time.as_secs_f64());
    let engine = Engine::new(store, Arc::new(SystemClock), 1);
    // Bulk SQL writes no summaries. Rebuilt here rather than by the server at its start (the
    // migration asks it to), so that the server is serving within its start timeout and the
    // rebuild's time is reported by itself.
    eprintln!("omo bench: rebuilding the report summaries from the ledger ...");
    let started = std::time::Instant::now();
    let rebuilt_rows = engine.rebuild_reports().await.map_err(Box::new)?;
    let rebuild_s = started.elapsed().as_secs_f64();
    eprintln!("omo bench: report summaries rebuilt in {rebuild_s:.2} s ({rebuilt_rows} rows)");
    let summary_rows = seed::summaries_ready(url).await?;
    let listed: Vec<String> = summary_rows
        .iter()
        .map(|(table, rows)| format!("{table} {rows}"))
        .collect();
    eprintln!("omo bench: summary rows: {}", listed.join(", "));
    let keys = create_keys(&engine).await?;
    engine.shutdown().await;
    let server = ServerProcess::spawn(url).await?;
    let endpoint = server.endpoint().to_string();
    create_store_and_campaign(&endpoint, &keys.admin, args.hot_issue_limit).await?;
    create_purchase_rules(&endpoint, &keys.admin, args.rules).await?;
    let webhook_receiver = subscribe_webhook(&endpoint, &keys.admin, args.webhook).await?;
    Ok(Setup {
        endpoint,
        keys,
        members: Arc::new(Members::Seeded {
            count: args.members,
        }),
        reports: ReportTargets {
            campaign_id: if plan.stats_coupons {
                STATS_CAMPAIGN_ID
            } else {
                HOT_CAMPAIGN_ID
            },
        },
        server: Some(server),
        webhook_receiver,
        backend: backend.name().to_string(),
        timings: SetupTimings {
            seed_s: Some(seed_time.as_secs_f64()),
            rebuild_s: Some(rebuild_s),
            summary_rows,
        },
    })
}

async fn create_keys(engine: &Engine) -> Result<Keys, BenchError> {
    let key = |role, store: Option<&str>, name: &str| {
        engine.create_api_key(role, store.map(str::to_string), name.to_string())
    };
    Ok(Keys {
        admin: key(Role::Admin, None, "bench admin")
            .await
            .map_err(Box::new)?,
        register: key(Role::Register, Some(STORE_ID), "bench register")
            .await
            .map_err(Box::new)?,
        checkout: key(Role::Checkout, None, "bench checkout")
            .await
            .map_err(Box::new)?,
        app: key(Role::App, None, "bench app").await.map_err(Box::new)?,
    })
}

/// Uses a running server: makes (or finds) the store, campaign and members through the API
/// with the given admin key, which every scenario then calls with.
pub async fn remote(args: &BenchArgs, endpoint: &str) -> Result<Setup, BenchError> {
    let api_key = args.api_key.clone().unwrap_or_default();
    create_store_and_campaign(endpoint, &api_key, args.hot_issue_limit).await?;
    create_purchase_rules(endpoint, &api_key, args.rules).await?;
    let webhook_receiver = subscribe_webhook(endpoint, &api_key, args.webhook).await?;
    eprintln!(
        "omo bench: making or finding {} members through the API ...",
        args.members
    );
    let started = std::time::Instant::now();
    let client = Client::connect(endpoint, &api_key).await?;
    let ids = members_over_rpc(&client, args.members, args.concurrency).await?;
    let reports = remote_report_targets(&client).await?;
    eprintln!(
        "omo bench: members ready in {:.2} s",
        started.elapsed().as_secs_f64()
    );
    Ok(Setup {
        endpoint: endpoint.to_string(),
        keys: Keys {
            admin: api_key.clone(),
            register: api_key.clone(),
            checkout: api_key.clone(),
            app: api_key,
        },
        members: Arc::new(Members::Listed(ids)),
        reports,
        server: None,
        webhook_receiver,
        backend: format!("remote {endpoint}"),
        timings: SetupTimings::default(),
    })
}

/// `report-campaign` asks a running server about `bench-stats` when it has it (a database an
/// earlier local bench seeded, served again), else about the hot campaign.
async fn remote_report_targets(client: &Client) -> Result<ReportTargets, BenchError> {
    let request = proto::GetCampaignRequest {
        campaign_id: STATS_CAMPAIGN_ID.into(),
    };
    let campaign_id = match client.coupons().get_campaign(request).await {
        Ok(_) => STATS_CAMPAIGN_ID,
        Err(status) if status.code() == Code::NotFound => HOT_CAMPAIGN_ID,
        Err(status) => return Err(BenchError::setup("GetCampaign", status)),
    };
    Ok(ReportTargets { campaign_id })
}

/// The store `bench-store` and the campaign behind the public code of `hot` (¥100 off, no
/// per-member limit, `issue_limit` in all: 0 is none); either may exist already.
async fn create_store_and_campaign(
    endpoint: &str,
    admin_key: &str,
    issue_limit: i32,
) -> Result<(), BenchError> {
    let admin = Client::connect(endpoint, admin_key).await?;
    let store = proto::Store {
        store_id: STORE_ID.into(),
        name: "omo bench store".into(),
        location: Some(proto::LatLng {
            latitude: 35.6595,
            longitude: 139.7005,
        }),
        time_zone: "Asia/Tokyo".into(),
        geofence_radius_m: 100.0,
        geofence_polygon: vec![],
    };
    let created = admin
        .stores()
        .create_store(proto::CreateStoreRequest {
            store: Some(store),
            request_id: String::new(),
        })
        .await;
    allow_existing("CreateStore", created)?;
    let campaign = proto::Campaign {
        campaign_id: HOT_CAMPAIGN_ID.into(),
        name: "omo bench hot campaign".into(),
        discount: Some(proto::campaign::Discount::AmountOff("100".into())),
        stackable: true,
        public_code: HOT_CODE.into(),
        issue_limit,
        ..Default::default()
    };
    let created = admin
        .coupons()
        .create_campaign(proto::CreateCampaignRequest {
            request_id: String::new(),
            campaign: Some(campaign),
        })
        .await;
    allow_existing("CreateCampaign", created)?;
    create_event_rule(&admin).await?;
    create_geo_rules(&admin).await
}

/// The `track-event` scenario's EVENT rule: a point for each `page_view`.
async fn create_event_rule(admin: &Client) -> Result<(), BenchError> {
    let rule = proto::Rule {
        rule_id: "bench-event".into(),
        name: "omo bench: a point per page view".into(),
        trigger: proto::RuleTrigger::Event as i32,
        event_type: BENCH_EVENT_TYPE.into(),
        effects: Some(proto::RuleEffects {
            bonus_points: 1,
            ..Default::default()
        }),
        ..Default::default()
    };
    create_rule(admin, rule).await
}

/// Makes `rule`; a rule of that id from an earlier run is fine.
async fn create_rule(admin: &Client, rule: proto::Rule) -> Result<(), BenchError> {
    let created = admin
        .rules()
        .create_rule(proto::CreateRuleRequest {
            request_id: String::new(),
            rule: Some(rule),
        })
        .await;
    allow_existing("CreateRule", created)
}

/// A local HTTP receiver answering 204 to every POST, counting them.
#[derive(Debug)]
pub struct WebhookReceiver {
    pub received: Arc<std::sync::atomic::AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for WebhookReceiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// `--webhook`: starts a receiver on 127.0.0.1 and subscribes it to `points.earned` (what
/// every sale reports), so that the sale scenarios run with one webhook delivering.
async fn subscribe_webhook(
    endpoint: &str,
    admin_key: &str,
    wanted: bool,
) -> Result<Option<WebhookReceiver>, BenchError> {
    if !wanted {
        return Ok(None);
    }
    let received = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let counter = received.clone();
    let router = axum::Router::new().route(
        "/hook",
        axum::routing::post(move || {
            let counter = counter.clone();
            async move {
                counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                axum::http::StatusCode::NO_CONTENT
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    let admin = Client::connect(endpoint, admin_key).await?;
    let created = admin
        .events()
        .create_webhook(proto::CreateWebhookRequest {
            request_id: String::new(),
            webhook: Some(proto::Webhook {
                webhook_id: format!("bench-{}", addr.port()),
                url: format!("http://{addr}/hook"),
                types: vec!["points.earned".into()],
                ..Default::default()
            }),
        })
        .await;
    allow_existing("CreateWebhook", created)?;
    eprintln!("omo bench: a webhook on points.earned delivers to http://{addr}/hook");
    Ok(Some(WebhookReceiver { received, task }))
}

/// `count` PURCHASE rules `bench-rule-<i>`: rule 0 doubles the points of category "bench"
/// (every sale's line), the others name categories no sale has.
async fn create_purchase_rules(
    endpoint: &str,
    admin_key: &str,
    count: usize,
) -> Result<(), BenchError> {
    let admin = Client::connect(endpoint, admin_key).await?;
    for i in 0..count {
        let category = if i == 0 {
            "bench".to_string()
        } else {
            format!("bench-other-{i}")
        };
        let rule = proto::Rule {
            rule_id: format!("bench-rule-{i}"),
            name: format!("omo bench: 2x points on {category}"),
            trigger: proto::RuleTrigger::Purchase as i32,
            conditions: Some(proto::RuleConditions {
                lines: vec![proto::RuleLineCondition {
                    category,
                    ..Default::default()
                }],
                ..Default::default()
            }),
            effects: Some(proto::RuleEffects {
                points_multiplier: "2".into(),
                ..Default::default()
            }),
            ..Default::default()
        };
        create_rule(&admin, rule).await?;
    }
    if count > 0 {
        eprintln!("omo bench: {count} PURCHASE rules active (one matches every sale)");
    }
    Ok(())
}

/// The `location` scenario's campaign and its two geo rules over every store: one issues on
/// entry, one after a 5-second dwell, each at most once an hour per member and store.
async fn create_geo_rules(admin: &Client) -> Result<(), BenchError> {
    let campaign = proto::Campaign {
        campaign_id: GEO_CAMPAIGN_ID.into(),
        name: "omo bench geo campaign".into(),
        discount: Some(proto::campaign::Discount::AmountOff("100".into())),
        stackable: true,
        ..Default::default()
    };
    let created = admin
        .coupons()
        .create_campaign(proto::CreateCampaignRequest {
            request_id: String::new(),
            campaign: Some(campaign),
        })
        .await;
    allow_existing("CreateCampaign", created)?;
    for (rule_id, min_dwell_seconds) in [("bench-geo-entry", 0), ("bench-geo-dwell", 5)] {
        let rule = proto::GeoRule {
            rule_id: rule_id.into(),
            campaign_id: GEO_CAMPAIGN_ID.into(),
            min_dwell_seconds,
            cooldown_seconds: 3600,
            ..Default::default()
        };
        let created = admin
            .engagement()
            .create_geo_rule(proto::CreateGeoRuleRequest {
                request_id: String::new(),
                rule: Some(rule),
            })
            .await;
        allow_existing("CreateGeoRule", created)?;
    }
    Ok(())
}

fn allow_existing<T>(
    call: &'static str,
    result: Result<T, tonic::Status>,
) -> Result<(), BenchError> {
    match result {
        Ok(_) => Ok(()),
        Err(status) if status.code() == Code::AlreadyExists => Ok(()),
        Err(status) => Err(BenchError::setup(call, status)),
    }
}

/// The member_ids of the members with cards `bench-1..=count`, made where missing (with
/// 1,000,000 points), found where they exist; `concurrency` loops share the work.
async fn members_over_rpc(
    client: &Client,
    count: u64,
    concurrency: usize,
) -> Result<Vec<String>, BenchError> {
    let loops = u64::try_from(concurrency).unwrap_or(1).min(count);
    let tasks: Vec<_> = (0..loops)
        .map(|first| {
            let client = client.clone();
            tokio::spawn(async move {
                let mut found = Vec::new();
                for n in (first + 1..=count).step_by(loops as usize) {
                    found.push((n, member_over_rpc(&client, n).await?));
                }
                Ok::<_, BenchError>(found)
            })
        })
        .collect();
    let mut ids = Vec::with_capacity(count as usize);
    for task in tasks {
        ids.extend(task.await??);
    }
    ids.sort_unstable();
    Ok(ids.into_iter().map(|(_, id)| id).collect())
}

async fn member_over_rpc(client: &Client, n: u64) -> Result<String, BenchError> {
    let card = proto::Identifier {
        kind: "card".into(),
        value: format!("bench-{n}"),
    };
    let lookup = proto::GetMemberRequest {
        member: Some(proto::MemberRef {
            r#ref: Some(Ref::Identifier(card.clone())),
        }),
    };
    match client.members().get_member(lookup).await {
        Ok(found) => return Ok(found.into_inner().member.unwrap_or_default().member_id),
        Err(status) if status.code() == Code::NotFound => {}
        Err(status) => return Err(BenchError::setup("GetMember", status)),
    }
    let create = proto::CreateMemberRequest {
        request_id: format!("bench-member-{n}"),
        identifiers: vec![card],
        display_name: format!("bench member {n}"),
    };
    let created = client.members().create_member(create).await;
    let created = created.map_err(|status| BenchError::setup("CreateMember", status))?;
    let member_id = created.into_inner().member.unwrap_or_default().member_id;
    let grant = proto::AdjustPointsRequest {
        expires_at: None,
        request_id: format!("bench-grant-{n}"),
        member: Some(proto::MemberRef {
            r#ref: Some(Ref::MemberId(member_id.clone())),
        }),
        points: SEED_POINTS,
        reason: "omo bench seed".into(),
    };
    let granted = client.ledger().adjust_points(grant).await;
    granted.map_err(|status| BenchError::setup("AdjustPoints", status))?;
    Ok(member_id)
}
