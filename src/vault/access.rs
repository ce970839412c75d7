//! How agents may use a field: read its value, or only have the server use it for them (the
//! proxy), and which hosts the server may send it to.

use super::{Invalid, invalid};
use std::fmt;
use std::net::IpAddr;

/// At most this many host patterns per field.
pub const MAX_ALLOWED_HOSTS: usize = 32;

/// What an agent may do with a field it holds the scope of.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum AgentAccess {
    /// The value is returned to agents (the behaviour of every field before this existed).
    #[default]
    Read,
    /// Never returned to an agent: the server fills it into proxied requests only.
    Use,
}

impl AgentAccess {
    pub fn parse(s: &str) -> Result<Self, Invalid> {
        match s {
            "read" => Ok(Self::Read),
            "use" => Ok(Self::Use),
            other => Err(invalid(format!(
                "agent_access {other:?} is not valid: use \"read\" or \"use\""
            ))),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Read => "read",
            Self::Use => "use",
        }
    }
}

impl fmt::Display for AgentAccess {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One entry of a field's `allowed_hosts`: an exact host name (`api.example.com`), a wildcard
/// for its subdomains (`*.example.org`, which does not match `example.org` itself), or a literal
/// IP address (`127.0.0.1`, `::1`), which alone may name a loopback, private or link-local
/// address. Kept lower-case, IPv6 without brackets: the text that is sealed into the field's
/// associated data.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostPattern(String);

impl HostPattern {
    pub fn parse(s: &str) -> Result<Self, Invalid> {
        let bad = |why: &str| invalid(format!("allowed_hosts entry {s:?} is not valid: {why}"));
        let t = s.trim().to_ascii_lowercase();
        let unbracketed = t
            .strip_prefix('[')
            .and_then(|r| r.strip_suffix(']'))
            .unwrap_or(&t);
        if let Ok(ip) = unbracketed.parse::<IpAddr>() {
            return Ok(Self(ip.to_string()));
        }
        let name = t.strip_prefix("*.").unwrap_or(&t);
        if name.is_empty() || name.len() > 253 {
            return Err(bad("a host name has 1 to 253 characters"));
        }
        if name.contains('*') {
            return Err(bad(
                "a wildcard is allowed only as the first label, as in *.example.org",
            ));
        }
        if t.starts_with("*.") && !name.contains('.') {
            return Err(bad(
                "a wildcard needs a domain of at least two labels, as in *.example.org",
            ));
        }
        let label_ok = |l: &str| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        };
        if !name.split('.').all(label_ok) {
            return Err(bad(
                "use a host name (letters, digits, '-' and '.'), *.domain, or an IP address; no scheme, port or path",
            ));
        }
        Ok(Self(t))
    }

    pub fn from_stored(s: String) -> Self {
        Self(s)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The literal address this pattern names, if it names one.
    pub fn literal_ip(&self) -> Option<IpAddr> {
        self.0.parse().ok()
    }

    /// Whether a URL's host (lower-case, IPv6 without brackets) is allowed by this pattern.
    pub fn matches(&self, host: &str) -> bool {
        if let Some(ip) = self.literal_ip() {
            return host.parse::<IpAddr>().is_ok_and(|h| h == ip);
        }
        match self.0.strip_prefix("*.") {
            Some(domain) => host
                .strip_suffix(domain)
                .is_some_and(|sub| sub.len() > 1 && sub.ends_with('.')),
            None => host == self.0,
        }
    }
}

impl fmt::Display for HostPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A validated `allowed_hosts` list: parsed, duplicates removed, order kept.
pub fn parse_allowed_hosts(list: &[String]) -> Result<Vec<HostPattern>, Invalid> {
    if list.len() > MAX_ALLOWED_HOSTS {
        return Err(invalid(format!(
            "allowed_hosts holds at most {MAX_ALLOWED_HOSTS} entries"
        )));
    }
    let mut out: Vec<HostPattern> = Vec::with_capacity(list.len());
    for s in list {
        let p = HostPattern::parse(s)?;
        if !out.contains(&p) {
            out.push(p);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_parse_and_match() {
        let p = |s| HostPattern::parse(s).unwrap();
        assert!(p("API.Example.com").matches("api.example.com"));
        assert!(!p("api.example.com").matches("x.api.example.com"));
        let w = p("*.example.org");
        assert!(w.matches("a.example.org") && w.matches("a.b.example.org"));
        assert!(!w.matches("example.org") && !w.matches("badexample.org"));
        assert!(p("127.0.0.1").matches("127.0.0.1"));
        assert!(!p("127.0.0.1").matches("127.0.0.2"));
        assert_eq!(p("[::1]").as_str(), "::1");
        assert!(p("::1").matches("::1"));
        assert!(!p("*.example.org").matches("127.0.0.1"));
        for bad in [
            "",
            "*",
            "*.com",
            "https://x.com",
            "x.com:443",
            "a*.b.com",
            "x.com/path",
            "-a.com",
        ] {
            assert!(HostPattern::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn access_modes() {
        assert_eq!(AgentAccess::parse("use").unwrap(), AgentAccess::Use);
        assert!(AgentAccess::parse("write").is_err());
        assert_eq!(AgentAccess::default().as_str(), "read");
    }
}
