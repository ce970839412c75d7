//! An owner rotation on the primary reaches the backup like any other change: the re-wrapped
//! scope keys and the new token hash are owed, pushed and applied, so after a failover the
//! promoted POP accepts the new owner token, refuses the old, and opens credential fields.

use crate::helpers::*;
use serde_json::json;

#[tokio::test(flavor = "multi_thread")]
async fn an_owner_rotation_replicates_to_the_backup() {
    let pair = Pair::new(Opts::default());
    let api = &pair.api;
    let (p, b) = (pair.purl(), pair.burl());
    let old = pair.owner();
    let body = json!({"title": "db", "fields": [
        {"name": "key", "value": "cred-secret", "tier": "credential", "scope": "deploy"}
    ]});
    let id = api.create(&p, &old, &body).await;
    pair.wait_backup_has(&[id.clone()].into(), CONVERGE).await;
    api.wait_caught_up(&p, CONVERGE).await;

    let (st, v) = api
        .call(
            reqwest::Method::POST,
            &format!("{p}/v1/owner/rotate"),
            &old,
            None,
        )
        .await;
    assert_eq!(st, 200, "{v}");
    let new = v["token"].as_str().expect("token").to_owned();
    // Owed, then acknowledged: the backlog drains again.
    api.wait_caught_up(&p, CONVERGE).await;

    wait_for(CONVERGE, "the new owner token on the backup", || async {
        let (st, f) = api.field(&b, &new, &id, "key").await;
        (st == 200 && f["value"] == "cred-secret")
            .then_some(())
            .ok_or((st, f))
    })
    .await;
    let (st, v) = api.field(&b, &old, &id, "key").await;
    assert_eq!(
        st, 401,
        "the old owner token still works on the backup: {v}"
    );
}
