//! `clavitor-bench`: measures a real `clavitor serve` on loopback and prints every figure
//! beside a reference measured in the same run (bare axum, raw SQLite), with the goals.
//!
//! Run: `cargo build --release && cargo run --release --bin clavitor-bench` (add
//! `--features commercial` to both for the Commercial edition and its scenarios).
//! See BENCHMARKS.md for what each figure means.

mod bare;
mod disk;
mod http;
mod load;
mod os;
#[cfg(feature = "commercial")]
mod pop;
mod proc;
mod report;
mod scenarios;

use anyhow::{Context, Result, bail};
use clap::Parser;
use report::Report;
use scenarios::{Ctx, Settings};
use std::process::{Command, ExitCode};
use std::time::Duration;

#[derive(Debug, Parser)]
#[command(
    name = "clavitor-bench",
    about = "Benchmarks a real `clavitor serve` on 127.0.0.1 against same-run ceilings",
    after_help = "Needs the `clavitor` binary next to this one: run `cargo build --release` first.\nExit code: 0 when every scenario ran (goals missed or not), 1 when one failed."
)]
struct Cli {
    /// Seconds of each measured window (each also gets a warm-up first).
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..=3600))]
    duration: u64,
    /// Concurrent keep-alive connections for the loaded figures.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u64).range(1..=4096))]
    connections: u64,
    /// Idle keep-alive connections held open in the idle-connections scenario.
    #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..=100_000))]
    idle_connections: u64,
    /// Unmeasured load before each window, in milliseconds.
    #[arg(long, default_value_t = 1000)]
    warmup_ms: u64,
    /// Threads for the load generator (it shares the machine with the server under test).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=64))]
    client_threads: u64,
    /// Run only these scenarios (repeatable): reads, writes, cold-start, import, idle-connections,
    /// agents.
    #[cfg_attr(
        feature = "commercial",
        doc = "This Commercial build adds replication-lag, catch-up, replication-throughput, tarpit, siem."
    )]
    #[arg(long = "scenario", value_name = "NAME")]
    scenarios: Vec<String>,
    /// Print one JSON object with all figures instead of the table.
    #[arg(long)]
    json: bool,
    /// Another `clavitor` build of the same edition (e.g. before the audit trail, built with
    /// `--target-dir`) to measure beside this one in the reads and writes scenarios.
    #[arg(long, value_name = "PATH")]
    reference_clavitor: Option<std::path::PathBuf>,
    /// Internal: serve the bare-axum reference handler (the bench starts this itself).
    #[arg(long, hide = true)]
    bare_server: bool,
    /// Internal: the bare server's TLS certificate and key (PEM): serve HTTPS.
    #[arg(long, hide = true, num_args = 2, value_names = ["CERT", "KEY"])]
    bare_tls: Vec<std::path::PathBuf>,
    #[cfg(feature = "commercial")]
    #[command(flatten)]
    pop: pop::Options,
}

/// The edition this bench was built for; the `clavitor` next to it must match.
const EDITION: &str = if cfg!(feature = "commercial") {
    "commercial"
} else {
    "community"
};

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = if cli.bare_server {
        let tls = match cli.bare_tls.as_slice() {
            [cert, key] => Some((cert.as_path(), key.as_path())),
            _ => None,
        };
        bare::serve(tls).map(|()| ExitCode::SUCCESS)
    } else {
        run(cli)
    };
    result.unwrap_or_else(|e| {
        eprintln!("error: {e:#}");
        ExitCode::FAILURE
    })
}

fn run(cli: Cli) -> Result<ExitCode> {
    let mut selected = scenarios::all();
    if !cli.scenarios.is_empty() {
        let known: Vec<&str> = selected.iter().map(|s| s.name()).collect();
        for want in &cli.scenarios {
            if !known.contains(&want.as_str()) {
                bail!("unknown scenario {want:?}; known: {}", known.join(", "));
            }
        }
        selected.retain(|s| cli.scenarios.iter().any(|w| w == s.name()));
    }
    let clavitor = proc::find_clavitor()?;
    let version = Command::new(&clavitor)
        .arg("--version")
        .output()
        .with_context(|| format!("cannot run {} --version", clavitor.display()))?;
    let version = String::from_utf8_lossy(&version.stdout).trim().to_owned();
    // Cargo puts whichever edition was built last at target/release/clavitor.
    if !version.ends_with(&format!("({EDITION})")) {
        let features = if EDITION == "commercial" {
            " --features commercial"
        } else {
            ""
        };
        bail!(
            "{} is `{version}`, but this bench was built for the {EDITION} edition. Fix: run `cargo build --release{features}` (it builds both binaries for the same edition)",
            clavitor.display()
        );
    }

    let threads = usize::try_from(cli.client_threads).unwrap_or(1);
    let rt = if threads == 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads)
            .enable_all()
            .build()
    }
    .context("cannot start the load generator's runtime")?;
    let settings = Settings {
        duration: Duration::from_secs(cli.duration),
        warmup: Duration::from_millis(cli.warmup_ms),
        connections: usize::try_from(cli.connections).unwrap_or(64),
        idle_connections: usize::try_from(cli.idle_connections).unwrap_or(10_000),
    };
    let scratch = proc::TempDir::new("clavitor-bench")?;
    let mut ctx = Ctx {
        settings,
        rt,
        #[cfg(feature = "commercial")]
        pop: pop::Kit::new(cli.pop, &clavitor, scratch.path())?,
        clavitor: clavitor.clone(),
        reference: cli.reference_clavitor.clone(),
        scratch,
        populated_vault: None,
    };

    let load_before = loadavg();
    if load_before > 0.5 {
        eprintln!(
            "warning: load average is {load_before:.2} before the run; other work on this machine will skew the figures"
        );
    }
    let mut figures = Vec::new();
    let mut failures = Vec::new();
    for s in &selected {
        match s.run(&mut ctx) {
            Ok(f) => figures.extend(f),
            Err(e) => {
                eprintln!("[{}] FAILED: {e:#}", s.name());
                failures.push((s.name().to_owned(), format!("{e:#}")));
            }
        }
    }

    let report = Report {
        header: vec![
            (
                "Server".into(),
                format!("{version} ({})", clavitor.display()),
            ),
            ("Machine".into(), machine()),
            (
                "Load".into(),
                format!(
                    "1-min load average {load_before:.2} before, {:.2} after the run",
                    loadavg()
                ),
            ),
            (
                "Settings".into(),
                format!(
                    "{} s windows after {} ms warm-up, {} connections, {} client thread(s), loopback",
                    cli.duration, cli.warmup_ms, cli.connections, cli.client_threads
                ),
            ),
            #[cfg(feature = "commercial")]
            (
                "Commercial".into(),
                format!(
                    "{} paced writes/s for replication-lag, {} entries for catch-up, {} tarpit connections",
                    cli.pop.replication_rate, cli.pop.catchup_entries, cli.pop.tarpit_connections
                ),
            ),
        ],
        figures,
        failures,
    };
    if cli.json {
        println!("{}", report.json());
    } else {
        print!("{}", report.table());
    }
    Ok(if report.failures.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// `N cores, CPU model, M GiB RAM`, from std and /proc.
fn machine() -> String {
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .and_then(|l| l.split_once(':'))
        .map_or("unknown CPU", |(_, m)| m.trim())
        .to_owned();
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let mem_gib = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|kb| kb.parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0 / 1024.0);
    format!("{cores} cores, {model}, {mem_gib:.1} GiB RAM")
}

/// The 1-minute load average (0 when unknown).
fn loadavg() -> f64 {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(0.0)
}
