//! Who is calling: the in-memory table of live tokens, and the per-request checks
//! (expiry, IP allowlist, rate limit) in the order a client can act on.

use super::Error;
use crate::audit::{Denial, Trail};
use crate::crypto::{Token, TokenHash};
use crate::store::AgentRow;
use crate::vault::{AgentId, Scope, ip_allowed, parse_net};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use ipnet::IpNet;
use std::collections::HashMap;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::{Arc, RwLock};

/// A token holder as the server sees it. Built from an `agents` row.
pub struct Principal {
    pub id: AgentId,
    pub name: String,
    pub is_owner: bool,
    pub scopes: Vec<Scope>,
    pub expires_at: Option<i64>,
    ips: IpRule,
    hash: TokenHash,
    limiter: Option<DefaultDirectRateLimiter>,
}

impl std::fmt::Debug for Principal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Principal")
            .field("id", &self.id)
            .field("name", &self.name)
            .field("is_owner", &self.is_owner)
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
    pub fn from_row(row: &AgentRow) -> Self {
        let limiter = row
            .rate_limit_per_minute
            .and_then(NonZeroU32::new)
            .map(|n| RateLimiter::direct(Quota::per_minute(n)));
        Self {
            id: AgentId::from_stored(row.id.clone()),
            name: row.name.clone(),
            is_owner: row.is_owner,
            scopes: row
                .scopes
                .iter()
                .map(|s| Scope::from_stored(s.clone()))
                .collect(),
            expires_at: row.expires_at,
            ips: IpRule::from_stored(&row.id, &row.ip_allowlist),
            hash: TokenHash(row.token_hash),
            limiter,
        }
    }

    pub fn may_read_scope(&self, scope: Option<&str>) -> bool {
        self.is_owner || scope.is_some_and(|s| self.scopes.iter().any(|m| m.as_str() == s))
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
        let kind = if self.principal.is_owner {
            crate::audit::ActorKind::Owner
        } else {
            crate::audit::ActorKind::Agent
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
    pub fn replace_all(&self, rows: &[AgentRow]) {
        let map = rows
            .iter()
            .filter(|r| r.revoked_at.is_none())
            .map(|r| (r.token_hash, Arc::new(Principal::from_row(r))))
            .collect();
        *self.by_hash.write().unwrap_or_else(|p| p.into_inner()) = map;
    }

    pub fn insert(&self, row: &AgentRow) {
        self.by_hash
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(row.token_hash, Arc::new(Principal::from_row(row)));
    }

    /// Swaps a principal's entry for its updated row (a new token hash) in one step, so no
    /// request sees neither or both.
    pub fn replace(&self, row: &AgentRow) {
        let id = AgentId::from_stored(row.id.clone());
        let mut map = self.by_hash.write().unwrap_or_else(|p| p.into_inner());
        map.retain(|_, p| p.id != id);
        map.insert(row.token_hash, Arc::new(Principal::from_row(row)));
    }

    pub fn remove(&self, id: &AgentId) {
        self.by_hash
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|_, p| &p.id != id);
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
        AgentRow {
            id: "agent".into(),
            name: "a".into(),
            token_hash: token.hash().0,
            is_owner: false,
            scopes: vec!["s".into()],
            ip_allowlist: ip_allowlist.iter().map(|s| s.to_string()).collect(),
            rate_limit_per_minute: None,
            created_at: 0,
            expires_at: None,
            revoked_at: None,
        }
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
        principals.replace_all(&[row(&token, list)]);
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
