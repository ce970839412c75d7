//! The tarpit: unknown paths and wrong methods are held ~30 s at one byte a second, at most
//! `cap` at once (past that a plain, instant 404 and one alert per burst), and SIGTERM still
//! ends the process at once.

use crate::helpers::*;
use std::io::{Read, Write};
use std::time::{Duration, Instant};

/// A backup POP holding at most `cap` scanner connections.
fn start(cap: usize) -> (Pop, Vault) {
    let pop = Pop::new();
    pop.configure("backup", &Opts::default());
    let v = Vault::start(
        pop.serve_cmd().args(["--tarpit-cap", &cap.to_string()]),
        &pop.data,
    );
    (pop, v)
}

/// A TLS connection to `pop`'s server `v` that has sent `request_line`; reads time out
/// after `read_timeout`.
fn connect_with(pop: &Pop, v: &Vault, request_line: &str, read_timeout: Duration) -> TlsStream {
    let mut s = tls_stream(&v.url, &pop.ca, read_timeout);
    write!(s, "{request_line} HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    s.flush().unwrap();
    s
}

fn connect(pop: &Pop, v: &Vault, request_line: &str) -> TlsStream {
    connect_with(pop, v, request_line, Duration::from_millis(200))
}

/// Reads for `window`, returning (status line, body bytes seen, whether the peer closed).
fn watch(s: &mut TlsStream, window: Duration) -> (String, usize, bool) {
    let end = Instant::now() + window;
    let mut raw = Vec::new();
    let mut buf = [0u8; 1024];
    let mut closed = false;
    while Instant::now() < end {
        match s.read(&mut buf) {
            Ok(0) => {
                closed = true;
                break;
            }
            Ok(n) => raw.extend_from_slice(&buf[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => {
                closed = true;
                break;
            }
        }
    }
    let text = String::from_utf8_lossy(&raw).to_string();
    let status = text.lines().next().unwrap_or_default().to_owned();
    // Chunked body: each dripped byte arrives as "1\r\n \r\n"; count the chunks.
    let body = text.split("\r\n\r\n").nth(1).unwrap_or_default();
    let drips = body.matches("1\r\n \r\n").count();
    (status, drips, closed)
}

#[test]
fn unknown_paths_and_wrong_methods_drip_about_one_byte_a_second() {
    let (pop, v) = start(10);
    let mut conns = [
        connect(&pop, &v, "GET /wp-login.php"),
        connect(&pop, &v, "GET /.env"),
        connect(&pop, &v, "PATCH /healthz"),
    ];
    let results: Vec<_> = conns
        .iter_mut()
        .map(|c| watch(c, Duration::from_millis(3500)))
        .collect();
    // Read in turn, so later connections were watched later; all are held at once anyway.
    for (status, drips, closed) in results {
        assert!(status.starts_with("HTTP/1.1 404"), "{status}");
        assert!(!closed, "a tarpitted connection must stay open");
        assert!(
            (1..=12).contains(&drips),
            "expected about one byte a second, got {drips}"
        );
    }
}

#[test]
fn past_the_cap_a_plain_404_at_once_and_one_alert_per_burst() {
    let (pop, v) = start(2);
    let _held = [connect(&pop, &v, "GET /a"), connect(&pop, &v, "GET /b")];
    std::thread::sleep(Duration::from_millis(300));
    for path in ["/c", "/d", "/e"] {
        let started = Instant::now();
        let mut s = connect_with(&pop, &v, &format!("GET {path}"), Duration::from_secs(3));
        // TLS may deliver the head and the body in separate records.
        let mut raw = Vec::new();
        let mut chunk = [0u8; 256];
        while !String::from_utf8_lossy(&raw).contains("404 page not found") {
            match s.read(&mut chunk) {
                Ok(0) | Err(_) => break,
                Ok(n) => raw.extend_from_slice(&chunk[..n]),
            }
        }
        let text = String::from_utf8_lossy(&raw);
        assert!(text.starts_with("HTTP/1.1 404"), "{text}");
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "over the cap the 404 must be instant"
        );
        assert!(
            text.contains("404 page not found"),
            "plain 404 body expected: {text}"
        );
    }
    v.wait_stderr("tarpit_saturated", Duration::from_secs(3));
    assert_eq!(
        v.stderr().matches("alert=\"tarpit_saturated\"").count(),
        1,
        "{}",
        v.stderr()
    );
}

#[test]
fn sigterm_with_held_connections_exits_zero_within_a_second() {
    let (pop, mut v) = start(100);
    let _held: Vec<TlsStream> = (0..20)
        .map(|i| connect(&pop, &v, &format!("GET /scan/{i}")))
        .collect();
    std::thread::sleep(Duration::from_millis(1500));
    v.stop(Duration::from_secs(1));
}

#[tokio::test(flavor = "multi_thread")]
async fn telemetry_reports_metrics_periodically() {
    let (cp, files, pop) = pop_with_control_plane(CpMode::Ok);
    let mut yaml = config_yaml(&pop, "backup", &Opts::with_control_plane(&files));
    yaml.push_str("  telemetry_interval: 1\n");
    pop.write_config(&yaml);
    let v = pop.start();
    let _ = health(&pop.client(), &v.url).await;
    let reports = cp
        .wait_for("/v1/telemetry", 2, Duration::from_secs(8), |_| true)
        .await;
    let last = &reports[reports.len() - 1].body;
    for key in [
        "pop_id",
        "role",
        "version",
        "uptime_seconds",
        "entries",
        "requests",
        "replication_backlog",
        "replication",
        "tarpit_held",
    ] {
        assert!(last.get(key).is_some(), "telemetry lacks {key}: {last}");
    }
    assert_eq!(last["pop_id"], "zurich-01");
    assert!(last["requests"]["2xx"].as_u64().unwrap_or(0) >= 1, "{last}");
    assert_eq!(
        reports[0].authorization.as_deref(),
        Some(format!("Bearer {}", files.token).as_str())
    );
}
