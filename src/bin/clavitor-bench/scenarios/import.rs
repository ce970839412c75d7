//! A 10,000-item Bitwarden-shaped export imported end to end: the real `clavitor import` CLI
//! process (parse, prepare, one bulk request) against a real server, until it exits. The
//! reference is the same command with `--dry-run` (the CLI's own share: reading the file and
//! preparing the entries, no request).

use super::{Ctx, Scenario, expect_status};
use crate::report::{Figure, Goal, Unit};
use anyhow::{Context, Result, bail};
use serde_json::{Value, json};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

pub struct Import;

const ITEMS: usize = 10_000;
const RUNS: usize = 3;

/// A Bitwarden unencrypted JSON export of `n` logins in a few folders, shaped like a real one:
/// URIs, username, password, every third with a TOTP seed, notes, a text and a hidden custom
/// field, password history.
fn bitwarden_export(n: usize) -> Value {
    let folders: Vec<Value> = (0..8)
        .map(|f| json!({"id": format!("folder-{f}"), "name": format!("Folder {f}")}))
        .collect();
    let items: Vec<Value> = (0..n)
        .map(|i| {
            json!({
                "id": format!("item-{i}"),
                "organizationId": null,
                "folderId": if i % 3 == 0 { Value::Null } else { json!(format!("folder-{}", i % 8)) },
                "type": 1,
                "reprompt": 0,
                "name": format!("Site {i}"),
                "notes": format!("Account number {i}; created by the bench."),
                "favorite": false,
                "fields": [
                    {"name": "customer id", "value": format!("C-{i:06}"), "type": 0, "linkedId": null},
                    {"name": "security answer", "value": format!("answer-{i}-0123456789"), "type": 1, "linkedId": null},
                ],
                "login": {
                    "fido2Credentials": [],
                    "uris": [{"match": null, "uri": format!("https://site{i}.example.com/login")}],
                    "username": format!("user{i}@example.com"),
                    "password": format!("bench-password-{i}-abcdefghijklmnop"),
                    "totp": if i % 3 == 0 { json!("JBSWY3DPEHPK3PXP") } else { Value::Null },
                },
                "passwordHistory": [{"lastUsedDate": "2025-01-01T00:00:00.000Z", "password": format!("old-{i}")}],
                "collectionIds": null,
                "revisionDate": "2025-09-01T10:00:00.000Z",
                "creationDate": "2024-01-15T09:30:00.000Z",
                "deletedDate": null,
            })
        })
        .collect();
    json!({"encrypted": false, "folders": folders, "items": items})
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Runs `clavitor import bitwarden FILE ...` to completion; returns its wall time in ms.
fn run_import(ctx: &Ctx, file: &Path, extra: &[&str], home: &Path) -> Result<f64> {
    let t0 = Instant::now();
    let out = Command::new(&ctx.clavitor)
        .arg("import")
        .arg("bitwarden")
        .arg(file)
        .args(extra)
        .env_remove("CLAVITOR_TOKEN")
        .env_remove("CLAVITOR_SERVER")
        .env("HOME", home)
        .env("XDG_CONFIG_HOME", home)
        .stdin(Stdio::null())
        .output()
        .context("cannot run clavitor import")?;
    let ms = t0.elapsed().as_secs_f64() * 1000.0;
    if !out.status.success() {
        bail!(
            "clavitor import failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(ms)
}

/// The server's live entry count, from `/metrics`.
fn entry_count(ctx: &Ctx, addr: std::net::SocketAddr) -> Result<f64> {
    let text = expect_status(
        "metrics",
        ctx.request(addr, "GET", "/metrics", None, None)?,
        200,
    )?;
    text.lines()
        .find_map(|l| l.strip_prefix("clavitor_entries ")?.trim().parse().ok())
        .context("/metrics has no clavitor_entries")
}

impl Scenario for Import {
    fn name(&self) -> &'static str {
        "import"
    }

    fn run(&self, ctx: &mut Ctx) -> Result<Vec<Figure>> {
        let dir = ctx.dir("import")?;
        let file = dir.join("bitwarden-10k.json");
        let export = serde_json::to_vec(&bitwarden_export(ITEMS))?;
        std::fs::write(&file, &export)
            .with_context(|| format!("cannot write {}", file.display()))?;
        let home = ctx.dir("import-home")?;

        ctx.progress(
            self.name(),
            &format!(
                "{RUNS} x `clavitor import bitwarden --dry-run` of {ITEMS} items ({} bytes)",
                export.len()
            ),
        );
        let mut dry = Vec::with_capacity(RUNS);
        for _ in 0..RUNS {
            dry.push(run_import(ctx, &file, &["--dry-run"], &home)?);
        }

        ctx.progress(
            self.name(),
            &format!(
                "{RUNS} x `clavitor import bitwarden` of {ITEMS} items, each into a fresh vault"
            ),
        );
        let mut full = Vec::with_capacity(RUNS);
        for run in 0..RUNS {
            let data = ctx.dir(&format!("import-vault-{run}"))?;
            let server = ctx.start_clavitor(&data)?;
            let addr = server.addr;
            let token = crate::proc::owner_token_file(&data);
            let url = format!("http://{addr}");
            let ms = run_import(
                ctx,
                &file,
                &[
                    "--server",
                    &url,
                    "--token-file",
                    token.to_str().unwrap_or_default(),
                ],
                &home,
            )?;
            let count = entry_count(ctx, addr)?;
            server.stop()?;
            if count as usize != ITEMS {
                bail!("after the import the server holds {count} entries, not {ITEMS}");
            }
            full.push(ms);
        }
        Ok(vec![
            Figure::new(
                "import_10k_ms",
                format!("Import of {ITEMS} Bitwarden items, end to end (median of {RUNS})"),
                median(full.clone()),
                Unit::Millis,
            )
            .reference(
                "same import with `--dry-run` (CLI only)",
                median(dry.clone()),
            )
            .goal(Goal {
                below: Some(5000.0),
                ..Goal::default()
            })
            .detail("runs_ms", full)
            .detail("dry_run_ms", dry)
            .detail("file_bytes", export.len()),
        ])
    }
}
