//! The CLI's own contract: version line, exit codes, `init`, token files.

use crate::helpers::{
    Edition, Output, Scratch, VERSION, chmod, clavitor, command, command_for, init, mode, run,
    serve, server_args, token_file_of,
};
use std::net::TcpListener;

#[test]
fn version_names_the_edition() {
    let out = clavitor(&["--version"]).ok();
    assert_eq!(
        out.stdout.trim_end(),
        format!("clavitor {VERSION} ({})", Edition::BUILT.name())
    );
}

#[test]
fn usage_errors_exit_2() {
    for args in [
        &["no-such-command"][..],
        &["entry"],
        &["serve", "--listen", "not-an-address"],
        &["run", "--server", "http://127.0.0.1:1"],
        &["entry", "add"],
    ] {
        let out = clavitor(args);
        assert_eq!(out.code(), Some(2), "{out}");
        assert!(!out.stderr.is_empty(), "explains itself: {out}");
    }
}

/// A port nothing listens on: bound, read, released.
fn dead_url() -> String {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    drop(l);
    format!("http://127.0.0.1:{port}")
}

/// Asserts `out` is a client error: exit 1, with `needle` in the message.
#[track_caller]
fn exit_1_saying(out: &Output, needle: &str) {
    assert_eq!(out.code(), Some(1), "{out}");
    assert!(
        out.stderr.contains(needle),
        "stderr lacks {needle:?}: {out}"
    );
}

#[test]
fn client_errors_exit_1_with_a_message() {
    let tmp = Scratch::new();
    // Server not running.
    let out =
        run(command(&["entry", "list", "--server", &dead_url()])
            .env("CLAVITOR_TOKEN", "clv_whatever"));
    exit_1_saying(&out, "cannot connect");
    assert!(out.stdout.is_empty(), "{out}");

    // No token anywhere: says how to give one.
    let out = run(command(&["entry", "list", "--server", &dead_url()])
        .env("HOME", tmp.path().join("nothing-here")));
    exit_1_saying(&out, "--token-file");

    // Against a live server: an unknown entry, an unknown id, a bad token, malformed input.
    let server = serve(&tmp.data());
    let to_server = server_args(&server.url);
    let read = "clavitor://00000000-0000-4000-8000-000000000000/password";
    for (args, token, needle) in [
        (
            &["entry", "get", "no-such-entry"][..],
            server.token.as_str(),
            "no-such-entry",
        ),
        (&["read", read], &server.token, "404"),
        (&["entry", "list"], "clv_not_a_real_token", "401"),
        (
            &["entry", "add", "x", "--field", "k:nonsense=v"],
            &server.token,
            "400",
        ),
    ] {
        let mut cmd = command(args);
        cmd.args(&to_server).env("CLAVITOR_TOKEN", token);
        exit_1_saying(&run(&mut cmd), needle);
    }
}

#[test]
fn init_prints_the_token_once_and_refuses_to_overwrite() {
    let tmp = Scratch::new();
    let data = tmp.data();
    let d = data.to_str().unwrap();
    let out = run(&mut command_for(
        &data,
        &["init", "--data-dir", d, "--json"],
    ))
    .ok();
    let v = out.json();
    let token = v["owner_token"].as_str().unwrap_or_else(|| panic!("{out}"));
    assert!(token.starts_with("clv_"), "{out}");
    assert_eq!(
        v.as_object().map(|o| o.len()),
        Some(1),
        "only the token: {out}"
    );
    assert_eq!(mode(&data.join("master.key")), 0o600);
    // The token went to the config dir's token file, not into the data dir.
    assert!(!data.join("owner.token").exists());
    let token_file = token_file_of(&data);
    assert_eq!(mode(&token_file), 0o600);
    assert_eq!(std::fs::read_to_string(&token_file).unwrap().trim(), token);
    let key_before = std::fs::read(data.join("master.key")).unwrap();

    let again = run(&mut command_for(
        &data,
        &["init", "--data-dir", d, "--json"],
    ));
    exit_1_saying(&again, "refusing to overwrite");
    assert!(
        again.stdout.is_empty(),
        "no token on a refused init: {again}"
    );
    assert_eq!(
        std::fs::read(data.join("master.key")).unwrap(),
        key_before,
        "key untouched"
    );

    // A second vault refuses to overwrite the first one's token file, and says how to avoid
    // it; nothing of the second vault is left behind.
    let other = tmp.path().join("text");
    let o = other.to_str().unwrap();
    let out = run(&mut command_for(&data, &["init", "--data-dir", o]));
    exit_1_saying(&out, "--owner-token-out");
    assert!(out.stderr.contains(token_file.to_str().unwrap()), "{out}");
    assert!(!other.exists(), "a refused init left {}", other.display());
    assert_eq!(std::fs::read_to_string(&token_file).unwrap().trim(), token);
    // Text mode shows the token too, and says where it was saved.
    let elsewhere = tmp.path().join("second.token");
    let out = run(&mut command_for(
        &data,
        &[
            "init",
            "--data-dir",
            o,
            "--owner-token-out",
            elsewhere.to_str().unwrap(),
        ],
    ))
    .ok();
    let second = std::fs::read_to_string(&elsewhere).unwrap();
    assert!(out.stdout.contains(second.trim()), "{out}");
    assert!(out.stdout.contains(elsewhere.to_str().unwrap()), "{out}");
    // The server started on the first vault accepts its token.
    let server = serve(&data);
    assert_eq!(server.token, token, "read from the token file");
    let list = run(command(&["entry", "list", "--json"])
        .args(server_args(&server.url))
        .env("CLAVITOR_TOKEN", token))
    .ok();
    assert_eq!(list.json()["entries"], serde_json::json!([]));
}

#[test]
fn token_files_must_be_private() {
    let tmp = Scratch::new();
    let token = init(&tmp.data());
    let server = serve(&tmp.data());
    let tf = tmp.path().join("token");
    std::fs::write(&tf, format!("{token}\n")).unwrap();
    chmod(&tf, 0o644);
    let tfs = tf.to_str().unwrap();
    let list = || {
        let mut cmd = command(&["entry", "list", "--token-file", tfs]);
        cmd.args(server_args(&server.url));
        run(&mut cmd)
    };

    let out = list();
    exit_1_saying(&out, "chmod 600");
    assert!(out.stderr.contains(tfs), "names the file: {out}");
    assert!(
        !out.stderr.contains(&token),
        "never echoes the token: {out}"
    );

    chmod(&tf, 0o600);
    list().ok();
}
