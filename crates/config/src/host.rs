//! The `host` section: the role (which `--role` overrides, so one file serves every host), the
//! director's interface and the VIPs, checked with their `file:line:col` like the services.

use std::collections::HashMap;
use std::net::IpAddr;

use plan::host::{HostSpec, Role};

use crate::error::{describe, odd_char, printable};
use crate::raw::{Field, RawHost, Spanned};
use crate::validate::{Checker, at, suggest};
use crate::values::{host_scoped, unusable};

/// Linux's limit on interface names (IFNAMSIZ - 1).
const IFNAMSIZ: usize = 15;

/// Why `name` cannot be a Linux interface name, if it cannot. The kernel's rule
/// (`dev_valid_name`): 1 to 15 bytes, not `.` or `..`, no `/`, `:` or whitespace, where its
/// whitespace is the ASCII blanks and the byte 0xa0; lvsd also refuses every control and
/// invisible character, since the name is printed.
pub(crate) fn bad_interface(name: &str) -> Option<String> {
    let shown = printable(name);
    if name.is_empty() {
        return Some("the interface name is empty".into());
    }
    if let Some(c) = name.chars().find(|c| odd_char(*c).is_some()) {
        return Some(format!(
            "`{shown}` is not an interface name: it contains {}",
            describe(c)
        ));
    }
    if name.len() > IFNAMSIZ {
        return Some(format!(
            "`{shown}` is longer than an interface name can be ({IFNAMSIZ} bytes)"
        ));
    }
    if name == "." || name == ".." || name.contains(['/', ':', ' ']) {
        return Some(format!(
            "`{shown}` is not an interface name (no `/`, `:` or spaces; an alias like eth0:1 is a label, give eth0)"
        ));
    }
    if let Some(c) = name
        .chars()
        .find(|c| c.len_utf8() > 1 && c.to_string().bytes().any(|b| b == 0xa0))
    {
        return Some(format!(
            "`{shown}` is not an interface name: `{c}` is encoded with the byte 0xa0, which the kernel takes as a space"
        ));
    }
    None
}

impl Checker {
    fn role(&mut self, r: &Field<String>) -> Option<Role> {
        let r = self.given(r, "role")?;
        match Role::parse(&r.value) {
            Some(role) => Some(role),
            None => {
                let names: Vec<&str> = Role::ALL.iter().map(|(n, _)| *n).collect();
                let hint = suggest(&r.value, &names)
                    .map(|c| format!("did you mean `{c}`? "))
                    .unwrap_or_default();
                self.err(
                    at(&r.referenced),
                    format!(
                        "unknown role `{}`; {hint}valid roles: {}",
                        printable(&r.value),
                        names.join(", ")
                    ),
                );
                None
            }
        }
    }

    fn vips(&mut self, list: Vec<&Spanned<String>>) -> Vec<IpAddr> {
        let mut seen: HashMap<IpAddr, u64> = HashMap::new();
        let mut vips = vec![];
        for v in list {
            let loc = at(&v.referenced);
            match v.value.parse::<IpAddr>() {
                Ok(a) => {
                    if let Some((kind, fix)) =
                        unusable(a).or(host_scoped(a).map(|k| (k, String::new())))
                    {
                        self.err(loc, format!("`{a}` cannot be a VIP: it is {kind}{fix}"));
                    } else if let Some(line) = seen.insert(a, loc.0) {
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
                        printable(&v.value)
                    ),
                ),
            }
        }
        vips
    }

    /// Checks the section and applies the command line's role.
    pub(crate) fn host(&mut self, raw: Field<RawHost>, role: Option<Role>) -> HostSpec {
        let mut spec = HostSpec::default();
        let section_at = raw.as_ref().map_or((1, 1), |h| at(&h.referenced));
        // The interface was given (even if wrong or empty): its own problem says what to fix.
        let mut interface_given = false;
        match raw {
            Some(h) if h.null => self.err(
                section_at,
                "`host` is empty (null); give its `role`, `interface` or `vips`, or leave the key out",
            ),
            Some(h) => {
                let h = h.value;
                if let Some(r) = self.role(&h.role) {
                    spec.role = r;
                }
                interface_given = h.interface.is_some();
                if let Some(i) = self.given(&h.interface, "interface") {
                    match bad_interface(&i.value) {
                        Some(why) => self.err(at(&i.referenced), why),
                        None => spec.interface = Some(i.value.clone()),
                    }
                }
                if let Some(list) = self.items(&h.vips, "vips") {
                    spec.vips = Some(self.vips(list));
                }
            }
            None => {}
        }
        if let Some(r) = role {
            spec.role = r;
        }
        if spec.role == Role::Director && spec.interface.is_none() && !interface_given {
            self.err(
                section_at,
                "the director role needs `host.interface`: the interface facing the clients, where lvsd adds the VIPs",
            );
        }
        spec
    }
}
