//! Bad requests: each gets a 4xx in the one error shape, and the vault is unchanged after it.

use crate::helpers::{TestApp, assert_error, distinctive, json_ok, send, spawn_app};
use reqwest::{Method, RequestBuilder, StatusCode};
use serde_json::{Value, json};

/// A vault holding one known entry, so "unchanged" has something to compare.
async fn app_with_one_entry() -> (TestApp, String) {
    let app = spawn_app().await;
    let id = app
        .create_entry(&json!({"title": "keep", "fields": [{"name": "k", "value": "original"}]}))
        .await;
    (app, id)
}

/// Sends `req`, asserts the error, and asserts the owner's view of the vault is the same as
/// before (same entries, same versions).
async fn rejected(app: &TestApp, req: RequestBuilder, status: StatusCode, code: &str) -> String {
    let (before, _) = app.list_entries(&app.owner_token).await;
    let body = assert_error(send(req).await, status, code).await;
    let (after, _) = app.list_entries(&app.owner_token).await;
    assert_eq!(before, after, "a rejected request changed the vault");
    body
}

fn post(app: &TestApp, body: &Value) -> RequestBuilder {
    app.owner(Method::POST, "/v1/entries").json(body)
}

fn post_raw(app: &TestApp, body: &str) -> RequestBuilder {
    app.owner(Method::POST, "/v1/entries")
        .header("content-type", "application/json")
        .body(body.to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_json_is_400() {
    let (app, _) = app_with_one_entry().await;
    rejected(
        &app,
        post_raw(&app, r#"{"title": "x","#),
        StatusCode::BAD_REQUEST,
        "invalid_json",
    )
    .await;
    rejected(
        &app,
        post_raw(&app, ""),
        StatusCode::BAD_REQUEST,
        "invalid_json",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_types_are_400() {
    let (app, _) = app_with_one_entry().await;
    for body in [
        json!({"title": 5}),
        json!({"title": "x", "fields": "password"}),
        json!({"title": "x", "fields": [{"name": "a", "value": 42}]}),
        json!(["title", "x"]),
        json!({"fields": []}),
    ] {
        rejected(
            &app,
            post(&app, &body),
            StatusCode::BAD_REQUEST,
            "invalid_json",
        )
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_json_field_is_400() {
    let (app, _) = app_with_one_entry().await;
    let body = rejected(
        &app,
        post(&app, &json!({"title": "x", "colour": "red"})),
        StatusCode::BAD_REQUEST,
        "invalid_json",
    )
    .await;
    assert!(
        body.contains("colour"),
        "the message names the field: {body}"
    );
    rejected(
        &app,
        post(
            &app,
            &json!({"title": "x", "fields": [{"name": "a", "value": "b", "secret": true}]}),
        ),
        StatusCode::BAD_REQUEST,
        "invalid_json",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_tier_is_400() {
    let (app, _) = app_with_one_entry().await;
    let body = rejected(
        &app,
        post(
            &app,
            &json!({"title": "x", "fields": [{"name": "a", "value": "b", "tier": "secret"}]}),
        ),
        StatusCode::BAD_REQUEST,
        "validation_failed",
    )
    .await;
    assert!(body.contains("tier"), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn empty_title_is_400() {
    let (app, _) = app_with_one_entry().await;
    for title in ["", "   "] {
        let body = rejected(
            &app,
            post(&app, &json!({"title": title})),
            StatusCode::BAD_REQUEST,
            "validation_failed",
        )
        .await;
        assert!(body.contains("title"), "{body}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credential_without_scope_is_400() {
    let (app, _) = app_with_one_entry().await;
    let body = rejected(
        &app,
        post(
            &app,
            &json!({"title": "x", "fields": [{"name": "a", "value": "b", "tier": "credential"}]}),
        ),
        StatusCode::BAD_REQUEST,
        "validation_failed",
    )
    .await;
    assert!(body.contains("scope"), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identity_value_that_is_not_base64_is_400() {
    let (app, _) = app_with_one_entry().await;
    for value in ["not base64!", "abc", "YWJj-_8"] {
        rejected(
            &app,
            post(&app, &json!({"title": "x", "fields": [{"name": "a", "value": value, "tier": "identity"}]})),
            StatusCode::BAD_REQUEST,
            "validation_failed",
        )
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicate_field_names_are_400() {
    let (app, _) = app_with_one_entry().await;
    let body = rejected(
        &app,
        post(&app, &json!({"title": "x", "fields": [{"name": "a", "value": "1"}, {"name": "a", "value": "2"}]})),
        StatusCode::BAD_REQUEST,
        "validation_failed",
    )
    .await;
    assert!(body.contains("more than once"), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_body_is_413_and_large_value_is_400() {
    let (app, _) = app_with_one_entry().await;
    let huge = "x".repeat(1024 * 1024 + 1);
    let body = json!({"title": "big", "fields": [{"name": "a", "value": huge}]});
    rejected(
        &app,
        post(&app, &body),
        StatusCode::PAYLOAD_TOO_LARGE,
        "payload_too_large",
    )
    .await;
    // Under the body limit but over the per-value limit.
    let big = "x".repeat(64 * 1024 + 1);
    let body = json!({"title": "big", "fields": [{"name": "a", "value": big}]});
    rejected(
        &app,
        post(&app, &body),
        StatusCode::BAD_REQUEST,
        "validation_failed",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_content_type_is_rejected() {
    let (app, _) = app_with_one_entry().await;
    let req = app
        .owner(Method::POST, "/v1/entries")
        .body(json!({"title": "x"}).to_string());
    let (before, _) = app.list_entries(&app.owner_token).await;
    let res = send(req).await;
    // 415 is HTTP's answer; the contract's list of statuses has 400 for client errors.
    let status = res.status();
    assert!(
        status == StatusCode::UNSUPPORTED_MEDIA_TYPE || status == StatusCode::BAD_REQUEST,
        "{status}"
    );
    let body = assert_error(res, status, "unsupported_media_type").await;
    assert!(body.contains("Content-Type"), "{body}");
    assert_eq!(before, app.list_entries(&app.owner_token).await.0);
}

/// Every route that takes an entry id (GET, DELETE, a field, PUT) rejects `id` the same way.
async fn every_entry_route_rejects(app: &TestApp, id: &str, status: StatusCode, code: &str) {
    for req in [
        app.owner(Method::GET, &format!("/v1/entries/{id}")),
        app.owner(Method::DELETE, &format!("/v1/entries/{id}")),
        app.owner(Method::GET, &format!("/v1/entries/{id}/fields/k")),
        app.owner(Method::PUT, &format!("/v1/entries/{id}"))
            .json(&json!({"title": "x"})),
    ] {
        rejected(app, req, status, code).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_entry_id_is_404_and_non_uuid_is_400() {
    let (app, _) = app_with_one_entry().await;
    let unknown = uuid::Uuid::new_v4().to_string();
    every_entry_route_rejects(&app, &unknown, StatusCode::NOT_FOUND, "entry_not_found").await;
    for bad in ["not-a-uuid", "..%2F..%2Fetc", "12345"] {
        every_entry_route_rejects(&app, bad, StatusCode::BAD_REQUEST, "validation_failed").await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_bad_field_among_good_ones_creates_nothing() {
    let (app, id) = app_with_one_entry().await;
    let good = distinctive("good");
    let fields = json!([
        {"name": "a", "value": good},
        {"name": "b", "value": good, "tier": "credential", "scope": "fresh-scope"},
        {"name": "c", "value": "%%% not base64", "tier": "identity"},
        {"name": "d", "value": good}
    ]);
    rejected(
        &app,
        post(&app, &json!({"title": "half", "fields": fields})),
        StatusCode::BAD_REQUEST,
        "validation_failed",
    )
    .await;
    assert_eq!(app.entry_count().await, 1);

    // The same through PUT: the existing entry keeps its old fields and version.
    let before = json_ok(app.get_entry(&app.owner_token, &id).await).await;
    rejected(
        &app,
        app.owner(Method::PUT, &format!("/v1/entries/{id}"))
            .json(&json!({"title": "half", "fields": fields})),
        StatusCode::BAD_REQUEST,
        "validation_failed",
    )
    .await;
    assert_eq!(
        json_ok(app.get_entry(&app.owner_token, &id).await).await,
        before
    );
    assert_eq!(
        app.field_value(&app.owner_token, &id, "k").await,
        "original"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_agent_requests_are_400_and_create_nothing() {
    let app = spawn_app().await;
    app.create_agent(&json!({"name": "existing", "scopes": ["s"]}))
        .await;
    let cases = [
        (json!({"name": "a", "scopes": []}), "validation_failed"),
        (json!({"name": "a"}), "validation_failed"),
        (json!({"name": "", "scopes": ["s"]}), "validation_failed"),
        (
            json!({"name": "a", "scopes": ["has space"]}),
            "validation_failed",
        ),
        (
            json!({"name": "a", "scopes": ["s"], "ttl_seconds": 0}),
            "validation_failed",
        ),
        (
            json!({"name": "a", "scopes": ["s"], "ip_allowlist": ["nonsense"]}),
            "validation_failed",
        ),
        (
            json!({"name": "a", "scopes": ["s"], "rate_limit_per_minute": 0}),
            "validation_failed",
        ),
        (
            json!({"name": "a", "scopes": ["s"], "ttl_seconds": -5}),
            "invalid_json",
        ),
        (
            json!({"name": "a", "scopes": ["s"], "admin": true}),
            "invalid_json",
        ),
    ];
    for (body, code) in cases {
        let (before, _) = app.list_agents().await;
        let res = app.post_agent(&app.owner_token, &body).await;
        assert_error(res, StatusCode::BAD_REQUEST, code).await;
        let (after, _) = app.list_agents().await;
        assert_eq!(before, after, "rejected {body} changed the agents");
    }
    assert_eq!(app.list_agents().await.1.len(), 1);
}
