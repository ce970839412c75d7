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
    assert_startup_lines(&v, PRIMARY_LINE, "https");
    // A client that trusts the POP CA reaches it without a client certificate.
    assert_health(&pop.client(), &v, "primary").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn backup_startup_lines_and_health() {
    let pop = Pop::new();
    pop.configure("backup", &Opts::default());
    let v = pop.start();
    assert_startup_lines(
        &v,
        "Commercial edition: backup POP, accepting replication from primary",
        "https",
    );
    assert_health(&pop.client(), &v, "backup").await;
}

/// Every Commercial POP serves HTTPS only: plain HTTP on its port gets no answer.
#[tokio::test(flavor = "multi_thread")]
async fn no_plain_http_on_a_pop() {
    let pop = Pop::new();
    pop.configure("primary", &Opts::default());
    let v = pop.start();
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
