//! Catch-up: a primary owes its backup N entries (real ones, written through the library while
//! the primary was stopped), runs with the backup down until it has given up its first round of
//! retries, then the backup starts. Measured: from starting the backup until the primary's
//! `/healthz` reports backlog 0 and acked_version == committed_version.

use super::{Ctx, Scenario};
use crate::pop::health::{Prober, Replication};
use crate::pop::prefill;
use crate::report::{Figure, Goal, Unit, thousands};
use anyhow::{Result, ensure};
use std::time::{Duration, Instant};

pub struct CatchUp;

/// Polling `/healthz` costs the primary a count over its owed rows (about 7 ms of CPU at
/// 100,000 owed): every 100 ms keeps that under a tenth of a core, and resolves a figure
/// measured in seconds well enough.
const POLL_EVERY: Duration = Duration::from_millis(100);

impl Scenario for CatchUp {
    fn name(&self) -> &'static str {
        "catch-up"
    }

    fn run(&self, ctx: &mut Ctx) -> Result<Vec<Figure>> {
        let n = ctx.pop.opts.catchup_entries;
        let https = ctx.pop.https.clone();
        let pair = ctx.pop.pair("catchup")?;
        let owner = pair.owner_token()?;
        ctx.progress(
            self.name(),
            &format!(
                "writing {} entries into the stopped primary through the library",
                thousands(n as f64)
            ),
        );
        let filled = ctx
            .rt
            .block_on(prefill::fill(&pair.primary.data, &owner, n))?;

        let primary = ctx.spawn(
            "catchup-primary",
            pair.primary.serve_command(&ctx.clavitor, "127.0.0.1:0"),
        )?;
        let mut probe = Prober::new(primary.addr, https.clone());
        ctx.progress(
            self.name(),
            "backup down: waiting for the primary to give up its first round of retries",
        );
        let down = ctx.rt.block_on(probe.wait(
            "the primary to report the backup unreachable",
            POLL_EVERY,
            Duration::from_secs(60),
            |r| r.last_error.is_some(),
        ))?;
        ensure!(
            down.backlog >= n as i64,
            "the primary owes only {} rows, expected at least {n}",
            down.backlog
        );

        ctx.progress(
            self.name(),
            &format!(
                "starting the backup; {} rows owed, committed version {}",
                down.backlog, down.committed_version
            ),
        );
        // Generous: a slow disk must show up as a slow figure, not as a failure.
        let timeout = Duration::from_secs(60).max(Duration::from_millis(n * 2));
        let t0 = Instant::now();
        let backup = ctx.spawn(
            "catchup-backup",
            pair.backup
                .serve_command(&ctx.clavitor, &pair.backup_listen),
        )?;
        let backup_ready = t0.elapsed();
        let mut first_ack = None;
        let done = ctx.rt.block_on(probe.wait(
            "the primary to catch up",
            POLL_EVERY,
            timeout,
            |r: &Replication| {
                if first_ack.is_none() && r.backlog < down.backlog {
                    first_ack = Some(t0.elapsed());
                }
                r.caught_up()
            },
        ))?;
        let total = t0.elapsed();
        let first_ack = first_ack.unwrap_or(total);

        // The rows must be usable there: read sample fields on the backup as the owner.
        let baddr = backup.addr;
        ctx.rt.block_on(async {
            let mut conn = https.connect(baddr).await?;
            for (id, value) in &filled.samples {
                let path = format!("/v1/entries/{id}/fields/password");
                let (status, body) = conn
                    .request(baddr, "GET", &path, Some(&owner), None)
                    .await?;
                ensure!(
                    status == 200 && super::json_str(&body, "value")? == *value,
                    "entry {id} on the backup: HTTP {status}: {body}"
                );
            }
            Ok::<_, anyhow::Error>(())
        })?;
        primary.stop()?;
        backup.stop()?;

        let drain = (total - first_ack).as_secs_f64();
        let details = |f: Figure| {
            f.detail("entries", n)
                .detail("rows_owed", down.backlog)
                .detail("committed_version", done.committed_version)
                .detail("backup_start_ms", backup_ready.as_secs_f64() * 1e3)
                .detail("first_ack_ms", first_ack.as_secs_f64() * 1e3)
                .detail("drain_ms", drain * 1e3)
                .detail("fill_seconds", filled.seconds)
                .detail("poll_every_ms", POLL_EVERY.as_secs_f64() * 1e3)
                .detail("samples_checked_on_backup", filled.samples.len() as u64)
        };
        Ok(vec![
            details(
                Figure::new(
                    "catch_up_ms",
                    format!("Catch-up, {} entries owed", thousands(n as f64)),
                    total.as_secs_f64() * 1e3,
                    Unit::Millis,
                )
                .goal(Goal {
                    below: Some(10_000.0),
                    ..Goal::default()
                }),
            ),
            details(Figure::new(
                "catch_up_first_ack_ms",
                "Catch-up: backup start to first ack",
                first_ack.as_secs_f64() * 1e3,
                Unit::Millis,
            )),
            details(
                Figure::new(
                    "catch_up_entries_per_second",
                    "Catch-up entries/s (first ack -> done)",
                    if drain > 0.0 {
                        n as f64 / drain
                    } else {
                        f64::NAN
                    },
                    Unit::PerSecond,
                )
                .reference("local fill via library", n as f64 / filled.seconds),
            ),
        ])
    }
}
