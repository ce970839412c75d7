//! `/v1/grants`: memberships waiting for a holder of their keys. `GET /v1/grants/pending`
//! lists those the caller can complete; `POST /v1/grants/confirm` wraps the keys to the
//! members (`{"grants":[{"group_id","user_id"}]}`, or `{"all":true}`).

use super::AppState;
use super::error::ApiError;
use super::extract::{AppJson, Auth};
use crate::service::GrantRef;
use axum::Json;
use axum::extract::State;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(pending))
        .routes(routes!(confirm))
}

#[derive(Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct GrantRefDto {
    pub group_id: String,
    pub user_id: String,
}

#[derive(Serialize, ToSchema)]
pub struct PendingOut {
    pub group_id: String,
    pub group: String,
    pub scopes: Vec<String>,
    pub user_id: String,
    pub user: String,
    pub since: String,
    pub ready: bool,
}

#[derive(Serialize, ToSchema)]
pub struct PendingList {
    pub pending_grants: Vec<PendingOut>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ConfirmIn {
    #[serde(default)]
    pub grants: Vec<GrantRefDto>,
    #[serde(default)]
    pub all: bool,
}

#[derive(Serialize, ToSchema)]
pub struct ConfirmOut {
    pub confirmed: Vec<GrantRefDto>,
}

/// The pending grants the caller holds the keys to complete.
#[utoipa::path(get, path = "/v1/grants/pending", tag = "people",
    responses((status = OK, body = PendingList)))]
async fn pending(
    State(s): State<AppState>,
    Auth(caller): Auth,
) -> Result<Json<PendingList>, ApiError> {
    let list = s.vault.pending_grants(&caller).await?;
    Ok(Json(PendingList {
        pending_grants: list
            .into_iter()
            .map(|p| PendingOut {
                group_id: p.group_id,
                group: p.group,
                scopes: p.scopes,
                user_id: p.user_id,
                user: p.user,
                since: super::timestamp(p.since),
                ready: p.ready,
            })
            .collect(),
    }))
}

/// Wraps the keys of pending grants to their members (`{"all":true}` or a list).
#[utoipa::path(post, path = "/v1/grants/confirm", tag = "people", request_body = ConfirmIn,
    responses((status = OK, body = ConfirmOut)))]
async fn confirm(
    State(s): State<AppState>,
    Auth(caller): Auth,
    AppJson(body): AppJson<ConfirmIn>,
) -> Result<Json<ConfirmOut>, ApiError> {
    let which = match (body.all, body.grants.is_empty()) {
        (true, true) => None,
        (false, false) => Some(
            body.grants
                .into_iter()
                .map(|g| GrantRef {
                    group_id: g.group_id,
                    user_id: g.user_id,
                })
                .collect(),
        ),
        _ => {
            return Err(ApiError::bad_request(
                "send either {\"all\":true} or {\"grants\":[{\"group_id\":..,\"user_id\":..}]}",
            ));
        }
    };
    let done = s.vault.confirm_grants(&caller, which).await?;
    Ok(Json(ConfirmOut {
        confirmed: done
            .into_iter()
            .map(|g| GrantRefDto {
                group_id: g.group_id,
                user_id: g.user_id,
            })
            .collect(),
    }))
}
