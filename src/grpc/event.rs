//! `omo.v1.EventService`: TrackEvent (app, checkout, admin) and the event feed (admin):
//! ListEvents, and WatchEvents, a server stream of the stored events after `after_seq`, then
//! the live ones as the relay numbers them.

use std::{collections::BTreeMap, pin::Pin, sync::Arc, time::Duration};

use prost_types::{Struct, Value as ProtoValue, value::Kind};
use serde_json::Value;
use tokio_stream::{Stream, wrappers::ReceiverStream};
use tonic::{Request, Response, Status};

use super::{
    auth::caller_for,
    convert::{
        Violations, channel, check_id, check_optional_id, check_request_id, check_text, member_ref,
        optional_instant, optional_request_id, timestamp,
    },
    paging::{next_page_token, page_size, page_token},
    reply::execute,
};
use crate::{
    domain::{
        auth::Operation,
        command::EventCommand,
        event::{Event, EventFilter, EventType, TrackResult, TrackedEvent, is_event_type_name},
        page::{Cursor, page_after},
        webhook::{Delivery, DeliveryState, Webhook},
    },
    engine::{Engine, NewWebhook, WebhookPatch},
    proto::{self, event_service_server::EventService},
};

const MAX_ATTRIBUTES: usize = 32;
const MAX_ATTRIBUTE_KEY_CHARS: usize = 64;
const MAX_ATTRIBUTE_VALUE_CHARS: usize = 256;
/// Largest page of ListEvents, and of a watcher's reads.
const MAX_PAGE: i64 = 100;
/// Most type filters a reader may give (there are 16 types).
const MAX_TYPES: usize = 32;
/// How long a watcher waits for the relay before it reads anyway.
const WATCH_POLL: Duration = Duration::from_secs(1);

pub struct EventApi {
    engine: Arc<Engine>,
}

impl EventApi {
    pub fn new(engine: Arc<Engine>) -> Self {
        Self { engine }
    }
}

type EventStream = Pin<Box<dyn Stream<Item = Result<proto::WatchEventsResponse, Status>> + Send>>;

#[tonic::async_trait]
impl EventService for EventApi {
    async fn track_event(
        &self,
        request: Request<proto::TrackEventRequest>,
    ) -> Result<Response<proto::TrackEventResponse>, Status> {
        let caller = caller_for(&self.engine, &request, Operation::TrackEvent).await?;
        let request = request.into_inner();
        let request_id = request.request_id.clone();
        let tracked = tracked_in(request)?;
        let command = EventCommand::TrackEvent(tracked);
        let result: TrackResult =
            execute(&self.engine, &caller, Some(&request_id), command).await?;
        Ok(Response::new(proto::TrackEventResponse {
            event_id: result.event_id,
            rules_fired: result
                .rules_fired
                .into_iter()
                .map(|fired| proto::RuleFired {
                    rule_id: fired.rule_id,
                    points_awarded: fired.points_awarded,
                    coupons_issued: fired.coupons_issued,
                })
                .collect(),
        }))
    }

    async fn list_events(
        &self,
        request: Request<proto::ListEventsRequest>,
    ) -> Result<Response<proto::ListEventsResponse>, Status> {
        caller_for(&self.engine, &request, Operation::ReadEvents).await?;
        let request = request.into_inner();
        let mut v = Violations::new();
        let limit = match request.page_size {
            0 => MAX_PAGE,
            size if (1..=MAX_PAGE).contains(&i64::from(size)) => i64::from(size),
            _ => {
                v.push("page_size", format!("must be 0-{MAX_PAGE}"));
                MAX_PAGE
            }
        };
        let filter = filter_in(&mut v, request.after_seq, request.types, request.member_id);
        v.finish()?;
        let filter = EventFilter { limit, ..filter };
        let events = self.engine.list_events(&filter).await?;
        let next_after_seq = events.last().map_or(filter.after_seq, |e| e.seq);
        Ok(Response::new(proto::ListEventsResponse {
            events: events.into_iter().map(event_out).collect(),
            next_after_seq,
        }))
    }

    async fn create_webhook(
        &self,
        request: Request<proto::CreateWebhookRequest>,
    ) -> Result<Response<proto::CreateWebhookResponse>, Status> {
        caller_for(&self.engine, &request, Operation::ReadEvents).await?;
        let request = request.into_inner();
        let mut v = Violations::new();
        let request_id = optional_request_id(&mut v, &request.request_id).unwrap_or_default();
        let Some(webhook) = request.webhook else {
            v.push("webhook", "is required");
            return Err(v.into_status());
        };
        check_id(&mut v, "webhook.webhook_id", &webhook.webhook_id);
        check_url(&mut v, "webhook.url", &webhook.url);
        check_types(&mut v, "webhook.types", &webhook.types);
        v.finish()?;
        let request_hash = crate::domain::ids::sha256_hex(
            format!(
                "{}\n{}\n{}\n{:?}",
                webhook.webhook_id,
                webhook.url,
                webhook.types.join(","),
                webhook.enabled
            )
            .as_bytes(),
        );
        let new = NewWebhook {
            webhook_id: webhook.webhook_id,
            url: webhook.url,
            types: webhook.types,
            enabled: webhook.enabled.unwrap_or(true),
            request_id,
            request_hash,
        };
        let (webhook, secret) = self.engine.create_webhook(new).await?;
        Ok(Response::new(proto::CreateWebhookResponse {
            webhook: Some(webhook_out(webhook)),
            secret,
        }))
    }

    async fn update_webhook(
        &self,
        request: Request<proto::UpdateWebhookRequest>,
    ) -> Result<Response<proto::UpdateWebhookResponse>, Status> {
        caller_for(&self.engine, &request, Operation::ReadEvents).await?;
        let request = request.into_inner();
        let mut v = Violations::new();
        optional_request_id(&mut v, &request.request_id);
        let paths = request.update_mask.map(|m| m.paths).unwrap_or_default();
        if paths.is_empty() {
            v.push("update_mask", "names the fields to change");
        }
        for path in &paths {
            if !["url", "types", "enabled"].contains(&path.as_str()) {
                v.push(
                    "update_mask",
                    format!("cannot change {path:?}; changeable: url, types, enabled"),
                );
            }
        }
        let Some(webhook) = request.webhook else {
            v.push("webhook", "is required");
            return Err(v.into_status());
        };
        check_id(&mut v, "webhook.webhook_id", &webhook.webhook_id);
        let wants = |name: &str| paths.iter().any(|p| p == name);
        if wants("url") {
            check_url(&mut v, "webhook.url", &webhook.url);
        }
        if wants("types") {
            check_types(&mut v, "webhook.types", &webhook.types);
        }
        if wants("enabled") && webhook.enabled.is_none() {
            v.push("webhook.enabled", "is required by the update_mask");
        }
        v.finish()?;
        let patch = WebhookPatch {
            url: wants("url").then(|| webhook.url.clone()),
            types: wants("types").then(|| webhook.types.clone()),
            enabled: if wants("enabled") {
                webhook.enabled
            } else {
                None
            },
            webhook_id: webhook.webhook_id,
        };
        let webhook = self.engine.update_webhook(patch).await?;
        Ok(Response::new(proto::UpdateWebhookResponse {
            webhook: Some(webhook_out(webhook)),
        }))
    }

    async fn list_webhooks(
        &self,
        request: Request<proto::ListWebhooksRequest>,
    ) -> Result<Response<proto::ListWebhooksResponse>, Status> {
        caller_for(&self.engine, &request, Operation::ReadEvents).await?;
        let request = request.into_inner();
        let mut v = Violations::new();
        let size = page_size(&mut v, request.page_size);
        let after = page_token(&mut v, "ListWebhooks", &request.page_token);
        v.finish()?;
        let webhooks = self.engine.list_webhooks().await?;
        let by_id = |w: &Webhook| Cursor {
            at: None,
            id: w.webhook_id.clone(),
        };
        let page = page_after(
            webhooks,
            by_id,
            after.flatten().as_ref(),
            size.unwrap_or(50),
        );
        Ok(Response::new(proto::ListWebhooksResponse {
            webhooks: page.items.into_iter().map(webhook_out).collect(),
            next_page_token: next_page_token(page.next),
        }))
    }

    async fn list_webhook_deliveries(
        &self,
        request: Request<proto::ListWebhookDeliveriesRequest>,
    ) -> Result<Response<proto::ListWebhookDeliveriesResponse>, Status> {
        caller_for(&self.engine, &request, Operation::ReadEvents).await?;
        let request = request.into_inner();
        let mut v = Violations::new();
        check_id(&mut v, "webhook_id", &request.webhook_id);
        let state = match proto::DeliveryState::try_from(request.state) {
            Ok(proto::DeliveryState::Unspecified) => None,
            Ok(proto::DeliveryState::Pending) => Some(DeliveryState::Pending),
            Ok(proto::DeliveryState::Delivered) => Some(DeliveryState::Delivered),
            Ok(proto::DeliveryState::Failed) => Some(DeliveryState::Failed),
            Err(_) => {
                v.push("state", "is not a delivery state");
                None
            }
        };
        let size = page_size(&mut v, request.page_size);
        let after = page_token(&mut v, "ListWebhookDeliveries", &request.page_token);
        let after_seq = match after.clone().flatten() {
            None => Some(0),
            Some(cursor) => cursor.id.parse::<i64>().ok(),
        };
        if after_seq.is_none() {
            v.push(
                "page_token",
                "is not a page token returned by ListWebhookDeliveries",
            );
        }
        v.finish()?;
        let size = size.unwrap_or(50);
        let limit = i64::try_from(size).unwrap_or(50) + 1;
        let mut deliveries = self
            .engine
            .list_deliveries(&request.webhook_id, state, after_seq.unwrap_or(0), limit)
            .await?;
        let next = (deliveries.len() > size).then(|| {
            deliveries.truncate(size);
            Cursor {
                at: None,
                id: deliveries.last().map_or(0, |d| d.seq).to_string(),
            }
        });
        Ok(Response::new(proto::ListWebhookDeliveriesResponse {
            deliveries: deliveries.into_iter().map(delivery_out).collect(),
            next_page_token: next_page_token(next),
        }))
    }

    type WatchEventsStream = EventStream;

    async fn watch_events(
        &self,
        request: Request<proto::WatchEventsRequest>,
    ) -> Result<Response<Self::WatchEventsStream>, Status> {
        caller_for(&self.engine, &request, Operation::ReadEvents).await?;
        let request = request.into_inner();
        let mut v = Violations::new();
        let filter = filter_in(&mut v, request.after_seq, request.types, request.member_id);
        v.finish()?;
        let (sender, receiver) = tokio::sync::mpsc::channel(MAX_PAGE as usize);
        let engine = self.engine.clone();
        tokio::spawn(async move { watch(engine, filter, sender).await });
        Ok(Response::new(Box::pin(ReceiverStream::new(receiver))))
    }
}

/// Feeds one watcher until it goes away: pages of stored events after its position, and when
/// it has caught up, waits for the relay to number more (or `WATCH_POLL`, for another
/// replica's). Reads only numbered rows, in seq order, so it never skips nor repeats one.
async fn watch(
    engine: Arc<Engine>,
    mut filter: EventFilter,
    sender: tokio::sync::mpsc::Sender<Result<proto::WatchEventsResponse, Status>>,
) {
    filter.limit = MAX_PAGE;
    let mut numbered = engine.watch_event_seq();
    loop {
        numbered.borrow_and_update();
        let events = match engine.list_events(&filter).await {
            Ok(events) => events,
            Err(error) => {
                let _ = sender.send(Err(error.into())).await;
                return;
            }
        };
        let caught_up = events.len() < MAX_PAGE as usize;
        for event in events {
            filter.after_seq = event.seq;
            let message = proto::WatchEventsResponse {
                event: Some(event_out(event)),
            };
            if sender.send(Ok(message)).await.is_err() {
                return;
            }
        }
        if caught_up {
            tokio::select! {
                () = sender.closed() => return,
                _ = tokio::time::timeout(WATCH_POLL, numbered.changed()) => {}
            }
        }
    }
}

/// A webhook's URL: an absolute http or https URL with a host, at most 2,048 characters.
fn check_url(v: &mut Violations, field: &str, url: &str) {
    let parsed = url.parse::<http::Uri>().ok();
    let scheme = parsed
        .as_ref()
        .and_then(|u| u.scheme_str().map(str::to_string));
    let has_host = parsed.as_ref().is_some_and(|u| u.host().is_some());
    if url.len() > 2_048 || !has_host || !matches!(scheme.as_deref(), Some("http" | "https")) {
        v.push(field, "must be an absolute http:// or https:// URL");
    }
}

fn check_types(v: &mut Violations, field: &str, types: &[String]) {
    if types.len() > MAX_TYPES {
        v.push(field, format!("at most {MAX_TYPES} types"));
    }
    for (i, name) in types.iter().enumerate() {
        if EventType::parse(name).is_none() {
            v.push(format!("{field}[{i}]"), "is not an event type");
        }
    }
}

fn webhook_out(webhook: Webhook) -> proto::Webhook {
    proto::Webhook {
        webhook_id: webhook.webhook_id,
        url: webhook.url,
        types: webhook.types,
        enabled: Some(webhook.enabled),
        created_at: Some(timestamp(webhook.created_at)),
        updated_at: Some(timestamp(webhook.updated_at)),
    }
}

fn delivery_out(delivery: Delivery) -> proto::WebhookDelivery {
    let state = match delivery.state {
        DeliveryState::Pending => proto::DeliveryState::Pending,
        DeliveryState::Delivered => proto::DeliveryState::Delivered,
        DeliveryState::Failed => proto::DeliveryState::Failed,
    };
    proto::WebhookDelivery {
        seq: delivery.seq,
        event_id: delivery.event_id,
        state: state as i32,
        attempts: delivery.attempts,
        last_status_code: delivery.last_status_code,
        next_attempt_at: (delivery.state == DeliveryState::Pending)
            .then(|| timestamp(delivery.next_attempt_at)),
    }
}

fn filter_in(
    v: &mut Violations,
    after_seq: i64,
    types: Vec<String>,
    member_id: String,
) -> EventFilter {
    if after_seq < 0 {
        v.push("after_seq", "must not be negative");
    }
    check_types(v, "types", &types);
    check_optional_id(v, "member_id", &member_id);
    EventFilter {
        after_seq,
        types,
        member_id,
        limit: MAX_PAGE,
        until_seq: 0,
    }
}

fn tracked_in(request: proto::TrackEventRequest) -> Result<TrackedEvent, Status> {
    let mut v = Violations::new();
    check_request_id(&mut v, &request.request_id);
    let member = member_ref(&mut v, "member", request.member);
    if !is_event_type_name(&request.event_type) {
        v.push(
            "event_type",
            "must be 1-64 characters of a-z, 0-9, '_' and '.'",
        );
    }
    let occurred_at = optional_instant(&mut v, "occurred_at", request.occurred_at.as_ref());
    let channel = if request.channel == 0 {
        Some(None)
    } else {
        channel(&mut v, "channel", request.channel).map(Some)
    };
    check_optional_id(&mut v, "store_id", &request.store_id);
    let attributes = attributes_in(&mut v, request.attributes);
    v.finish()?;
    let missing = || super::status::bug("a TrackEvent field failed without a violation");
    Ok(TrackedEvent {
        member: member.ok_or_else(missing)?,
        event_type: request.event_type,
        occurred_at: occurred_at.ok_or_else(missing)?,
        channel: channel.ok_or_else(missing)?,
        store_id: request.store_id,
        attributes: attributes.ok_or_else(missing)?,
    })
}

fn attributes_in(
    v: &mut Violations,
    attributes: std::collections::HashMap<String, String>,
) -> Option<BTreeMap<String, String>> {
    if attributes.len() > MAX_ATTRIBUTES {
        v.push("attributes", format!("at most {MAX_ATTRIBUTES} attributes"));
        return None;
    }
    let mut ok = true;
    for (key, value) in &attributes {
        let field = format!("attributes[{key:?}]");
        ok &= check_text(v, &field, key, 1, MAX_ATTRIBUTE_KEY_CHARS);
        ok &= check_text(v, &field, value, 0, MAX_ATTRIBUTE_VALUE_CHARS);
    }
    ok.then(|| attributes.into_iter().collect())
}

pub fn event_out(event: Event) -> proto::Event {
    proto::Event {
        seq: event.seq,
        event_id: event.event_id,
        r#type: event.event_type,
        occurred_at: Some(timestamp(event.occurred_at)),
        member_id: event.member_id,
        data: Some(struct_of(event.data)),
    }
}

fn struct_of(map: serde_json::Map<String, Value>) -> Struct {
    Struct {
        fields: map.into_iter().map(|(k, v)| (k, value_of(v))).collect(),
    }
}

fn value_of(value: Value) -> ProtoValue {
    let kind = match value {
        Value::Null => Kind::NullValue(0),
        Value::Bool(b) => Kind::BoolValue(b),
        Value::Number(n) => Kind::NumberValue(n.as_f64().unwrap_or_default()),
        Value::String(s) => Kind::StringValue(s),
        Value::Array(items) => Kind::ListValue(prost_types::ListValue {
            values: items.into_iter().map(value_of).collect(),
        }),
        Value::Object(map) => Kind::StructValue(struct_of(map)),
    };
    ProtoValue { kind: Some(kind) }
}
