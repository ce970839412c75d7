//! What a backup checks in a pushed batch before any of it is applied: every row must be one
//! the primary's own rules could have written, so a row can never make the backup fail to
//! start or fail to list (a 1-byte token hash, `scopes: "not json"`, an entry id `../../etc`,
//! a 4-byte sealed blob). One bad row refuses the whole batch.
//!
//! The rules are the domain's (`crate::vault`) and the stored formats (`crate::store`,
//! `crate::crypto`): nothing is decrypted here.

use super::super::config::valid_id;
use super::wire::{AgentItem, Batch, EntryItem, FieldItem, Item, ScopeKeyItem, Stamp};
use crate::vault::{self, AgentId, EntryId, MAX_FIELDS, Scope, Tier};
use std::collections::HashSet;

/// AES-GCM's nonce and tag: the least any sealed value can be (`crypto::Sealer`).
pub const SEAL_OVERHEAD: usize = 12 + 16;
/// A wrapped scope key: a sealed 32-byte key.
pub const WRAPPED_KEY_LEN: usize = SEAL_OVERHEAD + 32;
const TOKEN_HASH_LEN: usize = 32;
/// Versions stay exact in every JSON reader (2^53) and leave room to count up.
const MAX_VERSION: i64 = 1 << 53;
/// 9999-12-31T23:59:59.999Z: the last instant an RFC 3339 timestamp can show.
const MAX_TIME_MS: i64 = 253_402_300_799_999;

/// Why a batch was refused. Names the item and the rule, never a value that could be secret
/// (token hashes and ciphertexts are described by their length only).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("the batch is not valid JSON of the replication format: {0}")]
    Json(String),
    #[error("item {index} ({kind} {id}): {what}")]
    Item {
        index: usize,
        kind: &'static str,
        id: String,
        what: String,
    },
    #[error("{0}")]
    Batch(String),
}

/// Decodes a pushed body and checks every row: what `/v1/replication/batch` applies.
pub fn decode(body: &[u8]) -> Result<Batch, Refusal> {
    let batch: Batch = serde_json::from_slice(body).map_err(|e| Refusal::Json(e.to_string()))?;
    check(&batch)?;
    Ok(batch)
}

/// Checks every row of `batch`; the first bad one refuses it.
pub fn check(batch: &Batch) -> Result<(), Refusal> {
    if !valid_id(&batch.origin) {
        return Err(Refusal::Batch(format!(
            "origin {} is not a POP id",
            shown(&batch.origin)
        )));
    }
    if let Some(w) = batch.watermark
        && !(0..MAX_VERSION).contains(&w)
    {
        return Err(Refusal::Batch(format!("watermark {w} is out of range")));
    }
    for (index, item) in batch.items.iter().enumerate() {
        let (kind, id) = match item {
            Item::Agent(a) => ("agent", shown(&a.id)),
            Item::ScopeKey(k) => (
                "scope key",
                format!("{}/{}", shown(&k.scope), shown(&k.agent_id)),
            ),
            Item::Entry(e) => ("entry", shown(&e.id)),
        };
        let res = stamp(item.stamp()).and_then(|()| match item {
            Item::Agent(a) => agent(a),
            Item::ScopeKey(k) => scope_key(k),
            Item::Entry(e) => entry(e),
        });
        res.map_err(|what| Refusal::Item {
            index,
            kind,
            id,
            what,
        })?;
    }
    Ok(())
}

/// A value as it may appear in a message: quoted, escaped, cut short.
fn shown(s: &str) -> String {
    let cut: String = s.chars().take(80).collect();
    let more = if cut.len() < s.len() { "..." } else { "" };
    format!("{cut:?}{more}")
}

fn stamp(s: &Stamp) -> Result<(), String> {
    if !(1..MAX_VERSION).contains(&s.version) {
        return Err(format!("version {} is out of range", s.version));
    }
    time_ms("updated_at", s.updated_at)?;
    if !valid_id(&s.origin) {
        return Err(format!("origin {} is not a POP id", shown(&s.origin)));
    }
    Ok(())
}

fn time_ms(what: &str, t: i64) -> Result<(), String> {
    if (0..=MAX_TIME_MS).contains(&t) {
        Ok(())
    } else {
        Err(format!(
            "{what} {t} is not a time in milliseconds since 1970"
        ))
    }
}

/// Ids are compared as text in SQL, so only the canonical (lowercase, hyphenated) form of a
/// UUID is accepted.
fn uuid(
    what: &str,
    s: &str,
    parse: fn(&str) -> Result<String, vault::Invalid>,
) -> Result<(), String> {
    match parse(s) {
        Ok(canonical) if canonical == s => Ok(()),
        _ => Err(format!(
            "{what} {} is not a UUID in canonical form",
            shown(s)
        )),
    }
}

fn agent_id(s: &str) -> Result<String, vault::Invalid> {
    AgentId::parse(s).map(|i| i.as_str().to_owned())
}

fn entry_id(s: &str) -> Result<String, vault::Invalid> {
    EntryId::parse(s).map(|i| i.as_str().to_owned())
}

/// A JSON list of strings, as `store::agents` reads it back.
fn json_list(what: &str, text: &str) -> Result<Vec<String>, String> {
    serde_json::from_str::<Vec<String>>(text)
        .map_err(|_| format!("{what} is not a JSON list of strings"))
}

fn agent(a: &AgentItem) -> Result<(), String> {
    uuid("id", &a.id, agent_id)?;
    vault::check_agent_name(&a.name).map_err(|e| e.0)?;
    if a.token_hash.len() != TOKEN_HASH_LEN {
        return Err(format!(
            "token_hash is {} bytes, not {TOKEN_HASH_LEN}",
            a.token_hash.len()
        ));
    }
    for s in json_list("scopes", &a.scopes)? {
        // The owner holds every scope, written "*".
        if !(a.is_owner && s == "*") {
            Scope::parse(&s).map_err(|e| format!("scopes: {e}"))?;
        }
    }
    for n in json_list("ip_allowlist", &a.ip_allowlist)? {
        vault::parse_net(&n).map_err(|e| e.0)?;
    }
    if let Some(r) = a.rate_limit_per_minute
        && !(1..=i64::from(vault::MAX_RATE_PER_MINUTE)).contains(&r)
    {
        return Err(format!("rate_limit_per_minute {r} is out of range"));
    }
    time_ms("created_at", a.created_at)?;
    if let Some(t) = a.expires_at {
        time_ms("expires_at", t)?;
    }
    if let Some(t) = a.revoked_at {
        time_ms("revoked_at", t)?;
    }
    Ok(())
}

fn scope_key(k: &ScopeKeyItem) -> Result<(), String> {
    Scope::parse(&k.scope).map_err(|e| e.0)?;
    uuid("agent_id", &k.agent_id, agent_id)?;
    if k.wrapped.len() != WRAPPED_KEY_LEN {
        return Err(format!(
            "wrapped is {} bytes; a wrapped scope key is {WRAPPED_KEY_LEN}",
            k.wrapped.len()
        ));
    }
    Ok(())
}

fn entry(e: &EntryItem) -> Result<(), String> {
    uuid("id", &e.id, entry_id)?;
    time_ms("created_at", e.created_at)?;
    if e.deleted {
        // A tombstone: no metadata, no fields (`store::entries::delete_entry`).
        if !e.meta.is_empty() || !e.fields.is_empty() {
            return Err("a deleted entry carries no meta and no fields".into());
        }
        return Ok(());
    }
    if e.meta.len() < SEAL_OVERHEAD {
        return Err(format!(
            "meta is {} bytes, shorter than any sealed value ({SEAL_OVERHEAD})",
            e.meta.len()
        ));
    }
    if e.fields.len() > MAX_FIELDS {
        return Err(format!(
            "{} fields; an entry holds at most {MAX_FIELDS}",
            e.fields.len()
        ));
    }
    let mut names = HashSet::new();
    let mut positions = HashSet::new();
    for f in &e.fields {
        field(f).map_err(|what| format!("field {}: {what}", shown(&f.name)))?;
        if !names.insert(f.name.as_str()) {
            return Err(format!("field name {} appears twice", shown(&f.name)));
        }
        if !positions.insert(f.position) {
            return Err(format!("field position {} appears twice", f.position));
        }
    }
    Ok(())
}

fn field(f: &FieldItem) -> Result<(), String> {
    vault::check_field_name(&f.name).map_err(|e| e.0)?;
    if !(0..MAX_FIELDS as i64).contains(&f.position) {
        return Err(format!("position {} is out of range", f.position));
    }
    let tier = Tier::parse(&f.tier).map_err(|e| e.0)?;
    match &f.scope {
        Some(s) => {
            Scope::parse(s).map_err(|e| e.0)?;
        }
        None if tier == Tier::Credential => {
            return Err("a credential field has no scope".into());
        }
        None => {}
    }
    if f.ciphertext.len() < SEAL_OVERHEAD {
        return Err(format!(
            "ciphertext is {} bytes, shorter than any sealed value ({SEAL_OVERHEAD})",
            f.ciphertext.len()
        ));
    }
    Ok(())
}
