//! `POST /v1/entries/bulk`: many entries in one transaction, all or nothing; owner only; its
//! own body limit (larger than single requests') and entry cap, both enforced.

use crate::helpers::{TestApp, assert_error, json_ok, send, spawn_app};
use reqwest::{Method, Response, StatusCode};
use serde_json::{Value, json};

const BULK: &str = "/v1/entries/bulk";

async fn post_bulk(app: &TestApp, token: &str, body: &Value) -> Response {
    send(app.request(Method::POST, BULK, token).json(body)).await
}

async fn post_raw(app: &TestApp, body: Vec<u8>) -> Response {
    send(
        app.owner(Method::POST, BULK)
            .header("content-type", "application/json")
            .body(body),
    )
    .await
}

/// The ids of a 201 answer.
async fn created(res: Response) -> Vec<String> {
    let status = res.status();
    let text = res.text().await.expect("read body");
    assert_eq!(status, StatusCode::CREATED, "bulk create: {text}");
    let v: Value = serde_json::from_str(&text).expect("JSON body");
    v["ids"]
        .as_array()
        .expect("ids array")
        .iter()
        .map(|i| i.as_str().expect("id string").to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_entry_is_created_with_its_tiers_and_readable() {
    let app = spawn_app().await;
    let body = json!({"entries": [
        {"title": "mail", "url": "https://mail.example.com", "username": "ann",
         "fields": [{"name": "password", "value": "pw-1", "tier": "credential", "scope": "imported"},
                    {"name": "notes", "value": "plain note"}]},
        {"title": "bank", "fields": [{"name": "pin", "value": "4321", "tier": "credential", "scope": "imported"}]},
        {"title": "blob", "fields": [{"name": "recovery", "value": "q83vEjRz", "tier": "identity"}]},
    ]});
    let ids = created(post_bulk(&app, &app.owner_token, &body).await).await;
    assert_eq!(ids.len(), 3);

    let (_, listed) = app.list_entries(&app.owner_token).await;
    let titles: Vec<&str> = listed.iter().filter_map(|e| e["title"].as_str()).collect();
    assert_eq!(titles, ["mail", "bank", "blob"], "in the order sent");
    assert_eq!(
        app.field_value(&app.owner_token, &ids[0], "password").await,
        "pw-1"
    );
    assert_eq!(
        app.field_value(&app.owner_token, &ids[0], "notes").await,
        "plain note"
    );
    assert_eq!(
        app.field_value(&app.owner_token, &ids[1], "pin").await,
        "4321"
    );
    assert_eq!(
        app.field_value(&app.owner_token, &ids[2], "recovery").await,
        "q83vEjRz"
    );
    let mail = json_ok(app.get_entry(&app.owner_token, &ids[0]).await).await;
    assert_eq!(mail["fields"][0]["tier"], "credential");
    assert_eq!(mail["fields"][0]["scope"], "imported");
    assert_eq!(mail["fields"][1]["tier"], "vault");

    // An agent granted the scope reads the credential fields written in bulk.
    let (_, agent) = app
        .create_agent(&json!({"name": "reader", "scopes": ["imported"]}))
        .await;
    assert_eq!(app.field_value(&agent, &ids[1], "pin").await, "4321");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_invalid_entry_creates_none_and_is_named() {
    let app = spawn_app().await;
    let body = json!({"entries": [
        {"title": "ok", "fields": [{"name": "a", "value": "1"}]},
        {"title": "ok too"},
        {"title": "bad", "fields": [{"name": "k", "value": "v", "tier": "secret"}]},
    ]});
    let text = assert_error(
        post_bulk(&app, &app.owner_token, &body).await,
        StatusCode::BAD_REQUEST,
        "validation_failed",
    )
    .await;
    assert!(text.contains("entries[2]"), "names the entry: {text}");
    let body = json!({"entries": [{"title": "ok"}, {"title": "x", "colour": "red"}]});
    let text = assert_error(
        post_bulk(&app, &app.owner_token, &body).await,
        StatusCode::BAD_REQUEST,
        "invalid_json",
    )
    .await;
    assert!(
        text.contains("entries[1]") && text.contains("colour"),
        "{text}"
    );
    assert_error(
        post_bulk(&app, &app.owner_token, &json!({"entries": []})).await,
        StatusCode::BAD_REQUEST,
        "validation_failed",
    )
    .await;
    assert_eq!(app.entry_count().await, 0, "nothing was created");
}

/// A failure inside the write (here: a scope whose key only an agent holds) rolls back the
/// entries written before it in the same request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failure_inside_the_write_rolls_back_every_entry() {
    let app = spawn_app().await;
    app.create_agent(&json!({"name": "holder", "scopes": ["held"]}))
        .await;
    // The scope's key is made with its first field (wrapped for the owner and the agent).
    let made = app
        .create_entry(&json!({"title": "made", "fields": [
            {"name": "p", "value": "0", "tier": "credential", "scope": "held"}]}))
        .await;
    assert_eq!(
        app.delete_entry(&app.owner_token, &made).await.status(),
        204
    );
    let app = app.without_owner_key_copy("held").await;
    let body = json!({"entries": [
        {"title": "first", "fields": [{"name": "p", "value": "1", "tier": "credential", "scope": "fresh"}]},
        {"title": "second", "fields": [{"name": "p", "value": "2"}]},
        {"title": "third", "fields": [{"name": "p", "value": "3", "tier": "credential", "scope": "held"}]},
    ]});
    let text = assert_error(
        post_bulk(&app, &app.owner_token, &body).await,
        StatusCode::CONFLICT,
        "conflict",
    )
    .await;
    assert!(text.contains("held"), "{text}");
    assert_eq!(app.entry_count().await, 0, "the first two were rolled back");
    // Nor did the scope key made for the first entry survive: a new write creates it again.
    let ids = created(
        post_bulk(
            &app,
            &app.owner_token,
            &json!({"entries": [{"title": "again", "fields": [
                {"name": "p", "value": "1", "tier": "credential", "scope": "fresh"}]}]}),
        )
        .await,
    )
    .await;
    assert_eq!(app.field_value(&app.owner_token, &ids[0], "p").await, "1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agents_may_not_bulk_create() {
    let app = spawn_app().await;
    let (_, agent) = app
        .create_agent(&json!({"name": "bot", "scopes": ["imported"]}))
        .await;
    let body = json!({"entries": [{"title": "x"}]});
    assert_error(
        post_bulk(&app, &agent, &body).await,
        StatusCode::FORBIDDEN,
        "forbidden",
    )
    .await;
    // Asked before the body is read: an agent's malformed body is still 403, not 400.
    let res = send(
        app.request(Method::POST, BULK, &agent)
            .header("content-type", "application/json")
            .body("not json"),
    )
    .await;
    assert_error(res, StatusCode::FORBIDDEN, "forbidden").await;
    let res = send(app.client.post(app.url(BULK)).json(&body)).await;
    assert_error(res, StatusCode::UNAUTHORIZED, "missing_token").await;
    assert_eq!(app.entry_count().await, 0);
}

/// `n` entries of about `size` bytes each, as a bulk body.
fn body_of(n: usize, size: usize) -> Vec<u8> {
    let value = "v".repeat(size);
    let entries: Vec<Value> = (0..n)
        .map(|i| json!({"title": format!("e{i}"), "fields": [{"name": "f", "value": value}]}))
        .collect();
    serde_json::to_vec(&json!({ "entries": entries })).expect("serialise")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bulk_body_limit_is_its_own_and_enforced() {
    let app = spawn_app().await;
    // 3 MiB: over the 1 MiB of single requests, well under the bulk limit.
    let body = body_of(64, 48 * 1024);
    assert!(body.len() > 3 * 1024 * 1024);
    let ids = created(post_raw(&app, body).await).await;
    assert_eq!(ids.len(), 64);

    // Over 64 MiB: refused, and nothing of it is kept.
    let over = body_of(1100, 62 * 1024);
    assert!(over.len() > clavitor::api::BULK_BODY_LIMIT);
    let text = assert_error(
        post_raw(&app, over).await,
        StatusCode::PAYLOAD_TOO_LARGE,
        "payload_too_large",
    )
    .await;
    assert!(text.contains("64 MiB"), "{text}");
    assert_eq!(app.entry_count().await, 64);

    // Single requests keep their 1 MiB limit.
    let huge = "x".repeat(1024 * 1024 + 1);
    assert_error(
        app.post_entry(
            &app.owner_token,
            &json!({"title": "big", "fields": [{"name": "a", "value": huge}]}),
        )
        .await,
        StatusCode::PAYLOAD_TOO_LARGE,
        "payload_too_large",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn more_entries_than_the_cap_are_refused() {
    let app = spawn_app().await;
    let n = clavitor::api::MAX_BULK_ENTRIES + 1;
    let mut body = Vec::with_capacity(n * 16);
    body.extend_from_slice(b"{\"entries\":[");
    for i in 0..n {
        if i > 0 {
            body.push(b',');
        }
        body.extend_from_slice(b"{\"title\":\"t\"}");
    }
    body.extend_from_slice(b"]}");
    let text = assert_error(
        post_raw(&app, body).await,
        StatusCode::PAYLOAD_TOO_LARGE,
        "payload_too_large",
    )
    .await;
    assert!(
        text.contains(&clavitor::api::MAX_BULK_ENTRIES.to_string()),
        "{text}"
    );
    assert_eq!(app.entry_count().await, 0);
}
