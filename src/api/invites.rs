//! `/v1/users/{id}/invite`: the owner or an admin issues a user a single-use code that
//! expires; `/v1/invite/redeem` (no bearer: the code is the credential) gives the user the
//! token its client made and a key pair.

use super::AppState;
use super::error::{ApiError, ErrorBody};
use super::extract::{AppJson, AppPath, Auth};
use crate::vault::UserId;
use axum::Json;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(invite))
        .routes(routes!(redeem))
}

#[derive(Deserialize, Default, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct InviteIn {
    /// How long the code lasts (default 72 h, at most 30 days).
    #[serde(default)]
    pub expires_in_secs: Option<u64>,
}

#[derive(Serialize, ToSchema)]
pub struct InviteOut<'a> {
    pub user_id: String,
    pub code: &'a str,
    pub expires_at: String,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RedeemIn {
    pub code: String,
    /// The token the client made for itself (`clv_` + 43 base64url characters).
    pub token: String,
}

#[derive(Serialize, ToSchema)]
pub struct RedeemOut {
    pub id: String,
    pub name: String,
    pub pending_grants: usize,
}

/// The peer's address and the request id, for a request without a bearer.
pub struct Peer {
    pub ip: IpAddr,
    pub request_id: Option<String>,
}

impl<S: Send + Sync> FromRequestParts<S> for Peer {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        Ok(Peer {
            ip: parts
                .extensions
                .get::<ConnectInfo<SocketAddr>>()
                .map(|c| c.0.ip())
                .unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED)),
            request_id: parts
                .headers
                .get(&super::request_context::REQUEST_ID)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned),
        })
    }
}

/// A single-use invite code for the user (shown once; the body is optional).
#[utoipa::path(post, path = "/v1/users/{id}/invite", tag = "people",
    params(("id" = String, Path, description = "The user's id")),
    request_body(content = Option<InviteIn>, description = "Optional: how long the code lasts"),
    responses((status = CREATED, body = InviteOut),
        (status = NOT_FOUND, body = ErrorBody, description = "`user_not_found`")))]
async fn invite(
    State(s): State<AppState>,
    Auth(caller): Auth,
    AppPath(id): AppPath<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let id = UserId::parse(&id).map_err(|e| ApiError::bad_request(e.to_string()))?;
    // The body is optional: none means the defaults.
    let ttl = if body.iter().all(u8::is_ascii_whitespace) {
        None
    } else {
        serde_json::from_slice::<InviteIn>(&body)
            .map_err(|e| {
                ApiError::bad_request(format!(
                    "the body is not an invite request ({{\"expires_in_secs\": N}}): {e}"
                ))
            })?
            .expires_in_secs
    };
    let inv = s.vault.invite_user(&caller, id, ttl).await?;
    let out = InviteOut {
        user_id: inv.user_id,
        code: inv.code.as_str(),
        expires_at: super::timestamp(inv.expires_at),
    };
    let mut res = (StatusCode::CREATED, Json(out)).into_response();
    res.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(res)
}

/// Redeems an invite code: the user gets the token its client made, and a key pair. No
/// bearer: the code is the credential.
#[utoipa::path(post, path = "/v1/invite/redeem", tag = "people", request_body = RedeemIn,
    security(()),
    responses((status = OK, body = RedeemOut),
        (status = BAD_REQUEST, body = ErrorBody, description = "`invite_not_valid`")))]
async fn redeem(
    State(s): State<AppState>,
    peer: Peer,
    AppJson(body): AppJson<RedeemIn>,
) -> Result<Json<RedeemOut>, ApiError> {
    let r = s
        .vault
        .redeem_invite(peer.ip, peer.request_id.as_deref(), &body.code, &body.token)
        .await?;
    Ok(Json(RedeemOut {
        id: r.user_id,
        name: r.name,
        pending_grants: r.pending_grants,
    }))
}
