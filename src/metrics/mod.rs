//! Process-wide counters for `GET /metrics` (OpenMetrics text, which Prometheus scrapes).
//!
//! A static registry, like every Prometheus client's default one: counters are written from
//! places (the writer thread, the read cache) that have no handle on the server's state.
//! Everything counted per request is a plain atomic reached without building a label
//! (`http.rs`, the read cache's fixed kinds); families keyed by label are only used off the
//! hot path (failed authentications). The edition adds gauges of its own at each scrape
//! ([`render`]'s `extra`).

mod http;

pub use http::{RouteStats, route};

use prometheus_client::encoding::text::{encode_eof, encode_registry};
use prometheus_client::encoding::{EncodeMetric, MetricEncoder};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use std::sync::LazyLock;
use std::sync::atomic::{AtomicU64, Ordering};

type ReasonLabel = [(&'static str, &'static str); 1];

struct Metrics {
    registry: Registry,
    auth_failures: Family<ReasonLabel, Counter>,
    rate_limited: Counter,
    commits: Counter,
    failed_commits: Counter,
    writes: Counter,
    batch_size: Histogram,
    entries: Gauge,
}

/// The reasons a token is refused that every edition has, listed from the start so that a
/// dashboard shows them at zero rather than missing.
const AUTH_REASONS: [&str; 5] = [
    "missing_token",
    "invalid_token",
    "token_expired",
    "ip_not_allowed",
    "invalid_authorization",
];

static METRICS: LazyLock<Metrics> = LazyLock::new(|| {
    let mut registry = Registry::with_prefix("clavitor");
    let auth_failures = Family::<ReasonLabel, Counter>::default();
    for reason in AUTH_REASONS {
        let _ = auth_failures.get_or_create(&[("reason", reason)]);
    }
    let rate_limited = Counter::default();
    let commits = Counter::default();
    let failed_commits = Counter::default();
    let writes = Counter::default();
    let batch_size = Histogram::new([1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0]);
    let entries = Gauge::default();
    registry.register(
        "http_requests",
        "HTTP requests answered, by route template and status code",
        http::Requests,
    );
    // Named with its unit but without a `# UNIT` line, which some OpenMetrics parsers refuse
    // on histograms.
    registry.register(
        "http_request_duration_seconds",
        "Time from a request's arrival to its response head, by route template",
        http::Latency,
    );
    registry.register(
        "auth_failures",
        "Requests refused for their token or Authorization header, by error code",
        auth_failures.clone(),
    );
    registry.register(
        "rate_limited",
        "Requests refused with 429 by a token's rate limit",
        rate_limited.clone(),
    );
    registry.register(
        "read_cache_hits",
        "Lookups answered by the read cache, by what was looked up",
        CacheLookups { hit: true },
    );
    registry.register(
        "read_cache_misses",
        "Lookups the read cache could not answer (read from SQLite), by what was looked up",
        CacheLookups { hit: false },
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
        auth_failures,
        rate_limited,
        commits,
        failed_commits,
        writes,
        batch_size,
        entries,
    }
});

/// `[1xx, 2xx, 3xx, 4xx, 5xx]` answered since start, for summaries that do not parse the
/// text format (telemetry).
pub fn requests_by_class() -> [u64; 5] {
    http::by_class()
}

/// An error answer (`api::ApiError`), counted when it is about the caller's token: any 401,
/// an address outside the token's allowlist, an `Authorization` header that is not one bearer
/// token; or a rate-limit refusal.
pub fn record_error(status: u16, code: &'static str) {
    let m = &*METRICS;
    if code == "rate_limited" {
        m.rate_limited.inc();
    } else if status == 401 || matches!(code, "ip_not_allowed" | "invalid_authorization") {
        m.auth_failures.get_or_create(&[("reason", code)]).inc();
    }
}

/// What the read cache looks up.
#[derive(Debug, Clone, Copy)]
pub enum Cached {
    /// A field row (or its absence).
    Field = 0,
    /// A scope key wrapped for a token.
    ScopeKey = 1,
}

const CACHED: [&str; 2] = ["field", "scope_key"];
/// `[hits, misses]` by [`Cached`].
static CACHE: [[AtomicU64; 2]; 2] = [const { [const { AtomicU64::new(0) }; 2] }; 2];

pub fn record_cache_lookup(kind: Cached, hit: bool) {
    CACHE[kind as usize][usize::from(!hit)].fetch_add(1, Ordering::Relaxed);
}

#[derive(Debug)]
struct CacheLookups {
    hit: bool,
}

impl EncodeMetric for CacheLookups {
    fn encode(&self, mut encoder: MetricEncoder) -> std::fmt::Result {
        for (kind, counts) in CACHED.iter().zip(&CACHE) {
            let n = counts[usize::from(!self.hit)].load(Ordering::Relaxed);
            ConstCounter::new(n).encode(encoder.encode_family(&[("kind", *kind)])?)?;
        }
        Ok(())
    }

    fn metric_type(&self) -> MetricType {
        MetricType::Counter
    }
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
    render_with(entries, None)
}

/// [`render`], followed by `extra`'s metrics (the edition's gauges, made for this scrape).
pub fn render_with(entries: i64, extra: Option<&Registry>) -> String {
    let m = &*METRICS;
    m.entries.set(entries);
    let mut out = String::new();
    // Writing to a String cannot fail.
    let _ = encode_registry(&mut out, &m.registry);
    if let Some(extra) = extra {
        let _ = encode_registry(&mut out, extra);
    }
    let _ = encode_eof(&mut out);
    out
}
