//! The audit trail: what happened, by whom, with what outcome. Never a value, a token or a
//! wrapped key.
//!
//! This is the interface the rest of the crate records events through. Operations that change
//! data record their event inside the same store write closure as the change (same
//! transaction: a change and its event commit together or not at all); read-only operations
//! hand their event to the store's writer through [`Trail`], without waiting unless
//! `serve --audit-sync`.
//!
//! - `head.rs`: the signed head's text form (what `clavitor audit head` prints and `verify
//!   --head` takes).
//! - `trail.rs`: the running trail: read events, denials counted per address and minute, the
//!   trail's availability.
//! - `verify.rs`: walks a chain and its signed head, naming the first event that does not fit.
//! - `disk.rs`: free space on the data dir's filesystem.
//!
//! The rows, the canonical bytes and the chain head kept by the writer are in
//! `store::audit`; the MAC key in `crypto`.
//!
//! Architecture invariant: an event never holds a value, a token or a wrapped key; `details`
//! are names, tiers, scopes and counts.

mod disk;
mod head;
mod trail;
mod verify;

pub use disk::free_bytes;
pub use head::{HeadError, head_text, parse_head};
pub use trail::{Denial, Trail, rfc3339};
pub use verify::{ChainReport, Finding, verify_all};

use crate::store::audit::EventData;
use rusqlite::Connection;
use std::borrow::Cow;
use std::net::IpAddr;

/// Who acted (the contract's actor kinds).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ActorKind {
    Owner,
    User,
    Agent,
    /// An actor kind the edition defines (Commercial: its provisioning token, `scim`), named
    /// there so that the community binary carries nothing of it.
    Edition(&'static str),
    Pop,
    System,
}

impl ActorKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ActorKind::Owner => "owner",
            ActorKind::User => "user",
            ActorKind::Agent => "agent",
            ActorKind::Edition(k) => k,
            ActorKind::Pop => "pop",
            ActorKind::System => "system",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Actor {
    pub kind: ActorKind,
    /// The principal's id; `None` for unauthenticated requests and the system itself.
    pub id: Option<String>,
}

impl Actor {
    /// The server itself (retention, recovery, configuration reloads).
    pub fn system() -> Self {
        Self {
            kind: ActorKind::System,
            id: None,
        }
    }

    /// Another POP, by its id (replication).
    pub fn pop(id: impl Into<String>) -> Self {
        Self {
            kind: ActorKind::Pop,
            id: Some(id.into()),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    Ok,
    Denied,
    Error,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Denied => "denied",
            Outcome::Error => "error",
        }
    }
}

/// One event. `action` is a dotted name from the contract (`field.read`, `entry.create`,
/// `agent.revoke`, `user.create`, `group.member.add`, `auth.failed`, `owner.rotate`, ...).
/// `details` holds short, non-secret facts (a field name, a tier, a scope, a count).
#[derive(Clone, Debug)]
pub struct Event {
    pub actor: Actor,
    pub action: &'static str,
    pub target: Option<String>,
    pub outcome: Outcome,
    pub ip: Option<IpAddr>,
    pub request_id: Option<String>,
    pub details: Vec<(&'static str, String)>,
}

impl Event {
    pub fn new(actor: Actor, action: &'static str) -> Self {
        Self {
            actor,
            action,
            target: None,
            outcome: Outcome::Ok,
            ip: None,
            request_id: None,
            details: Vec::new(),
        }
    }

    pub fn target(mut self, target: impl Into<String>) -> Self {
        self.target = Some(target.into());
        self
    }

    pub fn outcome(mut self, outcome: Outcome) -> Self {
        self.outcome = outcome;
        self
    }

    pub fn detail(mut self, key: &'static str, value: impl Into<String>) -> Self {
        self.details.push((key, value.into()));
        self
    }

    pub fn ip(mut self, ip: IpAddr) -> Self {
        self.ip = Some(ip);
        self
    }

    pub fn request_id(mut self, id: impl Into<String>) -> Self {
        self.request_id = Some(id.into());
        self
    }

    /// The event as stored: details sorted by key, the last value of a repeated key kept.
    pub fn data(&self) -> EventData {
        let mut details: Vec<(String, String)> = Vec::with_capacity(self.details.len());
        for (k, v) in &self.details {
            match details.iter_mut().find(|(dk, _)| dk == k) {
                Some(slot) => slot.1 = v.clone(),
                None => details.push(((*k).to_owned(), v.clone())),
            }
        }
        details.sort_by(|a, b| a.0.cmp(&b.0));
        EventData {
            actor_kind: Cow::Borrowed(self.actor.kind.as_str()),
            actor_id: self.actor.id.clone(),
            action: Cow::Borrowed(self.action),
            target: self.target.clone(),
            outcome: Cow::Borrowed(self.outcome.as_str()),
            ip: self.ip.map(|ip| ip.to_canonical().to_string()),
            request_id: self.request_id.clone(),
            details,
        }
    }
}

/// Records `event` in the transaction of `conn` (a store write closure's connection, so the
/// event commits with the change it describes, or neither does).
pub fn record(conn: &Connection, event: &Event) -> Result<(), crate::store::Error> {
    crate::store::audit::append(conn, &event.data()).map(drop)
}

/// Lower-case hex, for hashes and MACs in text.
pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

/// The bytes of lower- or upper-case hex text; `None` if it is not hex.
pub fn unhex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}
