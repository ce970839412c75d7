//! Which edition the binary is: the text it holds (Community: nothing of Commercial), and its
//! answers on the wire.

use crate::edition::{
    BINARY_HOLDS, BINARY_LACKS, HEALTH_SECTIONS, ROLE, assert_unknown_path_answer, reaching,
};
use crate::helpers::{Edition, Scratch, bin, runtime, serve};
use std::time::{Duration, Instant};

#[test]
fn the_binary_holds_its_editions_text_and_no_other() {
    let bin = std::fs::read(bin()).expect("read the clavitor binary");
    // Lossy text keeps every ASCII run intact, and `str::contains` is fast even here.
    let text = String::from_utf8_lossy(&bin);
    for needle in BINARY_LACKS {
        assert!(
            !text.contains(needle),
            "the {} binary contains {needle:?}",
            Edition::BUILT.name()
        );
    }
    for needle in BINARY_HOLDS {
        assert!(text.contains(needle), "the binary lacks {needle:?}");
    }
}

#[test]
fn health_names_the_edition_and_unknown_paths_get_its_answer() {
    let tmp = Scratch::new();
    let server = serve(&tmp.data());
    let rt = runtime();
    rt.block_on(async {
        let http = reaching(reqwest::Client::builder().timeout(Duration::from_secs(5)))
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
        assert_eq!(h["status"], "ok", "{h}");
        assert_eq!(h["edition"], Edition::BUILT.name(), "{h}");
        assert_eq!(h["role"], ROLE, "{h}");
        let mut keys: Vec<&str> = h.as_object().unwrap().keys().map(String::as_str).collect();
        keys.sort_unstable();
        let mut want = [&["edition", "role", "status"][..], HEALTH_SECTIONS].concat();
        want.sort_unstable();
        assert_eq!(keys, want, "{h}");
        for path in ["/wp-admin", "/.env", "/v2/entries"] {
            let t = Instant::now();
            let res = http
                .get(format!("{}{path}", server.url))
                .send()
                .await
                .unwrap();
            assert_unknown_path_answer(res, path, t).await;
        }
    });
}
