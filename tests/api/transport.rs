//! Slow, idle and many clients, over real sockets: slowloris connections are closed by the
//! idle timeout while other clients are served; a connection that sends nothing, part of the
//! HTTP/2 preface, or HTTP/2 without ever opening a stream is closed; an idle keep-alive
//! connection is closed; a streamed response longer than the timeout is not cut; and
//! `max_connections` holds.
//!
//! The idle timeout is shortened (the default 30 s is checked by a unit test in
//! `src/transport/limits.rs`).

use crate::common::raw::RawStream;
use crate::helpers::{TestApp, spawn_app_with};
use axum::Router;
use axum::body::{Body, Bytes};
use axum::routing::get;
use clavitor::transport::{self, Limits, Options};
use hyper::body::Frame;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

const IDLE: Duration = Duration::from_secs(2);
/// The slowloris test's: 200 clients connect at once, and half of it is the margin each has to
/// connect (a TLS handshake, on a loaded machine) and be seen open before the server may close
/// it.
const SLOWLORIS_IDLE: Duration = Duration::from_secs(4);
/// Slack for scheduling on a loaded machine, on top of the timeout.
const SLACK: Duration = Duration::from_secs(8);

async fn app_with_idle(idle: Duration) -> TestApp {
    spawn_app_with(|c| c.idle_timeout = idle).await
}

/// Reads until the server closes `s` (EOF or reset); returns when, or `None` past `limit`.
async fn closed_within(s: &mut RawStream, limit: Duration) -> Option<Instant> {
    let deadline = Instant::now() + limit;
    let mut buf = [0u8; 1024];
    loop {
        match tokio::time::timeout_at(deadline, s.read(&mut buf)).await {
            Err(_) => return None,
            Ok(Ok(0)) | Ok(Err(_)) => return Some(Instant::now()),
            // A 408 before the close is fine.
            Ok(Ok(_)) => {}
        }
    }
}

/// Whether the server has closed `s` already (without waiting).
async fn is_open(s: &mut RawStream) -> bool {
    let mut buf = [0u8; 64];
    tokio::time::timeout(Duration::from_millis(20), s.read(&mut buf))
        .await
        .is_err()
}

/// One slowloris client: a request head sent one byte a second, never finished in time.
/// Returns how long after connecting the server closed it (`None`: it never did).
async fn slowloris(
    connecting: impl Future<Output = RawStream>,
    open_at_half: Arc<tokio::sync::Barrier>,
) -> Option<Duration> {
    let started = Instant::now();
    let mut s = connecting.await;
    let head = b"GET /healthz HTTP/1.1\r\nHost: slow\r\nX-Padding: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n\r\n";
    let mut checked = false;
    for byte in head {
        if s.write_all(&[*byte]).await.is_err() {
            return Some(started.elapsed());
        }
        let mut tick = Instant::now() + Duration::from_secs(1);
        if !checked {
            // Look at half the timeout sharp: a client whose connection (a TLS handshake under
            // load) took a while must not tick past it and miss the check.
            tick = tick.min((started + SLOWLORIS_IDLE / 2).max(Instant::now()));
        }
        let mut buf = [0u8; 256];
        loop {
            match tokio::time::timeout_at(tick, s.read(&mut buf)).await {
                Err(_) => break,
                Ok(Ok(0)) | Ok(Err(_)) => return Some(started.elapsed()),
                Ok(Ok(_)) => {}
            }
        }
        if !checked && started.elapsed() >= SLOWLORIS_IDLE / 2 {
            checked = true;
            open_at_half.wait().await;
        }
        if started.elapsed() > SLOWLORIS_IDLE + SLACK {
            return None;
        }
    }
    None
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slowloris_connections_are_closed_by_the_timeout_while_others_are_served() {
    const SLOW: usize = 200;
    let app = app_with_idle(SLOWLORIS_IDLE).await;
    let half = Arc::new(tokio::sync::Barrier::new(SLOW + 1));
    let slow: Vec<_> = (0..SLOW)
        .map(|_| {
            let tls = app.serving().raw_tls();
            let connecting =
                async move { RawStream::connect(app.addr, tls).await.expect("connect") };
            tokio::spawn(slowloris(connecting, half.clone()))
        })
        .collect();
    // Every slow client is connected and still open at half the timeout...
    tokio::time::timeout(SLOWLORIS_IDLE + SLACK, half.wait())
        .await
        .expect("all slow clients reach half the timeout with their connection open");
    // ...and meanwhile other clients, each on a new connection, are served.
    let fresh = app
        .serving()
        .reaching(
            reqwest::Client::builder()
                .pool_max_idle_per_host(0)
                .timeout(Duration::from_secs(5)),
        )
        .build()
        .unwrap();
    for _ in 0..20 {
        let res = fresh
            .get(app.url("/healthz"))
            .send()
            .await
            .expect("a normal client is served while 200 slowloris connections are open");
        assert_eq!(res.status(), 200);
    }
    for (i, t) in slow.into_iter().enumerate() {
        let closed_after = t
            .await
            .expect("slow client task")
            .unwrap_or_else(|| panic!("slowloris connection {i} was never closed"));
        assert!(
            closed_after >= SLOWLORIS_IDLE / 2 && closed_after <= SLOWLORIS_IDLE + SLACK,
            "slowloris connection {i} closed after {closed_after:?}; the idle timeout is {SLOWLORIS_IDLE:?}"
        );
    }
}

/// The HTTP/2 connection preface and an empty SETTINGS frame: a valid HTTP/2 client that
/// never opens a stream.
const H2_HELLO: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00";

/// Reads whatever the server sent so far (e.g. its HTTP/2 SETTINGS), without waiting long.
async fn drain(s: &mut RawStream) {
    let mut buf = [0u8; 1024];
    while let Ok(Ok(n)) = tokio::time::timeout(Duration::from_millis(100), s.read(&mut buf)).await {
        if n == 0 {
            return;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_that_sends_nothing_or_part_of_the_http2_preface_is_closed() {
    let app = app_with_idle(IDLE).await;
    // Silent before a byte of TLS too, where the edition serves TLS (the handshake's bound).
    let mut bare = RawStream::Plain(tokio::net::TcpStream::connect(app.addr).await.unwrap());
    let mut silent = app.raw().await;
    let mut preface = app.raw().await;
    preface.write_all(b"PRI * HTTP/2.0\r\n").await.unwrap();
    let mut h2 = app.raw().await;
    h2.write_all(H2_HELLO).await.unwrap();
    let opened = Instant::now();
    drain(&mut h2).await;
    tokio::time::sleep(IDLE / 2).await;
    assert!(is_open(&mut bare).await, "closed before the timeout");
    assert!(is_open(&mut silent).await, "closed before the timeout");
    assert!(is_open(&mut preface).await, "closed before the timeout");
    assert!(is_open(&mut h2).await, "closed before the timeout");
    for (what, s) in [
        ("bare TCP", &mut bare),
        ("silent", &mut silent),
        ("partial preface", &mut preface),
        ("HTTP/2 without streams", &mut h2),
    ] {
        let at = closed_within(s, IDLE + SLACK)
            .await
            .unwrap_or_else(|| panic!("the {what} connection was never closed"));
        assert!(at - opened >= IDLE / 2, "{what}: closed too early");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_keep_alive_connection_is_closed() {
    let app = app_with_idle(IDLE).await;
    let mut s = app.raw().await;
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 1024];
    let n = s.read(&mut buf).await.unwrap();
    assert!(buf[..n].starts_with(b"HTTP/1.1 200"));
    let answered = Instant::now();
    tokio::time::sleep(IDLE / 2).await;
    assert!(
        is_open(&mut s).await,
        "a keep-alive connection closed early"
    );
    let at = closed_within(&mut s, IDLE + SLACK)
        .await
        .expect("an idle keep-alive connection is closed");
    assert!(at - answered >= IDLE / 2);
}

/// A body that sends one chunk from `rx` at a time, like server-sent events.
struct Events(mpsc::Receiver<Bytes>);

impl hyper::body::Body for Events {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        self.0.poll_recv(cx).map(|c| c.map(|b| Ok(Frame::data(b))))
    }
}

/// `GET /events`: `n` events, one every `every`.
fn events(n: usize, every: Duration) -> Router {
    Router::new().route(
        "/events",
        get(move || async move {
            let (tx, rx) = mpsc::channel(1);
            tokio::spawn(async move {
                for i in 0..n {
                    tokio::time::sleep(every).await;
                    if tx
                        .send(Bytes::from(format!("data: {i}\n\n")))
                        .await
                        .is_err()
                    {
                        return;
                    }
                }
            });
            (
                [("content-type", "text/event-stream")],
                Body::new(Events(rx)),
            )
        }),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_streamed_response_longer_than_the_idle_timeout_is_not_cut() {
    let idle = Duration::from_secs(1);
    let (n, every) = (8, Duration::from_millis(400));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let shutdown = CancellationToken::new();
    let server = tokio::spawn(transport::serve(
        listener,
        events(n, every),
        Options {
            limits: Limits {
                idle_timeout: idle,
                max_connections: 16,
            },
            tls: None,
        },
        shutdown.clone(),
    ));
    let started = Instant::now();
    let res = reqwest::Client::new()
        .get(format!("http://{addr}/events"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let body = tokio::time::timeout(Duration::from_secs(20), res.text())
        .await
        .expect("the stream ends")
        .expect("the stream is not cut");
    assert!(
        started.elapsed() > idle * 3,
        "the stream outlived the idle timeout"
    );
    for i in 0..n {
        assert!(
            body.contains(&format!("data: {i}\n")),
            "event {i} missing: {body:?}"
        );
    }
    // Also with nothing sent for longer than the timeout between two events.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr2 = listener.local_addr().unwrap();
    let quiet = tokio::spawn(transport::serve(
        listener,
        events(2, idle * 2),
        Options {
            limits: Limits {
                idle_timeout: idle,
                max_connections: 16,
            },
            tls: None,
        },
        shutdown.clone(),
    ));
    let body = reqwest::get(format!("http://{addr2}/events"))
        .await
        .unwrap()
        .text()
        .await
        .expect("a quiet stream is not cut");
    assert!(body.contains("data: 1\n"), "{body:?}");
    shutdown.cancel();
    for s in [server, quiet] {
        tokio::time::timeout(Duration::from_secs(5), s)
            .await
            .expect("serve ends on shutdown")
            .unwrap()
            .unwrap();
    }
}

/// Sends one request on `s` and reads its (small) response.
async fn healthz_on(s: &mut RawStream) -> String {
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 2048];
    let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf))
        .await
        .expect("an answer")
        .unwrap();
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_max_connections_a_client_waits_until_one_closes() {
    let app = spawn_app_with(|c| c.max_connections = Some(2)).await;
    let mut first = app.raw().await;
    let mut second = app.raw().await;
    assert!(healthz_on(&mut first).await.starts_with("HTTP/1.1 200"));
    assert!(healthz_on(&mut second).await.starts_with("HTTP/1.1 200"));

    // The third connects (the kernel queues it; over TLS its handshake waits too) but is not
    // served while both are open.
    let tls = app.serving().raw_tls();
    let addr = app.addr;
    let mut third = tokio::spawn(async move {
        let mut s = RawStream::connect(addr, tls).await.expect("connect");
        healthz_on(&mut s).await
    });
    let early = tokio::time::timeout(Duration::from_secs(1), &mut third).await;
    assert!(
        early.is_err(),
        "a third connection was served past max_connections 2: {early:?}"
    );

    // One closes: the third is accepted and answered.
    drop(first);
    let answer = tokio::time::timeout(Duration::from_secs(5), third)
        .await
        .expect("served once a connection closed")
        .unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(healthz_on(&mut second).await.starts_with("HTTP/1.1 200"));
}
