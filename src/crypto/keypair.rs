//! Principals' X25519 key pairs, and scope keys wrapped to their public keys with HPKE
//! (RFC 9180, base mode: DHKEM(X25519, HKDF-SHA256), HKDF-SHA256, AES-256-GCM).
//!
//! A private key is stored only sealed (AES-256-GCM) under a key derived from its
//! principal's token, with the principal's id as associated data; the public key is stored in
//! clear. So anyone may grant a scope key to a principal (wrap it to the public key), and only
//! a request presenting that principal's token can unwrap it.
//!
//! Stored blobs start with a one-byte format tag, so wraps of two generations can coexist
//! while principals migrate (see [`WrapFormat`]).

use super::aad::{join, private_key_aad};
use super::{Error, KEY_LEN, KeyBytes, ScopeKey, Sealer, Token, derive};
use hpke::kem::X25519HkdfSha256;
use hpke::{Deserializable, Kem as _, OpModeR, OpModeS, Serializable};
use zeroize::Zeroizing;

type Kem = X25519HkdfSha256;
type Kdf = hpke::kdf::HkdfSha256;
type Aead = hpke::aead::AesGcm256;

/// Length of a public key, and of HPKE's encapsulated key, for X25519.
pub const PUBLIC_KEY_LEN: usize = 32;
const SEAL_OVERHEAD: usize = 12 + 16;
/// A sealed private key: tag, nonce, 32 sealed bytes, GCM tag.
pub const SEALED_PRIVATE_KEY_LEN: usize = 1 + SEAL_OVERHEAD + KEY_LEN;
/// The format of a sealed private key (the only one so far).
const SEALED_V1: u8 = 0x01;

/// The generations of a stored wrapped scope key, told apart by the first byte.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WrapFormat {
    /// `0x01`: AES-256-GCM under a key derived from the holder's token, the format before key
    /// pairs (migration 3 gave the stored ones this tag). Opens only with that token.
    Legacy,
    /// `0x02`: HPKE to the holder's public key; opens with its private key.
    Hpke,
}

const TAG_LEGACY: u8 = 0x01;
const TAG_HPKE: u8 = 0x02;
/// Tag, encapsulated key, sealed 32-byte key with its GCM tag.
pub const HPKE_WRAP_LEN: usize = 1 + PUBLIC_KEY_LEN + KEY_LEN + 16;
/// Tag, nonce, sealed 32-byte key with its GCM tag.
pub const LEGACY_WRAP_LEN: usize = 1 + SEAL_OVERHEAD + KEY_LEN;

impl WrapFormat {
    /// The format of a stored wrap, checked against its length.
    pub fn of(wrapped: &[u8]) -> Result<Self, Error> {
        match (wrapped.first(), wrapped.len()) {
            (Some(&TAG_LEGACY), LEGACY_WRAP_LEN) => Ok(Self::Legacy),
            (Some(&TAG_HPKE), HPKE_WRAP_LEN) => Ok(Self::Hpke),
            _ => Err(Error::Format),
        }
    }
}

/// A principal's public key, stored in clear.
#[derive(Clone, PartialEq, Eq)]
pub struct PublicKey(<Kem as hpke::Kem>::PublicKey);

impl std::fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PublicKey(..)")
    }
}

impl PublicKey {
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, Error> {
        <Kem as hpke::Kem>::PublicKey::from_bytes(bytes)
            .map(Self)
            .map_err(|_| Error::KeyLength(bytes.len()))
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        self.0.to_bytes().to_vec()
    }
}

/// A principal's private key: exists in memory only while a request that presented the
/// principal's token needs it; wiped on drop (the inner X25519 secret zeroizes itself).
pub struct PrivateKey(<Kem as hpke::Kem>::PrivateKey);

impl std::fmt::Debug for PrivateKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PrivateKey(<redacted>)")
    }
}

/// A new random key pair.
pub fn generate_key_pair() -> (PrivateKey, PublicKey) {
    let (sk, pk) = Kem::gen_keypair();
    (PrivateKey(sk), PublicKey(pk))
}

fn seal_key(token: &Token) -> Sealer {
    Sealer::new(&derive(
        token.expose().as_bytes(),
        b"clavitor/v1/private-key-seal",
    ))
}

impl PrivateKey {
    pub fn public_key(&self) -> PublicKey {
        PublicKey(Kem::sk_to_pk(&self.0))
    }

    /// Seals this key under `token`, bound to `principal_id`: what `agents.sealed_private_key`
    /// holds.
    pub fn seal(&self, token: &Token, principal_id: &str) -> Result<Vec<u8>, Error> {
        let mut raw = Zeroizing::new([0u8; KEY_LEN]);
        self.0.write_exact(raw.as_mut_slice());
        let sealed = seal_key(token).seal(&private_key_aad(principal_id), raw.as_slice())?;
        let mut out = Vec::with_capacity(1 + sealed.len());
        out.push(SEALED_V1);
        out.extend_from_slice(&sealed);
        Ok(out)
    }

    /// Opens a sealed private key with the token it was sealed under.
    pub fn unseal(token: &Token, principal_id: &str, sealed: &[u8]) -> Result<Self, Error> {
        let body = match sealed.split_first() {
            Some((&SEALED_V1, body)) if sealed.len() == SEALED_PRIVATE_KEY_LEN => body,
            _ => return Err(Error::Format),
        };
        let raw = seal_key(token).open(&private_key_aad(principal_id), body)?;
        <Kem as hpke::Kem>::PrivateKey::from_bytes(&raw)
            .map(Self)
            .map_err(|_| Error::KeyLength(raw.len()))
    }
}

/// HPKE's `info` for a wrap: the scope and the recipient, so a wrap moved to another row does
/// not open.
fn wrap_info(scope: &str, recipient_id: &str) -> Vec<u8> {
    join("scope-key-hpke", &[scope, recipient_id])
}

impl ScopeKey {
    /// Wraps this key to `recipient`'s public key (format [`WrapFormat::Hpke`]).
    pub fn wrap_to(
        &self,
        recipient: &PublicKey,
        scope: &str,
        recipient_id: &str,
    ) -> Result<Vec<u8>, Error> {
        let info = wrap_info(scope, recipient_id);
        let (encapped, ct) = hpke::single_shot_seal::<Aead, Kdf, Kem>(
            &OpModeS::Base,
            &recipient.0,
            &info,
            self.0.expose(),
            &info,
        )
        .map_err(|_| Error::Encrypt)?;
        let mut out = Vec::with_capacity(HPKE_WRAP_LEN);
        out.push(TAG_HPKE);
        out.extend_from_slice(&encapped.to_bytes());
        out.extend_from_slice(&ct);
        debug_assert_eq!(out.len(), HPKE_WRAP_LEN);
        Ok(out)
    }

    /// Opens a stored wrap of either format: an HPKE wrap with the holder's private key (which
    /// `private` yields, unsealed with `token`), a legacy one with `token` itself.
    pub fn unwrap_stored(
        wrapped: &[u8],
        scope: &str,
        holder_id: &str,
        token: &Token,
        private: impl FnOnce() -> Result<PrivateKey, Error>,
    ) -> Result<Self, Error> {
        match WrapFormat::of(wrapped)? {
            WrapFormat::Legacy => Self::unwrap_legacy(token, scope, holder_id, wrapped),
            WrapFormat::Hpke => Self::unwrap_with(&private()?, scope, holder_id, wrapped),
        }
    }

    /// Opens an HPKE wrap with the recipient's private key.
    pub fn unwrap_with(
        private: &PrivateKey,
        scope: &str,
        recipient_id: &str,
        wrapped: &[u8],
    ) -> Result<Self, Error> {
        if WrapFormat::of(wrapped)? != WrapFormat::Hpke {
            return Err(Error::Format);
        }
        let (encapped, ct) = wrapped[1..].split_at(PUBLIC_KEY_LEN);
        let encapped =
            <Kem as hpke::Kem>::EncappedKey::from_bytes(encapped).map_err(|_| Error::Truncated)?;
        let info = wrap_info(scope, recipient_id);
        let raw = Zeroizing::new(
            hpke::single_shot_open::<Aead, Kdf, Kem>(
                &OpModeR::Base,
                &private.0,
                &encapped,
                &info,
                ct,
                &info,
            )
            .map_err(|_| Error::Decrypt)?,
        );
        KeyBytes::from_slice(&raw).map(Self)
    }

    /// Wraps this key under `token` in the format before key pairs, tagged. The server never
    /// writes this any more; it exists so that tests can build a vault as an older version
    /// left it.
    pub fn wrap_legacy(
        &self,
        token: &Token,
        scope: &str,
        holder_id: &str,
    ) -> Result<Vec<u8>, Error> {
        let sealed = token
            .wrap_sealer()
            .seal(&super::scope_key_aad(scope, holder_id), self.0.expose())?;
        let mut out = Vec::with_capacity(1 + sealed.len());
        out.push(TAG_LEGACY);
        out.extend_from_slice(&sealed);
        Ok(out)
    }

    /// Opens a tagged legacy wrap with the token it was made for.
    pub fn unwrap_legacy(
        token: &Token,
        scope: &str,
        holder_id: &str,
        wrapped: &[u8],
    ) -> Result<Self, Error> {
        if WrapFormat::of(wrapped)? != WrapFormat::Legacy {
            return Err(Error::Format);
        }
        let raw = token
            .wrap_sealer()
            .open(&super::scope_key_aad(scope, holder_id), &wrapped[1..])?;
        KeyBytes::from_slice(&raw).map(Self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_wrap_opens_only_with_its_recipients_private_key_scope_and_id() {
        let key = ScopeKey::generate();
        let (sk, pk) = generate_key_pair();
        let (other_sk, _) = generate_key_pair();
        let w = key.wrap_to(&pk, "deploy", "alice").unwrap();
        assert_eq!(WrapFormat::of(&w).unwrap(), WrapFormat::Hpke);
        let again = ScopeKey::unwrap_with(&sk, "deploy", "alice", &w).unwrap();
        let ct = key.sealer().seal(b"f", b"secret").unwrap();
        assert_eq!(&**again.sealer().open(b"f", &ct).unwrap(), b"secret");
        assert!(ScopeKey::unwrap_with(&other_sk, "deploy", "alice", &w).is_err());
        assert!(ScopeKey::unwrap_with(&sk, "ci", "alice", &w).is_err());
        assert!(ScopeKey::unwrap_with(&sk, "deploy", "bob", &w).is_err());
        let mut bad = w.clone();
        bad[HPKE_WRAP_LEN - 1] ^= 1;
        assert!(ScopeKey::unwrap_with(&sk, "deploy", "alice", &bad).is_err());
    }

    #[test]
    fn a_private_key_unseals_only_with_its_token_and_id() {
        let (sk, pk) = generate_key_pair();
        let t = Token::generate();
        let sealed = sk.seal(&t, "p1").unwrap();
        assert_eq!(sealed.len(), SEALED_PRIVATE_KEY_LEN);
        let back = PrivateKey::unseal(&t, "p1", &sealed).unwrap();
        assert!(back.public_key() == pk);
        assert!(PrivateKey::unseal(&Token::generate(), "p1", &sealed).is_err());
        assert!(PrivateKey::unseal(&t, "p2", &sealed).is_err());
        assert!(PrivateKey::unseal(&t, "p1", &sealed[1..]).is_err());
        assert_eq!(format!("{back:?}"), "PrivateKey(<redacted>)");
    }

    #[test]
    fn both_formats_open_through_unwrap_stored() {
        let key = ScopeKey::generate();
        let t = Token::generate();
        let (sk, pk) = generate_key_pair();
        let sealed = sk.seal(&t, "p").unwrap();
        let legacy = key.wrap_legacy(&t, "s", "p").unwrap();
        assert_eq!(legacy.len(), LEGACY_WRAP_LEN);
        assert_eq!(WrapFormat::of(&legacy).unwrap(), WrapFormat::Legacy);
        let hpke = key.wrap_to(&pk, "s", "p").unwrap();
        let ct = key.sealer().seal(b"a", b"v").unwrap();
        for w in [&legacy, &hpke] {
            let k =
                ScopeKey::unwrap_stored(w, "s", "p", &t, || PrivateKey::unseal(&t, "p", &sealed))
                    .unwrap();
            assert_eq!(&**k.sealer().open(b"a", &ct).unwrap(), b"v");
        }
        assert!(ScopeKey::unwrap_legacy(&Token::generate(), "s", "p", &legacy).is_err());
        assert!(WrapFormat::of(&[]).is_err());
        assert!(WrapFormat::of(&legacy[1..]).is_err());
    }
}
