//! The data directory: `vault.db`, `master.key` and, after `init`, `owner.token`.

use crate::crypto::{MasterKey, Token};
use crate::files;
use crate::service::{self, Vault};
use crate::store::{self, Store};
use std::fs;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

pub const DEFAULT_DIR: &str = "./clavitor-data";
pub const DB_FILE: &str = "vault.db";
pub const KEY_FILE: &str = "master.key";
pub const OWNER_TOKEN_FILE: &str = "owner.token";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(
        "data dir {path} is not writable ({source}). Fix: choose another --data-dir, or give this user write access to it"
    )]
    NotWritable {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "{path} already holds a vault; refusing to overwrite it. Fix: use another --data-dir, or remove the old vault if you really mean to"
    )]
    AlreadyInitialised { path: PathBuf },
    #[error(
        "{path} has {found} bytes; a master key is exactly 32. The file is corrupt or not a Clavitor key. Fix: restore master.key from your backup"
    )]
    CorruptKey { path: PathBuf, found: usize },
    #[error(
        "{db} exists but {key} is missing; without it the vault cannot be opened. Fix: restore master.key from your backup"
    )]
    MissingKey { db: PathBuf, key: PathBuf },
    #[error(transparent)]
    File(#[from] files::Error),
    #[error(transparent)]
    Store(#[from] store::Error),
    #[error(transparent)]
    Service(#[from] service::Error),
}

#[derive(Debug, Clone)]
pub struct DataDir {
    path: PathBuf,
}

/// A freshly created vault's secrets, shown to the user once.
#[derive(Debug)]
pub struct Initialised {
    pub owner_token: Token,
}

impl DataDir {
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self { path: path.into() }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn db(&self) -> PathBuf {
        self.path.join(DB_FILE)
    }

    pub fn key(&self) -> PathBuf {
        self.path.join(KEY_FILE)
    }

    pub fn owner_token(&self) -> PathBuf {
        self.path.join(OWNER_TOKEN_FILE)
    }

    pub fn is_initialised(&self) -> bool {
        self.key().exists() || self.db().exists()
    }

    /// Creates the directory, the master key (or adopts `existing_key`, for a backup POP),
    /// the database and the owner, and saves the owner token 0600.
    pub async fn init(
        &self,
        existing_key: Option<MasterKey>,
    ) -> Result<(Store, MasterKey, Initialised), Error> {
        if self.is_initialised() {
            return Err(Error::AlreadyInitialised {
                path: self.path.clone(),
            });
        }
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.path)
            .map_err(|source| Error::NotWritable {
                path: self.path.clone(),
                source,
            })?;
        self.check_writable()?;
        let master = existing_key.unwrap_or_else(MasterKey::generate);
        files::write_private(&self.key(), master.expose())?;
        let store = Store::open(&self.db())?;
        let owner_token = Vault::create_owner(&store).await?;
        let mut text = owner_token.expose().to_owned();
        text.push('\n');
        let saved = files::write_private(&self.owner_token(), text.as_bytes());
        zeroize::Zeroize::zeroize(&mut text);
        saved?;
        Ok((store, master, Initialised { owner_token }))
    }

    /// Opens an existing vault: checks the directory, the key file's mode and length.
    pub fn open(&self) -> Result<(Store, MasterKey), Error> {
        self.check_writable()?;
        let key_path = self.key();
        if !key_path.exists() {
            return Err(Error::MissingKey {
                db: self.db(),
                key: key_path,
            });
        }
        let raw = files::read_private(&key_path)?;
        let master = MasterKey::from_bytes(&raw).map_err(|_| Error::CorruptKey {
            path: key_path.clone(),
            found: raw.len(),
        })?;
        let store = Store::open(&self.db())?;
        Ok((store, master))
    }

    /// SQLite needs to create `-wal` and `-shm` files beside the database; find out now,
    /// with a clear message, rather than from a cryptic open error.
    fn check_writable(&self) -> Result<(), Error> {
        let probe = self.path.join(".clavitor-write-probe");
        let res = fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&probe)
            .and_then(|_| fs::remove_file(&probe));
        if let Err(source) = res {
            return Err(Error::NotWritable {
                path: self.path.clone(),
                source,
            });
        }
        Ok(())
    }
}
