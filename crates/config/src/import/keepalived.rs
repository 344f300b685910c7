//! keepalived.conf's LVS part to lvsd YAML. The file is read as keepalived reads it: `#` and
//! `!` comments anywhere, blocks in braces however they are indented or spread over lines,
//! `\` continuing a line, quoted strings, `$NAME=value` definitions, and `include` (globs and
//! csh braces, relative to the including file). Defaults are keepalived's own (2.2): NAT
//! forwarding, the `wlc` scheduler, weight 1, `delay_loop` 60 s, `connect_timeout` 5 s, one
//! retry (none for MISC_CHECK), persistence 360 s when `persistence_timeout` has no value,
//! UDP when no protocol is given; real ports as keepalived resets them (the service's unless
//! NAT, none for a fwmark service). `vrrp_instance` and the other VRRP sections are left to
//! keepalived and named in the summary.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};

use super::{Check, Converted, Real, Service, duration_ms};
use crate::error::printable;
use crate::{Error, Problem};

/// Nesting of `include` followed, at most.
const MAX_INCLUDE_DEPTH: usize = 8;
/// Files read in all (the main one and every include), as for lvsd's own `include`.
const MAX_FILES: usize = crate::include::MAX_INCLUDED_FILES;
/// Bytes read in all, over every file: what lvsd reads of one config.
const MAX_BYTES: u64 = crate::MAX_FILE_BYTES;
/// Nesting of `{ … }` blocks, at most (keepalived's deepest is four).
const MAX_NESTING: usize = 32;
/// Bytes a line may grow to once its `$NAME`s are replaced (and the work of replacing them).
const MAX_LINE_EXPANSION: usize = 1 << 20;
/// `$NAME`s within `$NAME`s, at most.
const MAX_DEFINITION_DEPTH: usize = 32;
/// Words and braces read in all, over every file (each is kept until the blocks are built).
const MAX_TOKENS: usize = 2_000_000;
/// Problems kept: past these they are counted (a file of a million stray braces is one mistake).
const MAX_PROBLEMS: usize = 1000;
/// Services and real servers made in all: a few `virtual_server_group` ranges used by a few
/// services would otherwise make millions.
const MAX_MADE: usize = 1_000_000;
/// Addresses one entry of a `virtual_server_group` may expand to.
const MAX_RANGE: u128 = 65_536;

#[derive(Debug, Clone)]
struct Token {
    text: String,
    /// Written in quotes (never a brace).
    quoted: bool,
    /// The first token of its line.
    starts_line: bool,
    file: usize,
    line: u64,
    col: u64,
}

#[derive(Debug, Clone)]
struct Node {
    key: Token,
    args: Vec<Token>,
    children: Option<Vec<Node>>,
}

/// The files read, for messages, and the problems found.
struct Reader {
    files: Vec<String>,
    problems: Vec<(usize, Problem)>,
    /// Problems past [`MAX_PROBLEMS`], counted.
    omitted: usize,
    /// Ordered, so that the same file always converts the same way.
    vars: BTreeMap<String, String>,
    skipped: Vec<String>,
    /// The files being read, outermost first (canonical paths): an include of one is a cycle.
    reading: Vec<PathBuf>,
    /// Bytes read so far, over every file.
    bytes: u64,
    /// A limit was hit: reading stops, and the problems so far are the answer.
    stop: bool,
    /// Services and reals made so far.
    made: usize,
    /// Addresses the groups' ranges hold so far.
    grouped: usize,
    /// Tokens read so far.
    tokens: usize,
}

/// Why a line's `$NAME`s could not be replaced.
enum Expansion {
    TooLarge,
    Cycle(String),
    TooDeep,
}

impl Reader {
    fn new() -> Reader {
        Reader {
            files: vec![],
            problems: vec![],
            omitted: 0,
            vars: BTreeMap::new(),
            skipped: vec![],
            reading: vec![],
            bytes: 0,
            stop: false,
            made: 0,
            grouped: 0,
            tokens: 0,
        }
    }

    /// A problem that ends the reading: a limit was hit.
    fn fatal(&mut self, t: &Token, message: impl Into<String>) {
        self.err(t, message);
        self.stop = true;
    }

    fn err(&mut self, t: &Token, message: impl Into<String>) {
        if self.problems.len() >= MAX_PROBLEMS {
            self.omitted += 1;
            return;
        }
        self.problems.push((
            t.file,
            Problem {
                line: t.line,
                col: t.col,
                message: message.into(),
            },
        ));
    }

    fn at(&self, t: &Token) -> String {
        format!("{}:{}", self.files[t.file], t.line)
    }

    /// Reads `text` (of `path`) into tokens, following `include`.
    fn tokens(&mut self, text: &str, path: &Path, depth: usize, out: &mut Vec<Token>) {
        let file = self.files.len();
        self.files
            .push(printable(&path.display().to_string()).into_owned());
        self.bytes += text.len() as u64;
        self.reading
            .push(std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf()));
        self.read_lines(text, file, path, depth, out);
        self.reading.pop();
    }

    fn read_lines(
        &mut self,
        text: &str,
        file: usize,
        path: &Path,
        depth: usize,
        out: &mut Vec<Token>,
    ) {
        let dir = path
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .map_or_else(|| PathBuf::from("."), Path::to_path_buf);
        let mut pending = String::new();
        let mut first_line = 0u64;
        for (n, raw) in text.lines().enumerate() {
            if self.stop {
                return;
            }
            let line_no = n as u64 + 1;
            let raw = raw.trim_end_matches('\r');
            if pending.is_empty() {
                first_line = line_no;
            }
            if let Some(head) = raw.strip_suffix('\\') {
                pending.push_str(head);
                pending.push(' ');
                continue;
            }
            pending.push_str(raw);
            let line = std::mem::take(&mut pending);
            self.line(&line, file, first_line, &dir, depth, out);
        }
        if !pending.is_empty() && !self.stop {
            let line = std::mem::take(&mut pending);
            self.line(&line, file, first_line, &dir, depth, out);
        }
    }

    fn line(
        &mut self,
        line: &str,
        file: usize,
        no: u64,
        dir: &Path,
        depth: usize,
        out: &mut Vec<Token>,
    ) {
        let trimmed = line.trim_start();
        // `$NAME=value`: a definition, used as `$NAME` or `${NAME}` later.
        if let Some(def) = trimmed.strip_prefix('$') {
            if let Some((name, value)) = def.split_once('=') {
                if !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                    self.vars.insert(name.to_owned(), value.trim().to_owned());
                    return;
                }
            }
        }
        if trimmed.starts_with('@') {
            self.skipped.push(format!(
                "{}:{no}: a conditional line (`@ID …`) is for keepalived's -i config id, which this conversion cannot know; not converted: convert the lines meant for this host by hand",
                self.files[file]
            ));
            return;
        }
        let line = match self.substitute(line) {
            Ok(l) => l,
            Err(e) => {
                let at = Token {
                    text: String::new(),
                    quoted: false,
                    starts_line: true,
                    file,
                    line: no,
                    col: 1,
                };
                let message = match e {
                    Expansion::TooLarge => format!(
                        "this line expands to more than {MAX_LINE_EXPANSION} bytes once its `$NAME` definitions are replaced (lvsd's limit for a line); check the definitions it uses"
                    ),
                    Expansion::Cycle(name) => format!(
                        "`${}` uses itself (through the definitions it uses), so it never ends; correct the definitions",
                        printable(&name)
                    ),
                    Expansion::TooDeep => format!(
                        "`$NAME` definitions are used within each other more than {MAX_DEFINITION_DEPTH} deep (lvsd's limit); use fewer levels"
                    ),
                };
                self.fatal(&at, message);
                return;
            }
        };
        let mut toks: Vec<Token> = vec![];
        let chars: Vec<char> = line.chars().collect();
        let mut i = 0;
        // The column is the character's index: counted once, never from the line's start.
        let col_of = |idx: usize| idx as u64 + 1;
        while i < chars.len() {
            if self.tokens + toks.len() >= MAX_TOKENS {
                // Checked as the words are read: one long line is not held whole first.
                let t = Token {
                    text: String::new(),
                    quoted: false,
                    starts_line: true,
                    file,
                    line: no,
                    col: col_of(i),
                };
                self.fatal(
                    &t,
                    format!(
                        "the files hold more than {MAX_TOKENS} words and braces in all (lvsd's limit for one conversion); convert in parts"
                    ),
                );
                return;
            }
            let (at, c) = (i, chars[i]);
            if c.is_whitespace() {
                i += 1;
                continue;
            }
            if c == '#' || c == '!' {
                break;
            }
            if c == '{' || c == '}' {
                toks.push(Token {
                    text: c.to_string(),
                    quoted: false,
                    starts_line: false,
                    file,
                    line: no,
                    col: col_of(at),
                });
                i += 1;
                continue;
            }
            if c == '"' {
                let mut s = String::new();
                let mut j = i + 1;
                while j < chars.len() && chars[j] != '"' {
                    if chars[j] == '\\' && j + 1 < chars.len() {
                        j += 1;
                    }
                    s.push(chars[j]);
                    j += 1;
                }
                toks.push(Token {
                    text: s,
                    quoted: true,
                    starts_line: false,
                    file,
                    line: no,
                    col: col_of(at),
                });
                i = j + 1;
                continue;
            }
            let mut s = String::new();
            let mut j = i;
            // keepalived ends a line at an unquoted `#` or `!` wherever it is, in a word too
            // (`3#seconds` is 3); `\#` and `\!` are the signs themselves.
            let mut comment = false;
            while j < chars.len() {
                let c = chars[j];
                if c.is_whitespace() || c == '{' || c == '}' || c == '"' {
                    break;
                }
                if c == '#' || c == '!' {
                    comment = true;
                    break;
                }
                if c == '\\' && matches!(chars.get(j + 1), Some('#' | '!')) {
                    j += 1;
                    s.push(chars[j]);
                    j += 1;
                    continue;
                }
                s.push(c);
                j += 1;
            }
            if s.is_empty() && comment {
                break;
            }
            toks.push(Token {
                text: s,
                quoted: false,
                starts_line: false,
                file,
                line: no,
                col: col_of(at),
            });
            i = j;
            if comment {
                break;
            }
        }
        if let Some(t) = toks.first_mut() {
            t.starts_line = true;
        }
        if let Some(first) = toks.first() {
            if matches!(
                first.text.as_str(),
                "include" | "includer" | "includem" | "includew" | "includeb"
            ) && !first.quoted
            {
                let first = first.clone();
                let Some(pattern) = toks.get(1).cloned() else {
                    self.err(&first, "`include` needs a file name");
                    return;
                };
                self.include(&pattern, dir, depth, out);
                return;
            }
        }
        self.tokens += toks.len();
        out.extend(toks);
    }

    /// `line` with each `$NAME` and `${NAME}` defined replaced by its value, itself
    /// replaced, in one pass (a name is the longest run of letters, digits and `_`, and
    /// `$NAME` ends at a space, a tab or the line's end, as keepalived reads it; one not
    /// defined stays as written). Bounded: the line's size, the
    /// work, the depth; a definition that uses itself is refused.
    fn substitute(&self, line: &str) -> Result<String, Expansion> {
        if !line.contains('$') || self.vars.is_empty() {
            return Ok(line.to_owned());
        }
        let mut out = String::with_capacity(line.len());
        let mut stack = vec![];
        let mut work = 0usize;
        self.expand(line, &mut out, &mut stack, &mut work)?;
        Ok(out)
    }

    fn expand<'a>(
        &'a self,
        text: &'a str,
        out: &mut String,
        stack: &mut Vec<&'a str>,
        work: &mut usize,
    ) -> Result<(), Expansion> {
        let ident = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
        let bytes = text.as_bytes();
        let mut i = 0;
        while i < bytes.len() {
            let Some(d) = memchr::memchr(b'$', &bytes[i..]) else {
                out.push_str(&text[i..]);
                break;
            };
            out.push_str(&text[i..i + d]);
            i += d + 1;
            *work += d + 1;
            // As keepalived's find_definition: a name starts with a letter or `_`; `${NAME}`
            // ends at its brace, `$NAME` at a space, a tab or the end of the line.
            let (name, end) = if bytes.get(i) == Some(&b'{') {
                match memchr::memchr(b'}', &bytes[i + 1..]) {
                    Some(n) => (&text[i + 1..i + 1 + n], i + 2 + n),
                    None => ("", i),
                }
            } else {
                let n = bytes[i..].iter().take_while(|b| ident(**b)).count();
                match bytes.get(i + n) {
                    None | Some(b' ' | b'\t') => (&text[i..i + n], i + n),
                    Some(_) => ("", i),
                }
            };
            let name = match name.as_bytes().first() {
                Some(b) if b.is_ascii_alphabetic() || *b == b'_' => name,
                _ => "",
            };
            match self.vars.get_key_value(name) {
                Some((name, value)) if !name.is_empty() => {
                    if stack.contains(&name.as_str()) {
                        return Err(Expansion::Cycle(name.clone()));
                    }
                    if stack.len() >= MAX_DEFINITION_DEPTH {
                        return Err(Expansion::TooDeep);
                    }
                    stack.push(name);
                    self.expand(value, out, stack, work)?;
                    stack.pop();
                    i = end;
                }
                _ => out.push('$'),
            }
            if out.len() > MAX_LINE_EXPANSION || *work > 4 * MAX_LINE_EXPANSION {
                return Err(Expansion::TooLarge);
            }
        }
        Ok(())
    }

    fn include(&mut self, pattern: &Token, dir: &Path, depth: usize, out: &mut Vec<Token>) {
        if depth >= MAX_INCLUDE_DEPTH {
            self.fatal(
                pattern,
                format!("`include` nests deeper than {MAX_INCLUDE_DEPTH} files (does a file include itself?)"),
            );
            return;
        }
        let mut found = vec![];
        for p in crate::glob::expand_braces(&pattern.text) {
            let path = dir.join(&p);
            if crate::glob::has_wildcard(&p) {
                let matched = crate::glob::glob(&path);
                if matched.is_empty() {
                    // keepalived logs it and goes on; said here, so that a mistyped directory
                    // is not a config with nothing in it and "every setting converted".
                    self.skipped.push(format!(
                        "{}:{}: include {} — matches no file (keepalived logs \"Unable to find configuration file\" and goes on); nothing read from it",
                        self.files[pattern.file],
                        pattern.line,
                        printable(&path.display().to_string())
                    ));
                }
                found.extend(matched);
            } else if path.exists() {
                found.push(path);
            } else {
                self.err(
                    pattern,
                    format!(
                        "included file `{}` does not exist (keepalived reads it relative to the including file's directory)",
                        printable(&path.display().to_string())
                    ),
                );
            }
        }
        for path in found {
            if self.stop {
                return;
            }
            let canonical = std::fs::canonicalize(&path).unwrap_or_else(|_| path.clone());
            if self.reading.contains(&canonical) {
                self.fatal(
                    pattern,
                    format!(
                        "`include` of `{}` while that file is being read: it includes itself (keepalived would read it without end); remove the include or narrow its pattern",
                        printable(&path.display().to_string())
                    ),
                );
                return;
            }
            if self.files.len() >= MAX_FILES {
                self.fatal(
                    pattern,
                    format!(
                        "`include` reads more than {MAX_FILES} files in all (lvsd's limit); include each file once, and fewer of them"
                    ),
                );
                return;
            }
            match crate::read_text(&path) {
                Ok(text) if self.bytes + text.len() as u64 > MAX_BYTES => {
                    self.fatal(
                        pattern,
                        format!(
                            "the included files come to more than {MAX_BYTES} bytes in all (lvsd's limit for a config); include each file once, and fewer of them"
                        ),
                    );
                    return;
                }
                Ok(text) => self.tokens(&text, &path, depth + 1, out),
                Err(e) => self.err(pattern, e.to_string()),
            }
        }
    }
}

/// Builds the block structure from the tokens: a keyword, its arguments to the end of its
/// line, and a `{ … }` block (on the same line or the next).
fn nodes(tokens: &[Token], i: &mut usize, depth: usize, r: &mut Reader) -> Vec<Node> {
    let mut out: Vec<Node> = vec![];
    if depth > MAX_NESTING {
        if let Some(t) = tokens.get(i.saturating_sub(1)) {
            r.fatal(
                t,
                format!(
                    "blocks nest deeper than {MAX_NESTING} (lvsd's limit; keepalived's own go four deep); a `}}` is missing, or remove the extra `{{`"
                ),
            );
        }
        return out;
    }
    while *i < tokens.len() && !r.stop {
        let t = &tokens[*i];
        if t.text == "}" && !t.quoted {
            *i += 1;
            if depth == 0 {
                r.err(t, "a `}` closes no block: remove it");
                continue;
            }
            return out;
        }
        if t.text == "{" && !t.quoted {
            // A block on the line below its keyword.
            *i += 1;
            let children = nodes(tokens, i, depth + 1, r);
            match out.last_mut() {
                Some(n) if n.children.is_none() => n.children = Some(children),
                _ => r.err(t, "a `{` opens a block for no keyword: remove it"),
            }
            continue;
        }
        let key = t.clone();
        *i += 1;
        let mut args = vec![];
        while *i < tokens.len() && !tokens[*i].starts_line {
            let a = &tokens[*i];
            if !a.quoted && (a.text == "{" || a.text == "}") {
                break;
            }
            args.push(a.clone());
            *i += 1;
        }
        let mut node = Node {
            key,
            args,
            children: None,
        };
        if *i < tokens.len()
            && tokens[*i].text == "{"
            && !tokens[*i].quoted
            && !tokens[*i].starts_line
        {
            *i += 1;
            node.children = Some(nodes(tokens, i, depth + 1, r));
        }
        out.push(node);
    }
    if depth > 0 && !r.stop {
        if let Some(last) = tokens.last() {
            r.err(last, "the file ends inside a block: a `}` is missing");
        }
    }
    out
}

/// Seconds as keepalived reads a timer (`3`, `1.5`), in milliseconds: exactly, or an error
/// (lvsd counts milliseconds; a finer value is not rounded silently).
fn timer(what: &str, t: &Token, r: &mut Reader) -> Option<u64> {
    let (whole, frac) = t.text.split_once('.').unwrap_or((&t.text, ""));
    let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    let secs = match whole.parse::<u64>() {
        Ok(n) if digits(whole) && digits(frac) && n < 1_000_000_000 => n,
        _ => {
            r.err(
                t,
                format!(
                    "{what} `{}` is not a number of seconds; write seconds such as 3 or 1.5",
                    printable(&t.text)
                ),
            );
            return None;
        }
    };
    let frac = frac.trim_end_matches('0');
    if frac.len() > 3 {
        r.err(
            t,
            format!(
                "{what} `{}` seconds is not a whole number of milliseconds, which lvsd counts in; round it to at most three decimals",
                printable(&t.text)
            ),
        );
        return None;
    }
    let ms = format!("{frac:0<3}").parse::<u64>().unwrap_or(0);
    Some(secs * 1000 + ms)
}

/// A timer that becomes a check's interval or timeout: one lvsd runs checks with (1 ms to 1 h),
/// or an error at its line (never clamped).
fn check_timer(n: &Node, r: &mut Reader) -> Option<u64> {
    let Some(a) = n.args.first() else {
        r.err(
            &n.key,
            format!("`{}` needs a number of seconds", printable(&n.key.text)),
        );
        return None;
    };
    let ms = timer(&printable(&n.key.text), a, r)?;
    if ms == 0 || ms > 3_600_000 {
        r.err(
            a,
            format!(
                "`{} {}`: lvsd's checks take an interval and timeout from 1ms to 3600s; write a value in that range",
                printable(&n.key.text),
                printable(&a.text)
            ),
        );
        return None;
    }
    Some(ms)
}

/// A number that fits the kernel's 32 bits, or an error at its place.
fn uint32(t: &Token, r: &mut Reader) -> Option<u32> {
    let n = uint(t, r)?;
    match u32::try_from(n) {
        Ok(n) => Some(n),
        Err(_) => {
            r.err(
                t,
                format!("{n} is larger than the kernel takes here (at most 4294967295)"),
            );
            None
        }
    }
}

fn uint(t: &Token, r: &mut Reader) -> Option<u64> {
    match t.text.parse::<u64>() {
        Ok(n) => Some(n),
        Err(_) => {
            r.err(t, format!("`{}` is not a whole number", printable(&t.text)));
            None
        }
    }
}

/// A yes/no value as keepalived reads one (absent means yes).
fn boolean(n: &Node) -> bool {
    match n.args.first().map(|a| a.text.to_ascii_lowercase()) {
        None => true,
        Some(v) => matches!(v.as_str(), "true" | "yes" | "on" | "1"),
    }
}

/// Forwarding as `lvs_method` (or `lb_kind`) gives it: the method and its tunnel settings.
fn method(n: &Node, r: &mut Reader) -> Option<(&'static str, Option<String>)> {
    let Some(m) = n.args.first() else {
        r.err(&n.key, format!("`{}` needs NAT, DR or TUN", n.key.text));
        return None;
    };
    match m.text.as_str() {
        "NAT" => Some(("nat", None)),
        "DR" => Some(("dr", None)),
        "TUN" => {
            let rest: Vec<&str> = n.args[1..].iter().map(|a| a.text.as_str()).collect();
            let mut kind = "ipip";
            let mut port = None;
            let mut flag = None;
            let mut i = 0;
            while i < rest.len() {
                match rest[i] {
                    "type" => {
                        kind = match rest.get(i + 1).copied() {
                            Some("ipip") => "ipip",
                            Some("gue") => "gue",
                            Some("gre") => "gre",
                            _ => {
                                r.err(&n.key, "`type` is ipip, gue or gre");
                                return None;
                            }
                        };
                        i += 2;
                    }
                    "port" => {
                        port = match rest.get(i + 1).map(|p| p.parse::<u16>()) {
                            Some(Ok(p)) if p > 0 => Some(p),
                            _ => {
                                r.err(&n.key, "a tunnel's `port` is a number from 1 to 65535");
                                return None;
                            }
                        };
                        i += 2;
                    }
                    "nocsum" => {
                        i += 1;
                    }
                    "csum" => {
                        flag = Some("csum");
                        i += 1;
                    }
                    "remcsum" => {
                        flag = Some("remcsum");
                        i += 1;
                    }
                    other => {
                        r.err(
                            &n.args[1 + i],
                            format!("unknown tunnel option `{}`", printable(other)),
                        );
                        return None;
                    }
                }
            }
            let tunnel = (kind != "ipip").then(|| {
                let mut t = format!("{{type: {kind}");
                if let Some(p) = port {
                    t += &format!(", port: {p}");
                }
                if let Some(f) = flag {
                    t += &format!(", flags: [{f}]");
                }
                t + "}"
            });
            Some(("tunnel", tunnel))
        }
        other => {
            r.err(
                m,
                format!(
                    "unknown forwarding method `{}`: keepalived takes NAT, DR or TUN",
                    printable(other)
                ),
            );
            None
        }
    }
}

/// The settings that cascade from the virtual server to its reals and their checkers.
#[derive(Debug, Clone, Default)]
struct Cascade {
    delay_loop: Option<u64>,
    connect_timeout: Option<u64>,
    retry: Option<u64>,
    delay_before_retry: Option<(u64, String)>,
    warmup: Option<String>,
    alpha: Option<bool>,
    inhibit: Option<bool>,
    virtualhost: Option<String>,
}

impl Cascade {
    fn over(&self, base: &Cascade) -> Cascade {
        Cascade {
            delay_loop: self.delay_loop.or(base.delay_loop),
            connect_timeout: self.connect_timeout.or(base.connect_timeout),
            retry: self.retry.or(base.retry),
            delay_before_retry: self
                .delay_before_retry
                .clone()
                .or_else(|| base.delay_before_retry.clone()),
            warmup: self.warmup.clone().or_else(|| base.warmup.clone()),
            alpha: self.alpha.or(base.alpha),
            inhibit: self.inhibit.or(base.inhibit),
            virtualhost: self
                .virtualhost
                .clone()
                .or_else(|| base.virtualhost.clone()),
        }
    }

    /// Takes a cascading setting; false when `n` is none.
    fn take(&mut self, n: &Node, r: &mut Reader) -> bool {
        let arg = n.args.first();
        match n.key.text.as_str() {
            "delay_loop" => self.delay_loop = check_timer(n, r),
            "connect_timeout" => self.connect_timeout = check_timer(n, r),
            "retry" | "nb_get_retry" => self.retry = arg.and_then(|a| uint(a, r)),
            "delay_before_retry" => {
                self.delay_before_retry = arg
                    .and_then(|a| timer("delay_before_retry", a, r))
                    .map(|ms| (ms, r.at(&n.key)))
            }
            "warmup" => self.warmup = Some(r.at(&n.key)),
            "alpha" => self.alpha = Some(boolean(n)),
            "inhibit_on_failure" => self.inhibit = Some(boolean(n)),
            "virtualhost" => self.virtualhost = arg.map(|a| a.text.clone()),
            _ => return false,
        }
        true
    }
}

/// A forwarding method and its tunnel settings (`{type: gue, …}`).
type Method = (&'static str, Option<String>);

/// A checker's kind and settings.
struct Checker {
    kind: String,
    key: Token,
    node: Node,
}

/// What one real server became: its entry and its check.
struct RealOut {
    real: Real,
    check: Option<(Check, Vec<String>)>,
    inhibit: bool,
    addr: IpAddr,
    port: Option<u16>,
    weight: u64,
    forward: &'static str,
}

/// Everything of a `virtual_server` but its identity.
struct VsBody {
    scheduler: Option<String>,
    forward: Option<(&'static str, Option<String>)>,
    persistence: Option<u64>,
    granularity: Option<String>,
    engine: Option<String>,
    protocol: Option<&'static str>,
    flags: Vec<&'static str>,
    cascade: Cascade,
    weight: u64,
    quorum: Option<(u64, Token)>,
    sorry: Option<(Node, Option<Method>)>,
    ip_family_v6: Option<bool>,
    name: Option<String>,
    notes: Vec<String>,
    reals: Vec<Node>,
}

/// A setting converted with a difference: a comment at its place and a line of the summary.
fn said(r: &mut Reader, notes: &mut Vec<String>, text: String) {
    r.skipped.push(text.clone());
    notes.push(text);
}

fn note(r: &mut Reader, notes: &mut Vec<String>, n: &Node, why: &str) {
    let args: Vec<&str> = n.args.iter().map(|a| a.text.as_str()).collect();
    let text = format!(
        "{}: {} {} — {why}",
        r.at(&n.key),
        n.key.text,
        args.join(" ")
    )
    .replace("  —", " —");
    r.skipped.push(text.clone());
    notes.push(text);
}

fn body(vs: &Node, r: &mut Reader) -> VsBody {
    let mut b = VsBody {
        scheduler: None,
        forward: None,
        persistence: None,
        granularity: None,
        engine: None,
        protocol: None,
        flags: vec![],
        cascade: Cascade::default(),
        weight: 1,
        quorum: None,
        sorry: None,
        ip_family_v6: None,
        name: None,
        notes: vec![],
        reals: vec![],
    };
    let mut sorry_method = None;
    for n in vs.children.iter().flatten() {
        if b.cascade.take(n, r) {
            continue;
        }
        let arg = n.args.first();
        match n.key.text.as_str() {
            "lb_algo" | "lvs_sched" => b.scheduler = arg.map(|a| a.text.clone()),
            "lb_kind" | "lvs_method" => b.forward = method(n, r),
            "persistence_timeout" => {
                let before = b.persistence;
                b.persistence = match arg {
                    None => Some(360),
                    Some(a) => match uint(a, r) {
                        // keepalived's own range (LVS_MAX_TIMEOUT, 31 days).
                        Some(t) if (1..=2_678_400).contains(&t) => Some(t),
                        // keepalived says "persistence_timeout invalid" and ignores the
                        // line (0 is written for "no persistence"): so does this, and says so.
                        Some(_) => {
                            note(
                                r,
                                &mut b.notes,
                                n,
                                "keepalived takes 1 to 2678400 seconds (31 days) and ignores this line (\"persistence_timeout invalid\"); so does this",
                            );
                            before
                        }
                        None => None,
                    },
                }
            }
            "persistence_granularity" => b.granularity = arg.and_then(|a| granularity(a, r)),
            "persistence_engine" => {
                b.engine = match arg {
                    Some(a)
                        if !a.text.is_empty()
                            && a.text
                                .bytes()
                                .all(|c| c.is_ascii_alphanumeric() || c == b'_') =>
                    {
                        Some(a.text.clone())
                    }
                    _ => {
                        r.err(
                            &n.key,
                            "persistence_engine needs an engine's name (the kernel has `sip`)",
                        );
                        None
                    }
                }
            }
            "protocol" => {
                b.protocol = match arg.map(|a| a.text.to_ascii_uppercase()).as_deref() {
                    Some("TCP") => Some("tcp"),
                    Some("UDP") => Some("udp"),
                    Some("SCTP") => Some("sctp"),
                    _ => {
                        r.err(&n.key, "protocol is TCP, UDP or SCTP");
                        None
                    }
                }
            }
            "ops" => b.flags.push("one-packet"),
            "sh-port" => b.flags.push("sh-port"),
            "sh-fallback" => b.flags.push("sh-fallback"),
            "mh-port" => b.flags.push("mh-port"),
            "mh-fallback" => b.flags.push("mh-fallback"),
            "flag-1" => b.flags.push("flag-1"),
            "flag-2" => b.flags.push("flag-2"),
            "flag-3" => note(
                r,
                &mut b.notes,
                n,
                "the kernel's schedulers use no flag-3; not set",
            ),
            "hashed" => note(
                r,
                &mut b.notes,
                n,
                "the kernel sets `hashed` on every service itself",
            ),
            "weight" => b.weight = arg.and_then(|a| uint(a, r)).unwrap_or(1),
            "quorum" => b.quorum = arg.and_then(|a| uint(a, r)).map(|q| (q, n.key.clone())),
            "sorry_server" => b.sorry = Some((n.clone(), None)),
            "sorry_server_lvs_method" => sorry_method = method(n, r),
            "ip_family" => {
                b.ip_family_v6 = match arg.map(|a| a.text.as_str()) {
                    Some("inet") => Some(false),
                    Some("inet6") => Some(true),
                    _ => {
                        r.err(&n.key, "ip_family is inet or inet6");
                        None
                    }
                }
            }
            "snmp_name" => b.name = arg.map(|a| a.text.clone()),
            "real_server" => b.reals.push(n.clone()),
            "hysteresis" => note(
                r,
                &mut b.notes,
                n,
                "lvsd has no quorum hysteresis: the fallback comes in below `quorum` and goes at it",
            ),
            "quorum_up" | "quorum_down" => note(
                r,
                &mut b.notes,
                n,
                "lvsd runs no script on a quorum change; watch `lvsd status` or the metrics",
            ),
            "sorry_server_inhibit" => note(
                r,
                &mut b.notes,
                n,
                "lvsd adds the fallback while it is needed and removes it after, never leaving it at weight 0",
            ),
            "ha_suspend" => note(
                r,
                &mut b.notes,
                n,
                "lvsd checks real servers whether or not the VIP is on this host",
            ),
            "omega" => note(
                r,
                &mut b.notes,
                n,
                "lvsd runs no script when it stops; the table stays as it is",
            ),
            "smtp_alert" => note(
                r,
                &mut b.notes,
                n,
                "lvsd sends no mail; alert on its metrics or logs",
            ),
            _ => note(r, &mut b.notes, n, "no lvsd equivalent; not converted"),
        }
    }
    if let (Some(s), Some(m)) = (&mut b.sorry, sorry_method) {
        s.1 = Some(m);
    }
    b
}

/// `persistence_granularity`: an IPv4 netmask or an IPv6 prefix length, checked here rather
/// than copied into the YAML as written.
fn granularity(t: &Token, r: &mut Reader) -> Option<String> {
    let ok = t.text.parse::<Ipv4Addr>().is_ok()
        || (t.text.bytes().all(|b| b.is_ascii_digit())
            && t.text.parse::<u8>().is_ok_and(|n| (1..=128).contains(&n)));
    if ok {
        Some(t.text.clone())
    } else {
        r.err(
            t,
            format!(
                "`{}` is not a netmask (255.255.255.0) or an IPv6 prefix length (64)",
                printable(&t.text)
            ),
        );
        None
    }
}

/// The port of `a`'s second argument, when given and not 0.
fn port_arg(args: &[Token], i: usize, r: &mut Reader) -> Option<u16> {
    let t = args.get(i)?;
    match t.text.parse::<u16>() {
        Ok(0) => None,
        Ok(p) => Some(p),
        Err(_) => {
            r.err(t, format!("`{}` is not a port", printable(&t.text)));
            None
        }
    }
}

fn addr_arg(t: &Token, r: &mut Reader) -> Option<IpAddr> {
    match t.text.parse::<IpAddr>() {
        Ok(a) => Some(a),
        Err(_) => {
            r.err(
                t,
                format!(
                    "`{}` is not an IP address (keepalived takes addresses here, not names)",
                    printable(&t.text)
                ),
            );
            None
        }
    }
}

fn socket(a: IpAddr, port: Option<u16>) -> String {
    match (a, port) {
        (IpAddr::V4(a), Some(p)) => format!("{a}:{p}"),
        (IpAddr::V6(a), Some(p)) => format!("[{a}]:{p}"),
        (IpAddr::V4(a), None) => a.to_string(),
        (IpAddr::V6(a), None) => format!("[{a}]"),
    }
}

/// One checker, as lvsd's check.
fn checker(c: &Checker, cascade: &Cascade, r: &mut Reader) -> Option<(Check, Vec<String>)> {
    let mut comments = vec![];
    let mut cas = Cascade::default();
    let mut port = None;
    let mut urls: Vec<&Node> = vec![];
    let mut misc_path: Option<Token> = None;
    let mut misc_timeout = None;
    for n in c.node.children.iter().flatten() {
        if cas.take(n, r) {
            continue;
        }
        match n.key.text.as_str() {
            "connect_port" => port = port_arg(&n.args, 0, r),
            "url" => urls.push(n),
            "misc_path" => misc_path = n.args.first().cloned(),
            "misc_timeout" => misc_timeout = check_timer(n, r),
            "misc_dynamic" => note(
                r,
                &mut comments,
                n,
                "lvsd does not take a weight from a check's exit status; exit 0 is healthy, anything else is not",
            ),
            "user" => note(r, &mut comments, n, "lvsd runs exec checks as its own user"),
            "connect_ip" => note(
                r,
                &mut comments,
                n,
                "lvsd checks each real server at its own address",
            ),
            "bindto" | "bind_if" | "bind_port" | "fwmark" => note(
                r,
                &mut comments,
                n,
                "lvsd's checks connect from the host's default source",
            ),
            "http_protocol" | "fast_recovery" | "enable_sni" | "log_all_failures" => {
                note(r, &mut comments, n, "no lvsd equivalent; not converted")
            }
            "helo_name" => note(r, &mut comments, n, "lvsd's tcp check does not speak SMTP"),
            _ => note(r, &mut comments, n, "no lvsd equivalent; not converted"),
        }
    }
    let cas = cas.over(cascade);
    let mut check = Check {
        port,
        interval: Some(duration_ms(
            cas.delay_loop.unwrap_or(60_000).clamp(1, 3_600_000),
        )),
        rise: Some(1),
        initial: Some(if cas.alpha.unwrap_or(false) {
            "down"
        } else {
            "up"
        }),
        ..Check::default()
    };
    let timeout = |ms: u64| duration_ms(ms.clamp(1, 3_600_000));
    let default_retry = match c.kind.as_str() {
        "MISC_CHECK" => 0,
        _ => 1,
    };
    let retry = cas.retry.unwrap_or(default_retry);
    check.fall = Some((retry + 1).clamp(1, 100) as u32);
    if retry + 1 > 100 {
        let text = format!(
            "{}: retry {retry} — lvsd's `fall` is at most 100: the real server is taken out after 100 failed checks, not {}",
            r.at(&c.key),
            retry.saturating_add(1)
        );
        r.skipped.push(text.clone());
        comments.push(text);
    }
    if let Some((_, at)) = &cas.delay_before_retry {
        let text = format!(
            "{at}: delay_before_retry — lvsd checks again after `interval`, failed or not; there is no separate retry delay"
        );
        r.skipped.push(text.clone());
        comments.push(text);
    }
    if let Some(at) = &cas.warmup {
        let text = format!("{at}: warmup — lvsd spreads the first checks by itself");
        r.skipped.push(text.clone());
        comments.push(text);
    }
    match c.kind.as_str() {
        "TCP_CHECK" | "SMTP_CHECK" => {
            check.kind = "tcp";
            check.timeout = Some(timeout(cas.connect_timeout.unwrap_or(5000)));
            if c.kind == "SMTP_CHECK" {
                let text = format!(
                    "{}: SMTP_CHECK — converted to a tcp check: lvsd connects but does not wait for the SMTP greeting",
                    r.at(&c.key)
                );
                r.skipped.push(text.clone());
                comments.push(text);
                if check.port.is_none() {
                    check.port = Some(25);
                }
            }
        }
        "HTTP_GET" | "SSL_GET" => {
            check.kind = if c.kind == "SSL_GET" { "https" } else { "http" };
            check.timeout = Some(timeout(cas.connect_timeout.unwrap_or(5000)));
            check.host = cas.virtualhost.clone();
            check.expect_status = vec!["200-299".into()];
            for (i, u) in urls.iter().enumerate() {
                if i > 0 {
                    note(
                        r,
                        &mut comments,
                        u,
                        "lvsd checks one path per real server: the first url is converted",
                    );
                    continue;
                }
                for f in u.children.iter().flatten() {
                    let arg = f.args.first();
                    match f.key.text.as_str() {
                        "path" => check.path = arg.map(|a| a.text.clone()),
                        "status_code" => {
                            check.expect_status = vec![];
                            for a in &f.args {
                                let ok = |x: &str| {
                                    x.len() == 3
                                        && x.bytes().all(|b| b.is_ascii_digit())
                                        && (100..=599).contains(&x.parse::<u16>().unwrap_or(0))
                                };
                                let fine = match a.text.split_once('-') {
                                    Some((lo, hi)) => ok(lo) && ok(hi) && lo <= hi,
                                    None => ok(&a.text),
                                };
                                if fine {
                                    check.expect_status.push(a.text.clone());
                                } else {
                                    r.err(a, format!("`{}` is not an HTTP status (200) or a range of them (200-299)", printable(&a.text)));
                                }
                            }
                            if check.expect_status.is_empty() {
                                check.expect_status = vec!["200-299".into()];
                            }
                        }
                        "virtualhost" => check.host = arg.map(|a| a.text.clone()),
                        "digest" => note(
                            r,
                            &mut comments,
                            f,
                            "lvsd cannot compare a digest of the page; the status is checked",
                        ),
                        "regex" => match arg {
                            Some(a) if !a.text.chars().any(|c| "\\^$.|?*+()[]{}".contains(c)) => {
                                check.expect_body = Some(a.text.clone());
                            }
                            _ => note(
                                r,
                                &mut comments,
                                f,
                                "lvsd's expect_body finds text, not a regular expression",
                            ),
                        },
                        _ => note(r, &mut comments, f, "no lvsd equivalent; not converted"),
                    }
                }
            }
            if let Some(p) = &check.path {
                if !p.starts_with('/') {
                    check.path = Some(format!("/{p}"));
                }
            }
        }
        "MISC_CHECK" => {
            check.kind = "exec";
            check.timeout = Some(timeout(
                misc_timeout.unwrap_or(cas.delay_loop.unwrap_or(60_000)),
            ));
            let Some(path) = misc_path else {
                r.err(&c.key, "MISC_CHECK needs misc_path");
                return None;
            };
            let mut args = split_command(&path.text);
            match args.first() {
                Some(p) if p.starts_with('/') => {}
                Some(_) => {
                    comments.push(format!("{}: `{}` is not an absolute path: run through /usr/bin/env, which looks it up in PATH as keepalived does", r.at(&path), printable(&path.text)));
                    args.insert(0, "/usr/bin/env".into());
                }
                None => {
                    r.err(&path, "misc_path is empty");
                    return None;
                }
            }
            check.command = args;
        }
        _ => return None,
    }
    Some((check, comments))
}

/// A command line as keepalived splits misc_path: on spaces, with quotes.
pub(crate) fn split_command(s: &str) -> Vec<String> {
    let mut out = vec![];
    let mut cur = String::new();
    let mut quote: Option<char> = None;
    let mut any = false;
    for c in s.chars() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), c) => cur.push(c),
            (None, '"' | '\'') => {
                quote = Some(c);
                any = true;
            }
            (None, c) if c.is_whitespace() => {
                if !cur.is_empty() || any {
                    out.push(std::mem::take(&mut cur));
                    any = false;
                }
            }
            (None, c) => cur.push(c),
        }
    }
    if !cur.is_empty() || any {
        out.push(cur);
    }
    out
}

/// One real server.
fn real(
    n: &Node,
    vs: &VsBody,
    vs_forward: (&'static str, Option<String>),
    r: &mut Reader,
) -> Option<RealOut> {
    let Some(first) = n.args.first() else {
        r.err(&n.key, "real_server needs an address and a port");
        return None;
    };
    let addr = addr_arg(first, r)?;
    let port = port_arg(&n.args, 1, r);
    let mut out = Real {
        source: Some((r.files[n.key.file].clone(), n.key.line)),
        ..Real::default()
    };
    let mut cas = Cascade::default();
    let mut weight = vs.weight;
    let mut forward = vs_forward.clone();
    let mut checkers = vec![];
    for c in n.children.iter().flatten() {
        if cas.take(c, r) {
            continue;
        }
        let arg = c.args.first();
        match c.key.text.as_str() {
            "weight" => weight = arg.and_then(|a| uint(a, r)).unwrap_or(1),
            "lvs_method" | "lb_kind" => {
                if let Some(m) = method(c, r) {
                    forward = m;
                }
            }
            "uthreshold" => out.max_connections = arg.and_then(|a| uint32(a, r)),
            "lthreshold" => out.min_connections = arg.and_then(|a| uint32(a, r)),
            "notify_up" | "notify_down" => note(
                r,
                &mut out.comments,
                c,
                "lvsd runs no script on a health change; it logs it and counts it in lvsd_real_up",
            ),
            "smtp_alert" => note(
                r,
                &mut out.comments,
                c,
                "lvsd sends no mail; alert on its metrics or logs",
            ),
            "snmp_name" => note(
                r,
                &mut out.comments,
                c,
                "lvsd names services, not real servers",
            ),
            kind @ ("TCP_CHECK" | "HTTP_GET" | "SSL_GET" | "MISC_CHECK" | "SMTP_CHECK") => checkers
                .push(Checker {
                    kind: kind.to_owned(),
                    key: c.key.clone(),
                    node: c.clone(),
                }),
            "DNS_CHECK" | "PING_CHECK" | "UDP_CHECK" | "BFD_CHECK" | "FILE_CHECK" => note(
                r,
                &mut out.comments,
                c,
                "lvsd has no such check (it has tcp, http, https and exec); this real server is not checked",
            ),
            _ => note(r, &mut out.comments, c, "no lvsd equivalent; not converted"),
        }
    }
    let cas = cas.over(&vs.cascade);
    let mut check = None;
    for (i, c) in checkers.iter().enumerate() {
        if i > 0 {
            note(
                r,
                &mut out.comments,
                &c.node,
                "lvsd runs one check per real server: the first checker is converted",
            );
            continue;
        }
        check = checker(c, &cas, r);
    }
    if weight > i32::MAX as u64 {
        r.err(
            &n.key,
            format!("weight {weight} is larger than the kernel takes (2147483647)"),
        );
        return None;
    }
    Some(RealOut {
        real: out,
        check,
        inhibit: cas.inhibit.unwrap_or(false),
        addr,
        port,
        weight,
        forward: forward.0,
    })
    .map(|mut o| {
        if forward.0 != vs_forward.0 {
            o.real.forward = Some(forward.0);
        }
        if forward.1 != vs_forward.1 {
            o.real.tunnel = forward.1.clone();
        }
        o
    })
}

/// The identity of a service in the kernel's table: protocol and address, or fwmark and
/// family. Two `virtual_server` blocks with one identity make one service in keepalived.
fn identity(s: &Service) -> Option<(String, bool, String)> {
    match (&s.address, s.fwmark) {
        (Some(a), _) => Some((s.protocol.unwrap_or("udp").to_owned(), false, a.clone())),
        (None, Some(m)) => Some(("fwmark".to_owned(), s.ipv6, m.to_string())),
        (None, None) => None,
    }
}

/// A real's place in the table: its address with the port it takes in `s` (a real written
/// without a port takes the service's).
fn real_key(s: &Service, real: &Real) -> String {
    match real.address.parse::<IpAddr>() {
        Ok(a) => {
            let port = s
                .address
                .as_ref()
                .and_then(|v| v.parse::<std::net::SocketAddr>().ok())
                .map_or(0, |v| v.port());
            socket(a, Some(port))
        }
        Err(_) => real.address.clone(),
    }
}

/// Moves a check written once on the service down to each of its reals (each had it).
fn checks_down(s: &mut Service) {
    if let Some(c) = s.check.take() {
        for real in &mut s.reals {
            if real.check.is_none() {
                real.check = Some(c.clone());
            }
        }
        s.notes.append(&mut s.check_comments);
    }
}

/// A second `virtual_server` block for a service an earlier block made (`first`, made at
/// `first_at`), merged as keepalived builds it: keepalived adds the first block's service and
/// every block's real servers, each with its own block's forwarding method; adding the
/// service again fails with "exists", which keepalived ignores, so the later block's
/// scheduler, persistence and flags are not used (said in the summary, naming both lines). A
/// quorum or sorry server counts one block's real servers in keepalived, which lvsd's one
/// service cannot do: an error naming both blocks.
fn merge(first: &mut Service, mut second: Service, first_at: &str, at: &Token, r: &mut Reader) {
    let here = r.at(at);
    if first.quorum.is_some()
        || second.quorum.is_some()
        || first.fallback.is_some()
        || second.fallback.is_some()
    {
        r.err(
            at,
            format!(
                "this virtual_server is the same service as the one at {first_at}, and one of them has a quorum or sorry_server: keepalived counts each block's real servers for it apart, which lvsd's one service cannot; write the two blocks as one virtual_server (each real_server keeps its own lb_kind)"
            ),
        );
        return;
    }
    if let (Some(a), Some(b)) = (first.on_failure, second.on_failure) {
        if a != b {
            r.err(
                at,
                format!(
                    "this virtual_server is the same service as the one at {first_at}, and their real servers differ in inhibit_on_failure: lvsd sets on_failure per service; give both blocks' real servers the same inhibit_on_failure"
                ),
            );
            return;
        }
    }
    first.on_failure = first.on_failure.or(second.on_failure);
    let mut ignored = vec![];
    if second.scheduler != first.scheduler {
        ignored.push(format!("scheduler {}", second.scheduler));
    }
    if second.persistence != first.persistence {
        ignored.push(format!(
            "persistence {}",
            second.persistence.as_deref().unwrap_or("off")
        ));
    }
    if second.flags != first.flags {
        ignored.push(format!("flags [{}]", second.flags.join(", ")));
    }
    if !ignored.is_empty() {
        let text = format!(
            "{here}: {} — this virtual_server is the same service as the one at {first_at}: keepalived makes the service from the first block and ignores these (the service exists); so does this",
            ignored.join(", ")
        );
        said(r, &mut first.notes, text);
    }
    if first.check != second.check {
        checks_down(first);
        checks_down(&mut second);
    }
    first.comments.append(&mut second.comments);
    first.comments.push(format!(
        "{here}: the same service as {first_at}: its real servers are added to this one, each with its block's forwarding method, as keepalived does"
    ));
    first.notes.append(&mut second.notes);
    if first.name.is_none() {
        first.name = second.name.take();
    }
    let mut have: BTreeSet<String> = first.reals.iter().map(|x| real_key(first, x)).collect();
    for mut real in second.reals {
        let key = real_key(first, &real);
        if !have.insert(key.clone()) {
            let text = format!(
                "{here}: real server {key} is in the virtual_server at {first_at} too: keepalived keeps the first one's; so does this"
            );
            said(r, &mut first.notes, text);
            continue;
        }
        let forward = real.forward.unwrap_or(second.forward);
        let tunnel = if real.forward.is_some() {
            real.tunnel.take()
        } else {
            real.tunnel.take().or_else(|| second.tunnel.clone())
        };
        real.forward = (forward != first.forward).then_some(forward);
        real.tunnel = if forward == "tunnel" && tunnel != first.tunnel {
            // Plain IPIP where the service tunnels another way: written out, or it would
            // inherit the service's.
            tunnel.or_else(|| Some("{type: ipip}".to_owned()))
        } else {
            None
        };
        first.reals.push(real);
    }
}

/// One virtual server's identity, as keepalived expands it.
#[derive(Debug, Clone)]
enum Vip {
    Addr(IpAddr, Option<u16>),
    Fwmark(u32, Option<bool>),
}

/// Expands an address range of a `virtual_server_group`: `A-B` (the last octet, or the last
/// group of IPv6 in hex), `A-FULL`, `A/nn`.
fn range(t: &Token, r: &mut Reader) -> Option<Vec<IpAddr>> {
    let s = t.text.as_str();
    let too_many = |r: &mut Reader| {
        r.err(
            t,
            format!(
                "`{}` holds more than {MAX_RANGE} addresses: lvsd would make a service of each",
                printable(s)
            ),
        );
        None
    };
    if let Some((a, n)) = s.split_once('/') {
        let (Ok(a), Ok(n)) = (a.parse::<IpAddr>(), n.parse::<u32>()) else {
            r.err(t, format!("`{}` is not an address range", printable(s)));
            return None;
        };
        return match a {
            IpAddr::V4(a) if n <= 32 => {
                let size = 1u128 << (32 - n);
                if size > MAX_RANGE {
                    return too_many(r);
                }
                let base = u32::from(a) & (u32::MAX.checked_shl(32 - n).unwrap_or(0));
                Some(
                    (0..size as u32)
                        .map(|i| IpAddr::V4(Ipv4Addr::from(base + i)))
                        .collect(),
                )
            }
            IpAddr::V6(a) if n <= 128 => {
                let size = 1u128.checked_shl(128 - n).unwrap_or(u128::MAX);
                if size > MAX_RANGE {
                    return too_many(r);
                }
                let base = u128::from(a) & (u128::MAX.checked_shl(128 - n).unwrap_or(0));
                Some(
                    (0..size)
                        .map(|i| IpAddr::V6(Ipv6Addr::from(base + i)))
                        .collect(),
                )
            }
            _ => {
                r.err(
                    t,
                    format!("`{}`: the prefix length is too long", printable(s)),
                );
                None
            }
        };
    }
    let (a, b) = s.split_once('-')?;
    let Ok(start) = a.parse::<IpAddr>() else {
        r.err(t, format!("`{}` is not an address range", printable(s)));
        return None;
    };
    let end = match (start, b.parse::<IpAddr>()) {
        (_, Ok(e)) => e,
        (IpAddr::V4(s4), Err(_)) => match b.parse::<u8>() {
            Ok(last) => {
                let mut o = s4.octets();
                o[3] = last;
                IpAddr::V4(Ipv4Addr::from(o))
            }
            Err(_) => {
                r.err(t, format!("`{}` is not an address range", printable(s)));
                return None;
            }
        },
        (IpAddr::V6(s6), Err(_)) => match u16::from_str_radix(b, 16) {
            Ok(last) => {
                let mut g = s6.segments();
                g[7] = last;
                IpAddr::V6(Ipv6Addr::from(g))
            }
            Err(_) => {
                r.err(t, format!("`{}` is not an address range", printable(s)));
                return None;
            }
        },
    };
    let (lo, hi) = match (start, end) {
        (IpAddr::V4(a), IpAddr::V4(b)) => (u32::from(a) as u128, u32::from(b) as u128),
        (IpAddr::V6(a), IpAddr::V6(b)) => (u128::from(a), u128::from(b)),
        _ => {
            r.err(
                t,
                format!(
                    "`{}`: both ends of a range are of one address family",
                    printable(s)
                ),
            );
            return None;
        }
    };
    if hi < lo {
        r.err(
            t,
            format!("`{}`: the range ends before it starts", printable(s)),
        );
        return None;
    }
    if hi - lo + 1 > MAX_RANGE {
        return too_many(r);
    }
    Some(
        (lo..=hi)
            .map(|v| match start {
                IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::from(v as u32)),
                IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::from(v)),
            })
            .collect(),
    )
}

/// The entries of a `virtual_server_group`.
fn group(n: &Node, r: &mut Reader) -> Vec<Vip> {
    let mut out = vec![];
    for e in n.children.iter().flatten() {
        if e.key.text == "fwmark" {
            let Some(m) = e.args.first().and_then(|a| uint32(a, r)) else {
                if e.args.is_empty() {
                    r.err(&e.key, "fwmark needs a mark from 1 to 4294967295");
                }
                continue;
            };
            if m == 0 {
                r.err(&e.key, "fwmark needs a mark from 1 to 4294967295");
                continue;
            }
            let v6 = e.args.get(1).map(|f| f.text == "inet6");
            out.push(Vip::Fwmark(m, v6));
            continue;
        }
        let port = port_arg(&e.args, 0, r);
        if let Ok(a) = e.key.text.parse::<IpAddr>() {
            out.push(Vip::Addr(a, port));
        } else if let Some(list) = range(&e.key, r) {
            r.grouped = r.grouped.saturating_add(list.len());
            if r.grouped > MAX_MADE {
                r.fatal(
                    &e.key,
                    format!(
                        "the virtual_server_groups up to here hold more than {MAX_MADE} addresses in all (lvsd's limit for one conversion); use smaller ranges, or convert in parts"
                    ),
                );
                return out;
            }
            out.extend(list.into_iter().map(|a| Vip::Addr(a, port)));
        } else {
            r.err(
                &e.key,
                format!(
                    "`{}` is not an address, a range or `fwmark N`",
                    printable(&e.key.text)
                ),
            );
        }
    }
    out
}

/// Converts the LVS part of keepalived.conf `text` (read from `path`: includes are relative
/// to it).
pub fn convert(text: &str, path: &Path) -> Result<Converted, Error> {
    let mut r = Reader::new();
    let mut tokens = vec![];
    if text.len() as u64 > MAX_BYTES {
        return Err(Error::TooLarge {
            path: printable(&path.display().to_string()).into_owned(),
            size: text.len() as u64,
            limit: MAX_BYTES,
        });
    }
    r.tokens(text, path, 0, &mut tokens);
    let mut i = 0;
    let top = if r.stop {
        vec![]
    } else {
        nodes(&tokens, &mut i, 0, &mut r)
    };
    drop(tokens);
    let mut groups: BTreeMap<String, (Vec<Vip>, String)> = BTreeMap::new();
    for n in &top {
        if r.stop {
            break;
        }
        if n.key.text == "virtual_server_group" {
            let Some(name) = n.args.first() else {
                r.err(&n.key, "virtual_server_group needs a name");
                continue;
            };
            let entries = group(n, &mut r);
            groups.insert(name.text.clone(), (entries, r.at(&n.key)));
        }
    }
    let mut left = vec![];
    let mut services = vec![];
    let mut names = BTreeSet::new();
    // Each service's identity: the index of the service made for it and where it was made.
    let mut seen: BTreeMap<(String, bool, String), (usize, String)> = BTreeMap::new();
    for n in &top {
        match n.key.text.as_str() {
            "virtual_server_group" => {}
            "virtual_server" if !r.stop => {
                for s in virtual_server(n, &groups, &mut names, &mut r) {
                    let key = identity(&s);
                    match key.as_ref().and_then(|k| seen.get(k)) {
                        Some(&(i, ref first_at)) if !s.disabled => {
                            if let Some(first) = services.get_mut(i) {
                                merge(first, s, first_at, &n.key, &mut r);
                            }
                        }
                        _ => {
                            if let (Some(k), false) = (key, s.disabled) {
                                seen.insert(k, (services.len(), r.at(&n.key)));
                            }
                            services.push(s);
                        }
                    }
                }
            }
            "virtual_server" => {}
            "SSL" => {
                let text = format!(
                    "{}: SSL — lvsd's https checks need no client certificate and do not verify the server's",
                    r.at(&n.key)
                );
                r.skipped.push(text.clone());
                left.push(text);
            }
            other => {
                let what = match n.args.first() {
                    Some(a) => format!("{other} {}", a.text),
                    None => other.to_owned(),
                };
                left.push(format!(
                    "{}: {what} — left to keepalived (not LVS configuration)",
                    r.at(&n.key)
                ));
            }
        }
    }
    if !r.problems.is_empty() {
        let problems = std::mem::take(&mut r.problems);
        return Err(super::gather(&r.files, problems, r.omitted));
    }
    let mut header = vec![format!(
        "imported by lvsd from keepalived's {}",
        r.files.first().cloned().unwrap_or_default()
    )];
    if r.files.len() > 1 {
        header.push(format!(
            "and the files it includes: {}",
            r.files[1..].join(", ")
        ));
    }
    for l in &left {
        header.push(l.clone());
    }
    let mut summary: Vec<String> = r
        .skipped
        .iter()
        .map(|s| format!("not converted: {s}"))
        .collect();
    summary.extend(left.into_iter().map(|l| format!("left alone: {l}")));
    if summary.is_empty() {
        summary.push("every setting converted".into());
    }
    super::finish(&header, &services, summary, &r.files[0])
}

fn virtual_server(
    n: &Node,
    groups: &BTreeMap<String, (Vec<Vip>, String)>,
    names: &mut BTreeSet<String>,
    r: &mut Reader,
) -> Vec<Service> {
    let args: Vec<&str> = n.args.iter().map(|a| a.text.as_str()).collect();
    let mut comments = vec![format!(
        "{}: virtual_server {}",
        r.at(&n.key),
        args.join(" ")
    )];
    let vips: Vec<Vip> = match args.first().copied() {
        Some("fwmark") => match n.args.get(1).and_then(|a| uint(a, r)) {
            Some(m) if m > 0 && m <= u32::MAX as u64 => vec![Vip::Fwmark(m as u32, None)],
            _ => {
                r.err(
                    &n.key,
                    "virtual_server fwmark needs a mark from 1 to 4294967295",
                );
                return vec![];
            }
        },
        Some("group") => {
            let Some(name) = n.args.get(1) else {
                r.err(&n.key, "virtual_server group needs the group's name");
                return vec![];
            };
            match groups.get(&name.text) {
                Some((entries, at)) => {
                    comments.push(format!("one service per entry of virtual_server_group {} ({at}), expanded: {} services", name.text, entries.len()));
                    entries.clone()
                }
                None => {
                    r.err(
                        name,
                        format!(
                            "no virtual_server_group `{}` is defined",
                            printable(&name.text)
                        ),
                    );
                    return vec![];
                }
            }
        }
        Some(_) => {
            let Some(a) = addr_arg(&n.args[0], r) else {
                return vec![];
            };
            vec![Vip::Addr(a, port_arg(&n.args, 1, r))]
        }
        None => {
            r.err(
                &n.key,
                "virtual_server needs an address and port, `fwmark N` or `group NAME`",
            );
            return vec![];
        }
    };
    let b = body(n, r);
    let scheduler = b.scheduler.clone().unwrap_or_else(|| "wlc".into());
    if !crate::SCHEDULERS.contains(&scheduler.as_str()) {
        let t = n
            .children
            .iter()
            .flatten()
            .find(|c| c.key.text == "lb_algo" || c.key.text == "lvs_sched")
            .map_or(&n.key, |c| &c.key);
        r.err(
            t,
            format!(
                "`{}` is not a scheduler the kernel has ({})",
                printable(&scheduler),
                crate::SCHEDULERS.join(", ")
            ),
        );
        return vec![];
    }
    let vs_forward = b.forward.clone().unwrap_or(("nat", None));
    let reals: Vec<RealOut> = b
        .reals
        .iter()
        .filter_map(|rn| real(rn, &b, vs_forward.clone(), r))
        .collect();
    let made = vips.len().saturating_mul(reals.len() + 1);
    r.made = r.made.saturating_add(made);
    if r.made > MAX_MADE {
        r.fatal(
            &n.key,
            format!(
                "the virtual_servers up to here make more than {MAX_MADE} services and real servers in all (lvsd's limit for one conversion; this one makes {made}); use smaller virtual_server_group ranges, or convert in parts"
            ),
        );
        return vec![];
    }
    let mut out = vec![];
    for (idx, vip) in vips.iter().enumerate() {
        let mut s = Service {
            source: Some((r.files[n.key.file].clone(), n.key.line)),
            comments: if idx == 0 { comments.clone() } else { vec![] },
            scheduler: scheduler.clone(),
            forward: vs_forward.0,
            tunnel: vs_forward.1.clone(),
            flags: b.flags.clone(),
            notes: if idx == 0 { b.notes.clone() } else { vec![] },
            ..Service::default()
        };
        if b.forward.is_none() && idx == 0 {
            s.notes
                .push("no lvs_method: keepalived's default is NAT".into());
        }
        let (vport, fwmark) = match vip {
            Vip::Addr(a, port) => {
                let protocol = match b.protocol {
                    Some(p) => p,
                    None => {
                        if idx == 0 {
                            s.notes.push(
                                "no protocol: keepalived uses UDP (and warns), so does this".into(),
                            );
                        }
                        "udp"
                    }
                };
                s.address = Some(socket(*a, Some(port.unwrap_or(0))));
                s.protocol = Some(protocol);
                (*port, false)
            }
            Vip::Fwmark(m, v6) => {
                s.fwmark = Some(*m);
                let from_reals = reals.first().map(|r| r.addr.is_ipv6());
                s.ipv6 = v6.or(b.ip_family_v6).or(from_reals).unwrap_or(false);
                (None, true)
            }
        };
        let mut persistence = b.persistence;
        if !fwmark && vport.is_none() && persistence.is_none() {
            s.notes.push(
                "port 0 (all ports) needs persistence: keepalived sets 360s, so does this".into(),
            );
            persistence = Some(360);
        }
        if persistence.is_none() && b.granularity.is_some() {
            persistence = Some(360);
        }
        s.persistence = persistence.map(|t| {
            if b.granularity.is_none() && b.engine.is_none() {
                format!("{t}s")
            } else {
                let mut p = format!("{{timeout: {t}s");
                if let Some(g) = &b.granularity {
                    p += &format!(", netmask: {g}");
                }
                if let Some(e) = &b.engine {
                    p += &format!(", engine: {e}");
                }
                p + "}"
            }
        });
        if let Some(n) = &b.name {
            if idx == 0 && names.insert(n.clone()) {
                s.name = Some(n.clone());
            }
        }
        let mut seen = BTreeSet::new();
        let mut weights = BTreeSet::new();
        let mut inhibit = vec![];
        for ro in &reals {
            let nat = ro.forward == "nat";
            let port = if fwmark {
                if nat { ro.port } else { None }
            } else if nat {
                Some(ro.port.or(vport).unwrap_or(0))
            } else {
                if let (Some(p), Some(v)) = (ro.port, vport) {
                    if p != v && idx == 0 {
                        s.notes.push(format!("real {} port {p}: keepalived resets it to the service's port {v} (only NAT maps ports)", ro.addr));
                    }
                }
                None
            };
            let mut rr = ro.real.clone();
            if idx > 0 {
                // Said once, at the first service of an expanded group.
                rr.comments.clear();
            }
            rr.address = socket(ro.addr, port.filter(|p| *p != 0 || nat));
            if !seen.insert(rr.address.clone()) {
                if idx == 0 {
                    s.notes.push(format!(
                        "real {} is listed twice: keepalived keeps the first",
                        rr.address
                    ));
                }
                continue;
            }
            rr.weight = (ro.weight != 1).then_some(ro.weight as u32);
            weights.insert(ro.weight);
            inhibit.push(ro.inhibit);
            if let Some((c, cc)) = &ro.check {
                rr.check = Some(c.clone());
                if idx == 0 {
                    rr.check_comments = cc.clone();
                }
            }
            s.reals.push(rr);
        }
        // One check for every real: written once, on the service.
        let checks: Vec<&Option<Check>> = s.reals.iter().map(|r| &r.check).collect();
        if s.reals.len() > 1 && checks.iter().all(|c| c.is_some() && *c == checks[0]) {
            s.check = s.reals[0].check.clone();
            for r in &mut s.reals {
                r.check = None;
                s.check_comments.append(&mut r.check_comments);
            }
            s.check_comments.dedup();
        }
        let checked = s.check.is_some() || s.reals.iter().any(|r| r.check.is_some());
        if checked {
            let drains = inhibit.iter().filter(|i| **i).count();
            s.on_failure = Some(if drains * 2 > inhibit.len() {
                "drain"
            } else {
                "remove"
            });
            if drains > 0 && drains < inhibit.len() && idx == 0 {
                let text = format!(
                    "{}: inhibit_on_failure differs between the real servers — lvsd sets on_failure per service: the more common one is taken",
                    r.at(&n.key)
                );
                said(r, &mut s.notes, text);
            }
        }
        if let Some((sorry, method)) = &b.sorry {
            if let Some(a) = sorry.args.first().and_then(|a| addr_arg(a, r)) {
                let sport = port_arg(&sorry.args, 1, r);
                let nat = method.as_ref().map_or(vs_forward.0, |m| m.0) == "nat";
                let port = if fwmark || !nat {
                    None
                } else {
                    sport.or(vport)
                };
                let addr = socket(a, port);
                if s.reals.iter().any(|r| r.address == addr) {
                    if idx == 0 {
                        let text = format!(
                            "{}: sorry_server {addr} is also a real server — lvsd's fallback must be another server; not converted",
                            r.at(&sorry.key)
                        );
                        said(r, &mut s.notes, text);
                    }
                } else {
                    s.fallback = Some(addr);
                    if method.as_ref().is_some_and(|m| m.0 != vs_forward.0) && idx == 0 {
                        let text = format!(
                            "{}: sorry_server_lvs_method — lvsd's fallback uses the service's forwarding ({})",
                            r.at(&sorry.key),
                            vs_forward.0
                        );
                        said(r, &mut s.notes, text);
                    }
                }
            }
        }
        if let Some((q, t)) = &b.quorum {
            if *q > 1 {
                if weights.len() == 1 {
                    let w = *weights.iter().next().unwrap_or(&1);
                    let need = q.div_ceil(w.max(1));
                    let n = need.clamp(1, s.reals.len().max(1) as u64);
                    s.quorum = Some(n as u32);
                    if need > n && idx == 0 {
                        let text = format!(
                            "{}: quorum {q} — more than the real servers' weights add up to, so keepalived is always below it; lvsd's quorum is at most the number of real servers: {n}",
                            r.at(t)
                        );
                        said(r, &mut s.notes, text);
                    }
                    if s.fallback.is_some() && idx == 0 {
                        s.notes.push("below the quorum keepalived takes the remaining real servers out for the sorry server; lvsd leaves them at weight 0 (their connections finish) while the fallback takes new ones".into());
                    }
                    if w != 1 && idx == 0 {
                        s.notes.push(format!("{}: quorum {q} counts weights in keepalived; lvsd counts real servers: {n} of weight {w}", r.at(t)));
                    }
                } else if idx == 0 {
                    let text = format!(
                        "{}: quorum {q} — keepalived counts the weights of live real servers, lvsd counts real servers, and these have different weights; not converted",
                        r.at(t)
                    );
                    r.skipped.push(text.clone());
                    s.notes.push(text);
                }
            }
        }
        if s.reals.is_empty() {
            s.disabled = true;
            if idx == 0 {
                let text = format!(
                    "{}: virtual_server {} has no real servers: keepalived ignores it, so it is written as a comment",
                    r.at(&n.key),
                    args.join(" ")
                );
                r.skipped.push(text.clone());
                s.comments.push(text);
            }
        }
        out.push(s);
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    #[test]
    fn commands_split_as_keepalived_splits_them() {
        assert_eq!(
            split_command("/bin/check a 'b c' \"d\""),
            vec!["/bin/check", "a", "b c", "d"]
        );
        assert_eq!(split_command("  x  "), vec!["x"]);
    }
}
