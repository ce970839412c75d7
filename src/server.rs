//! Building and running the server: data dir -> store -> vault -> edition -> router -> socket.

use crate::api::{self, AppState};
use crate::crypto::Token;
use crate::datadir::{self, DataDir, DirLock};
use crate::edition::{self, Edition, ServeFlags};
use crate::service::{self, Vault};
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
    /// How the audit trail runs: sync reads, retention, the low-disk alert.
    pub audit: service::AuditOptions,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    DataDir(#[from] datadir::Error),
    #[error(transparent)]
    Service(#[from] service::Error),
    #[error(transparent)]
    Edition(#[from] edition::StartError),
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
        let listener = TcpListener::bind(cfg.listen)
            .await
            .map_err(|error| Error::Bind {
                addr: cfg.listen,
                error,
            })?;
        Ok(Self {
            listener,
            vault,
            edition,
            shutdown,
            lock: opened.lock,
            new_owner_token,
            owner_token_file,
            notices: opened.notices,
        })
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
            ..
        } = self;
        let app = api::router(AppState {
            vault: vault.clone(),
            edition: edition.clone(),
        });
        let trigger = shutdown.clone();
        tokio::spawn(async move {
            signal.await;
            tracing::info!("shutdown requested");
            trigger.cancel();
        });
        let serve = edition.serve(listener, app, shutdown.clone());
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
