//! Field reads with an agent token, against the bare-axum ceiling under the same load.

use super::{Ctx, Scenario, expect_status, json_str, owner_token};
use crate::http::{Connector, build_request};
use crate::load::{LoadResult, LoadSpec, MakeRequest};
use crate::report::{Figure, Goal, Unit};
use anyhow::{Result, ensure};
use std::net::SocketAddr;
use std::sync::Arc;

pub struct Reads;

const FIELD: &str = "password";
const VALUE: &str = "correct-horse-battery-staple";

fn fixed_get(addr: SocketAddr, path: &str, token: Option<&str>) -> MakeRequest {
    let mut req = Vec::new();
    build_request(&mut req, "GET", path, addr, token, None);
    Arc::new(move |out: &mut Vec<u8>, _, _| out.extend_from_slice(&req))
}

impl Scenario for Reads {
    fn name(&self) -> &'static str {
        "reads"
    }

    fn run(&self, ctx: &mut Ctx) -> Result<Vec<Figure>> {
        let s = ctx.settings;
        let n = s.connections;
        let secs = s.duration.as_secs_f64();
        let vault = ctx.vault_connector();
        let spec = |addr, make: &MakeRequest, connections, expect| LoadSpec {
            addr,
            connections,
            warmup: s.warmup,
            duration: s.duration,
            expect,
            make: make.clone(),
            connector: Connector::Plain,
            pace: None,
            on_response: None,
        };
        // The vault under test: HTTPS in a Commercial build.
        let vault_spec = |addr, make: &MakeRequest, connections, expect| LoadSpec {
            connector: vault.clone(),
            ..spec(addr, make, connections, expect)
        };

        // The ceiling: same framework, same client, same load, nothing behind the handler.
        let bare = ctx.start_bare()?;
        let make = fixed_get(bare.addr, "/v1/entries/x/fields/password", None);
        ctx.progress(
            self.name(),
            &format!("bare axum ceiling, {n} connections, {secs} s"),
        );
        let bare_n = ctx.load(spec(bare.addr, &make, n, 200))?;
        bare_n.require_success("bare server")?;
        ctx.progress(
            self.name(),
            &format!("bare axum ceiling, 1 connection, {secs} s"),
        );
        let bare_1 = ctx.load(spec(bare.addr, &make, 1, 200))?;
        bare_1.require_success("bare server")?;
        bare.stop()?;

        // The vault: one entry with a vault-tier field in scope "bench", read by an agent.
        // Each read is recorded in the audit trail (the default: without waiting for it).
        let (server, addr, make) = reader_vault(ctx, "reads-vault", &ctx.clavitor.clone(), &[])?;
        ctx.progress(
            self.name(),
            &format!("clavitor field reads, {n} connections, {secs} s"),
        );
        let vault_n = ctx.load(vault_spec(addr, &make, n, 200))?;
        vault_n.require_success("field reads")?;
        ctx.progress(
            self.name(),
            &format!("clavitor field reads, 1 connection, {secs} s"),
        );
        let vault_1 = ctx.load(vault_spec(addr, &make, 1, 200))?;
        vault_1.require_success("field reads")?;
        server.stop()?;

        // The same build without read events (a hidden flag), and with --audit-sync.
        let (server, addr, make) = reader_vault(
            ctx,
            "reads-no-events",
            &ctx.clavitor.clone(),
            &["--audit-no-reads"],
        )?;
        ctx.progress(
            self.name(),
            &format!("clavitor field reads without read events, {n} connections, {secs} s"),
        );
        let off_n = ctx.load(vault_spec(addr, &make, n, 200))?;
        off_n.require_success("field reads without read events")?;
        server.stop()?;
        let (server, addr, make) =
            reader_vault(ctx, "reads-sync", &ctx.clavitor.clone(), &["--audit-sync"])?;
        ctx.progress(
            self.name(),
            &format!("clavitor field reads with --audit-sync, {n} connections, {secs} s"),
        );
        let sync_n = ctx.load(vault_spec(addr, &make, n, 200))?;
        sync_n.require_success("field reads with --audit-sync")?;
        ctx.progress(
            self.name(),
            &format!("clavitor field reads with --audit-sync, 1 connection, {secs} s"),
        );
        let sync_1 = ctx.load(vault_spec(addr, &make, 1, 200))?;
        sync_1.require_success("field reads with --audit-sync")?;
        server.stop()?;
        let reference_n = match ctx.reference.clone() {
            Some(bin) => {
                let (server, addr, make) = reader_vault(ctx, "reads-reference", &bin, &[])?;
                ctx.progress(
                    self.name(),
                    &format!("reference build's field reads, {n} connections, {secs} s"),
                );
                let r = ctx.load(vault_spec(addr, &make, n, 200))?;
                r.require_success("reference build's field reads")?;
                server.stop()?;
                Some(r)
            }
            None => None,
        };

        let counts = |f: Figure, r: &LoadResult| {
            f.detail("ok", r.ok)
                .detail("unexpected_status", r.unexpected)
                .detail("connection_errors", r.io_errors)
                .detail("requests_per_second", r.per_second())
        };
        let lat = |key, label: String, q: f64, v: &LoadResult, b: &LoadResult| {
            counts(
                Figure::new(key, label, v.latency_ms(q), Unit::Millis)
                    .reference("bare", b.latency_ms(q)),
                v,
            )
        };
        Ok(vec![
            counts(
                Figure::new(
                    "reads_per_second",
                    format!("Field reads/s, {n} conns"),
                    vault_n.per_second(),
                    Unit::PerSecond,
                )
                .reference("bare axum", bare_n.per_second())
                .goal(Goal {
                    at_least: Some(13_000.0),
                    ratio_at_least: Some(0.60),
                    ..Goal::default()
                }),
                &vault_n,
            )
            .detail("connections", n as u64),
            lat(
                "read_p50_ms_1conn",
                "Read p50, 1 conn".into(),
                0.50,
                &vault_1,
                &bare_1,
            ),
            lat(
                "read_p99_ms_1conn",
                "Read p99, 1 conn".into(),
                0.99,
                &vault_1,
                &bare_1,
            )
            .goal(Goal {
                below: Some(1.0),
                ..Goal::default()
            }),
            lat(
                "read_p50_ms_nconn",
                format!("Read p50, {n} conns"),
                0.50,
                &vault_n,
                &bare_n,
            ),
            lat(
                "read_p99_ms_nconn",
                format!("Read p99, {n} conns"),
                0.99,
                &vault_n,
                &bare_n,
            ),
            counts(
                Figure::new(
                    "reads_per_second_audited",
                    format!("Reads/s with read events, {n} conns"),
                    vault_n.per_second(),
                    Unit::PerSecond,
                )
                .reference("no read events", off_n.per_second())
                .goal(Goal {
                    ratio_at_least: Some(0.70),
                    ..Goal::default()
                }),
                &vault_n,
            )
            .detail("reference_ok", off_n.ok),
            counts(
                Figure::new(
                    "reads_per_second_audit_sync",
                    format!("Reads/s with --audit-sync, {n} conns"),
                    sync_n.per_second(),
                    Unit::PerSecond,
                )
                .reference("default (no wait)", vault_n.per_second()),
                &sync_n,
            ),
            lat(
                "read_p50_ms_1conn_audit_sync",
                "Read p50 with --audit-sync, 1 conn".into(),
                0.50,
                &sync_1,
                &bare_1,
            ),
        ]
        .into_iter()
        .chain(reference_n.map(|r| {
            counts(
                Figure::new(
                    "reads_per_second_vs_reference_build",
                    format!("Reads/s vs the reference build, {n} conns"),
                    vault_n.per_second(),
                    Unit::PerSecond,
                )
                .reference("reference build", r.per_second())
                .goal(Goal {
                    ratio_at_least: Some(0.70),
                    ..Goal::default()
                }),
                &vault_n,
            )
        }))
        .collect())
    }
}

/// A server of `clavitor` (with `extra` flags) on a fresh vault holding one entry with a
/// vault-tier field, and an agent allowed to read it: the server, its address, and the
/// agent's field read.
fn reader_vault(
    ctx: &Ctx,
    dir: &str,
    clavitor: &std::path::Path,
    extra: &[&str],
) -> Result<(crate::proc::ServerProcess, SocketAddr, MakeRequest)> {
    let dir = ctx.dir(dir)?;
    let server = ctx.start_build(clavitor, &dir, extra)?;
    let addr = server.addr;
    let owner = owner_token(&dir)?;
    let entry = format!(
        r#"{{"title":"bench","fields":[{{"name":"{FIELD}","value":"{VALUE}","tier":"vault","scope":"bench"}}]}}"#
    );
    let created = ctx.request(addr, "POST", "/v1/entries", Some(&owner), Some(&entry))?;
    let id = json_str(&expect_status("create entry", created, 201)?, "id")?;
    let agent = r#"{"name":"bench-reader","scopes":["bench"],"rate_limit_per_minute":1000000}"#;
    let created = ctx.request(addr, "POST", "/v1/agents", Some(&owner), Some(agent))?;
    let agent_token = json_str(&expect_status("create agent", created, 201)?, "token")?;
    let path = format!("/v1/entries/{id}/fields/{FIELD}");
    let check = ctx.request(addr, "GET", &path, Some(&agent_token), None)?;
    let body = expect_status("agent field read", check, 200)?;
    ensure!(
        json_str(&body, "value")? == VALUE,
        "the field read returned the wrong value: {body}"
    );
    Ok((server, addr, fixed_get(addr, &path, Some(&agent_token))))
}
