//! `ha` and `ipvs`: how a director shares its VIPs with other directors, the kernel's
//! connection-sync daemon, and the table-wide IPVS settings (timeouts, `net.ipv4.vs.*`),
//! checked with their `file:line:col` like everything else. What the kernel would refuse is
//! refused here, with the reason: a sync daemon beside a real server of the other address
//! family, a sysctl value out of its range, an `mh` service that health could reorder while
//! directors must agree on its order.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::PathBuf;

use plan::globals::{GlobalsDesired, SyncSpec, TimeoutsSpec};
use plan::host::{Announce, HaMode, HostSpec, Role};

use crate::error::printable;
use crate::raw::{Field, RawHa, RawIpvs, RawSync, RawTimeouts, Spanned};
use crate::validate::{Checker, Later, at, suggest};

/// The table-wide settings and the health file, as the daemon needs them.
#[derive(Debug, Default)]
pub(crate) struct Ha {
    /// Timeouts and the sync daemons.
    pub globals: GlobalsDesired,
    /// `ha.health_file`.
    pub health_file: Option<PathBuf>,
    /// `ha.mode: active-active` (checked on every service, included files' too).
    pub active_active: bool,
}

/// A real of the other family beside `ha.sync`.
pub(crate) fn cross_family_message(key: model::ServiceKey, real: model::DestKey) -> String {
    format!(
        "real server {real} of {key} is of the other address family: the kernel refuses connection sync (ha.sync) while such a real is in the table; give the service reals of its own family, or run without ha.sync"
    )
}

/// `mh` with `on_failure: remove` on active-active directors.
pub(crate) fn mh_remove_message(key: model::ServiceKey) -> String {
    format!(
        "service {key}: `on_failure: remove` with the mh scheduler would reorder its real servers (mh fills its lookup table in the order they were added), and active-active directors must agree on that order; use `on_failure: drain`"
    )
}

const MODES: &[&str] = &["active-backup", "active-active"];

/// What a `net.ipv4.vs.*` sysctl takes.
#[derive(Debug, Clone, Copy)]
enum Kind {
    /// 0 or 1.
    Bool,
    /// A whole number in this range.
    Range(i128, i128),
    /// A power of two up to this.
    PowerOfTwo(i128),
    /// Two whole numbers: `N M` with N below M, or M of 0 (`sync_threshold`).
    Threshold,
    /// A list of CPUs (`est_cpulist`, newer kernels).
    CpuList,
}

/// The IPVS sysctls (`Documentation/networking/ipvs-sysctl.rst`; the `est_*` ones need a 6.2
/// kernel or newer, which says so when it lacks them).
const SYSCTLS: &[(&str, Kind)] = &[
    ("am_droprate", Kind::Range(0, i32::MAX as i128)),
    ("amemthresh", Kind::Range(0, i32::MAX as i128)),
    ("backup_only", Kind::Bool),
    ("cache_bypass", Kind::Bool),
    ("conn_reuse_mode", Kind::Range(0, 3)),
    ("conntrack", Kind::Bool),
    ("drop_entry", Kind::Range(0, 3)),
    ("drop_packet", Kind::Range(0, 3)),
    ("est_cpulist", Kind::CpuList),
    ("est_nice", Kind::Range(-20, 19)),
    ("expire_nodest_conn", Kind::Bool),
    ("expire_quiescent_template", Kind::Bool),
    ("ignore_tunneled", Kind::Bool),
    ("lblc_expiration", Kind::Range(0, i32::MAX as i128)),
    ("lblcr_expiration", Kind::Range(0, i32::MAX as i128)),
    ("nat_icmp_send", Kind::Bool),
    ("pmtu_disc", Kind::Bool),
    ("run_estimation", Kind::Bool),
    ("schedule_icmp", Kind::Bool),
    ("secure_tcp", Kind::Range(0, 3)),
    ("sloppy_sctp", Kind::Bool),
    ("sloppy_tcp", Kind::Bool),
    ("snat_reroute", Kind::Bool),
    ("sync_persist_mode", Kind::Bool),
    ("sync_ports", Kind::PowerOfTwo(64)),
    ("sync_qlen_max", Kind::Range(1, i32::MAX as i128)),
    ("sync_refresh_period", Kind::Range(0, i32::MAX as i128)),
    ("sync_retries", Kind::Range(0, 3)),
    ("sync_sock_size", Kind::Range(0, i32::MAX as i128)),
    ("sync_threshold", Kind::Threshold),
    ("sync_version", Kind::Bool),
];

/// The longest timeout the kernel takes, in seconds: it counts them in jiffies in an `int`
/// (`INT_MAX / HZ`, with HZ up to 1000).
const MAX_TIMEOUT: u64 = 2_147_483;

impl Checker {
    fn ha_interface(&mut self, v: &Spanned<String>, key: &str) -> Option<String> {
        match crate::host::bad_interface(&v.value) {
            Some(why) => {
                self.err(at(&v.referenced), format!("{key}: {why}"));
                None
            }
            None => Some(v.value.clone()),
        }
    }

    fn small(&mut self, v: &Field<String>, key: &str, lo: i128, hi: i128) -> Option<i128> {
        let v = self.given(v, key)?;
        let n = self.number(v, key, &format!("a whole number from {lo} to {hi}"))?;
        if (lo..=hi).contains(&n) {
            Some(n)
        } else {
            self.err(
                at(&v.referenced),
                format!("{key} {n} is out of range: {lo} to {hi}"),
            );
            None
        }
    }

    fn sync(&mut self, raw: &Spanned<RawSync>) -> Option<SyncSpec> {
        let s = &raw.value;
        let before = self.problems.total();
        let interface = match self.given(&s.interface, "ha.sync.interface") {
            Some(i) => self.ha_interface(i, "ha.sync.interface"),
            None => {
                self.err(
                    at(&raw.referenced),
                    "ha.sync needs `interface`: the interface the sync multicast goes over (the link between the directors)",
                );
                None
            }
        };
        let id = if s.id.is_none() {
            self.err(
                at(&raw.referenced),
                "ha.sync needs `id` (0 to 255): the same number on every director of the pair, so that each takes only its partner's connections",
            );
            None
        } else {
            self.small(&s.id, "ha.sync.id", 0, 255)
        };
        let group = match self.given(&s.group, "ha.sync.group") {
            None => None,
            Some(g) => match g.value.parse::<IpAddr>() {
                Ok(a) if a.is_multicast() => Some(a),
                Ok(a) => {
                    self.err(
                        at(&g.referenced),
                        format!("ha.sync.group `{a}` is not a multicast address (224.0.0.0/4, ff00::/8); the kernel's default is 224.0.0.81"),
                    );
                    None
                }
                Err(_) => {
                    self.err(
                        at(&g.referenced),
                        format!(
                            "ha.sync.group `{}` is not an IP address; give a multicast group such as 224.0.0.81",
                            printable(&g.value)
                        ),
                    );
                    None
                }
            },
        };
        let port = self.small(&s.port, "ha.sync.port", 1, 65535);
        let ttl = self.small(&s.ttl, "ha.sync.ttl", 1, 255);
        // The largest UDP payload over IPv4 (65535 less 28 bytes of headers); the kernel
        // raises a backup's below 1024 to 1024.
        let max_len = self.small(&s.max_len, "ha.sync.max_len", 1, 65507);
        if self.problems.total() > before {
            return None;
        }
        Some(SyncSpec {
            interface: interface?,
            id: u8::try_from(id?).ok()?,
            group,
            port: port.and_then(|p| u16::try_from(p).ok()),
            ttl: ttl.and_then(|t| u8::try_from(t).ok()),
            max_len: max_len.and_then(|m| u16::try_from(m).ok()),
        })
    }

    fn timeouts(&mut self, raw: &RawTimeouts) -> TimeoutsSpec {
        let mut one = |v: &Field<String>, key: &str| -> Option<u32> {
            let v = self.given(v, key)?;
            let d = self.duration(v, key, true)?;
            let secs = d.as_secs();
            if secs == 0 || secs > MAX_TIMEOUT {
                self.err(
                    at(&v.referenced),
                    format!("{key} must be from 1s to {MAX_TIMEOUT}s (the kernel counts it in an int of clock ticks)"),
                );
                return None;
            }
            u32::try_from(secs).ok()
        };
        TimeoutsSpec {
            tcp: one(&raw.tcp, "ipvs.timeouts.tcp"),
            tcp_fin: one(&raw.tcp_fin, "ipvs.timeouts.tcp_fin"),
            udp: one(&raw.udp, "ipvs.timeouts.udp"),
        }
    }

    /// One `ipvs.sysctl` entry: its value as lvsd writes it, when the name and value are good.
    fn ipvs_sysctl(&mut self, name: &str, v: &Spanned<String>) -> Option<String> {
        let loc = at(&v.referenced);
        let key = format!("ipvs.sysctl.{}", printable(name));
        let Some((_, kind)) = SYSCTLS.iter().find(|(n, _)| *n == name) else {
            let names: Vec<&str> = SYSCTLS.iter().map(|(n, _)| *n).collect();
            let hint = suggest(name, &names)
                .map(|c| format!("did you mean `{c}`? "))
                .unwrap_or_default();
            self.err(
                loc,
                format!(
                    "unknown IPVS sysctl `{}` (net.ipv4.vs.{0}); {hint}known: {}",
                    printable(name),
                    names.join(", ")
                ),
            );
            return None;
        };
        if v.null {
            self.err(
                loc,
                format!("`{key}` is empty (null); give it a value, or leave the key out"),
            );
            return None;
        }
        match *kind {
            Kind::Bool => {
                let n = self.number(v, &key, "0 or 1")?;
                if n == 0 || n == 1 {
                    return Some(n.to_string());
                }
                self.err(loc, format!("{key} is 0 or 1, not {n}"));
                None
            }
            Kind::Range(lo, hi) => {
                let n = self.number(v, &key, &format!("a whole number from {lo} to {hi}"))?;
                if (lo..=hi).contains(&n) {
                    return Some(n.to_string());
                }
                self.err(loc, format!("{key} {n} is out of range: {lo} to {hi}"));
                None
            }
            Kind::PowerOfTwo(hi) => {
                let n = self.number(v, &key, &format!("a power of two from 1 to {hi}"))?;
                if n >= 1 && n <= hi && n.count_ones() == 1 {
                    return Some(n.to_string());
                }
                self.err(
                    loc,
                    format!("{key} is a power of two from 1 to {hi} (the kernel refuses {n})"),
                );
                None
            }
            Kind::Threshold => {
                let words: Vec<&str> = v.value.split_whitespace().collect();
                let nums: Option<Vec<u32>> = words.iter().map(|w| w.parse().ok()).collect();
                match nums.as_deref() {
                    Some([n, m]) if *m == 0 || n < m => Some(format!("{n} {m}")),
                    Some([n, m]) => {
                        self.err(loc, format!("{key}: the first number ({n}) must be below the second ({m}), or the second 0 (sync once)"));
                        None
                    }
                    _ => {
                        self.err(
                            loc,
                            format!(
                                "{key} is two whole numbers in quotes, such as \"3 50\" (sync a connection after 3 packets, then every 50), not `{}`",
                                printable(&v.value)
                            ),
                        );
                        None
                    }
                }
            }
            Kind::CpuList => {
                let ok = !v.value.is_empty()
                    && v.value
                        .bytes()
                        .all(|b| b.is_ascii_digit() || b == b',' || b == b'-');
                if ok {
                    return Some(v.value.clone());
                }
                self.err(
                    loc,
                    format!(
                        "{key} is a list of CPUs such as 0-3,8, not `{}`",
                        printable(&v.value)
                    ),
                );
                None
            }
        }
    }

    fn ipvs(&mut self, raw: Field<RawIpvs>, host: &mut HostSpec) -> TimeoutsSpec {
        let Some(raw) = raw else {
            return TimeoutsSpec::default();
        };
        if raw.null {
            self.err(
                at(&raw.referenced),
                "`ipvs` is empty (null); give its `timeouts` or `sysctl`, or leave the key out",
            );
            return TimeoutsSpec::default();
        }
        let r = raw.value;
        let timeouts = match self.given(&r.timeouts, "ipvs.timeouts") {
            Some(t) => self.timeouts(&t.value),
            None => TimeoutsSpec::default(),
        };
        if let Some(map) = self.given(&r.sysctl, "ipvs.sysctl") {
            let mut out = BTreeMap::new();
            for (name, v) in &map.value {
                if let Some(value) = self.ipvs_sysctl(name, v) {
                    out.insert(name.clone(), value);
                }
            }
            host.ipvs_sysctls = out;
        }
        timeouts
    }

    /// Checks `ha` and `ipvs` into the host's spec and the table-wide settings. `later` holds
    /// what the services leave to be decided with these sections in view.
    pub(crate) fn ha(
        &mut self,
        raw: Field<RawHa>,
        ipvs: Field<RawIpvs>,
        host: &mut HostSpec,
        later: &mut Later,
    ) -> Ha {
        let mut out = Ha {
            globals: GlobalsDesired {
                timeouts: self.ipvs(ipvs, host),
                sync: None,
            },
            health_file: None,
            active_active: false,
        };
        let Some(raw) = raw else {
            return out;
        };
        let section = at(&raw.referenced);
        if raw.null {
            self.err(
                section,
                "`ha` is empty (null); give its `mode`, or leave the key out",
            );
            return out;
        }
        let h = raw.value;
        let mode = match self.given(&h.mode, "ha.mode") {
            None => {
                self.err(
                    section,
                    "ha needs `mode`: active-backup (another engine such as keepalived moves the VIPs) or active-active (lvsd announces them from a device a routing daemon exports)",
                );
                None
            }
            Some(m) if MODES.contains(&m.value.as_str()) => {
                Some((m.value.clone(), at(&m.referenced)))
            }
            Some(m) => {
                // What other tools call a VRRP pair.
                let passive = [
                    "active-passive",
                    "active-standby",
                    "failover",
                    "vrrp",
                    "backup",
                ]
                .iter()
                .any(|w| crate::validate::distance(&m.value, w) <= 2);
                let hint = if passive {
                    "did you mean `active-backup`? ".to_owned()
                } else {
                    suggest(&m.value, MODES)
                        .map(|c| format!("did you mean `{c}`? "))
                        .unwrap_or_default()
                };
                self.err(
                    at(&m.referenced),
                    format!(
                        "unknown ha.mode `{}`; {hint}valid modes: {}",
                        printable(&m.value),
                        MODES.join(", ")
                    ),
                );
                None
            }
        };
        if let Some(f) = self.given(&h.health_file, "ha.health_file") {
            let p = PathBuf::from(&f.value);
            if !p.is_absolute()
                || f.value.ends_with('/')
                || f.value.chars().any(|c| crate::error::odd_char(c).is_some())
            {
                self.err(
                    at(&f.referenced),
                    format!(
                        "ha.health_file `{}` must be the absolute path of a file, such as /run/lvsd/ha-health",
                        printable(&f.value)
                    ),
                );
            } else {
                out.health_file = Some(p);
            }
        }
        out.globals.sync = match self.given(&h.sync, "ha.sync") {
            Some(s) => self.sync(s),
            None => None,
        };
        let active_active = mode.as_ref().is_some_and(|(m, _)| m == "active-active");
        let device = self.given(&h.announce_device, "ha.announce_device");
        let announce = self.given(&h.announce, "ha.announce");
        if !active_active {
            for (v, key) in [(device, "announce_device"), (announce, "announce")] {
                if let (Some(v), Some(_)) = (v, &mode) {
                    self.err(
                        at(&v.referenced),
                        format!("ha.{key} goes with `mode: active-active`; remove it"),
                    );
                }
            }
        }
        if out.globals.sync.is_some() {
            for (key, real, loc) in std::mem::take(&mut later.cross_family) {
                self.err(loc, cross_family_message(key, real));
            }
        }
        let Some((mode, mode_at)) = mode else {
            return out;
        };
        match host.role {
            Role::Director => {}
            // One file serves every host: real servers take no part in sharing the VIPs.
            Role::RealServer => {}
            Role::None => {
                self.err(
                    mode_at,
                    format!("ha.mode {mode} is for directors: set host.role: director (real servers ignore `ha`, so one file still serves every host)"),
                );
                return out;
            }
        }
        if mode == "active-backup" {
            host.ha = HaMode::ActiveBackup;
            return out;
        }
        let device = match device {
            None => {
                self.err(
                    section,
                    "active-active needs `announce_device`: the dummy device lvsd creates and puts the VIPs it can serve on, for the routing daemon to announce (e.g. lvsd0)",
                );
                None
            }
            Some(d) => {
                let name = self.ha_interface(d, "ha.announce_device");
                match name {
                    Some(n) if n == "lo" || host.interface.as_deref() == Some(n.as_str()) => {
                        self.err(at(&d.referenced), format!("ha.announce_device `{n}` must be a device of its own (lvsd creates it as a dummy device), not `lo` or host.interface"));
                        None
                    }
                    n => n,
                }
            }
        };
        let announce = match announce {
            None => Announce::Any,
            Some(a) => match a.value.as_str() {
                "any" => Announce::Any,
                "all" => Announce::All,
                other => {
                    self.err(
                        at(&a.referenced),
                        format!("ha.announce is `any` (a VIP is announced while any of its services can serve) or `all` (only while all can), not `{}`", printable(other)),
                    );
                    Announce::Any
                }
            },
        };
        if let Some(v) = host.vips.as_ref().filter(|v| !v.is_empty()) {
            let _ = v;
            self.err(
                mode_at,
                "with active-active the announced VIPs are the services' addresses (each while its services can serve): remove host.vips",
            );
        }
        for (name, want) in [("sloppy_tcp", "1"), ("sloppy_sctp", "1")] {
            if host.ipvs_sysctls.get(name).is_some_and(|v| v != want) {
                self.err(
                    mode_at,
                    format!("active-active needs ipvs.sysctl.{name}: 1 (lvsd sets it): without it a director that receives the middle of a flow it has never seen passes it to its own stack, which resets it; remove the setting"),
                );
            }
        }
        out.active_active = true;
        for (key, loc) in std::mem::take(&mut later.mh_remove) {
            self.err(loc, mh_remove_message(key));
        }
        if let Some(device) = device {
            host.ha = HaMode::ActiveActive { device, announce };
        }
        out
    }
}
