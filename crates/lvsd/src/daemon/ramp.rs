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

impl<I: crate::io::Io> super::Daemon<I> {
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

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use std::cell::RefCell;
    use std::path::PathBuf;
    use std::rc::Rc;
    use std::time::Duration;

    use super::*;
    use crate::engine::PassSpec;
    use crate::sim::world::{SimIo, World};

    fn cfg(reals: &[u8]) -> config::Config {
        let mut text =
            "services:\n  - name: web\n    address: 10.1.0.1:80\n    slow_start: 20s\n    reals:\n"
                .to_owned();
        for r in reals {
            text.push_str(&format!(
                "      - address: 10.1.1.{r}\n        weight: 100\n"
            ));
        }
        config::parse(&text, "t.yaml").unwrap()
    }

    /// The weights, by real (the kernel lists the newest real first).
    fn weights(world: &Rc<RefCell<World>>) -> Vec<u32> {
        let w = world.borrow();
        w.services
            .iter()
            .flat_map(|s| {
                let mut d: Vec<_> = s.dests.iter().map(|d| (d.key, d.spec.weight)).collect();
                d.sort();
                d.into_iter().map(|(_, w)| w)
            })
            .collect()
    }

    /// One pass as the daemon runs it: the ramps laid over the config, then the engine.
    async fn pass(engine: &mut Engine<SimIo>, ramps: &mut Ramps, cfg: &config::Config, now: u64) {
        let target = lay(
            ramps,
            engine,
            cfg,
            Cow::Borrowed(&cfg.desired),
            Some(&Scope::All),
            Duration::from_secs(now),
        )
        .await;
        let allow = |_: &plan::Op| true;
        let none = BTreeSet::new();
        let spec = PassSpec {
            table: Some(None),
            host: false,
            force: false,
            strict: false,
            allow: &allow,
            allow_host: true,
            unable: &none,
            may_yield: false,
        };
        let _ = engine.converge(cfg, &target, &spec).await;
    }

    /// A new service comes up at its weights; a real added to it ramps from 1, a step at a
    /// time; a restarted daemon (new memory, same kernel) sends no real back to weight 1.
    #[test]
    fn the_daemon_ramps_a_real_added_and_a_restart_keeps_the_kernels_weights() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .start_paused(true)
            .build()
            .unwrap();
        let world = Rc::new(RefCell::new(World::new(1_700_000_000, 30)));
        let mut engine = Engine::with_io(SimIo(world.clone()), PathBuf::from("/sim"), false);
        let mut ramps = Ramps::default();
        rt.block_on(async {
            pass(&mut engine, &mut ramps, &cfg(&[1, 2]), 0).await;
            assert_eq!(weights(&world), [100, 100], "a new service: no ramp");
            let three = cfg(&[1, 2, 3]);
            pass(&mut engine, &mut ramps, &three, 100).await;
            assert_eq!(weights(&world), [100, 100, 1]);
            assert_eq!(ramps.next_due(), Some(Duration::from_secs(102)));
            pass(&mut engine, &mut ramps, &three, 110).await;
            assert_eq!(weights(&world), [100, 100, 50]);
            // A restart halfway: the kernel has .3 at 50, in rotation, so it is taken as ramped.
            let mut engine = Engine::with_io(SimIo(world.clone()), PathBuf::from("/sim"), false);
            let mut ramps = Ramps::default();
            pass(&mut engine, &mut ramps, &three, 0).await;
            assert_eq!(weights(&world), [100, 100, 100]);
            assert!(ramps.list().is_empty());
        });
    }
}
