//! Fault points for the crash tests: with `LVSD_FAULT=<point>` in its environment, lvsd stops
//! itself (SIGSTOP) at that point, so a test can SIGKILL it at exactly the instant it means —
//! between recording intent and writing to the kernel, between writing and recording what was
//! written — instead of racing a kill against a write window of a few milliseconds. Without
//! the variable nothing happens. The start-up and reload points let a test change the config
//! at each step of reading it (`tests/e2e/startup.sh`).

/// Named points: after the ownership intent is on disk, before the kernel is written to.
pub const AFTER_INTENT: &str = "after-intent";
/// After the kernel took a batch, before the ownership record says what it holds.
pub const AFTER_WRITE: &str = "after-write";

/// Whether `LVSD_FAULT` names this point.
fn asked(name: &str) -> bool {
    std::env::var_os("LVSD_FAULT").is_some_and(|v| v == name)
}

/// Stops the process here when `LVSD_FAULT` names this point.
pub fn point(name: &str) {
    if asked(name) {
        tracing::warn!(point = name, "LVSD_FAULT: stopping here for a crash test");
        let _ = nix::sys::signal::raise(nix::sys::signal::Signal::SIGSTOP);
    }
}

/// Start-up, before the config's directory is watched.
pub const START_BEFORE_WATCH: &str = "start-before-watch";
/// Start-up, once the directory is watched and before the config is read.
pub const START_BEFORE_READ: &str = "start-before-read";
/// Start-up, once the config is read (before its included directories are watched).
pub const START_AFTER_READ: &str = "start-after-read";
/// Start-up done, before the daemon's loop takes its first step.
pub const START_BEFORE_LOOP: &str = "start-before-loop";
/// A reload, before the file is read again.
pub const RELOAD_BEFORE_READ: &str = "reload-before-read";
/// A reload, once the file is read (before its included directories are followed).
pub const RELOAD_AFTER_READ: &str = "reload-after-read";
/// A reload's reader panics (the thread reading the config is lost with the config it held).
pub const RELOAD_PANIC: &str = "reload-panic";

/// Panics here when `LVSD_FAULT` names this point: how a test loses a task the way a bug would.
#[allow(clippy::panic)]
pub fn panic_point(name: &str) {
    if asked(name) {
        panic!("LVSD_FAULT: a panic at {name} for a test");
    }
}

/// The writer thread, before it writes the health lines for `lvsd plan`.
pub const HEALTH_LINES_WRITE: &str = "health-lines-write";
/// The writer thread, before it writes the health file keepalived follows.
pub const HEALTH_FILE_WRITE: &str = "health-file-write";

/// Holds the calling thread here, and only it, while the file `LVSD_FAULT_HOLD` names exists,
/// when `LVSD_FAULT` names this point: how a test makes one write hang as on a stalled disk.
pub fn hold(name: &str) {
    if !asked(name) {
        return;
    }
    let Some(path) = std::env::var_os("LVSD_FAULT_HOLD") else {
        return;
    };
    let path = std::path::PathBuf::from(path);
    tracing::warn!(point = name, hold = %path.display(), "LVSD_FAULT: holding this write while the file exists");
    while path.exists() {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}
