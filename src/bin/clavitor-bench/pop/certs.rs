//! The POP CA and certificates, generated per run with rcgen (as the test suite does), so the
//! replication scenarios run with mutual TLS exactly as a two-POP deployment does.

use anyhow::{Context, Result};
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use std::sync::Arc;
use tokio_rustls::rustls::{self, ClientConfig, RootCertStore};

pub struct Ca {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

/// A POP's certificate and key, PEM.
pub struct Leaf {
    pub cert_pem: String,
    pub key_pem: String,
}

impl Ca {
    pub fn new() -> Result<Self> {
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        params
            .distinguished_name
            .push(DnType::CommonName, "clavitor-bench POP CA");
        let key = KeyPair::generate().context("cannot generate the CA key")?;
        let issuer =
            CertifiedIssuer::self_signed(params, key).context("cannot self-sign the CA")?;
        Ok(Self { issuer })
    }

    pub fn pem(&self) -> String {
        self.issuer.pem()
    }

    /// For 127.0.0.1 and localhost; a POP uses it as server and as client certificate.
    pub fn leaf(&self, name: &str) -> Result<Leaf> {
        let mut params =
            CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])?;
        params.distinguished_name.push(DnType::CommonName, name);
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let key = KeyPair::generate().context("cannot generate a POP key")?;
        let cert = params
            .signed_by(&key, &*self.issuer)
            .context("cannot sign a POP certificate")?;
        Ok(Leaf {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }

    /// What the bench's own HTTPS client uses: trusts this CA, presents no certificate (as an
    /// API client does; only POP-to-POP pushes need one).
    pub fn client_config(&self) -> Result<Arc<ClientConfig>> {
        let mut roots = RootCertStore::empty();
        roots
            .add(self.issuer.der().clone())
            .context("the CA certificate was rejected as a root")?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let cfg = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .context("no usable TLS versions")?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(Arc::new(cfg))
    }
}
