//! `clavitor group add|list|add-member|rm-member|set-scopes`: groups give their members scopes.

use super::ClientOpts;
use super::client::Client;
use super::output::escape;
use super::user::{print_json, resolve_user, text};
use anyhow::{Result, anyhow};
use clap::Subcommand;
use serde_json::{Value, json};

#[derive(Debug, Subcommand)]
pub enum GroupCmd {
    /// Add a group whose members read and write the given scopes.
    Add {
        name: String,
        /// A scope the group gives (repeat for several).
        #[arg(long = "scope", short = 's')]
        scopes: Vec<String>,
        #[command(flatten)]
        opts: ClientOpts,
    },
    /// List groups (a member sees its own), their scopes and members.
    List {
        #[command(flatten)]
        opts: ClientOpts,
    },
    /// Add a user (id or name) to a group (id or name); the caller grants the group's keys.
    AddMember {
        group: String,
        user: String,
        #[command(flatten)]
        opts: ClientOpts,
    },
    /// Replace a group's (id or name) scopes with the given list: members gain the added
    /// scopes' keys from the caller's copies and lose the removed ones'.
    SetScopes {
        group: String,
        /// The whole new list (none: the group gives no scope).
        scopes: Vec<String>,
        #[command(flatten)]
        opts: ClientOpts,
    },
    /// Remove a user from a group; its copies of the group's keys (and its agents') go.
    RmMember {
        group: String,
        user: String,
        #[command(flatten)]
        opts: ClientOpts,
    },
}

fn resolve_group(c: &Client, group: &str) -> Result<String> {
    if uuid::Uuid::parse_str(group).is_ok() {
        return Ok(group.to_owned());
    }
    let list = c.get("/v1/groups")?;
    list["groups"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|g| g["name"].as_str() == Some(group))
        .and_then(|g| g["id"].as_str())
        .map(str::to_owned)
        .ok_or_else(|| anyhow!("no group named {group:?}"))
}

fn list_of(v: &Value) -> String {
    v.as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .map(escape)
        .collect::<Vec<_>>()
        .join(",")
}

pub fn group(cmd: GroupCmd) -> Result<()> {
    match cmd {
        GroupCmd::Add { name, scopes, opts } => {
            let c = Client::from_opts(&opts)?;
            let body = json!({ "name": name, "scopes": scopes });
            let out = c
                .call("POST", "/v1/groups", Some(&body))?
                .unwrap_or_default();
            print_group(&out, opts.json);
        }
        GroupCmd::List { opts } => {
            let c = Client::from_opts(&opts)?;
            let list = c.get("/v1/groups")?;
            if opts.json {
                print_json(&list);
            } else {
                println!("{:<36}  {:<12}  {:<20}  MEMBERS", "ID", "NAME", "SCOPES");
                for g in list["groups"].as_array().into_iter().flatten() {
                    println!(
                        "{:<36}  {:<12}  {:<20}  {}",
                        text(&g["id"], ""),
                        text(&g["name"], ""),
                        list_of(&g["scopes"]),
                        g["members"].as_array().map_or(0, Vec::len)
                    );
                }
            }
        }
        GroupCmd::SetScopes {
            group,
            scopes,
            opts,
        } => {
            let c = Client::from_opts(&opts)?;
            let g = resolve_group(&c, &group)?;
            let body = json!({ "scopes": scopes });
            let out = c
                .call("PATCH", &format!("/v1/groups/{g}"), Some(&body))?
                .unwrap_or_default();
            print_group(&out, opts.json);
        }
        GroupCmd::AddMember { group, user, opts } => member(&opts, &group, &user, true)?,
        GroupCmd::RmMember { group, user, opts } => member(&opts, &group, &user, false)?,
    }
    Ok(())
}

fn member(opts: &ClientOpts, group: &str, user: &str, add: bool) -> Result<()> {
    let c = Client::from_opts(opts)?;
    let g = resolve_group(&c, group)?;
    let u = resolve_user(&c, user)?;
    let method = if add { "PUT" } else { "DELETE" };
    c.call(method, &format!("/v1/groups/{g}/members/{u}"), None)?;
    if opts.json {
        print_json(&json!({ "group": g, "user": u, "member": add }));
    } else if add {
        println!("added {} to {}", escape(user), escape(group));
    } else {
        println!("removed {} from {}", escape(user), escape(group));
    }
    Ok(())
}

/// A group as the API answered it: JSON, or one line.
fn print_group(group: &Value, json: bool) {
    if json {
        print_json(group);
    } else {
        println!(
            "group {} ({}) scopes {}",
            text(&group["name"], ""),
            text(&group["id"], ""),
            list_of(&group["scopes"])
        );
    }
}
