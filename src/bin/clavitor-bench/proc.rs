//! Child processes under test, and the scratch directory. Every child sits in a guard that
//! kills it on drop, so an error or a panic anywhere in the bench leaves no server behind.

use anyhow::{Context, Result, bail};
use std::fs::File;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const START_TIMEOUT: Duration = Duration::from_secs(15);
const STOP_TIMEOUT: Duration = Duration::from_secs(3);

/// A scratch directory under the system temp dir, removed on drop.
pub struct TempDir {
    path: PathBuf,
}

impl TempDir {
    pub fn new(prefix: &str) -> Result<Self> {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos();
        let path = std::env::temp_dir().join(format!("{prefix}-{}-{nanos}", std::process::id()));
        std::fs::create_dir(&path)
            .with_context(|| format!("cannot create scratch dir {}", path.display()))?;
        Ok(Self { path })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// A running server process. Dropping it kills the process.
pub struct ServerProcess {
    name: String,
    child: Option<Child>,
    pub addr: SocketAddr,
    stderr_log: PathBuf,
}

impl ServerProcess {
    /// Spawns `cmd` and waits for its `listening on http(s)://IP:PORT` line on stdout. The rest
    /// of stdout is drained in the background so the child never blocks on a full pipe; its
    /// stderr goes to `stderr_log`, quoted if it fails to start.
    pub fn spawn(name: &str, mut cmd: Command, stderr_log: &Path) -> Result<Self> {
        let err_file = File::create(stderr_log)
            .with_context(|| format!("cannot create {}", stderr_log.display()))?;
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(err_file));
        let mut child = cmd
            .spawn()
            .with_context(|| format!("cannot start {name} ({cmd:?})"))?;
        let stdout = child.stdout.take().expect("stdout was piped");
        // From here on the guard owns the child: any early return kills it.
        let mut guard = Self {
            name: name.to_owned(),
            child: Some(child),
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            stderr_log: stderr_log.to_owned(),
        };
        let (tx, rx) = mpsc::channel();
        std::thread::Builder::new()
            .name(format!("{name}-stdout"))
            .spawn(move || {
                let mut sent = false;
                for line in BufReader::new(stdout).lines() {
                    let Ok(line) = line else { break };
                    let addr = line.trim().strip_prefix("listening on ").and_then(|u| {
                        u.strip_prefix("http://")
                            .or_else(|| u.strip_prefix("https://"))
                    });
                    if !sent && let Some(rest) = addr {
                        let _ = tx.send(rest.to_owned());
                        sent = true;
                    }
                }
            })
            .context("cannot start a reader thread")?;
        let addr = match rx.recv_timeout(START_TIMEOUT) {
            Ok(a) => a,
            Err(_) => bail!(
                "{name} did not print `listening on http(s)://...` within {START_TIMEOUT:?}{}",
                guard.stderr_tail()
            ),
        };
        guard.addr = addr
            .parse()
            .with_context(|| format!("{name} printed an unparsable address {addr:?}"))?;
        Ok(guard)
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Waits up to `timeout` for the process to exit by itself (e.g. after a signal the
    /// caller sent), checking every millisecond. After an exit the guard has nothing to kill.
    pub fn wait_exit(&mut self, timeout: Duration) -> Result<Option<std::process::ExitStatus>> {
        let Some(child) = self.child.as_mut() else {
            return Ok(None);
        };
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(st) = child.try_wait()? {
                self.child = None;
                return Ok(Some(st));
            }
            if Instant::now() >= deadline {
                return Ok(None);
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    fn stderr_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.stderr_log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        let tail = lines[lines.len().saturating_sub(15)..].join("\n");
        if tail.is_empty() {
            String::new()
        } else {
            format!("; its stderr ends with:\n{tail}")
        }
    }

    /// Graceful stop: SIGTERM, then SIGKILL if it has not exited within `STOP_TIMEOUT`.
    pub fn stop(mut self) -> Result<()> {
        let Some(mut child) = self.child.take() else {
            return Ok(());
        };
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(child.id().to_string())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let deadline = Instant::now() + STOP_TIMEOUT;
        loop {
            if child.try_wait()?.is_some() {
                return Ok(());
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                bail!(
                    "{} did not exit within {STOP_TIMEOUT:?} of SIGTERM",
                    self.name
                );
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// The `clavitor` binary next to this executable (both land in `target/release`).
pub fn find_clavitor() -> Result<PathBuf> {
    let me = std::env::current_exe().context("cannot locate the bench executable")?;
    let dir = me
        .parent()
        .context("the bench executable has no directory")?;
    let bin = dir.join("clavitor");
    if !bin.is_file() {
        bail!(
            "{} does not exist. Fix: run `cargo build --release` first (it builds the `clavitor` server binary next to clavitor-bench)",
            bin.display()
        );
    }
    // `cargo run --bin clavitor-bench` rebuilds only the bench: warn about a stale server.
    let modified = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    if let (Some(server), Some(bench)) = (modified(&bin), modified(&me))
        && server + Duration::from_secs(60) < bench
    {
        eprintln!(
            "warning: {} is older than the bench binary; it may be stale. Run `cargo build --release` to rebuild it.",
            bin.display()
        );
    }
    Ok(bin)
}

/// `clavitor serve` on `data_dir`, listening on `listen` (`127.0.0.1:0`: port chosen by the OS).
pub fn serve_command(clavitor: &Path, data_dir: &Path, listen: &str) -> Command {
    let mut cmd = Command::new(clavitor);
    cmd.arg("serve")
        .arg("--data-dir")
        .arg(data_dir)
        .arg("--listen")
        .arg(listen)
        .arg("--owner-token-out")
        .arg(owner_token_file(data_dir));
    cmd
}

/// Where the bench has a new vault in `data_dir` save its owner token: beside the data dir
/// (never in it), never in the user's own token file.
pub fn owner_token_file(data_dir: &Path) -> std::path::PathBuf {
    let name = data_dir.file_name().unwrap_or_default().to_string_lossy();
    data_dir.with_file_name(format!("{name}.owner-token"))
}

/// This executable again, as the bare-axum reference server.
pub fn bare_command() -> Result<Command> {
    let me = std::env::current_exe().context("cannot locate the bench executable")?;
    let mut cmd = Command::new(me);
    cmd.arg("--bare-server");
    Ok(cmd)
}
