//! From the file as written to `Desired`: every rule an operator can break is checked here,
//! before anything touches the kernel, and each problem names its line and column.

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, Ipv4Addr};

use ipvs::{
    DestKey, DestSpec, Family, ForwardMethod, Netmask, Protocol, ServiceFlags, ServiceKey,
    ServiceSpec,
};
use plan::health::{OnFailure, ServiceHealth};
use plan::host::{HostSpec, Role};
use plan::{DEFAULT_DRAIN_TIMEOUT, Desired, DesiredService, normalize_dest, normalize_service};

use crate::error::Problem;
use crate::raw::{Loc, Persistence, RawFile, RawReal, RawService, Scalar, Spanned};

/// Schedulers IPVS has (the kernel loads `ip_vs_<name>` on first use).
pub const SCHEDULERS: &[&str] = &[
    "rr", "wrr", "lc", "wlc", "lblc", "lblcr", "dh", "sh", "sed", "nq", "fo", "ovf", "mh", "twos",
];

/// Words people write for a forwarding method, mapped to the method's name in this config.
const FORWARD_WORDS: &[(&str, &str)] = &[
    ("dr", "dr"),
    ("route", "dr"),
    ("gate", "dr"),
    ("direct", "dr"),
    ("nat", "nat"),
    ("masq", "nat"),
    ("masquerade", "nat"),
    ("tun", "tunnel"),
    ("tunnel", "tunnel"),
    ("ipip", "tunnel"),
];

pub(crate) struct Checker {
    pub problems: Vec<Problem>,
}

/// Services validated so far, in file order.
#[derive(Debug, Default)]
pub(crate) struct Collected {
    /// The valid ones.
    pub desired: Desired,
    /// Each entry's identity in file order; `None` for an entry with a problem.
    pub keys: Vec<Option<ServiceKey>>,
    /// Each entry's line.
    pub lines: Vec<u64>,
    /// Problems found.
    pub problems: Vec<Problem>,
    /// Where each identity was first defined (line).
    first_at: HashMap<ServiceKey, u64>,
    /// Where each name was first used (line).
    names: HashMap<String, u64>,
}

pub(crate) fn at(l: &Loc) -> (u64, u64) {
    (l.line, l.column)
}

/// Parses a duration: `300`, `300s`, `5m`, `1h`, `1m30s`.
pub fn parse_duration(s: &str) -> Option<u64> {
    let s = s.trim();
    if let Ok(n) = s.parse::<u64>() {
        return Some(n);
    }
    let mut total: u64 = 0;
    let mut num = String::new();
    let mut any = false;
    for c in s.chars() {
        if c.is_ascii_digit() {
            num.push(c);
            continue;
        }
        let unit = match c {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            'd' => 86400,
            _ => return None,
        };
        let n: u64 = num.parse().ok()?;
        total = total.checked_add(n.checked_mul(unit)?)?;
        num.clear();
        any = true;
    }
    (any && num.is_empty()).then_some(total)
}

/// Edit distance, for "did you mean".
pub(crate) fn distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(ca != *cb);
            cur.push(sub.min(prev[j + 1] + 1).min(cur[j] + 1));
        }
        prev = cur;
    }
    prev[b.len()]
}

/// The closest candidate, when it is close enough to be what was meant.
pub(crate) fn suggest<'a>(word: &str, candidates: &[&'a str]) -> Option<&'a str> {
    candidates
        .iter()
        .map(|c| (distance(word, c), *c))
        .filter(|(d, c)| *d <= 2.max(c.len() / 3) && *d < c.len())
        .min()
        .map(|(_, c)| c)
}

/// Splits `addr`, `addr:port`, `[v6]:port` or a bare IPv6 address.
fn parse_socket(s: &str) -> Result<(IpAddr, Option<u16>), String> {
    let s = s.trim();
    let port = |p: &str| -> Result<u16, String> {
        match p.parse::<u64>() {
            Ok(n) if n <= 65535 => Ok(n as u16),
            Ok(n) => Err(format!("port {n} is out of range (0-65535)")),
            Err(_) => Err(format!("`{p}` is not a port number")),
        }
    };
    if let Some(rest) = s.strip_prefix('[') {
        let Some((a, p)) = rest.split_once(']') else {
            return Err(format!("`{s}`: missing `]` after the IPv6 address"));
        };
        let addr: IpAddr = a
            .parse()
            .map_err(|_| format!("`{a}` is not an IPv6 address"))?;
        return match p.strip_prefix(':') {
            Some(p) => Ok((addr, Some(port(p)?))),
            None if p.is_empty() => Ok((addr, None)),
            None => Err(format!("`{s}`: expected `:port` after `]`")),
        };
    }
    if let Ok(addr) = s.parse::<IpAddr>() {
        return Ok((addr, None));
    }
    match s.rsplit_once(':') {
        Some((a, p)) if !a.contains(':') => {
            let addr: Ipv4Addr = a
                .parse()
                .map_err(|_| format!("`{a}` is not an IP address"))?;
            Ok((IpAddr::V4(addr), Some(port(p)?)))
        }
        Some((a, _)) if a.parse::<IpAddr>().is_ok() => Err(format!(
            "`{s}`: write an IPv6 address with a port in brackets, e.g. `[{a}]:80`"
        )),
        _ => Err(format!(
            "`{s}` is not an IP address (with an optional :port)"
        )),
    }
}

impl Collected {
    /// Adds the services of the entries that follow this part of the file; false (and
    /// nothing to rely on) when an identity or a name appears in both.
    pub(crate) fn append(&mut self, next: Collected) -> bool {
        if next.first_at.keys().any(|k| self.first_at.contains_key(k))
            || next.names.keys().any(|n| self.names.contains_key(n))
        {
            return false;
        }
        self.desired.services.extend(next.desired.services);
        self.keys.extend(next.keys);
        self.lines.extend(next.lines);
        self.problems.extend(next.problems);
        self.first_at.extend(next.first_at);
        self.names.extend(next.names);
        true
    }
}

impl Checker {
    pub(crate) fn err(&mut self, (line, col): (u64, u64), message: impl Into<String>) {
        self.problems.push(Problem {
            line,
            col,
            message: message.into(),
        });
    }

    fn duration(&mut self, v: &Spanned<Scalar>, what: &str) -> Option<u64> {
        let r = match &v.value {
            Scalar::Int(n) => u64::try_from(*n).ok(),
            Scalar::Str(s) => parse_duration(s),
        };
        if r.is_none() {
            let shown = match &v.value {
                Scalar::Int(n) => n.to_string(),
                Scalar::Str(s) => s.clone(),
            };
            self.err(
                at(&v.referenced),
                format!("{what}: `{shown}` is not a duration; write e.g. 300s, 5m or 1h"),
            );
        }
        r
    }

    fn forward(&mut self, v: &Spanned<String>) -> Option<ForwardMethod> {
        match v.value.as_str() {
            "dr" => Some(ForwardMethod::DirectRoute),
            "nat" => Some(ForwardMethod::Masq),
            "tunnel" => Some(ForwardMethod::Tunnel),
            other => {
                let hint = FORWARD_WORDS
                    .iter()
                    .find(|(w, _)| w.eq_ignore_ascii_case(other))
                    .map(|(_, m)| format!("; did you mean `{m}`?"))
                    .unwrap_or_default();
                self.err(
                    at(&v.referenced),
                    format!("unknown forwarding method `{other}`: use dr, nat or tunnel{hint}"),
                );
                None
            }
        }
    }

    fn scheduler(&mut self, v: &Spanned<String>) -> Option<String> {
        let s = v.value.as_str();
        if SCHEDULERS.contains(&s) {
            return Some(s.to_owned());
        }
        let msg = if let Some((_, m)) = FORWARD_WORDS
            .iter()
            .find(|(w, _)| w.eq_ignore_ascii_case(s))
        {
            format!(
                "`{s}` is a forwarding method, not a scheduler; write `forward: {m}` and pick a scheduler such as wlc"
            )
        } else {
            let hint = suggest(s, SCHEDULERS)
                .map(|c| format!("did you mean `{c}`? "))
                .unwrap_or_default();
            format!(
                "unknown scheduler `{s}`; {hint}valid schedulers: {}",
                SCHEDULERS.join(", ")
            )
        };
        self.err(at(&v.referenced), msg);
        None
    }

    pub(crate) fn file(&mut self, raw: RawFile, role: Option<Role>) -> (HostSpec, Collected) {
        let host = self.host(raw.host, role);
        let mut services = raw.services.map(|s| s.0).unwrap_or_default();
        self.problems.append(&mut services.problems);
        (host, services)
    }

    /// Validates one entry of `services` into `out`, with the checks that span entries
    /// (unique identities and names).
    pub(crate) fn collect(&mut self, svc: Spanned<RawService>, out: &mut Collected) {
        let loc = at(&svc.referenced);
        out.lines.push(loc.0);
        let Some((key, ds, key_at)) = self.service(svc.value, loc) else {
            out.keys.push(None);
            return;
        };
        if let Some(name) = &ds.name {
            if let Some(line) = out.names.insert(name.clone(), loc.0) {
                self.err(loc, format!("duplicate service name `{name}` (first used on line {line}); names must be unique"));
            }
        }
        if let Some(line) = out.first_at.get(&key) {
            self.err(
                key_at,
                format!(
                    "duplicate service {key} (first defined on line {line}); merge the two entries"
                ),
            );
            out.keys.push(None);
            return;
        }
        out.first_at.insert(key, key_at.0);
        out.keys.push(Some(key));
        out.desired.services.insert(key, ds);
    }

    fn service(
        &mut self,
        s: RawService,
        loc: (u64, u64),
    ) -> Option<(ServiceKey, DesiredService, (u64, u64))> {
        let before = self.problems.len();
        let protocol = match &s.protocol {
            None => Protocol::Tcp,
            Some(p) => match p.value.as_str() {
                "tcp" => Protocol::Tcp,
                "udp" => Protocol::Udp,
                "sctp" => Protocol::Sctp,
                other => {
                    self.err(
                        at(&p.referenced),
                        format!("unknown protocol `{other}`: use tcp, udp or sctp"),
                    );
                    Protocol::Tcp
                }
            },
        };
        let persistent_given = s.persistence.is_some();
        let key = match (&s.address, &s.fwmark) {
            (Some(a), None) => {
                if let Some(f) = &s.family {
                    self.err(at(&f.referenced), "`family` goes with `fwmark`; a service address already says its family, remove it");
                }
                match parse_socket(&a.value) {
                    Ok((addr, Some(port))) => {
                        if port == 0 && !persistent_given {
                            self.err(at(&a.referenced), "port 0 (all ports) needs `persistence`; give a port such as :80 or add persistence");
                        }
                        Some(ServiceKey::Addr {
                            protocol,
                            addr,
                            port,
                        })
                    }
                    Ok((addr, None)) => {
                        let shown = match addr {
                            IpAddr::V4(_) => format!("{addr}:80"),
                            IpAddr::V6(_) => format!("[{addr}]:80"),
                        };
                        self.err(
                            at(&a.referenced),
                            format!(
                                "the service address `{}` has no port; write it as `{shown}`",
                                a.value
                            ),
                        );
                        None
                    }
                    Err(e) => {
                        self.err(at(&a.referenced), e);
                        None
                    }
                }
            }
            (None, Some(m)) => {
                if let Some(p) = &s.protocol {
                    self.err(
                        at(&p.referenced),
                        "a fwmark service matches packets of every protocol; remove `protocol`",
                    );
                }
                let family = match &s.family {
                    None => Family::Inet,
                    Some(f) => match f.value.as_str() {
                        "ipv4" => Family::Inet,
                        "ipv6" => Family::Inet6,
                        other => {
                            self.err(
                                at(&f.referenced),
                                format!("unknown family `{other}`: use ipv4 or ipv6"),
                            );
                            Family::Inet
                        }
                    },
                };
                match u32::try_from(m.value) {
                    Ok(mark) if mark > 0 => Some(ServiceKey::Fwmark { mark, family }),
                    _ => {
                        self.err(
                            at(&m.referenced),
                            format!("fwmark {} is out of range (1-4294967295)", m.value),
                        );
                        None
                    }
                }
            }
            (Some(_), Some(m)) => {
                self.err(
                    at(&m.referenced),
                    "give either `address` or `fwmark`, not both",
                );
                None
            }
            (None, None) => {
                self.err(loc, "a service needs `address: VIP:port` (or `fwmark: N`)");
                None
            }
        };
        let key_at = s
            .address
            .as_ref()
            .map(|a| at(&a.referenced))
            .or(s.fwmark.as_ref().map(|m| at(&m.referenced)))
            .unwrap_or(loc);
        let family = key.map_or(Family::Inet, |k| k.family());

        let scheduler = match &s.scheduler {
            None => Some("wlc".to_owned()),
            Some(v) => self.scheduler(v),
        };
        let scheduler = scheduler.unwrap_or_default();
        let mut spec = ServiceSpec::new(scheduler.clone(), family);

        if let Some(p) = &s.persistence {
            spec.flags = spec.flags | ServiceFlags::PERSISTENT;
            let (timeout, netmask, engine) = match &p.value {
                Persistence::Short(v) => {
                    let v = Spanned::new(v.clone(), p.referenced);
                    (self.duration(&v, "persistence"), None, None)
                }
                Persistence::Full(m) => {
                    let t = match &m.timeout {
                        Some(t) => self.duration(t, "persistence timeout"),
                        None => Some(300),
                    };
                    (t, m.netmask.as_ref(), m.engine.as_ref())
                }
            };
            match timeout {
                Some(0) => self.err(at(&p.referenced), "a persistence timeout of 0 turns persistence off; remove `persistence` instead"),
                Some(t) if t > u64::from(u32::MAX) => self.err(at(&p.referenced), "the persistence timeout is too long"),
                Some(t) => spec.timeout = t as u32,
                None => {}
            }
            if let Some(n) = netmask {
                if let Some(mask) = self.netmask(n, family) {
                    spec.netmask = mask;
                }
            }
            if let Some(e) = engine {
                if e.value == "sip" {
                    spec.pe_name = Some(e.value.clone());
                } else {
                    self.err(
                        at(&e.referenced),
                        format!(
                            "unknown persistence engine `{}`: the kernel has `sip`",
                            e.value
                        ),
                    );
                }
            }
        }

        for f in s.flags.iter().flatten() {
            let (bit, needs) = match f.value.as_str() {
                "sh-fallback" => (ServiceFlags::SH_FALLBACK, Some("sh")),
                "sh-port" => (ServiceFlags::SH_PORT, Some("sh")),
                "mh-fallback" => (ServiceFlags::MH_FALLBACK, Some("mh")),
                "mh-port" => (ServiceFlags::MH_PORT, Some("mh")),
                "one-packet" => (ServiceFlags::ONE_PACKET, None),
                other => {
                    const FLAGS: &[&str] = &[
                        "sh-fallback",
                        "sh-port",
                        "mh-fallback",
                        "mh-port",
                        "one-packet",
                    ];
                    let hint = suggest(other, FLAGS)
                        .map(|c| format!("did you mean `{c}`? "))
                        .unwrap_or_default();
                    self.err(
                        at(&f.referenced),
                        format!(
                            "unknown flag `{other}`; {hint}valid flags: {}",
                            FLAGS.join(", ")
                        ),
                    );
                    continue;
                }
            };
            match needs {
                Some(sched) if scheduler != sched && !scheduler.is_empty() => self.err(
                    at(&f.referenced),
                    format!("flag `{}` is used only by the `{sched}` scheduler, and this service uses `{scheduler}`", f.value),
                ),
                None if protocol != Protocol::Udp && s.fwmark.is_none() => self.err(
                    at(&f.referenced),
                    "`one-packet` scheduling is for UDP services (and fwmark services carrying UDP)",
                ),
                _ => spec.flags = spec.flags | bit,
            }
        }

        let drain_timeout = match &s.drain_timeout {
            None => DEFAULT_DRAIN_TIMEOUT,
            Some(d) => self
                .duration(d, "drain_timeout")
                .unwrap_or(DEFAULT_DRAIN_TIMEOUT),
        };
        let forward = match &s.forward {
            None => ForwardMethod::DirectRoute,
            Some(f) => self.forward(f).unwrap_or(ForwardMethod::DirectRoute),
        };

        let svc_check = s
            .check
            .as_ref()
            .map(|c| (c.value.clone(), at(&c.referenced)));
        if let Some((c, l)) = &svc_check {
            let _ = self.check(c, *l);
        }
        let mut checks = BTreeMap::new();
        let mut reals = BTreeMap::new();
        let mut real_lines: HashMap<DestKey, u64> = HashMap::new();
        for r in s.reals {
            let rloc = at(&r.referenced);
            let rcheck = r
                .value
                .check
                .as_ref()
                .map(|c| (c.value.clone(), at(&c.referenced)));
            if let Some((k, spec)) = self.real(r.value, rloc, key, forward) {
                if let Some(line) = real_lines.insert(k, rloc.0) {
                    self.err(
                        rloc,
                        format!("duplicate real server {k} (first listed on line {line})"),
                    );
                }
                reals.insert(k, spec);
                let merged = match (&svc_check, rcheck) {
                    (None, None) => None,
                    (Some((c, l)), None) => Some((c.clone(), *l)),
                    (None, Some(own)) => Some(own),
                    (Some((c, _)), Some((o, l))) => Some((c.overridden_by(&o), l)),
                };
                if let Some((c, l)) = merged {
                    if let Ok(Some(check)) = self.check(&c, l) {
                        checks.insert(k, check);
                    }
                }
            }
        }
        let on_failure = s
            .on_failure
            .as_ref()
            .map_or(OnFailure::Drain, |v| self.on_failure(v));
        let quorum = s.quorum.as_ref().and_then(|q| self.quorum(q, reals.len()));
        let fallback = match (&s.fallback, key) {
            (Some(f), Some(k)) => self.fallback(f, k, forward, &reals),
            _ => None,
        };
        let health = ServiceHealth {
            checks,
            on_failure,
            fallback,
            quorum,
        };
        let name = s.name.map(|n| n.value);
        let key = key?;
        if self.problems.len() > before {
            return None;
        }
        let spec = normalize_service(spec, key);
        Some((
            key,
            DesiredService {
                name,
                spec,
                drain_timeout,
                reals,
                health,
            },
            key_at,
        ))
    }

    fn netmask(&mut self, n: &Spanned<Scalar>, family: Family) -> Option<Netmask> {
        let loc = at(&n.referenced);
        match family {
            Family::Inet => {
                let parsed = match &n.value {
                    Scalar::Str(s) => s.parse::<Ipv4Addr>().ok(),
                    Scalar::Int(_) => None,
                };
                match parsed {
                    Some(m)
                        if u32::from(m).leading_ones() == u32::from(m).count_ones()
                            && u32::from(m) != 0 =>
                    {
                        Some(Netmask::V4(m))
                    }
                    _ => {
                        self.err(
                            loc,
                            "an IPv4 persistence netmask is a dotted mask such as 255.255.255.0",
                        );
                        None
                    }
                }
            }
            Family::Inet6 => {
                let parsed = match &n.value {
                    Scalar::Int(i) => u32::try_from(*i).ok(),
                    Scalar::Str(s) => s.trim_start_matches('/').parse().ok(),
                };
                match parsed {
                    Some(p) if (1..=128).contains(&p) => Some(Netmask::V6(p)),
                    _ => {
                        self.err(
                            loc,
                            "an IPv6 persistence netmask is a prefix length, 1 to 128",
                        );
                        None
                    }
                }
            }
        }
    }

    fn real(
        &mut self,
        r: RawReal,
        loc: (u64, u64),
        service: Option<ServiceKey>,
        default_forward: ForwardMethod,
    ) -> Option<(DestKey, DestSpec)> {
        let Some(a) = &r.address else {
            self.err(loc, "a real server needs `address`");
            return None;
        };
        let forward = match &r.forward {
            None => default_forward,
            Some(f) => self.forward(f)?,
        };
        let key = self.dest(a, service?, forward)?;
        let mut spec = DestSpec::new(forward, 1);
        if let Some(w) = &r.weight {
            match u32::try_from(w.value) {
                Ok(v) if v <= i32::MAX as u32 => spec.weight = v,
                _ => self.err(
                    at(&w.referenced),
                    format!(
                        "weight {} is out of range: 0 (drained) to {}",
                        w.value,
                        i32::MAX
                    ),
                ),
            }
        }
        for (v, slot, what) in [
            (
                &r.max_connections,
                &mut spec.upper_threshold,
                "max_connections",
            ),
            (
                &r.min_connections,
                &mut spec.lower_threshold,
                "min_connections",
            ),
        ] {
            if let Some(v) = v {
                match u32::try_from(v.value) {
                    Ok(n) => *slot = n,
                    Err(_) => self.err(
                        at(&v.referenced),
                        format!(
                            "{what} {} is out of range: 0 (no limit) to {}",
                            v.value,
                            u32::MAX
                        ),
                    ),
                }
            }
        }
        Some((key, normalize_dest(spec)))
    }

    /// A real server's (or fallback's) address and port: the port defaults to the service's,
    /// and only NAT can map it; only tunnel forwarding can cross address families.
    pub(crate) fn dest(
        &mut self,
        a: &Spanned<String>,
        service: ServiceKey,
        forward: ForwardMethod,
    ) -> Option<DestKey> {
        let (addr, port) = match parse_socket(&a.value) {
            Ok(v) => v,
            Err(e) => {
                self.err(at(&a.referenced), e);
                return None;
            }
        };
        let (svc_port, svc_family) = match service {
            ServiceKey::Addr { port, .. } => (Some(port), service.family()),
            ServiceKey::Fwmark { family, .. } => (None, family),
        };
        let port = port.or(svc_port).unwrap_or(0);
        if Family::of(&addr) != svc_family && forward != ForwardMethod::Tunnel {
            self.err(
                at(&a.referenced),
                format!("real server {addr} is not in the service's address family; only `forward: tunnel` can cross families"),
            );
        }
        if let Some(sp) = svc_port {
            if sp != 0 && port != sp && forward != ForwardMethod::Masq {
                self.err(
                    at(&a.referenced),
                    format!(
                        "with `forward: {}` packets reach the real server unchanged, so its port must be the service's ({sp}); use `forward: nat` to map to port {port}",
                        plan::forward_name(forward)
                    ),
                );
            }
        }
        Some(DestKey { addr, port })
    }
}
