//! Reading a new version of the config by re-parsing only the services an edit touched. A
//! 10,000-service file takes seconds to parse on a slow machine; a one-line edit should not.
//!
//! The file's text is kept with its layout: where each entry of `services` starts, and which
//! service it defines. A new version is compared with the old one byte by byte from both ends;
//! the entries holding the difference are parsed and validated alone, and replace the old
//! entries' services. Anything this cannot prove equivalent to a full parse falls back to one:
//! an edit outside the `services` block, anchors, aliases, tags or tabs anywhere, entries that do
//! not line up, any problem (the full parse reports it with the right line), or a new entry
//! that collides with one it did not replace.

use std::collections::{BTreeSet, HashMap};

use model::ServiceKey;
use plan::DesiredService;
use plan::host::Role;

use crate::{Config, Error, FileStamp, Stamp};

/// A valid config together with the text it was read from, so that the next version of the
/// file can be read by re-parsing only what changed.
#[derive(Debug, Clone)]
pub struct Loaded {
    /// The configuration.
    pub config: Config,
    /// The file's bytes (valid UTF-8: an edit is checked where it changed).
    text: Vec<u8>,
    /// The buffer the next version is read into: the previous version's, so its memory is
    /// mapped already (a large file read into fresh memory costs a page fault per page).
    next: Vec<u8>,
    layout: Option<Layout>,
    /// True when the text is known to hold nothing that may be an `include`
    /// ([`crate::include::may_include`] is false): the next read looks for one only where the
    /// text changed, not through the whole file again.
    plain: bool,
    /// The files the main file includes, with their bytes (`None`: no `include`). A
    /// generation is read again whole when any of its files changed.
    included: Option<crate::include::Included>,
}

/// Where the entries of `services` are in the text.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Layout {
    /// The entries' indentation.
    indent: usize,
    /// The byte where each entry's first line starts.
    starts: Vec<usize>,
    /// The service each entry defines.
    keys: Vec<ServiceKey>,
    /// The byte after the last entry (the start of the next top-level key, or the end).
    end: usize,
}

/// What reading a new version found.
#[derive(Debug)]
pub enum Reread {
    /// The same text.
    Same,
    /// Only entries of `services` changed, and the config was updated in place: `touched` holds
    /// the services whose definition changed (added, removed or different). `undo` puts the old
    /// version back (when the edit is refused after all).
    Edited {
        /// Services that may differ.
        touched: BTreeSet<ServiceKey>,
        /// How many entries were parsed again: those whose text is new (an entry whose bytes
        /// are an old entry's keeps its service). For tests and the timing log.
        parsed: usize,
        /// The way back.
        undo: Undo,
    },
    /// The whole file was parsed again; the caller decides whether to take it.
    Whole(Box<Loaded>),
}

/// The way back from an in-place edit (the old text stays in [`Loaded`] until the next read).
#[derive(Debug)]
pub struct Undo {
    layout: Option<Layout>,
    plain: bool,
    removed: Vec<(ServiceKey, DesiredService)>,
    added: Vec<ServiceKey>,
}

/// Bytes that make an entry's meaning depend on text outside it (anchors, aliases, tags,
/// directives) or that YAML forbids in indentation (tabs).
fn unsafe_byte(b: &u8) -> bool {
    matches!(b, b'&' | b'*' | b'!' | b'%' | b'\t')
}

/// Bytes compared at a step when looking for where two versions differ: four words, each
/// compared in a scalar register. In the test VM (TCG, software emulation) this finds the
/// first difference of 4 MB in 1.2–1.4 ms, where `memcmp` took 3.9–4.2 ms: its vector
/// instructions are emulated one at a time, the scalar ones are translated. Natively the two
/// are alike.
const STEP: usize = 32;

/// The eight bytes of `s` from `i`, as a word.
fn word(s: &[u8], i: usize) -> u64 {
    let mut w = [0u8; 8];
    w.copy_from_slice(&s[i..i + 8]);
    u64::from_ne_bytes(w)
}

/// True when two steps of [`STEP`] bytes differ.
fn step_differs(x: &[u8], y: &[u8]) -> bool {
    ((word(x, 0) ^ word(y, 0))
        | (word(x, 8) ^ word(y, 8))
        | (word(x, 16) ^ word(y, 16))
        | (word(x, 24) ^ word(y, 24)))
        != 0
}

/// How many leading bytes `a` and `b` share. (An index loop: over `chunks_exact` the same
/// comparison ran 2.5× slower under user-mode emulation.)
fn common_prefix(a: &[u8], b: &[u8]) -> usize {
    let n = a.len().min(b.len());
    let mut at = 0;
    while at + STEP <= n && !step_differs(&a[at..at + STEP], &b[at..at + STEP]) {
        at += STEP;
    }
    at + a[at..n]
        .iter()
        .zip(&b[at..n])
        .take_while(|(x, y)| x == y)
        .count()
}

/// How many trailing bytes `a` and `b` share.
fn common_suffix(a: &[u8], b: &[u8]) -> usize {
    let n = a.len().min(b.len());
    let (a, b) = (&a[a.len() - n..], &b[b.len() - n..]);
    let mut at = 0;
    while at + STEP <= n && !step_differs(&a[n - at - STEP..n - at], &b[n - at - STEP..n - at]) {
        at += STEP;
    }
    at + a[..n - at]
        .iter()
        .rev()
        .zip(b[..n - at].iter().rev())
        .take_while(|(x, y)| x == y)
        .count()
}

/// Where `new` differs from `old`: how many bytes they share at the start, and how many at the
/// end after those (the two never overlap).
fn bounds(old: &[u8], new: &[u8]) -> (usize, usize) {
    let prefix = common_prefix(old, new);
    let room = old.len().min(new.len()) - prefix;
    let suffix = common_suffix(&old[prefix..], &new[prefix..]).min(room);
    (prefix, suffix)
}

/// A line's content without its end of line.
fn lines(text: &str, from: usize) -> impl Iterator<Item = (usize, &str)> {
    let mut pos = from;
    std::iter::from_fn(move || {
        if pos >= text.len() {
            return None;
        }
        let start = pos;
        let end = text[start..].find('\n').map_or(text.len(), |i| start + i);
        pos = end + 1;
        Some((start, text[start..end].trim_end_matches('\r')))
    })
}

/// What a line is, inside a block of entries at `indent`.
enum Line {
    /// Blank or a comment: belongs to the entry before it.
    Blank,
    /// A document marker: never handled here.
    Marker,
    /// Indented by this much, starting an entry (`- `) or not.
    Content(usize, bool),
}

fn classify(line: &str) -> Line {
    let trimmed = line.trim_start_matches(' ');
    if trimmed.is_empty() || trimmed.starts_with('#') {
        return Line::Blank;
    }
    if line.starts_with("---") || line.starts_with("...") {
        return Line::Marker;
    }
    let item = trimmed == "-" || trimmed.starts_with("- ");
    Line::Content(line.len() - trimmed.len(), item)
}

/// Finds the entries of the top-level `services` block as lines of text: their starts, their
/// 1-based lines, the indentation and where the block ends.
fn scan(text: &str) -> Option<(usize, Vec<usize>, Vec<u64>, usize)> {
    if text.as_bytes().iter().any(unsafe_byte) {
        return None;
    }
    let mut in_block = false;
    let mut indent = None;
    let mut starts = vec![];
    let mut line_nos = vec![];
    let mut end = None;
    for (n, (start, line)) in lines(text, 0).enumerate() {
        let class = classify(line);
        if matches!(class, Line::Marker) {
            return None;
        }
        if end.is_some() {
            // A second `services` key is the parser's to report.
            if line.starts_with("services:") {
                return None;
            }
            continue;
        }
        if !in_block {
            if let Some(rest) = line.strip_prefix("services:") {
                let rest = rest.trim_start_matches(' ');
                if !(rest.is_empty() || rest.starts_with('#')) {
                    return None;
                }
                in_block = true;
            }
            continue;
        }
        let Line::Content(ind, item) = class else {
            continue;
        };
        match indent {
            None if item => indent = Some(ind),
            None => return None,
            Some(i) if ind > i => continue,
            Some(i) if ind == i && item => {}
            Some(_) if ind == 0 => {
                end = Some(start);
                continue;
            }
            Some(_) => return None,
        }
        starts.push(start);
        line_nos.push(n as u64 + 1);
    }
    let indent = indent?;
    Some((indent, starts, line_nos, end.unwrap_or(text.len())))
}

/// The entries of a stretch of text that must hold whole entries at `indent` and nothing
/// else: their starts (from `base`) and 1-based lines within the stretch.
fn scan_region(region: &str, indent: usize, base: usize) -> Option<(Vec<usize>, Vec<u64>)> {
    let mut starts = vec![];
    let mut line_nos = vec![];
    for (n, (start, line)) in lines(region, 0).enumerate() {
        match classify(line) {
            Line::Blank => {}
            Line::Marker => return None,
            Line::Content(ind, true) if ind == indent => {
                starts.push(base + start);
                line_nos.push(n as u64 + 1);
            }
            Line::Content(ind, _) if ind > indent && !starts.is_empty() => {}
            Line::Content(..) => return None,
        }
    }
    Some((starts, line_nos))
}

impl Loaded {
    /// Parses and validates `text` whole (see [`crate::parse_as`]) and keeps what a later
    /// [`Loaded::reread`] needs.
    pub fn parse(text: String, path: &str, role: Option<Role>) -> Result<Loaded, Error> {
        let (config, entries) = crate::parse_entries(&text, path, role)?;
        Ok(Loaded::parsed(text, config, entries))
    }

    /// A config read whole, with the layout of its text.
    fn parsed(text: String, config: Config, entries: crate::Entries) -> Loaded {
        let layout = scan(&text).and_then(|(indent, starts, line_nos, end)| {
            let keys: Vec<ServiceKey> = entries.keys.iter().copied().collect::<Option<_>>()?;
            (line_nos == entries.lines && keys.len() == starts.len()).then_some(Layout {
                indent,
                starts,
                keys,
                end,
            })
        });
        let plain = !crate::include::may_include(text.as_bytes());
        Loaded {
            config,
            text: text.into_bytes(),
            next: Vec::new(),
            layout,
            plain,
            included: None,
        }
    }

    /// Reads the main file's `text` (from `path`) with every file it includes, as one
    /// generation (see [`crate::load_as`]).
    fn generation(
        text: String,
        path: &std::path::Path,
        role: Option<Role>,
        seen: &mut Stamp,
    ) -> Result<Loaded, Error> {
        let g = crate::include::read(&text, path, role, seen)?;
        let Some(included) = g.included else {
            return Ok(Loaded::parsed(text, g.config, g.entries));
        };
        Ok(Loaded {
            config: g.config,
            text: text.into_bytes(),
            next: Vec::new(),
            layout: None,
            plain: false,
            included: Some(included),
        })
    }

    /// The directories and file names the generation reads besides the main file: what the
    /// daemon watches. Empty when the main file includes nothing.
    pub fn include_dirs(&self) -> &[crate::IncludeDir] {
        self.included.as_ref().map_or(&[], |i| i.dirs.as_slice())
    }

    /// The files the main file includes, as read.
    pub fn included_files(&self) -> impl Iterator<Item = &std::path::Path> {
        self.included
            .iter()
            .flat_map(|i| i.files.iter().map(|(p, _)| p.as_path()))
    }

    /// Reads the file at `path` (see [`crate::load_as`]) for a daemon that will read it again:
    /// the buffer for the next version is mapped now, so even the first edit of a large file
    /// reads into memory that is there already. `seen` gets the stamp of what was read
    /// (whatever the outcome), for the daemon to tell when the files there are no longer
    /// those.
    pub fn load(
        path: &std::path::Path,
        role: Option<Role>,
        seen: &mut Stamp,
    ) -> Result<Loaded, Error> {
        *seen = Stamp::default();
        let bytes = match crate::read_stamped(path) {
            Ok((bytes, stamp)) => {
                seen.main = Some(stamp);
                bytes
            }
            Err(e) => {
                seen.main = FileStamp::at(path);
                return Err(e);
            }
        };
        let text = crate::text_of(bytes, &path.display().to_string())?;
        let mut loaded = if crate::include::may_include(text.as_bytes()) {
            Loaded::generation(text, path, role, seen)?
        } else {
            Loaded::parse(text, &path.display().to_string(), role)?
        };
        // Written, not just allocated: zeroed memory from the allocator is not mapped yet.
        loaded.next.resize(loaded.text.len() + 4096, b' ');
        loaded.next.clear();
        Ok(loaded)
    }

    /// Reads the file at `path` again, into the buffer kept for it: see [`Loaded::reread`].
    /// `seen` gets the stamp of what was read, as for [`Loaded::load`].
    pub fn reread_file(
        &mut self,
        path: &std::path::Path,
        role: Option<Role>,
        seen: &mut Stamp,
    ) -> Result<Reread, Error> {
        *seen = Stamp::default();
        let mut next = std::mem::take(&mut self.next);
        match crate::read_bytes_into(path, &mut next) {
            Ok(stamp) => seen.main = Some(stamp),
            Err(e) => {
                seen.main = FileStamp::at(path);
                self.next = next;
                return Err(e);
            }
        }
        if self.included.is_none() && self.plain {
            let bounds = bounds(&self.text, &next);
            match self.reread_bounded(next, &path.display().to_string(), role, bounds, true)? {
                Short::Done(r) => return Ok(r),
                Short::MayInclude(text) => next = text,
            }
        }
        if self.included.is_some() || crate::include::may_include(&next) {
            return self.reread_generation(next, path, role, seen);
        }
        self.reread(next, &path.display().to_string(), role)
    }

    /// Reads a generation again: the same when no file of it changed (and the same files are
    /// included), else read and validated whole.
    fn reread_generation(
        &mut self,
        next: Vec<u8>,
        path: &std::path::Path,
        role: Option<Role>,
        seen: &mut Stamp,
    ) -> Result<Reread, Error> {
        let text = crate::text_of(next, &path.display().to_string())?;
        let new = Loaded::generation(text, path, role, seen)?;
        if new.text == self.text && new.included == self.included {
            self.next = new.text;
            return Ok(Reread::Same);
        }
        Ok(Reread::Whole(Box::new(new)))
    }

    /// Takes a config read whole ([`Reread::Whole`]), keeping this one's buffer for the next
    /// read.
    pub fn replace(&mut self, new: Loaded) {
        let old = std::mem::replace(self, new);
        self.next = old.text;
    }

    /// The bytes the config was read from.
    pub fn bytes(&self) -> &[u8] {
        &self.text
    }

    /// True when the next [`Loaded::reread`] can take the short way for an edit of the
    /// services (for tests and logs).
    pub fn incremental(&self) -> bool {
        self.layout.is_some()
    }

    /// Reads a new version of the file: in place when only entries of `services` changed and
    /// they are valid, else by a full parse (which reports any problem with its line).
    /// The new bytes are checked as UTF-8 where they changed (the rest is the text read
    /// before), or whole on the long way.
    pub fn reread(
        &mut self,
        text: Vec<u8>,
        path: &str,
        role: Option<Role>,
    ) -> Result<Reread, Error> {
        let bounds = bounds(&self.text, &text);
        match self.reread_bounded(text, path, role, bounds, false)? {
            Short::Done(r) => Ok(r),
            // Not looked for: the short way was not asked to.
            Short::MayInclude(text) => {
                let text = crate::text_of(text, path)?;
                Ok(Reread::Whole(Box::new(Loaded::parse(text, path, role)?)))
            }
        }
    }

    /// [`Loaded::reread`], with where the new text differs from the old (see [`bounds`]);
    /// `plain`: the old text holds no `include` (as the field `plain` says) and the new one
    /// is to be checked for one where it changed, which keeps it plain; a new text that may
    /// hold one is handed back, for the caller to read as a generation.
    fn reread_bounded(
        &mut self,
        text: Vec<u8>,
        path: &str,
        role: Option<Role>,
        (prefix, suffix): (usize, usize),
        plain: bool,
    ) -> Result<Short, Error> {
        if text.len() == self.text.len() && prefix == text.len() {
            self.next = text;
            return Ok(Short::Done(Reread::Same));
        }
        match self.edit(&text, prefix, suffix, plain) {
            Some(Edit::Taken(touched, parsed, undo)) => {
                self.plain = plain;
                self.next = std::mem::replace(&mut self.text, text);
                return Ok(Short::Done(Reread::Edited {
                    touched,
                    parsed,
                    undo,
                }));
            }
            Some(Edit::MayInclude) => return Ok(Short::MayInclude(text)),
            None => {}
        }
        if plain && crate::include::may_include(&text) {
            return Ok(Short::MayInclude(text));
        }
        let text = crate::text_of(text, path)?;
        Ok(Short::Done(Reread::Whole(Box::new(Loaded::parse(
            text, path, role,
        )?))))
    }

    /// Puts the version before an in-place edit back.
    pub fn undo(&mut self, undo: Undo) {
        for k in &undo.added {
            self.config.desired.services.remove(k);
        }
        self.config.desired.services.extend(undo.removed);
        std::mem::swap(&mut self.text, &mut self.next);
        self.layout = undo.layout;
        self.plain = undo.plain;
    }

    /// The short way: `None` when it does not apply. On success the config and layout are
    /// updated; the text is the caller's to swap in. `watch_include`: the bytes the edit
    /// brings (not those of old entries it keeps) are looked through for an `include`, and
    /// [`Edit::MayInclude`] is the answer, with nothing changed, when they may hold one.
    fn edit(
        &mut self,
        new: &[u8],
        prefix: usize,
        suffix: usize,
        watch_include: bool,
    ) -> Option<Edit> {
        let layout = self.layout.as_ref()?;
        let (old_b, new_b) = (self.text.as_slice(), new);
        let (lo, hi) = (prefix, old_b.len() - suffix);
        let first = *layout.starts.first()?;
        if lo < first || hi > layout.end {
            return None;
        }
        // The entries holding the difference: from the one where it starts to the one where
        // it ends (at least one, for an insertion). Lines added at the start of an entry's
        // line may continue the entry before it: that one is read again too.
        let line_start = old_b[..lo]
            .iter()
            .rposition(|b| *b == b'\n')
            .map_or(0, |i| i + 1);
        let probe = line_start.saturating_sub(1).max(first);
        let a = layout
            .starts
            .partition_point(|&s| s <= probe)
            .checked_sub(1)?;
        let b = layout.starts.partition_point(|&s| s < hi).max(a + 1);
        let new_end = (layout.starts.get(b).copied().unwrap_or(layout.end) + new_b.len())
            .checked_sub(old_b.len())?;
        let start = layout.starts[a];
        if new_end < new_b.len() && new_b.get(new_end.checked_sub(1)?) != Some(&b'\n') {
            return None;
        }
        // Each new entry whose bytes are an old entry's of the stretch defines the same
        // service (same indentation, same context: everything outside the stretch is the
        // same), and keeps it; only the others are parsed. An edit at both ends of a large
        // file parses two entries, not everything between them.
        let olds = Olds {
            text: old_b,
            starts: &layout.starts,
            end: layout.starts.get(b).copied().unwrap_or(layout.end),
        };
        let (head_end, mut found) = split(new_b, start, new_end, layout.indent, a, b, &olds)?;
        // Where each new entry ends (the next one's start, or the stretch's end).
        let ends: Vec<usize> = found.iter().skip(1).map(|e| e.0).chain([new_end]).collect();
        let used = pair_moved(new_b, &mut found, &ends, a, b, &olds);
        // What is not an old entry's bytes is checked as the whole stretch was: whole lines,
        // starting and ending at ASCII, so valid UTF-8 in each makes the file valid; none of
        // the bytes that end the short way.
        let head = new_b.get(start..head_end)?;
        if head.iter().any(unsafe_byte) || std::str::from_utf8(head).is_err() {
            return None;
        }
        if watch_include {
            let mut spans = vec![(start, head_end)];
            spans.extend(
                found
                    .iter()
                    .zip(&ends)
                    .filter(|(e, _)| e.1.is_none())
                    .map(|(e, to)| (e.0, *to)),
            );
            if crate::include::may_include_in(new_b, &spans) {
                return Some(Edit::MayInclude);
            }
        }
        // The entries to parse, as runs of consecutive entries (each run one parse).
        let mut entries: Option<crate::Entries> = None;
        let mut parsed = 0;
        let mut i = 0;
        while i < found.len() {
            if found[i].1.is_some() {
                i += 1;
                continue;
            }
            let from = i;
            while i < found.len() && found[i].1.is_none() {
                i += 1;
            }
            parsed += i - from;
            let run = new_b.get(found[from].0..ends[i - 1])?;
            if has_unsafe_byte(run) {
                return None;
            }
            let run = std::str::from_utf8(run).ok()?;
            let (_, line_nos) = scan_region(run, layout.indent, 0)?;
            let got = crate::parse_services(run)?;
            // A loopback or link-local address may be refused by the host section, and a
            // number YAML typed is checked against the whole text: the full parse decides
            // both.
            if !got.problems.is_empty()
                || got.lines != line_nos
                || !got.later.is_empty()
                || got.keys.len() != i - from
            {
                return None;
            }
            match entries.as_mut() {
                None => entries = Some(got),
                // A name in two runs: the full parse says where.
                Some(all) => all.append(got).then_some(())?,
            }
        }
        let mut entries = entries.unwrap_or_default();
        let mut parsed_keys = entries.keys.iter().copied();
        let mut keys = Vec::with_capacity(found.len());
        for (_, r) in &found {
            keys.push(match r {
                Some(j) => layout.keys[*j],
                None => parsed_keys.next()??,
            });
        }
        let new_keys: Vec<ServiceKey> = entries.keys.iter().copied().collect::<Option<_>>()?;
        let gone: BTreeSet<ServiceKey> = (a..b)
            .filter(|j| !used[j - a])
            .map(|j| layout.keys[j])
            .collect();
        let services = &self.config.desired.services;
        // A new entry may not collide with one it did not replace (the full parse says how).
        if new_keys
            .iter()
            .any(|k| !gone.contains(k) && services.contains_key(k))
        {
            return None;
        }
        let names: BTreeSet<&str> = entries.names().collect();
        if !names.is_empty()
            && services.iter().any(|(k, s)| {
                !gone.contains(k) && s.name.as_deref().is_some_and(|n| names.contains(n))
            })
        {
            return None;
        }
        // Two runs defining one service: `None`.
        let desired = entries.take_desired()?;
        let touched: BTreeSet<ServiceKey> = gone
            .iter()
            .chain(&new_keys)
            .filter(|k| services.get(k) != desired.services.get(k))
            .copied()
            .collect();
        // No entries left: `services:` with nothing after it is null, which the full parse
        // refuses.
        let count = layout.starts.len() - (b - a) + found.len();
        if count == 0 {
            return None;
        }
        // Take it.
        let delta = new_b.len() as isize - old_b.len() as isize;
        let shift = |s: &usize| s.checked_add_signed(delta);
        let mut next = Layout {
            indent: layout.indent,
            starts: Vec::with_capacity(count),
            keys: Vec::with_capacity(count),
            end: shift(&layout.end)?,
        };
        next.starts.extend_from_slice(&layout.starts[..a]);
        next.keys.extend_from_slice(&layout.keys[..a]);
        next.starts.extend(found.iter().map(|e| e.0));
        next.keys.extend(keys);
        for s in &layout.starts[b..] {
            next.starts.push(shift(s)?);
        }
        next.keys.extend_from_slice(&layout.keys[b..]);
        let services = &mut self.config.desired.services;
        let removed: Vec<(ServiceKey, DesiredService)> = gone
            .iter()
            .filter_map(|k| services.remove(k).map(|s| (*k, s)))
            .collect();
        services.extend(desired.services);
        let undo = Undo {
            plain: self.plain,
            layout: self.layout.replace(next),
            removed,
            added: new_keys,
        };
        Some(Edit::Taken(touched, parsed, undo))
    }
}

/// What [`Loaded::edit`] did.
enum Edit {
    /// Taken in place: the services that may differ, the entries parsed, the way back.
    Taken(BTreeSet<ServiceKey>, usize, Undo),
    /// Nothing: the new bytes may hold an `include`.
    MayInclude,
}

/// What [`Loaded::reread_bounded`] found.
enum Short {
    /// The answer.
    Done(Reread),
    /// The new text, which may hold an `include`.
    MayInclude(Vec<u8>),
}

/// The line starting at `at` (without its end of line, and before `end`), and where the next
/// one starts.
fn line_at(text: &[u8], at: usize, end: usize) -> (&[u8], usize) {
    let rest = &text[at..end];
    let (mut line, next) = match memchr::memchr(b'\n', rest) {
        Some(i) => (&rest[..i], at + i + 1),
        None => (rest, end),
    };
    while let [before @ .., b'\r'] = line {
        line = before;
    }
    (line, next)
}

/// [`classify`] for bytes.
fn classify_bytes(line: &[u8]) -> Line {
    let ind = line.iter().take_while(|b| **b == b' ').count();
    let trimmed = &line[ind..];
    if trimmed.is_empty() || trimmed[0] == b'#' {
        return Line::Blank;
    }
    if line.starts_with(b"---") || line.starts_with(b"...") {
        return Line::Marker;
    }
    let item = trimmed == b"-" || trimmed.starts_with(b"- ");
    Line::Content(ind, item)
}

/// True when the line at `at` starts an entry at `indent`.
fn entry_starts_at(text: &[u8], at: usize, end: usize, indent: usize) -> bool {
    let (line, _) = line_at(text, at, end);
    matches!(classify_bytes(line), Line::Content(i, true) if i == indent)
}

/// True when `bytes` hold one of the bytes that end the short way.
fn has_unsafe_byte(bytes: &[u8]) -> bool {
    memchr::memchr3(b'&', b'*', b'!', bytes).is_some()
        || memchr::memchr2(b'%', b'\t', bytes).is_some()
}

/// An entry of an edited stretch: where it starts in the new text, and the old entry whose
/// bytes it repeats (whose service it keeps), if any.
type Found = (usize, Option<usize>);

/// The old entries of an edited stretch (`a..b` of the layout), as bytes of the old text.
struct Olds<'o> {
    /// The old text.
    text: &'o [u8],
    /// Where each old entry starts (the layout's).
    starts: &'o [usize],
    /// The byte after the stretch's last entry.
    end: usize,
}

impl<'o> Olds<'o> {
    /// The byte after old entry `j`.
    fn through(&self, j: usize) -> usize {
        self.starts
            .get(j + 1)
            .map_or(self.end, |s| (*s).min(self.end))
    }

    /// Old entry `j`'s bytes.
    fn entry(&self, j: usize) -> &'o [u8] {
        &self.text[self.starts[j]..self.through(j)]
    }
}

/// Splits the new text's stretch `start..end` into entries at `indent` (as [`scan_region`]
/// would), pairing each with the old entry of `a..b` it repeats byte for byte when that is the
/// old entry in its place or the one after (most edits keep the order): an old entry's bytes
/// are not looked at line by line again, nor the lines of the new entries that repeat them.
/// Returns where the blank lines before the first entry end, and each entry's start with its
/// old entry; `None` when the stretch is not whole entries.
fn split(
    new: &[u8],
    start: usize,
    end: usize,
    indent: usize,
    a: usize,
    b: usize,
    olds: &Olds,
) -> Option<(usize, Vec<Found>)> {
    let mut p = start;
    while p < end {
        let (line, next) = line_at(new, p, end);
        match classify_bytes(line) {
            Line::Blank => p = next,
            Line::Content(i, true) if i == indent => break,
            _ => return None,
        }
    }
    let head_end = p;
    let mut found = vec![];
    let mut cursor = a;
    while p < end {
        // `p` starts an entry. A run of old entries repeated from here (the whole stretch
        // between the two changes of an edit at both ends) is compared as one, not entry by
        // entry: each entry of it whose successor is repeated whole, to its line end, is the
        // old entry again (as `same` below would find, one by one).
        if cursor < b {
            let from = olds.starts[cursor];
            let m = common_prefix(&new[p..end], &olds.text[from..olds.end]);
            let mut j = cursor;
            while j + 1 < b
                && olds.through(j + 1) - from <= m
                && olds.entry(j + 1).last() == Some(&b'\n')
            {
                found.push((p + olds.starts[j] - from, Some(j)));
                j += 1;
            }
            p += olds.starts[j] - from;
            cursor = j;
        }
        let same = |j: usize| {
            let o = olds.entry(j);
            let q = p + o.len();
            q <= end
                && new[p..q] == *o
                && (q == end || (o.last() == Some(&b'\n') && entry_starts_at(new, q, end, indent)))
        };
        if let Some(j) = (cursor..b.min(cursor + 2)).find(|&j| same(j)) {
            found.push((p, Some(j)));
            p += olds.entry(j).len();
            cursor = j + 1;
            continue;
        }
        found.push((p, None));
        let (_, mut next) = line_at(new, p, end);
        while next < end {
            let (line, after) = line_at(new, next, end);
            match classify_bytes(line) {
                Line::Blank => {}
                Line::Content(i, _) if i > indent => {}
                Line::Content(i, true) if i == indent => break,
                _ => return None,
            }
            next = after;
        }
        p = next;
    }
    Some((head_end, found))
}

/// Pairs the new entries [`split`] left alone with old entries of `a..b` of the same bytes
/// (entries moved), each old entry once (an entry written twice is a duplicate, the parser's to
/// report); `ends` holds where each of `found` ends. Returns which old entries (from `a`) are
/// paired.
fn pair_moved<'o>(
    new: &[u8],
    found: &mut [Found],
    ends: &[usize],
    a: usize,
    b: usize,
    olds: &Olds<'o>,
) -> Vec<bool> {
    let mut used = vec![false; b - a];
    for j in found.iter().filter_map(|e| e.1) {
        used[j - a] = true;
    }
    let mut index: HashMap<&[u8], Vec<usize>> = HashMap::new();
    for j in (a..b).filter(|j| !used[j - a]) {
        index.entry(olds.entry(j)).or_default().push(j);
    }
    if index.is_empty() {
        return used;
    }
    for (e, &to) in found.iter_mut().zip(ends) {
        if e.1.is_some() {
            continue;
        }
        let bytes = &new[e.0..to];
        if let Some(j) = index
            .get(bytes)
            .into_iter()
            .flatten()
            .copied()
            .find(|j| !used[j - a])
        {
            used[j - a] = true;
            e.1 = Some(j);
        }
    }
    used
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    fn naive_prefix(a: &[u8], b: &[u8]) -> usize {
        a.iter().zip(b).take_while(|(x, y)| x == y).count()
    }

    fn naive_suffix(a: &[u8], b: &[u8]) -> usize {
        a.iter()
            .rev()
            .zip(b.iter().rev())
            .take_while(|(x, y)| x == y)
            .count()
    }

    /// Looking for an `include` only where the text changed finds what looking through the
    /// whole text finds, for a text that had none: the word written across the change's
    /// edges, in it, next to it, and a backslash or a quote added beside the other.
    #[test]
    fn an_include_is_found_where_the_text_changed() {
        let olds = [
            "services:\n  - address: incl\n    x: ude\n",
            "a: \"q\"\nb: inc\nc: lude\n",
            "a: \\x\nb: includ\nc: nclude\n",
            "",
        ];
        let pieces = [
            "", "include", "inc", "lude", "i", "e", "\\", "\"", "x\n", "includ",
        ];
        for old in olds {
            assert!(!crate::include::may_include(old.as_bytes()));
            for at in 0..=old.len() {
                for cut in 0..=3.min(old.len() - at) {
                    for piece in pieces {
                        let new = format!("{}{piece}{}", &old[..at], &old[at + cut..]);
                        let (prefix, suffix) = bounds(old.as_bytes(), new.as_bytes());
                        assert_eq!(
                            crate::include::may_include_in(
                                new.as_bytes(),
                                &[(prefix, new.len() - suffix)]
                            ),
                            crate::include::may_include(new.as_bytes()),
                            "{old:?} -> {new:?}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn comparing_a_step_at_a_time_finds_the_same_difference_as_byte_by_byte() {
        let base: Vec<u8> = (0..20_000u32).map(|i| (i * 7 % 251) as u8).collect();
        for at in [
            0, 1, 7, 8, 31, 32, 33, 4095, 4096, 4097, 8191, 12_288, 19_968, 19_999,
        ] {
            for delta in [-3i32, 0, 5] {
                let mut b = base.clone();
                b[at] ^= 1;
                let b: Vec<u8> = match delta {
                    d if d < 0 => b[..b.len() - 3].to_vec(),
                    0 => b,
                    _ => [b.as_slice(), &[1, 2, 3, 4, 5]].concat(),
                };
                assert_eq!(common_prefix(&base, &b), naive_prefix(&base, &b), "at {at}");
                assert_eq!(common_suffix(&base, &b), naive_suffix(&base, &b), "at {at}");
            }
        }
        assert_eq!(common_prefix(&base, &base), base.len());
        assert_eq!(common_suffix(&base, &base[5000..]), base.len() - 5000);
    }
}
