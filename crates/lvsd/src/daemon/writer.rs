//! The files the daemon writes for others, written on a thread of their own: the health lines
//! `lvsd plan` shows (`<state-dir>/health`) and the health file keepalived's `track_file`
//! follows (`ha.health_file`). Each is written atomically and fsync'd, which waits for the
//! disk; the pass that takes a failed real out of rotation must not wait behind it. The newest
//! content of each file wins (a burst of health changes is one write), and the health file's
//! result goes back to the loop, which tells `decide`.
//!
//! The ownership records are not written here: they say what lvsd is about to own, so they
//! must be on disk before the kernel is written to, and the engine waits for them.

use std::path::{Path, PathBuf};
use std::sync::mpsc;

use super::decide::HealthFileValue;

/// One file's new content.
enum Job {
    /// The health lines, in the state directory.
    HealthLines { dir: PathBuf, lines: Vec<String> },
    /// The health file's value.
    HealthFile(HealthFileValue),
}

/// The writer thread was lost (it panicked): the daemon cannot keep others informed and exits
/// for its supervisor to restart it.
#[derive(Debug, thiserror::Error)]
#[error(
    "the thread writing the health files was lost; lvsd exits for its supervisor to restart it"
)]
pub struct Lost;

/// The handle the loop sends new contents through.
pub struct Writer {
    tx: mpsc::Sender<Job>,
}

impl Writer {
    /// Starts the writer thread. `written` is called on that thread with each health-file value
    /// and whether it is on disk.
    pub fn start(
        written: impl Fn(HealthFileValue, bool) + Send + 'static,
    ) -> std::io::Result<Writer> {
        let (tx, rx) = mpsc::channel();
        std::thread::Builder::new()
            .name("lvsd-writer".into())
            .spawn(move || run(&rx, &written))?;
        Ok(Writer { tx })
    }

    /// The health lines for `lvsd plan`, to be written.
    pub fn health_lines(&self, dir: &Path, lines: Vec<String>) -> Result<(), Lost> {
        self.send(Job::HealthLines {
            dir: dir.to_owned(),
            lines,
        })
    }

    /// The health file's value, to be written; its result comes back through `written`.
    pub fn health_file(&self, value: HealthFileValue) -> Result<(), Lost> {
        self.send(Job::HealthFile(value))
    }

    fn send(&self, job: Job) -> Result<(), Lost> {
        self.tx.send(job).map_err(|_| Lost)
    }
}

/// Takes what is queued, keeps the newest content of each file, writes it; until the loop's
/// handle is dropped.
fn run(rx: &mpsc::Receiver<Job>, written: &dyn Fn(HealthFileValue, bool)) {
    // What is on disk already: the same value again (asked while a write was under way) is
    // not written twice.
    let mut on_disk: Option<HealthFileValue> = None;
    while let Ok(first) = rx.recv() {
        let (mut lines, mut file) = (None, None);
        for job in std::iter::once(first).chain(rx.try_iter()) {
            match job {
                Job::HealthLines { dir, lines: l } => lines = Some((dir, l)),
                Job::HealthFile(v) => file = Some(v),
            }
        }
        if let Some(value) = file {
            crate::fault::hold(crate::fault::HEALTH_FILE_WRITE);
            let ok = on_disk.as_ref() == Some(&value) || write_health_file(&value);
            on_disk = ok.then(|| value.clone());
            written(value, ok);
        }
        if let Some((dir, lines)) = lines {
            crate::fault::hold(crate::fault::HEALTH_LINES_WRITE);
            crate::health_status::save(&dir, &lines);
        }
    }
}

/// Writes the health file; whether it is on disk.
fn write_health_file(v: &HealthFileValue) -> bool {
    match crate::state_file::write_value(&v.file, &format!("{}\n", v.value)) {
        Ok(()) => {
            tracing::info!(file = %v.file.display(), value = v.value, "health file: {} services cannot be served here", v.value);
            true
        }
        Err(e) => {
            tracing::error!("cannot write the health file: {e:#}");
            false
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// The loop hands values over and goes on; each comes back with its result, in order.
    #[test]
    fn values_come_back_with_their_result() {
        let dir = std::env::temp_dir().join(format!("lvsd-writer-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (tx, rx) = mpsc::channel();
        let w = Writer::start(move |v, ok| tx.send((v.value, ok)).unwrap()).unwrap();
        let file = dir.join("health");
        for value in [3, 0] {
            w.health_file(HealthFileValue {
                file: file.clone(),
                value,
            })
            .unwrap();
            assert_eq!(rx.recv().unwrap(), (value, true));
            assert_eq!(
                std::fs::read_to_string(&file).unwrap(),
                format!("{value}\n")
            );
        }
        // A file that cannot be written (below a file): the value comes back not written.
        w.health_file(HealthFileValue {
            file: file.join("health"),
            value: 1,
        })
        .unwrap();
        assert_eq!(rx.recv().unwrap(), (1, false));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
