//! `clavitor inject -i TEMPLATE -o FILE`: a config file with secrets filled in. Every
//! reference is resolved before anything is written; the output is created 0600 beside `FILE`
//! and renamed over it, so it never exists half written or readable by others.

use super::ClientOpts;
use super::client::Client;
use super::export::write_atomically;
use super::secrets::Resolver;
use crate::vault::reference::{fill, placeholders};
use anyhow::{Context, Result, anyhow, bail};
use clap::Args;
use std::collections::HashMap;
use std::io::Read;
use std::path::PathBuf;
use zeroize::Zeroizing;

#[derive(Debug, Args)]
pub struct InjectArgs {
    /// The template: text with {{ clavitor://ENTRY/FIELD }} placeholders ("-": stdin).
    #[arg(short = 'i', long = "in", value_name = "TEMPLATE")]
    input: PathBuf,
    /// The file to write (mode 0600, replaced atomically).
    #[arg(short = 'o', long = "out", value_name = "FILE")]
    output: PathBuf,
    #[command(flatten)]
    opts: ClientOpts,
}

pub fn inject(a: InjectArgs) -> Result<()> {
    let template = if a.input.as_os_str() == "-" {
        let mut s = String::new();
        std::io::stdin()
            .read_to_string(&mut s)
            .context("reading the template from stdin")?;
        s
    } else {
        std::fs::read_to_string(&a.input).with_context(|| format!("-i {}", a.input.display()))?
    };
    let found = placeholders(&template).map_err(|e| anyhow!("{}: {e}", a.input.display()))?;
    if a.output.is_dir() {
        bail!("-o {} is a directory; name a file", a.output.display());
    }
    let client = Client::from_opts(&a.opts)?;
    let mut resolver = Resolver::new(&client);
    let mut values: HashMap<String, Zeroizing<String>> = HashMap::new();
    for p in &found {
        if !values.contains_key(&p.reference) {
            let v = resolver.resolve(&p.reference)?.value;
            values.insert(p.reference.clone(), v);
        }
    }
    let filled = Zeroizing::new(fill(&template, &found, |r| {
        values.get(r).map(|v| v.to_string()).unwrap_or_default()
    }));
    write_atomically(&a.output, filled.as_bytes())?;
    if a.opts.json {
        println!(
            "{}",
            serde_json::json!({"written": a.output, "references": values.len()})
        );
    } else {
        eprintln!(
            "Wrote {} ({} reference{} filled, mode 0600).",
            a.output.display(),
            found.len(),
            if found.len() == 1 { "" } else { "s" }
        );
    }
    Ok(())
}
