//! `GET /openapi.json`: the OpenAPI 3.1 document of the API, made from the handlers'
//! `#[utoipa::path]` annotations and the DTOs' `ToSchema`.
//!
//! The router is built from the same lists: each module's `routes()` registers its handlers
//! with utoipa-axum's `routes!`, which adds the route to the router and the operation to the
//! document at once, so a route is served exactly when it is documented. To add a route: give
//! its handler a `#[utoipa::path(...)]` and add it to its module's `routes!` (never axum's own
//! `route` method: that would serve it undocumented). [`finish`] then adds what every route
//! shares: the bearer token and the error answers of authentication, bodies and the server.

use super::error::ErrorBody;
use axum::Extension;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use std::sync::Arc;
use utoipa::OpenApi;
use utoipa::openapi::path::Operation;
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{Components, ContentBuilder, Ref, RefOr, ResponseBuilder, Tag};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Clavitor Vault",
        description = "A credential vault for teams and their AI agents. Every error answer is \
            `{\"error\":{\"code\",\"message\"}}`; `code` is stable, `message` is for people."
    ),
    components(schemas(ErrorBody))
)]
struct Base;

/// The security scheme's name in the document.
const BEARER: &str = "bearer";

/// Error answers shared by many routes: (status, component name, description).
const SHARED: &[(&str, &str, &str)] = &[
    (
        "400",
        "BadRequest",
        "`validation_failed`, `invalid_json`, `invalid_authorization`, `refused`",
    ),
    (
        "401",
        "Unauthorized",
        "`missing_token`, `invalid_token`, `token_expired`",
    ),
    (
        "403",
        "Forbidden",
        "`forbidden`, `owner_only`, `ip_not_allowed`",
    ),
    (
        "413",
        "PayloadTooLarge",
        "`payload_too_large`: the body is over the route's limit (1 MiB unless stated)",
    ),
    (
        "415",
        "UnsupportedMediaType",
        "`unsupported_media_type`: not JSON, or compressed",
    ),
    (
        "429",
        "TooManyRequests",
        "`rate_limited`: the agent's rate limit; `Retry-After` says when to retry",
    ),
    (
        "500",
        "Internal",
        "`internal`: the server failed; its log has the request id",
    ),
    (
        "503",
        "Unavailable",
        "`audit_unavailable` (nothing is served while the audit trail cannot be written), \
         `read_only_backup`",
    ),
];

/// Which shared answers an operation can give: by whether it takes a token and a body.
fn shared_for(authenticated: bool, body: bool) -> impl Iterator<Item = &'static str> {
    let mut codes = vec!["500", "503"];
    if authenticated {
        codes.extend(["400", "401", "403", "429"]);
    }
    if body {
        codes.extend(["400", "413", "415"]);
    }
    codes.into_iter()
}

/// Completes the document of the routes: the base (info, the error schema), the bearer
/// scheme, and on every operation the shared error answers it can give. An operation takes
/// the bearer token unless its annotation says `security(())`.
pub fn finish(routes: utoipa::openapi::OpenApi) -> utoipa::openapi::OpenApi {
    let mut doc = Base::openapi();
    doc.merge(routes);
    let components = doc.components.get_or_insert_with(Components::new);
    components.add_security_scheme(
        BEARER,
        SecurityScheme::Http(Http::builder().scheme(HttpAuthScheme::Bearer).build()),
    );
    for (_, name, description) in SHARED {
        let response = ResponseBuilder::new()
            .description(*description)
            .content(
                "application/json",
                ContentBuilder::new()
                    .schema(Some(Ref::from_schema_name("ErrorBody")))
                    .build(),
            )
            .build();
        components
            .responses
            .insert((*name).to_owned(), RefOr::T(response));
    }
    let mut tags = Vec::new();
    for (path, item) in doc.paths.paths.iter_mut() {
        for (method, op) in [
            ("get", &mut item.get),
            ("put", &mut item.put),
            ("post", &mut item.post),
            ("delete", &mut item.delete),
            ("patch", &mut item.patch),
        ] {
            let Some(op) = op else { continue };
            op.operation_id = Some(operation_id(method, path));
            complete(op);
            tags.extend(op.tags.iter().flatten().cloned());
        }
    }
    tags.sort();
    tags.dedup();
    doc.tags = Some(tags.into_iter().map(Tag::new).collect());
    doc
}

/// A unique, stable id for client generators, from the method and the path (handler names
/// repeat across modules): `GET /v1/entries/{id}/fields/{name}` is
/// `get_entries_by_id_fields_by_name`.
fn operation_id(method: &str, path: &str) -> String {
    let mut id = method.to_owned();
    for segment in path.split('/').filter(|s| !s.is_empty() && *s != "v1") {
        id.push('_');
        match segment.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
            Some(param) => {
                id.push_str("by_");
                id.push_str(param);
            }
            None => id.push_str(&segment.replace(['.', '-'], "_")),
        }
    }
    id
}

fn complete(op: &mut Operation) {
    let authenticated = op.security.is_none();
    if authenticated {
        op.security = Some(vec![SecurityRequirement::new(BEARER, Vec::<String>::new())]);
    } else {
        // `security(())` reads as "a token is optional"; these routes take none.
        op.security = Some(Vec::new());
    }
    // OpenAPI requires a description on every response; a handler's own may say no more
    // than its status.
    for (code, response) in op.responses.responses.iter_mut() {
        if let RefOr::T(r) = response
            && r.description.is_empty()
        {
            r.description = code
                .parse::<StatusCode>()
                .ok()
                .and_then(|c| c.canonical_reason())
                .unwrap_or("An answer")
                .to_owned();
        }
    }
    for code in shared_for(authenticated, op.request_body.is_some()) {
        let (_, name, _) = SHARED.iter().find(|(c, _, _)| *c == code).expect("listed");
        op.responses
            .responses
            .entry(code.to_owned())
            .or_insert_with(|| RefOr::Ref(Ref::from_response_name(*name)));
    }
}

/// The document, serialised once when the router is built.
#[derive(Clone)]
pub struct Document(Arc<str>);

impl Document {
    pub fn new(doc: &utoipa::openapi::OpenApi) -> Self {
        let json = serde_json::to_string(doc).expect("an OpenApi value serialises");
        Self(json.into())
    }
}

/// This document: every route of the API, its parameters, bodies, answers and errors
/// (no token needed: it holds no data).
#[utoipa::path(get, path = "/openapi.json", tag = "operate", security(()),
    responses((status = OK, description = "An OpenAPI 3.1 document", content_type = "application/json",
        body = serde_json::Value)))]
pub async fn document(Extension(doc): Extension<Document>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        doc.0.to_string(),
    )
        .into_response()
}
