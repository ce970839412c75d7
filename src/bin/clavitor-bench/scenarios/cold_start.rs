//! Cold start: spawning `clavitor serve` on an initialised data dir until the first 200 from
//! `/healthz`, against merely spawning `clavitor --version` (exec, dynamic linking, exit).

use super::{Ctx, Scenario};
use crate::http;
use crate::report::{Figure, Goal, Unit};
use anyhow::{Context, Result, bail};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

pub struct ColdStart;

const RUNS: usize = 5;
const HEALTHZ_TIMEOUT: Duration = Duration::from_secs(10);

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

impl Scenario for ColdStart {
    fn name(&self) -> &'static str {
        "cold-start"
    }

    fn run(&self, ctx: &mut Ctx) -> Result<Vec<Figure>> {
        let dir = match ctx.populated_vault.clone() {
            Some(d) => d,
            None => {
                // No earlier scenario left a vault: initialise one with a throwaway start.
                let d = ctx.dir("cold-start-vault")?;
                ctx.start_clavitor(&d)?.stop()?;
                d
            }
        };
        let db_bytes = std::fs::metadata(dir.join("vault.db")).map_or(0, |m| m.len());

        ctx.progress(self.name(), &format!("{RUNS} x `clavitor --version`"));
        let mut exec_ms = Vec::with_capacity(RUNS);
        for _ in 0..RUNS {
            let t0 = Instant::now();
            let status = Command::new(&ctx.clavitor)
                .arg("--version")
                .stdout(Stdio::null())
                .status()
                .context("cannot run clavitor --version")?;
            exec_ms.push(t0.elapsed().as_secs_f64() * 1000.0);
            if !status.success() {
                bail!("clavitor --version failed: {status}");
            }
        }

        ctx.progress(
            self.name(),
            &format!(
                "{RUNS} x `clavitor serve` until /healthz answers 200 ({db_bytes} byte vault.db)"
            ),
        );
        let mut start_ms = Vec::with_capacity(RUNS);
        for _ in 0..RUNS {
            let t0 = Instant::now();
            let server = ctx.start_clavitor(&dir)?;
            let addr = server.addr;
            let connector = ctx.vault_connector();
            let healthy = ctx.rt.block_on(async {
                loop {
                    if let Ok((200, _)) =
                        http::request_with(&connector, addr, "GET", "/healthz", None, None).await
                    {
                        return true;
                    }
                    if t0.elapsed() > HEALTHZ_TIMEOUT {
                        return false;
                    }
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
            });
            let ms = t0.elapsed().as_secs_f64() * 1000.0;
            server.stop()?;
            if !healthy {
                bail!("/healthz did not answer 200 within {HEALTHZ_TIMEOUT:?}");
            }
            start_ms.push(ms);
        }
        let runs: Vec<f64> = start_ms.clone();
        Ok(vec![
            Figure::new(
                "cold_start_ms",
                format!("Cold start (median of {RUNS})"),
                median(start_ms),
                Unit::Millis,
            )
            .reference("`clavitor --version`", median(exec_ms))
            .goal(Goal {
                below: Some(100.0),
                ..Goal::default()
            })
            .detail("runs_ms", runs)
            .detail("vault_db_bytes", db_bytes),
        ])
    }
}
