//! Token rotation, for the owner (`POST /v1/owner/rotate`) and for users (their own token,
//! `POST /v1/token/rotate`): the principal's private key is re-sealed under the new token and
//! its token hash replaced, in one transaction (one row: the scope keys wrapped to its public
//! key stay as they are).
//!
//! The new token may come from the client, so a lost response cannot lose the vault: the CLI
//! stores the token it proposes before sending it, and a retry presenting that token as its
//! bearer is answered as a success without changing anything.

use super::keys::rewrap_legacy;
use super::{Caller, Error, Vault, require_owner};
use crate::crypto::{PrivateKey, TOKEN_PREFIX, Token, generate_key_pair};
use crate::store::agents::{active_token_hash, get_principal, replace_token};
use crate::store::{self, AgentRow};
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
pub(super) fn parse_proposed(text: &str) -> Result<Token, Error> {
    let format = || {
        Error::Invalid(Invalid(format!(
            "the proposed token must be {TOKEN_PREFIX} followed by {TOKEN_BYTES} random bytes in unpadded base64url (43 characters), as `clavitor owner rotate` and `clavitor token rotate` make"
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
/// by another request, or its user deactivated): whatever it would wrap or unwrap now belongs
/// to the new token, or to nobody.
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

/// Re-seals `id`'s private key under `new` and gives it `new`'s hash. Copies of scope keys
/// still in the format before key pairs (which open only with `old`) are re-wrapped to the
/// public key first, so none is lost with the old token.
fn rotate_rows(
    conn: &Connection,
    id: &AgentId,
    old: &Token,
    new: &Token,
) -> Result<AgentRow, Error> {
    ensure_current(conn, id, old)?;
    let row = get_principal(conn, id.as_str())?.ok_or(Error::InvalidToken)?;
    let private = match &row.sealed_private_key {
        Some(sealed) => PrivateKey::unseal(old, id.as_str(), sealed)?,
        None => {
            let (private, _) = generate_key_pair();
            private
        }
    };
    let public = private.public_key();
    if row.public_key.as_deref() != Some(public.to_bytes().as_slice()) {
        // No key pair yet (never signed in since the upgrade): the new one's public half.
        crate::store::agents::set_key_pair(
            conn,
            id.as_str(),
            &public.to_bytes(),
            &private.seal(old, id.as_str())?,
        )?;
    }
    rewrap_legacy(conn, id, old, &public)?;
    replace_token(
        conn,
        id.as_str(),
        &new.hash().0,
        &private.seal(new, id.as_str())?,
    )
    .map_err(|e| match e {
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
        self.rotate_token(caller, proposed, "owner.rotate").await
    }

    /// Replaces the caller's own token (the owner's or a user's; agents are given new tokens
    /// by being made anew), like [`rotate_owner`](Self::rotate_owner).
    pub async fn rotate_own_token(
        &self,
        caller: &Caller,
        proposed: Option<&str>,
    ) -> Result<Token, Error> {
        let p = &caller.principal;
        if !(p.is_owner || p.is_user()) {
            return Err(caller.forbidden(
                "only the owner and users rotate their own token; an agent gets a new token by being created again",
            ));
        }
        let action = if p.is_owner {
            "owner.rotate"
        } else {
            "user.token.rotate"
        };
        self.rotate_token(caller, proposed, action).await
    }

    async fn rotate_token(
        &self,
        caller: &Caller,
        proposed: Option<&str>,
        action: &'static str,
    ) -> Result<Token, Error> {
        let new = match proposed {
            Some(text) => parse_proposed(text)?,
            None => Token::generate(),
        };
        // A retry whose first attempt went through: the caller already holds the new token.
        if caller.token.hash().ct_eq(&new.hash()) {
            return Ok(new);
        }
        self.check_writable()?;
        let id = caller.principal.id.clone();
        let (old, next) = (caller.token.clone(), new.clone());
        let event = caller.audit(action).target(id.to_string());
        self.store
            .write(move |c| {
                rotate_rows(c, &id, &old, &next)?;
                crate::audit::record(c, &event)?;
                Ok::<_, Error>(())
            })
            .await?;
        self.reload_principals().await?;
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
