//! Commercial Edition: a POP configured by `replication.yaml` (required), with roles,
//! SIGHUP reload, operator alerts and heartbeats to the control plane, and TLS with mutual
//! authentication between POPs.

mod config;
mod control_plane;
mod lease;
mod metrics;
mod peer;
mod replication;
mod schema;
mod scim;
mod siem;
mod tarpit;
mod tls;

use super::{Edition, Role};
use crate::files;
use crate::service::Vault;
use crate::store;
use crate::transport::{ConnectionSlot, TlsSource};
use axum::Router;
use axum::extract::Request;
use config::{PopConfig, PopRole};
use control_plane::{Alert, Alerts, ControlClient};
use lease::{Answer, Grant, Lease};
use rustls::ServerConfig;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Instant;
use tokio_util::sync::CancellationToken;

pub const NAME: &str = "commercial";
pub const TITLE: &str = "Commercial Edition";
pub const VERSION_LINE: &str = concat!(env!("CARGO_PKG_VERSION"), " (commercial)");
/// A POP serves TLS with its own certificate from replication.yaml, never from serve's flags.
pub const TLS_SETTINGS: Option<&str> =
    Some("replication.yaml (auth.mtls_cert, auth.mtls_key, auth.mtls_ca)");

#[derive(Debug, Clone, clap::Args)]
pub struct ServeFlags {
    /// The POP's replication config; the Commercial edition refuses to start without a valid one.
    #[arg(long, value_name = "PATH", default_value = config::DEFAULT_PATH)]
    pub replication_config: PathBuf,
    /// For tests: how many connections the tarpit holds at once.
    #[arg(long, hide = true, default_value_t = tarpit::DEFAULT_CAP)]
    pub tarpit_cap: usize,
}

impl Default for ServeFlags {
    fn default() -> Self {
        Self {
            replication_config: config::DEFAULT_PATH.into(),
            tarpit_cap: tarpit::DEFAULT_CAP,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Config(#[from] config::ConfigError),
    #[error("{path}: {message}")]
    Tls { path: PathBuf, message: String },
    #[error("cannot prepare the database for this edition: {0}")]
    Store(#[from] store::Error),
}

#[derive(Debug, clap::Subcommand)]
pub enum Commands {
    /// Write a fresh 256-bit POP token (mode 0600) for replication.yaml's token files.
    PopToken {
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
    },
    /// Write a fresh 256-bit token (mode 0600) for replication.yaml's scim.token_file: the
    /// bearer your identity provider presents on /scim/v2.
    ScimToken {
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
    },
    /// Run the control plane: POP heartbeats, failover and the operators' dashboard (HTTPS).
    ControlPlane {
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    #[error(transparent)]
    File(#[from] files::Error),
    #[error(transparent)]
    ControlPlane(#[from] control_plane::Error),
}

pub fn run_command(cmd: Commands) -> Result<(), CommandError> {
    match cmd {
        Commands::PopToken { out } => {
            let token = config::generate_pop_token();
            let mut text = format!("{}\n", token.expose());
            let res = files::write_private(&out, text.as_bytes());
            zeroize::Zeroize::zeroize(&mut text);
            res?;
            println!("wrote a new POP token to {} (mode 0600)", out.display());
            Ok(())
        }
        Commands::ScimToken { out } => {
            let token = config::generate_pop_token();
            let mut text = format!("{}\n", token.expose());
            let res = files::write_private(&out, text.as_bytes());
            zeroize::Zeroize::zeroize(&mut text);
            res?;
            println!(
                "wrote a new SCIM token to {} (mode 0600); set scim.token_file to it and give the token to your identity provider",
                out.display()
            );
            Ok(())
        }
        Commands::ControlPlane { config } => Ok(control_plane::run(&config)?),
    }
}

/// The configuration in force, with what was built from it. Swapped whole on SIGHUP.
pub struct Live {
    pub config: PopConfig,
    pub control: Option<ControlClient>,
    /// One pooled client for pushes to the backup (primary only): connections are reused.
    pub backup_client: Option<reqwest::Client>,
}

impl Live {
    fn build(config: PopConfig) -> Result<Self, StartError> {
        let err = |message: String| StartError::Tls {
            path: config.path.clone(),
            message,
        };
        let control = match &config.control_plane {
            Some(cp) => Some(ControlClient::build(cp).map_err(|m| {
                err(format!(
                    "control_plane: {m}. Fix: point control_plane.ca_file at the PEM certificate of the CA that signs the control plane's certificate, or remove ca_file"
                ))
            })?),
            None => None,
        };
        let backup_client = match &config.role {
            PopRole::Primary { .. } => {
                // The backup is verified against the POP CA and sees our certificate.
                let tls = tls::peer_client_config(&config.tls)
                    .map_err(|m| err(format!("backup_pop: {m}")))?;
                let client = reqwest::Client::builder()
                    .use_preconfigured_tls(tls)
                    .timeout(std::time::Duration::from_secs(10))
                    .pool_idle_timeout(std::time::Duration::from_secs(90))
                    .build()
                    .map_err(|e| err(format!("backup_pop: cannot build the client: {e}")))?;
                Some(client)
            }
            PopRole::Backup { .. } => None,
        };
        Ok(Self {
            config,
            control,
            backup_client,
        })
    }

    pub fn backup_url(&self) -> Option<String> {
        match &self.config.role {
            PopRole::Primary { backup } => Some(backup.url.to_string()),
            PopRole::Backup { .. } => None,
        }
    }
}

struct Commercial {
    path: PathBuf,
    live: Arc<RwLock<Arc<Live>>>,
    /// The HTTPS server config; swapped on reload for new connections.
    tls: TlsSource,
    vault: Arc<Vault>,
    alerts: Alerts,
    status: Arc<replication::Status>,
    /// Wakes the replication worker after a reload (e.g. a promotion to primary).
    wake: Arc<tokio::sync::Notify>,
    tarpit: Arc<tarpit::Tarpit>,
    /// The primary's lease and the epoch this POP holds.
    lease: Arc<Lease>,
    /// The role and epoch the control plane last granted (as saved in `control_grant`).
    /// Held while a role is switched (SIGHUP or a heartbeat answer), never across an await.
    grant: Mutex<Option<Grant>>,
    /// This edition itself, for handlers that raise alerts.
    me: std::sync::Weak<Commercial>,
    /// The audit trail's SIEM sinks.
    siem: siem::Siem,
}

/// Builds the HTTPS server config, and checks now that the same certificate can also
/// authenticate this POP as a client, which it must do once it pushes to a peer.
fn tls_config(cfg: &PopConfig) -> Result<Arc<ServerConfig>, StartError> {
    let m = &cfg.tls;
    let err = |message| StartError::Tls {
        path: cfg.path.clone(),
        message: format!(
            "{message}. Fix: point auth.mtls_cert at this POP's PEM certificate, auth.mtls_key at that certificate's own private key, and auth.mtls_ca at the CA that signed it"
        ),
    };
    tls::peer_client_config(m).map_err(err)?;
    tls::server_config(m).map_err(err)
}

/// `config` with the role the control plane granted.
fn granted_config(config: &PopConfig, g: Grant) -> Result<PopConfig, StartError> {
    config.with_role(g.primary).ok_or_else(|| StartError::Tls {
        path: config.path.clone(),
        message: format!(
            "the control plane made this POP {}, but primary_pop has no url or auth_token_file to push with. Fix: add primary_pop.url and primary_pop.auth_token_file",
            g.role_name()
        ),
    })
}

/// A loaded, validated `replication.yaml` and the TLS config built from it.
pub struct Configured {
    path: PathBuf,
    config: PopConfig,
    tls: Arc<ServerConfig>,
    tarpit_cap: usize,
}

impl std::fmt::Debug for Configured {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Configured")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

pub fn configure(flags: &ServeFlags) -> Result<Configured, StartError> {
    let config = config::load(&flags.replication_config)?;
    let tls = tls_config(&config)?;
    Ok(Configured {
        path: flags.replication_config.clone(),
        config,
        tls,
        tarpit_cap: flags.tarpit_cap,
    })
}

pub async fn start(
    configured: Configured,
    vault: Arc<Vault>,
    shutdown: CancellationToken,
) -> Result<Arc<dyn Edition>, StartError> {
    let Configured {
        path,
        config,
        tls,
        tarpit_cap,
    } = configured;
    let tls = TlsSource::new(tls);
    schema::ensure(vault.store()).await?;
    let grant = vault.store().read(lease::load_grant).await?;
    let managed = config.control_plane.is_some();
    let config = match grant.filter(|_| managed) {
        Some(g) => {
            tracing::info!(
                role = g.role_name(),
                epoch = g.epoch,
                file_role = config.role_name(),
                "role and epoch last granted by the control plane are in force (replication.yaml's role is only the starting role)"
            );
            granted_config(&config, g)?
        }
        None => config,
    };
    let lease = Arc::new(Lease::new(
        managed,
        grant.filter(|_| managed).map_or(0, |g| g.epoch),
    ));
    vault.set_writable(matches!(config.role, PopRole::Primary { .. }));
    if let PopRole::Backup { primary } = &config.role {
        tracing::info!(
            primary = %primary.id,
            "backup POP; pushes accepted only from the primary's certificate"
        );
    }
    let live = Arc::new(RwLock::new(Arc::new(Live::build(config)?)));
    let alerts = Alerts::spawn(live.clone(), shutdown.clone());
    let status = Arc::new(replication::Status::default());
    let wake = Arc::new(tokio::sync::Notify::new());
    let edition = Arc::new_cyclic(|me: &std::sync::Weak<Commercial>| {
        let weak = me.clone();
        let tarpit = tarpit::Tarpit::new(tarpit_cap, shutdown.clone(), move |cap| {
            if let Some(e) = weak.upgrade() {
                e.alert_operator(
                    "tarpit_saturated",
                    &format!("{cap} scanner connections are held; further unknown requests get a plain 404"),
                    serde_json::json!({ "cap": cap }),
                );
            }
        });
        Commercial {
            path,
            live: live.clone(),
            tls,
            vault: vault.clone(),
            alerts,
            status: status.clone(),
            wake: wake.clone(),
            tarpit,
            lease: lease.clone(),
            grant: Mutex::new(grant),
            me: me.clone(),
            siem: siem::Siem::new(
                vault.store().clone(),
                alert_fn(me.clone()),
                shutdown.clone(),
            ),
        }
    });
    let live_now = edition.snapshot();
    edition
        .siem
        .start(&live_now.config.siem, &live_now.config.pop_id);
    control_plane::spawn_reporter(
        edition.clone(),
        control_plane::Report::Heartbeat,
        shutdown.clone(),
    );
    control_plane::spawn_reporter(
        edition.clone(),
        control_plane::Report::Telemetry,
        shutdown.clone(),
    );
    replication::spawn(replication::Worker {
        edition: edition.clone(),
        live,
        store: vault.store().clone(),
        status,
        wake,
        lease,
        shutdown: shutdown.clone(),
        last_audit: Default::default(),
    });
    spawn_reloader(edition.clone(), shutdown);
    Ok(edition)
}

/// Raises operator alerts through the edition while it lives.
fn alert_fn(me: std::sync::Weak<Commercial>) -> siem::AlertFn {
    Arc::new(
        move |kind: &str, message: &str, details: serde_json::Value| {
            if let Some(e) = me.upgrade() {
                e.alert_operator(kind, message, details);
            }
        },
    )
}

fn spawn_reloader(edition: Arc<Commercial>, shutdown: CancellationToken) {
    crate::shutdown::on_hangup(shutdown, move || {
        let outcome = match edition.reload() {
            Ok(line) => {
                tracing::info!(config = %edition.path.display(), "configuration reloaded: {line}");
                crate::audit::Outcome::Ok
            }
            Err(e) => {
                edition.alert_operator(
                    "config_reload_failed",
                    &format!(
                        "SIGHUP reload rejected; the previous configuration stays in force: {e}"
                    ),
                    serde_json::json!({ "path": edition.path.display().to_string() }),
                );
                crate::audit::Outcome::Error
            }
        };
        // The path and the outcome only: a rejected file's text could hold anything.
        let event = crate::audit::Event::new(crate::audit::Actor::system(), "config.reload")
            .outcome(outcome)
            .detail("path", edition.path.display().to_string())
            .detail("role", edition.snapshot().config.role_name());
        let edition = edition.clone();
        tokio::spawn(async move {
            if let Err(e) = edition.vault.record_system(event).await {
                tracing::error!(error = %e, "the configuration reload could not be recorded in the audit trail");
            }
        });
    });
}

impl Commercial {
    fn snapshot(&self) -> Arc<Live> {
        self.live.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    async fn entry_count(&self) -> i64 {
        self.vault
            .store()
            .read(crate::store::entries::count_live)
            .await
            .unwrap_or(-1)
    }

    fn tarpit_held(&self) -> usize {
        self.tarpit.held()
    }

    /// `(backlog, committed version, watermark)` from the database: the acknowledged
    /// watermark on a primary, the applied one on a backup.
    async fn replication_numbers(&self, primary: bool) -> Result<(i64, i64, i64), store::Error> {
        self.vault
            .store()
            .read(move |c| {
                let watermark = if primary {
                    replication::rows::acked_watermark(c)?
                } else {
                    schema::applied_watermark(c)?
                };
                Ok::<_, store::Error>((
                    schema::backlog(c)?,
                    store::committed_version(c)?,
                    watermark,
                ))
            })
            .await
    }

    /// Replication state for `/healthz` and heartbeats: backlog, versions, last success, lag.
    async fn replication_report(&self) -> serde_json::Value {
        let role = self.snapshot().config.role_name();
        let (backlog, committed, watermark) = self
            .replication_numbers(role == "primary")
            .await
            .unwrap_or((-1, -1, -1));
        let mut report = self.status.report(role, backlog, committed, watermark);
        report["epoch"] = serde_json::json!(self.lease.epoch());
        report["lease"] = self.lease.report();
        report["siem"] = self.siem.report().await;
        report
    }

    /// Validates the file again and swaps it in whole, or changes nothing.
    fn reload(&self) -> Result<String, String> {
        let config = config::load(&self.path).map_err(|e| e.to_string())?;
        let new_tls = tls_config(&config).map_err(|e| e.to_string())?;
        let managed = config.control_plane.is_some();
        // Only SIGHUP and heartbeat answers switch roles; hold off the other while one runs.
        let grant = self.grant.lock().unwrap_or_else(|p| p.into_inner());
        let config = match grant.filter(|_| managed) {
            Some(g) => granted_config(&config, g).map_err(|e| e.to_string())?,
            None => config,
        };
        self.lease.set_managed(managed);
        if !managed {
            self.lease.set_epoch(0);
        } else if let Some(g) = *grant {
            self.lease.set_epoch(g.epoch);
        }
        let primary = matches!(config.role, PopRole::Primary { .. });
        let line = config.startup_line();
        let live = Live::build(config).map_err(|e| e.to_string())?;
        self.tls.replace(new_tls);
        *self.live.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(live);
        let now = self.snapshot();
        self.siem.start(&now.config.siem, &now.config.pop_id);
        self.vault.set_writable(primary);
        if !primary {
            self.lease.drop_lease();
        }
        self.wake.notify_one();
        drop(grant);
        Ok(line)
    }

    /// Acts on a heartbeat answer (sent at `sent`): saves a new grant before acting on it,
    /// switches role without a restart, and renews or drops the lease.
    async fn on_answer(&self, answer: Answer, sent: Instant) {
        let new = answer.grant;
        let held = self.lease.epoch();
        if new.epoch < held {
            // A control plane that lost its state must not take this POP back in time.
            tracing::warn!(
                epoch = new.epoch,
                held,
                "control plane answered an epoch lower than the one this POP holds; ignored"
            );
            self.lease.drop_lease();
            return;
        }
        if self.snapshot().config.control_plane.is_none() {
            return;
        }
        if !new.primary {
            // Stepping down: stop acknowledging before anything else.
            self.lease.drop_lease();
        }
        let saved_grant = *self.grant.lock().unwrap_or_else(|p| p.into_inner());
        if saved_grant != Some(new) {
            let saved = self
                .vault
                .store()
                .write(move |c| lease::save_grant(c, new))
                .await;
            if let Err(e) = saved {
                tracing::error!(error = %e, "cannot save the role granted by the control plane; not acting on it");
                self.lease.drop_lease();
                return;
            }
        }
        let mut grant = self.grant.lock().unwrap_or_else(|p| p.into_inner());
        if *grant != Some(new) {
            *grant = Some(new);
            self.lease.set_epoch(new.epoch);
            // Batches carry the epoch: a primary waiting for its first grant may push now.
            self.wake.notify_one();
        }
        let current = self.snapshot();
        if current.config.is_primary() != new.primary {
            let Some(config) = current.config.with_role(new.primary) else {
                tracing::error!(
                    "the control plane made this POP primary, but primary_pop has no url or auth_token_file to push with"
                );
                return;
            };
            let line = config.startup_line();
            let live = match Live::build(config) {
                Ok(live) => live,
                Err(e) => {
                    tracing::error!(error = %e, "cannot switch role as the control plane asked");
                    return;
                }
            };
            if !new.primary {
                self.vault.set_writable(false);
            }
            *self.live.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(live);
            if new.primary {
                self.vault.set_writable(true);
            }
            self.wake.notify_one();
            drop(grant);
            tracing::info!(
                role = new.role_name(),
                epoch = new.epoch,
                "role switched by the control plane: {line}"
            );
            self.alert_operator(
                "role_changed",
                &format!(
                    "the control plane made this POP {} at epoch {}",
                    new.role_name(),
                    new.epoch
                ),
                serde_json::json!({ "role": new.role_name(), "epoch": new.epoch }),
            );
        } else {
            drop(grant);
        }
        if new.primary {
            self.lease.renew(sent, answer.lease);
        }
    }
}

impl Edition for Commercial {
    fn name(&self) -> &'static str {
        NAME
    }

    fn title(&self) -> &'static str {
        TITLE
    }

    fn startup_lines(&self) -> Vec<String> {
        vec![self.snapshot().config.startup_line()]
    }

    fn role(&self) -> Role {
        match self.snapshot().config.role {
            PopRole::Primary { .. } => Role::Primary,
            PopRole::Backup { .. } => Role::Backup,
        }
    }

    fn alert_operator(&self, kind: &str, message: &str, details: serde_json::Value) {
        // One log line per alert: a multi-line message (a YAML error's snippet) is escaped.
        let line = message.replace('\n', "\\n");
        tracing::error!(target: "clavitor::alert", alert = kind, details = %details, "{line}");
        if self.snapshot().control.is_some() {
            self.alerts.send(Alert {
                kind: kind.to_owned(),
                message: message.to_owned(),
                details,
                at: time::OffsetDateTime::now_utc(),
            });
        }
    }

    fn telemetry_enabled(&self) -> bool {
        self.snapshot().control.is_some()
    }

    fn health_details(&self) -> super::HealthDetails<'_> {
        Box::pin(async { Some(("replication", self.replication_report().await)) })
    }

    fn extend_router(&self, router: Router) -> Router {
        router
            .merge(scim::routes(scim::ScimState {
                vault: self.vault.clone(),
                live: self.live.clone(),
            }))
            .layer(axum::middleware::from_fn_with_state(
                self.lease.clone(),
                lease::acknowledge_writes,
            ))
            .merge(peer::routes(peer::PeerState {
                live: self.live.clone(),
                vault: self.vault.clone(),
                status: self.status.clone(),
                alert: {
                    let me = self.me.clone();
                    Arc::new(
                        move |kind: &str, message: &str, details: serde_json::Value| {
                            if let Some(e) = me.upgrade() {
                                e.alert_operator(kind, message, details);
                            }
                        },
                    )
                },
                lease: self.lease.clone(),
                last_refusal: Arc::default(),
            }))
            .fallback({
                let t = self.tarpit.clone();
                move |req: Request| async move { t.respond(req.extensions().get::<ConnectionSlot>()) }
            })
            .method_not_allowed_fallback({
                let t = self.tarpit.clone();
                move |req: Request| async move { t.respond(req.extensions().get::<ConnectionSlot>()) }
            })
    }

    fn metrics(&self) -> super::EditionMetrics<'_> {
        Box::pin(async {
            let live = self.snapshot();
            let role = live.config.role_name();
            let replication = self.replication_numbers(role == "primary").await.ok();
            let mut registry = metrics::registry(metrics::Snapshot {
                pop_id: live.config.pop_id.clone(),
                role,
                replication,
                lag_ms: self.status.lag(),
                failing: self.status.failing(),
                tarpit_held: self.tarpit.held(),
                tarpit_cap: self.tarpit.cap(),
                tarpit_saturated: self.tarpit.saturated(),
            });
            self.siem.register(&mut registry).await;
            Some(registry)
        })
    }

    fn tls(&self) -> Option<TlsSource> {
        Some(self.tls.clone())
    }
}
