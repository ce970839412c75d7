//! Settings of one database file (the `settings` table): local values that never replicate,
//! such as the check value that tells whether `master.key` belongs to this vault.

use super::Error;
use rusqlite::{Connection, OptionalExtension, params};

/// Name of the sealed value that only this vault's master key opens.
pub const KEY_CHECK: &str = "master_key_check";

pub fn get(conn: &Connection, name: &str) -> Result<Option<Vec<u8>>, Error> {
    Ok(conn
        .prepare_cached("SELECT value FROM settings WHERE name = ?1")?
        .query_row([name], |r| r.get(0))
        .optional()?)
}

pub fn put(conn: &Connection, name: &str, value: &[u8]) -> Result<(), Error> {
    conn.prepare_cached(
        "INSERT INTO settings (name, value) VALUES (?1, ?2)
         ON CONFLICT (name) DO UPDATE SET value = excluded.value",
    )?
    .execute(params![name, value])?;
    Ok(())
}

/// Up to `limit` live entries' sealed metadata with their ids: what a vault without a key-check
/// value is checked against.
pub fn sample_entry_meta(conn: &Connection, limit: usize) -> Result<Vec<(String, Vec<u8>)>, Error> {
    let mut stmt =
        conn.prepare("SELECT id, meta FROM entries WHERE deleted = 0 ORDER BY id LIMIT ?1")?;
    let rows = stmt.query_map([i64::try_from(limit).unwrap_or(i64::MAX)], |r| {
        Ok((r.get(0)?, r.get(1)?))
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}
