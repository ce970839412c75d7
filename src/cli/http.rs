//! A minimal blocking HTTP/1.1 client for the CLI's requests to a Clavitor server.
//!
//! Why not reqwest or hyper's client: the Community build must carry no general-purpose
//! outbound HTTP client (checked with `cargo tree`). The CLI only ever talks to the server the
//! user names, one request per connection, so a request writer plus `httparse` is enough.

use anyhow::{Context, Result, bail};
use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

const TIMEOUT: Duration = Duration::from_secs(30);
const MAX_RESPONSE: usize = 16 * 1024 * 1024;

#[derive(Debug, Clone)]
pub struct Endpoint {
    host: String,
    port: u16,
}

impl Endpoint {
    pub fn parse(url: &str) -> Result<Self> {
        let rest = match url.strip_prefix("http://") {
            Some(r) => r,
            None if url.starts_with("https://") => bail!(
                "{url}: this client speaks plain HTTP to a local or proxied server; use an http:// URL (e.g. via a TLS-terminating proxy on localhost)"
            ),
            None => bail!("{url}: the server URL must start with http://"),
        };
        let authority = rest.split('/').next().unwrap_or_default();
        if authority.is_empty() {
            bail!("{url}: the server URL has no host");
        }
        let (host, port) = match authority.rsplit_once(':') {
            Some((h, p)) if !h.ends_with(']') || authority.starts_with('[') => (
                h.to_owned(),
                p.parse::<u16>()
                    .with_context(|| format!("{url}: {p:?} is not a port number"))?,
            ),
            _ => (authority.to_owned(), 80),
        };
        Ok(Self { host, port })
    }
}

pub struct Reply {
    pub status: u16,
    pub body: Vec<u8>,
}

pub fn request(
    ep: &Endpoint,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&[u8]>,
) -> Result<Reply> {
    let host = ep.host.trim_start_matches('[').trim_end_matches(']');
    let addr = (host, ep.port)
        .to_socket_addrs()
        .with_context(|| format!("cannot resolve {}", ep.host))?
        .next()
        .with_context(|| format!("{} has no address", ep.host))?;
    let mut stream = TcpStream::connect_timeout(&addr, TIMEOUT).with_context(|| {
        format!(
            "cannot connect to the server at {}:{}; is `clavitor serve` running? (set --server)",
            ep.host, ep.port
        )
    })?;
    stream.set_read_timeout(Some(TIMEOUT))?;
    stream.set_write_timeout(Some(TIMEOUT))?;
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {}:{}\r\nConnection: close\r\nAccept: application/json\r\nUser-Agent: clavitor-cli/{}\r\n",
        ep.host,
        ep.port,
        env!("CARGO_PKG_VERSION")
    );
    if let Some(t) = token {
        head.push_str("Authorization: Bearer ");
        head.push_str(t);
        head.push_str("\r\n");
    }
    let body = body.unwrap_or_default();
    if !body.is_empty() || matches!(method, "POST" | "PUT") {
        head.push_str(&format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n",
            body.len()
        ));
    }
    head.push_str("\r\n");
    let mut msg = zeroize::Zeroizing::new(head.into_bytes());
    msg.extend_from_slice(body);
    stream.write_all(&msg).context("sending the request")?;
    let mut raw = Vec::new();
    stream
        .take(MAX_RESPONSE as u64)
        .read_to_end(&mut raw)
        .context("reading the response")?;
    parse_response(&raw)
}

fn parse_response(raw: &[u8]) -> Result<Reply> {
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut resp = httparse::Response::new(&mut headers);
    let head_len = match resp
        .parse(raw)
        .context("the server sent a malformed response")?
    {
        httparse::Status::Complete(n) => n,
        httparse::Status::Partial => bail!("the server closed the connection mid-response"),
    };
    let status = resp.code.unwrap_or(0);
    let chunked = resp.headers.iter().any(|h| {
        h.name.eq_ignore_ascii_case("transfer-encoding")
            && String::from_utf8_lossy(h.value)
                .to_ascii_lowercase()
                .contains("chunked")
    });
    let rest = &raw[head_len..];
    let body = if chunked {
        dechunk(rest)?
    } else {
        rest.to_vec()
    };
    Ok(Reply { status, body })
}

fn dechunk(mut data: &[u8]) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let line_end = data
            .windows(2)
            .position(|w| w == b"\r\n")
            .context("malformed chunked body")?;
        let size_text = std::str::from_utf8(&data[..line_end])?;
        let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)
            .context("malformed chunk size")?;
        data = &data[line_end + 2..];
        if size == 0 {
            return Ok(out);
        }
        if data.len() < size + 2 {
            bail!("truncated chunked body");
        }
        out.extend_from_slice(&data[..size]);
        data = &data[size + 2..];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_endpoints() {
        let e = Endpoint::parse("http://127.0.0.1:7441/").unwrap();
        assert_eq!((e.host.as_str(), e.port), ("127.0.0.1", 7441));
        let e = Endpoint::parse("http://[::1]:8080").unwrap();
        assert_eq!((e.host.as_str(), e.port), ("[::1]", 8080));
        assert_eq!(Endpoint::parse("http://vault.local").unwrap().port, 80);
        assert!(Endpoint::parse("ftp://x").is_err());
        assert!(Endpoint::parse("http://x:notaport").is_err());
    }

    #[test]
    fn parses_plain_and_chunked_responses() {
        let r = parse_response(b"HTTP/1.1 201 Created\r\ncontent-length: 2\r\n\r\n{}").unwrap();
        assert_eq!((r.status, r.body.as_slice()), (201, &b"{}"[..]));
        let r = parse_response(
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n",
        )
        .unwrap();
        assert_eq!(r.body, b"abcde");
    }
}
