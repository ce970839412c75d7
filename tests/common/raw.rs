//! Raw bytes to a server, for tests where a client library would normalise the request or
//! hide the connection (slow heads, declared lengths, connection caps): plain TCP, or TLS
//! with a client config that trusts the server (the handshake is done before these return).
//! Suites pick which through their `edition.rs`.

use rustls::ClientConfig;
use rustls_pki_types::ServerName;
use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// The name a raw TLS client asks for: the test certificates name 127.0.0.1.
fn server_name(addr: SocketAddr) -> ServerName<'static> {
    ServerName::IpAddress(addr.ip().into())
}

/// An async connection to a server, plain or TLS.
pub enum RawStream {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

impl RawStream {
    /// Connects to `addr`, over TLS with `tls` when given (handshake included).
    pub async fn connect(addr: SocketAddr, tls: Option<Arc<ClientConfig>>) -> io::Result<Self> {
        let tcp = TcpStream::connect(addr).await?;
        let Some(cfg) = tls else {
            return Ok(Self::Plain(tcp));
        };
        let s = tokio_rustls::TlsConnector::from(cfg)
            .connect(server_name(addr), tcp)
            .await?;
        Ok(Self::Tls(Box::new(s)))
    }
}

impl AsyncRead for RawStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for RawStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_flush(cx),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

/// A blocking connection to a server, plain or TLS.
pub enum BlockingStream {
    Plain(std::net::TcpStream),
    Tls(Box<rustls::StreamOwned<rustls::ClientConnection, std::net::TcpStream>>),
}

impl BlockingStream {
    /// Connects to `addr`, over TLS with `tls` when given; the handshake is done (within
    /// `timeout`) before this returns, whose reads are then bounded by `timeout` too.
    pub fn connect(
        addr: SocketAddr,
        tls: Option<Arc<ClientConfig>>,
        timeout: Duration,
    ) -> io::Result<Self> {
        let tcp = std::net::TcpStream::connect(addr)?;
        tcp.set_read_timeout(Some(timeout))?;
        let Some(cfg) = tls else {
            return Ok(Self::Plain(tcp));
        };
        let conn =
            rustls::ClientConnection::new(cfg, server_name(addr)).map_err(io::Error::other)?;
        let mut s = rustls::StreamOwned::new(conn, tcp);
        while s.conn.is_handshaking() {
            s.conn.complete_io(&mut s.sock)?;
        }
        Ok(Self::Tls(Box::new(s)))
    }

    pub fn set_read_timeout(&self, t: Duration) -> io::Result<()> {
        match self {
            Self::Plain(s) => s.set_read_timeout(Some(t)),
            Self::Tls(s) => s.sock.set_read_timeout(Some(t)),
        }
    }
}

impl Read for BlockingStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Self::Plain(s) => s.read(buf),
            Self::Tls(s) => s.read(buf),
        }
    }
}

impl Write for BlockingStream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Self::Plain(s) => s.write(buf),
            Self::Tls(s) => s.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Self::Plain(s) => s.flush(),
            Self::Tls(s) => s.flush(),
        }
    }
}
