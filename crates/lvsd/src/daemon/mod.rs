//! `lvsd run`: one task owns the desired state and the kernel connections. What it does next is
//! decided by a pure state machine ([`decide`]); this module carries the steps out — reading
//! the config ([`reload`]), running passes through the engine — and feeds their outcomes and
//! the outside world's events (file writes seen by [`watch`], signals, health transitions)
//! back in. Level-triggered: the periodic resync diffs the whole desired state against the
//! whole live table; a config edit or a health change passes only the services it touched,
//! against the table the last pass left.

pub mod decide;
mod director;
mod effective;
mod health_view;
mod overrides;
mod ramp;
mod reload;
mod report;
mod source;
mod watch;
mod writer;

#[cfg(test)]
pub(crate) use self::watch::Followed;
pub(crate) use self::watch::WatchKind;

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};
use health::{Monitor, Report};
use plan::Op;
use plan::host::{HostOp, Role};
use tokio::signal::unix::{Signal, SignalKind, signal};
use tokio::sync::mpsc;

use self::decide::{
    Check, Event, HealthFileValue, Machine, PassRequest, Reloaded, Scope, Serving, Standing, Step,
    Verdict,
};
use self::health_view::HealthView;
use self::overrides::Operators;
pub use self::overrides::{Change, realigned_json};
use self::report::{announce_device, status_line, summarize};
use self::source::Source;
use self::writer::Writer;
use crate::engine::{Engine, Outcome, Pass, PassSpec, Unfit};
use crate::io::Io;
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
    /// The group whose members may change overrides (root always may).
    pub admin_gid: Option<u32>,
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

/// What reaches the loop from outside, on one channel (the daemon's simulation sends file
/// events and stops through it too).
pub(crate) enum Input {
    /// The config file was written (`true`: renamed into place).
    File(bool),
    /// SIGHUP.
    Hangup,
    /// SIGTERM or SIGINT.
    Stop,
    /// A probe's result.
    Health(Report),
    /// The writer thread's answer about a health-file value: on disk or not.
    HealthFileWritten(HealthFileValue, bool),
    /// An operator's override, from the control socket.
    Change(Change),
}

/// Runs `f` off the loop, on a blocking thread: reading and validating the config's files waits
/// for the disk and takes a while for a large one. In the daemon's simulation it runs in place
/// instead, so that a read is never concurrent with the schedule's file moves (which makes
/// the outcome depend on the seed alone).
async fn off_loop<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, tokio::task::JoinError> {
    #[cfg(test)]
    if crate::fault::simulated() {
        return Ok(f());
    }
    tokio::task::spawn_blocking(f).await
}

/// The daemon's clock: `decide` counts time from the start.
struct Clock(tokio::time::Instant);

impl Clock {
    /// Now, as `decide` counts it.
    fn now(&self) -> decide::At {
        self.0.elapsed()
    }

    /// A time `decide` named, for the runtime's timers.
    fn instant(&self, at: decide::At) -> tokio::time::Instant {
        self.0 + at
    }
}

/// The decisions and the clock they are taken on: every event is stamped as it is taken in.
struct Decisions {
    /// The state machine.
    machine: Machine,
    /// Its clock.
    clock: Clock,
}

impl Decisions {
    /// The next step, now.
    fn next(&mut self) -> Step {
        self.machine.next(self.clock.now())
    }

    /// Takes an event in, now.
    fn on(&mut self, event: Event) -> Verdict {
        self.machine.on(event, self.clock.now())
    }
}

/// Everything the loop owns: what it was told, what it acts on, what it reports to, and the
/// state the steps and the decisions keep.
struct Daemon<I: Io> {
    /// The command line.
    settings: Settings,
    /// The kernel and the host: every pass and every guard goes through it.
    engine: Engine<I>,
    /// Status and metrics.
    telemetry: std::sync::Arc<Telemetry>,
    /// The config's files, their watch, and the config in force.
    source: Source,
    /// The checks and what health makes of the config.
    health: HealthView,
    /// What to do next.
    decisions: Decisions,
    /// The health lines and the health file, written off the loop.
    writer: Writer,
    /// Operators' overrides (`lvsd drain`, `lvsd weight`), laid over the table aimed for.
    operators: Operators,
    /// Whether this director takes traffic (`lvsd drain --director`).
    director: director::Director,
    /// A deliberate bug (the daemon's simulation).
    #[cfg(test)]
    mutation: Mutation,
    /// Reals ramping up after they joined (`slow_start`), laid over that.
    ramps: plan::ramp::Ramps,
    /// `lvsd realign` requests waiting for the loop.
    realigns: Vec<Change>,
}

/// Runs until SIGTERM or SIGINT; the table and the host are left as they are on exit.
///
/// The config's directory is watched before the config is first read, and the read is stamped
/// from the file it read: a file renamed into place at any moment of the start is either the
/// one read or an event (or, in an included directory watched only once the read named it,
/// seen by the look at the stamp `decide` asks for first).
pub async fn run<I: Io>(settings: Settings, signals: Signals, engine: Engine<I>) -> Result<()> {
    let (tx, inputs) = mpsc::unbounded_channel();
    run_with(
        settings,
        engine,
        Outside {
            watch: WatchKind::Inotify,
            signals: Some(signals),
            #[cfg(test)]
            mutation: Mutation::None,
        },
        tx,
        inputs,
    )
    .await
}

/// How the loop meets the world outside the engine: the watch on the config's files and the
/// signals (`None` in the daemon's simulation, whose schedule sends stops itself).
pub(crate) struct Outside {
    /// What watches the config's files.
    pub(crate) watch: WatchKind,
    /// The signals, forwarded to the loop's input channel.
    pub(crate) signals: Option<Signals>,
    /// A deliberate bug, for proving that the daemon's simulation catches one.
    #[cfg(test)]
    pub(crate) mutation: Mutation,
}

/// Deliberate bugs the daemon's simulation must catch (`crate::sim::daemon`).
#[cfg(test)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mutation {
    /// The loop as it is.
    None,
    /// Every look at the config's files finds them unchanged: a lost event is never caught by
    /// the resync's stamp comparison, nor a file renamed in while the start read it.
    IgnoreMoved,
}

/// [`run`], with the loop's input channel made by the caller (the daemon's simulation keeps a
/// sender, through which it delivers file events and stops).
pub(crate) async fn run_with<I: Io>(
    settings: Settings,
    engine: Engine<I>,
    outside: Outside,
    tx: mpsc::UnboundedSender<Input>,
    mut inputs: mpsc::UnboundedReceiver<Input>,
) -> Result<()> {
    let clock = Clock(tokio::time::Instant::now());
    let files = tx.clone();
    // Raised after a file event is sent (so the loop finds the event once the read gives
    // way): a whole read of the table under way stops for it (`Engine::yield_to`). Lowered
    // before the loop takes its inputs in, so an event sent in between leaves it up (at worst
    // the next whole read gives way once for an event already taken in).
    let waiting = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let raise = waiting.clone();
    let source = Source::open(&settings, outside.watch, move |whole| {
        send_urgent(&files, &raise, Input::File(whole));
    })
    .await?;
    let Some(loaded) = source.loaded() else {
        anyhow::bail!("no config in force");
    };
    if let Some(signals) = outside.signals {
        forward_signals(signals, tx.clone(), waiting.clone());
    }
    let role = loaded.config.host.role;
    let services = loaded.config.desired.services.len();
    let telemetry = Telemetry::new(&settings.config, role.name());
    let lateness = telemetry.clone();
    let (monitor, mut reports) = Monitor::on_own_thread(
        health::probe_bound(),
        std::sync::Arc::new(move |late| lateness.check_started(late)),
    )
    .context("start the thread that runs the health checks")?;
    let written = tx.clone();
    let writer = Writer::start(move |value, ok| {
        let _ = written.send(Input::HealthFileWritten(value, ok));
    })
    .context("start the thread that writes the health files")?;
    let changes = tx.clone();
    let asked = waiting.clone();
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
    let operators = Operators::load(engine.state_dir().to_path_buf())?;
    let director = director::Director::load(engine.state_dir().to_path_buf())?;
    let mut engine = engine;
    engine.rotation = director.rotation();
    engine.yield_to = Some(waiting.clone());
    crate::telemetry::serve_status(
        engine.state_dir(),
        telemetry.clone(),
        crate::telemetry::Control {
            admin_gid: settings.admin_gid,
            // An operator's override is not held up for a resync either.
            changes: Box::new(move |c| send_urgent(&changes, &asked, Input::Change(c))),
        },
    )?;
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
        settings,
        engine,
        telemetry,
        source,
        health: HealthView::new(monitor),
        decisions: Decisions { machine, clock },
        writer,
        operators,
        director,
        #[cfg(test)]
        mutation: outside.mutation,
        ramps: plan::ramp::Ramps::default(),
        realigns: vec![],
    };
    d.publish_overrides(false);
    d.publish_director();
    if let Some(loaded) = d.source.loaded() {
        d.health
            .sync(&mut d.engine, &loaded.config, false, None)
            .await;
    }
    tracing::info!(config = %d.settings.config.display(), role = role.name(), services, checks = d.health.checks(), resync = ?d.settings.resync, "lvsd running");
    // Up and watching: READY now, whatever the first pass will say (a module that loads late,
    // a missing interface or a refused plan must not make systemd kill and restart the unit).
    crate::telemetry::notify_ready("started; first pass under way");
    let watchdog = crate::telemetry::watchdog_interval();
    let mut next_ping = watchdog.map(|w| d.decisions.clock.now() + w);
    crate::fault::point(crate::fault::START_BEFORE_LOOP);
    // What ends the loop other than a stop: lvsd cannot go on (and exits non-zero).
    let mut fatal = None;
    'run: loop {
        // Everything that arrived while the last step ran is taken in before the next step.
        waiting.store(false, std::sync::atomic::Ordering::SeqCst);
        while let Ok(input) = inputs.try_recv() {
            if !d.input(input) {
                break 'run;
            }
        }
        d.realign_asked().await;
        d.end_overrides();
        d.step_ramps();
        d.step_director().await;
        let now = d.decisions.clock.now();
        if let (Some(w), Some(at)) = (watchdog, next_ping) {
            if at <= now {
                crate::telemetry::notify_watchdog();
                next_ping = Some(now + w);
            }
        }
        match d.decisions.next() {
            Step::Reload { .. } => {
                if let Err(e) = d.reload().await {
                    fatal = Some(e);
                    break 'run;
                }
            }
            Step::CheckFile(why) => d.check_file(why).await,
            Step::Pass(req) => {
                if let Err(e) = d.pass(req).await {
                    fatal = Some(e.into());
                    break 'run;
                }
            }
            Step::Wait(until) => {
                let until = next_ping.map_or(until, |p| p.min(until));
                let until = d.overrides_wake().map_or(until, |w| w.min(until));
                let until = d.ramps_wake().map_or(until, |w| w.min(until));
                let until = d.director_wake().map_or(until, |w| w.min(until));
                tokio::select! {
                    () = tokio::time::sleep_until(d.decisions.clock.instant(until)) => {}
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

/// Forwards the signals to the loop's input channel, and raises `waiting` after each (a SIGHUP
/// or a stop is not held up for a whole read of the table).
fn forward_signals(
    mut s: Signals,
    tx: mpsc::UnboundedSender<Input>,
    waiting: std::sync::Arc<std::sync::atomic::AtomicBool>,
) {
    tokio::spawn(async move {
        loop {
            let input = tokio::select! {
                _ = s.hup.recv() => Input::Hangup,
                _ = s.term.recv() => Input::Stop,
                _ = s.int.recv() => Input::Stop,
            };
            if !send_urgent(&tx, &waiting, input) {
                return;
            }
        }
    });
}

/// Sends an input that a whole read of the table under way gives way to, then raises
/// `waiting` (`Engine::yield_to`): raised after the send, so the loop finds the input once the
/// read stops. False when the loop is gone.
fn send_urgent(
    tx: &mpsc::UnboundedSender<Input>,
    waiting: &std::sync::atomic::AtomicBool,
    input: Input,
) -> bool {
    let sent = tx.send(input).is_ok();
    waiting.store(true, std::sync::atomic::Ordering::SeqCst);
    sent
}

impl<I: Io> Daemon<I> {
    /// Takes one input in; false on a stop.
    fn input(&mut self, input: Input) -> bool {
        match input {
            Input::File(whole) => {
                self.decisions.on(Event::FileWritten { whole });
            }
            Input::Hangup => {
                tracing::info!("SIGHUP: reloading the config");
                self.decisions.on(Event::Hangup);
            }
            Input::Stop => return false,
            Input::Change(c) if matches!(c.request, crate::overrides::Request::Director { .. }) => {
                let answer = self.director_change(&c.request, &c.peer);
                let _ = c.reply.send(answer);
            }
            Input::Change(c) if matches!(c.request, crate::overrides::Request::Realign { .. }) => {
                // Carried out by the loop between steps (it writes to the kernel).
                self.realigns.push(c);
            }
            Input::Change(c) => self.override_change(c),
            Input::Health(r) => {
                if let Some(service) = self.health.take(&r) {
                    self.decisions.on(Event::HealthChanged(service));
                }
            }
            Input::HealthFileWritten(value, ok) => {
                if ok {
                    self.telemetry.health_file(value.value);
                }
                self.decisions.on(Event::HealthFileWritten { value, ok });
            }
        }
        true
    }

    /// Looks at the files behind the config's paths for `decide`, which asked for it `why`.
    async fn check_file(&mut self, why: Check) {
        if why == Check::Rejected {
            // As before any reload: the directories the config resolves through now.
            self.source.refresh_watch();
        }
        let changed = self.source.moved(&self.settings.config).await;
        #[cfg(test)]
        let changed = changed && self.mutation != Mutation::IgnoreMoved;
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
        let v = self.decisions.on(Event::FileChecked { changed });
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
        self.source.refresh_watch();
        let outcome = self.source.reload(&self.settings, &mut self.engine).await?;
        match &outcome {
            Reloaded::Rejected(why) => self.telemetry.config_rejected(why),
            Reloaded::Deferred(why) => self.telemetry.config_deferred(why),
            Reloaded::Changed(touched) => {
                let t = std::time::Instant::now();
                if let Some(loaded) = self.source.loaded() {
                    self.health
                        .sync(&mut self.engine, &loaded.config, true, Some(touched))
                        .await;
                }
                tracing::debug!(target: "lvsd::timing", elapsed = ?t.elapsed(), "brought the checks in line");
            }
            Reloaded::Unchanged | Reloaded::Gone => {}
        }
        if self.decisions.on(Event::Reloaded(outcome)).config_back {
            // The file is the config in force again (a rejected edit undone): say so.
            self.telemetry.config_back();
        }
        self.say_status();
        Ok(())
    }

    /// `STATUS=` for systemd: how table and host stand, and why the file on disk is not the
    /// config in force, if it is not.
    fn say_status(&self) {
        let line = status_line(&self.decisions.machine, self.source.services());
        crate::telemetry::notify_status(&line);
    }

    /// Runs the pass `decide` asked for: health applied again where it went stale, the
    /// engine's pass, then what the verdict says to say and write. An error: the writer thread
    /// was lost (fatal).
    async fn pass(&mut self, req: PassRequest) -> Result<(), writer::Lost> {
        let t = std::time::Instant::now();
        let Some(loaded) = self.source.loaded() else {
            return Ok(());
        };
        let cfg = &loaded.config;
        self.health.refresh(&cfg.desired, req.stale);
        if let Some(lines) = self.health.publish(&self.telemetry) {
            self.writer
                .health_lines(self.engine.state_dir(), lines.to_vec())?;
        }
        tracing::debug!(target: "lvsd::timing", elapsed = ?t.elapsed(), "applied health to the config");
        let allow_set = req.allow.clone();
        let allow = move |op: &Op| allow_set.permits(&op.service());
        let table = match &req.table {
            None => None,
            Some(Scope::All) => Some(None),
            Some(Scope::Services(s)) => Some(Some(s)),
        };
        let unable = self.health.unable();
        let spec = PassSpec {
            table,
            host: req.host,
            force: self.settings.force,
            strict: false,
            allow: &allow,
            allow_host: req.allow_host,
            unable: &unable,
            may_yield: req.may_yield,
        };
        let started = std::time::Instant::now();
        let target = self.operators.target(
            &cfg.desired,
            self.health.target(&cfg.desired),
            crate::engine::now(),
        );
        let target = ramp::lay(
            &mut self.ramps,
            &mut self.engine,
            cfg,
            target,
            req.table.as_ref(),
            self.decisions.clock.now(),
        )
        .await;
        let pass = self.engine.converge(cfg, &target, &spec).await;
        drop(target);
        if let Some(r) = self.engine.take_last_read() {
            self.telemetry.table_read(r);
        }
        let services = cfg.desired.services.len();
        let mut summary = summarize(&pass, &allow);
        summary.serving = cfg.health_file.as_ref().map(|file| Serving {
            file: file.clone(),
            unable: self.serving_value(unable.len(), services),
            services,
        });
        let verdict = self.decisions.on(Event::PassDone(summary));
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
        let machine = &self.decisions.machine;
        self.telemetry.standing(machine.table(), machine.host());
        if let Some(value) = verdict.health_file {
            self.writer.health_file(value)?;
        }
        self.say_status();
        // The file's values next to the overrides may have changed with a reload.
        self.publish_overrides(false);
        self.publish_ramps(&cfg.desired);
        Ok(())
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
            Outcome::Yielded => tracing::debug!(
                "the resync's read of the table gave way to a config change; it comes after the change's pass"
            ),
            Outcome::Failed(e) => tracing::error!(
                "reconcile failed (table): {e:#}; {}",
                retry(self.decisions.machine.table())
            ),
            _ => {}
        }
        for op in &verdict.new_stuck {
            tracing::warn!(
                "the kernel keeps a difference after lvsd wrote it and read it back (said once; {}): {op}",
                retry(self.decisions.machine.table())
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
                        self.decisions.machine.host().describe()
                    );
                }
            }
            Outcome::Refused(e) if verdict.host_changed => tracing::error!("{e}"),
            Outcome::Failed(e) if e.is::<Unfit>() => tracing::error!(
                "the host lacks what the role needs: {e}; checking again: {} (the table converges regardless)",
                retry(self.decisions.machine.host())
            ),
            Outcome::Failed(e) => tracing::error!(
                "reconcile failed (host): {e:#}; {}",
                retry(self.decisions.machine.host())
            ),
            _ => {}
        }
    }
}
