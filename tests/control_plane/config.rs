//! `control-plane.yaml`: every problem named with the file, the key and the fix; the lease rule;
//! HTTPS only; the start-up lines.

use crate::common::files::chmod;
use crate::helpers::*;

/// Runs `clavitor control-plane` on `d`'s config and expects it to refuse; returns stderr.
#[track_caller]
fn refused(d: &CpDir) -> String {
    let out = crate::common::process::run(&mut d.command());
    assert_eq!(out.code(), Some(1), "{out}");
    assert!(
        out.stdout.starts_with("Starting Clavitor Control Plane v"),
        "{out}"
    );
    assert!(!out.stdout.contains("listening on"), "{out}");
    out.stderr
}

#[test]
fn every_problem_is_named_with_the_file_the_key_and_the_fix() {
    let d = CpDir::new(&["calgary-01", "zurich-01"], "");
    chmod(&d.pops[1].token_file, 0o644);
    let mut y = d.yaml("failover:\n  mode: sometimes\n  missed_heartbeats: 0\n");
    y = y.replace(&format!("data_dir: {}\n", q(&d.data)), "");
    d.write_config(&y);
    let err = refused(&d);
    let file = d.config.display().to_string();
    assert!(
        err.contains(&format!("{file}: invalid control-plane config")),
        "{err}"
    );
    for needle in [
        "data_dir: missing. Fix:",
        "pops[1].token_file:",
        &format!("chmod 600 {}", d.pops[1].token_file.display()),
        "failover.mode: \"sometimes\" is not a failover mode. Fix: set mode: \"manual\"",
        "failover.missed_heartbeats: 0 is out of range. Fix: use a count from 1 to 100",
    ] {
        assert!(err.contains(needle), "missing {needle:?} in:\n{err}");
    }
    for p in &d.pops {
        assert!(!err.contains(&p.token), "a token in the error");
    }
}

#[test]
fn unknown_keys_are_refused_naming_the_allowed_ones() {
    let d = CpDir::new(&["calgary-01"], MANUAL);
    d.write_config(&format!("{}colour: blue\n", d.yaml(MANUAL)));
    let err = refused(&d);
    assert!(err.contains(&d.config.display().to_string()), "{err}");
    assert!(err.contains("colour"), "{err}");
    assert!(err.contains("listen, data_dir, tls_cert"), "{err}");
    d.write_config(&d.yaml("failover:\n  mode: manual\n  lease: 3\n"));
    let err = refused(&d);
    assert!(err.contains("lease"), "{err}");
}

/// As for replication.yaml: the parser's message, then the offending line and a caret under
/// the column, each on its own line.
#[test]
fn a_yaml_syntax_error_shows_the_line_and_a_caret() {
    let d = CpDir::new(&["calgary-01"], MANUAL);
    d.write_config("listen: \"127.0.0.1:0\"\npops: [calgary\n");
    let err = refused(&d);
    assert!(err.contains(&d.config.display().to_string()), "{err}");
    assert!(err.contains("line 2, column 7"), "{err}");
    let lines: Vec<&str> = err.lines().collect();
    let at = lines
        .iter()
        .position(|l| l.ends_with("2 | pops: [calgary"))
        .unwrap_or_else(|| panic!("the offending line is not on a line of its own:\n{err}"));
    let caret = lines.get(at + 1).copied().unwrap_or_default();
    assert_eq!(
        caret.find('^'),
        lines[at].find('['),
        "the caret is not under the bracket:\n{err}"
    );
}

#[test]
fn a_lease_not_shorter_than_the_failover_wait_is_refused() {
    let d = CpDir::new(&["calgary-01"], "");
    d.write_config(&d.yaml(
        "failover:\n  mode: automatic\n  heartbeat_interval_ms: 1000\n  missed_heartbeats: 3\n  lease_seconds: 3\n",
    ));
    let err = refused(&d);
    assert!(
        err.contains("failover.lease_seconds: 3 s is not shorter than the time failover waits for a silent primary (missed_heartbeats 3 x heartbeat_interval_ms 1000 = 3000 ms). Fix: lower lease_seconds below 3 s"),
        "{err}"
    );
}

#[test]
fn automatic_failover_needs_a_lease_and_manual_mode_may_go_without() {
    let d = CpDir::new(&["calgary-01"], "");
    d.write_config(&d.yaml("failover:\n  mode: automatic\n  lease_seconds: 0\n"));
    let err = refused(&d);
    assert!(
        err.contains("failover.lease_seconds: is 0 (no lease) with mode: automatic"),
        "{err}"
    );
    d.write_config(&d.yaml("failover:\n  mode: manual\n  lease_seconds: 0\n"));
    let mut cp = d.start();
    cp.process.stop(std::time::Duration::from_secs(1));
}

#[test]
fn two_pops_with_one_token_or_a_pop_with_the_admin_token_are_refused() {
    let d = CpDir::new(&["calgary-01", "zurich-01"], MANUAL);
    std::fs::copy(&d.pops[0].token_file, &d.pops[1].token_file).unwrap();
    let err = refused(&d);
    assert!(
        err.contains("pops[1].token_file: POP \"zurich-01\" has the same token as another POP"),
        "{err}"
    );
    std::fs::copy(&d.admin_file, &d.pops[1].token_file).unwrap();
    let err = refused(&d);
    assert!(
        err.contains("pops[1].token_file: POP \"zurich-01\" has the admin token"),
        "{err}"
    );
}

#[test]
fn a_private_key_readable_by_others_is_refused() {
    let d = CpDir::new(&["calgary-01"], MANUAL);
    chmod(&d.tls.key, 0o640);
    let err = refused(&d);
    assert!(err.contains("tls_key:"), "{err}");
    assert!(
        err.contains(&format!("chmod 600 {}", d.tls.key.display())),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn it_prints_its_start_up_lines_and_speaks_only_https() {
    let d = CpDir::new(&["calgary-01"], MANUAL);
    let cp = d.start();
    assert_eq!(
        cp.process.stdout_lines,
        [
            format!("Starting Clavitor Control Plane v{VERSION}"),
            cp.url.replace("https://", "listening on https://"),
        ]
    );
    assert!(cp.url.starts_with("https://127.0.0.1:"), "{}", cp.url);
    let plain = crate::common::pki::plain();
    let http = cp.url.replace("https://", "http://");
    let res = plain.get(format!("{http}/healthz")).send().await;
    assert!(
        res.is_err() || !res.unwrap().status().is_success(),
        "plain http was served"
    );
    let ok = cp.http.get(cp.url("/healthz")).send().await.unwrap();
    assert_eq!(ok.status(), 200);
}
