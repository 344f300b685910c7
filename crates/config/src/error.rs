//! Config errors: where (`file:line:col`), what is wrong, and how to fix it.

use std::fmt;

/// One problem in the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// 1-based line, 0 when unknown.
    pub line: u64,
    /// 1-based column, 0 when unknown.
    pub col: u64,
    /// What is wrong and how to fix it.
    pub message: String,
}

/// Why a configuration was not accepted. Nothing is applied from a file that has any problem.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The file could not be read.
    #[error("{path}: cannot read the config: {source}")]
    Read {
        /// The file.
        path: String,
        /// The cause, with its errno.
        source: std::io::Error,
    },
    /// The file is larger than any sane config; refused before parsing.
    #[error("{path}: the config is {size} bytes; the limit is {limit} bytes")]
    TooLarge {
        /// The file.
        path: String,
        /// Its size.
        size: u64,
        /// The limit.
        limit: u64,
    },
    /// The file has problems: every one found, each with its location.
    #[error("{}", Problems(path, problems))]
    Invalid {
        /// The file.
        path: String,
        /// What is wrong, in file order.
        problems: Vec<Problem>,
    },
}

struct Problems<'a>(&'a String, &'a Vec<Problem>);

impl fmt::Display for Problems<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, p) in self.1.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{}:{}:{}: {}", self.0, p.line, p.col, p.message)?;
        }
        Ok(())
    }
}
