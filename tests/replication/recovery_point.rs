//! The recovery point: the backup's `applied_watermark` is true (every change the primary
//! made at or below it is on the backup) while batches overtake each other, acknowledgements
//! are lost and the primary is SIGKILLed; and both watermarks catch up once it is back.

use crate::helpers::*;
use serde_json::Value;
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// The versions each entry had on the primary, in the order its writes were acknowledged.
type Written = HashMap<String, Vec<i64>>;

fn version_of(v: &Value) -> i64 {
    v["version"]
        .as_i64()
        .unwrap_or_else(|| panic!("no version in {v}"))
}

/// `id -> version` of every entry the backup lists.
async fn backup_versions(pair: &Pair) -> HashMap<String, i64> {
    let (st, v) = pair
        .api
        .call(
            reqwest::Method::GET,
            &format!("{}/v1/entries", pair.burl()),
            &pair.owner(),
            None,
        )
        .await;
    assert_eq!(st, 200, "{v}");
    v["entries"]
        .as_array()
        .expect("entries")
        .iter()
        .map(|e| (e["id"].as_str().expect("id").to_owned(), version_of(e)))
        .collect()
}

/// Asserts the backup holds every entry at least as the primary had it at version `w`.
async fn holds_everything_up_to(pair: &Pair, written: &Written, w: i64, what: &str) {
    let held = backup_versions(pair).await;
    for (id, versions) in written {
        let Some(at_w) = versions.iter().rev().find(|v| **v <= w) else {
            continue;
        };
        let has = held.get(id).copied();
        assert!(
            has.is_some_and(|h| h >= *at_w),
            "{what} {w} is not true: entry {id} was at version {at_w} then, the backup holds {has:?}\n{}",
            pair.logs()
        );
    }
}

fn int(h: &Value, key: &str) -> i64 {
    h["replication"][key]
        .as_i64()
        .unwrap_or_else(|| panic!("no replication.{key} in {h}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn recovery_point_is_true_with_reordered_batches_lost_acks_and_a_crash() {
    // Small batches, so several are in flight at once; every other connection slowed down,
    // so later batches overtake earlier ones.
    let mut pair = Pair::new(Opts {
        batch_size: 2,
        ..Opts::default()
    });
    let api = pair.api.clone();
    let (p, owner) = (pair.purl(), pair.owner());
    api.wait_caught_up(&p, CONVERGE).await;
    pair.proxy.stagger(Duration::from_millis(25));

    let mut written = Written::new();
    let mut ids = Vec::new();
    for i in 0..8 {
        let (st, v) = api
            .call(
                reqwest::Method::POST,
                &format!("{p}/v1/entries"),
                &owner,
                Some(&entry(&format!("e{i}"))),
            )
            .await;
        assert_eq!(st, 201, "{v}");
        let id = v["id"].as_str().expect("id").to_owned();
        written.entry(id.clone()).or_default().push(version_of(&v));
        ids.push(id);
    }
    let mut applied_version_ahead = 0;
    for i in 0..160usize {
        let id = &ids[(i * 5 + i / 8) % ids.len()];
        let (st, v) = api
            .call(
                reqwest::Method::PUT,
                &format!("{p}/v1/entries/{id}"),
                &owner,
                Some(&entry(&format!("u{i}"))),
            )
            .await;
        assert_eq!(st, 200, "{v}");
        written.entry(id.clone()).or_default().push(version_of(&v));
        // Cut every open connection now and then: batches the backup committed lose their
        // acknowledgement and are sent again.
        if i % 40 == 20 {
            pair.proxy.set_mode(Mode::Drop);
            tokio::time::sleep(Duration::from_millis(30)).await;
            pair.proxy.set_mode(Mode::Forward);
        }
        if i % 20 == 0 {
            let h = api.health(&pair.burl()).await;
            let w = int(&h, "applied_watermark");
            if int(&h, "applied_version") > w {
                applied_version_ahead += 1;
            }
            holds_everything_up_to(&pair, &written, w, "the backup's applied_watermark").await;
        }
    }
    // The primary dies with batches in flight.
    pair.p.as_mut().expect("primary").kill9();
    let h = api.health(&pair.burl()).await;
    let (w, v) = (int(&h, "applied_watermark"), int(&h, "applied_version"));
    holds_everything_up_to(&pair, &written, w, "the backup's applied_watermark").await;
    let last = written.values().flatten().max().copied().unwrap_or(0);
    eprintln!(
        "recovery point after the crash: applied_watermark {w}, applied_version {v}, last acknowledged write {last}; applied_version was ahead of the watermark in {applied_version_ahead} of 8 samples"
    );
    assert!(w > 0, "the watermark never moved: {h}");

    // The primary comes back: it sends what it still owes and both watermarks reach its
    // last committed version.
    pair.proxy.stagger(Duration::ZERO);
    pair.start_primary();
    let p = pair.purl();
    let t0 = Instant::now();
    let primary = wait_for(CONVERGE, "acked_watermark == committed_version", || async {
        let h = api.health(&p).await;
        (int(&h, "acked_watermark") == int(&h, "committed_version") && int(&h, "backlog") == 0)
            .then_some(h.clone())
            .ok_or(h)
    })
    .await;
    let committed = int(&primary, "committed_version");
    assert!(committed >= last, "{primary}");
    let b = pair.burl();
    wait_for(
        CONVERGE,
        "the backup's applied_watermark == the primary's",
        || async {
            let h = api.health(&b).await;
            (int(&h, "applied_watermark") == committed)
                .then_some(())
                .ok_or(h)
        },
    )
    .await;
    eprintln!(
        "both watermarks at {committed} {:?} after the restart",
        t0.elapsed()
    );
    holds_everything_up_to(&pair, &written, committed, "the final watermark").await;

    // The backup's recovery point survives its own restart (it is committed with the rows).
    pair.b.as_mut().expect("backup").stop(STOP_WITHIN);
    pair.start_backup();
    let h = api.health(&pair.burl()).await;
    assert_eq!(int(&h, "applied_watermark"), committed, "{h}");
}
