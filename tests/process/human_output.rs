//! Human (non `--json`) output never prints server-supplied text raw: bidi overrides, line
//! separators and control characters come out escaped, so a title cannot disguise itself or
//! forge a table row, and a hostile server cannot drive the terminal.

use crate::helpers::{Output, Scratch, command, init, run, serve, server_args};
use std::io::{Read, Write};
use std::net::TcpListener;
use std::time::Duration;

/// Characters that must never reach the terminal raw from server text.
const RAW: [char; 6] = [
    '\u{202E}', '\u{2028}', '\u{2066}', '\u{1b}', '\u{7}', '\u{85}',
];

#[track_caller]
fn assert_escaped(out: &Output, rows: usize) {
    for c in RAW {
        assert!(
            !out.stdout.contains(c) && !out.stderr.contains(c),
            "raw {c:?} in {out}"
        );
    }
    assert_eq!(out.stdout.lines().count(), rows, "forged rows: {out}");
}

#[test]
fn titles_names_and_metadata_print_escaped() {
    let tmp = Scratch::new();
    let token = init(&tmp.data());
    let server = serve(&tmp.data());
    let cli = |args: &[&str]| {
        run(command(args)
            .args(server_args(&server.url))
            .env("CLAVITOR_TOKEN", &token))
        .ok()
    };
    let title = "invoice\u{202E}fdp.exe";
    cli(&[
        "entry",
        "add",
        title,
        "--username",
        "ops\nforged-id  forged-title  x:vault",
        "--url",
        "https://x\u{1b}]0;pwned\u{7}",
        "-f",
        "pass\u{2028}word:credential:ci=v",
        "-f",
        "note\u{2066}=w\u{85}",
    ]);
    let list = cli(&["entry", "list"]);
    assert_escaped(&list, 2);
    assert!(
        list.stdout.contains("invoice\\u{202E}fdp.exe")
            && list.stdout.contains("pass\\u{2028}word:credential:ci")
            && list.stdout.contains("note\\u{2066}:vault"),
        "{list}"
    );
    let get = cli(&["entry", "get", title]);
    assert_escaped(&get, 6);
    assert!(
        get.stdout.contains("ops\\nforged-id") && get.stdout.contains("\\u{001B}]0;pwned\\u{0007}"),
        "{get}"
    );

    let add = cli(&["agent", "add", "bot\u{202E}\u{2028}", "-s", "ci"]);
    assert_escaped(&add, 3);
    assert!(add.stdout.contains("bot\\u{202E}\\u{2028}"), "{add}");
    let agents = cli(&["agent", "list"]);
    assert_escaped(&agents, 2);

    // JSON output stays JSON: the exact strings, for programs.
    let json = cli(&["entry", "list", "--json"]).json();
    assert_eq!(json["entries"][0]["title"], title);
    // `read` prints a value as data, byte for byte.
    let value = cli(&[
        "read",
        "clavitor://invoice\u{202E}fdp.exe/note\u{2066}",
        "-n",
    ]);
    assert_eq!(value.stdout, "w\u{85}");
}

#[test]
fn a_hostile_servers_error_message_prints_escaped() {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", l.local_addr().unwrap());
    let t = std::thread::spawn(move || {
        let (mut s, _) = l.accept().unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut b = [0u8; 4096];
        let _ = s.read(&mut b);
        let body = serde_json::json!({"error": {
            "code": "bad\u{1b}[2J",
            "message": "denied\u{202E}\nerror: everything is fine\u{7}",
        }})
        .to_string();
        write!(
            s,
            "HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        )
        .unwrap();
    });
    let out = run(command(&["entry", "list", "--server", &url]).env("CLAVITOR_TOKEN", "clv_x"));
    t.join().unwrap();
    assert_eq!(out.code(), Some(1), "{out}");
    assert_escaped(&out, 0);
    assert_eq!(out.stderr.lines().count(), 1, "{out}");
    assert!(
        out.stderr
            .contains("denied\\u{202E}\\nerror: everything is fine\\u{0007}"),
        "{out}"
    );
}
