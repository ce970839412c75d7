//! JSON over HTTP with a bearer token, for suites that talk to `serve` children.

use serde_json::Value;

/// A status and the JSON body (`Null` when the body is not JSON).
pub type Reply = (u16, Value);

/// Sends `method url` with `token` and an optional JSON `body`; `Err` when the request itself
/// fails (refused, reset, timed out).
pub async fn try_call(
    c: &reqwest::Client,
    method: reqwest::Method,
    url: &str,
    token: &str,
    body: Option<&Value>,
) -> Result<Reply, reqwest::Error> {
    let mut req = c.request(method, url).bearer_auth(token);
    if let Some(b) = body {
        req = req.json(b);
    }
    let res = req.send().await?;
    let status = res.status().as_u16();
    let text = res.text().await?;
    Ok((status, serde_json::from_str(&text).unwrap_or(Value::Null)))
}

/// [`try_call`], panicking if the request fails.
pub async fn call(
    c: &reqwest::Client,
    method: reqwest::Method,
    url: &str,
    token: &str,
    body: Option<&Value>,
) -> Reply {
    try_call(c, method.clone(), url, token, body)
        .await
        .unwrap_or_else(|e| panic!("{method} {url}: {e:?}"))
}

/// `GET BASE/healthz`: asserts 200 and returns the JSON.
pub async fn health(c: &reqwest::Client, base: &str) -> Value {
    let res = c
        .get(format!("{base}/healthz"))
        .send()
        .await
        .unwrap_or_else(|e| panic!("GET {base}/healthz: {e:?}"));
    assert_eq!(res.status().as_u16(), 200, "GET {base}/healthz");
    res.json().await.expect("healthz JSON")
}
