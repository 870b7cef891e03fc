//! The audit log of key use: what an entry's hash is, the head's MAC, and
//! verifying the chain. Rows live in the metadata store
//! (`coffer_meta::AuditEntry`); appends from every node serialise on the
//! head row there.
//!
//! **Chain.** Entry `n` stores `hash_n = SHA-256("coffer audit v1\0" ‖
//! hash_{n-1} ‖ n ‖ canonical(entry))`, with `hash_0` 32 zero bytes and
//! `canonical` each field as a 4-byte big-endian length and its bytes. An
//! edited, removed, inserted or reordered entry changes a hash that every
//! later entry depends on.
//!
//! **Head.** The head row keeps the last seq and hash and
//! `HMAC-SHA-256(k, "coffer audit head v1\0" ‖ seq ‖ hash)`, where `k` is a
//! random key stored only wrapped by the root key (setting
//! `audit_mac_key`). Someone who can write the database but not use the root
//! key can recompute hashes after an edit, or cut the tail and move the head
//! back, but cannot make the MAC match: [`AuditLog::verify`] detects both.
//! What it cannot detect is the whole database rolled back to an earlier
//! state of its own (head, MAC and all); keep the output of
//! [`AuditLog::head`] somewhere else to catch that.

use std::fmt;
use std::sync::Arc;

use coffer_crypto::{SecretKey, hmac_sha256_hex, hmac_sha256_verify};
use coffer_meta::{AuditEntry, AuditFilter, AuditHead, AuditRecord, Meta};

use crate::{Result, RootKey, VaultError};

const SETTING: &str = "audit_mac_key";
const ZERO_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";
/// Entries read per page while verifying.
const PAGE: u32 = 1000;

/// The deployment's audit log.
#[derive(Clone)]
pub struct AuditLog {
    meta: Meta,
    mac_key: Arc<SecretKey>,
}

impl fmt::Debug for AuditLog {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AuditLog")
    }
}

/// What [`AuditLog::verify`] found wrong first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuditProblem {
    /// Entry `seq`'s content or hash is not what the chain says: it was
    /// edited, or entries were reordered or inserted before it.
    Altered {
        /// The entry.
        seq: u64,
    },
    /// Entries are missing: `found` follows `expected - 1`.
    Missing {
        /// The seq that should have come next.
        expected: u64,
        /// The seq that came.
        found: u64,
    },
    /// The log ends at `last` but its head says `head`: entries were cut
    /// from (or added to) the end.
    Truncated {
        /// Last entry present.
        last: u64,
        /// Last entry according to the head.
        head: u64,
    },
    /// The head's MAC does not match: the head was rewritten by someone
    /// without the root key.
    HeadForged,
}

impl fmt::Display for AuditProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Altered { seq } => write!(
                f,
                "entry {seq} does not match the chain: it was edited, or entries were reordered or inserted before it"
            ),
            Self::Missing { expected, found } => write!(
                f,
                "entries are missing: entry {found} follows entry {}",
                expected - 1
            ),
            Self::Truncated { last, head } => write!(
                f,
                "the log ends at entry {last} but its head records entry {head}: entries were removed from the end"
            ),
            Self::HeadForged => f.write_str(
                "the head of the log was rewritten by someone without the root key (its MAC does not match)",
            ),
        }
    }
}

/// The result of verifying the whole chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditReport {
    /// Entries checked.
    pub entries: u64,
    /// The head as stored.
    pub head: AuditHead,
    /// The first problem found; `None` when the chain verifies.
    pub problem: Option<AuditProblem>,
}

fn field(out: &mut Vec<u8>, v: &[u8]) {
    let len = u32::try_from(v.len()).unwrap_or(u32::MAX);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(v);
}

/// The hash of entry `seq` made at `at` of `record`, after `prev` (hex).
pub fn entry_hash(prev: &str, seq: u64, at: &str, r: &AuditRecord) -> String {
    let mut b = Vec::with_capacity(256);
    b.extend_from_slice(b"coffer audit v1\0");
    b.extend_from_slice(&hex::decode(prev).unwrap_or_else(|_| prev.as_bytes().to_vec()));
    b.extend_from_slice(&seq.to_be_bytes());
    let key = r.key.map(|k| k.to_string()).unwrap_or_default();
    let version = r.key_version.map(|v| v.to_string()).unwrap_or_default();
    for v in [
        at,
        &r.principal,
        &r.acting_for,
        &r.action,
        &key,
        &version,
        &r.resource,
        &r.outcome,
        &r.detail,
    ] {
        field(&mut b, v.as_bytes());
    }
    coffer_crypto::sha256_hex(&b)
}

fn head_bytes(seq: u64, hash: &str) -> Vec<u8> {
    let mut b = b"coffer audit head v1\0".to_vec();
    b.extend_from_slice(&seq.to_be_bytes());
    b.extend_from_slice(hash.as_bytes());
    b
}

impl AuditLog {
    /// The log of the deployment whose metadata is `meta`; its MAC key is
    /// made on first use and kept wrapped by `root`.
    pub async fn open(meta: Meta, root: &dyn RootKey) -> Result<Self> {
        let fresh = SecretKey::generate();
        let wrapped = hex::encode(root.wrap(fresh.expose()).await?);
        let stored = meta.setting_init(SETTING, &wrapped).await?;
        let stored = hex::decode(stored)
            .map_err(|_| VaultError::Root("the stored audit MAC key is not hex".into()))?;
        let key = SecretKey::from_slice(&root.unwrap(&stored).await?)?;
        Ok(Self {
            meta,
            mac_key: Arc::new(key),
        })
    }

    /// Append `record`; returns the entry as stored.
    pub async fn record(&self, record: &AuditRecord) -> Result<AuditEntry> {
        let key = self.mac_key.clone();
        Ok(self
            .meta
            .append_audit(record, move |seq, at, prev| {
                let hash = entry_hash(prev, seq, at, record);
                let mac = hmac_sha256_hex(&key, &head_bytes(seq, &hash));
                (hash, mac)
            })
            .await?)
    }

    /// Entries matching `filter` after seq `after`, at most `limit`.
    pub async fn list(
        &self,
        filter: &AuditFilter,
        after: u64,
        limit: u32,
    ) -> Result<Vec<AuditEntry>> {
        Ok(self.meta.audit_entries(filter, after, limit).await?)
    }

    /// The head: keep it elsewhere to detect a rollback of the whole
    /// database later.
    pub async fn head(&self) -> Result<AuditHead> {
        Ok(self.meta.audit_head().await?)
    }

    /// Recompute the whole chain and check it against the head.
    pub async fn verify(&self) -> Result<AuditReport> {
        let head = self.meta.audit_head().await?;
        let mut prev = ZERO_HASH.to_string();
        let mut last = 0u64;
        let report = |entries, problem| AuditReport {
            entries,
            head: head.clone(),
            problem,
        };
        loop {
            let page = self.meta.audit_chain(last, PAGE).await?;
            let Some(end) = page.last().map(|e| e.seq) else {
                break;
            };
            for e in page {
                if e.seq != last + 1 {
                    let p = AuditProblem::Missing {
                        expected: last + 1,
                        found: e.seq,
                    };
                    return Ok(report(last, Some(p)));
                }
                if entry_hash(&prev, e.seq, &e.at, &e.record) != e.hash {
                    return Ok(report(last, Some(AuditProblem::Altered { seq: e.seq })));
                }
                prev = e.hash;
                last = e.seq;
            }
            debug_assert_eq!(last, end);
        }
        if head.seq == 0 && last == 0 {
            return Ok(report(0, None));
        }
        if !hmac_sha256_verify(&self.mac_key, &head_bytes(head.seq, &head.hash), &head.mac) {
            return Ok(report(last, Some(AuditProblem::HeadForged)));
        }
        if head.seq != last {
            let p = AuditProblem::Truncated {
                last,
                head: head.seq,
            };
            return Ok(report(last, Some(p)));
        }
        if head.hash != prev {
            return Ok(report(last, Some(AuditProblem::Altered { seq: last })));
        }
        Ok(report(last, None))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::FileRootKey;
    use coffer_testkit::TestMetadata;
    use coffer_types::{Id, Kind};

    fn rec(i: u32, key: Id) -> AuditRecord {
        AuditRecord {
            principal: format!("prn-{}", i % 3),
            acting_for: "usr-alice".into(),
            action: ["wrap", "unwrap", "rotate"][i as usize % 3].into(),
            key: Some(key),
            key_version: Some(1 + i % 2),
            resource: format!("disk-{}", i % 4),
            outcome: "allowed".into(),
            detail: String::new(),
        }
    }

    async fn log_with(n: u32) -> (tempfile::TempDir, TestMetadata, AuditLog, Id) {
        let dir = tempfile::tempdir().unwrap();
        let db = TestMetadata::new(dir.path());
        let meta = Meta::open(db.url()).await.unwrap();
        let root = FileRootKey::load_or_create(&dir.path().join("root.key")).unwrap();
        let log = AuditLog::open(meta, &root).await.unwrap();
        let key = Id::random(Kind::Key);
        for i in 0..n {
            log.record(&rec(i, key)).await.unwrap();
        }
        (dir, db, log, key)
    }

    #[tokio::test]
    async fn an_untouched_log_verifies_and_filters() {
        let (dir, db, log, key) = log_with(0).await;
        let r = log.verify().await.unwrap();
        assert_eq!((r.entries, r.problem), (0, None), "an empty log verifies");
        for i in 0..12 {
            log.record(&rec(i, key)).await.unwrap();
        }
        let r = log.verify().await.unwrap();
        assert_eq!((r.entries, r.problem, r.head.seq), (12, None, 12));
        let f = AuditFilter {
            resource: Some("disk-1".into()),
            ..AuditFilter::default()
        };
        let got = log.list(&f, 0, 100).await.unwrap();
        assert_eq!(
            got.iter().map(|e| e.seq).collect::<Vec<_>>(),
            [2, 6, 10],
            "seqs 2, 6, 10 hold i = 1, 5, 9"
        );
        let f = AuditFilter {
            principal: Some("usr-alice".into()),
            key: Some(key),
            ..AuditFilter::default()
        };
        assert_eq!(
            log.list(&f, 10, 100).await.unwrap().len(),
            2,
            "paging after 10"
        );
        let f = AuditFilter {
            key: Some(Id::random(Kind::Key)),
            ..AuditFilter::default()
        };
        assert!(log.list(&f, 0, 100).await.unwrap().is_empty());
        // The same log through a second handle (another node) chains on.
        let meta2 = Meta::open(db.url()).await.unwrap();
        let root = FileRootKey::load_or_create(&dir.path().join("root.key")).unwrap();
        let log2 = AuditLog::open(meta2, &root).await.unwrap();
        log2.record(&rec(99, key)).await.unwrap();
        assert_eq!(log.verify().await.unwrap().problem, None);
    }

    #[tokio::test]
    async fn concurrent_appends_from_two_handles_make_one_chain() {
        let (dir, db, log, key) = log_with(0).await;
        let meta2 = Meta::open(db.url()).await.unwrap();
        let root = FileRootKey::load_or_create(&dir.path().join("root.key")).unwrap();
        let log2 = AuditLog::open(meta2, &root).await.unwrap();
        let mut tasks = Vec::new();
        for i in 0..40 {
            let l = if i % 2 == 0 {
                log.clone()
            } else {
                log2.clone()
            };
            tasks.push(tokio::spawn(async move { l.record(&rec(i, key)).await }));
        }
        for t in tasks {
            t.await.unwrap().unwrap();
        }
        let r = log.verify().await.unwrap();
        assert_eq!((r.entries, r.problem), (40, None));
    }

    /// Each kind of tampering, done as someone with write access to the
    /// database would, is detected and named.
    #[tokio::test]
    async fn every_kind_of_tampering_is_detected() {
        type Case = (
            &'static str,
            &'static [&'static str],
            fn(&AuditProblem) -> bool,
        );
        let cases: [Case; 6] = [
            (
                "edit an entry",
                &["UPDATE audit_log SET outcome = 'denied' WHERE seq = 4"],
                |p| *p == AuditProblem::Altered { seq: 4 },
            ),
            (
                "edit an entry and its hash",
                &["UPDATE audit_log SET detail = 'x', hash = 'ab' WHERE seq = 4"],
                |p| *p == AuditProblem::Altered { seq: 4 },
            ),
            (
                "remove an entry",
                &["DELETE FROM audit_log WHERE seq = 5"],
                |p| {
                    *p == AuditProblem::Missing {
                        expected: 5,
                        found: 6,
                    }
                },
            ),
            (
                "reorder two entries",
                &[
                    "UPDATE audit_log SET seq = 100 WHERE seq = 3",
                    "UPDATE audit_log SET seq = 3 WHERE seq = 6",
                    "UPDATE audit_log SET seq = 6 WHERE seq = 100",
                ],
                |p| *p == AuditProblem::Altered { seq: 3 },
            ),
            (
                "cut the tail",
                &["DELETE FROM audit_log WHERE seq > 7"],
                |p| *p == AuditProblem::Truncated { last: 7, head: 10 },
            ),
            (
                "cut the tail and move the head back",
                &[
                    "DELETE FROM audit_log WHERE seq > 7",
                    "UPDATE audit_head SET seq = 7, hash = (SELECT hash FROM audit_log WHERE seq = 7)",
                ],
                |p| *p == AuditProblem::HeadForged,
            ),
        ];
        for (what, sql, expect) in cases {
            let (_dir, db, log, _) = log_with(10).await;
            assert_eq!(log.verify().await.unwrap().problem, None, "{what}: before");
            for s in sql {
                db.execute(s);
            }
            let r = log.verify().await.unwrap();
            let p = r.problem.unwrap_or_else(|| panic!("{what}: not detected"));
            assert!(expect(&p), "{what}: found {p:?}");
            assert!(!p.to_string().is_empty());
        }
    }

    /// Someone who knows the hash function (it is public) edits an entry
    /// and recomputes every later hash and the head's hash: only the head's
    /// MAC, which needs the root key, gives it away.
    #[tokio::test]
    async fn a_rewritten_chain_is_caught_by_the_head_mac() {
        let (_dir, db, log, _) = log_with(6).await;
        let entries = log.meta.audit_chain(0, 100).await.unwrap();
        let mut prev = entries[2].hash.clone();
        for e in &entries[3..] {
            let mut r = e.record.clone();
            if e.seq == 4 {
                r.outcome = "denied".into();
                db.execute(&format!(
                    "UPDATE audit_log SET outcome = 'denied' WHERE seq = {}",
                    e.seq
                ));
            }
            let h = entry_hash(&prev, e.seq, &e.at, &r);
            db.execute(&format!(
                "UPDATE audit_log SET hash = '{h}' WHERE seq = {}",
                e.seq
            ));
            prev = h;
        }
        db.execute(&format!("UPDATE audit_head SET hash = '{prev}'"));
        let r = log.verify().await.unwrap();
        assert_eq!(r.problem, Some(AuditProblem::HeadForged));
    }
}
