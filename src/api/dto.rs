//! The JSON the API speaks. Only this layer knows JSON: domain and service types are not
//! `Serialize`.

use crate::service::{AgentView, EntryView, GroupView, UserChange, UserView};
use crate::vault::{self, AgentSpec, EntryDraft, FieldDraft, GroupSpec, Invalid, Role, UserSpec};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use utoipa::ToSchema;
use zeroize::Zeroizing;

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EntryIn {
    pub title: String,
    pub url: Option<String>,
    pub username: Option<String>,
    #[serde(default)]
    pub fields: Vec<FieldIn>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FieldIn {
    pub name: String,
    pub value: String,
    pub tier: Option<String>,
    pub scope: Option<String>,
    /// `read` or `use`; absent: a new field reads, a replaced field keeps its mode.
    pub agent_access: Option<String>,
    /// Hosts the proxy may send the value to; absent: none, or a replaced field's list.
    pub allowed_hosts: Option<Vec<String>>,
}

impl EntryIn {
    pub fn into_draft(self) -> Result<EntryDraft, Invalid> {
        let fields = self
            .fields
            .into_iter()
            .map(|f| {
                FieldDraft::parse(vault::RawField {
                    name: &f.name,
                    value: Zeroizing::new(f.value),
                    tier: f.tier.as_deref(),
                    scope: f.scope.as_deref(),
                })?
                .with_policy(f.agent_access.as_deref(), f.allowed_hosts.as_deref())
            })
            .collect::<Result<_, _>>()?;
        EntryDraft::parse(
            &self.title,
            self.url.as_deref(),
            self.username.as_deref(),
            fields,
        )
    }
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AgentIn {
    pub name: String,
    #[serde(default)]
    pub scopes: Vec<String>,
    pub ttl_seconds: Option<u64>,
    #[serde(default)]
    pub ip_allowlist: Vec<String>,
    pub rate_limit_per_minute: Option<u32>,
}

impl AgentIn {
    pub fn into_spec(self) -> Result<AgentSpec, Invalid> {
        AgentSpec::parse(
            &self.name,
            &self.scopes,
            self.ttl_seconds,
            &self.ip_allowlist,
            self.rate_limit_per_minute,
        )
    }
}

pub fn timestamp(ms: i64) -> String {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .ok()
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_default()
}

#[derive(Serialize, ToSchema)]
pub struct FieldMetaOut {
    pub name: String,
    pub tier: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    pub agent_access: &'static str,
    pub allowed_hosts: Vec<String>,
}

#[derive(Serialize, ToSchema)]
pub struct EntryOut {
    pub id: String,
    pub title: String,
    pub url: Option<String>,
    pub username: Option<String>,
    pub fields: Vec<FieldMetaOut>,
    pub created_at: String,
    pub updated_at: String,
    pub version: i64,
}

impl From<EntryView> for EntryOut {
    fn from(e: EntryView) -> Self {
        Self {
            id: e.id,
            title: e.title,
            url: e.url,
            username: e.username,
            fields: e
                .fields
                .into_iter()
                .map(|f| FieldMetaOut {
                    name: f.name,
                    tier: f.tier.as_str(),
                    scope: f.scope,
                    agent_access: f.agent_access.as_str(),
                    allowed_hosts: f.allowed_hosts,
                })
                .collect(),
            created_at: timestamp(e.created_at),
            updated_at: timestamp(e.updated_at),
            version: e.version,
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct EntryList {
    pub entries: Vec<EntryOut>,
}

#[derive(Serialize, ToSchema)]
pub struct Written {
    pub id: String,
    pub version: i64,
    pub updated_at: String,
}

#[derive(Serialize, ToSchema)]
pub struct FieldOut<'a> {
    pub name: &'a str,
    pub value: &'a str,
    pub tier: &'static str,
}

#[derive(Serialize, ToSchema)]
pub struct AgentCreatedOut<'a> {
    pub id: String,
    pub token: &'a str,
    pub name: String,
    pub scopes: Vec<String>,
    pub expires_at: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct AgentOut {
    pub id: String,
    pub name: String,
    pub scopes: Vec<String>,
    pub ip_allowlist: Vec<String>,
    pub rate_limit_per_minute: Option<u32>,
    /// The owner's or user's id that created it (`null`: the owner, before people existed).
    pub creator_id: Option<String>,
    pub created_at: String,
    pub expires_at: Option<String>,
    pub revoked_at: Option<String>,
    /// `active`, `expired` or `revoked`.
    pub status: &'static str,
}

impl AgentOut {
    pub fn from_view(a: AgentView, now_ms: i64) -> Self {
        let status = if a.revoked_at.is_some() {
            "revoked"
        } else if a.expires_at.is_some_and(|t| now_ms >= t) {
            "expired"
        } else {
            "active"
        };
        Self {
            id: a.id,
            name: a.name,
            scopes: a.scopes,
            ip_allowlist: a.ip_allowlist,
            rate_limit_per_minute: a.rate_limit_per_minute,
            creator_id: a.creator_id,
            created_at: timestamp(a.created_at),
            expires_at: a.expires_at.map(timestamp),
            revoked_at: a.revoked_at.map(timestamp),
            status,
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct AgentList {
    pub agents: Vec<AgentOut>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UserIn {
    pub name: String,
    pub email: String,
    pub role: String,
}

impl UserIn {
    pub fn into_spec(self) -> Result<UserSpec, Invalid> {
        UserSpec::parse(&self.name, &self.email, &self.role)
    }
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UserPatch {
    pub name: Option<String>,
    pub email: Option<String>,
    pub role: Option<String>,
    pub active: Option<bool>,
}

impl UserPatch {
    pub fn into_change(self) -> Result<UserChange, Invalid> {
        if self.name.is_none()
            && self.email.is_none()
            && self.role.is_none()
            && self.active.is_none()
        {
            return Err(Invalid(
                "nothing to change: send one or more of \"name\", \"email\", \"role\", \"active\""
                    .into(),
            ));
        }
        Ok(UserChange {
            name: self.name,
            email: self.email,
            role: self.role.as_deref().map(Role::parse).transpose()?,
            active: self.active,
        })
    }
}

#[derive(Serialize, ToSchema)]
pub struct UserOut {
    pub id: String,
    pub name: String,
    pub email: String,
    pub role: &'static str,
    pub active: bool,
    pub groups: Vec<String>,
    pub pending_grants: Vec<String>,
    pub created_at: String,
    pub deactivated_at: Option<String>,
}

impl From<UserView> for UserOut {
    fn from(u: UserView) -> Self {
        Self {
            id: u.id,
            name: u.name,
            email: u.email,
            role: u.role.as_str(),
            active: u.active,
            groups: u.groups,
            pending_grants: u.pending_grants,
            created_at: timestamp(u.created_at),
            deactivated_at: u.deactivated_at.map(timestamp),
        }
    }
}

/// A user with the token shown once (creation, reactivation).
#[derive(Serialize, ToSchema)]
pub struct UserWithToken<'a> {
    #[serde(flatten)]
    pub user: UserOut,
    pub token: &'a str,
}

/// `PATCH /v1/users/{id}`'s answer: the user, and its new token when it was reactivated.
#[derive(Serialize, ToSchema)]
pub struct ChangedUser<'a> {
    #[serde(flatten)]
    pub user: UserOut,
    /// Only when `{"active":true}` reactivated the user: its new token, shown once.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token: Option<&'a str>,
}

#[derive(Serialize, ToSchema)]
pub struct UserList {
    pub users: Vec<UserOut>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct GroupIn {
    pub name: String,
    #[serde(default)]
    pub scopes: Vec<String>,
}

impl GroupIn {
    pub fn into_spec(self) -> Result<GroupSpec, Invalid> {
        GroupSpec::parse(&self.name, &self.scopes)
    }
}

#[derive(Serialize, ToSchema)]
pub struct GroupOut {
    pub id: String,
    pub name: String,
    pub scopes: Vec<String>,
    pub members: Vec<String>,
    pub created_at: String,
}

impl From<GroupView> for GroupOut {
    fn from(g: GroupView) -> Self {
        Self {
            id: g.id,
            name: g.name,
            scopes: g.scopes,
            members: g.members,
            created_at: timestamp(g.created_at),
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct GroupList {
    pub groups: Vec<GroupOut>,
}

/// `GET /v1/me`: who this token is.
#[derive(Serialize, ToSchema)]
pub struct MeOut {
    pub id: String,
    pub kind: &'static str,
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub role: Option<&'static str>,
    /// Effective scopes; `["*"]` for the owner.
    pub scopes: Vec<String>,
}
