//! The control-plane suite's helpers: a control plane's directory (rcgen certificate, admin and
//! POP tokens, YAML), the real `clavitor control-plane` process, and a POP stand-in that sends
//! the heartbeats, telemetry and alerts a POP sends (same bodies, over HTTPS).

pub use crate::common::files::q;
pub use crate::common::http::call;
pub use crate::common::pki::{Ca, TlsFiles, client, write_token};
pub use crate::common::process::{VERSION, Vault, command};
use reqwest::Method;
use serde_json::{Value, json};
use std::path::PathBuf;

/// Failover settings for tests: quick heartbeats, a 1 s lease.
pub const MANUAL: &str = "failover:\n  mode: manual\n  heartbeat_interval_ms: 300\n  missed_heartbeats: 10\n  lease_seconds: 1\n";
pub const AUTOMATIC: &str = "failover:\n  mode: automatic\n  heartbeat_interval_ms: 500\n  missed_heartbeats: 4\n  lease_seconds: 1\n  max_lag_versions: 10\n";

/// A POP as the control plane knows it: id and token.
pub struct PopCreds {
    pub id: String,
    pub token: String,
    pub token_file: PathBuf,
}

/// A control plane's files in a temp dir: certificate (from a test CA), admin token, one token
/// per POP, `control-plane.yaml`, and a not-yet-created data dir.
pub struct CpDir {
    pub dir: tempfile::TempDir,
    pub ca: Ca,
    pub tls: TlsFiles,
    pub config: PathBuf,
    pub data: PathBuf,
    pub admin: String,
    pub admin_file: PathBuf,
    pub pops: Vec<PopCreds>,
}

impl CpDir {
    /// Files for a control plane of `pops`, with `failover` (a YAML block) written as its config.
    pub fn new(pops: &[&str], failover: &str) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("clavitor-cp-")
            .tempdir()
            .expect("temp dir");
        let ca = Ca::new("control-plane test CA");
        let tls = TlsFiles::write(dir.path(), "control-plane", &ca.leaf("control-plane"), &ca);
        let admin_file = dir.path().join("admin.token");
        let admin = write_token(&admin_file);
        let pops = pops
            .iter()
            .map(|id| {
                let token_file = dir.path().join(format!("{id}.token"));
                PopCreds {
                    id: (*id).to_owned(),
                    token: write_token(&token_file),
                    token_file,
                }
            })
            .collect();
        let cp = Self {
            config: dir.path().join("control-plane.yaml"),
            data: dir.path().join("data"),
            dir,
            ca,
            tls,
            admin,
            admin_file,
            pops,
        };
        cp.write_config(&cp.yaml(failover));
        cp
    }

    /// A valid config for these files with `failover` appended.
    pub fn yaml(&self, failover: &str) -> String {
        let mut y = format!(
            "listen: \"127.0.0.1:0\"\ndata_dir: {}\ntls_cert: {}\ntls_key: {}\nadmin_token_file: {}\npops:\n",
            q(&self.data),
            q(&self.tls.cert),
            q(&self.tls.key),
            q(&self.admin_file)
        );
        for p in &self.pops {
            y.push_str(&format!(
                "  - id: \"{}\"\n    token_file: {}\n",
                p.id,
                q(&p.token_file)
            ));
        }
        y.push_str(failover);
        y
    }

    pub fn write_config(&self, yaml: &str) {
        std::fs::write(&self.config, yaml).expect("write control-plane.yaml");
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub fn token(&self, pop: &str) -> &str {
        &self
            .pops
            .iter()
            .find(|p| p.id == pop)
            .unwrap_or_else(|| panic!("no POP {pop}"))
            .token
    }

    pub fn command(&self) -> std::process::Command {
        command(&["control-plane", "--config", self.config.to_str().unwrap()])
    }

    /// Starts `clavitor control-plane` and waits for its `listening on` line.
    #[track_caller]
    pub fn start(&self) -> Cp {
        let process = Vault::start(&mut self.command(), &self.data);
        Cp {
            url: process.url.clone(),
            http: client(&self.ca, None),
            admin: self.admin.clone(),
            process,
        }
    }
}

/// A running control plane and an HTTPS client that trusts it.
pub struct Cp {
    pub url: String,
    pub http: reqwest::Client,
    pub admin: String,
    pub process: Vault,
}

/// A heartbeat body as a POP sends it (`epoch` only from POPs that know about epochs).
pub fn heartbeat_body(pop: &str, role: &str, epoch: Option<u64>, replication: Value) -> Value {
    let mut b = json!({
        "pop_id": pop,
        "region": "test-region",
        "role": role,
        "version": VERSION,
        "uptime_seconds": 42,
        "replication_backlog": replication.get("backlog").cloned().unwrap_or(json!(0)),
        "timestamp": "2026-11-30T00:00:00Z",
        "replication": replication,
    });
    if let Some(e) = epoch {
        b["epoch"] = json!(e);
    }
    b
}

/// A primary's `replication` object.
pub fn primary_repl(backlog: i64, committed: i64) -> Value {
    json!({
        "backlog": backlog,
        "committed_version": committed,
        "acked_version": committed - backlog,
        "acked_watermark": committed - backlog,
        "last_success": null,
        "failing_since": null,
        "last_error": null,
        "lag_ms": {"p50": 12, "p99": 40},
    })
}

/// A backup's `replication` object.
pub fn backup_repl(applied: i64) -> Value {
    json!({
        "committed_version": applied,
        "applied_version": applied,
        "applied_watermark": applied,
        "last_push": null,
    })
}

impl Cp {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.url)
    }

    /// `POST path` with `token` and `body`.
    pub async fn post(&self, path: &str, token: &str, body: &Value) -> (u16, Value) {
        call(&self.http, Method::POST, &self.url(path), token, Some(body)).await
    }

    /// A heartbeat from `pop` with its own token; asserts 200 and returns the answer.
    pub async fn beat(
        &self,
        dir: &CpDir,
        pop: &str,
        role: &str,
        epoch: Option<u64>,
        repl: Value,
    ) -> Value {
        let (st, v) = self
            .post(
                "/v1/heartbeat",
                dir.token(pop),
                &heartbeat_body(pop, role, epoch, repl),
            )
            .await;
        assert_eq!(st, 200, "heartbeat from {pop}: {v}");
        v
    }

    pub async fn admin_get(&self, path: &str) -> Value {
        let (st, v) = call(&self.http, Method::GET, &self.url(path), &self.admin, None).await;
        assert_eq!(st, 200, "GET {path}: {v}");
        v
    }

    pub async fn admin_post(&self, path: &str) -> (u16, Value) {
        call(&self.http, Method::POST, &self.url(path), &self.admin, None).await
    }

    /// The `/v1/pops` entry of `pop`.
    pub async fn pop(&self, pop: &str) -> Value {
        let all = self.admin_get("/v1/pops").await;
        all["pops"]
            .as_array()
            .and_then(|a| a.iter().find(|p| p["id"] == pop))
            .cloned()
            .unwrap_or_else(|| panic!("{pop} not in {all}"))
    }
}

/// The `error.code` of an error body.
pub fn code(v: &Value) -> &str {
    v["error"]["code"].as_str().unwrap_or("")
}
