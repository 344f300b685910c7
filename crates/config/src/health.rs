//! `check`, `on_failure`, `fallback` and `quorum`: health settings checked with their
//! `file:line:col` like everything else. A real's `check` overrides the service's field by field.

use std::time::Duration;

use model::{DestKey, DestSpec, ServiceKey};
use plan::health::{CheckKind, CheckSpec, OnFailure};

use crate::error::{describe, odd_char, printable};
use crate::raw::{RawCheck, Spanned};
use crate::validate::{Checker, at, suggest};

const KINDS: &[&str] = &["tcp", "http", "https", "exec", "none"];
/// Longest interval or timeout accepted: a check that rare is not a health check.
const MAX_CHECK_TIME: Duration = Duration::from_secs(3600);

/// The text before the `-` of a status range (to refuse `0200-299` and `+200-299`).
fn lo_text(s: &str) -> &str {
    s.split_once('-').map_or(s, |(lo, _)| lo)
}

/// A field, whether it fits this check's type, where it stands, and the types it is for.
type Misplaced<'a> = (bool, Option<(u64, u64)>, &'a str, &'a str);

impl Checker {
    fn check_duration(&mut self, v: &Spanned<String>, what: &str) -> Option<Duration> {
        match self.duration(v, what, false)? {
            d if !d.is_zero() && d <= MAX_CHECK_TIME => Some(d),
            _ => {
                self.err(
                    at(&v.referenced),
                    format!("{what} must be a duration from 1ms to 1h, such as 500ms, 2s or 1m"),
                );
                None
            }
        }
    }

    fn count(&mut self, v: &Spanned<String>, what: &str) -> Option<u32> {
        let n = self.number(v, what, "a whole number from 1 to 100")?;
        match u32::try_from(n) {
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
        let before = self.problems.total();
        let Some(kind) = self.given(&c.kind, "type") else {
            if c.kind.is_none() {
                self.err(
                    loc,
                    format!("a check needs `type`: one of {}", KINDS.join(", ")),
                );
            }
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
                    "unknown check type `{}`; {hint}valid types: {}",
                    printable(k),
                    KINDS.join(", ")
                ),
            );
            return Err(());
        }
        if k == "none" {
            return Ok(None);
        }
        let http = k == "http" || k == "https";
        let first = |l: &Option<Spanned<Vec<Spanned<String>>>>| {
            l.as_ref().map(|v| {
                v.value
                    .first()
                    .map_or(at(&v.referenced), |i| at(&i.referenced))
            })
        };
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
                first(&c.expect_status),
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
            (k == "exec", first(&c.command), "command", "exec"),
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
                let items = self.items(&c.command, "command").unwrap_or_default();
                for a in &items {
                    if a.value.contains('\0') {
                        self.err(
                            at(&a.referenced),
                            format!("`{}` contains a NUL character, which cannot be passed to a program; remove it", printable(&a.value)),
                        );
                    }
                }
                let command: Vec<String> = items.iter().map(|s| s.value.clone()).collect();
                match items.first() {
                    None if c.command.as_ref().is_some_and(|l| l.null) => {}
                    None => self.err(
                        at(&kind.referenced),
                        "an exec check needs `command`: [/absolute/program, \"{address}\", \"{port}\"] (run without a shell)",
                    ),
                    Some(p) if !p.value.starts_with('/') => self.err(
                        at(&p.referenced),
                        format!("`{}`: give the program's absolute path (exec checks run without a shell or PATH lookup)", printable(&p.value)),
                    ),
                    Some(_) => {}
                }
                CheckKind::Exec { command }
            }
            _ => {
                let path = match self.given(&c.path, "path") {
                    Some(p) => {
                        let bad = p
                            .value
                            .chars()
                            .find(|ch| ch.is_whitespace() || odd_char(*ch).is_some());
                        if !p.value.starts_with('/') || bad.is_some() {
                            let what = bad
                                .map(|ch| format!(" ({} found)", describe(ch)))
                                .unwrap_or_default();
                            self.err(
                                at(&p.referenced),
                                format!("`{}`: the path must start with `/` and have no spaces or control characters{what}", printable(&p.value)),
                            );
                        }
                        p.value.clone()
                    }
                    None => "/".to_owned(),
                };
                let mut expect_status = vec![];
                for s in self
                    .items(&c.expect_status, "expect_status")
                    .unwrap_or_default()
                {
                    // A range, as keepalived writes them: `200-299`.
                    if let Some((lo, hi)) = s.value.split_once('-') {
                        match (lo.parse::<u16>(), hi.parse::<u16>()) {
                            (Ok(lo), Ok(hi))
                                if (100..=599).contains(&lo) && (lo..=599).contains(&hi)
                                    && !lo.to_string().ne(lo_text(&s.value)) =>
                            {
                                expect_status.extend(lo..=hi);
                            }
                            _ => self.err(
                                at(&s.referenced),
                                format!("`{}` is not a range of HTTP statuses: write it as 200-299 (100 to 599, the lower first)", printable(&s.value)),
                            ),
                        }
                        continue;
                    }
                    let Some(n) = self.number(s, "expect_status", "an HTTP status from 100 to 599")
                    else {
                        continue;
                    };
                    match u16::try_from(n) {
                        Ok(n) if (100..=599).contains(&n) => expect_status.push(n),
                        _ => self.err(
                            at(&s.referenced),
                            format!("{} is not an HTTP status (100 to 599)", s.value),
                        ),
                    }
                }
                let host = self.given(&c.host, "host").map(|h| {
                    let v = &h.value;
                    if v.is_empty()
                        || v.chars()
                            .any(|ch| ch.is_whitespace() || odd_char(ch).is_some())
                    {
                        self.err(
                            at(&h.referenced),
                            format!("`{}` is not a host name", printable(v)),
                        );
                    }
                    v.clone()
                });
                let expect_body = self.given(&c.expect_body, "expect_body").map(|b| {
                    // Text to find in the body: tabs and line ends are text too, other
                    // control characters are a mistake (and would be printed raw).
                    if let Some(ch) = b
                        .value
                        .chars()
                        .find(|ch| ch.is_control() && !matches!(ch, '\t' | '\n' | '\r'))
                    {
                        self.err(
                            at(&b.referenced),
                            format!("expect_body contains {}; remove it", describe(ch)),
                        );
                    }
                    b.value.clone()
                });
                CheckKind::Http {
                    tls: k == "https",
                    path,
                    expect_status,
                    expect_body,
                    host,
                }
            }
        };
        let mut spec = CheckSpec::new(kind);
        if let Some(p) = self.given(&c.port, "port") {
            if let Some(n) = self.number(p, "port", "a port number from 1 to 65535") {
                match u16::try_from(n) {
                    Ok(n) if n > 0 => spec.port = Some(n),
                    _ => self.err(
                        at(&p.referenced),
                        format!("port {} is out of range (1-65535)", p.value),
                    ),
                }
            }
        }
        if let Some(v) = self.given(&c.interval, "interval") {
            spec.interval = self.check_duration(v, "interval").unwrap_or(spec.interval);
        }
        if let Some(v) = self.given(&c.timeout, "timeout") {
            spec.timeout = self.check_duration(v, "timeout").unwrap_or(spec.timeout);
        }
        if let Some(v) = self.given(&c.rise, "rise") {
            spec.rise = self.count(v, "rise").unwrap_or(spec.rise);
        }
        if let Some(v) = self.given(&c.fall, "fall") {
            spec.fall = self.count(v, "fall").unwrap_or(spec.fall);
        }
        if let Some(i) = self.given(&c.initial, "initial") {
            match i.value.as_str() {
                "up" => spec.initial_up = true,
                "down" => spec.initial_up = false,
                other => self.err(
                    at(&i.referenced),
                    format!("initial: `{}` is neither `up` nor `down`", printable(other)),
                ),
            }
        }
        if self.problems.total() > before {
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
                    format!(
                        "on_failure: `{}`; use `drain` (weight 0, connections finish) or `remove`",
                        printable(other)
                    ),
                );
                OnFailure::Drain
            }
        }
    }

    /// The quorum, which the service's reals must be able to meet.
    pub(crate) fn quorum(&mut self, v: &Spanned<String>, reals: usize) -> Option<u32> {
        let n = self.number(v, "quorum", "the minimum number of healthy reals")?;
        match u32::try_from(n) {
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
        forward: model::ForwardMethod,
        reals: &plan::FlatMap<DestKey, DestSpec>,
    ) -> Option<(DestKey, DestSpec)> {
        let key = self.dest(v, service, forward)?;
        if reals.contains_key(&key) {
            self.err(at(&v.referenced), format!("the fallback {key} is also a real server of this service; give a separate sorry server"));
            return None;
        }
        Some((key, plan::normalize_dest(DestSpec::new(forward, 1))))
    }
}
