//! What `contrib/` gives Commercial operators works with the real binary: the example
//! `replication.yaml` passes the validator with the files it names in place, and the PKI that
//! `contrib/pop-pki.sh` makes (openssl) runs two POPs that replicate over mTLS.

use crate::common::files::q;
use crate::common::metrics;
use crate::common::pki::provider;
use crate::helpers::*;
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use serde_json::json;
use std::collections::HashSet;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

const EXAMPLE: &str = include_str!("../../contrib/replication.example.yaml");

fn contrib(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("contrib")
        .join(name)
}

fn tmp(prefix: &str) -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix(prefix)
        .tempdir()
        .expect("temp dir")
}

/// `clavitor init` into `data`, the owner token to `token_out` (as the README's steps do).
fn init(data: &Path, token_out: &Path, master_key: Option<&Path>) {
    let mut args = vec![
        "init".to_owned(),
        "--data-dir".into(),
        data.display().to_string(),
    ];
    match master_key {
        Some(k) => args.extend(["--master-key".into(), k.display().to_string()]),
        None => args.extend(["--owner-token-out".into(), token_out.display().to_string()]),
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    clavitor(&args).ok();
}

fn serve_cmd(data: &Path, config: &Path) -> std::process::Command {
    command(&[
        "serve",
        "--data-dir",
        data.to_str().unwrap(),
        "--listen",
        "127.0.0.1:0",
        "--replication-config",
        config.to_str().unwrap(),
    ])
}

#[test]
fn the_example_replication_yaml_passes_the_validator_with_its_files_in_place() {
    let dir = tmp("clavitor-example-yaml-");
    let d = dir.path();
    // The example as shipped, with its files under the temp dir instead of /etc/clavitor, and
    // the backup on a closed local port (tests talk to 127.0.0.1 only).
    let yaml = EXAMPLE
        .replace("/etc/clavitor/", &format!("{}/", d.display()))
        .replace("https://zurich-01.example.com:7441", "https://127.0.0.1:9");
    assert_ne!(yaml, EXAMPLE);
    assert!(!yaml.contains("/etc/clavitor"), "every path is rewritten");
    let config = d.join("replication.yaml");
    write_file(&config, &yaml, 0o644);
    let ca = Ca::new("Clavitor POP CA");
    let leaf = ca.leaf("calgary-01");
    write_file(&d.join("calgary-01.crt"), &leaf.cert_pem, 0o644);
    write_file(&d.join("calgary-01.key"), &leaf.key_pem, 0o600);
    write_file(&d.join("pop-ca.crt"), &ca.pem(), 0o644);
    let data = d.join("data");

    // One file missing: the validator names the key and the file, and nothing starts.
    let failed = Vault::spawn(&mut serve_cmd(&data, &config), &data)
        .err()
        .expect("no token file: refused");
    assert!(
        failed.stderr.contains("auth.token_file") && failed.stderr.contains("replication.token"),
        "{}",
        failed.stderr
    );
    assert!(!data.exists(), "a refused start creates no data dir");

    write_file(
        &d.join("replication.token"),
        &format!("{}\n", token_text(32)),
        0o600,
    );
    init(&data, &d.join("owner.token"), None);
    let mut pop = Vault::start(&mut serve_cmd(&data, &config), &data);
    assert_eq!(
        pop.stdout_lines[1], "Commercial edition: primary POP, replicating to zurich-01",
        "{:?}",
        pop.stdout_lines
    );
    assert!(pop.url.starts_with("https://"), "{}", pop.url);
    pop.stop(STOP_WITHIN);
}

/// A reqwest client trusting only the CA certificates in `pem`.
fn client_trusting_pem(pem: &Path) -> reqwest::Client {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(pem).expect("read the CA") {
        roots
            .add(cert.expect("a PEM certificate"))
            .expect("add root");
    }
    let cfg = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    reqwest::Client::builder()
        .use_preconfigured_tls(cfg)
        .timeout(Duration::from_secs(10))
        .build()
        .expect("client")
}

fn auth_yaml(pki: &Path, id: &str) -> String {
    format!(
        "auth:\n  token_file: {}\n  mtls_cert: {}\n  mtls_key: {}\n  mtls_ca: {}\n",
        q(&pki.join("replication.token")),
        q(&pki.join(format!("{id}.crt"))),
        q(&pki.join(format!("{id}.key"))),
        q(&pki.join("pop-ca.crt")),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn two_pops_from_the_pop_pki_script_replicate() {
    if Command::new("openssl").arg("version").output().is_err() {
        eprintln!("SKIPPED: openssl is not installed; contrib/pop-pki.sh needs it");
        return;
    }
    let dir = tmp("clavitor-pop-pki-");
    let d = dir.path();
    let pki = d.join("pki");
    let out = Command::new("bash")
        .arg(contrib("pop-pki.sh"))
        .arg(&pki)
        .args([
            "calgary-01=127.0.0.1,localhost",
            "zurich-01=127.0.0.1,localhost",
        ])
        .output()
        .expect("run pop-pki.sh");
    assert!(
        out.status.success(),
        "pop-pki.sh: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mode = |name: &str| {
        std::fs::metadata(pki.join(name))
            .unwrap_or_else(|e| panic!("{name}: {e}"))
            .permissions()
            .mode()
            & 0o777
    };
    for secret in [
        "pop-ca.key",
        "calgary-01.key",
        "zurich-01.key",
        "replication.token",
    ] {
        assert_eq!(mode(secret), 0o600, "{secret}");
    }
    for public in ["pop-ca.crt", "calgary-01.crt", "zurich-01.crt"] {
        assert_eq!(mode(public), 0o644, "{public}");
    }
    // Run again for the same POP: refused, nothing replaced.
    let key_before = std::fs::read(pki.join("zurich-01.key")).unwrap();
    let again = Command::new("bash")
        .arg(contrib("pop-pki.sh"))
        .arg(&pki)
        .arg("zurich-01")
        .output()
        .expect("run pop-pki.sh");
    assert!(!again.status.success());
    assert_eq!(
        std::fs::read(pki.join("zurich-01.key")).unwrap(),
        key_before
    );

    // The README's steps: the primary's vault, the backup adopting its master key.
    let (pdata, bdata) = (d.join("calgary"), d.join("zurich"));
    let owner_file = d.join("owner.token");
    init(&pdata, &owner_file, None);
    init(&bdata, &owner_file, Some(&pdata.join("master.key")));
    let owner = std::fs::read_to_string(&owner_file)
        .unwrap()
        .trim()
        .to_owned();

    let bconfig = d.join("zurich.yaml");
    std::fs::write(
        &bconfig,
        format!(
            "pop_id: \"zurich-01\"\nrole: \"backup\"\nprimary_pop:\n  id: \"calgary-01\"\n{}",
            auth_yaml(&pki, "zurich-01")
        ),
    )
    .unwrap();
    let mut backup = Vault::start(&mut serve_cmd(&bdata, &bconfig), &bdata);
    let pconfig = d.join("calgary.yaml");
    std::fs::write(
        &pconfig,
        format!(
            "pop_id: \"calgary-01\"\nrole: \"primary\"\nbackup_pop:\n  id: \"zurich-01\"\n  url: \"{}\"\n  auth_token_file: {}\n{}",
            backup.url,
            q(&pki.join("replication.token")),
            auth_yaml(&pki, "calgary-01")
        ),
    )
    .unwrap();
    let mut primary = Vault::start(&mut serve_cmd(&pdata, &pconfig), &pdata);

    let api = Api {
        c: client_trusting_pem(&pki.join("pop-ca.crt")),
    };
    let id = api
        .create(
            &primary.url,
            &owner,
            &json!({"title": "db", "fields": [{"name": "password", "value": "from-calgary"}]}),
        )
        .await;
    api.wait_has(&backup.url, &owner, &HashSet::from([id.clone()]), CONVERGE)
        .await;
    let (st, f) = api.field(&backup.url, &owner, &id, "password").await;
    assert_eq!(st, 200, "{f}");
    assert_eq!(f["value"], "from-calgary");

    // Both POPs' gauges, once caught up; with them every family the sample dashboard charts.
    api.wait_caught_up(&primary.url, CONVERGE).await;
    let scrape = |base: String| {
        let c = api.c.clone();
        async move {
            let text = c
                .get(format!("{base}/metrics"))
                .send()
                .await
                .expect("GET /metrics")
                .text()
                .await
                .expect("body");
            metrics::parse(&text)
        }
    };
    let (pm, bm) = (
        scrape(primary.url.clone()).await,
        scrape(backup.url.clone()).await,
    );
    assert_eq!(
        metrics::gauge(&pm, "clavitor_replication_backlog"),
        Some(0.0)
    );
    assert_eq!(
        metrics::gauge(&pm, "clavitor_replication_failing"),
        Some(0.0)
    );
    let committed =
        metrics::gauge(&pm, "clavitor_replication_committed_version").expect("committed");
    assert_eq!(
        metrics::gauge(&pm, "clavitor_replication_acked_watermark"),
        Some(committed)
    );
    assert!(metrics::gauge(&pm, "clavitor_replication_lag_p99_seconds").is_some());
    assert!(metrics::gauge(&bm, "clavitor_replication_applied_watermark").unwrap_or(0.0) >= 1.0);
    assert!(
        !bm.contains_key("clavitor_replication_backlog"),
        "a backup owes nothing"
    );
    for family in metrics::dashboard_families() {
        assert!(
            pm.contains_key(&family) || bm.contains_key(&family),
            "the dashboard charts {family}, which neither POP exports"
        );
    }
    primary.stop(STOP_WITHIN);
    backup.stop(STOP_WITHIN);
}
