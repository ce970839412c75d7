//! The dashboard over plain HTTPS requests: sign-in, the session cookie (never the token, every
//! flag set), the security headers, and the checks every form goes through (Origin, CSRF).
//! What a person sees in a browser is `browser.rs`.

use crate::common::pki::provider;
use crate::helpers::*;
use reqwest::header::{COOKIE, LOCATION, ORIGIN, SET_COOKIE};
use std::time::Duration;

const A: &str = "calgary-01";
const B: &str = "zurich-01";

/// A client that trusts the control plane's CA, follows no redirects and keeps no cookies.
fn browserless(d: &CpDir) -> reqwest::Client {
    let tls = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(d.ca.roots())
        .with_no_client_auth();
    reqwest::Client::builder()
        .use_preconfigured_tls(tls)
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

/// Signs in; returns the `name=value` of the session cookie and the whole Set-Cookie line.
async fn sign_in(c: &reqwest::Client, cp: &Cp, token: &str) -> (u16, Option<(String, String)>) {
    let res = c
        .post(cp.url("/login"))
        .header(ORIGIN, &cp.url)
        .form(&[("token", token)])
        .send()
        .await
        .unwrap();
    let status = res.status().as_u16();
    let set = res
        .headers()
        .get(SET_COOKIE)
        .map(|v| v.to_str().unwrap().to_owned());
    (
        status,
        set.map(|s| (s.split(';').next().unwrap().to_owned(), s)),
    )
}

/// The hidden CSRF token of the first form on `html`.
fn csrf_of(html: &str) -> String {
    let at = html.find("name=\"csrf\" value=\"").expect("a CSRF field") + 19;
    html[at..].split('"').next().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn sign_in_gives_a_session_cookie_never_the_token_and_pages_carry_a_strict_csp() {
    let d = CpDir::new(&[A, B], MANUAL);
    let cp = d.start();
    let c = browserless(&d);
    let res = c.get(cp.url("/")).send().await.unwrap();
    assert_eq!(res.status(), 303);
    assert_eq!(res.headers()[LOCATION], "/login");

    let (st, cookie) = sign_in(&c, &cp, "clavitor-pop-v1-wrong").await;
    assert_eq!((st, cookie), (401, None));
    let (st, cookie) = sign_in(&c, &cp, &cp.admin).await;
    assert_eq!(st, 303);
    let (pair, line) = cookie.expect("a session cookie");
    for flag in [
        "HttpOnly",
        "Secure",
        "SameSite=Strict",
        "Max-Age=",
        "Path=/",
    ] {
        assert!(line.contains(flag), "{flag} missing: {line}");
    }
    assert!(pair.starts_with("__Host-"), "{pair}");
    assert!(
        !line.contains(&cp.admin),
        "the admin token is in the cookie"
    );
    let admin_tail = &cp.admin[cp.admin.len() - 20..];
    assert!(
        !line.contains(admin_tail),
        "the admin token is in the cookie"
    );

    let res = c
        .get(cp.url("/"))
        .header(COOKIE, &pair)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let csp = res.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(csp.starts_with("default-src 'self'"), "{csp}");
    assert!(
        csp.contains("script-src 'self'") && !csp.contains("unsafe-inline"),
        "{csp}"
    );
    assert_eq!(res.headers()["x-frame-options"], "DENY");
    let html = res.text().await.unwrap();
    assert!(
        html.contains("<script src=\"/static/dashboard.js\""),
        "{html}"
    );
    assert!(!html.contains("<script>"), "inline script: {html}");
    assert!(
        !html.contains("http://") && !html.contains("https://"),
        "an outside asset: {html}"
    );
    assert!(html.contains(A) && html.contains(B), "{html}");
    for asset in ["/static/dashboard.js", "/static/dashboard.css"] {
        let res = c.get(cp.url(asset)).send().await.unwrap();
        assert_eq!(res.status(), 200, "{asset}");
    }
    // The live fragment needs the session.
    let res = c.get(cp.url("/live")).send().await.unwrap();
    assert_eq!(res.status(), 401);
}

#[tokio::test(flavor = "multi_thread")]
async fn every_form_needs_this_origin_and_the_session_csrf_token() {
    let d = CpDir::new(&[A, B], MANUAL);
    let cp = d.start();
    cp.beat(&d, A, "primary", None, primary_repl(0, 1)).await;
    let c = browserless(&d);
    // A sign-in posted from elsewhere, or without an Origin, is refused.
    for origin in [Some("https://evil.example"), None] {
        let mut req = c
            .post(cp.url("/login"))
            .form(&[("token", cp.admin.as_str())]);
        if let Some(o) = origin {
            req = req.header(ORIGIN, o);
        }
        let res = req.send().await.unwrap();
        assert_eq!(res.status(), 403, "{origin:?}");
        assert!(res.headers().get(SET_COOKIE).is_none());
    }
    let (_, cookie) = sign_in(&c, &cp, &cp.admin).await;
    let (pair, _) = cookie.unwrap();
    let page = c
        .get(cp.url(&format!("/pops/{B}/promote")))
        .header(COOKIE, &pair)
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    let html = page.text().await.unwrap();
    assert!(html.contains("What will happen"), "{html}");
    assert!(
        html.contains(&format!("{A} is told at once to step down")),
        "{html}"
    );
    let csrf = csrf_of(&html);
    let post = |origin: Option<&str>, token: &str| {
        let mut req = c
            .post(cp.url(&format!("/pops/{B}/promote")))
            .header(COOKIE, &pair)
            .form(&[("csrf", token.to_owned())]);
        if let Some(o) = origin {
            req = req.header(ORIGIN, o.to_owned());
        }
        req.send()
    };
    assert_eq!(post(Some(&cp.url), "forged").await.unwrap().status(), 403);
    assert_eq!(post(None, &csrf).await.unwrap().status(), 403);
    assert_eq!(
        post(Some("https://evil.example"), &csrf)
            .await
            .unwrap()
            .status(),
        403
    );
    assert_eq!(
        cp.admin_get("/v1/pops").await["failover"]["promotion"],
        serde_json::Value::Null
    );
    let res = post(Some(&cp.url), &csrf).await.unwrap();
    assert_eq!(res.status(), 303);
    assert_eq!(
        cp.admin_get("/v1/pops").await["failover"]["promotion"]["to"],
        B
    );

    // Signing out ends the session on the server, not only in the browser.
    let res = c
        .post(cp.url("/logout"))
        .header(COOKIE, &pair)
        .header(ORIGIN, &cp.url)
        .form(&[("csrf", csrf.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 303);
    let res = c
        .get(cp.url("/"))
        .header(COOKIE, &pair)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 303, "the old session still works");
}
