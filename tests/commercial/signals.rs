//! SIGTERM stops a commercial POP gracefully: exit 0 within 1 s, with idle and peer
//! connections open.

use crate::helpers::*;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_with_an_idle_client_connection() {
    let pop = Pop::new();
    pop.configure("primary", &Opts::default());
    let mut v = pop.start();
    // An idle keep-alive connection stays open during the stop.
    let c = pop.client();
    assert_eq!(health(&c, &v.url).await["role"], "primary");
    v.stop(Duration::from_secs(1));
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_with_a_peer_connection() {
    let pop = Pop::new();
    pop.configure("backup", &Opts::default());
    let mut v = pop.start();
    let c = pop.peer("calgary-01");
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
