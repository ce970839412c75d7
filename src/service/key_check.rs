//! Whether `master.key` belongs to this vault. A vault started with another key answers 500 on
//! every sealed read and accepts writes no one can read with the right key, so the start-up
//! must stop instead. A value sealed with the vault key at `init` is opened at every start.

use super::Error;
use crate::crypto::{MasterKey, entry_meta_aad, key_check_aad};
use crate::store::Store;
use crate::store::settings::{self, KEY_CHECK};

const PLAINTEXT: &[u8] = b"clavitor/v1 master key check";
/// How many entries a vault made before the check value existed is checked against; any one
/// that opens proves the key (the wrong key opens none).
const SAMPLE: usize = 16;

/// Seals the check value into a new vault.
pub async fn seal_key_check(store: &Store, master: &MasterKey) -> Result<(), Error> {
    let sealed = master.vault_sealer().seal(&key_check_aad(), PLAINTEXT)?;
    store
        .write(move |c| settings::put(c, KEY_CHECK, &sealed).map_err(Error::from))
        .await
}

/// Whether `master` is this vault's key. A vault without a check value (made by an older
/// version) is checked against its sealed entry metadata, and gets the check value once the
/// key is proven (or when it holds no entry, so nothing can be written under a wrong key
/// without being caught later).
pub async fn check_master_key(store: &Store, master: &MasterKey) -> Result<bool, Error> {
    let sealer = master.vault_sealer();
    let stored = store
        .read(|c| settings::get(c, KEY_CHECK).map_err(Error::from))
        .await?;
    if let Some(sealed) = stored {
        return Ok(sealer
            .open(&key_check_aad(), &sealed)
            .is_ok_and(|p| p.as_slice() == PLAINTEXT));
    }
    let sample = store
        .read(|c| settings::sample_entry_meta(c, SAMPLE).map_err(Error::from))
        .await?;
    let proven = sample.is_empty()
        || sample
            .iter()
            .any(|(id, meta)| sealer.open(&entry_meta_aad(id), meta).is_ok());
    if proven {
        seal_key_check(store, master).await?;
    }
    Ok(proven)
}
