//! What a commercial POP prints when it starts, and what /healthz and --version say.

use crate::helpers::*;

fn starting_line() -> String {
    format!("Starting Clavitor Vault v{VERSION} - Commercial Edition")
}

#[tokio::test(flavor = "multi_thread")]
async fn primary_startup_lines_and_health() {
    let pop = Pop::new();
    pop.write_config(&config_yaml(&pop, "primary", &Opts::default()));
    let v = pop.start();
    assert_eq!(v.stdout_lines.len(), 3, "{:?}", v.stdout_lines);
    assert_eq!(v.stdout_lines[0], starting_line());
    assert_eq!(
        v.stdout_lines[1],
        "Commercial edition: primary POP, replicating to zurich-01"
    );
    assert!(
        v.stdout_lines[2].starts_with("listening on http://127.0.0.1:"),
        "{:?}",
        v.stdout_lines
    );
    let h = health(&plain(), &v.url).await;
    assert_eq!(h["status"], "ok");
    assert_eq!(h["edition"], "commercial");
    assert_eq!(h["role"], "primary");
}

#[tokio::test(flavor = "multi_thread")]
async fn backup_startup_lines_and_health() {
    let pop = Pop::new();
    pop.write_config(&config_yaml(&pop, "backup", &Opts::default()));
    let v = pop.start();
    assert_eq!(v.stdout_lines.len(), 3, "{:?}", v.stdout_lines);
    assert_eq!(v.stdout_lines[0], starting_line());
    assert_eq!(
        v.stdout_lines[1],
        "Commercial edition: backup POP, accepting replication from primary"
    );
    assert!(v.stdout_lines[2].starts_with("listening on http://127.0.0.1:"));
    let h = health(&plain(), &v.url).await;
    assert_eq!(h["edition"], "commercial");
    assert_eq!(h["role"], "backup");
}

#[tokio::test(flavor = "multi_thread")]
async fn mtls_config_serves_https() {
    let pop = Pop::new();
    let ca = Ca::new("POP CA");
    let tls = pop.write_tls(&ca);
    pop.write_config(&config_yaml(
        &pop,
        "primary",
        &Opts {
            tls: Some(&tls),
            ..Opts::default()
        },
    ));
    let v = pop.start();
    assert_eq!(v.stdout_lines.len(), 3, "{:?}", v.stdout_lines);
    assert_eq!(v.stdout_lines[0], starting_line());
    assert_eq!(
        v.stdout_lines[1],
        "Commercial edition: primary POP, replicating to zurich-01"
    );
    assert!(
        v.url.starts_with("https://127.0.0.1:"),
        "{:?}",
        v.stdout_lines
    );
    // A client that trusts the POP CA reaches it without a client certificate.
    let h = health(&client(Some(&ca), None), &v.url).await;
    assert_eq!(h["edition"], "commercial");
    assert_eq!(h["role"], "primary");
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
