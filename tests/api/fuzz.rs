//! Bounded property test of every route's input: arbitrary bytes, arbitrary JSON and
//! JSON shaped like the real bodies (known keys, arbitrary values) as bodies, and arbitrary path
//! segments, sent over real HTTP. Never a 5xx, never a dropped connection (a panic), and every
//! 4xx is the JSON error shape. A fixed number of cases per route, so it runs in seconds.

use crate::helpers::{TestApp, spawn_app};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use reqwest::Method;
use serde_json::{Value, json};

const CASES_PER_ROUTE: u32 = 256;

/// Keys and values the real bodies use, so generated objects get past the JSON layer into
/// validation.
const KEYS: &[&str] = &[
    "title",
    "url",
    "username",
    "fields",
    "name",
    "value",
    "tier",
    "scope",
    "scopes",
    "ttl_seconds",
    "ip_allowlist",
    "rate_limit_per_minute",
];
const WORDS: &[&str] = &[
    "vault",
    "credential",
    "identity",
    "deploy",
    "10.0.0.0/8",
    "::1",
    "aGVsbG8=",
    "",
    " ",
];

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        any::<String>().prop_map(Value::String),
        prop::sample::select(WORDS).prop_map(|w| Value::String(w.to_owned())),
    ];
    leaf.prop_recursive(4, 64, 8, |inner| {
        let key = prop_oneof![
            3 => prop::sample::select(KEYS).prop_map(str::to_owned),
            1 => any::<String>(),
        ];
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec((key, inner), 0..8)
                .prop_map(|kv| Value::Object(kv.into_iter().collect())),
        ]
    })
}

/// A body: raw bytes, or JSON; with a JSON content type most of the time.
fn body() -> impl Strategy<Value = (Vec<u8>, Option<&'static str>)> {
    let bytes = prop_oneof![
        1 => prop::collection::vec(any::<u8>(), 0..512),
        3 => json_value().prop_map(|v| v.to_string().into_bytes()),
    ];
    let content_type = prop_oneof![
        8 => Just(Some("application/json")),
        1 => Just(None),
        1 => Just(Some("text/plain")),
    ];
    (bytes, content_type)
}

/// A path segment: any text (percent-encoded), or a real id so the route goes deeper.
fn segment(real: &'static str) -> impl Strategy<Value = String> {
    prop_oneof![
        3 => any::<String>()
            .prop_filter("a dot segment changes the path", |s| {
                !s.is_empty() && s != "." && s != ".."
            })
            .prop_map(|s| encode(&s)),
        1 => Just(real.to_owned()),
    ]
}

fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b == b'-' || b == b'_' {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// Checks one answer: below 500, and a 4xx in exactly the error shape.
async fn check(
    app: &TestApp,
    method: Method,
    path: &str,
    body: (Vec<u8>, Option<&str>),
) -> Result<(), TestCaseError> {
    let (bytes, content_type) = body;
    let mut req = app.owner(method.clone(), path).body(bytes);
    if let Some(ct) = content_type {
        req = req.header("content-type", ct);
    }
    let res = req
        .send()
        .await
        .map_err(|e| TestCaseError::fail(format!("{method} {path}: no answer ({e}): a panic?")))?;
    let status = res.status();
    let ct = res
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let text = res.text().await.unwrap_or_default();
    prop_assert!(status.as_u16() < 500, "{method} {path}: {status} {text}");
    if status.is_client_error() {
        prop_assert!(
            ct.starts_with("application/json"),
            "{method} {path}: {status} {ct} {text}"
        );
        let v: Value = serde_json::from_str(&text).map_err(|e| {
            TestCaseError::fail(format!("{method} {path}: {status} not JSON ({e}): {text}"))
        })?;
        let err = v.get("error").and_then(Value::as_object);
        prop_assert!(
            v.as_object().is_some_and(|o| o.len() == 1)
                && err.is_some_and(|e| e.len() == 2
                    && e.get("code").is_some_and(Value::is_string)
                    && e.get("message").is_some_and(Value::is_string)),
            "{method} {path}: {status} not the error shape: {text}"
        );
    }
    Ok(())
}

#[test]
fn every_route_answers_arbitrary_input_without_5xx_or_panic() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let app = rt.block_on(spawn_app());
    let entry: &'static str = rt
        .block_on(app.create_entry(&json!({"title": "seed", "fields": [
            {"name": "pw", "value": "v"},
            {"name": "key", "value": "k", "tier": "credential", "scope": "deploy"},
        ]})))
        .leak();
    let agent: &'static str = rt
        .block_on(app.create_agent(&json!({"name": "seed", "scopes": ["deploy"]})))
        .0
        .leak();

    type Route = (Method, fn(&str, &str) -> String);
    let routes: Vec<(&str, Route)> = vec![
        (
            "POST /v1/entries",
            (Method::POST, |_, _| "/v1/entries".into()),
        ),
        (
            "GET /v1/entries",
            (Method::GET, |_, _| "/v1/entries".into()),
        ),
        (
            "GET /v1/entries/{id}",
            (Method::GET, |id, _| format!("/v1/entries/{id}")),
        ),
        (
            "GET /v1/entries/{id}/fields/{name}",
            (Method::GET, |id, name| {
                format!("/v1/entries/{id}/fields/{name}")
            }),
        ),
        (
            "PUT /v1/entries/{id}",
            (Method::PUT, |id, _| format!("/v1/entries/{id}")),
        ),
        // Deletes last: the real ids are gone afterwards.
        (
            "DELETE /v1/entries/{id}",
            (Method::DELETE, |id, _| format!("/v1/entries/{id}")),
        ),
        (
            "POST /v1/agents",
            (Method::POST, |_, _| "/v1/agents".into()),
        ),
        ("GET /v1/agents", (Method::GET, |_, _| "/v1/agents".into())),
        (
            "DELETE /v1/agents/{id}",
            (Method::DELETE, |id, _| format!("/v1/agents/{id}")),
        ),
        ("GET /healthz", (Method::GET, |_, _| "/healthz".into())),
        ("GET /metrics", (Method::GET, |_, _| "/metrics".into())),
    ];
    for (name, (method, path)) in routes {
        let real_id = if name.contains("agents") {
            agent
        } else {
            entry
        };
        let mut runner = TestRunner::new(Config {
            cases: CASES_PER_ROUTE,
            failure_persistence: None,
            ..Config::default()
        });
        let inputs = (body(), segment(real_id), segment("pw"));
        runner
            .run(&inputs, |(body, id, field)| {
                rt.block_on(check(&app, method.clone(), &path(&id, &field), body))
            })
            .unwrap_or_else(|e| panic!("{name}: {e}"));
    }
    rt.block_on(app.stop());
}
