//! Imported entries made valid for the vault and turned into drafts, through the same
//! `parse` functions the server uses, so the bulk request cannot fail validation.
//!
//! What is adjusted, and said in the notes: control characters in names become spaces, `/` in
//! field names becomes `-` (references use it as the separator), names are cut to the vault's
//! lengths, duplicate field names get " 2", " 3"... Values over 64 KiB and fields past an
//! entry's 64 are skipped and counted.

use super::{Error, ImportedEntry, Kind, Skip, Skipped};
use crate::vault::{EntryDraft, FieldDraft, MAX_FIELDS, MAX_VALUE_BYTES, RawField, Scope, Tier};
use std::collections::HashSet;
use std::path::Path;
use zeroize::Zeroizing;

const MAX_TITLE_CHARS: usize = 256;
const MAX_FIELD_NAME_CHARS: usize = 128;
const MAX_TEXT_CHARS: usize = 2048;
/// How many adjustment notes are kept word for word; the rest are counted.
const MAX_NOTES: usize = 20;

/// Where fields that look secret go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretTier {
    /// The credential tier under this scope: only tokens granting it can read them.
    Credential(Scope),
    /// The vault tier, like everything else (`--tier vault`).
    Vault,
}

/// Entries ready to send, with what was skipped or adjusted on the way.
#[derive(Debug, Default)]
pub struct Prepared {
    pub drafts: Vec<EntryDraft>,
    pub skipped: Skipped,
    /// Adjustments, at most [`MAX_NOTES`] of them word for word.
    pub notes: Vec<String>,
    /// Adjustments beyond those in `notes`.
    pub more_notes: usize,
}

impl Prepared {
    fn note(&mut self, text: String) {
        if self.notes.len() < MAX_NOTES {
            self.notes.push(text);
        } else {
            self.more_notes += 1;
        }
    }

    /// How many fields go to each tier.
    pub fn tier_counts(&self) -> (usize, usize, usize) {
        let mut counts = (0, 0, 0);
        for f in self.drafts.iter().flat_map(|d| &d.fields) {
            match f.tier {
                Tier::Vault => counts.0 += 1,
                Tier::Credential => counts.1 += 1,
                Tier::Identity => counts.2 += 1,
            }
        }
        counts
    }
}

/// Replaces control characters with spaces and trims.
fn clean(s: &str) -> String {
    let replaced: String = s
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    replaced.trim().to_owned()
}

fn cut(s: &str, max: usize) -> String {
    s.chars().take(max).collect()
}

fn title_of(e: &ImportedEntry) -> String {
    let mut title = clean(&e.title);
    if title.is_empty() {
        title = e
            .url
            .as_deref()
            .or(e.username.as_deref())
            .map(clean)
            .filter(|t| !t.is_empty())
            .unwrap_or_else(|| "untitled".to_owned());
    }
    let folder: Vec<String> = e
        .folder
        .iter()
        .map(|f| clean(f))
        .filter(|f| !f.is_empty())
        .collect();
    if !folder.is_empty() {
        title = format!("{}/{title}", folder.join("/"));
    }
    cut(&title, MAX_TITLE_CHARS)
}

fn field_name(raw: &str) -> String {
    let name = clean(raw).replace('/', "-");
    let name = if name.is_empty() {
        "field".to_owned()
    } else {
        name
    };
    cut(&name, MAX_FIELD_NAME_CHARS)
}

/// `name`, or `name 2`, `name 3`... whichever is free.
fn unique(name: String, taken: &HashSet<String>) -> String {
    if !taken.contains(&name) {
        return name;
    }
    (2..)
        .map(|n| {
            let suffix = format!(" {n}");
            let base = cut(&name, MAX_FIELD_NAME_CHARS - suffix.chars().count());
            format!("{base}{suffix}")
        })
        .find(|candidate| !taken.contains(candidate))
        .expect("an unbounded range has a free name")
}

/// Makes every entry valid for the vault and places each field in its tier.
pub fn prepare(
    file: &Path,
    entries: Vec<ImportedEntry>,
    secrets: &SecretTier,
) -> Result<Prepared, Error> {
    let mut out = Prepared {
        drafts: Vec::with_capacity(entries.len()),
        ..Prepared::default()
    };
    for e in entries {
        let title = title_of(&e);
        let mut taken = HashSet::new();
        let mut fields = Vec::with_capacity(e.fields.len().min(MAX_FIELDS));
        for f in e.fields {
            if f.value.len() > MAX_VALUE_BYTES {
                out.skipped.add(Skip::ValueTooLarge, 1);
                out.note(format!(
                    "{title:?}: field {:?} skipped: its value is {} bytes, over the vault's {MAX_VALUE_BYTES}",
                    f.name,
                    f.value.len()
                ));
                continue;
            }
            if fields.len() == MAX_FIELDS {
                out.skipped.add(Skip::TooManyFields, 1);
                continue;
            }
            let name = unique(field_name(&f.name), &taken);
            if name != f.name {
                out.note(format!("{title:?}: field {:?} renamed to {name:?}", f.name));
            }
            let (tier, scope) = match (&f.kind, secrets) {
                (Kind::Secret, SecretTier::Credential(s)) => (Tier::Credential, Some(s.clone())),
                (Kind::Secret | Kind::Plain, _) => (Tier::Vault, None),
                (Kind::Stored { tier, scope }, _) => (*tier, scope.clone()),
            };
            let draft = FieldDraft::parse(RawField {
                name: &name,
                value: Zeroizing::new(f.value.to_string()),
                tier: Some(tier.as_str()),
                scope: scope.as_ref().map(Scope::as_str),
            })
            .map_err(|err| Error::new(file, e.origin.clone(), err.0))?;
            taken.insert(name);
            fields.push(draft);
        }
        let text = |v: Option<String>, what: &str, out: &mut Prepared| {
            v.map(|v| {
                if v.chars().count() > MAX_TEXT_CHARS {
                    out.note(format!(
                        "{title:?}: {what} cut to {MAX_TEXT_CHARS} characters"
                    ));
                    cut(&v, MAX_TEXT_CHARS)
                } else {
                    v
                }
            })
        };
        let url = text(e.url, "URL", &mut out);
        let username = text(e.username, "username", &mut out);
        let draft = EntryDraft::parse(&title, url.as_deref(), username.as_deref(), fields)
            .map_err(|err| Error::new(file, e.origin.clone(), err.0))?;
        out.drafts.push(draft);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::import::Position;

    fn entry(title: &str) -> ImportedEntry {
        ImportedEntry::new(Position::Item("test".into()), title)
    }

    #[test]
    fn names_are_made_valid_and_unique() {
        let mut e = entry("  Mail\u{7}box ");
        e.folder = vec!["Work".into(), "Team\nA".into()];
        e.push("a/b", Some("1"), Kind::Plain);
        e.push("a-b", Some("2"), Kind::Plain);
        e.push("", Some("3"), Kind::Plain);
        e.push("n".repeat(200), Some("4"), Kind::Plain);
        let p = prepare(Path::new("f"), vec![e], &SecretTier::Vault).unwrap();
        let d = &p.drafts[0];
        assert_eq!(d.title, "Work/Team A/Mail box");
        let names: Vec<&str> = d.fields.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(names[..3], ["a-b", "a-b 2", "field"]);
        assert_eq!(names[3].chars().count(), 128);
        assert!(!p.notes.is_empty());
    }

    #[test]
    fn secrets_go_to_the_chosen_tier() {
        let mut e = entry("x");
        e.push("password", Some("pw"), Kind::Secret);
        e.push("user", Some("u"), Kind::Plain);
        let scope = Scope::parse("imported").unwrap();
        let p = prepare(Path::new("f"), vec![e], &SecretTier::Credential(scope)).unwrap();
        let f = &p.drafts[0].fields;
        assert_eq!(f[0].tier, Tier::Credential);
        assert_eq!(f[0].scope.as_ref().unwrap().as_str(), "imported");
        assert_eq!(f[1].tier, Tier::Vault);
        assert_eq!(p.tier_counts(), (1, 1, 0));
    }

    #[test]
    fn oversized_values_and_extra_fields_are_skipped_and_counted() {
        let mut e = entry("");
        e.set_url(Some("https://example.com"));
        e.push("big", Some(&"x".repeat(MAX_VALUE_BYTES + 1)), Kind::Plain);
        for i in 0..70 {
            e.push(format!("f{i}"), Some("v"), Kind::Plain);
        }
        let p = prepare(Path::new("f"), vec![e], &SecretTier::Vault).unwrap();
        assert_eq!(p.drafts[0].title, "https://example.com");
        assert_eq!(p.drafts[0].fields.len(), MAX_FIELDS);
        assert_eq!(p.skipped.count(Skip::ValueTooLarge), 1);
        assert_eq!(p.skipped.count(Skip::TooManyFields), 70 - MAX_FIELDS);
    }

    #[test]
    fn a_bad_stored_value_names_the_entry() {
        let mut e = ImportedEntry::new(Position::Item("entry 7 \"x\"".into()), "x");
        e.push(
            "blob",
            Some("not base64!"),
            Kind::Stored {
                tier: Tier::Identity,
                scope: None,
            },
        );
        let err = prepare(Path::new("f.json"), vec![e], &SecretTier::Vault).unwrap_err();
        assert!(
            err.to_string().starts_with("f.json: entry 7 \"x\": "),
            "{err}"
        );
    }
}
