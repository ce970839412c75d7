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
