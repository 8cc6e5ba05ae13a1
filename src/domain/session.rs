//! Dashboard sessions (`omo serve --http`): what logging in with an admin key opens, how long
//! it lives, and the secrets it carries. The session id is the browser's only credential; the
//! store keeps its SHA-256, never the id.

use chrono::{DateTime, Duration, Utc};
use rand::RngCore;

use super::ids;

/// A session unused for this long has ended (the operator logs in again).
pub const IDLE_TTL: Duration = Duration::hours(1);
/// A session ends this long after it opened, however much it is used.
pub const ABSOLUTE_TTL: Duration = Duration::hours(12);
/// A session's last use is written at most this often: a page load is not a write each time,
/// at the cost of the idle timeout being this much late at worst.
pub const TOUCH_EVERY: Duration = Duration::minutes(1);

/// One open session, as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DashboardSession {
    /// SHA-256 (hex) of the session id.
    pub session_hash: String,
    /// The admin key it was opened with: revoked or expired, the session is refused.
    pub key_id: String,
    /// The token every form of this session must send back (CSRF).
    pub csrf_token: String,
    pub created_at: DateTime<Utc>,
    pub last_seen_at: DateTime<Utc>,
}

/// A newly opened session: the id goes into the cookie, the rest into the database.
#[derive(Debug)]
pub struct NewSession {
    pub session_id: String,
    pub session: DashboardSession,
}

impl DashboardSession {
    /// Opens a session for `key_id` at `now`, with a fresh random id and CSRF token.
    pub fn open(key_id: &str, now: DateTime<Utc>) -> NewSession {
        let session_id = random_token();
        let session = DashboardSession {
            session_hash: hash_of(&session_id),
            key_id: key_id.to_string(),
            csrf_token: random_token(),
            created_at: now,
            last_seen_at: now,
        };
        NewSession {
            session_id,
            session,
        }
    }

    /// When the session ends if it is not used again.
    pub fn ends_at(&self) -> DateTime<Utc> {
        (self.created_at + ABSOLUTE_TTL).min(self.last_seen_at + IDLE_TTL)
    }

    pub fn is_live(&self, now: DateTime<Utc>) -> bool {
        now < self.ends_at()
    }

    /// Whether a use at `now` should be written (see [`TOUCH_EVERY`]).
    pub fn due_for_touch(&self, now: DateTime<Utc>) -> bool {
        now - self.last_seen_at >= TOUCH_EVERY
    }
}

/// Whether `presented` is the `expected` token (a CSRF token), compared in constant time so
/// that the time a refusal takes tells nothing about how much of a guess was right.
pub fn same_token(expected: &str, presented: &str) -> bool {
    let (a, b) = (expected.as_bytes(), presented.as_bytes());
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |diff, (x, y)| diff | (x ^ y)) == 0
}

/// What the store keeps of a session id.
pub fn hash_of(session_id: &str) -> String {
    ids::sha256_hex(session_id.as_bytes())
}

/// 256 random bits from the operating system's generator (through `rand`'s thread-local CSPRNG),
/// as 64 hex digits: safe in a cookie and in a form field as is.
pub fn random_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    hex::encode(bytes)
}

/// Whether `token` looks like one of [`random_token`]'s (checked before any lookup).
pub fn well_formed_token(token: &str) -> bool {
    token.len() == 64 && token.bytes().all(|b| b.is_ascii_hexdigit())
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    fn at(minutes: i64) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 4, 1, 0, 0, 0).unwrap() + Duration::minutes(minutes)
    }

    #[test]
    fn a_session_ends_when_idle_or_at_its_absolute_end() {
        let NewSession {
            session_id,
            mut session,
        } = DashboardSession::open("k_1", at(0));
        assert!(well_formed_token(&session_id) && well_formed_token(&session.csrf_token));
        assert_ne!(session_id, session.csrf_token);
        assert_eq!(session.session_hash, hash_of(&session_id));
        assert!(session.is_live(at(59)));
        assert!(!session.is_live(at(60)), "an hour idle");
        // Used every 50 minutes, it still ends twelve hours after it opened.
        for minutes in (50..=700).step_by(50) {
            assert!(session.is_live(at(minutes)));
            session.last_seen_at = at(minutes);
        }
        assert!(session.is_live(at(719)));
        assert!(!session.is_live(at(720)));
    }

    #[test]
    fn touches_are_a_minute_apart_and_tokens_compare_exactly() {
        let session = DashboardSession::open("k_1", at(0)).session;
        assert!(!session.due_for_touch(at(0) + Duration::seconds(59)));
        assert!(session.due_for_touch(at(1)));
        let token = session.csrf_token.clone();
        assert!(same_token(&token, &token.clone()));
        assert!(!same_token(&token, &token[..63]));
        assert!(!same_token(&token, ""));
        let mut other = token.clone().into_bytes();
        other[10] = if other[10] == b'a' { b'b' } else { b'a' };
        assert!(!same_token(&token, &String::from_utf8(other).unwrap()));
        assert_ne!(random_token(), random_token());
    }
}
