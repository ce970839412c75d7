//! Headers on every response: a Content-Security-Policy that allows only this server's own
//! script and style files (no inline script, nothing from elsewhere), no framing, no sniffing,
//! no referrer, HTTPS only, and no caching of pages that show live state.

use axum::extract::Request;
use axum::http::{HeaderName, HeaderValue, header};
use axum::middleware::Next;
use axum::response::Response;

pub const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

pub async fn layer(req: Request, next: Next) -> Response {
    let mut res = next.run(req).await;
    let h = res.headers_mut();
    let set = |h: &mut axum::http::HeaderMap, name: HeaderName, value: &'static str| {
        h.insert(name, HeaderValue::from_static(value));
    };
    set(h, header::CONTENT_SECURITY_POLICY, CSP);
    set(h, header::X_CONTENT_TYPE_OPTIONS, "nosniff");
    set(h, header::X_FRAME_OPTIONS, "DENY");
    // Not `no-referrer`: under it browsers send `Origin: null` on our own form posts.
    set(h, header::REFERRER_POLICY, "same-origin");
    set(h, header::STRICT_TRANSPORT_SECURITY, "max-age=31536000");
    if !h.contains_key(header::CACHE_CONTROL) {
        set(h, header::CACHE_CONTROL, "no-store");
    }
    res
}
