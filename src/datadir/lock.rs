//! One process per data dir: an exclusive `flock` on `clavitor.lock`, which holds the
//! holder's pid so the next process can say who has it.

use super::{Error, io};
use crate::files::{self, LockError};
use std::fs::File;
use std::io::ErrorKind;
use std::path::Path;

/// An exclusive lock on a data dir, released when dropped (or when the process ends).
#[derive(Debug)]
pub struct DirLock {
    _file: File,
}

/// Takes the data dir's lock (`file`, inside `dir`) and writes this process's pid into it.
pub(super) fn lock(file: &Path, dir: &Path) -> Result<DirLock, Error> {
    match files::lock_with_pid(file) {
        Ok(f) => Ok(DirLock { _file: f }),
        Err(LockError::Held { pid }) => Err(Error::Locked {
            path: dir.to_owned(),
            holder: pid.map(|p| format!(" (pid {p})")).unwrap_or_default(),
        }),
        Err(LockError::Io(error))
            if matches!(
                error.kind(),
                ErrorKind::PermissionDenied | ErrorKind::ReadOnlyFilesystem
            ) =>
        {
            Err(Error::NotWritable {
                path: dir.to_owned(),
                error,
            })
        }
        Err(LockError::Io(error)) => Err(io(file)(error)),
    }
}
