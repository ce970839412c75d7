//! `/v1/groups`: the owner and admins create and delete groups and add and remove members;
//! users list the groups they belong to.

use super::AppState;
use super::dto::{GroupIn, GroupList, GroupOut};
use super::error::ApiError;
use super::extract::{AppJson, AppPath, Auth};
use crate::service::MemberAdded;
use crate::vault::{GroupId, UserId};
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, put};
use axum::{Json, Router};
use serde::Deserialize;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/groups", get(list).post(create))
        .route("/v1/groups/{id}", delete(remove))
        .route(
            "/v1/groups/{id}/members/{user_id}",
            put(add_member).delete(remove_member),
        )
}

fn ids(group: &str, user: &str) -> Result<(GroupId, UserId), ApiError> {
    let g = GroupId::parse(group).map_err(|e| ApiError::bad_request(e.to_string()))?;
    let u = UserId::parse(user).map_err(|e| ApiError::bad_request(e.to_string()))?;
    Ok((g, u))
}

async fn create(
    State(s): State<AppState>,
    Auth(caller): Auth,
    AppJson(body): AppJson<GroupIn>,
) -> Result<Response, ApiError> {
    let spec = body.into_spec().map_err(crate::service::Error::from)?;
    let group = s.vault.create_group(&caller, spec).await?;
    Ok((StatusCode::CREATED, Json(GroupOut::from(group))).into_response())
}

async fn list(State(s): State<AppState>, Auth(caller): Auth) -> Result<Json<GroupList>, ApiError> {
    let groups = s.vault.list_groups(&caller).await?;
    Ok(Json(GroupList {
        groups: groups.into_iter().map(GroupOut::from).collect(),
    }))
}

async fn remove(
    State(s): State<AppState>,
    Auth(caller): Auth,
    AppPath(id): AppPath<String>,
) -> Result<StatusCode, ApiError> {
    let id = GroupId::parse(&id).map_err(|e| ApiError::bad_request(e.to_string()))?;
    s.vault.delete_group(&caller, id).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize, Default)]
pub struct AddMemberQuery {
    /// When the caller holds no copy of a key of the group's scopes: make the membership a
    /// pending grant (202) instead of refusing it (409 `scope_key_not_held`).
    #[serde(default)]
    pending: bool,
}

/// 204 whether or not the user was a member already (the PUT is idempotent); 202 with
/// `{"pending":true}` when the membership is a pending grant.
async fn add_member(
    State(s): State<AppState>,
    Auth(caller): Auth,
    AppPath((group, user)): AppPath<(String, String)>,
    query: Query<AddMemberQuery>,
) -> Result<Response, ApiError> {
    let (g, u) = ids(&group, &user)?;
    Ok(
        match s
            .vault
            .add_group_member(&caller, g, u, query.pending)
            .await?
        {
            MemberAdded::Pending => (
                StatusCode::ACCEPTED,
                Json(serde_json::json!({"pending": true, "group_id": group, "user_id": user})),
            )
                .into_response(),
            _ => StatusCode::NO_CONTENT.into_response(),
        },
    )
}

/// 204 whether or not the user was a member (the DELETE is idempotent).
async fn remove_member(
    State(s): State<AppState>,
    Auth(caller): Auth,
    AppPath((group, user)): AppPath<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let (g, u) = ids(&group, &user)?;
    s.vault.remove_group_member(&caller, g, u).await?;
    Ok(StatusCode::NO_CONTENT)
}
