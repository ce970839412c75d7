//! `POST /v1/proxy` against a real upstream on 127.0.0.1 (HTTPS with a test CA the server is
//! told to trust, or plain HTTP): values filled in server-side, every form of them masked in
//! the answer, and no connection at all when a check fails.

use crate::common::pki::Ca;
use crate::common::upstream::{Upstream, leaky_forms};
use crate::helpers::{
    TestApp, assert_error, distinctive, eventually, json_ok, send, spawn_app, spawn_app_with,
};
use clavitor::mask::{MARKER, forms};
use clavitor::server::ProxySettings;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use std::time::Duration;
use tempfile::TempDir;

/// A vault with the proxy on, trusting `ca` for upstreams; the dir holds the CA file.
async fn proxy_app(ca: &Ca) -> (TestApp, TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let ca_file = dir.path().join("upstream-ca.pem");
    std::fs::write(&ca_file, ca.pem()).unwrap();
    let app = spawn_app_with(|cfg| {
        cfg.proxy = ProxySettings {
            enabled: true,
            ca_file: Some(ca_file),
        }
    })
    .await;
    (app, dir)
}

async fn proxy(app: &TestApp, token: &str, body: &Value) -> reqwest::Response {
    send(app.request(Method::POST, "/v1/proxy", token).json(body)).await
}

/// An entry "api" with a `use` field `key` (scope deploy) allowed to `hosts`; returns the
/// agent token holding "deploy".
async fn api_entry(app: &TestApp, secret: &str, hosts: &[&str]) -> String {
    app.create_entry(&json!({"title": "api", "fields": [
        {"name": "key", "value": secret, "tier": "credential", "scope": "deploy",
         "agent_access": "use", "allowed_hosts": hosts},
        {"name": "elsewhere", "value": distinctive("elsewhere"), "tier": "credential",
         "scope": "deploy", "agent_access": "use", "allowed_hosts": ["api.example.com"]},
        {"name": "other-scope", "value": distinctive("ops"), "tier": "credential",
         "scope": "ops", "allowed_hosts": ["127.0.0.1"]}
    ]}))
    .await;
    app.create_agent(&json!({"name": "bot", "scopes": ["deploy"]}))
        .await
        .1
}

fn assert_no_form_of(text: &str, secret: &str) {
    for form in forms(secret.as_bytes()) {
        let form = String::from_utf8_lossy(&form).into_owned();
        assert!(!text.contains(&form), "{form:?} leaked in {text}");
    }
    for form in leaky_forms(secret)
        .into_iter()
        .chain(leaky_forms(&format!("Bearer {secret}")))
    {
        assert!(!text.contains(&form), "{form:?} leaked in {text}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_use_field_is_filled_in_and_masked_in_every_form_of_the_answer() {
    let ca = Ca::new("upstream CA");
    let upstream = Upstream::https(&ca).await;
    let (app, _dir) = proxy_app(&ca).await;
    let secret = distinctive("sk-live");
    let agent = api_entry(&app, &secret, &["127.0.0.1"]).await;

    let res = proxy(
        &app,
        &agent,
        &json!({
            "method": "POST",
            "url": upstream.url("/echo"),
            "headers": {"Authorization": "Bearer {{clavitor://api/key}}", "X-Plain": "hello"},
            "body": "{\"key\":\"{{ clavitor://api/key }}\"}"
        }),
    )
    .await;
    let text = res.text().await.unwrap();
    let v: Value = serde_json::from_str(&text).unwrap_or_else(|_| panic!("{text}"));
    assert_eq!(v["status"], 200, "{text}");
    assert_eq!(v["body_encoding"], "utf-8");
    // The upstream got the real value, in the header and the body, asked for no compression.
    let seen = upstream.requests();
    assert_eq!(seen.len(), 1);
    let header = |n: &str| {
        seen[0]
            .headers
            .iter()
            .find(|(k, _)| k == n)
            .map(|(_, v)| v.clone())
    };
    assert_eq!(header("authorization"), Some(format!("Bearer {secret}")));
    assert_eq!(header("x-plain").as_deref(), Some("hello"));
    assert_eq!(header("accept-encoding").as_deref(), Some("identity"));
    assert_eq!(seen[0].body, format!("{{\"key\":\"{secret}\"}}"));
    // The answer echoed it in every form: none is left.
    assert_no_form_of(&text, &secret);
    assert!(v["body"].as_str().unwrap().contains(MARKER), "{text}");
    assert!(
        v["headers"]["x-echo-auth"]
            .as_str()
            .unwrap()
            .contains(MARKER)
    );
    assert!(
        v["headers"]["x-echo-b64"]
            .as_str()
            .unwrap()
            .contains(MARKER)
    );
    // Owner tokens may use the proxy too.
    let res = proxy(
        &app,
        &app.owner_token,
        &json!({
            "method": "GET", "url": upstream.url("/echo"),
            "headers": {"Authorization": "Bearer {{clavitor://api/key}}"}
        }),
    )
    .await;
    let text = json_ok(res).await.to_string();
    assert_no_form_of(&text, &secret);
}

/// The `field.use` events of the trail (the owner reads it), once `n` of them are committed.
async fn use_events(app: &TestApp, n: usize) -> Vec<Value> {
    let read = || async {
        let page = json_ok(
            app.get("/v1/audit?action=field.use&limit=100", &app.owner_token)
                .await,
        )
        .await;
        page["events"].as_array().cloned().unwrap_or_default()
    };
    let committed = eventually(Duration::from_secs(5), || async { read().await.len() >= n }).await;
    let events = read().await;
    assert!(committed, "expected {n} field.use events, got {events:?}");
    events
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_use_and_every_refused_host_is_in_the_audit_trail() {
    let ca = Ca::new("upstream CA");
    let upstream = Upstream::https(&ca).await;
    let (app, _dir) = proxy_app(&ca).await;
    let secret = distinctive("sk-audit");
    let agent = api_entry(&app, &secret, &["127.0.0.1"]).await;
    let call = |r: &str, url: String| {
        json!({"method": "GET", "url": url,
               "headers": {"Authorization": format!("Bearer {{{{clavitor://api/{r}}}}}")}})
    };

    let res = proxy(&app, &agent, &call("key", upstream.url("/echo"))).await;
    assert_eq!(res.status(), StatusCode::OK);
    // `elsewhere` may only go to api.example.com: refused, and recorded as a denial.
    let res = proxy(&app, &agent, &call("elsewhere", upstream.url("/echo"))).await;
    assert_error(res, StatusCode::FORBIDDEN, "host_not_allowed").await;
    assert_eq!(
        upstream.requests().len(),
        1,
        "the refused call reached the upstream"
    );

    let events = use_events(&app, 2).await;
    let find = |field: &str| {
        events
            .iter()
            .find(|e| e["details"]["field"] == field)
            .unwrap_or_else(|| panic!("no field.use of {field} in {events:?}"))
    };
    let used = find("key");
    assert_eq!(used["outcome"], "ok", "{used}");
    assert_eq!(used["details"]["host"], "127.0.0.1", "{used}");
    assert_eq!(used["details"]["tier"], "credential", "{used}");
    assert_eq!(used["actor"]["kind"], "agent", "{used}");
    let refused = find("elsewhere");
    assert_eq!(refused["outcome"], "denied", "{refused}");
    assert_eq!(refused["details"]["host"], "127.0.0.1", "{refused}");
    let text = Value::Array(events.clone()).to_string();
    assert!(!text.contains(&secret), "a value reached the trail: {text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_is_sent_when_a_check_fails() {
    let ca = Ca::new("upstream CA");
    let upstream = Upstream::https(&ca).await;
    let (app, _dir) = proxy_app(&ca).await;
    let secret = distinctive("sk");
    let agent = api_entry(&app, &secret, &["127.0.0.1", "localhost"]).await;
    let call =
        |headers: Value, url: String| json!({"method": "GET", "url": url, "headers": headers});
    let auth = |r: &str| json!({"Authorization": format!("Bearer {{{{{r}}}}}")});

    // A field whose hosts do not include this one, alone or beside one that does.
    for headers in [
        auth("clavitor://api/elsewhere"),
        json!({"A": "{{clavitor://api/key}}", "B": "{{clavitor://api/elsewhere}}"}),
    ] {
        let body = assert_error(
            proxy(&app, &agent, &call(headers, upstream.url("/echo"))).await,
            StatusCode::FORBIDDEN,
            "host_not_allowed",
        )
        .await;
        assert!(body.contains("api.example.com"), "{body}");
    }
    // Out of scope, or missing: one answer.
    for r in [
        "clavitor://api/other-scope",
        "clavitor://api/nope",
        "clavitor://nope/key",
    ] {
        let body = assert_error(
            proxy(&app, &agent, &call(auth(r), upstream.url("/echo"))).await,
            StatusCode::NOT_FOUND,
            "field_not_found",
        )
        .await;
        assert!(
            body.contains("not found, or not in this token's scopes"),
            "{body}"
        );
    }
    // A name that resolves to loopback, though listed: names reach public addresses only.
    let url = upstream.url("/echo").replace("127.0.0.1", "localhost");
    assert_error(
        proxy(&app, &agent, &call(auth("clavitor://api/key"), url)).await,
        StatusCode::FORBIDDEN,
        "address_not_allowed",
    )
    .await;
    // An address no field lists (here over plain http, which is refused for it anyway).
    assert_error(
        proxy(
            &app,
            &agent,
            &call(auth("clavitor://api/key"), "http://10.0.0.1/x".into()),
        )
        .await,
        StatusCode::FORBIDDEN,
        "host_not_allowed",
    )
    .await;
    // Placeholders in the URL, none at all, a reserved header.
    for body in [
        json!({"method": "GET", "url": format!("{}?k={{{{clavitor://api/key}}}}", upstream.url("/echo"))}),
        json!({"method": "GET", "url": upstream.url("/echo")}),
        json!({"method": "GET", "url": upstream.url("/echo"),
               "headers": {"Host": "{{clavitor://api/key}}"}}),
        json!({"method": "CONNECT", "url": upstream.url("/echo"),
               "headers": {"A": "{{clavitor://api/key}}"}}),
    ] {
        assert_error(
            proxy(&app, &agent, &body).await,
            StatusCode::BAD_REQUEST,
            "validation_failed",
        )
        .await;
    }
    // A value with CR/LF would split the request.
    app.create_entry(&json!({"title": "crlf", "fields": [
        {"name": "v", "value": "x\r\nX-Injected: 1", "scope": "deploy",
         "allowed_hosts": ["127.0.0.1"]}]}))
        .await;
    let body = assert_error(
        proxy(
            &app,
            &agent,
            &call(json!({"A": "{{clavitor://crlf/v}}"}), upstream.url("/echo")),
        )
        .await,
        StatusCode::BAD_REQUEST,
        "validation_failed",
    )
    .await;
    assert!(body.contains("CR or LF"), "{body}");
    assert_eq!(upstream.connection_count(), 0, "no connection was made");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redirects_compression_and_size_are_bounded() {
    let ca = Ca::new("upstream CA");
    let upstream = Upstream::https(&ca).await;
    let (app, _dir) = proxy_app(&ca).await;
    let agent = api_entry(&app, &distinctive("sk"), &["127.0.0.1"]).await;
    let call = |path: &str| {
        json!({"method": "GET", "url": upstream.url(path),
        "headers": {"Authorization": "Bearer {{clavitor://api/key}}"}})
    };

    let v = json_ok(proxy(&app, &agent, &call("/redirect")).await).await;
    assert_eq!(v["status"], 302, "a redirect is returned, not followed");
    assert_eq!(v["headers"]["location"], "https://elsewhere.example/steal");
    assert_eq!(upstream.requests().len(), 1);
    assert_error(
        proxy(&app, &agent, &call("/gzip")).await,
        StatusCode::BAD_GATEWAY,
        "upstream_encoded",
    )
    .await;
    assert_error(
        proxy(&app, &agent, &call("/big")).await,
        StatusCode::BAD_GATEWAY,
        "upstream_too_large",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_http_goes_only_to_a_listed_literal_loopback_address() {
    let upstream = Upstream::http().await;
    let (app, _dir) = proxy_app(&Ca::new("unused")).await;
    let secret = distinctive("sk");
    let agent = api_entry(&app, &secret, &["127.0.0.1"]).await;
    let v = json_ok(
        proxy(
            &app,
            &agent,
            &json!({"method": "GET", "url": upstream.url("/echo"),
            "headers": {"Authorization": "Bearer {{clavitor://api/key}}"}}),
        )
        .await,
    )
    .await;
    assert_eq!(v["status"], 200);
    assert_no_form_of(&v.to_string(), &secret);
    assert_eq!(upstream.requests().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limits_ip_allowlists_and_revocation_apply() {
    let ca = Ca::new("upstream CA");
    let upstream = Upstream::https(&ca).await;
    let (app, _dir) = proxy_app(&ca).await;
    api_entry(&app, &distinctive("sk"), &["127.0.0.1"]).await;
    let call = json!({"method": "GET", "url": upstream.url("/"),
        "headers": {"Authorization": "Bearer {{clavitor://api/key}}"}});

    let (_, limited) = app
        .create_agent(&json!({"name": "slow", "scopes": ["deploy"], "rate_limit_per_minute": 2}))
        .await;
    for _ in 0..2 {
        json_ok(proxy(&app, &limited, &call).await).await;
    }
    assert_error(
        proxy(&app, &limited, &call).await,
        StatusCode::TOO_MANY_REQUESTS,
        "rate_limited",
    )
    .await;

    let (_, fenced) = app
        .create_agent(
            &json!({"name": "fenced", "scopes": ["deploy"], "ip_allowlist": ["10.0.0.0/8"]}),
        )
        .await;
    assert_error(
        proxy(&app, &fenced, &call).await,
        StatusCode::FORBIDDEN,
        "ip_not_allowed",
    )
    .await;

    let (id, revoked) = app
        .create_agent(&json!({"name": "gone", "scopes": ["deploy"], "ttl_seconds": 3600}))
        .await;
    app.revoke_agent(&id).await;
    assert_error(
        proxy(&app, &revoked, &call).await,
        StatusCode::UNAUTHORIZED,
        "invalid_token",
    )
    .await;
    assert_eq!(
        upstream.requests().len(),
        2,
        "only the two allowed calls went out"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_proxy_is_off_unless_enabled() {
    let app = spawn_app().await;
    let upstream = Upstream::http().await;
    app.create_entry(&json!({"title": "api", "fields": [
        {"name": "key", "value": "v-1234", "allowed_hosts": ["127.0.0.1"]}]}))
        .await;
    assert_error(
        proxy(
            &app,
            &app.owner_token,
            &json!({"method": "GET", "url": upstream.url("/"),
            "headers": {"A": "{{clavitor://api/key}}"}}),
        )
        .await,
        StatusCode::FORBIDDEN,
        "proxy_disabled",
    )
    .await;
    assert_eq!(upstream.connection_count(), 0);
}
