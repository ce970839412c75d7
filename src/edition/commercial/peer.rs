//! The inbound side of POP-to-POP traffic: `POST /v1/replication/batch`, reachable only with
//! the POP token (constant-time compared) and, when mTLS is configured, a client certificate
//! signed by `auth.mtls_ca`.

use super::Live;
use super::replication::Status;
use super::replication::rows;
use super::replication::wire::{Ack, Batch};
use crate::api::{self, ApiError, AppJson};
use crate::service::{self, Vault};
use crate::store;
use crate::transport::ClientCert;
use axum::Json;
use axum::Router;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::post;
use std::sync::{Arc, RwLock};
use subtle::ConstantTimeEq;

#[derive(Clone)]
pub struct PeerState {
    pub live: Arc<RwLock<Arc<Live>>>,
    /// Whether this POP serves TLS with client certificates (then one is required here).
    pub mtls: bool,
    pub vault: Arc<Vault>,
    pub status: Arc<Status>,
}

/// Batches are capped well below this by the sender (see `replication::worker`).
const BATCH_BODY_LIMIT: usize = 32 * 1024 * 1024;

pub fn routes(state: PeerState) -> Router {
    let routes = Router::new()
        .route("/v1/replication/batch", post(batch))
        .route_layer(middleware::from_fn_with_state(state.clone(), authenticate));
    api::with_body_limit(routes, BATCH_BODY_LIMIT).with_state(state)
}

/// Checks the peer before any handler runs; failures are logged for the operator.
async fn authenticate(
    State(s): State<PeerState>,
    req: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let live = s.live.read().unwrap_or_else(|p| p.into_inner()).clone();
    if s.mtls && req.extensions().get::<ClientCert>().is_none() {
        tracing::warn!("replication push without a client certificate refused");
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "peer_certificate_required",
            "a client certificate signed by this POP's mtls_ca is required",
        ));
    }
    let presented = api::bearer_token(req.headers())?.unwrap_or("");
    let expected = live.config.inbound_token.expose();
    if !bool::from(presented.trim().as_bytes().ct_eq(expected.as_bytes())) {
        tracing::warn!("replication push with a wrong POP token refused");
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "invalid_pop_token",
            "the POP token is missing or wrong",
        ));
    }
    Ok(next.run(req).await)
}

/// Applies a batch in one transaction and answers only once it is durable.
async fn batch(
    State(s): State<PeerState>,
    AppJson(batch): AppJson<Batch>,
) -> Result<Json<Ack>, ApiError> {
    let live = s.live.read().unwrap_or_else(|p| p.into_inner()).clone();
    if live.config.role_name() == "primary" {
        // A POP that is primary takes no pushes: two primaries must not overwrite each other.
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "not_a_backup",
            "this POP is a primary; only a backup accepts replication pushes",
        ));
    }
    let local = live.config.pop_id.clone();
    let items = batch.items;
    let applied = s
        .vault
        .store()
        .write(move |c| rows::apply(c, &local, &items))
        .await
        .map_err(|e: store::Error| ApiError::from(service::Error::from(e)))?;
    if applied.agents_changed {
        // Tokens that work on the primary must work here, before and after a failover.
        s.vault.reload_principals().await.map_err(ApiError::from)?;
    }
    s.status.pushed(store::now_ms(), applied.max_version);
    tracing::debug!(origin = %batch.origin, applied = applied.applied, skipped = applied.skipped, "replication batch applied");
    Ok(Json(Ack {
        applied: applied.applied,
        skipped: applied.skipped,
        acked_version: applied.max_version,
    }))
}
