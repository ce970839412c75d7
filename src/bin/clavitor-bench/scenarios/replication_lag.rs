//! Replication lag: a primary and a backup POP (two processes, mutual TLS between them), client
//! entry creates paced at a fixed rate (open loop) over HTTPS to the primary. Reported twice:
//! the primary's own commit -> acknowledged-by-backup lag from `/healthz`, and the bench's
//! independent view, from each write's 201 until the backup's recovery point
//! (`applied_watermark` in its `/healthz`) covers it: until then a failover could lose it.

use super::{Ctx, Scenario, create_entries};
use crate::http::Connector;
use crate::load::{self, LoadResult, LoadSpec, OnResponse};
use crate::pop::health::{Prober, Replication};
use crate::report::{Figure, Goal, Unit, thousands};
use anyhow::{Context, Result, bail};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub struct ReplicationLag;

/// How often the bench asks the backup what it has applied: the resolution of its own lag
/// figure, at a cost of one small HTTPS request per interval to the backup.
const POLL_EVERY: Duration = Duration::from_millis(2);
const SETTLE: Duration = Duration::from_secs(30);

/// `(version, when its 201 arrived)` for every write of the measured window.
type Acks = Arc<Mutex<Vec<(i64, Instant)>>>;

fn version_of(body: &[u8]) -> Option<i64> {
    serde_json::from_slice::<serde_json::Value>(body)
        .ok()?
        .get("version")?
        .as_i64()
}

/// Samples the backup's `applied_watermark` until it reaches `target` (0: not known yet). The
/// highest version it applied (`applied_version`) would be too early: batches land out of
/// order, so a version below it may still be missing.
async fn poll_applied(
    addr: SocketAddr,
    connector: Connector,
    target: Arc<AtomicI64>,
) -> Result<Vec<(Instant, i64)>> {
    let mut probe = Prober::new(addr, connector);
    let mut samples = Vec::with_capacity(16 * 1024);
    let mut ticker = tokio::time::interval(POLL_EVERY);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        let r = probe.get().await?;
        samples.push((Instant::now(), r.applied_watermark));
        let t = target.load(Ordering::Acquire);
        if t > 0 && r.applied_watermark >= t {
            return Ok(samples);
        }
    }
}

/// Per write: the time from its 201 to the first backup sample whose recovery point covers it
/// (0 when it did before the client heard back). Also how many were never covered.
fn visible_lags(acks: &[(i64, Instant)], samples: &[(Instant, i64)]) -> (Vec<f64>, usize) {
    let mut running = 0;
    let applied: Vec<i64> = samples
        .iter()
        .map(|(_, v)| {
            running = running.max(*v);
            running
        })
        .collect();
    let mut lags = Vec::with_capacity(acks.len());
    let mut unseen = 0;
    for (v, at) in acks {
        let i = applied.partition_point(|a| a < v);
        match samples.get(i) {
            Some((seen, _)) => lags.push(seen.saturating_duration_since(*at).as_secs_f64() * 1e3),
            None => unseen += 1,
        }
    }
    lags.sort_by(f64::total_cmp);
    (lags, unseen)
}

fn quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

impl Scenario for ReplicationLag {
    fn name(&self) -> &'static str {
        "replication-lag"
    }

    fn run(&self, ctx: &mut Ctx) -> Result<Vec<Figure>> {
        let s = ctx.settings;
        let rate = ctx.pop.opts.replication_rate as f64;
        let https = ctx.pop.https.clone();
        let pair = ctx.pop.pair("lag")?;
        let backup = ctx.spawn(
            "lag-backup",
            pair.backup
                .serve_command(&ctx.clavitor, &pair.backup_listen),
        )?;
        let primary = ctx.spawn(
            "lag-primary",
            pair.primary.serve_command(&ctx.clavitor, "127.0.0.1:0"),
        )?;
        let (paddr, baddr) = (primary.addr, backup.addr);
        let owner = pair.owner_token()?;
        ctx.rt.block_on(Prober::new(paddr, https.clone()).wait(
            "the primary to replicate its owner to the backup",
            Duration::from_millis(20),
            SETTLE,
            Replication::caught_up,
        ))?;

        let acks: Acks = Arc::default();
        let on_response: OnResponse = {
            let acks = acks.clone();
            Arc::new(move |body: &[u8], at| {
                if let Some(v) = version_of(body) {
                    acks.lock().unwrap_or_else(|p| p.into_inner()).push((v, at));
                }
            })
        };
        let spec = LoadSpec {
            addr: paddr,
            connector: https.clone(),
            connections: s.connections,
            warmup: s.warmup,
            duration: s.duration,
            expect: 201,
            make: create_entries(paddr, owner),
            pace: Some(rate),
            on_response: Some(on_response),
        };
        ctx.progress(
            self.name(),
            &format!(
                "{rate} entry creates/s over HTTPS to the primary (up to {} connections), {} s; backup polled every {POLL_EVERY:?}",
                s.connections,
                s.duration.as_secs_f64()
            ),
        );
        let target = Arc::new(AtomicI64::new(0));
        let (writes, samples): (LoadResult, Vec<(Instant, i64)>) = ctx.rt.block_on(async {
            let poller = tokio::spawn(poll_applied(baddr, https.clone(), target.clone()));
            let writes = match load::run(spec).await {
                Ok(w) => w,
                Err(e) => {
                    poller.abort();
                    return Err(e);
                }
            };
            let last = acks
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .iter()
                .map(|(v, _)| *v)
                .max()
                .unwrap_or(1);
            target.store(last, Ordering::Release);
            let samples = match tokio::time::timeout(SETTLE, poller).await {
                Ok(joined) => joined.context("the backup poller panicked")??,
                Err(_) => {
                    bail!("the backup's applied_watermark had not reached version {last} {SETTLE:?} after the load")
                }
            };
            Ok::<_, anyhow::Error>((writes, samples))
        })?;
        writes.require_success("paced entry creates")?;
        let after = ctx.rt.block_on(Prober::new(paddr, https).wait(
            "the primary to report everything acknowledged",
            Duration::from_millis(20),
            SETTLE,
            Replication::caught_up,
        ))?;
        primary.stop()?;
        backup.stop()?;

        let acks = std::mem::take(&mut *acks.lock().unwrap_or_else(|p| p.into_inner()));
        let (visible, unseen) = visible_lags(&acks, &samples);
        let nan = |v: Option<f64>| v.unwrap_or(f64::NAN);
        let details = |f: Figure| {
            f.detail("target_per_second", rate)
                .detail("achieved_per_second", writes.per_second())
                .detail("writes", writes.ok)
                .detail("unexpected_status", writes.unexpected)
                .detail("connection_errors", writes.io_errors)
                .detail("backup_samples", samples.len() as u64)
                .detail("poll_every_ms", POLL_EVERY.as_secs_f64() * 1e3)
                .detail("writes_never_seen_on_backup", unseen as u64)
        };
        let p99_goal = Goal {
            below: Some(20.0),
            ..Goal::default()
        };
        Ok(vec![
            details(
                Figure::new(
                    "replication_paced_writes_per_second",
                    format!(
                        "Paced writes/s, HTTPS, backup on (target {})",
                        thousands(rate)
                    ),
                    writes.per_second(),
                    Unit::PerSecond,
                )
                .reference("target", rate),
            ),
            details(
                Figure::new(
                    "replication_lag_p50_ms",
                    "Replication lag p50 (primary /healthz)",
                    nan(after.lag_p50_ms),
                    Unit::Millis,
                )
                .reference("write p50", writes.latency_ms(0.50)),
            ),
            details(
                Figure::new(
                    "replication_lag_p99_ms",
                    "Replication lag p99 (primary /healthz)",
                    nan(after.lag_p99_ms),
                    Unit::Millis,
                )
                .reference("write p99", writes.latency_ms(0.99))
                .goal(p99_goal),
            ),
            details(
                Figure::new(
                    "replication_visible_p50_ms",
                    "201 -> in the backup's recovery point p50 (bench)",
                    quantile(&visible, 0.50),
                    Unit::Millis,
                )
                .reference("write p50", writes.latency_ms(0.50)),
            ),
            details(
                Figure::new(
                    "replication_visible_p99_ms",
                    "201 -> in the backup's recovery point p99 (bench)",
                    quantile(&visible, 0.99),
                    Unit::Millis,
                )
                .reference("write p99", writes.latency_ms(0.99))
                .goal(p99_goal),
            ),
        ])
    }
}
