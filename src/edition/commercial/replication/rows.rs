//! Replication's SQL: which rows are owed, marking them once acknowledged, and applying a
//! pushed batch on the backup (idempotent, last-write-wins).

use super::wire::{AgentItem, EntryItem, FieldItem, Item, ScopeKeyItem, Stamp};
use crate::store;
use rusqlite::{Connection, OptionalExtension, params};
use std::collections::HashSet;

use super::super::schema::OWED;

/// Up to `limit` owed rows, agents first (scope keys reference them), then scope keys, then
/// entries, oldest change first; stops early once the batch weighs `max_bytes`. Entries in
/// `skip` (already on their way in another batch) are passed over.
pub fn collect(
    conn: &Connection,
    local: &str,
    limit: usize,
    max_bytes: usize,
    skip: &HashSet<String>,
) -> Result<Vec<Item>, store::Error> {
    let mut items: Vec<Item> = Vec::new();
    let mut weight = 0usize;
    let full = |items: &Vec<Item>, weight: usize| items.len() >= limit || weight >= max_bytes;
    let stamp = |version: i64, updated_at: i64, origin: Option<String>| Stamp {
        version,
        updated_at,
        origin: origin.unwrap_or_else(|| local.to_owned()),
    };

    let mut stmt = conn.prepare_cached(&format!(
        "SELECT id, name, token_hash, is_owner, scopes, ip_allowlist, rate_limit_per_minute,
                created_at, expires_at, revoked_at, version, updated_at, origin
         FROM agents WHERE {OWED} ORDER BY updated_at LIMIT ?1"
    ))?;
    let mut rows = stmt.query([limit as i64])?;
    while let Some(r) = rows.next()? {
        let item = Item::Agent(AgentItem {
            id: r.get(0)?,
            name: r.get(1)?,
            token_hash: r.get(2)?,
            is_owner: r.get(3)?,
            scopes: r.get(4)?,
            ip_allowlist: r.get(5)?,
            rate_limit_per_minute: r.get(6)?,
            created_at: r.get(7)?,
            expires_at: r.get(8)?,
            revoked_at: r.get(9)?,
            stamp: stamp(r.get(10)?, r.get(11)?, r.get(12)?),
        });
        weight += item.weight();
        items.push(item);
        if full(&items, weight) {
            return Ok(items);
        }
    }
    drop(rows);

    let mut stmt = conn.prepare_cached(&format!(
        "SELECT scope, agent_id, wrapped, version, updated_at, origin
         FROM scope_keys WHERE {OWED} ORDER BY updated_at LIMIT ?1"
    ))?;
    let mut rows = stmt.query([(limit - items.len()) as i64])?;
    while let Some(r) = rows.next()? {
        let item = Item::ScopeKey(ScopeKeyItem {
            scope: r.get(0)?,
            agent_id: r.get(1)?,
            wrapped: r.get(2)?,
            stamp: stamp(r.get(3)?, r.get(4)?, r.get(5)?),
        });
        weight += item.weight();
        items.push(item);
        if full(&items, weight) {
            return Ok(items);
        }
    }
    drop(rows);

    let mut stmt = conn.prepare_cached(&format!(
        "SELECT id, meta, created_at, deleted, version, updated_at, origin
         FROM entries WHERE {OWED} ORDER BY updated_at LIMIT ?1"
    ))?;
    let mut fields = conn.prepare_cached(
        "SELECT position, name, tier, scope, ciphertext FROM fields WHERE entry_id = ?1 ORDER BY position",
    )?;
    let mut rows = stmt.query([(limit - items.len() + skip.len()) as i64])?;
    while let Some(r) = rows.next()? {
        let id: String = r.get(0)?;
        if skip.contains(&id) {
            continue;
        }
        let fs = fields
            .query_map([&id], |f| {
                Ok(FieldItem {
                    position: f.get(0)?,
                    name: f.get(1)?,
                    tier: f.get(2)?,
                    scope: f.get(3)?,
                    ciphertext: f.get(4)?,
                })
            })?
            .collect::<Result<Vec<_>, _>>()?;
        let item = Item::Entry(EntryItem {
            id,
            meta: r.get(1)?,
            created_at: r.get(2)?,
            deleted: r.get(3)?,
            fields: fs,
            stamp: stamp(r.get(4)?, r.get(5)?, r.get(6)?),
        });
        weight += item.weight();
        items.push(item);
        if full(&items, weight) {
            break;
        }
    }
    Ok(items)
}

/// Marks acknowledged rows, but only the version that was sent: a row written again since
/// has a later `updated_at` and stays owed.
pub fn mark(conn: &Connection, items: &[Item]) -> Result<(), store::Error> {
    for item in items {
        let at = item.stamp().updated_at;
        match item {
            Item::Agent(a) => conn
                .prepare_cached("UPDATE agents SET replicated_at = ?2 WHERE id = ?1 AND updated_at = ?2")?
                .execute(params![a.id, at])?,
            Item::ScopeKey(k) => conn
                .prepare_cached(
                    "UPDATE scope_keys SET replicated_at = ?3 WHERE scope = ?1 AND agent_id = ?2 AND updated_at = ?3",
                )?
                .execute(params![k.scope, k.agent_id, at])?,
            Item::Entry(e) => conn
                .prepare_cached("UPDATE entries SET replicated_at = ?2 WHERE id = ?1 AND updated_at = ?2")?
                .execute(params![e.id, at])?,
        };
    }
    Ok(())
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Applied {
    pub applied: usize,
    pub skipped: usize,
    pub max_version: i64,
    pub agents_changed: bool,
}

fn existing(
    conn: &Connection,
    sql: &str,
    local: &str,
    key: impl rusqlite::Params,
) -> Result<Option<Stamp>, store::Error> {
    Ok(conn
        .prepare_cached(sql)?
        .query_row(key, |r| {
            Ok(Stamp {
                version: r.get(0)?,
                updated_at: r.get(1)?,
                origin: r
                    .get::<_, Option<String>>(2)?
                    .unwrap_or_else(|| local.to_owned()),
            })
        })
        .optional()?)
}

/// Applies a batch inside the caller's transaction. Rows land already marked as replicated,
/// so a backup promoted later does not push them back (no cascade). The local version
/// sequence moves past every applied version, so writes made after a promotion win.
pub fn apply(conn: &Connection, local: &str, items: &[Item]) -> Result<Applied, store::Error> {
    // Scope keys reference agents; within one batch the order must not matter.
    conn.execute_batch("PRAGMA defer_foreign_keys = ON;")?;
    let mut out = Applied::default();
    for item in items {
        let stamp = item.stamp();
        out.max_version = out.max_version.max(stamp.version);
        let current = match item {
            Item::Agent(a) => existing(
                conn,
                "SELECT version, updated_at, origin FROM agents WHERE id = ?1",
                local,
                [&a.id],
            )?,
            Item::ScopeKey(k) => existing(
                conn,
                "SELECT version, updated_at, origin FROM scope_keys WHERE scope = ?1 AND agent_id = ?2",
                local,
                [&k.scope, &k.agent_id],
            )?,
            Item::Entry(e) => existing(
                conn,
                "SELECT version, updated_at, origin FROM entries WHERE id = ?1",
                local,
                [&e.id],
            )?,
        };
        if current.as_ref().is_some_and(|c| c >= stamp) {
            out.skipped += 1;
            continue;
        }
        match item {
            Item::Agent(a) => {
                conn.prepare_cached(
                    "INSERT INTO agents (id, name, token_hash, is_owner, scopes, ip_allowlist, rate_limit_per_minute,
                        created_at, expires_at, revoked_at, updated_at, version, replicated_at, origin)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?11, ?13)
                     ON CONFLICT (id) DO UPDATE SET name = excluded.name, token_hash = excluded.token_hash,
                        is_owner = excluded.is_owner, scopes = excluded.scopes, ip_allowlist = excluded.ip_allowlist,
                        rate_limit_per_minute = excluded.rate_limit_per_minute, created_at = excluded.created_at,
                        expires_at = excluded.expires_at, revoked_at = excluded.revoked_at,
                        updated_at = excluded.updated_at, version = excluded.version,
                        replicated_at = excluded.replicated_at, origin = excluded.origin",
                )?
                .execute(params![
                    a.id, a.name, a.token_hash, a.is_owner, a.scopes, a.ip_allowlist, a.rate_limit_per_minute,
                    a.created_at, a.expires_at, a.revoked_at, stamp.updated_at, stamp.version, stamp.origin
                ])?;
                if a.revoked_at.is_some() {
                    // As on the primary: a revoked agent keeps no copy of any scope key.
                    conn.prepare_cached("DELETE FROM scope_keys WHERE agent_id = ?1")?
                        .execute([&a.id])?;
                }
                out.agents_changed = true;
            }
            Item::ScopeKey(k) => {
                conn.prepare_cached(
                    "INSERT INTO scope_keys (scope, agent_id, wrapped, updated_at, version, replicated_at, origin)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?4, ?6)
                     ON CONFLICT (scope, agent_id) DO UPDATE SET wrapped = excluded.wrapped,
                        updated_at = excluded.updated_at, version = excluded.version,
                        replicated_at = excluded.replicated_at, origin = excluded.origin",
                )?
                .execute(params![k.scope, k.agent_id, k.wrapped, stamp.updated_at, stamp.version, stamp.origin])?;
            }
            Item::Entry(e) => {
                conn.prepare_cached(
                    "INSERT INTO entries (id, meta, created_at, updated_at, version, deleted, replicated_at, origin)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?4, ?7)
                     ON CONFLICT (id) DO UPDATE SET meta = excluded.meta, created_at = excluded.created_at,
                        updated_at = excluded.updated_at, version = excluded.version, deleted = excluded.deleted,
                        replicated_at = excluded.replicated_at, origin = excluded.origin",
                )?
                .execute(params![e.id, e.meta, e.created_at, stamp.updated_at, stamp.version, e.deleted, stamp.origin])?;
                conn.prepare_cached("DELETE FROM fields WHERE entry_id = ?1")?
                    .execute([&e.id])?;
                let mut ins = conn.prepare_cached(
                    "INSERT INTO fields (entry_id, position, name, tier, scope, ciphertext) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                )?;
                for f in &e.fields {
                    ins.execute(params![
                        e.id,
                        f.position,
                        f.name,
                        f.tier,
                        f.scope,
                        f.ciphertext
                    ])?;
                }
            }
        }
        out.applied += 1;
    }
    store::raise_version(conn, out.max_version)?;
    Ok(out)
}
