//! Which users and groups an identity provider created (and may therefore manage), with the
//! provider's own id for them. Each write carries a version and a strictly increasing
//! `updated_at`, so the Commercial backup keeps them: after a failover the provider still
//! manages what it created.

use super::{Error, next_version, now_ms};
use rusqlite::{Connection, OptionalExtension, params};

/// Records that a provisioner made `id` (`kind`: `user` or `group`).
pub fn mark(
    conn: &Connection,
    id: &str,
    kind: &str,
    external_id: Option<&str>,
) -> Result<(), Error> {
    let version = next_version(conn)?;
    conn.prepare_cached(
        "INSERT INTO provisioned (id, kind, external_id, created_at, updated_at, version)
         VALUES (?1, ?2, ?3, ?4, ?4, ?5)
         ON CONFLICT (id) DO UPDATE SET external_id = excluded.external_id,
            updated_at = max(excluded.updated_at, updated_at + 1), version = excluded.version",
    )?
    .execute(params![id, kind, external_id, now_ms(), version])?;
    Ok(())
}

/// `Some(external_id)` if a provisioner made `id` as a `kind`.
pub fn get(conn: &Connection, id: &str, kind: &str) -> Result<Option<Option<String>>, Error> {
    Ok(conn
        .prepare_cached("SELECT external_id FROM provisioned WHERE id = ?1 AND kind = ?2")?
        .query_row(params![id, kind], |r| r.get(0))
        .optional()?)
}

/// Every id a provisioner made as a `kind`, with its external id.
pub fn list(conn: &Connection, kind: &str) -> Result<Vec<(String, Option<String>)>, Error> {
    let mut stmt =
        conn.prepare_cached("SELECT id, external_id FROM provisioned WHERE kind = ?1 ORDER BY id")?;
    let rows = stmt.query_map([kind], |r| Ok((r.get(0)?, r.get(1)?)))?;
    Ok(rows.collect::<Result<_, _>>()?)
}
