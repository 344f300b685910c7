//! Reading the config again: off the loop (a large file takes a while to validate), then
//! checked against the removal guards before it replaces the last good config. An invalid or
//! missing file, one the guard refuses, and one the guard cannot be checked against yet (the
//! table or host cannot be read) all leave the last good config in force.

use std::collections::BTreeSet;

use config::{Config, Loaded, Reread, Stamp};
use plan::Desired;
use plan::host::Role;

use super::Settings;
use super::decide::{Reloaded, Scope};
use crate::engine::Engine;
use crate::io::Io;

/// Reads the config at `settings.config` into `loaded`. `Changed` carries the services whose
/// entries changed (an edit of a few is read in place: only its entries are parsed again).
/// Also returns the stamp of what was read, whatever the outcome. An error is fatal: the
/// thread reading the config was lost, and the last good config with it.
pub async fn reload<I: Io>(
    settings: &Settings,
    loaded: &mut Option<Loaded>,
    engine: &mut Engine<I>,
) -> anyhow::Result<(Reloaded, Stamp)> {
    let path = settings.config.clone();
    if !settings.allow_insecure_config {
        if let Some(why) = crate::perms::insecure(&path) {
            tracing::error!("{why}; keeping the last good config");
            return Ok((Reloaded::Rejected(why), Stamp::main_only(&path)));
        }
    }
    let Some(mut current) = loaded.take() else {
        anyhow::bail!("the config reader was lost earlier: no config in force");
    };
    let role = settings.role;
    let started = std::time::Instant::now();
    let (current, reread, seen) = match super::off_loop(move || {
        let mut seen = Stamp::default();
        crate::fault::panic_point(crate::fault::RELOAD_PANIC);
        let r = current.reread_file(&path, role, &mut seen);
        (current, r, seen)
    })
    .await
    {
        Ok(r) => r,
        Err(e) => {
            // The reading thread died (it should not: the reader does not panic). The last
            // good config went with it, which the daemon cannot go on without: a daemon that
            // went on would ping the watchdog while every pass and reload did nothing.
            anyhow::bail!(
                "the config reader was lost ({e}), and the config in force with it; exiting so that the supervisor restarts lvsd, which adopts the table as it is"
            );
        }
    };
    let outcome = take(settings, loaded, engine, current, reread, started).await;
    Ok((outcome, seen))
}

/// Takes what a reread found, if the guards allow it.
async fn take<I: Io>(
    settings: &Settings,
    loaded: &mut Option<Loaded>,
    engine: &mut Engine<I>,
    current: Loaded,
    reread: Result<Reread, config::Error>,
    started: std::time::Instant,
) -> Reloaded {
    let current = loaded.insert(current);
    let parsed = match &reread {
        Ok(Reread::Edited { parsed, .. }) => Some(*parsed),
        _ => None,
    };
    tracing::debug!(target: "lvsd::timing", elapsed = ?started.elapsed(), in_place = parsed.is_some(), entries_parsed = ?parsed, "read and validated the config");
    let path = &settings.config;
    let touched = match reread {
        Ok(Reread::Same) => return Reloaded::Unchanged,
        Ok(Reread::Edited { touched, undo, .. }) => {
            if touched.is_empty() {
                return Reloaded::Unchanged;
            }
            match guard(settings, None, &current.config, &touched, engine).await {
                Ok(()) => touched,
                Err(r) => {
                    current.undo(undo);
                    return r;
                }
            }
        }
        Ok(Reread::Whole(new)) => {
            if !settings.allow_insecure_config {
                if let Some(why) = new.included_files().find_map(crate::perms::insecure) {
                    tracing::error!("{why}; keeping the last good config");
                    return Reloaded::Rejected(why);
                }
            }
            let touched = changed(&current.config.desired, &new.config.desired);
            let same_settings = new.config.host == current.config.host
                && new.config.globals == current.config.globals
                && new.config.health_file == current.config.health_file;
            if touched.is_empty() && same_settings {
                current.replace(*new);
                return Reloaded::Unchanged;
            }
            let role = current.config.host.role;
            if let Err(r) = guard(settings, Some(role), &new.config, &touched, engine).await {
                return r;
            }
            current.replace(*new);
            touched
        }
        Err(config::Error::Read { source, .. })
            if source.kind() == std::io::ErrorKind::NotFound =>
        {
            tracing::warn!(config = %path.display(), "config file is gone; keeping the last good config (a missing file never means remove everything)");
            return Reloaded::Unchanged;
        }
        Err(e) => {
            for line in e.to_string().lines() {
                tracing::error!("{line}");
            }
            tracing::error!("config rejected; keeping the last good config");
            return Reloaded::Rejected(e.to_string());
        }
    };
    tracing::info!(
        role = current.config.host.role.name(),
        services = current.config.desired.services.len(),
        changed = touched.len(),
        "config changed"
    );
    Reloaded::Changed(Scope::Services(touched))
}

/// The removal guards for a new config (unless `--force`): a role taken away (`current`: the
/// role before), or a plan removing most of what lvsd manages. For a small edit the plan covers
/// the touched services against the table the last pass left. When the table or host cannot
/// be read, the config cannot be checked: it is deferred, not taken unchecked.
async fn guard<I: Io>(
    settings: &Settings,
    current: Option<Role>,
    new: &Config,
    touched: &BTreeSet<ipvs::ServiceKey>,
    engine: &mut Engine<I>,
) -> Result<(), Reloaded> {
    if settings.force {
        return Ok(());
    }
    let path = &settings.config;
    if let Some(role) = current.filter(|r| *r != Role::None) {
        if new.host.role == Role::None {
            let why = "the new config takes this host's role away (its host section is gone: a truncated file?); keeping the last good config. To remove the role, stop lvsd and run `lvsd apply --role none`, or run with --force";
            tracing::error!(config = %path.display(), role = role.name(), "{why}");
            return Err(Reloaded::Rejected(why.to_owned()));
        }
    }
    let plan = match engine.plan_scoped(new, &new.desired, touched).await {
        Ok(Some(plan)) => Ok(plan),
        Ok(None) => {
            engine
                .plan_all(new, &new.desired, &Default::default())
                .await
        }
        Err(e) => Err(e),
    };
    match plan {
        Ok(plan) => match engine.refusal(new, &plan) {
            Some(why) => {
                tracing::error!(config = %path.display(), "{why}; keeping the last good config");
                Err(Reloaded::Rejected(why.to_string()))
            }
            None => Ok(()),
        },
        Err(e) => {
            let why = format!(
                "cannot check the new config against the table and host ({e:#}); keeping the last good config until they can be read"
            );
            tracing::warn!(config = %path.display(), "{why}");
            Err(Reloaded::Deferred(why))
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
