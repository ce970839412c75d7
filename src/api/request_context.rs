//! What every request gets on the way in and out, in one layer: a request id (the client's
//! `x-request-id` if it sent a sane one), a `tracing` span carrying it for every log line the
//! request causes, the id echoed on the response, and the request counted for `/metrics` by
//! route template and status, with its latency.
//!
//! One hand-written layer rather than four stacked tower-http ones: on the field-read path the
//! stack of layers, a random UUID per request and a formatted span were a tenth of the server's
//! CPU (see BENCHMARKS.md).

use axum::extract::{MatchedPath, Request};
use axum::http::{HeaderName, HeaderValue};
use axum::middleware::Next;
use axum::response::Response;
use std::sync::LazyLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;
use tracing::Instrument;

pub static REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Longest client-supplied id kept; longer ones are replaced, so logs stay readable.
const MAX_CLIENT_ID: usize = 64;

/// Ids are `<run>-<sequence>`: unique within a run, and a random run prefix keeps ids from
/// different runs (or POPs) apart in aggregated logs. They are not secrets.
static RUN: LazyLock<u32> = LazyLock::new(rand::random);
static NEXT: AtomicU64 = AtomicU64::new(1);

fn new_id() -> HeaderValue {
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    HeaderValue::try_from(format!("{:08x}-{n:x}", *RUN))
        .expect("hex digits and a dash are a valid header value")
}

fn client_id(req: &Request) -> Option<HeaderValue> {
    let v = req.headers().get(&REQUEST_ID)?;
    let ok = !v.is_empty()
        && v.len() <= MAX_CLIENT_ID
        && v.as_bytes()
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'));
    ok.then(|| v.clone())
}

pub async fn layer(mut req: Request, next: Next) -> Response {
    let started = Instant::now();
    // The template (`/v1/entries/{id}`), never the path: ids must not become labels.
    let route = crate::metrics::route(
        req.extensions()
            .get::<MatchedPath>()
            .map(MatchedPath::as_str),
    );
    let id = client_id(&req).unwrap_or_else(new_id);
    req.headers_mut().insert(REQUEST_ID.clone(), id.clone());
    // Method, path and id only; never headers, so never a token.
    let span = tracing::info_span!(
        "request",
        method = %req.method(),
        path = req.uri().path(),
        request_id = id.to_str().unwrap_or("-"),
    );
    let mut res = next.run(req).instrument(span.clone()).await;
    route.record(res.status().as_u16(), started.elapsed());
    span.in_scope(|| tracing::debug!(status = res.status().as_u16(), "answered"));
    res.headers_mut().insert(REQUEST_ID.clone(), id);
    res
}
