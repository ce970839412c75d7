//! The HTTP API: routes, extractors, the error shape, and the JSON types.
//!
//! API boundary: everything under `/v1` and `/healthz`, `/metrics`. Handlers stay thin: parse,
//! call the service, map the result.

mod agents;
mod audit;
mod bulk;
mod changes;
mod dto;
mod entries;
mod error;
mod extract;
mod grants;
mod groups;
mod invites;
mod openapi;
mod owner;
mod proxy;
mod request_context;
mod users;

pub use bulk::{BULK_BODY_LIMIT, MAX_BULK_ENTRIES};
pub use dto::timestamp;
pub use error::{ApiError, ErrorBody};
pub use extract::{AppJson, bearer_token};

use crate::edition::Edition;
use crate::service::Vault;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{Method, StatusCode};
use axum::middleware;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json, Router};
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use tower_http::timeout::TimeoutLayer;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// Largest request body accepted; larger ones get 413 (routes may set their own with
/// [`with_body_limit`]).
pub const BODY_LIMIT: usize = 1024 * 1024;

/// The body limit in force for a route, for [`AppJson`] to refuse a longer declared body
/// before reading it. Set with [`with_body_limit`].
#[derive(Debug, Clone, Copy)]
pub struct BodyLimit(pub usize);

/// Sets the body limit of `router`'s routes to `max` bytes; a router merged inside another
/// keeps its own.
pub fn with_body_limit<S>(router: Router<S>, max: usize) -> Router<S>
where
    S: Clone + Send + Sync + 'static,
{
    router
        .layer(DefaultBodyLimit::max(max))
        .layer(Extension(BodyLimit(max)))
}
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Clone)]
pub struct AppState {
    pub vault: Arc<Vault>,
    pub edition: Arc<dyn Edition>,
    /// The proxy's outbound client; `None` unless the server runs with `--enable-proxy`.
    pub egress: Option<Arc<crate::egress::Egress>>,
}

/// Every route of the API, each with its operation in the OpenAPI document (see `openapi`).
fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(healthz))
        .routes(routes!(metrics))
        .routes(routes!(openapi::document))
        .merge(entries::routes())
        .merge(bulk::routes())
        .merge(agents::routes())
        .merge(owner::routes())
        .merge(users::routes())
        .merge(groups::routes())
        .merge(invites::routes())
        .merge(grants::routes())
        .merge(audit::routes())
        .merge(proxy::routes())
        .merge(changes::routes())
}

/// The OpenAPI document `GET /openapi.json` serves: made from the routes the router serves.
pub fn openapi_document() -> utoipa::openapi::OpenApi {
    openapi::finish(routes().into_openapi())
}

pub fn router(state: AppState) -> Router {
    let edition = state.edition.clone();
    let (api, doc) = routes().with_state(state.clone()).split_for_parts();
    let api = api.layer(Extension(openapi::Document::new(&openapi::finish(doc))));
    // After the edition's routes: a route keeps an answer to wrong methods the edition set
    // (Commercial: the tarpit); the rest get the JSON 405.
    let routes = edition
        .extend_router(api)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn_with_state(
            state.vault.clone(),
            audit::gate,
        ));
    with_body_limit(routes, BODY_LIMIT)
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            REQUEST_TIMEOUT,
        ))
        .layer(middleware::from_fn(request_context::layer))
}

async fn method_not_allowed(method: Method) -> ApiError {
    ApiError::method_not_allowed(&method)
}

#[derive(Serialize, ToSchema)]
struct HealthOut {
    /// `ok` whenever the server answers.
    status: &'static str,
    /// `community` or `commercial`.
    edition: &'static str,
    /// `standalone`, `primary` or `backup`.
    role: &'static str,
    /// The edition's own section under its own key (Commercial: `replication`).
    #[serde(flatten)]
    #[schema(ignore)]
    details: BTreeMap<&'static str, serde_json::Value>,
}

/// Whether the server is up, and its edition and role.
#[utoipa::path(get, path = "/healthz", tag = "operate", security(()),
    responses((status = OK, body = HealthOut)))]
async fn healthz(State(s): State<AppState>) -> Json<HealthOut> {
    let details = s.edition.health_details().await.into_iter().collect();
    Json(HealthOut {
        status: "ok",
        edition: s.edition.name(),
        role: s.edition.role().as_str(),
        details,
    })
}

/// Prometheus/OpenMetrics text: requests by route and status, latencies, failures.
#[utoipa::path(get, path = "/metrics", tag = "operate", security(()),
    responses((status = OK, body = String,
        content_type = "application/openmetrics-text; version=1.0.0; charset=utf-8")))]
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
        crate::metrics::render_with(entries, s.edition.metrics().await.as_ref()),
    )
        .into_response())
}
