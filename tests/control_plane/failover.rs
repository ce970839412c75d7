//! Failover driven by heartbeats from POP stand-ins: manual promotion waits for the old primary
//! to step down (or for its lease and a margin to run out), automatic failover promotes a
//! close-enough backup of a silent primary, and no moment has two POPs holding a live primary
//! lease.

use crate::helpers::*;
use serde_json::Value;
use std::time::{Duration, Instant};

const A: &str = "calgary-01";
const B: &str = "zurich-01";

/// A heartbeat answer with when its heartbeat was sent and when the answer arrived: a POP
/// counts its lease from the first, and may act on the answer from the second.
struct Heard {
    pop: &'static str,
    sent: Instant,
    received: Instant,
    answer: Value,
}

/// Checks a log of answers: whenever a POP hears `primary`, every other POP's last primary
/// lease (counted from when that POP sent its heartbeat, as a POP counts it) has run out,
/// unless the other POP has since been told `backup` and heard it.
fn never_two_primaries(log: &[Heard]) {
    for (i, h) in log.iter().enumerate() {
        if h.answer["role"] != "primary" {
            continue;
        }
        for other in log[..i].iter().filter(|o| o.pop != h.pop) {
            let demoted_after = log[..i]
                .iter()
                .any(|l| l.pop == other.pop && l.sent > other.sent && l.answer["role"] == "backup");
            if other.answer["role"] == "primary" && !demoted_after {
                let lease = Duration::from_millis(other.answer["lease_ms"].as_u64().unwrap());
                assert!(
                    other.sent + lease <= h.received,
                    "{} told primary while {}'s lease had {:?} left",
                    h.pop,
                    other.pop,
                    (other.sent + lease) - h.received
                );
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn manual_promotion_waits_for_the_old_primary_to_step_down() {
    let d = CpDir::new(&[A, B], MANUAL);
    let cp = d.start();
    assert_eq!(
        cp.beat(&d, A, "primary", None, primary_repl(0, 10)).await["role"],
        "primary"
    );
    assert_eq!(
        cp.beat(&d, B, "backup", None, backup_repl(10)).await["role"],
        "backup"
    );

    let (st, v) = cp.admin_post(&format!("/v1/pops/{B}/promote")).await;
    assert_eq!(st, 202, "{v}");
    assert_eq!(v["failover"]["promotion"]["to"], B);
    assert_eq!(v["failover"]["promotion"]["from"], A);
    assert_eq!(v["failover"]["epoch"], 2);
    let (st, v) = cp.admin_post(&format!("/v1/pops/{A}/promote")).await;
    assert_eq!((st, code(&v)), (409, "promotion_in_progress"), "{v}");

    // The backup keeps hearing backup at the old epoch; the old primary is told to step down.
    let b = cp.beat(&d, B, "backup", Some(1), backup_repl(10)).await;
    assert_eq!(
        (b["role"].as_str(), b["epoch"].as_u64()),
        (Some("backup"), Some(1))
    );
    let a = cp
        .beat(&d, A, "primary", Some(1), primary_repl(0, 10))
        .await;
    assert_eq!(
        (
            a["role"].as_str(),
            a["epoch"].as_u64(),
            a["lease_ms"].as_u64()
        ),
        (Some("backup"), Some(2), Some(0))
    );
    assert_eq!(cp.pop(A).await["demoting"], true);
    assert_eq!(cp.pop(B).await["promoting"], true);
    let b = cp.beat(&d, B, "backup", Some(1), backup_repl(10)).await;
    assert_eq!(
        b["role"], "backup",
        "promoted before the old primary stepped down"
    );

    // The old primary acknowledges: the new one is told at its next heartbeat.
    cp.beat(&d, A, "backup", Some(2), backup_repl(10)).await;
    let b = cp.beat(&d, B, "backup", Some(1), backup_repl(10)).await;
    assert_eq!(
        (
            b["role"].as_str(),
            b["epoch"].as_u64(),
            b["lease_ms"].as_u64()
        ),
        (Some("primary"), Some(2), Some(1000))
    );
    let pops = cp.admin_get("/v1/pops").await;
    assert_eq!(pops["failover"]["primary"], B);
    assert_eq!(pops["failover"]["promotion"], Value::Null);
    assert_eq!(pops["pops"][0]["role"], "backup");
    assert_eq!(pops["pops"][1]["role"], "primary");
    // The old primary, claiming primary again, is told backup.
    assert_eq!(
        cp.beat(&d, A, "primary", Some(1), primary_repl(0, 10))
            .await["role"],
        "backup"
    );
    let (st, v) = cp.admin_post(&format!("/v1/pops/{B}/promote")).await;
    assert_eq!((st, code(&v)), (409, "already_primary"), "{v}");
    let (st, v) = cp.admin_post("/v1/pops/nowhere-01/promote").await;
    assert_eq!((st, code(&v)), (404, "pop_not_found"), "{v}");
    let done = cp.admin_get("/v1/alerts?type=promotion_completed").await;
    assert_eq!(done["alerts"][0]["pop_id"], B, "{done}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_silent_primary_is_replaced_only_after_its_lease_and_a_margin() {
    let d = CpDir::new(&[A, B], MANUAL);
    let cp = d.start();
    let mut log = Vec::new();
    let sent = Instant::now();
    let answer = cp.beat(&d, A, "primary", None, primary_repl(0, 10)).await;
    log.push(Heard {
        pop: A,
        sent,
        received: Instant::now(),
        answer,
    });
    cp.admin_post(&format!("/v1/pops/{B}/promote")).await;
    // A is gone (never heard again). B heartbeats until it is primary.
    let promoted = loop {
        let sent = Instant::now();
        let answer = cp.beat(&d, B, "backup", Some(1), backup_repl(10)).await;
        let primary = answer["role"] == "primary";
        let received = Instant::now();
        log.push(Heard {
            pop: B,
            sent,
            received,
            answer,
        });
        if primary {
            break received;
        }
        assert!(sent.elapsed() < Duration::from_secs(10), "never promoted");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    never_two_primaries(&log);
    // The lease is 1 s and the margin 1 s (the answer arrives after the control plane decided).
    let waited = promoted - log[0].sent;
    assert!(
        waited >= Duration::from_secs(2),
        "promoted after {waited:?}"
    );
    assert!(
        waited < Duration::from_secs(6),
        "promoted only after {waited:?}"
    );
}

/// Both POPs heartbeat for a while; then the primary goes silent and the backup keeps
/// heartbeating until it is promoted (or `give_up` passes). Returns the log.
async fn silence_the_primary(
    cp: &Cp,
    d: &CpDir,
    backup_applied: i64,
    give_up: Duration,
) -> Vec<Heard> {
    let mut log = Vec::new();
    for _ in 0..6 {
        for (pop, role, repl) in [
            (A, "primary", primary_repl(0, 100)),
            (B, "backup", backup_repl(backup_applied)),
        ] {
            let sent = Instant::now();
            let answer = cp.beat(d, pop, role, Some(1), repl).await;
            log.push(Heard {
                pop,
                sent,
                received: Instant::now(),
                answer,
            });
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let silent_from = Instant::now();
    while silent_from.elapsed() < give_up {
        let sent = Instant::now();
        let answer = cp
            .beat(d, B, "backup", Some(1), backup_repl(backup_applied))
            .await;
        let primary = answer["role"] == "primary";
        log.push(Heard {
            pop: B,
            sent,
            received: Instant::now(),
            answer,
        });
        if primary {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    log
}

#[tokio::test(flavor = "multi_thread")]
async fn automatic_failover_promotes_the_backup_of_a_silent_primary_and_never_two_primaries() {
    let d = CpDir::new(&[A, B], AUTOMATIC);
    let cp = d.start();
    let log = silence_the_primary(&cp, &d, 95, Duration::from_secs(10)).await;
    never_two_primaries(&log);
    let last_a = log.iter().rev().find(|h| h.pop == A).unwrap();
    let first_b = log
        .iter()
        .find(|h| h.pop == B && h.answer["role"] == "primary")
        .expect("B promoted");
    assert_eq!(first_b.answer["epoch"], 2);
    // Not before A missed 4 intervals of 500 ms.
    let waited = first_b.received - last_a.sent;
    assert!(
        waited >= Duration::from_secs(2),
        "promoted {waited:?} after A's last heartbeat"
    );
    // A comes back: it is told to be a backup at the new epoch, and nothing else changes.
    let a = cp
        .beat(&d, A, "primary", Some(1), primary_repl(0, 100))
        .await;
    assert_eq!(
        (a["role"].as_str(), a["epoch"].as_u64()),
        (Some("backup"), Some(2))
    );
    assert_eq!(
        cp.beat(&d, B, "primary", Some(2), primary_repl(0, 100))
            .await["role"],
        "primary"
    );
    let started = cp.admin_get("/v1/alerts?type=promotion_started").await;
    assert_eq!(started["alerts"][0]["pop_id"], B, "{started}");
}

#[tokio::test(flavor = "multi_thread")]
async fn automatic_failover_leaves_a_backup_too_far_behind_alone() {
    let d = CpDir::new(&[A, B], AUTOMATIC);
    let cp = d.start();
    // 100 committed on A, 50 applied on B: 50 versions behind, max_lag_versions is 10.
    let log = silence_the_primary(&cp, &d, 50, Duration::from_secs(4)).await;
    assert!(
        log.iter()
            .all(|h| h.pop == A || h.answer["role"] == "backup")
    );
    let pops = cp.admin_get("/v1/pops").await;
    assert_eq!(pops["failover"]["primary"], A);
    assert_eq!(pops["pops"][0]["stale"], true);
    assert_eq!(pops["pops"][1]["replication"]["behind_versions"], 50);
}
