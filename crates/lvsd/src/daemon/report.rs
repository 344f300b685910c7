//! What the loop says about a pass: the summary `decide` judges it by (but for the health file's
//! part, which the loop adds), the `STATUS=` line, and
//! the health standings logged when they change. Pure but for the log.

use std::collections::BTreeMap;

use plan::Op;
use plan::health::{ServiceStatus, Standing as HealthStanding};
use plan::host::Role;

use super::decide::{HostSummary, Machine, Part, PassSummary, Standing, TableSummary};
use crate::engine::{Outcome, Pass, Unfit};

/// The device an active-active director announces its VIPs from.
pub(super) fn announce_device(cfg: &config::Config) -> Option<&str> {
    match &cfg.host.ha {
        plan::host::HaMode::ActiveActive { device, .. } if cfg.host.role == Role::Director => {
            Some(device.as_str())
        }
        _ => None,
    }
}

/// A pass in the terms the machine decides on.
pub(super) fn summarize(pass: &Pass, allow: &dyn Fn(&Op) -> bool) -> PassSummary {
    let table = match &pass.table {
        Outcome::NotRun => Part::NotRun,
        Outcome::Done(t) => Part::Done(TableSummary {
            applied: t.applied.len() + t.globals.applied.len(),
            failed: t.failed.len()
                + t.globals.failed.len()
                + usize::from(t.globals.error.is_some()),
            skipped: t.skipped.len() + t.globals.skipped.len(),
            stuck: t
                .stuck
                .iter()
                .map(ToString::to_string)
                .chain(t.globals.stuck.iter().map(ToString::to_string))
                .collect(),
            busy: t
                .after
                .ops
                .iter()
                .map(Op::service)
                .chain(t.after.waiting.iter().map(|w| w.service))
                .collect(),
            waiting: !t.after.waiting.is_empty(),
            more: t.after.ops.iter().any(allow) || !t.globals.after.is_empty(),
        }),
        Outcome::Refused(e) => Part::Refused(e.to_string()),
        Outcome::Failed(e) => Part::Failed(format!("{e:#}")),
        Outcome::Yielded => Part::Yielded,
    };
    let host = match &pass.host {
        Outcome::NotRun => Part::NotRun,
        Outcome::Done(h) => Part::Done(HostSummary {
            applied: h.applied.len(),
            failed: match (&h.failed, h.after.missing.is_empty()) {
                (Some((op, e)), _) => Some(format!("{op}: {e}")),
                (None, false) => Some(Unfit(h.after.missing.clone()).to_string()),
                (None, true) => None,
            },
            skipped: h.skipped.len(),
            pending: !h.after.ops.is_empty(),
        }),
        Outcome::Refused(e) => Part::Refused(e.to_string()),
        Outcome::Failed(e) => Part::Failed(format!("{e:#}")),
        Outcome::Yielded => Part::Yielded,
    };
    PassSummary {
        table,
        host,
        serving: None,
    }
}

/// The `STATUS=` line: in sync, or what is not and why; and why the file on disk is not the
/// config in force, if it is not.
pub(super) fn status_line(m: &Machine, services: usize) -> String {
    let line = standing_line(m, services);
    match m.problem() {
        Some(p) => format!("{line}; {p}"),
        None => line,
    }
}

/// How table and host stand, in a line.
fn standing_line(m: &Machine, services: usize) -> String {
    if m.converged() {
        return format!("in sync: {services} services");
    }
    let part = |name: &str, s: &Standing| match s {
        Standing::Converged => None,
        s => Some(format!("{name} {}", s.describe())),
    };
    let parts: Vec<String> = [part("table", m.table()), part("host", m.host())]
        .into_iter()
        .flatten()
        .collect();
    format!("not in sync: {}", parts.join("; "))
}

/// Logs each service's health standing when it changes: loudly when no real is healthy.
pub(super) fn log_standings(
    statuses: &[ServiceStatus],
    last: &mut BTreeMap<ipvs::ServiceKey, (HealthStanding, bool)>,
) {
    let mut seen = BTreeMap::new();
    for s in statuses {
        let now = (s.standing, s.fallback_active);
        let before = last
            .get(&s.service)
            .copied()
            .unwrap_or((HealthStanding::Ok, false));
        if now != before {
            match s.standing {
                // New reals start drained until their first checks pass: that is not an outage
                // to shout about yet.
                HealthStanding::Down if s.waiting > 0 && s.waiting >= s.serving => {
                    tracing::info!(service = %s.service, "health: {s}; waiting for the first check results")
                }
                HealthStanding::Down => tracing::error!(service = %s.service, "health: {s}"),
                HealthStanding::Degraded => tracing::warn!(service = %s.service, "health: {s}"),
                HealthStanding::Ok => tracing::info!(service = %s.service, "health: {s}"),
            }
        }
        seen.insert(s.service, now);
    }
    *last = seen;
}
