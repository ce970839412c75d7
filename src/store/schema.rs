//! Versioned migrations, tracked in `PRAGMA user_version`. Append only: never edit a
//! migration that has shipped.

use super::Error;
use rusqlite::Connection;
use std::path::Path;

// The commercial edition adds its own bookkeeping columns (see `edition/commercial`); they
// are not named here so the community binary carries nothing of that feature.
const MIGRATIONS: &[&str] = &[
    // 1: entries, fields, agents, wrapped scope keys.
    r#"
    CREATE TABLE sequence (name TEXT PRIMARY KEY, value INTEGER NOT NULL) STRICT;
    INSERT INTO sequence (name, value) VALUES ('version', 0);

    -- Every row carries version (global, monotonic) and updated_at (ms, strictly increasing
    -- per row), so another copy of the data can tell which of two versions is newer.
    CREATE TABLE entries (
        id            TEXT PRIMARY KEY,
        meta          BLOB NOT NULL,          -- sealed {title,url,username}
        created_at    INTEGER NOT NULL,
        updated_at    INTEGER NOT NULL,
        version       INTEGER NOT NULL,
        deleted       INTEGER NOT NULL DEFAULT 0   -- tombstone: deletions leave a row
    ) STRICT;

    CREATE TABLE fields (
        entry_id   TEXT NOT NULL REFERENCES entries (id) ON DELETE CASCADE,
        position   INTEGER NOT NULL,
        name       TEXT NOT NULL,
        tier       TEXT NOT NULL CHECK (tier IN ('vault', 'credential', 'identity')),
        scope      TEXT,
        ciphertext BLOB NOT NULL,
        PRIMARY KEY (entry_id, name)
    ) STRICT, WITHOUT ROWID;

    CREATE TABLE agents (
        id                    TEXT PRIMARY KEY,
        name                  TEXT NOT NULL,
        token_hash            BLOB NOT NULL UNIQUE,
        is_owner              INTEGER NOT NULL DEFAULT 0,
        scopes                TEXT NOT NULL,   -- JSON array
        ip_allowlist          TEXT NOT NULL,   -- JSON array of CIDRs
        rate_limit_per_minute INTEGER,
        created_at            INTEGER NOT NULL,
        expires_at            INTEGER,
        revoked_at            INTEGER,
        updated_at            INTEGER NOT NULL,
        version               INTEGER NOT NULL
    ) STRICT;
    -- Agents are addressed by name; owners (one per POP that was initialised) are not.
    CREATE UNIQUE INDEX agents_active_name ON agents (name) WHERE revoked_at IS NULL AND is_owner = 0;

    -- A scope's credential key, sealed under one agent's token. No other copy exists.
    CREATE TABLE scope_keys (
        scope         TEXT NOT NULL,
        agent_id      TEXT NOT NULL REFERENCES agents (id),
        wrapped       BLOB NOT NULL,
        updated_at    INTEGER NOT NULL,
        version       INTEGER NOT NULL,
        PRIMARY KEY (scope, agent_id)
    ) STRICT, WITHOUT ROWID;
    "#,
    // 2: settings of this database file alone (never replicated), e.g. the master-key check.
    r#"
    CREATE TABLE settings (
        name  TEXT PRIMARY KEY,
        value BLOB NOT NULL
    ) STRICT, WITHOUT ROWID;
    "#,
    // 3: how agents may use a field (read it, or only have the server use it for them) and the
    // hosts it may be sent to; the defaults are what every field did before. The index on
    // entries.version serves the change feed (`GET /v1/changes`): what changed since a version.
    r#"
    ALTER TABLE fields ADD COLUMN agent_access TEXT NOT NULL DEFAULT 'read'
        CHECK (agent_access IN ('read', 'use'));
    ALTER TABLE fields ADD COLUMN allowed_hosts TEXT NOT NULL DEFAULT '[]';  -- JSON array
    CREATE INDEX entries_version ON entries (version);
    "#,
];

pub fn migrate(conn: &mut Connection, path: &Path) -> Result<(), Error> {
    let known = i64::try_from(MIGRATIONS.len()).unwrap_or(i64::MAX);
    let current: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    if current > known {
        return Err(Error::SchemaTooNew {
            path: path.to_owned(),
            found: current,
            known,
        });
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(current as usize) {
        let tx = conn.transaction()?;
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", i as i64 + 1)?;
        tx.commit()?;
    }
    Ok(())
}
