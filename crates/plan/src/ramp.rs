//! Slow start, the pure half: a real that joins its service (added by an edit, up again after a
//! failed check, back from a drain) takes its weight in steps over its `slow_start` instead of
//! all at once. Under wlc or lc a newcomer with no connections would otherwise win nearly every
//! new connection until its count caught up with the others'. One more layer over the table
//! the planner aims for, after health and overrides: nothing here reads a clock (`now` is the
//! caller's monotonic time), stores or logs anything.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use model::{DestKey, ServiceKey};

use crate::state::Desired;

/// Steps of a ramp: the weight starts at 1 and rises every tenth of the slow start.
pub const STEPS: u32 = 10;

/// The longest `slow_start` the config takes.
pub const MAX: Duration = Duration::from_secs(3600);

/// The weight of a real `elapsed` into a ramp of `over` towards `target`: 1 in the first
/// step, then `1 + (target - 1) * k / STEPS` in step `k`, the target once `over` has passed.
/// A target of 0 stays 0 (a drained real does not ramp).
pub fn weight(target: u32, elapsed: Duration, over: Duration) -> u32 {
    if target == 0 || elapsed >= over {
        return target;
    }
    step_weight(target, step(elapsed, over))
}

/// When (time since the join) the weight of [`weight`] changes next after `elapsed`; `None`
/// once it is at the target for good.
pub fn next_change(target: u32, elapsed: Duration, over: Duration) -> Option<Duration> {
    if target == 0 || elapsed >= over {
        return None;
    }
    let now = weight(target, elapsed, over);
    (step(elapsed, over) + 1..=STEPS)
        .find(|k| step_weight(target, *k) != now)
        .map(|k| step_start(k, over))
}

/// The step `elapsed` is in: 0 to STEPS (STEPS is the end).
fn step(elapsed: Duration, over: Duration) -> u32 {
    if over.is_zero() {
        return STEPS;
    }
    let k = elapsed.as_nanos().saturating_mul(u128::from(STEPS)) / over.as_nanos();
    u32::try_from(k).unwrap_or(STEPS).min(STEPS)
}

/// The weight during step `k`.
fn step_weight(target: u32, k: u32) -> u32 {
    if k >= STEPS {
        return target;
    }
    let w = 1 + u64::from(target.saturating_sub(1)) * u64::from(k) / u64::from(STEPS);
    u32::try_from(w).unwrap_or(target).min(target.max(1))
}

/// When step `k` begins (rounded up, so that [`step`] of it is `k`).
fn step_start(k: u32, over: Duration) -> Duration {
    let n = over.as_nanos().saturating_mul(u128::from(k));
    let ns = n.div_ceil(u128::from(STEPS));
    Duration::from_nanos(u64::try_from(ns).unwrap_or(u64::MAX))
}

/// A real and its service.
pub type RealId = (ServiceKey, DestKey);

/// One ramp under way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ramp {
    /// When the real joined (the caller's clock).
    pub since: Duration,
    /// Its slow start.
    pub over: Duration,
    /// The weight it ramps to (the file's, health's or an override's, as last laid over).
    pub target: u32,
    /// The weight the last pass that covered its service aimed for.
    pub written: Option<u32>,
    /// When its service needs a pass: the weight changes then (or changed already and the
    /// last passes did not cover its service).
    pub next: Duration,
}

impl Ramp {
    /// Its weight at `now`.
    pub fn weight(&self, now: Duration) -> u32 {
        weight(self.target, now.saturating_sub(self.since), self.over)
    }

    /// When it reaches its target.
    pub fn until(&self) -> Duration {
        self.since + self.over
    }
}

/// The ramps under way, and what the last look saw of every real (so that a join is told
/// from a real that was there all along).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Ramps {
    /// Each real's weight in the table aimed for, before ramps, as last laid over.
    seen: BTreeMap<RealId, u32>,
    /// The ramps, by real.
    ramps: BTreeMap<RealId, Ramp>,
}

impl Ramps {
    /// The ramps under way.
    pub fn list(&self) -> &BTreeMap<RealId, Ramp> {
        &self.ramps
    }

    /// Nothing seen yet: the first look, where a real the kernel already has in rotation is
    /// taken as ramped (a restart of the daemon must not send every real back to weight 1).
    pub fn is_fresh(&self) -> bool {
        self.seen.is_empty()
    }

    /// Takes the joins in and lays the ramps over `target` at `now`; `scope` is the services
    /// the pass about to run covers (`None`: all). A real joins when its weight goes from 0
    /// (or absent) to more than 0; a real seen for the first time joins unless `kernel` (its
    /// weight in the table now) says it has a weight above 0 already. A joining real with a
    /// slow start ramps when another real of its service takes traffic: reals that come in
    /// together with nobody else serving (a new service, every real back at once) share the
    /// traffic evenly anyway, and a ramp would only hold the service back. Returns the
    /// services whose weights the ramps lower.
    pub fn apply(
        &mut self,
        target: &mut Desired,
        kernel: &dyn Fn(&ServiceKey, &DestKey) -> Option<u32>,
        scope: Option<&BTreeSet<ServiceKey>>,
        now: Duration,
    ) -> BTreeSet<ServiceKey> {
        let mut seen = BTreeMap::new();
        let mut lowered = BTreeSet::new();
        for (skey, svc) in target.services.iter_mut() {
            let covered = scope.is_none_or(|s| s.contains(skey));
            let joining: BTreeSet<DestKey> = svc
                .reals
                .iter()
                .filter(|(dkey, spec)| {
                    let before = match self.seen.get(&(*skey, **dkey)) {
                        Some(w) => Some(*w),
                        None => kernel(skey, dkey),
                    };
                    spec.weight > 0 && before.is_none_or(|w| w == 0)
                })
                .map(|(k, _)| *k)
                .collect();
            let others_serve = svc
                .reals
                .iter()
                .any(|(k, spec)| spec.weight > 0 && !joining.contains(k));
            for (dkey, spec) in svc.reals.iter_mut() {
                let id = (*skey, *dkey);
                let goal = spec.weight;
                seen.insert(id, goal);
                let over = svc.slow_start.get(dkey).copied().unwrap_or_default();
                if goal == 0 || over.is_zero() {
                    self.ramps.remove(&id);
                    continue;
                }
                if joining.contains(dkey) && others_serve {
                    self.ramps.insert(
                        id,
                        Ramp {
                            since: now,
                            over,
                            target: goal,
                            written: None,
                            next: now,
                        },
                    );
                }
                let Some(r) = self.ramps.get_mut(&id) else {
                    continue;
                };
                r.target = goal;
                r.over = over;
                let w = r.weight(now);
                if covered {
                    if w >= goal {
                        self.ramps.remove(&id);
                        continue;
                    }
                    r.written = Some(w);
                    let elapsed = now.saturating_sub(r.since);
                    r.next = next_change(goal, elapsed, over).map_or(r.until(), |d| r.since + d);
                }
                if w < goal {
                    spec.weight = w;
                    lowered.insert(*skey);
                }
            }
        }
        // Reals gone from the table aimed for are forgotten: back, they join again.
        self.ramps.retain(|id, _| seen.contains_key(id));
        self.seen = seen;
        lowered
    }

    /// When the next pass is due for a ramp's sake.
    pub fn next_due(&self) -> Option<Duration> {
        self.ramps.values().map(|r| r.next).min()
    }

    /// The services a ramp needs a pass of at `now`.
    pub fn due(&self, now: Duration) -> BTreeSet<ServiceKey> {
        self.ramps
            .iter()
            .filter(|(_, r)| r.next <= now)
            .map(|((s, _), _)| *s)
            .collect()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use model::{DestSpec, ForwardMethod, ServiceSpec};

    const S: fn(u64) -> Duration = Duration::from_secs;

    #[test]
    fn weight_rises_from_one_in_steps_to_the_target() {
        let over = S(20);
        let ws: Vec<u32> = (0..=21).map(|t| weight(100, S(t), over)).collect();
        assert_eq!(ws[0], 1);
        assert_eq!(ws[1], 1);
        assert_eq!(ws[2], 10);
        assert_eq!(ws[10], 50);
        assert_eq!(ws[19], 90);
        assert_eq!(ws[20], 100);
        assert!(ws.windows(2).all(|w| w[0] <= w[1]), "{ws:?}");
        // Small targets: never 0, never above the target.
        for t in 1..=12 {
            for e in 0..=20 {
                let w = weight(t, S(e), over);
                assert!((1..=t).contains(&w), "target {t} at {e}s: {w}");
            }
        }
        assert_eq!(weight(0, S(3), over), 0);
        assert_eq!(weight(7, S(3), Duration::ZERO), 7);
    }

    #[test]
    fn next_change_is_the_next_step_whose_weight_differs() {
        let over = S(20);
        assert_eq!(next_change(100, S(0), over), Some(S(2)));
        assert_eq!(next_change(100, S(3), over), Some(S(4)));
        assert_eq!(next_change(100, S(19), over), Some(S(20)));
        assert_eq!(next_change(100, S(20), over), None);
        // Weight 1 has nowhere to go; weight 2 goes from 1 to 2 at the end only... or halfway.
        assert_eq!(next_change(1, S(0), over), None);
        let at = next_change(2, S(0), over);
        assert_eq!(at, Some(S(20)));
        assert_eq!(weight(2, S(19), over), 1);
        // Every instant given is one where the weight differs.
        for target in [3, 10, 37] {
            let mut e = Duration::ZERO;
            while let Some(n) = next_change(target, e, over) {
                assert!(n > e);
                assert_ne!(weight(target, n, over), weight(target, e, over));
                assert_eq!(
                    weight(target, n - Duration::from_nanos(1), over),
                    weight(target, e, over)
                );
                e = n;
            }
            assert_eq!(weight(target, e, over), target);
        }
    }

    fn table(reals: &[(u8, u32)], slow: Option<Duration>) -> (ServiceKey, Desired) {
        let key = ServiceKey::tcp("10.0.0.1".parse().unwrap(), 80);
        let reals: crate::FlatMap<DestKey, DestSpec> = reals
            .iter()
            .map(|(n, w)| {
                (
                    DestKey {
                        addr: format!("10.0.1.{n}").parse().unwrap(),
                        port: 80,
                    },
                    DestSpec::new(ForwardMethod::DirectRoute, *w),
                )
            })
            .collect();
        let slow_start = match slow {
            Some(d) => reals.keys().map(|k| (*k, d)).collect(),
            None => BTreeMap::new(),
        };
        let svc = crate::DesiredService {
            name: None,
            spec: ServiceSpec::new("wlc", key.family()),
            drain_timeout: 30,
            reals,
            health: Default::default(),
            slow_start,
        };
        (
            key,
            Desired {
                services: [(key, svc)].into(),
            },
        )
    }

    fn weights(d: &Desired) -> Vec<u32> {
        d.services
            .values()
            .flat_map(|s| s.reals.values().map(|r| r.weight))
            .collect()
    }

    #[test]
    fn a_restart_adopts_the_kernel_and_a_new_real_ramps() {
        let (_, file) = table(&[(1, 10), (2, 10)], Some(S(20)));
        let mut r = Ramps::default();
        assert!(r.is_fresh());
        // The kernel has both in rotation: nothing ramps.
        let mut t = file.clone();
        assert!(r.apply(&mut t, &|_, _| Some(10), None, S(0)).is_empty());
        assert_eq!(weights(&t), [10, 10]);
        assert_eq!(r.next_due(), None);
        // A third real is added by an edit: it ramps, the others do not.
        let (key, file) = table(&[(1, 10), (2, 10), (3, 10)], Some(S(20)));
        let mut t = file.clone();
        let lowered = r.apply(&mut t, &|_, _| None, None, S(100));
        assert_eq!(lowered, [key].into());
        assert_eq!(weights(&t), [10, 10, 1]);
        assert_eq!(r.next_due(), Some(S(104)));
        assert!(r.due(S(103)).is_empty());
        assert_eq!(r.due(S(104)), [key].into());
        let mut t = file.clone();
        r.apply(&mut t, &|_, _| None, None, S(110));
        assert_eq!(weights(&t), [10, 10, 5]);
        let mut t = file.clone();
        assert!(r.apply(&mut t, &|_, _| None, None, S(120)).is_empty());
        assert_eq!(weights(&t), [10, 10, 10]);
        assert!(r.list().is_empty());
    }

    #[test]
    fn a_real_at_weight_zero_in_the_kernel_at_the_start_ramps() {
        let (_, file) = table(&[(1, 10), (2, 10)], Some(S(10)));
        let mut r = Ramps::default();
        let mut t = file.clone();
        let one = |_: &ServiceKey, d: &DestKey| {
            Some(if d.to_string().ends_with(".1:80") {
                0
            } else {
                10
            })
        };
        r.apply(&mut t, &one, None, S(0));
        assert_eq!(weights(&t), [1, 10]);
    }

    #[test]
    fn reals_that_come_in_together_with_nobody_serving_do_not_ramp() {
        // A new service (an empty table at the first pass, or an edit).
        let (key, file) = table(&[(1, 10), (2, 10)], Some(S(10)));
        let mut r = Ramps::default();
        let mut t = file.clone();
        assert!(r.apply(&mut t, &|_, _| None, None, S(0)).is_empty());
        assert_eq!(weights(&t), [10, 10]);
        // Every real down, then one back: it takes all the traffic whatever its weight.
        let mut down = file.clone();
        for s in down.services.values_mut() {
            for w in s.reals.values_mut() {
                w.weight = 0;
            }
        }
        r.apply(&mut down.clone(), &|_, _| None, None, S(1));
        let mut one = down.clone();
        one.services
            .get_mut(&key)
            .unwrap()
            .reals
            .values_mut()
            .next()
            .unwrap()
            .weight = 10;
        let mut t = one.clone();
        assert!(r.apply(&mut t, &|_, _| None, None, S(2)).is_empty());
        assert_eq!(weights(&t), [10, 0]);
        // The second one back now has company: it ramps.
        let mut t = file.clone();
        r.apply(&mut t, &|_, _| None, None, S(3));
        assert_eq!(weights(&t), [10, 1]);
    }

    #[test]
    fn back_from_zero_ramps_again_and_going_to_zero_ends_a_ramp() {
        let (_, file) = table(&[(1, 10), (2, 10)], Some(S(10)));
        let mut r = Ramps::default();
        let mut t = file.clone();
        r.apply(&mut t, &|_, _| Some(10), None, S(0));
        // Down (health drains it, or an operator does): weight 0, no ramp.
        let mut down = file.clone();
        for s in down.services.values_mut() {
            s.reals.values_mut().next().unwrap().weight = 0;
        }
        let mut t = down.clone();
        r.apply(&mut t, &|_, _| Some(10), None, S(5));
        assert_eq!(weights(&t), [0, 10]);
        assert!(r.list().is_empty());
        // Up again: it ramps from 1.
        let mut t = file.clone();
        r.apply(&mut t, &|_, _| Some(0), None, S(6));
        assert_eq!(weights(&t), [1, 10]);
        // Down in the middle of the ramp: the ramp ends; up again, it starts over.
        let mut t = down.clone();
        r.apply(&mut t, &|_, _| Some(0), None, S(12));
        assert!(r.list().is_empty());
        let mut t = file.clone();
        r.apply(&mut t, &|_, _| Some(0), None, S(13));
        assert_eq!(weights(&t), [1, 10]);
        // Left out of the table (on_failure: remove) and back: a join too.
        let mut gone = file.clone();
        for s in gone.services.values_mut() {
            let k = *s.reals.keys().next().unwrap();
            s.reals.remove(&k);
        }
        let mut t = gone.clone();
        r.apply(&mut t, &|_, _| Some(0), None, S(30));
        let mut t = file.clone();
        r.apply(&mut t, &|_, _| None, None, S(31));
        assert_eq!(weights(&t), [1, 10]);
    }

    #[test]
    fn without_slow_start_nothing_ramps() {
        let (_, file) = table(&[(1, 10), (2, 10)], None);
        let mut r = Ramps::default();
        let mut t = file.clone();
        assert!(r.apply(&mut t, &|_, _| None, None, S(0)).is_empty());
        assert_eq!(weights(&t), [10, 10]);
    }

    #[test]
    fn a_pass_that_does_not_cover_a_ramp_leaves_it_due() {
        let (key, file) = table(&[(1, 10), (2, 10)], Some(S(10)));
        // .1 is new, .2 serves already.
        let new_one =
            |_: &ServiceKey, d: &DestKey| (!d.to_string().ends_with(".1:80")).then_some(10);
        let mut r = Ramps::default();
        let mut t = file.clone();
        r.apply(&mut t, &new_one, None, S(0));
        assert_eq!(weights(&t), [1, 10]);
        assert_eq!(r.next_due(), Some(S(2)));
        // A pass of another service at 3 s: the step to weight 2 is still due.
        let mut t = file.clone();
        r.apply(&mut t, &new_one, Some(&BTreeSet::new()), S(3));
        assert_eq!(r.due(S(3)), [key].into());
        let mut t = file.clone();
        r.apply(&mut t, &new_one, Some(&[key].into()), S(3));
        assert!(r.due(S(3)).is_empty());
        assert_eq!(r.next_due(), Some(S(4)));
        // A target raised mid-ramp: the ramp goes on towards the new one.
        let (_, more) = table(&[(1, 20), (2, 10)], Some(S(10)));
        let mut t = more.clone();
        r.apply(&mut t, &new_one, None, S(5));
        assert_eq!(weights(&t), [weight(20, S(5), S(10)), 10]);
    }
}
