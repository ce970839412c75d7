//! The vault's use cases: who may do what, what gets encrypted with which key, and what the
//! store is asked to keep. Transport-agnostic: the HTTP layer calls this, never the store.
//!
//! Architecture invariants:
//! - Every operation takes a [`Caller`] that [`Vault::authenticate`] produced.
//! - Plaintext exists only between a request and the crypto call; nothing here logs values.

mod agents;
mod audit;
mod auth;
pub mod changes;
mod entitlement;
mod entries;
mod grants;
mod groups;
mod invites;
mod key_check;
mod keys;
mod owner;
pub mod provisioning;
pub mod proxy;
mod read_cache;
mod replicated;
mod users;

pub use agents::{AgentCreated, AgentView};
pub use audit::{AuditOptions, AuditPage, DiskAlert, MAX_PAGE as AUDIT_MAX_PAGE};
pub use auth::{Caller, Kind, Principal};
pub use entitlement::drop_unentitled;
pub use entries::{EntryView, FieldView};
pub use grants::{GrantRef, PendingGrant};
pub use groups::{GroupView, MemberAdded};
pub use invites::{
    DEFAULT_TTL_SECS as INVITE_TTL_SECS, Invite, MAX_TTL_SECS as INVITE_MAX_TTL_SECS, Redeemed,
};
pub use key_check::{check_master_key, seal_key_check};
pub use replicated::ReplicatedField;
pub use users::{UserChange, UserCreated, UserView};

use crate::crypto::{self, MasterKey, Sealer, Token, generate_key_pair};
use crate::store::{self, Store};
use crate::vault::{AgentId, Invalid};
use auth::Principals;
use entitlement::Directory;
use read_cache::ReadCache;
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// Messages embed their cause rather than chaining it (`source()`), so it is said once.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    Invalid(Invalid),
    #[error("this request needs an Authorization: Bearer <token> header")]
    MissingToken,
    #[error("the token is not valid: it is unknown or has been revoked")]
    InvalidToken,
    #[error("the token has expired; ask the owner for a new one")]
    TokenExpired,
    #[error("requests from {0} are not allowed for this token")]
    IpNotAllowed(IpAddr),
    #[error("rate limit exceeded for this token; retry in {retry_after_secs} s")]
    RateLimited { retry_after_secs: u64 },
    #[error("only the owner may do this")]
    OwnerOnly,
    /// A role rule: the message says who may.
    #[error("{0}")]
    NotAllowed(String),
    #[error("no user with id {0}")]
    UserNotFound(String),
    #[error("no group with id {0}")]
    GroupNotFound(String),
    /// A grant needs a copy of the key; the caller has none.
    #[error(
        "scope {scope:?} has a key, held by {holders}; this token holds no copy of it, so it cannot give it to anyone. Ask one of its holders (the owner holds every key) to do this"
    )]
    KeyNotHeld { scope: String, holders: String },
    /// An invite code that is unknown, used or expired: the message says which and the fix.
    #[error("{0}")]
    InviteNotValid(String),
    #[error("no entry with id {0}")]
    EntryNotFound(String),
    #[error("entry {entry} has no field named {field:?}")]
    FieldNotFound { entry: String, field: String },
    /// What an agent hears for an entry it may not see and for one that does not exist alike.
    #[error(
        "no entry with id {0} that this token may read: it does not exist, or none of its fields is in this token's scopes"
    )]
    EntryNotReadable(String),
    /// What a caller hears for a field it may not read and for one that does not exist alike.
    #[error(
        "no field {field:?} in entry {entry} that this token may read: it does not exist, or it is not in this token's scopes"
    )]
    FieldNotReadable { entry: String, field: String },
    /// A `use` field an agent asked to read: it exists and is in its scopes, but only the proxy
    /// may use it.
    #[error(
        "field {field:?} of entry {entry} is use-only for agents: its value is never returned to an agent; send the request that needs it through POST /v1/proxy with a {{{{clavitor://ENTRY/FIELD}}}} placeholder"
    )]
    UseOnly { entry: String, field: String },
    #[error("no active agent with id {0}")]
    AgentNotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Refused(String),
    #[error("this POP is a read-only backup; send writes to the primary")]
    ReadOnlyBackup,
    #[error("storage failure: {0}")]
    Store(store::Error),
    #[error("stored data could not be decrypted: {0}")]
    Crypto(crypto::Error),
    /// The audit trail cannot be written (e.g. the disk is full): nothing is served until it
    /// can, so nothing happens unrecorded.
    #[error(
        "the audit trail cannot be written (e.g. the disk is full), so this vault refuses requests until it can; the operator has been alerted"
    )]
    AuditUnavailable,
}

impl From<Invalid> for Error {
    fn from(e: Invalid) -> Self {
        Error::Invalid(e)
    }
}

impl From<store::Error> for Error {
    fn from(e: store::Error) -> Self {
        Error::Store(e)
    }
}

impl From<crypto::Error> for Error {
    fn from(e: crypto::Error) -> Self {
        Error::Crypto(e)
    }
}

/// The running vault: the store, the vault key, and the table of live tokens.
pub struct Vault {
    store: Store,
    sealer: Sealer,
    principals: Principals,
    /// Held while the principal table is rebuilt from the database, so that two rebuilds
    /// install their snapshots in the order they read them.
    rebuilding: tokio::sync::Mutex<()>,
    reads: ReadCache,
    writable: AtomicBool,
    trail: Arc<crate::audit::Trail>,
    audit_key: crypto::AuditKey,
    /// `GET /v1/changes`: what changed, for watchers (`clavitor run --watch`).
    changes: changes::ChangeFeed,
    /// Invite redeem attempts per address (`POST /v1/invite/redeem` has no bearer).
    invite_attempts: invites::Attempts,
}

impl std::fmt::Debug for Vault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Vault").field("store", &self.store).finish()
    }
}

impl Vault {
    pub async fn open(store: Store, master: &MasterKey) -> Result<Arc<Self>, Error> {
        let audit_key = master.audit_key();
        store.set_audit_key(audit_key.clone());
        let vault = Arc::new(Self {
            trail: Arc::new(crate::audit::Trail::new(store.clone())),
            store,
            sealer: master.vault_sealer(),
            principals: Principals::default(),
            rebuilding: tokio::sync::Mutex::new(()),
            reads: ReadCache::default(),
            writable: AtomicBool::new(true),
            audit_key,
            changes: changes::ChangeFeed::default(),
            invite_attempts: invites::Attempts::default(),
        });
        vault.reload_principals().await?;
        Ok(vault)
    }

    /// Rebuilds the table of live tokens from the database: after any change to principals,
    /// groups or memberships, made here or arrived from elsewhere.
    pub async fn reload_principals(&self) -> Result<(), Error> {
        let _one_at_a_time = self.rebuilding.lock().await;
        let dir = Directory::read(&self.store).await?;
        self.principals.replace_all(&dir);
        Ok(())
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Whether client writes are accepted (false on a backup POP).
    pub fn set_writable(&self, writable: bool) {
        self.writable.store(writable, Ordering::SeqCst);
    }

    /// Whether this POP takes writes (false on a backup).
    pub fn is_writable(&self) -> bool {
        self.writable.load(Ordering::SeqCst)
    }

    fn check_writable(&self) -> Result<(), Error> {
        if self.writable.load(Ordering::SeqCst) {
            Ok(())
        } else {
            Err(Error::ReadOnlyBackup)
        }
    }

    /// Who is calling. Refused outright while the audit trail cannot be written; a refusal is
    /// counted for the trail (one event per address and minute).
    ///
    /// A principal without a key pair (made before key pairs existed) gets one on this, its
    /// first request since: its private key can only be sealed under its token, which the
    /// server sees only now. Its copies of scope keys move to the new format in the same write.
    pub async fn authenticate(&self, bearer: Option<&str>, ip: IpAddr) -> Result<Caller, Error> {
        if !self.trail.available() {
            return Err(Error::AuditUnavailable);
        }
        let now = store::now_ms();
        let found = match bearer {
            None => Err((Error::MissingToken, None)),
            Some(token) => self
                .principals
                .authenticate_as(Token::from_text(token), ip, now),
        };
        let mut caller = match found {
            Ok(caller) => caller,
            Err((e, who)) => {
                use crate::audit::Denial;
                let why = match &e {
                    Error::MissingToken => Some(Denial::MissingToken),
                    Error::InvalidToken => Some(Denial::InvalidToken),
                    Error::TokenExpired => Some(Denial::TokenExpired),
                    Error::IpNotAllowed(_) => Some(Denial::IpNotAllowed),
                    Error::RateLimited { .. } => Some(Denial::RateLimited),
                    _ => None,
                };
                if let Some(why) = why {
                    self.trail
                        .denied(ip, why, who.as_ref().map(AgentId::as_str), now);
                }
                return Err(e);
            }
        };
        caller.trail = Some(self.trail.clone());
        if caller.principal.has_key_pair() || !self.writable.load(Ordering::SeqCst) {
            // A backup cannot write; the old format still opens there with the token.
            return Ok(caller);
        }
        let (id, token) = (caller.principal.id.clone(), caller.token.clone());
        self.store
            .write(move |c| keys::migrate_to_key_pair(c, &id, &token))
            .await?;
        self.reload_principals().await?;
        caller.principal = self
            .principals
            .get(&caller.token.hash())
            .ok_or(Error::InvalidToken)?;
        Ok(caller)
    }

    /// Creates the owner row for a fresh vault (a primary's or a standalone's: a backup gets
    /// its owner by replication). Returns the owner's token.
    pub async fn create_owner(store: &Store) -> Result<Token, Error> {
        let token = Token::generate();
        let id = AgentId::generate().to_string();
        let (private, public) = generate_key_pair();
        let mut row = store::AgentRow::new(
            id.clone(),
            "owner".into(),
            "owner",
            token.hash().0,
            store::now_ms(),
        );
        row.scopes = vec!["*".into()];
        row.public_key = Some(public.to_bytes());
        row.sealed_private_key = Some(private.seal(&token, &id)?);
        store
            .write(move |c| -> Result<(), Error> {
                let existing: i64 =
                    c.query_row("SELECT count(*) FROM agents WHERE is_owner = 1", [], |r| {
                        r.get(0)
                    })?;
                if existing > 0 {
                    return Err(Error::Conflict("this vault already has an owner".into()));
                }
                store::agents::insert_agent(c, &row)?;
                Ok(())
            })
            .await?;
        Ok(token)
    }
}

fn require_owner(caller: &Caller) -> Result<(), Error> {
    if caller.principal.is_owner {
        Ok(())
    } else {
        caller.denied(crate::audit::Denial::Forbidden);
        Err(Error::OwnerOnly)
    }
}

/// The owner or an admin: who manages people, groups and everyone's agents.
fn require_admin(caller: &Caller) -> Result<(), Error> {
    if caller.principal.is_admin() {
        Ok(())
    } else {
        Err(caller.forbidden("only the owner or an admin may do this"))
    }
}

/// A store refusal as the service says it: conflicts and rejections reach the client.
fn from_store(e: store::Error) -> Error {
    match e {
        store::Error::Conflict(m) => Error::Conflict(m),
        store::Error::Rejected(m) => Error::Refused(m),
        e => Error::Store(e),
    }
}

impl From<rusqlite::Error> for Error {
    fn from(e: rusqlite::Error) -> Self {
        Error::Store(store::Error::Sqlite(e))
    }
}
