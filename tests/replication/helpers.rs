//! Shared machinery: the commercial binary (copied once, checked), a test CA (rcgen), POP
//! directories (token, certificates, replication.yaml, data dir), `serve` children killed on
//! drop, HTTPS clients, and polling with deadlines.

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
use std::collections::HashSet;
use std::fs::OpenOptions;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex, OnceLock, mpsc};
use std::thread;
use std::time::{Duration, Instant};

pub use crate::proxy::{Mode, Proxy};

pub const PRIMARY_ID: &str = "calgary-01";
pub const BACKUP_ID: &str = "zurich-01";

/// How long `serve` may take to print `listening on`.
const READY_TIMEOUT: Duration = Duration::from_secs(30);
const CLI_TIMEOUT: Duration = Duration::from_secs(30);
/// Default bound for convergence waits.
pub const CONVERGE: Duration = Duration::from_secs(30);

// ---- the binary -----------------------------------------------------------------------------

/// A private copy of the commercial binary: cargo uplifts whichever edition was built last to
/// target/debug/clavitor, so the suite copies it once and checks the copy says "(commercial)".
pub fn bin() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let src = env!("CARGO_BIN_EXE_clavitor");
        let dir = std::env::temp_dir().join(format!("clavitor-replication-bin-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("bin dir");
        let dst = dir.join("clavitor");
        std::fs::copy(src, &dst).unwrap_or_else(|e| panic!("copy {src}: {e}"));
        std::fs::set_permissions(&dst, std::fs::Permissions::from_mode(0o755)).expect("chmod bin");
        let out = Command::new(&dst)
            .arg("--version")
            .output()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", dst.display()));
        let v = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        assert!(
            v.ends_with("(commercial)"),
            "{src} is not the commercial build (`--version` says {v:?}); another build uplifted the \
             community edition. Rebuild with `cargo test --features commercial --test replication`"
        );
        dst
    })
}

fn command(args: &[&str]) -> Command {
    let mut cmd = Command::new(bin());
    cmd.args(args)
        .env_remove("CLAVITOR_TOKEN")
        .env_remove("CLAVITOR_SERVER")
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd
}

fn wait_child(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(st) = child.try_wait().expect("try_wait") {
            return Some(st);
        }
        if Instant::now() >= deadline {
            return None;
        }
        thread::sleep(Duration::from_millis(5));
    }
}

/// Runs `clavitor ARGS` to completion (bounded); panics unless it exits 0. Returns stdout.
pub fn clavitor_ok(args: &[&str]) -> String {
    let mut child = command(args).spawn().expect("spawn clavitor");
    let mut out = child.stdout.take().expect("stdout");
    let mut err = child.stderr.take().expect("stderr");
    let t = thread::spawn(move || {
        let mut s = String::new();
        let _ = err.read_to_string(&mut s);
        s
    });
    let mut stdout = String::new();
    let _ = out.read_to_string(&mut stdout);
    let Some(st) = wait_child(&mut child, CLI_TIMEOUT) else {
        let _ = child.kill();
        panic!("clavitor {args:?} did not finish");
    };
    let stderr = t.join().unwrap_or_default();
    assert!(
        st.success(),
        "clavitor {args:?}: {st:?}\n{stdout}\n{stderr}"
    );
    stdout
}

// ---- files ----------------------------------------------------------------------------------

pub fn write_file(path: &Path, contents: &str, mode: u32) {
    let _ = std::fs::remove_file(path);
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .unwrap_or_else(|e| panic!("create {}: {e}", path.display()));
    f.write_all(contents.as_bytes()).expect("write");
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
}

/// A POP token in the documented format.
pub fn token_text() -> String {
    let mut raw = [0u8; 32];
    rand::fill(&mut raw[..]);
    format!(
        "clavitor-pop-v1-{}",
        base64::engine::general_purpose::STANDARD.encode(raw)
    )
}

/// The path as a YAML double-quoted scalar.
pub fn q(path: &Path) -> String {
    format!("{:?}", path.to_str().expect("UTF-8 path"))
}

// ---- certificates -----------------------------------------------------------------------------

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

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

    /// For 127.0.0.1 and localhost; usable as server and client certificate.
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

/// An HTTPS client trusting `ca`, optionally presenting `identity`.
pub fn client(ca: &Ca, identity: Option<&Leaf>) -> reqwest::Client {
    client_trusting(&[ca], identity)
}

/// An HTTPS client trusting every CA in `cas`, optionally presenting `identity`.
pub fn client_trusting(cas: &[&Ca], identity: Option<&Leaf>) -> reqwest::Client {
    let mut roots = RootCertStore::empty();
    for ca in cas {
        roots.extend(ca.roots().roots);
    }
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

// ---- a POP's files ------------------------------------------------------------------------------

/// One POP's directory: inbound token (0600), certificate, key, CA, config, data dir.
pub struct Pop {
    pub dir: tempfile::TempDir,
    pub id: &'static str,
    pub token: String,
    pub token_file: PathBuf,
    pub config: PathBuf,
    pub data: PathBuf,
    cert: PathBuf,
    key: PathBuf,
    ca: PathBuf,
    /// The owner token `init` printed for this POP's own owner.
    pub owner: String,
}

/// What the primary's `backup_pop` says.
pub struct BackupRef<'a> {
    pub id: &'a str,
    pub url: &'a str,
    pub token_file: &'a Path,
}

impl Pop {
    /// Token and TLS files; the certificate is signed by `ca` (the POP CA), and `mtls_ca` is `ca`.
    pub fn new(id: &'static str, ca: &Ca) -> Self {
        Self::with_cert(id, ca, &ca.leaf(id))
    }

    /// As [`Pop::new`], presenting `leaf` (possibly from another CA) as this POP's certificate.
    pub fn with_cert(id: &'static str, ca: &Ca, leaf: &Leaf) -> Self {
        let dir = tempfile::Builder::new()
            .prefix(&format!("clavitor-repl-{id}-"))
            .tempdir()
            .expect("temp dir");
        let token_file = dir.path().join("replication.token");
        let token = token_text();
        write_file(&token_file, &format!("{token}\n"), 0o600);
        let cert = dir.path().join("pop.crt");
        let key = dir.path().join("pop.key");
        let ca_file = dir.path().join("pop-ca.crt");
        write_file(&cert, &leaf.cert_pem, 0o644);
        write_file(&key, &leaf.key_pem, 0o600);
        write_file(&ca_file, &ca.pem(), 0o644);
        Self {
            config: dir.path().join("replication.yaml"),
            data: dir.path().join("data"),
            token,
            token_file,
            cert,
            key,
            ca: ca_file,
            owner: String::new(),
            id,
            dir,
        }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub fn master_key(&self) -> PathBuf {
        self.data.join("master.key")
    }

    /// `clavitor init` (adopting `master_key` when given); keeps the owner token.
    pub fn init(&mut self, master_key: Option<&Path>) {
        let data = self.data.to_str().unwrap().to_owned();
        let mut args = vec!["init", "--data-dir", &data, "--json"];
        let key;
        if let Some(k) = master_key {
            key = k.to_str().unwrap().to_owned();
            args.extend(["--master-key", &key]);
        }
        let out = clavitor_ok(&args);
        let v: Value = serde_json::from_str(out.trim()).expect("init --json");
        self.owner = v["owner_token"].as_str().expect("owner_token").to_owned();
        assert!(!self.owner.is_empty());
    }

    fn auth_yaml(&self) -> String {
        format!(
            "auth:\n  token_file: {}\n  mtls_cert: {}\n  mtls_key: {}\n  mtls_ca: {}\n",
            q(&self.token_file),
            q(&self.cert),
            q(&self.key),
            q(&self.ca)
        )
    }

    pub fn write_primary(&self, backup: &BackupRef, batch_size: usize, max_retries: u32) {
        let y = format!(
            "pop_id: \"{}\"\nregion: \"test\"\nrole: \"primary\"\nbackup_pop:\n  id: \"{}\"\n  url: \"{}\"\n  auth_token_file: {}\n{}replication:\n  batch_size: {batch_size}\n  max_retries: {max_retries}\n",
            self.id,
            backup.id,
            backup.url,
            q(backup.token_file),
            self.auth_yaml()
        );
        std::fs::write(&self.config, y).expect("write replication.yaml");
    }

    pub fn write_backup(&self, primary_id: &str) {
        let y = format!(
            "pop_id: \"{}\"\nregion: \"test\"\nrole: \"backup\"\nprimary_pop:\n  id: \"{primary_id}\"\n{}",
            self.id,
            self.auth_yaml()
        );
        std::fs::write(&self.config, y).expect("write replication.yaml");
    }

    /// `serve` on `listen` ("127.0.0.1:0" for any port) with extra args (e.g. a log level).
    #[track_caller]
    pub fn start_with(&self, listen: &str, extra: &[&str]) -> Node {
        let data = self.data.to_str().unwrap();
        let config = self.config.to_str().unwrap();
        let mut args = vec![
            "serve",
            "--data-dir",
            data,
            "--listen",
            listen,
            "--replication-config",
            config,
        ];
        args.extend_from_slice(extra);
        Node::spawn(self.id, &args)
    }

    #[track_caller]
    pub fn start(&self) -> Node {
        self.start_with("127.0.0.1:0", &[])
    }
}

// ---- the serve process -----------------------------------------------------------------------------

/// A running `clavitor serve`; SIGKILLed and reaped on drop.
pub struct Node {
    pub name: &'static str,
    pub url: String,
    child: Child,
    exited: Option<ExitStatus>,
    stderr: Arc<Mutex<String>>,
}

impl Node {
    #[track_caller]
    fn spawn(name: &'static str, args: &[&str]) -> Self {
        let mut child = command(args).spawn().expect("spawn serve");
        let stderr = Arc::new(Mutex::new(String::new()));
        {
            let sink = stderr.clone();
            let pipe = child.stderr.take().expect("stderr");
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
        let pipe = child.stdout.take().expect("stdout");
        thread::spawn(move || {
            for line in BufReader::new(pipe).lines() {
                let Ok(line) = line else { break };
                let _ = tx.send(line);
            }
        });
        let deadline = Instant::now() + READY_TIMEOUT;
        let mut lines = Vec::new();
        let url = loop {
            match rx.recv_timeout(Duration::from_millis(50)) {
                Ok(line) => {
                    let url = line.strip_prefix("listening on ").map(str::to_owned);
                    lines.push(line);
                    if let Some(u) = url {
                        break u;
                    }
                }
                Err(_) => {
                    let exited = child.try_wait().expect("try_wait");
                    if exited.is_some() || Instant::now() >= deadline {
                        let _ = child.kill();
                        let _ = child.wait();
                        thread::sleep(Duration::from_millis(100));
                        panic!(
                            "{name}: serve {args:?} did not start ({exited:?}); stdout: {lines:?}\nstderr:\n{}",
                            stderr.lock().unwrap_or_else(|p| p.into_inner())
                        );
                    }
                }
            }
        };
        assert!(url.starts_with("https://"), "{name} serves {url}");
        Self {
            name,
            url,
            child,
            exited: None,
            stderr,
        }
    }

    /// `host:port` of the listening socket.
    pub fn addr(&self) -> std::net::SocketAddr {
        self.url
            .trim_start_matches("https://")
            .parse()
            .expect("socket address")
    }

    pub fn pid(&self) -> Pid {
        Pid::from_raw(i32::try_from(self.child.id()).expect("pid"))
    }

    pub fn signal(&self, sig: Signal) {
        kill(self.pid(), sig).unwrap_or_else(|e| panic!("{sig} to {}: {e}", self.name));
    }

    pub fn stderr(&self) -> String {
        self.stderr
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// SIGTERM; asserts a clean exit within 10 s.
    #[track_caller]
    pub fn stop(&mut self) {
        self.signal(Signal::SIGTERM);
        let st = wait_child(&mut self.child, Duration::from_secs(10))
            .unwrap_or_else(|| panic!("{} still running 10 s after SIGTERM", self.name));
        self.exited = Some(st);
        assert_eq!(
            st.code(),
            Some(0),
            "{} SIGTERM exit\n{}",
            self.name,
            self.stderr()
        );
    }

    /// SIGKILL and reap.
    pub fn kill9(&mut self) {
        self.signal(Signal::SIGKILL);
        self.exited = wait_child(&mut self.child, Duration::from_secs(10));
        assert!(self.exited.is_some(), "{} survived SIGKILL", self.name);
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if self.exited.is_none() && matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
        }
        let _ = wait_child(&mut self.child, Duration::from_secs(5));
    }
}

// ---- HTTP -------------------------------------------------------------------------------------------

/// Client calls against one POP.
#[derive(Clone)]
pub struct Api {
    pub c: reqwest::Client,
}

pub type Reply = (u16, Value);

impl Api {
    pub fn new(ca: &Ca) -> Self {
        Self {
            c: client(ca, None),
        }
    }

    pub async fn try_call(
        &self,
        method: reqwest::Method,
        url: &str,
        token: &str,
        body: Option<&Value>,
    ) -> Result<Reply, reqwest::Error> {
        let mut req = self.c.request(method, url).bearer_auth(token);
        if let Some(b) = body {
            req = req.json(b);
        }
        let res = req.send().await?;
        let st = res.status().as_u16();
        let text = res.text().await?;
        Ok((st, serde_json::from_str(&text).unwrap_or(Value::Null)))
    }

    pub async fn call(
        &self,
        method: reqwest::Method,
        url: &str,
        token: &str,
        body: Option<&Value>,
    ) -> Reply {
        self.try_call(method.clone(), url, token, body)
            .await
            .unwrap_or_else(|e| panic!("{method} {url}: {e:?}"))
    }

    /// Creates an entry; asserts 201 and returns its id.
    pub async fn create(&self, base: &str, token: &str, body: &Value) -> String {
        let (st, v) = self
            .call(
                reqwest::Method::POST,
                &format!("{base}/v1/entries"),
                token,
                Some(body),
            )
            .await;
        assert_eq!(st, 201, "create entry on {base}: {v}");
        v["id"].as_str().expect("id").to_owned()
    }

    pub async fn get_entry(&self, base: &str, token: &str, id: &str) -> Reply {
        self.call(
            reqwest::Method::GET,
            &format!("{base}/v1/entries/{id}"),
            token,
            None,
        )
        .await
    }

    pub async fn field(&self, base: &str, token: &str, id: &str, name: &str) -> Reply {
        self.call(
            reqwest::Method::GET,
            &format!("{base}/v1/entries/{id}/fields/{name}"),
            token,
            None,
        )
        .await
    }

    pub async fn delete(&self, base: &str, token: &str, id: &str) -> u16 {
        self.call(
            reqwest::Method::DELETE,
            &format!("{base}/v1/entries/{id}"),
            token,
            None,
        )
        .await
        .0
    }

    /// Entry ids listed by `GET /v1/entries`, in order (duplicates kept).
    pub async fn ids(&self, base: &str, token: &str) -> Vec<String> {
        let (st, v) = self
            .call(
                reqwest::Method::GET,
                &format!("{base}/v1/entries"),
                token,
                None,
            )
            .await;
        assert_eq!(st, 200, "list on {base}: {v}");
        v["entries"]
            .as_array()
            .expect("entries")
            .iter()
            .map(|e| e["id"].as_str().expect("id").to_owned())
            .collect()
    }

    pub async fn health(&self, base: &str) -> Value {
        let res = self
            .c
            .get(format!("{base}/healthz"))
            .send()
            .await
            .unwrap_or_else(|e| panic!("GET {base}/healthz: {e:?}"));
        assert_eq!(res.status().as_u16(), 200);
        res.json().await.expect("healthz JSON")
    }

    /// Waits until `base` lists every id in `want` (as owner `token`); returns the time taken.
    pub async fn wait_has(
        &self,
        base: &str,
        token: &str,
        want: &HashSet<String>,
        timeout: Duration,
    ) -> Duration {
        let t0 = Instant::now();
        loop {
            let have: HashSet<String> = self.ids(base, token).await.into_iter().collect();
            let missing = want.difference(&have).count();
            if missing == 0 {
                return t0.elapsed();
            }
            assert!(
                t0.elapsed() < timeout,
                "{base} still misses {missing} of {} entries after {timeout:?}",
                want.len()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Polls the primary's `/healthz` until replication reports nothing owed and everything acked.
    pub async fn wait_caught_up(&self, primary: &str, timeout: Duration) -> Value {
        wait_for(
            timeout,
            "primary backlog 0 and acked_version == committed_version",
            || async {
                let h = self.health(primary).await;
                let r = &h["replication"];
                (r["backlog"] == 0
                    && r["acked_version"] == r["committed_version"]
                    && r["failing_since"].is_null())
                .then_some(h.clone())
                .ok_or(h)
            },
        )
        .await
    }
}

/// Polls `probe` until it yields `Ok`; panics with `what` and the last `Err` after `timeout`.
pub async fn wait_for<T, E: std::fmt::Debug, F, Fut>(
    timeout: Duration,
    what: &str,
    mut probe: F,
) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, E>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        match probe().await {
            Ok(v) => return v,
            Err(e) if Instant::now() >= deadline => {
                panic!("timed out after {timeout:?} waiting for {what}; last: {e:?}")
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}

/// A plain entry with one vault-tier field.
pub fn entry(title: &str) -> Value {
    json!({
        "title": title,
        "url": "https://example.com",
        "username": "alice",
        "fields": [{"name": "password", "value": format!("pw-{title}"), "tier": "vault"}],
    })
}

// ---- a primary and a backup -----------------------------------------------------------------------

pub struct Opts {
    pub batch_size: usize,
    pub max_retries: u32,
    /// Extra `serve` arguments for the backup (e.g. `--log-level debug`).
    pub backup_args: &'static [&'static str],
    /// Whether to start the backup at all (it can be started later with [`Pair::start_backup`]).
    pub start_backup: bool,
}

impl Default for Opts {
    fn default() -> Self {
        Self {
            batch_size: 100,
            max_retries: 5,
            backup_args: &[],
            start_backup: true,
        }
    }
}

/// A provisioned primary and backup (same master key, one CA), the primary pushing to the
/// backup through a [`Proxy`] so the backup can move ports and the link can be cut.
pub struct Pair {
    pub api: Api,
    pub primary: Pop,
    pub backup: Pop,
    pub proxy: Proxy,
    pub p: Option<Node>,
    pub b: Option<Node>,
    pub opts: Opts,
}

impl Pair {
    pub fn new(opts: Opts) -> Self {
        let ca = Ca::new("Clavitor POP CA");
        let mut primary = Pop::new(PRIMARY_ID, &ca);
        let mut backup = Pop::new(BACKUP_ID, &ca);
        primary.init(None);
        backup.init(Some(&primary.master_key()));
        backup.write_backup(PRIMARY_ID);
        let proxy = Proxy::start();
        let mut pair = Self {
            api: Api::new(&ca),
            primary,
            backup,
            proxy,
            p: None,
            b: None,
            opts,
        };
        if pair.opts.start_backup {
            pair.start_backup();
        } else {
            pair.proxy.set_mode(Mode::Drop);
        }
        pair.primary.write_primary(
            &BackupRef {
                id: BACKUP_ID,
                url: &pair.proxy.url(),
                token_file: &pair.backup.token_file,
            },
            pair.opts.batch_size,
            pair.opts.max_retries,
        );
        pair.start_primary();
        pair
    }

    /// Starts the backup on a fresh port and points the proxy at it (forwarding).
    pub fn start_backup(&mut self) {
        let node = self.backup.start_with("127.0.0.1:0", self.opts.backup_args);
        self.proxy.set_target(node.addr());
        self.proxy.set_mode(Mode::Forward);
        self.b = Some(node);
    }

    pub fn start_primary(&mut self) {
        self.p = Some(self.primary.start());
    }

    pub fn p(&self) -> &Node {
        self.p.as_ref().expect("primary running")
    }

    pub fn b(&self) -> &Node {
        self.b.as_ref().expect("backup running")
    }

    pub fn purl(&self) -> String {
        self.p().url.clone()
    }

    pub fn burl(&self) -> String {
        self.b().url.clone()
    }

    /// The primary's owner token (valid on the backup once replicated).
    pub fn owner(&self) -> String {
        self.primary.owner.clone()
    }

    /// Dumps both logs; for failure messages.
    pub fn logs(&self) -> String {
        format!(
            "--- primary stderr ---\n{}\n--- backup stderr ---\n{}",
            self.p.as_ref().map(Node::stderr).unwrap_or_default(),
            self.b.as_ref().map(Node::stderr).unwrap_or_default()
        )
    }
}
