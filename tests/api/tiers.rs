//! The three tiers as a client sees them, and ciphertexts bound to their place.

use crate::helpers::{assert_error, distinctive, json_ok, spawn_app};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use reqwest::StatusCode;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vault_field_round_trips() {
    let app = spawn_app().await;
    // Not ASCII, with quotes and a newline: the value must come back exactly.
    let value = format!("{} «ünïcødé» \"q\"\nline 2", distinctive("v"));
    let id = app
        .create_entry(
            &json!({"title": "t", "fields": [{"name": "v", "value": value, "tier": "vault"}]}),
        )
        .await;
    let f = json_ok(app.get_field(&app.owner_token, &id, "v").await).await;
    assert_eq!(f, json!({"name": "v", "value": value, "tier": "vault"}));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identity_value_is_returned_byte_for_byte() {
    let app = spawn_app().await;
    // 97 random bytes: standard base64 with '=' padding, and likely '+' and '/'.
    let mut raw = [0u8; 97];
    rand::fill(&mut raw);
    let value = STANDARD.encode(raw);
    let id = app
        .create_entry(&json!({"title": "t", "fields": [{"name": "blob", "value": value, "tier": "identity"}]}))
        .await;
    let f = json_ok(app.get_field(&app.owner_token, &id, "blob").await).await;
    assert_eq!(f["tier"], "identity");
    assert_eq!(f["value"], value.as_str());
    let back = STANDARD.decode(f["value"].as_str().unwrap()).unwrap();
    assert_eq!(back, raw);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credential_field_is_readable_by_owner_and_scoped_agent_only() {
    let app = spawn_app().await;
    let secret = distinctive("deploy-key");
    let id = app
        .create_entry(&json!({"title": "t", "fields": [
            {"name": "key", "value": secret, "tier": "credential", "scope": "deploy"}
        ]}))
        .await;
    let f = json_ok(app.get_field(&app.owner_token, &id, "key").await).await;
    assert_eq!(
        f,
        json!({"name": "key", "value": secret, "tier": "credential"})
    );

    let (_, with_scope) = app
        .create_agent(&json!({"name": "ci", "scopes": ["deploy"]}))
        .await;
    assert_eq!(app.field_value(&with_scope, &id, "key").await, secret);

    let (_, other) = app
        .create_agent(&json!({"name": "other", "scopes": ["billing"]}))
        .await;
    let body = assert_error(
        app.get_field(&other, &id, "key").await,
        StatusCode::NOT_FOUND,
        "field_not_found",
    )
    .await;
    assert!(!body.contains(&secret));
}

/// Copies field `from`'s ciphertext over field `to` in the stopped vault's database.
fn copy_ciphertext(db: &std::path::Path, from: (&str, &str), to: (&str, &str)) {
    let conn = rusqlite::Connection::open(db).unwrap();
    let ct: Vec<u8> = conn
        .query_row(
            "SELECT ciphertext FROM fields WHERE entry_id = ?1 AND name = ?2",
            [from.0, from.1],
            |r| r.get(0),
        )
        .unwrap();
    let n = conn
        .execute(
            "UPDATE fields SET ciphertext = ?1 WHERE entry_id = ?2 AND name = ?3",
            rusqlite::params![ct, to.0, to.1],
        )
        .unwrap();
    assert_eq!(n, 1, "exactly one field overwritten");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ciphertext_copied_to_another_field_or_entry_does_not_decrypt() {
    let app = spawn_app().await;
    let secret = distinctive("moved");
    let cred = distinctive("moved-cred");
    let e1 = app
        .create_entry(&json!({"title": "one", "fields": [
            {"name": "a", "value": secret},
            {"name": "b", "value": "harmless"},
            {"name": "c", "value": cred, "tier": "credential", "scope": "ops"},
            {"name": "d", "value": "also harmless", "tier": "credential", "scope": "ops"}
        ]}))
        .await;
    let e2 = app
        .create_entry(&json!({"title": "two", "fields": [{"name": "a", "value": "other"}]}))
        .await;
    let stopped = app.stop().await;
    let db = stopped.db_path();
    copy_ciphertext(&db, (&e1, "a"), (&e1, "b")); // another field, same entry
    copy_ciphertext(&db, (&e1, "a"), (&e2, "a")); // same field name, another entry
    copy_ciphertext(&db, (&e1, "c"), (&e1, "d")); // credential tier, same scope
    let app = stopped.start().await;
    let owner = app.owner_token.clone();

    // Control: the original is untouched and still opens.
    assert_eq!(app.field_value(&owner, &e1, "a").await, secret);
    assert_eq!(app.field_value(&owner, &e1, "c").await, cred);
    for (entry, field) in [(&e1, "b"), (&e2, "a"), (&e1, "d")] {
        let body = assert_error(
            app.get_field(&owner, entry, field).await,
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
        )
        .await;
        assert!(
            !body.contains(&secret) && !body.contains(&cred),
            "error leaks plaintext: {body}"
        );
    }
}
