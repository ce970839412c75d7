//! The tarpit: unknown paths and wrong methods are held ~30 s at one byte a second, at most
//! `cap` at once (past that a plain, instant 404 and one alert per burst), and SIGTERM still
//! ends the process at once.

use crate::helpers::*;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

/// A backup POP on plain HTTP, holding at most `cap` scanner connections.
fn start(cap: usize) -> (Pop, Vault) {
    let pop = Pop::new();
    pop.configure("backup", &Opts::default());
    let v = Vault::start(
        pop.serve_cmd().args(["--tarpit-cap", &cap.to_string()]),
        &pop.data,
    );
    (pop, v)
}

fn connect(url: &str, request_line: &str) -> TcpStream {
    let addr = url.trim_start_matches("http://");
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    write!(s, "{request_line} HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    s
}

/// Reads for `window`, returning (status line, body bytes seen, whether the peer closed).
fn watch(s: &mut TcpStream, window: Duration) -> (String, usize, bool) {
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
    let (_pop, v) = start(10);
    let mut conns = [
        connect(&v.url, "GET /wp-login.php"),
        connect(&v.url, "GET /.env"),
        connect(&v.url, "PATCH /healthz"),
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
    let (_pop, v) = start(2);
    let _held = [connect(&v.url, "GET /a"), connect(&v.url, "GET /b")];
    std::thread::sleep(Duration::from_millis(300));
    for path in ["/c", "/d", "/e"] {
        let started = Instant::now();
        let mut s = connect(&v.url, &format!("GET {path}"));
        s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
        let mut head = [0u8; 256];
        let n = s.read(&mut head).expect("an answer");
        let text = String::from_utf8_lossy(&head[..n]);
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
    let (_pop, mut v) = start(100);
    let _held: Vec<TcpStream> = (0..20)
        .map(|i| connect(&v.url, &format!("GET /scan/{i}")))
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
    let _ = health(&plain(), &v.url).await;
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
