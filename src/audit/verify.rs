//! Verification: walks a chain from its anchor to its signed head and names the first event
//! that does not fit.
//!
//! What it detects (see the README's audit section for the whole picture): an event changed
//! (its hash no longer covers its content), deleted (a gap in `seq`, or a shorter chain than
//! the head says), inserted (an event after the signed head, or before the anchor), a chain
//! rewritten from some event on (the head's MAC, which needs `master.key`), and, given a head
//! kept elsewhere, a rollback of the whole file to an older copy or a rewrite by someone
//! holding the key (the kept head's event must still be there, unchanged).

use super::hex;
use crate::crypto::AuditKey;
use crate::store::Error;
use crate::store::audit::{
    COLUMNS, GENESIS, Head, HeadRow, SignedHead, StoredEvent, canonical, chain_hash, for_each,
    from_row, head_row, signed_head, signed_head_of,
};
use rusqlite::{Connection, OptionalExtension};

/// A chain that verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainReport {
    /// `local`, or `POP <id>` for a chain replicated from another POP.
    pub name: String,
    pub events: u64,
    pub head: Head,
    /// What the kept head (`--head`) showed, if one was given for this chain.
    pub kept: Option<String>,
    /// Events after the signed head: only in a chain copied from another POP, whose newest
    /// events can arrive before the head that covers them.
    pub unsigned_tail: u64,
}

/// The first thing that does not fit, naming its event where there is one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{chain}: {message}")]
pub struct Finding {
    pub chain: String,
    /// The event it concerns (its seq).
    pub seq: Option<i64>,
    pub message: String,
}

struct Walk<'a> {
    name: String,
    key: &'a AuditKey,
    signed: Option<SignedHead>,
    kept: Option<&'a SignedHead>,
    /// A copy of another POP's chain: it starts at the first event received, and events past
    /// the signed head are a tail still to be covered, not an insertion.
    tail_allowed: bool,
    expected: i64,
    prev: [u8; 32],
    events: u64,
    tail: u64,
    /// The hash of the event at the signed head, and at the kept head, as walked.
    head_hash: Option<[u8; 32]>,
    kept_hash: Option<[u8; 32]>,
    found: Option<Finding>,
}

/// Stops the walk over rows once a finding is recorded.
const STOP: &str = "verification stopped at a finding";

impl Walk<'_> {
    fn finding(&mut self, seq: Option<i64>, message: String) -> Error {
        self.found = Some(Finding {
            chain: self.name.clone(),
            seq,
            message,
        });
        Error::Rejected(STOP.into())
    }

    fn step(&mut self, e: StoredEvent) -> Result<(), Error> {
        if self.tail_allowed && self.events == 0 {
            // A copy verifies from the first event it received.
            self.expected = e.seq;
            self.prev = e.prev_hash.as_slice().try_into().unwrap_or(GENESIS);
        }
        let Some(head) = self.signed.as_ref().map(|s| s.head) else {
            if self.tail_allowed {
                return self.next(e);
            }
            return Err(self.finding(
                Some(e.seq),
                format!(
                    "event {} exists but the chain has no signed head: the head row was removed",
                    e.seq
                ),
            ));
        };
        if e.seq < self.expected {
            return Err(self.finding(
                Some(e.seq),
                format!(
                    "event {} comes before the chain's first kept event ({}): it was inserted",
                    e.seq, head.anchor_seq
                ),
            ));
        }
        if e.seq > head.seq && !self.tail_allowed {
            return Err(self.finding(
                Some(e.seq),
                format!(
                    "event {} comes after the signed head (event {}): it was inserted",
                    e.seq, head.seq
                ),
            ));
        }
        self.next(e)
    }

    /// `e` must be the next event, follow the one before, and hash to what it says.
    fn next(&mut self, e: StoredEvent) -> Result<(), Error> {
        if e.seq != self.expected {
            let expected = self.expected;
            return Err(self.finding(
                Some(expected),
                format!(
                    "event {expected} is missing (the next stored event is {}): it was deleted",
                    e.seq
                ),
            ));
        }
        if e.prev_hash[..] != self.prev[..] {
            let message = format!(
                "event {} does not follow the event before it (its previous hash is {}, the chain's is {}): events before it were replaced",
                e.seq,
                short(&e.prev_hash),
                short(&self.prev)
            );
            return Err(self.finding(Some(e.seq), message));
        }
        let hash = chain_hash(&self.prev, &canonical(e.seq, e.time, &e.data));
        if e.hash[..] != hash[..] {
            return Err(self.finding(
                Some(e.seq),
                format!(
                    "event {} was changed: its content does not match its hash",
                    e.seq
                ),
            ));
        }
        if self.signed.as_ref().is_some_and(|s| s.head.seq == e.seq) {
            self.head_hash = Some(hash);
        }
        if self.signed.as_ref().is_some_and(|s| e.seq > s.head.seq) {
            self.tail += 1;
        }
        if self.kept.is_some_and(|k| k.head.seq == e.seq) {
            self.kept_hash = Some(hash);
        }
        self.prev = hash;
        self.expected += 1;
        self.events += 1;
        Ok(())
    }

    fn finish(&mut self) -> Result<ChainReport, Error> {
        let Some(head) = self.signed.as_ref().map(|s| s.head) else {
            return Ok(ChainReport {
                name: self.name.clone(),
                events: self.events,
                head: Head::EMPTY,
                kept: None,
                unsigned_tail: self.tail,
            });
        };
        if self.expected <= head.seq {
            let expected = self.expected;
            let missing = if expected == head.seq {
                format!("event {expected} is missing")
            } else {
                format!("events {expected} to {} are missing", head.seq)
            };
            return Err(self.finding(
                Some(expected),
                format!(
                    "{missing}: the signed head ends at event {}, the stored events at {}; they were deleted",
                    head.seq,
                    expected - 1
                ),
            ));
        }
        if head.seq >= head.anchor_seq && self.head_hash != Some(head.hash) {
            return Err(self.finding(
                Some(head.seq),
                format!("event {} does not match the signed head", head.seq),
            ));
        }
        let kept = match self.kept {
            None => None,
            Some(k) => Some(self.check_kept(k, head)?),
        };
        Ok(ChainReport {
            name: self.name.clone(),
            events: self.events,
            head,
            kept,
            unsigned_tail: self.tail,
        })
    }

    fn check_kept(&mut self, k: &SignedHead, head: Head) -> Result<String, Error> {
        if !self.key.verify(&k.head.mac_message(), &k.mac) {
            return Err(self.finding(
                None,
                "the kept head does not verify with this vault's master.key: it is not a head of this vault's trail, or it was altered".into(),
            ));
        }
        if k.head.seq > head.seq {
            return Err(self.finding(
                Some(head.seq + 1),
                format!(
                    "the kept head is at event {}, but this chain ends at event {}: events {} to {} were removed, or the database was rolled back to an older copy",
                    k.head.seq,
                    head.seq,
                    head.seq + 1,
                    k.head.seq
                ),
            ));
        }
        if k.head.seq < head.anchor_seq {
            return Ok(format!(
                "the kept head (event {}) is older than the first kept event ({}); retention removed it, so it could not be compared",
                k.head.seq, head.anchor_seq
            ));
        }
        if self.kept_hash == Some(k.head.hash) {
            Ok(format!("event {} matches the kept head", k.head.seq))
        } else {
            Err(self.finding(
                Some(k.head.seq),
                format!(
                    "event {} differs from the kept head: the chain was rewritten from there on (by someone holding master.key)",
                    k.head.seq
                ),
            ))
        }
    }
}

fn short(b: &[u8]) -> String {
    let h = hex(b);
    h[..h.len().min(12)].to_owned()
}

/// Walks one chain: `rows` feeds it the events in seq order.
fn verify_chain(
    name: String,
    key: &AuditKey,
    signed: Option<SignedHead>,
    kept: Option<&SignedHead>,
    tail_allowed: bool,
    rows: impl FnOnce(&mut dyn FnMut(StoredEvent) -> Result<(), Error>) -> Result<(), Error>,
) -> Result<ChainReport, Finding> {
    if let Some(s) = &signed
        && !key.verify(&s.head.mac_message(), &s.mac)
    {
        return Err(Finding {
            chain: name,
            seq: Some(s.head.seq),
            message: format!(
                "the signed head (event {}) does not verify with this vault's master.key: the head row was edited, or the chain rewritten by someone without the key",
                s.head.seq
            ),
        });
    }
    let (expected, prev) = match &signed {
        Some(s) => (s.head.anchor_seq, s.head.anchor_prev),
        None => (1, GENESIS),
    };
    let mut walk = Walk {
        name: name.clone(),
        key,
        signed,
        kept,
        tail_allowed,
        expected,
        prev,
        events: 0,
        tail: 0,
        head_hash: None,
        kept_hash: None,
        found: None,
    };
    let walked = rows(&mut |e| walk.step(e)).and_then(|()| walk.finish());
    if let Some(f) = walk.found.take() {
        return Err(f);
    }
    walked.map_err(|e| Finding {
        chain: name,
        seq: None,
        message: format!("cannot read the trail: {e}"),
    })
}

fn table_exists(conn: &Connection, name: &str) -> Result<bool, Error> {
    Ok(conn
        .prepare("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?1")?
        .query_row([name], |_| Ok(()))
        .optional()?
        .is_some())
}

/// Verifies this vault's own chain (against `kept`, a head kept elsewhere, if given) and every
/// chain copied from another POP (`audit_peer`, Commercial backups), reading one snapshot.
pub fn verify_all(
    conn: &Connection,
    key: &AuditKey,
    kept: Option<&SignedHead>,
) -> Result<Vec<ChainReport>, Finding> {
    let fail = |e: Error| Finding {
        chain: "local".into(),
        seq: None,
        message: format!("cannot read the trail: {e}"),
    };
    let tx = conn.unchecked_transaction().map_err(|e| fail(e.into()))?;
    let signed = signed_head(&tx).map_err(fail)?;
    let mut reports = vec![verify_chain(
        "local".into(),
        key,
        signed,
        kept,
        false,
        |f| for_each(&tx, f),
    )?];
    if table_exists(&tx, "audit_peer").map_err(fail)? {
        let origins: Vec<String> = tx
            .prepare("SELECT DISTINCT origin FROM audit_peer ORDER BY origin")
            .and_then(|mut s| s.query_map([], |r| r.get(0))?.collect())
            .map_err(|e| fail(e.into()))?;
        for origin in origins {
            let signed = peer_head(&tx, &origin).map_err(fail)?;
            let name = format!("POP {origin}");
            reports.push(verify_chain(name, key, signed, None, true, |f| {
                let mut stmt = tx.prepare(&format!(
                    "SELECT {COLUMNS} FROM audit_peer WHERE origin = ?1 ORDER BY seq"
                ))?;
                let mut rows = stmt.query([&origin])?;
                while let Some(r) = rows.next()? {
                    f(from_row(r)?)?;
                }
                Ok(())
            })?);
        }
    }
    drop(tx);
    Ok(reports)
}

/// The last head received with another POP's chain.
fn peer_head(conn: &Connection, origin: &str) -> Result<Option<SignedHead>, Error> {
    if !table_exists(conn, "audit_peer_head")? {
        return Ok(None);
    }
    let row: Option<HeadRow> = conn
        .prepare(
            "SELECT anchor_seq, anchor_prev, seq, hash, time, mac FROM audit_peer_head WHERE origin = ?1",
        )?
        .query_row([origin], head_row)
        .optional()?;
    row.map(signed_head_of).transpose()
}
