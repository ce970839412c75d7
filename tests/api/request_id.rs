//! Every response carries an `x-request-id`, the id its log lines are filed under.

use crate::helpers::{send, spawn_app};
use reqwest::Method;
use std::collections::HashSet;

fn request_id(res: &reqwest::Response) -> String {
    res.headers()
        .get("x-request-id")
        .expect("every response carries x-request-id")
        .to_str()
        .expect("a printable id")
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_response_gets_its_own_request_id_even_errors() {
    let app = spawn_app().await;
    let mut seen = HashSet::new();
    for path in [
        "/healthz",
        "/v1/entries",
        "/v1/entries/nope",
        "/no-such-path",
    ] {
        let res = send(app.owner(Method::GET, path)).await;
        let id = request_id(&res);
        assert!(!id.is_empty(), "{path}");
        assert!(seen.insert(id.clone()), "{path} reused id {id}");
    }
    let res = send(app.client.get(app.url("/v1/entries"))).await;
    assert_eq!(res.status(), reqwest::StatusCode::UNAUTHORIZED);
    assert!(seen.insert(request_id(&res)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sane_client_request_id_is_kept_and_a_strange_one_replaced() {
    let app = spawn_app().await;
    let res = send(
        app.client
            .get(app.url("/healthz"))
            .header("x-request-id", "deploy-42.retry:1"),
    )
    .await;
    assert_eq!(request_id(&res), "deploy-42.retry:1");

    for strange in ["has space", "quote\"d", &"x".repeat(65)] {
        let res = send(
            app.client
                .get(app.url("/healthz"))
                .header("x-request-id", strange),
        )
        .await;
        let id = request_id(&res);
        assert_ne!(id, strange);
        assert!(
            id.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-'),
            "generated ids are hex: {id}"
        );
    }
}
