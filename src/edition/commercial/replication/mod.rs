//! Primary -> backup replication: durable (what is owed lives in the database), event-driven
//! (woken by commits), and safe to repeat (the backup applies batches idempotently, newest
//! version wins).
//!
//! Architecture invariant: the primary never decrypts to replicate; rows travel as stored.

pub mod audit;
pub mod rows;
#[cfg(test)]
mod tests;
pub mod validate;
pub mod wire;
mod worker;

pub use worker::{Worker, spawn};

use crate::api::timestamp;
use serde_json::{Value, json};
use std::collections::VecDeque;
use std::sync::Mutex;

const LAG_SAMPLES: usize = 4096;

/// What an operator needs to judge replication, on either side.
#[derive(Debug, Default)]
pub struct Status {
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    acked_version: i64,
    last_success_ms: Option<i64>,
    failing_since_ms: Option<i64>,
    last_error: Option<String>,
    /// Drains that failed since start (each after its `max_retries` attempts).
    failed_drains: u64,
    /// Commit -> acknowledged-by-backup, milliseconds, most recent last.
    lag_ms: VecDeque<i64>,
    last_push_ms: Option<i64>,
    applied_version: i64,
    /// The highest watermark the backup acknowledged (primary side); 0 after a restart.
    told_watermark: i64,
}

fn percentile(sorted: &[i64], p: f64) -> Option<i64> {
    if sorted.is_empty() {
        return None;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted.get(i).copied()
}

impl Status {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn acked(&self, version: i64, now_ms: i64, lags: impl IntoIterator<Item = i64>) {
        let mut s = self.lock();
        s.acked_version = s.acked_version.max(version);
        s.last_success_ms = Some(now_ms);
        s.failing_since_ms = None;
        s.last_error = None;
        for l in lags {
            if s.lag_ms.len() == LAG_SAMPLES {
                s.lag_ms.pop_front();
            }
            s.lag_ms.push_back(l.max(0));
        }
    }

    /// Nothing was owed once `committed` was committed: the backup holds everything up to it.
    pub fn caught_up(&self, committed: i64) {
        let mut s = self.lock();
        s.acked_version = s.acked_version.max(committed);
    }

    /// The backup acknowledged a batch carrying watermark `w`.
    pub fn told(&self, w: i64) {
        let mut s = self.lock();
        s.told_watermark = s.told_watermark.max(w);
    }

    pub fn told_watermark(&self) -> i64 {
        self.lock().told_watermark
    }

    pub fn failed(&self, now_ms: i64, error: String) {
        let mut s = self.lock();
        s.failing_since_ms.get_or_insert(now_ms);
        s.last_error = Some(error);
        s.failed_drains += 1;
    }

    pub fn pushed(&self, now_ms: i64, version: i64) {
        let mut s = self.lock();
        s.last_push_ms = Some(now_ms);
        s.applied_version = s.applied_version.max(version);
    }

    /// Whether the last push failed (and none succeeded since).
    pub fn failing(&self) -> bool {
        self.lock().failing_since_ms.is_some()
    }

    /// `(p50, p99)` of recent commit -> ack lag.
    pub fn lag(&self) -> (Option<i64>, Option<i64>) {
        let mut v: Vec<i64> = self.lock().lag_ms.iter().copied().collect();
        v.sort_unstable();
        (percentile(&v, 0.50), percentile(&v, 0.99))
    }

    /// The `replication` object of `/healthz` and the heartbeat. `watermark` is the primary's
    /// acknowledged watermark or the backup's applied watermark (see `rows::watermark`).
    pub fn report(
        &self,
        role: &str,
        backlog: i64,
        committed_version: i64,
        watermark: i64,
    ) -> Value {
        let (p50, p99) = self.lag();
        let s = self.lock();
        if role == "primary" {
            json!({
                "backlog": backlog,
                "committed_version": committed_version,
                "acked_version": s.acked_version,
                "acked_watermark": watermark,
                "last_success": s.last_success_ms.map(timestamp),
                "failing_since": s.failing_since_ms.map(timestamp),
                "last_error": s.last_error,
                "failed_drains": s.failed_drains,
                "lag_ms": { "p50": p50, "p99": p99 },
            })
        } else {
            json!({
                "committed_version": committed_version,
                "applied_version": s.applied_version,
                "applied_watermark": watermark,
                "last_push": s.last_push_ms.map(timestamp),
            })
        }
    }
}
