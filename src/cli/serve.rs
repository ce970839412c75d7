//! `clavitor init` and `clavitor serve`.

use crate::crypto::MasterKey;
use crate::datadir::{self, DataDir};
use crate::edition::{self, ServeFlags};
use crate::server::{self, ServeConfig, Server};
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
    /// Adopt an existing master key (mode 0600) instead of generating one, e.g. to
    /// provision a backup POP with its primary's key.
    #[arg(long, value_name = "FILE")]
    master_key: Option<PathBuf>,
    /// Print `{"owner_token":"..."}` on stdout.
    #[arg(long)]
    json: bool,
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
    #[command(flatten)]
    edition: ServeFlags,
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
    let (store, _master, init) = runtime()?.block_on(async {
        let r = dir.init(key).await?;
        r.0.close().await;
        Ok::<_, datadir::Error>(r)
    })?;
    drop(store);
    let token = init.owner_token.expose();
    if a.json {
        println!("{}", serde_json::json!({ "owner_token": token }));
    } else {
        println!("Initialised a new vault in {}", dir.path().display());
        println!(
            "Owner token (shown once; also saved to {}):",
            dir.owner_token().display()
        );
        println!("{token}");
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
        tls,
        max_connections: a
            .max_connections
            .map(|n| usize::try_from(n).unwrap_or(usize::MAX)),
        idle_timeout: a
            .idle_timeout_ms
            .map_or(defaults.idle_timeout, std::time::Duration::from_millis),
    };
    rt.block_on(async move {
        let stop = shutdown::install().context("cannot listen for SIGTERM/SIGINT")?;
        let server = Server::build(cfg).await?;
        if let Some(t) = &server.new_owner_token {
            eprintln!(
                "Initialised a new vault. Owner token (shown once; saved to the data dir's owner.token):\n{}",
                t.expose()
            );
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
