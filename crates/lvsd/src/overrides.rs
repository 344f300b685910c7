//! Operators' overrides (`lvsd drain`, `weight`, `undrain`, `restore`, `overrides`), the parts
//! daemon and client share: the record in the state directory (versioned JSON, written as the
//! other records are; an unreadable one is an error, never "no overrides"), the requests of the
//! control socket, who may change what (SO_PEERCRED), how a service and a real are named on the
//! command line, and the line that shows an override next to the file's value. The overlay
//! itself is pure ([`plan::overlay`]); the daemon's side is `daemon::overrides`.

use std::net::IpAddr;
use std::path::Path;

use ipvs::{DestKey, ServiceKey};
use plan::Desired;
use plan::overlay::{Action, Override, Overrides};
use serde::{Deserialize, Serialize};

use crate::state_file::{Unreadable, key_words, parse_key};

/// The record's file name in the state directory.
pub const RECORD: &str = "overrides";

/// The record's format version; a record of a later one is refused, not guessed at.
const VERSION: u32 = 1;

/// The record as written.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Record {
    /// What the file is, for a person who opens it.
    record: String,
    version: u32,
    overrides: Vec<Entry>,
}

/// One override as written.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Entry {
    service: String,
    real: Option<RealEntry>,
    /// `drain` or `weight`.
    action: String,
    weight: u32,
    until: Option<u64>,
    reason: String,
    uid: u32,
    pid: u32,
    set_at: u64,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RealEntry {
    addr: IpAddr,
    port: u16,
}

/// The record's text.
pub fn render(list: &Overrides) -> String {
    let overrides = list
        .list
        .values()
        .map(|o| Entry {
            service: key_words(&o.service),
            real: o.real.map(|r| RealEntry {
                addr: r.addr,
                port: r.port,
            }),
            action: match o.action {
                Action::Drain => "drain".into(),
                Action::Weight(_) => "weight".into(),
            },
            weight: o.action.weight(),
            until: o.until,
            reason: o.reason.clone(),
            uid: o.uid,
            pid: o.pid,
            set_at: o.set_at,
        })
        .collect();
    let r = Record {
        record: "lvsd overrides: drains and weights set with lvsd drain/weight, laid over the config until they end; change them with those commands, not here".into(),
        version: VERSION,
        overrides,
    };
    serde_json::to_string_pretty(&r).map_or_else(|_| String::new(), |t| t + "\n")
}

/// Reads the record's text.
pub fn parse(text: &str) -> Result<Overrides, String> {
    let r: Record =
        serde_json::from_str(text).map_err(|e| format!("not an overrides record: {e}"))?;
    if r.version != VERSION {
        return Err(format!(
            "version {} (this lvsd reads version {VERSION})",
            r.version
        ));
    }
    let mut list = Overrides::default();
    for e in r.overrides {
        let words: Vec<&str> = e.service.split_whitespace().collect();
        let service =
            parse_key(&words).ok_or_else(|| format!("`{}` is not a service", e.service))?;
        let action = match e.action.as_str() {
            "drain" => Action::Drain,
            "weight" => Action::Weight(e.weight),
            a => return Err(format!("`{a}` is not an action (drain, weight)")),
        };
        list.set(Override {
            service,
            real: e.real.map(|r| DestKey {
                addr: r.addr,
                port: r.port,
            }),
            action,
            until: e.until,
            reason: e.reason,
            uid: e.uid,
            pid: e.pid,
            set_at: e.set_at,
        });
    }
    Ok(list)
}

/// Loads the overrides of state directory `dir`; a missing record means none.
pub fn load(dir: &Path) -> Result<Overrides, Unreadable> {
    crate::state_file::load_with(dir, RECORD, parse)
}

/// Saves the overrides atomically and durably (they survive a restart, and a reboot where the
/// state directory persists).
pub fn save(dir: &Path, list: &Overrides) -> anyhow::Result<()> {
    crate::state_file::write_atomic(dir, RECORD, &render(list))
}

/// A request on the control socket: one line of JSON. Reading ones are open to whoever can
/// connect (the socket's group); changing ones need root or the admin group.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
pub enum Request {
    /// The daemon's status (what `lvsd status` shows).
    Status,
    /// The overrides in force, next to the file's values.
    Overrides,
    /// Drain (no weight) or weigh a service's reals or one real.
    Set {
        /// The service: its name or address.
        service: String,
        /// The real: `address[:port]`; none for every real of the service (a drain only).
        real: Option<String>,
        /// The weight; none to drain.
        weight: Option<u32>,
        /// Seconds until it ends by itself; none for until cleared.
        for_secs: Option<u64>,
        /// The operator's words.
        reason: String,
    },
    /// Ends an override before its time.
    Clear {
        /// The service: its name or address.
        service: String,
        /// The real; none for the service's own override.
        real: Option<String>,
        /// Only a drain (`undrain`); otherwise whatever override it is (`restore`).
        drain_only: bool,
        /// The operator's words.
        reason: String,
    },
    /// Takes this director out of rotation (`lvsd drain --director`) or brings it back
    /// (`lvsd undrain --director`).
    Director {
        /// Out of rotation (true) or back in (false).
        out: bool,
        /// Seconds until it comes back by itself; none for until undone.
        for_secs: Option<u64>,
        /// Seconds after the withdrawal before it may count as drained; none for the default.
        grace_secs: Option<u64>,
        /// The operator's words.
        reason: String,
    },
    /// Re-creates a hashing service with its reals in the order a fresh director holds them
    /// (`lvsd realign`); the daemon carries it out between passes.
    Realign {
        /// The service: its name or address.
        service: String,
        /// Cut the connections it carries rather than refuse.
        force: bool,
    },
    /// The kernel's connection counts of reals (for `drain --wait`), by the keys a `set` answer
    /// gives.
    Connections {
        /// The service's key in the records' words.
        service: String,
        /// The reals.
        reals: Vec<String>,
    },
}

/// The peer of a control connection, as the kernel gave it (SO_PEERCRED).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Peer {
    /// Its user.
    pub uid: u32,
    /// Its primary group.
    pub gid: u32,
    /// Its process (0 when the kernel gave none).
    pub pid: u32,
}

/// Whether `peer` may change overrides: root always; with an admin group, a member of it (its
/// primary group, or `groups`, the supplementary groups of its user).
pub fn may_change(peer: &Peer, groups: &[u32], admin: Option<u32>) -> bool {
    peer.uid == 0 || admin.is_some_and(|g| peer.gid == g || groups.contains(&g))
}

/// The supplementary groups of `uid`'s user, from the user database (empty when it has none
/// there).
pub fn groups_of(uid: u32) -> Vec<u32> {
    use nix::unistd::{Gid, Uid, User, getgrouplist};
    let Ok(Some(user)) = User::from_uid(Uid::from_raw(uid)) else {
        return vec![];
    };
    let Ok(name) = std::ffi::CString::new(user.name) else {
        return vec![];
    };
    getgrouplist(&name, user.gid)
        .map(|g| g.into_iter().map(Gid::as_raw).collect())
        .unwrap_or_default()
}

/// Resolves `--admin-group NAME` (or a number) to its gid.
pub fn admin_gid(name: &str) -> anyhow::Result<u32> {
    if let Ok(n) = name.parse::<u32>() {
        return Ok(n);
    }
    match nix::unistd::Group::from_name(name) {
        Ok(Some(g)) => Ok(g.gid.as_raw()),
        Ok(None) => anyhow::bail!(
            "--admin-group {}: no such group; create it (groupadd) or name an existing one",
            config::printable(name)
        ),
        Err(e) => anyhow::bail!(
            "--admin-group {}: cannot look the group up ({e})",
            config::printable(name)
        ),
    }
}

/// Finds the service a command names: by its name in the config, or by its address
/// (`172.16.1.50:80`, with the protocol first when more than one has it: `udp 172.16.1.50:53`,
/// or `fwmark 1`).
pub fn find_service(file: &Desired, given: &str) -> Result<ServiceKey, String> {
    let shown = config::printable(given);
    let by_name: Vec<ServiceKey> = file
        .services
        .iter()
        .filter(|(_, s)| s.name.as_deref() == Some(given))
        .map(|(k, _)| *k)
        .collect();
    if let [k] = by_name[..] {
        return Ok(k);
    }
    if by_name.len() > 1 {
        return Err(format!(
            "more than one service is named `{shown}`; give its address instead"
        ));
    }
    let matching: Vec<ServiceKey> = file
        .services
        .keys()
        .filter(|k| {
            let full = k.to_string();
            let words = key_words(k);
            full.eq_ignore_ascii_case(given)
                || words.eq_ignore_ascii_case(given)
                || full.split_once(' ').is_some_and(|(_, a)| a == given)
        })
        .copied()
        .collect();
    match matching[..] {
        [k] => Ok(k),
        [] => Err(format!(
            "no service `{shown}` in the config in force; give its name or its address (e.g. 172.16.1.50:80)"
        )),
        _ => Err(format!(
            "`{shown}` is more than one service ({}); give the protocol too (e.g. `tcp {shown}`)",
            matching
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        )),
    }
}

/// Finds the real a command names in `service` of the file: `address:port`, or the address
/// alone when one real has it.
pub fn find_real(file: &Desired, service: &ServiceKey, given: &str) -> Result<DestKey, String> {
    let shown = config::printable(given);
    let Some(s) = file.services.get(service) else {
        return Err(format!("no service {service} in the config in force"));
    };
    let matching: Vec<DestKey> = if let Ok(sa) = given.parse::<std::net::SocketAddr>() {
        s.reals
            .keys()
            .filter(|k| k.addr == sa.ip() && k.port == sa.port())
            .copied()
            .collect()
    } else if let Ok(ip) = given.trim_matches(['[', ']']).parse::<IpAddr>() {
        s.reals.keys().filter(|k| k.addr == ip).copied().collect()
    } else {
        return Err(format!(
            "`{shown}` is not a real server's address; give address or address:port (e.g. 172.16.1.101 or 172.16.1.101:80)"
        ));
    };
    match matching[..] {
        [k] => Ok(k),
        [] => Err(format!(
            "service {service} has no real server {shown} in the config in force (its reals: {})",
            s.reals
                .keys()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        )),
        _ => Err(format!(
            "service {service} has more than one real server at {shown}; give the port too"
        )),
    }
}

/// An override as `lvsd overrides`, `status` and `plan` show it, with the file's value.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct View {
    /// The service (`TCP 172.16.1.50:80`).
    pub service: String,
    /// Its name in the config.
    pub name: Option<String>,
    /// The real, or none for the whole service.
    pub real: Option<String>,
    /// `drain` or `weight`.
    pub action: String,
    /// The weight it gives.
    pub weight: u32,
    /// The file's weight (of the real; none for a service).
    pub file_weight: Option<u32>,
    /// When it ends (Unix seconds).
    pub until: Option<u64>,
    /// The operator's words.
    pub reason: String,
    /// Who set it.
    pub uid: u32,
    /// The setting process.
    pub pid: u32,
    /// When it was set (Unix seconds).
    pub set_at: u64,
    /// The line for people.
    pub line: String,
}

/// The overrides as shown, with the file's values (`file`: the config in force).
pub fn views(list: &Overrides, file: &Desired) -> Vec<View> {
    list.list
        .values()
        .map(|o| {
            let svc = file.services.get(&o.service);
            let name = svc.and_then(|s| s.name.clone());
            let file_weight = o
                .real
                .and_then(|r| svc.and_then(|s| s.reals.get(&r)).map(|s| s.weight));
            let action = match o.action {
                Action::Drain => "drain",
                Action::Weight(_) => "weight",
            };
            let who = match &name {
                Some(n) => format!("{n} ({})", o.service),
                None => o.service.to_string(),
            };
            let what = match (o.real, file_weight) {
                (Some(r), Some(w)) => format!("real {r}: weight {w} in the file, "),
                (Some(r), None) => format!("real {r}: "),
                (None, _) => "every real: ".to_owned(),
            };
            let until = o.until.map_or_else(
                || "until cleared".to_owned(),
                |u| format!("until {}", utc(u)),
            );
            let line = format!(
                "{who} {what}{} by {action} {until}, '{}', uid {} (pid {}, set {})",
                o.action.weight(),
                o.reason.replace('\'', "’"),
                o.uid,
                o.pid,
                utc(o.set_at)
            );
            View {
                service: o.service.to_string(),
                name,
                real: o.real.map(|r| r.to_string()),
                action: action.into(),
                weight: o.action.weight(),
                file_weight,
                until: o.until,
                reason: o.reason.clone(),
                uid: o.uid,
                pid: o.pid,
                set_at: o.set_at,
                line,
            }
        })
        .collect()
}

/// Unix seconds as `2026-12-05 14:00:00 UTC`.
pub fn utc(secs: u64) -> String {
    let days = i64::try_from(secs / 86_400).unwrap_or(0);
    let rem = secs % 86_400;
    // Howard Hinnant's days-to-civil.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02} UTC",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    fn sample() -> Overrides {
        let mut l = Overrides::default();
        l.set(Override {
            service: ServiceKey::tcp("172.16.1.50".parse().unwrap(), 80),
            real: Some(DestKey {
                addr: "172.16.1.101".parse().unwrap(),
                port: 80,
            }),
            action: Action::Drain,
            until: Some(1_764_943_200),
            reason: "kernel upgrade".into(),
            uid: 0,
            pid: 42,
            set_at: 1_764_940_000,
        });
        l.set(Override {
            service: ServiceKey::tcp("172.16.1.50".parse().unwrap(), 443),
            real: None,
            action: Action::Weight(7),
            until: None,
            reason: String::new(),
            uid: 1000,
            pid: 7,
            set_at: 1,
        });
        l
    }

    #[test]
    fn the_record_round_trips() {
        let l = sample();
        assert_eq!(parse(&render(&l)).unwrap(), l);
    }

    #[test]
    fn a_damaged_record_is_an_error_not_no_overrides() {
        assert!(parse("").is_err());
        assert!(parse("{\"record\":\"\",\"version\":2,\"overrides\":[]}").is_err());
        let bad = render(&sample()).replace("drain", "dran");
        assert!(parse(&bad).unwrap_err().contains("dran"));
    }

    #[test]
    fn root_may_change_others_only_in_the_admin_group() {
        let peer = |uid, gid| Peer { uid, gid, pid: 1 };
        assert!(may_change(&peer(0, 0), &[], None));
        assert!(!may_change(&peer(1000, 1000), &[], None));
        assert!(!may_change(&peer(1000, 1000), &[], Some(50)));
        assert!(may_change(&peer(1000, 50), &[], Some(50)));
        assert!(may_change(&peer(1000, 1000), &[4, 50], Some(50)));
        assert!(!may_change(&peer(1000, 1000), &[4, 51], Some(50)));
    }

    #[test]
    fn requests_are_one_line_of_json_and_garbage_is_refused() {
        let r: Request = serde_json::from_str(
            r#"{"op":"set","service":"web","real":"172.16.1.101","weight":null,"for_secs":20,"reason":"x"}"#,
        )
        .unwrap();
        assert!(matches!(
            r,
            Request::Set {
                weight: None,
                for_secs: Some(20),
                ..
            }
        ));
        let r: Request = serde_json::from_str(r#"{"op":"status"}"#).unwrap();
        assert_eq!(r, Request::Status);
        for bad in [
            "",
            "hello",
            "{}",
            r#"{"op":"rm","all":true}"#,
            r#"{"op":"set","service":"web","weight":-1}"#,
        ] {
            assert!(serde_json::from_str::<Request>(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn services_and_reals_are_found_by_name_or_address() {
        let mut d = Desired::default();
        let web = ServiceKey::tcp("172.16.1.50".parse().unwrap(), 80);
        let reals = [
            (
                DestKey {
                    addr: "172.16.1.101".parse().unwrap(),
                    port: 80,
                },
                ipvs::DestSpec::new(ipvs::ForwardMethod::DirectRoute, 5),
            ),
            (
                DestKey {
                    addr: "172.16.1.101".parse().unwrap(),
                    port: 8080,
                },
                ipvs::DestSpec::new(ipvs::ForwardMethod::DirectRoute, 5),
            ),
            (
                DestKey {
                    addr: "172.16.1.102".parse().unwrap(),
                    port: 80,
                },
                ipvs::DestSpec::new(ipvs::ForwardMethod::DirectRoute, 5),
            ),
        ]
        .into();
        d.services.insert(
            web,
            plan::DesiredService {
                name: Some("web".into()),
                spec: ipvs::ServiceSpec::new("wlc", ipvs::Family::Inet),
                drain_timeout: 30,
                reals,
                health: Default::default(),
                slow_start: Default::default(),
            },
        );
        assert_eq!(find_service(&d, "web"), Ok(web));
        assert_eq!(find_service(&d, "172.16.1.50:80"), Ok(web));
        assert_eq!(find_service(&d, "tcp 172.16.1.50 80"), Ok(web));
        assert!(find_service(&d, "db").unwrap_err().contains("no service"));
        assert_eq!(find_real(&d, &web, "172.16.1.102").unwrap().port, 80);
        assert_eq!(find_real(&d, &web, "172.16.1.101:8080").unwrap().port, 8080);
        assert!(
            find_real(&d, &web, "172.16.1.101")
                .unwrap_err()
                .contains("port")
        );
        assert!(
            find_real(&d, &web, "172.16.1.103")
                .unwrap_err()
                .contains("no real")
        );
    }

    #[test]
    fn times_are_shown_in_utc() {
        assert_eq!(utc(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(utc(1_764_943_200), "2025-12-05 14:00:00 UTC");
    }
}
