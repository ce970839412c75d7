//! `GET /v1/changes`: the long poll `clavitor run --watch` waits on.

use crate::helpers::{TestApp, assert_error, json_ok, spawn_app};
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::time::{Duration, Instant};

async fn changes(app: &TestApp, token: &str, query: &str) -> Value {
    json_ok(app.get(&format!("/v1/changes{query}"), token).await).await
}

fn entry(scope: &str) -> Value {
    json!({"title": format!("in {scope}"), "fields": [
        {"name": "k", "value": "value-1", "tier": "credential", "scope": scope}]})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiting_agent_wakes_for_its_own_entries_only() {
    let app = spawn_app().await;
    let (_, agent) = app
        .create_agent(&json!({"name": "w", "scopes": ["deploy"]}))
        .await;
    let mine = app.create_entry(&entry("deploy")).await;
    let now = changes(&app, &agent, "").await;
    let v0 = now["version"].as_i64().unwrap();
    assert_eq!(now["entries"], json!([]));

    // Nothing new: wait=0 answers at once, empty.
    let v = changes(&app, &agent, &format!("?since={v0}&wait=0")).await;
    assert_eq!(v["entries"], json!([]));

    let poll = {
        let (client, url, agent) = (
            app.client.clone(),
            app.url(&format!("/v1/changes?since={v0}&wait=20")),
            agent.clone(),
        );
        tokio::spawn(async move {
            let started = Instant::now();
            let v: Value = client
                .get(url)
                .bearer_auth(agent)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            (v, started.elapsed())
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let theirs = app.create_entry(&entry("ops")).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !poll.is_finished(),
        "a change outside its scopes does not wake it"
    );
    let res = app
        .put_entry(
            &app.owner_token,
            &mine,
            &json!({"title": "in deploy", "fields": [
            {"name": "k", "value": "value-2", "tier": "credential", "scope": "deploy"}]}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    let (v, took) = tokio::time::timeout(Duration::from_secs(10), poll)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(v["entries"], json!([mine]), "{v}");
    assert!(
        took < Duration::from_secs(15),
        "woken by the commit, not the timeout"
    );
    let v1 = v["version"].as_i64().unwrap();
    assert!(v1 > v0);

    // The owner sees both; a deletion counts as a change.
    let all = changes(&app, &app.owner_token, &format!("?since={v0}")).await;
    let mut ids: Vec<&str> = all["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e.as_str().unwrap())
        .collect();
    ids.sort();
    let mut want = vec![mine.as_str(), theirs.as_str()];
    want.sort();
    assert_eq!(ids, want);
    app.delete_entry(&app.owner_token, &mine).await;
    let v = changes(&app, &agent, &format!("?since={v1}&wait=5")).await;
    assert_eq!(v["entries"], json!([mine]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_waiters_are_woken_by_one_commit() {
    let app = spawn_app().await;
    let (_, agent) = app
        .create_agent(&json!({"name": "w", "scopes": ["deploy"]}))
        .await;
    let v0 = changes(&app, &agent, "").await["version"].as_i64().unwrap();
    let mut polls = Vec::new();
    for _ in 0..100 {
        let (client, url, agent) = (
            app.client.clone(),
            app.url(&format!("/v1/changes?since={v0}&wait=20")),
            agent.clone(),
        );
        polls.push(tokio::spawn(async move {
            client
                .get(url)
                .bearer_auth(agent)
                .send()
                .await
                .unwrap()
                .json::<Value>()
                .await
                .unwrap()
        }));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let id = app.create_entry(&entry("deploy")).await;
    for p in polls {
        let v = tokio::time::timeout(Duration::from_secs(10), p)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(v["entries"], json!([id]));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_parameters_and_unknown_versions() {
    let app = spawn_app().await;
    for q in ["?since=x", "?wait=26", "?wait=-1", "?other=1"] {
        assert_error(
            app.get(&format!("/v1/changes{q}"), &app.owner_token).await,
            StatusCode::BAD_REQUEST,
            "validation_failed",
        )
        .await;
    }
    let v = changes(&app, &app.owner_token, "?since=999999&wait=0").await;
    assert_eq!(v["reset"], true, "a version from the future: start over");
    assert_error(
        app.get("/v1/changes", "clv_nope").await,
        StatusCode::UNAUTHORIZED,
        "invalid_token",
    )
    .await;
}
