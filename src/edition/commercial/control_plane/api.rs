//! The control plane's JSON API: what POPs send (`/v1/heartbeat`, `/v1/telemetry`,
//! `/v1/alerts`, each with its own POP token) and what operators ask (`/v1/pops`,
//! `/v1/alerts`, acknowledgement, promotion; admin token). API boundary: only this module and
//! the dashboard know HTTP; errors use the one shape `{"error":{"code","message"}}`.

use super::core::{self, ControlPlane, FailoverView, PopView, now_ms};
use super::settings::pop_for_token;
use super::store::{AlertFilter, AlertRow, NewAlert, Report, Sample};
use crate::api::{ApiError, AppJson, timestamp};
use crate::crypto::Token;
use axum::extract::{FromRequestParts, Path, Query, State};
use axum::http::StatusCode;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Instant;

pub type AppState = Arc<ControlPlane>;

/// Heartbeat samples returned with one POP, at most.
const HISTORY_POINTS: usize = 500;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/heartbeat", post(heartbeat))
        .route("/v1/telemetry", post(telemetry))
        .route("/v1/alerts", post(alert).get(list_alerts))
        .route("/v1/alerts/{id}/ack", post(ack))
        .route("/v1/pops", get(list_pops))
        .route("/v1/pops/{id}", get(one_pop))
        .route("/v1/pops/{id}/promote", post(promote))
        .route("/healthz", get(healthz))
}

impl From<core::Error> for ApiError {
    fn from(e: core::Error) -> Self {
        use super::failover::PromoteError as P;
        use core::Error as E;
        match &e {
            E::UnknownPop(_) | E::Promote(P::UnknownPop(_)) => {
                ApiError::new(StatusCode::NOT_FOUND, "pop_not_found", e.to_string())
            }
            E::UnknownAlert(_) => {
                ApiError::new(StatusCode::NOT_FOUND, "alert_not_found", e.to_string())
            }
            E::Promote(P::AlreadyPrimary(_)) => {
                ApiError::new(StatusCode::CONFLICT, "already_primary", e.to_string())
            }
            E::Promote(P::InProgress(_)) => {
                ApiError::new(StatusCode::CONFLICT, "promotion_in_progress", e.to_string())
            }
            E::Store(_) | E::Worker => {
                tracing::error!(error = %e, "control-plane request failed");
                ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "internal",
                    "the control plane could not record this; see its log",
                )
            }
        }
    }
}

fn bearer(parts: &Parts) -> Option<Token> {
    parts
        .headers
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(Token::from_text)
}

fn missing_token() -> ApiError {
    ApiError::new(
        StatusCode::UNAUTHORIZED,
        "missing_token",
        "send the token as Authorization: Bearer TOKEN",
    )
}

/// A request from a configured POP: the id its token belongs to.
pub struct PopCaller(pub String);

impl FromRequestParts<AppState> for PopCaller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, cp: &AppState) -> Result<Self, ApiError> {
        let token = bearer(parts).ok_or_else(missing_token)?;
        let config = cp.config();
        match pop_for_token(&config.pops, &token) {
            Some(p) => Ok(PopCaller(p.id.clone())),
            None => Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                "invalid_token",
                "this token belongs to no configured POP",
            )),
        }
    }
}

/// A request carrying the admin token.
pub struct Admin;

impl FromRequestParts<AppState> for Admin {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, cp: &AppState) -> Result<Self, ApiError> {
        let token = bearer(parts).ok_or_else(missing_token)?;
        if cp.config().admin_token.ct_eq(&token.hash()) {
            Ok(Admin)
        } else {
            Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                "invalid_token",
                "this is not the admin token",
            ))
        }
    }
}

/// The fields every POP report shares; anything else is ignored (POPs may be newer).
#[derive(Deserialize)]
struct PopBody {
    pop_id: String,
    region: Option<String>,
    role: Option<String>,
    epoch: Option<i64>,
    version: Option<String>,
    uptime_seconds: Option<i64>,
    replication_backlog: Option<i64>,
    replication: Option<Value>,
}

fn same_pop(caller: &PopCaller, claimed: &str) -> Result<(), ApiError> {
    if caller.0 == claimed {
        Ok(())
    } else {
        Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "pop_mismatch",
            format!(
                "this token belongs to POP {:?}, not to {claimed:?}",
                caller.0
            ),
        ))
    }
}

fn report(b: PopBody) -> Report {
    let mut replication = b.replication.unwrap_or(Value::Null);
    if replication.get("backlog").is_none()
        && let (Some(obj), Some(n)) = (replication.as_object_mut(), b.replication_backlog)
    {
        obj.insert("backlog".into(), json!(n));
    }
    Report {
        region: b.region,
        version: b.version,
        uptime_seconds: b.uptime_seconds,
        role: b.role,
        epoch: b.epoch,
        replication,
    }
}

async fn heartbeat(
    State(cp): State<AppState>,
    caller: PopCaller,
    AppJson(body): AppJson<PopBody>,
) -> Result<Json<Value>, ApiError> {
    same_pop(&caller, &body.pop_id)?;
    let pop = caller.0;
    let now = Instant::now();
    let interval_ms = cp.config().rules.interval.as_millis() as u64;
    let answer = cp
        .run(move |core, _| core.heartbeat(&pop, report(body), now))
        .await?;
    Ok(Json(json!({
        "role": answer.role.as_str(),
        "epoch": answer.epoch,
        "lease_ms": answer.lease.as_millis() as u64,
        "interval_ms": interval_ms,
    })))
}

async fn telemetry(
    State(cp): State<AppState>,
    caller: PopCaller,
    AppJson(body): AppJson<Value>,
) -> Result<Json<Value>, ApiError> {
    let claimed = body.get("pop_id").and_then(Value::as_str).unwrap_or("");
    same_pop(&caller, claimed)?;
    let pop = caller.0;
    cp.run(move |core, _| core.telemetry(&pop, &body)).await?;
    Ok(Json(json!({"ok": true})))
}

#[derive(Deserialize)]
struct AlertBody {
    pop_id: String,
    #[serde(rename = "type")]
    kind: String,
    message: String,
    #[serde(default)]
    details: Value,
    timestamp: Option<String>,
}

async fn alert(
    State(cp): State<AppState>,
    caller: PopCaller,
    AppJson(body): AppJson<AlertBody>,
) -> Result<Json<Value>, ApiError> {
    same_pop(&caller, &body.pop_id)?;
    if body.kind.is_empty() || body.kind.len() > 100 {
        return Err(ApiError::bad_request("type must be 1-100 characters"));
    }
    let alert = NewAlert {
        pop_id: caller.0,
        kind: body.kind,
        message: body.message,
        details: body.details,
        pop_time: body.timestamp,
    };
    tracing::warn!(target: "clavitor::alert", alert = %alert.kind, pop = %alert.pop_id, "alert received");
    let id = cp.run(move |core, _| core.alert(alert)).await?;
    Ok(Json(json!({"id": id})))
}

pub fn alert_json(a: &AlertRow) -> Value {
    json!({
        "id": a.id,
        "pop_id": a.pop_id,
        "type": a.kind,
        "message": a.message,
        "details": a.details,
        "timestamp": a.pop_time,
        "received_at": timestamp(a.received_ms),
        "acked": a.acked_ms.is_some(),
        "acked_at": a.acked_ms.map(timestamp),
    })
}

pub fn pop_json(p: &PopView) -> Value {
    let s = &p.state;
    let r = &p.replication;
    json!({
        "id": p.id,
        "region": p.region,
        "role": s.role.as_str(),
        "epoch": s.epoch,
        "reported_role": p.reported_role,
        "reported_epoch": p.reported_epoch,
        "version": p.version,
        "uptime_seconds": p.uptime_seconds,
        "last_heartbeat": p.last_heartbeat_ms.map(timestamp),
        "stale": s.stale,
        "promoting": s.promoting,
        "demoting": s.demoting,
        "lease_ms_left": s.lease_left.map(|d| d.as_millis() as u64),
        "replication": {
            "backlog": r.backlog,
            "lag_ms": {"p50": r.lag_p50_ms, "p99": r.lag_p99_ms},
            "committed_version": r.committed,
            "acked_watermark": r.acked_watermark,
            "applied_watermark": r.applied_watermark,
            "behind_versions": s.behind,
        },
        "tarpit_held": p.tarpit_held,
        "entries": p.entries,
        "open_alerts": p.open_alerts,
    })
}

pub fn failover_json(f: &FailoverView) -> Value {
    json!({
        "mode": f.mode.as_str(),
        "epoch": f.epoch,
        "primary": f.primary,
        "promotion": f.promotion.as_ref().map(|p| json!({"from": p.from, "to": p.to, "epoch": p.epoch})),
        "lease_ms": f.lease_ms,
        "interval_ms": f.interval_ms,
        "missed_heartbeats": f.missed_heartbeats,
    })
}

fn sample_json(s: &Sample) -> Value {
    json!({
        "at": timestamp(s.at_ms),
        "backlog": s.backlog,
        "lag_p50_ms": s.lag_p50_ms,
        "lag_p99_ms": s.lag_p99_ms,
        "committed_version": s.committed,
        "watermark": s.watermark,
        "behind_versions": s.behind,
    })
}

/// Every `n`th sample so that at most `max` remain (the newest always kept).
pub fn thin(samples: Vec<Sample>, max: usize) -> Vec<Sample> {
    if samples.len() <= max || max == 0 {
        return samples;
    }
    let step = samples.len().div_ceil(max);
    let last = samples.len() - 1;
    samples
        .into_iter()
        .enumerate()
        .filter(|(i, _)| (last - i).is_multiple_of(step))
        .map(|(_, s)| s)
        .collect()
}

async fn list_pops(State(cp): State<AppState>, _: Admin) -> Result<Json<Value>, ApiError> {
    let now = Instant::now();
    let (pops, failover) = cp
        .run(move |core, config| {
            core.tick(config, now)?;
            Ok((core.pops(config, now)?, core.failover(config)))
        })
        .await?;
    Ok(Json(json!({
        "pops": pops.iter().map(pop_json).collect::<Vec<_>>(),
        "failover": failover_json(&failover),
    })))
}

async fn one_pop(
    State(cp): State<AppState>,
    _: Admin,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let now = Instant::now();
    let (pop, history, alerts) = cp
        .run(move |core, config| {
            core.tick(config, now)?;
            let pop = core
                .pops(config, now)?
                .into_iter()
                .find(|p| p.id == id)
                .ok_or_else(|| core::Error::UnknownPop(id.clone()))?;
            let history = core.samples(&id, now_ms() - super::store::HISTORY_MS)?;
            let alerts = core.alerts(&AlertFilter {
                pop: Some(id),
                limit: 50,
                ..AlertFilter::default()
            })?;
            Ok((pop, history, alerts))
        })
        .await?;
    let mut body = pop_json(&pop);
    body["history"] = thin(history, HISTORY_POINTS)
        .iter()
        .map(sample_json)
        .collect::<Vec<_>>()
        .into();
    body["alerts"] = alerts.iter().map(alert_json).collect::<Vec<_>>().into();
    Ok(Json(body))
}

#[derive(Deserialize)]
struct AlertQuery {
    pop: Option<String>,
    #[serde(rename = "type")]
    kind: Option<String>,
    open: Option<bool>,
    limit: Option<u32>,
}

async fn list_alerts(
    State(cp): State<AppState>,
    _: Admin,
    query: Result<Query<AlertQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let Query(q) = query.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let filter = AlertFilter {
        pop: q.pop.filter(|p| !p.is_empty()),
        kind: q.kind.filter(|k| !k.is_empty()),
        open_only: q.open.unwrap_or(false),
        limit: q.limit.unwrap_or(500).clamp(1, 5000),
    };
    let alerts = cp.run(move |core, _| core.alerts(&filter)).await?;
    Ok(Json(json!({
        "alerts": alerts.iter().map(alert_json).collect::<Vec<_>>(),
    })))
}

fn alert_id(raw: &str) -> Result<i64, ApiError> {
    raw.parse().map_err(|_| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "alert_not_found",
            format!("no alert {raw:?}"),
        )
    })
}

async fn ack(
    State(cp): State<AppState>,
    _: Admin,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let id = alert_id(&id)?;
    let a = cp.run(move |core, _| core.ack(id)).await?;
    Ok(Json(alert_json(&a)))
}

async fn promote(
    State(cp): State<AppState>,
    _: Admin,
    Path(id): Path<String>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let now = Instant::now();
    let failover = cp
        .run(move |core, config| {
            core.promote(&id, now)?;
            Ok(core.failover(config))
        })
        .await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({ "failover": failover_json(&failover) })),
    ))
}

async fn healthz() -> Json<Value> {
    Json(json!({"status": "ok", "service": "control-plane"}))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(at_ms: i64) -> Sample {
        Sample {
            at_ms,
            ..Sample::default()
        }
    }

    #[test]
    fn thinning_keeps_the_newest_and_bounds_the_count() {
        let all: Vec<_> = (0..1000).map(s).collect();
        let t = thin(all, 100);
        assert!(t.len() <= 100, "{}", t.len());
        assert_eq!(t.last().map(|s| s.at_ms), Some(999));
        assert_eq!(thin((0..5).map(s).collect(), 100).len(), 5);
    }
}
