//! `clavitor export --out FILE`: every entry the token can see, every value read through its
//! own field request (the only way a value leaves the server), written in the vault's own
//! format ([`crate::import::clavitor`]): encrypted with a passphrase unless `--plaintext`.
//! The file is written private (0600) beside its final name and renamed over it, so a reader
//! never sees half an export.

use super::ClientOpts;
use super::client::Client;
use super::commands::percent_encode;
use super::import::progress_bar;
use crate::crypto::KdfParams;
use crate::files;
use crate::import::clavitor::{Document, ExportEntry, ExportField};
use anyhow::{Context, Result, bail};
use clap::Args;
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use zeroize::Zeroizing;

/// Shortest passphrase accepted for a new export.
const MIN_PASSPHRASE_CHARS: usize = 8;

#[derive(Debug, Args)]
pub struct ExportArgs {
    /// Where to write the export (mode 0600; an existing file is replaced atomically).
    #[arg(long, value_name = "FILE")]
    out: PathBuf,
    /// Write every value in clear text instead of encrypting the file with a passphrase.
    #[arg(long)]
    plaintext: bool,
    /// Read the passphrase from FILE (mode 0600) instead of asking twice on the terminal.
    #[arg(long, value_name = "FILE", conflicts_with = "plaintext")]
    passphrase_file: Option<PathBuf>,
    #[command(flatten)]
    opts: ClientOpts,
}

/// A passphrase file: private (0600), UTF-8, one line (a trailing newline is not part of it).
pub(super) fn read_passphrase_file(path: &Path) -> Result<Zeroizing<String>> {
    let raw = files::read_private(path)?;
    let text = std::str::from_utf8(&raw)
        .with_context(|| format!("{}: the passphrase is not UTF-8 text", path.display()))?;
    let text = text
        .strip_suffix('\n')
        .map(|t| t.strip_suffix('\r').unwrap_or(t))
        .unwrap_or(text);
    if text.is_empty() {
        bail!("{} is empty; it should hold the passphrase", path.display());
    }
    Ok(Zeroizing::new(text.to_owned()))
}

fn new_passphrase(file: Option<&Path>) -> Result<Zeroizing<String>> {
    let p = match file {
        Some(f) => read_passphrase_file(f)?,
        None => {
            let no_tty = |e: std::io::Error| {
                anyhow::anyhow!(
                    "cannot ask for a passphrase: no terminal ({e}). Fix: pass --passphrase-file FILE (mode 0600), or --plaintext"
                )
            };
            let first = Zeroizing::new(
                rpassword::prompt_password("Passphrase for the export: ").map_err(no_tty)?,
            );
            let second =
                Zeroizing::new(rpassword::prompt_password("The same again: ").map_err(no_tty)?);
            if first != second {
                bail!("the two passphrases differ; nothing was exported");
            }
            first
        }
    };
    if p.chars().count() < MIN_PASSPHRASE_CHARS {
        bail!(
            "the passphrase is shorter than {MIN_PASSPHRASE_CHARS} characters; nothing was exported"
        );
    }
    Ok(p)
}

/// A string member of a listed entry, if present.
fn text(v: &Value, key: &str) -> Option<String> {
    v[key].as_str().map(str::to_owned)
}

/// Every entry with every value, one field request per value.
fn collect(c: &Client) -> Result<Vec<ExportEntry>> {
    let list = c.get("/v1/entries")?;
    let listed = list["entries"].as_array().cloned().unwrap_or_default();
    let fields: usize = listed
        .iter()
        .map(|e| e["fields"].as_array().map_or(0, Vec::len))
        .sum();
    let bar = progress_bar(fields, "reading");
    let mut out = Vec::with_capacity(listed.len());
    for e in &listed {
        let id = e["id"].as_str().context("a listed entry without an id")?;
        let mut fields = Vec::new();
        for f in e["fields"].as_array().into_iter().flatten() {
            let name = f["name"]
                .as_str()
                .context("a listed field without a name")?;
            let path = format!(
                "/v1/entries/{}/fields/{}",
                percent_encode(id),
                percent_encode(name)
            );
            let read = c.get(&path).with_context(|| {
                format!("reading field {name:?} of entry {id}; nothing was exported")
            })?;
            fields.push(ExportField {
                name: name.to_owned(),
                tier: text(f, "tier").unwrap_or_else(|| "vault".to_owned()),
                scope: text(f, "scope"),
                value: read["value"].as_str().unwrap_or_default().to_owned(),
            });
            bar.inc(1);
        }
        out.push(ExportEntry {
            title: text(e, "title").unwrap_or_default(),
            url: text(e, "url"),
            username: text(e, "username"),
            fields,
        });
    }
    bar.finish_and_clear();
    Ok(out)
}

/// Writes `bytes` as a new private file beside `out`, then renames it over `out`.
pub(super) fn write_atomically(out: &Path, bytes: &[u8]) -> Result<()> {
    let name = out
        .file_name()
        .with_context(|| format!("--out {}: not a file name", out.display()))?;
    let tmp = out.with_file_name(format!(
        ".{}.tmp-{}-{}",
        name.to_string_lossy(),
        std::process::id(),
        uuid::Uuid::new_v4().simple()
    ));
    let result = files::write_private(&tmp, bytes).and_then(|()| files::rename_durably(&tmp, out));
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.with_context(|| format!("cannot write {}", out.display()))
}

pub fn export(a: ExportArgs) -> Result<()> {
    let c = Client::from_opts(&a.opts)?;
    if a.out.is_dir() {
        bail!("--out {} is a directory; name a file", a.out.display());
    }
    let passphrase = if a.plaintext {
        None
    } else {
        Some(new_passphrase(a.passphrase_file.as_deref())?)
    };
    let entries = collect(&c)?;
    let (n, values) = (
        entries.len(),
        entries.iter().map(|e| e.fields.len()).sum::<usize>(),
    );
    let now = OffsetDateTime::now_utc().format(&Rfc3339).ok();
    let doc = Document::new(now, entries);
    let bytes = match &passphrase {
        Some(p) => Zeroizing::new(doc.to_encrypted(p.as_bytes(), KdfParams::DEFAULT)?),
        None => doc.to_json(),
    };
    write_atomically(&a.out, &bytes)?;
    let how = if passphrase.is_some() {
        "encrypted with the passphrase (argon2id, AES-256-GCM)"
    } else {
        "in PLAIN TEXT: anyone who can read the file can read every value"
    };
    if a.opts.json {
        let out = json!({
            "file": a.out.display().to_string(),
            "entries": n,
            "values": values,
            "encrypted": passphrase.is_some(),
        });
        println!("{}", serde_json::to_string_pretty(&out).unwrap_or_default());
    } else {
        println!(
            "Exported {n} entries ({values} values) to {}, {how}.",
            a.out.display()
        );
    }
    Ok(())
}
