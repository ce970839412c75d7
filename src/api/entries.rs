//! `/v1/entries`: CRUD on entries, and the one endpoint that returns a value.

use super::AppState;
use super::dto::{EntryIn, EntryList, EntryOut, FieldOut, Written};
use super::error::{ApiError, ErrorBody};
use super::extract::{AppJson, AppPath, Auth};
use crate::vault::{EntryId, check_field_name};
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list, create))
        .routes(routes!(show, replace, remove))
        .routes(routes!(read_field))
}

fn entry_id(raw: &str) -> Result<EntryId, ApiError> {
    EntryId::parse(raw).map_err(|e| ApiError::bad_request(e.to_string()))
}

/// Creates an entry; its secret fields are sealed by tier and scope.
#[utoipa::path(post, path = "/v1/entries", tag = "entries", request_body = EntryIn,
    responses((status = CREATED, body = Written)))]
async fn create(
    State(s): State<AppState>,
    Auth(caller): Auth,
    AppJson(body): AppJson<EntryIn>,
) -> Result<Response, ApiError> {
    let draft = body.into_draft().map_err(crate::service::Error::from)?;
    let (id, w) = s.vault.create_entry(&caller, draft).await?;
    let out = Written {
        id: id.to_string(),
        version: w.version,
        updated_at: super::dto::timestamp(w.at),
    };
    Ok((StatusCode::CREATED, Json(out)).into_response())
}

/// The entries the caller can see: titles and field metadata, never values.
#[utoipa::path(get, path = "/v1/entries", tag = "entries",
    responses((status = OK, body = EntryList)))]
async fn list(State(s): State<AppState>, Auth(caller): Auth) -> Result<Json<EntryList>, ApiError> {
    let entries = s.vault.list_entries(&caller).await?;
    Ok(Json(EntryList {
        entries: entries.into_iter().map(EntryOut::from).collect(),
    }))
}

/// One entry's metadata (no values).
#[utoipa::path(get, path = "/v1/entries/{id}", tag = "entries", params(("id" = String, Path, description = "The entry's id")),
    responses((status = OK, body = EntryOut), (status = NOT_FOUND, body = ErrorBody, description = "`entry_not_found`")))]
async fn show(
    State(s): State<AppState>,
    Auth(caller): Auth,
    AppPath(id): AppPath<String>,
) -> Result<Json<EntryOut>, ApiError> {
    let view = s.vault.get_entry(&caller, entry_id(&id)?).await?;
    Ok(Json(view.into()))
}

/// Replaces an entry; a field sent without a value policy keeps its own.
#[utoipa::path(put, path = "/v1/entries/{id}", tag = "entries", params(("id" = String, Path, description = "The entry's id")), request_body = EntryIn,
    responses((status = OK, body = Written), (status = NOT_FOUND, body = ErrorBody, description = "`entry_not_found`"),
        (status = CONFLICT, body = ErrorBody, description = "`conflict`, `scope_key_not_held`")))]
async fn replace(
    State(s): State<AppState>,
    Auth(caller): Auth,
    AppPath(id): AppPath<String>,
    AppJson(body): AppJson<EntryIn>,
) -> Result<Json<Written>, ApiError> {
    let id = entry_id(&id)?;
    let draft = body.into_draft().map_err(crate::service::Error::from)?;
    let w = s.vault.replace_entry(&caller, id.clone(), draft).await?;
    Ok(Json(Written {
        id: id.to_string(),
        version: w.version,
        updated_at: super::dto::timestamp(w.at),
    }))
}

/// Deletes an entry.
#[utoipa::path(delete, path = "/v1/entries/{id}", tag = "entries", params(("id" = String, Path, description = "The entry's id")),
    responses((status = NO_CONTENT, description = "Deleted"), (status = NOT_FOUND, body = ErrorBody, description = "`entry_not_found`")))]
async fn remove(
    State(s): State<AppState>,
    Auth(caller): Auth,
    AppPath(id): AppPath<String>,
) -> Result<StatusCode, ApiError> {
    s.vault.delete_entry(&caller, entry_id(&id)?).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The one request that returns a value: one field of one entry (audited, `Cache-Control: no-store`).
#[utoipa::path(get, path = "/v1/entries/{id}/fields/{name}", tag = "entries",
    params(("id" = String, Path, description = "The entry's id"), ("name" = String, Path, description = "The field's name")),
    responses((status = OK, body = FieldOut),
        (status = FORBIDDEN, body = ErrorBody, description = "`use_only` (the field may only be used through the proxy), `forbidden`"),
        (status = NOT_FOUND, body = ErrorBody, description = "`entry_not_found`, `field_not_found`"),
        (status = CONFLICT, body = ErrorBody, description = "`scope_key_not_held`")))]
async fn read_field(
    State(s): State<AppState>,
    Auth(caller): Auth,
    AppPath((id, name)): AppPath<(String, String)>,
) -> Result<Response, ApiError> {
    let id = entry_id(&id)?;
    check_field_name(&name).map_err(|e| ApiError::bad_request(e.to_string()))?;
    let f = s.vault.read_field(&caller, id, name).await?;
    let body = FieldOut {
        name: &f.name,
        value: &f.value,
        tier: f.tier.as_str(),
    };
    // Serialise straight from the zeroizing buffer; no other copy of the value is made here.
    let mut res = Json(body).into_response();
    res.headers_mut().insert(
        axum::http::header::CACHE_CONTROL,
        axum::http::HeaderValue::from_static("no-store"),
    );
    Ok(res)
}
