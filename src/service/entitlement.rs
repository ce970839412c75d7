//! Who is entitled to which scope: the rules of people, groups and agents, computed from rows.
//!
//! - the owner: every scope;
//! - a user: the union of the scopes of the live groups they are a live member of (admins
//!   too: admins administer, they do not read every scope);
//! - an agent: its declared scopes, intersected with its creator's (an owner's agent, or one
//!   made before people existed: its declared scopes). An agent whose creator may not sign in
//!   may not either.
//!
//! The same computation feeds the in-memory principal table and the grants and drops of
//! wrapped scope keys, so what a token may read and what it can decrypt never disagree.

use super::Error;
use crate::store::agents::{self, AgentRow};
use crate::store::groups::{self, GroupRow, Membership};
use crate::store::{self, Store};
use crate::vault::Scope;
use rusqlite::Connection;
use std::collections::{BTreeSet, HashMap};

/// A scope set: all of them (the owner), or these.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Scopes {
    All,
    Some(BTreeSet<String>),
}

impl Scopes {
    pub fn contains(&self, scope: &str) -> bool {
        match self {
            Scopes::All => true,
            Scopes::Some(s) => s.contains(scope),
        }
    }

    /// The list a principal carries (empty for all: the owner reads everything by kind).
    pub fn to_list(&self) -> Vec<Scope> {
        match self {
            Scopes::All => Vec::new(),
            Scopes::Some(s) => s.iter().cloned().map(Scope::from_stored).collect(),
        }
    }
}

/// The principals that may sign in, the live groups and live memberships, from one commit.
#[derive(Debug, Default)]
pub struct Directory {
    pub principals: Vec<AgentRow>,
    pub groups: Vec<GroupRow>,
    pub memberships: Vec<Membership>,
}

impl Directory {
    pub fn load(conn: &Connection) -> Result<Self, store::Error> {
        store::snapshot(conn, |c| {
            Ok(Self {
                principals: agents::active_agents(c)?,
                groups: groups::list_groups(c)?,
                memberships: groups::memberships(c)?,
            })
        })
    }

    pub async fn read(store: &Store) -> Result<Self, Error> {
        Ok(store.read(Self::load).await?)
    }

    /// Effective scopes of every principal that may sign in, by id. Principals absent from
    /// the map may not sign in (an agent whose creator is deactivated or gone).
    pub fn effective(&self) -> HashMap<String, Scopes> {
        let group_scopes: HashMap<&str, &[String]> = self
            .groups
            .iter()
            .map(|g| (g.id.as_str(), g.scopes.as_slice()))
            .collect();
        let mut out: HashMap<String, Scopes> = HashMap::new();
        for p in &self.principals {
            match p.kind.as_str() {
                "owner" => drop(out.insert(p.id.clone(), Scopes::All)),
                "user" => {
                    let set = self
                        .memberships
                        .iter()
                        .filter(|(_, u)| *u == p.id)
                        .filter_map(|(g, _)| group_scopes.get(g.as_str()))
                        .flat_map(|s| s.iter().cloned())
                        .collect();
                    out.insert(p.id.clone(), Scopes::Some(set));
                }
                _ => {}
            }
        }
        for p in self.principals.iter().filter(|p| p.kind == "agent") {
            let declared = p.scopes.iter().cloned();
            let scopes = match &p.creator_id {
                None => Scopes::Some(declared.collect()),
                Some(c) => match out.get(c) {
                    Some(Scopes::All) => Scopes::Some(declared.collect()),
                    Some(Scopes::Some(theirs)) => {
                        Scopes::Some(declared.filter(|s| theirs.contains(s)).collect())
                    }
                    // The creator is an agent (never made so) or may not sign in.
                    None => continue,
                },
            };
            out.insert(p.id.clone(), scopes);
        }
        out
    }

    pub fn principal(&self, id: &str) -> Option<&AgentRow> {
        self.principals.iter().find(|p| p.id == id)
    }
}

/// Drops every copy of a scope key whose holder is no longer entitled to its scope (removed
/// from a group, a group deleted, an agent's creator lost the scope), in the caller's
/// transaction. Returns how many were dropped.
pub fn drop_unentitled(conn: &Connection) -> Result<usize, store::Error> {
    let effective = Directory::load(conn)?.effective();
    let mut dropped = 0;
    for (scope, holder) in agents::all_scope_key_holders(conn)? {
        let entitled = effective.get(&holder).is_some_and(|s| s.contains(&scope));
        if !entitled && agents::drop_scope_key(conn, &scope, &holder)? {
            dropped += 1;
        }
    }
    Ok(dropped)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(id: &str, kind: &str, creator: Option<&str>, scopes: &[&str]) -> AgentRow {
        let mut r = AgentRow::new(id.into(), id.into(), kind, [0; 32], 0);
        r.creator_id = creator.map(str::to_owned);
        r.scopes = scopes.iter().map(|s| s.to_string()).collect();
        r
    }

    fn group(id: &str, scopes: &[&str]) -> GroupRow {
        GroupRow {
            id: id.into(),
            name: id.into(),
            scopes: scopes.iter().map(|s| s.to_string()).collect(),
            created_at: 0,
        }
    }

    fn set(s: &[&str]) -> Scopes {
        Scopes::Some(s.iter().map(|s| s.to_string()).collect())
    }

    #[test]
    fn scopes_come_from_groups_and_agents_are_capped_by_their_creator() {
        let dir = Directory {
            principals: vec![
                row("o", "owner", None, &["*"]),
                row("alice", "user", None, &[]),
                row("bob", "user", None, &[]),
                row("a-old", "agent", None, &["x"]),
                row("a-owner", "agent", Some("o"), &["x", "y"]),
                row("a-alice", "agent", Some("alice"), &["deploy", "billing"]),
                row("a-ghost", "agent", Some("gone"), &["deploy"]),
            ],
            groups: vec![group("g1", &["deploy"]), group("g2", &["ci", "deploy"])],
            memberships: vec![("g1".into(), "alice".into()), ("g2".into(), "alice".into())],
        };
        let e = dir.effective();
        assert_eq!(e["o"], Scopes::All);
        assert_eq!(e["alice"], set(&["ci", "deploy"]));
        assert_eq!(e["bob"], set(&[]));
        assert_eq!(e["a-old"], set(&["x"]));
        assert_eq!(e["a-owner"], set(&["x", "y"]));
        assert_eq!(e["a-alice"], set(&["deploy"]), "billing is not alice's");
        assert!(!e.contains_key("a-ghost"), "its creator may not sign in");
    }
}
