//! SIEM streaming: this POP's audit trail sent to syslog-over-TLS and HTTPS collectors, in
//! order and at least once, each sink from its own durable cursor (see `cursor`). One task per
//! sink (`worker`), so a slow or dead collector delays only itself; requests never wait on
//! any. SIGHUP replaces the tasks with ones built from the new file.

pub mod config;
mod cursor;
pub mod format;
mod transport;
mod worker;

use crate::api::timestamp;
use crate::store::Store;
use config::SiemConfig;
use cursor::Cursor;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use serde_json::{Value, json};
use std::sync::{Arc, Mutex};
use tokio_util::sync::CancellationToken;

pub type AlertFn = Arc<dyn Fn(&str, &str, Value) + Send + Sync>;

/// What every sink's task shares.
pub struct Shared {
    store: Store,
    pop_id: Mutex<String>,
    backlog_alert: u64,
    alert: AlertFn,
}

impl Shared {
    fn pop_id(&self) -> String {
        self.pop_id
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn alert(&self, kind: &str, message: &str, details: Value) {
        (self.alert)(kind, message, details);
    }
}

/// One sink's state for `/healthz`, heartbeats and `/metrics`.
#[derive(Default)]
pub struct SinkStatus {
    inner: Mutex<StatusInner>,
}

#[derive(Default)]
struct StatusInner {
    cursor: Cursor,
    backlog: i64,
    last_success_ms: Option<i64>,
    failing_since_ms: Option<i64>,
    last_error: Option<String>,
}

impl SinkStatus {
    fn lock(&self) -> std::sync::MutexGuard<'_, StatusInner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn set_cursor(&self, c: Cursor) {
        self.lock().cursor = c;
    }

    fn set_backlog(&self, n: i64) {
        self.lock().backlog = n;
    }

    fn delivered_at(&self, ms: i64) {
        self.lock().last_success_ms = Some(ms);
    }

    fn ok(&self) {
        let mut s = self.lock();
        s.failing_since_ms = None;
        s.last_error = None;
    }

    fn failed(&self, error: String) {
        let mut s = self.lock();
        s.failing_since_ms.get_or_insert(crate::store::now_ms());
        s.last_error = Some(error);
    }
}

struct Running {
    stop: CancellationToken,
    sinks: Vec<(config::Sink, Arc<SinkStatus>)>,
}

/// The sinks in force and their tasks.
pub struct Siem {
    store: Store,
    alert: AlertFn,
    shutdown: CancellationToken,
    running: Mutex<Running>,
}

impl Siem {
    pub fn new(store: Store, alert: AlertFn, shutdown: CancellationToken) -> Self {
        Self {
            store,
            alert,
            running: Mutex::new(Running {
                stop: shutdown.child_token(),
                sinks: Vec::new(),
            }),
            shutdown,
        }
    }

    /// Stops the current tasks and starts one per sink of `cfg`. A task stopped mid-batch
    /// loses nothing: its cursor moves only after an acknowledgement.
    pub fn start(&self, cfg: &SiemConfig, pop_id: &str) {
        let shared = Arc::new(Shared {
            store: self.store.clone(),
            pop_id: Mutex::new(pop_id.to_owned()),
            backlog_alert: cfg.backlog_alert,
            alert: self.alert.clone(),
        });
        let stop = self.shutdown.child_token();
        let mut sinks = Vec::new();
        for sink in &cfg.sinks {
            let status = Arc::new(SinkStatus::default());
            tracing::info!(sink = %sink.name, format = sink.format.as_str(), "streaming the audit trail to a SIEM sink");
            tokio::spawn(worker::run(
                shared.clone(),
                sink.clone(),
                status.clone(),
                stop.clone(),
            ));
            sinks.push((sink.clone(), status));
        }
        let old = std::mem::replace(
            &mut *self.running.lock().unwrap_or_else(|p| p.into_inner()),
            Running { stop, sinks },
        );
        old.stop.cancel();
    }

    fn snapshot(&self) -> Vec<(String, &'static str, &'static str, Arc<SinkStatus>)> {
        let r = self.running.lock().unwrap_or_else(|p| p.into_inner());
        r.sinks
            .iter()
            .map(|(s, st)| {
                let kind = match s.target {
                    config::Target::Syslog { .. } => "syslog",
                    config::Target::Http { .. } => "http",
                };
                (s.name.clone(), kind, s.format.as_str(), st.clone())
            })
            .collect()
    }

    /// Backlogs as the database has them now (not as the tasks last saw them).
    async fn backlogs(&self) -> Vec<(String, &'static str, &'static str, Arc<SinkStatus>, i64)> {
        let sinks = self.snapshot();
        let names: Vec<String> = sinks.iter().map(|s| s.0.clone()).collect();
        let backlogs = self
            .store
            .read(move |c| {
                names
                    .iter()
                    .map(|n| cursor::backlog(c, n))
                    .collect::<Result<Vec<_>, _>>()
            })
            .await
            .ok();
        sinks
            .into_iter()
            .enumerate()
            .map(|(i, (n, k, f, st))| {
                let b = backlogs
                    .as_ref()
                    .and_then(|b| b.get(i).copied())
                    .unwrap_or_else(|| st.lock().backlog);
                (n, k, f, st, b)
            })
            .collect()
    }

    /// The `siem` object of `/healthz` and heartbeats: one entry per sink.
    pub async fn report(&self) -> Value {
        let sinks: Vec<Value> = self
            .backlogs()
            .await
            .into_iter()
            .map(|(name, kind, format, st, backlog)| {
                let s = st.lock();
                json!({
                    "name": name,
                    "type": kind,
                    "format": format,
                    "backlog": backlog,
                    "acked_seq": s.cursor.acked_seq,
                    "delivered": s.cursor.delivered,
                    "resent": s.cursor.resent,
                    "skipped": s.cursor.skipped,
                    "last_success": s.last_success_ms.map(timestamp),
                    "failing_since": s.failing_since_ms.map(timestamp),
                    "last_error": s.last_error,
                })
            })
            .collect();
        json!({ "sinks": sinks })
    }

    /// Per-sink gauges for `/metrics`.
    pub async fn register(&self, r: &mut Registry) {
        #[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
        struct Labels {
            sink: String,
        }
        let backlog = Family::<Labels, Gauge>::default();
        let delivered = Family::<Labels, Gauge>::default();
        let resent = Family::<Labels, Gauge>::default();
        let skipped = Family::<Labels, Gauge>::default();
        let failing = Family::<Labels, Gauge>::default();
        for (name, _, _, st, b) in self.backlogs().await {
            let l = Labels { sink: name };
            let s = st.lock();
            backlog.get_or_create(&l).set(b);
            delivered.get_or_create(&l).set(s.cursor.delivered);
            resent.get_or_create(&l).set(s.cursor.resent);
            skipped.get_or_create(&l).set(s.cursor.skipped);
            failing
                .get_or_create(&l)
                .set(i64::from(s.failing_since_ms.is_some()));
        }
        r.register(
            "siem_backlog",
            "Audit events the sink has not acknowledged",
            backlog,
        );
        r.register(
            "siem_delivered",
            "Audit events the sink acknowledged",
            delivered,
        );
        r.register(
            "siem_resent",
            "Audit events sent to the sink again after a failure",
            resent,
        );
        r.register(
            "siem_skipped",
            "Audit events deleted by retention before the sink had them",
            skipped,
        );
        r.register(
            "siem_failing",
            "1 while delivery to the sink fails, else 0",
            failing,
        );
    }
}
