//! A failover keeps what people were promised on the primary: an invite issued there redeems
//! on the promoted POP (once: a code redeemed before the failover stays redeemed), and the
//! identity provider still manages the users it created there, so deprovisioning works.

use crate::failover::{demote_primary, promote_backup};
use crate::helpers::*;
use reqwest::Method;
use serde_json::{Value, json};
use std::time::Duration;

/// A token a user's own client makes (what `clavitor login --invite` sends).
fn fresh_token() -> String {
    clavitor::crypto::Token::generate().expose().to_owned()
}

async fn ok(api: &Api, method: Method, url: &str, token: &str, body: Option<&Value>) -> Value {
    let (st, v) = api.call(method.clone(), url, token, body).await;
    assert!((200..300).contains(&st), "{method} {url}: {st} {v}");
    v
}

/// Creates a member on `base` and issues it an invite; returns its id and the code.
async fn invited_user(api: &Api, base: &str, owner: &str, name: &str) -> (String, String) {
    let user = ok(
        api,
        Method::POST,
        &format!("{base}/v1/users"),
        owner,
        Some(&json!({"name": name, "email": format!("{name}@example.com"), "role": "member"})),
    )
    .await;
    let id = user["id"].as_str().expect("user id").to_owned();
    let invite = ok(
        api,
        Method::POST,
        &format!("{base}/v1/users/{id}/invite"),
        owner,
        None,
    )
    .await;
    (id, invite["code"].as_str().expect("code").to_owned())
}

/// Redeems `code` with the `token` the user's client made (no bearer: the code is the
/// credential).
async fn redeem(api: &Api, base: &str, code: &str, token: &str) -> Reply {
    let res = api
        .c
        .post(format!("{base}/v1/invite/redeem"))
        .json(&json!({"code": code, "token": token}))
        .send()
        .await
        .expect("redeem");
    let st = res.status().as_u16();
    (st, res.json().await.unwrap_or(Value::Null))
}

async fn me(api: &Api, base: &str, token: &str) -> Reply {
    api.call(Method::GET, &format!("{base}/v1/me"), token, None)
        .await
}

/// Invites outlive the primary: a code issued there works on the promoted POP, and a code
/// redeemed there before the failover is refused on the promoted POP (it must not work twice).
#[tokio::test(flavor = "multi_thread")]
async fn failover_keeps_invites_and_their_single_use() {
    let pair = Pair::new(Opts::default());
    let api = pair.api.clone();
    let (p, b) = (pair.purl(), pair.burl());
    let owner = pair.owner();

    let (bo, bo_code) = invited_user(&api, &p, &owner, "bo").await;
    let (cy, cy_code) = invited_user(&api, &p, &owner, "cy").await;
    let cy_token = fresh_token();
    let (st, v) = redeem(&api, &p, &cy_code, &cy_token).await;
    assert_eq!(st, 200, "{v}");
    api.wait_caught_up(&p, Duration::from_secs(20)).await;

    demote_primary(&pair).await;
    promote_backup(&pair, 5).await;

    // bo redeems on the promoted POP the code the old primary issued.
    let bo_token = fresh_token();
    let (st, v) = redeem(&api, &b, &bo_code, &bo_token).await;
    assert_eq!(st, 200, "a code issued on the old primary: {v}");
    assert_eq!(v["id"], bo.as_str(), "{v}");
    let (st, v) = me(&api, &b, &bo_token).await;
    assert_eq!((st, v["id"].as_str()), (200, Some(bo.as_str())), "{v}");

    // cy's code was used on the old primary: refused here, and cy's token still works.
    let (st, v) = redeem(&api, &b, &cy_code, &fresh_token()).await;
    assert_eq!(
        (st, v["error"]["code"].as_str()),
        (400, Some("invite_not_valid")),
        "{v}"
    );
    let msg = v["error"]["message"].as_str().unwrap_or_default();
    assert!(msg.contains("used already"), "{msg}");
    let (st, v) = me(&api, &b, &cy_token).await;
    assert_eq!((st, v["id"].as_str()), (200, Some(cy.as_str())), "{v}");
    // bo's redemption replicates back: the code is used on the old primary too.
    api.wait_caught_up(&b, Duration::from_secs(20)).await;
    let (st, v) = me(&api, &p, &bo_token).await;
    assert_eq!((st, v["id"].as_str()), (200, Some(bo.as_str())), "{v}");
}

/// The identity provider deprovisions, on the promoted POP, a user it created on the old
/// primary: the SCIM token still manages it there (200), and the user's token stops there;
/// the group it created there is still its own to delete.
#[tokio::test(flavor = "multi_thread")]
async fn failover_keeps_what_scim_created_so_deprovisioning_works() {
    let pair = Pair::new(Opts {
        scim: true,
        ..Opts::default()
    });
    let api = pair.api.clone();
    let (p, b) = (pair.purl(), pair.burl());
    let owner = pair.owner();
    let scim = pair.scim_token.clone();

    // Okta creates the user on the primary; an admin invites it and it signs in.
    let created = ok(
        &api,
        Method::POST,
        &format!("{p}/scim/v2/Users"),
        &scim,
        Some(&json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
            "userName": "dee@okta.local",
            "emails": [{"primary": true, "value": "dee@okta.local", "type": "work"}],
            "externalId": "00ujl29u0le5T6Aj10h7",
            "active": true,
        })),
    )
    .await;
    let dee = created["id"].as_str().expect("SCIM id").to_owned();
    let invite = ok(
        &api,
        Method::POST,
        &format!("{p}/v1/users/{dee}/invite"),
        &owner,
        None,
    )
    .await;
    let group = ok(
        &api,
        Method::POST,
        &format!("{p}/scim/v2/Groups"),
        &scim,
        Some(
            &json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"],
                     "displayName": "Engineering"}),
        ),
    )
    .await;
    let group = group["id"].as_str().expect("SCIM group id").to_owned();
    let dee_token = fresh_token();
    let (st, v) = redeem(&api, &p, invite["code"].as_str().unwrap(), &dee_token).await;
    assert_eq!(st, 200, "{v}");
    api.wait_caught_up(&p, Duration::from_secs(20)).await;

    demote_primary(&pair).await;
    promote_backup(&pair, 5).await;
    let (st, v) = me(&api, &b, &dee_token).await;
    assert_eq!(st, 200, "dee's token on the promoted POP: {v}");

    // The provider still finds its user there, with its own id for it.
    let (st, list) = api
        .call(
            Method::GET,
            &format!("{b}/scim/v2/Users?filter=userName%20eq%20%22dee@okta.local%22"),
            &scim,
            None,
        )
        .await;
    assert_eq!(
        (st, list["totalResults"].clone()),
        (200, json!(1)),
        "{list}"
    );
    assert_eq!(
        list["Resources"][0]["externalId"], "00ujl29u0le5T6Aj10h7",
        "{list}"
    );

    // Okta deactivates dee (its PATCH shape): the promoted POP obeys, and dee's token stops.
    let (st, v) = api
        .call(
            Method::PATCH,
            &format!("{b}/scim/v2/Users/{dee}"),
            &scim,
            Some(&json!({
                "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
                "Operations": [{"op": "replace", "value": {"active": false}}],
            })),
        )
        .await;
    assert_eq!(st, 200, "deprovisioning on the promoted POP: {v}");
    assert_eq!(v["active"], false, "{v}");
    let (st, v) = me(&api, &b, &dee_token).await;
    assert_eq!(st, 401, "a deprovisioned user's token: {v}");
    // And it still owns the group it created there: it may delete it.
    let (st, v) = api
        .call(
            Method::DELETE,
            &format!("{b}/scim/v2/Groups/{group}"),
            &scim,
            None,
        )
        .await;
    assert_eq!(st, 204, "deleting its own group on the promoted POP: {v}");
}

/// A group's scopes changed on the primary hold on the promoted POP: the member reads the
/// added scope there (its wrapped copy replicated) and neither it nor its agent reads the
/// removed one.
#[tokio::test(flavor = "multi_thread")]
async fn a_groups_changed_scopes_replicate_with_the_members_keys() {
    let pair = Pair::new(Opts::default());
    let api = pair.api.clone();
    let (p, b) = (pair.purl(), pair.burl());
    let owner = pair.owner();

    let body = json!({"title": "prod", "fields": [
        {"name": "deploy_key", "value": "dk-primary", "tier": "credential", "scope": "deploy"},
        {"name": "billing_key", "value": "bk-primary", "tier": "credential", "scope": "billing"},
    ]});
    let prod = api.create(&p, &owner, &body).await;
    let alice = ok(
        &api,
        Method::POST,
        &format!("{p}/v1/users"),
        &owner,
        Some(&json!({"name": "alice", "email": "alice@example.com", "role": "member"})),
    )
    .await;
    let alice_id = alice["id"].as_str().expect("user id").to_owned();
    let alice = alice["token"].as_str().expect("user token").to_owned();
    let group = ok(
        &api,
        Method::POST,
        &format!("{p}/v1/groups"),
        &owner,
        Some(&json!({"name": "deployers", "scopes": ["deploy"]})),
    )
    .await;
    let group = group["id"].as_str().expect("group id").to_owned();
    ok(
        &api,
        Method::PUT,
        &format!("{p}/v1/groups/{group}/members/{alice_id}"),
        &owner,
        None,
    )
    .await;
    let bot = ok(
        &api,
        Method::POST,
        &format!("{p}/v1/agents"),
        &alice,
        Some(&json!({"name": "alice-bot", "scopes": ["deploy"]})),
    )
    .await;
    let bot = bot["token"].as_str().expect("agent token").to_owned();
    assert_eq!(api.field(&p, &bot, &prod, "deploy_key").await.0, 200);
    let changed = ok(
        &api,
        Method::PATCH,
        &format!("{p}/v1/groups/{group}"),
        &owner,
        Some(&json!({"scopes": ["billing"]})),
    )
    .await;
    assert_eq!(changed["scopes"], json!(["billing"]));
    api.wait_caught_up(&p, Duration::from_secs(20)).await;

    demote_primary(&pair).await;
    promote_backup(&pair, 5).await;

    let (st, v) = api.field(&b, &alice, &prod, "billing_key").await;
    assert_eq!((st, v["value"].as_str()), (200, Some("bk-primary")), "{v}");
    assert_eq!(api.field(&b, &alice, &prod, "deploy_key").await.0, 404);
    assert_eq!(api.field(&b, &bot, &prod, "deploy_key").await.0, 404);
}
