//! Invites: one per user, kept as the hash of its code, used once. Each write carries a
//! version and a strictly increasing `updated_at`, so the Commercial backup keeps them.

use super::{Error, next_version, now_ms};
use rusqlite::{Connection, ErrorCode, OptionalExtension, params};

#[derive(Debug, Clone)]
pub struct InviteRow {
    pub user_id: String,
    pub code_hash: Vec<u8>,
    pub created_at: i64,
    pub expires_at: i64,
    pub used_at: Option<i64>,
}

/// Issues (or replaces: a new invite voids the one before) `user`'s invite.
pub fn put_invite(conn: &Connection, i: &InviteRow) -> Result<(), Error> {
    let version = next_version(conn)?;
    conn.prepare_cached(
        "INSERT INTO invites (user_id, code_hash, created_at, expires_at, used_at, updated_at, version)
         VALUES (?1, ?2, ?3, ?4, NULL, ?5, ?6)
         ON CONFLICT (user_id) DO UPDATE SET code_hash = excluded.code_hash,
            created_at = excluded.created_at, expires_at = excluded.expires_at, used_at = NULL,
            updated_at = max(excluded.updated_at, updated_at + 1), version = excluded.version",
    )?
    .execute(params![
        i.user_id,
        i.code_hash,
        i.created_at,
        i.expires_at,
        now_ms(),
        version
    ])?;
    Ok(())
}

pub fn get_invite(conn: &Connection, user: &str) -> Result<Option<InviteRow>, Error> {
    Ok(conn
        .prepare_cached(
            "SELECT user_id, code_hash, created_at, expires_at, used_at FROM invites WHERE user_id = ?1",
        )?
        .query_row([user], |r| {
            Ok(InviteRow {
                user_id: r.get(0)?,
                code_hash: r.get(1)?,
                created_at: r.get(2)?,
                expires_at: r.get(3)?,
                used_at: r.get(4)?,
            })
        })
        .optional()?)
}

/// Marks `user`'s invite used. Returns false if it was used already (a race lost).
pub fn use_invite(conn: &Connection, user: &str) -> Result<bool, Error> {
    let version = next_version(conn)?;
    let n = conn
        .prepare_cached(
            "UPDATE invites SET used_at = ?2, updated_at = max(?2, updated_at + 1), version = ?3
             WHERE user_id = ?1 AND used_at IS NULL",
        )?
        .execute(params![user, now_ms(), version])?;
    Ok(n == 1)
}

/// Gives an active user the token hash and key pair it made by redeeming its invite.
pub fn set_credentials(
    conn: &Connection,
    id: &str,
    hash: &[u8; 32],
    public_key: &[u8],
    sealed_private_key: &[u8],
) -> Result<(), Error> {
    let version = next_version(conn)?;
    let res = conn
        .prepare_cached(
            "UPDATE agents SET token_hash = ?2, public_key = ?3, sealed_private_key = ?4,
                updated_at = max(?5, updated_at + 1), version = ?6
             WHERE id = ?1 AND kind = 'user' AND revoked_at IS NULL AND deactivated_at IS NULL",
        )?
        .execute(params![
            id,
            &hash[..],
            public_key,
            sealed_private_key,
            now_ms(),
            version
        ]);
    match res {
        Ok(1) => {
            // Any private key sealed before was overwritten (see `agents::replace_token`).
            conn.prepare_cached("UPDATE temp.forgotten SET n = n + 1")?
                .execute([])?;
            Ok(())
        }
        Ok(_) => Err(Error::NotFound),
        Err(rusqlite::Error::SqliteFailure(e, _)) if e.code == ErrorCode::ConstraintViolation => {
            Err(Error::Conflict("this token is already in use".into()))
        }
        Err(e) => Err(e.into()),
    }
}
