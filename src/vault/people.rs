//! Users and groups as an owner or admin asks for them, validated.

use super::{Invalid, Scope, check_name, invalid};

/// What a user may administer. Neither role reads scopes by itself: scopes come from groups.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// Manages members, groups and agents; reads fields without a scope.
    Admin,
    /// Manages their own agents.
    Member,
}

impl Role {
    pub fn parse(s: &str) -> Result<Self, Invalid> {
        match s {
            "admin" => Ok(Role::Admin),
            "member" => Ok(Role::Member),
            other => Err(invalid(format!(
                "unknown role {other:?}: use \"admin\" or \"member\""
            ))),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Member => "member",
        }
    }
}

/// A new user.
#[derive(Debug, Clone)]
pub struct UserSpec {
    pub name: String,
    pub email: String,
    pub role: Role,
}

impl UserSpec {
    pub fn parse(name: &str, email: &str, role: &str) -> Result<Self, Invalid> {
        check_user_name(name)?;
        check_email(email)?;
        Ok(Self {
            name: name.to_owned(),
            email: email.to_owned(),
            role: Role::parse(role)?,
        })
    }
}

/// User names: not blank, at most 128 characters, no control characters.
pub fn check_user_name(name: &str) -> Result<(), Invalid> {
    check_name("user name", name, 128)
}

/// An address for people to read, not one the vault sends mail to: one `@` with text on both
/// sides, no spaces or control characters, at most 254 characters (RFC 5321's path limit).
pub fn check_email(email: &str) -> Result<(), Invalid> {
    let bad = || {
        invalid(format!(
            "email {email:?} is not valid: expected name@domain, without spaces, at most 254 characters"
        ))
    };
    if email.len() > 254 || email.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(bad());
    }
    match email.split_once('@') {
        Some((local, domain))
            if !local.is_empty() && !domain.is_empty() && !domain.contains('@') =>
        {
            Ok(())
        }
        _ => Err(bad()),
    }
}

/// A new group: a name and the scopes its members read and write.
#[derive(Debug, Clone)]
pub struct GroupSpec {
    pub name: String,
    pub scopes: Vec<Scope>,
}

impl GroupSpec {
    pub fn parse(name: &str, scopes: &[String]) -> Result<Self, Invalid> {
        check_group_name(name)?;
        let mut parsed: Vec<Scope> = scopes
            .iter()
            .map(|s| Scope::parse(s))
            .collect::<Result<_, _>>()?;
        parsed.sort();
        parsed.dedup();
        Ok(Self {
            name: name.to_owned(),
            scopes: parsed,
        })
    }
}

/// Group names: not blank, at most 128 characters, no control characters.
pub fn check_group_name(name: &str) -> Result<(), Invalid> {
    check_name("group name", name, 128)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_specs() {
        assert!(UserSpec::parse("Alice", "alice@example.com", "admin").is_ok());
        assert!(UserSpec::parse("", "a@b", "member").is_err());
        assert!(UserSpec::parse("a", "no-at", "member").is_err());
        assert!(UserSpec::parse("a", "a@b@c", "member").is_err());
        assert!(UserSpec::parse("a", "a b@c", "member").is_err());
        assert!(UserSpec::parse("a", "a@b", "owner").is_err());
    }

    #[test]
    fn group_specs_sort_and_dedup_scopes() {
        let g = GroupSpec::parse("ops", &["b".into(), "a".into(), "a".into()]).unwrap();
        assert_eq!(g.scopes.len(), 2);
        assert!(GroupSpec::parse("ops", &["has space".into()]).is_err());
        assert!(GroupSpec::parse(" ", &[]).is_err());
    }
}
