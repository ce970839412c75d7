//! The vault's own export file, written by `clavitor export` and read by `clavitor import
//! clavitor`. Format version 1, JSON:
//!
//! - plain (`--plaintext`): `{"clavitor_export":1,"exported_at":..,"entries":[{"title","url",
//!   "username","fields":[{"name","tier","scope","value"}]}]}`; identity values are the stored
//!   base64, as the server returns them.
//! - encrypted (the default): `{"clavitor_export":1,"encryption":{"kdf":"argon2id",
//!   "memory_kib","iterations","parallelism","salt","cipher":"aes-256-gcm"},"ciphertext":..}`,
//!   the ciphertext being base64 of nonce (12 bytes) || AES-256-GCM(the plain document) || tag,
//!   with the key argon2id derives from the passphrase and salt, and `clavitor-export/1` as
//!   associated data.
//!
//! Fields keep their tier and scope on the way back in.

use super::{Error, Import, ImportedEntry, Kind, Position};
use crate::crypto::{self, KdfParams, SALT_LEN, passphrase_sealer, random_salt};
use crate::vault::{Scope, Tier};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde::{Deserialize, Serialize};
use std::path::Path;
use zeroize::{Zeroize, Zeroizing};

pub const FORMAT_VERSION: u32 = 1;
const AAD: &[u8] = b"clavitor-export/1";
const KDF: &str = "argon2id";
const CIPHER: &str = "aes-256-gcm";

#[derive(Serialize, Deserialize)]
pub struct ExportField {
    pub name: String,
    pub tier: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    pub value: String,
}

impl Drop for ExportField {
    fn drop(&mut self) {
        self.value.zeroize();
    }
}

#[derive(Serialize, Deserialize)]
pub struct ExportEntry {
    pub title: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    #[serde(default)]
    pub fields: Vec<ExportField>,
}

/// The plain document: what `--plaintext` writes and what the ciphertext holds.
#[derive(Serialize, Deserialize)]
pub struct Document {
    pub clavitor_export: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exported_at: Option<String>,
    pub entries: Vec<ExportEntry>,
}

impl Document {
    pub fn new(exported_at: Option<String>, entries: Vec<ExportEntry>) -> Self {
        Self {
            clavitor_export: FORMAT_VERSION,
            exported_at,
            entries,
        }
    }

    /// The document as pretty JSON (in a buffer wiped on drop: it holds every value).
    pub fn to_json(&self) -> Zeroizing<Vec<u8>> {
        let mut out = serde_json::to_vec_pretty(self).expect("plain structs serialise");
        out.push(b'\n');
        Zeroizing::new(out)
    }

    /// The document sealed under `passphrase` with `params`, as the file's bytes.
    pub fn to_encrypted(
        &self,
        passphrase: &[u8],
        params: KdfParams,
    ) -> Result<Vec<u8>, crypto::Error> {
        let salt = random_salt();
        let sealed = passphrase_sealer(passphrase, &salt, params)?.seal(AAD, &self.to_json())?;
        let envelope = Envelope {
            clavitor_export: FORMAT_VERSION,
            encryption: Encryption {
                kdf: KDF.to_owned(),
                memory_kib: params.memory_kib,
                iterations: params.iterations,
                parallelism: params.parallelism,
                salt: STANDARD.encode(salt),
                cipher: CIPHER.to_owned(),
            },
            ciphertext: STANDARD.encode(sealed),
        };
        let mut out = serde_json::to_vec_pretty(&envelope).expect("plain structs serialise");
        out.push(b'\n');
        Ok(out)
    }

    /// Entries for the import, each field keeping its tier and scope.
    pub fn into_import(self, file: &Path) -> Result<Import, Error> {
        let mut out = Import::default();
        for (i, entry) in self.entries.iter().enumerate() {
            let origin = Position::Item(format!("entry {} {:?}", i + 1, entry.title));
            let mut e = ImportedEntry::new(origin.clone(), entry.title.clone());
            e.set_url(entry.url.as_deref());
            e.set_username(entry.username.as_deref());
            for f in &entry.fields {
                let bad = |m: String| {
                    Error::new(file, origin.clone(), format!("field {:?}: {m}", f.name))
                };
                let tier = Tier::parse(&f.tier).map_err(|err| bad(err.0))?;
                let scope = f
                    .scope
                    .as_deref()
                    .map(Scope::parse)
                    .transpose()
                    .map_err(|err| bad(err.0))?;
                e.push(f.name.clone(), Some(&f.value), Kind::Stored { tier, scope });
            }
            out.keep(e);
        }
        Ok(out)
    }
}

#[derive(Serialize, Deserialize)]
struct Encryption {
    kdf: String,
    memory_kib: u32,
    iterations: u32,
    parallelism: u32,
    salt: String,
    cipher: String,
}

#[derive(Serialize)]
struct Envelope {
    clavitor_export: u32,
    encryption: Encryption,
    ciphertext: String,
}

/// What a file holds before any passphrase: one shape for both forms.
#[derive(Deserialize)]
struct Head {
    clavitor_export: Option<u32>,
    encryption: Option<Encryption>,
    ciphertext: Option<String>,
    exported_at: Option<String>,
    entries: Option<Vec<ExportEntry>>,
}

/// An export file as read: plain, or waiting for its passphrase.
pub enum ExportFile {
    Plain(Document),
    Encrypted(Locked),
}

/// An encrypted export whose header has been checked.
pub struct Locked {
    params: KdfParams,
    salt: Vec<u8>,
    sealed: Vec<u8>,
}

impl Locked {
    /// Decrypts with `passphrase`; a wrong one (or an altered file) is an error saying so.
    pub fn open(&self, file: &Path, passphrase: &[u8]) -> Result<Document, Error> {
        let plain = passphrase_sealer(passphrase, &self.salt, self.params)
            .and_then(|s| s.open(AAD, &self.sealed))
            .map_err(|e| match e {
                crypto::Error::Decrypt | crypto::Error::Truncated => Error::file(
                    file,
                    "cannot decrypt: wrong passphrase, or the file was altered",
                ),
                other => Error::file(file, other.to_string()),
            })?;
        let doc: Document = serde_json::from_slice(&plain).map_err(|e| {
            let inner = Error::json(file, &e);
            Error::new(
                file,
                Position::Item(format!("decrypted document, {}", inner.position)),
                inner.message,
            )
        })?;
        check_version(file, Some(doc.clavitor_export))?;
        Ok(doc)
    }
}

fn check_version(file: &Path, v: Option<u32>) -> Result<(), Error> {
    match v {
        Some(FORMAT_VERSION) => Ok(()),
        Some(n) => Err(Error::file(
            file,
            format!(
                "export format {n} is newer than this clavitor reads ({FORMAT_VERSION}); upgrade clavitor"
            ),
        )),
        None => Err(Error::file(
            file,
            "not a Clavitor export: no \"clavitor_export\" version in it",
        )),
    }
}

/// Reads an export file's JSON, without decrypting.
pub fn read(file: &Path, bytes: &[u8]) -> Result<ExportFile, Error> {
    let head: Head = serde_json::from_slice(bytes).map_err(|e| Error::json(file, &e))?;
    check_version(file, head.clavitor_export)?;
    match (head.encryption, head.ciphertext, head.entries) {
        (Some(enc), Some(ct), None) => {
            if enc.kdf != KDF || enc.cipher != CIPHER {
                return Err(Error::file(
                    file,
                    format!(
                        "encrypted with {} and {}; this clavitor reads {KDF} and {CIPHER}",
                        enc.kdf, enc.cipher
                    ),
                ));
            }
            let b64 = |what: &str, s: &str| {
                STANDARD
                    .decode(s)
                    .map_err(|_| Error::file(file, format!("the {what} is not base64")))
            };
            let salt = b64("salt", &enc.salt)?;
            if salt.len() < SALT_LEN {
                return Err(Error::file(file, "the salt is too short"));
            }
            Ok(ExportFile::Encrypted(Locked {
                params: KdfParams {
                    memory_kib: enc.memory_kib,
                    iterations: enc.iterations,
                    parallelism: enc.parallelism,
                },
                salt,
                sealed: b64("ciphertext", &ct)?,
            }))
        }
        (None, None, Some(entries)) => Ok(ExportFile::Plain(Document {
            clavitor_export: FORMAT_VERSION,
            exported_at: head.exported_at,
            entries,
        })),
        _ => Err(Error::file(
            file,
            "not a Clavitor export: expected either \"entries\" or \"encryption\" with \"ciphertext\"",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FAST: KdfParams = KdfParams {
        memory_kib: 64,
        iterations: 1,
        parallelism: 1,
    };

    fn doc() -> Document {
        Document::new(
            Some("2026-12-01T00:00:00Z".into()),
            vec![ExportEntry {
                title: "db".into(),
                url: None,
                username: Some("app".into()),
                fields: vec![ExportField {
                    name: "password".into(),
                    tier: "credential".into(),
                    scope: Some("deploy".into()),
                    value: "hunter2".into(),
                }],
            }],
        )
    }

    #[test]
    fn encrypted_round_trip_and_wrong_passphrase() {
        let f = Path::new("x.json");
        let bytes = doc().to_encrypted(b"pass phrase", FAST).unwrap();
        assert!(!String::from_utf8_lossy(&bytes).contains("hunter2"));
        let ExportFile::Encrypted(locked) = read(f, &bytes).unwrap() else {
            panic!("encrypted");
        };
        let err = locked.open(f, b"wrong").err().unwrap();
        assert!(err.to_string().contains("wrong passphrase"), "{err}");
        let back = locked.open(f, b"pass phrase").unwrap();
        assert_eq!(back.entries[0].fields[0].value, "hunter2");
        let import = back.into_import(f).unwrap();
        assert_eq!(
            import.entries[0].fields[0].kind,
            Kind::Stored {
                tier: Tier::Credential,
                scope: Some(Scope::parse("deploy").unwrap())
            }
        );
    }

    #[test]
    fn plain_round_trip_and_versions() {
        let f = Path::new("x.json");
        let ExportFile::Plain(d) = read(f, &doc().to_json()).unwrap() else {
            panic!("plain");
        };
        assert_eq!(d.entries[0].title, "db");
        let err = read(f, br#"{"clavitor_export":2,"entries":[]}"#)
            .err()
            .unwrap();
        assert!(err.to_string().contains("newer"), "{err}");
        let err = read(f, br#"{"entries":[]}"#).err().unwrap();
        assert!(err.to_string().contains("not a Clavitor export"), "{err}");
    }
}
