//! The dashboard's one cookie: a random session id (never the admin token), `__Host-` prefixed,
//! HttpOnly, Secure, SameSite=Strict, Path=/, with a Max-Age equal to the session's lifetime.

use axum::http::{HeaderMap, HeaderValue, header};
use std::time::Duration;

pub const NAME: &str = "__Host-clavitor_cp_session";

/// The session id the browser sent, if any.
pub fn session_id(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == NAME)
        .map(|(_, v)| v.trim().to_owned())
        .filter(|v| !v.is_empty())
}

/// `Set-Cookie` for a new session.
pub fn set_session(id: &str, lifetime: Duration) -> HeaderValue {
    let v = format!(
        "{NAME}={id}; Path=/; Max-Age={}; HttpOnly; Secure; SameSite=Strict",
        lifetime.as_secs()
    );
    HeaderValue::from_str(&v).unwrap_or_else(|_| clear())
}

/// `Set-Cookie` that removes the session cookie.
pub fn clear() -> HeaderValue {
    HeaderValue::from_static(
        "__Host-clavitor_cp_session=; Path=/; Max-Age=0; HttpOnly; Secure; SameSite=Strict",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_session_cookie_is_found_among_others_and_carries_every_flag() {
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            HeaderValue::from_static("a=1; __Host-clavitor_cp_session=abc; b=2"),
        );
        assert_eq!(session_id(&h).as_deref(), Some("abc"));
        let set = set_session("abc", Duration::from_secs(60));
        let set = set.to_str().unwrap();
        for flag in [
            "HttpOnly",
            "Secure",
            "SameSite=Strict",
            "Max-Age=60",
            "Path=/",
        ] {
            assert!(set.contains(flag), "{set}");
        }
        assert_eq!(session_id(&HeaderMap::new()), None);
    }
}
