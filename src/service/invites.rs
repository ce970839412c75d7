//! Invites: an admin issues a user a single-use code that expires; the user, on its own
//! machine, makes its token and sends it with the code, and the server gives the user that
//! token and a new key pair. The server never sees a token it made for someone else, which is
//! what lets a provisioner (that must never hold a secret) create users.
//!
//! A code is `clvinv_<user id>_<32 random bytes, base64url>`; only its hash is stored, and the
//! hash is compared in constant time. Redeeming ends the code. A user that held keys before
//! (an invite to replace a lost token) loses its copies of scope keys (they are wrapped to its
//! old key pair) and its memberships become pending grants, for a holder to confirm again.

use super::owner::parse_proposed;
use super::{Caller, Error, Vault, from_store, require_admin};
use crate::crypto::generate_key_pair;
use crate::store::agents::{get_principal, scope_keys_of};
use crate::store::groups::{all_memberships, set_pending};
use crate::store::invites::{InviteRow, get_invite, put_invite, set_credentials, use_invite};
use crate::store::{self};
use crate::vault::{Invalid, UserId};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

const PREFIX: &str = "clvinv_";
/// How long an invite lasts unless the issuer says otherwise.
pub const DEFAULT_TTL_SECS: u64 = 72 * 3600;
/// The longest an invite may last (30 days).
pub const MAX_TTL_SECS: u64 = 30 * 24 * 3600;
/// Redeem attempts per address per minute: a code has 256 random bits, so this only keeps a
/// flood of guesses from becoming load.
const ATTEMPTS_PER_MINUTE: u32 = 10;

/// A code as issued: shown once.
#[derive(Debug)]
pub struct Invite {
    pub user_id: String,
    pub code: Zeroizing<String>,
    pub expires_at: i64,
}

/// Who redeemed an invite.
#[derive(Debug)]
pub struct Redeemed {
    pub user_id: String,
    pub name: String,
    /// Memberships that wait for a holder to confirm them.
    pub pending_grants: usize,
}

/// Redeem attempts per address, per minute.
#[derive(Debug, Default)]
pub struct Attempts(Mutex<HashMap<IpAddr, (i64, u32)>>);

impl Attempts {
    fn check(&self, ip: IpAddr, now: i64) -> Result<(), Error> {
        let minute = now / 60_000;
        let mut map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        map.retain(|_, (m, _)| *m == minute);
        let slot = map.entry(ip).or_insert((minute, 0));
        slot.1 += 1;
        if slot.1 > ATTEMPTS_PER_MINUTE {
            let retry = 60 - (now / 1000) % 60;
            return Err(Error::RateLimited {
                retry_after_secs: retry.max(1) as u64,
            });
        }
        Ok(())
    }
}

fn code_hash(code: &str) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(b"clavitor/v1/invite-hash\0");
    h.update(code.as_bytes());
    h.finalize().into()
}

fn not_valid() -> Error {
    Error::InviteNotValid(
        "this invite code is not valid (mistyped, or replaced by a newer invite); ask an admin for a new one: clavitor user invite USER".into(),
    )
}

/// The user id a code names, or `not_valid`.
fn user_of(code: &str) -> Result<UserId, Error> {
    let rest = code.trim().strip_prefix(PREFIX).ok_or_else(not_valid)?;
    // The id (a UUID) has no '_'; the secret (base64url) may.
    let (id, secret) = rest.split_once('_').ok_or_else(not_valid)?;
    if secret.len() != 43 {
        return Err(not_valid());
    }
    UserId::parse(id).map_err(|_| not_valid())
}

impl Vault {
    /// Issues `id` an invite (replacing any earlier one), for the owner and admins (admins'
    /// invites only by the owner). `ttl_secs`: how long it lasts (default 72 h).
    pub async fn invite_user(
        &self,
        caller: &Caller,
        id: UserId,
        ttl_secs: Option<u64>,
    ) -> Result<Invite, Error> {
        require_admin(caller)?;
        self.check_writable()?;
        let ttl = ttl_secs.unwrap_or(DEFAULT_TTL_SECS);
        if ttl == 0 || ttl > MAX_TTL_SECS {
            return Err(Error::Invalid(Invalid(format!(
                "expires_in_secs must be between 1 and {MAX_TTL_SECS} (30 days); the default is {DEFAULT_TTL_SECS} (72 h)"
            ))));
        }
        let mut raw = Zeroizing::new([0u8; 32]);
        rand::fill(&mut raw[..]);
        let code = Zeroizing::new(format!("{PREFIX}{id}_{}", URL_SAFE_NO_PAD.encode(&raw[..])));
        let now = store::now_ms();
        let row = InviteRow {
            user_id: id.to_string(),
            code_hash: code_hash(&code).to_vec(),
            created_at: now,
            expires_at: now + (ttl as i64) * 1000,
            used_at: None,
        };
        let expires_at = row.expires_at;
        let user_id = row.user_id.clone();
        let caller_c = caller.clone();
        self.store
            .write(move |c| {
                let target = super::users::target(c, &id)?;
                super::users::check_may_manage(&caller_c, super::users::role_of(&target))?;
                if target.deactivated_at.is_some() {
                    return Err(Error::Refused(format!(
                        "user {id} is deactivated; activate it first (PATCH {{\"active\":true}})"
                    )));
                }
                put_invite(c, &row)?;
                crate::audit::record(
                    c,
                    &caller_c
                        .audit("user.invite")
                        .target(id.as_str())
                        .detail("expires_in_secs", ttl.to_string()),
                )?;
                Ok::<_, Error>(())
            })
            .await?;
        Ok(Invite {
            user_id,
            code,
            expires_at,
        })
    }

    /// Redeems an invite: no bearer, the code is the credential. `token` is the token the
    /// client made (and stored) for itself.
    pub async fn redeem_invite(
        &self,
        ip: IpAddr,
        request_id: Option<&str>,
        code: &str,
        token: &str,
    ) -> Result<Redeemed, Error> {
        if !self.trail.available() {
            return Err(Error::AuditUnavailable);
        }
        let now = store::now_ms();
        self.invite_attempts.check(ip, now)?;
        self.check_writable()?;
        let token = parse_proposed(token)?;
        let id = user_of(code)?;
        let presented = code_hash(code.trim());
        let (private, public) = generate_key_pair();
        let sealed = private.seal(&token, id.as_str())?;
        let hash = token.hash().0;
        let request_id = request_id.map(str::to_owned);
        let out = self
            .store
            .write(move |c| {
                let invite = get_invite(c, id.as_str())?.ok_or_else(not_valid)?;
                if !bool::from(invite.code_hash.as_slice().ct_eq(&presented[..])) {
                    return Err(not_valid());
                }
                if invite.used_at.is_some() {
                    return Err(Error::InviteNotValid(
                        "this invite code has been used already (an invite works once); if that was not you, tell an admin. For a new one: clavitor user invite USER".into(),
                    ));
                }
                if invite.expires_at <= store::now_ms() {
                    return Err(Error::InviteNotValid(format!(
                        "this invite code expired at {}; ask an admin for a new one: clavitor user invite USER",
                        crate::audit::rfc3339(invite.expires_at)
                    )));
                }
                let row = match get_principal(c, id.as_str())? {
                    Some(r) if r.kind == "user" && r.revoked_at.is_none() => r,
                    _ => return Err(not_valid()),
                };
                if row.deactivated_at.is_some() {
                    return Err(Error::InviteNotValid(
                        "this user is deactivated; an admin must activate it and issue a new invite".into(),
                    ));
                }
                let had_keys = row.public_key.is_some();
                if !use_invite(c, id.as_str())? {
                    return Err(not_valid());
                }
                set_credentials(c, id.as_str(), &hash, &public.to_bytes(), &sealed)
                    .map_err(from_store)?;
                if had_keys {
                    // Copies wrapped to the old key pair open for nobody now.
                    for k in scope_keys_of(c, id.as_str())? {
                        crate::store::agents::drop_scope_key(c, &k.scope, id.as_str())?;
                    }
                }
                // Nobody has wrapped this key pair anything yet: each membership waits for a
                // holder of its keys (`POST /v1/grants/confirm`).
                let mut pending = 0;
                for (g, u, was_pending) in all_memberships(c)? {
                    if u == id.as_str() {
                        if !was_pending {
                            set_pending(c, &g, &u, true)?;
                        }
                        pending += 1;
                    }
                }
                super::entitlement::drop_unentitled(c)?;
                let mut event = crate::audit::Event::new(
                    crate::audit::Actor {
                        kind: crate::audit::ActorKind::User,
                        id: Some(id.to_string()),
                    },
                    "user.invite.redeem",
                )
                .target(id.as_str())
                .ip(ip);
                if let Some(r) = &request_id {
                    event = event.request_id(r.as_str());
                }
                crate::audit::record(c, &event)?;
                Ok::<_, Error>(Redeemed {
                    user_id: id.to_string(),
                    name: row.name,
                    pending_grants: pending,
                })
            })
            .await?;
        self.reload_principals().await?;
        Ok(out)
    }
}
