//! `clavitor grants list|confirm`: memberships waiting for someone who holds their keys (the
//! server cannot wrap a key it cannot open). Confirming wraps the caller's copies to the member.

use super::ClientOpts;
use super::client::Client;
use super::user::{print_json, resolve_user, text};
use anyhow::{Result, bail};
use clap::Subcommand;
use serde_json::{Value, json};

#[derive(Debug, Subcommand)]
pub enum GrantsCmd {
    /// List the pending grants you hold the keys to confirm.
    List {
        #[command(flatten)]
        opts: ClientOpts,
    },
    /// Confirm pending grants: of one user (id or name; optionally in one --group), or --all
    /// whose members are ready (have redeemed their invite).
    Confirm {
        user: Option<String>,
        /// Only this group's grant (id or name).
        #[arg(long)]
        group: Option<String>,
        #[arg(long, conflicts_with_all = ["user", "group"])]
        all: bool,
        #[command(flatten)]
        opts: ClientOpts,
    },
}

fn pending(c: &Client) -> Result<Vec<Value>> {
    Ok(c.get("/v1/grants/pending")?["pending_grants"]
        .as_array()
        .cloned()
        .unwrap_or_default())
}

pub fn grants(cmd: GrantsCmd) -> Result<()> {
    match cmd {
        GrantsCmd::List { opts } => {
            let c = Client::from_opts(&opts)?;
            let list = pending(&c)?;
            if opts.json {
                print_json(&json!({ "pending_grants": list }));
                return Ok(());
            }
            println!(
                "{:<16}  {:<16}  {:<24}  {:<5}  SINCE",
                "USER", "GROUP", "SCOPES", "READY"
            );
            for p in &list {
                let scopes: Vec<&str> = p["scopes"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(Value::as_str)
                    .collect();
                println!(
                    "{:<16}  {:<16}  {:<24}  {:<5}  {}",
                    text(&p["user"], ""),
                    text(&p["group"], ""),
                    super::output::escape(&scopes.join(",")),
                    if p["ready"] == true { "yes" } else { "no" },
                    text(&p["since"], "")
                );
            }
        }
        GrantsCmd::Confirm {
            user,
            group,
            all,
            opts,
        } => {
            let c = Client::from_opts(&opts)?;
            let body = if all {
                json!({"all": true})
            } else {
                let Some(user) = user else {
                    bail!("name the user whose grants to confirm, or pass --all");
                };
                let id = resolve_user(&c, &user)?;
                let grants: Vec<Value> = pending(&c)?
                    .into_iter()
                    .filter(|p| p["user_id"].as_str() == Some(id.as_str()))
                    .filter(|p| {
                        group.as_deref().is_none_or(|g| {
                            p["group"].as_str() == Some(g) || p["group_id"].as_str() == Some(g)
                        })
                    })
                    .map(|p| json!({"group_id": p["group_id"], "user_id": p["user_id"]}))
                    .collect();
                if grants.is_empty() {
                    bail!(
                        "{} has no pending grant you can confirm (see clavitor grants list)",
                        super::output::escape(&user)
                    );
                }
                json!({ "grants": grants })
            };
            let out = c
                .call("POST", "/v1/grants/confirm", Some(&body))?
                .unwrap_or_default();
            if opts.json {
                print_json(&out);
            } else {
                let n = out["confirmed"].as_array().map_or(0, Vec::len);
                println!("confirmed {n} grant(s): the members can read their groups' scopes now");
            }
        }
    }
    Ok(())
}
