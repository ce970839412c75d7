//! The primary's audit trail, copied to the backup: each POP keeps its own chain, and a backup
//! also keeps the primary's, event for event (hashes as the primary made them), so the
//! primary's trail outlives the primary and verifies on the backup (`clavitor audit verify`
//! there walks both).
//!
//! Events travel in order, after the data of a drain, in batches of their own (`Batch::audit`,
//! a field older backups ignore), with the primary's signed head when the batch reaches it.
//! The backup checks every event's hash and link before storing any (`check`), then stores
//! those that follow what it holds (`apply`), and answers with the last event it holds
//! (`Ack::audit_seq`): the primary sends from there next time (also backwards, to a backup
//! that lost events).

use super::validate::Refusal;
use super::wire::AuditItem;
use crate::audit::{head_text, parse_head};
use crate::crypto::AuditKey;
use crate::store::audit::{
    COLUMNS, EventData, GENESIS, StoredEvent, canonical, chain_hash, from_row, signed_head,
};
use crate::store::{self};
use rusqlite::{Connection, OptionalExtension, params};
use std::borrow::Cow;

/// Events per audit batch (each is a few hundred bytes on the wire).
pub const BATCH_EVENTS: usize = 2000;
const ACKED: &str = "audit_acked";
/// Longest text a replicated event may carry in any one field.
const MAX_TEXT: usize = 64 * 1024;

/// The peer chains' tables, added by `schema::ensure`.
pub const SCHEMA: &str = "
    CREATE TABLE IF NOT EXISTS audit_peer (
        origin     TEXT NOT NULL,
        seq        INTEGER NOT NULL,
        time       INTEGER NOT NULL,
        actor_kind TEXT NOT NULL,
        actor_id   TEXT,
        action     TEXT NOT NULL,
        target     TEXT,
        outcome    TEXT NOT NULL,
        ip         TEXT,
        request_id TEXT,
        details    TEXT NOT NULL,
        prev_hash  BLOB NOT NULL,
        hash       BLOB NOT NULL,
        PRIMARY KEY (origin, seq)
    ) STRICT;
    CREATE TABLE IF NOT EXISTS audit_peer_head (
        origin      TEXT PRIMARY KEY,
        anchor_seq  INTEGER NOT NULL,
        anchor_prev BLOB NOT NULL,
        seq         INTEGER NOT NULL,
        hash        BLOB NOT NULL,
        time        INTEGER NOT NULL,
        mac         BLOB NOT NULL
    ) STRICT;";

impl From<StoredEvent> for AuditItem {
    fn from(e: StoredEvent) -> Self {
        let d = e.data;
        Self {
            seq: e.seq,
            time: e.time,
            actor_kind: d.actor_kind.into_owned(),
            actor_id: d.actor_id,
            action: d.action.into_owned(),
            target: d.target,
            outcome: d.outcome.into_owned(),
            ip: d.ip,
            request_id: d.request_id,
            details: d.details,
            prev_hash: e.prev_hash,
            hash: e.hash,
        }
    }
}

fn data(i: &AuditItem) -> EventData {
    EventData {
        actor_kind: Cow::Owned(i.actor_kind.clone()),
        actor_id: i.actor_id.clone(),
        action: Cow::Owned(i.action.clone()),
        target: i.target.clone(),
        outcome: Cow::Owned(i.outcome.clone()),
        ip: i.ip.clone(),
        request_id: i.request_id.clone(),
        details: i.details.clone(),
    }
}

/// The primary: events after `after` (at most [`BATCH_EVENTS`]) and, if they reach the end of
/// the chain, its signed head as text; read from one snapshot.
pub fn collect(
    conn: &Connection,
    after: i64,
) -> Result<(Vec<AuditItem>, Option<String>), store::Error> {
    store::snapshot(conn, |c| {
        let items: Vec<AuditItem> = c
            .prepare_cached(&format!(
                "SELECT {COLUMNS} FROM audit WHERE seq > ?1 ORDER BY seq LIMIT ?2"
            ))?
            .query_map(params![after, BATCH_EVENTS as i64], from_row)?
            .map(|r| r.map(AuditItem::from))
            .collect::<Result<_, _>>()?;
        let head = signed_head(c)?
            .filter(|s| items.last().is_some_and(|l| l.seq == s.head.seq))
            .map(|s| head_text(&s));
        Ok((items, head))
    })
}

/// The primary: the last of its events the backup is known to hold.
pub fn acked(conn: &Connection) -> Result<i64, store::Error> {
    Ok(conn
        .prepare_cached("SELECT value FROM replication_state WHERE name = ?1")?
        .query_row([ACKED], |r| r.get(0))
        .optional()?
        .unwrap_or(0))
}

/// The primary: what the backup said it holds (which may be less than was sent).
pub fn set_acked(conn: &Connection, seq: i64) -> Result<(), store::Error> {
    conn.prepare_cached(
        "INSERT INTO replication_state (name, value) VALUES (?1, ?2)
         ON CONFLICT (name) DO UPDATE SET value = excluded.value",
    )?
    .execute(params![ACKED, seq])?;
    Ok(())
}

/// The backup, before anything is applied: the events are in order, each follows the one
/// before and hashes to what it says, and the head (if any) is the primary's (it shares this
/// vault's `master.key`) and names the last event.
pub fn check(items: &[AuditItem], head: Option<&str>, key: &AuditKey) -> Result<(), Refusal> {
    let refuse = |i: &AuditItem, what: String| Refusal::Item {
        index: 0,
        kind: "audit event",
        id: i.seq.to_string(),
        what,
    };
    let mut prev: Option<&AuditItem> = None;
    for i in items {
        let texts = [
            Some(&i.actor_kind),
            i.actor_id.as_ref(),
            Some(&i.action),
            i.target.as_ref(),
            Some(&i.outcome),
            i.ip.as_ref(),
            i.request_id.as_ref(),
        ];
        if texts.iter().flatten().any(|t| t.len() > MAX_TEXT)
            || i.details.iter().any(|(k, v)| k.len() + v.len() > MAX_TEXT)
            || i.details.len() > 256
        {
            return Err(refuse(i, "a field is too long".into()));
        }
        if i.details.windows(2).any(|w| w[0].0 >= w[1].0) {
            return Err(refuse(i, "its details are not sorted by unique key".into()));
        }
        if i.seq < 1 || i.prev_hash.len() != 32 || i.hash.len() != 32 {
            return Err(refuse(i, "its seq or hashes are malformed".into()));
        }
        if let Some(p) = prev
            && (i.seq != p.seq + 1 || i.prev_hash != p.hash)
        {
            return Err(refuse(i, format!("it does not follow event {}", p.seq)));
        }
        if chain_hash(&i.prev_hash, &canonical(i.seq, i.time, &data(i)))[..] != i.hash[..] {
            return Err(refuse(i, "its content does not match its hash".into()));
        }
        prev = Some(i);
    }
    if let Some(text) = head {
        let s = parse_head(text).map_err(|e| Refusal::Batch(format!("audit head: {e}")))?;
        if !key.verify(&s.head.mac_message(), &s.mac) {
            return Err(Refusal::Batch(
                "the audit head does not verify with this POP's master.key".into(),
            ));
        }
        match items.last() {
            Some(l) if l.seq == s.head.seq && l.hash[..] == s.head.hash[..] => {}
            _ => {
                return Err(Refusal::Batch(
                    "the audit head does not name the batch's last event".into(),
                ));
            }
        }
    }
    Ok(())
}

/// The backup, inside the batch's write: stores the events of `origin`'s chain that follow
/// what it holds, skipping those it has (the same), and the head. Returns the last event held.
pub fn apply(
    conn: &Connection,
    origin: &str,
    items: &[AuditItem],
    head: Option<&str>,
) -> Result<i64, super::rows::ApplyError> {
    use super::rows::ApplyError;
    let last: Option<(i64, Vec<u8>)> = conn
        .prepare_cached(
            "SELECT seq, hash FROM audit_peer WHERE origin = ?1 ORDER BY seq DESC LIMIT 1",
        )?
        .query_row([origin], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    let (mut last_seq, mut last_hash) = match last {
        Some((s, h)) => (s, h),
        None => (0, GENESIS.to_vec()),
    };
    let empty = last_seq == 0;
    let mut insert = conn.prepare_cached(
        "INSERT INTO audit_peer (origin, seq, time, actor_kind, actor_id, action, target, outcome,
                                 ip, request_id, details, prev_hash, hash)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
    )?;
    for (n, i) in items.iter().enumerate() {
        if i.seq <= last_seq {
            let held: Option<Vec<u8>> = conn
                .prepare_cached("SELECT hash FROM audit_peer WHERE origin = ?1 AND seq = ?2")?
                .query_row(params![origin, i.seq], |r| r.get(0))
                .optional()?;
            match held {
                Some(h) if h == i.hash => continue,
                // Retention on this backup's copy is not a thing; an event below what is held
                // and not held is one the copy started after.
                None => continue,
                Some(_) => {
                    return Err(ApplyError::Refused(format!(
                        "audit event {} of {origin} differs from the copy this backup holds",
                        i.seq
                    )));
                }
            }
        }
        // The first event a backup receives starts its copy; later ones must follow it.
        let follows = (empty && n == 0) || (i.seq == last_seq + 1 && i.prev_hash == last_hash);
        if !follows {
            break;
        }
        insert.execute(params![
            origin,
            i.seq,
            i.time,
            i.actor_kind,
            i.actor_id,
            i.action,
            i.target,
            i.outcome,
            i.ip,
            i.request_id,
            store::audit::details_json(&i.details),
            i.prev_hash,
            i.hash
        ])?;
        last_seq = i.seq;
        last_hash = i.hash.clone();
    }
    if let Some(text) = head
        && let Ok(s) = parse_head(text)
        && s.head.seq == last_seq
    {
        conn.prepare_cached(
            "INSERT INTO audit_peer_head (origin, anchor_seq, anchor_prev, seq, hash, time, mac)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
             ON CONFLICT (origin) DO UPDATE SET anchor_seq = excluded.anchor_seq,
                anchor_prev = excluded.anchor_prev, seq = excluded.seq, hash = excluded.hash,
                time = excluded.time, mac = excluded.mac",
        )?
        .execute(params![
            origin,
            s.head.anchor_seq,
            &s.head.anchor_prev[..],
            s.head.seq,
            &s.head.hash[..],
            store::now_ms(),
            s.mac
        ])?;
    }
    Ok(last_seq)
}
