//! Invites: an admin issues a single-use code that expires; the user redeems it with a token
//! its own client made, and gets that token and a key pair. Used, expired and wrong codes
//! get a clear 400; guesses are rate limited per address; both steps are audited.

use crate::helpers::{TestApp, assert_error, json_ok, send, spawn_app};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

async fn created(res: reqwest::Response) -> Value {
    let status = res.status();
    let text = res.text().await.unwrap_or_default();
    assert_eq!(status, StatusCode::CREATED, "{text}");
    serde_json::from_str(&text).expect("JSON body")
}

fn fresh_token() -> String {
    clavitor::crypto::Token::generate().expose().to_owned()
}

async fn invite(app: &TestApp, token: &str, user: &str, body: Option<Value>) -> reqwest::Response {
    let mut req = app.request(Method::POST, &format!("/v1/users/{user}/invite"), token);
    if let Some(b) = body {
        req = req.json(&b);
    }
    send(req).await
}

async fn redeem(app: &TestApp, code: &str, token: &str) -> reqwest::Response {
    send(
        app.client
            .post(app.url("/v1/invite/redeem"))
            .json(&json!({"code": code, "token": token})),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redeemed_invite_gives_the_user_the_token_its_client_made_and_works_once() {
    let app = spawn_app().await;
    let entry = app
        .create_entry(&json!({"title": "prod", "fields": [
            {"name": "deploy_key", "value": "dk-1", "tier": "credential", "scope": "deploy"}
        ]}))
        .await;
    let (bob_id, old_token) = app.create_user("bob", "member").await;
    let group = app.create_group("deployers", &["deploy"]).await;
    app.add_member(&group, &bob_id).await;

    let res = invite(&app, &app.owner_token, &bob_id, None).await;
    assert_eq!(res.status(), StatusCode::CREATED);
    assert_eq!(res.headers()["cache-control"], "no-store");
    let v = created(res).await;
    let code = v["code"].as_str().unwrap().to_owned();
    assert!(code.starts_with("clvinv_"), "{v}");
    assert!(v["expires_at"].as_str().is_some(), "{v}");

    let mine = fresh_token();
    let v = json_ok(redeem(&app, &code, &mine).await).await;
    assert_eq!(v["id"], bob_id.as_str());
    assert_eq!(v["name"], "bob");
    assert_eq!(v["pending_grants"], 1, "{v}");
    // The client's token is bob's now; the one the server made is not.
    let me = json_ok(app.get("/v1/me", &mine).await).await;
    assert_eq!(me["id"], bob_id.as_str());
    assert_eq!(app.get("/v1/me", &old_token).await.status(), 401);
    // Nobody has wrapped the new key pair anything: the membership waits for a holder.
    let user = json_ok(
        app.get(&format!("/v1/users/{bob_id}"), &app.owner_token)
            .await,
    )
    .await;
    assert_eq!(user["pending_grants"], json!([group]), "{user}");
    assert_eq!(
        app.get_field(&mine, &entry, "deploy_key").await.status(),
        404
    );
    let res = send(
        app.owner(Method::POST, "/v1/grants/confirm")
            .json(&json!({"all": true})),
    )
    .await;
    let v = json_ok(res).await;
    assert_eq!(v["confirmed"].as_array().unwrap().len(), 1, "{v}");
    assert_eq!(app.field_value(&mine, &entry, "deploy_key").await, "dk-1");

    // Once only.
    let text = assert_error(
        redeem(&app, &code, &fresh_token()).await,
        StatusCode::BAD_REQUEST,
        "invite_not_valid",
    )
    .await;
    assert!(text.contains("used already"), "{text}");
    assert_eq!(app.get("/v1/me", &mine).await.status(), 200);

    // Both steps are in the trail, without the code.
    let page = json_ok(app.get("/v1/audit?limit=1000", &app.owner_token).await).await;
    let events = page["events"].as_array().unwrap();
    let inv = events
        .iter()
        .find(|e| e["action"] == "user.invite")
        .unwrap();
    assert_eq!(inv["target"], bob_id.as_str());
    let red = events
        .iter()
        .find(|e| e["action"] == "user.invite.redeem")
        .unwrap();
    assert_eq!(red["actor"]["kind"], "user");
    assert_eq!(red["actor"]["id"], bob_id.as_str());
    assert!(
        !page.to_string().contains(&code[20..]),
        "the code is not in the trail"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_wrong_and_malformed_invites_are_refused_with_what_to_do() {
    let app = spawn_app().await;
    let (bob_id, _) = app.create_user("bob", "member").await;
    let (_, member) = app.create_user("carol", "member").await;
    let (_, admin) = app.create_user("adm", "admin").await;
    let (adm2_id, _) = app.create_user("adm2", "admin").await;

    // Only the owner and admins invite; admins' invites only by the owner.
    assert_error(
        invite(&app, &member, &bob_id, None).await,
        StatusCode::FORBIDDEN,
        "forbidden",
    )
    .await;
    assert_error(
        invite(&app, &admin, &adm2_id, None).await,
        StatusCode::FORBIDDEN,
        "owner_only",
    )
    .await;
    assert_error(
        invite(&app, &admin, &bob_id, Some(json!({"expires_in_secs": 0}))).await,
        StatusCode::BAD_REQUEST,
        "validation_failed",
    )
    .await;

    let v = created(invite(&app, &admin, &bob_id, Some(json!({"expires_in_secs": 1}))).await).await;
    let code = v["code"].as_str().unwrap().to_owned();
    // A proposed token that is not one a client makes.
    assert_error(
        redeem(&app, &code, "hunter2").await,
        StatusCode::BAD_REQUEST,
        "validation_failed",
    )
    .await;
    // A wrong secret for a real user, and garbage.
    let mut wrong = code.clone();
    let last = wrong.pop().unwrap();
    wrong.push(if last == 'A' { 'B' } else { 'A' });
    let text = assert_error(
        redeem(&app, &wrong, &fresh_token()).await,
        StatusCode::BAD_REQUEST,
        "invite_not_valid",
    )
    .await;
    assert!(text.contains("clavitor user invite"), "{text}");
    assert_error(
        redeem(&app, "nonsense", &fresh_token()).await,
        StatusCode::BAD_REQUEST,
        "invite_not_valid",
    )
    .await;
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let text = assert_error(
        redeem(&app, &code, &fresh_token()).await,
        StatusCode::BAD_REQUEST,
        "invite_not_valid",
    )
    .await;
    assert!(text.contains("expired"), "{text}");
    // A new invite replaces the old one and works.
    let v = created(invite(&app, &admin, &bob_id, None).await).await;
    let mine = fresh_token();
    assert_eq!(
        redeem(&app, v["code"].as_str().unwrap(), &mine)
            .await
            .status(),
        200
    );
    assert_eq!(app.get("/v1/me", &mine).await.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guessing_invite_codes_is_rate_limited_per_address() {
    let app = spawn_app().await;
    let mut statuses = Vec::new();
    for _ in 0..12 {
        statuses.push(
            redeem(&app, "clvinv_x_y", &fresh_token())
                .await
                .status()
                .as_u16(),
        );
    }
    assert!(statuses[..10].iter().all(|s| *s == 400), "{statuses:?}");
    assert_eq!(statuses[11], 429, "{statuses:?}");
}
