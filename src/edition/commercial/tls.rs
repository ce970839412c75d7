//! TLS for POPs: the server configuration (HTTPS with optional client certificates, verified
//! against `auth.mtls_ca`; served by `crate::transport`, which puts a verified client's
//! certificate on each request as `ClientCert`) and client configurations for talking to
//! peers and the control plane.

use super::config::TlsMaterial;
use rustls::crypto::CryptoProvider;
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use rustls_pki_types::CertificateDer;
use std::sync::Arc;

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
