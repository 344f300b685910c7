//! ldirectord.cf to lvsd YAML. Read as ldirectord reads it: global `key = value` lines at the
//! left margin (wherever they stand, they apply to every virtual service), `virtual=` (and
//! `virtual6=`) starting a service whose settings follow indented by at least four spaces or a
//! tab, `#` comments. Defaults are ldirectord's: the `wrr` scheduler, TCP (UDP on port 53),
//! weight 1, checks every 10 s, `negotiate` checks (http/https by the port), a 5 s connect
//! timeout and 30 s negotiate timeout, one failure takes a real out, `quiescent = no`
//! (removed, not set to weight 0), a real with no port taking the service's, and real servers
//! added only once their first check passed.

use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;

use super::{Check, Converted, Real, Service, duration_ms, quote};
use crate::error::printable;
use crate::{Error, Problem};

/// Addresses one `real=A->B` range may expand to.
const MAX_RANGE: u32 = 65_536;
/// Problems kept: past these they are counted.
const MAX_PROBLEMS: usize = 1000;
/// Real servers made in all (ranges expand): past this the conversion is refused.
const MAX_REALS: usize = 1_000_000;
/// Settings that belong to a `virtual=` block: at the left margin they are an error, as in
/// ldirectord (an unindented line ends the block).
const VIRTUAL_ONLY: &[&str] = &[
    "real",
    "real6",
    "scheduler",
    "protocol",
    "persistent",
    "netmask",
    "checktype",
    "service",
    "request",
    "receive",
    "checkport",
    "checkcommand",
    "virtualhost",
    "ops",
    "httpmethod",
    "login",
    "passwd",
    "database",
    "secret",
    "monitorfile",
];

struct Line {
    no: u64,
    key: String,
    value: String,
    indented: bool,
    /// Indented, but by less than a tab or four spaces (which ldirectord reads as unindented).
    short_indent: bool,
}

/// A setting that applies to every service unless one sets its own.
#[derive(Default, Clone)]
struct Settings {
    checktimeout: Option<u64>,
    negotiatetimeout: Option<u64>,
    checkinterval: Option<u64>,
    failurecount: Option<u64>,
    quiescent: Option<bool>,
    fallback: Option<(String, u64)>,
    fallback6: Option<(String, u64)>,
}

struct Ctx<'a> {
    file: &'a str,
    problems: Vec<Problem>,
    skipped: Vec<String>,
    /// Real servers made so far.
    made: usize,
    /// Problems past [`MAX_PROBLEMS`], counted.
    omitted: usize,
}

impl Ctx<'_> {
    /// A whole number of seconds ldirectord takes and lvsd's checks can run with (1 to 3600),
    /// or an error at the line.
    fn secs(&mut self, l: &Line) -> Option<u64> {
        self.number(l, 1, 3600, "seconds")
    }

    /// A whole number from `lo` to `hi`, or an error at the line (never a default instead).
    fn number(&mut self, l: &Line, lo: u64, hi: u64, what: &str) -> Option<u64> {
        match l.value.parse::<u64>() {
            Ok(n) if l.value.bytes().all(|b| b.is_ascii_digit()) && (lo..=hi).contains(&n) => {
                Some(n)
            }
            _ => {
                self.err(
                    l.no,
                    format!(
                        "{} = `{}`: a whole number of {what} from {lo} to {hi} is needed here (lvsd's limit); write one",
                        l.key,
                        printable(&l.value)
                    ),
                );
                None
            }
        }
    }

    /// `yes` or `no`, or an error at the line.
    fn yes_no(&mut self, l: &Line) -> Option<bool> {
        match l.value.as_str() {
            "yes" => Some(true),
            "no" => Some(false),
            other => {
                self.err(
                    l.no,
                    format!("{} = `{}`: write yes or no", l.key, printable(other)),
                );
                None
            }
        }
    }

    fn err(&mut self, line: u64, message: impl Into<String>) {
        // A file of a million bad lines is one mistake: the first thousand are kept.
        if self.problems.len() >= MAX_PROBLEMS {
            self.omitted += 1;
            return;
        }
        self.problems.push(Problem {
            line,
            col: 1,
            message: message.into(),
        });
    }

    fn note(&mut self, notes: &mut Vec<String>, line: u64, text: &str, why: &str) {
        let n = format!("{}:{line}: {text} — {why}", self.file);
        self.skipped.push(n.clone());
        notes.push(n);
    }
}

fn unquote(v: &str) -> String {
    let v = v.trim();
    v.strip_prefix('"')
        .and_then(|x| x.strip_suffix('"'))
        .unwrap_or(v)
        .to_owned()
}

fn lines(text: &str) -> Vec<Line> {
    let mut out = vec![];
    for (n, raw) in text.lines().enumerate() {
        let raw = raw.trim_end_matches('\r');
        if raw.trim_start().starts_with('#') {
            continue;
        }
        let body = raw
            .split('#')
            .next()
            .unwrap_or_default()
            .replace('\t', "    ");
        if body.trim().is_empty() {
            continue;
        }
        let indented = body.starts_with("    ");
        let short_indent = !indented && body.starts_with(' ');
        let body = body.trim();
        let (key, value) = match body.split_once('=') {
            Some((k, v)) => (k.trim().to_owned(), v.trim().to_owned()),
            None => (body.to_owned(), String::new()),
        };
        out.push(Line {
            no: n as u64 + 1,
            key,
            value,
            indented,
            short_indent,
        });
    }
    out
}

/// Port names ldirectord resolves (from /etc/services); lvsd takes numbers.
fn port_of(s: &str) -> Option<u16> {
    match s {
        "ftp" => Some(21),
        "smtp" => Some(25),
        "domain" => Some(53),
        "http" | "www" => Some(80),
        "pop3" => Some(110),
        "nntp" => Some(119),
        "imap" | "imap2" => Some(143),
        "ldap" => Some(389),
        "https" => Some(443),
        "submission" => Some(587),
        "imaps" => Some(993),
        "pop3s" => Some(995),
        "mysql" => Some(3306),
        "postgresql" => Some(5432),
        "sip" => Some(5060),
        _ => s.parse().ok(),
    }
}

/// `ADDR:PORT`, `[V6]:PORT` or a bare address (port `None`).
fn host_port(s: &str) -> Option<(IpAddr, Option<u16>)> {
    if let Some(rest) = s.strip_prefix('[') {
        let (a, p) = rest.split_once(']')?;
        let a: IpAddr = a.parse().ok()?;
        return match p.strip_prefix(':') {
            Some(p) => Some((a, Some(port_of(p)?))),
            None if p.is_empty() => Some((a, None)),
            None => None,
        };
    }
    match s.rsplit_once(':') {
        Some((a, p)) if !a.contains(':') => Some((a.parse().ok()?, Some(port_of(p)?))),
        _ => Some((s.parse().ok()?, None)),
    }
}

fn socket(a: IpAddr, port: Option<u16>) -> String {
    match (a, port) {
        (IpAddr::V4(a), Some(p)) => format!("{a}:{p}"),
        (IpAddr::V6(a), Some(p)) => format!("[{a}]:{p}"),
        (IpAddr::V4(a), None) => a.to_string(),
        (IpAddr::V6(a), None) => format!("[{a}]"),
    }
}

fn forward(word: &str) -> Option<&'static str> {
    match word {
        "gate" => Some("dr"),
        "masq" => Some("nat"),
        "ipip" => Some("tunnel"),
        _ => None,
    }
}

/// One virtual service as read.
struct Virtual {
    line: u64,
    text: String,
    vip: Option<(IpAddr, u16)>,
    fwmark: Option<u32>,
    v6: bool,
    lines: Vec<Line>,
}

/// A `real=` line: its servers (a range expands), forwarding, weight, request and receive.
struct RealLine {
    line: u64,
    servers: Vec<(IpAddr, Option<u16>)>,
    forward: &'static str,
    weight: u32,
    request: Option<(String, String)>,
}

fn real_line(v: &str, no: u64, c: &mut Ctx) -> Option<RealLine> {
    let mut parts = v.splitn(2, char::is_whitespace);
    let addr = parts.next()?.to_owned();
    let rest = parts.next().unwrap_or_default().trim();
    let (first, port) = match addr.split_once("->") {
        Some((a, b)) => {
            let Some((end, port)) = host_port(b) else {
                c.err(no, format!("`{}` is not an address range (ldirectord's real=A->B:PORT); write addresses, not names", printable(&addr)));
                return None;
            };
            let (Ok(IpAddr::V4(a)), IpAddr::V4(e)) = (a.parse::<IpAddr>(), end) else {
                c.err(no, "ldirectord expands ranges of IPv4 addresses only");
                return None;
            };
            let (lo, hi) = (u32::from(a), u32::from(e));
            if hi < lo || hi - lo >= MAX_RANGE {
                c.err(
                    no,
                    format!(
                        "`{}` is not a range of at most {MAX_RANGE} addresses",
                        printable(&addr)
                    ),
                );
                return None;
            }
            let servers = (lo..=hi)
                .map(|i| (IpAddr::V4(Ipv4Addr::from(i)), port))
                .collect();
            (servers, port)
        }
        None => match host_port(&addr) {
            Some((a, p)) => (vec![(a, p)], p),
            None => {
                c.err(
                    no,
                    format!(
                        "`{}` is not an address[:port] (lvsd converts addresses, not names)",
                        printable(&addr)
                    ),
                );
                return None;
            }
        },
    };
    let _ = port;
    let mut words = rest.splitn(2, char::is_whitespace);
    let fwd = words.next().unwrap_or_default();
    let Some(fwd) = forward(fwd) else {
        c.err(no, "the forwarding method of a real is gate, masq or ipip");
        return None;
    };
    let mut rest = words.next().unwrap_or_default().trim();
    let mut weight = 1;
    if let Some(w) = rest
        .split_whitespace()
        .next()
        .filter(|w| w.bytes().all(|b| b.is_ascii_digit()))
    {
        weight = match w.parse::<u32>() {
            Ok(n) if n <= i32::MAX as u32 => n,
            _ => {
                c.err(
                    no,
                    format!("weight {w} is larger than the kernel takes (2147483647)"),
                );
                return None;
            }
        };
        rest = rest[w.len()..].trim();
    }
    let mut request = None;
    if rest.starts_with('"') {
        let q: Vec<&str> = rest.split('"').collect();
        // "req", "recv"  →  ["", req, ", ", recv, ""]
        if q.len() >= 4 {
            request = Some((q[1].to_owned(), q[3].to_owned()));
        } else {
            c.err(
                no,
                "a real's request and receive are two quoted strings: \"/check.html\", \"OK\"",
            );
            return None;
        }
    } else if !rest.is_empty() {
        c.err(
            no,
            format!("unexpected `{}` on a real= line", printable(rest)),
        );
        return None;
    }
    Some(RealLine {
        line: no,
        servers: first,
        forward: fwd,
        weight,
        request,
    })
}

/// The service ldirectord guesses from the port, for negotiate checks.
fn service_of_port(p: u16) -> &'static str {
    match p {
        21 => "ftp",
        25 => "smtp",
        53 => "dns",
        80 => "http",
        110 => "pop",
        119 => "nntp",
        143 => "imap",
        389 => "ldap",
        443 => "https",
        587 => "submission",
        993 => "imaps",
        995 => "pops",
        1521 => "oracle",
        1812 => "radius",
        3128 => "http_proxy",
        3306 => "mysql",
        5060 => "sip",
        5432 => "pgsql",
        _ => "none",
    }
}

/// Converts an ldirectord.cf `text` (read from `path`, for messages).
pub fn convert(text: &str, path: &Path) -> Result<Converted, Error> {
    let file = printable(&path.display().to_string()).into_owned();
    if text.len() as u64 > crate::MAX_FILE_BYTES {
        return Err(Error::TooLarge {
            path: file,
            size: text.len() as u64,
            limit: crate::MAX_FILE_BYTES,
        });
    }
    let mut c = Ctx {
        file: &file,
        problems: vec![],
        skipped: vec![],
        made: 0,
        omitted: 0,
    };
    let mut global = Settings::default();
    let mut header = vec![format!("imported by lvsd from ldirectord's {file}")];
    let mut virtuals: Vec<Virtual> = vec![];
    for l in lines(text) {
        if !l.indented && VIRTUAL_ONLY.contains(&l.key.as_str()) {
            let why = if l.short_indent {
                "indented by less than a tab or four spaces, which ldirectord reads as the left margin"
            } else {
                "at the left margin"
            };
            c.err(
                l.no,
                format!(
                    "`{}=` is {why}: ldirectord ends a virtual= block at such a line and refuses `{}` outside one; indent it by a tab or four spaces below its virtual=",
                    printable(&l.key),
                    printable(&l.key)
                ),
            );
            continue;
        }
        if l.indented {
            match virtuals.last_mut() {
                Some(v) => v.lines.push(l),
                None => c.err(l.no, "an indented line before any virtual=: indent only the settings of a virtual service"),
            }
            continue;
        }
        let v = l.value.clone();
        match l.key.as_str() {
            "virtual" | "virtual6" => {
                let v6 = l.key == "virtual6";
                let value = v.split_whitespace().next().unwrap_or_default();
                let mut vs = Virtual {
                    line: l.no,
                    text: format!("{}={}", l.key, v),
                    vip: None,
                    fwmark: None,
                    v6,
                    lines: vec![],
                };
                if value.bytes().all(|b| b.is_ascii_digit()) && !value.is_empty() {
                    vs.fwmark = value.parse().ok().filter(|m| *m > 0);
                    if vs.fwmark.is_none() {
                        c.err(l.no, "a firewall mark is a number from 1 to 4294967295");
                    }
                } else {
                    match host_port(value) {
                        Some((a, Some(p))) => vs.vip = Some((a, p)),
                        _ => c.err(l.no, format!("`{}` is not IP:port (lvsd converts addresses and port numbers, not names)", printable(value))),
                    }
                }
                virtuals.push(vs);
            }
            "checktimeout" => global.checktimeout = c.secs(&l),
            "negotiatetimeout" => global.negotiatetimeout = c.secs(&l),
            "checkinterval" => global.checkinterval = c.secs(&l),
            "failurecount" => global.failurecount = c.number(&l, 1, 100, "failures"),
            "quiescent" => global.quiescent = c.yes_no(&l),
            "fallback" => global.fallback = Some((v, l.no)),
            "fallback6" => global.fallback6 = Some((v, l.no)),
            other => {
                let why = match other {
                    "autoreload" | "callback" => {
                        "lvsd's daemon reads its config whenever it changes"
                    }
                    "logfile" | "supervised" | "fork" => {
                        "lvsd logs to stderr (the journal under systemd)"
                    }
                    "emailalert" | "emailalertfreq" | "emailalertstatus" | "emailalertfrom"
                    | "smtp" => "lvsd sends no mail; alert on its metrics or logs",
                    "cleanstop" => "lvsd leaves the table as it is when it stops",
                    "maintenancedir" => "take a real out with weight: 0 in the config instead",
                    "readdquiescent" | "checkcount" | "fallbackcommand" | "execute" => {
                        "no lvsd equivalent; not converted"
                    }
                    _ => "unknown to this conversion; not converted",
                };
                let text = format!("{file}:{}: {} — {why}", l.no, l.key);
                c.skipped.push(text.clone());
                header.push(text);
            }
        }
    }
    let mut services = vec![];
    // ldirectord refuses a second virtual= for a service ("duplicate virtual server", its
    // reader's check by protocol and address, or fwmark and family): so does this, at the
    // second one's line, naming the first.
    let mut seen: std::collections::BTreeMap<(String, bool, String), u64> = Default::default();
    for vs in &virtuals {
        if let Some(s) = service(vs, &global, &mut c) {
            let key = match (&s.address, s.fwmark) {
                (Some(a), _) => Some((s.protocol.unwrap_or("tcp").to_owned(), false, a.clone())),
                (None, Some(m)) => Some(("fwm".to_owned(), s.ipv6, m.to_string())),
                (None, None) => None,
            };
            if let Some(k) = key {
                if let Some(first) = seen.get(&k) {
                    c.err(
                        vs.line,
                        format!(
                            "the same virtual service as the virtual= at {file}:{first}: ldirectord refuses such a file (\"duplicate virtual server\"); move this block's real= lines into the first one, or remove one of them"
                        ),
                    );
                    continue;
                }
                seen.insert(k, vs.line);
            }
            services.push(s);
        }
    }
    if !c.problems.is_empty() {
        let problems = std::mem::take(&mut c.problems)
            .into_iter()
            .map(|p| (0, p))
            .collect();
        return Err(super::gather(
            std::slice::from_ref(&file),
            problems,
            c.omitted,
        ));
    }
    let mut summary: Vec<String> = c
        .skipped
        .iter()
        .map(|s| format!("not converted: {s}"))
        .collect();
    if summary.is_empty() {
        summary.push("every setting converted".into());
    }
    super::finish(&header, &services, summary, &file)
}

fn service(vs: &Virtual, global: &Settings, c: &mut Ctx) -> Option<Service> {
    let mut s = Service {
        source: Some((c.file.to_owned(), vs.line)),
        comments: vec![format!("{}:{}: {}", c.file, vs.line, vs.text)],
        scheduler: "wrr".into(),
        forward: "dr",
        ..Service::default()
    };
    let mut set = global.clone();
    let mut protocol = None;
    let mut checktype = "negotiate".to_owned();
    let mut service_name = None;
    let mut request = "/".to_owned();
    let mut receive = String::new();
    let mut checkport = None;
    let mut checkcommand = "/bin/true".to_owned();
    let mut virtualhost = None;
    let mut persistent = None;
    let mut netmask = None;
    let mut reals = vec![];
    let mut fallback = None;
    let mut notes = vec![];
    let mut scheduler_line = vs.line;
    let mut protocol_line = vs.line;
    for l in &vs.lines {
        let v = l.value.as_str();
        match l.key.as_str() {
            "real" | "real6" => {
                if let Some(r) = real_line(v, l.no, c) {
                    c.made = c.made.saturating_add(r.servers.len());
                    if c.made > MAX_REALS {
                        c.err(l.no, format!("the real= lines up to here make more than {MAX_REALS} real servers in all (lvsd's limit for one conversion); use smaller ranges, or convert in parts"));
                        return None;
                    }
                    reals.push(r);
                }
            }
            "scheduler" => {
                s.scheduler = v.to_owned();
                scheduler_line = l.no;
            }
            "protocol" => {
                protocol = Some(v.to_owned());
                protocol_line = l.no;
            }
            "persistent" => persistent = c.number(l, 0, 4_294_967, "seconds"),
            "netmask" => {
                if v.parse::<std::net::Ipv4Addr>().is_ok()
                    || (v.bytes().all(|b| b.is_ascii_digit())
                        && v.parse::<u8>().is_ok_and(|n| (1..=128).contains(&n)))
                {
                    netmask = Some(v.to_owned());
                } else {
                    c.err(
                        l.no,
                        format!(
                            "netmask = `{}` is not a netmask (255.255.255.0) or an IPv6 prefix length (64)",
                            printable(v)
                        ),
                    );
                }
            }
            "checktype" => checktype = v.to_owned(),
            "service" => service_name = Some(v.to_owned()),
            "request" => request = unquote(v),
            "receive" => receive = unquote(v),
            "checkport" => checkport = c.number(l, 1, 65535, "a port").map(|p| p as u16),
            "checkcommand" => checkcommand = unquote(v),
            "virtualhost" => virtualhost = Some(unquote(v)),
            "checktimeout" => set.checktimeout = c.secs(l).or(set.checktimeout),
            "negotiatetimeout" => set.negotiatetimeout = c.secs(l).or(set.negotiatetimeout),
            "checkinterval" => set.checkinterval = c.secs(l).or(set.checkinterval),
            "failurecount" => {
                set.failurecount = c.number(l, 1, 100, "failures").or(set.failurecount)
            }
            "quiescent" => set.quiescent = c.yes_no(l).or(set.quiescent),
            "fallback" | "fallback6" => fallback = Some((v.to_owned(), l.no)),
            "ops" => {
                if c.yes_no(l) == Some(true) {
                    s.flags.push("one-packet");
                }
            }
            "httpmethod" if v.eq_ignore_ascii_case("get") => {}
            other => {
                let why = match other {
                    "httpmethod" => "lvsd's http checks send GET",
                    "login" | "passwd" | "database" | "secret" => {
                        "lvsd has no protocol checks that log in"
                    }
                    "emailalert" | "emailalertfreq" | "emailalertstatus" | "smtp" => {
                        "lvsd sends no mail; alert on its metrics or logs"
                    }
                    "monitorfile" => "lvsd logs each health change",
                    "cleanstop" => "lvsd leaves the table as it is when it stops",
                    _ => "no lvsd equivalent; not converted",
                };
                c.note(&mut notes, l.no, &format!("{} = {v}", l.key), why);
            }
        }
    }
    if !crate::SCHEDULERS.contains(&s.scheduler.as_str()) {
        c.err(
            scheduler_line,
            format!(
                "scheduler `{}` is not one the kernel has ({})",
                printable(&s.scheduler),
                crate::SCHEDULERS.join(", ")
            ),
        );
        return None;
    }
    let vport = match (vs.vip, vs.fwmark) {
        (Some((a, p)), _) => {
            let proto = match protocol.as_deref() {
                Some("udp") => "udp",
                Some("tcp") => "tcp",
                Some(other) => {
                    c.err(protocol_line, format!("protocol `{}`: ldirectord takes tcp or udp for an address (fwm for a mark)", printable(other)));
                    return None;
                }
                None if p == 53 => "udp",
                None => "tcp",
            };
            s.address = Some(socket(a, Some(p)));
            s.protocol = Some(proto);
            Some(p)
        }
        (None, Some(m)) => {
            s.fwmark = Some(m);
            s.ipv6 = vs.v6;
            None
        }
        _ => return None,
    };
    if let Some(p) = persistent.filter(|p| *p > 0) {
        s.persistence = Some(match &netmask {
            Some(n) => format!("{{timeout: {p}s, netmask: {n}}}"),
            None => format!("{p}s"),
        });
    } else if vport == Some(0) {
        s.persistence = Some("300s".into());
    }
    // The service's forwarding: the one most reals use.
    let mut counts = std::collections::BTreeMap::new();
    for r in &reals {
        *counts.entry(r.forward).or_insert(0usize) += r.servers.len();
    }
    if let Some((f, _)) = counts.iter().max_by_key(|(f, n)| (**n, **f == "dr")) {
        s.forward = f;
    }
    // The check.
    let service_kind = service_name
        .clone()
        .unwrap_or_else(|| service_of_port(vport.unwrap_or(0)).to_owned());
    let connect = duration_ms(set.checktimeout.or(set.negotiatetimeout).unwrap_or(5) * 1000);
    let negotiate = duration_ms(set.negotiatetimeout.or(set.checktimeout).unwrap_or(30) * 1000);
    let base = Check {
        interval: Some(duration_ms(set.checkinterval.unwrap_or(10) * 1000)),
        rise: Some(1),
        fall: Some(set.failurecount.unwrap_or(1) as u32),
        initial: Some("down"),
        port: checkport,
        ..Check::default()
    };
    let mut check_comments = vec![];
    let mut off = false;
    let check: Option<Check> = match checktype.as_str() {
        "negotiate" => match service_kind.as_str() {
            "http" | "https" => Some(Check {
                kind: if service_kind == "https" {
                    "https"
                } else {
                    "http"
                },
                path: Some(if request.starts_with('/') {
                    request.clone()
                } else {
                    format!("/{request}")
                }),
                expect_status: vec!["200-299".into()],
                expect_body: (!receive.is_empty()).then(|| receive.clone()),
                host: virtualhost.clone(),
                timeout: Some(negotiate.clone()),
                ..base.clone()
            }),
            "none" => {
                c.note(
                    &mut check_comments,
                    vs.line,
                    "service none",
                    "ldirectord does not monitor it: no check",
                );
                None
            }
            other => {
                c.note(&mut check_comments, vs.line, &format!("service = {other}"), "lvsd has no such protocol check: converted to a tcp check (it connects, nothing more)");
                Some(Check {
                    kind: "tcp",
                    timeout: Some(connect.clone()),
                    ..base.clone()
                })
            }
        },
        "connect" => Some(Check {
            kind: "tcp",
            timeout: Some(connect.clone()),
            ..base.clone()
        }),
        "external" | "external-perl" => {
            let (vip, vp) = match (vs.vip, vs.fwmark) {
                (Some((a, p)), _) => (a.to_string(), p.to_string()),
                (None, Some(m)) => (m.to_string(), "0".into()),
                _ => (String::new(), String::new()),
            };
            let mut cmd = super::keepalived_split(&checkcommand);
            if cmd.first().is_some_and(|p| !p.starts_with('/')) {
                cmd.insert(0, "/usr/bin/env".into());
            }
            cmd.extend([vip, vp, "{address}".into(), "{port}".into()]);
            Some(Check {
                kind: "exec",
                command: cmd,
                timeout: Some(connect.clone()),
                ..base.clone()
            })
        }
        "on" => None,
        "off" => {
            off = true;
            None
        }
        "ping" => {
            c.note(
                &mut check_comments,
                vs.line,
                "checktype = ping",
                "lvsd has no ICMP check: the real servers are not checked",
            );
            None
        }
        n if n.bytes().all(|b| b.is_ascii_digit()) => {
            c.note(&mut check_comments, vs.line, &format!("checktype = {n}"), "lvsd runs one kind of check: converted to a tcp check (ldirectord negotiated every Nth time)");
            Some(Check {
                kind: "tcp",
                timeout: Some(connect.clone()),
                ..base.clone()
            })
        }
        other => {
            c.err(vs.line, format!("unknown checktype `{}`", printable(other)));
            return None;
        }
    };
    if check.is_some() {
        s.on_failure = Some(if set.quiescent.unwrap_or(false) {
            "drain"
        } else {
            "remove"
        });
    }
    let mut seen = std::collections::HashSet::new();
    for r in &reals {
        for (a, p) in &r.servers {
            let nat = r.forward == "nat";
            let port = match vport {
                None => p.filter(|_| nat),
                Some(vp) if nat => Some(p.filter(|p| *p != 0).unwrap_or(vp)),
                Some(vp) => {
                    if p.is_some_and(|p| p != vp && p != 0) {
                        notes.push(format!("real {a}: with {} the port is the service's ({vp}), as ldirectord sets it", r.forward));
                    }
                    None
                }
            };
            let mut real = Real {
                source: Some((c.file.to_owned(), r.line)),
                address: socket(*a, port),
                weight: (r.weight != 1).then_some(r.weight),
                forward: (r.forward != s.forward).then_some(r.forward),
                ..Real::default()
            };
            if let (Some((req, recv)), Some(chk)) = (&r.request, &check) {
                if chk.kind == "http" || chk.kind == "https" {
                    let mut own = chk.clone();
                    own.path = Some(if req.starts_with('/') {
                        req.clone()
                    } else {
                        format!("/{req}")
                    });
                    own.expect_body = (!recv.is_empty()).then(|| recv.clone());
                    real.check = Some(own);
                }
            }
            if off {
                real.weight = Some(0);
            }
            // The first of a real listed twice, as ldirectord keeps it (its second
            // `ipvsadm -a` fails): said, not dropped silently.
            if seen.insert(real.address.clone()) {
                s.reals.push(real);
            } else {
                let what = format!("real {}", real.address);
                c.note(
                    &mut notes,
                    r.line,
                    &what,
                    "listed twice in this virtual: the first is kept, as in ldirectord",
                );
            }
        }
    }
    if off {
        notes.push("checktype = off: ldirectord never activates these real servers; they are written with weight 0".into());
    }
    if let Some(chk) = check {
        if let Some(b) = &chk.expect_body {
            if b.chars().any(|c| "\\^$.|?*+()[]{}".contains(c)) {
                c.note(
                    &mut check_comments,
                    vs.line,
                    &format!("receive = {}", quote(b)),
                    "a regular expression in ldirectord; lvsd's expect_body finds it as plain text",
                );
            }
        }
        s.check = Some(chk);
        s.check_comments = check_comments;
    } else {
        notes.extend(check_comments);
    }
    let fb = fallback.or_else(|| {
        if vs.v6 {
            global.fallback6.clone()
        } else {
            global.fallback.clone()
        }
    });
    if let Some((f, line)) = fb {
        let mut words = f.split_whitespace();
        let addr = words.next().unwrap_or_default();
        let fwd = words.next().and_then(forward).unwrap_or("dr");
        match host_port(addr) {
            Some((a, p)) => {
                let port = if fwd == "nat" { p.or(vport) } else { None };
                s.fallback = Some(socket(a, port));
                if fwd != s.forward {
                    let why = format!(
                        "lvsd's fallback uses the service's forwarding ({})",
                        s.forward
                    );
                    c.note(&mut notes, line, &format!("fallback = {f}"), &why);
                }
            }
            None => c.note(
                &mut notes,
                line,
                &format!("fallback = {f}"),
                "not an address lvsd can use; not converted",
            ),
        }
    }
    s.notes = notes;
    Some(s)
}
