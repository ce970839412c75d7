//! One connection, from accept to close: the TLS handshake (when configured), HTTP/1.1 or
//! HTTP/2 on hyper-util's auto builder, the idle watchdog, and what each request learns about
//! its connection.
//!
//! Why a watchdog instead of hyper's `header_read_timeout`: hyper's HTTP/1 timer (with a
//! `Timer` set) runs from the first read of a connection, and again from the end of each
//! response, until a request head is complete, which is the right span, but only once the
//! connection is known to be HTTP/1, that is after hyper-util's protocol detection, which
//! waits for the first bytes without a timeout (hyperium/hyper#3962): a client that sends
//! nothing, or the first bytes of the HTTP/2 preface, would be held forever. HTTP/2 has no
//! idle timeout at all (hyperium/hyper#3666), so a client could keep a connection without
//! streams open forever. The watchdog counts requests in flight (from the complete request
//! head until the response body has been sent or dropped) and closes a connection once that
//! count has been zero for the idle timeout, whatever the protocol or phase: the span of
//! hyper's timer and what it misses. A streamed response (server-sent events, a long poll, the
//! tarpit's drip) is in flight, so it is never cut; a slow request *body* is bounded by the
//! API's request timeout.

use super::limits::Limits;
use super::linger::Linger;
use super::tls::TlsSource;
use axum::Router;
use axum::body::Bytes;
use axum::extract::ConnectInfo;
use hyper::body::{Body as HttpBody, Frame, Incoming, SizeHint};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use rustls_pki_types::CertificateDer;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::sync::{Notify, OwnedSemaphorePermit};
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

/// The longest a TLS handshake may take (never longer than the idle timeout).
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// On shutdown, how long a connection with nothing in flight gets to close by itself (and
/// flush what it has written) before it is dropped.
const CLOSE_GRACE: Duration = Duration::from_millis(50);
/// HTTP/1 read buffer cap: request heads larger than this are refused (431). hyper's default
/// (~400 KiB) would let every slow client pin that much memory.
const H1_MAX_BUF: usize = 64 * 1024;
/// Concurrent HTTP/2 streams per connection (RFC 9113 recommends at least 100).
const H2_MAX_STREAMS: u32 = 100;
/// HTTP/2 pings find peers that vanished while a long response streams to them. Pings do not
/// count as activity for the idle watchdog.
const H2_PING_INTERVAL: Duration = Duration::from_secs(30);
const H2_PING_TIMEOUT: Duration = Duration::from_secs(20);
/// Streams a client may reset before the server accepts them (the "rapid reset" bound).
const H2_MAX_PENDING_RESETS: usize = 20;

/// The verified leaf certificate of a TLS client: present on a request only when the client
/// presented a certificate that chained to the configured client CA (rustls checked it in the
/// handshake; a certificate that does not chain fails the handshake).
#[derive(Debug, Clone)]
pub struct ClientCert(pub Arc<CertificateDer<'static>>);

/// This connection's place under `--max-connections`, in every request's extensions.
#[derive(Clone)]
pub struct ConnectionSlot(Arc<Slot>);

struct Slot {
    place: Mutex<Option<OwnedSemaphorePermit>>,
    released: Notify,
}

impl ConnectionSlot {
    pub(super) fn new(place: OwnedSemaphorePermit) -> Self {
        Self(Arc::new(Slot {
            place: Mutex::new(Some(place)),
            released: Notify::new(),
        }))
    }

    /// Gives the connection's place back, for a handler that holds its connection under a cap
    /// of its own (the Commercial tarpit). The connection is not reused afterwards: it closes
    /// once the responses in flight on it have ended.
    pub fn release(&self) {
        let place = self
            .0
            .place
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if place.is_some() {
            drop(place);
            self.0.released.notify_one();
        }
    }

    async fn released(&self) {
        self.0.released.notified().await;
    }
}

impl std::fmt::Debug for ConnectionSlot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ConnectionSlot")
    }
}

/// Counts the requests in flight on one connection, and since when it has had none. Plain
/// atomics: a request costs two atomic adds and a clock read, and nothing wakes the watchdog,
/// which sleeps until the earliest moment the connection could be idle long enough.
#[derive(Clone)]
struct Activity(Arc<Counts>);

struct Counts {
    in_flight: AtomicUsize,
    /// Milliseconds after `opened` when a request last ended (or 0).
    idle_since_ms: AtomicU64,
    opened: Instant,
}

/// One request in flight; dropped when its response body has been sent (or abandoned).
struct Busy(Arc<Counts>);

impl Drop for Busy {
    fn drop(&mut self) {
        // The time first: whoever sees the count at zero then also sees when it got there.
        let ms = u64::try_from(self.0.opened.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.0.idle_since_ms.store(ms, Ordering::Release);
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Activity {
    fn new() -> Self {
        Self(Arc::new(Counts {
            in_flight: AtomicUsize::new(0),
            idle_since_ms: AtomicU64::new(0),
            opened: Instant::now(),
        }))
    }

    fn begin(&self) -> Busy {
        self.0.in_flight.fetch_add(1, Ordering::AcqRel);
        Busy(self.0.clone())
    }

    fn in_flight(&self) -> usize {
        self.0.in_flight.load(Ordering::Acquire)
    }

    /// When the connection will have been idle for `after`, if nothing starts before then.
    fn idle_deadline(&self, after: Duration) -> Option<Instant> {
        if self.in_flight() > 0 {
            return None;
        }
        let since = Duration::from_millis(self.0.idle_since_ms.load(Ordering::Acquire));
        Some(self.0.opened + since + after)
    }

    /// Resolves once nothing has been in flight for `after`.
    async fn idle_for(&self, after: Duration) {
        loop {
            match self.idle_deadline(after) {
                Some(at) if Instant::now() >= at => return,
                Some(at) => tokio::time::sleep_until(at.into()).await,
                // Busy now: it cannot be idle long enough before `after` from now.
                None => tokio::time::sleep(after).await,
            }
        }
    }
}

/// A response body that keeps its request counted as in flight until it is dropped.
struct Tracked {
    body: axum::body::Body,
    _busy: Busy,
}

impl HttpBody for Tracked {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// Resolves when the connection has had nothing in flight for the idle timeout.
type IdleWatch = Pin<Box<dyn Future<Output = ()> + Send>>;

/// What every connection of one listener shares.
pub(super) struct Driver {
    app: Router,
    limits: Limits,
    tls: Option<TlsSource>,
    http: auto::Builder<TokioExecutor>,
}

/// What one connection's tasks watch besides the connection itself.
struct Signals {
    slot: ConnectionSlot,
    shutdown: CancellationToken,
    abandon: CancellationToken,
}

impl Driver {
    pub(super) fn new(app: Router, limits: Limits, tls: Option<TlsSource>) -> Self {
        let mut http = auto::Builder::new(TokioExecutor::new());
        // hyper's own header-read timer is off: the watchdog covers the same span (and what
        // hyper's misses), and hyper's arms and drops a timer per request (measured: ~2-3 µs
        // of server CPU per request, ~5 %, for nothing the watchdog does not already do).
        http.http1()
            .header_read_timeout(None)
            .max_buf_size(H1_MAX_BUF)
            .keep_alive(true);
        // The timer drives HTTP/2 keep-alive pings.
        http.http2()
            .timer(TokioTimer::new())
            .max_concurrent_streams(H2_MAX_STREAMS)
            .max_pending_accept_reset_streams(H2_MAX_PENDING_RESETS)
            .keep_alive_interval(H2_PING_INTERVAL)
            .keep_alive_timeout(H2_PING_TIMEOUT);
        Self {
            app,
            limits,
            tls,
            http,
        }
    }

    pub(super) async fn run(
        self: Arc<Self>,
        tcp: TcpStream,
        peer: SocketAddr,
        slot: ConnectionSlot,
        shutdown: CancellationToken,
        abandon: CancellationToken,
    ) {
        // Responses go out in one write each; waiting for ACKs (Nagle) only adds latency.
        let _ = tcp.set_nodelay(true);
        // Under TLS: what a client sends after the close is thrown away undecrypted.
        let tcp = Linger::new(tcp, shutdown.clone());
        // The idle clock starts at accept: the handshake and the first request head must
        // both fit in one idle timeout.
        let activity = Activity::new();
        let idle: IdleWatch = {
            let activity = activity.clone();
            let after = self.limits.idle_timeout;
            Box::pin(async move { activity.idle_for(after).await })
        };
        let signals = Signals {
            slot,
            shutdown,
            abandon,
        };
        // Each phase is boxed: the task then holds only the phase it is in, and a plain
        // connection carries nothing of TLS (the spawned future shrinks from ~6 KiB to a
        // few hundred bytes; it matters with thousands of idle connections).
        let Some(source) = &self.tls else {
            return Box::pin(self.serve(tcp, peer, None, activity, idle, signals)).await;
        };
        let acceptor = TlsAcceptor::from(source.current());
        let handshake_limit = HANDSHAKE_TIMEOUT.min(self.limits.idle_timeout);
        let tls = tokio::select! {
            r = tokio::time::timeout(handshake_limit, Box::pin(acceptor.accept(tcp))) => match r {
                Ok(Ok(tls)) => tls,
                Ok(Err(e)) => {
                    tracing::debug!(peer = %peer, error = %e, "TLS handshake refused");
                    return;
                }
                Err(_) => {
                    tracing::debug!(peer = %peer, "TLS handshake timed out");
                    return;
                }
            },
            () = signals.shutdown.cancelled() => return,
            () = signals.abandon.cancelled() => return,
        };
        let cert = tls
            .get_ref()
            .1
            .peer_certificates()
            .and_then(|chain| chain.first())
            .map(|leaf| ClientCert(Arc::new(leaf.clone().into_owned())));
        Box::pin(self.serve(tls, peer, cert, activity, idle, signals)).await;
    }

    async fn serve<I>(
        &self,
        io: I,
        peer: SocketAddr,
        cert: Option<ClientCert>,
        activity: Activity,
        mut idle: IdleWatch,
        signals: Signals,
    ) where
        I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let Signals {
            slot,
            shutdown,
            abandon,
        } = signals;
        let svc = {
            let app = self.app.clone();
            let activity = activity.clone();
            let slot = slot.clone();
            service_fn(move |mut req: hyper::Request<Incoming>| {
                let ext = req.extensions_mut();
                ext.insert(ConnectInfo(peer));
                ext.insert(slot.clone());
                if let Some(c) = &cert {
                    ext.insert(c.clone());
                }
                let busy = activity.begin();
                let app = app.clone();
                async move {
                    let res = app.oneshot(req).await.unwrap_or_else(|e| match e {});
                    Ok::<_, Infallible>(res.map(|body| Tracked { body, _busy: busy }))
                }
            })
        };
        let conn = self.http.serve_connection(TokioIo::new(io), svc);
        tokio::pin!(conn);
        let mut draining = false;
        let mut grace: Option<Pin<Box<tokio::time::Sleep>>> = None;
        loop {
            tokio::select! {
                r = conn.as_mut() => {
                    if let Err(e) = r {
                        tracing::debug!(peer = %peer, error = %e, "connection ended with an error");
                    }
                    return;
                }
                () = &mut idle => {
                    tracing::debug!(peer = %peer, "closing a connection with no request for the idle timeout");
                    return;
                }
                () = abandon.cancelled() => return,
                () = shutdown.cancelled(), if !draining => {
                    draining = true;
                    conn.as_mut().graceful_shutdown();
                    if activity.in_flight() == 0 {
                        grace = Some(Box::pin(tokio::time::sleep(CLOSE_GRACE)));
                    }
                }
                () = slot.released(), if !draining => {
                    draining = true;
                    conn.as_mut().graceful_shutdown();
                }
                () = async { grace.as_mut().expect("guarded by is_some").await }, if grace.is_some() => return,
            }
        }
    }
}
