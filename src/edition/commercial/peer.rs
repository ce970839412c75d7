//! The inbound side of POP-to-POP traffic: `POST /v1/replication/batch`, reachable only with
//! a client certificate signed by `auth.mtls_ca` that names this backup's `primary_pop.id`,
//! and the POP token (constant-time compared). Every row of a batch is checked before any is
//! applied; a refused batch changes nothing and raises one `replication_rejected` alert.

use super::Live;
use super::config::PopRole;
use super::lease::Lease;
use super::replication::Status;
use super::replication::rows::{self, ApplyError};
use super::replication::validate::{self, Refusal};
use super::replication::wire::{Ack, PROTOCOL_VERSION};
use crate::api::{self, ApiError};
use crate::service::{self, Vault};
use crate::store;
use crate::transport::ClientCert;
use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::post;
use serde_json::{Value, json};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};
use subtle::ConstantTimeEq;

/// Raises an operator alert (the edition's `alert_operator`).
pub type AlertFn = Arc<dyn Fn(&str, &str, Value) + Send + Sync>;

#[derive(Clone)]
pub struct PeerState {
    pub live: Arc<RwLock<Arc<Live>>>,
    pub vault: Arc<Vault>,
    pub status: Arc<Status>,
    pub alert: AlertFn,
    /// The epoch this POP holds: pushes from a lower one come from a demoted primary.
    pub lease: Arc<Lease>,
    /// The last refusal alerted, so a primary retrying one bad batch raises one alert.
    pub last_refusal: Arc<Mutex<Option<(String, Instant)>>>,
}

/// Batches are capped well below this by the sender (see `replication::worker`).
const BATCH_BODY_LIMIT: usize = 32 * 1024 * 1024;
/// The same refusal is alerted again only after this long.
const REALERT_AFTER: Duration = Duration::from_secs(600);

pub fn routes(state: PeerState) -> Router {
    let routes = Router::new()
        .route("/v1/replication/batch", post(batch))
        .route_layer(middleware::from_fn_with_state(state.clone(), authenticate));
    api::with_body_limit(routes, BATCH_BODY_LIMIT).with_state(state)
}

/// The names a certificate gives its holder: subject common names and DNS subject
/// alternative names. Empty if the certificate cannot be parsed (rustls verified its chain,
/// not that every extension is readable).
fn certificate_names(der: &[u8]) -> Vec<String> {
    use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};
    let Ok((_, cert)) = X509Certificate::from_der(der) else {
        return Vec::new();
    };
    let mut names: Vec<String> = cert
        .subject()
        .iter_common_name()
        .filter_map(|cn| cn.as_str().ok().map(str::to_owned))
        .collect();
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for n in &san.value.general_names {
            if let GeneralName::DNSName(d) = n {
                names.push((*d).to_owned());
            }
        }
    }
    names
}

/// Checks the peer before any handler runs; failures are logged for the operator.
async fn authenticate(
    State(s): State<PeerState>,
    req: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let live = s.live.read().unwrap_or_else(|p| p.into_inner()).clone();
    let Some(ClientCert(leaf)) = req.extensions().get::<ClientCert>() else {
        tracing::warn!("replication push without a client certificate refused");
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "peer_certificate_required",
            "a client certificate signed by this POP's mtls_ca is required",
        ));
    };
    if let PopRole::Backup { primary } = &live.config.role {
        let names = certificate_names(leaf);
        // DNS names compare without case; so do the ids (they are host-like names).
        if !names.iter().any(|n| n.eq_ignore_ascii_case(&primary.id)) {
            tracing::warn!(
                expected = %primary.id,
                presented = ?names,
                "replication push from a certificate that does not name primary_pop.id refused"
            );
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "peer_not_allowed",
                "the client certificate does not name this backup's primary (primary_pop.id) in its subject CN or a DNS name",
            ));
        }
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

impl PeerState {
    /// Answers 400 for a batch that was refused whole, and alerts the operator once per
    /// distinct refusal (a primary retries the same batch).
    fn refuse(&self, why: &str) -> ApiError {
        tracing::warn!(reason = %why, "replication batch refused; nothing of it was applied");
        let fresh = {
            let mut last = self.last_refusal.lock().unwrap_or_else(|p| p.into_inner());
            let repeat = last
                .as_ref()
                .is_some_and(|(m, at)| m == why && at.elapsed() < REALERT_AFTER);
            if !repeat {
                *last = Some((why.to_owned(), Instant::now()));
            }
            !repeat
        };
        if fresh {
            (self.alert)(
                "replication_rejected",
                &format!(
                    "a replication batch from the primary was refused and nothing of it applied: {why}"
                ),
                json!({ "reason": why }),
            );
        }
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_batch",
            format!("the batch was refused and nothing of it applied: {why}"),
        )
    }
}

/// Checks every row, then applies the batch in one savepoint and answers once it is durable.
async fn batch(State(s): State<PeerState>, body: Bytes) -> Result<Json<Ack>, ApiError> {
    let live = s.live.read().unwrap_or_else(|p| p.into_inner()).clone();
    if live.config.role_name() == "primary" {
        // A POP that is primary takes no pushes: two primaries must not overwrite each other.
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "not_a_backup",
            "this POP is a primary; only a backup accepts replication pushes",
        ));
    }
    let batch = validate::decode(&body).map_err(|e: Refusal| s.refuse(&e.to_string()))?;
    let protocol = batch.protocol.unwrap_or(1);
    if protocol != PROTOCOL_VERSION {
        return Err(s.refuse(&format!(
            "wire protocol version {protocol} is unknown to this POP, which speaks version {PROTOCOL_VERSION}; upgrade this POP first"
        )));
    }
    let held = s.lease.epoch();
    let sent = batch.epoch.unwrap_or(0);
    if sent < held {
        // A primary cut off and replaced keeps pushing until it hears of its demotion: its
        // rows stay owed on it and must not overwrite the newer primary's here.
        tracing::warn!(
            origin = %batch.origin,
            epoch = sent,
            held,
            "replication batch from a lower epoch refused; nothing of it was applied"
        );
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "stale_epoch",
            format!(
                "the batch was sent at epoch {sent}, below this POP's epoch {held}: the sender is no longer the primary; nothing of it applied"
            ),
        ));
    }
    super::replication::audit::check(
        &batch.audit,
        batch.audit_head.as_deref(),
        s.vault.audit_key(),
    )
    .map_err(|e| s.refuse(&e.to_string()))?;
    // Opening every sealed value of a large batch takes a while: off the async workers.
    let vault = s.vault.clone();
    let (batch, sealed) = tokio::task::spawn_blocking(move || {
        let res = validate::check_sealed(&batch, &vault);
        (batch, res)
    })
    .await
    .map_err(|_| ApiError::from(service::Error::from(store::Error::Panicked)))?;
    sealed.map_err(|e| s.refuse(&e.to_string()))?;
    let local = live.config.pop_id.clone();
    let origin = batch.origin.clone();
    let items = batch.items;
    let watermark = batch.watermark;
    let (audit, audit_head) = (batch.audit, batch.audit_head);
    let (applied, audit_seq) = s
        .vault
        .store()
        .write(move |c| {
            let applied = rows::apply(c, &local, &items, watermark)?;
            let audit_seq =
                super::replication::audit::apply(c, &origin, &audit, audit_head.as_deref())?;
            // This POP's own trail says what it took from whom, with the change itself.
            crate::audit::record(
                c,
                &crate::audit::Event::new(
                    crate::audit::Actor::pop(origin.as_str()),
                    "replication.apply",
                )
                .detail("applied", applied.applied.to_string())
                .detail("skipped", applied.skipped.to_string())
                .detail("watermark", applied.watermark.to_string())
                .detail("audit_events", audit.len().to_string()),
            )?;
            Ok::<_, ApplyError>((applied, audit_seq))
        })
        .await
        .map_err(|e| match e {
            ApplyError::Refused(why) => s.refuse(&why),
            ApplyError::Store(e) => ApiError::from(service::Error::from(e)),
        })?;
    if applied.agents_changed {
        // Tokens that work on the primary must work here, before and after a failover.
        s.vault.reload_principals().await.map_err(ApiError::from)?;
    }
    s.status.pushed(store::now_ms(), applied.max_version);
    tracing::debug!(origin = %batch.origin, applied = applied.applied, skipped = applied.skipped, watermark = applied.watermark, "replication batch applied");
    Ok(Json(Ack {
        applied: applied.applied,
        skipped: applied.skipped,
        acked_version: applied.max_version,
        applied_watermark: Some(applied.watermark),
        audit_seq: Some(audit_seq),
    }))
}
