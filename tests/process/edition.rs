//! The Community binary: no Commercial code or strings in it, and Community behaviour on the wire.

use crate::helpers::{Scratch, bin, runtime, serve};
use std::time::{Duration, Instant};

#[test]
fn the_community_binary_holds_no_commercial_code_or_strings() {
    let bin = std::fs::read(bin()).expect("read the clavitor binary");
    // Lossy text keeps every ASCII run intact, and `str::contains` is fast even here.
    let text = String::from_utf8_lossy(&bin);
    for needle in [
        "Commercial Edition",
        "Commercial edition",
        "(commercial)",
        "replication.yaml",
        "clavitor-pop-v1-",
        "/v1/replication/batch",
        // Source paths end up in panic locations and debug info of whatever is compiled in.
        "edition/commercial",
    ] {
        assert!(
            !text.contains(needle),
            "the Community binary contains {needle:?}"
        );
    }
}

#[test]
fn health_says_community_and_unknown_paths_get_a_plain_404() {
    let tmp = Scratch::new();
    let server = serve(&tmp.data());
    let rt = runtime();
    rt.block_on(async {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .build()
            .unwrap();
        let h: serde_json::Value = http
            .get(format!("{}/healthz", server.url))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(
            h,
            serde_json::json!({"status": "ok", "edition": "community", "role": "standalone"})
        );
        for path in ["/wp-admin", "/.env", "/v1/replication/batch", "/v2/entries"] {
            let t = Instant::now();
            let res = http
                .get(format!("{}{path}", server.url))
                .send()
                .await
                .unwrap();
            assert_eq!(res.status().as_u16(), 404, "{path}");
            assert!(
                t.elapsed() < Duration::from_secs(1),
                "{path}: no tarpit in Community"
            );
        }
    });
}
