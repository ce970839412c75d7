//! `/scim/v2/Users` and `/scim/v2/Groups`: list (with `filter`, `startIndex`, `count`),
//! create, get, replace (users), PATCH, delete. PATCH takes what Okta and Entra ID send:
//! `active` as a boolean or as the string `"False"`, operations with or without a `path`, and
//! value paths such as `members[value eq "ID"]`.

use super::filter::{self, Eq};
use super::{
    GROUP_SCHEMA, PATCH_SCHEMA, ScimError, ScimState, USER_SCHEMA, authorize, body, list_response,
    scim_json,
};
use crate::api::timestamp;
use crate::service::provisioning::{
    MembersChange, ProvisionedChange, ProvisionedGroup, ProvisionedUser,
};
use axum::Router;
use axum::extract::{Path, Query, Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Deserialize;
use serde_json::{Value, json};

pub fn routes() -> Router<ScimState> {
    Router::new()
        .route("/scim/v2/Users", get(list_users).post(create_user))
        .route(
            "/scim/v2/Users/{id}",
            get(get_user)
                .put(replace_user)
                .patch(patch_user)
                .delete(delete_user),
        )
        .route("/scim/v2/Groups", get(list_groups).post(create_group))
        .route(
            "/scim/v2/Groups/{id}",
            get(get_group).patch(patch_group).delete(delete_group),
        )
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct ListQuery {
    filter: Option<String>,
    start_index: Option<usize>,
    count: Option<usize>,
    excluded_attributes: Option<String>,
}

/// A resource's `meta`: its type, times (ms since the epoch) and where it lives.
fn meta(resource_type: &str, endpoint: &str, id: &str, created: i64, modified: i64) -> Value {
    json!({
        "resourceType": resource_type,
        "created": timestamp(created),
        "lastModified": timestamp(modified),
        "location": format!("/scim/v2/{endpoint}/{id}"),
    })
}

fn user_json(u: &ProvisionedUser) -> Value {
    let v = &u.user;
    let mut out = json!({
        "schemas": [USER_SCHEMA],
        "id": v.id,
        "userName": v.name,
        "displayName": v.name,
        "active": v.active,
        "emails": [{"value": v.email, "type": "work", "primary": true}],
        "groups": v.groups.iter().chain(v.pending_grants.iter())
            .map(|g| json!({"value": g, "$ref": format!("/scim/v2/Groups/{g}")}))
            .collect::<Vec<_>>(),
        "meta": meta("User", "Users", &v.id, v.created_at, u.updated_at),
    });
    if let Some(e) = &u.external_id {
        out["externalId"] = json!(e);
    }
    out
}

fn group_json(g: &ProvisionedGroup, members: bool) -> Value {
    let mut out = json!({
        "schemas": [GROUP_SCHEMA],
        "id": g.id,
        "displayName": g.name,
        "meta": meta("Group", "Groups", &g.id, g.created_at, g.created_at),
    });
    if members {
        out["members"] = g
            .members
            .iter()
            .map(|(id, name)| json!({"value": id, "display": name, "$ref": format!("/scim/v2/Users/{id}")}))
            .collect();
    }
    if let Some(e) = &g.external_id {
        out["externalId"] = json!(e);
    }
    out
}

fn matches(filters: &[Eq], get: impl Fn(&str) -> Option<String>) -> bool {
    filters.iter().all(|f| {
        get(&f.attr.to_ascii_lowercase()).is_some_and(|v| {
            // userName and displayName compare case-insensitively (RFC 7643 caseExact false).
            v.eq_ignore_ascii_case(&f.value)
        })
    })
}

/// The list answer to `q`: the resources of `all` that match `filters` (`attr` gives a
/// resource's attribute by lower-cased name), each rendered by `render`, paged.
fn list<T>(
    q: &ListQuery,
    filters: &[Eq],
    all: &[T],
    attr: impl Fn(&T, &str) -> Option<String>,
    render: impl Fn(&T) -> Value,
) -> Response {
    let found = all
        .iter()
        .filter(|r| matches(filters, |a| attr(r, a)))
        .map(render)
        .collect();
    list_response(found, q.start_index, q.count)
}

/// A 400 of SCIM error type `scim_type`.
fn bad_request(scim_type: &'static str, detail: impl Into<String>) -> ScimError {
    ScimError::new(StatusCode::BAD_REQUEST, Some(scim_type), detail)
}

fn parse_filter(q: &ListQuery) -> Result<Vec<Eq>, ScimError> {
    match &q.filter {
        None => Ok(Vec::new()),
        Some(f) => filter::parse(f).map_err(|m| bad_request("invalidFilter", m)),
    }
}

fn parse_path(path: &str) -> Result<filter::Path, ScimError> {
    filter::parse_path(path).map_err(|m| bad_request("invalidPath", m))
}

async fn list_users(
    State(s): State<ScimState>,
    Query(q): Query<ListQuery>,
    req: Request,
) -> Result<Response, ScimError> {
    authorize(&s, &req)?;
    let filters = parse_filter(&q)?;
    let all = s.vault.provisioned_users().await?;
    let attr = |u: &ProvisionedUser, attr: &str| match attr {
        "username" => Some(u.user.name.clone()),
        "id" => Some(u.user.id.clone()),
        "externalid" => u.external_id.clone(),
        "emails.value" | "emails" => Some(u.user.email.clone()),
        _ => None,
    };
    Ok(list(&q, &filters, &all, attr, user_json))
}

async fn get_user(
    State(s): State<ScimState>,
    Path(id): Path<String>,
    req: Request,
) -> Result<Response, ScimError> {
    authorize(&s, &req)?;
    let u = s.vault.provisioned_user(&id).await?;
    Ok(scim_json(StatusCode::OK, &user_json(&u)))
}

/// The email of a SCIM user: the primary one, else the first, else a userName that is one.
fn email_of(v: &Value, user_name: &str) -> Option<String> {
    let emails = v["emails"].as_array();
    let pick = emails.and_then(|e| {
        e.iter()
            .find(|m| truthy(&m["primary"]) == Some(true))
            .or_else(|| e.first())
    });
    pick.and_then(|m| m["value"].as_str())
        .map(str::to_owned)
        .or_else(|| user_name.contains('@').then(|| user_name.to_owned()))
}

/// A boolean as providers send it: `false`, or Entra's `"False"`.
fn truthy(v: &Value) -> Option<bool> {
    match v {
        Value::Bool(b) => Some(*b),
        Value::String(s) if s.eq_ignore_ascii_case("true") => Some(true),
        Value::String(s) if s.eq_ignore_ascii_case("false") => Some(false),
        _ => None,
    }
}

/// `active` of a created or replaced user: absent means active.
fn active_or_true(v: &Value) -> Result<bool, ScimError> {
    match &v["active"] {
        Value::Null => Ok(true),
        a => truthy(a).ok_or_else(|| ScimError::invalid_value("active must be true or false")),
    }
}

fn required_str(v: &Value, key: &str) -> Result<String, ScimError> {
    v[key]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| ScimError::invalid_value(format!("{key} is required (a string)")))
}

async fn create_user(State(s): State<ScimState>, req: Request) -> Result<Response, ScimError> {
    let p = authorize(&s, &req)?;
    let v = body(req).await?;
    let name = required_str(&v, "userName")?;
    let email = email_of(&v, &name).ok_or_else(|| {
        ScimError::invalid_value("the user needs an email: send emails[{value,primary}] or a userName that is an address")
    })?;
    let active = active_or_true(&v)?;
    let ext = v["externalId"].as_str().map(str::to_owned);
    let u = s.vault.provision_user(&p, name, email, ext, active).await?;
    Ok(scim_json(StatusCode::CREATED, &user_json(&u)))
}

async fn replace_user(
    State(s): State<ScimState>,
    Path(id): Path<String>,
    req: Request,
) -> Result<Response, ScimError> {
    let p = authorize(&s, &req)?;
    let v = body(req).await?;
    let name = required_str(&v, "userName")?;
    let change = ProvisionedChange {
        email: email_of(&v, &name),
        name: Some(name),
        external_id: Some(v["externalId"].as_str().map(str::to_owned)),
        active: Some(active_or_true(&v)?),
    };
    let u = s.vault.change_provisioned_user(&p, &id, change).await?;
    Ok(scim_json(StatusCode::OK, &user_json(&u)))
}

/// The operations of a PATCH body, each `(op, path, value)` with `op` lower-cased.
fn operations(v: &Value) -> Result<Vec<(String, Option<String>, Value)>, ScimError> {
    let schemas_ok = v["schemas"]
        .as_array()
        .is_some_and(|s| s.iter().any(|x| x.as_str() == Some(PATCH_SCHEMA)));
    if !schemas_ok {
        return Err(bad_request(
            "invalidSyntax",
            format!("a PATCH body names the schema {PATCH_SCHEMA}"),
        ));
    }
    let ops = v["Operations"]
        .as_array()
        .ok_or_else(|| bad_request("invalidSyntax", "Operations is required (an array)"))?;
    ops.iter()
        .map(|o| {
            let op = o["op"].as_str().unwrap_or("").to_ascii_lowercase();
            if !matches!(op.as_str(), "add" | "replace" | "remove") {
                return Err(bad_request(
                    "invalidSyntax",
                    format!("op {:?} is not add, replace or remove", o["op"]),
                ));
            }
            Ok((
                op,
                o["path"].as_str().map(str::to_owned),
                o["value"].clone(),
            ))
        })
        .collect()
}

/// The value of an operation without a path: an object of attributes.
fn attributes(value: &Value) -> Result<&serde_json::Map<String, Value>, ScimError> {
    value.as_object().ok_or_else(|| {
        ScimError::invalid_value("an operation without a path takes an object value")
    })
}

fn user_attr(
    change: &mut ProvisionedChange,
    op: &str,
    attr: &str,
    value: &Value,
) -> Result<(), ScimError> {
    let text = || value.as_str().map(str::to_owned);
    match attr.to_ascii_lowercase().as_str() {
        "active" => {
            change.active = Some(truthy(value).ok_or_else(|| {
                ScimError::invalid_value(format!("active must be true or false (got {value})"))
            })?)
        }
        "username" => {
            change.name =
                Some(text().ok_or_else(|| ScimError::invalid_value("userName must be a string"))?)
        }
        "externalid" => change.external_id = Some(if op == "remove" { None } else { text() }),
        "emails" => {
            if let Some(e) = email_of(&json!({"emails": value}), "") {
                change.email = Some(e);
            }
        }
        // Names, titles, phone numbers, the enterprise extension: the vault keeps none.
        _ => {}
    }
    Ok(())
}

async fn patch_user(
    State(s): State<ScimState>,
    Path(id): Path<String>,
    req: Request,
) -> Result<Response, ScimError> {
    let p = authorize(&s, &req)?;
    let v = body(req).await?;
    let mut change = ProvisionedChange::default();
    for (op, path, value) in operations(&v)? {
        match path {
            None => {
                for (k, val) in attributes(&value)? {
                    user_attr(&mut change, &op, k, val)?;
                }
            }
            Some(path) => {
                let parsed = parse_path(&path)?;
                if parsed.attr.eq_ignore_ascii_case("emails") && parsed.sub.is_some() {
                    if let Some(e) = value.as_str() {
                        change.email = Some(e.to_owned());
                    }
                } else if op == "remove" && parsed.attr.eq_ignore_ascii_case("active") {
                    return Err(bad_request(
                        "mutability",
                        "active cannot be removed; replace it with false",
                    ));
                } else {
                    user_attr(&mut change, &op, &parsed.attr, &value)?;
                }
            }
        }
    }
    let u = s.vault.change_provisioned_user(&p, &id, change).await?;
    Ok(scim_json(StatusCode::OK, &user_json(&u)))
}

async fn delete_user(
    State(s): State<ScimState>,
    Path(id): Path<String>,
    req: Request,
) -> Result<Response, ScimError> {
    let p = authorize(&s, &req)?;
    s.vault.delete_provisioned_user(&p, &id).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn list_groups(
    State(s): State<ScimState>,
    Query(q): Query<ListQuery>,
    req: Request,
) -> Result<Response, ScimError> {
    authorize(&s, &req)?;
    let filters = parse_filter(&q)?;
    let members = !q.excluded_attributes.as_deref().is_some_and(|e| {
        e.split(',')
            .any(|a| a.trim().eq_ignore_ascii_case("members"))
    });
    let all = s.vault.provisioner_groups().await?;
    let attr = |g: &ProvisionedGroup, attr: &str| match attr {
        "displayname" => Some(g.name.clone()),
        "id" => Some(g.id.clone()),
        "externalid" => g.external_id.clone(),
        _ => None,
    };
    Ok(list(&q, &filters, &all, attr, |g| group_json(g, members)))
}

async fn get_group(
    State(s): State<ScimState>,
    Path(id): Path<String>,
    req: Request,
) -> Result<Response, ScimError> {
    authorize(&s, &req)?;
    let g = s.vault.provisioner_group(&id).await?;
    Ok(scim_json(StatusCode::OK, &group_json(&g, true)))
}

/// The ids of a `members` value: `[{"value": ID}, ...]`.
fn member_ids(v: &Value) -> Result<Vec<String>, ScimError> {
    match v {
        Value::Null => Ok(Vec::new()),
        Value::Array(a) => a
            .iter()
            .map(|m| {
                m["value"].as_str().map(str::to_owned).ok_or_else(|| {
                    ScimError::invalid_value("each member is {\"value\": \"USER ID\"}")
                })
            })
            .collect(),
        _ => Err(ScimError::invalid_value(
            "members is an array of {\"value\": \"USER ID\"}",
        )),
    }
}

/// `op` (add, replace or remove) applied to the members `ids`.
fn change_members(change: &mut MembersChange, op: &str, ids: Vec<String>) {
    match op {
        "add" => change.add.extend(ids),
        "replace" => change.replace = Some(ids),
        _ => change.remove.extend(ids),
    }
}

async fn create_group(State(s): State<ScimState>, req: Request) -> Result<Response, ScimError> {
    let p = authorize(&s, &req)?;
    let v = body(req).await?;
    let name = required_str(&v, "displayName")?;
    let members = member_ids(&v["members"])?;
    let ext = v["externalId"].as_str().map(str::to_owned);
    let g = s.vault.provision_group(&p, name, ext, members).await?;
    Ok(scim_json(StatusCode::CREATED, &group_json(&g, true)))
}

async fn patch_group(
    State(s): State<ScimState>,
    Path(id): Path<String>,
    req: Request,
) -> Result<Response, ScimError> {
    let p = authorize(&s, &req)?;
    let v = body(req).await?;
    let current = s.vault.provisioner_group(&id).await?;
    let mut change = MembersChange::default();
    let rename = |value: &Value| -> Result<(), ScimError> {
        match value.as_str() {
            Some(n) if n == current.name => Ok(()),
            _ => Err(bad_request(
                "mutability",
                "a group's displayName is set in the vault; this server does not rename groups",
            )),
        }
    };
    for (op, path, value) in operations(&v)? {
        let (attr, filter) = match &path {
            None => {
                for (k, val) in attributes(&value)? {
                    match k.to_ascii_lowercase().as_str() {
                        "members" => change_members(&mut change, &op, member_ids(val)?),
                        "displayname" => rename(val)?,
                        _ => {}
                    }
                }
                continue;
            }
            Some(path) => {
                let parsed = parse_path(path)?;
                (parsed.attr.to_ascii_lowercase(), parsed.filter)
            }
        };
        match attr.as_str() {
            "members" if !filter.is_empty() => {
                // members[value eq "ID"]
                for f in &filter {
                    if !f.attr.eq_ignore_ascii_case("value") {
                        return Err(bad_request(
                            "invalidFilter",
                            "a members path filters on value",
                        ));
                    }
                    match op.as_str() {
                        "remove" => change.remove.push(f.value.clone()),
                        _ => change.add.push(f.value.clone()),
                    }
                }
            }
            // A remove without a value: every member goes.
            "members" if op == "remove" && value.is_null() => change.replace = Some(Vec::new()),
            "members" => change_members(&mut change, &op, member_ids(&value)?),
            "displayname" => rename(&value)?,
            _ => {}
        }
    }
    s.vault.change_provisioned_members(&p, &id, change).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn delete_group(
    State(s): State<ScimState>,
    Path(id): Path<String>,
    req: Request,
) -> Result<Response, ScimError> {
    let p = authorize(&s, &req)?;
    s.vault.delete_provisioned_group(&p, &id).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
