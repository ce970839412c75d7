//! The `siem:` block of `replication.yaml`: raw (as written) and validated. Problems are added
//! to the file's report, each naming the key (`siem.sinks[1].url`) and the fix.

use super::super::config::{Report, load_certs, resolve, valid_id};
use crate::crypto::Token;
use crate::files;
use rustls_pki_types::CertificateDer;
use serde::Deserialize;
use std::path::Path;
use std::time::Duration;

pub const DEFAULT_BATCH: usize = 100;
pub const MAX_BATCH: usize = 1000;
pub const DEFAULT_MAX_RETRIES: u32 = 5;
pub const DEFAULT_RETRY_MAX_SECS: u64 = 60;
/// Undelivered events kept for one sink before the operator is told (about a day of a busy
/// POP's trail; the events stay in the database until delivered).
pub const DEFAULT_BACKLOG_ALERT: u64 = 100_000;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSiem {
    sinks: Option<Vec<RawSink>>,
    backlog_alert: Option<i64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSink {
    name: Option<String>,
    #[serde(rename = "type")]
    kind: Option<String>,
    address: Option<String>,
    url: Option<String>,
    token_file: Option<std::path::PathBuf>,
    ca_file: Option<std::path::PathBuf>,
    format: Option<String>,
    batch_size: Option<i64>,
    max_retries: Option<i64>,
    retry_max_seconds: Option<i64>,
}

#[derive(Debug, Clone, Default)]
pub struct SiemConfig {
    pub sinks: Vec<Sink>,
    pub backlog_alert: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// The event as `GET /v1/audit` returns it.
    Json,
    /// Splunk HTTP Event Collector's envelope.
    Hec,
    /// OCSF (see `format::OCSF_VERSION`).
    Ocsf,
}

impl Format {
    pub fn as_str(self) -> &'static str {
        match self {
            Format::Json => "json",
            Format::Hec => "hec",
            Format::Ocsf => "ocsf",
        }
    }
}

#[derive(Debug, Clone)]
pub enum Target {
    /// RFC 5424 messages over TLS, RFC 5425 octet-counting framing.
    Syslog { host: String, port: u16 },
    /// Batches of JSON lines POSTed with the token.
    Http { url: reqwest::Url, token: Token },
}

#[derive(Debug, Clone)]
pub struct Sink {
    /// Keys the sink's durable cursor: renaming a sink starts it from the beginning.
    pub name: String,
    pub target: Target,
    pub format: Format,
    /// Empty: the bundled web PKI roots. Else only these CAs are trusted.
    pub ca: Vec<CertificateDer<'static>>,
    pub batch_size: usize,
    pub max_retries: u32,
    pub retry_max: Duration,
}

pub fn validate(r: &mut Report, path: &Path, raw: Option<RawSiem>) -> SiemConfig {
    let Some(raw) = raw else {
        return SiemConfig::default();
    };
    let backlog_alert = match raw.backlog_alert {
        None => DEFAULT_BACKLOG_ALERT,
        Some(n) if n >= 1 => n as u64,
        Some(n) => {
            r.add(
                "siem.backlog_alert",
                format!("{n} is out of range"),
                format!("use a number of events of at least 1 (default {DEFAULT_BACKLOG_ALERT})"),
            );
            DEFAULT_BACKLOG_ALERT
        }
    };
    let Some(raw_sinks) = raw.sinks else {
        r.add(
            "siem.sinks",
            "missing",
            "list at least one sink, e.g. sinks: [{type: http, url: \"https://splunk.example.com:8088/services/collector/event\", token_file: hec.token, format: hec}], or remove siem",
        );
        return SiemConfig::default();
    };
    let mut sinks = Vec::new();
    for (i, s) in raw_sinks.into_iter().enumerate() {
        if let Some(sink) = sink(r, path, i, s) {
            if sinks.iter().any(|o: &Sink| o.name == sink.name) {
                r.add(
                    format!("siem.sinks[{i}].name"),
                    format!(
                        "{:?} names another sink too; each sink keeps its own cursor by name",
                        sink.name
                    ),
                    "give each sink a different name",
                );
                continue;
            }
            sinks.push(sink);
        }
    }
    SiemConfig {
        sinks,
        backlog_alert,
    }
}

fn sink(r: &mut Report, path: &Path, i: usize, s: RawSink) -> Option<Sink> {
    let key = |k: &str| format!("siem.sinks[{i}].{k}");
    let problems = r.0.len();
    let name = match s.name.as_deref().map(str::trim) {
        None => format!("sink-{i}"),
        Some(n) if valid_id(n) => n.to_owned(),
        Some(n) => {
            r.add(
                key("name"),
                format!("{n:?} is not a valid sink name"),
                "use 1-64 characters from a-z, A-Z, 0-9, '-', '_', '.', e.g. name: \"splunk\"",
            );
            String::new()
        }
    };
    let format = match s.format.as_deref() {
        Some("json") => Format::Json,
        Some("hec") => Format::Hec,
        Some("ocsf") => Format::Ocsf,
        Some(other) => {
            r.add(
                key("format"),
                format!("{other:?} is not a format"),
                "use format: json, hec (http sinks only) or ocsf",
            );
            Format::Json
        }
        None => {
            r.add(
                key("format"),
                "missing",
                "add format: json, hec (http sinks only) or ocsf",
            );
            Format::Json
        }
    };
    let ca = match s.ca_file.as_deref() {
        Some(p) => load_certs(r, &key("ca_file"), &resolve(path, p)).unwrap_or_default(),
        None => Vec::new(),
    };
    let target = match s.kind.as_deref() {
        Some("syslog") => {
            if format == Format::Hec {
                r.add(
                    key("format"),
                    "hec is Splunk's HTTP envelope; a syslog sink cannot carry it",
                    "use format: json or ocsf, or type: http",
                );
            }
            for (k, set) in [
                ("url", s.url.is_some()),
                ("token_file", s.token_file.is_some()),
            ] {
                if set {
                    r.add(
                        key(k),
                        "only http sinks take this key",
                        format!("remove {k}, or use type: http"),
                    );
                }
            }
            match s.address.as_deref() {
                Some(a) => match split_address(a) {
                    Some((host, port)) => Some(Target::Syslog { host, port }),
                    None => {
                        r.add(key("address"), format!("{a:?} is not host:port"), "write the collector's address, e.g. address: \"siem.example.com:6514\"");
                        None
                    }
                },
                None => {
                    r.add(
                        key("address"),
                        "missing",
                        "add address: \"siem.example.com:6514\" (syslog over TLS)",
                    );
                    None
                }
            }
        }
        Some("http") => {
            if s.address.is_some() {
                r.add(
                    key("address"),
                    "only syslog sinks take this key",
                    "remove address, or use type: syslog",
                );
            }
            let url = match s.url.as_deref() {
                Some(u) => match reqwest::Url::parse(u) {
                    Ok(url) if url.scheme() == "https" && url.host().is_some() => Some(url),
                    Ok(_) => {
                        r.add(key("url"), format!("{u:?} is not an https URL; the audit trail leaves this POP only over TLS"), "use an https:// URL, e.g. \"https://splunk.example.com:8088/services/collector/event\"");
                        None
                    }
                    Err(e) => {
                        r.add(
                            key("url"),
                            format!("{u:?} is not a URL ({e})"),
                            "write a full URL such as \"https://collector.example.com/ingest\"",
                        );
                        None
                    }
                },
                None => {
                    r.add(
                        key("url"),
                        "missing",
                        "add url: \"https://collector.example.com/ingest\"",
                    );
                    None
                }
            };
            let token = match s.token_file.as_deref() {
                Some(p) => {
                    let p = resolve(path, p);
                    match files::read_token(&p) {
                        Ok(t) => Some(t),
                        Err(files::Error::TooOpen { mode, .. }) => {
                            r.add(
                                key("token_file"),
                                format!(
                                    "{} has mode {mode:04o}; token files must be private",
                                    p.display()
                                ),
                                format!("chmod 600 {}", p.display()),
                            );
                            None
                        }
                        Err(e) => {
                            r.add(key("token_file"), format!("cannot use {}: {e}", p.display()), "point it at a private (mode 0600) file holding the collector's token");
                            None
                        }
                    }
                }
                None => {
                    r.add(key("token_file"), "missing", "point it at a private (mode 0600) file holding the collector's token (for Splunk, the HEC token)");
                    None
                }
            };
            match (url, token) {
                (Some(url), Some(token)) => Some(Target::Http { url, token }),
                _ => None,
            }
        }
        Some(other) => {
            r.add(
                key("type"),
                format!("{other:?} is not a sink type"),
                "use type: syslog or type: http",
            );
            None
        }
        None => {
            r.add(key("type"), "missing", "add type: syslog or type: http");
            None
        }
    };
    let mut number =
        |k: &str, v: Option<i64>, range: std::ops::RangeInclusive<i64>, default: i64| match v {
            None => default,
            Some(n) if range.contains(&n) => n,
            Some(n) => {
                r.add(
                    key(k),
                    format!("{n} is out of range"),
                    format!(
                        "use a number from {} to {} (default {default})",
                        range.start(),
                        range.end()
                    ),
                );
                default
            }
        };
    let batch_size = number(
        "batch_size",
        s.batch_size,
        1..=MAX_BATCH as i64,
        DEFAULT_BATCH as i64,
    ) as usize;
    let max_retries = number(
        "max_retries",
        s.max_retries,
        0..=1000,
        i64::from(DEFAULT_MAX_RETRIES),
    ) as u32;
    let retry_max = number(
        "retry_max_seconds",
        s.retry_max_seconds,
        1..=3600,
        DEFAULT_RETRY_MAX_SECS as i64,
    ) as u64;
    if r.0.len() > problems {
        return None;
    }
    Some(Sink {
        name,
        target: target?,
        format,
        ca,
        batch_size,
        max_retries,
        retry_max: Duration::from_secs(retry_max),
    })
}

fn split_address(a: &str) -> Option<(String, u16)> {
    let (host, port) = a.trim().rsplit_once(':')?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let port: u16 = port.parse().ok().filter(|p| *p > 0)?;
    (!host.is_empty()).then(|| (host.to_owned(), port))
}
