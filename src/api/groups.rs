//! `/v1/groups`: the owner and admins create and delete groups and add and remove members;
//! users list the groups they belong to.

use super::AppState;
use super::dto::{GroupIn, GroupList, GroupOut};
use super::error::{ApiError, ErrorBody};
use super::extract::{AppJson, AppPath, Auth};
use crate::vault::{GroupId, UserId};
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list, create))
        .routes(routes!(remove))
        .routes(routes!(add_member, remove_member))
}

fn ids(group: &str, user: &str) -> Result<(GroupId, UserId), ApiError> {
    let g = GroupId::parse(group).map_err(|e| ApiError::bad_request(e.to_string()))?;
    let u = UserId::parse(user).map_err(|e| ApiError::bad_request(e.to_string()))?;
    Ok((g, u))
}

/// Creates a group.
#[utoipa::path(post, path = "/v1/groups", tag = "people", request_body = GroupIn,
    responses((status = CREATED, body = GroupOut), (status = CONFLICT, body = ErrorBody, description = "`conflict`")))]
async fn create(
    State(s): State<AppState>,
    Auth(caller): Auth,
    AppJson(body): AppJson<GroupIn>,
) -> Result<Response, ApiError> {
    let spec = body.into_spec().map_err(crate::service::Error::from)?;
    let group = s.vault.create_group(&caller, spec).await?;
    Ok((StatusCode::CREATED, Json(GroupOut::from(group))).into_response())
}

/// The groups (a user: the ones it belongs to).
#[utoipa::path(get, path = "/v1/groups", tag = "people", responses((status = OK, body = GroupList)))]
async fn list(State(s): State<AppState>, Auth(caller): Auth) -> Result<Json<GroupList>, ApiError> {
    let groups = s.vault.list_groups(&caller).await?;
    Ok(Json(GroupList {
        groups: groups.into_iter().map(GroupOut::from).collect(),
    }))
}

/// Deletes a group.
#[utoipa::path(delete, path = "/v1/groups/{id}", tag = "people", params(("id" = String, Path, description = "The group's id")),
    responses((status = NO_CONTENT, description = "Deleted"), (status = NOT_FOUND, body = ErrorBody, description = "`group_not_found`")))]
async fn remove(
    State(s): State<AppState>,
    Auth(caller): Auth,
    AppPath(id): AppPath<String>,
) -> Result<StatusCode, ApiError> {
    let id = GroupId::parse(&id).map_err(|e| ApiError::bad_request(e.to_string()))?;
    s.vault.delete_group(&caller, id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// 204 whether or not the user was a member already (the PUT is idempotent).
#[utoipa::path(put, path = "/v1/groups/{id}/members/{user_id}", tag = "people",
    params(("id" = String, Path, description = "The group's id"), ("user_id" = String, Path, description = "The user's id")),
    responses((status = NO_CONTENT, description = "A member"),
        (status = NOT_FOUND, body = ErrorBody, description = "`group_not_found`, `user_not_found`")))]
async fn add_member(
    State(s): State<AppState>,
    Auth(caller): Auth,
    AppPath((group, user)): AppPath<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let (g, u) = ids(&group, &user)?;
    s.vault.add_group_member(&caller, g, u).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// 204 whether or not the user was a member (the DELETE is idempotent).
#[utoipa::path(delete, path = "/v1/groups/{id}/members/{user_id}", tag = "people",
    params(("id" = String, Path, description = "The group's id"), ("user_id" = String, Path, description = "The user's id")),
    responses((status = NO_CONTENT, description = "Not a member"),
        (status = NOT_FOUND, body = ErrorBody, description = "`group_not_found`, `user_not_found`")))]
async fn remove_member(
    State(s): State<AppState>,
    Auth(caller): Auth,
    AppPath((group, user)): AppPath<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let (g, u) = ids(&group, &user)?;
    s.vault.remove_group_member(&caller, g, u).await?;
    Ok(StatusCode::NO_CONTENT)
}
