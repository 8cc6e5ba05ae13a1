//! `omo keys`: the command-line side of the key lifecycle (lifetimes like `90d`, the listing).

use chrono::{DateTime, Duration, Utc};

use crate::engine::KeyInfo;

/// A key lifetime such as `90d`, `12h`, `30m` or `45s`: a positive whole number and one unit.
pub fn parse_lifetime(text: &str) -> Result<Duration, String> {
    let bad = || format!("{text:?} is not a lifetime such as 90d, 12h, 30m or 45s");
    let split = text.len().checked_sub(1).ok_or_else(bad)?;
    let (number, unit) = text.split_at_checked(split).ok_or_else(bad)?;
    let number: i64 = number
        .parse()
        .ok()
        .filter(|n| *n > 0 && number.bytes().all(|b| b.is_ascii_digit()))
        .ok_or_else(bad)?;
    let seconds_per_unit = match unit {
        "d" => 86_400,
        "h" => 3_600,
        "m" => 60,
        "s" => 1,
        _ => return Err(bad()),
    };
    number
        .checked_mul(seconds_per_unit)
        .filter(|seconds| *seconds <= 100 * 365 * 86_400)
        .map(Duration::seconds)
        .ok_or_else(|| format!("{text:?} is longer than 100 years"))
}

/// The key listing: one line per key, never a secret (not even the key's hash).
pub fn format_list(keys: &[KeyInfo], now: DateTime<Utc>) -> String {
    let instant = |at: Option<DateTime<Utc>>| {
        at.map_or_else(
            || "-".to_string(),
            |at| at.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
        )
    };
    let mut out = format!(
        "{:<16} {:<8} {:<12} {:<20} {:<20} {:<20} {:<20} {}\n",
        "ID", "ROLE", "STORE", "NAME", "CREATED", "EXPIRES", "LAST USED", "STATE"
    );
    for key in keys {
        let state = if key.revoked_at.is_some() {
            "revoked"
        } else if key.expires_at.is_some_and(|at| at <= now) {
            "expired"
        } else {
            "active"
        };
        out.push_str(&format!(
            "{:<16} {:<8} {:<12} {:<20} {:<20} {:<20} {:<20} {}\n",
            key.key_id,
            key.role.as_str(),
            key.store_id.as_deref().unwrap_or("-"),
            if key.name.is_empty() { "-" } else { &key.name },
            instant(Some(key.created_at)),
            instant(key.expires_at),
            instant(key.last_used_at),
            state
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::auth::Role;

    #[test]
    fn lifetimes_take_days_hours_minutes_and_seconds() {
        assert_eq!(parse_lifetime("90d"), Ok(Duration::days(90)));
        assert_eq!(parse_lifetime("12h"), Ok(Duration::hours(12)));
        assert_eq!(parse_lifetime("30m"), Ok(Duration::minutes(30)));
        assert_eq!(parse_lifetime("45s"), Ok(Duration::seconds(45)));
        for bad in [
            "",
            "d",
            "0d",
            "-1d",
            "+1d",
            "1w",
            "1.5h",
            "90",
            "99999999999999d",
        ] {
            assert!(parse_lifetime(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn the_listing_shows_state_and_no_hash() {
        let now = DateTime::from_timestamp(1_775_000_000, 0).expect("instant");
        let key = KeyInfo {
            key_id: "k_0123456789ab".into(),
            role: Role::Register,
            store_id: Some("shibuya".into()),
            name: "till 1".into(),
            created_at: now - Duration::days(2),
            expires_at: Some(now - Duration::days(1)),
            revoked_at: None,
            last_used_at: None,
        };
        let listing = format_list(&[key], now);
        let line = listing.lines().nth(1).expect("one key");
        let columns: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(
            columns[..3],
            ["k_0123456789ab", "register", "shibuya"],
            "{line}"
        );
        assert!(line.ends_with("expired"), "{line}");
    }
}
