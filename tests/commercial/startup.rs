//! What a commercial POP prints when it starts, and what /healthz and --version say.

use crate::helpers::*;

/// Asserts exactly three start-up lines: the edition banner, `role_line`, and `listening on`
/// a `scheme`://127.0.0.1 URL.
#[track_caller]
fn assert_startup_lines(v: &Vault, role_line: &str, scheme: &str) {
    assert_eq!(
        v.stdout_lines,
        [
            format!("Starting Clavitor Vault v{VERSION} - Commercial Edition"),
            role_line.to_owned(),
            format!("listening on {}", v.url),
        ]
    );
    assert!(
        v.url.starts_with(&format!("{scheme}://127.0.0.1:")),
        "{:?}",
        v.stdout_lines
    );
}

/// Asserts /healthz (through `c`) says ok, commercial, `role`.
async fn assert_health(c: &reqwest::Client, v: &Vault, role: &str) {
    let h = health(c, &v.url).await;
    assert_eq!(
        (&h["status"], &h["edition"], &h["role"]),
        (&"ok".into(), &"commercial".into(), &role.into()),
        "{h}"
    );
}

const PRIMARY_LINE: &str = "Commercial edition: primary POP, replicating to zurich-01";

#[tokio::test(flavor = "multi_thread")]
async fn primary_startup_lines_and_health() {
    let pop = Pop::new();
    pop.configure("primary", &Opts::default());
    let v = pop.start();
    assert_startup_lines(&v, PRIMARY_LINE, "http");
    assert_health(&plain(), &v, "primary").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn backup_startup_lines_and_health() {
    let pop = Pop::new();
    pop.configure("backup", &Opts::default());
    let v = pop.start();
    assert_startup_lines(
        &v,
        "Commercial edition: backup POP, accepting replication from primary",
        "http",
    );
    assert_health(&plain(), &v, "backup").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn mtls_config_serves_https() {
    let pop = Pop::new();
    let ca = Ca::new("POP CA");
    let tls = pop.write_tls(&ca);
    pop.configure("primary", &Opts::with_tls(&tls));
    let v = pop.start();
    assert_startup_lines(&v, PRIMARY_LINE, "https");
    // A client that trusts the POP CA reaches it without a client certificate.
    assert_health(&client(&ca, None), &v, "primary").await;
    // Plain HTTP on the TLS port does not get an answer.
    let http = v.url.replacen("https://", "http://", 1);
    assert!(plain().get(format!("{http}/healthz")).send().await.is_err());
}

#[test]
fn version_says_commercial() {
    let out = clavitor(&["--version"]);
    assert!(out.status.success(), "{out}");
    assert_eq!(
        out.stdout.trim_end(),
        format!("clavitor {VERSION} (commercial)")
    );
}
