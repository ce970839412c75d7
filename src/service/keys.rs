//! Scope keys inside a write: the caller's copy opened, a new key wrapped for everyone
//! entitled, grants to principals who became entitled, and a principal's move to a key pair.
//!
//! Granting needs a caller who holds the key: it opens its own copy (its private key unsealed
//! with the token of the request) and wraps the key to the recipient's public key. The
//! recipient's token is never needed.

use super::entitlement::{Directory, Scopes};
use super::owner::ensure_current;
use super::{Caller, Error};
use crate::crypto::{PrivateKey, PublicKey, ScopeKey, Token, WrapFormat, generate_key_pair};
use crate::store::ScopeKeyRow;
use crate::store::agents::{
    get_principal, get_scope_key, put_scope_key, rewrap_scope_key, scope_key_holders,
    scope_keys_of, set_key_pair,
};
use crate::vault::AgentId;
use rusqlite::Connection;
use std::collections::HashMap;

/// `(name, kind)` of each holder, as people read them: "the owner", "user \"alice\"".
pub(super) fn describe_holders(holders: &[(String, String)]) -> String {
    if holders.is_empty() {
        return "nobody".to_owned();
    }
    holders
        .iter()
        .map(|(name, kind)| match kind.as_str() {
            "owner" => "the owner".to_owned(),
            k => format!("{k} {name:?}"),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// The caller's keys during one write: its private key (unsealed once) and the scope keys
/// it opened or created (each looked up once, e.g. across a bulk import).
pub(super) struct KeyRing<'c> {
    caller: &'c Caller,
    checked: bool,
    private: Option<PrivateKey>,
    held: HashMap<String, ScopeKey>,
}

impl<'c> KeyRing<'c> {
    pub fn new(caller: &'c Caller) -> Self {
        Self {
            caller,
            checked: false,
            private: None,
            held: HashMap::new(),
        }
    }

    /// Refuses a token that is no longer the caller's own (rotated away, or the principal
    /// deactivated while this write waited): what it would wrap or open belongs to others now.
    /// Checked once, at the first use of a key (a write without credential fields needs none).
    fn check(&mut self, conn: &Connection) -> Result<(), Error> {
        if !self.checked {
            ensure_current(conn, &self.caller.principal.id, &self.caller.token)?;
            self.checked = true;
        }
        Ok(())
    }

    fn id(&self) -> &str {
        self.caller.principal.id.as_str()
    }

    fn private(&mut self, conn: &Connection) -> Result<&PrivateKey, Error> {
        if self.private.is_none() {
            let row = get_principal(conn, self.id())?.ok_or(Error::InvalidToken)?;
            let sealed = row
                .sealed_private_key
                .ok_or(Error::Crypto(crate::crypto::Error::Format))?;
            self.private = Some(PrivateKey::unseal(&self.caller.token, self.id(), &sealed)?);
        }
        Ok(self.private.as_ref().expect("just set"))
    }

    /// Opens the caller's copy of `scope`'s key; false if it holds none.
    fn open_held(&mut self, conn: &Connection, scope: &str) -> Result<bool, Error> {
        if self.held.contains_key(scope) {
            return Ok(true);
        }
        let Some(wrapped) = get_scope_key(conn, scope, self.id())? else {
            return Ok(false);
        };
        let key = match WrapFormat::of(&wrapped)? {
            WrapFormat::Legacy => {
                ScopeKey::unwrap_legacy(&self.caller.token, scope, self.id(), &wrapped)?
            }
            WrapFormat::Hpke => {
                let id = self.id().to_owned();
                ScopeKey::unwrap_with(self.private(conn)?, scope, &id, &wrapped)?
            }
        };
        self.held.insert(scope.to_owned(), key);
        Ok(true)
    }

    /// The key to seal a field of `scope` with: the caller's copy, or, when the scope has no
    /// key yet, a new one wrapped for every active principal entitled to it (the owner, the
    /// caller and the scope's users and agents) whose public key is known.
    ///
    /// A scope has one key. When others hold it but the caller does not, a new key would
    /// split the scope: that is refused, naming who holds it.
    pub fn for_write(&mut self, conn: &Connection, scope: &str) -> Result<&ScopeKey, Error> {
        self.check(conn)?;
        if !self.open_held(conn, scope)? {
            let holders = scope_key_holders(conn, scope)?;
            if !holders.is_empty() {
                return Err(Error::Conflict(format!(
                    "scope {scope:?} already has a key, held by {}; this token holds no copy of it, and a second key would leave the scope's fields unreadable to one side. Write to this scope with a token that holds it, or have one of them grant it",
                    describe_holders(&holders)
                )));
            }
            let key = ScopeKey::generate();
            let dir = Directory::load(conn)?;
            for (id, scopes) in dir.effective() {
                if !scopes.contains(scope) {
                    continue;
                }
                let Some(pk) = dir.principal(&id).and_then(|p| p.public_key.as_deref()) else {
                    // Not signed in since the upgrade to key pairs: no public key to wrap to.
                    continue;
                };
                put_scope_key(
                    conn,
                    &ScopeKeyRow {
                        scope: scope.to_owned(),
                        agent_id: id.clone(),
                        wrapped: key.wrap_to(&PublicKey::from_bytes(pk)?, scope, &id)?,
                    },
                )?;
            }
            if get_scope_key(conn, scope, self.id())?.is_none() {
                return Err(Error::Crypto(crate::crypto::Error::Format));
            }
            self.held.insert(scope.to_owned(), key);
        }
        Ok(&self.held[scope])
    }

    /// Gives every principal in `recipients` a copy of each key of the scopes it is entitled
    /// to and lacks. A scope without a key yet needs nothing (its key will be wrapped for them
    /// when it is made). A key the caller does not hold cannot be granted: refused, naming
    /// the scope and its holders.
    pub fn grant_entitlements(
        &mut self,
        conn: &Connection,
        recipients: &[String],
    ) -> Result<usize, Error> {
        self.check(conn)?;
        let dir = Directory::load(conn)?;
        let effective = dir.effective();
        let mut granted = 0;
        for id in recipients {
            let Some(Scopes::Some(scopes)) = effective.get(id) else {
                continue;
            };
            let Some(pk) = dir.principal(id).and_then(|p| p.public_key.as_deref()) else {
                continue;
            };
            let pk = PublicKey::from_bytes(pk)?;
            for scope in scopes {
                if get_scope_key(conn, scope, id)?.is_some() {
                    continue;
                }
                let holders = scope_key_holders(conn, scope)?;
                if holders.is_empty() {
                    continue;
                }
                if !self.open_held(conn, scope)? {
                    return Err(Error::KeyNotHeld {
                        scope: scope.clone(),
                        holders: describe_holders(&holders),
                    });
                }
                put_scope_key(
                    conn,
                    &ScopeKeyRow {
                        scope: scope.clone(),
                        agent_id: id.clone(),
                        wrapped: self.held[scope].wrap_to(&pk, scope, id)?,
                    },
                )?;
                granted += 1;
            }
        }
        Ok(granted)
    }
}

/// Gives a principal that has none its key pair, its private key sealed under `token`, and
/// re-wraps its legacy copies of scope keys (which open with that token) to its public key.
/// Returns false if it had a key pair already.
pub(super) fn migrate_to_key_pair(
    conn: &Connection,
    id: &AgentId,
    token: &Token,
) -> Result<bool, Error> {
    ensure_current(conn, id, token)?;
    let row = get_principal(conn, id.as_str())?.ok_or(Error::InvalidToken)?;
    if row.public_key.is_some() {
        return Ok(false);
    }
    let (private, public) = generate_key_pair();
    let sealed = private.seal(token, id.as_str())?;
    if !set_key_pair(conn, id.as_str(), &public.to_bytes(), &sealed)? {
        return Ok(false);
    }
    rewrap_legacy(conn, id, token, &public)?;
    Ok(true)
}

/// Re-wraps `id`'s legacy copies of scope keys to its public key.
pub(super) fn rewrap_legacy(
    conn: &Connection,
    id: &AgentId,
    token: &Token,
    public: &PublicKey,
) -> Result<usize, Error> {
    let mut n = 0;
    for k in scope_keys_of(conn, id.as_str())? {
        if WrapFormat::of(&k.wrapped)? != WrapFormat::Legacy {
            continue;
        }
        let key = ScopeKey::unwrap_legacy(token, &k.scope, id.as_str(), &k.wrapped)?;
        let wrapped = key.wrap_to(public, &k.scope, id.as_str())?;
        rewrap_scope_key(conn, &ScopeKeyRow { wrapped, ..k })?;
        n += 1;
    }
    Ok(n)
}
