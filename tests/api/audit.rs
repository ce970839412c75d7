//! The audit trail through the API: every action recorded with its actor, never a secret,
//! denials counted per address and minute, the cursor, and when a read's event is on disk.

use crate::helpers::{
    TestApp, assert_error, distinctive, eventually, json_ok, send, spawn_app, spawn_app_with,
};
use reqwest::{Method, StatusCode};
use rusqlite::{Connection, OpenFlags};
use serde_json::{Value, json};
use std::time::Duration;

/// Every event of the trail, oldest first, paging with `limit`.
async fn all_events(app: &TestApp, token: &str, limit: usize) -> Vec<Value> {
    let mut out = Vec::new();
    let mut after = "0".to_owned();
    for _ in 0..1000 {
        let page = json_ok(
            app.get(&format!("/v1/audit?after={after}&limit={limit}"), token)
                .await,
        )
        .await;
        let events = page["events"].as_array().expect("events array").clone();
        let next = page["next"].as_str().expect("next cursor").to_owned();
        let done = events.len() < limit;
        out.extend(events);
        after = next;
        if done {
            return out;
        }
    }
    panic!("the trail never ended");
}

fn with<'a>(events: &'a [Value], action: &str, target: &str) -> Vec<&'a Value> {
    events
        .iter()
        .filter(|e| e["action"] == action && e["target"] == target)
        .collect()
}

#[track_caller]
fn one<'a>(events: &'a [Value], action: &str, target: &str) -> &'a Value {
    let found = with(events, action, target);
    assert_eq!(
        found.len(),
        1,
        "exactly one {action} of {target}: {found:?}\nall: {events:#?}"
    );
    found[0]
}

#[track_caller]
fn assert_by(e: &Value, kind: &str, id: &str) {
    assert_eq!(e["actor"]["kind"], kind, "{e}");
    assert_eq!(e["actor"]["id"], id, "{e}");
    assert_eq!(e["outcome"], "ok", "{e}");
    assert_eq!(e["ip"], "127.0.0.1", "{e}");
    assert!(
        e["request_id"].as_str().is_some_and(|r| !r.is_empty()),
        "a request's event carries its id: {e}"
    );
}

/// Sums detail `key` (a count) over `events`.
fn total(events: &[&Value], key: &str) -> u64 {
    events
        .iter()
        .filter_map(|e| e["details"][key].as_str()?.parse::<u64>().ok())
        .sum()
}

/// Every column of every audit row (and the head), as bytes.
fn stored_audit_bytes(db: &std::path::Path) -> Vec<u8> {
    let conn = Connection::open_with_flags(db, OpenFlags::SQLITE_OPEN_READ_ONLY).unwrap();
    let mut out = Vec::new();
    for table in ["audit", "audit_head"] {
        let mut stmt = conn.prepare(&format!("SELECT * FROM {table}")).unwrap();
        let n = stmt.column_count();
        let mut rows = stmt.query([]).unwrap();
        while let Some(r) = rows.next().unwrap() {
            for i in 0..n {
                match r.get_ref(i).unwrap() {
                    rusqlite::types::ValueRef::Text(t) | rusqlite::types::ValueRef::Blob(t) => {
                        out.extend_from_slice(t)
                    }
                    other => out.extend_from_slice(format!("{other:?}").as_bytes()),
                }
                out.push(0);
            }
        }
    }
    out
}

fn wrapped_keys(db: &std::path::Path) -> Vec<Vec<u8>> {
    let conn = Connection::open_with_flags(db, OpenFlags::SQLITE_OPEN_READ_ONLY).unwrap();
    let mut stmt = conn.prepare("SELECT wrapped FROM scope_keys").unwrap();
    stmt.query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

#[tokio::test]
async fn every_action_is_recorded_with_its_actor_and_never_a_secret() {
    let mut app = spawn_app().await;
    let old_owner = app.owner_token.clone();
    let vault_value = distinctive("vault-value");
    let vault_value_2 = distinctive("vault-value-2");
    let cred_value = distinctive("cred-value");
    let bulk_value = distinctive("bulk-value");
    let entry = |value: &str| {
        json!({"title": "db", "fields": [
            {"name": "password", "value": value},
            {"name": "api_key", "value": cred_value, "tier": "credential", "scope": "ops"},
        ]})
    };

    let id = app.create_entry(&entry(&vault_value)).await;
    let res = app.put_entry(&old_owner, &id, &entry(&vault_value_2)).await;
    assert_eq!(res.status(), StatusCode::OK);
    let bulk = json_ok_created(
        send(
            app.owner(Method::POST, "/v1/entries/bulk")
                .json(&json!({"entries": [
                    {"title": "b1", "fields": [{"name": "pin", "value": bulk_value}]},
                    {"title": "b2", "fields": [{"name": "pin", "value": bulk_value}]},
                ]})),
        )
        .await,
    )
    .await;
    let bulk_ids: Vec<String> = bulk["ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_owned())
        .collect();
    let (agent_id, agent_token) = app
        .create_agent(&json!({"name": "reader", "scopes": ["ops"]}))
        .await;

    // Reads: the agent's carries a request id of the client's choosing.
    let res = send(
        app.request(
            Method::GET,
            &format!("/v1/entries/{id}/fields/api_key"),
            &agent_token,
        )
        .header("x-request-id", "audit-test-read-1"),
    )
    .await;
    assert_eq!(json_ok(res).await["value"], cred_value.as_str());
    assert_eq!(
        app.field_value(&old_owner, &id, "password").await,
        vault_value_2
    );
    json_ok(app.get_entry(&old_owner, &id).await).await;
    app.list_entries(&old_owner).await;
    app.list_agents().await;

    // Refusals: an agent doing what only the owner may, or reading outside its scopes; a
    // wrong token; none at all.
    let res = app.post_entry(&agent_token, &entry("x")).await;
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    let res = app.get_field(&agent_token, &id, "password").await;
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
    for _ in 0..3 {
        let res = app.get("/v1/entries", "clv_not-a-token").await;
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    }
    let res = send(app.client.get(app.url("/v1/entries"))).await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);

    // Changes.
    let res = app.delete_entry(&old_owner, &bulk_ids[1]).await;
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    let res = app.revoke_agent(&agent_id).await;
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    let rotated = json_ok(send(app.owner(Method::POST, "/v1/owner/rotate")).await).await;
    let new_owner = rotated["token"].as_str().unwrap().to_owned();
    app.owner_token = new_owner.clone();

    // Denials are written when their minute is over, or at shutdown.
    let stopped = app.stop().await;
    let db = stopped.db_path();
    let keys = wrapped_keys(&db);
    let stored = stored_audit_bytes(&db);
    let app = stopped.start().await;
    let events = all_events(&app, &new_owner, 7).await;

    let create = one(&events, "entry.create", &id);
    let owner_id = create["actor"]["id"].as_str().expect("owner id").to_owned();
    assert_by(create, "owner", &owner_id);
    assert_eq!(create["details"]["fields"], "password,api_key");
    assert_by(one(&events, "entry.update", &id), "owner", &owner_id);
    for b in &bulk_ids {
        let e = one(&events, "entry.create", b);
        assert_by(e, "owner", &owner_id);
        assert_eq!(e["details"]["bulk"], "2", "{e}");
    }
    assert_by(
        one(&events, "entry.delete", &bulk_ids[1]),
        "owner",
        &owner_id,
    );
    let e = one(&events, "agent.create", &agent_id);
    assert_by(e, "owner", &owner_id);
    assert_eq!(e["details"]["name"], "reader");
    assert_eq!(e["details"]["scopes"], "ops");
    assert_by(one(&events, "agent.revoke", &agent_id), "owner", &owner_id);
    assert_by(one(&events, "owner.rotate", &owner_id), "owner", &owner_id);

    let reads = with(&events, "field.read", &id);
    assert_eq!(reads.len(), 2, "{reads:?}");
    let by_agent = reads
        .iter()
        .find(|e| e["actor"]["kind"] == "agent")
        .expect("the agent's read");
    assert_by(by_agent, "agent", &agent_id);
    assert_eq!(by_agent["request_id"], "audit-test-read-1");
    assert_eq!(by_agent["details"]["field"], "api_key");
    assert_eq!(by_agent["details"]["tier"], "credential");
    let by_owner = reads
        .iter()
        .find(|e| e["actor"]["kind"] == "owner")
        .expect("the owner's read");
    assert_by(by_owner, "owner", &owner_id);
    assert_eq!(by_owner["details"]["field"], "password");
    assert_eq!(by_owner["details"]["tier"], "vault");
    assert_by(one(&events, "entry.read", &id), "owner", &owner_id);
    for action in ["entry.list", "agent.list"] {
        let e = events
            .iter()
            .find(|e| e["action"] == action)
            .unwrap_or_else(|| panic!("no {action} event"));
        assert_by(e, "owner", &owner_id);
    }

    let failed: Vec<&Value> = events
        .iter()
        .filter(|e| e["action"] == "auth.failed" && e["ip"] == "127.0.0.1")
        .collect();
    assert!(
        (1..=2).contains(&failed.len()),
        "one event per address and minute: {failed:?}"
    );
    assert_eq!(total(&failed, "invalid_token"), 3, "{failed:?}");
    assert_eq!(total(&failed, "missing_token"), 1, "{failed:?}");
    assert_eq!(total(&failed, "count"), 4, "{failed:?}");
    for e in &failed {
        assert_eq!(e["outcome"], "denied");
        assert_eq!(e["actor"]["kind"], "system");
    }
    let denied: Vec<&Value> = events
        .iter()
        .filter(|e| e["action"] == "access.denied")
        .collect();
    assert_eq!(total(&denied, "forbidden"), 1, "{denied:?}");
    assert_eq!(total(&denied, "not_readable"), 1, "{denied:?}");
    assert!(
        denied
            .iter()
            .all(|e| e["details"]["actors"] == agent_id.as_str()),
        "a refused token's principal is named: {denied:?}"
    );

    // The chain as the API shows it: consecutive, each with its hash.
    for (i, e) in events.iter().enumerate() {
        assert_eq!(e["seq"], i as u64 + 1, "{e}");
        let hash = e["hash"].as_str().unwrap();
        assert!(
            hash.len() == 64 && hash.bytes().all(|b| b.is_ascii_hexdigit()),
            "{e}"
        );
    }

    // Never a value, a token or a wrapped key: not in what the API shows, not in the rows.
    let shown = serde_json::to_string(&events).unwrap();
    let secrets = [
        &vault_value,
        &vault_value_2,
        &cred_value,
        &bulk_value,
        &old_owner,
        &new_owner,
        &agent_token,
    ];
    for s in secrets {
        assert!(!shown.contains(s.as_str()), "the API's events hold {s}");
        assert!(
            !crate::helpers::contains_bytes(&stored, s.as_bytes()),
            "the stored audit rows hold {s}"
        );
    }
    assert!(!keys.is_empty());
    for k in &keys {
        assert!(
            !crate::helpers::contains_bytes(&stored, k),
            "the stored audit rows hold a wrapped key"
        );
    }
}

async fn json_ok_created(res: reqwest::Response) -> Value {
    let status = res.status();
    let text = res.text().await.unwrap();
    assert_eq!(status, StatusCode::CREATED, "{text}");
    serde_json::from_str(&text).unwrap()
}

#[tokio::test]
async fn failed_authentications_are_one_event_per_address_and_minute() {
    let app = spawn_app().await;
    for _ in 0..200 {
        let res = app.get("/v1/entries", "clv_guessing").await;
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    }
    let stopped = app.stop().await;
    let app = stopped.start().await;
    let events = all_events(&app, &app.owner_token, 100).await;
    let failed: Vec<&Value> = events
        .iter()
        .filter(|e| e["action"] == "auth.failed")
        .collect();
    assert!(
        (1..=2).contains(&failed.len()),
        "200 failures from one address in under a minute are not 200 events: {failed:?}"
    );
    assert_eq!(total(&failed, "invalid_token"), 200);
    assert!(
        events.len() < 10,
        "the trail did not grow with the noise: {events:?}"
    );
}

#[tokio::test]
async fn the_cursor_pages_through_the_trail_and_only_the_owner_reads_it() {
    let app = spawn_app().await;
    let mut ids = Vec::new();
    for i in 0..25 {
        ids.push(
            app.create_entry(&json!({"title": format!("e{i}"), "fields": []}))
                .await,
        );
    }
    let page = json_ok(app.get("/v1/audit?limit=10", &app.owner_token).await).await;
    let seqs: Vec<u64> = page["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["seq"].as_u64().unwrap())
        .collect();
    assert_eq!(seqs, (1..=10).collect::<Vec<_>>());
    assert_eq!(page["next"], "10");
    let page = json_ok(
        app.get("/v1/audit?after=10&limit=10", &app.owner_token)
            .await,
    )
    .await;
    assert_eq!(page["events"][0]["seq"], 11);
    assert_eq!(page["next"], "20");

    // Paging by 7 sees every event once, in order, whatever comes in between.
    let events = all_events(&app, &app.owner_token, 7).await;
    let creates: Vec<&str> = events
        .iter()
        .filter(|e| e["action"] == "entry.create")
        .map(|e| e["target"].as_str().unwrap())
        .collect();
    assert_eq!(creates, ids.iter().map(String::as_str).collect::<Vec<_>>());

    // At the end, `next` stays where it is, so a follower asks again from there.
    let last = events.last().unwrap()["seq"].as_u64().unwrap();
    let page = json_ok(
        app.get(&format!("/v1/audit?after={last}"), &app.owner_token)
            .await,
    )
    .await;
    assert_eq!(page["events"], json!([]));
    assert_eq!(page["next"], last.to_string());

    // Filters.
    let page = json_ok(
        app.get("/v1/audit?action=entry.create&limit=1000", &app.owner_token)
            .await,
    )
    .await;
    assert_eq!(page["events"].as_array().unwrap().len(), 25);
    let owner_id = page["events"][0]["actor"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let page = json_ok(
        app.get(&format!("/v1/audit?actor={owner_id}"), &app.owner_token)
            .await,
    )
    .await;
    assert!(!page["events"].as_array().unwrap().is_empty());
    let page = json_ok(app.get("/v1/audit?actor=nobody", &app.owner_token).await).await;
    assert_eq!(page["events"], json!([]));

    // Bad cursors and limits are 400s that say what to send.
    for bad in [
        "/v1/audit?limit=0",
        "/v1/audit?limit=1001",
        "/v1/audit?limit=ten",
        "/v1/audit?after=-1",
        "/v1/audit?after=abc",
        "/v1/audit?colour=red",
    ] {
        assert_error(
            app.get(bad, &app.owner_token).await,
            StatusCode::BAD_REQUEST,
            "validation_failed",
        )
        .await;
    }
    // Agents do not read the trail; nobody does without a token.
    let (_, agent) = app
        .create_agent(&json!({"name": "nosy", "scopes": ["x"]}))
        .await;
    for path in ["/v1/audit", "/v1/audit/head"] {
        assert_error(
            app.get(path, &agent).await,
            StatusCode::FORBIDDEN,
            "owner_only",
        )
        .await;
        assert_error(
            send(app.client.get(app.url(path))).await,
            StatusCode::UNAUTHORIZED,
            "missing_token",
        )
        .await;
    }
    // The head names the last event.
    let head = json_ok(app.get("/v1/audit/head", &app.owner_token).await).await;
    let text = head["head"].as_str().unwrap();
    let last = all_events(&app, &app.owner_token, 1000).await;
    let last = last.last().unwrap();
    assert!(
        text.starts_with(&format!(
            "clavitor-audit-head:v1:{}:{}:",
            last["seq"],
            last["hash"].as_str().unwrap()
        )),
        "{text} vs {last}"
    );
}

/// Whether the event of the request with id `rid` is on disk, as another process would see.
fn recorded(app: &TestApp, rid: &str) -> bool {
    let conn = Connection::open_with_flags(
        app.data_dir().join("vault.db"),
        OpenFlags::SQLITE_OPEN_READ_ONLY,
    )
    .unwrap();
    conn.query_row(
        "SELECT count(*) FROM audit WHERE request_id = ?1",
        [rid],
        |r| r.get::<_, i64>(0),
    )
    .unwrap()
        == 1
}

async fn read_with_id(app: &TestApp, id: &str, rid: &str) {
    let res = send(
        app.owner(Method::GET, &format!("/v1/entries/{id}/fields/password"))
            .header("x-request-id", rid),
    )
    .await;
    json_ok(res).await;
}

#[tokio::test]
async fn with_audit_sync_a_read_is_answered_only_once_its_event_is_on_disk() {
    let app = spawn_app_with(|c| c.audit.sync = true).await;
    let id = app
        .create_entry(&json!({"title": "t", "fields": [{"name": "password", "value": "v"}]}))
        .await;
    for i in 0..30 {
        let rid = format!("sync-read-{i}");
        read_with_id(&app, &id, &rid).await;
        assert!(recorded(&app, &rid), "read {i} answered before its event");
    }
}

#[tokio::test]
async fn by_default_a_read_s_event_is_on_disk_promptly() {
    let app = spawn_app().await;
    let id = app
        .create_entry(&json!({"title": "t", "fields": [{"name": "password", "value": "v"}]}))
        .await;
    for i in 0..10 {
        let rid = format!("read-{i}");
        read_with_id(&app, &id, &rid).await;
        assert!(
            eventually(Duration::from_secs(2), || async { recorded(&app, &rid) }).await,
            "read {i}'s event never reached the disk"
        );
    }
}
