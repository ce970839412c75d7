//! Durable entry creates through the API, against raw batched-fsync SQLite inserts.

use super::{Ctx, Scenario, entry_creates, expect_status, owner_token};
use crate::disk;
use crate::report::{Figure, Goal, Unit};
use anyhow::{Context, Result};
use std::net::SocketAddr;

pub struct Writes;

/// `(commits, writes)` so far, from the server's `/metrics`.
fn commit_counters(ctx: &Ctx, addr: SocketAddr) -> Result<(f64, f64)> {
    let text = expect_status(
        "metrics",
        ctx.request(addr, "GET", "/metrics", None, None)?,
        200,
    )?;
    let get = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
            .with_context(|| format!("/metrics has no {name}"))
    };
    Ok((
        get("clavitor_store_commits_total")?,
        get("clavitor_store_writes_total")?,
    ))
}

impl Scenario for Writes {
    fn name(&self) -> &'static str {
        "writes"
    }

    fn run(&self, ctx: &mut Ctx) -> Result<Vec<Figure>> {
        let s = ctx.settings;
        let n = s.connections;
        let secs = s.duration.as_secs_f64();

        // The ceiling: the most the vault's group commit could batch is one write per
        // connection, so the raw run commits `n` rows per transaction.
        ctx.progress(
            self.name(),
            &format!("raw SQLite ceiling, {n} rows per fsynced transaction, {secs} s"),
        );
        let raw = disk::run(&ctx.dir("raw-sqlite")?, n, s.warmup, s.duration)?;

        let dir = ctx.dir("writes-vault")?;
        let server = ctx.start_clavitor(&dir)?;
        let addr = server.addr;
        let owner = owner_token(&dir)?;
        let probe = ctx.request(
            addr,
            "POST",
            "/v1/entries",
            Some(&owner),
            Some(r#"{"title":"probe","fields":[{"name":"password","value":"x","tier":"vault"}]}"#),
        )?;
        expect_status("create entry", probe, 201)?;
        let before = commit_counters(ctx, addr)?;

        ctx.progress(
            self.name(),
            &format!("clavitor entry creates, {n} connections, {secs} s"),
        );
        let api = entry_creates(ctx, addr, owner, ctx.vault_connector(), "entry creates")?;
        let after = commit_counters(ctx, addr)?;
        server.stop()?;
        // The same load on the reference build (e.g. one without the audit trail).
        let reference = match ctx.reference.clone() {
            Some(bin) => {
                let dir = ctx.dir("writes-reference")?;
                let server = ctx.start_build(&bin, &dir, &[])?;
                let addr = server.addr;
                let owner = owner_token(&dir)?;
                ctx.progress(
                    self.name(),
                    &format!("reference build's entry creates, {n} connections, {secs} s"),
                );
                let r = entry_creates(
                    ctx,
                    addr,
                    owner,
                    ctx.vault_connector(),
                    "reference build's entry creates",
                )?;
                server.stop()?;
                Some(r)
            }
            None => None,
        };
        // Over warm-up and window alike: the mean batch is a ratio, so that is fine.
        let commits = after.0 - before.0;
        let batch = if commits > 0.0 {
            (after.1 - before.1) / commits
        } else {
            f64::NAN
        };
        ctx.populated_vault = Some(dir);

        let commit_ms = if raw.transactions > 0 {
            raw.seconds * 1000.0 / raw.transactions as f64
        } else {
            f64::NAN
        };
        let counts = |f: Figure| {
            f.detail("created", api.ok)
                .detail("unexpected_status", api.unexpected)
                .detail("connection_errors", api.io_errors)
                .detail("connections", n as u64)
        };
        Ok(vec![
            counts(
                Figure::new(
                    "writes_per_second",
                    format!("Durable writes/s, {n} conns"),
                    api.per_second(),
                    Unit::PerSecond,
                )
                .reference(format!("raw SQLite, {n}/txn"), raw.per_second())
                .goal(Goal {
                    at_least: Some(5_000.0),
                    ratio_at_least: Some(0.50),
                    ..Goal::default()
                }),
            )
            .detail("raw_rows", raw.rows)
            .detail("raw_transactions", raw.transactions),
            counts(
                Figure::new(
                    "write_p50_ms_nconn",
                    format!("Write p50, {n} conns"),
                    api.latency_ms(0.50),
                    Unit::Millis,
                )
                .reference(format!("raw {n}-row commit"), commit_ms),
            ),
            counts(Figure::new(
                "write_p99_ms_nconn",
                format!("Write p99, {n} conns"),
                api.latency_ms(0.99),
                Unit::Millis,
            )),
            Figure::new(
                "writes_per_commit",
                "Writes per group commit (mean)",
                batch,
                Unit::Count,
            )
            .reference("raw batch", n as f64)
            .detail("commits", commits),
        ]
        .into_iter()
        .chain(reference.map(|r| {
            counts(
                Figure::new(
                    "writes_per_second_vs_reference_build",
                    format!("Writes/s vs the reference build, {n} conns"),
                    api.per_second(),
                    Unit::PerSecond,
                )
                .reference("reference build", r.per_second())
                .goal(Goal {
                    ratio_at_least: Some(0.80),
                    ..Goal::default()
                }),
            )
        }))
        .collect())
    }
}
