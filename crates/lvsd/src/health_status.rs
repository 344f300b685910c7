//! Health as people read it: per-real and per-service lines for logs, `plan` and the status
//! file the daemon keeps in the state directory (`health`), so `lvsd plan` shows what the
//! running daemon's checks say.

use std::path::Path;

use plan::health::{HealthTable, ServiceStatus, Standing};

/// The lines describing every checked real and every service that is not simply ok.
pub fn lines(health: &HealthTable, statuses: &[ServiceStatus]) -> Vec<String> {
    let mut out = vec![];
    for s in statuses.iter().filter(|s| s.standing != Standing::Ok) {
        out.push(format!("health: {s}"));
    }
    for ((service, real), _) in health.checks() {
        if let Some(h) = health.get(&(*service, *real)) {
            let state = if h.up { "up" } else { "DOWN" };
            let why = if h.reason.is_empty() {
                String::new()
            } else {
                format!(" ({})", h.reason)
            };
            out.push(format!("health: real {real} of {service}: {state}{why}"));
        }
    }
    out
}

/// Each checked real's state as metric labels (service, real) and up/down.
pub fn up_labels(health: &HealthTable) -> Vec<(Vec<(String, String)>, bool)> {
    health
        .checks()
        .filter_map(|(id, _)| {
            let h = health.get(id)?;
            let labels = vec![
                ("service".to_owned(), id.0.to_string()),
                ("real".to_owned(), id.1.to_string()),
            ];
            Some((labels, h.up))
        })
        .collect()
}

/// Writes the daemon's view atomically (the daemon calls it only when the view changed).
pub fn save(dir: &Path, lines: &[String]) {
    let text = format!(
        "# written by lvsd run (pid {}) at {}\n{}\n",
        std::process::id(),
        crate::engine::now(),
        lines.join("\n")
    );
    if let Err(e) = crate::state_file::write_atomic(dir, "health", &text) {
        tracing::warn!(dir = %dir.display(), error = format!("{e:#}"), "cannot write the health status file");
    }
}

/// The running daemon's view, if a daemon is running (its pid is alive).
pub fn load(dir: &Path) -> Option<String> {
    let text = crate::state_file::read(&dir.join("health")).ok()?;
    let pid = text
        .lines()
        .next()?
        .split("(pid ")
        .nth(1)?
        .split(')')
        .next()?
        .to_owned();
    Path::new("/proc").join(&pid).exists().then_some(text)
}
