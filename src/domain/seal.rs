//! Tamper evidence for the journal: a hash chain of seals.
//!
//! A background sealer (engine `sealer.rs`) covers the journal in commit order with seals. Seal
//! `n` covers the transaction ids in `(after_transaction_id, last_transaction_id]`: it keeps
//! each transaction's id with the SHA-256 of its canonical form ([`transaction_digest`]), and
//! its own hash covers the previous seal's hash, its range and those digests. Changing a
//! sealed transaction or posting, deleting one or slipping one into a sealed range shows as a
//! digest that no longer matches; changing a seal breaks its hash or the next seal's link.
//! Rewriting the whole chain consistently is what an external copy of the newest hash (which
//! `omo verify` prints) guards against.
//!
//! With a [`SealKey`] (kept outside the database) a seal is keyed: its hash is the
//! HMAC-SHA256 under the key of what a plain seal hashes, stored as [`KEYED_PREFIX`] + hex, so
//! whoever can write the database but has no key cannot make a keyed seal. A chain switches
//! from plain to keyed once, when a key is first given, and never back: a plain seal after a
//! keyed one is a chain re-made without the key ([`check_seal`] names it).

use std::fmt;

use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

use super::model::Transaction;

/// The previous hash of seal 1.
pub const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// How a keyed seal's stored hash begins (a plain seal's is bare hex): the hash says itself
/// which kind of seal it is, so the table needs no column for it.
pub const KEYED_PREFIX: &str = "hmac-sha256:";

/// Fewest bytes a seal key has: as many as the HMAC-SHA256 it keys.
pub const MIN_KEY_BYTES: usize = 32;

type HmacSha256 = Hmac<Sha256>;

/// The HMAC-SHA256 key of keyed seals, kept outside the database. `Debug` shows none of it, so
/// that no log or error message can carry it.
#[derive(Clone)]
pub struct SealKey(Vec<u8>);

impl SealKey {
    /// The key made of `bytes`, as they are; None when they are fewer than [`MIN_KEY_BYTES`].
    pub fn new(bytes: Vec<u8>) -> Option<SealKey> {
        (bytes.len() >= MIN_KEY_BYTES).then_some(SealKey(bytes))
    }

    fn mac(&self) -> HmacSha256 {
        HmacSha256::new_from_slice(&self.0).expect("HMAC takes a key of any length")
    }
}

impl fmt::Debug for SealKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SealKey(<redacted>)")
    }
}

/// Whether a stored seal hash is a keyed seal's.
pub fn is_keyed_hash(hash: &str) -> bool {
    hash.starts_with(KEYED_PREFIX)
}

/// One seal of the journal's hash chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seal {
    /// 1, 2, 3, ...: concurrent sealers race for the next number and one wins.
    pub seal_no: i64,
    /// The range covered: ids above this one ...
    pub after_transaction_id: i64,
    /// ... up to and including this one (ids in between that were never committed are gaps).
    pub last_transaction_id: i64,
    /// Each covered transaction's id and the SHA-256 of its canonical form, by id.
    pub digests: Vec<(i64, [u8; 32])>,
    /// The previous seal's `hash` ([`GENESIS_HASH`] for seal 1).
    pub prev_hash: String,
    /// Hex SHA-256 over `prev_hash`, the range and the digests (see [`Seal::compute_hash`]);
    /// for a keyed seal [`KEYED_PREFIX`] and the hex HMAC-SHA256 of the same.
    pub hash: String,
    /// When it was written (not covered by the hash: it says nothing about the journal).
    pub sealed_at: DateTime<Utc>,
}

impl Seal {
    /// The seal after `previous` (None: the first) over `transactions`, which must be every
    /// committed transaction in `(previous.last_transaction_id, last_transaction_id]`, by id;
    /// keyed with `key` if given (see [`Seal::may_follow_with`] first).
    pub fn next(
        previous: Option<&Seal>,
        last_transaction_id: i64,
        transactions: &[Transaction],
        sealed_at: DateTime<Utc>,
        key: Option<&SealKey>,
    ) -> Seal {
        let (seal_no, after_transaction_id, prev_hash) = match previous {
            Some(seal) => (
                seal.seal_no + 1,
                seal.last_transaction_id,
                seal.hash.clone(),
            ),
            None => (1, 0, GENESIS_HASH.to_string()),
        };
        debug_assert!(
            transactions
                .iter()
                .all(|t| t.transaction_id > after_transaction_id
                    && t.transaction_id <= last_transaction_id),
            "a seal covers only its own range"
        );
        let mut seal = Seal {
            seal_no,
            after_transaction_id,
            last_transaction_id,
            digests: transactions
                .iter()
                .map(|t| (t.transaction_id, transaction_digest(t)))
                .collect(),
            prev_hash,
            hash: String::new(),
            sealed_at,
        };
        seal.hash = match key {
            Some(key) => seal.keyed_hash(key),
            None => seal.compute_hash(),
        };
        seal
    }

    /// What a plain seal's `hash` must be, recomputed from its other covered fields.
    pub fn compute_hash(&self) -> String {
        hex::encode(Sha256::digest(self.covered_bytes()))
    }

    /// What a keyed seal's `hash` must be under `key`.
    pub fn keyed_hash(&self, key: &SealKey) -> String {
        let mut mac = key.mac();
        mac.update(&self.covered_bytes());
        format!("{KEYED_PREFIX}{}", hex::encode(mac.finalize().into_bytes()))
    }

    pub fn is_keyed(&self) -> bool {
        is_keyed_hash(&self.hash)
    }

    /// Whether this keyed seal's hash is the HMAC under `key` (compared in constant time).
    fn matches_key(&self, key: &SealKey) -> bool {
        let Some(Ok(tag)) = self.hash.strip_prefix(KEYED_PREFIX).map(hex::decode) else {
            return false;
        };
        let mut mac = key.mac();
        mac.update(&self.covered_bytes());
        mac.verify_slice(&tag).is_ok()
    }

    /// Whether a sealer with `key` (or none) may append after this seal: after a keyed seal
    /// only with the key it was made with, since a plain seal there, or one under another
    /// key, would break the chain for good. Err says why not.
    pub fn may_follow_with(&self, key: Option<&SealKey>) -> Result<(), String> {
        let n = self.seal_no;
        match key {
            _ if !self.is_keyed() => Ok(()),
            None => Err(format!(
                "seal {n} is keyed: the chain goes on only with its seal key (--seal-key-file)"
            )),
            Some(key) if !self.matches_key(key) => Err(format!(
                "the seal key does not match seal {n}: it is not the key the chain was sealed \
                 with, or that seal was altered"
            )),
            Some(_) => Ok(()),
        }
    }

    /// What the hash covers: the previous hash, the seal number, the range and the digests,
    /// each fixed-width or length-prefixed.
    fn covered_bytes(&self) -> Vec<u8> {
        let digests = self.digests_bytes();
        let mut bytes = Vec::with_capacity(64 + self.prev_hash.len() + digests.len());
        bytes.extend_from_slice(b"omo-seal-v1");
        bytes.extend_from_slice(&(self.prev_hash.len() as u64).to_be_bytes());
        bytes.extend_from_slice(self.prev_hash.as_bytes());
        bytes.extend_from_slice(&self.seal_no.to_be_bytes());
        bytes.extend_from_slice(&self.after_transaction_id.to_be_bytes());
        bytes.extend_from_slice(&self.last_transaction_id.to_be_bytes());
        bytes.extend_from_slice(&digests);
        bytes
    }

    /// The digests as stored: per transaction its id (8 bytes, big-endian) and its digest.
    pub fn digests_bytes(&self) -> Vec<u8> {
        let mut bytes = Vec::with_capacity(self.digests.len() * DIGEST_RECORD);
        for (transaction_id, digest) in &self.digests {
            bytes.extend_from_slice(&transaction_id.to_be_bytes());
            bytes.extend_from_slice(digest);
        }
        bytes
    }

    /// Reads stored digests back; None when their length is not a whole number of records.
    pub fn digests_from_bytes(bytes: &[u8]) -> Option<Vec<(i64, [u8; 32])>> {
        if !bytes.len().is_multiple_of(DIGEST_RECORD) {
            return None;
        }
        let records = bytes.chunks_exact(DIGEST_RECORD).map(|record| {
            let (id, digest) = record.split_at(8);
            let id = i64::from_be_bytes(id.try_into().expect("8 bytes"));
            (id, digest.try_into().expect("32 bytes"))
        });
        Some(records.collect())
    }
}

/// Bytes per stored digest: an 8-byte id and a 32-byte SHA-256.
const DIGEST_RECORD: usize = 40;

/// SHA-256 of a transaction's canonical form: every stored column of the transaction and of
/// its postings in `posting_no` order, each field length-prefixed (so no two transactions
/// serialise alike), instants as microseconds since the epoch, metadata sorted by key.
/// `posting_no` itself only orders the postings: renumbering them without reordering them
/// changes nothing a reader sees.
pub fn transaction_digest(transaction: &Transaction) -> [u8; 32] {
    let mut hasher = Sha256::new();
    hasher.update(b"omo-transaction-v1");
    hasher.update(transaction.transaction_id.to_be_bytes());
    field(&mut hasher, transaction.kind.as_bytes());
    field(&mut hasher, transaction.member_id.as_bytes());
    hasher.update(transaction.occurred_at.timestamp_micros().to_be_bytes());
    hasher.update(transaction.recorded_at.timestamp_micros().to_be_bytes());
    match transaction.channel {
        Some(channel) => field(&mut hasher, channel.as_str().as_bytes()),
        None => hasher.update(u64::MAX.to_be_bytes()),
    }
    field(&mut hasher, transaction.store_id.as_bytes());
    field(&mut hasher, transaction.order_id.as_bytes());
    hasher.update((transaction.metadata.len() as u64).to_be_bytes());
    for (key, value) in &transaction.metadata {
        field(&mut hasher, key.as_bytes());
        field(&mut hasher, value.as_bytes());
    }
    hasher.update((transaction.postings.len() as u64).to_be_bytes());
    for posting in &transaction.postings {
        field(&mut hasher, posting.from_account.as_bytes());
        field(&mut hasher, posting.to_account.as_bytes());
        field(&mut hasher, posting.asset.as_bytes());
        hasher.update(posting.amount.to_be_bytes());
    }
    hasher.finalize().into()
}

/// A plain seal's hash must match and follow a plain seal; a keyed seal's must match the key,
/// when there is one.
fn hash_violations(seal: &Seal, prev_hash: &str, key: Option<&SealKey>) -> Vec<String> {
    let n = seal.seal_no;
    let mut violations = Vec::new();
    if seal.is_keyed() {
        if key.is_some_and(|key| !seal.matches_key(key)) {
            violations.push(format!(
                "seal {n} does not match the seal key: it was forged or altered, or the key is \
                 not the one it was sealed with"
            ));
        }
        return violations;
    }
    if is_keyed_hash(prev_hash) {
        violations.push(format!(
            "seal {n} is plain after a keyed seal: a keyed chain never goes back to plain, so \
             it was re-made without the seal key"
        ));
    }
    if seal.compute_hash() != seal.hash {
        violations.push(format!("seal {n} was altered: its hash does not match"));
    }
    violations
}

/// With the key, the chain ends in a keyed seal: a plain newest seal is a chain re-made
/// without the key, from the last plain seal or from the start (or one no server has sealed
/// with the key yet).
pub fn check_head(newest: Option<&Seal>, key: Option<&SealKey>) -> Option<String> {
    let newest = newest.filter(|seal| key.is_some() && !seal.is_keyed())?;
    Some(format!(
        "the newest seal, {}, is plain: with a seal key the chain ends in keyed seals, so it \
         was re-made without the key (or no server has sealed with the key yet)",
        newest.seal_no
    ))
}

fn field(hasher: &mut Sha256, bytes: &[u8]) {
    hasher.update((bytes.len() as u64).to_be_bytes());
    hasher.update(bytes);
}

/// Checks one seal against the chain so far (`prev_hash` and `prev_last` of the seal before
/// it, as stored) and against the journal's current rows in its range, by id. A keyed seal's
/// hash is checked only with `key`: without it, its link and digests still are. Violations
/// come in journal order, so the first names the first transaction that no longer matches.
pub fn check_seal(
    seal: &Seal,
    prev_hash: &str,
    prev_last: i64,
    key: Option<&SealKey>,
    transactions: &[Transaction],
) -> Vec<String> {
    let mut violations = Vec::new();
    let n = seal.seal_no;
    if seal.prev_hash != prev_hash || seal.after_transaction_id != prev_last {
        violations.push(format!(
            "seal {n} does not follow the seal before it (a seal was altered or removed)"
        ));
    }
    violations.extend(hash_violations(seal, prev_hash, key));
    let mut sealed = seal.digests.iter().peekable();
    let mut current = transactions.iter().peekable();
    loop {
        match (sealed.peek(), current.peek()) {
            (None, None) => break,
            (Some((id, _)), None) => {
                violations.push(format!("transaction {id} was deleted (sealed by seal {n})"));
                sealed.next();
            }
            (None, Some(t)) => {
                let id = t.transaction_id;
                violations.push(format!(
                    "transaction {id} was inserted into the range of seal {n} after it was sealed"
                ));
                current.next();
            }
            (Some((sealed_id, digest)), Some(t)) => {
                let id = t.transaction_id;
                if *sealed_id < id {
                    violations.push(format!(
                        "transaction {sealed_id} was deleted (sealed by seal {n})"
                    ));
                    sealed.next();
                } else if id < *sealed_id {
                    violations.push(format!(
                        "transaction {id} was inserted into the range of seal {n} after it was sealed"
                    ));
                    current.next();
                } else {
                    if transaction_digest(t) != *digest {
                        violations.push(format!(
                            "transaction {id} was altered: it no longer matches seal {n}"
                        ));
                    }
                    sealed.next();
                    current.next();
                }
            }
        }
    }
    violations
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use chrono::TimeZone;

    use super::*;
    use crate::domain::model::{Channel, Posting};

    fn transaction(id: i64, amount: i64) -> Transaction {
        let at = Utc.with_ymd_and_hms(2026, 4, 1, 3, 0, 0).unwrap();
        Transaction {
            transaction_id: id,
            kind: "earn".into(),
            member_id: "m1".into(),
            occurred_at: at,
            recorded_at: at,
            channel: Some(Channel::Store),
            store_id: "shibuya".into(),
            order_id: format!("o{id}"),
            postings: vec![Posting {
                from_account: "program:issued".into(),
                to_account: "member:m1".into(),
                asset: "PTS".into(),
                amount,
            }],
            metadata: BTreeMap::from([("note".to_string(), "x".to_string())]),
        }
    }

    fn sealed() -> (Seal, Vec<Transaction>) {
        let journal = vec![transaction(1, 10), transaction(2, 20), transaction(4, 40)];
        (Seal::next(None, 5, &journal, Utc::now(), None), journal)
    }

    #[test]
    fn an_untouched_range_checks_clean_and_chains() {
        let (seal, journal) = sealed();
        assert!(check_seal(&seal, GENESIS_HASH, 0, None, &journal).is_empty());
        let next = Seal::next(Some(&seal), 6, &[transaction(6, 1)], Utc::now(), None);
        assert_eq!(
            (next.seal_no, next.after_transaction_id),
            (2, 5),
            "contiguous"
        );
        assert_eq!(next.prev_hash, seal.hash);
        let bytes = seal.digests_bytes();
        assert_eq!(Seal::digests_from_bytes(&bytes), Some(seal.digests.clone()));
        assert_eq!(Seal::digests_from_bytes(&bytes[1..]), None);
    }

    #[test]
    fn the_first_changed_transaction_is_named_first() {
        let (seal, mut journal) = sealed();
        journal[1].postings[0].amount += 1;
        journal[2].metadata.clear();
        let violations = check_seal(&seal, GENESIS_HASH, 0, None, &journal);
        assert_eq!(violations.len(), 2, "{violations:?}");
        assert!(violations[0].starts_with("transaction 2 was altered"));
        assert!(violations[1].starts_with("transaction 4 was altered"));
    }

    #[test]
    fn deleted_and_inserted_transactions_are_named() {
        let (seal, mut journal) = sealed();
        journal.remove(0);
        journal.push(transaction(5, 50));
        let violations = check_seal(&seal, GENESIS_HASH, 0, None, &journal);
        assert!(violations[0].starts_with("transaction 1 was deleted"));
        assert!(violations[1].starts_with("transaction 5 was inserted"));
    }

    #[test]
    fn an_altered_seal_or_a_broken_link_is_named() {
        let (mut seal, journal) = sealed();
        assert!(
            !check_seal(&seal, "ff", 0, None, &journal).is_empty(),
            "wrong link"
        );
        seal.last_transaction_id = 9;
        let violations = check_seal(&seal, GENESIS_HASH, 0, None, &journal);
        assert_eq!(violations, ["seal 1 was altered: its hash does not match"]);
    }

    #[test]
    fn every_field_is_covered() {
        let base = transaction(1, 10);
        let digest = transaction_digest(&base);
        let mut changed = base.clone();
        changed.channel = None;
        assert_ne!(transaction_digest(&changed), digest);
        let mut changed = base.clone();
        changed.store_id = "umeda".into();
        assert_ne!(transaction_digest(&changed), digest);
        let mut changed = base;
        changed.recorded_at += chrono::Duration::microseconds(1);
        assert_ne!(transaction_digest(&changed), digest);
    }

    fn key(byte: u8) -> SealKey {
        SealKey::new(vec![byte; MIN_KEY_BYTES]).expect("32 bytes")
    }

    /// A seal of fixed content, so that its hashes can be computed independently.
    fn fixed_seal() -> Seal {
        Seal {
            seal_no: 1,
            after_transaction_id: 0,
            last_transaction_id: 5,
            digests: vec![(1, [7; 32]), (4, [9; 32])],
            prev_hash: GENESIS_HASH.into(),
            hash: String::new(),
            sealed_at: Utc::now(),
        }
    }

    #[test]
    fn a_plain_seal_hashes_as_before_and_a_keyed_one_is_the_hmac_of_the_same() {
        // Both computed with Python's hashlib and hmac over the documented layout: seals stored
        // before keys existed still verify, and the keyed hash is HMAC-SHA256(key, that).
        let seal = fixed_seal();
        assert_eq!(
            seal.compute_hash(),
            "e714b147db6f7bd4a6a1e5e957eb282927b829f45ffe7cda65b082e9bd7505ea"
        );
        let key = SealKey::new((0..32).collect()).expect("32 bytes");
        assert_eq!(
            seal.keyed_hash(&key),
            "hmac-sha256:382d40c19914efe01cb5300f1df760355e9b1a7192c179bc01d3c605fae6672d"
        );
    }

    #[test]
    fn a_seal_key_is_at_least_32_bytes_and_never_shown() {
        assert!(SealKey::new(vec![1; MIN_KEY_BYTES - 1]).is_none());
        let shown = format!("{:?}", key(0x41));
        assert_eq!(shown, "SealKey(<redacted>)");
    }

    #[test]
    fn a_keyed_seal_checks_only_with_its_key() {
        let journal = vec![transaction(1, 10), transaction(2, 20)];
        let seal = Seal::next(None, 2, &journal, Utc::now(), Some(&key(1)));
        assert!(seal.is_keyed() && seal.hash.starts_with(KEYED_PREFIX));
        assert_eq!(seal.hash, seal.keyed_hash(&key(1)));
        assert_ne!(seal.keyed_hash(&key(2)), seal.hash);
        let check = |key: Option<&SealKey>, journal: &[Transaction]| {
            check_seal(&seal, GENESIS_HASH, 0, key, journal)
        };

        assert!(check(Some(&key(1)), &journal).is_empty());
        assert!(
            check(None, &journal).is_empty(),
            "not checkable, not broken"
        );
        assert_eq!(
            check(Some(&key(2)), &journal),
            [
                "seal 1 does not match the seal key: it was forged or altered, or the key is not \
              the one it was sealed with"
            ]
        );
        let mut altered = journal.clone();
        altered[0].postings[0].amount += 1;
        let without_key = check(None, &altered);
        assert_eq!(without_key.len(), 1, "{without_key:?}");
        assert!(without_key[0].starts_with("transaction 1 was altered"));
    }

    #[test]
    fn a_forged_keyed_hash_does_not_match() {
        let journal = vec![transaction(1, 10)];
        let mut seal = Seal::next(None, 1, &journal, Utc::now(), Some(&key(1)));
        // Whoever has no key can only guess a tag, or put a plain hash behind the prefix.
        seal.hash = format!("{KEYED_PREFIX}{}", seal.compute_hash());
        assert_eq!(
            check_seal(&seal, GENESIS_HASH, 0, Some(&key(1)), &journal).len(),
            1
        );
        seal.hash = format!("{KEYED_PREFIX}not hex");
        assert_eq!(
            check_seal(&seal, GENESIS_HASH, 0, Some(&key(1)), &journal).len(),
            1
        );
    }

    #[test]
    fn a_chain_goes_from_plain_to_keyed_and_never_back() {
        let plain = Seal::next(None, 1, &[transaction(1, 10)], Utc::now(), None);
        let keyed = Seal::next(
            Some(&plain),
            2,
            &[transaction(2, 20)],
            Utc::now(),
            Some(&key(1)),
        );
        assert!(!plain.is_keyed() && keyed.is_keyed());
        assert_eq!(
            keyed.prev_hash, plain.hash,
            "the keyed seal covers the plain one"
        );
        assert_eq!(plain.may_follow_with(Some(&key(1))), Ok(()));
        let after_keyed = [transaction(3, 30)];
        assert!(
            check_seal(&keyed, &plain.hash, 1, Some(&key(1)), &[transaction(2, 20)]).is_empty()
        );

        // A sealer never appends a plain seal, or one under another key, after a keyed one ...
        assert_eq!(keyed.may_follow_with(Some(&key(1))), Ok(()));
        let refused = keyed.may_follow_with(None).unwrap_err();
        assert!(refused.starts_with("seal 2 is keyed"), "{refused}");
        let refused = keyed.may_follow_with(Some(&key(2))).unwrap_err();
        assert!(
            refused.starts_with("the seal key does not match seal 2"),
            "{refused}"
        );

        // ... so a plain one there was made without the key: named with or without it.
        let forged = Seal::next(Some(&keyed), 3, &after_keyed, Utc::now(), None);
        for key in [None, Some(key(1))] {
            let violations = check_seal(&forged, &keyed.hash, 2, key.as_ref(), &after_keyed);
            assert_eq!(
                violations,
                [
                    "seal 3 is plain after a keyed seal: a keyed chain never goes back to plain, so \
                  it was re-made without the seal key"
                ]
            );
        }
    }

    #[test]
    fn with_the_key_the_newest_seal_is_keyed() {
        let plain = Seal::next(None, 1, &[transaction(1, 10)], Utc::now(), None);
        let keyed = Seal::next(
            Some(&plain),
            2,
            &[transaction(2, 20)],
            Utc::now(),
            Some(&key(1)),
        );
        assert_eq!(check_head(Some(&keyed), Some(&key(1))), None);
        assert_eq!(
            check_head(Some(&plain), None),
            None,
            "no key, nothing to expect"
        );
        assert_eq!(check_head(None, Some(&key(1))), None, "nothing sealed yet");
        let violation = check_head(Some(&plain), Some(&key(1))).expect("a plain head");
        assert!(
            violation.starts_with("the newest seal, 1, is plain"),
            "{violation}"
        );
    }
}
