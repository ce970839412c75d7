//! `clavitor user add|list|deactivate|activate`: people, for the owner and admins.

use super::ClientOpts;
use super::client::Client;
use super::output::escape;
use anyhow::{Result, anyhow, bail};
use clap::Subcommand;
use serde_json::{Value, json};

#[derive(Debug, Subcommand)]
pub enum UserCmd {
    /// Add a user; prints its token once (give it to them: `clavitor login --token-file FILE`).
    Add {
        name: String,
        #[arg(long)]
        email: String,
        /// admin (manages members, groups and agents) or member.
        #[arg(long, default_value = "member", value_parser = ["admin", "member"])]
        role: String,
        #[command(flatten)]
        opts: ClientOpts,
    },
    /// List users, their roles, state and groups.
    List {
        #[command(flatten)]
        opts: ClientOpts,
    },
    /// Deactivate a user (by id or name): its token and every agent it made stop at once.
    Deactivate {
        user: String,
        #[command(flatten)]
        opts: ClientOpts,
    },
    /// Reactivate a user (by id or name); prints its new token once. Its agents stay revoked.
    Activate {
        user: String,
        #[command(flatten)]
        opts: ClientOpts,
    },
    /// Issue a user (by id or name) a single-use invite code that expires; prints it once.
    /// The user runs `clavitor login --invite CODE`, which makes its token on its own machine.
    Invite {
        user: String,
        /// How long the code lasts, in hours (at most 720).
        #[arg(long, default_value_t = 72)]
        hours: u64,
        #[command(flatten)]
        opts: ClientOpts,
    },
}

pub(super) fn print_json(v: &Value) {
    println!("{}", serde_json::to_string_pretty(v).unwrap_or_default());
}

/// A server-supplied string field for human output, escaped (see `output`); `default` if
/// absent or not a string.
pub(super) fn text<'a>(v: &'a Value, default: &'a str) -> std::borrow::Cow<'a, str> {
    escape(v.as_str().unwrap_or(default))
}

/// `method path` with a JSON `body`: the answer (`null` when it is empty).
pub(super) fn send_json(c: &Client, method: &str, path: &str, body: &Value) -> Result<Value> {
    Ok(c.call(method, path, Some(body))?.unwrap_or_default())
}

/// The strings of a JSON array, escaped for human output; none if `v` is not an array.
pub(super) fn texts(v: &Value) -> Vec<std::borrow::Cow<'_, str>> {
    v.as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .map(escape)
        .collect()
}

/// `given` when it is an id, else the id of the first item of `GET path`'s array `key` that
/// `named` picks; "`missing` GIVEN" when none does.
pub(super) fn resolve_id(
    c: &Client,
    given: &str,
    (path, key): (&str, &str),
    named: impl Fn(&Value) -> bool,
    missing: &str,
) -> Result<String> {
    if uuid::Uuid::parse_str(given).is_ok() {
        return Ok(given.to_owned());
    }
    let list = c.get(path)?;
    list[key]
        .as_array()
        .into_iter()
        .flatten()
        .find(|item| named(item))
        .and_then(|item| item["id"].as_str())
        .map(str::to_owned)
        .ok_or_else(|| anyhow!("{missing} {given:?}"))
}

/// A user given by id or name, as its id.
pub(super) fn resolve_user(c: &Client, user: &str) -> Result<String> {
    let named = |u: &Value| u["name"].as_str() == Some(user);
    resolve_id(c, user, ("/v1/users", "users"), named, "no user named")
}

/// `PATCH /v1/users/ID` setting `active`, the user given by id or name: its id and the answer.
fn set_active(c: &Client, user: &str, active: bool) -> Result<(String, Value)> {
    let id = resolve_user(c, user)?;
    let body = json!({ "active": active });
    let out = send_json(c, "PATCH", &format!("/v1/users/{id}"), &body)?;
    Ok((id, out))
}

fn print_with_token(out: &Value, what: &str) {
    println!(
        "{what} {} ({}, {})",
        text(&out["name"], ""),
        text(&out["role"], ""),
        text(&out["id"], "")
    );
    println!("token (shown once):");
    println!("{}", text(&out["token"], ""));
}

pub fn user(cmd: UserCmd) -> Result<()> {
    match cmd {
        UserCmd::Add {
            name,
            email,
            role,
            opts,
        } => {
            let c = Client::from_opts(&opts)?;
            let body = json!({ "name": name, "email": email, "role": role });
            let out = send_json(&c, "POST", "/v1/users", &body)?;
            if opts.json {
                print_json(&out);
            } else {
                print_with_token(&out, "user");
            }
        }
        UserCmd::List { opts } => {
            let c = Client::from_opts(&opts)?;
            let list = c.get("/v1/users")?;
            if opts.json {
                print_json(&list);
            } else {
                println!(
                    "{:<36}  {:<12}  {:<24}  {:<6}  {:<8}  GROUPS",
                    "ID", "NAME", "EMAIL", "ROLE", "STATUS"
                );
                for u in list["users"].as_array().into_iter().flatten() {
                    let groups = u["groups"].as_array().map_or(0, Vec::len);
                    let status = if u["active"] == true {
                        "active"
                    } else {
                        "inactive"
                    };
                    println!(
                        "{:<36}  {:<12}  {:<24}  {:<6}  {:<8}  {groups}",
                        text(&u["id"], ""),
                        text(&u["name"], ""),
                        text(&u["email"], ""),
                        text(&u["role"], ""),
                        status,
                    );
                }
            }
        }
        UserCmd::Deactivate { user, opts } => {
            let (id, out) = set_active(&Client::from_opts(&opts)?, &user, false)?;
            if opts.json {
                print_json(&out);
            } else {
                println!(
                    "deactivated {} ({}); its tokens and agents are refused from now on",
                    text(&out["name"], ""),
                    escape(&id)
                );
            }
        }
        UserCmd::Activate { user, opts } => {
            let (_, out) = set_active(&Client::from_opts(&opts)?, &user, true)?;
            if out.get("token").is_none() {
                bail!(
                    "{} is active already; its token is unchanged",
                    escape(&user)
                );
            }
            if opts.json {
                print_json(&out);
            } else {
                print_with_token(&out, "reactivated");
            }
        }
        UserCmd::Invite { user, hours, opts } => {
            let c = Client::from_opts(&opts)?;
            let id = resolve_user(&c, &user)?;
            let body = json!({"expires_in_secs": hours.saturating_mul(3600)});
            let out = send_json(&c, "POST", &format!("/v1/users/{id}/invite"), &body)?;
            if opts.json {
                print_json(&out);
            } else {
                println!(
                    "invite for {} (single use, expires {}):",
                    escape(&user),
                    text(&out["expires_at"], "")
                );
                println!("{}", text(&out["code"], ""));
                println!(
                    "give it to them; they run: clavitor login --invite CODE --server {}",
                    escape(&opts.server)
                );
            }
        }
    }
    Ok(())
}
