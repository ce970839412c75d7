//! The CLI's view of the API: where the token comes from, authenticated JSON requests, and
//! answers turned into values or sentences.

use super::ClientOpts;
use super::endpoint::Endpoint;
use super::http::{Http, Reply};
use super::output::escape_short;
use crate::crypto::Token;
use crate::files;
use anyhow::{Context, Result, bail};
use serde_json::Value;
use std::path::{Path, PathBuf};

/// How much of a server's error message an error shows.
const MESSAGE_CHARS: usize = 300;

pub struct Client {
    http: Http,
    token: Token,
}

impl Client {
    /// Checks the server URL and the transport before reading any token, and nothing here
    /// connects: a refusal never sends anything.
    pub fn from_opts(o: &ClientOpts) -> Result<Self> {
        let endpoint = Endpoint::parse(&o.server)?;
        endpoint.check_token_transport(o.allow_insecure_http)?;
        let token = find_token(
            o.token_file.as_deref(),
            std::env::var("CLAVITOR_TOKEN").ok(),
            files::default_token_path(),
        )?;
        let http = Http::new(endpoint, o.ca_file.as_deref())?;
        Ok(Self { http, token })
    }

    /// A client for the server `o` names, presenting `token` (e.g. a token being rotated in).
    pub fn with_token(o: &ClientOpts, token: Token) -> Result<Self> {
        let endpoint = Endpoint::parse(&o.server)?;
        endpoint.check_token_transport(o.allow_insecure_http)?;
        let http = Http::new(endpoint, o.ca_file.as_deref())?;
        Ok(Self { http, token })
    }

    /// The token this client presents (for `run`, to keep it out of a child's environment).
    pub fn token(&self) -> &Token {
        &self.token
    }

    /// Sends one request and returns the raw reply, for callers that act on the status.
    /// `Err` only when no answer came.
    pub fn send(&self, method: &str, path: &str, body: Option<&Value>) -> Result<Reply> {
        let body = body.map(serde_json::to_vec).transpose()?;
        self.http
            .request(method, path, &self.token, body.as_deref())
    }

    pub fn call(&self, method: &str, path: &str, body: Option<&Value>) -> Result<Option<Value>> {
        let body = body.map(serde_json::to_vec).transpose()?;
        let reply = self
            .http
            .request(method, path, &self.token, body.as_deref())?;
        interpret(&reply)
    }

    /// POSTs a body already serialised as JSON (e.g. a large one built piece by piece).
    pub fn post_json_bytes(&self, path: &str, body: &[u8]) -> Result<Option<Value>> {
        let reply = self.http.request("POST", path, &self.token, Some(body))?;
        interpret(&reply)
    }

    pub fn get(&self, path: &str) -> Result<Value> {
        self.call("GET", path, None)?
            .context("the server sent an empty or non-JSON answer")
    }
}

/// The token for a client command: `--token-file`, else `CLAVITOR_TOKEN`, else the config
/// dir's token file (where `init` and a first `serve` store the owner token).
pub fn find_token(
    file: Option<&Path>,
    env: Option<String>,
    default: Option<PathBuf>,
) -> Result<Token> {
    if let Some(p) = file {
        return Ok(files::read_token(p)?);
    }
    if let Some(t) = env.filter(|t| !t.trim().is_empty()) {
        return Ok(Token::from_text(&t));
    }
    const FIX: &str = "Fix: pass --token-file FILE (mode 0600), set CLAVITOR_TOKEN, or run `clavitor init` on this machine (it stores the owner token there)";
    match default {
        Some(p) if p.symlink_metadata().is_ok() => Ok(files::read_token(&p)?),
        Some(p) => bail!(
            "no token: no --token-file, CLAVITOR_TOKEN is not set, and {} does not exist. {FIX}",
            p.display()
        ),
        None => bail!(
            "no token: no --token-file, CLAVITOR_TOKEN is not set, and neither XDG_CONFIG_HOME nor HOME is set, so there is no default token file. {FIX}"
        ),
    }
}

/// A reply as the commands use it: the JSON of a 2xx answer (`None` when empty or not JSON),
/// or an error sentence. Total over any status and body: server text in the sentence is
/// escaped and shortened.
pub fn interpret(reply: &Reply) -> Result<Option<Value>> {
    let json: Option<Value> = if reply.body.is_empty() {
        None
    } else {
        serde_json::from_slice(&reply.body).ok()
    };
    match reply.status {
        200..=299 => Ok(json),
        300..=399 => bail!(
            "the server answered HTTP {} (a redirect to {}); the CLI does not follow redirects, so the token goes only to the server you named. Fix: point --server at the final URL",
            reply.status,
            reply
                .location
                .as_deref()
                .map_or_else(|| "nowhere".to_owned(), |l| escape_short(l, MESSAGE_CHARS))
        ),
        status => {
            let err = json.as_ref().and_then(|j| j.get("error"));
            let text = |key: &str| err.and_then(|e| e.get(key)).and_then(Value::as_str);
            let message = match text("message") {
                Some(m) => escape_short(m, MESSAGE_CHARS),
                None => {
                    let raw = String::from_utf8_lossy(&reply.body);
                    match raw.trim() {
                        "" => "no message".to_owned(),
                        t => escape_short(t, MESSAGE_CHARS),
                    }
                }
            };
            let code = text("code").map_or_else(
                || "http_error".to_owned(),
                |c| escape_short(c, MESSAGE_CHARS),
            );
            bail!("{message} ({code}, HTTP {status})")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn reply(status: u16, body: &str) -> Reply {
        Reply {
            status,
            location: None,
            body: body.as_bytes().to_vec(),
        }
    }

    #[test]
    fn success_is_the_json_and_errors_are_sentences() {
        assert_eq!(
            interpret(&reply(201, r#"{"id":"x"}"#)).unwrap(),
            Some(json!({"id":"x"}))
        );
        assert_eq!(interpret(&reply(204, "")).unwrap(), None);
        let err = interpret(&reply(
            404,
            r#"{"error":{"code":"not_found","message":"no such entry"}}"#,
        ))
        .unwrap_err();
        assert_eq!(err.to_string(), "no such entry (not_found, HTTP 404)");
        let err = interpret(&reply(502, "Bad Gateway\n")).unwrap_err();
        assert_eq!(err.to_string(), "Bad Gateway (http_error, HTTP 502)");
        let err = interpret(&reply(500, "")).unwrap_err();
        assert_eq!(err.to_string(), "no message (http_error, HTTP 500)");
    }

    #[test]
    fn hostile_messages_are_escaped_and_shortened() {
        let body = json!({"error":{"code":"x\u{1b}[2J","message":"ok\u{202E}\nforged"}});
        let err = interpret(&reply(400, &body.to_string()))
            .unwrap_err()
            .to_string();
        assert_eq!(err, "ok\\u{202E}\\nforged (x\\u{001B}[2J, HTTP 400)");
        let long = "y".repeat(100_000);
        let err = interpret(&reply(500, &long)).unwrap_err().to_string();
        assert!(err.len() < 400, "{} chars", err.len());
    }

    #[test]
    fn redirects_are_errors_naming_the_target() {
        let mut r = reply(307, "");
        r.location = Some("http://elsewhere.example/steal".to_owned());
        let err = interpret(&r).unwrap_err().to_string();
        assert!(
            err.contains("307") && err.contains("elsewhere.example") && err.contains("redirect"),
            "{err}"
        );
    }

    #[test]
    fn token_lookup_order_and_messages() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("t");
        files::write_private(&file, b"clv_from_file\n").unwrap();
        let default = dir.path().join("config/clavitor/token");
        let env = || Some("clv_from_env".to_owned());

        let t = find_token(Some(&file), env(), Some(default.clone())).unwrap();
        assert_eq!(t.expose(), "clv_from_file");
        let t = find_token(None, env(), Some(default.clone())).unwrap();
        assert_eq!(t.expose(), "clv_from_env");

        let err = find_token(None, Some("  ".into()), Some(default.clone()))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains(&default.display().to_string())
                && err.contains("--token-file")
                && err.contains("CLAVITOR_TOKEN"),
            "{err}"
        );
        let err = find_token(None, None, None).unwrap_err().to_string();
        assert!(err.contains("HOME"), "{err}");

        std::fs::create_dir_all(default.parent().unwrap()).unwrap();
        files::write_private(&default, b"clv_default").unwrap();
        let t = find_token(None, None, Some(default.clone())).unwrap();
        assert_eq!(t.expose(), "clv_default");
    }
}
