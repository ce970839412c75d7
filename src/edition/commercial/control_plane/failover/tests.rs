//! Every transition of the failover machine, with time driven by hand, and a property test
//! that no sequence of heartbeats, promotions and silences ever grants two live primaries.

use super::*;

const S: Duration = Duration::from_secs(1);

fn rules(mode: Mode, lease_secs: u64) -> Rules {
    Rules {
        mode,
        interval: S,
        missed: 3,
        lease: Duration::from_secs(lease_secs),
        max_lag_versions: 10,
    }
}

fn pops() -> Vec<String> {
    vec!["a".into(), "b".into()]
}

fn beat(role: Role) -> Beat {
    Beat {
        role: Some(role),
        ..Beat::default()
    }
}

fn at(role: Role, epoch: u64) -> Beat {
    Beat {
        role: Some(role),
        epoch: Some(epoch),
        ..Beat::default()
    }
}

fn primary(epoch: u64, lease_secs: u64) -> Answer {
    Answer {
        role: Role::Primary,
        epoch,
        lease: Duration::from_secs(lease_secs),
    }
}

fn backup(epoch: u64) -> Answer {
    Answer {
        role: Role::Backup,
        epoch,
        lease: Duration::ZERO,
    }
}

/// `a` adopted as primary at epoch 1 (lease 2 s), `b` a backup, both at `t0`.
fn steady(mode: Mode) -> (Machine, Instant) {
    let t0 = Instant::now();
    let mut m = Machine::new(rules(mode, 2), pops(), Durable::default(), t0);
    assert_eq!(m.heartbeat("a", beat(Role::Primary), t0), primary(1, 2));
    assert_eq!(m.heartbeat("b", beat(Role::Backup), t0), backup(1));
    (m, t0)
}

#[test]
fn the_first_pop_claiming_primary_is_adopted_and_later_claimants_are_told_backup() {
    let t0 = Instant::now();
    let mut m = Machine::new(rules(Mode::Manual, 2), pops(), Durable::default(), t0);
    assert_eq!(m.heartbeat("b", beat(Role::Backup), t0), backup(0));
    assert_eq!(m.heartbeat("a", beat(Role::Primary), t0), primary(1, 2));
    assert_eq!(m.durable().primary.as_deref(), Some("a"));
    assert_eq!(m.heartbeat("b", beat(Role::Primary), t0), backup(1));
    assert_eq!(m.durable().primary.as_deref(), Some("a"));
}

#[test]
fn each_heartbeat_of_the_primary_renews_its_lease() {
    let (mut m, t0) = steady(Mode::Manual);
    assert_eq!(m.state("a", t0 + S).lease_left, Some(S));
    assert_eq!(m.heartbeat("a", beat(Role::Primary), t0 + S), primary(1, 2));
    assert_eq!(m.state("a", t0 + S).lease_left, Some(2 * S));
    assert_eq!(m.state("b", t0 + S).lease_left, None);
}

#[test]
fn a_pop_reporting_a_higher_epoch_raises_the_epoch() {
    let (mut m, t0) = steady(Mode::Manual);
    assert_eq!(m.heartbeat("b", at(Role::Backup, 7), t0), backup(7));
    assert_eq!(m.heartbeat("a", at(Role::Primary, 1), t0), primary(7, 2));
}

#[test]
fn manual_promotion_waits_for_the_old_primary_to_acknowledge() {
    let (mut m, t0) = steady(Mode::Manual);
    m.promote("b", t0).unwrap();
    assert_eq!(m.durable().epoch, 2);
    assert_eq!(m.durable().primary, None);
    // The backup keeps hearing backup at the old epoch; the old primary is told to step down.
    assert_eq!(m.heartbeat("b", at(Role::Backup, 1), t0), backup(1));
    assert_eq!(m.heartbeat("a", at(Role::Primary, 1), t0), backup(2));
    assert!(m.state("a", t0).demoting && m.state("b", t0).promoting);
    assert_eq!(m.heartbeat("b", at(Role::Backup, 1), t0), backup(1));
    // The old primary acknowledges: the next answer to the new one makes it primary.
    assert_eq!(m.heartbeat("a", at(Role::Backup, 2), t0 + S / 2), backup(2));
    assert_eq!(m.durable().primary.as_deref(), Some("b"));
    assert_eq!(
        m.heartbeat("b", at(Role::Backup, 1), t0 + S / 2),
        primary(2, 2)
    );
    // The old primary claiming primary again is told backup.
    assert_eq!(m.heartbeat("a", at(Role::Primary, 1), t0 + S), backup(2));
}

#[test]
fn manual_promotion_without_acknowledgement_waits_for_lease_and_margin() {
    let (mut m, t0) = steady(Mode::Manual);
    // The lease granted at t0 runs to t0+2s; the margin is 1 s.
    m.promote("b", t0 + S).unwrap();
    let before = t0 + 3 * S - Duration::from_millis(1);
    assert_eq!(m.heartbeat("b", beat(Role::Backup), before), backup(1));
    assert_eq!(m.durable().primary, None);
    assert_eq!(
        m.heartbeat("b", beat(Role::Backup), t0 + 3 * S),
        primary(2, 2)
    );
}

#[test]
fn a_promotion_that_is_pending_or_pointless_is_refused() {
    let (mut m, t0) = steady(Mode::Manual);
    assert_eq!(
        m.promote("a", t0),
        Err(PromoteError::AlreadyPrimary("a".into()))
    );
    assert_eq!(
        m.promote("zz", t0),
        Err(PromoteError::UnknownPop("zz".into()))
    );
    m.promote("b", t0).unwrap();
    assert_eq!(
        m.promote("a", t0),
        Err(PromoteError::InProgress("b".into()))
    );
    assert_eq!(m.durable().epoch, 2);
}

#[test]
fn promotion_with_no_primary_completes_at_once() {
    let t0 = Instant::now();
    let mut m = Machine::new(rules(Mode::Manual, 2), pops(), Durable::default(), t0);
    m.heartbeat("b", beat(Role::Backup), t0);
    m.promote("b", t0).unwrap();
    assert_eq!(m.durable().primary.as_deref(), Some("b"));
    assert_eq!(m.heartbeat("b", beat(Role::Backup), t0), primary(1, 2));
    assert_eq!(m.heartbeat("a", beat(Role::Primary), t0), backup(1));
}

#[test]
fn automatic_failover_promotes_a_close_backup_after_the_primary_goes_silent() {
    let (mut m, t0) = steady(Mode::Automatic);
    let beat_b = |applied| Beat {
        role: Some(Role::Backup),
        applied: Some(applied),
        ..Beat::default()
    };
    m.heartbeat(
        "a",
        Beat {
            role: Some(Role::Primary),
            committed: Some(50),
            ..Beat::default()
        },
        t0,
    );
    // Silent for less than 3 intervals: nothing happens.
    assert_eq!(m.heartbeat("b", beat_b(45), t0 + 2 * S), backup(1));
    assert_eq!(m.durable().promotion, None);
    // Silent for 3 intervals: the promotion starts; lease (t0+2s) + margin (1s) have run out.
    assert_eq!(m.heartbeat("b", beat_b(45), t0 + 3 * S), primary(2, 2));
    assert_eq!(m.durable().primary.as_deref(), Some("b"));
    assert_eq!(m.heartbeat("a", beat(Role::Primary), t0 + 4 * S), backup(2));
}

#[test]
fn automatic_failover_skips_a_backup_too_far_behind_or_silent() {
    let (mut m, t0) = steady(Mode::Automatic);
    m.heartbeat(
        "a",
        Beat {
            role: Some(Role::Primary),
            committed: Some(100),
            ..Beat::default()
        },
        t0,
    );
    let far = Beat {
        role: Some(Role::Backup),
        applied: Some(80),
        ..Beat::default()
    };
    m.heartbeat("b", far, t0 + 4 * S);
    assert_eq!(m.durable().primary.as_deref(), Some("a"));
    assert_eq!(m.state("b", t0 + 4 * S).behind, Some(20));
    // A backup that is silent too is never promoted automatically.
    let (mut m, t0) = steady(Mode::Automatic);
    m.tick(t0 + 10 * S);
    assert_eq!(m.durable().primary.as_deref(), Some("a"));
}

#[test]
fn manual_mode_never_promotes_by_itself() {
    let (mut m, t0) = steady(Mode::Manual);
    assert_eq!(m.heartbeat("b", beat(Role::Backup), t0 + 10 * S), backup(1));
    assert_eq!(m.durable().primary.as_deref(), Some("a"));
    assert!(m.state("a", t0 + 10 * S).stale);
}

#[test]
fn after_a_restart_the_old_lease_is_assumed_live_for_a_full_lease() {
    let (mut m, t0) = steady(Mode::Manual);
    m.heartbeat("a", beat(Role::Primary), t0);
    // A new process starts from the saved state 10 s later, on a fresh clock.
    let t1 = t0 + 10 * S;
    let mut m = Machine::new(rules(Mode::Manual, 2), pops(), m.durable().clone(), t1);
    m.promote("b", t1).unwrap();
    assert_eq!(m.heartbeat("b", beat(Role::Backup), t1 + 2 * S), backup(1));
    assert_eq!(
        m.heartbeat("b", beat(Role::Backup), t1 + 3 * S),
        primary(2, 2)
    );
}

#[test]
fn a_pending_promotion_survives_a_restart_and_waits_a_full_lease_again() {
    let (mut m, t0) = steady(Mode::Manual);
    m.promote("b", t0).unwrap();
    let saved = m.durable().clone();
    let t1 = t0 + 60 * S;
    let mut m = Machine::new(rules(Mode::Manual, 2), pops(), saved, t1);
    assert_eq!(m.heartbeat("b", beat(Role::Backup), t1), backup(1));
    assert_eq!(m.heartbeat("a", beat(Role::Primary), t1), backup(2));
    assert_eq!(
        m.heartbeat("b", beat(Role::Backup), t1 + 3 * S),
        primary(2, 2)
    );
}

#[test]
fn without_a_lease_promotion_waits_for_an_acknowledgement_or_a_stale_primary() {
    let t0 = Instant::now();
    let mut m = Machine::new(rules(Mode::Manual, 0), pops(), Durable::default(), t0);
    assert_eq!(m.heartbeat("a", beat(Role::Primary), t0), primary(1, 0));
    m.heartbeat("b", beat(Role::Backup), t0);
    m.promote("b", t0).unwrap();
    assert_eq!(m.heartbeat("a", beat(Role::Primary), t0 + 2 * S), backup(2));
    assert_eq!(m.heartbeat("b", beat(Role::Backup), t0 + 4 * S), backup(1));
    // Silent for 3 intervals since its last heartbeat (t0+2s).
    assert_eq!(
        m.heartbeat("b", beat(Role::Backup), t0 + 5 * S),
        primary(2, 0)
    );
}

mod never_two_primaries {
    use super::*;
    use proptest::prelude::*;

    #[derive(Clone, Debug)]
    enum Step {
        Wait(u64),
        Beat {
            pop: usize,
            claims: bool,
            acks: bool,
            lost: bool,
        },
        Promote(usize),
    }

    fn step() -> impl Strategy<Value = Step> {
        prop_oneof![
            (0u64..3000).prop_map(Step::Wait),
            (0usize..3, any::<bool>(), any::<bool>(), any::<bool>()).prop_map(
                |(pop, claims, acks, lost)| Step::Beat {
                    pop,
                    claims,
                    acks,
                    lost
                }
            ),
            (0usize..3).prop_map(Step::Promote),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

        /// Whenever `primary` is answered, every other POP's last primary lease (as the POP
        /// counts it, from before it sent that heartbeat) has run out, or the POP has since
        /// heard that it is a backup. Answers get lost, and the machine restarts, in between.
        #[test]
        fn holds(steps in proptest::collection::vec(step(), 1..80), automatic in any::<bool>(), restarts in proptest::collection::vec(0usize..80, 0..3)) {
            let ids = ["a", "b", "c"];
            let mode = if automatic { Mode::Automatic } else { Mode::Manual };
            let r = Rules { mode, interval: Duration::from_millis(500), missed: 3, lease: S, max_lag_versions: 5 };
            let mut now = Instant::now();
            let mut m = Machine::new(r.clone(), ids.iter().map(|s| s.to_string()).collect(), Durable::default(), now);
            // Per POP: until when it may act as primary (its lease), and the epoch it holds.
            let mut live: BTreeMap<&str, Option<Instant>> = BTreeMap::new();
            let mut held: BTreeMap<&str, (Role, u64)> = BTreeMap::new();
            for (i, s) in steps.into_iter().enumerate() {
                if restarts.contains(&i) {
                    m = Machine::new(r.clone(), ids.iter().map(|s| s.to_string()).collect(), m.durable().clone(), now);
                }
                match s {
                    Step::Wait(ms) => now += Duration::from_millis(ms),
                    Step::Promote(p) => { let _ = m.promote(ids[p], now); }
                    Step::Beat { pop, claims, acks, lost } => {
                        let id = ids[pop];
                        let (role, epoch) = held.get(id).copied().unwrap_or((if claims { Role::Primary } else { Role::Backup }, 0));
                        // A POP that heard `backup` at an epoch may report it (an acknowledgement) or not.
                        let b = Beat { role: Some(role), epoch: acks.then_some(epoch), ..Beat::default() };
                        let sent = now;
                        let a = m.heartbeat(id, b, now);
                        if lost {
                            // The answer never arrives: the POP keeps what it held.
                            continue;
                        }
                        if a.role == Role::Primary {
                            for (other, until) in &live {
                                if *other != id && let Some(u) = until {
                                    prop_assert!(*u <= now, "{id} granted primary at {:?} while {other}'s lease runs {:?} more", now, *u - now);
                                }
                            }
                            live.insert(id, if a.lease.is_zero() { None } else { Some(sent + a.lease) });
                        } else {
                            // Told backup: it steps down at once.
                            live.remove(id);
                        }
                        held.insert(id, (a.role, a.epoch));
                    }
                }
            }
        }
    }
}
