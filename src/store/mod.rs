//! The SQLite file: one writer thread with group commit, and a small pool of readers.
//!
//! Architecture invariants:
//! - Only the writer thread writes. Every write is a closure run inside a shared transaction
//!   under its own savepoint, so a failing write rolls back alone and the others still commit.
//! - A caller is told its write succeeded only after the transaction holding it has committed
//!   with `synchronous=FULL`: an acknowledged write is on disk. Any other outcome is an error
//!   that says why (see `writer`).
//! - A read that returns rows from several tables sees them from one commit.
//! - The store knows rows and SQL, not crypto or HTTP: it stores the ciphertext it is given.

pub mod agents;
pub mod audit;
pub mod entries;
pub mod groups;
pub mod invites;
pub mod provisioned;
mod schema;
pub mod settings;
mod writer;

pub use agents::{AgentRow, ScopeKeyRow};
pub use entries::{EntryRow, FieldMeta, FieldRow, StoredPolicy};
pub use groups::GroupRow;

use rusqlite::{Connection, OpenFlags};
use std::cell::Cell;
use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, oneshot, watch};
use writer::{AuditMsg, Completion, Job, Msg, Shared};

const READERS: usize = 4;
const QUEUE: usize = 4096;
/// How long a connection waits for a lock another connection holds.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// Messages embed their cause rather than chaining it (`source()`), so it is said once.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("database error: {0}")]
    Sqlite(rusqlite::Error),
    #[error("the database at {path} could not be opened: {error}")]
    Open {
        path: PathBuf,
        error: rusqlite::Error,
    },
    #[error(
        "the database at {path} has schema version {found}, newer than this binary knows ({known}); upgrade clavitor"
    )]
    SchemaTooNew {
        path: PathBuf,
        found: i64,
        known: i64,
    },
    #[error("the store is shut down")]
    Closed,
    #[error("not found")]
    NotFound,
    #[error("conflict: {0}")]
    Conflict(String),
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    #[error("{0}")]
    Rejected(String),
    #[error("a write panicked; it was rolled back")]
    Panicked,
    #[error("this write did not run: its savepoint could not be opened: {0}")]
    SavepointOpen(rusqlite::Error),
    #[error("this write was rolled back: its savepoint could not be released: {0}")]
    SavepointRelease(rusqlite::Error),
    /// Shared by every write of the transaction.
    #[error("the write transaction failed, so nothing of this write is on disk: {0}")]
    TransactionFailed(Arc<Error>),
}

impl From<rusqlite::Error> for Error {
    fn from(e: rusqlite::Error) -> Self {
        Error::Sqlite(e)
    }
}

#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

struct Inner {
    path: PathBuf,
    jobs: mpsc::Sender<Msg>,
    readers: Mutex<Vec<Connection>>,
    /// One permit per pooled connection: holding one guarantees `readers` is not empty.
    reader_slots: Arc<Semaphore>,
    commits: watch::Sender<u64>,
    /// The commit generation, the audit trail's state and key, shared with the writer.
    shared: Arc<Shared>,
    writer: Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("path", &self.inner.path)
            .finish()
    }
}

fn open_conn(path: &Path, flags: OpenFlags) -> Result<Connection, Error> {
    let conn = Connection::open_with_flags(path, flags).map_err(|error| Error::Open {
        path: path.to_owned(),
        error,
    })?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    // FULL: the WAL is fsynced at every commit, so an acknowledged write survives power loss.
    // Statement journals (one per savepoint-wrapped write) stay in memory rather than in temp
    // files, and each connection caches 16 MiB of pages instead of SQLite's 2 MiB default.
    conn.execute_batch(
        "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL; PRAGMA foreign_keys=ON;
         PRAGMA temp_store=MEMORY; PRAGMA cache_size=-16384;",
    )
    .map_err(|error| Error::Open {
        path: path.to_owned(),
        error,
    })?;
    Ok(conn)
}

impl Store {
    /// Opens (creating if needed) the database and migrates it to the current schema.
    pub fn open(path: &Path) -> Result<Self, Error> {
        let mut writer = open_conn(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE
                | OpenFlags::SQLITE_OPEN_CREATE
                | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        schema::migrate(&mut writer, path)?;
        writer::prepare(&writer).map_err(|error| Error::Open {
            path: path.to_owned(),
            error,
        })?;
        let mut readers = Vec::with_capacity(READERS);
        for _ in 0..READERS {
            let r = open_conn(
                path,
                OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
            )?;
            r.execute_batch("PRAGMA query_only=1;")?;
            readers.push(r);
        }
        let (tx, rx) = mpsc::channel(QUEUE);
        let (commits, _) = watch::channel(0u64);
        let commits_for_writer = commits.clone();
        let shared = Arc::new(Shared::new());
        let shared_for_writer = shared.clone();
        let handle = std::thread::Builder::new()
            .name("clavitor-writer".into())
            .spawn(move || writer::writer_loop(writer, rx, commits_for_writer, &shared_for_writer))
            .map_err(|e| Error::Rejected(format!("cannot start writer thread: {e}")))?;
        Ok(Self {
            inner: Arc::new(Inner {
                path: path.to_owned(),
                jobs: tx,
                readers: Mutex::new(readers),
                reader_slots: Arc::new(Semaphore::new(READERS)),
                commits,
                shared,
                writer: Mutex::new(Some(handle)),
            }),
        })
    }

    /// Runs `f` inside the next group-commit transaction; resolves once that transaction is
    /// durable. If `f` fails, its changes are rolled back and the error is returned.
    pub async fn write<T, E, F>(&self, f: F) -> Result<T, E>
    where
        T: Send + 'static,
        E: From<Error> + Send + 'static,
        F: FnOnce(&Connection) -> Result<T, E> + Send + 'static,
    {
        let (job, reply_rx) = job(f);
        self.inner
            .jobs
            .send(Msg::Job(job))
            .await
            .map_err(|_| E::from(Error::Closed))?;
        reply_rx.await.map_err(|_| E::from(Error::Closed))?
    }

    /// Runs `f` on a pooled read connection on the blocking thread pool. For anything that
    /// may touch many rows (lists, scans, replication batches).
    pub async fn read<T, E, F>(&self, f: F) -> Result<T, E>
    where
        T: Send + 'static,
        E: From<Error> + Send + 'static,
        F: FnOnce(&Connection) -> Result<T, E> + Send + 'static,
    {
        let slot = self
            .inner
            .reader_slots
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| E::from(Error::Closed))?;
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || {
            let conn = Reader::take(&inner, slot)?;
            f(&conn)
        })
        .await
        .map_err(|_| E::from(Error::Panicked))?
    }

    /// Runs `f` on the calling thread when a read connection is free, else like [`read`].
    ///
    /// Only for lookups by key that touch a handful of rows: they take microseconds, less than
    /// the hand-off to the blocking pool and back, which profiling showed to be the largest
    /// single cost of a field read.
    ///
    /// [`read`]: Self::read
    pub async fn lookup<T, E, F>(&self, f: F) -> Result<T, E>
    where
        T: Send + 'static,
        E: From<Error> + Send + 'static,
        F: FnOnce(&Connection) -> Result<T, E> + Send + 'static,
    {
        match self.inner.reader_slots.clone().try_acquire_owned() {
            Ok(slot) => {
                let conn = Reader::take(&self.inner, slot)?;
                f(&conn)
            }
            Err(_) => self.read(f).await,
        }
    }

    /// The number of commits that changed data so far; see [`crate::service`]'s read cache.
    pub fn generation(&self) -> u64 {
        self.inner.shared.generation.load(Ordering::Acquire)
    }

    /// Gives the writer the key that signs the audit trail's head. Must come before the first
    /// event (a commit holding events without it fails); later calls change nothing.
    pub fn set_audit_key(&self, key: crate::crypto::AuditKey) {
        let _ = self.inner.shared.audit_key.set(key);
    }

    /// Whether the audit trail can be written: false from a failed append (or a failed commit
    /// holding events) until a commit holding events succeeds.
    pub fn audit_available(&self) -> bool {
        self.inner.shared.trail_ok.load(Ordering::Acquire)
    }

    /// Hands an event that describes no change (a read, a denial) to the writer, for the next
    /// group commit. With `wait`, resolves once that commit is durable; without, once the
    /// writer has it queued (a full queue makes this wait for room, never drops the event).
    pub async fn audit(&self, event: audit::EventData, wait: bool) -> Result<(), Error> {
        let (tx, rx) = if wait {
            let (tx, rx) = oneshot::channel();
            (Some(tx), Some(rx))
        } else {
            (None, None)
        };
        self.inner
            .jobs
            .send(Msg::Audit(AuditMsg { event, done: tx }))
            .await
            .map_err(|_| Error::Closed)?;
        match rx {
            Some(rx) => rx.await.map_err(|_| Error::Closed)?,
            None => Ok(()),
        }
    }

    /// A counter bumped after every commit; replication waits on it instead of polling.
    pub fn subscribe_commits(&self) -> watch::Receiver<u64> {
        self.inner.commits.subscribe()
    }

    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// Finishes queued writes, then stops the writer. Later writes fail with `Closed`.
    pub async fn close(&self) {
        let _ = self.inner.jobs.send(Msg::Shutdown).await;
        let handle = self
            .inner
            .writer
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some(h) = handle {
            let _ = tokio::task::spawn_blocking(move || h.join()).await;
        }
    }
}

/// Wraps a write for the writer thread; the receiver gets its caller's answer.
fn job<T, E, F>(f: F) -> (Job, oneshot::Receiver<Result<T, E>>)
where
    T: Send + 'static,
    E: From<Error> + Send + 'static,
    F: FnOnce(&Connection) -> Result<T, E> + Send + 'static,
{
    let (reply_tx, reply_rx) = oneshot::channel::<Result<T, E>>();
    let job: Job = Box::new(move |conn| {
        let outcome = match conn {
            Ok(conn) => std::panic::catch_unwind(AssertUnwindSafe(|| f(conn)))
                .unwrap_or_else(|_| Err(E::from(Error::Panicked))),
            Err(why) => Err(E::from(why)),
        };
        let ok = outcome.is_ok();
        let completion: Completion = Box::new(move |committed| {
            let answer = match committed {
                Ok(()) => outcome,
                Err(e) => Err(E::from(e)),
            };
            let _ = reply_tx.send(answer);
        });
        (ok, completion)
    });
    (job, reply_rx)
}

/// A pooled read connection, returned to the pool on drop (also when the read panics), before
/// its permit is released.
struct Reader<'a> {
    inner: &'a Inner,
    conn: Option<Connection>,
    _slot: OwnedSemaphorePermit,
}

impl<'a> Reader<'a> {
    fn take(inner: &'a Inner, slot: OwnedSemaphorePermit) -> Result<Self, Error> {
        let conn = inner
            .readers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .pop()
            .ok_or(Error::Closed)?;
        Ok(Self {
            inner,
            conn: Some(conn),
            _slot: slot,
        })
    }
}

impl std::ops::Deref for Reader<'_> {
    type Target = Connection;
    fn deref(&self) -> &Connection {
        self.conn.as_ref().expect("present until drop")
    }
}

impl Drop for Reader<'_> {
    fn drop(&mut self) {
        if let Some(c) = self.conn.take() {
            self.inner
                .readers
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(c);
        }
    }
}

/// Runs `f`'s queries in one read transaction, so they all see the same commit. Inside a
/// transaction already (e.g. within a write), runs `f` as it is.
pub fn snapshot<T>(
    conn: &Connection,
    f: impl FnOnce(&Connection) -> Result<T, Error>,
) -> Result<T, Error> {
    if !conn.is_autocommit() {
        return f(conn);
    }
    // Deferred: in WAL mode the snapshot is taken at the first read and held until the end.
    let tx = conn.unchecked_transaction()?;
    let out = f(&tx)?;
    tx.commit()?;
    Ok(out)
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    let d = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

thread_local! {
    /// On the writer thread, during a group commit: the last version handed out. The sequence
    /// row is read once when the transaction begins and written once before it commits; an
    /// UPDATE per write was a third of the writer's time. A write rolled back to its savepoint
    /// leaves a gap, which is fine: versions only need to grow.
    static BATCH_VERSION: Cell<Option<i64>> = const { Cell::new(None) };
}

/// The last version this database committed (its own writes and replicated ones).
pub fn committed_version(conn: &Connection) -> Result<i64, Error> {
    Ok(conn
        .prepare_cached("SELECT value FROM sequence WHERE name = 'version'")?
        .query_row([], |r| r.get(0))?)
}

/// The next value of the global change sequence; every written row carries one.
fn next_version(conn: &Connection) -> Result<i64, Error> {
    if let Some(last) = BATCH_VERSION.get() {
        BATCH_VERSION.set(Some(last + 1));
        return Ok(last + 1);
    }
    Ok(conn.query_row(
        "UPDATE sequence SET value = value + 1 WHERE name = 'version' RETURNING value",
        [],
        |r| r.get(0),
    )?)
}

/// Moves the sequence past `version` (a row that came from elsewhere), so later local writes
/// carry higher versions.
pub fn raise_version(conn: &Connection, version: i64) -> Result<(), Error> {
    if let Some(last) = BATCH_VERSION.get() {
        BATCH_VERSION.set(Some(last.max(version)));
    }
    conn.prepare_cached("UPDATE sequence SET value = max(value, ?1) WHERE name = 'version'")?
        .execute([version])?;
    Ok(())
}

#[cfg(test)]
mod tests;
