//! `plan`: desired + observed + owned → ordered operations. Pure and deterministic: the same
//! inputs give the same plan, and time enters only as the `now` the caller passes.

use std::collections::BTreeSet;

use model::{DestKey, ServiceKey};

use crate::op::{DelReason, Op};
use crate::state::{DEFAULT_DRAIN_TIMEOUT, Desired, Observed, ObservedReal, Owned, OwnedService};

/// Knobs of one planning pass.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Options {
    /// Own the whole table: services that are not in the config are removed, not left alone.
    pub exclusive: bool,
    /// The current Unix time in seconds, for drain deadlines.
    pub now: u64,
}

/// A drained real server still holding connections or persistence templates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Waiting {
    /// The service.
    pub service: ServiceKey,
    /// The real server.
    pub real: DestKey,
    /// Its established connections.
    pub active: u32,
    /// Its other connections (closing TCP, every UDP entry).
    pub inactive: u32,
    /// Persistence templates pointing at it.
    pub persistent: u32,
    /// Unix time after which it is deleted anyway.
    pub deadline: u64,
}

impl Waiting {
    fn of(service: ServiceKey, real: DestKey, r: &ObservedReal, deadline: u64) -> Self {
        Waiting {
            service,
            real,
            active: r.active,
            inactive: r.inactive,
            persistent: r.persistent,
            deadline,
        }
    }
}

impl std::fmt::Display for Waiting {
    /// "real R of S has 2 active, 1 inactive connections and 1 persistence template".
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "real {} of {} has {} active and {} inactive connections, {} persistence templates",
            self.real, self.service, self.active, self.inactive, self.persistent
        )
    }
}

/// How much of what lvsd manages the plan removes: the guard against an emptied or truncated
/// file. Entries already draining were approved earlier and are not counted again.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Guard {
    /// Managed services in the table.
    pub owned_services: usize,
    /// Of those, the ones this plan removes.
    pub removed_services: usize,
    /// Managed real servers in the table.
    pub owned_reals: usize,
    /// Of those, the ones this plan removes.
    pub removed_reals: usize,
}

impl Guard {
    /// True when the plan removes more than half of the managed services or real servers.
    pub fn tripped(&self) -> bool {
        (self.removed_services > 0 && self.removed_services * 2 > self.owned_services)
            || (self.removed_reals > 0 && self.removed_reals * 2 > self.owned_reals)
    }
}

impl std::fmt::Display for Guard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "the plan removes {} of {} managed services and {} of {} managed real servers",
            self.removed_services, self.owned_services, self.removed_reals, self.owned_reals
        )
    }
}

/// The result of planning: what to do, what is left alone, and what to remember.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    /// Operations in execution order.
    pub ops: Vec<Op>,
    /// Services lvsd does not manage; never touched.
    pub foreign: Vec<ServiceKey>,
    /// Drains waiting for connections to finish.
    pub waiting: Vec<Waiting>,
    /// The ownership record to keep once the operations have been carried out.
    pub owned: Owned,
    /// The removal guard's numbers.
    pub guard: Guard,
}

impl Plan {
    /// True when the table already matches: nothing to do and nothing waiting.
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty() && self.waiting.is_empty()
    }
}

/// Plans the changes that make `observed` equal `desired`, touching only what `owned` (or
/// `--exclusive`) says lvsd manages. Everything that can be changed in place is edited, never
/// deleted and re-added; a leaving real is drained before it is deleted.
pub fn plan(desired: &Desired, observed: &Observed, owned: &Owned, opts: Options) -> Plan {
    let mut p = Plan::default();
    // Into an empty table every service and real is a write: room for all of them at once
    // (110,000 at 10,000 × 10, which the vector would otherwise copy as it doubles).
    if observed.services.is_empty() {
        p.ops.reserve(
            desired.services.len()
                + desired
                    .services
                    .values()
                    .map(|s| s.reals.len())
                    .sum::<usize>(),
        );
    }
    for (key, ds) in &desired.services {
        let prev = owned.services.get(key);
        let mut own = OwnedService {
            reals: ds.reals.keys().copied().collect(),
            drain_timeout: ds.drain_timeout,
            ..OwnedService::default()
        };
        match observed.services.get(key) {
            None => {
                // Managed though gone from the table (deleted behind lvsd's back, or the
                // module reloaded): still lvsd's, so it counts for the guard as the record
                // says, as `plan_services` counts it (else the drift alone could make a plan
                // that removes little look like one that removes most).
                if let Some(prev) = prev.filter(|p| p.service_deadline.is_none()) {
                    p.guard.owned_services += 1;
                    p.guard.owned_reals += prev
                        .reals
                        .iter()
                        .filter(|r| !prev.draining.contains_key(r))
                        .count();
                }
                p.ops.push(Op::AddService {
                    key: *key,
                    name: ds.name.clone(),
                    spec: ds.spec.clone(),
                });
                for (rk, rs) in &ds.reals {
                    p.ops.push(Op::AddReal {
                        service: *key,
                        key: *rk,
                        spec: *rs,
                    });
                }
            }
            Some(os) => {
                if let Some(prev) = prev.filter(|p| p.service_deadline.is_none()) {
                    p.guard.owned_services += 1;
                    p.guard.owned_reals += prev
                        .reals
                        .iter()
                        .filter(|r| os.reals.contains_key(r) && !prev.draining.contains_key(r))
                        .count();
                }
                if os.spec != ds.spec {
                    p.ops.push(Op::EditService {
                        key: *key,
                        from: os.spec.clone(),
                        to: ds.spec.clone(),
                    });
                }
                for (rk, rs) in &ds.reals {
                    match os.reals.get(rk) {
                        None => p.ops.push(Op::AddReal {
                            service: *key,
                            key: *rk,
                            spec: *rs,
                        }),
                        Some(or) if or.spec != *rs => p.ops.push(Op::EditReal {
                            service: *key,
                            key: *rk,
                            from: or.spec,
                            to: *rs,
                        }),
                        Some(_) => {}
                    }
                }
                // Leaving reals lvsd put there stay its own until deleted; added at once after
                // the loop (one sort, see `crate::flat`).
                let mut leaving_owned = Vec::new();
                for (rk, or) in os.reals.iter().filter(|(rk, _)| !ds.reals.contains_key(rk)) {
                    let prev_deadline = prev.and_then(|p| p.draining.get(rk)).copied();
                    let was_owned = prev.is_some_and(|p| p.reals.contains(rk));
                    // Health decides whether a checked real or the fallback is in: its leaving
                    // is not a config losing its reals.
                    let by_health = ds.health.checks.contains_key(rk)
                        || ds.health.fallback.is_some_and(|(f, _)| f == *rk);
                    if was_owned && prev_deadline.is_none() && !by_health {
                        p.guard.removed_reals += 1;
                    }
                    if was_owned {
                        leaving_owned.push(*rk);
                    }
                    let removal = Removal {
                        service: *key,
                        real: *rk,
                        observed: *or,
                        deadline: prev_deadline,
                        timeout: ds.drain_timeout,
                    };
                    if let Some(deadline) = removal.plan(&mut p, opts.now) {
                        own.draining.insert(*rk, deadline);
                    }
                }
                own.reals.extend(leaving_owned);
            }
        }
        p.owned.services.insert(*key, own);
    }

    for (key, os) in observed
        .services
        .iter()
        .filter(|(k, _)| !desired.services.contains_key(k))
    {
        let prev = owned.services.get(key);
        if prev.is_none() && !opts.exclusive {
            p.foreign.push(*key);
            continue;
        }
        if prev.is_none_or(|p| p.service_deadline.is_none()) {
            let reals = match prev {
                Some(prev) => os.reals.keys().filter(|r| prev.reals.contains(r)).count(),
                None => os.reals.len(),
            };
            p.guard.owned_services += 1;
            p.guard.removed_services += 1;
            p.guard.owned_reals += reals;
            p.guard.removed_reals += reals;
        }
        let timeout = prev.map_or(DEFAULT_DRAIN_TIMEOUT, |p| p.drain_timeout);
        let base = if prev.is_some() {
            DelReason::NotInConfig
        } else {
            DelReason::Exclusive
        };
        let idle = os.reals.values().all(|r| r.idle(key));
        let prev_deadline = prev.and_then(|p| p.service_deadline);
        let all_zero = os.reals.values().all(|r| r.spec.weight == 0);
        // A real still weighted (a drain write that failed, a weight set back by hand) takes
        // new connections: the drain starts again from now.
        let prev_deadline = prev_deadline.filter(|_| all_zero);
        let why = match prev_deadline {
            // Drained by an earlier pass and idle now.
            Some(_) if idle => Some(DelReason::Drained),
            Some(d) if opts.now >= d => Some(DelReason::DrainTimeout),
            Some(_) => None,
            None if timeout == 0 || (idle && all_zero) => Some(base),
            // Weight 0 first, as for a single real; the next pass deletes it.
            None => None,
        };
        if let Some(why) = why {
            p.ops.push(Op::DelService { key: *key, why });
            continue;
        }
        let deadline = prev_deadline.unwrap_or(opts.now.saturating_add(timeout));
        for (rk, or) in &os.reals {
            if or.spec.weight != 0 {
                p.ops.push(Op::DrainReal {
                    service: *key,
                    key: *rk,
                    from: or.spec,
                    active: or.active,
                    deadline,
                });
            }
            p.waiting.push(Waiting::of(*key, *rk, or, deadline));
        }
        p.owned.services.insert(
            *key,
            OwnedService {
                reals: prev
                    .map(|p| p.reals.clone())
                    .unwrap_or_else(|| os.reals.keys().copied().collect()),
                drain_timeout: timeout,
                draining: Default::default(),
                service_deadline: Some(deadline),
            },
        );
    }
    // Managed, gone from the table (deleted by hand, or the module reloaded) and gone from the
    // file: nothing to delete, but the file takes them out of lvsd's hands, so they count as
    // removed. Else an emptied file read while the table is empty after a module reload passed
    // the guard, and the services of the last good config were never put back.
    for prev in owned
        .services
        .iter()
        .filter(|(k, o)| {
            o.service_deadline.is_none()
                && !desired.services.contains_key(k)
                && !observed.services.contains_key(k)
        })
        .map(|(_, o)| o)
    {
        let reals = prev
            .reals
            .iter()
            .filter(|r| !prev.draining.contains_key(r))
            .count();
        p.guard.owned_services += 1;
        p.guard.removed_services += 1;
        p.guard.owned_reals += reals;
        p.guard.removed_reals += reals;
    }
    p.ops = by_phase(std::mem::take(&mut p.ops));
    p
}

/// The operations in execution order: by phase, in the order planned within a phase (what a
/// stable sort by phase gives). In one pass over the operations, each moved twice: a cold
/// plan of 110,000 alternates services and their reals, and a merge sort of them cost half
/// the planning.
fn by_phase(ops: Vec<Op>) -> Vec<Op> {
    if ops.is_sorted_by_key(Op::phase) {
        return ops;
    }
    let mut phases: [Vec<Op>; 5] = Default::default();
    let total = ops.len();
    for op in ops {
        let at = usize::from(op.phase()).min(phases.len() - 1);
        if let Some(phase) = phases.get_mut(at) {
            phase.push(op);
        }
    }
    let mut out = Vec::with_capacity(total);
    for phase in phases {
        out.extend(phase);
    }
    out
}

/// [`plan`] for the services in `scope` only: a daemon carrying out a one-line edit plans what
/// the edit touched, not the whole table. Operations and ownership records cover `scope`; the
/// guard weighs the removals in `scope` against everything lvsd manages (from `owned`), so a
/// small scope cannot trip it by being small.
pub fn plan_services(
    desired: &Desired,
    observed: &Observed,
    owned: &Owned,
    opts: Options,
    scope: &BTreeSet<ServiceKey>,
) -> Plan {
    let desired = Desired {
        services: scope
            .iter()
            .filter_map(|k| desired.services.get(k).map(|s| (*k, s.clone())))
            .collect(),
    };
    let observed = Observed {
        services: scope
            .iter()
            .filter_map(|k| observed.services.get(k).map(|s| (*k, s.clone())))
            .collect(),
    };
    // The record in scope: what is out of it is counted below, never as removed.
    let in_scope = Owned {
        services: scope
            .iter()
            .filter_map(|k| owned.services.get(k).map(|s| (*k, s.clone())))
            .collect(),
        globals: owned.globals.clone(),
    };
    let mut p = plan(&desired, &observed, &in_scope, opts);
    for (_, o) in owned
        .services
        .iter()
        .filter(|(k, o)| !scope.contains(k) && o.service_deadline.is_none())
    {
        p.guard.owned_services += 1;
        p.guard.owned_reals += o.reals.len().saturating_sub(o.draining.len());
    }
    p
}

/// A real server that has to go from a service that stays.
struct Removal {
    service: ServiceKey,
    real: DestKey,
    observed: ObservedReal,
    deadline: Option<u64>,
    timeout: u64,
}

impl Removal {
    /// Deletes the real now if nothing holds it, else drains it; returns the drain deadline to
    /// remember while it waits.
    fn plan(self, p: &mut Plan, now: u64) -> Option<u64> {
        let del = |why| Op::DelReal {
            service: self.service,
            key: self.real,
            why,
        };
        let deadline = match self.deadline {
            // Drained to weight 0 by an earlier pass and now idle (no connection of any state,
            // no persistence template): nothing can start there any more, so deleting drops
            // nothing.
            Some(_) if self.observed.idle(&self.service) && self.observed.spec.weight == 0 => {
                p.ops.push(del(DelReason::Drained));
                return None;
            }
            Some(d) if self.observed.spec.weight == 0 && now >= d => {
                p.ops.push(del(DelReason::DrainTimeout));
                return None;
            }
            Some(d) if self.observed.spec.weight == 0 => d,
            // Still weighted: the drain never took (its write failed, or someone set the weight
            // back), so new connections went on arriving. The drain starts now: its connections
            // get the whole drain_timeout from the moment none can arrive.
            Some(_) => now.saturating_add(self.timeout),
            None if self.timeout == 0 => {
                p.ops.push(del(DelReason::NotInConfig));
                return None;
            }
            // Already at weight 0 and idle (drained by hand or by the config): delete.
            None if self.observed.idle(&self.service) && self.observed.spec.weight == 0 => {
                p.ops.push(del(DelReason::NotInConfig));
                return None;
            }
            // Always weight 0 first, even when idle right now: a connection may be starting
            // between this read of the table and the delete. The next pass deletes it.
            None => now.saturating_add(self.timeout),
        };
        if self.observed.spec.weight != 0 {
            p.ops.push(Op::DrainReal {
                service: self.service,
                key: self.real,
                from: self.observed.spec,
                active: self.observed.active,
                deadline,
            });
        }
        p.waiting.push(Waiting::of(
            self.service,
            self.real,
            &self.observed,
            deadline,
        ));
        Some(deadline)
    }
}

/// The operations of `replanned` that repeat a write of `written` the kernel accepted: after
/// the pass read the table back, the very same change is needed again, so the kernel keeps
/// something the planner does not expect (a value it normalises, a request it takes but does
/// not carry out). Writing it again cannot help: each is a failure to report and back off on.
///
/// The writes are grouped by service, so a large pass (110,000 writes at 10,000 × 10) costs
/// one lookup a replanned operation, not a comparison with every write; nothing written,
/// nothing is compared at all.
pub fn stuck<'a>(written: &[Op], replanned: &'a [Op]) -> Vec<&'a Op> {
    if written.is_empty() || replanned.is_empty() {
        return vec![];
    }
    let mut sent: std::collections::BTreeMap<ServiceKey, Vec<model::Request>> =
        std::collections::BTreeMap::new();
    for op in written {
        sent.entry(op.service()).or_default().push(op.to_request());
    }
    replanned
        .iter()
        .filter(|op| {
            sent.get(&op.service())
                .is_some_and(|w| w.contains(&op.to_request()))
        })
        .collect()
}

/// For a hashing (`mh` or `sh`) service: why the kernel's order of its real servers is not
/// the order a director starting from this config would have, if it is not.
///
/// The kernel puts each new destination at the head of the service's list, and `mh` fills its
/// lookup table walking that list (`sh` its buckets), so two directors map a flow to the same real server only
/// when their lists are in the same order. lvsd adds reals in one order everywhere (sorted), so
/// a fresh director holds them in the reverse of that; an edit history (a real added later,
/// or deleted and added again) puts them in another. `kernel_order` is the list as the kernel
/// dumps it; reals that are not in the config (draining) are left out of the comparison.
pub fn mh_misaligned(
    key: &ServiceKey,
    desired: &crate::state::DesiredService,
    kernel_order: &[DestKey],
) -> Option<String> {
    if !crate::hashing::hashes_on_order(&desired.spec.scheduler) {
        return None;
    }
    let fresh: Vec<DestKey> = desired.reals.keys().rev().copied().collect();
    let now: Vec<DestKey> = kernel_order
        .iter()
        .filter(|k| desired.reals.contains_key(k))
        .copied()
        .collect();
    if now.len() != fresh.len() || now == fresh {
        // Still being added (the pass will complete it), or aligned.
        return None;
    }
    let show = |v: &[DestKey]| {
        v.iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    };
    Some(format!(
        "service {key} ({sched}): the kernel holds its real servers in the order {}, a director starting from this config would hold {}; `{sched}` maps flows by that order, so directors with another edit history send the same flow to other real servers. To realign, run `lvsd realign {}` (it re-creates the service in the fresh order; it refuses while the service carries connections unless --force, which cuts them: take this director out of rotation first)",
        show(&now),
        show(&fresh),
        desired.name.clone().unwrap_or_else(|| format!("'{key}'")),
        sched = desired.spec.scheduler,
    ))
}

#[cfg(test)]
mod order_tests {
    use super::*;
    use model::{DestSpec, ForwardMethod};
    use proptest::prelude::*;

    fn op(kind: u8, n: u8) -> Op {
        let service = ServiceKey::Fwmark {
            mark: u32::from(n),
            family: model::Family::Inet,
        };
        let key = DestKey {
            addr: std::net::IpAddr::from([10, 0, 0, n]),
            port: 80,
        };
        let spec = DestSpec::new(ForwardMethod::DirectRoute, u32::from(n));
        match kind % 5 {
            0 => Op::DelService {
                key: service,
                why: DelReason::Drained,
            },
            1 => Op::AddReal { service, key, spec },
            2 => Op::EditReal {
                service,
                key,
                from: spec,
                to: spec,
            },
            3 => Op::DelReal {
                service,
                key,
                why: DelReason::NotInConfig,
            },
            _ => Op::DelService {
                key: service,
                why: DelReason::NotInConfig,
            },
        }
    }

    proptest! {
        /// The one-pass ordering is the stable sort by phase it replaced.
        #[test]
        fn by_phase_is_the_stable_sort_by_phase(ops in proptest::collection::vec((0u8..5, any::<u8>()), 0..64)) {
            let ops: Vec<Op> = ops.into_iter().map(|(k, n)| op(k, n)).collect();
            let mut sorted = ops.clone();
            sorted.sort_by_key(Op::phase);
            prop_assert_eq!(by_phase(ops), sorted);
        }
    }
}
