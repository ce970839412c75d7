//! What a directory holds, init's rollback, token paths, and messages.

use super::*;

fn fresh() -> (tempfile::TempDir, DataDir) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = DataDir::new(tmp.path().join("data"));
    (tmp, dir)
}

#[test]
fn what_a_directory_holds() {
    let (_tmp, dir) = fresh();
    assert_eq!(dir.survey().unwrap(), State::Absent);
    fs::create_dir(dir.path()).unwrap();
    assert_eq!(dir.survey().unwrap(), State::Empty);
    fs::write(dir.path().join(LOCK_FILE), "1\n").unwrap();
    assert_eq!(dir.survey().unwrap(), State::Empty);
    fs::write(dir.old_owner_token(), "clv_x\n").unwrap();
    assert!(matches!(dir.survey(), Err(Error::OnlyOldToken { .. })));
    fs::remove_file(dir.old_owner_token()).unwrap();
    fs::write(dir.path().join("notes.txt"), "x").unwrap();
    assert!(matches!(dir.survey(), Err(Error::NotEmpty { .. })));
    fs::remove_file(dir.path().join("notes.txt")).unwrap();
    fs::write(dir.key(), [0u8; 32]).unwrap();
    assert!(matches!(
        dir.survey(),
        Err(Error::NoDatabase {
            what: "is missing",
            ..
        })
    ));
    fs::write(dir.db(), b"").unwrap();
    assert!(matches!(
        dir.survey(),
        Err(Error::NoDatabase {
            what: "is empty",
            ..
        })
    ));
    fs::write(dir.db(), b"x").unwrap();
    assert_eq!(dir.survey().unwrap(), State::Vault);
    fs::remove_file(dir.key()).unwrap();
    assert!(matches!(dir.survey(), Err(Error::MissingKey { .. })));
}

/// An init staged inside the data dir that died after moving the database but before the
/// key: nothing usable was made, and the next init starts over.
#[tokio::test]
async fn an_interrupted_inner_init_is_rolled_back() {
    let (tmp, dir) = fresh();
    let staging = dir.path().join(INNER_STAGING);
    fs::create_dir_all(&staging).unwrap();
    fs::write(staging.join(KEY_FILE), [7u8; 32]).unwrap();
    fs::write(dir.db(), b"half").unwrap();
    fs::write(dir.path().join(LOCK_FILE), b"").unwrap();
    assert_eq!(dir.survey().unwrap(), State::InterruptedInit);
    let out = tmp.path().join("token");
    let opened = dir
        .init(InitOptions {
            master_key: None,
            owner_token_out: Some(&out),
        })
        .await
        .unwrap();
    opened.store.close().await;
    assert!(!staging.exists());
    assert_ne!(fs::read(dir.key()).unwrap(), [7u8; 32]);
    assert!(fs::metadata(dir.db()).unwrap().len() > 4);
    assert!(out.exists());
}

#[test]
fn token_paths_inside_the_data_dir_are_recognised() {
    let (tmp, dir) = fresh();
    let data = dir.path();
    assert!(is_inside(&data.join("owner.token"), data));
    assert!(is_inside(&data.join("a/../b/token"), data));
    assert!(!is_inside(&tmp.path().join("token"), data));
    fs::create_dir(data).unwrap();
    let link = tmp.path().join("link");
    std::os::unix::fs::symlink(data, &link).unwrap();
    assert!(is_inside(&link.join("token"), data));
}

/// The CLI prints every error with its chain (`{:#}`): no cause may show up twice.
#[test]
fn errors_say_their_cause_once() {
    let (_tmp, dir) = fresh();
    fs::create_dir(dir.path()).unwrap();
    fs::write(dir.db(), vec![0x5a; 4096]).unwrap();
    let e = Error::from(Store::open(&dir.db()).unwrap_err());
    let text = format!("{:#}", anyhow::Error::from(e));
    assert_eq!(text.matches("file is not a database").count(), 1, "{text}");
    let e = Error::NotWritable {
        path: dir.path().to_owned(),
        error: std::io::Error::from(ErrorKind::PermissionDenied),
    };
    let text = format!("{:#}", anyhow::Error::from(e));
    assert_eq!(text.matches("ermission denied").count(), 1, "{text}");
}
