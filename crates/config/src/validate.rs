//! From the file as written to `Desired`: every rule an operator can break is checked here,
//! before anything touches the kernel, and each problem names its line and column.

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use model::{
    DestKey, DestSpec, Family, ForwardMethod, Netmask, Protocol, ServiceFlags, ServiceKey,
    ServiceSpec, TunnelType,
};
use plan::health::{OnFailure, ServiceHealth};
use plan::host::{HostSpec, Role};
use plan::{DEFAULT_DRAIN_TIMEOUT, Desired, DesiredService, normalize_dest, normalize_service};

use crate::error::{MAX_SHOWN, Problem, printable};
use crate::raw::{Loc, Persistence, RawFile, RawReal, RawService, RawTunnel, Spanned};
use crate::values::{host_scoped, unusable, unusable_real};

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

/// `IP_VS_TUNNEL_ENCAP_FLAG_CSUM`: checksums in the outer header (GUE, GRE).
pub(crate) const TUNNEL_CSUM: u16 = 1;
/// `IP_VS_TUNNEL_ENCAP_FLAG_REMCSUM`: remote checksum offload (GUE).
pub(crate) const TUNNEL_REMCSUM: u16 = 2;

/// A tunnel real's encapsulation, as the kernel keeps it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Tunnel {
    kind: TunnelType,
    port: u16,
    flags: u16,
}

/// `d` with the tunnel settings (the planner drops them from reals that are not tunnelled).
fn with_tunnel(mut d: DestSpec, t: Tunnel) -> DestSpec {
    if d.forward == ForwardMethod::Tunnel {
        d.tunnel_type = t.kind;
        d.tunnel_port = t.port;
        d.tunnel_flags = t.flags;
    }
    d
}

/// The longest persistence timeout the kernel keeps intact: it stores the timeout in jiffies
/// (seconds × HZ) in 32 bits, so at HZ=1000 anything longer wraps around to a short one.
pub(crate) const MAX_PERSISTENCE_SECS: u64 = u32::MAX as u64 / 1000;

/// Problems found so far: the first [`MAX_SHOWN`] by position (more are kept until there are
/// enough to sort, then dropped), and how many there are in all. A file that repeats one
/// mistake a hundred thousand times costs a hundred messages, not a hundred thousand.
#[derive(Debug, Default)]
pub(crate) struct Problems {
    kept: Vec<Problem>,
    total: usize,
}

impl Problems {
    /// Adds one.
    pub(crate) fn push(&mut self, p: Problem) {
        self.kept.push(p);
        self.total += 1;
    }

    /// How many were found.
    pub(crate) fn total(&self) -> usize {
        self.total
    }

    /// True when none were found.
    pub(crate) fn is_empty(&self) -> bool {
        self.total == 0
    }

    /// A mark for [`Problems::dedup_since`].
    pub(crate) fn mark(&self) -> usize {
        self.kept.len()
    }

    /// Says each problem found since `mark` once (a service's check is checked again for each
    /// of its reals), then keeps memory bounded.
    pub(crate) fn dedup_since(&mut self, mark: usize) {
        if self.kept.len() > mark + 1 {
            let before = self.kept.len();
            let tail = &mut self.kept[mark..];
            tail.sort();
            let mut unique = mark;
            for i in mark..before {
                if i == mark || self.kept[i] != self.kept[unique - 1] {
                    self.kept.swap(unique, i);
                    unique += 1;
                }
            }
            self.kept.truncate(unique);
            self.total -= before - unique;
        }
        if self.kept.len() >= 8 * MAX_SHOWN {
            self.compact();
        }
    }

    fn compact(&mut self) {
        self.kept.sort_by_key(|p| (p.line, p.col));
        self.kept.truncate(MAX_SHOWN);
    }

    /// Adds the problems of a later part of the file.
    pub(crate) fn append(&mut self, other: Problems) {
        self.kept.extend(other.kept);
        self.total += other.total;
        if self.kept.len() >= 8 * MAX_SHOWN {
            self.compact();
        }
    }

    /// The first [`MAX_SHOWN`] in file order, and how many more there are.
    pub(crate) fn finish(mut self) -> (Vec<Problem>, usize) {
        self.compact();
        let omitted = self.total - self.kept.len();
        (self.kept, omitted)
    }
}

/// Validation state: the problems found so far.
#[derive(Debug, Default)]
pub(crate) struct Checker {
    /// Everything found, in the order found.
    pub problems: Problems,
    /// The main file's `include` patterns, with where each stands (`None`: no `include`).
    pub includes: Option<Vec<(String, (u64, u64))>>,
    /// Where the `include` key's value stands, however the key was spelled.
    pub include_at: (u64, u64),
    /// What is valid but probably not meant (`mh` without `mh-fallback`), for `lvsd check`.
    pub warnings: Vec<String>,
}

/// Said of an `include` in text read without its file: the patterns are relative to a file
/// that is not there, and reading on without them would drop the services they name.
pub(crate) const INCLUDE_WITHOUT_FILE: &str = "`include` names files relative to the main file, and this text was read without one; give lvsd the main file by its path";

impl Checker {
    /// Refuses the `include` of text read without its file (see [`INCLUDE_WITHOUT_FILE`]).
    pub(crate) fn refuse_include(&mut self) {
        if self.includes.take().is_some() {
            self.err(self.include_at, INCLUDE_WITHOUT_FILE);
        }
    }
}

/// What an included file's services are checked against: the main file's host and `ha`.
#[derive(Debug, Clone, Default)]
pub(crate) struct Context {
    /// The host, with `--role` applied.
    pub host: HostSpec,
    /// `ha.sync` is given.
    pub sync: bool,
    /// `ha.mode: active-active`.
    pub active_active: bool,
}

/// Services validated so far, in file order.
#[derive(Debug, Default)]
pub(crate) struct Collected {
    /// The valid ones, in file order, each identity once (see [`Collected::take_desired`]).
    pub services: Vec<(ServiceKey, DesiredService)>,
    /// The services of parts of the file read apart and appended ([`Collected::append`]),
    /// each list as its reader left it (not copied into one).
    runs: Vec<Vec<(ServiceKey, DesiredService)>>,
    /// Each entry's identity in file order; `None` for an entry with a problem.
    pub keys: Vec<Option<ServiceKey>>,
    /// Each entry's line.
    pub lines: Vec<u64>,
    /// Each entry's column.
    pub cols: Vec<u64>,
    /// Problems found.
    pub problems: Problems,
    /// Warnings (see [`Checker::warnings`]).
    pub warnings: Vec<String>,
    /// What can be decided only with more than one entry in view.
    pub later: Later,
    /// Where each identity was first defined (line).
    first_at: HashMap<ServiceKey, u64>,
    /// Where each name was first used (line).
    names: HashMap<String, u64>,
    /// Valid services are counted, not kept, and identities are compared at the end
    /// ([`Collected::unique`]), not as they come.
    count_only: bool,
    /// Valid services seen, and their real servers.
    pub counted: (usize, usize),
}

/// What an entry leaves to be decided with the whole file in view.
#[derive(Debug, Default)]
pub(crate) struct Later {
    /// Service addresses that must not go on an interface (loopback, link-local), with where
    /// they stand: refused for a host with a role, unless it lists its VIPs.
    pub scoped: Vec<(IpAddr, &'static str, (u64, u64))>,
    /// Persistence timeouts YAML read as numbers, taken as the decimal they print as: the
    /// file's bytes at `start` must be that decimal (not `0xF4240`, which is as long as
    /// 1000000), checked once the text is in view.
    pub typed: Vec<Typed>,
    /// Services with a real of the other address family (tunnel forwarding): refused beside
    /// `ha.sync`, which the kernel does not run with them.
    pub cross_family: Vec<(ServiceKey, DestKey, (u64, u64))>,
    /// `mh` services with `on_failure: remove`: refused for active-active directors, who must
    /// keep one order of real servers.
    pub mh_remove: Vec<(ServiceKey, (u64, u64))>,
}

/// A number YAML typed, and where its spelling stands in the text.
#[derive(Debug)]
pub(crate) struct Typed {
    /// Bytes from the start of the text.
    pub start: u32,
    /// The decimal it was taken as.
    pub decimal: String,
    /// Where it stands, for the message.
    pub at: (u64, u64),
}

impl Later {
    /// Nothing to decide.
    pub(crate) fn is_empty(&self) -> bool {
        self.scoped.is_empty()
            && self.typed.is_empty()
            && self.cross_family.is_empty()
            && self.mh_remove.is_empty()
    }

    /// The typed numbers whose bytes in `text` are not the decimal they were taken as.
    pub(crate) fn misspelt<'a>(&'a self, text: &'a str) -> impl Iterator<Item = &'a Typed> {
        self.typed.iter().filter(move |t| {
            let start = t.start as usize;
            text.get(start..start + t.decimal.len()) != Some(t.decimal.as_str())
        })
    }
}

/// The message for a persistence timeout YAML read as a number that is not plain decimal.
pub(crate) const TYPED_PERSISTENCE: &str =
    "persistence: write the timeout as plain seconds (300) or with a unit (300s, 5m)";

pub(crate) fn at(l: &Loc) -> (u64, u64) {
    (l.line, l.column)
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
    // Long words are nothing lvsd knows; comparing them would only cost time.
    if word.chars().count() > 64 {
        return None;
    }
    candidates
        .iter()
        .map(|c| (distance(word, c), *c))
        .filter(|(d, c)| *d <= 2.max(c.len() / 3) && *d < c.len())
        .min()
        .map(|(_, c)| c)
}

/// A port as written after an address: plain decimal, 0 to 65535.
fn port(p: &str) -> Result<u16, String> {
    let plain = !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit());
    if !plain {
        return Err(format!("`{}` is not a port number", printable(p)));
    }
    if p.len() > 1 && p.starts_with('0') {
        let fixed = p.trim_start_matches('0');
        let fixed = if fixed.is_empty() { "0" } else { fixed };
        return Err(format!("port `{p}` has a leading zero; write {fixed}"));
    }
    match p.parse::<u64>() {
        Ok(n) if n <= 65535 => Ok(n as u16),
        _ => Err(format!("port {p} is out of range (0-65535)")),
    }
}

/// When a bare IPv6 address also reads as a shorter one with a port (`2001:db8::1:80`), the
/// two readings.
fn ambiguous(s: &str) -> Option<(Ipv6Addr, &str)> {
    let (head, tail) = s.rsplit_once(':')?;
    if tail.is_empty() || tail.len() > 5 || !tail.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    if port(tail).is_err() {
        return None;
    }
    head.parse::<Ipv6Addr>().ok().map(|a| (a, tail))
}

/// Splits `addr`, `addr:port`, `[v6]:port` or `[v6]` (a bare IPv6 address is taken when it
/// cannot be read as an address and a port too). `needs_port` for a service address, which
/// has one.
fn parse_socket(s: &str, needs_port: bool) -> Result<(IpAddr, Option<u16>), String> {
    let shown = || printable(s);
    if let Some(rest) = s.strip_prefix('[') {
        let Some((a, p)) = rest.split_once(']') else {
            return Err(format!("`{}`: missing `]` after the IPv6 address", shown()));
        };
        let addr: Ipv6Addr = a
            .parse()
            .map_err(|_| format!("`{}` is not an IPv6 address", printable(a)))?;
        return match p.strip_prefix(':') {
            Some(p) => Ok((IpAddr::V6(addr), Some(port(p)?))),
            None if p.is_empty() => Ok((IpAddr::V6(addr), None)),
            None => Err(format!("`{}`: expected `:port` after `]`", shown())),
        };
    }
    if let Ok(addr) = s.parse::<IpAddr>() {
        if let Some((a, p)) = ambiguous(s) {
            let other = if needs_port {
                format!("`[{addr}]:PORT`")
            } else {
                format!("`[{addr}]` for that address on the service's port")
            };
            return Err(format!(
                "`{s}` is ambiguous: the IPv6 address {addr}, or {a} with port {p}; write `[{a}]:{p}`, or {other} (an IPv6 address goes in brackets when a port can follow)"
            ));
        }
        return Ok((addr, None));
    }
    match s.rsplit_once(':') {
        Some((a, p)) if !a.contains(':') => {
            let addr: Ipv4Addr = a
                .parse()
                .map_err(|_| format!("`{}` is not an IP address", printable(a)))?;
            Ok((IpAddr::V4(addr), Some(port(p)?)))
        }
        Some((a, _)) if a.parse::<Ipv6Addr>().is_ok() => Err(format!(
            "`{}`: write an IPv6 address with a port in brackets, e.g. `[{a}]:80`",
            shown()
        )),
        _ => Err(format!(
            "`{}` is not an IP address (with an optional :port)",
            shown()
        )),
    }
}

impl Collected {
    /// An empty collection; `count_only` to count valid services instead of keeping them.
    pub(crate) fn counting(count_only: bool) -> Collected {
        Collected {
            count_only,
            ..Collected::default()
        }
    }

    /// True when no identity appears twice (a counting collection compares them only here).
    pub(crate) fn unique(&self) -> bool {
        let mut keys: Vec<ServiceKey> = self.keys.iter().flatten().copied().collect();
        keys.sort_unstable();
        !keys.windows(2).any(|w| w[0] == w[1])
    }

    /// Adds the services of the entries that follow this part of the file; false (and
    /// nothing to rely on) when a name appears in both. An identity in both is found by
    /// [`Collected::take_desired`].
    pub(crate) fn append(&mut self, next: Collected) -> bool {
        if next.names.keys().any(|n| self.names.contains_key(n)) {
            return false;
        }
        // A part's services are kept as its reader left them, not copied: a large table is
        // in them.
        self.runs.extend(next.runs);
        self.runs.push(next.services);
        if self.keys.is_empty() {
            self.keys = next.keys;
            self.lines = next.lines;
            self.cols = next.cols;
        } else {
            self.keys.extend(next.keys);
            self.lines.extend(next.lines);
            self.cols.extend(next.cols);
        }
        self.counted.0 += next.counted.0;
        self.counted.1 += next.counted.1;
        self.problems.append(next.problems);
        self.warnings.extend(next.warnings);
        self.later.scoped.extend(next.later.scoped);
        self.later.typed.extend(next.later.typed);
        self.later.cross_family.extend(next.later.cross_family);
        self.later.mh_remove.extend(next.later.mh_remove);
        self.names.extend(next.names);
        true
    }

    /// The services as the table lvsd plans from; `None` when an identity appears twice
    /// (only possible after [`Collected::append`]: the caller reads the file again to say
    /// where).
    ///
    /// A large table is the one thing a config keeps, so it is built with full nodes and
    /// without holding the entries twice: each list sorted, then taken from its end a slice
    /// at a time, each slice built in one pass and merged in (which rebuilds the tree in one
    /// pass too), the lists shrinking as the tree grows. Filled one entry at a time in order,
    /// a tree is left half empty; built from one list of everything, tree and list are both
    /// held.
    pub(crate) fn take_desired(&mut self) -> Option<Desired> {
        /// Entries built and merged at once, at least: a few MB at a time.
        const SLICE: usize = 1 << 16;
        let mut runs = std::mem::take(&mut self.runs);
        runs.push(std::mem::take(&mut self.services));
        let total: usize = runs.iter().map(Vec::len).sum();
        // At most eight merges a run (a merge copies the whole tree), and slices of at most an
        // eighth of the table.
        let slice = SLICE.max(total / 8);
        let mut tree = BTreeMap::new();
        for mut run in runs {
            run.sort_unstable_by_key(|s| s.0);
            if run.windows(2).any(|w| w[0].0 == w[1].0) {
                return None;
            }
            while !run.is_empty() {
                let part = run.split_off(run.len().saturating_sub(slice));
                run.shrink_to_fit();
                tree.append(&mut BTreeMap::from_iter(part));
            }
        }
        // An identity in two runs is kept once.
        (tree.len() == total).then_some(Desired { services: tree })
    }

    /// The names the services use.
    pub(crate) fn names(&self) -> impl Iterator<Item = &str> {
        self.names.keys().map(String::as_str)
    }

    /// The names the services use, with the line each was first used on.
    pub(crate) fn names_at(&self) -> impl Iterator<Item = (&str, u64)> {
        self.names.iter().map(|(n, l)| (n.as_str(), *l))
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
                    format!(
                        "unknown forwarding method `{}`: use dr, nat or tunnel{hint}",
                        printable(other)
                    ),
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
                "unknown scheduler `{}`; {hint}valid schedulers: {}",
                printable(s),
                SCHEDULERS.join(", ")
            )
        };
        self.err(at(&v.referenced), msg);
        None
    }

    /// Validates the whole file. The host's VIPs are known only here, so the services'
    /// addresses that must not become VIPs are refused here too.
    pub(crate) fn file<const COUNT: bool>(
        &mut self,
        raw: RawFile<COUNT>,
        role: Option<Role>,
    ) -> (HostSpec, Collected, crate::ha::Ha) {
        let mut host = self.host(raw.host, role);
        if let Some(list) = &raw.include {
            self.include_at = at(&list.referenced);
            let items = self.items(&raw.include, "include").unwrap_or_default();
            let mut patterns = Vec::with_capacity(items.len());
            for i in items {
                patterns.push((i.value.clone(), at(&i.referenced)));
            }
            if !list.null {
                self.includes = Some(patterns);
            }
        }
        let mut services = self.services(raw.services, COUNT);
        if host.role != Role::None && host.vips.is_none() {
            self.scoped(&mut services.later, &host);
        }
        let ha = self.ha(raw.ha, raw.ipvs, &mut host, &mut services.later);
        // Decided now, whatever the sections said.
        services.later.cross_family.clear();
        services.later.mh_remove.clear();
        (host, services, ha)
    }

    /// The `services` list, with its problems taken in.
    fn services<const COUNT: bool>(
        &mut self,
        raw: crate::raw::Field<crate::raw::Services<COUNT>>,
        count: bool,
    ) -> Collected {
        let mut services = match raw {
            Some(s) if s.null => {
                self.err(
                    at(&s.referenced),
                    "`services` is empty (null); write `services: []` for no services",
                );
                Collected::counting(count)
            }
            Some(s) => s.value.0,
            None => Collected::counting(count),
        };
        self.problems.append(std::mem::take(&mut services.problems));
        self.warnings.append(&mut services.warnings);
        services
    }

    /// Service addresses that must not become VIPs on a host with a role.
    fn scoped(&mut self, later: &mut Later, host: &HostSpec) {
        for (addr, kind, loc) in std::mem::take(&mut later.scoped) {
            let place = match (host.role, &host.interface) {
                (Role::Director, Some(i)) => format!("to `{i}`"),
                (Role::Director, None) => "to the director's interface".to_owned(),
                _ => "to `lo` (or a tunnel device)".to_owned(),
            };
            self.err(
                loc,
                format!(
                    "`{addr}` is {kind}, which must not be a VIP: with role {} lvsd would add it {place}. List the VIPs in `host.vips`, or use role `none` to serve it to this host's own clients",
                    host.role.name()
                ),
            );
        }
    }

    /// Validates a file the main file includes: `services` only, checked against the main
    /// file's host and `ha` (`ctx`), as if they were in the main file.
    pub(crate) fn included(&mut self, raw: RawFile, main: &str, ctx: &Context) -> Collected {
        let sections: [(&str, Option<(u64, u64)>); 4] = [
            ("host", raw.host.as_ref().map(|v| at(&v.referenced))),
            ("ha", raw.ha.as_ref().map(|v| at(&v.referenced))),
            ("ipvs", raw.ipvs.as_ref().map(|v| at(&v.referenced))),
            ("include", raw.include.as_ref().map(|v| at(&v.referenced))),
        ];
        for (key, loc) in sections {
            if let Some(loc) = loc {
                self.err(
                    loc,
                    format!("`{key}` belongs in the main config ({}); an included file holds `services:` only: move it there", printable(main)),
                );
            }
        }
        let mut services = self.services(raw.services, false);
        if ctx.host.role != Role::None && ctx.host.vips.is_none() {
            self.scoped(&mut services.later, &ctx.host);
        }
        if ctx.sync {
            for (key, real, loc) in std::mem::take(&mut services.later.cross_family) {
                self.err(loc, crate::ha::cross_family_message(key, real));
            }
        }
        if ctx.active_active {
            for (key, loc) in std::mem::take(&mut services.later.mh_remove) {
                self.err(loc, crate::ha::mh_remove_message(key));
            }
        }
        services.later.scoped.clear();
        services.later.cross_family.clear();
        services.later.mh_remove.clear();
        services
    }

    /// Validates one entry of `services` into `out`, with the checks that span entries
    /// (unique identities and names).
    pub(crate) fn collect(&mut self, svc: Spanned<RawService>, out: &mut Collected) {
        let loc = at(&svc.referenced);
        out.lines.push(loc.0);
        out.cols.push(loc.1);
        let mark = self.problems.mark();
        let done = if svc.null {
            self.err(
                loc,
                "an empty entry in `services` (a `-` with nothing after it, or null); remove it",
            );
            None
        } else {
            self.service(svc.value, loc, &mut out.later)
        };
        self.problems.dedup_since(mark);
        let Some((key, ds, key_at)) = done else {
            out.keys.push(None);
            return;
        };
        out.counted.0 += 1;
        out.counted.1 += ds.reals.len();
        if let Some(name) = &ds.name {
            if let Some(line) = out.names.insert(name.clone(), loc.0) {
                self.err(loc, format!("duplicate service name `{name}` (first used on line {line}); names must be unique"));
            }
        }
        if out.count_only {
            out.keys.push(Some(key));
            return;
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
        out.services.push((key, ds));
    }

    fn protocol(&mut self, s: &RawService) -> Protocol {
        match self.given(&s.protocol, "protocol") {
            None => Protocol::Tcp,
            Some(p) => match p.value.as_str() {
                "tcp" => Protocol::Tcp,
                "udp" => Protocol::Udp,
                "sctp" => Protocol::Sctp,
                other => {
                    self.err(
                        at(&p.referenced),
                        format!(
                            "unknown protocol `{}`: use tcp, udp or sctp",
                            printable(other)
                        ),
                    );
                    Protocol::Tcp
                }
            },
        }
    }

    /// The service's identity, from `address` (and `protocol`) or `fwmark` (and `family`).
    fn identity(
        &mut self,
        s: &RawService,
        loc: (u64, u64),
        later: &mut Later,
    ) -> Option<ServiceKey> {
        let protocol = self.protocol(s);
        let address = self.given(&s.address, "address");
        let fwmark = self.given(&s.fwmark, "fwmark");
        match (address, fwmark) {
            (Some(a), None) => {
                if let Some(f) = &s.family {
                    self.err(at(&f.referenced), "`family` goes with `fwmark`; a service address already says its family, remove it");
                }
                let aloc = at(&a.referenced);
                match parse_socket(&a.value, true) {
                    Ok((addr, Some(port))) => {
                        if let Some((kind, fix)) = unusable(addr) {
                            self.err(
                                aloc,
                                format!("`{addr}` is {kind}, which cannot be a service address (a VIP){fix}"),
                            );
                            return None;
                        }
                        if let Some(kind) = host_scoped(addr) {
                            later.scoped.push((addr, kind, aloc));
                        }
                        if port == 0 && s.persistence.is_none() {
                            self.err(aloc, "port 0 (all ports) needs `persistence`; give a port such as :80 or add persistence");
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
                            aloc,
                            format!(
                                "the service address `{}` has no port; write it as `{shown}`",
                                printable(&a.value)
                            ),
                        );
                        None
                    }
                    Err(e) => {
                        self.err(aloc, e);
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
                let family = match self.given(&s.family, "family") {
                    None => Family::Inet,
                    Some(f) => match f.value.as_str() {
                        "ipv4" => Family::Inet,
                        "ipv6" => Family::Inet6,
                        other => {
                            self.err(
                                at(&f.referenced),
                                format!("unknown family `{}`: use ipv4 or ipv6", printable(other)),
                            );
                            Family::Inet
                        }
                    },
                };
                let expect = "a whole number from 1 to 4294967295, decimal or hex (0x7)";
                let n = match crate::values::hex_mark(m) {
                    Some(Ok(n)) => n,
                    Some(Err(why)) => {
                        self.err(at(&m.referenced), why);
                        return None;
                    }
                    None => self.number(m, "fwmark", expect)?,
                };
                match u32::try_from(n) {
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
            // Given but empty: said already.
            (None, None) if s.address.is_some() || s.fwmark.is_some() => None,
            (None, None) => {
                self.err(loc, "a service needs `address: VIP:port` (or `fwmark: N`)");
                None
            }
        }
    }

    /// The persistence timeout (seconds), netmask and engine.
    fn persistence(
        &mut self,
        p: &Spanned<Persistence>,
        family: Family,
        spec: &mut ServiceSpec,
        later: &mut Later,
    ) {
        spec.flags = spec.flags | ServiceFlags::PERSISTENT;
        let (timeout, netmask, engine) = match &p.value {
            Persistence::Short { text, typed } => {
                let v = Spanned {
                    value: text.clone(),
                    referenced: p.referenced,
                    len: p.len,
                    start: p.start,
                    null: false,
                };
                // A value YAML typed is taken only when the file holds the plain decimal it
                // prints as (not `+300`, `0x12c`, `3e2`): as long as that, the bytes are
                // compared once the text is in view.
                let t = if *typed && v.quoted() {
                    self.err(at(&p.referenced), TYPED_PERSISTENCE);
                    None
                } else {
                    if *typed {
                        later.typed.push(Typed {
                            start: p.start,
                            decimal: text.clone(),
                            at: at(&p.referenced),
                        });
                    }
                    self.duration(&v, "persistence", true)
                };
                (t, None, None)
            }
            Persistence::Full(m) => {
                let t = match self.given(&m.timeout, "timeout") {
                    Some(t) => self.duration(t, "persistence timeout", true),
                    None if m.timeout.is_some() => None,
                    None => Some(Duration::from_secs(300)),
                };
                (
                    t,
                    self.given(&m.netmask, "netmask"),
                    self.given(&m.engine, "engine"),
                )
            }
        };
        match timeout.map(|t| t.as_secs()) {
            Some(0) => self.err(at(&p.referenced), "a persistence timeout of 0 turns persistence off; remove `persistence` instead"),
            Some(t) if t > MAX_PERSISTENCE_SECS => self.err(
                at(&p.referenced),
                format!("a persistence timeout above {MAX_PERSISTENCE_SECS}s (49 days) wraps around in the kernel, which counts it in jiffies in 32 bits"),
            ),
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
                        printable(&e.value)
                    ),
                );
            }
        }
    }

    fn flags(&mut self, s: &RawService, spec: &mut ServiceSpec, protocol: Protocol) {
        const FLAGS: &[&str] = &[
            "sh-fallback",
            "sh-port",
            "mh-fallback",
            "mh-port",
            "one-packet",
        ];
        let scheduler = spec.scheduler.clone();
        for f in self.items(&s.flags, "flags").unwrap_or_default() {
            let (bit, needs) = match f.value.as_str() {
                "sh-fallback" => (ServiceFlags::SH_FALLBACK, Some("sh")),
                "sh-port" => (ServiceFlags::SH_PORT, Some("sh")),
                "mh-fallback" => (ServiceFlags::MH_FALLBACK, Some("mh")),
                "mh-port" => (ServiceFlags::MH_PORT, Some("mh")),
                "one-packet" => (ServiceFlags::ONE_PACKET, None),
                other => {
                    let hint = suggest(other, FLAGS)
                        .map(|c| format!("did you mean `{c}`? "))
                        .unwrap_or_default();
                    self.err(
                        at(&f.referenced),
                        format!(
                            "unknown flag `{}`; {hint}valid flags: {}",
                            printable(other),
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
    }

    fn service(
        &mut self,
        s: RawService,
        loc: (u64, u64),
        later: &mut Later,
    ) -> Option<(ServiceKey, DesiredService, (u64, u64))> {
        let before = self.problems.total();
        let key = self.identity(&s, loc, later);
        let protocol = match key {
            Some(ServiceKey::Addr { protocol, .. }) => protocol,
            _ => Protocol::Tcp,
        };
        let key_at = s
            .address
            .as_ref()
            .map(|a| at(&a.referenced))
            .or(s.fwmark.as_ref().map(|m| at(&m.referenced)))
            .unwrap_or(loc);
        let family = key.map_or(Family::Inet, |k| k.family());

        let name = match self.given(&s.name, "name") {
            Some(n) if self.label(n, "name") => Some(n.value.clone()),
            _ => None,
        };
        let scheduler = match self.given(&s.scheduler, "scheduler") {
            None if s.scheduler.is_some() => None,
            None => Some("wlc".to_owned()),
            Some(v) => self.scheduler(v),
        };
        let mut spec = ServiceSpec::new(scheduler.unwrap_or_default(), family);
        if let Some(p) = self.given(&s.persistence, "persistence") {
            self.persistence(p, family, &mut spec, later);
        }
        self.flags(&s, &mut spec, protocol);
        if let Some(w) = key.and_then(|k| plan::hashing::mh_without_fallback(&k, &spec)) {
            self.warnings.push(w);
        }

        let drain_timeout = match self.given(&s.drain_timeout, "drain_timeout") {
            None => DEFAULT_DRAIN_TIMEOUT,
            Some(d) => self
                .duration(d, "drain_timeout", true)
                .map_or(DEFAULT_DRAIN_TIMEOUT, |d| d.as_secs()),
        };
        let svc_slow = self
            .given(&s.slow_start, "slow_start")
            .and_then(|v| self.slow_start(v))
            .unwrap_or_default();
        let mut slow_start = BTreeMap::new();
        let forward = match self.given(&s.forward, "forward") {
            None => ForwardMethod::DirectRoute,
            Some(f) => self.forward(f).unwrap_or(ForwardMethod::DirectRoute),
        };
        let tunnel = self
            .given(&s.tunnel, "tunnel")
            .and_then(|t| self.tunnel(t, forward, "this service's"))
            .unwrap_or_default();

        let svc_check = match &s.check {
            Some(c) if c.null => {
                self.err(
                    at(&c.referenced),
                    "`check` is empty (null); give its settings (such as `type: tcp`), or leave the key out",
                );
                None
            }
            Some(c) => Some((c.value.clone(), at(&c.referenced))),
            None => None,
        };
        if let Some((c, l)) = &svc_check {
            let _ = self.check(c, *l);
        }
        let mut checks = Vec::new();
        // In the file's order; sorted once below (see `plan::flat`). Duplicates are
        // `real_lines`' to find.
        let mut reals = Vec::new();
        let mut real_lines: HashMap<DestKey, u64> = HashMap::new();
        let raw_reals = match s.reals {
            Some(r) if r.null => {
                self.err(
                    at(&r.referenced),
                    "`reals` is empty (null); write `reals: []` for a service without real servers",
                );
                vec![]
            }
            Some(r) => r.value,
            None => vec![],
        };
        for r in raw_reals {
            let rloc = at(&r.referenced);
            if r.null {
                self.err(
                    rloc,
                    "an empty entry in `reals` (a `-` with nothing after it, or null); remove it",
                );
                continue;
            }
            let rcheck = match &r.value.check {
                Some(c) if c.null => {
                    self.err(
                        at(&c.referenced),
                        "`check` is empty (null); give the fields this real overrides, or leave the key out",
                    );
                    None
                }
                Some(c) => Some((c.value.clone(), at(&c.referenced))),
                None => None,
            };
            let slow = match self.given(&r.value.slow_start, "slow_start") {
                Some(v) => self.slow_start(v).unwrap_or_default(),
                None => svc_slow,
            };
            if let Some((k, spec)) = self.real(r.value, rloc, key, forward, tunnel) {
                if !slow.is_zero() {
                    slow_start.insert(k, slow);
                }
                if let Some(line) = real_lines.insert(k, rloc.0) {
                    self.err(
                        rloc,
                        format!("duplicate real server {k} (first listed on line {line})"),
                    );
                }
                reals.push((k, spec));
                let merged = match (&svc_check, rcheck) {
                    (None, None) => None,
                    (Some((c, l)), None) => Some((c.clone(), *l)),
                    (None, Some(own)) => Some(own),
                    (Some((c, _)), Some((o, l))) => Some((c.overridden_by(&o), l)),
                };
                if let Some((c, l)) = merged {
                    if let Ok(Some(check)) = self.check(&c, l) {
                        checks.push((k, check));
                    }
                }
            }
        }
        let reals: plan::FlatMap<DestKey, DestSpec> = reals.into_iter().collect();
        let checks: plan::FlatMap<DestKey, _> = checks.into_iter().collect();
        let on_failure = self
            .given(&s.on_failure, "on_failure")
            .map_or(OnFailure::Drain, |v| self.on_failure(v));
        let quorum = self
            .given(&s.quorum, "quorum")
            .and_then(|q| self.quorum(q, reals.len()));
        let fallback = match (self.given(&s.fallback, "fallback"), key) {
            (Some(f), Some(k)) => self
                .fallback(f, k, forward, &reals)
                .map(|(k, d)| (k, with_tunnel(d, tunnel))),
            _ => None,
        };
        let health = ServiceHealth {
            checks,
            on_failure,
            fallback,
            quorum,
        };
        let key = key?;
        if self.problems.total() > before {
            return None;
        }
        if let Some(r) = reals.keys().find(|r| Family::of(&r.addr) != key.family()) {
            later.cross_family.push((key, *r, loc));
        }
        if spec.scheduler == "mh" && health.on_failure == OnFailure::Remove {
            later.mh_remove.push((key, loc));
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
                slow_start,
            },
            key_at,
        ))
    }

    /// `tunnel: {type, port, flags}`: the encapsulation of tunnel reals. The kernel takes GUE
    /// (5.2) with a UDP port, and GRE (5.3); checksums are for those two, remote checksum
    /// offload for GUE only. `forward` is the method of what it is given on.
    fn tunnel(
        &mut self,
        t: &Spanned<RawTunnel>,
        forward: ForwardMethod,
        whose: &str,
    ) -> Option<Tunnel> {
        let loc = at(&t.referenced);
        if forward != ForwardMethod::Tunnel {
            self.err(
                loc,
                format!("`tunnel` settings are for `forward: tunnel`, and {whose} forwarding is `{}`; remove `tunnel` or set `forward: tunnel`", plan::forward_name(forward)),
            );
            return None;
        }
        let before = self.problems.total();
        let t = &t.value;
        let kind = match self.given(&t.kind, "type") {
            None => TunnelType::Ipip,
            Some(k) => match k.value.as_str() {
                "ipip" => TunnelType::Ipip,
                "gue" => TunnelType::Gue,
                "gre" => TunnelType::Gre,
                other => {
                    self.err(
                        at(&k.referenced),
                        format!(
                            "unknown tunnel type `{}`: use ipip (the default), gue or gre",
                            printable(other)
                        ),
                    );
                    return None;
                }
            },
        };
        let port = match (self.given(&t.port, "port"), kind) {
            (Some(p), TunnelType::Gue) => {
                match self.number(p, "port", "a UDP port from 1 to 65535") {
                    Some(n) if (1..=65535).contains(&n) => n as u16,
                    Some(_) => {
                        self.err(
                            at(&p.referenced),
                            format!("tunnel port {} is out of range (1-65535)", p.value),
                        );
                        0
                    }
                    None => 0,
                }
            }
            (None, TunnelType::Gue) if t.port.is_none() => {
                self.err(
                    loc,
                    "a GUE tunnel needs `port`: the UDP port the real servers decapsulate on (such as 6080)",
                );
                0
            }
            (Some(p), _) => {
                self.err(
                    at(&p.referenced),
                    "only a GUE tunnel has a port (it is UDP); remove `port` or use `type: gue`",
                );
                0
            }
            (None, _) => 0,
        };
        let mut flags = 0u16;
        for f in self.items(&t.flags, "flags").unwrap_or_default() {
            let (bit, ok) = match f.value.as_str() {
                "csum" => (TUNNEL_CSUM, kind != TunnelType::Ipip),
                "remcsum" => (TUNNEL_REMCSUM, kind == TunnelType::Gue),
                other => {
                    let hint = suggest(other, &["csum", "remcsum"])
                        .map(|c| format!("did you mean `{c}`? "))
                        .unwrap_or_default();
                    self.err(
                        at(&f.referenced),
                        format!(
                            "unknown tunnel flag `{}`; {hint}valid flags: csum (gue, gre), remcsum (gue)",
                            printable(other)
                        ),
                    );
                    continue;
                }
            };
            if !ok {
                let kind = match kind {
                    TunnelType::Ipip => "an IP-in-IP tunnel has no checksum options",
                    _ => "a GRE tunnel has no remote checksum offload",
                };
                self.err(
                    at(&f.referenced),
                    format!("flag `{}`: {kind}; remove it", f.value),
                );
            } else if flags != 0 && flags != bit {
                self.err(
                    at(&f.referenced),
                    "give one of `csum` and `remcsum`: the kernel uses one checksum option",
                );
            }
            flags |= bit;
        }
        (self.problems.total() == before).then_some(Tunnel { kind, port, flags })
    }

    fn netmask(&mut self, n: &Spanned<String>, family: Family) -> Option<Netmask> {
        let loc = at(&n.referenced);
        match family {
            // 0.0.0.0 (a /0 mask) is a mask too: one persistence template for every client,
            // which the kernel takes and keepalived's `persistence_granularity 0.0.0.0` asks for.
            Family::Inet => match n.value.parse::<Ipv4Addr>().ok() {
                Some(m) if u32::from(m).leading_ones() == u32::from(m).count_ones() => {
                    Some(Netmask::V4(m))
                }
                _ => {
                    self.err(
                        loc,
                        "an IPv4 persistence netmask is a dotted mask such as 255.255.255.0",
                    );
                    None
                }
            },
            Family::Inet6 => {
                let p = self.number(n, "netmask", "an IPv6 prefix length, 1 to 128")?;
                match u32::try_from(p) {
                    Ok(p) if (1..=128).contains(&p) => Some(Netmask::V6(p)),
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

    /// `slow_start: DURATION` (of a service or a real): how long a joining real takes to reach
    /// its weight. 0 is off (a real can turn its service's off); more than an hour is an
    /// error, as a ramp that long is a typo for one in seconds more often than a wish.
    fn slow_start(&mut self, v: &Spanned<String>) -> Option<std::time::Duration> {
        let d = self.duration(v, "slow_start", false)?;
        if d > plan::ramp::MAX {
            self.err(
                at(&v.referenced),
                format!(
                    "slow_start `{}` is over the limit of {}s: a real would take that long to get its share; use 0 (off) to {}s",
                    v.value,
                    plan::ramp::MAX.as_secs(),
                    plan::ramp::MAX.as_secs()
                ),
            );
            return None;
        }
        Some(d)
    }

    /// A whole number field of a real, in `range`, with what it means at its ends.
    fn real_number(&mut self, v: &Spanned<String>, key: &str, max: u32, zero: &str) -> Option<u32> {
        let expect = format!("a whole number from 0 ({zero}) to {max}");
        let n = self.number(v, key, &expect)?;
        match u32::try_from(n) {
            Ok(n) if n <= max => Some(n),
            _ => {
                self.err(
                    at(&v.referenced),
                    format!("{key} {} is out of range: 0 ({zero}) to {max}", v.value),
                );
                None
            }
        }
    }

    fn real(
        &mut self,
        r: RawReal,
        loc: (u64, u64),
        service: Option<ServiceKey>,
        default_forward: ForwardMethod,
        default_tunnel: Tunnel,
    ) -> Option<(DestKey, DestSpec)> {
        let a = self.given(&r.address, "address");
        let forward = match self.given(&r.forward, "forward") {
            None => default_forward,
            Some(f) => self.forward(f)?,
        };
        let tunnel = match self.given(&r.tunnel, "tunnel") {
            Some(t) => self.tunnel(t, forward, "this real's")?,
            None => default_tunnel,
        };
        let mut spec = with_tunnel(DestSpec::new(forward, 1), tunnel);
        if let Some(w) = self.given(&r.weight, "weight") {
            if let Some(w) = self.real_number(w, "weight", i32::MAX as u32, "drained") {
                spec.weight = w;
            }
        }
        if let Some(v) = self.given(&r.max_connections, "max_connections") {
            if let Some(n) = self.real_number(v, "max_connections", u32::MAX, "no limit") {
                spec.upper_threshold = n;
            }
        }
        if let Some(v) = self.given(&r.min_connections, "min_connections") {
            if let Some(n) = self.real_number(v, "min_connections", u32::MAX, "no limit") {
                spec.lower_threshold = n;
            }
        }
        let Some(a) = a else {
            if r.address.is_none() {
                self.err(loc, "a real server needs `address`");
            }
            return None;
        };
        let key = self.dest(a, service?, forward)?;
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
        let (addr, port) = match parse_socket(&a.value, false) {
            Ok(v) => v,
            Err(e) => {
                self.err(at(&a.referenced), e);
                return None;
            }
        };
        if let Some((kind, fix)) = unusable_real(addr) {
            self.err(
                at(&a.referenced),
                format!("real server `{addr}` is {kind}, which the kernel cannot send connections to{fix}"),
            );
            return None;
        }
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
