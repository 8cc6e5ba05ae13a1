//! API keys: creation, authentication through a short-lived cache, expiry, revocation, and a
//! coarse "last used".
//!
//! Every request authenticates, so a key is looked up in the database at most about once a
//! second per server: a known key is trusted for [`FRESH_FOR`] after it was read, which bounds
//! how long a revocation made on another replica goes unnoticed. A key the database does not know
//! (or knows as revoked) is remembered as unknown for as long, in a bounded set, so a client
//! hammering with a bad key costs one query a second, not one per request. Expiry is checked
//! against the injected clock on every request, cached or not.

use std::{
    collections::HashMap,
    sync::{Mutex, OnceLock},
    time::{Duration as StdDuration, Instant},
};

use chrono::{DateTime, Duration, Utc};

use super::{Engine, EngineError};
use crate::{
    config::Limits,
    domain::{
        DomainError,
        auth::{Caller, Role},
        ids,
        ports::ApiKeyRecord,
    },
};

/// How long a key read from the database is trusted without reading it again.
const FRESH_FOR: StdDuration = StdDuration::from_secs(1);
/// How often a key's last use is written, at most (per key and server).
const TOUCH_EVERY: StdDuration = StdDuration::from_secs(60);
/// Most key hashes remembered, known or unknown; past that the oldest half is forgotten.
const MAX_CACHED: usize = 10_000;

/// A key read from the database.
#[derive(Debug, Clone)]
struct Known {
    caller: Caller,
    expires_at: Option<DateTime<Utc>>,
    read_at: Instant,
}

#[derive(Debug, Default)]
pub(super) struct KeyCache {
    known: Mutex<HashMap<String, Known>>,
    /// Hashes of keys the database did not know (or knew as revoked), by when that was read.
    unknown: Mutex<HashMap<String, Instant>>,
    /// When this server last wrote a key's last use, by key id.
    touched: Mutex<HashMap<String, Instant>>,
    /// Calls per second per key, by role (set once at start; unset = no limit).
    rates: OnceLock<Limits>,
    /// Each limited key's token bucket.
    buckets: Mutex<HashMap<String, Bucket>>,
}

/// A token bucket: `rate` calls a second, bursts of up to one second's worth.
#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

impl Bucket {
    /// Takes one call's token, or says how long until there is one.
    fn take(&mut self, rate: f64, now: Instant) -> Result<(), StdDuration> {
        let refill = now.duration_since(self.at).as_secs_f64() * rate;
        self.tokens = (self.tokens + refill).min(rate);
        self.at = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Ok(())
        } else {
            Err(StdDuration::from_secs_f64((1.0 - self.tokens) / rate))
        }
    }
}

enum Cached {
    Known(Known),
    Unknown,
    Miss,
}

impl KeyCache {
    fn get(&self, key_hash: &str, now: Instant) -> Cached {
        let fresh = |read_at: Instant| now.duration_since(read_at) < FRESH_FOR;
        if let Some(known) = lock(&self.known).get(key_hash)
            && fresh(known.read_at)
        {
            return Cached::Known(known.clone());
        }
        match lock(&self.unknown).get(key_hash) {
            Some(read_at) if fresh(*read_at) => Cached::Unknown,
            _ => Cached::Miss,
        }
    }

    fn remember_known(&self, key_hash: String, known: Known) {
        lock(&self.unknown).remove(&key_hash);
        let mut cache = lock(&self.known);
        bound(&mut cache, |k| k.read_at);
        cache.insert(key_hash, known);
    }

    fn remember_unknown(&self, key_hash: String, now: Instant) {
        lock(&self.known).remove(&key_hash);
        let mut cache = lock(&self.unknown);
        bound(&mut cache, |read_at| *read_at);
        cache.insert(key_hash, now);
    }

    fn forget_key(&self, key_id: &str) {
        lock(&self.known).retain(|_, known| known.caller.key_id != key_id);
    }

    /// Whether this server should write the key's last use now (and notes that it does).
    fn due_for_touch(&self, key_id: &str, now: Instant) -> bool {
        let mut touched = lock(&self.touched);
        match touched.get(key_id) {
            Some(at) if now.duration_since(*at) < TOUCH_EVERY => false,
            _ => {
                bound(&mut touched, |at| *at);
                touched.insert(key_id.to_string(), now);
                true
            }
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // The maps hold no invariant a panicking holder could break halfway.
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Keeps a cache within MAX_CACHED entries by dropping the older half when it is full.
fn bound<V>(cache: &mut HashMap<String, V>, read_at: impl Fn(&V) -> Instant) {
    if cache.len() < MAX_CACHED {
        return;
    }
    let mut ages: Vec<Instant> = cache.values().map(&read_at).collect();
    ages.sort_unstable();
    let cutoff = ages[ages.len() / 2];
    cache.retain(|_, value| read_at(value) > cutoff);
}

/// One key as `omo keys list` shows it: everything but its hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyInfo {
    pub key_id: String,
    pub role: Role,
    pub store_id: Option<String>,
    pub name: String,
    pub created_at: DateTime<Utc>,
    pub expires_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
    pub last_used_at: Option<DateTime<Utc>>,
}

impl Engine {
    /// Sets the per-key rate limits by role (once, at start; later calls change nothing).
    pub fn set_rate_limits(&self, limits: &Limits) {
        let _ = self.keys.rates.set(limits.clone());
    }

    /// Admits one call of `caller` under its role's rate limit, or says how long to wait.
    pub fn admit(&self, caller: &Caller) -> Result<(), StdDuration> {
        let rate = self
            .keys
            .rates
            .get()
            .map_or(0, |limits| limits.rate_limit(caller.role));
        if rate == 0 {
            return Ok(());
        }
        let rate = f64::from(rate);
        let now = Instant::now();
        let mut buckets = lock(&self.keys.buckets);
        if !buckets.contains_key(&caller.key_id) {
            bound(&mut buckets, |bucket| bucket.at);
        }
        buckets
            .entry(caller.key_id.clone())
            .or_insert(Bucket {
                tokens: rate,
                at: now,
            })
            .take(rate, now)
    }

    /// The caller an API key stands for; `None` for an unknown, revoked or expired key.
    pub async fn authenticate(&self, api_key: &str) -> Result<Option<Caller>, EngineError> {
        let key_hash = ids::sha256_hex(api_key.as_bytes());
        let now = Instant::now();
        let known = match self.keys.get(&key_hash, now) {
            Cached::Known(known) => known,
            Cached::Unknown => return Ok(None),
            Cached::Miss => {
                let mut uow = self.store().begin_read().await?;
                let record = uow.find_api_key(&key_hash).await?;
                drop(uow);
                match record {
                    Some(record) if record.revoked_at.is_none() => {
                        let known = Known {
                            caller: Caller {
                                key_id: record.key_id,
                                role: record.role,
                                store_id: record.store_id,
                            },
                            expires_at: record.expires_at,
                            read_at: now,
                        };
                        self.keys.remember_known(key_hash, known.clone());
                        known
                    }
                    _ => {
                        self.keys.remember_unknown(key_hash, now);
                        return Ok(None);
                    }
                }
            }
        };
        if known.expires_at.is_some_and(|at| at <= self.now()) {
            return Ok(None);
        }
        if self.keys.due_for_touch(&known.caller.key_id, now) {
            self.touch_in_background(known.caller.key_id.clone());
        }
        Ok(Some(known.caller))
    }

    /// Writes a key's last use without making its request wait for it.
    fn touch_in_background(&self, key_id: String) {
        let (store, now) = (self.core.store.clone(), self.now());
        tokio::spawn(async move {
            // Key bookkeeping is no ledger write: a unit of work of its own, not the writer's.
            let written = async {
                let mut uow = store.begin().await?;
                uow.touch_api_key(&key_id, now).await?;
                uow.commit().await
            }
            .await;
            if let Err(error) = written {
                tracing::warn!(%key_id, %error, "could not record the key's last use");
            }
        });
    }

    /// Creates an API key that never expires; see [`Engine::create_api_key_expiring`].
    pub async fn create_api_key(
        &self,
        role: Role,
        store_id: Option<String>,
        name: String,
    ) -> Result<String, EngineError> {
        self.create_api_key_expiring(role, store_id, name, None)
            .await
    }

    /// Creates an API key, valid for `lifetime` from now when given, and returns it in clear:
    /// the only time it is ever seen.
    pub async fn create_api_key_expiring(
        &self,
        role: Role,
        store_id: Option<String>,
        name: String,
        lifetime: Option<Duration>,
    ) -> Result<String, EngineError> {
        if role == Role::Register && store_id.is_none() {
            return Err(DomainError::invalid("store", "a register key is bound to a store").into());
        }
        if lifetime.is_some_and(|lifetime| lifetime <= Duration::zero()) {
            return Err(DomainError::invalid("expires_in", "must be positive").into());
        }
        let api_key = ids::new_api_key();
        let key_hash = ids::sha256_hex(api_key.as_bytes());
        let now = self.now();
        let record = ApiKeyRecord {
            key_id: ids::key_id_of(&key_hash),
            key_hash,
            role,
            store_id,
            name,
            created_at: now,
            expires_at: lifetime.map(|lifetime| now + lifetime),
            revoked_at: None,
            last_used_at: None,
        };
        // An API key is no ledger write: it needs neither the writer nor its batch.
        let mut uow = self.store().begin().await?;
        uow.insert_api_key(&record).await?;
        uow.commit().await?;
        Ok(api_key)
    }

    /// Every key, oldest first, without its hash.
    pub async fn list_api_keys(&self) -> Result<Vec<KeyInfo>, EngineError> {
        let mut uow = self.store().begin_read().await?;
        let keys = uow.list_api_keys().await?;
        Ok(keys
            .into_iter()
            .map(|k| KeyInfo {
                key_id: k.key_id,
                role: k.role,
                store_id: k.store_id,
                name: k.name,
                created_at: k.created_at,
                expires_at: k.expires_at,
                revoked_at: k.revoked_at,
                last_used_at: k.last_used_at,
            })
            .collect())
    }

    /// Revokes a key: this server refuses it at once, every other one within [`FRESH_FOR`].
    /// Returns false when there is no key `key_id`.
    pub async fn revoke_api_key(&self, key_id: &str) -> Result<bool, EngineError> {
        let mut uow = self.store().begin().await?;
        let found = uow.revoke_api_key(key_id, self.now()).await?;
        uow.commit().await?;
        self.keys.forget_key(key_id);
        Ok(found)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn known(key_id: &str, read_at: Instant) -> Known {
        Known {
            caller: Caller {
                key_id: key_id.into(),
                role: Role::App,
                store_id: None,
            },
            expires_at: None,
            read_at,
        }
    }

    #[test]
    fn cached_answers_go_stale_after_a_second() {
        let cache = KeyCache::default();
        let t0 = Instant::now();
        cache.remember_known("h1".into(), known("k1", t0));
        cache.remember_unknown("h2".into(), t0);
        assert!(matches!(cache.get("h1", t0), Cached::Known(_)));
        assert!(matches!(cache.get("h2", t0), Cached::Unknown));
        assert!(matches!(cache.get("h3", t0), Cached::Miss));
        let later = t0 + FRESH_FOR;
        assert!(matches!(cache.get("h1", later), Cached::Miss));
        assert!(matches!(cache.get("h2", later), Cached::Miss));
        cache.remember_known("h1".into(), known("k1", later));
        cache.forget_key("k1");
        assert!(matches!(cache.get("h1", later), Cached::Miss));
    }

    #[test]
    fn a_bucket_allows_bursts_of_a_second_then_the_rate() {
        let t0 = Instant::now();
        let mut bucket = Bucket {
            tokens: 5.0,
            at: t0,
        };
        for _ in 0..5 {
            assert!(bucket.take(5.0, t0).is_ok());
        }
        let wait = bucket.take(5.0, t0).expect_err("empty");
        assert!(wait > StdDuration::ZERO && wait <= StdDuration::from_millis(200));
        assert!(bucket.take(5.0, t0 + StdDuration::from_millis(200)).is_ok());
        assert!(
            bucket
                .take(5.0, t0 + StdDuration::from_millis(200))
                .is_err()
        );
    }

    #[test]
    fn last_use_is_written_once_a_minute_and_caches_stay_bounded() {
        let cache = KeyCache::default();
        let t0 = Instant::now();
        assert!(cache.due_for_touch("k1", t0));
        assert!(!cache.due_for_touch("k1", t0 + StdDuration::from_secs(59)));
        assert!(cache.due_for_touch("k1", t0 + TOUCH_EVERY));
        for i in 0..(MAX_CACHED + 10) {
            let at = t0 + StdDuration::from_micros(i as u64);
            cache.remember_unknown(format!("bad{i}"), at);
        }
        assert!(lock(&cache.unknown).len() <= MAX_CACHED);
        assert!(matches!(
            cache.get(&format!("bad{}", MAX_CACHED + 9), t0),
            Cached::Unknown
        ));
    }
}
