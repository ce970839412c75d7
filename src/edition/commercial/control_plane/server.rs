//! `clavitor control-plane --config FILE`: loads the config, opens the store, binds, prints the
//! start-up lines, serves HTTPS until SIGTERM/SIGINT (exit 0, in-flight requests get a bounded
//! drain), reloads on SIGHUP (an invalid config is logged and the old one kept), and moves the
//! failover machine on with a ticker.

use super::core::{self, ControlPlane};
use super::settings::{self, CpConfig};
use super::{api, dashboard};
use crate::transport::{self, LimitError, Limits, TlsSource};
use axum::Router;
use axum::http::StatusCode;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;
use tower_http::timeout::TimeoutLayer;

/// How long in-flight requests get after SIGTERM.
const DRAIN: Duration = Duration::from_millis(700);
const BODY_LIMIT: usize = 256 * 1024;
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Config(#[from] settings::ConfigError),
    #[error(transparent)]
    Core(#[from] core::Error),
    #[error("cannot listen on {addr}: {error}. Fix: set listen in {path} to a free address")]
    Bind {
        addr: SocketAddr,
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("cannot start the control plane: {0}")]
    Start(std::io::Error),
    #[error(transparent)]
    Limits(#[from] LimitError),
    #[error("the control plane's server failed: {0}")]
    Serve(std::io::Error),
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::new("info,tower_http=warn,hyper=warn");
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
}

/// Runs the control plane until SIGTERM or SIGINT.
pub fn run(config_path: &Path) -> Result<(), Error> {
    init_logging();
    println!(
        "Starting Clavitor Control Plane v{}",
        env!("CARGO_PKG_VERSION")
    );
    let config = settings::load(config_path)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(Error::Start)?;
    rt.block_on(serve(config_path.to_owned(), config))?;
    // Handlers still blocked on the store after the drain are not waited for.
    rt.shutdown_timeout(Duration::from_millis(100));
    Ok(())
}

/// The whole HTTP surface: the JSON API, the dashboard, security headers on everything.
pub fn router(cp: Arc<ControlPlane>) -> Router {
    Router::new()
        .merge(api::routes())
        .merge(dashboard::routes())
        .with_state(cp)
        .layer(axum::extract::DefaultBodyLimit::max(BODY_LIMIT))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            REQUEST_TIMEOUT,
        ))
        .layer(axum::middleware::from_fn(
            dashboard::security_headers::layer,
        ))
}

async fn serve(path: PathBuf, config: CpConfig) -> Result<(), Error> {
    let signal = crate::shutdown::install().map_err(Error::Start)?;
    let listen = config.listen;
    let tls = TlsSource::new(config.tls.clone());
    // The POPs' serving loop and its bounds: idle and slow clients time out, connections
    // are capped to what the open-files limit carries.
    let limits = Limits::resolve(None, transport::DEFAULT_IDLE_TIMEOUT)?;
    let cp = ControlPlane::open(config)?;
    let listener = transport::bind(listen).map_err(|error| Error::Bind {
        addr: listen,
        path: path.clone(),
        error,
    })?;
    let addr = listener.local_addr().map_err(Error::Start)?;
    let stop = CancellationToken::new();
    spawn_reloader(cp.clone(), tls.clone(), path, stop.clone());
    spawn_ticker(cp.clone(), stop.clone());
    println!("listening on https://{addr}");
    let trigger = stop.clone();
    tokio::spawn(async move {
        signal.await;
        tracing::info!("shutdown requested");
        trigger.cancel();
    });
    let served = transport::serve(
        listener,
        router(cp),
        transport::Options {
            limits,
            tls: Some(tls),
        },
        stop.clone(),
    );
    let drained = async {
        stop.cancelled().await;
        tokio::time::sleep(DRAIN).await;
    };
    tokio::select! {
        r = served => r.map_err(Error::Serve)?,
        () = drained => tracing::warn!("connections still open after the drain period; closing them"),
    }
    Ok(())
}

/// Moves the failover machine on between heartbeats, so automatic failover, completed
/// promotions and stale POPs show without waiting for the next request.
fn spawn_ticker(cp: Arc<ControlPlane>, stop: CancellationToken) {
    tokio::spawn(async move {
        loop {
            let every = (cp.config().rules.interval / 2).max(Duration::from_millis(50));
            tokio::select! {
                () = tokio::time::sleep(every) => {}
                () = stop.cancelled() => return,
            }
            let now = Instant::now();
            if let Err(e) = cp.run(move |core, config| core.tick(config, now)).await {
                tracing::error!(error = %e, "failover tick failed");
            }
        }
    });
}

fn reload(cp: &ControlPlane, tls: &TlsSource, path: &Path) -> Result<(), String> {
    let new = settings::load(path).map_err(|e| e.to_string())?;
    let old = cp.config();
    if new.listen != old.listen || new.data_dir != old.data_dir {
        return Err(format!(
            "{}: listen and data_dir change only with a restart (in force: {} and {})",
            path.display(),
            old.listen,
            old.data_dir.display()
        ));
    }
    tls.replace(new.tls.clone());
    cp.reconfigure(new);
    Ok(())
}

fn spawn_reloader(cp: Arc<ControlPlane>, tls: TlsSource, path: PathBuf, stop: CancellationToken) {
    crate::shutdown::on_hangup(stop, move || match reload(&cp, &tls, &path) {
        Ok(()) => tracing::info!(config = %path.display(), "configuration reloaded"),
        Err(e) => tracing::error!(
            target: "clavitor::alert",
            alert = "config_reload_failed",
            "SIGHUP reload rejected; the previous configuration stays in force: {e}"
        ),
    });
}
