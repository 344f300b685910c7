//! Health checks, the pure half: what a check is, the rise/fall state machine that turns
//! results into up/down, and how up/down changes the desired table the planner sees (a down
//! real drained to weight 0 or left out, a sorry server added when nothing is left). Probing is
//! done elsewhere (`crates/health`); nothing here waits, connects or reads a clock.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use model::{DestKey, DestSpec, ServiceKey};

use crate::state::{Desired, DesiredService};

/// How a real server is probed. Hashable: checks that probe alike share one probe.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum CheckKind {
    /// A TCP connection is accepted.
    Tcp,
    /// An HTTP(S) GET answers with an expected status (and body substring).
    Http {
        /// Over TLS (rustls; the certificate is not verified: the check asks whether the
        /// server answers, not who it is).
        tls: bool,
        /// Request path.
        path: String,
        /// Acceptable status codes; empty = any 2xx or 3xx.
        expect_status: Vec<u16>,
        /// A substring the body must contain.
        expect_body: Option<String>,
        /// `Host` header and TLS server name; default the real's address.
        host: Option<String>,
    },
    /// A program exits 0. No shell; `{address}` and `{port}` in the arguments are replaced.
    Exec {
        /// Program (absolute path) and arguments.
        command: Vec<String>,
    },
}

/// A check as configured for one real. Hashable: checks that probe alike share one probe.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CheckSpec {
    /// What to do.
    pub kind: CheckKind,
    /// Port to probe; default the real's.
    pub port: Option<u16>,
    /// Time between the starts of two checks.
    pub interval: Duration,
    /// Hard limit of one check (an exec check is killed then).
    pub timeout: Duration,
    /// Consecutive successes that make a down real up.
    pub rise: u32,
    /// Consecutive failures that make an up real down.
    pub fall: u32,
    /// A real that is new (not in the kernel yet) starts up instead of drained.
    pub initial_up: bool,
}

impl CheckSpec {
    /// Defaults for a check of `kind`: every 2 s, 1 s timeout, rise 2, fall 3, starts down.
    pub fn new(kind: CheckKind) -> Self {
        CheckSpec {
            kind,
            port: None,
            interval: Duration::from_secs(2),
            timeout: Duration::from_secs(1),
            rise: 2,
            fall: 3,
            initial_up: false,
        }
    }
}

/// What happens to a real whose check fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OnFailure {
    /// Weight 0: no new connections, existing ones finish.
    #[default]
    Drain,
    /// Out of the table (drained first, like any real that leaves).
    Remove,
}

/// A service's health settings.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ServiceHealth {
    /// Checks by real; a real without one is always up.
    pub checks: crate::FlatMap<DestKey, CheckSpec>,
    /// Drain or remove.
    pub on_failure: OnFailure,
    /// The sorry server, added while no real is healthy (or fewer than `quorum`).
    pub fallback: Option<(DestKey, DestSpec)>,
    /// The minimum number of healthy reals; below it the service is degraded.
    pub quorum: Option<u32>,
}

impl ServiceHealth {
    /// No checks, quorum or fallback: health never changes what the planner sees.
    pub fn is_inert(&self) -> bool {
        self.checks.is_empty() && self.quorum.is_none() && self.fallback.is_none()
    }
}

/// One real's health: up or down, and the streak that may change it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Health {
    /// Takes traffic.
    pub up: bool,
    streak: u32,
    /// The last result's explanation ("status 503", "connection refused", "exit 2" …).
    pub reason: String,
}

impl Health {
    /// A real starting `up` or down, with no results yet.
    pub fn new(up: bool) -> Self {
        Health {
            up,
            streak: 0,
            reason: String::new(),
        }
    }

    /// Records one result. Returns the new state when it changes: `rise` successes in a row
    /// bring a down real up, `fall` failures in a row take an up real down.
    pub fn record(&mut self, ok: bool, reason: &str, rise: u32, fall: u32) -> Option<bool> {
        reason.clone_into(&mut self.reason);
        if ok == self.up {
            self.streak = 0;
            return None;
        }
        self.streak += 1;
        if self.streak >= if ok { rise.max(1) } else { fall.max(1) } {
            self.up = ok;
            self.streak = 0;
            return Some(ok);
        }
        None
    }
}

/// How a service stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Standing {
    /// Enough healthy reals.
    Ok,
    /// Fewer healthy reals than `quorum`.
    Degraded,
    /// No healthy real.
    Down,
}

/// A service's health summary, for logs, `plan` and status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceStatus {
    /// The service.
    pub service: ServiceKey,
    /// Its label.
    pub name: Option<String>,
    /// Reals taking traffic (weight above 0 and up).
    pub healthy: usize,
    /// Reals with a weight above 0 in the config.
    pub serving: usize,
    /// How it stands.
    pub standing: Standing,
    /// The sorry server is in.
    pub fallback_active: bool,
    /// Reals still waiting for their first check result (new ones start drained).
    pub waiting: usize,
}

impl fmt::Display for ServiceStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = self
            .name
            .as_deref()
            .map(|n| format!(" ({n})"))
            .unwrap_or_default();
        let what = match self.standing {
            Standing::Ok => "ok",
            Standing::Degraded => "DEGRADED",
            Standing::Down => "DOWN: no healthy real server",
        };
        write!(
            f,
            "service {}{name}: {what}, {} of {} real servers healthy",
            self.service, self.healthy, self.serving
        )?;
        match (self.fallback_active, self.standing) {
            (true, _) => write!(f, "; the fallback server takes the traffic"),
            (false, Standing::Down) => write!(f, "; no fallback configured, new connections fail"),
            _ => Ok(()),
        }
    }
}

/// The services that cannot serve now: no healthy real server, or fewer than their quorum.
/// An active-active director withdraws their VIPs; `ha.health_file` counts them.
pub fn unable<'a>(
    statuses: impl IntoIterator<Item = &'a ServiceStatus>,
) -> std::collections::BTreeSet<ServiceKey> {
    statuses
        .into_iter()
        .filter(|s| s.standing != Standing::Ok)
        .map(|s| s.service)
        .collect()
}

/// The table the planner should aim for given each real's health (`up`, asked only for reals
/// that have a check): down reals drained or left out, the fallback added while the service
/// has no healthy real or fewer than its quorum (and then it takes all new connections).
pub fn effective(
    desired: &Desired,
    up: &dyn Fn(&ServiceKey, &DestKey) -> bool,
) -> (Desired, Vec<ServiceStatus>) {
    each_service(desired, |key, svc| effective_service(key, svc, up))
}

/// The whole table from what `f` makes of each service, with the standings it gives.
fn each_service(
    desired: &Desired,
    f: impl Fn(&ServiceKey, &DesiredService) -> (DesiredService, Option<ServiceStatus>),
) -> (Desired, Vec<ServiceStatus>) {
    let mut out = Desired::default();
    let mut statuses = vec![];
    for (key, svc) in &desired.services {
        let (svc, status) = f(key, svc);
        out.services.insert(*key, svc);
        statuses.extend(status);
    }
    (out, statuses)
}

/// [`effective`] for one service: a health change or an edit recomputes only its service. The
/// standing is `None` for a service without checks, quorum or fallback: it is always ok.
pub fn effective_service(
    key: &ServiceKey,
    svc: &DesiredService,
    up: &dyn Fn(&ServiceKey, &DestKey) -> bool,
) -> (DesiredService, Option<ServiceStatus>) {
    let mut svc = svc.clone();
    let h = &svc.health;
    if h.is_inert() {
        return (svc, None);
    }
    let mut healthy = 0;
    let mut serving = 0;
    let mut leaving = vec![];
    for (dest, spec) in svc.reals.iter_mut() {
        let ok = !h.checks.contains_key(dest) || up(key, dest);
        if spec.weight > 0 {
            serving += 1;
            if ok {
                healthy += 1;
            }
        }
        if !ok {
            match h.on_failure {
                OnFailure::Drain => spec.weight = 0,
                OnFailure::Remove => leaving.push(*dest),
            }
        }
    }
    // One pass (`leaving` is in the reals' order): a remove each would move the reals after
    // it once per leaving real.
    if !leaving.is_empty() {
        svc.reals.retain(|d, _| leaving.binary_search(d).is_err());
    }
    let quorum = h.quorum.map_or(1, |q| q.max(1) as usize);
    let standing = if healthy == 0 && (serving > 0 || !h.checks.is_empty()) {
        Standing::Down
    } else if healthy < quorum && h.quorum.is_some() {
        Standing::Degraded
    } else {
        Standing::Ok
    };
    let mut fallback_active = false;
    if let (Some((fk, fs)), Standing::Down | Standing::Degraded) = (&h.fallback, standing) {
        // The sorry server takes over: what is left of the pool takes no new connections.
        for spec in svc.reals.values_mut() {
            spec.weight = 0;
        }
        svc.reals.insert(*fk, *fs);
        fallback_active = true;
    }
    let status = ServiceStatus {
        service: *key,
        name: svc.name.clone(),
        healthy,
        serving,
        standing,
        fallback_active,
        waiting: 0,
    };
    (svc, Some(status))
}

/// A check's identity: the service and the real it probes.
pub type CheckId = (ServiceKey, DestKey);

/// The lowest real of any service: `(service, FIRST_DEST)..` ranges over one service's checks
/// in a map ordered by [`CheckId`].
pub const FIRST_DEST: DestKey = DestKey {
    addr: std::net::IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED),
    port: 0,
};

/// Every checked real's health, kept across reloads for reals whose check did not change.
#[derive(Debug, Clone, Default)]
pub struct HealthTable {
    entries: BTreeMap<CheckId, (CheckSpec, Health)>,
    /// Counts the changes people can see (a check added or dropped, a state or reason
    /// changed): what is derived from the whole table is rebuilt only when it moved.
    revision: u64,
}

/// Two tables are equal when they hold the same checks in the same states, however they got
/// there.
impl PartialEq for HealthTable {
    fn eq(&self, other: &Self) -> bool {
        self.entries == other.entries
    }
}

impl Eq for HealthTable {}

impl HealthTable {
    /// Follows the config: checks that are new or changed start from what the table shows (a
    /// real with weight above 0 is up, one at weight 0 is down: so a restarted daemon adopts
    /// the kernel's weights instead of flapping), or from `initial` for a real not in the table
    /// yet. Unchanged checks keep their state; checks that went away are dropped.
    pub fn sync(&mut self, desired: &Desired, observed: Option<&crate::state::Observed>) {
        let mut old = std::mem::take(&mut self.entries);
        for (skey, svc) in &desired.services {
            self.take_service(skey, svc, observed, &mut old);
        }
        if !old.is_empty() {
            self.revision += 1;
        }
    }

    /// Moves on whenever a check is added or dropped or a real's state or reason changes.
    pub fn revision(&self) -> u64 {
        self.revision
    }

    /// [`HealthTable::sync`] for the services in `services` only (an edit of a few services
    /// of a large file re-reads their checks, not every one).
    pub fn sync_services(
        &mut self,
        desired: &Desired,
        observed: Option<&crate::state::Observed>,
        services: &std::collections::BTreeSet<ServiceKey>,
    ) {
        for skey in services {
            let mut old: BTreeMap<CheckId, (CheckSpec, Health)> = self
                .service_ids(skey)
                .into_iter()
                .filter_map(|id| self.entries.remove(&id).map(|e| (id, e)))
                .collect();
            if let Some(svc) = desired.services.get(skey) {
                self.take_service(skey, svc, observed, &mut old);
            }
            if !old.is_empty() {
                self.revision += 1;
            }
        }
    }

    /// The checks of one service.
    fn service_ids(&self, service: &ServiceKey) -> Vec<CheckId> {
        self.entries
            .range((*service, FIRST_DEST)..)
            .take_while(|((s, _), _)| s == service)
            .map(|(id, _)| *id)
            .collect()
    }

    /// Puts the checks of `svc` in, each keeping its state from `old` if its spec did not
    /// change, else adopting what the table shows.
    fn take_service(
        &mut self,
        skey: &ServiceKey,
        svc: &DesiredService,
        observed: Option<&crate::state::Observed>,
        old: &mut BTreeMap<CheckId, (CheckSpec, Health)>,
    ) {
        for (dkey, spec) in &svc.health.checks {
            let id = (*skey, *dkey);
            let entry = match old.remove(&id) {
                Some((o, h)) if o == *spec => (o, h),
                _ => {
                    let seen = observed
                        .and_then(|o| o.services.get(skey))
                        .and_then(|s| s.reals.get(dkey));
                    let up = match seen {
                        Some(r) => {
                            r.spec.weight > 0 || svc.reals.get(dkey).is_some_and(|d| d.weight == 0)
                        }
                        None => spec.initial_up,
                    };
                    self.revision += 1;
                    (spec.clone(), Health::new(up))
                }
            };
            self.entries.insert(id, entry);
        }
    }

    /// The checks of the services in `services`, each with its real's state (what their
    /// probers start from when they are new or changed).
    pub fn checks_of<'a>(
        &'a self,
        services: &'a std::collections::BTreeSet<ServiceKey>,
    ) -> impl Iterator<Item = (&'a CheckId, &'a CheckSpec, bool)> + 'a {
        services.iter().flat_map(move |s| {
            self.entries
                .range((*s, FIRST_DEST)..)
                .take_while(move |((k, _), _)| k == s)
                .map(|(id, (spec, h))| (id, spec, h.up))
        })
    }

    /// Records a result; returns the new state on a transition.
    pub fn record(&mut self, id: &CheckId, ok: bool, reason: &str) -> Option<bool> {
        let (spec, h) = self.entries.get_mut(id)?;
        self.revision += 1;
        h.record(ok, reason, spec.rise, spec.fall)
    }

    /// Takes a check's own verdict (its prober runs the rise/fall machine itself, see
    /// [`Health::record`]): the real's state and the last result's reason. Returns the new
    /// state when it changed.
    pub fn set(&mut self, id: &CheckId, up: bool, reason: &str) -> Option<bool> {
        let (_, h) = self.entries.get_mut(id)?;
        if h.reason != reason || h.up != up {
            self.revision += 1;
        }
        reason.clone_into(&mut h.reason);
        h.streak = 0;
        (h.up != up).then(|| {
            h.up = up;
            up
        })
    }

    /// The checks to run, each with the state its real is in now (what its prober starts
    /// from).
    pub fn checks_with_state(&self) -> impl Iterator<Item = (&CheckId, &CheckSpec, bool)> {
        self.entries.iter().map(|(id, (spec, h))| (id, spec, h.up))
    }

    /// Up (a real without a check is always up).
    pub fn is_up(&self, service: &ServiceKey, dest: &DestKey) -> bool {
        self.entries
            .get(&(*service, *dest))
            .is_none_or(|(_, h)| h.up)
    }

    /// The checks to run, with the real's port filled in.
    pub fn checks(&self) -> impl Iterator<Item = (&CheckId, &CheckSpec)> {
        self.entries.iter().map(|(id, (spec, _))| (id, spec))
    }

    /// One real's health.
    pub fn get(&self, id: &CheckId) -> Option<&Health> {
        self.entries.get(id).map(|(_, h)| h)
    }

    /// The table the planner should aim for, and each service's standing (with the reals
    /// that are down only because they have not been checked yet).
    pub fn effective(&self, desired: &Desired) -> (Desired, Vec<ServiceStatus>) {
        each_service(desired, |key, svc| self.effective_service(key, svc))
    }

    /// [`HealthTable::effective`], or `None` when no service has health settings: the table
    /// to aim for is then the config itself, and a large one need not be copied.
    pub fn effective_if_any(&self, desired: &Desired) -> Option<(Desired, Vec<ServiceStatus>)> {
        (!desired.services.values().all(|s| s.health.is_inert())).then(|| self.effective(desired))
    }

    /// [`HealthTable::effective`] for one service.
    pub fn effective_service(
        &self,
        key: &ServiceKey,
        svc: &DesiredService,
    ) -> (DesiredService, Option<ServiceStatus>) {
        let (svc, mut status) = effective_service(key, svc, &|s, d| self.is_up(s, d));
        if let Some(st) = &mut status {
            st.waiting = self
                .entries
                .range((*key, FIRST_DEST)..)
                .take_while(|((s, _), _)| s == key)
                .filter(|(_, (_, h))| !h.up && h.reason.is_empty())
                .count();
        }
        (svc, status)
    }
}
