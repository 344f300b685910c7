//! Standard output for the commands, written so that where it goes cannot crash lvsd: Rust's
//! `println!` panics when a write fails, so `lvsd check | head -1` (the reader gone: EPIPE)
//! and `lvsd check > /dev/full` (ENOSPC) ended with a panic and exit 101.
//!
//! Every write goes through [`Stdout`]. The first failure is remembered and later output is
//! dropped, and the command carries on: an apply is never left half done because its reader
//! went away. At the end [`failure`] says what happened: a reader that went away ends the
//! command quietly with its own exit code (as `yes | head -1` is quiet), any other failure
//! (a full disk) is an error and a failing exit.

use std::io::{self, Write};
use std::sync::Mutex;

/// The first write to standard output that failed.
static FAILED: Mutex<Option<io::Error>> = Mutex::new(None);

/// Standard output that never fails: a failed write is remembered (see [`failure`]) and
/// everything after it is dropped.
pub struct Stdout;

impl Write for Stdout {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let mut failed = FAILED
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if failed.is_none() {
            let mut out = io::stdout().lock();
            if let Err(e) = out.write_all(buf).and_then(|()| out.flush()) {
                *failed = Some(e);
            }
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Writes formatted text to standard output (what `print!` does, without its panic).
pub fn print(args: std::fmt::Arguments<'_>) {
    // One write a line, as `println!`'s line buffer makes it.
    let _ = Stdout.write(std::fmt::format(args).as_bytes());
}

/// Writes formatted text to standard error, ignoring a failure: there is nowhere left to say
/// it (`eprintln!` panics when stderr is a full disk).
pub fn eprint(args: std::fmt::Arguments<'_>) {
    let _ = io::stderr().lock().write_fmt(args);
}

/// What to tell the user about standard output once the command is done: `None` when every
/// write went through or the reader went away (a pipe closed early is the reader's choice),
/// else the message for a failing exit.
pub fn failure() -> Option<String> {
    let failed = FAILED
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    match failed.as_ref() {
        None => None,
        Some(e) if e.kind() == io::ErrorKind::BrokenPipe => None,
        Some(e) if e.kind() == io::ErrorKind::StorageFull => Some(
            "lvsd: cannot write to standard output: the disk it goes to is full; free space there or send the output elsewhere".into(),
        ),
        Some(e) => Some(format!(
            "lvsd: cannot write to standard output: {e}; send the output elsewhere"
        )),
    }
}

/// `println!` through [`Stdout`].
macro_rules! outln {
    () => { $crate::stdout::print(format_args!("\n")) };
    ($($arg:tt)*) => { $crate::stdout::print(format_args!("{}\n", format_args!($($arg)*))) };
}

/// `print!` through [`Stdout`].
macro_rules! out {
    ($($arg:tt)*) => { $crate::stdout::print(format_args!($($arg)*)) };
}

/// `eprintln!` that cannot panic.
macro_rules! errln {
    ($($arg:tt)*) => { $crate::stdout::eprint(format_args!("{}\n", format_args!($($arg)*))) };
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_write_that_goes_through_leaves_nothing_to_report() {
        // Where stdout works (as under the test harness), nothing is left to say at the end.
        outln!("{}", 1);
        assert_eq!(super::failure(), None);
    }
}
