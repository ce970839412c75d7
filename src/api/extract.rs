//! Extractors: JSON bodies and paths whose rejections use our error shape, the bearer token,
//! and the caller.

use super::error::ApiError;
use super::{AppState, BODY_LIMIT, BodyLimit};
use crate::service::Caller;
use axum::extract::{ConnectInfo, FromRequest, FromRequestParts, Request};
use axum::http::header::{AUTHORIZATION, CONTENT_ENCODING, CONTENT_LENGTH, TRANSFER_ENCODING};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode};
use serde::de::DeserializeOwned;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

/// A JSON body. Refused before a byte of it is read when its declared length is over the
/// route's [`BodyLimit`] (413; so `Expect: 100-continue` gets the 413, not `100 Continue`) or
/// when it is compressed or otherwise encoded (415: the server would parse the raw bytes).
pub struct AppJson<T>(pub T);

impl<T, S> FromRequest<S> for AppJson<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let limit = req
            .extensions()
            .get::<BodyLimit>()
            .map_or(BODY_LIMIT, |l| l.0);
        refuse_encoded(req.headers())?;
        if declared_length(req.headers()).is_some_and(|n| n > limit as u64) {
            return Err(ApiError::payload_too_large(limit));
        }
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(v)) => Ok(AppJson(v)),
            // A chunked body found too long while reading: same answer, with this route's limit.
            Err(r) if r.status() == StatusCode::PAYLOAD_TOO_LARGE => {
                Err(ApiError::payload_too_large(limit))
            }
            Err(r) => Err(r.into()),
        }
    }
}

fn declared_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// Refuses any content coding but `identity`, and any transfer coding but `chunked` (hyper
/// removes `chunked` framing and refuses a request whose last coding is not `chunked`, but
/// passes e.g. `gzip, chunked` on with the body still compressed).
fn refuse_encoded(headers: &HeaderMap) -> Result<(), ApiError> {
    let codings = |name| {
        headers
            .get_all(name)
            .iter()
            .flat_map(|v| v.to_str().unwrap_or("?").split(','))
            .map(str::trim)
            .filter(|c| !c.is_empty())
            .map(str::to_ascii_lowercase)
            .collect::<Vec<_>>()
    };
    if let Some(c) = codings(CONTENT_ENCODING)
        .into_iter()
        .find(|c| c != "identity")
    {
        return Err(ApiError::unsupported_encoding("Content-Encoding", &c));
    }
    if let Some(c) = codings(TRANSFER_ENCODING)
        .into_iter()
        .find(|c| c != "chunked")
    {
        return Err(ApiError::unsupported_encoding("Transfer-Encoding", &c));
    }
    Ok(())
}

#[derive(FromRequestParts)]
#[from_request(via(axum::extract::Path), rejection(ApiError))]
pub struct AppPath<T>(pub T);

/// The bearer token of a request, from its one `Authorization` header: the scheme is
/// case-insensitive (RFC 9110, 11.1). `None` without the header or with another scheme; 400
/// when the header is repeated (which copy would count is exactly what an attacker picks) or
/// is not text.
pub fn bearer_token(headers: &HeaderMap) -> Result<Option<&str>, ApiError> {
    let mut all = headers.get_all(AUTHORIZATION).iter();
    let Some(value) = all.next() else {
        return Ok(None);
    };
    if all.next().is_some() {
        return Err(ApiError::invalid_authorization(
            "the request has more than one Authorization header; send exactly one",
        ));
    }
    let value = value.to_str().map_err(|_| {
        ApiError::invalid_authorization(
            "the Authorization header is not plain text; send `Authorization: Bearer <token>`",
        )
    })?;
    let Some((scheme, token)) = value.trim().split_once(' ') else {
        return Ok(None);
    };
    Ok(scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim_start_matches(' ')))
}

/// The authenticated caller of this request.
pub struct Auth(pub Caller);

impl FromRequestParts<AppState> for Auth {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let bearer = bearer_token(&parts.headers)?;
        // Without connection info (never the case behind `serve`) fail closed for allowlists.
        let ip = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| c.0.ip())
            .unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
        let mut caller = state.vault.authenticate(bearer, ip).await?;
        caller.request_id = parts
            .headers
            .get(&super::request_context::REQUEST_ID)
            .and_then(|v| v.to_str().ok())
            .map(std::sync::Arc::from);
        Ok(Auth(caller))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(values: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append(AUTHORIZATION, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn the_bearer_scheme_is_case_insensitive() {
        for v in ["Bearer t0k", "bearer t0k", "BEARER t0k", "bEaReR   t0k"] {
            assert_eq!(bearer_token(&headers(&[v])).unwrap(), Some("t0k"), "{v}");
        }
    }

    #[test]
    fn other_schemes_and_no_header_are_no_token() {
        assert_eq!(bearer_token(&headers(&[])).unwrap(), None);
        for v in ["Basic dXNlcjpwdw==", "Bearer", "Bearert0k", "t0k"] {
            assert_eq!(bearer_token(&headers(&[v])).unwrap(), None, "{v}");
        }
    }

    #[test]
    fn two_authorization_headers_are_refused() {
        assert!(bearer_token(&headers(&["Bearer a", "Bearer b"])).is_err());
    }
}
