//! Principals (the owner, users and agents: one table, `agents`, named before users existed)
//! and the scope keys wrapped for them.

use super::{Error, next_version, now_ms};
use rusqlite::{Connection, ErrorCode, OptionalExtension, Row, params};

/// A principal's row. `kind` is `owner`, `user` or `agent`.
#[derive(Debug, Clone)]
pub struct AgentRow {
    pub id: String,
    pub name: String,
    pub token_hash: [u8; 32],
    pub is_owner: bool,
    pub kind: String,
    /// Users: `admin` or `member`.
    pub role: Option<String>,
    pub email: Option<String>,
    /// Agents: who created them (`None`: an owner, before people existed).
    pub creator_id: Option<String>,
    pub scopes: Vec<String>,
    pub ip_allowlist: Vec<String>,
    pub rate_limit_per_minute: Option<u32>,
    pub public_key: Option<Vec<u8>>,
    pub sealed_private_key: Option<Vec<u8>>,
    pub created_at: i64,
    pub expires_at: Option<i64>,
    /// Agents: revoked. Users: deleted.
    pub revoked_at: Option<i64>,
    /// Users: deactivated (may be reactivated).
    pub deactivated_at: Option<i64>,
}

impl AgentRow {
    /// A row of `kind` with nothing optional set.
    pub fn new(
        id: String,
        name: String,
        kind: &str,
        token_hash: [u8; 32],
        created_at: i64,
    ) -> Self {
        Self {
            id,
            name,
            token_hash,
            is_owner: kind == "owner",
            kind: kind.to_owned(),
            role: None,
            email: None,
            creator_id: None,
            scopes: Vec::new(),
            ip_allowlist: Vec::new(),
            rate_limit_per_minute: None,
            public_key: None,
            sealed_private_key: None,
            created_at,
            expires_at: None,
            revoked_at: None,
            deactivated_at: None,
        }
    }

    /// Neither revoked (or deleted) nor deactivated.
    pub fn is_active(&self) -> bool {
        self.revoked_at.is_none() && self.deactivated_at.is_none()
    }
}

#[derive(Debug, Clone)]
pub struct ScopeKeyRow {
    pub scope: String,
    pub agent_id: String,
    pub wrapped: Vec<u8>,
}

const COLUMNS: &str = "id, name, token_hash, is_owner, scopes, ip_allowlist, rate_limit_per_minute, created_at, expires_at, revoked_at, kind, role, email, creator_id, public_key, sealed_private_key, deactivated_at";

fn json_list(s: String) -> rusqlite::Result<Vec<String>> {
    serde_json::from_str(&s).map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Text, Box::new(e))
    })
}

fn from_row(r: &Row<'_>) -> rusqlite::Result<AgentRow> {
    let hash: Vec<u8> = r.get(2)?;
    let token_hash: [u8; 32] = hash.try_into().map_err(|_| {
        rusqlite::Error::FromSqlConversionFailure(
            2,
            rusqlite::types::Type::Blob,
            "token hash is not 32 bytes".into(),
        )
    })?;
    Ok(AgentRow {
        id: r.get(0)?,
        name: r.get(1)?,
        token_hash,
        is_owner: r.get(3)?,
        scopes: json_list(r.get(4)?)?,
        ip_allowlist: json_list(r.get(5)?)?,
        rate_limit_per_minute: r.get(6)?,
        created_at: r.get(7)?,
        expires_at: r.get(8)?,
        revoked_at: r.get(9)?,
        kind: r.get(10)?,
        role: r.get(11)?,
        email: r.get(12)?,
        creator_id: r.get(13)?,
        public_key: r.get(14)?,
        sealed_private_key: r.get(15)?,
        deactivated_at: r.get(16)?,
    })
}

fn name_taken(kind: &str, name: &str) -> Error {
    let what = if kind == "user" {
        "a user"
    } else {
        "an active agent"
    };
    Error::Conflict(format!("{what} named {name:?} already exists"))
}

pub fn insert_agent(conn: &Connection, a: &AgentRow) -> Result<(), Error> {
    let version = next_version(conn)?;
    let res = conn
        .prepare_cached(
            "INSERT INTO agents (id, name, token_hash, is_owner, scopes, ip_allowlist,
                rate_limit_per_minute, created_at, expires_at, revoked_at, updated_at, version,
                kind, role, email, creator_id, public_key, sealed_private_key, deactivated_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?8, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18)",
        )?
        .execute(params![
            a.id,
            a.name,
            &a.token_hash[..],
            a.is_owner,
            serde_json::to_string(&a.scopes).unwrap_or_else(|_| "[]".into()),
            serde_json::to_string(&a.ip_allowlist).unwrap_or_else(|_| "[]".into()),
            a.rate_limit_per_minute,
            a.created_at,
            a.expires_at,
            a.revoked_at,
            version,
            a.kind,
            a.role,
            a.email,
            a.creator_id,
            a.public_key,
            a.sealed_private_key,
            a.deactivated_at,
        ]);
    match res {
        Ok(_) => Ok(()),
        Err(rusqlite::Error::SqliteFailure(e, _)) if e.code == ErrorCode::ConstraintViolation => {
            Err(name_taken(&a.kind, &a.name))
        }
        Err(e) => Err(e.into()),
    }
}

/// A principal by id, whatever its state.
pub fn get_principal(conn: &Connection, id: &str) -> Result<Option<AgentRow>, Error> {
    let sql = format!("SELECT {COLUMNS} FROM agents WHERE id = ?1");
    Ok(conn
        .prepare_cached(&sql)?
        .query_row([id], from_row)
        .optional()?)
}

/// Marks an agent revoked and destroys its copies of scope keys.
pub fn revoke_agent(conn: &Connection, id: &str) -> Result<(), Error> {
    let kind: Option<String> = conn
        .prepare_cached("SELECT kind FROM agents WHERE id = ?1 AND revoked_at IS NULL")?
        .query_row([id], |r| r.get(0))
        .optional()?;
    match kind.as_deref() {
        Some("agent") => {}
        Some("owner") => {
            return Err(Error::Rejected(
                "the owner cannot be revoked through the API".into(),
            ));
        }
        _ => return Err(Error::NotFound),
    }
    let version = next_version(conn)?;
    let at = now_ms();
    conn.prepare_cached(
        "UPDATE agents SET revoked_at = ?2, updated_at = max(?2, updated_at + 1), version = ?3 WHERE id = ?1",
    )?
    .execute(params![id, at, version])?;
    conn.prepare_cached("DELETE FROM scope_keys WHERE agent_id = ?1")?
        .execute([id])?;
    Ok(())
}

/// Every agent (not the owner, not users), revoked ones included.
pub fn list_agents(conn: &Connection) -> Result<Vec<AgentRow>, Error> {
    let sql = format!("SELECT {COLUMNS} FROM agents WHERE kind = 'agent' ORDER BY created_at, id");
    let mut stmt = conn.prepare_cached(&sql)?;
    let rows = stmt.query_map([], from_row)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Ids of the live agents `creator` made.
pub fn agents_created_by(conn: &Connection, creator: &str) -> Result<Vec<String>, Error> {
    let mut stmt = conn.prepare_cached(
        "SELECT id FROM agents WHERE creator_id = ?1 AND kind = 'agent' AND revoked_at IS NULL",
    )?;
    let rows = stmt.query_map([creator], |r| r.get(0))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Users, deleted ones excepted.
pub fn list_users(conn: &Connection) -> Result<Vec<AgentRow>, Error> {
    let sql = format!(
        "SELECT {COLUMNS} FROM agents WHERE kind = 'user' AND revoked_at IS NULL ORDER BY created_at, id"
    );
    let mut stmt = conn.prepare_cached(&sql)?;
    let rows = stmt.query_map([], from_row)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Every principal that may authenticate: neither revoked, deleted nor deactivated.
pub fn active_agents(conn: &Connection) -> Result<Vec<AgentRow>, Error> {
    let sql =
        format!("SELECT {COLUMNS} FROM agents WHERE revoked_at IS NULL AND deactivated_at IS NULL");
    let mut stmt = conn.prepare_cached(&sql)?;
    let rows = stmt.query_map([], from_row)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Changes a user's name, email and role (each when given), as one new version.
pub fn update_user(
    conn: &Connection,
    id: &str,
    name: Option<&str>,
    email: Option<&str>,
    role: Option<&str>,
) -> Result<(), Error> {
    let version = next_version(conn)?;
    let res = conn
        .prepare_cached(
            "UPDATE agents SET name = coalesce(?2, name), email = coalesce(?3, email),
                role = coalesce(?4, role), updated_at = max(?5, updated_at + 1), version = ?6
             WHERE id = ?1 AND kind = 'user' AND revoked_at IS NULL",
        )?
        .execute(params![id, name, email, role, now_ms(), version]);
    match res {
        Ok(0) => Err(Error::NotFound),
        Ok(_) => Ok(()),
        Err(rusqlite::Error::SqliteFailure(e, _)) if e.code == ErrorCode::ConstraintViolation => {
            Err(name_taken("user", name.unwrap_or_default()))
        }
        Err(e) => Err(e.into()),
    }
}

/// Marks a user deactivated (`deleted`: also deleted) and drops every copy of a scope key
/// the user holds, as tombstones so the drop replicates.
pub fn deactivate_user(conn: &Connection, id: &str, deleted: bool) -> Result<(), Error> {
    let version = next_version(conn)?;
    let at = now_ms();
    let n = conn
        .prepare_cached(
            "UPDATE agents SET deactivated_at = coalesce(deactivated_at, ?2),
                revoked_at = CASE WHEN ?4 THEN ?2 ELSE revoked_at END,
                updated_at = max(?2, updated_at + 1), version = ?3
             WHERE id = ?1 AND kind = 'user' AND revoked_at IS NULL",
        )?
        .execute(params![id, at, version, deleted])?;
    if n == 0 {
        return Err(Error::NotFound);
    }
    for k in scope_keys_of(conn, id)? {
        drop_scope_key(conn, &k.scope, id)?;
    }
    Ok(())
}

/// Makes a deactivated user active again with a new token and key pair. Returns the row.
pub fn reactivate_user(
    conn: &Connection,
    id: &str,
    hash: &[u8; 32],
    public_key: &[u8],
    sealed_private_key: &[u8],
) -> Result<AgentRow, Error> {
    let version = next_version(conn)?;
    let sql = format!(
        "UPDATE agents SET deactivated_at = NULL, token_hash = ?2, public_key = ?3,
            sealed_private_key = ?4, updated_at = max(?5, updated_at + 1), version = ?6
         WHERE id = ?1 AND kind = 'user' AND revoked_at IS NULL AND deactivated_at IS NOT NULL
         RETURNING {COLUMNS}"
    );
    conn.prepare_cached(&sql)?
        .query_row(
            params![
                id,
                &hash[..],
                public_key,
                sealed_private_key,
                now_ms(),
                version
            ],
            from_row,
        )
        .optional()?
        .ok_or(Error::NotFound)
}

/// Gives a principal without one its key pair (on its first request after migration 3).
/// Returns false if it had one already (another request got there first).
pub fn set_key_pair(
    conn: &Connection,
    id: &str,
    public_key: &[u8],
    sealed_private_key: &[u8],
) -> Result<bool, Error> {
    let version = next_version(conn)?;
    let n = conn
        .prepare_cached(
            "UPDATE agents SET public_key = ?2, sealed_private_key = ?3,
                updated_at = max(?4, updated_at + 1), version = ?5
             WHERE id = ?1 AND public_key IS NULL AND revoked_at IS NULL",
        )?
        .execute(params![
            id,
            public_key,
            sealed_private_key,
            now_ms(),
            version
        ])?;
    Ok(n == 1)
}

/// The public key of every active principal that has one, by id.
pub fn public_keys(conn: &Connection) -> Result<Vec<(String, Vec<u8>)>, Error> {
    let mut stmt = conn.prepare_cached(
        "SELECT id, public_key FROM agents
         WHERE revoked_at IS NULL AND deactivated_at IS NULL AND public_key IS NOT NULL",
    )?;
    let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// A live copy of `scope`'s key for `agent_id` (dropped copies are empty and not returned).
pub fn get_scope_key(
    conn: &Connection,
    scope: &str,
    agent_id: &str,
) -> Result<Option<Vec<u8>>, Error> {
    Ok(conn
        .prepare_cached(
            "SELECT wrapped FROM scope_keys WHERE scope = ?1 AND agent_id = ?2 AND length(wrapped) > 0",
        )?
        .query_row(params![scope, agent_id], |r| r.get(0))
        .optional()?)
}

/// Stores a copy of a scope key for a holder, over a dropped copy if there is one.
pub fn put_scope_key(conn: &Connection, k: &ScopeKeyRow) -> Result<(), Error> {
    let version = next_version(conn)?;
    conn.prepare_cached(
        "INSERT INTO scope_keys (scope, agent_id, wrapped, updated_at, version) VALUES (?1, ?2, ?3, ?4, ?5)
         ON CONFLICT (scope, agent_id) DO UPDATE SET wrapped = excluded.wrapped,
            updated_at = max(excluded.updated_at, updated_at + 1), version = excluded.version",
    )?
    .execute(params![k.scope, k.agent_id, k.wrapped, now_ms(), version])?;
    Ok(())
}

/// Drops a holder's copy of a scope key: the row stays, empty, with a new version, so the
/// drop replicates like any change. Returns whether there was a live copy.
pub fn drop_scope_key(conn: &Connection, scope: &str, agent_id: &str) -> Result<bool, Error> {
    let version = next_version(conn)?;
    let n = conn
        .prepare_cached(
            "UPDATE scope_keys SET wrapped = x'', updated_at = max(?3, updated_at + 1), version = ?4
             WHERE scope = ?1 AND agent_id = ?2 AND length(wrapped) > 0",
        )?
        .execute(params![scope, agent_id, now_ms(), version])?;
    Ok(n == 1)
}

/// The token hash of an active principal, if there is one with this id.
pub fn active_token_hash(conn: &Connection, id: &str) -> Result<Option<Vec<u8>>, Error> {
    Ok(conn
        .prepare_cached(
            "SELECT token_hash FROM agents WHERE id = ?1 AND revoked_at IS NULL AND deactivated_at IS NULL",
        )?
        .query_row([id], |r| r.get(0))
        .optional()?)
}

/// Who holds a live copy of `scope`'s key: `(name, kind)` of each active holder.
pub fn scope_key_holders(conn: &Connection, scope: &str) -> Result<Vec<(String, String)>, Error> {
    let mut stmt = conn.prepare_cached(
        "SELECT a.name, a.kind FROM scope_keys k JOIN agents a ON a.id = k.agent_id
         WHERE k.scope = ?1 AND length(k.wrapped) > 0
           AND a.revoked_at IS NULL AND a.deactivated_at IS NULL
         ORDER BY a.kind = 'owner' DESC, a.kind, a.name",
    )?;
    let rows = stmt.query_map([scope], |r| Ok((r.get(0)?, r.get(1)?)))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Every live copy of a scope key wrapped for `agent_id`.
pub fn scope_keys_of(conn: &Connection, agent_id: &str) -> Result<Vec<ScopeKeyRow>, Error> {
    let mut stmt = conn.prepare_cached(
        "SELECT scope, agent_id, wrapped FROM scope_keys
         WHERE agent_id = ?1 AND length(wrapped) > 0 ORDER BY scope",
    )?;
    let rows = stmt.query_map([agent_id], |r| {
        Ok(ScopeKeyRow {
            scope: r.get(0)?,
            agent_id: r.get(1)?,
            wrapped: r.get(2)?,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Every live copy of every scope key: `(scope, holder id)`.
pub fn all_scope_key_holders(conn: &Connection) -> Result<Vec<(String, String)>, Error> {
    let mut stmt = conn.prepare_cached(
        "SELECT scope, agent_id FROM scope_keys WHERE length(wrapped) > 0 ORDER BY scope, agent_id",
    )?;
    let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Replaces a wrapped copy of a scope key (the same key, wrapped anew). A new version and
/// `updated_at`, like any change, so it replicates.
pub fn rewrap_scope_key(conn: &Connection, k: &ScopeKeyRow) -> Result<(), Error> {
    let version = next_version(conn)?;
    let n = conn
        .prepare_cached(
            "UPDATE scope_keys SET wrapped = ?3, updated_at = max(?4, updated_at + 1), version = ?5
             WHERE scope = ?1 AND agent_id = ?2",
        )?
        .execute(params![k.scope, k.agent_id, k.wrapped, now_ms(), version])?;
    if n == 0 {
        return Err(Error::NotFound);
    }
    Ok(())
}

/// Gives an active principal a new token hash and its private key sealed under the new
/// token (a rotation), with a new version so the change replicates. Returns the row.
pub fn replace_token(
    conn: &Connection,
    id: &str,
    hash: &[u8; 32],
    sealed_private_key: &[u8],
) -> Result<AgentRow, Error> {
    let version = next_version(conn)?;
    let sql = format!(
        "UPDATE agents SET token_hash = ?2, sealed_private_key = ?3,
            updated_at = max(?4, updated_at + 1), version = ?5
         WHERE id = ?1 AND revoked_at IS NULL AND deactivated_at IS NULL RETURNING {COLUMNS}"
    );
    let res = conn
        .prepare_cached(&sql)?
        .query_row(
            params![id, &hash[..], sealed_private_key, now_ms(), version],
            from_row,
        )
        .optional();
    match res {
        Ok(Some(row)) => {
            // The private key sealed under the old token was overwritten: like a deleted value,
            // it must not outlive the next checkpoint (the writer's `temp.forgotten` count,
            // see `writer::prepare`).
            conn.prepare_cached("UPDATE temp.forgotten SET n = n + 1")?
                .execute([])?;
            Ok(row)
        }
        Ok(None) => Err(Error::NotFound),
        Err(rusqlite::Error::SqliteFailure(e, _)) if e.code == ErrorCode::ConstraintViolation => {
            Err(Error::Conflict("this token is already in use".into()))
        }
        Err(e) => Err(e.into()),
    }
}
