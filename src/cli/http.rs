//! The CLI's HTTP client: ureq (blocking) on rustls with the ring provider, set up so that the
//! token reaches only the server the user named.
//!
//! - No redirect is followed (a redirect must never carry the token elsewhere): a 3xx comes
//!   back as a reply and becomes an error naming where it pointed.
//! - No proxy from the environment (`HTTPS_PROXY` etc.): the CLI connects only to `--server`.
//! - Trust: `--ca-file` (PEM) trusts that CA only; otherwise the system's trusted roots through
//!   rustls-platform-verifier (on Linux, the system CA bundle via rustls-native-certs).
//! - Bounded: connect and whole-call timeouts; answers over [`MAX_RESPONSE`] are refused. No
//!   `Accept-Encoding` is sent (no gzip feature), so nothing is decompressed.

use super::endpoint::Endpoint;
use super::output::escape_short;
use crate::crypto::Token;
use anyhow::{Context, Result, anyhow, bail};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use ureq::http::{self, HeaderValue};
use ureq::tls::{Certificate, PemItem, RootCerts, TlsConfig, TlsProvider};

const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// A whole call: connect, send, answer head and body.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);
/// The largest answer read (a listing of many entries is well under this).
pub const MAX_RESPONSE: u64 = 16 * 1024 * 1024;

/// A server's answer, whatever its status.
#[derive(Debug, Clone, Default)]
pub struct Reply {
    pub status: u16,
    /// The `Location` header of a redirect, if any (as text, for the message).
    pub location: Option<String>,
    pub body: Vec<u8>,
}

pub struct Http {
    agent: ureq::Agent,
    endpoint: Endpoint,
    ca_file: Option<PathBuf>,
}

impl Http {
    /// A client for `endpoint`, trusting `ca_file`'s certificates if given, else the system's.
    pub fn new(endpoint: Endpoint, ca_file: Option<&Path>) -> Result<Self> {
        let roots = match ca_file {
            Some(path) => {
                if !endpoint.is_https() {
                    bail!(
                        "--ca-file is for https:// servers, but --server is {}; use an https:// URL",
                        endpoint.display()
                    );
                }
                RootCerts::Specific(Arc::new(read_ca_file(path)?))
            }
            None => RootCerts::PlatformVerifier,
        };
        let tls = TlsConfig::builder()
            .provider(TlsProvider::Rustls)
            .unversioned_rustls_crypto_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .root_certs(roots)
            .build();
        let agent = ureq::Agent::config_builder()
            .tls_config(tls)
            .proxy(None)
            .max_redirects(0)
            .http_status_as_error(false)
            .timeout_connect(Some(CONNECT_TIMEOUT))
            .timeout_global(Some(CALL_TIMEOUT))
            .user_agent(concat!("clavitor-cli/", env!("CARGO_PKG_VERSION")))
            .accept("application/json")
            .build()
            .new_agent();
        Ok(Self {
            agent,
            endpoint,
            ca_file: ca_file.map(Path::to_owned),
        })
    }

    /// One request to `path` (below the server URL's prefix) with the bearer token.
    pub fn request(
        &self,
        method: &str,
        path: &str,
        token: &Token,
        body: Option<&[u8]>,
    ) -> Result<Reply> {
        let bearer = zeroize::Zeroizing::new(format!("Bearer {}", token.expose()));
        let mut auth = HeaderValue::from_str(&bearer)
            .map_err(|_| anyhow!("the token holds characters that cannot go in a header"))?;
        auth.set_sensitive(true);
        let req = http::Request::builder()
            .method(method)
            .uri(self.endpoint.url(path))
            .header(http::header::AUTHORIZATION, auth);
        let sent = match body {
            Some(b) => self.agent.run(
                req.header(http::header::CONTENT_TYPE, "application/json")
                    .body(b)?,
            ),
            None => self.agent.run(req.body(())?),
        };
        let mut res = sent.map_err(|e| self.explain(e))?;
        let status = res.status().as_u16();
        let location = res
            .headers()
            .get(http::header::LOCATION)
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
        let body = res
            .body_mut()
            .with_config()
            .limit(MAX_RESPONSE)
            .read_to_vec()
            .map_err(|e| self.explain(e))?;
        Ok(Reply {
            status,
            location,
            body,
        })
    }

    /// A sentence for a failed request: what went wrong, where, and what to do.
    fn explain(&self, e: ureq::Error) -> anyhow::Error {
        let at = self.endpoint.display();
        match e {
            ureq::Error::Rustls(tls) => self.explain_tls(&tls),
            ureq::Error::Io(io) => {
                if let Some(tls) = io.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()) {
                    return self.explain_tls(tls);
                }
                use std::io::ErrorKind as K;
                match io.kind() {
                    K::ConnectionRefused
                    | K::HostUnreachable
                    | K::NetworkUnreachable
                    | K::NetworkDown
                    | K::AddrNotAvailable => anyhow!(
                        "cannot connect to the server at {at} ({io}); is `clavitor serve` running there? (set --server)"
                    ),
                    _ => anyhow!("the connection to {at} failed: {io}"),
                }
            }
            ureq::Error::HostNotFound => anyhow!(
                "cannot resolve {}: no such host (check --server)",
                self.endpoint.host()
            ),
            ureq::Error::Timeout(t) => anyhow!(
                "the server at {at} did not answer in time ({t}; connect {CONNECT_TIMEOUT:?}, whole request {CALL_TIMEOUT:?})"
            ),
            ureq::Error::BodyExceedsLimit(n) => anyhow!(
                "the server at {at} sent an answer larger than {n} bytes; refusing to read it"
            ),
            ureq::Error::LargeResponseHeader(_, max) => anyhow!(
                "the server at {at} sent a response head larger than {max} bytes; refusing to read it"
            ),
            ureq::Error::Protocol(p) => {
                let hint = if self.endpoint.is_https() {
                    ""
                } else {
                    " (does the server speak https? then use an https:// URL)"
                };
                let p = escape_short(&p.to_string(), 300);
                anyhow!("the server at {at} sent a malformed HTTP response: {p}{hint}")
            }
            other => anyhow!(
                "the request to {at} failed: {}",
                escape_short(&other.to_string(), 300)
            ),
        }
    }

    fn explain_tls(&self, e: &rustls::Error) -> anyhow::Error {
        use rustls::CertificateError as C;
        let at = self.endpoint.display();
        let trusted = match &self.ca_file {
            Some(f) => format!("the CA in --ca-file {}", f.display()),
            None => "the system's trusted CAs".to_owned(),
        };
        let fix = match &self.ca_file {
            Some(_) => "check that --ca-file holds the CA that signed the server's certificate",
            None => "if the server uses a private CA, pass --ca-file CA.pem",
        };
        match e {
            rustls::Error::InvalidCertificate(C::UnknownIssuer | C::BadSignature) => anyhow!(
                "the TLS certificate of {at} is not signed by {trusted}; refusing to send the token. Fix: {fix}"
            ),
            rustls::Error::InvalidCertificate(
                C::NotValidForName | C::NotValidForNameContext { .. },
            ) => {
                anyhow!(
                    "the TLS certificate of {at} is not valid for the name {:?}; refusing to send the token. Fix: use the name the certificate was issued for in --server",
                    self.endpoint.host()
                )
            }
            rustls::Error::InvalidCertificate(c) => anyhow!(
                "the TLS certificate of {at} was refused ({c:?}); refusing to send the token"
            ),
            rustls::Error::InvalidMessage(_) => anyhow!(
                "the TLS handshake with {at} failed ({e}); is the server speaking plain http? then use an http:// URL"
            ),
            other => anyhow!("the TLS handshake with {at} failed: {other}"),
        }
    }
}

/// The certificates of a PEM file, each checked to be usable as a trust anchor.
fn read_ca_file(path: &Path) -> Result<Vec<Certificate<'static>>> {
    let pem = std::fs::read(path).with_context(|| format!("--ca-file {}", path.display()))?;
    let mut certs = Vec::new();
    for item in ureq::tls::parse_pem(&pem) {
        match item {
            Ok(PemItem::Certificate(c)) => certs.push(c),
            Ok(_) => {}
            Err(e) => bail!("--ca-file {}: not valid PEM ({e})", path.display()),
        }
    }
    if certs.is_empty() {
        bail!(
            "--ca-file {}: no certificate in it; expected PEM with -----BEGIN CERTIFICATE-----",
            path.display()
        );
    }
    let mut store = rustls::RootCertStore::empty();
    for c in &certs {
        store
            .add(rustls::pki_types::CertificateDer::from(c.der()))
            .map_err(|e| {
                anyhow!(
                    "--ca-file {}: a certificate in it cannot be a trust anchor ({e})",
                    path.display()
                )
            })?;
    }
    Ok(certs)
}
