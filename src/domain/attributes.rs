//! A member's attributes (UpdateMember, `omo import members`): a small map of string to string
//! that segments read. Bounded like everything else: a member's row stays small however a
//! client uses it.

use std::collections::BTreeMap;

use super::FieldViolation;

/// Most attributes a member has.
pub const MAX_ATTRIBUTES: usize = 32;
/// Longest key, in characters (`[a-z0-9_.]`).
pub const MAX_KEY_CHARS: usize = 64;
/// Longest value, in characters.
pub const MAX_VALUE_CHARS: usize = 256;

/// Every problem of `attributes`, each naming its field under `field` (`attributes[key]`).
pub fn violations(field: &str, attributes: &BTreeMap<String, String>) -> Vec<FieldViolation> {
    let mut out = Vec::new();
    if attributes.len() > MAX_ATTRIBUTES {
        out.push(FieldViolation::new(
            field,
            format!("at most {MAX_ATTRIBUTES} attributes"),
        ));
    }
    for (key, value) in attributes {
        let entry = format!("{field}[{key}]");
        if !is_key(key) {
            out.push(FieldViolation::new(
                &entry,
                format!("key must be 1-{MAX_KEY_CHARS} characters of [a-z0-9_.]"),
            ));
        }
        if value.chars().count() > MAX_VALUE_CHARS {
            out.push(FieldViolation::new(
                &entry,
                format!("value must be at most {MAX_VALUE_CHARS} characters"),
            ));
        } else if value.chars().any(char::is_control) {
            out.push(FieldViolation::new(
                &entry,
                "value must not contain control characters",
            ));
        }
    }
    out
}

fn is_key(key: &str) -> bool {
    (1..=MAX_KEY_CHARS).contains(&key.len())
        && key
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'.')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn good_attributes_pass() {
        let good = map(&[("segment", "gold"), ("pref.store_1", ""), ("a", "x")]);
        assert!(violations("attributes", &good).is_empty());
        let full: BTreeMap<String, String> = (0..MAX_ATTRIBUTES)
            .map(|i| (format!("k{i}"), "v".repeat(MAX_VALUE_CHARS)))
            .collect();
        assert!(violations("attributes", &full).is_empty());
    }

    #[test]
    fn each_bad_entry_is_named() {
        let long_key = "k".repeat(MAX_KEY_CHARS + 1);
        let bad = map(&[
            ("Upper", "x"),
            ("", "x"),
            (&long_key, "x"),
            ("ok", &"v".repeat(MAX_VALUE_CHARS + 1)),
            ("ctl", "a\nb"),
        ]);
        let fields: Vec<String> = violations("member.attributes", &bad)
            .into_iter()
            .map(|v| v.field)
            .collect();
        assert_eq!(
            fields,
            [
                "member.attributes[]".to_string(),
                "member.attributes[Upper]".into(),
                "member.attributes[ctl]".into(),
                format!("member.attributes[{long_key}]"),
                "member.attributes[ok]".into(),
            ]
        );
    }

    #[test]
    fn too_many_attributes() {
        let many: BTreeMap<String, String> = (0..=MAX_ATTRIBUTES)
            .map(|i| (format!("k{i}"), String::new()))
            .collect();
        let found = violations("attributes", &many);
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].field, "attributes");
    }
}
