//! Running the real `clavitor` binary: a `serve` child that is killed on drop, a bounded
//! one-shot CLI runner, and a small async HTTP client for load.

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::{Value, json};
use std::io::{BufRead, BufReader, Read};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_clavitor");
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// How long `serve` may take to print its `listening on` line.
const READY_TIMEOUT: Duration = Duration::from_secs(20);
/// How long a one-shot CLI command may run.
const CLI_TIMEOUT: Duration = Duration::from_secs(30);

/// A `clavitor` command with a clean environment: no client settings leak in from the
/// developer's shell.
fn command(cwd: Option<&Path>, args: &[&str], env: &[(&str, &str)]) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.args(args)
        .env_remove("CLAVITOR_TOKEN")
        .env_remove("CLAVITOR_SERVER")
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(d) = cwd {
        cmd.current_dir(d);
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd
}

/// Reads a pipe to the end on a thread; the result arrives on the returned channel.
fn drain(mut r: impl Read + Send + 'static) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = r.read_to_end(&mut buf);
        let _ = tx.send(String::from_utf8_lossy(&buf).into_owned());
    });
    rx
}

/// Polls `child` until it exits or `timeout` passes.
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
pub struct CliOutput {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl CliOutput {
    pub fn code(&self) -> Option<i32> {
        self.status.code()
    }

    /// Panics with both streams unless the command exited 0.
    #[track_caller]
    pub fn ok(self) -> Self {
        assert!(self.status.success(), "expected success, got {self}");
        self
    }

    /// The stdout parsed as JSON.
    #[track_caller]
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {self}"))
    }
}

impl std::fmt::Display for CliOutput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{:?}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.status, self.stdout, self.stderr
        )
    }
}

/// Runs `clavitor ARGS` to completion (bounded) in `cwd` (default: this process's).
pub fn clavitor_in(cwd: Option<&Path>, args: &[&str], env: &[(&str, &str)]) -> CliOutput {
    let mut child = command(cwd, args, env)
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
    CliOutput {
        status,
        stdout: grab(out),
        stderr: grab(err),
    }
}

/// Runs `clavitor ARGS` with extra environment variables.
pub fn clavitor(args: &[&str], env: &[(&str, &str)]) -> CliOutput {
    clavitor_in(None, args, env)
}

/// A running `clavitor serve`. Killed (SIGKILL) and reaped on drop unless it already exited.
pub struct Server {
    pub url: String,
    /// Every stdout line up to and including `listening on ...`.
    pub stdout_lines: Vec<String>,
    pub token: String,
    child: Child,
    exited: Option<ExitStatus>,
    stderr: Arc<Mutex<String>>,
}

/// Why `serve` did not come up.
#[derive(Debug)]
pub struct StartFailure {
    pub status: Option<ExitStatus>,
    pub stdout_lines: Vec<String>,
    pub stderr: String,
}

impl Server {
    /// `clavitor serve --data-dir DIR --listen 127.0.0.1:0`.
    #[track_caller]
    pub fn start(data_dir: &Path) -> Self {
        let dir = data_dir.to_str().expect("UTF-8 temp path");
        Self::spawn(
            None,
            &["serve", "--data-dir", dir, "--listen", "127.0.0.1:0"],
            data_dir,
        )
        .unwrap_or_else(|f| panic!("serve did not start: {f:#?}"))
    }

    /// Starts `clavitor ARGS` in `cwd` and waits for `listening on http://...`; `data_dir` is
    /// where the owner token is read from afterwards.
    pub fn spawn(cwd: Option<&Path>, args: &[&str], data_dir: &Path) -> Result<Self, StartFailure> {
        Self::spawn_as(cwd, args, data_dir, None)
    }

    /// Like [`Server::spawn`], optionally as another user (`uid`, used as gid too; needs root).
    pub fn spawn_as(
        cwd: Option<&Path>,
        args: &[&str],
        data_dir: &Path,
        uid: Option<u32>,
    ) -> Result<Self, StartFailure> {
        let mut cmd = command(cwd, args, &[]);
        if let Some(id) = uid {
            use std::os::unix::process::CommandExt;
            cmd.uid(id).gid(id);
        }
        let mut child = cmd
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
                        // Exited: collect what is left of its output.
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
                    // Stdout closed: the child is exiting. Otherwise it never became ready.
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

    pub fn sigterm(&self) {
        self.signal(Signal::SIGTERM);
    }

    pub fn sigkill(&self) {
        self.signal(Signal::SIGKILL);
    }

    /// Waits (bounded) for the process to exit; `None` if it is still running.
    pub fn wait_timeout(&mut self, timeout: Duration) -> Option<ExitStatus> {
        if self.exited.is_none() {
            self.exited = wait_child(&mut self.child, timeout);
        }
        self.exited
    }

    /// SIGKILL, then reap; returns the exit status (a signal death).
    pub fn crash(&mut self) -> ExitStatus {
        self.sigkill();
        let st = self
            .wait_timeout(Duration::from_secs(5))
            .expect("a SIGKILLed server is gone within 5 s");
        assert_eq!(
            st.signal(),
            Some(9),
            "expected death by SIGKILL, got {st:?}"
        );
        st
    }

    /// Everything the server wrote to stderr so far.
    pub fn stderr(&self) -> String {
        self.stderr
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// An async HTTP client for this server, authenticated as the owner.
    pub fn api(&self) -> Api {
        Api::new(&self.url, &self.token)
    }
}

/// Gives the stderr reader a moment to catch the last lines of an exited child.
fn settle(stderr: &Arc<Mutex<String>>) -> String {
    thread::sleep(Duration::from_millis(100));
    stderr.lock().unwrap_or_else(|p| p.into_inner()).clone()
}

impl Drop for Server {
    fn drop(&mut self) {
        if self.exited.is_none() && matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
        }
        let _ = wait_child(&mut self.child, Duration::from_secs(5));
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

/// `clavitor init --data-dir DIR --json`, returning the owner token.
pub fn init(data_dir: &Path) -> String {
    let out = clavitor(
        &["init", "--data-dir", data_dir.to_str().unwrap(), "--json"],
        &[],
    )
    .ok();
    out.json()["owner_token"]
        .as_str()
        .expect("owner_token in init --json")
        .to_owned()
}

pub fn mode(p: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p)
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        .permissions()
        .mode()
        & 0o777
}

pub fn chmod(p: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode))
        .unwrap_or_else(|e| panic!("chmod {mode:o} {}: {e}", p.display()));
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
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .connect_timeout(Duration::from_secs(2))
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
        let deadline = Instant::now() + timeout;
        while self.acked() < n {
            assert!(
                Instant::now() < deadline,
                "only {} writes acknowledged in {timeout:?}",
                self.acked()
            );
            thread::sleep(Duration::from_millis(5));
        }
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
