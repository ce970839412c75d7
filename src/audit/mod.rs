//! The audit trail: what happened, by whom, with what outcome. Never a value, a token or a
//! wrapped key.
//!
//! This is the interface the rest of the crate records events through. Operations that change
//! data record their event inside the same store write closure as the change (same
//! transaction: a change and its event commit together or not at all); read-only operations
//! hand their event to the store's writer without waiting.
//!
//! (Skeleton: the audit stream of issue 11 implements persistence, the hash chain, the signed
//! head and verification behind these types; `record` stores nothing yet.)

use rusqlite::Connection;
use std::net::IpAddr;

/// Who acted (the contract's actor kinds).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ActorKind {
    Owner,
    User,
    Agent,
    Scim,
    Pop,
    System,
}

impl ActorKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ActorKind::Owner => "owner",
            ActorKind::User => "user",
            ActorKind::Agent => "agent",
            ActorKind::Scim => "scim",
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
}

/// Records `event` in the transaction of `conn` (a store write closure's connection).
pub fn record(_conn: &Connection, _event: &Event) -> Result<(), crate::store::Error> {
    Ok(())
}
