//! One sink's delivery loop: from its durable cursor, in seq order, woken by commits; a sink
//! that fails is retried with a bounded backoff and never waits on (or slows) a request.

use super::config::{Sink, Target};
use super::cursor::{self, Cursor};
use super::format::{encode, syslog_frame};
use super::transport::{Http, Syslog};
use super::{Shared, SinkStatus};
use crate::store::{self, now_ms};
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// Events written to a syslog connection count as delivered once the connection was still
/// open this long after the write (syslog has no acknowledgement; see `Syslog::alive`).
const CONFIRM_AFTER: Duration = Duration::from_millis(250);
/// Read-only requests append audit events without a data commit, which wakes nothing: look
/// at least this often.
const TICK: Duration = Duration::from_secs(1);
const FIRST_RETRY: Duration = Duration::from_millis(100);

enum Conn {
    None,
    Syslog(Box<Syslog>),
    Http(Http),
}

struct Run {
    shared: Arc<Shared>,
    sink: Sink,
    status: Arc<SinkStatus>,
    conn: Conn,
    /// What the database says was acknowledged.
    cursor: Cursor,
    /// The last seq written to the sink (ahead of `cursor` while syslog writes await
    /// confirmation).
    sent: i64,
    /// Syslog writes not yet confirmed: `(last seq of the write, events, when)`.
    pending: VecDeque<(i64, i64, Instant)>,
}

pub async fn run(
    shared: Arc<Shared>,
    sink: Sink,
    status: Arc<SinkStatus>,
    stop: CancellationToken,
) {
    let mut commits = shared.store.subscribe_commits();
    let name = sink.name.clone();
    let loaded = {
        let name = name.clone();
        shared.store.read(move |c| cursor::load(c, &name)).await
    };
    let cursor = match loaded {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(sink = %name, error = %e, "cannot read the sink's cursor; not streaming to it");
            return;
        }
    };
    status.set_cursor(cursor);
    let mut run = Run {
        shared,
        sink,
        status,
        conn: Conn::None,
        cursor,
        sent: cursor.acked_seq,
        pending: VecDeque::new(),
    };
    let mut failures: u32 = 0;
    let mut alerted = false;
    let mut backoff = FIRST_RETRY;
    let mut backlog_alerted = false;
    loop {
        let outcome = tokio::select! {
            r = run.deliver() => r,
            () = stop.cancelled() => return,
        };
        let failing = match outcome {
            Ok(()) => {
                if alerted {
                    tracing::info!(sink = %name, "audit stream to the sink recovered");
                }
                failures = 0;
                alerted = false;
                backoff = FIRST_RETRY;
                run.status.ok();
                false
            }
            Err(e) => {
                failures = failures.saturating_add(1);
                run.rewind();
                run.conn = Conn::None;
                run.status.failed(e.clone());
                tracing::warn!(sink = %name, attempt = failures, error = %e, "audit events not delivered to the sink; retrying");
                if failures > run.sink.max_retries && !alerted {
                    alerted = true;
                    run.shared.alert(
                        "siem_failed",
                        &format!("audit events cannot be delivered to sink {name:?}; they are kept and retried: {e}"),
                        serde_json::json!({ "sink": name, "error": e, "attempts": failures }),
                    );
                }
                true
            }
        };
        // The backlog, after this round; undelivered events keep the database growing.
        let backlog = {
            let n = name.clone();
            run.shared
                .store
                .read(move |c| cursor::backlog(c, &n))
                .await
                .unwrap_or(0)
        };
        run.status.set_backlog(backlog);
        let limit = run.shared.backlog_alert;
        if backlog as u64 > limit && !backlog_alerted {
            backlog_alerted = true;
            run.shared.alert(
                "siem_backlog",
                &format!("{backlog} audit events wait for sink {name:?} (threshold {limit}); they are kept in the database until delivered"),
                serde_json::json!({ "sink": name, "backlog": backlog, "threshold": limit }),
            );
        } else if (backlog as u64) <= limit / 2 {
            backlog_alerted = false;
        }
        if failing {
            let jitter =
                Duration::from_millis(rand::random_range(0..=backoff.as_millis() as u64 / 4));
            tokio::select! {
                () = tokio::time::sleep(backoff + jitter) => {}
                () = stop.cancelled() => return,
            }
            backoff = (backoff * 2).min(run.sink.retry_max);
        } else {
            let confirm = !run.pending.is_empty();
            tokio::select! {
                r = commits.changed() => if r.is_err() { return },
                () = tokio::time::sleep(if confirm { CONFIRM_AFTER } else { TICK }) => {}
                () = stop.cancelled() => return,
            }
        }
    }
}

impl Run {
    /// Sends what the sink has not acknowledged, batch by batch, until nothing is left.
    async fn deliver(&mut self) -> Result<(), String> {
        loop {
            if matches!(self.conn, Conn::Syslog(_)) {
                self.confirm().await?;
            }
            let (after, limit) = (self.sent, self.sink.batch_size);
            let ((first, _), events) = self
                .shared
                .store
                .read(move |c| {
                    Ok::<_, store::Error>((cursor::bounds(c)?, cursor::after(c, after, limit)?))
                })
                .await
                .map_err(|e| e.to_string())?;
            if self.pending.is_empty() && first > self.cursor.acked_seq + 1 {
                self.skip_pruned(first).await?;
                continue;
            }
            let Some(last) = events.last().map(|e| e.seq) else {
                return Ok(());
            };
            let pop_id = self.shared.pop_id();
            let n = events.len() as i64;
            match self.sink.target {
                Target::Syslog { .. } => {
                    let mut frames = Vec::with_capacity(events.len() * 512);
                    for e in &events {
                        frames.extend(syslog_frame(
                            &pop_id,
                            e,
                            &encode(self.sink.format, &pop_id, e),
                        ));
                    }
                    if matches!(self.conn, Conn::None) {
                        self.conn = Conn::Syslog(Box::new(Syslog::connect(&self.sink).await?));
                    }
                    let Conn::Syslog(s) = &mut self.conn else {
                        unreachable!("connected above")
                    };
                    s.send(&frames).await?;
                    self.sent = last;
                    self.pending.push_back((last, n, Instant::now()));
                }
                Target::Http { .. } => {
                    let mut body = Vec::with_capacity(events.len() * 512);
                    for e in &events {
                        let line = encode(self.sink.format, &pop_id, e);
                        serde_json::to_writer(&mut body, &line).map_err(|e| e.to_string())?;
                        body.push(b'\n');
                    }
                    if matches!(self.conn, Conn::None) {
                        self.conn = Conn::Http(Http::build(&self.sink)?);
                    }
                    let Conn::Http(h) = &self.conn else {
                        unreachable!("built above")
                    };
                    h.send(&self.sink, body).await?;
                    self.sent = last;
                    self.acknowledge(last, n).await?;
                }
            }
        }
    }

    /// Syslog: writes that the connection outlived by `CONFIRM_AFTER` are delivered.
    async fn confirm(&mut self) -> Result<(), String> {
        let Conn::Syslog(s) = &mut self.conn else {
            return Ok(());
        };
        if !s.alive().await {
            if self.pending.is_empty() {
                // Closed while idle (collectors drop quiet connections): connect again.
                self.conn = Conn::None;
                return Ok(());
            }
            return Err(
                "the syslog collector closed the connection; unconfirmed events are sent again"
                    .into(),
            );
        }
        let mut upto = None;
        let mut count = 0;
        while let Some(&(seq, n, at)) = self.pending.front() {
            if at.elapsed() < CONFIRM_AFTER {
                break;
            }
            upto = Some(seq);
            count += n;
            self.pending.pop_front();
        }
        if let Some(seq) = upto {
            self.acknowledge(seq, count).await?;
        }
        Ok(())
    }

    async fn acknowledge(&mut self, seq: i64, n: i64) -> Result<(), String> {
        let mut next = self.cursor;
        next.acked_seq = seq;
        next.delivered += n;
        let name = self.sink.name.clone();
        self.shared
            .store
            .write(move |c| cursor::save(c, &name, next))
            .await
            .map_err(|e: store::Error| format!("cannot save the sink's cursor: {e}"))?;
        self.cursor = next;
        self.status.set_cursor(next);
        self.status.delivered_at(now_ms());
        Ok(())
    }

    /// After a failure, what was written but not acknowledged goes again (counted).
    fn rewind(&mut self) {
        let again = self.sent - self.cursor.acked_seq;
        if again > 0 {
            self.cursor.resent += again;
            self.status.set_cursor(self.cursor);
        }
        self.sent = self.cursor.acked_seq;
        self.pending.clear();
    }

    /// Retention deleted events this sink never had: say so once, count them, go on.
    async fn skip_pruned(&mut self, first: i64) -> Result<(), String> {
        let lost = first - 1 - self.cursor.acked_seq;
        let mut next = self.cursor;
        next.acked_seq = first - 1;
        next.skipped += lost;
        let name = self.sink.name.clone();
        self.shared
            .store
            .write(move |c| cursor::save(c, &name, next))
            .await
            .map_err(|e: store::Error| format!("cannot save the sink's cursor: {e}"))?;
        self.shared.alert(
            "siem_events_pruned",
            &format!(
                "{lost} audit events (seq {} to {}) were deleted by retention before sink {:?} received them; it continues from seq {first}",
                self.cursor.acked_seq + 1,
                first - 1,
                self.sink.name
            ),
            serde_json::json!({ "sink": self.sink.name, "skipped": lost, "resume_seq": first }),
        );
        self.cursor = next;
        self.sent = next.acked_seq;
        self.status.set_cursor(next);
        Ok(())
    }
}
