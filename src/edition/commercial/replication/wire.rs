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
    /// The wire protocol version (absent: 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<u32>,
    /// The epoch the sender holds from the control plane (absent or 0: none). A receiver
    /// holding a higher epoch refuses the batch: it comes from a demoted primary.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub epoch: Option<u64>,
}

/// Which copy of a row is newer: `(version, updated_at, origin)`, compared in that order.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, PartialOrd, Ord)]
pub struct Stamp {
    pub version: i64,
    pub updated_at: i64,
    pub origin: String,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Item {
    Agent(AgentItem),
    ScopeKey(ScopeKeyItem),
    Entry(EntryItem),
}

impl Item {
    pub fn stamp(&self) -> &Stamp {
        match self {
            Item::Agent(a) => &a.stamp,
            Item::ScopeKey(k) => &k.stamp,
            Item::Entry(e) => &e.stamp,
        }
    }

    /// Rough wire size, to keep batches well under the receiver's body limit.
    pub fn weight(&self) -> usize {
        match self {
            Item::Agent(_) | Item::ScopeKey(_) => 512,
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
    #[serde(flatten)]
    pub stamp: Stamp,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct ScopeKeyItem {
    pub scope: String,
    pub agent_id: String,
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
}
