//! The rise/fall state machine and what health does to the desired table, case by case. No
//! kernel, no probes, no clock.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use model::{DestKey, DestSpec, ForwardMethod, ServiceKey, ServiceSpec};
use plan::health::*;
use plan::*;

fn svc() -> ServiceKey {
    ServiceKey::tcp("172.16.1.50".parse().unwrap(), 80)
}
fn real(n: u8) -> DestKey {
    DestKey {
        addr: format!("172.16.1.{n}").parse().unwrap(),
        port: 80,
    }
}

/// The seed's service with reals .101 .102 (weights given), all checked by tcp.
fn desired(weights: &[(u8, u32)], tweak: impl FnOnce(&mut ServiceHealth)) -> Desired {
    let mut h = ServiceHealth::default();
    let mut reals = plan::FlatMap::new();
    for (n, w) in weights {
        reals.insert(real(*n), DestSpec::new(ForwardMethod::DirectRoute, *w));
        h.checks.insert(real(*n), CheckSpec::new(CheckKind::Tcp));
    }
    tweak(&mut h);
    let mut d = Desired::default();
    d.services.insert(
        svc(),
        DesiredService {
            name: Some("web".into()),
            spec: ServiceSpec::new("wlc", model::Family::Inet),
            drain_timeout: 30,
            reals,
            health: h,
            slow_start: Default::default(),
        },
    );
    d
}

/// One real's check in a desired table, to edit.
fn check_mut<'a>(d: &'a mut Desired, service: &ServiceKey, n: u8) -> &'a mut CheckSpec {
    d.services
        .get_mut(service)
        .unwrap()
        .health
        .checks
        .get_mut(&real(n))
        .unwrap()
}

fn weights(d: &Desired) -> Vec<(u8, u32)> {
    d.services[&svc()]
        .reals
        .iter()
        .map(|(k, s)| {
            (
                k.addr
                    .to_string()
                    .rsplit('.')
                    .next()
                    .unwrap()
                    .parse()
                    .unwrap(),
                s.weight,
            )
        })
        .collect()
}

#[test]
fn rise_and_fall_need_consecutive_results() {
    let mut h = Health::new(true);
    // fall 3: two failures, a success (streak reset), then three failures.
    assert_eq!(h.record(false, "connection refused", 2, 3), None);
    assert_eq!(h.record(false, "connection refused", 2, 3), None);
    assert_eq!(h.record(true, "connected", 2, 3), None);
    assert_eq!(h.record(false, "timeout after 1s", 2, 3), None);
    assert_eq!(h.record(false, "timeout after 1s", 2, 3), None);
    assert_eq!(h.record(false, "timeout after 1s", 2, 3), Some(false));
    assert!(!h.up);
    assert_eq!(h.reason, "timeout after 1s");
    // Further failures are no transition.
    assert_eq!(h.record(false, "status 503", 2, 3), None);
    // rise 2: a success, a failure (reset), two successes.
    assert_eq!(h.record(true, "status 200", 2, 3), None);
    assert_eq!(h.record(false, "status 503", 2, 3), None);
    assert_eq!(h.record(true, "status 200", 2, 3), None);
    assert_eq!(h.record(true, "status 200", 2, 3), Some(true));
    // rise/fall of 1 react at once; 0 is treated as 1.
    let mut h = Health::new(false);
    assert_eq!(h.record(true, "ok", 1, 1), Some(true));
    assert_eq!(h.record(false, "exit 2", 0, 0), Some(false));
}

#[test]
fn a_down_real_is_drained_or_removed() {
    let d = desired(&[(101, 1), (102, 3)], |_| {});
    let down_101 = |_: &ServiceKey, r: &DestKey| *r != real(101);
    let (e, st) = effective(&d, &down_101);
    assert_eq!(weights(&e), [(101, 0), (102, 3)]);
    assert_eq!(st[0].standing, Standing::Ok);
    assert_eq!((st[0].healthy, st[0].serving), (1, 2));
    let d = desired(&[(101, 1), (102, 3)], |h| h.on_failure = OnFailure::Remove);
    let (e, _) = effective(&d, &down_101);
    assert_eq!(weights(&e), [(102, 3)]);
    // A real without a check is always up.
    let d = desired(&[(101, 1), (102, 3)], |h| {
        h.checks.remove(&real(101));
    });
    let (e, _) = effective(&d, &|_, _| false);
    assert_eq!(weights(&e), [(101, 1), (102, 0)]);
}

#[test]
fn all_down_brings_in_the_fallback_or_says_so() {
    let sorry = DestKey {
        addr: "172.16.1.110".parse().unwrap(),
        port: 80,
    };
    let d = desired(&[(101, 1), (102, 1)], |_| {});
    let (e, st) = effective(&d, &|_, _| false);
    assert_eq!(weights(&e), [(101, 0), (102, 0)]);
    assert_eq!(st[0].standing, Standing::Down);
    assert!(!st[0].fallback_active);
    assert!(
        st[0].to_string().contains("no fallback configured"),
        "{}",
        st[0]
    );
    let d = desired(&[(101, 1), (102, 1)], |h| {
        h.fallback = Some((sorry, DestSpec::new(ForwardMethod::DirectRoute, 1)))
    });
    let (e, st) = effective(&d, &|_, _| false);
    assert_eq!(weights(&e), [(101, 0), (102, 0), (110, 1)]);
    assert!(st[0].fallback_active);
    // One back: the fallback leaves again.
    let (e, st) = effective(&d, &|_, r| *r == real(102));
    assert_eq!(weights(&e), [(101, 0), (102, 1)]);
    assert_eq!(st[0].standing, Standing::Ok);
}

#[test]
fn below_quorum_is_degraded_and_the_fallback_takes_over() {
    let sorry = DestKey {
        addr: "172.16.1.110".parse().unwrap(),
        port: 80,
    };
    let d = desired(&[(101, 1), (102, 1), (103, 1)], |h| h.quorum = Some(2));
    let one_up = |_: &ServiceKey, r: &DestKey| *r == real(101);
    let (e, st) = effective(&d, &one_up);
    assert_eq!(st[0].standing, Standing::Degraded);
    assert_eq!(weights(&e), [(101, 1), (102, 0), (103, 0)]);
    let d = desired(&[(101, 1), (102, 1), (103, 1)], |h| {
        h.quorum = Some(2);
        h.fallback = Some((sorry, DestSpec::new(ForwardMethod::DirectRoute, 1)));
    });
    let (e, st) = effective(&d, &one_up);
    assert!(st[0].fallback_active);
    assert_eq!(weights(&e), [(101, 0), (102, 0), (103, 0), (110, 1)]);
    let (e, st) = effective(&d, &|_, r| *r != real(103));
    assert_eq!(st[0].standing, Standing::Ok);
    assert_eq!(weights(&e), [(101, 1), (102, 1), (103, 0)]);
}

#[test]
fn the_table_adopts_kernel_weights_and_keeps_unchanged_checks() {
    let d = desired(&[(101, 1), (102, 1), (103, 1)], |_| {});
    // The kernel has .101 at weight 1 and .102 drained; .103 is new.
    let mut o = Observed::default();
    let mut reals = plan::FlatMap::new();
    for (n, w) in [(101, 1), (102, 0)] {
        reals.insert(
            real(n),
            ObservedReal::new(DestSpec::new(ForwardMethod::DirectRoute, w)),
        );
    }
    o.services.insert(
        svc(),
        ObservedService {
            spec: ServiceSpec::new("wlc", model::Family::Inet),
            reals,
        },
    );
    let mut t = HealthTable::default();
    t.sync(&d, Some(&o));
    assert!(t.is_up(&svc(), &real(101)), "weight above 0: up");
    assert!(!t.is_up(&svc(), &real(102)), "weight 0: down");
    assert!(
        !t.is_up(&svc(), &real(103)),
        "new: checked before it takes traffic"
    );
    let (e, _) = t.effective(&d);
    assert_eq!(weights(&e), [(101, 1), (102, 0), (103, 0)], "no flapping");
    // `initial: up` takes traffic at once.
    let mut up_at_once = d.clone();
    for c in up_at_once
        .services
        .get_mut(&svc())
        .unwrap()
        .health
        .checks
        .values_mut()
    {
        c.initial_up = true;
    }
    let mut t2 = HealthTable::default();
    t2.sync(&up_at_once, Some(&Observed::default()));
    assert!(t2.is_up(&svc(), &real(103)));
    // A reload keeps the state of unchanged checks even if the table says otherwise now...
    t.record(&(svc(), real(103)), true, "connected");
    t.record(&(svc(), real(103)), true, "connected");
    assert!(t.is_up(&svc(), &real(103)));
    t.sync(&d, Some(&o));
    assert!(t.is_up(&svc(), &real(103)));
    // ...and a changed check starts again from the table.
    let mut changed = d.clone();
    check_mut(&mut changed, &svc(), 103).port = Some(8080);
    t.sync(&changed, Some(&o));
    assert!(!t.is_up(&svc(), &real(103)));
    // Checks that left the config are dropped.
    t.sync(&desired(&[(101, 1)], |_| {}), Some(&o));
    assert_eq!(t.checks().count(), 1);
}

#[test]
fn health_removals_do_not_trip_the_guard() {
    let d = desired(&[(101, 1), (102, 1)], |h| h.on_failure = OnFailure::Remove);
    let owned = plan::plan(
        &d,
        &Observed::default(),
        &Owned::default(),
        Options::default(),
    )
    .owned;
    let mut o = Observed::default();
    let reals = [101, 102]
        .iter()
        .map(|n| {
            (
                real(*n),
                ObservedReal::new(DestSpec::new(ForwardMethod::DirectRoute, 1)),
            )
        })
        .collect();
    o.services.insert(
        svc(),
        ObservedService {
            spec: ServiceSpec::new("wlc", model::Family::Inet),
            reals,
        },
    );
    let (e, _) = effective(&d, &|_, _| false);
    let p = plan::plan(&e, &o, &owned, Options::default());
    assert!(!p.guard.tripped(), "{}", p.guard);
    assert_eq!(p.ops.len(), 2, "both drained: {:?}", p.ops);
    // The same reals leaving the config do trip it.
    let gone = desired(&[], |_| {});
    let p = plan::plan(&gone, &o, &owned, Options::default());
    assert!(p.guard.tripped());
}

#[test]
fn syncing_the_services_an_edit_touched_is_syncing_everything() {
    // Three services with checks; the table knows some states already.
    let mut d = Desired::default();
    for n in 50..53u8 {
        let one = desired(&[(101, 1), (102, 1)], |_| {});
        let s = one.services[&svc()].clone();
        d.services.insert(
            ServiceKey::tcp(format!("172.16.1.{n}").parse().unwrap(), 80),
            s,
        );
    }
    let mut full = HealthTable::default();
    full.sync(&d, None);
    let keys: Vec<ServiceKey> = d.services.keys().copied().collect();
    // Some results move states.
    full.set(&(keys[0], real(101)), true, "ok");
    full.set(&(keys[1], real(102)), true, "ok");
    let mut part = full.clone();
    // The edit: the second service's check changes, the third leaves the file.
    let mut edited = d.clone();
    check_mut(&mut edited, &keys[1], 101).fall = 7;
    edited.services.remove(&keys[2]);
    full.sync(&edited, None);
    part.sync_services(&edited, None, &[keys[1], keys[2]].into());
    assert_eq!(part, full);
    // The unchanged check of the touched service kept its state.
    assert!(part.is_up(&keys[1], &real(102)));
    // And the monitor's view of the touched services is theirs only.
    let of: Vec<_> = part
        .checks_of(&[keys[1]].into())
        .map(|(id, _, up)| (*id, up))
        .collect();
    assert_eq!(
        of,
        vec![((keys[1], real(101)), false), ((keys[1], real(102)), true)]
    );
}

#[test]
fn the_revision_moves_with_what_people_see_and_only_then() {
    let d = desired(&[(101, 1), (102, 1)], |_| {});
    let mut t = HealthTable::default();
    t.sync(&d, None);
    let id = (svc(), real(101));
    let r = t.revision();
    // The same state and reason again: nothing to rebuild.
    t.set(&id, false, "");
    assert_eq!(t.revision(), r);
    // A new reason, then a new state.
    t.set(&id, false, "connection refused");
    assert!(t.revision() > r);
    let r = t.revision();
    t.set(&id, true, "connection refused");
    assert!(t.revision() > r);
    // An edit that leaves the checks as they were moves nothing...
    let r = t.revision();
    let mut heavier = d.clone();
    heavier
        .services
        .get_mut(&svc())
        .unwrap()
        .reals
        .get_mut(&real(102))
        .unwrap()
        .weight = 5;
    t.sync_services(&heavier, None, &[svc()].into());
    t.sync(&heavier, None);
    assert_eq!(t.revision(), r);
    // ...one that drops a check or changes one does.
    t.sync(&desired(&[(101, 1)], |_| {}), None);
    assert!(t.revision() > r);
    let r = t.revision();
    let mut slower = desired(&[(101, 1)], |_| {});
    check_mut(&mut slower, &svc(), 101).fall = 9;
    t.sync_services(&slower, None, &[svc()].into());
    assert!(t.revision() > r);
}
