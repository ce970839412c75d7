//! SIGHUP: a valid config is swapped in whole without dropping open connections; an invalid
//! one changes nothing, is logged, and raises a `config_reload_failed` alert.

use crate::helpers::*;
use reqwest::Method;
use std::time::Duration;

/// Polls /healthz on the raw connection until it reports `role` (bounded).
fn wait_role_raw(conn: &mut RawConn, role: &str) {
    let what = format!("role {role} on the kept-alive connection");
    wait_until(RELOAD_TIMEOUT, &what, || {
        let (st, h) = conn.request("GET", "/healthz", None, None);
        assert_eq!(st, 200, "{h}");
        (h["role"] == role).then_some(()).ok_or(h)
    });
}

#[tokio::test(flavor = "multi_thread")]
async fn backup_promoted_to_primary_keeps_connections() {
    let pop = Pop::new();
    pop.configure("backup", &Opts::default());
    let v = pop.start();
    let body = entry_body("promoted");

    // One raw keep-alive connection and one pooled reqwest client, both opened before.
    let mut conn = pop.raw(&v);
    let (st, res) = conn.request("POST", "/v1/entries", Some(&v.token), Some(&body));
    assert_eq!((st, code(&res)), (503, "read_only_backup"), "{res}");
    let c = pop.client();
    let (st, res) = post_entry(&c, &v, "promoted").await;
    assert_eq!((st, code(&res)), (503, "read_only_backup"), "{res}");

    pop.configure("primary", &Opts::default());
    v.sighup();
    wait_role_raw(&mut conn, "primary");

    // Same connection, same request flow: now the write goes through.
    let (st, res) = conn.request("POST", "/v1/entries", Some(&v.token), Some(&body));
    assert_eq!(st, 201, "{res}");
    let (st, res) = post_entry(&c, &v, "promoted").await;
    assert_eq!(st, 201, "{res}");
    let (st, list) = conn.request("GET", "/v1/entries", Some(&v.token), None);
    assert_eq!(st, 200, "{list}");
    assert_eq!(list.to_string().matches("promoted").count(), 2, "{list}");
    assert!(
        v.stderr().contains("configuration reloaded"),
        "{}",
        v.stderr()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn primary_demoted_to_backup_refuses_writes() {
    let pop = Pop::new();
    pop.configure("primary", &Opts::default());
    let v = pop.start();
    let entries = format!("{}/v1/entries", v.url);
    let c = pop.client();
    let mut conn = pop.raw(&v);
    let (st, res) = conn.request(
        "POST",
        "/v1/entries",
        Some(&v.token),
        Some(&entry_body("before")),
    );
    assert_eq!(st, 201, "{res}");
    let (st, res) = post_entry(&c, &v, "a").await;
    assert_eq!(st, 201, "{res}");

    pop.configure("backup", &Opts::default());
    v.sighup();
    wait_role_raw(&mut conn, "backup");

    let (st, res) = conn.request(
        "POST",
        "/v1/entries",
        Some(&v.token),
        Some(&entry_body("after")),
    );
    assert_eq!((st, code(&res)), (503, "read_only_backup"), "{res}");
    let (st, res) = post_entry(&c, &v, "b").await;
    assert_eq!((st, code(&res)), (503, "read_only_backup"), "{res}");
    let (st, list) = call(&c, Method::GET, &entries, &v.token, None).await;
    assert_eq!(st, 200, "{list}");
    assert!(list.to_string().contains("before"), "{list}");
}

#[tokio::test(flavor = "multi_thread")]
async fn invalid_reload_keeps_the_old_config_and_alerts() {
    let (cp, files, pop) = pop_with_control_plane(CpMode::Ok);
    let good = pop.configure("primary", &Opts::with_control_plane(&files));
    let mut v = pop.start();
    let c = pop.client();
    wait_leased(&c, &v.url).await;

    pop.write_config("role: [primary\n  ::: this is not yaml }}}\n");
    v.sighup();
    let alerts = cp
        .wait_for("/v1/alerts", 1, Duration::from_secs(10), |r| {
            r.body["type"] == "config_reload_failed"
        })
        .await;
    let a = &alerts[0].body;
    assert_eq!(a["pop_id"], "calgary-01", "{a}");
    assert_eq!(
        alerts[0].authorization.as_deref(),
        Some(format!("Bearer {}", files.token).as_str())
    );
    assert!(
        a["message"]
            .as_str()
            .is_some_and(|m| m.contains(pop.config.to_str().unwrap())),
        "the alert names the file: {a}"
    );

    // Old config in force: still a primary that takes writes, still running.
    assert!(v.is_running());
    assert_eq!(health(&c, &v.url).await["role"], "primary");
    let (st, res) = post_entry(&c, &v, "still").await;
    assert_eq!(st, 201, "{res}");
    assert!(
        v.wait_stderr("config_reload_failed", Duration::from_secs(5)),
        "no error line on stderr:\n{}",
        v.stderr()
    );
    let err = v.stderr();
    let line = err
        .lines()
        .find(|l| l.contains("config_reload_failed"))
        .unwrap_or_default();
    assert!(line.contains("ERROR"), "not an error line: {line}");
    assert!(!err.contains(&pop.token), "the POP token leaked to the log");
    assert!(
        !err.contains(&files.token),
        "the control-plane token leaked"
    );

    // A reload that is valid YAML but an invalid config is refused the same way, and a
    // later valid reload still works.
    pop.write_config(&good.replace("role: \"primary\"", "role: \"backup\"")); // a cascade
    v.sighup();
    cp.wait_for("/v1/alerts", 2, Duration::from_secs(10), |r| {
        r.body["type"] == "config_reload_failed"
    })
    .await;
    assert_eq!(health(&c, &v.url).await["role"], "primary");
    pop.write_config(&good.replace("batch_size: 100", "batch_size: 50"));
    v.sighup();
    assert!(v.wait_stderr("configuration reloaded", Duration::from_secs(5)));
    assert!(v.is_running());
}

#[tokio::test(flavor = "multi_thread")]
async fn reload_rotates_the_pop_token() {
    let pop = Pop::new();
    pop.configure("backup", &Opts::default());
    let v = pop.start();
    let c = pop.peer("calgary-01");
    let passes = async |token: &str| {
        let (st, res) = push(&c, &v.url, token).await.expect("push");
        if accepted_by_backup(st, &res) {
            true
        } else {
            assert_eq!((st, code(&res)), (401, "invalid_pop_token"), "{res}");
            false
        }
    };
    let old = pop.token.clone();
    assert!(passes(&old).await);

    let new = write_token(&pop.token_file);
    v.sighup();
    wait_for(RELOAD_TIMEOUT, "the new token accepted", || async {
        passes(&new).await.then_some(()).ok_or(())
    })
    .await;
    assert!(!passes(&old).await, "the old token still works");
}

#[tokio::test(flavor = "multi_thread")]
async fn reload_swaps_certificates_for_new_connections_only() {
    let ca1 = Ca::new("POP CA 1");
    let ca2 = Ca::new("POP CA 2");
    let pop = Pop::new();
    let tls = pop.write_tls(&ca1);
    let yaml = pop.configure("backup", &Opts::with_tls(&tls));
    let v = pop.start();
    let old_client = client(&ca1, Some(&ca1.leaf("calgary-01")));
    let (st, res) = push(&old_client, &v.url, &pop.token)
        .await
        .expect("push over CA 1");
    assert!(accepted_by_backup(st, &res), "{st} {res}");

    // Rotate to CA 2: new certificate, key and CA files.
    let tls2 = pop.write_tls_as("replication2", &ca2);
    let rotated = yaml.replace(&tls.yaml(), &tls2.yaml());
    assert_ne!(rotated, yaml, "the config names the TLS files");
    pop.write_config(&rotated);
    v.sighup();
    assert!(
        v.wait_stderr("configuration reloaded", RELOAD_TIMEOUT),
        "{}",
        v.stderr()
    );

    // New connections get the new certificate and need a CA 2 client certificate.
    let new_client = client(&ca2, Some(&ca2.leaf("calgary-01")));
    let (st, res) = push(&new_client, &v.url, &pop.token)
        .await
        .expect("push over CA 2");
    assert!(accepted_by_backup(st, &res), "{st} {res}");
    let fresh_old = client(&ca1, Some(&ca1.leaf("calgary-01")));
    assert!(
        fresh_old
            .get(format!("{}/healthz", v.url))
            .send()
            .await
            .is_err(),
        "a new connection still got the CA 1 certificate"
    );
    // The connection opened before the reload is still up (a new one would fail the
    // CA 1 client's server check).
    let (st, res) = push(&old_client, &v.url, &pop.token)
        .await
        .expect("the connection opened before the reload was dropped");
    assert!(accepted_by_backup(st, &res), "{st} {res}");
}

/// A reload that drops a required mTLS key is refused like any invalid config: the POP
/// keeps serving HTTPS with what it had.
#[tokio::test(flavor = "multi_thread")]
async fn reload_without_mtls_keeps_the_old_config() {
    let pop = Pop::new();
    let good = pop.configure("primary", &Opts::default());
    let mut v = pop.start();
    let without = good.replace(&format!("  mtls_ca: {}\n", q(&pop.tls.ca)), "");
    assert_ne!(without, good);
    pop.write_config(&without);
    v.sighup();
    assert!(
        v.wait_stderr("config_reload_failed", RELOAD_TIMEOUT),
        "{}",
        v.stderr()
    );
    assert!(v.stderr().contains("auth.mtls_ca"), "{}", v.stderr());
    assert!(v.is_running());
    assert_eq!(health(&pop.client(), &v.url).await["role"], "primary");
}

/// With a control plane, the file's role is only the starting role: once the control plane
/// has granted one (saved in the data dir), a reload keeps it, and so does a restart.
#[tokio::test(flavor = "multi_thread")]
async fn the_granted_role_outlives_a_reload_and_a_restart() {
    let (cp, files, pop) = pop_with_control_plane(CpMode::Ok);
    let opts = Opts::with_control_plane(&files);
    pop.configure("primary", &opts);
    let mut v = pop.start();
    cp.wait_for("/v1/heartbeat", 2, Duration::from_secs(5), |r| {
        r.body["role"] == "primary" && r.body["epoch"] == 1
    })
    .await;
    pop.configure("backup", &opts);
    v.sighup();
    assert!(v.wait_stderr("configuration reloaded", RELOAD_TIMEOUT));
    let h = health(&pop.client(), &v.url).await;
    assert_eq!(h["role"], "primary", "{h}");
    assert_eq!(h["replication"]["epoch"], 1, "{h}");
    v.stop(Duration::from_secs(5));
    let v = pop.start();
    assert!(
        v.stderr()
            .contains("role and epoch last granted by the control plane"),
        "{}",
        v.stderr()
    );
    let h = health(&pop.client(), &v.url).await;
    assert_eq!(h["role"], "primary", "{h}");
    assert_eq!(h["replication"]["epoch"], 1, "{h}");
}
