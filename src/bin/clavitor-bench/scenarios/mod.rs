//! The measured scenarios. Each one starts what it needs (real server processes, scratch
//! files), measures, stops it, and returns figures with their same-run references and goals.
//!
//! To add a scenario, write a module with a type implementing [`Scenario`] and list it in
//! [`all`], behind `#[cfg(feature = "commercial")]` where it needs that edition (as the
//! replication and tarpit ones do).

mod agents;
#[cfg(feature = "commercial")]
mod catch_up;
mod cold_start;
mod idle_connections;
mod import;
mod reads;
#[cfg(feature = "commercial")]
mod replication_lag;
#[cfg(feature = "commercial")]
mod replication_throughput;
#[cfg(feature = "commercial")]
mod siem;
#[cfg(feature = "commercial")]
mod tarpit;
mod writes;

use crate::http::{self, Connector};
use crate::load::{self, LoadResult, LoadSpec, MakeRequest};
use crate::proc::{self, ServerProcess, TempDir};
use crate::report::Figure;
use anyhow::{Context, Result};
use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

pub trait Scenario {
    /// Short name, used by `--scenario` and in progress lines.
    fn name(&self) -> &'static str;
    fn run(&self, ctx: &mut Ctx) -> Result<Vec<Figure>>;
}

/// Every scenario, in the order they run.
pub fn all() -> Vec<Box<dyn Scenario>> {
    vec![
        Box::new(reads::Reads),
        Box::new(writes::Writes),
        Box::new(cold_start::ColdStart),
        Box::new(import::Import),
        Box::new(idle_connections::IdleConnections),
        Box::new(agents::Agents),
        #[cfg(feature = "commercial")]
        Box::new(replication_lag::ReplicationLag),
        #[cfg(feature = "commercial")]
        Box::new(catch_up::CatchUp),
        #[cfg(feature = "commercial")]
        Box::new(replication_throughput::ReplicationThroughput),
        #[cfg(feature = "commercial")]
        Box::new(tarpit::Tarpit),
        #[cfg(feature = "commercial")]
        Box::new(siem::Siem),
    ]
}

#[derive(Debug, Clone, Copy)]
pub struct Settings {
    /// Length of each measured window.
    pub duration: Duration,
    /// Unmeasured load before each window.
    pub warmup: Duration,
    /// Concurrent keep-alive connections for the loaded figures.
    pub connections: usize,
    /// Connections held open, idle, in the idle-connections scenario.
    pub idle_connections: usize,
}

pub struct Ctx {
    pub settings: Settings,
    /// Runs the load generator (deliberately small: it shares the CPUs with the server).
    pub rt: tokio::runtime::Runtime,
    pub clavitor: PathBuf,
    /// `--reference-clavitor`: another build measured beside `clavitor` (reads, writes).
    pub reference: Option<PathBuf>,
    pub scratch: TempDir,
    /// A data dir with real content left by an earlier scenario, for the ones that want one.
    pub populated_vault: Option<PathBuf>,
    /// The Commercial binary needs a replication config to start at all; this holds one, and
    /// what the Commercial scenarios share (CA, HTTPS client, options).
    #[cfg(feature = "commercial")]
    pub pop: crate::pop::Kit,
}

impl Ctx {
    pub fn progress(&self, scenario: &str, msg: &str) {
        eprintln!("[{scenario}] {msg}");
    }

    pub fn load(&self, spec: LoadSpec) -> Result<LoadResult> {
        self.rt.block_on(load::run(spec))
    }

    /// A fresh sub-directory of the scratch dir.
    pub fn dir(&self, name: &str) -> Result<PathBuf> {
        let p = self.scratch.path().join(name);
        std::fs::create_dir_all(&p).with_context(|| format!("cannot create {}", p.display()))?;
        Ok(p)
    }

    /// How to reach a server [`Ctx::start_clavitor`] started: plain HTTP (Community) or HTTPS
    /// trusting the bench's POP CA (Commercial: every POP serves HTTPS).
    pub fn vault_connector(&self) -> Connector {
        #[cfg(feature = "commercial")]
        return self.pop.https.clone();
        #[cfg(not(feature = "commercial"))]
        Connector::Plain
    }

    /// What a client command needs to reach [`Ctx::start_clavitor`]'s server besides
    /// `--server` (Commercial: the POP CA).
    pub fn client_args(&self) -> Vec<std::ffi::OsString> {
        #[cfg(feature = "commercial")]
        return vec![
            "--ca-file".into(),
            self.pop
                .standalone_config
                .with_file_name("pop-ca.crt")
                .into(),
        ];
        #[cfg(not(feature = "commercial"))]
        Vec::new()
    }

    /// `clavitor serve --data-dir DATA_DIR --listen 127.0.0.1:0`; an empty dir gets a new vault.
    /// A Commercial build adds a config for a primary whose backup never answers.
    pub fn start_clavitor(&self, data_dir: &Path) -> Result<ServerProcess> {
        self.start_clavitor_with(data_dir, &[])
    }

    /// [`Ctx::start_clavitor`] with extra `serve` arguments.
    pub fn start_clavitor_with(&self, data_dir: &Path, args: &[&str]) -> Result<ServerProcess> {
        self.start_build(&self.clavitor.clone(), data_dir, args)
    }

    /// [`Ctx::start_clavitor`] with another binary (the reference build) and extra `serve`
    /// flags (e.g. `--audit-sync`).
    pub fn start_build(
        &self,
        clavitor: &Path,
        data_dir: &Path,
        extra: &[&str],
    ) -> Result<ServerProcess> {
        let mut cmd = proc::serve_command(clavitor, data_dir, "127.0.0.1:0");
        cmd.args(extra);
        #[cfg(feature = "commercial")]
        cmd.arg("--replication-config")
            .arg(&self.pop.standalone_config);
        self.spawn(
            &format!(
                "clavitor-{}",
                data_dir.file_name().unwrap_or_default().to_string_lossy()
            ),
            cmd,
        )
    }

    /// Starts a server command; its stderr goes to `LABEL.stderr` in the scratch dir.
    pub fn spawn(&self, label: &str, cmd: std::process::Command) -> Result<ServerProcess> {
        let log = self.scratch.path().join(format!("{label}.stderr"));
        ServerProcess::spawn(label, cmd, &log)
    }

    pub fn start_bare(&self) -> Result<ServerProcess> {
        let log = self.scratch.path().join("bare.stderr");
        ServerProcess::spawn("bare axum server", proc::bare_command()?, &log)
    }

    pub fn request(
        &self,
        addr: SocketAddr,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<&str>,
    ) -> Result<(u16, String)> {
        self.rt
            .block_on(http::request_with(
                &self.vault_connector(),
                addr,
                method,
                path,
                token,
                body,
            ))
            .with_context(|| format!("{method} {path} on {addr} failed"))
    }
}

/// `POST /v1/entries` with one vault-tier field, unique per connection and sequence number.
pub fn create_entries(addr: SocketAddr, owner: String) -> MakeRequest {
    Arc::new(move |out: &mut Vec<u8>, conn, seq| {
        let mut body = Vec::with_capacity(160);
        let _ = write!(
            body,
            r#"{{"title":"bench-{conn}-{seq}","fields":[{{"name":"password","value":"secret-{conn}-{seq}-0123456789abcdef","tier":"vault"}}]}}"#
        );
        http::build_request(out, "POST", "/v1/entries", addr, Some(&owner), Some(&body));
    })
}

/// The closed-loop entry creates every write scenario measures: `ctx.settings`' connections,
/// warm-up and window, over `connector`; fails unless they succeeded (`what` names them).
pub fn entry_creates(
    ctx: &Ctx,
    addr: SocketAddr,
    owner: String,
    connector: Connector,
    what: &str,
) -> Result<LoadResult> {
    let s = ctx.settings;
    let r = ctx.load(LoadSpec {
        addr,
        connector,
        connections: s.connections,
        warmup: s.warmup,
        duration: s.duration,
        expect: 201,
        make: create_entries(addr, owner),
        pace: None,
        on_response: None,
    })?;
    r.require_success(what)?;
    Ok(r)
}

/// [`entry_creates`] over HTTPS, to a POP.
#[cfg(feature = "commercial")]
pub fn https_entry_creates(ctx: &Ctx, addr: SocketAddr, owner: String) -> Result<LoadResult> {
    entry_creates(ctx, addr, owner, ctx.pop.https.clone(), "entry creates")
}

/// [`https_entry_creates`] against a fresh primary whose backup is unreachable (`id` names its
/// files and its log), stopped after; `what` is the progress line.
#[cfg(feature = "commercial")]
pub fn lone_primary_entry_creates(
    ctx: &Ctx,
    scenario: &str,
    id: &str,
    what: &str,
) -> Result<LoadResult> {
    let pop = ctx.pop.lone_primary(id)?;
    let server = ctx.spawn(id, pop.serve_command(&ctx.clavitor, "127.0.0.1:0"))?;
    ctx.progress(scenario, what);
    let r = https_entry_creates(ctx, server.addr, owner_token(&pop.data)?)?;
    server.stop()?;
    Ok(r)
}

/// The owner token a new vault saved beside its data dir.
pub fn owner_token(data_dir: &Path) -> Result<String> {
    let p = crate::proc::owner_token_file(data_dir);
    let t = std::fs::read_to_string(&p).with_context(|| format!("cannot read {}", p.display()))?;
    Ok(t.trim().to_owned())
}

/// The value of string field `key` in a JSON object.
pub fn json_str(body: &str, key: &str) -> Result<String> {
    let v: serde_json::Value =
        serde_json::from_str(body).with_context(|| format!("not JSON: {body}"))?;
    v.get(key)
        .and_then(|x| x.as_str())
        .map(str::to_owned)
        .with_context(|| format!("no string {key:?} in {body}"))
}

/// Fails with the server's answer unless it has the expected status.
pub fn expect_status(what: &str, got: (u16, String), want: u16) -> Result<String> {
    if got.0 != want {
        anyhow::bail!("{what}: expected HTTP {want}, got {}: {}", got.0, got.1);
    }
    Ok(got.1)
}
