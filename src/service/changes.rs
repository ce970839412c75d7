//! The change feed behind `GET /v1/changes?since=VERSION&wait=S`: which entries the caller can
//! see changed after a version, answered at once or when the next such change commits (a long
//! poll). `clavitor run --watch` uses it to restart its child when a value changes.
//!
//! Cost: waiting callers hold no database resource; they sleep on the store's commit watch
//! channel. After a commit, the first waiter to wake reads the entries changed since the feed
//! last looked (one indexed query, `entries.version`) into a bounded in-memory log; every other
//! waiter then filters that log by its own scopes in memory. So a thousand watching agents cost
//! one query per commit, not a thousand, and nothing at all while nothing is written. With no
//! watcher the feed does no work.
//!
//! Limits: the log keeps the last [`LOG_CAPACITY`] changes; a caller further behind is told to
//! reset (re-read what it watches). Versions come from this POP's sequence: on a Commercial
//! backup, replicated rows may arrive with versions below ones already seen, and such a change
//! can be missed until the next one to the same entry.

use super::{Caller, Error, Vault};
use crate::store::{self, Store};
use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Mutex;
use tokio::time::Instant;

/// Changes kept in memory.
pub const LOG_CAPACITY: usize = 10_000;
/// The longest a caller may wait (under the server's 30 s request timeout).
pub const MAX_WAIT: Duration = Duration::from_secs(25);

/// What a caller is told.
#[derive(Debug)]
pub struct Changes {
    /// Pass this as `since` next time.
    pub version: i64,
    /// Entries (ids) the caller can see that changed after `since` (created, updated, deleted).
    pub entries: Vec<String>,
    /// `since` is older than the feed remembers: re-read whatever is watched.
    pub reset: bool,
}

struct Change {
    version: i64,
    entry: String,
    /// The entry's field scopes before and after the change (`None`: a field without scope).
    scopes: Arc<[Option<String>]>,
}

#[derive(Default)]
struct State {
    loaded: bool,
    /// The store generation this state reflects.
    generation: u64,
    /// The highest entry version seen.
    cursor: i64,
    /// Changes at or below this version are no longer in `log`.
    floor: i64,
    /// Live entries' field scopes, to know who could see an entry that was deleted.
    scopes: HashMap<String, Arc<[Option<String>]>>,
    log: VecDeque<Change>,
}

#[derive(Default)]
pub struct ChangeFeed {
    state: Mutex<State>,
}

/// Rows read from the database: (id, version, deleted, field scope); one row per field.
type Row = (String, i64, bool, Option<Option<String>>);

fn changed_since(conn: &rusqlite::Connection, after: i64) -> Result<Vec<Row>, store::Error> {
    let mut stmt = conn.prepare_cached(
        "SELECT e.id, e.version, e.deleted, f.name IS NOT NULL, f.scope
         FROM entries e LEFT JOIN fields f ON f.entry_id = e.id
         WHERE e.version > ?1 ORDER BY e.version",
    )?;
    let rows = stmt.query_map([after], |r| {
        let has_field: bool = r.get(3)?;
        let scope: Option<String> = r.get(4)?;
        Ok((r.get(0)?, r.get(1)?, r.get(2)?, has_field.then_some(scope)))
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Groups per-field rows by entry: (id, version, deleted, scopes), in version order.
fn group(rows: Vec<Row>) -> Vec<(String, i64, bool, Vec<Option<String>>)> {
    let mut out: Vec<(String, i64, bool, Vec<Option<String>>)> = Vec::new();
    for (id, version, deleted, scope) in rows {
        match out.last_mut() {
            Some(last) if last.0 == id && last.1 == version => last.3.extend(scope),
            _ => out.push((id, version, deleted, scope.into_iter().collect())),
        }
    }
    out
}

impl ChangeFeed {
    /// Brings the log up to the store's latest commit (at most one query, whoever calls).
    async fn catch_up(&self, store: &Store) -> Result<tokio::sync::MutexGuard<'_, State>, Error> {
        let mut s = self.state.lock().await;
        let generation = store.generation();
        if s.loaded && s.generation == generation {
            return Ok(s);
        }
        let after = if s.loaded { s.cursor } else { -1 };
        let rows = store
            .read(move |c| store::snapshot(c, |c| changed_since(c, after)))
            .await?;
        let first_load = !s.loaded;
        for (id, version, deleted, scopes) in group(rows) {
            let before = s.scopes.get(&id).cloned();
            let now: Arc<[Option<String>]> = scopes.into();
            let mut both: Vec<Option<String>> = now.to_vec();
            if let Some(b) = &before {
                both.extend(b.iter().cloned());
            }
            if deleted {
                s.scopes.remove(&id);
            } else {
                s.scopes.insert(id.clone(), now);
            }
            s.cursor = s.cursor.max(version);
            if !first_load {
                s.log.push_back(Change {
                    version,
                    entry: id,
                    scopes: both.into(),
                });
                if s.log.len() > LOG_CAPACITY
                    && let Some(old) = s.log.pop_front()
                {
                    s.floor = s.floor.max(old.version);
                }
            }
        }
        if first_load {
            s.floor = s.cursor;
            s.loaded = true;
        }
        s.generation = generation;
        Ok(s)
    }
}

fn visible(caller: &Caller, scopes: &[Option<String>]) -> bool {
    let p = &caller.principal;
    p.is_owner || scopes.iter().any(|s| p.may_read_scope(s.as_deref()))
}

impl Vault {
    /// The entries `caller` can see that changed after `since`, waiting up to `wait` for one.
    /// Without `since`: the current version, at once.
    pub async fn changes(
        &self,
        caller: &Caller,
        since: Option<i64>,
        wait: Duration,
    ) -> Result<Changes, Error> {
        // Subscribed before looking, so a commit between the look and the wait still wakes it.
        let mut commits = self.store().subscribe_commits();
        let deadline = Instant::now() + wait.min(MAX_WAIT);
        loop {
            let answer = {
                let s = self.changes.catch_up(self.store()).await?;
                match since {
                    None => Some(Changes {
                        version: s.cursor,
                        entries: Vec::new(),
                        reset: false,
                    }),
                    Some(v) if v < s.floor || v > s.cursor => Some(Changes {
                        version: s.cursor,
                        entries: Vec::new(),
                        reset: true,
                    }),
                    Some(v) => {
                        let mut seen = HashSet::new();
                        let entries: Vec<String> = s
                            .log
                            .iter()
                            .rev()
                            .take_while(|c| c.version > v)
                            .filter(|c| visible(caller, &c.scopes))
                            .filter(|c| seen.insert(c.entry.clone()))
                            .map(|c| c.entry.clone())
                            .collect();
                        (!entries.is_empty() || Instant::now() >= deadline).then(|| Changes {
                            version: s.cursor,
                            entries,
                            reset: false,
                        })
                    }
                }
            };
            if let Some(a) = answer {
                return Ok(a);
            }
            tokio::select! {
                changed = commits.changed() => {
                    if changed.is_err() {
                        return Err(store::Error::Closed.into());
                    }
                }
                () = tokio::time::sleep_until(deadline) => {}
            }
        }
    }
}
