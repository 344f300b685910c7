//! One lvsd per table: an exclusive lock on `lock` in the state directory, held by `lvsd run`
//! for its lifetime and by `lvsd apply` while it works. Two writers would race on the ownership
//! records and on the table itself (each planning from a table the other is changing), and a
//! second daemon would take the first one's status socket. The lock file says who holds it, so
//! the one that waits can name the holder. The kernel releases the lock when its holder dies,
//! however it dies: there is never a stale lock to clean up.

use std::fs::File;
use std::io::{Read as _, Seek as _, Write as _};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::fcntl::{Flock, FlockArg};

/// The lock, held until dropped.
#[derive(Debug)]
pub struct StateLock {
    _file: Flock<File>,
}

/// Why the lock was not taken.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Another lvsd holds it.
    #[error("{}", busy(.path, .holder, .waited))]
    Busy {
        /// The lock file.
        path: PathBuf,
        /// What its holder wrote in it (`pid 123 run /etc/lvsd/lvsd.yaml`), if anything yet.
        holder: Option<Holder>,
        /// How long this process waited.
        waited: Duration,
    },
    /// Users other than root and lvsd's own can write the state directory (or one above it).
    #[error("{0}")]
    Insecure(String),
    /// The lock file could not be opened or locked.
    #[error("cannot lock {}: {source}", config::printable(&.path.display().to_string()))]
    Io {
        /// The lock file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

/// Who holds the lock, as its file says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holder {
    /// Its pid.
    pub pid: u32,
    /// The command (`run`, `apply`).
    pub command: String,
    /// Its config file (escaped for printing).
    pub config: String,
}

impl Holder {
    fn parse(text: &str) -> Option<Holder> {
        let mut w = text.trim_end_matches('\n').splitn(4, ' ');
        match (w.next(), w.next(), w.next(), w.next()) {
            // Escaped: what the file says is printed in messages.
            (Some("pid"), Some(pid), Some(command), config) => Some(Holder {
                pid: pid.parse().ok()?,
                command: config::printable(command).into_owned(),
                config: config::printable(config.unwrap_or_default()).into_owned(),
            }),
            _ => None,
        }
    }

    /// Whether the holder is a daemon, which holds the lock for as long as it runs.
    pub fn is_daemon(&self) -> bool {
        self.command == "run"
    }
}

fn busy(path: &Path, holder: &Option<Holder>, waited: &Duration) -> String {
    let dir = path.parent().unwrap_or(path).display();
    match holder {
        Some(h) if h.is_daemon() => format!(
            "lvsd run (pid {}) already manages the table of this state directory ({dir}) from {}: change that config and the daemon applies it, or stop the daemon first (or use another --state-dir for another table)",
            h.pid, h.config
        ),
        Some(h) => format!(
            "lvsd {} (pid {}) is changing the table of this state directory ({dir}); waited {:.1}s for it to finish",
            h.command,
            h.pid,
            waited.as_secs_f64()
        ),
        None => format!(
            "another lvsd holds the lock of this state directory ({dir}); waited {:.1}s",
            waited.as_secs_f64()
        ),
    }
}

/// The lock file of a state directory.
pub fn path(state_dir: &Path) -> PathBuf {
    state_dir.join("lock")
}

/// Who holds the lock of `state_dir` now, if anyone does.
pub fn holder(state_dir: &Path) -> Option<Holder> {
    let p = path(state_dir);
    let file = crate::state_file::open(std::fs::OpenOptions::new().read(true), &p).ok()?;
    match Flock::lock(file, FlockArg::LockSharedNonblock) {
        // Nobody holds it (a shared lock was granted; it goes again at once).
        Ok(_) => None,
        Err(_) => crate::state_file::read(&p)
            .ok()
            .and_then(|t| Holder::parse(&t)),
    }
}

/// Takes the lock of `state_dir` for `command` (with `config`), waiting up to `wait` while
/// another `apply` holds it. A daemon holding it is said at once: it will not let go.
pub fn acquire(
    state_dir: &Path,
    command: &str,
    config: &Path,
    wait: Duration,
) -> Result<StateLock, Error> {
    let p = path(state_dir);
    let io = |source| Error::Io {
        path: p.clone(),
        source,
    };
    std::fs::create_dir_all(state_dir).map_err(io)?;
    // Before anything is written there: whoever else can write it could plant a link to any
    // file, or forge the record of what lvsd owns.
    if let Some(why) = crate::perms::insecure_state_dir(state_dir) {
        return Err(Error::Insecure(why));
    }
    let started = Instant::now();
    let mut file = crate::state_file::open(
        std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false),
        &p,
    )
    .map_err(io)?;
    loop {
        match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(mut held) => {
                let me = format!(
                    "pid {} {command} {}\n",
                    std::process::id(),
                    config.display()
                );
                held.set_len(0).map_err(io)?;
                held.rewind().map_err(io)?;
                held.write_all(me.as_bytes()).map_err(io)?;
                return Ok(StateLock { _file: held });
            }
            Err((f, nix::errno::Errno::EWOULDBLOCK)) => {
                let mut text = String::new();
                if let Ok(mut reader) =
                    crate::state_file::open(std::fs::OpenOptions::new().read(true), &p)
                {
                    let _ = reader.read_to_string(&mut text);
                }
                let holder = Holder::parse(&text);
                let waited = started.elapsed();
                if holder.as_ref().is_some_and(Holder::is_daemon) || waited >= wait {
                    return Err(Error::Busy {
                        path: p,
                        holder,
                        waited,
                    });
                }
                std::thread::sleep(Duration::from_millis(100));
                file = f;
            }
            Err((_, errno)) => return Err(io(errno.into())),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    fn dir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("lvsd-lock-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    #[test]
    fn a_second_holder_is_refused_naming_the_first() {
        let d = dir("a");
        let first = acquire(&d, "run", Path::new("/etc/lvsd/lvsd.yaml"), Duration::ZERO).unwrap();
        let h = holder(&d).unwrap();
        assert_eq!(h.pid, std::process::id());
        assert!(h.is_daemon());
        // A daemon is named at once, without waiting out the timeout.
        let t = Instant::now();
        let e = acquire(&d, "apply", Path::new("x.yaml"), Duration::from_secs(30)).unwrap_err();
        assert!(t.elapsed() < Duration::from_secs(5));
        let msg = e.to_string();
        assert!(
            msg.contains(&format!("lvsd run (pid {})", std::process::id())),
            "{msg}"
        );
        assert!(msg.contains("/etc/lvsd/lvsd.yaml"), "{msg}");
        drop(first);
        assert_eq!(holder(&d), None);
        let again = acquire(&d, "apply", Path::new("x.yaml"), Duration::ZERO);
        assert!(again.is_ok());
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn an_apply_is_waited_for() {
        let d = dir("b");
        let first = acquire(&d, "apply", Path::new("a.yaml"), Duration::ZERO).unwrap();
        let e = acquire(&d, "apply", Path::new("b.yaml"), Duration::from_millis(300)).unwrap_err();
        let msg = e.to_string();
        assert!(msg.contains("is changing the table"), "{msg}");
        assert!(
            msg.contains("waited 0.3s") || msg.contains("waited 0.4s"),
            "{msg}"
        );
        let waiter = std::thread::spawn({
            let d = d.clone();
            move || acquire(&d, "apply", Path::new("b.yaml"), Duration::from_secs(10)).is_ok()
        });
        std::thread::sleep(Duration::from_millis(300));
        drop(first);
        assert!(
            waiter.join().unwrap(),
            "the waiter gets the lock once it is free"
        );
        std::fs::remove_dir_all(&d).unwrap();
    }
}
