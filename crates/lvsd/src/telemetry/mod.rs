//! What the daemon tells the outside: Prometheus metrics on an opt-in HTTP listener, the
//! `lvsd status` answer on a 0600 Unix socket, and systemd's notify protocol. The daemon loop
//! records into [`Telemetry`]; the listeners only read it (and, for metrics, the kernel's own
//! counters, fetched at each scrape so they are true at that moment). This file holds the
//! model the loop writes; `metrics`, `status` (server, client and formatter) and `systemd`
//! each serve one audience.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use anyhow::{Context, Result};
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use serde::Serialize;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

mod kernel;
mod metrics;
mod status;
mod systemd;

pub use self::kernel::KernelView;
pub use self::metrics::serve_metrics;
use self::metrics::{HealthStates, Scrape};
pub use self::status::{Control, query, request, serve_status, socket_path};
pub use self::systemd::{notify_ready, notify_status, notify_watchdog, watchdog_interval};

type Labels = Vec<(String, String)>;

/// The daemon's recent history, as `lvsd status` shows it.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Status {
    /// lvsd's version.
    pub version: String,
    /// The daemon's pid.
    pub pid: u32,
    /// The config file.
    pub config: String,
    /// The role in force.
    pub role: String,
    /// FNV-1a hash of the last good config's bytes.
    pub config_hash: String,
    /// When the last good config was loaded (Unix seconds).
    pub config_loaded_at: u64,
    /// The last reload: when, and whether it was taken.
    pub last_reload: Option<Reload>,
    /// The last pass.
    pub last_reconcile: Option<Reconcile>,
    /// Table and host both match the config.
    pub converged: bool,
    /// How the table stands: in sync, converging, failing (why, when it is retried), refused.
    pub table: String,
    /// How the host role stands, in the same words.
    pub host: String,
    /// Passes so far.
    pub passes: u64,
    /// Changes made behind lvsd's back that it repaired (or, in report mode, saw).
    pub drift_total: u64,
    /// Services lvsd manages.
    pub managed_services: usize,
    /// What `ha.health_file` says: how many services cannot be served here (none when not
    /// configured).
    pub health_file: Option<usize>,
    /// VIPs an active-active director announces now (none in other modes).
    pub announced_vips: Option<usize>,
    /// Whether this director takes traffic (`lvsd drain --director`); none outside the HA
    /// modes.
    pub director: Option<DirectorView>,
    /// Services in the table that are not lvsd's.
    pub foreign_services: usize,
    /// Health per checked real and per service that is not ok.
    pub health: Vec<String>,
    /// Operators' overrides in force (`lvsd drain`, `lvsd weight`), next to the file's values.
    pub overrides: Vec<crate::overrides::View>,
    /// Reals ramping up after they joined (`slow_start`): the weight now, towards which, until
    /// when.
    pub ramps: Vec<RampView>,
    /// The latest errors, newest last.
    pub errors: Vec<Stamped>,
    /// The kernel's table as read when the status is asked for: the fingerprints of the
    /// hashing services (`hashing`), the sync daemons (`sync_daemons`), the connections held
    /// (`connections`). Empty on a real server, or when the table cannot be read.
    #[serde(flatten)]
    pub kernel: KernelView,
    /// Why the kernel's table could not be read for this status, if it could not.
    pub kernel_error: Option<String>,
}

/// A config reload.
#[derive(Debug, Clone, Serialize)]
pub struct Reload {
    /// Unix seconds.
    pub at: u64,
    /// `ok`, `rejected`, or `deferred` (not checkable against the table yet; retried).
    pub result: String,
    /// Why it was rejected (the config problems, the guard).
    pub message: String,
}

/// A reconcile pass.
#[derive(Debug, Clone, Serialize)]
pub struct Reconcile {
    /// Unix seconds.
    pub at: u64,
    /// Seconds it took.
    pub duration_seconds: f64,
    /// The operations carried out, as `plan` prints them.
    pub changes: Vec<String>,
    /// Operations that failed, with the error.
    pub failed: Vec<String>,
    /// Whether the table and host matched the config afterwards.
    pub converged: bool,
}

/// A real on its way to its weight (`slow_start`), as status shows it.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct RampView {
    /// The service (`TCP 172.16.1.50:80`).
    pub service: String,
    /// Its name in the config.
    pub name: Option<String>,
    /// The real.
    pub real: String,
    /// The weight the last pass gave it.
    pub weight: u32,
    /// The weight it ramps to.
    pub target: u32,
    /// When it joined (Unix seconds).
    pub since: u64,
    /// When it reaches the target (Unix seconds).
    pub until: u64,
    /// The line for people.
    pub line: String,
}

/// A director's rotation, as status shows it.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct DirectorView {
    /// `serving`, `withdrawing` or `drained`.
    pub state: String,
    /// When it left rotation (Unix seconds).
    pub since: Option<u64>,
    /// When it comes back by itself (Unix seconds).
    pub until: Option<u64>,
    /// The grace period, in seconds, before it may count as drained.
    pub grace_secs: Option<u64>,
    /// The operator's words.
    pub reason: Option<String>,
}

/// A timestamped message.
#[derive(Debug, Clone, Serialize)]
pub struct Stamped {
    /// Unix seconds.
    pub at: u64,
    /// The message.
    pub message: String,
}

const MAX_ERRORS: usize = 20;

/// Metric handles and the status, shared by the daemon and its listeners.
#[derive(Debug)]
pub struct Telemetry {
    status: Mutex<Status>,
    registry: Mutex<Registry>,
    passes: Counter,
    duration: Histogram,
    operations: Family<Labels, Counter>,
    drift: Counter,
    reloads: Family<Labels, Counter>,
    config_time: Gauge,
    config_info: Family<Labels, Gauge>,
    services: Family<Labels, Gauge>,
    converged: Family<Labels, Gauge>,
    failures: Family<Labels, Counter>,
    stuck: Counter,
    health_file: Gauge,
    announced: Gauge,
    director: Family<Labels, Gauge>,
    table_read: Histogram,
    table_services: Family<Labels, Counter>,
    table_reals_decoded: Counter,
    lateness: Histogram,
    override_weight: Family<Labels, Gauge>,
    override_until: Family<Labels, Gauge>,
    overrides_changed: Counter,
    ramp_weight: Family<Labels, Gauge>,
    ramp_target: Family<Labels, Gauge>,
    /// The per-real health states, for the scrapes.
    health_states: HealthStates,
}

impl Telemetry {
    /// Everything registered, nothing recorded yet.
    pub fn new(config: &Path, role: &str) -> Arc<Self> {
        let mut registry = Registry::with_prefix("lvsd");
        let passes = Counter::default();
        registry.register("reconcile_passes", "Reconcile passes run", passes.clone());
        let duration = Histogram::new(exponential_buckets(0.001, 2.0, 14));
        registry.register(
            "reconcile_duration_seconds",
            "Time a reconcile pass took (observe, plan, apply, verify)",
            duration.clone(),
        );
        let operations = Family::<Labels, Counter>::default();
        registry.register(
            "operations",
            "Operations carried out, by kind and result",
            operations.clone(),
        );
        let drift = Counter::default();
        registry.register(
            "drift_repairs",
            "Changes made behind lvsd's back that a resync repaired (or saw, in report mode)",
            drift.clone(),
        );
        let reloads = Family::<Labels, Counter>::default();
        registry.register(
            "config_reloads",
            "Config reloads, by result (ok, rejected)",
            reloads.clone(),
        );
        let config_time = Gauge::default();
        registry.register(
            "config_last_good_timestamp_seconds",
            "When the config in force was loaded",
            config_time.clone(),
        );
        let config_info = Family::<Labels, Gauge>::default();
        registry.register(
            "config_info",
            "The config in force: its path and the FNV-1a hash of its bytes (value 1)",
            config_info.clone(),
        );
        let services = Family::<Labels, Gauge>::default();
        registry.register(
            "services",
            "Services in the table, by owner (managed, foreign)",
            services.clone(),
        );
        let converged = Family::<Labels, Gauge>::default();
        registry.register(
            "converged",
            "1 when the part (table, host) matches the config, 0 while it converges, fails or is refused",
            converged.clone(),
        );
        let failures = Family::<Labels, Counter>::default();
        registry.register(
            "pass_failures",
            "Passes in which a part (table, host) failed: an operation refused, the kernel or host unreadable, the host lacking what the role needs",
            failures.clone(),
        );
        let stuck = Counter::default();
        registry.register(
            "persistent_differences",
            "Differences still there after a write the kernel accepted and lvsd read back (each counts as a failure)",
            stuck.clone(),
        );
        let health_file = Gauge::default();
        registry.register(
            "health_file_value",
            "What ha.health_file says: services this director cannot serve (keepalived's track_file faults while not 0)",
            health_file.clone(),
        );
        let lateness = Histogram::new(exponential_buckets(0.001, 2.0, 12));
        registry.register(
            "check_lateness_seconds",
            "How much later than planned each health check started",
            lateness.clone(),
        );
        let announced = Gauge::default();
        registry.register(
            "announced_vips",
            "VIPs this active-active director holds on its announce device now (the routing daemon announces them)",
            announced.clone(),
        );
        let table_read = Histogram::new(exponential_buckets(0.001, 2.0, 16));
        registry.register(
            "table_read_seconds",
            "Whole reads of the IPVS table (the start, every resync, a pass after a failure): the kernel's dump and the decoding",
            table_read.clone(),
        );
        let table_services = Family::<Labels, Counter>::default();
        registry.register(
            "table_read_services",
            "Services in whole reads of the table: decoded anew, or reused (their real servers read back unchanged, taken from the table the last pass left)",
            table_services.clone(),
        );
        let table_reals_decoded = Counter::default();
        registry.register(
            "table_read_reals_decoded",
            "Real servers decoded in whole reads of the table",
            table_reals_decoded.clone(),
        );
        let director = Family::<Labels, Gauge>::default();
        registry.register(
            "director_state",
            "This director's rotation (lvsd drain --director): 1 for the state it is in (serving, withdrawing, drained), 0 for the others",
            director.clone(),
        );
        let override_weight = Family::<Labels, Gauge>::default();
        registry.register(
            "override_weight",
            "Operators' overrides in force (lvsd drain, lvsd weight): the weight given, by service, real (empty: every real) and action",
            override_weight.clone(),
        );
        let override_until = Family::<Labels, Gauge>::default();
        registry.register(
            "override_expiry_timestamp_seconds",
            "When an override ends by itself (Unix seconds; 0: when it is cleared)",
            override_until.clone(),
        );
        let overrides_changed = Counter::default();
        registry.register(
            "override_changes",
            "Overrides set, changed, cleared or ended",
            overrides_changed.clone(),
        );
        let ramp_weight = Family::<Labels, Gauge>::default();
        registry.register(
            "ramp_weight",
            "Reals ramping up after they joined (slow_start): the weight they have now, by service and real",
            ramp_weight.clone(),
        );
        let ramp_target = Family::<Labels, Gauge>::default();
        registry.register(
            "ramp_target_weight",
            "Reals ramping up after they joined (slow_start): the weight they ramp to",
            ramp_target.clone(),
        );
        let status = Status {
            version: env!("CARGO_PKG_VERSION").to_owned(),
            pid: std::process::id(),
            config: config.display().to_string(),
            role: role.to_owned(),
            ..Status::default()
        };
        Arc::new(Telemetry {
            status: Mutex::new(status),
            registry: Mutex::new(registry),
            passes,
            duration,
            operations,
            drift,
            reloads,
            config_time,
            config_info,
            services,
            converged,
            failures,
            stuck,
            health_file,
            announced,
            director,
            table_read,
            table_services,
            table_reals_decoded,
            lateness,
            override_weight,
            override_until,
            overrides_changed,
            ramp_weight,
            ramp_target,
            health_states: HealthStates::default(),
        })
    }

    fn status(&self) -> MutexGuard<'_, Status> {
        // A panic while holding the lock cannot leave the status inconsistent in a way that
        // matters more than reporting it: take the data either way.
        self.status.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A copy of the status.
    pub fn snapshot(&self) -> Status {
        self.status().clone()
    }

    /// A config was taken (at start or by a reload).
    pub fn config_loaded(&self, bytes_hash: String, role: &str, reload: bool) {
        let now = crate::engine::now();
        self.config_time.set(i64::try_from(now).unwrap_or(i64::MAX));
        let mut s = self.status();
        self.config_info.clear();
        self.config_info
            .get_or_create(&vec![
                ("path".into(), s.config.clone()),
                ("hash".into(), bytes_hash.clone()),
            ])
            .set(1);
        s.config_hash = bytes_hash;
        s.config_loaded_at = now;
        role.clone_into(&mut s.role);
        if reload {
            self.reloads
                .get_or_create(&vec![("result".into(), "ok".into())])
                .inc();
            s.last_reload = Some(Reload {
                at: now,
                result: "ok".into(),
                message: String::new(),
            });
        }
    }

    /// A reload was refused; the last good config stays.
    pub fn config_rejected(&self, message: &str) {
        self.reloads
            .get_or_create(&vec![("result".into(), "rejected".into())])
            .inc();
        let now = crate::engine::now();
        let mut s = self.status();
        s.last_reload = Some(Reload {
            at: now,
            result: "rejected".into(),
            message: message.to_owned(),
        });
        push_error(&mut s, now, format!("config rejected: {message}"));
    }

    /// The file is the config in force again (an edit that was rejected or waiting has been
    /// undone).
    pub fn config_back(&self) {
        let now = crate::engine::now();
        self.status().last_reload = Some(Reload {
            at: now,
            result: "ok".into(),
            message: "the file is the config in force again".into(),
        });
    }

    /// A reload could not be checked against the table and host yet; the last good config
    /// stays and the reload is tried again.
    pub fn config_deferred(&self, message: &str) {
        self.reloads
            .get_or_create(&vec![("result".into(), "deferred".into())])
            .inc();
        let now = crate::engine::now();
        let mut s = self.status();
        s.last_reload = Some(Reload {
            at: now,
            result: "deferred".into(),
            message: message.to_owned(),
        });
        push_error(&mut s, now, message.to_owned());
    }

    /// A health check started `late` after it was planned to.
    pub fn check_started(&self, late: Duration) {
        self.lateness.observe(late.as_secs_f64());
    }

    /// The VIPs on the announce device after a pass.
    pub fn announced(&self, n: usize) {
        self.announced.set(i64::try_from(n).unwrap_or(i64::MAX));
        self.status().announced_vips = Some(n);
    }

    /// One whole read of the table: what it cost and what it reused.
    pub fn table_read(&self, r: crate::engine::TableRead) {
        self.table_read.observe(r.took.as_secs_f64());
        let decoded = r.services.saturating_sub(r.reused);
        for (how, n) in [("decoded", decoded), ("reused", r.reused)] {
            self.table_services
                .get_or_create(&vec![("how".to_owned(), how.to_owned())])
                .inc_by(n as u64);
        }
        self.table_reals_decoded.inc_by(r.reals_decoded as u64);
    }

    /// Where the director's rotation stands (none outside the HA modes).
    pub fn director(&self, view: Option<DirectorView>) {
        for st in crate::director::State::ALL {
            let on = view.as_ref().is_some_and(|v| v.state == st.name());
            self.director
                .get_or_create(&vec![("state".to_owned(), st.name().to_owned())])
                .set(i64::from(on));
        }
        self.status().director = view;
    }

    /// The health file was written with `value`.
    pub fn health_file(&self, value: usize) {
        self.health_file
            .set(i64::try_from(value).unwrap_or(i64::MAX));
        self.status().health_file = Some(value);
    }

    /// How the table and the host stand after a pass.
    pub fn standing(
        &self,
        table: &crate::daemon::decide::Standing,
        host: &crate::daemon::decide::Standing,
    ) {
        for (part, st) in [("table", table), ("host", host)] {
            self.converged
                .get_or_create(&vec![("part".into(), part.into())])
                .set(i64::from(st.is_converged()));
        }
        let mut s = self.status();
        s.converged = table.is_converged() && host.is_converged();
        s.table = table.describe();
        s.host = host.describe();
    }

    /// A pass ended (or failed before doing anything, with `error`).
    pub fn pass(&self, took: Duration, record: PassRecord) {
        self.passes.inc();
        for part in &record.failed_parts {
            self.failures
                .get_or_create(&vec![("part".into(), (*part).into())])
                .inc();
        }
        self.stuck.inc_by(record.stuck);
        self.duration.observe(took.as_secs_f64());
        for (kind, result) in &record.ops {
            self.operations
                .get_or_create(&vec![
                    ("kind".into(), (*kind).into()),
                    ("result".into(), (*result).into()),
                ])
                .inc();
        }
        self.drift.inc_by(record.drift);
        for (owner, n) in [("managed", record.managed), ("foreign", record.foreign)] {
            self.services
                .get_or_create(&vec![("owner".into(), owner.into())])
                .set(i64::try_from(n).unwrap_or(i64::MAX));
        }
        let now = crate::engine::now();
        let mut s = self.status();
        s.passes += 1;
        s.drift_total += record.drift;
        s.managed_services = record.managed;
        s.foreign_services = record.foreign;
        if let Some(e) = &record.error {
            push_error(&mut s, now, e.clone());
        }
        for f in &record.failed {
            push_error(&mut s, now, f.clone());
        }
        s.last_reconcile = Some(Reconcile {
            at: now,
            duration_seconds: took.as_secs_f64(),
            changes: record.changes,
            failed: record.failed,
            converged: record.converged,
        });
    }

    /// The health lines and per-real states for status and metrics.
    pub fn health(&self, lines: Vec<String>, up: Vec<(Labels, bool)>) {
        self.status().health = lines;
        self.health_states.set(up);
    }

    /// The overrides in force, for status and metrics; `changed`: one was set, changed,
    /// cleared or ended since the last call.
    pub fn overrides(&self, list: Vec<crate::overrides::View>, changed: bool) {
        if changed {
            self.overrides_changed.inc();
        }
        self.override_weight.clear();
        self.override_until.clear();
        for v in &list {
            let labels = vec![
                ("service".into(), v.service.clone()),
                ("real".into(), v.real.clone().unwrap_or_default()),
                ("action".into(), v.action.clone()),
            ];
            self.override_weight
                .get_or_create(&labels)
                .set(i64::from(v.weight));
            self.override_until
                .get_or_create(&labels)
                .set(v.until.map_or(0, |u| i64::try_from(u).unwrap_or(i64::MAX)));
        }
        self.status().overrides = list;
    }

    /// The ramps under way (`slow_start`), for status and metrics.
    pub fn ramps(&self, list: Vec<RampView>) {
        if self.status().ramps == list {
            return;
        }
        self.ramp_weight.clear();
        self.ramp_target.clear();
        for r in &list {
            let labels = vec![
                ("service".into(), r.service.clone()),
                ("real".into(), r.real.clone()),
            ];
            self.ramp_weight
                .get_or_create(&labels)
                .set(i64::from(r.weight));
            self.ramp_target
                .get_or_create(&labels)
                .set(i64::from(r.target));
        }
        self.status().ramps = list;
    }

    /// The metrics text, with the kernel's counters taken from `dump` and its sync daemons
    /// from `daemons`, both read just now. For tests and small tables; a scrape streams
    /// ([`Telemetry::write_metrics`]).
    #[cfg(test)]
    pub fn metrics(
        &self,
        dump: &[(ipvs::Service, Vec<ipvs::Dest>)],
        daemons: &[ipvs::SyncDaemon],
    ) -> String {
        let mut out = String::new();
        if self
            .write_metrics(dump.to_vec(), daemons.to_vec(), &mut out)
            .is_err()
        {
            out.clear();
            out.push_str("# encoding failed\n");
        }
        out
    }

    /// Writes the metrics text to `out` as it is encoded, with the kernel's counters taken
    /// from `dump` and its sync daemons from `daemons`. The daemon's own metrics are encoded
    /// first, into memory, under their locks; the kernel's part (eight lines a real) is then
    /// written from data this scrape owns, so a slow `out` holds up nothing else, and neither
    /// that text nor the dump stays in memory after. An error: `out` refused (the client went
    /// away).
    pub fn write_metrics(
        &self,
        dump: Vec<(ipvs::Service, Vec<ipvs::Dest>)>,
        daemons: Vec<ipvs::SyncDaemon>,
        out: &mut impl std::fmt::Write,
    ) -> std::fmt::Result {
        let mut own = String::new();
        {
            let registry = self.registry.lock().unwrap_or_else(|p| p.into_inner());
            prometheus_client::encoding::text::encode_registry(&mut own, &registry)?;
        }
        out.write_str(&own)?;
        drop(own);
        let mut scrape = Registry::with_prefix("lvsd");
        scrape.register_collector(Box::new(Scrape {
            dump,
            daemons,
            health: self.health_states.get(),
        }));
        prometheus_client::encoding::text::encode_registry(out, &scrape)?;
        prometheus_client::encoding::text::encode_eof(out)
    }
}

fn push_error(s: &mut Status, at: u64, message: String) {
    s.errors.push(Stamped { at, message });
    let excess = s.errors.len().saturating_sub(MAX_ERRORS);
    s.errors.drain(..excess);
}

/// What a pass did, in the terms metrics and status use.
#[derive(Debug, Default)]
pub struct PassRecord {
    /// Parts (`table`, `host`) that failed in this pass.
    pub failed_parts: Vec<&'static str>,
    /// Differences that remained after a verified write.
    pub stuck: u64,
    /// (kind, result) per operation.
    pub ops: Vec<(&'static str, &'static str)>,
    /// Operations applied, as printed.
    pub changes: Vec<String>,
    /// Operations failed, with the error.
    pub failed: Vec<String>,
    /// Drift repaired or seen.
    pub drift: u64,
    /// Managed services.
    pub managed: usize,
    /// Foreign services.
    pub foreign: usize,
    /// Converged afterwards.
    pub converged: bool,
    /// The pass's own errors: a part that was refused or could not run.
    pub error: Option<String>,
}

impl PassRecord {
    /// The record of `pass`, with the drift the daemon counted and the services it manages.
    pub fn of(pass: &crate::engine::Pass, drift: u64, managed: usize) -> PassRecord {
        use crate::engine::Outcome;
        let mut r = PassRecord {
            drift,
            managed,
            converged: pass.converged(),
            ..PassRecord::default()
        };
        let mut errors = vec![];
        if let Outcome::Done(h) = &pass.host {
            for op in &h.applied {
                r.ops.push((op.kind(), "ok"));
                r.changes.push(op.to_string());
            }
            if let Some((op, e)) = &h.failed {
                r.ops.push((op.kind(), "failed"));
                r.failed.push(format!("{op}: {e}"));
                r.failed_parts.push("host");
            }
        }
        if let Outcome::Done(t) = &pass.table {
            for op in &t.globals.applied {
                r.ops.push((op.kind(), "ok"));
                r.changes.push(op.to_string());
            }
            for (op, e) in &t.globals.failed {
                r.ops.push((op.kind(), "failed"));
                r.failed.push(format!("{op}: {e}"));
            }
            if let Some(e) = &t.globals.error {
                r.failed.push(e.clone());
            }
            for op in &t.applied {
                r.ops.push((op.kind(), "ok"));
                r.changes.push(op.to_string());
            }
            for (op, e) in &t.failed {
                r.ops.push((op.kind(), "failed"));
                r.failed.push(format!("{op}: {e}"));
            }
            if !t.failed.is_empty() || !t.stuck.is_empty() || t.globals.failures() > 0 {
                r.failed_parts.push("table");
            }
            r.stuck = (t.stuck.len() + t.globals.stuck.len()) as u64;
            r.foreign = t.after.foreign.len();
        }
        for (part, o) in [("table", pass.table.error()), ("host", pass.host.error())] {
            if let Some(e) = o {
                errors.push(format!("{part}: {e:#}"));
                if matches!(
                    (part, &pass.table, &pass.host),
                    ("table", Outcome::Failed(_), _) | ("host", _, Outcome::Failed(_))
                ) {
                    r.failed_parts.push(part);
                }
            }
        }
        if !errors.is_empty() {
            r.error = Some(errors.join("; "));
        }
        r
    }
}

/// The SHA-256 of the config's bytes, in hex: the fingerprint operators compare across hosts
/// after a push, the same `sha256sum` prints for the main file.
pub fn config_hash(text: &[u8]) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, text);
    let mut out = String::with_capacity(64);
    for b in digest.as_ref() {
        let _ = write!(out, "{b:02x}");
    }
    out
}

/// How long one connection (metrics or status) may last: a client that stops reading holds
/// only its own connection, and not for ever.
const CONNECTION_TIMEOUT: Duration = Duration::from_secs(30);
/// The wait after a failing `accept` (out of file descriptors): a pause, not a spin.
const ACCEPT_PAUSE: Duration = Duration::from_millis(100);

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    #[test]
    fn the_config_hash_is_the_files_sha256() {
        // FIPS 180-2's example: what `printf abc | sha256sum` prints.
        assert_eq!(
            super::config_hash(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    /// Ramps under way are in the status (for `lvsd status`, human and JSON) and the metrics,
    /// and leave both when they end.
    #[test]
    #[allow(clippy::unwrap_used)]
    fn ramps_are_shown_and_exported_until_they_end() {
        let t = super::Telemetry::new(std::path::Path::new("/etc/lvsd/lvsd.yaml"), "director");
        let line = "web (TCP 172.16.1.50:80) real 172.16.1.103:80: weight 30 of 100, slow start of 20s, full in 13 s";
        t.ramps(vec![super::RampView {
            service: "TCP 172.16.1.50:80".into(),
            name: Some("web".into()),
            real: "172.16.1.103:80".into(),
            weight: 30,
            target: 100,
            since: 1_000,
            until: 1_020,
            line: line.into(),
        }]);
        let m = t.metrics(&[], &[]);
        for l in [
            "lvsd_ramp_weight{service=\"TCP 172.16.1.50:80\",real=\"172.16.1.103:80\"} 30",
            "lvsd_ramp_target_weight{service=\"TCP 172.16.1.50:80\",real=\"172.16.1.103:80\"} 100",
        ] {
            assert!(m.contains(l), "{l} in {m}");
        }
        let json = serde_json::to_value(t.snapshot()).unwrap();
        assert_eq!(json["ramps"][0]["weight"], 30);
        let human = super::status::human(&json);
        assert!(human.contains(&format!("ramp:       {line}")), "{human}");
        t.ramps(vec![]);
        assert!(!t.metrics(&[], &[]).contains("lvsd_ramp_weight{"));
        assert!(t.snapshot().ramps.is_empty());
    }

    #[test]
    fn a_table_read_and_the_directors_rotation_are_exported() {
        let t = super::Telemetry::new(std::path::Path::new("/etc/lvsd/lvsd.yaml"), "director");
        t.table_read(crate::engine::TableRead {
            took: std::time::Duration::from_millis(40),
            services: 10,
            reused: 7,
            reals_decoded: 30,
        });
        t.director(Some(super::DirectorView {
            state: "withdrawing".into(),
            since: Some(1_000),
            until: None,
            grace_secs: Some(5),
            reason: Some("patch".into()),
        }));
        let m = t.metrics(&[], &[]);
        for l in [
            "lvsd_table_read_services_total{how=\"decoded\"} 3",
            "lvsd_table_read_services_total{how=\"reused\"} 7",
            "lvsd_table_read_reals_decoded_total 30",
            "lvsd_table_read_seconds_count 1",
            "lvsd_director_state{state=\"withdrawing\"} 1",
            "lvsd_director_state{state=\"serving\"} 0",
            "lvsd_director_state{state=\"drained\"} 0",
        ] {
            assert!(m.contains(l), "{l} in {m}");
        }
        let json = serde_json::to_value(t.snapshot()).unwrap();
        assert_eq!(json["director"]["state"], "withdrawing");
        let human = super::status::human(&json);
        assert!(
            human.contains(
                "director:   withdrawing (out of rotation since 1970-01-01 00:16:40 UTC: patch)"
            ),
            "{human}"
        );
    }
}
