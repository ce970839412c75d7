//! Operator alerts and heartbeats to the control plane.
//!
//! Alerts go through a bounded queue to one sender task, so a slow or dead control plane never
//! blocks a request: when the queue is full the alert is dropped (it was already logged).

use super::Live;
use serde_json::{Value, json};
use std::sync::{Arc, RwLock};
use std::time::Duration;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

const QUEUE: usize = 256;
const ATTEMPTS: u32 = 4;
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// How soon a POP the control plane has not answered yet sends its next heartbeat.
const FIRST_ANSWER_RETRY: Duration = Duration::from_secs(2);

pub struct Alert {
    pub kind: String,
    pub message: String,
    pub details: Value,
    pub at: OffsetDateTime,
}

#[derive(Clone)]
pub struct Alerts {
    tx: mpsc::Sender<Alert>,
}

fn now_rfc3339(t: OffsetDateTime) -> String {
    t.format(&Rfc3339).unwrap_or_default()
}

impl Alerts {
    pub fn spawn(live: Arc<RwLock<Arc<Live>>>, shutdown: CancellationToken) -> Self {
        let (tx, mut rx) = mpsc::channel::<Alert>(QUEUE);
        tokio::spawn(async move {
            loop {
                let alert = tokio::select! {
                    a = rx.recv() => match a { Some(a) => a, None => break },
                    () = shutdown.cancelled() => break,
                };
                let snapshot = live.read().unwrap_or_else(|p| p.into_inner()).clone();
                let Some(cp) = snapshot.control.as_ref() else {
                    continue;
                };
                let body = json!({
                    "type": alert.kind,
                    "message": alert.message,
                    "details": alert.details,
                    "pop_id": snapshot.config.pop_id,
                    "timestamp": now_rfc3339(alert.at),
                });
                let delivered = tokio::select! {
                    ok = post_with_retries(cp, "/v1/alerts", &body) => ok,
                    () = shutdown.cancelled() => break,
                };
                if !delivered {
                    tracing::warn!(alert = %alert.kind, "operator alert could not be delivered to the control plane");
                }
            }
        });
        Self { tx }
    }

    /// Never waits: a full queue drops the alert (it is in the log already).
    pub fn send(&self, alert: Alert) {
        if let Err(e) = self.tx.try_send(alert) {
            tracing::warn!(reason = %e, "operator alert not queued for the control plane");
        }
    }
}

/// A configured control plane: where, with which token, through which client.
pub struct ControlClient {
    pub base: reqwest::Url,
    pub token: crate::crypto::Token,
    pub http: reqwest::Client,
    pub heartbeat_interval: Duration,
    pub telemetry_interval: Duration,
}

impl ControlClient {
    pub fn build(cp: &super::config::ControlPlane) -> Result<Self, String> {
        let tls = super::tls::public_client_config(&cp.ca)?;
        let http = reqwest::Client::builder()
            .use_preconfigured_tls(tls)
            .timeout(REQUEST_TIMEOUT)
            .build()
            .map_err(|e| format!("cannot build the control-plane client: {e}"))?;
        Ok(Self {
            base: cp.url.clone(),
            token: cp.token.clone(),
            http,
            heartbeat_interval: cp.heartbeat_interval,
            telemetry_interval: cp.telemetry_interval,
        })
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base.as_str().trim_end_matches('/'))
    }
}

/// POSTs JSON, retrying with exponential backoff. Returns whether a 2xx came back.
pub async fn post_with_retries(cp: &ControlClient, path: &str, body: &Value) -> bool {
    let mut delay = Duration::from_millis(200);
    for attempt in 1..=ATTEMPTS {
        let res = cp
            .http
            .post(cp.url(path))
            .bearer_auth(cp.token.expose())
            .json(body)
            .send()
            .await;
        match res {
            Ok(r) if r.status().is_success() => return true,
            Ok(r) => tracing::debug!(status = %r.status(), attempt, path, "control plane refused"),
            Err(e) => tracing::debug!(error = %e, attempt, path, "control plane unreachable"),
        }
        if attempt < ATTEMPTS {
            tokio::time::sleep(delay).await;
            delay *= 2;
        }
    }
    false
}

/// One heartbeat: a single attempt (a retried one would renew the lease from a stale send
/// time), bounded by `timeout`. Returns the answer and when the request was sent.
async fn heartbeat_once(
    cp: &ControlClient,
    body: &Value,
    timeout: Duration,
) -> Option<(super::lease::Answer, std::time::Instant)> {
    let sent = std::time::Instant::now();
    let res = cp
        .http
        .post(cp.url("/v1/heartbeat"))
        .bearer_auth(cp.token.expose())
        .timeout(timeout)
        .json(body)
        .send()
        .await;
    let r = match res {
        Ok(r) if r.status().is_success() => r,
        Ok(r) => {
            tracing::debug!(status = %r.status(), "control plane refused a heartbeat");
            return None;
        }
        Err(e) => {
            tracing::debug!(error = %e, "control plane unreachable for a heartbeat");
            return None;
        }
    };
    let v: Value = r.json().await.ok()?;
    match super::lease::Answer::parse(&v) {
        Some(a) => Some((a, sent)),
        None => {
            tracing::warn!(
                "control plane answered a heartbeat without a valid role and epoch; ignored"
            );
            None
        }
    }
}

/// The heartbeat interval the control plane asks for, within sane bounds.
fn bounded_interval(d: Duration) -> Duration {
    d.clamp(Duration::from_millis(50), Duration::from_secs(86_400))
}

/// What a periodic report sends: heartbeats are small and frequent, telemetry carries metrics.
#[derive(Clone, Copy)]
pub enum Report {
    Heartbeat,
    Telemetry,
}

/// Posts `report` to the control plane at its configured interval (re-read every time, so
/// SIGHUP changes apply). Sending never blocks requests: it runs on its own task and gives
/// up after a bounded number of attempts.
pub fn spawn_reporter(
    edition: Arc<super::Commercial>,
    report: Report,
    shutdown: CancellationToken,
) {
    tokio::spawn(async move {
        let started = std::time::Instant::now();
        // Heartbeats: the control plane's `interval_ms` once it has answered.
        let mut asked: Option<Duration> = None;
        loop {
            let snapshot = edition.snapshot();
            let (interval, path) = match (report, snapshot.control.as_ref()) {
                (Report::Heartbeat, Some(c)) => {
                    (asked.unwrap_or(c.heartbeat_interval), "/v1/heartbeat")
                }
                (Report::Telemetry, Some(c)) => (c.telemetry_interval, "/v1/telemetry"),
                (_, None) => (Duration::from_secs(60), ""),
            };
            if let Some(cp) = snapshot.control.as_ref() {
                let replication = edition.replication_report().await;
                let mut body = json!({
                    "pop_id": snapshot.config.pop_id,
                    "region": snapshot.config.region,
                    "role": snapshot.config.role_name(),
                    "epoch": edition.lease.epoch(),
                    "version": env!("CARGO_PKG_VERSION"),
                    "uptime_seconds": started.elapsed().as_secs(),
                    "replication_backlog": replication.get("backlog").cloned().unwrap_or_default(),
                    "timestamp": now_rfc3339(OffsetDateTime::now_utc()),
                });
                if let Report::Telemetry = report {
                    let [c1, c2, c3, c4, c5] = crate::metrics::requests_by_class();
                    body["entries"] = json!(edition.entry_count().await);
                    body["requests"] =
                        json!({"1xx": c1, "2xx": c2, "3xx": c3, "4xx": c4, "5xx": c5});
                    body["tarpit_held"] = json!(edition.tarpit_held());
                }
                body["replication"] = replication;
                if let Report::Heartbeat = report {
                    // Never wait longer than the lease could last on a silent control plane.
                    let timeout = interval.clamp(Duration::from_millis(500), REQUEST_TIMEOUT);
                    let answered = tokio::select! {
                        a = heartbeat_once(cp, &body, timeout) => a,
                        () = shutdown.cancelled() => return,
                    };
                    if let Some((answer, sent)) = answered {
                        asked = answer.interval.map(bounded_interval);
                        edition.on_answer(answer, sent).await;
                    }
                } else {
                    tokio::select! {
                        _ = post_with_retries(cp, path, &body) => {}
                        () = shutdown.cancelled() => return,
                    }
                }
            }
            // A heartbeat waits what the last answer asked for. Until a first answer (a POP
            // acknowledges no write before it), it retries within FIRST_ANSWER_RETRY.
            let interval = match report {
                Report::Heartbeat => asked.unwrap_or(interval.min(FIRST_ANSWER_RETRY)),
                Report::Telemetry => interval,
            };
            tokio::select! {
                () = tokio::time::sleep(interval) => {}
                () = shutdown.cancelled() => return,
            }
        }
    });
}
