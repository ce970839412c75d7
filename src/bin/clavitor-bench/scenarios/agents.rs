//! Agents (issue 14): the proxy's overhead against calling the same HTTPS upstream directly,
//! `clavitor run`'s start-up with a warm server, and what 1,000 `run --watch` subscribers
//! (long polls on `GET /v1/changes`) cost field reads while values change.

use super::{Ctx, Scenario, expect_status, json_str, owner_token};
use crate::http::{Connector, build_request};
use crate::load::{LoadResult, LoadSpec, MakeRequest};
use crate::report::{Figure, Goal, Unit};
use anyhow::{Context, Result, bail, ensure};
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio_rustls::rustls::{self, ClientConfig, RootCertStore};

pub struct Agents;

const USE_VALUE: &str = "sk-bench-use-0123456789abcdef";
const READ_VALUE: &str = "rd-bench-read-0123456789abcdef";
const WATCHERS: usize = 1000;
/// Writes per second to a watched entry while reads are measured (each wakes every watcher).
const WRITES_PER_SECOND: u64 = 10;
const RUN_SAMPLES: usize = 20;

/// A CA and a certificate for 127.0.0.1 (the upstream), written as PEM files in `dir`.
/// Returns (CA file, cert file, key file, a client config trusting the CA).
fn upstream_pki(dir: &Path) -> Result<(PathBuf, PathBuf, PathBuf, Arc<ClientConfig>)> {
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = CertifiedIssuer::self_signed(params, KeyPair::generate()?)?;
    let key = KeyPair::generate()?;
    let leaf = CertificateParams::new(vec!["127.0.0.1".to_owned()])?.signed_by(&key, &*ca)?;
    let (ca_file, cert_file, key_file) = (
        dir.join("upstream-ca.pem"),
        dir.join("upstream.pem"),
        dir.join("upstream.key"),
    );
    std::fs::write(&ca_file, ca.pem())?;
    std::fs::write(&cert_file, leaf.pem())?;
    std::fs::write(&key_file, key.serialize_pem())?;
    let mut roots = RootCertStore::empty();
    roots.add(ca.der().clone())?;
    let cfg =
        ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots)
            .with_no_client_auth();
    Ok((ca_file, cert_file, key_file, Arc::new(cfg)))
}

fn fixed(
    addr: SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&str>,
) -> MakeRequest {
    let mut req = Vec::new();
    build_request(&mut req, method, path, addr, token, body.map(str::as_bytes));
    Arc::new(move |out: &mut Vec<u8>, _, _| out.extend_from_slice(&req))
}

fn counts(f: Figure, r: &LoadResult) -> Figure {
    f.detail("ok", r.ok)
        .detail("unexpected_status", r.unexpected)
        .detail("connection_errors", r.io_errors)
        .detail("requests_per_second", r.per_second())
}

fn median_ms(mut v: Vec<Duration>) -> f64 {
    v.sort();
    v[v.len() / 2].as_secs_f64() * 1000.0
}

impl Scenario for Agents {
    fn name(&self) -> &'static str {
        "agents"
    }

    fn run(&self, ctx: &mut Ctx) -> Result<Vec<Figure>> {
        let s = ctx.settings;
        let n = s.connections;
        let dir = ctx.dir("agents")?;
        let (ca_file, cert, key, upstream_tls) = upstream_pki(&dir)?;
        let mut cmd = crate::proc::bare_command()?;
        cmd.arg("--bare-tls").arg(&cert).arg(&key);
        let upstream = ctx.spawn("upstream", cmd)?;

        let data = dir.join("vault");
        let ca = ca_file.display().to_string();
        let server = ctx.start_clavitor_with(&data, &["--enable-proxy", "--proxy-ca-file", &ca])?;
        let addr = server.addr;
        let owner = owner_token(&data)?;
        let entry = format!(
            r#"{{"title":"bench-api","fields":[
                {{"name":"key","value":"{USE_VALUE}","tier":"credential","scope":"bench","agent_access":"use","allowed_hosts":["127.0.0.1"]}},
                {{"name":"token","value":"{READ_VALUE}","tier":"credential","scope":"bench"}}]}}"#
        );
        let created = ctx.request(addr, "POST", "/v1/entries", Some(&owner), Some(&entry))?;
        let id = json_str(&expect_status("create entry", created, 201)?, "id")?;
        let agent = r#"{"name":"bench-agent","scopes":["bench"],"rate_limit_per_minute":1000000}"#;
        let created = ctx.request(addr, "POST", "/v1/agents", Some(&owner), Some(agent))?;
        let agent_token = json_str(&expect_status("create agent", created, 201)?, "token")?;

        // 1. The proxy against a direct call to the same upstream.
        let direct_conn = Connector::Tls(upstream_tls);
        let bearer = format!("Bearer {USE_VALUE}");
        let direct = {
            let mut req = Vec::new();
            build_request(&mut req, "GET", "/v1/echo", upstream.addr, None, None);
            // The same Authorization header the proxy sends.
            let head_end = req.windows(4).position(|w| w == b"\r\n\r\n").unwrap_or(0);
            let mut with_auth = req[..head_end].to_vec();
            with_auth.extend_from_slice(format!("\r\nauthorization: {bearer}").as_bytes());
            with_auth.extend_from_slice(&req[head_end..]);
            Arc::new(move |out: &mut Vec<u8>, _: usize, _: u64| out.extend_from_slice(&with_auth))
                as MakeRequest
        };
        let body = format!(
            r#"{{"method":"GET","url":"https://127.0.0.1:{}/v1/echo","headers":{{"Authorization":"Bearer {{{{clavitor://bench-api/key}}}}"}}}}"#,
            upstream.addr.port()
        );
        let check = ctx.request(addr, "POST", "/v1/proxy", Some(&agent_token), Some(&body))?;
        let answer = expect_status("proxy call", check, 200)?;
        ensure!(
            answer.contains("\"status\":200") && !answer.contains(USE_VALUE),
            "unexpected proxy answer: {answer}"
        );
        let proxied = fixed(addr, "POST", "/v1/proxy", Some(&agent_token), Some(&body));
        let spec = |addr, connector: Connector, make: &MakeRequest, connections| LoadSpec {
            addr,
            connector,
            connections,
            warmup: s.warmup,
            duration: s.duration,
            expect: 200,
            make: make.clone(),
            pace: None,
            on_response: None,
        };
        let vault = ctx.vault_connector();
        ctx.progress(self.name(), "direct upstream calls, 1 connection");
        let direct_1 = ctx.load(spec(upstream.addr, direct_conn.clone(), &direct, 1))?;
        direct_1.require_success("direct calls")?;
        ctx.progress(self.name(), "proxied calls, 1 connection");
        let proxy_1 = ctx.load(spec(addr, vault.clone(), &proxied, 1))?;
        proxy_1.require_success("proxied calls")?;
        ctx.progress(
            self.name(),
            &format!("direct upstream calls, {n} connections"),
        );
        let direct_n = ctx.load(spec(upstream.addr, direct_conn, &direct, n))?;
        direct_n.require_success("direct calls")?;
        ctx.progress(self.name(), &format!("proxied calls, {n} connections"));
        let proxy_n = ctx.load(spec(addr, vault.clone(), &proxied, n))?;
        proxy_n.require_success("proxied calls")?;
        upstream.stop()?;

        // 2. `clavitor run` from start to its child's exit (the child does nothing).
        ctx.progress(self.name(), "clavitor run start-up");
        let token_file = dir.join("agent.token");
        std::fs::write(&token_file, &agent_token)?;
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&token_file, std::fs::Permissions::from_mode(0o600))?;
        }
        let url = format!(
            "{}://{addr}",
            if ctx.client_args().is_empty() {
                "http"
            } else {
                "https"
            }
        );
        let cli = |args: &[&str]| -> Result<Duration> {
            let mut cmd = std::process::Command::new(&ctx.clavitor);
            // The client's flags go right after the subcommand: after `run ... --` they would
            // be the child's arguments.
            let (sub, rest) = args.split_first().expect("a subcommand");
            cmd.arg(sub)
                .arg("--server")
                .arg(&url)
                .arg("--token-file")
                .arg(&token_file)
                .args(ctx.client_args())
                .args(rest)
                .env_remove("CLAVITOR_TOKEN")
                .stdout(std::process::Stdio::null());
            let started = Instant::now();
            let st = cmd.status().context("cannot run clavitor")?;
            let took = started.elapsed();
            if !st.success() {
                bail!("clavitor {args:?} failed: {st}");
            }
            Ok(took)
        };
        let reference = "clavitor://bench-api/token";
        let env = format!("K={reference}");
        let mut runs = Vec::new();
        let mut reads = Vec::new();
        for _ in 0..RUN_SAMPLES {
            runs.push(cli(&["run", "--env", &env, "--", "/bin/true"])?);
            reads.push(cli(&["read", reference])?);
        }
        let (run_ms, read_ms) = (median_ms(runs), median_ms(reads));

        // 3. Field reads with and without 1,000 watchers, values changing 10 times a second.
        let path = format!("/v1/entries/{id}/fields/token");
        let read = fixed(addr, "GET", &path, Some(&agent_token), None);
        let stop = Arc::new(AtomicBool::new(false));
        let writes = Arc::new(AtomicU64::new(0));
        let writer = {
            let (stop, writes, owner, vault) =
                (stop.clone(), writes.clone(), owner.clone(), vault.clone());
            let put = format!("/v1/entries/{id}");
            ctx.rt.spawn(async move {
                let mut conn = vault.connect(addr).await.ok();
                let mut req = Vec::new();
                let mut i = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    i += 1;
                    let body = format!(
                        r#"{{"title":"bench-api","fields":[
                            {{"name":"key","value":"{USE_VALUE}","tier":"credential","scope":"bench"}},
                            {{"name":"token","value":"{READ_VALUE}-{i}","tier":"credential","scope":"bench"}}]}}"#
                    );
                    req.clear();
                    build_request(&mut req, "PUT", &put, addr, Some(&owner), Some(body.as_bytes()));
                    if let Some(c) = conn.as_mut()
                        && matches!(c.roundtrip(&req).await, Ok(200))
                    {
                        writes.fetch_add(1, Ordering::Relaxed);
                    }
                    tokio::time::sleep(Duration::from_millis(1000 / WRITES_PER_SECOND)).await;
                }
            })
        };
        ctx.progress(
            self.name(),
            &format!("field reads, {n} connections, no watchers"),
        );
        let plain = ctx.load(spec(addr, vault.clone(), &read, n))?;
        plain.require_success("reads without watchers")?;

        ctx.progress(self.name(), &format!("starting {WATCHERS} watchers"));
        let wakes = Arc::new(AtomicU64::new(0));
        let watching = Arc::new(AtomicU64::new(0));
        let mut watchers = Vec::new();
        for _ in 0..WATCHERS {
            let (stop, wakes, watching, vault, token) = (
                stop.clone(),
                wakes.clone(),
                watching.clone(),
                vault.clone(),
                agent_token.clone(),
            );
            watchers.push(ctx.rt.spawn(async move {
                let Ok(mut conn) = vault.connect(addr).await else {
                    return;
                };
                let mut req = Vec::new();
                build_request(&mut req, "GET", "/v1/changes", addr, Some(&token), None);
                if conn.roundtrip(&req).await.is_err() {
                    return;
                }
                let mut since = version_of(conn.body());
                watching.fetch_add(1, Ordering::Relaxed);
                while !stop.load(Ordering::Relaxed) {
                    req.clear();
                    let path = format!("/v1/changes?since={since}&wait=25");
                    build_request(&mut req, "GET", &path, addr, Some(&token), None);
                    match conn.roundtrip(&req).await {
                        Ok(200) => {
                            since = version_of(conn.body());
                            wakes.fetch_add(1, Ordering::Relaxed);
                        }
                        _ => return,
                    }
                }
            }));
        }
        // Waited for on the runtime: with one client thread it is a current-thread runtime,
        // which runs the watchers only while something blocks on it.
        let deadline = Instant::now() + Duration::from_secs(30);
        ctx.rt.block_on(async {
            while watching.load(Ordering::Relaxed) < WATCHERS as u64 && Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        });
        let watching_now = watching.load(Ordering::Relaxed);
        ensure!(
            watching_now == WATCHERS as u64,
            "only {watching_now} watchers connected"
        );
        let wakes_before = wakes.load(Ordering::Relaxed);
        let writes_before = writes.load(Ordering::Relaxed);
        ctx.progress(
            self.name(),
            &format!("field reads, {n} connections, {WATCHERS} watchers"),
        );
        let watched = ctx.load(spec(addr, vault, &read, n))?;
        watched.require_success("reads with watchers")?;
        let woken = wakes.load(Ordering::Relaxed) - wakes_before;
        let written = writes.load(Ordering::Relaxed) - writes_before;
        stop.store(true, Ordering::Relaxed);
        server.stop()?;
        ctx.rt.block_on(async {
            let _ = tokio::time::timeout(Duration::from_secs(5), writer).await;
            for w in watchers {
                w.abort();
            }
        });

        Ok(vec![
            counts(
                Figure::new(
                    "proxy_p50_ms_1conn",
                    "Proxy call p50, 1 conn",
                    proxy_1.latency_ms(0.5),
                    Unit::Millis,
                )
                .reference("direct", direct_1.latency_ms(0.5)),
                &proxy_1,
            ),
            counts(
                Figure::new(
                    "proxy_per_second",
                    format!("Proxy calls/s, {n} conns"),
                    proxy_n.per_second(),
                    Unit::PerSecond,
                )
                .reference("direct", direct_n.per_second()),
                &proxy_n,
            )
            .detail("connections", n as u64),
            Figure::new(
                "run_startup_ms",
                "`run` start to child exit, p50",
                run_ms,
                Unit::Millis,
            )
            .reference("clavitor read", read_ms)
            .goal(Goal {
                below: Some(50.0),
                ..Goal::default()
            })
            .detail("samples", RUN_SAMPLES as u64),
            counts(
                Figure::new(
                    "reads_with_watchers",
                    format!("Reads/s, {n} conns, {WATCHERS} watchers"),
                    watched.per_second(),
                    Unit::PerSecond,
                )
                .reference("no watchers", plain.per_second()),
                &watched,
            )
            .detail("watchers", WATCHERS as u64)
            .detail("writes_during_window", written)
            .detail("watcher_wakeups_during_window", woken),
        ])
    }
}

/// `version` of a `/v1/changes` answer (0 if unreadable).
fn version_of(body: &[u8]) -> i64 {
    serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v["version"].as_i64())
        .unwrap_or(0)
}
