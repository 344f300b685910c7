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
