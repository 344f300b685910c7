//! `check`, `on_failure`, `fallback` and `quorum`: health settings checked with their
//! `file:line:col` like everything else. A real's `check` overrides the service's field by field.

use std::time::Duration;

use ipvs::{DestKey, DestSpec, ServiceKey};
use plan::health::{CheckKind, CheckSpec, OnFailure};

use crate::raw::{RawCheck, Scalar, Spanned};
use crate::validate::{Checker, at, suggest};

const KINDS: &[&str] = &["tcp", "http", "https", "exec", "none"];
/// Longest interval or timeout accepted: a check that rare is not a health check.
const MAX_CHECK_TIME: Duration = Duration::from_secs(3600);

/// Parses `500ms`, `2s`, `1m`, `1m30s` or plain seconds.
pub fn parse_check_duration(s: &str) -> Option<Duration> {
    let s = s.trim();
    if let Some(ms) = s.strip_suffix("ms") {
        return ms.parse::<u64>().ok().map(Duration::from_millis);
    }
    crate::validate::parse_duration(s).map(Duration::from_secs)
}

/// A field, whether it fits this check's type, where it stands, and the types it is for.
type Misplaced<'a> = (bool, Option<(u64, u64)>, &'a str, &'a str);

impl Checker {
    fn check_duration(&mut self, v: &Spanned<Scalar>, what: &str) -> Option<Duration> {
        let d = match &v.value {
            Scalar::Int(n) => u64::try_from(*n).ok().map(Duration::from_secs),
            Scalar::Str(s) => parse_check_duration(s),
        };
        match d {
            Some(d) if !d.is_zero() && d <= MAX_CHECK_TIME => Some(d),
            _ => {
                self.err(
                    at(&v.referenced),
                    format!("{what} must be a duration from 1ms to 1h, such as 500ms, 2s or 1m"),
                );
                None
            }
        }
    }

    fn count(&mut self, v: &Spanned<i64>, what: &str) -> Option<u32> {
        match u32::try_from(v.value) {
            Ok(n) if (1..=100).contains(&n) => Some(n),
            _ => {
                self.err(
                    at(&v.referenced),
                    format!(
                        "{what} {} is out of range: 1 to 100 consecutive results",
                        v.value
                    ),
                );
                None
            }
        }
    }

    /// A check's settings; `Ok(None)` for `type: none`, `Err` when something is wrong (already
    /// reported).
    pub(crate) fn check(&mut self, c: &RawCheck, loc: (u64, u64)) -> Result<Option<CheckSpec>, ()> {
        let before = self.problems.len();
        let Some(kind) = &c.kind else {
            self.err(
                loc,
                format!("a check needs `type`: one of {}", KINDS.join(", ")),
            );
            return Err(());
        };
        let k = kind.value.as_str();
        if !KINDS.contains(&k) {
            let hint = suggest(k, KINDS)
                .map(|s| format!("did you mean `{s}`? "))
                .unwrap_or_default();
            self.err(
                at(&kind.referenced),
                format!(
                    "unknown check type `{k}`; {hint}valid types: {}",
                    KINDS.join(", ")
                ),
            );
            return Err(());
        }
        if k == "none" {
            return Ok(None);
        }
        let http = k == "http" || k == "https";
        // Fields that belong to other types.
        let misplaced: [Misplaced; 5] = [
            (
                http,
                c.path.as_ref().map(|v| at(&v.referenced)),
                "path",
                "http and https",
            ),
            (
                http,
                c.expect_status
                    .as_ref()
                    .and_then(|v| v.first())
                    .map(|v| at(&v.referenced)),
                "expect_status",
                "http and https",
            ),
            (
                http,
                c.expect_body.as_ref().map(|v| at(&v.referenced)),
                "expect_body",
                "http and https",
            ),
            (
                http,
                c.host.as_ref().map(|v| at(&v.referenced)),
                "host",
                "http and https",
            ),
            (
                k == "exec",
                c.command
                    .as_ref()
                    .and_then(|v| v.first())
                    .map(|v| at(&v.referenced)),
                "command",
                "exec",
            ),
        ];
        for (fits, where_, field, types) in misplaced {
            if let (false, Some(l)) = (fits, where_) {
                self.err(
                    l,
                    format!("`{field}` is for {types} checks, and this one is `type: {k}`"),
                );
            }
        }
        let kind = match k {
            "tcp" => CheckKind::Tcp,
            "exec" => {
                let command: Vec<String> = c
                    .command
                    .iter()
                    .flatten()
                    .map(|s| s.value.clone())
                    .collect();
                match command.first() {
                    None => self.err(
                        at(&kind.referenced),
                        "an exec check needs `command`: [/absolute/program, \"{address}\", \"{port}\"] (run without a shell)",
                    ),
                    Some(p) if !p.starts_with('/') => self.err(
                        c.command.as_ref().and_then(|v| v.first()).map_or(loc, |v| at(&v.referenced)),
                        format!("`{p}`: give the program's absolute path (exec checks run without a shell or PATH lookup)"),
                    ),
                    Some(_) => {}
                }
                CheckKind::Exec { command }
            }
            _ => {
                let path = c
                    .path
                    .as_ref()
                    .map_or_else(|| "/".to_owned(), |p| p.value.clone());
                if !path.starts_with('/') || path.contains(char::is_whitespace) {
                    if let Some(p) = &c.path {
                        self.err(
                            at(&p.referenced),
                            format!("`{path}`: the path must start with `/` and have no spaces"),
                        );
                    }
                }
                let mut expect_status = vec![];
                for s in c.expect_status.iter().flatten() {
                    match u16::try_from(s.value) {
                        Ok(n) if (100..=599).contains(&n) => expect_status.push(n),
                        _ => self.err(
                            at(&s.referenced),
                            format!("{} is not an HTTP status (100 to 599)", s.value),
                        ),
                    }
                }
                let host = c.host.as_ref().map(|h| h.value.clone());
                if let (Some(h), Some(v)) = (&host, &c.host) {
                    if h.is_empty() || h.contains(|ch: char| ch.is_whitespace() || ch.is_control())
                    {
                        self.err(at(&v.referenced), format!("`{h}` is not a host name"));
                    }
                }
                CheckKind::Http {
                    tls: k == "https",
                    path,
                    expect_status,
                    expect_body: c.expect_body.as_ref().map(|b| b.value.clone()),
                    host,
                }
            }
        };
        let mut spec = CheckSpec::new(kind);
        if let Some(p) = &c.port {
            match u16::try_from(p.value) {
                Ok(n) if n > 0 => spec.port = Some(n),
                _ => self.err(
                    at(&p.referenced),
                    format!("port {} is out of range (1-65535)", p.value),
                ),
            }
        }
        if let Some(v) = &c.interval {
            spec.interval = self.check_duration(v, "interval").unwrap_or(spec.interval);
        }
        if let Some(v) = &c.timeout {
            spec.timeout = self.check_duration(v, "timeout").unwrap_or(spec.timeout);
        }
        if let Some(v) = &c.rise {
            spec.rise = self.count(v, "rise").unwrap_or(spec.rise);
        }
        if let Some(v) = &c.fall {
            spec.fall = self.count(v, "fall").unwrap_or(spec.fall);
        }
        if let Some(i) = &c.initial {
            match i.value.as_str() {
                "up" => spec.initial_up = true,
                "down" => spec.initial_up = false,
                other => self.err(
                    at(&i.referenced),
                    format!("initial: `{other}` is neither `up` nor `down`"),
                ),
            }
        }
        if self.problems.len() > before {
            Err(())
        } else {
            Ok(Some(spec))
        }
    }

    pub(crate) fn on_failure(&mut self, v: &Spanned<String>) -> OnFailure {
        match v.value.as_str() {
            "drain" => OnFailure::Drain,
            "remove" => OnFailure::Remove,
            other => {
                self.err(
                    at(&v.referenced),
                    format!("on_failure: `{other}`; use `drain` (weight 0, connections finish) or `remove`"),
                );
                OnFailure::Drain
            }
        }
    }

    /// The quorum, which the service's reals must be able to meet.
    pub(crate) fn quorum(&mut self, v: &Spanned<i64>, reals: usize) -> Option<u32> {
        match u32::try_from(v.value) {
            Ok(n) if n >= 1 && n as usize <= reals => Some(n),
            _ => {
                self.err(
                    at(&v.referenced),
                    format!("quorum {} cannot be met: it is the minimum number of healthy reals, 1 to {reals} here", v.value),
                );
                None
            }
        }
    }

    /// The fallback server: like a real, with the service's forwarding and weight 1.
    pub(crate) fn fallback(
        &mut self,
        v: &Spanned<String>,
        service: ServiceKey,
        forward: ipvs::ForwardMethod,
        reals: &std::collections::BTreeMap<DestKey, DestSpec>,
    ) -> Option<(DestKey, DestSpec)> {
        let key = self.dest(v, service, forward)?;
        if reals.contains_key(&key) {
            self.err(at(&v.referenced), format!("the fallback {key} is also a real server of this service; give a separate sorry server"));
            return None;
        }
        Some((key, plan::normalize_dest(DestSpec::new(forward, 1))))
    }
}
