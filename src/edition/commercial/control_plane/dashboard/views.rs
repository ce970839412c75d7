//! The dashboard's pages as askama templates (`templates/control_plane/`), and the plain data
//! they show: every value is formatted here, escaped by the template.

use super::super::core::{FailoverView, PopView};
use super::super::failover::Role;
use super::super::store::{AlertRow, Sample};
use askama::Template;

/// The hours of history a chart shows.
pub const CHART_HOURS: i64 = 6;
const CHART_W: f64 = 300.0;
const CHART_H: f64 = 60.0;

#[derive(Template)]
#[template(path = "control_plane/login.html")]
pub struct Login {
    pub error: Option<String>,
}

#[derive(Template)]
#[template(path = "control_plane/dashboard.html")]
pub struct Dashboard {
    pub csrf: String,
    pub refresh_ms: u64,
    /// The live part, rendered by [`Live`].
    pub live: String,
}

#[derive(Template)]
#[template(path = "control_plane/live.html")]
pub struct Live {
    pub failover: FailoverLine,
    pub cards: Vec<Card>,
    pub alerts: Vec<AlertItem>,
}

/// A page asking to confirm an action, saying what it will do.
#[derive(Template)]
#[template(path = "control_plane/confirm.html")]
pub struct Confirm {
    pub title: String,
    pub consequences: Vec<String>,
    pub action: String,
    pub button: String,
    pub csrf: String,
}

/// An outcome or a refusal, with a way back.
#[derive(Template)]
#[template(path = "control_plane/notice.html")]
pub struct Notice {
    pub title: String,
    pub message: String,
}

pub struct FailoverLine {
    pub mode: &'static str,
    pub epoch: u64,
    pub primary: String,
    pub promotion: Option<String>,
    pub lease: String,
}

pub struct Card {
    pub id: String,
    pub region: String,
    pub role: &'static str,
    pub epoch: u64,
    /// `ok`, `stale` or `unknown`: the CSS class of the health badge.
    pub health: &'static str,
    pub health_text: String,
    pub last_heartbeat: String,
    pub version: String,
    pub uptime: String,
    pub backlog: String,
    pub lag: String,
    pub watermark: String,
    pub behind: Option<String>,
    pub open_alerts: i64,
    pub tarpit_held: String,
    pub note: Option<String>,
    pub can_promote: bool,
    pub chart: Chart,
}

pub struct Chart {
    pub backlog_points: String,
    pub lag_points: String,
    pub behind_points: String,
    pub max_backlog: i64,
    pub max_lag_ms: i64,
    pub max_behind: i64,
    pub hours: i64,
    pub empty: bool,
}

pub struct AlertItem {
    pub id: i64,
    pub pop: String,
    pub kind: String,
    pub message: String,
    pub when: String,
}

fn or_dash<T: std::fmt::Display>(v: Option<T>) -> String {
    v.map_or_else(|| "—".to_owned(), |v| v.to_string())
}

/// `12 s ago`, `3 min ago`, `2 h ago`.
pub fn ago(then_ms: i64, now_ms: i64) -> String {
    let s = ((now_ms - then_ms).max(0)) / 1000;
    match s {
        0..60 => format!("{s} s ago"),
        60..7200 => format!("{} min ago", s / 60),
        _ => format!("{} h ago", s / 3600),
    }
}

fn duration(secs: i64) -> String {
    match secs {
        ..0 => "—".to_owned(),
        0..120 => format!("{secs} s"),
        120..7200 => format!("{} min", secs / 60),
        7200..172_800 => format!("{} h", secs / 3600),
        _ => format!("{} d", secs / 86_400),
    }
}

pub fn failover_line(f: &FailoverView) -> FailoverLine {
    FailoverLine {
        mode: f.mode.as_str(),
        epoch: f.epoch,
        primary: f.primary.clone().unwrap_or_else(|| "none".to_owned()),
        promotion: f.promotion.as_ref().map(|p| {
            format!(
                "promoting {} to primary at epoch {}: waiting for {} to step down (or for its lease to run out)",
                p.to,
                p.epoch,
                p.from.as_deref().unwrap_or("no one")
            )
        }),
        lease: if f.lease_ms == 0 {
            "no lease".to_owned()
        } else {
            format!("{} s lease", f.lease_ms / 1000)
        },
    }
}

pub fn card(p: &PopView, samples: &[Sample], promotion_pending: bool, now_ms: i64) -> Card {
    let s = &p.state;
    let r = &p.replication;
    let (health, health_text) = match (p.last_heartbeat_ms, s.stale) {
        (None, _) => ("unknown", "never heard from".to_owned()),
        (Some(_), true) => ("stale", "STALE: heartbeats stopped".to_owned()),
        (Some(_), false) => ("ok", "healthy".to_owned()),
    };
    let note = if s.promoting {
        Some("being promoted: becomes primary once the old primary steps down".to_owned())
    } else if s.demoting {
        Some("told to step down; not yet acknowledged".to_owned())
    } else {
        None
    };
    Card {
        id: p.id.clone(),
        region: p.region.clone().unwrap_or_else(|| "—".to_owned()),
        role: s.role.as_str(),
        epoch: s.epoch,
        health,
        health_text,
        last_heartbeat: p
            .last_heartbeat_ms
            .map_or_else(|| "never".to_owned(), |t| ago(t, now_ms)),
        version: or_dash(p.version.as_deref()),
        uptime: p.uptime_seconds.map_or_else(|| "—".to_owned(), duration),
        backlog: or_dash(r.backlog),
        lag: match (r.lag_p50_ms, r.lag_p99_ms) {
            (None, None) => "—".to_owned(),
            (a, b) => format!("p50 {} ms, p99 {} ms", or_dash(a), or_dash(b)),
        },
        watermark: match s.role {
            Role::Primary => format!("acknowledged up to v{}", or_dash(r.acked_watermark)),
            Role::Backup => format!("applied up to v{}", or_dash(r.applied_watermark)),
        },
        behind: s.behind.map(|n| {
            format!(
                "{n} version{} behind the primary",
                if n == 1 { "" } else { "s" }
            )
        }),
        open_alerts: p.open_alerts,
        tarpit_held: or_dash(p.tarpit_held),
        note,
        can_promote: s.role == Role::Backup && !promotion_pending,
        chart: chart(samples, now_ms),
    }
}

/// Polylines of backlog, p99 lag and versions behind over the last [`CHART_HOURS`], each scaled to its own max.
pub fn chart(samples: &[Sample], now_ms: i64) -> Chart {
    let window = CHART_HOURS * 3600 * 1000;
    let start = now_ms - window;
    let pick = |f: fn(&Sample) -> Option<i64>| -> Vec<(i64, i64)> {
        samples
            .iter()
            .filter(|s| s.at_ms >= start)
            .filter_map(|s| f(s).map(|v| (s.at_ms, v.max(0))))
            .collect()
    };
    let backlog = pick(|s| s.backlog);
    let lag = pick(|s| s.lag_p99_ms);
    let behind = pick(|s| s.behind);
    let line = |pts: &[(i64, i64)]| -> (String, i64) {
        let max = pts.iter().map(|p| p.1).max().unwrap_or(0);
        let scale = if max == 0 { 1.0 } else { max as f64 };
        let text = pts
            .iter()
            .map(|(t, v)| {
                let x = (t - start) as f64 / window as f64 * CHART_W;
                let y = CHART_H - (*v as f64 / scale) * (CHART_H - 2.0) - 1.0;
                format!("{x:.1},{y:.1}")
            })
            .collect::<Vec<_>>()
            .join(" ");
        (text, max)
    };
    let (backlog_points, max_backlog) = line(&backlog);
    let (lag_points, max_lag_ms) = line(&lag);
    let (behind_points, max_behind) = line(&behind);
    Chart {
        empty: backlog.is_empty() && lag.is_empty() && behind.is_empty(),
        backlog_points,
        lag_points,
        behind_points,
        max_backlog,
        max_lag_ms,
        max_behind,
        hours: CHART_HOURS,
    }
}

pub fn alert_item(a: &AlertRow, now_ms: i64) -> AlertItem {
    AlertItem {
        id: a.id,
        pop: a.pop_id.clone(),
        kind: a.kind.clone(),
        message: a.message.clone(),
        when: ago(a.received_ms, now_ms),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_chart_scales_each_line_to_its_maximum_within_the_window() {
        let now = 10 * 3600 * 1000;
        let at = |h_ago: i64, backlog| Sample {
            at_ms: now - h_ago * 3600 * 1000,
            backlog: Some(backlog),
            ..Sample::default()
        };
        let c = chart(&[at(8, 999), at(6, 10), at(0, 5)], now);
        assert_eq!(
            c.max_backlog, 10,
            "the 8 h old sample is outside the window"
        );
        assert_eq!(c.backlog_points, "0.0,1.0 300.0,30.0");
        assert!(c.lag_points.is_empty() && !c.empty);
    }

    #[test]
    fn pages_escape_what_pops_send() {
        let html = Notice {
            title: "t".into(),
            message: "<script>alert(1)</script>".into(),
        }
        .render()
        .unwrap();
        assert!(!html.contains("<script>alert"), "{html}");
        assert!(
            html.contains("&#60;script&#62;") || html.contains("&lt;script&gt;"),
            "{html}"
        );
    }
}
