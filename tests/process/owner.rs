//! `clavitor owner rotate`, through the binary: the token file gets the new token, the old one
//! stops, and an answer lost on the way is finished by running the command again.

use crate::edition;
use crate::helpers::{Api, Scratch, Vault, command_for, run, serve, server_args, token_file_of};
use serde_json::json;
use std::path::Path;

/// `clavitor ARGS --server URL` with `data`'s config home (and so its token file).
fn cli(data: &Path, server: &Vault, args: &[&str]) -> crate::helpers::Output {
    run(command_for(data, args).args(server_args(&server.url)))
}

/// `clavitor ARGS --server URL` with `token` in CLAVITOR_TOKEN.
fn cli_as(data: &Path, server: &Vault, token: &str, args: &[&str]) -> crate::helpers::Output {
    run(command_for(data, args)
        .args(server_args(&server.url))
        .env("CLAVITOR_TOKEN", token))
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap().trim().to_owned()
}

fn pending(token_file: &Path) -> std::path::PathBuf {
    token_file.with_file_name("token.new")
}

/// A vault with a credential field in scope `ci` and an agent holding it; returns
/// `(server, agent token)`.
fn vault_in_use(data: &Path) -> (Vault, String) {
    let server = serve(data);
    cli(
        data,
        &server,
        &["entry", "add", "db", "-f", "key:credential:ci=ci-secret"],
    )
    .ok();
    let agent = cli(
        data,
        &server,
        &["agent", "add", "bot", "--scope", "ci", "--json"],
    )
    .ok()
    .json()["token"]
        .as_str()
        .unwrap()
        .to_owned();
    (server, agent)
}

#[test]
fn owner_rotate_stores_the_new_token_and_the_old_one_stops() {
    let tmp = Scratch::new();
    let data = tmp.data();
    let (server, agent) = vault_in_use(&data);
    let token_file = token_file_of(&data);
    let old = read(&token_file);

    let out = cli(&data, &server, &["owner", "rotate"]).ok();
    assert!(out.stdout.contains(token_file.to_str().unwrap()), "{out}");
    let new = read(&token_file);
    assert!(new.starts_with("clv_") && new != old);
    assert!(
        !out.stdout.contains(&new),
        "not a terminal: the token is not printed: {out}"
    );
    assert_eq!(crate::helpers::mode(&token_file), 0o600);
    assert!(!pending(&token_file).exists(), "token.new left behind");

    // The client uses the new token by itself; the old one is refused; the agent carries on.
    let got = cli(&data, &server, &["read", "clavitor://db/key"]).ok();
    assert_eq!(got.stdout, "ci-secret\n");
    let refused = cli_as(&data, &server, &old, &["entry", "list"]);
    assert_eq!(refused.code(), Some(1), "{refused}");
    assert!(refused.stderr.contains("401"), "{refused}");
    let got = cli_as(&data, &server, &agent, &["read", "clavitor://db/key"]).ok();
    assert_eq!(got.stdout, "ci-secret\n");
    // A second rotation works from the new token.
    cli(&data, &server, &["owner", "rotate", "--json"]).ok();
    assert_ne!(read(&token_file), new);
}

/// The request reached the server but its answer was lost: the token file still holds the old
/// token, `token.new` the new one, which the server already uses. Running the command again
/// finishes the rotation.
#[test]
fn a_lost_answer_is_finished_by_running_the_command_again() {
    let tmp = Scratch::new();
    let data = tmp.data();
    let (server, agent) = vault_in_use(&data);
    let token_file = token_file_of(&data);
    let old = read(&token_file);
    // What the CLI does before it sends: make the token and store it, 0600, beside the file.
    let new = clavitor::crypto::Token::generate().expose().to_owned();
    crate::common::files::write_file(&pending(&token_file), &format!("{new}\n"), 0o600);
    // The request it sends, which went through; its answer never arrived.
    let rt = crate::helpers::runtime();
    let status = rt.block_on(async {
        edition::reaching(reqwest::Client::builder())
            .build()
            .unwrap()
            .post(format!("{}/v1/owner/rotate", server.url))
            .bearer_auth(&old)
            .json(&json!({ "token": new }))
            .send()
            .await
            .unwrap()
            .status()
    });
    assert_eq!(status, 200);
    assert_eq!(
        read(&token_file),
        old,
        "the vault now only opens with token.new"
    );

    let out = cli(&data, &server, &["owner", "rotate"]).ok();
    assert!(
        out.stderr.contains("finishing an earlier rotation"),
        "{out}"
    );
    assert_eq!(read(&token_file), new);
    assert!(!pending(&token_file).exists());
    let got = cli(&data, &server, &["read", "clavitor://db/key"]).ok();
    assert_eq!(got.stdout, "ci-secret\n");
    let (st, _) = rt.block_on(Api::new(&server.url, &old).get("/v1/entries"));
    assert_eq!(st, 401);
    let got = cli_as(&data, &server, &agent, &["read", "clavitor://db/key"]).ok();
    assert_eq!(got.stdout, "ci-secret\n");
}

/// The CLI stored its token but the server never heard of it (e.g. it was down): the next run
/// sends that same token, and the rotation completes.
#[test]
fn a_rotation_the_server_never_saw_completes_with_the_stored_token() {
    let tmp = Scratch::new();
    let data = tmp.data();
    let (server, _) = vault_in_use(&data);
    let token_file = token_file_of(&data);
    let new = clavitor::crypto::Token::generate().expose().to_owned();
    crate::common::files::write_file(&pending(&token_file), &format!("{new}\n"), 0o600);

    // A server that is not there: the command fails, keeps both files, says how to finish.
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", l.local_addr().unwrap())
    };
    let out = run(&mut command_for(
        &data,
        &["owner", "rotate", "--server", &dead],
    ));
    assert_eq!(out.code(), Some(1), "{out}");
    assert!(
        out.stderr.contains("run `clavitor owner rotate` again"),
        "{out}"
    );
    assert_eq!(read(&pending(&token_file)), new);

    cli(&data, &server, &["owner", "rotate"]).ok();
    assert_eq!(read(&token_file), new);
    let got = cli(&data, &server, &["read", "clavitor://db/key"]).ok();
    assert_eq!(got.stdout, "ci-secret\n");
}
