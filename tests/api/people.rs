//! People and groups: every role's allowed and denied calls, scopes through groups, what
//! deactivation, reactivation and removal do, grants that need a key holder, a member's writes
//! that keep what it cannot see.

use crate::helpers::{TestApp, assert_error, assert_no_store, json_ok, send, spawn_app};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

fn cred(name: &str, value: &str, scope: &str) -> Value {
    json!({"name": name, "value": value, "tier": "credential", "scope": scope})
}

/// The owner, an admin, two members (alice in `deployers`, bob in `billing`), alice's agent,
/// and an entry with a field in each scope and one without a scope.
struct Team {
    app: TestApp,
    admin: (String, String),
    alice: (String, String),
    bob: (String, String),
    alice_bot: (String, String),
    deployers: String,
    billing: String,
    entry: String,
}

async fn team() -> Team {
    let app = spawn_app().await;
    let entry = app
        .create_entry(&json!({"title": "prod", "fields": [
            cred("deploy_key", "dk-1", "deploy"),
            cred("billing_key", "bk-1", "billing"),
            {"name": "note", "value": "unscoped-note", "tier": "vault"}
        ]}))
        .await;
    let admin = app.create_user("adm", "admin").await;
    let alice = app.create_user("alice", "member").await;
    let bob = app.create_user("bob", "member").await;
    let deployers = app.create_group("deployers", &["deploy"]).await;
    let billing = app.create_group("billing", &["billing"]).await;
    app.add_member(&deployers, &alice.0).await;
    app.add_member(&billing, &bob.0).await;
    let alice_bot = app
        .create_agent_as(
            &alice.1,
            &json!({"name": "alice-bot", "scopes": ["deploy"]}),
        )
        .await;
    Team {
        app,
        admin,
        alice,
        bob,
        alice_bot,
        deployers,
        billing,
        entry,
    }
}

async fn status_of(
    app: &TestApp,
    token: &str,
    method: Method,
    path: &str,
    body: Option<&Value>,
) -> (u16, Value) {
    let mut req = app.request(method, path, token);
    if let Some(b) = body {
        req = req.json(b);
    }
    let res = send(req).await;
    let status = res.status().as_u16();
    let text = res.text().await.unwrap_or_default();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

/// What a row does: a label, the caller's token, the request, and the status (and error
/// code) it must get.
type Row<'a> = (
    &'a str,
    &'a str,
    Method,
    String,
    Option<Value>,
    u16,
    Option<&'a str>,
);

/// Each row: who calls what, and the status (and error code) it must get. Rows run in order,
/// so a row may rely on what an earlier one made.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_role_is_allowed_and_denied_what_the_rules_say() {
    let t = team().await;
    let app = &t.app;
    let owner = app.owner_token.clone();
    let (admin, alice, bob, bot) = (
        t.admin.1.clone(),
        t.alice.1.clone(),
        t.bob.1.clone(),
        t.alice_bot.1.clone(),
    );
    let other_admin = app.create_user("adm2", "admin").await;
    let owner_id = json_ok(app.get("/v1/me", &owner).await).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let bob_bot = app
        .create_agent_as(&bob, &json!({"name": "bob-bot", "scopes": ["billing"]}))
        .await;
    let user =
        |n: &str, r: &str| json!({"name": n, "email": format!("{n}@example.com"), "role": r});
    let entry_in = |scope: Option<&str>| match scope {
        Some(s) => json!({"title": "w", "fields": [cred("k", "v", s)]}),
        None => json!({"title": "w", "fields": [{"name": "k", "value": "v", "tier": "vault"}]}),
    };
    let u = |id: &str| format!("/v1/users/{id}");
    let rows: Vec<Row> = vec![
        // Users: owner and admins create members; only the owner creates admins.
        (
            "owner adds a member",
            &owner,
            Method::POST,
            "/v1/users".into(),
            Some(user("m1", "member")),
            201,
            None,
        ),
        (
            "admin adds a member",
            &admin,
            Method::POST,
            "/v1/users".into(),
            Some(user("m2", "member")),
            201,
            None,
        ),
        (
            "member adds a member",
            &alice,
            Method::POST,
            "/v1/users".into(),
            Some(user("m3", "member")),
            403,
            Some("forbidden"),
        ),
        (
            "agent adds a member",
            &bot,
            Method::POST,
            "/v1/users".into(),
            Some(user("m4", "member")),
            403,
            Some("forbidden"),
        ),
        (
            "admin adds an admin",
            &admin,
            Method::POST,
            "/v1/users".into(),
            Some(user("a9", "admin")),
            403,
            Some("owner_only"),
        ),
        (
            "owner adds an admin",
            &owner,
            Method::POST,
            "/v1/users".into(),
            Some(user("a8", "admin")),
            201,
            None,
        ),
        (
            "owner lists users",
            &owner,
            Method::GET,
            "/v1/users".into(),
            None,
            200,
            None,
        ),
        (
            "admin lists users",
            &admin,
            Method::GET,
            "/v1/users".into(),
            None,
            200,
            None,
        ),
        (
            "member lists users",
            &alice,
            Method::GET,
            "/v1/users".into(),
            None,
            403,
            Some("forbidden"),
        ),
        (
            "member reads itself",
            &alice,
            Method::GET,
            u(&t.alice.0),
            None,
            200,
            None,
        ),
        (
            "member reads another",
            &alice,
            Method::GET,
            u(&t.bob.0),
            None,
            403,
            Some("forbidden"),
        ),
        (
            "admin demotes an admin",
            &admin,
            Method::PATCH,
            u(&other_admin.0),
            Some(json!({"role": "member"})),
            403,
            Some("owner_only"),
        ),
        (
            "admin deactivates an admin",
            &admin,
            Method::PATCH,
            u(&other_admin.0),
            Some(json!({"active": false})),
            403,
            Some("owner_only"),
        ),
        (
            "admin removes an admin",
            &admin,
            Method::DELETE,
            u(&other_admin.0),
            None,
            403,
            Some("owner_only"),
        ),
        (
            "admin promotes a member",
            &admin,
            Method::PATCH,
            u(&t.bob.0),
            Some(json!({"role": "admin"})),
            403,
            Some("owner_only"),
        ),
        (
            "admin renames a member",
            &admin,
            Method::PATCH,
            u(&t.bob.0),
            Some(json!({"name": "robert"})),
            200,
            None,
        ),
        (
            "member deactivates a member",
            &alice,
            Method::PATCH,
            u(&t.bob.0),
            Some(json!({"active": false})),
            403,
            Some("forbidden"),
        ),
        (
            "admin deactivates the owner",
            &admin,
            Method::PATCH,
            u(&owner_id),
            Some(json!({"active": false})),
            403,
            Some("forbidden"),
        ),
        (
            "owner deactivates the owner",
            &owner,
            Method::PATCH,
            u(&owner_id),
            Some(json!({"active": false})),
            403,
            Some("forbidden"),
        ),
        (
            "owner removes the owner",
            &owner,
            Method::DELETE,
            u(&owner_id),
            None,
            403,
            Some("forbidden"),
        ),
        (
            "owner deactivates an admin",
            &owner,
            Method::PATCH,
            u(&other_admin.0),
            Some(json!({"active": false})),
            200,
            None,
        ),
        // Groups: owner and admins.
        (
            "admin makes a group",
            &admin,
            Method::POST,
            "/v1/groups".into(),
            Some(json!({"name": "g-adm", "scopes": ["x"]})),
            201,
            None,
        ),
        (
            "member makes a group",
            &alice,
            Method::POST,
            "/v1/groups".into(),
            Some(json!({"name": "g-m", "scopes": ["x"]})),
            403,
            Some("forbidden"),
        ),
        (
            "agent makes a group",
            &bot,
            Method::POST,
            "/v1/groups".into(),
            Some(json!({"name": "g-a", "scopes": ["x"]})),
            403,
            Some("forbidden"),
        ),
        (
            "member adds a member",
            &alice,
            Method::PUT,
            format!("/v1/groups/{}/members/{}", t.billing, t.alice.0),
            None,
            403,
            Some("forbidden"),
        ),
        (
            "member removes a member",
            &alice,
            Method::DELETE,
            format!("/v1/groups/{}/members/{}", t.billing, t.bob.0),
            None,
            403,
            Some("forbidden"),
        ),
        (
            "member deletes a group",
            &alice,
            Method::DELETE,
            format!("/v1/groups/{}", t.billing),
            None,
            403,
            Some("forbidden"),
        ),
        (
            "member lists its groups",
            &alice,
            Method::GET,
            "/v1/groups".into(),
            None,
            200,
            None,
        ),
        (
            "agent lists groups",
            &bot,
            Method::GET,
            "/v1/groups".into(),
            None,
            403,
            Some("forbidden"),
        ),
        // Agents: within the creator's scopes; agents make none.
        (
            "member makes an agent in its scope",
            &alice,
            Method::POST,
            "/v1/agents".into(),
            Some(json!({"name": "a2", "scopes": ["deploy"]})),
            201,
            None,
        ),
        (
            "member makes an agent outside its scopes",
            &alice,
            Method::POST,
            "/v1/agents".into(),
            Some(json!({"name": "a3", "scopes": ["deploy", "billing"]})),
            403,
            Some("forbidden"),
        ),
        (
            "admin makes an agent outside its scopes",
            &admin,
            Method::POST,
            "/v1/agents".into(),
            Some(json!({"name": "a4", "scopes": ["deploy"]})),
            403,
            Some("forbidden"),
        ),
        (
            "agent makes an agent",
            &bot,
            Method::POST,
            "/v1/agents".into(),
            Some(json!({"name": "a5", "scopes": ["deploy"]})),
            403,
            Some("forbidden"),
        ),
        (
            "member revokes another's agent",
            &alice,
            Method::DELETE,
            format!("/v1/agents/{}", bob_bot.0),
            None,
            404,
            Some("agent_not_found"),
        ),
        // Entries: in the caller's scopes; unscoped fields for the owner and admins.
        (
            "member writes in its scope",
            &alice,
            Method::POST,
            "/v1/entries".into(),
            Some(entry_in(Some("deploy"))),
            201,
            None,
        ),
        (
            "member writes outside its scopes",
            &alice,
            Method::POST,
            "/v1/entries".into(),
            Some(entry_in(Some("billing"))),
            403,
            Some("forbidden"),
        ),
        (
            "member writes an unscoped field",
            &alice,
            Method::POST,
            "/v1/entries".into(),
            Some(entry_in(None)),
            403,
            Some("forbidden"),
        ),
        (
            "admin writes an unscoped field",
            &admin,
            Method::POST,
            "/v1/entries".into(),
            Some(entry_in(None)),
            201,
            None,
        ),
        (
            "agent writes",
            &bot,
            Method::POST,
            "/v1/entries".into(),
            Some(entry_in(Some("deploy"))),
            403,
            Some("forbidden"),
        ),
        (
            "member reads its scope",
            &alice,
            Method::GET,
            format!("/v1/entries/{}/fields/deploy_key", t.entry),
            None,
            200,
            None,
        ),
        (
            "member reads another scope",
            &alice,
            Method::GET,
            format!("/v1/entries/{}/fields/billing_key", t.entry),
            None,
            404,
            Some("field_not_found"),
        ),
        (
            "member reads an unscoped field",
            &alice,
            Method::GET,
            format!("/v1/entries/{}/fields/note", t.entry),
            None,
            404,
            Some("field_not_found"),
        ),
        (
            "admin reads an unscoped field",
            &admin,
            Method::GET,
            format!("/v1/entries/{}/fields/note", t.entry),
            None,
            200,
            None,
        ),
        (
            "admin reads a scope it has no group for",
            &admin,
            Method::GET,
            format!("/v1/entries/{}/fields/deploy_key", t.entry),
            None,
            404,
            Some("field_not_found"),
        ),
        (
            "member deletes an entry it sees in part",
            &alice,
            Method::DELETE,
            format!("/v1/entries/{}", t.entry),
            None,
            403,
            Some("forbidden"),
        ),
        // Tokens: the owner and users rotate their own; agents do not.
        (
            "agent rotates its token",
            &bot,
            Method::POST,
            "/v1/token/rotate".into(),
            None,
            403,
            Some("forbidden"),
        ),
        (
            "member rotates via the owner's route",
            &bob,
            Method::POST,
            "/v1/owner/rotate".into(),
            None,
            403,
            Some("owner_only"),
        ),
        // Admins manage everyone's agents (last: it revokes one).
        (
            "admin lists every agent",
            &admin,
            Method::GET,
            "/v1/agents".into(),
            None,
            200,
            None,
        ),
        (
            "admin revokes a member's agent",
            &admin,
            Method::DELETE,
            format!("/v1/agents/{}", bob_bot.0),
            None,
            204,
            None,
        ),
    ];
    for (what, token, method, path, body, want, code) in rows {
        let (got, v) = status_of(app, token, method, &path, body.as_ref()).await;
        assert_eq!(got, want, "{what}: {v}");
        if let Some(code) = code {
            assert_eq!(v["error"]["code"], code, "{what}: {v}");
        }
    }

    // Agents list under their creator: a member sees its own only, an admin every one.
    let mine = json_ok(app.get("/v1/agents", &alice).await).await;
    let names: Vec<&str> = mine["agents"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["alice-bot", "a2"]);
    assert!(
        mine["agents"]
            .as_array()
            .unwrap()
            .iter()
            .all(|a| a["creator_id"] == t.alice.0.as_str())
    );
    let all = json_ok(app.get("/v1/agents", &admin).await).await;
    assert_eq!(all["agents"].as_array().unwrap().len(), 3);
    // A member's list of groups holds only its own.
    let groups = json_ok(app.get("/v1/groups", &alice).await).await;
    let names: Vec<&str> = groups["groups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["deployers"]);
    let _ = &t.deployers;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_reads_through_a_group_and_loses_it_when_removed() {
    let t = team().await;
    let app = &t.app;
    let (alice, bot) = (&t.alice.1, &t.alice_bot.1);
    assert_eq!(app.field_value(alice, &t.entry, "deploy_key").await, "dk-1");
    assert_eq!(app.field_value(bot, &t.entry, "deploy_key").await, "dk-1");
    // Listings show only entries with a field of the member's scopes, and only those fields.
    let (text, entries) = app.list_entries(alice).await;
    assert_eq!(entries.len(), 1);
    let fields: Vec<&str> = entries[0]["fields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["name"].as_str().unwrap())
        .collect();
    assert_eq!(fields, ["deploy_key"], "{text}");
    let me = json_ok(app.get("/v1/me", alice).await).await;
    assert_eq!(me["kind"], "user");
    assert_eq!(me["scopes"], json!(["deploy"]));

    // A later key (a new scope added to the group) reaches the member and its agent.
    let res = app
        .remove_member_as(&t.admin.1, &t.deployers, &t.alice.0)
        .await;
    assert_eq!(res.status(), 204);
    for token in [alice, bot] {
        assert_error(
            app.get_field(token, &t.entry, "deploy_key").await,
            StatusCode::NOT_FOUND,
            "field_not_found",
        )
        .await;
        let (_, entries) = app.list_entries(token).await;
        assert!(entries.is_empty(), "nothing is listed any more");
    }
    // Their copies of the key are gone, not just hidden.
    let db = rusqlite::Connection::open(app.data_dir().join("vault.db")).unwrap();
    let live: i64 = db
        .query_row(
            "SELECT count(*) FROM scope_keys WHERE agent_id IN (?1, ?2) AND length(wrapped) > 0",
            [&t.alice.0, &t.alice_bot.0],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(live, 0, "removed member and its agent keep no copy");

    // Back in the group: the owner's copy is granted again, to the member and its agent.
    app.add_member(&t.deployers, &t.alice.0).await;
    assert_eq!(app.field_value(alice, &t.entry, "deploy_key").await, "dk-1");
    assert_eq!(app.field_value(bot, &t.entry, "deploy_key").await, "dk-1");
    // Deleting the group ends it for everyone in it.
    let res = send(app.owner(Method::DELETE, &format!("/v1/groups/{}", t.deployers))).await;
    assert_eq!(res.status(), 204);
    assert_eq!(
        app.get_field(alice, &t.entry, "deploy_key").await.status(),
        404
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deactivation_stops_the_user_and_its_agents_at_once_and_reactivation_brings_the_user_back()
{
    let t = team().await;
    let app = &t.app;
    let (alice, bot) = (t.alice.1.clone(), t.alice_bot.1.clone());
    assert_eq!(app.field_value(&bot, &t.entry, "deploy_key").await, "dk-1");

    let res = app
        .patch_user(&t.admin.1, &t.alice.0, &json!({"active": false}))
        .await;
    let v = json_ok(res).await;
    assert_eq!(v["active"], false);
    assert!(v.get("token").is_none());
    // The very next request of each answers 401.
    for token in [&alice, &bot] {
        app.assert_refused(token).await;
    }
    let (_, agents) = app.list_agents().await;
    let a = agents.iter().find(|a| a["name"] == "alice-bot").unwrap();
    assert_eq!(a["status"], "revoked");

    // Reactivated: a new token (shown once, never the old one), the group's keys re-granted by
    // the owner; the agent stays revoked.
    let res = app
        .patch_user(&app.owner_token, &t.alice.0, &json!({"active": true}))
        .await;
    assert_no_store(&res);
    let v = json_ok(res).await;
    assert_eq!(v["active"], true);
    let new = v["token"].as_str().expect("a new token").to_owned();
    assert_ne!(new, alice);
    assert_eq!(app.field_value(&new, &t.entry, "deploy_key").await, "dk-1");
    assert_eq!(app.get("/v1/entries", &alice).await.status(), 401);
    assert_eq!(app.get("/v1/entries", &bot).await.status(), 401);

    // Deleted: gone from the list, its name free again.
    let res = send(app.owner(Method::DELETE, &format!("/v1/users/{}", t.alice.0))).await;
    assert_eq!(res.status(), 204);
    assert_eq!(app.get("/v1/entries", &new).await.status(), 401);
    let users = json_ok(app.get("/v1/users", &app.owner_token).await).await;
    assert!(
        users["users"]
            .as_array()
            .unwrap()
            .iter()
            .all(|u| u["name"] != "alice")
    );
    app.create_user("alice", "member").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_grant_by_a_caller_without_the_key_is_409_naming_the_scope_and_its_holders() {
    let t = team().await;
    let app = &t.app;
    let (carol_id, carol) = app.create_user("carol", "member").await;
    // The admin holds no copy of the deploy key: it cannot give it to carol.
    let text = assert_error(
        app.add_member_as(&t.admin.1, &t.deployers, &carol_id).await,
        StatusCode::CONFLICT,
        "scope_key_not_held",
    )
    .await;
    assert!(
        text.contains("\\\"deploy\\\"")
            && text.contains("the owner")
            && text.contains("user \\\"alice\\\""),
        "{text}"
    );
    // Nothing changed: carol is no member and reads nothing.
    let groups = json_ok(app.get("/v1/groups", &carol).await).await;
    assert_eq!(groups["groups"], json!([]));
    // A scope without a key yet needs no grant: the admin may add her to a new group, and the
    // key made later (by a member writing there) is wrapped for her at once.
    let fresh = app.create_group_as(&t.admin.1, "fresh", &["fresh"]).await;
    let res = app.add_member_as(&t.admin.1, &fresh, &carol_id).await;
    assert_eq!(res.status(), 204);
    let (dave_id, dave) = app.create_user("dave", "member").await;
    app.add_member(&fresh, &dave_id).await;
    let id = app
        .create_entry_as(
            &dave,
            &json!({"title": "f", "fields": [cred("k", "fresh-v", "fresh")]}),
        )
        .await;
    assert_eq!(app.field_value(&carol, &id, "k").await, "fresh-v");
    assert_eq!(app.field_value(&app.owner_token, &id, "k").await, "fresh-v");
    // The owner holds every key, so it can grant what the admin could not.
    app.add_member(&t.deployers, &carol_id).await;
    assert_eq!(
        app.field_value(&carol, &t.entry, "deploy_key").await,
        "dk-1"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_members_write_never_touches_fields_outside_its_scopes() {
    let t = team().await;
    let app = &t.app;
    let alice = &t.alice.1;
    // Alice replaces the entry with what she sees: the fields she cannot see stay.
    let res = app
        .put_entry(
            alice,
            &t.entry,
            &json!({"title": "prod (edited)", "fields": [
                cred("deploy_key", "dk-2", "deploy")
            ]}),
        )
        .await;
    assert_eq!(res.status(), 200, "{}", res.text().await.unwrap());
    let owner = &app.owner_token;
    assert_eq!(app.field_value(owner, &t.entry, "deploy_key").await, "dk-2");
    assert_eq!(
        app.field_value(owner, &t.entry, "billing_key").await,
        "bk-1"
    );
    assert_eq!(
        app.field_value(owner, &t.entry, "note").await,
        "unscoped-note"
    );
    assert_eq!(
        app.field_value(&t.bob.1, &t.entry, "billing_key").await,
        "bk-1"
    );
    let e = json_ok(app.get_entry(owner, &t.entry).await).await;
    assert_eq!(e["title"], "prod (edited)");
    // Reusing the name of a field she cannot see is refused, and changes nothing.
    assert_error(
        app.put_entry(
            alice,
            &t.entry,
            &json!({"title": "x", "fields": [cred("billing_key", "mine", "deploy")]}),
        )
        .await,
        StatusCode::CONFLICT,
        "conflict",
    )
    .await;
    assert_eq!(
        app.field_value(owner, &t.entry, "billing_key").await,
        "bk-1"
    );
    // Deleting needs every field in sight: refused for her, allowed for an entry all hers.
    assert_eq!(app.delete_entry(alice, &t.entry).await.status(), 403);
    let own = app
        .create_entry_as(
            alice,
            &json!({"title": "mine", "fields": [cred("k", "v", "deploy")]}),
        )
        .await;
    assert_eq!(app.delete_entry(alice, &own).await.status(), 204);
    // Bulk follows the same rules.
    let res = send(
        app.request(Method::POST, "/v1/entries/bulk", alice)
            .json(&json!({"entries": [
                {"title": "ok", "fields": [cred("k", "v", "deploy")]},
                {"title": "not ok", "fields": [cred("k", "v", "billing")]}
            ]})),
    )
    .await;
    assert_error(res, StatusCode::FORBIDDEN, "forbidden").await;
    let res = send(
        app.request(Method::POST, "/v1/entries/bulk", alice)
            .json(&json!({"entries": [
                {"title": "ok", "fields": [cred("k", "v", "deploy")]}
            ]})),
    )
    .await;
    assert_eq!(res.status(), 201);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_rotates_its_own_token_and_a_retry_is_idempotent() {
    let t = team().await;
    let app = &t.app;
    let old = t.alice.1.clone();
    let proposed = clavitor::crypto::Token::generate().expose().to_owned();
    let body = json!({"token": proposed});
    let v = json_ok(
        send(
            app.request(Method::POST, "/v1/token/rotate", &old)
                .json(&body),
        )
        .await,
    )
    .await;
    assert_eq!(v, json!({"token": proposed}));
    assert_eq!(app.get("/v1/entries", &old).await.status(), 401);
    // The answer was lost: the retry presents the proposed token, and nothing changes.
    let v = json_ok(
        send(
            app.request(Method::POST, "/v1/token/rotate", &proposed)
                .json(&body),
        )
        .await,
    )
    .await;
    assert_eq!(v, json!({"token": proposed}));
    // Her key pair was re-sealed, not replaced: she reads what she read.
    assert_eq!(
        app.field_value(&proposed, &t.entry, "deploy_key").await,
        "dk-1"
    );
    // Her agent carries on.
    assert_eq!(
        app.field_value(&t.alice_bot.1, &t.entry, "deploy_key")
            .await,
        "dk-1"
    );
}

/// Wraps of the format before key pairs (under a key derived from each token) are rewritten to
/// the principal's new key pair on its first request, and read all along.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wraps_from_before_key_pairs_move_to_key_pairs_on_each_principals_first_request() {
    use clavitor::crypto::{PrivateKey, ScopeKey, Token};
    let app = spawn_app().await;
    let id = app
        .create_entry(&json!({"title": "old", "fields": [cred("k", "old-v", "deploy")]}))
        .await;
    let (agent_id, agent) = app
        .create_agent(&json!({"name": "old-bot", "scopes": ["deploy"]}))
        .await;
    let owner = app.owner_token.clone();
    let stopped = app.stop().await;
    let db = stopped.db_path();
    let owner_id: String;
    {
        // The vault as an older version left it: no key pairs, every copy of a scope key
        // sealed under its holder's token.
        let c = rusqlite::Connection::open(&db).unwrap();
        owner_id = c
            .query_row("SELECT id FROM agents WHERE kind = 'owner'", [], |r| {
                r.get(0)
            })
            .unwrap();
        for (holder, token) in [(&owner_id, &owner), (&agent_id, &agent)] {
            let token = Token::from_text(token);
            let (sealed, wrapped): (Vec<u8>, Vec<u8>) = c
                .query_row(
                    "SELECT a.sealed_private_key, k.wrapped FROM agents a JOIN scope_keys k ON k.agent_id = a.id
                     WHERE a.id = ?1 AND k.scope = 'deploy'",
                    [holder],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .unwrap();
            let key = ScopeKey::unwrap_stored(&wrapped, "deploy", holder, &token, || {
                PrivateKey::unseal(&token, holder, &sealed)
            })
            .unwrap();
            let legacy = key.wrap_legacy(&token, "deploy", holder).unwrap();
            c.execute(
                "UPDATE scope_keys SET wrapped = ?2 WHERE agent_id = ?1",
                rusqlite::params![holder, legacy],
            )
            .unwrap();
            c.execute(
                "UPDATE agents SET public_key = NULL, sealed_private_key = NULL WHERE id = ?1",
                [holder],
            )
            .unwrap();
        }
    }
    let app = stopped.start().await;
    let format_of = |holder: &str| -> (Option<u8>, bool) {
        let c = rusqlite::Connection::open(&db).unwrap();
        let tag: Vec<u8> = c
            .query_row(
                "SELECT wrapped FROM scope_keys WHERE agent_id = ?1",
                [holder],
                |r| r.get(0),
            )
            .unwrap();
        let has_pair: bool = c
            .query_row(
                "SELECT public_key IS NOT NULL AND sealed_private_key IS NOT NULL FROM agents WHERE id = ?1",
                [holder],
                |r| r.get(0),
            )
            .unwrap();
        (tag.first().copied(), has_pair)
    };
    assert_eq!(format_of(&owner_id), (Some(1), false));
    assert_eq!(format_of(&agent_id), (Some(1), false));

    // The owner's first request: it reads, and its copy is now HPKE to its new key pair.
    assert_eq!(app.field_value(&owner, &id, "k").await, "old-v");
    assert_eq!(format_of(&owner_id), (Some(2), true));
    assert_eq!(
        format_of(&agent_id),
        (Some(1), false),
        "the agent has not called yet"
    );
    // The agent's first request does the same for it.
    assert_eq!(app.field_value(&agent, &id, "k").await, "old-v");
    assert_eq!(format_of(&agent_id), (Some(2), true));
    // And the owner can grant the key now (to a new agent) from its migrated copy.
    let (_, bot) = app
        .create_agent(&json!({"name": "new-bot", "scopes": ["deploy"]}))
        .await;
    assert_eq!(app.field_value(&bot, &id, "k").await, "old-v");
}
