//! A control-plane stand-in (Commercial suites only): an HTTPS server that records what a POP
//! sends (`/v1/alerts`, `/v1/heartbeat`, `/v1/telemetry`) and answers heartbeats as a manual
//! control plane without leases would, or fails, or hangs.

use super::pki::{Ca, provider};
use super::poll::wait_for;
use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::{Value, json};
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// How the stand-in answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum CpMode {
    Ok = 0,
    Fail500 = 1,
    Hang = 2,
}

/// One request the stand-in received.
#[derive(Clone, Debug)]
pub struct Recorded {
    pub path: String,
    pub authorization: Option<String>,
    pub body: Value,
}

#[derive(Clone)]
struct CpState {
    records: Arc<Mutex<Vec<Recorded>>>,
    mode: Arc<AtomicU8>,
}

/// An HTTPS server on 127.0.0.1:0 (certificate from the test CA) that records
/// `POST /v1/alerts`, `/v1/heartbeat` and `/v1/telemetry` bodies. Stopped on drop.
pub struct ControlPlane {
    pub url: String,
    state: CpState,
    stop: CancellationToken,
    thread: Option<thread::JoinHandle<()>>,
}

async fn record(State(s): State<CpState>, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    // A heartbeat is answered as a manual control plane without leases (lease_seconds: 0)
    // would: the POP keeps the role it reports, at epoch 1 or the one it holds.
    let answer = if uri.path() == "/v1/heartbeat" {
        json!({
            "role": body["role"],
            "epoch": body["epoch"].as_u64().unwrap_or(0).max(1),
            "lease_ms": 0,
            "interval_ms": 1000,
        })
    } else {
        json!({"ok": true})
    };
    s.records
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .push(Recorded {
            path: uri.path().to_owned(),
            authorization: headers
                .get("authorization")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned),
            body,
        });
    match s.mode.load(Ordering::SeqCst) {
        0 => (StatusCode::OK, axum::Json(answer)).into_response(),
        1 => (StatusCode::INTERNAL_SERVER_ERROR, "down").into_response(),
        _ => std::future::pending().await,
    }
}

impl ControlPlane {
    pub fn start(ca: &Ca, mode: CpMode) -> Self {
        let leaf = ca.leaf("control-plane");
        let mut tls = rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .expect("TLS versions")
            .with_no_client_auth()
            .with_single_cert(leaf.certs(), leaf.key())
            .expect("control-plane cert");
        tls.alpn_protocols = vec![b"http/1.1".to_vec()];
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls));
        let state = CpState {
            records: Arc::default(),
            mode: Arc::new(AtomicU8::new(mode as u8)),
        };
        let app = Router::new()
            .route("/v1/alerts", post(record))
            .route("/v1/heartbeat", post(record))
            .route("/v1/telemetry", post(record))
            .with_state(state.clone());
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind control plane");
        listener.set_nonblocking(true).expect("nonblocking");
        let url = format!("https://{}", listener.local_addr().expect("addr"));
        let stop = CancellationToken::new();
        let stopped = stop.clone();
        let thread = thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .expect("control-plane runtime");
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).expect("tokio listener");
                loop {
                    let tcp = tokio::select! {
                        r = listener.accept() => match r {
                            Ok((tcp, _)) => tcp,
                            Err(_) => continue,
                        },
                        () = stopped.cancelled() => break,
                    };
                    let acceptor = acceptor.clone();
                    let app = app.clone();
                    tokio::spawn(async move {
                        let Ok(tls) = acceptor.accept(tcp).await else {
                            return;
                        };
                        let svc = hyper_util::service::TowerToHyperService::new(app);
                        let _ = hyper_util::server::conn::auto::Builder::new(
                            hyper_util::rt::TokioExecutor::new(),
                        )
                        .serve_connection(hyper_util::rt::TokioIo::new(tls), svc)
                        .await;
                    });
                }
            });
            // Drops hanging handlers and open connections without waiting for them.
            rt.shutdown_background();
        });
        Self {
            url,
            state,
            stop,
            thread: Some(thread),
        }
    }

    pub fn records(&self, path: &str) -> Vec<Recorded> {
        self.state
            .records
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .filter(|r| r.path == path)
            .cloned()
            .collect()
    }

    /// Waits (bounded) until `n` requests to `path` matching `pred` arrived; returns them.
    pub async fn wait_for(
        &self,
        path: &str,
        n: usize,
        timeout: Duration,
        pred: impl Fn(&Recorded) -> bool,
    ) -> Vec<Recorded> {
        wait_for(
            timeout,
            &format!("{n} matching {path} requests"),
            || async {
                let all = self.records(path);
                let found: Vec<_> = all.iter().filter(|r| pred(r)).cloned().collect();
                if found.len() >= n {
                    Ok(found)
                } else {
                    Err(all)
                }
            },
        )
        .await
    }
}

impl Drop for ControlPlane {
    fn drop(&mut self) {
        self.stop.cancel();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
