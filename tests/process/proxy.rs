//! A reverse proxy in front of a real `clavitor serve`, as users put one: terminating TLS with
//! a certificate from a test CA (rcgen) and/or serving the vault under a path prefix. It
//! records the target of every request that reaches it, so a test can tell what was sent.

use crate::common::raw::RawStream;
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// A test certificate authority.
pub struct TestCa {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

impl TestCa {
    pub fn new(name: &str) -> Self {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        params.distinguished_name.push(DnType::CommonName, name);
        let key = KeyPair::generate().expect("CA key");
        Self {
            issuer: CertifiedIssuer::self_signed(params, key).expect("self-signed CA"),
        }
    }

    pub fn pem(&self) -> String {
        self.issuer.pem()
    }

    /// A TLS server config with a certificate for `names` (DNS names or IP addresses).
    pub fn server_config(&self, names: &[&str]) -> Arc<rustls::ServerConfig> {
        let names: Vec<String> = names.iter().map(|n| (*n).to_owned()).collect();
        let mut params = CertificateParams::new(names).expect("leaf params");
        params
            .distinguished_name
            .push(DnType::CommonName, "clavitor test server");
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let key = KeyPair::generate().expect("leaf key");
        let cert = params.signed_by(&key, &*self.issuer).expect("sign leaf");
        let key = rustls::pki_types::PrivatePkcs8KeyDer::from(key.serialize_der());
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_no_client_auth()
        .with_single_cert(vec![cert.der().clone()], key.into())
        .expect("server certificate");
        Arc::new(config)
    }
}

/// The proxy: listening on 127.0.0.1, one request per connection, stopped on drop.
pub struct Proxy {
    /// `http(s)://127.0.0.1:PORT` (without the prefix).
    pub base: String,
    targets: Arc<Mutex<Vec<String>>>,
    rt: Option<tokio::runtime::Runtime>,
}

impl Proxy {
    /// Forwards requests whose target starts with `prefix` + `/` to `upstream`, without the
    /// prefix; answers anything else 404 itself. `tls`: terminate TLS with this config.
    pub fn start(
        upstream: SocketAddr,
        tls: Option<Arc<rustls::ServerConfig>>,
        prefix: &str,
    ) -> Self {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("proxy runtime");
        let std_listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind proxy");
        std_listener.set_nonblocking(true).unwrap();
        let addr = std_listener.local_addr().unwrap();
        let scheme = if tls.is_some() { "https" } else { "http" };
        let targets = Arc::new(Mutex::new(Vec::new()));
        let (seen, prefix) = (targets.clone(), prefix.to_owned());
        rt.spawn(async move {
            let listener = tokio::net::TcpListener::from_std(std_listener).expect("listener");
            let acceptor = tls.map(tokio_rustls::TlsAcceptor::from);
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    continue;
                };
                let (seen, prefix, acceptor) = (seen.clone(), prefix.clone(), acceptor.clone());
                tokio::spawn(async move {
                    let work = async {
                        match acceptor {
                            // A refused handshake ends here: no request was sent.
                            Some(a) => match a.accept(tcp).await {
                                Ok(s) => forward(s, upstream, &prefix, &seen).await,
                                Err(_) => Ok(()),
                            },
                            None => forward(tcp, upstream, &prefix, &seen).await,
                        }
                    };
                    let _ = tokio::time::timeout(Duration::from_secs(10), work).await;
                });
            }
        });
        Self {
            base: format!("{scheme}://{addr}"),
            targets,
            rt: Some(rt),
        }
    }

    /// Every request target received so far, in order.
    pub fn targets(&self) -> Vec<String> {
        self.targets
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        if let Some(rt) = self.rt.take() {
            rt.shutdown_timeout(Duration::from_secs(1));
        }
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// One request: read its head and body, rewrite the target, send it upstream (over TLS when
/// the vault serves it) with `connection: close`, and relay the whole answer.
async fn forward<S: AsyncRead + AsyncWrite + Unpin>(
    mut client: S,
    upstream: SocketAddr,
    prefix: &str,
    seen: &Mutex<Vec<String>>,
) -> std::io::Result<()> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let head_end = loop {
        if let Some(i) = find(&buf, b"\r\n\r\n") {
            break i + 4;
        }
        let n = client.read(&mut chunk).await?;
        if n == 0 || buf.len() > 64 * 1024 {
            return Ok(());
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let mut lines = head.split("\r\n");
    let mut request_line = lines.next().unwrap_or_default().splitn(3, ' ');
    let (method, target, version) = (
        request_line.next().unwrap_or_default(),
        request_line.next().unwrap_or_default(),
        request_line.next().unwrap_or_default(),
    );
    seen.lock()
        .unwrap_or_else(|p| p.into_inner())
        .push(target.to_owned());
    let Some(rest) = target.strip_prefix(prefix).filter(|r| r.starts_with('/')) else {
        let body = r#"{"error":{"code":"not_found","message":"nothing here on the proxy"}}"#;
        let answer = format!(
            "HTTP/1.1 404 Not Found\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        );
        client.write_all(answer.as_bytes()).await?;
        return client.shutdown().await;
    };
    let mut out = format!("{method} {rest} {version}\r\n");
    let mut content_length = 0;
    for line in lines.filter(|l| !l.is_empty()) {
        let (name, value) = line.split_once(':').unwrap_or((line, ""));
        if name.trim().eq_ignore_ascii_case("connection") {
            continue;
        }
        if name.trim().eq_ignore_ascii_case("content-length") {
            content_length = value.trim().parse().unwrap_or(0);
        }
        out.push_str(line);
        out.push_str("\r\n");
    }
    out.push_str("connection: close\r\n\r\n");
    let mut body = buf[head_end..].to_vec();
    while body.len() < content_length {
        let n = client.read(&mut chunk).await?;
        if n == 0 {
            return Ok(());
        }
        body.extend_from_slice(&chunk[..n]);
    }
    // As this edition's clients reach the vault: a Commercial POP serves only https.
    let mut up = RawStream::connect(upstream, crate::edition::raw_tls()).await?;
    up.write_all(out.as_bytes()).await?;
    up.write_all(&body).await?;
    let mut answer = Vec::new();
    up.read_to_end(&mut answer).await?;
    client.write_all(&answer).await?;
    client.shutdown().await
}
