//! lvsd's configuration file: YAML in, a validated [`plan::Desired`] out, or every problem with
//! its `file:line:col`. Parsing is bounded (size, nodes, depth, alias expansion) so a hostile or
//! broken file is an error in milliseconds, never a hang or a panic. [`export`] writes the same
//! format back from a table, so `export` → `apply` is a round trip.

mod error;
pub mod export;
mod fast;
mod health;
mod host;
mod incremental;
mod raw;
mod validate;

use std::path::Path;

pub use error::{Error, Problem};
pub use health::parse_check_duration;
pub use incremental::{Loaded, Reread, Undo};
use plan::Desired;
use plan::host::{HostSpec, Role};
pub(crate) use validate::Collected as Entries;
pub use validate::{SCHEDULERS, parse_duration};

/// Largest config file accepted, in bytes.
pub const MAX_FILE_BYTES: u64 = 16 * 1024 * 1024;

/// A validated configuration.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Config {
    /// The IPVS table the file describes.
    pub desired: Desired,
    /// This host's role and what it needs, with `--role` applied.
    pub host: HostSpec,
    /// The table-wide IPVS settings: connection timeouts and the sync daemons.
    pub globals: plan::globals::GlobalsDesired,
    /// Where the daemon writes how many services cannot serve (`ha.health_file`), for
    /// keepalived's `track_file`.
    pub health_file: Option<std::path::PathBuf>,
}

/// Reads and validates the file at `path`.
pub fn load(path: &Path) -> Result<Config, Error> {
    load_as(path, None)
}

/// Reads and validates the file at `path` for a host whose role the command line sets
/// (`--role`), overriding `host.role`: one file for the director and every real server.
pub fn load_as(path: &Path, role: Option<Role>) -> Result<Config, Error> {
    let text = read_text(path)?;
    parse_as(&text, &path.display().to_string(), role)
}

/// Reads the file at `path` as text: refused when larger than any sane config, or not UTF-8
/// (with where the first bad byte is).
pub fn read_text(path: &Path) -> Result<String, Error> {
    text_of(read_bytes(path)?, &path.display().to_string())
}

/// Reads the file at `path`: refused when larger than any sane config.
pub fn read_bytes(path: &Path) -> Result<Vec<u8>, Error> {
    let mut buf = Vec::new();
    read_bytes_into(path, &mut buf)?;
    Ok(buf)
}

/// [`read_bytes`] into `buf`, replacing what it held (its memory reused: a daemon reading a
/// large file again and again does not fault in fresh pages each time).
pub fn read_bytes_into(path: &Path, buf: &mut Vec<u8>) -> Result<(), Error> {
    let shown = path.display().to_string();
    let read = |source| Error::Read {
        path: shown.clone(),
        source,
    };
    let size = std::fs::metadata(path).map_err(read)?.len();
    if size > MAX_FILE_BYTES {
        return Err(Error::TooLarge {
            path: shown,
            size,
            limit: MAX_FILE_BYTES,
        });
    }
    use std::io::Read as _;
    buf.clear();
    std::fs::File::open(path)
        .and_then(|mut f| f.read_to_end(buf))
        .map_err(read)?;
    Ok(())
}

/// The file's bytes as text, or where the first byte that is not UTF-8 stands.
pub fn text_of(bytes: Vec<u8>, shown: &str) -> Result<String, Error> {
    let text = match String::from_utf8(bytes) {
        Ok(t) => t,
        Err(e) => {
            let bytes = e.as_bytes();
            let at = e.utf8_error().valid_up_to();
            let before = &bytes[..at];
            let line = before.iter().filter(|b| **b == b'\n').count() as u64 + 1;
            let line_start = before
                .iter()
                .rposition(|b| *b == b'\n')
                .map_or(0, |i| i + 1);
            let col = String::from_utf8_lossy(&before[line_start..])
                .chars()
                .count() as u64
                + 1;
            return Err(Error::Invalid {
                path: shown.to_owned(),
                problems: vec![Problem {
                    line,
                    col,
                    message: format!(
                        "the file is not UTF-8 text (byte 0x{:02x}); save it as UTF-8",
                        bytes.get(at).copied().unwrap_or_default()
                    ),
                }],
            });
        }
    };
    Ok(text)
}

fn options() -> serde_saphyr::Options {
    serde_saphyr::options! {
        budget: serde_saphyr::budget! {
            max_reader_input_bytes: Some(MAX_FILE_BYTES as usize),
            max_events: 20_000_000,
            max_nodes: 10_000_000,
            max_depth: 32,
            max_aliases: 10_000,
            max_anchors: 10_000,
            max_documents: 1,
        },
        alias_limits: serde_saphyr::alias_limits! {
            max_total_replayed_events: 100_000,
            max_replay_stack_depth: 16,
        },
        with_snippet: false,
    }
}

/// Validates config text; `path` is only used in messages.
pub fn parse(text: &str, path: &str) -> Result<Config, Error> {
    parse_as(text, path, None)
}

/// [`parse`] with the command line's role.
pub fn parse_as(text: &str, path: &str, role: Option<Role>) -> Result<Config, Error> {
    parse_entries(text, path, role).map(|(c, _)| c)
}

/// [`parse`] without the fast reader: everything through serde-saphyr. For tests that hold the
/// fast reader to it.
#[doc(hidden)]
pub fn parse_with_yaml_library(text: &str, path: &str) -> Result<Config, Error> {
    parse_inner(text, path, None, false).map(|(c, _)| c)
}

/// True when the fast reader takes `text` (valid, in its subset). For tests.
#[doc(hidden)]
pub fn fast_reader_takes(text: &str) -> bool {
    fast::read(text).is_some_and(|raw| {
        let mut checker = validate::Checker { problems: vec![] };
        checker.file(raw, None);
        checker.problems.is_empty()
    })
}

/// Parses the entries of a `services` list on their own (a stretch of a file, lines counted
/// from its start); `None` when it is not valid YAML.
pub(crate) fn parse_services(text: &str) -> Option<Entries> {
    if let Some(e) = fast::read_services(text).filter(|e| e.problems.is_empty()) {
        return Some(e);
    }
    serde_saphyr::from_str_with_options::<raw::Services>(text, options())
        .ok()
        .map(|s| s.0)
}

/// [`parse_as`], with each entry's identity and line.
pub(crate) fn parse_entries(
    text: &str,
    path: &str,
    role: Option<Role>,
) -> Result<(Config, Entries), Error> {
    parse_inner(text, path, role, true)
}

fn parse_inner(
    text: &str,
    path: &str,
    role: Option<Role>,
    fast: bool,
) -> Result<(Config, Entries), Error> {
    let invalid = |problems| Error::Invalid {
        path: path.to_owned(),
        problems,
    };
    if text.len() as u64 > MAX_FILE_BYTES {
        return Err(Error::TooLarge {
            path: path.to_owned(),
            size: text.len() as u64,
            limit: MAX_FILE_BYTES,
        });
    }
    let empty = text
        .lines()
        .all(|l| l.trim().is_empty() || l.trim_start().starts_with('#') || l.trim() == "---");
    // The fast reader takes the plain block style large files are written in, when it is
    // valid; anything else, and every problem, is serde-saphyr's to read and report.
    if let Some(raw) = fast.then(|| fast::read(text)).flatten() {
        let mut checker = validate::Checker { problems: vec![] };
        let (host, mut entries) = checker.file(raw, role);
        if checker.problems.is_empty() {
            let desired = std::mem::take(&mut entries.desired);
            return Ok((
                Config {
                    desired,
                    host,
                    ..Config::default()
                },
                entries,
            ));
        }
    }
    let raw: raw::RawFile = if empty {
        raw::RawFile::default()
    } else {
        serde_saphyr::from_str_with_options(text, options())
            .map_err(|e| invalid(vec![yaml_problem(&e)]))?
    };
    let mut checker = validate::Checker { problems: vec![] };
    let (host, mut entries) = checker.file(raw, role);
    if checker.problems.is_empty() {
        let desired = std::mem::take(&mut entries.desired);
        Ok((
            Config {
                desired,
                host,
                ..Config::default()
            },
            entries,
        ))
    } else {
        checker.problems.sort_by_key(|p| (p.line, p.col));
        // A service's check is checked for each of its reals too: say each problem once.
        checker.problems.dedup();
        Err(invalid(checker.problems))
    }
}

/// Turns a YAML or type error into a problem, with "did you mean" for misspelt keys.
fn yaml_problem(e: &serde_saphyr::Error) -> Problem {
    let (line, col) = e.location().map_or((0, 0), |l| (l.line(), l.column()));
    let message = match e.without_snippet() {
        serde_saphyr::Error::SerdeUnknownField {
            field, expected, ..
        } => {
            let hint = validate::suggest(field, expected)
                .map(|c| format!("did you mean `{c}`? "))
                .unwrap_or_default();
            format!(
                "unknown key `{field}`; {hint}valid keys here: {}",
                expected.join(", ")
            )
        }
        serde_saphyr::Error::Budget { .. } => format!(
            "the file exceeds lvsd's parsing limits (nesting, size or alias expansion): {}",
            strip_location(&e.without_snippet().to_string())
        ),
        other if other.to_string().starts_with("alias ") => format!(
            "aliases expand to more than lvsd accepts (a YAML bomb?): {}",
            strip_location(&other.to_string())
        ),
        other => plain_words(&strip_location(&other.to_string())),
    };
    Problem { line, col, message }
}

/// Says the YAML library's terse expectations in the config's words.
fn plain_words(s: &str) -> String {
    let map = [
        (
            "expected sequence start",
            "expected a list here (`- item` lines or `[a, b]`)",
        ),
        (
            "expected mapping start",
            "expected a mapping here (`key: value` lines)",
        ),
        ("expected string scalar", "expected a single value here"),
    ];
    map.iter()
        .find(|(k, _)| s == *k)
        .map_or_else(|| s.to_owned(), |(_, v)| (*v).to_owned())
}

/// Drops a trailing "at line X, column Y" that the YAML library adds, since we print our own.
fn strip_location(s: &str) -> String {
    let s = s.lines().next().unwrap_or_default();
    let cut = [" at line ", " (defined at "]
        .iter()
        .filter_map(|m| s.find(m))
        .min()
        .unwrap_or(s.len());
    s[..cut].to_owned()
}
