//! Test credentials: an rcgen CA, leaf certificates for 127.0.0.1 and localhost, the PEM files
//! a POP config (or `serve --tls-cert/--tls-key`) names, reqwest clients that trust the CA, and
//! POP tokens.

use super::files::{q, write_file};
use base64::Engine;
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use rustls::crypto::CryptoProvider;
use rustls::{ClientConfig, RootCertStore};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A certificate and its private key, PEM.
pub struct Leaf {
    pub cert_pem: String,
    pub key_pem: String,
}

impl Leaf {
    pub fn certs(&self) -> Vec<CertificateDer<'static>> {
        vec![CertificateDer::from_pem_slice(self.cert_pem.as_bytes()).expect("cert PEM")]
    }

    pub fn key(&self) -> PrivateKeyDer<'static> {
        PrivateKeyDer::from_pem_slice(self.key_pem.as_bytes()).expect("key PEM")
    }
}

/// A test certificate authority.
pub struct Ca {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

impl Ca {
    pub fn new(name: &str) -> Self {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        params.distinguished_name.push(DnType::CommonName, name);
        let key = KeyPair::generate().expect("CA key");
        Self {
            issuer: CertifiedIssuer::self_signed(params, key).expect("self-signed CA"),
        }
    }

    pub fn pem(&self) -> String {
        self.issuer.pem()
    }

    /// A certificate for 127.0.0.1 and localhost, usable by servers and clients.
    pub fn leaf(&self, name: &str) -> Leaf {
        let mut params =
            CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
                .expect("leaf params");
        params.distinguished_name.push(DnType::CommonName, name);
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let key = KeyPair::generate().expect("leaf key");
        let cert = params.signed_by(&key, &*self.issuer).expect("sign leaf");
        Leaf {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        }
    }

    /// A client certificate whose subject CN is `cn` and whose DNS names are `dns` (no IP
    /// address): to test which names a POP accepts.
    pub fn leaf_with_dns(&self, cn: &str, dns: &[&str]) -> Leaf {
        let names: Vec<String> = dns.iter().map(|d| (*d).to_owned()).collect();
        let mut params = CertificateParams::new(names).expect("leaf params");
        params.distinguished_name.push(DnType::CommonName, cn);
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let key = KeyPair::generate().expect("leaf key");
        let cert = params.signed_by(&key, &*self.issuer).expect("sign leaf");
        Leaf {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        }
    }

    pub fn roots(&self) -> RootCertStore {
        let mut roots = RootCertStore::empty();
        roots.add(self.issuer.der().clone()).expect("CA as root");
        roots
    }
}

/// A POP's TLS files: its certificate, its key and the CA it trusts.
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub ca: PathBuf,
}

impl TlsFiles {
    /// Writes `leaf` and `ca`'s certificate into `dir` as `STEM.crt`, `STEM.key` (0600) and
    /// `STEM-ca.crt`.
    pub fn write(dir: &Path, stem: &str, leaf: &Leaf, ca: &Ca) -> Self {
        let files = Self {
            cert: dir.join(format!("{stem}.crt")),
            key: dir.join(format!("{stem}.key")),
            ca: dir.join(format!("{stem}-ca.crt")),
        };
        write_file(&files.cert, &leaf.cert_pem, 0o644);
        write_file(&files.key, &leaf.key_pem, 0o600);
        write_file(&files.ca, &ca.pem(), 0o644);
        files
    }

    /// The `auth:` lines naming these files.
    pub fn yaml(&self) -> String {
        format!(
            "  mtls_cert: {}\n  mtls_key: {}\n  mtls_ca: {}\n",
            q(&self.cert),
            q(&self.key),
            q(&self.ca)
        )
    }
}

/// A reqwest client trusting every CA in `cas` (none: fine for http://), presenting `identity`.
pub fn client_trusting(cas: &[&Ca], identity: Option<&Leaf>) -> reqwest::Client {
    let mut roots = RootCertStore::empty();
    for ca in cas {
        roots.extend(ca.roots().roots);
    }
    let builder = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_root_certificates(roots);
    let cfg = match identity {
        Some(l) => builder
            .with_client_auth_cert(l.certs(), l.key())
            .expect("client cert"),
        None => builder.with_no_client_auth(),
    };
    reqwest::Client::builder()
        .use_preconfigured_tls(cfg)
        .timeout(Duration::from_secs(10))
        .build()
        .expect("reqwest client")
}

/// An HTTPS client trusting `ca`, presenting `identity`.
pub fn client(ca: &Ca, identity: Option<&Leaf>) -> reqwest::Client {
    client_trusting(&[ca], identity)
}

/// A client for plain http:// vaults.
pub fn plain() -> reqwest::Client {
    client_trusting(&[], None)
}

/// A POP token in the documented format: `clavitor-pop-v1-` + base64 of `bytes` random bytes.
pub fn token_text(bytes: usize) -> String {
    let mut raw = vec![0u8; bytes];
    rand::fill(&mut raw[..]);
    format!(
        "clavitor-pop-v1-{}",
        base64::engine::general_purpose::STANDARD.encode(&raw)
    )
}

/// Writes a fresh 256-bit token file (mode 0600) and returns the token.
pub fn write_token(path: &Path) -> String {
    let t = token_text(32);
    write_file(path, &format!("{t}\n"), 0o600);
    t
}

/// A blocking TLS connection to `addr` (an `https://` base URL or `host:port`) trusting `ca`,
/// for tests that write raw HTTP/1.1 bytes. The read timeout applies to the TCP socket.
pub fn tls_stream(
    base: &str,
    ca: &Ca,
    read_timeout: Duration,
) -> rustls::StreamOwned<rustls::ClientConnection, std::net::TcpStream> {
    let addr = base.trim_start_matches("https://").trim_end_matches('/');
    let tcp = std::net::TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect {addr}: {e}"));
    tcp.set_read_timeout(Some(read_timeout))
        .expect("read timeout");
    let cfg = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_root_certificates(ca.roots())
        .with_no_client_auth();
    let host = addr.rsplit_once(':').map_or(addr, |(h, _)| h).to_owned();
    let name = rustls_pki_types::ServerName::try_from(host).expect("server name");
    let conn = rustls::ClientConnection::new(Arc::new(cfg), name).expect("TLS client");
    rustls::StreamOwned::new(conn, tcp)
}
