//! Private files (keys and tokens): created 0600 and durable; refused when group or others
//! can read them.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} already exists; refusing to overwrite it")]
    Exists { path: PathBuf },
    #[error(
        "{path} has mode {mode:04o}, readable by others; a secret file must be private. Fix: chmod 600 {path}"
    )]
    TooOpen { path: PathBuf, mode: u32 },
    #[error("{path} is empty; it should hold a token")]
    Empty { path: PathBuf },
    #[error("{path} is not valid UTF-8 text; it should hold a token")]
    NotText { path: PathBuf },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |source| Error::Io {
        path: path.to_owned(),
        source,
    }
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
                source: e,
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

/// Refuses a file that group or others may read or write.
pub fn check_private(path: &Path) -> Result<(), Error> {
    let mode = fs::metadata(path).map_err(io(path))?.permissions().mode() & 0o777;
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
}
