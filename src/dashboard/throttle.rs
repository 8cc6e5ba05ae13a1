//! Failed dashboard logins, counted per client address: after [`MAX_FAILURES`] within
//! [`WINDOW`], every login attempt from that address (right key or not, so that guessing
//! learns nothing while blocked) gets 429 for [`BLOCK`].
//!
//! In memory, per process, on the monotonic clock: a restart or another replica starts
//! counting afresh, which bounds guessing to a few tries a minute per address and replica,
//! enough against keys of 160 random bits. Persisting it would let a flood of bad logins
//! write to the database. The client address is the TCP peer's (a proxy in front makes every
//! client one address, and a spoofable header is not trusted); an IPv6 client is counted by
//! its /64, which one host usually holds whole.

use std::{
    collections::HashMap,
    net::IpAddr,
    sync::{Mutex, PoisonError},
    time::{Duration, Instant},
};

/// Failed logins from one address within [`WINDOW`] that block it.
pub(super) const MAX_FAILURES: u32 = 5;
pub(super) const WINDOW: Duration = Duration::from_secs(60);
/// How long a blocked address gets 429.
pub(super) const BLOCK: Duration = Duration::from_secs(300);
/// Most addresses tracked; past that, those neither blocked nor failing lately are forgotten.
const MAX_TRACKED: usize = 10_000;

#[derive(Debug, Clone, Copy)]
struct Failures {
    /// When the first failure of the current window happened.
    since: Instant,
    count: u32,
    blocked_until: Option<Instant>,
}

impl Failures {
    fn is_stale(&self, now: Instant) -> bool {
        self.blocked_until.is_none_or(|until| until <= now) && now - self.since >= WINDOW
    }
}

#[derive(Debug, Default)]
pub(super) struct LoginThrottle {
    by_client: Mutex<HashMap<IpAddr, Failures>>,
}

impl LoginThrottle {
    /// How long `client` must still wait, when it is blocked.
    pub(super) fn blocked(&self, client: IpAddr, now: Instant) -> Option<Duration> {
        let by_client = self.lock();
        let until = by_client.get(&counted(client))?.blocked_until?;
        (until > now).then(|| until - now)
    }

    /// Counts a failed login; whether `client` is now blocked.
    pub(super) fn failed(&self, client: IpAddr, now: Instant) -> bool {
        let mut by_client = self.lock();
        if by_client.len() >= MAX_TRACKED {
            by_client.retain(|_, failures| !failures.is_stale(now));
        }
        if by_client.len() >= MAX_TRACKED {
            by_client.retain(|_, failures| failures.blocked_until.is_some());
        }
        let failures = by_client.entry(counted(client)).or_insert(Failures {
            since: now,
            count: 0,
            blocked_until: None,
        });
        if failures.is_stale(now) {
            *failures = Failures {
                since: now,
                count: 0,
                blocked_until: None,
            };
        }
        failures.count += 1;
        if failures.count >= MAX_FAILURES {
            failures.blocked_until = Some(now + BLOCK);
        }
        failures.blocked_until.is_some()
    }

    /// Forgets `client`'s failures after it logged in.
    pub(super) fn succeeded(&self, client: IpAddr) {
        self.lock().remove(&counted(client));
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<IpAddr, Failures>> {
        // The map holds no invariant a panicking holder could break halfway.
        self.by_client
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

/// The address failures are counted under: an IPv6 address's /64.
fn counted(client: IpAddr) -> IpAddr {
    match client {
        IpAddr::V4(_) => client,
        IpAddr::V6(v6) => IpAddr::V6((u128::from(v6) & !u128::from(u64::MAX)).into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn five_failures_in_a_minute_block_for_five_minutes() {
        let throttle = LoginThrottle::default();
        let (client, other) = ("192.0.2.1".parse().unwrap(), "192.0.2.2".parse().unwrap());
        let t0 = Instant::now();
        for n in 0..MAX_FAILURES - 1 {
            assert!(!throttle.failed(client, t0 + Duration::from_secs(n.into())));
        }
        assert_eq!(throttle.blocked(client, t0 + Duration::from_secs(10)), None);
        assert!(throttle.failed(client, t0 + Duration::from_secs(10)));
        let wait = throttle.blocked(client, t0 + Duration::from_secs(70));
        assert_eq!(wait, Some(BLOCK - Duration::from_secs(60)));
        assert_eq!(throttle.blocked(other, t0), None, "only that address");
        assert_eq!(
            throttle.blocked(client, t0 + Duration::from_secs(10) + BLOCK),
            None
        );
    }

    #[test]
    fn failures_a_minute_apart_and_a_success_start_afresh() {
        let throttle = LoginThrottle::default();
        let client = "192.0.2.1".parse().unwrap();
        let t0 = Instant::now();
        for n in 0..MAX_FAILURES * 2 {
            assert!(!throttle.failed(client, t0 + WINDOW * n));
        }
        let t1 = t0 + WINDOW * 20;
        for _ in 0..MAX_FAILURES - 1 {
            throttle.failed(client, t1);
        }
        throttle.succeeded(client);
        assert!(!throttle.failed(client, t1));
    }

    #[test]
    fn an_ipv6_client_is_counted_by_its_64() {
        let throttle = LoginThrottle::default();
        let t0 = Instant::now();
        for n in 0..MAX_FAILURES {
            let address: IpAddr = format!("2001:db8::{:x}", n + 1).parse().unwrap();
            throttle.failed(address, t0);
        }
        assert!(
            throttle
                .blocked("2001:db8::ffff".parse().unwrap(), t0)
                .is_some()
        );
        assert!(
            throttle
                .blocked("2001:db8:0:1::1".parse().unwrap(), t0)
                .is_none()
        );
    }
}
