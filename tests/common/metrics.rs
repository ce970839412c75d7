//! Reading `/metrics` as a scraper does (an OpenMetrics parser), and the families the sample
//! Grafana dashboard in `contrib/` queries.

use openmetrics_parser::openmetrics::parse_openmetrics;
use openmetrics_parser::{MetricFamily, MetricNumber, OpenMetricsType, OpenMetricsValue};
use serde_json::Value;
use std::collections::HashMap;

pub type Family = MetricFamily<OpenMetricsType, OpenMetricsValue>;

/// `text` parsed, by family name; panics (with the text) unless it is valid OpenMetrics.
pub fn parse(text: &str) -> HashMap<String, Family> {
    parse_openmetrics(text)
        .unwrap_or_else(|e| panic!("not valid OpenMetrics text: {e:?}\n{text}"))
        .families
}

pub fn number(n: &MetricNumber) -> f64 {
    match n {
        MetricNumber::Float(f) => *f,
        MetricNumber::Int(i) => *i as f64,
    }
}

/// A gauge's value (`None`: no such family or sample).
pub fn gauge(families: &HashMap<String, Family>, name: &str) -> Option<f64> {
    families
        .get(name)?
        .iter_samples()
        .next()
        .and_then(|s| match &s.value {
            OpenMetricsValue::Gauge(n) | OpenMetricsValue::Unknown(n) => Some(number(n)),
            _ => None,
        })
}

/// The metric families `contrib/grafana-dashboard.json` queries (sample names with their
/// `_total`, `_bucket`, `_sum`, `_count`, `_info` suffixes taken off).
pub fn dashboard_families() -> Vec<String> {
    let text = include_str!("../../contrib/grafana-dashboard.json");
    let dashboard: Value = serde_json::from_str(text).expect("the dashboard is JSON");
    let mut exprs = Vec::new();
    for panel in dashboard["panels"].as_array().expect("panels") {
        for target in panel["targets"].as_array().into_iter().flatten() {
            exprs.push(target["expr"].as_str().expect("expr").to_owned());
        }
    }
    assert!(exprs.len() > 10, "{exprs:?}");
    let mut names: Vec<String> = exprs
        .iter()
        .flat_map(|e| e.match_indices("clavitor_").map(move |(i, _)| &e[i..]))
        .map(|rest| {
            let name: String = rest
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            ["_total", "_bucket", "_sum", "_count", "_info"]
                .iter()
                .find_map(|suffix| name.strip_suffix(suffix))
                .map_or(name.clone(), str::to_owned)
        })
        .collect();
    names.sort();
    names.dedup();
    names
}
