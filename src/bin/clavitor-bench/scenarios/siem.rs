//! SIEM streaming: what each sink sustains and what streaming costs requests.
//!
//! 1. Request cost: closed-loop entry creates over HTTPS against a lone primary without sinks,
//!    then against one streaming to a syslog-over-TLS sink and an HTTPS sink (both `json`)
//!    served by this process on loopback. The figure is writes/s with sinks, beside without.
//! 2. Sink throughput: the same vault restarted with two sinks of new names, whose cursors
//!    start at the first event: the whole trail is their backlog. Events/s is that backlog
//!    over the time until each collector holds the last seq (the POP otherwise idle).

use super::{Ctx, Scenario, https_entry_creates, lone_primary_entry_creates};
use crate::pop::certs::Ca;
use crate::pop::files::{PopFiles, write_file};
use crate::report::{Figure, Unit};
use anyhow::{Context, Result, bail};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::io::AsyncReadExt;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls;

pub struct Siem;

const DRAIN: Duration = Duration::from_secs(300);

/// What a collector counted: events and the highest seq seen.
#[derive(Default)]
struct Seen {
    events: AtomicU64,
    max_seq: AtomicI64,
}

impl Seen {
    fn note(&self, seq: i64) {
        self.events.fetch_add(1, Ordering::Relaxed);
        self.max_seq.fetch_max(seq, Ordering::Relaxed);
    }
}

/// The `"seq":N` of a `json` event line (the first `"seq":` in it is the event's own).
fn seq_in(line: &[u8]) -> Option<i64> {
    let text = std::str::from_utf8(line).ok()?;
    let at = text.find("\"seq\":")? + 6;
    let digits: String = text[at..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().ok()
}

/// Both collectors, on their own thread and runtime (not the load generator's).
struct Collectors {
    syslog: SocketAddr,
    http: SocketAddr,
    syslog_seen: Arc<Seen>,
    http_seen: Arc<Seen>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for Collectors {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Collectors {
    fn start(ca: &Ca) -> Result<Self> {
        let leaf = ca.leaf("collector")?;
        let certs = rustls_pemfile_certs(&leaf.cert_pem)?;
        use rustls::pki_types::pem::PemObject;
        let key = rustls::pki_types::PrivateKeyDer::from_pem_slice(leaf.key_pem.as_bytes())
            .context("collector key")?;
        let cfg = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(certs, key)?;
        let acceptor = TlsAcceptor::from(Arc::new(cfg));
        let syslog_l = std::net::TcpListener::bind("127.0.0.1:0")?;
        let http_l = std::net::TcpListener::bind("127.0.0.1:0")?;
        syslog_l.set_nonblocking(true)?;
        http_l.set_nonblocking(true)?;
        let (syslog, http) = (syslog_l.local_addr()?, http_l.local_addr()?);
        let syslog_seen = Arc::new(Seen::default());
        let http_seen = Arc::new(Seen::default());
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let (ss, hs) = (syslog_seen.clone(), http_seen.clone());
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("collector runtime");
            rt.block_on(async move {
                let syslog_l = tokio::net::TcpListener::from_std(syslog_l).expect("listener");
                let http_l = tokio::net::TcpListener::from_std(http_l).expect("listener");
                let a = acceptor.clone();
                let sys = tokio::spawn(async move {
                    while let Ok((tcp, _)) = syslog_l.accept().await {
                        let (a, ss) = (a.clone(), ss.clone());
                        tokio::spawn(async move {
                            if let Ok(tls) = a.accept(tcp).await {
                                read_syslog(tls, &ss).await;
                            }
                        });
                    }
                });
                let web = tokio::spawn(async move {
                    while let Ok((tcp, _)) = http_l.accept().await {
                        let (a, hs) = (acceptor.clone(), hs.clone());
                        tokio::spawn(async move {
                            if let Ok(tls) = a.accept(tcp).await {
                                serve_http(tls, hs).await;
                            }
                        });
                    }
                });
                let _ = rx.await;
                sys.abort();
                web.abort();
            });
        });
        Ok(Self {
            syslog,
            http,
            syslog_seen,
            http_seen,
            stop: Some(tx),
            thread: Some(thread),
        })
    }
}

fn rustls_pemfile_certs(pem: &str) -> Result<Vec<rustls::pki_types::CertificateDer<'static>>> {
    use rustls::pki_types::pem::PemObject;
    rustls::pki_types::CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .context("collector certificate")
}

async fn read_syslog(mut s: tokio_rustls::server::TlsStream<tokio::net::TcpStream>, seen: &Seen) {
    let mut buf = Vec::new();
    let mut chunk = vec![0u8; 64 * 1024];
    loop {
        match s.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
        let mut at = 0;
        while let Some(sp) = buf[at..].iter().position(|b| *b == b' ') {
            let Some(len) = std::str::from_utf8(&buf[at..at + sp])
                .ok()
                .and_then(|t| t.parse::<usize>().ok())
            else {
                return;
            };
            let start = at + sp + 1;
            if buf.len() < start + len {
                break;
            }
            if let Some(seq) = seq_in(&buf[start..start + len]) {
                seen.note(seq);
            }
            at = start + len;
        }
        buf.drain(..at);
    }
}

async fn serve_http(s: tokio_rustls::server::TlsStream<tokio::net::TcpStream>, seen: Arc<Seen>) {
    use hyper_util::rt::{TokioExecutor, TokioIo};
    let app = axum::Router::new().fallback(axum::routing::any(move |body: axum::body::Bytes| {
        let seen = seen.clone();
        async move {
            for line in body.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
                if let Some(seq) = seq_in(line) {
                    seen.note(seq);
                }
            }
            "ok"
        }
    }));
    let service = hyper_util::service::TowerToHyperService::new(app);
    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
        .serve_connection(TokioIo::new(s), service)
        .await;
}

/// Appends a `siem:` block naming both collectors (sink names get `suffix`).
fn add_sinks(pop: &PopFiles, ca: &Ca, c: &Collectors, suffix: &str) -> Result<()> {
    let dir = pop.config.parent().context("config dir")?;
    let ca_file = dir.join("siem-ca.crt");
    write_file(&ca_file, &ca.pem(), 0o644)?;
    let token_file = dir.join("collector.token");
    write_file(&token_file, "bench-collector-token\n", 0o600)?;
    let mut y = std::fs::read_to_string(&pop.config)?;
    let q = |p: &std::path::Path| format!("{:?}", p.display().to_string());
    y.push_str(&format!(
        "siem:\n  sinks:\n    - {{name: syslog{suffix}, type: syslog, address: \"{}\", ca_file: {}, format: json, batch_size: 1000}}\n    - {{name: http{suffix}, type: http, url: \"https://{}/ingest\", token_file: {}, ca_file: {}, format: json, batch_size: 1000}}\n",
        c.syslog,
        q(&ca_file),
        c.http,
        q(&token_file),
        q(&ca_file)
    ));
    std::fs::write(&pop.config, y)?;
    Ok(())
}

/// Waits until both collectors hold `seq`; when each did, from `started`.
fn wait_both(seen: [&Seen; 2], seq: i64, started: Instant) -> Result<[Duration; 2]> {
    let mut took: [Option<Duration>; 2] = [None, None];
    while took.iter().any(Option::is_none) {
        for (i, s) in seen.iter().enumerate() {
            if took[i].is_none() && s.max_seq.load(Ordering::Relaxed) >= seq {
                took[i] = Some(started.elapsed());
            }
        }
        if started.elapsed() > DRAIN {
            bail!("the collectors did not get seq {seq} within {DRAIN:?}");
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    Ok(took.map(Option::unwrap_or_default))
}

impl Scenario for Siem {
    fn name(&self) -> &'static str {
        "siem"
    }

    fn run(&self, ctx: &mut Ctx) -> Result<Vec<Figure>> {
        let s = ctx.settings;
        let n = s.connections;
        let ca = Ca::new()?;
        let collectors = Collectors::start(&ca)?;

        let off = lone_primary_entry_creates(
            ctx,
            self.name(),
            "siem-off",
            &format!("no sinks: entry creates, {n} connections"),
        )?;

        let pop = ctx.pop.lone_primary("siem-on")?;
        let pristine = std::fs::read_to_string(&pop.config)?;
        add_sinks(&pop, &ca, &collectors, "")?;
        let server = ctx.spawn("siem-on", pop.serve_command(&ctx.clavitor, "127.0.0.1:0"))?;
        ctx.progress(
            self.name(),
            &format!("syslog + https sinks: entry creates, {n} connections"),
        );
        let owner = super::owner_token(&pop.data)?;
        let on = https_entry_creates(ctx, server.addr, owner)?;
        server.stop()?;

        // The whole trail as backlog for two fresh cursors.
        std::fs::write(&pop.config, pristine)?;
        let backlog_collectors = Collectors::start(&ca)?;
        add_sinks(&pop, &ca, &backlog_collectors, "-replay")?;
        let server = ctx.spawn(
            "siem-replay",
            pop.serve_command(&ctx.clavitor, "127.0.0.1:0"),
        )?;
        // From "listening": the sinks start at the same moment; start-up is not theirs.
        let started = Instant::now();
        // The last event written before the restart; the restart appends none of its own.
        let last = on.ok as i64;
        ctx.progress(
            self.name(),
            &format!("replaying a backlog of at least {last} events to both sinks"),
        );
        let [syslog_took, http_took] = wait_both(
            [
                &backlog_collectors.syslog_seen,
                &backlog_collectors.http_seen,
            ],
            last,
            started,
        )?;
        server.stop()?;
        let rate = |seen: &Seen, took: Duration| {
            seen.events.load(Ordering::Relaxed) as f64 / took.as_secs_f64()
        };
        let syslog_rate = rate(&backlog_collectors.syslog_seen, syslog_took);
        let http_rate = rate(&backlog_collectors.http_seen, http_took);
        let live_events = collectors.syslog_seen.events.load(Ordering::Relaxed);
        Ok(vec![
            Figure::new(
                "siem_on_writes_per_second",
                format!("Writes/s, HTTPS, {n} conns, 2 SIEM sinks"),
                on.per_second(),
                Unit::PerSecond,
            )
            .reference("no sinks", off.per_second())
            .detail("events_streamed_during_window_syslog", live_events)
            .detail(
                "events_streamed_during_window_http",
                collectors.http_seen.events.load(Ordering::Relaxed),
            ),
            Figure::new(
                "siem_syslog_events_per_second",
                "SIEM syslog/TLS sink, backlog replay (json)",
                syslog_rate,
                Unit::PerSecond,
            )
            .detail(
                "events",
                backlog_collectors
                    .syslog_seen
                    .events
                    .load(Ordering::Relaxed),
            )
            .detail("seconds", syslog_took.as_secs_f64()),
            Figure::new(
                "siem_http_events_per_second",
                "SIEM HTTPS sink, backlog replay (json lines)",
                http_rate,
                Unit::PerSecond,
            )
            .detail(
                "events",
                backlog_collectors.http_seen.events.load(Ordering::Relaxed),
            )
            .detail("seconds", http_took.as_secs_f64()),
        ])
    }
}
