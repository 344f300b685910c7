//! One rule for each kind of value, whichever key holds it: present but null is an error (an
//! empty template value must not mean "the default"); numbers are plain decimal YAML integers;
//! durations are [`crate::parse_duration`]'s; names and labels hold no control or invisible
//! characters; addresses are ones the kernel can use where lvsd puts them.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use crate::error::{describe, odd_char, printable};
use crate::raw::{Field, Spanned};
use crate::validate::{Checker, at};

/// Longest name or label, in bytes: names go into every log line and metric about their
/// service.
pub(crate) const MAX_NAME_BYTES: usize = 255;

/// How text that is not a plain decimal integer was written, for the message that says how to
/// write it.
fn number_problem(s: &str) -> String {
    let unsigned = s.strip_prefix(['-', '+']).unwrap_or(s);
    let digits = !unsigned.is_empty() && unsigned.bytes().all(|b| b.is_ascii_digit());
    if digits && unsigned.len() > 1 && unsigned.starts_with('0') {
        let fixed = unsigned.trim_start_matches('0');
        let fixed = if fixed.is_empty() { "0" } else { fixed };
        let sign = if s.starts_with('-') { "-" } else { "" };
        return format!(
            "`{s}` has a leading zero, which some YAML readers take as octal; write {sign}{fixed}"
        );
    }
    if digits && s.starts_with('+') {
        return format!("write {unsigned} without the `+`");
    }
    if s.contains('_')
        && s.bytes()
            .all(|b| b.is_ascii_digit() || b == b'_' || b == b'-')
        && s.bytes().any(|b| b.is_ascii_digit())
    {
        return format!("write {} without the `_`", s.replace('_', ""));
    }
    let lower = unsigned.to_ascii_lowercase();
    if ["0x", "0o", "0b"].iter().any(|p| lower.starts_with(p)) {
        return format!(
            "`{}` is not decimal; write the number in decimal",
            printable(s)
        );
    }
    if s.bytes().any(|b| b.is_ascii_digit())
        && s.bytes()
            .all(|b| b.is_ascii_digit() || matches!(b, b'.' | b'e' | b'E' | b'-' | b'+'))
    {
        if let Ok(f) = s.parse::<f64>() {
            if f.is_finite() && f.fract() == 0.0 && f.abs() < 1e15 {
                return format!("`{s}` is not a whole number as written; write {f:.0}");
            }
            return format!("`{s}` is not a whole number");
        }
    }
    format!("`{}` is not a number", printable(s))
}

/// A firewall mark written in hex (`0x7`, `0X1F`, `0x00000007`), as iptables and nft print
/// marks: `None` when `v` is not written so, else its value (too many digits is `i128::MAX`,
/// out of range) or why it is refused (not hex, or quoted: text, as for every number).
pub(crate) fn hex_mark(v: &Spanned<String>) -> Option<Result<i128, String>> {
    let digits = v
        .value
        .strip_prefix("0x")
        .or_else(|| v.value.strip_prefix("0X"))?;
    let hex = !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_hexdigit());
    if v.quoted() {
        return hex.then(|| {
            Err(format!(
                "`fwmark: \"{}\"` is quoted, which makes it text; write the mark without quotes",
                printable(&v.value)
            ))
        });
    }
    if !hex {
        return Some(Err(format!(
            "fwmark: `{}` is not a hex number; write 0x and hex digits (0-9, a-f) such as 0x7, or the mark in decimal",
            printable(&v.value)
        )));
    }
    Some(Ok(
        u64::from_str_radix(digits, 16).map_or(i128::MAX, i128::from)
    ))
}

impl Checker {
    /// The value of a key, or `None` when it is missing or null (null is reported: an empty
    /// value is a mistake, never the default).
    pub(crate) fn given<'a, T>(&mut self, v: &'a Field<T>, key: &str) -> Option<&'a Spanned<T>> {
        let v = v.as_ref()?;
        if v.null {
            self.err(
                at(&v.referenced),
                format!("`{key}` is empty (null); give it a value, or leave the key out"),
            );
            return None;
        }
        Some(v)
    }

    /// The items of a list, or `None` when it is missing or null (reported); an empty item
    /// (`-` with nothing after it, `~`) is reported and left out.
    pub(crate) fn items<'a, T>(
        &mut self,
        v: &'a Field<Vec<Spanned<T>>>,
        key: &str,
    ) -> Option<Vec<&'a Spanned<T>>> {
        let v = v.as_ref()?;
        if v.null {
            self.err(
                at(&v.referenced),
                format!(
                    "`{key}` is empty (null); write `{key}: []` for none, or leave the key out"
                ),
            );
            return None;
        }
        let mut out = Vec::with_capacity(v.value.len());
        for item in &v.value {
            if item.null {
                self.err(
                    at(&item.referenced),
                    format!("an empty entry in `{key}` (a `-` with nothing after it, or null); remove it or give it a value"),
                );
            } else {
                out.push(item);
            }
        }
        Some(out)
    }

    /// A number as lvsd reads numbers: a plain decimal YAML integer (`80`, `-1`). A quoted
    /// number, leading zeros, `+`, `_`, hex, floats and words are refused, naming `key` and
    /// what to write instead (`expect`, such as "a whole number from 1 to 100").
    pub(crate) fn number(&mut self, v: &Spanned<String>, key: &str, expect: &str) -> Option<i128> {
        let s = v.value.as_str();
        let unsigned = s.strip_prefix('-').unwrap_or(s);
        let plain = !unsigned.is_empty()
            && unsigned.bytes().all(|b| b.is_ascii_digit())
            && !(unsigned.len() > 1 && unsigned.starts_with('0'));
        let why = if plain && v.quoted() {
            format!(
                "`{key}: \"{s}\"` is quoted, which makes it text; write the number without quotes"
            )
        } else if plain {
            // Decimal digits only: too long to parse is too large to be anything lvsd takes.
            return Some(s.parse::<i128>().unwrap_or(if s.starts_with('-') {
                i128::MIN
            } else {
                i128::MAX
            }));
        } else if s.is_empty() {
            format!("`{key}` is empty")
        } else {
            format!("{key}: {}", number_problem(s))
        };
        self.err(at(&v.referenced), format!("{why}; {key} is {expect}"));
        None
    }

    /// A duration (see [`crate::parse_duration`]); a quoted plain number is refused as for
    /// numbers. `whole_seconds` for what the kernel or the state file counts in seconds: a
    /// fraction of a second is an error there, never rounded (an operator who wrote 1500ms
    /// meant something, and neither 1s nor 2s is it).
    pub(crate) fn duration(
        &mut self,
        v: &Spanned<String>,
        key: &str,
        whole_seconds: bool,
    ) -> Option<Duration> {
        let s = v.value.as_str();
        if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) && v.quoted() {
            self.err(
                at(&v.referenced),
                format!("`{key}: \"{s}\"` is quoted, which makes it text; write {s}s, or {s} without quotes"),
            );
            return None;
        }
        match crate::parse_duration(s) {
            Ok(d) if whole_seconds && d.subsec_nanos() != 0 => {
                let down = d.as_secs();
                let choice = if down == 0 {
                    "1s".to_owned()
                } else {
                    format!("{down}s or {}s", down + 1)
                };
                self.err(
                    at(&v.referenced),
                    format!(
                        "{key}: `{s}` is not a whole number of seconds, and {key} is counted in seconds; write {choice}"
                    ),
                );
                None
            }
            Ok(d) => Some(d),
            Err(e) => {
                self.err(
                    at(&v.referenced),
                    format!(
                        "{key}: `{}` is not a duration ({e}); write one such as 30s, 5m, 1h30m or 500ms",
                        printable(s)
                    ),
                );
                None
            }
        }
    }

    /// Checks a name or label: printed in logs, metrics and `check` output, so it holds no
    /// control or invisible characters, no spaces at its ends, and stays short.
    pub(crate) fn label(&mut self, v: &Spanned<String>, key: &str) -> bool {
        let s = v.value.as_str();
        let why = if s.is_empty() {
            Some(format!(
                "`{key}` is empty; give a name, or leave the key out"
            ))
        } else if let Some(c) = s.chars().find(|c| *c != ' ' && odd_char(*c).is_some()) {
            Some(format!(
                "{key} `{}` contains {}; names are printed in logs and metrics, so remove it",
                printable(s),
                describe(c)
            ))
        } else if s.starts_with(' ') || s.ends_with(' ') {
            Some(format!(
                "{key} `{s}` starts or ends with a space; remove it (names are matched exactly)"
            ))
        } else if s.len() > MAX_NAME_BYTES {
            Some(format!(
                "{key} is {} bytes long; the limit is {MAX_NAME_BYTES}",
                s.len()
            ))
        } else {
            None
        };
        match why {
            Some(why) => {
                self.err(at(&v.referenced), why);
                false
            }
            None => true,
        }
    }
}

/// What an address is, when the kernel can never use it as a service's or a real server's
/// address (nothing sends packets to it, or it is an IPv4 address written as IPv6), and what to
/// write instead when there is something (`; write ...`).
pub(crate) fn unusable(addr: IpAddr) -> Option<(&'static str, String)> {
    match addr {
        IpAddr::V4(a) => unusable_v4(a).map(|k| (k, String::new())),
        IpAddr::V6(a) => {
            if let Some(v4) = mapped(a) {
                return Some((
                    "an IPv4-mapped IPv6 address",
                    format!("; write the IPv4 address {v4}"),
                ));
            }
            if a.is_unspecified() {
                Some(("the unspecified address", String::new()))
            } else if a.is_multicast() {
                Some(("a multicast address", String::new()))
            } else {
                None
            }
        }
    }
}

fn unusable_v4(a: Ipv4Addr) -> Option<&'static str> {
    if a.is_unspecified() {
        Some("the unspecified address")
    } else if a.octets()[0] == 0 {
        Some("in 0.0.0.0/8 (\"this network\"), which is never a destination")
    } else if a.is_multicast() {
        Some("a multicast address")
    } else if a.is_broadcast() {
        Some("the broadcast address")
    } else {
        None
    }
}

/// The IPv4 address inside an IPv4-mapped IPv6 address (`::ffff:10.0.0.1`).
fn mapped(a: Ipv6Addr) -> Option<Ipv4Addr> {
    let s = a.segments();
    (s[..5] == [0, 0, 0, 0, 0] && s[5] == 0xffff)
        .then(|| a.to_ipv4_mapped())
        .flatten()
}

/// What an address is, when it must not go on an interface (a VIP) although IPVS can serve it
/// to clients on this host: loopback and link-local.
pub(crate) fn host_scoped(addr: IpAddr) -> Option<&'static str> {
    match addr {
        IpAddr::V4(a) if a.is_loopback() => Some("a loopback address"),
        IpAddr::V4(a) if a.is_link_local() => Some("a link-local address"),
        IpAddr::V6(a) if a.is_loopback() => Some("a loopback address"),
        IpAddr::V6(a) if a.segments()[0] & 0xffc0 == 0xfe80 => Some("a link-local address"),
        _ => None,
    }
}

/// Why a real server (or fallback) address cannot be used, if it cannot: as [`unusable`], and
/// IPv6 link-local, which needs an interface the kernel's IPVS table cannot hold.
pub(crate) fn unusable_real(addr: IpAddr) -> Option<(&'static str, String)> {
    if let Some(why) = unusable(addr) {
        return Some(why);
    }
    match addr {
        IpAddr::V6(a) if a.segments()[0] & 0xffc0 == 0xfe80 => Some((
            "an IPv6 link-local address",
            "; such an address needs an interface (a scope), which an IPVS real server cannot have"
                .into(),
        )),
        _ => None,
    }
}
