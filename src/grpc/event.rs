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
        Violations, channel, check_optional_id, check_request_id, check_text, member_ref,
        optional_instant, timestamp,
    },
    reply::execute,
};
use crate::{
    domain::{
        auth::Operation,
        command::EventCommand,
        event::{Event, EventFilter, EventType, TrackResult, TrackedEvent, is_event_type_name},
    },
    engine::Engine,
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
        let result: TrackResult = execute(&self.engine, &caller, Some(&request_id), command).await?;
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

fn filter_in(
    v: &mut Violations,
    after_seq: i64,
    types: Vec<String>,
    member_id: String,
) -> EventFilter {
    if after_seq < 0 {
        v.push("after_seq", "must not be negative");
    }
    if types.len() > MAX_TYPES {
        v.push("types", format!("at most {MAX_TYPES} types"));
    }
    for (i, name) in types.iter().enumerate() {
        if EventType::parse(name).is_none() {
            v.push(format!("types[{i}]"), "is not an event type");
        }
    }
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
