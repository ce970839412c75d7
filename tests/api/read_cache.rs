//! Reads may be served from memory, but never older than a write the reader saw acknowledged.

use crate::helpers::{assert_error, spawn_app};
use reqwest::StatusCode;
use serde_json::json;
use std::sync::Arc;

fn entry(value: &str) -> serde_json::Value {
    json!({"title": "t", "fields": [
        {"name": "v", "value": value, "tier": "vault", "scope": "app"},
        {"name": "c", "value": format!("cred-{value}"), "tier": "credential", "scope": "app"}
    ]})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_read_after_an_acknowledged_update_sees_it() {
    let app = spawn_app().await;
    let (_, agent) = app
        .create_agent(&json!({"name": "reader", "scopes": ["app"]}))
        .await;
    let id = app.create_entry(&entry("0")).await;
    for i in 1..=40 {
        // Warm: the current value is read (and may be kept) before it changes.
        let before = (i - 1).to_string();
        assert_eq!(app.field_value(&agent, &id, "v").await, before);
        assert_eq!(
            app.field_value(&agent, &id, "c").await,
            format!("cred-{before}")
        );
        let res = app
            .put_entry(&app.owner_token, &id, &entry(&i.to_string()))
            .await;
        assert_eq!(res.status(), StatusCode::OK, "update {i}");
        assert_eq!(
            app.field_value(&agent, &id, "v").await,
            i.to_string(),
            "after update {i}"
        );
        assert_eq!(app.field_value(&agent, &id, "c").await, format!("cred-{i}"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_field_that_is_removed_or_deleted_is_gone_at_once() {
    let app = spawn_app().await;
    let id = app.create_entry(&entry("x")).await;
    assert_eq!(app.field_value(&app.owner_token, &id, "v").await, "x");
    let res = app
        .put_entry(
            &app.owner_token,
            &id,
            &json!({"title": "t", "fields": [{"name": "other", "value": "y"}]}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_error(
        app.get_field(&app.owner_token, &id, "v").await,
        StatusCode::NOT_FOUND,
        "field_not_found",
    )
    .await;
    assert_eq!(app.field_value(&app.owner_token, &id, "other").await, "y");
    assert_eq!(
        app.delete_entry(&app.owner_token, &id).await.status(),
        StatusCode::NO_CONTENT
    );
    assert_error(
        app.get_field(&app.owner_token, &id, "other").await,
        StatusCode::NOT_FOUND,
        "entry_not_found",
    )
    .await;
}

/// Readers hammer a field while a writer updates it; each reader, after seeing update N
/// acknowledged, never reads a value older than N.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_readers_never_go_back_in_time() {
    let app = Arc::new(spawn_app().await);
    let id = Arc::new(app.create_entry(&entry("0")).await);
    let acked = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let mut readers = Vec::new();
    for _ in 0..4 {
        let (app, id, acked) = (app.clone(), id.clone(), acked.clone());
        readers.push(tokio::spawn(async move {
            let mut last = 0u64;
            for _ in 0..150 {
                let floor = acked.load(std::sync::atomic::Ordering::SeqCst);
                let seen: u64 = app
                    .field_value(&app.owner_token, &id, "v")
                    .await
                    .parse()
                    .expect("a number");
                assert!(seen >= floor, "read {seen} after {floor} was acknowledged");
                assert!(seen >= last, "went back from {last} to {seen}");
                last = seen;
            }
        }));
    }
    for i in 1..=30u64 {
        let res = app
            .put_entry(&app.owner_token, &id, &entry(&i.to_string()))
            .await;
        assert_eq!(res.status(), StatusCode::OK);
        acked.store(i, std::sync::atomic::Ordering::SeqCst);
    }
    for r in readers {
        r.await.expect("reader");
    }
}
