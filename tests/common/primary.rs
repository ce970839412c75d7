//! A Commercial primary POP's files, for suites that test the vault rather than replication:
//! full mTLS (a test CA, a certificate for 127.0.0.1 and localhost), its token, and a backup
//! that nothing runs (the primary's pushes to it fail, which these suites do not look at).
//! Commercial suites only.

use super::files::{q, write_file};
use super::pki::{Ca, TlsFiles, client, write_token};
use std::path::{Path, PathBuf};

/// The `pop_id` of the primary these files configure.
pub const POP_ID: &str = "primary-01";
/// The `backup_pop.id` it names; its URL is a closed port on 127.0.0.1.
pub const BACKUP_ID: &str = "backup-01";

pub struct PrimaryPop {
    /// `replication.yaml`, for `--replication-config`.
    pub config: PathBuf,
    /// The CA that signed the POP's certificate, as a PEM file (for clients).
    pub ca_file: PathBuf,
    ca: Ca,
}

impl PrimaryPop {
    /// Writes the POP's files into `dir` (which must exist).
    pub fn write(dir: &Path) -> Self {
        let ca = Ca::new("Clavitor test POP CA");
        let tls = TlsFiles::write(dir, POP_ID, &ca.leaf(POP_ID), &ca);
        let token_file = dir.join("replication.token");
        write_token(&token_file);
        let backup_token = dir.join(format!("{BACKUP_ID}.token"));
        write_token(&backup_token);
        let config = dir.join("replication.yaml");
        let yaml = format!(
            "pop_id: \"{POP_ID}\"\nrole: \"primary\"\nbackup_pop:\n  id: \"{BACKUP_ID}\"\n  \
             url: \"https://127.0.0.1:1\"\n  auth_token_file: {}\nauth:\n  token_file: {}\n{}",
            q(&backup_token),
            q(&token_file),
            tls.yaml()
        );
        write_file(&config, &yaml, 0o644);
        Self {
            config,
            ca_file: tls.ca,
            ca,
        }
    }

    /// An HTTPS client that trusts this POP's CA and presents no certificate.
    pub fn client(&self) -> reqwest::Client {
        client(&self.ca, None)
    }
}
