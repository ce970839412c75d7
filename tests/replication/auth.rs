//! A primary that cannot authenticate to its backup (wrong POP token, a client certificate from
//! another CA, or no trust in the backup's certificate) replicates nothing, says so on
//! /healthz, and raises `replication_failed` on its log.

use crate::helpers::*;
use std::path::PathBuf;
use std::time::Duration;

/// Starts `backup` (provisioned with `primary`'s key) and `primary` pushing to it with the token
/// in `token_file`; asserts replication fails and the backup stays empty. Returns last_error.
async fn cannot_replicate(
    cas: &[&Ca],
    mut primary: Pop,
    mut backup: Pop,
    token_file: Option<PathBuf>,
) -> String {
    primary.init(None);
    backup.init(Some(&primary.master_key()));
    backup.write_backup(PRIMARY_ID);
    let bn = backup.start();
    let token_file = token_file.unwrap_or_else(|| backup.token_file.clone());
    primary.write_primary(
        &BackupRef {
            id: BACKUP_ID,
            url: &bn.url,
            token_file: &token_file,
        },
        100,
        2,
    );
    let pn = primary.start();
    let api = Api {
        c: client_trusting(cas, None),
    };
    for i in 0..3 {
        api.create(&pn.url, &primary.owner, &entry(&format!("secret-{i}")))
            .await;
    }
    let h = wait_for(
        Duration::from_secs(20),
        "replication failing on the primary",
        || async {
            let h = api.health(&pn.url).await;
            let r = &h["replication"];
            (r["failing_since"].is_string()
                && r["last_error"].is_string()
                && r["backlog"].as_i64() > Some(0))
            .then_some(h.clone())
            .ok_or(h)
        },
    )
    .await;
    let r = &h["replication"];
    assert!(r["last_success"].is_null(), "{h}");
    wait_for(
        Duration::from_secs(5),
        "a replication_failed alert on the primary's stderr",
        || async {
            let log = pn.stderr();
            (log.contains("replication_failed") && log.contains("clavitor::alert"))
                .then_some(())
                .ok_or(log)
        },
    )
    .await;
    // Nothing reached the backup (not even the primary's owner, which travels first: the
    // backup has no owner of its own), and it saw no push.
    let (st, v) = api
        .call(
            reqwest::Method::GET,
            &format!("{}/v1/entries", bn.url),
            &primary.owner,
            None,
        )
        .await;
    assert_eq!(st, 401, "the backup knows the primary's owner: {v}");
    let hb = api.health(&bn.url).await;
    assert!(hb["replication"]["last_push"].is_null(), "{hb}");
    // The token never shows up in either log.
    let token = std::fs::read_to_string(&token_file).expect("token");
    for log in [pn.stderr(), bn.stderr()] {
        assert!(!log.contains(token.trim()), "a POP token was logged");
    }
    r["last_error"].as_str().unwrap_or_default().to_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn wrong_pop_token_is_refused() {
    let ca = Ca::new("Clavitor POP CA");
    let primary = Pop::new(PRIMARY_ID, &ca);
    let backup = Pop::new(BACKUP_ID, &ca);
    let wrong = primary.path("wrong.token");
    write_file(&wrong, &format!("{}\n", token_text(32)), 0o600);
    let err = cannot_replicate(&[&ca], primary, backup, Some(wrong)).await;
    assert!(
        err.contains("401") && err.contains("invalid_pop_token"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn client_certificate_from_another_ca_is_refused() {
    let ca = Ca::new("Clavitor POP CA");
    let rogue = Ca::new("Rogue CA");
    // The primary trusts the POP CA (so it accepts the backup) but presents a rogue certificate.
    let primary = Pop::with_cert(PRIMARY_ID, &ca, &rogue.leaf(PRIMARY_ID));
    let backup = Pop::new(BACKUP_ID, &ca);
    let err = cannot_replicate(&[&ca, &rogue], primary, backup, None).await;
    assert!(err.contains("cannot reach the backup"), "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn backup_certificate_not_trusted_by_the_primary() {
    let ca = Ca::new("Clavitor POP CA");
    let rogue = Ca::new("Rogue CA");
    // A good certificate, but the primary's mtls_ca is another CA: the backup is not trusted.
    let primary = Pop::with_cert(PRIMARY_ID, &rogue, &ca.leaf(PRIMARY_ID));
    let backup = Pop::new(BACKUP_ID, &ca);
    let err = cannot_replicate(&[&ca], primary, backup, None).await;
    assert!(
        err.contains("cannot reach the backup") && err.to_lowercase().contains("certificate"),
        "{err}"
    );
}
