//! `replication.yaml`: parsed strictly (unknown keys are errors), then validated into a
//! [`PopConfig`] that holds what the files named in it contain. Every problem found is
//! reported at once, each naming the file, the key, what is wrong and the fix.

use crate::crypto::Token;
use crate::files;
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use serde::Deserialize;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub const DEFAULT_PATH: &str = "/etc/clavitor/replication.yaml";
/// The README heading that documents this file; error messages send operators there.
pub const README_SECTION: &str = "replication.yaml";
pub const POP_TOKEN_PREFIX: &str = "clavitor-pop-v1-";
pub const DEFAULT_BATCH_SIZE: usize = 100;
pub const MAX_BATCH_SIZE: usize = 100;
pub const DEFAULT_MAX_RETRIES: u32 = 5;
pub const DEFAULT_HEARTBEAT_SECS: u64 = 60;
pub const DEFAULT_TELEMETRY_SECS: u64 = 60;

// ---- the file as written -------------------------------------------------------------

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    pop_id: Option<String>,
    region: Option<String>,
    role: Option<String>,
    backup_pop: Option<RawBackupPop>,
    primary_pop: Option<RawPrimaryPop>,
    auth: Option<RawAuth>,
    replication: Option<RawReplication>,
    control_plane: Option<RawControlPlane>,
    scim: Option<RawScim>,
    siem: Option<super::siem::config::RawSiem>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawScim {
    token_file: Option<PathBuf>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBackupPop {
    id: Option<String>,
    url: Option<String>,
    auth_token_file: Option<PathBuf>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPrimaryPop {
    id: Option<String>,
    url: Option<String>,
    auth_token_file: Option<PathBuf>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAuth {
    token_file: Option<PathBuf>,
    mtls_cert: Option<PathBuf>,
    mtls_key: Option<PathBuf>,
    mtls_ca: Option<PathBuf>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawReplication {
    batch_size: Option<i64>,
    max_retries: Option<i64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawControlPlane {
    url: Option<String>,
    token_file: Option<PathBuf>,
    heartbeat_interval: Option<i64>,
    telemetry_interval: Option<i64>,
    ca_file: Option<PathBuf>,
}

// ---- the validated configuration ------------------------------------------------------

#[derive(Debug, Clone)]
pub struct PopConfig {
    pub path: PathBuf,
    pub pop_id: String,
    pub region: Option<String>,
    pub role: PopRole,
    /// The token peers must present when pushing to this POP.
    pub inbound_token: Token,
    /// Every POP serves HTTPS and proves who it is to its peers with this.
    pub tls: TlsMaterial,
    pub batch_size: usize,
    pub max_retries: u32,
    pub control_plane: Option<ControlPlane>,
    /// The bearer token of the identity provider on `/scim/v2` (`scim.token_file`); `None`:
    /// SCIM is off.
    pub scim_token: Option<Token>,
    /// Where this POP streams its audit trail (none when `siem` is absent).
    pub siem: super::siem::config::SiemConfig,
}

#[derive(Debug, Clone)]
pub enum PopRole {
    Primary { backup: BackupPop },
    Backup { primary: PeerPop },
}

#[derive(Debug, Clone)]
pub struct BackupPop {
    pub id: String,
    pub url: reqwest::Url,
    /// The token this POP presents when pushing to the backup.
    pub token: Token,
}

/// The primary a backup takes pushes from: its client certificate must name `id`.
#[derive(Debug, Clone)]
pub struct PeerPop {
    pub id: String,
    /// Where to push once the control plane promotes this backup (required with
    /// `control_plane`).
    pub url: Option<reqwest::Url>,
    /// The token this POP presents when pushing to that POP once promoted.
    pub token: Option<Token>,
}

/// `auth.mtls_*`, loaded: this POP's certificate chain and key, and the CA that signs peers.
#[derive(Clone)]
pub struct TlsMaterial {
    pub cert_chain: Vec<CertificateDer<'static>>,
    pub key: std::sync::Arc<PrivateKeyDer<'static>>,
    pub ca: Vec<CertificateDer<'static>>,
}

impl fmt::Debug for TlsMaterial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsMaterial")
            .field("certs", &self.cert_chain.len())
            .field("ca", &self.ca.len())
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Clone)]
pub struct ControlPlane {
    pub url: reqwest::Url,
    pub token: Token,
    pub heartbeat_interval: Duration,
    pub telemetry_interval: Duration,
    /// Extra trust anchors for the control plane (default: the bundled web PKI roots).
    pub ca: Vec<CertificateDer<'static>>,
}

impl PopConfig {
    pub fn is_primary(&self) -> bool {
        matches!(self.role, PopRole::Primary { .. })
    }

    /// This configuration with the role the control plane granted: the one peer stays the
    /// same POP on the other side. `None` when a backup lacks what it needs to push
    /// (validation requires it whenever `control_plane` is set).
    pub fn with_role(&self, primary: bool) -> Option<PopConfig> {
        let role = match (&self.role, primary) {
            (PopRole::Primary { .. }, true) | (PopRole::Backup { .. }, false) => self.role.clone(),
            (PopRole::Primary { backup }, false) => PopRole::Backup {
                primary: PeerPop {
                    id: backup.id.clone(),
                    url: Some(backup.url.clone()),
                    token: Some(backup.token.clone()),
                },
            },
            (PopRole::Backup { primary }, true) => PopRole::Primary {
                backup: BackupPop {
                    id: primary.id.clone(),
                    url: primary.url.clone()?,
                    token: primary.token.clone()?,
                },
            },
        };
        Some(PopConfig {
            role,
            ..self.clone()
        })
    }

    pub fn role_name(&self) -> &'static str {
        match self.role {
            PopRole::Primary { .. } => "primary",
            PopRole::Backup { .. } => "backup",
        }
    }

    /// The spec's start-up line.
    pub fn startup_line(&self) -> String {
        match &self.role {
            PopRole::Primary { backup } => format!(
                "Commercial edition: primary POP, replicating to {}",
                backup.id
            ),
            PopRole::Backup { .. } => {
                "Commercial edition: backup POP, accepting replication from primary".to_owned()
            }
        }
    }
}

// ---- errors ---------------------------------------------------------------------------

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub key: String,
    pub what: String,
    pub fix: String,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error(
        "Commercial edition requires a replication config, and {path} could not be read: {reason}. Fix: create it (see the README, section \"{README_SECTION}\") or pass --replication-config PATH"
    )]
    Unreadable { path: PathBuf, reason: String },
    #[error(
        "{path}: not a valid replication config:\n{message}\nFix: correct the marked line; the keys allowed at the top level are pop_id, region, role, backup_pop, primary_pop, auth, replication, control_plane, siem, and an unknown-key message lists those allowed in its section"
    )]
    Syntax { path: PathBuf, message: String },
    #[error("{}", render(path, "replication config", problems))]
    Invalid {
        path: PathBuf,
        problems: Vec<Problem>,
    },
}

/// Every problem found in `path`, a `kind` of config: one line each, with its key and fix.
pub(super) fn render(path: &Path, kind: &str, problems: &[Problem]) -> String {
    let mut s = format!(
        "{}: invalid {kind} ({} problem{}):",
        path.display(),
        problems.len(),
        if problems.len() == 1 { "" } else { "s" }
    );
    for p in problems {
        s.push_str(&format!("\n  - {}: {}. Fix: {}", p.key, p.what, p.fix));
    }
    s
}

pub(super) struct Report(pub(super) Vec<Problem>);

impl Report {
    pub(super) fn add(
        &mut self,
        key: impl Into<String>,
        what: impl Into<String>,
        fix: impl Into<String>,
    ) {
        self.0.push(Problem {
            key: key.into(),
            what: what.into(),
            fix: fix.into(),
        });
    }
}

// ---- loading --------------------------------------------------------------------------

pub fn load(path: &Path) -> Result<PopConfig, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Unreadable {
        path: path.to_owned(),
        reason: e.to_string(),
    })?;
    parse(path, &text)
}

/// Parses and validates the text of `path` (split from [`load`] so it can be tested without
/// files).
fn parse(path: &Path, text: &str) -> Result<PopConfig, ConfigError> {
    let raw: RawConfig = if text.trim().is_empty() {
        RawConfig::default()
    } else {
        serde_saphyr::from_str(text).map_err(|e| ConfigError::Syntax {
            path: path.to_owned(),
            message: syntax_message(text, &e),
        })?
    };
    validate(path, raw)
}

/// The parser's message, then the offending line and a caret under the column, each on its
/// own line, as compilers show them.
pub(super) fn syntax_message(text: &str, e: &serde_saphyr::Error) -> String {
    let what = e.without_snippet().to_string();
    let what = what.trim();
    let Some(loc) = e.location() else {
        return format!("  {what}");
    };
    let (line, column) = (loc.line(), loc.column());
    let what = what
        .strip_suffix(&format!(" at line {line}, column {column}"))
        .unwrap_or(what);
    let Some(source) = usize::try_from(line)
        .ok()
        .and_then(|l| l.checked_sub(1))
        .and_then(|i| text.lines().nth(i))
    else {
        return format!("  {what}");
    };
    // Tabs become spaces so the caret lines up; other control characters are shown escaped.
    let shown: String = source
        .chars()
        .take(200)
        .map(|c| if c == '\t' { ' ' } else { c })
        .flat_map(|c| {
            if c.is_control() {
                c.escape_default().collect::<Vec<_>>()
            } else {
                vec![c]
            }
        })
        .collect();
    let gutter = line.to_string();
    let pad = " ".repeat(gutter.len());
    let caret_at = usize::try_from(column.saturating_sub(1))
        .unwrap_or(0)
        .min(shown.chars().count());
    format!(
        "  line {line}, column {column}: {what}\n  {gutter} | {shown}\n  {pad} | {}^",
        " ".repeat(caret_at)
    )
}

/// Files named in the config are relative to the config file's directory.
pub(super) fn resolve(base: &Path, p: &Path) -> PathBuf {
    if p.is_absolute() {
        p.to_owned()
    } else {
        base.parent().unwrap_or(Path::new(".")).join(p)
    }
}

fn validate(path: &Path, raw: RawConfig) -> Result<PopConfig, ConfigError> {
    let mut r = Report(Vec::new());
    let file = |p: &Path| resolve(path, p);

    let pop_id = match raw.pop_id.as_deref().map(str::trim) {
        Some(id) if valid_id(id) => Some(id.to_owned()),
        Some(id) => {
            r.add("pop_id", format!("{id:?} is not a valid POP id"), "use 1-64 characters from a-z, A-Z, 0-9, '-', '_', '.', e.g. pop_id: \"calgary-01\"");
            None
        }
        None => {
            r.add(
                "pop_id",
                "missing",
                "name this POP, e.g. pop_id: \"calgary-01\"",
            );
            None
        }
    };

    let role = match raw.role.as_deref() {
        Some("primary") => Some(true),
        Some("backup") => Some(false),
        Some(other) => {
            r.add(
                "role",
                format!("{other:?} is not a role"),
                "set role: \"primary\" or role: \"backup\"",
            );
            None
        }
        None => {
            r.add(
                "role",
                "missing",
                "set role: \"primary\" or role: \"backup\"",
            );
            None
        }
    };

    // auth
    let auth = raw.auth;
    let token_path = auth
        .as_ref()
        .and_then(|a| a.token_file.as_deref())
        .map(file);
    let key_path = auth.as_ref().and_then(|a| a.mtls_key.as_deref()).map(file);
    let inbound_token = match &token_path {
        Some(p) => check_token_file(&mut r, "auth.token_file", p, key_path.as_deref()),
        None => {
            r.add("auth.token_file", "missing", "point it at the file holding the token peers present (create one with `clavitor pop-token --out FILE`)");
            None
        }
    };
    let tls = load_tls(&mut r, auth.as_ref(), &file);

    // role-specific peers
    let role = match role {
        Some(true) => {
            if raw.primary_pop.is_some() {
                r.add(
                    "primary_pop",
                    "only a backup names its primary",
                    "remove primary_pop, or set role: \"backup\"",
                );
            }
            match raw.backup_pop {
                None => {
                    r.add(
                        "backup_pop",
                        "missing; a primary replicates to its backup",
                        "add backup_pop with id, url and auth_token_file",
                    );
                    None
                }
                Some(b) => {
                    let id = match b.id.as_deref().map(str::trim) {
                        Some(id) if valid_id(id) => Some(id.to_owned()),
                        Some(id) => {
                            r.add(
                                "backup_pop.id",
                                format!("{id:?} is not a valid POP id"),
                                "use 1-64 characters from a-z, A-Z, 0-9, '-', '_', '.'",
                            );
                            None
                        }
                        None => {
                            r.add(
                                "backup_pop.id",
                                "missing",
                                "name the backup POP, e.g. id: \"zurich-01\"",
                            );
                            None
                        }
                    };
                    let url = match b.url.as_deref() {
                        Some(u) => check_https(&mut r, "backup_pop.url", u),
                        None => {
                            r.add(
                                "backup_pop.url",
                                "missing; a primary needs its backup's address",
                                "add url: \"https://zurich-01.example.com\"",
                            );
                            None
                        }
                    };
                    let token = match b.auth_token_file.as_deref().map(file) {
                        Some(p) => check_token_file(
                            &mut r,
                            "backup_pop.auth_token_file",
                            &p,
                            key_path.as_deref(),
                        ),
                        None => {
                            r.add("backup_pop.auth_token_file", "missing; the primary must authenticate to its backup", "point it at the token file the backup accepts (its auth.token_file)");
                            None
                        }
                    };
                    match (id, url, token) {
                        (Some(id), Some(url), Some(token)) => Some(PopRole::Primary {
                            backup: BackupPop { id, url, token },
                        }),
                        _ => None,
                    }
                }
            }
        }
        Some(false) => {
            if raw.backup_pop.is_some() {
                r.add(
                    "backup_pop",
                    "a backup does not replicate further (no cascade)",
                    "remove backup_pop from this backup's config",
                );
            }
            let (id, url, token_file) = match raw.primary_pop {
                Some(p) => (p.id, p.url, p.auth_token_file),
                None => (None, None, None),
            };
            let url = url
                .as_deref()
                .and_then(|u| check_https(&mut r, "primary_pop.url", u));
            let token = token_file.as_deref().map(file).and_then(|p| {
                check_token_file(
                    &mut r,
                    "primary_pop.auth_token_file",
                    &p,
                    key_path.as_deref(),
                )
            });
            if raw.control_plane.is_some() {
                // The control plane may promote this backup: it must then push to its primary.
                let why = "missing; with control_plane set this backup may be promoted, and then pushes to its former primary";
                if url.is_none() && r.0.iter().all(|p| p.key != "primary_pop.url") {
                    r.add(
                        "primary_pop.url",
                        why,
                        "add primary_pop.url: \"https://calgary-01.example.com:8443\" (the primary's address), or remove control_plane",
                    );
                }
                if token_file.is_none() {
                    r.add(
                        "primary_pop.auth_token_file",
                        why,
                        "point primary_pop.auth_token_file at the token file the primary accepts (its auth.token_file), or remove control_plane",
                    );
                }
            }
            let id = match id.as_deref().map(str::trim) {
                Some(id) if valid_id(id) => Some(id.to_owned()),
                Some(id) => {
                    r.add(
                        "primary_pop.id",
                        format!("{id:?} is not a valid POP id"),
                        "use 1-64 characters from a-z, A-Z, 0-9, '-', '_', '.'",
                    );
                    None
                }
                None => {
                    r.add(
                        "primary_pop.id",
                        "missing; a backup takes pushes only from the POP whose certificate names this id",
                        "add primary_pop: {id: \"calgary-01\"} naming the primary: its certificate's subject CN or one of its DNS names",
                    );
                    None
                }
            };
            id.map(|id| PopRole::Backup {
                primary: PeerPop { id, url, token },
            })
        }
        None => None,
    };

    // replication
    let rep = raw.replication;
    let batch_size = match rep.as_ref().and_then(|x| x.batch_size) {
        None => DEFAULT_BATCH_SIZE,
        Some(n) if (1..=MAX_BATCH_SIZE as i64).contains(&n) => n as usize,
        Some(n) => {
            r.add(
                "replication.batch_size",
                format!("{n} is out of range"),
                format!("use a number from 1 to {MAX_BATCH_SIZE} (default {DEFAULT_BATCH_SIZE})"),
            );
            DEFAULT_BATCH_SIZE
        }
    };
    let max_retries = match rep.as_ref().and_then(|x| x.max_retries) {
        None => DEFAULT_MAX_RETRIES,
        Some(n) if (0..=100).contains(&n) => n as u32,
        Some(n) => {
            r.add(
                "replication.max_retries",
                format!("{n} is out of range"),
                format!("use a number from 0 to 100 (default {DEFAULT_MAX_RETRIES})"),
            );
            DEFAULT_MAX_RETRIES
        }
    };

    // control plane
    let control_plane = raw.control_plane.and_then(|cp| {
        let url = match cp.url.as_deref() {
            Some(u) => check_https(&mut r, "control_plane.url", u),
            None => {
                r.add(
                    "control_plane.url",
                    "missing",
                    "add url: \"https://control.example.com\", or remove control_plane",
                );
                None
            }
        };
        let token = match cp.token_file.as_deref().map(file) {
            Some(p) => {
                check_token_file(&mut r, "control_plane.token_file", &p, key_path.as_deref())
            }
            None => {
                r.add(
                    "control_plane.token_file",
                    "missing",
                    "point it at the file holding the control-plane token",
                );
                None
            }
        };
        let mut seconds = |key: &str, value: Option<i64>, default: u64| match value {
            None => default,
            Some(n) if (1..=86_400).contains(&n) => n as u64,
            Some(n) => {
                r.add(
                    format!("control_plane.{key}"),
                    format!("{n} is out of range"),
                    format!("use seconds from 1 to 86400 (default {default})"),
                );
                default
            }
        };
        let interval = seconds(
            "heartbeat_interval",
            cp.heartbeat_interval,
            DEFAULT_HEARTBEAT_SECS,
        );
        let telemetry = seconds(
            "telemetry_interval",
            cp.telemetry_interval,
            DEFAULT_TELEMETRY_SECS,
        );
        let ca = match cp.ca_file.as_deref().map(file) {
            Some(p) => load_certs(&mut r, "control_plane.ca_file", &p).unwrap_or_default(),
            None => Vec::new(),
        };
        Some(ControlPlane {
            url: url?,
            token: token?,
            heartbeat_interval: Duration::from_secs(interval),
            telemetry_interval: Duration::from_secs(telemetry),
            ca,
        })
    });

    // scim
    let scim_token = raw.scim.and_then(|s| match s.token_file.as_deref().map(file) {
        Some(p) => {
            let t = check_token_file(&mut r, "scim.token_file", &p, key_path.as_deref())?;
            if inbound_token.as_ref().is_some_and(|i| i.hash() == t.hash()) {
                r.add(
                    "scim.token_file",
                    format!("{} holds the same token as auth.token_file", p.display()),
                    "give the identity provider a token of its own: `clavitor scim-token --out FILE`",
                );
                return None;
            }
            Some(t)
        }
        None => {
            r.add(
                "scim.token_file",
                "missing",
                "point it at the file holding the identity provider's token (`clavitor scim-token --out FILE`), or remove scim",
            );
            None
        }
    });
    let siem = super::siem::config::validate(&mut r, path, raw.siem);

    if !r.0.is_empty() {
        return Err(ConfigError::Invalid {
            path: path.to_owned(),
            problems: r.0,
        });
    }
    Ok(PopConfig {
        scim_token,
        path: path.to_owned(),
        pop_id: pop_id.expect("no problems means pop_id is set"),
        region: raw.region,
        role: role.expect("no problems means role is set"),
        inbound_token: inbound_token.expect("no problems means auth.token_file is set"),
        tls: tls.expect("no problems means the auth.mtls_* files loaded"),
        batch_size,
        max_retries,
        control_plane,
        siem,
    })
}

pub fn valid_id(s: &str) -> bool {
    (1..=64).contains(&s.len())
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

fn check_https(r: &mut Report, key: &str, url: &str) -> Option<reqwest::Url> {
    match reqwest::Url::parse(url) {
        Ok(u) if u.scheme() == "https" && u.host().is_some() => Some(u),
        Ok(u) => {
            r.add(
                key,
                format!("{url:?} uses {}; POPs talk only over TLS", u.scheme()),
                format!(
                    "use an https:// URL, e.g. \"https://{}\"",
                    u.host_str().unwrap_or("pop.example.com")
                ),
            );
            None
        }
        Err(e) => {
            r.add(
                key,
                format!("{url:?} is not a URL ({e})"),
                "write a full URL such as \"https://pop.example.com\"",
            );
            None
        }
    }
}

/// Accepts `clavitor-pop-v1-` + base64 of 32 bytes, or bare base64 of 32 bytes.
pub fn parse_pop_token(text: &str) -> Result<Token, String> {
    let t = text.trim();
    let body = t.strip_prefix(POP_TOKEN_PREFIX).unwrap_or(t);
    let decoded = [STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD]
        .iter()
        .find_map(|e| e.decode(body).ok());
    match decoded {
        Some(bytes) if bytes.len() == 32 => Ok(Token::from_text(t)),
        Some(bytes) => Err(format!(
            "holds {} bits, not a 256-bit token",
            bytes.len() * 8
        )),
        None => Err("is not a base64 token".to_owned()),
    }
}

/// Generates a fresh POP token in the documented format.
pub fn generate_pop_token() -> Token {
    let mut raw = [0u8; 32];
    rand::fill(&mut raw);
    let t = Token::from_text(&format!("{POP_TOKEN_PREFIX}{}", STANDARD.encode(raw)));
    zeroize::Zeroize::zeroize(&mut raw);
    t
}

pub(super) fn check_token_file(
    r: &mut Report,
    key: &str,
    path: &Path,
    tls_key: Option<&Path>,
) -> Option<Token> {
    let gen_fix = "generate one with `clavitor pop-token --out FILE` and point this key at it";
    if tls_key.is_some_and(|k| same_file(k, path)) {
        r.add(key, format!("{} is also auth.mtls_key; a TLS private key is not a token", path.display()), "keep the token and the TLS key in separate files (e.g. replication.token and replication.key)");
        return None;
    }
    let raw = match files::read_private(path) {
        Ok(raw) => raw,
        Err(files::Error::TooOpen { mode, .. }) => {
            r.add(
                key,
                format!(
                    "{} has mode {mode:04o}; token files must be private",
                    path.display()
                ),
                format!("chmod 600 {}", path.display()),
            );
            return None;
        }
        Err(e) => {
            r.add(key, format!("cannot read {}: {e}", path.display()), gen_fix);
            return None;
        }
    };
    let text = String::from_utf8_lossy(&raw);
    if text.contains("-----BEGIN") {
        r.add(
            key,
            format!(
                "{} holds a PEM key or certificate, not a token",
                path.display()
            ),
            "keep the token and the TLS files apart; ".to_owned() + gen_fix,
        );
        return None;
    }
    match parse_pop_token(&text) {
        Ok(t) => Some(t),
        Err(why) => {
            r.add(key, format!("{} {why}", path.display()), gen_fix);
            None
        }
    }
}

fn same_file(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => a == b,
    }
}

pub(super) fn load_certs(
    r: &mut Report,
    key: &str,
    path: &Path,
) -> Option<Vec<CertificateDer<'static>>> {
    let certs: Result<Vec<_>, _> = match CertificateDer::pem_file_iter(path) {
        Ok(it) => it.collect(),
        Err(e) => {
            r.add(
                key,
                format!("cannot read {}: {e}", path.display()),
                "point it at a PEM certificate file",
            );
            return None;
        }
    };
    match certs {
        Ok(c) if !c.is_empty() => Some(c),
        Ok(_) => {
            r.add(
                key,
                format!("{} holds no PEM certificate", path.display()),
                "point it at a file with -----BEGIN CERTIFICATE----- blocks",
            );
            None
        }
        Err(e) => {
            r.add(
                key,
                format!("{} is not valid PEM: {e}", path.display()),
                "point it at a PEM certificate file",
            );
            None
        }
    }
}

fn load_tls(
    r: &mut Report,
    a: Option<&RawAuth>,
    file: &dyn Fn(&Path) -> PathBuf,
) -> Option<TlsMaterial> {
    let mut required = |key: &str, value: Option<&PathBuf>, fix: &str| match value {
        Some(p) => Some(file(p)),
        None => {
            r.add(
                key,
                "missing; every Commercial POP serves HTTPS and proves who it is to its peers with a certificate from the POP CA",
                format!("{fix} (see the README, section \"Certificates\")"),
            );
            None
        }
    };
    let cert = required(
        "auth.mtls_cert",
        a.and_then(|a| a.mtls_cert.as_ref()),
        "add mtls_cert: this POP's PEM certificate (chain), signed by the POP CA",
    );
    let key = required(
        "auth.mtls_key",
        a.and_then(|a| a.mtls_key.as_ref()),
        "add mtls_key: the PEM private key of mtls_cert (mode 0600)",
    );
    let ca = required(
        "auth.mtls_ca",
        a.and_then(|a| a.mtls_ca.as_ref()),
        "add mtls_ca: the PEM certificate of the CA that signs every POP's certificate",
    );
    let cert_chain = cert.and_then(|c| load_certs(r, "auth.mtls_cert", &c));
    let key = key.and_then(|k| load_key(r, &k));
    let ca = ca.and_then(|c| load_certs(r, "auth.mtls_ca", &c));
    Some(TlsMaterial {
        cert_chain: cert_chain?,
        key: std::sync::Arc::new(key?),
        ca: ca?,
    })
}

fn load_key(r: &mut Report, key: &Path) -> Option<PrivateKeyDer<'static>> {
    match files::check_private(key) {
        Err(files::Error::TooOpen { mode, .. }) => {
            r.add(
                "auth.mtls_key",
                format!(
                    "{} has mode {mode:04o}; a private key must be private",
                    key.display()
                ),
                format!("chmod 600 {}", key.display()),
            );
            None
        }
        _ => {
            match PrivateKeyDer::from_pem_file(key) {
                Ok(k) => Some(k),
                Err(e) => {
                    r.add("auth.mtls_key", format!("cannot load a PEM private key from {}: {e}", key.display()), "point it at the PEM private key (PKCS#8, PKCS#1 or SEC1) of auth.mtls_cert");
                    None
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const PATH: &str = "/etc/clavitor/test-replication.yaml";

    /// Every outcome names the file; nothing panics.
    fn check(text: &str) -> Result<(), TestCaseError> {
        if let Err(e) = parse(Path::new(PATH), text) {
            let msg = e.to_string();
            prop_assert!(msg.contains(PATH), "{msg}");
            prop_assert!(msg.contains("Fix"), "{msg}");
        }
        Ok(())
    }

    /// YAML-ish text: mostly the characters YAML cares about.
    fn yamlish() -> impl Strategy<Value = String> {
        proptest::collection::vec(
            prop_oneof![
                Just(": ".to_owned()),
                Just("\n".to_owned()),
                Just("  ".to_owned()),
                Just("- ".to_owned()),
                Just("\t".to_owned()),
                Just("\"".to_owned()),
                Just("'".to_owned()),
                Just("[".to_owned()),
                Just("]".to_owned()),
                Just("{".to_owned()),
                Just("}".to_owned()),
                Just("&a ".to_owned()),
                Just("*a".to_owned()),
                Just("!!binary ".to_owned()),
                Just("pop_id".to_owned()),
                Just("auth".to_owned()),
                Just("token_file".to_owned()),
                "[a-z_0-9.]{1,8}",
                ".{1,3}",
            ],
            0..40,
        )
        .prop_map(|parts| parts.concat())
    }

    const KEYS: &[&str] = &[
        "pop_id",
        "region",
        "role",
        "backup_pop",
        "primary_pop",
        "auth",
        "replication",
        "control_plane",
        "id",
        "url",
        "auth_token_file",
        "token_file",
        "mtls_cert",
        "mtls_key",
        "mtls_ca",
        "batch_size",
        "max_retries",
        "heartbeat_interval",
        "telemetry_interval",
        "ca_file",
        "unknown_key",
    ];

    #[derive(Debug, Clone)]
    enum Node {
        Scalar(String),
        List(Vec<Node>),
        Map(Vec<(String, Node)>),
    }

    fn scalar() -> impl Strategy<Value = String> {
        prop_oneof![
            Just("primary".to_owned()),
            Just("backup".to_owned()),
            Just("\"calgary-01\"".to_owned()),
            Just("\"https://zurich-01.example.com\"".to_owned()),
            Just("\"http://x\"".to_owned()),
            Just("/dev/null".to_owned()),
            Just("\"/nonexistent/token\"".to_owned()),
            Just("~".to_owned()),
            Just("true".to_owned()),
            Just("\"\"".to_owned()),
            any::<i64>().prop_map(|n| n.to_string()),
            any::<f64>().prop_map(|f| format!("{f:?}")),
            "[a-zA-Z0-9 ._/-]{0,16}".prop_map(|s| format!("{s:?}")),
        ]
    }

    fn node() -> impl Strategy<Value = Node> {
        scalar()
            .prop_map(Node::Scalar)
            .prop_recursive(3, 24, 6, |inner| {
                prop_oneof![
                    proptest::collection::vec(inner.clone(), 0..3).prop_map(Node::List),
                    proptest::collection::vec((proptest::sample::select(KEYS), inner), 0..6)
                        .prop_map(|kv| Node::Map(
                            kv.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()
                        )),
                ]
            })
    }

    fn emit(n: &Node, indent: usize, out: &mut String) {
        let pad = " ".repeat(indent);
        match n {
            Node::Scalar(s) => {
                out.push(' ');
                out.push_str(s);
                out.push('\n');
            }
            Node::List(items) if items.is_empty() => out.push_str(" []\n"),
            Node::Map(kv) if kv.is_empty() => out.push_str(" {}\n"),
            Node::List(items) => {
                out.push('\n');
                for i in items {
                    out.push_str(&pad);
                    out.push('-');
                    emit(i, indent + 2, out);
                }
            }
            Node::Map(kv) => {
                out.push('\n');
                for (k, v) in kv {
                    out.push_str(&pad);
                    out.push_str(k);
                    out.push(':');
                    emit(v, indent + 2, out);
                }
            }
        }
    }

    /// A top-level mapping of known (and one unknown) keys with arbitrary values.
    fn document() -> impl Strategy<Value = String> {
        proptest::collection::vec((proptest::sample::select(KEYS), node()), 0..10).prop_map(|kv| {
            let mut out = String::new();
            for (k, v) in kv {
                out.push_str(k);
                out.push(':');
                emit(&v, 2, &mut out);
            }
            out
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 256, failure_persistence: None, ..ProptestConfig::default() })]

        #[test]
        fn arbitrary_text_is_refused_naming_the_file(text in ".{0,200}") {
            check(&text)?;
        }

        #[test]
        fn yamlish_text_is_refused_naming_the_file(text in yamlish()) {
            check(&text)?;
        }

        #[test]
        fn structured_yaml_is_refused_naming_the_file(text in document()) {
            check(&text)?;
        }

        /// JSON is YAML too: the same documents in flow style.
        #[test]
        fn flow_style_yaml_is_refused_naming_the_file(text in document()) {
            let as_flow = format!("{{{}}}", text.lines().filter(|l| !l.starts_with(' ')).map(|l| l.trim_end_matches(':').to_owned() + ": ~").collect::<Vec<_>>().join(", "));
            check(&as_flow)?;
        }

        #[test]
        fn pop_tokens_parse_or_are_refused(text in ".{0,80}") {
            match parse_pop_token(&text) {
                Ok(t) => prop_assert_eq!(t.expose(), text.trim()),
                Err(why) => prop_assert!(why.contains("bits") || why.contains("base64"), "{}", why),
            }
        }

        #[test]
        fn pop_tokens_of_256_bits_parse(
            bytes in proptest::array::uniform32(any::<u8>()),
            prefixed in any::<bool>(),
            engine in 0..4usize,
            pad in "[ \t\n]{0,3}",
        ) {
            let body = [STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD][engine].encode(bytes);
            let text = format!("{pad}{}{body}{pad}", if prefixed { POP_TOKEN_PREFIX } else { "" });
            prop_assert!(parse_pop_token(&text).is_ok(), "{}", text);
        }

        #[test]
        fn pop_tokens_of_other_lengths_are_refused(len in (0usize..64).prop_filter("not 32", |n| *n != 32)) {
            let text = format!("{POP_TOKEN_PREFIX}{}", STANDARD.encode(vec![7u8; len]));
            let why = parse_pop_token(&text).unwrap_err();
            prop_assert!(why.contains(&format!("{} bits", len * 8)), "{}", why);
        }
    }

    /// The line and a caret under the column, each on its own line.
    #[test]
    fn syntax_errors_show_the_line_and_a_caret() {
        let e = parse(Path::new(PATH), "pop_id: \"zurich-01\"\nrole: [backup\n")
            .unwrap_err()
            .to_string();
        let lines: Vec<&str> = e.lines().collect();
        assert!(lines[0].starts_with(PATH), "{e}");
        assert!(e.contains("line 2, column 7"), "{e}");
        let at = lines
            .iter()
            .position(|l| l.ends_with("2 | role: [backup"))
            .unwrap_or_else(|| panic!("{e}"));
        assert_eq!(lines[at + 1].find('^'), lines[at].find('['), "{e}");
        assert!(lines[at + 2].starts_with("Fix:"), "{e}");
    }
}
