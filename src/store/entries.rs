//! Entries and their fields.

use super::{Error, next_version, now_ms};
use rusqlite::{Connection, OptionalExtension, params};
use std::collections::HashMap;

#[derive(Debug, Clone)]
pub struct EntryRow {
    pub id: String,
    pub meta: Vec<u8>,
    pub created_at: i64,
    pub updated_at: i64,
    pub version: i64,
    pub fields: Vec<FieldMeta>,
}

#[derive(Debug, Clone)]
pub struct FieldMeta {
    pub name: String,
    pub tier: String,
    pub scope: Option<String>,
    pub policy: StoredPolicy,
}

/// A field's `agent_access` and `allowed_hosts` columns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredPolicy {
    pub agent_access: String,
    pub allowed_hosts: Vec<String>,
}

impl Default for StoredPolicy {
    fn default() -> Self {
        Self {
            agent_access: "read".to_owned(),
            allowed_hosts: Vec::new(),
        }
    }
}

impl StoredPolicy {
    fn from_columns(agent_access: String, allowed_hosts: &str) -> Result<Self, Error> {
        let allowed_hosts = serde_json::from_str(allowed_hosts)
            .map_err(|e| Error::Corrupt(format!("fields.allowed_hosts: {e}")))?;
        Ok(Self {
            agent_access,
            allowed_hosts,
        })
    }

    fn hosts_json(&self) -> String {
        serde_json::to_string(&self.allowed_hosts).expect("a list of strings serialises")
    }
}

/// Reads the policy columns at `i` and `i + 1` of a row.
fn policy_at(r: &rusqlite::Row<'_>, i: usize) -> rusqlite::Result<Result<StoredPolicy, Error>> {
    let access: String = r.get(i)?;
    let hosts: String = r.get(i + 1)?;
    Ok(StoredPolicy::from_columns(access, &hosts))
}

#[derive(Debug, Clone)]
pub struct FieldRow {
    pub meta: FieldMeta,
    pub ciphertext: Vec<u8>,
}

/// What a write reports back: the row's new version and time.
#[derive(Debug, Clone, Copy)]
pub struct Written {
    pub version: i64,
    pub at: i64,
}

fn insert_fields(conn: &Connection, id: &str, fields: &[FieldRow]) -> Result<(), Error> {
    let mut stmt = conn.prepare_cached(
        "INSERT INTO fields (entry_id, position, name, tier, scope, ciphertext, agent_access, allowed_hosts)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    )?;
    for (pos, f) in fields.iter().enumerate() {
        stmt.execute(params![
            id,
            pos as i64,
            f.meta.name,
            f.meta.tier,
            f.meta.scope,
            f.ciphertext,
            f.meta.policy.agent_access,
            f.meta.policy.hosts_json(),
        ])?;
    }
    Ok(())
}

pub fn insert_entry(
    conn: &Connection,
    id: &str,
    meta: &[u8],
    fields: &[FieldRow],
) -> Result<Written, Error> {
    let version = next_version(conn)?;
    let at = now_ms();
    conn.prepare_cached(
        "INSERT INTO entries (id, meta, created_at, updated_at, version) VALUES (?1, ?2, ?3, ?3, ?4)",
    )?
    .execute(params![id, meta, at, version])?;
    insert_fields(conn, id, fields)?;
    Ok(Written { version, at })
}

/// Replaces title, url, username and the whole field set of a live entry.
pub fn replace_entry(
    conn: &Connection,
    id: &str,
    meta: &[u8],
    fields: &[FieldRow],
) -> Result<Written, Error> {
    let version = next_version(conn)?;
    let at = now_ms();
    let n = conn
        .prepare_cached(
            "UPDATE entries SET meta = ?2, updated_at = max(?3, updated_at + 1), version = ?4
             WHERE id = ?1 AND deleted = 0 RETURNING updated_at",
        )?
        .query_row(params![id, meta, at, version], |r| r.get::<_, i64>(0))
        .optional()?;
    let Some(at) = n else {
        return Err(Error::NotFound);
    };
    conn.prepare_cached("DELETE FROM fields WHERE entry_id = ?1")?
        .execute([id])?;
    insert_fields(conn, id, fields)?;
    Ok(Written { version, at })
}

/// Leaves a tombstone (no metadata, no fields) so other copies learn of the deletion.
pub fn delete_entry(conn: &Connection, id: &str) -> Result<Written, Error> {
    let version = next_version(conn)?;
    let at = now_ms();
    let n = conn
        .prepare_cached(
            "UPDATE entries SET meta = x'', deleted = 1, updated_at = max(?2, updated_at + 1), version = ?3
             WHERE id = ?1 AND deleted = 0 RETURNING updated_at",
        )?
        .query_row(params![id, at, version], |r| r.get::<_, i64>(0))
        .optional()?;
    let Some(at) = n else {
        return Err(Error::NotFound);
    };
    conn.prepare_cached("DELETE FROM fields WHERE entry_id = ?1")?
        .execute([id])?;
    Ok(Written { version, at })
}

/// One statement, so the entry and its fields come from one commit. It costs the same whether
/// the entry exists or not, and whether or not the caller may see it.
pub fn get_entry(conn: &Connection, id: &str) -> Result<Option<EntryRow>, Error> {
    let mut stmt = conn.prepare_cached(
        "SELECT e.meta, e.created_at, e.updated_at, e.version, f.name, f.tier, f.scope,
                f.agent_access, f.allowed_hosts
         FROM entries e LEFT JOIN fields f ON f.entry_id = e.id
         WHERE e.id = ?1 AND e.deleted = 0 ORDER BY f.position",
    )?;
    let mut rows = stmt.query([id])?;
    let mut entry: Option<EntryRow> = None;
    while let Some(r) = rows.next()? {
        let e = match &mut entry {
            Some(e) => e,
            None => entry.insert(EntryRow {
                id: id.to_owned(),
                meta: r.get(0)?,
                created_at: r.get(1)?,
                updated_at: r.get(2)?,
                version: r.get(3)?,
                fields: Vec::new(),
            }),
        };
        // No field row: the LEFT JOIN's NULLs.
        if let Some(name) = r.get::<_, Option<String>>(4)? {
            e.fields.push(FieldMeta {
                name,
                tier: r.get(5)?,
                scope: r.get(6)?,
                policy: policy_at(r, 7)??,
            });
        }
    }
    Ok(entry)
}

/// Every live entry with its field names, from one commit (a read transaction holds the
/// snapshot across the two queries).
pub fn list_entries(conn: &Connection) -> Result<Vec<EntryRow>, Error> {
    super::snapshot(conn, |conn| {
        let mut entries: Vec<EntryRow> = conn
            .prepare_cached(
                "SELECT id, meta, created_at, updated_at, version FROM entries
                 WHERE deleted = 0 ORDER BY created_at, id",
            )?
            .query_map([], |r| {
                Ok(EntryRow {
                    id: r.get(0)?,
                    meta: r.get(1)?,
                    created_at: r.get(2)?,
                    updated_at: r.get(3)?,
                    version: r.get(4)?,
                    fields: Vec::new(),
                })
            })?
            .collect::<Result<_, _>>()?;
        let mut by_id: HashMap<String, Vec<FieldMeta>> = HashMap::new();
        let mut stmt = conn.prepare_cached(
            "SELECT f.entry_id, f.name, f.tier, f.scope, f.agent_access, f.allowed_hosts FROM fields f
             JOIN entries e ON e.id = f.entry_id WHERE e.deleted = 0
             ORDER BY f.entry_id, f.position",
        )?;
        let rows = stmt.query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get(1)?,
                r.get(2)?,
                r.get(3)?,
                policy_at(r, 4)?,
            ))
        })?;
        for row in rows {
            let (id, name, tier, scope, policy) = row?;
            let meta = FieldMeta {
                name,
                tier,
                scope,
                policy: policy?,
            };
            by_id.entry(id).or_default().push(meta);
        }
        for e in &mut entries {
            e.fields = by_id.remove(&e.id).unwrap_or_default();
        }
        Ok(entries)
    })
}

/// `Ok(None)` when the entry exists but has no such field; `Err(NotFound)` when the entry
/// does not exist. One statement: one commit, and the same cost whichever the answer.
pub fn get_field(conn: &Connection, id: &str, name: &str) -> Result<Option<FieldRow>, Error> {
    let row = conn
        .prepare_cached(
            "SELECT f.tier, f.scope, f.ciphertext, f.agent_access, f.allowed_hosts FROM entries e
             LEFT JOIN fields f ON f.entry_id = e.id AND f.name = ?2
             WHERE e.id = ?1 AND e.deleted = 0",
        )?
        .query_row(params![id, name], |r| {
            let tier: Option<String> = r.get(0)?;
            let Some(tier) = tier else {
                return Ok(None);
            };
            Ok(Some((
                FieldRow {
                    meta: FieldMeta {
                        name: name.to_owned(),
                        tier,
                        scope: r.get(1)?,
                        policy: StoredPolicy::default(),
                    },
                    ciphertext: r.get(2)?,
                },
                policy_at(r, 3)?,
            )))
        })
        .optional()?;
    match row {
        None => Err(Error::NotFound),
        Some(None) => Ok(None),
        Some(Some((mut row, policy))) => {
            row.meta.policy = policy?;
            Ok(Some(row))
        }
    }
}

/// The policy of each field of entry `id`, by name (none for an entry that does not exist).
pub fn field_policies(conn: &Connection, id: &str) -> Result<HashMap<String, StoredPolicy>, Error> {
    let mut stmt = conn.prepare_cached(
        "SELECT name, agent_access, allowed_hosts FROM fields WHERE entry_id = ?1",
    )?;
    let rows = stmt.query_map([id], |r| Ok((r.get::<_, String>(0)?, policy_at(r, 1)?)))?;
    let mut out = HashMap::new();
    for row in rows {
        let (name, policy) = row?;
        out.insert(name, policy?);
    }
    Ok(out)
}

pub fn count_live(conn: &Connection) -> Result<i64, Error> {
    Ok(conn
        .prepare_cached("SELECT count(*) FROM entries WHERE deleted = 0")?
        .query_row([], |r| r.get(0))?)
}

/// A live entry's fields with their ciphertexts, in order; `None` when there is no such
/// entry. For a write that keeps the fields its caller may not see.
pub fn fields_of(conn: &Connection, id: &str) -> Result<Option<Vec<FieldRow>>, Error> {
    let live = conn
        .prepare_cached("SELECT 1 FROM entries WHERE id = ?1 AND deleted = 0")?
        .exists([id])?;
    if !live {
        return Ok(None);
    }
    let mut stmt = conn.prepare_cached(
        "SELECT name, tier, scope, ciphertext, agent_access, allowed_hosts FROM fields
         WHERE entry_id = ?1 ORDER BY position",
    )?;
    let rows = stmt.query_map([id], |r| {
        Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, policy_at(r, 4)?))
    })?;
    let mut out = Vec::new();
    for row in rows {
        let (name, tier, scope, ciphertext, policy) = row?;
        out.push(FieldRow {
            meta: FieldMeta {
                name,
                tier,
                scope,
                policy: policy?,
            },
            ciphertext,
        });
    }
    Ok(Some(out))
}
