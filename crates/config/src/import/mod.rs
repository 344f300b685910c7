//! Migration: another tool's configuration in, lvsd YAML out (`lvsd import --from keepalived
//! FILE`, `--from ldirectord FILE`). Each setting is converted to what lvsd does the same way;
//! what has no equivalent is kept as a YAML comment at the place it came from (naming its file
//! and line) and summed up in [`Converted::summary`], so nothing is dropped silently. The
//! output is checked with lvsd's own reader before it is handed back: it passes `lvsd check`.

mod ipvsadm;
mod keepalived;
mod ldirectord;

use std::fmt::Write as _;

use crate::error::printable;
use crate::{Error, Problem};

pub use ipvsadm::convert as ipvsadm;
pub use keepalived::convert as keepalived;
pub(crate) use keepalived::split_command as keepalived_split;
pub use ldirectord::convert as ldirectord;

/// Lines of the summary shown, at most.
const MAX_SUMMARY: usize = 1000;

/// A converted configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Converted {
    /// The lvsd YAML.
    pub yaml: String,
    /// One line per setting that has no equivalent (also a comment in the YAML), and per
    /// section left to the other tool (keepalived's VRRP).
    pub summary: Vec<String>,
}

/// A health check as the output writes it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Check {
    pub kind: &'static str,
    pub port: Option<u16>,
    pub path: Option<String>,
    pub expect_status: Vec<String>,
    pub expect_body: Option<String>,
    pub host: Option<String>,
    pub command: Vec<String>,
    pub interval: Option<String>,
    pub timeout: Option<String>,
    pub rise: Option<u32>,
    pub fall: Option<u32>,
    pub initial: Option<&'static str>,
}

/// A real server as the output writes it.
#[derive(Debug, Clone, Default)]
pub(crate) struct Real {
    /// The file and line it came from, for a problem lvsd finds in what it became.
    pub source: Option<(String, u64)>,
    pub comments: Vec<String>,
    pub address: String,
    pub weight: Option<u32>,
    pub forward: Option<&'static str>,
    pub tunnel: Option<String>,
    pub max_connections: Option<u32>,
    pub min_connections: Option<u32>,
    pub check: Option<Check>,
    pub check_comments: Vec<String>,
}

/// A service as the output writes it.
#[derive(Debug, Clone, Default)]
pub(crate) struct Service {
    /// The file and line it came from, for a problem lvsd finds in what it became.
    pub source: Option<(String, u64)>,
    pub comments: Vec<String>,
    /// Written as comments only (a service the other tool would not create).
    pub disabled: bool,
    pub name: Option<String>,
    pub address: Option<String>,
    pub fwmark: Option<u32>,
    pub ipv6: bool,
    pub protocol: Option<&'static str>,
    pub scheduler: String,
    pub forward: &'static str,
    pub tunnel: Option<String>,
    pub persistence: Option<String>,
    pub flags: Vec<&'static str>,
    pub check: Option<Check>,
    pub check_comments: Vec<String>,
    pub on_failure: Option<&'static str>,
    pub fallback: Option<String>,
    pub quorum: Option<u32>,
    pub notes: Vec<String>,
    pub reals: Vec<Real>,
}

/// Text for YAML, in double quotes: safe whatever it holds.
pub(crate) fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A comment line's text: one line, escaped.
fn comment(out: &mut String, indent: &str, text: &str) {
    for line in text.lines() {
        let _ = writeln!(out, "{indent}# {}", printable(line));
    }
}

/// A duration in the config's words: whole seconds as `Ns`, else milliseconds.
pub(crate) fn duration_ms(ms: u64) -> String {
    if ms % 1000 == 0 {
        format!("{}s", ms / 1000)
    } else {
        format!("{ms}ms")
    }
}

fn write_check(out: &mut String, indent: &str, c: &Check, comments: &[String]) {
    let _ = writeln!(out, "{indent}check:");
    let i = format!("{indent}  ");
    for c in comments {
        comment(out, &i, c);
    }
    let _ = writeln!(out, "{i}type: {}", c.kind);
    if let Some(p) = c.port {
        let _ = writeln!(out, "{i}port: {p}");
    }
    if let Some(p) = &c.path {
        let _ = writeln!(out, "{i}path: {}", quote(p));
    }
    if !c.expect_status.is_empty() {
        let _ = writeln!(out, "{i}expect_status: [{}]", c.expect_status.join(", "));
    }
    if let Some(b) = &c.expect_body {
        let _ = writeln!(out, "{i}expect_body: {}", quote(b));
    }
    if let Some(h) = &c.host {
        let _ = writeln!(out, "{i}host: {}", quote(h));
    }
    if !c.command.is_empty() {
        let args: Vec<String> = c.command.iter().map(|a| quote(a)).collect();
        let _ = writeln!(out, "{i}command: [{}]", args.join(", "));
    }
    if let Some(v) = &c.interval {
        let _ = writeln!(out, "{i}interval: {v}");
    }
    if let Some(v) = &c.timeout {
        let _ = writeln!(out, "{i}timeout: {v}");
    }
    if let Some(v) = c.rise {
        let _ = writeln!(out, "{i}rise: {v}");
    }
    if let Some(v) = c.fall {
        let _ = writeln!(out, "{i}fall: {v}");
    }
    if let Some(v) = c.initial {
        let _ = writeln!(out, "{i}initial: {v}");
    }
}

/// Where a stretch of the output came from: its first byte, and the source's file and line.
pub(crate) type Marker = (usize, String, u64);

fn write_service(out: &mut String, s: &Service, markers: &mut Vec<Marker>) {
    for c in &s.comments {
        comment(out, "  ", c);
    }
    let mut body = String::new();
    let mut at: Vec<(usize, &(String, u64))> = vec![];
    if let Some(src) = &s.source {
        at.push((0, src));
    }
    let first = |body: &mut String, line: String| {
        let lead = if body.is_empty() { "  - " } else { "    " };
        let _ = writeln!(body, "{lead}{line}");
    };
    if let Some(n) = &s.name {
        first(&mut body, format!("name: {}", quote(n)));
    }
    if let Some(a) = &s.address {
        first(&mut body, format!("address: {}", quote(a)));
        if let Some(p) = s.protocol {
            first(&mut body, format!("protocol: {p}"));
        }
    }
    if let Some(m) = s.fwmark {
        first(&mut body, format!("fwmark: {m}"));
        if s.ipv6 {
            first(&mut body, "family: ipv6".into());
        }
    }
    first(&mut body, format!("scheduler: {}", s.scheduler));
    first(&mut body, format!("forward: {}", s.forward));
    if let Some(t) = &s.tunnel {
        first(&mut body, format!("tunnel: {t}"));
    }
    if let Some(p) = &s.persistence {
        first(&mut body, format!("persistence: {p}"));
    }
    if !s.flags.is_empty() {
        first(&mut body, format!("flags: [{}]", s.flags.join(", ")));
    }
    for n in &s.notes {
        comment(&mut body, "    ", n);
    }
    if let Some(c) = &s.check {
        write_check(&mut body, "    ", c, &s.check_comments);
    }
    if let Some(o) = s.on_failure {
        first(&mut body, format!("on_failure: {o}"));
    }
    if let Some(f) = &s.fallback {
        first(&mut body, format!("fallback: {}", quote(f)));
    }
    if let Some(q) = s.quorum {
        first(&mut body, format!("quorum: {q}"));
    }
    if s.reals.is_empty() {
        first(&mut body, "reals: []".into());
    } else {
        first(&mut body, "reals:".into());
        for r in &s.reals {
            for c in &r.comments {
                comment(&mut body, "      ", c);
            }
            if let Some(src) = r.source.as_ref().or(s.source.as_ref()) {
                at.push((body.len(), src));
            }
            let _ = writeln!(body, "      - address: {}", quote(&r.address));
            let i = "        ";
            if let Some(w) = r.weight {
                let _ = writeln!(body, "{i}weight: {w}");
            }
            if let Some(f) = r.forward {
                let _ = writeln!(body, "{i}forward: {f}");
            }
            if let Some(t) = &r.tunnel {
                let _ = writeln!(body, "{i}tunnel: {t}");
            }
            if let Some(v) = r.max_connections {
                let _ = writeln!(body, "{i}max_connections: {v}");
            }
            if let Some(v) = r.min_connections {
                let _ = writeln!(body, "{i}min_connections: {v}");
            }
            if let Some(c) = &r.check {
                write_check(&mut body, i, c, &r.check_comments);
            }
        }
    }
    if s.disabled {
        for line in body.lines() {
            let _ = writeln!(out, "  # {line}");
        }
    } else {
        let base = out.len();
        markers.extend(at.into_iter().map(|(b, (f, l))| (base + b, f.clone(), *l)));
        out.push_str(&body);
    }
}

/// Writes the YAML and checks it with lvsd's reader: a conversion lvsd would refuse is an
/// error here, never output, and it cites the line of the file the user wrote that the
/// refused setting came from (the converted text is never shown).
pub(crate) fn finish(
    header: &[String],
    services: &[Service],
    summary: Vec<String>,
    source: &str,
) -> Result<Converted, Error> {
    let mut out = String::new();
    let mut markers = vec![];
    for h in header {
        comment(&mut out, "", h);
    }
    if services.iter().all(|s| s.disabled) {
        out.push_str("services: []\n");
    } else {
        out.push_str("services:\n");
    }
    for s in services {
        write_service(&mut out, s, &mut markers);
    }
    checked(out, summary, source, markers)
}

/// `yaml` handed back when lvsd's reader takes it; otherwise its problems, each at the source
/// line `markers` name for the stretch of `yaml` it is in.
pub(crate) fn checked(
    yaml: String,
    summary: Vec<String>,
    source: &str,
    mut markers: Vec<Marker>,
) -> Result<Converted, Error> {
    let shown = format!("{source} (converted)");
    let e = match crate::parse(&yaml, &shown) {
        Ok(_) => {
            // Printed on a terminal: text from the file is escaped, and a file of a million
            // unconverted settings is not a million lines (each is a comment in the YAML).
            let more = summary.len().saturating_sub(MAX_SUMMARY);
            let mut summary: Vec<String> = summary
                .into_iter()
                .take(MAX_SUMMARY)
                .map(|l| printable(&l).into_owned())
                .collect();
            if more > 0 {
                summary.push(format!(
                    "and {more} more lines like these, not shown (each is a comment in the YAML at its place)"
                ));
            }
            return Ok(Converted { yaml, summary });
        }
        Err(e) => e,
    };
    markers.sort_by_key(|m| m.0);
    // Each marker's first line in `yaml`, counted in one pass.
    let mut lines: Vec<(u64, &str, u64)> = Vec::with_capacity(markers.len());
    let mut line = 1u64;
    let mut pos = 0usize;
    for (byte, file, l) in &markers {
        let end = (*byte).min(yaml.len());
        if end > pos {
            line += memchr::memchr_iter(b'\n', &yaml.as_bytes()[pos..end]).count() as u64;
            pos = end;
        }
        lines.push((line, file.as_str(), *l));
    }
    let origin = |yaml_line: u64| -> (String, u64) {
        let i = lines.partition_point(|(l, ..)| *l <= yaml_line);
        match i.checked_sub(1).and_then(|i| lines.get(i)) {
            Some((_, f, l)) => ((*f).to_owned(), *l),
            None => (source.to_owned(), 1),
        }
    };
    let mut files: Vec<String> = vec![];
    let mut found: Vec<(usize, Problem)> = vec![];
    let mut locate = |file: String, p: Problem, found: &mut Vec<(usize, Problem)>| {
        let i = match files.iter().position(|f| *f == file) {
            Some(i) => i,
            None => {
                files.push(file);
                files.len() - 1
            }
        };
        found.push((i, p));
    };
    match e {
        Error::Invalid { problems, .. } => {
            for p in problems {
                let (file, l) = origin(p.line);
                let message = cite_lines(&p.message, &origin);
                locate(
                    file,
                    Problem {
                        line: l,
                        col: 1,
                        message,
                    },
                    &mut found,
                );
            }
        }
        Error::TooLarge { size, limit, .. } => locate(
            source.to_owned(),
            Problem {
                line: 1,
                col: 1,
                message: format!(
                    "the converted config would be {size} bytes; lvsd reads at most {limit} bytes: convert the file in parts"
                ),
            },
            &mut found,
        ),
        other => return Err(other),
    }
    Err(gather(&files, found, 0))
}

/// A message of lvsd's reader with each `on line N` of the converted text said as the
/// source's `at FILE:LINE`.
fn cite_lines(message: &str, origin: &dyn Fn(u64) -> (String, u64)) -> String {
    const ON: &str = "on line ";
    let mut out = String::with_capacity(message.len());
    let mut rest = message;
    while let Some(i) = rest.find(ON) {
        let after = &rest[i + ON.len()..];
        let digits = after.bytes().take_while(u8::is_ascii_digit).count();
        match after[..digits].parse::<u64>() {
            Ok(n) => {
                let (f, l) = origin(n);
                out.push_str(&rest[..i]);
                let _ = write!(out, "at {f}:{l}");
                rest = &after[digits..];
            }
            Err(_) => {
                out.push_str(&rest[..i + ON.len()]);
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

/// Problems found in several files (indexes into `files`) as one error: by file in the order
/// read, by line in each, at most [`crate::MAX_SHOWN`] shown.
pub(crate) fn gather(
    files: &[String],
    mut problems: Vec<(usize, Problem)>,
    omitted: usize,
) -> Error {
    let mut by_file: Vec<Error> = vec![];
    problems.sort_by_key(|(f, p)| (*f, p.line, p.col));
    for (f, mut p) in problems {
        // Whatever a message quotes from the file, it reaches a terminal escaped.
        if let std::borrow::Cow::Owned(m) = printable(&p.message) {
            p.message = m;
        }
        let name = files.get(f).cloned().unwrap_or_default();
        match by_file.last_mut() {
            Some(Error::Invalid { path, problems, .. }) if *path == name => problems.push(p),
            _ => by_file.push(Error::Invalid {
                path: name,
                problems: vec![p],
                omitted: 0,
            }),
        }
    }
    if let Some(Error::Invalid { omitted: o, .. }) = by_file.last_mut() {
        *o += omitted;
    }
    Error::combine(by_file).unwrap_or(Error::Invalid {
        path: files.first().cloned().unwrap_or_default(),
        problems: vec![],
        omitted: 0,
    })
}
