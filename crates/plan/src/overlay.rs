//! Operators' overrides, the pure half: a real (or a whole service) drained or given another
//! weight for a while, without editing the file (`lvsd drain`, `lvsd weight`). Overrides are one
//! more input to the table the planner aims for, laid over the config with health applied:
//! nothing here reads a clock (`now` is Unix seconds, passed in), stores or logs anything.

use std::collections::{BTreeMap, BTreeSet};

use model::{DestKey, ServiceKey};

use crate::state::Desired;

/// What an override does to the reals it covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Weight 0: no new connections; established ones finish, the real stays in the table.
    Drain,
    /// This weight instead of the file's.
    Weight(u32),
}

impl Action {
    /// The weight the override asks for.
    pub fn weight(self) -> u32 {
        match self {
            Action::Drain => 0,
            Action::Weight(w) => w,
        }
    }
}

/// What an override covers: a service (every real of it) or one real of a service.
pub type Target = (ServiceKey, Option<DestKey>);

/// One override, with who set it and why (shown next to the file's value, logged, kept).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Override {
    /// The service.
    pub service: ServiceKey,
    /// The real; `None` for the whole service.
    pub real: Option<DestKey>,
    /// Drain, or a weight.
    pub action: Action,
    /// When it ends by itself (Unix seconds); `None`: when it is cleared.
    pub until: Option<u64>,
    /// The operator's words.
    pub reason: String,
    /// Who set it (the peer's uid and pid as the kernel gave them).
    pub uid: u32,
    /// The setting process.
    pub pid: u32,
    /// When it was set (Unix seconds).
    pub set_at: u64,
}

impl Override {
    /// What it covers.
    pub fn target(&self) -> Target {
        (self.service, self.real)
    }

    /// In force at `now` (an override whose end has come is over, also before it is removed).
    pub fn in_force(&self, now: u64) -> bool {
        self.until.is_none_or(|u| u > now)
    }
}

/// Why an override ended without being cleared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    /// Its time was up.
    Expired,
    /// Its service or real left the file.
    LeftTheFile,
}

/// Every override, by what it covers (one per target: a new one replaces the old).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Overrides {
    /// By target.
    pub list: BTreeMap<Target, Override>,
}

impl Overrides {
    /// No override at all: the planner aims for the config (with health) itself.
    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    /// Sets `o`, returning the one it replaces.
    pub fn set(&mut self, o: Override) -> Option<Override> {
        self.list.insert(o.target(), o)
    }

    /// Clears the override of `target`, returning it.
    pub fn clear(&mut self, target: &Target) -> Option<Override> {
        self.list.remove(target)
    }

    /// The services that have an override (what a change or an end makes stale).
    pub fn services(&self) -> BTreeSet<ServiceKey> {
        self.list.keys().map(|(s, _)| *s).collect()
    }

    /// The earliest end to come (Unix seconds), for the daemon's timer.
    pub fn next_expiry(&self) -> Option<u64> {
        self.list.values().filter_map(|o| o.until).min()
    }

    /// Removes and returns the overrides over at `now` (their time up) and those whose service
    /// or real is no longer in `file` (they end with it: a real that comes back later comes
    /// back with the file's value).
    pub fn end(&mut self, file: &Desired, now: u64) -> Vec<(Override, Ended)> {
        let mut ended = vec![];
        self.list.retain(|_, o| {
            let present = file
                .services
                .get(&o.service)
                .is_some_and(|s| o.real.is_none_or(|r| s.reals.contains_key(&r)));
            let why = if !present {
                Ended::LeftTheFile
            } else if !o.in_force(now) {
                Ended::Expired
            } else {
                return true;
            };
            ended.push((o.clone(), why));
            false
        });
        ended
    }

    /// The override that decides the weight of `real` of `service` at `now`, and the weight
    /// it gives: a drain of the service or of the real wins over a weight.
    pub fn for_real(
        &self,
        service: &ServiceKey,
        real: &DestKey,
        now: u64,
    ) -> Option<(u32, &Override)> {
        [
            self.list.get(&(*service, None)),
            self.list.get(&(*service, Some(*real))),
        ]
        .into_iter()
        .flatten()
        .filter(|o| o.in_force(now))
        .map(|o| (o.action.weight(), o))
        .min_by_key(|(w, _)| *w)
    }

    /// Lays the overrides in force at `now` over `target`, the table the planner aims for (the
    /// config `file` with health applied). Only reals of the file are changed, and a weight
    /// override does not bring back a real health took out of rotation (its weight then differs
    /// from the file's): the lower weight wins. Returns the services changed.
    pub fn apply(&self, file: &Desired, target: &mut Desired, now: u64) -> BTreeSet<ServiceKey> {
        let mut changed = BTreeSet::new();
        for service in self.services() {
            let (Some(f), Some(t)) = (
                file.services.get(&service),
                target.services.get_mut(&service),
            ) else {
                continue;
            };
            for (key, spec) in &mut t.reals {
                let Some(file_weight) = f.reals.get(key).map(|s| s.weight) else {
                    continue;
                };
                let Some((w, _)) = self.for_real(&service, key, now) else {
                    continue;
                };
                let w = if spec.weight == file_weight {
                    w
                } else {
                    spec.weight.min(w)
                };
                if spec.weight != w {
                    spec.weight = w;
                    changed.insert(service);
                }
            }
        }
        changed
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;
    use crate::state::DesiredService;
    use model::{DestSpec, ServiceSpec};

    fn svc(port: u16) -> ServiceKey {
        ServiceKey::tcp("10.0.0.1".parse().unwrap(), port)
    }

    fn real(last: u8) -> DestKey {
        DestKey {
            addr: format!("10.0.1.{last}").parse().unwrap(),
            port: 80,
        }
    }

    fn spec(weight: u32) -> DestSpec {
        DestSpec::new(model::ForwardMethod::DirectRoute, weight)
    }

    /// Service :80 with reals .1 (weight 5) and .2 (weight 3).
    fn file() -> Desired {
        let reals = [(real(1), spec(5)), (real(2), spec(3))].into();
        let s = DesiredService {
            name: Some("web".into()),
            spec: ServiceSpec::new("wlc", model::Family::Inet),
            drain_timeout: 30,
            reals,
            health: Default::default(),
            slow_start: Default::default(),
        };
        Desired {
            services: [(svc(80), s)].into(),
        }
    }

    fn ov(real: Option<DestKey>, action: Action, until: Option<u64>) -> Override {
        Override {
            service: svc(80),
            real,
            action,
            until,
            reason: "kernel upgrade".into(),
            uid: 0,
            pid: 1,
            set_at: 100,
        }
    }

    fn weights(d: &Desired) -> Vec<u32> {
        d.services[&svc(80)]
            .reals
            .values()
            .map(|s| s.weight)
            .collect()
    }

    #[test]
    fn a_drained_real_goes_to_weight_0_and_stays_in_the_table() {
        let mut o = Overrides::default();
        o.set(ov(Some(real(1)), Action::Drain, Some(200)));
        let mut t = file();
        assert_eq!(o.apply(&file(), &mut t, 150), [svc(80)].into());
        assert_eq!(weights(&t), [0, 3]);
    }

    #[test]
    fn at_expiry_the_files_value_comes_back() {
        let mut o = Overrides::default();
        o.set(ov(Some(real(1)), Action::Drain, Some(200)));
        let mut t = file();
        // Over at 200 also before it is removed.
        assert!(o.apply(&file(), &mut t, 200).is_empty());
        assert_eq!(weights(&t), [5, 3]);
        assert_eq!(o.next_expiry(), Some(200));
        assert!(o.end(&file(), 199).is_empty());
        let ended = o.end(&file(), 200);
        assert_eq!(ended.len(), 1);
        assert_eq!(ended[0].1, Ended::Expired);
        assert!(o.is_empty());
        assert_eq!(o.next_expiry(), None);
    }

    #[test]
    fn a_weight_override_sets_the_weight_and_a_drain_wins_over_it() {
        let mut o = Overrides::default();
        o.set(ov(Some(real(2)), Action::Weight(9), None));
        let mut t = file();
        o.apply(&file(), &mut t, 150);
        assert_eq!(weights(&t), [5, 9]);
        o.set(ov(None, Action::Drain, Some(300)));
        let mut t = file();
        o.apply(&file(), &mut t, 150);
        assert_eq!(weights(&t), [0, 0]);
        let (w, by) = o.for_real(&svc(80), &real(2), 150).unwrap();
        assert_eq!((w, by.real), (0, None));
        // The service's drain over, the weight is back.
        let mut t = file();
        o.apply(&file(), &mut t, 300);
        assert_eq!(weights(&t), [5, 9]);
    }

    #[test]
    fn a_weight_does_not_bring_back_a_real_health_took_out() {
        let mut o = Overrides::default();
        o.set(ov(Some(real(1)), Action::Weight(9), None));
        let mut t = file();
        // Health drained .1.
        t.services
            .get_mut(&svc(80))
            .unwrap()
            .reals
            .get_mut(&real(1))
            .unwrap()
            .weight = 0;
        o.apply(&file(), &mut t, 150);
        assert_eq!(weights(&t), [0, 3]);
    }

    #[test]
    fn reals_not_in_the_file_are_left_alone() {
        // A fallback health added is not the operator's to weigh.
        let mut o = Overrides::default();
        o.set(ov(None, Action::Drain, None));
        let mut t = file();
        t.services
            .get_mut(&svc(80))
            .unwrap()
            .reals
            .insert(real(9), spec(1));
        o.apply(&file(), &mut t, 150);
        assert_eq!(weights(&t), [0, 0, 1]);
    }

    #[test]
    fn an_override_ends_with_its_real_or_service_leaving_the_file() {
        let mut o = Overrides::default();
        o.set(ov(Some(real(1)), Action::Drain, None));
        o.set(ov(Some(real(2)), Action::Weight(1), None));
        let mut f = file();
        f.services.get_mut(&svc(80)).unwrap().reals.remove(&real(1));
        let ended = o.end(&f, 150);
        assert_eq!(ended.len(), 1);
        assert_eq!(ended[0].0.real, Some(real(1)));
        assert_eq!(ended[0].1, Ended::LeftTheFile);
        let ended = o.end(&Desired::default(), 150);
        assert_eq!(ended.len(), 1);
        assert!(o.is_empty());
    }

    #[test]
    fn a_new_override_replaces_the_old_one_of_the_same_target() {
        let mut o = Overrides::default();
        assert!(o.set(ov(Some(real(1)), Action::Drain, None)).is_none());
        let old = o.set(ov(Some(real(1)), Action::Weight(2), None)).unwrap();
        assert_eq!(old.action, Action::Drain);
        assert_eq!(o.list.len(), 1);
        assert!(o.clear(&(svc(80), Some(real(1)))).is_some());
        assert!(o.is_empty());
    }
}
