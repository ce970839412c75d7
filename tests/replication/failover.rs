//! Manual failover by SIGHUP: the roles swap, the new primary replicates to the old one, and
//! the old primary refuses client writes.

use crate::helpers::*;
use reqwest::Method;
use serde_json::Value;
use std::collections::HashSet;
use std::time::{Duration, Instant};

pub(crate) async fn wait_role(api: &Api, base: &str, role: &str) {
    wait_for(
        Duration::from_secs(10),
        &format!("{base} to report role {role}"),
        || async {
            let h = api.health(base).await;
            (h["role"] == role).then_some(()).ok_or(h)
        },
    )
    .await;
}

/// SIGHUP with a backup config (of the old backup): the primary steps down.
pub(crate) async fn demote_primary(pair: &Pair) {
    pair.primary.write_backup(BACKUP_ID);
    pair.p().sighup();
    wait_role(&pair.api, &pair.purl(), "backup").await;
}

/// SIGHUP with a primary config: the backup steps up and pushes straight to the old primary,
/// with the token that one accepts.
pub(crate) async fn promote_backup(pair: &Pair, max_retries: u32) {
    pair.backup.write_primary(
        &BackupRef {
            id: PRIMARY_ID,
            url: &pair.purl(),
            token_file: &pair.primary.token_file,
        },
        100,
        max_retries,
    );
    pair.b().sighup();
    wait_role(&pair.api, &pair.burl(), "primary").await;
}

/// Asserts a client write to `url` is refused as on a backup.
async fn assert_read_only(api: &Api, method: Method, url: &str, owner: &str, body: Option<&Value>) {
    let (st, v) = api.call(method.clone(), url, owner, body).await;
    assert_eq!(
        (st, v["error"]["code"].as_str()),
        (503, Some("read_only_backup")),
        "{method} {url}: {v}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn sighup_role_swap_replicates_back_to_the_old_primary() {
    let pair = Pair::new(Opts::default());
    let api = pair.api.clone();
    let (p, b) = (pair.purl(), pair.burl());
    let owner = pair.owner();
    let mut ids = HashSet::new();
    for i in 0..5 {
        ids.insert(api.create(&p, &owner, &entry(&format!("pre-{i}"))).await);
    }
    pair.wait_backup_has(&ids, CONVERGE).await;
    api.wait_caught_up(&p, Duration::from_secs(10)).await;

    // 1. Demote the old primary.
    demote_primary(&pair).await;
    let entries = format!("{p}/v1/entries");
    assert_read_only(
        &api,
        Method::POST,
        &entries,
        &owner,
        Some(&entry("refused")),
    )
    .await;

    // 2. Promote the backup.
    let t0 = Instant::now();
    promote_backup(&pair, 5).await;

    // 3. Clients (same owner token, thanks to the shared master key and replicated agents) write
    //    to the new primary; it replicates to the old one.
    let new = api.create(&b, &owner, &entry("after-failover")).await;
    let moved = ids.iter().next().expect("an old entry").clone();
    let (st, v) = api
        .call(
            Method::PUT,
            &format!("{b}/v1/entries/{moved}"),
            &owner,
            Some(&entry("edited-on-zurich")),
        )
        .await;
    assert_eq!(st, 200, "{v}");
    let want: HashSet<String> = [new.clone()].into();
    let took = api.wait_has(&p, &pair.primary.owner, &want, CONVERGE).await;
    eprintln!(
        "failover: first write on the new primary reached the old one {took:?} later ({:?} since promotion)",
        t0.elapsed()
    );
    let (_, f) = api.field(&p, &owner, &new, "password").await;
    assert_eq!(f["value"], "pw-after-failover", "{f}");
    wait_for(CONVERGE, "the edit on the old primary", || async {
        let (_, e) = api.get_entry(&p, &owner, &moved).await;
        (e["title"] == "edited-on-zurich").then_some(()).ok_or(e)
    })
    .await;

    let h = api.wait_caught_up(&b, Duration::from_secs(20)).await;
    eprintln!("failover: new primary replication = {}", h["replication"]);
    let hp = api.health(&p).await;
    assert_eq!(hp["role"], "backup");
    assert!(hp["replication"]["last_push"].is_string(), "{hp}");

    // Both hold the same entries; the old primary still refuses writes.
    let on_b: HashSet<String> = api.ids(&b, &owner).await.into_iter().collect();
    let on_p: HashSet<String> = api.ids(&p, &owner).await.into_iter().collect();
    assert_eq!(on_b, on_p);
    assert_eq!(on_p.len(), 6);
    assert_read_only(
        &api,
        Method::DELETE,
        &format!("{entries}/{new}"),
        &owner,
        None,
    )
    .await;
    assert!(
        pair.b().stderr().contains("configuration reloaded"),
        "{}",
        pair.logs()
    );
}

/// Promoted before the old primary stepped down: two primaries. The old one refuses the new
/// one's pushes (409 not_a_backup) so neither overwrites the other; once it is demoted, the
/// new primary's backlog drains to it without further writes.
#[tokio::test(flavor = "multi_thread")]
async fn promotion_before_demotion_waits_for_the_old_primary() {
    let pair = Pair::new(Opts::default());
    let api = pair.api.clone();
    let (p, b) = (pair.purl(), pair.burl());
    let owner = pair.owner();
    let first = api.create(&p, &owner, &entry("pre")).await;
    pair.wait_backup_has(&[first].into(), CONVERGE).await;
    api.wait_caught_up(&p, Duration::from_secs(10)).await;

    promote_backup(&pair, 1).await;
    let new = api.create(&b, &owner, &entry("split")).await;
    let h = wait_for(
        Duration::from_secs(20),
        "the new primary failing with 409",
        || async {
            let h = api.health(&b).await;
            let err = h["replication"]["last_error"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            (err.contains("409") && err.contains("not_a_backup"))
                .then_some(h.clone())
                .ok_or(h)
        },
    )
    .await;
    assert!(h["replication"]["failing_since"].is_string(), "{h}");
    assert_eq!(
        api.get_entry(&p, &owner, &new).await.0,
        404,
        "a primary accepted a push"
    );
    // While failing, the new primary retries on its back-off, not once per write: 40 writes in
    // about two seconds may see a few failed drains, never one each.
    let failed = |h: Value| {
        h["replication"]["failed_drains"]
            .as_u64()
            .expect("failed_drains")
    };
    let before = failed(api.health(&b).await);
    for i in 0..40 {
        api.create(&b, &owner, &entry(&format!("while-refused-{i}")))
            .await;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let drains = failed(api.health(&b).await) - before;
    assert!(
        drains <= 6,
        "{drains} failed drains during 40 writes: the failing primary pushed on every commit"
    );

    demote_primary(&pair).await;
    let t0 = Instant::now();
    let took = api.wait_has(&p, &owner, &[new].into(), CONVERGE).await;
    api.wait_caught_up(&b, Duration::from_secs(20)).await;
    eprintln!(
        "split brain: drained to the demoted POP {took:?} after demotion ({:?} to backlog 0)",
        t0.elapsed()
    );
}

/// After a failover the promoted POP accepts exactly the tokens the primary issued, holds the
/// primary's one key per scope (credential fields written there in existing scopes are
/// readable by the primary's agents), keeps every person's access (a member reads through its
/// group, its agent too, and loses it there when removed), and the owner can rotate there; the
/// rotation reaches the demoted POP.
#[tokio::test(flavor = "multi_thread")]
async fn failover_keeps_one_key_per_scope_and_one_owner() {
    let pair = Pair::new(Opts::default());
    let api = pair.api.clone();
    let (p, b) = (pair.purl(), pair.burl());
    let owner = pair.owner();

    // Credential fields in two scopes, and an agent holding one of them, all made on the primary.
    let body = serde_json::json!({"title": "prod", "fields": [
        {"name": "deploy_key", "value": "dk-primary", "tier": "credential", "scope": "deploy"},
        {"name": "billing_key", "value": "bk-primary", "tier": "credential", "scope": "billing"},
    ]});
    let prod = api.create(&p, &owner, &body).await;
    let (st, agent) = api
        .call(
            Method::POST,
            &format!("{p}/v1/agents"),
            &owner,
            Some(&serde_json::json!({"name": "deployer", "scopes": ["deploy"]})),
        )
        .await;
    assert_eq!(st, 201, "{agent}");
    let agent = agent["token"].as_str().expect("agent token").to_owned();
    // A member of a group with the deploy scope, and the member's own agent.
    let call = |method: Method, url: String, token: String, body: Option<serde_json::Value>| {
        let api = api.clone();
        async move { api.call(method, &url, &token, body.as_ref()).await }
    };
    let (st, member) = call(
        Method::POST,
        format!("{p}/v1/users"),
        owner.clone(),
        Some(serde_json::json!({"name": "alice", "email": "alice@example.com", "role": "member"})),
    )
    .await;
    assert_eq!(st, 201, "{member}");
    let member_id = member["id"].as_str().unwrap().to_owned();
    let member = member["token"].as_str().unwrap().to_owned();
    let (st, group) = call(
        Method::POST,
        format!("{p}/v1/groups"),
        owner.clone(),
        Some(serde_json::json!({"name": "deployers", "scopes": ["deploy"]})),
    )
    .await;
    assert_eq!(st, 201, "{group}");
    let group = group["id"].as_str().unwrap().to_owned();
    let (st, v) = call(
        Method::PUT,
        format!("{p}/v1/groups/{group}/members/{member_id}"),
        owner.clone(),
        None,
    )
    .await;
    assert_eq!(st, 204, "{v}");
    let (st, bot) = call(
        Method::POST,
        format!("{p}/v1/agents"),
        member.clone(),
        Some(serde_json::json!({"name": "alice-bot", "scopes": ["deploy"]})),
    )
    .await;
    assert_eq!(st, 201, "{bot}");
    let bot = bot["token"].as_str().unwrap().to_owned();
    pair.wait_backup_has(&[prod.clone()].into(), CONVERGE).await;
    api.wait_caught_up(&p, Duration::from_secs(10)).await;

    demote_primary(&pair).await;
    promote_backup(&pair, 5).await;

    // The primary's owner and agent read what they read before, on the promoted POP.
    let value = |base: String, token: String, id: String, name: &'static str| {
        let api = api.clone();
        async move {
            let (st, v) = api.field(&base, &token, &id, name).await;
            assert_eq!(st, 200, "{name} on {base}: {v}");
            v["value"].as_str().unwrap_or_default().to_owned()
        }
    };
    assert_eq!(
        value(b.clone(), owner.clone(), prod.clone(), "deploy_key").await,
        "dk-primary"
    );
    assert_eq!(
        value(b.clone(), owner.clone(), prod.clone(), "billing_key").await,
        "bk-primary"
    );
    assert_eq!(
        value(b.clone(), agent.clone(), prod.clone(), "deploy_key").await,
        "dk-primary"
    );

    // The member reads through its group on the promoted POP, its agent too; not another scope.
    assert_eq!(
        value(b.clone(), member.clone(), prod.clone(), "deploy_key").await,
        "dk-primary"
    );
    assert_eq!(
        value(b.clone(), bot.clone(), prod.clone(), "deploy_key").await,
        "dk-primary"
    );
    assert_eq!(api.field(&b, &member, &prod, "billing_key").await.0, 404);

    // A write in an existing scope on the promoted POP uses the primary's key for that scope
    // (never a second one): the primary's agent reads it there.
    let body = serde_json::json!({"title": "after", "fields": [
        {"name": "deploy_key", "value": "dk-promoted", "tier": "credential", "scope": "deploy"},
    ]});
    let after = api.create(&b, &owner, &body).await;
    assert_eq!(
        value(b.clone(), agent.clone(), after.clone(), "deploy_key").await,
        "dk-promoted"
    );

    // The owner rotates on the promoted POP: the old token stops there at once, the new one
    // reads every scope, and the rotation reaches the demoted POP.
    let (st, rotated) = api
        .call(Method::POST, &format!("{b}/v1/owner/rotate"), &owner, None)
        .await;
    assert_eq!(st, 200, "{rotated}");
    let new_owner = rotated["token"].as_str().expect("new token").to_owned();
    assert_eq!(api.field(&b, &owner, &prod, "deploy_key").await.0, 401);
    assert_eq!(
        value(b.clone(), new_owner.clone(), prod.clone(), "billing_key").await,
        "bk-primary"
    );
    assert_eq!(
        value(b.clone(), new_owner.clone(), after.clone(), "deploy_key").await,
        "dk-promoted"
    );
    assert_eq!(
        value(b.clone(), agent.clone(), after.clone(), "deploy_key").await,
        "dk-promoted"
    );
    // Removed from the group on the promoted POP, the member (and its agent) read no more.
    let (st, v) = call(
        Method::DELETE,
        format!("{b}/v1/groups/{group}/members/{member_id}"),
        new_owner.clone(),
        None,
    )
    .await;
    assert_eq!(st, 204, "{v}");
    assert_eq!(api.field(&b, &member, &prod, "deploy_key").await.0, 404);
    assert_eq!(api.field(&b, &bot, &prod, "deploy_key").await.0, 404);
    wait_for(CONVERGE, "the rotation on the demoted POP", || async {
        let (st, v) = api.field(&p, &new_owner, &after, "deploy_key").await;
        (st == 200 && v["value"] == "dk-promoted")
            .then_some(())
            .ok_or((st, v))
    })
    .await;
    assert_eq!(api.field(&p, &owner, &prod, "deploy_key").await.0, 401);
}
