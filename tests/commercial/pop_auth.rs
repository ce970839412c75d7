//! Inbound POP authentication on `POST /v1/replication/batch`: the POP token, and with mTLS
//! configured a client certificate signed by `auth.mtls_ca`.

use crate::helpers::*;

fn mtls_pop(role: &str, ca: &Ca) -> (Pop, Vault) {
    let pop = Pop::new();
    let tls = pop.write_tls(ca);
    pop.configure(role, &Opts::with_tls(&tls));
    let v = pop.start();
    assert!(v.url.starts_with("https://"), "{}", v.url);
    (pop, v)
}

#[tokio::test(flavor = "multi_thread")]
async fn mtls_backup_checks_certificate_and_token() {
    let ca = Ca::new("POP CA");
    let (pop, v) = mtls_pop("backup", &ca);
    let peer = ca.leaf("calgary-01");
    let with_cert = client(&ca, Some(&peer));

    // Right certificate, right token: through authentication to the handler.
    let (st, res) = push(&with_cert, &v.url, &pop.token).await.expect("request");
    assert!(accepted_by_backup(st, &res), "{st} {res}");

    // Right certificate, wrong or missing token.
    let (st, res) = push(&with_cert, &v.url, &token_text(32))
        .await
        .expect("request");
    assert_eq!((st, code(&res)), (401, "invalid_pop_token"), "{res}");
    let res = with_cert
        .post(format!("{}/v1/replication/batch", v.url))
        .json(&empty_batch())
        .send()
        .await
        .expect("request");
    assert_eq!(res.status().as_u16(), 401);

    // No client certificate, even with the right token.
    let no_cert = client(&ca, None);
    let (st, res) = push(&no_cert, &v.url, &pop.token).await.expect("request");
    assert_eq!(
        (st, code(&res)),
        (401, "peer_certificate_required"),
        "{res}"
    );
    // Client API calls need no client certificate.
    assert_eq!(health(&no_cert, &v.url).await["role"], "backup");

    // A certificate from another CA: the TLS handshake fails.
    let other = Ca::new("rogue CA");
    let rogue = client(&ca, Some(&other.leaf("rogue")));
    let r = push(&rogue, &v.url, &pop.token).await;
    assert!(
        r.is_err(),
        "a foreign client certificate was accepted: {r:?}"
    );

    // The POP's log names refusals, never the token.
    let err = v.stderr();
    assert!(!err.contains(&pop.token), "the POP token leaked to the log");
}

#[tokio::test(flavor = "multi_thread")]
async fn mtls_primary_authenticates_then_refuses_pushes() {
    let ca = Ca::new("POP CA");
    let (pop, v) = mtls_pop("primary", &ca);
    let with_cert = client(&ca, Some(&ca.leaf("zurich-01")));
    let (st, res) = push(&with_cert, &v.url, &pop.token).await.expect("request");
    assert_eq!((st, code(&res)), (409, "not_a_backup"), "{res}");
    let (st, res) = push(&with_cert, &v.url, "wrong").await.expect("request");
    assert_eq!((st, code(&res)), (401, "invalid_pop_token"), "{res}");
    let (st, res) = push(&client(&ca, None), &v.url, &pop.token)
        .await
        .expect("request");
    assert_eq!(
        (st, code(&res)),
        (401, "peer_certificate_required"),
        "{res}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn token_only_without_mtls() {
    let pop = Pop::new();
    pop.configure("backup", &Opts::default());
    let v = pop.start();
    let c = plain();
    let (st, res) = push(&c, &v.url, &pop.token).await.expect("request");
    assert!(accepted_by_backup(st, &res), "{st} {res}");
    let (st, res) = push(&c, &v.url, &token_text(32)).await.expect("request");
    assert_eq!((st, code(&res)), (401, "invalid_pop_token"), "{res}");
    // The owner token is not a POP token.
    let (st, res) = push(&c, &v.url, &v.token).await.expect("request");
    assert_eq!((st, code(&res)), (401, "invalid_pop_token"), "{res}");
    // And the POP token is not a client token.
    let (st, _) = call(
        &c,
        reqwest::Method::GET,
        &format!("{}/v1/entries", v.url),
        &pop.token,
        None,
    )
    .await;
    assert_eq!(st, 401);
}
