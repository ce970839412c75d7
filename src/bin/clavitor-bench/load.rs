//! The load generator: N keep-alive connections for a warm-up then a measured window.
//!
//! Closed loop (the default, like `wrk`): each connection sends its next request as soon as
//! the previous response arrived. Paced (open loop, like `wrk2`): requests are due at a fixed
//! rate whatever the responses do; a free connection takes the next due request, and latency
//! counts from when it was due, so a stalled server shows up as latency, not as fewer requests.

use crate::http::{Conn, Connector};
use anyhow::{Context, Result};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Writes connection `conn`'s request number `seq` into the (cleared) buffer.
pub type MakeRequest = Arc<dyn Fn(&mut Vec<u8>, usize, u64) + Send + Sync>;

/// Sees the body of every expected response of the measured window, with when it arrived.
pub type OnResponse = Arc<dyn Fn(&[u8], Instant) + Send + Sync>;

pub struct LoadSpec {
    pub addr: SocketAddr,
    pub connector: Connector,
    pub connections: usize,
    pub warmup: Duration,
    pub duration: Duration,
    /// The one status that counts as success (e.g. 200 for reads, 201 for creates).
    pub expect: u16,
    pub make: MakeRequest,
    /// `Some(requests per second)`: paced, open loop. `None`: closed loop.
    pub pace: Option<f64>,
    pub on_response: Option<OnResponse>,
}

#[derive(Debug, Default)]
pub struct LoadResult {
    /// Successful requests that started and finished inside the measured window.
    pub ok: u64,
    /// Responses with another status inside the window.
    pub unexpected: u64,
    /// Broken connections (any time); each is reconnected.
    pub io_errors: u64,
    pub first_problem: Option<String>,
    pub seconds: f64,
    /// Latencies of the successful requests in microseconds, sorted.
    latencies_us: Vec<u32>,
}

impl LoadResult {
    pub fn per_second(&self) -> f64 {
        self.ok as f64 / self.seconds
    }

    /// The `q` quantile (0..=1) of the successful requests' latency, in milliseconds.
    pub fn latency_ms(&self, q: f64) -> f64 {
        let v = &self.latencies_us;
        if v.is_empty() {
            return f64::NAN;
        }
        let rank = ((q * v.len() as f64).ceil() as usize).clamp(1, v.len());
        f64::from(v[rank - 1]) / 1000.0
    }

    /// Fails when nothing succeeded, with the first problem seen, so a misconfigured run
    /// does not print a meaningless zero.
    pub fn require_success(&self, what: &str) -> Result<()> {
        if self.ok == 0 {
            anyhow::bail!(
                "{what}: no request succeeded ({} unexpected statuses, {} connection errors); first problem: {}",
                self.unexpected,
                self.io_errors,
                self.first_problem.as_deref().unwrap_or("none recorded")
            );
        }
        Ok(())
    }
}

#[derive(Default)]
struct ConnStats {
    ok: u64,
    unexpected: u64,
    io_errors: u64,
    first_problem: Option<String>,
    latencies_us: Vec<u32>,
}

/// When paced requests fall due; shared by all connections of one run.
struct Schedule {
    start: Instant,
    interval: Duration,
    next: AtomicU64,
}

impl Schedule {
    /// The next request's due time, or `None` once it would fall after `until`.
    fn take(&self, until: Instant) -> Option<Instant> {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        let due = self.start + self.interval.mul_f64(n as f64);
        (due < until).then_some(due)
    }
}

/// What every connection task of one run shares.
struct Shared {
    make: MakeRequest,
    on_response: Option<OnResponse>,
    connector: Connector,
    addr: SocketAddr,
    expect: u16,
    measure_from: Instant,
    until: Instant,
    schedule: Option<Schedule>,
}

pub async fn run(spec: LoadSpec) -> Result<LoadResult> {
    let mut conns = Vec::with_capacity(spec.connections);
    for _ in 0..spec.connections {
        conns.push(
            spec.connector
                .connect(spec.addr)
                .await
                .with_context(|| format!("cannot connect to {}", spec.addr))?,
        );
    }
    let start = Instant::now();
    let measure_from = start + spec.warmup;
    let until = measure_from + spec.duration;
    let schedule = spec.pace.map(|rate| Schedule {
        start,
        interval: Duration::from_secs_f64(1.0 / rate.max(0.001)),
        next: AtomicU64::new(0),
    });
    let shared = Arc::new(Shared {
        make: spec.make,
        on_response: spec.on_response,
        connector: spec.connector,
        addr: spec.addr,
        expect: spec.expect,
        measure_from,
        until,
        schedule,
    });
    let mut tasks = Vec::with_capacity(conns.len());
    for (i, conn) in conns.into_iter().enumerate() {
        tasks.push(tokio::spawn(drive(conn, i, shared.clone())));
    }
    let mut out = LoadResult {
        seconds: spec.duration.as_secs_f64(),
        ..LoadResult::default()
    };
    for t in tasks {
        let s = t.await.context("a load connection task panicked")?;
        out.ok += s.ok;
        out.unexpected += s.unexpected;
        out.io_errors += s.io_errors;
        if out.first_problem.is_none() {
            out.first_problem = s.first_problem;
        }
        out.latencies_us.extend_from_slice(&s.latencies_us);
    }
    out.latencies_us.sort_unstable();
    Ok(out)
}

async fn drive(mut conn: Conn, idx: usize, sh: Arc<Shared>) -> ConnStats {
    let mut s = ConnStats {
        latencies_us: Vec::with_capacity(64 * 1024),
        ..ConnStats::default()
    };
    let mut req = Vec::with_capacity(1024);
    let mut seq = 0u64;
    let until = sh.until;
    loop {
        let t0 = match &sh.schedule {
            None => Instant::now(),
            Some(schedule) => match schedule.take(until) {
                Some(due) => {
                    tokio::time::sleep_until(due.into()).await;
                    due
                }
                None => break,
            },
        };
        if t0 >= until {
            break;
        }
        req.clear();
        (sh.make)(&mut req, idx, seq);
        seq += 1;
        let res = conn.roundtrip(&req).await;
        let t1 = Instant::now();
        let counted = t0 >= sh.measure_from && t1 <= until;
        match res {
            Ok(status) if status == sh.expect => {
                if counted {
                    s.ok += 1;
                    let us = (t1 - t0).as_micros();
                    s.latencies_us.push(u32::try_from(us).unwrap_or(u32::MAX));
                    if let Some(f) = &sh.on_response {
                        f(conn.body(), t1);
                    }
                }
            }
            Ok(status) => {
                if counted {
                    s.unexpected += 1;
                }
                if s.first_problem.is_none() {
                    let body = String::from_utf8_lossy(conn.body());
                    s.first_problem = Some(format!("HTTP {status}: {}", truncate(&body, 200)));
                }
            }
            Err(e) => {
                s.io_errors += 1;
                if s.first_problem.is_none() {
                    s.first_problem = Some(format!("connection error: {e}"));
                }
                match sh.connector.connect(sh.addr).await {
                    Ok(c) => conn = c,
                    Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
                }
            }
        }
    }
    s
}

fn truncate(s: &str, max: usize) -> &str {
    match s.char_indices().nth(max) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}
