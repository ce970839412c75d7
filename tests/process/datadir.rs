//! The data dir, end to end through the binary: one process at a time, the key that belongs to
//! it, nothing half made, private modes, the owner token kept outside it, and messages that
//! say each cause once.

use crate::common::process::StartFailure;
use crate::helpers::{
    Scratch, Vault, chmod, clavitor, command, command_for, init, mode, run, serve, serve_cmd,
    server_args, token_file_in, token_file_of, with_config_home,
};
use std::path::Path;
use std::time::Duration;

/// Expects `serve` to have exited 1 without listening; returns its stderr.
#[track_caller]
fn refused(res: Result<Vault, StartFailure>) -> String {
    let f = match res {
        Ok(s) => panic!("serve started: {:?}\n{}", s.stdout_lines, s.stderr()),
        Err(f) => f,
    };
    assert_eq!(f.status.and_then(|s| s.code()), Some(1), "exit 1: {f:#?}");
    assert!(
        !f.stdout_lines.iter().any(|l| l.starts_with("listening on")),
        "{f:#?}"
    );
    f.stderr
}

#[track_caller]
fn refused_on(data: &Path) -> String {
    refused(Vault::spawn(&mut serve_cmd(data), data))
}

#[track_caller]
fn says(text: &str, needles: &[&str]) {
    for n in needles {
        assert!(text.contains(n), "lacks {n:?}: {text}");
    }
}

/// The names in `dir`, sorted.
fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

#[test]
fn a_second_serve_on_the_same_data_dir_is_refused_naming_the_first() {
    let tmp = Scratch::new();
    let data = tmp.data();
    let first = serve(&data);
    let err = refused_on(&data);
    says(
        &err,
        &[
            &format!("data dir {} is in use", data.display()),
            &format!("(pid {})", first.pid()),
            "Fix: stop the other process first",
        ],
    );
    // `init` on it is refused too, and the first server is unharmed.
    let again = run(&mut command_for(
        &data,
        &["init", "--data-dir", data.to_str().unwrap()],
    ));
    assert_eq!(again.code(), Some(1), "{again}");
    let rt = crate::helpers::runtime();
    assert!(rt.block_on(first.api().list()).is_empty());
    // Stopped, the data dir is free again.
    let mut first = first;
    first.stop(Duration::from_secs(5));
    serve(&data);
}

#[test]
fn a_master_key_of_another_vault_is_refused_and_the_right_one_still_works() {
    let tmp = Scratch::new();
    let data = tmp.data();
    let mut server = serve(&data);
    let rt = crate::helpers::runtime();
    let api = server.api();
    let w = rt.block_on(api.create("kept")).unwrap().expect("201");
    server.stop(Duration::from_secs(5));

    let key = data.join("master.key");
    let right = std::fs::read(&key).unwrap();
    // Another 32-byte key: the right length, the wrong vault.
    let wrong: Vec<u8> = right.iter().map(|b| b ^ 0x5a).collect();
    std::fs::write(&key, &wrong).unwrap();
    let err = refused_on(&data);
    says(
        &err,
        &[
            &format!("{} is not the key of the vault in", key.display()),
            "Fix: restore the master.key this vault was created with",
        ],
    );

    // The vault of an older version has no check value: it is checked against its entries.
    {
        let c = rusqlite::Connection::open(data.join("vault.db")).unwrap();
        assert_eq!(c.execute("DELETE FROM settings", []).unwrap(), 1);
    }
    says(&refused_on(&data), &["is not the key of the vault"]);

    std::fs::write(&key, &right).unwrap();
    let server = serve(&data);
    let api = crate::helpers::Api::new(&server.url, &api_token(&data));
    rt.block_on(api.verify(&w));
    // The check value was written back once the key was proven.
    let c = rusqlite::Connection::open(data.join("vault.db")).unwrap();
    let n: i64 = c
        .query_row("SELECT count(*) FROM settings", [], |r| r.get(0))
        .unwrap();
    assert_eq!(n, 1);
}

/// The owner token `serve` saved for `data`.
fn api_token(data: &Path) -> String {
    std::fs::read_to_string(token_file_of(data))
        .unwrap()
        .trim()
        .to_owned()
}

#[test]
fn a_key_without_its_database_is_refused_and_nothing_new_is_made() {
    let tmp = Scratch::new();
    let data = tmp.data();
    init(&data);
    std::fs::remove_file(data.join("vault.db")).unwrap();
    let before = names(&data);
    let db = data.join("vault.db").display().to_string();
    says(
        &refused_on(&data),
        &[&format!("{db} is missing"), "Fix: restore vault.db"],
    );
    assert_eq!(names(&data), before, "serve made something");
    std::fs::write(data.join("vault.db"), b"").unwrap();
    says(&refused_on(&data), &[&format!("{db} is empty")]);
    assert_eq!(std::fs::metadata(&db).unwrap().len(), 0);
}

#[test]
fn a_data_dir_holding_only_an_old_token_is_refused() {
    let tmp = Scratch::new();
    let data = tmp.data();
    std::fs::create_dir(&data).unwrap();
    let old = data.join("owner.token");
    std::fs::write(&old, "clv_somebodys-token\n").unwrap();
    let err = refused_on(&data);
    says(
        &err,
        &[&old.display().to_string(), "holds no vault", "Fix: move"],
    );
    let out = run(&mut command_for(
        &data,
        &["init", "--data-dir", data.to_str().unwrap()],
    ));
    assert_eq!(out.code(), Some(1), "{out}");
    says(&out.stderr, &["holds no vault"]);
    assert_eq!(names(&data), ["owner.token"], "nothing else was made");
    assert!(!token_file_of(&data).exists());
}

#[test]
fn a_failed_init_leaves_nothing_behind_and_an_empty_dir_is_fine() {
    let tmp = Scratch::new();
    let data = tmp.data();
    let d = data.to_str().unwrap();
    // The token cannot be written (its directory would be inside a file): init fails late,
    // after the vault was prepared.
    let blocker = tmp.path().join("blocker");
    std::fs::write(&blocker, "").unwrap();
    let bad = blocker.join("token");
    let out = clavitor(&[
        "init",
        "--data-dir",
        d,
        "--owner-token-out",
        bad.to_str().unwrap(),
    ]);
    assert_eq!(out.code(), Some(1), "{out}");
    assert!(!data.exists(), "a failed init left {d}");
    assert_eq!(
        names(tmp.path()),
        ["blocker"],
        "leftovers beside the data dir"
    );

    // An existing empty directory (as systemd's StateDirectory= makes) is fine.
    std::fs::create_dir(&data).unwrap();
    chmod(&data, 0o755);
    let token = init(&data);
    assert!(token.starts_with("clv_"));
    assert_eq!(mode(&data), 0o700);
    assert_eq!(names(&data), ["clavitor.lock", "master.key", "vault.db"]);
    let server = serve(&data);
    assert_eq!(server.api().base, server.url);
}

/// The unprivileged user the tests run as when they run as root (root ignores mode bits).
const NOBODY: u32 = 65534;

/// systemd's `StateDirectory=` makes the data dir for the service user, in a parent that user
/// cannot write: init stages inside the data dir instead of beside it.
#[test]
fn init_works_in_an_empty_data_dir_whose_parent_is_not_writable() {
    use std::os::unix::process::CommandExt;
    let tmp = Scratch::new();
    let parent = tmp.path().join("lib");
    let data = parent.join("clavitor");
    std::fs::create_dir_all(&data).unwrap();
    // A new directory is owned by the effective uid.
    let as_root = std::os::unix::fs::MetadataExt::uid(&std::fs::metadata(&data).unwrap()) == 0;
    let home = tmp.path().join("config");
    std::fs::create_dir_all(&home).unwrap();
    if as_root {
        chmod(tmp.path(), 0o755);
        for p in [&data, &home] {
            std::os::unix::fs::chown(p, Some(NOBODY), Some(NOBODY)).unwrap();
        }
    }
    let mut cmd = command(&["init", "--data-dir", data.to_str().unwrap()]);
    with_config_home(&mut cmd, &home);
    if as_root {
        cmd.uid(NOBODY).gid(NOBODY);
    }
    chmod(&parent, 0o555);
    let out = run(&mut cmd);
    chmod(&parent, 0o755);
    let out = out.ok();
    assert!(out.stdout.contains("clv_"), "{out}");
    assert_eq!(names(&data), ["clavitor.lock", "master.key", "vault.db"]);
    assert_eq!(names(&parent), ["clavitor"], "nothing beside the data dir");
    assert_eq!(mode(&data), 0o700);
    assert!(token_file_in(&home).exists());
    serve(&data);
}

#[test]
fn files_are_private_and_wider_modes_are_narrowed_with_a_line() {
    let tmp = Scratch::new();
    let data = tmp.data();
    let mut server = serve(&data);
    let rt = crate::helpers::runtime();
    rt.block_on(server.api().create("x")).unwrap().expect("201");
    // While it runs: the database's side files exist, and are private like it.
    for f in ["vault.db", "vault.db-wal", "vault.db-shm", "master.key"] {
        assert_eq!(mode(&data.join(f)), 0o600, "{f}");
    }
    assert_eq!(mode(&data), 0o700);
    server.stop(Duration::from_secs(5));

    chmod(&data, 0o755);
    chmod(&data.join("vault.db"), 0o644);
    let server = serve(&data);
    for needle in [
        format!("{} had mode 0755; made it 0700", data.display()),
        format!(
            "{} had mode 0644; made it 0600",
            data.join("vault.db").display()
        ),
    ] {
        assert!(
            server.wait_stderr(&needle, Duration::from_secs(5)),
            "{needle}\n{}",
            server.stderr()
        );
    }
    assert_eq!(mode(&data), 0o700);
    assert_eq!(mode(&data.join("vault.db")), 0o600);
}

#[test]
fn a_directory_where_the_key_should_be_is_called_a_directory() {
    let tmp = Scratch::new();
    let data = tmp.data();
    init(&data);
    let key = data.join("master.key");
    std::fs::remove_file(&key).unwrap();
    std::fs::create_dir(&key).unwrap();
    let err = refused_on(&data);
    says(&err, &[&format!("{} is a directory", key.display())]);
    assert!(!err.contains("mode"), "{err}");
}

/// Each cause is said once: the CLI prints the whole chain, so an error may not both embed its
/// cause and expose it as its source.
#[test]
fn causes_are_said_once() {
    let tmp = Scratch::new();
    let missing = tmp.path().join("nope.key");
    let out = clavitor(&[
        "init",
        "--data-dir",
        tmp.data().to_str().unwrap(),
        "--master-key",
        missing.to_str().unwrap(),
    ]);
    assert_eq!(out.code(), Some(1), "{out}");
    assert_eq!(
        out.stderr,
        format!(
            "error: {}: No such file or directory (os error 2)\n",
            missing.display()
        )
    );

    let data = tmp.data();
    init(&data);
    let db = data.join("vault.db");
    std::fs::write(&db, vec![0x5a; 8192]).unwrap();
    let err = refused_on(&data);
    let line = format!(
        "error: the database at {} could not be opened: file is not a database\n",
        db.display()
    );
    assert!(err.ends_with(&line), "{err}");
    assert_eq!(err.matches("file is not a database").count(), 1, "{err}");
}

#[test]
fn serve_and_init_keep_the_owner_token_outside_the_data_dir() {
    let tmp = Scratch::new();
    let data = tmp.data();
    // --owner-token-out names the file; the config dir's is not touched.
    let out_file = tmp.path().join("owner-token");
    let server = Vault::start(
        serve_cmd(&data).args(["--owner-token-out", out_file.to_str().unwrap()]),
        &data,
    );
    assert_eq!(server.token_file.as_ref(), Some(&out_file));
    assert!(server.token.starts_with("clv_"));
    assert_eq!(mode(&out_file), 0o600);
    assert!(!token_file_of(&data).exists());
    drop(server);

    // Never into the data dir, never over an existing file; nothing made when refused.
    let other = tmp.path().join("other");
    let o = other.to_str().unwrap();
    for (target, needle) in [
        (other.join("owner.token"), "is inside the data dir"),
        (out_file.clone(), "refusing to overwrite"),
    ] {
        let out = run(&mut command(&[
            "init",
            "--data-dir",
            o,
            "--owner-token-out",
            target.to_str().unwrap(),
        ]));
        assert_eq!(out.code(), Some(1), "{out}");
        says(&out.stderr, &[needle, "Fix:"]);
        assert!(!other.exists(), "{out}");
    }
}

#[test]
fn an_old_owner_token_in_the_data_dir_is_moved_out_at_start() {
    let tmp = Scratch::new();
    let data = tmp.data();
    // An older version's layout: the token inside the data dir (even readable by others).
    let token = init(&data);
    let token_file = token_file_of(&data);
    let old = data.join("owner.token");
    std::fs::rename(&token_file, &old).unwrap();
    chmod(&old, 0o644);

    let server = serve(&data);
    assert!(!old.exists());
    assert_eq!(server.token, token, "moved to the token file");
    assert_eq!(mode(&token_file), 0o600);
    let line = format!(
        "moved the owner token out of the data dir: {} -> {}",
        old.display(),
        token_file.display()
    );
    assert!(
        server.wait_stderr(&line, Duration::from_secs(5)),
        "{}",
        server.stderr()
    );
    // The client finds it there.
    let out =
        run(command_for(&data, &["entry", "list", "--json"]).args(server_args(&server.url))).ok();
    assert_eq!(out.json()["entries"], serde_json::json!([]));
    drop(server);

    // Where the token file already holds another token, the start is refused and the old
    // token stays where it is (never lost).
    std::fs::write(&old, format!("{token}\n")).unwrap();
    std::fs::write(&token_file, "clv_another-vaults-token\n").unwrap();
    let err = refused_on(&data);
    says(
        &err,
        &[
            &old.display().to_string(),
            "already exists and holds another token",
            "Fix: pass --owner-token-out FILE",
        ],
    );
    assert!(old.exists());
    // Following the fix, it starts.
    let elsewhere = tmp.path().join("moved.token");
    let server = Vault::start(
        serve_cmd(&data).args(["--owner-token-out", elsewhere.to_str().unwrap()]),
        &data,
    );
    assert_eq!(server.token, token);
    assert!(!old.exists());
}

#[test]
fn a_backup_pop_init_makes_no_owner_and_writes_no_token() {
    let tmp = Scratch::new();
    let primary = tmp.path().join("primary").join("data");
    std::fs::create_dir_all(primary.parent().unwrap()).unwrap();
    let owner = init(&primary);
    let backup = tmp.data();
    let key = primary.join("master.key");
    let args = [
        "init",
        "--data-dir",
        backup.to_str().unwrap(),
        "--master-key",
        key.to_str().unwrap(),
    ];
    let mut json_args = args.to_vec();
    json_args.push("--json");
    let out = run(&mut command_for(&backup, &json_args)).ok();
    assert_eq!(out.json(), serde_json::json!({"owner_token": null}));
    assert!(!token_file_of(&backup).exists(), "a token was written");
    // Text mode says so.
    let other = tmp.path().join("b2").join("data");
    let mut text_args = args.to_vec();
    text_args[2] = other.to_str().unwrap();
    let out = run(&mut command(&text_args)).ok();
    says(
        &out.stdout,
        &["no owner of its own", "come from the primary"],
    );
    // Served alone it knows no owner at all: the primary's token arrives only by replication.
    let server = serve(&backup);
    assert!(server.token.is_empty());
    let rt = crate::helpers::runtime();
    let (st, _) = rt.block_on(crate::helpers::Api::new(&server.url, &owner).get("/v1/agents"));
    assert_eq!(st, 401);
}
