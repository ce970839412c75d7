//! What a hostile (or broken) peer pushed to a backup, reproduced over real mTLS with the
//! primary's certificate and the POP token: a bad row refuses its whole batch (400, nothing
//! committed, one `replication_rejected` alert), and the backup keeps listing and restarting.

use crate::helpers::*;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Value, json};
use std::collections::HashSet;
use std::path::Path;
use std::time::Duration;

/// A primary and backup in step, holding entry `kept`; the primary's link then cut, so only
/// hand-made batches reach the backup, and entry `spare` written on the primary only.
/// Returns the pair, `kept` and `spare`.
async fn settled_pair() -> (Pair, String, String) {
    let pair = Pair::new(Opts::default());
    let id = pair
        .api
        .create(&pair.purl(), &pair.owner(), &entry("kept"))
        .await;
    pair.wait_backup_has(&HashSet::from([id.clone()]), CONVERGE)
        .await;
    pair.api.wait_caught_up(&pair.purl(), CONVERGE).await;
    pair.proxy.set_mode(Mode::Drop);
    let spare = pair
        .api
        .create(&pair.purl(), &pair.owner(), &entry("spare"))
        .await;
    (pair, id, spare)
}

/// A client presenting the primary's certificate.
fn as_primary(pair: &Pair) -> reqwest::Client {
    client(&pair.ca, Some(&pair.ca.leaf(PRIMARY_ID)))
}

fn count(db: &Path, sql: &str, id: &str) -> i64 {
    let conn =
        rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .expect("open the backup's database");
    conn.busy_timeout(Duration::from_secs(5))
        .expect("busy timeout");
    conn.query_row(sql, [id], |r| r.get(0)).expect("count")
}

fn bad_agent(id: &str) -> Value {
    json!({
        "kind": "agent", "id": id, "name": "mallory",
        "token_hash": STANDARD.encode([7u8]), "is_owner": false, "scopes": "not json",
        "ip_allowlist": "[]", "rate_limit_per_minute": 60, "created_at": 1_700_000_000_000i64,
        "expires_at": null, "revoked_at": null, "version": 1_000_000, "updated_at": 1_700_000_000_000i64,
        "origin": PRIMARY_ID,
    })
}

/// `GET /v1/entries` on the backup (as the primary's owner) answers 200 and lists `id`.
async fn backup_lists(pair: &Pair, id: &str) {
    let ids = pair.api.ids(&pair.burl(), &pair.owner()).await;
    assert!(ids.iter().any(|i| i == id), "{ids:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_agent_row_is_refused_whole_and_the_backup_restarts() {
    let (mut pair, kept, spare) = settled_pair().await;
    let peer = as_primary(&pair);
    let b = pair.burl();
    let db = pair.backup.data.join("vault.db");
    let before = pair.api.health(&b).await["replication"].clone();

    // The agent row alone, then with a good entry beside it: both refused, nothing applied.
    let mallory = uuid::Uuid::now_v7().to_string();
    let (st, res) = push_items(&peer, &b, &pair.backup.token, &[bad_agent(&mallory)]).await;
    assert_eq!(st, 400, "{res}");
    assert_eq!(res["error"]["code"], "invalid_batch", "{res}");
    let msg = res["error"]["message"].as_str().unwrap_or_default();
    assert!(msg.contains("token_hash is 1 bytes"), "{res}");
    // A primary retrying the same batch raises no second alert.
    let (st, _) = push_items(&peer, &b, &pair.backup.token, &[bad_agent(&mallory)]).await;
    assert_eq!(st, 400);
    let fresh = entry_item(&pair.primary.data.join("vault.db"), &spare, PRIMARY_ID);
    let fresh_id = spare.clone();
    let mut fixed_hash = bad_agent(&mallory);
    fixed_hash["token_hash"] = json!(STANDARD.encode([7u8; 32]));
    let (st, res) = push_items(&peer, &b, &pair.backup.token, &[fresh.clone(), fixed_hash]).await;
    assert_eq!(st, 400, "{res}");
    assert!(
        res["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("scopes is not a JSON list")),
        "{res}"
    );
    assert_eq!(
        count(&db, "SELECT count(*) FROM agents WHERE id = ?1", &mallory),
        0,
        "the refused agent was committed"
    );
    assert_eq!(
        count(&db, "SELECT count(*) FROM entries WHERE id = ?1", &fresh_id),
        0,
        "a row beside the refused one was committed"
    );
    assert_eq!(
        pair.api.health(&b).await["replication"]["committed_version"],
        before["committed_version"],
        "a refused batch moved the backup's version"
    );

    // One alert per refusal, not one per retry of the same batch. The second refusal's line
    // may reach the captured log a moment after its answer.
    let alerts = || {
        pair.b()
            .stderr()
            .matches("alert=\"replication_rejected\"")
            .count()
    };
    wait_for(
        Duration::from_secs(10),
        "the second refusal's alert",
        || async { (alerts() >= 2).then_some(()).ok_or(alerts()) },
    )
    .await;
    let log = pair.b().stderr();
    assert_eq!(
        log.matches("alert=\"replication_rejected\"").count(),
        2,
        "{log}"
    );

    // The backup still lists, and restarts (before: "token hash is not 32 bytes").
    backup_lists(&pair, &kept).await;
    pair.b.as_mut().expect("backup running").stop(STOP_WITHIN);
    pair.start_backup();
    backup_lists(&pair, &kept).await;
    // And a good batch still applies afterwards.
    let (st, res) = push_items(
        &as_primary(&pair),
        &pair.burl(),
        &pair.backup.token,
        &[fresh],
    )
    .await;
    assert_eq!(st, 200, "{res}");
    backup_lists(&pair, &fresh_id).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn path_like_entry_id_and_short_meta_are_refused() {
    let (pair, kept, _) = settled_pair().await;
    let peer = as_primary(&pair);
    let b = pair.burl();
    let db = pair.backup.data.join("vault.db");
    let good = entry_item(&pair.primary.data.join("vault.db"), &kept, PRIMARY_ID);

    let mut hostile = good.clone();
    hostile["id"] = json!("../../etc");
    hostile["meta"] = json!(STANDARD.encode([1u8, 2, 3, 4]));
    let (st, res) = push_items(&peer, &b, &pair.backup.token, &[hostile]).await;
    assert_eq!(
        (st, res["error"]["code"].as_str()),
        (400, Some("invalid_batch")),
        "{res}"
    );
    assert!(
        res["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("not a UUID")),
        "{res}"
    );
    assert_eq!(
        count(
            &db,
            "SELECT count(*) FROM entries WHERE id = ?1",
            "../../etc"
        ),
        0
    );

    // A well-formed id with a 4-byte meta: refused too (it made every listing answer 500).
    let mut short = good.clone();
    let short_id = uuid::Uuid::now_v7().to_string();
    short["id"] = json!(short_id);
    short["meta"] = json!(STANDARD.encode([1u8, 2, 3, 4]));
    let (st, res) = push_items(&peer, &b, &pair.backup.token, &[short]).await;
    assert_eq!(st, 400, "{res}");
    assert!(
        res["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("meta is 4 bytes")),
        "{res}"
    );
    assert_eq!(
        count(&db, "SELECT count(*) FROM entries WHERE id = ?1", &short_id),
        0
    );

    // Well-formed and long enough, but sealed for another entry (or under another key):
    // it would not open, so every listing would fail. Refused as well.
    let mut moved = good.clone();
    let moved_id = uuid::Uuid::now_v7().to_string();
    moved["id"] = json!(moved_id);
    let (st, res) = push_items(&peer, &b, &pair.backup.token, &[moved]).await;
    assert_eq!(st, 400, "{res}");
    assert!(
        res["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("does not open with this vault's key")),
        "{res}"
    );
    assert_eq!(
        count(&db, "SELECT count(*) FROM entries WHERE id = ?1", &moved_id),
        0
    );

    // Not JSON of the format at all: refused in the same shape.
    let res = peer
        .post(format!("{b}/v1/replication/batch"))
        .bearer_auth(&pair.backup.token)
        .body("{\"origin\": 1")
        .send()
        .await
        .expect("push");
    assert_eq!(res.status().as_u16(), 400);
    let body: Value = res.json().await.expect("JSON error");
    assert_eq!(body["error"]["code"], "invalid_batch", "{body}");

    for _ in 0..3 {
        backup_lists(&pair, &kept).await;
    }
    let (st, f) = pair.api.field(&b, &pair.owner(), &kept, "password").await;
    assert_eq!((st, f["value"].as_str()), (200, Some("pw-kept")), "{f}");
}
