//! Agents: created by the owner or a user within the creator's own scopes, listed under their
//! creator, revoked by their creator, an admin or the owner.

use super::keys::KeyRing;
use super::{Caller, Error, Vault, from_store};
use crate::crypto::{Token, generate_key_pair};
use crate::store::agents::{get_principal, insert_agent, list_agents, revoke_agent};
use crate::store::{self, AgentRow};
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
    /// Who created it (`None`: the owner, before people existed).
    pub creator_id: Option<String>,
    pub created_at: i64,
    pub expires_at: Option<i64>,
    pub revoked_at: Option<i64>,
}

/// The owner and users manage agents; agents do not make agents.
fn require_person(caller: &Caller) -> Result<(), Error> {
    let p = &caller.principal;
    if p.is_owner || p.is_user() {
        Ok(())
    } else {
        Err(caller.forbidden("agents cannot manage agents; only the owner and users may"))
    }
}

impl Vault {
    pub async fn create_agent(
        &self,
        caller: &Caller,
        spec: AgentSpec,
    ) -> Result<AgentCreated, Error> {
        require_person(caller)?;
        let p = &caller.principal;
        let outside: Vec<&str> = spec
            .scopes
            .iter()
            .filter(|s| !p.may_read_scope(Some(s.as_str())))
            .map(|s| s.as_str())
            .collect();
        if !outside.is_empty() {
            return Err(caller.forbidden(format!(
                "an agent's scopes must be a subset of its creator's; this token does not hold {outside:?}"
            )));
        }
        self.check_writable()?;
        let token = Token::generate();
        let now = store::now_ms();
        let expires_at = spec
            .ttl
            .map(|t| now.saturating_add(i64::try_from(t.as_millis()).unwrap_or(i64::MAX)));
        let id = AgentId::generate().to_string();
        let (private, public) = generate_key_pair();
        let mut row = AgentRow::new(id.clone(), spec.name.clone(), "agent", token.hash().0, now);
        row.creator_id = Some(p.id.to_string());
        row.scopes = spec.scopes.iter().map(|s| s.as_str().to_owned()).collect();
        row.ip_allowlist = spec.ip_allowlist.iter().map(ToString::to_string).collect();
        row.rate_limit_per_minute = Some(spec.rate_limit_per_minute);
        row.expires_at = expires_at;
        row.public_key = Some(public.to_bytes());
        row.sealed_private_key = Some(private.seal(&token, &id)?);
        let caller_c = caller.clone();
        let event = caller
            .audit("agent.create")
            .target(row.id.as_str())
            .detail("name", row.name.as_str())
            .detail("scopes", row.scopes.join(","));
        self.store
            .write(move |c| {
                insert_agent(c, &row).map_err(from_store)?;
                // Copies of the keys its scopes already have, from the creator's own; keys made
                // later are wrapped to its public key when they are made.
                KeyRing::new(&caller_c).grant_entitlements(c, std::slice::from_ref(&row.id))?;
                crate::audit::record(c, &event)?;
                Ok::<_, Error>(())
            })
            .await?;
        self.reload_principals().await?;
        Ok(AgentCreated {
            id: AgentId::from_stored(id),
            token,
            expires_at,
        })
    }

    /// The owner and admins see every agent; a user sees the agents it created.
    pub async fn list_agents(&self, caller: &Caller) -> Result<Vec<AgentView>, Error> {
        require_person(caller)?;
        let all = caller.principal.is_admin();
        let me = caller.principal.id.to_string();
        let rows = self.store.read(list_agents).await?;
        self.record_read(caller.audit("agent.list")).await?;
        Ok(rows
            .into_iter()
            .filter(|r| all || r.creator_id.as_deref() == Some(me.as_str()))
            .map(|r| AgentView {
                id: r.id,
                name: r.name,
                scopes: r.scopes,
                ip_allowlist: r.ip_allowlist,
                rate_limit_per_minute: r.rate_limit_per_minute,
                creator_id: r.creator_id,
                created_at: r.created_at,
                expires_at: r.expires_at,
                revoked_at: r.revoked_at,
            })
            .collect())
    }

    /// The owner and admins revoke any agent; a user, the agents it created (another's is
    /// answered as one that does not exist).
    pub async fn revoke_agent(&self, caller: &Caller, id: AgentId) -> Result<(), Error> {
        require_person(caller)?;
        self.check_writable()?;
        let key = id.to_string();
        let caller_c = caller.clone();
        self.store
            .write(move |c| {
                let not_found = || Error::AgentNotFound(key.clone());
                let row = get_principal(c, &key)?.ok_or_else(not_found)?;
                let p = &caller_c.principal;
                if !p.is_admin() && row.creator_id.as_deref() != Some(p.id.as_str()) {
                    return Err(not_found());
                }
                revoke_agent(c, &key).map_err(|e| match e {
                    store::Error::NotFound => not_found(),
                    e => from_store(e),
                })?;
                crate::audit::record(c, &caller_c.audit("agent.revoke").target(key.clone()))?;
                Ok::<_, Error>(())
            })
            .await?;
        self.reload_principals().await
    }
}
