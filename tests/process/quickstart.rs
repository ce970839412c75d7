//! The README's quick start, end to end: `serve` in an empty directory, then the client
//! commands against it.

use crate::edition::{SCHEME, TITLE, role_lines};
use crate::helpers::{
    Scratch, VERSION, Vault, command_for, config_home, mode, run, serve_with, server_args,
    token_file_of, with_config_home,
};
use std::time::Duration;

#[test]
fn serve_initialises_the_default_data_dir_and_the_cli_works_against_it() {
    let tmp = Scratch::new();
    let cwd = tmp.path();
    let data = cwd.join("clavitor-data");
    let command = |args: &[&str]| command_for(&data, args);
    let mut serve = serve_with(&["--listen", "127.0.0.1:0"]);
    with_config_home(&mut serve, &config_home(&data));
    let mut server = Vault::start(serve.current_dir(cwd), &data);

    // Start-up lines, exactly and in order.
    let lines = &server.stdout_lines;
    let mut want = vec![format!("Starting Clavitor Vault v{VERSION} - {TITLE}")];
    want.extend(role_lines());
    assert_eq!(lines.len(), want.len() + 1, "{lines:?}");
    assert_eq!(lines[..want.len()], want[..]);
    let listening = &lines[want.len()];
    let rest = listening
        .strip_prefix(&format!("listening on {SCHEME}://127.0.0.1:"))
        .unwrap_or_else(|| panic!("{listening:?}"));
    assert!(rest.parse::<u16>().is_ok_and(|p| p != 0), "{rest:?}");

    // The data dir and its private files; no token among them.
    assert!(data.join("vault.db").is_file());
    assert_eq!(mode(&data), 0o700);
    assert_eq!(mode(&data.join("master.key")), 0o600);
    assert_eq!(mode(&data.join("vault.db")), 0o600);
    assert!(!data.join("owner.token").exists());
    assert_eq!(
        std::fs::metadata(data.join("master.key")).unwrap().len(),
        32
    );
    // The owner token is in the config dir's token file, private, in a private dir.
    let token_file = token_file_of(&data);
    assert_eq!(server.token_file.as_ref(), Some(&token_file));
    assert!(
        server.token.starts_with("clv_"),
        "the token file holds the owner token"
    );
    assert_eq!(mode(&token_file), 0o600);
    assert_eq!(mode(token_file.parent().unwrap()), 0o700);
    // Stderr is not a terminal here (a log, e.g. journald's): it says where the token is,
    // never the token.
    assert!(
        server.wait_stderr(&token_file.display().to_string(), Duration::from_secs(5)),
        "{}",
        server.stderr()
    );
    assert!(
        !server.stderr().contains(&server.token),
        "the token was logged"
    );

    // The client finds the token file by itself; only the port is non-default.
    let url = server.url.clone();
    let server_args = server_args(&url);
    // `--server URL` goes before any `-- CMD`, which belongs to the child.
    let with_server = |args: &[&str]| -> Vec<String> {
        let mut all: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        let at = all.iter().position(|a| a == "--").unwrap_or(all.len());
        all.splice(at..at, server_args.iter().cloned());
        all
    };
    let cli = |args: &[&str]| {
        let all = with_server(args);
        let all: Vec<&str> = all.iter().map(String::as_str).collect();
        run(command(&all).current_dir(cwd))
    };

    let id = cli(&[
        "entry",
        "add",
        "prod-db",
        "--url",
        "postgres://db.internal",
        "--username",
        "app",
        "--field",
        "password=s3cret=with=equals",
        "--field",
        "key:credential:ci=ci-key-123",
    ])
    .ok()
    .stdout
    .trim()
    .to_owned();
    assert_eq!(id.len(), 36, "entry add prints the id: {id:?}");

    // List, text and JSON; neither ever shows a value.
    let text = cli(&["entry", "list"]).ok();
    assert!(
        text.stdout.contains(&id) && text.stdout.contains("prod-db"),
        "{text}"
    );
    assert!(
        text.stdout.contains("password:vault") && text.stdout.contains("key:credential:ci"),
        "{text}"
    );
    assert!(
        !text.stdout.contains("s3cret") && !text.stdout.contains("ci-key-123"),
        "{text}"
    );
    let json = cli(&["entry", "list", "--json"]).ok();
    let entries = json.json()["entries"].as_array().cloned().unwrap();
    assert_eq!(entries.len(), 1, "{json}");
    assert_eq!(entries[0]["id"], id.as_str());
    assert_eq!(entries[0]["title"], "prod-db");
    assert!(!json.stdout.contains("s3cret"), "{json}");

    // Get by title.
    let got = cli(&["entry", "get", "prod-db"]).ok();
    assert!(
        got.stdout.contains(&id) && got.stdout.contains("postgres://db.internal"),
        "{got}"
    );
    assert!(!got.stdout.contains("s3cret"), "{got}");
    let got = cli(&["entry", "get", "prod-db", "--json"]).ok().json();
    assert_eq!(got["username"], "app");

    // Read a value.
    let read = cli(&["read", "clavitor://prod-db/password"]).ok();
    assert_eq!(read.stdout, "s3cret=with=equals\n");
    let read = cli(&["read", "-n", "clavitor://prod-db/key"]).ok();
    assert_eq!(read.stdout, "ci-key-123");
    let read = cli(&["read", &format!("clavitor://{id}/key"), "--json"])
        .ok()
        .json();
    assert_eq!(read["value"], "ci-key-123");
    assert_eq!(read["tier"], "credential");

    // Run: the secret reaches the child's environment; the child's exit code comes back.
    for (script, code) in [
        ("test \"$DB_PASS\" = 's3cret=with=equals'", 0),
        ("test \"$DB_PASS\" = wrong", 1),
    ] {
        let out = cli(&[
            "run",
            "--env",
            "DB_PASS=clavitor://prod-db/password",
            "--",
            "sh",
            "-c",
            script,
        ]);
        assert_eq!(out.code(), Some(code), "{out}");
    }
    let out = cli(&["run", "--", "sh", "-c", "exit 7"]);
    assert_eq!(out.code(), Some(7), "{out}");
    // A reference already in the environment is resolved too.
    let out = run(command(&[])
        .args(with_server(&[
            "run",
            "--",
            "sh",
            "-c",
            "test \"$K\" = ci-key-123",
        ]))
        .current_dir(cwd)
        .env("K", "clavitor://prod-db/key"));
    assert_eq!(out.code(), Some(0), "{out}");
    // An unresolvable reference fails before the child runs.
    let out = cli(&[
        "run",
        "--env",
        "X=clavitor://nope/password",
        "--",
        "sh",
        "-c",
        "exit 0",
    ]);
    assert_eq!(out.code(), Some(1), "{out}");
    assert!(out.stderr.contains("nope"), "{out}");

    // Agents: add, list, use, revoke.
    let added = cli(&[
        "agent", "add", "deployer", "--scope", "ci", "--ttl", "1h", "--json",
    ])
    .ok()
    .json();
    let agent_id = added["id"].as_str().unwrap().to_owned();
    let agent_token = added["token"].as_str().unwrap().to_owned();
    let list = cli(&["agent", "list"]).ok();
    assert!(
        list.stdout.contains("deployer") && list.stdout.contains("active"),
        "{list}"
    );
    assert!(
        !list.stdout.contains(&agent_token),
        "agent list must not show tokens: {list}"
    );
    let as_agent = || {
        run(command(&[])
            .args(with_server(&["read", "clavitor://prod-db/key"]))
            .current_dir(cwd)
            .env("CLAVITOR_TOKEN", &agent_token))
    };
    let read = as_agent();
    assert_eq!(read.code(), Some(0), "{read}");
    assert_eq!(read.stdout, "ci-key-123\n");
    let revoked = cli(&["agent", "revoke", "deployer"]).ok();
    assert!(revoked.stdout.contains(&agent_id), "{revoked}");
    let list = cli(&["agent", "list", "--json"]).ok().json();
    let me = list["agents"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["id"] == agent_id.as_str())
        .cloned()
        .unwrap();
    assert_eq!(me["status"], "revoked");
    let read = as_agent();
    assert_eq!(
        read.code(),
        Some(1),
        "a revoked token stops working at once: {read}"
    );

    // Remove.
    let rm = cli(&["entry", "rm", "prod-db"]).ok();
    assert!(rm.stdout.contains(&id), "{rm}");
    let list = cli(&["entry", "list", "--json"]).ok().json();
    assert_eq!(list["entries"].as_array().map(Vec::len), Some(0), "{list}");
    let gone = cli(&["entry", "get", "prod-db"]);
    assert_eq!(gone.code(), Some(1), "{gone}");

    // Ctrl-C's polite cousin: a clean stop.
    server.stop(Duration::from_secs(5));
}
