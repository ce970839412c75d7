//! SCIM provisioning against a real Commercial POP over TLS: an Okta-shaped and an
//! Entra-shaped session (create, group add → pending grant → confirmed by the owner → the
//! user, after `clavitor login --invite`, reads the scope; deactivate → its token and its
//! agent get 401; the audit trail shows actor `scim`), and the token boundaries.

use crate::common::process::Output;
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

/// Who calls the POP: one client, one bearer token, on `/v1` or on `/scim/v2`.
#[derive(Clone, Copy)]
struct Caller<'a> {
    c: &'a reqwest::Client,
    url: &'a str,
    token: &'a str,
}

impl<'a> Caller<'a> {
    fn new(c: &'a reqwest::Client, v: &'a Vault, token: &'a str) -> Self {
        Self {
            c,
            url: &v.url,
            token,
        }
    }

    /// `method /v1…` with an optional JSON body: the status and the JSON.
    async fn v1(&self, method: Method, path: &str, body: Option<&Value>) -> (u16, Value) {
        call(
            self.c,
            method,
            &format!("{}{path}", self.url),
            self.token,
            body,
        )
        .await
    }

    async fn get(&self, path: &str) -> (u16, Value) {
        self.v1(Method::GET, path, None).await
    }

    async fn post(&self, path: &str, body: &Value) -> (u16, Value) {
        self.v1(Method::POST, path, Some(body)).await
    }

    /// A SCIM request, its body (if any) sent as the given content type; returns the status,
    /// the content type and the body.
    async fn scim(
        &self,
        method: Method,
        path: &str,
        body: Option<(&Value, &str)>,
    ) -> (u16, String, Value) {
        let mut req = self
            .c
            .request(method, format!("{}/scim/v2{path}", self.url))
            .bearer_auth(self.token);
        if let Some((b, content_type)) = body {
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

    async fn scim_get(&self, path: &str) -> (u16, Value) {
        let (s, _, v) = self.scim(Method::GET, path, None).await;
        (s, v)
    }

    async fn scim_delete(&self, path: &str) -> (u16, Value) {
        let (s, _, v) = self.scim(Method::DELETE, path, None).await;
        (s, v)
    }

    /// `method path` with `body` as `content_type`: the status and the body.
    async fn scim_send(
        &self,
        method: Method,
        path: &str,
        body: &Value,
        content_type: &str,
    ) -> (u16, Value) {
        let (s, _, v) = self.scim(method, path, Some((body, content_type))).await;
        (s, v)
    }
}

/// `clavitor ARGS` as a client of `v`, with the token in `token_file`.
fn client_cli(pop: &Pop, v: &Vault, token_file: &Path, args: &[&str]) -> Output {
    let ca = pop.tls.ca.to_str().unwrap();
    let tail = [
        "--token-file",
        token_file.to_str().unwrap(),
        "--server",
        &v.url,
        "--ca-file",
        ca,
    ];
    clavitor(&[args, &tail].concat())
}

/// One provisioning session as `vendor` sends it.
async fn session(vendor: &str, user_name: &str, content_type: &str) {
    let (pop, v, scim_token) = scim_pop();
    let c = pop.client();
    let owner = Caller::new(&c, &v, &v.token);
    let idp = Caller::new(&c, &v, &scim_token);

    // The owner's setup: a secret in scope `deploy`, a group that gives it.
    let (s, e) = owner
        .post(
            "/v1/entries",
            &json!({"title": "prod", "fields": [
            {"name": "deploy_key", "value": "dk-scim-1", "tier": "credential", "scope": "deploy"}]}),
        )
        .await;
    assert_eq!(s, 201, "{e}");
    let entry = e["id"].as_str().unwrap().to_owned();
    let (s, g) = owner
        .post(
            "/v1/groups",
            &json!({"name": "deployers", "scopes": ["deploy"]}),
        )
        .await;
    assert_eq!(s, 201, "{g}");
    let group = g["id"].as_str().unwrap().to_owned();

    // Discovery.
    let (s, ct, spc) = idp.scim(Method::GET, "/ServiceProviderConfig", None).await;
    assert_eq!(s, 200, "{spc}");
    assert!(ct.starts_with("application/scim+json"), "{ct}");
    assert_eq!(spc["patch"]["supported"], true);

    // The provider looks the user up, finds none, creates it.
    let filter = format!("/Users?filter=userName%20eq%20%22{user_name}%22");
    let (s, list) = idp.scim_get(&filter).await;
    assert_eq!((s, list["totalResults"].clone()), (200, json!(0)), "{list}");
    let (s, u) = idp
        .scim_send(
            Method::POST,
            "/Users",
            &fixture(vendor, "create_user.json", ""),
            content_type,
        )
        .await;
    assert_eq!(s, 201, "{u}");
    let user = u["id"].as_str().unwrap().to_owned();
    assert_eq!(u["userName"], user_name);
    assert_eq!(u["active"], true);
    let (s, list) = idp.scim_get(&filter).await;
    assert_eq!(
        (s, list["Resources"][0]["id"].clone()),
        (200, json!(user)),
        "{list}"
    );
    // The resource id is the vault's id.
    let (s, shown) = owner.get(&format!("/v1/users/{user}")).await;
    assert_eq!(s, 200, "{shown}");
    assert_eq!(shown["name"], user_name);

    // The provider finds the admin's group and adds the user: a pending grant.
    let (s, gl) = idp
        .scim_get("/Groups?filter=displayName%20eq%20%22deployers%22")
        .await;
    assert_eq!(
        (s, gl["Resources"][0]["id"].clone()),
        (200, json!(group)),
        "{gl}"
    );
    let (s, b) = idp
        .scim_send(
            Method::PATCH,
            &format!("/Groups/{group}"),
            &fixture(vendor, "add_member.json", &user),
            content_type,
        )
        .await;
    assert_eq!(s, 204, "{b}");
    let (_, shown) = owner.get(&format!("/v1/users/{user}")).await;
    assert_eq!(shown["pending_grants"], json!([group]), "{shown}");
    let (_, gg) = idp.scim_get(&format!("/Groups/{group}")).await;
    assert_eq!(gg["members"][0]["value"], user.as_str(), "{gg}");

    // An admin invites the user; the user logs in with the CLI, which makes its token.
    let (s, inv) = owner
        .v1(Method::POST, &format!("/v1/users/{user}/invite"), None)
        .await;
    assert_eq!(s, 201, "{inv}");
    let code = inv["code"].as_str().unwrap();
    let token_file: PathBuf = pop.path("user-home/token");
    let out = client_cli(&pop, &v, &token_file, &["login", "--invite", code]);
    assert!(out.status.success(), "login --invite: {}", out.stderr);
    assert_eq!(mode(&token_file), 0o600);
    let user_token = std::fs::read_to_string(&token_file)
        .unwrap()
        .trim()
        .to_owned();
    let member = Caller::new(&c, &v, &user_token);
    // Not readable yet: the grant waits for a holder.
    let field = format!("/v1/entries/{entry}/fields/deploy_key");
    assert_eq!(member.get(&field).await.0, 404);

    // The owner confirms it (the CLI, as an admin would).
    let owner_file = pop.path("owner.token");
    write_file(&owner_file, &format!("{}\n", v.token), 0o600);
    let out = client_cli(&pop, &v, &owner_file, &["grants", "confirm", "--all"]);
    assert!(out.status.success(), "grants confirm: {}", out.stderr);
    let (s, f) = member.get(&field).await;
    assert_eq!((s, f["value"].clone()), (200, json!("dk-scim-1")), "{f}");

    // The user makes an agent.
    let (s, a) = member
        .post(
            "/v1/agents",
            &json!({"name": "ci-bot", "scopes": ["deploy"]}),
        )
        .await;
    assert_eq!(s, 201, "{a}");
    let agent_token = a["token"].as_str().unwrap().to_owned();
    let agent = Caller::new(&c, &v, &agent_token);
    assert_eq!(agent.get(&field).await.0, 200);

    // Deprovisioning: the user's token and its agent stop at once.
    let (s, d) = idp
        .scim_send(
            Method::PATCH,
            &format!("/Users/{user}"),
            &fixture(vendor, "deactivate.json", &user),
            content_type,
        )
        .await;
    assert_eq!((s, d["active"].clone()), (200, json!(false)), "{d}");
    assert_eq!(member.get("/v1/me").await.0, 401);
    assert_eq!(agent.get(&field).await.0, 401);

    // The trail names the provider.
    let (_, page) = owner.get("/v1/audit?action=user.deactivate").await;
    let ev = &page["events"][0];
    assert_eq!(ev["actor"]["kind"], "scim", "{page}");
    assert_eq!(ev["target"], user.as_str());
    let (_, page) = owner.get("/v1/audit?action=user.create").await;
    assert!(
        page["events"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["actor"]["kind"] == "scim" && e["target"] == user.as_str()),
        "{page}"
    );
    let (_, page) = owner.get("/v1/audit?limit=1000").await;
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
    let owner = Caller::new(&c, &v, &v.token);
    let idp = Caller::new(&c, &v, &scim_token);
    assert_eq!(idp.get("/v1/users").await.0, 401);
    let (s, e) = owner.scim_get("/Users").await;
    assert_eq!(s, 401, "{e}");
    assert_eq!(
        e["schemas"][0],
        "urn:ietf:params:scim:api:messages:2.0:Error"
    );
    assert_eq!(e["status"], "401");

    let (s, adm) = owner
        .post(
            "/v1/users",
            &json!({"name": "adm", "email": "adm@example.com", "role": "admin"}),
        )
        .await;
    assert_eq!(s, 201, "{adm}");
    let admin = adm["id"].as_str().unwrap().to_owned();
    // Not the provider's: invisible and untouchable.
    let (s, e) = idp
        .scim_send(
            Method::PATCH,
            &format!("/Users/{admin}"),
            &fixture("okta", "deactivate.json", ""),
            "application/scim+json",
        )
        .await;
    assert_eq!(s, 404, "{e}");
    let (s, e) = idp.scim_delete(&format!("/Users/{admin}")).await;
    assert_eq!(s, 404, "{e}");
    let (_, list) = idp.scim_get("/Users").await;
    assert_eq!(list["totalResults"], 0, "{list}");

    // Its own group; a member it did not create is refused.
    let (s, g) = idp
        .scim_send(
            Method::POST,
            "/Groups",
            &json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"], "displayName": "Engineering"}),
            "application/scim+json",
        )
        .await;
    assert_eq!(s, 201, "{g}");
    let group = g["id"].as_str().unwrap().to_owned();
    let (s, e) = idp
        .scim_send(
            Method::PATCH,
            &format!("/Groups/{group}"),
            &fixture("entra", "add_member.json", &admin),
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
    let (s, u) = idp
        .scim_send(Method::POST, "/Users", &body, "application/scim+json")
        .await;
    assert_eq!(s, 201, "{u}");
    let user = u["id"].as_str().unwrap().to_owned();
    let (s, e) = idp
        .scim_send(Method::POST, "/Users", &body, "application/scim+json")
        .await;
    assert_eq!(
        (s, e["scimType"].clone()),
        (409, json!("uniqueness")),
        "{e}"
    );
    // Entra's value path removes a member.
    let (s, e) = idp
        .scim_send(
            Method::PATCH,
            &format!("/Groups/{group}"),
            &fixture("entra", "add_member.json", &user),
            "application/json",
        )
        .await;
    assert_eq!(s, 204, "{e}");
    let (s, e) = idp
        .scim_send(
            Method::PATCH,
            &format!("/Groups/{group}"),
            &fixture("entra", "remove_member.json", &user),
            "application/json",
        )
        .await;
    assert_eq!(s, 204, "{e}");
    let (_, gg) = idp.scim_get(&format!("/Groups/{group}")).await;
    assert_eq!(gg["members"], json!([]), "{gg}");
    // Paging and a filter it does not support.
    let (_, list) = idp.scim_get("/Users?startIndex=2&count=5").await;
    assert_eq!(
        (list["totalResults"].clone(), list["Resources"].clone()),
        (json!(1), json!([])),
        "{list}"
    );
    let (s, e) = idp.scim_get("/Users?filter=userName%20co%20%22a%22").await;
    assert_eq!(
        (s, e["scimType"].clone()),
        (400, json!("invalidFilter")),
        "{e}"
    );
    // A body that is not JSON of the two types.
    let (s, _) = idp
        .scim_send(Method::POST, "/Users", &body, "text/plain")
        .await;
    assert_eq!(s, 415);
    // An admin's group is not the provider's to delete; its own is; DELETE of a user removes it.
    let (s, gr) = owner
        .post("/v1/groups", &json!({"name": "ops", "scopes": ["ops"]}))
        .await;
    assert_eq!(s, 201);
    let ops = gr["id"].as_str().unwrap();
    assert_eq!(idp.scim_delete(&format!("/Groups/{ops}")).await.0, 403);
    assert_eq!(idp.scim_delete(&format!("/Groups/{group}")).await.0, 204);
    assert_eq!(idp.scim_delete(&format!("/Users/{user}")).await.0, 204);
    let (s, e) = idp.scim_get(&format!("/Users/{user}")).await;
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

const PATCH_OP: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";

/// The sorted member ids of the group at `path`.
async fn members(idp: Caller<'_>, path: &str) -> Vec<String> {
    let (_, g) = idp.scim_get(path).await;
    let mut m: Vec<String> = g["members"]
        .as_array()
        .unwrap_or_else(|| panic!("{g}"))
        .iter()
        .map(|m| m["value"].as_str().unwrap().to_owned())
        .collect();
    m.sort();
    m
}

/// PATCH operations with and without a path, a remove without a value, PUT and POST with
/// `active` absent or in Entra's string form, and the errors of each: as providers send them.
#[tokio::test(flavor = "multi_thread")]
async fn patch_and_replace_take_every_form_providers_send() {
    let (pop, v, scim_token) = scim_pop();
    let c = pop.client();
    let idp = Caller::new(&c, &v, &scim_token);
    let ct = "application/scim+json";
    let user = |name: &str| json!({"userName": format!("{name}@example.com")});
    let patch = |ops: Value| json!({"schemas": [PATCH_OP], "Operations": ops});
    let mut ids = Vec::new();
    for name in ["ann", "ben"] {
        let (s, u) = idp.scim_send(Method::POST, "/Users", &user(name), ct).await;
        assert_eq!((s, u["active"].clone()), (201, json!(true)), "{u}");
        ids.push(u["id"].as_str().unwrap().to_owned());
    }
    let (ann, ben) = (ids[0].as_str(), ids[1].as_str());
    let (s, g) = idp
        .scim_send(
            Method::POST,
            "/Groups",
            &json!({"displayName": "Eng", "members": [{"value": ann}]}),
            ct,
        )
        .await;
    assert_eq!(s, 201, "{g}");
    let group = format!("/Groups/{}", g["id"].as_str().unwrap());
    let mut both = vec![ann.to_owned(), ben.to_owned()];
    both.sort();
    let steps = [
        (
            json!({"op": "add", "value": {"members": [{"value": ben}]}}),
            both.clone(),
        ),
        (
            json!({"op": "remove", "value": {"members": [{"value": ann}]}}),
            vec![ben.to_owned()],
        ),
        (
            json!({"op": "replace", "value": {"members": [{"value": ann}]}}),
            vec![ann.to_owned()],
        ),
        (
            json!({"op": "replace", "path": "members", "value": [{"value": ben}]}),
            vec![ben.to_owned()],
        ),
        (
            json!({"op": "add", "path": "members", "value": [{"value": ann}]}),
            both.clone(),
        ),
        (
            json!({"op": "remove", "path": "members", "value": [{"value": ben}]}),
            vec![ann.to_owned()],
        ),
        (json!({"op": "remove", "path": "members"}), vec![]),
        (
            json!({"op": "replace", "path": "displayName", "value": "Eng"}),
            vec![],
        ),
    ];
    for (op, want) in steps {
        let (s, e) = idp
            .scim_send(Method::PATCH, &group, &patch(json!([op])), ct)
            .await;
        assert_eq!(s, 204, "{op}: {e}");
        assert_eq!(members(idp, &group).await, want, "{op}");
    }
    let refused = [
        (
            patch(json!([{"op": "replace", "value": {"displayName": "Ops"}}])),
            "mutability",
        ),
        (
            patch(json!([{"op": "add", "value": [{"value": ann}]}])),
            "invalidValue",
        ),
        (
            patch(json!([{"op": "add", "path": "members[value eq", "value": []}])),
            "invalidPath",
        ),
        (
            patch(json!([{"op": "remove", "path": "members[display eq \"x\"]"}])),
            "invalidFilter",
        ),
        (
            patch(json!([{"op": "copy", "path": "members"}])),
            "invalidSyntax",
        ),
        (json!({"Operations": []}), "invalidSyntax"),
    ];
    for (body, scim_type) in refused {
        let (s, e) = idp.scim_send(Method::PATCH, &group, &body, ct).await;
        assert_eq!(
            (s, e["scimType"].clone()),
            (400, json!(scim_type)),
            "{body}: {e}"
        );
    }

    // Users: PUT without `active` makes it active, Entra's "False" does not; PATCH by path
    // and without one; `active` cannot be removed; a value that is not a boolean is refused.
    let ann_at = format!("/Users/{ann}");
    let put = |active: Value| {
        let mut u = user("ann");
        if !active.is_null() {
            u["active"] = active;
        }
        u
    };
    for (active, want) in [(json!("False"), false), (Value::Null, true)] {
        let (s, u) = idp.scim_send(Method::PUT, &ann_at, &put(active), ct).await;
        assert_eq!((s, u["active"].clone()), (200, json!(want)), "{u}");
    }
    for (op, want) in [
        (
            json!({"op": "replace", "path": "active", "value": "False"}),
            false,
        ),
        (json!({"op": "replace", "value": {"active": true}}), true),
        (json!({"op": "replace", "value": {"active": false}}), false),
    ] {
        let (s, u) = idp
            .scim_send(Method::PATCH, &ann_at, &patch(json!([op])), ct)
            .await;
        assert_eq!((s, u["active"].clone()), (200, json!(want)), "{op}: {u}");
    }
    let refused = [
        (
            Method::PUT,
            ann_at.clone(),
            put(json!("maybe")),
            "invalidValue",
        ),
        (
            Method::POST,
            "/Users".to_owned(),
            {
                let mut u = user("cat");
                u["active"] = json!(7);
                u
            },
            "invalidValue",
        ),
        (
            Method::PATCH,
            ann_at.clone(),
            patch(json!([{"op": "remove", "path": "active"}])),
            "mutability",
        ),
        (
            Method::PATCH,
            ann_at.clone(),
            patch(json!([{"op": "replace", "value": "x"}])),
            "invalidValue",
        ),
        (
            Method::PATCH,
            ann_at.clone(),
            patch(json!([{"op": "add", "path": "emails[type eq"}])),
            "invalidPath",
        ),
    ];
    for (method, path, body, scim_type) in refused {
        let (s, e) = idp.scim_send(method, &path, &body, ct).await;
        assert_eq!(
            (s, e["scimType"].clone()),
            (400, json!(scim_type)),
            "{body}: {e}"
        );
    }
    let (_, list) = idp.scim_get("/Users").await;
    assert_eq!(
        list["totalResults"], 2,
        "the refused POST made no user: {list}"
    );
}
