//! Changing an existing group's scopes (`PATCH /v1/groups/{id}`): its members gain the added
//! scopes' keys from the caller's copies and lose, with their agents, the removed ones'; only
//! the owner and admins may, and bad input changes nothing.

use crate::helpers::{TestApp, assert_error, json_ok, send, spawn_app};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

fn cred(name: &str, value: &str, scope: &str) -> Value {
    json!({"name": name, "value": value, "tier": "credential", "scope": scope})
}

/// An entry with a `deploy` and a `billing` field (the owner holds both keys), an admin, alice
/// in `deployers` (`deploy`) and alice's agent with `deploy`.
struct Setup {
    app: TestApp,
    admin: (String, String),
    alice: (String, String),
    alice_bot: (String, String),
    deployers: String,
    entry: String,
}

async fn setup() -> Setup {
    let app = spawn_app().await;
    let entry = app
        .create_entry(&json!({"title": "prod", "fields": [
            cred("deploy_key", "dk-1", "deploy"),
            cred("billing_key", "bk-1", "billing"),
        ]}))
        .await;
    let admin = app.create_user("adm", "admin").await;
    let alice = app.create_user("alice", "member").await;
    let deployers = app.create_group("deployers", &["deploy"]).await;
    app.add_member(&deployers, &alice.0).await;
    let alice_bot = app
        .create_agent_as(
            &alice.1,
            &json!({"name": "alice-bot", "scopes": ["deploy"]}),
        )
        .await;
    Setup {
        app,
        admin,
        alice,
        alice_bot,
        deployers,
        entry,
    }
}

async fn patch_group(app: &TestApp, token: &str, id: &str, body: &Value) -> reqwest::Response {
    send(
        app.request(Method::PATCH, &format!("/v1/groups/{id}"), token)
            .json(body),
    )
    .await
}

fn field_names(entry: &Value) -> Vec<&str> {
    entry["fields"]
        .as_array()
        .expect("fields")
        .iter()
        .map(|f| f["name"].as_str().expect("name"))
        .collect()
}

/// Live copies of `scope`'s key held by `holders`.
fn copies(app: &TestApp, scope: &str, holders: &[&str]) -> i64 {
    let db = rusqlite::Connection::open(app.data_dir().join("vault.db")).expect("open db");
    holders
        .iter()
        .map(|h| {
            db.query_row(
                "SELECT count(*) FROM scope_keys WHERE scope = ?1 AND agent_id = ?2 AND length(wrapped) > 0",
                [scope, h],
                |r| r.get::<_, i64>(0),
            )
            .expect("count")
        })
        .sum()
}

async fn group_scopes(app: &TestApp, id: &str) -> Value {
    let groups = json_ok(app.get("/v1/groups", &app.owner_token).await).await;
    groups["groups"]
        .as_array()
        .expect("groups")
        .iter()
        .find(|g| g["id"] == id)
        .expect("the group")["scopes"]
        .clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn adding_a_scope_to_a_group_grants_it_and_removing_one_takes_it_from_members_and_their_agents()
 {
    let s = setup().await;
    let app = &s.app;
    let (alice, bot) = (&s.alice.1, &s.alice_bot.1);
    assert_eq!(
        app.get_field(alice, &s.entry, "billing_key").await.status(),
        404
    );

    // Add billing: alice reads it and lists it at once; her agent, declared for deploy only,
    // does not.
    let v = json_ok(
        patch_group(
            app,
            &app.owner_token,
            &s.deployers,
            &json!({"scopes": ["deploy", "billing"]}),
        )
        .await,
    )
    .await;
    assert_eq!(v["scopes"], json!(["billing", "deploy"]));
    assert_eq!(v["members"], json!([s.alice.0]));
    assert_eq!(
        app.field_value(alice, &s.entry, "billing_key").await,
        "bk-1"
    );
    let (text, entries) = app.list_entries(alice).await;
    assert_eq!(entries.len(), 1, "{text}");
    let mut names = field_names(&entries[0]);
    names.sort();
    assert_eq!(names, ["billing_key", "deploy_key"], "{text}");
    let me = json_ok(app.get("/v1/me", alice).await).await;
    assert_eq!(me["scopes"], json!(["billing", "deploy"]));
    assert_eq!(
        app.get_field(bot, &s.entry, "billing_key").await.status(),
        404
    );
    // Now within her scopes, she can make an agent for billing, and it reads it.
    let (_, billing_bot) = app
        .create_agent_as(
            alice,
            &json!({"name": "billing-bot", "scopes": ["billing"]}),
        )
        .await;
    assert_eq!(
        app.field_value(&billing_bot, &s.entry, "billing_key").await,
        "bk-1"
    );

    // Remove deploy: alice and the agent she made for it lose it, the keys too.
    let v = json_ok(
        patch_group(
            app,
            &app.owner_token,
            &s.deployers,
            &json!({"scopes": ["billing"]}),
        )
        .await,
    )
    .await;
    assert_eq!(v["scopes"], json!(["billing"]));
    for token in [alice, bot] {
        assert_error(
            app.get_field(token, &s.entry, "deploy_key").await,
            StatusCode::NOT_FOUND,
            "field_not_found",
        )
        .await;
    }
    assert_eq!(
        copies(app, "deploy", &[&s.alice.0, &s.alice_bot.0]),
        0,
        "no copy of the removed scope's key is left with the member or its agent"
    );
    assert_eq!(
        app.field_value(alice, &s.entry, "billing_key").await,
        "bk-1"
    );
    let (text, entries) = app.list_entries(alice).await;
    assert_eq!(field_names(&entries[0]), ["billing_key"], "{text}");
    assert_eq!(group_scopes(app, &s.deployers).await, json!(["billing"]));

    // Each change is in the trail, with the scopes' names.
    let trail = json_ok(app.get("/v1/audit?limit=1000", &app.owner_token).await).await;
    let updates: Vec<&Value> = trail["events"]
        .as_array()
        .expect("events")
        .iter()
        .filter(|e| e["action"] == "group.update" && e["target"] == s.deployers.as_str())
        .collect();
    assert_eq!(updates.len(), 2, "{updates:?}");
    assert_eq!(updates[0]["details"]["added"], "billing");
    assert_eq!(updates[0]["details"]["removed"], "");
    assert_eq!(updates[1]["details"]["added"], "");
    assert_eq!(updates[1]["details"]["removed"], "deploy");
    assert_eq!(updates[1]["actor"]["kind"], "owner");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_owner_and_admins_change_a_groups_scopes_and_bad_input_changes_nothing() {
    let s = setup().await;
    let app = &s.app;
    let alice = &s.alice.1;
    let body = json!({"scopes": ["deploy", "billing"]});
    assert_error(
        patch_group(app, alice, &s.deployers, &body).await,
        StatusCode::FORBIDDEN,
        "forbidden",
    )
    .await;
    assert_error(
        patch_group(app, &s.alice_bot.1, &s.deployers, &body).await,
        StatusCode::FORBIDDEN,
        "forbidden",
    )
    .await;
    assert_error(
        patch_group(
            app,
            &app.owner_token,
            "00000000-0000-7000-8000-000000000000",
            &body,
        )
        .await,
        StatusCode::NOT_FOUND,
        "group_not_found",
    )
    .await;
    for bad in [
        json!({"scopes": ["deploy", "no spaces"]}),
        json!({"scopes": [""]}),
        json!({"name": ""}),
        json!({}),
        json!({"scopes": ["deploy"], "members": []}),
    ] {
        let res = patch_group(app, &app.owner_token, &s.deployers, &bad).await;
        assert_eq!(res.status(), StatusCode::BAD_REQUEST, "{bad}");
    }
    assert_eq!(group_scopes(app, &s.deployers).await, json!(["deploy"]));
    assert_eq!(
        app.get_field(alice, &s.entry, "billing_key").await.status(),
        404
    );
    assert_eq!(app.field_value(alice, &s.entry, "deploy_key").await, "dk-1");

    // A name is changed alone too, and a taken one is a conflict.
    app.create_group("billing", &["billing"]).await;
    let v = json_ok(
        patch_group(
            app,
            &s.admin.1,
            &s.deployers,
            &json!({"name": "deploy-team"}),
        )
        .await,
    )
    .await;
    assert_eq!(
        (v["name"].as_str(), &v["scopes"]),
        (Some("deploy-team"), &json!(["deploy"]))
    );
    assert_error(
        patch_group(app, &s.admin.1, &s.deployers, &json!({"name": "billing"})).await,
        StatusCode::CONFLICT,
        "conflict",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_without_a_scopes_key_cannot_add_it_to_a_group_and_nothing_changes() {
    let s = setup().await;
    let app = &s.app;
    let alice = &s.alice.1;
    // The admin holds no copy of the billing key: it cannot wrap it for alice.
    let text = assert_error(
        patch_group(
            app,
            &s.admin.1,
            &s.deployers,
            &json!({"scopes": ["deploy", "billing"]}),
        )
        .await,
        StatusCode::CONFLICT,
        "scope_key_not_held",
    )
    .await;
    assert!(
        text.contains("\\\"billing\\\"") && text.contains("the owner"),
        "{text}"
    );
    assert_eq!(group_scopes(app, &s.deployers).await, json!(["deploy"]));
    assert_eq!(
        app.get_field(alice, &s.entry, "billing_key").await.status(),
        404
    );
    // Removing a scope needs no key, nor does adding one that has no key yet.
    let v =
        json_ok(patch_group(app, &s.admin.1, &s.deployers, &json!({"scopes": ["fresh"]})).await)
            .await;
    assert_eq!(v["scopes"], json!(["fresh"]));
    assert_eq!(
        app.get_field(alice, &s.entry, "deploy_key").await.status(),
        404
    );
    let id = app
        .create_entry_as(
            alice,
            &json!({"title": "f", "fields": [cred("k", "fresh-v", "fresh")]}),
        )
        .await;
    assert_eq!(app.field_value(alice, &id, "k").await, "fresh-v");
    assert_eq!(app.field_value(&app.owner_token, &id, "k").await, "fresh-v");
}
