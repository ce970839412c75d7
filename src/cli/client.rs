//! The CLI's view of the API: authenticated JSON requests and friendly errors.

use super::ClientOpts;
use super::http::{self, Endpoint};
use crate::crypto::Token;
use crate::files;
use anyhow::{Context, Result, anyhow, bail};
use serde_json::Value;

pub struct Client {
    endpoint: Endpoint,
    token: Token,
}

impl Client {
    pub fn from_opts(o: &ClientOpts) -> Result<Self> {
        let endpoint = Endpoint::parse(&o.server)?;
        let token = match (&o.token_file, std::env::var("CLAVITOR_TOKEN")) {
            (Some(p), _) => files::read_token(p)?,
            (None, Ok(t)) if !t.trim().is_empty() => Token::from_text(&t),
            (None, _) => {
                let p = files::default_token_path().ok_or_else(|| {
                    anyhow!("no token given, and neither XDG_CONFIG_HOME nor HOME is set. Fix: pass --token-file FILE or set CLAVITOR_TOKEN")
                })?;
                files::read_token(&p).map_err(|e| {
                    let old = o.data_dir.join(crate::datadir::OWNER_TOKEN_FILE);
                    let hint = if old.exists() {
                        format!(" ({} is an older version's: start `clavitor serve` once to move it there)", old.display())
                    } else {
                        String::new()
                    };
                    anyhow!("{e}\nno token given: pass --token-file FILE, set CLAVITOR_TOKEN, or keep the owner token in {}{hint}", p.display())
                })?
            }
        };
        Ok(Self { endpoint, token })
    }

    /// A client presenting `token`, whatever `o` names (e.g. a token being rotated in).
    pub fn with_token(o: &ClientOpts, token: Token) -> Result<Self> {
        Ok(Self {
            endpoint: Endpoint::parse(&o.server)?,
            token,
        })
    }

    /// Sends one request; its status and JSON body (if any), for callers that act on the
    /// status. `Err` only when no answer came.
    pub fn send(
        &self,
        method: &str,
        path: &str,
        body: Option<&Value>,
    ) -> Result<(u16, Option<Value>, String)> {
        let body = body.map(serde_json::to_vec).transpose()?;
        let reply = http::request(
            &self.endpoint,
            method,
            path,
            Some(self.token.expose()),
            body.as_deref(),
        )?;
        let json: Option<Value> = if reply.body.is_empty() {
            None
        } else {
            serde_json::from_slice(&reply.body).ok()
        };
        let text = String::from_utf8_lossy(&reply.body).trim().to_owned();
        Ok((reply.status, json, text))
    }

    pub fn call(&self, method: &str, path: &str, body: Option<&Value>) -> Result<Option<Value>> {
        let (status, json, text) = self.send(method, path, body)?;
        if status >= 400 {
            bail!("{}", api_error(status, json.as_ref(), &text));
        }
        Ok(json)
    }

    pub fn get(&self, path: &str) -> Result<Value> {
        self.call("GET", path, None)?
            .context("the server sent an empty or non-JSON answer")
    }
}

/// An error answer as one line: the server's message, its code and the HTTP status.
pub fn api_error(status: u16, json: Option<&Value>, text: &str) -> String {
    let err = json.and_then(|j| j.get("error"));
    let message = err
        .and_then(|e| e.get("message"))
        .and_then(Value::as_str)
        .unwrap_or(text);
    let code = err
        .and_then(|e| e.get("code"))
        .and_then(Value::as_str)
        .unwrap_or("http_error");
    format!("{message} ({code}, HTTP {status})")
}
