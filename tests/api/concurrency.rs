//! Many writers at once: group commit must acknowledge each one and lose none.

use crate::helpers::spawn_app;
use reqwest::StatusCode;
use serde_json::json;
use std::collections::HashSet;

const WRITERS: usize = 200;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_creates_all_commit() {
    let app = spawn_app().await;
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..WRITERS {
        let req = app.owner(reqwest::Method::POST, "/v1/entries").json(
            &json!({"title": format!("entry {i}"), "fields": [
                {"name": "n", "value": format!("value {i}")},
                {"name": "c", "value": format!("cred {i}"), "tier": "credential", "scope": "bulk"}
            ]}),
        );
        tasks.spawn(async move {
            let res = req.send().await.expect("request reaches the server");
            let status = res.status();
            let body: serde_json::Value = res.json().await.expect("JSON body");
            assert_eq!(status, StatusCode::CREATED, "{body}");
            body["id"].as_str().expect("id").to_owned()
        });
    }
    let mut ids = HashSet::new();
    let joined = tokio::time::timeout(std::time::Duration::from_secs(15), async {
        while let Some(r) = tasks.join_next().await {
            ids.insert(r.expect("writer task"));
        }
    })
    .await;
    assert!(joined.is_ok(), "200 writes did not finish in 15 s");
    assert_eq!(ids.len(), WRITERS, "every write got its own id");

    let (_, entries) = app.list_entries(&app.owner_token).await;
    let listed: HashSet<String> = entries
        .iter()
        .map(|e| e["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(listed, ids);
    // One scope key was made for all of them: every credential field opens.
    for i in [0, WRITERS / 2, WRITERS - 1] {
        let e = entries
            .iter()
            .find(|e| e["title"] == format!("entry {i}"))
            .unwrap();
        let id = e["id"].as_str().unwrap();
        assert_eq!(
            app.field_value(&app.owner_token, id, "c").await,
            format!("cred {i}")
        );
    }
}
