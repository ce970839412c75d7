//! `GET /metrics` after known traffic, read with an OpenMetrics parser (a scraper's view, not
//! string matching): requests by route template and status, latency by route, token failures
//! by reason, rate-limit hits, read-cache hits and misses, the store's commits; in Commercial
//! also the replication and tarpit gauges. A fresh process, so every count is exact.

use crate::common::metrics::{Family, dashboard_families, number, parse};
use crate::edition;
use crate::helpers::{Scratch, runtime, serve};
use openmetrics_parser::{OpenMetricsType, OpenMetricsValue};
use reqwest::Method;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::time::Duration;

struct Scrape {
    text: String,
    families: HashMap<String, Family>,
}

impl Scrape {
    fn family(&self, name: &str) -> &Family {
        self.families
            .get(name)
            .unwrap_or_else(|| panic!("no family {name} in:\n{}", self.text))
    }

    /// The value of `name`'s sample whose labels include every `(key, value)` of `labels`
    /// (a histogram: its count); `None` if there is no such sample.
    fn value(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let family = self.family(name);
        family.iter_samples().find_map(|s| {
            let set = s.get_labelset().expect("label set");
            labels
                .iter()
                .all(|(k, v)| set.get_label_value(k) == Some(*v))
                .then(|| match &s.value {
                    OpenMetricsValue::Counter(c) => number(&c.value),
                    OpenMetricsValue::Gauge(n) | OpenMetricsValue::Unknown(n) => number(n),
                    OpenMetricsValue::Histogram(h) => h.count.unwrap_or_default() as f64,
                    other => panic!("{name}: unexpected value {other:?}"),
                })
        })
    }

    #[track_caller]
    fn exact(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.value(name, labels)
            .unwrap_or_else(|| panic!("no {name}{labels:?} in:\n{}", self.text))
    }

    /// Every value of label `key` in `name`.
    fn label_values(&self, name: &str, key: &str) -> Vec<String> {
        self.family(name)
            .iter_samples()
            .filter_map(|s| {
                s.get_labelset()
                    .ok()?
                    .get_label_value(key)
                    .map(str::to_owned)
            })
            .collect()
    }
}

async fn scrape(c: &reqwest::Client, base: &str) -> Scrape {
    let res = c
        .get(format!("{base}/metrics"))
        .send()
        .await
        .expect("GET /metrics");
    assert_eq!(res.status().as_u16(), 200);
    let content_type = res
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    assert!(
        content_type.starts_with("application/openmetrics-text"),
        "{content_type}"
    );
    let text = res.text().await.expect("body");
    let families = parse(&text);
    Scrape { text, families }
}

async fn call(c: &reqwest::Client, method: Method, url: &str, token: Option<&str>) -> u16 {
    call_json(c, method, url, token, None).await.0
}

async fn call_json(
    c: &reqwest::Client,
    method: Method,
    url: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> (u16, Value) {
    let mut req = c.request(method.clone(), url);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    if let Some(b) = body {
        req = req.json(&b);
    }
    let res = req
        .send()
        .await
        .unwrap_or_else(|e| panic!("{method} {url}: {e}"));
    let status = res.status().as_u16();
    (status, res.json().await.unwrap_or(Value::Null))
}

#[test]
fn metrics_count_known_traffic_by_route_status_reason_and_cache() {
    let tmp = Scratch::new();
    let server = serve(&tmp.data());
    let rt = runtime();
    let c = edition::reaching(reqwest::Client::builder().timeout(Duration::from_secs(10)))
        .build()
        .expect("client");
    let base = server.url.clone();
    let owner = server.token.clone();
    rt.block_on(async {
        for _ in 0..3 {
            assert_eq!(
                call(&c, Method::GET, &format!("{base}/healthz"), None).await,
                200
            );
        }
        let (st, v) = call_json(
            &c,
            Method::POST,
            &format!("{base}/v1/entries"),
            Some(&owner),
            Some(json!({"title": "db", "fields": [
                {"name": "password", "value": "pw"},
                {"name": "api_key", "value": "k", "tier": "credential", "scope": "ops"},
            ]})),
        )
        .await;
        assert_eq!(st, 201, "{v}");
        let id = v["id"].as_str().expect("id").to_owned();
        let (st, v) = call_json(
            &c,
            Method::POST,
            &format!("{base}/v1/agents"),
            Some(&owner),
            Some(json!({"name": "bot", "scopes": ["ops"], "rate_limit_per_minute": 1})),
        )
        .await;
        assert_eq!(st, 201, "{v}");
        let agent = v["token"].as_str().expect("token").to_owned();

        // No commit from here on: the read cache keeps what the first reads fetched.
        for name in ["password", "password", "password", "api_key", "api_key"] {
            let url = format!("{base}/v1/entries/{id}/fields/{name}");
            assert_eq!(call(&c, Method::GET, &url, Some(&owner)).await, 200);
        }
        let missing = format!("{base}/v1/entries/{id}/fields/nope");
        assert_eq!(call(&c, Method::GET, &missing, Some(&owner)).await, 404);
        let list = format!("{base}/v1/entries");
        assert_eq!(call(&c, Method::GET, &list, None).await, 401);
        let basic = c
            .get(&list)
            .header("authorization", "Basic dXNlcjpwYXNz")
            .send()
            .await
            .expect("send");
        assert_eq!(basic.status().as_u16(), 401);
        for _ in 0..2 {
            assert_eq!(
                call(&c, Method::GET, &list, Some("clv_not-a-token")).await,
                401
            );
        }
        let malformed = c
            .get(&list)
            .header("authorization", format!("Bearer {owner}"))
            .header("authorization", "Bearer clv_another")
            .send()
            .await
            .expect("send");
        assert_eq!(malformed.status().as_u16(), 400);
        // An unknown path (Commercial: the tarpit, which holds it while we scrape).
        let unknown = c
            .get(format!("{base}/no/such/{id}"))
            .send()
            .await
            .expect("unknown path");
        assert_eq!(unknown.status().as_u16(), 404);
        // The agent's limit is one a minute: the second is refused.
        assert_eq!(call(&c, Method::GET, &list, Some(&agent)).await, 200);
        assert_eq!(call(&c, Method::GET, &list, Some(&agent)).await, 429);

        let m = scrape(&c, &base).await;
        let requests = "clavitor_http_requests";
        assert!(matches!(
            m.family(requests).family_type,
            OpenMetricsType::Counter
        ));
        assert_eq!(
            m.exact(requests, &[("route", "/healthz"), ("status", "200")]),
            3.0
        );
        let field = "/v1/entries/{id}/fields/{name}";
        assert_eq!(
            m.exact(requests, &[("route", field), ("status", "200")]),
            5.0
        );
        assert_eq!(
            m.exact(requests, &[("route", field), ("status", "404")]),
            1.0
        );
        assert_eq!(
            m.exact(requests, &[("route", "/v1/entries"), ("status", "201")]),
            1.0
        );
        assert_eq!(
            m.exact(requests, &[("route", "/v1/entries"), ("status", "401")]),
            4.0
        );
        assert_eq!(
            m.exact(requests, &[("route", "/v1/entries"), ("status", "400")]),
            1.0
        );
        assert_eq!(
            m.exact(requests, &[("route", "/v1/entries"), ("status", "429")]),
            1.0
        );
        assert_eq!(
            m.exact(requests, &[("route", "/v1/agents"), ("status", "201")]),
            1.0
        );
        assert_eq!(
            m.exact(requests, &[("route", "unmatched"), ("status", "404")]),
            1.0
        );
        // Templates only: no id ever becomes a label value.
        for route in m.label_values(requests, "route") {
            assert!(!route.contains(&id), "raw path as a label: {route}");
        }

        let latency = "clavitor_http_request_duration_seconds";
        assert!(matches!(
            m.family(latency).family_type,
            OpenMetricsType::Histogram
        ));
        assert_eq!(m.exact(latency, &[("route", field)]), 6.0);
        assert_eq!(m.exact(latency, &[("route", "/healthz")]), 3.0);

        let failures = "clavitor_auth_failures";
        // A Basic header is no bearer token: missing, like no header.
        assert_eq!(m.exact(failures, &[("reason", "missing_token")]), 2.0);
        assert_eq!(m.exact(failures, &[("reason", "invalid_token")]), 2.0);
        assert_eq!(
            m.exact(failures, &[("reason", "invalid_authorization")]),
            1.0
        );
        assert_eq!(m.exact(failures, &[("reason", "token_expired")]), 0.0);
        assert_eq!(m.exact("clavitor_rate_limited", &[]), 1.0);

        // Per field: the first read misses, the later ones hit.
        let hits = m.exact("clavitor_read_cache_hits", &[("kind", "field")]);
        let misses = m.exact("clavitor_read_cache_misses", &[("kind", "field")]);
        assert!(hits >= 3.0 && misses >= 3.0, "hits {hits}, misses {misses}");
        assert!(m.exact("clavitor_read_cache_hits", &[("kind", "scope_key")]) >= 1.0);

        assert!(m.exact("clavitor_store_commits", &[]) >= 2.0);
        assert_eq!(m.exact("clavitor_store_failed_commits", &[]), 0.0);
        assert!(m.exact("clavitor_store_batch_size", &[]) >= 2.0);
        assert_eq!(m.exact("clavitor_entries", &[]), 1.0);

        // The sample dashboard charts families this server exports (the edition's own are
        // checked on two replicating POPs in tests/replication/contrib.rs).
        for family in dashboard_families() {
            let edition_only = ["clavitor_replication", "clavitor_tarpit", "clavitor_pop"]
                .iter()
                .any(|p| family.starts_with(p));
            if !edition_only {
                m.family(&family);
            }
        }

        edition::assert_edition_metrics(&c, &base, &m.text).await;
        drop(unknown);
    });
}

/// A fresh scrape of `base`, parsed.
pub async fn families(c: &reqwest::Client, base: &str) -> HashMap<String, Family> {
    scrape(c, base).await.families
}
