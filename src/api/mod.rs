//! The HTTP API: routes, extractors, the error shape, and the JSON types.
//!
//! API boundary: everything under `/v1` and `/healthz`, `/metrics`. Handlers stay thin: parse,
//! call the service, map the result.

mod agents;
mod dto;
mod entries;
mod error;
mod extract;

pub use dto::timestamp;
pub use error::ApiError;
pub use extract::AppJson;

use crate::edition::Edition;
use crate::service::Vault;
use axum::extract::{Request, State};
use axum::http::{HeaderName, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::{DefaultOnFailure, DefaultOnResponse, TraceLayer};

/// Largest request body accepted; larger ones get 413.
pub const BODY_LIMIT: usize = 1024 * 1024;
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Clone)]
pub struct AppState {
    pub vault: Arc<Vault>,
    pub edition: Arc<dyn Edition>,
}

pub fn router(state: AppState) -> Router {
    let request_id = HeaderName::from_static("x-request-id");
    let edition = state.edition.clone();
    let api = Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .merge(entries::routes())
        .merge(agents::routes())
        .with_state(state);
    edition
        .extend_router(api)
        .layer(axum::extract::DefaultBodyLimit::max(BODY_LIMIT))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            REQUEST_TIMEOUT,
        ))
        .layer(middleware::from_fn(count))
        .layer(PropagateRequestIdLayer::new(request_id.clone()))
        // Spans carry method, path and request id; never headers, so never a token.
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(|req: &Request| {
                    let id = req
                        .headers()
                        .get("x-request-id")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("-");
                    tracing::info_span!("request", method = %req.method(), path = %req.uri().path(), request_id = %id)
                })
                .on_response(DefaultOnResponse::new().level(tracing::Level::DEBUG))
                // 5xx that matter are logged by `ApiError` with their cause; a backup's 503 is routine.
                .on_failure(DefaultOnFailure::new().level(tracing::Level::DEBUG)),
        )
        .layer(SetRequestIdLayer::new(request_id, MakeRequestUuid))
}

async fn count(req: Request, next: Next) -> Response {
    let res = next.run(req).await;
    crate::metrics::record_request(res.status().as_u16());
    res
}

async fn healthz(State(s): State<AppState>) -> Json<serde_json::Value> {
    let mut body = json!({
        "status": "ok",
        "edition": s.edition.name(),
        "role": s.edition.role().as_str(),
    });
    if let Some((key, details)) = s.edition.health_details().await {
        body[key] = details;
    }
    Json(body)
}

async fn metrics(State(s): State<AppState>) -> Result<Response, ApiError> {
    let entries = s
        .vault
        .store()
        .read(crate::store::entries::count_live)
        .await
        .map_err(crate::service::Error::from)?;
    Ok((
        [(
            axum::http::header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        crate::metrics::render(entries),
    )
        .into_response())
}
