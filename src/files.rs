//! Private files (keys and tokens): created 0600 and durable; refused when group or others
//! can read them.
//!
//! Errors embed their cause in the message and do not also expose it as `source()`: the CLI
//! prints the whole chain, which would otherwise say everything twice.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{path}: {error}")]
    Io {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("{path} already exists; refusing to overwrite it")]
    Exists { path: PathBuf },
    #[error(
        "{path} has mode {mode:04o}, readable by others; a secret file must be private. Fix: chmod 600 {path}"
    )]
    TooOpen { path: PathBuf, mode: u32 },
    #[error(
        "{path} is a directory, not a file; it should be a private file holding a key or token. Fix: move the directory away and put the file there"
    )]
    IsDirectory { path: PathBuf },
    #[error(
        "{path} is not a regular file; it should be a private file holding a key or token. Fix: replace it with the file"
    )]
    NotAFile { path: PathBuf },
    #[error("{path} is empty; it should hold a token")]
    Empty { path: PathBuf },
    #[error("{path} is not valid UTF-8 text; it should hold a token")]
    NotText { path: PathBuf },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |error| Error::Io {
        path: path.to_owned(),
        error,
    }
}

/// Why [`lock_with_pid`] did not take its lock.
#[derive(Debug)]
pub enum LockError {
    /// Another process holds it; its pid when the file says.
    Held {
        pid: Option<u32>,
    },
    Io(std::io::Error),
}

/// Opens (creating, mode 0600) `path`, takes an exclusive `flock` on it without waiting, and
/// writes this process's pid into it, so the next process can say who holds it. Released
/// when the returned file is dropped, or when the process ends however it ends.
pub fn lock_with_pid(path: &Path) -> Result<File, LockError> {
    use std::io::Read;
    let mut f = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(path)
        .map_err(LockError::Io)?;
    match f.try_lock() {
        Ok(()) => {}
        Err(fs::TryLockError::WouldBlock) => {
            let mut text = String::new();
            let _ = f.read_to_string(&mut text);
            return Err(LockError::Held {
                pid: text.trim().parse().ok(),
            });
        }
        Err(fs::TryLockError::Error(e)) => return Err(LockError::Io(e)),
    }
    f.set_len(0)
        .and_then(|()| f.write_all(format!("{}\n", std::process::id()).as_bytes()))
        .map_err(LockError::Io)?;
    Ok(f)
}

/// Creates `path` with mode 0600 (never overwriting) and syncs it and its directory.
pub fn write_private(path: &Path, contents: &[u8]) -> Result<(), Error> {
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::AlreadyExists => Error::Exists {
                path: path.to_owned(),
            },
            _ => Error::Io {
                path: path.to_owned(),
                error: e,
            },
        })?;
    f.write_all(contents).map_err(io(path))?;
    f.sync_all().map_err(io(path))?;
    sync_parent(path)
}

/// Makes a just-created directory entry durable.
pub fn sync_parent(path: &Path) -> Result<(), Error> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(io(dir))?;
    }
    Ok(())
}

/// Creates `dir` (and missing parents) with mode 0700 if it does not exist, durably. An
/// existing directory is left as it is.
pub fn ensure_private_dir(dir: &Path) -> Result<(), Error> {
    if dir.is_dir() {
        return Ok(());
    }
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(io(dir))?;
    sync_parent(dir)
}

/// Writes a token as a new private file (`TOKEN\n`, mode 0600, synced with its directory),
/// creating its directory 0700 if needed. Never overwrites.
pub fn write_token(path: &Path, token: &crate::crypto::Token) -> Result<(), Error> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        ensure_private_dir(dir)?;
    }
    let mut text = zeroize::Zeroizing::new(String::with_capacity(token.expose().len() + 1));
    text.push_str(token.expose());
    text.push('\n');
    write_private(path, text.as_bytes())
}

/// Moves `from` over `to` atomically (same directory) and makes the rename durable.
pub fn rename_durably(from: &Path, to: &Path) -> Result<(), Error> {
    fs::rename(from, to).map_err(io(to))?;
    sync_parent(to)
}

/// Refuses a file that group or others may read or write, and anything that is not a file.
pub fn check_private(path: &Path) -> Result<(), Error> {
    let meta = fs::metadata(path).map_err(io(path))?;
    if meta.is_dir() {
        return Err(Error::IsDirectory {
            path: path.to_owned(),
        });
    }
    if !meta.is_file() {
        return Err(Error::NotAFile {
            path: path.to_owned(),
        });
    }
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(Error::TooOpen {
            path: path.to_owned(),
            mode,
        });
    }
    Ok(())
}

/// Reads a private file after checking its mode.
pub fn read_private(path: &Path) -> Result<zeroize::Zeroizing<Vec<u8>>, Error> {
    check_private(path)?;
    fs::read(path)
        .map(zeroize::Zeroizing::new)
        .map_err(io(path))
}

/// Where the CLI keeps its default token: `$XDG_CONFIG_HOME/clavitor/token`, else
/// `$HOME/.config/clavitor/token`. Never inside a data dir: a copy of the data dir must open no
/// credential field. `None` when neither variable is set.
pub fn default_token_path() -> Option<PathBuf> {
    let from = |var: &str| {
        std::env::var_os(var)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    from("XDG_CONFIG_HOME")
        .or_else(|| from("HOME").map(|h| h.join(".config")))
        .map(|dir| dir.join("clavitor").join("token"))
}

/// Reads a token file: private, UTF-8, non-empty; surrounding whitespace dropped.
pub fn read_token(path: &Path) -> Result<crate::crypto::Token, Error> {
    let raw = read_private(path)?;
    let text = std::str::from_utf8(&raw).map_err(|_| Error::NotText {
        path: path.to_owned(),
    })?;
    if text.trim().is_empty() {
        return Err(Error::Empty {
            path: path.to_owned(),
        });
    }
    Ok(crate::crypto::Token::from_text(text))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_files_are_0600_and_never_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("t");
        write_private(&p, b"clv_x\n").unwrap();
        assert_eq!(
            fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert!(matches!(write_private(&p, b"y"), Err(Error::Exists { .. })));
        assert_eq!(read_token(&p).unwrap().expose(), "clv_x");
        fs::set_permissions(&p, fs::Permissions::from_mode(0o644)).unwrap();
        let e = read_token(&p).unwrap_err().to_string();
        assert!(e.contains("chmod 600"), "{e}");
    }

    #[test]
    fn a_directory_is_reported_as_a_directory() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("master.key");
        fs::create_dir(&p).unwrap();
        let e = read_private(&p).unwrap_err().to_string();
        assert!(e.contains("is a directory"), "{e}");
        assert!(!e.contains("mode"), "{e}");
    }

    #[test]
    fn io_errors_say_their_cause_once() {
        let dir = tempfile::tempdir().unwrap();
        let e = read_private(&dir.path().join("missing")).unwrap_err();
        assert!(std::error::Error::source(&e).is_none());
        let text = format!("{:#}", anyhow::Error::from(e));
        assert_eq!(
            text.matches("No such file or directory").count(),
            1,
            "{text}"
        );
    }

    #[test]
    fn tokens_are_written_private_in_a_private_dir() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("clavitor").join("token");
        let t = crate::crypto::Token::generate();
        write_token(&p, &t).unwrap();
        assert_eq!(
            fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert_eq!(
            fs::metadata(p.parent().unwrap())
                .unwrap()
                .permissions()
                .mode()
                & 0o777,
            0o700
        );
        assert_eq!(read_token(&p).unwrap().expose(), t.expose());
        assert!(matches!(write_token(&p, &t), Err(Error::Exists { .. })));
    }
}
