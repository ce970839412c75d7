//! `serve --max-connections N` on the real binary: the cap holds, and a cap the open-files
//! limit cannot carry is refused with the fix. (Timeouts and slow clients: tests/api.)

use crate::common::raw::BlockingStream;
use crate::edition;
use crate::helpers::{Scratch, Vault, init, serve_cmd};
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::sync::mpsc;
use std::time::Duration;

/// A new connection as this edition's clients make one (plain TCP, or TLS with the
/// handshake done), its reads bounded by `timeout`.
fn connect(addr: SocketAddr, timeout: Duration) -> BlockingStream {
    BlockingStream::connect(addr, edition::raw_tls(), timeout).expect("connect")
}

fn healthz(s: &mut BlockingStream) -> std::io::Result<String> {
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")?;
    let mut buf = [0u8; 2048];
    let n = s.read(&mut buf)?;
    Ok(String::from_utf8_lossy(&buf[..n]).into_owned())
}

#[test]
fn max_connections_caps_open_connections() {
    let tmp = Scratch::new();
    init(&tmp.data());
    let v = Vault::start(
        serve_cmd(&tmp.data()).args(["--max-connections", "1"]),
        &tmp.data(),
    );
    let addr = v.addr();
    let mut first = connect(addr, Duration::from_secs(5));
    assert!(healthz(&mut first).unwrap().starts_with("HTTP/1.1 200"));

    // The second connects (the kernel queues it; over TLS its handshake waits too) but is
    // not served while the first is open.
    let (tx, second) = mpsc::channel();
    std::thread::spawn(move || {
        let mut s = connect(addr, Duration::from_secs(10));
        let _ = tx.send(healthz(&mut s));
    });
    let early = second.recv_timeout(Duration::from_secs(1));
    assert!(
        early.is_err(),
        "a second connection was served with --max-connections 1: {early:?}"
    );
    drop(first);
    let answer = second
        .recv_timeout(Duration::from_secs(5))
        .expect("served once the first closed")
        .expect("an answer");
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
}

#[test]
fn a_cap_beyond_the_open_files_limit_is_refused_with_the_fix() {
    let tmp = Scratch::new();
    let res = Vault::spawn(
        serve_cmd(&tmp.data()).args(["--max-connections", "1000000000"]),
        &tmp.data(),
    );
    let f = match res {
        Ok(v) => panic!("serve started: {:?}", v.stdout_lines),
        Err(f) => f,
    };
    assert_eq!(f.status.and_then(|s| s.code()), Some(1), "{f:#?}");
    for needle in ["--max-connections", "LimitNOFILE", "ulimit -n"] {
        assert!(
            f.stderr.contains(needle),
            "stderr lacks {needle:?}: {}",
            f.stderr
        );
    }
    assert!(!tmp.data().exists(), "a refused start created the data dir");
}
