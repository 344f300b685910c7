//! `lvsd run`: one task owns the desired state and the kernel connections. What it does next is
//! decided by a pure state machine ([`decide`]); this module carries the steps out — reading
//! the config ([`reload`]), running passes through the engine — and feeds their outcomes and
//! the outside world's events (file writes seen by [`watch`], signals, health transitions)
//! back in. Level-triggered: the periodic resync diffs the whole desired state against the
//! whole live table; a config edit or a health change passes only the services it touched,
//! against the table the last pass left.

pub mod decide;
mod effective;
mod reload;
mod report;
mod watch;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};
use config::{Loaded, Stamp};
use health::{Monitor, Report};
use plan::health::{HealthTable, ServiceStatus, Standing as HealthStanding};
use plan::host::{HostOp, Role};
use plan::{Desired, Op};
use tokio::signal::unix::{Signal, SignalKind, signal};
use tokio::sync::mpsc;

use self::decide::{Check, Event, Machine, PassRequest, Reloaded, Scope, Serving, Standing, Step};
use self::effective::refresh_effective;
use self::report::{announce_device, log_standings, status_line, summarize};
use self::watch::ConfigWatch;
use crate::engine::{Engine, Outcome, Pass, PassSpec, Unfit};
use crate::health_status;
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

/// The signals the daemon reacts to. Installed before anything else is done, so a SIGHUP
/// during start-up (a config push racing the service start) is a reload, not a death.
pub struct Signals {
    hup: Signal,
    term: Signal,
    int: Signal,
}

impl Signals {
    /// Installs the handlers.
    pub fn install() -> Result<Self> {
        Ok(Signals {
            hup: signal(SignalKind::hangup()).context("install the SIGHUP handler")?,
            term: signal(SignalKind::terminate()).context("install the SIGTERM handler")?,
            int: signal(SignalKind::interrupt()).context("install the SIGINT handler")?,
        })
    }
}

/// Probes running at once, at most (each is short and bounded by its timeout).
const CHECK_CONCURRENCY: usize = 64;

/// What reaches the loop from outside, on one channel.
enum Input {
    /// The config file was written (`true`: renamed into place).
    File(bool),
    /// SIGHUP.
    Hangup,
    /// SIGTERM or SIGINT.
    Stop,
    /// A probe's result.
    Health(Report),
}

/// The daemon's clock: `decide` counts time from the start.
struct Clock(tokio::time::Instant);

impl Clock {
    fn now(&self) -> decide::At {
        self.0.elapsed()
    }

    fn instant(&self, at: decide::At) -> tokio::time::Instant {
        self.0 + at
    }
}

/// Everything the loop owns.
struct Daemon {
    settings: Settings,
    engine: Engine,
    /// The last good config (`None` only while a reload is reading it).
    loaded: Option<Loaded>,
    watch: ConfigWatch,
    /// What the last read saw, accepted or not (a resync notices other files behind the
    /// paths: an event the watch lost).
    read: Stamp,
    machine: Machine,
    clock: Clock,
    telemetry: std::sync::Arc<Telemetry>,
    health: HealthTable,
    monitor: Monitor,
    /// The config with health applied (`None` while no service has health settings: the
    /// config itself is the target) and each service's standing (which services to recompute
    /// is `decide`'s).
    table_desired: Option<Desired>,
    statuses: BTreeMap<ipvs::ServiceKey, ServiceStatus>,
    /// Moves on whenever a service's standing changes (with the health table's revision, what
    /// the health picture was last published for).
    statuses_revision: u64,
    health_published: Option<(u64, u64)>,
    /// What was last said about each service's health (logged once per change).
    standings: BTreeMap<ipvs::ServiceKey, (HealthStanding, bool)>,
    /// The health lines last written to the state directory (rewritten only when they change).
    health_written: Option<Vec<String>>,
}

/// Runs until SIGTERM or SIGINT; the table and the host are left as they are on exit.
///
/// The config's directory is watched before the config is first read, and the read is stamped
/// from the file it read: a file renamed into place at any moment of the start is either the
/// one read or an event (or, in an included directory watched only once the read named it,
/// seen by the look at the stamp `decide` asks for first).
pub async fn run(settings: Settings, signals: Signals, engine: Engine) -> Result<()> {
    let clock = Clock(tokio::time::Instant::now());
    let (tx, mut inputs) = mpsc::unbounded_channel();
    let files = tx.clone();
    crate::fault::point(crate::fault::START_BEFORE_WATCH);
    let mut watch = ConfigWatch::new(&settings.config, move |whole| {
        let _ = files.send(Input::File(whole));
    })?;
    crate::fault::point(crate::fault::START_BEFORE_READ);
    let (path, role) = (settings.config.clone(), settings.role);
    let (loaded, read) = tokio::task::spawn_blocking(move || {
        let mut seen = Stamp::default();
        let loaded = Loaded::load(&path, role, &mut seen);
        (loaded, seen)
    })
    .await
    .context("read the config")?;
    let loaded = loaded?;
    crate::fault::point(crate::fault::START_AFTER_READ);
    // Every file of the generation: whoever can write one of them controls its services.
    if !settings.allow_insecure_config {
        if let Some(why) = loaded.included_files().find_map(crate::perms::insecure) {
            anyhow::bail!("{why}");
        }
    }
    watch.follow(loaded.include_dirs());
    forward_signals(signals, tx.clone());
    let role = loaded.config.host.role;
    let services = loaded.config.desired.services.len();
    let telemetry = Telemetry::new(&settings.config, role.name());
    let lateness = telemetry.clone();
    let (monitor, mut reports) = Monitor::new(
        CHECK_CONCURRENCY,
        std::sync::Arc::new(move |late| lateness.check_started(late)),
    );
    let health_tx = tx;
    tokio::spawn(async move {
        while let Some(r) = reports.recv().await {
            if health_tx.send(Input::Health(r)).is_err() {
                return;
            }
        }
    });
    telemetry.config_loaded(
        crate::telemetry::config_hash(loaded.bytes()),
        role.name(),
        false,
    );
    crate::telemetry::serve_status(engine.state_dir(), telemetry.clone())?;
    if let Some(addr) = settings.metrics {
        crate::telemetry::serve_metrics(addr, telemetry.clone()).await?;
    }
    let machine = Machine::new(
        decide::Settings {
            resync: settings.resync,
            report_drift: settings.on_drift == OnDrift::Report,
        },
        clock.now(),
    );
    let mut d = Daemon {
        read,
        watch,
        engine,
        loaded: Some(loaded),
        machine,
        clock,
        telemetry,
        health: HealthTable::default(),
        monitor,
        table_desired: None,
        statuses: BTreeMap::new(),
        statuses_revision: 0,
        health_published: None,
        standings: BTreeMap::new(),
        health_written: None,
        settings,
    };
    d.sync_health(false, None).await;
    tracing::info!(config = %d.settings.config.display(), role = role.name(), services, checks = d.monitor.len(), resync = ?d.settings.resync, "lvsd running");
    // Up and watching: READY now, whatever the first pass will say (a module that loads late,
    // a missing interface or a refused plan must not make systemd kill and restart the unit).
    crate::telemetry::notify_ready("started; first pass under way");
    let watchdog = crate::telemetry::watchdog_interval();
    let mut next_ping = watchdog.map(|w| d.clock.now() + w);
    crate::fault::point(crate::fault::START_BEFORE_LOOP);
    // What ends the loop other than a stop: lvsd cannot go on (and exits non-zero).
    let mut fatal = None;
    'run: loop {
        // Everything that arrived while the last step ran is taken in before the next step.
        while let Ok(input) = inputs.try_recv() {
            if !d.input(input) {
                break 'run;
            }
        }
        if let (Some(w), Some(at)) = (watchdog, next_ping) {
            if at <= d.clock.now() {
                crate::telemetry::notify_watchdog();
                next_ping = Some(d.clock.now() + w);
            }
        }
        match d.machine.next(d.clock.now()) {
            Step::Reload { .. } => {
                if let Err(e) = d.reload().await {
                    fatal = Some(e);
                    break 'run;
                }
            }
            Step::CheckFile(why) => d.check_file(why).await,
            Step::Pass(req) => d.pass(req).await,
            Step::Wait(until) => {
                let until = next_ping.map_or(until, |p| p.min(until));
                tokio::select! {
                    () = tokio::time::sleep_until(d.clock.instant(until)) => {}
                    input = inputs.recv() => match input {
                        Some(input) => {
                            if !d.input(input) {
                                break 'run;
                            }
                        }
                        None => break 'run,
                    },
                }
            }
        }
    }
    let _ = std::fs::remove_file(crate::telemetry::socket_path(d.engine.state_dir()));
    if let Some(e) = fatal {
        tracing::error!("{e:#}");
        return Err(e);
    }
    tracing::info!("stopping; the IPVS table and the host stay as they are");
    Ok(())
}

/// Writes `value` to the health file at `path` (the one place it is written); whether it was.
fn write_health_file(telemetry: &Telemetry, path: &std::path::Path, value: usize) -> bool {
    match crate::state_file::write_value(path, &format!("{value}\n")) {
        Ok(()) => {
            tracing::info!(file = %path.display(), value, "health file: {value} services cannot be served here");
            telemetry.health_file(value);
            true
        }
        Err(e) => {
            tracing::error!("cannot write the health file: {e:#}");
            false
        }
    }
}

/// Forwards the signals to the loop's input channel.
fn forward_signals(mut s: Signals, tx: mpsc::UnboundedSender<Input>) {
    tokio::spawn(async move {
        loop {
            let input = tokio::select! {
                _ = s.hup.recv() => Input::Hangup,
                _ = s.term.recv() => Input::Stop,
                _ = s.int.recv() => Input::Stop,
            };
            if tx.send(input).is_err() {
                return;
            }
        }
    });
}

impl Daemon {
    /// Takes one input in; false on a stop.
    fn input(&mut self, input: Input) -> bool {
        let now = self.clock.now();
        match input {
            Input::File(whole) => {
                self.machine.on(Event::FileWritten { whole }, now);
            }
            Input::Hangup => {
                tracing::info!("SIGHUP: reloading the config");
                self.machine.on(Event::Hangup, now);
            }
            Input::Stop => return false,
            Input::Health(r) => {
                if !self.monitor.is_current(&r) {
                    // From a check that was changed or removed since: not this check's result.
                    tracing::debug!(service = %r.id.0, real = %r.id.1, "health: result of a replaced check ignored");
                    return true;
                }
                if let Some(up) = self.health.set(&r.id, r.up, &r.outcome.reason) {
                    let (service, real) = r.id;
                    if up {
                        tracing::info!(%service, %real, reason = %r.outcome.reason, "health: real {real} of {service} is up, back in rotation");
                    } else {
                        tracing::warn!(%service, %real, reason = %r.outcome.reason, "health: real {real} of {service} is DOWN ({}), out of rotation", r.outcome.reason);
                    }
                    self.machine.on(Event::HealthChanged(service), now);
                }
            }
        }
        true
    }

    /// Brings the health table and the probes in line with the config: unchanged checks keep
    /// their state and rhythm, new ones adopt the kernel's weights (`kept`: from the table the
    /// last pass left, when there is one). `touched`: only these services' checks (an edit).
    async fn sync_health(&mut self, kept: bool, touched: Option<&Scope>) {
        let Some(loaded) = &self.loaded else { return };
        let services = match touched {
            Some(Scope::Services(s)) => Some(s),
            _ => None,
        };
        let adopted = if kept {
            self.engine
                .adopt_health_kept(&loaded.config, &mut self.health, services)
                .await
        } else {
            self.engine
                .adopt_health(&loaded.config, &mut self.health)
                .await
        };
        if let Err(e) = adopted {
            // The states start from the config's `initial` instead.
            tracing::warn!("cannot read the table to adopt health states: {e:#}");
            self.health.sync(&loaded.config.desired, None);
        }
        match services {
            Some(s) => self.monitor.sync_some(s, self.health.checks_of(s)),
            None => self.monitor.sync(self.health.checks_with_state()),
        }
    }

    /// Whether the files at the config's paths are no longer those the last read saw (off the
    /// loop: a directory of included files is listed and each file looked at).
    async fn read_moved(&self) -> bool {
        let (read, path) = (self.read.clone(), self.settings.config.clone());
        tokio::task::spawn_blocking(move || read.moved(&path))
            .await
            .unwrap_or(true)
    }

    /// Looks at the files behind the config's paths for `decide`, which asked for it `why`.
    async fn check_file(&mut self, why: Check) {
        if why == Check::Rejected {
            // As before any reload: the directories the config resolves through now.
            if let Err(e) = self.watch.refresh() {
                tracing::warn!("{e:#}");
            }
        }
        let changed = self.read_moved().await;
        let config = self.settings.config.display();
        match (why, changed) {
            (Check::Resync, true) => {
                tracing::info!(config = %config, "resync: another file is behind the config path; reading it");
            }
            (Check::Resync, false) => tracing::debug!("resync"),
            (Check::Rejected, false) => {
                tracing::debug!("the config is the file rejected last; nothing new");
            }
            _ => {}
        }
        let v = self
            .machine
            .on(Event::FileChecked { changed }, self.clock.now());
        if why == Check::Read && changed {
            if v.read_again {
                tracing::info!(config = %config, "the config changed while it was read; reading it again");
            } else {
                tracing::debug!(
                    "the config moved again while it was read; the watch and the resync follow it"
                );
            }
        }
    }

    /// Reads the config again; an error is fatal (see [`reload::reload`]).
    async fn reload(&mut self) -> Result<()> {
        if let Err(e) = self.watch.refresh() {
            tracing::warn!("{e:#}");
        }
        crate::fault::point(crate::fault::RELOAD_BEFORE_READ);
        let (outcome, read) =
            reload::reload(&self.settings, &mut self.loaded, &mut self.engine).await?;
        crate::fault::point(crate::fault::RELOAD_AFTER_READ);
        self.read = read;
        if let Some(l) = &self.loaded {
            self.watch.follow(l.include_dirs());
        }
        let outcome = match outcome {
            Reloaded::Unchanged if !self.read.is_present() => Reloaded::Gone,
            o => o,
        };
        match &outcome {
            Reloaded::Rejected(why) => self.telemetry.config_rejected(why),
            Reloaded::Deferred(why) => self.telemetry.config_deferred(why),
            Reloaded::Changed(touched) => {
                let t = std::time::Instant::now();
                self.sync_health(true, Some(touched)).await;
                tracing::debug!(target: "lvsd::timing", elapsed = ?t.elapsed(), "brought the checks in line");
            }
            Reloaded::Unchanged | Reloaded::Gone => {}
        }
        if self
            .machine
            .on(Event::Reloaded(outcome), self.clock.now())
            .config_back
        {
            // The file is the config in force again (a rejected edit undone): say so.
            self.telemetry.config_back();
        }
        let services = self
            .loaded
            .as_ref()
            .map_or(0, |l| l.config.desired.services.len());
        self.say_status(services);
        Ok(())
    }

    /// `STATUS=` for systemd: how table and host stand, and why the file on disk is not the
    /// config in force, if it is not.
    fn say_status(&self, services: usize) {
        crate::telemetry::notify_status(&status_line(&self.machine, services));
    }

    /// Brings the table the planner aims for (the config with health applied) and the
    /// services' standings up to date for what is stale.
    fn refresh_effective(&mut self, stale: Scope) {
        if let Some(loaded) = &self.loaded {
            if refresh_effective(
                &self.health,
                &loaded.config.desired,
                stale,
                &mut self.table_desired,
                &mut self.statuses,
            ) {
                self.statuses_revision += 1;
            }
        }
    }

    /// The health picture before a pass: logged on change, written for `lvsd plan` when it
    /// changed, handed to status and metrics. Built only when a check's state or a service's
    /// standing moved since the last time: an edit of one weight in a large table with checks
    /// everywhere does not rebuild a line per real.
    fn publish_health(&mut self) {
        let now = (self.health.revision(), self.statuses_revision);
        if self.health_published == Some(now) {
            return;
        }
        self.health_published = Some(now);
        let list: Vec<ServiceStatus> = self.statuses.values().cloned().collect();
        log_standings(&list, &mut self.standings);
        let lines = health_status::lines(&self.health, &list);
        if !self.monitor.is_empty() && self.health_written.as_ref() != Some(&lines) {
            health_status::save(self.engine.state_dir(), &lines);
            self.health_written = Some(lines.clone());
        }
        self.telemetry
            .health(lines, health_status::up_labels(&self.health));
    }

    async fn pass(&mut self, req: PassRequest) {
        let t = std::time::Instant::now();
        self.refresh_effective(req.stale.clone());
        self.publish_health();
        tracing::debug!(target: "lvsd::timing", elapsed = ?t.elapsed(), "applied health to the config");
        let Some(loaded) = &self.loaded else { return };
        let cfg = &loaded.config;
        let allow_set = req.allow.clone();
        let allow = move |op: &Op| allow_set.permits(&op.service());
        let table = match &req.table {
            None => None,
            Some(Scope::All) => Some(None),
            Some(Scope::Services(s)) => Some(Some(s)),
        };
        let unable = plan::health::unable(self.statuses.values());
        let spec = PassSpec {
            table,
            host: req.host,
            force: self.settings.force,
            strict: false,
            allow: &allow,
            allow_host: req.allow_host,
            unable: &unable,
        };
        let started = std::time::Instant::now();
        let pass = self
            .engine
            .converge(
                cfg,
                self.table_desired.as_ref().unwrap_or(&cfg.desired),
                &spec,
            )
            .await;
        let services = cfg.desired.services.len();
        let mut summary = summarize(&pass, &allow);
        summary.serving = cfg.health_file.as_ref().map(|_| Serving {
            unable: unable.len(),
            services,
        });
        let verdict = self.machine.on(Event::PassDone(summary), self.clock.now());
        if verdict.say_hash {
            self.telemetry.config_loaded(
                crate::telemetry::config_hash(loaded.bytes()),
                cfg.host.role.name(),
                true,
            );
        }
        self.log_pass(cfg, &pass, &verdict);
        if let Some(device) = announce_device(cfg) {
            let n = self
                .engine
                .host_owned
                .addresses
                .iter()
                .filter(|a| a.interface == device)
                .count();
            self.telemetry.announced(n);
        }
        let record = PassRecord::of(&pass, verdict.drift, self.engine.owned.services.len());
        self.telemetry.pass(started.elapsed(), record);
        self.telemetry
            .standing(self.machine.table(), self.machine.host());
        if let (Some(value), Some(path)) = (verdict.health_file, &cfg.health_file) {
            let ok = write_health_file(&self.telemetry, path, value);
            self.machine
                .on(Event::HealthFileWritten { value, ok }, self.clock.now());
        }
        self.say_status(services);
    }

    /// What a pass says beyond its operations (which the engine logs as it carries them out).
    fn log_pass(&self, cfg: &config::Config, pass: &Pass, verdict: &decide::Verdict) {
        let retry = |s: &Standing| match s {
            Standing::Failing { wait, .. } => format!("retrying in {wait:?}"),
            _ => "waiting for a config change".into(),
        };
        match &pass.table {
            Outcome::Done(t) => {
                for op in &t.skipped {
                    tracing::warn!(service = %op.service(), "drift (not repaired, --on-drift report): {op}");
                }
                for op in &t.globals.skipped {
                    tracing::warn!("drift (not repaired, --on-drift report): {op}");
                }
                for w in &t.after.waiting {
                    tracing::info!(service = %w.service, real = %w.real, active = w.active, inactive = w.inactive, persistent = w.persistent, "draining: waiting for connections to close");
                }
            }
            Outcome::Refused(e) if verdict.table_changed => tracing::error!("{e}"),
            Outcome::Failed(e) => tracing::error!(
                "reconcile failed (table): {e:#}; {}",
                retry(self.machine.table())
            ),
            _ => {}
        }
        for op in &verdict.new_stuck {
            tracing::warn!(
                "the kernel keeps a difference after lvsd wrote it and read it back (said once; {}): {op}",
                retry(self.machine.table())
            );
        }
        match &pass.host {
            Outcome::Done(h) => {
                for op in &h.skipped {
                    tracing::warn!("host drift (not repaired, --on-drift report): {op}");
                }
                if let Some(device) = announce_device(cfg) {
                    for op in &h.applied {
                        match op {
                            HostOp::AddAddress(a) if a.interface == device => tracing::info!(
                                vip = %a.addr,
                                "announce: VIP {} is on {device} (a service on it can serve)",
                                a.addr
                            ),
                            HostOp::DelAddress(a) if a.interface == device => tracing::warn!(
                                vip = %a.addr,
                                "withdraw: VIP {} is off {device} (no service on it can serve here)",
                                a.addr
                            ),
                            _ => {}
                        }
                    }
                }
                if h.failed.is_some() || !h.after.missing.is_empty() {
                    tracing::error!(
                        "reconcile failed (host): {}",
                        self.machine.host().describe()
                    );
                }
            }
            Outcome::Refused(e) if verdict.host_changed => tracing::error!("{e}"),
            Outcome::Failed(e) if e.is::<Unfit>() => tracing::error!(
                "the host lacks what the role needs: {e}; checking again: {} (the table converges regardless)",
                retry(self.machine.host())
            ),
            Outcome::Failed(e) => tracing::error!(
                "reconcile failed (host): {e:#}; {}",
                retry(self.machine.host())
            ),
            _ => {}
        }
    }
}
