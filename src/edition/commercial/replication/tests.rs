//! Replication's SQL against real SQLite files: a bad batch fails its own job only, a batch is
//! read from one snapshot, and the watermarks stay true whatever order batches arrive in and
//! whichever acknowledgements are lost (a property test over random schedules).

use super::super::schema;
use super::rows::{self, ApplyError};
use super::wire::{Batch, Item};
use crate::store::{self, AgentRow, FieldMeta, FieldRow, Store};
use proptest::prelude::*;
use rusqlite::Connection;
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

const MAX_BYTES: usize = 8 * 1024 * 1024;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

/// A migrated vault with the commercial schema at `dir/vault.db`, and a plain connection to it
/// (not fsynced: these tests are about what is committed, not about power loss).
fn database(dir: &Path) -> Connection {
    static TEMPLATE: OnceLock<(tempfile::TempDir, PathBuf)> = OnceLock::new();
    let (_, template) = TEMPLATE.get_or_init(|| {
        let dir = tempfile::tempdir().expect("template dir");
        let path = dir.path().join("vault.db");
        runtime().block_on(async {
            let store = Store::open(&path).expect("open store");
            schema::ensure(&store).await.expect("commercial schema");
            store.close().await;
        });
        Connection::open(&path)
            .and_then(|c| c.execute_batch("PRAGMA wal_checkpoint(TRUNCATE);"))
            .expect("checkpoint the template");
        (dir, path)
    });
    let path = dir.join("vault.db");
    std::fs::copy(template, &path).expect("copy the template");
    let c = Connection::open(&path).expect("open");
    c.busy_timeout(Duration::from_secs(5))
        .expect("busy timeout");
    c.execute_batch("PRAGMA journal_mode=WAL; PRAGMA synchronous=OFF; PRAGMA foreign_keys=ON;")
        .expect("pragmas");
    c
}

fn uuid() -> String {
    uuid::Uuid::now_v7().to_string()
}

fn sealed(n: usize) -> Vec<u8> {
    vec![7u8; n]
}

fn agent_row(id: &str, name: &str) -> AgentRow {
    let mut hash = [0u8; 32];
    rand::fill(&mut hash);
    let mut row = AgentRow::new(
        id.to_owned(),
        name.to_owned(),
        "agent",
        hash,
        store::now_ms(),
    );
    row.scopes = vec!["deploy".into()];
    row.rate_limit_per_minute = Some(60);
    row
}

fn field() -> FieldRow {
    FieldRow {
        meta: FieldMeta {
            name: "password".into(),
            tier: "vault".into(),
            scope: None,
            policy: Default::default(),
        },
        ciphertext: sealed(40),
    }
}

/// Everything `conn` owes, as a backup would receive it (for hand-made batches).
fn owed(conn: &Connection) -> Vec<Item> {
    rows::collect(conn, "calgary-01", 100, MAX_BYTES, &HashSet::new())
        .expect("collect")
        .items
}

// ---- one bad batch fails alone ------------------------------------------------------------

/// Two batches share one group commit on the backup; one holds a scope key for an agent the
/// backup does not have. With foreign keys deferred to the commit (as before), the commit
/// failed and the good batch was refused with it; now the bad one fails alone.
#[test]
fn a_bad_batch_fails_alone_in_a_shared_group_commit() {
    let dir = tempfile::tempdir().expect("temp dir");
    // The rows, written on a "primary" database and collected as the wire carries them.
    let primary = database(&dir.path().join("p").tap_create());
    let entry = uuid();
    store::entries::insert_entry(&primary, &entry, &sealed(60), &[field()]).expect("entry");
    let agent = uuid();
    store::agents::insert_agent(&primary, &agent_row(&agent, "ci")).expect("agent");
    store::agents::put_scope_key(
        &primary,
        &store::ScopeKeyRow {
            scope: "deploy".into(),
            agent_id: agent.clone(),
            wrapped: sealed(60),
        },
    )
    .expect("scope key");
    let items = owed(&primary);
    let (good, bad): (Vec<Item>, Vec<Item>) = items
        .into_iter()
        .filter(|i| !matches!(i, Item::Agent(_)))
        .partition(|i| matches!(i, Item::Entry(_)));
    assert_eq!((good.len(), bad.len()), (1, 1));

    let path = dir.path().join("b").tap_create();
    drop(database(&path));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(shared_commit(&path.join("vault.db"), good, bad, entry));
}

async fn shared_commit(db: &Path, good: Vec<Item>, bad: Vec<Item>, entry: String) {
    let backup = Store::open(db).expect("backup store");

    // Hold the writer so both batches queue up and share the next transaction.
    let before = backup.generation();
    let held = backup.clone();
    let hold = tokio::spawn(async move {
        held.write(|_| {
            std::thread::sleep(Duration::from_millis(300));
            Ok::<_, store::Error>(())
        })
        .await
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    let apply = |items: Vec<Item>| {
        let b = backup.clone();
        tokio::spawn(async move {
            b.write(move |c| rows::apply(c, "zurich-01", &items, Some(1)))
                .await
        })
    };
    let (g, b) = (apply(good), apply(bad));
    hold.await.expect("join").expect("hold");
    let good = g.await.expect("join");
    let bad = b.await.expect("join");
    assert_eq!(
        backup.generation() - before,
        2,
        "the two batches did not share one commit"
    );
    assert!(matches!(bad, Err(ApplyError::Refused(_))), "{bad:?}");
    let good = good.expect("the good batch must commit");
    assert_eq!(good.applied, 1);
    let n: i64 = backup
        .read(move |c| {
            Ok::<_, store::Error>(c.query_row(
                "SELECT count(*) FROM entries WHERE id = ?1",
                [&entry],
                |r| r.get(0),
            )?)
        })
        .await
        .expect("count");
    assert_eq!(n, 1, "the good batch's entry is on the backup");
    backup.close().await;
}

trait TapCreate {
    fn tap_create(self) -> Self;
}

impl TapCreate for std::path::PathBuf {
    fn tap_create(self) -> Self {
        std::fs::create_dir_all(&self).expect("create dir");
        self
    }
}

// ---- one snapshot per batch ---------------------------------------------------------------

/// An agent and its scope key committed (together) while `collect` reads the agents: the
/// batch holds both or neither. Before, each query read its own snapshot, so the scope key
/// could travel without its agent and the backup refused it.
#[test]
fn collect_reads_one_snapshot() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut reader = database(dir.path());
    // Enough owed agents that the agents query runs for many VM steps.
    for i in 0..500 {
        store::agents::insert_agent(&reader, &agent_row(&uuid(), &format!("a{i}"))).expect("agent");
    }
    let writer = Connection::open(dir.path().join("vault.db")).expect("writer");
    writer
        .busy_timeout(Duration::from_secs(5))
        .expect("busy timeout");
    let agent = uuid();
    let mut done = false;
    let id = agent.clone();
    // First called 100 VM steps into a statement: inside the agents scan, whose read has begun.
    let _ = reader.progress_handler(
        100,
        Some(move || {
            if !done {
                done = true;
                let tx = writer.unchecked_transaction().expect("writer tx");
                store::agents::insert_agent(&tx, &agent_row(&id, "ci")).expect("agent");
                store::agents::put_scope_key(
                    &tx,
                    &store::ScopeKeyRow {
                        scope: "deploy".into(),
                        agent_id: id.clone(),
                        wrapped: sealed(60),
                    },
                )
                .expect("scope key");
                tx.commit().expect("concurrent write");
            }
            false
        }),
    );
    let batch =
        rows::collect(&reader, "calgary-01", 1000, MAX_BYTES, &HashSet::new()).expect("collect");
    let _ = reader.progress_handler(0, None::<fn() -> bool>);
    let agents: HashSet<&str> = batch
        .items
        .iter()
        .filter_map(|i| match i {
            Item::Agent(a) => Some(a.id.as_str()),
            _ => None,
        })
        .collect();
    for item in &batch.items {
        if let Item::ScopeKey(k) = item {
            assert!(
                agents.contains(k.agent_id.as_str()),
                "the scope key for {} travelled without its agent",
                k.agent_id
            );
        }
    }
    // The concurrent rows are owed, for the next batch.
    assert_eq!(schema::backlog(&reader).expect("backlog"), 502);
    assert!(agents.len() == 500 || agents.contains(agent.as_str()));
}

// ---- the watermarks are true ----------------------------------------------------------------

#[derive(Debug, Clone)]
enum Op {
    /// Create entry `k`, or update it if it is live.
    Write(usize),
    Delete(usize),
    /// Create an agent, or revoke agent `k` if it exists and is active.
    Agent(usize),
    /// The primary reads the next batch (as the worker would: at most 4 in flight, a batch
    /// with agents alone).
    Collect,
    /// The backup commits in-flight batch `i`; `lose_ack`: the primary never hears of it.
    Deliver {
        i: usize,
        lose_ack: bool,
    },
    /// In-flight batch `i` is lost on the way (never applied).
    Lose(usize),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0..5usize).prop_map(Op::Write),
        1 => (0..5usize).prop_map(Op::Delete),
        1 => (0..3usize).prop_map(Op::Agent),
        4 => Just(Op::Collect),
        4 => (0..4usize, proptest::bool::weighted(0.3))
            .prop_map(|(i, lose_ack)| Op::Deliver { i, lose_ack }),
        1 => (0..4usize).prop_map(Op::Lose),
    ]
}

struct InFlight {
    items: Vec<Item>,
    watermark: i64,
    snapshot: i64,
}

/// Every version each row had on the primary, in order (`table`, id) -> versions.
type History = HashMap<(&'static str, String), Vec<i64>>;

fn row_version(conn: &Connection, table: &str, id: &str) -> Option<i64> {
    conn.query_row(
        &format!("SELECT version FROM {table} WHERE id = ?1"),
        [id],
        |r| r.get(0),
    )
    .ok()
}

/// The backup holds, for every row, at least the state the primary had at version `w`.
fn holds_everything_up_to(backup: &Connection, history: &History, w: i64, whose: &str) {
    for ((table, id), versions) in history {
        let Some(at_w) = versions.iter().rev().find(|v| **v <= w) else {
            continue;
        };
        let held = row_version(backup, table, id);
        assert!(
            held.is_some_and(|h| h >= *at_w),
            "{whose} watermark {w} is not true: {table} {id} was at version {at_w} then, the backup holds {held:?}"
        );
    }
}

fn apply_on_backup(backup: &Connection, b: &Batch) {
    let tx = backup.unchecked_transaction().expect("backup tx");
    rows::apply(&tx, "zurich-01", &b.items, b.watermark).expect("apply");
    tx.commit().expect("backup commit");
}

fn run_schedule(ops: &[Op]) {
    let dir = tempfile::tempdir().expect("temp dir");
    let p = database(&dir.path().join("p").tap_create());
    let b = database(&dir.path().join("b").tap_create());
    let entries: Vec<String> = (0..5).map(|_| uuid()).collect();
    let mut agents: Vec<String> = Vec::new();
    let mut history: History = HashMap::new();
    let mut inflight: Vec<InFlight> = Vec::new();
    let record = |history: &mut History, table: &'static str, id: &str, p: &Connection| {
        let v = row_version(p, table, id).expect("written row");
        history.entry((table, id.to_owned())).or_default().push(v);
    };

    let collect = |p: &Connection, inflight: &mut Vec<InFlight>| {
        if inflight.len() >= 4 || inflight.iter().any(|f| has_agents(&f.items)) {
            return;
        }
        let skip: HashSet<String> = inflight
            .iter()
            .flat_map(|f| f.items.iter())
            .filter_map(|i| match i {
                Item::Entry(e) => Some(e.id.clone()),
                _ => None,
            })
            .collect();
        let c = rows::collect(p, "calgary-01", 2, MAX_BYTES, &skip).expect("collect");
        if has_agents(&c.items) && !inflight.is_empty() {
            return;
        }
        if c.items.is_empty() && !inflight.is_empty() {
            return;
        }
        inflight.push(InFlight {
            items: c.items,
            watermark: c.watermark,
            snapshot: c.snapshot,
        });
    };
    let deliver = |p: &Connection, f: InFlight, lose_ack: bool| {
        let batch = Batch {
            origin: "calgary-01".into(),
            items: f.items,
            watermark: Some(f.watermark),
            audit: Vec::new(),
            audit_head: None,
            protocol: None,
            epoch: None,
        };
        apply_on_backup(&b, &batch);
        if !lose_ack {
            rows::mark(p, &batch.items, f.snapshot).expect("mark");
        }
    };

    for op in ops {
        match op {
            Op::Write(k) => {
                let id = &entries[*k];
                match store::entries::replace_entry(&p, id, &sealed(50), &[field()]) {
                    Ok(_) => {}
                    Err(store::Error::NotFound) => {
                        if row_version(&p, "entries", id).is_some() {
                            continue; // deleted: stays a tombstone
                        }
                        store::entries::insert_entry(&p, id, &sealed(50), &[field()])
                            .expect("insert");
                    }
                    Err(e) => panic!("{e}"),
                }
                record(&mut history, "entries", id, &p);
            }
            Op::Delete(k) => {
                let id = &entries[*k];
                if store::entries::delete_entry(&p, id).is_ok() {
                    record(&mut history, "entries", id, &p);
                }
            }
            Op::Agent(k) => {
                if let Some(id) = agents.get(*k).cloned() {
                    if store::agents::revoke_agent(&p, &id).is_ok() {
                        record(&mut history, "agents", &id, &p);
                    }
                } else {
                    let id = uuid();
                    store::agents::insert_agent(&p, &agent_row(&id, &format!("a{}", agents.len())))
                        .expect("agent");
                    record(&mut history, "agents", &id, &p);
                    agents.push(id);
                }
            }
            Op::Collect => collect(&p, &mut inflight),
            Op::Deliver { i, lose_ack } => {
                if !inflight.is_empty() {
                    let f = inflight.remove(i % inflight.len());
                    deliver(&p, f, *lose_ack);
                }
            }
            Op::Lose(i) => {
                if !inflight.is_empty() {
                    inflight.remove(i % inflight.len());
                }
            }
        }
        let applied = schema::applied_watermark(&b).expect("applied watermark");
        holds_everything_up_to(&b, &history, applied, "the backup's applied");
        let acked = rows::acked_watermark(&p).expect("acked watermark");
        holds_everything_up_to(&b, &history, acked, "the primary's acknowledged");
        assert!(acked <= store::committed_version(&p).expect("committed"));
    }

    // Then the link heals: everything in flight lands, and draining catches both watermarks up
    // with the primary (a watermark stuck at 0 would be true and useless).
    for f in std::mem::take(&mut inflight) {
        deliver(&p, f, false);
    }
    for _ in 0..200 {
        collect(&p, &mut inflight);
        let Some(f) = inflight.pop() else { break };
        let done = f.items.is_empty();
        deliver(&p, f, false);
        if done {
            break;
        }
    }
    let committed = store::committed_version(&p).expect("committed");
    assert_eq!(rows::acked_watermark(&p).expect("acked"), committed);
    assert_eq!(schema::applied_watermark(&b).expect("applied"), committed);
    holds_everything_up_to(&b, &history, committed, "the final");
}

fn has_agents(items: &[Item]) -> bool {
    items.iter().any(|i| !matches!(i, Item::Entry(_)))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn watermarks_stay_true_under_reordering_and_lost_acknowledgements(
        ops in proptest::collection::vec(op(), 1..60)
    ) {
        run_schedule(&ops);
    }
}

/// A schedule spelled out: two batches in flight, the later one (higher versions) lands
/// first and the earlier one's acknowledgement is lost. "Highest version seen" would claim
/// the earlier batch's rows; the watermark does not.
#[test]
fn out_of_order_batches_do_not_overstate_the_recovery_point() {
    run_schedule(&[
        Op::Write(0),
        Op::Write(1),
        Op::Collect,
        Op::Write(2),
        Op::Write(3),
        Op::Collect,
        Op::Deliver {
            i: 1,
            lose_ack: false,
        },
        Op::Write(0),
        Op::Deliver {
            i: 0,
            lose_ack: true,
        },
        Op::Collect,
        Op::Deliver {
            i: 0,
            lose_ack: false,
        },
    ]);
}

// ---- invites and SCIM's marks ----------------------------------------------------------------

fn apply_items(backup: &Connection, items: &[Item]) -> rows::Applied {
    let tx = backup.unchecked_transaction().expect("backup tx");
    let out = rows::apply(&tx, "zurich-01", items, None).expect("apply");
    tx.commit().expect("backup commit");
    out
}

fn held_invite(backup: &Connection, user: &str) -> (Vec<u8>, Option<i64>) {
    backup
        .query_row(
            "SELECT code_hash, used_at FROM invites WHERE user_id = ?1",
            [user],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .expect("the backup holds the invite")
}

/// An invite and SCIM's mark reach the backup. A redeemed code stays redeemed there whatever
/// copy of its invite arrives later (an older one replayed, or one stamped later that still
/// shows it unused); a new invite, with a new code, arrives unused.
#[test]
fn invites_and_scim_marks_replicate_and_a_used_code_stays_used() {
    let dir = tempfile::tempdir().expect("temp dir");
    let primary = database(&dir.path().join("p").tap_create());
    let backup = database(&dir.path().join("b").tap_create());
    let user = uuid();
    store::agents::insert_agent(&primary, &agent_row(&user, "bo")).expect("user");
    let now = store::now_ms();
    let invite = |hash: u8| store::invites::InviteRow {
        user_id: user.clone(),
        code_hash: vec![hash; 32],
        created_at: now,
        expires_at: now + 3_600_000,
        used_at: None,
    };
    store::invites::put_invite(&primary, &invite(1)).expect("invite");
    store::provisioned::mark(&primary, &user, "user", Some("00ujl29u0le5T6Aj10h7")).expect("mark");
    let unused = owed(&primary);
    assert!(unused.iter().any(|i| matches!(i, Item::Invite(_))));
    assert!(unused.iter().any(|i| matches!(i, Item::Provisioned(_))));
    assert!(store::invites::use_invite(&primary, &user).expect("redeem"));
    let used = owed(&primary);

    apply_items(&backup, &used);
    assert!(held_invite(&backup, &user).1.is_some());
    let (resource, external): (String, Option<String>) = backup
        .query_row(
            "SELECT kind, external_id FROM provisioned WHERE id = ?1",
            [&user],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .expect("the backup holds SCIM's mark");
    assert_eq!(
        (resource.as_str(), external.as_deref()),
        ("user", Some("00ujl29u0le5T6Aj10h7"))
    );

    // The earlier copy, replayed: older, skipped.
    let out = apply_items(&backup, &unused);
    assert_eq!(out.applied, 0, "{out:?}");
    assert!(held_invite(&backup, &user).1.is_some());
    // The same code unused, stamped later than the redemption: applied, still used.
    let mut later = unused;
    for item in &mut later {
        if let Item::Invite(i) = item {
            i.stamp.version += 1_000;
        }
    }
    later.retain(|i| matches!(i, Item::Invite(_)));
    assert_eq!(apply_items(&backup, &later).applied, 1);
    assert!(
        held_invite(&backup, &user).1.is_some(),
        "a replayed copy made a used code usable again"
    );

    // A new invite replaces the used one: a new code, unused.
    store::invites::put_invite(&primary, &invite(2)).expect("new invite");
    let mut again = owed(&primary);
    for item in &mut again {
        if let Item::Invite(i) = item {
            i.stamp.version += 2_000;
        }
    }
    apply_items(&backup, &again);
    assert_eq!(held_invite(&backup, &user), (vec![2; 32], None));
}
