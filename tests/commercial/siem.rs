//! SIEM streaming: a real POP streams its audit trail to receivers in this test (syslog over
//! TLS with RFC 5425 framing, and HTTPS), in the configured formats, at least once and in
//! order through a kill -9 and a receiver outage; a wrong CA is refused and alerted; a bad
//! `siem:` block is refused at start with the key and the fix.

use crate::common::pki::{Leaf, provider};
use crate::helpers::*;
use axum::Router;
use axum::extract::Request;
use axum::routing::any;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use reqwest::Method;
use serde_json::Value;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::AsyncReadExt;
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;

const WAIT: Duration = Duration::from_secs(20);

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Syslog,
    Http,
}

/// What a receiver got: syslog messages (one per frame) or HTTP requests.
#[derive(Debug, Clone)]
struct Got {
    headers: Vec<(String, String)>,
    body: String,
}

/// A collector on 127.0.0.1 with a certificate from the test's SIEM CA. `stop` closes the
/// listener and every connection; `start` again takes the same port.
struct Receiver {
    kind: Kind,
    addr: SocketAddr,
    acceptor: TlsAcceptor,
    got: Arc<Mutex<Vec<Got>>>,
    /// Frames that broke RFC 5425 octet counting.
    bad_frames: Arc<Mutex<Vec<String>>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.stop();
    }
}

impl Receiver {
    async fn new(kind: Kind, leaf: &Leaf) -> Self {
        let cfg = rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .expect("TLS versions")
            .with_no_client_auth()
            .with_single_cert(leaf.certs(), leaf.key())
            .expect("server cert");
        let mut r = Self {
            kind,
            addr: "127.0.0.1:0".parse().unwrap(),
            acceptor: TlsAcceptor::from(Arc::new(cfg)),
            got: Arc::default(),
            bad_frames: Arc::default(),
            task: None,
        };
        r.start().await;
        r
    }

    async fn start(&mut self) {
        let listener = TcpListener::bind(self.addr).await.expect("bind receiver");
        self.addr = listener.local_addr().unwrap();
        let (kind, acceptor, got, bad) = (
            self.kind,
            self.acceptor.clone(),
            self.got.clone(),
            self.bad_frames.clone(),
        );
        self.task = Some(tokio::spawn(async move {
            // Dropped with this task: every connection closes with the listener.
            let mut conns = JoinSet::new();
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    return;
                };
                let (acceptor, got, bad) = (acceptor.clone(), got.clone(), bad.clone());
                conns.spawn(async move {
                    let Ok(tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    match kind {
                        Kind::Syslog => read_frames(tls, &got, &bad).await,
                        Kind::Http => serve_http(tls, got).await,
                    }
                });
            }
        }));
    }

    fn stop(&mut self) {
        if let Some(t) = self.task.take() {
            t.abort();
        }
    }

    fn got(&self) -> Vec<Got> {
        self.got.lock().unwrap().clone()
    }

    /// Every event seq received, in arrival order (HTTP: one per JSON line).
    fn seqs(&self, seq_of: fn(&Value) -> i64) -> Vec<i64> {
        self.events().iter().map(seq_of).collect()
    }

    /// The JSON each message or line carries.
    fn events(&self) -> Vec<Value> {
        let mut out = Vec::new();
        for g in self.got() {
            match self.kind {
                Kind::Syslog => {
                    let json_at = g.body.find("] {").expect("structured data, then JSON") + 2;
                    out.push(serde_json::from_str(&g.body[json_at..]).expect("JSON message"));
                }
                Kind::Http => {
                    for line in g.body.lines().filter(|l| !l.is_empty()) {
                        out.push(serde_json::from_str(line).expect("a JSON line"));
                    }
                }
            }
        }
        out
    }
}

async fn read_frames(
    mut s: tokio_rustls::server::TlsStream<tokio::net::TcpStream>,
    got: &Mutex<Vec<Got>>,
    bad: &Mutex<Vec<String>>,
) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 16384];
    loop {
        match s.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
        // RFC 5425: MSG-LEN SP SYSLOG-MSG, MSG-LEN in octets without leading zeros.
        while let Some(sp) = buf.iter().position(|b| *b == b' ') {
            let len_text = String::from_utf8_lossy(&buf[..sp]).to_string();
            let Ok(len) = len_text.parse::<usize>() else {
                bad.lock().unwrap().push(len_text);
                return;
            };
            if len_text.starts_with('0') || buf.len() < sp + 1 + len {
                break;
            }
            let msg = String::from_utf8_lossy(&buf[sp + 1..sp + 1 + len]).to_string();
            buf.drain(..sp + 1 + len);
            got.lock().unwrap().push(Got {
                headers: Vec::new(),
                body: msg,
            });
        }
    }
}

async fn serve_http(
    s: tokio_rustls::server::TlsStream<tokio::net::TcpStream>,
    got: Arc<Mutex<Vec<Got>>>,
) {
    let app = Router::new().fallback(any(move |req: Request| {
        let got = got.clone();
        async move {
            let headers = req
                .headers()
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_owned()))
                .collect();
            let body = axum::body::to_bytes(req.into_body(), 64 << 20)
                .await
                .unwrap_or_default();
            got.lock().unwrap().push(Got {
                headers,
                body: String::from_utf8_lossy(&body).to_string(),
            });
            "{\"text\":\"Success\",\"code\":0}"
        }
    }));
    let service = hyper_util::service::TowerToHyperService::new(app);
    let _ = auto::Builder::new(TokioExecutor::new())
        .serve_connection(TokioIo::new(s), service)
        .await;
}

fn plain_seq(v: &Value) -> i64 {
    v["seq"].as_i64().expect("seq")
}

fn ocsf_seq(v: &Value) -> i64 {
    v["metadata"]["sequence"]
        .as_i64()
        .expect("metadata.sequence")
}

fn hec_seq(v: &Value) -> i64 {
    v["event"]["seq"].as_i64().expect("event.seq")
}

/// A POP (primary) whose replication.yaml ends with `siem` (a YAML block).
fn pop_with(siem: &str) -> Pop {
    let pop = Pop::new();
    let y = config_yaml(&pop, "primary", &Opts::default());
    pop.write_config(&format!("{y}{siem}"));
    pop
}

fn ca_file(pop: &Pop, name: &str, ca: &Ca) -> String {
    let p = pop.path(name);
    write_file(&p, &ca.pem(), 0o644);
    q(&p)
}

fn token_file(pop: &Pop, name: &str, token: &str) -> String {
    let p = pop.path(name);
    write_file(&p, token, 0o600);
    q(&p)
}

/// Every event of the POP's trail, as `GET /v1/audit` returns them.
async fn api_events(c: &reqwest::Client, v: &Vault) -> Vec<Value> {
    let mut out = Vec::new();
    let mut after = String::new();
    loop {
        let url = format!("{}/v1/audit?limit=1000&after={after}", v.url);
        let (status, page) = call(c, Method::GET, &url, &v.token, None).await;
        assert_eq!(status, 200, "{page}");
        let events = page["events"].as_array().cloned().unwrap_or_default();
        if events.is_empty() {
            return out;
        }
        out.extend(events);
        after = page["next"].as_str().unwrap().to_owned();
    }
}

async fn write_entries(c: &reqwest::Client, v: &Vault, prefix: &str, n: usize) {
    for i in 0..n {
        let (status, body) = post_entry(c, v, &format!("{prefix}-{i}")).await;
        assert_eq!(status, 201, "{body}");
    }
}

/// Waits until `r` has every seq from 1 to `upto`; then checks the stream never skipped
/// ahead (each seq is the next one, or a resend of an earlier one). Returns the duplicates.
async fn delivered_in_order(
    r: &Receiver,
    seq_of: fn(&Value) -> i64,
    upto: i64,
    what: &str,
) -> usize {
    wait_for(WAIT, what, || async {
        let seqs = r.seqs(seq_of);
        let mut have: Vec<i64> = seqs.clone();
        have.sort_unstable();
        have.dedup();
        let missing: Vec<i64> = (1..=upto)
            .filter(|s| have.binary_search(s).is_err())
            .collect();
        if missing.is_empty() {
            Ok(())
        } else {
            Err(format!(
                "missing {} seqs, first {:?}",
                missing.len(),
                &missing[..missing.len().min(5)]
            ))
        }
    })
    .await;
    let seqs = r.seqs(seq_of);
    let mut high = 0;
    for (i, s) in seqs.iter().enumerate() {
        assert!(
            *s <= high + 1,
            "{what}: seq {s} arrived after {high} (position {i}): a gap, not a resend"
        );
        high = high.max(*s);
    }
    let mut uniq = seqs.clone();
    uniq.sort_unstable();
    uniq.dedup();
    seqs.len() - uniq.len()
}

/// Events arrive framed (RFC 5425) and formatted as configured: syslog carrying OCSF, HTTPS
/// JSON lines exactly as the API returns them with the bearer token, and Splunk HEC with its
/// envelope and `Authorization: Splunk`. Backlogs reach 0 in /healthz and /metrics.
#[tokio::test(flavor = "multi_thread")]
async fn sinks_receive_framed_events_in_each_format() {
    let siem_ca = Ca::new("SIEM CA");
    let leaf = siem_ca.leaf("collector");
    let syslog = Receiver::new(Kind::Syslog, &leaf).await;
    let json = Receiver::new(Kind::Http, &leaf).await;
    let hec = Receiver::new(Kind::Http, &leaf).await;
    let pop = Pop::new();
    let ca = ca_file(&pop, "siem-ca.crt", &siem_ca);
    let bearer = token_file(&pop, "collector.token", "bearer-token-1234\n");
    let splunk = token_file(&pop, "hec.token", "11111111-2222-3333-4444-555555555555\n");
    let y = config_yaml(&pop, "primary", &Opts::default());
    pop.write_config(&format!(
        "{y}siem:\n  sinks:\n    - {{name: syslog, type: syslog, address: \"127.0.0.1:{}\", ca_file: {ca}, format: ocsf}}\n    - {{name: lines, type: http, url: \"https://127.0.0.1:{}/ingest\", token_file: {bearer}, ca_file: {ca}, format: json}}\n    - {{name: splunk, type: http, url: \"https://127.0.0.1:{}/services/collector/event\", token_file: {splunk}, ca_file: {ca}, format: hec}}\n",
        syslog.addr.port(),
        json.addr.port(),
        hec.addr.port()
    ));
    let v = pop.start();
    let c = pop.client();
    write_entries(&c, &v, "fmt", 5).await;
    let api = api_events(&c, &v).await;
    let upto = api.last().map(plain_seq).expect("events");

    delivered_in_order(&syslog, ocsf_seq, upto, "syslog/ocsf").await;
    delivered_in_order(&json, plain_seq, upto, "http/json").await;
    delivered_in_order(&hec, hec_seq, upto, "http/hec").await;
    assert!(syslog.bad_frames.lock().unwrap().is_empty());

    // Samples as received (the README shows these).
    let sample = |r: &Receiver| r.got().last().map(|g| g.body.clone()).unwrap_or_default();
    eprintln!(
        "syslog: {}\njson: {}\nhec: {}",
        sample(&syslog),
        sample(&json),
        sample(&hec)
    );
    // Syslog: RFC 5424 header, the audit facility, structured data with the seq and hash.
    let first = &syslog.got()[0].body;
    assert!(
        first.starts_with("<110>1 ") || first.starts_with("<108>1 "),
        "{first}"
    );
    assert!(first.contains(" calgary-01 clavitor - "), "{first}");
    assert!(
        first.contains("[clavitor@32473 seq=\"1\" hash=\""),
        "{first}"
    );
    // OCSF: a known class, the schema version, the original event kept.
    let by_seq = |events: Vec<Value>, f: fn(&Value) -> i64| {
        let mut m = std::collections::BTreeMap::new();
        for e in events {
            m.insert(f(&e), e);
        }
        m
    };
    let ocsf = by_seq(syslog.events(), ocsf_seq);
    for e in &api {
        let o = &ocsf[&plain_seq(e)];
        assert_eq!(o["metadata"]["version"], "1.5.0", "{o}");
        assert_eq!(o["metadata"]["uid"], e["hash"], "{o}");
        assert_eq!(&o["unmapped"], e, "the original event is kept whole");
        let class = o["class_uid"].as_u64().unwrap();
        assert!([3001, 3002, 3004, 6003].contains(&class), "{o}");
        assert_eq!(
            o["type_uid"].as_u64().unwrap(),
            class * 100 + o["activity_id"].as_u64().unwrap()
        );
    }
    let create = api.iter().find(|e| e["action"] == "entry.create").unwrap();
    let o = &ocsf[&plain_seq(create)];
    assert_eq!(o["class_name"], "API Activity");
    assert_eq!(o["activity_name"], "Create");
    assert_eq!(o["status"], "Success");

    // JSON lines: byte for byte what the API says, with the bearer token.
    let lines = by_seq(json.events(), plain_seq);
    for e in &api {
        assert_eq!(&lines[&plain_seq(e)], e);
    }
    let req = &json.got()[0];
    let header = |g: &Got, k: &str| {
        g.headers
            .iter()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    };
    assert_eq!(header(req, "authorization"), "Bearer bearer-token-1234");
    assert_eq!(header(req, "content-type"), "application/x-ndjson");

    // HEC: the envelope and Splunk's authorization scheme.
    let h = by_seq(hec.events(), hec_seq);
    for e in &api {
        let w = &h[&plain_seq(e)];
        assert_eq!(&w["event"], e);
        assert_eq!(w["sourcetype"], "clavitor:audit");
        assert_eq!(w["host"], "calgary-01");
        assert!(w["time"].as_f64().unwrap() > 1.7e9, "{w}");
    }
    assert_eq!(
        header(&hec.got()[0], "authorization"),
        "Splunk 11111111-2222-3333-4444-555555555555"
    );

    // Backlog per sink in /healthz and /metrics.
    wait_for(WAIT, "every backlog at 0 in /healthz", || async {
        let h = health(&c, &v.url).await;
        let sinks = h["replication"]["siem"]["sinks"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        if sinks.len() == 3 && sinks.iter().all(|s| s["backlog"].as_i64() == Some(0)) {
            Ok(())
        } else {
            Err(h["replication"]["siem"].to_string())
        }
    })
    .await;
    let (status, metrics) = {
        let r = c
            .get(format!("{}/metrics", v.url))
            .bearer_auth(&v.token)
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.text().await.unwrap())
    };
    assert_eq!(status, 200, "{metrics}");
    for sink in ["syslog", "lines", "splunk"] {
        assert!(
            metrics.contains(&format!("clavitor_siem_backlog{{sink=\"{sink}\"}} 0")),
            "{metrics}"
        );
    }
}

/// kill -9 of the POP mid-stream, then a restart; then both collectors down for a while and
/// back: every event arrives, none skipped, in order (resends of unacknowledged events are
/// allowed and counted).
#[tokio::test(flavor = "multi_thread")]
async fn delivery_survives_kill9_and_collector_outage() {
    let siem_ca = Ca::new("SIEM CA");
    let leaf = siem_ca.leaf("collector");
    let mut syslog = Receiver::new(Kind::Syslog, &leaf).await;
    let mut http = Receiver::new(Kind::Http, &leaf).await;
    let pop = Pop::new();
    let ca = ca_file(&pop, "siem-ca.crt", &siem_ca);
    let bearer = token_file(&pop, "collector.token", "bearer-token-1234\n");
    let y = config_yaml(&pop, "primary", &Opts::default());
    pop.write_config(&format!(
        "{y}siem:\n  sinks:\n    - {{name: syslog, type: syslog, address: \"127.0.0.1:{}\", ca_file: {ca}, format: json, batch_size: 7, retry_max_seconds: 1}}\n    - {{name: ocsf-http, type: http, url: \"https://127.0.0.1:{}/ingest\", token_file: {bearer}, ca_file: {ca}, format: ocsf, batch_size: 5, retry_max_seconds: 1}}\n",
        syslog.addr.port(),
        http.addr.port()
    ));
    let mut v = pop.start();
    let c = pop.client();
    write_entries(&c, &v, "before", 40).await;
    // Killed while the sinks are still catching up (batches of 5 and 7).
    v.kill9();
    let mut v = pop.start();
    write_entries(&c, &v, "after", 10).await;
    let upto = api_events(&c, &v).await.last().map(plain_seq).unwrap();
    let d1 = delivered_in_order(&syslog, plain_seq, upto, "syslog after kill -9").await;
    let d2 = delivered_in_order(&http, ocsf_seq, upto, "http after kill -9").await;
    eprintln!("after kill -9: {d1} syslog and {d2} http duplicates");

    // Both collectors down: events are kept and retried.
    syslog.stop();
    http.stop();
    write_entries(&c, &v, "outage", 20).await;
    wait_for(WAIT, "both sinks failing in /healthz", || async {
        let h = health(&c, &v.url).await;
        let sinks = h["replication"]["siem"]["sinks"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        if sinks
            .iter()
            .filter(|s| !s["failing_since"].is_null())
            .count()
            == 2
        {
            Ok(())
        } else {
            Err(h["replication"]["siem"].to_string())
        }
    })
    .await;
    let h = health(&c, &v.url).await;
    assert!(
        h["replication"]["siem"]["sinks"]
            .as_array()
            .unwrap()
            .iter()
            .all(|s| s["backlog"].as_i64().unwrap() >= 20),
        "{h}"
    );
    // A dead sink does not slow requests down: writes go on at once.
    let started = std::time::Instant::now();
    write_entries(&c, &v, "while-down", 5).await;
    assert!(started.elapsed() < Duration::from_secs(5));
    syslog.start().await;
    http.start().await;
    let upto = api_events(&c, &v).await.last().map(plain_seq).unwrap();
    let d1 = delivered_in_order(&syslog, plain_seq, upto, "syslog after the outage").await;
    let d2 = delivered_in_order(&http, ocsf_seq, upto, "http after the outage").await;
    eprintln!("in all: {d1} syslog and {d2} http duplicates");
    assert!(syslog.bad_frames.lock().unwrap().is_empty());
    v.stop(Duration::from_secs(10));
}

/// A collector whose certificate the sink's CA did not sign is refused: nothing is sent, and
/// after max_retries one `siem_failed` alert names the sink.
#[tokio::test(flavor = "multi_thread")]
async fn wrong_ca_is_refused_and_alerted() {
    let real = Ca::new("SIEM CA");
    let other = Ca::new("some other CA");
    let leaf = real.leaf("collector");
    let syslog = Receiver::new(Kind::Syslog, &leaf).await;
    let http = Receiver::new(Kind::Http, &leaf).await;
    let pop = Pop::new();
    let wrong = ca_file(&pop, "wrong-ca.crt", &other);
    let bearer = token_file(&pop, "collector.token", "bearer-token-1234\n");
    let y = config_yaml(&pop, "primary", &Opts::default());
    pop.write_config(&format!(
        "{y}siem:\n  sinks:\n    - {{name: sl, type: syslog, address: \"127.0.0.1:{}\", ca_file: {wrong}, format: json, max_retries: 1, retry_max_seconds: 1}}\n    - {{name: web, type: http, url: \"https://127.0.0.1:{}/ingest\", token_file: {bearer}, ca_file: {wrong}, format: json, max_retries: 1, retry_max_seconds: 1}}\n",
        syslog.addr.port(),
        http.addr.port()
    ));
    let mut v = pop.start();
    let c = pop.client();
    write_entries(&c, &v, "x", 2).await;
    for sink in ["\"sl\"", "\"web\""] {
        assert!(
            v.wait_stderr(&format!("cannot be delivered to sink {sink}"), WAIT),
            "no siem_failed alert for {sink}:\n{}",
            v.stderr()
        );
    }
    let err = v.stderr();
    assert_eq!(
        err.matches("alert=\"siem_failed\"").count(),
        2,
        "one alert per sink:\n{err}"
    );
    assert!(syslog.got().is_empty() && http.got().is_empty());
    let h = health(&c, &v.url).await;
    for s in h["replication"]["siem"]["sinks"].as_array().unwrap() {
        let e = s["last_error"].as_str().unwrap_or_default().to_lowercase();
        assert!(e.contains("certificate") || e.contains("tls"), "{s}");
        assert!(s["backlog"].as_i64().unwrap() > 0, "{s}");
    }
    v.stop(Duration::from_secs(10));
}

/// A bad `siem:` block stops `serve` before anything is created, naming each key and its fix.
#[test]
fn bad_siem_config_is_refused_with_key_and_fix() {
    let pop = pop_with("");
    let open_token = pop.path("open.token");
    write_file(&open_token, "tok\n", 0o644);
    let y = config_yaml(&pop, "primary", &Opts::default());
    pop.write_config(&format!(
        "{y}siem:\n  sinks:\n    - {{type: syslog, address: \"no-port\", format: hec}}\n    - {{type: http, url: \"http://collector.example.com/in\", token_file: {}, format: xml}}\n    - {{type: kafka, format: json}}\n    - {{name: a, type: http, url: \"https://c.example.com\", format: json}}\n",
        q(&open_token)
    ));
    let out = run(&mut pop.serve_cmd());
    assert!(!out.status.success(), "{out}");
    let err = &out.stderr;
    for needle in [
        pop.config.to_str().unwrap(),
        "siem.sinks[0].address",
        "siem.sinks[0].format",
        "siem.sinks[1].url",
        "siem.sinks[1].token_file",
        "chmod 600",
        "siem.sinks[1].format",
        "siem.sinks[2].type",
        "siem.sinks[3].token_file",
        "Fix:",
    ] {
        assert!(err.contains(needle), "stderr lacks {needle:?}:\n{err}");
    }
    assert!(!pop.data.exists());

    // An unknown key in a sink is named with the keys allowed.
    pop.write_config(&format!(
        "{y}siem:\n  sinks:\n    - {{type: http, endpoint: x}}\n"
    ));
    let out = run(&mut pop.serve_cmd());
    assert!(!out.status.success(), "{out}");
    assert!(out.stderr.contains("endpoint"), "{out}");
}

/// SIGHUP swaps the sinks: a sink added by a reload receives the whole trail from its own
/// cursor; the one removed stops receiving.
#[tokio::test(flavor = "multi_thread")]
async fn sighup_reloads_sinks() {
    let siem_ca = Ca::new("SIEM CA");
    let leaf = siem_ca.leaf("collector");
    let first = Receiver::new(Kind::Syslog, &leaf).await;
    let second = Receiver::new(Kind::Http, &leaf).await;
    let pop = Pop::new();
    let ca = ca_file(&pop, "siem-ca.crt", &siem_ca);
    let bearer = token_file(&pop, "collector.token", "bearer-token-1234\n");
    let y = config_yaml(&pop, "primary", &Opts::default());
    pop.write_config(&format!(
        "{y}siem:\n  sinks:\n    - {{name: one, type: syslog, address: \"127.0.0.1:{}\", ca_file: {ca}, format: json}}\n",
        first.addr.port()
    ));
    let mut v = pop.start();
    let c = pop.client();
    write_entries(&c, &v, "a", 3).await;
    let upto = api_events(&c, &v).await.last().map(plain_seq).unwrap();
    delivered_in_order(&first, plain_seq, upto, "the first sink").await;
    assert!(second.got().is_empty());

    pop.write_config(&format!(
        "{y}siem:\n  sinks:\n    - {{name: two, type: http, url: \"https://127.0.0.1:{}/in\", token_file: {bearer}, ca_file: {ca}, format: json}}\n",
        second.addr.port()
    ));
    v.sighup();
    assert!(v.wait_stderr("sink=two", RELOAD_TIMEOUT), "{}", v.stderr());
    let before = first.got().len();
    write_entries(&c, &v, "b", 3).await;
    let upto = api_events(&c, &v).await.last().map(plain_seq).unwrap();
    delivered_in_order(&second, plain_seq, upto, "the sink added by SIGHUP").await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    // The removed sink saw at most the reload's own event, sent before it was stopped.
    assert!(
        first.got().len() <= before + 1,
        "the removed sink still receives"
    );
    v.stop(Duration::from_secs(10));
}

/// Events that retention deleted before a sink had them are skipped, counted and alerted;
/// delivery goes on from the first kept event without a further gap.
#[tokio::test(flavor = "multi_thread")]
async fn events_pruned_before_delivery_are_skipped_counted_and_alerted() {
    let siem_ca = Ca::new("SIEM CA");
    let leaf = siem_ca.leaf("collector");
    let mut r = Receiver::new(Kind::Http, &leaf).await;
    r.stop();
    let pop = Pop::new();
    let ca = ca_file(&pop, "siem-ca.crt", &siem_ca);
    let bearer = token_file(&pop, "collector.token", "bearer-token-1234\n");
    let y = config_yaml(&pop, "primary", &Opts::default());
    pop.write_config(&format!(
        "{y}siem:\n  sinks:\n    - {{name: late, type: http, url: \"https://127.0.0.1:{}/in\", token_file: {bearer}, ca_file: {ca}, format: json, retry_max_seconds: 1}}\n",
        r.addr.port()
    ));
    let mut v = pop.start();
    let c = pop.client();
    write_entries(&c, &v, "old", 5).await;
    v.stop(Duration::from_secs(10));
    tokio::time::sleep(Duration::from_millis(2100)).await;
    // Retention of 1 s deletes all but the newest event at start.
    let mut cmd = pop.serve_cmd();
    cmd.args(["--audit-retention", "1s"]);
    let v = Vault::start(&mut cmd, &pop.data);
    write_entries(&c, &v, "new", 2).await;
    let kept = api_events(&c, &v).await;
    let first_kept = plain_seq(&kept[0]);
    assert!(first_kept > 1, "retention deleted nothing: {kept:?}");
    r.start().await;
    assert!(
        v.wait_stderr("alert=\"siem_events_pruned\"", WAIT),
        "{}",
        v.stderr()
    );
    let upto = plain_seq(kept.last().unwrap());
    wait_for(WAIT, "the kept events delivered", || async {
        let seqs = r.seqs(plain_seq);
        if seqs.contains(&upto) {
            Ok(())
        } else {
            Err(seqs)
        }
    })
    .await;
    let seqs = r.seqs(plain_seq);
    assert_eq!(seqs[0], first_kept, "{seqs:?}");
    let h = health(&c, &v.url).await;
    let s = &h["replication"]["siem"]["sinks"][0];
    assert_eq!(s["skipped"].as_i64().unwrap(), first_kept - 1, "{s}");
}
