//! HTTP serving for both editions, over plain TCP or TLS: one accept loop ([`serve`]) and one
//! connection driver (`conn`), on hyper-util's auto (HTTP/1.1 and HTTP/2) builder.
//!
//! What it promises under slow, idle and many clients (see `limits` for the numbers):
//! - a connection that has no request in flight for the idle timeout (30 s) is closed: one that
//!   never sends a complete request head (including one that sends nothing, or only part of a
//!   TLS handshake or of the HTTP/2 preface), and an idle keep-alive connection. A response
//!   still being streamed is a request in flight, so it is never cut.
//! - at most `max_connections` connections are open at once; past that the loop stops
//!   accepting (new clients wait in the kernel's listen queue) until one closes. A handler
//!   that takes over its connection for long (the Commercial tarpit, which has its own cap)
//!   gives its place back through the [`ConnectionSlot`] in the request's extensions.
//! - on shutdown nothing new is accepted, in-flight requests finish, idle connections close;
//!   the caller bounds the wait and dropping the returned future closes what is left.
//!
//! Every request carries `ConnectInfo<SocketAddr>`, its [`ConnectionSlot`] and, over TLS
//! with a client certificate that chained to the configured client CA, a [`ClientCert`].

mod conn;
mod limits;
mod linger;
mod tls;

pub use conn::{ClientCert, ConnectionSlot};
pub use limits::{
    DEFAULT_IDLE_TIMEOUT, DEFAULT_MAX_CONNECTIONS, LimitError, Limits, RESERVED_FILES,
};
pub use tls::{TlsError, TlsFiles, TlsSource, load_server_config};

use axum::Router;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpSocket};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub type ServeFuture = Pin<Box<dyn Future<Output = std::io::Result<()>> + Send>>;

/// How the listener serves: its limits, and TLS when configured.
#[derive(Clone)]
pub struct Options {
    pub limits: Limits,
    pub tls: Option<TlsSource>,
}

/// Serves `app` on `listener` until `shutdown` fires, then lets in-flight requests finish.
/// Dropping the future (the server's drain period is over) closes every connection left.
pub fn serve(
    listener: TcpListener,
    app: Router,
    options: Options,
    shutdown: CancellationToken,
) -> ServeFuture {
    Box::pin(accept_loop(listener, app, options, shutdown))
}

/// How many connections the kernel may queue while the server is not accepting (at the
/// connection cap, or in a burst); Linux caps it at `net.core.somaxconn` (4,096 by default).
/// std and tokio use 128, which a burst of clients fills at once.
pub const LISTEN_BACKLOG: u32 = 1024;

/// Binds a listening socket with [`LISTEN_BACKLOG`].
pub fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    // As std and tokio do: a restarted server can bind while old connections linger.
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}

/// Accept failures (out of descriptors and the like) are retried after this pause instead
/// of spinning.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

async fn accept_loop(
    listener: TcpListener,
    app: Router,
    options: Options,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let Options { limits, tls } = options;
    let places = Arc::new(Semaphore::new(limits.max_connections));
    let connections = TaskTracker::new();
    // Fires when this future is dropped: the connections still open end with it.
    let abandon = CancellationToken::new();
    let _abandon_on_drop = abandon.clone().drop_guard();
    let driver = Arc::new(conn::Driver::new(app, limits, tls));
    let mut saturated = false;
    loop {
        // A place first, then accept: over the cap, clients wait in the listen queue.
        let place = tokio::select! {
            p = places.clone().acquire_owned() => p.expect("the semaphore is never closed"),
            () = shutdown.cancelled() => break,
        };
        if places.available_permits() == 0 && !saturated {
            saturated = true;
            tracing::warn!(
                max_connections = limits.max_connections,
                "connection cap reached; new connections wait until one closes"
            );
        } else if places.available_permits() > limits.max_connections / 2 {
            saturated = false;
        }
        let (tcp, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                    continue;
                }
            },
            () = shutdown.cancelled() => break,
        };
        let slot = ConnectionSlot::new(place);
        connections.spawn(
            driver
                .clone()
                .run(tcp, peer, slot, shutdown.clone(), abandon.clone()),
        );
    }
    drop(listener);
    connections.close();
    connections.wait().await;
    Ok(())
}
