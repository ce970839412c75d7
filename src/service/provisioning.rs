//! What an identity provider may do through the edition's provisioning API: create users
//! (without a usable token: they sign in with an invite an admin issues), change, deactivate
//! and delete the users it created (never the owner, admins or users it did not create),
//! create and delete its own groups, and add and remove its users in any group, each such
//! membership a pending grant (the provider holds no key, so the server can wrap none).
//!
//! Events carry the provisioner's actor kind, which the edition names.

use super::users::{UserView, stop_user};
use super::{Error, Vault, from_store};
use crate::audit::{Actor, ActorKind, Event};
use crate::crypto::{Token, generate_key_pair};
use crate::store::agents::{get_principal, insert_agent, list_users, reactivate_user, update_user};
use crate::store::groups::{
    GroupRow, add_member_as, all_memberships, delete_group, get_group, insert_group, list_groups,
    remove_member,
};
use crate::store::{self, AgentRow, provisioned};
use crate::vault::{AgentId, GroupId, Role, check_email, check_user_name};
use rusqlite::Connection;
use std::collections::BTreeSet;
use std::net::IpAddr;

/// The identity provider making a request.
#[derive(Debug, Clone)]
pub struct Provisioner {
    /// Its actor kind in the audit trail.
    pub kind: &'static str,
    pub ip: IpAddr,
    pub request_id: Option<String>,
}

impl Provisioner {
    fn audit(&self, action: &'static str) -> Event {
        let mut e = Event::new(
            Actor {
                kind: ActorKind::Edition(self.kind),
                id: None,
            },
            action,
        )
        .ip(self.ip);
        if let Some(r) = &self.request_id {
            e = e.request_id(r.as_str());
        }
        e
    }
}

/// A user as the provider sees it.
#[derive(Debug)]
pub struct ProvisionedUser {
    pub user: UserView,
    pub external_id: Option<String>,
    pub updated_at: i64,
}

/// A group as the provider sees it: its members among the provider's users (pending or not).
#[derive(Debug)]
pub struct ProvisionedGroup {
    pub id: String,
    pub name: String,
    pub external_id: Option<String>,
    pub members: Vec<(String, String)>,
    pub created_at: i64,
    /// The provider created it (and may delete it).
    pub own: bool,
}

/// What a change to a provider's user asks for; `None` leaves it.
#[derive(Debug, Default)]
pub struct ProvisionedChange {
    pub name: Option<String>,
    pub email: Option<String>,
    pub external_id: Option<Option<String>>,
    pub active: Option<bool>,
}

/// How a group's members change: ids of the provider's users.
#[derive(Debug, Default)]
pub struct MembersChange {
    pub add: Vec<String>,
    pub remove: Vec<String>,
    /// The whole set of the provider's users in the group.
    pub replace: Option<Vec<String>>,
}

fn not_found(id: &str) -> Error {
    Error::UserNotFound(id.to_owned())
}

/// The provider's live user `id`.
fn own_user(conn: &Connection, id: &str) -> Result<(AgentRow, Option<String>), Error> {
    let Some(ext) = provisioned::get(conn, id, "user")? else {
        return Err(not_found(id));
    };
    match get_principal(conn, id)? {
        Some(r) if r.kind == "user" && r.revoked_at.is_none() => Ok((r, ext)),
        _ => Err(not_found(id)),
    }
}

fn user_view(
    conn: &Connection,
    row: AgentRow,
    ext: Option<String>,
) -> Result<ProvisionedUser, Error> {
    let all = all_memberships(conn)?;
    let updated_at = row.created_at.max(row.deactivated_at.unwrap_or(0));
    let mut view = super::users::view(row, Vec::new());
    for (g, u, pending) in all {
        if u == view.id {
            if pending {
                view.pending_grants.push(g);
            } else {
                view.groups.push(g);
            }
        }
    }
    Ok(ProvisionedUser {
        user: view,
        external_id: ext,
        updated_at,
    })
}

fn group_view(conn: &Connection, g: GroupRow) -> Result<ProvisionedGroup, Error> {
    let ext = provisioned::get(conn, &g.id, "group")?;
    let mine: BTreeSet<String> = provisioned::list(conn, "user")?
        .into_iter()
        .map(|(id, _)| id)
        .collect();
    let mut members = Vec::new();
    for (gid, u, _) in all_memberships(conn)? {
        if gid == g.id && mine.contains(&u) {
            let name = get_principal(conn, &u)?.map(|r| r.name).unwrap_or_default();
            members.push((u, name));
        }
    }
    Ok(ProvisionedGroup {
        own: ext.is_some(),
        external_id: ext.flatten(),
        id: g.id,
        name: g.name,
        members,
        created_at: g.created_at,
    })
}

/// Credentials nobody knows: a token hash, a public key and the private key sealed under that
/// token. The user cannot sign in until it redeems an invite.
struct Unusable {
    hash: [u8; 32],
    public: Vec<u8>,
    sealed: Vec<u8>,
}

fn unusable_credentials(id: &str) -> Result<Unusable, Error> {
    let token = Token::generate();
    let (private, public) = generate_key_pair();
    Ok(Unusable {
        hash: token.hash().0,
        public: public.to_bytes().to_vec(),
        sealed: private.seal(&token, id)?,
    })
}

impl Vault {
    pub async fn provisioned_users(&self) -> Result<Vec<ProvisionedUser>, Error> {
        self.store
            .read(|c| {
                let mine: BTreeSet<(String, Option<String>)> =
                    provisioned::list(c, "user")?.into_iter().collect();
                let mut out = Vec::new();
                for row in list_users(c)? {
                    if let Some((_, ext)) = mine.iter().find(|(id, _)| *id == row.id) {
                        let ext = ext.clone();
                        out.push(user_view(c, row, ext)?);
                    }
                }
                Ok::<_, Error>(out)
            })
            .await
    }

    pub async fn provisioned_user(&self, id: &str) -> Result<ProvisionedUser, Error> {
        let id = id.to_owned();
        self.store
            .read(move |c| {
                let (row, ext) = own_user(c, &id)?;
                user_view(c, row, ext)
            })
            .await
    }

    /// Creates a member without a usable token (an admin issues it an invite).
    pub async fn provision_user(
        &self,
        p: &Provisioner,
        name: String,
        email: String,
        external_id: Option<String>,
        active: bool,
    ) -> Result<ProvisionedUser, Error> {
        self.check_writable()?;
        check_user_name(&name)?;
        check_email(&email)?;
        let id = AgentId::generate().to_string();
        let hash = unusable_credentials(&id)?.hash;
        let mut row = AgentRow::new(id.clone(), name, "user", hash, store::now_ms());
        row.role = Some(Role::Member.as_str().to_owned());
        row.email = Some(email);
        // No key pair: nothing can be wrapped to this user before it redeems its invite.
        let event = p
            .audit("user.create")
            .target(id.clone())
            .detail("role", "member");
        let p = p.clone();
        let out = self
            .store
            .write(move |c| {
                insert_agent(c, &row).map_err(from_store)?;
                provisioned::mark(c, &row.id, "user", external_id.as_deref())?;
                crate::audit::record(c, &event)?;
                if !active {
                    stop_user(c, &row.id, false)?;
                    crate::audit::record(c, &p.audit("user.deactivate").target(row.id.as_str()))?;
                }
                let (row, ext) = own_user(c, &row.id)?;
                user_view(c, row, ext)
            })
            .await?;
        self.reload_principals().await?;
        Ok(out)
    }

    /// Changes one of the provider's users. Deactivation stops its tokens and its agents at
    /// once; reactivation leaves it without a usable token (it needs a new invite).
    pub async fn change_provisioned_user(
        &self,
        p: &Provisioner,
        id: &str,
        change: ProvisionedChange,
    ) -> Result<ProvisionedUser, Error> {
        self.check_writable()?;
        if let Some(n) = &change.name {
            check_user_name(n)?;
        }
        if let Some(e) = &change.email {
            check_email(e)?;
        }
        let id = id.to_owned();
        let p = p.clone();
        let out = self
            .store
            .write(move |c| {
                let (row, ext) = own_user(c, &id)?;
                let renamed = change.name.as_ref().filter(|n| **n != row.name);
                let re_mailed = change
                    .email
                    .as_ref()
                    .filter(|e| Some(e.as_str()) != row.email.as_deref());
                if renamed.is_some() || re_mailed.is_some() {
                    update_user(
                        c,
                        &id,
                        renamed.map(String::as_str),
                        re_mailed.map(String::as_str),
                        None,
                    )
                    .map_err(from_store)?;
                    crate::audit::record(c, &p.audit("user.update").target(id.as_str()))?;
                }
                if let Some(e) = &change.external_id
                    && *e != ext
                {
                    provisioned::mark(c, &id, "user", e.as_deref())?;
                }
                match (change.active, row.deactivated_at.is_some()) {
                    (Some(false), false) => {
                        stop_user(c, &id, false)?;
                        crate::audit::record(c, &p.audit("user.deactivate").target(id.as_str()))?;
                    }
                    (Some(true), true) => {
                        let u = unusable_credentials(&id)?;
                        reactivate_user(c, &id, &u.hash, &u.public, &u.sealed)
                            .map_err(from_store)?;
                        crate::audit::record(c, &p.audit("user.activate").target(id.as_str()))?;
                    }
                    _ => {}
                }
                let (row, ext) = own_user(c, &id)?;
                user_view(c, row, ext)
            })
            .await?;
        self.reload_principals().await?;
        Ok(out)
    }

    /// Deletes one of the provider's users: its tokens and agents stop, its memberships end.
    pub async fn delete_provisioned_user(&self, p: &Provisioner, id: &str) -> Result<(), Error> {
        self.check_writable()?;
        let id = id.to_owned();
        let event = p.audit("user.delete").target(id.clone());
        self.store
            .write(move |c| {
                own_user(c, &id)?;
                stop_user(c, &id, true)?;
                crate::audit::record(c, &event)?;
                Ok::<_, Error>(())
            })
            .await?;
        self.reload_principals().await
    }

    /// Every live group (the provider may fill groups an admin made and gave scopes).
    pub async fn provisioner_groups(&self) -> Result<Vec<ProvisionedGroup>, Error> {
        self.store
            .read(|c| {
                list_groups(c)?
                    .into_iter()
                    .map(|g| group_view(c, g))
                    .collect::<Result<Vec<_>, Error>>()
            })
            .await
    }

    pub async fn provisioner_group(&self, id: &str) -> Result<ProvisionedGroup, Error> {
        let id = id.to_owned();
        self.store
            .read(move |c| {
                let g = get_group(c, &id)?.ok_or_else(|| Error::GroupNotFound(id.clone()))?;
                group_view(c, g)
            })
            .await
    }

    /// Creates a group without scopes (an admin gives it scopes), with the provider's users
    /// in `members` (pending grants).
    pub async fn provision_group(
        &self,
        p: &Provisioner,
        name: String,
        external_id: Option<String>,
        members: Vec<String>,
    ) -> Result<ProvisionedGroup, Error> {
        self.check_writable()?;
        crate::vault::GroupSpec::parse(&name, &[])?;
        let row = GroupRow {
            id: GroupId::generate().to_string(),
            name,
            scopes: Vec::new(),
            created_at: store::now_ms(),
        };
        let p = p.clone();
        let out = self
            .store
            .write(move |c| {
                insert_group(c, &row).map_err(from_store)?;
                provisioned::mark(c, &row.id, "group", external_id.as_deref())?;
                crate::audit::record(c, &p.audit("group.create").target(row.id.as_str()))?;
                change_members(
                    c,
                    &p,
                    &row.id,
                    MembersChange {
                        add: members,
                        ..Default::default()
                    },
                )?;
                let g =
                    get_group(c, &row.id)?.ok_or_else(|| Error::GroupNotFound(row.id.clone()))?;
                group_view(c, g)
            })
            .await?;
        self.reload_principals().await?;
        Ok(out)
    }

    pub async fn change_provisioned_members(
        &self,
        p: &Provisioner,
        group: &str,
        change: MembersChange,
    ) -> Result<ProvisionedGroup, Error> {
        self.check_writable()?;
        let group = group.to_owned();
        let p = p.clone();
        let out = self
            .store
            .write(move |c| {
                let g = get_group(c, &group)?.ok_or_else(|| Error::GroupNotFound(group.clone()))?;
                change_members(c, &p, &group, change)?;
                group_view(c, g)
            })
            .await?;
        self.reload_principals().await?;
        Ok(out)
    }

    /// Deletes a group the provider created (never one an admin made).
    pub async fn delete_provisioned_group(&self, p: &Provisioner, id: &str) -> Result<(), Error> {
        self.check_writable()?;
        let id = id.to_owned();
        let event = p.audit("group.delete").target(id.clone());
        self.store
            .write(move |c| {
                get_group(c, &id)?.ok_or_else(|| Error::GroupNotFound(id.clone()))?;
                if provisioned::get(c, &id, "group")?.is_none() {
                    return Err(Error::NotAllowed(
                        "this group was made in the vault, not by the identity provider; an admin deletes it".into(),
                    ));
                }
                delete_group(c, &id).map_err(from_store)?;
                super::entitlement::drop_unentitled(c)?;
                crate::audit::record(c, &event)?;
                Ok::<_, Error>(())
            })
            .await?;
        self.reload_principals().await
    }
}

/// Applies a members change in the caller's write: every id must be one of the provider's
/// live users; additions are pending grants.
fn change_members(
    c: &Connection,
    p: &Provisioner,
    group: &str,
    change: MembersChange,
) -> Result<(), Error> {
    let check = |id: &str| -> Result<(), Error> {
        own_user(c, id).map(|_| ()).map_err(|_| {
            Error::Invalid(crate::vault::Invalid(format!(
                "member {id:?} is not a user the identity provider created; it manages only those"
            )))
        })
    };
    let current: BTreeSet<String> = {
        let mine: BTreeSet<String> = provisioned::list(c, "user")?
            .into_iter()
            .map(|(id, _)| id)
            .collect();
        all_memberships(c)?
            .into_iter()
            .filter(|(g, u, _)| g == group && mine.contains(u))
            .map(|(_, u, _)| u)
            .collect()
    };
    let (mut add, mut remove) = (change.add, change.remove);
    if let Some(all) = change.replace {
        let want: BTreeSet<String> = all.into_iter().collect();
        add.extend(want.difference(&current).cloned());
        remove.extend(current.difference(&want).cloned());
    }
    for u in &add {
        check(u)?;
        if add_member_as(c, group, u, true)? {
            crate::audit::record(
                c,
                &p.audit("group.member.add")
                    .target(group)
                    .detail("user", u.as_str())
                    .detail("pending", "true"),
            )?;
        }
    }
    let mut removed = false;
    for u in &remove {
        check(u)?;
        if remove_member(c, group, u)? {
            removed = true;
            crate::audit::record(
                c,
                &p.audit("group.member.remove")
                    .target(group)
                    .detail("user", u.as_str()),
            )?;
        }
    }
    if removed {
        super::entitlement::drop_unentitled(c)?;
    }
    Ok(())
}
