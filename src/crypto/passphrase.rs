//! Keys from passphrases, for export files: argon2id (RFC 9106) stretches the passphrase with
//! a random salt into an AES-256-GCM key, wrapped in a [`Sealer`] like every other key.

use super::{Error, KEY_LEN, KeyBytes, Sealer};
use argon2::{Algorithm, Argon2, Params, Version};
use zeroize::Zeroize;

pub const SALT_LEN: usize = 16;

/// argon2id cost parameters, as recorded in an export file's header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KdfParams {
    pub memory_kib: u32,
    pub iterations: u32,
    pub parallelism: u32,
}

impl KdfParams {
    /// RFC 9106's second recommended option (64 MiB, 3 passes) with one lane: a fraction of a
    /// second once per export, and the same memory for every guess an attacker makes.
    pub const DEFAULT: Self = Self {
        memory_kib: 64 * 1024,
        iterations: 3,
        parallelism: 1,
    };

    /// Bounds on what a file may ask for: it is read before any passphrase is known to be
    /// right, so a crafted header must not make the reader allocate or spin without limit.
    const MAX_MEMORY_KIB: u32 = 2 * 1024 * 1024;
    const MAX_ITERATIONS: u32 = 64;
    const MAX_PARALLELISM: u32 = 16;

    fn check(&self) -> Result<Params, Error> {
        if self.memory_kib > Self::MAX_MEMORY_KIB
            || self.iterations > Self::MAX_ITERATIONS
            || self.parallelism > Self::MAX_PARALLELISM
        {
            return Err(Error::Kdf(format!(
                "argon2id with {} KiB, {} passes and {} lanes is beyond the {} KiB, {} passes and {} lanes this version reads",
                self.memory_kib,
                self.iterations,
                self.parallelism,
                Self::MAX_MEMORY_KIB,
                Self::MAX_ITERATIONS,
                Self::MAX_PARALLELISM
            )));
        }
        Params::new(
            self.memory_kib,
            self.iterations,
            self.parallelism,
            Some(KEY_LEN),
        )
        .map_err(|e| Error::Kdf(format!("argon2id parameters refused: {e}")))
    }
}

pub fn random_salt() -> [u8; SALT_LEN] {
    let mut salt = [0u8; SALT_LEN];
    rand::fill(&mut salt);
    salt
}

/// The sealer whose key argon2id derives from `passphrase` and `salt` with `params`.
pub fn passphrase_sealer(
    passphrase: &[u8],
    salt: &[u8],
    params: KdfParams,
) -> Result<Sealer, Error> {
    let argon = Argon2::new(Algorithm::Argon2id, Version::V0x13, params.check()?);
    let mut out = [0u8; KEY_LEN];
    argon
        .hash_password_into(passphrase, salt, &mut out)
        .map_err(|e| Error::Kdf(format!("argon2id failed: {e}")))?;
    let key = KeyBytes(out);
    out.zeroize();
    Ok(Sealer::new(&key))
}

#[cfg(test)]
mod tests {
    use super::*;

    const FAST: KdfParams = KdfParams {
        memory_kib: 64,
        iterations: 1,
        parallelism: 1,
    };

    #[test]
    fn same_passphrase_and_salt_open_what_was_sealed() {
        let salt = random_salt();
        let sealed = passphrase_sealer(b"correct horse", &salt, FAST)
            .unwrap()
            .seal(b"aad", b"plain")
            .unwrap();
        let opened = passphrase_sealer(b"correct horse", &salt, FAST)
            .unwrap()
            .open(b"aad", &sealed)
            .unwrap();
        assert_eq!(&opened[..], b"plain");
        let wrong = passphrase_sealer(b"wrong horse", &salt, FAST).unwrap();
        assert!(matches!(wrong.open(b"aad", &sealed), Err(Error::Decrypt)));
    }

    #[test]
    fn unreasonable_parameters_are_refused_before_any_work() {
        let huge = KdfParams {
            memory_kib: u32::MAX,
            ..FAST
        };
        assert!(matches!(
            passphrase_sealer(b"p", &random_salt(), huge),
            Err(Error::Kdf(_))
        ));
    }
}
