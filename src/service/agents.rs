//! Agents: creation (with their copies of scope keys), listing, revocation.

use super::entries::owner_scope_key;
use super::{Caller, Error, Vault, require_owner};
use crate::crypto::{Token, scope_key_aad};
use crate::store::agents::{insert_agent, list_agents, put_scope_key, revoke_agent};
use crate::store::{self, AgentRow, ScopeKeyRow};
use crate::vault::{AgentId, AgentSpec};

#[derive(Debug)]
pub struct AgentCreated {
    pub id: AgentId,
    pub token: Token,
    pub expires_at: Option<i64>,
}

#[derive(Debug)]
pub struct AgentView {
    pub id: String,
    pub name: String,
    pub scopes: Vec<String>,
    pub ip_allowlist: Vec<String>,
    pub rate_limit_per_minute: Option<u32>,
    pub created_at: i64,
    pub expires_at: Option<i64>,
    pub revoked_at: Option<i64>,
}

impl Vault {
    pub async fn create_agent(
        &self,
        caller: &Caller,
        spec: AgentSpec,
    ) -> Result<AgentCreated, Error> {
        require_owner(caller)?;
        self.check_writable()?;
        let token = Token::generate();
        let now = store::now_ms();
        let expires_at = spec
            .ttl
            .map(|t| now.saturating_add(i64::try_from(t.as_millis()).unwrap_or(i64::MAX)));
        let row = AgentRow {
            id: AgentId::generate().to_string(),
            name: spec.name.clone(),
            token_hash: token.hash().0,
            is_owner: false,
            scopes: spec.scopes.iter().map(|s| s.as_str().to_owned()).collect(),
            ip_allowlist: spec.ip_allowlist.iter().map(ToString::to_string).collect(),
            rate_limit_per_minute: Some(spec.rate_limit_per_minute),
            created_at: now,
            expires_at,
            revoked_at: None,
        };
        let owner = caller.principal.id.clone();
        let owner_token = caller.token.clone();
        let agent_token = token.clone();
        let stored = row.clone();
        let event = caller
            .audit("agent.create")
            .target(row.id.as_str())
            .detail("name", row.name.as_str())
            .detail("scopes", row.scopes.join(","));
        self.store
            .write(move |c| {
                insert_agent(c, &stored)?;
                crate::audit::record(c, &event)?;
                // Every scope an agent holds gets a key now, so a credential field written to
                // that scope later is readable by this agent without its token being present.
                for scope in &stored.scopes {
                    let key = owner_scope_key(c, &owner, &owner_token, scope)?;
                    put_scope_key(
                        c,
                        &ScopeKeyRow {
                            scope: scope.clone(),
                            agent_id: stored.id.clone(),
                            wrapped: key.wrap(&agent_token, &scope_key_aad(scope, &stored.id))?,
                        },
                    )?;
                }
                Ok::<_, Error>(())
            })
            .await
            .map_err(|e| match e {
                Error::Store(store::Error::Conflict(m)) => Error::Conflict(m),
                e => e,
            })?;
        self.principals.insert(&row);
        Ok(AgentCreated {
            id: AgentId::from_stored(row.id),
            token,
            expires_at,
        })
    }

    pub async fn list_agents(&self, caller: &Caller) -> Result<Vec<AgentView>, Error> {
        require_owner(caller)?;
        let rows = self.store.read(list_agents).await?;
        self.record_read(caller.audit("agent.list")).await?;
        Ok(rows
            .into_iter()
            .filter(|r| !r.is_owner)
            .map(|r| AgentView {
                id: r.id,
                name: r.name,
                scopes: r.scopes,
                ip_allowlist: r.ip_allowlist,
                rate_limit_per_minute: r.rate_limit_per_minute,
                created_at: r.created_at,
                expires_at: r.expires_at,
                revoked_at: r.revoked_at,
            })
            .collect())
    }

    pub async fn revoke_agent(&self, caller: &Caller, id: AgentId) -> Result<(), Error> {
        require_owner(caller)?;
        self.check_writable()?;
        let key = id.to_string();
        let event = caller.audit("agent.revoke").target(id.as_str());
        self.store
            .write(move |c| {
                revoke_agent(c, &key).map_err(|e| match e {
                    store::Error::NotFound => Error::AgentNotFound(key.clone()),
                    store::Error::Rejected(m) => Error::Refused(m),
                    e => e.into(),
                })?;
                crate::audit::record(c, &event)?;
                Ok::<_, Error>(())
            })
            .await?;
        self.principals.remove(&id);
        Ok(())
    }
}
