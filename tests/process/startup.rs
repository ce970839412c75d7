//! `serve` refuses to start on an unsafe or broken data dir, and says which file and how to fix.

use crate::common::process::StartFailure;
use crate::helpers::{Scratch, Vault, chmod, init, serve, serve_cmd, serve_cmd_own, serve_with};
use std::path::Path;

/// Expects `serve` to have exited 1 without ever listening, saying each of `needles` on stderr.
#[track_caller]
fn refused(res: Result<Vault, StartFailure>, needles: &[&str]) -> StartFailure {
    let f = match res {
        Ok(s) => panic!("serve started: {:?}\n{}", s.stdout_lines, s.stderr()),
        Err(f) => f,
    };
    assert_eq!(f.status.and_then(|s| s.code()), Some(1), "exit 1: {f:#?}");
    assert!(
        !f.stdout_lines.iter().any(|l| l.starts_with("listening on")),
        "{f:#?}"
    );
    for n in needles {
        assert!(f.stderr.contains(n), "stderr lacks {n:?}: {}", f.stderr);
    }
    f
}

/// `serve` on `data`, expected to be refused.
#[track_caller]
fn refused_on(data: &Path, needles: &[&str]) -> StartFailure {
    refused(Vault::spawn(&mut serve_cmd(data), data), needles)
}

#[test]
fn refuses_a_master_key_others_can_read() {
    let tmp = Scratch::new();
    init(&tmp.data());
    let key = tmp.data().join("master.key");
    chmod(&key, 0o644);
    // Names the key file and says how to fix.
    refused_on(&tmp.data(), &[&key.display().to_string(), "chmod 600"]);

    // Fixed as told, it starts.
    chmod(&key, 0o600);
    serve(&tmp.data());
}

#[test]
fn refuses_a_truncated_master_key() {
    let tmp = Scratch::new();
    init(&tmp.data());
    let key = tmp.data().join("master.key");
    let full = std::fs::read(&key).unwrap();
    std::fs::write(&key, &full[..5]).unwrap();
    // Names the key file, says what is wrong and how to fix.
    refused_on(
        &tmp.data(),
        &[&key.display().to_string(), "5 bytes", "Fix:", "backup"],
    );

    // Restored from "backup", it starts.
    std::fs::write(&key, &full).unwrap();
    serve(&tmp.data());
}

#[test]
fn refuses_a_missing_master_key() {
    let tmp = Scratch::new();
    init(&tmp.data());
    let key = tmp.data().join("master.key");
    std::fs::remove_file(&key).unwrap();
    refused_on(&tmp.data(), &[&key.display().to_string(), "Fix:"]);
}

/// The unprivileged user the not-writable test runs `serve` as when the tests run as root.
const NOBODY: u32 = 65534;

#[test]
fn refuses_a_data_dir_it_cannot_write() {
    let tmp = Scratch::new();
    init(&tmp.data());
    let data = tmp.data();
    // root ignores mode bits, so as root the server runs as `nobody`, owning the vault.
    let as_root = {
        use std::os::unix::fs::MetadataExt;
        // A new file is owned by the effective uid.
        std::fs::metadata(data.join("master.key")).unwrap().uid() == 0
    };
    let (mut cmd, edition_files) = serve_cmd_own(&data, tmp.path());
    if as_root {
        chmod(tmp.path(), 0o711);
        let vault_files = [
            data.clone(),
            data.join("vault.db"),
            data.join("master.key"),
            data.join("clavitor.lock"),
        ];
        for p in vault_files.iter().chain(&edition_files) {
            std::os::unix::fs::chown(p, Some(NOBODY), Some(NOBODY)).unwrap();
        }
        use std::os::unix::process::CommandExt;
        cmd.uid(NOBODY).gid(NOBODY);
    }
    chmod(&data, 0o500);
    let res = Vault::spawn(&mut cmd, &data);
    chmod(&data, 0o700);
    let d = data.display();
    // Names the dir.
    refused(res, &[&format!("data dir {d} is not writable"), "Fix:"]);
}

#[test]
fn refuses_an_address_in_use() {
    let tmp = Scratch::new();
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap().to_string();
    let d = tmp.data();
    let mut cmd = serve_with(&["--data-dir", d.to_str().unwrap(), "--listen", &addr]);
    refused(Vault::spawn(&mut cmd, &d), &[&addr, "--listen"]);
}
