//! What a backup checks in a pushed batch before any of it is applied: every row must be one
//! the primary's own rules could have written, so a row can never make the backup fail to
//! start or fail to list (a 1-byte token hash, `scopes: "not json"`, an entry id `../../etc`,
//! a 4-byte sealed blob). One bad row refuses the whole batch.
//!
//! The rules are the domain's (`crate::vault`) and the stored formats (`crate::store`,
//! `crate::crypto`): nothing is decrypted here.

use super::super::config::valid_id;
use super::wire::{
    AgentItem, Batch, EntryItem, FieldItem, GroupItem, GroupMemberItem, InviteItem, Item,
    ProvisionedItem, ScopeKeyItem, Stamp,
};
use crate::crypto::{PUBLIC_KEY_LEN, SEALED_PRIVATE_KEY_LEN, WrapFormat};
use crate::vault::{self, AgentId, EntryId, GroupId, MAX_FIELDS, Role, Scope, Tier};
use std::collections::HashSet;

/// AES-GCM's nonce and tag: the least any sealed value can be (`crypto::Sealer`).
pub const SEAL_OVERHEAD: usize = 12 + 16;
const TOKEN_HASH_LEN: usize = 32;
/// SHA-256 of an invite code (`service::invites`).
const CODE_HASH_LEN: usize = 32;
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
            Item::Group(g) => ("group", shown(&g.id)),
            Item::GroupMember(m) => (
                "group member",
                format!("{}/{}", shown(&m.group_id), shown(&m.user_id)),
            ),
            Item::Invite(i) => ("invite", shown(&i.user_id)),
            Item::Provisioned(p) => ("provisioned", shown(&p.id)),
        };
        let res = stamp(item.stamp()).and_then(|()| match item {
            Item::Agent(a) => agent(a),
            Item::ScopeKey(k) => scope_key(k),
            Item::Entry(e) => entry(e),
            Item::Group(g) => group(g),
            Item::GroupMember(m) => group_member(m),
            Item::Invite(i) => invite(i),
            Item::Provisioned(p) => provisioned(p),
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

/// Checks that every live entry of `batch` opens with this vault's key (its metadata and its
/// vault- and identity-tier fields): a row sealed under another key, or moved to another id,
/// is well-formed but would make every listing on this backup fail.
pub fn check_sealed(batch: &Batch, vault: &crate::service::Vault) -> Result<(), Refusal> {
    for (index, item) in batch.items.iter().enumerate() {
        let Item::Entry(e) = item else { continue };
        if e.deleted {
            continue;
        }
        // `validate` has checked every field already: tiers and host lists parse.
        let hosts: Vec<Vec<String>> = e
            .fields
            .iter()
            .map(|f| serde_json::from_str(&f.allowed_hosts).unwrap_or_default())
            .collect();
        let fields = e.fields.iter().zip(&hosts).filter_map(|(f, hosts)| {
            Tier::parse(&f.tier)
                .ok()
                .map(|tier| crate::service::ReplicatedField {
                    name: &f.name,
                    tier,
                    agent_access: &f.agent_access,
                    allowed_hosts: hosts,
                    ciphertext: &f.ciphertext,
                })
        });
        vault
            .check_replicated_entry(&e.id, &e.meta, fields)
            .map_err(|what| Refusal::Item {
                index,
                kind: "entry",
                id: shown(&e.id),
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

fn group_id(s: &str) -> Result<String, vault::Invalid> {
    GroupId::parse(s).map(|i| i.as_str().to_owned())
}

/// A principal's row: the owner, a user or an agent (older senders: owner or agent only).
fn agent(a: &AgentItem) -> Result<(), String> {
    uuid("id", &a.id, agent_id)?;
    let kind = a
        .principal_kind
        .as_deref()
        .unwrap_or(if a.is_owner { "owner" } else { "agent" });
    match kind {
        "owner" | "agent" => vault::check_agent_name(&a.name).map_err(|e| e.0)?,
        "user" => vault::check_user_name(&a.name).map_err(|e| e.0)?,
        other => {
            return Err(format!(
                "principal_kind {} is not owner, user or agent",
                shown(other)
            ));
        }
    }
    if (kind == "owner") != a.is_owner {
        return Err("is_owner does not match principal_kind".into());
    }
    match (&a.role, kind) {
        (Some(r), "user") => drop(Role::parse(r).map_err(|e| e.0)?),
        (None, "user") => return Err("a user has no role".into()),
        (Some(_), _) => return Err("only users have a role".into()),
        (None, _) => {}
    }
    if let Some(e) = &a.email {
        vault::check_email(e).map_err(|e| e.0)?;
    }
    if let Some(c) = &a.creator_id {
        uuid("creator_id", c, agent_id)?;
    }
    if let Some(pk) = &a.public_key
        && pk.len() != PUBLIC_KEY_LEN
    {
        return Err(format!(
            "public_key is {} bytes, not {PUBLIC_KEY_LEN}",
            pk.len()
        ));
    }
    if let Some(sk) = &a.sealed_private_key
        && sk.len() != SEALED_PRIVATE_KEY_LEN
    {
        return Err(format!(
            "sealed_private_key is {} bytes, not {SEALED_PRIVATE_KEY_LEN}",
            sk.len()
        ));
    }
    if a.public_key.is_some() != a.sealed_private_key.is_some() {
        return Err("a key pair needs both public_key and sealed_private_key".into());
    }
    if let Some(t) = a.deactivated_at {
        time_ms("deactivated_at", t)?;
    }
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
    // Empty: a dropped copy. Else one of the formats `crypto` opens, by tag and length.
    if !k.wrapped.is_empty() && WrapFormat::of(&k.wrapped).is_err() {
        return Err(format!(
            "wrapped is {} bytes with format tag {:?}; a wrapped scope key is {} (tag 1) or {} (tag 2) bytes, or empty",
            k.wrapped.len(),
            k.wrapped.first(),
            crate::crypto::LEGACY_WRAP_LEN,
            crate::crypto::HPKE_WRAP_LEN,
        ));
    }
    Ok(())
}

fn group(g: &GroupItem) -> Result<(), String> {
    uuid("id", &g.id, group_id)?;
    vault::check_group_name(&g.name).map_err(|e| e.0)?;
    for s in json_list("scopes", &g.scopes)? {
        Scope::parse(&s).map_err(|e| format!("scopes: {e}"))?;
    }
    time_ms("created_at", g.created_at)
}

fn group_member(m: &GroupMemberItem) -> Result<(), String> {
    uuid("group_id", &m.group_id, group_id)?;
    uuid("user_id", &m.user_id, agent_id)
}

fn invite(i: &InviteItem) -> Result<(), String> {
    uuid("user_id", &i.user_id, agent_id)?;
    if i.code_hash.len() != CODE_HASH_LEN {
        return Err(format!(
            "code_hash is {} bytes, not {CODE_HASH_LEN}",
            i.code_hash.len()
        ));
    }
    time_ms("created_at", i.created_at)?;
    time_ms("expires_at", i.expires_at)?;
    let max_ms = crate::service::INVITE_MAX_TTL_SECS as i64 * 1000;
    if !(1..=max_ms).contains(&(i.expires_at - i.created_at)) {
        return Err(format!(
            "expires_at is not after created_at by 1 ms to {max_ms} ms (an invite lasts at most 30 days)"
        ));
    }
    if let Some(t) = i.used_at {
        time_ms("used_at", t)?;
    }
    Ok(())
}

fn provisioned(p: &ProvisionedItem) -> Result<(), String> {
    match p.resource.as_str() {
        "user" => uuid("id", &p.id, agent_id)?,
        "group" => uuid("id", &p.id, group_id)?,
        other => return Err(format!("resource {} is not user or group", shown(other))),
    }
    // The provider's own id, kept as sent: any text a request body could carry.
    if let Some(e) = &p.external_id
        && e.len() > crate::api::BODY_LIMIT
    {
        return Err(format!(
            "external_id is {} bytes, longer than any request body ({})",
            e.len(),
            crate::api::BODY_LIMIT
        ));
    }
    time_ms("created_at", p.created_at)
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
    vault::AgentAccess::parse(&f.agent_access).map_err(|e| e.0)?;
    let hosts: Vec<String> = serde_json::from_str(&f.allowed_hosts)
        .map_err(|_| "allowed_hosts is not a JSON list of strings".to_owned())?;
    let parsed = vault::parse_allowed_hosts(&hosts).map_err(|e| e.0)?;
    if parsed.len() != hosts.len() || parsed.iter().zip(&hosts).any(|(p, h)| p.as_str() != h) {
        return Err("allowed_hosts is not in the stored form (lower-case, no duplicates)".into());
    }
    if f.ciphertext.len() < SEAL_OVERHEAD {
        return Err(format!(
            "ciphertext is {} bytes, shorter than any sealed value ({SEAL_OVERHEAD})",
            f.ciphertext.len()
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine;
    use base64::engine::general_purpose::STANDARD;
    use proptest::prelude::*;
    use serde_json::{Value, json};

    fn b64(n: usize) -> String {
        STANDARD.encode(vec![1u8; n])
    }

    fn uuid_strategy() -> impl Strategy<Value = String> {
        any::<u128>().prop_map(|n| uuid::Uuid::from_u128(n).hyphenated().to_string())
    }

    fn scope() -> impl Strategy<Value = String> {
        "[a-z0-9_.:-]{1,64}"
    }

    fn name() -> impl Strategy<Value = String> {
        "[a-zA-Z0-9 _-]{0,20}[a-zA-Z0-9]"
    }

    fn stamp() -> impl Strategy<Value = (i64, i64, String)> {
        (1..MAX_VERSION, 0..=MAX_TIME_MS, "[a-z0-9-]{1,20}")
    }

    fn agent() -> impl Strategy<Value = Value> {
        (
            uuid_strategy(),
            name(),
            any::<bool>(),
            proptest::collection::vec(scope(), 0..4),
            proptest::collection::vec((0u8..=255, 0u8..=32), 0..3),
            proptest::option::of(1..=i64::from(vault::MAX_RATE_PER_MINUTE)),
            stamp(),
        )
            .prop_map(|(id, name, owner, scopes, nets, rate, (v, t, o))| {
                let nets: Vec<String> = nets
                    .iter()
                    .map(|(a, m)| format!("10.{a}.0.0/{m}"))
                    .collect();
                json!({
                    "kind": "agent", "id": id, "name": name, "token_hash": b64(32),
                    "is_owner": owner, "scopes": serde_json::to_string(&scopes).unwrap(),
                    "ip_allowlist": serde_json::to_string(&nets).unwrap(),
                    "rate_limit_per_minute": rate, "created_at": t, "expires_at": null,
                    "revoked_at": null, "version": v, "updated_at": t, "origin": o,
                })
            })
    }

    fn scope_key() -> impl Strategy<Value = Value> {
        (scope(), uuid_strategy(), stamp()).prop_map(|(s, a, (v, t, o))| {
            let mut wrapped = vec![2u8; crate::crypto::HPKE_WRAP_LEN];
            wrapped[0] = 2;
            json!({"kind": "scope_key", "scope": s, "agent_id": a, "wrapped": STANDARD.encode(wrapped),
                   "version": v, "updated_at": t, "origin": o})
        })
    }

    fn entry() -> impl Strategy<Value = Value> {
        (
            uuid_strategy(),
            any::<bool>(),
            proptest::collection::vec(
                (0..3usize, proptest::option::of(scope()), SEAL_OVERHEAD..200),
                0..6,
            ),
            stamp(),
        )
            .prop_map(|(id, deleted, fields, (v, t, o))| {
                let fields: Vec<Value> = if deleted {
                    Vec::new()
                } else {
                    fields
                        .into_iter()
                        .enumerate()
                        .map(|(i, (tier, scope, len))| {
                            let tier = ["vault", "credential", "identity"][tier];
                            let scope = if tier == "credential" {
                                Some(scope.unwrap_or_else(|| "deploy".into()))
                            } else {
                                scope
                            };
                            json!({"position": i, "name": format!("f{i}"), "tier": tier,
                                   "scope": scope, "ciphertext": b64(len)})
                        })
                        .collect()
                };
                let meta = if deleted { String::new() } else { b64(60) };
                json!({"kind": "entry", "id": id, "meta": meta, "created_at": t, "deleted": deleted,
                       "fields": fields, "version": v, "updated_at": t, "origin": o})
            })
    }

    fn invite() -> impl Strategy<Value = Value> {
        (
            uuid_strategy(),
            1..30 * 86_400_000i64,
            any::<bool>(),
            stamp(),
        )
            .prop_map(|(u, ttl, used, (v, t, o))| {
                let t = t.min(MAX_TIME_MS - ttl);
                json!({"kind": "invite", "user_id": u, "code_hash": b64(32), "created_at": t,
                       "expires_at": t + ttl, "used_at": used.then_some(t), "version": v,
                       "updated_at": t, "origin": o})
            })
    }

    fn provisioned() -> impl Strategy<Value = Value> {
        (
            uuid_strategy(),
            any::<bool>(),
            proptest::option::of(".{0,40}"),
            stamp(),
        )
            .prop_map(|(id, user, ext, (v, t, o))| {
                json!({"kind": "provisioned", "id": id, "resource": if user { "user" } else { "group" },
                       "external_id": ext, "created_at": t, "version": v, "updated_at": t, "origin": o})
            })
    }

    fn valid_batch() -> impl Strategy<Value = Value> {
        (
            proptest::collection::vec(
                prop_oneof![agent(), scope_key(), entry(), invite(), provisioned()],
                0..20,
            ),
            proptest::option::of(0..MAX_VERSION),
        )
            .prop_map(|(items, w)| {
                let mut b = json!({"origin": "calgary-01", "items": items});
                if let Some(w) = w {
                    b["watermark"] = json!(w);
                }
                b
            })
    }

    /// Any JSON value, nested a few levels.
    fn any_json() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            any::<f64>().prop_map(|f| json!(f)),
            ".{0,12}".prop_map(Value::from),
            Just(json!("AAAA")),
        ];
        leaf.prop_recursive(4, 48, 8, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..8).prop_map(Value::from),
                proptest::collection::btree_map(
                    prop_oneof![
                        Just("kind".to_owned()),
                        Just("items".to_owned()),
                        Just("id".to_owned()),
                        Just("version".to_owned()),
                        "[a-z_]{1,12}"
                    ],
                    inner,
                    0..8
                )
                .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    /// A valid batch with one value somewhere replaced by arbitrary JSON.
    fn mutated_batch() -> impl Strategy<Value = Value> {
        (
            valid_batch(),
            any::<prop::sample::Index>(),
            any::<prop::sample::Index>(),
            any_json(),
        )
            .prop_map(|(mut b, item, key, v)| {
                if let Some(items) = b["items"].as_array_mut()
                    && !items.is_empty()
                {
                    let it = item.get_mut(items);
                    if let Some(obj) = it.as_object_mut() {
                        let keys: Vec<String> = obj.keys().cloned().collect();
                        let k = key.get(&keys).clone();
                        obj.insert(k, v);
                    }
                }
                b
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 192, failure_persistence: None, ..ProptestConfig::default() })]

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = decode(&bytes);
        }

        #[test]
        fn arbitrary_json_never_panics(v in any_json()) {
            let _ = decode(v.to_string().as_bytes());
            let _ = decode(json!({"origin": "calgary-01", "items": [v]}).to_string().as_bytes());
        }

        #[test]
        fn valid_batches_pass(b in valid_batch()) {
            let text = b.to_string();
            let decoded = decode(text.as_bytes());
            prop_assert!(decoded.is_ok(), "{:?}\n{}", decoded.err(), text);
            // And what the primary would send back is the same batch.
            let again = serde_json::to_value(decoded.unwrap()).unwrap();
            prop_assert_eq!(again["items"].as_array().map(Vec::len), b["items"].as_array().map(Vec::len));
        }

        #[test]
        fn mutated_batches_never_panic(b in mutated_batch()) {
            let _ = decode(b.to_string().as_bytes());
        }
    }

    fn one(item: Value) -> Result<Batch, Refusal> {
        decode(
            json!({"origin": "calgary-01", "items": [item]})
                .to_string()
                .as_bytes(),
        )
    }

    fn valid_agent() -> Value {
        json!({
            "kind": "agent", "id": uuid::Uuid::now_v7().to_string(), "name": "ci",
            "token_hash": b64(32), "is_owner": false, "scopes": "[\"deploy\"]",
            "ip_allowlist": "[]", "rate_limit_per_minute": 60, "created_at": 1,
            "expires_at": null, "revoked_at": null, "version": 3, "updated_at": 1,
            "origin": "calgary-01",
        })
    }

    fn valid_entry() -> Value {
        json!({
            "kind": "entry", "id": uuid::Uuid::now_v7().to_string(), "meta": b64(60),
            "created_at": 1, "deleted": false, "version": 4, "updated_at": 1, "origin": "calgary-01",
            "fields": [{"position": 0, "name": "password", "tier": "credential", "scope": "deploy", "ciphertext": b64(40)}],
        })
    }

    /// `base` with each case's fields replaced is refused, the message saying the case's text.
    fn refused(base: &Value, cases: &[(Value, &str)]) {
        for (patch, expect) in cases {
            let mut item = base.clone();
            for (k, v) in patch.as_object().unwrap() {
                item[k] = v.clone();
            }
            let e = one(item).expect_err(expect).to_string();
            assert!(e.contains(expect), "{e:?} does not say {expect:?}");
        }
    }

    /// Each row the hostile client pushed, and rows like them, is refused naming the rule.
    #[test]
    fn hostile_rows_are_refused() {
        assert!(one(valid_agent()).is_ok());
        assert!(one(valid_entry()).is_ok());
        let cases: Vec<(Value, &str)> = vec![
            (json!({"token_hash": b64(1)}), "token_hash is 1 bytes"),
            (json!({"scopes": "not json"}), "scopes is not a JSON list"),
            (json!({"scopes": "[\"*\"]"}), "scope \"*\" is not valid"),
            (json!({"scopes": "[\"has space\"]"}), "not valid"),
            (
                json!({"ip_allowlist": "[\"10.0.0.0/99\"]"}),
                "ip_allowlist entry",
            ),
            (json!({"id": "../../etc"}), "not a UUID"),
            (
                json!({"id": "01A22B24-5A7F-7143-9FBE-D86D42E6D3CF"}),
                "canonical",
            ),
            (json!({"name": "a\u{2028}b\u{0007}"}), "control characters"),
            (json!({"rate_limit_per_minute": 0}), "rate_limit_per_minute"),
            (json!({"version": 0}), "version 0"),
            (json!({"updated_at": -5}), "updated_at -5"),
            (json!({"origin": "../x"}), "origin"),
        ];
        refused(&valid_agent(), &cases);
        let entry_cases: Vec<(Value, &str)> = vec![
            (json!({"id": "../../etc"}), "not a UUID"),
            (json!({"meta": b64(4)}), "meta is 4 bytes"),
            (
                json!({"fields": [{"position": 0, "name": "a/b", "tier": "vault", "scope": null, "ciphertext": b64(40)}]}),
                "must not contain '/'",
            ),
            (
                json!({"fields": [{"position": 0, "name": "k", "tier": "secret", "scope": null, "ciphertext": b64(40)}]}),
                "unknown tier",
            ),
            (
                json!({"fields": [{"position": 0, "name": "k", "tier": "credential", "scope": null, "ciphertext": b64(40)}]}),
                "has no scope",
            ),
            (
                json!({"fields": [{"position": 0, "name": "k", "tier": "vault", "scope": null, "ciphertext": b64(27)}]}),
                "ciphertext is 27 bytes",
            ),
            (
                json!({"fields": [
                {"position": 0, "name": "k", "tier": "vault", "scope": null, "ciphertext": b64(40)},
                {"position": 1, "name": "k", "tier": "vault", "scope": null, "ciphertext": b64(40)}]}),
                "appears twice",
            ),
            (json!({"deleted": true}), "a deleted entry carries no meta"),
        ];
        refused(&valid_entry(), &entry_cases);
        let key = json!({"kind": "scope_key", "scope": "deploy", "agent_id": uuid::Uuid::now_v7().to_string(),
                         "wrapped": b64(12), "version": 2, "updated_at": 1, "origin": "calgary-01"});
        assert!(
            one(key)
                .unwrap_err()
                .to_string()
                .contains("wrapped is 12 bytes")
        );
        // People: a user without a role, a kind that is none, a bad key pair, groups and
        // memberships with bad ids or scopes.
        refused(
            &valid_agent(),
            &[
                (json!({"principal_kind": "user"}), "a user has no role"),
                (
                    json!({"principal_kind": "god"}),
                    "is not owner, user or agent",
                ),
                (json!({"role": "admin"}), "only users have a role"),
                (
                    json!({"principal_kind": "user", "role": "admin", "email": "x y"}),
                    "email",
                ),
                (
                    json!({"public_key": b64(31), "sealed_private_key": b64(61)}),
                    "public_key is 31",
                ),
                (json!({"public_key": b64(32)}), "needs both"),
                (json!({"creator_id": "nope"}), "creator_id"),
            ],
        );
        let mut user = valid_agent();
        user["principal_kind"] = json!("user");
        user["role"] = json!("member");
        user["email"] = json!("a@example.com");
        user["public_key"] = json!(b64(32));
        user["sealed_private_key"] = json!(b64(61));
        assert!(one(user).is_ok());
        let group = |id: &str, scopes: &str| {
            json!({"kind": "group", "id": id, "name": "ops", "scopes": scopes, "created_at": 1,
                   "deleted": false, "version": 2, "updated_at": 1, "origin": "calgary-01"})
        };
        let gid = uuid::Uuid::now_v7().to_string();
        assert!(one(group(&gid, "[\"ci\"]")).is_ok());
        assert!(
            one(group("../x", "[]"))
                .unwrap_err()
                .to_string()
                .contains("not a UUID")
        );
        assert!(
            one(group(&gid, "[\"a b\"]"))
                .unwrap_err()
                .to_string()
                .contains("scopes")
        );
        let member = json!({"kind": "group_member", "group_id": gid, "user_id": "x",
                            "deleted": false, "version": 2, "updated_at": 1, "origin": "calgary-01"});
        assert!(one(member).unwrap_err().to_string().contains("user_id"));
        let dropped = json!({"kind": "scope_key", "scope": "deploy", "agent_id": uuid::Uuid::now_v7().to_string(),
                             "wrapped": "", "version": 2, "updated_at": 1, "origin": "calgary-01"});
        assert!(one(dropped).is_ok(), "a dropped copy is empty");

        // Invites and SCIM's marks.
        let day: i64 = 86_400_000;
        let invite = json!({"kind": "invite", "user_id": uuid::Uuid::now_v7().to_string(),
                            "code_hash": b64(32), "created_at": 1, "expires_at": 1 + day,
                            "used_at": null, "version": 2, "updated_at": 1, "origin": "calgary-01"});
        assert!(one(invite.clone()).is_ok());
        refused(
            &invite,
            &[
                (json!({"user_id": "../x"}), "user_id"),
                (json!({"code_hash": b64(31)}), "code_hash is 31 bytes"),
                (
                    json!({"expires_at": 1}),
                    "expires_at is not after created_at",
                ),
                (json!({"expires_at": 2 + 30 * day}), "at most 30 days"),
                (json!({"used_at": -1}), "used_at -1"),
            ],
        );
        let mark = json!({"kind": "provisioned", "id": uuid::Uuid::now_v7().to_string(),
                          "resource": "user", "external_id": "00ujl29u0le5T6Aj10h7",
                          "created_at": 1, "version": 2, "updated_at": 1, "origin": "calgary-01"});
        assert!(one(mark.clone()).is_ok());
        refused(
            &mark,
            &[
                (json!({"id": "nope"}), "not a UUID"),
                (
                    json!({"resource": "owner"}),
                    "resource \"owner\" is not user or group",
                ),
                (
                    json!({"external_id": "x".repeat(crate::api::BODY_LIMIT + 1)}),
                    "external_id is",
                ),
                (json!({"created_at": -1}), "created_at -1"),
            ],
        );

        // Messages describe secrets by length only.
        let mut a = valid_agent();
        a["token_hash"] = json!(b64(31));
        assert!(!one(a).unwrap_err().to_string().contains(&b64(31)));
    }
}
