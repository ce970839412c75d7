//! A Commercial primary POP's files, for suites that test the vault rather than replication:
//! full mTLS (a test CA, a certificate for 127.0.0.1 and localhost), its token, and a backup
//! that nothing runs (the primary's pushes to it fail, which these suites do not look at).
//! Commercial suites only.

use super::files::{q, write_file};
use super::pki::{Ca, TlsFiles, provider, write_token};
use rustls::{ClientConfig, RootCertStore};
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

/// The `pop_id` of the primary these files configure.
pub const POP_ID: &str = "primary-01";
/// The `backup_pop.id` it names; its URL is a closed port on 127.0.0.1.
pub const BACKUP_ID: &str = "backup-01";

pub struct PrimaryPop {
    /// `replication.yaml`, for `--replication-config`.
    pub config: PathBuf,
    /// The CA that signed the POP's certificate, PEM (what clients trust).
    pub ca_file: PathBuf,
    /// Every file written, e.g. for a test that runs `serve` as another user.
    pub files: Vec<PathBuf>,
}

impl PrimaryPop {
    /// Writes a new CA and the POP's files into `dir` (which must exist).
    pub fn write(dir: &Path) -> Self {
        Self::write_with(dir, "https://127.0.0.1:1", None)
    }

    /// [`PrimaryPop::write`] with the backup at `backup_url` and, when given, a control plane
    /// at `control_plane_url` (heartbeats and telemetry every second, the same test CA).
    pub fn write_with(dir: &Path, backup_url: &str, control_plane_url: Option<&str>) -> Self {
        Self::write_with_ca(
            dir,
            backup_url,
            control_plane_url,
            &Ca::new("Clavitor test POP CA"),
        )
    }

    /// [`PrimaryPop::write_with`] with certificates from `ca` (which may also have signed the
    /// control plane's).
    pub fn write_with_ca(
        dir: &Path,
        backup_url: &str,
        control_plane_url: Option<&str>,
        ca: &Ca,
    ) -> Self {
        let tls = TlsFiles::write(dir, POP_ID, &ca.leaf(POP_ID), ca);
        let token_file = dir.join("replication.token");
        write_token(&token_file);
        let backup_token = dir.join(format!("{BACKUP_ID}.token"));
        write_token(&backup_token);
        let mut files = vec![token_file.clone(), backup_token.clone()];
        let control_plane = match control_plane_url {
            None => String::new(),
            Some(url) => {
                let cp_token = dir.join("control-plane.token");
                write_token(&cp_token);
                let yaml = format!(
                    "control_plane:\n  url: \"{url}\"\n  token_file: {}\n  ca_file: {}\n  \
                     heartbeat_interval: 1\n  telemetry_interval: 1\n",
                    q(&cp_token),
                    q(&tls.ca)
                );
                files.push(cp_token);
                yaml
            }
        };
        let config = dir.join("replication.yaml");
        let yaml = format!(
            "pop_id: \"{POP_ID}\"\nrole: \"primary\"\nbackup_pop:\n  id: \"{BACKUP_ID}\"\n  \
             url: \"{backup_url}\"\n  auth_token_file: {}\nauth:\n  token_file: {}\n{}{control_plane}",
            q(&backup_token),
            q(&token_file),
            tls.yaml()
        );
        write_file(&config, &yaml, 0o644);
        files.extend([config.clone(), tls.cert, tls.key, tls.ca.clone()]);
        Self {
            files,
            config,
            ca_file: tls.ca,
        }
    }

    /// One set of files for the whole test process, beside its pinned copy of the binary (and
    /// removed with it). Every `serve` child may use them at once: each has its own data dir.
    pub fn shared() -> &'static Self {
        static SHARED: OnceLock<PrimaryPop> = OnceLock::new();
        SHARED.get_or_init(|| {
            let dir = super::process::bin()
                .parent()
                .expect("the pinned binary has a dir")
                .join("primary-pop");
            std::fs::create_dir_all(&dir).expect("create the POP's dir");
            Self::write(&dir)
        })
    }

    /// A TLS client config trusting this POP's CA and presenting no certificate.
    pub fn client_config(&self) -> Arc<ClientConfig> {
        let mut roots = RootCertStore::empty();
        for cert in CertificateDer::pem_file_iter(&self.ca_file).expect("read the CA file") {
            roots.add(cert.expect("CA PEM")).expect("CA as root");
        }
        let cfg = ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .expect("TLS versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
        Arc::new(cfg)
    }

    /// `builder`, trusting this POP's CA and presenting no certificate.
    pub fn trusting(&self, builder: reqwest::ClientBuilder) -> reqwest::ClientBuilder {
        builder.use_preconfigured_tls((*self.client_config()).clone())
    }
}
