//! Users: created by the owner or an admin (admins only by the owner), listed, changed,
//! deactivated (their tokens and every agent they made stop at once, their copies of scope
//! keys are dropped), reactivated (a new token and key pair; the caller re-grants the keys of
//! their groups) and deleted.

use super::keys::KeyRing;
use super::{Caller, Error, Vault, from_store, require_admin};
use crate::crypto::{Token, generate_key_pair};
use crate::store::agents::{
    agents_created_by, deactivate_user, get_principal, insert_agent, list_users, reactivate_user,
    revoke_agent, update_user,
};
use crate::store::groups::{memberships, pending_memberships, remove_user_everywhere};
use crate::store::{self, AgentRow};
use crate::vault::{AgentId, Role, UserId, UserSpec, check_email, check_user_name};
use rusqlite::Connection;

#[derive(Debug)]
pub struct UserView {
    pub id: String,
    pub name: String,
    pub email: String,
    pub role: Role,
    pub active: bool,
    pub groups: Vec<String>,
    /// Groups whose keys wait for a holder to confirm this user's membership.
    pub pending_grants: Vec<String>,
    pub created_at: i64,
    pub deactivated_at: Option<i64>,
}

#[derive(Debug)]
pub struct UserCreated {
    pub user: UserView,
    pub token: Token,
}

/// What a `PATCH` asks for; `None` leaves a value as it is.
#[derive(Debug, Default)]
pub struct UserChange {
    pub name: Option<String>,
    pub email: Option<String>,
    pub role: Option<Role>,
    pub active: Option<bool>,
}

pub(super) fn role_of(row: &AgentRow) -> Role {
    row.role
        .as_deref()
        .and_then(|r| Role::parse(r).ok())
        .unwrap_or(Role::Member)
}

pub(super) fn view(row: AgentRow, groups: Vec<String>) -> UserView {
    UserView {
        role: role_of(&row),
        active: row.deactivated_at.is_none(),
        id: row.id,
        name: row.name,
        email: row.email.unwrap_or_default(),
        groups,
        pending_grants: Vec::new(),
        created_at: row.created_at,
        deactivated_at: row.deactivated_at,
    }
}

/// The live user `id` (not deleted), or `UserNotFound`; the owner's id is refused by name.
pub(super) fn target(conn: &Connection, id: &UserId) -> Result<AgentRow, Error> {
    match get_principal(conn, id.as_str())? {
        Some(r) if r.kind == "user" && r.revoked_at.is_none() => Ok(r),
        Some(r) if r.kind == "owner" => Err(Error::NotAllowed(
            "that is the owner: nobody deactivates, changes or removes the owner".into(),
        )),
        _ => Err(Error::UserNotFound(id.to_string())),
    }
}

/// Admins are created, demoted, deactivated and removed by the owner only.
pub(super) fn check_may_manage(caller: &Caller, target_role: Role) -> Result<(), Error> {
    require_admin(caller)?;
    if target_role == Role::Admin && !caller.principal.is_owner {
        return Err(Error::OwnerOnly);
    }
    Ok(())
}

fn groups_of(conn: &Connection, user: &str) -> Result<Vec<String>, store::Error> {
    Ok(memberships(conn)?
        .into_iter()
        .filter(|(_, u)| u == user)
        .map(|(g, _)| g)
        .collect())
}

/// Stops a user and everything they made: the user row deactivated (or deleted), their
/// copies of keys dropped, every live agent they created revoked (copies deleted).
pub(super) fn stop_user(conn: &Connection, id: &str, deleted: bool) -> Result<(), Error> {
    deactivate_user(conn, id, deleted).map_err(from_store)?;
    for agent in agents_created_by(conn, id)? {
        revoke_agent(conn, &agent).map_err(from_store)?;
    }
    if deleted {
        remove_user_everywhere(conn, id)?;
    }
    Ok(())
}

impl Vault {
    pub async fn create_user(&self, caller: &Caller, spec: UserSpec) -> Result<UserCreated, Error> {
        check_may_manage(caller, spec.role)?;
        self.check_writable()?;
        let token = Token::generate();
        let id = AgentId::generate().to_string();
        let (private, public) = generate_key_pair();
        let mut row = AgentRow::new(
            id.clone(),
            spec.name.clone(),
            "user",
            token.hash().0,
            store::now_ms(),
        );
        row.role = Some(spec.role.as_str().to_owned());
        row.email = Some(spec.email.clone());
        row.public_key = Some(public.to_bytes());
        row.sealed_private_key = Some(private.seal(&token, &id)?);
        let event = caller
            .audit("user.create")
            .target(id.clone())
            .detail("role", spec.role.as_str());
        let stored = row.clone();
        self.store
            .write(move |c| {
                insert_agent(c, &stored).map_err(from_store)?;
                crate::audit::record(c, &event)?;
                Ok::<_, Error>(())
            })
            .await?;
        self.reload_principals().await?;
        Ok(UserCreated {
            user: view(row, Vec::new()),
            token,
        })
    }

    /// Every user (not deleted), for the owner and admins.
    pub async fn list_users(&self, caller: &Caller) -> Result<Vec<UserView>, Error> {
        require_admin(caller)?;
        let users = self
            .store
            .read(|c| {
                store::snapshot(c, |c| {
                    Ok((list_users(c)?, memberships(c)?, pending_memberships(c)?))
                })
                .map_err(Error::from)
            })
            .await?;
        let (users, members, pending) = users;
        Ok(users
            .into_iter()
            .map(|u| {
                let groups = members
                    .iter()
                    .filter(|(_, m)| *m == u.id)
                    .map(|(g, _)| g.clone())
                    .collect();
                let mut v = view(u, groups);
                v.pending_grants = pending
                    .iter()
                    .filter(|(_, m, _)| *m == v.id)
                    .map(|(g, _, _)| g.clone())
                    .collect();
                v
            })
            .collect())
    }

    /// One user, for the owner, admins and the user themselves.
    pub async fn get_user(&self, caller: &Caller, id: UserId) -> Result<UserView, Error> {
        let own = caller.principal.id.as_str() == id.as_str();
        if !own {
            require_admin(caller)?;
        }
        let key = id.clone();
        self.store
            .read(move |c| {
                let row = match target(c, &key) {
                    Err(Error::NotAllowed(_)) => return Err(Error::UserNotFound(key.to_string())),
                    r => r?,
                };
                let groups = groups_of(c, key.as_str())?;
                let mut v = view(row, groups);
                v.pending_grants = super::grants::pending_of(c, key.as_str())?;
                Ok::<_, Error>(v)
            })
            .await
    }

    /// Applies a `PATCH`. Returns the user as it now is and, on reactivation, its new token.
    pub async fn change_user(
        &self,
        caller: &Caller,
        id: UserId,
        change: UserChange,
    ) -> Result<(UserView, Option<Token>), Error> {
        require_admin(caller)?;
        self.check_writable()?;
        if let Some(n) = &change.name {
            check_user_name(n)?;
        }
        if let Some(e) = &change.email {
            check_email(e)?;
        }
        let caller_c = caller.clone();
        let new_token = (change.active == Some(true)).then(Token::generate);
        let token_c = new_token.clone();
        let (row, reactivated) = self
            .store
            .write(move |c| {
                let caller = &caller_c;
                let row = target(c, &id)?;
                let current = role_of(&row);
                check_may_manage(caller, current)?;
                if let Some(r) = change.role {
                    check_may_manage(caller, r)?;
                }
                let uid = id.as_str();
                if change.name.is_some() || change.email.is_some() || change.role.is_some() {
                    update_user(
                        c,
                        uid,
                        change.name.as_deref(),
                        change.email.as_deref(),
                        change.role.map(Role::as_str),
                    )
                    .map_err(from_store)?;
                    crate::audit::record(c, &caller.audit("user.update").target(uid))?;
                }
                let mut reactivated = false;
                match (change.active, row.deactivated_at.is_some()) {
                    (Some(false), false) => {
                        stop_user(c, uid, false)?;
                        crate::audit::record(c, &caller.audit("user.deactivate").target(uid))?;
                    }
                    (Some(true), true) => {
                        let token = token_c.as_ref().expect("made for reactivation");
                        let (private, public) = generate_key_pair();
                        reactivate_user(
                            c,
                            uid,
                            &token.hash().0,
                            &public.to_bytes(),
                            &private.seal(token, uid)?,
                        )
                        .map_err(from_store)?;
                        // The keys of the user's groups, from the caller's own copies.
                        KeyRing::new(caller).grant_entitlements(c, &[uid.to_owned()])?;
                        crate::audit::record(c, &caller.audit("user.activate").target(uid))?;
                        reactivated = true;
                    }
                    _ => {}
                }
                let row = get_principal(c, uid)?.ok_or_else(|| Error::UserNotFound(uid.into()))?;
                let groups = groups_of(c, uid)?;
                let mut v = view(row, groups);
                v.pending_grants = super::grants::pending_of(c, uid)?;
                Ok::<_, Error>((v, reactivated))
            })
            .await?;
        self.reload_principals().await?;
        Ok((row, new_token.filter(|_| reactivated)))
    }

    /// Removes a user: its tokens and agents stop, its memberships end, its copies of keys
    /// are dropped. The row stays as a tombstone (it replicates, and frees the name).
    pub async fn delete_user(&self, caller: &Caller, id: UserId) -> Result<(), Error> {
        require_admin(caller)?;
        self.check_writable()?;
        let caller_c = caller.clone();
        self.store
            .write(move |c| {
                let row = target(c, &id)?;
                check_may_manage(&caller_c, role_of(&row))?;
                stop_user(c, id.as_str(), true)?;
                crate::audit::record(c, &caller_c.audit("user.delete").target(id.as_str()))?;
                Ok::<_, Error>(())
            })
            .await?;
        self.reload_principals().await
    }
}
