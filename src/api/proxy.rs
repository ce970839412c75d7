//! `POST /v1/proxy`: send a request with secrets filled in by the server (see
//! `service::proxy`). Off unless the server runs with `--enable-proxy`: then every call gets a
//! JSON 403 `proxy_disabled` (after authentication), which tells an agent what to ask for.

use super::AppState;
use super::error::{ApiError, ErrorBody};
use super::extract::{AppJson, Auth};
use crate::service::proxy::{Error, ProxyRequest};
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use base64::Engine;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(proxy))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct ProxyIn {
    method: String,
    url: String,
    #[serde(default)]
    headers: BTreeMap<String, String>,
    body: Option<String>,
}

#[derive(Serialize, ToSchema)]
struct ProxyOut {
    status: u16,
    headers: BTreeMap<String, String>,
    body: String,
    /// `utf-8`, or `base64` for a body that is not text.
    body_encoding: &'static str,
}

impl From<Error> for ApiError {
    fn from(e: Error) -> Self {
        use crate::egress::Error as U;
        let (status, code) = match &e {
            Error::Service(_) => {
                let Error::Service(s) = e else { unreachable!() };
                return s.into();
            }
            Error::Invalid(_) => (StatusCode::BAD_REQUEST, "validation_failed"),
            Error::NotFound(_) => (StatusCode::NOT_FOUND, "field_not_found"),
            Error::HostNotAllowed(_) => (StatusCode::FORBIDDEN, "host_not_allowed"),
            Error::Upstream(u) => match u {
                U::AddressRefused { .. } => (StatusCode::FORBIDDEN, "address_not_allowed"),
                U::Timeout => (StatusCode::GATEWAY_TIMEOUT, "upstream_timeout"),
                U::TooLarge => (StatusCode::BAD_GATEWAY, "upstream_too_large"),
                U::Encoded(_) => (StatusCode::BAD_GATEWAY, "upstream_encoded"),
                U::Unresolved(_) | U::Connect(_) => {
                    (StatusCode::BAD_GATEWAY, "upstream_unreachable")
                }
                U::Failed(_) | U::CaFile { .. } | U::Tls(_) => {
                    (StatusCode::BAD_GATEWAY, "upstream_failed")
                }
            },
        };
        ApiError::new(status, code, e.to_string())
    }
}

/// Sends a request with secrets filled in by the server; off unless `serve --enable-proxy`.
#[utoipa::path(post, path = "/v1/proxy", tag = "proxy", request_body = ProxyIn,
    responses((status = OK, body = ProxyOut, description = "The upstream's answer, whatever its status"),
        (status = FORBIDDEN, body = ErrorBody, description = "`proxy_disabled`, `host_not_allowed`, `address_not_allowed`, `forbidden`"),
        (status = NOT_FOUND, body = ErrorBody, description = "`field_not_found`, `entry_not_found`"),
        (status = BAD_GATEWAY, body = ErrorBody, description = "`upstream_unreachable`, `upstream_failed`, `upstream_too_large`, `upstream_encoded`"),
        (status = GATEWAY_TIMEOUT, body = ErrorBody, description = "`upstream_timeout`")))]
async fn proxy(
    State(s): State<AppState>,
    Auth(caller): Auth,
    AppJson(body): AppJson<ProxyIn>,
) -> Result<Json<ProxyOut>, ApiError> {
    let Some(egress) = s.egress.as_deref() else {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "proxy_disabled",
            "the proxy is off on this server; its operator turns it on with `clavitor serve --enable-proxy`",
        ));
    };
    let req = ProxyRequest {
        method: body.method,
        url: body.url,
        headers: body.headers.into_iter().collect(),
        body: body.body,
    };
    let res = s.vault.proxy(&caller, egress, req).await?;
    let (body, body_encoding) = match res.body {
        Ok(text) => (text, "utf-8"),
        Err(bytes) => (
            base64::engine::general_purpose::STANDARD.encode(bytes),
            "base64",
        ),
    };
    Ok(Json(ProxyOut {
        status: res.status,
        headers: res.headers.into_iter().collect(),
        body,
        body_encoding,
    }))
}
