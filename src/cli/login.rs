//! `clavitor login --token-file FILE`: makes a token (a user's, given to them once) the CLI's
//! default, after the server has confirmed it.

use super::ClientOpts;
use super::client::Client;
use super::output::escape;
use crate::files;
use anyhow::{Context, Result, anyhow, bail};
use clap::Args;
use serde_json::{Value, json};
use std::ffi::OsString;

#[derive(Debug, Args)]
pub struct LoginArgs {
    /// Replace a default token file that exists already.
    #[arg(long)]
    force: bool,
    #[command(flatten)]
    opts: ClientOpts,
}

pub fn login(a: LoginArgs) -> Result<()> {
    let o = &a.opts;
    let source = o.token_file.as_deref().ok_or_else(|| {
        anyhow!("login needs the token to store: pass --token-file FILE (mode 0600), the file holding the token you were given")
    })?;
    let target = files::default_token_path().ok_or_else(|| {
        anyhow!(
            "neither XDG_CONFIG_HOME nor HOME is set, so there is no default token file to write"
        )
    })?;
    if source == target {
        bail!("{} is the default token file already", target.display());
    }
    let token = files::read_token(source)?;
    if !a.force && target.symlink_metadata().is_ok() {
        bail!(
            "{} exists (another login, or the owner token of `clavitor init`); refusing to overwrite it. Fix: pass --force to replace it",
            target.display()
        );
    }
    // The server must know the token before it becomes the default.
    let me: Value = Client::with_token(o, token.clone())?
        .get("/v1/me")
        .context("the server did not accept this token")?;
    if a.force {
        let mut name = target
            .file_name()
            .map(OsString::from)
            .unwrap_or_else(|| OsString::from("token"));
        name.push(".login");
        let staged = target.with_file_name(name);
        let _ = std::fs::remove_file(&staged);
        files::write_token(&staged, &token)?;
        files::rename_durably(&staged, &target)?;
    } else {
        files::write_token(&target, &token)?;
    }
    if o.json {
        println!(
            "{}",
            json!({ "token_file": target, "id": me["id"], "kind": me["kind"], "name": me["name"] })
        );
    } else {
        let role = me["role"]
            .as_str()
            .map(|r| format!(", {}", escape(r)))
            .unwrap_or_default();
        println!(
            "Logged in as {} ({}{role}); {} holds the token, and client commands use it by default.",
            escape(me["name"].as_str().unwrap_or("?")),
            escape(me["kind"].as_str().unwrap_or("?")),
            target.display()
        );
    }
    Ok(())
}
