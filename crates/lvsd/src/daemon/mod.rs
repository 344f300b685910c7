//! `lvsd run`: one task owns the desired state and the kernel connection and reacts to config
//! changes (file watch, SIGHUP), the resync tick and drain deadlines. Level-triggered: the
//! periodic resync diffs the whole desired state against the whole live table; a config edit or
//! a health change passes only the services it touched, against the table the last pass left.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};
use config::{Config, Loaded, Reread};
use health::Monitor;
use notify::{RecursiveMode, Watcher};
use plan::health::{HealthTable, ServiceStatus, Standing};
use plan::host::Role;
use plan::{Desired, Op};
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::mpsc;

use crate::health_status;
use crate::reconcile::{Engine, HostRefused, Refused, Unfit};
use crate::telemetry::{PassRecord, Telemetry};

/// What to do about changes made behind lvsd's back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum OnDrift {
    /// Put the table back as the config says.
    Repair,
    /// Log and count the drift; leave it.
    Report,
}

/// Daemon settings from the command line.
pub struct Settings {
    /// The config file.
    pub config: PathBuf,
    /// `--role`, which every reload applies again.
    pub role: Option<Role>,
    /// Act on a config others can write (checked again at every reload).
    pub allow_insecure_config: bool,
    /// Full resync period.
    pub resync: Duration,
    /// Drift policy.
    pub on_drift: OnDrift,
    /// Apply plans the removal guard refuses.
    pub force: bool,
    /// Where to serve Prometheus metrics, if anywhere.
    pub metrics: Option<std::net::SocketAddr>,
}

/// Quiet time after the last file event before the config is read (editors and config
/// management write in bursts). A rename into place (an atomic write, a ConfigMap swap) is a
/// whole file at once and is read without waiting.
const DEBOUNCE: Duration = Duration::from_millis(200);
/// The longest a stream of file events can hold a reload back.
const DEBOUNCE_MAX: Duration = Duration::from_secs(5);
/// How often a pass runs while drains wait for connections to close.
const DRAIN_POLL: Duration = Duration::from_millis(500);
/// First retry after a failed pass; doubled per failure up to the resync period.
const BACKOFF_START: Duration = Duration::from_millis(500);

/// Watches the directory holding the config and the one its symlinks lead to, which is what
/// sees in-place writes, atomic renames and ConfigMap `..data` swaps alike. Only events naming
/// the config file (or `..data`) count, so unrelated files in `/etc/lvsd` cause no reloads.
struct ConfigWatch {
    watcher: notify::RecommendedWatcher,
    /// Watched directories and the inode each was when watched.
    dirs: BTreeMap<PathBuf, u64>,
    config: PathBuf,
}

fn parent(p: &Path) -> PathBuf {
    p.parent()
        .filter(|d| !d.as_os_str().is_empty())
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf)
}

impl ConfigWatch {
    fn new(config: &Path, tx: mpsc::UnboundedSender<bool>) -> Result<Self> {
        let mut names: BTreeSet<std::ffi::OsString> = BTreeSet::new();
        names.insert("..data".into());
        if let Some(n) = config.file_name() {
            names.insert(n.to_owned());
        }
        if let Some(n) = std::fs::canonicalize(config)
            .ok()
            .and_then(|r| r.file_name().map(ToOwned::to_owned))
        {
            names.insert(n);
        }
        let watcher = notify::recommended_watcher(move |ev: notify::Result<notify::Event>| {
            let Ok(ev) = ev else { return };
            let relevant = !ev.kind.is_access()
                && ev
                    .paths
                    .iter()
                    .any(|p| p.file_name().is_some_and(|n| names.contains(n)));
            if !relevant {
                // Writers make thousands of these (a large file written in pieces).
                tracing::trace!(kind = ?ev.kind, paths = ?ev.paths, "file event, not the config");
                return;
            }
            tracing::debug!(kind = ?ev.kind, paths = ?ev.paths, relevant, "file event");
            let whole = matches!(
                ev.kind,
                notify::EventKind::Modify(notify::event::ModifyKind::Name(
                    notify::event::RenameMode::To | notify::event::RenameMode::Both
                ))
            );
            let _ = tx.send(whole);
        })
        .context("start the file watcher")?;
        let mut w = ConfigWatch {
            watcher,
            dirs: BTreeMap::new(),
            config: config.to_path_buf(),
        };
        w.refresh()?;
        Ok(w)
    }

    /// Adds the directories the config resolves through now (a ConfigMap swap moves the file
    /// into a new directory).
    fn refresh(&mut self) -> Result<()> {
        let mut want = vec![parent(&self.config)];
        if let Ok(real) = std::fs::canonicalize(&self.config) {
            want.push(parent(&real));
        }
        for d in want {
            use std::os::unix::fs::MetadataExt as _;
            let Ok(ino) = std::fs::metadata(&d).map(|m| m.ino()) else {
                continue;
            };
            match self.dirs.get(&d) {
                Some(&watched) if watched == ino => continue,
                // The directory was replaced: the old watch sees nothing any more.
                Some(_) => {
                    let _ = self.watcher.unwatch(&d);
                }
                None => {}
            }
            self.watcher
                .watch(&d, RecursiveMode::NonRecursive)
                .with_context(|| format!("watch {}", d.display()))?;
            self.dirs.insert(d, ino);
        }
        Ok(())
    }
}

/// Services a derived value or the next pass has to look at again.
#[derive(Debug)]
enum Dirty {
    /// All of them: a full pass, a full recomputation.
    All,
    /// Just these.
    Services(BTreeSet<ipvs::ServiceKey>),
}

impl Dirty {
    fn none() -> Self {
        Dirty::Services(BTreeSet::new())
    }

    fn add(&mut self, keys: impl IntoIterator<Item = ipvs::ServiceKey>) {
        if let Dirty::Services(s) = self {
            s.extend(keys);
        }
    }

    fn take(&mut self) -> Option<BTreeSet<ipvs::ServiceKey>> {
        match std::mem::replace(self, Dirty::none()) {
            Dirty::All => None,
            Dirty::Services(s) => Some(s),
        }
    }
}

/// Brings the table the planner aims for (the config with health applied) and the services'
/// standings up to date for the services in `dirty` (`None`: all). `table` is `None` while no
/// service has health settings: the planner then aims for the config itself (no copy of a
/// large table).
fn refresh_effective(
    health: &HealthTable,
    desired: &Desired,
    dirty: Option<BTreeSet<ipvs::ServiceKey>>,
    table: &mut Option<Desired>,
    statuses: &mut BTreeMap<ipvs::ServiceKey, ServiceStatus>,
) {
    let whole = |table: &mut Option<Desired>, statuses: &mut BTreeMap<_, _>| match health
        .effective_if_any(desired)
    {
        Some((t, st)) => {
            *table = Some(t);
            *statuses = st.into_iter().map(|s| (s.service, s)).collect();
        }
        None => {
            *table = None;
            statuses.clear();
        }
    };
    let Some(keys) = dirty else {
        whole(table, statuses);
        return;
    };
    let Some(table) = table else {
        // Still the config itself, unless one of these services brought health settings.
        if keys
            .iter()
            .filter_map(|k| desired.services.get(k))
            .any(|s| !s.health.is_inert())
        {
            whole(table, statuses);
        }
        return;
    };
    for k in keys {
        match desired.services.get(&k) {
            Some(svc) => {
                let (svc, st) = health.effective_service(&k, svc);
                table.services.insert(k, svc);
                match st {
                    Some(st) => statuses.insert(k, st),
                    None => statuses.remove(&k),
                };
            }
            None => {
                table.services.remove(&k);
                statuses.remove(&k);
            }
        }
    }
}

/// The services whose desired entry differs between two configs: in report mode only these
/// are written, everything else the table does differently is drift.
fn changed(old: &Desired, new: &Desired) -> BTreeSet<ipvs::ServiceKey> {
    let keys = old.services.keys().chain(new.services.keys());
    keys.filter(|k| old.services.get(k) != new.services.get(k))
        .copied()
        .collect()
}

/// Runs until SIGTERM or SIGINT; the table and the host are left as they are on exit.
pub async fn run(settings: Settings, mut engine: Engine, mut loaded: Loaded) -> Result<()> {
    let cfg = &loaded.config;
    let (tx, mut rx) = mpsc::unbounded_channel();
    let mut watch = ConfigWatch::new(&settings.config, tx)?;
    let mut hup = signal(SignalKind::hangup()).context("install the SIGHUP handler")?;
    let mut term = signal(SignalKind::terminate()).context("install the SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("install the SIGINT handler")?;
    let mut tick = tokio::time::interval(settings.resync);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.reset();
    let mut drift_total: u64 = 0;
    // Report mode writes only what a config change asks for (at start: everything), until
    // those services have converged; any other difference is drift.
    let mut pending: Option<BTreeSet<ipvs::ServiceKey>> = None;
    // The same for the host: its changes are written at start and after a config change.
    let mut host_pending = true;
    let mut failures: u32 = 0;
    // Health: the state of every checked real, the probes, and what was last said about each
    // service (so a standing is logged once per change).
    let mut health = HealthTable::default();
    let (mut monitor, mut reports) = Monitor::new(CHECK_CONCURRENCY);
    if let Err(e) = engine.adopt_health(cfg, &mut health).await {
        tracing::warn!("cannot read the table to adopt health states: {e:#}");
    }
    monitor.sync(health.checks());
    let mut standings: BTreeMap<ipvs::ServiceKey, (Standing, bool)> = BTreeMap::new();
    // The config with health applied and each service's standing, kept between passes and
    // recomputed for what changed; and what the next pass looks at.
    let mut table_desired: Option<Desired> = None;
    let mut statuses: BTreeMap<ipvs::ServiceKey, ServiceStatus> = BTreeMap::new();
    let mut stale = Dirty::All;
    let mut scope = Dirty::All;
    let telemetry = Telemetry::new(&settings.config, cfg.host.role.name());
    telemetry.config_loaded(
        crate::telemetry::config_hash(loaded.bytes()),
        cfg.host.role.name(),
        false,
    );
    crate::telemetry::serve_status(engine.state_dir(), telemetry.clone())?;
    if let Some(addr) = settings.metrics {
        crate::telemetry::serve_metrics(addr, telemetry.clone()).await?;
    }
    let mut ready = false;
    let mut hash_due = false;
    let mut loaded_identity = file_identity(&settings.config);
    // Changes are expected after a start, a reload or a health transition; a pass that finds
    // something to do otherwise is repairing drift.
    let mut expect_changes = true;
    let watchdog = crate::telemetry::watchdog_interval();
    let mut watchdog_tick = tokio::time::interval(watchdog.unwrap_or(Duration::from_secs(3600)));
    tracing::info!(config = %settings.config.display(), role = cfg.host.role.name(), services = cfg.desired.services.len(), checks = monitor.len(), resync = ?settings.resync, "lvsd running");
    loop {
        let cfg = &loaded.config;
        let report = settings.on_drift == OnDrift::Report;
        let allow = |op: &Op| !report || pending.as_ref().is_none_or(|a| a.contains(&op.service()));
        let allow_host = !report || host_pending;
        refresh_effective(
            &health,
            &cfg.desired,
            stale.take(),
            &mut table_desired,
            &mut statuses,
        );
        let standing_list: Vec<ServiceStatus> = statuses.values().cloned().collect();
        log_standings(&standing_list, &mut standings);
        if !monitor.is_empty() {
            health_status::save(
                engine.state_dir(),
                &health_status::lines(&health, &standing_list),
            );
        }
        telemetry.health(
            health_status::lines(&health, &standing_list),
            health_status::up_labels(&health),
        );
        let started = std::time::Instant::now();
        let pass_scope = scope.take();
        let result = engine
            .converge(
                cfg,
                table_desired.as_ref().unwrap_or(&cfg.desired),
                pass_scope.as_ref(),
                settings.force,
                &allow,
                allow_host,
            )
            .await;
        if std::mem::take(&mut hash_due) {
            telemetry.config_loaded(
                crate::telemetry::config_hash(loaded.bytes()),
                cfg.host.role.name(),
                true,
            );
        }
        let mut record = PassRecord {
            managed: engine.owned.services.len(),
            ..PassRecord::default()
        };
        match &result {
            Ok(pass) => {
                for op in &pass.host_applied {
                    record.ops.push((op.kind(), "ok"));
                    record.changes.push(op.to_string());
                }
                if let Some((op, e)) = &pass.host_failed {
                    record.ops.push((op.kind(), "failed"));
                    record.failed.push(format!("{op}: {e}"));
                }
                for op in &pass.applied {
                    record.ops.push((op.kind(), "ok"));
                    record.changes.push(op.to_string());
                }
                for (op, e) in &pass.failed {
                    record.ops.push((op.kind(), "failed"));
                    record.failed.push(format!("{op}: {e}"));
                }
                record.foreign = pass.after.foreign.len();
                record.converged = pass.converged();
                let applied = (pass.applied.len() + pass.host_applied.len()) as u64;
                let skipped = (pass.skipped.len() + pass.host_skipped.len()) as u64;
                record.drift = skipped + if expect_changes { 0 } else { applied };
            }
            Err(e) => record.error = Some(format!("{e:#}")),
        }
        let summary = match &result {
            Ok(p) if p.converged() => format!(
                "in sync: {} services, {} changes in the last pass",
                cfg.desired.services.len(),
                record.changes.len()
            ),
            Ok(p) => format!(
                "converging: {} changes, {} failed, {} pending",
                record.changes.len(),
                record.failed.len(),
                p.after.ops.len() + p.after.waiting.len() + p.host_after.ops.len()
            ),
            Err(e) => format!("last pass failed: {e}"),
        };
        if result.is_ok() && !ready {
            crate::telemetry::notify_ready(&summary);
            ready = true;
        } else {
            crate::telemetry::notify_status(&summary);
        }
        if matches!(&result, Ok(p) if p.converged()) {
            expect_changes = false;
        }
        telemetry.pass(started.elapsed(), record);
        let retry_in = match result {
            Ok(pass) => {
                let more = pass.after.ops.iter().any(allow);
                let busy: BTreeSet<_> = pass
                    .after
                    .ops
                    .iter()
                    .map(Op::service)
                    .chain(pass.after.waiting.iter().map(|w| w.service))
                    .collect();
                let mut left = pending.take().unwrap_or_else(|| busy.clone());
                left.retain(|k| busy.contains(k));
                pending = Some(left);
                if pass.host_skipped.is_empty() && pass.host_after.ops.is_empty() {
                    host_pending = false;
                }
                if !pass.skipped.is_empty() || !pass.host_skipped.is_empty() {
                    drift_total += (pass.skipped.len() + pass.host_skipped.len()) as u64;
                    for op in &pass.skipped {
                        tracing::warn!(service = %op.service(), drift_total, "drift (not repaired, --on-drift report): {op}");
                    }
                    for op in &pass.host_skipped {
                        tracing::warn!(
                            drift_total,
                            "host drift (not repaired, --on-drift report): {op}"
                        );
                    }
                }
                for w in &pass.after.waiting {
                    tracing::info!(service = %w.service, real = %w.real, active = w.active, "draining: waiting for connections to close");
                }
                let failed = !pass.failed.is_empty() || pass.host_failed.is_some();
                failures = if failed { failures + 1 } else { 0 };
                if failed {
                    scope = Dirty::All;
                    Some(backoff(failures, settings.resync))
                } else if !pass.after.waiting.is_empty()
                    || more
                    || (allow_host && !pass.host_after.ops.is_empty())
                {
                    // Only the services still busy need another look meanwhile.
                    scope.add(busy);
                    Some(DRAIN_POLL)
                } else {
                    None
                }
            }
            Err(e) if e.is::<Refused>() || e.is::<HostRefused>() => {
                tracing::error!("{e}");
                None
            }
            Err(e) => {
                failures += 1;
                scope = Dirty::All;
                let wait = backoff(failures, settings.resync);
                if e.is::<Unfit>() {
                    tracing::error!(
                        "the host lacks what the role needs: {e}; checking again in {wait:?}"
                    );
                } else {
                    tracing::error!("reconcile failed: {e:#}; retrying in {wait:?}");
                }
                Some(wait)
            }
        };
        let retry = async {
            match retry_in {
                Some(d) => tokio::time::sleep(d).await,
                None => std::future::pending::<()>().await,
            }
        };
        tokio::pin!(retry);
        let wake = loop {
            tokio::select! {
                _ = tick.tick() => {
                    tracing::debug!("resync");
                    // Events can be lost (the directory replaced, a watch on a dead inode):
                    // the resync also notices a different file behind the path.
                    scope = Dirty::All;
                    if file_identity(&settings.config) != loaded_identity {
                        break Wake::Reload;
                    }
                    break Wake::Pass;
                }
                _ = &mut retry => break Wake::Pass,
                Some(r) = reports.recv() => {
                    if let Some(up) = health.record(&r.id, r.outcome.ok, &r.outcome.reason) {
                        let (service, real) = r.id;
                        // Health changes are the config's wishes, not drift, in report mode too.
                        pending.get_or_insert_with(BTreeSet::new).insert(service);
                        stale.add([service]);
                        scope.add([service]);
                        expect_changes = true;
                        if up {
                            tracing::info!(%service, %real, reason = %r.outcome.reason, "health: real {real} of {service} is up, back in rotation");
                        } else {
                            tracing::warn!(%service, %real, reason = %r.outcome.reason, "health: real {real} of {service} is DOWN ({}), out of rotation", r.outcome.reason);
                        }
                        break Wake::Pass;
                    }
                }
                Some(whole) = rx.recv() => {
                    // Wait until the writer is done: no event for DEBOUNCE (a file written in
                    // pieces is read whole), but never longer than DEBOUNCE_MAX. A rename into
                    // place is already whole.
                    if !whole {
                        let give_up = tokio::time::Instant::now() + DEBOUNCE_MAX;
                        while let Ok(Some(whole)) = tokio::time::timeout(DEBOUNCE, rx.recv()).await {
                            if whole || tokio::time::Instant::now() >= give_up {
                                break;
                            }
                        }
                    }
                    while rx.try_recv().is_ok() {}
                    break Wake::Reload;
                }
                _ = hup.recv() => {
                    tracing::info!("SIGHUP: reloading the config");
                    break Wake::Reload;
                }
                _ = watchdog_tick.tick(), if watchdog.is_some() => {
                    crate::telemetry::notify_watchdog();
                }
                _ = term.recv() => break Wake::Stop,
                _ = int.recv() => break Wake::Stop,
            }
        };
        match wake {
            Wake::Pass => continue,
            Wake::Stop => break,
            Wake::Reload => {}
        }
        if let Err(e) = watch.refresh() {
            tracing::warn!("{e:#}");
        }
        loaded_identity = file_identity(&settings.config);
        let new = match reload(&settings, &mut loaded, &mut engine).await {
            Ok(new) => new,
            Err(why) => {
                telemetry.config_rejected(&why);
                None
            }
        };
        if let Some(touched) = new {
            let cfg = &loaded.config;
            // Said once the pass has carried the change out: hashing a large file is not
            // worth delaying it for.
            hash_due = true;
            expect_changes = true;
            pending
                .get_or_insert_with(BTreeSet::new)
                .extend(touched.iter().copied());
            host_pending = true;
            failures = 0;
            // Unchanged checks keep their state and rhythm; new ones adopt the kernel's weights.
            if let Err(e) = engine.adopt_health_kept(cfg, &mut health).await {
                tracing::warn!("cannot read the table to adopt health states: {e:#}");
            }
            monitor.sync(health.checks());
            stale.add(touched.iter().copied());
            scope.add(touched);
        }
    }
    let _ = std::fs::remove_file(crate::telemetry::socket_path(engine.state_dir()));
    tracing::info!("stopping; the IPVS table and the host stay as they are");
    Ok(())
}

/// What the config path leads to now: device, inode, size and modification time.
fn file_identity(path: &Path) -> Option<(u64, u64, u64, i64, i64)> {
    use std::os::unix::fs::MetadataExt as _;
    let m = std::fs::metadata(path).ok()?;
    Some((m.dev(), m.ino(), m.size(), m.mtime(), m.mtime_nsec()))
}

/// Why the daemon woke up.
enum Wake {
    /// Run a pass (resync, retry, a health transition).
    Pass,
    /// Read the config again, then run a pass.
    Reload,
    /// SIGTERM or SIGINT.
    Stop,
}

/// Probes running at once, at most (each is short and bounded by its timeout).
const CHECK_CONCURRENCY: usize = 64;

/// Logs each service's health standing when it changes: loudly when no real is healthy.
fn log_standings(
    statuses: &[ServiceStatus],
    last: &mut BTreeMap<ipvs::ServiceKey, (Standing, bool)>,
) {
    let mut seen = BTreeMap::new();
    for s in statuses {
        let now = (s.standing, s.fallback_active);
        let before = last
            .get(&s.service)
            .copied()
            .unwrap_or((Standing::Ok, false));
        if now != before {
            match s.standing {
                // New reals start drained until their first checks pass: that is not an outage
                // to shout about yet.
                Standing::Down if s.waiting > 0 && s.waiting >= s.serving => {
                    tracing::info!(service = %s.service, "health: {s}; waiting for the first check results")
                }
                Standing::Down => tracing::error!(service = %s.service, "health: {s}"),
                Standing::Degraded => tracing::warn!(service = %s.service, "health: {s}"),
                Standing::Ok => tracing::info!(service = %s.service, "health: {s}"),
            }
        }
        seen.insert(s.service, now);
    }
    *last = seen;
}

/// The wait before retry `n` (1-based) of a failing pass: 0.5 s doubling, capped at `max`.
fn backoff(n: u32, max: Duration) -> Duration {
    BACKOFF_START
        .saturating_mul(1u32 << n.saturating_sub(1).min(16))
        .min(max)
}

/// Reads the config again. An invalid or missing file, or one the removal guard refuses, is
/// logged and ignored: the daemon keeps enforcing the last good config. An edit of a few
/// services is read in place (only its entries are parsed again).
/// `Ok(None)`: nothing new (unchanged, or the file is gone); `Ok(Some(touched))`: `loaded`
/// holds the new config, and `touched` the services whose entries changed; `Err`: rejected,
/// with why.
async fn reload(
    settings: &Settings,
    loaded: &mut Loaded,
    engine: &mut Engine,
) -> Result<Option<BTreeSet<ipvs::ServiceKey>>, String> {
    let path = &settings.config;
    if !settings.allow_insecure_config {
        if let Some(why) = crate::perms::insecure(path) {
            tracing::error!("{why}; keeping the last good config");
            return Err(why);
        }
    }
    let started = std::time::Instant::now();
    let reread = loaded.reread_file(path, settings.role);
    tracing::debug!(target: "lvsd::timing", elapsed = ?started.elapsed(), in_place = matches!(reread, Ok(Reread::Edited { .. })), "read and validated the config");
    let touched = match reread {
        Ok(Reread::Same) => return Ok(None),
        Ok(Reread::Edited { touched, undo }) => {
            if touched.is_empty() {
                return Ok(None);
            }
            if let Err(why) = guard(settings, None, &loaded.config, &touched, engine).await {
                loaded.undo(undo);
                return Err(why);
            }
            touched
        }
        Ok(Reread::Whole(new)) => {
            let touched = changed(&loaded.config.desired, &new.config.desired);
            if touched.is_empty() && new.config.host == loaded.config.host {
                loaded.replace(*new);
                return Ok(None);
            }
            let role = loaded.config.host.role;
            guard(settings, Some(role), &new.config, &touched, engine).await?;
            loaded.replace(*new);
            touched
        }
        Err(config::Error::Read { source, .. })
            if source.kind() == std::io::ErrorKind::NotFound =>
        {
            tracing::warn!(config = %path.display(), "config file is gone; keeping the last good config (a missing file never means remove everything)");
            return Ok(None);
        }
        Err(e) => {
            for line in e.to_string().lines() {
                tracing::error!("{line}");
            }
            tracing::error!("config rejected; keeping the last good config");
            return Err(e.to_string());
        }
    };
    tracing::info!(
        role = loaded.config.host.role.name(),
        services = loaded.config.desired.services.len(),
        changed = touched.len(),
        "config changed"
    );
    Ok(Some(touched))
}

/// The removal guards for a new config (unless `--force`): a role taken away (`current`: the
/// role before), or a plan removing most of what lvsd manages. For a small edit the plan covers
/// the touched services against the table the last pass left.
async fn guard(
    settings: &Settings,
    current: Option<Role>,
    new: &Config,
    touched: &BTreeSet<ipvs::ServiceKey>,
    engine: &mut Engine,
) -> Result<(), String> {
    if settings.force {
        return Ok(());
    }
    let path = &settings.config;
    if let Some(role) = current.filter(|r| *r != Role::None) {
        if new.host.role == Role::None {
            let why = "the new config takes this host's role away (its host section is gone: a truncated file?); keeping the last good config. To remove the role, stop lvsd and run `lvsd apply --role none`, or run with --force";
            tracing::error!(config = %path.display(), role = role.name(), "{why}");
            return Err(why.to_owned());
        }
    }
    let plan = match engine.plan_scoped(new, &new.desired, touched).await {
        Ok(Some(plan)) => Ok(plan),
        Ok(None) => engine.plan_all(new, &new.desired).await,
        Err(e) => Err(e),
    };
    match plan {
        Ok(plan) => {
            if let Some(why) = engine.refusal(new, &plan) {
                tracing::error!(config = %path.display(), "{why}; keeping the last good config");
                return Err(why.to_string());
            }
        }
        Err(e) => {
            tracing::warn!("cannot read the table and host to check the new config: {e:#}")
        }
    }
    Ok(())
}
