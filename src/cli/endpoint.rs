//! The server a client command talks to: `--server URL` parsed once, with the rule that a
//! token never travels over plain http to another machine.

use anyhow::{Result, bail};
use std::net::IpAddr;
use ureq::http::Uri;

/// A parsed `--server` URL: scheme, authority and an optional path prefix (a server behind a
/// reverse proxy at `https://host/vault` is reached at `/vault/v1/...`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    https: bool,
    /// `host[:port]` as the user wrote it (IPv6 in brackets).
    authority: String,
    /// The host alone, brackets removed.
    host: String,
    /// Empty, or `/segment...` without a trailing slash.
    prefix: String,
}

const EXAMPLE: &str = "e.g. http://127.0.0.1:7441 or https://vault.example.com";

impl Endpoint {
    pub fn parse(url: &str) -> Result<Self> {
        if url.contains('#') || url.contains('?') {
            bail!("--server {url:?}: a server URL has no query or fragment ({EXAMPLE})");
        }
        let Ok(uri) = url.parse::<Uri>() else {
            bail!("--server {url:?} is not a URL ({EXAMPLE})");
        };
        let https = match uri.scheme_str() {
            Some(s) if s.eq_ignore_ascii_case("https") => true,
            Some(s) if s.eq_ignore_ascii_case("http") => false,
            Some(s) => bail!("--server {url:?}: unsupported scheme {s:?}; use http:// or https://"),
            None => {
                bail!("--server {url:?}: the URL needs a scheme, http:// or https:// ({EXAMPLE})")
            }
        };
        let Some(authority) = uri.authority() else {
            bail!("--server {url:?}: the URL has no host ({EXAMPLE})");
        };
        if authority.as_str().contains('@') {
            bail!(
                "--server {url:?}: a user name or password in the URL is not supported; the token goes in --token-file or CLAVITOR_TOKEN"
            );
        }
        let host = authority.host();
        if host.is_empty() {
            bail!("--server {url:?}: the URL has no host ({EXAMPLE})");
        }
        if let Some(port) = authority
            .as_str()
            .strip_prefix(host)
            .filter(|p| !p.is_empty())
        {
            let port = port.strip_prefix(':').unwrap_or(port);
            if port.is_empty() {
                bail!("--server {url:?}: the port after ':' is missing");
            }
            if !port.bytes().all(|b| b.is_ascii_digit()) || port.parse::<u16>().is_err() {
                bail!("--server {url:?}: {port:?} is not a port number (1-65535)");
            }
        }
        Ok(Self {
            https,
            authority: authority.as_str().to_owned(),
            host: host
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_owned(),
            prefix: uri.path().trim_end_matches('/').to_owned(),
        })
    }

    pub fn is_https(&self) -> bool {
        self.https
    }

    /// The full URL of an API path such as `/v1/entries`, below the prefix.
    pub fn url(&self, path: &str) -> String {
        let scheme = if self.https { "https" } else { "http" };
        format!("{scheme}://{}{}{path}", self.authority, self.prefix)
    }

    /// `scheme://host[:port]/prefix`, for messages.
    pub fn display(&self) -> String {
        self.url("")
    }

    /// The host, for messages.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// True when the host is this machine's loopback by its very name: `localhost`, 127.0.0.0/8,
    /// `::1` or an IPv4-mapped loopback. Any other name might resolve anywhere, so it is not.
    pub fn is_loopback(&self) -> bool {
        if self.host.eq_ignore_ascii_case("localhost") {
            return true;
        }
        match self.host.parse::<IpAddr>() {
            Ok(IpAddr::V4(a)) => a.is_loopback(),
            Ok(IpAddr::V6(a)) => {
                a.is_loopback() || a.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
            }
            Err(_) => false,
        }
    }

    /// Refuses, before anything connects, to send a bearer token in clear text to another
    /// machine: anyone on the path could read it and act as its holder.
    pub fn check_token_transport(&self, allow_insecure_http: bool) -> Result<()> {
        if self.https || allow_insecure_http || self.is_loopback() {
            return Ok(());
        }
        let hint = match self.host.parse::<IpAddr>() {
            Ok(ip) if ip.is_unspecified() => {
                " (a listen address like 0.0.0.0 is not an address to connect to: use http://127.0.0.1:PORT for a server on this machine)"
            }
            _ => "",
        };
        bail!(
            "refusing to send the token over plain http to {}, which is not a loopback address: anyone on the network could read it{hint}. Fix: use an https:// server URL (with --ca-file CA.pem for a private CA), or pass --allow-insecure-http if the network is trusted",
            self.display()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_scheme_host_port_and_prefix() {
        let e = Endpoint::parse("http://127.0.0.1:7441/").unwrap();
        assert_eq!(e.url("/v1/entries"), "http://127.0.0.1:7441/v1/entries");
        assert!(e.is_loopback() && !e.is_https());
        let e = Endpoint::parse("https://vault.example.com/team/vault/").unwrap();
        assert_eq!(
            e.url("/v1/entries"),
            "https://vault.example.com/team/vault/v1/entries"
        );
        assert!(e.is_https() && !e.is_loopback());
        let e = Endpoint::parse("http://[::1]:8080/p").unwrap();
        assert_eq!(e.url("/healthz"), "http://[::1]:8080/p/healthz");
        assert_eq!(e.host(), "::1");
        assert!(e.is_loopback());
        assert!(Endpoint::parse("HTTP://LOCALHOST").unwrap().is_loopback());
        assert!(
            Endpoint::parse("http://[::ffff:127.0.0.2]:1")
                .unwrap()
                .is_loopback()
        );
    }

    #[test]
    fn refuses_garbage_with_a_reason() {
        for (url, needle) in [
            ("ftp://x", "unsupported scheme"),
            ("127.0.0.1:7441", "scheme"),
            ("vault.example.com", "scheme"),
            ("http://x:notaport", "not a port"),
            ("http://x:99999", "not a port"),
            ("http://x:", "port"),
            ("http://", "not a URL"),
            ("", "not a URL"),
            ("http://u:p@host", "password"),
            ("http://h/p?x=1", "query"),
            ("http://h/#f", "fragment"),
            ("not a url at all", "not a URL"),
        ] {
            let err = Endpoint::parse(url).expect_err(url).to_string();
            assert!(err.contains(needle), "{url}: {err}");
        }
    }

    #[test]
    fn plain_http_carries_a_token_only_to_loopback() {
        for url in [
            "http://127.0.0.1:1",
            "http://127.8.9.10",
            "http://localhost:7441",
            "http://[::1]",
            "https://10.1.2.3",
            "https://vault.example.com",
        ] {
            Endpoint::parse(url)
                .unwrap()
                .check_token_transport(false)
                .unwrap_or_else(|e| panic!("{url}: {e}"));
        }
        for url in [
            "http://10.1.2.3:7441",
            "http://192.0.2.1",
            "http://vault.example.com",
            "http://[2001:db8::1]",
            "http://0.0.0.0:7441",
            // 127.0.0.1 in another spelling resolves to loopback, but only a name that is
            // loopback by itself counts.
            "http://2130706433",
            "http://localhost.example.com",
        ] {
            let e = Endpoint::parse(url).unwrap();
            let err = e.check_token_transport(false).expect_err(url).to_string();
            assert!(
                err.contains("--allow-insecure-http") && err.contains("https://"),
                "{err}"
            );
            e.check_token_transport(true).unwrap();
        }
        let err = Endpoint::parse("http://0.0.0.0:7441")
            .unwrap()
            .check_token_transport(false)
            .unwrap_err()
            .to_string();
        assert!(err.contains("127.0.0.1"), "{err}");
    }
}
