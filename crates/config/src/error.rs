//! Config errors: where (`file:line:col`), what is wrong, and how to fix it; and how text from
//! the file is shown in them (escaped, so that a control character cannot rewrite a terminal
//! or a log line, and an invisible difference is visible).

use std::borrow::Cow;
use std::fmt::{self, Write as _};

/// One problem in the file.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Problem {
    /// 1-based line, 0 when unknown.
    pub line: u64,
    /// 1-based column, 0 when unknown.
    pub col: u64,
    /// What is wrong and how to fix it.
    pub message: String,
}

/// Problems shown at most: a file with a hundred thousand bad services is one mistake made
/// many times, and the first hundred say what it is.
pub const MAX_SHOWN: usize = 100;

/// Why a configuration was not accepted. Nothing is applied from a file that has any problem.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The file could not be read.
    #[error("{path}: cannot read the config: {source}")]
    Read {
        /// The file (escaped for printing).
        path: String,
        /// The cause, with its errno.
        source: std::io::Error,
    },
    /// The path is not a regular file (a directory, a device, a FIFO or a socket, possibly
    /// behind a symlink): refused before a byte is read, since a device can be endless and a
    /// FIFO can block forever.
    #[error("{path}: the config is {kind}, not a regular file; point lvsd at the file itself")]
    NotAFile {
        /// The file (escaped for printing).
        path: String,
        /// What it is instead ("a directory", "a character device", ...).
        kind: &'static str,
    },
    /// The file is larger than any sane config; refused before parsing.
    #[error("{path}: the config is {size} bytes; the limit is {limit} bytes")]
    TooLarge {
        /// The file (escaped for printing).
        path: String,
        /// Its size (for a file that grew while it was read, at least this).
        size: u64,
        /// The limit.
        limit: u64,
    },
    /// The file has problems: every one found, each with its location (the first
    /// [`MAX_SHOWN`] by position, and how many more there are).
    #[error("{}", Problems(path, problems, *omitted))]
    Invalid {
        /// The file (escaped for printing).
        path: String,
        /// What is wrong, in file order.
        problems: Vec<Problem>,
        /// Problems found after the first [`MAX_SHOWN`], not listed.
        omitted: usize,
    },
    /// More than one file of a generation (the main file and the files it includes) has
    /// problems: each file's, in the order the files are read.
    #[error("{}", Several(errors))]
    Several {
        /// One error per file, none of them `Several`.
        errors: Vec<Error>,
    },
}

struct Several<'a>(&'a Vec<Error>);

impl fmt::Display for Several<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

/// A problem with the file it is in, for a machine (`lvsd check --json`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Located {
    /// The file (escaped for printing).
    pub file: String,
    /// 1-based line, 0 when the problem concerns the file as a whole.
    pub line: u64,
    /// 1-based column, 0 when unknown.
    pub col: u64,
    /// What is wrong.
    pub message: String,
    /// How to fix it, when the message says so apart from what is wrong.
    pub hint: Option<String>,
}

impl Error {
    /// Every problem with its file, in the order they are printed; a problem with the file as
    /// a whole (unreadable, not a file, too large) is at line 0. The last entry counts what
    /// was left out past the first [`MAX_SHOWN`], when anything was.
    pub fn located(&self) -> (Vec<Located>, usize) {
        let mut out = vec![];
        let mut omitted = 0;
        self.locate(&mut out, &mut omitted);
        (out, omitted)
    }

    fn locate(&self, out: &mut Vec<Located>, omitted: &mut usize) {
        let whole = |path: &str, message: String| {
            let (message, hint) = split_hint(&message);
            Located {
                file: path.to_owned(),
                line: 0,
                col: 0,
                message,
                hint,
            }
        };
        match self {
            Error::Read { path, source } => {
                out.push(whole(path, format!("cannot read the config: {source}")))
            }
            Error::NotAFile { path, kind } => out.push(whole(
                path,
                format!("the config is {kind}, not a regular file; point lvsd at the file itself"),
            )),
            Error::TooLarge { path, size, limit } => out.push(whole(
                path,
                format!("the config is {size} bytes; the limit is {limit} bytes"),
            )),
            Error::Invalid {
                path,
                problems,
                omitted: more,
            } => {
                for p in problems {
                    let (message, hint) = split_hint(&p.message);
                    out.push(Located {
                        file: path.clone(),
                        line: p.line,
                        col: p.col,
                        message,
                        hint,
                    });
                }
                *omitted += more;
            }
            Error::Several { errors } => {
                for e in errors {
                    e.locate(out, omitted);
                }
            }
        }
    }

    /// The errors of several files as one, at most [`MAX_SHOWN`] problems shown in all; `None`
    /// when there are none.
    pub fn combine(errors: Vec<Error>) -> Option<Error> {
        let mut shown = 0usize;
        let mut out = Vec::with_capacity(errors.len());
        for e in errors {
            let e = match e {
                Error::Invalid {
                    path,
                    mut problems,
                    omitted,
                } => {
                    let room = MAX_SHOWN.saturating_sub(shown);
                    let cut = problems.len().saturating_sub(room);
                    problems.truncate(room);
                    shown += problems.len();
                    Error::Invalid {
                        path,
                        problems,
                        omitted: omitted + cut,
                    }
                }
                Error::Several { errors } => match Error::combine(errors) {
                    Some(e) => e,
                    None => continue,
                },
                other => {
                    shown += 1;
                    other
                }
            };
            out.push(e);
        }
        match out.len() {
            0 => None,
            1 => out.pop(),
            _ => Some(Error::Several { errors: out }),
        }
    }
}

/// Splits a message in lvsd's words into what is wrong and how to fix it: at the first `; `
/// outside backquotes (most messages say "what; how"), or else at the last `: ` before an
/// instruction ("... : replace the tab with spaces").
pub fn split_hint(message: &str) -> (String, Option<String>) {
    const DO: &[&str] = &[
        "add", "check", "close", "create", "delete", "fix", "give", "leave", "line", "list",
        "merge", "move", "pick", "point", "put", "quote", "remove", "replace", "save", "set",
        "use", "write",
    ];
    let mut quoted = false;
    let mut colon = None;
    let bytes = message.as_bytes();
    for (i, b) in bytes.iter().enumerate() {
        match b {
            b'`' => quoted = !quoted,
            b';' if !quoted && bytes.get(i + 1) == Some(&b' ') => {
                let hint = message[i + 2..].trim();
                if !hint.is_empty() {
                    return (message[..i].to_owned(), Some(hint.to_owned()));
                }
            }
            b':' if !quoted && bytes.get(i + 1) == Some(&b' ') => {
                let next = message[i + 2..]
                    .split([' ', ','])
                    .next()
                    .unwrap_or_default();
                if DO.contains(&next) {
                    colon = Some(i);
                }
            }
            _ => {}
        }
    }
    match colon {
        Some(i) => (
            message[..i].to_owned(),
            Some(message[i + 2..].trim().to_owned()),
        ),
        None => (message.to_owned(), None),
    }
}

struct Problems<'a>(&'a String, &'a Vec<Problem>, usize);

impl fmt::Display for Problems<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // One string, written at once: stderr is unbuffered, and a hundred lines written
        // piece by piece cost a system call per piece.
        let mut out = String::new();
        for (i, p) in self.1.iter().enumerate() {
            if i > 0 {
                out.push('\n');
            }
            let _ = write!(out, "{}:{}:{}: {}", self.0, p.line, p.col, p.message);
        }
        if self.2 > 0 {
            let _ = write!(
                out,
                "\n{}: {} more problems not shown (the first {} are above)",
                self.0,
                self.2,
                self.1.len()
            );
        }
        f.write_str(&out)
    }
}

/// What kind of character `c` is, when it should not be shown raw: a control character, an
/// invisible one (format characters: zero-width, direction overrides, the byte-order mark), a
/// space other than U+0020, or a noncharacter.
pub(crate) fn odd_char(c: char) -> Option<&'static str> {
    let n = c as u32;
    if c.is_control() {
        return Some("a control character");
    }
    if c != ' ' && c.is_whitespace() {
        return Some("a space other than the ordinary one");
    }
    if matches!(
        n,
        0xAD | 0x034F
            | 0x061C
            | 0x115F
            | 0x1160
            | 0x17B4
            | 0x17B5
            | 0x180B..=0x180F
            | 0x200B..=0x200F
            | 0x202A..=0x202E
            | 0x2060..=0x206F
            | 0x3164
            | 0xFE00..=0xFE0F
            | 0xFEFF
            | 0xFFA0
            | 0xFFF0..=0xFFFB
            | 0x1BCA0..=0x1BCA3
            | 0x1D173..=0x1D17A
            | 0xE0000..=0xE0FFF
    ) {
        return Some("an invisible character");
    }
    if (0xFDD0..=0xFDEF).contains(&n) || n & 0xFFFE == 0xFFFE {
        return Some("a noncharacter");
    }
    None
}

/// `s` as it may be printed: every character [`odd_char`] names is escaped Rust-style (`\n`,
/// `\u{a0}`), everything else is left as it is. For text from the file (or the command line)
/// that goes into messages, logs or `check` output.
pub fn printable(s: &str) -> Cow<'_, str> {
    if !s.chars().any(|c| odd_char(c).is_some()) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\0' => out.push_str("\\0"),
            c if odd_char(c).is_some() => {
                let _ = write!(out, "\\u{{{:x}}}", c as u32);
            }
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

/// Names a character for a message: `U+00A0 (a space other than the ordinary one)`.
pub(crate) fn describe(c: char) -> String {
    match odd_char(c) {
        Some(kind) => format!("U+{:04X} ({kind})", c as u32),
        None => format!("`{c}`"),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    #[test]
    fn a_message_splits_into_what_is_wrong_and_how_to_fix_it() {
        let s = |m: &str| split_hint(m);
        assert_eq!(
            s("unknown key `wieght`; did you mean `weight`? valid keys here: a, b"),
            (
                "unknown key `wieght`".into(),
                Some("did you mean `weight`? valid keys here: a, b".into())
            )
        );
        assert_eq!(
            s(
                "a tab indents this line, and YAML indents with spaces only: replace the tab with spaces"
            ),
            (
                "a tab indents this line, and YAML indents with spaces only".into(),
                Some("replace the tab with spaces".into())
            )
        );
        // A `; ` inside backquotes is text of the file, not the split.
        assert_eq!(
            s("`a; b` is not a number"),
            ("`a; b` is not a number".into(), None)
        );
        assert_eq!(
            s("the file ends in the middle of a value"),
            ("the file ends in the middle of a value".into(), None)
        );
    }

    #[test]
    fn text_is_escaped_only_where_it_would_mislead() {
        assert_eq!(printable("web-1 ok"), "web-1 ok");
        assert_eq!(printable("café 名前"), "café 名前");
        assert_eq!(printable("a\u{1b}[2Jb"), "a\\u{1b}[2Jb");
        assert_eq!(printable("a\nb\tc\0"), "a\\nb\\tc\\0");
        assert_eq!(printable("\u{a0}name"), "\\u{a0}name");
        assert_eq!(printable("x\u{202e}y\u{200b}"), "x\\u{202e}y\\u{200b}");
        assert_eq!(printable("\u{85}\u{9b}\u{7f}"), "\\u{85}\\u{9b}\\u{7f}");
        assert_eq!(
            printable("\u{fffe}\u{ffff}\u{feff}"),
            "\\u{fffe}\\u{ffff}\\u{feff}"
        );
        assert_eq!(
            printable("\u{3000}\u{2028}\u{c}\u{b}"),
            "\\u{3000}\\u{2028}\\u{c}\\u{b}"
        );
    }
}
