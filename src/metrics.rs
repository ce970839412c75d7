//! Process-wide counters for `GET /metrics` (Prometheus text format).
//!
//! A static registry, like every Prometheus client's default one: counters are written from
//! places (the writer thread) that have no handle on the server's state.

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use std::sync::LazyLock;
use std::sync::atomic::{AtomicU64, Ordering};

struct Metrics {
    registry: Registry,
    requests: Family<[(&'static str, u16); 1], Counter>,
    commits: Counter,
    failed_commits: Counter,
    writes: Counter,
    batch_size: Histogram,
    entries: Gauge,
}

static METRICS: LazyLock<Metrics> = LazyLock::new(|| {
    let mut registry = Registry::with_prefix("clavitor");
    let requests = Family::<[(&'static str, u16); 1], Counter>::default();
    let commits = Counter::default();
    let failed_commits = Counter::default();
    let writes = Counter::default();
    let batch_size = Histogram::new([1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0]);
    let entries = Gauge::default();
    registry.register(
        "http_requests",
        "HTTP requests answered, by status code",
        requests.clone(),
    );
    registry.register(
        "store_commits",
        "Group-commit transactions (one fsync each)",
        commits.clone(),
    );
    registry.register(
        "store_failed_commits",
        "Group-commit transactions that failed; none of their writes was acknowledged",
        failed_commits.clone(),
    );
    registry.register("store_writes", "Writes committed", writes.clone());
    registry.register(
        "store_batch_size",
        "Writes sharing one commit",
        batch_size.clone(),
    );
    registry.register("entries", "Live entries", entries.clone());
    Metrics {
        registry,
        requests,
        commits,
        failed_commits,
        writes,
        batch_size,
        entries,
    }
});

/// Requests by status class (1xx..5xx), for summaries that do not parse the text format.
static BY_CLASS: [AtomicU64; 5] = [const { AtomicU64::new(0) }; 5];

/// `[1xx, 2xx, 3xx, 4xx, 5xx]` answered since start.
pub fn requests_by_class() -> [u64; 5] {
    std::array::from_fn(|i| BY_CLASS[i].load(Ordering::Relaxed))
}

pub fn record_request(status: u16) {
    if let Some(c) = BY_CLASS.get(usize::from(status / 100).wrapping_sub(1)) {
        c.fetch_add(1, Ordering::Relaxed);
    }
    METRICS.requests.get_or_create(&[("status", status)]).inc();
}

/// A transaction that committed: `committed` writes were acknowledged, out of `batch` that ran
/// in it (the others failed alone and were rolled back).
pub fn record_commit(committed: usize, batch: usize) {
    let m = &*METRICS;
    m.commits.inc();
    m.writes.inc_by(committed as u64);
    m.batch_size.observe(batch as f64);
}

/// A transaction that failed as a whole: none of its writes counts as committed.
pub fn record_failed_commit() {
    METRICS.failed_commits.inc();
}

/// Renders every metric; `entries` is the caller's fresh count.
pub fn render(entries: i64) -> String {
    let m = &*METRICS;
    m.entries.set(entries);
    let mut out = String::new();
    // Writing to a String cannot fail.
    let _ = encode(&mut out, &m.registry);
    out
}
