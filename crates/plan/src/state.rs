//! The three inputs of a plan. `Desired` and `Observed` have the same shape — ordered maps from
//! identity to normalised settings — so that equality means "nothing to do"; `Owned` is lvsd's
//! memory of what it manages, which is what keeps it from touching anybody else's services.

use std::collections::BTreeMap;

use crate::flat::{FlatMap, FlatSet};

use model::save::Rule;
use model::{
    Dest, DestKey, DestSpec, ForwardMethod, Netmask, Service, ServiceFlags, ServiceKey,
    ServiceSpec, TunnelType,
};

/// Default time a removed real server (or service) is drained before it is deleted anyway.
pub const DEFAULT_DRAIN_TIMEOUT: u64 = 30;

/// One service as the configuration wants it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DesiredService {
    /// The operator's label, for logs and plans.
    pub name: Option<String>,
    /// Normalised settings (see [`normalize_service`]).
    pub spec: ServiceSpec,
    /// Seconds a removed real is drained before deletion.
    pub drain_timeout: u64,
    /// Real servers by address and port, with normalised settings.
    pub reals: FlatMap<DestKey, DestSpec>,
    /// Health checks, failure policy, fallback and quorum.
    pub health: crate::health::ServiceHealth,
    /// The reals that ramp up when they join (`slow_start`, of the real or its service), with
    /// the time the ramp takes; a real not here takes its whole weight at once (see
    /// [`crate::ramp`]).
    pub slow_start: BTreeMap<DestKey, std::time::Duration>,
}

/// The whole table as the configuration wants it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Desired {
    /// Services by identity.
    pub services: BTreeMap<ServiceKey, DesiredService>,
}

/// A real server as the kernel reports it: settings plus the connection counts drains wait on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ObservedReal {
    /// Normalised settings.
    pub spec: DestSpec,
    /// Established connections.
    pub active: u32,
    /// Connections in other states: closing TCP, and every UDP entry (the kernel counts
    /// UDP as inactive).
    pub inactive: u32,
    /// Persistence templates pointing at it (new connections from those clients still go
    /// there, whatever its weight).
    pub persistent: u32,
}

impl ObservedReal {
    /// A real as just added: the settings, no connections.
    pub fn new(spec: DestSpec) -> Self {
        ObservedReal {
            spec,
            active: 0,
            inactive: 0,
            persistent: 0,
        }
    }

    /// Nothing that carries traffic of `service` uses it, so deleting it cuts nothing: no
    /// established connection, no persistence template (it sends its client back whatever the
    /// weight) and, for a service that can carry UDP (UDP, a fwmark service, a protocol lvsd
    /// has no name for), no inactive entry: the kernel counts every UDP flow as inactive. A
    /// TCP or SCTP service's inactive entries are connections closing or closed (TIME_WAIT
    /// lasts two minutes): a drain does not wait for them.
    pub fn idle(&self, service: &ServiceKey) -> bool {
        let inactive_carries = !matches!(
            service,
            ServiceKey::Addr {
                protocol: model::Protocol::Tcp | model::Protocol::Sctp,
                ..
            }
        );
        self.active == 0 && self.persistent == 0 && (self.inactive == 0 || !inactive_carries)
    }
}

/// A service as the kernel reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObservedService {
    /// Normalised settings.
    pub spec: ServiceSpec,
    /// Real servers by address and port.
    pub reals: FlatMap<DestKey, ObservedReal>,
}

impl ObservedService {
    /// One service as the kernel reports it, normalised.
    pub fn from_kernel(s: &Service, dests: &[Dest]) -> Self {
        Self::new(s.clone(), Self::reals_of(dests))
    }

    /// A service the kernel reported, normalised, with its reals already read (see
    /// [`ObservedService::reals_from_kernel`]).
    pub fn new(s: Service, reals: FlatMap<DestKey, ObservedReal>) -> Self {
        ObservedService {
            spec: normalize_service(s.spec, s.key),
            reals,
        }
    }

    /// A service's real servers as the kernel reports them, normalised (taking the list, for
    /// lvsd-ipvs's `Client::dests_with`).
    pub fn reals_from_kernel(dests: Vec<Dest>) -> FlatMap<DestKey, ObservedReal> {
        Self::reals_of(&dests)
    }

    fn reals_of(dests: &[Dest]) -> FlatMap<DestKey, ObservedReal> {
        dests
            .iter()
            .map(|d| {
                let real = ObservedReal {
                    spec: normalize_dest(d.spec),
                    active: d.conns.active,
                    inactive: d.conns.inactive,
                    persistent: d.conns.persistent,
                };
                (d.key, real)
            })
            .collect()
    }
}

/// The live table, normalised so it compares equal to a `Desired` that matches it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Observed {
    /// Services by identity.
    pub services: BTreeMap<ServiceKey, ObservedService>,
}

impl Observed {
    /// The table after the kernel accepted `op`: what a pass that wrote many objects knows
    /// without reading them all back (the kernel answers every failed write, so a write without
    /// an error took effect as sent).
    pub fn apply(&mut self, op: &crate::Op) {
        use crate::Op;
        match op {
            Op::AddService { key, spec, .. } => {
                self.services
                    .entry(*key)
                    .or_insert_with(|| ObservedService {
                        spec: spec.clone(),
                        reals: FlatMap::new(),
                    })
                    .spec = spec.clone();
            }
            Op::EditService { key, to, .. } => {
                if let Some(s) = self.services.get_mut(key) {
                    s.spec = to.clone();
                }
            }
            Op::DelService { key, .. } => {
                self.services.remove(key);
            }
            Op::AddReal { service, key, spec } => {
                if let Some(s) = self.services.get_mut(service) {
                    s.reals.insert(*key, ObservedReal::new(*spec));
                }
            }
            Op::EditReal {
                service, key, to, ..
            } => {
                if let Some(r) = self.real_mut(service, key) {
                    r.spec = *to;
                }
            }
            Op::DrainReal { service, key, .. } => {
                if let Some(r) = self.real_mut(service, key) {
                    r.spec.weight = 0;
                }
            }
            Op::DelReal { service, key, .. } => {
                if let Some(s) = self.services.get_mut(service) {
                    s.reals.remove(key);
                }
            }
        }
    }

    fn real_mut(&mut self, service: &ServiceKey, key: &DestKey) -> Option<&mut ObservedReal> {
        self.services.get_mut(service)?.reals.get_mut(key)
    }

    /// Builds the observed state from a kernel dump.
    pub fn from_dump(dump: &[(Service, Vec<Dest>)]) -> Self {
        let services = dump
            .iter()
            .map(|(s, dests)| (s.key, ObservedService::from_kernel(s, dests)))
            .collect();
        Observed { services }
    }

    /// Builds the observed state from `ipvsadm -Sn` rules (no connections): for fixtures and
    /// for `import`.
    pub fn from_rules(rules: &[Rule]) -> Self {
        let services = rules
            .iter()
            .map(|(key, spec, dests)| {
                let reals = dests
                    .iter()
                    .map(|(k, s)| (*k, ObservedReal::new(normalize_dest(*s))))
                    .collect();
                let spec = normalize_service(spec.clone(), *key);
                (*key, ObservedService { spec, reals })
            })
            .collect();
        Observed { services }
    }

    /// The table as `ipvsadm -Sn` rules, for printing and round trips.
    pub fn to_rules(&self) -> Vec<Rule> {
        self.services
            .iter()
            .map(|(k, s)| {
                let dests = s.reals.iter().map(|(dk, r)| (*dk, r.spec)).collect();
                (*k, s.spec.clone(), dests)
            })
            .collect()
    }
}

impl Desired {
    /// The table this desired state describes, as `ipvsadm -Sn` rules.
    pub fn to_rules(&self) -> Vec<Rule> {
        self.services
            .iter()
            .map(|(k, s)| {
                let dests = s.reals.iter().map(|(dk, r)| (*dk, *r)).collect();
                (*k, s.spec.clone(), dests)
            })
            .collect()
    }
}

/// Drops what the kernel sets by itself or ignores, so that a service created from a spec reads
/// back equal to it: the "hashed" flag, and the timeout and netmask of a non-persistent service.
pub fn normalize_service(mut spec: ServiceSpec, key: ServiceKey) -> ServiceSpec {
    spec.flags = spec.flags.without_kernel_bits();
    if !spec.flags.contains(ServiceFlags::PERSISTENT) {
        spec.timeout = 0;
        spec.netmask = Netmask::host(key.family());
    }
    spec
}

/// Drops tunnel settings of a real that is not tunnelled: the kernel keeps but never uses them.
pub fn normalize_dest(mut spec: DestSpec) -> DestSpec {
    if spec.forward != ForwardMethod::Tunnel {
        spec.tunnel_type = TunnelType::default();
        spec.tunnel_port = 0;
        spec.tunnel_flags = 0;
    }
    spec
}

/// What lvsd manages, remembered between runs (the state file) because the kernel cannot tell
/// whose a service is: the services it created or was told about, the reals it put there, and
/// the drains in progress.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Owned {
    /// Managed services.
    pub services: BTreeMap<ServiceKey, OwnedService>,
    /// The table-wide settings lvsd set (timeouts, sync daemons). The planner of services
    /// leaves it as it is; [`crate::globals::plan_globals`] keeps it.
    pub globals: crate::globals::GlobalsOwned,
}

/// One managed service.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OwnedService {
    /// The reals the configuration put there.
    pub reals: FlatSet<DestKey>,
    /// Drain timeout in seconds, kept for when the service leaves the file.
    pub drain_timeout: u64,
    /// Reals being drained, with the time (Unix seconds) they are deleted at the latest.
    pub draining: BTreeMap<DestKey, u64>,
    /// Set when the whole service is being drained: its deletion deadline.
    pub service_deadline: Option<u64>,
}
