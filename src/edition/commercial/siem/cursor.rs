//! Each sink's durable cursor (`stream_cursors`, migration 7): the last seq the sink
//! acknowledged, with counts. Written only after an acknowledgement, so a crash resends rather
//! than skips.

use crate::store::{self, audit::StoredEvent, now_ms};
use rusqlite::{Connection, OptionalExtension, params};

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Cursor {
    pub acked_seq: i64,
    pub delivered: i64,
    pub resent: i64,
    pub skipped: i64,
}

pub fn load(c: &Connection, sink: &str) -> Result<Cursor, store::Error> {
    Ok(c.prepare_cached(
        "SELECT acked_seq, delivered, resent, skipped FROM stream_cursors WHERE sink = ?1",
    )?
    .query_row([sink], |r| {
        Ok(Cursor {
            acked_seq: r.get(0)?,
            delivered: r.get(1)?,
            resent: r.get(2)?,
            skipped: r.get(3)?,
        })
    })
    .optional()?
    .unwrap_or_default())
}

pub fn save(c: &Connection, sink: &str, cur: Cursor) -> Result<(), store::Error> {
    c.prepare_cached(
        "INSERT INTO stream_cursors (sink, acked_seq, delivered, resent, skipped, updated_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)
         ON CONFLICT (sink) DO UPDATE SET acked_seq = max(acked_seq, excluded.acked_seq),
           delivered = excluded.delivered, resent = excluded.resent, skipped = excluded.skipped,
           updated_at = excluded.updated_at",
    )?
    .execute(params![
        sink,
        cur.acked_seq,
        cur.delivered,
        cur.resent,
        cur.skipped,
        now_ms()
    ])?;
    Ok(())
}

/// `(first kept seq, last seq)` of this POP's trail; `(1, 0)` while it is empty.
pub fn bounds(c: &Connection) -> Result<(i64, i64), store::Error> {
    Ok(
        c.prepare_cached("SELECT coalesce(min(seq), 1), coalesce(max(seq), 0) FROM audit")?
            .query_row([], |r| Ok((r.get(0)?, r.get(1)?)))?,
    )
}

/// Up to `limit` events after `after`, oldest first.
pub fn after(c: &Connection, after: i64, limit: usize) -> Result<Vec<StoredEvent>, store::Error> {
    Ok(store::audit::page(c, after, limit, &store::audit::Filter::default())?.events)
}

/// Events not yet acknowledged by `sink`.
pub fn backlog(c: &Connection, sink: &str) -> Result<i64, store::Error> {
    let (_, last) = bounds(c)?;
    Ok((last - load(c, sink)?.acked_seq).max(0))
}
