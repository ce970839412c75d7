//! `/v1/users`: the owner and admins create, list, change, deactivate, reactivate and delete
//! users (admins only by the owner); `/v1/me`: who a token is.

use super::AppState;
use super::dto::{ChangedUser, MeOut, UserIn, UserList, UserOut, UserPatch, UserWithToken};
use super::error::{ApiError, ErrorBody};
use super::extract::{AppJson, AppPath, Auth};
use crate::service::Kind;
use crate::vault::UserId;
use axum::Json;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list, create))
        .routes(routes!(show, change, remove))
        .routes(routes!(me))
}

fn user_id(raw: &str) -> Result<UserId, ApiError> {
    UserId::parse(raw).map_err(|e| ApiError::bad_request(e.to_string()))
}

/// A response carrying a token: never cached.
fn no_store(mut res: Response) -> Response {
    res.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    res
}

/// Creates a user; its token is in this answer only (`Cache-Control: no-store`).
#[utoipa::path(post, path = "/v1/users", tag = "people", request_body = UserIn,
    responses((status = CREATED, body = UserWithToken), (status = CONFLICT, body = ErrorBody, description = "`conflict`")))]
async fn create(
    State(s): State<AppState>,
    Auth(caller): Auth,
    AppJson(body): AppJson<UserIn>,
) -> Result<Response, ApiError> {
    let spec = body.into_spec().map_err(crate::service::Error::from)?;
    let created = s.vault.create_user(&caller, spec).await?;
    let out = UserWithToken {
        user: created.user.into(),
        token: created.token.expose(),
    };
    Ok(no_store((StatusCode::CREATED, Json(out)).into_response()))
}

/// The users.
#[utoipa::path(get, path = "/v1/users", tag = "people",
    responses((status = OK, body = UserList)))]
async fn list(State(s): State<AppState>, Auth(caller): Auth) -> Result<Json<UserList>, ApiError> {
    let users = s.vault.list_users(&caller).await?;
    Ok(Json(UserList {
        users: users.into_iter().map(UserOut::from).collect(),
    }))
}

/// One user.
#[utoipa::path(get, path = "/v1/users/{id}", tag = "people", params(("id" = String, Path, description = "The user's id")),
    responses((status = OK, body = UserOut), (status = NOT_FOUND, body = ErrorBody, description = "`user_not_found`")))]
async fn show(
    State(s): State<AppState>,
    Auth(caller): Auth,
    AppPath(id): AppPath<String>,
) -> Result<Json<UserOut>, ApiError> {
    let user = s.vault.get_user(&caller, user_id(&id)?).await?;
    Ok(Json(user.into()))
}

/// `{"active":false}` deactivates; `{"active":true}` reactivates and answers the new token
/// (shown once); `name`, `email`, `role` change those.
#[utoipa::path(patch, path = "/v1/users/{id}", tag = "people", params(("id" = String, Path, description = "The user's id")), request_body = UserPatch,
    responses((status = OK, body = ChangedUser), (status = NOT_FOUND, body = ErrorBody, description = "`user_not_found`"),
        (status = CONFLICT, body = ErrorBody, description = "`conflict`")))]
async fn change(
    State(s): State<AppState>,
    Auth(caller): Auth,
    AppPath(id): AppPath<String>,
    AppJson(body): AppJson<UserPatch>,
) -> Result<Response, ApiError> {
    let id = user_id(&id)?;
    let change = body.into_change().map_err(crate::service::Error::from)?;
    let (user, token) = s.vault.change_user(&caller, id, change).await?;
    let res = Json(ChangedUser {
        user: user.into(),
        token: token.as_ref().map(|t| t.expose()),
    })
    .into_response();
    Ok(if token.is_some() { no_store(res) } else { res })
}

/// Deletes a user.
#[utoipa::path(delete, path = "/v1/users/{id}", tag = "people", params(("id" = String, Path, description = "The user's id")),
    responses((status = NO_CONTENT, description = "Deleted"), (status = NOT_FOUND, body = ErrorBody, description = "`user_not_found`")))]
async fn remove(
    State(s): State<AppState>,
    Auth(caller): Auth,
    AppPath(id): AppPath<String>,
) -> Result<StatusCode, ApiError> {
    s.vault.delete_user(&caller, user_id(&id)?).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Who the caller's token is.
#[utoipa::path(get, path = "/v1/me", tag = "people", responses((status = OK, body = MeOut)))]
async fn me(Auth(caller): Auth) -> Json<MeOut> {
    let p = &caller.principal;
    let role = match p.kind {
        Kind::User(r) => Some(r.as_str()),
        _ => None,
    };
    let scopes = if p.is_owner {
        vec!["*".to_owned()]
    } else {
        p.scopes.iter().map(|s| s.to_string()).collect()
    };
    Json(MeOut {
        id: p.id.to_string(),
        kind: p.kind.as_str(),
        name: p.name.clone(),
        role,
        scopes,
    })
}
