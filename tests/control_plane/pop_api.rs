//! What POPs send: heartbeats answered with role, epoch, lease and interval; each POP known
//! only by its own token; telemetry and alerts stored, listed, filtered and acknowledged; the
//! operators' view of every POP, stale ones marked.

use crate::helpers::*;
use reqwest::Method;
use serde_json::json;
use std::time::Duration;

const A: &str = "calgary-01";
const B: &str = "zurich-01";

#[tokio::test(flavor = "multi_thread")]
async fn heartbeats_are_answered_with_role_epoch_lease_and_interval() {
    let d = CpDir::new(&[A, B], MANUAL);
    let cp = d.start();
    // A backup first: nobody is primary yet.
    let b = cp.beat(&d, B, "backup", None, backup_repl(0)).await;
    assert_eq!(
        b,
        json!({"role": "backup", "epoch": 0, "lease_ms": 0, "interval_ms": 300})
    );
    // The first POP that says it is primary is adopted, with a lease.
    let mut body = heartbeat_body(A, "primary", None, primary_repl(2, 10));
    body["a_field_from_a_newer_pop"] = json!({"anything": [1, 2]});
    let (st, a) = cp.post("/v1/heartbeat", d.token(A), &body).await;
    assert_eq!(st, 200, "{a}");
    assert_eq!(
        a,
        json!({"role": "primary", "epoch": 1, "lease_ms": 1000, "interval_ms": 300})
    );
    // A second claimant is told backup.
    let b = cp.beat(&d, B, "primary", None, backup_repl(8)).await;
    assert_eq!(b["role"], "backup");
    assert_eq!(b["epoch"], 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn each_pop_is_known_only_by_its_own_token() {
    let d = CpDir::new(&[A, B], MANUAL);
    let cp = d.start();
    let hb = heartbeat_body(B, "backup", None, backup_repl(0));
    // A's token cannot speak for B.
    let (st, v) = cp.post("/v1/heartbeat", d.token(A), &hb).await;
    assert_eq!((st, code(&v)), (403, "pop_mismatch"), "{v}");
    for path in ["/v1/heartbeat", "/v1/telemetry", "/v1/alerts"] {
        // No POP has these tokens.
        for token in [cp.admin.as_str(), "clavitor-pop-v1-not-a-real-token"] {
            let (st, v) = cp.post(path, token, &hb).await;
            assert_eq!((st, code(&v)), (401, "invalid_token"), "{path}: {v}");
        }
        let res = cp.http.post(cp.url(path)).json(&hb).send().await.unwrap();
        assert_eq!(res.status(), 401, "{path} without a token");
    }
    // A POP token opens nothing of the operators'.
    for path in ["/v1/pops", "/v1/alerts"] {
        let (st, v) = call(&cp.http, Method::GET, &cp.url(path), d.token(A), None).await;
        assert_eq!((st, code(&v)), (401, "invalid_token"), "{path}: {v}");
    }
    let (st, v) = cp
        .post(&format!("/v1/pops/{B}/promote"), d.token(B), &json!({}))
        .await;
    assert_eq!(st, 401, "{v}");
    // A malformed body is a 4xx in the error shape.
    let res = cp
        .http
        .post(cp.url("/v1/heartbeat"))
        .bearer_auth(d.token(A))
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);
    let v: serde_json::Value = res.json().await.unwrap();
    assert_eq!(code(&v), "invalid_json", "{v}");
}

#[tokio::test(flavor = "multi_thread")]
async fn telemetry_and_alerts_are_stored_listed_and_acknowledged() {
    let d = CpDir::new(&[A, B], MANUAL);
    let cp = d.start();
    cp.beat(&d, A, "primary", None, primary_repl(3, 50)).await;
    cp.beat(&d, B, "backup", None, backup_repl(47)).await;
    let mut tel = heartbeat_body(A, "primary", None, primary_repl(3, 50));
    tel["entries"] = json!(12);
    tel["tarpit_held"] = json!(4);
    tel["requests"] = json!({"1xx": 0, "2xx": 10, "3xx": 0, "4xx": 1, "5xx": 0});
    let (st, v) = cp.post("/v1/telemetry", d.token(A), &tel).await;
    assert_eq!(st, 200, "{v}");
    // The body POPs send for an alert (see the commercial suite).
    let alert = |kind: &str, pop: &str| {
        json!({"type": kind, "message": format!("{kind} on {pop}"), "details": {"cap": 3},
               "pop_id": pop, "timestamp": "2026-11-30T01:02:03Z"})
    };
    let (st, v) = cp
        .post("/v1/alerts", d.token(A), &alert("tarpit_saturated", A))
        .await;
    assert_eq!(st, 200, "{v}");
    let first = v["id"].as_i64().expect("alert id");
    cp.post("/v1/alerts", d.token(B), &alert("config_reload_failed", B))
        .await;

    let pops = cp.admin_get("/v1/pops").await;
    let a = &pops["pops"][0];
    assert_eq!(a["id"], A);
    assert_eq!(a["role"], "primary");
    assert_eq!(a["region"], "test-region");
    assert_eq!(a["version"], VERSION);
    assert_eq!(a["uptime_seconds"], 42);
    assert_eq!(a["stale"], false);
    assert_eq!(a["tarpit_held"], 4);
    assert_eq!(a["open_alerts"], 1);
    assert_eq!(a["replication"]["backlog"], 3);
    assert_eq!(a["replication"]["lag_ms"]["p99"], 40);
    assert_eq!(a["replication"]["acked_watermark"], 47);
    assert!(a["last_heartbeat"].as_str().is_some(), "{a}");
    let b = &pops["pops"][1];
    assert_eq!(b["role"], "backup");
    assert_eq!(b["replication"]["applied_watermark"], 47);
    assert_eq!(b["replication"]["behind_versions"], 3);
    assert_eq!(pops["failover"]["primary"], A);

    let open = cp.admin_get("/v1/alerts?open=true").await;
    let kinds: Vec<&str> = open["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|a| a["type"].as_str())
        .collect();
    assert!(
        kinds.contains(&"tarpit_saturated") && kinds.contains(&"config_reload_failed"),
        "{open}"
    );
    let only_a = cp
        .admin_get(&format!("/v1/alerts?pop={A}&type=tarpit_saturated"))
        .await;
    assert_eq!(only_a["alerts"].as_array().unwrap().len(), 1, "{only_a}");
    let got = &only_a["alerts"][0];
    assert_eq!(got["message"], "tarpit_saturated on calgary-01");
    assert_eq!(got["details"], json!({"cap": 3}));
    assert_eq!(got["timestamp"], "2026-11-30T01:02:03Z");
    assert_eq!(got["acked"], false);

    let (st, v) = cp.admin_post(&format!("/v1/alerts/{first}/ack")).await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["acked"], true);
    let open = cp.admin_get(&format!("/v1/alerts?open=true&pop={A}")).await;
    assert!(
        open["alerts"]
            .as_array()
            .unwrap()
            .iter()
            .all(|a| a["id"] != first),
        "{open}"
    );
    assert_eq!(cp.pop(A).await["open_alerts"], 0);
    let (st, v) = cp.admin_post("/v1/alerts/999999/ack").await;
    assert_eq!((st, code(&v)), (404, "alert_not_found"), "{v}");

    let one = cp.admin_get(&format!("/v1/pops/{A}")).await;
    assert!(!one["history"].as_array().unwrap().is_empty(), "{one}");
    assert_eq!(one["history"][0]["backlog"], 3);
    assert!(
        one["alerts"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["id"] == first),
        "{one}"
    );
    let res = cp
        .http
        .get(cp.url("/v1/pops/nowhere-01"))
        .bearer_auth(&cp.admin)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 404);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_pop_is_stale_once_its_heartbeats_stop() {
    let d = CpDir::new(
        &[A, B],
        "failover:\n  mode: manual\n  heartbeat_interval_ms: 400\n  missed_heartbeats: 4\n  lease_seconds: 0\n",
    );
    let cp = d.start();
    cp.beat(&d, A, "primary", None, primary_repl(0, 5)).await;
    cp.beat(&d, B, "backup", None, backup_repl(5)).await;
    assert_eq!(cp.pop(A).await["stale"], false);
    // B keeps beating, A stops: after 4 intervals A is stale, B is not.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        cp.beat(&d, B, "backup", None, backup_repl(5)).await;
        if cp.pop(A).await["stale"] == true {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "A never became stale");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    cp.beat(&d, B, "backup", None, backup_repl(5)).await;
    assert_eq!(cp.pop(B).await["stale"], false);
    // The control plane raised an alert for it.
    let missed = cp
        .admin_get(&format!("/v1/alerts?pop={A}&type=heartbeat_missed"))
        .await;
    assert_eq!(missed["alerts"].as_array().unwrap().len(), 1, "{missed}");
}
