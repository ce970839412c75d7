//! Requests by route and status, and their latency by route.
//!
//! Counted on every request, so without a lock held, a label built or an allocation: each
//! route template (axum's `MatchedPath`, e.g. `/v1/entries/{id}`, never the raw path, so ids
//! cannot grow the label set) gets one [`RouteStats`] for the life of the process, holding a
//! counter per status code and an atomic latency histogram. The templates are the router's,
//! a fixed set; paths no route matched share one `unmatched` entry.

use prometheus_client::encoding::{EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use std::collections::BTreeMap;
use std::sync::RwLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// The route label of requests no route matched (templates start with `/`, so no clash).
const UNMATCHED: &str = "unmatched";
/// The route label past [`MAX_ROUTES`] templates (a guard: the router has far fewer).
const OVERFLOW: &str = "other";
const MAX_ROUTES: usize = 256;

/// Status codes 100..=599 each have a counter; hyper sends nothing else.
const FIRST_STATUS: usize = 100;
const STATUSES: usize = 500;

/// Upper bounds of the latency buckets, in seconds: 100 µs (a cached field read) to 10 s.
const BOUNDS: [f64; 16] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
];
const BOUNDS_NS: [u64; BOUNDS.len()] = {
    let mut out = [0u64; BOUNDS.len()];
    let mut i = 0;
    while i < BOUNDS.len() {
        out[i] = (BOUNDS[i] * 1e9) as u64;
        i += 1;
    }
    out
};

/// One route's counters. Only ever added to, with relaxed atomics: a scrape may see one
/// request's status before its latency, which Prometheus clients all allow.
pub struct RouteStats {
    route: &'static str,
    statuses: [AtomicU64; STATUSES],
    /// Per bucket (not cumulative); the last one is +Inf.
    buckets: [AtomicU64; BOUNDS.len() + 1],
    sum_ns: AtomicU64,
}

impl RouteStats {
    const fn new(route: &'static str) -> Self {
        Self {
            route,
            statuses: [const { AtomicU64::new(0) }; STATUSES],
            buckets: [const { AtomicU64::new(0) }; BOUNDS.len() + 1],
            sum_ns: AtomicU64::new(0),
        }
    }

    /// One answered request: its status, and the time until its response head was ready.
    pub fn record(&self, status: u16, elapsed: Duration) {
        if let Some(c) = self
            .statuses
            .get(usize::from(status).wrapping_sub(FIRST_STATUS))
        {
            c.fetch_add(1, Ordering::Relaxed);
        }
        let ns = u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX);
        let bucket = BOUNDS_NS
            .iter()
            .position(|&b| ns <= b)
            .unwrap_or(BOUNDS.len());
        self.buckets[bucket].fetch_add(1, Ordering::Relaxed);
        self.sum_ns.fetch_add(ns, Ordering::Relaxed);
    }

    fn by_status(&self) -> impl Iterator<Item = (u16, u64)> + '_ {
        self.statuses.iter().enumerate().filter_map(|(i, c)| {
            let n = c.load(Ordering::Relaxed);
            let status = u16::try_from(i + FIRST_STATUS).ok()?;
            (n > 0).then_some((status, n))
        })
    }

    fn count(&self) -> u64 {
        self.buckets.iter().map(|b| b.load(Ordering::Relaxed)).sum()
    }
}

static UNMATCHED_STATS: RouteStats = RouteStats::new(UNMATCHED);
static OVERFLOW_STATS: RouteStats = RouteStats::new(OVERFLOW);
/// Sorted by template, so `/metrics` lists routes in a stable order.
static ROUTES: RwLock<BTreeMap<&'static str, &'static RouteStats>> = RwLock::new(BTreeMap::new());

/// The counters of the route `matched` (a template), or of unmatched paths for `None`.
pub fn route(matched: Option<&str>) -> &'static RouteStats {
    let Some(template) = matched else {
        return &UNMATCHED_STATS;
    };
    if let Some(s) = ROUTES
        .read()
        .unwrap_or_else(|p| p.into_inner())
        .get(template)
    {
        return s;
    }
    let mut routes = ROUTES.write().unwrap_or_else(|p| p.into_inner());
    if let Some(s) = routes.get(template) {
        return s;
    }
    if routes.len() >= MAX_ROUTES {
        return &OVERFLOW_STATS;
    }
    // Leaked on purpose: one per template for the life of the process, at most MAX_ROUTES.
    let template: &'static str = Box::leak(template.into());
    let stats: &'static RouteStats = Box::leak(Box::new(RouteStats::new(template)));
    routes.insert(template, stats);
    stats
}

/// Every route with its counters, in label order; the fixed ones only once they counted.
fn each(f: impl FnMut(&RouteStats) -> std::fmt::Result) -> std::fmt::Result {
    let routes: Vec<&'static RouteStats> = ROUTES
        .read()
        .unwrap_or_else(|p| p.into_inner())
        .values()
        .copied()
        .collect();
    let fixed = [&OVERFLOW_STATS, &UNMATCHED_STATS]
        .into_iter()
        .filter(|s| s.count() > 0);
    routes.into_iter().chain(fixed).try_for_each(f)
}

/// `[1xx, 2xx, 3xx, 4xx, 5xx]` answered since start.
pub fn by_class() -> [u64; 5] {
    let mut out = [0u64; 5];
    let _ = each(|s| {
        for (status, n) in s.by_status() {
            if let Some(c) = out.get_mut(usize::from(status / 100).wrapping_sub(1)) {
                *c += n;
            }
        }
        Ok(())
    });
    out
}

/// `http_requests_total{route, status}`.
#[derive(Debug)]
pub struct Requests;

impl EncodeMetric for Requests {
    fn encode(&self, mut encoder: MetricEncoder) -> std::fmt::Result {
        each(|s| {
            for (status, n) in s.by_status() {
                let labels = ([("route", s.route)], [("status", status)]);
                ConstCounter::new(n).encode(encoder.encode_family(&labels)?)?;
            }
            Ok(())
        })
    }

    fn metric_type(&self) -> MetricType {
        MetricType::Counter
    }
}

/// `http_request_duration_seconds{route}`: time until the response head, by route.
#[derive(Debug)]
pub struct Latency;

impl EncodeMetric for Latency {
    fn encode(&self, mut encoder: MetricEncoder) -> std::fmt::Result {
        each(|s| {
            let buckets: Vec<(f64, u64)> = BOUNDS
                .iter()
                .copied()
                .chain([f64::INFINITY])
                .zip(s.buckets.iter().map(|b| b.load(Ordering::Relaxed)))
                .collect();
            let count = buckets.iter().map(|(_, n)| n).sum();
            let sum = s.sum_ns.load(Ordering::Relaxed) as f64 / 1e9;
            let labels = [("route", s.route)];
            encoder
                .encode_family(&labels)?
                .encode_histogram::<NoLabelSet>(sum, count, &buckets, None)
        })
    }

    fn metric_type(&self) -> MetricType {
        MetricType::Histogram
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_template_has_one_set_of_counters_and_unmatched_paths_share_one() {
        let a = route(Some("/test/{id}"));
        assert!(std::ptr::eq(a, route(Some("/test/{id}"))));
        assert!(!std::ptr::eq(a, route(Some("/test/{id}/x"))));
        assert!(std::ptr::eq(route(None), &UNMATCHED_STATS));
    }

    #[test]
    fn latency_lands_in_the_first_bucket_that_holds_it() {
        let s = RouteStats::new("/t");
        s.record(200, Duration::from_micros(100));
        s.record(200, Duration::from_micros(101));
        s.record(404, Duration::from_secs(11));
        let b: Vec<u64> = s
            .buckets
            .iter()
            .map(|b| b.load(Ordering::Relaxed))
            .collect();
        assert_eq!((b[0], b[1], b[BOUNDS.len()]), (1, 1, 1));
        assert_eq!(s.count(), 3);
        assert_eq!(s.by_status().collect::<Vec<_>>(), [(200, 2), (404, 1)]);
    }
}
