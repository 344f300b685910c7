//! The files the daemon writes for others, written on a thread of their own: the health lines
//! `lvsd plan` shows (`<state-dir>/health`) and the health file keepalived's `track_file`
//! follows (`ha.health_file`). Each is written atomically and fsync'd, which waits for the
//! disk; the pass that takes a failed real out of rotation must not wait behind it. The newest
//! content of each file wins (a burst of health changes is one write, and a hung disk holds
//! one pending content a file), and the health file's result goes back to the loop, which
//! tells `decide`.
//!
//! The ownership records are not written here: they say what lvsd is about to own, so they
//! must be on disk before the kernel is written to, and the engine waits for them.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex};

use super::decide::HealthFileValue;

/// What waits to be written: the newest content of each file, nothing older (a hung disk
/// holds one pending content a file, however many changes come meanwhile).
#[derive(Default)]
struct Pending {
    /// The health lines, and the state directory they go to.
    lines: Option<(PathBuf, Vec<String>)>,
    /// The health file's value.
    file: Option<HealthFileValue>,
    /// The loop's handle is gone: the thread ends once nothing is pending.
    closed: bool,
}

/// The writer thread was lost (it panicked): the daemon cannot keep others informed and exits
/// for its supervisor to restart it.
#[derive(Debug, thiserror::Error)]
#[error(
    "the thread writing the health files was lost; lvsd exits for its supervisor to restart it"
)]
pub struct Lost;

type Shared = Arc<(Mutex<Pending>, Condvar)>;

/// The handle the loop hands new contents over with.
pub struct Writer {
    shared: Shared,
    thread: std::thread::JoinHandle<()>,
}

impl Writer {
    /// Starts the writer thread. `written` is called on that thread with each health-file value
    /// and whether it is on disk.
    pub fn start(
        written: impl Fn(HealthFileValue, bool) + Send + 'static,
    ) -> std::io::Result<Writer> {
        let shared: Shared = Arc::default();
        let theirs = shared.clone();
        let thread = std::thread::Builder::new()
            .name("lvsd-writer".into())
            .spawn(move || run(&theirs, &written))?;
        Ok(Writer { shared, thread })
    }

    /// The health lines for `lvsd plan`, to be written.
    pub fn health_lines(&self, dir: &Path, lines: Vec<String>) -> Result<(), Lost> {
        self.put(|p| p.lines = Some((dir.to_owned(), lines)))
    }

    /// The health file's value, to be written; its result comes back through `written`.
    pub fn health_file(&self, value: HealthFileValue) -> Result<(), Lost> {
        self.put(|p| p.file = Some(value))
    }

    fn put(&self, f: impl FnOnce(&mut Pending)) -> Result<(), Lost> {
        if self.thread.is_finished() {
            return Err(Lost);
        }
        let (lock, wake) = &*self.shared;
        f(&mut *lock.lock().map_err(|_| Lost)?);
        wake.notify_one();
        Ok(())
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        let (lock, wake) = &*self.shared;
        if let Ok(mut p) = lock.lock() {
            p.closed = true;
        }
        wake.notify_one();
    }
}

/// Waits for something to write, takes the newest content of each file, writes it; until the
/// loop's handle is dropped.
fn run(shared: &Shared, written: &dyn Fn(HealthFileValue, bool)) {
    let (lock, wake) = &**shared;
    loop {
        let (lines, file) = {
            let Ok(mut p) = lock.lock() else { return };
            while p.lines.is_none() && p.file.is_none() && !p.closed {
                p = match wake.wait(p) {
                    Ok(p) => p,
                    Err(_) => return,
                };
            }
            if p.lines.is_none() && p.file.is_none() {
                return;
            }
            (p.lines.take(), p.file.take())
        };
        if let Some(value) = file {
            crate::fault::hold(crate::fault::HEALTH_FILE_WRITE);
            let ok = write_health_file(&value);
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
        let (tx, rx) = std::sync::mpsc::channel();
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

    /// A burst while the thread is busy is one write of the newest value.
    #[test]
    fn the_newest_value_wins() {
        let dir = std::env::temp_dir().join(format!("lvsd-writer-burst-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let w = Writer::start(move |v, ok| tx.send((v.value, ok)).unwrap()).unwrap();
        let file = dir.join("health");
        // All handed over under the lock, the thread woken once.
        {
            let (lock, wake) = &*w.shared;
            let mut p = lock.lock().unwrap();
            for value in 1..=6 {
                p.file = Some(HealthFileValue {
                    file: file.clone(),
                    value,
                });
            }
            wake.notify_one();
        }
        assert_eq!(rx.recv().unwrap(), (6, true));
        drop(w);
        assert!(
            rx.recv().is_err(),
            "one write, and the thread ends with its handle"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
