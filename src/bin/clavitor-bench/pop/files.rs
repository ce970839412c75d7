//! One POP's directory: its inbound token (made by `clavitor pop-token`), certificate and key,
//! `replication.yaml`, and data dir (made by `clavitor init`), laid out as the README's
//! two-POP setup describes.

use super::certs::Ca;
use anyhow::{Context, Result, bail};
use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

pub struct PopFiles {
    pub id: String,
    pub data: PathBuf,
    pub config: PathBuf,
    pub token_file: PathBuf,
    /// `(cert, key, ca)`: every POP serves HTTPS and authenticates its peers with them.
    tls: (PathBuf, PathBuf, PathBuf),
}

/// Writes `contents` to a new file with `mode` from the start (the POP refuses open keys).
pub fn write_file(path: &Path, contents: &str, mode: u32) -> Result<()> {
    let _ = std::fs::remove_file(path);
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    f.write_all(contents.as_bytes())
        .with_context(|| format!("cannot write {}", path.display()))
}

/// `clavitor ARGS`, which must succeed; returns stdout.
pub fn run_clavitor(clavitor: &Path, args: &[&str]) -> Result<String> {
    let out = Command::new(clavitor)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("cannot run clavitor {args:?}"))?;
    if !out.status.success() {
        bail!(
            "clavitor {args:?} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The path as a YAML double-quoted scalar.
fn q(p: &Path) -> String {
    format!("{:?}", p.display().to_string())
}

impl PopFiles {
    /// Creates `parent/id` with a fresh token and a certificate signed by `ca` naming `id`.
    pub fn create(clavitor: &Path, parent: &Path, id: &str, ca: &Ca) -> Result<Self> {
        let dir = parent.join(id);
        let data = dir.join("data");
        // An empty data dir: `serve` initialises it, `init` fills it.
        std::fs::create_dir_all(&data)
            .with_context(|| format!("cannot create {}", data.display()))?;
        let token_file = dir.join("replication.token");
        run_clavitor(
            clavitor,
            &["pop-token", "--out", &token_file.display().to_string()],
        )?;
        let leaf = ca.leaf(id)?;
        let (cert, key, ca_file) = (
            dir.join("pop.crt"),
            dir.join("pop.key"),
            dir.join("pop-ca.crt"),
        );
        write_file(&cert, &leaf.cert_pem, 0o644)?;
        write_file(&key, &leaf.key_pem, 0o600)?;
        write_file(&ca_file, &ca.pem(), 0o644)?;
        let tls = (cert, key, ca_file);
        Ok(Self {
            id: id.to_owned(),
            data,
            config: dir.join("replication.yaml"),
            token_file,
            tls,
        })
    }

    fn auth_yaml(&self) -> String {
        let (cert, key, ca) = &self.tls;
        format!(
            "auth:\n  token_file: {}\n  mtls_cert: {}\n  mtls_key: {}\n  mtls_ca: {}\n",
            q(&self.token_file),
            q(cert),
            q(key),
            q(ca)
        )
    }

    /// A primary pushing to `backup_url`, presenting the token in `backup_token_file`.
    pub fn write_primary(
        &self,
        backup_id: &str,
        backup_url: &str,
        backup_token_file: &Path,
    ) -> Result<()> {
        let y = format!(
            "pop_id: \"{}\"\nregion: \"bench\"\nrole: \"primary\"\nbackup_pop:\n  id: \"{backup_id}\"\n  url: \"{backup_url}\"\n  auth_token_file: {}\n{}",
            self.id,
            q(backup_token_file),
            self.auth_yaml()
        );
        write_file(&self.config, &y, 0o644)
    }

    pub fn write_backup(&self, primary_id: &str) -> Result<()> {
        let y = format!(
            "pop_id: \"{}\"\nregion: \"bench\"\nrole: \"backup\"\nprimary_pop:\n  id: \"{primary_id}\"\n{}",
            self.id,
            self.auth_yaml()
        );
        write_file(&self.config, &y, 0o644)
    }

    /// `clavitor init`, adopting `master_key` (a backup must hold its primary's key).
    pub fn init(&self, clavitor: &Path, master_key: Option<&Path>) -> Result<()> {
        let data = self.data.display().to_string();
        let token_out = crate::proc::owner_token_file(&self.data)
            .display()
            .to_string();
        let mut args = vec![
            "init",
            "--data-dir",
            &data,
            "--json",
            "--owner-token-out",
            &token_out,
        ];
        let key;
        if let Some(k) = master_key {
            key = k.display().to_string();
            args.extend(["--master-key", &key]);
        }
        run_clavitor(clavitor, &args).map(drop)
    }

    pub fn master_key(&self) -> PathBuf {
        self.data.join("master.key")
    }

    /// `clavitor serve` for this POP on `listen` (`127.0.0.1:0`: any free port).
    pub fn serve_command(&self, clavitor: &Path, listen: &str) -> Command {
        let mut cmd = crate::proc::serve_command(clavitor, &self.data, listen);
        cmd.arg("--replication-config").arg(&self.config);
        cmd
    }
}
