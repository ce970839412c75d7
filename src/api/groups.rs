//! `/v1/groups`: the owner and admins create, change and delete groups and add and remove
//! members; users list the groups they belong to.

use super::AppState;
use super::dto::{GroupIn, GroupList, GroupOut};
use super::error::{ApiError, ErrorBody};
use super::extract::{AppJson, AppPath, Auth};
use crate::service::MemberAdded;
use crate::vault::{GroupId, Invalid, Scope, UserId, check_group_name};
use axum::Json;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list, create))
        .routes(routes!(remove, change))
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

/// A group's new name and/or scopes (`scopes` is the whole new list, not a difference).
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct GroupPatch {
    pub name: Option<String>,
    pub scopes: Option<Vec<String>>,
}

impl GroupPatch {
    /// The same checks as creating a group: a valid name, valid scopes (sorted, once each).
    fn parse(self) -> Result<(Option<String>, Option<Vec<Scope>>), Invalid> {
        if self.name.is_none() && self.scopes.is_none() {
            return Err(Invalid(
                "nothing to change: send \"scopes\" (the whole new list), \"name\" or both".into(),
            ));
        }
        if let Some(n) = &self.name {
            check_group_name(n)?;
        }
        let scopes = match self.scopes {
            None => None,
            Some(list) => {
                let mut parsed: Vec<Scope> = list
                    .iter()
                    .map(|s| Scope::parse(s))
                    .collect::<Result<_, _>>()?;
                parsed.sort();
                parsed.dedup();
                Some(parsed)
            }
        };
        Ok((self.name, scopes))
    }
}

/// Changes a group's scopes (and/or name). Members gain the keys of added scopes from the
/// caller's copies (409 `scope_key_not_held`, naming the scope, when the caller has none) and
/// lose, with the agents they made, their copies of removed ones, in one transaction.
#[utoipa::path(patch, path = "/v1/groups/{id}", tag = "people", params(("id" = String, Path, description = "The group's id")), request_body = GroupPatch,
    responses((status = OK, body = GroupOut),
        (status = NOT_FOUND, body = ErrorBody, description = "`group_not_found`"),
        (status = CONFLICT, body = ErrorBody, description = "`scope_key_not_held`, `conflict` (the name is taken)")))]
async fn change(
    State(s): State<AppState>,
    Auth(caller): Auth,
    AppPath(id): AppPath<String>,
    AppJson(body): AppJson<GroupPatch>,
) -> Result<Json<GroupOut>, ApiError> {
    let id = GroupId::parse(&id).map_err(|e| ApiError::bad_request(e.to_string()))?;
    let (name, scopes) = body.parse().map_err(crate::service::Error::from)?;
    let group = s.vault.update_group(&caller, id, name, scopes).await?;
    Ok(Json(GroupOut::from(group)))
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

#[derive(Deserialize, Default, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AddMemberQuery {
    /// When the caller holds no copy of a key of the group's scopes: make the membership a
    /// pending grant (202) instead of refusing it (409 `scope_key_not_held`).
    #[serde(default)]
    pending: bool,
}

/// A membership waiting for a holder of the group's keys to confirm it.
#[derive(Serialize, ToSchema)]
pub struct PendingMember {
    pub pending: bool,
    pub group_id: String,
    pub user_id: String,
}

/// 204 whether or not the user was a member already (the PUT is idempotent); 202 with
/// `{"pending":true}` when the membership is a pending grant.
#[utoipa::path(put, path = "/v1/groups/{id}/members/{user_id}", tag = "people",
    params(("id" = String, Path, description = "The group's id"), ("user_id" = String, Path, description = "The user's id"), AddMemberQuery),
    responses((status = NO_CONTENT, description = "A member"),
        (status = ACCEPTED, body = PendingMember, description = "A pending grant"),
        (status = NOT_FOUND, body = ErrorBody, description = "`group_not_found`, `user_not_found`"),
        (status = CONFLICT, body = ErrorBody, description = "`scope_key_not_held`")))]
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
                Json(PendingMember {
                    pending: true,
                    group_id: group,
                    user_id: user,
                }),
            )
                .into_response(),
            _ => StatusCode::NO_CONTENT.into_response(),
        },
    )
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
