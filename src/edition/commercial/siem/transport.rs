//! The two ways events leave: a syslog connection (TCP + TLS, RFC 5425) and an HTTPS client.

use super::config::{Format, Sink, Target};
use rustls::{ClientConfig, RootCertStore};
use rustls_pki_types::ServerName;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

/// Bounds a connect, a TLS handshake, a write or a POST: a hung collector fails and is retried.
pub const IO_TIMEOUT: Duration = Duration::from_secs(10);

/// The CAs given in `ca_file` alone, else the bundled web PKI roots.
pub fn client_config(sink: &Sink) -> Result<ClientConfig, String> {
    let mut roots = RootCertStore::empty();
    if sink.ca.is_empty() {
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    }
    for c in &sink.ca {
        roots
            .add(c.clone())
            .map_err(|e| format!("ca_file certificate rejected: {e}"))?;
    }
    Ok(
        ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .with_root_certificates(roots)
            .with_no_client_auth(),
    )
}

pub struct Syslog {
    stream: TlsStream<TcpStream>,
}

impl Syslog {
    pub async fn connect(sink: &Sink) -> Result<Self, String> {
        let Target::Syslog { host, port } = &sink.target else {
            return Err("not a syslog sink".into());
        };
        let name = ServerName::try_from(host.clone())
            .map_err(|e| format!("{host:?} is not a host name: {e}"))?;
        let connector = TlsConnector::from(Arc::new(client_config(sink)?));
        let connect = async {
            let tcp = TcpStream::connect((host.as_str(), *port))
                .await
                .map_err(|e| format!("cannot connect to {host}:{port}: {e}"))?;
            let _ = tcp.set_nodelay(true);
            connector
                .connect(name, tcp)
                .await
                .map_err(|e| format!("TLS with {host}:{port} failed: {e}"))
        };
        let stream = tokio::time::timeout(IO_TIMEOUT, connect)
            .await
            .map_err(|_| format!("{host}:{port}: no TLS connection within {IO_TIMEOUT:?}"))??;
        Ok(Self { stream })
    }

    pub async fn send(&mut self, frames: &[u8]) -> Result<(), String> {
        let write = async {
            self.stream.write_all(frames).await?;
            self.stream.flush().await
        };
        match tokio::time::timeout(IO_TIMEOUT, write).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(format!("syslog write failed: {e}")),
            Err(_) => Err(format!("syslog write took longer than {IO_TIMEOUT:?}")),
        }
    }

    /// Whether the collector still holds the connection open. Syslog has no acknowledgement:
    /// a collector that closed, or reset the connection with our bytes unread, shows here,
    /// and what was written since the last confirmation is sent again.
    pub async fn alive(&mut self) -> bool {
        let mut buf = [0u8; 512];
        match tokio::time::timeout(Duration::ZERO, self.stream.read(&mut buf)).await {
            Err(_) => true,
            Ok(Ok(0)) | Ok(Err(_)) => false,
            // A collector has nothing to say on this protocol; whatever it said is ignored.
            Ok(Ok(_)) => true,
        }
    }
}

pub struct Http {
    client: reqwest::Client,
}

impl Http {
    pub fn build(sink: &Sink) -> Result<Self, String> {
        let client = reqwest::Client::builder()
            .use_preconfigured_tls(client_config(sink)?)
            .timeout(IO_TIMEOUT)
            .build()
            .map_err(|e| format!("cannot build the HTTP client: {e}"))?;
        Ok(Self { client })
    }

    /// POSTs one batch (JSON lines); `Ok` only on a 2xx answer.
    pub async fn send(&self, sink: &Sink, body: Vec<u8>) -> Result<(), String> {
        let Target::Http { url, token } = &sink.target else {
            return Err("not an http sink".into());
        };
        let (auth, content_type) = match sink.format {
            Format::Hec => (format!("Splunk {}", token.expose()), "application/json"),
            _ => (format!("Bearer {}", token.expose()), "application/x-ndjson"),
        };
        let answer = self
            .client
            .post(url.clone())
            .header(reqwest::header::AUTHORIZATION, auth)
            .header(reqwest::header::CONTENT_TYPE, content_type)
            .body(body)
            .send()
            .await;
        match answer {
            Ok(r) if r.status().is_success() => Ok(()),
            Ok(r) => {
                let status = r.status();
                let text = r.text().await.unwrap_or_default();
                Err(format!(
                    "collector answered {status}: {}",
                    text.chars().take(200).collect::<String>()
                ))
            }
            Err(e) => Err(format!("cannot reach the collector: {}", chain(&e))),
        }
    }
}

fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(inner) = src {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        src = inner.source();
    }
    s
}
