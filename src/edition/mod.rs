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
use axum::Router;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

/// `clavitor --version` text after the binary name, e.g. `0.1.0 (community)`.
pub use imp::VERSION_LINE;
/// Edition-specific `serve` flags (none in Community).
pub use imp::ServeFlags;

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
}

/// Builds the running edition for `serve`. `shutdown` fires on SIGTERM/SIGINT; long-lived
/// edition tasks and handlers must watch it.
pub async fn start(
    flags: &ServeFlags,
    vault: Arc<Vault>,
    shutdown: CancellationToken,
) -> Result<Arc<dyn Edition>, StartError> {
    imp::start(flags, vault, shutdown).await
}

/// The edition's name and title without starting it (for `--version` and the start-up line).
pub const NAME: &str = imp::NAME;
pub const TITLE: &str = imp::TITLE;
