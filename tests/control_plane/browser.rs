//! The dashboard in a real headless Chromium (Debian's `chromium`, driven over the DevTools
//! protocol by chromiumoxide), against a real control plane fed by two real POPs: `clavitor
//! serve` processes (a primary and its backup, over mTLS) whose own heartbeat and alert
//! reporters talk to it. The test reads what a person sees: both POPs, the backup's lag, a POP
//! marked stale (in red) after its heartbeats stop, an alert listed and acknowledged through
//! the confirmation page, and the page at phone width. Screenshots are kept under
//! `target/tmp/` (paths printed).
//!
//! Without `/usr/bin/chromium` the test skips with a loud message, unless
//! `CLAVITOR_REQUIRE_BROWSER` is set: `.ci/run` installs Chromium and sets it, so in CI a
//! browser that is missing or cannot run fails the test.

use crate::common::files::q;
use crate::common::pki::{Ca, TlsFiles, write_token};
use crate::common::process::{Vault, command, with_config_home};
use crate::helpers::*;
use chromiumoxide::cdp::browser_protocol::emulation::SetDeviceMetricsOverrideParams;
use chromiumoxide::page::ScreenshotParams;
use chromiumoxide::{Browser, BrowserConfig, Page};
use futures_util::StreamExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const CHROMIUM: &str = "/usr/bin/chromium";
const PRIMARY: &str = "calgary-01";
const BACKUP: &str = "zurich-01";
/// How long anything the page should show may take to show.
const SHOWN: Duration = Duration::from_secs(15);

/// One real POP: its directory, certificate, tokens and `clavitor serve` process.
struct RealPop {
    dir: tempfile::TempDir,
    config: PathBuf,
    data: PathBuf,
}

impl RealPop {
    fn new(id: &str, pop_ca: &Ca) -> (Self, TlsFiles) {
        let dir = tempfile::Builder::new()
            .prefix(&format!("clavitor-cp-pop-{id}-"))
            .tempdir()
            .expect("temp dir");
        let tls = TlsFiles::write(dir.path(), "pop", &pop_ca.leaf(id), pop_ca);
        let pop = Self {
            config: dir.path().join("replication.yaml"),
            data: dir.path().join("data"),
            dir,
        };
        (pop, tls)
    }

    /// Writes replication.yaml: `role_yaml` (role and peers), mTLS, and the control plane.
    #[allow(clippy::too_many_arguments)]
    fn configure(
        &self,
        id: &str,
        role_yaml: &str,
        tls: &TlsFiles,
        cp: &CpDir,
        url: &str,
        inbound: &Path,
    ) {
        let y = format!(
            "pop_id: \"{id}\"\nregion: \"eu-test\"\n{role_yaml}auth:\n  token_file: {}\n{}control_plane:\n  url: \"{}\"\n  token_file: {}\n  ca_file: {}\n  heartbeat_interval: 1\n  telemetry_interval: 1\n",
            q(inbound),
            tls.yaml(),
            url,
            q(&cp.pops.iter().find(|p| p.id == id).unwrap().token_file),
            q(&cp.tls.ca),
        );
        std::fs::write(&self.config, y).expect("write replication.yaml");
    }

    fn start(&self) -> Vault {
        let mut cmd = command(&[
            "serve",
            "--data-dir",
            self.data.to_str().unwrap(),
            "--listen",
            "127.0.0.1:0",
            "--replication-config",
            self.config.to_str().unwrap(),
        ]);
        with_config_home(&mut cmd, &self.dir.path().join("home"));
        Vault::start(&mut cmd, &self.data)
    }
}

/// Whether to run: `Some(path)` of Chromium, or `None` to skip (loudly) outside CI.
fn chromium() -> Option<&'static str> {
    if Path::new(CHROMIUM).exists() {
        return Some(CHROMIUM);
    }
    if std::env::var_os("CLAVITOR_REQUIRE_BROWSER").is_some() {
        panic!(
            "{CHROMIUM} is missing but CLAVITOR_REQUIRE_BROWSER is set (.ci/run installs it): the dashboard test cannot run"
        );
    }
    eprintln!(
        "\n=====================================================================\n\
         SKIPPED: the dashboard browser test needs {CHROMIUM} (apt-get install -y chromium).\n\
         .ci/run installs it and makes this test mandatory.\n\
         =====================================================================\n"
    );
    None
}

async fn launch(exe: &str, profile: &Path) -> (Browser, tokio::task::JoinHandle<()>) {
    let config = BrowserConfig::builder()
        .chrome_executable(exe)
        .no_sandbox()
        .user_data_dir(profile)
        .args([
            "--disable-gpu",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
        ])
        .window_size(1280, 1000)
        .launch_timeout(Duration::from_secs(60))
        .request_timeout(Duration::from_secs(30))
        .build()
        .expect("browser config");
    let (browser, mut handler) = Browser::launch(config)
        .await
        .unwrap_or_else(|e| panic!("{exe} could not be started: {e}"));
    let events = tokio::spawn(async move { while handler.next().await.is_some() {} });
    (browser, events)
}

/// Evaluates `js` in the page; `None` when it fails or returns null.
async fn js<T: serde::de::DeserializeOwned>(page: &Page, js: &str) -> Option<T> {
    page.evaluate(js).await.ok()?.into_value().ok()
}

/// Waits until `js` evaluates to true in the page; panics naming `what` after [`SHOWN`].
async fn until_shown(page: &Page, what: &str, check: &str) {
    let start = Instant::now();
    loop {
        if js::<bool>(page, check).await == Some(true) {
            return;
        }
        if start.elapsed() > SHOWN {
            let text: Option<String> = js(page, "document.body.innerText").await;
            panic!(
                "the page never showed {what}; it shows:\n{}",
                text.unwrap_or_default()
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The visible text of the element `selector`, or "" if there is none.
async fn text(page: &Page, selector: &str) -> String {
    let sel = serde_json::to_string(selector).unwrap();
    js(
        page,
        &format!("(document.querySelector({sel}) || {{innerText: ''}}).innerText"),
    )
    .await
    .unwrap_or_default()
}

async fn click(page: &Page, selector: &str) {
    page.find_element(selector)
        .await
        .unwrap_or_else(|e| panic!("no {selector} on the page: {e}"))
        .click()
        .await
        .unwrap_or_else(|e| panic!("cannot click {selector}: {e}"));
}

/// Waits until the page's URL path is `path` and the document has loaded.
async fn at(page: &Page, path: &str) {
    let check = format!(
        "location.pathname === {} && document.readyState === 'complete'",
        serde_json::to_string(path).unwrap()
    );
    until_shown(page, &format!("the page {path}"), &check).await;
}

async fn screenshot(page: &Page, name: &str) -> PathBuf {
    let path = Path::new(env!("CARGO_TARGET_TMPDIR")).join(name);
    page.save_screenshot(ScreenshotParams::builder().full_page(true).build(), &path)
        .await
        .expect("screenshot");
    println!("screenshot: {}", path.display());
    path
}

#[tokio::test(flavor = "multi_thread")]
async fn an_operator_watches_two_real_pops_sees_one_go_stale_and_acknowledges_an_alert() {
    let Some(exe) = chromium() else { return };
    let d = CpDir::new(
        &[PRIMARY, BACKUP],
        "failover:\n  mode: manual\n  heartbeat_interval_ms: 1000\n  missed_heartbeats: 4\n  lease_seconds: 2\n",
    );
    let cp = d.start();

    // Two real POPs reporting to it: the backup first (the primary needs its URL).
    let pop_ca = Ca::new("POP CA");
    let (backup, backup_tls) = RealPop::new(BACKUP, &pop_ca);
    let (primary, primary_tls) = RealPop::new(PRIMARY, &pop_ca);
    let push_token = backup.dir.path().join("replication.token");
    write_token(&push_token);
    backup.configure(
        BACKUP,
        // A backup the control plane may promote names where it would push (unused here).
        &format!(
            "role: \"backup\"\nprimary_pop:\n  id: \"{PRIMARY}\"\n  url: \"https://127.0.0.1:9\"\n  auth_token_file: {}\n",
            q(&push_token)
        ),
        &backup_tls,
        &d,
        &cp.url,
        &push_token,
    );
    let mut backup_proc = backup.start();
    let primary_inbound = primary.dir.path().join("replication.token");
    write_token(&primary_inbound);
    primary.configure(
        PRIMARY,
        &format!(
            "role: \"primary\"\nbackup_pop:\n  id: \"{BACKUP}\"\n  url: \"{}\"\n  auth_token_file: {}\n",
            backup_proc.url,
            q(&push_token)
        ),
        &primary_tls,
        &d,
        &cp.url,
        &primary_inbound,
    );
    let primary_proc = primary.start();

    // Both have reported before the operator looks.
    let start = Instant::now();
    loop {
        let pops = cp.admin_get("/v1/pops").await;
        let heard = pops["pops"]
            .as_array()
            .unwrap()
            .iter()
            .all(|p| p["last_heartbeat"].is_string());
        if heard && pops["failover"]["primary"] == PRIMARY {
            break;
        }
        assert!(
            start.elapsed() < SHOWN,
            "the POPs never reported: {pops}\n{}",
            cp.process.stderr()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    let profile = tempfile::tempdir().unwrap();
    let (mut browser, events) = launch(exe, profile.path()).await;
    let page = browser.new_page("about:blank").await.expect("a page");

    // Sign in with the admin token.
    page.goto(cp.url("/")).await.expect("open the dashboard");
    at(&page, "/login").await;
    page.find_element("#token")
        .await
        .expect("the token field")
        .click()
        .await
        .unwrap()
        .type_str(&d.admin)
        .await
        .unwrap();
    click(&page, "button[type=submit]").await;
    at(&page, "/").await;
    let cookie: String = js(&page, "document.cookie").await.unwrap_or_default();
    assert!(
        !cookie.contains("clavitor"),
        "the session cookie is readable by scripts: {cookie}"
    );

    // Both POPs, their roles and regions; the backup's lag in versions; the primary's backlog.
    until_shown(
        &page,
        "both POPs",
        "!!document.querySelector('#pop-calgary-01') && !!document.querySelector('#pop-zurich-01')",
    )
    .await;
    let primary_card = text(&page, "#pop-calgary-01").await;
    let backup_card = text(&page, "#pop-zurich-01").await;
    assert!(
        primary_card.contains("PRIMARY") || primary_card.contains("primary"),
        "{primary_card}"
    );
    assert!(
        backup_card.contains("backup") || backup_card.contains("BACKUP"),
        "{backup_card}"
    );
    assert!(primary_card.contains("eu-test") && backup_card.contains("eu-test"));
    until_shown(
        &page,
        "the backup healthy",
        "document.querySelector('#pop-zurich-01 .health').innerText === 'healthy'",
    )
    .await;
    until_shown(
        &page,
        "the backup's lag",
        "!!document.querySelector('#pop-zurich-01 .behind')",
    )
    .await;
    let behind = text(&page, "#pop-zurich-01 .behind").await;
    let api = cp.pop(BACKUP).await;
    let n = api["replication"]["behind_versions"]
        .as_i64()
        .expect("behind_versions");
    assert!(
        behind.starts_with(&format!("{n} version")) || behind.contains("versions behind"),
        "{behind} vs API {n}"
    );
    assert!(
        text(&page, "#pop-calgary-01 .backlog")
            .await
            .parse::<i64>()
            .is_ok()
    );
    assert!(
        page.find_element("#pop-calgary-01 svg").await.is_ok(),
        "no chart"
    );

    // An alert from the primary: a rejected SIGHUP reload.
    std::fs::write(&primary.config, "pop_id: [\n").unwrap();
    primary_proc.sighup();
    until_shown(&page, "the primary's alert", "[...document.querySelectorAll('li.alert .alert-type')].some(e => e.innerText === 'config_reload_failed')").await;

    // The backup stops: after 4 missed heartbeats it is marked stale, in red.
    backup_proc.stop(Duration::from_secs(1));
    until_shown(
        &page,
        "the backup marked stale",
        "document.querySelector('#pop-zurich-01 .health').innerText.startsWith('STALE')",
    )
    .await;
    let red: String = js(
        &page,
        "getComputedStyle(document.querySelector('#pop-zurich-01 .health')).color",
    )
    .await
    .unwrap();
    assert_eq!(red, "rgb(179, 38, 30)", "the stale badge is not red");
    until_shown(
        &page,
        "the primary still healthy",
        "document.querySelector('#pop-calgary-01 .health').innerText === 'healthy'",
    )
    .await;
    let shot = screenshot(&page, "control-plane-dashboard.png").await;
    assert!(std::fs::metadata(&shot).unwrap().len() > 10_000);

    // Acknowledge the alert through its confirmation page.
    let alert_id: i64 = js(&page, "Number([...document.querySelectorAll('li.alert')].find(li => li.querySelector('.alert-type').innerText === 'config_reload_failed').id.replace('alert-', ''))").await.unwrap();
    click(&page, &format!("#alert-{alert_id} a")).await;
    at(&page, &format!("/alerts/{alert_id}/ack")).await;
    let confirm = text(&page, "main").await;
    assert!(confirm.contains("What will happen"), "{confirm}");
    assert!(confirm.contains("config_reload_failed"), "{confirm}");
    click(&page, "#confirm").await;
    at(&page, "/").await;
    until_shown(
        &page,
        "the alert gone from the open alerts",
        &format!("!document.querySelector('#alert-{alert_id}')"),
    )
    .await;
    let acked = cp
        .admin_get(&format!(
            "/v1/alerts?pop={PRIMARY}&type=config_reload_failed"
        ))
        .await;
    assert_eq!(acked["alerts"][0]["acked"], true, "{acked}");

    // The promotion button leads to a page that says what will happen, and changes nothing yet.
    click(&page, "#pop-zurich-01 a.button").await;
    at(&page, "/pops/zurich-01/promote").await;
    let confirm = text(&page, "main").await;
    assert!(
        confirm.contains("calgary-01 is told at once to step down"),
        "{confirm}"
    );
    assert_eq!(
        cp.admin_get("/v1/pops").await["failover"]["promotion"],
        serde_json::Value::Null
    );

    // On a phone: one column, nothing wider than the screen.
    page.execute(SetDeviceMetricsOverrideParams::new(390, 844, 2.0, true))
        .await
        .unwrap();
    page.goto(cp.url("/")).await.unwrap();
    at(&page, "/").await;
    let fits: bool = js(
        &page,
        "document.documentElement.scrollWidth <= window.innerWidth",
    )
    .await
    .unwrap();
    assert!(fits, "the page is wider than a phone's screen");
    screenshot(&page, "control-plane-dashboard-phone.png").await;

    let _ = browser.close().await;
    let _ = browser.wait().await;
    events.abort();
    drop(primary_proc);
}
