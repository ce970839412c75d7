//! Community serves https: `serve --tls-cert FILE --tls-key FILE` with an rcgen certificate,
//! a client that trusts its CA, and clear refusals for a readable key or a bad certificate.
//! Commercial refuses the flags (a POP's TLS is in its replication.yaml), saying so.

use crate::common::pki::{Ca, TlsFiles, client};
use crate::edition;
use crate::helpers::{Scratch, Vault, chmod, clavitor, init, serve_cmd};
use serde_json::{Value, json};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

fn tls_serve_cmd(data: &Path, files: &TlsFiles) -> Command {
    let mut cmd = serve_cmd(data);
    cmd.arg("--tls-cert")
        .arg(&files.cert)
        .arg("--tls-key")
        .arg(&files.key);
    cmd
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

/// On an edition that serves TLS from its own config, `serve --tls-cert/--tls-key` is refused
/// whatever the files hold, naming the flags and the fix: checks that, and returns true.
fn refused_by_edition(data: &Path, files: &TlsFiles) -> bool {
    if edition::TLS_FLAGS_REFUSED.is_none() {
        return false;
    }
    refused(data, files, &[]);
    true
}

#[test]
fn serve_with_a_certificate_and_key_speaks_https() {
    let tmp = Scratch::new();
    let ca = Ca::new("test CA");
    let files = TlsFiles::write(tmp.path(), "server", &ca.leaf("vault"), &ca);
    if refused_by_edition(&tmp.data(), &files) {
        return;
    }
    let token = init(&tmp.data());
    let mut v = Vault::start(&mut tls_serve_cmd(&tmp.data(), &files), &tmp.data());
    assert!(
        v.url.starts_with("https://127.0.0.1:"),
        "start-up line: {:?}",
        v.stdout_lines
    );
    let https = client(&ca, None);
    let stranger = client(&Ca::new("another CA"), None);
    let plain = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let plain_url = v.url.replacen("https://", "http://", 1);
    runtime().block_on(async {
        let health: Value = https
            .get(format!("{}/healthz", v.url))
            .send()
            .await
            .expect("https request")
            .json()
            .await
            .unwrap();
        assert_eq!(health["status"], "ok");

        let created = https
            .post(format!("{}/v1/entries", v.url))
            .bearer_auth(&token)
            .json(&json!({"title": "over tls", "fields": [{"name": "pw", "value": "s3cret"}]}))
            .send()
            .await
            .unwrap();
        assert_eq!(created.status(), 201);
        let id = created.json::<Value>().await.unwrap()["id"]
            .as_str()
            .unwrap()
            .to_owned();
        let field: Value = https
            .get(format!("{}/v1/entries/{id}/fields/pw", v.url))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(field["value"], "s3cret");

        assert!(
            stranger
                .get(format!("{}/healthz", v.url))
                .send()
                .await
                .is_err(),
            "a client that does not trust the CA must not connect"
        );
        let over_plain = plain.get(format!("{plain_url}/healthz")).send().await;
        assert!(
            over_plain.is_err() || !over_plain.unwrap().status().is_success(),
            "plain http must not be served on the https port"
        );
    });
    v.stop(Duration::from_secs(1));
}

/// Expects `serve` to exit 1 before listening (and before creating the data dir), saying
/// each of `needles`.
/// `serve --tls-cert/--tls-key` with `files` does not start: exit 1, nothing created, and
/// stderr says `needles` (or, where the edition refuses the flags, why).
#[track_caller]
fn refused(data: &Path, files: &TlsFiles, needles: &[&str]) {
    let needles = edition::TLS_FLAGS_REFUSED.unwrap_or(needles);
    let res = Vault::spawn(&mut tls_serve_cmd(data, files), data);
    let f = match res {
        Ok(v) => panic!("serve started: {:?}\n{}", v.stdout_lines, v.stderr()),
        Err(f) => f,
    };
    assert_eq!(f.status.and_then(|s| s.code()), Some(1), "exit 1: {f:#?}");
    for n in needles {
        assert!(f.stderr.contains(n), "stderr lacks {n:?}: {}", f.stderr);
    }
    assert!(!data.exists(), "a refused start created {}", data.display());
}

#[test]
fn a_key_others_can_read_is_refused_with_the_fix() {
    let tmp = Scratch::new();
    let ca = Ca::new("test CA");
    let files = TlsFiles::write(tmp.path(), "server", &ca.leaf("vault"), &ca);
    chmod(&files.key, 0o644);
    let key = files.key.display().to_string();
    refused(
        &tmp.data(),
        &files,
        &["--tls-key", &key, "0644", "chmod 600"],
    );
}

#[test]
fn a_bad_certificate_or_a_key_of_another_certificate_names_the_file_and_the_fix() {
    let tmp = Scratch::new();
    let ca = Ca::new("test CA");
    let files = TlsFiles::write(tmp.path(), "server", &ca.leaf("vault"), &ca);

    std::fs::write(&files.cert, "not a certificate\n").unwrap();
    let cert = files.cert.display().to_string();
    refused(&tmp.data(), &files, &["--tls-cert", &cert, "Fix:"]);

    std::fs::remove_file(&files.cert).unwrap();
    refused(&tmp.data(), &files, &["--tls-cert", &cert, "Fix:"]);

    // The certificate of one key, the key of another.
    let other = TlsFiles::write(tmp.path(), "other", &ca.leaf("other"), &ca);
    let mixed = TlsFiles {
        cert: other.cert.clone(),
        key: files.key.clone(),
        ca: other.ca.clone(),
    };
    std::fs::write(
        &files.key,
        "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
    )
    .unwrap();
    refused(&tmp.data(), &mixed, &["--tls-key", "Fix:"]);
    let fresh = ca.leaf("fresh");
    crate::common::files::write_file(&files.key, &fresh.key_pem, 0o600);
    refused(
        &tmp.data(),
        &mixed,
        &["do not form a usable certificate", "Fix:"],
    );
}

#[test]
fn tls_cert_without_tls_key_is_a_usage_error() {
    let tmp = Scratch::new();
    let data = tmp.data();
    let out = clavitor(&[
        "serve",
        "--data-dir",
        data.to_str().unwrap(),
        "--tls-cert",
        "/nonexistent.crt",
    ]);
    assert_eq!(out.code(), Some(2), "{out}");
    assert!(out.stderr.contains("--tls-key"), "{out}");
}
