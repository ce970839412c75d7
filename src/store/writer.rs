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
//! - The audit trail's chain has no gap and no orphan: events are appended in the transaction
//!   of the change they describe (a job's own savepoint), the chain head is snapshotted before
//!   each savepoint and restored if it rolls back, and forgotten (reloaded from the database)
//!   after a failed commit. The signed head row is written once, just before COMMIT.
//! - Events that describe no change (reads, denials) arrive as [`Msg::Audit`] and are appended
//!   together under one savepoint; a commit holding only those does not bump the commit
//!   generation, so it leaves the read cache alone.
//! - The trail's state is known: `Shared::trail_ok` turns false when an append or a commit
//!   holding events fails, and true again only when a commit holding events succeeds.

use super::audit::{self, EventData};
use super::{BATCH_VERSION, Error, committed_version};
use crate::crypto::AuditKey;
use rusqlite::Connection;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};
use tokio::sync::mpsc::error::TryRecvError;
use tokio::sync::{mpsc, oneshot, watch};

/// Most writes one transaction takes; bounds the latency a batch adds to its last member.
pub(super) const MAX_BATCH: usize = 512;
/// Most change-free audit events one transaction takes (each is one small insert).
pub(super) const MAX_AUDIT: usize = 4096;

/// How long a checkpoint waits for readers still using the WAL before it gives up and is
/// retried; short, because writes queue behind it.
const CHECKPOINT_WAIT: Duration = Duration::from_millis(100);
/// How long a commit of read events alone waits for more to share it (a write that arrives
/// meanwhile joins it). Well inside the "within 100 ms" the README promises for them.
const AUDIT_LINGER: Duration = Duration::from_millis(5);
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
/// The savepoint of a transaction's change-free audit events.
const AUDIT_OPEN: &str = "SAVEPOINT clavitor_audit";
const AUDIT_RELEASE: &str = "RELEASE clavitor_audit";
const AUDIT_ROLLBACK_TO: &str = "ROLLBACK TO clavitor_audit";

/// Answers a job's caller with the fate of its transaction.
pub(super) type Completion = Box<dyn FnOnce(Result<(), Error>) + Send>;
/// Runs one write on the writer connection inside its savepoint, and returns whether it
/// succeeded and how to answer its caller. `Err` means the write cannot run, and says why.
pub(super) type Job = Box<dyn FnOnce(Result<&Connection, Error>) -> (bool, Completion) + Send>;

/// An audit event that changes nothing else (a read, a denial), and whoever waits for its
/// commit (`serve --audit-sync`).
pub(super) struct AuditMsg {
    pub event: EventData,
    pub done: Option<oneshot::Sender<Result<(), Error>>>,
}

/// A change-free event's waiter, and the error of its own append if it failed.
type Waiter = (oneshot::Sender<Result<(), Error>>, Option<Error>);

pub(super) enum Msg {
    Job(Job),
    Audit(AuditMsg),
    Shutdown,
}

/// What the writer thread shares with the store's handles.
#[derive(Default)]
pub(super) struct Shared {
    /// Commits that changed data so far, bumped before any writer of the commit is answered:
    /// a reader that sees the same number before and after reading knows nothing changed.
    pub generation: AtomicU64,
    /// False from a failed audit append or a failed commit holding events, until a commit
    /// holding events succeeds.
    pub trail_ok: AtomicBool,
    /// Signs the chain head; set once the vault's key is known, before any event.
    pub audit_key: OnceLock<AuditKey>,
}

impl Shared {
    pub fn new() -> Self {
        Self {
            trail_ok: AtomicBool::new(true),
            ..Self::default()
        }
    }
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
    /// Change-free audit events committed.
    pub audited: usize,
}

fn exec(conn: &Connection, sql: &str) -> rusqlite::Result<()> {
    conn.prepare_cached(sql)?.execute([]).map(drop)
}

pub(super) fn writer_loop(
    conn: Connection,
    mut rx: mpsc::Receiver<Msg>,
    commits: watch::Sender<u64>,
    shared: &Shared,
) {
    let mut batch: VecDeque<Job> = VecDeque::with_capacity(MAX_BATCH);
    let mut audits: Vec<AuditMsg> = Vec::new();
    // When a committed write first forgot something that is not yet checkpointed away.
    let mut owed: Option<Instant> = None;
    let mut stopping = false;
    loop {
        if batch.is_empty() && audits.is_empty() {
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
                Some(Msg::Audit(a)) => audits.push(a),
                Some(Msg::Shutdown) | None => break,
            }
        }
        // Everything that queued up while the last fsync ran shares this transaction.
        gather(&mut rx, &mut batch, &mut audits, &mut stopping);
        // Read events alone, that nobody waits for, are worth gathering a moment longer:
        // under read load, committing each handful as it comes costs an fsync apiece.
        if batch.is_empty()
            && !stopping
            && audits.len() < MAX_AUDIT
            && audits.iter().all(|a| a.done.is_none())
        {
            std::thread::sleep(AUDIT_LINGER);
            gather(&mut rx, &mut batch, &mut audits, &mut stopping);
        }
        // Under constant load there is no idle moment: forget within a bounded time anyway.
        if owed.is_some_and(|since| since.elapsed() >= FORGET_WITHIN) && checkpoint(&conn) {
            owed = None;
        }
        let out = run_batch(&conn, &mut batch, &mut audits, shared);
        // A failed commit is counted in run_batch, before its callers hear of it.
        if !out.failed && out.ran > 0 {
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
    for a in audits {
        if let Some(done) = a.done {
            let _ = done.send(Err(Error::Closed));
        }
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

/// Runs one group commit over the jobs at the front of `batch`, then the change-free audit
/// events in `audits`. Jobs left in `batch` did not run (the transaction was abandoned before
/// them) and go into the next one, as do the events then.
pub(super) fn run_batch(
    conn: &Connection,
    batch: &mut VecDeque<Job>,
    audits: &mut Vec<AuditMsg>,
    shared: &Shared,
) -> Outcome {
    let mut out = Outcome::default();
    audit::take_append_failed();
    // A transaction left open by an earlier failure would make every BEGIN fail from now on.
    if !conn.is_autocommit()
        && let Err(e) = exec(conn, "ROLLBACK")
    {
        tracing::error!(error = %e, "cannot roll back a transaction left open");
    }
    if let Err(e) = exec(conn, "BEGIN IMMEDIATE") {
        tracing::error!(error = %e, jobs = batch.len(), events = audits.len(), "cannot begin a write transaction; its writes were refused");
        let shared_error = Arc::new(Error::Sqlite(e));
        crate::metrics::record_failed_commit();
        for job in batch.drain(..) {
            out.ran += 1;
            let (_, done) = job(Err(Error::TransactionFailed(shared_error.clone())));
            done(Err(Error::TransactionFailed(shared_error.clone())));
        }
        if !audits.is_empty() {
            trail_down(shared, "the transaction for audit events could not begin");
        }
        for a in audits.drain(..) {
            if let Some(done) = a.done {
                let _ = done.send(Err(Error::TransactionFailed(shared_error.clone())));
            }
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
        let chain = audit::snapshot();
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
            // Its events went with its change.
            audit::restore(chain);
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
    // Change-free events: left for the next transaction if this one was abandoned.
    let mut waiting: Vec<Waiter> = Vec::new();
    if abandoned.is_none() && !audits.is_empty() {
        let own = append_change_free(conn, audits);
        let n = audits.len();
        for a in audits.drain(..) {
            if let Some(done) = a.done {
                let mine = own.as_ref().err().map(|e| Error::Rejected(e.to_string()));
                waiting.push((done, mine));
            }
        }
        match own {
            Ok(()) => out.audited = n,
            Err(e) => {
                tracing::error!(error = %e, events = n, "audit events could not be appended; the trail is unavailable");
            }
        }
    }
    let last = BATCH_VERSION.take();
    let appended = audit::dirty_head().is_some();
    let committed = match abandoned {
        Some(why) => Err(Error::Rejected(format!(
            "the transaction was abandoned: {why}"
        ))),
        None => commit(conn, start, last, &mut out.forgot, shared),
    };
    let append_failed = audit::take_append_failed();
    match committed {
        Ok(()) => {
            audit::mark_clean();
            // Before the answers: a caller that got its answer must not then be served an
            // older cached row. Nothing changed if no write was kept; audit events alone
            // change nothing the read cache holds.
            if out.committed > 0 {
                shared.generation.fetch_add(1, Ordering::AcqRel);
            }
            if append_failed {
                trail_down(shared, "an audit event could not be appended");
            } else if appended {
                trail_up(shared);
            }
            for (done, own_error) in answers {
                done(own_error.map_or(Ok(()), Err));
            }
            for (done, own_error) in waiting {
                let _ = done.send(own_error.map_or(Ok(()), Err));
            }
        }
        Err(e) => {
            if !conn.is_autocommit()
                && let Err(e) = exec(conn, "ROLLBACK")
            {
                tracing::error!(error = %e, "cannot roll back a failed write transaction");
            }
            // The chain head in memory may hold events that are not on disk.
            audit::forget();
            tracing::error!(error = %e, jobs = answers.len(), "group commit failed; every write in it was refused");
            if appended || append_failed || !waiting.is_empty() {
                trail_down(shared, "a commit holding audit events failed");
            }
            // A COMMIT that failed on I/O may have left the database changed after all;
            // cached rows are dropped rather than trusted.
            shared.generation.fetch_add(1, Ordering::AcqRel);
            crate::metrics::record_failed_commit();
            let shared_error = Arc::new(e);
            for (done, own_error) in answers {
                // A write that failed on its own says so; the others, that the whole failed.
                done(Err(own_error.unwrap_or_else(|| {
                    Error::TransactionFailed(shared_error.clone())
                })));
            }
            for (done, _) in waiting {
                let _ = done.send(Err(Error::TransactionFailed(shared_error.clone())));
            }
            out.committed = 0;
            out.audited = 0;
            out.forgot = false;
            out.failed = true;
        }
    }
    if append_failed {
        // Whatever made an append fail may have left the head in memory wrong; the next
        // transaction reads it from the database.
        audit::forget();
    }
    out
}

/// Appends change-free events under their own savepoint: all of them or none.
fn append_change_free(conn: &Connection, audits: &[AuditMsg]) -> Result<(), Error> {
    exec(conn, AUDIT_OPEN)?;
    let chain = audit::snapshot();
    let appended = audits
        .iter()
        .try_for_each(|a| audit::append(conn, &a.event).map(drop))
        .and_then(|()| exec(conn, AUDIT_RELEASE).map_err(Error::Sqlite));
    if let Err(e) = appended {
        audit::restore(chain);
        if exec(conn, AUDIT_ROLLBACK_TO).is_ok() {
            drop(exec(conn, AUDIT_RELEASE));
        }
        // Counts as a failed append even when the failure was the savepoint's.
        audit::note_append_failed();
        return Err(e);
    }
    Ok(())
}

fn trail_down(shared: &Shared, why: &str) {
    if shared.trail_ok.swap(false, Ordering::AcqRel) {
        tracing::error!(
            "{why}: the audit trail cannot be written; requests are refused (503 audit_unavailable) until it can"
        );
    }
}

fn trail_up(shared: &Shared) {
    if !shared.trail_ok.swap(true, Ordering::AcqRel) {
        tracing::warn!("the audit trail is written again; requests are served");
    }
}

/// Writes the sequence row and the signed audit head, and commits. `forgot` says whether the
/// transaction deleted or overwrote anything secret (read, and reset, in the same
/// transaction).
fn commit(
    conn: &Connection,
    start: Option<i64>,
    last: Option<i64>,
    forgot: &mut bool,
    shared: &Shared,
) -> Result<(), Error> {
    // Versions handed out must never be handed out again: without the sequence row, no commit.
    if let (Some(first), Some(last)) = (start, last)
        && last > first
    {
        conn.prepare_cached("UPDATE sequence SET value = max(value, ?1) WHERE name = 'version'")?
            .execute([last])?;
    }
    // Events without a signed head would be indistinguishable from forged ones: none commit
    // without it.
    if let Some(head) = audit::dirty_head() {
        let key = shared.audit_key.get().ok_or_else(|| {
            Error::Rejected("audit events were written before the audit key was set".into())
        })?;
        audit::write_head(conn, &head, &key.mac(&head.mac_message()))?;
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

/// Moves what is queued into this commit's batch, up to its limits, without waiting.
fn gather(
    rx: &mut mpsc::Receiver<Msg>,
    batch: &mut VecDeque<Job>,
    audits: &mut Vec<AuditMsg>,
    stopping: &mut bool,
) {
    while batch.len() < MAX_BATCH && audits.len() < MAX_AUDIT {
        match rx.try_recv() {
            Ok(Msg::Job(j)) => batch.push_back(j),
            Ok(Msg::Audit(a)) => audits.push(a),
            Ok(Msg::Shutdown) => {
                *stopping = true;
                break;
            }
            Err(_) => break,
        }
    }
}
