//! `GET /v1/changes?since=VERSION&wait=SECONDS`: the entries the caller can see that changed
//! after `since`, as a long poll (see `service::changes`). Without `since`: the current
//! version, at once. `wait` is 0 to 25 (default 0).

use super::AppState;
use super::error::ApiError;
use super::extract::Auth;
use crate::service::changes::MAX_WAIT;
use axum::Json;
use axum::extract::{RawQuery, State};
use serde::Serialize;
use std::time::Duration;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(changes))
}

#[derive(Serialize, ToSchema)]
struct ChangesOut {
    version: i64,
    entries: Vec<String>,
    reset: bool,
}

/// The ids of the visible entries changed after `since`, as a long poll.
#[utoipa::path(get, path = "/v1/changes", tag = "entries",
    params(("since" = Option<i64>, Query, description = "A `version` from an earlier answer; absent: the current version, at once"),
        ("wait" = Option<u32>, Query, maximum = 25, description = "Seconds to wait for a change, 0 to 25 (default 0)")),
    responses((status = OK, body = ChangesOut)))]
async fn changes(
    State(s): State<AppState>,
    Auth(caller): Auth,
    RawQuery(query): RawQuery,
) -> Result<Json<ChangesOut>, ApiError> {
    let mut since = None;
    let mut wait = Duration::ZERO;
    for (k, v) in url::form_urlencoded::parse(query.unwrap_or_default().as_bytes()) {
        match &*k {
            "since" => {
                since = Some(v.parse::<i64>().map_err(|_| {
                    ApiError::bad_request(format!("since={v:?}: expected a version number"))
                })?);
            }
            "wait" => {
                let secs = v.parse::<u64>().ok().filter(|s| *s <= MAX_WAIT.as_secs());
                wait = Duration::from_secs(secs.ok_or_else(|| {
                    ApiError::bad_request(format!(
                        "wait={v:?}: expected whole seconds from 0 to {}",
                        MAX_WAIT.as_secs()
                    ))
                })?);
            }
            other => {
                let other: String = other.chars().take(40).collect();
                return Err(ApiError::bad_request(format!(
                    "unknown query parameter {other:?}: this endpoint takes since and wait"
                )));
            }
        }
    }
    let c = s.vault.changes(&caller, since, wait).await?;
    Ok(Json(ChangesOut {
        version: c.version,
        entries: c.entries,
        reset: c.reset,
    }))
}
