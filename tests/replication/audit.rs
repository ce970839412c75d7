//! The audit trail across POPs: each keeps its own chain, the primary's events arrive on the
//! backup whole and in order (hashes as the primary made them), `clavitor audit verify` on the
//! backup walks both chains, and a forged event pushed to the backup is refused.

use crate::helpers::*;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Value, json};
use std::collections::HashSet;
use std::path::Path;
use std::time::{Duration, Instant};

fn open(db: &Path) -> rusqlite::Connection {
    let c = rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
        .expect("open a POP's database");
    c.busy_timeout(Duration::from_secs(5)).unwrap();
    c
}

/// The last of the primary's events the backup holds, and the last head it holds for it.
fn backup_holds(db: &Path) -> (i64, i64) {
    let c = open(db);
    let seq: Option<i64> = c
        .query_row(
            "SELECT max(seq) FROM audit_peer WHERE origin = ?1",
            [PRIMARY_ID],
            |r| r.get(0),
        )
        .unwrap_or(None);
    let head: Option<i64> = c
        .query_row(
            "SELECT seq FROM audit_peer_head WHERE origin = ?1",
            [PRIMARY_ID],
            |r| r.get(0),
        )
        .unwrap_or(None);
    (seq.unwrap_or(0), head.unwrap_or(0))
}

async fn head_seq(api: &Api, base: &str, token: &str) -> i64 {
    let (st, v) = api
        .call(
            reqwest::Method::GET,
            &format!("{base}/v1/audit/head"),
            token,
            None,
        )
        .await;
    assert_eq!(st, 200, "{v}");
    v["head"]
        .as_str()
        .unwrap()
        .split(':')
        .nth(2)
        .unwrap()
        .parse()
        .unwrap()
}

fn verify(data: &Path) -> crate::common::process::Output {
    clavitor(&["audit", "verify", "--data-dir", data.to_str().unwrap()])
}

#[tokio::test(flavor = "multi_thread")]
async fn the_primarys_trail_replicates_and_verifies_on_the_backup() {
    let mut pair = Pair::new(Opts::default());
    let (p, b, owner) = (pair.purl(), pair.burl(), pair.owner());
    let mut ids = HashSet::new();
    for i in 0..5 {
        let id = pair.api.create(&p, &owner, &entry(&format!("a{i}"))).await;
        let (st, _) = pair.api.field(&p, &owner, &id, "password").await;
        assert_eq!(st, 200);
        ids.insert(id);
    }
    pair.wait_backup_has(&ids, CONVERGE).await;
    let bdb = pair.backup.data.join("vault.db");
    let t0 = Instant::now();
    // The head is read again each time: the reads' events commit up to 100 ms after their
    // answers, so the primary's head may still move after the entries arrived.
    let head = loop {
        let head = head_seq(&pair.api, &p, &owner).await;
        let held = backup_holds(&bdb);
        if held == (head, head) {
            break head;
        }
        assert!(
            t0.elapsed() < CONVERGE,
            "the backup holds {held:?} of the primary's trail, whose head is {head}\n{}",
            pair.logs()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    // The events are the primary's own, byte for byte.
    let pdb = pair.primary.data.join("vault.db");
    let theirs: Vec<(i64, Vec<u8>)> = open(&pdb)
        .prepare("SELECT seq, hash FROM audit ORDER BY seq")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let copied: Vec<(i64, Vec<u8>)> = open(&bdb)
        .prepare("SELECT seq, hash FROM audit_peer WHERE origin = ?1 ORDER BY seq")
        .unwrap()
        .query_map([PRIMARY_ID], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(copied, theirs[..copied.len()]);

    // The backup's own chain says what it applied, from whom.
    let (st, page) = pair
        .api
        .call(
            reqwest::Method::GET,
            &format!("{b}/v1/audit?action=replication.apply&limit=1000"),
            &owner,
            None,
        )
        .await;
    assert_eq!(st, 200, "{page}");
    let applied = page["events"].as_array().unwrap();
    assert!(!applied.is_empty(), "{page}");
    for e in applied {
        assert_eq!(e["actor"]["kind"], "pop", "{e}");
        assert_eq!(e["actor"]["id"], PRIMARY_ID, "{e}");
    }

    // Offline, the backup's files verify: its own chain and the primary's.
    pair.b.take().unwrap().stop(STOP_WITHIN);
    pair.p.take().unwrap().stop(STOP_WITHIN);
    let out = verify(&pair.backup.data);
    assert_eq!(out.code(), Some(0), "{out}");
    assert!(
        out.stdout
            .contains(&format!("POP {PRIMARY_ID}: {head} events")),
        "{out}"
    );
    assert_eq!(verify(&pair.primary.data).code(), Some(0));

    // An edit of the copy is caught, naming the chain and the event.
    rusqlite::Connection::open(&bdb)
        .unwrap()
        .execute(
            "UPDATE audit_peer SET target = 'forged' WHERE origin = ?1 AND seq = 2",
            [PRIMARY_ID],
        )
        .unwrap();
    let out = verify(&pair.backup.data);
    assert_eq!(out.code(), Some(1), "{out}");
    assert!(
        out.stderr
            .contains(&format!("POP {PRIMARY_ID} chain, event 2")),
        "{out}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_forged_audit_event_is_refused_before_anything_is_applied() {
    let pair = Pair::new(Opts::default());
    let id = pair
        .api
        .create(&pair.purl(), &pair.owner(), &entry("kept"))
        .await;
    pair.wait_backup_has(&HashSet::from([id]), CONVERGE).await;
    // Settled: the backup holds the primary's whole trail, and the link is cut, so nothing
    // but this test's batch reaches it.
    let head = head_seq(&pair.api, &pair.purl(), &pair.owner()).await;
    let bdb = pair.backup.data.join("vault.db");
    let t0 = Instant::now();
    while backup_holds(&bdb) != (head, head) {
        assert!(t0.elapsed() < CONVERGE, "{}", pair.logs());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    pair.proxy.set_mode(Mode::Drop);
    let c = client(&pair.ca, Some(&pair.ca.leaf(PRIMARY_ID)));
    let event = |seq: i64, prev: &[u8], hash: &[u8]| {
        json!({
            "seq": seq, "time": 1_800_000_000_000i64, "actor_kind": "owner",
            "actor_id": "someone", "action": "entry.delete", "target": "x", "outcome": "ok",
            "ip": null, "request_id": null, "details": [],
            "prev_hash": STANDARD.encode(prev), "hash": STANDARD.encode(hash),
        })
    };
    let before = backup_holds(&bdb).0;
    // A hash that does not cover the event.
    let res = c
        .post(format!("{}/v1/replication/batch", pair.burl()))
        .bearer_auth(&pair.backup.token)
        .json(&json!({
            "origin": PRIMARY_ID,
            "items": [],
            "audit": [event(before + 1, &[0u8; 32], &[1u8; 32])],
        }))
        .send()
        .await
        .unwrap();
    let st = res.status().as_u16();
    let body: Value = res.json().await.unwrap_or(Value::Null);
    assert_eq!(st, 400, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("does not match its hash"),
        "{body}"
    );
    assert_eq!(backup_holds(&bdb).0, before, "nothing applied");
}
