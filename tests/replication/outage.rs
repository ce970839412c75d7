//! Failures between and of the POPs: backup down, primary SIGKILLed under load, network
//! partition (dropped, held, and acknowledgements lost), each converging afterwards.

use crate::helpers::*;
use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Writes `n` entries on the primary, each answered 201 within `limit`.
async fn write_n(
    api: &Api,
    base: &str,
    token: &str,
    prefix: &str,
    n: usize,
    limit: Duration,
) -> HashSet<String> {
    let mut ids = HashSet::new();
    for i in 0..n {
        let t0 = Instant::now();
        let id = api
            .create(base, token, &entry(&format!("{prefix}-{i}")))
            .await;
        let took = t0.elapsed();
        assert!(
            took <= limit,
            "write {prefix}-{i} took {took:?} (> {limit:?})"
        );
        ids.insert(id);
    }
    ids
}

/// Waits until the primary's /healthz shows replication failing with a backlog.
async fn wait_failing(api: &Api, primary: &str) -> serde_json::Value {
    wait_for(
        Duration::from_secs(20),
        "failing_since, last_error and a backlog on the primary",
        || async {
            let h = api.health(primary).await;
            let r = &h["replication"];
            (r["backlog"].as_i64() > Some(0)
                && r["failing_since"].is_string()
                && r["last_error"].is_string())
            .then_some(h.clone())
            .ok_or(h)
        },
    )
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn backup_down_then_back_converges() {
    let mut pair = Pair::new(Opts::default());
    let api = pair.api.clone();
    let p = pair.purl();
    let owner = pair.owner();
    let mut ids = write_n(&api, &p, &owner, "before", 5, Duration::from_secs(2)).await;
    pair.wait_backup_has(&ids, CONVERGE).await;

    pair.b.as_mut().expect("backup").stop(STOP_WITHIN);
    // Writes are unaffected by the backup being gone.
    let t0 = Instant::now();
    ids.extend(write_n(&api, &p, &owner, "during", 20, Duration::from_secs(2)).await);
    eprintln!("backup down: 20 writes took {:?}", t0.elapsed());
    let h = wait_failing(&api, &p).await;
    eprintln!(
        "backup down: primary healthz replication = {}",
        h["replication"]
    );
    assert!(
        pair.p().stderr().contains("replication_failed"),
        "{}",
        pair.logs()
    );
    ids.extend(write_n(&api, &p, &owner, "late", 5, Duration::from_secs(2)).await);

    let up = Instant::now();
    pair.start_backup();
    let took = pair.wait_backup_has(&ids, Duration::from_secs(60)).await;
    let h = api.wait_caught_up(&p, Duration::from_secs(20)).await;
    eprintln!(
        "backup down: converged {took:?} after the backup restarted ({:?} to backlog 0); replication = {}",
        up.elapsed(),
        h["replication"]
    );
    assert_eq!(
        api.ids(&pair.burl(), &pair.backup.owner).await.len(),
        ids.len()
    );
    assert!(
        pair.p()
            .stderr()
            .contains("replication to the backup recovered"),
        "{}",
        pair.logs()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn primary_sigkill_mid_load_loses_no_acknowledged_write() {
    let mut pair = Pair::new(Opts::default());
    let api = pair.api.clone();
    let p = pair.purl();
    let owner = pair.owner();
    let acked = Arc::new(Mutex::new(HashSet::<String>::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let mut writers = Vec::new();
    for w in 0..4 {
        let (api, p, owner, acked, stop) = (
            api.clone(),
            p.clone(),
            owner.clone(),
            acked.clone(),
            stop.clone(),
        );
        writers.push(tokio::spawn(async move {
            let mut i = 0;
            while !stop.load(Ordering::SeqCst) {
                let body = entry(&format!("w{w}-{i}"));
                match api
                    .try_call(
                        reqwest::Method::POST,
                        &format!("{p}/v1/entries"),
                        &owner,
                        Some(&body),
                    )
                    .await
                {
                    Ok((201, v)) => {
                        acked
                            .lock()
                            .unwrap()
                            .insert(v["id"].as_str().expect("id").to_owned());
                    }
                    Ok((st, v)) => panic!("write answered {st}: {v}"),
                    Err(_) => break, // the primary is gone
                }
                i += 1;
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    pair.p.as_mut().expect("primary").kill9();
    stop.store(true, Ordering::SeqCst);
    for w in writers {
        tokio::time::timeout(Duration::from_secs(15), w)
            .await
            .expect("writer finished")
            .expect("writer did not panic");
    }
    let acked = acked.lock().unwrap().clone();
    assert!(
        acked.len() >= 10,
        "only {} writes acknowledged before the kill",
        acked.len()
    );
    let on_backup_at_kill = api.ids(&pair.burl(), &pair.backup.owner).await.len();

    pair.start_primary();
    let p = pair.purl();
    let took = pair.wait_backup_has(&acked, Duration::from_secs(60)).await;
    // The restarted primary kept every acknowledged write too.
    let on_primary: HashSet<String> = api.ids(&p, &owner).await.into_iter().collect();
    assert!(
        acked.is_subset(&on_primary),
        "the primary lost acknowledged writes"
    );
    api.wait_caught_up(&p, Duration::from_secs(20)).await;
    let on_backup = api.ids(&pair.burl(), &pair.backup.owner).await;
    assert_eq!(
        on_backup.len(),
        on_primary.len(),
        "backup and primary differ"
    );
    eprintln!(
        "sigkill: {} acknowledged, {on_backup_at_kill} on the backup at the kill, all there {took:?} after restart",
        acked.len()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn partition_heals_without_duplicates() {
    let pair = Pair::new(Opts::default());
    let api = pair.api.clone();
    let (p, b) = (pair.purl(), pair.burl());
    let owner = pair.owner();
    let mut ids = write_n(&api, &p, &owner, "a", 10, Duration::from_secs(2)).await;
    pair.wait_backup_has(&ids, CONVERGE).await;

    // Dropped: connections refused and cut.
    pair.proxy.set_mode(Mode::Drop);
    ids.extend(write_n(&api, &p, &owner, "drop", 20, Duration::from_secs(2)).await);
    wait_failing(&api, &p).await;
    pair.proxy.set_mode(Mode::Forward);
    let healed = Instant::now();
    pair.wait_backup_has(&ids, Duration::from_secs(40)).await;
    eprintln!(
        "partition (drop): converged {:?} after healing",
        healed.elapsed()
    );

    // Held: connections accepted and never answered; the push times out and is retried.
    pair.proxy.set_mode(Mode::Hold);
    ids.extend(write_n(&api, &p, &owner, "hold", 10, Duration::from_secs(2)).await);
    tokio::time::sleep(Duration::from_secs(2)).await;
    pair.proxy.set_mode(Mode::Forward);
    let healed = Instant::now();
    pair.wait_backup_has(&ids, Duration::from_secs(40)).await;
    eprintln!(
        "partition (hold): converged {:?} after healing",
        healed.elapsed()
    );

    api.wait_caught_up(&p, Duration::from_secs(20)).await;
    let on_primary = api.ids(&p, &owner).await;
    let on_backup = api.ids(&b, &pair.backup.owner).await;
    let unique: HashSet<&String> = on_backup.iter().collect();
    assert_eq!(unique.len(), on_backup.len(), "duplicate ids on the backup");
    assert_eq!(on_backup.len(), on_primary.len(), "entry counts differ");
    assert_eq!(on_backup.len(), ids.len());
    assert_eq!(
        on_primary.iter().collect::<HashSet<_>>(),
        unique,
        "different entries on primary and backup"
    );
}

/// The backup applies a batch but its acknowledgement never arrives: the primary resends,
/// and the backup skips what it already holds.
#[tokio::test(flavor = "multi_thread")]
async fn lost_acknowledgement_is_resent_and_skipped() {
    let pair = Pair::new(Opts::debug_backup());
    let api = pair.api.clone();
    let (p, b) = (pair.purl(), pair.burl());
    let owner = pair.owner();
    let first = write_n(&api, &p, &owner, "warm", 1, Duration::from_secs(2)).await;
    pair.wait_backup_has(&first, CONVERGE).await;
    api.wait_caught_up(&p, Duration::from_secs(10)).await;

    // The pooled connection stays open; the next push reaches the backup, its reply does not.
    pair.proxy.lose_replies(true);
    let ids = write_n(&api, &p, &owner, "lost", 1, Duration::from_secs(2)).await;
    pair.wait_backup_has(&ids, CONVERGE).await;
    let h = api.health(&p).await;
    assert!(
        h["replication"]["backlog"].as_i64() > Some(0),
        "acknowledged without a reply? {h}"
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    pair.proxy.lose_replies(false);
    let healed = Instant::now();
    api.wait_caught_up(&p, Duration::from_secs(40)).await;
    eprintln!(
        "lost ack: caught up {:?} after replies flowed again",
        healed.elapsed()
    );

    wait_for(
        Duration::from_secs(5),
        "a resent batch logged as skipped",
        || async {
            applied_batches(&pair.b().stderr())
                .contains(&(0, 1))
                .then_some(())
                .ok_or_else(|| pair.logs())
        },
    )
    .await;
    let all = api.ids(&b, &pair.backup.owner).await;
    assert_eq!(all.len(), 2, "{all:?}");
}

/// A primary restarted with nothing owed reports itself caught up, not behind.
#[tokio::test(flavor = "multi_thread")]
async fn restarted_primary_reports_caught_up() {
    let mut pair = Pair::new(Opts::default());
    let api = pair.api.clone();
    let owner = pair.owner();
    let ids = write_n(&api, &pair.purl(), &owner, "x", 5, Duration::from_secs(2)).await;
    pair.wait_backup_has(&ids, CONVERGE).await;
    let before = api
        .wait_caught_up(&pair.purl(), Duration::from_secs(10))
        .await;
    pair.p.as_mut().expect("primary").stop(STOP_WITHIN);
    pair.start_primary();
    let h = api
        .wait_caught_up(&pair.purl(), Duration::from_secs(10))
        .await;
    assert_eq!(
        h["replication"]["committed_version"], before["replication"]["committed_version"],
        "{h}"
    );
}
