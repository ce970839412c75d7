//! Reading other password managers' export files (and the vault's own) into one model, and
//! preparing that model for the vault. The CLI's `import` command uses it; nothing here talks
//! HTTP, and the only IO is reading the file named ([`read_file`]).
//!
//! - One module per format: `bitwarden` (Bitwarden/Vaultwarden unencrypted JSON), `keepass`
//!   (KeePass 2 XML), `onepux` (1Password `.1pux`), `csv` (a header and a `--map`), `clavitor`
//!   (the vault's own export, plain or passphrase-encrypted, also written here).
//! - `secret`: the rule for which fields look secret (they go to the credential tier).
//! - `prepare`: imported entries made valid for the vault (names, lengths, duplicates) and
//!   turned into [`EntryDraft`](crate::vault::EntryDraft)s, the same validation the server runs.
//!
//! Invariant: a parser either returns every entry of the file or an [`Error`] naming the file
//! and the position; there is no partial result, so nothing is imported from a bad file.

pub mod bitwarden;
pub mod clavitor;
pub mod csv;
pub mod keepass;
pub mod onepux;
mod position;
mod prepare;
mod secret;

pub use position::{Position, line_column};
pub use prepare::{Prepared, SecretTier, prepare};
pub use secret::looks_secret;

use crate::vault::{Scope, Tier};
use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use zeroize::Zeroizing;

/// Largest file read: far beyond any real export, small enough to hold in memory.
pub const MAX_FILE_BYTES: u64 = 1024 * 1024 * 1024;

/// A problem with an import file: which file, where in it, and what.
#[derive(Debug, thiserror::Error)]
pub struct Error {
    pub file: PathBuf,
    pub position: Position,
    pub message: String,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.position {
            Position::File => write!(f, "{}: {}", self.file.display(), self.message),
            p => write!(f, "{}: {p}: {}", self.file.display(), self.message),
        }
    }
}

impl Error {
    pub fn new(file: &Path, position: Position, message: impl Into<String>) -> Self {
        Self {
            file: file.to_owned(),
            position,
            message: message.into(),
        }
    }

    /// An error about the file as a whole.
    pub fn file(file: &Path, message: impl Into<String>) -> Self {
        Self::new(file, Position::File, message)
    }

    /// A JSON parser's error at its line and column (serde_json counts both from 1).
    pub fn json(file: &Path, e: &serde_json::Error) -> Self {
        let what = match e.classify() {
            serde_json::error::Category::Eof => "the JSON ends too early (is the file cut short?)",
            serde_json::error::Category::Syntax => "not valid JSON",
            serde_json::error::Category::Data => "unexpected JSON",
            serde_json::error::Category::Io => "cannot read the JSON",
        };
        let detail = e.to_string();
        // serde_json appends " at line L column C"; the position is said once, up front.
        let detail = detail
            .rsplit_once(" at line ")
            .map_or(detail.as_str(), |(d, _)| d);
        Self::new(
            file,
            Position::At {
                line: e.line() as u64,
                column: e.column() as u64,
            },
            format!("{what}: {detail}"),
        )
    }
}

/// Reads the whole file, refusing what is not a regular file or is implausibly large.
pub fn read_file(path: &Path) -> Result<Vec<u8>, Error> {
    let meta =
        std::fs::metadata(path).map_err(|e| Error::file(path, format!("cannot read it: {e}")))?;
    if !meta.is_file() {
        return Err(Error::file(path, "not a regular file"));
    }
    if meta.len() > MAX_FILE_BYTES {
        return Err(Error::file(
            path,
            format!(
                "the file is {} bytes; an import reads at most {MAX_FILE_BYTES}",
                meta.len()
            ),
        ));
    }
    std::fs::read(path).map_err(|e| Error::file(path, format!("cannot read it: {e}")))
}

/// Where a field goes in the vault.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    /// Looks secret: the credential tier under the import's scope (or vault, if chosen).
    Secret,
    /// Anything else: the vault tier.
    Plain,
    /// Exactly this tier and scope (the vault's own export keeps them).
    Stored { tier: Tier, scope: Option<Scope> },
}

pub struct ImportedField {
    pub name: String,
    pub value: Zeroizing<String>,
    pub kind: Kind,
}

impl fmt::Debug for ImportedField {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ImportedField")
            .field("name", &self.name)
            .field("value", &"<redacted>")
            .field("kind", &self.kind)
            .finish()
    }
}

/// One item of the source, in the vault's terms but not yet made valid for it.
#[derive(Debug)]
pub struct ImportedEntry {
    /// Where the item is in the file, for messages.
    pub origin: Position,
    pub title: String,
    /// Folder, group or vault path, outermost first; becomes a title prefix (`Work/Email/…`).
    pub folder: Vec<String>,
    pub url: Option<String>,
    pub username: Option<String>,
    pub fields: Vec<ImportedField>,
}

impl ImportedEntry {
    pub fn new(origin: Position, title: impl Into<String>) -> Self {
        Self {
            origin,
            title: title.into(),
            folder: Vec::new(),
            url: None,
            username: None,
            fields: Vec::new(),
        }
    }

    /// Adds a field unless its value is empty (exports are full of empty slots).
    pub fn push(&mut self, name: impl Into<String>, value: Option<&str>, kind: Kind) {
        if let Some(v) = value.filter(|v| !v.is_empty()) {
            self.fields.push(ImportedField {
                name: name.into(),
                value: Zeroizing::new(v.to_owned()),
                kind,
            });
        }
    }

    /// Adds a field whose kind follows its name ([`looks_secret`]) or `secret`.
    pub fn push_named(&mut self, name: &str, value: Option<&str>, secret: bool) {
        let kind = if secret || looks_secret(name) {
            Kind::Secret
        } else {
            Kind::Plain
        };
        self.push(name, value, kind);
    }

    pub fn set_url(&mut self, url: Option<&str>) {
        self.url = url
            .map(str::trim)
            .filter(|u| !u.is_empty())
            .map(str::to_owned);
    }

    pub fn set_username(&mut self, username: Option<&str>) {
        self.username = username.filter(|u| !u.is_empty()).map(str::to_owned);
    }

    pub fn is_empty(&self) -> bool {
        self.title.trim().is_empty()
            && self.url.is_none()
            && self.username.is_none()
            && self.fields.is_empty()
    }
}

/// What was left out, and why. Counted, never silently dropped.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Skip {
    Attachment,
    PasswordHistory,
    Passkey,
    LinkedField,
    Trashed,
    EmptyItem,
    ValueTooLarge,
    TooManyFields,
}

impl Skip {
    /// What was skipped, for `n` of them.
    pub fn what(self, n: usize) -> &'static str {
        let one = n == 1;
        match self {
            Skip::Attachment if one => "attachment",
            Skip::Attachment => "attachments",
            Skip::PasswordHistory if one => "password history value",
            Skip::PasswordHistory => "password history values",
            Skip::Passkey if one => "passkey",
            Skip::Passkey => "passkeys",
            Skip::LinkedField if one => "linked custom field",
            Skip::LinkedField => "linked custom fields",
            Skip::Trashed if one => "item in the trash or recycle bin",
            Skip::Trashed => "items in the trash or recycle bin",
            Skip::EmptyItem if one => "empty item",
            Skip::EmptyItem => "empty items",
            Skip::ValueTooLarge if one => "field over 64 KiB",
            Skip::ValueTooLarge => "fields over 64 KiB",
            Skip::TooManyFields if one => "field beyond an entry's 64",
            Skip::TooManyFields => "fields beyond an entry's 64",
        }
    }

    /// Why, in a few words; a key for `--json`.
    pub fn key(self) -> &'static str {
        match self {
            Skip::Attachment => "attachment",
            Skip::PasswordHistory => "password_history",
            Skip::Passkey => "passkey",
            Skip::LinkedField => "linked_field",
            Skip::Trashed => "trashed",
            Skip::EmptyItem => "empty_item",
            Skip::ValueTooLarge => "value_too_large",
            Skip::TooManyFields => "too_many_fields",
        }
    }

    pub fn why(self) -> &'static str {
        match self {
            Skip::Attachment => "files are not imported; copy them by hand",
            Skip::PasswordHistory => "old passwords are not imported",
            Skip::Passkey => "passkeys are bound to the password manager that made them",
            Skip::LinkedField => "they only point at another field of the same item",
            Skip::Trashed => "deleted in the source",
            Skip::EmptyItem => "no title, URL, username or value",
            Skip::ValueTooLarge => "a value holds at most 64 KiB",
            Skip::TooManyFields => "an entry holds at most 64 fields",
        }
    }
}

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Skipped(BTreeMap<Skip, usize>);

impl Skipped {
    pub fn add(&mut self, what: Skip, n: usize) {
        if n > 0 {
            *self.0.entry(what).or_default() += n;
        }
    }

    pub fn count(&self, what: Skip) -> usize {
        self.0.get(&what).copied().unwrap_or(0)
    }

    pub fn iter(&self) -> impl Iterator<Item = (Skip, usize)> + '_ {
        self.0.iter().map(|(k, v)| (*k, *v))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn merge(&mut self, other: &Skipped) {
        for (k, v) in other.iter() {
            self.add(k, v);
        }
    }
}

/// A parsed file: every item in it, and what was left out.
#[derive(Debug, Default)]
pub struct Import {
    pub entries: Vec<ImportedEntry>,
    pub skipped: Skipped,
}

impl Import {
    /// Keeps `e` unless it is empty, which is counted instead.
    pub fn keep(&mut self, e: ImportedEntry) {
        if e.is_empty() {
            self.skipped.add(Skip::EmptyItem, 1);
        } else {
            self.entries.push(e);
        }
    }
}
