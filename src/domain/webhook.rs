//! Webhooks (issue #22, API.md "EventService"): an admin's subscription to event types, the
//! delivery of each matching event with its attempts, the retry schedule and the signature.

use chrono::{DateTime, Duration, Utc};
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use super::event::Event;

/// How long a delivery is retried before it is FAILED.
pub const RETRY_FOR_HOURS: i64 = 24;
/// The first retry's delay, doubling up to `MAX_BACKOFF_SECONDS`.
pub const FIRST_BACKOFF_SECONDS: i64 = 1;
pub const MAX_BACKOFF_SECONDS: i64 = 3_600;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Webhook {
    pub webhook_id: String,
    /// http or https.
    pub url: String,
    /// Event types delivered; empty: all.
    pub types: Vec<String>,
    pub enabled: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl Webhook {
    pub fn wants(&self, event_type: &str) -> bool {
        self.types.is_empty() || self.types.iter().any(|t| t == event_type)
    }
}

/// A webhook as stored. The secret is kept in clear, unlike API keys (kept hashed): the
/// worker must compute an HMAC with it for every delivery, which a hash cannot do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookRecord {
    pub webhook: Webhook,
    pub secret: String,
    /// The request that created it (its id and the hash of its body): a retry of that request
    /// gets the same answer, another body under that id is IDEMPOTENCY_KEY_REUSED.
    pub request_id: String,
    pub request_hash: String,
    /// The last seq whose delivery (if the webhook wants it) has been planned.
    pub cursor_seq: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryState {
    Pending,
    Delivered,
    Failed,
}

impl DeliveryState {
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryState::Pending => "PENDING",
            DeliveryState::Delivered => "DELIVERED",
            DeliveryState::Failed => "FAILED",
        }
    }

    pub fn parse(name: &str) -> Option<DeliveryState> {
        [
            DeliveryState::Pending,
            DeliveryState::Delivered,
            DeliveryState::Failed,
        ]
        .into_iter()
        .find(|s| s.as_str() == name)
    }
}

/// One event's delivery to one webhook.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    pub webhook_id: String,
    pub seq: i64,
    pub event_id: String,
    pub state: DeliveryState,
    pub attempts: i32,
    /// The HTTP status of the last attempt; 0: none yet, or no answer.
    pub last_status_code: i32,
    pub next_attempt_at: DateTime<Utc>,
    /// When it was planned: retries stop `RETRY_FOR_HOURS` later.
    pub created_at: DateTime<Utc>,
}

impl Delivery {
    pub fn new(webhook_id: &str, event: &Event, now: DateTime<Utc>) -> Self {
        Delivery {
            webhook_id: webhook_id.to_string(),
            seq: event.seq,
            event_id: event.event_id.clone(),
            state: DeliveryState::Pending,
            attempts: 0,
            last_status_code: 0,
            next_attempt_at: now,
            created_at: now,
        }
    }

    /// The delivery after one more attempt answered `status` (0: no answer) at `now`: any 2xx
    /// is DELIVERED; otherwise retried after 1 s doubling (at most 1 h apart), FAILED once the
    /// next try would fall after 24 h.
    pub fn attempted(mut self, status: i32, now: DateTime<Utc>) -> Self {
        self.attempts += 1;
        self.last_status_code = status;
        if (200..300).contains(&status) {
            self.state = DeliveryState::Delivered;
            return self;
        }
        let doublings = u32::try_from(self.attempts - 1).unwrap_or(0).min(20);
        let backoff = (FIRST_BACKOFF_SECONDS << doublings).min(MAX_BACKOFF_SECONDS);
        let next = now + Duration::seconds(backoff);
        if next > self.created_at + Duration::hours(RETRY_FOR_HOURS) {
            self.state = DeliveryState::Failed;
        } else {
            self.next_attempt_at = next;
        }
        self
    }
}

/// The `omo-signature` header of a body sent at `at`: `t=<unix seconds>,v1=<hex
/// HMAC-SHA256(secret, "<t>.<body>")>`, keyed with the secret's UTF-8 bytes.
pub fn signature(secret: &str, at: DateTime<Utc>, body: &str) -> String {
    let t = at.timestamp();
    let mut mac =
        Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes a key of any length");
    mac.update(format!("{t}.{body}").as_bytes());
    format!("t={t},v1={}", hex::encode(mac.finalize().into_bytes()))
}

/// The Event in the proto3 JSON mapping (lowerCamelCase names, int64 as a string, RFC 3339
/// timestamps, `data` a JSON object): the body of a webhook's POST.
pub fn event_json(event: &Event) -> String {
    let body = serde_json::json!({
        "seq": event.seq.to_string(),
        "eventId": event.event_id,
        "type": event.event_type,
        "occurredAt": event.occurred_at.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true),
        "memberId": event.member_id,
        "data": event.data,
    });
    body.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(seconds: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_700_000_000 + seconds, 0).expect("instant")
    }

    fn delivery() -> Delivery {
        Delivery {
            webhook_id: "w".into(),
            seq: 1,
            event_id: "ev".into(),
            state: DeliveryState::Pending,
            attempts: 0,
            last_status_code: 0,
            next_attempt_at: at(0),
            created_at: at(0),
        }
    }

    #[test]
    fn retries_double_from_a_second_to_an_hour_and_fail_after_a_day() {
        let mut d = delivery();
        let mut gaps = Vec::new();
        let mut now = at(0);
        while d.state == DeliveryState::Pending {
            d = d.attempted(503, now);
            if d.state == DeliveryState::Pending {
                gaps.push((d.next_attempt_at - now).num_seconds());
                now = d.next_attempt_at;
            }
        }
        assert_eq!(&gaps[..4], [1, 2, 4, 8]);
        assert!(gaps.iter().all(|gap| *gap <= 3_600));
        assert_eq!(d.state, DeliveryState::Failed);
        assert!(now <= at(24 * 3_600));
        assert_eq!(d.last_status_code, 503);
    }

    #[test]
    fn a_2xx_delivers() {
        let d = delivery().attempted(0, at(0)).attempted(204, at(1));
        assert_eq!((d.state, d.attempts), (DeliveryState::Delivered, 2));
    }

    #[test]
    fn the_signature_is_hmac_sha256_of_time_dot_body() {
        // Computed independently: printf '1700000000.{}' | openssl dgst -sha256 -hmac whsec_x
        let header = signature("whsec_x", at(0), "{}");
        assert_eq!(
            header,
            "t=1700000000,v1=be8cb8325f2202445260a855532f967e30ad2a9394ce28da66ee02880ddcb661"
        );
    }
}
