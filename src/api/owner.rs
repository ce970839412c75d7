//! `/v1/owner/rotate`: the owner replaces its token; `/v1/token/rotate`: the owner or a user
//! replaces its own. One handler for both.
//!
//! The body may carry the new token (`{"token":"clv_..."}`), made and stored by the client
//! before it asks, so an answer lost on the way cannot lose the vault; the client retries with
//! that token as its bearer, which is answered 200 without change. Without a body the server
//! makes the token.

use super::AppState;
use super::error::ApiError;
use super::extract::Auth;
use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(rotate_owner))
        .routes(routes!(rotate_own))
}

/// The new token, made and stored by the client before it asks.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct RotateIn {
    token: String,
}

#[derive(Serialize, ToSchema)]
struct RotateOut {
    token: String,
}

#[derive(Clone, Copy)]
enum Whose {
    Owner,
    Own,
}

/// The owner replaces its token. An empty body: the server makes the new token.
#[utoipa::path(post, path = "/v1/owner/rotate", tag = "tokens", request_body = Option<RotateIn>,
    responses((status = OK, body = RotateOut)))]
async fn rotate_owner(s: State<AppState>, a: Auth, body: Bytes) -> Result<Response, ApiError> {
    rotate(s, a, body, Whose::Owner).await
}

/// The owner or a user replaces its own token. An empty body: the server makes the new token.
#[utoipa::path(post, path = "/v1/token/rotate", tag = "tokens", request_body = Option<RotateIn>,
    responses((status = OK, body = RotateOut)))]
async fn rotate_own(s: State<AppState>, a: Auth, body: Bytes) -> Result<Response, ApiError> {
    rotate(s, a, body, Whose::Own).await
}

async fn rotate(
    State(s): State<AppState>,
    Auth(caller): Auth,
    body: Bytes,
    whose: Whose,
) -> Result<Response, ApiError> {
    let proposed = if body.iter().all(u8::is_ascii_whitespace) {
        None
    } else {
        let parsed: RotateIn = serde_json::from_slice(&body).map_err(|e| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_json",
                format!("the body must be empty or {{\"token\":\"clv_...\"}}: {e}"),
            )
        })?;
        Some(zeroize::Zeroizing::new(parsed.token))
    };
    let proposed = proposed.as_ref().map(|t| t.as_str());
    let token = match whose {
        Whose::Owner => s.vault.rotate_owner(&caller, proposed).await?,
        Whose::Own => s.vault.rotate_own_token(&caller, proposed).await?,
    };
    let mut res = Json(RotateOut {
        token: token.expose().to_owned(),
    })
    .into_response();
    res.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(res)
}
