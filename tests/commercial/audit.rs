//! A POP's configuration reloads are in its audit trail, by the system, with their outcome.

use crate::helpers::*;
use serde_json::Value;
use std::time::Duration;

async fn reloads(c: &reqwest::Client, v: &Vault) -> Vec<Value> {
    let res = c
        .get(format!("{}/v1/audit?action=config.reload", v.url))
        .bearer_auth(&v.token)
        .send()
        .await
        .expect("the POP answers");
    assert_eq!(res.status(), 200);
    let page: Value = res.json().await.unwrap();
    page["events"].as_array().unwrap().clone()
}

#[tokio::test(flavor = "multi_thread")]
async fn reloads_are_recorded_with_their_outcome() {
    let pop = Pop::new();
    pop.configure("primary", &Opts::default());
    let v = pop.start();
    let c = pop.client();
    v.sighup();
    assert!(v.wait_stderr("configuration reloaded", RELOAD_TIMEOUT));
    pop.write_config("role: [this is not a config");
    v.sighup();
    assert!(v.wait_stderr("config_reload_failed", RELOAD_TIMEOUT));
    let events = wait_for(Duration::from_secs(10), "two reload events", || async {
        let e = reloads(&c, &v).await;
        if e.len() == 2 { Ok(e) } else { Err(e) }
    })
    .await;
    assert_eq!(events[0]["outcome"], "ok", "{events:?}");
    assert_eq!(events[1]["outcome"], "error", "{events:?}");
    for e in &events {
        assert_eq!(e["actor"]["kind"], "system", "{e}");
        assert_eq!(
            e["details"]["path"],
            pop.path("replication.yaml").display().to_string(),
            "{e}"
        );
    }
}
