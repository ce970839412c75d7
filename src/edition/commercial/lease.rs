//! The POP's half of failover: the role and epoch the control plane granted (kept in the
//! `control_grant` table, written before the POP acts on them) and the primary's lease.
//!
//! A primary holds a lease renewed by each answered heartbeat, timed on its own monotonic
//! clock from when it *sent* that heartbeat: the control plane counts the same lease from when
//! it *received* it (and adds a margin), so the POP's lease always ends first, whatever the two
//! clocks say. A client write is acknowledged only if the lease is live once it has committed;
//! otherwise the answer is 503 `primary_lease_expired` and the row stays owed on this POP.

use crate::api::ApiError;
use crate::store;
use axum::extract::{Request, State};
use axum::http::{Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use rusqlite::{Connection, OptionalExtension};
use serde_json::{Value, json};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// What the control plane last granted this POP.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Grant {
    pub primary: bool,
    pub epoch: u64,
}

impl Grant {
    pub fn role_name(self) -> &'static str {
        if self.primary { "primary" } else { "backup" }
    }
}

/// The saved grant, if the control plane ever granted one.
pub fn load_grant(c: &Connection) -> Result<Option<Grant>, store::Error> {
    let row: Option<(String, i64)> = c
        .query_row(
            "SELECT role, epoch FROM control_grant WHERE id = 1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?;
    Ok(row.map(|(role, epoch)| Grant {
        primary: role == "primary",
        epoch: u64::try_from(epoch).unwrap_or(0),
    }))
}

pub fn save_grant(c: &Connection, g: Grant) -> Result<(), store::Error> {
    c.execute(
        "INSERT INTO control_grant (id, role, epoch, granted_at) VALUES (1, ?1, ?2, ?3)
         ON CONFLICT (id) DO UPDATE SET role = excluded.role, epoch = excluded.epoch,
             granted_at = excluded.granted_at",
        rusqlite::params![
            g.role_name(),
            i64::try_from(g.epoch).unwrap_or(i64::MAX),
            store::now_ms()
        ],
    )?;
    Ok(())
}

/// A heartbeat answer: `{"role","epoch","lease_ms","interval_ms"}`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Answer {
    pub grant: Grant,
    /// Zero: the control plane grants no lease (manual mode, `lease_seconds: 0`).
    pub lease: Duration,
    pub interval: Option<Duration>,
}

impl Answer {
    pub fn parse(v: &Value) -> Option<Self> {
        let primary = match v.get("role")?.as_str()? {
            "primary" => true,
            "backup" => false,
            _ => return None,
        };
        Some(Self {
            grant: Grant {
                primary,
                epoch: v.get("epoch")?.as_u64()?,
            },
            lease: Duration::from_millis(v.get("lease_ms").and_then(Value::as_u64).unwrap_or(0)),
            interval: v
                .get("interval_ms")
                .and_then(Value::as_u64)
                .map(Duration::from_millis),
        })
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Held {
    /// No control plane configured: roles come from the file and SIGHUP; nothing to check.
    NotNeeded,
    /// No lease: not granted yet (just started), run out, or a backup.
    None,
    /// Live until then, on this POP's monotonic clock.
    Until(Instant),
    /// The control plane grants primaries no lease (manual mode, `lease_seconds: 0`): this
    /// POP acknowledges while it is primary, even when the control plane is gone.
    Unlimited,
}

/// The primary's lease, shared by the heartbeat task and the write layer.
#[derive(Debug)]
pub struct Lease {
    state: Mutex<Held>,
    epoch: Mutex<u64>,
}

impl Lease {
    pub fn new(managed: bool, epoch: u64) -> Self {
        Self {
            state: Mutex::new(if managed { Held::None } else { Held::NotNeeded }),
            epoch: Mutex::new(epoch),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Held> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The epoch this POP holds (0 until a control plane granted one).
    pub fn epoch(&self) -> u64 {
        *self.epoch.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn set_epoch(&self, epoch: u64) {
        *self.epoch.lock().unwrap_or_else(|p| p.into_inner()) = epoch;
    }

    /// Whether a write committed now may be acknowledged.
    pub fn is_live(&self) -> bool {
        match *self.lock() {
            Held::NotNeeded | Held::Unlimited => true,
            Held::None => false,
            Held::Until(t) => Instant::now() < t,
        }
    }

    /// Whether a control plane manages this POP's role (a reload may add or remove one).
    pub fn set_managed(&self, managed: bool) {
        let mut s = self.lock();
        match (managed, *s) {
            (false, _) => *s = Held::NotNeeded,
            (true, Held::NotNeeded) => *s = Held::None,
            (true, _) => {}
        }
    }

    /// A primary's answered heartbeat, sent at `sent`, granting `lease` (zero: no lease).
    pub fn renew(&self, sent: Instant, lease: Duration) {
        let mut s = self.lock();
        if *s == Held::NotNeeded {
            return;
        }
        *s = if lease.is_zero() {
            Held::Unlimited
        } else {
            let until = sent + lease;
            // A late answer to an older heartbeat never shortens a newer lease.
            match *s {
                Held::Until(t) if t > until => Held::Until(t),
                _ => Held::Until(until),
            }
        };
    }

    /// Demoted (or told to step down): nothing is acknowledged any more.
    pub fn drop_lease(&self) {
        let mut s = self.lock();
        if *s != Held::NotNeeded {
            *s = Held::None;
        }
    }

    /// For `/healthz`: `not_required`, `none`, `unlimited` or the milliseconds left.
    pub fn report(&self) -> Value {
        match *self.lock() {
            Held::NotNeeded => json!({"state": "not_required"}),
            Held::None => json!({"state": "none"}),
            Held::Unlimited => json!({"state": "unlimited"}),
            Held::Until(t) => {
                let left = t.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    json!({"state": "expired"})
                } else {
                    json!({"state": "live", "ms_left": left.as_millis() as u64})
                }
            }
        }
    }
}

/// The layer over client routes: a write (any method but GET, HEAD, OPTIONS) that succeeded
/// is acknowledged only while the lease is live, checked after it committed.
pub async fn acknowledge_writes(
    State(lease): State<Arc<Lease>>,
    req: Request,
    next: Next,
) -> Response {
    let write = !matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS);
    let res = next.run(req).await;
    if !write || !res.status().is_success() || lease.is_live() {
        return res;
    }
    tracing::warn!(
        status = res.status().as_u16(),
        "write committed locally but not acknowledged: no live primary lease from the control plane"
    );
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "primary_lease_expired",
        "this POP holds no live primary lease from the control plane (it may be cut off while another POP is promoted): the write was kept on this POP but is not acknowledged; retry against the current primary",
    )
    .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_managed_pop_acknowledges_nothing_until_a_lease_is_granted() {
        let l = Lease::new(true, 0);
        assert!(!l.is_live());
        l.renew(Instant::now(), Duration::from_secs(5));
        assert!(l.is_live());
        l.drop_lease();
        assert!(!l.is_live());
    }

    #[test]
    fn the_lease_counts_from_when_the_heartbeat_was_sent() {
        let l = Lease::new(true, 0);
        let sent = Instant::now() - Duration::from_secs(2);
        l.renew(sent, Duration::from_secs(1));
        assert!(
            !l.is_live(),
            "a lease of 1 s from a heartbeat sent 2 s ago has run out"
        );
        // A late answer never shortens a later lease.
        l.renew(Instant::now(), Duration::from_secs(5));
        l.renew(sent, Duration::from_secs(1));
        assert!(l.is_live());
    }

    #[test]
    fn no_lease_means_unlimited_and_unmanaged_means_not_needed() {
        let l = Lease::new(true, 0);
        l.renew(Instant::now(), Duration::ZERO);
        assert!(l.is_live());
        let free = Lease::new(false, 0);
        assert!(free.is_live());
        free.drop_lease();
        assert!(free.is_live());
    }

    #[test]
    fn answers_parse_or_are_ignored() {
        let a =
            Answer::parse(&json!({"role":"primary","epoch":3,"lease_ms":1000,"interval_ms":300}))
                .expect("valid");
        assert_eq!(
            a.grant,
            Grant {
                primary: true,
                epoch: 3
            }
        );
        assert_eq!(a.lease, Duration::from_secs(1));
        assert!(Answer::parse(&json!({"role":"leader","epoch":3})).is_none());
        assert!(Answer::parse(&json!({"role":"backup","epoch":-1})).is_none());
        assert!(Answer::parse(&json!({"ok": true})).is_none());
    }
}
