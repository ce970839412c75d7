//! `clavitor run` and `clavitor inject`, as a user runs them: the real binary against a real
//! server, real child processes, real signals.

use crate::helpers::{Output, Scratch, Vault, chmod, command_for, mode, run, serve, server_args};
use clavitor::mask::{MARKER, forms};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::{Value, json};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// A server with an owner, plus a way to run the CLI against it.
struct Setup {
    tmp: Scratch,
    vault: Vault,
}

impl Setup {
    fn new() -> Self {
        let tmp = Scratch::new();
        let vault = serve(&tmp.data());
        Self { tmp, vault }
    }

    /// `clavitor ARGS --server URL` (before a `--`) with the owner's config home.
    fn cmd(&self, args: &[&str]) -> Command {
        let mut cmd = command_for(&self.tmp.data(), &[]);
        let split = args.iter().position(|a| *a == "--").unwrap_or(args.len());
        cmd.args(&args[..split])
            .args(server_args(&self.vault.url))
            .args(&args[split..]);
        cmd
    }

    fn cli(&self, args: &[&str]) -> Output {
        run(&mut self.cmd(args))
    }

    /// POST /v1/entries as the owner; returns the id.
    fn entry(&self, body: Value) -> String {
        // `entry add` has no policy flags: the API sets the fields' policies.
        let body = body.to_string();
        let rt = crate::helpers::runtime();
        rt.block_on(async {
            let res = reqwest_client()
                .post(format!("{}/v1/entries", self.vault.url))
                .bearer_auth(&self.vault.token)
                .header("content-type", "application/json")
                .body(body)
                .send()
                .await
                .unwrap();
            let v: Value = res.json().await.unwrap();
            v["id"].as_str().unwrap_or_else(|| panic!("{v}")).to_owned()
        })
    }

    /// An agent holding `scopes`; its token in a private file.
    fn agent(&self, name: &str, scopes: &[&str]) -> PathBuf {
        let mut args = vec!["agent", "add", name, "--json"];
        for s in scopes {
            args.extend(["--scope", s]);
        }
        let out = self.cli(&args).ok().json();
        let file = self.tmp.path().join(format!("{name}.token"));
        std::fs::write(&file, out["token"].as_str().unwrap()).unwrap();
        chmod(&file, 0o600);
        file
    }
}

fn reqwest_client() -> reqwest::Client {
    crate::edition::reaching(reqwest::Client::builder().timeout(Duration::from_secs(10)))
        .build()
        .unwrap()
}

fn assert_masked(text: &str, secret: &str) {
    for f in forms(secret.as_bytes()) {
        let f = String::from_utf8_lossy(&f).into_owned();
        assert!(!text.contains(&f), "{f:?} leaked:\n{text}");
    }
}

#[test]
fn run_masks_every_form_of_a_value_even_split_across_writes() {
    let s = Setup::new();
    let secret = "sk-live/51Hq9 \"abc\" 8f3e";
    s.entry(json!({"title": "api", "fields": [
        {"name": "key", "value": secret, "tier": "credential", "scope": "deploy"}]}));
    let script = r#"
        printf 'raw=%s\n' "$K"
        printf '%s' "$K" | base64 | tr -d '\n'; echo
        printf 'xx%s' "$K" | base64 | tr -d '\n'; echo
        printf '%s' "$K" | od -An -tx1 | tr -d ' \n'; echo
        printf '%s' "$K" | sed 's/"/\\"/g'; echo
        printf 'split=%s' "$(printf '%s' "$K" | cut -c1-6)"; sleep 0.3
        printf '%s\n' "$(printf '%s' "$K" | cut -c7-)"
        printf 'err=%s\n' "$K" >&2
    "#;
    let out = s.cli(&[
        "run",
        "--env",
        "K=clavitor://api/key",
        "--",
        "sh",
        "-c",
        script,
    ]);
    assert_eq!(out.code(), Some(0), "{out}");
    assert_masked(&out.stdout, secret);
    assert_masked(&out.stderr, secret);
    assert_eq!(out.stdout.matches(MARKER).count(), 6, "{out}");
    assert!(out.stderr.contains(&format!("err={MARKER}")), "{out}");

    let out = s.cli(&[
        "run",
        "--no-masking",
        "--env",
        "K=clavitor://api/key",
        "--",
        "sh",
        "-c",
        "printf '%s' \"$K\"",
    ]);
    assert_eq!(out.stdout, secret, "{out}");
}

#[test]
fn the_child_never_sees_the_token_or_the_token_file() {
    let s = Setup::new();
    s.entry(json!({"title": "api", "fields": [
        {"name": "key", "value": "v-12345678", "tier": "credential", "scope": "deploy"}]}));
    let file = s.agent("bot", &["deploy"]);
    let token = std::fs::read_to_string(&file).unwrap();
    let path = file.display().to_string();

    let mut by_file = s.cmd(&[
        "run",
        "--token-file",
        &path,
        "--env",
        "K=clavitor://api/key",
        "--",
        "env",
    ]);
    by_file.env("MY_TOKEN_FILE", &path).env("COPY", &token);
    let mut by_env = s.cmd(&["run", "--env", "K=clavitor://api/key", "--", "env"]);
    by_env.env("CLAVITOR_TOKEN", &token);
    for mut cmd in [by_file, by_env] {
        let out = run(&mut cmd);
        assert_eq!(out.code(), Some(0), "{out}");
        assert!(out.stdout.contains(&format!("K={MARKER}")), "{out}");
        assert!(!out.stdout.contains("CLAVITOR_TOKEN"), "{out}");
        assert!(!out.stdout.contains(token.trim()), "{out}");
        assert!(!out.stdout.contains(&path), "{out}");
    }
}

#[test]
fn references_fail_clearly_and_names_are_set_once() {
    let s = Setup::new();
    s.entry(json!({"title": "api", "fields": [
        {"name": "key", "value": "v-12345678", "tier": "credential", "scope": "deploy"},
        {"name": "ops", "value": "o-12345678", "tier": "credential", "scope": "ops"},
        {"name": "sealed", "value": "u-12345678", "tier": "credential", "scope": "deploy",
         "agent_access": "use", "allowed_hosts": ["api.example.com"]}]}));
    let file = s.agent("bot", &["deploy"]);
    let f = file.display().to_string();
    for reference in [
        "clavitor://api/ops",
        "clavitor://api/missing",
        "clavitor://nope/key",
    ] {
        let out = s.cli(&[
            "run",
            "--token-file",
            &f,
            "--env",
            &format!("X={reference}"),
            "--",
            "true",
        ]);
        assert_eq!(out.code(), Some(1), "{out}");
        assert!(
            out.stderr.contains(&format!(
                "{reference}: not found, or not in this token's scopes"
            )),
            "{out}"
        );
    }
    let out = s.cli(&[
        "run",
        "--token-file",
        &f,
        "--env",
        "X=clavitor://api/sealed",
        "--",
        "true",
    ]);
    assert_eq!(out.code(), Some(1), "{out}");
    assert!(out.stderr.contains("use-only"), "{out}");
    assert!(!out.stderr.contains("u-12345678"), "{out}");

    let env_file = s.tmp.path().join("app.env");
    std::fs::write(
        &env_file,
        "# app\nexport A=clavitor://api/key\nPLAIN=\"hello world\"\n",
    )
    .unwrap();
    let e = env_file.display().to_string();
    let out = s.cli(&[
        "run",
        "--env-file",
        &e,
        "--",
        "sh",
        "-c",
        "test \"$PLAIN\" = 'hello world' && test ${#A} = 10",
    ]);
    assert_eq!(out.code(), Some(0), "{out}");
    for args in [
        vec![
            "--env",
            "A=clavitor://api/key",
            "--env",
            "A=clavitor://api/ops",
        ],
        vec!["--env-file", &e, "--env", "A=clavitor://api/key"],
    ] {
        let mut all = vec!["run"];
        all.extend(args);
        all.extend(["--", "true"]);
        let out = s.cli(&all);
        assert_eq!(out.code(), Some(1), "{out}");
        assert!(out.stderr.contains("A is set twice"), "{out}");
    }
}

/// Spawns `run` with piped output; lines of stdout come through the receiver.
fn spawn_lines(mut cmd: Command) -> (std::process::Child, mpsc::Receiver<String>) {
    cmd.stdout(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    let (tx, rx) = mpsc::channel();
    let out = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    (child, rx)
}

fn wait_line(rx: &mpsc::Receiver<String>, want: &str, within: Duration) -> Vec<String> {
    let deadline = Instant::now() + within;
    let mut seen = Vec::new();
    while let Ok(l) = rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
        let done = l == want;
        seen.push(l);
        if done {
            return seen;
        }
    }
    panic!("no line {want:?} within {within:?}; saw {seen:?}");
}

fn wait_exit(child: &mut std::process::Child, within: Duration) -> std::process::ExitStatus {
    let deadline = Instant::now() + within;
    loop {
        if let Some(st) = child.try_wait().unwrap() {
            return st;
        }
        assert!(Instant::now() < deadline, "run did not exit");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn exit_codes_and_signals_pass_through() {
    use std::os::unix::process::ExitStatusExt;
    let s = Setup::new();
    let out = s.cli(&["run", "--", "sh", "-c", "exit 3"]);
    assert_eq!(out.code(), Some(3), "{out}");
    let out = s.cli(&["run", "--", "sh", "-c", "kill -TERM $$"]);
    assert_eq!(
        out.status.signal(),
        Some(15),
        "dies of the child's signal: {out}"
    );

    // A signal sent to `run` reaches the child, whose exit is run's.
    let (mut child, rx) = spawn_lines(s.cmd(&[
        "run",
        "--",
        "sh",
        "-c",
        "trap 'echo got-term; exit 9' TERM; echo ready; while :; do sleep 0.1; done",
    ]));
    wait_line(&rx, "ready", Duration::from_secs(10));
    kill(Pid::from_raw(child.id() as i32), Signal::SIGTERM).unwrap();
    wait_line(&rx, "got-term", Duration::from_secs(10));
    assert_eq!(
        wait_exit(&mut child, Duration::from_secs(10)).code(),
        Some(9)
    );
}

#[test]
fn watch_restarts_the_child_when_a_value_changes() {
    let s = Setup::new();
    let id = s.entry(json!({"title": "api", "fields": [
        {"name": "key", "value": "first-1234", "tier": "credential", "scope": "deploy"}]}));
    let (mut child, rx) = spawn_lines(s.cmd(&[
        "run",
        "--watch",
        "--env",
        "K=clavitor://api/key",
        "--",
        "sh",
        "-c",
        "echo \"len=${#K} $K\"; while :; do sleep 0.1; done",
    ]));
    wait_line(&rx, &format!("len=10 {MARKER}"), Duration::from_secs(10));
    // Another entry changing does not restart it.
    s.entry(json!({"title": "other", "fields": [{"name": "x", "value": "y-123456"}]}));
    let rt = crate::helpers::runtime();
    let changed = Instant::now();
    rt.block_on(async {
        let res = reqwest_client()
            .put(format!("{}/v1/entries/{id}", s.vault.url))
            .bearer_auth(&s.vault.token)
            .json(&json!({"title": "api", "fields": [
                {"name": "key", "value": "second-12345", "tier": "credential", "scope": "deploy"}]}))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200);
    });
    let seen = wait_line(&rx, &format!("len=12 {MARKER}"), Duration::from_secs(10));
    assert!(
        changed.elapsed() < Duration::from_secs(5),
        "restarted promptly"
    );
    assert!(
        !seen.iter().any(|l| l.starts_with("len=10")),
        "one restart only: {seen:?}"
    );
    kill(Pid::from_raw(child.id() as i32), Signal::SIGTERM).unwrap();
    wait_exit(&mut child, Duration::from_secs(15));
}

#[test]
fn inject_fills_a_template_into_a_private_file_or_writes_nothing() {
    let s = Setup::new();
    s.entry(json!({"title": "db", "fields": [
        {"name": "password", "value": "p@ss word", "tier": "credential", "scope": "deploy"},
        {"name": "user", "value": "app"}]}));
    let template = s.tmp.path().join("app.conf.tpl");
    std::fs::write(
        &template,
        "user={{ clavitor://db/user }}\npassword={{clavitor://db/password}}\nkeep={{ not a ref }}\n",
    )
    .unwrap();
    let out_file = s.tmp.path().join("app.conf");
    let (t, o) = (
        template.display().to_string(),
        out_file.display().to_string(),
    );
    let out = s.cli(&["inject", "-i", &t, "-o", &o]);
    assert_eq!(out.code(), Some(0), "{out}");
    assert_eq!(
        std::fs::read_to_string(&out_file).unwrap(),
        "user=app\npassword=p@ss word\nkeep={{ not a ref }}\n"
    );
    assert_eq!(mode(&out_file), 0o600);

    // An unknown reference: exit 1, naming it, and the file is left as it was.
    std::fs::write(
        &template,
        "a={{ clavitor://db/user }}\nb={{ clavitor://db/nope }}\n",
    )
    .unwrap();
    let before = std::fs::read(&out_file).unwrap();
    let out = s.cli(&["inject", "-i", &t, "-o", &o]);
    assert_eq!(out.code(), Some(1), "{out}");
    assert!(
        out.stderr
            .contains("clavitor://db/nope: not found, or not in this token's scopes"),
        "{out}"
    );
    assert_eq!(std::fs::read(&out_file).unwrap(), before);
    let fresh = s.tmp.path().join("never.conf");
    let out = s.cli(&["inject", "-i", &t, "-o", &fresh.display().to_string()]);
    assert_eq!(out.code(), Some(1), "{out}");
    assert!(!fresh.exists());
    assert!(no_temp_files(s.tmp.path()));
}

fn no_temp_files(dir: &Path) -> bool {
    std::fs::read_dir(dir)
        .unwrap()
        .all(|e| !e.unwrap().file_name().to_string_lossy().contains(".tmp-"))
}
