//! `POST /v1/owner/rotate`: the owner's token is replaced, every scope key it holds re-wrapped
//! for the new one; the old token stops at once, agents carry on; a retry is idempotent.

use crate::helpers::{assert_error, assert_no_store, json_ok, send, spawn_app};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

const ROTATE: &str = "/v1/owner/rotate";

/// A token in the shape `clavitor owner rotate` makes: `clv_` + 32 random bytes, base64url.
fn fresh_token() -> String {
    clavitor::crypto::Token::generate().expose().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotation_replaces_the_owner_token_and_keeps_every_field_readable() {
    let mut app = spawn_app().await;
    let old = app.owner_token.clone();
    let id = app
        .create_entry(&json!({"title": "prod", "fields": [
            {"name": "db", "value": "db-secret", "tier": "credential", "scope": "deploy"},
            {"name": "ci", "value": "ci-secret", "tier": "credential", "scope": "ci"},
            {"name": "note", "value": "vault-secret", "tier": "vault"}
        ]}))
        .await;
    let (_, agent) = app
        .create_agent(&json!({"name": "deployer", "scopes": ["deploy"]}))
        .await;

    let new = fresh_token();
    let res = send(
        app.request(Method::POST, ROTATE, &old)
            .json(&json!({ "token": new })),
    )
    .await;
    assert_no_store(&res);
    let v = json_ok(res).await;
    assert_eq!(
        v,
        json!({ "token": new }),
        "the token in force, and nothing else"
    );

    // The old token is refused on the very next request, for everything.
    app.assert_refused(&old).await;
    // The new one reads every tier, including both scopes' credential fields.
    for (field, want) in [
        ("db", "db-secret"),
        ("ci", "ci-secret"),
        ("note", "vault-secret"),
    ] {
        assert_eq!(app.field_value(&new, &id, field).await, want);
    }
    // Agents are untouched.
    assert_eq!(app.field_value(&agent, &id, "db").await, "db-secret");
    // The new owner writes to existing scopes (the re-wrapped key, not a second one) and
    // makes agents for them.
    app.owner_token = new.clone();
    let id2 = app
        .create_entry(&json!({"title": "more", "fields": [
            {"name": "db", "value": "db-2", "tier": "credential", "scope": "deploy"}
        ]}))
        .await;
    assert_eq!(app.field_value(&agent, &id2, "db").await, "db-2");
    let (_, ci_agent) = app
        .create_agent(&json!({"name": "ci-bot", "scopes": ["ci"]}))
        .await;
    assert_eq!(app.field_value(&ci_agent, &id, "ci").await, "ci-secret");

    // It holds across a restart: the database, not only memory, has the new token.
    let app = app.stop().await.start().await;
    assert_eq!(app.field_value(&new, &id, "db").await, "db-secret");
    app.assert_refused(&old).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_with_the_new_token_changes_nothing() {
    let app = spawn_app().await;
    let old = app.owner_token.clone();
    let id = app
        .create_entry(&json!({"title": "t", "fields": [
            {"name": "k", "value": "v", "tier": "credential", "scope": "s"}
        ]}))
        .await;
    let new = fresh_token();
    let body = json!({ "token": new });
    json_ok(send(app.request(Method::POST, ROTATE, &old).json(&body)).await).await;

    // The answer was "lost": the client tries again. With the old token: refused...
    assert_error(
        send(app.request(Method::POST, ROTATE, &old).json(&body)).await,
        StatusCode::UNAUTHORIZED,
        "invalid_token",
    )
    .await;
    // ...with the token it proposed: 200 and the same token, nothing changed.
    let before = agent_rows(&app).await;
    let v = json_ok(send(app.request(Method::POST, ROTATE, &new).json(&body)).await).await;
    assert_eq!(v["token"], new.as_str());
    assert_eq!(agent_rows(&app).await, before);
    assert_eq!(app.field_value(&new, &id, "k").await, "v");
}

/// Without a body the server makes the new token and answers it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_body_the_server_makes_the_token() {
    let app = spawn_app().await;
    let id = app
        .create_entry(&json!({"title": "t", "fields": [
            {"name": "k", "value": "v", "tier": "credential", "scope": "s"}
        ]}))
        .await;
    let v = json_ok(send(app.owner(Method::POST, ROTATE)).await).await;
    let new = v["token"].as_str().expect("token").to_owned();
    assert!(new.starts_with("clv_") && new != app.owner_token, "{v}");
    assert_eq!(app.field_value(&new, &id, "k").await, "v");
    app.assert_refused(&app.owner_token).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_proposals_and_agents_are_refused_and_change_nothing() {
    let app = spawn_app().await;
    let (_, agent) = app
        .create_agent(&json!({"name": "a", "scopes": ["s"]}))
        .await;
    assert_error(
        send(app.request(Method::POST, ROTATE, &agent)).await,
        StatusCode::FORBIDDEN,
        "owner_only",
    )
    .await;
    for bad in [
        json!({"token": "hunter2"}),
        json!({"token": "clv_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"}),
        json!({"token": format!("{}x", fresh_token())}),
        json!({"token": agent}),
    ] {
        let res = send(app.owner(Method::POST, ROTATE).json(&bad)).await;
        let status = res.status();
        assert!(
            status == StatusCode::BAD_REQUEST || status == StatusCode::CONFLICT,
            "{bad}: {status} {}",
            res.text().await.unwrap_or_default()
        );
    }
    let res = send(
        app.owner(Method::POST, ROTATE)
            .header("content-type", "application/json")
            .body("{\"token\": 5}"),
    )
    .await;
    assert_error(res, StatusCode::BAD_REQUEST, "invalid_json").await;
    // The owner token still works; the agent's too.
    assert_eq!(app.entry_count().await, 0);
    assert_eq!(
        app.get("/v1/entries", &agent).await.status(),
        StatusCode::OK
    );
}

/// `(id, version, updated_at)` of every agent row, the owner's included, read over the API's
/// own database file.
async fn agent_rows(app: &crate::helpers::TestApp) -> Vec<(String, i64, i64)> {
    let db = app.dir().join("data").join("vault.db");
    tokio::task::spawn_blocking(move || {
        let c =
            rusqlite::Connection::open_with_flags(&db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
                .expect("open the database");
        let mut stmt = c
            .prepare("SELECT id, version, updated_at FROM agents ORDER BY id")
            .expect("query");
        stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .expect("rows")
            .collect::<Result<Vec<_>, _>>()
            .expect("agent rows")
    })
    .await
    .expect("read task")
}

/// A scope has one key: a writer holding no copy of it gets 409 naming the holders, never a
/// second key that would leave the existing fields unreadable to one side.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scope_key_held_only_by_others_is_not_replaced() {
    let app = spawn_app().await;
    let id = app
        .create_entry(&json!({"title": "t", "fields": [
            {"name": "k", "value": "v1", "tier": "credential", "scope": "deploy"}
        ]}))
        .await;
    let (_, agent) = app
        .create_agent(&json!({"name": "deployer", "scopes": ["deploy"]}))
        .await;
    // The owner loses its copy (as a second owner, made by a POP before owners replicated,
    // never had one); the agent keeps its copy.
    let app = app.without_owner_key_copy("deploy").await;

    let body = json!({"title": "t2", "fields": [
        {"name": "k", "value": "v2", "tier": "credential", "scope": "deploy"}
    ]});
    let text = assert_error(
        app.post_entry(&app.owner_token, &body).await,
        StatusCode::CONFLICT,
        "conflict",
    )
    .await;
    let message = serde_json::from_str::<Value>(&text).unwrap()["error"]["message"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        message.contains("\"deploy\"") && message.contains("agent \"deployer\""),
        "{message}"
    );
    // An agent given the scope cannot be granted a key the owner lacks; replacing the entry
    // is refused like the write.
    assert_error(
        app.post_agent(
            &app.owner_token,
            &json!({"name": "other", "scopes": ["deploy"]}),
        )
        .await,
        StatusCode::CONFLICT,
        "scope_key_not_held",
    )
    .await;
    assert_error(
        app.put_entry(&app.owner_token, &id, &body).await,
        StatusCode::CONFLICT,
        "conflict",
    )
    .await;
    // Nothing changed: the agent reads the field with the one key there is.
    assert_eq!(app.field_value(&agent, &id, "k").await, "v1");
    let (_, agents) = app.list_agents().await;
    assert_eq!(agents.len(), 1, "{agents:?}");
    assert_eq!(app.entry_count().await, 1);
    // Other scopes still work for the owner.
    app.create_entry(&json!({"title": "t3", "fields": [
        {"name": "k", "value": "v3", "tier": "credential", "scope": "other"}
    ]}))
    .await;
}
