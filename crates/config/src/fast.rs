//! A fast reader for the plain block style that large configs are written in (and generated
//! in): `key: value` mappings, `- ` lists, plain scalars and comments. A 10,000-service file
//! reads in a fraction of the YAML library's time, which matters most where lvsd runs under
//! emulation or on small machines.
//!
//! It is deliberately strict and partial: it returns `None` at the first thing it does not
//! handle — quotes, flow collections (but for an empty `[]` list), anchors, aliases, tags, block scalars, multi-line
//! scalars, nulls, floats, booleans, numbers where text is expected, long-form
//! persistence, unknown or repeated keys, any indentation it does not expect, any character
//! YAML forbids or reads specially — and the caller then reads the file with serde-saphyr,
//! which reports every YAML error. What it does accept, it reads exactly as serde-saphyr does,
//! so the validator's problems with a file it read are the same too, and are reported from
//! here (a property test holds the two to the same result, word for word, on random and
//! damaged files and on every class of character).

use crate::raw::{
    Loc, Persistence, RawCheck, RawFile, RawHost, RawReal, RawService, Services, Spanned,
};
use crate::validate::{Checker, Collected};

/// One meaningful line: its number, indentation and content without comment or trailing
/// blanks.
#[derive(Debug, Clone, Copy)]
struct Line<'a> {
    no: u64,
    indent: usize,
    text: &'a str,
}

/// A node of the subset.
enum Node<'a> {
    Scalar(&'a str, Loc),
    Map(Vec<(&'a str, Node<'a>)>, Loc),
    Seq(Vec<Node<'a>>, Loc),
}

/// True when `line` holds a character the subset leaves to serde-saphyr: one YAML forbids
/// (C0 and C1 controls, DEL, U+FFFE, U+FFFF), a byte-order mark (an error at the start of a
/// token, text elsewhere), or one some YAML readers take as a line break (NEL, U+2028,
/// U+2029). What is left (printable ASCII and the other printable characters) YAML reads as
/// text wherever the subset lets it stand, as this reader does.
fn outside_subset(line: &str) -> bool {
    let b = line.as_bytes();
    b.iter().enumerate().any(|(i, &c)| match c {
        0x00..=0x1f | 0x7f => true,
        // C1 controls (NEL among them) are U+0080..U+009F: C2 80..C2 9F.
        0xc2 => b.get(i + 1).is_some_and(|n| (0x80..=0x9f).contains(n)),
        // U+2028, U+2029: E2 80 A8, E2 80 A9.
        0xe2 => b.get(i + 1) == Some(&0x80) && matches!(b.get(i + 2), Some(0xa8 | 0xa9)),
        // U+FEFF: EF BB BF; U+FFFE, U+FFFF: EF BF BE, EF BF BF.
        0xef => matches!(
            (b.get(i + 1), b.get(i + 2)),
            (Some(0xbb), Some(0xbf)) | (Some(0xbf), Some(0xbe | 0xbf))
        ),
        _ => false,
    })
}

/// How a read is spread over threads: the file's lines are split from `lines_from` bytes on,
/// its `services` from `services_from` entries on, each over `workers` threads. The result is
/// the same however it is spread (a property test holds the spread read to the sequential
/// one, problems included); only large files are worth the threads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Split {
    /// Files of this many bytes or more have their lines found by several threads.
    pub lines_from: usize,
    /// Lists of this many services or more are read by several threads.
    pub services_from: usize,
    /// Threads to spread over (1: all on the caller's).
    pub workers: usize,
}

impl Split {
    /// As lvsd reads: several threads for a large file (the cores there are, up to 4).
    pub(crate) fn auto() -> Split {
        Split {
            lines_from: PARALLEL_BYTES,
            services_from: PARALLEL_FROM,
            workers: std::thread::available_parallelism()
                .map_or(1, usize::from)
                .min(4),
        }
    }

    /// Everything on the caller's thread.
    pub(crate) fn sequential() -> Split {
        Split {
            lines_from: usize::MAX,
            services_from: usize::MAX,
            workers: 1,
        }
    }

    /// Spread over `workers` threads at any size, for tests.
    pub(crate) fn forced(workers: usize) -> Split {
        Split {
            lines_from: 0,
            services_from: 2,
            workers,
        }
    }
}

/// Files from this many bytes on have their lines found by several threads.
const PARALLEL_BYTES: usize = 1 << 20;

/// Splits the text into meaningful lines; `None` when a byte outside the subset appears. A
/// large text is cut at line ends into a run for each worker, each run's lines found on a
/// thread of its own and numbered as the whole text numbers them.
fn lines(text: &str, split: Split) -> Option<Vec<Line<'_>>> {
    if text.len() < split.lines_from || split.workers < 2 {
        return lines_in(text);
    }
    // Cut after a line end, so each run holds whole lines; the line end stays with the run
    // before the cut (whose last, empty piece holds no line).
    let bytes = text.as_bytes();
    let mut cuts = vec![0];
    for k in 1..split.workers {
        let from = (text.len() * k / split.workers).max(cuts.last().copied().unwrap_or(0));
        match bytes[from..].iter().position(|&b| b == b'\n') {
            Some(i) => cuts.push(from + i + 1),
            None => break,
        }
    }
    cuts.push(text.len());
    cuts.dedup();
    let runs: Vec<&str> = cuts.windows(2).map(|w| &text[w[0]..w[1]]).collect();
    // Each run's lines, and how many line ends it holds (what the next run's numbers start
    // after).
    let parts: Vec<Option<(Vec<Line<'_>>, u64)>> = std::thread::scope(|scope| {
        let jobs: Vec<_> = runs
            .iter()
            .map(|run| {
                scope.spawn(move || {
                    let ends = run.bytes().filter(|&b| b == b'\n').count() as u64;
                    lines_in(run).map(|l| (l, ends))
                })
            })
            .collect();
        jobs.into_iter().map(|j| j.join().ok().flatten()).collect()
    });
    let mut out = Vec::with_capacity(parts.iter().flatten().map(|(l, _)| l.len()).sum());
    let mut before = 0u64;
    for part in parts {
        let (lines, ends) = part?;
        out.extend(lines.into_iter().map(|l| Line {
            no: l.no + before,
            ..l
        }));
        before += ends;
    }
    Some(out)
}

/// [`lines`] on one thread.
fn lines_in(text: &str) -> Option<Vec<Line<'_>>> {
    let mut out = Vec::with_capacity(text.len() / 24);
    for (i, raw) in text.split('\n').enumerate() {
        let raw = raw.strip_suffix('\r').unwrap_or(raw);
        if outside_subset(raw) {
            return None;
        }
        // An empty list written `key: []` (as `lvsd export` writes a service without reals),
        // and no other bracket on the line (looked at only on a line with a bracket).
        let empty_list = || {
            raw.matches('[').count() == 1
                && raw.matches(']').count() == 1
                && raw
                    .split(" #")
                    .next()
                    .is_some_and(|t| t.trim_end_matches(' ').ends_with(": []"))
        };
        let bracket = raw.bytes().any(|b| matches!(b, b'[' | b']'));
        if bracket && !empty_list()
            || raw.bytes().any(|b| {
                matches!(
                    b,
                    b'\t'
                        | b'&'
                        | b'*'
                        | b'!'
                        | b'%'
                        | b'|'
                        | b'>'
                        | b'{'
                        | b'}'
                        | b'"'
                        | b'\''
                        | b'@'
                        | b'`'
                        | b'?'
                        | b','
                )
            })
        {
            return None;
        }
        let text = match raw.find('#') {
            // A comment starts at a `#` at the start or after a blank; elsewhere it is text
            // (which the subset does not take).
            Some(0) => "",
            Some(i) if raw.as_bytes()[i - 1] == b' ' => &raw[..i],
            Some(_) => return None,
            None => raw,
        };
        let text = text.trim_end_matches(' ');
        let body = text.trim_start_matches(' ');
        if body.is_empty() {
            continue;
        }
        if raw.starts_with("---") || raw.starts_with("...") {
            return None;
        }
        out.push(Line {
            no: i as u64 + 1,
            indent: text.len() - body.len(),
            text: body,
        });
    }
    Some(out)
}

/// Reads lines into nodes.
struct Reader<'a, 'b> {
    lines: &'b [Line<'a>],
    at: usize,
    /// Blocks open now: the config nests four deep, so a deeper file is not ours to read (and
    /// recursion stays bounded whatever the input).
    depth: usize,
}

/// The deepest nesting read here.
const MAX_DEPTH: usize = 8;

/// `key: value` or `key:` when `s` is a mapping entry of the subset.
fn split_key(s: &str) -> Option<(&str, &str)> {
    let (k, v) = match s.find(": ") {
        Some(i) => (&s[..i], s[i + 2..].trim_start_matches(' ')),
        None => (s.strip_suffix(':')?, ""),
    };
    let key = !k.is_empty() && k.bytes().all(|b| b.is_ascii_lowercase() || b == b'_');
    key.then_some((k, v))
}

impl<'a> Reader<'a, '_> {
    fn peek(&self) -> Option<Line<'a>> {
        self.lines.get(self.at).copied()
    }

    /// The block starting at the next line, which must be indented by exactly `indent`.
    fn block(&mut self, indent: usize) -> Option<Node<'a>> {
        let first = self.peek()?;
        if first.indent != indent {
            return None;
        }
        if first.text == "-" || first.text.starts_with("- ") {
            self.seq(indent)
        } else {
            self.map(indent, first.text, first.indent)
        }
    }

    /// A mapping whose keys stand at `indent`; its first entry is `first` (already taken off a
    /// `- ` line when `column` differs from the line's indentation).
    fn map(&mut self, indent: usize, first: &'a str, column: usize) -> Option<Node<'a>> {
        if self.depth >= MAX_DEPTH {
            return None;
        }
        self.depth += 1;
        let node = self.map_entries(indent, first, column);
        self.depth -= 1;
        node
    }

    fn map_entries(&mut self, indent: usize, first: &'a str, column: usize) -> Option<Node<'a>> {
        let start = self.peek()?;
        let loc = Loc {
            line: start.no,
            column: column as u64 + 1,
        };
        let mut entries: Vec<(&str, Node<'a>)> = vec![];
        let mut text = first;
        let mut line = start;
        loop {
            let (key, value) = split_key(text)?;
            if entries.iter().any(|(k, _)| *k == key) {
                return None;
            }
            self.at += 1;
            let node = if value.is_empty() {
                match self.peek() {
                    Some(n) if n.indent > indent => self.block(n.indent)?,
                    // A list may stand at its key's indentation.
                    Some(n)
                        if n.indent == indent && (n.text == "-" || n.text.starts_with("- ")) =>
                    {
                        self.seq(indent)?
                    }
                    // An empty value is null: serde-saphyr's business.
                    _ => return None,
                }
            } else {
                if self.peek().is_some_and(|n| n.indent > indent) {
                    return None;
                }
                // Keys stand at `indent`; the value follows its key on the line.
                let column = indent + (text.len() - value.len()) + 1;
                let at = Loc {
                    line: line.no,
                    column: column as u64,
                };
                if value == "[]" {
                    Node::Seq(vec![], at)
                } else {
                    Node::Scalar(value, at)
                }
            };
            entries.push((key, node));
            match self.peek() {
                Some(n) if n.indent == indent && !(n.text == "-" || n.text.starts_with("- ")) => {
                    line = n;
                    text = n.text;
                }
                Some(n) if n.indent > indent => return None,
                _ => break,
            }
        }
        Some(Node::Map(entries, loc))
    }

    /// A list whose `- ` marks stand at `indent`.
    fn seq(&mut self, indent: usize) -> Option<Node<'a>> {
        let loc = self.peek().map_or(Loc { line: 0, column: 0 }, |l| Loc {
            line: l.no,
            column: indent as u64 + 1,
        });
        let mut items = vec![];
        self.items(indent, |n| {
            items.push(n);
            Some(())
        })?;
        Some(Node::Seq(items, loc))
    }

    /// Hands each item of the list whose `- ` marks stand at `indent` to `each` as it is read
    /// (a long list is never held whole).
    fn items(&mut self, indent: usize, mut each: impl FnMut(Node<'a>) -> Option<()>) -> Option<()> {
        while let Some(line) = self.peek() {
            if line.indent != indent {
                if line.indent > indent {
                    return None;
                }
                break;
            }
            let Some(rest) = line.text.strip_prefix("- ") else {
                // The next key of the mapping holding this list at its own indentation.
                break;
            };
            let rest = rest.trim_start_matches(' ');
            let column = indent + (line.text.len() - rest.len());
            if rest.starts_with("- ") || rest == "-" {
                return None;
            }
            if split_key(rest).is_some() {
                // A mapping that starts on the `- ` line: its keys line up after the mark.
                each(self.map(column, rest, column)?)?;
            } else {
                self.at += 1;
                if self.peek().is_some_and(|n| n.indent > indent) {
                    return None;
                }
                each(Node::Scalar(
                    rest,
                    Loc {
                        line: line.no,
                        column: column as u64 + 1,
                    },
                ))?;
            }
        }
        Some(())
    }
}

/// Text as serde-saphyr gives it for a string field: only plain words it cannot take for
/// anything else (a null, a boolean, a number).
fn text(node: &Node<'_>) -> Option<Spanned<String>> {
    let Node::Scalar(s, loc) = node else {
        return None;
    };
    let special = [
        "~", "null", "true", "false", "yes", "no", "on", "off", "y", "n",
    ]
    .iter()
    .any(|w| s.eq_ignore_ascii_case(w));
    let first = s.as_bytes().first()?;
    // Starting like a number, it is taken only when no YAML schema could read a number in it:
    // an address (a `:` or two dots: 10.0.0.1, 10.0.0.1:80) or a duration (30s, 1m30s).
    if first.is_ascii_digit() || *first == b'.' {
        let address = s.contains(':') || s.matches('.').count() >= 2;
        let duration = s.bytes().any(|b| !b.is_ascii_digit())
            && s.bytes()
                .all(|b| b.is_ascii_digit() || matches!(b, b's' | b'm' | b'h' | b'd'));
        if !(address || duration) || s.parse::<f64>().is_ok() {
            return None;
        }
    }
    // `: ` inside a plain value is a YAML error ("mapping values are not allowed here").
    if special || matches!(first, b'-' | b'+' | b':') || s.ends_with(':') || s.contains(": ") {
        return None;
    }
    Some(Spanned::plain(s, *loc))
}

/// A plain decimal integer, kept as its text (validation reads it, as it reads what
/// serde-saphyr hands over); anything fancier is left to serde-saphyr.
fn int(node: &Node<'_>) -> Option<Spanned<String>> {
    let Node::Scalar(s, loc) = node else {
        return None;
    };
    let plain = s.len() <= 18
        && s.bytes().all(|b| b.is_ascii_digit())
        && !(s.len() > 1 && s.starts_with('0'));
    plain.then(|| Spanned::plain(s, *loc))
}

/// A mark in hex (`0x7`, as iptables prints marks), which YAML reads as text when the key
/// wants text, as `fwmark` does: plain hex digits after `0x` only (the validator takes it).
fn hex(node: &Node<'_>) -> Option<Spanned<String>> {
    let Node::Scalar(s, loc) = node else {
        return None;
    };
    let digits = s.strip_prefix("0x").or_else(|| s.strip_prefix("0X"))?;
    let plain =
        !digits.is_empty() && digits.len() <= 16 && digits.bytes().all(|b| b.is_ascii_hexdigit());
    plain.then(|| Spanned::plain(s, *loc))
}

/// A number or a string (durations).
fn scalar(node: &Node<'_>) -> Option<Spanned<String>> {
    int(node).or_else(|| text(node))
}

fn texts(node: &Node<'_>) -> Option<Spanned<Vec<Spanned<String>>>> {
    list(node, text)
}

/// An HTTP status or a range of them (`200-299`), which YAML reads as text: no schema takes
/// digits, a dash and digits for a number or a date.
fn status(node: &Node<'_>) -> Option<Spanned<String>> {
    if let Node::Scalar(s, loc) = node
        && let Some((low, high)) = s.split_once('-')
        && [low, high]
            .iter()
            .all(|p| p.len() == 3 && p.bytes().all(|b| b.is_ascii_digit()))
    {
        return Some(Spanned::plain(s, *loc));
    }
    int(node)
}

/// A list of `each`.
fn list(
    node: &Node<'_>,
    each: impl Fn(&Node<'_>) -> Option<Spanned<String>>,
) -> Option<Spanned<Vec<Spanned<String>>>> {
    let Node::Seq(items, loc) = node else {
        return None;
    };
    let items = items.iter().map(each).collect::<Option<_>>()?;
    Some(Spanned::new(items, *loc))
}

/// A health check in block style; its values are validated later, as the YAML path's are.
fn check(node: &Node<'_>) -> Option<Box<Spanned<RawCheck>>> {
    let Node::Map(entries, loc) = node else {
        return None;
    };
    let mut c = RawCheck::default();
    for (k, v) in entries {
        match *k {
            "type" => c.kind = Some(text(v)?),
            "port" => c.port = Some(int(v)?),
            "path" => c.path = Some(text(v)?),
            "expect_status" => c.expect_status = Some(list(v, status)?),
            "expect_body" => c.expect_body = Some(text(v)?),
            "host" => c.host = Some(text(v)?),
            "command" => c.command = Some(list(v, text)?),
            "interval" => c.interval = Some(scalar(v)?),
            "timeout" => c.timeout = Some(scalar(v)?),
            "rise" => c.rise = Some(int(v)?),
            "fall" => c.fall = Some(int(v)?),
            "initial" => c.initial = Some(text(v)?),
            _ => return None,
        }
    }
    Some(Box::new(Spanned::new(c, *loc)))
}

fn real(node: &Node<'_>) -> Option<Spanned<RawReal>> {
    let Node::Map(entries, loc) = node else {
        return None;
    };
    let mut r = RawReal::default();
    for (k, v) in entries {
        match *k {
            "address" => r.address = Some(text(v)?),
            "weight" => r.weight = Some(int(v)?),
            "forward" => r.forward = Some(text(v)?),
            "max_connections" => r.max_connections = Some(int(v)?),
            "min_connections" => r.min_connections = Some(int(v)?),
            "slow_start" => r.slow_start = Some(scalar(v)?),
            "check" => r.check = Some(check(v)?),
            _ => return None,
        }
    }
    Some(Spanned::new(r, *loc))
}

fn service(node: &Node<'_>) -> Option<Spanned<RawService>> {
    let Node::Map(entries, loc) = node else {
        return None;
    };
    let mut s = RawService::default();
    for (k, v) in entries {
        match *k {
            "name" => s.name = Some(text(v)?),
            "address" => s.address = Some(text(v)?),
            "fwmark" => s.fwmark = Some(int(v).or_else(|| hex(v))?),
            "family" => s.family = Some(text(v)?),
            "protocol" => s.protocol = Some(text(v)?),
            "scheduler" => s.scheduler = Some(text(v)?),
            "forward" => s.forward = Some(text(v)?),
            "persistence" => {
                // The text as the file holds it: not `typed`, a plain decimal needs no second
                // look at the bytes (which serde-saphyr's typed number does).
                let p = scalar(v)?;
                let short = Persistence::Short {
                    text: p.value,
                    typed: false,
                };
                s.persistence = Some(Spanned {
                    len: p.len,
                    ..Spanned::new(short, p.referenced)
                });
            }
            "flags" => s.flags = Some(texts(v)?),
            "drain_timeout" => s.drain_timeout = Some(scalar(v)?),
            "slow_start" => s.slow_start = Some(scalar(v)?),
            "on_failure" => s.on_failure = Some(text(v)?),
            "fallback" => s.fallback = Some(text(v)?),
            "quorum" => s.quorum = Some(int(v)?),
            "check" => s.check = Some(check(v)?),
            "reals" => {
                let Node::Seq(items, loc) = v else {
                    return None;
                };
                let reals = items.iter().map(real).collect::<Option<_>>()?;
                s.reals = Some(Spanned::new(reals, *loc));
            }
            _ => return None,
        }
    }
    Some(Spanned::new(s, *loc))
}

fn host(node: &Node<'_>) -> Option<Spanned<RawHost>> {
    let Node::Map(entries, loc) = node else {
        return None;
    };
    let mut h = RawHost::default();
    for (k, v) in entries {
        match *k {
            "role" => h.role = Some(text(v)?),
            "interface" => h.interface = Some(text(v)?),
            "vips" => h.vips = Some(texts(v)?),
            _ => return None,
        }
    }
    Some(Spanned::new(h, *loc))
}

/// Reads `text` if it keeps to the subset, validating each service as it goes (as the YAML
/// path does); `None` sends the caller to serde-saphyr.
pub(crate) fn read<const COUNT: bool>(text: &str) -> Option<RawFile<COUNT>> {
    read_with::<COUNT>(text, Split::auto())
}

/// [`read`], spread over threads as `split` says.
pub(crate) fn read_with<const COUNT: bool>(text: &str, split: Split) -> Option<RawFile<COUNT>> {
    let lines = lines(text, split)?;
    let mut r = Reader {
        lines: &lines,
        at: 0,
        depth: 0,
    };
    let mut file = RawFile::default();
    let mut seen: Vec<&str> = vec![];
    // The top level, by hand: `services` is read item by item and each service validated as it
    // comes, like the YAML path does.
    while let Some(line) = r.peek() {
        if line.indent != 0 {
            return None;
        }
        let (key, value) = split_key(line.text)?;
        if !value.is_empty() || seen.contains(&key) {
            return None;
        }
        seen.push(key);
        r.at += 1;
        let next = r.peek()?;
        let list = next.text == "-" || next.text.starts_with("- ");
        match key {
            "services" if next.indent > 0 || list => {
                let end = block_end(&lines, r.at, next.indent);
                let loc = Loc {
                    line: next.no,
                    column: next.indent as u64 + 1,
                };
                file.services = Some(Spanned::new(
                    Services(services(&lines[r.at..end], next.indent, COUNT, split)?),
                    loc,
                ));
                r.at = end;
            }
            "host" if next.indent > 0 => file.host = Some(host(&r.block(next.indent)?)?),
            _ => return None,
        }
    }
    Some(file)
}

/// Reads a stretch of a file that holds whole entries of `services` and nothing else (lines
/// counted from its start): what an in-place edit parses again.
pub(crate) fn read_services(text: &str) -> Option<Collected> {
    let lines = lines(text, Split::auto())?;
    let first = lines.first()?;
    if !is_item(first.text) || block_end(&lines, 0, first.indent) != lines.len() {
        return None;
    }
    services(&lines, first.indent, false, Split::auto())
}

/// Where the list whose `- ` marks stand at `indent`, starting at line `from`, ends.
fn block_end(lines: &[Line<'_>], from: usize, indent: usize) -> usize {
    lines[from..]
        .iter()
        .position(|l| l.indent < indent || (l.indent == indent && !is_item(l.text)))
        .map_or(lines.len(), |i| from + i)
}

fn is_item(text: &str) -> bool {
    text == "-" || text.starts_with("- ")
}

/// Services from this many on are read by several threads, each a run of whole entries.
const PARALLEL_FROM: usize = 2048;

/// Reads and validates the entries of `services` (exactly `lines`, entries at `indent`);
/// `count` to count the valid ones instead of keeping them.
fn services(lines: &[Line<'_>], indent: usize, count: bool, split: Split) -> Option<Collected> {
    let starts: Vec<usize> = lines
        .iter()
        .enumerate()
        .filter(|(_, l)| l.indent == indent)
        .map(|(i, _)| i)
        .collect();
    let workers = split.workers;
    if starts.len() < split.services_from || workers < 2 {
        return services_in(lines, indent, count);
    }
    let per = starts.len().div_ceil(workers);
    let bounds: Vec<usize> = starts
        .iter()
        .step_by(per)
        .copied()
        .chain([lines.len()])
        .collect();
    let parts: Vec<Option<Collected>> = std::thread::scope(|scope| {
        let jobs: Vec<_> = bounds
            .windows(2)
            .map(|w| {
                let part = &lines[w[0]..w[1]];
                scope.spawn(move || services_in(part, indent, count))
            })
            .collect();
        jobs.into_iter().map(|j| j.join().ok().flatten()).collect()
    });
    let mut out = Collected::counting(count);
    for part in parts {
        // A service defined in two parts is a duplicate: serde-saphyr's path reports it.
        if !out.append(part?) {
            return None;
        }
    }
    // An identity in two parts: each part's checker saw only its own entries, so the
    // duplicate is not among the problems (and the problems elsewhere would be said without
    // it): serde-saphyr's path reports it with both lines, as one reading does.
    if !out.unique() {
        return None;
    }
    Some(out)
}

/// [`services`] on one thread.
fn services_in(lines: &[Line<'_>], indent: usize, count: bool) -> Option<Collected> {
    let mut r = Reader {
        lines,
        at: 0,
        depth: 0,
    };
    let mut checker = Checker::default();
    let mut out = Collected::counting(count);
    // Sized once: grown by doubling, a large part's list would reserve up to twice its size.
    let entries = lines.iter().filter(|l| l.indent == indent).count();
    out.keys.reserve_exact(entries);
    out.lines.reserve_exact(entries);
    if !count {
        out.services.reserve_exact(entries);
    }
    r.items(indent, |item| {
        checker.collect(service(&item)?, &mut out);
        Some(())
    })?;
    if r.at != lines.len() {
        return None;
    }
    out.problems = checker.problems;
    out.warnings = checker.warnings;
    Some(out)
}
