//! A team set up from the CLI, through the binary: users, groups, `login`, members' agents,
//! a deactivation and a reactivation, a user's token rotation; `--json` on reads and escaped
//! human output.

use crate::helpers::{
    Output, Scratch, Vault, command, command_for, mode, run, serve, server_args, with_config_home,
};
use std::path::Path;

/// `clavitor ARGS` against `server` as the owner (the default token file of `data`).
fn owner(data: &Path, server: &Vault, args: &[&str]) -> Output {
    let mut cmd = command_for(data, args);
    cmd.args(server_args(&server.url));
    run(&mut cmd)
}

/// `clavitor ARGS` against `server` with `home` as the config home (a person's own machine).
fn at_home(home: &Path, server: &Vault, args: &[&str]) -> Output {
    let mut cmd = command(args);
    with_config_home(&mut cmd, home);
    cmd.args(server_args(&server.url));
    run(&mut cmd)
}

/// A running vault whose owner added "prod" with a `deploy` and a `billing` credential field.
fn prod_vault() -> (Scratch, Vault) {
    let tmp = Scratch::new();
    let server = serve(&tmp.data());
    owner(
        &tmp.data(),
        &server,
        &[
            "entry",
            "add",
            "prod",
            "-f",
            "deploy_key:credential:deploy=dk-secret",
            "-f",
            "billing_key:credential:billing=bk-secret",
        ],
    )
    .ok();
    (tmp, server)
}

/// `clavitor ARGS` against `server` with `token` in CLAVITOR_TOKEN.
fn as_token(data: &Path, server: &Vault, token: &str, args: &[&str]) -> Output {
    let mut cmd = command_for(data, args);
    cmd.args(server_args(&server.url))
        .env("CLAVITOR_TOKEN", token);
    run(&mut cmd)
}

/// The token of a member `name` the owner adds (email `name@example.com`).
fn add_member(data: &Path, server: &Vault, name: &str) -> String {
    let email = format!("{name}@example.com");
    token_of(
        &owner(
            data,
            server,
            &["user", "add", name, "--email", &email, "--json"],
        )
        .ok(),
    )
}

fn token_of(out: &Output) -> String {
    out.json()["token"].as_str().expect("a token").to_owned()
}

#[test]
fn a_team_is_set_up_and_changed_from_the_cli() {
    let (tmp, server) = prod_vault();
    let data = tmp.data();
    let admin = token_of(
        &owner(
            &data,
            &server,
            &[
                "user",
                "add",
                "adm",
                "--email",
                "adm@example.com",
                "--role",
                "admin",
                "--json",
            ],
        )
        .ok(),
    );
    // The admin adds the members and groups; the owner, who holds the keys, adds members.
    let alice = token_of(
        &as_token(
            &data,
            &server,
            &admin,
            &[
                "user",
                "add",
                "alice",
                "--email",
                "alice@example.com",
                "--json",
            ],
        )
        .ok(),
    );
    let out = as_token(
        &data,
        &server,
        &admin,
        &["user", "add", "bob", "--email", "bob@example.com"],
    )
    .ok();
    assert!(out.stdout.contains("token (shown once):"), "{out}");
    for (g, s) in [("deployers", "deploy"), ("billing", "billing")] {
        let out = as_token(&data, &server, &admin, &["group", "add", g, "--scope", s]).ok();
        assert!(out.stdout.contains(g), "{out}");
    }
    let refused = as_token(
        &data,
        &server,
        &admin,
        &["group", "add-member", "deployers", "alice"],
    );
    assert_eq!(
        refused.code(),
        Some(1),
        "the admin holds no deploy key: {refused}"
    );
    assert!(refused.stderr.contains("scope_key_not_held"), "{refused}");
    owner(
        &data,
        &server,
        &["group", "add-member", "deployers", "alice"],
    )
    .ok();
    owner(&data, &server, &["group", "add-member", "billing", "bob"]).ok();

    // Alice logs in on her own machine with the token she was given.
    let home = tmp.path().join("alice-home");
    std::fs::create_dir_all(&home).unwrap();
    let given = tmp.path().join("alice.token");
    std::fs::write(&given, format!("{alice}\n")).unwrap();
    crate::helpers::chmod(&given, 0o600);
    let given_s = given.to_str().unwrap();
    let out = at_home(&home, &server, &["login", "--token-file", given_s]).ok();
    assert!(
        out.stdout.contains("Logged in as alice (user, member)"),
        "{out}"
    );
    let stored = crate::helpers::token_file_in(&home);
    assert_eq!(std::fs::read_to_string(&stored).unwrap().trim(), alice);
    assert_eq!(mode(&stored), 0o600);
    let again = at_home(&home, &server, &["login", "--token-file", given_s]);
    assert_eq!(again.code(), Some(1), "{again}");
    assert!(again.stderr.contains("--force"), "{again}");
    at_home(
        &home,
        &server,
        &["login", "--token-file", given_s, "--force"],
    )
    .ok();

    // She reads her group's scope, not another's, and makes an agent within hers.
    let got = at_home(&home, &server, &["read", "clavitor://prod/deploy_key"]).ok();
    assert_eq!(got.stdout, "dk-secret\n");
    let denied = at_home(&home, &server, &["read", "clavitor://prod/billing_key"]);
    assert_eq!(denied.code(), Some(1), "{denied}");
    let outside = at_home(
        &home,
        &server,
        &["agent", "add", "wide", "--scope", "billing"],
    );
    assert_eq!(outside.code(), Some(1), "{outside}");
    let bot = token_of(
        &at_home(
            &home,
            &server,
            &["agent", "add", "alice-bot", "--scope", "deploy", "--json"],
        )
        .ok(),
    );
    let got = as_token(
        &data,
        &server,
        &bot,
        &["read", "clavitor://prod/deploy_key"],
    )
    .ok();
    assert_eq!(got.stdout, "dk-secret\n");

    // Lists: JSON for programs, escaped text for people.
    let evil = "mallory\u{202E}txt.exe";
    owner(
        &data,
        &server,
        &["user", "add", evil, "--email", "m@example.com"],
    )
    .ok();
    let list = owner(&data, &server, &["user", "list", "--json"])
        .ok()
        .json();
    let names: Vec<&str> = list["users"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["adm", "alice", "bob", evil]);
    let human = owner(&data, &server, &["user", "list"]).ok();
    assert!(human.stdout.contains("mallory\\u{202E}txt.exe"), "{human}");
    assert!(!human.stdout.contains('\u{202E}'), "{human}");
    let groups = owner(&data, &server, &["group", "list", "--json"])
        .ok()
        .json();
    assert_eq!(groups["groups"].as_array().unwrap().len(), 2);
    let mine = at_home(&home, &server, &["group", "list", "--json"])
        .ok()
        .json();
    assert_eq!(mine["groups"][0]["name"], "deployers");

    // Deactivated: she and her agent stop at once; reactivated: a new token, the agent not.
    let out = as_token(&data, &server, &admin, &["user", "deactivate", "alice"]).ok();
    assert!(out.stdout.contains("deactivated alice"), "{out}");
    for refused in [
        at_home(&home, &server, &["read", "clavitor://prod/deploy_key"]),
        as_token(
            &data,
            &server,
            &bot,
            &["read", "clavitor://prod/deploy_key"],
        ),
    ] {
        assert_eq!(refused.code(), Some(1), "{refused}");
        assert!(refused.stderr.contains("401"), "{refused}");
    }
    let back = token_of(&owner(&data, &server, &["user", "activate", "alice", "--json"]).ok());
    assert_ne!(back, alice);
    let got = as_token(
        &data,
        &server,
        &back,
        &["read", "clavitor://prod/deploy_key"],
    )
    .ok();
    assert_eq!(got.stdout, "dk-secret\n");
    assert_eq!(
        as_token(
            &data,
            &server,
            &bot,
            &["read", "clavitor://prod/deploy_key"]
        )
        .code(),
        Some(1)
    );

    // Bob rotates his own token: his token file gets the new one.
    let bob_file = tmp.path().join("bob.token");
    let bob_list = owner(&data, &server, &["user", "list", "--json"])
        .ok()
        .json();
    assert!(
        bob_list["users"]
            .as_array()
            .unwrap()
            .iter()
            .any(|u| u["name"] == "bob")
    );
    let bob = token_of(
        &as_token(
            &data,
            &server,
            &admin,
            &["user", "add", "bob2", "--email", "b2@example.com", "--json"],
        )
        .ok(),
    );
    std::fs::write(&bob_file, format!("{bob}\n")).unwrap();
    crate::helpers::chmod(&bob_file, 0o600);
    let out = owner(
        &data,
        &server,
        &[
            "token",
            "rotate",
            "--token-file",
            bob_file.to_str().unwrap(),
        ],
    )
    .ok();
    assert!(out.stdout.contains("Rotated the token"), "{out}");
    let new = std::fs::read_to_string(&bob_file)
        .unwrap()
        .trim()
        .to_owned();
    assert_ne!(new, bob);
    assert_eq!(
        as_token(&data, &server, &bob, &["group", "list"]).code(),
        Some(1),
        "the old token is refused"
    );
    as_token(&data, &server, &new, &["group", "list"]).ok();
}

/// `clavitor group set-scopes GROUP SCOPE...`: a member reads an added scope at once and no
/// longer a removed one; `--json` answers the group; an unknown group is named.
#[test]
fn a_groups_scopes_are_changed_from_the_cli() {
    let (tmp, server) = prod_vault();
    let data = tmp.data();
    let alice = add_member(&data, &server, "alice");
    owner(
        &data,
        &server,
        &["group", "add", "deployers", "--scope", "deploy"],
    )
    .ok();
    owner(
        &data,
        &server,
        &["group", "add-member", "deployers", "alice"],
    )
    .ok();
    let read = |field: &str| {
        as_token(
            &data,
            &server,
            &alice,
            &["read", &format!("clavitor://prod/{field}")],
        )
    };
    assert_eq!(read("billing_key").code(), Some(1));

    let out = owner(
        &data,
        &server,
        &["group", "set-scopes", "deployers", "deploy", "billing"],
    )
    .ok();
    assert!(
        out.stdout.contains("deployers") && out.stdout.contains("scopes billing,deploy"),
        "{out}"
    );
    assert_eq!(read("billing_key").ok().stdout, "bk-secret\n");

    let v = owner(
        &data,
        &server,
        &["group", "set-scopes", "deployers", "billing", "--json"],
    )
    .ok()
    .json();
    assert_eq!(v["scopes"], serde_json::json!(["billing"]));
    let denied = read("deploy_key");
    assert_eq!(denied.code(), Some(1), "{denied}");
    assert!(denied.stderr.contains("field_not_found"), "{denied}");
    assert_eq!(read("billing_key").ok().stdout, "bk-secret\n");

    let unknown = owner(&data, &server, &["group", "set-scopes", "nope", "x"]);
    assert_eq!(unknown.code(), Some(1), "{unknown}");
    assert!(
        unknown.stderr.contains("no group named \"nope\""),
        "{unknown}"
    );
}
