//! `clavitor import FORMAT FILE`: reads another vault's export (or our own) with
//! [`crate::import`], and sends every entry in one `POST /v1/entries/bulk`, so the import lands
//! in one transaction or not at all. A bad file is refused before anything is sent.

use super::ClientOpts;
use super::client::Client;
use super::export::read_passphrase_file;
use super::output::escape;
use crate::api::{BULK_BODY_LIMIT, MAX_BULK_ENTRIES};
use crate::import::{
    self, Import, Prepared, SecretTier, Skipped,
    clavitor::{self, ExportFile},
    csv::Mapping,
};
use crate::vault::{EntryDraft, Scope};
use anyhow::{Context, Result, bail};
use clap::{Args, ValueEnum};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::Serialize;
use serde_json::{Value, json};
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;
use zeroize::Zeroizing;

/// Imports and exports smaller than this show no progress bar: they finish before one helps.
const PROGRESS_MIN_ITEMS: usize = 300;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// Bitwarden or Vaultwarden unencrypted JSON export.
    Bitwarden,
    /// KeePass 2 XML export (KeePass, KeePassXC).
    Keepass,
    /// 1Password unencrypted export (.1pux).
    #[value(name = "1pux")]
    OnePux,
    /// CSV with a header line; see --map.
    Csv,
    /// The vault's own `clavitor export` file, encrypted or plain (tiers and scopes kept).
    Clavitor,
}

/// Where fields that look secret go.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SecretTierArg {
    /// The credential tier under --scope: only tokens granting it can read them.
    Credential,
    /// The vault tier: the server (and anyone with the data dir) can read them.
    Vault,
}

#[derive(Debug, Args)]
pub struct ImportArgs {
    /// What wrote the file.
    #[arg(value_enum)]
    format: Format,
    /// The export file.
    file: PathBuf,
    /// The scope of the credential tier for fields that look secret (passwords, TOTP seeds,
    /// card numbers and codes, hidden or protected fields).
    #[arg(long, default_value = "imported")]
    scope: String,
    /// Where fields that look secret go.
    #[arg(long, value_enum, default_value_t = SecretTierArg::Credential)]
    tier: SecretTierArg,
    /// Read the file and report what would be imported; send nothing.
    #[arg(long)]
    dry_run: bool,
    /// CSV only: which column fills what, e.g. title=name,password=pass,url=site. Targets:
    /// title, url, username, folder, or any field name. Unmapped columns are matched by common
    /// header names, the rest become fields named by their header.
    #[arg(long, value_name = "TARGET=COLUMN,...")]
    map: Option<String>,
    /// clavitor only: read an encrypted export's passphrase from FILE (mode 0600) instead of
    /// asking on the terminal.
    #[arg(long, value_name = "FILE")]
    passphrase_file: Option<PathBuf>,
    #[command(flatten)]
    opts: ClientOpts,
}

/// A progress bar on stderr when it is a terminal and there are enough items to watch.
pub(super) fn progress_bar(len: usize, message: &'static str) -> ProgressBar {
    if len < PROGRESS_MIN_ITEMS || !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let style = ProgressStyle::with_template("{msg:>12} [{bar:40}] {pos}/{len} ({eta})")
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ");
    ProgressBar::with_draw_target(Some(len as u64), ProgressDrawTarget::stderr())
        .with_style(style)
        .with_message(message)
}

/// A spinner for a wait of unknown length, shown under the same conditions as the bar.
fn spinner(len: usize, message: String) -> ProgressBar {
    if len < PROGRESS_MIN_ITEMS || !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let s = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr()).with_message(message);
    s.enable_steady_tick(Duration::from_millis(120));
    s
}

#[derive(Serialize)]
struct FieldBody<'a> {
    name: &'a str,
    value: &'a str,
    tier: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    scope: Option<&'a str>,
}

#[derive(Serialize)]
struct EntryBody<'a> {
    title: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    url: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    username: Option<&'a str>,
    fields: Vec<FieldBody<'a>>,
}

/// The bulk request's body, written entry by entry (it holds every value: wiped on drop).
fn bulk_body(drafts: &[EntryDraft]) -> Zeroizing<Vec<u8>> {
    let bar = progress_bar(drafts.len(), "preparing");
    let mut out = Zeroizing::new(Vec::with_capacity(drafts.len() * 256));
    out.extend_from_slice(b"{\"entries\":[");
    for (i, d) in drafts.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        let body = EntryBody {
            title: &d.title,
            url: d.url.as_deref(),
            username: d.username.as_deref(),
            fields: d
                .fields
                .iter()
                .map(|f| FieldBody {
                    name: &f.name,
                    value: &f.value,
                    tier: f.tier.as_str(),
                    scope: f.scope.as_ref().map(Scope::as_str),
                })
                .collect(),
        };
        serde_json::to_writer(&mut *out, &body).expect("writing JSON to memory cannot fail");
        bar.inc(1);
    }
    out.extend_from_slice(b"]}");
    bar.finish_and_clear();
    out
}

/// Asks for an encrypted export's passphrase: from `--passphrase-file`, else the terminal.
fn passphrase(file: Option<&Path>, export: &Path) -> Result<Zeroizing<String>> {
    if let Some(f) = file {
        return read_passphrase_file(f);
    }
    let prompt = format!("Passphrase for {}: ", export.display());
    let p = rpassword::prompt_password(prompt).map(Zeroizing::new).with_context(|| {
        format!(
            "{} is encrypted, and there is no terminal to ask for its passphrase. Fix: pass --passphrase-file FILE (mode 0600)",
            export.display()
        )
    })?;
    Ok(p)
}

fn parse(a: &ImportArgs, bytes: &[u8]) -> Result<Import> {
    let file = a.file.as_path();
    Ok(match a.format {
        Format::Bitwarden => import::bitwarden::parse(file, bytes)?,
        Format::Keepass => import::keepass::parse(file, bytes)?,
        Format::OnePux => import::onepux::parse(file, bytes)?,
        Format::Csv => {
            let mapping =
                Mapping::parse(a.map.as_deref().unwrap_or_default()).map_err(anyhow::Error::msg)?;
            import::csv::parse(file, bytes, &mapping)?
        }
        Format::Clavitor => {
            let doc = match clavitor::read(file, bytes)? {
                ExportFile::Plain(doc) => doc,
                ExportFile::Encrypted(locked) => {
                    let p = passphrase(a.passphrase_file.as_deref(), file)?;
                    locked.open(file, p.as_bytes())?
                }
            };
            doc.into_import(file)?
        }
    })
}

pub fn import(a: ImportArgs) -> Result<()> {
    if a.map.is_some() && a.format != Format::Csv {
        bail!("--map is for csv imports only");
    }
    if a.passphrase_file.is_some() && a.format != Format::Clavitor {
        bail!("--passphrase-file is for clavitor imports only (an encrypted `clavitor export`)");
    }
    let scope = Scope::parse(&a.scope).map_err(|e| anyhow::anyhow!("--scope: {e}"))?;
    let secrets = match a.tier {
        SecretTierArg::Credential => SecretTier::Credential(scope),
        SecretTierArg::Vault => SecretTier::Vault,
    };
    // A real import checks the server and token before reading a large file.
    let client = if a.dry_run {
        None
    } else {
        Some(Client::from_opts(&a.opts)?)
    };
    let bytes = import::read_file(&a.file)?;
    let parsed = parse(&a, &bytes)?;
    drop(bytes);
    let mut prepared = import::prepare(&a.file, parsed.entries, &secrets)?;
    let mut skipped = parsed.skipped;
    skipped.merge(&prepared.skipped);
    prepared.skipped = skipped;
    let n = prepared.drafts.len();
    if n > MAX_BULK_ENTRIES {
        bail!(
            "{} holds {n} entries; one import takes at most {MAX_BULK_ENTRIES}, so that it is one transaction. Fix: split the file",
            a.file.display()
        );
    }
    let Some(client) = client else {
        return report(&a, &prepared, None);
    };
    if n == 0 {
        return report(&a, &prepared, Some(Vec::new()));
    }
    let body = bulk_body(&prepared.drafts);
    if body.len() > BULK_BODY_LIMIT {
        bail!(
            "{} makes a request of {} bytes; one import sends at most {BULK_BODY_LIMIT} (64 MiB), so that it is one transaction. Fix: split the file",
            a.file.display(),
            body.len()
        );
    }
    let wait = spinner(n, format!("importing {n} entries in one transaction"));
    let reply = client.post_json_bytes("/v1/entries/bulk", &body);
    wait.finish_and_clear();
    let reply = reply
        .with_context(|| format!("nothing was imported from {}", a.file.display()))?
        .unwrap_or_default();
    let ids: Vec<String> = reply["ids"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .map(str::to_owned)
        .collect();
    if ids.len() != n {
        bail!(
            "the server answered with {} ids for {n} entries; check `clavitor entry list`",
            ids.len()
        );
    }
    report(&a, &prepared, Some(ids))
}

/// The summary: what was (or, in a dry run, would be) imported, skipped, and adjusted.
fn report(a: &ImportArgs, p: &Prepared, ids: Option<Vec<String>>) -> Result<()> {
    let (vault, credential, identity) = p.tier_counts();
    let scopes: std::collections::BTreeSet<&str> = p
        .drafts
        .iter()
        .flat_map(|d| &d.fields)
        .filter_map(|f| f.scope.as_ref().map(Scope::as_str))
        .collect();
    let file = a.file.display().to_string();
    let n = p.drafts.len();
    if a.opts.json {
        let skipped: Vec<Value> = p
            .skipped
            .iter()
            .map(|(s, count)| json!({"what": s.key(), "count": count, "why": s.why()}))
            .collect();
        let out = json!({
            "file": file,
            "dry_run": ids.is_none(),
            "entries": n,
            "ids": ids,
            "fields": {"vault": vault, "credential": credential, "identity": identity},
            "scopes": scopes,
            "skipped": skipped,
            "adjusted": p.notes,
            "more_adjusted": p.more_notes,
        });
        println!("{}", serde_json::to_string_pretty(&out).unwrap_or_default());
        return Ok(());
    }
    let mut o = std::io::stdout().lock();
    let entries = if n == 1 { "entry" } else { "entries" };
    match ids {
        Some(_) => writeln!(o, "Imported {n} {entries} from {file} in one transaction.")?,
        None => writeln!(
            o,
            "Dry run: {n} {entries} from {file} would be imported; nothing was sent."
        )?,
    }
    let mut tiers = Vec::new();
    if credential > 0 {
        let quoted: Vec<String> = scopes.iter().map(|s| format!("{:?}", escape(s))).collect();
        let label = if quoted.len() == 1 { "scope" } else { "scopes" };
        tiers.push(format!(
            "{credential} credential ({label} {})",
            quoted.join(", ")
        ));
    }
    if vault > 0 {
        tiers.push(format!("{vault} vault"));
    }
    if identity > 0 {
        tiers.push(format!("{identity} identity"));
    }
    if !tiers.is_empty() {
        writeln!(o, "  fields:   {}", tiers.join(", "))?;
    }
    write_skipped(&mut o, &p.skipped)?;
    for note in &p.notes {
        writeln!(o, "  adjusted: {}", escape(note))?;
    }
    if p.more_notes > 0 {
        writeln!(o, "  adjusted: {} more (see --json)", p.more_notes)?;
    }
    Ok(())
}

fn write_skipped(o: &mut impl Write, skipped: &Skipped) -> Result<()> {
    if skipped.is_empty() {
        writeln!(o, "  skipped:  nothing")?;
    }
    for (s, count) in skipped.iter() {
        writeln!(o, "  skipped:  {count} {} ({})", s.what(count), s.why())?;
    }
    Ok(())
}
