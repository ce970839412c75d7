//! An entry as a client submits it, validated.

use super::access::{AgentAccess, HostPattern, parse_allowed_hosts};
use super::{Invalid, Scope, Tier, check_name, invalid};
use base64::Engine;
use std::collections::HashSet;
use zeroize::Zeroizing;

pub const MAX_FIELDS: usize = 64;
pub const MAX_VALUE_BYTES: usize = 64 * 1024;

/// A field's value. Plaintext for vault and credential fields; for identity fields the
/// client's own base64 ciphertext, kept byte for byte.
pub type FieldValue = Zeroizing<String>;

#[derive(Debug)]
pub struct FieldDraft {
    pub name: String,
    pub value: FieldValue,
    pub tier: Tier,
    pub scope: Option<Scope>,
    /// `None`: not given (a replacement keeps the field's current mode; a new field reads).
    pub agent_access: Option<AgentAccess>,
    /// `None`: not given (a replacement keeps the field's current list; a new field has none).
    pub allowed_hosts: Option<Vec<HostPattern>>,
}

#[derive(Debug)]
pub struct EntryDraft {
    pub title: String,
    pub url: Option<String>,
    pub username: Option<String>,
    pub fields: Vec<FieldDraft>,
}

/// Raw input, as a transport decoded it.
pub struct RawField<'a> {
    pub name: &'a str,
    pub value: FieldValue,
    pub tier: Option<&'a str>,
    pub scope: Option<&'a str>,
}

impl FieldDraft {
    pub fn parse(raw: RawField<'_>) -> Result<Self, Invalid> {
        let RawField {
            name,
            value,
            tier,
            scope,
        } = raw;
        check_field_name(name)?;
        let tier = match tier {
            Some(t) => Tier::parse(t).map_err(|e| invalid(format!("field {name:?}: {e}")))?,
            None => Tier::Vault,
        };
        let scope = scope
            .map(Scope::parse)
            .transpose()
            .map_err(|e| invalid(format!("field {name:?}: {e}")))?;
        if value.len() > MAX_VALUE_BYTES {
            return Err(invalid(format!(
                "field {name:?}: value is larger than {MAX_VALUE_BYTES} bytes"
            )));
        }
        match tier {
            Tier::Credential if scope.is_none() => {
                return Err(invalid(format!(
                    "field {name:?}: a credential field needs a \"scope\" naming which agents may read it"
                )));
            }
            Tier::Identity => {
                base64::engine::general_purpose::STANDARD
                    .decode(value.as_bytes())
                    .map_err(|_| {
                        invalid(format!(
                            "field {name:?}: an identity value must be the client's ciphertext in standard base64"
                        ))
                    })?;
            }
            _ => {}
        }
        Ok(Self {
            name: name.to_owned(),
            value,
            tier,
            scope,
            agent_access: None,
            allowed_hosts: None,
        })
    }

    /// Adds what a client said about agents' use of the field (either may be absent).
    pub fn with_policy(
        mut self,
        agent_access: Option<&str>,
        allowed_hosts: Option<&[String]>,
    ) -> Result<Self, Invalid> {
        let name = &self.name;
        self.agent_access = agent_access
            .map(AgentAccess::parse)
            .transpose()
            .map_err(|e| invalid(format!("field {name:?}: {e}")))?;
        self.allowed_hosts = allowed_hosts
            .map(parse_allowed_hosts)
            .transpose()
            .map_err(|e| invalid(format!("field {name:?}: {e}")))?;
        Ok(self)
    }
}

/// Field names appear in `clavitor://entry/field` references, so they exclude `/`.
pub fn check_field_name(name: &str) -> Result<(), Invalid> {
    check_name("field name", name, 128)?;
    if name.contains('/') {
        return Err(invalid(format!("field name {name:?} must not contain '/'")));
    }
    Ok(())
}

impl EntryDraft {
    pub fn parse(
        title: &str,
        url: Option<&str>,
        username: Option<&str>,
        fields: Vec<FieldDraft>,
    ) -> Result<Self, Invalid> {
        check_name("title", title, 256)?;
        for (what, v) in [("url", url), ("username", username)] {
            if let Some(v) = v
                && v.chars().count() > 2048
            {
                return Err(invalid(format!("{what} is longer than 2048 characters")));
            }
        }
        if fields.len() > MAX_FIELDS {
            return Err(invalid(format!(
                "an entry holds at most {MAX_FIELDS} fields"
            )));
        }
        let mut seen = HashSet::new();
        for f in &fields {
            if !seen.insert(f.name.as_str()) {
                return Err(invalid(format!(
                    "field name {:?} appears more than once; field names must be unique within an entry",
                    f.name
                )));
            }
        }
        Ok(Self {
            title: title.to_owned(),
            url: url.map(str::to_owned),
            username: username.map(str::to_owned),
            fields,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw<'a>(name: &'a str, tier: Option<&'a str>, scope: Option<&'a str>) -> RawField<'a> {
        RawField {
            name,
            value: Zeroizing::new("dmFsdWU=".into()),
            tier,
            scope,
        }
    }

    #[test]
    fn credential_needs_scope() {
        assert!(FieldDraft::parse(raw("k", Some("credential"), None)).is_err());
        assert!(FieldDraft::parse(raw("k", Some("credential"), Some("ci"))).is_ok());
    }

    #[test]
    fn identity_must_be_base64() {
        let mut r = raw("k", Some("identity"), None);
        r.value = Zeroizing::new("not base64!".into());
        assert!(FieldDraft::parse(r).is_err());
        assert!(FieldDraft::parse(raw("k", Some("identity"), None)).is_ok());
    }

    #[test]
    fn duplicate_field_names_and_empty_title_rejected() {
        let f = || FieldDraft::parse(raw("a", None, None)).unwrap();
        let e = EntryDraft::parse("t", None, None, vec![f(), f()]).unwrap_err();
        assert!(e.0.contains("more than once"));
        assert!(EntryDraft::parse("  ", None, None, vec![]).is_err());
    }

    #[test]
    fn field_names_exclude_slash() {
        assert!(FieldDraft::parse(raw("a/b", None, None)).is_err());
    }
}
