//! A TCP proxy between primary and backup (TLS passes through untouched), switchable between
//! forwarding, dropping (new connections closed at once, existing ones cut) and holding
//! (connections accepted, never forwarded, never answered). Forwarding can stagger
//! connections (every other one slowed down), so batches sent later on a fast connection
//! overtake earlier ones on a slow one.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Forward,
    Drop,
    Hold,
}

struct Shared {
    mode: Mutex<Mode>,
    target: Mutex<Option<SocketAddr>>,
    /// Cancelled to cut every connection accepted before it was replaced.
    cut: Mutex<CancellationToken>,
    /// While set, bytes from the backup are read and thrown away (requests still arrive):
    /// the backup applies a batch whose acknowledgement the primary never sees.
    lose_replies: AtomicBool,
    /// Milliseconds each chunk towards the backup waits on every other connection (0: none).
    stagger_ms: AtomicU64,
    accepted: AtomicU64,
}

pub struct Proxy {
    pub addr: SocketAddr,
    shared: Arc<Shared>,
    stop: CancellationToken,
    thread: Option<thread::JoinHandle<()>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Proxy {
    pub fn start() -> Self {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind proxy");
        listener.set_nonblocking(true).expect("nonblocking");
        let addr = listener.local_addr().expect("proxy addr");
        let shared = Arc::new(Shared {
            mode: Mutex::new(Mode::Forward),
            target: Mutex::new(None),
            cut: Mutex::new(CancellationToken::new()),
            lose_replies: AtomicBool::new(false),
            stagger_ms: AtomicU64::new(0),
            accepted: AtomicU64::new(0),
        });
        let stop = CancellationToken::new();
        let (s, st) = (shared.clone(), stop.clone());
        let thread = thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .expect("proxy runtime");
            rt.block_on(async move {
                let listener = TcpListener::from_std(listener).expect("tokio listener");
                loop {
                    let tcp = tokio::select! {
                        r = listener.accept() => match r {
                            Ok((tcp, _)) => tcp,
                            Err(_) => continue,
                        },
                        () = st.cancelled() => break,
                    };
                    let mode = *lock(&s.mode);
                    let target = *lock(&s.target);
                    let cut = lock(&s.cut).clone();
                    let stop = st.clone();
                    let shared = s.clone();
                    tokio::spawn(async move { handle(tcp, mode, target, cut, stop, shared).await });
                }
            });
            rt.shutdown_background();
        });
        Self {
            addr,
            shared,
            stop,
            thread: Some(thread),
        }
    }

    /// The URL a primary's `backup_pop.url` names to go through this proxy.
    pub fn url(&self) -> String {
        format!("https://{}", self.addr)
    }

    pub fn set_target(&self, target: SocketAddr) {
        *lock(&self.shared.target) = Some(target);
    }

    /// Switching to `Drop` or `Hold` cuts the connections open so far.
    pub fn set_mode(&self, mode: Mode) {
        *lock(&self.shared.mode) = mode;
        if mode != Mode::Forward {
            let old = std::mem::replace(&mut *lock(&self.shared.cut), CancellationToken::new());
            old.cancel();
        }
    }

    /// Throw away (`true`) or deliver the backup's replies, on open connections too.
    pub fn lose_replies(&self, lose: bool) {
        self.shared.lose_replies.store(lose, Ordering::SeqCst);
    }

    /// Slow every other new connection's requests down by `delay` per chunk (zero: none).
    pub fn stagger(&self, delay: Duration) {
        self.shared
            .stagger_ms
            .store(delay.as_millis() as u64, Ordering::SeqCst);
    }
}

async fn handle(
    mut tcp: TcpStream,
    mode: Mode,
    target: Option<SocketAddr>,
    cut: CancellationToken,
    stop: CancellationToken,
    shared: Arc<Shared>,
) {
    match (mode, target) {
        (Mode::Drop, _) | (Mode::Forward, None) => drop(tcp),
        (Mode::Hold, _) => {
            tokio::select! {
                () = cut.cancelled() => {}
                () = stop.cancelled() => {}
            }
            drop(tcp);
        }
        (Mode::Forward, Some(t)) => {
            let Ok(mut up) = TcpStream::connect(t).await else {
                return;
            };
            let (mut cr, mut cw) = tcp.split();
            let (mut ur, mut uw) = up.split();
            let slow = shared.accepted.fetch_add(1, Ordering::SeqCst) % 2 == 1;
            let upstream = async {
                let mut buf = vec![0u8; 16 * 1024];
                loop {
                    let n = match cr.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => n,
                    };
                    let delay = shared.stagger_ms.load(Ordering::SeqCst);
                    if slow && delay > 0 {
                        tokio::time::sleep(Duration::from_millis(delay)).await;
                    }
                    if uw.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                }
                let _ = uw.shutdown().await;
            };
            let downstream = async {
                let mut buf = vec![0u8; 16 * 1024];
                loop {
                    let n = match ur.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => n,
                    };
                    if shared.lose_replies.load(Ordering::SeqCst) {
                        continue;
                    }
                    if cw.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                }
                let _ = cw.shutdown().await;
            };
            tokio::select! {
                // Either side closing ends the connection: the peer sees it closed.
                () = upstream => {}
                () = downstream => {}
                () = cut.cancelled() => {}
                () = stop.cancelled() => {}
            }
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.stop.cancel();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
