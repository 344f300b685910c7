//! Watching the config file: the directory holding it and the one its symlinks lead to, which
//! is what sees in-place writes, atomic renames and ConfigMap `..data` swaps alike. Only events
//! naming the config file (or `..data`) count, so unrelated files in `/etc/lvsd` cause no
//! reloads. With `include:`, the directories of the included files are watched too, and an
//! event naming a file the patterns match (added, written, renamed into place or removed) or
//! `..data` (a ConfigMap mounted as the directory) is a change of the config. The watcher only
//! reports; when to read is the daemon's decision (`decide`).
//!
//! The watch is set up before the config is first read, so a change made while the daemon
//! starts is an event; an included directory can only be watched once a read has named it, and
//! what changed there in between is caught by the read's stamp (`config::Stamp`), which the
//! daemon checks right after following the directory and at every resync.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use config::IncludeDir;

use anyhow::{Context, Result};
use notify::{RecursiveMode, Watcher};

/// The watch on the config's directories.
pub struct ConfigWatch {
    watcher: notify::RecommendedWatcher,
    /// Watched directories and the inode each was when watched.
    dirs: BTreeMap<PathBuf, u64>,
    config: PathBuf,
    /// The included files' directories and patterns, shared with the watcher's thread.
    includes: Arc<RwLock<Vec<IncludeDir>>>,
}

/// The directory `p` is in (`.` for a bare file name).
pub fn parent(p: &Path) -> PathBuf {
    p.parent()
        .filter(|d| !d.as_os_str().is_empty())
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf)
}

impl ConfigWatch {
    /// Watches `config`; `written(whole)` is called from the watcher's thread for every event
    /// naming it, `whole` when a file was renamed into place (complete at once).
    pub fn new(config: &Path, written: impl Fn(bool) + Send + 'static) -> Result<Self> {
        let mut names: BTreeSet<std::ffi::OsString> = BTreeSet::new();
        names.insert("..data".into());
        if let Some(n) = config.file_name() {
            names.insert(n.to_owned());
        }
        if let Some(n) = std::fs::canonicalize(config)
            .ok()
            .and_then(|r| r.file_name().map(ToOwned::to_owned))
        {
            names.insert(n);
        }
        let includes: Arc<RwLock<Vec<IncludeDir>>> = Arc::default();
        let shared = includes.clone();
        let watcher = notify::recommended_watcher(move |ev: notify::Result<notify::Event>| {
            let Ok(ev) = ev else { return };
            let included = |p: &Path| {
                let (Some(dir), Some(name)) = (p.parent(), p.file_name()) else {
                    return false;
                };
                let name = name.to_string_lossy();
                shared.read().is_ok_and(|list| {
                    list.iter()
                        .any(|i| same_dir(&i.dir, dir) && i.matches(&name))
                })
            };
            // A rename inside a watched directory is reported three times: from the old name,
            // to the new one, and both at once. The last repeats the first two, and read
            // again it would cost a second read of the whole file before the edit's pass.
            let repeat = matches!(
                ev.kind,
                notify::EventKind::Modify(notify::event::ModifyKind::Name(
                    notify::event::RenameMode::Both
                ))
            );
            let relevant = !ev.kind.is_access()
                && !repeat
                && ev
                    .paths
                    .iter()
                    .any(|p| p.file_name().is_some_and(|n| names.contains(n)) || included(p));
            if !relevant {
                // Writers make thousands of these (a large file written in pieces).
                tracing::trace!(kind = ?ev.kind, paths = ?ev.paths, "file event, not the config");
                return;
            }
            tracing::debug!(kind = ?ev.kind, paths = ?ev.paths, relevant, "file event");
            let whole = matches!(
                ev.kind,
                notify::EventKind::Modify(notify::event::ModifyKind::Name(
                    notify::event::RenameMode::To
                ))
            );
            written(whole);
        })
        .context("start the file watcher")?;
        let mut w = ConfigWatch {
            watcher,
            dirs: BTreeMap::new(),
            config: config.to_path_buf(),
            includes,
        };
        w.refresh()?;
        Ok(w)
    }

    /// Adds the directories the config resolves through now (a ConfigMap swap moves the file
    /// into a new directory), and watches anew a directory that was replaced.
    pub fn refresh(&mut self) -> Result<()> {
        let mut want = vec![parent(&self.config)];
        if let Ok(real) = std::fs::canonicalize(&self.config) {
            want.push(parent(&real));
        }
        if let Ok(list) = self.includes.read() {
            for i in list.iter() {
                want.push(i.dir.clone());
                if let Ok(real) = std::fs::canonicalize(&i.dir) {
                    want.push(real);
                }
            }
        }
        for d in want {
            use std::os::unix::fs::MetadataExt as _;
            let Ok(ino) = std::fs::metadata(&d).map(|m| m.ino()) else {
                continue;
            };
            match self.dirs.get(&d) {
                Some(&watched) if watched == ino => continue,
                // The directory was replaced: the old watch sees nothing any more.
                Some(_) => {
                    let _ = self.watcher.unwatch(&d);
                }
                None => {}
            }
            self.watcher
                .watch(&d, RecursiveMode::NonRecursive)
                .with_context(|| format!("watch {}", d.display()))?;
            self.dirs.insert(d, ino);
        }
        Ok(())
    }
}

impl ConfigWatch {
    /// Follows the included files of the generation just read: their directories are watched
    /// from now on (one that does not exist yet is watched once it does, at the next refresh).
    pub fn follow(&mut self, dirs: &[IncludeDir]) {
        if let Ok(mut list) = self.includes.write() {
            if list.as_slice() == dirs {
                return;
            }
            *list = dirs.to_vec();
        }
        if let Err(e) = self.refresh() {
            tracing::warn!("{e:#}");
        }
    }
}

/// The included directories a watch follows, shared with whoever wants to know which events a
/// watch on them would see (the daemon's simulation).
#[cfg(test)]
pub(crate) type Followed = Arc<RwLock<Vec<IncludeDir>>>;

/// How the daemon learns of writes to its config's files: inotify in production; in the
/// daemon's simulation, its schedule sends the events itself (delivered in the order it chose,
/// or dropped), which a watcher thread of its own would make nondeterministic.
pub(crate) enum WatchKind {
    /// The directories watched with inotify ([`ConfigWatch`]).
    Inotify,
    /// No watcher: the included directories followed are kept in the shared list.
    #[cfg(test)]
    Simulated(Followed),
}

/// The watch a [`WatchKind`] made.
pub(super) enum Watch {
    /// inotify.
    Files(ConfigWatch),
    /// The simulation's: only the list of included directories followed.
    #[cfg(test)]
    Simulated(Followed),
}

impl Watch {
    /// Sets the watch up; `written(whole)` is called for every event naming the config (the
    /// simulated watch has none: its schedule sends them).
    pub(super) fn new(
        kind: WatchKind,
        config: &Path,
        written: impl Fn(bool) + Send + 'static,
    ) -> Result<Watch> {
        match kind {
            WatchKind::Inotify => Ok(Watch::Files(ConfigWatch::new(config, written)?)),
            #[cfg(test)]
            WatchKind::Simulated(followed) => Ok(Watch::Simulated(followed)),
        }
    }

    /// See [`ConfigWatch::refresh`].
    pub(super) fn refresh(&mut self) -> Result<()> {
        match self {
            Watch::Files(w) => w.refresh(),
            #[cfg(test)]
            Watch::Simulated(_) => Ok(()),
        }
    }

    /// See [`ConfigWatch::follow`].
    pub(super) fn follow(&mut self, dirs: &[IncludeDir]) {
        match self {
            Watch::Files(w) => w.follow(dirs),
            #[cfg(test)]
            Watch::Simulated(followed) => {
                if let Ok(mut list) = followed.write() {
                    *list = dirs.to_vec();
                }
            }
        }
    }
}

/// Whether two paths name one directory (as written, or once symlinks are resolved).
fn same_dir(a: &Path, b: &Path) -> bool {
    if a == b {
        return true;
    }
    match (std::fs::canonicalize(a), std::fs::canonicalize(b)) {
        (Ok(x), Ok(y)) => x == y,
        _ => false,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;
    use std::sync::mpsc;
    use std::time::Duration;

    /// A configuration-management push (a file renamed over the config) is one event, taken
    /// as a whole file: one read of the config, not one more that finds it the same.
    #[test]
    fn a_rename_into_place_is_one_event() {
        let dir = std::env::temp_dir().join(format!("lvsd-watch-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let config = dir.join("lvsd.yaml");
        std::fs::write(&config, "services: []\n").unwrap();
        let (tx, rx) = mpsc::channel();
        let tx = std::sync::Mutex::new(tx);
        let _watch = ConfigWatch::new(&config, move |whole| {
            let _ = tx.lock().unwrap().send(whole);
        })
        .unwrap();
        let tmp = dir.join("lvsd.yaml.tmp");
        std::fs::write(&tmp, "services: []\n# edited\n").unwrap();
        std::fs::rename(&tmp, &config).unwrap();
        let first = rx.recv_timeout(Duration::from_secs(10)).expect("an event");
        assert!(first, "a rename is a whole file");
        // Every event of one rename comes from one read of the inotify queue.
        let more: Vec<bool> =
            std::iter::from_fn(|| rx.recv_timeout(Duration::from_millis(300)).ok()).collect();
        assert!(more.is_empty(), "events after the first: {more:?}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
