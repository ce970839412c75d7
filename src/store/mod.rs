//! The SQLite file: one writer thread with group commit, and a small pool of readers.
//!
//! Architecture invariants:
//! - Only the writer thread writes. Every write is a closure run inside a shared transaction
//!   under its own savepoint, so a failing write rolls back alone and the others still commit.
//! - A caller is answered only after the transaction holding its write has committed with
//!   `synchronous=FULL`: an acknowledged write is on disk.
//! - The store knows rows and SQL, not crypto or HTTP: it stores the ciphertext it is given.

pub mod agents;
pub mod entries;
mod schema;
pub mod settings;

pub use agents::{AgentRow, ScopeKeyRow};
pub use entries::{EntryRow, FieldMeta, FieldRow};

use rusqlite::{Connection, OpenFlags, TransactionBehavior};
use std::cell::Cell;
use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, oneshot, watch};

/// Most writes one transaction takes; bounds the latency a batch adds to its last member.
const MAX_BATCH: usize = 512;
const READERS: usize = 4;
const QUEUE: usize = 4096;

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
}

impl From<rusqlite::Error> for Error {
    fn from(e: rusqlite::Error) -> Self {
        Error::Sqlite(e)
    }
}

type Completion = Box<dyn FnOnce(Result<(), Arc<Error>>) + Send>;
/// `None` means no transaction could begin: the job must not run and reports the failure.
type Job = Box<dyn FnOnce(Option<&Connection>) -> (bool, Completion) + Send>;

enum Msg {
    Job(Job),
    Shutdown,
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
    /// Commits so far, bumped before any writer of the commit is answered: a reader that sees
    /// the same number before and after reading knows nothing changed in between.
    generation: Arc<AtomicU64>,
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
    conn.busy_timeout(Duration::from_secs(10))?;
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
        let generation = Arc::new(AtomicU64::new(0));
        let generation_for_writer = generation.clone();
        let handle = std::thread::Builder::new()
            .name("clavitor-writer".into())
            .spawn(move || writer_loop(writer, rx, commits_for_writer, &generation_for_writer))
            .map_err(|e| Error::Rejected(format!("cannot start writer thread: {e}")))?;
        Ok(Self {
            inner: Arc::new(Inner {
                path: path.to_owned(),
                jobs: tx,
                readers: Mutex::new(readers),
                reader_slots: Arc::new(Semaphore::new(READERS)),
                commits,
                generation,
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
        let (reply_tx, reply_rx) = oneshot::channel::<Result<T, E>>();
        let job: Job = Box::new(move |conn| {
            let outcome = match conn {
                Some(conn) => std::panic::catch_unwind(AssertUnwindSafe(|| f(conn)))
                    .unwrap_or_else(|_| Err(E::from(Error::Panicked))),
                None => Err(E::from(Error::Rejected(
                    "the database could not start a transaction".into(),
                ))),
            };
            let ok = outcome.is_ok();
            let completion: Completion = Box::new(move |committed| {
                let answer = match committed {
                    Ok(()) => outcome,
                    // The whole batch failed to commit: nothing of this write is on disk.
                    Err(e) => Err(E::from(clone_err(&e))),
                };
                let _ = reply_tx.send(answer);
            });
            (ok, completion)
        });
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

    /// The number of commits so far; see [`crate::service`]'s read cache.
    pub fn generation(&self) -> u64 {
        self.inner.generation.load(Ordering::Acquire)
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

fn clone_err(e: &Error) -> Error {
    match e {
        Error::Closed => Error::Closed,
        other => Error::Rejected(format!("commit failed: {other}")),
    }
}

fn writer_loop(
    mut conn: Connection,
    mut rx: mpsc::Receiver<Msg>,
    commits: watch::Sender<u64>,
    generation: &AtomicU64,
) {
    let mut batch: Vec<Job> = Vec::with_capacity(MAX_BATCH);
    let mut stopping = false;
    while !stopping {
        match rx.blocking_recv() {
            Some(Msg::Job(j)) => batch.push(j),
            Some(Msg::Shutdown) | None => break,
        }
        // Everything that queued up while the last fsync ran shares this transaction.
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(Msg::Job(j)) => batch.push(j),
                Ok(Msg::Shutdown) => {
                    stopping = true;
                    break;
                }
                Err(_) => break,
            }
        }
        let result = run_batch(&mut conn, &mut batch, generation);
        if result {
            commits.send_modify(|n| *n += 1);
        }
    }
    // Answer anything still queued rather than leaving callers hanging.
    rx.close();
    while let Ok(msg) = rx.try_recv() {
        drop(msg);
    }
    if let Err(e) = conn.execute_batch("PRAGMA wal_checkpoint(PASSIVE);") {
        tracing::warn!(error = %e, "checkpoint at shutdown failed");
    }
}

/// Runs one group commit. Returns whether it committed anything.
fn run_batch(conn: &mut Connection, batch: &mut Vec<Job>, generation: &AtomicU64) -> bool {
    let n = batch.len();
    let mut completions: Vec<Completion> = Vec::with_capacity(n);
    let tx = match conn.transaction_with_behavior(TransactionBehavior::Immediate) {
        Ok(tx) => tx,
        Err(e) => {
            tracing::error!(error = %e, "cannot begin write transaction");
            let err = Arc::new(Error::Sqlite(e));
            for job in batch.drain(..) {
                let (_, c) = job(None);
                c(Err(err.clone()));
            }
            return false;
        }
    };
    let mut tx = tx;
    let start = committed_version(&tx).ok();
    BATCH_VERSION.set(start);
    for job in batch.drain(..) {
        let sp = match tx.savepoint() {
            Ok(sp) => sp,
            Err(e) => {
                tracing::error!(error = %e, "cannot open savepoint");
                continue;
            }
        };
        let (ok, completion) = job(Some(&sp));
        if ok {
            if let Err(e) = sp.commit() {
                tracing::error!(error = %e, "cannot release savepoint");
            }
        } else {
            // Dropping an uncommitted savepoint rolls it back.
            drop(sp);
        }
        completions.push(completion);
    }
    // Versions handed out must never be handed out again: without the sequence row, no commit.
    let committed = match (BATCH_VERSION.take(), start) {
        (Some(last), Some(first)) if last > first => tx
            .execute(
                "UPDATE sequence SET value = max(value, ?1) WHERE name = 'version'",
                [last],
            )
            .map(drop),
        _ => Ok(()),
    }
    .and_then(|()| tx.commit())
    .map_err(|e| Arc::new(Error::Sqlite(e)));
    if let Err(e) = &committed {
        tracing::error!(error = %e, jobs = n, "group commit failed; every write in it was refused");
    }
    let ok = committed.is_ok();
    // Before the answers: a client that got its answer must not be served an older cached row.
    generation.fetch_add(1, Ordering::AcqRel);
    for c in completions {
        c(committed.clone());
    }
    crate::metrics::record_commit(n);
    ok
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
