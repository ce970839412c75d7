//! The audit trail as the vault's use cases see it: who may read it, reading it, recording
//! reads, and the upkeep that runs beside the server (denial events at the end of each
//! minute, recovery after the trail could not be written, the low-disk alert, retention).

use super::{Caller, Error, Vault, require_owner};
use crate::audit::{self, Actor, Event};
use crate::crypto::AuditKey;
use crate::store::audit::{Filter, Page};
use crate::store::{self, now_ms};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

pub use crate::store::audit::Page as AuditPage;

/// How the trail runs (from `serve`'s flags).
#[derive(Debug, Clone)]
pub struct AuditOptions {
    /// `--audit-sync`: a read is answered only once its event is committed.
    pub sync: bool,
    /// Record reads at all (off only for the benchmark's reference run; a hidden flag).
    pub reads: bool,
    /// `--audit-retention`: events older than this are deleted. `None`: nothing is.
    pub retention: Option<Duration>,
    /// Alert the operator when the data dir's filesystem has less than this many bytes free.
    pub disk_alert_below: u64,
}

/// Default low-disk threshold: a vault's writes are small, but a full disk stops every
/// request (the trail fails closed), so the operator hears well before.
pub const DISK_ALERT_BELOW: u64 = 512 * 1024 * 1024;

impl Default for AuditOptions {
    fn default() -> Self {
        Self {
            sync: false,
            reads: true,
            retention: None,
            disk_alert_below: DISK_ALERT_BELOW,
        }
    }
}

/// Raises an operator alert (the edition's `alert_operator`): kind, message, details.
pub type DiskAlert = Arc<dyn Fn(&str, &str, serde_json::Value) + Send + Sync>;

/// How often the upkeep looks at the trail's state (and retries writing it when it is down).
const TICK: Duration = Duration::from_secs(1);
/// How often finished minutes of denial counts are written.
const FLUSH_EVERY: Duration = Duration::from_secs(5);
/// How often free disk space is checked, and how often a low disk is alerted again.
const DISK_EVERY: Duration = Duration::from_secs(60);
const DISK_REALERT: Duration = Duration::from_secs(3600);
/// How often retention runs (also once at start).
const PRUNE_EVERY: Duration = Duration::from_secs(3600);
/// Most events one page of `GET /v1/audit` holds.
pub const MAX_PAGE: usize = 1000;

impl Vault {
    pub fn configure_audit(&self, opts: &AuditOptions) {
        self.trail.configure(opts.sync, opts.reads);
    }

    /// Who may read the trail. The one place that decides it (owners; admins once there are).
    pub fn may_read_audit(&self, caller: &Caller) -> Result<(), Error> {
        require_owner(caller)
    }

    /// Events after `after`, oldest first.
    pub async fn audit_page(
        &self,
        caller: &Caller,
        after: i64,
        limit: usize,
        filter: Filter,
    ) -> Result<Page, Error> {
        self.may_read_audit(caller)?;
        let limit = limit.clamp(1, MAX_PAGE);
        Ok(self
            .store
            .read(move |c| store::audit::page(c, after, limit, &filter))
            .await?)
    }

    /// The signed head as text (`None` while the trail is empty).
    pub async fn audit_head(&self, caller: &Caller) -> Result<Option<String>, Error> {
        self.may_read_audit(caller)?;
        let signed = self.store.read(store::audit::signed_head).await?;
        Ok(signed.as_ref().map(audit::head_text))
    }

    /// Records a read (or another event that changes nothing): see [`Trail::read`].
    pub(super) async fn record_read(&self, event: Event) -> Result<(), Error> {
        self.trail.read(event).await.map_err(|e| {
            tracing::error!(error = %e, "a read's audit event was not recorded");
            Error::AuditUnavailable
        })
    }

    /// Records an event of the server itself (e.g. a configuration reload) and waits for it.
    pub async fn record_system(&self, event: Event) -> Result<(), Error> {
        self.trail
            .record_now(event)
            .await
            .map_err(|_| Error::AuditUnavailable)
    }

    /// Whether the trail can be written (requests are refused while it cannot).
    pub fn audit_available(&self) -> bool {
        self.trail.available()
    }

    /// The key that checks signed heads (a peer POP's, which shares `master.key`).
    pub fn audit_key(&self) -> &AuditKey {
        &self.audit_key
    }

    /// Writes every denial still counted (at shutdown, before the store closes).
    pub async fn flush_audit(&self) {
        if let Err(e) = self.trail.flush_denials(now_ms(), true).await {
            tracing::error!(error = %e, "denials counted for the audit trail could not be written at shutdown");
        }
    }

    /// Runs until `shutdown`: see the module doc.
    pub async fn run_audit_upkeep(
        self: Arc<Self>,
        opts: AuditOptions,
        data_dir: PathBuf,
        alert: DiskAlert,
        shutdown: CancellationToken,
    ) {
        self.check_tail(&alert).await;
        if !opts.reads {
            // Visible where it matters: in the trail itself.
            tracing::warn!(
                "reads are not recorded in the audit trail (a benchmark's reference run)"
            );
            let off = Event::new(Actor::system(), "audit.reads_off");
            if let Err(e) = self.trail.record_now(off).await {
                tracing::error!(error = %e, "cannot record that reads are not recorded");
            }
        }
        let mut down_since: Option<Instant> = None;
        let mut last_flush = Instant::now();
        let mut last_disk: Option<Instant> = None;
        let mut disk_alerted: Option<Instant> = None;
        let mut last_prune: Option<Instant> = None;
        loop {
            if !self.trail.available() {
                let since = *down_since.get_or_insert_with(|| {
                    alert(
                        "audit_unavailable",
                        "the audit trail cannot be written (is the disk full?); every request is refused with 503 audit_unavailable until it can",
                        serde_json::json!({ "data_dir": data_dir.display().to_string() }),
                    );
                    Instant::now()
                });
                let resumed = Event::new(Actor::system(), "audit.resumed")
                    .detail("unavailable_ms", since.elapsed().as_millis().to_string());
                if self.trail.record_now(resumed).await.is_ok() {
                    tracing::warn!(
                        "the audit trail is written again after {:?}; requests are served",
                        since.elapsed()
                    );
                    down_since = None;
                }
            } else if last_flush.elapsed() >= FLUSH_EVERY {
                last_flush = Instant::now();
                if let Err(e) = self.trail.flush_denials(now_ms(), false).await {
                    tracing::error!(error = %e, "denial events could not be written; kept for the next try");
                }
            }
            if last_disk.is_none_or(|t| t.elapsed() >= DISK_EVERY) {
                last_disk = Some(Instant::now());
                self.check_disk(&opts, &data_dir, &alert, &mut disk_alerted);
            }
            if let Some(keep) = opts.retention
                && last_prune.is_none_or(|t| t.elapsed() >= PRUNE_EVERY)
                && self.trail.available()
            {
                last_prune = Some(Instant::now());
                self.prune(keep).await;
            }
            tokio::select! {
                () = tokio::time::sleep(TICK) => {}
                () = shutdown.cancelled() => return,
            }
        }
    }

    fn check_disk(
        &self,
        opts: &AuditOptions,
        data_dir: &std::path::Path,
        alert: &DiskAlert,
        alerted: &mut Option<Instant>,
    ) {
        match audit::free_bytes(data_dir) {
            Ok(free) if free < opts.disk_alert_below => {
                if alerted.is_none_or(|t| t.elapsed() >= DISK_REALERT) {
                    *alerted = Some(Instant::now());
                    alert(
                        "disk_low",
                        &format!(
                            "{} MiB free on the data dir's filesystem (alert below {} MiB): when it is full, the audit trail cannot be written and the vault refuses every request",
                            free / (1024 * 1024),
                            opts.disk_alert_below / (1024 * 1024)
                        ),
                        serde_json::json!({
                            "data_dir": data_dir.display().to_string(),
                            "free_bytes": free,
                            "threshold_bytes": opts.disk_alert_below,
                        }),
                    );
                }
            }
            Ok(_) => *alerted = None,
            Err(e) => {
                tracing::warn!(error = %e, dir = %data_dir.display(), "cannot read free disk space")
            }
        }
    }

    /// Deletes events older than `keep`; the first kept one becomes the chain's anchor, and
    /// the deletion is itself an event.
    async fn prune(&self, keep: Duration) {
        let cutoff = now_ms().saturating_sub(i64::try_from(keep.as_millis()).unwrap_or(i64::MAX));
        let r = self
            .store
            .write(move |c| {
                if let Some((deleted, first)) = store::audit::prune(c, cutoff)? {
                    audit::record(
                        c,
                        &Event::new(Actor::system(), "audit.prune")
                            .detail("deleted", deleted.to_string())
                            .detail("first_kept", first.to_string())
                            .detail("before", audit::rfc3339(cutoff)),
                    )?;
                    return Ok::<_, store::Error>(deleted);
                }
                Ok(0)
            })
            .await;
        match r {
            Ok(0) => {}
            Ok(n) => tracing::info!(deleted = n, "audit retention deleted old events"),
            Err(e) => tracing::error!(error = %e, "audit retention failed"),
        }
    }

    /// At start: the signed head must verify and name the last stored event. If not, someone
    /// edited the trail while the vault was stopped: the operator hears of it (`clavitor audit
    /// verify` says where), and the trail goes on from the signed head, so the gap stays.
    async fn check_tail(&self, alert: &DiskAlert) {
        let key = self.audit_key.clone();
        let checked = self
            .store
            .read(move |c| {
                store::snapshot(c, |c| {
                    let signed = store::audit::signed_head(c)?;
                    let last: Option<(i64, Vec<u8>)> = c
                        .query_row(
                            "SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1",
                            [],
                            |r| Ok((r.get(0)?, r.get(1)?)),
                        )
                        .ok();
                    Ok(match (signed, last) {
                        (None, None) => None,
                        (None, Some((seq, _))) => Some(format!(
                            "the trail has events (up to {seq}) but no signed head"
                        )),
                        (Some(s), last) => {
                            if !key.verify(&s.head.mac_message(), &s.mac) {
                                Some("the signed head does not verify".to_owned())
                            } else {
                                match last {
                                    Some((seq, hash))
                                        if seq == s.head.seq && hash[..] == s.head.hash[..] =>
                                    {
                                        None
                                    }
                                    Some((seq, _)) => Some(format!(
                                        "the last stored event is {seq}, the signed head names {}",
                                        s.head.seq
                                    )),
                                    None if s.head.seq < s.head.anchor_seq => None,
                                    None => Some(format!(
                                        "the signed head names event {}, but no event is stored",
                                        s.head.seq
                                    )),
                                }
                            }
                        }
                    })
                })
            })
            .await;
        match checked {
            Ok(None) => {}
            Ok(Some(problem)) => alert(
                "audit_tampered",
                &format!(
                    "the audit trail was changed while the vault was stopped: {problem}; run `clavitor audit verify` on a stopped copy to see where"
                ),
                serde_json::json!({ "problem": problem }),
            ),
            Err(e) => tracing::error!(error = %e, "cannot check the audit trail's head"),
        }
    }
}
