//! The table the planner aims for: the config with health applied (reals drained, a fallback
//! in), and each service's standing, brought up to date for what went stale. Pure.

use std::collections::BTreeMap;

use plan::Desired;
use plan::health::{HealthTable, ServiceStatus};

use super::decide::Scope;

/// Brings the table the planner aims for (the config with health applied) and the services'
/// standings up to date for the services in `stale`. `table` is `None` while no service has
/// health settings: the planner then aims for the config itself (no copy of a large table).
/// Returns whether a standing changed.
pub(super) fn refresh_effective(
    health: &HealthTable,
    desired: &Desired,
    stale: Scope,
    table: &mut Option<Desired>,
    statuses: &mut BTreeMap<ipvs::ServiceKey, ServiceStatus>,
) -> bool {
    let whole = |table: &mut Option<Desired>, statuses: &mut BTreeMap<_, _>| {
        let before = std::mem::take(statuses);
        if let Some((t, st)) = health.effective_if_any(desired) {
            *table = Some(t);
            *statuses = st.into_iter().map(|s| (s.service, s)).collect();
        } else {
            *table = None;
        }
        before != *statuses
    };
    let keys = match stale {
        Scope::All => return whole(table, statuses),
        Scope::Services(keys) => keys,
    };
    let Some(t) = table else {
        // Still the config itself, unless one of these services brought health settings.
        return keys
            .iter()
            .filter_map(|k| desired.services.get(k))
            .any(|s| !s.health.is_inert())
            && whole(table, statuses);
    };
    let mut changed = false;
    for k in keys {
        let st = match desired.services.get(&k) {
            Some(svc) => {
                let (svc, st) = health.effective_service(&k, svc);
                t.services.insert(k, svc);
                st
            }
            None => {
                t.services.remove(&k);
                None
            }
        };
        match st {
            Some(st) if statuses.get(&k) != Some(&st) => {
                statuses.insert(k, st);
                changed = true;
            }
            Some(_) => {}
            None => changed |= statuses.remove(&k).is_some(),
        }
    }
    changed
}
