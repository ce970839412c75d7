//! The store against a real SQLite file in a temp dir: group commit, per-write rollback,
//! failed commits and savepoints, and reads that see one commit.
//!
//! Writes are made to share a transaction deterministically: a first write holds the writer
//! thread until every other write of the test is queued behind it.

use super::entries::{self, FieldMeta, FieldRow};
use super::*;
use rusqlite::ffi;
use std::sync::atomic::AtomicPtr;
use tempfile::TempDir;
use tokio::task::JoinHandle;

const WAIT: Duration = Duration::from_secs(10);

fn open() -> (TempDir, Store) {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = Store::open(&dir.path().join("vault.db")).expect("open store");
    (dir, store)
}

fn field(name: &str) -> FieldRow {
    FieldRow {
        meta: FieldMeta {
            name: name.into(),
            tier: "vault".into(),
            scope: None,
            policy: Default::default(),
        },
        ciphertext: name.as_bytes().to_vec(),
    }
}

fn insert(c: &Connection, id: &str) -> Result<(), Error> {
    entries::insert_entry(c, id, b"meta", &[field("f")]).map(drop)
}

/// The ids of the live entries, as a fresh read sees them.
async fn ids(store: &Store) -> Vec<String> {
    let mut ids: Vec<String> = store
        .read(entries::list_entries)
        .await
        .expect("list entries")
        .into_iter()
        .map(|e| e.id)
        .collect();
    ids.sort();
    ids
}

impl Store {
    /// Writes sent to the writer thread and not yet taken by it.
    fn queued(&self) -> usize {
        QUEUE - self.inner.jobs.capacity()
    }
}

async fn until_queued(store: &Store, n: usize) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while store.queued() < n {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{n} writes never queued (saw {})",
            store.queued()
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// A write that keeps the writer thread busy until `release` is sent to (or dropped).
struct Held {
    release: std::sync::mpsc::Sender<()>,
    done: JoinHandle<Result<(), Error>>,
}

async fn hold_writer(store: &Store) -> Held {
    let (started_tx, started) = oneshot::channel();
    let (release, wait) = std::sync::mpsc::channel::<()>();
    let s = store.clone();
    let done = tokio::spawn(async move {
        s.write(move |_| {
            let _ = started_tx.send(());
            let _ = wait.recv_timeout(WAIT);
            Ok::<_, Error>(())
        })
        .await
    });
    started.await.expect("the holding write runs");
    Held { release, done }
}

impl Held {
    async fn release(self) {
        let _ = self.release.send(());
        self.done.await.unwrap().expect("the holding write commits");
    }
}

type Write = Box<dyn FnOnce(&Connection) -> Result<(), Error> + Send>;

/// Queues `writes` in this order behind a held writer, then lets them run: they share one
/// transaction. Returns each caller's answer, and how many commits the batch took.
async fn one_batch(store: &Store, writes: Vec<Write>) -> (Vec<Result<(), Error>>, u64) {
    let held = hold_writer(store).await;
    let mut pending = Vec::new();
    for (i, w) in writes.into_iter().enumerate() {
        let s = store.clone();
        pending.push(tokio::spawn(async move { s.write(w).await }));
        until_queued(store, i + 1).await;
    }
    held.release().await;
    let before = store.generation();
    let mut answers = Vec::new();
    for p in pending {
        let answer = tokio::time::timeout(WAIT, p)
            .await
            .expect("every caller is answered")
            .expect("the caller's task did not panic");
        answers.push(answer);
    }
    (answers, store.generation() - before)
}

fn failed_commits() -> u64 {
    crate::metrics::render(0)
        .lines()
        .find_map(|l| {
            l.strip_prefix("clavitor_store_failed_commits_total ")?
                .parse()
                .ok()
        })
        .expect("the failed-commit counter is exported")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writes_share_commits_and_all_land() {
    let (_dir, store) = open();
    const N: usize = 32;
    let held = hold_writer(&store).await;
    let before = store.generation();
    let writes: Vec<_> = (0..N)
        .map(|i| {
            let s = store.clone();
            tokio::spawn(async move { s.write(move |c| insert(c, &format!("e{i:02}"))).await })
        })
        .collect();
    until_queued(&store, N).await;
    held.release().await;
    for w in writes {
        tokio::time::timeout(WAIT, w)
            .await
            .expect("answered")
            .unwrap()
            .expect("acknowledged");
    }
    // The holding write's commit, then one for all N.
    let commits = store.generation() - before;
    assert!(commits < N as u64, "{N} writes took {commits} commits");
    assert_eq!(commits, 2, "the {N} queued writes share one commit");
    let want: Vec<String> = (0..N).map(|i| format!("e{i:02}")).collect();
    assert_eq!(ids(&store).await, want);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_failing_write_rolls_back_alone() {
    let (_dir, store) = open();
    let (answers, commits) = one_batch(
        &store,
        vec![
            Box::new(|c| insert(c, "a")),
            // Writes its row, then fails: the row must go, the neighbours must stay.
            Box::new(|c| {
                insert(c, "b")?;
                Err(Error::Rejected("refused on purpose".into()))
            }),
            Box::new(|c| insert(c, "c")),
            Box::new(|c| {
                insert(c, "d")?;
                panic!("a write that panics after writing");
            }),
            Box::new(|c| insert(c, "e")),
        ],
    )
    .await;
    assert_eq!(commits, 1, "one transaction");
    assert!(answers[0].is_ok() && answers[2].is_ok() && answers[4].is_ok());
    assert!(matches!(&answers[1], Err(Error::Rejected(m)) if m == "refused on purpose"));
    assert!(matches!(answers[3], Err(Error::Panicked)));
    assert_eq!(ids(&store).await, ["a", "c", "e"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_commit_answers_every_caller_with_an_error() {
    let (_dir, store) = open();
    let failed_before = failed_commits();
    let (answers, _) = one_batch(
        &store,
        vec![
            Box::new(|c| insert(c, "a")),
            // A field of an entry that does not exist, its check deferred to COMMIT: the
            // write itself succeeds, and COMMIT refuses the whole transaction.
            Box::new(|c| {
                c.execute_batch("PRAGMA defer_foreign_keys = ON")?;
                insert(c, "b")?;
                c.execute(
                    "INSERT INTO fields (entry_id, position, name, tier, ciphertext)
                     VALUES ('no such entry', 0, 'x', 'vault', x'00')",
                    [],
                )?;
                Ok(())
            }),
            Box::new(|c| insert(c, "c")),
        ],
    )
    .await;
    for (i, a) in answers.iter().enumerate() {
        match a {
            Err(Error::TransactionFailed(cause)) => assert!(
                cause.to_string().contains("FOREIGN KEY"),
                "write {i}: the error names the cause: {cause}"
            ),
            other => panic!("write {i} of a failed commit was answered {other:?}"),
        }
    }
    assert!(
        ids(&store).await.is_empty(),
        "nothing of the batch is on disk"
    );
    assert!(
        failed_commits() > failed_before,
        "/metrics counts the failed commit"
    );
    // The store goes on: the next write commits.
    store.write(|c| insert(c, "after")).await.unwrap();
    assert_eq!(ids(&store).await, ["after"]);
}

#[test]
fn a_failed_commit_counts_no_write_as_committed() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("vault.db");
    let mut conn = open_conn(&path, OpenFlags::default()).unwrap();
    schema::migrate(&mut conn, &path).unwrap();
    writer::prepare(&conn).unwrap();
    let shared = writer::Shared::new();

    let (ok, _r1) = job(|c: &Connection| insert(c, "a"));
    let (bad, _r2) = job(|c: &Connection| {
        c.execute_batch("PRAGMA defer_foreign_keys = ON")?;
        c.execute(
            "INSERT INTO fields (entry_id, position, name, tier, ciphertext)
             VALUES ('no such entry', 0, 'x', 'vault', x'00')",
            [],
        )?;
        Ok::<_, Error>(())
    });
    let mut batch = std::collections::VecDeque::from([ok, bad]);
    let out = writer::run_batch(&conn, &mut batch, &mut Vec::new(), &shared);
    assert_eq!(
        out,
        writer::Outcome {
            ran: 2,
            committed: 0,
            failed: true,
            forgot: false,
            audited: 0
        }
    );

    let (ok, _r3) = job(|c: &Connection| insert(c, "b"));
    let (refused, _r4) = job(|_: &Connection| Err::<(), _>(Error::Rejected("no".into())));
    let mut batch = std::collections::VecDeque::from([ok, refused]);
    let out = writer::run_batch(&conn, &mut batch, &mut Vec::new(), &shared);
    assert_eq!(
        out,
        writer::Outcome {
            ran: 2,
            committed: 1,
            failed: false,
            forgot: false,
            audited: 0
        }
    );
}

/// A write statement stepped once and left running, as a buggy write could leave one: while
/// it runs, SQLite refuses to open or release savepoints ("SQL statements in progress").
fn leave_statement_running(conn: &Connection, slot: &AtomicPtr<ffi::sqlite3_stmt>) {
    let sql = c"UPDATE sequence SET value = value WHERE name = 'version' RETURNING value";
    let mut stmt = std::ptr::null_mut();
    // SAFETY: the handle is this live connection's, on the thread using it; the statement is
    // finalized once, by `Finalize`, on the same thread.
    unsafe {
        let db = conn.handle();
        assert_eq!(
            ffi::sqlite3_prepare_v2(db, sql.as_ptr(), -1, &mut stmt, std::ptr::null_mut()),
            ffi::SQLITE_OK
        );
        assert_eq!(ffi::sqlite3_step(stmt), ffi::SQLITE_ROW);
    }
    slot.store(stmt, Ordering::SeqCst);
}

/// Finalizes the running statement when dropped (with the write that holds it).
struct Finalize(Arc<AtomicPtr<ffi::sqlite3_stmt>>);

impl Drop for Finalize {
    fn drop(&mut self) {
        let stmt = self.0.swap(std::ptr::null_mut(), Ordering::SeqCst);
        // SAFETY: dropped on the writer thread, which owns the connection; null is a no-op.
        unsafe {
            ffi::sqlite3_finalize(stmt);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_savepoint_that_cannot_be_released_or_opened_fails_its_caller() {
    let (_dir, store) = open();
    let running = Arc::new(AtomicPtr::new(std::ptr::null_mut()));
    let slot = running.clone();
    let finalize = Finalize(running.clone());
    let (answers, _) = one_batch(
        &store,
        vec![
            Box::new(|c| insert(c, "a")),
            // Writes, then leaves a statement running: its savepoint cannot be released, so
            // the write is rolled back, and its caller must hear so.
            Box::new(move |c| {
                insert(c, "b")?;
                leave_statement_running(c, &slot);
                Ok(())
            }),
            // Queued while the statement runs: no savepoint opens, so neither runs.
            Box::new(|c| insert(c, "c")),
            Box::new(move |c| {
                let _finalize = &finalize;
                insert(c, "d")
            }),
            // The statement is gone again: this one runs and commits with "a".
            Box::new(|c| insert(c, "e")),
        ],
    )
    .await;
    assert!(answers[0].is_ok(), "{:?}", answers[0]);
    match &answers[1] {
        Err(e @ Error::SavepointRelease(_)) => {
            assert!(e.to_string().contains("rolled back"), "{e}")
        }
        other => panic!("the write whose savepoint was not released got {other:?}"),
    }
    for a in &answers[2..4] {
        match a {
            Err(e @ Error::SavepointOpen(_)) => assert!(
                e.to_string().contains("statements in progress"),
                "the error says why: {e}"
            ),
            other => panic!("a write whose savepoint could not open got {other:?}"),
        }
    }
    assert!(answers[4].is_ok(), "{:?}", answers[4]);
    assert_eq!(
        ids(&store).await,
        ["a", "e"],
        "exactly the acknowledged writes"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_that_takes_its_savepoint_away_abandons_its_transaction_alone() {
    let (_dir, store) = open();
    let (answers, _) = one_batch(
        &store,
        vec![
            Box::new(|c| insert(c, "a")),
            // Releases its own savepoint: its rows are now in the shared transaction and no
            // savepoint can take them out again, so the transaction cannot be trusted.
            Box::new(|c| {
                insert(c, "b")?;
                c.execute_batch(writer::RELEASE)?;
                Ok(())
            }),
            Box::new(|c| insert(c, "c")),
        ],
    )
    .await;
    assert!(
        matches!(&answers[0], Err(Error::TransactionFailed(_))),
        "{:?}",
        answers[0]
    );
    assert!(
        matches!(&answers[1], Err(Error::SavepointRelease(_))),
        "{:?}",
        answers[1]
    );
    // Not run in the abandoned transaction: it goes into the next one.
    assert!(answers[2].is_ok(), "{:?}", answers[2]);
    assert_eq!(ids(&store).await, ["c"]);
}

// Entry reads see one commit. The interloper commits a new version of the entry (title and
// field set together) on another connection each time the reading connection starts a
// statement; a read made of statements that each see their own commit mixes versions.

thread_local! {
    static INTERLOPER: std::cell::RefCell<Option<(Connection, i64)>> =
        const { std::cell::RefCell::new(None) };
}

const ENTRY: &str = "entry";

fn rewrite(c: &Connection, n: i64) {
    entries::replace_entry(
        c,
        ENTRY,
        format!("v{n}").as_bytes(),
        &[field(&format!("f{n}"))],
    )
    .expect("interloper rewrites the entry");
}

unsafe extern "C" fn on_statement(
    _: std::ffi::c_uint,
    _: *mut std::ffi::c_void,
    _: *mut std::ffi::c_void,
    _: *mut std::ffi::c_void,
) -> std::ffi::c_int {
    INTERLOPER.with(|i| {
        if let Some((conn, n)) = &mut *i.borrow_mut() {
            *n += 1;
            rewrite(conn, *n);
        }
    });
    0
}

/// A reader connection whose every statement is preceded by a commit of the interloper.
fn interrupted_reader(path: &Path) -> Connection {
    let writer = open_conn(path, OpenFlags::default()).unwrap();
    INTERLOPER.with(|i| *i.borrow_mut() = Some((writer, 0)));
    let reader = open_conn(path, OpenFlags::default()).unwrap();
    // SAFETY: the callback touches only this thread's interloper connection; the reader is
    // used on this thread only.
    let rc = unsafe {
        ffi::sqlite3_trace_v2(
            reader.handle(),
            ffi::SQLITE_TRACE_STMT,
            Some(on_statement),
            std::ptr::null_mut(),
        )
    };
    assert_eq!(rc, ffi::SQLITE_OK);
    reader
}

fn assert_one_version(row: &EntryRow) {
    let meta = String::from_utf8(row.meta.clone()).unwrap();
    let names: Vec<&str> = row.fields.iter().map(|f| f.name.as_str()).collect();
    assert_eq!(
        names,
        [format!("f{}", &meta[1..])],
        "title {meta} read with fields {names:?}: two commits mixed"
    );
}

#[test]
fn entry_reads_see_metadata_and_fields_from_one_commit() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("vault.db");
    {
        let mut c = open_conn(&path, OpenFlags::default()).unwrap();
        schema::migrate(&mut c, &path).unwrap();
        entries::insert_entry(&c, ENTRY, b"v0", &[field("f0")]).unwrap();
    }
    let reader = interrupted_reader(&path);

    let one = entries::get_entry(&reader, ENTRY).unwrap().expect("entry");
    assert_one_version(&one);
    let all = entries::list_entries(&reader).unwrap();
    assert_eq!(all.len(), 1);
    assert_one_version(&all[0]);
    // Control: the interloper did commit between the reads.
    let writes = INTERLOPER
        .with(|i| i.borrow().as_ref().map(|(_, n)| *n))
        .unwrap();
    assert!(writes >= 2, "the interloper wrote {writes} times");
    INTERLOPER.with(|i| i.borrow_mut().take());
}

// The audit trail's chain as the writer keeps it.

fn audited_open() -> (TempDir, Store, crate::crypto::AuditKey) {
    let (dir, store) = open();
    let key = crate::crypto::MasterKey::generate().audit_key();
    store.set_audit_key(key.clone());
    (dir, store, key)
}

fn event(action: &'static str, target: &str) -> audit::EventData {
    audit::EventData {
        actor_kind: "owner".into(),
        actor_id: Some("o".into()),
        action: action.into(),
        target: Some(target.into()),
        outcome: "ok".into(),
        ip: None,
        request_id: None,
        details: vec![],
    }
}

/// Inserts entry `id` and its event, in one write.
fn insert_audited(c: &Connection, id: &str) -> Result<(), Error> {
    insert(c, id)?;
    audit::append(c, &event("entry.create", id)).map(drop)
}

/// `(seq, target)` of every stored event, and whether the chain verifies.
fn trail(dir: &TempDir, key: &crate::crypto::AuditKey) -> (Vec<(i64, String)>, bool) {
    let conn = Connection::open(dir.path().join("vault.db")).unwrap();
    let mut events = Vec::new();
    audit::for_each(&conn, |e| {
        events.push((e.seq, e.data.target.unwrap_or_default()));
        Ok(())
    })
    .unwrap();
    let ok = crate::audit::verify_all(&conn, key, None).is_ok();
    (events, ok)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolled_back_write_leaves_no_gap_and_no_orphan_event() {
    let (dir, store, key) = audited_open();
    let (answers, _) = one_batch(
        &store,
        vec![
            Box::new(|c| insert_audited(c, "a")),
            // Its event is appended, then the write fails: the event goes with it.
            Box::new(|c| {
                insert_audited(c, "b")?;
                Err(Error::Rejected("refused after its event".into()))
            }),
            Box::new(|c| insert_audited(c, "c")),
        ],
    )
    .await;
    assert!(answers[0].is_ok() && answers[1].is_err() && answers[2].is_ok());
    assert_eq!(ids(&store).await, ["a", "c"]);
    let (events, verified) = trail(&dir, &key);
    assert_eq!(events, [(1, "a".to_owned()), (2, "c".to_owned())]);
    assert!(verified, "the chain and its signed head verify");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_commit_keeps_no_event_and_the_chain_goes_on_from_disk() {
    let (dir, store, key) = audited_open();
    store.write(|c| insert_audited(c, "first")).await.unwrap();
    let (answers, _) = one_batch(
        &store,
        vec![
            Box::new(|c| insert_audited(c, "a")),
            Box::new(|c| {
                c.execute_batch("PRAGMA defer_foreign_keys = ON")?;
                insert_audited(c, "b")?;
                c.execute(
                    "INSERT INTO fields (entry_id, position, name, tier, ciphertext)
                     VALUES ('no such entry', 0, 'x', 'vault', x'00')",
                    [],
                )?;
                Ok(())
            }),
        ],
    )
    .await;
    assert!(answers.iter().all(Result::is_err));
    assert!(
        !store.audit_available(),
        "a commit holding events failed: the trail is down"
    );
    // The head in memory had events 2 and 3; the next write starts again after event 1.
    store.write(|c| insert_audited(c, "after")).await.unwrap();
    assert!(store.audit_available(), "a commit holding events succeeded");
    let (events, verified) = trail(&dir, &key);
    assert_eq!(events, [(1, "first".to_owned()), (2, "after".to_owned())]);
    assert!(verified);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn change_free_events_commit_without_bumping_the_generation() {
    let (dir, store, key) = audited_open();
    store.write(|c| insert_audited(c, "a")).await.unwrap();
    let before = store.generation();
    store.audit(event("field.read", "a"), true).await.unwrap();
    store.audit(event("field.read", "a"), false).await.unwrap();
    store.audit(event("entry.list", "-"), true).await.unwrap();
    assert_eq!(store.generation(), before, "the read cache stays valid");
    store.write(|c| insert_audited(c, "b")).await.unwrap();
    assert_eq!(store.generation(), before + 1);
    let (events, verified) = trail(&dir, &key);
    assert_eq!(
        events.iter().map(|e| e.0).collect::<Vec<_>>(),
        [1, 2, 3, 4, 5]
    );
    assert!(verified);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_database_takes_the_trail_down_until_an_event_commits_again() {
    let (dir, store, key) = audited_open();
    store.write(|c| insert_audited(c, "a")).await.unwrap();
    // No page may be added from now on (a full disk, as SQLite sees it).
    store
        .write(|c| {
            let pages: i64 = c.query_row("PRAGMA page_count", [], |r| r.get(0))?;
            c.query_row(&format!("PRAGMA max_page_count = {pages}"), [], |_| Ok(()))?;
            Ok::<_, Error>(())
        })
        .await
        .unwrap();
    let mut big = event("field.read", "a");
    big.details = vec![("pad".into(), "x".repeat(3000))];
    let mut failed = false;
    for _ in 0..200 {
        if store.audit(big.clone(), true).await.is_err() {
            failed = true;
            break;
        }
    }
    assert!(failed, "the database never filled up");
    assert!(!store.audit_available());
    store
        .write(|c| {
            c.query_row("PRAGMA max_page_count = 1073741823", [], |_| Ok(()))?;
            Ok::<_, Error>(())
        })
        .await
        .unwrap();
    assert!(
        !store.audit_available(),
        "a write without events says nothing about the trail"
    );
    store
        .audit(event("audit.resumed", "-"), true)
        .await
        .unwrap();
    assert!(store.audit_available());
    let (_, verified) = trail(&dir, &key);
    assert!(verified, "nothing of the failed appends is in the chain");
}
