//! Agents: scopes, owner-only operations, expiry, revocation, rate limits, IP allowlists,
//! and the token checks every request goes through.

use crate::helpers::{TestApp, assert_error, distinctive, eventually, json_ok, send, spawn_app};
use reqwest::{Method, StatusCode};
use serde_json::json;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_reads_its_scope_and_nothing_else() {
    let app = spawn_app().await;
    let deploy = distinctive("deploy");
    let db = distinctive("db");
    let note = distinctive("note");
    // Written before the agent exists.
    let mixed = app
        .create_entry(&json!({"title": "mixed", "fields": [
            {"name": "deploy_key", "value": deploy, "tier": "credential", "scope": "deploy"},
            {"name": "db_pass", "value": db, "tier": "credential", "scope": "db"},
            {"name": "note", "value": note, "tier": "vault"}
        ]}))
        .await;
    let db_only = app
        .create_entry(&json!({"title": "db only", "fields": [
            {"name": "db_pass", "value": db, "tier": "credential", "scope": "db"}
        ]}))
        .await;
    let vault_only = app
        .create_entry(&json!({"title": "vault only", "fields": [{"name": "note", "value": note}]}))
        .await;
    let (_, agent) = app
        .create_agent(&json!({"name": "deployer", "scopes": ["deploy"]}))
        .await;
    // Written after the agent exists: readable too.
    let later = distinctive("later");
    let after = app
        .create_entry(&json!({"title": "later", "fields": [
            {"name": "k", "value": later, "tier": "credential", "scope": "deploy"}
        ]}))
        .await;

    assert_eq!(app.field_value(&agent, &mixed, "deploy_key").await, deploy);
    assert_eq!(app.field_value(&agent, &after, "k").await, later);
    for (id, field) in [
        (&mixed, "db_pass"),
        (&mixed, "note"),
        (&db_only, "db_pass"),
        (&vault_only, "note"),
    ] {
        let body = assert_error(
            app.get_field(&agent, id, field).await,
            StatusCode::NOT_FOUND,
            "field_not_found",
        )
        .await;
        assert!(!body.contains(&db) && !body.contains(&note), "{body}");
    }

    // The agent's list holds only entries with a field in its scopes, and only those fields.
    let (text, entries) = app.list_entries(&agent).await;
    assert!(
        !text.contains("db only") && !text.contains("vault only"),
        "{text}"
    );
    let ids: Vec<&str> = entries.iter().map(|e| e["id"].as_str().unwrap()).collect();
    assert_eq!(ids.len(), 2, "{text}");
    assert!(
        ids.contains(&mixed.as_str()) && ids.contains(&after.as_str()),
        "{text}"
    );
    let m = entries.iter().find(|e| e["id"] == mixed.as_str()).unwrap();
    assert_eq!(
        m["fields"],
        json!([{"name": "deploy_key", "tier": "credential", "scope": "deploy",
                "agent_access": "read", "allowed_hosts": []}])
    );
    assert_error(
        app.get_entry(&agent, &db_only).await,
        StatusCode::NOT_FOUND,
        "entry_not_found",
    )
    .await;
    // The owner still sees all four.
    assert_eq!(app.entry_count().await, 4);
}

/// An error body with the entry id and field name the request named taken out, so answers
/// about different entries and fields can be compared.
async fn shape(res: reqwest::Response, status: StatusCode, code: &str, named: &[&str]) -> String {
    let mut body = assert_error(res, status, code).await;
    for n in named {
        body = body.replace(n, "<named>");
    }
    body
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_cannot_tell_out_of_scope_from_missing() {
    let app = spawn_app().await;
    let visible = app
        .create_entry(&json!({"title": "visible", "fields": [
            {"name": "mine", "value": "m", "tier": "credential", "scope": "deploy"},
            {"name": "theirs", "value": "t", "tier": "credential", "scope": "db"},
            {"name": "note", "value": "n", "tier": "vault"}
        ]}))
        .await;
    let hidden = app
        .create_entry(&json!({"title": "hidden", "fields": [
            {"name": "theirs", "value": "t", "tier": "credential", "scope": "db"}
        ]}))
        .await;
    let deleted = app
        .create_entry(&json!({"title": "deleted", "fields": [
            {"name": "theirs", "value": "t", "tier": "credential", "scope": "db"}
        ]}))
        .await;
    assert_eq!(
        app.delete_entry(&app.owner_token, &deleted).await.status(),
        StatusCode::NO_CONTENT
    );
    let nowhere = uuid::Uuid::now_v7().to_string();
    let (_, agent) = app
        .create_agent(&json!({"name": "deployer", "scopes": ["deploy"]}))
        .await;

    // Fields: out of scope, vault tier, missing; in a visible entry, a hidden one, a deleted
    // one and one that never existed. Each asked twice (the second answer may come from the
    // read cache): one status, one code, one message.
    let mut shapes = std::collections::BTreeSet::new();
    for (entry, field) in [
        (&visible, "theirs"),
        (&visible, "note"),
        (&visible, "missing"),
        (&hidden, "theirs"),
        (&hidden, "missing"),
        (&deleted, "theirs"),
        (&nowhere, "theirs"),
    ] {
        for _ in 0..2 {
            let res = app.get_field(&agent, entry, field).await;
            shapes.insert(
                shape(
                    res,
                    StatusCode::NOT_FOUND,
                    "field_not_found",
                    &[entry, field],
                )
                .await,
            );
        }
    }
    assert_eq!(shapes.len(), 1, "answers differ: {shapes:#?}");
    let message = shapes.pop_first().unwrap();
    assert!(message.contains("not in this token's scopes"), "{message}");

    // Entries: one with no field in the agent's scopes, a deleted one, one that never existed.
    let mut shapes = std::collections::BTreeSet::new();
    for entry in [&hidden, &deleted, &nowhere] {
        let res = app.get_entry(&agent, entry).await;
        shapes.insert(shape(res, StatusCode::NOT_FOUND, "entry_not_found", &[entry]).await);
    }
    assert_eq!(shapes.len(), 1, "answers differ: {shapes:#?}");

    // What the agent may read, it reads; the owner is still told precisely what is missing.
    assert_eq!(app.field_value(&agent, &visible, "mine").await, "m");
    assert_eq!(
        app.field_value(&app.owner_token, &hidden, "theirs").await,
        "t"
    );
    let owner_missing = assert_error(
        app.get_field(&app.owner_token, &visible, "missing").await,
        StatusCode::NOT_FOUND,
        "field_not_found",
    )
    .await;
    assert!(!owner_missing.contains("scopes"), "{owner_missing}");
    assert_error(
        app.get_field(&app.owner_token, &nowhere, "theirs").await,
        StatusCode::NOT_FOUND,
        "entry_not_found",
    )
    .await;
}

/// A fresh vault holding one entry with a credential field `k` = "v" in scope `s`, and an
/// agent `name` holding scope `s`: `(app, entry id, agent id, agent token)`.
async fn entry_and_agent(name: &str) -> (TestApp, String, String, String) {
    let app = spawn_app().await;
    let id = app
        .create_entry(&json!({"title": "t", "fields": [
            {"name": "k", "value": "v", "tier": "credential", "scope": "s"}
        ]}))
        .await;
    let (agent_id, agent) = app
        .create_agent(&json!({"name": name, "scopes": ["s"]}))
        .await;
    (app, id, agent_id, agent)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agents_cannot_write_or_manage_agents() {
    let (app, id, agent_id, agent) = entry_and_agent("a").await;

    let entry = json!({"title": "by agent", "fields": [{"name": "x", "value": "y"}]});
    for req in [
        app.request(Method::POST, "/v1/entries", &agent)
            .json(&entry),
        app.request(Method::PUT, &format!("/v1/entries/{id}"), &agent)
            .json(&entry),
        app.request(Method::DELETE, &format!("/v1/entries/{id}"), &agent),
        app.request(Method::POST, "/v1/agents", &agent)
            .json(&json!({"name": "child", "scopes": ["s"]})),
        app.request(Method::GET, "/v1/agents", &agent),
        app.request(Method::DELETE, &format!("/v1/agents/{agent_id}"), &agent),
    ] {
        assert_error(send(req).await, StatusCode::FORBIDDEN, "forbidden").await;
    }

    // Nothing changed.
    let (_, entries) = app.list_entries(&app.owner_token).await;
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0]["title"], "t");
    let (_, agents) = app.list_agents().await;
    assert_eq!(agents.len(), 1);
    assert_eq!(agents[0]["status"], "active");
    assert_eq!(app.field_value(&agent, &id, "k").await, "v");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_token_expires_after_its_ttl() {
    let app = spawn_app().await;
    let (_, agent) = app
        .create_agent(&json!({"name": "short", "scopes": ["s"], "ttl_seconds": 1}))
        .await;
    let expired = eventually(Duration::from_secs(4), || async {
        app.get("/v1/entries", &agent).await.status() == StatusCode::UNAUTHORIZED
    })
    .await;
    assert!(expired, "a 1 s token still works after 4 s");
    assert_error(
        app.get("/v1/entries", &agent).await,
        StatusCode::UNAUTHORIZED,
        "token_expired",
    )
    .await;
    let (_, agents) = app.list_agents().await;
    assert_eq!(agents[0]["status"], "expired");
    assert!(agents[0]["expires_at"].is_string());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoked_agent_is_refused_on_its_very_next_request() {
    let (app, id, agent_id, agent) = entry_and_agent("gone").await;
    assert_eq!(app.field_value(&agent, &id, "k").await, "v");

    let res = app.revoke_agent(&agent_id).await;
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    assert_error(
        app.get_field(&agent, &id, "k").await,
        StatusCode::UNAUTHORIZED,
        "invalid_token",
    )
    .await;
    assert_error(
        app.get("/v1/entries", &agent).await,
        StatusCode::UNAUTHORIZED,
        "invalid_token",
    )
    .await;

    let (text, agents) = app.list_agents().await;
    assert!(!text.contains(&agent), "agent list shows a token");
    assert_eq!(agents.len(), 1);
    assert_eq!(agents[0]["id"], agent_id.as_str());
    assert_eq!(agents[0]["status"], "revoked");
    assert!(agents[0]["revoked_at"].is_string());

    assert_error(
        app.revoke_agent(&agent_id).await,
        StatusCode::NOT_FOUND,
        "agent_not_found",
    )
    .await;
    assert_error(
        app.revoke_agent("not-a-uuid").await,
        StatusCode::BAD_REQUEST,
        "validation_failed",
    )
    .await;

    // Still revoked after a restart.
    let app = app.stop().await.start().await;
    assert_error(
        app.get("/v1/entries", &agent).await,
        StatusCode::UNAUTHORIZED,
        "invalid_token",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn active_agent_names_are_unique() {
    let app = spawn_app().await;
    let (first, _) = app
        .create_agent(&json!({"name": "dup", "scopes": ["s"]}))
        .await;
    assert_error(
        app.post_agent(&app.owner_token, &json!({"name": "dup", "scopes": ["t"]}))
            .await,
        StatusCode::CONFLICT,
        "conflict",
    )
    .await;
    assert_eq!(app.list_agents().await.1.len(), 1);
    // Once revoked, the name is free again.
    assert_eq!(
        app.revoke_agent(&first).await.status(),
        StatusCode::NO_CONTENT
    );
    app.create_agent(&json!({"name": "dup", "scopes": ["s"]}))
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limit_answers_429_with_retry_after() {
    let app = spawn_app().await;
    let (_, agent) = app
        .create_agent(&json!({"name": "slow", "scopes": ["s"], "rate_limit_per_minute": 3}))
        .await;
    for i in 0..3 {
        let res = app.get("/v1/entries", &agent).await;
        assert_eq!(
            res.status(),
            StatusCode::OK,
            "request {i} is within the limit"
        );
    }
    let res = app.get("/v1/entries", &agent).await;
    let retry = res
        .headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    assert_error(res, StatusCode::TOO_MANY_REQUESTS, "rate_limited").await;
    let secs: u64 = retry
        .expect("429 carries Retry-After")
        .parse()
        .expect("Retry-After is whole seconds");
    assert!((1..=60).contains(&secs), "Retry-After {secs}");
    // Another token is not affected.
    assert_eq!(
        app.get("/v1/entries", &app.owner_token).await.status(),
        StatusCode::OK
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ip_allowlist_is_enforced() {
    let app = spawn_app().await;
    let (_, far) = app
        .create_agent(&json!({"name": "far", "scopes": ["s"], "ip_allowlist": ["10.0.0.0/8"]}))
        .await;
    let (_, near) = app
        .create_agent(&json!({"name": "near", "scopes": ["s"], "ip_allowlist": ["127.0.0.1"]}))
        .await;
    let (_, net) = app
        .create_agent(
            &json!({"name": "net", "scopes": ["s"], "ip_allowlist": ["10.0.0.0/8", "127.0.0.0/8"]}),
        )
        .await;
    assert_error(
        app.get("/v1/entries", &far).await,
        StatusCode::FORBIDDEN,
        "ip_not_allowed",
    )
    .await;
    json_ok(app.get("/v1/entries", &near).await).await;
    json_ok(app.get("/v1/entries", &net).await).await;
    let (_, agents) = app.list_agents().await;
    let far_row = agents.iter().find(|a| a["name"] == "far").unwrap();
    assert_eq!(far_row["ip_allowlist"], json!(["10.0.0.0/8"]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreadable_ip_allowlist_denies_instead_of_allowing_any_address() {
    let app = spawn_app().await;
    let (id, agent) = app
        .create_agent(&json!({"name": "pinned", "scopes": ["s"], "ip_allowlist": ["127.0.0.1"]}))
        .await;
    let (mixed_id, mixed) = app
        .create_agent(
            &json!({"name": "mixed", "scopes": ["s"], "ip_allowlist": ["127.0.0.0/8", "10.0.0.0/8"]}),
        )
        .await;
    json_ok(app.get("/v1/entries", &agent).await).await;
    json_ok(app.get("/v1/entries", &mixed).await).await;

    // The stored lists go bad (a hand edit, a bug, a bad restore): with the server stopped,
    // one agent's list holds only garbage, the other's keeps one readable entry that does
    // not match this address.
    let stopped = app.stop().await;
    let conn = rusqlite::Connection::open(stopped.db_path()).unwrap();
    for (agent_id, list) in [
        (&id, r#"["not an address", "10.0.0.0/99"]"#),
        (&mixed_id, r#"["10.0.0.0/8", "127.0.0.0/garbage"]"#),
    ] {
        let n = conn
            .execute(
                "UPDATE agents SET ip_allowlist = ?1 WHERE id = ?2",
                [list, agent_id.as_str()],
            )
            .unwrap();
        assert_eq!(n, 1);
    }
    drop(conn);
    let app = stopped.start().await;

    // Unreadable entries match no address: they never widen the list to "any".
    for token in [&agent, &mixed] {
        assert_error(
            app.get("/v1/entries", token).await,
            StatusCode::FORBIDDEN,
            "ip_not_allowed",
        )
        .await;
    }
    // The owner (no list) is unaffected.
    json_ok(app.get("/v1/entries", &app.owner_token).await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_without_a_valid_token_are_401() {
    let app = spawn_app().await;
    let id = app
        .create_entry(&json!({"title": "t", "fields": [{"name": "k", "value": "v"}]}))
        .await;
    let field = format!("/v1/entries/{id}/fields/k");
    for path in ["/v1/entries", field.as_str(), "/v1/agents"] {
        assert_error(
            send(app.client.get(app.url(path))).await,
            StatusCode::UNAUTHORIZED,
            "missing_token",
        )
        .await;
        assert_error(
            send(
                app.client
                    .get(app.url(path))
                    .header("authorization", format!("Basic {}", app.owner_token)),
            )
            .await,
            StatusCode::UNAUTHORIZED,
            "missing_token",
        )
        .await;
        // A real-looking token that is not ours, and ours with one character changed.
        let mut altered = app.owner_token.clone();
        let last = altered.pop().unwrap();
        altered.push(if last == 'A' { 'B' } else { 'A' });
        for wrong in [
            "clv_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
            altered.as_str(),
        ] {
            assert_error(
                app.get(path, wrong).await,
                StatusCode::UNAUTHORIZED,
                "invalid_token",
            )
            .await;
        }
    }
    let without = send(
        app.client
            .post(app.url("/v1/entries"))
            .json(&json!({"title": "x"})),
    )
    .await;
    assert_error(without, StatusCode::UNAUTHORIZED, "missing_token").await;
    assert_eq!(app.entry_count().await, 1);
}
