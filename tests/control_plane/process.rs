//! The process: state survives a restart and `kill -9` without a second primary being granted,
//! SIGTERM exits 0 within a second, SIGHUP reloads (and keeps the old config when the new one
//! is invalid).

use crate::helpers::*;
use serde_json::json;
use std::time::{Duration, Instant};

const A: &str = "calgary-01";
const B: &str = "zurich-01";

#[tokio::test(flavor = "multi_thread")]
async fn state_survives_kill_9_and_a_restart_grants_no_second_primary() {
    let d = CpDir::new(&[A, B], MANUAL);
    let mut cp = d.start();
    cp.beat(&d, A, "primary", Some(1), primary_repl(0, 10))
        .await;
    cp.beat(&d, B, "backup", Some(1), backup_repl(10)).await;
    let alert = json!({"type": "tarpit_saturated", "message": "m", "details": {}, "pop_id": A, "timestamp": "2026-11-30T00:00:00Z"});
    cp.post("/v1/alerts", d.token(A), &alert).await;
    // A promotion starts; A has a live lease and has not stepped down. Then the control plane dies.
    let (st, _) = cp.admin_post(&format!("/v1/pops/{B}/promote")).await;
    assert_eq!(st, 202);
    cp.process.kill9();
    drop(cp);

    let restarted = Instant::now();
    let cp = d.start();
    let pops = cp.admin_get("/v1/pops").await;
    assert_eq!(pops["failover"]["epoch"], 2, "{pops}");
    assert_eq!(pops["failover"]["promotion"]["to"], B, "{pops}");
    let alerts = cp.admin_get("/v1/alerts?type=tarpit_saturated").await;
    assert_eq!(alerts["alerts"].as_array().unwrap().len(), 1, "{alerts}");
    // The new process cannot know when A's lease was last renewed: it waits a full lease and
    // the margin from its own start before B may hear primary, unless A steps down.
    let a = cp
        .beat(&d, A, "primary", Some(1), primary_repl(0, 10))
        .await;
    assert_eq!(
        (a["role"].as_str(), a["epoch"].as_u64()),
        (Some("backup"), Some(2))
    );
    let promoted = loop {
        let b = cp.beat(&d, B, "backup", Some(1), backup_repl(10)).await;
        if b["role"] == "primary" {
            break Instant::now();
        }
        assert!(
            restarted.elapsed() < Duration::from_secs(15),
            "never promoted"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(
        promoted - restarted >= Duration::from_secs(2),
        "promoted {:?} after the restart",
        promoted - restarted
    );
    // And that survives a restart too.
    drop(cp);
    let cp = d.start();
    assert_eq!(
        cp.beat(&d, B, "primary", Some(2), primary_repl(0, 10))
            .await["role"],
        "primary"
    );
    assert_eq!(
        cp.beat(&d, A, "primary", Some(1), primary_repl(0, 10))
            .await["role"],
        "backup"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_exits_0_within_a_second() {
    let d = CpDir::new(&[A], MANUAL);
    let mut cp = d.start();
    cp.beat(&d, A, "primary", None, primary_repl(0, 1)).await;
    cp.process.stop(Duration::from_secs(1));
}

#[tokio::test(flavor = "multi_thread")]
async fn sighup_reloads_and_keeps_the_old_config_when_the_new_one_is_invalid() {
    let d = CpDir::new(&[A, B], MANUAL);
    let cp = d.start();
    let c_file = d.path("lisbon-01.token");
    let c_token = write_token(&c_file);
    let c_body = heartbeat_body("lisbon-01", "backup", None, backup_repl(0));
    let (st, _) = cp.post("/v1/heartbeat", &c_token, &c_body).await;
    assert_eq!(st, 401);
    // Add a POP.
    let y = format!(
        "{}  - id: \"lisbon-01\"\n    token_file: {}\n",
        d.yaml(""),
        q(&c_file)
    ) + MANUAL;
    d.write_config(&y);
    cp.process.sighup();
    assert!(
        cp.process
            .wait_stderr("configuration reloaded", Duration::from_secs(5)),
        "{}",
        cp.process.stderr()
    );
    let (st, v) = cp.post("/v1/heartbeat", &c_token, &c_body).await;
    assert_eq!(st, 200, "{v}");
    // A broken config is logged and changes nothing.
    d.write_config("pops: [\n");
    cp.process.sighup();
    assert!(
        cp.process
            .wait_stderr("reload rejected", Duration::from_secs(5)),
        "{}",
        cp.process.stderr()
    );
    assert!(
        cp.process
            .stderr()
            .contains(&d.config.display().to_string())
    );
    let (st, _) = cp.post("/v1/heartbeat", &c_token, &c_body).await;
    assert_eq!(st, 200);
    assert_eq!(
        cp.beat(&d, A, "primary", None, primary_repl(0, 1)).await["role"],
        "primary"
    );
    // Moving the listen address needs a restart: refused, old kept.
    d.write_config(&y.replace("127.0.0.1:0", "127.0.0.1:1"));
    cp.process.sighup();
    assert!(
        cp.process
            .wait_stderr("change only with a restart", Duration::from_secs(5)),
        "{}",
        cp.process.stderr()
    );
    assert_eq!(
        cp.beat(&d, A, "primary", None, primary_repl(0, 1)).await["role"],
        "primary"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_second_control_plane_on_the_same_data_dir_is_refused() {
    let d = CpDir::new(&[A], MANUAL);
    let _first = d.start();
    let out = crate::common::process::run(&mut d.command());
    assert_eq!(out.code(), Some(1), "{out}");
    assert!(
        out.stderr
            .contains("is in use by another control plane (pid "),
        "{out}"
    );
}
