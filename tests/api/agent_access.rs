//! `agent_access` and `allowed_hosts` on fields: `use` fields are never returned to agents,
//! the policy shows in listings, a replacement that omits it keeps it, and it is bound into the
//! field's ciphertext.

use crate::helpers::{TestApp, assert_error, distinctive, json_ok, spawn_app};
use reqwest::StatusCode;
use serde_json::{Value, json};

/// An entry with a `use` credential field, a `use` vault field, a plain readable field and a
/// `use` field in another scope. Returns `(entry id, agent token holding "deploy")`.
async fn setup(app: &TestApp, secret: &str, vault_secret: &str) -> (String, String) {
    let id = app
        .create_entry(&json!({"title": "api", "fields": [
            {"name": "key", "value": secret, "tier": "credential", "scope": "deploy",
             "agent_access": "use", "allowed_hosts": ["API.example.com", "*.example.org"]},
            {"name": "pin", "value": vault_secret, "tier": "vault", "scope": "deploy",
             "agent_access": "use", "allowed_hosts": ["127.0.0.1"]},
            {"name": "user", "value": "bot", "tier": "credential", "scope": "deploy"},
            {"name": "other", "value": distinctive("other"), "tier": "credential",
             "scope": "ops", "agent_access": "use", "allowed_hosts": ["x.example.com"]}
        ]}))
        .await;
    let (_, agent) = app
        .create_agent(&json!({"name": "bot", "scopes": ["deploy"]}))
        .await;
    (id, agent)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_use_field_is_refused_to_agents_and_read_by_the_owner() {
    let app = spawn_app().await;
    let (secret, vault_secret) = (distinctive("use-key"), distinctive("use-pin"));
    let (id, agent) = setup(&app, &secret, &vault_secret).await;

    for name in ["key", "pin"] {
        let body = assert_error(
            app.get_field(&agent, &id, name).await,
            StatusCode::FORBIDDEN,
            "use_only",
        )
        .await;
        assert!(!body.contains(&secret) && !body.contains(&vault_secret));
    }
    // A readable field in the same scope still reads; a `use` field outside the agent's scopes
    // is the same 404 as a missing one.
    assert_eq!(app.field_value(&agent, &id, "user").await, "bot");
    assert_error(
        app.get_field(&agent, &id, "other").await,
        StatusCode::NOT_FOUND,
        "field_not_found",
    )
    .await;
    assert_eq!(app.field_value(&app.owner_token, &id, "key").await, secret);
    assert_eq!(
        app.field_value(&app.owner_token, &id, "pin").await,
        vault_secret
    );
}

fn field<'a>(entry: &'a Value, name: &str) -> &'a Value {
    entry["fields"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["name"] == name)
        .unwrap_or_else(|| panic!("field {name} listed in {entry}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listings_show_the_policy_and_a_put_that_omits_it_keeps_it() {
    let app = spawn_app().await;
    let (id, agent) = setup(&app, &distinctive("k"), &distinctive("p")).await;

    let (_, entries) = app.list_entries(&agent).await;
    let key = field(&entries[0], "key");
    assert_eq!(key["agent_access"], "use");
    assert_eq!(
        key["allowed_hosts"],
        json!(["api.example.com", "*.example.org"])
    );
    assert_eq!(field(&entries[0], "user")["agent_access"], "read");
    assert_eq!(field(&entries[0], "user")["allowed_hosts"], json!([]));
    let shown = json_ok(app.get_entry(&agent, &id).await).await;
    assert_eq!(field(&shown, "key")["agent_access"], "use");

    // New values, no policy: each field keeps its own (by name).
    let new_secret = distinctive("rotated");
    let res = app
        .put_entry(
            &app.owner_token,
            &id,
            &json!({"title": "api", "fields": [
                {"name": "key", "value": new_secret, "tier": "credential", "scope": "deploy"},
                {"name": "user", "value": "bot2", "tier": "credential", "scope": "deploy",
                 "allowed_hosts": ["api.example.com"]}
            ]}),
        )
        .await;
    assert_eq!(
        res.status(),
        StatusCode::OK,
        "{}",
        res.text().await.unwrap()
    );
    assert_error(
        app.get_field(&agent, &id, "key").await,
        StatusCode::FORBIDDEN,
        "use_only",
    )
    .await;
    assert_eq!(
        app.field_value(&app.owner_token, &id, "key").await,
        new_secret
    );
    let shown = json_ok(app.get_entry(&app.owner_token, &id).await).await;
    assert_eq!(
        field(&shown, "key")["allowed_hosts"],
        json!(["api.example.com", "*.example.org"])
    );
    assert_eq!(field(&shown, "user")["agent_access"], "read");
    assert_eq!(
        field(&shown, "user")["allowed_hosts"],
        json!(["api.example.com"])
    );
    assert_eq!(app.field_value(&agent, &id, "user").await, "bot2");

    // Saying `read` turns it back into a readable field.
    let res = app
        .put_entry(
            &app.owner_token,
            &id,
            &json!({"title": "api", "fields": [
                {"name": "key", "value": new_secret, "tier": "credential", "scope": "deploy",
                 "agent_access": "read"}
            ]}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(app.field_value(&agent, &id, "key").await, new_secret);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_policy_is_refused() {
    let app = spawn_app().await;
    for (field, needle) in [
        (
            json!({"name": "k", "value": "v", "agent_access": "write"}),
            "agent_access",
        ),
        (
            json!({"name": "k", "value": "v", "allowed_hosts": ["https://api.example.com/x"]}),
            "allowed_hosts",
        ),
        (
            json!({"name": "k", "value": "v", "allowed_hosts": ["*"]}),
            "allowed_hosts",
        ),
    ] {
        let body = assert_error(
            app.post_entry(&app.owner_token, &json!({"title": "t", "fields": [field]}))
                .await,
            StatusCode::BAD_REQUEST,
            "validation_failed",
        )
        .await;
        assert!(body.contains(needle), "{body}");
    }
    assert_eq!(app.entry_count().await, 0);
}

/// Editing the policy columns in the database (turning a `use` field into a readable one, or
/// adding a host) breaks the field instead of handing out its value.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_policy_is_bound_into_the_ciphertext() {
    let app = spawn_app().await;
    let (secret, vault_secret) = (distinctive("bound-key"), distinctive("bound-pin"));
    let (id, agent) = setup(&app, &secret, &vault_secret).await;
    let stopped = app.stop().await;
    {
        let c = rusqlite::Connection::open(stopped.db_path()).expect("open");
        c.execute(
            "UPDATE fields SET agent_access = 'read' WHERE name = 'key'",
            [],
        )
        .unwrap();
        c.execute(
            "UPDATE fields SET allowed_hosts = '[\"127.0.0.1\",\"evil.example.com\"]' WHERE name = 'pin'",
            [],
        )
        .unwrap();
    }
    let app = stopped.start().await;
    for (token, name) in [
        (&agent, "key"),
        (&app.owner_token, "key"),
        (&app.owner_token, "pin"),
    ] {
        let res = app.get_field(token, &id, name).await;
        let status = res.status();
        let body = res.text().await.unwrap();
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR, "{name}: {body}");
        assert!(!body.contains(&secret) && !body.contains(&vault_secret));
    }
    // The untouched field still opens.
    assert_eq!(app.field_value(&agent, &id, "user").await, "bot");
}
