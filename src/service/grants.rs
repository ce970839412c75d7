//! Pending grants: memberships whose scope keys nobody has wrapped for the member yet (the
//! member had no key pair, the one who added it held no copy, or a provisioner added it: the
//! server cannot wrap a key it cannot open). A pending membership grants nothing; a holder
//! of the group's keys confirms it, wrapping them to the member's public key.

use super::entitlement::drop_unentitled;
use super::keys::KeyRing;
use super::{Caller, Error, Vault, require_admin};
use crate::store::agents::{agents_created_by, get_principal, get_scope_key, scope_key_holders};
use crate::store::groups::{confirm_member, get_group, pending_memberships};
use crate::store::{self};
use rusqlite::Connection;

/// A membership, by ids.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GrantRef {
    pub group_id: String,
    pub user_id: String,
}

#[derive(Debug)]
pub struct PendingGrant {
    pub group_id: String,
    pub group: String,
    pub scopes: Vec<String>,
    pub user_id: String,
    pub user: String,
    pub since: i64,
    /// The member has a key pair (has redeemed its invite) and is active: it can be confirmed.
    pub ready: bool,
}

/// Whether any scope of `group` has a key (then a membership needs a grant to be of use).
pub(super) fn group_has_keys(conn: &Connection, group: &str) -> Result<bool, Error> {
    let Some(g) = get_group(conn, group)? else {
        return Ok(false);
    };
    for s in &g.scopes {
        if !scope_key_holders(conn, s)?.is_empty() {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Whether `holder` holds a copy of every key of `scopes` that exists.
fn holds_all(conn: &Connection, holder: &str, scopes: &[String]) -> Result<bool, Error> {
    for s in scopes {
        if get_scope_key(conn, s, holder)?.is_none() && !scope_key_holders(conn, s)?.is_empty() {
            return Ok(false);
        }
    }
    Ok(true)
}

/// Every pending grant `holder` could complete (it holds the keys).
fn completable(conn: &Connection, holder: &str) -> Result<Vec<PendingGrant>, Error> {
    let mut out = Vec::new();
    for (g, u, since) in pending_memberships(conn)? {
        let Some(group) = get_group(conn, &g)? else {
            continue;
        };
        if !holds_all(conn, holder, &group.scopes)? {
            continue;
        }
        let Some(user) = get_principal(conn, &u)? else {
            continue;
        };
        out.push(PendingGrant {
            group_id: g,
            group: group.name,
            scopes: group.scopes,
            user_id: u,
            ready: user.public_key.is_some()
                && user.deactivated_at.is_none()
                && user.revoked_at.is_none(),
            user: user.name,
            since,
        });
    }
    Ok(out)
}

/// The group ids of `user`'s pending grants.
pub(super) fn pending_of(conn: &Connection, user: &str) -> Result<Vec<String>, Error> {
    Ok(pending_memberships(conn)?
        .into_iter()
        .filter(|(_, u, _)| u == user)
        .map(|(g, _, _)| g)
        .collect())
}

impl Vault {
    /// The pending grants the caller (the owner or an admin) holds the keys to confirm.
    pub async fn pending_grants(&self, caller: &Caller) -> Result<Vec<PendingGrant>, Error> {
        require_admin(caller)?;
        let me = caller.principal.id.to_string();
        self.store
            .read(move |c| store::snapshot(c, |c| Ok(completable(c, &me))).map_err(Error::from)?)
            .await
    }

    /// Confirms pending grants: wraps each group's keys from the caller's copies to the
    /// member (and its agents). `None`: every one the caller can complete whose member is
    /// ready. Returns those confirmed.
    pub async fn confirm_grants(
        &self,
        caller: &Caller,
        which: Option<Vec<GrantRef>>,
    ) -> Result<Vec<GrantRef>, Error> {
        require_admin(caller)?;
        self.check_writable()?;
        let caller_c = caller.clone();
        let done = self
            .store
            .write(move |c| {
                let me = caller_c.principal.id.to_string();
                let todo: Vec<GrantRef> = match which {
                    None => completable(c, &me)?
                        .into_iter()
                        .filter(|p| p.ready)
                        .map(|p| GrantRef {
                            group_id: p.group_id,
                            user_id: p.user_id,
                        })
                        .collect(),
                    Some(list) => list,
                };
                let pending = pending_memberships(c)?;
                let mut ring = KeyRing::new(&caller_c);
                let mut done = Vec::new();
                for r in todo {
                    if !pending
                        .iter()
                        .any(|(g, u, _)| *g == r.group_id && *u == r.user_id)
                    {
                        return Err(Error::Refused(format!(
                            "user {} has no pending grant in group {}; see GET /v1/grants/pending",
                            r.user_id, r.group_id
                        )));
                    }
                    let user = get_principal(c, &r.user_id)?
                        .ok_or_else(|| Error::UserNotFound(r.user_id.clone()))?;
                    if user.deactivated_at.is_some() || user.revoked_at.is_some() {
                        return Err(Error::Refused(format!(
                            "user {} is deactivated; activate it before confirming its grants",
                            r.user_id
                        )));
                    }
                    if user.public_key.is_none() {
                        return Err(Error::Refused(format!(
                            "user {:?} has no key pair yet, so nothing can be wrapped to it: it must redeem its invite first (clavitor login --invite CODE; an admin issues one with clavitor user invite USER)",
                            user.name
                        )));
                    }
                    confirm_member(c, &r.group_id, &r.user_id)?;
                    let mut recipients = vec![r.user_id.clone()];
                    recipients.extend(agents_created_by(c, &r.user_id)?);
                    ring.grant_entitlements(c, &recipients)?;
                    crate::audit::record(
                        c,
                        &caller_c
                            .audit("grant.confirm")
                            .target(r.group_id.as_str())
                            .detail("user", r.user_id.as_str()),
                    )?;
                    done.push(r);
                }
                drop_unentitled(c)?;
                Ok::<_, Error>(done)
            })
            .await?;
        self.reload_principals().await?;
        Ok(done)
    }
}
