//! What each command does, a file a command; the helpers they share (reading a config lvsd
//! acts on, printing plans) are here.

pub mod apply;
pub mod check;
pub mod director;
pub mod export;
pub mod import;
pub mod overrides;
pub mod plan_command;
pub mod realign;
pub mod run;
pub mod status;
pub mod tools;

use std::collections::BTreeMap;
use std::io::Read as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use plan::Plan;
use plan::health::HealthTable;
use plan::host::{HostPlan, Role};

use crate::cli::*;
use crate::daemon::OnDrift;
use crate::engine::{Engine, FullPlan, PassSpec};
use crate::{daemon, engine, health_status, lock, output, perms, stdout, telemetry};

pub(crate) fn load(arg: &ConfigArg) -> Result<config::Config, config::Error> {
    let started = std::time::Instant::now();
    let c = config::load_as(&arg.config, arg.role.map(Role::from));
    tracing::debug!(target: "lvsd::timing", elapsed = ?started.elapsed(), "read and validated the config");
    c
}

/// Loads a config lvsd is about to act on: its permissions are checked first.
pub(crate) fn load_trusted(arg: &ConfigArg) -> Result<config::Config> {
    check_trusted(arg)?;
    let cfg = load(arg)?;
    // Every file of the generation: whoever can write one of them controls its services.
    if !arg.allow_insecure_config {
        // The real paths: the printable names are escaped, and name no file when a name
        // holds a tab or a no-break space.
        for f in cfg.sources.paths.iter().skip(1) {
            if let Some(why) = perms::insecure(f) {
                bail!("{why}");
            }
        }
    }
    Ok(cfg)
}

/// Refuses a config others can write (unless `--allow-insecure-config`).
pub(crate) fn check_trusted(arg: &ConfigArg) -> Result<()> {
    if !arg.allow_insecure_config {
        if let Some(why) = perms::insecure(&arg.config) {
            bail!("{why}");
        }
    }
    Ok(())
}

pub(crate) fn print_host_plan(plan: &HostPlan) {
    for m in &plan.missing {
        outln!("! {m}");
    }
    for op in &plan.ops {
        outln!("{op}");
    }
}

/// Prints one line per item through one buffer: a cold apply of a large table has a hundred
/// thousand lines, and a write per line cost more than the kernel's work.
pub(crate) fn print_lines<T: std::fmt::Display>(items: impl IntoIterator<Item = T>) {
    use std::io::Write as _;
    let mut out = std::io::BufWriter::new(stdout::Stdout);
    for i in items {
        if writeln!(out, "{i}").is_err() {
            return;
        }
    }
    let _ = out.flush();
}

/// An operation's line, with the file its service comes from when the main file includes
/// others.
pub(crate) struct Line<'a>(&'a plan::Op, &'a config::Sources);

impl std::fmt::Display for Line<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.1.file_of(&self.0.service()) {
            Some(file) => write!(f, "{}  [{file}]", self.0),
            None => write!(f, "{}", self.0),
        }
    }
}

pub(crate) fn print_plan(plan: &Plan, now: u64, sources: &config::Sources) {
    print_lines(plan.ops.iter().map(|o| Line(o, sources)));
    for w in &plan.waiting {
        outln!(
            "  waiting: {w}; deleted when they are gone or in {}s at the latest",
            w.deadline.saturating_sub(now)
        );
    }
    for k in &plan.foreign {
        outln!("  foreign: service {k} is not lvsd's; left alone (--exclusive would remove it)");
    }
}

/// A real waiting for its connections to close, for `plan --json`.
pub(crate) fn waiting_json(w: &plan::Waiting) -> serde_json::Value {
    serde_json::json!({
        "service": w.service.to_string(),
        "real": w.real.to_string(),
        "active": w.active,
        "inactive": w.inactive,
        "persistent": w.persistent,
        "deadline": w.deadline,
    })
}
