//! Groups and their members. Both leave tombstones (`deleted = 1`) rather than disappearing,
//! so that another copy of the data learns of a removal.

use super::{Error, next_version, now_ms};
use rusqlite::{Connection, ErrorCode, OptionalExtension, params};

#[derive(Debug, Clone)]
pub struct GroupRow {
    pub id: String,
    pub name: String,
    pub scopes: Vec<String>,
    pub created_at: i64,
}

/// A live, confirmed membership: `(group id, user id)`.
pub type Membership = (String, String);

fn from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<GroupRow> {
    let scopes: String = r.get(2)?;
    Ok(GroupRow {
        id: r.get(0)?,
        name: r.get(1)?,
        scopes: serde_json::from_str(&scopes).map_err(|e| {
            rusqlite::Error::FromSqlConversionFailure(2, rusqlite::types::Type::Text, Box::new(e))
        })?,
        created_at: r.get(3)?,
    })
}

pub fn insert_group(conn: &Connection, g: &GroupRow) -> Result<(), Error> {
    let version = next_version(conn)?;
    let res = conn
        .prepare_cached(
            "INSERT INTO groups (id, name, scopes, created_at, updated_at, version)
             VALUES (?1, ?2, ?3, ?4, ?4, ?5)",
        )?
        .execute(params![
            g.id,
            g.name,
            serde_json::to_string(&g.scopes).unwrap_or_else(|_| "[]".into()),
            g.created_at,
            version
        ]);
    match res {
        Ok(_) => Ok(()),
        Err(rusqlite::Error::SqliteFailure(e, _)) if e.code == ErrorCode::ConstraintViolation => {
            Err(Error::Conflict(format!(
                "a group named {:?} already exists",
                g.name
            )))
        }
        Err(e) => Err(e.into()),
    }
}

/// Gives a live group a new name and scopes (a new version, so the change replicates).
/// Returns false if there is no such live group.
pub fn update_group(
    conn: &Connection,
    id: &str,
    name: &str,
    scopes: &[String],
) -> Result<bool, Error> {
    let version = next_version(conn)?;
    let res = conn
        .prepare_cached(
            "UPDATE groups SET name = ?2, scopes = ?3, updated_at = max(?4, updated_at + 1), version = ?5
             WHERE id = ?1 AND deleted = 0",
        )?
        .execute(params![
            id,
            name,
            serde_json::to_string(scopes).unwrap_or_else(|_| "[]".into()),
            now_ms(),
            version
        ]);
    match res {
        Ok(n) => Ok(n == 1),
        Err(rusqlite::Error::SqliteFailure(e, _)) if e.code == ErrorCode::ConstraintViolation => {
            Err(Error::Conflict(format!(
                "a group named {name:?} already exists"
            )))
        }
        Err(e) => Err(e.into()),
    }
}

/// A live group.
pub fn get_group(conn: &Connection, id: &str) -> Result<Option<GroupRow>, Error> {
    Ok(conn
        .prepare_cached(
            "SELECT id, name, scopes, created_at FROM groups WHERE id = ?1 AND deleted = 0",
        )?
        .query_row([id], from_row)
        .optional()?)
}

/// Every live group.
pub fn list_groups(conn: &Connection) -> Result<Vec<GroupRow>, Error> {
    let mut stmt = conn.prepare_cached(
        "SELECT id, name, scopes, created_at FROM groups WHERE deleted = 0 ORDER BY created_at, id",
    )?;
    let rows = stmt.query_map([], from_row)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Every live, confirmed membership of a live group (a pending one grants nothing yet).
pub fn memberships(conn: &Connection) -> Result<Vec<Membership>, Error> {
    let mut stmt = conn.prepare_cached(
        "SELECT m.group_id, m.user_id FROM group_members m JOIN groups g ON g.id = m.group_id
         WHERE m.deleted = 0 AND m.pending = 0 AND g.deleted = 0 ORDER BY m.group_id, m.user_id",
    )?;
    let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Tombstones a group and its memberships.
pub fn delete_group(conn: &Connection, id: &str) -> Result<(), Error> {
    let version = next_version(conn)?;
    let n = conn
        .prepare_cached(
            "UPDATE groups SET deleted = 1, updated_at = max(?2, updated_at + 1), version = ?3
             WHERE id = ?1 AND deleted = 0",
        )?
        .execute(params![id, now_ms(), version])?;
    if n == 0 {
        return Err(Error::NotFound);
    }
    let members: Vec<String> = conn
        .prepare_cached("SELECT user_id FROM group_members WHERE group_id = ?1 AND deleted = 0")?
        .query_map([id], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    for user in members {
        remove_member(conn, id, &user)?;
    }
    Ok(())
}

/// A live membership of a live group whose keys nobody has granted yet:
/// `(group id, user id, since ms)`.
pub fn pending_memberships(conn: &Connection) -> Result<Vec<(String, String, i64)>, Error> {
    let mut stmt = conn.prepare_cached(
        "SELECT m.group_id, m.user_id, m.updated_at FROM group_members m JOIN groups g ON g.id = m.group_id
         WHERE m.deleted = 0 AND m.pending = 1 AND g.deleted = 0 ORDER BY m.updated_at, m.group_id, m.user_id",
    )?;
    let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Every live membership of a live group, confirmed or pending: `(group id, user id, pending)`.
pub fn all_memberships(conn: &Connection) -> Result<Vec<(String, String, bool)>, Error> {
    let mut stmt = conn.prepare_cached(
        "SELECT m.group_id, m.user_id, m.pending FROM group_members m JOIN groups g ON g.id = m.group_id
         WHERE m.deleted = 0 AND g.deleted = 0 ORDER BY m.group_id, m.user_id",
    )?;
    let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Turns a pending membership into a confirmed one. Returns false if there was none pending.
pub fn confirm_member(conn: &Connection, group: &str, user: &str) -> Result<bool, Error> {
    set_pending(conn, group, user, false)
}

/// Marks a live membership pending (`true`) or confirmed. Returns false if nothing changed.
pub fn set_pending(
    conn: &Connection,
    group: &str,
    user: &str,
    pending: bool,
) -> Result<bool, Error> {
    let version = next_version(conn)?;
    let n = conn
        .prepare_cached(
            "UPDATE group_members SET pending = ?5, updated_at = max(?3, updated_at + 1), version = ?4
             WHERE group_id = ?1 AND user_id = ?2 AND deleted = 0 AND pending != ?5",
        )?
        .execute(params![group, user, now_ms(), version, pending])?;
    Ok(n == 1)
}

/// Makes `user` a member of `group`. Returns false if it already was.
pub fn add_member(conn: &Connection, group: &str, user: &str) -> Result<bool, Error> {
    add_member_as(conn, group, user, false)
}

/// Makes `user` a member of `group`, pending or confirmed. Returns false if it already was
/// (as either).
pub fn add_member_as(
    conn: &Connection,
    group: &str,
    user: &str,
    pending: bool,
) -> Result<bool, Error> {
    let live: Option<i64> = conn
        .prepare_cached("SELECT deleted FROM group_members WHERE group_id = ?1 AND user_id = ?2")?
        .query_row(params![group, user], |r| r.get(0))
        .optional()?;
    if live == Some(0) {
        return Ok(false);
    }
    let version = next_version(conn)?;
    conn.prepare_cached(
        "INSERT INTO group_members (group_id, user_id, updated_at, version, pending)
         VALUES (?1, ?2, ?3, ?4, ?5)
         ON CONFLICT (group_id, user_id) DO UPDATE SET deleted = 0, pending = excluded.pending,
            updated_at = max(excluded.updated_at, updated_at + 1), version = excluded.version",
    )?
    .execute(params![group, user, now_ms(), version, pending])?;
    Ok(true)
}

/// Ends a membership (a tombstone). Returns false if there was none.
pub fn remove_member(conn: &Connection, group: &str, user: &str) -> Result<bool, Error> {
    let version = next_version(conn)?;
    let n = conn
        .prepare_cached(
            "UPDATE group_members SET deleted = 1, updated_at = max(?3, updated_at + 1), version = ?4
             WHERE group_id = ?1 AND user_id = ?2 AND deleted = 0",
        )?
        .execute(params![group, user, now_ms(), version])?;
    Ok(n == 1)
}

/// Ends every membership of `user` (the user is deleted).
pub fn remove_user_everywhere(conn: &Connection, user: &str) -> Result<(), Error> {
    let groups: Vec<String> = conn
        .prepare_cached("SELECT group_id FROM group_members WHERE user_id = ?1 AND deleted = 0")?
        .query_map([user], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    for g in groups {
        remove_member(conn, &g, user)?;
    }
    Ok(())
}
