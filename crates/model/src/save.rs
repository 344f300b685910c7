//! The `ipvsadm -Sn` rule format, both ways: [`format_rules`] writes a table as ipvsadm would
//! save it, [`parse_rules`] reads what ipvsadm (any version since 1.26) saved. Used to compare our
//! view of the kernel with ipvsadm's, to import existing setups, and for planner fixtures.
//!
//! The format only carries what ipvsadm prints: thresholds and tunnel details appear only in the
//! versions that print them, so a parsed rule has the defaults for anything absent.

use std::net::{IpAddr, Ipv4Addr};

use crate::*;

/// A service with its destinations, as one `-A` line and its `-a` lines.
pub type Rule = (ServiceKey, ServiceSpec, Vec<(DestKey, DestSpec)>);

/// A line that could not be understood: the 1-based line number and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {message}")]
pub struct ParseError {
    /// 1-based line number.
    pub line: usize,
    /// What is wrong.
    pub message: String,
}

fn split_addr_port(s: &str) -> Option<(IpAddr, u16)> {
    if let Some(rest) = s.strip_prefix('[') {
        let (a, p) = rest.split_once("]:")?;
        Some((a.parse().ok()?, p.parse().ok()?))
    } else {
        let (a, p) = s.rsplit_once(':')?;
        Some((a.parse().ok()?, p.parse().ok()?))
    }
}

fn flag_names(flags: ServiceFlags, scheduler: &str) -> Vec<&'static str> {
    let mh = scheduler == "mh";
    let mut out = vec![];
    if flags.contains(ServiceFlags::SCHED1) {
        out.push(if mh { "mh-fallback" } else { "sh-fallback" });
    }
    if flags.contains(ServiceFlags::SCHED2) {
        out.push(if mh { "mh-port" } else { "sh-port" });
    }
    if flags.contains(ServiceFlags::SCHED3) {
        out.push("flag-3");
    }
    out
}

fn service_selector(key: &ServiceKey) -> String {
    match key {
        ServiceKey::Addr {
            protocol,
            addr,
            port,
        } => {
            let sw = match protocol {
                Protocol::Tcp => "-t",
                Protocol::Udp => "-u",
                Protocol::Sctp => "--sctp-service",
                Protocol::Other(_) => "-u",
            };
            format!("{sw} {}", SocketDisplay(*addr, *port))
        }
        ServiceKey::Fwmark { mark, family } => match family {
            Family::Inet => format!("-f {mark}"),
            Family::Inet6 => format!("-f {mark} -6"),
        },
    }
}

/// Writes rules in `ipvsadm -Sn` form (with `-x`/`-y`/`-b` and tunnel options where they differ
/// from the defaults, which ipvsadm-restore accepts).
pub fn format_rules(rules: &[Rule]) -> String {
    let mut out = String::new();
    for (key, spec, dests) in rules {
        let sel = service_selector(key);
        out.push_str(&format!("-A {sel} -s {}", spec.scheduler));
        if spec.flags.contains(ServiceFlags::PERSISTENT) {
            out.push_str(&format!(" -p {}", spec.timeout));
            if spec.netmask != Netmask::host(key.family()) {
                out.push_str(&format!(" -M {}", spec.netmask));
            }
        }
        if let Some(pe) = &spec.pe_name {
            out.push_str(&format!(" --pe {pe}"));
        }
        if spec.flags.contains(ServiceFlags::ONE_PACKET) {
            out.push_str(" -o");
        }
        let names = flag_names(spec.flags, &spec.scheduler);
        if !names.is_empty() {
            out.push_str(&format!(" -b {}", names.join(",")));
        }
        out.push('\n');
        for (dk, ds) in dests {
            let sw = match ds.forward {
                ForwardMethod::Masq => "-m",
                ForwardMethod::Tunnel => "-i",
                _ => "-g",
            };
            out.push_str(&format!("-a {sel} -r {dk} {sw} -w {}", ds.weight));
            if ds.upper_threshold != 0 {
                out.push_str(&format!(" -x {}", ds.upper_threshold));
            }
            if ds.lower_threshold != 0 {
                out.push_str(&format!(" -y {}", ds.lower_threshold));
            }
            if ds.forward == ForwardMethod::Tunnel && ds.tunnel_type != TunnelType::Ipip {
                let t = match ds.tunnel_type {
                    TunnelType::Gue => "gue",
                    TunnelType::Gre => "gre",
                    _ => "ipip",
                };
                out.push_str(&format!(" --tun-type {t}"));
                if ds.tunnel_port != 0 {
                    out.push_str(&format!(" --tun-port {}", ds.tunnel_port));
                }
                match ds.tunnel_flags {
                    1 => out.push_str(" --tun-csum"),
                    2 => out.push_str(" --tun-remcsum"),
                    _ => {}
                }
            }
            out.push('\n');
        }
    }
    out
}

/// A rule with the lines it was read from, so that an importer can say where a setting came
/// from.
#[derive(Debug, Clone)]
pub struct LocatedRule {
    /// The service and its destinations.
    pub rule: Rule,
    /// The 1-based line of its `-A`.
    pub line: usize,
    /// The 1-based line of each destination's `-a`, in the order of `rule.2`.
    pub dest_lines: Vec<usize>,
}

/// Reads `ipvsadm -Sn` output (or an `ipvsadm-restore` file). Comments and blank lines are
/// skipped; `-a` lines may come in any order after their `-A`. A service or a destination added
/// twice is an error, as it is for `ipvsadm -R` (the kernel refuses what exists).
pub fn parse_rules(text: &str) -> Result<Vec<Rule>, ParseError> {
    parse_rules_located(text).map(|rules| rules.into_iter().map(|r| r.rule).collect())
}

/// [`parse_rules`], with the line each service and destination came from.
pub fn parse_rules_located(text: &str) -> Result<Vec<LocatedRule>, ParseError> {
    let mut rules: Vec<LocatedRule> = Vec::new();
    let mut index: std::collections::HashMap<ServiceKey, usize> = Default::default();
    let mut dests: std::collections::HashMap<(ServiceKey, DestKey), usize> = Default::default();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let err = |message: String| ParseError {
            line: i + 1,
            message,
        };
        let words: Vec<&str> = line.split_whitespace().collect();
        let mut cmd = None;
        let (mut proto, mut vip, mut fwmark, mut v6) = (None, None, None, false);
        let (mut sched, mut persistent, mut timeout, mut netmask, mut pe) =
            (None, false, 300, None, None);
        let mut flags = ServiceFlags::default();
        let (mut real, mut fwd, mut weight, mut ut, mut lt) =
            (None, ForwardMethod::DirectRoute, 1, 0, 0);
        let (mut tun_type, mut tun_port, mut tun_flags) = (TunnelType::Ipip, 0u16, 0u16);
        let mut it = words.iter().copied().peekable();
        while let Some(w) = it.next() {
            let mut value =
                |what: &str| it.next().ok_or_else(|| err(format!("`{w}` needs {what}")));
            match w {
                "-A" | "--add-service" => cmd = Some('A'),
                "-a" | "--add-server" => cmd = Some('a'),
                "-t" | "--tcp-service" | "-u" | "--udp-service" | "--sctp-service" => {
                    proto = Some(match w {
                        "-t" | "--tcp-service" => Protocol::Tcp,
                        "--sctp-service" => Protocol::Sctp,
                        _ => Protocol::Udp,
                    });
                    let v = value("an address:port")?;
                    vip = Some(
                        split_addr_port(v)
                            .ok_or_else(|| err(format!("bad service address `{v}`")))?,
                    );
                }
                "-f" | "--fwmark-service" => {
                    let v = value("a mark")?;
                    fwmark = Some(
                        v.parse::<u32>()
                            .map_err(|_| err(format!("bad fwmark `{v}`")))?,
                    );
                }
                "-6" | "--ipv6" => v6 = true,
                "-s" | "--scheduler" => sched = Some(value("a scheduler")?.to_string()),
                "-p" | "--persistent" => {
                    persistent = true;
                    if let Some(v) = it.peek().and_then(|v| v.parse::<u32>().ok()) {
                        timeout = v;
                        it.next();
                    }
                }
                "-M" | "--netmask" => netmask = Some(value("a netmask")?.to_string()),
                "pe" | "--pe" => pe = Some(value("a persistence engine")?.to_string()),
                "ops" | "-o" | "--ops" => flags = flags | ServiceFlags::ONE_PACKET,
                "-b" | "--sched-flags" => {
                    for f in value("flags")?.split(',') {
                        flags = flags
                            | match f {
                                "sh-fallback" | "mh-fallback" | "flag-1" => ServiceFlags::SCHED1,
                                "sh-port" | "mh-port" | "flag-2" => ServiceFlags::SCHED2,
                                "flag-3" => ServiceFlags::SCHED3,
                                other => {
                                    return Err(err(format!("unknown scheduler flag `{other}`")));
                                }
                            };
                    }
                }
                "-r" | "--real-server" => {
                    let v = value("an address[:port]")?;
                    real = Some(v.to_string());
                }
                "-g" | "--gatewaying" => fwd = ForwardMethod::DirectRoute,
                "-i" | "--ipip" => fwd = ForwardMethod::Tunnel,
                "-m" | "--masquerading" => fwd = ForwardMethod::Masq,
                "-w" | "--weight" => {
                    let v = value("a weight")?;
                    weight = v.parse().map_err(|_| err(format!("bad weight `{v}`")))?;
                }
                "-x" | "--u-threshold" => {
                    let v = value("a number")?;
                    ut = v.parse().map_err(|_| err(format!("bad threshold `{v}`")))?;
                }
                "-y" | "--l-threshold" => {
                    let v = value("a number")?;
                    lt = v.parse().map_err(|_| err(format!("bad threshold `{v}`")))?;
                }
                "--tun-type" => {
                    tun_type = match value("a tunnel type")? {
                        "ipip" => TunnelType::Ipip,
                        "gue" => TunnelType::Gue,
                        "gre" => TunnelType::Gre,
                        other => return Err(err(format!("unknown tunnel type `{other}`"))),
                    }
                }
                "--tun-port" => {
                    let v = value("a port")?;
                    tun_port = v
                        .parse()
                        .map_err(|_| err(format!("bad tunnel port `{v}`")))?;
                }
                "--tun-nocsum" => tun_flags = 0,
                "--tun-csum" => tun_flags = 1,
                "--tun-remcsum" => tun_flags = 2,
                other => return Err(err(format!("unsupported option `{other}`"))),
            }
        }
        let key = match (proto, vip, fwmark) {
            (Some(protocol), Some((addr, port)), None) => ServiceKey::Addr {
                protocol,
                addr,
                port,
            },
            (None, None, Some(mark)) => ServiceKey::Fwmark {
                mark,
                family: if v6 { Family::Inet6 } else { Family::Inet },
            },
            _ => {
                return Err(err(
                    "needs exactly one of -t, -u, --sctp-service or -f".into()
                ));
            }
        };
        match cmd {
            Some('A') => {
                let family = key.family();
                let netmask = match (netmask, family) {
                    (None, f) => Netmask::host(f),
                    (Some(m), Family::Inet) => Netmask::V4(
                        m.parse::<Ipv4Addr>()
                            .map_err(|_| err(format!("bad netmask `{m}`")))?,
                    ),
                    (Some(m), Family::Inet6) => Netmask::V6(
                        m.parse()
                            .map_err(|_| err(format!("bad prefix length `{m}`")))?,
                    ),
                };
                if persistent {
                    flags = flags | ServiceFlags::PERSISTENT;
                }
                let spec = ServiceSpec {
                    scheduler: sched.unwrap_or_else(|| "wlc".into()),
                    flags,
                    timeout: if persistent { timeout } else { 0 },
                    netmask,
                    pe_name: pe,
                };
                if let Some(&first) = index.get(&key) {
                    return Err(err(format!(
                        "{} is added a second time (its first -A is on line {}): ipvsadm -R stops here, as the kernel refuses a service that exists; merge the two -A lines into one",
                        service_selector(&key),
                        rules[first].line
                    )));
                }
                index.insert(key, rules.len());
                rules.push(LocatedRule {
                    rule: (key, spec, vec![]),
                    line: i + 1,
                    dest_lines: vec![],
                });
            }
            Some('a') => {
                let r = real.ok_or_else(|| err("-a needs -r".into()))?;
                let default_port = match key {
                    ServiceKey::Addr { port, .. } => port,
                    ServiceKey::Fwmark { .. } => 0,
                };
                let (addr, port) = split_addr_port(&r)
                    .or_else(|| {
                        r.trim_start_matches('[')
                            .trim_end_matches(']')
                            .parse()
                            .ok()
                            .map(|a| (a, default_port))
                    })
                    .ok_or_else(|| err(format!("bad real server `{r}`")))?;
                let rule = index
                    .get(&key)
                    .and_then(|&n| rules.get_mut(n))
                    .ok_or_else(|| {
                        err(format!("real server for {key}, which no -A line defines"))
                    })?;
                let dk = DestKey { addr, port };
                if let Some(first) = dests.insert((key, dk), i + 1) {
                    return Err(err(format!(
                        "real server {dk} of {} is added a second time (its first -a is on line {first}): ipvsadm -R stops here, as the kernel refuses a real server that exists; remove one of the two -a lines",
                        service_selector(&key)
                    )));
                }
                let mut spec = DestSpec::new(fwd, weight);
                spec.upper_threshold = ut;
                spec.lower_threshold = lt;
                spec.tunnel_type = tun_type;
                spec.tunnel_port = tun_port;
                spec.tunnel_flags = tun_flags;
                rule.rule.2.push((dk, spec));
                rule.dest_lines.push(i + 1);
            }
            _ => return Err(err("expected -A or -a".into())),
        }
    }
    Ok(rules)
}

/// The rules of a dump, for formatting or comparing.
pub fn rules_of(dump: &[(Service, Vec<Dest>)]) -> Vec<Rule> {
    dump.iter()
        .map(|(s, d)| {
            let mut spec = s.spec.clone();
            spec.flags = spec.flags.without_kernel_bits();
            if !spec.flags.contains(ServiceFlags::PERSISTENT) {
                spec.timeout = 0;
            }
            (s.key, spec, d.iter().map(|d| (d.key, d.spec)).collect())
        })
        .collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    #[test]
    fn the_seed_round_trips() {
        let text = "-A -t 172.16.1.50:80 -s wlc\n-a -t 172.16.1.50:80 -r 172.16.1.101:80 -g -w 1\n-a -t 172.16.1.50:80 -r 172.16.1.102:80 -g -w 1\n";
        let rules = parse_rules(text).expect("parses");
        assert_eq!(rules.len(), 1);
        assert_eq!(rules[0].2.len(), 2);
        assert_eq!(format_rules(&rules), text);
    }

    #[test]
    fn every_option_round_trips() {
        let text = "\
-A -u [2001:db8::50]:53 -s sh -p 60 -M 64 -b sh-fallback,sh-port
-a -u [2001:db8::50]:53 -r [2001:db8::101]:53 -i -w 3 -x 100 -y 10 --tun-type gue --tun-port 6080 --tun-csum
-A -f 7 -6 -s mh -b mh-port
-A --sctp-service 10.0.0.1:9999 -s rr -p 300 -M 255.255.255.0 --pe sip -o
-a --sctp-service 10.0.0.1:9999 -r 10.0.0.2:9999 -m -w 0
";
        let rules = parse_rules(text).expect("parses");
        assert_eq!(format_rules(&rules), text);
    }

    #[test]
    fn old_ipvsadm_spellings_are_read() {
        let rules = parse_rules("-A -t 1.2.3.4:80 -s rr -p 30 pe sip ops\n").expect("parses");
        assert!(rules[0].1.flags.contains(ServiceFlags::ONE_PACKET));
        assert_eq!(rules[0].1.pe_name.as_deref(), Some("sip"));
    }

    #[test]
    fn errors_name_the_line() {
        let e = parse_rules("-A -t 1.2.3.4:80 -s rr\n-a -t 9.9.9.9:80 -r 1.1.1.1\n")
            .expect_err("orphan");
        assert_eq!(e.line, 2);
        assert!(parse_rules("-A -t nonsense -s rr").is_err());
        assert!(parse_rules("-A -s rr").is_err());
    }
}
