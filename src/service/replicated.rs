//! Rows that arrive from another POP, checked against this vault's key before they are
//! applied: a row this vault cannot open would make every listing fail.

use super::Vault;
use crate::crypto::{entry_meta_aad, field_aad};
use crate::vault::Tier;

impl Vault {
    /// Whether entry `id`'s sealed metadata, and every field sealed under the vault key (the
    /// vault and identity tiers), open with this vault's key. Credential fields are sealed
    /// under scope keys the server does not hold, and are not checked. Returns what failed,
    /// never a value.
    pub fn check_replicated_entry<'a>(
        &self,
        id: &str,
        meta: &[u8],
        fields: impl IntoIterator<Item = (&'a str, Tier, &'a [u8])>,
    ) -> Result<(), String> {
        if self.sealer.open(&entry_meta_aad(id), meta).is_err() {
            return Err(
                "meta does not open with this vault's key (is it the primary's master key, and the entry's own row?)"
                    .to_owned(),
            );
        }
        for (name, tier, ciphertext) in fields {
            if matches!(tier, Tier::Vault | Tier::Identity)
                && self.sealer.open(&field_aad(id, name), ciphertext).is_err()
            {
                return Err(format!(
                    "field {name:?} does not open with this vault's key"
                ));
            }
        }
        Ok(())
    }
}
