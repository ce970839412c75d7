//! Keys, field encryption and token handling. Pure: no IO, no serde.
//!
//! Architecture invariant: only this module holds plaintext key bytes. Callers get opaque
//! [`Sealer`]s and [`ScopeKey`]s that zeroize on drop; nothing here implements `Debug` with
//! key material in it.
//!
//! Key hierarchy:
//! - `master.key` (32 random bytes) -> HKDF -> the *vault key* (vault tier, entry metadata, and
//!   the outer layer of identity fields).
//! - each principal (owner, user, agent) has an X25519 key pair (`keypair.rs`): the private
//!   key is stored only sealed under a key derived from the principal's token, the public key
//!   in clear.
//! - each scope has a random *scope key* (credential tier). It is stored only wrapped (HPKE)
//!   to the public key of each principal entitled to it, so `vault.db` + `master.key` alone
//!   cannot open a credential field, and anyone holding a scope key can grant it without the
//!   recipient's token. Wraps from before key pairs (under a token-derived key) still open
//!   with their token until their holder's next request re-wraps them.
//! - tokens are stored as SHA-256 hashes; the sealing keys use different HKDF derivations, so
//!   a hash yields no key.
//! - an export file's key is derived from a passphrase by argon2id (`passphrase.rs`); it never
//!   touches the vault's own keys.
//! - `master.key` -> HKDF (its own label) -> the *audit key*, which MACs the audit trail's
//!   chain head (HMAC-SHA256), so the head cannot be recomputed without the key.

mod aad;
mod keypair;
mod passphrase;

pub use aad::{entry_meta_aad, field_aad, field_policy_aad, key_check_aad, scope_key_aad};
pub use keypair::{
    HPKE_WRAP_LEN, LEGACY_WRAP_LEN, PUBLIC_KEY_LEN, PrivateKey, PublicKey, SEALED_PRIVATE_KEY_LEN,
    WrapFormat, generate_key_pair,
};
pub use passphrase::{KdfParams, SALT_LEN, passphrase_sealer, random_salt};

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hkdf::Hkdf;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

pub const KEY_LEN: usize = 32;
const NONCE_LEN: usize = 12;
const TAG_LEN: usize = 16;
/// Prefix of owner and agent tokens; lets secret scanners recognise a leaked token.
pub const TOKEN_PREFIX: &str = "clv_";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("ciphertext is too short to be valid")]
    Truncated,
    #[error("decryption failed: wrong key, or the ciphertext was altered or moved")]
    Decrypt,
    #[error("encryption failed")]
    Encrypt,
    #[error("key must be exactly {KEY_LEN} bytes, found {0}")]
    KeyLength(usize),
    #[error("{0}")]
    Kdf(String),
    #[error("stored key material has an unknown format or length")]
    Format,
}

/// 32 secret bytes, wiped on drop.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct KeyBytes([u8; KEY_LEN]);

impl KeyBytes {
    pub fn random() -> Self {
        let mut k = [0u8; KEY_LEN];
        rand::fill(&mut k);
        Self(k)
    }

    pub fn from_slice(bytes: &[u8]) -> Result<Self, Error> {
        let arr: [u8; KEY_LEN] = bytes
            .try_into()
            .map_err(|_| Error::KeyLength(bytes.len()))?;
        Ok(Self(arr))
    }

    /// Raw bytes, for writing `master.key` only.
    pub fn expose(&self) -> &[u8; KEY_LEN] {
        &self.0
    }
}

impl std::fmt::Debug for KeyBytes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("KeyBytes(<redacted>)")
    }
}

/// The contents of `master.key`.
#[derive(Debug)]
pub struct MasterKey(KeyBytes);

impl MasterKey {
    pub fn generate() -> Self {
        Self(KeyBytes::random())
    }

    pub fn from_bytes(bytes: &[u8]) -> Result<Self, Error> {
        KeyBytes::from_slice(bytes).map(Self)
    }

    pub fn expose(&self) -> &[u8; KEY_LEN] {
        self.0.expose()
    }

    /// The key that seals vault-tier fields and entry metadata.
    pub fn vault_sealer(&self) -> Sealer {
        Sealer::new(&derive(self.0.expose(), b"clavitor/v1/vault-key"))
    }

    /// The key that authenticates the audit trail's chain head.
    pub fn audit_key(&self) -> AuditKey {
        AuditKey(derive(self.0.expose(), b"clavitor/v1/audit-head-mac"))
    }
}

/// HMAC-SHA256 over the audit trail's head. Cloned into the store's writer; wiped on drop.
#[derive(Clone)]
pub struct AuditKey(KeyBytes);

impl std::fmt::Debug for AuditKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AuditKey(<redacted>)")
    }
}

impl AuditKey {
    fn hmac(&self) -> Hmac<Sha256> {
        <Hmac<Sha256> as hmac::KeyInit>::new_from_slice(self.0.expose())
            .expect("HMAC takes keys of any length")
    }

    pub fn mac(&self, message: &[u8]) -> [u8; 32] {
        let mut m = self.hmac();
        m.update(message);
        m.finalize().into_bytes().into()
    }

    /// Whether `tag` is this key's MAC of `message` (constant-time).
    pub fn verify(&self, message: &[u8], tag: &[u8]) -> bool {
        let mut m = self.hmac();
        m.update(message);
        m.verify_slice(tag).is_ok()
    }
}

fn derive(ikm: &[u8], info: &[u8]) -> KeyBytes {
    let hk = Hkdf::<Sha256>::new(Some(b"clavitor/v1/hkdf-salt"), ikm);
    let mut out = [0u8; KEY_LEN];
    hk.expand(info, &mut out)
        .expect("32 bytes is a valid HKDF-SHA256 output length");
    let k = KeyBytes(out);
    out.zeroize();
    k
}

/// AES-256-GCM with a random 96-bit nonce per message. Output layout: `nonce || ciphertext || tag`.
#[derive(Clone)]
pub struct Sealer {
    cipher: Aes256Gcm,
}

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Sealer(<redacted>)")
    }
}

impl Sealer {
    fn new(key: &KeyBytes) -> Self {
        let cipher = Aes256Gcm::new_from_slice(key.expose()).expect("key is 32 bytes");
        Self { cipher }
    }

    pub fn seal(&self, aad: &[u8], plaintext: &[u8]) -> Result<Vec<u8>, Error> {
        let mut nonce = [0u8; NONCE_LEN];
        rand::fill(&mut nonce);
        let ct = self
            .cipher
            .encrypt(
                &Nonce::from(nonce),
                Payload {
                    msg: plaintext,
                    aad,
                },
            )
            .map_err(|_| Error::Encrypt)?;
        let mut out = Vec::with_capacity(NONCE_LEN + ct.len());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&ct);
        Ok(out)
    }

    pub fn open(&self, aad: &[u8], sealed: &[u8]) -> Result<Zeroizing<Vec<u8>>, Error> {
        if sealed.len() < NONCE_LEN + TAG_LEN {
            return Err(Error::Truncated);
        }
        let (nonce, ct) = sealed.split_at(NONCE_LEN);
        let nonce: [u8; NONCE_LEN] = nonce.try_into().map_err(|_| Error::Truncated)?;
        self.cipher
            .decrypt(&Nonce::from(nonce), Payload { msg: ct, aad })
            .map(Zeroizing::new)
            .map_err(|_| Error::Decrypt)
    }
}

/// A random per-scope key for credential-tier fields.
#[derive(Debug)]
pub struct ScopeKey(KeyBytes);

impl ScopeKey {
    pub fn generate() -> Self {
        Self(KeyBytes::random())
    }

    pub fn sealer(&self) -> Sealer {
        Sealer::new(&self.0)
    }
}

/// SHA-256 of a token; what the database stores in place of the token.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct TokenHash(pub [u8; 32]);

impl TokenHash {
    pub fn ct_eq(&self, other: &TokenHash) -> bool {
        self.0.ct_eq(&other.0).into()
    }
}

impl std::fmt::Debug for TokenHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenHash(..)")
    }
}

/// A bearer token's secret text, wiped on drop and never printed by `Debug`.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct Token(String);

impl Token {
    /// 256 random bits, base64url, with a recognisable prefix.
    pub fn generate() -> Self {
        let mut raw = [0u8; 32];
        rand::fill(&mut raw);
        let t = Self(format!("{TOKEN_PREFIX}{}", URL_SAFE_NO_PAD.encode(raw)));
        raw.zeroize();
        t
    }

    /// Wraps text received from a client or a file; surrounding whitespace is not part of it.
    pub fn from_text(text: &str) -> Self {
        Self(text.trim().to_owned())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn hash(&self) -> TokenHash {
        let mut h = Sha256::new();
        h.update(b"clavitor/v1/token-hash\0");
        h.update(self.0.as_bytes());
        TokenHash(h.finalize().into())
    }

    /// The key of legacy wraps (see [`WrapFormat::Legacy`]).
    fn wrap_sealer(&self) -> Sealer {
        Sealer::new(&derive(self.0.as_bytes(), b"clavitor/v1/token-wrap-key"))
    }
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Token(<redacted>)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_open_round_trip_and_aad_binding() {
        let s = MasterKey::generate().vault_sealer();
        let ct = s.seal(&field_aad("e1", "password"), b"hunter2").unwrap();
        assert_eq!(
            &**s.open(&field_aad("e1", "password"), &ct).unwrap(),
            b"hunter2"
        );
        // Copying a ciphertext to another field or entry must not decrypt.
        assert!(s.open(&field_aad("e1", "pin"), &ct).is_err());
        assert!(s.open(&field_aad("e2", "password"), &ct).is_err());
    }

    #[test]
    fn a_field_policy_is_bound_only_when_not_the_default() {
        let s = MasterKey::generate().vault_sealer();
        let none: &[&str] = &[];
        assert_eq!(
            field_policy_aad("e1", "k", "read", none),
            field_aad("e1", "k")
        );
        let ct = s
            .seal(
                &field_policy_aad("e1", "k", "use", &["api.example.com"]),
                b"v",
            )
            .unwrap();
        for (access, hosts) in [
            ("read", vec!["api.example.com"]),
            ("use", vec![]),
            ("use", vec!["evil.example.com"]),
            ("use", vec!["api.example.com", "evil.example.com"]),
        ] {
            assert!(
                s.open(&field_policy_aad("e1", "k", access, &hosts), &ct)
                    .is_err()
            );
        }
        assert!(
            s.open(
                &field_policy_aad("e1", "k", "use", &["api.example.com"]),
                &ct
            )
            .is_ok()
        );
    }

    #[test]
    fn nonces_are_fresh() {
        let s = MasterKey::generate().vault_sealer();
        let a = s.seal(b"x", b"same").unwrap();
        let b = s.seal(b"x", b"same").unwrap();
        assert_ne!(a, b);
    }

    #[test]
    fn tampered_or_truncated_ciphertext_is_rejected() {
        let s = MasterKey::generate().vault_sealer();
        let mut ct = s.seal(b"a", b"value").unwrap();
        let last = ct.len() - 1;
        ct[last] ^= 1;
        assert!(matches!(s.open(b"a", &ct), Err(Error::Decrypt)));
        assert!(matches!(s.open(b"a", &ct[..10]), Err(Error::Truncated)));
    }

    #[test]
    fn different_master_keys_cannot_read_each_other() {
        let a = MasterKey::generate().vault_sealer();
        let b = MasterKey::generate().vault_sealer();
        let ct = a.seal(b"x", b"v").unwrap();
        assert!(b.open(b"x", &ct).is_err());
    }

    #[test]
    fn scope_key_unwraps_only_with_its_token() {
        let key = ScopeKey::generate();
        let t1 = Token::generate();
        let t2 = Token::generate();
        let wrapped = key.wrap_legacy(&t1, "scope", "a").unwrap();
        let again = ScopeKey::unwrap_legacy(&t1, "scope", "a", &wrapped).unwrap();
        let ct = key.sealer().seal(b"f", b"secret").unwrap();
        assert_eq!(&**again.sealer().open(b"f", &ct).unwrap(), b"secret");
        assert!(ScopeKey::unwrap_legacy(&t2, "scope", "a", &wrapped).is_err());
    }

    #[test]
    fn tokens_are_256_bit_and_hash_stably() {
        let t = Token::generate();
        assert!(t.expose().starts_with(TOKEN_PREFIX));
        assert_eq!(t.expose().len(), TOKEN_PREFIX.len() + 43);
        assert!(
            t.hash()
                .ct_eq(&Token::from_text(&format!(" {}\n", t.expose())).hash())
        );
        assert!(!t.hash().ct_eq(&Token::generate().hash()));
        assert_eq!(format!("{t:?}"), "Token(<redacted>)");
    }

    #[test]
    fn audit_macs_bind_key_and_message() {
        let master = MasterKey::generate();
        let key = master.audit_key();
        let tag = key.mac(b"head");
        assert!(key.verify(b"head", &tag));
        assert!(!key.verify(b"head2", &tag));
        assert!(!key.verify(b"head", &tag[..31]));
        assert!(!MasterKey::generate().audit_key().verify(b"head", &tag));
        // Its own label: not the vault key's bytes.
        assert_ne!(
            derive(master.expose(), b"clavitor/v1/vault-key").expose(),
            key.0.expose()
        );
        assert_eq!(format!("{key:?}"), "AuditKey(<redacted>)");
    }

    #[test]
    fn master_key_rejects_wrong_length() {
        assert!(matches!(
            MasterKey::from_bytes(&[0u8; 31]),
            Err(Error::KeyLength(31))
        ));
    }
}
