//! Inbound POP authentication on `POST /v1/replication/batch`: a client certificate signed by
//! `auth.mtls_ca`, naming the backup's `primary_pop.id` (subject CN or a DNS name), and the
//! POP token.

use crate::helpers::*;

fn started(role: &str) -> (Pop, Vault) {
    let pop = Pop::new();
    pop.configure(role, &Opts::default());
    let v = pop.start();
    assert!(v.url.starts_with("https://"), "{}", v.url);
    (pop, v)
}

#[tokio::test(flavor = "multi_thread")]
async fn backup_checks_certificate_and_token() {
    let (pop, v) = started("backup");
    let with_cert = pop.peer("calgary-01");

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
    // The owner token is not a POP token.
    let (st, res) = push(&with_cert, &v.url, &v.token).await.expect("request");
    assert_eq!((st, code(&res)), (401, "invalid_pop_token"), "{res}");

    // No client certificate, even with the right token.
    let no_cert = pop.client();
    let (st, res) = push(&no_cert, &v.url, &pop.token).await.expect("request");
    assert_eq!(
        (st, code(&res)),
        (401, "peer_certificate_required"),
        "{res}"
    );
    // Client API calls need no client certificate, and the POP token is not a client token.
    assert_eq!(health(&no_cert, &v.url).await["role"], "backup");
    let (st, _) = call(
        &no_cert,
        reqwest::Method::GET,
        &format!("{}/v1/entries", v.url),
        &pop.token,
        None,
    )
    .await;
    assert_eq!(st, 401);

    // A certificate from another CA: the TLS handshake fails.
    let other = Ca::new("rogue CA");
    let rogue = client(&pop.ca, Some(&other.leaf("calgary-01")));
    let r = push(&rogue, &v.url, &pop.token).await;
    assert!(
        r.is_err(),
        "a foreign client certificate was accepted: {r:?}"
    );

    // The POP's log names refusals, never the token.
    let err = v.stderr();
    assert!(!err.contains(&pop.token), "the POP token leaked to the log");
}

/// A certificate from the right CA that names another POP (here: the backup's own name, or
/// a third POP) cannot push, even with the token: only `primary_pop.id` can.
#[tokio::test(flavor = "multi_thread")]
async fn backup_takes_pushes_only_from_the_pop_its_config_names() {
    let (pop, v) = started("backup");
    for name in ["zurich-01", "vancouver-02", "calgary-01.evil", "calgary-0"] {
        let (st, res) = push(&pop.peer(name), &v.url, &pop.token)
            .await
            .expect("request");
        assert_eq!((st, code(&res)), (403, "peer_not_allowed"), "{name}: {res}");
        assert!(
            res["error"]["message"]
                .as_str()
                .is_some_and(|m| m.contains("primary_pop.id")),
            "{res}"
        );
    }
    // A DNS subject alternative name equal to the id is enough (the CN says something else).
    let by_dns = pop
        .ca
        .leaf_with_dns("some-host", &["calgary-01", "localhost"]);
    let (st, res) = push(&client(&pop.ca, Some(&by_dns)), &v.url, &pop.token)
        .await
        .expect("request");
    assert!(accepted_by_backup(st, &res), "{st} {res}");
    // And so is the CN alone.
    let by_cn = pop.ca.leaf_with_dns("calgary-01", &[]);
    let (st, res) = push(&client(&pop.ca, Some(&by_cn)), &v.url, &pop.token)
        .await
        .expect("request");
    assert!(accepted_by_backup(st, &res), "{st} {res}");
    assert!(
        v.stderr().contains("does not name primary_pop.id"),
        "{}",
        v.stderr()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn primary_authenticates_then_refuses_pushes() {
    let (pop, v) = started("primary");
    let with_cert = pop.peer("zurich-01");
    let (st, res) = push(&with_cert, &v.url, &pop.token).await.expect("request");
    assert_eq!((st, code(&res)), (409, "not_a_backup"), "{res}");
    let (st, res) = push(&with_cert, &v.url, "wrong").await.expect("request");
    assert_eq!((st, code(&res)), (401, "invalid_pop_token"), "{res}");
    let (st, res) = push(&pop.client(), &v.url, &pop.token)
        .await
        .expect("request");
    assert_eq!(
        (st, code(&res)),
        (401, "peer_certificate_required"),
        "{res}"
    );
}
