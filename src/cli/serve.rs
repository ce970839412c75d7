//! `clavitor init` and `clavitor serve`.

use crate::crypto::MasterKey;
use crate::datadir::{self, DataDir, InitOptions};
use crate::edition::{self, ServeFlags};
use crate::server::{self, ProxySettings, ServeConfig, Server};
use crate::transport::TlsFiles;
use crate::{files, shutdown};
use anyhow::{Context, Result};
use clap::{Args, ValueEnum};
use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;

#[derive(Debug, Args)]
pub struct InitArgs {
    /// Where the vault lives.
    #[arg(long, default_value = datadir::DEFAULT_DIR)]
    data_dir: PathBuf,
    /// Adopt an existing master key (mode 0600) instead of generating one, to provision a
    /// backup POP with its primary's key. Such a vault has no owner of its own: its owner comes
    /// from the primary.
    #[arg(long, value_name = "FILE")]
    master_key: Option<PathBuf>,
    #[command(flatten)]
    token_out: TokenOut,
    /// Print `{"owner_token":"..."}` on stdout.
    #[arg(long)]
    json: bool,
}

/// Where a new vault's owner token is saved.
#[derive(Debug, Args)]
struct TokenOut {
    /// Save a new vault's owner token to FILE (mode 0600; must not exist; never inside the data
    /// dir). Default: $XDG_CONFIG_HOME/clavitor/token, else ~/.config/clavitor/token, where the
    /// client commands look for it. An old owner.token found in the data dir is moved there too.
    #[arg(long, value_name = "FILE")]
    owner_token_out: Option<PathBuf>,
}

impl TokenOut {
    fn path(self) -> Option<PathBuf> {
        self.owner_token_out.or_else(files::default_token_path)
    }
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    #[arg(long, default_value = datadir::DEFAULT_DIR)]
    data_dir: PathBuf,
    /// Address to listen on; port 0 picks a free port.
    #[arg(long, default_value = server::DEFAULT_LISTEN)]
    listen: SocketAddr,
    /// Log verbosity: error, warn, info, debug or trace.
    #[arg(long, default_value = "info")]
    log_level: String,
    #[arg(long, value_enum, default_value = "text")]
    log_format: LogFormat,
    /// Serve https with this PEM certificate (chain); needs --tls-key.
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// The PEM private key of --tls-cert (mode 0600).
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Connections open at once; past that new ones wait until one closes [default: 4096,
    /// lowered to fit the open-files limit].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    max_connections: Option<u64>,
    /// For tests: how long a connection may go without a request in flight (milliseconds).
    #[arg(long, hide = true, value_name = "MS", value_parser = clap::value_parser!(u64).range(1..))]
    idle_timeout_ms: Option<u64>,
    /// Serve POST /v1/proxy: agents send requests with {{clavitor://ENTRY/FIELD}} placeholders
    /// that the server fills in, to hosts an owner listed on the fields. The only outbound
    /// connections the server makes; off by default.
    #[arg(long)]
    enable_proxy: bool,
    /// For tests: trust only this PEM CA for proxy upstreams (default: the system's CAs).
    #[arg(long, hide = true, value_name = "FILE", requires = "enable_proxy")]
    proxy_ca_file: Option<PathBuf>,
    #[command(flatten)]
    token_out: TokenOut,
    #[command(flatten)]
    audit: AuditFlags,
    #[command(flatten)]
    edition: ServeFlags,
}

/// How the audit trail runs.
#[derive(Debug, Args)]
struct AuditFlags {
    /// Answer a read only once its audit event is on disk (default: the event is committed
    /// with the next group commit, within milliseconds, without the read waiting for it).
    #[arg(long)]
    audit_sync: bool,
    /// Delete audit events older than this (e.g. 400d, 12h; units s, m, h, d). Default: keep
    /// every event. The trail still verifies from the first event kept.
    #[arg(long, value_name = "DURATION", value_parser = parse_retention)]
    audit_retention: Option<std::time::Duration>,
    /// Alert the operator when the data dir's filesystem has less than this many MiB free
    /// (checked every minute): a full disk stops the audit trail, and with it every request.
    #[arg(long, value_name = "MIB", default_value_t = crate::service::AuditOptions::default().disk_alert_below / (1024 * 1024))]
    disk_alert_mib: u64,
    /// Benchmark reference only: do not record reads.
    #[arg(long, hide = true)]
    audit_no_reads: bool,
}

impl AuditFlags {
    fn options(&self) -> crate::service::AuditOptions {
        crate::service::AuditOptions {
            sync: self.audit_sync,
            reads: !self.audit_no_reads,
            retention: self.audit_retention,
            disk_alert_below: self.disk_alert_mib.saturating_mul(1024 * 1024),
        }
    }
}

/// `90d`, `12h`, `30m`, `45s`: a whole number and a unit.
fn parse_retention(text: &str) -> Result<std::time::Duration, String> {
    let fix = "write a whole number and a unit: s, m, h or d (e.g. 400d)";
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (n, unit) = t.split_at(split);
    let n: u64 = n.parse().map_err(|_| format!("{text:?}: {fix}"))?;
    let secs = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err(format!("{text:?}: {fix}")),
    };
    if n == 0 {
        return Err(format!(
            "{text:?}: a retention of zero would delete every event; {fix}"
        ));
    }
    n.checked_mul(secs)
        .map(std::time::Duration::from_secs)
        .ok_or_else(|| format!("{text:?} is too long"))
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

pub fn init(a: InitArgs) -> Result<()> {
    let key = match &a.master_key {
        Some(p) => {
            let raw = files::read_private(p)?;
            Some(MasterKey::from_bytes(&raw).with_context(|| {
                format!(
                    "{}: not a master key (expected exactly 32 bytes)",
                    p.display()
                )
            })?)
        }
        None => None,
    };
    let dir = DataDir::new(&a.data_dir);
    let token_out = a.token_out.path();
    let opened = runtime()?.block_on(async {
        let opened = dir
            .init(InitOptions {
                master_key: key,
                owner_token_out: token_out.as_deref(),
            })
            .await?;
        opened.store.close().await;
        Ok::<_, datadir::Error>(opened)
    })?;
    let shown = dir.path().display();
    match (&opened.new_owner, a.json) {
        (Some(o), true) => println!("{}", serde_json::json!({ "owner_token": o.token.expose() })),
        (Some(o), false) => {
            println!("Initialised a new vault in {shown}");
            println!(
                "Owner token (shown once; saved to {}, where the client commands find it):",
                o.saved_to.display()
            );
            println!("{}", o.token.expose());
        }
        (None, true) => println!("{}", serde_json::json!({ "owner_token": null })),
        (None, false) => {
            println!("Initialised a backup POP's vault in {shown} with the given master key.");
            println!(
                "It has no owner of its own and no token was written: its owner and agents come from the primary, and their tokens work here once they have arrived."
            );
        }
    }
    Ok(())
}

fn init_logging(level: &str, format: LogFormat) -> Result<()> {
    let filter =
        tracing_subscriber::EnvFilter::try_new(format!("{level},tower_http=warn,hyper=warn"))
            .with_context(|| {
                format!("--log-level {level:?}: use error, warn, info, debug or trace")
            })?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
    Ok(())
}

pub fn serve(a: ServeArgs) -> Result<()> {
    init_logging(&a.log_level, a.log_format)?;
    let rt = runtime()?;
    println!(
        "Starting Clavitor Vault v{} - {}",
        env!("CARGO_PKG_VERSION"),
        edition::TITLE
    );
    let tls = match (a.tls_cert, a.tls_key) {
        (Some(cert), Some(key)) => Some(TlsFiles { cert, key }),
        _ => None,
    };
    let defaults = ServeConfig::default();
    let cfg = ServeConfig {
        data_dir: a.data_dir,
        listen: a.listen,
        edition: a.edition,
        owner_token_out: a.token_out.path(),
        tls,
        max_connections: a
            .max_connections
            .map(|n| usize::try_from(n).unwrap_or(usize::MAX)),
        idle_timeout: a
            .idle_timeout_ms
            .map_or(defaults.idle_timeout, std::time::Duration::from_millis),
        audit: a.audit.options(),
        proxy: ProxySettings {
            enabled: a.enable_proxy,
            ca_file: a.proxy_ca_file,
        },
    };
    let data_dir = cfg.data_dir.clone();
    rt.block_on(async move {
        let stop = shutdown::install().context("cannot listen for SIGTERM/SIGINT")?;
        let server = Server::build(cfg).await?;
        for notice in &server.notices {
            tracing::warn!("{notice}");
        }
        if let (Some(t), Some(file)) = (&server.new_owner_token, &server.owner_token_file) {
            let (dir, file) = (data_dir.display(), file.display());
            // Stderr that is not a terminal ends up in a log (journald keeps it): there the
            // token is not shown, only where it is.
            if std::io::IsTerminal::is_terminal(&std::io::stderr()) {
                eprintln!(
                    "Initialised a new vault in {dir}. Owner token (shown once; saved to {file}):\n{}",
                    t.expose()
                );
            } else {
                eprintln!(
                    "Initialised a new vault in {dir}. The owner token is saved in {file} (mode 0600), where the client commands find it; it is printed only on a terminal."
                );
            }
        }
        let mut out = std::io::stdout().lock();
        for line in server.edition().startup_lines() {
            writeln!(out, "{line}")?;
        }
        writeln!(
            out,
            "listening on {}://{}",
            server.url_scheme(),
            server.local_addr()
        )?;
        out.flush()?;
        drop(out);
        tracing::info!(addr = %server.local_addr(), edition = edition::NAME, "serving");
        server.run(stop).await?;
        tracing::info!("stopped");
        Ok(())
    })
}
