//! Pending grants: a membership the caller cannot wrap keys for waits (with `?pending=true`)
//! instead of failing, grants nothing until a holder confirms it, and shows on the user.

use crate::helpers::{assert_error, json_ok, send, spawn_app};
use reqwest::{Method, StatusCode};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_grant_the_caller_cannot_wrap_waits_for_a_holder_to_confirm_it() {
    let app = spawn_app().await;
    let entry = app
        .create_entry(&json!({"title": "prod", "fields": [
            {"name": "deploy_key", "value": "dk-1", "tier": "credential", "scope": "deploy"}
        ]}))
        .await;
    let (_, admin) = app.create_user("adm", "admin").await;
    let (carol_id, carol) = app.create_user("carol", "member").await;
    let group = app.create_group("deployers", &["deploy"]).await;
    let path = format!("/v1/groups/{group}/members/{carol_id}");

    // Without asking: still 409, nothing changes.
    assert_error(
        send(app.request(Method::PUT, &path, &admin)).await,
        StatusCode::CONFLICT,
        "scope_key_not_held",
    )
    .await;
    // Asking for a pending grant: 202, a membership that grants nothing yet.
    let res = send(app.request(Method::PUT, &format!("{path}?pending=true"), &admin)).await;
    assert_eq!(res.status(), StatusCode::ACCEPTED);
    let v: serde_json::Value = serde_json::from_str(&res.text().await.unwrap()).unwrap();
    assert_eq!(v["pending"], true);
    let user = json_ok(app.get(&format!("/v1/users/{carol_id}"), &admin).await).await;
    assert_eq!(user["pending_grants"], json!([group]), "{user}");
    assert_eq!(user["groups"], json!([]), "{user}");
    assert_eq!(
        app.get_field(&carol, &entry, "deploy_key").await.status(),
        404
    );
    let me = json_ok(app.get("/v1/me", &carol).await).await;
    assert_eq!(
        me["scopes"],
        json!([]),
        "effective scopes hold only confirmed grants"
    );

    // The admin holds no deploy key: it sees nothing to complete, and cannot confirm.
    let v = json_ok(app.get("/v1/grants/pending", &admin).await).await;
    assert_eq!(v["pending_grants"], json!([]));
    let confirm = json!({"grants": [{"group_id": group, "user_id": carol_id}]});
    assert_error(
        send(
            app.request(Method::POST, "/v1/grants/confirm", &admin)
                .json(&confirm),
        )
        .await,
        StatusCode::CONFLICT,
        "scope_key_not_held",
    )
    .await;
    // Members may not look.
    assert_eq!(app.get("/v1/grants/pending", &carol).await.status(), 403);

    // The owner holds it.
    let v = json_ok(app.get("/v1/grants/pending", &app.owner_token).await).await;
    let p = &v["pending_grants"][0];
    assert_eq!(p["user_id"], carol_id.as_str());
    assert_eq!(p["group"], "deployers");
    assert_eq!(p["scopes"], json!(["deploy"]));
    assert_eq!(p["ready"], true);
    let v = json_ok(send(app.owner(Method::POST, "/v1/grants/confirm").json(&confirm)).await).await;
    assert_eq!(v["confirmed"], confirm["grants"]);
    assert_eq!(app.field_value(&carol, &entry, "deploy_key").await, "dk-1");
    let user = json_ok(app.get(&format!("/v1/users/{carol_id}"), &admin).await).await;
    assert_eq!(user["pending_grants"], json!([]));
    assert_eq!(user["groups"], json!([group]));
    // Confirmed already: nothing pending to confirm.
    assert_error(
        send(app.owner(Method::POST, "/v1/grants/confirm").json(&confirm)).await,
        StatusCode::BAD_REQUEST,
        "refused",
    )
    .await;
    let page = json_ok(
        app.get("/v1/audit?action=grant.confirm", &app.owner_token)
            .await,
    )
    .await;
    assert_eq!(page["events"][0]["target"], group.as_str(), "{page}");
    assert_eq!(
        page["events"][0]["details"]["user"],
        carol_id.as_str(),
        "{page}"
    );
}
