//! Domain types and their rules. No IO, no serde: values here are only built through
//! `parse`, so anything holding an `EntryDraft`, `AgentSpec`, `UserSpec` or `GroupSpec` has
//! already been validated.

mod access;
mod agent;
mod entry;
mod people;
pub mod reference;

pub use access::{AgentAccess, HostPattern, MAX_ALLOWED_HOSTS, parse_allowed_hosts};
pub use agent::{
    AgentSpec, DEFAULT_RATE_PER_MINUTE, MAX_RATE_PER_MINUTE, check_agent_name, ip_allowed,
    parse_net,
};
pub use entry::{
    EntryDraft, FieldDraft, FieldValue, MAX_FIELDS, MAX_VALUE_BYTES, RawField, check_field_name,
};
pub use people::{GroupSpec, Role, UserSpec, check_email, check_group_name, check_user_name};

use std::fmt;

/// A rule a request broke, phrased for the person who sent it.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{0}")]
pub struct Invalid(pub String);

fn invalid(msg: impl Into<String>) -> Invalid {
    Invalid(msg.into())
}

macro_rules! id_type {
    ($name:ident, $what:literal) => {
        #[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(String);

        impl $name {
            /// Time-ordered (UUIDv7): new rows land at the right edge of the id indexes
            /// instead of on random pages, so an insert dirties a few pages rather than one
            /// per index (see BENCHMARKS.md). The time it carries is no secret: every entry
            /// and agent shows its `created_at`.
            pub fn generate() -> Self {
                Self(uuid::Uuid::now_v7().to_string())
            }

            pub fn parse(s: &str) -> Result<Self, Invalid> {
                uuid::Uuid::parse_str(s)
                    .map(|u| Self(u.hyphenated().to_string()))
                    .map_err(|_| invalid(format!("{s:?} is not a valid {} id", $what)))
            }

            /// For ids read back from our own database.
            pub fn from_stored(s: String) -> Self {
                Self(s)
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

id_type!(EntryId, "entry");
id_type!(AgentId, "agent");
id_type!(UserId, "user");
id_type!(GroupId, "group");

impl From<UserId> for AgentId {
    /// Users live in the principal table beside agents and the owner, under the same ids.
    fn from(u: UserId) -> Self {
        AgentId(u.0)
    }
}

/// Who may read a field. Every field has one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tier {
    /// Encrypted with a key derived from the master key: the server can decrypt it.
    Vault,
    /// Encrypted with a scope key that only authorised tokens can unwrap.
    Credential,
    /// Client-made ciphertext; the server stores it and never decrypts it.
    Identity,
}

impl Tier {
    pub fn parse(s: &str) -> Result<Self, Invalid> {
        match s {
            "vault" => Ok(Tier::Vault),
            "credential" => Ok(Tier::Credential),
            "identity" => Ok(Tier::Identity),
            other => Err(invalid(format!(
                "unknown tier {other:?}: use \"vault\", \"credential\" or \"identity\""
            ))),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Tier::Vault => "vault",
            Tier::Credential => "credential",
            Tier::Identity => "identity",
        }
    }
}

impl fmt::Display for Tier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A capability name such as `deploy` or `ci.github`. Agents hold scopes; fields name one.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Scope(String);

impl Scope {
    pub const MAX_LEN: usize = 64;

    pub fn parse(s: &str) -> Result<Self, Invalid> {
        let ok_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | ':');
        if s.is_empty() || s.len() > Self::MAX_LEN || !s.chars().all(ok_char) {
            return Err(invalid(format!(
                "scope {s:?} is not valid: use 1 to {} characters from A-Z, a-z, 0-9, '_', '-', '.', ':'",
                Self::MAX_LEN
            )));
        }
        Ok(Self(s.to_owned()))
    }

    pub fn from_stored(s: String) -> Self {
        Self(s)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Checks a short human-readable name: not blank, bounded, no control characters.
fn check_name(what: &str, s: &str, max: usize) -> Result<(), Invalid> {
    if s.trim().is_empty() {
        return Err(invalid(format!("{what} must not be empty")));
    }
    if s.chars().count() > max {
        return Err(invalid(format!("{what} is longer than {max} characters")));
    }
    if s.chars().any(char::is_control) {
        return Err(invalid(format!(
            "{what} must not contain control characters"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tiers_parse_and_print() {
        for t in ["vault", "credential", "identity"] {
            assert_eq!(Tier::parse(t).unwrap().as_str(), t);
        }
        let e = Tier::parse("secret").unwrap_err();
        assert!(e.0.contains("unknown tier"), "{e}");
    }

    #[test]
    fn scopes_are_restricted() {
        assert!(Scope::parse("ci.deploy:prod").is_ok());
        assert!(Scope::parse("").is_err());
        assert!(Scope::parse("has space").is_err());
        assert!(Scope::parse(&"a".repeat(65)).is_err());
    }

    #[test]
    fn ids_are_uuids() {
        let id = EntryId::generate();
        assert_eq!(EntryId::parse(id.as_str()).unwrap(), id);
        assert!(EntryId::parse("../etc").is_err());
    }
}
