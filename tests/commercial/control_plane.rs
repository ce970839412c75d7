//! Heartbeats and operator alerts reach the control plane; a slow or failing control plane
//! never slows client requests or reloads.

use crate::helpers::*;
use reqwest::Method;
use std::time::{Duration, Instant};

/// A POP of `role` reporting to a fresh control-plane stand-in answering with `mode`.
fn setup(role: &str, mode: CpMode) -> (ControlPlane, CpFiles, Pop, Vault) {
    let (cp, files, pop) = pop_with_control_plane(mode);
    pop.configure(role, &Opts::with_control_plane(&files));
    let v = pop.start();
    (cp, files, pop, v)
}

#[tokio::test(flavor = "multi_thread")]
async fn heartbeats_arrive_with_identity_and_token() {
    let (cp, files, pop, v) = setup("backup", CpMode::Ok);
    let beats = cp
        .wait_for("/v1/heartbeat", 2, Duration::from_secs(6), |_| true)
        .await;
    for b in &beats {
        assert_eq!(b.body["pop_id"], "zurich-01", "{}", b.body);
        assert_eq!(b.body["role"], "backup", "{}", b.body);
        assert_eq!(b.body["version"], VERSION, "{}", b.body);
        assert!(b.body["timestamp"].as_str().is_some(), "{}", b.body);
        // The backup's recovery point travels with every heartbeat (0: nothing applied yet).
        assert_eq!(b.body["replication"]["applied_watermark"], 0, "{}", b.body);
        assert_eq!(
            b.authorization.as_deref(),
            Some(format!("Bearer {}", files.token).as_str())
        );
    }
    // Each carries the epoch the POP holds: none at first, then the one the answer granted.
    assert_eq!(beats[0].body["epoch"], 0, "{}", beats[0].body);
    assert_eq!(beats[1].body["epoch"], 1, "{}", beats[1].body);
    assert_eq!(health(&pop.client(), &v.url).await["role"], "backup");
}

/// The heartbeat interval is the one the control plane's answer asks for (here 1 s), not
/// the file's `heartbeat_interval` (here 60 s), which only paces the first.
#[tokio::test(flavor = "multi_thread")]
async fn heartbeats_follow_the_interval_the_answer_asks_for() {
    let (cp, mut files, pop) = pop_with_control_plane(CpMode::Ok);
    files.heartbeat_interval = 60;
    pop.configure("primary", &Opts::with_control_plane(&files));
    let _v = pop.start();
    cp.wait_for("/v1/heartbeat", 3, Duration::from_secs(6), |_| true)
        .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn alert_has_the_documented_shape() {
    let (cp, files, pop, v) = setup("primary", CpMode::Ok);
    std::fs::write(&pop.config, "pop_id: [\n").expect("break the config");
    v.sighup();
    let alerts = cp
        .wait_for("/v1/alerts", 1, Duration::from_secs(10), |_| true)
        .await;
    let a = &alerts[0];
    let obj = a.body.as_object().expect("an alert is a JSON object");
    let mut keys: Vec<&str> = obj.keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        ["details", "message", "pop_id", "timestamp", "type"],
        "{}",
        a.body
    );
    assert_eq!(a.body["type"], "config_reload_failed");
    assert_eq!(a.body["pop_id"], "calgary-01");
    assert!(a.body["message"].as_str().is_some_and(|m| !m.is_empty()));
    assert!(a.body["details"].is_object(), "{}", a.body);
    let ts = a.body["timestamp"].as_str().expect("timestamp string");
    assert!(
        time::OffsetDateTime::parse(ts, &time::format_description::well_known::Rfc3339).is_ok(),
        "timestamp is not RFC 3339: {ts}"
    );
    assert_eq!(
        a.authorization.as_deref(),
        Some(format!("Bearer {}", files.token).as_str())
    );
    for secret in [&files.token, &pop.token] {
        assert!(
            !a.body.to_string().contains(secret.as_str()),
            "a token in the alert"
        );
    }
    // Heartbeats carry the same token.
    let beats = cp
        .wait_for("/v1/heartbeat", 1, Duration::from_secs(5), |_| true)
        .await;
    assert_eq!(beats[0].body["role"], "primary");
    // The primary's: what its backup is known to hold. This backup never answers, so nothing,
    // though the owner row is committed.
    let r = &beats[0].body["replication"];
    assert_eq!(r["acked_watermark"], 0, "{}", beats[0].body);
    assert!(
        r["committed_version"].as_i64() >= Some(1),
        "{}",
        beats[0].body
    );
    assert_eq!(beats[0].authorization, a.authorization);
}

/// 50 creations and reads, each bounded. Without a lease (`leased` false: the control plane
/// never answered) every creation is kept but answered 503 `primary_lease_expired`.
async fn client_traffic_is_fast(pop: &Pop, v: &Vault, label: &str, leased: bool) {
    const BOUND: Duration = Duration::from_secs(2);
    let c = pop.client();
    let entries = format!("{}/v1/entries", v.url);
    for i in 0..50 {
        let t0 = Instant::now();
        let (st, res) = post_entry(&c, v, &format!("{label}-{i}")).await;
        if !leased {
            assert_eq!(st, 503, "{res}");
            assert_eq!(res["error"]["code"], "primary_lease_expired", "{res}");
            let (st, _) = call(&c, Method::GET, &entries, &v.token, None).await;
            assert_eq!(st, 200);
            assert!(t0.elapsed() < BOUND, "request pair {i} ({label})");
            continue;
        }
        assert_eq!(st, 201, "{res}");
        let id = res["id"].as_str().expect("id").to_owned();
        let (st, res) = call(
            &c,
            Method::GET,
            &format!("{entries}/{id}/fields/password"),
            &v.token,
            None,
        )
        .await;
        assert_eq!(st, 200, "{res}");
        let took = t0.elapsed();
        assert!(took < BOUND, "request pair {i} ({label}) took {took:?}");
    }
    let t0 = Instant::now();
    let (st, _) = call(&c, Method::GET, &entries, &v.token, None).await;
    assert_eq!(st, 200);
    assert!(t0.elapsed() < BOUND);
}

/// With the control plane in `mode`: client requests stay fast, SIGHUP alerts do not block,
/// a valid reload still applies at once, and SIGTERM still stops the POP within 1 s.
async fn degraded_control_plane(mode: CpMode) {
    let (cp, files, pop, mut v) = setup("primary", mode);
    // The first heartbeat has reached the stand-in (and hangs there or gets a 500).
    cp.wait_for("/v1/heartbeat", 1, Duration::from_secs(5), |_| true)
        .await;
    client_traffic_is_fast(&pop, &v, "before", false).await;

    // Several rejected reloads: each raises an alert that cannot be delivered.
    for _ in 0..3 {
        std::fs::write(&pop.config, "::: not yaml [\n").expect("break the config");
        v.sighup();
        std::thread::sleep(Duration::from_millis(100));
    }
    cp.wait_for("/v1/alerts", 1, Duration::from_secs(5), |r| {
        r.body["type"] == "config_reload_failed"
    })
    .await;
    if mode == CpMode::Fail500 {
        // After a 500 the same alert is sent again.
        let tries = cp
            .wait_for("/v1/alerts", 2, Duration::from_secs(5), |_| true)
            .await;
        assert_eq!(
            tries[0].body, tries[1].body,
            "a retry resends the same alert"
        );
    }
    client_traffic_is_fast(&pop, &v, "after", false).await;
    assert!(v.is_running());

    // A valid reload is not stuck behind the undelivered alerts.
    pop.configure("backup", &Opts::with_control_plane(&files));
    v.sighup();
    wait_role(&pop.client(), &v.url, "backup").await;

    v.stop(Duration::from_secs(1));
}

#[tokio::test(flavor = "multi_thread")]
async fn hanging_control_plane_blocks_nothing() {
    degraded_control_plane(CpMode::Hang).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn failing_control_plane_blocks_nothing_and_is_retried() {
    degraded_control_plane(CpMode::Fail500).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn unreachable_control_plane_does_not_stop_start_up() {
    let (cp, mut files, pop) = pop_with_control_plane(CpMode::Ok);
    drop(cp);
    // Nothing listens on the discard port.
    files.url = "https://127.0.0.1:9".to_owned();
    pop.configure("primary", &Opts::with_control_plane(&files));
    let v = pop.start();
    client_traffic_is_fast(&pop, &v, "unreachable", false).await;
}

/// The vault checks the control plane's certificate: with `ca_file` naming another CA,
/// nothing is delivered (the handshake fails), and the POP keeps serving.
#[tokio::test(flavor = "multi_thread")]
async fn control_plane_certificate_is_verified() {
    let ca = Ca::new("control-plane CA");
    let cp = ControlPlane::start(&ca, CpMode::Ok);
    let pop = Pop::new();
    let files = CpFiles::new(&pop, &cp, &Ca::new("some other CA"));
    pop.configure("primary", &Opts::with_control_plane(&files));
    let v = pop.start();
    std::fs::write(&pop.config, "::: not yaml [\n").expect("break the config");
    v.sighup();
    assert!(v.wait_stderr("config_reload_failed", Duration::from_secs(5)));
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert!(cp.records("/v1/heartbeat").is_empty());
    assert!(cp.records("/v1/alerts").is_empty());
    client_traffic_is_fast(&pop, &v, "untrusted", false).await;
}
