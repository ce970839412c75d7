//! Resolving `clavitor://ENTRY/FIELD` references to values for `run`, `inject` and `mcp`, with
//! the errors a person (or a model) can act on. The server answers "not found" alike for what
//! does not exist and what is outside the token's scopes, and so does this.

use super::client::{Client, interpret};
use super::commands::percent_encode;
use crate::vault::reference::parse_reference;
use anyhow::{Result, anyhow, bail};
use serde_json::Value;
use std::collections::HashMap;
use zeroize::Zeroizing;

/// A resolved reference: the entry's id (what `GET /v1/changes` reports) and the value.
pub struct Resolved {
    pub entry_id: String,
    pub value: Zeroizing<String>,
}

/// Resolves references through one client; the listing that maps titles to ids is fetched at
/// most once.
pub struct Resolver<'a> {
    client: &'a Client,
    titles: Option<HashMap<String, Vec<String>>>,
}

fn not_found(reference: &str) -> anyhow::Error {
    anyhow!("{reference}: not found, or not in this token's scopes")
}

impl<'a> Resolver<'a> {
    pub fn new(client: &'a Client) -> Self {
        Self {
            client,
            titles: None,
        }
    }

    /// The entries this token sees, as listed by the server.
    pub fn listing(&self) -> Result<Value> {
        self.client.get("/v1/entries")
    }

    fn entry_id(&mut self, reference: &str, entry: &str) -> Result<String> {
        if uuid::Uuid::parse_str(entry).is_ok() {
            return Ok(entry.to_owned());
        }
        if self.titles.is_none() {
            let list = self.listing()?;
            let mut titles: HashMap<String, Vec<String>> = HashMap::new();
            for e in list["entries"].as_array().into_iter().flatten() {
                if let (Some(t), Some(id)) = (e["title"].as_str(), e["id"].as_str()) {
                    titles.entry(t.to_owned()).or_default().push(id.to_owned());
                }
            }
            self.titles = Some(titles);
        }
        match self.titles.as_ref().and_then(|t| t.get(entry)) {
            Some(ids) if ids.len() == 1 => Ok(ids[0].clone()),
            Some(ids) => bail!(
                "{reference}: {} entries are titled {entry:?}; use the entry's id",
                ids.len()
            ),
            None => Err(not_found(reference)),
        }
    }

    /// The value `reference` names.
    pub fn resolve(&mut self, reference: &str) -> Result<Resolved> {
        let (entry, field) = parse_reference(reference).map_err(|e| anyhow!("{e}"))?;
        let entry_id = self.entry_id(reference, entry)?;
        let path = format!("/v1/entries/{entry_id}/fields/{}", percent_encode(field));
        let reply = self.client.send("GET", &path, None)?;
        let code = serde_json::from_slice::<Value>(&reply.body)
            .ok()
            .and_then(|v| v["error"]["code"].as_str().map(str::to_owned));
        match (reply.status, code.as_deref()) {
            (404, _) => return Err(not_found(reference)),
            (403, Some("use_only")) => bail!(
                "{reference} is a use-only field: its value is never given to an agent; it can only be sent through the proxy (POST /v1/proxy, or the MCP tool http_request) to a host the owner allowed"
            ),
            _ => {}
        }
        let v = interpret(&reply)
            .map_err(|e| anyhow!("{reference}: {e}"))?
            .unwrap_or_default();
        let value = Zeroizing::new(v["value"].as_str().unwrap_or_default().to_owned());
        Ok(Resolved { entry_id, value })
    }
}
