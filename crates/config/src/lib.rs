//! lvsd's configuration file: YAML in, a validated [`plan::Desired`] out, or every problem with
//! its `file:line:col`. Reading is bounded (a regular file of at most [`MAX_FILE_BYTES`], read
//! to that limit and no further) and so is parsing (nodes, depth, alias expansion), so a
//! hostile or broken file is an error in milliseconds, never a hang or a panic. [`export`]
//! writes the same format back from a table, so `export` → `apply` is a round trip.

mod duration;
mod error;
pub mod export;
mod fast;
mod glob;
mod ha;
mod health;
mod host;
pub mod import;
mod include;
mod incremental;
mod raw;
mod stamp;
mod validate;
mod values;

use std::path::Path;

pub use duration::{DurationError, parse_duration};
pub use error::{Error, Located, MAX_SHOWN, Problem, printable, split_hint};
pub use include::{IncludeDir, Sources};
pub use incremental::{Loaded, Reread, Undo};
use plan::Desired;
use plan::host::{HostSpec, Role};
pub use stamp::{FileStamp, Stamp};
pub(crate) use validate::Collected as Entries;
pub use validate::SCHEDULERS;

/// Largest config file accepted, in bytes: a 10,000-service file with ten reals each is about
/// 3 MB, so this leaves room for five times that and bounds what a mistaken path (a log, a
/// disk image) can cost.
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
    /// Which file each service came from, when the main file includes others.
    pub sources: Sources,
}

/// What `lvsd check` reports of a valid file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    /// Services in the file.
    pub services: usize,
    /// Real servers, over all services.
    pub reals: usize,
    /// This host's role and what it needs, with `--role` applied.
    pub host: HostSpec,
    /// When the main file includes others: every file, the main one first, with the services
    /// it defines.
    pub files: Vec<FileSummary>,
    /// What is valid but probably not meant: `mh` services without `mh-fallback`
    /// ([`plan::hashing::mh_without_fallback`]).
    pub warnings: Vec<String>,
}

/// One file of a generation, for `lvsd check`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileSummary {
    /// The file (escaped for printing).
    pub path: String,
    /// Its services: identity, name, and how many real servers.
    pub services: Vec<(model::ServiceKey, Option<String>, usize)>,
}

impl Summary {
    /// The summary of a config read whole.
    pub fn of(c: &Config) -> Summary {
        let mut files: Vec<FileSummary> = c
            .sources
            .files
            .iter()
            .map(|p| FileSummary {
                path: p.clone(),
                services: vec![],
            })
            .collect();
        if c.sources.includes() {
            let index: std::collections::HashMap<&str, usize> = c
                .sources
                .files
                .iter()
                .enumerate()
                .map(|(i, f)| (f.as_str(), i))
                .collect();
            for (k, s) in &c.desired.services {
                let f = c
                    .sources
                    .file_of(k)
                    .and_then(|f| index.get(f))
                    .copied()
                    .unwrap_or(0);
                files[f].services.push((*k, s.name.clone(), s.reals.len()));
            }
        }
        Summary {
            services: c.desired.services.len(),
            reals: c.desired.services.values().map(|s| s.reals.len()).sum(),
            host: c.host.clone(),
            files,
            warnings: c
                .desired
                .services
                .iter()
                .filter_map(|(k, s)| plan::hashing::mh_without_fallback(k, &s.spec))
                .collect(),
        }
    }
}

/// Reads and validates the file at `path` as [`load_as`] does, the same verdict and the
/// same problems, but keeps nothing of a valid service beyond its identity: what `lvsd check`
/// needs, in memory proportional to the file rather than to the table it describes.
pub fn check_as(path: &Path, role: Option<Role>) -> Result<Summary, Error> {
    check_at(path, path, role)
}

/// [`check_as`] for the file at `path` as if it stood at `at` (`lvsd check --as`): a
/// configuration manager (Ansible's `validate`, Salt's `check_cmd`) checks a temporary copy
/// somewhere else before it moves it into place, and the copy's `include:` patterns must name
/// the files next to where it will stand, not next to the copy. Messages about the main file
/// cite `path` (the file given, with its lines); included files are cited at their real paths.
pub fn check_at(path: &Path, at: &Path, role: Option<Role>) -> Result<Summary, Error> {
    let text = read_text(path)?;
    if include::may_include(text.as_bytes()) {
        // A generation: every file read whole (its verdict is the one `apply` reaches).
        return include::read_at(&text, path, at, role, &mut Stamp::default())
            .map(|g| Summary::of(&g.config));
    }
    check_text(&text, &path.display().to_string(), role)
}

/// [`check_as`] on text; `path` is only used in messages.
pub fn check_text(text: &str, path: &str, role: Option<Role>) -> Result<Summary, Error> {
    if text.len() as u64 > MAX_FILE_BYTES {
        return parse_as(text, path, role).map(|c| Summary::of(&c));
    }
    let counted = |checker: validate::Checker, host: HostSpec, entries: Entries| {
        // A service defined twice: the full reading says where (below).
        if !entries.unique() {
            return None;
        }
        if !checker.problems.is_empty() {
            let (problems, omitted) = checker.problems.finish();
            return Some(Err(Error::Invalid {
                path: printable(path).into_owned(),
                problems,
                omitted,
            }));
        }
        Some(Ok(Summary {
            services: entries.counted.0,
            reals: entries.counted.1,
            host,
            files: vec![],
            warnings: checker.warnings,
        }))
    };
    if let Some(raw) = fast::read::<true>(text) {
        let mut checker = validate::Checker::default();
        let (host, entries, _) = checker.file(raw, role);
        checker.refuse_include();
        if let Some(done) = counted(checker, host, entries) {
            return done;
        }
    } else {
        // A YAML error is the same whatever is kept of the services: said at once.
        let raw =
            serde_saphyr::from_str_with_options::<Option<raw::RawFile<true>>>(text, options())
                .map_err(|e| Error::Invalid {
                    path: printable(path).into_owned(),
                    problems: vec![yaml_problem(&e, text)],
                    omitted: 0,
                })?;
        let mut checker = validate::Checker::default();
        let (host, entries, _) = checker.file(raw.unwrap_or_default(), role);
        checker.refuse_include();
        for t in entries.later.misspelt(text) {
            checker.err(t.at, validate::TYPED_PERSISTENCE);
        }
        if let Some(done) = counted(checker, host, entries) {
            return done;
        }
    }
    // A duplicate: said as the full reading says it.
    parse_as(text, path, role).map(|c| Summary::of(&c))
}

/// Reads and validates the file at `path`.
pub fn load(path: &Path) -> Result<Config, Error> {
    load_as(path, None)
}

/// Reads and validates the file at `path` for a host whose role the command line sets
/// (`--role`), overriding `host.role`: one file for the director and every real server.
///
/// A main file with `include:` is read with every file it includes, as one generation: see
/// [`Sources`] for where each service came from.
pub fn load_as(path: &Path, role: Option<Role>) -> Result<Config, Error> {
    let text = read_text(path)?;
    if include::may_include(text.as_bytes()) {
        return include::read(&text, path, role, &mut Stamp::default()).map(|g| g.config);
    }
    parse_as(&text, &path.display().to_string(), role)
}

/// Reads the file at `path` as text: refused when it is not a regular file, larger than any
/// sane config, or not UTF-8 (with where the first bad byte is).
pub fn read_text(path: &Path) -> Result<String, Error> {
    text_of(read_bytes(path)?, &path.display().to_string())
}

/// Reads the file at `path`: refused when it is not a regular file or larger than any sane
/// config.
pub fn read_bytes(path: &Path) -> Result<Vec<u8>, Error> {
    read_stamped(path).map(|(b, _)| b)
}

/// [`read_bytes`], with the stamp of the file the bytes came from.
pub fn read_stamped(path: &Path) -> Result<(Vec<u8>, FileStamp), Error> {
    let mut buf = Vec::new();
    let stamp = read_bytes_into(path, &mut buf)?;
    Ok((buf, stamp))
}

/// What a file that is not a regular file is, for the message.
fn kind_of(t: std::fs::FileType) -> &'static str {
    use std::os::unix::fs::FileTypeExt as _;
    if t.is_dir() {
        "a directory"
    } else if t.is_char_device() {
        "a character device"
    } else if t.is_block_device() {
        "a block device"
    } else if t.is_fifo() {
        "a FIFO (named pipe)"
    } else if t.is_socket() {
        "a socket"
    } else {
        "something other than a file"
    }
}

/// [`read_bytes`] into `buf`, replacing what it held (its memory reused: a daemon reading a
/// large file again and again does not fault in fresh pages each time).
///
/// Used by `check`, `apply` and the daemon's reload alike. The file is opened without
/// blocking (a FIFO would otherwise wait for a writer forever) and its type is taken from the
/// opened file, not the path (which can be replaced in between): anything but a regular file
/// is refused before a byte is read. The read itself stops one byte past the limit, so a file
/// that grows after its size was looked at, or lies about it, is refused too. Returns the
/// stamp of the opened file, taken before its bytes were read (see [`Stamp`]).
pub fn read_bytes_into(path: &Path, buf: &mut Vec<u8>) -> Result<FileStamp, Error> {
    use std::os::unix::fs::OpenOptionsExt as _;
    let shown = printable(&path.display().to_string()).into_owned();
    let read = |source| Error::Read {
        path: shown.clone(),
        source,
    };
    let file = match std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
    {
        Ok(f) => f,
        Err(e) => {
            // A socket cannot be opened at all (ENXIO): say what it is.
            if let Ok(m) = std::fs::metadata(path) {
                if !m.file_type().is_file() {
                    return Err(Error::NotAFile {
                        path: shown,
                        kind: kind_of(m.file_type()),
                    });
                }
            }
            return Err(read(e));
        }
    };
    let meta = file.metadata().map_err(read)?;
    if !meta.file_type().is_file() {
        return Err(Error::NotAFile {
            path: shown,
            kind: kind_of(meta.file_type()),
        });
    }
    if meta.len() > MAX_FILE_BYTES {
        return Err(Error::TooLarge {
            path: shown,
            size: meta.len(),
            limit: MAX_FILE_BYTES,
        });
    }
    buf.clear();
    buf.reserve(meta.len() as usize);
    read_bounded(file, buf, shown)?;
    Ok(FileStamp::of(&meta))
}

/// Reads `r` to its end into `buf`, but never more than one byte past [`MAX_FILE_BYTES`]:
/// whatever the file's size said a moment before, an endless or growing file is refused.
fn read_bounded(r: impl std::io::Read, buf: &mut Vec<u8>, shown: String) -> Result<(), Error> {
    use std::io::Read as _;
    if let Err(source) = r.take(MAX_FILE_BYTES + 1).read_to_end(buf) {
        return Err(Error::Read {
            path: shown,
            source,
        });
    }
    if buf.len() as u64 > MAX_FILE_BYTES {
        let size = buf.len() as u64;
        buf.clear();
        return Err(Error::TooLarge {
            path: shown,
            size,
            limit: MAX_FILE_BYTES,
        });
    }
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
                path: printable(shown).into_owned(),
                problems: vec![Problem {
                    line,
                    col,
                    message: format!(
                        "the file is not UTF-8 text (byte 0x{:02x}); save it as UTF-8",
                        bytes.get(at).copied().unwrap_or_default()
                    ),
                }],
                omitted: 0,
            });
        }
    };
    Ok(text)
}

/// Aliases accepted, and the values they may expand to: a config needs few, a YAML bomb
/// needs many.
const MAX_ALIASES: usize = 10_000;
const MAX_REPLAYED: usize = 100_000;
/// Nesting accepted: a config nests six deep (services, a service, reals, a real, check, a
/// list in it).
const MAX_DEPTH: usize = 32;

fn options() -> serde_saphyr::Options {
    serde_saphyr::options! {
        budget: serde_saphyr::budget! {
            max_reader_input_bytes: Some(MAX_FILE_BYTES as usize),
            max_events: 20_000_000,
            max_nodes: 10_000_000,
            max_depth: MAX_DEPTH,
            max_aliases: MAX_ALIASES,
            max_anchors: MAX_ALIASES,
            max_documents: 1,
        },
        alias_limits: serde_saphyr::alias_limits! {
            max_total_replayed_events: MAX_REPLAYED,
            max_replay_stack_depth: 16,
        },
        // Where YAML must guess a type (only `persistence`, a scalar or a mapping), keep the
        // spellings lvsd refuses as text, so the message can show them.
        leading_zero_numbers_as_strings: true,
        underscored_numbers_as_strings: true,
        non_finite_float_policy: serde_saphyr::NonFiniteFloatPolicy::AsString,
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
    parse_inner(text, path, None, None).map(|(c, _)| c)
}

/// [`parse`] with the fast reader on the caller's thread only. For tests that hold the read
/// spread over threads to it.
#[doc(hidden)]
pub fn parse_sequentially(text: &str, path: &str) -> Result<Config, Error> {
    parse_inner(text, path, None, Some(fast::Split::sequential())).map(|(c, _)| c)
}

/// [`parse`] with the fast reader spread over `workers` threads whatever the file's size (its
/// lines cut into a run per thread, its services too from two on). For tests that hold it to
/// [`parse_sequentially`].
#[doc(hidden)]
pub fn parse_spread(text: &str, path: &str, workers: usize) -> Result<Config, Error> {
    parse_inner(text, path, None, Some(fast::Split::forced(workers))).map(|(c, _)| c)
}

/// True when the fast reader reads `text` itself (valid or not, in its subset). For tests.
#[doc(hidden)]
pub fn fast_reader_reads(text: &str) -> bool {
    fast::read::<false>(text).is_some_and(|raw| {
        let mut checker = validate::Checker::default();
        let (_, mut entries, _) = checker.file(raw, None);
        entries.take_desired().is_some()
    })
}

/// True when the fast reader takes `text` (valid, in its subset). For tests.
#[doc(hidden)]
pub fn fast_reader_takes(text: &str) -> bool {
    fast::read::<false>(text).is_some_and(|raw| {
        let mut checker = validate::Checker::default();
        let (_, mut entries, _) = checker.file(raw, None);
        checker.problems.is_empty() && entries.take_desired().is_some()
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
    parse_inner(text, path, role, Some(fast::Split::auto()))
}

/// The result of validation: the config, or its problems (the first [`MAX_SHOWN`]). `None`
/// when an identity appears in two parts read apart (the caller reads the file again to say
/// where).
fn finish(
    checker: validate::Checker,
    host: HostSpec,
    ha: ha::Ha,
    mut entries: Entries,
    path: &str,
) -> Option<Result<(Config, Entries), Error>> {
    if checker.problems.is_empty() {
        let desired = entries.take_desired()?;
        Some(Ok((
            Config {
                desired,
                host,
                globals: ha.globals,
                health_file: ha.health_file,
                sources: Sources::default(),
            },
            entries,
        )))
    } else {
        let (problems, omitted) = checker.problems.finish();
        Some(Err(Error::Invalid {
            path: printable(path).into_owned(),
            problems,
            omitted,
        }))
    }
}

/// `fast`: how the fast reader spreads its read over threads (`None`: serde-saphyr only).
fn parse_inner(
    text: &str,
    path: &str,
    role: Option<Role>,
    fast: Option<fast::Split>,
) -> Result<(Config, Entries), Error> {
    parse_body(text, path, role, fast, None)
}

/// The main file's `include` patterns, each with where it stands (`None`: no `include`).
pub(crate) type Patterns = Option<Vec<(String, (u64, u64))>>;

/// [`parse_inner`], with the file's `include` patterns.
pub(crate) fn parse_main(
    text: &str,
    path: &str,
    role: Option<Role>,
    fast: Option<fast::Split>,
) -> (Result<(Config, Entries), Error>, Patterns) {
    let mut patterns = None;
    let r = parse_body(text, path, role, fast, Some(&mut patterns));
    (r, patterns)
}

fn parse_body(
    text: &str,
    path: &str,
    role: Option<Role>,
    fast: Option<fast::Split>,
    mut patterns: Option<&mut Patterns>,
) -> Result<(Config, Entries), Error> {
    // The generation's reader takes the `include` patterns; any other reading has no file
    // to resolve them against, and refuses them rather than drop what they name.
    let mut includes = |checker: &mut validate::Checker| match patterns.as_deref_mut() {
        Some(p) => *p = checker.includes.take(),
        None => checker.refuse_include(),
    };
    if text.len() as u64 > MAX_FILE_BYTES {
        return Err(Error::TooLarge {
            path: printable(path).into_owned(),
            size: text.len() as u64,
            limit: MAX_FILE_BYTES,
        });
    }
    // The fast reader takes the plain block style large files are written in, valid or not
    // (its problems are the validator's, as they would be from serde-saphyr); anything else
    // is serde-saphyr's to read and report.
    if let Some(raw) = fast.and_then(|split| fast::read_with::<false>(text, split)) {
        let mut checker = validate::Checker::default();
        let (host, entries, ha) = checker.file(raw, role);
        includes(&mut checker);
        if let Some(done) = finish(checker, host, ha, entries, path) {
            return done;
        }
    }
    // A file YAML reads as no document at all (empty, only comments, a lone `---`) is a
    // config without services: valid, and `lvsd check` says so.
    let raw: Option<raw::RawFile> =
        serde_saphyr::from_str_with_options(text, options()).map_err(|e| Error::Invalid {
            path: printable(path).into_owned(),
            problems: vec![yaml_problem(&e, text)],
            omitted: 0,
        })?;
    let mut checker = validate::Checker::default();
    let (host, entries, ha) = checker.file(raw.unwrap_or_default(), role);
    includes(&mut checker);
    for t in entries.later.misspelt(text) {
        checker.err(t.at, validate::TYPED_PERSISTENCE);
    }
    finish(checker, host, ha, entries, path).unwrap_or_else(|| {
        // Read in one piece, every duplicate was reported with its line.
        Err(Error::Invalid {
            path: printable(path).into_owned(),
            problems: vec![Problem {
                line: 0,
                col: 0,
                message: "a service is defined twice".into(),
            }],
            omitted: 0,
        })
    })
}

/// The byte offset of a 1-based line and column (in characters) in `text`.
fn offset_of(text: &str, line: u64, col: u64) -> Option<usize> {
    let start = if line <= 1 {
        0
    } else {
        text.match_indices('\n').nth(line as usize - 2)?.0 + 1
    };
    let rest = &text[start..];
    let skip = col.saturating_sub(1) as usize;
    Some(start + rest.char_indices().nth(skip).map_or(rest.len(), |(i, _)| i))
}

/// The 1-based line and column (in characters) of a byte offset in `text`.
fn position_of(text: &str, offset: usize) -> (u64, u64) {
    let before = &text[..offset];
    let line = before.bytes().filter(|b| *b == b'\n').count() as u64 + 1;
    let start = before.rfind('\n').map_or(0, |i| i + 1);
    (line, before[start..].chars().count() as u64 + 1)
}

/// Where the tab the YAML library complains about is: it reports the end of the token
/// before it, often on the line above. The first tab from there on, and whether it indents
/// its line.
fn find_tab(text: &str, line: u64, col: u64) -> Option<(u64, u64, bool)> {
    // From the start of that line: the position may also be just after the tab.
    let from = offset_of(text, line, col)?;
    let from = text[..from].rfind('\n').map_or(0, |i| i + 1);
    let at = from + text[from..].find('\t')?;
    let (l, c) = position_of(text, at);
    let start = text[..at].rfind('\n').map_or(0, |i| i + 1);
    let indents = text[start..at].bytes().all(|b| b == b' ' || b == b'\t');
    Some((l, c, indents))
}

/// The parser's complaint in lvsd's words, with how to fix it.
fn scan_words(
    kind: &serde_saphyr::granit_parser::ErrorKind,
    text: &str,
    loc: &mut (u64, u64),
) -> Option<String> {
    use serde_saphyr::granit_parser::ErrorKind as K;
    Some(match kind {
        K::TabNotAllowed
        | K::TabInBlockIndentation
        | K::TabInIndentation
        | K::TabInPlainScalar
        | K::TabAtBlockScalarStart => match find_tab(text, loc.0, loc.1) {
            Some((l, c, indents)) => {
                *loc = (l, c);
                if indents {
                    "a tab indents this line, and YAML indents with spaces only: replace the tab with spaces".into()
                } else {
                    "a tab here is not allowed by YAML: replace it with a space".into()
                }
            }
            None => "a tab is not allowed here by YAML: use spaces".into(),
        },
        K::SimpleKeyExpected | K::InvalidSimpleKey => {
            "expected `key: value` here: a key is followed by `:` and a space, on one line".into()
        }
        K::MappingValueNotAllowed | K::InvalidColonPlacement => {
            "a `: ` here starts a new key where none can be: put the value in quotes if it holds `: `, or fix the indentation".into()
        }
        K::MappingKeyNotAllowed => "a key cannot start here; check the indentation".into(),
        K::ExpectedBlockMappingKey | K::InvalidIndentation | K::InvalidFlowScalarIndent => {
            "this line is not indented like the keys around it; line it up with them".into()
        }
        K::ExpectedBlockSequenceEntry => {
            "expected a `- ` list entry here, lined up with the entries above".into()
        }
        K::BlockSequenceEntryNotAllowed | K::BlockEntryInFlowCollection => {
            "a `- ` list entry cannot start here: put it on its own line, under its key".into()
        }
        K::InvalidBlockEntryWhitespace => "put a space after `-`".into(),
        K::InvalidMappingValueWhitespace => "put a space after `:`".into(),
        K::CommentNotSeparated => "put a space before `#` to start a comment".into(),
        K::ExpectedWhitespace => "expected a space here".into(),
        K::UnclosedQuotedScalar => "a quote is not closed: add the closing quote".into(),
        K::InvalidTrailingSingleQuotedScalar | K::InvalidTrailingDoubleQuotedScalar => {
            "text follows a closing quote: quote the whole value".into()
        }
        K::UnknownQuotedScalarEscape
        | K::InvalidQuotedScalarHexEscape
        | K::InvalidLowSurrogateHexEscape
        | K::InvalidLowSurrogate
        | K::MissingLowSurrogate
        | K::UnpairedLowSurrogate
        | K::InvalidUnicodeEscape => {
            "a `\\` escape in double quotes that YAML does not know: use single quotes, or write `\\\\` for a backslash".into()
        }
        K::UnclosedFlowCollection { open } => {
            let close = if *open == '[' { ']' } else { '}' };
            format!("`{open}` is not closed: add `{close}`")
        }
        K::MismatchedFlowCollectionEnd { open, close } => {
            format!("`{open}` is closed by `{close}`: use the matching bracket")
        }
        K::MisplacedFlowCollectionEnd => {
            "a closing bracket without an opening one: remove it".into()
        }
        K::ExpectedFlowSequenceSeparator | K::ExpectedFlowMappingSeparator => {
            "expected `,` or the closing bracket here".into()
        }
        K::UnexpectedEofFlowSequence
        | K::UnexpectedEofFlowMapping
        | K::UnexpectedEofImplicitFlowMapping => {
            "the file ends inside `[...]` or `{...}`: close the bracket".into()
        }
        K::UnexpectedEofBlockSequence | K::UnexpectedEofBlockMapping | K::UnexpectedEof => {
            "the file ends in the middle of a value".into()
        }
        K::ExpectedNodeContent => "a value is missing here".into(),
        K::UnexpectedCharacter { character } => format!(
            "the file holds {}, which YAML does not allow in a file: delete it",
            error::describe(*character)
        ),
        K::BomInsideDocument => {
            "a byte-order mark (U+FEFF) stands here, and only a file's very first character may be one: delete it".into()
        }
        K::UnknownAnchor => {
            "this alias (`*name`) refers to no anchor (`&name`) before it".into()
        }
        K::InvalidDocumentEnd => "text follows a `...` document end: remove one".into(),
        K::ExpectedDocumentStart | K::MissingDocumentEndBeforeDirective => {
            "text after a `...` document end, or a `%` directive, starts another document: lvsd reads one, so remove it".into()
        }
        K::MissingDirectiveName
        | K::InvalidDirectiveName
        | K::InvalidDirectiveTerminator
        | K::DirectiveDisallowed
        | K::MissingYamlVersionSeparator
        | K::MissingYamlVersion
        | K::YamlVersionTooLong
        | K::UnsupportedYamlMajorVersion
        | K::DuplicateVersionDirective
        | K::DuplicateTagDirective
        | K::InvalidTagDirectiveTerminator => {
            "a line starting with `%` is a YAML directive, which lvsd's config does not use: remove it, or quote a value that starts with `%`".into()
        }
        K::FlowMappingValueAdjacentCollection => {
            "put a space after `:` inside `{...}`".into()
        }
        K::PlainScalarStartsWithDashFlowIndicator => {
            "a value cannot start with `-` followed by one of `,[]{}`: put it in quotes".into()
        }
        K::ZeroBlockScalarIndent
        | K::InvalidBlockScalarHeader
        | K::InvalidBlockScalarIndent => {
            "a `|` or `>` block of text is written wrong here: put the text on the lines below, indented, or quote it on one line".into()
        }
        K::RecursionLimitExceeded => {
            format!("nested deeper than lvsd reads ({MAX_DEPTH} levels)")
        }
        _ => return None,
    })
}

/// More than one document: the message.
const DOCUMENTS: &str = "the file holds more than one YAML document (a `---` line starts another): lvsd reads one, so remove the extra `---` lines or merge the documents";

/// The budget lvsd parses under, breached, in its words.
fn budget_words(breach: &serde_saphyr::budget::BudgetBreach) -> String {
    use serde_saphyr::budget::BudgetBreach as B;
    match breach {
        B::Documents { .. } => DOCUMENTS.into(),
        B::Aliases { .. } => format!("more than {MAX_ALIASES} aliases (`*name`): a config needs a few at most; is this a YAML bomb?"),
        B::Anchors { .. } => format!("more than {MAX_ALIASES} anchors (`&name`): a config needs a few at most"),
        B::Depth { .. } => format!("nested deeper than {MAX_DEPTH} levels: a config nests six"),
        B::AliasAnchorRatio { .. } => "far more aliases than anchors (a YAML bomb?): write the values out".into(),
        _ => "the file is larger or more deeply nested than any config lvsd reads (limits: 16 MiB, 10 million values, 32 levels)".into(),
    }
}

/// Turns a YAML or type error into a problem in lvsd's words, with "did you mean" for misspelt
/// keys. `text` is the file, to point at what the library describes from a distance (a tab,
/// an invisible character).
fn yaml_problem(e: &serde_saphyr::Error, text: &str) -> Problem {
    use serde_saphyr::Error as E;
    let mut e = e.without_snippet();
    // An error reached through an alias: the error itself.
    while let E::AliasError { error, .. } = e {
        e = error.without_snippet();
    }
    let mut loc = e.location().map_or((0, 0), |l| (l.line(), l.column()));
    let aliases = || {
        format!(
            "aliases expand to more than lvsd accepts ({MAX_REPLAYED} values, 16 deep): a YAML bomb? Write the values out"
        )
    };
    let message = match e {
        E::SerdeUnknownField {
            field, expected, ..
        } => {
            let hint = validate::suggest(field, expected)
                .map(|c| format!("did you mean `{c}`? "))
                .unwrap_or_default();
            format!(
                "unknown key `{}`; {hint}valid keys here: {}",
                printable(field),
                expected.join(", ")
            )
        }
        E::Budget { breach, .. } => budget_words(breach),
        E::AliasReplayLimitExceeded { .. }
        | E::AliasExpansionLimitExceeded { .. }
        | E::AliasReplayStackDepthExceeded { .. }
        | E::AliasReplayCounterOverflow { .. } => aliases(),
        E::RecursiveReferencesRequireWeakTypes { .. } => {
            "this alias refers to a value that contains it (a loop), which no config can mean: write the value out".into()
        }
        E::UnknownAnchor { .. } => {
            "this alias (`*name`) refers to no anchor (`&name`) before it".into()
        }
        E::DuplicateMappingKey { key, .. } => match key {
            Some(k) => format!("`{}` is given twice here; keep one", printable(k)),
            None => "a key is given twice here; keep one".into(),
        },
        E::TaggedScalarCannotDeserializeIntoString { .. } | E::UnsupportedTag { .. } => {
            "tags (`!!int`, `!name`) mean nothing in lvsd's config: remove the tag".into()
        }
        E::FoldedBlockScalarMustIndentContent { .. } => {
            "a `>` block of text must be indented below its key".into()
        }
        E::MergeValueNotMapOrSeqOfMaps { .. } => {
            "`<<:` merges a mapping (or a list of mappings) into this one: give it `*name` of a mapping".into()
        }
        E::MultipleDocuments { .. } => DOCUMENTS.into(),
        E::Unexpected { expected, .. } => plain_words(expected),
        E::SerdeInvalidType {
            unexpected,
            expected,
            ..
        } => format!("expected {expected} here, not {}", printable(unexpected)),
        E::NullIntoString { .. } => "this is empty (null); give it a value".into(),
        E::Eof { .. } => "the file ends in the middle of a value".into(),
        E::ExternalMessage { source, msg, .. } => match &**source {
            serde_saphyr::ExternalMessageSource::Parser(scan) => scan_words(scan.kind(), text, &mut loc)
                .unwrap_or_else(|| format!("this is not YAML lvsd can read (the parser says: {})", strip_location(msg))),
            _ => strip_location(msg),
        },
        E::Message { msg, .. } if msg.starts_with("alias ") => aliases(),
        other => format!(
            "this is not YAML lvsd can read (the parser says: {})",
            strip_location(&other.to_string())
        ),
    };
    // An invisible character where the parser stopped is the likeliest cause: name it.
    let hint = offset_of(text, loc.0, loc.1)
        .and_then(|o| text[o..].chars().next())
        .filter(|c| *c != '\t' && error::odd_char(*c).is_some())
        .filter(|c| !message.contains(&format!("U+{:04X}", *c as u32)))
        .map(|c| {
            format!(
                " (the character here is {}, which YAML reads as text, not as a space)",
                error::describe(c)
            )
        })
        .unwrap_or_default();
    Problem {
        line: loc.0,
        col: loc.1,
        message: message + &hint,
    }
}

/// Says the YAML library's terse expectations in the config's words.
fn plain_words(expected: &str) -> String {
    match expected {
        "sequence start" => "expected a list here (`- item` lines or `[a, b]`)".into(),
        "mapping start" => "expected a mapping here (`key: value` lines)".into(),
        "string scalar" | "scalar" | "str expected" => {
            "expected a single value here, not a list or mapping".into()
        }
        other => format!("expected {other} here"),
    }
}

/// Drops a trailing "at line X, column Y" that the YAML library adds, since we print our own.
fn strip_location(s: &str) -> String {
    let s = s.lines().next().unwrap_or_default();
    let cut = [" at line ", " (defined at "]
        .iter()
        .filter_map(|m| s.find(m))
        .min()
        .unwrap_or(s.len());
    printable(&s[..cut]).into_owned()
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    #[test]
    fn the_read_stops_one_byte_past_the_limit_whatever_the_size_said() {
        // An endless source (a device, a file growing while it is read): refused, having
        // read one byte past the limit and no more.
        let mut buf = Vec::new();
        let e = read_bounded(std::io::repeat(b'#'), &mut buf, "f".into()).unwrap_err();
        assert!(
            matches!(e, Error::TooLarge { size, .. } if size == MAX_FILE_BYTES + 1),
            "{e}"
        );
        assert!(buf.is_empty());
        // At the limit exactly: read.
        let exact = std::io::Read::take(std::io::repeat(b'#'), MAX_FILE_BYTES);
        read_bounded(exact, &mut buf, "f".into()).unwrap();
        assert_eq!(buf.len() as u64, MAX_FILE_BYTES);
    }
}
