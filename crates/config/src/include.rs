//! A configuration directory: `include:` in the main file names files (paths or globs such as
//! `conf.d/*.yaml`, relative to the main file) that each hold `services:` only. The main file
//! and every file it includes are one generation: all read, validated together (an included
//! file's services against the main file's `host` and `ha`, as if they stood there), and taken
//! or refused as one. A problem anywhere is reported at its own file's `FILE:LINE:COL`, and a
//! service defined in two files names both places.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use model::ServiceKey;
use plan::host::{HaMode, Role};

use crate::error::printable;
use crate::stamp::{FileStamp, Stamp};
use crate::validate::{Checker, Context};
use crate::{Config, Entries, Error, Problem, glob};

/// Files one generation may include, at most: a directory of one file per application is
/// thousands at the very most.
pub const MAX_INCLUDED_FILES: usize = 10_000;

/// Which file each service came from.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Sources {
    /// Every file of the generation, the main file first (escaped for printing); empty when
    /// the main file has no `include`.
    pub files: Vec<String>,
    /// The same files as read (the main file first): what permission checks look at, since
    /// `files` are escaped and name no file when a name holds a tab or a no-break space.
    pub paths: Vec<PathBuf>,
    /// The file of each service that is not in the main file (an index into `files`).
    of: BTreeMap<ServiceKey, u32>,
}

impl Sources {
    /// True when the main file includes others (even if its patterns match no file yet).
    pub fn includes(&self) -> bool {
        !self.files.is_empty()
    }

    /// The file `key` is defined in; `None` when the main file includes nothing (so every
    /// service is in it).
    pub fn file_of(&self, key: &ServiceKey) -> Option<&str> {
        let main = self.files.first()?;
        match self.of.get(key) {
            Some(i) => self.files.get(*i as usize).map(String::as_str),
            None => Some(main.as_str()),
        }
    }
}

/// A directory the daemon watches for included files, and the file names it reads there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IncludeDir {
    /// The directory (as the main file's `include` names it, relative to the main file).
    pub dir: PathBuf,
    /// A file name, or a pattern of them (`*.yaml`).
    pub pattern: String,
}

impl IncludeDir {
    /// Whether a file named `name` in [`IncludeDir::dir`] is part of the config.
    pub fn matches(&self, name: &str) -> bool {
        if glob::has_wildcard(&self.pattern) {
            glob::matches(&self.pattern, name)
        } else {
            self.pattern == name
        }
    }
}

/// A generation as read: the merged config, the main file's entries (for an in-place reread of
/// a file without includes), and the included files with their bytes.
pub(crate) struct Generation {
    pub config: Config,
    pub entries: Entries,
    /// `None` when the main file has no `include`.
    pub included: Option<Included>,
}

/// The included part of a generation.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Included {
    /// Each included file and its bytes, in the order read.
    pub files: Vec<(PathBuf, Vec<u8>)>,
    /// What the daemon watches.
    pub dirs: Vec<IncludeDir>,
}

/// True when `bytes` may hold an `include` key: only such a file takes the generation path
/// (a large single file keeps its fast and in-place readings). Asked of every version the
/// daemon reads, so it searches the way memchr does (a byte-by-byte window over a 4 MB file
/// was most of an edit's read under emulation).
///
/// A key means the same however it is spelled, and a double-quoted scalar can spell
/// `include` without those bytes (`"\x69nclude"`, `"\u0069nclude"`, a line break escaped
/// inside the word): a file with a double quote and a backslash may hold one too. Every other
/// YAML spelling (plain, single-quoted, tagged, anchored) keeps the word's bytes, and a
/// backslash means itself outside double quotes.
pub(crate) fn may_include(bytes: &[u8]) -> bool {
    memchr::memmem::find(bytes, INCLUDE).is_some()
        || (memchr::memchr(b'\\', bytes).is_some() && memchr::memchr(b'"', bytes).is_some())
}

/// The word [`may_include`] looks for.
const INCLUDE: &[u8] = b"include";

/// [`may_include`] for a text that differs from one it is false for only in `spans` (each
/// `from..to`; elsewhere it holds the old text's bytes, moved or not): the word is looked for
/// where it could overlap a span, and the whole text is looked at again only when a span holds
/// a backslash or a quote (of which the old text had not both). An edit at both ends of a large
/// file has two short spans, not the whole file between them: scanning megabytes costs
/// milliseconds under emulation.
pub(crate) fn may_include_in(bytes: &[u8], spans: &[(usize, usize)]) -> bool {
    if spans
        .iter()
        .any(|&(from, to)| memchr::memchr2(b'\\', b'"', &bytes[from..to]).is_some())
    {
        return may_include(bytes);
    }
    let reach = INCLUDE.len() - 1;
    spans.iter().any(|&(from, to)| {
        let window = &bytes[from.saturating_sub(reach)..(to + reach).min(bytes.len())];
        memchr::memmem::find(window, INCLUDE).is_some()
    })
}

/// A file an `include` pattern names, and where the pattern stands.
type Named = (PathBuf, (u64, u64));

/// The files `include` patterns match, listed the one way both the read and the daemon's check
/// of a generation ([`crate::Stamp::now`]) list them.
#[derive(Debug, Default)]
pub(crate) struct Listing {
    /// Each file, in pattern order (a wildcard's matches sorted by name), with the index of
    /// the pattern that named it; at most [`MAX_INCLUDED_FILES`].
    pub files: Vec<(PathBuf, usize)>,
    /// The patterns whose directory could not be listed, and why.
    pub errors: Vec<(usize, std::io::Error)>,
    /// When there were more files than the limit: how many, and the pattern of the first one
    /// past it.
    pub over: Option<(usize, usize)>,
}

/// Lists the files `dirs` match: the main file itself and a file another pattern already named
/// (by its real path) are left out.
pub(crate) fn listing(dirs: &[IncludeDir], main: &Path) -> Listing {
    let main_real = std::fs::canonicalize(main).ok();
    let mut seen = std::collections::HashSet::new();
    let mut out = Listing::default();
    for (i, d) in dirs.iter().enumerate() {
        let mut add = |p: PathBuf| {
            let real = std::fs::canonicalize(&p).ok();
            if real.is_some() && real == main_real {
                return;
            }
            if seen.insert(real.unwrap_or_else(|| p.clone())) {
                out.files.push((p, i));
            }
        };
        if !glob::has_wildcard(&d.pattern) {
            add(d.dir.join(&d.pattern));
            continue;
        }
        match std::fs::read_dir(&d.dir) {
            Ok(entries) => {
                let mut names: Vec<String> = entries
                    .flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .filter(|n| d.matches(n))
                    .collect();
                names.sort();
                for n in names {
                    add(d.dir.join(n));
                }
            }
            Err(e) => out.errors.push((i, e)),
        }
    }
    if let Some((_, i)) = out.files.get(MAX_INCLUDED_FILES) {
        out.over = Some((out.files.len(), *i));
        out.files.truncate(MAX_INCLUDED_FILES);
    }
    out
}

/// The files the patterns name, and the directories to watch; problems are the main file's,
/// at the pattern that has them.
fn resolve(
    patterns: &[(String, (u64, u64))],
    main: &Path,
    problems: &mut Vec<Problem>,
) -> (Vec<Named>, Vec<IncludeDir>) {
    // `main` is where the main file stands (or will stand: `lvsd check --as`); the patterns are
    // relative to its directory.
    let base = main
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf);
    let mut dirs = vec![];
    // Where each directory's pattern stands.
    let mut ats = vec![];
    let mut err = |at: (u64, u64), message: String| {
        problems.push(Problem {
            line: at.0,
            col: at.1,
            message,
        })
    };
    for (pattern, at) in patterns {
        let shown = printable(pattern);
        if pattern.is_empty() {
            err(*at, "an empty `include` entry; give a path or a pattern such as conf.d/*.yaml, or remove it".into());
            continue;
        }
        let path = base.join(pattern);
        let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
            err(
                *at,
                format!("`{shown}` names no file; give a path or a pattern such as conf.d/*.yaml"),
            );
            continue;
        };
        let name = name.to_string_lossy().into_owned();
        if dir
            .components()
            .any(|c| glob::has_wildcard(&c.as_os_str().to_string_lossy()))
        {
            err(
                *at,
                format!(
                    "`{shown}`: only the file name may hold wildcards (such as conf.d/*.yaml), so that lvsd knows which directory to watch; name the directory"
                ),
            );
            continue;
        }
        dirs.push(IncludeDir {
            dir: dir.to_path_buf(),
            pattern: name,
        });
        ats.push(*at);
    }
    let listed = listing(&dirs, main);
    for (i, e) in listed.errors {
        let dir = printable(&dirs[i].dir.display().to_string()).into_owned();
        if e.kind() == std::io::ErrorKind::NotFound {
            err(
                ats[i],
                format!(
                    "the directory `{dir}` does not exist: create it (it may stay empty), or remove this `include`"
                ),
            );
        } else {
            err(
                ats[i],
                format!("cannot read the directory `{dir}` ({e}): fix its permissions"),
            );
        }
    }
    if let Some((count, i)) = listed.over {
        err(
            ats[i],
            format!(
                "`include` names {count} files; lvsd reads at most {MAX_INCLUDED_FILES}: put more services in each file"
            ),
        );
    }
    problems.sort_by_key(|p| (p.line, p.col));
    let files = listed.files.into_iter().map(|(p, i)| (p, ats[i])).collect();
    (files, dirs)
}

/// Reads and validates one included file.
fn included(text: &str, shown: &str, main: &str, ctx: &Context) -> Result<Entries, Error> {
    let invalid = |problems: Vec<Problem>, omitted| Error::Invalid {
        path: shown.to_owned(),
        problems,
        omitted,
    };
    let mut checker = Checker::default();
    let entries = if let Some(raw) = crate::fast::read::<false>(text) {
        checker.included(raw, main, ctx)
    } else {
        let raw: Option<crate::raw::RawFile> =
            serde_saphyr::from_str_with_options(text, crate::options())
                .map_err(|e| invalid(vec![crate::yaml_problem(&e, text)], 0))?;
        let entries = checker.included(raw.unwrap_or_default(), main, ctx);
        for t in entries.later.misspelt(text) {
            checker.err(t.at, crate::validate::TYPED_PERSISTENCE);
        }
        entries
    };
    if !checker.problems.is_empty() {
        let (problems, omitted) = checker.problems.finish();
        return Err(invalid(problems, omitted));
    }
    Ok(entries)
}

/// Reads and validates the main file's `text` (read from `main`) and every file it includes, as
/// one generation. `seen` gets the directories listed and a stamp of every included file
/// (taken from the descriptor it was read through), whatever the outcome; its main file's
/// stamp is the caller's.
pub(crate) fn read(
    text: &str,
    main: &Path,
    role: Option<Role>,
    seen: &mut Stamp,
) -> Result<Generation, Error> {
    read_at(text, main, main, role, seen)
}

/// [`read`] for a main file read from `main` that is to stand at `at` (`lvsd check --as`: a
/// configuration manager validates a temporary copy before it puts it in place): the includes
/// are resolved relative to `at`'s directory, and `at` itself is left out of the listing as
/// `main` would be; the main file's messages still cite `main`.
pub(crate) fn read_at(
    text: &str,
    main: &Path,
    at: &Path,
    role: Option<Role>,
    seen: &mut Stamp,
) -> Result<Generation, Error> {
    let shown_main = printable(&main.display().to_string()).into_owned();
    let (parsed, patterns) = crate::parse_main(
        text,
        &main.display().to_string(),
        role,
        Some(crate::fast::Split::auto()),
    );
    let Some(patterns) = patterns else {
        let (config, entries) = parsed?;
        return Ok(Generation {
            config,
            entries,
            included: None,
        });
    };
    let mut main_problems = vec![];
    let (files, dirs) = resolve(&patterns, at, &mut main_problems);
    // Every file listed is in the stamp, read or not (a generation refused before its files
    // were read is stamped as they are now; each file read, from its descriptor below).
    seen.dirs.clone_from(&dirs);
    seen.included = files
        .iter()
        .map(|(p, _)| (p.clone(), FileStamp::at(p)))
        .collect();
    let ctx = match &parsed {
        Ok((c, _)) => Context {
            host: c.host.clone(),
            sync: c.globals.sync.is_some(),
            active_active: matches!(c.host.ha, HaMode::ActiveActive { .. }),
        },
        Err(_) => Context::default(),
    };
    let mut errors = vec![];
    let mut main_ok = match parsed {
        Ok(ok) => Some(ok),
        Err(Error::Invalid {
            path,
            mut problems,
            omitted,
        }) => {
            problems.append(&mut main_problems);
            problems.sort_by_key(|p| (p.line, p.col));
            errors.push(Error::Invalid {
                path,
                problems,
                omitted,
            });
            None
        }
        Err(e) => return Err(e),
    };
    if !main_problems.is_empty() {
        main_ok = None;
        errors.push(Error::Invalid {
            path: shown_main.clone(),
            problems: main_problems,
            omitted: 0,
        });
    }
    // Every file, read and checked; where each identity and name was first defined.
    let mut sources = Sources {
        files: vec![shown_main.clone()],
        paths: vec![main.to_path_buf()],
        of: BTreeMap::new(),
    };
    let mut first: HashMap<ServiceKey, (u32, u64)> = HashMap::new();
    let mut names: HashMap<String, (u32, u64)> = HashMap::new();
    if let Some((_, entries)) = &main_ok {
        for (k, l) in entries.keys.iter().zip(&entries.lines) {
            if let Some(k) = k {
                first.entry(*k).or_insert((0, *l));
            }
        }
        for (n, l) in entries.names_at() {
            names.insert(n.to_owned(), (0, l));
        }
    }
    let mut bytes_read = vec![];
    let mut parts = vec![];
    for (i, (path, at)) in files.into_iter().enumerate() {
        let shown = printable(&path.display().to_string()).into_owned();
        let index = sources.files.len() as u32;
        sources.files.push(shown.clone());
        sources.paths.push(path.clone());
        let read = crate::read_stamped(&path);
        if let (Ok((_, stamp)), Some(slot)) = (&read, seen.included.get_mut(i)) {
            slot.1 = Some(*stamp);
        }
        let bytes = match read {
            Ok((b, _)) => b,
            Err(Error::Read { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
                errors.push(Error::Invalid {
                    path: shown_main.clone(),
                    problems: vec![Problem {
                        line: at.0,
                        col: at.1,
                        message: format!(
                            "`{shown}` does not exist: create it, or remove it from `include`"
                        ),
                    }],
                    omitted: 0,
                });
                continue;
            }
            Err(e) => {
                errors.push(e);
                continue;
            }
        };
        let text = match crate::text_of(bytes.clone(), &shown) {
            Ok(t) => t,
            Err(e) => {
                errors.push(e);
                continue;
            }
        };
        bytes_read.push((path.clone(), bytes));
        let mut entries = match included(&text, &shown, &shown_main, &ctx) {
            Ok(e) => e,
            Err(e) => {
                errors.push(e);
                continue;
            }
        };
        let mut problems = vec![];
        for ((k, l), c) in entries.keys.iter().zip(&entries.lines).zip(&entries.cols) {
            let Some(k) = k else { continue };
            match first.get(k) {
                Some((f, fl)) => problems.push(Problem {
                    line: *l,
                    col: *c,
                    message: format!(
                        "duplicate service {k}: also defined in {}:{fl}; a service belongs in one file: remove one of the two",
                        sources.files[*f as usize]
                    ),
                }),
                None => {
                    first.insert(*k, (index, *l));
                }
            }
        }
        for (n, l) in entries.names_at() {
            match names.get(n) {
                Some((f, fl)) => problems.push(Problem {
                    line: l,
                    col: 0,
                    message: format!(
                        "duplicate service name `{n}`: also used in {}:{fl}; names must be unique across the files: rename one",
                        sources.files[*f as usize]
                    ),
                }),
                None => {
                    names.insert(n.to_owned(), (index, l));
                }
            }
        }
        if !problems.is_empty() {
            problems.sort();
            errors.push(Error::Invalid {
                path: shown,
                problems,
                omitted: 0,
            });
            continue;
        }
        match entries.take_desired() {
            Some(d) => parts.push((index, d)),
            None => errors.push(Error::Invalid {
                path: shown,
                problems: vec![Problem {
                    line: 0,
                    col: 0,
                    message: "a service is defined twice in this file".into(),
                }],
                omitted: 0,
            }),
        }
    }
    if let Some(e) = Error::combine(errors) {
        return Err(e);
    }
    let Some((mut config, entries)) = main_ok else {
        return Err(Error::Invalid {
            path: shown_main,
            problems: vec![],
            omitted: 0,
        });
    };
    for (index, d) in parts {
        for k in d.services.keys() {
            sources.of.insert(*k, index);
        }
        let mut d = d.services;
        config.desired.services.append(&mut d);
    }
    config.sources = sources;
    Ok(Generation {
        config,
        entries,
        included: Some(Included {
            files: bytes_read,
            dirs,
        }),
    })
}

#[cfg(test)]
mod tests {
    use super::may_include;

    #[test]
    fn any_include_anywhere_takes_the_generation_path() {
        assert!(may_include(b"include:\n  - conf.d/*.yaml\n"));
        assert!(may_include(b"services: []\n# include later\n"));
        assert!(may_include(b"{include: [a.yaml]}"));
        assert!(!may_include(b"services:\n  - address: 10.0.0.1:80\n"));
        assert!(!may_include(b"includ"));
        assert!(!may_include(b""));
        // An escape can spell the word without its bytes.
        assert!(may_include(b"\"\\x69nclude\": [a.yaml]\n"));
        // A backslash outside double quotes is itself.
        assert!(!may_include(b"services:\n  - name: a\\b\n"));
    }
}
