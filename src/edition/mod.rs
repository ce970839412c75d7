//! The edition seam. This file is the only place that looks at the `commercial` feature:
//! it picks `community.rs` or `commercial/` as `imp`, and the rest of the crate reaches the
//! edition only through the [`Edition`] trait and the items re-exported here.
//!
//! Architecture invariant: a community build compiles none of `commercial/`, so its binary
//! holds neither the code nor the strings (checked by `tests/process/edition.rs`).

#[cfg(not(feature = "commercial"))]
#[path = "community.rs"]
mod imp;

#[cfg(feature = "commercial")]
#[path = "commercial/mod.rs"]
mod imp;

use crate::service::Vault;
use crate::transport::TlsSource;
use axum::Router;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

/// Edition-specific `serve` flags (none in Community).
pub use imp::ServeFlags;
/// `clavitor --version` text after the binary name, e.g. `0.1.0 (community)`.
pub use imp::VERSION_LINE;
/// Edition-specific subcommands (none in Community) and their failures.
pub use imp::{CommandError, Commands};

/// The edition's start-up failures; every message names the file, the key and the fix.
pub use imp::StartError;

/// A POP's role. Community is always standalone.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Standalone,
    Primary,
    Backup,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Standalone => "standalone",
            Role::Primary => "primary",
            Role::Backup => "backup",
        }
    }
}

/// An extra `/healthz` section, as `(key, value)`, computed on demand.
pub type HealthDetails<'a> =
    Pin<Box<dyn Future<Output = Option<(&'static str, serde_json::Value)>> + Send + 'a>>;

/// The edition's own metrics for one scrape of `/metrics`, made fresh (Commercial: replication
/// and tarpit gauges); `None` when it has none.
pub type EditionMetrics<'a> =
    Pin<Box<dyn Future<Output = Option<prometheus_client::registry::Registry>> + Send + 'a>>;

/// What the rest of the server may ask of the edition.
pub trait Edition: Send + Sync + 'static {
    /// `community` or `commercial`.
    fn name(&self) -> &'static str;

    /// `Community Edition` or `Commercial Edition`, for the start-up line.
    fn title(&self) -> &'static str;

    /// Lines printed to stdout after the `Starting ...` line (Commercial: the POP role).
    fn startup_lines(&self) -> Vec<String>;

    fn role(&self) -> Role;

    /// Critical operational alerts. Community: a structured log line on stderr.
    fn alert_operator(&self, kind: &str, message: &str, details: serde_json::Value);

    /// Whether anything leaves this machine for a central endpoint.
    fn telemetry_enabled(&self) -> bool;

    /// Adds the edition's routes and its answer to unknown paths and wrong methods.
    fn extend_router(&self, router: Router) -> Router;

    /// An extra section for `/healthz` (Commercial: `replication`), as `(key, value)`.
    fn health_details(&self) -> HealthDetails<'_> {
        Box::pin(async { None })
    }

    /// Metrics of the edition's own, appended to `/metrics` (Commercial: replication backlog,
    /// lag and watermarks; tarpit held and saturated).
    fn metrics(&self) -> EditionMetrics<'_> {
        Box::pin(async { None })
    }

    /// The TLS configuration of the edition's own settings (Commercial: replication.yaml's
    /// `auth.mtls_*`), served by the shared transport. `None`: `serve`'s flags decide.
    fn tls(&self) -> Option<TlsSource> {
        None
    }
}

/// Where the edition takes its TLS settings from instead of `serve --tls-cert/--tls-key`
/// (Commercial: replication.yaml), for the message refusing those flags; `None` when the
/// flags apply.
pub const TLS_SETTINGS: Option<&str> = imp::TLS_SETTINGS;

/// Runs an edition-specific subcommand (Commercial: `pop-token`).
pub fn run_command(cmd: Commands) -> Result<(), CommandError> {
    imp::run_command(cmd)
}

/// The edition's validated settings: checked before anything is created on disk.
pub use imp::Configured;

/// Reads and validates the edition's configuration. No side effects, so `serve` can refuse
/// to start before it initialises a data dir.
pub fn configure(flags: &ServeFlags) -> Result<Configured, StartError> {
    imp::configure(flags)
}

/// Builds the running edition for `serve`. `shutdown` fires on SIGTERM/SIGINT; long-lived
/// edition tasks and handlers must watch it.
pub async fn start(
    configured: Configured,
    vault: Arc<Vault>,
    shutdown: CancellationToken,
) -> Result<Arc<dyn Edition>, StartError> {
    imp::start(configured, vault, shutdown).await
}

/// The edition's name and title without starting it (for `--version` and the start-up line).
pub const NAME: &str = imp::NAME;
pub const TITLE: &str = imp::TITLE;
