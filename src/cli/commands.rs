//! Client subcommands: entries, agents and `read`.

use super::ClientOpts;
use super::client::Client;
use super::output::escape;
use super::user::{print_json, resolve_id, send_json, text, texts};
use anyhow::{Context, Result, anyhow, bail};
use clap::{Args, Subcommand};
use serde_json::{Value, json};
use std::io::Read;

#[derive(Debug, Subcommand)]
pub enum EntryCmd {
    /// Add an entry. Fields: --field NAME[:TIER[:SCOPE]]=VALUE (VALUE "-" reads stdin).
    Add {
        title: String,
        #[arg(long)]
        url: Option<String>,
        #[arg(long)]
        username: Option<String>,
        /// e.g. password=hunter2, api_key:credential:deploy=sk-..., blob:identity=BASE64
        #[arg(long = "field", short = 'f', value_name = "NAME[:TIER[:SCOPE]]=VALUE")]
        fields: Vec<String>,
        #[command(flatten)]
        opts: ClientOpts,
    },
    /// Show an entry's metadata (by id or exact title); never its values.
    Get {
        entry: String,
        #[command(flatten)]
        opts: ClientOpts,
    },
    /// List entries (metadata only).
    List {
        #[command(flatten)]
        opts: ClientOpts,
    },
    /// Delete an entry (by id or exact title).
    Rm {
        entry: String,
        #[command(flatten)]
        opts: ClientOpts,
    },
}

#[derive(Debug, Subcommand)]
pub enum AgentCmd {
    /// Create an agent; prints its token once.
    Add {
        name: String,
        /// Scope the agent may read (repeat for several).
        #[arg(long = "scope", short = 's', required = true)]
        scopes: Vec<String>,
        /// Lifetime, e.g. 3600, 90m, 12h, 30d. Default: no expiry.
        #[arg(long)]
        ttl: Option<String>,
        /// Address or CIDR the agent may call from (repeat). Default: any.
        #[arg(long = "allow-ip")]
        allow_ip: Vec<String>,
        /// Requests per minute. Default: 600.
        #[arg(long)]
        rate: Option<u32>,
        #[command(flatten)]
        opts: ClientOpts,
    },
    /// List agents with their status.
    List {
        #[command(flatten)]
        opts: ClientOpts,
    },
    /// Revoke an agent (by id or active name); its token stops working at once.
    Revoke {
        agent: String,
        #[command(flatten)]
        opts: ClientOpts,
    },
}

#[derive(Debug, Args)]
pub struct ReadArgs {
    /// clavitor://ENTRY/FIELD, ENTRY being an id or an exact title.
    reference: String,
    /// Print without a trailing newline.
    #[arg(short = 'n', long)]
    no_newline: bool,
    #[command(flatten)]
    opts: ClientOpts,
}

pub(super) fn parse_field(spec: &str, stdin_used: &mut bool) -> Result<Value> {
    let (head, value) = spec
        .split_once('=')
        .with_context(|| format!("--field {spec:?}: expected NAME[:TIER[:SCOPE]]=VALUE"))?;
    let mut parts = head.splitn(3, ':');
    let name = parts.next().unwrap_or_default();
    let tier = parts.next().filter(|t| !t.is_empty());
    let scope = parts.next().filter(|s| !s.is_empty());
    let value = if value == "-" {
        if std::mem::replace(stdin_used, true) {
            bail!("only one --field may read its value from stdin");
        }
        let mut s = String::new();
        std::io::stdin().read_to_string(&mut s)?;
        s.trim_end_matches(['\n', '\r']).to_owned()
    } else {
        value.to_owned()
    };
    let mut f = json!({ "name": name, "value": value });
    if let Some(t) = tier {
        f["tier"] = json!(t);
    }
    if let Some(s) = scope {
        f["scope"] = json!(s);
    }
    Ok(f)
}

/// Resolves an entry given by id or exact title to its id.
fn resolve_entry(c: &Client, entry: &str) -> Result<String> {
    if uuid::Uuid::parse_str(entry).is_ok() {
        return Ok(entry.to_owned());
    }
    let list = c.get("/v1/entries")?;
    let ids: Vec<&str> = list["entries"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|e| e["title"].as_str() == Some(entry))
        .filter_map(|e| e["id"].as_str())
        .collect();
    match ids.as_slice() {
        [id] => Ok((*id).to_owned()),
        [] => bail!("no entry titled {entry:?}"),
        _ => bail!("{} entries are titled {entry:?}; use the id", ids.len()),
    }
}

fn field_summary(e: &Value) -> String {
    e["fields"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|f| {
            let mut s = format!("{}:{}", text(&f["name"], "?"), text(&f["tier"], "?"));
            if let Some(scope) = f["scope"].as_str() {
                s.push(':');
                s.push_str(&escape(scope));
            }
            let hosts = texts(&f["allowed_hosts"]);
            match (f["agent_access"].as_str(), hosts.is_empty()) {
                (Some("use"), _) => s.push_str(&format!(" (use-only; hosts: {})", hosts.join(" "))),
                (_, false) => s.push_str(&format!(" (hosts: {})", hosts.join(" "))),
                _ => {}
            }
            s
        })
        .collect::<Vec<_>>()
        .join(", ")
}

pub fn entry(cmd: EntryCmd) -> Result<()> {
    match cmd {
        EntryCmd::Add {
            title,
            url,
            username,
            fields,
            opts,
        } => {
            let c = Client::from_opts(&opts)?;
            let mut stdin_used = false;
            let fields = fields
                .iter()
                .map(|f| parse_field(f, &mut stdin_used))
                .collect::<Result<Vec<_>>>()?;
            let body =
                json!({ "title": title, "url": url, "username": username, "fields": fields });
            let out = send_json(&c, "POST", "/v1/entries", &body)?;
            if opts.json {
                print_json(&out);
            } else {
                println!("{}", text(&out["id"], ""));
            }
        }
        EntryCmd::Get { entry, opts } => {
            let c = Client::from_opts(&opts)?;
            let id = resolve_entry(&c, &entry)?;
            let e = c.get(&format!("/v1/entries/{id}"))?;
            if opts.json {
                print_json(&e);
            } else {
                for (label, key) in [
                    ("id", "id"),
                    ("title", "title"),
                    ("url", "url"),
                    ("username", "username"),
                    ("updated", "updated_at"),
                ] {
                    if let Some(v) = e[key].as_str() {
                        println!("{label:<9} {}", escape(v));
                    }
                }
                println!("{:<9} {}", "fields", field_summary(&e));
            }
        }
        EntryCmd::List { opts } => {
            let c = Client::from_opts(&opts)?;
            let list = c.get("/v1/entries")?;
            if opts.json {
                print_json(&list);
            } else {
                println!("{:<36}  {:<24}  FIELDS", "ID", "TITLE");
                for e in list["entries"].as_array().into_iter().flatten() {
                    println!(
                        "{:<36}  {:<24}  {}",
                        text(&e["id"], ""),
                        text(&e["title"], ""),
                        field_summary(e)
                    );
                }
            }
        }
        EntryCmd::Rm { entry, opts } => {
            let c = Client::from_opts(&opts)?;
            let id = resolve_entry(&c, &entry)?;
            delete(&c, &format!("/v1/entries/{id}"), &id, "deleted", opts.json)?;
        }
    }
    Ok(())
}

/// `DELETE path` of the thing `id`, then says so: `{"VERB": ID}` with `--json`, else `VERB ID`.
fn delete(c: &Client, path: &str, id: &str, verb: &str, json: bool) -> Result<()> {
    c.call("DELETE", path, None)?;
    if json {
        print_json(&json!({ verb: id }));
    } else {
        println!("{verb} {}", escape(id));
    }
    Ok(())
}

/// Seconds from `3600`, `90s`, `15m`, `12h` or `30d`.
pub(super) fn parse_ttl(s: &str) -> Result<u64> {
    let (num, unit) = match s.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => (&s[..i], c),
        _ => (s, 's'),
    };
    let n: u64 = num
        .parse()
        .with_context(|| format!("--ttl {s:?}: expected e.g. 3600, 90m, 12h or 30d"))?;
    let mult = match unit {
        's' => 1,
        'm' => 60,
        'h' => 3600,
        'd' => 86_400,
        _ => bail!("--ttl {s:?}: unit must be s, m, h or d"),
    };
    n.checked_mul(mult)
        .ok_or_else(|| anyhow!("--ttl {s:?} is too large"))
}

fn resolve_agent(c: &Client, agent: &str) -> Result<String> {
    let named = |a: &Value| a["name"].as_str() == Some(agent) && a["status"] != "revoked";
    resolve_id(
        c,
        agent,
        ("/v1/agents", "agents"),
        named,
        "no active agent named",
    )
}

pub fn agent(cmd: AgentCmd) -> Result<()> {
    match cmd {
        AgentCmd::Add {
            name,
            scopes,
            ttl,
            allow_ip,
            rate,
            opts,
        } => {
            let c = Client::from_opts(&opts)?;
            let ttl = ttl.as_deref().map(parse_ttl).transpose()?;
            let body = json!({
                "name": name, "scopes": scopes, "ttl_seconds": ttl,
                "ip_allowlist": allow_ip, "rate_limit_per_minute": rate,
            });
            let out = send_json(&c, "POST", "/v1/agents", &body)?;
            if opts.json {
                print_json(&out);
            } else {
                println!(
                    "agent {} ({})",
                    text(&out["name"], ""),
                    text(&out["id"], "")
                );
                println!("token (shown once):");
                println!("{}", text(&out["token"], ""));
            }
        }
        AgentCmd::List { opts } => {
            let c = Client::from_opts(&opts)?;
            let list = c.get("/v1/agents")?;
            if opts.json {
                print_json(&list);
            } else {
                println!(
                    "{:<36}  {:<16}  {:<8}  {:<20}  SCOPES",
                    "ID", "NAME", "STATUS", "EXPIRES"
                );
                for a in list["agents"].as_array().into_iter().flatten() {
                    let scopes = texts(&a["scopes"]);
                    println!(
                        "{:<36}  {:<16}  {:<8}  {:<20}  {}",
                        text(&a["id"], ""),
                        text(&a["name"], ""),
                        text(&a["status"], ""),
                        text(&a["expires_at"], "never"),
                        scopes.join(",")
                    );
                }
            }
        }
        AgentCmd::Revoke { agent, opts } => {
            let c = Client::from_opts(&opts)?;
            let id = resolve_agent(&c, &agent)?;
            delete(&c, &format!("/v1/agents/{id}"), &id, "revoked", opts.json)?;
        }
    }
    Ok(())
}

/// Splits `clavitor://ENTRY/FIELD`; the entry part may itself contain '/', the field not.
pub(super) fn parse_reference(r: &str) -> Result<(&str, &str)> {
    let rest = r
        .strip_prefix("clavitor://")
        .with_context(|| format!("{r:?} is not a reference; expected clavitor://ENTRY/FIELD"))?;
    match rest.rsplit_once('/') {
        Some((e, f)) if !e.is_empty() && !f.is_empty() => Ok((e, f)),
        _ => bail!("{r:?}: expected clavitor://ENTRY/FIELD"),
    }
}

fn fetch(c: &Client, reference: &str) -> Result<Value> {
    let (entry, field) = parse_reference(reference)?;
    let id = resolve_entry(c, entry)?;
    let field = percent_encode(field);
    c.get(&format!("/v1/entries/{id}/fields/{field}"))
}

pub(super) fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

pub fn read(a: ReadArgs) -> Result<()> {
    let c = Client::from_opts(&a.opts)?;
    let f = fetch(&c, &a.reference)?;
    if a.opts.json {
        print_json(&f);
    } else {
        let v = f["value"].as_str().unwrap_or_default();
        if a.no_newline {
            print!("{v}");
        } else {
            println!("{v}");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_and_ttls() {
        assert_eq!(
            parse_reference("clavitor://db/password").unwrap(),
            ("db", "password")
        );
        assert_eq!(parse_reference("clavitor://a/b/c").unwrap(), ("a/b", "c"));
        assert!(parse_reference("clavitor://nofield").is_err());
        assert!(parse_reference("http://x/y").is_err());
        assert_eq!(parse_ttl("90m").unwrap(), 5400);
        assert_eq!(parse_ttl("3600").unwrap(), 3600);
        assert!(parse_ttl("3w").is_err());
    }

    #[test]
    fn field_specs() {
        let mut used = false;
        let f = parse_field("key:credential:ci=a=b", &mut used).unwrap();
        assert_eq!(
            f,
            json!({"name":"key","value":"a=b","tier":"credential","scope":"ci"})
        );
        let f = parse_field("password=x", &mut used).unwrap();
        assert_eq!(f, json!({"name":"password","value":"x"}));
        assert!(parse_field("novalue", &mut used).is_err());
    }
}
