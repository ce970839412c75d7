//! The control plane's use cases over its store and failover machine: take a heartbeat,
//! telemetry or alert; promote; acknowledge; describe every POP. One mutex around both, so a
//! failover decision and the write that makes it durable happen together, and the store's
//! blocking calls run on the blocking pool.
//!
//! Invariant: a changed failover state is written (synchronous=FULL) before the answer that
//! depends on it leaves: the next state is computed on a copy, saved, then put in place.

use super::failover::{
    Beat, Durable, Event, Machine, Mode, PopState, PromoteError, Promotion, Role,
};
use super::settings::CpConfig;
use super::store::{self, AlertFilter, AlertRow, NewAlert, Report, Sample, Store};
use serde_json::Value;
use std::collections::BTreeSet;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

pub use super::failover::Answer;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Store(#[from] store::Error),
    #[error(transparent)]
    Promote(#[from] PromoteError),
    #[error("no POP {0:?} is configured")]
    UnknownPop(String),
    #[error("no alert {0}")]
    UnknownAlert(i64),
    #[error("the control plane's worker failed")]
    Worker,
}

pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// The numbers a heartbeat's `replication` object carries (older POPs send fewer).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Replication {
    pub backlog: Option<i64>,
    pub lag_p50_ms: Option<i64>,
    pub lag_p99_ms: Option<i64>,
    pub committed: Option<i64>,
    pub acked_watermark: Option<i64>,
    pub applied_watermark: Option<i64>,
}

impl Replication {
    pub fn from_json(v: &Value) -> Self {
        let int = |k: &str| v.get(k).and_then(Value::as_i64);
        let lag = |k: &str| {
            v.get("lag_ms")
                .and_then(|l| l.get(k))
                .and_then(Value::as_i64)
        };
        Self {
            backlog: int("backlog"),
            lag_p50_ms: lag("p50"),
            lag_p99_ms: lag("p99"),
            committed: int("committed_version"),
            acked_watermark: int("acked_watermark").or_else(|| int("acked_version")),
            applied_watermark: int("applied_watermark").or_else(|| int("applied_version")),
        }
    }
}

/// A POP as the API and the dashboard show it.
#[derive(Debug, Clone)]
pub struct PopView {
    pub id: String,
    pub region: Option<String>,
    pub state: PopState,
    pub version: Option<String>,
    pub uptime_seconds: Option<i64>,
    pub last_heartbeat_ms: Option<i64>,
    pub reported_role: Option<String>,
    pub reported_epoch: Option<i64>,
    pub replication: Replication,
    pub tarpit_held: Option<i64>,
    pub entries: Option<i64>,
    pub open_alerts: i64,
}

#[derive(Debug, Clone)]
pub struct FailoverView {
    pub mode: Mode,
    pub epoch: u64,
    pub primary: Option<String>,
    pub promotion: Option<Promotion>,
    pub lease_ms: u64,
    pub interval_ms: u64,
    pub missed_heartbeats: u32,
}

pub struct Core {
    store: Store,
    machine: Machine,
    /// POPs already reported stale (one alert per silence).
    stale: BTreeSet<String>,
}

pub struct ControlPlane {
    core: Mutex<Core>,
    config: RwLock<Arc<CpConfig>>,
    /// The dashboard's signed-in operators (in memory: a restart signs everyone out).
    pub sessions: super::dashboard::session::Sessions,
}

fn pop_ids(c: &CpConfig) -> Vec<String> {
    c.pops.iter().map(|p| p.id.clone()).collect()
}

impl ControlPlane {
    /// Opens the store and resumes the failover state saved by the previous run.
    pub fn open(config: CpConfig) -> Result<Arc<Self>, Error> {
        let store = Store::open(&config.data_dir)?;
        let durable = store.load_durable()?;
        if durable != Durable::default() {
            tracing::info!(
                epoch = durable.epoch,
                primary = durable.primary.as_deref().unwrap_or("none"),
                promoting = durable.promotion.as_ref().map_or("none", |p| p.to.as_str()),
                "failover state resumed"
            );
        }
        let machine = Machine::new(
            config.rules.clone(),
            pop_ids(&config),
            durable,
            Instant::now(),
        );
        Ok(Arc::new(Self {
            core: Mutex::new(Core {
                store,
                machine,
                stale: BTreeSet::new(),
            }),
            config: RwLock::new(Arc::new(config)),
            sessions: Default::default(),
        }))
    }

    pub fn config(&self) -> Arc<CpConfig> {
        self.config
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Puts a reloaded config in force (same listen address and data dir).
    pub fn reconfigure(&self, config: CpConfig) {
        self.lock()
            .machine
            .reconfigure(config.rules.clone(), pop_ids(&config));
        *self.config.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(config);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Core> {
        self.core.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Runs `f` on the core on the blocking pool (the store fsyncs).
    pub async fn run<T: Send + 'static>(
        self: &Arc<Self>,
        f: impl FnOnce(&mut Core, &CpConfig) -> Result<T, Error> + Send + 'static,
    ) -> Result<T, Error> {
        let me = self.clone();
        tokio::task::spawn_blocking(move || {
            let config = me.config();
            f(&mut me.lock(), &config)
        })
        .await
        .map_err(|_| Error::Worker)?
    }
}

impl Core {
    /// Replaces the machine with `next`, saving its durable state first when it changed, and
    /// raises the alerts its steps deserve.
    fn commit(
        &mut self,
        mut next: Machine,
        saved_with: impl FnOnce(&mut Store, Option<&Durable>) -> Result<(), Error>,
    ) -> Result<(), Error> {
        let changed = next.durable() != self.machine.durable();
        saved_with(&mut self.store, changed.then(|| next.durable()))?;
        let events = next.take_events();
        self.machine = next;
        for e in events {
            self.note(e);
        }
        Ok(())
    }

    fn note(&mut self, event: Event) {
        let (kind, pop, message, epoch) = match event {
            Event::Adopted { pop, epoch } => {
                tracing::info!(pop = %pop, epoch, "primary adopted: the first POP to report primary");
                return;
            }
            Event::PromotionStarted {
                from,
                to,
                epoch,
                automatic,
            } => {
                let why = if automatic {
                    "automatic failover: the primary missed its heartbeats"
                } else {
                    "an operator asked"
                };
                let message = format!(
                    "promoting {to} to primary at epoch {epoch} ({why}); {} is told to step down",
                    from.as_deref().unwrap_or("no primary")
                );
                ("promotion_started", to, message, epoch)
            }
            Event::PromotionCompleted {
                to,
                epoch,
                acknowledged,
            } => {
                let how = if acknowledged {
                    "the old primary stepped down"
                } else {
                    "the old primary's lease ran out"
                };
                let message = format!("{to} is now the primary at epoch {epoch} ({how})");
                ("promotion_completed", to, message, epoch)
            }
        };
        tracing::warn!(target: "clavitor::alert", alert = kind, pop = %pop, "{message}");
        let alert = NewAlert {
            pop_id: pop,
            kind: kind.to_owned(),
            message,
            details: serde_json::json!({ "epoch": epoch, "source": "control-plane" }),
            pop_time: None,
        };
        if let Err(e) = self.store.add_alert(&alert, now_ms()) {
            tracing::error!(error = %e, "cannot record a failover alert");
        }
    }

    /// A heartbeat from `pop`: stored, then answered with the role, epoch and lease it must hold.
    pub fn heartbeat(&mut self, pop: &str, report: Report, now: Instant) -> Result<Answer, Error> {
        let at = now_ms();
        let rep = Replication::from_json(&report.replication);
        let role = report.role.as_deref().and_then(Role::parse);
        let beat = Beat {
            role,
            epoch: report.epoch.and_then(|e| u64::try_from(e).ok()),
            committed: rep.committed,
            applied: rep.applied_watermark,
        };
        let mut sample = Sample {
            at_ms: at,
            backlog: rep.backlog,
            lag_p50_ms: rep.lag_p50_ms,
            lag_p99_ms: rep.lag_p99_ms,
            committed: rep.committed,
            watermark: if role == Some(Role::Backup) {
                rep.applied_watermark
            } else {
                rep.acked_watermark
            },
            behind: None,
        };
        let mut next = self.machine.clone();
        let answer = next.heartbeat(pop, beat, now);
        sample.behind = next.state(pop, now).behind;
        self.commit(next, |store, durable| {
            Ok(store.heartbeat(pop, &report, &sample, durable, at)?)
        })?;
        self.stale.remove(pop);
        Ok(answer)
    }

    /// Moves time on (automatic failover, promotions completing) and alerts on POPs that
    /// went silent.
    pub fn tick(&mut self, config: &CpConfig, now: Instant) -> Result<(), Error> {
        let mut next = self.machine.clone();
        next.tick(now);
        self.commit(next, |store, durable| match durable {
            Some(d) => Ok(store.save_durable(d, now_ms())?),
            None => Ok(()),
        })?;
        for p in &config.pops {
            if self.machine.heard_from(&p.id)
                && self.machine.is_stale(&p.id, now)
                && self.stale.insert(p.id.clone())
            {
                let message = format!(
                    "no heartbeat from {} for {} missed intervals",
                    p.id, config.rules.missed
                );
                tracing::warn!(target: "clavitor::alert", alert = "heartbeat_missed", pop = %p.id, "{message}");
                self.store.add_alert(
                    &NewAlert {
                        pop_id: p.id.clone(),
                        kind: "heartbeat_missed".to_owned(),
                        message,
                        details: serde_json::json!({ "source": "control-plane" }),
                        pop_time: None,
                    },
                    now_ms(),
                )?;
            }
        }
        Ok(())
    }

    pub fn telemetry(&mut self, pop: &str, body: &Value) -> Result<(), Error> {
        let int = |k: &str| body.get(k).and_then(Value::as_i64);
        Ok(self
            .store
            .telemetry(pop, body, int("tarpit_held"), int("entries"), now_ms())?)
    }

    pub fn alert(&mut self, alert: NewAlert) -> Result<i64, Error> {
        Ok(self.store.add_alert(&alert, now_ms())?)
    }

    pub fn promote(&mut self, to: &str, now: Instant) -> Result<Durable, Error> {
        let mut next = self.machine.clone();
        next.promote(to, now)?;
        self.commit(next, |store, durable| match durable {
            Some(d) => Ok(store.save_durable(d, now_ms())?),
            None => Ok(()),
        })?;
        Ok(self.machine.durable().clone())
    }

    pub fn ack(&mut self, id: i64) -> Result<AlertRow, Error> {
        self.store
            .ack_alert(id, now_ms())?
            .ok_or(Error::UnknownAlert(id))
    }

    pub fn alerts(&self, filter: &AlertFilter) -> Result<Vec<AlertRow>, Error> {
        Ok(self.store.alerts(filter)?)
    }

    pub fn alert_by_id(&self, id: i64) -> Result<AlertRow, Error> {
        self.store.alert(id)?.ok_or(Error::UnknownAlert(id))
    }

    pub fn failover(&self, config: &CpConfig) -> FailoverView {
        let d = self.machine.durable();
        let r = &config.rules;
        FailoverView {
            mode: r.mode,
            epoch: d.epoch,
            primary: d.primary.clone(),
            promotion: d.promotion.clone(),
            lease_ms: r.lease.as_millis() as u64,
            interval_ms: r.interval.as_millis() as u64,
            missed_heartbeats: r.missed,
        }
    }

    /// Every configured POP, in config order.
    pub fn pops(&self, config: &CpConfig, now: Instant) -> Result<Vec<PopView>, Error> {
        let rows = self.store.pop_rows()?;
        let open = self.store.open_alert_counts()?;
        Ok(config
            .pops
            .iter()
            .map(|p| {
                let row = rows
                    .iter()
                    .find(|r| r.id == p.id)
                    .cloned()
                    .unwrap_or_default();
                PopView {
                    id: p.id.clone(),
                    state: self.machine.state(&p.id, now),
                    region: row.region,
                    version: row.version,
                    uptime_seconds: row.uptime_seconds,
                    last_heartbeat_ms: row.last_heartbeat_ms,
                    reported_role: row.reported_role,
                    reported_epoch: row.reported_epoch,
                    replication: Replication::from_json(&row.replication),
                    tarpit_held: row.tarpit_held,
                    entries: row.entries,
                    open_alerts: open.get(&p.id).copied().unwrap_or(0),
                }
            })
            .collect())
    }

    pub fn samples(&self, pop: &str, since_ms: i64) -> Result<Vec<Sample>, Error> {
        Ok(self.store.samples(pop, since_ms)?)
    }
}
