//! Free space on a filesystem, for the low-disk alert: a full disk is what stops the trail.

use std::path::Path;

/// Bytes available to this (unprivileged) process on the filesystem holding `path`.
pub fn free_bytes(path: &Path) -> std::io::Result<u64> {
    let st = nix::sys::statvfs::statvfs(path).map_err(std::io::Error::from)?;
    Ok(st.blocks_available().saturating_mul(st.fragment_size()))
}
