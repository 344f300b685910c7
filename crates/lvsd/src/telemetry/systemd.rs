//! systemd's notify protocol: READY, STATUS and the watchdog, when the unit asks for them.

use super::*;

/// systemd's notify protocol (a no-op outside systemd: no NOTIFY_SOCKET).
pub fn notify_ready(status: &str) {
    let _ = sd_notify::notify(&[
        sd_notify::NotifyState::Ready,
        sd_notify::NotifyState::Status(status),
    ]);
}

/// A STATUS line for `systemctl status`.
pub fn notify_status(status: &str) {
    let _ = sd_notify::notify(&[sd_notify::NotifyState::Status(status)]);
}

/// A watchdog keep-alive.
pub fn notify_watchdog() {
    let _ = sd_notify::notify(&[sd_notify::NotifyState::Watchdog]);
}

/// How often to ping the watchdog: half of `WatchdogSec`, when systemd set one.
pub fn watchdog_interval() -> Option<Duration> {
    sd_notify::watchdog_enabled().map(|d| d / 2)
}
