//! Operations: one change to the table, carrying why it exists, so that `plan`, the logs and the
//! executor's error reports all say the same thing.

use std::fmt;

use model::{DestKey, DestSpec, ForwardMethod, Request, ServiceFlags, ServiceKey, ServiceSpec};

/// Why a real server or service is deleted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DelReason {
    /// It left the configuration and had no active connections.
    NotInConfig,
    /// It was drained and its last connection (of any state) and persistence template are
    /// gone.
    Drained,
    /// It was drained and the drain timeout passed with connections still open.
    DrainTimeout,
    /// It is not in the configuration and `--exclusive` makes lvsd own the whole table.
    Exclusive,
}

impl fmt::Display for DelReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            DelReason::NotInConfig => "not in the config",
            DelReason::Drained => "drained: no connections left",
            DelReason::DrainTimeout => "drain timeout passed",
            DelReason::Exclusive => "not in the config (--exclusive)",
        })
    }
}

/// One change to the IPVS table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// Create a service.
    AddService {
        /// Identity.
        key: ServiceKey,
        /// Label from the config.
        name: Option<String>,
        /// Settings.
        spec: ServiceSpec,
    },
    /// Add a real server to a service.
    AddReal {
        /// The service.
        service: ServiceKey,
        /// The real server.
        key: DestKey,
        /// Settings.
        spec: DestSpec,
    },
    /// Change a service's settings in place (connections and counters survive).
    EditService {
        /// Identity.
        key: ServiceKey,
        /// Live settings.
        from: ServiceSpec,
        /// Wanted settings.
        to: ServiceSpec,
    },
    /// Change a real server's settings in place.
    EditReal {
        /// The service.
        service: ServiceKey,
        /// The real server.
        key: DestKey,
        /// Live settings.
        from: DestSpec,
        /// Wanted settings.
        to: DestSpec,
    },
    /// Set a leaving real server's weight to 0 so it takes no new connections while its
    /// established ones finish.
    DrainReal {
        /// The service.
        service: ServiceKey,
        /// The real server.
        key: DestKey,
        /// Live settings (the new ones are the same with weight 0).
        from: DestSpec,
        /// Active connections at planning time.
        active: u32,
        /// Unix time after which it is deleted anyway.
        deadline: u64,
    },
    /// Delete a real server.
    DelReal {
        /// The service.
        service: ServiceKey,
        /// The real server.
        key: DestKey,
        /// Why.
        why: DelReason,
    },
    /// Delete a service with its real servers.
    DelService {
        /// Identity.
        key: ServiceKey,
        /// Why.
        why: DelReason,
    },
}

impl Op {
    /// A short name of the operation, for metrics labels.
    pub fn kind(&self) -> &'static str {
        match self {
            Op::AddService { .. } => "add_service",
            Op::AddReal { .. } => "add_real",
            Op::EditService { .. } => "edit_service",
            Op::EditReal { .. } => "edit_real",
            Op::DrainReal { .. } => "drain_real",
            Op::DelReal { .. } => "del_real",
            Op::DelService { .. } => "del_service",
        }
    }

    /// Execution phase: services are created before their reals, edits come next, removals
    /// last, reals before their services.
    pub fn phase(&self) -> u8 {
        match self {
            Op::AddService { .. } => 0,
            Op::AddReal { .. } => 1,
            Op::EditService { .. } | Op::EditReal { .. } | Op::DrainReal { .. } => 2,
            Op::DelReal { .. } => 3,
            Op::DelService { .. } => 4,
        }
    }

    /// The service the operation concerns, for logs and error reports.
    pub fn service(&self) -> ServiceKey {
        match self {
            Op::AddService { key, .. }
            | Op::EditService { key, .. }
            | Op::DelService { key, .. } => *key,
            Op::AddReal { service, .. }
            | Op::EditReal { service, .. }
            | Op::DrainReal { service, .. }
            | Op::DelReal { service, .. } => *service,
        }
    }

    /// The kernel request that carries the operation out.
    pub fn to_request(&self) -> Request {
        match self {
            Op::AddService { key, spec, .. } => Request::NewService(*key, spec.clone()),
            Op::EditService { key, to, .. } => Request::SetService(*key, to.clone()),
            Op::DelService { key, .. } => Request::DelService(*key),
            Op::AddReal { service, key, spec } => Request::NewDest(*service, *key, *spec),
            Op::EditReal {
                service, key, to, ..
            } => Request::SetDest(*service, *key, *to),
            Op::DrainReal {
                service, key, from, ..
            } => {
                let mut spec = *from;
                spec.weight = 0;
                Request::SetDest(*service, *key, spec)
            }
            Op::DelReal { service, key, .. } => Request::DelDest(*service, *key),
        }
    }

    /// `+`, `~` or `-`, as `plan` prints it.
    pub fn sign(&self) -> char {
        match self.phase() {
            0 | 1 => '+',
            2 => '~',
            _ => '-',
        }
    }
}

/// The operator's word for a forwarding method (`dr`, `nat`, `tunnel`).
pub fn forward_name(f: ForwardMethod) -> String {
    match f {
        ForwardMethod::DirectRoute => "dr".into(),
        ForwardMethod::Masq => "nat".into(),
        ForwardMethod::Tunnel => "tunnel".into(),
        ForwardMethod::Local => "local".into(),
        ForwardMethod::Bypass => "bypass".into(),
        ForwardMethod::Other(n) => format!("forward-{n}"),
    }
}

/// The config's words for a service's flags.
pub fn flag_names(flags: ServiceFlags, scheduler: &str) -> Vec<String> {
    let mut out = vec![];
    let prefix = if scheduler == "mh" { "mh" } else { "sh" };
    if flags.contains(ServiceFlags::SCHED1) {
        out.push(format!("{prefix}-fallback"));
    }
    if flags.contains(ServiceFlags::SCHED2) {
        out.push(format!("{prefix}-port"));
    }
    if flags.contains(ServiceFlags::SCHED3) {
        out.push("flag-3".into());
    }
    if flags.contains(ServiceFlags::ONE_PACKET) {
        out.push("one-packet".into());
    }
    out
}

fn service_summary(s: &ServiceSpec) -> String {
    let mut out = format!("scheduler {}", s.scheduler);
    if s.flags.contains(ServiceFlags::PERSISTENT) {
        out += &format!(", persistence {}s/{}", s.timeout, s.netmask);
    }
    if let Some(pe) = &s.pe_name {
        out += &format!(", engine {pe}");
    }
    let flags = flag_names(s.flags, &s.scheduler);
    if !flags.is_empty() {
        out += &format!(", flags {}", flags.join(","));
    }
    out
}

fn real_summary(d: &DestSpec) -> String {
    let mut out = format!("{} weight {}", forward_name(d.forward), d.weight);
    if d.upper_threshold != 0 {
        out += &format!(" max_connections {}", d.upper_threshold);
    }
    if d.lower_threshold != 0 {
        out += &format!(" min_connections {}", d.lower_threshold);
    }
    out
}

fn persistence_summary(s: &ServiceSpec) -> String {
    if s.flags.contains(ServiceFlags::PERSISTENT) {
        format!("{}s/{}", s.timeout, s.netmask)
    } else {
        "none".into()
    }
}

fn service_changes(a: &ServiceSpec, b: &ServiceSpec) -> String {
    let mut parts = vec![];
    if a.scheduler != b.scheduler {
        parts.push(format!("scheduler {} → {}", a.scheduler, b.scheduler));
    }
    let (pa, pb) = (persistence_summary(a), persistence_summary(b));
    if pa != pb {
        parts.push(format!("persistence {pa} → {pb}"));
    }
    if a.pe_name != b.pe_name {
        let name = |p: &Option<String>| p.clone().unwrap_or_else(|| "none".into());
        parts.push(format!(
            "engine {} → {}",
            name(&a.pe_name),
            name(&b.pe_name)
        ));
    }
    let (fa, fb) = (
        flag_names(a.flags, &a.scheduler),
        flag_names(b.flags, &b.scheduler),
    );
    if fa != fb {
        let show = |f: &[String]| {
            if f.is_empty() {
                "none".to_owned()
            } else {
                f.join(",")
            }
        };
        parts.push(format!("flags {} → {}", show(&fa), show(&fb)));
    }
    parts.join(", ")
}

fn real_changes(a: &DestSpec, b: &DestSpec) -> String {
    let mut parts = vec![];
    if a.forward != b.forward {
        parts.push(format!(
            "forward {} → {}",
            forward_name(a.forward),
            forward_name(b.forward)
        ));
    }
    if a.weight != b.weight {
        parts.push(format!("weight {} → {}", a.weight, b.weight));
    }
    if a.upper_threshold != b.upper_threshold {
        parts.push(format!(
            "max_connections {} → {}",
            a.upper_threshold, b.upper_threshold
        ));
    }
    if a.lower_threshold != b.lower_threshold {
        parts.push(format!(
            "min_connections {} → {}",
            a.lower_threshold, b.lower_threshold
        ));
    }
    if (a.tunnel_type, a.tunnel_port, a.tunnel_flags)
        != (b.tunnel_type, b.tunnel_port, b.tunnel_flags)
    {
        parts.push("tunnel settings".into());
    }
    parts.join(", ")
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sign = self.sign();
        match self {
            Op::AddService { key, name, spec } => {
                write!(f, "{sign} service {key}")?;
                if let Some(n) = name {
                    write!(f, " ({n})")?;
                }
                write!(f, ": {}", service_summary(spec))
            }
            Op::AddReal { service, key, spec } => {
                write!(f, "{sign} real {key} of {service}: {}", real_summary(spec))
            }
            Op::EditService { key, from, to } => {
                write!(f, "{sign} service {key}: {}", service_changes(from, to))
            }
            Op::EditReal {
                service,
                key,
                from,
                to,
            } => {
                write!(
                    f,
                    "{sign} real {key} of {service}: {}",
                    real_changes(from, to)
                )
            }
            Op::DrainReal {
                service,
                key,
                from,
                active,
                ..
            } => write!(
                f,
                "{sign} real {key} of {service}: drain, weight {} → 0 ({active} active connections)",
                from.weight
            ),
            Op::DelReal { service, key, why } => {
                write!(f, "{sign} real {key} of {service} ({why})")
            }
            Op::DelService { key, why } => write!(f, "{sign} service {key} ({why})"),
        }
    }
}
