//! Failover the control plane coordinates, with three real processes: the control plane and
//! two POPs, every link between them through a [`Proxy`] so it can be cut. Clients write to
//! both POPs all along; every acknowledged write is recorded with its POP and when it was sent
//! and answered, and no two POPs' acknowledgements may ever overlap in time.

use crate::cp::{Cp, CpDir};
use crate::helpers::*;
use reqwest::Method;
use serde_json::{Value, json};
use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Automatic failover with short timings: heartbeats every 300 ms, a silent primary replaced
/// after 6 missed ones (1.8 s), a 1 s lease (the control plane waits 1 s more for it).
const FAILOVER: &str = "failover:\n  mode: automatic\n  heartbeat_interval_ms: 300\n  missed_heartbeats: 6\n  lease_seconds: 1\n  max_lag_versions: 100000\n";

/// A healed link's convergence, with no new write to wake the new primary: its retry timer
/// (at most 5 s) after the old primary heard of its demotion, with room for a loaded machine.
const HEALED_WITHIN: Duration = Duration::from_secs(20);

/// One write a client sent.
#[derive(Clone, Debug)]
struct Write {
    pop: &'static str,
    sent: Instant,
    answered: Instant,
    status: u16,
    code: String,
    id: Option<String>,
}

/// Three processes and the links between them.
struct Cluster {
    ca: Ca,
    api: Api,
    primary: Pop,
    /// Kept for its directory (removed on drop).
    _backup: Pop,
    cp_dir: CpDir,
    cp: Option<Cp>,
    /// primary -> control plane, backup -> control plane.
    p_cp: Proxy,
    b_cp: Proxy,
    /// primary -> backup pushes, backup -> primary pushes (once promoted).
    to_b: Proxy,
    to_p: Proxy,
    p: Vault,
    b: Vault,
    owner: String,
}

fn control_plane_yaml(cp_dir: &CpDir, pop: &str, via: &Proxy) -> String {
    let token_file = &cp_dir
        .pops
        .iter()
        .find(|p| p.id == pop)
        .expect("POP known to the control plane")
        .token_file;
    format!(
        "control_plane:\n  url: \"{}\"\n  token_file: {}\n  ca_file: {}\n  heartbeat_interval: 1\n  telemetry_interval: 60\n",
        via.url(),
        crate::common::files::q(token_file),
        crate::common::files::q(&cp_dir.tls.ca)
    )
}

impl Cluster {
    async fn start(failover: &str) -> Self {
        Self::start_with(failover, "live").await
    }

    /// Started, with the primary's lease in `lease` state (`live`, or `unlimited` without).
    async fn start_with(failover: &str, lease: &str) -> Self {
        let ca = Ca::new("Clavitor POP CA");
        let mut primary = Pop::new(PRIMARY_ID, &ca);
        let mut backup = Pop::new(BACKUP_ID, &ca);
        primary.init(None);
        backup.init(Some(&primary.master_key()));
        let owner = primary.owner.clone();
        let cp_dir = CpDir::new(&[PRIMARY_ID, BACKUP_ID], failover);
        let cp = cp_dir.start();
        let (p_cp, b_cp, to_b, to_p) = (
            Proxy::start(),
            Proxy::start(),
            Proxy::start(),
            Proxy::start(),
        );
        p_cp.set_target(cp.process.addr());
        b_cp.set_target(cp.process.addr());
        primary.write_managed(
            "primary",
            &BackupRef {
                id: BACKUP_ID,
                url: &to_b.url(),
                token_file: &backup.token_file,
            },
            &control_plane_yaml(&cp_dir, PRIMARY_ID, &p_cp),
        );
        backup.write_managed(
            "backup",
            &BackupRef {
                id: PRIMARY_ID,
                url: &to_p.url(),
                token_file: &primary.token_file,
            },
            &control_plane_yaml(&cp_dir, BACKUP_ID, &b_cp),
        );
        let b = backup.start();
        to_b.set_target(b.addr());
        let p = primary.start();
        to_p.set_target(p.addr());
        let c = Self {
            api: Api::new(&ca),
            ca,
            primary,
            _backup: backup,
            cp_dir,
            cp: Some(cp),
            p_cp,
            b_cp,
            to_b,
            to_p,
            p,
            b,
            owner,
        };
        c.wait_standing(&c.p.url, "primary", 1, lease).await;
        c.wait_standing(&c.b.url, "backup", 1, "none").await;
        c
    }

    /// Waits until `base` reports `role`, `epoch` and a lease in `lease` state.
    async fn wait_standing(&self, base: &str, role: &str, epoch: u64, lease: &str) -> Value {
        wait_for(
            Duration::from_secs(20),
            &format!("{base} to be {role} at epoch {epoch} with lease {lease}"),
            || async {
                let h = self.api.health(base).await;
                let r = &h["replication"];
                (h["role"] == role && r["epoch"] == epoch && r["lease"]["state"] == lease)
                    .then(|| h.clone())
                    .ok_or(h)
            },
        )
        .await
    }

    fn logs(&self) -> String {
        format!(
            "--- primary ---\n{}\n--- backup ---\n{}\n--- control plane ---\n{}",
            self.p.stderr(),
            self.b.stderr(),
            self.cp
                .as_ref()
                .map(|c| c.process.stderr())
                .unwrap_or_default()
        )
    }

    /// Started, with clients writing to both POPs and the primary acknowledging theirs.
    async fn writing(failover: &str) -> (Self, Writers) {
        let c = Self::start(failover).await;
        let writers = Writers::start(&c);
        writers.wait_acked(PRIMARY_ID, 10).await;
        (c, writers)
    }

    /// The links of the primary (to the control plane and both ways to the backup) forward
    /// or drop; clients reach it either way.
    fn primary_links(&self, mode: Mode) {
        for link in [&self.p_cp, &self.to_b, &self.to_p] {
            link.set_mode(mode);
        }
    }

    /// SIGKILLs the control plane; returns when it died.
    fn kill_control_plane(&mut self) -> Instant {
        let mut cp = self.cp.take().expect("control plane running");
        cp.process.kill9();
        Instant::now()
    }
}

/// Clients writing to both POPs, every 40 ms each, until stopped.
struct Writers {
    log: Arc<Mutex<Vec<Write>>>,
    /// One per POP, with the POP it writes to.
    stops: Vec<(&'static str, Arc<AtomicBool>)>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Writers {
    fn start(c: &Cluster) -> Self {
        let log = Arc::new(Mutex::new(Vec::new()));
        let (mut stops, mut tasks) = (Vec::new(), Vec::new());
        for (pop, base) in [(PRIMARY_ID, c.p.url.clone()), (BACKUP_ID, c.b.url.clone())] {
            let stop = Arc::new(AtomicBool::new(false));
            stops.push((pop, stop.clone()));
            let (api, owner, log) = (c.api.clone(), c.owner.clone(), log.clone());
            tasks.push(tokio::spawn(async move {
                let mut i = 0;
                while !stop.load(Ordering::SeqCst) {
                    i += 1;
                    let body = entry(&format!("{pop}-{i}"));
                    let sent = Instant::now();
                    let url = format!("{base}/v1/entries");
                    let call = api.try_call(Method::POST, &url, &owner, Some(&body));
                    if let Ok(Ok((status, v))) =
                        tokio::time::timeout(Duration::from_secs(5), call).await
                    {
                        log.lock().unwrap().push(Write {
                            pop,
                            sent,
                            answered: Instant::now(),
                            status,
                            code: v["error"]["code"].as_str().unwrap_or("").to_owned(),
                            id: v["id"].as_str().map(str::to_owned),
                        });
                    }
                    tokio::time::sleep(Duration::from_millis(40)).await;
                }
            }));
        }
        Self { log, stops, tasks }
    }

    fn snapshot(&self) -> Vec<Write> {
        self.log.lock().unwrap().clone()
    }

    fn acked(&self, pop: &str) -> Vec<Write> {
        self.snapshot()
            .into_iter()
            .filter(|w| w.pop == pop && w.status == 201)
            .collect()
    }

    /// Waits (bounded) until `pop` has acknowledged at least `n` writes.
    async fn wait_acked(&self, pop: &str, n: usize) {
        wait_for(
            Duration::from_secs(20),
            &format!("{n} acknowledged writes on {pop}"),
            || async {
                let have = self.acked(pop).len();
                (have >= n).then_some(()).ok_or(have)
            },
        )
        .await;
    }

    /// Clients stop writing to `pop` (those in flight finish).
    fn stop_writing_to(&self, pop: &str) {
        for (_, stop) in self.stops.iter().filter(|(p, _)| *p == pop) {
            stop.store(true, Ordering::SeqCst);
        }
    }

    async fn stop(self) -> Vec<Write> {
        for (_, stop) in &self.stops {
            stop.store(true, Ordering::SeqCst);
        }
        for t in self.tasks {
            let _ = t.await;
        }
        self.log.lock().unwrap().clone()
    }
}

/// Every acknowledgement lies between its request's sending and its answer: if one POP's
/// last answer came before the other's first request was sent, no moment had both
/// acknowledging. Returns the gap.
fn assert_no_overlap(
    log: &[Write],
    first: &str,
    then: &str,
    logs: &dyn Fn() -> String,
) -> Duration {
    let last_first = last_ack(log, first);
    let first_then = log
        .iter()
        .filter(|w| w.pop == then && w.status == 201)
        .map(|w| w.sent)
        .min()
        .expect("the second primary acknowledged writes");
    assert!(
        last_first < first_then,
        "two POPs acknowledged writes at once: {first}'s last acknowledgement was answered {:?} after {then}'s first was sent\n{}",
        last_first - first_then,
        logs()
    );
    // Every write either POP acknowledged was answered 201 only; the others were refused.
    for w in log.iter().filter(|w| w.status != 201) {
        assert!(
            ["primary_lease_expired", "read_only_backup"].contains(&w.code.as_str()),
            "unexpected refusal {w:?}"
        );
    }
    first_then - last_first
}

/// When `pop`'s last acknowledged write was answered.
fn last_ack(log: &[Write], pop: &str) -> Instant {
    log.iter()
        .filter(|w| w.pop == pop && w.status == 201)
        .map(|w| w.answered)
        .max()
        .unwrap_or_else(|| panic!("{pop} acknowledged no write"))
}

/// Entry rows a POP's database owes its backup (read-only, beside the running POP).
fn owed_entries(db: &std::path::Path) -> usize {
    let conn =
        rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .expect("open the database");
    conn.busy_timeout(Duration::from_secs(5))
        .expect("busy timeout");
    conn.query_row(
        "SELECT count(*) FROM entries WHERE replicated_at IS NULL OR replicated_at < updated_at",
        [],
        |r| r.get::<_, i64>(0),
    )
    .expect("count owed rows") as usize
}

#[tokio::test(flavor = "multi_thread")]
async fn a_partitioned_primary_stops_acknowledging_before_its_backup_is_promoted() {
    let t_start = Instant::now();
    let (c, writers) = Cluster::writing(FAILOVER).await;
    assert!(
        writers.acked(BACKUP_ID).is_empty(),
        "a backup acknowledged a write"
    );

    // Cut the primary off from the control plane and from its backup; clients still reach it.
    let cut = Instant::now();
    c.primary_links(Mode::Drop);
    c.wait_standing(&c.b.url, "primary", 2, "live").await;
    let promoted = cut.elapsed();
    // Clients keep writing to the new primary for some seconds: each write wakes its
    // replication loop, and each push to the cut-off old primary fails. Then it is left idle
    // long enough for its last push to fail (these POPs try a push 3 times, within 0.5 s).
    writers.wait_acked(BACKUP_ID, 50).await;
    writers.stop_writing_to(BACKUP_ID);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let log = writers.snapshot();
    let gap = assert_no_overlap(&log, PRIMARY_ID, BACKUP_ID, &|| c.logs());
    // The cut-off primary kept taking writes, committed them, and refused to acknowledge them.
    let refused_after_cut = log
        .iter()
        .filter(|w| w.pop == PRIMARY_ID && w.sent > cut && w.code == "primary_lease_expired")
        .count();
    assert!(refused_after_cut > 0, "{log:?}");
    let last = last_ack(&log, PRIMARY_ID) - cut;
    assert!(
        last < Duration::from_millis(3000),
        "the primary acknowledged writes {last:?} after it was cut off (lease 1 s)"
    );

    // Heal: the old primary hears it was demoted, and takes the new primary's writes.
    c.primary_links(Mode::Forward);
    let healed = Instant::now();
    c.wait_standing(&c.p.url, "backup", 2, "none").await;
    let demoted = healed.elapsed();
    let log = writers.stop().await;
    assert_no_overlap(&log, PRIMARY_ID, BACKUP_ID, &|| c.logs());
    let new_writes: HashSet<String> = log
        .iter()
        .filter(|w| w.pop == BACKUP_ID && w.status == 201)
        .filter_map(|w| w.id.clone())
        .collect();
    // Nothing was written on the new primary since before the heal, so no commit wakes its
    // replication loop: its retry timer must bring the healed link back within seconds
    // (it backs off to at most 5 s), however many pushes failed while it was cut.
    c.api
        .wait_has(&c.p.url, &c.owner, &new_writes, HEALED_WITHIN)
        .await;
    eprintln!(
        "partition: promoted {promoted:?} after the cut; the cut-off primary's last acknowledgement {last:?} after the cut, the new primary's first {gap:?} later; healed: demoted in {demoted:?}, the new writes all on the old primary in {:?}; {:?} in all",
        healed.elapsed(),
        t_start.elapsed()
    );
    // The writes it kept but did not acknowledge are still in its database, owed (they would
    // replicate if it were promoted again), and not on the new primary.
    let owed = owed_entries(&c.primary.data.join("vault.db"));
    assert!(
        owed >= refused_after_cut,
        "{owed} owed rows on the old primary, {refused_after_cut} writes refused after the cut"
    );
    // Once demoted, it acknowledges nothing.
    let (st, v) = c
        .api
        .call(
            Method::POST,
            &format!("{}/v1/entries", c.p.url),
            &c.owner,
            Some(&entry("after-heal")),
        )
        .await;
    assert_eq!(
        (st, v["error"]["code"].as_str()),
        (503, Some("read_only_backup")),
        "{v}"
    );

    // Pushes carry the sender's epoch and protocol version: the old primary, now a backup at
    // epoch 2, refuses a push from epoch 1 and one in a protocol version it does not know.
    let peer = client(&c.ca, Some(&c.ca.leaf(BACKUP_ID)));
    let push = |body: Value| {
        let peer = peer.clone();
        let url = format!("{}/v1/replication/batch", c.p.url);
        let token = c.primary.token.clone();
        async move {
            let r = peer
                .post(url)
                .bearer_auth(token)
                .json(&body)
                .send()
                .await
                .expect("push");
            let st = r.status().as_u16();
            (st, r.json::<Value>().await.unwrap_or(Value::Null))
        }
    };
    let (st, v) = push(json!({"origin": BACKUP_ID, "items": [], "epoch": 1, "protocol": 1})).await;
    assert_eq!(
        (st, v["error"]["code"].as_str()),
        (409, Some("stale_epoch")),
        "{v}"
    );
    let (st, v) = push(json!({"origin": BACKUP_ID, "items": [], "epoch": 2, "protocol": 99})).await;
    assert_eq!(st, 400, "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap_or("")
            .contains("protocol version 99"),
        "{v}"
    );
    let (st, v) = push(json!({"origin": BACKUP_ID, "items": [], "epoch": 2, "protocol": 1})).await;
    assert_eq!(st, 200, "{v}");
}

#[tokio::test(flavor = "multi_thread")]
async fn when_the_control_plane_dies_roles_stay_and_the_primary_serves_only_while_its_lease_holds()
{
    let (mut c, writers) = Cluster::writing(FAILOVER).await;
    let died = c.kill_control_plane();
    c.wait_standing(&c.p.url, "primary", 1, "expired").await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let log = writers.snapshot();
    let last = last_ack(&log, PRIMARY_ID);
    assert!(
        last - died < Duration::from_millis(3000),
        "the primary acknowledged writes {:?} after the control plane died (lease 1 s)",
        last - died
    );
    assert!(
        log.iter()
            .any(|w| w.pop == PRIMARY_ID && w.sent > last && w.code == "primary_lease_expired"),
        "{log:?}"
    );
    assert!(
        writers.acked(BACKUP_ID).is_empty(),
        "the backup acknowledged a write"
    );
    // Both keep their roles.
    assert_eq!(c.api.health(&c.b.url).await["role"], "backup");

    // The control plane comes back (same data dir, a new port behind the same proxies): the
    // primary is primary again at the same epoch, and acknowledges again.
    let cp = c.cp_dir.start();
    c.p_cp.set_target(cp.process.addr());
    c.b_cp.set_target(cp.process.addr());
    c.cp = Some(cp);
    c.wait_standing(&c.p.url, "primary", 1, "live").await;
    let before = writers.acked(PRIMARY_ID).len();
    writers.wait_acked(PRIMARY_ID, before + 6).await;
    let log = writers.stop().await;
    assert!(
        !log.iter().any(|w| w.pop == BACKUP_ID && w.status == 201),
        "the backup acknowledged a write"
    );
    assert_eq!(c.api.health(&c.b.url).await["role"], "backup");
}

/// Manual mode with `lease_seconds: 0`: the operator chose availability. The primary holds no
/// lease (`unlimited`) and keeps acknowledging writes after the control plane is gone.
#[tokio::test(flavor = "multi_thread")]
async fn without_a_lease_a_primary_keeps_acknowledging_when_the_control_plane_dies() {
    const NO_LEASE: &str = "failover:\n  mode: manual\n  heartbeat_interval_ms: 300\n  missed_heartbeats: 6\n  lease_seconds: 0\n";
    let mut c = Cluster::start_with(NO_LEASE, "unlimited").await;
    c.kill_control_plane();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let h = c.api.health(&c.p.url).await;
    assert_eq!(h["replication"]["lease"]["state"], "unlimited", "{h}");
    c.api.create(&c.p.url, &c.owner, &entry("no-lease")).await;
}
