//! The primary's replication loop.

use super::super::Live;
use super::super::config::{BackupPop, PopRole};
use super::super::lease::Lease;
use super::Status;
use super::wire::{Ack, Batch, Item, PROTOCOL_VERSION};
use super::{audit, rows};
use crate::edition::Edition;
use crate::store::{self, Store, now_ms};
use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use std::collections::HashSet;
use std::sync::{Arc, RwLock};
use std::time::Duration;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// Keeps a batch comfortably under the backup's body limit for this endpoint.
pub const MAX_BATCH_BYTES: usize = 8 * 1024 * 1024;
/// Entry batches on their way to the backup (or being marked) at once.
const IN_FLIGHT: usize = 4;
/// Between failed drains, doubling from the first. While failing, only this timer (or SIGHUP)
/// wakes the loop, not commits: a backup that refuses batches (a 400, a 409 from a POP that is
/// no longer a backup) or cannot be reached would otherwise be sent one per commit. The cap is
/// what a healed link waits at most, so it stays a few seconds (a failed drain costs its
/// `max_retries` attempts, cheap against a backup that is down).
const SLOW_RETRY_MIN: Duration = Duration::from_secs(1);
const SLOW_RETRY_MAX: Duration = Duration::from_secs(5);
/// Audit events are sent at least this often (reads commit no data, so wake nothing).
const AUDIT_EVERY: Duration = Duration::from_secs(1);
const AUDIT_BATCHES_PER_DRAIN: usize = 8;

pub struct Worker {
    pub edition: Arc<dyn Edition>,
    pub live: Arc<RwLock<Arc<Live>>>,
    pub store: Store,
    pub status: Arc<Status>,
    /// Poked on SIGHUP, so a POP promoted to primary starts pushing at once.
    pub wake: Arc<Notify>,
    /// The epoch each batch carries.
    pub lease: Arc<Lease>,
    pub shutdown: CancellationToken,
    /// When audit events were last sent: under read load there are always new ones, and
    /// each send's bookkeeping commit wakes the loop again.
    pub last_audit: std::sync::Mutex<Option<std::time::Instant>>,
}

pub fn spawn(w: Worker) {
    let w = Arc::new(w);
    tokio::spawn(run(w.clone()));
    tokio::spawn(run_audit(w));
}

/// The audit trail's own loop, beside the data's: a push whose answer is lost waits out its
/// timeout and retries here without holding back the next data batch.
async fn run_audit(w: Arc<Worker>) {
    let mut commits = w.store.subscribe_commits();
    loop {
        let live = w.live.read().unwrap_or_else(|p| p.into_inner()).clone();
        let granted = live.config.control_plane.is_none() || w.lease.epoch() > 0;
        if matches!(live.config.role, PopRole::Primary { .. })
            && granted
            && !w.status.failing()
            && let Err(e) = push_audit(&w, &live).await
        {
            tracing::warn!(error = %e, "audit events not sent to the backup; retried");
        }
        tokio::select! {
            r = commits.changed() => if r.is_err() { return },
            () = tokio::time::sleep(AUDIT_EVERY) => {}
            () = w.shutdown.cancelled() => return,
        }
    }
}

async fn run(w: Arc<Worker>) {
    let mut commits = w.store.subscribe_commits();
    let mut slow_retry: Option<Duration> = None;
    let mut alerted = false;
    loop {
        let live = w.live.read().unwrap_or_else(|p| p.into_inner()).clone();
        // A POP whose role a control plane manages pushes once it has been granted an epoch:
        // before that its backup, holding one, would refuse its batches.
        let granted = live.config.control_plane.is_none() || w.lease.epoch() > 0;
        if let (PopRole::Primary { .. }, true) = (&live.config.role, granted) {
            match drain(&w, &live).await {
                Ok(()) => {
                    if alerted {
                        tracing::info!("replication to the backup recovered");
                        alerted = false;
                    }
                    slow_retry = None;
                }
                Err(e) => {
                    w.status.failed(now_ms(), e.clone());
                    if !alerted {
                        // Once per outage, not once per attempt.
                        w.edition.alert_operator(
                            "replication_failed",
                            &format!("replication to the backup is failing; writes stay owed and will be retried: {e}"),
                            serde_json::json!({ "backup_url": live.backup_url(), "error": e }),
                        );
                        alerted = true;
                    }
                    slow_retry =
                        Some(slow_retry.map_or(SLOW_RETRY_MIN, |d| (d * 2).min(SLOW_RETRY_MAX)));
                }
            }
        }
        let retry = slow_retry.unwrap_or(SLOW_RETRY_MAX);
        tokio::select! {
            r = commits.changed(), if slow_retry.is_none() => if r.is_err() { return },
            () = w.wake.notified() => {}
            () = tokio::time::sleep(retry), if slow_retry.is_some() => {}
            () = w.shutdown.cancelled() => return,
        }
    }
}

/// Sends everything owed until nothing is left or a batch fails.
///
/// Up to `IN_FLIGHT` entry batches travel at once, so the backup's group commit can take several
/// in one fsync while the primary marks earlier ones: one batch at a time left both disks idle
/// most of the time. No two outstanding batches hold the same entry (`busy`), and a batch with
/// agents or scope keys travels alone, after everything before it was acknowledged, because
/// the backup's scope keys reference its agents.
async fn drain(w: &Worker, live: &Live) -> Result<(), String> {
    let Some((backup, client, url)) = backup_endpoint(live)? else {
        return Ok(());
    };
    let mut outstanding = FuturesUnordered::new();
    let mut busy: HashSet<String> = HashSet::new();
    let mut barrier = false;
    loop {
        if w.shutdown.is_cancelled() {
            return Ok(());
        }
        if !barrier && outstanding.len() < IN_FLIGHT {
            let local = live.config.pop_id.clone();
            let limit = live.config.batch_size;
            let skip = busy.clone();
            let collected = w
                .store
                .read(move |c| rows::collect(c, &local, limit, MAX_BATCH_BYTES, &skip))
                .await
                .map_err(|e: store::Error| e.to_string())?;
            let items = &collected.items;
            let alone = items.iter().any(|i| !matches!(i, Item::Entry(_)));
            // A batch that must travel alone waits until nothing else is outstanding.
            if !items.is_empty() && (!alone || outstanding.is_empty()) {
                barrier = alone;
                let ids: Vec<String> = items.iter().filter_map(entry_id).collect();
                busy.extend(ids.iter().cloned());
                let batch = Batch {
                    origin: live.config.pop_id.clone(),
                    items: collected.items,
                    watermark: Some(collected.watermark),
                    audit: Vec::new(),
                    audit_head: None,
                    protocol: Some(PROTOCOL_VERSION),
                    epoch: Some(w.lease.epoch()),
                };
                outstanding.push(push(
                    w,
                    client,
                    &url,
                    backup.token.expose(),
                    live,
                    batch,
                    ids,
                    collected.snapshot,
                ));
                continue;
            }
            if items.is_empty() && outstanding.is_empty() {
                // Nothing owed (e.g. just after a restart): report the backup as caught up.
                w.status.caught_up(collected.snapshot);
                if collected.watermark > w.status.told_watermark() {
                    // Batches that finished out of order each carried a lower watermark than
                    // what is true now: tell the backup its recovery point.
                    let batch = Batch {
                        origin: live.config.pop_id.clone(),
                        items: Vec::new(),
                        watermark: Some(collected.watermark),
                        audit: Vec::new(),
                        audit_head: None,
                        protocol: Some(PROTOCOL_VERSION),
                        epoch: Some(w.lease.epoch()),
                    };
                    let ack = send(
                        client,
                        &url,
                        backup.token.expose(),
                        &batch,
                        live.config.max_retries,
                        &w.shutdown,
                    )
                    .await?;
                    w.status
                        .told(ack.applied_watermark.unwrap_or(collected.watermark));
                }
                return Ok(());
            }
        }
        // Full, or waiting for earlier batches before one that must travel alone.
        match outstanding.next().await {
            Some(done) => {
                let ids = done?;
                for id in &ids {
                    busy.remove(id);
                }
                barrier = false;
            }
            None => barrier = false,
        }
    }
}

/// Sends this POP's audit events the backup does not hold yet, in order (see `audit`), from
/// the audit loop beside the data's. Bounded per round.
async fn push_audit(w: &Worker, live: &Live) -> Result<(), String> {
    let Some((backup, client, url)) = backup_endpoint(live)? else {
        return Ok(());
    };
    let token = backup.token.expose();
    {
        let mut last = w.last_audit.lock().unwrap_or_else(|p| p.into_inner());
        if last.is_some_and(|t| t.elapsed() < AUDIT_EVERY) {
            return Ok(());
        }
        *last = Some(std::time::Instant::now());
    }
    for _ in 0..AUDIT_BATCHES_PER_DRAIN {
        let (items, head) = w
            .store
            .read(|c| {
                let after = audit::acked(c)?;
                audit::collect(c, after)
            })
            .await
            .map_err(|e: store::Error| e.to_string())?;
        let (Some(first), Some(last)) = (items.first().map(|i| i.seq), items.last().map(|i| i.seq))
        else {
            return Ok(());
        };
        let full = items.len() >= audit::BATCH_EVENTS;
        let batch = Batch {
            origin: live.config.pop_id.clone(),
            items: Vec::new(),
            watermark: None,
            audit: items,
            audit_head: head,
            protocol: Some(PROTOCOL_VERSION),
            epoch: Some(w.lease.epoch()),
        };
        let ack = send(
            client,
            &url,
            token,
            &batch,
            live.config.max_retries,
            &w.shutdown,
        )
        .await?;
        // An older backup ignores the events: take them as delivered rather than resend forever.
        let held = ack.audit_seq.unwrap_or(last);
        if held + 1 < first {
            return Err(format!(
                "the backup holds this POP's audit events up to {held}, and the oldest one kept here is {first}: the events between were deleted by retention before the backup had them"
            ));
        }
        w.store
            .write(move |c| audit::set_acked(c, held))
            .await
            .map_err(|e: store::Error| e.to_string())?;
        if !full || held < last {
            return Ok(());
        }
    }
    Ok(())
}

fn entry_id(item: &Item) -> Option<String> {
    match item {
        Item::Entry(e) => Some(e.id.clone()),
        _ => None,
    }
}

/// Sends one batch and, once the backup has acknowledged it, marks its rows replicated.
/// Returns the ids of the entries it carried. `snapshot`: the version the batch was read at.
#[expect(
    clippy::too_many_arguments,
    reason = "one call site; a struct would only rename them"
)]
async fn push(
    w: &Worker,
    client: &reqwest::Client,
    url: &str,
    token: &str,
    live: &Live,
    batch: Batch,
    ids: Vec<String>,
    snapshot: i64,
) -> Result<Vec<String>, String> {
    let ack = send(
        client,
        url,
        token,
        &batch,
        live.config.max_retries,
        &w.shutdown,
    )
    .await?;
    let stamps: Vec<i64> = batch
        .items
        .iter()
        .filter(|i| matches!(i, Item::Entry(_)))
        .map(|i| i.stamp().updated_at)
        .collect();
    // Lag ends at the acknowledgement: marking is the primary's bookkeeping, not replication.
    let now = now_ms();
    w.status
        .acked(ack.acked_version, now, stamps.into_iter().map(|t| now - t));
    if let Some(told) = ack.applied_watermark.or(batch.watermark) {
        w.status.told(told);
    }
    let items = batch.items;
    w.store
        .write(move |c| rows::mark(c, &items, snapshot))
        .await
        .map_err(|e: store::Error| e.to_string())?;
    Ok(ids)
}

/// Where a primary pushes: its backup's settings, client and batch URL; `None` when this POP
/// is not a primary.
fn backup_endpoint(live: &Live) -> Result<Option<(&BackupPop, &reqwest::Client, String)>, String> {
    let PopRole::Primary { backup } = &live.config.role else {
        return Ok(None);
    };
    let client = live
        .backup_client
        .as_ref()
        .ok_or_else(|| "no client for the backup".to_owned())?;
    let url = format!(
        "{}/v1/replication/batch",
        backup.url.as_str().trim_end_matches('/')
    );
    Ok(Some((backup, client, url)))
}

/// POSTs one batch, retrying with exponential backoff and jitter.
async fn send(
    client: &reqwest::Client,
    url: &str,
    token: &str,
    batch: &Batch,
    max_retries: u32,
    shutdown: &CancellationToken,
) -> Result<Ack, String> {
    let mut delay = Duration::from_millis(100);
    let mut last = String::new();
    for attempt in 0..=max_retries {
        if attempt > 0 {
            let jitter =
                Duration::from_millis(rand::random_range(0..=delay.as_millis() as u64 / 2));
            tokio::select! {
                () = tokio::time::sleep(delay + jitter) => {}
                () = shutdown.cancelled() => return Err("shutting down".into()),
            }
            delay = (delay * 2).min(Duration::from_secs(5));
        }
        match client.post(url).bearer_auth(token).json(batch).send().await {
            Ok(r) if r.status().is_success() => match r.json::<Ack>().await {
                Ok(ack) => return Ok(ack),
                Err(e) => last = format!("unreadable acknowledgement: {e}"),
            },
            Ok(r) => {
                let status = r.status();
                let body = r.text().await.unwrap_or_default();
                last = format!(
                    "backup answered {status}: {}",
                    body.chars().take(300).collect::<String>()
                );
                if status == reqwest::StatusCode::BAD_REQUEST
                    || status == reqwest::StatusCode::CONFLICT
                {
                    // The backup refused this batch's content, its epoch, or is itself a
                    // primary: sending it again at once cannot help.
                    return Err(last);
                }
            }
            Err(e) => last = format!("cannot reach the backup: {}", error_chain(&e)),
        }
        tracing::debug!(attempt, error = %last, "replication batch not acknowledged");
    }
    Err(last)
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(inner) = src {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        src = inner.source();
    }
    s
}
