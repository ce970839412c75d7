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
        let dir = ctx.dir("reads-vault")?;
        let server = ctx.start_clavitor(&dir)?;
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

        let make = fixed_get(addr, &path, Some(&agent_token));
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
        ])
    }
}
