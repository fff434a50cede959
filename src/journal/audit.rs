//! The hash chain of the audit log. Each record's hash covers its sequence number, time, kind,
//! body and the previous record's hash, so changing, removing or reordering any record breaks
//! the chain from that record on. [`verify`] walks the chain and names the first broken record.

use sha2::{Digest, Sha256};

/// The `prev_hash` of the first record.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// One audit record as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditRecord {
    pub seq: i64,
    pub at: String,
    pub kind: String,
    pub body: String,
    pub prev_hash: String,
    pub hash: String,
}

/// The hash of a record: SHA-256 over its fields and the previous hash, length-prefixed so no
/// two different records hash the same input.
pub fn hash(seq: i64, at: &str, kind: &str, body: &str, prev_hash: &str) -> String {
    let mut h = Sha256::new();
    for part in [seq.to_string().as_str(), at, kind, body, prev_hash] {
        h.update((part.len() as u64).to_be_bytes());
        h.update(part.as_bytes());
    }
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// Why a chain is broken at a record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Broken {
    pub seq: i64,
    pub reason: String,
}

impl std::fmt::Display for Broken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "audit record {} is broken: {}", self.seq, self.reason)
    }
}

/// Checks records in sequence order. `Ok(n)` is the number of records checked.
pub fn verify(records: impl IntoIterator<Item = AuditRecord>) -> Result<u64, Broken> {
    let mut prev_hash = GENESIS.to_string();
    let mut n = 0u64;
    for (expected_seq, r) in (1i64..).zip(records) {
        if r.seq != expected_seq {
            return Err(Broken {
                seq: expected_seq,
                reason: format!(
                    "missing: the next record is {} (a record was removed or the log reordered)",
                    r.seq
                ),
            });
        }
        if r.prev_hash != prev_hash {
            return Err(Broken { seq: r.seq, reason: "its prev_hash is not the previous record's hash (a record before it changed or was removed)".into() });
        }
        let want = hash(r.seq, &r.at, &r.kind, &r.body, &r.prev_hash);
        if r.hash != want {
            return Err(Broken {
                seq: r.seq,
                reason: "its contents do not match its hash (it was altered)".into(),
            });
        }
        prev_hash = r.hash;
        n += 1;
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chain(n: i64) -> Vec<AuditRecord> {
        let mut prev = GENESIS.to_string();
        (1..=n)
            .map(|seq| {
                let (at, kind, body) = (
                    "2026-11-20T14:30:00Z".to_string(),
                    "order_intent".to_string(),
                    format!("{{\"n\":{seq}}}"),
                );
                let h = hash(seq, &at, &kind, &body, &prev);
                let r = AuditRecord {
                    seq,
                    at,
                    kind,
                    body,
                    prev_hash: prev.clone(),
                    hash: h.clone(),
                };
                prev = h;
                r
            })
            .collect()
    }

    #[test]
    fn a_good_chain_verifies_and_each_kind_of_tampering_is_named() {
        assert_eq!(verify(chain(5)), Ok(5));
        let mut altered = chain(5);
        altered[2].body = "{\"n\":99}".into();
        assert_eq!(verify(altered).unwrap_err().seq, 3);
        let mut removed = chain(5);
        removed.remove(3);
        assert_eq!(verify(removed).unwrap_err().seq, 4);
        let mut rehashed = chain(5);
        rehashed[1].body = "{}".into();
        rehashed[1].hash = hash(
            2,
            &rehashed[1].at,
            &rehashed[1].kind,
            "{}",
            &rehashed[1].prev_hash,
        );
        assert_eq!(
            verify(rehashed).unwrap_err().seq,
            3,
            "re-hashing one record breaks the next link"
        );
        let mut last_removed = chain(5);
        last_removed.pop();
        assert_eq!(
            verify(last_removed),
            Ok(4),
            "truncation at the end is only visible against a known count"
        );
    }
}
