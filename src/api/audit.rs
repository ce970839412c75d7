//! `/v1/audit`: the trail, page by page (`?after=CURSOR&limit=N`, optionally `&actor=ID`,
//! `&action=NAME`), and `/v1/audit/head`, the signed head to keep elsewhere. Also the gate
//! every request passes: while the trail cannot be written, nothing is served.

use super::AppState;
use super::dto::timestamp;
use super::error::ApiError;
use super::extract::Auth;
use crate::audit::hex;
use crate::service::{self, Vault};
use crate::store::audit::{Filter, StoredEvent};
use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::Arc;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// Events per page unless `limit` says otherwise.
const DEFAULT_LIMIT: usize = 100;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list))
        .routes(routes!(head))
}

/// Refuses every request (but `/metrics`) while the audit trail cannot be written, and turns
/// a request that failed because the trail just stopped into the same answer: 503
/// `audit_unavailable`, from the moment that is known.
pub async fn gate(State(vault): State<Arc<Vault>>, req: Request, next: Next) -> Response {
    if req.uri().path() == "/metrics" {
        return next.run(req).await;
    }
    if !vault.audit_available() {
        return ApiError::from(service::Error::AuditUnavailable).into_response();
    }
    let res = next.run(req).await;
    if res.status() == StatusCode::INTERNAL_SERVER_ERROR && !vault.audit_available() {
        return ApiError::from(service::Error::AuditUnavailable).into_response();
    }
    res
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct AuditQuery {
    /// The `next` of the previous page; absent for the first.
    after: Option<String>,
    /// Events per page, 1 to 1000 (default 100).
    #[param(value_type = Option<u32>, minimum = 1)]
    limit: Option<String>,
    /// Only events by this principal id.
    actor: Option<String>,
    /// Only events of this action, e.g. `field.read`.
    action: Option<String>,
}

#[derive(Serialize, ToSchema)]
struct ActorOut {
    kind: String,
    id: Option<String>,
}

#[derive(Serialize, ToSchema)]
struct EventOut {
    seq: i64,
    time: String,
    actor: ActorOut,
    action: String,
    target: Option<String>,
    outcome: String,
    ip: Option<String>,
    request_id: Option<String>,
    hash: String,
    details: BTreeMap<String, String>,
}

impl From<StoredEvent> for EventOut {
    fn from(e: StoredEvent) -> Self {
        let d = e.data;
        Self {
            seq: e.seq,
            time: timestamp(e.time),
            actor: ActorOut {
                kind: d.actor_kind.into_owned(),
                id: d.actor_id,
            },
            action: d.action.into_owned(),
            target: d.target,
            outcome: d.outcome.into_owned(),
            ip: d.ip,
            request_id: d.request_id,
            hash: hex(&e.hash),
            details: d.details.into_iter().collect(),
        }
    }
}

#[derive(Serialize, ToSchema)]
struct Page {
    events: Vec<EventOut>,
    /// Give it back as `after` for the events that follow (also when there were none yet).
    next: String,
}

fn bad(message: String) -> ApiError {
    ApiError::bad_request(message)
}

/// The audit trail, page by page (owner and admins).
#[utoipa::path(get, path = "/v1/audit", tag = "audit", params(AuditQuery),
    responses((status = OK, body = Page)))]
async fn list(
    State(s): State<AppState>,
    Auth(caller): Auth,
    query: Result<Query<AuditQuery>, QueryRejection>,
) -> Result<Json<Page>, ApiError> {
    s.vault.may_read_audit(&caller)?;
    let Query(q) = query.map_err(|e| {
        bad(format!(
            "{}; this endpoint takes after=CURSOR, limit=N, actor=ID and action=NAME",
            e.body_text()
        ))
    })?;
    let after = match q.after.as_deref() {
        None | Some("") => 0,
        Some(c) => c.parse::<i64>().ok().filter(|n| *n >= 0).ok_or_else(|| {
            bad(format!(
                "after={c:?} is not a cursor; pass the \"next\" of the previous page (or nothing, for the first)"
            ))
        })?,
    };
    let limit = match q.limit.as_deref() {
        None => DEFAULT_LIMIT,
        Some(l) => l
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=service::AUDIT_MAX_PAGE).contains(n))
            .ok_or_else(|| {
                bad(format!(
                    "limit={l:?} must be a number from 1 to {}",
                    service::AUDIT_MAX_PAGE
                ))
            })?,
    };
    let filter = Filter {
        actor_id: q.actor.filter(|a| !a.is_empty()),
        action: q.action.filter(|a| !a.is_empty()),
    };
    let page = s.vault.audit_page(&caller, after, limit, filter).await?;
    Ok(Json(Page {
        events: page.events.into_iter().map(EventOut::from).collect(),
        next: page.next.to_string(),
    }))
}

#[derive(Serialize, ToSchema)]
struct HeadOut {
    /// `null` while the trail is empty.
    head: Option<String>,
}

/// The trail's signed head, to keep elsewhere and compare later (owner and admins).
#[utoipa::path(get, path = "/v1/audit/head", tag = "audit", responses((status = OK, body = HeadOut)))]
async fn head(State(s): State<AppState>, Auth(caller): Auth) -> Result<Json<HeadOut>, ApiError> {
    Ok(Json(HeadOut {
        head: s.vault.audit_head(&caller).await?,
    }))
}
