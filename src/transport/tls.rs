//! TLS for the listener: the server configuration in force (swappable, so a reload applies to
//! new connections without dropping open ones), and loading one from `serve --tls-cert FILE
//! --tls-key FILE` (rustls on ring; no client certificates).

use crate::files;
use rustls::ServerConfig;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use std::path::PathBuf;
use std::sync::{Arc, RwLock};

/// The certificate (chain) and private key files given to `serve`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// The TLS server configuration new connections are accepted with.
#[derive(Clone)]
pub struct TlsSource(Arc<RwLock<Arc<ServerConfig>>>);

impl TlsSource {
    pub fn new(config: Arc<ServerConfig>) -> Self {
        Self(Arc::new(RwLock::new(config)))
    }

    pub fn current(&self) -> Arc<ServerConfig> {
        self.0.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Applies to connections accepted from now on.
    pub fn replace(&self, config: Arc<ServerConfig>) {
        *self.0.write().unwrap_or_else(|p| p.into_inner()) = config;
    }
}

impl std::fmt::Debug for TlsSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TlsSource")
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error(
        "--tls-cert {path}: cannot read a PEM certificate: {message}. Fix: point --tls-cert at the server's certificate in PEM (-----BEGIN CERTIFICATE-----), its chain after it"
    )]
    Cert { path: PathBuf, message: String },
    #[error(
        "--tls-cert {path} holds no PEM certificate. Fix: point --tls-cert at a file with -----BEGIN CERTIFICATE----- blocks, the server's own first"
    )]
    NoCert { path: PathBuf },
    #[error("--tls-key: {0}")]
    KeyFile(#[source] files::Error),
    #[error(
        "--tls-key {path}: cannot read a PEM private key: {message}. Fix: point --tls-key at the private key of --tls-cert in PEM (PKCS#8, PKCS#1 or SEC1)"
    )]
    Key { path: PathBuf, message: String },
    #[error(
        "--tls-cert {cert} and --tls-key {key} do not form a usable certificate: {message}. Fix: give the private key that belongs to that certificate"
    )]
    Unusable {
        cert: PathBuf,
        key: PathBuf,
        message: String,
    },
}

/// The protocols offered in the handshake, HTTP/2 first.
pub(crate) fn alpn() -> Vec<Vec<u8>> {
    vec![b"h2".to_vec(), b"http/1.1".to_vec()]
}

/// Loads `serve --tls-cert/--tls-key`. The key file must be private (mode 0600).
pub fn load_server_config(files: &TlsFiles) -> Result<Arc<ServerConfig>, TlsError> {
    let cert_err = |message: String| TlsError::Cert {
        path: files.cert.clone(),
        message,
    };
    let chain = CertificateDer::pem_file_iter(&files.cert)
        .map_err(|e| cert_err(e.to_string()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| cert_err(e.to_string()))?;
    if chain.is_empty() {
        return Err(TlsError::NoCert {
            path: files.cert.clone(),
        });
    }
    files::check_private(&files.key).map_err(TlsError::KeyFile)?;
    let key = PrivateKeyDer::from_pem_file(&files.key).map_err(|e| TlsError::Key {
        path: files.key.clone(),
        message: e.to_string(),
    })?;
    let unusable = |message: String| TlsError::Unusable {
        cert: files.cert.clone(),
        key: files.key.clone(),
        message,
    };
    let mut config =
        ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .map_err(|e| unusable(e.to_string()))?
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .map_err(|e| unusable(e.to_string()))?;
    config.alpn_protocols = alpn();
    Ok(Arc::new(config))
}
