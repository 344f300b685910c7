//! The health picture the loop keeps: the checks' states and the probes running them, the config
//! with health applied (what the planner aims for), each service's standing, and what was last
//! said and written of them (each said again only when it changes).

use std::collections::BTreeMap;

use config::Config;
use health::{Monitor, Report};
use plan::Desired;
use plan::health::{HealthTable, ServiceStatus, Standing as HealthStanding};

use super::decide::Scope;
use super::effective::refresh_effective;
use super::report::log_standings;
use crate::engine::Engine;
use crate::health_status;
use crate::io::Io;
use crate::telemetry::Telemetry;

/// The checks, the probes, and what health makes of the config.
pub(super) struct HealthView {
    /// Each check's state.
    table: HealthTable,
    /// The probes.
    monitor: Monitor,
    /// The config with health applied (`None` while no service has health settings: the
    /// config itself is the target).
    desired: Option<Desired>,
    /// Each service's standing.
    statuses: BTreeMap<ipvs::ServiceKey, ServiceStatus>,
    /// Moves on whenever a service's standing changes.
    statuses_revision: u64,
    /// The health table's and the standings' revisions the health picture was last published
    /// for: nothing is rebuilt while neither moved.
    published: Option<(u64, u64)>,
    /// What was last said about each service's health (logged once per change).
    standings: BTreeMap<ipvs::ServiceKey, (HealthStanding, bool)>,
    /// The health lines last published for the state directory (written only when they change).
    lines: Option<Vec<String>>,
}

impl HealthView {
    /// No check known yet; `monitor` runs the probes.
    pub(super) fn new(monitor: Monitor) -> Self {
        HealthView {
            table: HealthTable::default(),
            monitor,
            desired: None,
            statuses: BTreeMap::new(),
            statuses_revision: 0,
            published: None,
            standings: BTreeMap::new(),
            lines: None,
        }
    }

    /// How many checks run.
    pub(super) fn checks(&self) -> usize {
        self.monitor.len()
    }

    /// Takes a probe's result in; returns the service whose real went up or down, if one did.
    pub(super) fn take(&mut self, r: &Report) -> Option<ipvs::ServiceKey> {
        if !self.monitor.is_current(r) {
            // From a check that was changed or removed since: not this check's result.
            tracing::debug!(service = %r.id.0, real = %r.id.1, "health: result of a replaced check ignored");
            return None;
        }
        let up = self.table.set(&r.id, r.up, &r.outcome.reason)?;
        let (service, real) = r.id;
        if up {
            tracing::info!(%service, %real, reason = %r.outcome.reason, "health: real {real} of {service} is up, back in rotation");
        } else {
            tracing::warn!(%service, %real, reason = %r.outcome.reason, "health: real {real} of {service} is DOWN ({}), out of rotation", r.outcome.reason);
        }
        Some(service)
    }

    /// Brings the health table and the probes in line with the config: unchanged checks keep
    /// their state and rhythm, new ones adopt the kernel's weights (`kept`: from the table the
    /// last pass left, when there is one). `touched`: only these services' checks (an edit).
    pub(super) async fn sync<I: Io>(
        &mut self,
        engine: &mut Engine<I>,
        config: &Config,
        kept: bool,
        touched: Option<&Scope>,
    ) {
        let services = match touched {
            Some(Scope::Services(s)) => Some(s),
            _ => None,
        };
        let adopted = if kept {
            engine
                .adopt_health_kept(config, &mut self.table, services)
                .await
        } else {
            engine.adopt_health(config, &mut self.table).await
        };
        if let Err(e) = adopted {
            // The states start from the config's `initial` instead.
            tracing::warn!("cannot read the table to adopt health states: {e:#}");
            self.table.sync(&config.desired, None);
        }
        match services {
            Some(s) => self.monitor.sync_some(s, self.table.checks_of(s)),
            None => self.monitor.sync(self.table.checks_with_state()),
        }
    }

    /// Brings the table the planner aims for and the services' standings up to date for the
    /// services in `stale` (what `decide` says went stale).
    pub(super) fn refresh(&mut self, desired: &Desired, stale: Scope) {
        if refresh_effective(
            &self.table,
            desired,
            stale,
            &mut self.desired,
            &mut self.statuses,
        ) {
            self.statuses_revision += 1;
        }
    }

    /// The table the planner aims for: the config with health applied, or `config` itself
    /// while no service has health settings.
    pub(super) fn target<'a>(&'a self, config: &'a Desired) -> &'a Desired {
        self.desired.as_ref().unwrap_or(config)
    }

    /// The services health says cannot be served (their drains must not wait on them).
    pub(super) fn unable(&self) -> std::collections::BTreeSet<ipvs::ServiceKey> {
        plan::health::unable(self.statuses.values())
    }

    /// The health picture before a pass: logged on change, handed to status and metrics.
    /// Built only when a check's state or a service's standing moved since the last time: an
    /// edit of one weight in a large table with checks everywhere does not rebuild a line per
    /// real. Returns the lines to save for `lvsd plan` when they changed (and checks run).
    pub(super) fn publish(&mut self, telemetry: &Telemetry) -> Option<&[String]> {
        let now = (self.table.revision(), self.statuses_revision);
        if self.published == Some(now) {
            return None;
        }
        self.published = Some(now);
        let list: Vec<ServiceStatus> = self.statuses.values().cloned().collect();
        log_standings(&list, &mut self.standings);
        let lines = health_status::lines(&self.table, &list);
        telemetry.health(lines.clone(), health_status::up_labels(&self.table));
        if self.monitor.is_empty() || self.lines.as_ref() == Some(&lines) {
            return None;
        }
        Some(self.lines.insert(lines))
    }
}
