//! Building and running the server: data dir -> store -> vault -> edition -> router -> socket.

use crate::api::{self, AppState};
use crate::crypto::Token;
use crate::datadir::{self, DataDir, DirLock};
use crate::edition::{self, Edition, ServeFlags};
use crate::service::{self, Vault};
use crate::transport::{self, LimitError, Limits, TlsError, TlsFiles, TlsSource};
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub const DEFAULT_LISTEN: &str = "127.0.0.1:7441";
/// How long in-flight requests get to finish after SIGTERM before the process exits anyway.
const DRAIN: Duration = Duration::from_millis(700);

#[derive(Debug, Clone)]
pub struct ServeConfig {
    pub data_dir: PathBuf,
    pub listen: SocketAddr,
    pub edition: ServeFlags,
    /// Where the owner token of a vault this start creates is saved, and where an old
    /// `owner.token` found in the data dir is moved (never inside the data dir). `None`: such a
    /// start is refused (the CLI passes `--owner-token-out` or its token file).
    pub owner_token_out: Option<PathBuf>,
    /// `--tls-cert`/`--tls-key`: serve https (Community; Commercial takes TLS from its config).
    pub tls: Option<TlsFiles>,
    /// `--max-connections`; `None` for the default, sized to the open-files limit.
    pub max_connections: Option<usize>,
    /// How long a connection may have no request in flight (tests shorten it).
    pub idle_timeout: Duration,
    /// How the audit trail runs: sync reads, retention, the low-disk alert.
    pub audit: service::AuditOptions,
    /// `--enable-proxy`: serve `POST /v1/proxy` (the server's only outbound connections).
    pub proxy: ProxySettings,
}

/// The proxy's settings.
#[derive(Debug, Clone, Default)]
pub struct ProxySettings {
    pub enabled: bool,
    /// Trust only this CA for upstreams (tests); default: the system's CAs.
    pub ca_file: Option<PathBuf>,
}

impl Default for ServeConfig {
    fn default() -> Self {
        Self {
            data_dir: datadir::DEFAULT_DIR.into(),
            listen: DEFAULT_LISTEN.parse().expect("the default address parses"),
            edition: ServeFlags::default(),
            owner_token_out: None,
            tls: None,
            max_connections: None,
            idle_timeout: transport::DEFAULT_IDLE_TIMEOUT,
            audit: service::AuditOptions::default(),
            proxy: ProxySettings::default(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    DataDir(#[from] datadir::Error),
    #[error(transparent)]
    Service(#[from] service::Error),
    #[error(transparent)]
    Edition(#[from] edition::StartError),
    #[error(transparent)]
    Tls(#[from] TlsError),
    #[error(transparent)]
    Limits(#[from] LimitError),
    #[error("cannot set up the proxy: {0}")]
    Egress(#[from] crate::egress::Error),
    #[error(
        "--tls-cert/--tls-key do not apply to this edition: it serves TLS with the certificate in {settings}. Fix: remove --tls-cert and --tls-key"
    )]
    TlsFlags { settings: &'static str },
    #[error("cannot listen on {addr}: {error}. Fix: pick a free address with --listen")]
    Bind {
        addr: SocketAddr,
        error: std::io::Error,
    },
    #[error("server failed: {0}")]
    Serve(std::io::Error),
}

pub struct Server {
    listener: TcpListener,
    vault: Arc<Vault>,
    edition: Arc<dyn Edition>,
    shutdown: CancellationToken,
    /// Held until `run` has closed the store: no other process may open this data dir.
    lock: DirLock,
    limits: Limits,
    tls: Option<TlsSource>,
    egress: Option<Arc<crate::egress::Egress>>,
    /// Set when this start created the vault: the owner token, to show once...
    pub new_owner_token: Option<Token>,
    /// ...and the file it was saved to.
    pub owner_token_file: Option<PathBuf>,
    /// What the start repaired (modes tightened, an old token moved out), one line each.
    pub notices: Vec<String>,
}

impl Server {
    /// Opens (or, on an empty data dir, initialises) the vault and binds the socket.
    pub async fn build(cfg: ServeConfig) -> Result<Self, Error> {
        let configured = edition::configure(&cfg.edition)?;
        // Every check of the flags before anything is created on disk.
        let flag_tls = match (&cfg.tls, edition::TLS_SETTINGS) {
            (Some(_), Some(settings)) => return Err(Error::TlsFlags { settings }),
            (Some(files), None) => Some(transport::load_server_config(files)?),
            (None, _) => None,
        };
        let limits = Limits::resolve(cfg.max_connections, cfg.idle_timeout)?;
        let egress = match cfg.proxy.enabled {
            true => Some(Arc::new(crate::egress::Egress::new(
                cfg.proxy.ca_file.as_deref(),
            )?)),
            false => None,
        };
        let opened = DataDir::new(&cfg.data_dir)
            .open_or_init(cfg.owner_token_out.as_deref())
            .await?;
        let (new_owner_token, owner_token_file) = match opened.new_owner {
            Some(o) => (Some(o.token), Some(o.saved_to)),
            None => (None, None),
        };
        let vault = Vault::open(opened.store, &opened.master).await?;
        drop(opened.master);
        vault.configure_audit(&cfg.audit);
        let shutdown = CancellationToken::new();
        let edition = edition::start(configured, vault.clone(), shutdown.clone()).await?;
        let alert: service::DiskAlert = {
            let edition = edition.clone();
            Arc::new(move |kind, message, details| edition.alert_operator(kind, message, details))
        };
        tokio::spawn(vault.clone().run_audit_upkeep(
            cfg.audit.clone(),
            cfg.data_dir.clone(),
            alert,
            shutdown.clone(),
        ));
        let tls = flag_tls.map(TlsSource::new).or_else(|| edition.tls());
        let listener = transport::bind(cfg.listen).map_err(|error| Error::Bind {
            addr: cfg.listen,
            error,
        })?;
        Ok(Self {
            listener,
            vault,
            edition,
            shutdown,
            lock: opened.lock,
            limits,
            tls,
            egress,
            new_owner_token,
            owner_token_file,
            notices: opened.notices,
        })
    }

    /// `https` when serving TLS, else `http`: for the `listening on` line.
    pub fn url_scheme(&self) -> &'static str {
        if self.tls.is_some() { "https" } else { "http" }
    }

    /// The connection limits in force.
    pub fn limits(&self) -> Limits {
        self.limits
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("a bound TCP listener has an address")
    }

    pub fn edition(&self) -> &dyn Edition {
        &*self.edition
    }

    /// Serves until `signal` resolves, lets in-flight requests finish (bounded by `DRAIN`),
    /// then flushes the store.
    pub async fn run(self, signal: impl Future<Output = ()> + Send + 'static) -> Result<(), Error> {
        let Self {
            listener,
            vault,
            edition,
            shutdown,
            lock,
            limits,
            tls,
            egress,
            ..
        } = self;
        let app = api::router(AppState {
            vault: vault.clone(),
            edition: edition.clone(),
            egress,
        });
        let trigger = shutdown.clone();
        tokio::spawn(async move {
            signal.await;
            tracing::info!("shutdown requested");
            trigger.cancel();
        });
        let serve = transport::serve(
            listener,
            app,
            transport::Options { limits, tls },
            shutdown.clone(),
        );
        let drained = async {
            shutdown.cancelled().await;
            tokio::time::sleep(DRAIN).await;
        };
        let result = tokio::select! {
            r = serve => r.map_err(Error::Serve),
            () = drained => {
                tracing::warn!("connections still open after the drain period; closing them");
                Ok(())
            }
        };
        // Denials still counted for the trail go in before the store closes.
        vault.flush_audit().await;
        vault.store().close().await;
        drop(lock);
        result
    }
}
