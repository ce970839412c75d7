//! TLS for POPs: the server side (HTTPS with optional client certificates, verified against
//! `auth.mtls_ca`; the verified leaf goes into each request's extensions) and client
//! configurations for talking to peers and the control plane.

use super::config::TlsMaterial;
use axum::Router;
use axum::extract::{ConnectInfo, Request};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use rustls::crypto::CryptoProvider;
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use rustls_pki_types::CertificateDer;
use std::sync::{Arc, RwLock};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Set on every request that arrived over a TLS connection whose client presented a
/// certificate that chains to `auth.mtls_ca` (rustls verified it during the handshake): the
/// client's leaf certificate, so a handler can check whom it names.
#[derive(Debug, Clone)]
pub struct VerifiedPeer(pub Arc<CertificateDer<'static>>);

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn roots(certs: &[CertificateDer<'static>]) -> Result<RootCertStore, String> {
    let mut store = RootCertStore::empty();
    for c in certs {
        store
            .add(c.clone())
            .map_err(|e| format!("CA certificate rejected: {e}"))?;
    }
    Ok(store)
}

/// Client certificates are requested and, when presented, must chain to the CA; whether one
/// is *required* is decided per endpoint (the replication endpoint requires it).
pub fn server_config(m: &TlsMaterial) -> Result<Arc<ServerConfig>, String> {
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots(&m.ca)?), provider())
        .allow_unauthenticated()
        .build()
        .map_err(|e| format!("cannot use auth.mtls_ca: {e}"))?;
    let mut cfg = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_client_cert_verifier(verifier)
        .with_single_cert(m.cert_chain.clone(), m.key.clone_key())
        .map_err(|e| {
            format!("auth.mtls_cert and auth.mtls_key do not form a usable certificate: {e}")
        })?;
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(cfg))
}

/// For calls to peers: trust only the POP CA, and present this POP's certificate.
pub fn peer_client_config(m: &TlsMaterial) -> Result<ClientConfig, String> {
    ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots(&m.ca)?)
        .with_client_auth_cert(m.cert_chain.clone(), m.key.clone_key())
        .map_err(|e| format!("auth.mtls_cert/auth.mtls_key unusable as a client certificate: {e}"))
}

/// For calls to the control plane: the bundled web PKI roots plus any configured CA.
pub fn public_client_config(extra: &[CertificateDer<'static>]) -> Result<ClientConfig, String> {
    let mut store = roots(extra)?;
    store.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    Ok(ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(store)
        .with_no_client_auth())
}

/// Serves `app` over TLS. The server config is read per connection, so a SIGHUP reload of
/// certificates applies to new connections without dropping existing ones.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    config: Arc<RwLock<Arc<ServerConfig>>>,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let graceful = GracefulShutdown::new();
    loop {
        let (tcp, addr) = tokio::select! {
            r = listener.accept() => match r {
                Ok(c) => c,
                Err(e) => {
                    // Out of descriptors and the like: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = shutdown.cancelled() => break,
        };
        let acceptor = TlsAcceptor::from(config.read().unwrap_or_else(|p| p.into_inner()).clone());
        let app = app.clone();
        let watcher = graceful.watcher();
        let stop = shutdown.clone();
        tokio::spawn(async move {
            let tls = tokio::select! {
                r = tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)) => match r {
                    Ok(Ok(tls)) => tls,
                    Ok(Err(e)) => {
                        tracing::info!(peer = %addr, error = %e, "TLS handshake refused");
                        return;
                    }
                    Err(_) => return,
                },
                () = stop.cancelled() => return,
            };
            let leaf = tls
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|c| c.first())
                .map(|c| Arc::new(c.clone().into_owned()));
            let svc = app.map_request(move |mut req: Request<hyper::body::Incoming>| {
                req.extensions_mut().insert(ConnectInfo(addr));
                if let Some(leaf) = &leaf {
                    req.extensions_mut().insert(VerifiedPeer(leaf.clone()));
                }
                req.map(axum::body::Body::new)
            });
            let svc = hyper_util::service::TowerToHyperService::new(svc);
            let builder = auto::Builder::new(TokioExecutor::new());
            let conn = builder.serve_connection_with_upgrades(TokioIo::new(tls), svc);
            if let Err(e) = watcher.watch(conn.into_owned()).await {
                tracing::debug!(peer = %addr, error = %e, "connection ended with an error");
            }
        });
    }
    drop(listener);
    graceful.shutdown().await;
    Ok(())
}
