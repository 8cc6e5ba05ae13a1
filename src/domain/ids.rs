//! Identifier and secret generation.

use rand::Rng;
use sha2::{Digest, Sha256};

/// Unambiguous alphabet for codes people read and type: no 0/O, 1/I/L.
pub const CODE_ALPHABET: &[u8] = b"23456789ABCDEFGHJKMNPQRSTUVWXYZ";
/// 13 symbols of a 31-symbol alphabet carry 13 × log2(31) ≈ 64.4 random bits (≥ 60 required).
pub const COUPON_CODE_LEN: usize = 13;

fn random_string(alphabet: &[u8], len: usize) -> String {
    let mut rng = rand::rng();
    (0..len)
        .map(|_| alphabet[rng.random_range(0..alphabet.len())] as char)
        .collect()
}

/// `m_` followed by 16 symbols (≈ 79 random bits): unguessable, URL- and account-name-safe.
pub fn new_member_id() -> String {
    format!(
        "m_{}",
        random_string(b"0123456789abcdefghjkmnpqrstvwxyz", 16)
    )
}

/// `<prefix>_` followed by 12 symbols (≈ 60 random bits): a rule id the admin did not choose.
pub fn new_rule_id(prefix: &str) -> String {
    format!(
        "{prefix}_{}",
        random_string(b"0123456789abcdefghjkmnpqrstvwxyz", 12)
    )
}

/// `rc_` followed by 16 symbols (≈ 79 random bits): a receipt's id, unguessable, so that one
/// member cannot page through another's receipts.
pub fn new_receipt_id() -> String {
    format!(
        "rc_{}",
        random_string(b"0123456789abcdefghjkmnpqrstvwxyz", 16)
    )
}

/// `ev_` followed by 20 symbols (≈ 99 random bits): an event's id, which lets a webhook
/// receiver drop a delivery it has seen.
pub fn new_event_id() -> String {
    format!(
        "ev_{}",
        random_string(b"0123456789abcdefghjkmnpqrstvwxyz", 20)
    )
}

/// `whsec_` followed by 32 symbols (≈ 160 random bits): a webhook's signing secret.
pub fn new_webhook_secret() -> String {
    format!(
        "whsec_{}",
        random_string(b"0123456789abcdefghjkmnpqrstvwxyz", 32)
    )
}

pub fn new_coupon_code() -> String {
    random_string(CODE_ALPHABET, COUPON_CODE_LEN)
}

/// Codes are case-insensitive on input; dashes and spaces people add for readability are ignored.
pub fn normalize_code(input: &str) -> String {
    input
        .chars()
        .filter(|c| !matches!(c, '-' | ' '))
        .flat_map(char::to_uppercase)
        .collect()
}

/// A new API key (≈ 160 random bits). Only its hash is stored.
pub fn new_api_key() -> String {
    format!(
        "omo_{}",
        random_string(b"0123456789abcdefghjkmnpqrstvwxyz", 32)
    )
}

pub fn key_id_of(api_key_hash: &str) -> String {
    format!("k_{}", &api_key_hash[..12])
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn coupon_codes_are_long_enough_and_unambiguous() {
        let bits = COUPON_CODE_LEN as f64 * (CODE_ALPHABET.len() as f64).log2();
        assert!(bits >= 60.0, "{bits} bits");
        let code = new_coupon_code();
        assert_eq!(code.len(), COUPON_CODE_LEN);
        assert!(!code.contains(['0', 'O', '1', 'I', 'L']));
        assert_eq!(normalize_code(&code.to_lowercase()), code);
        assert_eq!(normalize_code("ab-cd 23"), "ABCD23");
    }
}
