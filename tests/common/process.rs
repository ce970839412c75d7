//! The real `clavitor` binary as a child process: a private copy checked to be the edition this
//! suite was built for, one-shot commands with a deadline, and `serve` children that count as up
//! once they print `listening on`, keep their stderr, and are SIGKILLed and reaped on drop.
//!
//! Every child runs with `HOME` and `XDG_CONFIG_HOME` in a fresh scratch directory of its own
//! (never the real home), so the owner token files `init` and `serve` write land there. A test
//! that wants several commands to share one (the CLI finding the token `serve` saved) points
//! them at the same directory with [`with_config_home`].

use super::poll::poll;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::Value;
use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex, OnceLock, mpsc};
use std::thread;
use std::time::{Duration, Instant};

pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// How long `serve` may take to print its `listening on` line (or to exit on a bad start).
const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a one-shot command may run.
const CLI_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a signalled server may take to exit before the test gives up on it.
const EXIT_TIMEOUT: Duration = Duration::from_secs(10);

// ---- the binary -----------------------------------------------------------------------------

/// A build of `clavitor`, as its `--version` line ends: `(community)` or `(commercial)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Edition {
    Community,
    Commercial,
}

impl Edition {
    /// The edition this suite was compiled for, and so the only binary it may run.
    pub const BUILT: Edition = if cfg!(feature = "commercial") {
        Edition::Commercial
    } else {
        Edition::Community
    };

    pub fn name(self) -> &'static str {
        match self {
            Edition::Community => "community",
            Edition::Commercial => "commercial",
        }
    }
}

/// The `clavitor` binary this suite runs: a private copy of `CARGO_BIN_EXE_clavitor`, checked
/// to be [`Edition::BUILT`]. Cargo uplifts whichever edition was built last to
/// target/debug/clavitor, so once both editions' tests are built that path may hold the other
/// edition; and a build during the run may replace it. The copy (a hard link when possible)
/// is made and checked once per test process.
pub fn bin() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| pin(Path::new(env!("CARGO_BIN_EXE_clavitor")), Edition::BUILT))
}

/// Where [`pin`] puts its copy: `<CARGO_TARGET_TMPDIR>/clavitor-bin-<pid>/clavitor`.
const PINNED_PREFIX: &str = "clavitor-bin-";

fn pin(src: &Path, edition: Edition) -> PathBuf {
    let root = Path::new(env!("CARGO_TARGET_TMPDIR"));
    remove_copies_of_finished_runs(root);
    let dir = root.join(format!("{PINNED_PREFIX}{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("create {}: {e}", dir.display()));
    let dst = dir.join("clavitor");
    // A hard link keeps the file cargo wrote even if cargo later replaces the path.
    if std::fs::hard_link(src, &dst).is_err() {
        std::fs::copy(src, &dst).unwrap_or_else(|e| panic!("copy {}: {e}", src.display()));
    }
    let out = Command::new(&dst)
        .arg("--version")
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", dst.display()));
    let version = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    let name = edition.name();
    let features = match edition {
        Edition::Community => "",
        Edition::Commercial => "--features commercial ",
    };
    assert!(
        version.ends_with(&format!("({name})")),
        "{} is not the {name} build (`--version` says {version:?}): cargo uplifts whichever \
         edition was built last. Rebuild this suite: `cargo test {features}--test {}`",
        src.display(),
        env!("CARGO_CRATE_NAME")
    );
    dst
}

/// Removes the copies left by test processes that are gone.
fn remove_copies_of_finished_runs(root: &Path) {
    let Ok(dirs) = std::fs::read_dir(root) else {
        return;
    };
    for d in dirs.flatten() {
        let name = d.file_name();
        let Some(pid) = name.to_str().and_then(|n| n.strip_prefix(PINNED_PREFIX)) else {
            continue;
        };
        if pid.parse::<u32>().is_ok() && !Path::new("/proc").join(pid).exists() {
            let _ = std::fs::remove_dir_all(d.path());
        }
    }
}

// ---- one-shot commands ----------------------------------------------------------------------

/// A `clavitor ARGS` command with a clean environment (no client settings leak in from the
/// developer's shell, and a home of its own: see the module doc) and piped output. Add a
/// working directory or variables before running it.
pub fn command(args: &[&str]) -> Command {
    let mut cmd = Command::new(bin());
    cmd.args(args)
        .env_remove("CLAVITOR_TOKEN")
        .env_remove("CLAVITOR_SERVER")
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    with_config_home(&mut cmd, &fresh_home());
    cmd
}

/// Points `cmd`'s `HOME` and `XDG_CONFIG_HOME` at `dir` (created if missing): its owner token
/// file is then `dir/clavitor/token` ([`token_file_in`]).
pub fn with_config_home<'a>(cmd: &'a mut Command, dir: &Path) -> &'a mut Command {
    std::fs::create_dir_all(dir).unwrap_or_else(|e| panic!("create {}: {e}", dir.display()));
    cmd.env("HOME", dir).env("XDG_CONFIG_HOME", dir)
}

/// The default owner token file of a command whose config home is `dir`.
pub fn token_file_in(dir: &Path) -> PathBuf {
    dir.join("clavitor").join("token")
}

/// A new, empty directory beside this process's pinned binary (removed with it).
fn fresh_home() -> PathBuf {
    static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = bin()
        .parent()
        .expect("the pinned binary has a directory")
        .join(format!("home-{n}"));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// Where `cmd` (an `init` or `serve`) saves a new owner token: its `--owner-token-out`, else
/// the token file of its config home.
pub fn owner_token_file(cmd: &Command) -> Option<PathBuf> {
    let args: Vec<&std::ffi::OsStr> = cmd.get_args().collect();
    let given = args.iter().enumerate().find_map(|(i, a)| {
        let a = a.to_str()?;
        if a == "--owner-token-out" {
            args.get(i + 1).map(PathBuf::from)
        } else {
            a.strip_prefix("--owner-token-out=").map(PathBuf::from)
        }
    });
    let path = match given {
        Some(p) => p,
        None => {
            let home = cmd
                .get_envs()
                .find(|(k, _)| *k == "XDG_CONFIG_HOME")
                .and_then(|(_, v)| v)?;
            token_file_in(Path::new(home))
        }
    };
    Some(match cmd.get_current_dir() {
        Some(cwd) if path.is_relative() => cwd.join(path),
        _ => path,
    })
}

/// `clavitor ARGS`, for messages.
fn shown(cmd: &Command) -> String {
    let args: Vec<_> = cmd.get_args().map(|a| a.to_string_lossy()).collect();
    format!("clavitor {}", args.join(" "))
}

/// Reads a pipe to the end on a thread; the text arrives on the returned channel.
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
    poll(timeout, Duration::from_millis(5), || {
        child.try_wait().expect("try_wait on the child")
    })
}

/// What a one-shot command did.
#[derive(Debug)]
pub struct Output {
    /// `clavitor ARGS`.
    pub command: String,
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl Output {
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

impl std::fmt::Display for Output {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}: {:?}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.command, self.status, self.stdout, self.stderr
        )
    }
}

/// Runs `cmd` (from [`command`]) to completion, bounded by [`CLI_TIMEOUT`].
pub fn run(cmd: &mut Command) -> Output {
    let command = shown(cmd);
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {command}: {e}"));
    let out = drain(child.stdout.take().expect("piped stdout"));
    let err = drain(child.stderr.take().expect("piped stderr"));
    let Some(status) = wait_child(&mut child, CLI_TIMEOUT) else {
        let _ = child.kill();
        let _ = child.wait();
        panic!("{command} did not finish within {CLI_TIMEOUT:?}");
    };
    let grab =
        |rx: mpsc::Receiver<String>| rx.recv_timeout(Duration::from_secs(5)).unwrap_or_default();
    Output {
        command,
        status,
        stdout: grab(out),
        stderr: grab(err),
    }
}

/// Runs `clavitor ARGS` to completion, bounded.
pub fn clavitor(args: &[&str]) -> Output {
    run(&mut command(args))
}

// ---- serve ----------------------------------------------------------------------------------

/// A running `clavitor serve`. SIGKILLed and reaped on drop unless it already exited.
pub struct Vault {
    pub url: String,
    /// Every stdout line up to and including `listening on ...`.
    pub stdout_lines: Vec<String>,
    /// The owner token in the command's owner token file ([`owner_token_file`]; empty if
    /// there is none, e.g. the vault existed before).
    pub token: String,
    /// That file.
    pub token_file: Option<PathBuf>,
    child: Child,
    exited: Option<ExitStatus>,
    stderr: Arc<Mutex<String>>,
}

/// Why `serve` did not come up.
#[derive(Debug)]
pub struct StartFailure {
    /// `None`: it neither listened nor exited in time (and was killed).
    pub status: Option<ExitStatus>,
    pub stdout_lines: Vec<String>,
    pub stderr: String,
}

impl Vault {
    /// Starts `cmd` (a `serve` from [`command`] on `data_dir`) and waits for `listening on URL`;
    /// then reads the owner token from [`owner_token_file`], and checks that no token was left
    /// in the data dir.
    pub fn spawn(cmd: &mut Command, data_dir: &Path) -> Result<Self, StartFailure> {
        let token_file = owner_token_file(cmd);
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", shown(cmd)));
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
        let token = token_file
            .as_ref()
            .and_then(|f| std::fs::read_to_string(f).ok())
            .map(|t| t.trim().to_owned())
            .unwrap_or_default();
        let old = data_dir.join("owner.token");
        assert!(
            !old.exists(),
            "{} is still there after the start: no token may stay in the data dir",
            old.display()
        );
        Ok(Self {
            url,
            stdout_lines: lines,
            token,
            token_file,
            child,
            exited: None,
            stderr,
        })
    }

    /// [`Vault::spawn`], panicking with the failure if `serve` does not come up.
    #[track_caller]
    pub fn start(cmd: &mut Command, data_dir: &Path) -> Self {
        let what = shown(cmd);
        Self::spawn(cmd, data_dir).unwrap_or_else(|f| panic!("{what} did not start: {f:#?}"))
    }

    /// `host:port` of the listening socket.
    pub fn addr(&self) -> SocketAddr {
        let hostport = self.url.split_once("://").map_or(&*self.url, |(_, a)| a);
        hostport
            .parse()
            .unwrap_or_else(|e| panic!("{} is not scheme://ip:port: {e}", self.url))
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
        poll(timeout, Duration::from_millis(20), || {
            self.stderr().contains(needle).then_some(())
        })
        .is_some()
    }

    /// Sends `sig` and asserts the server exits 0 within `within`; returns how long it took.
    #[track_caller]
    pub fn exit_on(&mut self, sig: Signal, within: Duration) -> Duration {
        let sent = Instant::now();
        self.signal(sig);
        let wait = within.max(EXIT_TIMEOUT);
        let st = self
            .wait_timeout(wait)
            .unwrap_or_else(|| panic!("still running {wait:?} after {sig}:\n{}", self.stderr()));
        let took = sent.elapsed();
        assert_eq!(
            st.code(),
            Some(0),
            "{sig}: exit status {st:?}\n{}",
            self.stderr()
        );
        assert!(
            took <= within,
            "{sig}: exited after {took:?}, over {within:?}\n{}",
            self.stderr()
        );
        took
    }

    /// SIGTERM: asserts exit 0 within `within`; returns how long it took.
    #[track_caller]
    pub fn stop(&mut self, within: Duration) -> Duration {
        self.exit_on(Signal::SIGTERM, within)
    }

    /// SIGKILL, then reap; asserts the death was by that signal.
    #[track_caller]
    pub fn kill9(&mut self) -> ExitStatus {
        self.signal(Signal::SIGKILL);
        let st = self
            .wait_timeout(EXIT_TIMEOUT)
            .unwrap_or_else(|| panic!("the server survived SIGKILL for {EXIT_TIMEOUT:?}"));
        assert_eq!(
            st.signal(),
            Some(9),
            "expected death by SIGKILL, got {st:?}"
        );
        st
    }
}

/// Gives the stderr reader a moment to catch the last lines of an exited child.
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
