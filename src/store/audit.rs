//! The audit trail's rows and their hash chain: the SQL, the canonical bytes each hash covers,
//! and the chain head the writer thread keeps. What an event means is `crate::audit`'s.
//!
//! Architecture invariants:
//! - Only the writer thread appends (see `writer`): the chain head lives in a thread-local
//!   there, snapshotted before each write's savepoint and restored if it rolls back, dropped
//!   (reloaded from the database) after a failed commit. So a rolled-back write leaves neither
//!   a gap in `seq` nor an event without its change.
//! - `hash = SHA-256(prev_hash || canonical(event))`, where `canonical` is a fixed, versioned
//!   encoding ([`FORMAT`]) of every stored column but the hashes: any edit of a row changes it.
//! - The signed head (`audit_head`, one row) is written once per commit that appended, with a
//!   MAC under the audit key (`crypto::AuditKey`): it names the first kept event (the anchor:
//!   its seq and the hash before it) and the last one.

use super::Error;
use rusqlite::{Connection, OptionalExtension, params};
use sha2::{Digest, Sha256};
use std::borrow::Cow;
use std::cell::Cell;
use std::collections::BTreeMap;

/// Version of [`canonical`] and [`Head::mac_message`]. A new encoding gets a new number; the
/// old one stays readable for the events written with it.
pub const FORMAT: u8 = 1;
/// The "previous hash" of the first event of a chain.
pub const GENESIS: [u8; 32] = [0; 32];

/// An event's content: everything but its place in the chain (seq, time, hashes).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EventData {
    pub actor_kind: Cow<'static, str>,
    pub actor_id: Option<String>,
    pub action: Cow<'static, str>,
    pub target: Option<String>,
    pub outcome: Cow<'static, str>,
    pub ip: Option<String>,
    pub request_id: Option<String>,
    /// Sorted by key, keys unique (as stored: a JSON object).
    pub details: Vec<(String, String)>,
}

/// An event as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredEvent {
    pub seq: i64,
    /// Milliseconds since the Unix epoch, on the writer's clock.
    pub time: i64,
    pub data: EventData,
    pub prev_hash: Vec<u8>,
    pub hash: Vec<u8>,
}

/// Where a chain starts and ends. `anchor_prev` is the hash before the first kept event
/// ([`GENESIS`] until retention deletes older events).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Head {
    pub anchor_seq: i64,
    pub anchor_prev: [u8; 32],
    pub seq: i64,
    pub hash: [u8; 32],
}

impl Head {
    pub const EMPTY: Head = Head {
        anchor_seq: 1,
        anchor_prev: GENESIS,
        seq: 0,
        hash: GENESIS,
    };

    /// The bytes the head's MAC covers.
    pub fn mac_message(&self) -> Vec<u8> {
        let mut m = Vec::with_capacity(96);
        m.extend_from_slice(b"clavitor-audit-head\0");
        m.push(FORMAT);
        m.extend_from_slice(&self.anchor_seq.to_be_bytes());
        m.extend_from_slice(&self.anchor_prev);
        m.extend_from_slice(&self.seq.to_be_bytes());
        m.extend_from_slice(&self.hash);
        m
    }
}

/// The head row: the head, when it was written, and its MAC.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignedHead {
    pub head: Head,
    pub time: i64,
    pub mac: Vec<u8>,
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    let len = u32::try_from(s.len()).unwrap_or(u32::MAX);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(&s.as_bytes()[..len as usize]);
}

fn put_opt(out: &mut Vec<u8>, s: Option<&str>) {
    match s {
        None => out.push(0),
        Some(s) => {
            out.push(1);
            put_str(out, s);
        }
    }
}

/// The bytes an event's hash covers: a magic, [`FORMAT`], then seq and time (big-endian
/// i64), then each field length-prefixed (u32 big-endian; optional ones after a 0/1 byte),
/// then the details as a count and key/value pairs in key order. Never serde's output, whose
/// order and escaping are not ours to fix.
pub fn canonical(seq: i64, time: i64, e: &EventData) -> Vec<u8> {
    let mut out = Vec::with_capacity(160 + e.details.len() * 32);
    out.extend_from_slice(b"clavitor-audit\0");
    out.push(FORMAT);
    out.extend_from_slice(&seq.to_be_bytes());
    out.extend_from_slice(&time.to_be_bytes());
    put_str(&mut out, &e.actor_kind);
    put_opt(&mut out, e.actor_id.as_deref());
    put_str(&mut out, &e.action);
    put_opt(&mut out, e.target.as_deref());
    put_str(&mut out, &e.outcome);
    put_opt(&mut out, e.ip.as_deref());
    put_opt(&mut out, e.request_id.as_deref());
    let n = u32::try_from(e.details.len()).unwrap_or(u32::MAX);
    out.extend_from_slice(&n.to_be_bytes());
    for (k, v) in e.details.iter().take(n as usize) {
        put_str(&mut out, k);
        put_str(&mut out, v);
    }
    out
}

/// `SHA-256(prev || canonical)`.
pub fn chain_hash(prev: &[u8], canonical: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(prev);
    h.update(canonical);
    h.finalize().into()
}

/// The details as stored: a JSON object (keys sorted).
pub fn details_json(details: &[(String, String)]) -> String {
    let map: BTreeMap<&str, &str> = details
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    serde_json::to_string(&map).expect("a map of strings serialises")
}

/// Reads stored details back; `None` if the text is not an object of strings.
pub fn parse_details(text: &str) -> Option<Vec<(String, String)>> {
    let map: BTreeMap<String, String> = serde_json::from_str(text).ok()?;
    Some(map.into_iter().collect())
}

/// The chain as the writer knows it during and between commits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Chain {
    pub head: Head,
    /// Appended to (or re-anchored) since the head row was last written.
    pub dirty: bool,
}

thread_local! {
    /// On the writer thread: the chain head, `None` until loaded from the database (and again
    /// after a failed commit).
    static CHAIN: Cell<Option<Chain>> = const { Cell::new(None) };
    /// On the writer thread: an append failed in the current group commit.
    static APPEND_FAILED: Cell<bool> = const { Cell::new(false) };
}

pub(super) fn snapshot() -> Option<Chain> {
    CHAIN.get()
}

pub(super) fn restore(chain: Option<Chain>) {
    CHAIN.set(chain);
}

/// After a failed commit: whatever the thread-local says may not be on disk.
pub(super) fn forget() {
    CHAIN.set(None);
}

pub(super) fn note_append_failed() {
    APPEND_FAILED.set(true);
}

pub(super) fn take_append_failed() -> bool {
    APPEND_FAILED.replace(false)
}

/// The head to sign at commit, if the chain changed in this transaction.
pub(super) fn dirty_head() -> Option<Head> {
    CHAIN.get().filter(|c| c.dirty).map(|c| c.head)
}

pub(super) fn mark_clean() {
    if let Some(mut c) = CHAIN.get() {
        c.dirty = false;
        CHAIN.set(Some(c));
    }
}

fn blob32(v: Vec<u8>, what: &str) -> Result<[u8; 32], Error> {
    v.try_into()
        .map_err(|_| Error::Corrupt(format!("audit {what} is not 32 bytes")))
}

/// The head as the database holds it: the signed head row if there is one, else what the
/// events say (a vault that has none yet starts at [`Head::EMPTY`]).
pub fn load_head(conn: &Connection) -> Result<Head, Error> {
    if let Some(s) = signed_head(conn)? {
        return Ok(s.head);
    }
    let last: Option<(i64, Vec<u8>)> = conn
        .prepare_cached("SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1")?
        .query_row([], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    let Some((seq, hash)) = last else {
        return Ok(Head::EMPTY);
    };
    let (anchor_seq, anchor_prev): (i64, Vec<u8>) = conn
        .prepare_cached("SELECT seq, prev_hash FROM audit ORDER BY seq LIMIT 1")?
        .query_row([], |r| Ok((r.get(0)?, r.get(1)?)))?;
    Ok(Head {
        anchor_seq,
        anchor_prev: blob32(anchor_prev, "prev_hash")?,
        seq,
        hash: blob32(hash, "hash")?,
    })
}

fn current(conn: &Connection) -> Result<Chain, Error> {
    match CHAIN.get() {
        Some(c) => Ok(c),
        None => Ok(Chain {
            head: load_head(conn)?,
            dirty: false,
        }),
    }
}

/// Appends one event to the chain, in the transaction of `conn` (the writer's). Returns its
/// seq.
pub fn append(conn: &Connection, e: &EventData) -> Result<i64, Error> {
    let r = append_inner(conn, e);
    if r.is_err() {
        APPEND_FAILED.set(true);
    }
    r
}

fn append_inner(conn: &Connection, e: &EventData) -> Result<i64, Error> {
    let mut chain = current(conn)?;
    let seq = chain.head.seq + 1;
    let time = super::now_ms();
    let hash = chain_hash(&chain.head.hash, &canonical(seq, time, e));
    conn.prepare_cached(
        "INSERT INTO audit (seq, time, actor_kind, actor_id, action, target, outcome, ip,
                            request_id, details, prev_hash, hash)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
    )?
    .execute(params![
        seq,
        time,
        e.actor_kind.as_ref(),
        e.actor_id,
        e.action.as_ref(),
        e.target,
        e.outcome.as_ref(),
        e.ip,
        e.request_id,
        details_json(&e.details),
        &chain.head.hash[..],
        &hash[..],
    ])?;
    chain.head.seq = seq;
    chain.head.hash = hash;
    chain.dirty = true;
    CHAIN.set(Some(chain));
    Ok(seq)
}

/// Writes the signed head row (the writer, once per commit that changed the chain).
pub(super) fn write_head(conn: &Connection, head: &Head, mac: &[u8]) -> Result<(), Error> {
    conn.prepare_cached(
        "INSERT INTO audit_head (id, anchor_seq, anchor_prev, seq, hash, time, mac)
         VALUES (1, ?1, ?2, ?3, ?4, ?5, ?6)
         ON CONFLICT (id) DO UPDATE SET anchor_seq = excluded.anchor_seq,
            anchor_prev = excluded.anchor_prev, seq = excluded.seq, hash = excluded.hash,
            time = excluded.time, mac = excluded.mac",
    )?
    .execute(params![
        head.anchor_seq,
        &head.anchor_prev[..],
        head.seq,
        &head.hash[..],
        super::now_ms(),
        mac
    ])?;
    Ok(())
}

pub fn signed_head(conn: &Connection) -> Result<Option<SignedHead>, Error> {
    let row: Option<HeadRow> = conn
        .prepare_cached(
            "SELECT anchor_seq, anchor_prev, seq, hash, time, mac FROM audit_head WHERE id = 1",
        )?
        .query_row([], head_row)
        .optional()?;
    row.map(signed_head_of).transpose()
}

/// `anchor_seq, anchor_prev, seq, hash, time, mac`, as a head row holds them.
pub type HeadRow = (i64, Vec<u8>, i64, Vec<u8>, i64, Vec<u8>);

/// Reads a row of `SELECT anchor_seq, anchor_prev, seq, hash, time, mac`.
pub fn head_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<HeadRow> {
    Ok((
        r.get(0)?,
        r.get(1)?,
        r.get(2)?,
        r.get(3)?,
        r.get(4)?,
        r.get(5)?,
    ))
}

pub fn signed_head_of(
    (anchor_seq, anchor_prev, seq, hash, time, mac): HeadRow,
) -> Result<SignedHead, Error> {
    Ok(SignedHead {
        head: Head {
            anchor_seq,
            anchor_prev: blob32(anchor_prev, "head anchor")?,
            seq,
            hash: blob32(hash, "head hash")?,
        },
        time,
        mac,
    })
}

/// The columns of `audit` (and of a table shaped like it) in [`StoredEvent`] order.
pub const COLUMNS: &str = "seq, time, actor_kind, actor_id, action, target, outcome, ip, \
                           request_id, details, prev_hash, hash";

/// A row of [`COLUMNS`]; details that do not parse come back as one `"<unreadable>"` key, so
/// the row's hash no longer matches and verification names it.
pub fn from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<StoredEvent> {
    let details: String = r.get(9)?;
    Ok(StoredEvent {
        seq: r.get(0)?,
        time: r.get(1)?,
        data: EventData {
            actor_kind: Cow::Owned(r.get(2)?),
            actor_id: r.get(3)?,
            action: Cow::Owned(r.get(4)?),
            target: r.get(5)?,
            outcome: Cow::Owned(r.get(6)?),
            ip: r.get(7)?,
            request_id: r.get(8)?,
            details: parse_details(&details)
                .unwrap_or_else(|| vec![("<unreadable>".into(), details)]),
        },
        prev_hash: r.get(10)?,
        hash: r.get(11)?,
    })
}

/// A page of the trail: what to return, and the cursor to continue after.
#[derive(Debug)]
pub struct Page {
    pub events: Vec<StoredEvent>,
    /// The seq to ask `after` next: the last event returned, or, when fewer than asked were
    /// found, the last event scanned (so a filtered follower does not scan the same rows again).
    pub next: i64,
}

/// Which events a page holds.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    pub actor_id: Option<String>,
    pub action: Option<String>,
}

/// Events after `after`, oldest first, at most `limit`, from one snapshot.
pub fn page(conn: &Connection, after: i64, limit: usize, filter: &Filter) -> Result<Page, Error> {
    super::snapshot(conn, |c| {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let events = c
            .prepare_cached(&format!(
                "SELECT {COLUMNS} FROM audit
                 WHERE seq > ?1 AND (?2 IS NULL OR actor_id = ?2) AND (?3 IS NULL OR action = ?3)
                 ORDER BY seq LIMIT ?4"
            ))?
            .query_map(
                params![after, filter.actor_id, filter.action, limit],
                from_row,
            )?
            .collect::<Result<Vec<_>, _>>()?;
        let next = if i64::try_from(events.len()).unwrap_or(i64::MAX) >= limit {
            events.last().map_or(after, |e| e.seq)
        } else {
            let last: Option<i64> = c
                .prepare_cached("SELECT max(seq) FROM audit")?
                .query_row([], |r| r.get(0))?;
            last.unwrap_or(after).max(after)
        };
        Ok(Page { events, next })
    })
}

/// Every event of the local chain in seq order, passed to `f` one at a time (verification
/// reads chains far larger than memory should hold).
pub fn for_each(
    conn: &Connection,
    mut f: impl FnMut(StoredEvent) -> Result<(), Error>,
) -> Result<(), Error> {
    let mut stmt = conn.prepare(&format!("SELECT {COLUMNS} FROM audit ORDER BY seq"))?;
    let mut rows = stmt.query([])?;
    while let Some(r) = rows.next()? {
        f(from_row(r)?)?;
    }
    Ok(())
}

/// Deletes the events older than `before_ms`, keeping at least the newest one, and moves the
/// chain's anchor to the first kept event. Writer thread only (it re-anchors the chain head).
/// Returns how many were deleted and the first kept seq.
pub fn prune(conn: &Connection, before_ms: i64) -> Result<Option<(usize, i64)>, Error> {
    let mut chain = current(conn)?;
    if chain.head.seq < chain.head.anchor_seq {
        return Ok(None);
    }
    // The first event not older than the cutoff, or the newest one: the chain never empties.
    let first: Option<(i64, Vec<u8>)> = conn
        .prepare_cached(
            "SELECT seq, prev_hash FROM audit WHERE time >= ?1 OR seq = ?2 ORDER BY seq LIMIT 1",
        )?
        .query_row(params![before_ms, chain.head.seq], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .optional()?;
    let Some((first_kept, prev)) = first else {
        return Ok(None);
    };
    let deleted = conn
        .prepare_cached("DELETE FROM audit WHERE seq < ?1")?
        .execute([first_kept])?;
    if deleted == 0 {
        return Ok(None);
    }
    chain.head.anchor_seq = first_kept;
    chain.head.anchor_prev = blob32(prev, "prev_hash")?;
    chain.dirty = true;
    CHAIN.set(Some(chain));
    Ok(Some((deleted, first_kept)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event() -> EventData {
        EventData {
            actor_kind: "agent".into(),
            actor_id: Some("a1".into()),
            action: "field.read".into(),
            target: Some("e1".into()),
            outcome: "ok".into(),
            ip: Some("127.0.0.1".into()),
            request_id: Some("r-1".into()),
            details: vec![
                ("field".into(), "password".into()),
                ("tier".into(), "vault".into()),
            ],
        }
    }

    #[test]
    fn canonical_bytes_are_fixed() {
        // A change to the encoding must be a new FORMAT, never a silent one: stored chains
        // would stop verifying. (Value computed independently from the layout documented on
        // `canonical`.)
        let hash = chain_hash(&GENESIS, &canonical(7, 1_700_000_000_000, &event()));
        assert_eq!(
            hex(&hash),
            "ae93a0fdac12e3a879226337edd92d97d39eea602f95b876302c8ea191ac758e",
            "canonical encoding v1 changed"
        );
    }

    #[test]
    fn every_field_is_covered() {
        let base = canonical(1, 2, &event());
        let mut variants = Vec::new();
        let e = event();
        variants.push(canonical(2, 2, &e));
        variants.push(canonical(1, 3, &e));
        for edit in [
            |e: &mut EventData| e.actor_kind = "owner".into(),
            |e: &mut EventData| e.actor_id = None,
            |e: &mut EventData| e.action = "field.reads".into(),
            |e: &mut EventData| e.target = Some("e2".into()),
            |e: &mut EventData| e.outcome = "denied".into(),
            |e: &mut EventData| e.ip = Some("127.0.0.2".into()),
            |e: &mut EventData| e.request_id = None,
            |e: &mut EventData| e.details[0].1 = "pin".into(),
            |e: &mut EventData| e.details.pop().map(drop).unwrap_or(()),
            // Moving bytes between neighbouring fields is not the same event.
            |e: &mut EventData| {
                e.action = "field.readagent".into();
                e.actor_kind = "".into();
            },
        ] {
            let mut e = event();
            edit(&mut e);
            variants.push(canonical(1, 2, &e));
        }
        for v in variants {
            assert_ne!(v, base);
        }
    }

    #[test]
    fn details_round_trip_sorted() {
        let d = vec![
            ("b".to_owned(), "2".to_owned()),
            ("a".to_owned(), "\"1\"".to_owned()),
        ];
        let text = details_json(&d);
        assert_eq!(text, r#"{"a":"\"1\"","b":"2"}"#);
        assert_eq!(
            parse_details(&text).unwrap(),
            vec![
                ("a".to_owned(), "\"1\"".to_owned()),
                ("b".to_owned(), "2".to_owned())
            ]
        );
        assert!(parse_details(r#"{"a":1}"#).is_none());
    }

    fn hex(b: &[u8]) -> String {
        b.iter().map(|x| format!("{x:02x}")).collect()
    }
}
