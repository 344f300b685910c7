//! The ownership record on disk: which services lvsd manages and which drains are under way.
//! It lives under `/run/lvsd/` because it describes the kernel table, which does not survive a
//! reboot either. One line per fact, written atomically (temp file + rename).
//!
//! ```text
//! service tcp 172.16.1.50 80 drain_timeout=30 deadline=-
//! real 172.16.1.101 80
//! draining 172.16.1.102 80 1764000000
//! ```

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use ipvs::{DestKey, Family, Protocol, ServiceKey};
use plan::{Owned, OwnedService};

/// Where the record of `dir` lives.
pub fn path(dir: &Path) -> PathBuf {
    dir.join("owned")
}

fn key_words(k: &ServiceKey) -> String {
    match k {
        ServiceKey::Addr {
            protocol,
            addr,
            port,
        } => {
            let p = match protocol {
                Protocol::Tcp => "tcp".to_owned(),
                Protocol::Udp => "udp".to_owned(),
                Protocol::Sctp => "sctp".to_owned(),
                Protocol::Other(n) => format!("proto{n}"),
            };
            format!("{p} {addr} {port}")
        }
        ServiceKey::Fwmark { mark, family } => {
            let f = if *family == Family::Inet6 {
                "ipv6"
            } else {
                "ipv4"
            };
            format!("fwmark {mark} {f}")
        }
    }
}

fn parse_key(w: &[&str]) -> Option<ServiceKey> {
    match w {
        ["fwmark", mark, fam, ..] => Some(ServiceKey::Fwmark {
            mark: mark.parse().ok()?,
            family: if *fam == "ipv6" {
                Family::Inet6
            } else {
                Family::Inet
            },
        }),
        [proto, addr, port, ..] => Some(ServiceKey::Addr {
            protocol: match *proto {
                "tcp" => Protocol::Tcp,
                "udp" => Protocol::Udp,
                "sctp" => Protocol::Sctp,
                p => Protocol::Other(p.strip_prefix("proto")?.parse().ok()?),
            },
            addr: addr.parse().ok()?,
            port: port.parse().ok()?,
        }),
        _ => None,
    }
}

/// Renders the record.
pub fn render(owned: &Owned) -> String {
    let mut out = String::from("# lvsd ownership record: services lvsd manages. Do not edit.\n");
    for (k, s) in &owned.services {
        let deadline = s.service_deadline.map_or("-".to_owned(), |d| d.to_string());
        out += &format!(
            "service {} drain_timeout={} deadline={deadline}\n",
            key_words(k),
            s.drain_timeout
        );
        for r in &s.reals {
            out += &format!("real {} {}\n", r.addr, r.port);
        }
        for (r, d) in &s.draining {
            out += &format!("draining {} {} {d}\n", r.addr, r.port);
        }
    }
    out
}

/// Parses a record; `None` names the first line that makes no sense.
pub fn parse(text: &str) -> Result<Owned, usize> {
    let mut owned = Owned::default();
    let mut current: Option<(ServiceKey, OwnedService)> = None;
    for (i, line) in text.lines().enumerate() {
        let w: Vec<&str> = line.split_whitespace().collect();
        let bad = i + 1;
        let dest = |a: &str, p: &str| -> Option<DestKey> {
            Some(DestKey {
                addr: a.parse::<IpAddr>().ok()?,
                port: p.parse().ok()?,
            })
        };
        match w.as_slice() {
            [] => {}
            [c, ..] if c.starts_with('#') => {}
            ["service", rest @ ..] => {
                if let Some((k, s)) = current.take() {
                    owned.services.insert(k, s);
                }
                let key = parse_key(rest).ok_or(bad)?;
                let mut s = OwnedService::default();
                for kv in rest.iter().filter_map(|w| w.split_once('=')) {
                    match kv {
                        ("drain_timeout", v) => s.drain_timeout = v.parse().map_err(|_| bad)?,
                        ("deadline", "-") => {}
                        ("deadline", v) => s.service_deadline = Some(v.parse().map_err(|_| bad)?),
                        _ => return Err(bad),
                    }
                }
                current = Some((key, s));
            }
            ["real", a, p] => {
                let (_, s) = current.as_mut().ok_or(bad)?;
                s.reals.insert(dest(a, p).ok_or(bad)?);
            }
            ["draining", a, p, d] => {
                let (_, s) = current.as_mut().ok_or(bad)?;
                s.draining
                    .insert(dest(a, p).ok_or(bad)?, d.parse().map_err(|_| bad)?);
            }
            _ => return Err(bad),
        }
    }
    if let Some((k, s)) = current.take() {
        owned.services.insert(k, s);
    }
    Ok(owned)
}

/// Loads the record; a missing file means lvsd owns nothing yet. A damaged one is reported and
/// treated as empty: lvsd then leaves unknown services alone, the safe side.
pub fn load(dir: &Path) -> Owned {
    let p = path(dir);
    match std::fs::read_to_string(&p) {
        Ok(text) => match parse(&text) {
            Ok(o) => o,
            Err(line) => {
                tracing::warn!(file = %p.display(), line, "ownership record is damaged; treating every service not in the config as foreign");
                Owned::default()
            }
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Owned::default(),
        Err(e) => {
            tracing::warn!(file = %p.display(), error = %e, "cannot read the ownership record; treating every service not in the config as foreign");
            Owned::default()
        }
    }
}

/// Saves the record atomically.
pub fn save(dir: &Path, owned: &Owned) -> Result<()> {
    std::fs::create_dir_all(dir)
        .with_context(|| format!("create the state directory {}", dir.display()))?;
    let p = path(dir);
    let tmp = dir.join(".owned.tmp");
    std::fs::write(&tmp, render(owned)).with_context(|| format!("write {}", tmp.display()))?;
    std::fs::rename(&tmp, &p).with_context(|| format!("replace {}", p.display()))?;
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let mut owned = Owned::default();
        let k = ServiceKey::tcp("172.16.1.50".parse().unwrap(), 80);
        let mut s = OwnedService {
            drain_timeout: 30,
            service_deadline: Some(17),
            ..Default::default()
        };
        let d = DestKey {
            addr: "2001:db8::1".parse().unwrap(),
            port: 80,
        };
        s.reals.insert(d);
        s.draining.insert(d, 99);
        owned.services.insert(k, s);
        owned.services.insert(
            ServiceKey::Fwmark {
                mark: 7,
                family: Family::Inet6,
            },
            OwnedService::default(),
        );
        assert_eq!(parse(&render(&owned)), Ok(owned));
    }

    #[test]
    fn damage_is_located() {
        assert_eq!(
            parse("service tcp 1.2.3.4 80 drain_timeout=3 deadline=-\nreal x 80\n"),
            Err(2)
        );
        assert_eq!(parse("real 1.2.3.4 80\n"), Err(1));
    }
}
