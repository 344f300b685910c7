//! The config format written from a table: what `lvsd export` prints for the live table and
//! `lvsd import` for `ipvsadm -Sn` rules. The output is accepted by `apply` unchanged and
//! describes the same table (defaults are left out, so it reads like a hand-written file).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::IpAddr;

use model::save::Rule;
use model::{Family, ForwardMethod, Netmask, Protocol, ServiceFlags, ServiceKey};
use plan::{flag_names, forward_name};

/// Writes rules as lvsd YAML. `header` becomes a comment on the first line.
pub fn to_yaml(rules: &[Rule], header: &str) -> String {
    let mut out = String::new();
    for line in header.lines() {
        let _ = writeln!(out, "# {line}");
    }
    if rules.is_empty() {
        out.push_str("services: []\n");
        return out;
    }
    out.push_str("services:\n");
    for (key, spec, dests) in rules {
        let svc_port = match key {
            ServiceKey::Addr {
                protocol,
                addr,
                port,
            } => {
                let a = model::SocketDisplay(*addr, *port);
                // Plain where YAML cannot misread it (an IPv4 address and port), so a large
                // export is read by the config's fast reader; an IPv6 one in brackets must be
                // quoted (a plain `[` opens a list).
                let _ = match addr {
                    IpAddr::V4(_) => writeln!(out, "  - address: {a}"),
                    IpAddr::V6(_) => writeln!(out, "  - address: \"{a}\""),
                };
                let p = match protocol {
                    Protocol::Tcp => "tcp".to_owned(),
                    Protocol::Udp => "udp".to_owned(),
                    Protocol::Sctp => "sctp".to_owned(),
                    Protocol::Other(n) => format!("protocol-{n}"),
                };
                let _ = writeln!(out, "    protocol: {p}");
                Some(*port)
            }
            ServiceKey::Fwmark { mark, family } => {
                let _ = writeln!(out, "  - fwmark: {mark}");
                if *family == Family::Inet6 {
                    out.push_str("    family: ipv6\n");
                }
                None
            }
        };
        let _ = writeln!(out, "    scheduler: {}", spec.scheduler);
        // The service's forward is the one most of its reals use, so per-real overrides are few.
        let mut counts: BTreeMap<String, usize> = BTreeMap::new();
        for (_, d) in dests {
            *counts.entry(forward_name(d.forward)).or_default() += 1;
        }
        let forward = counts
            .iter()
            .max_by_key(|(name, n)| (**n, name.as_str() == "dr"))
            .map_or("dr".to_owned(), |(n, _)| n.clone());
        let _ = writeln!(out, "    forward: {forward}");
        if spec.flags.contains(ServiceFlags::PERSISTENT) {
            if spec.netmask == Netmask::host(key.family()) && spec.pe_name.is_none() {
                let _ = writeln!(out, "    persistence: {}s", spec.timeout);
            } else {
                let _ = write!(out, "    persistence: {{timeout: {}s", spec.timeout);
                if spec.netmask != Netmask::host(key.family()) {
                    // Plain: an IPv6 prefix length is a number, and a quoted one is text.
                    let _ = write!(out, ", netmask: {}", spec.netmask);
                }
                if let Some(pe) = &spec.pe_name {
                    let _ = write!(out, ", engine: {pe}");
                }
                out.push_str("}\n");
            }
        }
        let flags = flag_names(spec.flags, &spec.scheduler);
        if !flags.is_empty() {
            out.push_str("    flags:\n");
            for f in flags {
                let _ = writeln!(out, "      - {f}");
            }
        }
        if dests.is_empty() {
            out.push_str("    reals: []\n");
            continue;
        }
        out.push_str("    reals:\n");
        for (dk, d) in dests {
            if Some(dk.port) == svc_port || (svc_port.is_none() && dk.port == 0) {
                // An IPv6 address in brackets: `2001:db8::1:80` alone would be ambiguous.
                let _ = match dk.addr {
                    IpAddr::V4(a) => writeln!(out, "      - address: {a}"),
                    IpAddr::V6(a) => writeln!(out, "      - address: \"[{a}]\""),
                };
            } else if dk.addr.is_ipv4() {
                let _ = writeln!(out, "      - address: {dk}");
            } else {
                let _ = writeln!(out, "      - address: \"{dk}\"");
            }
            if d.weight != 1 {
                let _ = writeln!(out, "        weight: {}", d.weight);
            }
            let f = forward_name(d.forward);
            if f != forward {
                let _ = writeln!(out, "        forward: {f}");
            }
            if d.upper_threshold != 0 {
                let _ = writeln!(out, "        max_connections: {}", d.upper_threshold);
            }
            if d.lower_threshold != 0 {
                let _ = writeln!(out, "        min_connections: {}", d.lower_threshold);
            }
            if d.forward == ForwardMethod::Tunnel {
                if let Some(t) = tunnel_yaml(d) {
                    let _ = writeln!(out, "        tunnel: {t}");
                }
            }
        }
    }
    out
}

/// A tunnel real's encapsulation as the config writes it (`{type: gue, port: 6080, flags:
/// [csum]}`); `None` for plain IP-in-IP, the default.
pub fn tunnel_yaml(d: &model::DestSpec) -> Option<String> {
    use model::TunnelType;
    let kind = match d.tunnel_type {
        TunnelType::Ipip if d.tunnel_flags == 0 && d.tunnel_port == 0 => return None,
        TunnelType::Ipip => "ipip".to_owned(),
        TunnelType::Gue => "gue".to_owned(),
        TunnelType::Gre => "gre".to_owned(),
        // Not one lvsd can write: the kernel's number, which validation names.
        TunnelType::Other(n) => format!("type-{n}"),
    };
    let mut out = format!("{{type: {kind}");
    if d.tunnel_type == TunnelType::Gue || d.tunnel_port != 0 {
        let _ = write!(out, ", port: {}", d.tunnel_port);
    }
    let mut flags = vec![];
    if d.tunnel_flags & crate::validate::TUNNEL_CSUM != 0 {
        flags.push("csum".to_owned());
    }
    if d.tunnel_flags & crate::validate::TUNNEL_REMCSUM != 0 {
        flags.push("remcsum".to_owned());
    }
    let rest = d.tunnel_flags & !(crate::validate::TUNNEL_CSUM | crate::validate::TUNNEL_REMCSUM);
    if rest != 0 {
        flags.push(format!("flag-{rest}"));
    }
    if !flags.is_empty() {
        let _ = write!(out, ", flags: [{}]", flags.join(", "));
    }
    out.push('}');
    Some(out)
}

/// The table as one file per service, for a directory the main file includes (`lvsd export
/// --split`): each file's name and text. A file is named after its service, as the kernel
/// knows it (`tcp-10.0.0.1-80.yaml`, `fwmark-7.yaml`, `udp-2001-db8--1-53.yaml`).
pub fn split(rules: &[Rule], header: &str) -> Vec<(String, String)> {
    rules
        .iter()
        .map(|r| (file_name(&r.0), to_yaml(std::slice::from_ref(r), header)))
        .collect()
}

/// The file `lvsd export --split` writes a service into.
pub fn file_name(key: &ServiceKey) -> String {
    match key {
        ServiceKey::Addr {
            protocol,
            addr,
            port,
        } => {
            let p = match protocol {
                Protocol::Tcp => "tcp".to_owned(),
                Protocol::Udp => "udp".to_owned(),
                Protocol::Sctp => "sctp".to_owned(),
                Protocol::Other(n) => format!("protocol-{n}"),
            };
            format!("{p}-{}-{port}.yaml", addr.to_string().replace(':', "-"))
        }
        ServiceKey::Fwmark { mark, family } => match family {
            Family::Inet => format!("fwmark-{mark}.yaml"),
            Family::Inet6 => format!("fwmark-{mark}-ipv6.yaml"),
        },
    }
}
