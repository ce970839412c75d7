//! Who is calling: the in-memory table of live tokens, and the per-request checks
//! (expiry, IP allowlist, rate limit) in the order a client can act on.

use super::Error;
use super::entitlement::Directory;
use crate::audit::{Denial, Trail};
use crate::crypto::{PrivateKey, Token, TokenHash};
use crate::store::AgentRow;
use crate::vault::{AgentId, Role, Scope, ip_allowed, parse_net};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use ipnet::IpNet;
use std::collections::HashMap;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::{Arc, RwLock};

/// What kind of principal a token belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Owner,
    User(Role),
    Agent,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Owner => "owner",
            Kind::User(_) => "user",
            Kind::Agent => "agent",
        }
    }
}

/// A token holder as the server sees it: built from its row and, for users and agents, the
/// groups that give it scopes.
pub struct Principal {
    pub id: AgentId,
    pub name: String,
    pub kind: Kind,
    pub is_owner: bool,
    /// Agents: who created them (`None`: an owner before people existed).
    pub creator: Option<AgentId>,
    /// Effective scopes (see `entitlement`); the owner's are all, and this is empty.
    pub scopes: Vec<Scope>,
    pub expires_at: Option<i64>,
    /// The private key as stored, sealed under the token (ciphertext, like the read cache's
    /// rows); `None` until the principal's first request after the upgrade to key pairs.
    sealed_key: Option<Arc<[u8]>>,
    ips: IpRule,
    hash: TokenHash,
    limiter: Option<Arc<DefaultDirectRateLimiter>>,
    rate: Option<u32>,
}

impl std::fmt::Debug for Principal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Principal")
            .field("id", &self.id)
            .field("name", &self.name)
            .field("kind", &self.kind)
            .finish_non_exhaustive()
    }
}

/// Where a token may be used from.
#[derive(Debug)]
enum IpRule {
    /// No allowlist was set.
    Any,
    /// Only these networks. Empty when every stored entry was unreadable: then nowhere.
    Only(Vec<IpNet>),
}

impl IpRule {
    /// Stored lists were validated on the way in, so an entry that does not parse now means
    /// the row was damaged or edited: it matches no address, and never turns the list into
    /// "no restriction".
    fn from_stored(agent: &str, list: &[String]) -> Self {
        if list.is_empty() {
            return Self::Any;
        }
        let nets = list
            .iter()
            .filter_map(|s| match parse_net(s) {
                Ok(n) => Some(n),
                Err(e) => {
                    tracing::warn!(agent, error = %e, "unreadable ip_allowlist entry; it matches no address");
                    None
                }
            })
            .collect();
        Self::Only(nets)
    }

    fn allows(&self, ip: IpAddr) -> bool {
        match self {
            Self::Any => true,
            Self::Only(nets) => !nets.is_empty() && ip_allowed(nets, ip),
        }
    }
}

impl Principal {
    /// `scopes`: the effective scopes `entitlement` computed for this row.
    pub fn from_row(row: &AgentRow, scopes: Vec<Scope>) -> Self {
        let kind = match row.kind.as_str() {
            "owner" => Kind::Owner,
            "user" => Kind::User(
                row.role
                    .as_deref()
                    .and_then(|r| Role::parse(r).ok())
                    // An unreadable role gives the lesser rights.
                    .unwrap_or(Role::Member),
            ),
            _ => Kind::Agent,
        };
        Self {
            id: AgentId::from_stored(row.id.clone()),
            name: row.name.clone(),
            kind,
            is_owner: kind == Kind::Owner,
            creator: row.creator_id.clone().map(AgentId::from_stored),
            scopes,
            expires_at: row.expires_at,
            sealed_key: row.sealed_private_key.as_deref().map(Arc::from),
            ips: IpRule::from_stored(&row.id, &row.ip_allowlist),
            hash: TokenHash(row.token_hash),
            limiter: None,
            rate: row.rate_limit_per_minute,
        }
    }

    /// Whether this principal may read and write a field of `scope` (`None`: a field without
    /// a scope, for the owner and admins only).
    pub fn may_read_scope(&self, scope: Option<&str>) -> bool {
        match scope {
            _ if self.is_owner => true,
            None => self.kind == Kind::User(Role::Admin),
            Some(s) => self.scopes.iter().any(|m| m.as_str() == s),
        }
    }

    /// The owner or an admin: those who manage people, groups and everyone's agents.
    pub fn is_admin(&self) -> bool {
        matches!(self.kind, Kind::Owner | Kind::User(Role::Admin))
    }

    pub fn is_user(&self) -> bool {
        matches!(self.kind, Kind::User(_))
    }

    pub fn has_key_pair(&self) -> bool {
        self.sealed_key.is_some()
    }

    /// This principal's private key, unsealed with the token its request presented.
    pub fn private_key(&self, token: &Token) -> Result<PrivateKey, crate::crypto::Error> {
        let sealed = self
            .sealed_key
            .as_deref()
            .ok_or(crate::crypto::Error::Format)?;
        PrivateKey::unseal(token, self.id.as_str(), sealed)
    }

    fn with_limiter(mut self, old: Option<&Principal>) -> Self {
        // A rebuild of the table (any change to people or groups) keeps each token's rate
        // state, so it cannot be used to reset a limit.
        self.limiter = match old {
            Some(o) if o.rate == self.rate => o.limiter.clone(),
            _ => self
                .rate
                .and_then(NonZeroU32::new)
                .map(|n| Arc::new(RateLimiter::direct(Quota::per_minute(n)))),
        };
        self
    }
}

/// An authenticated request's caller: the principal plus the token it presented, which
/// credential-tier reads need to unwrap scope keys, and where the request came from (for the
/// audit trail).
#[derive(Debug, Clone)]
pub struct Caller {
    pub principal: Arc<Principal>,
    pub token: Token,
    pub ip: IpAddr,
    /// The request's id (`x-request-id`), set by the API layer.
    pub request_id: Option<Arc<str>>,
    /// Where this caller's refusals are counted (set by `Vault::authenticate`).
    pub(super) trail: Option<Arc<Trail>>,
}

impl Caller {
    /// An audit event of `action` by this caller, from its address, with its request id.
    pub fn audit(&self, action: &'static str) -> crate::audit::Event {
        let kind = match self.principal.kind {
            Kind::Owner => crate::audit::ActorKind::Owner,
            Kind::User(_) => crate::audit::ActorKind::User,
            Kind::Agent => crate::audit::ActorKind::Agent,
        };
        let mut e = crate::audit::Event::new(
            crate::audit::Actor {
                kind,
                id: Some(self.principal.id.to_string()),
            },
            action,
        )
        .ip(self.ip);
        if let Some(id) = &self.request_id {
            e = e.request_id(id.as_ref());
        }
        e
    }

    /// A role rule refused this caller: the 403 `forbidden` error, counted for the audit trail.
    pub fn forbidden(&self, message: impl Into<String>) -> Error {
        self.denied(Denial::Forbidden);
        Error::NotAllowed(message.into())
    }

    /// Counts a refusal of this caller for the audit trail (one event per address and minute).
    pub fn denied(&self, why: Denial) {
        if let Some(t) = &self.trail {
            t.denied(
                self.ip,
                why,
                Some(self.principal.id.as_str()),
                crate::store::now_ms(),
            );
        }
    }
}

#[derive(Default)]
pub struct Principals {
    by_hash: RwLock<HashMap<[u8; 32], Arc<Principal>>>,
}

impl Principals {
    /// Replaces the whole table by the principals of `dir` that may authenticate, with their
    /// effective scopes.
    pub fn replace_all(&self, dir: &Directory) {
        let effective = dir.effective();
        let mut map = self.by_hash.write().unwrap_or_else(|p| p.into_inner());
        let old: HashMap<AgentId, Arc<Principal>> =
            map.values().map(|p| (p.id.clone(), p.clone())).collect();
        *map = dir
            .principals
            .iter()
            .filter_map(|r| {
                let scopes = effective.get(&r.id)?.to_list();
                let p = Principal::from_row(r, scopes)
                    .with_limiter(old.get(&AgentId::from_stored(r.id.clone())).map(|p| &**p));
                Some((r.token_hash, Arc::new(p)))
            })
            .collect();
    }

    /// The live principal holding `hash`, without any per-request check.
    pub fn get(&self, hash: &TokenHash) -> Option<Arc<Principal>> {
        self.by_hash
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(&hash.0)
            .filter(|p| p.hash.ct_eq(hash))
            .cloned()
    }

    #[cfg(test)]
    pub fn authenticate(&self, token: Token, ip: IpAddr, now_ms: i64) -> Result<Caller, Error> {
        self.authenticate_as(token, ip, now_ms).map_err(|(e, _)| e)
    }

    /// Like `authenticate`; a refusal also names the principal whose token it was, once the
    /// token is known (an expired, misplaced or rate-limited one), for the audit trail.
    pub fn authenticate_as(
        &self,
        token: Token,
        ip: IpAddr,
        now_ms: i64,
    ) -> Result<Caller, (Error, Option<AgentId>)> {
        let hash = token.hash();
        let found = self
            .by_hash
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(&hash.0)
            .cloned();
        // The map is keyed by a hash of the token, so its lookup time says nothing about the
        // token; the final comparison is constant-time all the same.
        let principal = match found {
            Some(p) if p.hash.ct_eq(&hash) => p,
            _ => return Err((Error::InvalidToken, None)),
        };
        let refuse = |e: Error| Err((e, Some(principal.id.clone())));
        if principal.expires_at.is_some_and(|t| now_ms >= t) {
            return refuse(Error::TokenExpired);
        }
        if !principal.ips.allows(ip) {
            return refuse(Error::IpNotAllowed(ip));
        }
        if let Some(limiter) = &principal.limiter
            && let Err(not_until) = limiter.check()
        {
            let wait = not_until.wait_time_from(governor::clock::Clock::now(
                &governor::clock::DefaultClock::default(),
            ));
            return refuse(Error::RateLimited {
                retry_after_secs: wait.as_secs().max(1),
            });
        }
        Ok(Caller {
            principal,
            token,
            ip,
            request_id: None,
            trail: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(token: &Token, ip_allowlist: &[&str]) -> AgentRow {
        let mut r = AgentRow::new("agent".into(), "a".into(), "agent", token.hash().0, 0);
        r.scopes = vec!["s".into()];
        r.ip_allowlist = ip_allowlist.iter().map(|s| s.to_string()).collect();
        r
    }

    const ADDRESSES: [&str; 6] = [
        "127.0.0.1",
        "10.1.2.3",
        "192.168.0.1",
        "::1",
        "::ffff:10.1.2.3",
        "2001:db8::1",
    ];

    fn allowed_from(list: &[&str]) -> Vec<&'static str> {
        let token = Token::generate();
        let principals = Principals::default();
        principals.replace_all(&Directory {
            principals: vec![row(&token, list)],
            ..Directory::default()
        });
        ADDRESSES
            .into_iter()
            .filter(|ip| {
                principals
                    .authenticate(token.clone(), ip.parse().unwrap(), 0)
                    .is_ok()
            })
            .collect()
    }

    #[test]
    fn an_unreadable_allowlist_entry_matches_no_address() {
        assert_eq!(allowed_from(&[]), ADDRESSES, "no list: anywhere");
        assert!(allowed_from(&["garbage"]).is_empty());
        assert!(allowed_from(&["", "10.0.0.0/33", "::1/200"]).is_empty());
        assert_eq!(
            allowed_from(&["garbage", "10.0.0.0/8"]),
            ["10.1.2.3", "::ffff:10.1.2.3"],
            "readable entries still apply"
        );
    }
}
