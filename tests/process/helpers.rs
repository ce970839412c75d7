//! The process suite's own helpers: `serve` on a scratch data dir, and a small async HTTP
//! client for load and verification. Child processes come from `tests/common`.

pub use crate::common::files::{chmod, mode};
use crate::common::poll::wait_until;
pub use crate::common::process::{
    Edition, Output, VERSION, Vault, bin, clavitor, command, run, token_file_in, with_config_home,
};
use crate::edition;
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

/// The config home (`HOME`, `XDG_CONFIG_HOME`) of the commands this suite runs for
/// `data_dir`: `config` beside it. Its owner token file is [`token_file_of`].
pub fn config_home(data_dir: &Path) -> PathBuf {
    data_dir
        .parent()
        .expect("a data dir inside a scratch dir")
        .join("config")
}

/// The owner token file `init`/`serve` write for `data_dir` (in [`config_home`]).
pub fn token_file_of(data_dir: &Path) -> PathBuf {
    token_file_in(&config_home(data_dir))
}

/// `clavitor ARGS` with the config home of `data_dir`.
pub fn command_for(data_dir: &Path, args: &[&str]) -> Command {
    let mut cmd = command(args);
    with_config_home(&mut cmd, &config_home(data_dir));
    cmd
}

/// `clavitor serve --data-dir DIR --listen 127.0.0.1:0`, plus what this build's edition
/// needs (see `edition.rs`).
pub fn serve_cmd(data_dir: &Path) -> Command {
    serve_cmd_with(data_dir, edition::serve_args())
}

/// [`serve_cmd`] with the edition's files of its own, written under `dir` rather than shared
/// by the test process: for a test that runs `serve` as another user, who must own the
/// returned paths too.
pub fn serve_cmd_own(data_dir: &Path, dir: &Path) -> (Command, Vec<PathBuf>) {
    let (extra, written) = edition::own_serve_args(dir);
    (serve_cmd_with(data_dir, extra), written)
}

/// `clavitor serve --data-dir DIR --listen 127.0.0.1:0 EDITION_ARGS` with the config home of
/// `DIR`, where `edition_args` stand in for the edition's usual ones.
pub fn serve_cmd_with(data_dir: &Path, edition_args: Vec<String>) -> Command {
    let mut cmd = command(&["serve"]);
    cmd.args([
        "--data-dir",
        data_dir.to_str().expect("UTF-8 temp path"),
        "--listen",
        "127.0.0.1:0",
    ])
    .args(edition_args);
    with_config_home(&mut cmd, &config_home(data_dir));
    cmd
}

/// `clavitor serve ARGS`, plus what this build's edition needs.
pub fn serve_with(args: &[&str]) -> Command {
    let mut cmd = command(&["serve"]);
    cmd.args(args).args(edition::serve_args());
    cmd
}

/// `--server URL`, plus what a client needs to reach this build's `serve`.
pub fn server_args(url: &str) -> Vec<String> {
    let mut args = vec!["--server".to_owned(), url.to_owned()];
    args.extend(edition::client_args());
    args
}

/// `serve` on `data_dir`, up and listening (panics otherwise).
#[track_caller]
pub fn serve(data_dir: &Path) -> Vault {
    Vault::start(&mut serve_cmd(data_dir), data_dir)
}

impl Vault {
    /// An async HTTP client for this server, authenticated as the owner.
    pub fn api(&self) -> Api {
        Api::new(&self.url, &self.token)
    }
}

/// A temp dir; `data()` is a not-yet-existing data dir inside it.
pub struct Scratch {
    pub dir: tempfile::TempDir,
}

impl Scratch {
    pub fn new() -> Self {
        Self {
            dir: tempfile::Builder::new()
                .prefix("clavitor-process-")
                .tempdir()
                .expect("temp dir"),
        }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }
}

/// `clavitor init --data-dir DIR --json` (with the config home of `DIR`), returning the owner
/// token.
pub fn init(data_dir: &Path) -> String {
    let dir = data_dir.to_str().unwrap();
    let out = run(&mut command_for(
        data_dir,
        &["init", "--data-dir", dir, "--json"],
    ))
    .ok();
    out.json()["owner_token"]
        .as_str()
        .expect("owner_token in init --json")
        .to_owned()
}

/// A pseudo-random number in `lo..hi` (no RNG crate needed for jitter).
pub fn jitter(lo: u64, hi: u64) -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos(),
    );
    lo + h.finish() % (hi - lo).max(1)
}

/// The owner's view of the HTTP API, for load and verification.
#[derive(Clone)]
pub struct Api {
    pub base: String,
    token: String,
    http: reqwest::Client,
}

/// One entry the load wrote: its id and the values it must read back.
#[derive(Clone, Debug)]
pub struct Written {
    pub id: String,
    pub title: String,
    pub password: String,
    pub api_key: String,
}

impl Api {
    pub fn new(base: &str, token: &str) -> Self {
        Self {
            base: base.trim_end_matches('/').to_owned(),
            token: token.to_owned(),
            http: edition::reaching(
                reqwest::Client::builder()
                    .timeout(Duration::from_secs(10))
                    .connect_timeout(Duration::from_secs(2)),
            )
            .build()
            .expect("reqwest client"),
        }
    }

    fn auth(&self, rb: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        rb.bearer_auth(&self.token)
    }

    /// Creates an entry with a vault field and a credential field; `Ok(None)` for a non-2xx
    /// answer, `Err` when the request itself failed (e.g. the server died).
    pub async fn create(&self, title: &str) -> Result<Option<Written>, reqwest::Error> {
        let password = format!("pw-{title}");
        let api_key = format!("key-{title}");
        let body = json!({
            "title": title,
            "username": "load",
            "fields": [
                {"name": "password", "value": password},
                {"name": "api_key", "value": api_key, "tier": "credential", "scope": "ci"},
            ],
        });
        let res = self
            .auth(self.http.post(format!("{}/v1/entries", self.base)))
            .json(&body)
            .send()
            .await?;
        if !res.status().is_success() {
            return Ok(None);
        }
        let v: Value = res.json().await?;
        let id = v["id"].as_str().expect("201 carries an id").to_owned();
        Ok(Some(Written {
            id,
            title: title.to_owned(),
            password,
            api_key,
        }))
    }

    /// GET `path` (relative to the base URL): status and JSON body (Null if none).
    pub async fn get(&self, path: &str) -> (u16, Value) {
        let res = self
            .auth(self.http.get(format!("{}{path}", self.base)))
            .send()
            .await
            .unwrap_or_else(|e| panic!("GET {path}: {e}"));
        let status = res.status().as_u16();
        let body = res.json().await.unwrap_or(Value::Null);
        (status, body)
    }

    pub async fn list(&self) -> Vec<Value> {
        let (st, body) = self.get("/v1/entries").await;
        assert_eq!(st, 200, "GET /v1/entries: {body}");
        body["entries"].as_array().cloned().unwrap_or_default()
    }

    /// Asserts `w` is stored whole: metadata, both fields, both values.
    pub async fn verify(&self, w: &Written) {
        let (st, e) = self.get(&format!("/v1/entries/{}", w.id)).await;
        assert_eq!(
            st, 200,
            "acknowledged entry {} ({}) is missing: {e}",
            w.id, w.title
        );
        assert_eq!(e["title"], w.title, "entry {}", w.id);
        assert_complete(&e);
        for (name, want) in [("password", &w.password), ("api_key", &w.api_key)] {
            let (st, f) = self
                .get(&format!("/v1/entries/{}/fields/{name}", w.id))
                .await;
            assert_eq!(st, 200, "field {name} of acknowledged entry {}: {f}", w.id);
            assert_eq!(
                f["value"].as_str(),
                Some(want.as_str()),
                "field {name} of {}",
                w.id
            );
        }
    }
}

/// Asserts an entry written by the load (listed or fetched) has exactly its two fields.
#[track_caller]
pub fn assert_complete(e: &Value) {
    let mut names: Vec<&str> = e["fields"]
        .as_array()
        .unwrap_or_else(|| panic!("entry without fields array: {e}"))
        .iter()
        .filter_map(|f| f["name"].as_str())
        .collect();
    names.sort_unstable();
    assert_eq!(names, ["api_key", "password"], "partial entry: {e}");
    assert_eq!(e["username"], "load", "partial entry: {e}");
}

/// A multi-threaded runtime for load; the test's own thread stays free for signals and waits.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()
        .expect("tokio runtime")
}

/// Concurrent writers POSTing entries as fast as they can until `stop`, the server dies, or
/// each has made `max_each` requests. Every acknowledged (2xx) write is recorded.
pub struct Load {
    stop: Arc<std::sync::atomic::AtomicBool>,
    acked: Arc<std::sync::atomic::AtomicUsize>,
    tasks: Vec<tokio::task::JoinHandle<Vec<Written>>>,
}

impl Load {
    pub fn start(
        rt: &tokio::runtime::Runtime,
        api: &Api,
        tasks: usize,
        prefix: &str,
        max_each: usize,
    ) -> Self {
        use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
        let stop = Arc::new(AtomicBool::new(false));
        let acked = Arc::new(AtomicUsize::new(0));
        let tasks = (0..tasks)
            .map(|t| {
                let (api, stop, acked) = (api.clone(), stop.clone(), acked.clone());
                let prefix = format!("{prefix}-t{t}");
                rt.spawn(async move {
                    let mut mine = Vec::new();
                    for n in 0..max_each {
                        if stop.load(Ordering::Relaxed) {
                            break;
                        }
                        match api.create(&format!("{prefix}-{n}")).await {
                            Ok(Some(w)) => {
                                mine.push(w);
                                acked.fetch_add(1, Ordering::Relaxed);
                            }
                            Ok(None) => {}
                            // The server is gone (or going): nothing more will be acknowledged.
                            Err(_) => break,
                        }
                    }
                    mine
                })
            })
            .collect();
        Self { stop, acked, tasks }
    }

    pub fn acked(&self) -> usize {
        self.acked.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Waits (bounded) until at least `n` writes were acknowledged.
    #[track_caller]
    pub fn wait_for(&self, n: usize, timeout: Duration) {
        wait_until(timeout, &format!("{n} acknowledged writes"), || {
            let acked = self.acked();
            if acked >= n { Ok(()) } else { Err(acked) }
        });
    }

    /// Stops the writers and returns every acknowledged write.
    pub fn finish(self, rt: &tokio::runtime::Runtime) -> Vec<Written> {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        rt.block_on(async {
            tokio::time::timeout(Duration::from_secs(20), async {
                let mut all = Vec::new();
                for t in self.tasks {
                    all.extend(t.await.expect("load task panicked"));
                }
                all
            })
            .await
            .expect("load tasks finish within 20 s")
        })
    }
}

/// Checks every write in `ws`, `concurrency` at a time, and that the listing is whole.
pub fn verify_all(rt: &tokio::runtime::Runtime, api: &Api, ws: &[Written], concurrency: usize) {
    rt.block_on(async {
        tokio::time::timeout(Duration::from_secs(30), async {
            let chunk = ws.len().div_ceil(concurrency.max(1)).max(1);
            let mut checks = Vec::new();
            for part in ws.chunks(chunk) {
                let (api, part) = (api.clone(), part.to_vec());
                checks.push(tokio::spawn(async move {
                    for w in &part {
                        api.verify(w).await;
                    }
                }));
            }
            for c in checks {
                if let Err(e) = c.await {
                    std::panic::resume_unwind(e.into_panic());
                }
            }
        })
        .await
        .expect("verification finishes within 30 s");
    });
}

/// Lists entries and asserts every one is whole and every acknowledged id is there.
pub fn verify_listing(rt: &tokio::runtime::Runtime, api: &Api, ws: &[Written]) -> usize {
    let listed = rt.block_on(api.list());
    let ids: std::collections::HashSet<&str> =
        listed.iter().filter_map(|e| e["id"].as_str()).collect();
    for e in &listed {
        assert_complete(e);
    }
    let missing: Vec<&Written> = ws.iter().filter(|w| !ids.contains(w.id.as_str())).collect();
    assert!(
        missing.is_empty(),
        "{} of {} acknowledged entries are missing from the listing, e.g. {:?}",
        missing.len(),
        ws.len(),
        missing.first()
    );
    listed.len()
}
