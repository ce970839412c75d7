//! 1Password `.1pux` exports (1Password Unencrypted Export): a zip holding `export.data`, a
//! JSON tree of accounts, vaults and items (and `files/` with attachments).
//!
//! Each vault's name becomes a title prefix (`Personal/GitHub`). An item's overview gives the
//! title and URLs; its login fields the username (designation `username`) and password; its
//! sections one field per section field, named by the field's title. Secret: the password,
//! concealed values, one-time-password seeds, credit card numbers, SSH private keys, and fields
//! whose name looks secret. Documents and files are skipped as attachments, password history
//! is counted, trashed items are skipped.

use super::{Error, Import, ImportedEntry, Kind, Position, Skip};
use serde::Deserialize;
use serde::de::IgnoredAny;
use serde_json::Value;
use std::io::Read;
use std::path::Path;

/// The largest `export.data` read (decompressed), against zip bombs.
const MAX_EXPORT_DATA: u64 = 512 * 1024 * 1024;

#[derive(Deserialize)]
struct ExportData {
    accounts: Option<Vec<Account>>,
}

#[derive(Deserialize)]
struct Account {
    vaults: Option<Vec<Vault>>,
}

#[derive(Deserialize)]
struct Vault {
    attrs: Option<VaultAttrs>,
    items: Option<Vec<Value>>,
}

#[derive(Deserialize)]
struct VaultAttrs {
    name: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Item {
    #[serde(default)]
    trashed: bool,
    state: Option<String>,
    overview: Option<Overview>,
    details: Option<Details>,
    file: Option<IgnoredAny>,
}

#[derive(Deserialize)]
struct Overview {
    title: Option<String>,
    url: Option<String>,
    urls: Option<Vec<Url>>,
    tags: Option<Vec<String>>,
}

#[derive(Deserialize)]
struct Url {
    url: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Details {
    login_fields: Option<Vec<Option<LoginField>>>,
    notes_plain: Option<String>,
    sections: Option<Vec<Option<Section>>>,
    password_history: Option<Vec<IgnoredAny>>,
    document_attributes: Option<IgnoredAny>,
    password: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct LoginField {
    value: Option<Value>,
    id: Option<String>,
    name: Option<String>,
    field_type: Option<String>,
    designation: Option<String>,
}

#[derive(Deserialize)]
struct Section {
    fields: Option<Vec<SectionField>>,
}

#[derive(Deserialize)]
struct SectionField {
    title: Option<String>,
    id: Option<String>,
    value: Option<Value>,
}

/// Reads `export.data` out of the zip.
fn export_data(file: &Path, bytes: &[u8]) -> Result<Vec<u8>, Error> {
    let mut zip = zip::ZipArchive::new(std::io::Cursor::new(bytes)).map_err(|e| {
        Error::file(
            file,
            format!("not a zip archive ({e}); a .1pux file is a zip holding export.data"),
        )
    })?;
    let names: Vec<String> = zip
        .file_names()
        .take(6)
        .filter_map(|n| n.ok().map(|n| n.into_owned()))
        .collect();
    let mut data = match zip.by_name("export.data") {
        Ok(f) => f,
        Err(zip::result::ZipError::FileNotFound) => {
            let found = if names.is_empty() {
                "it is empty".to_owned()
            } else {
                format!("it holds {}", names.join(", "))
            };
            return Err(Error::file(
                file,
                format!("not a 1Password export: the zip has no export.data ({found})"),
            ));
        }
        Err(e) => return Err(Error::file(file, format!("cannot read export.data: {e}"))),
    };
    if data.size() > MAX_EXPORT_DATA {
        return Err(Error::file(
            file,
            format!(
                "export.data is {} bytes, more than {MAX_EXPORT_DATA}",
                data.size()
            ),
        ));
    }
    let mut out = Vec::new();
    (&mut data)
        .take(MAX_EXPORT_DATA + 1)
        .read_to_end(&mut out)
        .map_err(|e| Error::file(file, format!("cannot read export.data: {e}")))?;
    Ok(out)
}

pub fn parse(file: &Path, bytes: &[u8]) -> Result<Import, Error> {
    let data = export_data(file, bytes)?;
    let export: ExportData = serde_json::from_slice(&data).map_err(|e| {
        let inner = Error::json(file, &e);
        Error::new(
            file,
            Position::Item(format!("export.data {}", inner.position)),
            inner.message,
        )
    })?;
    let mut out = Import::default();
    for (a, account) in export.accounts.into_iter().flatten().enumerate() {
        for (v, vault) in account.vaults.into_iter().flatten().enumerate() {
            let vault_name = vault.attrs.and_then(|a| a.name).unwrap_or_default();
            for (i, raw) in vault.items.into_iter().flatten().enumerate() {
                let at = format!(
                    "account {}, vault {} {vault_name:?}, item {}",
                    a + 1,
                    v + 1,
                    i + 1
                );
                // Older exports wrap each item as {"item": {...}}.
                let raw = match raw {
                    Value::Object(mut m) if m.len() == 1 && m.contains_key("item") => {
                        m.remove("item").unwrap_or_default()
                    }
                    other => other,
                };
                let item: Item = serde_json::from_value(raw).map_err(|e| {
                    Error::new(
                        file,
                        Position::Item(format!("export.data, {at}")),
                        e.to_string(),
                    )
                })?;
                read_item(item, &vault_name, at, &mut out);
            }
        }
    }
    Ok(out)
}

fn read_item(item: Item, vault: &str, at: String, out: &mut Import) {
    if item.file.is_some() {
        out.skipped.add(Skip::Attachment, 1);
    }
    if item.trashed || item.state.as_deref() == Some("deleted") {
        out.skipped.add(Skip::Trashed, 1);
        return;
    }
    let overview = item.overview.unwrap_or(Overview {
        title: None,
        url: None,
        urls: None,
        tags: None,
    });
    let title = overview.title.clone().unwrap_or_default();
    let mut e = ImportedEntry::new(Position::Item(format!("{at} {title:?}")), title);
    if !vault.is_empty() {
        e.folder = vec![vault.to_owned()];
    }
    let mut urls: Vec<String> = overview.url.into_iter().collect();
    for u in overview.urls.into_iter().flatten().filter_map(|u| u.url) {
        if !urls.contains(&u) {
            urls.push(u);
        }
    }
    urls.retain(|u| !u.trim().is_empty());
    e.set_url(urls.first().map(String::as_str));
    for (n, u) in urls.iter().enumerate().skip(1) {
        e.push(format!("url {}", n + 1), Some(u), Kind::Plain);
    }
    if let Some(d) = item.details {
        if d.document_attributes.is_some() {
            out.skipped.add(Skip::Attachment, 1);
        }
        out.skipped.add(
            Skip::PasswordHistory,
            d.password_history.as_ref().map_or(0, Vec::len),
        );
        e.push("password", d.password.as_deref(), Kind::Secret);
        for f in d.login_fields.into_iter().flatten().flatten() {
            let value = f.value.as_ref().and_then(text_of);
            match f.designation.as_deref() {
                Some("username") => e.set_username(value.as_deref()),
                Some("password") => e.push("password", value.as_deref(), Kind::Secret),
                _ => {
                    let name = f.name.or(f.id).unwrap_or_default();
                    let secret = f.field_type.as_deref() == Some("P");
                    e.push_named(&name, value.as_deref(), secret);
                }
            }
        }
        e.push("notes", d.notes_plain.as_deref(), Kind::Plain);
        for s in d.sections.into_iter().flatten().flatten() {
            for f in s.fields.into_iter().flatten() {
                let name = f
                    .title
                    .filter(|t| !t.is_empty())
                    .or(f.id)
                    .unwrap_or_default();
                section_field(&mut e, &name, f.value.as_ref(), out);
            }
        }
    }
    if let Some(tags) = overview.tags.filter(|t| !t.is_empty()) {
        e.push("tags", Some(&tags.join(", ")), Kind::Plain);
    }
    out.keep(e);
}

/// A section field's value: an object with one key saying its kind.
fn section_field(e: &mut ImportedEntry, name: &str, value: Option<&Value>, out: &mut Import) {
    let Some(Value::Object(v)) = value else {
        e.push_named(name, value.and_then(text_of).as_deref(), false);
        return;
    };
    for (kind, inner) in v {
        match kind.as_str() {
            "concealed" | "totp" | "creditCardNumber" => {
                e.push(name, text_of(inner).as_deref(), Kind::Secret);
            }
            "sshKey" => {
                let key = |k: &str| inner.get(k).and_then(text_of);
                let meta = |k: &str| {
                    inner
                        .get("metadata")
                        .and_then(|m| m.get(k))
                        .and_then(text_of)
                };
                e.push(name, key("privateKey").as_deref(), Kind::Secret);
                e.push(
                    format!("{name} public key"),
                    meta("publicKey").as_deref(),
                    Kind::Plain,
                );
            }
            "file" => out.skipped.add(Skip::Attachment, 1),
            "date" => e.push_named(name, inner.as_i64().and_then(date).as_deref(), false),
            "monthYear" => e.push_named(name, inner.as_i64().map(month_year).as_deref(), false),
            "address" => e.push_named(name, address(inner).as_deref(), false),
            "email" => {
                let addr = inner
                    .get("email_address")
                    .and_then(text_of)
                    .or_else(|| text_of(inner));
                e.push_named(name, addr.as_deref(), false);
            }
            _ => e.push_named(name, text_of(inner).as_deref(), false),
        }
    }
}

/// A JSON value as text: strings as they are, numbers and booleans printed, objects with an
/// `email_address` or `string` as that, anything else as JSON.
fn text_of(v: &Value) -> Option<String> {
    match v {
        Value::Null => None,
        Value::String(s) => Some(s.clone()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Number(n) => Some(n.to_string()),
        Value::Object(m) => ["email_address", "string"]
            .iter()
            .find_map(|k| m.get(*k).and_then(text_of))
            .or_else(|| Some(v.to_string())),
        Value::Array(_) => Some(v.to_string()),
    }
}

/// Unix seconds as `YYYY-MM-DD`.
fn date(secs: i64) -> Option<String> {
    time::OffsetDateTime::from_unix_timestamp(secs)
        .ok()
        .map(|t| t.date().to_string())
}

/// `202512` as `2025-12`.
fn month_year(n: i64) -> String {
    format!("{:04}-{:02}", n / 100, n % 100)
}

fn address(v: &Value) -> Option<String> {
    let part = |k: &str| v.get(k).and_then(Value::as_str).filter(|s| !s.is_empty());
    let parts: Vec<&str> = ["street", "city", "state", "zip", "country"]
        .iter()
        .filter_map(|k| part(k))
        .collect();
    (!parts.is_empty()).then(|| parts.join(", "))
}
