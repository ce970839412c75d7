//! The HTTP edge: wrong methods, declared lengths over the limit (with and without
//! `Expect: 100-continue`), encoded bodies, and the `Authorization` header. Raw TCP where a
//! client library would normalise the request.

use crate::edition;
use crate::helpers::{TestApp, assert_error, send, spawn_app};
use reqwest::{Method, StatusCode};
use serde_json::json;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// How long a raw exchange may take; the server answers these at once.
const RAW_TIMEOUT: Duration = Duration::from_secs(5);

/// Sends `request` on a fresh connection and returns what the server wrote until it closed
/// the connection, stopped writing for a moment after a complete response, or `RAW_TIMEOUT`.
async fn raw(app: &TestApp, request: &[u8]) -> String {
    let mut s = app.raw().await;
    s.write_all(request).await.expect("write request");
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + RAW_TIMEOUT;
    loop {
        // Once a response has started, a short pause means it is complete.
        let wait = if got.is_empty() {
            deadline
        } else {
            (tokio::time::Instant::now() + Duration::from_millis(300)).min(deadline)
        };
        match tokio::time::timeout_at(wait, s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) | Err(_) => break,
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
        }
    }
    String::from_utf8_lossy(&got).into_owned()
}

/// The JSON error code in a raw HTTP/1.1 response (status line checked by the caller).
fn raw_code(response: &str) -> String {
    let body = response.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    // A chunked body would have size lines; these responses carry a Content-Length.
    let v: serde_json::Value = serde_json::from_str(body.trim())
        .unwrap_or_else(|e| panic!("body is not JSON ({e}): {response}"));
    v["error"]["code"].as_str().unwrap_or_default().to_owned()
}

fn status_line(response: &str) -> &str {
    response.lines().next().unwrap_or_default()
}

/// Community: a JSON 405 naming the method, with `Allow`; Commercial: the tarpit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_method_on_a_known_path_is_a_json_405_with_allow_or_the_tarpit() {
    let app = spawn_app().await;
    let cases = [
        (Method::PATCH, "/v1/entries", &["GET", "POST"][..]),
        (Method::POST, "/v1/entries/x", &["GET", "PUT", "DELETE"][..]),
        (Method::DELETE, "/healthz", &["GET"][..]),
        (Method::PUT, "/v1/agents", &["GET", "POST"][..]),
    ];
    // At once: where the edition holds the answer back (the tarpit) the waits overlap.
    let check = |(method, path, allowed): (Method, &'static str, &'static [&'static str])| {
        let app = &app;
        async move {
            let res = send(app.owner(method.clone(), path)).await;
            edition::assert_wrong_method_answer(res, &method, path, allowed).await;
        }
    };
    let [a, b, c, d] = cases.map(check);
    tokio::join!(a, b, c, d);
}

fn post_head(app: &TestApp, length: usize, extra: &str) -> Vec<u8> {
    format!(
        "POST /v1/entries HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {}\r\nContent-Type: application/json\r\nContent-Length: {length}\r\n{extra}\r\n",
        app.addr, app.owner_token
    )
    .into_bytes()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_declared_length_over_the_limit_is_413_before_the_body_is_sent() {
    let app = spawn_app().await;
    // The head only: a server that waits for the body before answering never answers.
    let res = raw(&app, &post_head(&app, 2 * 1024 * 1024, "")).await;
    assert!(status_line(&res).starts_with("HTTP/1.1 413"), "{res}");
    assert_eq!(raw_code(&res), "payload_too_large", "{res}");
    assert_eq!(app.entry_count().await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expect_100_continue_over_the_limit_gets_413_not_continue() {
    let app = spawn_app().await;
    let res = raw(
        &app,
        &post_head(&app, 2 * 1024 * 1024, "Expect: 100-continue\r\n"),
    )
    .await;
    assert!(
        status_line(&res).starts_with("HTTP/1.1 413"),
        "the first answer must be the 413: {res}"
    );
    assert!(!res.contains("100 Continue"), "{res}");
    assert_eq!(raw_code(&res), "payload_too_large", "{res}");

    // Within the limit, 100-continue still works.
    let body = json!({"title": "fits"}).to_string();
    let mut req = post_head(&app, body.len(), "Expect: 100-continue\r\n");
    req.extend_from_slice(body.as_bytes());
    let res = raw(&app, &req).await;
    assert!(res.contains("HTTP/1.1 201"), "{res}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_compressed_body_is_415_and_creates_nothing() {
    let app = spawn_app().await;
    for coding in ["gzip", "br", "GZIP", "identity, gzip"] {
        let req = app
            .owner(Method::POST, "/v1/entries")
            .header("content-encoding", coding)
            .json(&json!({"title": "compressed"}));
        let body = assert_error(
            send(req).await,
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
        )
        .await;
        assert!(body.contains("Content-Encoding"), "{body}");
    }
    assert_eq!(app.entry_count().await, 0);
    // `identity` is no coding at all.
    let req = app
        .owner(Method::POST, "/v1/entries")
        .header("content-encoding", "identity")
        .json(&json!({"title": "plain"}));
    assert_eq!(send(req).await.status(), StatusCode::CREATED);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transfer_coding_other_than_chunked_is_refused() {
    let app = spawn_app().await;
    let body = json!({"title": "gzipped?"}).to_string();
    let head = |te: &str| {
        format!(
            "POST /v1/entries HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {}\r\nContent-Type: application/json\r\nTransfer-Encoding: {te}\r\n\r\n{:x}\r\n{body}\r\n0\r\n\r\n",
            app.addr,
            app.owner_token,
            body.len()
        )
    };
    let res = raw(&app, head("gzip, chunked").as_bytes()).await;
    assert!(status_line(&res).starts_with("HTTP/1.1 415"), "{res}");
    assert_eq!(raw_code(&res), "unsupported_media_type", "{res}");
    // Without `chunked` last the request cannot be framed: hyper refuses it before routing.
    let res = raw(&app, head("gzip").as_bytes()).await;
    assert!(status_line(&res).starts_with("HTTP/1.1 400"), "{res}");
    assert_eq!(app.entry_count().await, 0);
    // Plain chunked is fine.
    let res = raw(&app, head("chunked").as_bytes()).await;
    assert!(status_line(&res).starts_with("HTTP/1.1 201"), "{res}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bearer_scheme_is_case_insensitive() {
    let app = spawn_app().await;
    for scheme in ["Bearer", "bearer", "BEARER", "bEaReR"] {
        let res = send(
            app.client
                .get(app.url("/v1/entries"))
                .header("authorization", format!("{scheme} {}", app.owner_token)),
        )
        .await;
        assert_eq!(res.status(), StatusCode::OK, "{scheme}");
    }
    let res = send(
        app.client
            .get(app.url("/v1/entries"))
            .header("authorization", format!("Basic {}", app.owner_token)),
    )
    .await;
    assert_error(res, StatusCode::UNAUTHORIZED, "missing_token").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_authorization_headers_are_400_whichever_comes_first() {
    let app = spawn_app().await;
    let owner = format!("Bearer {}", app.owner_token);
    let other = "Bearer clv_not-a-real-token".to_owned();
    for (first, second) in [(&owner, &other), (&other, &owner), (&owner, &owner)] {
        let req = app
            .client
            .get(app.url("/v1/entries"))
            .header("authorization", first)
            .header("authorization", second);
        assert_error(
            send(req).await,
            StatusCode::BAD_REQUEST,
            "invalid_authorization",
        )
        .await;
    }
    // The same on a write: refused, nothing created.
    let req = app
        .client
        .post(app.url("/v1/entries"))
        .header("authorization", &owner)
        .header("authorization", &other)
        .json(&json!({"title": "x"}));
    assert_error(
        send(req).await,
        StatusCode::BAD_REQUEST,
        "invalid_authorization",
    )
    .await;
    assert_eq!(app.entry_count().await, 0);
}
