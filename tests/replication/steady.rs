//! Steady state: what the primary writes, the backup serves with the same tokens and values.

use crate::helpers::*;
use serde_json::json;
use std::collections::HashSet;
use std::time::{Duration, Instant};

#[tokio::test(flavor = "multi_thread")]
async fn writes_on_the_primary_appear_on_the_backup() {
    let pair = Pair::new(Opts::default());
    let api = &pair.api;
    let (p, b) = (pair.purl(), pair.burl());
    let owner = pair.owner();

    // An agent holding scope "deploy", then entries with vault and credential fields.
    let (st, agent) = api
        .call(
            reqwest::Method::POST,
            &format!("{p}/v1/agents"),
            &owner,
            Some(&json!({"name": "ci", "scopes": ["deploy"]})),
        )
        .await;
    assert_eq!(st, 201, "{agent}");
    let agent_token = agent["token"].as_str().expect("agent token").to_owned();

    let t0 = Instant::now();
    let mut ids = HashSet::new();
    let mut cred = Vec::new();
    for i in 0..10 {
        let body = json!({
            "title": format!("server-{i}"),
            "url": "https://example.com",
            "username": "root",
            "fields": [
                {"name": "password", "value": format!("vault-secret-{i}"), "tier": "vault"},
                {"name": "deploy-key", "value": format!("cred-secret-{i}"), "tier": "credential", "scope": "deploy"},
            ],
        });
        let id = api.create(&p, &owner, &body).await;
        ids.insert(id.clone());
        cred.push((id, i));
    }
    let took = pair.wait_backup_has(&ids, CONVERGE).await;
    eprintln!(
        "steady state: 10 entries on the backup {:?} after the first write ({took:?} after the last)",
        t0.elapsed()
    );

    // Field values, as the primary's owner and as the agent, are the same on both POPs.
    for (id, i) in &cred {
        for base in [&p, &b] {
            let (st, f) = api.field(base, &owner, id, "password").await;
            assert_eq!(st, 200, "{base}: {f}\n{}", pair.logs());
            assert_eq!(f["value"], format!("vault-secret-{i}"));
            let (st, f) = api.field(base, &owner, id, "deploy-key").await;
            assert_eq!(st, 200, "{base}: {f}");
            assert_eq!(f["value"], format!("cred-secret-{i}"));
            let (st, f) = api.field(base, &agent_token, id, "deploy-key").await;
            assert_eq!(st, 200, "agent on {base}: {f}\n{}", pair.logs());
            assert_eq!(f["value"], format!("cred-secret-{i}"));
            // The agent holds no vault-tier access.
            let (st, _) = api.field(base, &agent_token, id, "password").await;
            assert_ne!(st, 200, "agent read a vault field on {base}");
        }
        let (sp, ep) = api.get_entry(&p, &owner, id).await;
        let (sb, eb) = api.get_entry(&b, &owner, id).await;
        assert_eq!((sp, sb), (200, 200));
        assert_eq!(ep, eb, "entry differs between primary and backup");
    }

    // The primary reports nothing owed and everything acknowledged.
    let h = api.wait_caught_up(&p, Duration::from_secs(10)).await;
    let r = &h["replication"];
    assert!(r["last_success"].is_string(), "{h}");
    assert!(r["last_error"].is_null(), "{h}");
    assert!(
        r["lag_ms"]["p50"].is_i64() && r["lag_ms"]["p99"].is_i64(),
        "{h}"
    );
    eprintln!("steady state: primary healthz replication = {r}");

    // The backup reports the push.
    let hb = api.health(&b).await;
    assert_eq!(hb["role"], "backup", "{hb}");
    let rb = &hb["replication"];
    assert!(rb["last_push"].is_string(), "{hb}");
    assert_eq!(rb["applied_version"], r["acked_version"], "{hb} vs {h}");
    assert!(
        rb["committed_version"].as_i64() >= r["committed_version"].as_i64(),
        "{hb}"
    );

    // An update replicates too.
    let id = &cred[0].0;
    let (st, v) = api
        .call(
            reqwest::Method::PUT,
            &format!("{p}/v1/entries/{id}"),
            &owner,
            Some(&entry("renamed")),
        )
        .await;
    assert_eq!(st, 200, "{v}");
    wait_for(CONVERGE, "the update on the backup", || async {
        let (_, e) = api.get_entry(&b, &owner, id).await;
        (e["title"] == "renamed").then_some(()).ok_or(e)
    })
    .await;
    let (_, f) = api.field(&b, &owner, id, "password").await;
    assert_eq!(f["value"], "pw-renamed");
    assert_eq!(api.ids(&b, &pair.backup.owner).await.len(), 10);

    // Revoking the agent on the primary revokes it on the backup: its token stops working there.
    let agent_id = agent["id"].as_str().expect("agent id");
    let (st, v) = api
        .call(
            reqwest::Method::DELETE,
            &format!("{p}/v1/agents/{agent_id}"),
            &owner,
            None,
        )
        .await;
    assert_eq!(st, 204, "{v}");
    let probe = &cred[1].0;
    let t0 = Instant::now();
    wait_for(
        CONVERGE,
        "the revoked agent refused on the backup",
        || async {
            let (st, v) = api.field(&b, &agent_token, probe, "deploy-key").await;
            (st == 401).then_some(()).ok_or((st, v))
        },
    )
    .await;
    eprintln!(
        "steady state: revocation effective on the backup after {:?}",
        t0.elapsed()
    );
    let (st, _) = api.field(&p, &agent_token, probe, "deploy-key").await;
    assert_eq!(st, 401);
    // The owner still reads the credential field on the backup.
    let (st, f) = api.field(&b, &owner, probe, "deploy-key").await;
    assert_eq!(
        (st, f["value"].as_str()),
        (200, Some("cred-secret-1")),
        "{f}"
    );
}
