//! `clavitor run [--env-file FILE] [--env NAME=REF]... [--no-masking] [--watch] -- CMD ARGS...`:
//! a command with secrets in its environment, as `op run` and `bws run` do it.
//!
//! - The child never inherits the token: `CLAVITOR_TOKEN` is removed from its environment, and
//!   so is any variable holding the token or the token file's path.
//! - Its stdout and stderr go through [`crate::mask`] (every value, in every form, also when a
//!   value is split across writes) unless `--no-masking`, which hands it the terminal as is.
//! - Exit code and signals pass through: a signal sent to `run` (not one the terminal sent to
//!   the whole process group, which the child gets anyway) is forwarded to the child; a child
//!   killed by a signal makes `run` die of the same signal.
//! - `--watch` long-polls `GET /v1/changes` and restarts the child (SIGTERM, then SIGKILL after
//!   10 s) when a referenced value changed.

use super::ClientOpts;
use super::client::Client;
use super::secrets::Resolver;
use crate::mask::{Masker, StreamMasker};
use crate::vault::reference::SCHEME;
use anyhow::{Context, Result, bail};
use clap::Args;
use serde_json::Value;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::ffi::OsString;
use std::io::{Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, ExitStatus, Stdio};
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::mpsc;
use std::time::Duration;
use zeroize::Zeroizing;

#[derive(Debug, Args)]
pub struct RunArgs {
    /// NAME=clavitor://ENTRY/FIELD to set in the child's environment (repeat). Variables
    /// already in the environment whose value is a clavitor:// reference are resolved too.
    #[arg(long = "env", short = 'e', value_name = "NAME=REFERENCE")]
    env: Vec<String>,
    /// A file of NAME=VALUE lines (# comments, optional `export `, quotes); values that are
    /// clavitor:// references are resolved, others passed as they are (repeat).
    #[arg(long = "env-file", value_name = "FILE")]
    env_files: Vec<PathBuf>,
    /// Do not mask values in the child's output (it then writes to the terminal directly).
    #[arg(long)]
    no_masking: bool,
    /// Restart the child when a referenced value changes on the server.
    #[arg(long)]
    watch: bool,
    #[command(flatten)]
    opts: ClientOpts,
    /// The command and its arguments, after `--`.
    #[arg(last = true, required = true)]
    command: Vec<String>,
}

/// A variable the child gets: a reference to resolve, or a plain value from an env file.
struct Definition {
    name: String,
    value: Source,
}

enum Source {
    Reference(String),
    Plain(String),
}

/// Where to stop a restart's wait for the old child before SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(10);
/// Signals forwarded to the child.
const FORWARDED: &[libc::c_int] = &[
    libc::SIGINT,
    libc::SIGTERM,
    libc::SIGHUP,
    libc::SIGQUIT,
    libc::SIGUSR1,
    libc::SIGUSR2,
    libc::SIGWINCH,
];

/// The running child's pid (0: none), for the signal thread.
static CHILD: AtomicI32 = AtomicI32::new(0);

pub fn run(a: RunArgs) -> ExitCode {
    match run_inner(a) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}

fn check_name(name: &str, origin: &str) -> Result<()> {
    if name.is_empty()
        || name.contains(['=', '\0'])
        || name.chars().any(|c| c.is_whitespace() || c.is_control())
    {
        bail!("{origin}: {name:?} is not a variable name");
    }
    Ok(())
}

/// `NAME=VALUE` lines: blank lines and `#` comments skipped, `export ` allowed, values in
/// matching single or double quotes unquoted.
fn parse_env_file(path: &Path) -> Result<Vec<(String, String, String)>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("--env-file {}", path.display()))?;
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let origin = format!("{}, line {}", path.display(), i + 1);
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let line = line.strip_prefix("export ").unwrap_or(line).trim_start();
        let Some((name, value)) = line.split_once('=') else {
            bail!("{origin}: expected NAME=VALUE");
        };
        let name = name.trim().to_owned();
        check_name(&name, &origin)?;
        let value = value.trim();
        let value = ['"', '\'']
            .iter()
            .find_map(|q| {
                value
                    .strip_prefix(*q)
                    .and_then(|v| v.strip_suffix(*q))
                    .filter(|_| value.len() >= 2)
            })
            .unwrap_or(value)
            .to_owned();
        out.push((name, value, origin));
    }
    Ok(out)
}

/// Every variable to set, each name once (a name given twice is refused: which one would win
/// is a guess).
fn definitions(a: &RunArgs) -> Result<Vec<Definition>> {
    let mut out = Vec::new();
    let mut origins: HashMap<String, String> = HashMap::new();
    let mut add = |name: String, value: String, origin: String| -> Result<()> {
        if let Some(first) = origins.get(&name) {
            bail!("{name} is set twice ({first}, and {origin}); set each variable once");
        }
        origins.insert(name.clone(), origin);
        let value = if value.starts_with(SCHEME) {
            Source::Reference(value)
        } else {
            Source::Plain(value)
        };
        out.push(Definition { name, value });
        Ok(())
    };
    for file in &a.env_files {
        for (name, value, origin) in parse_env_file(file)? {
            add(name, value, origin)?;
        }
    }
    for e in &a.env {
        let (k, v) = e
            .split_once('=')
            .with_context(|| format!("--env {e:?}: expected NAME=clavitor://ENTRY/FIELD"))?;
        check_name(k, "--env")?;
        if !v.starts_with(SCHEME) {
            bail!("--env {k}: {v:?} is not a clavitor://ENTRY/FIELD reference");
        }
        add(k.to_owned(), v.to_owned(), format!("--env {k}"))?;
    }
    // Inherited variables holding a reference, unless set explicitly above.
    for (k, v) in std::env::vars_os() {
        let (Some(k), Some(v)) = (k.to_str(), v.to_str()) else {
            continue;
        };
        if v.starts_with(SCHEME) && !origins.contains_key(k) && k != "CLAVITOR_TOKEN" {
            origins.insert(k.to_owned(), "the environment".into());
            out.push(Definition {
                name: k.to_owned(),
                value: Source::Reference(v.to_owned()),
            });
        }
    }
    Ok(out)
}

/// The values of every reference (each fetched once), and the entry ids they live in.
/// Values by reference.
type Values = BTreeMap<String, Zeroizing<String>>;

fn resolve_all(client: &Client, defs: &[Definition]) -> Result<(Values, HashSet<String>)> {
    let mut resolver = Resolver::new(client);
    let mut values = BTreeMap::new();
    let mut entries = HashSet::new();
    for d in defs {
        if let Source::Reference(r) = &d.value
            && !values.contains_key(r)
        {
            let got = resolver
                .resolve(r)
                .with_context(|| format!("resolving {}", d.name))?;
            entries.insert(got.entry_id);
            values.insert(r.clone(), got.value);
        }
    }
    Ok((values, entries))
}

/// Our environment less the token in any form: `CLAVITOR_TOKEN`, and any variable holding the
/// token or the token file's path.
pub(super) fn scrubbed_env(token: &str, token_file: Option<&Path>) -> Vec<(OsString, OsString)> {
    let token_file = token_file.map(|p| {
        (
            p.as_os_str().to_owned(),
            std::fs::canonicalize(p)
                .map(PathBuf::into_os_string)
                .unwrap_or_default(),
        )
    });
    std::env::vars_os()
        .filter(|(k, v)| {
            k != "CLAVITOR_TOKEN"
                && v.as_bytes() != token.as_bytes()
                && !token_file
                    .as_ref()
                    .is_some_and(|(given, canonical)| v == given || v == canonical)
        })
        .collect()
}

/// The child's environment: ours, less the token in any form, plus the definitions.
fn child_env(
    defs: &[Definition],
    values: &Values,
    token: &str,
    token_file: Option<&Path>,
) -> Vec<(OsString, OsString)> {
    let mut env = scrubbed_env(token, token_file);
    for d in defs {
        let value = match &d.value {
            Source::Reference(r) => values.get(r).map(|v| v.to_string()).unwrap_or_default(),
            Source::Plain(p) => p.clone(),
        };
        env.retain(|(k, _)| k.as_bytes() != d.name.as_bytes());
        env.push((d.name.clone().into(), value.into()));
    }
    env
}

enum Event {
    Exited(std::io::Result<ExitStatus>),
    Changed(Values),
}

fn run_inner(a: RunArgs) -> Result<ExitCode> {
    let client = Client::from_opts(&a.opts)?;
    let defs = definitions(&a)?;
    let (mut values, watched) = resolve_all(&client, &defs)?;
    let token = client.token().expose().to_owned();
    let token = Zeroizing::new(token);
    // Every value ever given to the child stays masked.
    let mut known: Vec<Zeroizing<String>> = values.values().cloned().collect();

    let signals = block_signals();
    std::thread::spawn(move || forward_signals(signals));
    let (tx, rx) = mpsc::channel::<Event>();
    if a.watch {
        let tx = tx.clone();
        let opts = a.opts.clone();
        let refs: Vec<String> = values.keys().cloned().collect();
        let current = values.clone();
        std::thread::spawn(move || watch(&opts, refs, watched, current, &tx));
    }
    loop {
        let env = child_env(&defs, &values, &token, a.opts.token_file.as_deref());
        let masker = (!a.no_masking).then(|| Masker::new(known.iter().map(|v| v.as_bytes())));
        let mut child = spawn(&a.command, env, masker.is_some())?;
        CHILD.store(i32::try_from(child.id()).unwrap_or(0), Ordering::SeqCst);
        let pumps = match &masker {
            Some(m) => pump_output(&mut child, m),
            None => Vec::new(),
        };
        let pid = child.id();
        {
            let tx = tx.clone();
            std::thread::spawn(move || {
                let _ = tx.send(Event::Exited(child.wait()));
            });
        }
        let mut restart: Option<Values> = None;
        let status = match rx.recv().expect("the senders live as long as this loop") {
            Event::Exited(status) => status,
            Event::Changed(new) => {
                restart = Some(new);
                // Returns once the child exited (its event consumed); a newer change that
                // arrives meanwhile replaces `restart`.
                stop_child(pid, &rx, &mut restart);
                Ok(ExitStatus::default())
            }
        };
        CHILD.store(0, Ordering::SeqCst);
        for p in pumps {
            let _ = p.join();
        }
        match restart {
            Some(new) => {
                known.extend(new.values().cloned());
                values = new;
                eprintln!(
                    "clavitor run: a referenced value changed; restarted {:?}",
                    a.command[0]
                );
            }
            None => return Ok(exit_like(status.context("waiting for the command")?)),
        }
    }
}

/// SIGTERM, then SIGKILL after [`STOP_GRACE`]; returns once the child's exit event arrived.
fn stop_child(pid: u32, rx: &mpsc::Receiver<Event>, restart: &mut Option<Values>) {
    let pid = libc::pid_t::try_from(pid).unwrap_or(0);
    // SAFETY: kill(2) on the pid of our own child, which has not been reaped yet (its waiter
    // thread reports the reaping through `rx`, which we have not seen).
    unsafe { libc::kill(pid, libc::SIGTERM) };
    let deadline = std::time::Instant::now() + STOP_GRACE;
    let mut killed = false;
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match rx.recv_timeout(if killed {
            Duration::from_secs(3600)
        } else {
            left
        }) {
            Ok(Event::Exited(_)) => return,
            Ok(Event::Changed(new)) => *restart = Some(new),
            Err(mpsc::RecvTimeoutError::Timeout) => {
                // SAFETY: as above; the child has still not been reaped.
                unsafe { libc::kill(pid, libc::SIGKILL) };
                killed = true;
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => return,
        }
    }
}

fn spawn(command: &[String], env: Vec<(OsString, OsString)>, piped: bool) -> Result<Child> {
    use std::os::unix::process::CommandExt;
    let mut cmd = Command::new(&command[0]);
    cmd.args(&command[1..]).env_clear().envs(env);
    // SAFETY: between fork and exec only async-signal-safe calls: the child starts with no
    // signal blocked (ours are blocked for `forward_signals`, and a mask is inherited).
    unsafe {
        cmd.pre_exec(|| {
            let mut set: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            libc::pthread_sigmask(libc::SIG_SETMASK, &set, std::ptr::null_mut());
            Ok(())
        });
    }
    if piped {
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    }
    cmd.spawn()
        .with_context(|| format!("cannot run {:?}", command[0]))
}

/// Copies the child's stdout and stderr to ours, masked.
fn pump_output(child: &mut Child, masker: &Masker) -> Vec<std::thread::JoinHandle<()>> {
    let mut out = Vec::new();
    if let Some(s) = child.stdout.take() {
        let m = masker.clone();
        out.push(std::thread::spawn(move || {
            pump(s, std::io::stdout(), m);
        }));
    }
    if let Some(s) = child.stderr.take() {
        let m = masker.clone();
        out.push(std::thread::spawn(move || {
            pump(s, std::io::stderr(), m);
        }));
    }
    out
}

fn pump(mut from: impl Read, mut to: impl Write, masker: Masker) {
    let mut stream = StreamMasker::new(masker);
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        match from.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                let out = stream.push(&buf[..n]);
                if to.write_all(&out).and_then(|()| to.flush()).is_err() {
                    break;
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => break,
        }
    }
    let _ = to.write_all(&stream.finish());
    let _ = to.flush();
}

/// Blocks the forwarded signals in this thread (and so in the threads it starts; [`spawn`]
/// gives the child an empty mask), for [`forward_signals`] to take them with `sigwaitinfo`.
fn block_signals() -> libc::sigset_t {
    // SAFETY: plain libc calls on a local, initialised signal set.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for s in FORWARDED {
            libc::sigaddset(&mut set, *s);
        }
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        set
    }
}

/// Forwards signals sent to `run` to the child. A signal the kernel sent (the terminal's ^C,
/// a hang-up) went to the whole process group, the child included, so it is not sent twice.
fn forward_signals(set: libc::sigset_t) {
    loop {
        // SAFETY: `info` is written by sigwaitinfo before it is read.
        let (sig, code) = unsafe {
            let mut info: libc::siginfo_t = std::mem::zeroed();
            let sig = libc::sigwaitinfo(&set, &mut info);
            (sig, info.si_code)
        };
        if sig <= 0 {
            continue;
        }
        let pid = CHILD.load(Ordering::SeqCst);
        if code != libc::SI_KERNEL && pid > 0 {
            // SAFETY: kill(2) on our running child's pid.
            unsafe { libc::kill(pid, sig) };
        }
    }
}

/// Our exit, like the child's: its code, or death by the same signal.
fn exit_like(status: ExitStatus) -> ExitCode {
    use std::os::unix::process::ExitStatusExt;
    if let Some(code) = status.code() {
        return ExitCode::from(u8::try_from(code).unwrap_or(1));
    }
    let sig = status.signal().unwrap_or(libc::SIGTERM);
    let _ = std::io::stdout().flush();
    // SAFETY: restoring the default action and unblocking the signal, then raising it on
    // ourselves: the process ends as the child did.
    unsafe {
        libc::signal(sig, libc::SIG_DFL);
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, sig);
        libc::pthread_sigmask(libc::SIG_UNBLOCK, &set, std::ptr::null_mut());
        libc::raise(sig);
    }
    ExitCode::from(128u8.saturating_add(u8::try_from(sig).unwrap_or(0)))
}

/// `--watch`: waits on `GET /v1/changes` and sends the new values when one changed.
fn watch(
    opts: &ClientOpts,
    refs: Vec<String>,
    entries: HashSet<String>,
    mut current: Values,
    tx: &mpsc::Sender<Event>,
) {
    let Ok(client) = Client::from_opts(opts) else {
        return;
    };
    let mut since: Option<i64> = None;
    let mut warned = false;
    loop {
        let path = match since {
            None => "/v1/changes".to_owned(),
            Some(v) => format!("/v1/changes?since={v}&wait=25"),
        };
        let answer: Result<Value> = client.get(&path);
        let v = match answer {
            Ok(v) => {
                warned = false;
                v
            }
            Err(e) => {
                if !warned {
                    eprintln!("clavitor run --watch: {e:#}; retrying");
                    warned = true;
                }
                std::thread::sleep(Duration::from_secs(1));
                continue;
            }
        };
        let first = since.is_none();
        since = v["version"].as_i64();
        let touched = v["reset"] == true
            || v["entries"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|e| e.as_str().is_some_and(|id| entries.contains(id)));
        if first || !touched {
            continue;
        }
        let mut resolver = Resolver::new(&client);
        let mut fresh = BTreeMap::new();
        for r in &refs {
            match resolver.resolve(r) {
                Ok(got) => {
                    fresh.insert(r.clone(), got.value);
                }
                Err(e) => {
                    eprintln!("clavitor run --watch: {e:#}; the command keeps its values");
                    fresh.clear();
                    break;
                }
            }
        }
        if fresh.is_empty() || fresh == current {
            continue;
        }
        current = fresh.clone();
        if tx.send(Event::Changed(fresh)).is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_files_parse() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("e");
        std::fs::write(
            &f,
            "# c\n\nexport A=clavitor://x/y\nB = \"quoted value\"\nC='s'\nD=plain=x\n",
        )
        .unwrap();
        let got: Vec<(String, String)> = parse_env_file(&f)
            .unwrap()
            .into_iter()
            .map(|(n, v, _)| (n, v))
            .collect();
        assert_eq!(
            got,
            [
                ("A".into(), "clavitor://x/y".into()),
                ("B".into(), "quoted value".into()),
                ("C".into(), "s".into()),
                ("D".into(), "plain=x".into())
            ]
        );
        std::fs::write(&f, "NOEQUALS\n").unwrap();
        let e = parse_env_file(&f).unwrap_err().to_string();
        assert!(e.contains("line 1"), "{e}");
    }
}
