//! The data directory: `vault.db` and `master.key`, plus `clavitor.lock` while a process uses
//! it. No token lives here: a copy of the data dir must open no credential field, so the
//! owner's token goes to a file outside it (the CLI's token file, or `--owner-token-out`).
//!
//! Architecture invariants:
//! - One process per data dir: `init` and `open` hold an exclusive lock for their lifetime.
//! - `init` is all or nothing: everything is prepared in a staging directory, the owner token
//!   file is written, then the vault is renamed into place; a failure removes what it made.
//! - `open` refuses anything that is not a whole vault (a key without its database, a lone old
//!   token file, a key that does not open the database) rather than start a new empty one.

use crate::crypto::{MasterKey, Token};
use crate::files;
use crate::service::{self, Vault};
use crate::store::{self, Store};
use std::fs::{self, OpenOptions};
use std::io::ErrorKind;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

mod lock;
mod staging;

pub use lock::DirLock;
use lock::lock;
use staging::Staging;

pub const DEFAULT_DIR: &str = "./clavitor-data";
pub const DB_FILE: &str = "vault.db";
pub const KEY_FILE: &str = "master.key";
/// Held locked (with the holder's pid inside) by the process using the data dir.
pub const LOCK_FILE: &str = "clavitor.lock";
/// Where versions before the token moved out kept the owner token; moved out at start.
pub const OWNER_TOKEN_FILE: &str = "owner.token";
/// Staging inside the data dir, for when its parent is not writable (e.g. systemd's
/// `StateDirectory=`): the vault's files are moved out of it, `master.key` last.
const INNER_STAGING: &str = ".clavitor-init";
/// The database's side files, moved and kept private with it.
const DB_SIDE_FILES: [&str; 2] = ["vault.db-wal", "vault.db-shm"];

/// Messages embed their cause rather than chaining it (`source()`), so it is said once.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(
        "data dir {path} is not writable ({error}). Fix: choose another --data-dir, or give this user write access to it"
    )]
    NotWritable {
        path: PathBuf,
        error: std::io::Error,
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
    #[error(
        "{db} {what}, but {key} is there: the vault's database is gone, and starting would make a new, empty vault that nobody can administer. Fix: restore vault.db (and vault.db-wal, if you have it) from your backup; to start over instead, move {key} away"
    )]
    NoDatabase {
        db: PathBuf,
        key: PathBuf,
        what: &'static str,
    },
    #[error(
        "{token} is in {dir}, which holds no vault: an older version's init stopped half-way, or the vault's files were removed. Fix: move {token} out of the data dir (it may be the only copy of a vault's owner token) or delete it, then run this again"
    )]
    OnlyOldToken { token: PathBuf, dir: PathBuf },
    #[error(
        "{path} holds no vault. Fix: create one with `clavitor init --data-dir {path}` (or `clavitor serve`, which initialises an empty data dir)"
    )]
    NoVault { path: PathBuf },
    #[error(
        "{path} holds no vault but is not empty ({found} is there); a new vault needs an empty or new directory. Fix: choose another --data-dir, or empty this one"
    )]
    NotEmpty { path: PathBuf, found: String },
    #[error(
        "data dir {path} is in use by another clavitor process{holder}; two processes on one vault would each miss the other's changes (a revoked token would keep working on one). Fix: stop the other process first, or use another --data-dir"
    )]
    Locked { path: PathBuf, holder: String },
    #[error(
        "{key} is not the key of the vault in {db}: the database's key check does not open with it, and starting would make the vault unreadable. Fix: restore the master.key this vault was created with from your backup (a key of another vault, or a new one, cannot open it)"
    )]
    WrongKey { key: PathBuf, db: PathBuf },
    #[error(
        "{path} already exists (it may hold another vault's owner token); refusing to overwrite it. Fix: pass --owner-token-out FILE to store this vault's owner token elsewhere, or move {path} away if it is no longer needed"
    )]
    TokenFileExists { path: PathBuf },
    #[error(
        "nowhere to store the owner token: neither XDG_CONFIG_HOME nor HOME is set. Fix: pass --owner-token-out FILE (outside the data dir)"
    )]
    NoTokenPath,
    #[error(
        "{path} is inside the data dir {dir}; a copy of the data dir would then open every credential field. Fix: store the owner token outside it (--owner-token-out FILE)"
    )]
    TokenInDataDir { path: PathBuf, dir: PathBuf },
    #[error(
        "{from} must leave the data dir (a copy of the data dir must open no credential field), but {to} already exists and holds another token. Fix: pass --owner-token-out FILE naming a file that does not exist yet (outside the data dir), or move {from} to a safe place yourself"
    )]
    OldTokenBlocked { from: PathBuf, to: PathBuf },
    #[error("{path}: {error}")]
    Io {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error(transparent)]
    File(#[from] files::Error),
    #[error(transparent)]
    Store(#[from] store::Error),
    #[error(transparent)]
    Service(#[from] service::Error),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |error| Error::Io {
        path: path.to_owned(),
        error,
    }
}

#[derive(Debug, Clone)]
pub struct DataDir {
    path: PathBuf,
}

/// What `init` is asked to make.
#[derive(Debug, Default)]
pub struct InitOptions<'a> {
    /// Adopt this key instead of generating one: a backup POP's. Such a vault gets no owner of
    /// its own; the primary's arrives by replication.
    pub master_key: Option<MasterKey>,
    /// Where to store the new owner's token (outside the data dir; must not exist yet).
    pub owner_token_out: Option<&'a Path>,
}

/// A new vault's owner: its token, shown to the user once, and the file it was saved to.
#[derive(Debug)]
pub struct NewOwner {
    pub token: Token,
    pub saved_to: PathBuf,
}

/// An open vault and the lock that keeps it this process's alone.
#[derive(Debug)]
pub struct Opened {
    pub store: Store,
    pub master: MasterKey,
    pub lock: DirLock,
    /// Set when this call created the vault with an owner.
    pub new_owner: Option<NewOwner>,
    /// One line each for what was repaired on the way (modes tightened, an old token moved).
    pub notices: Vec<String>,
}

/// What a data dir holds.
#[derive(Debug, PartialEq, Eq)]
enum State {
    Absent,
    Empty,
    Vault,
    /// The staging directory of an inner init that never committed: `master.key` never left it.
    InterruptedInit,
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

    /// Where an older version kept the owner token.
    pub fn old_owner_token(&self) -> PathBuf {
        self.path.join(OWNER_TOKEN_FILE)
    }

    /// Opens the vault, or creates one (with an owner whose token goes to `owner_token_out`)
    /// when the directory is absent or empty. What `serve` does.
    pub async fn open_or_init(&self, owner_token_out: Option<&Path>) -> Result<Opened, Error> {
        if self.survey()? == State::Vault {
            return self.open(owner_token_out).await;
        }
        let made = self
            .init(InitOptions {
                master_key: None,
                owner_token_out,
            })
            .await;
        match made {
            // Another process made the vault at the same moment: open it (or be told who
            // holds it).
            Err(Error::AlreadyInitialised { .. }) if self.survey()? == State::Vault => {
                self.open(owner_token_out).await
            }
            other => other,
        }
    }

    /// Creates a new vault: key, database (with its key check) and, unless a key is adopted,
    /// the owner, whose token is saved to `owner_token_out`. All or nothing.
    pub async fn init(&self, opts: InitOptions<'_>) -> Result<Opened, Error> {
        match self.survey()? {
            State::Absent | State::Empty => {}
            State::InterruptedInit => {
                // Locked first: a live init holds the lock and must not lose its staging.
                let _held = lock(&self.path.join(LOCK_FILE), &self.path)?;
                self.roll_back_interrupted_init()?;
            }
            State::Vault => {
                return Err(Error::AlreadyInitialised {
                    path: self.path.clone(),
                });
            }
        }
        let with_owner = opts.master_key.is_none();
        let token_path = match with_owner {
            true => Some(self.new_token_path(opts.owner_token_out)?),
            false => None,
        };
        let master = opts.master_key.unwrap_or_else(MasterKey::generate);
        let mut staging = Staging::create(&self.path)?;
        let made = async {
            let lock = lock(&staging.lock_file(), &self.path)?;
            files::write_private(&staging.dir.join(KEY_FILE), master.expose())?;
            let db = staging.dir.join(DB_FILE);
            create_private(&db)?;
            let store = Store::open(&db)?;
            let prepared = prepare_db(&store, &master, with_owner).await;
            store.close().await;
            drop(store);
            let token = prepared?;
            if let (Some(t), Some(p)) = (&token, &token_path) {
                files::write_token(p, t).map_err(|e| match e {
                    files::Error::Exists { path } => Error::TokenFileExists { path },
                    e => e.into(),
                })?;
            }
            Ok::<_, Error>((lock, token))
        }
        .await;
        let (lock, token) = match made {
            Ok(m) => m,
            Err(e) => {
                staging.abandon();
                return Err(e);
            }
        };
        if let Err(e) = staging.commit() {
            if let Some(p) = &token_path {
                let _ = fs::remove_file(p);
            }
            staging.abandon();
            return Err(e);
        }
        let store = Store::open(&self.db())?;
        Ok(Opened {
            store,
            master,
            lock,
            new_owner: token
                .zip(token_path)
                .map(|(token, saved_to)| NewOwner { token, saved_to }),
            notices: Vec::new(),
        })
    }

    /// Opens an existing vault: locks it, checks the directory, the files and their modes,
    /// the key against the database, and moves an old `owner.token` out (to `owner_token_out`).
    pub async fn open(&self, owner_token_out: Option<&Path>) -> Result<Opened, Error> {
        match self.survey()? {
            State::Vault => {}
            State::Absent | State::Empty | State::InterruptedInit => {
                return Err(Error::NoVault {
                    path: self.path.clone(),
                });
            }
        }
        let lock = lock(&self.path.join(LOCK_FILE), &self.path)?;
        self.check_writable()?;
        let mut notices = Vec::new();
        self.remove_committed_staging()?;
        self.tighten_modes(&mut notices)?;
        let key_path = self.key();
        let raw = files::read_private(&key_path)?;
        let master = MasterKey::from_bytes(&raw).map_err(|_| Error::CorruptKey {
            path: key_path.clone(),
            found: raw.len(),
        })?;
        let store = Store::open(&self.db())?;
        let matches = service::check_master_key(&store, &master).await;
        if !matches.as_ref().is_ok_and(|m| *m) {
            store.close().await;
            matches?;
            return Err(Error::WrongKey {
                key: key_path,
                db: self.db(),
            });
        }
        if let Err(e) = self.move_old_token(owner_token_out, &mut notices) {
            store.close().await;
            return Err(e);
        }
        Ok(Opened {
            store,
            master,
            lock,
            new_owner: None,
            notices,
        })
    }

    fn survey(&self) -> Result<State, Error> {
        let names = match fs::read_dir(&self.path) {
            Ok(rd) => rd
                .map(|e| e.map(|e| e.file_name().to_string_lossy().into_owned()))
                .collect::<Result<Vec<_>, _>>()
                .map_err(io(&self.path))?,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(State::Absent),
            Err(e) if e.kind() == ErrorKind::NotADirectory => {
                return Err(Error::NotEmpty {
                    path: self.path.clone(),
                    found: "a file, not a directory".into(),
                });
            }
            Err(e) => return Err(io(&self.path)(e)),
        };
        let has = |n: &str| names.iter().any(|x| x == n);
        let db_len = match fs::metadata(self.db()) {
            Ok(m) if m.is_dir() => return Err(files::Error::IsDirectory { path: self.db() }.into()),
            Ok(m) => Some(m.len()),
            Err(_) => None,
        };
        let key = has(KEY_FILE);
        if !key && has(INNER_STAGING) && self.path.join(INNER_STAGING).join(KEY_FILE).exists() {
            return Ok(State::InterruptedInit);
        }
        match (key, db_len) {
            (true, Some(n)) if n > 0 => Ok(State::Vault),
            (true, found) => Err(Error::NoDatabase {
                db: self.db(),
                key: self.key(),
                what: if found.is_some() {
                    "is empty"
                } else {
                    "is missing"
                },
            }),
            (false, Some(n)) if n > 0 => Err(Error::MissingKey {
                db: self.db(),
                key: self.key(),
            }),
            (false, _) => {
                if has(OWNER_TOKEN_FILE) {
                    return Err(Error::OnlyOldToken {
                        token: self.old_owner_token(),
                        dir: self.path.clone(),
                    });
                }
                // A lock file alone is what a process that failed before making anything
                // leaves behind.
                match names.iter().find(|n| *n != LOCK_FILE) {
                    None => Ok(State::Empty),
                    Some(found) => Err(Error::NotEmpty {
                        path: self.path.clone(),
                        found: found.clone(),
                    }),
                }
            }
        }
    }

    /// Where a new owner token goes: given, else nowhere (an error). Never inside the data dir,
    /// never over an existing file.
    fn new_token_path(&self, out: Option<&Path>) -> Result<PathBuf, Error> {
        let path = out.ok_or(Error::NoTokenPath)?.to_owned();
        if is_inside(&path, &self.path) {
            return Err(Error::TokenInDataDir {
                path,
                dir: self.path.clone(),
            });
        }
        if fs::symlink_metadata(&path).is_ok() {
            return Err(Error::TokenFileExists { path });
        }
        Ok(path)
    }

    /// An old version's `owner.token` goes to `out` (or is dropped if `out` already holds the
    /// same token): a copy of the data dir must open no credential field. Never left behind.
    fn move_old_token(&self, out: Option<&Path>, notices: &mut Vec<String>) -> Result<(), Error> {
        let old = self.old_owner_token();
        match fs::symlink_metadata(&old) {
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(io(&old)(e)),
            Ok(m) if m.is_dir() => return Err(files::Error::IsDirectory { path: old }.into()),
            Ok(_) => {}
        }
        let raw = zeroize::Zeroizing::new(fs::read(&old).map_err(io(&old))?);
        let text = std::str::from_utf8(&raw)
            .ok()
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| files::Error::NotText { path: old.clone() })?;
        let token = Token::from_text(text);
        let to = out.ok_or(Error::NoTokenPath)?;
        if is_inside(to, &self.path) {
            return Err(Error::TokenInDataDir {
                path: to.to_owned(),
                dir: self.path.clone(),
            });
        }
        match fs::read(to) {
            Ok(there) => {
                let there = zeroize::Zeroizing::new(there);
                let same = std::str::from_utf8(&there).is_ok_and(|t| t.trim() == token.expose());
                if !same {
                    return Err(Error::OldTokenBlocked {
                        from: old,
                        to: to.to_owned(),
                    });
                }
                files::check_private(to)?;
                notices.push(format!(
                    "removed the owner token from the data dir ({}): {} already holds it",
                    old.display(),
                    to.display()
                ));
            }
            Err(e) if e.kind() == ErrorKind::NotFound => {
                files::write_token(to, &token)?;
                notices.push(format!(
                    "moved the owner token out of the data dir: {} -> {} (a copy of the data dir no longer opens credential fields)",
                    old.display(),
                    to.display()
                ));
            }
            Err(e) => return Err(io(to)(e)),
        }
        fs::remove_file(&old).map_err(io(&old))?;
        files::sync_parent(&old)?;
        Ok(())
    }

    /// The data dir 0700; the database and its side files 0600 (SQLite gives new side files
    /// the database's mode). Wider modes found are narrowed, with a line saying so.
    fn tighten_modes(&self, notices: &mut Vec<String>) -> Result<(), Error> {
        let mut targets = vec![(self.path.clone(), 0o700), (self.db(), 0o600)];
        targets.extend(DB_SIDE_FILES.iter().map(|f| (self.path.join(f), 0o600)));
        for (path, want) in targets {
            let mode = match fs::metadata(&path) {
                Ok(m) => m.permissions().mode() & 0o777,
                Err(e) if e.kind() == ErrorKind::NotFound => continue,
                Err(e) => return Err(io(&path)(e)),
            };
            if mode & 0o077 != 0 {
                fs::set_permissions(&path, fs::Permissions::from_mode(want)).map_err(io(&path))?;
                notices.push(format!(
                    "{} had mode {mode:04o}; made it {want:04o} (the vault's files are private)",
                    path.display()
                ));
            }
        }
        Ok(())
    }

    /// After an inner init committed (`master.key` moved), its empty staging directory may
    /// remain if the process died right then.
    fn remove_committed_staging(&self) -> Result<(), Error> {
        let staging = self.path.join(INNER_STAGING);
        if staging.exists() {
            fs::remove_dir_all(&staging).map_err(io(&staging))?;
        }
        Ok(())
    }

    /// An inner init that died before `master.key` left its staging directory made nothing
    /// usable: whatever it moved out is removed with it.
    fn roll_back_interrupted_init(&self) -> Result<(), Error> {
        for f in [DB_FILE].iter().chain(DB_SIDE_FILES.iter()) {
            let p = self.path.join(f);
            if p.exists() {
                fs::remove_file(&p).map_err(io(&p))?;
            }
        }
        let staging = self.path.join(INNER_STAGING);
        fs::remove_dir_all(&staging).map_err(io(&staging))?;
        files::sync_parent(&staging)?;
        Ok(())
    }

    /// SQLite needs to create `-wal` and `-shm` files beside the database; find out now,
    /// with a clear message, rather than from a cryptic open error.
    fn check_writable(&self) -> Result<(), Error> {
        let probe = self
            .path
            .join(format!(".clavitor-write-probe-{}", std::process::id()));
        let res = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&probe)
            .and_then(|_| fs::remove_file(&probe));
        if let Err(error) = res {
            return Err(Error::NotWritable {
                path: self.path.clone(),
                error,
            });
        }
        Ok(())
    }
}

/// Seals the key check and, for a primary or standalone vault, creates the owner.
async fn prepare_db(
    store: &Store,
    master: &MasterKey,
    with_owner: bool,
) -> Result<Option<Token>, Error> {
    service::seal_key_check(store, master).await?;
    Ok(match with_owner {
        true => Some(Vault::create_owner(store).await?),
        false => None,
    })
}

/// Creates an empty file 0600, so the database (and the side files SQLite later creates with
/// the database's mode) are private from the start.
fn create_private(path: &Path) -> Result<(), Error> {
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map(drop)
        .map_err(io(path))
}

/// Whether `path` is `dir` or lies below it, comparing real locations (symlinks resolved as
/// far as the paths exist).
fn is_inside(path: &Path, dir: &Path) -> bool {
    resolve(path).starts_with(resolve(dir))
}

/// `path` made absolute: its longest existing ancestor canonicalised, the rest appended.
fn resolve(path: &Path) -> PathBuf {
    let abs = std::path::absolute(path).unwrap_or_else(|_| path.to_owned());
    let mut existing = abs.as_path();
    let mut rest = Vec::new();
    loop {
        if let Ok(real) = existing.canonicalize() {
            let mut out = real;
            for c in rest.iter().rev() {
                out.push(c);
            }
            return out;
        }
        match (existing.parent(), existing.file_name()) {
            (Some(parent), Some(name)) => {
                rest.push(name.to_owned());
                existing = parent;
            }
            _ => return abs,
        }
    }
}

#[cfg(test)]
mod tests;
