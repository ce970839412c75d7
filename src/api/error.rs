//! The one error type that becomes an HTTP response: `{"error":{"code","message"}}`.

use crate::service;
use axum::Json;
use axum::extract::rejection::{JsonRejection, PathRejection};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

/// Every error answer's body: `{"error":{"code","message"}}`.
#[derive(Serialize, ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Serialize, ToSchema)]
pub struct ErrorDetail {
    /// Stable, machine-readable: e.g. `validation_failed`, `invalid_token`, `entry_not_found`.
    pub code: String,
    /// For people: what went wrong and how to fix it.
    pub message: String,
}

#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
    retry_after: Option<u64>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            retry_after: None,
        }
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "validation_failed", message)
    }

    /// A body (declared or found) over the route's limit.
    pub fn payload_too_large(limit: usize) -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            format!("the body is larger than {limit} bytes"),
        )
    }

    /// A body in a content or transfer coding the server does not decode.
    pub fn unsupported_encoding(header: &str, coding: &str) -> Self {
        let coding: String = coding.chars().take(40).collect();
        Self::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            format!(
                "{header}: {coding:?} is not accepted; send the body uncompressed, as plain JSON"
            ),
        )
    }

    /// An `Authorization` header the server will not guess about.
    pub fn invalid_authorization(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_authorization", message)
    }

    /// A known path asked with a method it does not take; the router adds the `Allow` header.
    pub fn method_not_allowed(method: &axum::http::Method) -> Self {
        let method: String = method.as_str().chars().take(40).collect();
        Self::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            format!(
                "this path does not take {method}; the Allow header lists the methods it takes"
            ),
        )
    }
}

impl From<service::Error> for ApiError {
    fn from(e: service::Error) -> Self {
        use service::Error as E;
        let (status, code) = match &e {
            E::Invalid(_) => (StatusCode::BAD_REQUEST, "validation_failed"),
            E::MissingToken => (StatusCode::UNAUTHORIZED, "missing_token"),
            E::InvalidToken => (StatusCode::UNAUTHORIZED, "invalid_token"),
            E::TokenExpired => (StatusCode::UNAUTHORIZED, "token_expired"),
            E::IpNotAllowed(_) => (StatusCode::FORBIDDEN, "ip_not_allowed"),
            E::RateLimited { .. } => (StatusCode::TOO_MANY_REQUESTS, "rate_limited"),
            E::OwnerOnly => (StatusCode::FORBIDDEN, "owner_only"),
            E::NotAllowed(_) => (StatusCode::FORBIDDEN, "forbidden"),
            E::UserNotFound(_) => (StatusCode::NOT_FOUND, "user_not_found"),
            E::GroupNotFound(_) => (StatusCode::NOT_FOUND, "group_not_found"),
            E::KeyNotHeld { .. } => (StatusCode::CONFLICT, "scope_key_not_held"),
            E::InviteNotValid(_) => (StatusCode::BAD_REQUEST, "invite_not_valid"),
            E::EntryNotFound(_) | E::EntryNotReadable(_) => {
                (StatusCode::NOT_FOUND, "entry_not_found")
            }
            E::FieldNotFound { .. } | E::FieldNotReadable { .. } => {
                (StatusCode::NOT_FOUND, "field_not_found")
            }
            E::UseOnly { .. } => (StatusCode::FORBIDDEN, "use_only"),
            E::AgentNotFound(_) => (StatusCode::NOT_FOUND, "agent_not_found"),
            E::Conflict(_) => (StatusCode::CONFLICT, "conflict"),
            E::Refused(_) => (StatusCode::BAD_REQUEST, "refused"),
            E::ReadOnlyBackup => (StatusCode::SERVICE_UNAVAILABLE, "read_only_backup"),
            E::AuditUnavailable => (StatusCode::SERVICE_UNAVAILABLE, "audit_unavailable"),
            E::Store(_) | E::Crypto(_) => {
                // Details go to the log (inside the request's span, so with its id), never
                // to the client.
                tracing::error!(error = %e, "request failed");
                return Self::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    "the server failed to complete this request; see its log",
                );
            }
        };
        let mut out = Self::new(status, code, e.to_string());
        if let E::RateLimited { retry_after_secs } = e {
            out.retry_after = Some(retry_after_secs);
        }
        out
    }
}

impl From<JsonRejection> for ApiError {
    fn from(r: JsonRejection) -> Self {
        let status = r.status();
        let code = match status {
            StatusCode::PAYLOAD_TOO_LARGE => "payload_too_large",
            StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported_media_type",
            _ => "invalid_json",
        };
        let message = match &r {
            JsonRejection::JsonDataError(e) => format!(
                "the JSON does not match what this endpoint takes: {}",
                e.body_text()
            ),
            JsonRejection::JsonSyntaxError(e) => {
                format!("the body is not valid JSON: {}", e.body_text())
            }
            JsonRejection::MissingJsonContentType(_) => {
                "send the body as JSON with Content-Type: application/json".to_owned()
            }
            _ if status == StatusCode::PAYLOAD_TOO_LARGE => {
                format!("the body is larger than {} bytes", super::BODY_LIMIT)
            }
            other => other.body_text(),
        };
        // A wrong shape is still a client error, reported as 400 like the rest.
        let status = if status == StatusCode::UNPROCESSABLE_ENTITY {
            StatusCode::BAD_REQUEST
        } else {
            status
        };
        Self::new(status, code, message)
    }
}

impl From<PathRejection> for ApiError {
    fn from(r: PathRejection) -> Self {
        Self::bad_request(r.body_text())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        crate::metrics::record_error(self.status.as_u16(), self.code);
        let body = Json(ErrorBody {
            error: ErrorDetail {
                code: self.code.to_owned(),
                message: self.message,
            },
        });
        let mut res = (self.status, body).into_response();
        if self.status == StatusCode::PAYLOAD_TOO_LARGE {
            // The body was not read, so the connection cannot carry another request: say so,
            // or a client reuses it and its next request dies with the closed connection.
            // (HTTP/2 strips the header; a stream there needs none of this.)
            res.headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        if let Some(s) = self.retry_after
            && let Ok(v) = HeaderValue::from_str(&s.to_string())
        {
            res.headers_mut().insert(header::RETRY_AFTER, v);
        }
        res
    }
}
