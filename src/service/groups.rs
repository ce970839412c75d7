//! Groups: the owner and admins create and delete them and add and remove members. Adding a
//! member grants it (and the agents it made) the keys of the group's scopes, from the
//! caller's own copies; removing one, or deleting the group, drops the copies of whoever is
//! no longer entitled, in the same transaction. Changing a group's scopes does both at once:
//! its members gain the added scopes' keys and lose the removed ones'.

use super::entitlement::drop_unentitled;
use super::keys::KeyRing;
use super::{Caller, Error, Vault, from_store, require_admin};
use crate::store::agents::{agents_created_by, get_principal};
use crate::store::groups::{
    self as rows, GroupRow, add_member_as, delete_group, get_group, insert_group, memberships,
    remove_member, set_pending, update_group,
};
use crate::store::{self};
use crate::vault::{GroupId, GroupSpec, Scope, UserId};
use rusqlite::Connection;
use std::collections::BTreeSet;

/// What adding a member did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemberAdded {
    Added,
    AlreadyMember,
    /// A pending grant: the member gets the group's scopes once a holder confirms it.
    Pending,
}

#[derive(Debug)]
pub struct GroupView {
    pub id: String,
    pub name: String,
    pub scopes: Vec<String>,
    pub members: Vec<String>,
    pub created_at: i64,
}

pub(super) fn live_group(conn: &Connection, id: &GroupId) -> Result<GroupRow, Error> {
    get_group(conn, id.as_str())?.ok_or_else(|| Error::GroupNotFound(id.to_string()))
}

/// A user that is not deleted (deactivated ones may be members).
pub(super) fn live_user(conn: &Connection, id: &UserId) -> Result<bool, Error> {
    match get_principal(conn, id.as_str())? {
        Some(r) if r.kind == "user" && r.revoked_at.is_none() => Ok(r.deactivated_at.is_none()),
        _ => Err(Error::UserNotFound(id.to_string())),
    }
}

impl Vault {
    pub async fn create_group(&self, caller: &Caller, spec: GroupSpec) -> Result<GroupView, Error> {
        require_admin(caller)?;
        self.check_writable()?;
        let row = GroupRow {
            id: GroupId::generate().to_string(),
            name: spec.name,
            scopes: spec.scopes.iter().map(|s| s.as_str().to_owned()).collect(),
            created_at: store::now_ms(),
        };
        let event = caller.audit("group.create").target(row.id.clone());
        let stored = row.clone();
        self.store
            .write(move |c| {
                insert_group(c, &stored).map_err(from_store)?;
                crate::audit::record(c, &event)?;
                Ok::<_, Error>(())
            })
            .await?;
        Ok(GroupView {
            id: row.id,
            name: row.name,
            scopes: row.scopes,
            members: Vec::new(),
            created_at: row.created_at,
        })
    }

    /// The owner and admins see every group; a user sees the groups it belongs to.
    pub async fn list_groups(&self, caller: &Caller) -> Result<Vec<GroupView>, Error> {
        let p = &caller.principal;
        if !(p.is_admin() || p.is_user()) {
            return Err(caller.forbidden("only the owner and users may list groups"));
        }
        let (groups, members) = self
            .store
            .read(|c| {
                store::snapshot(c, |c| Ok((rows::list_groups(c)?, memberships(c)?)))
                    .map_err(Error::from)
            })
            .await?;
        let me = p.id.as_str();
        Ok(groups
            .into_iter()
            .map(|g| {
                let m: Vec<String> = members
                    .iter()
                    .filter(|(gid, _)| *gid == g.id)
                    .map(|(_, u)| u.clone())
                    .collect();
                GroupView {
                    id: g.id,
                    name: g.name,
                    scopes: g.scopes,
                    members: m,
                    created_at: g.created_at,
                }
            })
            .filter(|g| p.is_admin() || g.members.iter().any(|u| u == me))
            .collect())
    }

    pub async fn delete_group(&self, caller: &Caller, id: GroupId) -> Result<(), Error> {
        require_admin(caller)?;
        self.check_writable()?;
        let event = caller.audit("group.delete").target(id.to_string());
        self.store
            .write(move |c| {
                live_group(c, &id)?;
                delete_group(c, id.as_str()).map_err(from_store)?;
                drop_unentitled(c)?;
                crate::audit::record(c, &event)?;
                Ok::<_, Error>(())
            })
            .await?;
        self.reload_principals().await
    }

    /// Renames a group and/or replaces its scopes, in one write. Every confirmed member (and
    /// the agents it made, as far as their own declared scopes reach) is granted the keys of
    /// the scopes it becomes entitled to, from the caller's copies: when the caller lacks one
    /// that exists, 409 `scope_key_not_held` naming it, and nothing changes (there is no
    /// pending form: a pending membership would take away the scopes the member already has).
    /// Copies of keys nobody is entitled to any more are dropped.
    pub async fn update_group(
        &self,
        caller: &Caller,
        id: GroupId,
        name: Option<String>,
        scopes: Option<Vec<Scope>>,
    ) -> Result<GroupView, Error> {
        require_admin(caller)?;
        self.check_writable()?;
        let caller_c = caller.clone();
        let view = self
            .store
            .write(move |c| {
                let old = live_group(c, &id)?;
                let new_scopes: Vec<String> = match scopes {
                    Some(s) => s.iter().map(|s| s.as_str().to_owned()).collect(),
                    None => old.scopes.clone(),
                };
                let new_name = name.unwrap_or_else(|| old.name.clone());
                let before: BTreeSet<&String> = old.scopes.iter().collect();
                let after: BTreeSet<&String> = new_scopes.iter().collect();
                let added: Vec<&str> = after.difference(&before).map(|s| s.as_str()).collect();
                let removed: Vec<&str> = before.difference(&after).map(|s| s.as_str()).collect();
                let members: Vec<String> = memberships(c)?
                    .into_iter()
                    .filter(|(g, _)| *g == old.id)
                    .map(|(_, u)| u)
                    .collect();
                let changed = new_name != old.name || !added.is_empty() || !removed.is_empty();
                if changed {
                    if !update_group(c, id.as_str(), &new_name, &new_scopes).map_err(from_store)? {
                        return Err(Error::GroupNotFound(id.to_string()));
                    }
                    let mut recipients = Vec::new();
                    for m in &members {
                        recipients.push(m.clone());
                        recipients.extend(agents_created_by(c, m)?);
                    }
                    KeyRing::new(&caller_c).grant_entitlements(c, &recipients)?;
                    drop_unentitled(c)?;
                    let mut event = caller_c
                        .audit("group.update")
                        .target(old.id.as_str())
                        .detail("added", added.join(","))
                        .detail("removed", removed.join(","));
                    if new_name != old.name {
                        event = event.detail("name", new_name.as_str());
                    }
                    crate::audit::record(c, &event)?;
                }
                Ok::<_, Error>(GroupView {
                    id: old.id,
                    name: new_name,
                    scopes: new_scopes,
                    members,
                    created_at: old.created_at,
                })
            })
            .await?;
        self.reload_principals().await?;
        Ok(view)
    }

    /// Adds `user` to the group, granting it, and the agents it made, the keys of the
    /// group's scopes that exist. The caller must hold each: otherwise 409 naming the scope
    /// and nothing changes, or, with `allow_pending`, the membership becomes a pending grant
    /// that a holder confirms (`POST /v1/grants/confirm`). A user without a key pair yet (it
    /// has not redeemed its invite) can be wrapped nothing: its membership is pending too.
    pub async fn add_group_member(
        &self,
        caller: &Caller,
        group: GroupId,
        user: UserId,
        allow_pending: bool,
    ) -> Result<MemberAdded, Error> {
        require_admin(caller)?;
        self.check_writable()?;
        let caller_c = caller.clone();
        let added = self
            .store
            .write(move |c| {
                live_group(c, &group)?;
                let active = live_user(c, &user)?;
                let has_keys =
                    get_principal(c, user.as_str())?.is_some_and(|r| r.public_key.is_some());
                if !add_member_as(c, group.as_str(), user.as_str(), false)? {
                    return Ok(MemberAdded::AlreadyMember);
                }
                let mut outcome = MemberAdded::Added;
                if !has_keys && super::grants::group_has_keys(c, group.as_str())? {
                    set_pending(c, group.as_str(), user.as_str(), true)?;
                    outcome = MemberAdded::Pending;
                } else if active {
                    let mut recipients = vec![user.as_str().to_owned()];
                    recipients.extend(agents_created_by(c, user.as_str())?);
                    match KeyRing::new(&caller_c).grant_entitlements(c, &recipients) {
                        Ok(_) => {}
                        Err(Error::KeyNotHeld { .. }) if allow_pending => {
                            set_pending(c, group.as_str(), user.as_str(), true)?;
                            // Copies of other scopes of the group wrapped before the refusal.
                            drop_unentitled(c)?;
                            outcome = MemberAdded::Pending;
                        }
                        Err(e) => return Err(e),
                    }
                }
                let mut event = caller_c
                    .audit("group.member.add")
                    .target(group.as_str())
                    .detail("user", user.as_str());
                if outcome == MemberAdded::Pending {
                    event = event.detail("pending", "true");
                }
                crate::audit::record(c, &event)?;
                Ok::<_, Error>(outcome)
            })
            .await?;
        self.reload_principals().await?;
        Ok(added)
    }

    /// Removes `user` from the group; its copies (and its agents') of keys it is no longer
    /// entitled to are dropped in the same transaction. Returns false if it was no member.
    pub async fn remove_group_member(
        &self,
        caller: &Caller,
        group: GroupId,
        user: UserId,
    ) -> Result<bool, Error> {
        require_admin(caller)?;
        self.check_writable()?;
        let event = caller
            .audit("group.member.remove")
            .target(group.to_string())
            .detail("user", user.to_string());
        let removed = self
            .store
            .write(move |c| {
                live_group(c, &group)?;
                live_user(c, &user)?;
                if !remove_member(c, group.as_str(), user.as_str())? {
                    return Ok(false);
                }
                drop_unentitled(c)?;
                crate::audit::record(c, &event)?;
                Ok::<_, Error>(true)
            })
            .await?;
        self.reload_principals().await?;
        Ok(removed)
    }
}
