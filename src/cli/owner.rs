//! `clavitor owner rotate` and `clavitor token rotate` (the owner's or a user's own token):
//! replace a token without ever leaving its holder with none.
//!
//! The new token is made here and stored (fsynced, `TOKEN_FILE.new`) before it is sent; the
//! server takes it from the request. If the answer is lost, running the command again finds
//! the stored token, and the server answers a retry that presents it as a success. Only once
//! the server has answered does the new token replace the old in the token file.

use super::ClientOpts;
use super::client::{Client, interpret};
use crate::crypto::Token;
use crate::files;
use anyhow::{Context, Result, anyhow, bail};
use clap::Subcommand;
use serde_json::{Value, json};
use std::ffi::OsString;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};

const OWNER_ROTATE: &str = "/v1/owner/rotate";
const OWN_ROTATE: &str = "/v1/token/rotate";

#[derive(Debug, Subcommand)]
pub enum TokenCmd {
    /// Replace your own token (the owner's or a user's). The token file (--token-file, else
    /// the default token file) gets the new one; the old one is refused from then on.
    Rotate {
        #[command(flatten)]
        opts: ClientOpts,
    },
}

pub fn token(c: TokenCmd) -> Result<()> {
    match c {
        TokenCmd::Rotate { opts } => rotate(&opts, OWN_ROTATE, "clavitor token rotate", "token"),
    }
}

#[derive(Debug, Subcommand)]
pub enum OwnerCmd {
    /// Replace the owner token. The token file (--token-file, else the default token file) gets
    /// the new one; the old one is refused from then on.
    Rotate {
        #[command(flatten)]
        opts: ClientOpts,
    },
}

pub fn owner(c: OwnerCmd) -> Result<()> {
    match c {
        OwnerCmd::Rotate { opts } => {
            rotate(&opts, OWNER_ROTATE, "clavitor owner rotate", "owner token")
        }
    }
}

/// Where a rotation keeps the token it proposes until the server has taken it.
fn pending_path(token_file: &Path) -> PathBuf {
    let mut name = token_file
        .file_name()
        .map(OsString::from)
        .unwrap_or_else(|| OsString::from("token"));
    name.push(".new");
    token_file.with_file_name(name)
}

/// Rotates the token in the token file through `route`; `command` and `what` for messages.
fn rotate(o: &ClientOpts, route: &str, command: &str, what: &str) -> Result<()> {
    let path = match &o.token_file {
        Some(p) => p.clone(),
        None => files::default_token_path().ok_or_else(|| {
            anyhow!("neither XDG_CONFIG_HOME nor HOME is set. Fix: pass --token-file FILE (the file holding the {what}, which gets the new one)")
        })?,
    };
    let current = files::read_token(&path)?;
    let pending = pending_path(&path);
    let proposed = match files::read_token(&pending) {
        Ok(t) => {
            eprintln!(
                "finishing an earlier rotation: {} holds the token it proposed",
                pending.display()
            );
            t
        }
        Err(files::Error::Io { error, .. }) if error.kind() == std::io::ErrorKind::NotFound => {
            let t = Token::generate();
            files::write_token(&pending, &t)?;
            t
        }
        Err(e) => return Err(e.into()),
    };
    let body = json!({ "token": proposed.expose() });
    let unfinished = || {
        format!(
            "the rotation is not finished: the new token is kept in {}; run `{command}` again to finish it",
            pending.display()
        )
    };
    let mut reply = Client::with_token(o, current)?
        .send("POST", route, Some(&body))
        .with_context(unfinished)?;
    if reply.status == 401 {
        // The old token is refused: an earlier attempt may have gone through, its answer lost.
        reply = Client::with_token(o, proposed.clone())?
            .send("POST", route, Some(&body))
            .with_context(unfinished)?;
    }
    if reply.status != 200 {
        let why = interpret(&reply)
            .err()
            .map_or_else(|| format!("HTTP {}", reply.status), |e| e.to_string());
        bail!("{why}\n{}", unfinished());
    }
    let answer = interpret(&reply)?;
    let taken = answer
        .as_ref()
        .and_then(|v| v.get("token"))
        .and_then(Value::as_str);
    if taken != Some(proposed.expose()) {
        bail!(
            "the server answered without the proposed token\n{}",
            unfinished()
        );
    }
    files::rename_durably(&pending, &path)?;
    if o.json {
        println!("{}", json!({ "rotated": true, "token_file": path }));
    } else {
        println!(
            "Rotated the {what}: {} holds the new one, and the old one is refused from now on.",
            path.display()
        );
        if std::io::stdout().is_terminal() {
            println!("New {what} (shown once):\n{}", proposed.expose());
        }
    }
    Ok(())
}
