//! The `replication` object of a POP's `/healthz`, read over one kept-alive connection so that
//! polling costs the POP one small request, not a TLS handshake each time.

use crate::http::{Conn, Connector};
use anyhow::{Context, Result, bail};
use serde_json::Value;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// The primary's view (see `Status::report` in the replication module); the backup reports
/// only `committed_version` and `applied_watermark` (of what is read here).
#[derive(Debug, Clone, Default)]
pub struct Replication {
    pub backlog: i64,
    pub committed_version: i64,
    /// Every change at or below it is on the backup (primary).
    pub acked_watermark: i64,
    /// Every change at or below it is on this backup: its recovery point.
    pub applied_watermark: i64,
    pub last_error: Option<String>,
    pub failing_since: Option<String>,
    pub lag_p50_ms: Option<f64>,
    pub lag_p99_ms: Option<f64>,
}

impl Replication {
    /// The primary's own definition of caught up (as the replication tests use it).
    pub fn caught_up(&self) -> bool {
        self.backlog == 0
            && self.acked_watermark == self.committed_version
            && self.failing_since.is_none()
    }

    fn parse(body: &str) -> Result<Self> {
        let v: Value = serde_json::from_str(body).with_context(|| format!("not JSON: {body}"))?;
        let r = v
            .get("replication")
            .with_context(|| format!("/healthz has no replication object: {body}"))?;
        let int = |k: &str| r.get(k).and_then(Value::as_i64).unwrap_or(0);
        let text = |k: &str| r.get(k).and_then(Value::as_str).map(str::to_owned);
        let lag = |k: &str| {
            r.get("lag_ms")
                .and_then(|l| l.get(k))
                .and_then(Value::as_f64)
        };
        Ok(Self {
            backlog: int("backlog"),
            committed_version: int("committed_version"),
            acked_watermark: int("acked_watermark"),
            applied_watermark: int("applied_watermark"),
            last_error: text("last_error"),
            failing_since: text("failing_since"),
            lag_p50_ms: lag("p50"),
            lag_p99_ms: lag("p99"),
        })
    }
}

pub struct Prober {
    addr: SocketAddr,
    connector: Connector,
    conn: Option<Conn>,
}

impl Prober {
    pub fn new(addr: SocketAddr, connector: Connector) -> Self {
        Self {
            addr,
            connector,
            conn: None,
        }
    }

    pub async fn get(&mut self) -> Result<Replication> {
        let reused = self.conn.is_some();
        match self.try_get().await {
            // The server may have closed a kept-alive connection: one retry on a new one.
            Err(_) if reused => {
                self.conn = None;
                self.try_get().await
            }
            r => r,
        }
    }

    async fn try_get(&mut self) -> Result<Replication> {
        let conn = match self.conn.as_mut() {
            Some(c) => c,
            None => self.conn.insert(
                self.connector
                    .connect(self.addr)
                    .await
                    .with_context(|| format!("cannot connect to {}", self.addr))?,
            ),
        };
        let res = conn.request(self.addr, "GET", "/healthz", None, None).await;
        let (status, body) = match res {
            Ok(r) => r,
            Err(e) => {
                self.conn = None;
                return Err(e).context(format!("GET /healthz on {}", self.addr));
            }
        };
        if status != 200 {
            bail!("GET /healthz on {}: HTTP {status}: {body}", self.addr);
        }
        Replication::parse(&body)
    }

    /// Polls every `every` until `done` holds; fails with the last state after `timeout`.
    pub async fn wait(
        &mut self,
        what: &str,
        every: Duration,
        timeout: Duration,
        mut done: impl FnMut(&Replication) -> bool,
    ) -> Result<Replication> {
        let deadline = Instant::now() + timeout;
        loop {
            let r = self.get().await?;
            if done(&r) {
                return Ok(r);
            }
            if Instant::now() >= deadline {
                bail!(
                    "timed out after {timeout:?} waiting for {what}; last /healthz replication: {r:?}"
                );
            }
            tokio::time::sleep(every).await;
        }
    }
}
