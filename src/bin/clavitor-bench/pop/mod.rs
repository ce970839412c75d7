//! Commercial-edition machinery for the bench: the POP CA, POP directories and configs, the
//! bench's HTTPS client, `/healthz` replication probes, pre-filling a vault through the
//! library. Compiled only with `--features commercial`, like the scenarios that use it.

pub mod certs;
pub mod files;
pub mod health;
pub mod prefill;

use crate::http::Connector;
use anyhow::{Context, Result};
use certs::Ca;
use files::PopFiles;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Copy, clap::Args)]
#[command(next_help_heading = "Commercial scenarios")]
pub struct Options {
    /// Paced client writes per second during replication-lag.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..=100_000))]
    pub replication_rate: u64,
    /// Entries owed to the backup when it comes back, in catch-up.
    #[arg(long, default_value_t = 100_000, value_parser = clap::value_parser!(u64).range(1..=10_000_000))]
    pub catchup_entries: u64,
    /// Connections held by the tarpit in the tarpit scenario (the server gets this --tarpit-cap).
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..=50_000))]
    pub tarpit_connections: u64,
}

/// What every Commercial start needs, made once per run.
pub struct Kit {
    pub opts: Options,
    clavitor: PathBuf,
    dir: PathBuf,
    ca: Ca,
    /// HTTPS trusting the POP CA, for talking to POPs that serve TLS.
    pub https: Connector,
    /// `replication.yaml` of a primary whose backup never answers: the nearest the Commercial
    /// binary comes to a standalone server (it refuses to start without a config). HTTPS, like
    /// every POP.
    pub standalone_config: PathBuf,
}

impl Kit {
    pub fn new(opts: Options, clavitor: &Path, scratch: &Path) -> Result<Self> {
        let dir = scratch.join("pops");
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("cannot create {}", dir.display()))?;
        let ca = Ca::new()?;
        let https = Connector::Tls(ca.client_config()?);
        let mut kit = Self {
            opts,
            clavitor: clavitor.to_owned(),
            dir,
            ca,
            https,
            standalone_config: PathBuf::new(),
        };
        kit.standalone_config = kit.lone_primary("standalone")?.config;
        Ok(kit)
    }

    /// A fresh primary (data dir not yet created: `serve` initialises it) whose backup URL
    /// points at a closed local port, so every push fails fast with "connection refused".
    pub fn lone_primary(&self, id: &str) -> Result<PopFiles> {
        let pop = PopFiles::create(&self.clavitor, &self.dir, id, &self.ca)?;
        let url = format!("https://127.0.0.1:{}", closed_port()?);
        pop.write_primary("nowhere", &url, &pop.token_file)?;
        Ok(pop)
    }

    /// A provisioned primary and backup: one CA, mutual TLS, the backup holding the primary's
    /// master key, the primary pushing to the backup's (reserved) port.
    pub fn pair(&self, name: &str) -> Result<Pair> {
        let primary = PopFiles::create(
            &self.clavitor,
            &self.dir,
            &format!("{name}-primary"),
            &self.ca,
        )?;
        let backup = PopFiles::create(
            &self.clavitor,
            &self.dir,
            &format!("{name}-backup"),
            &self.ca,
        )?;
        primary.init(&self.clavitor, None)?;
        backup.init(&self.clavitor, Some(&primary.master_key()))?;
        backup.write_backup(&primary.id)?;
        let backup_listen = format!("127.0.0.1:{}", closed_port()?);
        primary.write_primary(
            &backup.id,
            &format!("https://{backup_listen}"),
            &backup.token_file,
        )?;
        Ok(Pair {
            primary,
            backup,
            backup_listen,
        })
    }
}

pub struct Pair {
    pub primary: PopFiles,
    pub backup: PopFiles,
    /// The backup's fixed address: the primary's config names it before the backup starts.
    pub backup_listen: String,
}

impl Pair {
    /// The primary's owner token, which works on the backup once the owner row replicated.
    pub fn owner_token(&self) -> Result<String> {
        crate::scenarios::owner_token(&self.primary.data)
    }
}

/// A local port nothing listens on right now (bound by the OS, then released).
fn closed_port() -> Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").context("cannot bind a local port")?;
    Ok(l.local_addr()?.port())
}
