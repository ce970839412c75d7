//! Entry CRUD, and the rule that a value leaves only through a single-field read.

use crate::helpers::{assert_error, distinctive, json_ok, spawn_app};
use reqwest::StatusCode;
use serde_json::{Value, json};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crud_round_trip_never_lists_values() {
    let app = spawn_app().await;
    let owner = app.owner_token.clone();
    let password = distinctive("pw");
    let pin = distinctive("pin");
    let id = app
        .create_entry(&json!({
            "title": "Mail",
            "url": "https://mail.example.com",
            "username": "alice",
            "fields": [
                {"name": "password", "value": password, "tier": "vault"},
                {"name": "pin", "value": pin}
            ]
        }))
        .await;

    // The list shows metadata only.
    let (text, entries) = app.list_entries(&owner).await;
    assert!(
        !text.contains(&password) && !text.contains(&pin),
        "list leaks a value: {text}"
    );
    assert_eq!(entries.len(), 1);
    let e = &entries[0];
    assert_eq!(e["id"], id.as_str());
    assert_eq!(e["title"], "Mail");
    assert_eq!(e["url"], "https://mail.example.com");
    assert_eq!(e["username"], "alice");
    let fields = e["fields"].as_array().unwrap();
    assert_eq!(fields.len(), 2);
    assert_eq!(fields[0]["name"], "password");
    assert_eq!(fields[0]["tier"], "vault");
    assert_eq!(fields[1]["name"], "pin");
    assert_eq!(fields[1]["tier"], "vault", "tier defaults to vault");
    for f in fields {
        assert!(f.get("value").is_none(), "a listed field has a value: {f}");
    }
    assert!(e["created_at"].is_string() && e["updated_at"].is_string());
    let version = e["version"].as_i64().expect("version");

    // So does one entry.
    let res = app.get_entry(&owner, &id).await;
    assert_eq!(res.status(), StatusCode::OK);
    let text = res.text().await.unwrap();
    assert!(
        !text.contains(&password) && !text.contains(&pin),
        "entry leaks a value: {text}"
    );
    let shown: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(&shown, e, "GET /v1/entries/{{id}} agrees with the list");

    // A value comes back only through its field, exactly as stored.
    let f = json_ok(app.get_field(&owner, &id, "password").await).await;
    assert_eq!(
        f,
        json!({"name": "password", "value": password, "tier": "vault"})
    );

    // PUT replaces the whole entry.
    let token = distinctive("api-token");
    let res = app
        .put_entry(
            &owner,
            &id,
            &json!({"title": "Mail (work)", "fields": [{"name": "api_token", "value": token}]}),
        )
        .await;
    let written = json_ok(res).await;
    assert_eq!(written["id"], id.as_str());
    assert!(
        written["version"].as_i64().unwrap() > version,
        "version grows on replace: {written}"
    );
    assert_error(
        app.get_field(&owner, &id, "password").await,
        StatusCode::NOT_FOUND,
        "field_not_found",
    )
    .await;
    assert_eq!(app.field_value(&owner, &id, "api_token").await, token);
    let shown = json_ok(app.get_entry(&owner, &id).await).await;
    assert_eq!(shown["title"], "Mail (work)");
    assert!(
        shown["url"].is_null() && shown["username"].is_null(),
        "{shown}"
    );
    assert_eq!(
        shown["fields"],
        json!([{"name": "api_token", "tier": "vault", "agent_access": "read", "allowed_hosts": []}])
    );
    assert!(shown["version"].as_i64().unwrap() > version);

    // DELETE, then it is gone everywhere.
    let res = app.delete_entry(&owner, &id).await;
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    assert_error(
        app.get_entry(&owner, &id).await,
        StatusCode::NOT_FOUND,
        "entry_not_found",
    )
    .await;
    assert_error(
        app.get_field(&owner, &id, "api_token").await,
        StatusCode::NOT_FOUND,
        "entry_not_found",
    )
    .await;
    assert_error(
        app.delete_entry(&owner, &id).await,
        StatusCode::NOT_FOUND,
        "entry_not_found",
    )
    .await;
    assert_eq!(app.entry_count().await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_field_and_replace_of_missing_entry_are_404() {
    let app = spawn_app().await;
    let owner = app.owner_token.clone();
    let id = app
        .create_entry(&json!({"title": "t", "fields": [{"name": "a", "value": "x"}]}))
        .await;
    assert_error(
        app.get_field(&owner, &id, "b").await,
        StatusCode::NOT_FOUND,
        "field_not_found",
    )
    .await;
    let other = uuid::Uuid::new_v4().to_string();
    assert_error(
        app.put_entry(&owner, &other, &json!({"title": "t"})).await,
        StatusCode::NOT_FOUND,
        "entry_not_found",
    )
    .await;
    assert_eq!(app.entry_count().await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn entries_survive_a_restart() {
    let app = spawn_app().await;
    let secret = distinctive("durable");
    let id = app
        .create_entry(&json!({"title": "kept", "fields": [{"name": "s", "value": secret}]}))
        .await;
    let stopped = app.stop().await;
    let app = stopped.start().await;
    let owner = app.owner_token.clone();
    assert_eq!(app.field_value(&owner, &id, "s").await, secret);
    let (_, entries) = app.list_entries(&owner).await;
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0]["title"], "kept");
}

/// Versions order every change (replication's last-write-wins relies on it): they grow with
/// each write, also when writes share a commit, and keep growing after a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn versions_grow_across_writes_commits_and_restarts() {
    let app = std::sync::Arc::new(spawn_app().await);
    let version_of = |v: &Value| v["version"].as_i64().expect("version");
    let body = json!({"title": "t", "fields": [{"name": "a", "value": "1"}]});
    let id = app.create_entry(&body).await;
    let first = version_of(&json_ok(app.get_entry(&app.owner_token, &id).await).await);

    // Concurrent creates share group commits; each still gets its own version.
    let mut creates = tokio::task::JoinSet::new();
    for _ in 0..16 {
        let (app, body) = (app.clone(), body.clone());
        creates.spawn(async move { app.create_entry(&body).await });
    }
    let ids = creates.join_all().await;
    let mut versions = Vec::new();
    for other in &ids {
        versions.push(version_of(
            &json_ok(app.get_entry(&app.owner_token, other).await).await,
        ));
    }
    versions.sort_unstable();
    versions.dedup();
    assert_eq!(versions.len(), ids.len(), "two writes share a version");
    assert!(versions[0] > first);
    let last = *versions.last().unwrap();

    let app = std::sync::Arc::into_inner(app).expect("no other handle");
    let app = app.stop().await.start().await;
    let res = app.put_entry(&app.owner_token, &id, &body).await;
    assert_eq!(res.status(), StatusCode::OK);
    let after = version_of(&json_ok(app.get_entry(&app.owner_token, &id).await).await);
    assert!(after > last, "version {after} after restart, {last} before");
}
