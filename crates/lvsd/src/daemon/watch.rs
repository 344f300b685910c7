//! Watching the config file: the directory holding it and the one its symlinks lead to, which
//! is what sees in-place writes, atomic renames and ConfigMap `..data` swaps alike. Only events
//! naming the config file (or `..data`) count, so unrelated files in `/etc/lvsd` cause no
//! reloads. The watcher only reports; when to read is the daemon's decision (`decide`).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use notify::{RecursiveMode, Watcher};

/// The watch on the config's directories.
pub struct ConfigWatch {
    watcher: notify::RecommendedWatcher,
    /// Watched directories and the inode each was when watched.
    dirs: BTreeMap<PathBuf, u64>,
    config: PathBuf,
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
        let watcher = notify::recommended_watcher(move |ev: notify::Result<notify::Event>| {
            let Ok(ev) = ev else { return };
            let relevant = !ev.kind.is_access()
                && ev
                    .paths
                    .iter()
                    .any(|p| p.file_name().is_some_and(|n| names.contains(n)));
            if !relevant {
                // Writers make thousands of these (a large file written in pieces).
                tracing::trace!(kind = ?ev.kind, paths = ?ev.paths, "file event, not the config");
                return;
            }
            tracing::debug!(kind = ?ev.kind, paths = ?ev.paths, relevant, "file event");
            let whole = matches!(
                ev.kind,
                notify::EventKind::Modify(notify::event::ModifyKind::Name(
                    notify::event::RenameMode::To | notify::event::RenameMode::Both
                ))
            );
            written(whole);
        })
        .context("start the file watcher")?;
        let mut w = ConfigWatch {
            watcher,
            dirs: BTreeMap::new(),
            config: config.to_path_buf(),
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

/// What the config path leads to now: device, inode, size and modification time. A resync
/// compares it with the file last read, since events can be lost (the directory replaced, a
/// watch on a dead inode).
pub fn file_identity(path: &Path) -> Option<(u64, u64, u64, i64, i64)> {
    use std::os::unix::fs::MetadataExt as _;
    let m = std::fs::metadata(path).ok()?;
    Some((m.dev(), m.ino(), m.size(), m.mtime(), m.mtime_nsec()))
}
