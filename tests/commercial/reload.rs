//! SIGHUP: a valid config is swapped in whole without dropping open connections; an invalid
//! one changes nothing, is logged, and raises a `config_reload_failed` alert.

use crate::helpers::*;
use reqwest::Method;
use std::time::Duration;

/// Polls /healthz on the raw connection until it reports `role` (bounded).
fn wait_role_raw(conn: &mut RawConn, role: &str) {
    let deadline = std::time::Instant::now() + RELOAD_TIMEOUT;
    loop {
        let (st, h) = conn.request("GET", "/healthz", None, None);
        assert_eq!(st, 200, "{h}");
        if h["role"] == role {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "role still {} after {RELOAD_TIMEOUT:?}",
            h["role"]
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn backup_promoted_to_primary_keeps_connections() {
    let pop = Pop::new();
    pop.write_config(&config_yaml(&pop, "backup", &Opts::default()));
    let v = pop.start();
    let entries = format!("{}/v1/entries", v.url);
    let body = entry_body("promoted");

    // One raw keep-alive connection and one pooled reqwest client, both opened before.
    let mut conn = RawConn::connect(&v.url);
    let (st, res) = conn.request("POST", "/v1/entries", Some(&v.token), Some(&body));
    assert_eq!((st, code(&res)), (503, "read_only_backup"), "{res}");
    let c = plain();
    let (st, res) = call(&c, Method::POST, &entries, &v.token, Some(body.clone())).await;
    assert_eq!((st, code(&res)), (503, "read_only_backup"), "{res}");

    pop.write_config(&config_yaml(&pop, "primary", &Opts::default()));
    v.sighup();
    wait_role_raw(&mut conn, "primary");

    // Same connection, same request flow: now the write goes through.
    let (st, res) = conn.request("POST", "/v1/entries", Some(&v.token), Some(&body));
    assert_eq!(st, 201, "{res}");
    let (st, res) = call(&c, Method::POST, &entries, &v.token, Some(body.clone())).await;
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
    pop.write_config(&config_yaml(&pop, "primary", &Opts::default()));
    let v = pop.start();
    let entries = format!("{}/v1/entries", v.url);
    let c = plain();
    let mut conn = RawConn::connect(&v.url);
    let (st, res) = conn.request(
        "POST",
        "/v1/entries",
        Some(&v.token),
        Some(&entry_body("before")),
    );
    assert_eq!(st, 201, "{res}");
    let (st, res) = call(&c, Method::POST, &entries, &v.token, Some(entry_body("a"))).await;
    assert_eq!(st, 201, "{res}");

    pop.write_config(&config_yaml(&pop, "backup", &Opts::default()));
    v.sighup();
    wait_role_raw(&mut conn, "backup");

    let (st, res) = conn.request(
        "POST",
        "/v1/entries",
        Some(&v.token),
        Some(&entry_body("after")),
    );
    assert_eq!((st, code(&res)), (503, "read_only_backup"), "{res}");
    let (st, res) = call(&c, Method::POST, &entries, &v.token, Some(entry_body("b"))).await;
    assert_eq!((st, code(&res)), (503, "read_only_backup"), "{res}");
    let (st, list) = call(&c, Method::GET, &entries, &v.token, None).await;
    assert_eq!(st, 200, "{list}");
    assert!(list.to_string().contains("before"), "{list}");
}

#[tokio::test(flavor = "multi_thread")]
async fn invalid_reload_keeps_the_old_config_and_alerts() {
    let ca = Ca::new("control-plane CA");
    let cp = ControlPlane::start(&ca, CpMode::Ok);
    let pop = Pop::new();
    let files = CpFiles::new(&pop, &cp, &ca);
    let good = config_yaml(
        &pop,
        "primary",
        &Opts {
            control_plane: Some(&files),
            ..Opts::default()
        },
    );
    pop.write_config(&good);
    let mut v = pop.start();
    let c = plain();

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
    let (st, res) = call(
        &c,
        Method::POST,
        &format!("{}/v1/entries", v.url),
        &v.token,
        Some(entry_body("still")),
    )
    .await;
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
    pop.write_config(&config_yaml(&pop, "backup", &Opts::default()));
    let v = pop.start();
    let c = plain();
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
    let deadline = std::time::Instant::now() + RELOAD_TIMEOUT;
    while !passes(&new).await {
        assert!(
            std::time::Instant::now() < deadline,
            "new token not accepted"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(!passes(&old).await, "the old token still works");
}

#[tokio::test(flavor = "multi_thread")]
async fn reload_swaps_certificates_for_new_connections_only() {
    let ca1 = Ca::new("POP CA 1");
    let ca2 = Ca::new("POP CA 2");
    let pop = Pop::new();
    let tls = pop.write_tls(&ca1);
    let yaml = config_yaml(
        &pop,
        "backup",
        &Opts {
            tls: Some(&tls),
            ..Opts::default()
        },
    );
    pop.write_config(&yaml);
    let v = pop.start();
    let old_client = client(Some(&ca1), Some(&ca1.leaf("calgary-01")));
    let (st, res) = push(&old_client, &v.url, &pop.token)
        .await
        .expect("push over CA 1");
    assert!(accepted_by_backup(st, &res), "{st} {res}");

    // Rotate to CA 2: new certificate, key and CA files.
    let leaf = ca2.leaf("pop");
    let cert2 = pop.path("replication2.crt");
    let key2 = pop.path("replication2.key");
    let ca2_file = pop.path("ca2.crt");
    write_file(&cert2, &leaf.cert_pem, 0o644);
    write_file(&key2, &leaf.key_pem, 0o600);
    write_file(&ca2_file, &ca2.pem(), 0o644);
    pop.write_config(
        &yaml
            .replace(&q(&tls.cert), &q(&cert2))
            .replace(&q(&tls.key), &q(&key2))
            .replace(&q(&tls.ca), &q(&ca2_file)),
    );
    v.sighup();
    assert!(
        v.wait_stderr("configuration reloaded", RELOAD_TIMEOUT),
        "{}",
        v.stderr()
    );

    // New connections get the new certificate and need a CA 2 client certificate.
    let new_client = client(Some(&ca2), Some(&ca2.leaf("calgary-01")));
    let (st, res) = push(&new_client, &v.url, &pop.token)
        .await
        .expect("push over CA 2");
    assert!(accepted_by_backup(st, &res), "{st} {res}");
    let fresh_old = client(Some(&ca1), Some(&ca1.leaf("calgary-01")));
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

#[tokio::test(flavor = "multi_thread")]
async fn reload_cannot_turn_tls_on() {
    let pop = Pop::new();
    let plain_yaml = config_yaml(&pop, "primary", &Opts::default());
    pop.write_config(&plain_yaml);
    let mut v = pop.start();
    let tls = pop.write_tls(&Ca::new("POP CA"));
    pop.write_config(&config_yaml(
        &pop,
        "backup",
        &Opts {
            tls: Some(&tls),
            ..Opts::default()
        },
    ));
    v.sighup();
    assert!(
        v.wait_stderr("needs a restart", RELOAD_TIMEOUT),
        "{}",
        v.stderr()
    );
    // Nothing changed: still plain HTTP, still a primary.
    assert!(v.is_running());
    assert_eq!(health(&plain(), &v.url).await["role"], "primary");
}

#[tokio::test(flavor = "multi_thread")]
async fn heartbeats_follow_a_reload() {
    let ca = Ca::new("control-plane CA");
    let cp = ControlPlane::start(&ca, CpMode::Ok);
    let pop = Pop::new();
    let files = CpFiles::new(&pop, &cp, &ca);
    let opts = Opts {
        control_plane: Some(&files),
        ..Opts::default()
    };
    pop.write_config(&config_yaml(&pop, "primary", &opts));
    let v = pop.start();
    cp.wait_for("/v1/heartbeat", 1, Duration::from_secs(5), |r| {
        r.body["role"] == "primary" && r.body["pop_id"] == "calgary-01"
    })
    .await;
    pop.write_config(&config_yaml(&pop, "backup", &opts));
    v.sighup();
    cp.wait_for("/v1/heartbeat", 1, Duration::from_secs(5), |r| {
        r.body["role"] == "backup" && r.body["pop_id"] == "zurich-01"
    })
    .await;
}
