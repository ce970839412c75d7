//! The commercial edition's additions to the database, added idempotently at start, so a
//! community vault can be upgraded in place (and a community binary simply ignores them):
//!
//! - `replicated_at` and `origin` on every replicated table. A row is owed to the backup while
//!   `replicated_at IS NULL OR replicated_at < updated_at`; the store keeps `updated_at`
//!   strictly increasing per row, so writes never touch this column.
//! - `owed_since`: the version of the first change to a row that the backup has not
//!   acknowledged (NULL for a row never changed since it was created: then its own `version`).
//!   Kept by triggers, so the store's writes stay unaware of replication. Every change to a
//!   row below it is on the backup; that is what makes the recovery point (`watermark`) true.
//! - `replication_state`: the backup's applied watermark, committed with the batch that
//!   raised it.
//! - `control_grant`: the role and epoch the control plane last granted this POP (one row,
//!   never replicated; see `lease.rs`).

use crate::store::{self, Store};
use rusqlite::{Connection, OptionalExtension};

/// Each replicated table and the SQL condition naming one row by its key through `NEW`.
const TABLES: &[(&str, &str)] = &[
    ("entries", "id = NEW.id"),
    ("agents", "id = NEW.id"),
    (
        "scope_keys",
        "scope = NEW.scope AND agent_id = NEW.agent_id",
    ),
    ("groups", "id = NEW.id"),
    (
        "group_members",
        "group_id = NEW.group_id AND user_id = NEW.user_id",
    ),
    ("invites", "user_id = NEW.user_id"),
    ("provisioned", "id = NEW.id"),
];

/// A row is owed to the backup while this holds.
pub const OWED: &str = "(replicated_at IS NULL OR replicated_at < updated_at)";

/// The version of a row's first unacknowledged change (see the module doc). Rows are sent in
/// this order, and the `entries` index below is on exactly this expression.
pub const FIRST_OWED: &str = "coalesce(owed_since, version)";

const APPLIED_WATERMARK: &str = "applied_watermark";

fn has_column(c: &Connection, table: &str, column: &str) -> Result<bool, store::Error> {
    let mut stmt = c.prepare(&format!(
        "SELECT 1 FROM pragma_table_info('{table}') WHERE name = ?1"
    ))?;
    Ok(stmt.exists([column])?)
}

pub async fn ensure(store: &Store) -> Result<(), store::Error> {
    store
        .write(|c| {
            for (t, key) in TABLES {
                // origin: the POP a row was replicated from (NULL: written here).
                for (col, ty) in [("replicated_at", "INTEGER"), ("origin", "TEXT")] {
                    if !has_column(c, t, col)? {
                        c.execute_batch(&format!("ALTER TABLE {t} ADD COLUMN {col} {ty};"))?;
                    }
                }
                if !has_column(c, t, "owed_since")? {
                    // Rows owed before the column existed may owe changes older than their
                    // version: 0 claims nothing about them until they are acknowledged.
                    c.execute_batch(&format!(
                        "ALTER TABLE {t} ADD COLUMN owed_since INTEGER;
                         UPDATE {t} SET owed_since = 0 WHERE {OWED};"
                    ))?;
                }
                // On a change that makes the row owed: if it was acknowledged before, this
                // change is the first one owed; if it was owed but never changed since it was
                // created, its creation is. Rows applied from a peer arrive not owed.
                c.execute_batch(&format!(
                    "CREATE TRIGGER IF NOT EXISTS {t}_owed_since AFTER UPDATE OF version ON {t}
                     WHEN (NEW.replicated_at IS NULL OR NEW.replicated_at < NEW.updated_at)
                      AND (OLD.owed_since IS NULL
                           OR (OLD.replicated_at IS NOT NULL AND OLD.replicated_at >= OLD.updated_at))
                     BEGIN
                       UPDATE {t} SET owed_since = CASE
                           WHEN OLD.replicated_at IS NOT NULL AND OLD.replicated_at >= OLD.updated_at
                           THEN NEW.version ELSE OLD.version END
                       WHERE {key};
                     END;"
                ))?;
            }
            c.execute_batch(&format!(
                "DROP INDEX IF EXISTS entries_owed;
                 CREATE INDEX IF NOT EXISTS entries_first_owed ON entries ({FIRST_OWED}) WHERE {OWED};
                 CREATE TABLE IF NOT EXISTS replication_state (
                     name  TEXT PRIMARY KEY,
                     value INTEGER NOT NULL
                 ) STRICT;
                 CREATE TABLE IF NOT EXISTS control_grant (
                     id         INTEGER PRIMARY KEY CHECK (id = 1),
                     role       TEXT NOT NULL CHECK (role IN ('primary', 'backup')),
                     epoch      INTEGER NOT NULL CHECK (epoch >= 0),
                     granted_at INTEGER NOT NULL
                 ) STRICT;"
            ))?;
            c.execute_batch(super::replication::audit::SCHEMA)?;
            Ok::<_, store::Error>(())
        })
        .await
}

/// Rows not yet acknowledged by the backup, across every replicated table.
pub fn backlog(c: &Connection) -> Result<i64, store::Error> {
    let mut n = 0i64;
    for (t, _) in TABLES {
        n += c.query_row(&format!("SELECT count(*) FROM {t} WHERE {OWED}"), [], |r| {
            r.get::<_, i64>(0)
        })?;
    }
    Ok(n)
}

/// The backup's recovery point: the highest watermark of a batch it committed (0: none yet).
pub fn applied_watermark(c: &Connection) -> Result<i64, store::Error> {
    Ok(
        c.prepare_cached("SELECT value FROM replication_state WHERE name = ?1")?
            .query_row([APPLIED_WATERMARK], |r| r.get(0))
            .optional()?
            .unwrap_or(0),
    )
}

/// Raises the applied watermark to `w` (never lowers it) inside the batch's own transaction.
pub fn raise_applied_watermark(c: &Connection, w: i64) -> Result<(), store::Error> {
    c.prepare_cached(
        "INSERT INTO replication_state (name, value) VALUES (?1, ?2)
         ON CONFLICT (name) DO UPDATE SET value = max(value, excluded.value)",
    )?
    .execute(rusqlite::params![APPLIED_WATERMARK, w])?;
    Ok(())
}
