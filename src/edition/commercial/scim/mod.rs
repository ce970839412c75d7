//! SCIM 2.0 (RFC 7643/7644) under `/scim/v2`, for identity providers (Okta, Entra ID, ...):
//! discovery (`ServiceProviderConfig`, `ResourceTypes`, `Schemas`), `Users` and `Groups`.
//!
//! The bearer is `scim.token_file`'s token and nothing else (a `/v1` token is refused here,
//! and this token is nobody on `/v1`). Served on the primary only: a backup answers 503. A
//! SCIM resource's id is the vault's id. What the provider may do is in
//! `service::provisioning`; this module speaks the protocol.
//!
//! - `filter.rs`: the filter and PATCH path grammar needed (`eq`, `and`, `attr[filter]`).
//! - `resources.rs`: the Users and Groups endpoints and their JSON.

mod filter;
mod resources;

use super::Live;
use super::config::PopRole;
use crate::service::provisioning::Provisioner;
use crate::service::{Error, Vault};
use axum::Router;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::{Value, json};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, RwLock};

/// The actor kind of SCIM requests in the audit trail.
pub const ACTOR_KIND: &str = "scim";
pub const CONTENT_TYPE: &str = "application/scim+json";
const ERROR_SCHEMA: &str = "urn:ietf:params:scim:api:messages:2.0:Error";
const LIST_SCHEMA: &str = "urn:ietf:params:scim:api:messages:2.0:ListResponse";
pub const USER_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
pub const GROUP_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:Group";
const PATCH_SCHEMA: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";
/// Largest page a list answers.
const MAX_COUNT: usize = 200;

#[derive(Clone)]
pub struct ScimState {
    pub vault: Arc<Vault>,
    pub live: Arc<RwLock<Arc<Live>>>,
}

pub fn routes(state: ScimState) -> Router {
    Router::new()
        .route(
            "/scim/v2/ServiceProviderConfig",
            get(service_provider_config),
        )
        .route("/scim/v2/ResourceTypes", get(resource_types))
        .route("/scim/v2/Schemas", get(schemas))
        .merge(resources::routes())
        .with_state(state)
}

/// A SCIM error: the RFC's error schema, with `scimType` where the RFC has one.
#[derive(Debug)]
pub struct ScimError {
    status: StatusCode,
    scim_type: Option<&'static str>,
    detail: String,
}

impl ScimError {
    pub fn new(
        status: StatusCode,
        scim_type: Option<&'static str>,
        detail: impl Into<String>,
    ) -> Self {
        Self {
            status,
            scim_type,
            detail: detail.into(),
        }
    }

    pub fn invalid_value(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, Some("invalidValue"), detail)
    }
}

impl IntoResponse for ScimError {
    fn into_response(self) -> Response {
        let mut body = json!({
            "schemas": [ERROR_SCHEMA],
            "status": self.status.as_u16().to_string(),
            "detail": self.detail,
        });
        if let Some(t) = self.scim_type {
            body["scimType"] = json!(t);
        }
        scim_json(self.status, &body)
    }
}

impl From<Error> for ScimError {
    fn from(e: Error) -> Self {
        let msg = e.to_string();
        match e {
            Error::Invalid(_) => Self::invalid_value(msg),
            Error::UserNotFound(_) | Error::GroupNotFound(_) => {
                Self::new(StatusCode::NOT_FOUND, None, msg)
            }
            Error::Conflict(_) => Self::new(StatusCode::CONFLICT, Some("uniqueness"), msg),
            Error::NotAllowed(_) | Error::OwnerOnly => Self::new(StatusCode::FORBIDDEN, None, msg),
            Error::ReadOnlyBackup => Self::new(StatusCode::SERVICE_UNAVAILABLE, None, msg),
            Error::AuditUnavailable => Self::new(StatusCode::SERVICE_UNAVAILABLE, None, msg),
            Error::Refused(_) => Self::new(StatusCode::BAD_REQUEST, None, msg),
            other => {
                tracing::error!(error = %other, "scim request failed");
                Self::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    None,
                    "the server failed to complete this request; see its log",
                )
            }
        }
    }
}

pub fn scim_json(status: StatusCode, body: &Value) -> Response {
    let mut res = (status, body.to_string()).into_response();
    res.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE));
    res
}

/// Checks the bearer against `scim.token_file`'s token (in constant time) and that this POP
/// is the primary. Returns who the request is, for the audit trail.
pub fn authorize(s: &ScimState, req: &Request) -> Result<Provisioner, ScimError> {
    let headers = req.headers();
    let peer = req.extensions().get::<ConnectInfo<SocketAddr>>();
    let live = s.live.read().unwrap_or_else(|p| p.into_inner()).clone();
    let Some(expected) = &live.config.scim_token else {
        return Err(ScimError::new(
            StatusCode::NOT_FOUND,
            None,
            "SCIM is not enabled on this POP: set scim.token_file in replication.yaml (make a token with `clavitor scim-token --out FILE`) and reload",
        ));
    };
    let bearer = crate::api::bearer_token(headers)
        .ok()
        .flatten()
        .map(crate::crypto::Token::from_text);
    let Some(bearer) = bearer else {
        return Err(ScimError::new(
            StatusCode::UNAUTHORIZED,
            None,
            "this request needs Authorization: Bearer <the SCIM token>",
        ));
    };
    if !bearer.hash().ct_eq(&expected.hash()) {
        return Err(ScimError::new(
            StatusCode::UNAUTHORIZED,
            None,
            "the token is not this POP's SCIM token (vault tokens are not accepted on /scim)",
        ));
    }
    if matches!(live.config.role, PopRole::Backup { .. }) || !s.vault.is_writable() {
        return Err(Error::ReadOnlyBackup.into());
    }
    Ok(Provisioner {
        kind: ACTOR_KIND,
        ip: peer
            .map(|c| c.0.ip())
            .unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED)),
        request_id: headers
            .get("x-request-id")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned),
    })
}

/// A request body: JSON sent as `application/scim+json` or `application/json`.
pub async fn body(req: Request) -> Result<Value, ScimError> {
    let headers = req.headers().clone();
    let bytes = axum::body::to_bytes(req.into_body(), crate::api::BODY_LIMIT)
        .await
        .map_err(|_| {
            ScimError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                None,
                format!("the body is larger than {} bytes", crate::api::BODY_LIMIT),
            )
        })?;
    parse_body(&headers, &bytes)
}

fn parse_body(headers: &HeaderMap, bytes: &[u8]) -> Result<Value, ScimError> {
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let mime = ct
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    if mime != CONTENT_TYPE && mime != "application/json" {
        return Err(ScimError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            None,
            format!("send the body as application/scim+json or application/json (got {ct:?})"),
        ));
    }
    let v: Value = serde_json::from_slice(bytes).map_err(|e| {
        ScimError::new(
            StatusCode::BAD_REQUEST,
            Some("invalidSyntax"),
            format!("the body is not valid JSON: {e}"),
        )
    })?;
    if !v.is_object() {
        return Err(ScimError::new(
            StatusCode::BAD_REQUEST,
            Some("invalidSyntax"),
            "the body must be a JSON object",
        ));
    }
    Ok(v)
}

/// A list answer, paged with `startIndex` (1-based) and `count`.
pub fn list_response(all: Vec<Value>, start: Option<usize>, count: Option<usize>) -> Response {
    let total = all.len();
    let start = start.unwrap_or(1).max(1);
    let count = count.unwrap_or(MAX_COUNT).min(MAX_COUNT);
    let page: Vec<Value> = all.into_iter().skip(start - 1).take(count).collect();
    scim_json(
        StatusCode::OK,
        &json!({
            "schemas": [LIST_SCHEMA],
            "totalResults": total,
            "startIndex": start,
            "itemsPerPage": page.len(),
            "Resources": page,
        }),
    )
}

async fn service_provider_config(
    State(s): State<ScimState>,
    req: Request,
) -> Result<Response, ScimError> {
    authorize(&s, &req)?;
    Ok(scim_json(
        StatusCode::OK,
        &json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:ServiceProviderConfig"],
            "documentationUri": "https://clavitor.dev/docs/scim",
            "patch": {"supported": true},
            "bulk": {"supported": false, "maxOperations": 0, "maxPayloadSize": 0},
            "filter": {"supported": true, "maxResults": MAX_COUNT},
            "changePassword": {"supported": false},
            "sort": {"supported": false},
            "etag": {"supported": false},
            "authenticationSchemes": [{
                "type": "oauthbearertoken",
                "name": "OAuth Bearer Token",
                "description": "The token of replication.yaml's scim.token_file",
                "primary": true
            }],
            "meta": {"resourceType": "ServiceProviderConfig", "location": "/scim/v2/ServiceProviderConfig"}
        }),
    ))
}

fn resource_type(name: &str, endpoint: &str, schema: &str) -> Value {
    json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:ResourceType"],
        "id": name,
        "name": name,
        "endpoint": endpoint,
        "schema": schema,
        "meta": {"resourceType": "ResourceType", "location": format!("/scim/v2/ResourceTypes/{name}")}
    })
}

async fn resource_types(State(s): State<ScimState>, req: Request) -> Result<Response, ScimError> {
    authorize(&s, &req)?;
    Ok(list_response(
        vec![
            resource_type("User", "/Users", USER_SCHEMA),
            resource_type("Group", "/Groups", GROUP_SCHEMA),
        ],
        None,
        None,
    ))
}

fn attr(name: &str, ty: &str, required: bool, mutability: &str, uniqueness: &str) -> Value {
    json!({"name": name, "type": ty, "multiValued": false, "required": required,
           "caseExact": false, "mutability": mutability, "returned": "default",
           "uniqueness": uniqueness})
}

async fn schemas(State(s): State<ScimState>, req: Request) -> Result<Response, ScimError> {
    authorize(&s, &req)?;
    let multi = |name: &str| {
        json!({"name": name, "type": "complex", "multiValued": true, "required": false,
               "mutability": "readWrite", "returned": "default",
               "subAttributes": [attr("value", "string", false, "readWrite", "none")]})
    };
    let user = json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Schema"],
        "id": USER_SCHEMA, "name": "User", "description": "A vault user (role member)",
        "attributes": [
            attr("userName", "string", true, "readWrite", "server"),
            attr("displayName", "string", false, "readOnly", "none"),
            attr("active", "boolean", false, "readWrite", "none"),
            attr("externalId", "string", false, "readWrite", "none"),
            multi("emails"),
            multi("groups"),
        ],
        "meta": {"resourceType": "Schema", "location": format!("/scim/v2/Schemas/{USER_SCHEMA}")}
    });
    let group = json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Schema"],
        "id": GROUP_SCHEMA, "name": "Group", "description": "A vault group; its scopes are set in the vault",
        "attributes": [
            attr("displayName", "string", true, "readWrite", "server"),
            attr("externalId", "string", false, "readWrite", "none"),
            multi("members"),
        ],
        "meta": {"resourceType": "Schema", "location": format!("/scim/v2/Schemas/{GROUP_SCHEMA}")}
    });
    Ok(list_response(vec![user, group], None, None))
}
