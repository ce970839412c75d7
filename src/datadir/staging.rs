//! Where a new vault is prepared: beside the data dir (then renamed over it, or to it, in one
//! step), or inside it when its parent is not writable (then moved out file by file, the key
//! last, so that until the key is in place nothing counts as a vault).

use super::{DB_FILE, DB_SIDE_FILES, Error, INNER_STAGING, KEY_FILE, LOCK_FILE, io};
use crate::files;
use std::fs;
use std::io::ErrorKind;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// Where a new vault is prepared before it is moved into place.
pub(super) struct Staging {
    pub(super) dir: PathBuf,
    target: PathBuf,
    /// Beside the target (renamed over it whole) or inside it (files moved out one by one).
    inner: bool,
    /// Directories this init created on the way to the target, innermost first.
    created: Vec<PathBuf>,
    /// Files an inner commit already moved into the target.
    moved: Vec<PathBuf>,
}

impl Staging {
    pub(super) fn create(target: &Path) -> Result<Self, Error> {
        let created = create_ancestors(target)?;
        let not_writable = |error| Error::NotWritable {
            path: target.to_owned(),
            error,
        };
        // rename(2) replaces only an empty directory, and not one behind a symlink.
        let is_empty_real_dir = fs::symlink_metadata(target).is_ok_and(|m| m.is_dir())
            && fs::read_dir(target).is_ok_and(|mut d| d.next().is_none());
        let target_exists = fs::metadata(target).is_ok();
        if !target_exists || is_empty_real_dir {
            let name = target
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| "data".into());
            let parent = target
                .parent()
                .filter(|p| !p.as_os_str().is_empty())
                .unwrap_or(Path::new("."));
            static SEQ: AtomicU64 = AtomicU64::new(0);
            let dir = parent.join(format!(
                ".{name}.clavitor-init-{}-{}",
                std::process::id(),
                SEQ.fetch_add(1, Ordering::Relaxed)
            ));
            match fs::DirBuilder::new().mode(0o700).create(&dir) {
                Ok(()) => {
                    return Ok(Self {
                        dir,
                        target: target.to_owned(),
                        inner: false,
                        created,
                        moved: Vec::new(),
                    });
                }
                // The parent is not ours to write (systemd makes the data dir, not its
                // parent): stage inside the existing, empty data dir instead.
                Err(e) if target_exists && e.kind() == ErrorKind::PermissionDenied => {}
                Err(e) => {
                    remove_created(&created);
                    return Err(not_writable(e));
                }
            }
        }
        let dir = target.join(INNER_STAGING);
        fs::DirBuilder::new()
            .mode(0o700)
            .create(&dir)
            .map_err(not_writable)?;
        Ok(Self {
            dir,
            target: target.to_owned(),
            inner: true,
            created,
            moved: Vec::new(),
        })
    }

    pub(super) fn lock_file(&self) -> PathBuf {
        match self.inner {
            true => self.target.join(LOCK_FILE),
            false => self.dir.join(LOCK_FILE),
        }
    }

    /// Puts the prepared vault in place. The vault exists once this returns, not before.
    pub(super) fn commit(&mut self) -> Result<(), Error> {
        if !self.inner {
            return match fs::rename(&self.dir, &self.target) {
                Ok(()) => files::sync_parent(&self.target).map_err(Error::from),
                Err(e)
                    if matches!(
                        e.kind(),
                        ErrorKind::DirectoryNotEmpty | ErrorKind::AlreadyExists
                    ) =>
                {
                    Err(Error::AlreadyInitialised {
                        path: self.target.clone(),
                    })
                }
                Err(e) => Err(io(&self.target)(e)),
            };
        }
        // The key goes last: until it is in place, what was moved is no vault and a later
        // start rolls it back.
        for name in DB_SIDE_FILES.iter().chain([DB_FILE, KEY_FILE].iter()) {
            let from = self.dir.join(name);
            if !from.exists() {
                continue;
            }
            let to = self.target.join(name);
            if fs::symlink_metadata(&to).is_ok() {
                return Err(Error::AlreadyInitialised {
                    path: self.target.clone(),
                });
            }
            fs::rename(&from, &to).map_err(io(&to))?;
            self.moved.push(to);
        }
        files::sync_parent(&self.target.join(KEY_FILE))?;
        fs::remove_dir_all(&self.dir).map_err(io(&self.dir))?;
        fs::set_permissions(&self.target, fs::Permissions::from_mode(0o700))
            .map_err(io(&self.target))?;
        Ok(())
    }

    /// Removes everything this init made.
    pub(super) fn abandon(&self) {
        let _ = fs::remove_dir_all(&self.dir);
        if self.inner {
            for p in &self.moved {
                let _ = fs::remove_file(p);
            }
            let _ = fs::remove_file(self.target.join(LOCK_FILE));
        }
        remove_created(&self.created);
    }
}

/// Creates the missing ancestors of `target` (0700); returns them, innermost first.
fn create_ancestors(target: &Path) -> Result<Vec<PathBuf>, Error> {
    let mut missing = Vec::new();
    let mut at = target.parent();
    while let Some(p) = at.filter(|p| !p.as_os_str().is_empty() && !p.exists()) {
        if matches!(p.components().next_back(), Some(Component::RootDir) | None) {
            break;
        }
        missing.push(p.to_owned());
        at = p.parent();
    }
    for p in missing.iter().rev() {
        if let Err(error) = fs::DirBuilder::new().mode(0o700).create(p) {
            remove_created(&missing);
            return Err(Error::NotWritable {
                path: target.to_owned(),
                error,
            });
        }
    }
    Ok(missing)
}

/// Removes directories made by [`create_ancestors`] again, if they are still empty.
fn remove_created(dirs: &[PathBuf]) {
    for d in dirs {
        let _ = fs::remove_dir(d);
    }
}
