//! The `host` section: the role (which `--role` overrides, so one file serves every host), the
//! director's interface and the VIPs, checked with their `file:line:col` like the services.

use std::collections::HashMap;
use std::net::IpAddr;

use plan::host::{HostSpec, Role};

use crate::raw::{RawHost, Spanned};
use crate::validate::{Checker, at, suggest};

/// Linux's limit on interface names (IFNAMSIZ - 1).
const IFNAMSIZ: usize = 15;

/// Why `name` cannot be a Linux interface name, if it cannot.
fn bad_interface(name: &str) -> Option<String> {
    if name.is_empty() {
        return Some("the interface name is empty".into());
    }
    if name.len() > IFNAMSIZ {
        return Some(format!(
            "`{name}` is longer than an interface name can be ({IFNAMSIZ} bytes)"
        ));
    }
    if name == "."
        || name == ".."
        || name.contains(['/', ':'])
        || name.contains(char::is_whitespace)
    {
        return Some(format!(
            "`{name}` is not an interface name (no `/`, `:` or spaces; an alias like eth0:1 is a label, give eth0)"
        ));
    }
    None
}

impl Checker {
    /// Checks the section and applies the command line's role.
    pub(crate) fn host(&mut self, raw: Option<Spanned<RawHost>>, role: Option<Role>) -> HostSpec {
        let mut spec = HostSpec::default();
        let section_at = raw.as_ref().map_or((1, 1), |h| at(&h.referenced));
        if let Some(h) = raw.map(|h| h.value) {
            if let Some(r) = &h.role {
                match Role::parse(&r.value) {
                    Some(role) => spec.role = role,
                    None => {
                        let names: Vec<&str> = Role::ALL.iter().map(|(n, _)| *n).collect();
                        let hint = suggest(&r.value, &names)
                            .map(|c| format!("did you mean `{c}`? "))
                            .unwrap_or_default();
                        self.err(
                            at(&r.referenced),
                            format!(
                                "unknown role `{}`; {hint}valid roles: {}",
                                r.value,
                                names.join(", ")
                            ),
                        );
                    }
                }
            }
            if let Some(i) = &h.interface {
                match bad_interface(&i.value) {
                    Some(why) => self.err(at(&i.referenced), why),
                    None => spec.interface = Some(i.value.clone()),
                }
            }
            if let Some(list) = &h.vips {
                let mut seen: HashMap<IpAddr, u64> = HashMap::new();
                let mut vips = vec![];
                for v in list {
                    let loc = at(&v.referenced);
                    match v.value.trim().parse::<IpAddr>() {
                        Ok(a) if a.is_unspecified() || a.is_multicast() || a.is_loopback() => {
                            self.err(
                                loc,
                                format!(
                                    "`{a}` cannot be a VIP (unspecified, multicast or loopback)"
                                ),
                            );
                        }
                        Ok(a) => {
                            if let Some(line) = seen.insert(a, loc.0) {
                                self.err(
                                    loc,
                                    format!("duplicate VIP {a} (first listed on line {line})"),
                                );
                            } else {
                                vips.push(a);
                            }
                        }
                        Err(_) => self.err(
                            loc,
                            format!(
                                "`{}` is not an IP address (a VIP is an address without a port)",
                                v.value
                            ),
                        ),
                    }
                }
                spec.vips = Some(vips);
            }
        }
        if let Some(r) = role {
            spec.role = r;
        }
        if spec.role == Role::Director && spec.interface.is_none() {
            self.err(
                section_at,
                "the director role needs `host.interface`: the interface facing the clients, where lvsd adds the VIPs",
            );
        }
        spec
    }
}
