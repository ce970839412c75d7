//! `clavitor audit`: the trail from a server (`[--follow] [--actor ID] [--action A]`), its
//! signed head (`audit head`), and offline verification of a stopped vault's files
//! (`audit verify --data-dir DIR [--head FILE|STRING]`).
//!
//! `verify` takes the data dir's lock only to see that no server holds it: a running vault is
//! refused (its files change under the reader), never disturbed. It needs `master.key` to check
//! the head's MAC, so it runs where the key is.

use super::ClientOpts;
use super::client::Client;
use super::output::escape;
use crate::audit::{ChainReport, Finding, parse_head, verify_all};
use crate::crypto::MasterKey;
use crate::datadir::{self, DB_FILE, KEY_FILE, LOCK_FILE};
use crate::files;
use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use rusqlite::{Connection, OpenFlags};
use serde_json::{Value, json};
use std::fs::{self, File};
use std::io::{ErrorKind, Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

/// Events asked for per request.
const PAGE: usize = 500;
/// How often `--follow` asks for new events.
const FOLLOW_EVERY: Duration = Duration::from_secs(2);

#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct AuditArgs {
    #[command(subcommand)]
    cmd: Option<AuditCmd>,
    /// Keep printing new events as they are recorded (asks every 2 s; Ctrl-C stops).
    #[arg(long)]
    follow: bool,
    /// Only events by this actor (an owner, user or agent id).
    #[arg(long, value_name = "ID")]
    actor: Option<String>,
    /// Only events of this action (e.g. field.read, entry.create, auth.failed).
    #[arg(long, value_name = "ACTION")]
    action: Option<String>,
    #[command(flatten)]
    opts: ClientOpts,
}

#[derive(Debug, Subcommand)]
enum AuditCmd {
    /// Print the trail's signed head (keep it elsewhere; `verify --head` checks against it).
    Head,
    /// Check a stopped vault's whole trail offline; exit 0 if intact, 1 naming the first event
    /// that does not fit.
    Verify {
        /// The vault's data dir (it must not be running; needs master.key).
        #[arg(long, default_value = datadir::DEFAULT_DIR)]
        data_dir: PathBuf,
        /// A head printed earlier by `clavitor audit head`, or a file holding one: the trail
        /// must still contain that event, unchanged (catches a rollback or a rewrite).
        #[arg(long, value_name = "FILE|STRING")]
        head: Option<String>,
    },
}

pub fn audit(a: AuditArgs) -> Result<ExitCode> {
    match a.cmd {
        None => list(&a.opts, a.follow, a.actor, a.action).map(|()| ExitCode::SUCCESS),
        Some(AuditCmd::Head) => head(&a.opts).map(|()| ExitCode::SUCCESS),
        Some(AuditCmd::Verify { data_dir, head }) => {
            verify(&data_dir, head.as_deref(), a.opts.json)
        }
    }
}

/// Query-string text: everything but unreserved characters percent-encoded.
fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

fn list(o: &ClientOpts, follow: bool, actor: Option<String>, action: Option<String>) -> Result<()> {
    let client = Client::from_opts(o)?;
    let mut filter = String::new();
    if let Some(a) = &actor {
        filter.push_str(&format!("&actor={}", encode(a)));
    }
    if let Some(a) = &action {
        filter.push_str(&format!("&action={}", encode(a)));
    }
    let mut after = String::from("0");
    let mut out = std::io::stdout().lock();
    loop {
        let page = client.get(&format!(
            "/v1/audit?after={}&limit={PAGE}{filter}",
            encode(&after)
        ))?;
        let events = page["events"].as_array().cloned().unwrap_or_default();
        for e in &events {
            if o.json {
                writeln!(out, "{e}")?;
            } else {
                writeln!(out, "{}", human(e))?;
            }
        }
        out.flush()?;
        let next = page["next"]
            .as_str()
            .context("the server's audit page has no \"next\" cursor")?
            .to_owned();
        let more = events.len() >= PAGE;
        after = next;
        if more {
            continue;
        }
        if !follow {
            return Ok(());
        }
        std::thread::sleep(FOLLOW_EVERY);
    }
}

/// One line per event: time, seq, actor, action, target, outcome, address, request id, details.
fn human(e: &Value) -> String {
    let s = |v: &Value| escape(v.as_str().unwrap_or("-")).into_owned();
    let actor = match e["actor"]["id"].as_str() {
        Some(id) => format!("{}:{}", s(&e["actor"]["kind"]), escape(id)),
        None => s(&e["actor"]["kind"]),
    };
    let details = e["details"]
        .as_object()
        .map(|d| {
            d.iter()
                .map(|(k, v)| format!("{}={}", escape(k), s(v)))
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_default();
    format!(
        "{} {:>6} {} {} {} {} ip={} req={} {}",
        s(&e["time"]),
        e["seq"].as_i64().unwrap_or(0),
        actor,
        s(&e["action"]),
        s(&e["target"]),
        s(&e["outcome"]),
        s(&e["ip"]),
        s(&e["request_id"]),
        details
    )
    .trim_end()
    .to_owned()
}

fn head(o: &ClientOpts) -> Result<()> {
    let client = Client::from_opts(o)?;
    let v = client.get("/v1/audit/head")?;
    if o.json {
        println!("{v}");
        return Ok(());
    }
    match v["head"].as_str() {
        Some(h) => println!("{}", escape(h)),
        None => println!("the audit trail is empty: no head yet"),
    }
    Ok(())
}

/// Refuses a data dir a server holds: its files change under a reader. Returns the lock
/// file, held (shared with nobody) while verifying, so no server starts meanwhile.
fn stopped(dir: &Path) -> Result<Option<File>> {
    let path = dir.join(LOCK_FILE);
    let mut f = match File::open(&path) {
        Ok(f) => f,
        // No lock file: no server has run here since it was made.
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("cannot open {}", path.display())),
    };
    match f.try_lock() {
        Ok(()) => Ok(Some(f)),
        Err(fs::TryLockError::WouldBlock) => {
            let mut pid = String::new();
            let _ = f.read_to_string(&mut pid);
            let holder = pid
                .trim()
                .parse::<u32>()
                .map(|p| format!(" (pid {p})"))
                .unwrap_or_default();
            bail!(
                "the vault in {} is running{holder}; verify reads a stopped vault's files. Fix: stop the server first, or verify a copy of the data dir made while it was stopped",
                dir.display()
            )
        }
        Err(fs::TryLockError::Error(e)) => {
            Err(e).with_context(|| format!("cannot lock {}", path.display()))
        }
    }
}

fn verify(dir: &Path, kept: Option<&str>, json: bool) -> Result<ExitCode> {
    let kept = match kept {
        None => None,
        Some(arg) => {
            let text = if Path::new(arg).is_file() {
                fs::read_to_string(arg).with_context(|| format!("cannot read {arg}"))?
            } else {
                arg.to_owned()
            };
            Some(parse_head(&text).with_context(|| format!("--head {:?}", escape(arg)))?)
        }
    };
    let db = dir.join(DB_FILE);
    if !db.is_file() {
        bail!(
            "{} does not exist: {} holds no vault. Fix: pass the vault's --data-dir",
            db.display(),
            dir.display()
        );
    }
    let _lock = stopped(dir)?;
    let key_path = dir.join(KEY_FILE);
    let raw = files::read_private(&key_path)?;
    let key = MasterKey::from_bytes(&raw)
        .with_context(|| {
            format!(
                "{}: not a master key (expected 32 bytes)",
                key_path.display()
            )
        })?
        .audit_key();
    drop(raw);
    // Read-write without create, so a WAL left by a crash is read as SQLite would; nothing is
    // written (query_only).
    let conn = Connection::open_with_flags(&db, OpenFlags::SQLITE_OPEN_READ_WRITE)
        .with_context(|| format!("cannot open {}", db.display()))?;
    conn.execute_batch("PRAGMA query_only = 1;")?;
    let has_trail = conn
        .query_row(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'audit'",
            [],
            |_| Ok(()),
        )
        .is_ok();
    if !has_trail {
        bail!(
            "{} has no audit trail yet (it was last opened by a clavitor without one). Fix: start it once with this version",
            db.display()
        );
    }
    match verify_all(&conn, &key, kept.as_ref()) {
        Ok(reports) => {
            if json {
                println!(
                    "{}",
                    json!({ "intact": true, "chains": reports.iter().map(report_json).collect::<Vec<_>>() })
                );
            } else {
                for r in &reports {
                    println!("{}", report_line(r));
                }
                println!("audit trail intact");
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(f) => {
            if json {
                println!(
                    "{}",
                    json!({ "intact": false, "chain": f.chain, "seq": f.seq, "message": f.message })
                );
            } else {
                eprintln!("{}", finding_line(&f));
            }
            Ok(ExitCode::from(1))
        }
    }
}

fn report_json(r: &ChainReport) -> Value {
    json!({
        "chain": r.name,
        "events": r.events,
        "first": r.head.anchor_seq,
        "head": r.head.seq,
        "kept": r.kept,
        "unsigned_tail": r.unsigned_tail,
    })
}

fn report_line(r: &ChainReport) -> String {
    let mut line = if r.events == 0 {
        format!("{}: no events", r.name)
    } else {
        format!(
            "{}: {} events, {} to {}, chain and signed head verified",
            r.name,
            r.events,
            r.head.anchor_seq,
            r.head.anchor_seq + i64::try_from(r.events).unwrap_or(i64::MAX) - 1
        )
    };
    if r.head.anchor_seq > 1 {
        line.push_str(&format!(
            " (events before {} were deleted by retention)",
            r.head.anchor_seq
        ));
    }
    if r.unsigned_tail > 0 {
        line.push_str(&format!(
            "; the last {} arrived after the last head received and are linked but not yet signed",
            r.unsigned_tail
        ));
    }
    if let Some(k) = &r.kept {
        line.push_str(&format!("; {k}"));
    }
    line
}

fn finding_line(f: &Finding) -> String {
    match f.seq {
        Some(seq) => format!(
            "audit trail NOT intact: {} chain, event {seq}: {}",
            f.chain, f.message
        ),
        None => format!("audit trail NOT intact: {} chain: {}", f.chain, f.message),
    }
}
