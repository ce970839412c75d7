//! A minimal HTTP/1.1 keep-alive client on a raw `TcpStream` (or TLS over one: Commercial POPs,
//! the proxy's upstream), parsed with `httparse`.
//!
//! One request in flight per connection, `Content-Length` bodies only (what the servers under
//! test send), no allocation per request once the buffers have grown: the load generator must
//! cost as little CPU as possible, because it shares the machine with the server it measures.

use std::io;
use std::net::SocketAddr;
use std::ops::Range;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// How to reach a server: plain HTTP, or HTTPS trusting a CA the bench made.
#[derive(Clone, Default)]
pub enum Connector {
    #[default]
    Plain,
    Tls(std::sync::Arc<tokio_rustls::rustls::ClientConfig>),
}

impl Connector {
    pub async fn connect(&self, addr: SocketAddr) -> io::Result<Conn> {
        Ok(Conn::new(self.open(addr).await?))
    }

    async fn open(&self, addr: SocketAddr) -> io::Result<Stream> {
        let tcp = TcpStream::connect(addr).await?;
        tcp.set_nodelay(true)?;
        match self {
            Connector::Plain => Ok(Stream::Plain(tcp)),
            Connector::Tls(cfg) => {
                let name = tokio_rustls::rustls::pki_types::ServerName::IpAddress(addr.ip().into());
                let tls = tokio_rustls::TlsConnector::from(cfg.clone())
                    .connect(name, tcp)
                    .await?;
                Ok(Stream::Tls(Box::new(tls)))
            }
        }
    }

    /// A connection that is not used for HTTP exchanges (e.g. one held open by the tarpit).
    #[cfg(feature = "commercial")]
    pub async fn raw(&self, addr: SocketAddr) -> io::Result<Stream> {
        self.open(addr).await
    }
}

pub enum Stream {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

impl Stream {
    pub async fn write_all(&mut self, data: &[u8]) -> io::Result<()> {
        match self {
            Stream::Plain(s) => s.write_all(data).await,
            Stream::Tls(s) => {
                s.write_all(data).await?;
                // rustls buffers the record until flushed.
                s.flush().await
            }
        }
    }

    pub async fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Plain(s) => s.read(buf).await,
            Stream::Tls(s) => s.read(buf).await,
        }
    }
}

pub struct Conn {
    stream: Stream,
    buf: Vec<u8>,
    /// Unconsumed response bytes are `buf[start..end]`.
    start: usize,
    end: usize,
    body: Range<usize>,
}

fn bad(msg: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.into())
}

/// Parses a response head: `Some((status, head_len, body_len))` once the head is complete.
fn parse_head(data: &[u8]) -> io::Result<Option<(u16, usize, usize)>> {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut res = httparse::Response::new(&mut headers);
    let head_len = match res
        .parse(data)
        .map_err(|e| bad(format!("bad response: {e}")))?
    {
        httparse::Status::Partial => return Ok(None),
        httparse::Status::Complete(n) => n,
    };
    let status = res.code.ok_or_else(|| bad("response without status"))?;
    let mut body_len = 0;
    for h in res.headers.iter() {
        if h.name.eq_ignore_ascii_case("content-length") {
            body_len = std::str::from_utf8(h.value)
                .ok()
                .and_then(|v| v.trim().parse().ok())
                .ok_or_else(|| bad("bad Content-Length"))?;
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            return Err(bad(
                "chunked responses are not supported by the bench client",
            ));
        }
    }
    Ok(Some((status, head_len, body_len)))
}

impl Conn {
    fn new(stream: Stream) -> Self {
        Self {
            stream,
            buf: vec![0; 16 * 1024],
            start: 0,
            end: 0,
            body: 0..0,
        }
    }

    /// Sends one complete request and reads its response; returns the status. The body stays
    /// readable through [`Conn::body`] until the next call.
    pub async fn roundtrip(&mut self, request: &[u8]) -> io::Result<u16> {
        self.stream.write_all(request).await?;
        loop {
            if self.end > self.start
                && let Some((status, head, body)) = parse_head(&self.buf[self.start..self.end])?
            {
                let total = head + body;
                if self.end - self.start >= total {
                    self.body = self.start + head..self.start + total;
                    self.start += total;
                    if self.start == self.end {
                        // Nothing pending: the next response starts at the front again. The
                        // bytes stay where they are, so `body` remains valid.
                        self.start = 0;
                        self.end = 0;
                    }
                    return Ok(status);
                }
                if total > self.buf.len() {
                    self.buf.resize(total.next_power_of_two(), 0);
                }
            }
            if self.start > 0 && self.buf.len() - self.end < 4096 {
                self.buf.copy_within(self.start..self.end, 0);
                self.end -= self.start;
                self.start = 0;
            }
            if self.end == self.buf.len() {
                let n = self.buf.len() * 2;
                self.buf.resize(n, 0);
            }
            let n = self.stream.read(&mut self.buf[self.end..]).await?;
            if n == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "server closed the connection",
                ));
            }
            self.end += n;
        }
    }

    pub fn body(&self) -> &[u8] {
        &self.buf[self.body.clone()]
    }
}

/// Appends a complete HTTP/1.1 request to `out`.
pub fn build_request(
    out: &mut Vec<u8>,
    method: &str,
    path: &str,
    host: SocketAddr,
    token: Option<&str>,
    body: Option<&[u8]>,
) {
    use std::io::Write;
    // Writing into a Vec cannot fail.
    let _ = write!(out, "{method} {path} HTTP/1.1\r\nHost: {host}\r\n");
    if let Some(t) = token {
        let _ = write!(out, "Authorization: Bearer {t}\r\n");
    }
    match body {
        Some(b) => {
            let _ = write!(
                out,
                "Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
                b.len()
            );
            out.extend_from_slice(b);
        }
        None => out.extend_from_slice(b"\r\n"),
    }
}

/// One request on a fresh connection through `connector`, for setup and probes:
/// `(status, body)`.
pub async fn request_with(
    connector: &Connector,
    addr: SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&str>,
) -> io::Result<(u16, String)> {
    let mut conn = connector.connect(addr).await?;
    conn.request(addr, method, path, token, body).await
}

impl Conn {
    /// One request on this (kept-alive) connection: `(status, body)`.
    pub async fn request(
        &mut self,
        addr: SocketAddr,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<&str>,
    ) -> io::Result<(u16, String)> {
        let mut req = Vec::new();
        build_request(&mut req, method, path, addr, token, body.map(str::as_bytes));
        let status = self.roundtrip(&req).await?;
        Ok((status, String::from_utf8_lossy(self.body()).into_owned()))
    }
}
