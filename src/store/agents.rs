//! Agents (token holders, the owner among them) and the scope keys wrapped for them.

use super::{Error, next_version, now_ms};
use rusqlite::{Connection, ErrorCode, OptionalExtension, Row, params};

#[derive(Debug, Clone)]
pub struct AgentRow {
    pub id: String,
    pub name: String,
    pub token_hash: [u8; 32],
    pub is_owner: bool,
    pub scopes: Vec<String>,
    pub ip_allowlist: Vec<String>,
    pub rate_limit_per_minute: Option<u32>,
    pub created_at: i64,
    pub expires_at: Option<i64>,
    pub revoked_at: Option<i64>,
}

#[derive(Debug, Clone)]
pub struct ScopeKeyRow {
    pub scope: String,
    pub agent_id: String,
    pub wrapped: Vec<u8>,
}

const COLUMNS: &str = "id, name, token_hash, is_owner, scopes, ip_allowlist, rate_limit_per_minute, created_at, expires_at, revoked_at";

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
    })
}

pub fn insert_agent(conn: &Connection, a: &AgentRow) -> Result<(), Error> {
    let version = next_version(conn)?;
    let res = conn
        .prepare_cached(
            "INSERT INTO agents (id, name, token_hash, is_owner, scopes, ip_allowlist,
                rate_limit_per_minute, created_at, expires_at, revoked_at, updated_at, version)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?8, ?11)",
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
        ]);
    match res {
        Ok(_) => Ok(()),
        Err(rusqlite::Error::SqliteFailure(e, _)) if e.code == ErrorCode::ConstraintViolation => {
            Err(Error::Conflict(format!(
                "an active agent named {:?} already exists",
                a.name
            )))
        }
        Err(e) => Err(e.into()),
    }
}

/// Marks an agent revoked and destroys its copies of scope keys.
pub fn revoke_agent(conn: &Connection, id: &str) -> Result<(), Error> {
    let owner: Option<bool> = conn
        .prepare_cached("SELECT is_owner FROM agents WHERE id = ?1 AND revoked_at IS NULL")?
        .query_row([id], |r| r.get(0))
        .optional()?;
    match owner {
        None => return Err(Error::NotFound),
        Some(true) => {
            return Err(Error::Rejected(
                "the owner cannot be revoked through the API".into(),
            ));
        }
        Some(false) => {}
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

pub fn list_agents(conn: &Connection) -> Result<Vec<AgentRow>, Error> {
    let sql = format!("SELECT {COLUMNS} FROM agents ORDER BY created_at, id");
    let mut stmt = conn.prepare_cached(&sql)?;
    let rows = stmt.query_map([], from_row)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

pub fn active_agents(conn: &Connection) -> Result<Vec<AgentRow>, Error> {
    let sql = format!("SELECT {COLUMNS} FROM agents WHERE revoked_at IS NULL");
    let mut stmt = conn.prepare_cached(&sql)?;
    let rows = stmt.query_map([], from_row)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

pub fn get_scope_key(
    conn: &Connection,
    scope: &str,
    agent_id: &str,
) -> Result<Option<Vec<u8>>, Error> {
    Ok(conn
        .prepare_cached("SELECT wrapped FROM scope_keys WHERE scope = ?1 AND agent_id = ?2")?
        .query_row(params![scope, agent_id], |r| r.get(0))
        .optional()?)
}

pub fn put_scope_key(conn: &Connection, k: &ScopeKeyRow) -> Result<(), Error> {
    let version = next_version(conn)?;
    conn.prepare_cached(
        "INSERT INTO scope_keys (scope, agent_id, wrapped, updated_at, version) VALUES (?1, ?2, ?3, ?4, ?5)",
    )?
    .execute(params![k.scope, k.agent_id, k.wrapped, now_ms(), version])?;
    Ok(())
}

/// The token hash of an active agent (the owner included), if there is one with this id.
pub fn active_token_hash(conn: &Connection, id: &str) -> Result<Option<Vec<u8>>, Error> {
    Ok(conn
        .prepare_cached("SELECT token_hash FROM agents WHERE id = ?1 AND revoked_at IS NULL")?
        .query_row([id], |r| r.get(0))
        .optional()?)
}

/// Who holds a copy of `scope`'s key: `(agent name, is owner)` of each holder.
pub fn scope_key_holders(conn: &Connection, scope: &str) -> Result<Vec<(String, bool)>, Error> {
    let mut stmt = conn.prepare_cached(
        "SELECT a.name, a.is_owner FROM scope_keys k JOIN agents a ON a.id = k.agent_id
         WHERE k.scope = ?1 ORDER BY a.is_owner DESC, a.name",
    )?;
    let rows = stmt.query_map([scope], |r| Ok((r.get(0)?, r.get(1)?)))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Every scope key wrapped for `agent_id`.
pub fn scope_keys_of(conn: &Connection, agent_id: &str) -> Result<Vec<ScopeKeyRow>, Error> {
    let mut stmt = conn.prepare_cached(
        "SELECT scope, agent_id, wrapped FROM scope_keys WHERE agent_id = ?1 ORDER BY scope",
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

/// Replaces a wrapped copy of a scope key (the same key, wrapped for a new token). A new
/// version and `updated_at`, like any change, so it replicates.
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

/// Gives an active agent (the owner, on rotation) a new token hash, with a new version and
/// `updated_at` so the change replicates. Returns the row as it now is.
pub fn replace_token_hash(conn: &Connection, id: &str, hash: &[u8; 32]) -> Result<AgentRow, Error> {
    let version = next_version(conn)?;
    let sql = format!(
        "UPDATE agents SET token_hash = ?2, updated_at = max(?3, updated_at + 1), version = ?4
         WHERE id = ?1 AND revoked_at IS NULL RETURNING {COLUMNS}"
    );
    let res = conn
        .prepare_cached(&sql)?
        .query_row(params![id, &hash[..], now_ms(), version], from_row)
        .optional();
    match res {
        Ok(Some(row)) => Ok(row),
        Ok(None) => Err(Error::NotFound),
        Err(rusqlite::Error::SqliteFailure(e, _)) if e.code == ErrorCode::ConstraintViolation => {
            Err(Error::Conflict("this token is already in use".into()))
        }
        Err(e) => Err(e.into()),
    }
}
