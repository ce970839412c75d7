//! The HTTP API: routes, extractors, the error shape, and the JSON types.
//!
//! API boundary: everything under `/v1` and `/healthz`, `/metrics`. Handlers stay thin: parse,
//! call the service, map the result.

mod agents;
mod audit;
mod bulk;
mod dto;
mod entries;
mod error;
mod extract;
mod owner;
mod request_context;

pub use bulk::{BULK_BODY_LIMIT, MAX_BULK_ENTRIES};
pub use dto::timestamp;
pub use error::ApiError;
pub use extract::AppJson;

use crate::edition::Edition;
use crate::service::Vault;
use axum::extract::State;
use axum::http::StatusCode;
use axum::middleware;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;
use tower_http::timeout::TimeoutLayer;

/// Largest request body accepted; larger ones get 413.
pub const BODY_LIMIT: usize = 1024 * 1024;
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Clone)]
pub struct AppState {
    pub vault: Arc<Vault>,
    pub edition: Arc<dyn Edition>,
}

pub fn router(state: AppState) -> Router {
    let edition = state.edition.clone();
    let api = Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .merge(entries::routes())
        .merge(bulk::routes())
        .merge(agents::routes())
        .merge(owner::routes())
        .merge(audit::routes())
        .with_state(state.clone());
    edition
        .extend_router(api)
        .layer(middleware::from_fn_with_state(
            state.vault.clone(),
            audit::gate,
        ))
        .layer(axum::extract::DefaultBodyLimit::max(BODY_LIMIT))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            REQUEST_TIMEOUT,
        ))
        .layer(middleware::from_fn(request_context::layer))
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
