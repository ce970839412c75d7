//! The operators' web page: sign in with the admin token, watch every POP (refreshed by a
//! small script of our own, or by a meta refresh without scripts), promote a backup and
//! acknowledge alerts, each behind a confirmation page that says what will happen.
//!
//! Security pieces live in their own modules: `cookies` (the session cookie), `csrf` (form
//! tokens and the Origin check), `session` (server-side sessions), `security_headers` (CSP and
//! friends). Everything is served from the binary: templates are compiled in, and the script
//! and style sheet are included as bytes.

pub mod cookies;
pub mod csrf;
pub mod security_headers;
pub mod session;
mod views;

use super::api::AppState;
use super::core::{self, now_ms};
use super::store::AlertFilter;
use askama::Template;
use axum::Router;
use axum::extract::{Form, Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::get;
use serde::Deserialize;
use std::time::Instant;
use views::{Confirm, Dashboard, Live, Login, Notice};

const SCRIPT: &str = include_str!("../../../../../static/control_plane/dashboard.js");
const STYLE: &str = include_str!("../../../../../static/control_plane/dashboard.css");
/// Open alerts listed on the page, at most.
const ALERTS_SHOWN: u32 = 50;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/", get(page))
        .route("/live", get(live))
        .route("/login", get(login_form).post(login))
        .route("/logout", axum::routing::post(logout))
        .route("/pops/{id}/promote", get(confirm_promote).post(promote))
        .route("/alerts/{id}/ack", get(confirm_ack).post(ack))
        .route("/static/dashboard.js", get(script))
        .route("/static/dashboard.css", get(style))
}

fn render(t: &impl Template, status: StatusCode) -> Response {
    match t.render() {
        Ok(html) => (status, Html(html)).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "dashboard template failed");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "the page could not be rendered",
            )
                .into_response()
        }
    }
}

fn notice(status: StatusCode, title: &str, message: impl Into<String>) -> Response {
    render(
        &Notice {
            title: title.to_owned(),
            message: message.into(),
        },
        status,
    )
}

/// The signed-in operator's session, or `None`.
fn signed_in(cp: &AppState, headers: &HeaderMap) -> Option<(String, session::Session)> {
    let id = cookies::session_id(headers)?;
    let s = cp.sessions.get(&id, Instant::now())?;
    Some((id, s))
}

/// A POST from the page: same origin, signed in, with the session's CSRF token.
#[expect(
    clippy::result_large_err,
    reason = "the refusal is the page to send; a cold path"
)]
fn checked_post(
    cp: &AppState,
    headers: &HeaderMap,
    uri: &Uri,
    form_csrf: &str,
) -> Result<String, Response> {
    if !csrf::same_origin(headers, uri) {
        return Err(notice(
            StatusCode::FORBIDDEN,
            "Refused",
            "This form was not sent from this dashboard (its Origin is missing or foreign).",
        ));
    }
    let Some((id, s)) = signed_in(cp, headers) else {
        return Err(Redirect::to("/login").into_response());
    };
    if !csrf::token_matches(&s.csrf, form_csrf) {
        return Err(notice(
            StatusCode::FORBIDDEN,
            "Refused",
            "This form is out of date. Reload the dashboard and try again.",
        ));
    }
    Ok(id)
}

async fn page(State(cp): State<AppState>, headers: HeaderMap) -> Response {
    let Some((_, s)) = signed_in(&cp, &headers) else {
        return Redirect::to("/login").into_response();
    };
    let live = match live_html(&cp).await {
        Ok(html) => html,
        Err(r) => return r,
    };
    let refresh_ms = (cp.config().rules.interval.as_millis() as u64).clamp(1000, 5000);
    render(
        &Dashboard {
            csrf: s.csrf,
            refresh_ms,
            live,
        },
        StatusCode::OK,
    )
}

async fn live(State(cp): State<AppState>, headers: HeaderMap) -> Response {
    if signed_in(&cp, &headers).is_none() {
        return (StatusCode::UNAUTHORIZED, "sign in again").into_response();
    }
    match live_html(&cp).await {
        Ok(html) => Html(html).into_response(),
        Err(r) => r,
    }
}

async fn live_html(cp: &AppState) -> Result<String, Response> {
    let now = Instant::now();
    let data = cp
        .run(move |core, config| {
            core.tick(config, now)?;
            let pops = core.pops(config, now)?;
            let since = now_ms() - views::CHART_HOURS * 3600 * 1000;
            let samples = pops
                .iter()
                .map(|p| core.samples(&p.id, since))
                .collect::<Result<Vec<_>, _>>()?;
            let alerts = core.alerts(&AlertFilter {
                open_only: true,
                limit: ALERTS_SHOWN,
                ..AlertFilter::default()
            })?;
            Ok((pops, samples, alerts, core.failover(config)))
        })
        .await;
    let (pops, samples, alerts, failover) = data.map_err(|e| {
        tracing::error!(error = %e, "dashboard data unavailable");
        notice(
            StatusCode::SERVICE_UNAVAILABLE,
            "Unavailable",
            "The control plane could not read its database; see its log.",
        )
    })?;
    let at = now_ms();
    let pending = failover.promotion.is_some();
    let page = Live {
        failover: views::failover_line(&failover),
        cards: pops
            .iter()
            .zip(samples.iter())
            .map(|(p, s)| views::card(p, s, pending, at))
            .collect(),
        alerts: alerts.iter().map(|a| views::alert_item(a, at)).collect(),
    };
    page.render().map_err(|e| {
        tracing::error!(error = %e, "dashboard template failed");
        (
            StatusCode::INTERNAL_SERVER_ERROR,
            "the page could not be rendered",
        )
            .into_response()
    })
}

async fn login_form(State(cp): State<AppState>, headers: HeaderMap) -> Response {
    if signed_in(&cp, &headers).is_some() {
        return Redirect::to("/").into_response();
    }
    render(&Login { error: None }, StatusCode::OK)
}

#[derive(Deserialize)]
struct LoginForm {
    token: String,
}

async fn login(
    State(cp): State<AppState>,
    uri: Uri,
    headers: HeaderMap,
    Form(form): Form<LoginForm>,
) -> Response {
    if !csrf::same_origin(&headers, &uri) {
        return notice(
            StatusCode::FORBIDDEN,
            "Refused",
            "This sign-in was not sent from this dashboard.",
        );
    }
    let token = crate::crypto::Token::from_text(&form.token);
    if !cp.config().admin_token.ct_eq(&token.hash()) {
        tracing::warn!("dashboard sign-in with a wrong token");
        return render(
            &Login {
                error: Some("That is not the admin token.".to_owned()),
            },
            StatusCode::UNAUTHORIZED,
        );
    }
    let id = cp.sessions.create(Instant::now());
    let mut res = Redirect::to("/").into_response();
    res.headers_mut().insert(
        header::SET_COOKIE,
        cookies::set_session(&id, session::LIFETIME),
    );
    res
}

#[derive(Deserialize)]
struct CsrfForm {
    #[serde(default)]
    csrf: String,
}

async fn logout(
    State(cp): State<AppState>,
    uri: Uri,
    headers: HeaderMap,
    Form(form): Form<CsrfForm>,
) -> Response {
    let id = match checked_post(&cp, &headers, &uri, &form.csrf) {
        Ok(id) => id,
        Err(r) => return r,
    };
    cp.sessions.remove(&id);
    let mut res = Redirect::to("/login").into_response();
    res.headers_mut()
        .insert(header::SET_COOKIE, cookies::clear());
    res
}

async fn confirm_promote(
    State(cp): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let Some((_, s)) = signed_in(&cp, &headers) else {
        return Redirect::to("/login").into_response();
    };
    let config = cp.config();
    if !config.pops.iter().any(|p| p.id == id) {
        return notice(
            StatusCode::NOT_FOUND,
            "Unknown POP",
            format!("No POP {id:?} is configured."),
        );
    }
    let failover = match cp.run(|core, config| Ok(core.failover(config))).await {
        Ok(f) => f,
        Err(e) => return core_error(e),
    };
    let old = failover.primary.clone();
    let lease = failover.lease_ms / 1000;
    let mut consequences = vec![format!(
        "{id} becomes the primary at epoch {}; from then on it accepts the vault's writes.",
        failover.epoch + 1
    )];
    match &old {
        Some(old) => {
            consequences.push(format!(
                "{old} is told at once to step down and become a backup; it stops accepting writes."
            ));
            consequences.push(if lease > 0 {
                format!(
                    "{id} is told it is primary only after {old} confirms, or after {old}'s lease ({lease} s) and a safety margin have run out, so the two are never primary at once."
                )
            } else {
                format!(
                    "{id} is told it is primary only after {old} confirms, or after {old} has been silent long enough to count as stale (no lease is configured)."
                )
            });
            consequences.push(format!(
                "Writes {old} acknowledged that had not reached {id} are not on the new primary; they stay in {old}'s database."
            ));
        }
        None => consequences
            .push("No POP is primary now, so this takes effect at its next heartbeat.".to_owned()),
    }
    render(
        &Confirm {
            title: format!("Promote {id} to primary?"),
            consequences,
            action: format!("/pops/{id}/promote"),
            button: format!("Promote {id}"),
            csrf: s.csrf,
        },
        StatusCode::OK,
    )
}

async fn promote(
    State(cp): State<AppState>,
    uri: Uri,
    headers: HeaderMap,
    Path(id): Path<String>,
    Form(form): Form<CsrfForm>,
) -> Response {
    if let Err(r) = checked_post(&cp, &headers, &uri, &form.csrf) {
        return r;
    }
    let now = Instant::now();
    let target = id.clone();
    match cp.run(move |core, _| core.promote(&target, now)).await {
        Ok(_) => {
            tracing::warn!(pop = %id, "promotion requested from the dashboard");
            Redirect::to("/").into_response()
        }
        Err(e) => core_error(e),
    }
}

fn core_error(e: core::Error) -> Response {
    use super::failover::PromoteError as P;
    match e {
        core::Error::Promote(P::UnknownPop(_))
        | core::Error::UnknownPop(_)
        | core::Error::UnknownAlert(_) => notice(StatusCode::NOT_FOUND, "Not found", e.to_string()),
        core::Error::Promote(p) => notice(StatusCode::CONFLICT, "Not done", p.to_string()),
        other => {
            tracing::error!(error = %other, "dashboard action failed");
            notice(
                StatusCode::SERVICE_UNAVAILABLE,
                "Not done",
                "The control plane could not record this; see its log.",
            )
        }
    }
}

#[expect(
    clippy::result_large_err,
    reason = "the refusal is the page to send; a cold path"
)]
fn parse_alert_id(raw: &str) -> Result<i64, Response> {
    raw.parse().map_err(|_| {
        notice(
            StatusCode::NOT_FOUND,
            "Not found",
            format!("No alert {raw:?}."),
        )
    })
}

async fn confirm_ack(
    State(cp): State<AppState>,
    headers: HeaderMap,
    Path(raw): Path<String>,
) -> Response {
    let Some((_, s)) = signed_in(&cp, &headers) else {
        return Redirect::to("/login").into_response();
    };
    let id = match parse_alert_id(&raw) {
        Ok(id) => id,
        Err(r) => return r,
    };
    let alert = match cp.run(move |core, _| core.alert_by_id(id)).await {
        Ok(a) => a,
        Err(e) => return core_error(e),
    };
    render(
        &Confirm {
            title: format!("Acknowledge alert {id} from {}?", alert.pop_id),
            consequences: vec![
                format!("\u{201c}{}: {}\u{201d}", alert.kind, alert.message),
                "It leaves the open alerts on this page and in GET /v1/alerts?open=true; it stays in the history.".to_owned(),
                "Nothing changes on the POP: acknowledging records that an operator has seen it.".to_owned(),
            ],
            action: format!("/alerts/{id}/ack"),
            button: "Acknowledge".to_owned(),
            csrf: s.csrf,
        },
        StatusCode::OK,
    )
}

async fn ack(
    State(cp): State<AppState>,
    uri: Uri,
    headers: HeaderMap,
    Path(raw): Path<String>,
    Form(form): Form<CsrfForm>,
) -> Response {
    if let Err(r) = checked_post(&cp, &headers, &uri, &form.csrf) {
        return r;
    }
    let id = match parse_alert_id(&raw) {
        Ok(id) => id,
        Err(r) => return r,
    };
    match cp.run(move |core, _| core.ack(id)).await {
        Ok(_) => Redirect::to("/").into_response(),
        Err(e) => core_error(e),
    }
}

fn asset(body: &'static str, content_type: &'static str) -> Response {
    let mut res = body.into_response();
    let h = res.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("max-age=300"),
    );
    res
}

async fn script() -> Response {
    asset(SCRIPT, "text/javascript; charset=utf-8")
}

async fn style() -> Response {
    asset(STYLE, "text/css; charset=utf-8")
}
