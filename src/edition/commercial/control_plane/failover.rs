//! The control plane's half of failover: a state machine over heartbeats, promotions and time.
//! No IO and no clock of its own: every call takes `now`, so tests drive time by hand.
//!
//! States (per cluster): *steady* (`primary` is `Some(P)` or nobody is primary yet) and
//! *promoting* (`promotion` is `Some`: the old primary has been told to step down and the new
//! one is told nothing yet). Transitions:
//!
//! - heartbeat from a POP reporting `primary` while nobody is primary: it is adopted (the
//!   first to ask wins; every later claimant is told `backup`).
//! - heartbeat from the primary: the answer renews its lease (`lease_ms`, 0 = no lease).
//! - promote (an operator, or automatic failover when the primary has been silent for
//!   `missed_heartbeats` intervals and a backup is heartbeating and close enough): the epoch
//!   goes up by one, the old primary is answered `backup` at the new epoch, the new one keeps
//!   hearing `backup` at the old epoch.
//! - the promotion completes when the old primary acknowledges (a heartbeat reporting `backup`
//!   at the new epoch or later), or when the last lease granted to it, plus a margin, has run
//!   out on our clock (with no lease configured: when it has been silent long enough to count as
//!   stale). Only then is the new primary answered `primary`.
//!
//! Invariant: `primary` is never answered to a POP while a lease granted to another POP may
//! still be live, unless that POP has acknowledged its demotion. Durable state ([`Durable`])
//! changes are returned to the caller, which must persist them before sending the answer.
//! Leases are not persisted: after a restart every lease the previous process granted is
//! assumed live for one full lease from the restart (no lease is ever granted further ahead),
//! which needs no agreement between the wall clock before and after.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Manual,
    Automatic,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Manual => "manual",
            Mode::Automatic => "automatic",
        }
    }
}

/// The failover settings in force.
#[derive(Clone, Debug)]
pub struct Rules {
    pub mode: Mode,
    /// How often POPs are asked to heartbeat.
    pub interval: Duration,
    /// Missed intervals after which a POP is stale (and a primary may be replaced).
    pub missed: u32,
    /// The lease granted with each heartbeat answer to the primary; zero: no lease.
    pub lease: Duration,
    pub max_lag_versions: u64,
}

impl Rules {
    /// How long a POP may be silent before it is stale.
    pub fn stale_after(&self) -> Duration {
        self.interval * self.missed
    }

    /// Added to a lease before it is taken to have run out: covers the POP's clock running
    /// slower than ours and the time a heartbeat answer spends in flight.
    pub fn margin(&self) -> Duration {
        (self.lease / 5).max(Duration::from_secs(1))
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Primary,
    Backup,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Primary => "primary",
            Role::Backup => "backup",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "primary" => Some(Role::Primary),
            "backup" => Some(Role::Backup),
            _ => None,
        }
    }
}

/// What survives a restart; saved before any answer that depends on it is sent.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Durable {
    /// The highest epoch handed out (a pending promotion's included).
    pub epoch: u64,
    /// The POP allowed to act as primary; `None` while nobody is or during a promotion.
    pub primary: Option<String>,
    pub promotion: Option<Promotion>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Promotion {
    pub from: Option<String>,
    pub to: String,
    pub epoch: u64,
}

/// What a heartbeat says about its POP (every part optional: POPs are older or newer).
#[derive(Clone, Debug, Default)]
pub struct Beat {
    pub role: Option<Role>,
    pub epoch: Option<u64>,
    /// The primary's latest committed version.
    pub committed: Option<i64>,
    /// The backup's applied watermark (every version up to it is applied).
    pub applied: Option<i64>,
}

/// The heartbeat answer: the role and epoch the POP must hold, and its lease (zero: none).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Answer {
    pub role: Role,
    pub epoch: u64,
    pub lease: Duration,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PromoteError {
    #[error("no POP {0:?} is configured")]
    UnknownPop(String),
    #[error("{0} is already the primary")]
    AlreadyPrimary(String),
    #[error("a promotion of {0} is already in progress; wait until it completes")]
    InProgress(String),
}

/// A step an operator should hear about (the caller turns it into an alert).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    Adopted {
        pop: String,
        epoch: u64,
    },
    PromotionStarted {
        from: Option<String>,
        to: String,
        epoch: u64,
        automatic: bool,
    },
    PromotionCompleted {
        to: String,
        epoch: u64,
        acknowledged: bool,
    },
}

#[derive(Clone, Debug)]
struct Seen {
    last: Instant,
    beat: Beat,
}

/// A POP as the machine sees it now, for the API and the dashboard.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PopState {
    pub role: Role,
    pub epoch: u64,
    pub stale: bool,
    /// Versions the primary had committed that this backup had not applied, when both known.
    pub behind: Option<i64>,
    /// Whether this POP is the target of a promotion in progress.
    pub promoting: bool,
    /// Whether this POP has been told to step down and has not acknowledged yet.
    pub demoting: bool,
    /// Until when this POP may hold a lease we granted (our clock, margin excluded).
    pub lease_left: Option<Duration>,
}

#[derive(Clone, Debug)]
pub struct Machine {
    rules: Rules,
    pops: Vec<String>,
    durable: Durable,
    started: Instant,
    seen: BTreeMap<String, Seen>,
    /// The end of the last lease granted to `durable.primary` (or to the POP a promotion
    /// demotes), on our clock.
    lease_until: Option<Instant>,
    /// When a pending promotion may complete without an acknowledgement (lease case).
    wait_until: Option<Instant>,
    /// The primary's committed version from its last heartbeat (kept across a promotion).
    primary_committed: Option<i64>,
    /// Steps taken since the caller last asked.
    events: Vec<Event>,
}

impl Machine {
    /// Starts from the durable state saved by the previous run (or the default).
    pub fn new(rules: Rules, pops: Vec<String>, durable: Durable, now: Instant) -> Self {
        let assumed = (!rules.lease.is_zero()).then(|| now + rules.lease);
        let mut m = Self {
            wait_until: None,
            lease_until: None,
            rules,
            pops,
            durable,
            started: now,
            seen: BTreeMap::new(),
            primary_committed: None,
            events: Vec::new(),
        };
        if m.durable.primary.is_some() {
            m.lease_until = assumed;
        }
        if m.durable
            .promotion
            .as_ref()
            .is_some_and(|p| p.from.is_some())
        {
            m.lease_until = assumed;
            m.wait_until = assumed.map(|t| t + m.rules.margin());
        }
        m
    }

    pub fn durable(&self) -> &Durable {
        &self.durable
    }

    /// The steps taken since the last call.
    pub fn take_events(&mut self) -> Vec<Event> {
        std::mem::take(&mut self.events)
    }

    /// New settings (SIGHUP): POPs and timings change, the durable state stays.
    pub fn reconfigure(&mut self, rules: Rules, pops: Vec<String>) {
        self.rules = rules;
        self.pops = pops;
    }

    fn last_seen(&self, pop: &str) -> Instant {
        self.seen.get(pop).map_or(self.started, |s| s.last)
    }

    pub fn is_stale(&self, pop: &str, now: Instant) -> bool {
        now.saturating_duration_since(self.last_seen(pop)) >= self.rules.stale_after()
    }

    /// Versions the primary committed (last we heard) that `pop` has not applied.
    fn behind(&self, pop: &str) -> Option<i64> {
        let applied = self.seen.get(pop)?.beat.applied?;
        Some((self.primary_committed? - applied).max(0))
    }

    /// The epoch a backup other than a demoted primary is answered with.
    fn backup_epoch(&self) -> u64 {
        match &self.durable.promotion {
            Some(p) => p.epoch.saturating_sub(1),
            None => self.durable.epoch,
        }
    }

    /// A heartbeat from `pop` at `now`: records it, moves the machine on, answers.
    pub fn heartbeat(&mut self, pop: &str, beat: Beat, now: Instant) -> Answer {
        if let Some(e) = beat.epoch
            && e > self.durable.epoch
        {
            // Never hand out an epoch below one a POP already holds.
            self.durable.epoch = e;
        }
        let reported = beat.role;
        let committed = beat.committed;
        self.seen.insert(pop.to_owned(), Seen { last: now, beat });
        self.tick(now);
        if let Some(p) = &self.durable.promotion {
            if p.from.as_deref() == Some(pop) {
                return self.backup(p.epoch);
            }
            return self.backup(self.backup_epoch());
        }
        if self.durable.primary.is_none() && reported == Some(Role::Primary) {
            self.durable.primary = Some(pop.to_owned());
            self.durable.epoch = self.durable.epoch.max(1);
            self.events.push(Event::Adopted {
                pop: pop.to_owned(),
                epoch: self.durable.epoch,
            });
        }
        if self.durable.primary.as_deref() == Some(pop) {
            if committed.is_some() {
                self.primary_committed = committed;
            }
            let lease = self.rules.lease;
            if !lease.is_zero() {
                self.lease_until = Some(now + lease);
            }
            return Answer {
                role: Role::Primary,
                epoch: self.durable.epoch,
                lease,
            };
        }
        self.backup(self.durable.epoch)
    }

    fn backup(&self, epoch: u64) -> Answer {
        Answer {
            role: Role::Backup,
            epoch,
            lease: Duration::ZERO,
        }
    }

    /// Moves time on: completes a promotion whose old primary acknowledged or ran out of
    /// lease, and starts an automatic one when the primary is silent.
    pub fn tick(&mut self, now: Instant) {
        if let Some(p) = self.durable.promotion.clone() {
            let (done, acknowledged) = match &p.from {
                None => (true, false),
                Some(from) => {
                    let acked = self.seen.get(from).is_some_and(|s| {
                        s.beat.role == Some(Role::Backup)
                            && s.beat.epoch.is_some_and(|e| e >= p.epoch)
                    });
                    let ran_out = match self.wait_until {
                        Some(t) => now >= t,
                        // No lease was ever granted: the old primary must at least be silent.
                        None => self.is_stale(from, now),
                    };
                    (acked || ran_out, acked)
                }
            };
            if done {
                self.events.push(Event::PromotionCompleted {
                    to: p.to.clone(),
                    epoch: p.epoch,
                    acknowledged,
                });
                self.durable.primary = Some(p.to);
                self.durable.promotion = None;
                self.lease_until = None;
                self.wait_until = None;
            }
            return;
        }
        if self.rules.mode != Mode::Automatic {
            return;
        }
        let Some(primary) = self.durable.primary.clone() else {
            return;
        };
        if !self.is_stale(&primary, now) {
            return;
        }
        let candidate = self
            .pops
            .iter()
            .filter(|b| **b != primary && self.seen.contains_key(*b) && !self.is_stale(b, now))
            .filter_map(|b| {
                let behind = self.behind(b);
                let ok = behind.is_none_or(|v| v <= self.rules.max_lag_versions as i64);
                ok.then(|| (behind.unwrap_or(0), b.clone()))
            })
            .min();
        if let Some((_, to)) = candidate {
            let _ = self.start_promotion(&to, now, true);
        }
    }

    /// Starts promoting `to`; the new primary is answered `primary` once [`Machine::tick`]
    /// completes the promotion.
    pub fn promote(&mut self, to: &str, now: Instant) -> Result<(), PromoteError> {
        self.start_promotion(to, now, false)
    }

    fn start_promotion(
        &mut self,
        to: &str,
        now: Instant,
        automatic: bool,
    ) -> Result<(), PromoteError> {
        if !self.pops.iter().any(|p| p == to) {
            return Err(PromoteError::UnknownPop(to.to_owned()));
        }
        if let Some(p) = &self.durable.promotion {
            return Err(PromoteError::InProgress(p.to.clone()));
        }
        if self.durable.primary.as_deref() == Some(to) {
            return Err(PromoteError::AlreadyPrimary(to.to_owned()));
        }
        let from = self.durable.primary.take();
        self.durable.epoch += 1;
        self.wait_until = match (&from, self.lease_until) {
            (Some(_), Some(until)) => Some(until + self.rules.margin()),
            _ => None,
        };
        self.events.push(Event::PromotionStarted {
            from: from.clone(),
            to: to.to_owned(),
            epoch: self.durable.epoch,
            automatic,
        });
        self.durable.promotion = Some(Promotion {
            from,
            to: to.to_owned(),
            epoch: self.durable.epoch,
        });
        self.tick(now);
        Ok(())
    }

    /// Every configured POP as it stands at `now`.
    pub fn state(&self, pop: &str, now: Instant) -> PopState {
        let promo = self.durable.promotion.as_ref();
        let demoting = promo.is_some_and(|p| p.from.as_deref() == Some(pop));
        let promoting = promo.is_some_and(|p| p.to == pop);
        let (role, epoch) = if self.durable.primary.as_deref() == Some(pop) {
            (Role::Primary, self.durable.epoch)
        } else if demoting {
            (Role::Backup, promo.map_or(0, |p| p.epoch))
        } else {
            (Role::Backup, self.backup_epoch())
        };
        let holds_lease = self.durable.primary.as_deref() == Some(pop) || demoting;
        PopState {
            role,
            epoch,
            stale: self.is_stale(pop, now),
            behind: if role == Role::Backup {
                self.behind(pop)
            } else {
                None
            },
            promoting,
            demoting,
            lease_left: self
                .lease_until
                .filter(|_| holds_lease)
                .map(|t| t.saturating_duration_since(now)),
        }
    }

    /// Whether `pop` has sent a heartbeat since this process started.
    pub fn heard_from(&self, pop: &str) -> bool {
        self.seen.contains_key(pop)
    }
}

#[cfg(test)]
mod tests;
