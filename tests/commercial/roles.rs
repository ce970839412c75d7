//! A backup POP is read-only for clients: every write answers 503 `read_only_backup`,
//! reads work.

use crate::helpers::*;
use reqwest::Method;

#[tokio::test(flavor = "multi_thread")]
async fn backup_refuses_client_writes_and_serves_reads() {
    let pop = Pop::new();
    let c = pop.client();

    // As a primary: create an entry and an agent to aim the backup's writes at.
    pop.configure("primary", &Opts::default());
    let mut v = pop.start();
    let (st, created) = post_entry(&c, &v, "github").await;
    assert_eq!(st, 201, "{created}");
    let entry = created["id"].as_str().expect("entry id").to_owned();
    let (st, agent) = call(
        &c,
        Method::POST,
        &format!("{}/v1/agents", v.url),
        &v.token,
        Some(&serde_json::json!({"name": "ci", "scopes": ["deploy"]})),
    )
    .await;
    assert_eq!(st, 201, "{agent}");
    let agent = agent["id"].as_str().expect("agent id").to_owned();
    v.stop(std::time::Duration::from_secs(5));
    drop(v);

    // The same vault as a backup.
    pop.configure("backup", &Opts::default());
    let v = pop.start();
    assert_eq!(health(&c, &v.url).await["role"], "backup");
    let u = &v.url;
    let writes = [
        (
            Method::POST,
            format!("{u}/v1/entries"),
            Some(entry_body("x")),
        ),
        (
            Method::PUT,
            format!("{u}/v1/entries/{entry}"),
            Some(entry_body("renamed")),
        ),
        (Method::DELETE, format!("{u}/v1/entries/{entry}"), None),
        (
            Method::POST,
            format!("{u}/v1/agents"),
            Some(serde_json::json!({"name": "ci2", "scopes": ["deploy"]})),
        ),
        (Method::DELETE, format!("{u}/v1/agents/{agent}"), None),
    ];
    for (m, url, body) in writes {
        let (st, res) = call(&c, m.clone(), &url, &v.token, body.as_ref()).await;
        assert_eq!(st, 503, "{m} {url}: {res}");
        assert_eq!(code(&res), "read_only_backup", "{m} {url}: {res}");
        assert!(
            res["error"]["message"]
                .as_str()
                .is_some_and(|s| !s.is_empty()),
            "{res}"
        );
    }

    // Reads work, and the refused writes changed nothing.
    let (st, list) = call(&c, Method::GET, &format!("{u}/v1/entries"), &v.token, None).await;
    assert_eq!(st, 200, "{list}");
    assert!(list.to_string().contains(&entry), "{list}");
    assert!(!list.to_string().contains("renamed"), "{list}");
    let (st, one) = call(
        &c,
        Method::GET,
        &format!("{u}/v1/entries/{entry}"),
        &v.token,
        None,
    )
    .await;
    assert_eq!(st, 200, "{one}");
    assert_eq!(one["title"], "github");
    let (st, field) = call(
        &c,
        Method::GET,
        &format!("{u}/v1/entries/{entry}/fields/password"),
        &v.token,
        None,
    )
    .await;
    assert_eq!(st, 200, "{field}");
    assert_eq!(field["value"], "hunter2");
    let (st, agents) = call(&c, Method::GET, &format!("{u}/v1/agents"), &v.token, None).await;
    assert_eq!(st, 200, "{agents}");
    assert!(agents.to_string().contains(&agent), "{agents}");
}

#[tokio::test(flavor = "multi_thread")]
async fn primary_accepts_client_writes() {
    let pop = Pop::new();
    pop.configure("primary", &Opts::default());
    let v = pop.start();
    let c = pop.client();
    let (st, res) = post_entry(&c, &v, "a").await;
    assert_eq!(st, 201, "{res}");
}
