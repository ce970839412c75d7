//! `clavitor login --token-file FILE`: makes a token (a user's, given to them once) the CLI's
//! default, after the server has confirmed it. `clavitor login --invite CODE`: makes a new
//! token here, stores it (0600, synced) at --token-file or the default path, then redeems the
//! invite with it, so the token never existed anywhere else.

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
    /// Redeem this invite code (from `clavitor user invite`): make your token and key pair.
    #[arg(long, value_name = "CODE")]
    invite: Option<String>,
    #[command(flatten)]
    opts: ClientOpts,
}

pub fn login(a: LoginArgs) -> Result<()> {
    if let Some(code) = &a.invite {
        return redeem(&a, code);
    }
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

fn staged_path(target: &std::path::Path) -> std::path::PathBuf {
    let mut name = target
        .file_name()
        .map(OsString::from)
        .unwrap_or_else(|| OsString::from("token"));
    name.push(".login");
    target.with_file_name(name)
}

/// `login --invite CODE`: the token is made and stored before it is sent, so a lost answer
/// loses nothing (the file holds the token the server may have accepted).
fn redeem(a: &LoginArgs, code: &str) -> Result<()> {
    let o = &a.opts;
    let target = match &o.token_file {
        Some(p) => p.clone(),
        None => files::default_token_path().ok_or_else(|| {
            anyhow!("neither XDG_CONFIG_HOME nor HOME is set: pass --token-file FILE to say where to keep your token")
        })?,
    };
    let exists = target.symlink_metadata().is_ok();
    if exists && !a.force {
        bail!(
            "{} exists (another login, or the owner token of `clavitor init`); refusing to overwrite it. Fix: pass --force to replace it, or --token-file FILE for another place",
            target.display()
        );
    }
    let token = crate::crypto::Token::generate();
    let written = if exists {
        staged_path(&target)
    } else {
        target.clone()
    };
    let _ = std::fs::remove_file(staged_path(&target));
    files::write_token(&written, &token)?;
    let client = Client::with_token(o, token.clone())?;
    let body = json!({ "code": code.trim(), "token": token.expose() });
    let reply = match client.send("POST", "/v1/invite/redeem", Some(&body)) {
        Ok(r) => r,
        Err(e) => {
            return Err(e.context(format!(
                "no answer from the server; the token this login made is in {} (if the invite was redeemed, it is your token: retry `clavitor login --token-file {}`)",
                written.display(),
                written.display()
            )));
        }
    };
    let out = match super::client::interpret(&reply) {
        Ok(v) => v.unwrap_or_default(),
        Err(e) => {
            // Refused: the token is nobody's; do not leave it behind.
            let _ = std::fs::remove_file(&written);
            return Err(e.context("the invite was not redeemed"));
        }
    };
    if written != target {
        files::rename_durably(&written, &target)?;
    }
    if o.json {
        println!(
            "{}",
            json!({ "token_file": target, "id": out["id"], "name": out["name"], "pending_grants": out["pending_grants"] })
        );
    } else {
        println!(
            "Logged in as {} (user); {} holds your new token, and client commands use it by default.",
            escape(out["name"].as_str().unwrap_or("?")),
            target.display()
        );
        let n = out["pending_grants"].as_u64().unwrap_or(0);
        if n > 0 {
            println!(
                "{n} group membership(s) wait for an admin to confirm them (clavitor grants confirm) before you can read their scopes."
            );
        }
    }
    Ok(())
}
