//! Entries: sealing on the way in, authorising and opening on the way out.

//!
//! Who sees what: the owner every field; a user or agent the fields of its scopes (and an
//! admin also the fields without a scope); an entry with no such field does not exist for it.
//! A write never touches a field outside its caller's scopes: a `PUT` keeps the fields the
//! caller cannot see as they are, and a caller may delete only an entry all of whose fields
//! it sees. A `use` field is read by people; agents only have the server use it for them.

use super::auth::Principal;
use super::keys::KeyRing;
use super::read_cache::StoredField;
use super::{Caller, Error, Vault, require_admin};
use crate::crypto::{ScopeKey, Sealer, entry_meta_aad, field_policy_aad};
use crate::store::agents::get_scope_key;
use crate::store::entries::{self as rows, FieldMeta, FieldRow, Written};
use crate::store::{self, EntryRow, StoredPolicy};
use crate::vault::{AgentAccess, AgentId, EntryDraft, EntryId, FieldDraft, Tier};
use rusqlite::Connection;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::Arc;
use zeroize::Zeroizing;

/// Entry metadata as sealed in the `meta` column (a storage format, not an API type).
#[derive(Serialize, Deserialize)]
struct SealedMeta {
    title: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    username: Option<String>,
}

#[derive(Debug)]
pub struct FieldInfo {
    pub name: String,
    pub tier: Tier,
    pub scope: Option<String>,
    pub agent_access: AgentAccess,
    pub allowed_hosts: Vec<String>,
}

#[derive(Debug)]
pub struct EntryView {
    pub id: String,
    pub title: String,
    pub url: Option<String>,
    pub username: Option<String>,
    pub fields: Vec<FieldInfo>,
    pub created_at: i64,
    pub updated_at: i64,
    pub version: i64,
}

#[derive(Debug)]
pub struct FieldView {
    pub name: String,
    pub value: Zeroizing<String>,
    pub tier: Tier,
}

/// Seals a draft's fields inside the write transaction, because credential fields need their
/// scope key, which may have to be created (and must then be created exactly once).
#[allow(clippy::too_many_arguments)]
fn seal_fields(
    conn: &Connection,
    sealer: &Sealer,
    keys: &mut KeyRing<'_>,
    entry_id: &str,
    draft: &EntryDraft,
    current: &HashMap<String, StoredPolicy>,
) -> Result<Vec<FieldRow>, Error> {
    let mut out = Vec::with_capacity(draft.fields.len());
    for f in &draft.fields {
        let policy = field_policy(f, current.get(&f.name));
        let aad = field_policy_aad(
            entry_id,
            &f.name,
            &policy.agent_access,
            &policy.allowed_hosts,
        );
        let ciphertext = match f.tier {
            Tier::Vault | Tier::Identity => sealer.seal(&aad, f.value.as_bytes())?,
            Tier::Credential => {
                let scope = f
                    .scope
                    .as_ref()
                    .expect("validated: credential fields have a scope")
                    .as_str();
                keys.for_write(conn, scope)?
                    .sealer()
                    .seal(&aad, f.value.as_bytes())?
            }
        };
        out.push(FieldRow {
            meta: FieldMeta {
                name: f.name.clone(),
                tier: f.tier.as_str().to_owned(),
                scope: f.scope.as_ref().map(|s| s.as_str().to_owned()),
                policy,
            },
            ciphertext,
        });
    }
    Ok(out)
}

/// Every field of `draft` must be one the caller may write.
fn check_writable_fields(caller: &Caller, draft: &EntryDraft) -> Result<(), Error> {
    for f in &draft.fields {
        let scope = f.scope.as_ref().map(|s| s.as_str());
        if !caller.principal.may_read_scope(scope) {
            return Err(caller.forbidden(match scope {
                Some(s) => format!(
                    "field {:?} is in scope {s:?}, which this token does not hold; a write may only touch fields of its caller's scopes",
                    f.name
                ),
                None => format!(
                    "field {:?} has no scope; fields without a scope are written by the owner and admins only. Give it a scope this token holds",
                    f.name
                ),
            }));
        }
    }
    Ok(())
}

/// A field's policy after a write: what the draft says, and for what it leaves out, what the
/// field of that name had (a new field: `read`, no hosts).
fn field_policy(f: &FieldDraft, current: Option<&StoredPolicy>) -> StoredPolicy {
    let current = current.cloned().unwrap_or_default();
    StoredPolicy {
        agent_access: f
            .agent_access
            .map_or(current.agent_access, |a| a.as_str().to_owned()),
        allowed_hosts: f.allowed_hosts.as_ref().map_or(current.allowed_hosts, |h| {
            h.iter().map(|p| p.as_str().to_owned()).collect()
        }),
    }
}

/// Whether a write changes any field's policy from what it is (for a new field: the default).
fn changes_policy(draft: &EntryDraft, current: &HashMap<String, StoredPolicy>) -> bool {
    draft.fields.iter().any(|f| {
        let before = current.get(&f.name).cloned().unwrap_or_default();
        field_policy(f, Some(&before)) != before
    })
}

/// Who may set or change a field's `agent_access` and `allowed_hosts`: the owner and admins.
/// The one place that decides it.
pub(super) fn may_set_field_policy(caller: &Caller) -> Result<(), Error> {
    require_admin(caller)
}

/// Whether `p` is given the value of a `use` field when it reads it: people are; agents use
/// such fields only through the proxy.
fn reads_use_fields(p: &Principal) -> bool {
    p.is_owner || p.is_user()
}

/// The associated data a stored field was sealed with.
fn stored_field_aad(entry_id: &str, meta: &FieldMeta) -> Vec<u8> {
    field_policy_aad(
        entry_id,
        &meta.name,
        &meta.policy.agent_access,
        &meta.policy.allowed_hosts,
    )
}

/// What someone who may not see an entry hears, alike for one that does not exist.
fn not_found(owner: bool, id: &EntryId) -> Error {
    if owner {
        Error::EntryNotFound(id.to_string())
    } else {
        Error::EntryNotReadable(id.to_string())
    }
}

/// A draft's field names, for its audit event (names only, never values).
fn field_names(draft: &EntryDraft) -> String {
    draft
        .fields
        .iter()
        .map(|f| f.name.as_str())
        .collect::<Vec<_>>()
        .join(",")
}

fn seal_meta(sealer: &Sealer, id: &str, d: &EntryDraft) -> Result<Vec<u8>, Error> {
    let meta = Zeroizing::new(
        serde_json::to_vec(&SealedMeta {
            title: d.title.clone(),
            url: d.url.clone(),
            username: d.username.clone(),
        })
        .expect("plain struct serialises"),
    );
    Ok(sealer.seal(&entry_meta_aad(id), &meta)?)
}

fn view(sealer: &Sealer, row: EntryRow, caller: &Caller) -> Result<Option<EntryView>, Error> {
    let p = &caller.principal;
    let fields: Vec<FieldInfo> = row
        .fields
        .into_iter()
        .filter(|f| p.may_read_scope(f.scope.as_deref()))
        .map(|f| {
            Ok(FieldInfo {
                tier: Tier::parse(&f.tier).map_err(|_| {
                    store::Error::Corrupt(format!("unknown tier {:?} in database", f.tier))
                })?,
                agent_access: AgentAccess::parse(&f.policy.agent_access).map_err(|_| {
                    store::Error::Corrupt("unknown agent_access in database".into())
                })?,
                allowed_hosts: f.policy.allowed_hosts,
                name: f.name,
                scope: f.scope,
            })
        })
        .collect::<Result<_, Error>>()?;
    // Others than the owner see only entries holding at least one field they may read.
    if !p.is_owner && fields.is_empty() {
        return Ok(None);
    }
    let plain = sealer.open(&entry_meta_aad(&row.id), &row.meta)?;
    let meta: SealedMeta = serde_json::from_slice(&plain)
        .map_err(|e| store::Error::Corrupt(format!("entry metadata: {e}")))?;
    Ok(Some(EntryView {
        id: row.id,
        title: meta.title,
        url: meta.url,
        username: meta.username,
        fields,
        created_at: row.created_at,
        updated_at: row.updated_at,
        version: row.version,
    }))
}

impl Vault {
    /// Who may create entries (one or many): the owner and users (each field then in the
    /// caller's scopes), not agents. The one place that decides it, so the bulk endpoint can
    /// ask before reading a large body.
    pub fn may_create_entries(&self, caller: &Caller) -> Result<(), Error> {
        let p = &caller.principal;
        if p.is_owner || p.is_user() {
            Ok(())
        } else {
            Err(caller.forbidden("agents read entries; only the owner and users write them"))
        }
    }

    pub async fn create_entry(
        &self,
        caller: &Caller,
        draft: EntryDraft,
    ) -> Result<(EntryId, Written), Error> {
        let mut created = self.create_entries(caller, vec![draft]).await?;
        Ok(created.pop().expect("one draft makes one entry"))
    }

    /// Creates every draft in one store write: if any fails (a field outside the caller's
    /// scopes, a scope key held only by others, a rotated token, a database error), none is
    /// kept.
    pub async fn create_entries(
        &self,
        caller: &Caller,
        drafts: Vec<EntryDraft>,
    ) -> Result<Vec<(EntryId, Written)>, Error> {
        self.may_create_entries(caller)?;
        for d in &drafts {
            check_writable_fields(caller, d)?;
        }
        let none = HashMap::new();
        if drafts.iter().any(|d| changes_policy(d, &none)) {
            may_set_field_policy(caller)?;
        }
        self.check_writable()?;
        let sealer = self.sealer.clone();
        let caller = caller.clone();
        // One event per entry, also in a bulk write (with the request's size), so the trail of
        // an entry does not depend on how it was created.
        let event = caller.audit("entry.create");
        let bulk = drafts.len();
        self.store
            .write(move |c| {
                let mut keys = KeyRing::new(&caller);
                let mut created = Vec::with_capacity(drafts.len());
                for draft in &drafts {
                    let id = EntryId::generate();
                    let meta = seal_meta(&sealer, id.as_str(), draft)?;
                    let fields = seal_fields(c, &sealer, &mut keys, id.as_str(), draft, &none)?;
                    let written = rows::insert_entry(c, id.as_str(), &meta, &fields)?;
                    let mut e = event.clone().target(id.as_str());
                    if bulk > 1 {
                        e = e.detail("bulk", bulk.to_string());
                    }
                    crate::audit::record(c, &e.detail("fields", field_names(draft)))?;
                    created.push((id, written));
                }
                Ok::<_, Error>(created)
            })
            .await
    }

    /// Replaces title, url, username and the fields the caller may see; fields outside its
    /// scopes stay exactly as they are (a name the caller cannot see cannot be reused).
    pub async fn replace_entry(
        &self,
        caller: &Caller,
        id: EntryId,
        draft: EntryDraft,
    ) -> Result<Written, Error> {
        self.may_create_entries(caller)?;
        check_writable_fields(caller, &draft)?;
        self.check_writable()?;
        let sealer = self.sealer.clone();
        let caller = caller.clone();
        let event = caller
            .audit("entry.update")
            .target(id.as_str())
            .detail("fields", field_names(&draft));
        self.store
            .write(move |c| {
                let p = &caller.principal;
                let not_found = || not_found(p.is_owner, &id);
                let existing = rows::fields_of(c, id.as_str())?.ok_or_else(not_found)?;
                let (visible, kept): (Vec<FieldRow>, Vec<FieldRow>) = existing
                    .into_iter()
                    .partition(|f| p.may_read_scope(f.meta.scope.as_deref()));
                if !p.is_owner && visible.is_empty() {
                    return Err(not_found());
                }
                if let Some(f) = draft
                    .fields
                    .iter()
                    .find(|f| kept.iter().any(|k| k.meta.name == f.name))
                {
                    return Err(Error::Conflict(format!(
                        "entry {id} already has a field named {:?} outside this token's scopes; it stays as it is, so choose another name",
                        f.name
                    )));
                }
                // Read inside the write, so a policy kept is the one the replaced row had.
                let current = rows::field_policies(c, id.as_str())?;
                if changes_policy(&draft, &current) {
                    may_set_field_policy(&caller)?;
                }
                let meta = seal_meta(&sealer, id.as_str(), &draft)?;
                let mut keys = KeyRing::new(&caller);
                let mut fields =
                    seal_fields(c, &sealer, &mut keys, id.as_str(), &draft, &current)?;
                fields.extend(kept);
                let written =
                    rows::replace_entry(c, id.as_str(), &meta, &fields).map_err(|e| match e {
                        store::Error::NotFound => not_found(),
                        e => e.into(),
                    })?;
                crate::audit::record(c, &event)?;
                Ok(written)
            })
            .await
    }

    /// The owner deletes any entry; anyone else only an entry all of whose fields it sees.
    pub async fn delete_entry(&self, caller: &Caller, id: EntryId) -> Result<Written, Error> {
        self.may_create_entries(caller)?;
        self.check_writable()?;
        let caller = caller.clone();
        let event = caller.audit("entry.delete").target(id.as_str());
        self.store
            .write(move |c| {
                let p = &caller.principal;
                let not_found = || not_found(p.is_owner, &id);
                let existing = rows::fields_of(c, id.as_str())?.ok_or_else(not_found)?;
                let visible = existing
                    .iter()
                    .filter(|f| p.may_read_scope(f.meta.scope.as_deref()))
                    .count();
                if !p.is_owner {
                    if visible == 0 {
                        return Err(not_found());
                    }
                    if visible < existing.len() {
                        return Err(caller.forbidden(format!(
                            "entry {id} has fields outside this token's scopes; only a caller who sees every field (the owner does) may delete it"
                        )));
                    }
                }
                let written = rows::delete_entry(c, id.as_str()).map_err(|e| match e {
                    store::Error::NotFound => not_found(),
                    e => e.into(),
                })?;
                crate::audit::record(c, &event)?;
                Ok(written)
            })
            .await
    }

    /// An agent gets the same answer, for the same work (one statement, nothing decrypted),
    /// for an entry with no field in its scopes as for an entry that does not exist.
    pub async fn get_entry(&self, caller: &Caller, id: EntryId) -> Result<EntryView, Error> {
        let key = id.to_string();
        let row = self.store.lookup(move |c| rows::get_entry(c, &key)).await?;
        let not_found = || {
            if !caller.principal.is_owner {
                caller.denied(crate::audit::Denial::NotReadable);
            }
            not_found(caller.principal.is_owner, &id)
        };
        let found = match row {
            Some(row) => view(&self.sealer, row, caller)?.ok_or_else(not_found),
            None => Err(not_found()),
        }?;
        self.record_read(caller.audit("entry.read").target(id.as_str()))
            .await?;
        Ok(found)
    }

    pub async fn list_entries(&self, caller: &Caller) -> Result<Vec<EntryView>, Error> {
        let rows = self.store.read(rows::list_entries).await?;
        let mut out = Vec::with_capacity(rows.len());
        for row in rows {
            if let Some(v) = view(&self.sealer, row, caller)? {
                out.push(v);
            }
        }
        self.record_read(
            caller
                .audit("entry.list")
                .detail("count", out.len().to_string()),
        )
        .await?;
        Ok(out)
    }

    /// The one way a value leaves the vault.
    ///
    /// An agent cannot tell a field outside its scopes from one that does not exist, nor a
    /// field of an entry it may not see from one of an entry that does not exist: one answer
    /// for all, after the same work (one lookup, cached alike, nothing decrypted). A `use`
    /// field within its scopes is refused to it (403 `use_only`): it exists, but only the
    /// proxy may use it.
    pub async fn read_field(
        &self,
        caller: &Caller,
        id: EntryId,
        name: String,
    ) -> Result<FieldView, Error> {
        let (row, value) = self
            .open_field(caller, &id, &name, |row, p| {
                if row.meta.policy.agent_access == AgentAccess::Use.as_str() && !reads_use_fields(p)
                {
                    return Err(Error::UseOnly {
                        entry: id.to_string(),
                        field: name.clone(),
                    });
                }
                Ok(())
            })
            .await?;
        let tier = Tier::parse(&row.meta.tier)
            .map_err(|_| store::Error::Corrupt("unknown tier in database".into()))?;
        // With --audit-sync, the value leaves only once this is on disk.
        self.record_read(
            caller
                .audit("field.read")
                .target(id.as_str())
                .detail("field", name.as_str())
                .detail("tier", tier.as_str()),
        )
        .await?;
        Ok(FieldView { name, value, tier })
    }

    /// A field's value for the server to use on the caller's behalf (the proxy), `use` fields
    /// included, with its tier and the policy it was sealed under. Scopes apply as to reads. Not
    /// recorded here: the caller records the use once it knows where the value goes, and before
    /// it goes there.
    pub(super) async fn use_field(
        &self,
        caller: &Caller,
        id: &EntryId,
        name: &str,
    ) -> Result<(String, StoredPolicy, Zeroizing<String>), Error> {
        let (row, value) = self.open_field(caller, id, name, |_, _| Ok(())).await?;
        Ok((row.meta.tier.clone(), row.meta.policy.clone(), value))
    }

    /// Finds, authorises (scopes, then `check`) and opens one field.
    async fn open_field(
        &self,
        caller: &Caller,
        id: &EntryId,
        name: &str,
        check: impl FnOnce(&FieldRow, &Principal) -> Result<(), Error>,
    ) -> Result<(Arc<FieldRow>, Zeroizing<String>), Error> {
        let p = &caller.principal;
        let not_readable = || Error::FieldNotReadable {
            entry: id.to_string(),
            field: name.to_owned(),
        };
        let row = match self.stored_field(id, name).await? {
            StoredField::Row(row) if p.may_read_scope(row.meta.scope.as_deref()) => row,
            _ if !p.is_owner => {
                caller.denied(crate::audit::Denial::NotReadable);
                return Err(not_readable());
            }
            StoredField::NoEntry => return Err(Error::EntryNotFound(id.to_string())),
            StoredField::NoField | StoredField::Row(_) => {
                return Err(Error::FieldNotFound {
                    entry: id.to_string(),
                    field: name.to_owned(),
                });
            }
        };
        check(&row, p)?;
        let tier = Tier::parse(&row.meta.tier)
            .map_err(|_| store::Error::Corrupt("unknown tier in database".into()))?;
        let aad = stored_field_aad(id.as_str(), &row.meta);
        let plain = match tier {
            Tier::Vault | Tier::Identity => self.sealer.open(&aad, &row.ciphertext)?,
            Tier::Credential => {
                let scope = row.meta.scope.as_deref().unwrap_or_default();
                let wrapped = self
                    .stored_scope_key(scope, &p.id)
                    .await?
                    // No copy of the scope key for this token: it cannot read the field.
                    .ok_or_else(not_readable)?;
                let key =
                    ScopeKey::unwrap_stored(&wrapped, scope, p.id.as_str(), &caller.token, || {
                        p.private_key(&caller.token)
                    })?;
                key.sealer().open(&aad, &row.ciphertext)?
            }
        };
        let value = String::from_utf8(plain.to_vec())
            .map_err(|_| store::Error::Corrupt("field value is not UTF-8".into()))?;
        Ok((row, Zeroizing::new(value)))
    }

    /// A field's row as stored (still sealed), or its absence, from the read cache or the
    /// database.
    async fn stored_field(&self, id: &EntryId, name: &str) -> Result<StoredField, Error> {
        let generation = self.store.generation();
        if let Some(found) = self.reads.field(generation, id.as_str(), name) {
            return Ok(found);
        }
        let (entry, field) = (id.clone(), name.to_owned());
        let found = self
            .store
            .lookup(move |c| match rows::get_field(c, entry.as_str(), &field) {
                Ok(Some(row)) => Ok(StoredField::Row(Arc::new(row))),
                Ok(None) => Ok(StoredField::NoField),
                Err(store::Error::NotFound) => Ok(StoredField::NoEntry),
                Err(e) => Err(e),
            })
            .await?;
        self.reads.keep_field(generation, id.as_str(), name, &found);
        Ok(found)
    }

    /// `agent`'s copy of a scope key (wrapped), from the read cache or the database.
    async fn stored_scope_key(
        &self,
        scope: &str,
        agent: &AgentId,
    ) -> Result<Option<Arc<Vec<u8>>>, Error> {
        let generation = self.store.generation();
        if let Some(key) = self.reads.scope_key(generation, scope, agent.as_str()) {
            return Ok(Some(key));
        }
        let (s, a) = (scope.to_owned(), agent.clone());
        let key = self
            .store
            .lookup(move |c| get_scope_key(c, &s, a.as_str()))
            .await?
            .map(Arc::new);
        if let Some(k) = &key {
            self.reads
                .keep_scope_key(generation, scope, agent.as_str(), k);
        }
        Ok(key)
    }
}
