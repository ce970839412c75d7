//! An upstream for the proxy tests: HTTPS (a certificate for 127.0.0.1 from a test CA) or plain
//! HTTP on 127.0.0.1 port 0, counting the connections it accepts and keeping each request it
//! saw. Routes:
//! - `/echo`: 200; echoes the `authorization` request header and the request body back in
//!   every form a careless or hostile API might use (raw, JSON-escaped, base64 at three
//!   alignments, URL-encoded, hex), in the body and in response headers.
//! - `/redirect`: 302 to another host. `/gzip`: a body claimed to be gzip. `/big`: 2 MiB.
//! - anything else: 200 `ok`.

use super::pki::{Ca, provider};
use axum::Router;
use axum::body::Bytes;
use axum::extract::Request;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

/// A request as the upstream received it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

pub struct Upstream {
    pub addr: SocketAddr,
    /// `https://127.0.0.1:PORT` or `http://127.0.0.1:PORT`.
    pub base: String,
    pub connections: Arc<AtomicUsize>,
    pub seen: Arc<Mutex<Vec<Seen>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Upstream {
    /// An HTTPS upstream whose certificate (for 127.0.0.1 and localhost) `ca` signed.
    pub async fn https(ca: &Ca) -> Self {
        let leaf = ca.leaf("upstream");
        let cfg = rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .expect("TLS versions")
            .with_no_client_auth()
            .with_single_cert(leaf.certs(), leaf.key())
            .expect("server cert");
        Self::start(Some(TlsAcceptor::from(Arc::new(cfg)))).await
    }

    /// A plain-HTTP upstream.
    pub async fn http() -> Self {
        Self::start(None).await
    }

    async fn start(tls: Option<TlsAcceptor>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind upstream");
        let addr = listener.local_addr().expect("upstream addr");
        let connections = Arc::new(AtomicUsize::new(0));
        let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
        let app = {
            let seen = seen.clone();
            Router::new().fallback(any(move |req: Request| {
                let seen = seen.clone();
                async move { handle(req, &seen).await }
            }))
        };
        let scheme = if tls.is_some() { "https" } else { "http" };
        let counted = connections.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    return;
                };
                counted.fetch_add(1, Ordering::SeqCst);
                let app = app.clone();
                let tls = tls.clone();
                tokio::spawn(async move {
                    let service = hyper_util::service::TowerToHyperService::new(app);
                    let builder = auto::Builder::new(TokioExecutor::new());
                    match tls {
                        Some(acceptor) => {
                            if let Ok(stream) = acceptor.accept(tcp).await {
                                let _ = builder
                                    .serve_connection(TokioIo::new(stream), service)
                                    .await;
                            }
                        }
                        None => {
                            let _ = builder.serve_connection(TokioIo::new(tcp), service).await;
                        }
                    }
                });
            }
        });
        Self {
            addr,
            base: format!("{scheme}://{addr}"),
            connections,
            seen,
            task,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub fn connection_count(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }

    pub fn requests(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

/// Every form of `v` an API might send back.
pub fn leaky_forms(v: &str) -> Vec<String> {
    let mut out = vec![
        v.to_owned(),
        serde_json::to_string(v).unwrap(),
        v.bytes().map(|b| format!("{b:02x}")).collect(),
        v.bytes().map(|b| format!("{b:02X}")).collect(),
        v.bytes()
            .map(|b| {
                if b.is_ascii_alphanumeric() {
                    char::from(b).to_string()
                } else {
                    format!("%{b:02X}")
                }
            })
            .collect(),
    ];
    for prefix in ["", "x", "xy"] {
        let shifted = format!("{prefix}{v}");
        out.push(STANDARD.encode(shifted.as_bytes()));
        out.push(URL_SAFE.encode(shifted.as_bytes()));
    }
    out
}

async fn handle(req: Request, seen: &Mutex<Vec<Seen>>) -> Response {
    let method = req.method().to_string();
    let path = req.uri().path().to_owned();
    let headers: Vec<(String, String)> = req
        .headers()
        .iter()
        .map(|(n, v)| {
            (
                n.to_string(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();
    let body = axum::body::to_bytes(req.into_body(), 4 << 20)
        .await
        .unwrap_or_default();
    let body = String::from_utf8_lossy(&body).into_owned();
    let auth = headers
        .iter()
        .find(|(n, _)| n == "authorization")
        .map(|(_, v)| v.clone())
        .unwrap_or_default();
    seen.lock().unwrap().push(Seen {
        method,
        path: path.clone(),
        headers,
        body: body.clone(),
    });
    match path.as_str() {
        "/echo" => {
            let token = auth.strip_prefix("Bearer ").unwrap_or(&auth).to_owned();
            let mut text = format!("auth={auth}\nbody={body}\n");
            for (i, form) in leaky_forms(&token).iter().enumerate() {
                text.push_str(&format!("form{i}=[{form}]\n"));
            }
            let mut h = HeaderMap::new();
            h.insert("x-echo-auth", auth.parse().unwrap());
            h.insert(
                "x-echo-b64",
                STANDARD.encode(token.as_bytes()).parse().unwrap(),
            );
            (StatusCode::OK, h, text).into_response()
        }
        "/redirect" => (
            StatusCode::FOUND,
            [("location", "https://elsewhere.example/steal")],
            "",
        )
            .into_response(),
        "/gzip" => (
            StatusCode::OK,
            [("content-encoding", "gzip")],
            Bytes::from_static(b"\x1f\x8b not really"),
        )
            .into_response(),
        "/big" => (StatusCode::OK, vec![b'a'; 2 << 20]).into_response(),
        _ => (StatusCode::OK, "ok").into_response(),
    }
}
