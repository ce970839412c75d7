//! What crosses between POPs: rows exactly as stored (ciphertext stays ciphertext), in JSON
//! with base64 blobs. This is a protocol: add fields, never change one; receivers ignore
//! fields they do not know, so an older backup can take a newer primary's batches.

use serde::{Deserialize, Serialize};

/// The wire protocol version this build speaks. A batch without one predates the field and
/// is version 1; a receiver refuses versions it does not know.
pub const PROTOCOL_VERSION: u32 = 1;

mod b64 {
    use base64::Engine;
    use base64::engine::general_purpose::STANDARD;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&STANDARD.encode(v))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let s = String::deserialize(d)?;
        STANDARD.decode(s).map_err(serde::de::Error::custom)
    }
}

/// Optional blobs: absent or `null` for none.
mod b64_opt {
    use base64::Engine;
    use base64::engine::general_purpose::STANDARD;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &Option<Vec<u8>>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(b) => s.serialize_str(&STANDARD.encode(b)),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<u8>>, D::Error> {
        match Option::<String>::deserialize(d)? {
            Some(s) => STANDARD
                .decode(s)
                .map(Some)
                .map_err(serde::de::Error::custom),
            None => Ok(None),
        }
    }
}

#[derive(Debug, Serialize, Deserialize)]
pub struct Batch {
    /// The pushing POP's id.
    pub origin: String,
    pub items: Vec<Item>,
    /// The sender's recovery point for this batch: every change with a version at or below
    /// it has been acknowledged by this backup already, or is in this batch. Absent from older
    /// senders (the backup then learns nothing about its recovery point from the batch).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub watermark: Option<i64>,
    /// The sender's own audit events, in order (a field, not an item kind, so an older backup
    /// ignores them rather than refusing the batch).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub audit: Vec<AuditItem>,
    /// The sender's signed audit head, when `audit` ends with the event it names.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audit_head: Option<String>,
    /// The wire protocol version (absent: 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<u32>,
    /// The epoch the sender holds from the control plane (absent or 0: none). A receiver
    /// holding a higher epoch refuses the batch: it comes from a demoted primary.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub epoch: Option<u64>,
}

/// One event of the sender's audit trail, as stored there (hashes included).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct AuditItem {
    pub seq: i64,
    pub time: i64,
    pub actor_kind: String,
    pub actor_id: Option<String>,
    pub action: String,
    pub target: Option<String>,
    pub outcome: String,
    pub ip: Option<String>,
    pub request_id: Option<String>,
    /// Sorted by key.
    pub details: Vec<(String, String)>,
    #[serde(with = "b64")]
    pub prev_hash: Vec<u8>,
    #[serde(with = "b64")]
    pub hash: Vec<u8>,
}

/// Which copy of a row is newer: `(version, updated_at, origin)`, compared in that order.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, PartialOrd, Ord)]
pub struct Stamp {
    pub version: i64,
    pub updated_at: i64,
    pub origin: String,
}

// A principal's row is the largest item; a batch holds at most a few thousand items, so the
// padding of the others costs little, and boxing would change every construction.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Item {
    Agent(AgentItem),
    ScopeKey(ScopeKeyItem),
    Entry(EntryItem),
    Group(GroupItem),
    GroupMember(GroupMemberItem),
    Invite(InviteItem),
    Provisioned(ProvisionedItem),
}

impl Item {
    pub fn stamp(&self) -> &Stamp {
        match self {
            Item::Agent(a) => &a.stamp,
            Item::ScopeKey(k) => &k.stamp,
            Item::Entry(e) => &e.stamp,
            Item::Group(g) => &g.stamp,
            Item::GroupMember(m) => &m.stamp,
            Item::Invite(i) => &i.stamp,
            Item::Provisioned(p) => &p.stamp,
        }
    }

    /// Rough wire size, to keep batches well under the receiver's body limit.
    pub fn weight(&self) -> usize {
        match self {
            Item::Agent(_)
            | Item::ScopeKey(_)
            | Item::Group(_)
            | Item::GroupMember(_)
            | Item::Invite(_) => 512,
            // JSON escapes a character in at most 6 bytes.
            Item::Provisioned(p) => 256 + p.external_id.as_ref().map_or(0, |e| e.len() * 6),
            Item::Entry(e) => {
                256 + e.meta.len() * 4 / 3
                    + e.fields
                        .iter()
                        .map(|f| 128 + f.name.len() + f.ciphertext.len() * 4 / 3)
                        .sum::<usize>()
            }
        }
    }
}

#[derive(Debug, Serialize, Deserialize)]
pub struct AgentItem {
    pub id: String,
    pub name: String,
    #[serde(with = "b64")]
    pub token_hash: Vec<u8>,
    pub is_owner: bool,
    /// JSON arrays as stored.
    pub scopes: String,
    pub ip_allowlist: String,
    pub rate_limit_per_minute: Option<i64>,
    pub created_at: i64,
    pub expires_at: Option<i64>,
    pub revoked_at: Option<i64>,
    /// `owner`, `user` or `agent` (absent from older senders: `owner` if `is_owner`, else
    /// `agent`). Not `kind`, which names the item.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub principal_kind: Option<String>,
    /// Users: `admin` or `member`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub creator_id: Option<String>,
    #[serde(default, with = "b64_opt", skip_serializing_if = "Option::is_none")]
    pub public_key: Option<Vec<u8>>,
    /// Sealed under the principal's token: opens on no POP without it.
    #[serde(default, with = "b64_opt", skip_serializing_if = "Option::is_none")]
    pub sealed_private_key: Option<Vec<u8>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deactivated_at: Option<i64>,
    #[serde(flatten)]
    pub stamp: Stamp,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct GroupItem {
    pub id: String,
    pub name: String,
    /// A JSON array as stored.
    pub scopes: String,
    pub created_at: i64,
    pub deleted: bool,
    #[serde(flatten)]
    pub stamp: Stamp,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct GroupMemberItem {
    pub group_id: String,
    pub user_id: String,
    pub deleted: bool,
    /// A pending grant (absent from older POPs: confirmed).
    #[serde(default)]
    pub pending: bool,
    #[serde(flatten)]
    pub stamp: Stamp,
}

/// A user's single-use invite: the hash of its code, never the code.
#[derive(Debug, Serialize, Deserialize)]
pub struct InviteItem {
    pub user_id: String,
    #[serde(with = "b64")]
    pub code_hash: Vec<u8>,
    pub created_at: i64,
    pub expires_at: i64,
    /// Set once the code was redeemed; a receiver never clears it for the same code.
    pub used_at: Option<i64>,
    #[serde(flatten)]
    pub stamp: Stamp,
}

/// A user or group an identity provider created (and so may manage).
#[derive(Debug, Serialize, Deserialize)]
pub struct ProvisionedItem {
    pub id: String,
    /// `user` or `group`. Not `kind`, which names the item.
    pub resource: String,
    pub external_id: Option<String>,
    pub created_at: i64,
    #[serde(flatten)]
    pub stamp: Stamp,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct ScopeKeyItem {
    pub scope: String,
    pub agent_id: String,
    /// Empty: the holder's copy was dropped (it lost the scope).
    #[serde(with = "b64")]
    pub wrapped: Vec<u8>,
    #[serde(flatten)]
    pub stamp: Stamp,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct EntryItem {
    pub id: String,
    #[serde(with = "b64")]
    pub meta: Vec<u8>,
    pub created_at: i64,
    pub deleted: bool,
    pub fields: Vec<FieldItem>,
    #[serde(flatten)]
    pub stamp: Stamp,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct FieldItem {
    pub position: i64,
    pub name: String,
    pub tier: String,
    pub scope: Option<String>,
    #[serde(with = "b64")]
    pub ciphertext: Vec<u8>,
    /// `read` or `use`; absent means `read` (older senders, and fields with the default).
    #[serde(default = "read", skip_serializing_if = "is_read")]
    pub agent_access: String,
    /// The JSON array as stored; absent means `[]`.
    #[serde(default = "no_hosts", skip_serializing_if = "is_no_hosts")]
    pub allowed_hosts: String,
}

fn read() -> String {
    "read".to_owned()
}

fn is_read(s: &str) -> bool {
    s == "read"
}

fn no_hosts() -> String {
    "[]".to_owned()
}

fn is_no_hosts(s: &str) -> bool {
    s == "[]"
}

/// The backup's answer once the batch is durably committed.
#[derive(Debug, Serialize, Deserialize)]
pub struct Ack {
    pub applied: usize,
    pub skipped: usize,
    /// Highest version in the batch, now held by the backup.
    pub acked_version: i64,
    /// The backup's recovery point after this batch (absent from older backups).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub applied_watermark: Option<i64>,
    /// The last of the sender's audit events the backup holds (absent from older backups).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audit_seq: Option<i64>,
}
