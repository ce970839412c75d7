//! `POST /v1/entries/bulk`: many entries in one transaction (what `clavitor import` sends).
//!
//! The body is `{"entries":[<a POST /v1/entries body>, ...]}`, up to [`BULK_BODY_LIMIT`]
//! bytes (its own limit, larger than the 1 MiB of other requests) and [`MAX_BULK_ENTRIES`]
//! entries. Who may call it is asked before the body is read; the body is read with the limit
//! (a larger one stops at the limit, 413); every entry is validated before anything is
//! written; then all are written in one store write, so an error anywhere keeps none.

use super::AppState;
use super::dto::EntryIn;
use super::error::{ApiError, ErrorBody};
use super::extract::Auth;
use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{DefaultBodyLimit, FromRequest, Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::de::{IgnoredAny, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::value::RawValue;
use std::fmt;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// Largest bulk body: 64 MiB holds 10,000 typical entries about twenty times over.
pub const BULK_BODY_LIMIT: usize = 64 * 1024 * 1024;
/// Most entries in one bulk request; bounds the memory a body of tiny entries can take, and
/// the time one transaction holds the writer.
pub const MAX_BULK_ENTRIES: usize = 50_000;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_many))
        .layer(DefaultBodyLimit::max(BULK_BODY_LIMIT))
}

/// The entries, each still raw JSON (parsed one by one, so an error names its entry), and
/// whether there were more than [`MAX_BULK_ENTRIES`].
struct Capped {
    entries: Vec<Box<RawValue>>,
    over: bool,
}

impl<'de> Deserialize<'de> for Capped {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Capped;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a list of entries")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Capped, A::Error> {
                let mut entries = Vec::new();
                while let Some(e) = seq.next_element::<Box<RawValue>>()? {
                    if entries.len() == MAX_BULK_ENTRIES {
                        // Read past the rest without keeping it.
                        while seq.next_element::<IgnoredAny>()?.is_some() {}
                        return Ok(Capped {
                            entries: Vec::new(),
                            over: true,
                        });
                    }
                    entries.push(e);
                }
                Ok(Capped {
                    entries,
                    over: false,
                })
            }
        }
        d.deserialize_seq(V)
    }
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct BulkIn {
    /// 1 to 50,000 entries, each a `POST /v1/entries` body.
    #[schema(value_type = Vec<EntryIn>, min_items = 1, max_items = 50000)]
    entries: Capped,
}

#[derive(Serialize, ToSchema)]
struct BulkOut {
    /// The new entries' ids, in the order sent.
    ids: Vec<String>,
}

fn rejection(r: JsonRejection) -> ApiError {
    if r.status() == StatusCode::PAYLOAD_TOO_LARGE {
        return ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            format!(
                "the body is larger than {BULK_BODY_LIMIT} bytes (64 MiB), the limit of a bulk request; send fewer entries per request"
            ),
        );
    }
    r.into()
}

/// Creates many entries in one transaction: all or none (what `clavitor import` sends).
#[utoipa::path(post, path = "/v1/entries/bulk", tag = "entries", request_body = BulkIn,
    responses((status = CREATED, body = BulkOut),
        (status = PAYLOAD_TOO_LARGE, body = ErrorBody, description = "`payload_too_large`: over 64 MiB or 50,000 entries")))]
async fn create_many(
    State(s): State<AppState>,
    Auth(caller): Auth,
    req: Request,
) -> Result<Response, ApiError> {
    s.vault.may_create_entries(&caller)?;
    let body = match Json::<BulkIn>::from_request(req, &s).await {
        Ok(Json(b)) => b,
        Err(r) => return Err(rejection(r)),
    };
    if body.entries.over {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            format!(
                "a bulk request takes at most {MAX_BULK_ENTRIES} entries; send them in several requests"
            ),
        ));
    }
    if body.entries.entries.is_empty() {
        return Err(ApiError::bad_request(
            "\"entries\" is empty; nothing to create",
        ));
    }
    let mut drafts = Vec::with_capacity(body.entries.entries.len());
    for (i, raw) in body.entries.entries.iter().enumerate() {
        let entry: EntryIn = serde_json::from_str(raw.get()).map_err(|e| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_json",
                format!("entries[{i}]: the JSON does not match what this endpoint takes: {e}"),
            )
        })?;
        let draft = entry
            .into_draft()
            .map_err(|e| ApiError::bad_request(format!("entries[{i}]: {e}")))?;
        drafts.push(draft);
    }
    let created = s.vault.create_entries(&caller, drafts).await?;
    let ids = created.into_iter().map(|(id, _)| id.to_string()).collect();
    Ok((StatusCode::CREATED, Json(BulkOut { ids })).into_response())
}
