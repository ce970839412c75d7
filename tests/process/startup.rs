//! `serve` refuses to start on an unsafe or broken data dir, and says which file and how to fix.

use crate::helpers::{Scratch, Server, StartFailure, chmod, init};
use std::path::Path;

/// Starts `serve` on `data` and expects it to exit non-zero without ever listening.
#[track_caller]
fn refused(data: &Path) -> StartFailure {
    let d = data.to_str().unwrap();
    match Server::spawn(
        None,
        &["serve", "--data-dir", d, "--listen", "127.0.0.1:0"],
        data,
    ) {
        Ok(s) => panic!(
            "serve started on a bad data dir: {:?}\n{}",
            s.stdout_lines,
            s.stderr()
        ),
        Err(f) => {
            let st = f
                .status
                .unwrap_or_else(|| panic!("serve neither started nor exited: {f:#?}"));
            assert!(
                !st.success() && st.code().is_some(),
                "exit non-zero: {f:#?}"
            );
            assert!(
                !f.stdout_lines.iter().any(|l| l.starts_with("listening on")),
                "{f:#?}"
            );
            f
        }
    }
}

#[test]
fn refuses_a_master_key_others_can_read() {
    let tmp = Scratch::new();
    init(&tmp.data());
    let key = tmp.data().join("master.key");
    chmod(&key, 0o644);
    let f = refused(&tmp.data());
    assert!(
        f.stderr.contains(&key.display().to_string()),
        "names the key file: {}",
        f.stderr
    );
    assert!(
        f.stderr.contains("chmod 600"),
        "says how to fix: {}",
        f.stderr
    );
    assert_eq!(f.status.unwrap().code(), Some(1));

    // Fixed as told, it starts.
    chmod(&key, 0o600);
    Server::start(&tmp.data());
}

#[test]
fn refuses_a_truncated_master_key() {
    let tmp = Scratch::new();
    init(&tmp.data());
    let key = tmp.data().join("master.key");
    let full = std::fs::read(&key).unwrap();
    std::fs::write(&key, &full[..5]).unwrap();
    let f = refused(&tmp.data());
    assert!(
        f.stderr.contains(&key.display().to_string()),
        "names the key file: {}",
        f.stderr
    );
    assert!(
        f.stderr.contains("5 bytes"),
        "says what is wrong: {}",
        f.stderr
    );
    assert!(
        f.stderr.contains("Fix:") && f.stderr.contains("backup"),
        "says how to fix: {}",
        f.stderr
    );

    // Restored from "backup", it starts.
    std::fs::write(&key, &full).unwrap();
    Server::start(&tmp.data());
}

#[test]
fn refuses_a_missing_master_key() {
    let tmp = Scratch::new();
    init(&tmp.data());
    let key = tmp.data().join("master.key");
    std::fs::remove_file(&key).unwrap();
    let f = refused(&tmp.data());
    assert!(
        f.stderr.contains(&key.display().to_string()),
        "{}",
        f.stderr
    );
    assert!(f.stderr.contains("Fix:"), "{}", f.stderr);
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
        std::fs::metadata(data.join("owner.token")).unwrap().uid() == 0
    };
    let uid = as_root.then_some(NOBODY);
    if as_root {
        chmod(tmp.path(), 0o711);
        for p in [
            data.clone(),
            data.join("vault.db"),
            data.join("master.key"),
            data.join("owner.token"),
        ] {
            std::os::unix::fs::chown(&p, Some(NOBODY), Some(NOBODY)).unwrap();
        }
    }
    chmod(&data, 0o500);
    let d = data.to_str().unwrap();
    let res = Server::spawn_as(
        None,
        &["serve", "--data-dir", d, "--listen", "127.0.0.1:0"],
        &data,
        uid,
    );
    chmod(&data, 0o700);
    let f = match res {
        Ok(s) => panic!("serve started on a read-only data dir: {}", s.stderr()),
        Err(f) => f,
    };
    assert_eq!(f.status.and_then(|s| s.code()), Some(1), "{f:#?}");
    assert!(
        f.stderr.contains(&format!("data dir {d} is not writable")),
        "names the dir: {}",
        f.stderr
    );
    assert!(f.stderr.contains("Fix:"), "{}", f.stderr);
}

#[test]
fn refuses_an_address_in_use() {
    let tmp = Scratch::new();
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap().to_string();
    let d = tmp.data();
    let f = Server::spawn(
        None,
        &[
            "serve",
            "--data-dir",
            d.to_str().unwrap(),
            "--listen",
            &addr,
        ],
        &d,
    )
    .err()
    .expect("serve must not start on a busy port");
    assert_eq!(f.status.and_then(|s| s.code()), Some(1), "{f:#?}");
    assert!(
        f.stderr.contains(&addr) && f.stderr.contains("--listen"),
        "{}",
        f.stderr
    );
}
