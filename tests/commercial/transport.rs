//! The shared transport in the Commercial edition: tarpit connections do not count against
//! `--max-connections`, TLS comes from replication.yaml only, and the idle timeout also closes
//! a connection that never starts its TLS handshake.

use crate::helpers::*;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

/// Opens a connection to the POP at `base` (https, its CA `ca`), asks for `path`, and
/// returns it once the response head has arrived (panics if it does not within `limit`).
fn first_answer(base: &str, ca: &Ca, path: &str, limit: Duration) -> (TlsStream, String) {
    let mut s = tls_stream(base, ca, limit);
    write!(s, "GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let mut buf = [0u8; 512];
    let n = s
        .read(&mut buf)
        .unwrap_or_else(|e| panic!("no answer to GET {path} within {limit:?}: {e}"));
    let head = String::from_utf8_lossy(&buf[..n]).into_owned();
    (s, head)
}

#[test]
fn tarpit_connections_do_not_count_against_max_connections() {
    let pop = Pop::new();
    pop.configure("backup", &Opts::default());
    let v = Vault::start(
        pop.serve_cmd()
            .args(["--tarpit-cap", "10", "--max-connections", "2"]),
        &pop.data,
    );
    // Twice the connection cap, all held by the tarpit at once.
    let held: Vec<TlsStream> = (0..4)
        .map(|i| {
            let (s, head) = first_answer(
                &v.url,
                &pop.ca,
                &format!("/wp-login-{i}.php"),
                Duration::from_secs(5),
            );
            assert!(head.starts_with("HTTP/1.1 404"), "{head}");
            s
        })
        .collect();
    // And the API is still served.
    let (_s, head) = first_answer(&v.url, &pop.ca, "/healthz", Duration::from_secs(5));
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    drop(held);
}

#[test]
fn tls_flags_are_refused_because_tls_comes_from_replication_yaml() {
    let pop = Pop::new();
    let ca = Ca::new("POP CA");
    let tls = pop.write_tls(&ca);
    pop.configure("backup", &Opts::with_tls(&tls));
    let res = Vault::spawn(
        pop.serve_cmd()
            .arg("--tls-cert")
            .arg(&tls.cert)
            .arg("--tls-key")
            .arg(&tls.key),
        &pop.data,
    );
    let f = match res {
        Ok(v) => panic!("serve started: {:?}", v.stdout_lines),
        Err(f) => f,
    };
    assert_eq!(f.status.and_then(|s| s.code()), Some(1), "{f:#?}");
    for needle in ["--tls-cert", "replication.yaml", "remove --tls-cert"] {
        assert!(
            f.stderr.contains(needle),
            "stderr lacks {needle:?}: {}",
            f.stderr
        );
    }
    assert!(!pop.data.exists(), "a refused start created the data dir");
}

#[test]
fn a_connection_that_never_starts_tls_is_closed_after_the_idle_timeout() {
    let pop = Pop::new();
    let ca = Ca::new("POP CA");
    let tls = pop.write_tls(&ca);
    pop.configure("backup", &Opts::with_tls(&tls));
    let v = Vault::start(
        pop.serve_cmd().args(["--idle-timeout-ms", "1500"]),
        &pop.data,
    );
    let addr = v.url.trim_start_matches("https://").to_owned();
    let mut s = TcpStream::connect(&addr).unwrap();
    let opened = Instant::now();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut buf = [0u8; 64];
    let r = s.read(&mut buf);
    assert!(
        matches!(r, Ok(0) | Err(_)) && opened.elapsed() < Duration::from_secs(9),
        "the silent connection was not closed: {r:?} after {:?}",
        opened.elapsed()
    );
    assert!(
        opened.elapsed() >= Duration::from_millis(700),
        "closed too early"
    );
}
