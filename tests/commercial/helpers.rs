//! Shared machinery: token files, a test CA (rcgen), replication.yaml variants, a `serve`
//! child that is killed on drop, TLS-capable HTTP clients, a raw keep-alive HTTP/1.1
//! connection, and a control-plane stand-in served over TLS.

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use base64::Engine;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use rustls::crypto::CryptoProvider;
use rustls::{ClientConfig, RootCertStore};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use serde_json::{Value, json};
use std::fs::OpenOptions;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::thread;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

pub const BIN: &str = env!("CARGO_BIN_EXE_clavitor");
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// How long `serve` may take to print `listening on` (or to exit on a bad config).
const READY_TIMEOUT: Duration = Duration::from_secs(20);
/// How long a one-shot command may run.
const CLI_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a reload may take to show on /healthz.
pub const RELOAD_TIMEOUT: Duration = Duration::from_secs(5);

// ---- one-shot commands ----------------------------------------------------------------

/// A `clavitor` command with a clean environment.
fn command(args: &[&str]) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.args(args)
        .env_remove("CLAVITOR_TOKEN")
        .env_remove("CLAVITOR_SERVER")
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd
}

fn drain(mut r: impl Read + Send + 'static) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = r.read_to_end(&mut buf);
        let _ = tx.send(String::from_utf8_lossy(&buf).into_owned());
    });
    rx
}

fn wait_child(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(st) = child.try_wait().expect("try_wait on the child") {
            return Some(st);
        }
        if Instant::now() >= deadline {
            return None;
        }
        thread::sleep(Duration::from_millis(5));
    }
}

#[derive(Debug)]
pub struct Output {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl std::fmt::Display for Output {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{:?}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.status, self.stdout, self.stderr
        )
    }
}

/// Runs `clavitor ARGS` to completion, bounded.
pub fn clavitor(args: &[&str]) -> Output {
    let mut child = command(args)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {BIN}: {e}"));
    let out = drain(child.stdout.take().expect("piped stdout"));
    let err = drain(child.stderr.take().expect("piped stderr"));
    let Some(status) = wait_child(&mut child, CLI_TIMEOUT) else {
        let _ = child.kill();
        let _ = child.wait();
        panic!("clavitor {args:?} did not finish within {CLI_TIMEOUT:?}");
    };
    let grab =
        |rx: mpsc::Receiver<String>| rx.recv_timeout(Duration::from_secs(5)).unwrap_or_default();
    Output {
        status,
        stdout: grab(out),
        stderr: grab(err),
    }
}

// ---- files ------------------------------------------------------------------------------

/// Writes `contents` to a new file with `mode`.
pub fn write_file(path: &Path, contents: &str, mode: u32) {
    let _ = std::fs::remove_file(path);
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .unwrap_or_else(|e| panic!("create {}: {e}", path.display()));
    f.write_all(contents.as_bytes()).expect("write");
    // The umask may have narrowed the mode; set it exactly.
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
}

pub fn mode(path: &Path) -> u32 {
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o777
}

/// A POP token in the documented format: `clavitor-pop-v1-` + base64 of `bytes` random bytes.
pub fn token_text(bytes: usize) -> String {
    let mut raw = vec![0u8; bytes];
    rand::fill(&mut raw[..]);
    format!(
        "clavitor-pop-v1-{}",
        base64::engine::general_purpose::STANDARD.encode(&raw)
    )
}

/// Writes a fresh 256-bit token file (mode 0600) and returns the token.
pub fn write_token(path: &Path) -> String {
    let t = token_text(32);
    write_file(path, &format!("{t}\n"), 0o600);
    t
}

/// The path as a YAML double-quoted scalar.
pub fn q(path: &Path) -> String {
    format!("{:?}", path.to_str().expect("UTF-8 temp path"))
}

// ---- certificates -------------------------------------------------------------------------

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A certificate and its private key, PEM.
pub struct Leaf {
    pub cert_pem: String,
    pub key_pem: String,
}

impl Leaf {
    pub fn certs(&self) -> Vec<CertificateDer<'static>> {
        vec![CertificateDer::from_pem_slice(self.cert_pem.as_bytes()).expect("cert PEM")]
    }

    pub fn key(&self) -> PrivateKeyDer<'static> {
        PrivateKeyDer::from_pem_slice(self.key_pem.as_bytes()).expect("key PEM")
    }
}

/// A test certificate authority.
pub struct Ca {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

impl Ca {
    pub fn new(name: &str) -> Self {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        params.distinguished_name.push(DnType::CommonName, name);
        let key = KeyPair::generate().expect("CA key");
        Self {
            issuer: CertifiedIssuer::self_signed(params, key).expect("self-signed CA"),
        }
    }

    pub fn pem(&self) -> String {
        self.issuer.pem()
    }

    /// A certificate for 127.0.0.1 and localhost, usable by servers and clients.
    pub fn leaf(&self, name: &str) -> Leaf {
        let mut params =
            CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
                .expect("leaf params");
        params.distinguished_name.push(DnType::CommonName, name);
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let key = KeyPair::generate().expect("leaf key");
        let cert = params.signed_by(&key, &*self.issuer).expect("sign leaf");
        Leaf {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        }
    }

    pub fn roots(&self) -> RootCertStore {
        let mut roots = RootCertStore::empty();
        roots.add(self.issuer.der().clone()).expect("CA as root");
        roots
    }
}

/// A POP's TLS files, written next to its config.
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub ca: PathBuf,
}

// ---- HTTP clients -------------------------------------------------------------------------

/// A reqwest client trusting `ca` (none: no roots, fine for http://), presenting `identity`.
pub fn client(ca: Option<&Ca>, identity: Option<&Leaf>) -> reqwest::Client {
    let roots = ca.map(Ca::roots).unwrap_or_else(RootCertStore::empty);
    let builder = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_root_certificates(roots);
    let cfg = match identity {
        Some(l) => builder
            .with_client_auth_cert(l.certs(), l.key())
            .expect("client cert"),
        None => builder.with_no_client_auth(),
    };
    reqwest::Client::builder()
        .use_preconfigured_tls(cfg)
        .timeout(Duration::from_secs(10))
        .build()
        .expect("reqwest client")
}

/// A client for plain http:// vaults.
pub fn plain() -> reqwest::Client {
    client(None, None)
}

/// Sends a request and returns the status and the JSON body (`Null` when not JSON).
pub async fn call(
    c: &reqwest::Client,
    method: reqwest::Method,
    url: &str,
    token: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut req = c.request(method.clone(), url).bearer_auth(token);
    if let Some(b) = body {
        req = req.json(&b);
    }
    let res = req
        .send()
        .await
        .unwrap_or_else(|e| panic!("{method} {url}: {e:?}"));
    let status = res.status().as_u16();
    let text = res.text().await.unwrap_or_default();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

pub fn entry_body(title: &str) -> Value {
    json!({
        "title": title,
        "url": "https://example.com",
        "username": "alice",
        "fields": [{"name": "password", "value": "hunter2", "tier": "vault"}],
    })
}

/// `GET /healthz` as JSON.
pub async fn health(c: &reqwest::Client, base: &str) -> Value {
    let res = c
        .get(format!("{base}/healthz"))
        .send()
        .await
        .unwrap_or_else(|e| panic!("GET {base}/healthz: {e:?}"));
    assert_eq!(res.status().as_u16(), 200);
    res.json().await.expect("healthz JSON")
}

/// Polls /healthz until it reports `role` (bounded by [`RELOAD_TIMEOUT`]).
pub async fn wait_role(c: &reqwest::Client, base: &str, role: &str) {
    let deadline = Instant::now() + RELOAD_TIMEOUT;
    loop {
        let h = health(c, base).await;
        if h["role"] == role {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "role still {} after {RELOAD_TIMEOUT:?}, expected {role}",
            h["role"]
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// An empty replication batch, valid for every version of the protocol.
pub fn empty_batch() -> Value {
    json!({"origin": "calgary-01", "items": []})
}

/// `POST /v1/replication/batch` with an empty batch and `token`.
pub async fn push(
    c: &reqwest::Client,
    base: &str,
    token: &str,
) -> Result<(u16, Value), reqwest::Error> {
    let res = c
        .post(format!("{base}/v1/replication/batch"))
        .bearer_auth(token)
        .json(&empty_batch())
        .send()
        .await?;
    let st = res.status().as_u16();
    let text = res.text().await?;
    Ok((st, serde_json::from_str(&text).unwrap_or(Value::Null)))
}

/// A backup's answer to an authenticated push: 2xx once it applies batches, or 501
/// `not_implemented` from a build that only authenticates them.
pub fn accepted_by_backup(status: u16, body: &Value) -> bool {
    (200..300).contains(&status) || (status == 501 && code(body) == "not_implemented")
}

/// The `error.code` of an error body.
pub fn code(v: &Value) -> &str {
    v["error"]["code"].as_str().unwrap_or("")
}

// ---- a raw keep-alive connection ---------------------------------------------------------

/// One HTTP/1.1 connection, reused for every request: proves a connection survives a reload.
pub struct RawConn {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl RawConn {
    pub fn connect(base: &str) -> Self {
        let addr = base.strip_prefix("http://").expect("an http:// base URL");
        let stream = TcpStream::connect(addr).expect("connect");
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .expect("read timeout");
        Self {
            stream,
            buf: Vec::new(),
        }
    }

    /// Sends one request; panics if the connection was closed.
    pub fn request(
        &mut self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<&Value>,
    ) -> (u16, Value) {
        let body = body.map(Value::to_string).unwrap_or_default();
        let mut req = format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n");
        if let Some(t) = token {
            req.push_str(&format!("Authorization: Bearer {t}\r\n"));
        }
        if !body.is_empty() {
            req.push_str("Content-Type: application/json\r\n");
        }
        req.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
        self.stream
            .write_all(req.as_bytes())
            .expect("write on the kept-alive connection");
        let head_end = loop {
            if let Some(i) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            self.fill();
        };
        let head = String::from_utf8_lossy(&self.buf[..head_end]).into_owned();
        let status: u16 = head
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("bad status line: {head}"));
        let lower = head.to_ascii_lowercase();
        assert!(
            !lower.contains("connection: close"),
            "server asked to close the connection: {head}"
        );
        let len: usize = lower
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .map(|v| v.trim().parse().expect("content-length"))
            .unwrap_or_else(|| panic!("response without Content-Length: {head}"));
        while self.buf.len() < head_end + len {
            self.fill();
        }
        let body: Vec<u8> = self.buf.drain(..head_end + len).skip(head_end).collect();
        (status, serde_json::from_slice(&body).unwrap_or(Value::Null))
    }

    fn fill(&mut self) {
        let mut chunk = [0u8; 4096];
        let n = self
            .stream
            .read(&mut chunk)
            .expect("read on the kept-alive connection");
        assert!(n > 0, "the server closed the kept-alive connection");
        self.buf.extend_from_slice(&chunk[..n]);
    }
}

// ---- a POP: temp dir, token, config, process -------------------------------------------

/// A temp dir holding one POP's files: `replication.token` (0600), `replication.yaml`, and a
/// not-yet-created data dir `data`.
pub struct Pop {
    pub dir: tempfile::TempDir,
    pub token: String,
    pub token_file: PathBuf,
    pub config: PathBuf,
    pub data: PathBuf,
}

impl Pop {
    pub fn new() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("clavitor-commercial-")
            .tempdir()
            .expect("temp dir");
        let token_file = dir.path().join("replication.token");
        let token = write_token(&token_file);
        Self {
            config: dir.path().join("replication.yaml"),
            data: dir.path().join("data"),
            token,
            token_file,
            dir,
        }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub fn write_config(&self, yaml: &str) {
        std::fs::write(&self.config, yaml).expect("write replication.yaml");
    }

    /// Writes a server/client certificate from `ca` (key 0600) and the CA certificate.
    pub fn write_tls(&self, ca: &Ca) -> TlsFiles {
        let leaf = ca.leaf("pop");
        let files = TlsFiles {
            cert: self.path("replication.crt"),
            key: self.path("replication.key"),
            ca: self.path("ca.crt"),
        };
        write_file(&files.cert, &leaf.cert_pem, 0o644);
        write_file(&files.key, &leaf.key_pem, 0o600);
        write_file(&files.ca, &ca.pem(), 0o644);
        files
    }

    /// The `serve` arguments for this POP.
    pub fn serve_args(&self) -> Vec<String> {
        vec![
            "serve".into(),
            "--data-dir".into(),
            self.data.to_str().unwrap().into(),
            "--listen".into(),
            "127.0.0.1:0".into(),
            "--replication-config".into(),
            self.config.to_str().unwrap().into(),
        ]
    }

    pub fn try_start(&self) -> Result<Vault, StartFailure> {
        let args = self.serve_args();
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        Vault::spawn(&args, &self.data)
    }

    #[track_caller]
    pub fn start(&self) -> Vault {
        self.try_start()
            .unwrap_or_else(|f| panic!("serve did not start: {f:#?}"))
    }
}

/// Options for [`config_yaml`].
#[derive(Default)]
pub struct Opts<'a> {
    pub tls: Option<&'a TlsFiles>,
    pub control_plane: Option<&'a CpFiles>,
}

/// A control plane as the vault sees it: its URL, token file and CA.
pub struct CpFiles {
    pub url: String,
    pub token: String,
    pub token_file: PathBuf,
    pub ca_file: PathBuf,
    pub heartbeat_interval: u64,
}

impl CpFiles {
    /// Writes the control-plane token and CA into `pop`'s dir.
    pub fn new(pop: &Pop, cp: &ControlPlane, ca: &Ca) -> Self {
        let token_file = pop.path("control-plane.token");
        let token = write_token(&token_file);
        let ca_file = pop.path("control-plane-ca.crt");
        write_file(&ca_file, &ca.pem(), 0o644);
        Self {
            url: cp.url.clone(),
            token,
            token_file,
            ca_file,
            heartbeat_interval: 1,
        }
    }
}

/// A valid replication.yaml for `role` ("primary" replicates to `zurich-01`).
pub fn config_yaml(pop: &Pop, role: &str, o: &Opts) -> String {
    let id = if role == "primary" {
        "calgary-01"
    } else {
        "zurich-01"
    };
    let mut y = format!("pop_id: \"{id}\"\nregion: \"test\"\nrole: \"{role}\"\n");
    if role == "primary" {
        y.push_str(&format!(
            "backup_pop:\n  id: \"zurich-01\"\n  url: \"https://zurich-01.example.com\"\n  auth_token_file: {}\n",
            q(&pop.token_file)
        ));
    }
    y.push_str(&format!("auth:\n  token_file: {}\n", q(&pop.token_file)));
    if let Some(t) = o.tls {
        y.push_str(&format!(
            "  mtls_cert: {}\n  mtls_key: {}\n  mtls_ca: {}\n",
            q(&t.cert),
            q(&t.key),
            q(&t.ca)
        ));
    }
    y.push_str("replication:\n  batch_size: 100\n  max_retries: 5\n");
    if let Some(cp) = o.control_plane {
        y.push_str(&format!(
            "control_plane:\n  url: \"{}\"\n  token_file: {}\n  ca_file: {}\n  heartbeat_interval: {}\n",
            cp.url,
            q(&cp.token_file),
            q(&cp.ca_file),
            cp.heartbeat_interval
        ));
    }
    y
}

// ---- the serve process ---------------------------------------------------------------------

/// A running `clavitor serve`; SIGKILLed and reaped on drop unless it already exited.
pub struct Vault {
    pub url: String,
    /// Every stdout line up to and including `listening on ...`.
    pub stdout_lines: Vec<String>,
    /// The owner token (from the data dir's owner.token).
    pub token: String,
    child: Child,
    exited: Option<ExitStatus>,
    stderr: Arc<Mutex<String>>,
}

/// Read through `Debug` in failure messages.
#[derive(Debug)]
#[allow(dead_code)]
pub struct StartFailure {
    pub status: Option<ExitStatus>,
    pub stdout_lines: Vec<String>,
    pub stderr: String,
}

impl Vault {
    pub fn spawn(args: &[&str], data_dir: &Path) -> Result<Self, StartFailure> {
        let mut child = command(args)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {BIN}: {e}"));
        let stderr = Arc::new(Mutex::new(String::new()));
        {
            let sink = stderr.clone();
            let pipe = child.stderr.take().expect("piped stderr");
            thread::spawn(move || {
                for line in BufReader::new(pipe).lines() {
                    let Ok(line) = line else { break };
                    let mut s = sink.lock().unwrap_or_else(|p| p.into_inner());
                    s.push_str(&line);
                    s.push('\n');
                }
            });
        }
        let (tx, rx) = mpsc::channel::<String>();
        let pipe = child.stdout.take().expect("piped stdout");
        thread::spawn(move || {
            // Keeps reading after start-up so the child never blocks on a full pipe.
            for line in BufReader::new(pipe).lines() {
                let Ok(line) = line else { break };
                let _ = tx.send(line);
            }
        });
        let deadline = Instant::now() + READY_TIMEOUT;
        let mut lines = Vec::new();
        let url = loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left.min(Duration::from_millis(50))) {
                Ok(line) => {
                    let url = line.strip_prefix("listening on ").map(str::to_owned);
                    lines.push(line);
                    if let Some(u) = url {
                        break u;
                    }
                }
                Err(mpsc::RecvTimeoutError::Timeout) if left > Duration::ZERO => {
                    if let Some(st) = child.try_wait().expect("try_wait") {
                        while let Ok(l) = rx.recv_timeout(Duration::from_millis(200)) {
                            lines.push(l);
                        }
                        return Err(StartFailure {
                            status: Some(st),
                            stdout_lines: lines,
                            stderr: settle(&stderr),
                        });
                    }
                }
                Err(e) => {
                    let grace = match e {
                        mpsc::RecvTimeoutError::Disconnected => Duration::from_secs(5),
                        mpsc::RecvTimeoutError::Timeout => Duration::ZERO,
                    };
                    let st = wait_child(&mut child, grace);
                    if st.is_none() {
                        let _ = child.kill();
                        let _ = child.wait();
                    }
                    return Err(StartFailure {
                        status: st,
                        stdout_lines: lines,
                        stderr: settle(&stderr),
                    });
                }
            }
        };
        let token = std::fs::read_to_string(data_dir.join("owner.token"))
            .map(|t| t.trim().to_owned())
            .unwrap_or_default();
        Ok(Self {
            url,
            stdout_lines: lines,
            token,
            child,
            exited: None,
            stderr,
        })
    }

    pub fn pid(&self) -> Pid {
        Pid::from_raw(i32::try_from(self.child.id()).expect("pid fits i32"))
    }

    pub fn signal(&self, sig: Signal) {
        kill(self.pid(), sig).unwrap_or_else(|e| panic!("cannot send {sig} to the server: {e}"));
    }

    pub fn sighup(&self) {
        self.signal(Signal::SIGHUP);
    }

    /// Waits (bounded) for the process to exit; `None` if it is still running.
    pub fn wait_timeout(&mut self, timeout: Duration) -> Option<ExitStatus> {
        if self.exited.is_none() {
            self.exited = wait_child(&mut self.child, timeout);
        }
        self.exited
    }

    pub fn is_running(&mut self) -> bool {
        self.exited.is_none() && matches!(self.child.try_wait(), Ok(None))
    }

    /// Everything the server wrote to stderr so far.
    pub fn stderr(&self) -> String {
        self.stderr
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Waits (bounded) until stderr contains `needle`.
    pub fn wait_stderr(&self, needle: &str, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if self.stderr().contains(needle) {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGTERM, then asserts exit 0 within `limit`; returns how long it took.
    #[track_caller]
    pub fn stop(&mut self, limit: Duration) -> Duration {
        let t0 = Instant::now();
        self.signal(Signal::SIGTERM);
        let st = self
            .wait_timeout(Duration::from_secs(10))
            .unwrap_or_else(|| panic!("still running 10 s after SIGTERM:\n{}", self.stderr()));
        let took = t0.elapsed();
        assert_eq!(
            st.code(),
            Some(0),
            "SIGTERM exit: {st:?}\n{}",
            self.stderr()
        );
        assert!(
            took <= limit,
            "exit took {took:?} > {limit:?}\n{}",
            self.stderr()
        );
        took
    }
}

fn settle(stderr: &Arc<Mutex<String>>) -> String {
    thread::sleep(Duration::from_millis(100));
    stderr.lock().unwrap_or_else(|p| p.into_inner()).clone()
}

impl Drop for Vault {
    fn drop(&mut self) {
        if self.exited.is_none() && matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
        }
        let _ = wait_child(&mut self.child, Duration::from_secs(5));
    }
}

// ---- the control-plane stand-in ------------------------------------------------------------

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
    s.records
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .push(Recorded {
            path: uri.path().to_owned(),
            authorization: headers
                .get("authorization")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned),
            body: serde_json::from_slice(&body).unwrap_or(Value::Null),
        });
    match s.mode.load(Ordering::SeqCst) {
        0 => (StatusCode::OK, axum::Json(json!({"ok": true}))).into_response(),
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
        let deadline = Instant::now() + timeout;
        loop {
            let found: Vec<_> = self.records(path).into_iter().filter(&pred).collect();
            if found.len() >= n {
                return found;
            }
            assert!(
                Instant::now() < deadline,
                "only {} of {n} matching {path} requests within {timeout:?}; all: {:#?}",
                found.len(),
                self.records(path)
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
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
