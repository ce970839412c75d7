//! Idle connections: N (default 10,000) keep-alive connections, each served one request and
//! then left idle, held open against one server. Measured on the server process: resident
//! memory with them open over the same server just before (warmed, no connections), its CPU
//! use while they sit idle, and the time from SIGTERM to exit with all of them open. Checked:
//! every connection is still open and usable when measured (the idle timeout is lengthened
//! with the hidden `--idle-timeout-ms`, so opening 10,000 cannot outlast it).

use super::{Ctx, Scenario};
use crate::http::{self, Conn, Connector};
use crate::os;
use crate::proc::ServerProcess;
use crate::report::{Figure, Goal, Unit, thousands};
use anyhow::{Context, Result, bail, ensure};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

pub struct IdleConnections;

/// Connection attempts in flight at once: stays inside the server's listen backlog.
const CONNECT_AT_ONCE: usize = 128;
/// CPU time is counted in 10 ms ticks: 3 s resolve a third of a percent of one core.
const CPU_WINDOW: Duration = Duration::from_secs(3);
const SETTLE: Duration = Duration::from_secs(1);
/// Long enough that no connection times out while the rest are opened and measured.
const IDLE_TIMEOUT_MS: &str = "600000";
/// Connections re-used after the measurement, to prove they were still open.
const PROBES: usize = 100;
const EXIT_TIMEOUT: Duration = Duration::from_secs(10);
/// The goal: under 32 KB a connection (320 MB for 10,000), so the default cap of 4,096 costs
/// under 128 MB even when every connection is open. hyper alone keeps two 8 KiB buffers per
/// HTTP/1 connection.
const MB_PER_10K_GOAL: f64 = 320.0;

/// Opens one connection and has it served one request.
async fn open_one(connector: Connector, addr: SocketAddr, gate: Arc<Semaphore>) -> Result<Conn> {
    let _permit = gate.acquire().await?;
    let mut conn = connector.connect(addr).await?;
    let mut req = Vec::new();
    http::build_request(&mut req, "GET", "/healthz", addr, None, None);
    let status = conn.roundtrip(&req).await?;
    ensure!(status == 200, "GET /healthz: HTTP {status}");
    Ok(conn)
}

async fn cpu_percent(pid: u32, window: Duration) -> Result<f64> {
    let c0 = os::cpu_seconds(pid)?;
    let t0 = Instant::now();
    tokio::time::sleep(window).await;
    let c1 = os::cpu_seconds(pid)?;
    Ok((c1 - c0) / t0.elapsed().as_secs_f64() * 100.0)
}

struct Measured {
    rss_before: u64,
    rss_held: u64,
    cpu_held: f64,
    open_seconds: f64,
    exit_ms: f64,
    exit_code: Option<i32>,
}

fn measure(ctx: &Ctx, scenario: &str, n: usize) -> Result<Measured> {
    let data = ctx.dir("idle-connections")?;
    let cap = (n + 100).to_string();
    let mut server: ServerProcess = ctx.start_clavitor_with(
        &data,
        &[
            "--max-connections",
            &cap,
            "--idle-timeout-ms",
            IDLE_TIMEOUT_MS,
        ],
    )?;
    let pid = server.pid().context("the server has no pid")?;
    let addr = server.addr;
    let connector = ctx.vault_connector();
    ctx.progress(scenario, &format!("baseline, then {n} idle connections"));
    let (rss_before, rss_held, cpu_held, open_seconds, conns) = ctx.rt.block_on(async {
        // Warm: the runtime's threads and the router have served something.
        let mut warm = connector.connect(addr).await?;
        let mut req = Vec::new();
        http::build_request(&mut req, "GET", "/healthz", addr, None, None);
        for _ in 0..20 {
            warm.roundtrip(&req).await?;
        }
        drop(warm);
        tokio::time::sleep(SETTLE).await;
        let rss_before = os::rss_bytes(pid)?;

        let t0 = Instant::now();
        let gate = Arc::new(Semaphore::new(CONNECT_AT_ONCE));
        let mut tasks = JoinSet::new();
        for _ in 0..n {
            tasks.spawn(open_one(connector.clone(), addr, gate.clone()));
        }
        let mut conns = Vec::with_capacity(n);
        while let Some(r) = tasks.join_next().await {
            conns.push(r.context("connection task")??);
        }
        let open_seconds = t0.elapsed().as_secs_f64();

        tokio::time::sleep(SETTLE).await;
        let rss_held = os::rss_bytes(pid)?;
        let cpu_held = cpu_percent(pid, CPU_WINDOW).await?;

        // Still open and served: the measurement was of live connections.
        for conn in conns.iter_mut().step_by((n / PROBES).max(1)) {
            let status = conn
                .roundtrip(&req)
                .await
                .context("an idle connection was closed before the measurement ended")?;
            ensure!(
                status == 200,
                "GET /healthz on an idle connection: HTTP {status}"
            );
        }
        Ok::<_, anyhow::Error>((rss_before, rss_held, cpu_held, open_seconds, conns))
    })?;

    ctx.progress(scenario, &format!("SIGTERM with {n} connections open"));
    let t0 = Instant::now();
    os::sigterm(pid)?;
    let status = server.wait_exit(EXIT_TIMEOUT)?;
    let exit_ms = t0.elapsed().as_secs_f64() * 1e3;
    drop(conns);
    let Some(status) = status else {
        bail!("the server had not exited {EXIT_TIMEOUT:?} after SIGTERM");
    };
    Ok(Measured {
        rss_before,
        rss_held,
        cpu_held,
        open_seconds,
        exit_ms,
        exit_code: status.code(),
    })
}

impl Scenario for IdleConnections {
    fn name(&self) -> &'static str {
        "idle-connections"
    }

    fn run(&self, ctx: &mut Ctx) -> Result<Vec<Figure>> {
        let n = ctx.settings.idle_connections;
        // This process and the server (which inherits the limit) each hold one descriptor per
        // connection, plus their usual few dozen (the server keeps 64 for itself).
        let want = n as u64 + 512;
        let limit = os::raise_nofile(want)?;
        if limit < want {
            bail!(
                "the open-files limit is {limit} and cannot be raised to {want} (the hard limit is lower). Fix: raise it (e.g. `ulimit -Hn {want}` as root) or pass a smaller --idle-connections"
            );
        }
        let m = measure(ctx, self.name(), n)?;
        let extra = m.rss_held.saturating_sub(m.rss_before);
        let held = thousands(n as f64);
        let details = |f: Figure| {
            f.detail("connections", n as u64)
                .detail("rss_before_bytes", m.rss_before)
                .detail("rss_held_bytes", m.rss_held)
                .detail("extra_bytes_per_connection", extra / n.max(1) as u64)
                .detail("seconds_to_open_all", m.open_seconds)
                .detail("exit_code", m.exit_code)
                .detail("open_files_limit", limit)
        };
        Ok(vec![
            details(
                Figure::new(
                    "idle_connections_extra_rss_mb",
                    format!("Server RSS added by {held} idle connections"),
                    extra as f64 / 1e6,
                    Unit::Megabytes,
                )
                .reference("RSS before", m.rss_before as f64 / 1e6)
                .goal(Goal {
                    below: Some(MB_PER_10K_GOAL * n as f64 / 10_000.0),
                    ..Goal::default()
                }),
            ),
            details(Figure::new(
                "idle_connections_cpu_percent",
                format!("Server CPU with {held} idle connections"),
                m.cpu_held,
                Unit::CorePercent,
            )),
            details(
                Figure::new(
                    "idle_connections_sigterm_exit_ms",
                    format!("SIGTERM to exit, {held} idle connections"),
                    m.exit_ms,
                    Unit::Millis,
                )
                .goal(Goal {
                    at_most: Some(1000.0),
                    ..Goal::default()
                }),
            ),
        ])
    }
}
