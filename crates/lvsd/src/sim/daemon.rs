//! Deterministic simulation of the daemon: the real loop ([`daemon::run_with`]: `decide`, the
//! config source, reloads, the guards, passes) on a current-thread runtime with a paused
//! clock, against the simulated kernel, host and disk ([`World`]), with its config in a real
//! temporary directory. A schedule drawn from one seed edits the config as operators and
//! pushes do (atomic renames of valid edits, invalid YAML, an emptied file, a truncated one,
//! included files added, changed and removed), loses some of the file events (the resync's
//! look at the files' stamps must catch those), renames a new file into place at each step
//! of a start or a reload (through the fault points' hook, [`crate::fault::set_hook`]),
//! changes the table and host behind lvsd's back, makes the kernel refuse requests or unloads
//! it, stops the daemon (SIGTERM, through its input channel) and kills it (its future dropped
//! between steps, at a fault point, or after a number of writes and saves), after which a new
//! daemon starts from the records on disk.
//! The daemon's own file events come from the schedule, never from inotify, and its reads run
//! in place: the outcome depends on the seed alone.
//!
//! After each quiet period (no faults, the clock moved on three resync periods) it checks:
//! - the table is the config on disk plus the foreign services, or, while the file on disk is
//!   invalid or emptied, one of the valid configs written before (never a mix, never emptied);
//!   the host has that config's VIPs and sysctls; then the last good file is put back and the
//!   table must become it exactly;
//! - nothing lvsd must never do happened (the world's violations: foreign services and
//!   addresses touched, a busy real deleted early);
//! - the records cover everything lvsd made;
//! - a further quiet resync period writes nothing (no write loop).
//!
//! Health checks are out of scope: the generated configs have none (no probes run).
//!
//! A failure prints its seed; `LVSD_DSIM_SEED=<seed> cargo test -p lvsd sim::daemon -- --nocapture`
//! replays it with its whole trace.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::rc::Rc;
use std::time::Duration;

use ipvs::ServiceKey;
use plan::host::{HostAddr, Sysctl};
use tokio::sync::mpsc;

use super::world::{LAN, SimIo, SimService, World, foreign_service, tcp};
use super::{DRAIN, HOST_SYSCTLS, Model, Rng, records_cover, vip};
use crate::daemon::{self, Followed, Input, Mutation, OnDrift, Outside, Settings, WatchKind};
use crate::engine::Engine;
use crate::fault;

/// The resync period the simulated daemon runs with.
const RESYNC: Duration = Duration::from_secs(10);
/// The clock moves on at most this much at a time, so that the world's clock (whole seconds,
/// for drain deadlines) keeps up with the runtime's.
const TICK: Duration = Duration::from_millis(500);
/// The start of the world's clock.
const EPOCH: u64 = 1_700_000_000;

/// The start and reload steps a file can be renamed into place at.
pub(crate) const HOOKS: [&str; 6] = [
    fault::START_BEFORE_WATCH,
    fault::START_BEFORE_READ,
    fault::START_AFTER_READ,
    fault::START_BEFORE_LOOP,
    fault::RELOAD_BEFORE_READ,
    fault::RELOAD_AFTER_READ,
];

/// What is at the config's path, as the schedule wrote it.
#[derive(Debug, Clone)]
enum OnDisk {
    /// A valid config, which the guards let through.
    Valid(Model),
    /// One that does not validate (broken YAML, a truncated push).
    Invalid,
    /// The services gone (a truncated push that still parses): the guard must refuse it.
    Emptied,
}

/// What the fault points' hook does when its point comes.
enum Action {
    /// Renames `from` to `to` (and tells the loop, unless the event is lost or the watch is
    /// not set up yet).
    Rename {
        from: PathBuf,
        to: PathBuf,
        event: bool,
    },
    /// Kills the daemon there: nothing more is written or saved.
    Kill,
}

/// The hook's state, shared with the driver.
struct Hooked {
    /// The point and what to do there, until it comes.
    armed: Option<(&'static str, Action)>,
    /// The running daemon's input channel.
    tx: Option<mpsc::UnboundedSender<Input>>,
    /// The world, for a kill at a point.
    world: Rc<RefCell<World>>,
    /// What the hook did, for the trace.
    fired: Vec<String>,
}

impl Hooked {
    /// Called at every fault point.
    fn at(&mut self, point: &str) {
        if self.armed.as_ref().is_none_or(|(p, _)| *p != point) {
            return;
        }
        let Some((point, action)) = self.armed.take() else {
            return;
        };
        match action {
            Action::Rename { from, to, event } => {
                let _ = std::fs::rename(&from, &to);
                // Before the watch is set up, a rename is no event (the read sees the file).
                let seen = event && point != fault::START_BEFORE_WATCH;
                if seen {
                    if let Some(tx) = &self.tx {
                        let _ = tx.send(Input::File(true));
                    }
                }
                self.fired.push(format!(
                    "  at {point}: a new file renamed into place ({})",
                    if seen { "event" } else { "no event" }
                ));
            }
            Action::Kill => {
                self.world.borrow_mut().killed = true;
                self.fired.push(format!("  at {point}: killed"));
            }
        }
    }
}

/// What a run did, for the summary line.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Tally {
    pub steps: usize,
    pub starts: usize,
    pub kills: usize,
    pub stops: usize,
    pub edits: usize,
    pub bad: usize,
    pub lost: usize,
    pub hooks: usize,
    pub faults: usize,
    pub quiet: usize,
}

/// The running daemon.
type Running = Pin<Box<dyn Future<Output = anyhow::Result<()>>>>;

/// One schedule's state.
struct Driver {
    /// The simulated kernel, host and records.
    world: Rc<RefCell<World>>,
    /// The fault points' hook.
    hooked: Rc<RefCell<Hooked>>,
    /// The deliberate bug of every daemon started (or none).
    mutation: Mutation,
    /// The temporary directory: the config, `conf.d/`, the state directory, old files.
    dir: PathBuf,
    /// The main file.
    config: PathBuf,
    /// Services above [`MAIN_SERVICES`] live in `conf.d/s<n>.yaml` when the schedule includes.
    includes: bool,
    /// Each file the schedule wrote and what it holds now.
    files: BTreeMap<PathBuf, String>,
    /// What is at the config's path.
    on_disk: OnDisk,
    /// The last valid config written, and every one written (what an invalid file may have
    /// left in force).
    good: Model,
    history: Vec<Model>,
    /// A daemon started with a file on disk it may not take since the last quiet period:
    /// killed part-way through a pass and started with it, it keeps the table as the kill
    /// left it, which need not be any config written.
    started_bad: bool,
    /// The included directories the daemon follows (an event there is seen once it does).
    followed: Followed,
    /// The daemon, while one runs.
    daemon: Option<Running>,
    /// The foreign services as they must stay (gone after an unload).
    foreign: Vec<SimService>,
    /// Milliseconds since the start, for the world's clock.
    ms: u64,
    /// A counter for temporary and old files' names.
    n: u64,
    /// What happened, for a failure's report and the replay.
    trace: Vec<String>,
    /// What ran, for the summary.
    tally: Tally,
    /// No event is lost (the deterministic tests).
    lossless: bool,
    /// The running daemon was told to stop: its end is not a failure.
    stopping: bool,
}

/// Services with these numbers stay in the main file when the schedule includes.
const MAIN_SERVICES: u8 = 2;

impl Driver {
    /// A line of the trace, at the simulated time.
    fn note(&mut self, what: String) {
        // The temporary directory's name differs between runs; the trace must not.
        let what = what.replace(&self.dir.display().to_string(), "$DIR");
        let t = self.ms as f64 / 1000.0;
        self.trace.push(format!("t={t:.1} {what}"));
    }

    /// The files a config is written as: the main file, and with includes one file per
    /// service above [`MAIN_SERVICES`].
    fn texts(&self, m: &Model) -> BTreeMap<PathBuf, String> {
        let mut out = BTreeMap::new();
        if !self.includes {
            out.insert(self.config.clone(), m.yaml());
            return out;
        }
        let main = Model {
            services: m
                .services
                .iter()
                .filter(|(n, _)| **n <= MAIN_SERVICES)
                .map(|(n, s)| (*n, s.clone()))
                .collect(),
            ..m.clone()
        };
        out.insert(
            self.config.clone(),
            format!("include: [conf.d/*.yaml]\n{}", main.yaml()),
        );
        for (n, s) in m.services.iter().filter(|(n, _)| **n > MAIN_SERVICES) {
            let one = Model {
                services: BTreeMap::from([(*n, s.clone())]),
                director: false,
                anycast: false,
                out: false,
                sysctls: BTreeMap::new(),
            };
            out.insert(self.dir.join(format!("conf.d/s{n}.yaml")), one.yaml());
        }
        out
    }

    /// Keeps the file at `path` alive under another name before it is replaced or removed:
    /// a new file must not get its inode back (with the same size and time, its stamp would
    /// be the old one's, which no real push can count on being different either).
    fn bury(&mut self, path: &Path) {
        self.n += 1;
        let _ = std::fs::hard_link(path, self.dir.join(format!("old/{}", self.n)));
    }

    /// Writes `text` next to `path` and returns the temporary file (to rename into place).
    fn stage(&mut self, text: &str) -> Result<PathBuf, String> {
        self.n += 1;
        let tmp = self.dir.join(format!("tmp/{}", self.n));
        std::fs::write(&tmp, text).map_err(|e| format!("write {}: {e}", tmp.display()))?;
        Ok(tmp)
    }

    /// Puts the files in place, each renamed atomically (or removed), and tells the loop of
    /// each as a watch would, losing an event now and then.
    fn put(&mut self, texts: BTreeMap<PathBuf, String>, rng: &mut Rng) -> Result<(), String> {
        let old: Vec<PathBuf> = self.files.keys().cloned().collect();
        let mut events = vec![];
        for path in old.iter().filter(|p| !texts.contains_key(*p)) {
            self.bury(path);
            std::fs::remove_file(path).map_err(|e| format!("remove {}: {e}", path.display()))?;
            self.files.remove(path);
            events.push((path.clone(), false));
        }
        for (path, text) in texts {
            if self.files.get(&path) == Some(&text) {
                continue;
            }
            let tmp = self.stage(&text)?;
            if self.files.contains_key(&path) {
                self.bury(&path);
            }
            std::fs::rename(&tmp, &path).map_err(|e| format!("rename {}: {e}", path.display()))?;
            self.files.insert(path.clone(), text);
            events.push((path, true));
        }
        for (path, whole) in events {
            let included = path != self.config;
            let watched = !included
                || self
                    .followed
                    .read()
                    .is_ok_and(|l| l.iter().any(|i| path.parent() == Some(i.dir.as_path())));
            let lost = !self.lossless && rng.below(4) == 0;
            let name = path.strip_prefix(&self.dir).unwrap_or(&path).display();
            let what = if whole {
                "renamed into place"
            } else {
                "removed"
            };
            if !watched || lost {
                self.tally.lost += 1;
                self.note(format!("  {name} {what}; its event is lost"));
                continue;
            }
            self.note(format!("  {name} {what}"));
            if let Some(tx) = &self.hooked.borrow().tx {
                let _ = tx.send(Input::File(whole));
            }
        }
        Ok(())
    }

    /// Writes a valid config (which the guards let through).
    fn write_valid(&mut self, m: Model, rng: &mut Rng) -> Result<(), String> {
        self.note(format!("config: {m:?}"));
        let texts = self.texts(&m);
        self.world.borrow_mut().director |= m.director;
        self.put(texts, rng)?;
        self.on_disk = OnDisk::Valid(m.clone());
        self.good = m.clone();
        self.history.push(m);
        self.tally.edits += 1;
        Ok(())
    }

    /// Writes a main file that is not a config lvsd may take: broken YAML, a truncated push
    /// that no longer parses, or one that parses with its services gone.
    fn write_bad(&mut self, rng: &mut Rng) -> Result<(), String> {
        let mut texts = self.texts(&self.good.clone());
        let main = texts.get(&self.config).cloned().unwrap_or_default();
        let (what, text, state) = match rng.below(3) {
            0 => (
                "invalid YAML",
                format!("{main}  - name: [broken\n"),
                OnDisk::Invalid,
            ),
            1 => {
                // Cut inside a key: no longer a config, whatever else is left.
                let cut = main
                    .rfind("weight:")
                    .or_else(|| main.rfind("services:"))
                    .map_or(0, |i| i + 3);
                ("truncated", main[..cut].to_owned(), OnDisk::Invalid)
            }
            _ => {
                let empty = Model {
                    services: BTreeMap::new(),
                    ..self.good.clone()
                };
                // Without `include` too: all of it gone.
                texts.retain(|p, _| *p == self.config);
                ("emptied", empty.yaml(), OnDisk::Emptied)
            }
        };
        self.note(format!("config: {what}"));
        texts.insert(self.config.clone(), text);
        self.put(texts, rng)?;
        let loads = config::load(&self.config);
        match (&state, loads) {
            (OnDisk::Invalid, Ok(_)) => {
                return Err(format!("the schedule's {what} file is a valid config"));
            }
            (OnDisk::Emptied, Err(e)) => {
                return Err(format!("the schedule's emptied file is invalid: {e}"));
            }
            _ => {}
        }
        self.on_disk = state;
        self.tally.bad += 1;
        Ok(())
    }

    /// Starts a daemon from the records on disk, as systemd would.
    fn start(&mut self) {
        let engine = Engine::with_io(SimIo(self.world.clone()), self.dir.join("state"), false);
        let settings = Settings {
            config: self.config.clone(),
            role: None,
            allow_insecure_config: true,
            resync: RESYNC,
            on_drift: OnDrift::Repair,
            force: false,
            metrics: None,
            admin_gid: None,
        };
        let (tx, rx) = mpsc::unbounded_channel();
        self.hooked.borrow_mut().tx = Some(tx.clone());
        let outside = Outside {
            watch: WatchKind::Simulated(self.followed.clone()),
            signals: None,
            mutation: self.mutation,
        };
        self.daemon = Some(Box::pin(daemon::run_with(
            settings, engine, outside, tx, rx,
        )));
        self.tally.starts += 1;
        self.stopping = false;
        self.started_bad |= !matches!(self.on_disk, OnDisk::Valid(_));
        self.note("a daemon starts".into());
    }

    /// SIGTERM: the loop is told to stop (and is started again once it has, as an operator's
    /// restart would).
    fn stop(&mut self) {
        if let Some(tx) = &self.hooked.borrow().tx {
            self.stopping = tx.send(Input::Stop).is_ok();
        }
    }

    /// Kills the daemon: its future is dropped wherever it waits. What it made must be in
    /// its records.
    fn kill(&mut self) -> Result<(), String> {
        self.daemon = None;
        self.stopping = false;
        self.hooked.borrow_mut().tx = None;
        let mut w = self.world.borrow_mut();
        records_cover(&w)?;
        w.killed = false;
        w.kill_in = None;
        drop(w);
        self.tally.kills += 1;
        self.note("  killed".into());
        Ok(())
    }

    /// Lets the daemon run for `dt` of the paused clock (restarting it when it was killed
    /// or, with a config it could not start with, exited).
    async fn run_for(&mut self, dt: Duration) -> Result<(), String> {
        let end = self.ms + dt.as_millis() as u64;
        while self.ms < end {
            let step = (end - self.ms).min(TICK.as_millis() as u64);
            if self.daemon.is_none() {
                self.start();
            }
            let exited = match self.daemon.as_mut() {
                Some(d) => tokio::select! {
                    biased;
                    r = d => Some(r),
                    () = tokio::time::sleep(Duration::from_millis(step)) => None,
                },
                None => None,
            };
            let fired = std::mem::take(&mut self.hooked.borrow_mut().fired);
            for line in fired {
                self.note(line);
            }
            if let Some(r) = exited {
                self.daemon = None;
                self.hooked.borrow_mut().tx = None;
                // The file read at the start was one lvsd may not take: on disk, or still
                // there because the point the next file was to come at is after the read.
                let bad = !matches!(self.on_disk, OnDisk::Valid(_))
                    || self.hooked.borrow().armed.is_some();
                match r {
                    Ok(()) if self.stopping => {
                        self.stopping = false;
                        self.tally.stops += 1;
                        self.note("  stopped; started again at the next tick".into());
                        records_cover(&self.world.borrow())?;
                        tokio::time::sleep(Duration::from_millis(step)).await;
                    }
                    Err(e) if bad => {
                        self.note(format!("  the daemon could not start: {e:#}"));
                        // Restarted at the next tick (systemd's Restart=).
                        tokio::time::sleep(Duration::from_millis(step)).await;
                    }
                    r => return Err(format!("the daemon exited: {r:?}")),
                }
            }
            self.ms = self.ms.max(end.min(self.ms + step));
            self.world.borrow_mut().now = EPOCH + self.ms / 1000;
            if self.world.borrow().killed {
                self.kill()?;
            }
            self.violations()?;
        }
        Ok(())
    }

    /// What lvsd did that it must never do, if anything.
    fn violations(&self) -> Result<(), String> {
        match self.world.borrow().violations.first() {
            Some(v) => Err(v.clone()),
            None => Ok(()),
        }
    }

    /// Performs an armed rename whose point did not come (the schedule's file is then on
    /// disk all the same).
    fn disarm(&mut self) -> Result<(), String> {
        let armed = self.hooked.borrow_mut().armed.take();
        if let Some((point, Action::Rename { from, to, .. })) = armed {
            std::fs::rename(&from, &to).map_err(|e| format!("rename: {e}"))?;
            self.note(format!("  {point} did not come: the file renamed in now"));
            if let Some(tx) = &self.hooked.borrow().tx {
                let _ = tx.send(Input::File(true));
            }
        }
        Ok(())
    }

    /// The next file for a rename at a start or reload step: only the main file changes
    /// (with includes, a sysctl of it).
    fn hook_edit(&self, rng: &mut Rng) -> Model {
        if self.includes {
            let mut m = self.good.clone();
            let v = if m.sysctls.get("expire_nodest_conn") == Some(&"1") {
                "0"
            } else {
                "1"
            };
            m.sysctls.insert("expire_nodest_conn", v);
            m
        } else {
            edit(&self.good, &self.history, rng)
        }
    }

    /// `next` renamed into place at `point` of the next start or reload.
    fn arm(&mut self, point: &'static str, next: Model, rng: &mut Rng) -> Result<(), String> {
        let mut texts = self.texts(&next);
        let text = texts.remove(&self.config).unwrap_or_default();
        // The included files as `next` has them (after an emptied file they are gone), then
        // the main file at the point.
        if let Some(main) = self.files.get(&self.config) {
            texts.insert(self.config.clone(), main.clone());
        }
        self.put(texts, rng)?;
        let tmp = self.stage(&text)?;
        self.bury(&self.config.clone());
        self.note(format!("at {point}: {next:?} is renamed into place"));
        self.hooked.borrow_mut().armed = Some((
            point,
            Action::Rename {
                from: tmp,
                to: self.config.clone(),
                event: self.lossless || rng.below(4) != 0,
            },
        ));
        self.world.borrow_mut().director |= next.director;
        self.files.insert(self.config.clone(), text);
        self.on_disk = OnDisk::Valid(next.clone());
        self.good = next.clone();
        self.history.push(next);
        self.tally.hooks += 1;
        Ok(())
    }

    /// A change behind lvsd's back: one of its services or reals deleted, a weight changed.
    fn behind_the_back(&mut self, rng: &mut Rng) {
        let mut w = self.world.borrow_mut();
        let ours: Vec<usize> = (0..w.services.len())
            .filter(|i| !w.foreign.contains(&w.services[*i].key))
            .collect();
        let Some(i) = rng.pick(&ours) else { return };
        let key = w.services[i].key;
        let what = match rng.below(3) {
            0 if !w.services[i].dests.is_empty() => {
                w.services[i].dests[0].spec.weight = 7;
                format!("ipvsadm -e: a weight of {key}")
            }
            1 if !w.services[i].dests.is_empty() => {
                let d = w.services[i].dests.remove(0);
                w.drained_at.remove(&(key, d.key));
                format!("ipvsadm -d: real {} of {key}", d.key.addr)
            }
            _ => {
                let s = w.services.remove(i);
                for d in &s.dests {
                    w.drained_at.remove(&(key, d.key));
                }
                format!("ipvsadm -D: {key}")
            }
        };
        drop(w);
        self.note(format!("behind lvsd's back: {what}"));
    }

    /// The table as `(scheduler, reals and weights)` per service.
    fn table(&self) -> BTreeMap<ServiceKey, (String, BTreeMap<std::net::IpAddr, u32>)> {
        self.world
            .borrow()
            .services
            .iter()
            .map(|s| {
                let reals = s.dests.iter().map(|d| (d.key.addr, d.spec.weight));
                (s.key, (s.spec.scheduler.clone(), reals.collect()))
            })
            .collect()
    }

    /// The table `m` makes, next to the foreign services.
    fn want(&self, m: &Model) -> BTreeMap<ServiceKey, (String, BTreeMap<std::net::IpAddr, u32>)> {
        let mut want: BTreeMap<_, _> = m
            .services
            .iter()
            .map(|(n, (sched, reals))| {
                let reals = reals
                    .iter()
                    .map(|(r, wt)| (std::net::IpAddr::from([10, 0, 0, *r]), *wt));
                (
                    tcp(&format!("10.1.0.{n}"), 80),
                    ((*sched).to_owned(), reals.collect()),
                )
            })
            .collect();
        for f in &self.foreign {
            let reals = f.dests.iter().map(|d| (d.key.addr, d.spec.weight));
            want.insert(f.key, (f.spec.scheduler.clone(), reals.collect()));
        }
        want
    }

    /// The host as `m` leaves it.
    fn host_of(&self, m: &Model) -> (BTreeSet<HostAddr>, BTreeMap<Sysctl, String>) {
        m.host(&self.world.borrow())
    }

    /// A quiet period: no faults, connections closed, the clock moved on three resync
    /// periods; then the checks (see the module's doc). With a file lvsd may not take on
    /// disk, the table must be one the schedule wrote; then the last good file is put back and
    /// the table must become it.
    async fn quiet(&mut self, rng: &mut Rng) -> Result<(), String> {
        self.tally.quiet += 1;
        self.disarm()?;
        {
            let mut w = self.world.borrow_mut();
            w.fail_at = None;
            w.host_fail_next = false;
            w.kill_in = None;
            w.down = false;
            for s in &mut w.services {
                for d in &mut s.dests {
                    d.active = 0;
                }
            }
        }
        self.note("quiet".into());
        if !matches!(self.on_disk, OnDisk::Valid(_)) {
            self.settle().await?;
            if !self.started_bad {
                let have = self.table();
                let host = {
                    let w = self.world.borrow();
                    let a: BTreeSet<HostAddr> = w.addresses.keys().cloned().collect();
                    (a, w.sysctls.clone())
                };
                let matched = self
                    .history
                    .iter()
                    .rev()
                    .find(|m| self.want(m) == have && self.host_of(m) == host);
                if matched.is_none() {
                    return Err(format!(
                        "once quiet with a file lvsd may not take ({:?}), the table and host are none of the configs written:\n  have {have:?}\n  host {host:?}",
                        self.on_disk
                    ));
                }
            }
            self.note("the last good file back".into());
            let good = self.good.clone();
            self.history.pop();
            self.write_valid(good, rng)?;
        }
        self.settle().await?;
        let OnDisk::Valid(m) = self.on_disk.clone() else {
            return Err("no valid file on disk once quiet".into());
        };
        let (want, have) = (self.want(&m), self.table());
        if want != have {
            return Err(format!(
                "once quiet the table is not the config on disk plus the foreign services:\n  want {want:?}\n  have {have:?}"
            ));
        }
        self.exact()
    }

    /// The table and the host are the file on disk's config, exactly.
    fn exact(&mut self) -> Result<(), String> {
        let OnDisk::Valid(m) = self.on_disk.clone() else {
            return Err("no valid file on disk once quiet".into());
        };
        let (want, have) = (self.want(&m), self.table());
        if want != have {
            return Err(format!(
                "once quiet the table is not the config on disk plus the foreign services:\n  want {want:?}\n  have {have:?}"
            ));
        }
        self.started_bad = false;
        // In force now: only this one.
        self.history = vec![m.clone()];
        let (addresses, sysctls) = self.host_of(&m);
        let w = self.world.borrow();
        let have_addresses: BTreeSet<HostAddr> = w.addresses.keys().cloned().collect();
        if addresses != have_addresses || sysctls != w.sysctls {
            return Err(format!(
                "once quiet the host is not the config's role plus what others put there:\n  want {addresses:?} {sysctls:?}\n  have {have_addresses:?} {:?}",
                w.sysctls
            ));
        }
        Ok(())
    }

    /// Three resync periods, then one more that must write nothing; the records cover what
    /// lvsd made.
    async fn settle(&mut self) -> Result<(), String> {
        self.run_for(3 * RESYNC).await?;
        self.world.borrow_mut().writes.clear();
        self.run_for(RESYNC + TICK).await?;
        let writes = std::mem::take(&mut self.world.borrow_mut().writes);
        if !writes.is_empty() {
            return Err(format!(
                "a quiet resync period wrote {} times (a write loop): {writes:?}",
                writes.len()
            ));
        }
        records_cover(&self.world.borrow())
    }
}

/// Whether the removal guards might refuse going from `from` to `to`: more than half of the
/// services, reals (counted with and without those of removed services) or a director's VIPs
/// removed, with a margin of one (a real deleted behind lvsd's back is not counted).
fn guard_trips(from: &Model, to: &Model) -> bool {
    let over = |removed: usize, of: usize| removed > 0 && removed * 2 + 2 > of;
    let services = from.services.len();
    let gone: Vec<&u8> = from
        .services
        .keys()
        .filter(|k| !to.services.contains_key(k))
        .collect();
    let reals: usize = from.services.values().map(|(_, r)| r.len()).sum();
    let mut kept_removed = 0;
    let mut all_removed = 0;
    for (k, (_, r)) in &from.services {
        match to.services.get(k) {
            Some((_, r2)) => {
                let n = r.keys().filter(|x| !r2.contains_key(x)).count();
                kept_removed += n;
                all_removed += n;
            }
            None => all_removed += r.len(),
        }
    }
    let vips = from.services.keys().filter(|k| **k != 5).count();
    let vips_gone = gone.iter().filter(|k| ***k != 5).count();
    over(gone.len(), services)
        || over(kept_removed, reals)
        || over(all_removed, reals)
        || (from.director && over(vips_gone, vips))
}

/// An edit of `m` the guards let through from any of `in_force` (the configs that may be in
/// force: the daemon may not have read the newer ones yet): the director role is never given
/// up (the guard refuses that; the emptied file covers refusals), and nothing removed that
/// the removal guard could count as most of the table. Else a sysctl changed.
fn edit(m: &Model, in_force: &[Model], rng: &mut Rng) -> Model {
    for _ in 0..10 {
        let mut next = m.edit(rng);
        next.director |= m.director;
        // Active-active and the director's rotation are the engine simulation's (rotation is
        // set over the control socket, not in the file).
        next.anycast = false;
        next.out = false;
        if !in_force.iter().any(|f| guard_trips(f, &next)) {
            return next;
        }
    }
    let mut next = m.clone();
    let v = if m.sysctls.get("expire_nodest_conn") == Some(&"1") {
        "0"
    } else {
        "1"
    };
    next.sysctls.insert("expire_nodest_conn", v);
    next
}

/// The world a schedule starts in: a foreign service, the interface's own address and an
/// operator's /32, the host's sysctls.
fn world() -> (Rc<RefCell<World>>, Vec<SimService>) {
    let world = Rc::new(RefCell::new(World::new(EPOCH, DRAIN)));
    let foreign = vec![foreign_service(tcp("10.9.0.1", 80), "10.9.1.1")];
    {
        let mut w = world.borrow_mut();
        for f in &foreign {
            w.foreign.insert(f.key);
            w.services.push(f.clone());
        }
        let own = HostAddr {
            interface: LAN.to_owned(),
            addr: std::net::IpAddr::from([10, 1, 0, 200]),
        };
        w.foreign_address(own, 24);
        w.foreign_address(vip(5), 32);
        for (key, value) in HOST_SYSCTLS {
            w.sysctl(key, value);
        }
    }
    (world, foreign)
}

/// A temporary directory for one schedule, removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    /// A fresh directory with the schedule's subdirectories.
    fn new(seed: u64) -> Result<TempDir, String> {
        static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("lvsd-dsim-{}-{seed}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        for sub in ["conf.d", "state", "tmp", "old"] {
            std::fs::create_dir_all(dir.join(sub)).map_err(|e| e.to_string())?;
        }
        Ok(TempDir(dir))
    }
}

impl Drop for TempDir {
    /// Removes it all.
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A driver for `seed`'s world in `dir`, with `first` on disk and the hook installed.
fn driver(dir: &Path, includes: bool, mutation: Mutation, first: &Model) -> Driver {
    let (world, foreign) = world();
    let hooked = Rc::new(RefCell::new(Hooked {
        armed: None,
        tx: None,
        world: world.clone(),
        fired: vec![],
    }));
    let h = hooked.clone();
    fault::set_hook(Some(Box::new(move |point: &str| h.borrow_mut().at(point))));
    Driver {
        world,
        hooked,
        mutation,
        dir: dir.to_path_buf(),
        config: dir.join("lvsd.yaml"),
        includes,
        files: BTreeMap::new(),
        on_disk: OnDisk::Valid(first.clone()),
        good: first.clone(),
        history: vec![],
        started_bad: false,
        followed: Followed::default(),
        daemon: None,
        foreign,
        ms: 0,
        n: 0,
        trace: vec![],
        tally: Tally::default(),
        lossless: false,
        stopping: false,
    }
}

/// A current-thread runtime with a paused clock.
fn runtime() -> Result<tokio::runtime::Runtime, String> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .map_err(|e| e.to_string())
}

/// Runs the schedule of `seed` for `steps` steps; `Err` says what broke, with the trace.
pub(crate) fn run(seed: u64, steps: usize, mutation: Mutation) -> Result<Tally, String> {
    run_traced(seed, steps, mutation).0
}

/// [`run`], and the whole trace.
fn run_traced(seed: u64, steps: usize, mutation: Mutation) -> (Result<Tally, String>, Vec<String>) {
    match schedule(seed, steps, mutation) {
        Ok((r, trace)) => (r, trace),
        Err(e) => (Err(e), vec![]),
    }
}

/// The schedule of `seed`; `Err` only when it could not be set up.
fn schedule(
    seed: u64,
    steps: usize,
    mutation: Mutation,
) -> Result<(Result<Tally, String>, Vec<String>), String> {
    let rt = runtime()?;
    let tmp = TempDir::new(seed)?;
    let mut rng = Rng(seed ^ 0xd5_1d);
    let includes = rng.below(2) == 0;
    let first = Model {
        anycast: false,
        ..Model::initial(&mut rng)
    };
    let mut d = driver(&tmp.0, includes, mutation, &first);
    let result = rt.block_on(async {
        d.note(format!("includes: {includes}"));
        d.write_valid(first, &mut rng)?;
        d.run_for(Duration::from_secs(1)).await?;
        for _ in 0..steps {
            d.tally.steps += 1;
            match rng.below(100) {
                0..=24 => {
                    let next = edit(&d.good, &d.history, &mut rng);
                    d.write_valid(next, &mut rng)?;
                }
                25..=36 => d.write_bad(&mut rng)?,
                37..=44 => {
                    d.behind_the_back(&mut rng);
                }
                45..=52 => {
                    let at = rng.below(4) as usize;
                    let host = rng.below(2) == 0;
                    {
                        let mut w = d.world.borrow_mut();
                        w.fail_at = Some(at);
                        w.host_fail_next = host;
                    }
                    d.tally.faults += 1;
                    d.note(format!(
                        "the kernel refuses request {at} of the next batch{}",
                        if host {
                            ", the host its next change"
                        } else {
                            ""
                        }
                    ));
                    let next = edit(&d.good, &d.history, &mut rng);
                    d.write_valid(next, &mut rng)?;
                }
                53..=56 => {
                    d.world.borrow_mut().unload();
                    d.foreign.clear();
                    d.tally.faults += 1;
                    d.note("ip_vs unloaded".into());
                    d.run_for(Duration::from_secs(1 + rng.below(3))).await?;
                    d.world.borrow_mut().down = false;
                    d.note("ip_vs loaded again".into());
                }
                57..=64 => {
                    let how = rng.below(3);
                    if how == 0 {
                        d.note("killed between steps".into());
                        d.kill()?;
                    } else if how == 1 {
                        d.note("SIGTERM".into());
                        d.stop();
                    } else {
                        let at = rng.below(8) as u32;
                        d.world.borrow_mut().kill_in = Some(at);
                        d.note(format!("a kill after {at} writes or saves"));
                        let next = edit(&d.good, &d.history, &mut rng);
                        d.write_valid(next, &mut rng)?;
                    }
                }
                65..=84 => {
                    let point = HOOKS[rng.below(HOOKS.len() as u64) as usize];
                    let start = HOOKS[..4].contains(&point);
                    if !start {
                        // A reload to reach the point: an edit pushed, or SIGHUP.
                        if rng.below(2) == 0 {
                            let next = edit(&d.good, &d.history, &mut rng);
                            d.write_valid(next, &mut rng)?;
                        } else {
                            d.note("SIGHUP".into());
                            if let Some(tx) = &d.hooked.borrow().tx {
                                let _ = tx.send(Input::Hangup);
                            }
                        }
                    }
                    if rng.below(5) == 0 {
                        d.note(format!("a kill at {point}"));
                        d.hooked.borrow_mut().armed = Some((point, Action::Kill));
                    } else {
                        let next = d.hook_edit(&mut rng);
                        d.arm(point, next, &mut rng)?;
                    }
                    if start {
                        d.note("a restart".into());
                        d.kill()?;
                        d.start();
                    }
                }
                _ => d.quiet(&mut rng).await?,
            }
            let dt = Duration::from_millis(100 + rng.below(3000));
            d.run_for(dt).await?;
            d.disarm()?;
        }
        d.quiet(&mut rng).await
    });
    fault::set_hook(None);
    let replay = std::env::var_os("LVSD_DSIM_SEED").is_some();
    // Where the schedule left the world, for the replay test to compare too.
    let end = {
        let w = d.world.borrow();
        format!(
            "end: {:?} {:?} {:?} {:?} {:?}",
            d.table(),
            w.addresses,
            w.sysctls,
            w.owned,
            w.host
        )
    };
    d.trace.push(end);
    let outcome = match result {
        Ok(()) => Ok(d.tally),
        Err(e) => {
            let keep = if replay { usize::MAX } else { 50 };
            let tail: Vec<&String> = d.trace.iter().rev().take(keep).collect();
            let trace: Vec<&str> = tail.into_iter().rev().map(String::as_str).collect();
            Err(format!(
                "{e}\n--- the schedule's last steps:\n{}",
                trace.join("\n")
            ))
        }
    };
    Ok((outcome, std::mem::take(&mut d.trace)))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;
    use tracing_subscriber::util::SubscriberInitExt as _;

    /// Steps in one schedule.
    const STEPS: usize = 40;

    fn env(name: &str) -> Option<u64> {
        std::env::var(name).ok().and_then(|v| v.parse().ok())
    }

    /// Runs `LVSD_DSIM_SCHEDULES` schedules (default 30) from seed `LVSD_DSIM_BASE` (default
    /// 0), or the one `LVSD_DSIM_SEED` names; prints what ran.
    #[test]
    fn random_schedules_through_the_daemon_keep_every_invariant() {
        let (base, count) = match env("LVSD_DSIM_SEED") {
            Some(seed) => (seed, 1),
            None => (
                env("LVSD_DSIM_BASE").unwrap_or(0),
                env("LVSD_DSIM_SCHEDULES").unwrap_or(30),
            ),
        };
        // `LVSD_DSIM_LOG=debug` with a replay: the daemon's own log, interleaved in time.
        let _log = std::env::var("LVSD_DSIM_LOG").ok().map(|filter| {
            tracing_subscriber::fmt()
                .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
                .with_test_writer()
                .without_time()
                .finish()
                .set_default()
        });
        let started = std::time::Instant::now();
        let mut total = Tally::default();
        for seed in base..base + count {
            match run(seed, STEPS, Mutation::None) {
                Ok(t) => {
                    total.steps += t.steps;
                    total.starts += t.starts;
                    total.kills += t.kills;
                    total.stops += t.stops;
                    total.edits += t.edits;
                    total.bad += t.bad;
                    total.lost += t.lost;
                    total.hooks += t.hooks;
                    total.faults += t.faults;
                    total.quiet += t.quiet;
                }
                Err(e) => panic!(
                    "daemon simulation seed {seed} failed: {e}\nreplay: LVSD_DSIM_SEED={seed} cargo test -p lvsd sim::daemon -- --nocapture"
                ),
            }
        }
        println!(
            "simulation (daemon): {count} schedules (seeds {base}..{}) of {STEPS} steps in {:.1?}: {} starts, {} kills, {} stops, {} valid edits, {} bad files, {} events lost, {} renames at start or reload steps, {} faults, {} quiet periods checked",
            base + count,
            started.elapsed(),
            total.starts,
            total.kills,
            total.stops,
            total.edits,
            total.bad,
            total.lost,
            total.hooks,
            total.faults,
            total.quiet
        );
    }

    /// Two services, one real each; `weight` for service 1's.
    fn model(weight: u32) -> Model {
        Model {
            services: (1..=2)
                .map(|n| {
                    (
                        n,
                        ("rr", BTreeMap::from([(1, if n == 1 { weight } else { 1 })])),
                    )
                })
                .collect(),
            director: false,
            anycast: false,
            out: false,
            sysctls: BTreeMap::new(),
        }
    }

    /// The daemon's side of `tests/e2e/startup.sh`: a file renamed into place at `point` of
    /// a start or a reload is the config in force two seconds later (well within the resync
    /// period: the read, the event or the look at the stamp right after the read took it).
    fn a_rename_at(point: &'static str, mutation: Mutation, event: bool) -> Result<(), String> {
        let rt = runtime()?;
        let tmp = TempDir::new(0)?;
        let (a, b) = (model(1), model(3));
        let mut d = driver(&tmp.0, false, mutation, &a);
        d.lossless = true;
        let mut rng = Rng(0);
        let result = rt.block_on(async {
            d.write_valid(a.clone(), &mut rng)?;
            d.run_for(Duration::from_secs(1)).await?;
            if d.table() != d.want(&a) {
                return Err("the first config is not in force".into());
            }
            d.arm(point, b.clone(), &mut rng)?;
            if let Some((_, Action::Rename { event: e, .. })) = &mut d.hooked.borrow_mut().armed {
                *e = event;
            }
            if HOOKS[..4].contains(&point) {
                d.kill()?;
                d.start();
            } else if let Some(tx) = &d.hooked.borrow().tx {
                // SIGHUP: a reload of the same file, until the new one comes.
                let _ = tx.send(Input::Hangup);
            }
            d.run_for(Duration::from_secs(2)).await?;
            if d.hooked.borrow().armed.is_some() {
                return Err(format!("{point} did not come"));
            }
            if d.table() != d.want(&b) {
                return Err(format!(
                    "two seconds after a rename at {point}, the table is not the new file's:\n  want {:?}\n  have {:?}",
                    d.want(&b),
                    d.table()
                ));
            }
            Ok(())
        });
        fault::set_hook(None);
        result.map_err(|e| format!("{e}\n{}", d.trace.join("\n")))
    }

    #[test]
    fn a_rename_before_the_watch_is_set_up_is_followed() {
        a_rename_at(fault::START_BEFORE_WATCH, Mutation::None, true).unwrap();
    }

    #[test]
    fn a_rename_before_the_start_reads_is_followed() {
        a_rename_at(fault::START_BEFORE_READ, Mutation::None, true).unwrap();
    }

    #[test]
    fn a_rename_after_the_start_read_is_followed() {
        a_rename_at(fault::START_AFTER_READ, Mutation::None, true).unwrap();
    }

    #[test]
    fn a_rename_before_the_loop_is_followed() {
        a_rename_at(fault::START_BEFORE_LOOP, Mutation::None, true).unwrap();
    }

    #[test]
    fn a_rename_before_a_reload_reads_is_followed() {
        a_rename_at(fault::RELOAD_BEFORE_READ, Mutation::None, true).unwrap();
    }

    #[test]
    fn a_rename_after_a_reload_read_is_followed() {
        a_rename_at(fault::RELOAD_AFTER_READ, Mutation::None, true).unwrap();
    }

    /// A file renamed in right after the start read it, its event lost (as for an included
    /// directory, watched only once the read named it): the look at the stamp right after
    /// the read takes it; a daemon that skips that look does not.
    #[test]
    fn a_rename_after_the_start_read_without_an_event_is_caught_by_the_stamp() {
        a_rename_at(fault::START_AFTER_READ, Mutation::None, false).unwrap();
        let broken = a_rename_at(fault::START_AFTER_READ, Mutation::IgnoreMoved, false);
        assert!(broken.is_err(), "{broken:?}");
    }

    /// The same seed, the same schedule and the same outcome, step by step, and the world
    /// (table, host, records) left the same.
    #[test]
    fn a_schedule_replays_exactly() {
        for seed in 0..8 {
            let (first, one) = run_traced(seed, STEPS, Mutation::None);
            let (second, two) = run_traced(seed, STEPS, Mutation::None);
            assert!(first.is_ok() && second.is_ok(), "{first:?} {second:?}");
            assert!(one.len() > STEPS);
            if let Some(i) = (0..one.len().min(two.len())).find(|i| one[*i] != two[*i]) {
                panic!(
                    "seed {seed} line {i}:\n{}\n--- vs\n{}",
                    one[i.saturating_sub(8)..(i + 3).min(one.len())].join("\n"),
                    two[i.saturating_sub(8)..(i + 3).min(two.len())].join("\n")
                );
            }
            assert_eq!(one, two);
        }
    }

    /// `ip_vs` unloaded and loaded again (the table empty), then an emptied file pushed before
    /// the daemon put the table back: the removal guard finds nothing to remove in the empty
    /// table and takes the emptied file in force, and the services of the last good config
    /// never come back (until a good file is pushed again). Found by the daemon's simulation
    /// (`LVSD_DSIM_BASE=300000` sweep, seed 301385). The guard now counts the services of
    /// lvsd's record that are gone from the table and from the file as removed (a service
    /// deleted by hand and then dropped from the file counts too: more than half of them at
    /// once is refused, as any such removal is).
    #[test]
    fn an_emptied_file_read_after_a_module_reload_leaves_the_last_good_config_in_force() {
        let _log = std::env::var("LVSD_DSIM_LOG").ok().map(|filter| {
            tracing_subscriber::fmt()
                .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
                .with_test_writer()
                .without_time()
                .finish()
                .set_default()
        });
        let rt = runtime().unwrap();
        let tmp = TempDir::new(1).unwrap();
        let a = model(1);
        let mut d = driver(&tmp.0, false, Mutation::None, &a);
        d.lossless = true;
        let mut rng = Rng(0);
        let result: Result<(), String> = rt.block_on(async {
            d.write_valid(a.clone(), &mut rng)?;
            d.run_for(Duration::from_secs(1)).await?;
            d.world.borrow_mut().unload();
            d.foreign.clear();
            // A resync fails, and a retry or two.
            d.run_for(RESYNC + Duration::from_secs(2)).await?;
            d.world.borrow_mut().down = false;
            d.on_disk = OnDisk::Emptied;
            let empty = Model {
                services: BTreeMap::new(),
                ..a.clone()
            };
            let texts = BTreeMap::from([(d.config.clone(), empty.yaml())]);
            d.put(texts, &mut rng)?;
            d.run_for(3 * RESYNC).await?;
            if d.table() != d.want(&a) {
                return Err(format!(
                    "the last good config is not in force: the table is {:?}",
                    d.table()
                ));
            }
            Ok(())
        });
        fault::set_hook(None);
        result
            .map_err(|e| format!("{e}\n{}", d.trace.join("\n")))
            .unwrap();
    }

    /// The simulation has teeth: a daemon whose looks at the files always find them unchanged
    /// (a lost event is then never caught by the resync) is caught within a few schedules.
    #[test]
    fn a_broken_daemon_is_caught() {
        let caught = (0..200).find_map(|seed| {
            run(seed, STEPS, Mutation::IgnoreMoved)
                .err()
                .map(|e| (seed, e))
        });
        let Some((seed, e)) = caught else {
            panic!(
                "{:?} was not caught in 200 schedules",
                Mutation::IgnoreMoved
            );
        };
        println!(
            "{:?} caught by seed {seed}: {}",
            Mutation::IgnoreMoved,
            e.lines().next().unwrap_or("")
        );
    }
}
