//! `/v1/agents`: the owner creates, lists and revokes agents.

use super::AppState;
use super::dto::{AgentCreatedOut, AgentIn, AgentList, AgentOut, timestamp};
use super::error::{ApiError, ErrorBody};
use super::extract::{AppJson, AppPath, Auth};
use crate::store::now_ms;
use crate::vault::AgentId;
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list, create))
        .routes(routes!(revoke))
}

/// Creates an agent; its token is in this answer only (`Cache-Control: no-store`).
#[utoipa::path(post, path = "/v1/agents", tag = "agents", request_body = AgentIn,
    responses((status = CREATED, body = AgentCreatedOut)))]
async fn create(
    State(s): State<AppState>,
    Auth(caller): Auth,
    AppJson(body): AppJson<AgentIn>,
) -> Result<Response, ApiError> {
    let spec = body.into_spec().map_err(crate::service::Error::from)?;
    let name = spec.name.clone();
    let scopes = spec.scopes.iter().map(|s| s.to_string()).collect();
    let created = s.vault.create_agent(&caller, spec).await?;
    let out = AgentCreatedOut {
        id: created.id.to_string(),
        token: created.token.expose(),
        name,
        scopes,
        expires_at: created.expires_at.map(timestamp),
    };
    let mut res = (StatusCode::CREATED, Json(out)).into_response();
    res.headers_mut().insert(
        axum::http::header::CACHE_CONTROL,
        axum::http::HeaderValue::from_static("no-store"),
    );
    Ok(res)
}

/// The agents the caller may see, with their status.
#[utoipa::path(get, path = "/v1/agents", tag = "agents",
    responses((status = OK, body = AgentList)))]
async fn list(State(s): State<AppState>, Auth(caller): Auth) -> Result<Json<AgentList>, ApiError> {
    let now = now_ms();
    let agents = s.vault.list_agents(&caller).await?;
    Ok(Json(AgentList {
        agents: agents
            .into_iter()
            .map(|a| AgentOut::from_view(a, now))
            .collect(),
    }))
}

/// Revokes an agent: its token stops working at once.
#[utoipa::path(delete, path = "/v1/agents/{id}", tag = "agents",
    params(("id" = String, Path, description = "The agent's id")),
    responses((status = NO_CONTENT, description = "Revoked"), (status = NOT_FOUND, body = ErrorBody, description = "`agent_not_found`")))]
async fn revoke(
    State(s): State<AppState>,
    Auth(caller): Auth,
    AppPath(id): AppPath<String>,
) -> Result<StatusCode, ApiError> {
    let id = AgentId::parse(&id).map_err(|e| ApiError::bad_request(e.to_string()))?;
    s.vault.revoke_agent(&caller, id).await?;
    Ok(StatusCode::NO_CONTENT)
}
