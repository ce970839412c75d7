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
                let p = o.data_dir.join(crate::datadir::OWNER_TOKEN_FILE);
                files::read_token(&p).map_err(|e| {
                    anyhow!("{e}\nno token given: pass --token-file FILE, set CLAVITOR_TOKEN, or run from the directory holding clavitor-data")
                })?
            }
        };
        Ok(Self { endpoint, token })
    }

    pub fn call(&self, method: &str, path: &str, body: Option<&Value>) -> Result<Option<Value>> {
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
        if reply.status >= 400 {
            let err = json.as_ref().and_then(|j| j.get("error"));
            let message = err
                .and_then(|e| e.get("message"))
                .and_then(Value::as_str)
                .map(str::to_owned)
                .unwrap_or_else(|| String::from_utf8_lossy(&reply.body).trim().to_owned());
            let code = err
                .and_then(|e| e.get("code"))
                .and_then(Value::as_str)
                .unwrap_or("http_error");
            bail!("{message} ({code}, HTTP {})", reply.status);
        }
        Ok(json)
    }

    pub fn get(&self, path: &str) -> Result<Value> {
        self.call("GET", path, None)?
            .context("the server sent an empty or non-JSON answer")
    }
}
