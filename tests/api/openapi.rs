//! `GET /openapi.json`: the document and the router agree route for route, the document is
//! valid OpenAPI 3.1, and real requests and answers match its schemas.

use crate::edition;
use crate::helpers::{TestApp, content_type, send, spawn_app};
use reqwest::{Method, Response, StatusCode};
use serde_json::{Value, json};
use std::collections::BTreeSet;
use std::path::Path;

/// The methods a route may take (the document's operation keys).
const METHODS: [&str; 5] = ["get", "put", "post", "delete", "patch"];

/// The document, fetched without a token (it holds no data).
async fn fetch(app: &TestApp) -> Value {
    let res = send(app.client.get(app.url("/openapi.json"))).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert!(content_type(&res).starts_with("application/json"));
    res.json().await.expect("the document is JSON")
}

/// Every documented (method, path template).
fn operations(doc: &Value) -> BTreeSet<(String, String)> {
    let mut ops = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for m in METHODS {
            if item.get(m).is_some() {
                ops.insert((m.to_owned(), path.clone()));
            }
        }
    }
    ops
}

/// `template` with every `{param}` filled with a value no route accepts as an id.
fn concrete(template: &str) -> String {
    let mut out = String::new();
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        let close = rest[open..].find('}').expect("closed parameter") + open;
        out.push_str(&rest[..open]);
        out.push_str("not-an-id");
        rest = &rest[close + 1..];
    }
    out.push_str(rest);
    out
}

/// Whether the router served the request with a route: anything but the answer to an unknown
/// path (a non-JSON 404: Community's plain one, Commercial's tarpit) or to a wrong method (405;
/// in Commercial the tarpit again).
fn served(res: &Response) -> bool {
    // The unknown-path answer is a plain 404 (or the tarpit's); a served route's 404 is an
    // error in JSON (SCIM's: `application/scim+json`).
    let ct = content_type(res);
    let json = ct.starts_with("application/json") || ct.starts_with("application/scim+json");
    let unknown = res.status() == StatusCode::NOT_FOUND && !json;
    !unknown && res.status() != StatusCode::METHOD_NOT_ALLOWED
}

/// Sends `method path` as the owner, with a body no route accepts (`deny_unknown_fields`) so
/// that nothing is changed (not even the owner's token by `/v1/owner/rotate`).
async fn probe(app: &TestApp, method: &str, path: &str) -> Response {
    let method = Method::from_bytes(method.to_uppercase().as_bytes()).expect("a method");
    let mut req = app.owner(method.clone(), path);
    if method != Method::GET && method != Method::DELETE {
        req = req.json(&json!({"openapi_probe": true}));
    }
    send(req).await
}

#[tokio::test]
async fn every_documented_route_is_served_and_no_other_method_on_its_path() {
    let app = spawn_app().await;
    let doc = fetch(&app).await;
    let ops = operations(&doc);
    assert!(ops.len() >= 25, "only {} operations: {ops:?}", ops.len());
    let paths: BTreeSet<&String> = ops.iter().map(|(_, p)| p).collect();
    for path in paths {
        let url = concrete(path);
        for m in METHODS {
            let res = probe(&app, m, &url).await;
            let documented = ops.contains(&(m.to_owned(), path.clone()));
            let status = res.status();
            if documented {
                assert!(
                    served(&res),
                    "{m} {path} is documented but not served ({status})"
                );
            } else {
                assert!(
                    !served(&res),
                    "{m} {path} is served ({status}) but not documented"
                );
            }
        }
    }
    for (m, path) in edition::UNDOCUMENTED_ROUTES {
        assert!(
            !ops.contains(&(m.to_lowercase(), (*path).to_owned())),
            "{m} {path} is documented: take it off the edition's list"
        );
        let res = probe(&app, m, path).await;
        assert!(served(&res), "{m} {path}: the edition serves it");
    }
    // And the probes changed nothing: the owner's token still works.
    let res = app.get("/v1/me", &app.owner_token).await;
    assert_eq!(res.status(), StatusCode::OK);
}

/// `path`'s `.rs` files, recursively.
fn rust_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for e in std::fs::read_dir(dir).expect("read src dir") {
        let p = e.expect("dir entry").path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// Every `.route("PATH"` registered outside utoipa-axum's `routes!` in `files`.
fn bare_routes(files: &[std::path::PathBuf]) -> Vec<(String, String)> {
    let mut found = Vec::new();
    for f in files {
        let text = std::fs::read_to_string(f).expect("read source");
        for needle in [".route(", ".route_service(", ".nest(", ".nest_service("] {
            for (i, _) in text.match_indices(needle) {
                let rest = text[i + needle.len()..].trim_start();
                let path = rest.split('"').nth(1).unwrap_or("?").to_owned();
                found.push((f.display().to_string(), path));
            }
        }
    }
    found
}

/// The other half of "the document and the router agree": a request can show that a
/// documented route is served, not that no undocumented one is. So the router's routes must
/// all come from the list the document is made from (utoipa-axum's `routes!`): no bare
/// `.route(...)` in `src/api`, and in the edition only the routes it lists as undocumented
/// (the control plane is another server, with its own router).
#[test]
fn the_router_takes_its_routes_only_from_the_document() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut api = Vec::new();
    rust_files(&src.join("api"), &mut api);
    assert!(api.len() > 5, "found the API's sources");
    let bare = bare_routes(&api);
    assert!(
        bare.is_empty(),
        "routes served but not documented: {bare:?}; register them with `routes!` and give \
         their handlers a #[utoipa::path]"
    );
    let mut edition_files = Vec::new();
    rust_files(&src.join("edition"), &mut edition_files);
    edition_files.retain(|f| !f.components().any(|c| c.as_os_str() == "control_plane"));
    let outside: BTreeSet<String> = bare_routes(&edition_files)
        .into_iter()
        .map(|(_, p)| p)
        .collect();
    // The Commercial edition's replication and SCIM routes are in its sources in either build.
    let expected: BTreeSet<String> = [
        "/v1/replication/batch",
        "/scim/v2/ServiceProviderConfig",
        "/scim/v2/ResourceTypes",
        "/scim/v2/Schemas",
        "/scim/v2/Users",
        "/scim/v2/Users/{id}",
        "/scim/v2/Groups",
        "/scim/v2/Groups/{id}",
    ]
    .into_iter()
    .map(str::to_owned)
    .collect();
    assert_eq!(
        outside, expected,
        "the edition's routes outside the document changed: document them, or list them in \
         edition::UNDOCUMENTED_ROUTES with the reason"
    );
}

/// Resolves a local `$ref` (`#/a/b`) in `doc`.
fn pointer<'a>(doc: &'a Value, reference: &str) -> Option<&'a Value> {
    doc.pointer(reference.strip_prefix('#')?)
}

/// Every `$ref` under `v`, with where it was found.
fn refs(v: &Value, at: String, out: &mut Vec<(String, String)>) {
    match v {
        Value::Object(m) => {
            for (k, x) in m {
                if k == "$ref"
                    && let Some(r) = x.as_str()
                {
                    out.push((at.clone(), r.to_owned()));
                }
                refs(x, format!("{at}/{k}"), out);
            }
        }
        Value::Array(a) => {
            for (i, x) in a.iter().enumerate() {
                refs(x, format!("{at}/{i}"), out);
            }
        }
        _ => {}
    }
}

/// Follows a `$ref`'d object (a response, a parameter) to the object itself.
fn deref<'a>(doc: &'a Value, v: &'a Value) -> &'a Value {
    match v.get("$ref").and_then(Value::as_str) {
        Some(r) => pointer(doc, r).unwrap_or_else(|| panic!("{r} resolves")),
        None => v,
    }
}

#[tokio::test]
async fn the_document_is_valid_openapi_3_1() {
    let app = spawn_app().await;
    let doc = fetch(&app).await;

    // A maintained OpenAPI 3.1 model reads it, and its version is one it supports.
    let spec = oas3::from_json(doc.to_string()).expect("oas3 parses the document");
    let version = spec
        .validate_version()
        .expect("a supported OpenAPI version");
    assert_eq!((version.major, version.minor), (3, 1), "{version}");
    assert!(!spec.info.title.is_empty() && !spec.info.version.is_empty());

    // Every $ref resolves.
    let mut all = Vec::new();
    refs(&doc, String::new(), &mut all);
    assert!(!all.is_empty());
    for (at, r) in &all {
        assert!(
            pointer(&doc, r).is_some(),
            "{at}: $ref {r} resolves to nothing"
        );
    }

    // Every component schema is valid JSON Schema 2020-12 (OpenAPI 3.1's dialect).
    let schemas = doc["components"]["schemas"].as_object().expect("schemas");
    for (name, s) in schemas {
        let mut s = s.clone();
        s["$schema"] = json!("https://json-schema.org/draft/2020-12/schema");
        jsonschema::meta::validate(&s)
            .unwrap_or_else(|e| panic!("schema {name} is not JSON Schema 2020-12: {e}"));
    }

    // The spec's required fields and rules for each operation.
    let schemes = doc["components"]["securitySchemes"]
        .as_object()
        .expect("securitySchemes");
    let mut ids = BTreeSet::new();
    for (m, path) in operations(&doc) {
        let op = &doc["paths"][&path][&m];
        let what = format!("{m} {path}");
        if let Some(id) = op["operationId"].as_str() {
            assert!(ids.insert(id.to_owned()), "{what}: operationId {id} twice");
        }
        let responses = op["responses"].as_object().expect("responses");
        assert!(!responses.is_empty(), "{what}: no responses");
        for (status, r) in responses {
            assert!(
                status.len() == 3 && status.parse::<u16>().is_ok(),
                "{what}: status {status}"
            );
            assert!(
                deref(&doc, r)["description"].is_string(),
                "{what} {status}: a response needs a description"
            );
        }
        let params: Vec<&Value> = op["parameters"]
            .as_array()
            .map(|a| a.iter().map(|p| deref(&doc, p)).collect())
            .unwrap_or_default();
        for p in &params {
            let place = p["in"].as_str().unwrap_or_default();
            assert!(
                ["query", "header", "path", "cookie"].contains(&place),
                "{what}: parameter in {place:?}"
            );
            assert!(p["name"].is_string(), "{what}: a parameter without a name");
        }
        let declared: BTreeSet<&str> = params
            .iter()
            .filter(|p| p["in"] == "path")
            .inspect(|p| assert_eq!(p["required"], true, "{what}: path parameters are required"))
            .map(|p| p["name"].as_str().expect("name"))
            .collect();
        let templated: BTreeSet<&str> = path
            .split('/')
            .filter_map(|s| s.strip_prefix('{')?.strip_suffix('}'))
            .collect();
        assert_eq!(declared, templated, "{what}: path parameters");
        for requirement in op["security"].as_array().expect("security is stated") {
            for scheme in requirement.as_object().expect("requirement").keys() {
                assert!(schemes.contains_key(scheme), "{what}: scheme {scheme}");
            }
        }
        // The error shape is documented wherever an error can be answered.
        for (status, r) in responses {
            if status.starts_with('4') || status.starts_with('5') {
                let schema = &deref(&doc, r)["content"]["application/json"]["schema"];
                assert_eq!(
                    schema["$ref"], "#/components/schemas/ErrorBody",
                    "{what} {status}: the error shape"
                );
            }
        }
    }
    let error = &schemas["ErrorBody"];
    assert_eq!(error["required"], json!(["error"]));
    let detail = deref(&doc, &error["properties"]["error"]);
    assert_eq!(detail["required"], json!(["code", "message"]));
}

/// A validator for the JSON `schema` (a fragment of `doc`, its `$ref`s into `doc`).
fn validator(doc: &Value, schema: &Value) -> jsonschema::Validator {
    let root = json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "components": doc["components"],
        "allOf": [schema],
    });
    jsonschema::draft202012::new(&root).expect("the schema compiles")
}

/// The JSON schema of `method path`'s `status` answer.
fn answer_schema(doc: &Value, method: &str, path: &str, status: u16) -> Value {
    let op = &doc["paths"][path][method];
    let r = op["responses"]
        .get(status.to_string())
        .unwrap_or_else(|| panic!("{method} {path} documents no {status}"));
    deref(doc, r)["content"]["application/json"]["schema"].clone()
}

/// Sends `method path` (with `body` checked against its documented request schema first) and
/// checks the answer's status is documented and its body matches the documented schema.
async fn round_trip(
    app: &TestApp,
    doc: &Value,
    (method, path): (&str, &str),
    url: &str,
    body: Option<Value>,
) -> Value {
    let mut req = app.owner(
        Method::from_bytes(method.to_uppercase().as_bytes()).expect("method"),
        url,
    );
    if let Some(b) = body {
        let schema =
            &doc["paths"][path][method]["requestBody"]["content"]["application/json"]["schema"];
        let v = validator(doc, schema);
        if let Err(e) = v.validate(&b) {
            panic!("{method} {path}: the request {b} does not match its schema: {e}");
        }
        req = req.json(&b);
    }
    let res = send(req).await;
    let status = res.status().as_u16();
    let text = res.text().await.expect("read body");
    let got: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
    let schema = answer_schema(doc, method, path, status);
    if let Err(e) = validator(doc, &schema).validate(&got) {
        panic!("{method} {path} answered {status} {text}, not its documented schema: {e}");
    }
    got
}

#[tokio::test]
async fn real_requests_and_answers_match_the_documented_schemas() {
    let app = spawn_app().await;
    let doc = fetch(&app).await;

    let health = round_trip(&app, &doc, ("get", "/healthz"), "/healthz", None).await;
    assert_eq!(health["status"], "ok");
    round_trip(&app, &doc, ("get", "/v1/me"), "/v1/me", None).await;

    let entry = json!({
        "title": "Mail",
        "url": "https://mail.example.com",
        "username": "ops@example.com",
        "fields": [
            {"name": "password", "value": "hunter2-openapi", "tier": "credential", "scope": "ops"},
            {"name": "note", "value": "rotate yearly", "tier": "vault"}
        ]
    });
    let written = round_trip(
        &app,
        &doc,
        ("post", "/v1/entries"),
        "/v1/entries",
        Some(entry.clone()),
    )
    .await;
    let id = written["id"].as_str().expect("an id").to_owned();
    let one = format!("/v1/entries/{id}");
    round_trip(&app, &doc, ("get", "/v1/entries"), "/v1/entries", None).await;
    round_trip(&app, &doc, ("get", "/v1/entries/{id}"), &one, None).await;
    let field = round_trip(
        &app,
        &doc,
        ("get", "/v1/entries/{id}/fields/{name}"),
        &format!("{one}/fields/password"),
        None,
    )
    .await;
    assert_eq!(field["value"], "hunter2-openapi");
    round_trip(&app, &doc, ("put", "/v1/entries/{id}"), &one, Some(entry)).await;

    let agent = round_trip(
        &app,
        &doc,
        ("post", "/v1/agents"),
        "/v1/agents",
        Some(json!({"name": "ci", "scopes": ["ops"], "ttl_seconds": 3600})),
    )
    .await;
    assert!(agent["token"].is_string());
    round_trip(&app, &doc, ("get", "/v1/agents"), "/v1/agents", None).await;

    let user = round_trip(
        &app,
        &doc,
        ("post", "/v1/users"),
        "/v1/users",
        Some(json!({"name": "Ada", "email": "ada@example.com", "role": "member"})),
    )
    .await;
    let user_path = format!("/v1/users/{}", user["id"].as_str().expect("user id"));
    round_trip(
        &app,
        &doc,
        ("patch", "/v1/users/{id}"),
        &user_path,
        Some(json!({"active": false})),
    )
    .await;
    let back = round_trip(
        &app,
        &doc,
        ("patch", "/v1/users/{id}"),
        &user_path,
        Some(json!({"active": true})),
    )
    .await;
    assert!(
        back["token"].is_string(),
        "reactivation answers a new token"
    );
    let group = round_trip(
        &app,
        &doc,
        ("post", "/v1/groups"),
        "/v1/groups",
        Some(json!({"name": "ops", "scopes": ["ops"]})),
    )
    .await;
    let group_path = format!("/v1/groups/{}", group["id"].as_str().expect("group id"));
    let changed = round_trip(
        &app,
        &doc,
        ("patch", "/v1/groups/{id}"),
        &group_path,
        Some(json!({"scopes": ["ops", "billing"]})),
    )
    .await;
    assert_eq!(changed["scopes"], json!(["billing", "ops"]));
    round_trip(&app, &doc, ("get", "/v1/audit"), "/v1/audit?limit=5", None).await;
    round_trip(&app, &doc, ("get", "/v1/changes"), "/v1/changes", None).await;

    // Errors: the documented shape, under a documented status.
    let missing = round_trip(
        &app,
        &doc,
        ("delete", "/v1/entries/{id}"),
        "/v1/entries/00000000-0000-7000-8000-000000000000",
        None,
    )
    .await;
    assert_eq!(missing["error"]["code"], "entry_not_found");
    let res = send(app.client.get(app.url("/v1/entries"))).await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    let body: Value = res.json().await.expect("JSON");
    let schema = answer_schema(&doc, "get", "/v1/entries", 401);
    assert!(validator(&doc, &schema).is_valid(&body), "{body}");

    // What the server refuses, the document refuses too.
    let schema = &doc["paths"]["/v1/entries"]["post"]["requestBody"]["content"]["application/json"]
        ["schema"];
    let unknown = json!({"title": "x", "colour": "red"});
    assert!(!validator(&doc, schema).is_valid(&unknown));
    let res = send(app.owner(Method::POST, "/v1/entries").json(&unknown)).await;
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
}
