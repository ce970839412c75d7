//! The commercial suite's own helpers: a POP's directory (token, POP CA, certificate) and
//! replication.yaml variants, HTTPS calls, a raw keep-alive HTTP/1.1 connection over TLS; the
//! control-plane stand-in (from `tests/common/stand_in.rs`). Child processes, certificates and waiting come from
//! `tests/common`.

pub use crate::common::files::{mode, q, write_file};
use crate::common::http::try_call;
pub use crate::common::http::{call, health};
pub use crate::common::pki::{Ca, TlsFiles, client, plain, tls_stream, token_text, write_token};
pub use crate::common::poll::{wait_for, wait_until};
pub use crate::common::process::{VERSION, Vault, clavitor, command, run, with_config_home};
use reqwest::Method;
use serde_json::{Value, json};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

/// How long a reload may take to show on /healthz.
pub const RELOAD_TIMEOUT: Duration = Duration::from_secs(5);

// ---- HTTP -------------------------------------------------------------------------------------

/// `POST /v1/entries` on `v` as its owner, with [`entry_body`]`(title)`.
pub async fn post_entry(c: &reqwest::Client, v: &Vault, title: &str) -> (u16, Value) {
    let url = format!("{}/v1/entries", v.url);
    call(c, Method::POST, &url, &v.token, Some(&entry_body(title))).await
}

pub fn entry_body(title: &str) -> Value {
    json!({
        "title": title,
        "url": "https://example.com",
        "username": "alice",
        "fields": [{"name": "password", "value": "hunter2", "tier": "vault"}],
    })
}

/// Polls /healthz until it reports `role` (bounded by [`RELOAD_TIMEOUT`]).
pub async fn wait_role(c: &reqwest::Client, base: &str, role: &str) {
    wait_for(RELOAD_TIMEOUT, &format!("role {role}"), || async {
        let h = health(c, base).await;
        (h["role"] == role).then_some(()).ok_or(h)
    })
    .await;
}

/// Waits until a primary with a control plane has its first heartbeat answered: before that
/// it acknowledges no write.
pub async fn wait_leased(c: &reqwest::Client, base: &str) {
    wait_for(RELOAD_TIMEOUT, "a heartbeat answered", || async {
        let h = health(c, base).await;
        let state = h["replication"]["lease"]["state"].clone();
        (state == "live" || state == "unlimited")
            .then_some(())
            .ok_or(h)
    })
    .await;
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
    let url = format!("{base}/v1/replication/batch");
    try_call(c, Method::POST, &url, token, Some(&empty_batch())).await
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

/// A raw TLS connection to a POP.
pub type TlsStream = rustls::StreamOwned<rustls::ClientConnection, TcpStream>;

/// One HTTP/1.1 connection over TLS, reused for every request: proves a connection survives
/// a reload.
pub struct RawConn {
    stream: TlsStream,
    buf: Vec<u8>,
}

impl RawConn {
    pub fn connect(base: &str, ca: &Ca) -> Self {
        Self {
            stream: tls_stream(base, ca, Duration::from_secs(5)),
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

/// A temp dir holding one POP's files: `replication.token` (0600), its POP CA's certificate,
/// its own certificate and key (`pop.crt`, `pop.key`, `pop-ca.crt`), `replication.yaml`, and
/// a not-yet-created data dir `data`.
pub struct Pop {
    pub dir: tempfile::TempDir,
    pub token: String,
    pub token_file: PathBuf,
    pub config: PathBuf,
    pub data: PathBuf,
    /// The POP CA: signs this POP's certificate and the peers it accepts.
    pub ca: Ca,
    /// This POP's certificate, key and CA files (named by every config this helper writes).
    pub tls: TlsFiles,
}

impl Pop {
    pub fn new() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("clavitor-commercial-")
            .tempdir()
            .expect("temp dir");
        let token_file = dir.path().join("replication.token");
        let token = write_token(&token_file);
        let ca = Ca::new("POP CA");
        let tls = TlsFiles::write(dir.path(), "pop", &ca.leaf("pop"), &ca);
        Self {
            config: dir.path().join("replication.yaml"),
            data: dir.path().join("data"),
            token,
            token_file,
            dir,
            ca,
            tls,
        }
    }

    /// An HTTPS client trusting this POP's CA, without a client certificate.
    pub fn client(&self) -> reqwest::Client {
        client(&self.ca, None)
    }

    /// An HTTPS client presenting a certificate from this POP's CA that names `name` (the
    /// backups of [`config_yaml`] take pushes from `calgary-01`).
    pub fn peer(&self, name: &str) -> reqwest::Client {
        client(&self.ca, Some(&self.ca.leaf(name)))
    }

    /// A raw keep-alive connection to `v` over TLS.
    pub fn raw(&self, v: &Vault) -> RawConn {
        RawConn::connect(&v.url, &self.ca)
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub fn write_config(&self, yaml: &str) {
        std::fs::write(&self.config, yaml).expect("write replication.yaml");
    }

    /// Writes [`config_yaml`] for `role` as this POP's config; returns it.
    pub fn configure(&self, role: &str, o: &Opts) -> String {
        let y = config_yaml(self, role, o);
        self.write_config(&y);
        y
    }

    /// Writes a server/client certificate from `ca` (`STEM.crt`, `STEM.key` 0600) and the CA
    /// certificate (`STEM-ca.crt`), for configs that name other TLS files ([`Opts::tls`]).
    pub fn write_tls_as(&self, stem: &str, ca: &Ca) -> TlsFiles {
        TlsFiles::write(self.dir.path(), stem, &ca.leaf("pop"), ca)
    }

    /// [`Pop::write_tls_as`] with the stem `replication`.
    pub fn write_tls(&self, ca: &Ca) -> TlsFiles {
        self.write_tls_as("replication", ca)
    }

    /// `clavitor serve` for this POP on 127.0.0.1, any port; its config home (where the owner
    /// token of a new vault goes) is this POP's dir, so later starts read the same token.
    pub fn serve_cmd(&self) -> Command {
        let mut cmd = command(&[
            "serve",
            "--data-dir",
            self.data.to_str().unwrap(),
            "--listen",
            "127.0.0.1:0",
            "--replication-config",
            self.config.to_str().unwrap(),
        ]);
        with_config_home(&mut cmd, &self.path("config"));
        cmd
    }

    #[track_caller]
    pub fn start(&self) -> Vault {
        Vault::start(&mut self.serve_cmd(), &self.data)
    }
}

/// Options for [`config_yaml`].
#[derive(Default)]
pub struct Opts<'a> {
    /// TLS files to name instead of the POP's own.
    pub tls: Option<&'a TlsFiles>,
    pub control_plane: Option<&'a CpFiles>,
}

impl<'a> Opts<'a> {
    pub fn with_tls(tls: &'a TlsFiles) -> Self {
        Self {
            tls: Some(tls),
            ..Self::default()
        }
    }

    pub fn with_control_plane(cp: &'a CpFiles) -> Self {
        Self {
            control_plane: Some(cp),
            ..Self::default()
        }
    }
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

/// A fresh POP holding the token and CA file of a new control-plane stand-in that answers
/// with `mode`.
pub fn pop_with_control_plane(mode: CpMode) -> (ControlPlane, CpFiles, Pop) {
    let ca = Ca::new("control-plane CA");
    let cp = ControlPlane::start(&ca, mode);
    let pop = Pop::new();
    let files = CpFiles::new(&pop, &cp, &ca);
    (cp, files, pop)
}

/// A valid replication.yaml for `role` ("primary" replicates to `zurich-01`; "backup" takes
/// pushes from `calgary-01`), naming the POP's own TLS files unless `o.tls` names others.
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
    } else if o.control_plane.is_some() {
        // A backup the control plane may promote needs where and how to push.
        y.push_str(&format!(
            "primary_pop:\n  id: \"calgary-01\"\n  url: \"https://calgary-01.example.com\"\n  auth_token_file: {}\n",
            q(&pop.token_file)
        ));
    } else {
        y.push_str("primary_pop:\n  id: \"calgary-01\"\n");
    }
    y.push_str(&format!("auth:\n  token_file: {}\n", q(&pop.token_file)));
    y.push_str(&o.tls.unwrap_or(&pop.tls).yaml());
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

pub use crate::common::stand_in::{ControlPlane, CpMode};
