//! The wire: duplicate and reordered batches posted by hand (idempotence, last-write-wins),
//! tombstones, and the batch size cap.

use crate::helpers::*;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Value, json};
use std::collections::HashSet;
use std::path::Path;
use std::time::{Duration, Instant};

/// The primary's owner row as a wire item: a backup fed by hand needs it to know the owner
/// (it has none of its own).
fn owner_item(db: &Path, origin: &str) -> Value {
    let conn =
        rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .expect("open the primary's database");
    conn.busy_timeout(Duration::from_secs(5))
        .expect("busy timeout");
    conn.query_row(
        "SELECT id, name, token_hash, scopes, ip_allowlist, rate_limit_per_minute, created_at,
                expires_at, revoked_at, version, updated_at
         FROM agents WHERE is_owner = 1",
        [],
        |r| {
            Ok(json!({
                "kind": "agent",
                "id": r.get::<_, String>(0)?,
                "name": r.get::<_, String>(1)?,
                "token_hash": STANDARD.encode(r.get::<_, Vec<u8>>(2)?),
                "is_owner": true,
                "scopes": r.get::<_, String>(3)?,
                "ip_allowlist": r.get::<_, String>(4)?,
                "rate_limit_per_minute": r.get::<_, Option<i64>>(5)?,
                "created_at": r.get::<_, i64>(6)?,
                "expires_at": r.get::<_, Option<i64>>(7)?,
                "revoked_at": r.get::<_, Option<i64>>(8)?,
                "version": r.get::<_, i64>(9)?,
                "updated_at": r.get::<_, i64>(10)?,
                "origin": origin,
            }))
        },
    )
    .expect("the primary's owner row")
}

#[tokio::test(flavor = "multi_thread")]
async fn duplicate_and_reordered_batches_change_nothing() {
    // A primary whose pushes go nowhere (its proxy drops everything), and a backup fed by hand.
    let mut pair = Pair::new(Opts {
        max_retries: 0,
        start_backup: false,
        ..Opts::default()
    });
    pair.b = Some(pair.backup.start());
    let (api, ca) = (&pair.api, &pair.ca);
    let (primary, backup) = (&pair.primary, &pair.backup);
    let (p, b) = (pair.purl(), pair.burl());
    let db = primary.data.join("vault.db");

    // Two versions of entry E, and of entry F, captured as the primary stored them.
    let e = api.create(&p, &primary.owner, &entry("e-v1")).await;
    let e1 = entry_item(&db, &e, PRIMARY_ID);
    let f = api.create(&p, &primary.owner, &entry("f-v1")).await;
    let f1 = entry_item(&db, &f, PRIMARY_ID);
    for (id, title) in [(&e, "e-v2"), (&f, "f-v2")] {
        let (st, v) = api
            .call(
                reqwest::Method::PUT,
                &format!("{p}/v1/entries/{id}"),
                &primary.owner,
                Some(&entry(title)),
            )
            .await;
        assert_eq!(st, 200, "{v}");
    }
    let e2 = entry_item(&db, &e, PRIMARY_ID);
    let f2 = entry_item(&db, &f, PRIMARY_ID);
    assert!(e2["version"].as_i64() > e1["version"].as_i64());

    let peer = client(ca, Some(&ca.leaf(PRIMARY_ID)));
    let title = |id: String| {
        let (api, b, t) = (api.clone(), b.clone(), backup.owner.clone());
        async move {
            let (st, v) = api.get_entry(&b, &t, &id).await;
            assert_eq!(st, 200, "{v}");
            v["title"].as_str().unwrap_or_default().to_owned()
        }
    };

    // Pushes `items` as the primary; asserts 200 and the (applied, skipped) counts.
    let feed = async |what: &str, items: &[&Value], applied: i64, skipped: i64| -> Value {
        let (st, ack) = push_batch(&peer, &b, &backup.token, items).await;
        assert_eq!(st, 200, "{what}: {ack}");
        assert_eq!(
            (ack["applied"].as_i64(), ack["skipped"].as_i64()),
            (Some(applied), Some(skipped)),
            "{what}: {ack}"
        );
        ack
    };

    feed("the primary's owner", &[&owner_item(&db, PRIMARY_ID)], 1, 0).await;
    // The newer version of E, then the very same batch again: the second changes nothing.
    let ack = feed("E v2", &[&e2], 1, 0).await;
    assert_eq!(ack["acked_version"], e2["version"], "{ack}");
    let health_after_first = api.health(&b).await["replication"]["committed_version"].clone();
    feed("E v2 again", &[&e2], 0, 1).await;
    assert_eq!(
        api.health(&b).await["replication"]["committed_version"],
        health_after_first
    );
    assert_eq!(title(e.clone()).await, "e-v2");

    // The older version of E arriving late does not overwrite the newer one.
    feed("E v1 late", &[&e1], 0, 1).await;
    assert_eq!(title(e.clone()).await, "e-v2");
    let (_, fv) = api.field(&b, &backup.owner, &e, "password").await;
    assert_eq!(fv["value"], "pw-e-v2", "{fv}");

    // Within one batch, newer first then older: the newer stays.
    feed("F v2 then v1", &[&f2, &f1], 1, 1).await;
    assert_eq!(title(f.clone()).await, "f-v2");

    // Same version and time, different origin: the tie is broken by origin, deterministically.
    let mut e2_other = e2.clone();
    e2_other["origin"] = json!("aaa-lower-origin");
    feed("a lower origin must not win a tie", &[&e2_other], 0, 1).await;

    // A tombstone (newer) deletes; a stale live copy cannot resurrect the entry.
    assert_eq!(api.delete(&p, &primary.owner, &e).await, 204);
    let e3 = entry_item(&db, &e, PRIMARY_ID);
    assert_eq!(e3["deleted"], true);
    feed("E tombstone", &[&e3], 1, 0).await;
    assert_eq!(api.get_entry(&b, &backup.owner, &e).await.0, 404);
    feed("E v2 and v1 after the tombstone", &[&e2, &e1], 0, 2).await;
    assert_eq!(api.get_entry(&b, &backup.owner, &e).await.0, 404);

    let listed: Vec<String> = api.ids(&b, &backup.owner).await;
    assert_eq!(listed, vec![f.clone()], "the backup holds exactly F");
}

#[tokio::test(flavor = "multi_thread")]
async fn deletions_replicate_and_batches_respect_batch_size() {
    let mut pair = Pair::new(Opts {
        batch_size: 5,
        start_backup: false,
        ..Opts::debug_backup()
    });
    let api = pair.api.clone();
    let p = pair.purl();
    let owner = pair.owner();
    let mut ids = Vec::new();
    for i in 0..40 {
        ids.push(api.create(&p, &owner, &entry(&format!("bulk-{i}"))).await);
    }
    // Three deleted while the backup is down: they travel as tombstones.
    let gone: Vec<String> = ids.drain(..3).collect();
    for id in &gone {
        assert_eq!(api.delete(&p, &owner, id).await, 204);
    }
    let h = api.health(&p).await;
    assert!(h["replication"]["backlog"].as_i64() >= Some(41), "{h}");

    let up = Instant::now();
    pair.start_backup();
    let b = pair.burl();
    let live: HashSet<String> = ids.iter().cloned().collect();
    pair.wait_backup_has(&live, Duration::from_secs(60)).await;
    api.wait_caught_up(&p, Duration::from_secs(20)).await;
    eprintln!(
        "batch size: 43 rows caught up {:?} after the backup started",
        up.elapsed()
    );
    for id in &gone {
        assert_eq!(
            api.get_entry(&b, &owner, id).await.0,
            404,
            "deleted {id} exists on the backup"
        );
    }
    assert_eq!(api.ids(&b, &pair.backup.owner).await.len(), 37);

    let log = pair.b().stderr();
    let sizes = applied_batches(&log);
    let total: u64 = sizes.iter().map(|(a, s)| a + s).sum();
    eprintln!(
        "batch size: {} batches, sizes {:?}",
        sizes.len(),
        sizes.iter().map(|(a, s)| a + s).collect::<Vec<_>>()
    );
    assert!(total >= 41, "only {total} items pushed: {sizes:?}\n{log}");
    assert!(sizes.len() >= 9, "{sizes:?}");
    assert!(
        sizes.iter().all(|(a, s)| a + s <= 5),
        "a batch exceeded batch_size 5: {sizes:?}"
    );

    // A deletion in steady state reaches the backup too.
    let victim = ids[0].clone();
    assert_eq!(api.get_entry(&b, &owner, &victim).await.0, 200);
    assert_eq!(api.delete(&p, &owner, &victim).await, 204);
    let t0 = Instant::now();
    wait_for(CONVERGE, "the deletion on the backup", || async {
        let (st, v) = api.get_entry(&b, &owner, &victim).await;
        (st == 404).then_some(()).ok_or((st, v))
    })
    .await;
    eprintln!("deletion reached the backup in {:?}", t0.elapsed());
    assert_eq!(api.ids(&b, &pair.backup.owner).await.len(), 36);
}

/// Entries near the client API's 1 MiB body limit, many per batch: the batch endpoint has its
/// own, larger limit, and the sender caps a batch's weight.
#[tokio::test(flavor = "multi_thread")]
async fn large_entries_replicate_in_multi_megabyte_batches() {
    let pair = Pair::new(Opts::debug_backup());
    let api = pair.api.clone();
    let (p, b) = (pair.purl(), pair.burl());
    let owner = pair.owner();
    pair.proxy.set_mode(Mode::Drop);
    let mut ids = HashSet::new();
    for i in 0..12 {
        // 14 fields of 60 KiB: about 840 KiB per entry, just under the client body limit.
        let fields: Vec<serde_json::Value> = (0..14)
            .map(|k| json!({"name": format!("blob{k}"), "value": format!("{i:02}").repeat(30 * 1024), "tier": "vault"}))
            .collect();
        let body = json!({"title": format!("big-{i}"), "fields": fields});
        ids.insert(api.create(&p, &owner, &body).await);
    }
    pair.proxy.set_mode(Mode::Forward);
    let t0 = Instant::now();
    pair.wait_backup_has(&ids, Duration::from_secs(60)).await;
    api.wait_caught_up(&p, Duration::from_secs(20)).await;
    eprintln!(
        "large entries: 12 x 840 KiB on the backup {:?} after healing",
        t0.elapsed()
    );
    let biggest = applied_batches(&pair.b().stderr())
        .iter()
        .map(|(applied, _)| *applied)
        .max()
        .unwrap_or(0);
    assert!(
        biggest >= 2,
        "never more than {biggest} large entries per batch"
    );
    let id = ids.iter().next().expect("an id");
    let (st, f) = api.field(&b, &owner, id, "blob13").await;
    assert_eq!(st, 200);
    assert_eq!(f["value"].as_str().map(str::len), Some(60 * 1024));
}
