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

use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};

use super::model::Transaction;

/// The previous hash of seal 1.
pub const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

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
    /// Hex SHA-256 of the previous seal ([`GENESIS_HASH`] for seal 1).
    pub prev_hash: String,
    /// Hex SHA-256 over `prev_hash`, the range and the digests (see [`Seal::compute_hash`]).
    pub hash: String,
    /// When it was written (not covered by the hash: it says nothing about the journal).
    pub sealed_at: DateTime<Utc>,
}

impl Seal {
    /// The seal after `previous` (None: the first) over `transactions`, which must be every
    /// committed transaction in `(previous.last_transaction_id, last_transaction_id]`, by id.
    pub fn next(
        previous: Option<&Seal>,
        last_transaction_id: i64,
        transactions: &[Transaction],
        sealed_at: DateTime<Utc>,
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
        seal.hash = seal.compute_hash();
        seal
    }

    /// What `hash` must be, recomputed from the seal's other covered fields.
    pub fn compute_hash(&self) -> String {
        let mut hasher = Sha256::new();
        hasher.update(b"omo-seal-v1");
        field(&mut hasher, self.prev_hash.as_bytes());
        hasher.update(self.seal_no.to_be_bytes());
        hasher.update(self.after_transaction_id.to_be_bytes());
        hasher.update(self.last_transaction_id.to_be_bytes());
        hasher.update(self.digests_bytes());
        hex::encode(hasher.finalize())
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

fn field(hasher: &mut Sha256, bytes: &[u8]) {
    hasher.update((bytes.len() as u64).to_be_bytes());
    hasher.update(bytes);
}

/// Checks one seal against the chain so far (`prev_hash` and `prev_last` of the seal before
/// it, as stored) and against the journal's current rows in its range, by id. Violations come
/// in journal order, so the first names the first transaction that no longer matches.
pub fn check_seal(
    seal: &Seal,
    prev_hash: &str,
    prev_last: i64,
    transactions: &[Transaction],
) -> Vec<String> {
    let mut violations = Vec::new();
    let n = seal.seal_no;
    if seal.prev_hash != prev_hash || seal.after_transaction_id != prev_last {
        violations.push(format!(
            "seal {n} does not follow the seal before it (a seal was altered or removed)"
        ));
    }
    if seal.compute_hash() != seal.hash {
        violations.push(format!("seal {n} was altered: its hash does not match"));
    }
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
        (Seal::next(None, 5, &journal, Utc::now()), journal)
    }

    #[test]
    fn an_untouched_range_checks_clean_and_chains() {
        let (seal, journal) = sealed();
        assert!(check_seal(&seal, GENESIS_HASH, 0, &journal).is_empty());
        let next = Seal::next(Some(&seal), 6, &[transaction(6, 1)], Utc::now());
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
        let violations = check_seal(&seal, GENESIS_HASH, 0, &journal);
        assert_eq!(violations.len(), 2, "{violations:?}");
        assert!(violations[0].starts_with("transaction 2 was altered"));
        assert!(violations[1].starts_with("transaction 4 was altered"));
    }

    #[test]
    fn deleted_and_inserted_transactions_are_named() {
        let (seal, mut journal) = sealed();
        journal.remove(0);
        journal.push(transaction(5, 50));
        let violations = check_seal(&seal, GENESIS_HASH, 0, &journal);
        assert!(violations[0].starts_with("transaction 1 was deleted"));
        assert!(violations[1].starts_with("transaction 5 was inserted"));
    }

    #[test]
    fn an_altered_seal_or_a_broken_link_is_named() {
        let (mut seal, journal) = sealed();
        assert!(
            !check_seal(&seal, "ff", 0, &journal).is_empty(),
            "wrong link"
        );
        seal.last_transaction_id = 9;
        let violations = check_seal(&seal, GENESIS_HASH, 0, &journal);
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
}
