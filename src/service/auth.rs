//! Who is calling: the in-memory table of live tokens, and the per-request checks
//! (expiry, IP allowlist, rate limit) in the order a client can act on.

use super::Error;
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
    ip_allowlist: Vec<IpNet>,
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
            // Stored lists were validated on the way in; skip anything unreadable rather
            // than widen access.
            ip_allowlist: row
                .ip_allowlist
                .iter()
                .filter_map(|s| parse_net(s).ok())
                .collect(),
            hash: TokenHash(row.token_hash),
            limiter,
        }
    }

    pub fn may_read_scope(&self, scope: Option<&str>) -> bool {
        self.is_owner || scope.is_some_and(|s| self.scopes.iter().any(|m| m.as_str() == s))
    }
}

/// An authenticated request's caller: the principal plus the token it presented, which
/// credential-tier reads need to unwrap scope keys.
#[derive(Debug, Clone)]
pub struct Caller {
    pub principal: Arc<Principal>,
    pub token: Token,
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

    pub fn authenticate(&self, token: Token, ip: IpAddr, now_ms: i64) -> Result<Caller, Error> {
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
            _ => return Err(Error::InvalidToken),
        };
        if principal.expires_at.is_some_and(|t| now_ms >= t) {
            return Err(Error::TokenExpired);
        }
        if !ip_allowed(&principal.ip_allowlist, ip) {
            return Err(Error::IpNotAllowed(ip));
        }
        if let Some(limiter) = &principal.limiter
            && let Err(not_until) = limiter.check()
        {
            let wait = not_until.wait_time_from(governor::clock::Clock::now(
                &governor::clock::DefaultClock::default(),
            ));
            return Err(Error::RateLimited {
                retry_after_secs: wait.as_secs().max(1),
            });
        }
        Ok(Caller { principal, token })
    }
}
