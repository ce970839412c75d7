//! The Community promise, made precise: the community server never opens a connection of its
//! own. While a full workload runs (and after it), every socket the server process holds is its
//! listener or a connection accepted on it. Its `/proc/PID/fd` socket inodes are looked up in
//! the kernel's tables (`/proc/PID/net/{tcp,tcp6,udp,udp6,raw,raw6,unix,netlink,packet}`), many
//! times over, not once. A Commercial POP does connect, by design: to its backup and its control
//! plane, and (`edition::outbound_peers`) to nothing else: there every TCP socket is the
//! listener, accepted on it, or connected to one of those addresses.
//!
//! One kind of socket is allowed beyond TCP: a unix stream socket whose peer is another socket
//! of the same process (tokio's signal driver wakes its reactor through such a pair). Its peer
//! inode comes from `ss -x` (iproute2), as `/proc/net/unix` does not show peers. Any other unix
//! socket (journald, syslog, a name service), any UDP (DNS), raw, netlink or packet socket, and
//! any TCP socket not on the listening address, is a violation.

use crate::edition;
use crate::helpers::{Scratch, Vault, command, init, run, runtime, serve_cmd_with};
use serde_json::{Value, json};
use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// What the kernel's tables say about one socket inode.
#[derive(Clone, Debug)]
enum Entry {
    Tcp {
        local: SocketAddr,
        remote: SocketAddr,
        state: u8,
    },
    Other {
        table: &'static str,
        line: String,
    },
    Unix {
        path: String,
    },
}

const TCP_LISTEN: u8 = 0x0A;
/// How many looks at the server's sockets the workload lasts for, at least.
const MIN_SAMPLES: usize = 50;

/// `0100007F:1F91` (and the IPv6 form) from `/proc/net/tcp*`: addresses are 32-bit words in
/// host order, the port is big-endian hex.
fn parse_addr(s: &str) -> Option<SocketAddr> {
    let (ip, port) = s.split_once(':')?;
    let port = u16::from_str_radix(port, 16).ok()?;
    let words: Vec<u32> = (0..ip.len() / 8)
        .map(|i| u32::from_str_radix(&ip[i * 8..i * 8 + 8], 16))
        .collect::<Result<_, _>>()
        .ok()?;
    let bytes: Vec<u8> = words.iter().flat_map(|w| w.to_ne_bytes()).collect();
    let ip = match bytes.len() {
        4 => IpAddr::V4(Ipv4Addr::from(<[u8; 4]>::try_from(bytes).ok()?)),
        16 => {
            let v6 = Ipv6Addr::from(<[u8; 16]>::try_from(bytes).ok()?);
            v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4)
        }
        _ => return None,
    };
    Some(SocketAddr::new(ip, port))
}

/// Every socket in the process's network namespace, by inode.
fn kernel_tables(pid: u32) -> HashMap<u64, Entry> {
    let mut all = HashMap::new();
    let read =
        |name: &str| std::fs::read_to_string(format!("/proc/{pid}/net/{name}")).unwrap_or_default();
    for table in ["tcp", "tcp6"] {
        for line in read(table).lines().skip(1) {
            let f: Vec<&str> = line.split_whitespace().collect();
            if let (Some(l), Some(r), Some(st), Some(ino)) = (
                f.get(1).and_then(|a| parse_addr(a)),
                f.get(2).and_then(|a| parse_addr(a)),
                f.get(3).and_then(|s| u8::from_str_radix(s, 16).ok()),
                f.get(9).and_then(|i| i.parse::<u64>().ok()),
            ) {
                all.insert(
                    ino,
                    Entry::Tcp {
                        local: l,
                        remote: r,
                        state: st,
                    },
                );
            }
        }
    }
    // Inode column per table: udp/raw like tcp (9), netlink 9, packet 8.
    for (table, col) in [
        ("udp", 9),
        ("udp6", 9),
        ("raw", 9),
        ("raw6", 9),
        ("netlink", 9),
        ("packet", 8),
    ] {
        for line in read(table).lines().skip(1) {
            let f: Vec<&str> = line.split_whitespace().collect();
            if let Some(ino) = f.get(col).and_then(|i| i.parse::<u64>().ok()) {
                all.insert(
                    ino,
                    Entry::Other {
                        table,
                        line: line.trim().to_owned(),
                    },
                );
            }
        }
    }
    for line in read("unix").lines().skip(1) {
        let f: Vec<&str> = line.split_whitespace().collect();
        if let Some(ino) = f.get(6).and_then(|i| i.parse::<u64>().ok()) {
            let path = f.get(7).map_or(String::new(), |p| (*p).to_owned());
            all.insert(ino, Entry::Unix { path });
        }
    }
    all
}

/// The inodes of the sockets `pid` holds; empty once it is gone.
fn socket_inodes(pid: u32) -> HashSet<u64> {
    let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return HashSet::new();
    };
    fds.flatten()
        .filter_map(|fd| std::fs::read_link(fd.path()).ok())
        .filter_map(|target| {
            let t = target.to_str()?;
            t.strip_prefix("socket:[")?.strip_suffix(']')?.parse().ok()
        })
        .collect()
}

/// Unix socket inode -> its peer's inode, from `ss -x` (all unix sockets of the namespace).
fn unix_peers() -> HashMap<u64, u64> {
    let out = std::process::Command::new("ss")
        .args(["-x", "-a", "-H", "-n"])
        .output()
        .expect("`ss` (iproute2) must be installed: it shows a unix socket's peer");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let n = f.len();
            if n < 8 {
                return None;
            }
            Some((f[n - 3].parse().ok()?, f[n - 1].parse().ok()?))
        })
        .collect()
}

/// What the sampler saw.
#[derive(Default, Debug)]
struct Audit {
    /// The addresses the server may connect to (its configured peers).
    peers: Vec<SocketAddr>,
    samples: usize,
    /// Most accepted connections held at once.
    max_accepted: usize,
    /// Most connections to `peers` held at once.
    max_to_peers: usize,
    violations: Vec<String>,
    /// Inodes held but in no table, and since when (a socket closing between the two reads).
    unresolved: HashMap<u64, Instant>,
    allowed_pairs: HashSet<u64>,
}

impl Audit {
    fn allowing(peers: &[SocketAddr]) -> Self {
        Self {
            peers: peers.to_vec(),
            ..Self::default()
        }
    }

    /// One look at `pid`: every socket it holds must be allowed for a server on `listen`.
    fn sample(&mut self, pid: u32, listen: SocketAddr) {
        let held = socket_inodes(pid);
        if held.is_empty() {
            return;
        }
        let tables = kernel_tables(pid);
        let (mut accepted, mut to_peers) = (0, 0);
        self.samples += 1;
        self.unresolved.retain(|ino, _| held.contains(ino));
        for ino in &held {
            match tables.get(ino) {
                Some(Entry::Tcp { local, state, .. })
                    if *local == listen && *state == TCP_LISTEN => {}
                Some(Entry::Tcp { local, .. }) if *local == listen => accepted += 1,
                Some(Entry::Tcp { remote, .. }) if self.peers.contains(remote) => to_peers += 1,
                Some(Entry::Tcp {
                    local,
                    remote,
                    state,
                }) => self.violations.push(format!(
                    "TCP socket {local} -> {remote} (state {state:02X}) is not the listener \
                     {listen} nor accepted on it, nor to a configured peer {:?}",
                    self.peers
                )),
                Some(Entry::Unix { path }) if path.is_empty() => {
                    if !self.allowed_pairs.contains(ino) {
                        let peers = unix_peers();
                        match peers.get(ino) {
                            Some(peer) if held.contains(peer) => {
                                self.allowed_pairs.extend([*ino, *peer]);
                            }
                            other => self.violations.push(format!(
                                "unix socket {ino} is connected to {other:?}, outside the server"
                            )),
                        }
                    }
                }
                Some(Entry::Unix { path }) => self
                    .violations
                    .push(format!("named unix socket {path} (inode {ino})")),
                Some(Entry::Other { table, line }) => self
                    .violations
                    .push(format!("{table} socket (inode {ino}): {line}")),
                None => {
                    let since = *self.unresolved.entry(*ino).or_insert_with(Instant::now);
                    if since.elapsed() > Duration::from_millis(500) {
                        self.violations
                            .push(format!("socket {ino} is in no kernel table for 500 ms"));
                        self.unresolved.remove(ino);
                    }
                }
            }
        }
        self.max_accepted = self.max_accepted.max(accepted);
        self.max_to_peers = self.max_to_peers.max(to_peers);
    }
}

/// Samples `pid` every few milliseconds on a thread until stopped.
struct Sampler {
    stop: Arc<AtomicBool>,
    audit: Arc<Mutex<Audit>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Sampler {
    fn start(pid: u32, listen: SocketAddr, peers: &[SocketAddr]) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let audit = Arc::new(Mutex::new(Audit::allowing(peers)));
        let (s, a) = (stop.clone(), audit.clone());
        let thread = std::thread::spawn(move || {
            let deadline = Instant::now() + Duration::from_secs(150);
            while !s.load(Ordering::Relaxed) && Instant::now() < deadline {
                a.lock().unwrap().sample(pid, listen);
                std::thread::sleep(Duration::from_millis(3));
            }
        });
        Self {
            stop,
            audit,
            thread: Some(thread),
        }
    }

    fn samples(&self) -> usize {
        self.audit.lock().unwrap().samples
    }

    fn finish(mut self) -> Audit {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            t.join().expect("sampler thread");
        }
        std::mem::take(&mut *self.audit.lock().unwrap())
    }
}

/// Every kind of request a vault sees: each tier, agents reading in and out of scope,
/// revocation, updates and deletes, bad input, unknown paths, operator endpoints.
async fn workload(http: reqwest::Client, base: String, owner: String, round: usize) {
    let owner = owner.as_str();
    let call = |method: reqwest::Method, path: &str, token: Option<&str>, body: Option<Value>| {
        let mut rb = http.request(method, format!("{base}{path}"));
        if let Some(t) = token {
            rb = rb.bearer_auth(t);
        }
        if let Some(b) = body {
            rb = rb.json(&b);
        }
        async move {
            let res = rb.send().await.expect("the server answers");
            let status = res.status().as_u16();
            (status, res.json::<Value>().await.unwrap_or(Value::Null))
        }
    };
    use reqwest::Method as M;
    let (st, e) = call(
        M::POST,
        "/v1/entries",
        Some(owner),
        Some(
            json!({"title": format!("db-{round}"), "url": "https://db", "username": "app",
            "fields": [
                {"name": "password", "value": "pw", "tier": "vault"},
                {"name": "api_key", "value": "k", "tier": "credential", "scope": "ci"},
                {"name": "deploy_key", "value": "d", "tier": "credential", "scope": "deploy"},
                {"name": "ssh", "value": "c2VhbGVkIGJ5IHRoZSBjbGllbnQ=", "tier": "identity"},
            ]}),
        ),
    )
    .await;
    assert_eq!(st, 201, "{e}");
    let id = e["id"].as_str().unwrap().to_owned();
    let (st, a) = call(
        M::POST,
        "/v1/agents",
        Some(owner),
        Some(
            json!({"name": format!("ci-{round}"), "scopes": ["ci"], "ttl_seconds": 3600,
            "ip_allowlist": ["127.0.0.1", "::1/128"], "rate_limit_per_minute": 1000}),
        ),
    )
    .await;
    assert_eq!(st, 201, "{a}");
    let agent_id = a["id"].as_str().unwrap().to_owned();
    let agent = a["token"].as_str().unwrap().to_owned();
    let agent = agent.as_str();
    for (path, token, want) in [
        (format!("/v1/entries/{id}/fields/password"), owner, 200),
        (format!("/v1/entries/{id}/fields/api_key"), owner, 200),
        (format!("/v1/entries/{id}/fields/ssh"), owner, 200),
        (format!("/v1/entries/{id}/fields/api_key"), agent, 200),
        (format!("/v1/entries/{id}"), owner, 200),
        ("/v1/entries".to_owned(), owner, 200),
        ("/v1/agents".to_owned(), owner, 200),
    ] {
        let (st, body) = call(M::GET, &path, Some(token), None).await;
        assert_eq!(st, want, "GET {path}: {body}");
    }
    let (st, _) = call(
        M::GET,
        &format!("/v1/entries/{id}/fields/deploy_key"),
        Some(agent),
        None,
    )
    .await;
    assert!(st == 403 || st == 404, "out of scope: {st}");
    let (st, _) = call(
        M::PUT,
        &format!("/v1/entries/{id}"),
        Some(owner),
        Some(json!({"title": format!("db-{round}-v2"), "fields": [
            {"name": "password", "value": "pw2"}]})),
    )
    .await;
    assert_eq!(st, 200);
    // Bad requests: no token, a wrong one, bad JSON, a bad tier, unknown paths, wrong methods.
    for (method, path, token, body) in [
        (M::GET, "/v1/entries".to_owned(), None, None),
        (M::GET, "/v1/entries".to_owned(), Some("clv_wrong"), None),
        (
            M::POST,
            "/v1/entries".to_owned(),
            Some(owner),
            Some(json!({"title": 5})),
        ),
        (
            M::POST,
            "/v1/entries".to_owned(),
            Some(owner),
            Some(json!({"title": "t", "fields": [{"name": "x", "value": "y", "tier": "nope"}]})),
        ),
        (
            M::POST,
            "/v1/agents".to_owned(),
            Some(agent),
            Some(json!({"name": "escalate", "scopes": ["deploy"]})),
        ),
        (M::GET, "/nope".to_owned(), None, None),
        (
            M::GET,
            "/v1/nope/../../etc/passwd".to_owned(),
            Some(owner),
            None,
        ),
        (M::PATCH, "/v1/entries".to_owned(), Some(owner), None),
        (
            M::GET,
            "/v1/entries/not-a-uuid".to_owned(),
            Some(owner),
            None,
        ),
    ] {
        // The status only: where the edition holds unknown paths in the tarpit, the body
        // would take its time.
        let mut rb = http.request(method.clone(), format!("{base}{path}"));
        if let Some(t) = token {
            rb = rb.bearer_auth(t);
        }
        if let Some(b) = body {
            rb = rb.json(&b);
        }
        let st = rb.send().await.expect("the server answers").status();
        assert!(st.is_client_error(), "{method} {path}: {st}");
    }
    let bad = http
        .post(format!("{base}/v1/entries"))
        .bearer_auth(owner)
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .expect("answer");
    assert_eq!(bad.status().as_u16(), 400);
    for path in ["/healthz", "/metrics"] {
        let (st, _) = call(M::GET, path, None, None).await;
        assert_eq!(st, 200, "{path}");
    }
    let (st, _) = call(
        M::DELETE,
        &format!("/v1/agents/{agent_id}"),
        Some(owner),
        None,
    )
    .await;
    assert!((200..300).contains(&st), "revoke: {st}");
    let (st, _) = call(
        M::GET,
        &format!("/v1/entries/{id}/fields/api_key"),
        Some(agent),
        None,
    )
    .await;
    assert_eq!(st, 401, "revoked agent");
    let (st, _) = call(M::DELETE, &format!("/v1/entries/{id}"), Some(owner), None).await;
    assert!((200..300).contains(&st), "delete: {st}");
}

#[test]
fn the_server_holds_only_its_listener_accepted_connections_and_connections_to_its_peers() {
    let tmp = Scratch::new();
    let token = init(&tmp.data());
    let peers = edition::outbound_peers(tmp.path());
    let server = Vault::start(
        &mut serve_cmd_with(&tmp.data(), peers.serve_args.clone()),
        &tmp.data(),
    );
    let pid = server.pid().as_raw() as u32;
    let listen = server.addr();
    let sampler = Sampler::start(pid, listen, &peers.allowed);

    let http = peers
        .reaching(reqwest::Client::builder())
        .build()
        .expect("HTTP client");
    let rt = runtime();
    // Waves of rounds in parallel (so connections overlap), until the sampler has looked
    // often enough: at least 3 waves and MIN_SAMPLES samples, however loaded the machine is.
    rt.block_on(async {
        peers.ready(&http, &server.url).await;
        tokio::time::timeout(Duration::from_secs(90), async {
            let mut wave = 0;
            while wave < 3 || sampler.samples() < MIN_SAMPLES {
                let rounds: Vec<_> = (0..3)
                    .map(|r| {
                        tokio::spawn(workload(
                            http.clone(),
                            server.url.clone(),
                            token.clone(),
                            wave * 3 + r,
                        ))
                    })
                    .collect();
                for r in rounds {
                    r.await.expect("workload round");
                }
                wave += 1;
            }
        })
        .await
        .expect("the workload and its sampling finish within 90 s");
    });
    // The CLI too, as users drive it.
    for args in [
        &["entry", "add", "cli-entry", "-f", "k:credential:ci=v"][..],
        &["entry", "list"],
        &["read", "clavitor://cli-entry/k"],
        &["agent", "add", "cli-agent", "-s", "ci"],
        &["agent", "revoke", "cli-agent"],
    ] {
        run(command(args)
            .args(["--server", &server.url])
            .args(&peers.client_args)
            .env("CLAVITOR_TOKEN", &token))
        .ok();
    }
    drop(rt);
    // After the workload: idle, clients gone.
    std::thread::sleep(Duration::from_millis(300));
    let audit = sampler.finish();
    let mut after = Audit::allowing(&peers.allowed);
    for _ in 0..20 {
        after.sample(pid, listen);
        std::thread::sleep(Duration::from_millis(10));
    }

    eprintln!(
        "audit: {} samples, at most {} accepted connections and {} to peers at once, {} unix pair sockets; after: {} samples",
        audit.samples,
        audit.max_accepted,
        audit.max_to_peers,
        audit.allowed_pairs.len(),
        after.samples
    );
    assert!(audit.samples >= MIN_SAMPLES, "too few samples: {audit:?}");
    assert!(
        audit.max_accepted >= 1,
        "the sampler never saw a client connection, so it proved nothing: {audit:?}"
    );
    // Where the edition has peers, the sampler must have seen the server reach them, or it
    // proved nothing about where connections go.
    assert!(
        peers.allowed.is_empty() || audit.max_to_peers >= 1,
        "the sampler never saw a connection to a peer {:?}: {audit:?}",
        peers.allowed
    );
    assert!(audit.violations.is_empty(), "{:#?}", audit.violations);
    assert!(after.violations.is_empty(), "{:#?}", after.violations);
    assert_eq!(after.samples, 20);
    assert!(
        server.stderr().is_empty() || !server.stderr().contains("panicked"),
        "{}",
        server.stderr()
    );
}

/// With `--enable-proxy`, the server connects out, but only to hosts an owner listed on a
/// field: here the one upstream (127.0.0.1, listed), while calls to hosts no used field lists
/// are refused before any connection, and the rest of the workload runs as usual.
#[test]
fn with_the_proxy_on_the_only_outbound_connections_go_to_listed_hosts() {
    use crate::common::pki::Ca;
    use crate::common::upstream::Upstream;
    use crate::helpers::{config_home, with_config_home};
    let tmp = Scratch::new();
    let data = tmp.data();
    let token = init(&data);
    let rt = runtime();
    let ca = Ca::new("upstream CA");
    let upstream = rt.block_on(Upstream::https(&ca));
    let ca_file = tmp.path().join("upstream-ca.pem");
    std::fs::write(&ca_file, ca.pem()).unwrap();
    let peers = edition::outbound_peers(tmp.path());
    let mut args = peers.serve_args.clone();
    args.extend([
        "--enable-proxy".to_owned(),
        "--proxy-ca-file".to_owned(),
        ca_file.display().to_string(),
    ]);
    let mut cmd = serve_cmd_with(&data, args);
    with_config_home(&mut cmd, &config_home(&data));
    let server = crate::helpers::Vault::start(&mut cmd, &data);
    let pid = server.pid().as_raw() as u32;
    // The edition's own peers (Commercial: backup and control plane) and the listed upstream.
    let mut allowed = peers.allowed.clone();
    allowed.push(upstream.addr);
    let sampler = Sampler::start(pid, server.addr(), &allowed);

    let http = peers.reaching(reqwest::Client::builder()).build().unwrap();
    let (base, owner) = (server.url.clone(), token.clone());
    rt.block_on(async {
        peers.ready(&http, &base).await;
        let res = http
            .post(format!("{base}/v1/entries"))
            .bearer_auth(&owner)
            .json(&json!({"title": "api", "fields": [
                {"name": "key", "value": "sk-proxy-0123456789", "tier": "credential",
                 "scope": "ci", "agent_access": "use", "allowed_hosts": ["127.0.0.1"]}]}))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 201);
        let proxy = |url: String| {
            let (http, base, owner) = (http.clone(), base.clone(), owner.clone());
            async move {
                http.post(format!("{base}/v1/proxy"))
                    .bearer_auth(&owner)
                    .json(&json!({"method": "GET", "url": url,
                        "headers": {"Authorization": "Bearer {{clavitor://api/key}}"}}))
                    .send()
                    .await
                    .unwrap()
                    .status()
                    .as_u16()
            }
        };
        let port = upstream.addr.port();
        tokio::time::timeout(Duration::from_secs(90), async {
            let mut wave = 0;
            while wave < 2 || sampler.samples() < MIN_SAMPLES {
                workload(http.clone(), base.clone(), owner.clone(), wave).await;
                assert_eq!(proxy(upstream.url("/")).await, 200);
                for refused in [
                    format!("https://127.0.0.2:{port}/"),
                    "https://api.example.com/".to_owned(),
                    "http://10.0.0.1/".to_owned(),
                    "https://169.254.169.254/latest/meta-data/".to_owned(),
                ] {
                    assert_eq!(proxy(refused).await, 403);
                }
                wave += 1;
            }
        })
        .await
        .expect("the workload finishes within 90 s");
    });
    let audit = sampler.finish();
    eprintln!(
        "audit: {} samples, at most {} accepted and {} outbound connections at once",
        audit.samples, audit.max_accepted, audit.max_to_peers
    );
    assert!(audit.violations.is_empty(), "{:#?}", audit.violations);
    assert!(
        audit.max_to_peers >= 1,
        "the sampler never saw the proxy's connection, so it proved nothing: {audit:?}"
    );
    assert!(upstream.connection_count() >= 1);
    assert!(
        upstream.requests().iter().all(|r| r.path == "/"),
        "only the allowed calls arrived"
    );
}

/// The audit itself catches what it is for: run on this test process, which holds a listener,
/// an outbound TCP connection and a UDP socket; and it lets a connection to a configured peer
/// through.
#[test]
fn the_audit_flags_outbound_tcp_and_udp_sockets() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let target = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let out = std::net::TcpStream::connect(target.local_addr().unwrap()).unwrap();
    let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let mut audit = Audit::default();
    audit.sample(std::process::id(), listener.local_addr().unwrap());
    let outbound = format!("-> {}", target.local_addr().unwrap());
    assert!(
        audit.violations.iter().any(|v| v.contains(&outbound)),
        "{outbound} not flagged: {:#?}",
        audit.violations
    );
    let udp_port = format!(":{:04X}", udp.local_addr().unwrap().port());
    assert!(
        audit
            .violations
            .iter()
            .any(|v| v.starts_with("udp socket") && v.contains(&udp_port)),
        "udp {udp_port} not flagged: {:#?}",
        audit.violations
    );
    let mut with_peer = Audit::allowing(&[target.local_addr().unwrap()]);
    with_peer.sample(std::process::id(), listener.local_addr().unwrap());
    assert!(
        !with_peer.violations.iter().any(|v| v.contains(&outbound)),
        "a connection to a configured peer was flagged: {:#?}",
        with_peer.violations
    );
    assert_eq!(with_peer.max_to_peers, 1);
    drop((out, udp));
}
