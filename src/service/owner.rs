//! Owner token rotation: every scope key the owner holds is re-wrapped for the new token and
//! the owner's token hash replaced, in one transaction.
//!
//! The new token may come from the client, so a lost response cannot lose the vault: the CLI
//! stores the token it proposes before sending it, and a retry presenting that token as its
//! bearer is answered as a success without changing anything.

use super::{Caller, Error, Vault, require_owner};
use crate::crypto::{ScopeKey, TOKEN_PREFIX, Token, scope_key_aad};
use crate::store::agents::{
    active_token_hash, replace_token_hash, rewrap_scope_key, scope_keys_of,
};
use crate::store::{self, AgentRow, ScopeKeyRow};
use crate::vault::{AgentId, Invalid};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rusqlite::Connection;
use subtle::ConstantTimeEq;

/// Random bytes behind a token: as many as `Token::generate` uses.
const TOKEN_BYTES: usize = 32;
/// Fewest distinct byte values accepted among those 32: random bytes almost never have fewer
/// than 20 (the odds of under 16 are below 1e-12), a hand-made pattern usually has.
const MIN_DISTINCT: usize = 16;

/// A token proposed by a client: `clv_` and 32 random bytes in base64url, as ours are.
fn parse_proposed(text: &str) -> Result<Token, Error> {
    let format = || {
        Error::Invalid(Invalid(format!(
            "the proposed token must be {TOKEN_PREFIX} followed by {TOKEN_BYTES} random bytes in unpadded base64url (43 characters), as `clavitor owner rotate` makes"
        )))
    };
    let body = text.strip_prefix(TOKEN_PREFIX).ok_or_else(format)?;
    let raw = zeroize::Zeroizing::new(URL_SAFE_NO_PAD.decode(body).map_err(|_| format())?);
    if raw.len() != TOKEN_BYTES {
        return Err(format());
    }
    let mut seen = [false; 256];
    for b in raw.iter() {
        seen[usize::from(*b)] = true;
    }
    if seen.iter().filter(|s| **s).count() < MIN_DISTINCT {
        return Err(Error::Invalid(Invalid(
            "the proposed token is not random enough; let `clavitor owner rotate` (or the server, by sending no body) make one".into(),
        )));
    }
    Ok(Token::from_text(text))
}

/// Refuses a token that is no longer `agent`'s own (e.g. the owner's token just rotated away
/// by another request): whatever it would wrap or unwrap now belongs to the new token.
pub(super) fn ensure_current(
    conn: &Connection,
    agent: &AgentId,
    token: &Token,
) -> Result<(), Error> {
    let stored = active_token_hash(conn, agent.as_str())?.ok_or(Error::InvalidToken)?;
    if bool::from(stored.as_slice().ct_eq(&token.hash().0)) {
        Ok(())
    } else {
        Err(Error::InvalidToken)
    }
}

fn rotate_rows(
    conn: &Connection,
    owner: &AgentId,
    old: &Token,
    new: &Token,
) -> Result<AgentRow, Error> {
    ensure_current(conn, owner, old)?;
    for k in scope_keys_of(conn, owner.as_str())? {
        let aad = scope_key_aad(&k.scope, owner.as_str());
        let key = ScopeKey::unwrap(old, &aad, &k.wrapped)?;
        rewrap_scope_key(
            conn,
            &ScopeKeyRow {
                wrapped: key.wrap(new, &aad)?,
                ..k
            },
        )?;
    }
    replace_token_hash(conn, owner.as_str(), &new.hash().0).map_err(|e| match e {
        store::Error::Conflict(m) => Error::Conflict(m),
        store::Error::NotFound => Error::InvalidToken,
        e => e.into(),
    })
}

impl Vault {
    /// Replaces the owner's token by `proposed` (validated) or a fresh one; returns the token
    /// now in force. The old token is refused from the moment this returns.
    pub async fn rotate_owner(
        &self,
        caller: &Caller,
        proposed: Option<&str>,
    ) -> Result<Token, Error> {
        require_owner(caller)?;
        let new = match proposed {
            Some(text) => parse_proposed(text)?,
            None => Token::generate(),
        };
        // A retry whose first attempt went through: the caller already holds the new token.
        if caller.token.hash().ct_eq(&new.hash()) {
            return Ok(new);
        }
        self.check_writable()?;
        let owner = caller.principal.id.clone();
        let (old, next) = (caller.token.clone(), new.clone());
        let event = caller.audit("owner.rotate").target(owner.as_str());
        let row = self
            .store
            .write(move |c| {
                let row = rotate_rows(c, &owner, &old, &next)?;
                crate::audit::record(c, &event)?;
                Ok::<_, Error>(row)
            })
            .await?;
        self.principals.replace(&row);
        Ok(new)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proposed_tokens_must_look_like_ours() {
        assert!(parse_proposed(Token::generate().expose()).is_ok());
        for bad in [
            "",
            "clv_",
            "not-a-token",
            "clv_short",
            // 32 bytes, but zeros.
            "clv_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
            // Standard base64 (with +/), not base64url.
            "clv_++++++++++++++++++++++++++++++++++++++++++A",
        ] {
            assert!(parse_proposed(bad).is_err(), "{bad:?} accepted");
        }
        let long = format!("{}AA", Token::generate().expose());
        assert!(parse_proposed(&long).is_err());
    }
}
