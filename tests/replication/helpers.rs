//! The replication suite's own helpers: POP directories (token, certificates, replication.yaml,
//! data dir), a provisioned primary and backup behind a proxy, and HTTPS calls. The binary,
//! certificates and waiting come from `tests/common`.

use crate::common::files::q;
pub use crate::common::files::write_file;
use crate::common::http;
pub use crate::common::http::Reply;
pub use crate::common::pki::{Ca, Leaf, TlsFiles, client, client_trusting, token_text};
pub use crate::common::poll::wait_for;
pub use crate::common::process::{Vault, clavitor, command};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Value, json};
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

pub use crate::proxy::{Mode, Proxy};

pub const PRIMARY_ID: &str = "calgary-01";
pub const BACKUP_ID: &str = "zurich-01";

/// Default bound for convergence waits.
pub const CONVERGE: Duration = Duration::from_secs(30);
/// How long a POP may take to stop cleanly after SIGTERM.
pub const STOP_WITHIN: Duration = Duration::from_secs(10);

// ---- a POP's files ------------------------------------------------------------------------------

/// One POP's directory: inbound token (0600), certificate, key, CA, config, data dir.
pub struct Pop {
    pub dir: tempfile::TempDir,
    pub id: &'static str,
    pub token: String,
    pub token_file: PathBuf,
    pub config: PathBuf,
    pub data: PathBuf,
    tls: TlsFiles,
    /// The owner token `init` printed for this POP's own owner. Empty for a backup, which has
    /// none of its own: [`Pair::new`] sets the primary's, valid there once it replicated.
    pub owner: String,
    /// `scim.token_file`, written into every config of this POP when set.
    pub scim_token_file: Option<PathBuf>,
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
        let token = token_text(32);
        write_file(&token_file, &format!("{token}\n"), 0o600);
        Self {
            config: dir.path().join("replication.yaml"),
            data: dir.path().join("data"),
            token,
            token_file,
            tls: TlsFiles::write(dir.path(), "pop", leaf, ca),
            owner: String::new(),
            scim_token_file: None,
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

    /// `clavitor init` (adopting `master_key` when given: a backup, which gets no owner of its
    /// own); keeps the owner token.
    pub fn init(&mut self, master_key: Option<&Path>) {
        let data = self.data.to_str().unwrap().to_owned();
        let mut args = vec!["init", "--data-dir", &data, "--json"];
        let key;
        if let Some(k) = master_key {
            key = k.to_str().unwrap().to_owned();
            args.extend(["--master-key", &key]);
        }
        let v = clavitor(&args).ok().json();
        self.owner = v["owner_token"].as_str().unwrap_or_default().to_owned();
        assert_eq!(self.owner.is_empty(), master_key.is_some(), "{v}");
    }

    fn auth_yaml(&self) -> String {
        let scim = self
            .scim_token_file
            .as_ref()
            .map(|f| format!("scim:\n  token_file: {}\n", q(f)))
            .unwrap_or_default();
        format!(
            "auth:\n  token_file: {}\n{}{scim}",
            q(&self.token_file),
            self.tls.yaml()
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

    /// A config for a POP whose role a control plane manages: `role` is only the starting
    /// role, `peer` the other POP (pushed to by whichever is primary), `control_plane` the
    /// `control_plane:` block.
    pub fn write_managed(&self, role: &str, peer: &BackupRef, control_plane: &str) {
        let side = if role == "primary" {
            "backup_pop"
        } else {
            "primary_pop"
        };
        let y = format!(
            "pop_id: \"{}\"\nregion: \"test\"\nrole: \"{role}\"\n{side}:\n  id: \"{}\"\n  url: \"{}\"\n  auth_token_file: {}\n{}replication:\n  batch_size: 100\n  max_retries: 2\n{control_plane}",
            self.id,
            peer.id,
            peer.url,
            q(peer.token_file),
            self.auth_yaml()
        );
        std::fs::write(&self.config, y).expect("write replication.yaml");
    }

    /// `serve` on `listen` ("127.0.0.1:0" for any port) with extra args (e.g. a log level).
    #[track_caller]
    pub fn start_with(&self, listen: &str, extra: &[&str]) -> Vault {
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
        let node = Vault::start(&mut command(&args), &self.data);
        assert!(
            node.url.starts_with("https://"),
            "{} serves {}",
            self.id,
            node.url
        );
        node
    }

    #[track_caller]
    pub fn start(&self) -> Vault {
        self.start_with("127.0.0.1:0", &[])
    }
}

// ---- HTTP -------------------------------------------------------------------------------------------

/// Client calls against one POP.
#[derive(Clone)]
pub struct Api {
    pub c: reqwest::Client,
}

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
        http::try_call(&self.c, method, url, token, body).await
    }

    pub async fn call(
        &self,
        method: reqwest::Method,
        url: &str,
        token: &str,
        body: Option<&Value>,
    ) -> Reply {
        http::call(&self.c, method, url, token, body).await
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
        http::health(&self.c, base).await
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
            // Until the owner's row has replicated, a backup refuses the primary's owner token.
            let (st, v) = self
                .call(
                    reqwest::Method::GET,
                    &format!("{base}/v1/entries"),
                    token,
                    None,
                )
                .await;
            let have: HashSet<String> = v["entries"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|e| e["id"].as_str().map(str::to_owned))
                        .collect()
                })
                .unwrap_or_default();
            let missing = want.difference(&have).count();
            if st == 200 && missing == 0 {
                return t0.elapsed();
            }
            assert!(
                t0.elapsed() < timeout,
                "{base} still misses {missing} of {} entries after {timeout:?} (last answer {st}: {v})",
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

/// `(applied, skipped)` of each `replication batch applied` line in a backup's log.
pub fn applied_batches(log: &str) -> Vec<(u64, u64)> {
    log.lines()
        .filter(|l| l.contains("replication batch applied"))
        .map(|l| {
            let num = |key: &str| -> u64 {
                let at = l.find(key).unwrap_or_else(|| panic!("no {key} in {l}")) + key.len();
                l[at..]
                    .chars()
                    .take_while(char::is_ascii_digit)
                    .collect::<String>()
                    .parse()
                    .unwrap_or_else(|e| panic!("{key} in {l}: {e}"))
            };
            (num(" applied="), num(" skipped="))
        })
        .collect()
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

// ---- hand-made batches -------------------------------------------------------------------------

/// An entry row as the primary stores it (read from its database file), as a wire item (wire.rs): blobs in base64.
pub fn entry_item(db: &Path, id: &str, origin: &str) -> Value {
    let conn =
        rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .expect("open the primary's database");
    conn.busy_timeout(Duration::from_secs(5))
        .expect("busy timeout");
    let (meta, created_at, deleted, version, updated_at): (Vec<u8>, i64, bool, i64, i64) = conn
        .query_row(
            "SELECT meta, created_at, deleted, version, updated_at FROM entries WHERE id = ?1",
            [id],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)),
        )
        .expect("entry row");
    let mut stmt = conn
        .prepare("SELECT position, name, tier, scope, ciphertext FROM fields WHERE entry_id = ?1 ORDER BY position")
        .expect("fields query");
    let fields: Vec<Value> = stmt
        .query_map([id], |r| {
            Ok(json!({
                "position": r.get::<_, i64>(0)?,
                "name": r.get::<_, String>(1)?,
                "tier": r.get::<_, String>(2)?,
                "scope": r.get::<_, Option<String>>(3)?,
                "ciphertext": STANDARD.encode(r.get::<_, Vec<u8>>(4)?),
            }))
        })
        .expect("fields")
        .collect::<Result<_, _>>()
        .expect("field rows");
    json!({
        "kind": "entry",
        "id": id,
        "meta": STANDARD.encode(meta),
        "created_at": created_at,
        "deleted": deleted,
        "fields": fields,
        "version": version,
        "updated_at": updated_at,
        "origin": origin,
    })
}

pub async fn push_batch(
    c: &reqwest::Client,
    backup: &str,
    token: &str,
    items: &[&Value],
) -> (u16, Value) {
    let res = c
        .post(format!("{backup}/v1/replication/batch"))
        .bearer_auth(token)
        .json(&json!({"origin": PRIMARY_ID, "items": items}))
        .send()
        .await
        .expect("push");
    let st = res.status().as_u16();
    (st, res.json().await.unwrap_or(Value::Null))
}

/// Pushes `items` to `backup` as the primary would (`c` presents the primary's certificate).
pub async fn push_items(c: &reqwest::Client, backup: &str, token: &str, items: &[Value]) -> Reply {
    let refs: Vec<&Value> = items.iter().collect();
    push_batch(c, backup, token, &refs).await
}

// ---- a primary and a backup -----------------------------------------------------------------------

pub struct Opts {
    pub batch_size: usize,
    pub max_retries: u32,
    /// Extra `serve` arguments for the backup (e.g. `--log-level debug`).
    pub backup_args: &'static [&'static str],
    /// Whether to start the backup at all (it can be started later with [`Pair::start_backup`]).
    pub start_backup: bool,
    /// Whether both POPs serve SCIM, with one token ([`Pair::scim_token`]).
    pub scim: bool,
}

impl Opts {
    /// The defaults, with the backup logging at debug level (its `replication batch applied`
    /// lines).
    pub fn debug_backup() -> Self {
        Self {
            backup_args: &["--log-level", "debug"],
            ..Self::default()
        }
    }
}

impl Default for Opts {
    fn default() -> Self {
        Self {
            batch_size: 100,
            max_retries: 5,
            backup_args: &[],
            start_backup: true,
            scim: false,
        }
    }
}

/// A provisioned primary and backup (same master key, one CA), the primary pushing to the
/// backup through a [`Proxy`] so the backup can move ports and the link can be cut.
pub struct Pair {
    /// The CA of both POPs' certificates.
    pub ca: Ca,
    pub api: Api,
    pub primary: Pop,
    pub backup: Pop,
    pub proxy: Proxy,
    pub p: Option<Vault>,
    pub b: Option<Vault>,
    pub opts: Opts,
    /// The identity provider's token on `/scim/v2` (empty without [`Opts::scim`]).
    pub scim_token: String,
}

impl Pair {
    pub fn new(opts: Opts) -> Self {
        let ca = Ca::new("Clavitor POP CA");
        let mut primary = Pop::new(PRIMARY_ID, &ca);
        let mut backup = Pop::new(BACKUP_ID, &ca);
        primary.init(None);
        backup.init(Some(&primary.master_key()));
        backup.owner = primary.owner.clone();
        let scim_token = if opts.scim {
            // The provider keeps one token whichever POP is primary.
            let token = token_text(32);
            for pop in [&mut primary, &mut backup] {
                let file = pop.path("scim.token");
                write_file(&file, &format!("{token}\n"), 0o600);
                pop.scim_token_file = Some(file);
            }
            token
        } else {
            String::new()
        };
        backup.write_backup(PRIMARY_ID);
        let proxy = Proxy::start();
        let mut pair = Self {
            api: Api::new(&ca),
            ca,
            primary,
            backup,
            proxy,
            p: None,
            b: None,
            opts,
            scim_token,
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

    pub fn p(&self) -> &Vault {
        self.p.as_ref().expect("primary running")
    }

    pub fn b(&self) -> &Vault {
        self.b.as_ref().expect("backup running")
    }

    pub fn purl(&self) -> String {
        self.p().url.clone()
    }

    pub fn burl(&self) -> String {
        self.b().url.clone()
    }

    /// Waits until the backup lists every id in `want` to the primary's owner (whose row
    /// replicates like any other); returns the time taken.
    pub async fn wait_backup_has(&self, want: &HashSet<String>, timeout: Duration) -> Duration {
        self.api
            .wait_has(&self.burl(), &self.primary.owner, want, timeout)
            .await
    }

    /// The primary's owner token (valid on the backup once replicated).
    pub fn owner(&self) -> String {
        self.primary.owner.clone()
    }

    /// Dumps both logs; for failure messages.
    pub fn logs(&self) -> String {
        format!(
            "--- primary stderr ---\n{}\n--- backup stderr ---\n{}",
            self.p.as_ref().map(Vault::stderr).unwrap_or_default(),
            self.b.as_ref().map(Vault::stderr).unwrap_or_default()
        )
    }
}
