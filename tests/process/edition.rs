//! What differs between the editions, so that no test has to know: the flags `serve` needs,
//! how clients reach it, what it prints, what its binary holds and what it answers where the
//! editions differ. This file is the suite's only look at the `commercial` feature; both
//! halves have the same items.

pub use imp::*;

#[cfg(not(feature = "commercial"))]
mod imp {
    use reqwest::{ClientBuilder, Response};
    use rustls::ClientConfig;
    use std::net::SocketAddr;
    use std::path::{Path, PathBuf};
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    pub const TITLE: &str = "Community Edition";
    pub const ROLE: &str = "standalone";
    /// The sections `/healthz` adds to status, edition and role.
    pub const HEALTH_SECTIONS: &[&str] = &[];
    /// `listening on SCHEME://...`.
    pub const SCHEME: &str = "http";

    /// The stdout lines between `Starting ...` and `listening on ...`.
    pub fn role_lines() -> Vec<String> {
        Vec::new()
    }

    /// What `serve` needs besides `--data-dir` and `--listen`.
    pub fn serve_args() -> Vec<String> {
        Vec::new()
    }

    /// [`serve_args`] pointing at files of this `serve`'s own, written under `dir`, and
    /// every path written (for a test that runs `serve` as another user).
    pub fn own_serve_args(_dir: &Path) -> (Vec<String>, Vec<PathBuf>) {
        (Vec::new(), Vec::new())
    }

    /// What a client command needs besides `--server URL` to reach a `serve` child.
    pub fn client_args() -> Vec<String> {
        Vec::new()
    }

    /// `builder`, able to reach a `serve` child.
    pub fn reaching(builder: ClientBuilder) -> ClientBuilder {
        builder
    }

    /// How a raw connection (`common::raw`) reaches a `serve` child: plain TCP.
    pub fn raw_tls() -> Option<Arc<ClientConfig>> {
        None
    }

    /// What `serve --tls-cert FILE --tls-key FILE` says when the edition refuses the flags
    /// (`None`: it serves https with those files).
    pub const TLS_FLAGS_REFUSED: Option<&[&str]> = None;

    /// The server's own connections: Community opens none (no telemetry, replication, control
    /// plane or update check), so it has no peers and `serve` needs nothing for them.
    pub struct Peers {
        pub serve_args: Vec<String>,
        /// The addresses the server may connect to.
        pub allowed: Vec<SocketAddr>,
        /// What a client command needs besides `--server URL` to reach that server.
        pub client_args: Vec<String>,
    }

    impl Peers {
        /// `builder`, able to reach that server.
        pub fn reaching(&self, builder: ClientBuilder) -> ClientBuilder {
            reaching(builder)
        }

        /// Waits until the server at `_base` acknowledges writes (at once in Community).
        pub async fn ready(&self, _http: &reqwest::Client, _base: &str) {}
    }

    pub fn outbound_peers(_dir: &Path) -> Peers {
        Peers {
            serve_args: serve_args(),
            allowed: Vec::new(),
            client_args: client_args(),
        }
    }

    /// Text the binary must not contain: nothing of the Commercial edition.
    pub const BINARY_LACKS: &[&str] = &[
        "Commercial Edition",
        "Commercial edition",
        "(commercial)",
        "replication.yaml",
        "clavitor-pop-v1-",
        "/v1/replication/batch",
        "/scim/v2",
        "scim.token_file",
        "application/scim+json",
        // Source paths end up in panic locations and debug info of whatever is compiled in.
        "edition/commercial",
    ];
    /// Text the binary must contain.
    pub const BINARY_HOLDS: &[&str] = &["Community Edition", "(community)"];

    /// What `serve` logs on SIGHUP: there is nothing to reload.
    pub const SIGHUP_LINE: &str = "SIGHUP received";

    /// Community has no gauges of an edition of its own.
    pub async fn assert_edition_metrics(c: &reqwest::Client, base: &str, _text: &str) {
        let families = crate::metrics::families(c, base).await;
        for name in families.keys() {
            assert!(
                !name.contains("replication") && !name.contains("tarpit") && !name.contains("pop"),
                "{name} in Community"
            );
        }
    }

    /// Community answers an unknown path with a plain, immediate 404.
    pub async fn assert_unknown_path_answer(res: Response, path: &str, sent: Instant) {
        assert_eq!(res.status().as_u16(), 404, "{path}");
        tokio::time::timeout(Duration::from_secs(2), res.bytes())
            .await
            .unwrap_or_else(|_| panic!("{path}: the 404 body arrives at once"))
            .expect("read body");
        assert!(
            sent.elapsed() < Duration::from_secs(1),
            "{path}: no tarpit in Community"
        );
    }
}

#[cfg(feature = "commercial")]
mod imp {
    use crate::common::pki::Ca;
    use crate::common::primary::{BACKUP_ID, PrimaryPop};
    use crate::common::stand_in::{ControlPlane, CpMode};
    use reqwest::{ClientBuilder, Response};
    use rustls::ClientConfig;
    use std::net::{SocketAddr, TcpListener};
    use std::path::{Path, PathBuf};
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::{Duration, Instant};

    pub const TITLE: &str = "Commercial Edition";
    pub const ROLE: &str = "primary";
    pub const HEALTH_SECTIONS: &[&str] = &["replication"];
    pub const SCHEME: &str = "https";

    pub fn role_lines() -> Vec<String> {
        vec![format!(
            "Commercial edition: primary POP, replicating to {BACKUP_ID}"
        )]
    }

    /// A primary POP with full mTLS, replicating to a backup nobody runs (the process's
    /// shared POP files; every `serve` child has its own data dir).
    pub fn serve_args() -> Vec<String> {
        let pop = PrimaryPop::shared();
        vec![
            "--replication-config".into(),
            pop.config.display().to_string(),
        ]
    }

    /// A POP of its own under `dir/pop`.
    pub fn own_serve_args(dir: &Path) -> (Vec<String>, Vec<PathBuf>) {
        let pop_dir = dir.join("pop");
        std::fs::create_dir_all(&pop_dir).expect("create the POP's dir");
        let pop = PrimaryPop::write(&pop_dir);
        let args = vec![
            "--replication-config".into(),
            pop.config.display().to_string(),
        ];
        let mut written = vec![pop_dir];
        written.extend(pop.files);
        (args, written)
    }

    /// The POP serves HTTPS with a certificate from the test CA: the client trusts it with
    /// the contract's `--ca-file FILE` (the CLI's HTTPS work brings the flag; a CLI without
    /// it fails these tests at argument parsing, saying so).
    pub fn client_args() -> Vec<String> {
        vec![
            "--ca-file".into(),
            PrimaryPop::shared().ca_file.display().to_string(),
        ]
    }

    pub fn reaching(builder: ClientBuilder) -> ClientBuilder {
        PrimaryPop::shared().trusting(builder)
    }

    /// TLS trusting the shared POP's CA.
    pub fn raw_tls() -> Option<Arc<ClientConfig>> {
        Some(PrimaryPop::shared().client_config())
    }

    /// A POP serves TLS with the certificate in its replication.yaml.
    pub const TLS_FLAGS_REFUSED: Option<&[&str]> = Some(&[
        "--tls-cert/--tls-key do not apply to this edition",
        "replication.yaml",
        "Fix: remove --tls-cert and --tls-key",
    ]);

    /// A POP connects to its backup (pushes) and its control plane (heartbeats, telemetry,
    /// alerts), and nowhere else. Here the backup is a listener of the test that accepts and
    /// holds connections without answering, so the POP keeps trying it; the control plane is
    /// the stand-in, which answers heartbeats (without an answer a primary holds no lease and
    /// acknowledges no write).
    pub struct Peers {
        pub serve_args: Vec<String>,
        pub allowed: Vec<SocketAddr>,
        pub client_args: Vec<String>,
        pop: PrimaryPop,
        _backup: Holder,
        _control: ControlPlane,
    }

    impl Peers {
        /// `builder`, trusting that POP's CA.
        pub fn reaching(&self, builder: ClientBuilder) -> ClientBuilder {
            self.pop.trusting(builder)
        }

        /// Waits until the POP at `base` acknowledges writes: once its control plane has
        /// answered a heartbeat (`/healthz` `replication.lease.state`).
        pub async fn ready(&self, http: &reqwest::Client, base: &str) {
            crate::common::poll::wait_for(
                Duration::from_secs(10),
                "the control plane's first heartbeat answer",
                || async {
                    let h = crate::common::http::health(http, base).await;
                    (h["replication"]["lease"]["state"] == "unlimited")
                        .then_some(())
                        .ok_or(h)
                },
            )
            .await;
        }
    }

    /// A listener that accepts and keeps every connection until dropped.
    struct Holder(Arc<AtomicBool>);

    impl Holder {
        fn start() -> (Self, SocketAddr) {
            let listener = TcpListener::bind("127.0.0.1:0").expect("bind a peer");
            let addr = listener.local_addr().expect("peer address");
            listener.set_nonblocking(true).expect("non-blocking");
            let stop = Arc::new(AtomicBool::new(false));
            let stopped = stop.clone();
            std::thread::spawn(move || {
                let mut held = Vec::new();
                while !stopped.load(Ordering::Relaxed) {
                    match listener.accept() {
                        Ok((s, _)) => held.push(s),
                        Err(_) => std::thread::sleep(Duration::from_millis(10)),
                    }
                }
            });
            (Self(stop), addr)
        }
    }

    impl Drop for Holder {
        fn drop(&mut self) {
            self.0.store(true, Ordering::Relaxed);
        }
    }

    /// A POP of its own under `dir/pop`, whose backup is a [`Holder`] and whose control plane
    /// is the stand-in.
    pub fn outbound_peers(dir: &Path) -> Peers {
        let pop_dir = dir.join("pop");
        std::fs::create_dir_all(&pop_dir).expect("create the POP's dir");
        let (backup, backup_addr) = Holder::start();
        let ca = Ca::new("Clavitor test POP CA");
        let control = ControlPlane::start(&ca, CpMode::Ok);
        let control_addr: SocketAddr = control
            .url
            .trim_start_matches("https://")
            .parse()
            .expect("the stand-in's address");
        let pop = PrimaryPop::write_with_ca(
            &pop_dir,
            &format!("https://{backup_addr}"),
            Some(&control.url),
            &ca,
        );
        Peers {
            serve_args: vec![
                "--replication-config".into(),
                pop.config.display().to_string(),
            ],
            allowed: vec![backup_addr, control_addr],
            client_args: vec!["--ca-file".into(), pop.ca_file.display().to_string()],
            pop,
            _backup: backup,
            _control: control,
        }
    }

    pub const BINARY_LACKS: &[&str] = &[];
    pub const BINARY_HOLDS: &[&str] = &["Commercial Edition", "(commercial)"];

    /// What `serve` logs on SIGHUP: replication.yaml re-read.
    pub const SIGHUP_LINE: &str = "configuration reloaded";

    /// The POP's gauges: its role, replication (the backup this primary names never runs, so
    /// the entry written stays owed and pushes fail), and the tarpit holding the one unknown
    /// path the caller still holds.
    pub async fn assert_edition_metrics(c: &reqwest::Client, base: &str, text: &str) {
        use crate::common::metrics::{gauge, parse};
        use crate::metrics::families;
        let m = parse(text);
        let pop = m.get("clavitor_pop").expect("clavitor_pop info");
        let labels = pop
            .iter_samples()
            .next()
            .expect("one sample")
            .get_labelset()
            .expect("labels");
        assert_eq!(labels.get_label_value("role"), Some("primary"));
        assert_eq!(
            labels.get_label_value("pop_id"),
            Some(crate::common::primary::POP_ID)
        );
        assert!(gauge(&m, "clavitor_replication_backlog").expect("backlog") >= 1.0);
        let committed = gauge(&m, "clavitor_replication_committed_version").expect("committed");
        let acked = gauge(&m, "clavitor_replication_acked_watermark").expect("watermark");
        assert!(acked < committed, "acked {acked}, committed {committed}");
        assert!(gauge(&m, "clavitor_replication_applied_watermark").is_none());
        assert_eq!(gauge(&m, "clavitor_tarpit_held"), Some(1.0));
        assert_eq!(gauge(&m, "clavitor_tarpit_capacity"), Some(1000.0));
        assert_eq!(gauge(&m, "clavitor_tarpit_saturated"), Some(0.0));
        // Pushes to the absent backup fail from the first attempt.
        crate::common::poll::wait_for(Duration::from_secs(10), "replication_failing 1", || async {
            let m = families(c, base).await;
            let failing = gauge(&m, "clavitor_replication_failing");
            (failing == Some(1.0)).then_some(()).ok_or(failing)
        })
        .await;
    }

    /// Commercial holds an unknown path in the tarpit: a 404 whose body drips a byte a second.
    pub async fn assert_unknown_path_answer(res: Response, path: &str, _sent: Instant) {
        assert_eq!(res.status().as_u16(), 404, "{path}");
        assert!(
            tokio::time::timeout(Duration::from_millis(1500), res.bytes())
                .await
                .is_err(),
            "{path}: the tarpit holds the body back"
        );
    }
}
