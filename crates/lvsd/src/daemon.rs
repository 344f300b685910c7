//! `lvsd run`: one task owns the desired state and the kernel connection and reacts to config
//! changes (file watch, SIGHUP), the resync tick and drain deadlines. Level-triggered: every pass
//! diffs the whole desired state against the whole live table.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};
use notify::{RecursiveMode, Watcher};
use plan::{Desired, Op};
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::mpsc;

use crate::reconcile::{Engine, Refused};

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
    /// Full resync period.
    pub resync: Duration,
    /// Drift policy.
    pub on_drift: OnDrift,
    /// Apply plans the removal guard refuses.
    pub force: bool,
}

/// Quiet time after a file event before the config is read (editors and config management
/// write in bursts).
const DEBOUNCE: Duration = Duration::from_millis(200);
/// How often a pass runs while drains wait for connections to close.
const DRAIN_POLL: Duration = Duration::from_millis(500);

/// Watches the directory holding the config and the one its symlinks lead to, which is what
/// sees in-place writes, atomic renames and ConfigMap `..data` swaps alike. Only events naming
/// the config file (or `..data`) count, so unrelated files in `/etc/lvsd` cause no reloads.
struct ConfigWatch {
    watcher: notify::RecommendedWatcher,
    dirs: BTreeSet<PathBuf>,
    config: PathBuf,
}

fn parent(p: &Path) -> PathBuf {
    p.parent()
        .filter(|d| !d.as_os_str().is_empty())
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf)
}

impl ConfigWatch {
    fn new(config: &Path, tx: mpsc::UnboundedSender<()>) -> Result<Self> {
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
            tracing::debug!(kind = ?ev.kind, paths = ?ev.paths, relevant, "file event");
            if relevant {
                let _ = tx.send(());
            }
        })
        .context("start the file watcher")?;
        let mut w = ConfigWatch {
            watcher,
            dirs: BTreeSet::new(),
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
            if !self.dirs.contains(&d) {
                self.watcher
                    .watch(&d, RecursiveMode::NonRecursive)
                    .with_context(|| format!("watch {}", d.display()))?;
                self.dirs.insert(d);
            }
        }
        Ok(())
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

/// Runs until SIGTERM or SIGINT; the table is left as it is on exit.
pub async fn run(settings: Settings, mut engine: Engine, mut desired: Desired) -> Result<()> {
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
    tracing::info!(config = %settings.config.display(), services = desired.services.len(), resync = ?settings.resync, "lvsd running");
    loop {
        let report = settings.on_drift == OnDrift::Report;
        let allow = |op: &Op| !report || pending.as_ref().is_none_or(|a| a.contains(&op.service()));
        let waiting = match engine.converge(&desired, settings.force, &allow).await {
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
                if !pass.skipped.is_empty() {
                    drift_total += pass.skipped.len() as u64;
                    for op in &pass.skipped {
                        tracing::warn!(service = %op.service(), drift_total, "drift (not repaired, --on-drift report): {op}");
                    }
                }
                for w in &pass.after.waiting {
                    tracing::info!(service = %w.service, real = %w.real, active = w.active, "draining: waiting for connections to close");
                }
                !pass.after.waiting.is_empty() || !pass.failed.is_empty() || more
            }
            Err(e) if e.is::<Refused>() => {
                tracing::error!("{e}");
                false
            }
            Err(e) => {
                tracing::error!("reconcile failed: {e:#}");
                true
            }
        };
        let retry = async {
            if waiting {
                tokio::time::sleep(DRAIN_POLL).await;
            } else {
                std::future::pending::<()>().await;
            }
        };
        tokio::select! {
            _ = tick.tick() => {
                tracing::debug!("resync");
            }
            _ = retry => {}
            Some(()) = rx.recv() => {
                // Let the burst settle, then take everything it queued.
                tokio::time::sleep(DEBOUNCE).await;
                while rx.try_recv().is_ok() {}
                if let Err(e) = watch.refresh() {
                    tracing::warn!("{e:#}");
                }
                if let Some(new) = reload(&settings.config, &desired, &mut engine, settings.force).await {
                    pending.get_or_insert_with(BTreeSet::new).extend(changed(&desired, &new));
                    desired = new;
                }
            }
            _ = hup.recv() => {
                tracing::info!("SIGHUP: reloading the config");
                if let Err(e) = watch.refresh() {
                    tracing::warn!("{e:#}");
                }
                if let Some(new) = reload(&settings.config, &desired, &mut engine, settings.force).await {
                    pending.get_or_insert_with(BTreeSet::new).extend(changed(&desired, &new));
                    desired = new;
                }
            }
            _ = term.recv() => break,
            _ = int.recv() => break,
        }
    }
    tracing::info!("stopping; the IPVS table stays as it is");
    Ok(())
}

/// Reads the config again. An invalid or missing file, or one the removal guard refuses, is
/// logged and ignored: the daemon keeps enforcing the last good config.
async fn reload(
    path: &Path,
    current: &Desired,
    engine: &mut Engine,
    force: bool,
) -> Option<Desired> {
    match config::load(path) {
        Ok(c) if c.desired == *current => None,
        Ok(c) => {
            if !force {
                match engine.observe().await {
                    Ok(observed) => {
                        let plan = engine.plan(&c.desired, &observed);
                        if plan.guard.tripped() {
                            tracing::error!(config = %path.display(), "{}; keeping the last good config", Refused(plan));
                            return None;
                        }
                    }
                    Err(e) => {
                        tracing::warn!("cannot read the table to check the new config: {e:#}")
                    }
                }
            }
            tracing::info!(services = c.desired.services.len(), "config changed");
            Some(c.desired)
        }
        Err(config::Error::Read { source, .. })
            if source.kind() == std::io::ErrorKind::NotFound =>
        {
            tracing::warn!(config = %path.display(), "config file is gone; keeping the last good config (a missing file never means remove everything)");
            None
        }
        Err(e) => {
            for line in e.to_string().lines() {
                tracing::error!("{line}");
            }
            tracing::error!("config rejected; keeping the last good config");
            None
        }
    }
}
