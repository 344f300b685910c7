//! One task per checked real, each probing at its interval, all sharing a bound on how many
//! probes run at once. Tasks follow the config: unchanged checks keep running undisturbed.
//! Each task runs its real's rise/fall state machine (`plan::health::Health`) itself and
//! reports only what the daemon needs to hear — the first result, a transition, a new reason —
//! so thousands of checks cost the daemon's loop nothing while nothing changes.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::Arc;

use plan::health::{CheckId, CheckSpec, Health};
use tokio::sync::{Semaphore, mpsc};
use tokio::task::JoinHandle;

use crate::probe::{Outcome, probe};

/// What a check tells the daemon's loop: its first result, then each transition and each
/// new reason.
#[derive(Debug, Clone)]
pub struct Report {
    /// Which service and real.
    pub id: CheckId,
    /// Which run of that check: a report still in the channel from a check that was changed
    /// (or removed and added again) is not the current check's, and must not count for it.
    pub generation: u64,
    /// The last probe's result.
    pub outcome: Outcome,
    /// The real's state after it (rise/fall applied).
    pub up: bool,
    /// The state changed with this result.
    pub changed: bool,
}

/// Called with how much later than planned each probe started (its interval after the last
/// one's start, or at once for the first): what a loaded checker falls behind by.
pub type OnStart = Arc<dyn Fn(std::time::Duration) + Send + Sync>;

/// The running checks.
pub struct Monitor {
    tasks: BTreeMap<CheckId, (CheckSpec, u64, JoinHandle<()>)>,
    tx: mpsc::UnboundedSender<Report>,
    limit: Arc<Semaphore>,
    generation: u64,
    on_start: OnStart,
}

impl Monitor {
    /// A monitor running at most `concurrency` probes at a time, and the channel its reports
    /// arrive on. `on_start` hears each probe's lateness.
    pub fn new(
        concurrency: usize,
        on_start: OnStart,
    ) -> (Monitor, mpsc::UnboundedReceiver<Report>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let m = Monitor {
            tasks: BTreeMap::new(),
            tx,
            limit: Arc::new(Semaphore::new(concurrency.max(1))),
            generation: 0,
            on_start,
        };
        (m, rx)
    }

    /// Runs exactly `wanted` (each check with the state its real starts from): new or changed
    /// checks start (probing at once), checks that went away stop, the rest keep their rhythm
    /// and their state.
    pub fn sync<'a>(
        &mut self,
        wanted: impl IntoIterator<Item = (&'a CheckId, &'a CheckSpec, bool)>,
    ) {
        let wanted: BTreeMap<CheckId, (CheckSpec, bool)> = wanted
            .into_iter()
            .map(|(i, s, up)| (*i, (s.clone(), up)))
            .collect();
        self.tasks.retain(|id, (spec, _, task)| {
            let keep = wanted.get(id).is_some_and(|(s, _)| s == spec);
            if !keep {
                task.abort();
            }
            keep
        });
        for (id, (spec, up)) in wanted {
            if !self.tasks.contains_key(&id) {
                self.start(id, spec, up);
            }
        }
    }

    /// Starts the check of `id`, its real starting `up` or down.
    fn start(&mut self, id: CheckId, spec: CheckSpec, up: bool) {
        let target = SocketAddr::new(id.1.addr, spec.port.unwrap_or(id.1.port));
        self.generation += 1;
        let generation = self.generation;
        let tx = self.tx.clone();
        let limit = self.limit.clone();
        let on_start = self.on_start.clone();
        let s = spec.clone();
        let task = tokio::spawn(async move {
            let mut health = Health::new(up);
            let mut said: Option<String> = None;
            let mut planned = tokio::time::Instant::now();
            loop {
                let (outcome, started) = match limit.acquire().await {
                    Ok(_permit) => {
                        let started = tokio::time::Instant::now();
                        on_start(started.saturating_duration_since(planned));
                        (probe(target, &s).await, started)
                    }
                    Err(_) => return,
                };
                let changed = health
                    .record(outcome.ok, &outcome.reason, s.rise, s.fall)
                    .is_some();
                if changed || said.as_deref() != Some(outcome.reason.as_str()) {
                    said = Some(outcome.reason.clone());
                    let report = Report {
                        id,
                        generation,
                        up: health.up,
                        changed,
                        outcome,
                    };
                    if tx.send(report).is_err() {
                        return;
                    }
                }
                planned = started + s.interval;
                tokio::time::sleep_until(planned).await;
            }
        });
        self.tasks.insert(id, (spec, generation, task));
    }

    /// [`Monitor::sync`] for the checks of `services` (those an edit touched): they become
    /// exactly `wanted`; the others keep running as they are, and are not even looked at (a
    /// large table's other checks cost an edit nothing).
    pub fn sync_some<'a>(
        &mut self,
        services: &BTreeSet<model::ServiceKey>,
        wanted: impl IntoIterator<Item = (&'a CheckId, &'a CheckSpec, bool)>,
    ) {
        let wanted: BTreeMap<CheckId, (CheckSpec, bool)> = wanted
            .into_iter()
            .map(|(i, s, up)| (*i, (s.clone(), up)))
            .collect();
        let stale: Vec<CheckId> = services
            .iter()
            .flat_map(|svc| {
                self.tasks
                    .range((*svc, plan::health::FIRST_DEST)..)
                    .take_while(move |(id, _)| id.0 == *svc)
            })
            .filter(|(id, (spec, _, _))| wanted.get(id).is_none_or(|(s, _)| s != spec))
            .map(|(id, _)| *id)
            .collect();
        for id in stale {
            if let Some((_, _, task)) = self.tasks.remove(&id) {
                task.abort();
            }
        }
        for (id, (spec, up)) in wanted {
            if !self.tasks.contains_key(&id) {
                self.start(id, spec, up);
            }
        }
    }

    /// Whether `report` comes from the check running now for its real (not from one that was
    /// aborted or replaced since it was sent).
    pub fn is_current(&self, report: &Report) -> bool {
        self.tasks
            .get(&report.id)
            .is_some_and(|(_, g, _)| *g == report.generation)
    }

    /// Checks running.
    pub fn len(&self) -> usize {
        self.tasks.len()
    }

    /// None running.
    pub fn is_empty(&self) -> bool {
        self.tasks.is_empty()
    }
}

impl Drop for Monitor {
    fn drop(&mut self) {
        for (_, _, task) in self.tasks.values() {
            task.abort();
        }
    }
}
