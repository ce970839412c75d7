//! Bitwarden and Vaultwarden unencrypted JSON exports (`.json`, not `.json (Encrypted)`).
//!
//! Items: logins (username, password, TOTP, URIs: the first is the entry's URL, the others
//! `url 2`, `url 3`...), secure notes, cards, identities, SSH keys, and custom fields (text,
//! hidden, boolean; linked ones are skipped). Folders (or, in organisation exports, the first
//! collection) become a title prefix: `Work/GitHub`. Unknown keys are ignored: the format
//! grows.
//!
//! Secret: the password, TOTP seed, card number and code, SSN, passport and licence numbers,
//! SSH private key, hidden custom fields, and custom fields whose name looks secret.

use super::{Error, Import, ImportedEntry, Kind, Position, Skip};
use serde::Deserialize;
use serde::de::IgnoredAny;
use serde_json::Value;
use std::collections::HashMap;
use std::path::Path;

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Export {
    #[serde(default)]
    encrypted: bool,
    #[serde(default)]
    password_protected: bool,
    #[serde(default)]
    folders: Vec<Folder>,
    #[serde(default)]
    collections: Vec<Folder>,
    items: Option<Vec<Item>>,
}

#[derive(Deserialize)]
struct Folder {
    id: Option<String>,
    name: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Item {
    folder_id: Option<String>,
    collection_ids: Option<Vec<String>>,
    name: Option<String>,
    notes: Option<String>,
    fields: Option<Vec<Field>>,
    login: Option<Login>,
    card: Option<Card>,
    identity: Option<Identity>,
    ssh_key: Option<SshKey>,
    password_history: Option<Vec<IgnoredAny>>,
    attachments: Option<Vec<IgnoredAny>>,
    deleted_date: Option<String>,
}

#[derive(Deserialize)]
struct Field {
    name: Option<String>,
    value: Option<Value>,
    #[serde(rename = "type")]
    kind: Option<i64>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Login {
    uris: Option<Vec<Uri>>,
    username: Option<String>,
    password: Option<String>,
    totp: Option<String>,
    fido2_credentials: Option<Vec<IgnoredAny>>,
}

#[derive(Deserialize)]
struct Uri {
    uri: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Card {
    cardholder_name: Option<String>,
    brand: Option<String>,
    number: Option<String>,
    exp_month: Option<String>,
    exp_year: Option<String>,
    code: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Identity {
    title: Option<String>,
    first_name: Option<String>,
    middle_name: Option<String>,
    last_name: Option<String>,
    address1: Option<String>,
    address2: Option<String>,
    address3: Option<String>,
    city: Option<String>,
    state: Option<String>,
    postal_code: Option<String>,
    country: Option<String>,
    company: Option<String>,
    email: Option<String>,
    phone: Option<String>,
    ssn: Option<String>,
    username: Option<String>,
    passport_number: Option<String>,
    license_number: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct SshKey {
    private_key: Option<String>,
    public_key: Option<String>,
    key_fingerprint: Option<String>,
}

const CUSTOM_HIDDEN: i64 = 1;
const CUSTOM_LINKED: i64 = 3;

/// A custom field's value as text: exports write strings, but be lenient with JSON scalars.
fn scalar(v: Option<&Value>) -> Option<String> {
    match v? {
        Value::String(s) => Some(s.clone()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

pub fn parse(file: &Path, bytes: &[u8]) -> Result<Import, Error> {
    let export: Export = serde_json::from_slice(bytes).map_err(|e| {
        let mut err = Error::json(file, &e);
        if e.is_data() {
            err.message = format!("not a Bitwarden JSON export ({})", err.message);
        }
        err
    })?;
    if export.encrypted || export.password_protected {
        return Err(Error::file(
            file,
            "this is an encrypted Bitwarden export, which only Bitwarden can open. Fix: export again choosing the file format \".json\", not \".json (Encrypted)\"",
        ));
    }
    let Some(items) = export.items else {
        return Err(Error::file(
            file,
            "no \"items\" list: not a Bitwarden JSON export",
        ));
    };
    let names = |list: &[Folder]| -> HashMap<String, String> {
        list.iter()
            .filter_map(|f| Some((f.id.clone()?, f.name.clone()?)))
            .collect()
    };
    let folders = names(&export.folders);
    let collections = names(&export.collections);

    let mut out = Import::default();
    for (i, item) in items.into_iter().enumerate() {
        let title = item.name.clone().unwrap_or_default();
        let origin = Position::Item(format!("item {} {title:?}", i + 1));
        out.skipped.add(
            Skip::Attachment,
            item.attachments.as_ref().map_or(0, Vec::len),
        );
        if item.deleted_date.is_some() {
            out.skipped.add(Skip::Trashed, 1);
            continue;
        }
        out.skipped.add(
            Skip::PasswordHistory,
            item.password_history.as_ref().map_or(0, Vec::len),
        );
        let mut e = ImportedEntry::new(origin, title);
        let folder = item
            .folder_id
            .as_ref()
            .and_then(|id| folders.get(id))
            .or_else(|| {
                item.collection_ids
                    .iter()
                    .flatten()
                    .find_map(|id| collections.get(id))
            });
        if let Some(f) = folder {
            e.folder = vec![f.clone()];
        }
        read_typed(&item, &mut e, &mut out);
        e.push("notes", item.notes.as_deref(), Kind::Plain);
        for f in item.fields.iter().flatten() {
            let name = f.name.clone().unwrap_or_default();
            match f.kind.unwrap_or(0) {
                CUSTOM_LINKED => out.skipped.add(Skip::LinkedField, 1),
                kind => e.push_named(
                    &name,
                    scalar(f.value.as_ref()).as_deref(),
                    kind == CUSTOM_HIDDEN,
                ),
            }
        }
        out.keep(e);
    }
    Ok(out)
}

/// The item type's own fields (login, card, identity, SSH key; a secure note has none), told
/// apart by which object is present rather than by the `type` number.
fn read_typed(item: &Item, e: &mut ImportedEntry, out: &mut Import) {
    if let Some(l) = &item.login {
        e.set_username(l.username.as_deref());
        e.push("password", l.password.as_deref(), Kind::Secret);
        e.push("totp", l.totp.as_deref(), Kind::Secret);
        let uris: Vec<&str> = l
            .uris
            .iter()
            .flatten()
            .filter_map(|u| u.uri.as_deref())
            .filter(|u| !u.trim().is_empty())
            .collect();
        e.set_url(uris.first().copied());
        for (n, uri) in uris.iter().enumerate().skip(1) {
            e.push(format!("url {}", n + 1), Some(uri), Kind::Plain);
        }
        out.skipped.add(
            Skip::Passkey,
            l.fido2_credentials.as_ref().map_or(0, Vec::len),
        );
    }
    if let Some(c) = &item.card {
        e.push("cardholder", c.cardholder_name.as_deref(), Kind::Plain);
        e.push("brand", c.brand.as_deref(), Kind::Plain);
        e.push("number", c.number.as_deref(), Kind::Secret);
        e.push("exp_month", c.exp_month.as_deref(), Kind::Plain);
        e.push("exp_year", c.exp_year.as_deref(), Kind::Plain);
        e.push("code", c.code.as_deref(), Kind::Secret);
    }
    if let Some(id) = &item.identity {
        if e.username.is_none() {
            e.set_username(id.username.as_deref());
        }
        for (name, value) in [
            ("title", &id.title),
            ("first_name", &id.first_name),
            ("middle_name", &id.middle_name),
            ("last_name", &id.last_name),
            ("company", &id.company),
            ("email", &id.email),
            ("phone", &id.phone),
            ("address1", &id.address1),
            ("address2", &id.address2),
            ("address3", &id.address3),
            ("city", &id.city),
            ("state", &id.state),
            ("postal_code", &id.postal_code),
            ("country", &id.country),
        ] {
            e.push(name, value.as_deref(), Kind::Plain);
        }
        e.push("ssn", id.ssn.as_deref(), Kind::Secret);
        e.push(
            "passport_number",
            id.passport_number.as_deref(),
            Kind::Secret,
        );
        e.push("license_number", id.license_number.as_deref(), Kind::Secret);
    }
    if let Some(k) = &item.ssh_key {
        e.push("private_key", k.private_key.as_deref(), Kind::Secret);
        e.push("public_key", k.public_key.as_deref(), Kind::Plain);
        e.push("fingerprint", k.key_fingerprint.as_deref(), Kind::Plain);
    }
}
