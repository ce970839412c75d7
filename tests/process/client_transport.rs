//! How the CLI reaches its server: https with a private CA (`--ca-file`) or the system's roots,
//! a server behind a path prefix, no token in clear text to another machine, no redirects
//! followed, and where the token comes from when none is given.

use crate::helpers::{Output, Scratch, chmod, command, init, run, serve, server_args};
use crate::proxy::{Proxy, TestCa};
use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::Path;
use std::time::{Duration, Instant};

/// `clavitor ARGS` with the token in the environment.
fn cli(token: &str, args: &[&str]) -> Output {
    run(command(args).env("CLAVITOR_TOKEN", token))
}

#[track_caller]
fn fails_saying(out: &Output, needles: &[&str]) {
    assert_eq!(out.code(), Some(1), "{out}");
    for n in needles {
        assert!(out.stderr.contains(n), "stderr lacks {n:?}: {out}");
    }
    assert!(out.stdout.is_empty(), "{out}");
    assert!(!out.stderr.contains("clv_"), "never echoes a token: {out}");
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p.to_str().unwrap().to_owned()
}

#[test]
fn https_with_a_private_ca_works_and_any_other_trust_is_refused_before_the_token_is_sent() {
    let tmp = Scratch::new();
    let token = init(&tmp.data());
    let server = serve(&tmp.data());
    let ca = TestCa::new("clavitor test CA");
    let proxy = Proxy::start(
        server.addr(),
        Some(ca.server_config(&["localhost", "127.0.0.1"])),
        "",
    );
    let url = proxy.base.clone();
    let ca_file = write(tmp.path(), "ca.pem", &ca.pem());

    let id = cli(
        &token,
        &[
            "entry",
            "add",
            "over-tls",
            "-f",
            "password=p4ss",
            "--server",
            &url,
            "--ca-file",
            &ca_file,
        ],
    )
    .ok()
    .stdout;
    assert_eq!(id.trim().len(), 36, "{id}");
    // By name too: the certificate names localhost.
    let by_name = url.replace("127.0.0.1", "localhost");
    let value = cli(
        &token,
        &[
            "read",
            "clavitor://over-tls/password",
            "--server",
            &by_name,
            "--ca-file",
            &ca_file,
        ],
    )
    .ok()
    .stdout;
    assert_eq!(value, "p4ss\n");
    let sent = proxy.targets().len();
    assert!(sent >= 2, "{:?}", proxy.targets());

    // A CA that did not sign the server's certificate; the system's roots (no --ca-file); a
    // certificate for other names. Each is refused in the handshake: no request arrives.
    let other_ca = write(tmp.path(), "other.pem", &TestCa::new("someone else").pem());
    let out = cli(
        &token,
        &["entry", "list", "--server", &url, "--ca-file", &other_ca],
    );
    fails_saying(&out, &["not signed by the CA in --ca-file", &other_ca]);
    let out = cli(&token, &["entry", "list", "--server", &url]);
    fails_saying(&out, &["--ca-file"]);
    let elsewhere = Proxy::start(
        server.addr(),
        Some(ca.server_config(&["vault.example.com"])),
        "",
    );
    let out = cli(
        &token,
        &[
            "entry",
            "list",
            "--server",
            &elsewhere.base,
            "--ca-file",
            &ca_file,
        ],
    );
    fails_saying(&out, &["not valid for the name \"127.0.0.1\""]);
    assert_eq!(proxy.targets().len(), sent, "{:?}", proxy.targets());
    assert!(elsewhere.targets().is_empty(), "{:?}", elsewhere.targets());

    // A CA file that is not one, and a CA file for a plain-http URL.
    let plain_url = format!("http://{}", server.addr());
    let junk = write(tmp.path(), "junk.pem", "not a certificate\n");
    fails_saying(
        &cli(
            &token,
            &["entry", "list", "--server", &url, "--ca-file", &junk],
        ),
        &["no certificate", &junk],
    );
    fails_saying(
        &cli(
            &token,
            &[
                "entry",
                "list",
                "--server",
                &plain_url,
                "--ca-file",
                &ca_file,
            ],
        ),
        &["--ca-file is for https://"],
    );
}

#[test]
fn a_server_behind_a_path_prefix_is_reached_below_the_prefix() {
    let tmp = Scratch::new();
    let token = init(&tmp.data());
    let server = serve(&tmp.data());
    let proxy = Proxy::start(server.addr(), None, "/team/vault");
    // With and without a trailing slash, as users write it.
    for (n, url) in [
        format!("{}/team/vault", proxy.base),
        format!("{}/team/vault/", proxy.base),
    ]
    .iter()
    .enumerate()
    {
        let title = format!("behind-proxy-{n}");
        let add = [
            "entry",
            "add",
            &title,
            "-f",
            "k:credential:ci=v",
            "--server",
            url,
        ];
        cli(&token, &add).ok();
        let list = cli(&token, &["entry", "list", "--server", url]).ok();
        assert!(list.stdout.contains(&title), "{list}");
        let reference = format!("clavitor://{title}/k");
        let read = cli(&token, &["read", &reference, "--server", url]).ok();
        assert_eq!(read.stdout, "v\n");
        let agent = format!("agent-{n}");
        cli(
            &token,
            &["agent", "add", &agent, "-s", "ci", "--server", url],
        )
        .ok();
        cli(&token, &["agent", "revoke", &agent, "--server", url]).ok();
        cli(&token, &["entry", "rm", &title, "--server", url]).ok();
    }
    let targets = proxy.targets();
    assert!(targets.len() >= 14, "{targets:?}");
    for t in &targets {
        assert!(t.starts_with("/team/vault/v1/"), "{t} (all: {targets:?})");
    }
}

#[test]
fn plain_http_to_a_non_loopback_address_is_refused_before_connecting() {
    // 0.0.0.0 is not a loopback address, yet on Linux a connection to it lands on this
    // machine's loopback: a listener on 127.0.0.1 sees any attempt, and nothing leaves the
    // machine even if the CLI did connect.
    let watch = TcpListener::bind("127.0.0.1:0").unwrap();
    watch.set_nonblocking(true).unwrap();
    let url = format!("http://0.0.0.0:{}", watch.local_addr().unwrap().port());
    let token = "clv_must_not_travel";

    let started = Instant::now();
    let out = cli(token, &["entry", "list", "--server", &url]);
    fails_saying(
        &out,
        &[
            "refusing to send the token over plain http",
            "--allow-insecure-http",
            "https://",
        ],
    );
    assert!(!out.stderr.contains(token), "{out}");
    assert!(started.elapsed() < Duration::from_secs(5), "{out}");
    assert!(
        watch.accept().is_err(),
        "the CLI connected although it refused"
    );
    // Every client command goes through the same check.
    for args in [
        &["read", "clavitor://x/y", "--server", &url][..],
        &["agent", "list", "--server", &url],
        &["run", "--server", &url, "--", "true"],
    ] {
        fails_saying(&cli(token, args), &["--allow-insecure-http"]);
    }
    assert!(watch.accept().is_err(), "a command connected");

    // With the flag, the user's choice stands: the request goes out, token and all.
    watch.set_nonblocking(false).unwrap();
    let server = std::thread::spawn(move || {
        let (mut s, _) = watch.accept().unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let head = read_head(&mut s);
        let body = r#"{"entries":[]}"#;
        write!(
            s,
            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        )
        .unwrap();
        head
    });
    cli(
        token,
        &["entry", "list", "--server", &url, "--allow-insecure-http"],
    )
    .ok();
    let head = server.join().unwrap();
    assert!(
        head.to_ascii_lowercase()
            .contains(&format!("authorization: bearer {token}")),
        "{head}"
    );
}

fn read_head(s: &mut std::net::TcpStream) -> String {
    let mut head = Vec::new();
    let mut b = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        match s.read(&mut b) {
            Ok(0) | Err(_) => break,
            Ok(n) => head.extend_from_slice(&b[..n]),
        }
    }
    String::from_utf8_lossy(&head).into_owned()
}

#[test]
fn a_redirect_is_reported_not_followed() {
    let elsewhere = TcpListener::bind("127.0.0.1:0").unwrap();
    elsewhere.set_nonblocking(true).unwrap();
    let target = format!(
        "http://127.0.0.1:{}/v1/entries",
        elsewhere.local_addr().unwrap().port()
    );
    let redirector = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", redirector.local_addr().unwrap());
    let location = target.clone();
    let t = std::thread::spawn(move || {
        let (mut s, _) = redirector.accept().unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        read_head(&mut s);
        write!(
            s,
            "HTTP/1.1 307 Temporary Redirect\r\nlocation: {location}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
        )
        .unwrap();
    });
    let out = cli("clv_stays_home", &["entry", "list", "--server", &url]);
    t.join().unwrap();
    fails_saying(&out, &["307", &target, "does not follow redirects"]);
    assert!(elsewhere.accept().is_err(), "the redirect was followed");
}

#[test]
fn without_a_token_the_cli_says_where_it_looked_and_finds_the_config_dir_file() {
    let tmp = Scratch::new();
    let token = init(&tmp.data());
    let server = serve(&tmp.data());
    let home = tmp.path().join("home");
    let xdg = tmp.path().join("xdg");
    let list = |env: &[(&str, &Path)]| {
        let mut c = command(&["entry", "list"]);
        c.args(server_args(&server.url))
            .env_remove("XDG_CONFIG_HOME")
            .env_remove("HOME");
        for (k, v) in env {
            c.env(k, v);
        }
        run(&mut c)
    };

    let out = list(&[("HOME", &home)]);
    let expected = home.join(".config/clavitor/token");
    fails_saying(
        &out,
        &[
            &expected.display().to_string(),
            "--token-file",
            "CLAVITOR_TOKEN",
        ],
    );
    let out = list(&[("HOME", &home), ("XDG_CONFIG_HOME", &xdg)]);
    let expected = xdg.join("clavitor/token");
    fails_saying(&out, &[&expected.display().to_string()]);
    fails_saying(&list(&[]), &["HOME"]);

    // Where `init` stores the owner token, private: found and used.
    std::fs::create_dir_all(expected.parent().unwrap()).unwrap();
    std::fs::write(&expected, format!("{token}\n")).unwrap();
    chmod(&expected, 0o600);
    let out = list(&[("HOME", &home), ("XDG_CONFIG_HOME", &xdg)]).ok();
    assert!(out.stdout.starts_with("ID"), "{out}");
    // Not private: refused, with the fix.
    chmod(&expected, 0o644);
    fails_saying(
        &list(&[("HOME", &home), ("XDG_CONFIG_HOME", &xdg)]),
        &["chmod 600"],
    );
    // Client commands no longer look in a data dir.
    let out = run(
        command(&["entry", "list", "--data-dir", tmp.data().to_str().unwrap()])
            .args(server_args(&server.url)),
    );
    assert_eq!(out.code(), Some(2), "{out}");
}
