//! Replication's SQL: which rows are owed, marking them once acknowledged, and applying a
//! pushed batch on the backup (idempotent, last-write-wins).

use super::wire::{
    AgentItem, EntryItem, FieldItem, GroupItem, GroupMemberItem, InviteItem, Item, ProvisionedItem,
    ScopeKeyItem, Stamp,
};
use crate::store;
use rusqlite::{Connection, OptionalExtension, params};
use std::collections::HashSet;

use super::super::schema::{self, FIRST_OWED, OWED};

/// One batch's worth of owed rows, read from one snapshot of the database.
#[derive(Debug)]
pub struct Collected {
    pub items: Vec<Item>,
    /// The last version committed in the snapshot the rows were read from.
    pub snapshot: i64,
    /// This batch's recovery point (see [`watermark`]).
    pub watermark: i64,
}

/// Up to `limit` owed rows, agents first (scope keys, memberships and invites reference them),
/// then groups, memberships, scope keys, invites, SCIM's marks, then entries, oldest
/// unacknowledged change first; stops early once the batch weighs `max_bytes`.
/// Entries in `skip` (already on their way in another batch) are passed over.
///
/// Every query runs in one read transaction: a scope key committed with its agent between
/// two queries must not travel without it.
pub fn collect(
    conn: &Connection,
    local: &str,
    limit: usize,
    max_bytes: usize,
    skip: &HashSet<String>,
) -> Result<Collected, store::Error> {
    let tx = conn.unchecked_transaction()?;
    let snapshot = store::committed_version(&tx)?;
    let items = collect_rows(&tx, local, limit, max_bytes, skip)?;
    let watermark = watermark(&tx, snapshot, &items)?;
    tx.finish()?;
    Ok(Collected {
        items,
        snapshot,
        watermark,
    })
}

/// The batch being filled: owed rows in the order they are read, and their weight.
struct Filling {
    items: Vec<Item>,
    weight: usize,
    limit: usize,
    max_bytes: usize,
}

impl Filling {
    /// Adds `table`'s owed rows, first owed change first, as `item` maps each (`None`: pass
    /// over), reading up to `extra` rows more than there is room for (the ones passed over).
    /// Returns whether the batch is full.
    fn take(
        &mut self,
        conn: &Connection,
        table: &str,
        columns: &str,
        extra: usize,
        mut item: impl FnMut(&rusqlite::Row<'_>) -> rusqlite::Result<Option<Item>>,
    ) -> Result<bool, store::Error> {
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT {columns} FROM {table} WHERE {OWED} ORDER BY {FIRST_OWED} LIMIT ?1"
        ))?;
        let mut rows = stmt.query([(self.limit - self.items.len() + extra) as i64])?;
        while let Some(r) = rows.next()? {
            let Some(item) = item(r)? else { continue };
            self.weight += item.weight();
            self.items.push(item);
            if self.items.len() >= self.limit || self.weight >= self.max_bytes {
                return Ok(true);
            }
        }
        Ok(false)
    }
}

fn collect_rows(
    conn: &Connection,
    local: &str,
    limit: usize,
    max_bytes: usize,
    skip: &HashSet<String>,
) -> Result<Vec<Item>, store::Error> {
    let mut b = Filling {
        items: Vec::new(),
        weight: 0,
        limit,
        max_bytes,
    };
    let stamp = |r: &rusqlite::Row<'_>, at: usize| -> rusqlite::Result<Stamp> {
        Ok(Stamp {
            version: r.get(at)?,
            updated_at: r.get(at + 1)?,
            origin: r
                .get::<_, Option<String>>(at + 2)?
                .unwrap_or_else(|| local.to_owned()),
        })
    };
    // Each table's columns end with its stamp: version, updated_at, origin.
    let full = b.take(
        conn,
        "agents",
        "id, name, token_hash, is_owner, scopes, ip_allowlist, rate_limit_per_minute,
         created_at, expires_at, revoked_at, kind, role, email, creator_id, public_key,
         sealed_private_key, deactivated_at, version, updated_at, origin",
        0,
        |r| {
            Ok(Some(Item::Agent(AgentItem {
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
                principal_kind: r.get(10)?,
                role: r.get(11)?,
                email: r.get(12)?,
                creator_id: r.get(13)?,
                public_key: r.get(14)?,
                sealed_private_key: r.get(15)?,
                deactivated_at: r.get(16)?,
                stamp: stamp(r, 17)?,
            })))
        },
    )? || b.take(
        conn,
        "groups",
        "id, name, scopes, created_at, deleted, version, updated_at, origin",
        0,
        |r| {
            Ok(Some(Item::Group(GroupItem {
                id: r.get(0)?,
                name: r.get(1)?,
                scopes: r.get(2)?,
                created_at: r.get(3)?,
                deleted: r.get(4)?,
                stamp: stamp(r, 5)?,
            })))
        },
    )? || b.take(
        conn,
        "group_members",
        "group_id, user_id, deleted, pending, version, updated_at, origin",
        0,
        |r| {
            Ok(Some(Item::GroupMember(GroupMemberItem {
                group_id: r.get(0)?,
                user_id: r.get(1)?,
                deleted: r.get(2)?,
                pending: r.get(3)?,
                stamp: stamp(r, 4)?,
            })))
        },
    )? || b.take(
        conn,
        "scope_keys",
        "scope, agent_id, wrapped, version, updated_at, origin",
        0,
        |r| {
            Ok(Some(Item::ScopeKey(ScopeKeyItem {
                scope: r.get(0)?,
                agent_id: r.get(1)?,
                wrapped: r.get(2)?,
                stamp: stamp(r, 3)?,
            })))
        },
    )? || b.take(
        conn,
        "invites",
        "user_id, code_hash, created_at, expires_at, used_at, version, updated_at, origin",
        0,
        |r| {
            Ok(Some(Item::Invite(InviteItem {
                user_id: r.get(0)?,
                code_hash: r.get(1)?,
                created_at: r.get(2)?,
                expires_at: r.get(3)?,
                used_at: r.get(4)?,
                stamp: stamp(r, 5)?,
            })))
        },
    )? || b.take(
        conn,
        "provisioned",
        "id, kind, external_id, created_at, version, updated_at, origin",
        0,
        |r| {
            Ok(Some(Item::Provisioned(ProvisionedItem {
                id: r.get(0)?,
                resource: r.get(1)?,
                external_id: r.get(2)?,
                created_at: r.get(3)?,
                stamp: stamp(r, 4)?,
            })))
        },
    )?;
    if full {
        return Ok(b.items);
    }

    let mut fields = conn.prepare_cached(
        "SELECT position, name, tier, scope, ciphertext, agent_access, allowed_hosts
         FROM fields WHERE entry_id = ?1 ORDER BY position",
    )?;
    b.take(
        conn,
        "entries",
        "id, meta, created_at, deleted, version, updated_at, origin",
        skip.len(),
        |r| {
            let id: String = r.get(0)?;
            if skip.contains(&id) {
                return Ok(None);
            }
            let fields = fields
                .query_map([&id], |f| {
                    Ok(FieldItem {
                        position: f.get(0)?,
                        name: f.get(1)?,
                        tier: f.get(2)?,
                        scope: f.get(3)?,
                        ciphertext: f.get(4)?,
                        agent_access: f.get(5)?,
                        allowed_hosts: f.get(6)?,
                    })
                })?
                .collect::<Result<Vec<_>, _>>()?;
            Ok(Some(Item::Entry(EntryItem {
                id,
                meta: r.get(1)?,
                created_at: r.get(2)?,
                deleted: r.get(3)?,
                fields,
                stamp: stamp(r, 4)?,
            })))
        },
    )?;
    Ok(b.items)
}

/// The recovery point of a batch of `items` read at `snapshot`: the highest version `W` such
/// that every change with a version at or below `W` is on the backup already or in `items`.
///
/// A row that is not owed was acknowledged as it stands. An owed row in `items` travels as
/// it stands. Every other owed row has each change below its first owed one
/// ([`FIRST_OWED`]) on the backup, and nothing else known: so `W` stops just below the
/// earliest such change. Rows in other batches still in flight are owed and not in `items`,
/// so they hold `W` down until they are acknowledged *and* marked. With `items` empty this is
/// what the backup holds for certain: the primary's acknowledged watermark.
pub fn watermark(conn: &Connection, snapshot: i64, items: &[Item]) -> Result<i64, store::Error> {
    let mut agents = HashSet::new();
    let mut keys = HashSet::new();
    let mut entries = HashSet::new();
    let mut groups = HashSet::new();
    let mut members = HashSet::new();
    let mut invites = HashSet::new();
    let mut provisioned = HashSet::new();
    for item in items {
        match item {
            Item::Agent(a) => drop(agents.insert(a.id.as_str())),
            Item::ScopeKey(k) => drop(keys.insert((k.scope.as_str(), k.agent_id.as_str()))),
            Item::Entry(e) => drop(entries.insert(e.id.as_str())),
            Item::Group(g) => drop(groups.insert(g.id.as_str())),
            Item::GroupMember(m) => drop(members.insert((m.group_id.as_str(), m.user_id.as_str()))),
            Item::Invite(i) => drop(invites.insert(i.user_id.as_str())),
            Item::Provisioned(p) => drop(provisioned.insert(p.id.as_str())),
        }
    }
    let mut w = snapshot;
    // In first-owed order, the first row not in this batch bounds the watermark; at most
    // `items.len() + 1` rows are read per table.
    let mut first_unsent = |sql: &str, sent: &dyn Fn(&str, &str) -> bool| {
        let mut stmt = conn.prepare_cached(sql)?;
        let mut rows = stmt.query([])?;
        while let Some(r) = rows.next()? {
            let (a, b, first): (String, String, i64) = (r.get(0)?, r.get(1)?, r.get(2)?);
            if !sent(&a, &b) {
                w = w.min(first - 1);
                break;
            }
        }
        Ok::<_, store::Error>(())
    };
    first_unsent(
        &format!("SELECT id, '', {FIRST_OWED} FROM agents WHERE {OWED} ORDER BY {FIRST_OWED}"),
        &|id, _| agents.contains(id),
    )?;
    first_unsent(
        &format!(
            "SELECT scope, agent_id, {FIRST_OWED} FROM scope_keys WHERE {OWED} ORDER BY {FIRST_OWED}"
        ),
        &|scope, agent| keys.contains(&(scope, agent)),
    )?;
    first_unsent(
        &format!("SELECT id, '', {FIRST_OWED} FROM entries WHERE {OWED} ORDER BY {FIRST_OWED}"),
        &|id, _| entries.contains(id),
    )?;
    first_unsent(
        &format!("SELECT id, '', {FIRST_OWED} FROM groups WHERE {OWED} ORDER BY {FIRST_OWED}"),
        &|id, _| groups.contains(id),
    )?;
    first_unsent(
        &format!(
            "SELECT group_id, user_id, {FIRST_OWED} FROM group_members WHERE {OWED} ORDER BY {FIRST_OWED}"
        ),
        &|g, u| members.contains(&(g, u)),
    )?;
    first_unsent(
        &format!(
            "SELECT user_id, '', {FIRST_OWED} FROM invites WHERE {OWED} ORDER BY {FIRST_OWED}"
        ),
        &|id, _| invites.contains(id),
    )?;
    first_unsent(
        &format!("SELECT id, '', {FIRST_OWED} FROM provisioned WHERE {OWED} ORDER BY {FIRST_OWED}"),
        &|id, _| provisioned.contains(id),
    )?;
    Ok(w.max(0))
}

/// The primary's acknowledged watermark: every change at or below it is on the backup.
pub fn acked_watermark(conn: &Connection) -> Result<i64, store::Error> {
    let tx = conn.unchecked_transaction()?;
    let w = watermark(&tx, store::committed_version(&tx)?, &[])?;
    tx.finish()?;
    Ok(w)
}

/// Marks acknowledged rows, but only the version that was sent: a row written again since
/// has a later `updated_at` and stays owed. Its changes up to `snapshot` (the one the batch
/// was read from) are on the backup now, so its first owed change is at least `snapshot + 1`.
pub fn mark(conn: &Connection, items: &[Item], snapshot: i64) -> Result<(), store::Error> {
    for item in items {
        let (table, key) = match item {
            Item::Agent(_) => ("agents", "id = ?1"),
            Item::ScopeKey(_) => ("scope_keys", "scope = ?1 AND agent_id = ?3"),
            Item::Entry(_) => ("entries", "id = ?1"),
            Item::Group(_) => ("groups", "id = ?1"),
            Item::GroupMember(_) => ("group_members", "group_id = ?1 AND user_id = ?3"),
            Item::Invite(_) => ("invites", "user_id = ?1"),
            Item::Provisioned(_) => ("provisioned", "id = ?1"),
        };
        let run = |sql: &str, value: i64| -> Result<usize, store::Error> {
            let mut stmt = conn.prepare_cached(sql)?;
            Ok(match item {
                Item::Agent(a) => stmt.execute(params![a.id, value])?,
                Item::ScopeKey(k) => stmt.execute(params![k.scope, value, k.agent_id])?,
                Item::Entry(e) => stmt.execute(params![e.id, value])?,
                Item::Group(g) => stmt.execute(params![g.id, value])?,
                Item::GroupMember(m) => stmt.execute(params![m.group_id, value, m.user_id])?,
                Item::Invite(i) => stmt.execute(params![i.user_id, value])?,
                Item::Provisioned(p) => stmt.execute(params![p.id, value])?,
            })
        };
        let marked = run(
            &format!("UPDATE {table} SET replicated_at = ?2 WHERE {key} AND updated_at = ?2"),
            item.stamp().updated_at,
        )?;
        if marked == 0 {
            run(
                &format!(
                    "UPDATE {table} SET owed_since = max(coalesce(owed_since, 0), ?2) WHERE {key} AND {OWED}"
                ),
                snapshot + 1,
            )?;
        }
    }
    Ok(())
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Applied {
    pub applied: usize,
    pub skipped: usize,
    pub max_version: i64,
    /// Principals, groups or memberships changed: the table of live tokens must be rebuilt.
    pub agents_changed: bool,
    /// The backup's applied watermark once this batch commits.
    pub watermark: i64,
}

/// Why a batch was not applied.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    /// The batch does not fit what this backup holds: a client error, nothing applied.
    #[error("{0}")]
    Refused(String),
    #[error(transparent)]
    Store(#[from] store::Error),
}

impl From<rusqlite::Error> for ApplyError {
    fn from(e: rusqlite::Error) -> Self {
        match &e {
            rusqlite::Error::SqliteFailure(f, msg)
                if f.code == rusqlite::ErrorCode::ConstraintViolation =>
            {
                ApplyError::Refused(format!(
                    "the batch conflicts with what this backup holds ({})",
                    msg.as_deref().unwrap_or("a constraint failed")
                ))
            }
            _ => ApplyError::Store(e.into()),
        }
    }
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

/// Agents, then groups, memberships (they reference both), scope keys and invites (they
/// reference agents), SCIM's marks, then entries; in batch order within each.
fn apply_order(item: &Item) -> u8 {
    match item {
        Item::Agent(_) => 0,
        Item::Group(_) => 1,
        Item::GroupMember(_) => 2,
        Item::ScopeKey(_) => 3,
        Item::Invite(_) => 4,
        Item::Provisioned(_) => 5,
        Item::Entry(_) => 6,
    }
}

/// Refuses a row wrapped for or issued to a principal neither the batch nor this backup holds.
fn require_principal(conn: &Connection, id: &str, row: &str) -> Result<(), ApplyError> {
    let known = conn
        .prepare_cached("SELECT 1 FROM agents WHERE id = ?1")?
        .exists([id])?;
    if known {
        Ok(())
    } else {
        Err(ApplyError::Refused(format!(
            "{row} is for principal {id}, which neither this batch nor this backup holds"
        )))
    }
}

/// Applies a batch inside the caller's savepoint. Rows land already marked as replicated,
/// so a backup promoted later does not push them back (no cascade). The local version
/// sequence moves past every applied version, so writes made after a promotion win.
///
/// Foreign keys are checked as each row is written (agents go first), never deferred to the
/// commit: a bad batch fails its own job, not the group commit it shares with others.
pub fn apply(
    conn: &Connection,
    local: &str,
    items: &[Item],
    watermark: Option<i64>,
) -> Result<Applied, ApplyError> {
    let mut out = Applied::default();
    let mut ordered: Vec<&Item> = items.iter().collect();
    ordered.sort_by_key(|i| apply_order(i));
    for item in ordered {
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
            Item::Group(g) => existing(
                conn,
                "SELECT version, updated_at, origin FROM groups WHERE id = ?1",
                local,
                [&g.id],
            )?,
            Item::GroupMember(m) => existing(
                conn,
                "SELECT version, updated_at, origin FROM group_members WHERE group_id = ?1 AND user_id = ?2",
                local,
                [&m.group_id, &m.user_id],
            )?,
            Item::Invite(i) => existing(
                conn,
                "SELECT version, updated_at, origin FROM invites WHERE user_id = ?1",
                local,
                [&i.user_id],
            )?,
            Item::Provisioned(p) => existing(
                conn,
                "SELECT version, updated_at, origin FROM provisioned WHERE id = ?1",
                local,
                [&p.id],
            )?,
        };
        if current.as_ref().is_some_and(|c| c >= stamp) {
            out.skipped += 1;
            continue;
        }
        match item {
            Item::Agent(a) => {
                let kind = a.principal_kind.as_deref().unwrap_or(if a.is_owner {
                    "owner"
                } else {
                    "agent"
                });
                conn.prepare_cached(
                    "INSERT INTO agents (id, name, token_hash, is_owner, scopes, ip_allowlist, rate_limit_per_minute,
                        created_at, expires_at, revoked_at, updated_at, version, replicated_at, origin,
                        kind, role, email, creator_id, public_key, sealed_private_key, deactivated_at)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?11, ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20)
                     ON CONFLICT (id) DO UPDATE SET name = excluded.name, token_hash = excluded.token_hash,
                        is_owner = excluded.is_owner, scopes = excluded.scopes, ip_allowlist = excluded.ip_allowlist,
                        rate_limit_per_minute = excluded.rate_limit_per_minute, created_at = excluded.created_at,
                        expires_at = excluded.expires_at, revoked_at = excluded.revoked_at,
                        updated_at = excluded.updated_at, version = excluded.version,
                        replicated_at = excluded.replicated_at, origin = excluded.origin,
                        kind = excluded.kind, role = excluded.role, email = excluded.email,
                        creator_id = excluded.creator_id, public_key = excluded.public_key,
                        sealed_private_key = excluded.sealed_private_key,
                        deactivated_at = excluded.deactivated_at",
                )?
                .execute(params![
                    a.id, a.name, a.token_hash, a.is_owner, a.scopes, a.ip_allowlist, a.rate_limit_per_minute,
                    a.created_at, a.expires_at, a.revoked_at, stamp.updated_at, stamp.version, stamp.origin,
                    kind, a.role, a.email, a.creator_id, a.public_key, a.sealed_private_key, a.deactivated_at
                ])?;
                if a.revoked_at.is_some() {
                    // As on the primary: a revoked agent keeps no copy of any scope key.
                    conn.prepare_cached("DELETE FROM scope_keys WHERE agent_id = ?1")?
                        .execute([&a.id])?;
                }
                out.agents_changed = true;
            }
            Item::ScopeKey(k) => {
                require_principal(conn, &k.agent_id, &format!("scope key {:?}", k.scope))?;
                conn.prepare_cached(
                    "INSERT INTO scope_keys (scope, agent_id, wrapped, updated_at, version, replicated_at, origin)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?4, ?6)
                     ON CONFLICT (scope, agent_id) DO UPDATE SET wrapped = excluded.wrapped,
                        updated_at = excluded.updated_at, version = excluded.version,
                        replicated_at = excluded.replicated_at, origin = excluded.origin",
                )?
                .execute(params![k.scope, k.agent_id, k.wrapped, stamp.updated_at, stamp.version, stamp.origin])?;
            }
            Item::Group(g) => {
                conn.prepare_cached(
                    "INSERT INTO groups (id, name, scopes, created_at, updated_at, version, deleted, replicated_at, origin)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?5, ?8)
                     ON CONFLICT (id) DO UPDATE SET name = excluded.name, scopes = excluded.scopes,
                        created_at = excluded.created_at, updated_at = excluded.updated_at,
                        version = excluded.version, deleted = excluded.deleted,
                        replicated_at = excluded.replicated_at, origin = excluded.origin",
                )?
                .execute(params![g.id, g.name, g.scopes, g.created_at, stamp.updated_at, stamp.version, g.deleted, stamp.origin])?;
                out.agents_changed = true;
            }
            Item::GroupMember(m) => {
                conn.prepare_cached(
                    "INSERT INTO group_members (group_id, user_id, updated_at, version, deleted, replicated_at, origin, pending)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?3, ?6, ?7)
                     ON CONFLICT (group_id, user_id) DO UPDATE SET updated_at = excluded.updated_at,
                        version = excluded.version, deleted = excluded.deleted,
                        replicated_at = excluded.replicated_at, origin = excluded.origin,
                        pending = excluded.pending",
                )?
                .execute(params![m.group_id, m.user_id, stamp.updated_at, stamp.version, m.deleted, stamp.origin, m.pending])?;
                out.agents_changed = true;
            }
            Item::Invite(i) => {
                require_principal(conn, &i.user_id, "an invite")?;
                // A used code stays used: only a new code (a new invite) comes unused, so a
                // replayed or reordered copy can never make a redeemed code work again.
                conn.prepare_cached(
                    "INSERT INTO invites (user_id, code_hash, created_at, expires_at, used_at, updated_at, version, replicated_at, origin)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?6, ?8)
                     ON CONFLICT (user_id) DO UPDATE SET
                        used_at = CASE WHEN code_hash = excluded.code_hash
                            THEN coalesce(used_at, excluded.used_at) ELSE excluded.used_at END,
                        code_hash = excluded.code_hash, created_at = excluded.created_at,
                        expires_at = excluded.expires_at, updated_at = excluded.updated_at,
                        version = excluded.version, replicated_at = excluded.replicated_at,
                        origin = excluded.origin",
                )?
                .execute(params![i.user_id, i.code_hash, i.created_at, i.expires_at, i.used_at, stamp.updated_at, stamp.version, stamp.origin])?;
            }
            Item::Provisioned(p) => {
                conn.prepare_cached(
                    "INSERT INTO provisioned (id, kind, external_id, created_at, updated_at, version, replicated_at, origin)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?5, ?7)
                     ON CONFLICT (id) DO UPDATE SET kind = excluded.kind,
                        external_id = excluded.external_id, created_at = excluded.created_at,
                        updated_at = excluded.updated_at, version = excluded.version,
                        replicated_at = excluded.replicated_at, origin = excluded.origin",
                )?
                .execute(params![p.id, p.resource, p.external_id, p.created_at, stamp.updated_at, stamp.version, stamp.origin])?;
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
                    "INSERT INTO fields (entry_id, position, name, tier, scope, ciphertext, agent_access, allowed_hosts)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                )?;
                for f in &e.fields {
                    ins.execute(params![
                        e.id,
                        f.position,
                        f.name,
                        f.tier,
                        f.scope,
                        f.ciphertext,
                        f.agent_access,
                        f.allowed_hosts
                    ])?;
                }
            }
        }
        out.applied += 1;
    }
    store::raise_version(conn, out.max_version)?;
    if let Some(w) = watermark {
        schema::raise_applied_watermark(conn, w)?;
    }
    out.watermark = schema::applied_watermark(conn)?;
    Ok(out)
}
