//! Property tests of every CLI-side parser of outside input: server answers (as bytes on a
//! real socket, and as status + body), `--server` URLs, `clavitor://` references, tokens and
//! token files, TTLs, field specs, and the human-output escaper. Fixed case counts, no
//! persistence files: a bounded run that is part of `cargo test`. None may panic.

use super::client::{find_token, interpret};
use super::commands::{parse_field, parse_reference, parse_ttl};
use super::endpoint::Endpoint;
use super::http::{Http, MAX_RESPONSE, Reply};
use super::output::{escape, escape_short};
use crate::crypto::Token;
use crate::files;
use proptest::prelude::*;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::time::Duration;

fn config(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// True when `s` has nothing left to escape.
fn clean(s: &str) -> bool {
    escape(s) == s
}

/// Server text that hurts when printed raw, mixed with plain text.
fn hostile_text() -> impl Strategy<Value = String> {
    prop::collection::vec(
        prop_oneof![
            Just("\u{202E}".to_owned()),
            Just("\u{2028}".to_owned()),
            Just("\n".to_owned()),
            Just("\u{1b}[2J".to_owned()),
            Just("\u{2066}".to_owned()),
            any::<char>().prop_map(String::from),
            "[a-zA-Z0-9 ]{0,8}",
        ],
        0..12,
    )
    .prop_map(|parts| parts.concat())
}

/// Bodies a server might send: arbitrary bytes, JSON of any shape, our error shape with
/// hostile or mistyped members, deep nesting, truncation.
fn body() -> impl Strategy<Value = Vec<u8>> {
    let json_leaf = prop_oneof![
        Just(serde_json::Value::Null),
        any::<bool>().prop_map(serde_json::Value::from),
        any::<f64>().prop_map(serde_json::Value::from),
        any::<i64>().prop_map(serde_json::Value::from),
        hostile_text().prop_map(serde_json::Value::from),
    ];
    let json = json_leaf.prop_recursive(4, 32, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(serde_json::Value::from),
            prop::collection::btree_map("error|code|message|id|entries|[a-z]{1,6}", inner, 0..5)
                .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
        ]
    });
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..512),
        json.prop_map(|v| v.to_string().into_bytes()),
        (hostile_text(), hostile_text()).prop_map(|(c, m)| {
            serde_json::json!({"error": {"code": c, "message": m}})
                .to_string()
                .into_bytes()
        }),
        (any::<u8>(), any::<u8>()).prop_map(|(code, message)| {
            format!(r#"{{"error":{{"code":{code},"message":[{message}]}}}}"#).into_bytes()
        }),
        (1usize..5000).prop_map(|depth| {
            let mut s = "[".repeat(depth);
            s.push_str(&"]".repeat(depth));
            s.into_bytes()
        }),
        (any::<u16>(), hostile_text()).prop_map(|(cut, m)| {
            let full = serde_json::json!({"error": {"code": "x", "message": m}}).to_string();
            let cut = (cut as usize) % (full.len() + 1);
            full.as_bytes()[..cut].to_vec()
        }),
    ]
}

proptest! {
    #![proptest_config(config(2000))]

    #[test]
    fn any_status_and_body_gives_a_value_or_a_clean_sentence(
        status in any::<u16>(),
        body in body(),
        location in proptest::option::of(hostile_text()),
    ) {
        let reply = Reply { status, location, body };
        match interpret(&reply) {
            Ok(v) => prop_assert!((200..300).contains(&status), "{status} gave Ok({v:?})"),
            Err(e) => {
                prop_assert!(!(200..300).contains(&status));
                let msg = e.to_string();
                prop_assert!(clean(&msg), "raw control or bidi text in {msg:?}");
                prop_assert!(msg.chars().count() < 1000, "{} chars", msg.chars().count());
            }
        }
    }

    #[test]
    fn references_split_into_what_they_were_made_of(r in ".{0,40}", e in "[^/]{1,12}(/[^/]{1,5}){0,2}", f in "[^/]{1,12}") {
        if let Ok((entry, field)) = parse_reference(&r) {
            prop_assert_eq!(format!("clavitor://{entry}/{field}"), r.clone());
            prop_assert!(!entry.is_empty() && !field.is_empty() && !field.contains('/'));
        }
        let made = format!("clavitor://{e}/{f}");
        prop_assert_eq!(parse_reference(&made).ok(), Some((e.as_str(), f.as_str())));
    }

    #[test]
    fn ttls_are_exact_or_refused(s in ".{0,24}", n in any::<u64>(), unit in prop::sample::select(vec!["", "s", "m", "h", "d"])) {
        let _ = parse_ttl(&s);
        let mult: u64 = match unit { "" | "s" => 1, "m" => 60, "h" => 3600, _ => 86_400 };
        let got = parse_ttl(&format!("{n}{unit}")).ok();
        prop_assert_eq!(got, n.checked_mul(mult));
    }

    #[test]
    fn field_specs_keep_name_tier_scope_and_value(spec in ".{0,40}", value in ".{0,20}") {
        // `true`: stdin is "already used", so a `-` value is refused instead of read.
        let mut stdin_used = true;
        if let Ok(f) = parse_field(&spec, &mut stdin_used) {
            let (head, v) = spec.split_once('=').unwrap();
            prop_assert_eq!(f["value"].as_str(), Some(v));
            prop_assert!(head.starts_with(f["name"].as_str().unwrap()));
        }
        let spec = format!("password:credential:ci={value}");
        if value != "-" {
            let f = parse_field(&spec, &mut stdin_used).unwrap();
            prop_assert_eq!(f["value"].as_str(), Some(value.as_str()));
            prop_assert_eq!(f["scope"].as_str(), Some("ci"));
        }
    }

    #[test]
    fn server_urls_parse_to_themselves_or_are_refused(url in ".{0,40}", host in "[a-z0-9.-]{1,20}", port in any::<u16>(), prefix in "(/[a-zA-Z0-9_.~-]{1,8}){0,3}/?") {
        if let Ok(e) = Endpoint::parse(&url) {
            prop_assert_eq!(Endpoint::parse(&e.display()).ok(), Some(e));
        }
        for scheme in ["http", "https"] {
            let url = format!("{scheme}://{host}:{port}{prefix}");
            if let Ok(e) = Endpoint::parse(&url) {
                prop_assert_eq!(e.url("/v1/entries"), format!("{scheme}://{host}:{port}{}/v1/entries", prefix.trim_end_matches('/')));
                let _ = e.check_token_transport(false);
            }
        }
    }

    #[test]
    fn tokens_are_their_trimmed_text(s in ".{0,80}") {
        let t = Token::from_text(&s);
        prop_assert_eq!(t.expose(), s.trim());
    }

    #[test]
    fn escaping_leaves_nothing_to_escape(s in hostile_text(), n in 0usize..20) {
        let once = escape(&s).into_owned();
        prop_assert!(clean(&once));
        prop_assert!(clean(&escape_short(&s, n)));
        if !s.chars().any(|c| c.is_control()) && clean(&s) {
            prop_assert_eq!(once, s);
        }
    }
}

proptest! {
    #![proptest_config(config(300))]

    #[test]
    fn token_files_of_any_content_are_read_or_refused(content in prop::collection::vec(any::<u8>(), 0..200)) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        // Not `write_private`: its fsyncs would make 300 cases slow, and durability is not
        // what this tests.
        std::fs::write(&path, &content).unwrap();
        std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
        match files::read_token(&path) {
            Ok(t) => {
                let text = std::str::from_utf8(&content).unwrap();
                prop_assert_eq!(t.expose(), text.trim());
                prop_assert!(!text.trim().is_empty());
            }
            Err(e) => {
                // Refusals name the file and never echo its content.
                let msg = e.to_string();
                prop_assert!(msg.contains(&path.display().to_string()), "{msg}");
            }
        }
        let _ = find_token(Some(&path), None, None);
    }
}

/// Serves `response` raw to one connection on 127.0.0.1 (after reading the request head, or
/// giving up on it), then closes.
fn raw_server(response: Vec<u8>) -> (String, std::thread::JoinHandle<()>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", l.local_addr().unwrap());
    let t = std::thread::spawn(move || {
        let Ok((mut s, _)) = l.accept() else { return };
        s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        let mut head = Vec::new();
        let mut buf = [0u8; 1024];
        while !head.windows(4).any(|w| w == b"\r\n\r\n") {
            match s.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => head.extend_from_slice(&buf[..n]),
            }
        }
        let _ = s.write_all(&response);
    });
    (url, t)
}

/// Response heads a hostile or broken server might send, followed by any body.
fn raw_response() -> impl Strategy<Value = Vec<u8>> {
    let status = prop_oneof![
        (100u16..1000).prop_map(|s| s.to_string()),
        "[0-9]{0,6}",
        ".{0,4}"
    ];
    let header = prop_oneof![
        (0u64..100_000).prop_map(|n| format!("content-length: {n}")),
        Just("content-length: 99999999999999999999999".to_owned()),
        Just("content-length: -1".to_owned()),
        Just("transfer-encoding: chunked".to_owned()),
        Just("content-encoding: gzip".to_owned()),
        Just("location: http://elsewhere.invalid/".to_owned()),
        "[a-z-]{1,10}: .{0,20}",
    ];
    let chunk = prop_oneof![
        Just("ffffffffffffffffffff\r\n".to_owned()),
        Just("ffffffffffffffff\r\n".to_owned()),
        Just("0\r\n\r\n".to_owned()),
        "[0-9a-f]{1,4}\r\n.{0,10}\r\n",
    ];
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..300),
        (
            status,
            prop::collection::vec(header, 0..4),
            prop::collection::vec(chunk, 0..3),
            body()
        )
            .prop_map(|(st, hs, chunks, body)| {
                let mut r = format!("HTTP/1.1 {st} X\r\n{}\r\n", hs.join("\r\n")).into_bytes();
                if !hs.is_empty() {
                    r.extend_from_slice(b"\r\n");
                }
                r.extend_from_slice(chunks.concat().as_bytes());
                r.extend_from_slice(&body);
                r
            }),
    ]
}

proptest! {
    #![proptest_config(config(120))]

    /// The whole client path on a real socket: ureq's parser, the size cap, `interpret`.
    #[test]
    fn any_bytes_from_a_server_give_an_answer_or_an_error(response in raw_response()) {
        let (url, server) = raw_server(response);
        let http = Http::new(Endpoint::parse(&url).unwrap(), None).unwrap();
        let token = Token::from_text("clv_proptest");
        if let Ok(reply) = http.request("GET", "/v1/entries", &token, None) {
            prop_assert!(reply.body.len() as u64 <= MAX_RESPONSE);
            let _ = interpret(&reply);
        }
        server.join().unwrap();
    }
}

#[test]
fn a_bottomless_json_answer_does_not_overflow_the_stack() {
    let depth = 1_000_000;
    let mut body = "[".repeat(depth).into_bytes();
    body.extend(std::iter::repeat_n(b']', depth));
    for status in [200, 400] {
        let _ = interpret(&Reply {
            status,
            location: None,
            body: body.clone(),
        });
    }
}

#[test]
fn an_answer_over_the_cap_is_refused_not_read() {
    let mut response = format!(
        "HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n",
        MAX_RESPONSE + 1
    )
    .into_bytes();
    response.resize(response.len() + MAX_RESPONSE as usize + 1, b' ');
    let (url, server) = raw_server(response);
    let http = Http::new(Endpoint::parse(&url).unwrap(), None).unwrap();
    let err = http
        .request("GET", "/v1/entries", &Token::from_text("clv_x"), None)
        .unwrap_err()
        .to_string();
    assert!(err.contains("larger than"), "{err}");
    server.join().unwrap();
}
