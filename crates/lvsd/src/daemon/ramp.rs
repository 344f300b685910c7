//! The daemon's side of slow start: the ramps laid over the table each pass aims for (after
//! health and overrides, so a real back from a failed check or a drain ramps too), a pass of
//! a service when one of its ramps steps, and the ramps shown in status and metrics. Join
//! times live in memory only: a restarted daemon takes the reals the kernel has in rotation as
//! ramped (it never sends every real back to weight 1), and ramps those at weight 0 or absent.

use std::borrow::Cow;
use std::collections::BTreeSet;

use ipvs::{DestKey, ServiceKey};
use plan::Desired;
use plan::ramp::Ramps;

use super::decide::{At, Scope};
use crate::engine::Engine;
use crate::io::Io;
use crate::telemetry::RampView;

/// Lays `ramps` over `target`, the table the pass about to run (over `table`, its scope; `None`:
/// no table part) aims for, at `now` on the daemon's clock. No copy of the table when no real
/// has a slow start.
pub(super) async fn lay<'a, I: Io>(
    ramps: &mut Ramps,
    engine: &mut Engine<I>,
    cfg: &config::Config,
    target: Cow<'a, Desired>,
    table: Option<&Scope>,
    now: At,
) -> Cow<'a, Desired> {
    if ramps.list().is_empty()
        && cfg
            .desired
            .services
            .values()
            .all(|s| s.slow_start.is_empty())
    {
        // Nothing ramps and nothing can: what was seen is forgotten, so a slow start added
        // later takes the kernel's weights as they are then.
        if !ramps.is_fresh() {
            *ramps = Ramps::default();
        }
        return target;
    }
    let kernel = engine.table_now(cfg).await;
    let weight_in_kernel = |s: &ServiceKey, d: &DestKey| -> Option<u32> {
        match kernel {
            // Unknown: taken as in rotation (no real is sent back to weight 1 on a guess).
            None => Some(1),
            Some(t) => t
                .services
                .get(s)
                .and_then(|svc| svc.reals.get(d))
                .map(|r| r.spec.weight),
        }
    };
    let none = BTreeSet::new();
    let scope = match table {
        None => Some(&none),
        Some(Scope::All) => None,
        Some(Scope::Services(s)) => Some(s),
    };
    let mut t = target.into_owned();
    let before: BTreeSet<(ServiceKey, DestKey)> = ramps.list().keys().copied().collect();
    ramps.apply(&mut t, &weight_in_kernel, scope, now);
    for ((s, d), r) in ramps.list() {
        if !before.contains(&(*s, *d)) {
            tracing::info!(service = %s, real = %d, target = r.target, over = ?r.over, "slow start: {d} of {s} joins at weight {} and reaches {} in {:?}", r.weight(now), r.target, r.over);
        }
    }
    for (s, d) in before {
        if !ramps.list().contains_key(&(s, d)) {
            tracing::debug!(service = %s, real = %d, "slow start over (the real has its whole weight, or left rotation)");
        }
    }
    Cow::Owned(t)
}

impl super::Daemon {
    /// Asks for a pass of each service one of whose ramps steps now.
    pub(super) fn step_ramps(&mut self) {
        let due = self.ramps.due(self.decisions.clock.now());
        for service in due {
            // A wish of the config's, like a health change: passed at once.
            self.decisions.on(super::Event::HealthChanged(service));
        }
    }

    /// When the loop must wake for the next step of a ramp.
    pub(super) fn ramps_wake(&self) -> Option<At> {
        self.ramps.next_due()
    }

    /// Hands the ramps under way to status and metrics.
    pub(super) fn publish_ramps(&self, file: &Desired) {
        let now = self.decisions.clock.now();
        let unix = crate::engine::now();
        let at_unix = |at: At| {
            if at >= now {
                unix.saturating_add((at - now).as_secs())
            } else {
                unix.saturating_sub((now - at).as_secs())
            }
        };
        let list = self
            .ramps
            .list()
            .iter()
            .map(|((s, d), r)| {
                let name = file.services.get(s).and_then(|svc| svc.name.clone());
                let shown = match &name {
                    Some(n) => format!("{n} ({s})"),
                    None => s.to_string(),
                };
                let weight = r.written.unwrap_or_else(|| r.weight(now));
                let left = r.until().saturating_sub(now).as_secs();
                RampView {
                    service: s.to_string(),
                    name,
                    real: d.to_string(),
                    weight,
                    target: r.target,
                    since: at_unix(r.since),
                    until: at_unix(r.until()),
                    line: format!(
                        "{shown} real {d}: weight {weight} of {}, slow start of {:?}, full in {left} s",
                        r.target, r.over
                    ),
                }
            })
            .collect();
        self.telemetry.ramps(list);
    }
}
