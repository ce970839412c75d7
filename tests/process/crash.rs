//! Crash durability: SIGKILL under concurrent write load never loses an acknowledged write
//! and never leaves a partial entry.

use crate::helpers::{Load, Scratch, jitter, runtime, serve, verify_all, verify_listing};
use std::time::Duration;

const ROUNDS: usize = 5;
const WRITERS: usize = 32;

#[test]
fn sigkill_under_write_load_loses_no_acknowledged_write() {
    let tmp = Scratch::new();
    let rt = runtime();
    let mut all = Vec::new();
    for round in 0..ROUNDS {
        let mut server = serve(&tmp.data());
        let api = server.api();

        // Whatever survived the previous crash is still there, whole.
        let listed = verify_listing(&rt, &api, &all);

        let load = Load::start(&rt, &api, WRITERS, &format!("crash-r{round}"), 100_000);
        load.wait_for(1, Duration::from_secs(10));
        let after = jitter(200, 800);
        std::thread::sleep(Duration::from_millis(after));
        server.kill9();
        let acked = load.finish(&rt);
        eprintln!(
            "round {round}: killed after {after} ms with {} acknowledged writes ({listed} entries before)",
            acked.len()
        );
        assert!(!acked.is_empty());

        // Restart on the same data dir: every acknowledged write of this round reads back.
        let server = serve(&tmp.data());
        let api = server.api();
        verify_all(&rt, &api, &acked, WRITERS);
        all.extend(acked);
        let listed_now = verify_listing(&rt, &api, &all);
        // Writes committed but unanswered when the process died may exist; at most one per writer.
        assert!(
            listed_now <= all.len() + WRITERS * (round + 1),
            "{listed_now} entries, more than were ever sent ({} acknowledged)",
            all.len()
        );
        drop(server);
    }

    // A last full pass over everything acknowledged across all rounds.
    let server = serve(&tmp.data());
    let api = server.api();
    verify_listing(&rt, &api, &all);
    verify_all(&rt, &api, &all, WRITERS);
    eprintln!(
        "{} acknowledged writes survived {ROUNDS} crashes",
        all.len()
    );
}
