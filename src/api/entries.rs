//! `/v1/entries`: CRUD on entries, and the one endpoint that returns a value.

use super::AppState;
use super::dto::{EntryIn, EntryList, EntryOut, FieldOut, Written};
use super::error::ApiError;
use super::extract::{AppJson, AppPath, Auth};
use crate::vault::{EntryId, check_field_name};
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/entries", get(list).post(create))
        .route("/v1/entries/{id}", get(show).put(replace).delete(remove))
        .route("/v1/entries/{id}/fields/{name}", get(read_field))
}

fn entry_id(raw: &str) -> Result<EntryId, ApiError> {
    EntryId::parse(raw).map_err(|e| ApiError::bad_request(e.to_string()))
}

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

async fn list(State(s): State<AppState>, Auth(caller): Auth) -> Result<Json<EntryList>, ApiError> {
    let entries = s.vault.list_entries(&caller).await?;
    Ok(Json(EntryList {
        entries: entries.into_iter().map(EntryOut::from).collect(),
    }))
}

async fn show(
    State(s): State<AppState>,
    Auth(caller): Auth,
    AppPath(id): AppPath<String>,
) -> Result<Json<EntryOut>, ApiError> {
    let view = s.vault.get_entry(&caller, entry_id(&id)?).await?;
    Ok(Json(view.into()))
}

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

async fn remove(
    State(s): State<AppState>,
    Auth(caller): Auth,
    AppPath(id): AppPath<String>,
) -> Result<StatusCode, ApiError> {
    s.vault.delete_entry(&caller, entry_id(&id)?).await?;
    Ok(StatusCode::NO_CONTENT)
}

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
