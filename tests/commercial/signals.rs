//! SIGTERM stops a commercial POP gracefully: exit 0 within 1 s, over HTTP and HTTPS.

use crate::helpers::*;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_plain_pop() {
    let pop = Pop::new();
    pop.configure("primary", &Opts::default());
    let mut v = pop.start();
    // An idle keep-alive connection stays open during the stop.
    let c = plain();
    assert_eq!(health(&c, &v.url).await["role"], "primary");
    v.stop(Duration::from_secs(1));
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_tls_pop() {
    let ca = Ca::new("POP CA");
    let pop = Pop::new();
    let tls = pop.write_tls(&ca);
    pop.configure("backup", &Opts::with_tls(&tls));
    let mut v = pop.start();
    let c = client(&ca, Some(&ca.leaf("calgary-01")));
    assert_eq!(health(&c, &v.url).await["role"], "backup");
    v.stop(Duration::from_secs(1));
}

#[test]
fn sigterm_right_after_start() {
    let pop = Pop::new();
    pop.configure("backup", &Opts::default());
    let mut v = pop.start();
    v.stop(Duration::from_secs(1));
}
