//! SCIM provisioning against a real Commercial POP over TLS: an Okta-shaped and an
//! Entra-shaped session (create, group add → pending grant → confirmed by the owner → the
//! user, after `clavitor login --invite`, reads the scope; deactivate → its token and its
//! agent get 401; the audit trail shows actor `scim`), and the token boundaries.

use crate::helpers::*;
use reqwest::Method;
use serde_json::{Value, json};
use std::path::{Path, PathBuf};

fn fixture(vendor: &str, name: &str, user: &str) -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/scim")
        .join(vendor)
        .join(name);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .replace("{{USER_ID}}", user);
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// A primary POP with `scim.token_file`; returns the POP, the running vault and the token.
fn scim_pop() -> (Pop, Vault, String) {
    let pop = Pop::new();
    let scim_file = pop.path("scim.token");
    let scim_token = write_token(&scim_file);
    let mut y = config_yaml(&pop, "primary", &Opts::default());
    y.push_str(&format!("scim:\n  token_file: {}\n", q(&scim_file)));
    pop.write_config(&y);
    let v = pop.start();
    (pop, v, scim_token)
}

/// A SCIM request with `content_type`; returns the status, the content type and the body.
async fn scim(
    c: &reqwest::Client,
    v: &Vault,
    token: &str,
    method: Method,
    path: &str,
    body: Option<&Value>,
    content_type: &str,
) -> (u16, String, Value) {
    let mut req = c
        .request(method, format!("{}/scim/v2{path}", v.url))
        .bearer_auth(token);
    if let Some(b) = body {
        req = req.header("content-type", content_type).body(b.to_string());
    }
    let res = req.send().await.expect("the POP answers");
    let status = res.status().as_u16();
    let ct = res
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let text = res.text().await.unwrap_or_default();
    (
        status,
        ct,
        serde_json::from_str(&text).unwrap_or(Value::Null),
    )
}

async fn v1(
    c: &reqwest::Client,
    v: &Vault,
    token: &str,
    m: Method,
    path: &str,
    body: Option<&Value>,
) -> (u16, Value) {
    let r = call(c, m, &format!("{}{path}", v.url), token, body).await;
    (r.0, r.1)
}

/// One provisioning session as `vendor` sends it.
async fn session(vendor: &str, user_name: &str, content_type: &str) {
    let (pop, v, scim_token) = scim_pop();
    let c = pop.client();
    let owner = v.token.clone();

    // The owner's setup: a secret in scope `deploy`, a group that gives it.
    let (s, e) = v1(
        &c,
        &v,
        &owner,
        Method::POST,
        "/v1/entries",
        Some(&json!({"title": "prod", "fields": [
        {"name": "deploy_key", "value": "dk-scim-1", "tier": "credential", "scope": "deploy"}]})),
    )
    .await;
    assert_eq!(s, 201, "{e}");
    let entry = e["id"].as_str().unwrap().to_owned();
    let (s, g) = v1(
        &c,
        &v,
        &owner,
        Method::POST,
        "/v1/groups",
        Some(&json!({"name": "deployers", "scopes": ["deploy"]})),
    )
    .await;
    assert_eq!(s, 201, "{g}");
    let group = g["id"].as_str().unwrap().to_owned();

    // Discovery.
    let (s, ct, spc) = scim(
        &c,
        &v,
        &scim_token,
        Method::GET,
        "/ServiceProviderConfig",
        None,
        "",
    )
    .await;
    assert_eq!(s, 200, "{spc}");
    assert!(ct.starts_with("application/scim+json"), "{ct}");
    assert_eq!(spc["patch"]["supported"], true);

    // The provider looks the user up, finds none, creates it.
    let filter = format!("/Users?filter=userName%20eq%20%22{user_name}%22");
    let (s, _, list) = scim(&c, &v, &scim_token, Method::GET, &filter, None, "").await;
    assert_eq!((s, list["totalResults"].clone()), (200, json!(0)), "{list}");
    let (s, _, u) = scim(
        &c,
        &v,
        &scim_token,
        Method::POST,
        "/Users",
        Some(&fixture(vendor, "create_user.json", "")),
        content_type,
    )
    .await;
    assert_eq!(s, 201, "{u}");
    let user = u["id"].as_str().unwrap().to_owned();
    assert_eq!(u["userName"], user_name);
    assert_eq!(u["active"], true);
    let (s, _, list) = scim(&c, &v, &scim_token, Method::GET, &filter, None, "").await;
    assert_eq!(
        (s, list["Resources"][0]["id"].clone()),
        (200, json!(user)),
        "{list}"
    );
    // The resource id is the vault's id.
    let (s, shown) = v1(
        &c,
        &v,
        &owner,
        Method::GET,
        &format!("/v1/users/{user}"),
        None,
    )
    .await;
    assert_eq!(s, 200, "{shown}");
    assert_eq!(shown["name"], user_name);

    // The provider finds the admin's group and adds the user: a pending grant.
    let (s, _, gl) = scim(
        &c,
        &v,
        &scim_token,
        Method::GET,
        "/Groups?filter=displayName%20eq%20%22deployers%22",
        None,
        "",
    )
    .await;
    assert_eq!(
        (s, gl["Resources"][0]["id"].clone()),
        (200, json!(group)),
        "{gl}"
    );
    let (s, _, b) = scim(
        &c,
        &v,
        &scim_token,
        Method::PATCH,
        &format!("/Groups/{group}"),
        Some(&fixture(vendor, "add_member.json", &user)),
        content_type,
    )
    .await;
    assert_eq!(s, 204, "{b}");
    let (_, shown) = v1(
        &c,
        &v,
        &owner,
        Method::GET,
        &format!("/v1/users/{user}"),
        None,
    )
    .await;
    assert_eq!(shown["pending_grants"], json!([group]), "{shown}");
    let (_, _, gg) = scim(
        &c,
        &v,
        &scim_token,
        Method::GET,
        &format!("/Groups/{group}"),
        None,
        "",
    )
    .await;
    assert_eq!(gg["members"][0]["value"], user.as_str(), "{gg}");

    // An admin invites the user; the user logs in with the CLI, which makes its token.
    let (s, inv) = v1(
        &c,
        &v,
        &owner,
        Method::POST,
        &format!("/v1/users/{user}/invite"),
        None,
    )
    .await;
    assert_eq!(s, 201, "{inv}");
    let code = inv["code"].as_str().unwrap();
    let token_file: PathBuf = pop.path("user-home/token");
    let ca = pop.tls.ca.to_str().unwrap().to_owned();
    let out = clavitor(&[
        "login",
        "--invite",
        code,
        "--token-file",
        token_file.to_str().unwrap(),
        "--server",
        &v.url,
        "--ca-file",
        &ca,
    ]);
    assert!(out.status.success(), "login --invite: {}", out.stderr);
    assert_eq!(mode(&token_file), 0o600);
    let user_token = std::fs::read_to_string(&token_file)
        .unwrap()
        .trim()
        .to_owned();
    // Not readable yet: the grant waits for a holder.
    let field = format!("/v1/entries/{entry}/fields/deploy_key");
    assert_eq!(
        v1(&c, &v, &user_token, Method::GET, &field, None).await.0,
        404
    );

    // The owner confirms it (the CLI, as an admin would).
    let owner_file = pop.path("owner.token");
    write_file(&owner_file, &format!("{owner}\n"), 0o600);
    let out = clavitor(&[
        "grants",
        "confirm",
        "--all",
        "--token-file",
        owner_file.to_str().unwrap(),
        "--server",
        &v.url,
        "--ca-file",
        &ca,
    ]);
    assert!(out.status.success(), "grants confirm: {}", out.stderr);
    let (s, f) = v1(&c, &v, &user_token, Method::GET, &field, None).await;
    assert_eq!((s, f["value"].clone()), (200, json!("dk-scim-1")), "{f}");

    // The user makes an agent.
    let (s, a) = v1(
        &c,
        &v,
        &user_token,
        Method::POST,
        "/v1/agents",
        Some(&json!({"name": "ci-bot", "scopes": ["deploy"]})),
    )
    .await;
    assert_eq!(s, 201, "{a}");
    let agent_token = a["token"].as_str().unwrap().to_owned();
    assert_eq!(
        v1(&c, &v, &agent_token, Method::GET, &field, None).await.0,
        200
    );

    // Deprovisioning: the user's token and its agent stop at once.
    let (s, _, d) = scim(
        &c,
        &v,
        &scim_token,
        Method::PATCH,
        &format!("/Users/{user}"),
        Some(&fixture(vendor, "deactivate.json", &user)),
        content_type,
    )
    .await;
    assert_eq!((s, d["active"].clone()), (200, json!(false)), "{d}");
    assert_eq!(
        v1(&c, &v, &user_token, Method::GET, "/v1/me", None).await.0,
        401
    );
    assert_eq!(
        v1(&c, &v, &agent_token, Method::GET, &field, None).await.0,
        401
    );

    // The trail names the provider.
    let (_, page) = v1(
        &c,
        &v,
        &owner,
        Method::GET,
        "/v1/audit?action=user.deactivate",
        None,
    )
    .await;
    let ev = &page["events"][0];
    assert_eq!(ev["actor"]["kind"], "scim", "{page}");
    assert_eq!(ev["target"], user.as_str());
    let (_, page) = v1(
        &c,
        &v,
        &owner,
        Method::GET,
        "/v1/audit?action=user.create",
        None,
    )
    .await;
    assert!(
        page["events"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["actor"]["kind"] == "scim" && e["target"] == user.as_str()),
        "{page}"
    );
    let (_, page) = v1(&c, &v, &owner, Method::GET, "/v1/audit?limit=1000", None).await;
    assert!(
        !page.to_string().contains("1mz050nq"),
        "no password a provider sent is kept"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_okta_shaped_session_provisions_grants_and_deprovisions() {
    session("okta", "test.user@okta.local", "application/scim+json").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_entra_shaped_session_provisions_grants_and_deprovisions() {
    session(
        "entra",
        "Test_User_ab6490ee-1e48-479e-a20b-2d77186b5dd1",
        "application/json",
    )
    .await;
}

/// The SCIM token is nobody on /v1, a vault token is nobody on /scim, the provider manages
/// only its own users, removes members with Entra's value path, and errors are SCIM's.
#[tokio::test(flavor = "multi_thread")]
async fn the_scim_token_manages_only_its_own_users_and_nothing_else() {
    let (pop, v, scim_token) = scim_pop();
    let c = pop.client();
    let owner = v.token.clone();
    assert_eq!(
        v1(&c, &v, &scim_token, Method::GET, "/v1/users", None)
            .await
            .0,
        401
    );
    let (s, _, e) = scim(&c, &v, &owner, Method::GET, "/Users", None, "").await;
    assert_eq!(s, 401, "{e}");
    assert_eq!(
        e["schemas"][0],
        "urn:ietf:params:scim:api:messages:2.0:Error"
    );
    assert_eq!(e["status"], "401");

    let (s, adm) = v1(
        &c,
        &v,
        &owner,
        Method::POST,
        "/v1/users",
        Some(&json!({"name": "adm", "email": "adm@example.com", "role": "admin"})),
    )
    .await;
    assert_eq!(s, 201, "{adm}");
    let admin = adm["id"].as_str().unwrap().to_owned();
    // Not the provider's: invisible and untouchable.
    let (s, _, e) = scim(
        &c,
        &v,
        &scim_token,
        Method::PATCH,
        &format!("/Users/{admin}"),
        Some(&fixture("okta", "deactivate.json", "")),
        "application/scim+json",
    )
    .await;
    assert_eq!(s, 404, "{e}");
    let (s, _, e) = scim(
        &c,
        &v,
        &scim_token,
        Method::DELETE,
        &format!("/Users/{admin}"),
        None,
        "",
    )
    .await;
    assert_eq!(s, 404, "{e}");
    let (_, _, list) = scim(&c, &v, &scim_token, Method::GET, "/Users", None, "").await;
    assert_eq!(list["totalResults"], 0, "{list}");

    // Its own group; a member it did not create is refused.
    let (s, _, g) = scim(&c, &v, &scim_token, Method::POST, "/Groups", Some(&json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"], "displayName": "Engineering"})), "application/scim+json").await;
    assert_eq!(s, 201, "{g}");
    let group = g["id"].as_str().unwrap().to_owned();
    let (s, _, e) = scim(
        &c,
        &v,
        &scim_token,
        Method::PATCH,
        &format!("/Groups/{group}"),
        Some(&fixture("entra", "add_member.json", &admin)),
        "application/json",
    )
    .await;
    assert_eq!(
        (s, e["scimType"].clone()),
        (400, json!("invalidValue")),
        "{e}"
    );
    // Duplicate userName: 409 uniqueness.
    let body = fixture("okta", "create_user.json", "");
    let (s, _, u) = scim(
        &c,
        &v,
        &scim_token,
        Method::POST,
        "/Users",
        Some(&body),
        "application/scim+json",
    )
    .await;
    assert_eq!(s, 201, "{u}");
    let user = u["id"].as_str().unwrap().to_owned();
    let (s, _, e) = scim(
        &c,
        &v,
        &scim_token,
        Method::POST,
        "/Users",
        Some(&body),
        "application/scim+json",
    )
    .await;
    assert_eq!(
        (s, e["scimType"].clone()),
        (409, json!("uniqueness")),
        "{e}"
    );
    // Entra's value path removes a member.
    let (s, _, _) = scim(
        &c,
        &v,
        &scim_token,
        Method::PATCH,
        &format!("/Groups/{group}"),
        Some(&fixture("entra", "add_member.json", &user)),
        "application/json",
    )
    .await;
    assert_eq!(s, 204);
    let (s, _, e) = scim(
        &c,
        &v,
        &scim_token,
        Method::PATCH,
        &format!("/Groups/{group}"),
        Some(&fixture("entra", "remove_member.json", &user)),
        "application/json",
    )
    .await;
    assert_eq!(s, 204, "{e}");
    let (_, _, gg) = scim(
        &c,
        &v,
        &scim_token,
        Method::GET,
        &format!("/Groups/{group}"),
        None,
        "",
    )
    .await;
    assert_eq!(gg["members"], json!([]), "{gg}");
    // Paging and a filter it does not support.
    let (_, _, list) = scim(
        &c,
        &v,
        &scim_token,
        Method::GET,
        "/Users?startIndex=2&count=5",
        None,
        "",
    )
    .await;
    assert_eq!(
        (list["totalResults"].clone(), list["Resources"].clone()),
        (json!(1), json!([])),
        "{list}"
    );
    let (s, _, e) = scim(
        &c,
        &v,
        &scim_token,
        Method::GET,
        "/Users?filter=userName%20co%20%22a%22",
        None,
        "",
    )
    .await;
    assert_eq!(
        (s, e["scimType"].clone()),
        (400, json!("invalidFilter")),
        "{e}"
    );
    // A body that is not JSON of the two types.
    let (s, _, _) = scim(
        &c,
        &v,
        &scim_token,
        Method::POST,
        "/Users",
        Some(&body),
        "text/plain",
    )
    .await;
    assert_eq!(s, 415);
    // An admin's group is not the provider's to delete; its own is; DELETE of a user removes it.
    let (s, gr) = v1(
        &c,
        &v,
        &owner,
        Method::POST,
        "/v1/groups",
        Some(&json!({"name": "ops", "scopes": ["ops"]})),
    )
    .await;
    assert_eq!(s, 201);
    let (s, _, _) = scim(
        &c,
        &v,
        &scim_token,
        Method::DELETE,
        &format!("/Groups/{}", gr["id"].as_str().unwrap()),
        None,
        "",
    )
    .await;
    assert_eq!(s, 403);
    let (s, _, _) = scim(
        &c,
        &v,
        &scim_token,
        Method::DELETE,
        &format!("/Groups/{group}"),
        None,
        "",
    )
    .await;
    assert_eq!(s, 204);
    let (s, _, _) = scim(
        &c,
        &v,
        &scim_token,
        Method::DELETE,
        &format!("/Users/{user}"),
        None,
        "",
    )
    .await;
    assert_eq!(s, 204);
    let (s, _, e) = scim(
        &c,
        &v,
        &scim_token,
        Method::GET,
        &format!("/Users/{user}"),
        None,
        "",
    )
    .await;
    assert_eq!((s, e["status"].clone()), (404, json!("404")), "{e}");
}

/// `scim.token_file` follows the POP token's rules: a file others may read, a missing key or
/// the POP's own token stop `serve`, naming the file, the key and the fix; `scim-token` makes
/// a 0600 token a POP accepts.
#[test]
fn a_bad_scim_token_file_stops_serve_naming_the_key_and_the_fix() {
    let pop = Pop::new();
    let scim_file = pop.path("scim.token");
    let made = clavitor(&["scim-token", "--out", scim_file.to_str().unwrap()]);
    assert!(made.status.success(), "{}", made.stderr);
    assert_eq!(mode(&scim_file), 0o600);
    let base = config_yaml(&pop, "primary", &Opts::default());
    let cases = [
        (
            format!("scim:\n  token_file: {}\n", q(&scim_file)),
            Some(0o644),
            "chmod 600",
        ),
        ("scim: {}\n".to_owned(), None, "clavitor scim-token"),
        (
            format!("scim:\n  token_file: {}\n", q(&pop.token_file)),
            None,
            "a token of its own",
        ),
    ];
    for (extra, file_mode, fix) in cases {
        if let Some(m) = file_mode {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&scim_file, std::fs::Permissions::from_mode(m)).unwrap();
        }
        pop.write_config(&format!("{base}{extra}"));
        let out = run(&mut pop.serve_cmd());
        assert!(!out.status.success(), "{extra}: {out}");
        assert!(out.stderr.contains("scim.token_file"), "{extra}: {out}");
        assert!(out.stderr.contains(fix), "{extra}: {out}");
        assert!(out.stderr.contains(pop.config.to_str().unwrap()), "{out}");
        assert!(!pop.data.exists());
    }
}
