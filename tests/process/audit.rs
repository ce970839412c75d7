//! The audit trail with the real binary: `clavitor audit` and `audit head`, offline `audit
//! verify` catching edits made with SQLite on a stopped vault, a whole-file rollback caught
//! against a kept head, no change event lost to `kill -9`, failing closed when the trail
//! cannot be written (a file-size limit standing in for a full disk) and coming back, what
//! `--audit-sync` promises, retention, and the low-disk alert.

use crate::edition;
use crate::helpers::{
    Load, Scratch, Vault, command, command_for, runtime, serve, serve_cmd, server_args, verify_all,
};
use clavitor::store::audit::{EventData, canonical, chain_hash};
use rusqlite::{Connection, OptionalExtension, params};
use serde_json::Value;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const STOP_WITHIN: Duration = Duration::from_secs(10);

/// `clavitor ARGS --server URL --token-file FILE` against `v`.
fn cli(data: &Path, v: &Vault, args: &[&str]) -> crate::helpers::Output {
    let mut cmd = command_for(data, args);
    cmd.args(server_args(&v.url));
    if let Some(f) = &v.token_file {
        cmd.arg("--token-file").arg(f);
    }
    crate::helpers::run(&mut cmd)
}

fn verify(data: &Path, extra: &[&str]) -> crate::helpers::Output {
    let dir = data.to_str().unwrap();
    let mut args = vec!["audit", "verify", "--data-dir", dir];
    args.extend_from_slice(extra);
    crate::helpers::run(&mut command(&args))
}

#[track_caller]
fn assert_broken(out: &crate::helpers::Output, needles: &[&str]) {
    assert_eq!(out.code(), Some(1), "verify must fail: {out}");
    for n in needles {
        assert!(out.stderr.contains(n), "verify must say {n:?}: {out}");
    }
}

/// A copy of a stopped vault's files (what an attacker with the disk would edit).
fn copy_vault(data: &Path, to: &Path) -> PathBuf {
    std::fs::create_dir_all(to).unwrap();
    for name in ["vault.db", "vault.db-wal", "vault.db-shm", "master.key"] {
        let from = data.join(name);
        if from.exists() {
            std::fs::copy(&from, to.join(name)).unwrap();
        }
    }
    to.to_owned()
}

fn db(data: &Path) -> Connection {
    Connection::open(data.join("vault.db")).unwrap()
}

fn last_event(c: &Connection) -> (i64, Vec<u8>) {
    c.query_row(
        "SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1",
        [],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )
    .unwrap()
}

/// An event as someone who knows the format (but not the key) would forge it.
fn forged(action: &str) -> EventData {
    EventData {
        actor_kind: "owner".into(),
        actor_id: Some("forger".into()),
        action: action.to_owned().into(),
        target: Some("nothing-happened".into()),
        outcome: "ok".into(),
        ip: Some("127.0.0.1".into()),
        request_id: None,
        details: vec![],
    }
}

fn insert_event(c: &Connection, seq: i64, time: i64, e: &EventData, prev: &[u8]) -> Vec<u8> {
    let hash = chain_hash(prev, &canonical(seq, time, e)).to_vec();
    c.execute(
        "INSERT INTO audit (seq, time, actor_kind, actor_id, action, target, outcome, ip,
                            request_id, details, prev_hash, hash)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, NULL, '{}', ?9, ?10)",
        params![
            seq,
            time,
            e.actor_kind.as_ref(),
            e.actor_id,
            e.action.as_ref(),
            e.target,
            e.outcome.as_ref(),
            e.ip,
            prev,
            hash
        ],
    )
    .unwrap();
    hash
}

/// Writes entries (and reads their fields) through the API.
fn activity(v: &Vault, n: usize, label: &str) -> Vec<String> {
    let rt = runtime();
    let api = v.api();
    rt.block_on(async {
        let mut ids = Vec::new();
        for i in 0..n {
            let w = api
                .create(&format!("{label}-{i}"))
                .await
                .unwrap()
                .expect("created");
            api.verify(&w).await;
            ids.push(w.id);
        }
        ids
    })
}

#[test]
fn verify_names_a_changed_a_deleted_and_an_inserted_event_and_a_rollback() {
    let tmp = Scratch::new();
    let data = tmp.data();
    let mut v = serve(&data);
    activity(&v, 3, "first");
    let head = cli(&data, &v, &["audit", "head"]).ok();
    let kept = head.stdout.trim().to_owned();
    assert!(kept.starts_with("clavitor-audit-head:v1:"), "{head}");
    v.stop(STOP_WITHIN);
    let intact = verify(&data, &[]);
    assert_eq!(intact.code(), Some(0), "{intact}");
    assert!(intact.stdout.contains("audit trail intact"), "{intact}");
    let older = copy_vault(&data, &tmp.path().join("older"));

    let mut v = serve(&data);
    activity(&v, 2, "second");
    let newer_head = cli(&data, &v, &["audit", "head"])
        .ok()
        .stdout
        .trim()
        .to_owned();
    // A running vault is not read under its feet.
    let refused = verify(&data, &[]);
    assert_eq!(refused.code(), Some(1), "{refused}");
    assert!(refused.stderr.contains("is running"), "{refused}");
    v.stop(STOP_WITHIN);

    let ok = verify(&data, &["--head", &kept]);
    assert_eq!(ok.code(), Some(0), "{ok}");
    assert!(ok.stdout.contains("matches the kept head"), "{ok}");
    let head_file = tmp.path().join("kept-head");
    std::fs::write(&head_file, format!("{newer_head}\n")).unwrap();
    let ok = verify(&data, &["--head", head_file.to_str().unwrap()]);
    assert_eq!(ok.code(), Some(0), "{ok}");

    // A whole-file rollback verifies from inside, and not against a newer kept head.
    assert_eq!(verify(&older, &[]).code(), Some(0));
    let seq_newer: i64 = newer_head.split(':').nth(2).unwrap().parse().unwrap();
    let (seq_older, _) = last_event(&db(&older));
    assert_broken(
        &verify(&older, &["--head", &newer_head]),
        &[
            &format!("event {}", seq_older + 1),
            &format!("kept head is at event {seq_newer}"),
            "rolled back",
        ],
    );

    // One event changed.
    let changed = copy_vault(&data, &tmp.path().join("changed"));
    db(&changed)
        .execute("UPDATE audit SET target = 'someone-else' WHERE seq = 3", [])
        .unwrap();
    assert_broken(&verify(&changed, &[]), &["event 3", "was changed"]);

    // One event deleted, in the middle and at the end.
    let deleted = copy_vault(&data, &tmp.path().join("deleted"));
    db(&deleted)
        .execute("DELETE FROM audit WHERE seq = 4", [])
        .unwrap();
    assert_broken(&verify(&deleted, &[]), &["event 4 is missing"]);
    let cut = copy_vault(&data, &tmp.path().join("cut"));
    let (last, _) = last_event(&db(&cut));
    db(&cut)
        .execute("DELETE FROM audit WHERE seq = ?1", [last])
        .unwrap();
    assert_broken(&verify(&cut, &[]), &[&format!("event {last} is missing")]);

    // One event inserted, hashed correctly onto the chain.
    let inserted = copy_vault(&data, &tmp.path().join("inserted"));
    let c = db(&inserted);
    let (last, hash) = last_event(&c);
    insert_event(
        &c,
        last + 1,
        1_800_000_000_000,
        &forged("entry.delete"),
        &hash,
    );
    drop(c);
    assert_broken(
        &verify(&inserted, &[]),
        &[
            &format!("event {}", last + 1),
            "comes after the signed head",
        ],
    );

    // A chain rewritten from event 2 on, hashes and head row recomputed, but without the key.
    let rewritten = copy_vault(&data, &tmp.path().join("rewritten"));
    let c = db(&rewritten);
    let prev: Vec<u8> = c
        .query_row("SELECT hash FROM audit WHERE seq = 1", [], |r| r.get(0))
        .unwrap();
    c.execute("DELETE FROM audit WHERE seq >= 2", []).unwrap();
    let h = insert_event(&c, 2, 1_800_000_000_000, &forged("entry.create"), &prev);
    c.execute(
        "UPDATE audit_head SET seq = 2, hash = ?1 WHERE id = 1",
        [&h],
    )
    .unwrap();
    drop(c);
    assert_broken(
        &verify(&rewritten, &[]),
        &["signed head (event 2) does not verify"],
    );
    // ... and the kept head catches it too, once the head row is left alone.
    let out = verify(&rewritten, &["--head", &newer_head]);
    assert_eq!(out.code(), Some(1), "{out}");

    // The original, untouched, still verifies.
    assert_eq!(verify(&data, &[]).code(), Some(0));
}

/// Every event of the trail with `action`, through the API.
fn events(v: &Vault, action: &str) -> Vec<Value> {
    let rt = runtime();
    let api = v.api();
    rt.block_on(async {
        let mut out = Vec::new();
        let mut after = "0".to_owned();
        loop {
            let (st, page) = api
                .get(&format!(
                    "/v1/audit?after={after}&limit=1000&action={action}"
                ))
                .await;
            assert_eq!(st, 200, "{page}");
            let evs = page["events"].as_array().unwrap().clone();
            after = page["next"].as_str().unwrap().to_owned();
            let done = evs.len() < 1000;
            out.extend(evs);
            if done {
                return out;
            }
        }
    })
}

#[test]
fn sigkill_under_write_load_loses_no_change_event() {
    let tmp = Scratch::new();
    let rt = runtime();
    let mut all = Vec::new();
    for round in 0..2 {
        let mut server = serve(&tmp.data());
        let api = server.api();
        let load = Load::start(&rt, &api, 16, &format!("audit-r{round}"), 100_000);
        load.wait_for(20, Duration::from_secs(10));
        std::thread::sleep(Duration::from_millis(crate::helpers::jitter(100, 500)));
        server.kill9();
        all.extend(load.finish(&rt));
    }
    let mut server = serve(&tmp.data());
    verify_all(&rt, &server.api(), &all, 16);
    let created: std::collections::HashSet<String> = events(&server, "entry.create")
        .iter()
        .map(|e| e["target"].as_str().unwrap().to_owned())
        .collect();
    let missing: Vec<&str> = all
        .iter()
        .map(|w| w.id.as_str())
        .filter(|id| !created.contains(*id))
        .collect();
    assert!(
        missing.is_empty(),
        "{} of {} acknowledged writes have no event, e.g. {:?}",
        missing.len(),
        all.len(),
        missing.first()
    );
    eprintln!(
        "{} acknowledged writes, each with its event, after 2 kills",
        all.len()
    );
    server.stop(STOP_WITHIN);
    let out = verify(&tmp.data(), &[]);
    assert_eq!(out.code(), Some(0), "the chain survives kill -9: {out}");
}

/// The largest file in the data dir.
fn largest_file(data: &Path) -> u64 {
    std::fs::read_dir(data)
        .unwrap()
        .filter_map(|e| e.ok()?.metadata().ok())
        .map(|m| m.len())
        .max()
        .unwrap_or(0)
}

/// `serve` whose files may not grow past `limit` bytes (as on a full disk: writes past it
/// fail with EFBIG instead of the process being killed).
fn serve_limited(data: &Path, limit: u64, extra: &[&str]) -> Vault {
    let mut cmd = serve_cmd(data);
    cmd.args(extra);
    // SAFETY: only async-signal-safe calls (signal, setrlimit) between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            use nix::sys::resource::{RLIM_INFINITY, Resource, setrlimit};
            use nix::sys::signal::{SigHandler, Signal, signal};
            signal(Signal::SIGXFSZ, SigHandler::SigIgn).map_err(std::io::Error::from)?;
            setrlimit(Resource::RLIMIT_FSIZE, limit, RLIM_INFINITY).map_err(std::io::Error::from)
        });
    }
    Vault::start(&mut cmd, data)
}

/// The disk has room again: lifts the server's file-size limit.
fn unlimit(v: &Vault) {
    set_file_size_limit(v, libc::RLIM_INFINITY);
}

/// The disk stays full: no file of the server may grow at all. (Under the first limit, a
/// checkpoint that truncates the WAL makes room again, and the trail rightly resumes.)
fn full_disk(v: &Vault) {
    set_file_size_limit(v, 0);
}

fn set_file_size_limit(v: &Vault, bytes: libc::rlim_t) {
    let lim = libc::rlimit {
        rlim_cur: bytes,
        rlim_max: libc::RLIM_INFINITY,
    };
    // SAFETY: a plain syscall on our child's pid with valid pointers.
    let rc = unsafe {
        libc::prlimit(
            v.pid().as_raw(),
            libc::RLIMIT_FSIZE,
            &lim,
            std::ptr::null_mut(),
        )
    };
    assert_eq!(rc, 0, "prlimit: {}", std::io::Error::last_os_error());
}

/// A request as `token` (none: no header), with `x-request-id: rid`; status and body.
fn request(v: &Vault, method: &str, path: &str, token: Option<&str>, rid: &str) -> (u16, String) {
    let rt = runtime();
    rt.block_on(async {
        let c = edition::reaching(reqwest::Client::builder().timeout(Duration::from_secs(10)))
            .build()
            .unwrap();
        let mut rb = c
            .request(method.parse().unwrap(), format!("{}{path}", v.url))
            .header("x-request-id", rid);
        if let Some(t) = token {
            rb = rb.bearer_auth(t);
        }
        if method == "POST" {
            rb = rb.json(&serde_json::json!({
                "title": rid,
                "fields": [{"name": "password", "value": "x".repeat(16 * 1024)}],
            }));
        }
        let res = rb.send().await.expect("the server answers");
        (res.status().as_u16(), res.text().await.unwrap_or_default())
    })
}

#[track_caller]
fn assert_unavailable((status, body): (u16, String)) {
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("\"audit_unavailable\""), "{body}");
}

#[test]
fn a_trail_that_cannot_be_written_refuses_every_request_until_it_can() {
    let tmp = Scratch::new();
    let data = tmp.data();
    let mut v = serve(&data);
    v.stop(STOP_WITHIN);
    let limit = largest_file(&data) + 2 * 1024 * 1024;
    let mut v = serve_limited(&data, limit, &[]);
    let owner = v.token.clone();

    // Writes fill the disk; the one that finds it full is refused, and so is all after it.
    let mut acked = Vec::new();
    let mut refused = None;
    for i in 0..2000 {
        let rid = format!("fill-{i}");
        let (status, body) = request(&v, "POST", "/v1/entries", Some(&owner), &rid);
        if status == 201 {
            let id: Value = serde_json::from_str(&body).unwrap();
            acked.push(id["id"].as_str().unwrap().to_owned());
        } else {
            refused = Some((status, body));
            break;
        }
    }
    let refused = refused.expect("the file-size limit was never reached");
    full_disk(&v);
    assert_unavailable(refused);
    assert!(!acked.is_empty());
    assert_unavailable(request(&v, "GET", "/v1/entries", Some(&owner), "r1"));
    assert_unavailable(request(&v, "POST", "/v1/entries", Some(&owner), "r2"));
    assert_unavailable(request(&v, "GET", "/v1/entries", Some("clv_wrong"), "r3"));
    assert_unavailable(request(&v, "GET", "/v1/entries", None, "r4"));
    assert_unavailable(request(&v, "GET", "/healthz", None, "r5"));
    let id = &acked[0];
    assert_unavailable(request(
        &v,
        "GET",
        &format!("/v1/entries/{id}/fields/password"),
        Some(&owner),
        "r6",
    ));
    assert_eq!(request(&v, "GET", "/metrics", None, "r7").0, 200);
    assert!(
        v.wait_stderr("audit_unavailable", Duration::from_secs(5)),
        "the operator is alerted:\n{}",
        v.stderr()
    );

    // Room again: within the retry interval, requests are served, nothing acknowledged lost.
    unlimit(&v);
    let back = Instant::now();
    while request(&v, "GET", "/v1/entries", Some(&owner), "probe").0 != 200 {
        assert!(
            back.elapsed() < Duration::from_secs(10),
            "still refusing 10 s after the disk had room:\n{}",
            v.stderr()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let created: std::collections::HashSet<String> = events(&v, "entry.create")
        .iter()
        .map(|e| e["target"].as_str().unwrap().to_owned())
        .collect();
    for id in &acked {
        assert!(created.contains(id), "acknowledged {id} has no event");
    }
    assert_eq!(events(&v, "audit.resumed").len(), 1);
    assert_eq!(
        request(&v, "POST", "/v1/entries", Some(&owner), "after").0,
        201
    );
    v.stop(STOP_WITHIN);
    let out = verify(&data, &[]);
    assert_eq!(out.code(), Some(0), "{out}");
}

#[test]
fn with_audit_sync_a_read_whose_event_cannot_be_written_is_not_answered() {
    let tmp = Scratch::new();
    let data = tmp.data();
    let mut v = serve(&data);
    let ids = activity(&v, 1, "sync");
    v.stop(STOP_WITHIN);
    let limit = largest_file(&data) + 256 * 1024;
    let mut v = serve_limited(&data, limit, &["--audit-sync"]);
    let owner = v.token.clone();
    let path = format!("/v1/entries/{}/fields/password", ids[0]);
    let mut answered = Vec::new();
    let mut last = None;
    for i in 0..5000 {
        let rid = format!("sync-read-{i}");
        let (status, body) = request(&v, "GET", &path, Some(&owner), &rid);
        if status != 200 {
            last = Some((status, body));
            break;
        }
        answered.push(rid);
    }
    let (status, body) = last.expect("the limit was never reached");
    assert_eq!(status, 503, "{body}");
    assert!(
        !body.contains("pw-sync-0"),
        "no value without its event: {body}"
    );
    assert!(!answered.is_empty());
    unlimit(&v);
    v.stop(STOP_WITHIN);
    let c = db(&data);
    for rid in &answered {
        let n: Option<i64> = c
            .query_row(
                "SELECT seq FROM audit WHERE request_id = ?1 AND action = 'field.read'",
                [rid],
                |r| r.get(0),
            )
            .optional()
            .unwrap();
        assert!(n.is_some(), "read {rid} was answered but has no event");
    }
    drop(c);
    assert_eq!(verify(&data, &[]).code(), Some(0));
}

#[test]
fn the_cli_lists_follows_and_filters_the_trail() {
    let tmp = Scratch::new();
    let data = tmp.data();
    let v = serve(&data);
    let ids = activity(&v, 2, "cli");
    let out = cli(&data, &v, &["audit", "--json", "--action", "entry.create"]).ok();
    let lines: Vec<Value> = out
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).expect("one JSON event per line"))
        .collect();
    let targets: Vec<&str> = lines
        .iter()
        .map(|e| e["target"].as_str().unwrap())
        .collect();
    assert_eq!(targets, ids.iter().map(String::as_str).collect::<Vec<_>>());
    let owner_id = lines[0]["actor"]["id"].as_str().unwrap().to_owned();
    let out = cli(&data, &v, &["audit", "--actor", &owner_id]).ok();
    assert!(out.stdout.contains("entry.create"), "{out}");
    assert!(out.stdout.contains("field.read"), "{out}");
    assert!(out.stdout.contains(&format!("owner:{owner_id}")), "{out}");
    let out = cli(&data, &v, &["audit", "--actor", "nobody"]).ok();
    assert_eq!(out.stdout, "", "{out}");

    // --follow prints events recorded after it started.
    let mut cmd = command_for(&data, &["audit", "--follow", "--action", "entry.create"]);
    cmd.args(server_args(&v.url));
    cmd.arg("--token-file").arg(v.token_file.as_ref().unwrap());
    let mut child = cmd.spawn().unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            let _ = tx.send(line);
        }
    });
    let later = activity(&v, 1, "followed");
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut seen = false;
    while Instant::now() < deadline && !seen {
        if let Ok(line) = rx.recv_timeout(Duration::from_millis(200)) {
            seen = line.contains(&later[0]);
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    assert!(seen, "--follow did not print the new event");
}

#[test]
fn retention_deletes_old_events_and_the_chain_verifies_from_the_first_kept() {
    let tmp = Scratch::new();
    let data = tmp.data();
    let mut v = serve(&data);
    activity(&v, 3, "old");
    v.stop(STOP_WITHIN);
    std::thread::sleep(Duration::from_millis(1500));
    let mut cmd = serve_cmd(&data);
    cmd.args(["--audit-retention", "1s"]);
    let mut v = Vault::start(&mut cmd, &data);
    // Retention runs at start.
    let deadline = Instant::now() + Duration::from_secs(10);
    let pruned = loop {
        let p = events(&v, "audit.prune");
        if !p.is_empty() || Instant::now() > deadline {
            break p;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(pruned.len(), 1, "{pruned:?}");
    assert!(events(&v, "entry.create").is_empty(), "old events are gone");
    v.stop(STOP_WITHIN);
    let out = verify(&data, &[]);
    assert_eq!(out.code(), Some(0), "{out}");
    assert!(out.stdout.contains("deleted by retention"), "{out}");
    // Without the anchor in the signed head, deleting the first kept event would pass.
    let c = db(&data);
    let first: i64 = c
        .query_row("SELECT min(seq) FROM audit", [], |r| r.get(0))
        .unwrap();
    c.execute("DELETE FROM audit WHERE seq = ?1", [first])
        .unwrap();
    drop(c);
    assert_broken(&verify(&data, &[]), &[&format!("event {first} is missing")]);
    // A bad retention value is refused with the fix.
    let bad = crate::helpers::run(&mut command(&["serve", "--audit-retention", "0d"]));
    assert_eq!(bad.code(), Some(2), "{bad}");
    assert!(bad.stderr.contains("whole number and a unit"), "{bad}");
}

#[test]
fn low_free_disk_raises_an_operator_alert() {
    let tmp = Scratch::new();
    let data = tmp.data();
    let mut cmd = serve_cmd(&data);
    // More than any disk has free.
    cmd.args(["--disk-alert-mib", "1000000000000"]);
    let v = Vault::start(&mut cmd, &data);
    assert!(
        v.wait_stderr("disk_low", Duration::from_secs(10)),
        "no alert:\n{}",
        v.stderr()
    );
    assert!(v.stderr().contains("free on the data dir's filesystem"));
}
