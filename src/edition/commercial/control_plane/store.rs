//! The control plane's own SQLite file, `control.db` in `data_dir` (WAL, synchronous=FULL: a
//! write is on disk when the call returns). It holds the POPs' latest reports, a bounded history
//! of heartbeat samples for the charts, telemetry, alerts with their acknowledgement, and the
//! durable failover state. SQL only; callers hold it behind one mutex.

use super::failover::{Durable, Promotion};
use crate::files;
use rusqlite::{Connection, OptionalExtension, params};
use serde_json::Value;
use std::collections::HashMap;
use std::path::Path;

pub const FILE: &str = "control.db";
/// Held (`flock`) while a control plane runs on the data dir: two would each think they decide.
pub const LOCK: &str = "control.lock";
/// How long heartbeat samples and telemetry are kept.
pub const HISTORY_MS: i64 = 24 * 3600 * 1000;
/// Acknowledged alerts are dropped after this long.
const ACKED_ALERTS_KEPT_MS: i64 = 30 * 24 * 3600 * 1000;
/// Alerts kept per POP at most (the oldest go first): a POP in a loop cannot fill the disk.
const ALERTS_PER_POP: i64 = 10_000;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{path}: {message}")]
    Open { path: String, message: String },
    #[error(transparent)]
    Dir(#[from] files::Error),
    #[error("control-plane database: {0}")]
    Sql(#[from] rusqlite::Error),
    #[error(
        "{path} is in use by another control plane{holder}. Fix: stop it, or give this one its own data_dir"
    )]
    Locked { path: String, holder: String },
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS failover (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    epoch INTEGER NOT NULL,
    primary_pop TEXT,
    promo_from TEXT,
    promo_to TEXT,
    promo_epoch INTEGER,
    changed_ms INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS pops (
    id TEXT PRIMARY KEY,
    region TEXT,
    version TEXT,
    uptime_seconds INTEGER,
    reported_role TEXT,
    reported_epoch INTEGER,
    last_heartbeat_ms INTEGER,
    replication TEXT,
    tarpit_held INTEGER,
    entries INTEGER,
    last_telemetry_ms INTEGER
);
CREATE TABLE IF NOT EXISTS samples (
    pop_id TEXT NOT NULL,
    at_ms INTEGER NOT NULL,
    backlog INTEGER,
    lag_p50_ms INTEGER,
    lag_p99_ms INTEGER,
    committed INTEGER,
    watermark INTEGER,
    behind INTEGER
);
CREATE INDEX IF NOT EXISTS samples_by_pop ON samples (pop_id, at_ms);
CREATE TABLE IF NOT EXISTS telemetry (
    pop_id TEXT NOT NULL,
    at_ms INTEGER NOT NULL,
    body TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS telemetry_by_pop ON telemetry (pop_id, at_ms);
CREATE TABLE IF NOT EXISTS alerts (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    pop_id TEXT NOT NULL,
    type TEXT NOT NULL,
    message TEXT NOT NULL,
    details TEXT NOT NULL,
    pop_time TEXT,
    received_ms INTEGER NOT NULL,
    acked_ms INTEGER
);
CREATE INDEX IF NOT EXISTS alerts_by_pop ON alerts (pop_id, id);
";

/// What a heartbeat or telemetry report says about its POP.
#[derive(Debug, Clone, Default)]
pub struct Report {
    pub region: Option<String>,
    pub version: Option<String>,
    pub uptime_seconds: Option<i64>,
    pub role: Option<String>,
    pub epoch: Option<i64>,
    /// The `replication` object as sent.
    pub replication: Value,
}

/// One point of a POP's chart.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Sample {
    pub at_ms: i64,
    pub backlog: Option<i64>,
    pub lag_p50_ms: Option<i64>,
    pub lag_p99_ms: Option<i64>,
    pub committed: Option<i64>,
    pub watermark: Option<i64>,
    /// A backup's versions behind the primary, as known when the sample was taken.
    pub behind: Option<i64>,
}

/// The latest of what a POP reported.
#[derive(Debug, Clone, Default)]
pub struct PopRow {
    pub id: String,
    pub region: Option<String>,
    pub version: Option<String>,
    pub uptime_seconds: Option<i64>,
    pub reported_role: Option<String>,
    pub reported_epoch: Option<i64>,
    pub last_heartbeat_ms: Option<i64>,
    pub replication: Value,
    pub tarpit_held: Option<i64>,
    pub entries: Option<i64>,
}

#[derive(Debug, Clone)]
pub struct NewAlert {
    pub pop_id: String,
    pub kind: String,
    pub message: String,
    pub details: Value,
    pub pop_time: Option<String>,
}

#[derive(Debug, Clone)]
pub struct AlertRow {
    pub id: i64,
    pub pop_id: String,
    pub kind: String,
    pub message: String,
    pub details: Value,
    pub pop_time: Option<String>,
    pub received_ms: i64,
    pub acked_ms: Option<i64>,
}

#[derive(Debug, Clone, Default)]
pub struct AlertFilter {
    pub pop: Option<String>,
    pub kind: Option<String>,
    pub open_only: bool,
    pub limit: u32,
}

pub struct Store {
    conn: Connection,
    /// The data dir's lock, released when the store is dropped (or the process ends).
    _lock: std::fs::File,
    /// [`ALERTS_PER_POP`]; smaller in tests.
    alert_cap: i64,
}

/// Takes `dir/control.lock` exclusively and writes this process's pid into it.
fn lock(dir: &Path) -> Result<std::fs::File, Error> {
    let path = dir.join(LOCK);
    files::lock_with_pid(&path).map_err(|e| match e {
        files::LockError::Held { pid } => Error::Locked {
            path: dir.display().to_string(),
            holder: pid.map(|p| format!(" (pid {p})")).unwrap_or_default(),
        },
        files::LockError::Io(e) => Error::Open {
            path: path.display().to_string(),
            message: e.to_string(),
        },
    })
}

fn json_text(v: &Value) -> String {
    v.to_string()
}

fn parse_json(s: Option<String>) -> Value {
    s.and_then(|s| serde_json::from_str(&s).ok())
        .unwrap_or(Value::Null)
}

impl Store {
    /// Opens (creating) `dir/control.db`; `dir` is created 0700 when missing.
    pub fn open(dir: &Path) -> Result<Self, Error> {
        files::ensure_private_dir(dir)?;
        let lock = lock(dir)?;
        let path = dir.join(FILE);
        let conn = Connection::open(&path).map_err(|e| Error::Open {
            path: path.display().to_string(),
            message: format!("cannot open the database: {e}"),
        })?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        conn.execute_batch(SCHEMA)?;
        Ok(Self {
            conn,
            _lock: lock,
            alert_cap: ALERTS_PER_POP,
        })
    }

    pub fn load_durable(&self) -> Result<Durable, Error> {
        let row = self
            .conn
            .query_row(
                "SELECT epoch, primary_pop, promo_from, promo_to, promo_epoch FROM failover WHERE id = 1",
                [],
                |r| {
                    Ok((
                        r.get::<_, i64>(0)?,
                        r.get::<_, Option<String>>(1)?,
                        r.get::<_, Option<String>>(2)?,
                        r.get::<_, Option<String>>(3)?,
                        r.get::<_, Option<i64>>(4)?,
                    ))
                },
            )
            .optional()?;
        Ok(match row {
            None => Durable::default(),
            Some((epoch, primary, from, to, pepoch)) => Durable {
                epoch: epoch.max(0) as u64,
                primary,
                promotion: to.map(|to| Promotion {
                    from,
                    to,
                    epoch: pepoch.unwrap_or(epoch).max(0) as u64,
                }),
            },
        })
    }

    fn save_durable_in(tx: &Connection, d: &Durable, now_ms: i64) -> Result<(), Error> {
        let p = d.promotion.as_ref();
        tx.execute(
            "INSERT INTO failover (id, epoch, primary_pop, promo_from, promo_to, promo_epoch, changed_ms)
             VALUES (1, ?1, ?2, ?3, ?4, ?5, ?6)
             ON CONFLICT (id) DO UPDATE SET epoch = ?1, primary_pop = ?2, promo_from = ?3,
                 promo_to = ?4, promo_epoch = ?5, changed_ms = ?6",
            params![
                d.epoch as i64,
                d.primary,
                p.and_then(|p| p.from.clone()),
                p.map(|p| p.to.clone()),
                p.map(|p| p.epoch as i64),
                now_ms
            ],
        )?;
        Ok(())
    }

    /// Saves the failover state (durably: synchronous=FULL).
    pub fn save_durable(&mut self, d: &Durable, now_ms: i64) -> Result<(), Error> {
        let tx = self.conn.transaction()?;
        Self::save_durable_in(&tx, d, now_ms)?;
        tx.commit()?;
        Ok(())
    }

    /// Records a heartbeat (latest report, one chart sample, old samples pruned) and, when the
    /// heartbeat changed it, the failover state, in one transaction.
    pub fn heartbeat(
        &mut self,
        pop: &str,
        report: &Report,
        sample: &Sample,
        durable: Option<&Durable>,
        now_ms: i64,
    ) -> Result<(), Error> {
        let tx = self.conn.transaction()?;
        tx.execute(
            "INSERT INTO pops (id, region, version, uptime_seconds, reported_role, reported_epoch,
                               last_heartbeat_ms, replication)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
             ON CONFLICT (id) DO UPDATE SET region = ?2, version = ?3, uptime_seconds = ?4,
                 reported_role = ?5, reported_epoch = ?6, last_heartbeat_ms = ?7, replication = ?8",
            params![
                pop,
                report.region,
                report.version,
                report.uptime_seconds,
                report.role,
                report.epoch,
                now_ms,
                json_text(&report.replication)
            ],
        )?;
        tx.execute(
            "INSERT INTO samples (pop_id, at_ms, backlog, lag_p50_ms, lag_p99_ms, committed, watermark, behind)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            params![
                pop,
                sample.at_ms,
                sample.backlog,
                sample.lag_p50_ms,
                sample.lag_p99_ms,
                sample.committed,
                sample.watermark,
                sample.behind
            ],
        )?;
        tx.execute(
            "DELETE FROM samples WHERE pop_id = ?1 AND at_ms < ?2",
            params![pop, now_ms - HISTORY_MS],
        )?;
        if let Some(d) = durable {
            Self::save_durable_in(&tx, d, now_ms)?;
        }
        tx.commit()?;
        Ok(())
    }

    /// Records a telemetry report: the body (pruned after a day) and its headline numbers.
    pub fn telemetry(
        &mut self,
        pop: &str,
        body: &Value,
        tarpit_held: Option<i64>,
        entries: Option<i64>,
        now_ms: i64,
    ) -> Result<(), Error> {
        let tx = self.conn.transaction()?;
        tx.execute(
            "INSERT INTO pops (id, tarpit_held, entries, last_telemetry_ms) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (id) DO UPDATE SET tarpit_held = ?2, entries = ?3, last_telemetry_ms = ?4",
            params![pop, tarpit_held, entries, now_ms],
        )?;
        tx.execute(
            "INSERT INTO telemetry (pop_id, at_ms, body) VALUES (?1, ?2, ?3)",
            params![pop, now_ms, json_text(body)],
        )?;
        tx.execute(
            "DELETE FROM telemetry WHERE pop_id = ?1 AND at_ms < ?2",
            params![pop, now_ms - HISTORY_MS],
        )?;
        tx.commit()?;
        Ok(())
    }

    pub fn add_alert(&mut self, a: &NewAlert, now_ms: i64) -> Result<i64, Error> {
        let tx = self.conn.transaction()?;
        tx.execute(
            "INSERT INTO alerts (pop_id, type, message, details, pop_time, received_ms)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![
                a.pop_id,
                a.kind,
                a.message,
                json_text(&a.details),
                a.pop_time,
                now_ms
            ],
        )?;
        let id = tx.last_insert_rowid();
        tx.execute(
            "DELETE FROM alerts WHERE acked_ms IS NOT NULL AND acked_ms < ?1",
            params![now_ms - ACKED_ALERTS_KEPT_MS],
        )?;
        tx.execute(
            "DELETE FROM alerts WHERE pop_id = ?1 AND id <= (
                 SELECT id FROM alerts WHERE pop_id = ?1 ORDER BY id DESC LIMIT 1 OFFSET ?2)",
            params![a.pop_id, self.alert_cap],
        )?;
        tx.commit()?;
        Ok(id)
    }

    /// Marks an alert acknowledged (once; a repeat keeps the first time). `None`: no such alert.
    pub fn ack_alert(&mut self, id: i64, now_ms: i64) -> Result<Option<AlertRow>, Error> {
        self.conn.execute(
            "UPDATE alerts SET acked_ms = ?2 WHERE id = ?1 AND acked_ms IS NULL",
            params![id, now_ms],
        )?;
        self.alert(id)
    }

    pub fn alert(&self, id: i64) -> Result<Option<AlertRow>, Error> {
        Ok(self
            .conn
            .query_row(
                "SELECT id, pop_id, type, message, details, pop_time, received_ms, acked_ms
                 FROM alerts WHERE id = ?1",
                params![id],
                alert_row,
            )
            .optional()?)
    }

    /// Alerts matching `f`, newest first.
    pub fn alerts(&self, f: &AlertFilter) -> Result<Vec<AlertRow>, Error> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT id, pop_id, type, message, details, pop_time, received_ms, acked_ms FROM alerts
             WHERE (?1 IS NULL OR pop_id = ?1) AND (?2 IS NULL OR type = ?2)
               AND (?3 = 0 OR acked_ms IS NULL)
             ORDER BY id DESC LIMIT ?4",
        )?;
        let rows = stmt.query_map(
            params![f.pop, f.kind, i64::from(f.open_only), i64::from(f.limit)],
            alert_row,
        )?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    pub fn open_alert_counts(&self) -> Result<HashMap<String, i64>, Error> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT pop_id, COUNT(*) FROM alerts WHERE acked_ms IS NULL GROUP BY pop_id",
        )?;
        let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    pub fn pop_rows(&self) -> Result<Vec<PopRow>, Error> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT id, region, version, uptime_seconds, reported_role, reported_epoch,
                    last_heartbeat_ms, replication, tarpit_held, entries FROM pops ORDER BY id",
        )?;
        let rows = stmt.query_map([], |r| {
            Ok(PopRow {
                id: r.get(0)?,
                region: r.get(1)?,
                version: r.get(2)?,
                uptime_seconds: r.get(3)?,
                reported_role: r.get(4)?,
                reported_epoch: r.get(5)?,
                last_heartbeat_ms: r.get(6)?,
                replication: parse_json(r.get(7)?),
                tarpit_held: r.get(8)?,
                entries: r.get(9)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// A POP's chart samples since `since_ms`, oldest first.
    pub fn samples(&self, pop: &str, since_ms: i64) -> Result<Vec<Sample>, Error> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT at_ms, backlog, lag_p50_ms, lag_p99_ms, committed, watermark, behind FROM samples
             WHERE pop_id = ?1 AND at_ms >= ?2 ORDER BY at_ms",
        )?;
        let rows = stmt.query_map(params![pop, since_ms], |r| {
            Ok(Sample {
                at_ms: r.get(0)?,
                backlog: r.get(1)?,
                lag_p50_ms: r.get(2)?,
                lag_p99_ms: r.get(3)?,
                committed: r.get(4)?,
                watermark: r.get(5)?,
                behind: r.get(6)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }
}

fn alert_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<AlertRow> {
    Ok(AlertRow {
        id: r.get(0)?,
        pop_id: r.get(1)?,
        kind: r.get(2)?,
        message: r.get(3)?,
        details: parse_json(r.get(4)?),
        pop_time: r.get(5)?,
        received_ms: r.get(6)?,
        acked_ms: r.get(7)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn alert(pop: &str, n: usize) -> NewAlert {
        NewAlert {
            pop_id: pop.to_owned(),
            kind: "k".to_owned(),
            message: format!("m{n}"),
            details: json!({}),
            pop_time: None,
        }
    }

    #[test]
    fn what_is_saved_is_there_after_reopening_and_histories_are_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let d = Durable {
            epoch: 3,
            primary: None,
            promotion: Some(Promotion {
                from: Some("a".into()),
                to: "b".into(),
                epoch: 3,
            }),
        };
        {
            let mut s = Store::open(dir.path()).unwrap();
            assert!(matches!(Store::open(dir.path()), Err(Error::Locked { .. })));
            let old = Sample {
                at_ms: 0,
                backlog: Some(9),
                ..Sample::default()
            };
            s.heartbeat("a", &Report::default(), &old, None, 0).unwrap();
            let new = Sample {
                at_ms: HISTORY_MS + 5,
                backlog: Some(1),
                ..Sample::default()
            };
            s.heartbeat("a", &Report::default(), &new, Some(&d), HISTORY_MS + 5)
                .unwrap();
            s.alert_cap = 5;
            for n in 0..8 {
                s.add_alert(&alert("a", n), 1).unwrap();
            }
            s.add_alert(&alert("b", 0), 1).unwrap();
        }
        let s = Store::open(dir.path()).unwrap();
        assert_eq!(s.load_durable().unwrap(), d);
        let samples = s.samples("a", 0).unwrap();
        assert_eq!(
            samples.iter().map(|x| x.backlog).collect::<Vec<_>>(),
            [Some(1)]
        );
        let counts = s.open_alert_counts().unwrap();
        assert_eq!(counts["a"], 5);
        assert_eq!(counts["b"], 1);
        let newest = s
            .alerts(&AlertFilter {
                pop: Some("a".into()),
                limit: 1,
                ..AlertFilter::default()
            })
            .unwrap();
        assert_eq!(newest[0].message, "m7");
    }
}
