//! Client write throughput with replication on vs off: the same closed-loop entry creates over
//! HTTPS against (off) a primary whose backup is unreachable and (on) a primary with its backup
//! running, each on a fresh vault.
//!
//! "Off" is a primary whose backup URL is a closed local port: the Commercial binary cannot run
//! without a backup configured, and with the backup refusing connections the primary's pushes
//! fail at once and back off (seconds between attempts), so it does all of its own write work
//! and next to none of replication's. Its rows simply stay owed.

use super::{Ctx, Scenario, https_entry_creates, lone_primary_entry_creates};
use crate::pop::health::{Prober, Replication};
use crate::report::{Figure, Goal, Unit};
use anyhow::Result;
use std::time::{Duration, Instant};

pub struct ReplicationThroughput;

const SETTLE: Duration = Duration::from_secs(60);

impl Scenario for ReplicationThroughput {
    fn name(&self) -> &'static str {
        "replication-throughput"
    }

    fn run(&self, ctx: &mut Ctx) -> Result<Vec<Figure>> {
        let s = ctx.settings;
        let n = s.connections;
        let secs = s.duration.as_secs_f64();
        let https = ctx.pop.https.clone();

        let off = lone_primary_entry_creates(
            ctx,
            self.name(),
            "tput-off",
            &format!(
                "replication off (backup unreachable): entry creates over HTTPS, {n} connections, {secs} s"
            ),
        )?;

        let pair = ctx.pop.pair("tput")?;
        let backup = ctx.spawn(
            "tput-backup",
            pair.backup
                .serve_command(&ctx.clavitor, &pair.backup_listen),
        )?;
        let primary = ctx.spawn(
            "tput-primary",
            pair.primary.serve_command(&ctx.clavitor, "127.0.0.1:0"),
        )?;
        let mut probe = Prober::new(primary.addr, https);
        ctx.rt.block_on(probe.wait(
            "the primary to replicate its owner to the backup",
            Duration::from_millis(20),
            SETTLE,
            Replication::caught_up,
        ))?;
        ctx.progress(
            self.name(),
            &format!("replication on (backup running): entry creates over HTTPS, {n} connections, {secs} s"),
        );
        let on = https_entry_creates(ctx, primary.addr, pair.owner_token()?)?;
        let t_end = Instant::now();
        let at_end = ctx.rt.block_on(probe.get())?;
        let settled = ctx.rt.block_on(probe.wait(
            "the backup to catch up after the load",
            Duration::from_millis(20),
            SETTLE,
            Replication::caught_up,
        ))?;
        let drain_after = t_end.elapsed();
        primary.stop()?;
        backup.stop()?;

        let details = |f: Figure| {
            f.detail("connections", n as u64)
                .detail("off_created", off.ok)
                .detail("on_created", on.ok)
                .detail("off_errors", off.unexpected + off.io_errors)
                .detail("on_errors", on.unexpected + on.io_errors)
                .detail("backlog_at_end_of_window", at_end.backlog)
                .detail("caught_up_after_window_ms", drain_after.as_secs_f64() * 1e3)
                .detail("lag_p99_ms", settled.lag_p99_ms)
        };
        Ok(vec![
            details(
                Figure::new(
                    "replication_on_writes_per_second",
                    format!("Writes/s, HTTPS, {n} conns, replication on"),
                    on.per_second(),
                    Unit::PerSecond,
                )
                .reference("replication off", off.per_second())
                .goal(Goal {
                    ratio_at_least: Some(0.80),
                    ..Goal::default()
                }),
            ),
            details(
                Figure::new(
                    "replication_on_write_p99_ms",
                    format!("Write p99, HTTPS, {n} conns, replication on"),
                    on.latency_ms(0.99),
                    Unit::Millis,
                )
                .reference("replication off", off.latency_ms(0.99)),
            ),
        ])
    }
}
