//! Rows that arrive from another POP, checked against this vault's key before they are
//! applied: a row this vault cannot open would make every listing fail.

use super::Vault;
use crate::crypto::{entry_meta_aad, field_policy_aad};
use crate::vault::Tier;

/// A field of a replicated entry row, as it would be stored.
pub struct ReplicatedField<'a> {
    pub name: &'a str,
    pub tier: Tier,
    pub agent_access: &'a str,
    pub allowed_hosts: &'a [String],
    pub ciphertext: &'a [u8],
}

impl Vault {
    /// Whether entry `id`'s sealed metadata, and every field sealed under the vault key (the
    /// vault and identity tiers), open with this vault's key. Credential fields are sealed
    /// under scope keys the server does not hold, and are not checked. Each field comes with
    /// its policy (`agent_access`, `allowed_hosts`), bound into its associated data. Returns
    /// what failed, never a value.
    pub fn check_replicated_entry<'a>(
        &self,
        id: &str,
        meta: &[u8],
        fields: impl IntoIterator<Item = ReplicatedField<'a>>,
    ) -> Result<(), String> {
        if self.sealer.open(&entry_meta_aad(id), meta).is_err() {
            return Err(
                "meta does not open with this vault's key (is it the primary's master key, and the entry's own row?)"
                    .to_owned(),
            );
        }
        for ReplicatedField {
            name,
            tier,
            agent_access,
            allowed_hosts,
            ciphertext,
        } in fields
        {
            let aad = field_policy_aad(id, name, agent_access, allowed_hosts);
            if matches!(tier, Tier::Vault | Tier::Identity)
                && self.sealer.open(&aad, ciphertext).is_err()
            {
                return Err(format!(
                    "field {name:?} does not open with this vault's key"
                ));
            }
        }
        Ok(())
    }
}
