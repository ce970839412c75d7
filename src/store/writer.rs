//! The writer thread: group commit with one savepoint per write, and forgetting deleted data.
//!
//! Architecture invariants:
//! - A caller is told its write committed only if its savepoint was released into a
//!   transaction whose COMMIT succeeded. Every other outcome (its savepoint could not open or
//!   be released, the transaction could not begin, was abandoned, or did not commit) answers
//!   it with an error that says which, and nothing of its write is on disk.
//! - Every job is answered exactly once: none is dropped unanswered while the store runs.
//! - Values and keys that a committed write deleted or overwrote do not outlive the next
//!   checkpoint: `secure_delete` zeroes them in the newest copy of each page, and a TRUNCATE
//!   checkpoint moves those pages into `vault.db` and empties the WAL, whose older frames
//!   still hold them.

use super::{BATCH_VERSION, Error, committed_version};
use rusqlite::Connection;
use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::mpsc::error::TryRecvError;
use tokio::sync::{mpsc, watch};

/// Most writes one transaction takes; bounds the latency a batch adds to its last member.
pub(super) const MAX_BATCH: usize = 512;

/// How long a checkpoint waits for readers still using the WAL before it gives up and is
/// retried; short, because writes queue behind it.
const CHECKPOINT_WAIT: Duration = Duration::from_millis(100);
/// A checkpoint owed for deleted data waits for an idle moment, but no longer than this.
const FORGET_WITHIN: Duration = Duration::from_secs(1);

/// Every write's savepoint has this name (savepoints are not nested here, so one name does).
macro_rules! savepoint {
    () => {
        "clavitor_write"
    };
}
const OPEN: &str = concat!("SAVEPOINT ", savepoint!());
/// Also used by a test, to take a write's savepoint away from under it.
pub(super) const RELEASE: &str = concat!("RELEASE ", savepoint!());
const ROLLBACK_TO: &str = concat!("ROLLBACK TO ", savepoint!());

/// Answers a job's caller with the fate of its transaction.
pub(super) type Completion = Box<dyn FnOnce(Result<(), Error>) + Send>;
/// Runs one write on the writer connection inside its savepoint, and returns whether it
/// succeeded and how to answer its caller. `Err` means the write cannot run, and says why.
pub(super) type Job = Box<dyn FnOnce(Result<&Connection, Error>) -> (bool, Completion) + Send>;

pub(super) enum Msg {
    Job(Job),
    Shutdown,
}

/// Readies the writer connection: deleted content is overwritten with zeros, and any
/// deletion or overwrite of a value, a sealed title or a wrapped key is counted in
/// `temp.forgotten` (a connection-private table, rolled back with the write that counted),
/// so the commit that holds one can be followed by a checkpoint. Triggers rather than calls
/// in each write, so every path (replication included) is covered.
pub(super) fn prepare(conn: &Connection) -> rusqlite::Result<()> {
    conn.execute_batch(
        "PRAGMA secure_delete = ON;
         CREATE TEMP TABLE forgotten (n INTEGER NOT NULL);
         INSERT INTO temp.forgotten (n) VALUES (0);
         CREATE TEMP TRIGGER forget_field AFTER DELETE ON main.fields
             BEGIN UPDATE temp.forgotten SET n = n + 1; END;
         CREATE TEMP TRIGGER forget_field_value AFTER UPDATE OF ciphertext ON main.fields
             BEGIN UPDATE temp.forgotten SET n = n + 1; END;
         CREATE TEMP TRIGGER forget_entry_meta AFTER UPDATE OF meta ON main.entries
             BEGIN UPDATE temp.forgotten SET n = n + 1; END;
         CREATE TEMP TRIGGER forget_entry AFTER DELETE ON main.entries
             BEGIN UPDATE temp.forgotten SET n = n + 1; END;
         CREATE TEMP TRIGGER forget_scope_key AFTER DELETE ON main.scope_keys
             BEGIN UPDATE temp.forgotten SET n = n + 1; END;
         CREATE TEMP TRIGGER forget_wrapped_key AFTER UPDATE OF wrapped ON main.scope_keys
             BEGIN UPDATE temp.forgotten SET n = n + 1; END;",
    )
}

/// What one group commit did, for the counters.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(super) struct Outcome {
    /// Writes that ran in the transaction, whatever became of them.
    pub ran: usize,
    /// Writes whose callers were told they committed.
    pub committed: usize,
    /// The transaction failed as a whole (could not begin, was abandoned, or did not commit):
    /// none of its writes was acknowledged.
    pub failed: bool,
    /// A committed write deleted or overwrote stored values or keys.
    pub forgot: bool,
}

fn exec(conn: &Connection, sql: &str) -> rusqlite::Result<()> {
    conn.prepare_cached(sql)?.execute([]).map(drop)
}

pub(super) fn writer_loop(
    conn: Connection,
    mut rx: mpsc::Receiver<Msg>,
    commits: watch::Sender<u64>,
    generation: &AtomicU64,
) {
    let mut batch: VecDeque<Job> = VecDeque::with_capacity(MAX_BATCH);
    // When a committed write first forgot something that is not yet checkpointed away.
    let mut owed: Option<Instant> = None;
    let mut stopping = false;
    loop {
        if batch.is_empty() {
            if stopping {
                break;
            }
            let msg = if owed.is_some() {
                // Idle with a checkpoint owed: now is when it costs no caller anything.
                match rx.try_recv() {
                    Ok(m) => Some(m),
                    Err(TryRecvError::Empty) => {
                        if checkpoint(&conn) {
                            owed = None;
                        } else {
                            // Readers hold the WAL; wait a little rather than spin.
                            std::thread::sleep(CHECKPOINT_WAIT);
                        }
                        continue;
                    }
                    Err(TryRecvError::Disconnected) => None,
                }
            } else {
                rx.blocking_recv()
            };
            match msg {
                Some(Msg::Job(j)) => batch.push_back(j),
                Some(Msg::Shutdown) | None => break,
            }
        }
        // Everything that queued up while the last fsync ran shares this transaction.
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(Msg::Job(j)) => batch.push_back(j),
                Ok(Msg::Shutdown) => {
                    stopping = true;
                    break;
                }
                Err(_) => break,
            }
        }
        // Under constant load there is no idle moment: forget within a bounded time anyway.
        if owed.is_some_and(|since| since.elapsed() >= FORGET_WITHIN) && checkpoint(&conn) {
            owed = None;
        }
        let out = run_batch(&conn, &mut batch, generation);
        if out.failed {
            crate::metrics::record_failed_commit();
        } else if out.ran > 0 {
            crate::metrics::record_commit(out.committed, out.ran);
        }
        if out.committed > 0 {
            commits.send_modify(|n| *n += 1);
        }
        if out.forgot && owed.is_none() {
            owed = Some(Instant::now());
        }
    }
    // Later writes fail with `Closed`: their senders see the channel shut.
    rx.close();
    while let Ok(msg) = rx.try_recv() {
        drop(msg);
    }
    let mode = if owed.is_some() {
        "TRUNCATE"
    } else {
        "PASSIVE"
    };
    let _ = conn.busy_timeout(CHECKPOINT_WAIT);
    if let Err(e) = conn.query_row(&format!("PRAGMA wal_checkpoint({mode})"), [], |_| Ok(())) {
        tracing::warn!(error = %e, "checkpoint at shutdown failed");
    }
}

/// Copies every WAL frame into `vault.db` and truncates the WAL. Returns whether it completed
/// (it does not while a reader still uses an old snapshot; readers are never blocked by it).
fn checkpoint(conn: &Connection) -> bool {
    let _ = conn.busy_timeout(CHECKPOINT_WAIT);
    let r = conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| {
        r.get::<_, i64>(0)
    });
    let _ = conn.busy_timeout(super::BUSY_TIMEOUT);
    match r {
        Ok(busy) => busy == 0,
        Err(e) => {
            tracing::warn!(error = %e, "checkpoint after a deletion failed; retrying");
            false
        }
    }
}

/// Runs one group commit over the jobs at the front of `batch`. Jobs left in `batch` did not
/// run (the transaction was abandoned before them) and go into the next one.
pub(super) fn run_batch(
    conn: &Connection,
    batch: &mut VecDeque<Job>,
    generation: &AtomicU64,
) -> Outcome {
    let mut out = Outcome::default();
    // A transaction left open by an earlier failure would make every BEGIN fail from now on.
    if !conn.is_autocommit()
        && let Err(e) = exec(conn, "ROLLBACK")
    {
        tracing::error!(error = %e, "cannot roll back a transaction left open");
    }
    if let Err(e) = exec(conn, "BEGIN IMMEDIATE") {
        tracing::error!(error = %e, jobs = batch.len(), "cannot begin a write transaction; its writes were refused");
        let shared = Arc::new(Error::Sqlite(e));
        for job in batch.drain(..) {
            out.ran += 1;
            let (_, done) = job(Err(Error::TransactionFailed(shared.clone())));
            done(Err(Error::TransactionFailed(shared.clone())));
        }
        out.failed = true;
        return out;
    }
    let start = committed_version(conn).ok();
    BATCH_VERSION.set(start);
    let mut answers: Vec<(Completion, Option<Error>)> = Vec::with_capacity(batch.len());
    let mut abandoned: Option<String> = None;
    while let Some(job) = batch.pop_front() {
        out.ran += 1;
        if let Err(e) = exec(conn, OPEN) {
            tracing::error!(error = %e, "cannot open a write's savepoint; that write was refused");
            let (_, done) = job(Err(Error::SavepointOpen(e)));
            answers.push((done, None));
            continue;
        }
        let (ok, done) = job(Ok(conn));
        let mut own_error = None;
        let kept = ok
            && match exec(conn, RELEASE) {
                Ok(()) => true,
                Err(e) => {
                    tracing::error!(error = %e, "cannot release a write's savepoint; that write was rolled back");
                    own_error = Some(Error::SavepointRelease(e));
                    false
                }
            };
        if !kept {
            match exec(conn, ROLLBACK_TO) {
                // If the now empty savepoint cannot be popped (a statement still running),
                // it stays on the stack, harmless: COMMIT ends it with the transaction.
                Ok(()) => drop(exec(conn, RELEASE)),
                Err(e) => {
                    abandoned = Some(format!(
                        "a write in it could not be rolled back to its savepoint ({e})"
                    ))
                }
            }
        }
        if abandoned.is_none() && conn.is_autocommit() {
            abandoned = Some("a write in it ended the transaction early".into());
        }
        out.committed += usize::from(kept);
        answers.push((done, own_error));
        if abandoned.is_some() {
            break;
        }
    }
    let last = BATCH_VERSION.take();
    let committed = match abandoned {
        Some(why) => Err(Error::Rejected(format!(
            "the transaction was abandoned: {why}"
        ))),
        None => commit(conn, start, last, &mut out.forgot).map_err(Error::Sqlite),
    };
    match committed {
        Ok(()) => {
            // Before the answers: a caller that got its answer must not then be served an
            // older cached row. Nothing changed if no write was kept.
            if out.committed > 0 {
                generation.fetch_add(1, Ordering::AcqRel);
            }
            for (done, own_error) in answers {
                done(own_error.map_or(Ok(()), Err));
            }
        }
        Err(e) => {
            if !conn.is_autocommit()
                && let Err(e) = exec(conn, "ROLLBACK")
            {
                tracing::error!(error = %e, "cannot roll back a failed write transaction");
            }
            tracing::error!(error = %e, jobs = answers.len(), "group commit failed; every write in it was refused");
            // A COMMIT that failed on I/O may have left the database changed after all;
            // cached rows are dropped rather than trusted.
            generation.fetch_add(1, Ordering::AcqRel);
            let shared = Arc::new(e);
            for (done, own_error) in answers {
                // A write that failed on its own says so; the others, that the whole failed.
                done(Err(
                    own_error.unwrap_or_else(|| Error::TransactionFailed(shared.clone()))
                ));
            }
            out.committed = 0;
            out.forgot = false;
            out.failed = true;
        }
    }
    out
}

/// Writes the sequence row and commits. `forgot` says whether the transaction deleted or
/// overwrote anything secret (read, and reset, in the same transaction).
fn commit(
    conn: &Connection,
    start: Option<i64>,
    last: Option<i64>,
    forgot: &mut bool,
) -> rusqlite::Result<()> {
    // Versions handed out must never be handed out again: without the sequence row, no commit.
    if let (Some(first), Some(last)) = (start, last)
        && last > first
    {
        conn.prepare_cached("UPDATE sequence SET value = max(value, ?1) WHERE name = 'version'")?
            .execute([last])?;
    }
    let n: i64 = conn
        .prepare_cached("SELECT n FROM temp.forgotten")?
        .query_row([], |r| r.get(0))?;
    if n > 0 {
        exec(conn, "UPDATE temp.forgotten SET n = 0")?;
    }
    exec(conn, "COMMIT")?;
    *forgot = n > 0;
    Ok(())
}
