//! `/healthz`, `/metrics` and unknown paths.

use crate::edition::{HEALTH_SECTIONS, ROLE, assert_unknown_path_answer};
use crate::helpers::{content_type, json_ok, send, spawn_app};
use reqwest::StatusCode;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthz_reports_status_edition_and_role_without_a_token() {
    let app = spawn_app().await;
    let res = send(app.client.get(app.url("/healthz"))).await;
    let body = json_ok(res).await;
    assert_eq!(body["status"], "ok", "{body}");
    assert_eq!(body["edition"], clavitor::edition::NAME, "{body}");
    assert_eq!(body["role"], ROLE, "{body}");
    let mut keys: Vec<&str> = body
        .as_object()
        .expect("an object")
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort_unstable();
    let mut want = [&["edition", "role", "status"][..], HEALTH_SECTIONS].concat();
    want.sort_unstable();
    assert_eq!(keys, want, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_paths_get_the_editions_answer() {
    let app = spawn_app().await;
    for path in ["/nope", "/v1/nothing-here", "/v1/entries/a/b/c/d"] {
        let res = send(app.owner(reqwest::Method::GET, path)).await;
        assert_unknown_path_answer(res, path).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_is_prometheus_text_counting_requests() {
    let app = spawn_app().await;
    // At least one answered request exists before the scrape.
    json_ok(send(app.client.get(app.url("/healthz"))).await).await;
    let res = send(app.client.get(app.url("/metrics"))).await;
    assert_eq!(res.status(), StatusCode::OK);
    let content_type = content_type(&res);
    assert!(
        content_type.starts_with("text/plain")
            || content_type.starts_with("application/openmetrics-text"),
        "content type {content_type:?}"
    );
    let text = res.text().await.unwrap();
    assert!(
        text.contains("# TYPE clavitor_http_requests counter"),
        "{text}"
    );
    let ok_line = text
        .lines()
        .find(|l| l.starts_with("clavitor_http_requests_total{route=\"/healthz\",status=\"200\"}"))
        .unwrap_or_else(|| panic!("no counter for status 200 in:\n{text}"));
    let n: f64 = ok_line
        .rsplit(' ')
        .next()
        .and_then(|n| n.parse().ok())
        .expect("counter value is a number");
    assert!(n >= 1.0, "{ok_line}");
    assert!(text.contains("clavitor_entries"), "{text}");
}
