//! Associated data: binds each ciphertext to where it belongs, so a blob copied to another
//! field, entry or agent fails to decrypt. NUL separators keep the parts unambiguous
//! (names cannot contain NUL; the domain layer rejects control characters).

pub(super) fn join(kind: &str, parts: &[&str]) -> Vec<u8> {
    let mut out = Vec::with_capacity(16 + parts.iter().map(|p| p.len() + 1).sum::<usize>());
    out.extend_from_slice(b"clavitor/v1/");
    out.extend_from_slice(kind.as_bytes());
    for p in parts {
        out.push(0);
        out.extend_from_slice(p.as_bytes());
    }
    out
}

pub fn field_aad(entry_id: &str, field_name: &str) -> Vec<u8> {
    join("field", &[entry_id, field_name])
}

/// A field's associated data with its agent policy (`agent_access`, `allowed_hosts`). A field
/// with the default policy (`read`, no hosts) keeps [`field_aad`], so every field sealed before
/// policies existed opens as it did; any other policy is bound in as well, so editing either
/// column in the database (a `use` field turned `read`, a host added) makes the field fail to
/// open instead of leaking its value.
pub fn field_policy_aad<S: AsRef<str>>(
    entry_id: &str,
    field_name: &str,
    agent_access: &str,
    allowed_hosts: &[S],
) -> Vec<u8> {
    if agent_access == "read" && allowed_hosts.is_empty() {
        return field_aad(entry_id, field_name);
    }
    let mut parts = vec![entry_id, field_name, agent_access];
    parts.extend(allowed_hosts.iter().map(AsRef::as_ref));
    join("field-policy", &parts)
}

pub fn entry_meta_aad(entry_id: &str) -> Vec<u8> {
    join("entry-meta", &[entry_id])
}

pub fn scope_key_aad(scope: &str, agent_id: &str) -> Vec<u8> {
    join("scope-key", &[scope, agent_id])
}

/// The master-key check value: sealed with the vault key at `init`, opened at every start.
pub fn key_check_aad() -> Vec<u8> {
    join("key-check", &[])
}

/// A principal's sealed private key belongs to that principal's row only.
pub fn private_key_aad(principal_id: &str) -> Vec<u8> {
    join("private-key", &[principal_id])
}
