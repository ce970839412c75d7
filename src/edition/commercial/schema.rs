//! The commercial edition's additions to the database: `replicated_at` on every replicated
//! table. Added idempotently at start, so a community vault can be upgraded in place (and
//! a community binary simply ignores the extra columns).
//!
//! A row is owed to the backup while `replicated_at IS NULL OR replicated_at < updated_at`;
//! the store keeps `updated_at` strictly increasing per row, so writes never touch this column.

use crate::store::{self, Store};
use rusqlite::Connection;

const TABLES: &[&str] = &["entries", "agents", "scope_keys"];

/// A row is owed to the backup while this holds.
pub const OWED: &str = "(replicated_at IS NULL OR replicated_at < updated_at)";

fn has_column(c: &Connection, table: &str, column: &str) -> Result<bool, store::Error> {
    let mut stmt = c.prepare(&format!(
        "SELECT 1 FROM pragma_table_info('{table}') WHERE name = ?1"
    ))?;
    Ok(stmt.exists([column])?)
}

pub async fn ensure(store: &Store) -> Result<(), store::Error> {
    store
        .write(|c| {
            for t in TABLES {
                // origin: the POP a row was replicated from (NULL: written here).
                for (col, ty) in [("replicated_at", "INTEGER"), ("origin", "TEXT")] {
                    if !has_column(c, t, col)? {
                        c.execute_batch(&format!("ALTER TABLE {t} ADD COLUMN {col} {ty};"))?;
                    }
                }
            }
            c.execute_batch(&format!(
                "CREATE INDEX IF NOT EXISTS entries_owed ON entries (updated_at) WHERE {OWED};"
            ))?;
            Ok::<_, store::Error>(())
        })
        .await
}

/// Rows not yet acknowledged by the backup, across every replicated table.
pub fn backlog(c: &Connection) -> Result<i64, store::Error> {
    let mut n = 0i64;
    for t in TABLES {
        n += c.query_row(&format!("SELECT count(*) FROM {t} WHERE {OWED}"), [], |r| {
            r.get::<_, i64>(0)
        })?;
    }
    Ok(n)
}
