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
    // 3: people. The agents table becomes the table of principals (owner, users, agents; the
    // name is kept for replication and earlier migrations), each with an X25519 key pair; groups
    // and memberships; the format tag on wrapped scope keys.
    r#"
    ALTER TABLE agents ADD COLUMN kind TEXT NOT NULL DEFAULT 'agent'
        CHECK (kind IN ('owner', 'user', 'agent'));
    UPDATE agents SET kind = 'owner' WHERE is_owner = 1;
    ALTER TABLE agents ADD COLUMN role TEXT CHECK (role IS NULL OR role IN ('admin', 'member'));
    ALTER TABLE agents ADD COLUMN email TEXT;
    -- Agents: the id of the owner or user who created them (NULL: made by an owner before
    -- people existed).
    ALTER TABLE agents ADD COLUMN creator_id TEXT;
    -- NULL until the principal's first request after this migration (its token is needed to
    -- seal the private key).
    ALTER TABLE agents ADD COLUMN public_key BLOB;
    ALTER TABLE agents ADD COLUMN sealed_private_key BLOB;
    -- Users only; agents keep revoked_at. A deleted user has revoked_at set.
    ALTER TABLE agents ADD COLUMN deactivated_at INTEGER;
    -- Users and agents have separate name spaces.
    DROP INDEX agents_active_name;
    CREATE UNIQUE INDEX agents_active_name ON agents (kind, name)
        WHERE revoked_at IS NULL AND kind != 'owner';
    CREATE INDEX agents_creator ON agents (creator_id) WHERE creator_id IS NOT NULL;

    -- Every wrap so far was sealed under its holder's token: format tag 0x01 (crypto::WrapFormat).
    -- An empty blob is a dropped copy (a tombstone, so that the drop replicates).
    -- (Through hex: `||` makes text, and a blob as text may stop at a NUL byte.)
    UPDATE scope_keys SET wrapped = unhex('01' || hex(wrapped));

    CREATE TABLE groups (
        id          TEXT PRIMARY KEY,
        name        TEXT NOT NULL,
        scopes      TEXT NOT NULL,   -- JSON array
        created_at  INTEGER NOT NULL,
        updated_at  INTEGER NOT NULL,
        version     INTEGER NOT NULL,
        deleted     INTEGER NOT NULL DEFAULT 0
    ) STRICT;
    CREATE UNIQUE INDEX groups_live_name ON groups (name) WHERE deleted = 0;

    -- Tombstones (deleted = 1) rather than deletions, so removals replicate.
    CREATE TABLE group_members (
        group_id    TEXT NOT NULL REFERENCES groups (id),
        user_id     TEXT NOT NULL REFERENCES agents (id),
        updated_at  INTEGER NOT NULL,
        version     INTEGER NOT NULL,
        deleted     INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (group_id, user_id)
    ) STRICT, WITHOUT ROWID;
    CREATE INDEX group_members_user ON group_members (user_id);
    "#,
    // 4: the audit trail (this POP's own chain) and its signed head. Append only: rows are
    // never updated; retention deletes from the oldest end and moves the head's anchor.
    r#"
    CREATE TABLE audit (
        seq        INTEGER PRIMARY KEY,   -- 1, 2, 3, ... without gaps
        time       INTEGER NOT NULL,      -- ms since the Unix epoch
        actor_kind TEXT NOT NULL,
        actor_id   TEXT,
        action     TEXT NOT NULL,
        target     TEXT,
        outcome    TEXT NOT NULL,
        ip         TEXT,
        request_id TEXT,
        details    TEXT NOT NULL,         -- JSON object of strings, keys sorted
        prev_hash  BLOB NOT NULL,
        hash       BLOB NOT NULL          -- SHA-256(prev_hash || canonical bytes)
    ) STRICT;
    CREATE INDEX audit_time ON audit (time);

    -- One row: the chain's first kept event (anchor) and last event, MAC'd with a key
    -- derived from master.key.
    CREATE TABLE audit_head (
        id          INTEGER PRIMARY KEY CHECK (id = 1),
        anchor_seq  INTEGER NOT NULL,
        anchor_prev BLOB NOT NULL,
        seq         INTEGER NOT NULL,
        hash        BLOB NOT NULL,
        time        INTEGER NOT NULL,
        mac         BLOB NOT NULL
    ) STRICT;
    "#,
    // 5: how agents may use a field (read it, or only have the server use it for them) and the
    // hosts it may be sent to; the defaults are what every field did before. The index on
    // entries.version serves the change feed (`GET /v1/changes`): what changed since a version.
    r#"
    ALTER TABLE fields ADD COLUMN agent_access TEXT NOT NULL DEFAULT 'read'
        CHECK (agent_access IN ('read', 'use'));
    ALTER TABLE fields ADD COLUMN allowed_hosts TEXT NOT NULL DEFAULT '[]';  -- JSON array
    CREATE INDEX entries_version ON entries (version);
    "#,
    // 6: invites (a single-use code, kept as its hash, that lets a user make its own token and
    // key pair), pending grants (a membership whose scope keys nobody has wrapped for the member
    // yet: it grants nothing until a holder confirms it; it replicates with its membership), and
    // which users and groups an identity provider created (`kind`, `external_id`).
    r#"
    CREATE TABLE invites (
        user_id    TEXT PRIMARY KEY REFERENCES agents (id),
        code_hash  BLOB NOT NULL,
        created_at INTEGER NOT NULL,
        expires_at INTEGER NOT NULL,
        used_at    INTEGER
    ) STRICT;
    ALTER TABLE group_members ADD COLUMN pending INTEGER NOT NULL DEFAULT 0;
    CREATE TABLE provisioned (
        id          TEXT PRIMARY KEY,
        kind        TEXT NOT NULL CHECK (kind IN ('user', 'group')),
        external_id TEXT,
        created_at  INTEGER NOT NULL
    ) STRICT;
    "#,
    // 7: how far each outbound audit stream (a Commercial sink) has been acknowledged, keyed by
    // the sink's name. This POP's own bookkeeping: never replicated.
    r#"
    CREATE TABLE stream_cursors (
        sink       TEXT PRIMARY KEY,
        acked_seq  INTEGER NOT NULL,     -- every event up to this seq was acknowledged
        delivered  INTEGER NOT NULL DEFAULT 0,
        resent     INTEGER NOT NULL DEFAULT 0,   -- events sent again after a crash or outage
        skipped    INTEGER NOT NULL DEFAULT 0,   -- events deleted by retention before delivery
        updated_at INTEGER NOT NULL
    ) STRICT, WITHOUT ROWID;
    "#,
    // 8: invites and the provisioner's marks carry version and updated_at like every other row
    // another copy of the data must order (the Commercial backup takes them over on failover).
    // Rows from before share one fresh version; updated_at is their last change.
    r#"
    ALTER TABLE invites ADD COLUMN updated_at INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE invites ADD COLUMN version INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE provisioned ADD COLUMN updated_at INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE provisioned ADD COLUMN version INTEGER NOT NULL DEFAULT 0;
    UPDATE sequence SET value = value + 1 WHERE name = 'version';
    UPDATE invites SET updated_at = max(created_at, coalesce(used_at, 0)),
        version = (SELECT value FROM sequence WHERE name = 'version');
    UPDATE provisioned SET updated_at = created_at,
        version = (SELECT value FROM sequence WHERE name = 'version');
    "#,
    // 9: no index on the trail's time. Retention walks the trail from its oldest end in seq
    // order (times follow seqs), which the primary key serves; with the index, SQLite answered
    // that query by sorting every newer event, and every append paid for one more B-tree.
    r#"
    DROP INDEX audit_time;
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A vault of schema 2 (before people) keeps its owner, agents and every wrapped key:
    /// the owner becomes kind `owner`, agents `agent`, and the wraps get format tag 1.
    #[test]
    fn migration_3_keeps_principals_and_tags_old_wraps() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("v2.db");
        let mut c = Connection::open(&path).unwrap();
        for sql in &MIGRATIONS[..2] {
            c.execute_batch(sql).unwrap();
        }
        c.pragma_update(None, "user_version", 2).unwrap();
        c.execute_batch(
            "INSERT INTO agents (id, name, token_hash, is_owner, scopes, ip_allowlist, created_at, updated_at, version)
               VALUES ('o', 'owner', x'01', 1, '[\"*\"]', '[]', 1, 1, 1),
                      ('a', 'ci', x'02', 0, '[\"deploy\"]', '[]', 1, 1, 2);
             INSERT INTO scope_keys (scope, agent_id, wrapped, updated_at, version)
               VALUES ('deploy', 'o', x'AA00BB', 1, 3), ('deploy', 'a', x'00CCDD', 1, 4);",
        )
        .unwrap();
        migrate(&mut c, &path).unwrap();
        let kinds: Vec<(String, String)> = c
            .prepare("SELECT id, kind FROM agents ORDER BY id")
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(
            kinds,
            [("a".into(), "agent".into()), ("o".into(), "owner".into())]
        );
        let wraps: Vec<Vec<u8>> = c
            .prepare("SELECT wrapped FROM scope_keys ORDER BY agent_id")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(wraps, [vec![1, 0, 0xCC, 0xDD], vec![1, 0xAA, 0, 0xBB]]);
        // Users and agents have separate name spaces.
        c.execute_batch(
            "INSERT INTO agents (id, name, token_hash, scopes, ip_allowlist, created_at, updated_at, version, kind, role)
               VALUES ('u', 'ci', x'03', '[]', '[]', 1, 1, 5, 'user', 'member')",
        )
        .unwrap();
        assert!(
            c.execute_batch(
                "INSERT INTO agents (id, name, token_hash, scopes, ip_allowlist, created_at, updated_at, version, kind, role)
                   VALUES ('u2', 'ci', x'04', '[]', '[]', 1, 1, 6, 'user', 'member')",
            )
            .is_err()
        );
    }
    /// Invites and provisioner marks from before migration 8 get a version above every version
    /// already handed out (a backup refuses version 0) and their last change as `updated_at`.
    #[test]
    fn migration_8_versions_invites_and_marks() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("v7.db");
        let mut c = Connection::open(&path).unwrap();
        for sql in &MIGRATIONS[..7] {
            c.execute_batch(sql).unwrap();
        }
        c.pragma_update(None, "user_version", 7).unwrap();
        c.execute_batch(
            "UPDATE sequence SET value = 41 WHERE name = 'version';
             INSERT INTO agents (id, name, token_hash, scopes, ip_allowlist, created_at, updated_at, version, kind, role)
               VALUES ('u', 'bo', x'03', '[]', '[]', 1, 1, 5, 'user', 'member');
             INSERT INTO invites (user_id, code_hash, created_at, expires_at, used_at)
               VALUES ('u', x'01', 100, 200, 150);
             INSERT INTO provisioned (id, kind, external_id, created_at) VALUES ('u', 'user', 'x', 120);",
        )
        .unwrap();
        migrate(&mut c, &path).unwrap();
        let row = |sql: &str| -> (i64, i64) {
            c.query_row(sql, [], |r| Ok((r.get(0)?, r.get(1)?)))
                .unwrap()
        };
        assert_eq!(row("SELECT version, updated_at FROM invites"), (42, 150));
        assert_eq!(
            row("SELECT version, updated_at FROM provisioned"),
            (42, 120)
        );
        assert_eq!(
            row("SELECT value, value FROM sequence WHERE name = 'version'"),
            (42, 42)
        );
    }
}
