//! Forgetting for real: a deleted entry's values and a revoked agent's wrapped keys leave no
//! copy in any file of the data dir once the server has checkpointed, while it keeps running.

use crate::helpers::{contains_bytes, distinctive, eventually, spawn_app};
use reqwest::StatusCode;
use rusqlite::{Connection, OpenFlags};
use serde_json::json;
use std::path::Path;
use std::time::Duration;

/// Every file under `dir`, read whole.
fn files(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_owned()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let path = e.path();
            if path.is_dir() {
                todo.push(path);
            } else if let Ok(bytes) = std::fs::read(&path) {
                out.push((path.display().to_string(), bytes));
            }
        }
    }
    out
}

/// Which of `needles` some file under `dir` still holds, with the file.
fn found(dir: &Path, needles: &[(&str, Vec<u8>)]) -> Vec<String> {
    let files = files(dir);
    needles
        .iter()
        .flat_map(|(what, bytes)| {
            files
                .iter()
                .filter(|(_, f)| contains_bytes(f, bytes))
                .map(move |(path, _)| format!("{what} in {path}"))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleted_values_and_revoked_keys_leave_no_bytes_in_the_data_dir() {
    let app = spawn_app().await;
    let doomed = app
        .create_entry(&json!({"title": distinctive("doomed-title"), "fields": [
            {"name": "cred", "value": distinctive("doomed-cred"), "tier": "credential", "scope": "ops"},
            {"name": "note", "value": distinctive("doomed-note"), "tier": "vault"}
        ]}))
        .await;
    // Neighbours that stay, so the pages that held the doomed rows stay in use.
    let kept = app
        .create_entry(&json!({"title": "kept", "fields": [
            {"name": "cred", "value": distinctive("kept-cred"), "tier": "credential", "scope": "ops"}
        ]}))
        .await;
    let (revoked_id, revoked) = app
        .create_agent(&json!({"name": "leaving", "scopes": ["ops"]}))
        .await;
    let (_, staying) = app
        .create_agent(&json!({"name": "staying", "scopes": ["ops"]}))
        .await;
    app.field_value(&revoked, &doomed, "cred").await;

    // The bytes exactly as stored, read beside the running server.
    let needles: Vec<(&str, Vec<u8>)> = {
        let db = Connection::open_with_flags(
            app.data_dir().join("vault.db"),
            OpenFlags::SQLITE_OPEN_READ_ONLY,
        )
        .unwrap();
        let blob =
            |sql: &str, key: &str| -> Vec<u8> { db.query_row(sql, [key], |r| r.get(0)).unwrap() };
        let field = |name: &str| {
            db.query_row(
                "SELECT ciphertext FROM fields WHERE entry_id = ?1 AND name = ?2",
                [doomed.as_str(), name],
                |r| r.get::<_, Vec<u8>>(0),
            )
            .unwrap()
        };
        vec![
            ("credential ciphertext", field("cred")),
            ("vault ciphertext", field("note")),
            (
                "sealed title",
                blob("SELECT meta FROM entries WHERE id = ?1", &doomed),
            ),
            (
                "revoked agent's wrapped key",
                blob(
                    "SELECT wrapped FROM scope_keys WHERE agent_id = ?1",
                    &revoked_id,
                ),
            ),
        ]
    };
    for (what, bytes) in &needles {
        assert!(bytes.len() >= 28, "{what} is a real ciphertext");
    }
    // Control: the scan finds them before anything is deleted.
    assert_eq!(found(&app.data_dir(), &needles).len(), needles.len());

    assert_eq!(
        app.delete_entry(&app.owner_token, &doomed).await.status(),
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        app.revoke_agent(&revoked_id).await.status(),
        StatusCode::NO_CONTENT
    );
    let dir = app.data_dir();
    let gone = eventually(Duration::from_secs(10), || {
        let left = found(&dir, &needles);
        async move { left.is_empty() }
    })
    .await;
    assert!(gone, "still on disk: {:?}", found(&dir, &needles));

    // Forgetting took nothing else: the neighbours read as before.
    app.field_value(&staying, &kept, "cred").await;
    app.field_value(&app.owner_token, &kept, "cred").await;
}
