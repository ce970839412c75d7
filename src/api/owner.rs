//! `/v1/owner/rotate`: the owner replaces its token.
//!
//! The body may carry the new token (`{"token":"clv_..."}`), made and stored by the client
//! before it asks, so an answer lost on the way cannot lose the vault; the client retries with
//! that token as its bearer, which is answered 200 without change. Without a body the server
//! makes the token.

use super::AppState;
use super::error::ApiError;
use super::extract::Auth;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};

pub fn routes() -> Router<AppState> {
    Router::new().route("/v1/owner/rotate", post(rotate))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RotateIn {
    token: String,
}

#[derive(Serialize)]
struct RotateOut {
    token: String,
}

async fn rotate(
    State(s): State<AppState>,
    Auth(caller): Auth,
    body: Bytes,
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
    let token = s
        .vault
        .rotate_owner(&caller, proposed.as_ref().map(|t| t.as_str()))
        .await?;
    let mut res = Json(RotateOut {
        token: token.expose().to_owned(),
    })
    .into_response();
    res.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(res)
}
