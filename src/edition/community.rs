//! Community Edition: single node, no outbound network code, plain 404, local alerts.

use super::{Edition, Role};
use crate::service::Vault;
use axum::Router;
use axum::http::StatusCode;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

pub const NAME: &str = "community";
pub const TITLE: &str = "Community Edition";
pub const VERSION_LINE: &str = concat!(env!("CARGO_PKG_VERSION"), " (community)");
/// Community serves TLS from `serve --tls-cert/--tls-key`.
pub const TLS_SETTINGS: Option<&str> = None;

/// Community `serve` has no edition flags.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct ServeFlags {}

#[derive(Debug, thiserror::Error)]
#[error("unreachable")]
pub enum StartError {}

/// Community has no edition subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum Commands {}

#[derive(Debug, thiserror::Error)]
#[error("unreachable")]
pub enum CommandError {}

pub fn run_command(cmd: Commands) -> Result<(), CommandError> {
    match cmd {}
}

struct Community;

/// Community has nothing to configure.
#[derive(Debug)]
pub struct Configured;

pub fn configure(_flags: &ServeFlags) -> Result<Configured, StartError> {
    Ok(Configured)
}

pub async fn start(
    _configured: Configured,
    _vault: Arc<Vault>,
    shutdown: CancellationToken,
) -> Result<Arc<dyn Edition>, StartError> {
    answer_hangups(shutdown);
    Ok(Arc::new(Community))
}

/// A SIGHUP (`systemctl reload`, the unit's `ExecReload`) would otherwise end the process,
/// since its default action is to terminate. There is nothing to re-read: say so and go on.
fn answer_hangups(shutdown: CancellationToken) {
    use tokio::signal::unix::{SignalKind, signal};
    let mut hup = match signal(SignalKind::hangup()) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error = %e, "cannot listen for SIGHUP; a SIGHUP would stop the server");
            return;
        }
    };
    tokio::spawn(async move {
        loop {
            tokio::select! {
                r = hup.recv() => if r.is_none() { return },
                () = shutdown.cancelled() => return,
            }
            tracing::info!(
                "SIGHUP received: the Community edition has no configuration file to re-read; nothing changed"
            );
        }
    });
}

impl Edition for Community {
    fn name(&self) -> &'static str {
        NAME
    }

    fn title(&self) -> &'static str {
        TITLE
    }

    fn startup_lines(&self) -> Vec<String> {
        Vec::new()
    }

    fn role(&self) -> Role {
        Role::Standalone
    }

    fn alert_operator(&self, kind: &str, message: &str, details: serde_json::Value) {
        tracing::error!(target: "clavitor::alert", alert = kind, details = %details, "{message}");
    }

    fn telemetry_enabled(&self) -> bool {
        false
    }

    fn extend_router(&self, router: Router) -> Router {
        router.fallback(|| async { (StatusCode::NOT_FOUND, "404 page not found\n") })
    }
}
