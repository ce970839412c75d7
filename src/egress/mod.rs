//! The proxy's outbound HTTP client (`serve --enable-proxy`): the only connections the server
//! opens to hosts of its users' choosing, so it is guarded like the SSRF target it is.
//!
//! - A host name is resolved once, by [`GuardedResolver`], and the client connects to the
//!   addresses it returned, which are all public ([`address::is_public`]): a name that resolves
//!   to a loopback, private, link-local or metadata address is refused, with no connection made
//!   (no DNS rebinding between a check and the connection). A literal address in the URL is
//!   not resolved; the caller ([`crate::service`]) allows one only when an owner listed it.
//! - https only, except plain http to a literal loopback address (checked by the caller).
//! - No redirect is followed, no proxy from the environment is used, no compression is asked
//!   for (`Accept-Encoding: identity`), and a compressed answer is refused rather than passed
//!   on unmasked. Connect and whole-call timeouts; answers over [`MAX_RESPONSE`] are refused.
//! - Trust: the system's CAs (rustls-platform-verifier), or for tests only the CA in
//!   `serve --proxy-ca-file`.
//!
//! Architecture invariant: nothing else in the server makes outbound connections through this
//! module, and this module connects only where a caller sent it after its checks.

pub mod address;

use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// Connecting (TCP and TLS) to an upstream.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// A whole upstream call, under the server's own 30 s request timeout.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(20);
/// The largest upstream answer body passed on.
pub const MAX_RESPONSE: usize = 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("--proxy-ca-file {}: {why}", path.display())]
    CaFile { path: PathBuf, why: String },
    #[error("the proxy's TLS settings could not be built: {0}")]
    Tls(String),
    #[error(
        "{host} resolves to {addr}, a loopback, private, link-local or otherwise non-public address; the proxy connects by name only to public addresses (an owner may list a literal address in allowed_hosts and use it in the URL)"
    )]
    AddressRefused {
        host: String,
        addr: std::net::IpAddr,
    },
    #[error("cannot resolve {0}")]
    Unresolved(String),
    #[error("the upstream did not answer within {}s", CALL_TIMEOUT.as_secs())]
    Timeout,
    #[error("cannot connect to the upstream: {0}")]
    Connect(String),
    #[error("the upstream's answer is larger than {MAX_RESPONSE} bytes")]
    TooLarge,
    #[error(
        "the upstream answered with Content-Encoding {0:?} although asked for identity; the body is withheld because it could not be masked"
    )]
    Encoded(String),
    #[error("the upstream call failed: {0}")]
    Failed(String),
}

/// One outbound request, as the caller built it (placeholders already filled).
pub struct Outbound {
    pub method: reqwest::Method,
    pub url: reqwest::Url,
    pub headers: HeaderMap,
    pub body: Option<Vec<u8>>,
}

/// An upstream's answer.
pub struct Answer {
    pub status: u16,
    pub headers: Vec<(String, Vec<u8>)>,
    pub body: Vec<u8>,
}

/// The kept client (its connection pool is reused across proxy calls).
pub struct Egress {
    client: reqwest::Client,
}

impl std::fmt::Debug for Egress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Egress")
    }
}

impl Egress {
    /// `ca_file`: trust only this PEM CA (tests); `None`: the system's trusted CAs.
    pub fn new(ca_file: Option<&Path>) -> Result<Self, Error> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| Error::Tls(e.to_string()))?;
        let tls = match ca_file {
            Some(path) => builder
                .with_root_certificates(read_roots(path)?)
                .with_no_client_auth(),
            None => {
                use rustls_platform_verifier::BuilderVerifierExt;
                builder
                    .with_platform_verifier()
                    .map_err(|e| Error::Tls(e.to_string()))?
                    .with_no_client_auth()
            }
        };
        let client = reqwest::Client::builder()
            .use_preconfigured_tls(tls)
            .dns_resolver(Arc::new(GuardedResolver))
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .referer(false)
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(CALL_TIMEOUT)
            .pool_idle_timeout(Duration::from_secs(30))
            .http1_only()
            .build()
            .map_err(|e| Error::Tls(e.to_string()))?;
        Ok(Self { client })
    }

    /// Sends `req` and reads the answer, bounded in time and size.
    pub async fn send(&self, req: Outbound) -> Result<Answer, Error> {
        let mut headers = req.headers;
        headers.insert(
            reqwest::header::ACCEPT_ENCODING,
            HeaderValue::from_static("identity"),
        );
        let mut builder = self.client.request(req.method, req.url).headers(headers);
        if let Some(body) = req.body {
            builder = builder.body(body);
        }
        let mut res = builder.send().await.map_err(explain)?;
        if let Some(coding) = res
            .headers()
            .get(reqwest::header::CONTENT_ENCODING)
            .map(|v| {
                String::from_utf8_lossy(v.as_bytes())
                    .trim()
                    .to_ascii_lowercase()
            })
            .filter(|c| !c.is_empty() && c != "identity")
        {
            return Err(Error::Encoded(coding.chars().take(40).collect()));
        }
        if res
            .content_length()
            .is_some_and(|n| n > MAX_RESPONSE as u64)
        {
            return Err(Error::TooLarge);
        }
        let status = res.status().as_u16();
        let headers = res
            .headers()
            .iter()
            .map(|(n, v): (&HeaderName, &HeaderValue)| {
                (n.as_str().to_owned(), v.as_bytes().to_vec())
            })
            .collect();
        let mut body = Vec::new();
        while let Some(chunk) = res.chunk().await.map_err(explain)? {
            if body.len() + chunk.len() > MAX_RESPONSE {
                return Err(Error::TooLarge);
            }
            body.extend_from_slice(&chunk);
        }
        Ok(Answer {
            status,
            headers,
            body,
        })
    }
}

fn read_roots(path: &Path) -> Result<rustls::RootCertStore, Error> {
    use rustls_pki_types::pem::PemObject;
    let bad = |why: String| Error::CaFile {
        path: path.to_owned(),
        why,
    };
    let pem = std::fs::read(path).map_err(|e| bad(e.to_string()))?;
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pki_types::CertificateDer::pem_slice_iter(&pem) {
        let cert = cert.map_err(|e| bad(format!("not valid PEM ({e})")))?;
        roots
            .add(cert)
            .map_err(|e| bad(format!("a certificate cannot be a trust anchor ({e})")))?;
    }
    if roots.is_empty() {
        return Err(bad("no certificate in it".into()));
    }
    Ok(roots)
}

/// The reason, from reqwest's chain of causes (our resolver's refusal among them).
fn explain(e: reqwest::Error) -> Error {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(&e);
    while let Some(s) = source {
        if let Some(r) = s.downcast_ref::<Refusal>() {
            return match r {
                Refusal::Address { host, addr } => Error::AddressRefused {
                    host: host.clone(),
                    addr: *addr,
                },
                Refusal::Unresolved(h) => Error::Unresolved(h.clone()),
            };
        }
        source = s.source();
    }
    if e.is_timeout() {
        Error::Timeout
    } else if e.is_connect() {
        Error::Connect(chain(&e))
    } else {
        Error::Failed(chain(&e))
    }
}

/// An error and its causes, one sentence.
fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out.chars().take(400).collect()
}

#[derive(Debug, thiserror::Error)]
enum Refusal {
    #[error("{host} resolves to the non-public address {addr}")]
    Address {
        host: String,
        addr: std::net::IpAddr,
    },
    #[error("cannot resolve {0}")]
    Unresolved(String),
}

/// Resolves a name once and hands the client only public addresses; a name with any other
/// address among its answers is refused whole.
struct GuardedResolver;

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0))
                .await
                .map_err(|_| Refusal::Unresolved(host.clone()))?
                .collect();
            if addrs.is_empty() {
                return Err(Refusal::Unresolved(host).into());
            }
            if let Some(bad) = addrs.iter().find(|a| !address::is_public(a.ip())) {
                return Err(Refusal::Address {
                    host,
                    addr: bad.ip(),
                }
                .into());
            }
            Ok(Box::new(addrs.into_iter()) as Addrs)
        })
    }
}
