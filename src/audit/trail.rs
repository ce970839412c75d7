//! The running trail: events that describe no change (reads, denials, the server's own), and
//! whether the trail can be written at all.
//!
//! Read events go to the store's writer without waiting for their commit (it commits at once
//! when work is queued, so within one fsync); with `serve --audit-sync` the read waits for it.
//!
//! Failed authentications and denials are not written one per request: an address sending
//! garbage must not be able to fill the disk (and so stop the vault, which fails closed). They
//! are counted in memory per (address, minute, action), at most [`MAX_KEYS_PER_MINUTE`]
//! addresses a minute (the rest are counted together), and written as one event each when the
//! minute is over. IPv6 addresses count by their /64, which one client usually holds whole.

use super::{Actor, Event, Outcome};
use crate::store::{self, Store};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::IpAddr;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

/// Distinct addresses counted on their own per minute and action; more are folded together.
pub const MAX_KEYS_PER_MINUTE: usize = 256;
/// Distinct actor ids kept per counted address (a denial by a valid token names it).
const MAX_ACTORS: usize = 8;
const MINUTE_MS: i64 = 60_000;

/// Why a request was refused, as counted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Denial {
    MissingToken,
    InvalidToken,
    TokenExpired,
    IpNotAllowed,
    RateLimited,
    /// An agent asked for an entry or field outside its scopes (or one that does not exist:
    /// it cannot tell, and neither does this count).
    NotReadable,
    /// A valid token asked for something its role may not do.
    Forbidden,
}

impl Denial {
    pub fn as_str(self) -> &'static str {
        match self {
            Denial::MissingToken => "missing_token",
            Denial::InvalidToken => "invalid_token",
            Denial::TokenExpired => "token_expired",
            Denial::IpNotAllowed => "ip_not_allowed",
            Denial::RateLimited => "rate_limited",
            Denial::NotReadable => "not_readable",
            Denial::Forbidden => "forbidden",
        }
    }

    /// `auth.failed`: no valid token. `access.denied`: a valid token, refused.
    fn action(self) -> &'static str {
        match self {
            Denial::MissingToken | Denial::InvalidToken | Denial::TokenExpired => "auth.failed",
            _ => "access.denied",
        }
    }
}

/// One (address, minute, action) being counted. `address` is `None` for the overflow bucket.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
struct Key {
    minute: i64,
    action: &'static str,
    address: Option<String>,
}

#[derive(Default, Debug)]
struct Counts {
    by_reason: BTreeMap<&'static str, u64>,
    actors: BTreeSet<String>,
}

#[derive(Default)]
struct Denials {
    counts: HashMap<Key, Counts>,
    /// Distinct addresses counted so far per (minute, action).
    keys: HashMap<(i64, &'static str), usize>,
}

pub struct Trail {
    store: Store,
    sync: AtomicBool,
    reads: AtomicBool,
    denials: Mutex<Denials>,
}

impl std::fmt::Debug for Trail {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Trail")
            .field("sync", &self.sync)
            .finish_non_exhaustive()
    }
}

/// The address as counted: an IPv4 (or IPv4-mapped) address whole, an IPv6 one by its /64.
fn address_key(ip: IpAddr) -> String {
    match ip.to_canonical() {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => {
            let s = v6.segments();
            let net = std::net::Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0);
            format!("{net}/64")
        }
    }
}

impl Trail {
    pub fn new(store: Store) -> Self {
        Self {
            store,
            sync: AtomicBool::new(false),
            reads: AtomicBool::new(true),
            denials: Mutex::default(),
        }
    }

    /// `sync`: reads wait for their event's commit. `reads`: whether reads are recorded at all
    /// (off only for the benchmark's reference run).
    pub fn configure(&self, sync: bool, reads: bool) {
        self.sync.store(sync, Ordering::Relaxed);
        self.reads.store(reads, Ordering::Relaxed);
    }

    /// Whether the trail can be written; while it cannot, requests are refused.
    pub fn available(&self) -> bool {
        self.store.audit_available()
    }

    /// Records a read: queued for the next group commit, or committed before this returns
    /// with `--audit-sync`. An error means the event is not on disk (and, with `--audit-sync`,
    /// the read must not be answered).
    pub async fn read(&self, event: Event) -> Result<(), store::Error> {
        if !self.reads.load(Ordering::Relaxed) {
            return Ok(());
        }
        self.store
            .audit(event.data(), self.sync.load(Ordering::Relaxed))
            .await
    }

    /// Records an event that describes no change of data (a reload, a recovery), waiting for
    /// its commit.
    pub async fn record_now(&self, event: Event) -> Result<(), store::Error> {
        self.store.audit(event.data(), true).await
    }

    /// Counts a refused request for the event of its address and minute.
    pub fn denied(&self, ip: IpAddr, why: Denial, actor: Option<&str>, now_ms: i64) {
        let minute = now_ms.div_euclid(MINUTE_MS) * MINUTE_MS;
        let action = why.action();
        let mut d = self.denials.lock().unwrap_or_else(|p| p.into_inner());
        let mut key = Key {
            minute,
            action,
            address: Some(address_key(ip)),
        };
        if !d.counts.contains_key(&key) {
            let seen = d.keys.entry((minute, action)).or_insert(0);
            if *seen >= MAX_KEYS_PER_MINUTE {
                key.address = None;
            } else {
                *seen += 1;
            }
        }
        let c = d.counts.entry(key).or_default();
        *c.by_reason.entry(why.as_str()).or_insert(0) += 1;
        if let Some(id) = actor
            && c.actors.len() < MAX_ACTORS
        {
            c.actors.insert(id.to_owned());
        }
    }

    /// Writes one event per counted (address, minute, action) whose minute is over at
    /// `now_ms` (or every one, with `all`: at shutdown). Counts whose event could not be
    /// written are kept for the next try.
    pub async fn flush_denials(&self, now_ms: i64, all: bool) -> Result<usize, store::Error> {
        let current = now_ms.div_euclid(MINUTE_MS) * MINUTE_MS;
        let due: Vec<(Key, Counts)> = {
            let mut d = self.denials.lock().unwrap_or_else(|p| p.into_inner());
            let keys: Vec<Key> = d
                .counts
                .keys()
                .filter(|k| all || k.minute < current)
                .cloned()
                .collect();
            d.keys.retain(|(minute, _), _| !all && *minute >= current);
            let mut due: Vec<(Key, Counts)> = keys
                .into_iter()
                .filter_map(|k| d.counts.remove(&k).map(|c| (k, c)))
                .collect();
            due.sort_by(|a, b| a.0.cmp(&b.0));
            due
        };
        let n = due.len();
        let mut pending = due.into_iter();
        while let Some((key, counts)) = pending.next() {
            let event = denial_event(&key, &counts);
            if let Err(e) = self.store.audit(event.data(), true).await {
                // Put this and the rest back; they are retried with the next flush.
                let mut d = self.denials.lock().unwrap_or_else(|p| p.into_inner());
                for (k, c) in std::iter::once((key, counts)).chain(pending) {
                    d.counts.insert(k, c);
                }
                return Err(e);
            }
        }
        Ok(n)
    }
}

fn denial_event(key: &Key, counts: &Counts) -> Event {
    let total: u64 = counts.by_reason.values().sum();
    let mut e = Event::new(Actor::system(), key.action)
        .outcome(Outcome::Denied)
        .detail("count", total.to_string())
        .detail("minute", rfc3339(key.minute));
    for (reason, n) in &counts.by_reason {
        e.details.push((reason, n.to_string()));
    }
    if !counts.actors.is_empty() {
        e = e.detail(
            "actors",
            counts.actors.iter().cloned().collect::<Vec<_>>().join(","),
        );
    }
    match &key.address {
        Some(a) => {
            if let Ok(ip) = a.parse::<IpAddr>() {
                e = e.ip(ip);
            }
            e.detail("address", a.clone())
        }
        None => e.detail(
            "address",
            format!("more than {MAX_KEYS_PER_MINUTE} addresses, counted together"),
        ),
    }
}

/// Milliseconds since the epoch as RFC 3339 (UTC).
pub fn rfc3339(ms: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_count_whole_v4_and_v6_by_prefix() {
        assert_eq!(address_key("10.1.2.3".parse().unwrap()), "10.1.2.3");
        assert_eq!(address_key("::ffff:10.1.2.3".parse().unwrap()), "10.1.2.3");
        assert_eq!(
            address_key("2001:db8:1:2:3:4:5:6".parse().unwrap()),
            "2001:db8:1:2::/64"
        );
    }
}
