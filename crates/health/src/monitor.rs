//! One task per distinct probe, each probing at its interval, all sharing a bound on how many
//! probes run at once. Checks that probe alike — the same target address and port, the same
//! kind, timeout and interval — share one probe: many services on the same reals cost one
//! connection per real and interval, not one per service. Each check (service, real) still has
//! its own rise/fall state machine (`plan::health::Health`, fed by the shared result: rise and
//! fall may differ between the services) and its own reports, which say only what the daemon
//! needs to hear — the first result, a transition, a new reason — so thousands of checks cost
//! the daemon's loop nothing while nothing changes.
//!
//! Probes keep to a fixed grid: each probe's slot is the last one's plus the interval (a slow
//! probe does not push the next ones later; a slot missed entirely is skipped, not made up in
//! a burst), and each probe's first slot is spread over its interval by a hash of the probe,
//! so thousands of checks started together do not all probe in the same instant.

use std::collections::hash_map::DefaultHasher;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::hash::{Hash, Hasher};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use plan::health::{CheckId, CheckSpec, Health};
use tokio::runtime::Handle;
use tokio::sync::{Semaphore, mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio::time::Instant;

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

/// Called with how much later than planned each probe started (its slot on its interval's
/// grid): what a loaded checker falls behind by.
pub type OnStart = Arc<dyn Fn(Duration) + Send + Sync>;

/// Probes running at once, at most, for a process whose open-file limit is what it is now:
/// what bounds the sockets (and exec checks' processes) the checks hold. Half the soft limit,
/// the other half left to the rest of the process (the daemon's netlink sockets, files,
/// clients), between 64 and 4096. It must not bound the rate the checks ask for: at 64, probes
/// of 100-200 ms (an emulated host's) capped the checks at about 300 a second, and each check
/// fell behind its interval.
pub fn probe_bound() -> usize {
    let soft = nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)
        .map_or(1024, |(soft, _)| soft);
    usize::try_from(soft / 2).unwrap_or(4096).clamp(64, 4096)
}

/// The grain of the probes' slots. Probes whose slots fall in the same tick start together,
/// on one wake-up of the runtime: spread to the nanosecond, each probe cost two wake-ups of its
/// own (its slot, then its connection), two to three times the CPU of the probe itself on an
/// idle host. At 10 ms a check runs at most a tick off an even spread, and never later than
/// its slot.
const TICK: Duration = Duration::from_millis(10);

/// What makes two checks one probe: the address and port probed and the check's settings with
/// those that only judge the results (rise, fall, the initial state) left out.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct ProbeKey {
    target: SocketAddr,
    spec: CheckSpec,
}

impl ProbeKey {
    fn of(id: &CheckId, spec: &CheckSpec) -> Self {
        let target = SocketAddr::new(id.1.addr, spec.port.unwrap_or(id.1.port));
        let mut spec = spec.clone();
        spec.port = None;
        spec.rise = 0;
        spec.fall = 0;
        spec.initial_up = false;
        ProbeKey { target, spec }
    }

    /// Where in its interval this probe's slots fall: spread evenly over the interval by a
    /// hash of the probe, the same on every run, on a [`TICK`] grid.
    fn phase(&self) -> Duration {
        let mut h = DefaultHasher::new();
        self.hash(&mut h);
        let frac = u128::from(h.finish() >> 32);
        let nanos = (self.spec.interval.as_nanos() * frac) >> 32;
        let nanos = nanos - nanos % TICK.as_nanos();
        Duration::from_nanos(u64::try_from(nanos).unwrap_or(0))
    }
}

/// One check hearing a shared probe.
struct Subscriber {
    generation: u64,
    rise: u32,
    fall: u32,
    health: Health,
    /// Has had a result (the first one is always reported).
    heard: bool,
}

impl Subscriber {
    /// Applies one result; the report to send, if there is something to say.
    fn hear(&mut self, id: CheckId, outcome: &Outcome) -> Option<Report> {
        let new_reason = !self.heard || self.health.reason.as_str() != &*outcome.reason;
        self.heard = true;
        let changed = self
            .health
            .record(outcome.ok, &outcome.reason, self.rise, self.fall)
            .is_some();
        (changed || new_reason).then(|| Report {
            id,
            generation: self.generation,
            outcome: outcome.clone(),
            up: self.health.up,
            changed,
        })
    }
}

/// The checks sharing one probe, and its last result (a check that joins hears it at once).
#[derive(Default)]
struct Subscribers {
    checks: BTreeMap<CheckId, Subscriber>,
    last: Option<Outcome>,
}

/// A running probe and who hears it.
struct Prober {
    subscribers: Arc<Mutex<Subscribers>>,
    task: JoinHandle<()>,
}

fn lock(m: &Mutex<Subscribers>) -> MutexGuard<'_, Subscribers> {
    // Nothing panics while holding it; a poisoned lock still holds consistent data.
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The running checks.
pub struct Monitor {
    /// Each check: its spec, its generation, the probe it hears.
    checks: BTreeMap<CheckId, (CheckSpec, u64, ProbeKey)>,
    probers: HashMap<ProbeKey, Prober>,
    tx: mpsc::UnboundedSender<Report>,
    limit: Arc<Semaphore>,
    generation: u64,
    on_start: OnStart,
    /// Where every probe's grid starts: probes of the same interval and phase, started at
    /// different times, still start together.
    base: Instant,
    /// The runtime the probes run on.
    runtime: Handle,
    /// With [`Monitor::on_own_thread`]: dropped with the monitor, which ends that thread.
    _thread: Option<oneshot::Sender<()>>,
}

impl Monitor {
    /// A monitor running at most `concurrency` probes at a time (what bounds the sockets and
    /// processes in flight), and the channel its reports arrive on. `on_start` hears each
    /// probe's lateness.
    pub fn new(
        concurrency: usize,
        on_start: OnStart,
    ) -> (Monitor, mpsc::UnboundedReceiver<Report>) {
        Self::with_runtime(concurrency, on_start, Handle::current(), None)
    }

    /// [`Monitor::new`] with the probes on a thread of their own, on a single-threaded runtime:
    /// every probe's timer, connection and result are handled where they started, with no
    /// hand-off between threads and no worker woken to steal (in the test VM at 500 probes a
    /// second this took a third off the CPU a probe: from 1.6× keepalived's to 1.0–1.1×; see
    /// BENCHMARKS.md), and nothing the daemon does on its own runtime — a long pass, a scrape —
    /// takes a probe's thread. The thread ends when the monitor is dropped.
    pub fn on_own_thread(
        concurrency: usize,
        on_start: OnStart,
    ) -> std::io::Result<(Monitor, mpsc::UnboundedReceiver<Report>)> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let handle = runtime.handle().clone();
        let (stop, stopped) = oneshot::channel::<()>();
        std::thread::Builder::new()
            .name("lvsd-health".into())
            .spawn(move || {
                // Runs the probes until the monitor is dropped (its sender with it).
                let _ = runtime.block_on(stopped);
            })?;
        Ok(Self::with_runtime(
            concurrency,
            on_start,
            handle,
            Some(stop),
        ))
    }

    fn with_runtime(
        concurrency: usize,
        on_start: OnStart,
        runtime: Handle,
        thread: Option<oneshot::Sender<()>>,
    ) -> (Monitor, mpsc::UnboundedReceiver<Report>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let m = Monitor {
            checks: BTreeMap::new(),
            probers: HashMap::new(),
            tx,
            limit: Arc::new(Semaphore::new(concurrency.max(1))),
            generation: 0,
            on_start,
            base: Instant::now(),
            runtime,
            _thread: thread,
        };
        (m, rx)
    }

    /// Runs exactly `wanted` (each check with the state its real starts from): new or changed
    /// checks start (hearing the probe they share at once if it has a result, else at its
    /// first slot, within one interval), checks that went away stop, the rest keep their
    /// rhythm and their state — also when others sharing their probe come or go.
    pub fn sync<'a>(
        &mut self,
        wanted: impl IntoIterator<Item = (&'a CheckId, &'a CheckSpec, bool)>,
    ) {
        let wanted: BTreeMap<CheckId, (CheckSpec, bool)> = wanted
            .into_iter()
            .map(|(i, s, up)| (*i, (s.clone(), up)))
            .collect();
        let stale: Vec<CheckId> = self
            .checks
            .iter()
            .filter(|(id, (spec, _, _))| wanted.get(id).is_none_or(|(s, _)| s != spec))
            .map(|(id, _)| *id)
            .collect();
        self.replace(stale, wanted);
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
                self.checks
                    .range((*svc, plan::health::FIRST_DEST)..)
                    .take_while(move |(id, _)| id.0 == *svc)
            })
            .filter(|(id, (spec, _, _))| wanted.get(id).is_none_or(|(s, _)| s != spec))
            .map(|(id, _)| *id)
            .collect();
        self.replace(stale, wanted);
    }

    /// Stops the `stale` checks and starts those of `wanted` not running. The new ones join
    /// their probes before the stale ones leave theirs: a probe that only changes hands (a
    /// check's rise or fall edited) keeps its rhythm.
    fn replace(&mut self, stale: Vec<CheckId>, wanted: BTreeMap<CheckId, (CheckSpec, bool)>) {
        let mut left = Vec::with_capacity(stale.len());
        for id in stale {
            if let Some((_, _, key)) = self.checks.remove(&id) {
                left.push((id, key));
            }
        }
        for (id, (spec, up)) in wanted {
            if !self.checks.contains_key(&id) {
                self.start(id, spec, up);
            }
        }
        for (id, key) in left {
            self.leave(id, &key);
        }
    }

    /// `id` stops hearing the probe `key` (unless it joined it again under a new generation);
    /// the probe stops when no one hears it.
    fn leave(&mut self, id: CheckId, key: &ProbeKey) {
        let current = self.checks.get(&id).map(|(_, g, k)| (*g, k));
        let Some(prober) = self.probers.get(key) else {
            return;
        };
        let empty = {
            let mut subs = lock(&prober.subscribers);
            let rejoined = current.is_some_and(|(g, k)| {
                k == key && subs.checks.get(&id).is_some_and(|s| s.generation == g)
            });
            if !rejoined {
                subs.checks.remove(&id);
            }
            subs.checks.is_empty()
        };
        if empty && let Some(p) = self.probers.remove(key) {
            p.task.abort();
        }
    }

    /// Starts the check of `id`, its real starting `up` or down.
    fn start(&mut self, id: CheckId, spec: CheckSpec, up: bool) {
        self.generation += 1;
        let generation = self.generation;
        let key = ProbeKey::of(&id, &spec);
        let prober = match self.probers.entry(key.clone()) {
            std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::hash_map::Entry::Vacant(e) => {
                let subscribers = Arc::new(Mutex::new(Subscribers::default()));
                let task = self.runtime.spawn(run(
                    e.key().clone(),
                    subscribers.clone(),
                    self.tx.clone(),
                    self.limit.clone(),
                    self.on_start.clone(),
                    self.base,
                ));
                e.insert(Prober { subscribers, task })
            }
        };
        let mut sub = Subscriber {
            generation,
            rise: spec.rise,
            fall: spec.fall,
            health: Health::new(up),
            heard: false,
        };
        {
            let mut subs = lock(&prober.subscribers);
            if let Some(report) = subs.last.as_ref().and_then(|o| sub.hear(id, o)) {
                let _ = self.tx.send(report);
            }
            subs.checks.insert(id, sub);
        }
        self.checks.insert(id, (spec, generation, key));
    }

    /// Whether `report` comes from the check running now for its real (not from one that was
    /// aborted or replaced since it was sent).
    pub fn is_current(&self, report: &Report) -> bool {
        self.checks
            .get(&report.id)
            .is_some_and(|(_, g, _)| *g == report.generation)
    }

    /// Checks running.
    pub fn len(&self) -> usize {
        self.checks.len()
    }

    /// None running.
    pub fn is_empty(&self) -> bool {
        self.checks.is_empty()
    }

    /// Probes running: the distinct (target, probe settings) among the checks, each probed
    /// once per interval whatever the number of checks sharing it.
    pub fn probes(&self) -> usize {
        self.probers.len()
    }
}

impl Drop for Monitor {
    fn drop(&mut self) {
        for p in self.probers.values() {
            p.task.abort();
        }
    }
}

/// The slot after `planned`'s for a probe that ended at `now`: the next one on the grid, or —
/// when the probe outlasted whole slots — the last of those it missed (run at once, its
/// lateness told), never a burst making up for the others.
fn next_slot(planned: Instant, interval: Duration, now: Instant) -> Instant {
    let next = planned + interval;
    if next + interval > now {
        return next;
    }
    let behind = now.saturating_duration_since(next).as_nanos() / interval.as_nanos();
    u32::try_from(behind)
        .ok()
        .and_then(|n| interval.checked_mul(n))
        .map_or(now, |d| next + d)
}

/// The first slot at or after `now` of the grid through `origin` at `interval`s.
fn first_slot(origin: Instant, interval: Duration, now: Instant) -> Instant {
    if origin >= now {
        return origin;
    }
    let behind = now.saturating_duration_since(origin).as_nanos();
    let n = behind.div_ceil(interval.as_nanos());
    u32::try_from(n)
        .ok()
        .and_then(|n| interval.checked_mul(n))
        .map_or(now, |d| origin + d)
}

/// One probe's task: at each slot, a probe (within the concurrency bound), its result told to
/// every check hearing it.
async fn run(
    key: ProbeKey,
    subscribers: Arc<Mutex<Subscribers>>,
    tx: mpsc::UnboundedSender<Report>,
    limit: Arc<Semaphore>,
    on_start: OnStart,
    base: Instant,
) {
    let interval = key.spec.interval.max(Duration::from_millis(1));
    let mut planned = first_slot(base + key.phase(), interval, Instant::now());
    loop {
        tokio::time::sleep_until(planned).await;
        let outcome = match limit.acquire().await {
            Ok(_permit) => {
                on_start(Instant::now().saturating_duration_since(planned));
                probe(key.target, &key.spec).await
            }
            Err(_) => return,
        };
        {
            let mut subs = lock(&subscribers);
            let Subscribers { checks, last } = &mut *subs;
            for (id, sub) in checks.iter_mut() {
                if let Some(report) = sub.hear(*id, &outcome)
                    && tx.send(report).is_err()
                {
                    return;
                }
            }
            *last = Some(outcome);
        }
        planned = next_slot(planned, interval, Instant::now());
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    #[test]
    fn slots_keep_to_the_grid_and_skip_what_was_missed() {
        let t0 = Instant::now();
        let s = Duration::from_secs(1);
        // On time or a little late: the next slot on the grid, not the end plus the interval.
        assert_eq!(next_slot(t0, s, t0 + Duration::from_millis(300)), t0 + s);
        assert_eq!(next_slot(t0, s, t0 + Duration::from_millis(1500)), t0 + s);
        // Three and a half slots spent: the two missed ones skipped, the third run at once.
        assert_eq!(
            next_slot(t0, s, t0 + Duration::from_millis(3500)),
            t0 + 3 * s
        );
    }
}
