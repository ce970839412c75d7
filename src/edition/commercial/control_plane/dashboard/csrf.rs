//! Cross-site request forgery: every state-changing form carries the session's CSRF token
//! (compared in constant time), and every POST must come with an `Origin` naming this server.

use axum::http::{HeaderMap, Uri, header};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use subtle::ConstantTimeEq;

/// A fresh random token (256 bits, base64url).
pub fn new_token() -> String {
    let mut raw = [0u8; 32];
    rand::fill(&mut raw);
    URL_SAFE_NO_PAD.encode(raw)
}

/// Whether the form's token is the session's.
pub fn token_matches(session: &str, form: &str) -> bool {
    !session.is_empty() && bool::from(session.as_bytes().ct_eq(form.as_bytes()))
}

/// Whether the request's `Origin` is `https://` + its own host (a form posted from this
/// page). Browsers send `Origin` on every POST; a request without one is refused. The host is
/// the `Host` header (HTTP/1.1) or the request's authority (HTTP/2 has no `Host`).
pub fn same_origin(headers: &HeaderMap, uri: &Uri) -> bool {
    let origin = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok());
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .or_else(|| uri.authority().map(|a| a.as_str()));
    match (origin, host) {
        (Some(o), Some(h)) => o.strip_prefix("https://") == Some(h),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn only_a_post_from_this_origin_passes() {
        let path = Uri::from_static("/login");
        let origin = |h: &mut HeaderMap, v: &'static str| {
            h.insert(header::ORIGIN, HeaderValue::from_static(v));
        };
        let mut h = HeaderMap::new();
        h.insert(header::HOST, HeaderValue::from_static("127.0.0.1:7450"));
        assert!(!same_origin(&h, &path), "no Origin");
        origin(&mut h, "https://127.0.0.1:7450");
        assert!(same_origin(&h, &path));
        origin(&mut h, "https://evil.example");
        assert!(!same_origin(&h, &path));
        origin(&mut h, "http://127.0.0.1:7450");
        assert!(!same_origin(&h, &path));
        origin(&mut h, "null");
        assert!(!same_origin(&h, &path));
        // HTTP/2 has no Host header: the authority is in the URI.
        let mut h2 = HeaderMap::new();
        origin(&mut h2, "https://127.0.0.1:7450");
        assert!(same_origin(
            &h2,
            &Uri::from_static("https://127.0.0.1:7450/login")
        ));
        assert!(!same_origin(&h2, &path));
    }

    #[test]
    fn tokens_match_only_exactly() {
        let t = new_token();
        assert!(token_matches(&t, &t));
        assert!(!token_matches(&t, &new_token()));
        assert!(!token_matches("", ""));
    }
}
