//! `POST /v1/proxy`: a request sent on the caller's behalf with `{{clavitor://ENTRY/FIELD}}`
//! placeholders in its headers and body filled in by the server, so that an agent can use a
//! secret (even a `use` field it may never read) without holding it.
//!
//! Every check happens before any connection: the placeholders name fields in the caller's
//! scopes (as a read would: out-of-scope is "not found"), the URL's host is in every used
//! field's `allowed_hosts`, the scheme is https (or http to a listed literal loopback address),
//! a literal address that is not public must be listed as such, and no filled header value
//! holds CR or LF. The upstream's answer comes back with every used value masked
//! ([`crate::mask`], best effort).

use super::{Caller, Error as ServiceError, Vault};
use crate::audit::{Event, Outcome};
use crate::egress::{self, Egress, Outbound};
use crate::mask::Masker;
use crate::store::StoredPolicy;
use crate::vault::reference::{Placeholder, SCHEME, fill, parse_reference, placeholders};
use crate::vault::{EntryId, HostPattern};
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use std::collections::HashMap;
use std::net::IpAddr;
use zeroize::Zeroizing;

/// Methods the proxy sends.
const METHODS: &[&str] = &["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"];
/// Headers a caller may not set: the client sets them, or they would change the framing.
const RESERVED_HEADERS: &[&str] = &[
    "host",
    "content-length",
    "transfer-encoding",
    "connection",
    "keep-alive",
    "upgrade",
    "te",
    "trailer",
    "proxy-authorization",
    "proxy-connection",
    "accept-encoding",
];
/// At most this many distinct fields in one request.
const MAX_REFERENCES: usize = 16;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Service(#[from] ServiceError),
    #[error("{0}")]
    Invalid(String),
    /// A reference out of the caller's scopes and one that does not exist alike.
    #[error("{0}: not found, or not in this token's scopes")]
    NotFound(String),
    #[error("{0}")]
    HostNotAllowed(String),
    #[error(transparent)]
    Upstream(#[from] egress::Error),
}

/// A request as the caller sent it.
pub struct ProxyRequest {
    pub method: String,
    pub url: String,
    pub headers: Vec<(String, String)>,
    pub body: Option<String>,
}

/// The upstream's answer, masked.
pub struct ProxyResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    /// The body; `Err` holds a body that is not UTF-8 (masked bytes).
    pub body: Result<String, Vec<u8>>,
}

/// Where a request goes, checked.
struct Target {
    url: reqwest::Url,
    /// Lower-case; IPv6 without brackets.
    host: String,
    literal: Option<IpAddr>,
}

fn invalid(msg: impl Into<String>) -> Error {
    Error::Invalid(msg.into())
}

fn parse_target(raw: &str) -> Result<Target, Error> {
    if raw.contains("{{") && raw.contains(SCHEME) {
        return Err(invalid(
            "placeholders are never filled in the URL (it is logged and shown in places values must not be); put the secret in a header or the body",
        ));
    }
    let url = reqwest::Url::parse(raw).map_err(|e| invalid(format!("url {raw:?}: {e}")))?;
    if !matches!(url.scheme(), "https" | "http") {
        return Err(invalid(format!(
            "url scheme {:?} is not supported: use https",
            url.scheme()
        )));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(invalid(
            "the url must not carry a user name or password; use a header with a placeholder",
        ));
    }
    let (host, literal) = match url.host() {
        Some(url::Host::Domain(d)) => (d.to_ascii_lowercase(), None),
        Some(url::Host::Ipv4(ip)) => (ip.to_string(), Some(IpAddr::V4(ip))),
        Some(url::Host::Ipv6(ip)) => (ip.to_string(), Some(IpAddr::V6(ip))),
        None => return Err(invalid("the url has no host")),
    };
    Ok(Target { url, host, literal })
}

/// The rules on scheme and literal addresses; host names are checked when resolved.
fn check_address(t: &Target) -> Result<(), Error> {
    let loopback_literal = t.literal.is_some_and(|ip| ip.is_loopback());
    if t.url.scheme() == "http" && !loopback_literal {
        return Err(Error::HostNotAllowed(format!(
            "{}: plain http is sent only to a literal loopback address (e.g. http://127.0.0.1:8080/) listed in allowed_hosts; use https",
            t.host
        )));
    }
    // A literal address gets here only if every used field lists it (host patterns match
    // addresses literally): that listing is what allows a non-public one
    // (`egress::address::is_public` applies to resolved names).
    Ok(())
}

impl Vault {
    /// Fills, checks, sends, masks. Nothing is sent unless every check passed.
    pub async fn proxy(
        &self,
        caller: &Caller,
        egress: &Egress,
        req: ProxyRequest,
    ) -> Result<ProxyResponse, Error> {
        let method = req.method.to_ascii_uppercase();
        if !METHODS.contains(&method.as_str()) {
            return Err(invalid(format!(
                "method {:?} is not sent by the proxy: use one of {}",
                req.method.chars().take(20).collect::<String>(),
                METHODS.join(", ")
            )));
        }
        let target = parse_target(&req.url)?;

        // Every placeholder, in headers and body.
        let mut found: Vec<(usize, Vec<Placeholder>)> = Vec::new();
        for (i, (name, value)) in req.headers.iter().enumerate() {
            let lower = name.to_ascii_lowercase();
            if RESERVED_HEADERS.contains(&lower.as_str()) {
                return Err(invalid(format!(
                    "header {name:?} is set by the proxy and cannot be sent"
                )));
            }
            HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| invalid(format!("header name {name:?} is not valid")))?;
            found.push((i, placeholders(value).map_err(|e| invalid(e.0))?));
        }
        let body_found = match &req.body {
            Some(b) => placeholders(b).map_err(|e| invalid(e.0))?,
            None => Vec::new(),
        };
        let mut references: Vec<String> = found
            .iter()
            .flat_map(|(_, ps)| ps.iter())
            .chain(&body_found)
            .map(|p| p.reference.clone())
            .collect();
        references.sort();
        references.dedup();
        if references.is_empty() {
            return Err(invalid(
                "the request uses no {{clavitor://ENTRY/FIELD}} placeholder; the proxy only sends requests that use a secret, to a host its field allows",
            ));
        }
        if references.len() > MAX_REFERENCES {
            return Err(invalid(format!(
                "the request uses {} fields; at most {MAX_REFERENCES}",
                references.len()
            )));
        }

        // The values, each field's hosts checked. A refused host is recorded (someone tried to
        // send a secret where its owner did not allow it); nothing is sent.
        let mut values: HashMap<String, Zeroizing<String>> = HashMap::new();
        let mut used: Vec<Event> = Vec::new();
        for reference in &references {
            let (id, field, tier, policy, value) = self.field_for_use(caller, reference).await?;
            let event = caller
                .audit("field.use")
                .target(id.as_str())
                .detail("field", field.as_str())
                .detail("tier", tier.as_str())
                .detail("host", target.host.as_str());
            let allowed = policy
                .allowed_hosts
                .iter()
                .any(|h| HostPattern::from_stored(h.clone()).matches(&target.host));
            if !allowed {
                self.record_read(event.outcome(Outcome::Denied)).await?;
                return Err(Error::HostNotAllowed(format!(
                    "{reference} may not be sent to {}: its allowed_hosts are [{}]; the owner sets them on the field",
                    target.host,
                    policy.allowed_hosts.join(", ")
                )));
            }
            values.insert(reference.clone(), value);
            used.push(event);
        }
        check_address(&target)?;

        // Filled in, checked, sent.
        let value_of = |r: &str| values.get(r).map(|v| v.to_string()).unwrap_or_default();
        let mut headers = HeaderMap::new();
        for (i, ps) in &found {
            let (name, raw) = &req.headers[*i];
            let filled = Zeroizing::new(fill(raw, ps, value_of));
            if filled.contains(['\r', '\n']) {
                return Err(invalid(format!(
                    "header {name:?}: the filled-in value contains CR or LF, which would split the request; refused"
                )));
            }
            let mut v = HeaderValue::from_str(&filled).map_err(|_| {
                invalid(format!(
                    "header {name:?}: the value holds characters a header cannot carry"
                ))
            })?;
            if !ps.is_empty() {
                v.set_sensitive(true);
            }
            let name = HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| invalid(format!("header name {name:?} is not valid")))?;
            headers.append(name, v);
        }
        let body = req
            .body
            .as_deref()
            .map(|b| fill(b, &body_found, value_of).into_bytes());
        let masker = Masker::new(values.values().map(|v| v.as_bytes()));
        let method = reqwest::Method::from_bytes(method.as_bytes())
            .map_err(|_| invalid("method is not valid"))?;
        // Recorded before anything leaves: with --audit-sync, no value is sent unrecorded.
        for event in used {
            self.record_read(event).await?;
        }
        let answer = egress
            .send(Outbound {
                method,
                url: target.url,
                headers,
                body,
            })
            .await?;
        let mut headers: Vec<(String, String)> = Vec::new();
        for (name, value) in answer.headers {
            let value = String::from_utf8_lossy(&masker.mask(&value)).into_owned();
            match headers.iter_mut().find(|(n, _)| *n == name) {
                Some((_, v)) => {
                    v.push_str(", ");
                    v.push_str(&value);
                }
                None => headers.push((name, value)),
            }
        }
        let body = masker.mask(&answer.body);
        Ok(ProxyResponse {
            status: answer.status,
            headers,
            body: String::from_utf8(body).map_err(|e| e.into_bytes()),
        })
    }

    /// A referenced field's id, name, tier, policy and value, for use. An entry is named by id or by
    /// exact title among the entries the caller sees.
    async fn field_for_use(
        &self,
        caller: &Caller,
        reference: &str,
    ) -> Result<(EntryId, String, String, StoredPolicy, Zeroizing<String>), Error> {
        let (entry, field) = parse_reference(reference).map_err(|e| invalid(e.0))?;
        let not_found = || Error::NotFound(reference.to_owned());
        let id = match EntryId::parse(entry) {
            Ok(id) => id,
            Err(_) => {
                let titled: Vec<String> = self
                    .list_entries(caller)
                    .await?
                    .into_iter()
                    .filter(|e| e.title == entry)
                    .map(|e| e.id)
                    .collect();
                match titled.as_slice() {
                    [id] => EntryId::from_stored(id.clone()),
                    [] => return Err(not_found()),
                    _ => {
                        return Err(invalid(format!(
                            "{reference}: {} entries are titled {entry:?}; use the entry's id",
                            titled.len()
                        )));
                    }
                }
            }
        };
        match self.use_field(caller, &id, field).await {
            Ok((tier, policy, value)) => Ok((id, field.to_owned(), tier, policy, value)),
            Err(
                ServiceError::EntryNotFound(_)
                | ServiceError::EntryNotReadable(_)
                | ServiceError::FieldNotFound { .. }
                | ServiceError::FieldNotReadable { .. },
            ) => Err(not_found()),
            Err(e) => Err(e.into()),
        }
    }
}
