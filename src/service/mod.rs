//! The vault's use cases: who may do what, what gets encrypted with which key, and what the
//! store is asked to keep. Transport-agnostic: the HTTP layer calls this, never the store.
//!
//! Architecture invariants:
//! - Every operation takes a [`Caller`] that [`Vault::authenticate`] produced.
//! - Plaintext exists only between a request and the crypto call; nothing here logs values.

mod agents;
mod auth;
pub mod changes;
mod entries;
mod key_check;
mod owner;
pub mod proxy;
mod read_cache;
mod replicated;

pub use agents::{AgentCreated, AgentView};
pub use auth::{Caller, Principal};
pub use entries::{EntryView, FieldView};
pub use key_check::{check_master_key, seal_key_check};
pub use replicated::ReplicatedField;

use crate::crypto::{self, MasterKey, Sealer, Token};
use crate::store::{self, Store};
use crate::vault::{AgentId, Invalid};
use auth::Principals;
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
    reads: ReadCache,
    writable: AtomicBool,
    /// `GET /v1/changes`: what changed, for watchers (`clavitor run --watch`).
    changes: changes::ChangeFeed,
}

impl std::fmt::Debug for Vault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Vault").field("store", &self.store).finish()
    }
}

impl Vault {
    pub async fn open(store: Store, master: &MasterKey) -> Result<Arc<Self>, Error> {
        let vault = Arc::new(Self {
            store,
            sealer: master.vault_sealer(),
            principals: Principals::default(),
            reads: ReadCache::default(),
            writable: AtomicBool::new(true),
            changes: changes::ChangeFeed::default(),
        });
        vault.reload_principals().await?;
        Ok(vault)
    }

    /// Re-reads every agent from the database, e.g. after rows arrived from elsewhere.
    pub async fn reload_principals(&self) -> Result<(), Error> {
        let rows = self.store.read(store::agents::active_agents).await?;
        self.principals.replace_all(&rows);
        Ok(())
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Whether client writes are accepted (false on a backup POP).
    pub fn set_writable(&self, writable: bool) {
        self.writable.store(writable, Ordering::SeqCst);
    }

    fn check_writable(&self) -> Result<(), Error> {
        if self.writable.load(Ordering::SeqCst) {
            Ok(())
        } else {
            Err(Error::ReadOnlyBackup)
        }
    }

    pub fn authenticate(&self, bearer: Option<&str>, ip: IpAddr) -> Result<Caller, Error> {
        let token = bearer.ok_or(Error::MissingToken)?;
        self.principals
            .authenticate(Token::from_text(token), ip, store::now_ms())
    }

    /// Creates the owner row for a fresh vault (a primary's or a standalone's: a backup gets
    /// its owner by replication). Returns the owner's token.
    pub async fn create_owner(store: &Store) -> Result<Token, Error> {
        let token = Token::generate();
        let row = store::AgentRow {
            id: AgentId::generate().to_string(),
            name: "owner".into(),
            token_hash: token.hash().0,
            is_owner: true,
            scopes: vec!["*".into()],
            ip_allowlist: vec![],
            rate_limit_per_minute: None,
            created_at: store::now_ms(),
            expires_at: None,
            revoked_at: None,
        };
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
        Err(Error::OwnerOnly)
    }
}

impl From<rusqlite::Error> for Error {
    fn from(e: rusqlite::Error) -> Self {
        Error::Store(store::Error::Sqlite(e))
    }
}
