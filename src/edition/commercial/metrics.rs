//! The POP's gauges for `/metrics`: replication (the numbers `/healthz` reports) and the
//! tarpit. Made fresh at each scrape, so nothing here is touched by requests.

use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::{Registry, Unit};
use std::sync::atomic::AtomicU64;

/// What one scrape reports; `None` where the database could not be read.
pub struct Snapshot {
    pub pop_id: String,
    pub role: &'static str,
    /// `(backlog, committed version, watermark)`: the acknowledged watermark on a primary,
    /// the applied one on a backup.
    pub replication: Option<(i64, i64, i64)>,
    /// Recent commit-to-acknowledgement lag (primary), milliseconds.
    pub lag_ms: (Option<i64>, Option<i64>),
    pub failing: bool,
    pub tarpit_held: usize,
    pub tarpit_cap: usize,
    pub tarpit_saturated: bool,
}

fn int(r: &mut Registry, name: &str, help: &str, v: i64) {
    let g = Gauge::<i64>::default();
    g.set(v);
    r.register(name, help, g);
}

fn seconds(r: &mut Registry, name: &str, help: &str, ms: i64) {
    let g = Gauge::<f64, AtomicU64>::default();
    g.set(ms as f64 / 1000.0);
    r.register_with_unit(name, help, Unit::Seconds, g);
}

fn count(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

pub fn registry(s: Snapshot) -> Registry {
    let mut r = Registry::with_prefix("clavitor");
    r.register(
        "pop",
        "This POP: its id and current role (changes on a SIGHUP reload)",
        Info::new(vec![("pop_id", s.pop_id), ("role", s.role.to_owned())]),
    );
    let primary = s.role == "primary";
    if let Some((backlog, committed, watermark)) = s.replication {
        int(
            &mut r,
            "replication_committed_version",
            "Highest version committed in this POP's database",
            committed,
        );
        if primary {
            int(
                &mut r,
                "replication_backlog",
                "Rows the backup has not acknowledged",
                backlog,
            );
            int(
                &mut r,
                "replication_acked_watermark",
                "Every change at or below this version is acknowledged by the backup",
                watermark,
            );
        } else {
            int(
                &mut r,
                "replication_applied_watermark",
                "Every change the primary made at or below this version is applied here",
                watermark,
            );
        }
    }
    if primary {
        int(
            &mut r,
            "replication_failing",
            "1 while pushes to the backup fail (since the last success), else 0",
            i64::from(s.failing),
        );
        let (p50, p99) = s.lag_ms;
        if let Some(ms) = p50 {
            seconds(
                &mut r,
                "replication_lag_p50",
                "Median commit-to-acknowledgement lag over recent rows",
                ms,
            );
        }
        if let Some(ms) = p99 {
            seconds(
                &mut r,
                "replication_lag_p99",
                "99th percentile commit-to-acknowledgement lag over recent rows",
                ms,
            );
        }
    }
    int(
        &mut r,
        "tarpit_held",
        "Scanner connections held by the tarpit now",
        count(s.tarpit_held),
    );
    int(
        &mut r,
        "tarpit_capacity",
        "Most connections the tarpit holds at once",
        count(s.tarpit_cap),
    );
    int(
        &mut r,
        "tarpit_saturated",
        "1 while the tarpit is full (unknown paths get a plain 404), else 0",
        i64::from(s.tarpit_saturated),
    );
    r
}
