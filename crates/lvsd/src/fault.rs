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
    #[cfg(test)]
    simulated_point(name);
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

/// The daemon simulation's hook: called with each point's name.
#[cfg(test)]
pub(crate) type Hook = Box<dyn FnMut(&str)>;

#[cfg(test)]
thread_local! {
    /// The daemon simulation's hook on this thread (`crate::sim::daemon`): called at every
    /// point, so that a schedule can rename a file into place or kill at exactly that step of
    /// a start or a reload. Per thread, because the simulation runs the daemon on the test's
    /// own thread (a current-thread runtime) and tests run side by side.
    static HOOK: std::cell::RefCell<Option<Hook>> =
        const { std::cell::RefCell::new(None) };
    /// A daemon simulation runs on this thread (set with its hook).
    static SIMULATED: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Installs (or with `None` removes) this thread's simulation hook; returns the one before.
/// While one is installed, the daemon also reads its files in place instead of on a blocking
/// thread ([`simulated`]), so that a read is never concurrent with the schedule's file moves.
#[cfg(test)]
pub(crate) fn set_hook(hook: Option<Hook>) -> Option<Hook> {
    SIMULATED.with(|s| s.set(hook.is_some()));
    HOOK.with(|h| std::mem::replace(&mut *h.borrow_mut(), hook))
}

/// Whether a daemon simulation runs on this thread (a hook is installed).
#[cfg(test)]
pub(crate) fn simulated() -> bool {
    SIMULATED.with(std::cell::Cell::get)
}

/// Calls this thread's simulation hook, if any (taken out while it runs: a hook that reached a
/// point again would find none, not a second borrow).
#[cfg(test)]
fn simulated_point(name: &str) {
    let Some(mut hook) = HOOK.with(|h| h.borrow_mut().take()) else {
        return;
    };
    hook(name);
    HOOK.with(|h| {
        let mut slot = h.borrow_mut();
        if slot.is_none() {
            *slot = Some(hook);
        }
    });
}
