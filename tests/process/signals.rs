//! SIGTERM and SIGINT: graceful shutdown, exit 0 within 1 s, nothing acknowledged is lost.

use crate::helpers::{Load, Scratch, Vault, runtime, serve, verify_all, verify_listing};
use nix::sys::signal::Signal;
use std::time::Duration;

/// The contract: exit 0 within 1 s of SIGTERM/SIGINT.
const EXIT_WITHIN: Duration = Duration::from_secs(1);

/// Sends `sig`; asserts exit 0 within [`EXIT_WITHIN`] and no panic on the way out.
#[track_caller]
fn stop_with(server: &mut Vault, sig: Signal) -> Duration {
    let took = server.exit_on(sig, EXIT_WITHIN);
    assert!(!server.stderr().contains("panicked"), "{}", server.stderr());
    took
}

#[test]
fn sigterm_on_an_idle_server_exits_0_quickly_and_the_vault_reopens() {
    let tmp = Scratch::new();
    let mut server = serve(&tmp.data());
    let rt = runtime();
    let api = server.api();
    let w = rt
        .block_on(api.create("before-term"))
        .unwrap()
        .expect("201");
    stop_with(&mut server, Signal::SIGTERM);

    let server = serve(&tmp.data());
    verify_all(&rt, &server.api(), &[w], 1);
}

#[test]
fn sigint_exits_0_quickly() {
    let tmp = Scratch::new();
    let mut server = serve(&tmp.data());
    stop_with(&mut server, Signal::SIGINT);
    serve(&tmp.data());
}

#[test]
fn sigterm_under_write_load_exits_0_and_keeps_every_acknowledged_write() {
    let tmp = Scratch::new();
    let mut server = serve(&tmp.data());
    let rt = runtime();
    let load = Load::start(&rt, &server.api(), 16, "term", 5_000);
    load.wait_for(50, Duration::from_secs(10));
    std::thread::sleep(Duration::from_millis(100));
    stop_with(&mut server, Signal::SIGTERM);
    let acked = load.finish(&rt);
    assert!(acked.len() >= 50, "{}", acked.len());

    let server = serve(&tmp.data());
    let api = server.api();
    let listed = verify_listing(&rt, &api, &acked);
    // Nothing beyond what was sent can appear; at most the 16 in flight were unanswered.
    assert!(
        listed >= acked.len() && listed <= acked.len() + 16,
        "listed {listed}, acked {}",
        acked.len()
    );
    verify_all(&rt, &api, &acked, 16);
}
