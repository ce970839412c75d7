//! Tarpit: N concurrent connections sending scanner-style GETs for unknown paths to a
//! Commercial server, all held by its tarpit (30 s, one byte a second). Measured on the server
//! process: resident memory with them held over the same server idle just before, its CPU use
//! while holding them against its CPU use idle, and the time from SIGTERM to exit with them
//! held against the same for an idle server. Over HTTPS, as every POP serves: each held
//! connection also holds a TLS session.

use super::{Ctx, Scenario};
use crate::http::{Connector, Stream};
use crate::os;
use crate::proc::ServerProcess;
use crate::report::{Figure, Goal, Unit, thousands};
use anyhow::{Context, Result, bail, ensure};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{Semaphore, mpsc};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

pub struct Tarpit;

const PATHS: [&str; 6] = [
    "/wp-admin/",
    "/.env",
    "/phpmyadmin/index.php",
    "/wp-login.php",
    "/.git/config",
    "/cgi-bin/admin.cgi",
];
/// Connection attempts in flight at once: stays inside the server's listen backlog.
const CONNECT_AT_ONCE: usize = 128;
/// CPU time is counted in 10 ms ticks: 3 s resolve a third of a percent of one core.
const CPU_WINDOW: Duration = Duration::from_secs(3);
const SETTLE: Duration = Duration::from_secs(1);
/// The tarpit lets go after 30 s; everything held must be measured before then.
const HOLD_BUDGET: Duration = Duration::from_secs(27);
const EXIT_TIMEOUT: Duration = Duration::from_secs(10);

/// What the server's answer looked like: the tarpit streams (chunked), a plain 404 does not.
struct Head {
    status: u16,
    chunked: bool,
}

/// How a held connection ended: `eof` when the server closed it.
struct Ended {
    eof: bool,
}

fn parse_head(buf: &[u8]) -> Result<Option<(Head, usize)>, String> {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut res = httparse::Response::new(&mut headers);
    match res.parse(buf).map_err(|e| format!("bad response: {e}"))? {
        httparse::Status::Partial => Ok(None),
        httparse::Status::Complete(len) => {
            let chunked = res.headers.iter().any(|h| {
                h.name.eq_ignore_ascii_case("transfer-encoding")
                    && String::from_utf8_lossy(h.value).contains("chunked")
            });
            Ok(Some((
                Head {
                    status: res.code.unwrap_or(0),
                    chunked,
                },
                len,
            )))
        }
    }
}

/// Connects, asks for `path`, reports the response head on `ready`, then keeps reading the
/// drip until the server closes the connection or `stop` fires.
async fn hold(
    connector: Connector,
    addr: SocketAddr,
    path: &'static str,
    gate: Arc<Semaphore>,
    ready: mpsc::UnboundedSender<Result<Head, String>>,
    stop: CancellationToken,
) -> Ended {
    let opened = async {
        let _permit = gate.acquire().await.map_err(|e| e.to_string())?;
        let mut s = connector.raw(addr).await.map_err(|e| e.to_string())?;
        let req = format!(
            "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUser-Agent: Mozilla/5.0 (scanner)\r\n\r\n"
        );
        s.write_all(req.as_bytes())
            .await
            .map_err(|e| e.to_string())?;
        let mut buf = Vec::with_capacity(1024);
        let mut chunk = [0u8; 1024];
        loop {
            let n = s.read(&mut chunk).await.map_err(|e| e.to_string())?;
            if n == 0 {
                return Err("closed before a response head".to_owned());
            }
            buf.extend_from_slice(&chunk[..n]);
            if let Some((head, _)) = parse_head(&buf)? {
                return Ok::<(Stream, Head), String>((s, head));
            }
            if buf.len() > 16 * 1024 {
                return Err("response head over 16 KiB".to_owned());
            }
        }
    };
    let mut stream = match opened.await {
        Ok((s, head)) => {
            let _ = ready.send(Ok(head));
            s
        }
        Err(e) => {
            let _ = ready.send(Err(e));
            return Ended { eof: false };
        }
    };
    let mut drip = [0u8; 256];
    loop {
        tokio::select! {
            r = stream.read(&mut drip) => match r {
                Ok(0) | Err(_) => return Ended { eof: true },
                Ok(_) => {}
            },
            () = stop.cancelled() => return Ended { eof: false },
        }
    }
}

/// Starts `n` held connections into `tasks`; returns once every one has its tarpit response
/// head (in seconds since `t_open`), or fails with what the others got instead.
async fn open_all(
    connector: &Connector,
    addr: SocketAddr,
    n: usize,
    tasks: &mut JoinSet<Ended>,
    stop: &CancellationToken,
    t_open: Instant,
) -> Result<f64> {
    let gate = Arc::new(Semaphore::new(CONNECT_AT_ONCE));
    let (tx, mut rx) = mpsc::unbounded_channel();
    for i in 0..n {
        tasks.spawn(hold(
            connector.clone(),
            addr,
            PATHS[i % PATHS.len()],
            gate.clone(),
            tx.clone(),
            stop.clone(),
        ));
    }
    drop(tx);
    let mut problems = Vec::new();
    let mut tarpitted = 0;
    let deadline = tokio::time::Instant::from_std(t_open + HOLD_BUDGET);
    // Each task reports once; the senders live on in the tasks that hold a connection.
    for _ in 0..n {
        let Ok(Some(r)) = tokio::time::timeout_at(deadline, rx.recv()).await else {
            break;
        };
        match r {
            Ok(Head {
                status: 404,
                chunked: true,
            }) => tarpitted += 1,
            Ok(h) => problems.push(format!("HTTP {} (chunked: {})", h.status, h.chunked)),
            Err(e) => problems.push(e),
        }
    }
    let open_seconds = t_open.elapsed().as_secs_f64();
    ensure!(
        tarpitted == n,
        "{tarpitted} of {n} connections were tarpitted after {open_seconds:.1} s; first problems: {:?}",
        &problems[..problems.len().min(3)]
    );
    Ok(open_seconds)
}

/// One request past the cap must get a plain 404 at once: proof that the tarpit holds all N.
/// Returns how long that answer took, in milliseconds.
async fn probe_over_cap(connector: &Connector, addr: SocketAddr) -> Result<f64> {
    let t0 = Instant::now();
    let mut probe = connector.connect(addr).await?;
    let (status, _) = tokio::time::timeout(
        Duration::from_secs(5),
        probe.request(addr, "GET", "/wp-login.php", None, None),
    )
    .await
    .context("the request past the tarpit cap was not answered at once")??;
    ensure!(
        status == 404,
        "the request past the tarpit cap got HTTP {status}"
    );
    Ok(t0.elapsed().as_secs_f64() * 1e3)
}

/// CPU the process used over `window`, as a percentage of one core.
async fn cpu_percent(pid: u32, window: Duration) -> Result<f64> {
    let c0 = os::cpu_seconds(pid)?;
    let t0 = Instant::now();
    tokio::time::sleep(window).await;
    let c1 = os::cpu_seconds(pid)?;
    Ok((c1 - c0) / t0.elapsed().as_secs_f64() * 100.0)
}

/// A few ordinary requests, so the baseline includes a server that has served something.
async fn warm(connector: &Connector, addr: SocketAddr) -> Result<()> {
    let mut conn = connector.connect(addr).await?;
    for _ in 0..20 {
        let (status, body) = conn.request(addr, "GET", "/healthz", None, None).await?;
        ensure!(status == 200, "GET /healthz: HTTP {status}: {body}");
    }
    Ok(())
}

/// SIGTERM, then the time until the process has exited (checked every millisecond).
fn time_exit(server: &mut ServerProcess, pid: u32) -> Result<(f64, Option<i32>)> {
    let t0 = Instant::now();
    os::sigterm(pid)?;
    match server.wait_exit(EXIT_TIMEOUT)? {
        Some(st) => Ok((t0.elapsed().as_secs_f64() * 1e3, st.code())),
        None => bail!("the server had not exited {EXIT_TIMEOUT:?} after SIGTERM"),
    }
}

struct Measured {
    rss_idle: u64,
    rss_held: u64,
    cpu_idle: f64,
    cpu_held: f64,
    exit_held_ms: f64,
    exit_code: Option<i32>,
    exit_idle_ms: f64,
    open_seconds: f64,
    closed_by_server: usize,
    cap_probe_ms: f64,
}

fn measure(ctx: &Ctx, scenario: &str, n: usize) -> Result<Measured> {
    let label = "https";
    let connector = ctx.pop.https.clone();
    let lone = ctx.pop.lone_primary(&format!("tarpit-{label}"))?;
    let command = || {
        let mut cmd = lone.serve_command(&ctx.clavitor, "127.0.0.1:0");
        cmd.arg("--tarpit-cap").arg(n.to_string());
        cmd
    };
    let mut server = ctx.spawn(&format!("tarpit-{label}"), command())?;
    let pid = server.pid().context("the server has no pid")?;
    let addr = server.addr;
    let stop = CancellationToken::new();
    let mut tasks = JoinSet::new();

    ctx.progress(
        scenario,
        &format!("{label}: idle baseline, then {n} connections to unknown paths"),
    );
    let held = ctx.rt.block_on(async {
        warm(&connector, addr).await?;
        tokio::time::sleep(Duration::from_millis(500)).await;
        let rss_idle = os::rss_bytes(pid)?;
        let cpu_idle = cpu_percent(pid, CPU_WINDOW).await?;

        let t_open = Instant::now();
        let open_seconds = open_all(&connector, addr, n, &mut tasks, &stop, t_open).await?;
        let cap_probe_ms = probe_over_cap(&connector, addr).await?;

        tokio::time::sleep(SETTLE).await;
        let rss_held = os::rss_bytes(pid)?;
        let cpu_held = cpu_percent(pid, CPU_WINDOW).await?;
        ensure!(
            t_open.elapsed() < HOLD_BUDGET,
            "holding took {:.1} s; past {HOLD_BUDGET:?} the tarpit starts letting go",
            t_open.elapsed().as_secs_f64()
        );
        Ok::<_, anyhow::Error>((
            rss_idle,
            cpu_idle,
            rss_held,
            cpu_held,
            open_seconds,
            cap_probe_ms,
        ))
    });
    let (rss_idle, cpu_idle, rss_held, cpu_held, open_seconds, cap_probe_ms) = match held {
        Ok(v) => v,
        Err(e) => {
            stop.cancel();
            return Err(e);
        }
    };

    ctx.progress(scenario, &format!("{label}: SIGTERM with {n} held"));
    let (exit_held_ms, exit_code) = time_exit(&mut server, pid)?;
    let closed_by_server = ctx.rt.block_on(async {
        // The server is gone: every held connection should see its end promptly.
        let mut closed = 0;
        let _ = tokio::time::timeout(Duration::from_secs(2), async {
            while let Some(r) = tasks.join_next().await {
                if r.is_ok_and(|e| e.eof) {
                    closed += 1;
                }
            }
        })
        .await;
        closed
    });
    stop.cancel();
    ctx.rt
        .block_on(async { while tasks.join_next().await.is_some() {} });

    // The reference: the same server, idle, stopped the same way.
    let mut idle = ctx.spawn(&format!("tarpit-{label}-idle"), command())?;
    let idle_pid = idle.pid().context("the server has no pid")?;
    ctx.rt.block_on(warm(&connector, idle.addr))?;
    let (exit_idle_ms, _) = time_exit(&mut idle, idle_pid)?;

    Ok(Measured {
        rss_idle,
        rss_held,
        cpu_idle,
        cpu_held,
        exit_held_ms,
        exit_code,
        exit_idle_ms,
        open_seconds,
        closed_by_server,
        cap_probe_ms,
    })
}

impl Scenario for Tarpit {
    fn name(&self) -> &'static str {
        "tarpit"
    }

    fn run(&self, ctx: &mut Ctx) -> Result<Vec<Figure>> {
        let n = usize::try_from(ctx.pop.opts.tarpit_connections)?;
        // Both this process and the server (which inherits the limit) hold one descriptor per
        // connection, plus their usual few dozen.
        let want = n as u64 + 512;
        let limit = os::raise_nofile(want)?;
        if limit < want {
            bail!(
                "the open-files limit is {limit} and cannot be raised to {want} (the hard limit is lower). Fix: raise it (e.g. `ulimit -Hn {want}` as root) or pass a smaller --tarpit-connections"
            );
        }
        let mut figures = Vec::new();
        {
            let m = measure(ctx, self.name(), n)?;
            let t = "HTTPS";
            let held = thousands(n as f64);
            let extra = m.rss_held.saturating_sub(m.rss_idle) as f64 / 1e6;
            let details = |f: Figure| {
                f.detail("connections", n as u64)
                    .detail("rss_idle_bytes", m.rss_idle)
                    .detail("rss_held_bytes", m.rss_held)
                    .detail(
                        "extra_bytes_per_connection",
                        m.rss_held.saturating_sub(m.rss_idle) / n.max(1) as u64,
                    )
                    .detail("seconds_to_open_all", m.open_seconds)
                    .detail("over_cap_404_ms", m.cap_probe_ms)
                    .detail("exit_code", m.exit_code)
                    .detail("connections_closed_by_server", m.closed_by_server as u64)
                    .detail("open_files_limit", limit)
            };
            figures.push(details(
                Figure::new(
                    "tarpit_extra_rss_mb_https",
                    format!("Tarpit extra RSS, {held} held, {t}"),
                    extra,
                    Unit::Megabytes,
                )
                .reference("idle RSS", m.rss_idle as f64 / 1e6)
                .goal(Goal {
                    below: Some(30.0),
                    ..Goal::default()
                }),
            ));
            figures.push(details(
                Figure::new(
                    "tarpit_cpu_percent_https",
                    format!("Tarpit server CPU, {held} held, {t}"),
                    m.cpu_held,
                    Unit::CorePercent,
                )
                .reference("idle", m.cpu_idle),
            ));
            figures.push(details(
                Figure::new(
                    "tarpit_sigterm_exit_ms_https",
                    format!("SIGTERM to exit, {held} held, {t}"),
                    m.exit_held_ms,
                    Unit::Millis,
                )
                .reference("idle", m.exit_idle_ms)
                .goal(Goal {
                    at_most: Some(1000.0),
                    ..Goal::default()
                }),
            ));
        }
        Ok(figures)
    }
}
