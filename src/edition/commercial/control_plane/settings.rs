//! The control plane's YAML config (`clavitor control-plane --config FILE`): parsed strictly
//! (unknown keys are errors), then validated into a [`CpConfig`] holding what the files named
//! in it contain. Every problem is reported at once, naming the file, the key and the fix, with
//! the same helpers as `replication.yaml`.

use super::super::config::{
    Problem, Report, check_token_file, load_certs, render, resolve, syntax_message, valid_id,
};
use super::failover::{Mode, Rules};
use crate::crypto::{Token, TokenHash};
use crate::files;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

pub const DEFAULT_LISTEN: &str = "127.0.0.1:7450";
pub const DEFAULT_INTERVAL_MS: u64 = 10_000;
pub const DEFAULT_MISSED: u32 = 3;
pub const DEFAULT_LEASE_SECONDS: u64 = 20;
pub const DEFAULT_MAX_LAG_VERSIONS: u64 = 100;

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    listen: Option<String>,
    data_dir: Option<PathBuf>,
    tls_cert: Option<PathBuf>,
    tls_key: Option<PathBuf>,
    admin_token_file: Option<PathBuf>,
    pops: Option<Vec<RawPop>>,
    failover: Option<RawFailover>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPop {
    id: Option<String>,
    token_file: Option<PathBuf>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFailover {
    mode: Option<String>,
    heartbeat_interval_ms: Option<i64>,
    missed_heartbeats: Option<i64>,
    lease_seconds: Option<i64>,
    max_lag_versions: Option<i64>,
}

/// A POP the control plane knows: its id and the hash of the token it presents.
#[derive(Debug, Clone)]
pub struct PopEntry {
    pub id: String,
    pub token: TokenHash,
}

/// The validated control-plane configuration.
#[derive(Clone)]
pub struct CpConfig {
    pub path: PathBuf,
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    pub tls: Arc<rustls::ServerConfig>,
    pub admin_token: TokenHash,
    pub pops: Vec<PopEntry>,
    pub rules: Rules,
}

impl std::fmt::Debug for CpConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CpConfig")
            .field("path", &self.path)
            .field("listen", &self.listen)
            .field("data_dir", &self.data_dir)
            .field("pops", &self.pops.iter().map(|p| &p.id).collect::<Vec<_>>())
            .field("rules", &self.rules)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error(
        "{path} could not be read: {reason}. Fix: create it (see the README, \"Control plane\") or pass --config FILE"
    )]
    Unreadable { path: PathBuf, reason: String },
    #[error(
        "{path}: not a valid control-plane config:\n{message}\nFix: correct the marked line; the keys allowed at the top level are listen, data_dir, tls_cert, tls_key, admin_token_file, pops, failover, and an unknown-key message lists those allowed in its section"
    )]
    Syntax { path: PathBuf, message: String },
    #[error("{}", render(path, "control-plane config", problems))]
    Invalid {
        path: PathBuf,
        problems: Vec<Problem>,
    },
}

pub fn load(path: &Path) -> Result<CpConfig, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Unreadable {
        path: path.to_owned(),
        reason: e.to_string(),
    })?;
    let raw: RawConfig = if text.trim().is_empty() {
        RawConfig::default()
    } else {
        serde_saphyr::from_str(&text).map_err(|e| ConfigError::Syntax {
            path: path.to_owned(),
            message: syntax_message(&text, &e),
        })?
    };
    validate(path, raw)
}

fn validate(path: &Path, raw: RawConfig) -> Result<CpConfig, ConfigError> {
    let mut r = Report(Vec::new());
    let file = |p: &Path| resolve(path, p);

    let listen = match raw.listen.as_deref().unwrap_or(DEFAULT_LISTEN).parse() {
        Ok(a) => Some(a),
        Err(_) => {
            r.add(
                "listen",
                format!(
                    "{:?} is not an IP address and port",
                    raw.listen.unwrap_or_default()
                ),
                format!("write it as IP:PORT, e.g. listen: \"{DEFAULT_LISTEN}\""),
            );
            None
        }
    };
    let data_dir = match raw.data_dir.as_deref() {
        Some(d) if !d.as_os_str().is_empty() => Some(file(d)),
        _ => {
            r.add(
                "data_dir",
                "missing",
                "name the directory for the control plane's database, e.g. data_dir: \"/var/lib/clavitor-control\"",
            );
            None
        }
    };
    let admin_token = match raw.admin_token_file.as_deref().map(file) {
        Some(p) => check_token_file(&mut r, "admin_token_file", &p, None),
        None => {
            r.add(
                "admin_token_file",
                "missing",
                "point it at a private file holding the operators' token (create one with `clavitor pop-token --out FILE`)",
            );
            None
        }
    };
    let tls = load_tls(
        &mut r,
        raw.tls_cert.as_deref().map(file),
        raw.tls_key.as_deref().map(file),
    );

    let mut pops: Vec<PopEntry> = Vec::new();
    match raw.pops {
        None => r.add(
            "pops",
            "missing",
            "list the POPs that report here, e.g. pops: [{id: \"calgary-01\", token_file: \"calgary-01.token\"}]",
        ),
        Some(list) if list.is_empty() => r.add(
            "pops",
            "is empty",
            "list at least one POP with its id and token_file",
        ),
        Some(list) => {
            for (i, p) in list.into_iter().enumerate() {
                let key = format!("pops[{i}]");
                let id = match p.id.as_deref().map(str::trim) {
                    Some(id) if valid_id(id) => Some(id.to_owned()),
                    Some(id) => {
                        r.add(
                            format!("{key}.id"),
                            format!("{id:?} is not a valid POP id"),
                            "use 1-64 characters from a-z, A-Z, 0-9, '-', '_', '.' (the POP's pop_id)",
                        );
                        None
                    }
                    None => {
                        r.add(format!("{key}.id"), "missing", "set it to the POP's pop_id");
                        None
                    }
                };
                let token = match p.token_file.as_deref().map(file) {
                    Some(f) => check_token_file(&mut r, &format!("{key}.token_file"), &f, None),
                    None => {
                        r.add(
                            format!("{key}.token_file"),
                            "missing",
                            "point it at the token this POP sends (its control_plane.token_file)",
                        );
                        None
                    }
                };
                let (Some(id), Some(token)) = (id, token) else {
                    continue;
                };
                let hash = token.hash();
                if pops.iter().any(|q| q.id == id) {
                    r.add(
                        format!("{key}.id"),
                        format!("{id:?} is listed twice"),
                        "list each POP once",
                    );
                } else if pops.iter().any(|q| q.token.ct_eq(&hash)) {
                    r.add(
                        format!("{key}.token_file"),
                        format!("POP {id:?} has the same token as another POP, so the control plane could not tell them apart"),
                        "give every POP its own token (`clavitor pop-token --out FILE`)",
                    );
                } else if admin_token.as_ref().is_some_and(|a| a.hash().ct_eq(&hash)) {
                    r.add(
                        format!("{key}.token_file"),
                        format!("POP {id:?} has the admin token; a POP must not be able to promote"),
                        "give the POP its own token (`clavitor pop-token --out FILE`)",
                    );
                } else {
                    pops.push(PopEntry { id, token: hash });
                }
            }
        }
    }

    let rules = failover_rules(&mut r, raw.failover);

    if !r.0.is_empty() {
        return Err(ConfigError::Invalid {
            path: path.to_owned(),
            problems: r.0,
        });
    }
    let (Some(listen), Some(data_dir), Some(admin), Some(tls), Some(rules)) =
        (listen, data_dir, admin_token, tls, rules)
    else {
        unreachable!("no problems means every part is set")
    };
    Ok(CpConfig {
        path: path.to_owned(),
        listen,
        data_dir,
        tls,
        admin_token: admin.hash(),
        pops,
        rules,
    })
}

fn failover_rules(r: &mut Report, raw: Option<RawFailover>) -> Option<Rules> {
    let f = raw.unwrap_or(RawFailover {
        mode: None,
        heartbeat_interval_ms: None,
        missed_heartbeats: None,
        lease_seconds: None,
        max_lag_versions: None,
    });
    let mode = match f.mode.as_deref() {
        None | Some("manual") => Some(Mode::Manual),
        Some("automatic") => Some(Mode::Automatic),
        Some(other) => {
            r.add(
                "failover.mode",
                format!("{other:?} is not a failover mode"),
                "set mode: \"manual\" (promote from the dashboard or the API) or mode: \"automatic\"",
            );
            None
        }
    };
    let mut ranged =
        |key: &str, value: Option<i64>, default: u64, lo: i64, hi: i64, unit: &str| match value {
            None => Some(default),
            Some(n) if (lo..=hi).contains(&n) => Some(n as u64),
            Some(n) => {
                r.add(
                    format!("failover.{key}"),
                    format!("{n} is out of range"),
                    format!("use {unit} from {lo} to {hi} (default {default})"),
                );
                None
            }
        };
    let interval = ranged(
        "heartbeat_interval_ms",
        f.heartbeat_interval_ms,
        DEFAULT_INTERVAL_MS,
        100,
        3_600_000,
        "milliseconds",
    );
    let missed = ranged(
        "missed_heartbeats",
        f.missed_heartbeats,
        DEFAULT_MISSED.into(),
        1,
        100,
        "a count",
    );
    let lease = ranged(
        "lease_seconds",
        f.lease_seconds,
        DEFAULT_LEASE_SECONDS,
        0,
        86_400,
        "seconds",
    );
    let max_lag = ranged(
        "max_lag_versions",
        f.max_lag_versions,
        DEFAULT_MAX_LAG_VERSIONS,
        0,
        i64::MAX,
        "versions",
    );
    let (mode, interval, missed, lease, max_lag) = (mode?, interval?, missed?, lease?, max_lag?);
    let waits_ms = interval * missed;
    if lease == 0 && mode == Mode::Automatic {
        r.add(
            "failover.lease_seconds",
            "is 0 (no lease) with mode: automatic; without a lease a cut-off primary would keep acknowledging writes while its backup is promoted (two primaries)",
            format!("set a lease shorter than missed_heartbeats x heartbeat_interval_ms ({waits_ms} ms), or use mode: \"manual\""),
        );
        return None;
    }
    if lease > 0 && lease * 1000 >= waits_ms {
        r.add(
            "failover.lease_seconds",
            format!(
                "{lease} s is not shorter than the time failover waits for a silent primary (missed_heartbeats {missed} x heartbeat_interval_ms {interval} = {waits_ms} ms)"
            ),
            format!(
                "lower lease_seconds below {} s, or raise missed_heartbeats or heartbeat_interval_ms",
                waits_ms.div_ceil(1000)
            ),
        );
        return None;
    }
    Some(Rules {
        mode,
        interval: Duration::from_millis(interval),
        missed: missed as u32,
        lease: Duration::from_secs(lease),
        max_lag_versions: max_lag,
    })
}

fn load_tls(
    r: &mut Report,
    cert: Option<PathBuf>,
    key: Option<PathBuf>,
) -> Option<Arc<rustls::ServerConfig>> {
    let Some(cert) = cert else {
        r.add(
            "tls_cert",
            "missing; the control plane serves HTTPS only",
            "point tls_cert at the control plane's PEM certificate (chain)",
        );
        return None;
    };
    let Some(key) = key else {
        r.add(
            "tls_key",
            "missing; the control plane serves HTTPS only",
            "point tls_key at the PEM private key of tls_cert (mode 0600)",
        );
        return None;
    };
    let chain: Option<Vec<CertificateDer<'static>>> = load_certs(r, "tls_cert", &cert);
    let key_der = match files::check_private(&key) {
        Err(files::Error::TooOpen { mode, .. }) => {
            r.add(
                "tls_key",
                format!(
                    "{} has mode {mode:04o}; a private key must be private",
                    key.display()
                ),
                format!("chmod 600 {}", key.display()),
            );
            None
        }
        _ => match PrivateKeyDer::from_pem_file(&key) {
            Ok(k) => Some(k),
            Err(e) => {
                r.add(
                    "tls_key",
                    format!("cannot load a PEM private key from {}: {e}", key.display()),
                    "point it at the PEM private key (PKCS#8, PKCS#1 or SEC1) of tls_cert",
                );
                None
            }
        },
    };
    let (chain, key_der) = (chain?, key_der?);
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let built = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())
        .and_then(|b| {
            b.with_no_client_auth()
                .with_single_cert(chain, key_der)
                .map_err(|e| e.to_string())
        });
    match built {
        Ok(mut cfg) => {
            cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
            Some(Arc::new(cfg))
        }
        Err(e) => {
            r.add(
                "tls_key",
                format!("tls_cert and tls_key do not form a usable certificate: {e}"),
                "point tls_key at the private key of the certificate in tls_cert",
            );
            None
        }
    }
}

/// A token the operator types or a POP sends, checked against the configured hashes in
/// constant time: every POP is compared, whatever matched first.
pub fn pop_for_token<'a>(pops: &'a [PopEntry], token: &Token) -> Option<&'a PopEntry> {
    let hash = token.hash();
    let mut found = None;
    for p in pops {
        if p.token.ct_eq(&hash) {
            found = Some(p);
        }
    }
    found
}
